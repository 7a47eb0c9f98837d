//! Promotes due jobs and reclaims expired leases, waking at the next deadline
//! the store reports (or earlier, when the store signals an earlier one), so a
//! due job is leasable and an expired lease reclaimed within milliseconds, and
//! an idle server sleeps. On a shared store only the elected leader runs it.

use std::sync::Arc;
use std::time::Duration;

use keel_core::Clock;
use keel_store::{MaintenanceStore, ReadySignal};

use crate::Shutdown;
use crate::jobs::JobService;

/// The longest sleep: a safety net, not the mechanism. On a shared database
/// it is also how the leader learns of distant deadlines set through other
/// nodes (nearer ones arrive by NOTIFY).
const IDLE_WAKE_MS: u64 = keel_store::MAINTENANCE_MAX_SLEEP_MS;
/// Pause after a store error before trying again.
const RETRY_AFTER_ERROR_MS: u64 = 500;
/// How often a node that is not the maintenance leader asks to become it: a
/// dead leader is replaced within this (plus the database noticing).
const LEADER_RETRY: Duration = Duration::from_secs(2);

pub struct Maintenance {
    jobs: Arc<JobService>,
    store: Arc<dyn MaintenanceStore>,
    signal: ReadySignal,
    clock: Arc<dyn Clock>,
}

impl Maintenance {
    pub fn new(
        jobs: Arc<JobService>,
        store: Arc<dyn MaintenanceStore>,
        signal: ReadySignal,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Maintenance {
            jobs,
            store,
            signal,
            clock,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        loop {
            if shutdown.is_fired() {
                return;
            }
            let leader = self.store.maintenance_leader().await;
            metrics::gauge!("keel_maintenance_leader").set(if matches!(leader, Ok(true)) {
                1.0
            } else {
                0.0
            });
            match leader {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        () = tokio::time::sleep(LEADER_RETRY) => continue,
                        () = shutdown.clone().wait() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell whether this node leads maintenance");
                }
            }
            let now = self.clock.now();
            let next = match self.jobs.maintain().await {
                Ok(report) => report.next_due.map_or(now.plus_ms(IDLE_WAKE_MS), |due| {
                    due.min(now.plus_ms(IDLE_WAKE_MS))
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "maintenance pass failed");
                    now.plus_ms(RETRY_AFTER_ERROR_MS)
                }
            };
            let signal = &self.signal;
            signal.set_next_maintenance(next);
            let sleep = Duration::from_millis(next.millis_since(now));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = signal.maintenance_woken() => {}
                () = shutdown.clone().wait() => return,
            }
        }
    }
}
