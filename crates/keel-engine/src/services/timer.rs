//! The schedule timer: fires the slots that came due, then sleeps until the
//! next one (the store says when), woken early when a write sets an earlier
//! due time, here or (through the store) on another node. On a shared store
//! only the maintenance leader fires; the store's revision compare would
//! keep a second firer from firing a slot twice anyway.

use std::sync::Arc;
use std::time::Duration;

use crate::{Engine, Shutdown};

/// The longest sleep on a store of its own: a safety net, not the mechanism.
const IDLE_WAKE_MS: u64 = 60_000;
/// Pause after a store error before trying again.
const RETRY_AFTER_ERROR_MS: u64 = 500;
/// How often a node that does not lead asks again.
const LEADER_RETRY: Duration = Duration::from_secs(2);

pub struct Timer {
    engine: Arc<Engine>,
}

impl Timer {
    pub fn new(engine: Arc<Engine>) -> Self {
        Timer { engine }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let engine = &self.engine;
        let signal = engine.store.ready_signal();
        // On a shared store, due times set on other nodes further off than
        // their NOTIFY threshold are found by looking this often.
        let idle_ms = if engine.store.sole_writer() {
            IDLE_WAKE_MS
        } else {
            keel_store::MAINTENANCE_MAX_SLEEP_MS
        };
        loop {
            if shutdown.is_fired() {
                return;
            }
            if !matches!(engine.store.maintenance_leader().await, Ok(true)) {
                tokio::select! {
                    () = tokio::time::sleep(LEADER_RETRY) => continue,
                    () = shutdown.clone().wait() => return,
                }
            }
            // Armed before the pass: a due time set during it still wakes us.
            let woken = signal.schedule_woken();
            tokio::pin!(woken);
            let now = engine.now();
            signal.set_next_schedule(now.plus_ms(idle_ms));
            let next = match engine.schedules().pass(now).await {
                Ok(true) => continue,
                Ok(false) => match engine.store.schedules_next_due().await {
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
            let sleep = Duration::from_millis(next.millis_since(engine.now()));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = &mut woken => {}
                () = shutdown.clone().wait() => return,
            }
        }
    }
}
