//! The schedule timer: fires the slots that came due, then sleeps until the
//! next one (the store says when), woken early when a write sets an earlier
//! due time, here or (through the store) on another node. On a shared store
//! only the maintenance leader fires; the store's revision compare would
//! keep a second firer from firing a slot twice anyway.

use std::sync::Arc;
use std::time::Duration;

use keel_core::Clock;
use keel_store::{MaintenanceStore, ReadySignal};

use crate::Shutdown;
use crate::schedules::ScheduleService;

/// The longest sleep on a store of its own: a safety net, not the mechanism.
const IDLE_WAKE_MS: u64 = 60_000;
/// Pause after a store error before trying again.
const RETRY_AFTER_ERROR_MS: u64 = 500;
/// How often a node that does not lead asks again.
const LEADER_RETRY: Duration = Duration::from_secs(2);

pub struct Timer {
    schedules: Arc<ScheduleService>,
    store: Arc<dyn MaintenanceStore>,
    signal: ReadySignal,
    clock: Arc<dyn Clock>,
    /// The store has no other writer: every due time is set through here.
    sole_writer: bool,
}

impl Timer {
    pub fn new(
        schedules: Arc<ScheduleService>,
        store: Arc<dyn MaintenanceStore>,
        signal: ReadySignal,
        clock: Arc<dyn Clock>,
        sole_writer: bool,
    ) -> Self {
        Timer {
            schedules,
            store,
            signal,
            clock,
            sole_writer,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let signal = &self.signal;
        // On a shared store, due times set on other nodes further off than
        // their NOTIFY threshold are found by looking this often.
        let idle_ms = if self.sole_writer {
            IDLE_WAKE_MS
        } else {
            keel_store::MAINTENANCE_MAX_SLEEP_MS
        };
        loop {
            if shutdown.is_fired() {
                return;
            }
            if !matches!(self.store.maintenance_leader().await, Ok(true)) {
                tokio::select! {
                    () = tokio::time::sleep(LEADER_RETRY) => continue,
                    () = shutdown.clone().wait() => return,
                }
            }
            // Armed before the pass: a due time set during it still wakes us.
            let woken = signal.schedule_woken();
            tokio::pin!(woken);
            let now = self.clock.now();
            signal.set_next_schedule(now.plus_ms(idle_ms));
            let next = match self.schedules.pass(now).await {
                Ok(true) => continue,
                Ok(false) => match self.schedules.next_due().await {
                    Ok(next) => {
                        next.map_or(now.plus_ms(idle_ms), |due| due.min(now.plus_ms(idle_ms)))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read when the next schedule is due");
                        now.plus_ms(RETRY_AFTER_ERROR_MS)
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "schedule pass failed");
                    now.plus_ms(RETRY_AFTER_ERROR_MS)
                }
            };
            signal.set_next_schedule(next);
            let sleep = Duration::from_millis(next.millis_since(self.clock.now()));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = &mut woken => {}
                () = shutdown.clone().wait() => return,
            }
        }
    }
}
