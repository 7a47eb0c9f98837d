//! The SLO domain: the objectives queues and topics carry, and the
//! per-minute counts they are measured from. Every node adds what it counted to the same
//! minute rows (additions, so nodes never overwrite each other), and reads
//! sums over windows back; the arithmetic is `keel_core::slo`.

use async_trait::async_trait;
use keel_core::Error;
use keel_core::slo::{Counts, Histogram, Slo, Subject, Tally, WINDOWS};

/// A queue or a topic whose policy carries objectives.
#[derive(Clone, Debug, PartialEq)]
pub struct Objectives {
    pub subject: Subject,
    pub slo: Slo,
}

/// One node's count for a subject in one minute, to add to the stored one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteTally {
    pub subject: Subject,
    /// Minutes since the epoch (`keel_core::slo::minute`).
    pub minute: i64,
    pub tally: Tally,
}

#[async_trait]
pub trait SloStore: Send + Sync {
    /// Every queue and topic whose policy carries objectives, queues first,
    /// each by namespace and name.
    async fn slo_objectives(&self) -> Result<Vec<Objectives>, Error>;

    /// Adds each tally to its subject's minute (in one transaction).
    async fn slo_record(&self, tallies: Vec<MinuteTally>) -> Result<(), Error>;

    /// A subject's counts summed from each of `since` (a first minute per
    /// window of `WINDOWS`, as `keel_core::slo::window_starts` gives) on.
    async fn slo_sums(
        &self,
        subject: &Subject,
        since: [i64; WINDOWS.len()],
    ) -> Result<[Counts; WINDOWS.len()], Error>;

    /// A subject's wait histogram summed from minute `since` on.
    async fn slo_waits(&self, subject: &Subject, since: i64) -> Result<Histogram, Error>;

    /// Deletes minutes before `before`; how many rows went.
    async fn slo_prune(&self, before: i64) -> Result<u64, Error>;
}
