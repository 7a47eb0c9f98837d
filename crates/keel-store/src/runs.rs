//! The runs domain: one execution of a workflow version and its journal.

use async_trait::async_trait;
use keel_core::workflow::{RunId, RunState, RunStatus};
use keel_core::{Error, ErrorCode, Namespace, Timestamp};

use crate::owner::OwnedJob;

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
    /// Runs started at or after this time.
    pub since: Option<Timestamp>,
    /// Runs started before this time.
    pub until: Option<Timestamp>,
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

/// Runs and their journals. A journal write and the jobs it starts are one
/// transaction.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates a run and, in the same transaction, the jobs its first steps
    /// start; with an idempotency key seen within the window, returns the
    /// earlier run instead and `true`, and creates nothing.
    async fn run_create(
        &self,
        namespace: &Namespace,
        run: NewRun,
        jobs: Vec<OwnedJob>,
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
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<u64, Error>;

    /// Newest first, cursor-paged.
    /// How many runs of a namespace are running, and how many ended at or
    /// after `ended_since`, by status (statuses without runs absent). Both
    /// are read from partial indexes: the cost follows what is running and
    /// what ended lately, not the history kept.
    async fn runs_count(
        &self,
        namespace: &Namespace,
        ended_since: Timestamp,
    ) -> Result<Vec<(RunStatus, u64)>, Error>;

    async fn runs_list(&self, namespace: &Namespace, filter: &RunFilter) -> Result<RunPage, Error>;

    /// Deletes up to `limit` finished runs (any status but `running`) last
    /// written at or before `finished_before`, oldest first; returns how many.
    /// Their step jobs follow their own queues' retention.
    async fn runs_prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64, Error>;

    /// Running runs of every namespace, oldest first, cursor-paged: what a
    /// driver resumes after a restart.
    async fn runs_active(&self, cursor: Option<String>, limit: u32) -> Result<RunPage, Error>;
}
