//! Deletes finished jobs past their queue's retention, expired idempotency
//! keys, finished runs past the run retention and events past their topic's
//! retention, endpoints' delivery attempts past theirs and audit entries
//! past the audit retention, SLO minutes past the budget's period, and
//! notifications past the longest dedup window (so a duplicate always names
//! a notification still there) with expired dedup and request keys, once a
//! minute.

use std::sync::Arc;
use std::time::Duration;

use keel_core::{Clock, Timestamp};
use keel_store::Store;

use crate::{EngineConfig, Shutdown};

const EVERY: Duration = Duration::from_secs(60);
/// Runs or events deleted per statement: a pass deletes in chunks, so that
/// no single write holds the store for long.
const CHUNK: u32 = 1000;

/// Retention prunes every domain's history, so it alone of the services
/// holds the whole store: pruning is a backend's bounded delete per domain,
/// with no side effect to share with any other caller.
pub struct Retention {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
}

impl Retention {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Self {
        Retention {
            store,
            clock,
            config,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                () = shutdown.clone().wait() => return,
            }
            // On a shared database one node prunes for all: the maintenance leader.
            if !matches!(self.store.maintenance_leader().await, Ok(true)) {
                continue;
            }
            match self.store.jobs_prune(self.clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "pruned finished jobs past retention"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
            self.prune_runs().await;
            self.prune_events().await;
            self.prune_attempts().await;
            self.prune_audit().await;
            self.prune_slo_minutes().await;
            self.prune_notifications().await;
            self.prune_monitor_results().await;
        }
    }

    /// Monitors' results past a month, their hourly uptime past a year.
    async fn prune_monitor_results(&self) {
        let now = self.clock.now();
        let results = finished_before(now, crate::monitors::RESULT_RETENTION_MS);
        let hours = finished_before(now, crate::monitors::UPTIME_RETENTION_MS);
        let pruned = in_chunks(|chunk| self.store.monitors_prune(results, hours, chunk)).await;
        report(pruned, "monitor results");
    }

    async fn prune_notifications(&self) {
        let now = self.clock.now();
        let before = Timestamp::from_millis(
            now.as_millis() - keel_core::notification::MAX_DEDUP_WINDOW_MS as i64,
        );
        let pruned = in_chunks(|chunk| self.store.notifications_prune(now, before, chunk)).await;
        report(pruned, "notifications");
    }

    /// SLO minutes older than the error budget's period.
    async fn prune_slo_minutes(&self) {
        let period = keel_core::slo::PERIOD_MINUTES;
        let before = keel_core::slo::minute(self.clock.now()) - period;
        match self.store.slo_prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(minutes = n, "pruned SLO minutes past the budget's period"),
            Err(e) => tracing::warn!(error = %e, "SLO minutes prune failed"),
        }
    }

    async fn prune_audit(&self) {
        let before = finished_before(self.clock.now(), self.config.audit_retention_ms);
        let pruned = in_chunks(|chunk| self.store.audit_prune(before, chunk)).await;
        report(pruned, "audit entries");
    }

    async fn prune_events(&self) {
        let now = self.clock.now();
        let store = &self.store;
        let pruned = in_chunks(|chunk| store.events_prune(now, chunk)).await;
        report(pruned, "events");
    }

    async fn prune_attempts(&self) {
        let before = finished_before(self.clock.now(), self.config.attempt_retention_ms);
        let pruned = in_chunks(|chunk| self.store.attempts_prune(before, chunk)).await;
        report(pruned, "delivery attempts");
    }

    async fn prune_runs(&self) {
        let before = finished_before(self.clock.now(), self.config.run_retention_ms);
        let pruned = in_chunks(|chunk| self.store.runs_prune(before, chunk)).await;
        report(pruned, "finished runs");
    }
}

/// Calls `prune` with a chunk size until a call removes less than a chunk;
/// the total removed, and the error that stopped it, if one did.
async fn in_chunks<F, Fut>(mut prune: F) -> (u64, Option<keel_core::Error>)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<u64, keel_core::Error>>,
{
    let mut pruned = 0;
    loop {
        match prune(CHUNK).await {
            Ok(n) => {
                pruned += n;
                if n < u64::from(CHUNK) {
                    return (pruned, None);
                }
            }
            Err(e) => return (pruned, Some(e)),
        }
    }
}

fn report((pruned, failed): (u64, Option<keel_core::Error>), what: &str) {
    if let Some(e) = failed {
        tracing::warn!(error = %e, what, "retention pass failed");
    }
    if pruned > 0 {
        tracing::info!(pruned, what, "pruned past retention");
    }
}

/// Runs finished at or before this are past a retention of `retention_ms`.
/// A retention past what a timestamp holds (a huge flag value) keeps every run.
fn finished_before(now: Timestamp, retention_ms: u64) -> Timestamp {
    let retention = i64::try_from(retention_ms).unwrap_or(i64::MAX);
    Timestamp::from_millis(now.as_millis().saturating_sub(retention))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_lies_one_retention_back_and_never_ahead() {
        let now = Timestamp::from_millis(10_000);
        assert_eq!(finished_before(now, 4_000), Timestamp::from_millis(6_000));
        assert!(finished_before(now, u64::MAX) < Timestamp::from_millis(0));
        assert_eq!(finished_before(now, 0), now);
    }
}
