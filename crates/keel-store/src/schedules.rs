//! The schedules domain: a schedule's spec and moving state, and its ledger
//! of slots. Every write names the revision it read, so a timer on one node,
//! a pause on another and a restart in between cannot fire a slot twice: the
//! later write finds the revision moved and writes nothing.

use async_trait::async_trait;
use keel_core::schedule::{Outcome, ScheduleSpec, ScheduleState};
use keel_core::{Error, ErrorCode, Namespace, Timestamp};

use crate::owner::OwnedJob;

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub namespace: Namespace,
    pub name: String,
    pub spec: ScheduleSpec,
    pub state: ScheduleState,
    /// When the timer must look at it next (`None`: ended).
    pub due_at: Option<Timestamp>,
    /// Bumped by every write.
    pub rev: u64,
    pub created_at: Timestamp,
    /// When the spec last changed (fires do not count).
    pub updated_at: Timestamp,
}

/// One slot in the ledger, keyed by (schedule, nominal time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub nominal_time: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub outcome: Outcome,
    /// The job id, event id or run id the fire created.
    pub target_id: Option<String>,
    /// The schedule's ledger sequence number for this row (newest highest).
    pub seq: u64,
}

/// One write of a schedule, applied only if its revision is still `rev`
/// (`0`: the schedule must not exist yet).
#[derive(Clone, Debug)]
pub struct ScheduleWrite {
    pub namespace: Namespace,
    pub name: String,
    pub rev: u64,
    pub spec: ScheduleSpec,
    pub state: ScheduleState,
    pub due_at: Option<Timestamp>,
    /// Rows to insert or replace (a buffered slot becomes fired); rows past
    /// the newest [`keel_core::schedule::LEDGER_KEEP`] are dropped.
    pub ledger: Vec<LedgerEntry>,
    /// The jobs the fires create, in the same transaction.
    pub jobs: Vec<OwnedJob>,
}

/// 404 for a schedule, the same from every backend.
pub fn schedule_not_found(name: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("schedule {name:?} not found"))
}

/// 409 for a write whose revision moved: read again and decide again.
pub fn schedule_moved(name: &str) -> Error {
    Error::new(
        ErrorCode::Conflict,
        format!("schedule {name:?} changed meanwhile"),
    )
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Applies each write on its own (a refused one does not stop the
    /// others) and durably: `Ok` when written, 409 `conflict` when its
    /// revision moved, another error when its jobs were refused.
    async fn schedules_write(
        &self,
        writes: Vec<ScheduleWrite>,
        now: Timestamp,
    ) -> Result<Vec<Result<Schedule, Error>>, Error>;

    async fn schedule_get(&self, namespace: &Namespace, name: &str) -> Result<Schedule, Error>;

    /// A namespace's schedules, by name.
    async fn schedules_list(&self, namespace: &Namespace) -> Result<Vec<Schedule>, Error>;

    /// Removes a schedule and its ledger (404 when absent).
    async fn schedule_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error>;

    /// The newest `limit` ledger rows of a schedule, newest first.
    async fn schedule_ledger(
        &self,
        namespace: &Namespace,
        name: &str,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, Error>;

    /// Schedules of every namespace due by `now`, earliest first.
    async fn schedules_due(&self, now: Timestamp, limit: u32) -> Result<Vec<Schedule>, Error>;

    /// The earliest due time of any schedule.
    async fn schedules_next_due(&self) -> Result<Option<Timestamp>, Error>;
}
