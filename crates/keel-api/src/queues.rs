//! The queues domain: a queue's counts, rates and policy; pause and resume.

use std::collections::BTreeMap;

use keel_core::{JobState, QueuePolicy, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET .../queues/{queue}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueAnswer {
    pub namespace: String,
    pub queue: String,
    /// Jobs per state, every state present.
    pub counts: BTreeMap<JobState, u64>,
    /// When the longest-waiting leasable job became ready.
    pub oldest_ready_at: Option<Timestamp>,
    pub oldest_ready_age_ms: Option<u64>,
    pub paused: bool,
    pub policy: QueuePolicy,
    pub rates: QueueRates,
}

impl QueueAnswer {
    /// The count of one state (0 when absent).
    pub fn count(&self, state: JobState) -> u64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }
}

/// Events per second, averaged over the last minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueRates {
    pub enqueued_per_s: f64,
    pub completed_per_s: f64,
    pub failed_per_s: f64,
}

/// `POST .../queues/{queue}/pause` and `.../resume`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PausedAnswer {
    pub queue: String,
    pub paused: bool,
}
