//! The jobs domain: enqueue, lease, acknowledge, heartbeat, cancel, read,
//! redrive and prune jobs. Every other domain's work runs as jobs (see
//! [`crate::owner`]), so this is the part every backend must make fast.

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::gate::WaitFacts;
use keel_core::{
    Error, Job, JobId, JobState, LeaseToken, Namespace, NewJob, QueueName, QueueRef, Retry,
    Timestamp,
};
use serde_json::value::RawValue;

use crate::owner::JobOwner;

/// Idempotency keys dedupe within this window (24 h, docs/design.md).
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3_600_000;

/// The answer for one enqueued job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    pub state: JobState,
    /// True when an idempotency key matched an earlier job, whose id this is.
    pub deduplicated: bool,
    /// True when a debounce key matched a job still in its window, whose id
    /// this is and whose payload this job's replaced.
    pub debounced: bool,
}

#[derive(Clone, Debug)]
pub struct LeaseRequest {
    pub queue: QueueRef,
    pub worker_id: String,
    pub max_jobs: u32,
    /// Overrides each job's own lease time.
    pub lease_ms: Option<u64>,
}

/// A job handed to a worker.
#[derive(Clone, Debug)]
pub struct LeasedJob {
    pub id: JobId,
    pub queue: String,
    pub payload: Box<RawValue>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub lease_token: LeaseToken,
    pub lease_expires_at: Timestamp,
    pub priority: i16,
    pub tags: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub created_at: Timestamp,
    /// When the job became leasable; `now - run_at` is its wait in the queue.
    pub run_at: Timestamp,
    /// The trace it was enqueued in, for the worker to continue.
    pub traceparent: Option<keel_core::TraceParent>,
}

/// How a worker ends an attempt.
#[derive(Clone, Debug)]
pub enum AckOutcome {
    Complete { result: Option<Box<RawValue>> },
    Fail { message: String, retry: Retry },
}

#[derive(Clone, Debug)]
pub struct Ack {
    pub token: LeaseToken,
    pub outcome: AckOutcome,
}

/// The state a job reached through an ack, cancel or lease expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub id: JobId,
    pub queue: QueueName,
    pub state: JobState,
    /// When a retried job becomes leasable again.
    pub run_at: Option<Timestamp>,
    /// The domain object the job works for, stored with it: the engine tells
    /// the owner when the job ends, without reading the job again.
    pub owner: Option<JobOwner>,
    /// Attempts the job has made so far.
    pub attempt: u32,
}

#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub queue: Option<QueueName>,
    pub state: Option<JobState>,
    pub tag: Option<(String, String)>,
    pub limit: u32,
    /// From a previous page's `next_cursor`: list jobs older than this one.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub enum RedriveSelection {
    Ids(Vec<JobId>),
    All,
}

/// Jobs: what producers and workers do. Writes return only once durable.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Enqueues a batch atomically: all jobs or none (429 `namespace_full` when
    /// the namespace would exceed its bound of unfinished jobs).
    async fn jobs_enqueue(
        &self,
        queue: &QueueRef,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Enqueued>, Error>;

    /// Leases up to `max_jobs` ready jobs: highest priority first, then oldest
    /// `run_at`, then enqueue order; one job per ordering key at a time; none
    /// from a paused queue or one at its concurrency bound.
    async fn jobs_lease(&self, req: &LeaseRequest, now: Timestamp)
    -> Result<Vec<LeasedJob>, Error>;

    /// Completes or fails leased jobs; each item succeeds or fails on its own
    /// (409 `lease_lost` for a stale token, 404 for an unknown job).
    async fn jobs_ack(
        &self,
        namespace: &Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
    ) -> Result<Vec<Result<Acked, Error>>, Error>;

    async fn job_heartbeat(
        &self,
        namespace: &Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<Timestamp, Error>;

    async fn job_cancel(
        &self,
        namespace: &Namespace,
        id: JobId,
        now: Timestamp,
    ) -> Result<Acked, Error>;

    async fn job_get(&self, namespace: &Namespace, id: JobId) -> Result<Job, Error>;

    /// What could hold an unfinished job back (`keel_core::gate`): its
    /// state, its queue's pause switch and leased count against
    /// `max_concurrency`, and the job that holds its ordering key when that
    /// is another. 404 for a job unknown in the namespace.
    async fn job_waiting(&self, namespace: &Namespace, id: JobId) -> Result<WaitFacts, Error>;

    /// Newest first, cursor-paged.
    async fn jobs_list(&self, namespace: &Namespace, filter: &JobFilter) -> Result<JobPage, Error>;

    /// Dead jobs back to ready with attempts reset, optionally with a new
    /// payload. Returns the ids that moved; jobs that are not dead are skipped.
    /// A redriven job keeps its owner.
    async fn jobs_redrive(
        &self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
    ) -> Result<Vec<JobId>, Error>;

    /// Deletes finished jobs past their queue's retention and expired
    /// idempotency keys. Returns how many jobs went.
    async fn jobs_prune(&self, now: Timestamp) -> Result<u64, Error>;
}
