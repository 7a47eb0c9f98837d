//! Owned jobs: how any domain runs its work as jobs and hears when they end.
//!
//! Jobs are Keel's one unit of execution. A workflow step, a subscription's
//! delivery, a schedule's fire, a notification's delivery, is a job with
//! an owner. The owner is stored with the job (a column of its own, never a
//! user-visible tag), the write that creates owned jobs is one transaction with
//! the owner's own state ([`OwnedJob`]), and every way a job ends (an ack, a
//! cancel, a lease expiring on its last attempt) reports the owner back in
//! [`crate::Acked::owner`], so that the engine can tell it.

use keel_core::workflow::RunId;
use keel_core::{JobId, NewJob, NotificationId, QueueRef, Timestamp};
use serde::{Deserialize, Serialize};

/// The domain object a job works for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobOwner {
    /// A workflow run's step (`item`: its place in a `for_each` fan-out).
    Run {
        run: RunId,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
    },
    /// A subscription's delivery of one event (by seq) to its target queue.
    Subscription { subscription: String, seq: u64 },
    /// A schedule's fire of one slot (its nominal time).
    Schedule {
        schedule: String,
        nominal: Timestamp,
    },
    /// A notification's delivery on one channel (the delivery's id is the
    /// job's).
    Notification { notification: NotificationId },
}

impl JobOwner {
    /// The stored form: compact JSON, so that new kinds need no migration.
    pub fn encode(&self) -> Result<String, keel_core::Error> {
        crate::codec::encode("job owner", self)
    }

    /// Reads the stored form back; a row that does not parse is corrupt.
    pub fn decode(text: &str) -> Result<Self, keel_core::Error> {
        crate::codec::decode("job owner", text)
    }

    /// The run this job works for, if it is a run's step.
    pub fn run(&self) -> Option<RunId> {
        match self {
            JobOwner::Run { run, .. } => Some(*run),
            JobOwner::Subscription { .. }
            | JobOwner::Schedule { .. }
            | JobOwner::Notification { .. } => None,
        }
    }
}

/// A job that an owner's write creates with it, under an id the owner
/// already names. It is written in the same transaction as the owner's
/// state, so it exists exactly when the state that started it does; an
/// idempotency key on it is recorded but not consulted.
#[derive(Clone, Debug)]
pub struct OwnedJob {
    pub queue: QueueRef,
    pub id: JobId,
    pub job: NewJob,
    pub owner: Option<JobOwner>,
}
