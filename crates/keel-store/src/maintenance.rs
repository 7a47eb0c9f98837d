//! Maintenance and leadership: the timers of the job core (due scheduled jobs,
//! expired leases) and which node runs them.

use async_trait::async_trait;
use keel_core::{Error, Namespace, QueueRef, Timestamp};

use crate::jobs::Acked;

/// The longest the maintenance service sleeps between passes, whatever the
/// deadlines. On a shared database the leader finds deadlines set through
/// other nodes at its next pass, so a node need only tell it of nearer ones.
pub const MAINTENANCE_MAX_SLEEP_MS: u64 = 2000;

/// What one maintenance pass did and when the next one is due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Scheduled jobs whose time came.
    pub promoted: u64,
    /// Expired leases that went back to ready, per queue.
    pub expired_to_ready: Vec<QueueRef>,
    /// Expired leases that were the job's last attempt, per queue.
    pub expired_to_dead: Vec<QueueRef>,
    /// Of those, the jobs that have an owner ([`Acked::owner`] set), so that
    /// their owners hear it now rather than at their next sweep.
    pub dead_owned: Vec<(Namespace, Acked)>,
    /// The earliest future `run_at` or lease expiry, if any.
    pub next_due: Option<Timestamp>,
}

/// Maintenance passes and the election of the node that runs them.
#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Promotes due scheduled jobs and reclaims expired leases.
    async fn maintenance_run(&self, now: Timestamp) -> Result<MaintenanceReport, Error>;

    /// Whether this node should run maintenance now. A backend shared by
    /// several nodes elects one; a store of its own is always its own leader.
    async fn maintenance_leader(&self) -> Result<bool, Error> {
        Ok(true)
    }
}
