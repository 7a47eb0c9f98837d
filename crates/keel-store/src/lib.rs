//! The store boundary: the only way Keel's state is read or written.
//!
//! Operations are noun-first (`jobs_enqueue`, `jobs_lease`, `job_heartbeat`,
//! `queue_stats`, `maintenance_run`) and every backend implements all of them
//! with the same meaning, which the [`conformance`] suite checks. Backends apply
//! the transitions that `keel_core` decides, atomically, and answer only after
//! the change is durable.
//!
//! Architecture invariant: no SQL, file or HTTP type appears here; the engine
//! above talks to a `dyn Store` and cannot tell the backends apart.

#[cfg(feature = "conformance")]
pub mod conformance;
mod signal;

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::workflow::{RunId, RunState, RunStatus};
use keel_core::{
    Error, ErrorCode, Job, JobId, JobState, LeaseToken, Namespace, NewJob, QueueName, QueuePolicy,
    QueueRef, Retry, Timestamp,
};
use serde::Serialize;
use serde_json::value::RawValue;

pub use signal::{MAX_WOKEN, ReadySignal};

/// Idempotency keys dedupe within this window (DESIGN.md: 24 h).
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3_600_000;

/// The answer for one enqueued job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: JobId,
    pub state: JobState,
    /// True when an idempotency key matched an earlier job, whose id this is.
    pub deduplicated: bool,
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
#[derive(Clone, Debug, Serialize)]
pub struct LeasedJob {
    pub id: JobId,
    pub queue: String,
    pub payload: Box<RawValue>,
    pub attempt: u32,
    pub max_attempts: u32,
    #[serde(serialize_with = "serialize_display")]
    pub lease_token: LeaseToken,
    pub lease_expires_at: Timestamp,
    pub priority: i16,
    pub tags: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub created_at: Timestamp,
    /// When the job became leasable; `now - run_at` is its wait in the queue.
    pub run_at: Timestamp,
}

fn serialize_display<S: serde::Serializer>(value: &LeaseToken, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
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

/// The state a job reached through an ack, cancel or redrive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Acked {
    pub id: JobId,
    #[serde(skip)]
    pub queue: QueueName,
    pub state: JobState,
    /// When a retried job becomes leasable again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Timestamp>,
    /// The run whose step this job is (its [`RUN_TAG`] tag): the engine
    /// tells the run when the job finishes, without reading the job again.
    #[serde(skip)]
    pub run: Option<RunId>,
    /// Attempts the job has made so far.
    #[serde(skip)]
    pub attempt: u32,
}

/// The tag that links a job to the workflow run that made it.
pub const RUN_TAG: &str = "keel.run";
/// The longest the maintenance service sleeps between passes, whatever the
/// deadlines. On a shared database the leader finds deadlines set through
/// other nodes at its next pass, so a node need only tell it of nearer ones.
pub const MAINTENANCE_MAX_SLEEP_MS: u64 = 2000;
/// The tag that names the step of that run.
pub const STEP_TAG: &str = "keel.step";

#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub queue: Option<QueueName>,
    pub state: Option<JobState>,
    pub tag: Option<(String, String)>,
    pub limit: u32,
    /// From a previous page's `next_cursor`: list jobs older than this one.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub enum RedriveSelection {
    Ids(Vec<JobId>),
    All,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub counts: BTreeMap<JobState, u64>,
    /// When the longest-waiting leasable job became ready.
    pub oldest_ready_at: Option<Timestamp>,
    pub paused: bool,
    pub policy: QueuePolicy,
}

/// What one maintenance pass did and when the next one is due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Scheduled jobs whose time came.
    pub promoted: u64,
    /// Expired leases that went back to ready, per queue.
    pub expired_to_ready: Vec<QueueRef>,
    /// Expired leases that were the job's last attempt, per queue.
    pub expired_to_dead: Vec<QueueRef>,
    /// Of those, the jobs of workflow steps (their [`Acked::run`] set), so
    /// that their runs hear it now rather than at the next sweep.
    pub dead_steps: Vec<(Namespace, Acked)>,
    /// The earliest future `run_at` or lease expiry, if any.
    pub next_due: Option<Timestamp>,
}

/// Queue depth for one state, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Depth {
    pub queue: QueueRef,
    pub state: JobState,
    pub count: u64,
}

/// One version of a workflow definition, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: u32,
    /// Canonical JSON (see `keel_core::workflow::definition::canonical`).
    pub definition: String,
    pub created_at: Timestamp,
}

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub id: RunId,
    pub workflow: String,
    pub version: u32,
    /// JSON text.
    pub input: String,
    pub state: RunState,
    pub idempotency_key: Option<String>,
}

impl NewRun {
    /// The run as a backend has just stored it: revision 1, created `now`.
    pub fn stored(self, namespace: &Namespace, now: Timestamp) -> StoredRun {
        StoredRun {
            id: self.id,
            namespace: namespace.clone(),
            workflow: self.workflow,
            version: self.version,
            input: self.input,
            state: self.state,
            created_at: now,
            updated_at: now,
            rev: 1,
        }
    }
}

/// A job that a run's journal write creates with it, under the id the
/// journal already names. It is written in the same transaction as the
/// journal, so it exists exactly when the journal that started it does; an
/// idempotency key on it is recorded but not consulted.
#[derive(Clone, Debug)]
pub struct RunJob {
    pub queue: QueueRef,
    pub id: JobId,
    pub job: NewJob,
}

/// A run as stored: its immutable facts and its journal.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRun {
    pub id: RunId,
    pub namespace: Namespace,
    pub workflow: String,
    pub version: u32,
    /// JSON text.
    pub input: String,
    pub state: RunState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped by every update; an update must name the revision it read.
    pub rev: u64,
}

#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
    /// From a previous page's `next_cursor`: list runs older than this one.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RunPage {
    pub runs: Vec<StoredRun>,
    pub next_cursor: Option<String>,
}

/// 404 for a run, the same from every backend.
pub fn run_not_found(id: RunId) -> Error {
    Error::new(ErrorCode::NotFound, format!("run {id} not found"))
}

/// 404 for a workflow, or one version of it.
pub fn workflow_not_found(name: &str, version: Option<u32>) -> Error {
    let what = match version {
        Some(v) => format!("version {v} of workflow {name:?}"),
        None => format!("workflow {name:?}"),
    };
    Error::new(ErrorCode::NotFound, format!("{what} not found"))
}

/// Everything Keel asks of a storage backend. Writes return only once durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
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

    /// Newest first, cursor-paged.
    async fn jobs_list(&self, namespace: &Namespace, filter: &JobFilter) -> Result<JobPage, Error>;

    /// Dead jobs back to ready with attempts reset, optionally with a new
    /// payload. Returns the ids that moved; jobs that are not dead are skipped.
    async fn jobs_redrive(
        &self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
    ) -> Result<Vec<JobId>, Error>;

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

    async fn queue_stats(&self, queue: &QueueRef) -> Result<QueueStats, Error>;

    /// Unfinished jobs by queue and state, for gauges.
    async fn queue_depths(&self) -> Result<Vec<Depth>, Error>;

    /// Promotes due scheduled jobs and reclaims expired leases.
    async fn maintenance_run(&self, now: Timestamp) -> Result<MaintenanceReport, Error>;

    /// Whether this node should run maintenance now. A backend shared by
    /// several nodes elects one; a store of its own is always its own leader.
    async fn maintenance_leader(&self) -> Result<bool, Error> {
        Ok(true)
    }

    /// Deletes finished jobs past their queue's retention and expired
    /// idempotency keys. Returns how many jobs went.
    async fn jobs_prune(&self, now: Timestamp) -> Result<u64, Error>;

    /// Stores a workflow definition (canonical JSON) as a new version, unless
    /// it is the same as the latest one. Returns the version and whether it is new.
    async fn workflow_put(
        &self,
        namespace: &Namespace,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<(u32, bool), Error>;

    /// One version of a workflow, the latest when `version` is `None` (404 when absent).
    async fn workflow_get(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<WorkflowVersion, Error>;

    /// Every version of a workflow, oldest first (404 when there is none).
    async fn workflow_versions(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Vec<WorkflowVersion>, Error>;

    /// Creates a run and, in the same transaction, the jobs its first steps
    /// start; with an idempotency key seen within the window, returns the
    /// earlier run instead and `true`, and creates nothing.
    async fn run_create(
        &self,
        namespace: &Namespace,
        run: NewRun,
        jobs: Vec<RunJob>,
        now: Timestamp,
    ) -> Result<(StoredRun, bool), Error>;

    async fn run_get(&self, namespace: &Namespace, id: RunId) -> Result<StoredRun, Error>;

    /// Writes a run's journal, and creates the jobs its steps start, if its
    /// revision is still `rev`; otherwise (409 `conflict`: someone else
    /// advanced it) writes nothing at all. Returns the new revision.
    async fn run_update(
        &self,
        namespace: &Namespace,
        id: RunId,
        rev: u64,
        state: &RunState,
        jobs: Vec<RunJob>,
        now: Timestamp,
    ) -> Result<u64, Error>;

    /// True when this process is the only writer of the store (embedded):
    /// what it last wrote is still what is stored, so it may keep a copy.
    fn sole_writer(&self) -> bool {
        false
    }

    /// Newest first, cursor-paged.
    async fn runs_list(&self, namespace: &Namespace, filter: &RunFilter) -> Result<RunPage, Error>;

    /// Deletes up to `limit` finished runs (any status but `running`) last
    /// written at or before `finished_before`, oldest first; returns how many.
    /// Their step jobs follow their own queues' retention.
    async fn runs_prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64, Error>;

    /// Running runs of every namespace, oldest first, cursor-paged: what a
    /// driver resumes after a restart.
    async fn runs_active(&self, cursor: Option<String>, limit: u32) -> Result<RunPage, Error>;

    /// Fired whenever jobs become leasable in a queue.
    fn ready_signal(&self) -> ReadySignal;

    /// Finishes what is committing and stops; later calls fail.
    async fn close(&self);
}
