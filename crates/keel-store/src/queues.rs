//! The queues domain: a queue's policy, pause switch and counts.

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::{Error, JobState, QueuePolicy, QueueRef, Timestamp};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub counts: BTreeMap<JobState, u64>,
    /// When the longest-waiting leasable job became ready.
    pub oldest_ready_at: Option<Timestamp>,
    pub paused: bool,
    pub policy: QueuePolicy,
}

/// Queue depth for one state, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Depth {
    pub queue: QueueRef,
    pub state: JobState,
    pub count: u64,
}

/// Queues: policies, pausing and counts.
#[async_trait]
pub trait QueueStore: Send + Sync {
    async fn queue_policy(&self, queue: &QueueRef) -> Result<QueuePolicy, Error>;

    async fn queue_policy_set(
        &self,
        queue: &QueueRef,
        policy: QueuePolicy,
        now: Timestamp,
    ) -> Result<(), Error>;

    async fn queue_pause(
        &self,
        queue: &QueueRef,
        paused: bool,
        now: Timestamp,
    ) -> Result<(), Error>;

    /// Every queue with a stored policy, with it (push queues are found
    /// this way).
    async fn queue_policies(&self) -> Result<Vec<(QueueRef, QueuePolicy)>, Error>;

    async fn queue_stats(&self, queue: &QueueRef) -> Result<QueueStats, Error>;

    /// Unfinished jobs by queue and state, for gauges.
    async fn queue_depths(&self) -> Result<Vec<Depth>, Error>;
}
