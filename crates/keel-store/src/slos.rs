//! The SLO domain: the objectives queues carry, and the per-minute counts
//! they are measured from. Every node adds what it counted to the same
//! minute rows (additions, so nodes never overwrite each other), and reads
//! sums over windows back; the arithmetic is `keel_core::slo`.

use async_trait::async_trait;
use keel_core::slo::{Counts, Histogram, Slo, Tally, WINDOWS};
use keel_core::{Error, QueueRef};

/// A queue whose policy carries objectives.
#[derive(Clone, Debug, PartialEq)]
pub struct Objectives {
    pub queue: QueueRef,
    pub slo: Slo,
}

/// One node's count for a queue in one minute, to add to the stored one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteTally {
    pub queue: QueueRef,
    /// Minutes since the epoch (`keel_core::slo::minute`).
    pub minute: i64,
    pub tally: Tally,
}

#[async_trait]
pub trait SloStore: Send + Sync {
    /// Every queue whose policy carries objectives.
    async fn slo_objectives(&self) -> Result<Vec<Objectives>, Error>;

    /// Adds each tally to its queue's minute (in one transaction).
    async fn slo_record(&self, tallies: Vec<MinuteTally>) -> Result<(), Error>;

    /// A queue's counts summed from each of `since` (a first minute per
    /// window of `WINDOWS`, as `keel_core::slo::window_starts` gives) on.
    async fn slo_sums(
        &self,
        queue: &QueueRef,
        since: [i64; WINDOWS.len()],
    ) -> Result<[Counts; WINDOWS.len()], Error>;

    /// A queue's wait histogram summed from minute `since` on.
    async fn slo_waits(&self, queue: &QueueRef, since: i64) -> Result<Histogram, Error>;

    /// Deletes minutes before `before`; how many rows went.
    async fn slo_prune(&self, before: i64) -> Result<u64, Error>;
}
