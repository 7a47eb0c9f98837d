//! Deletes finished jobs past their queue's retention, expired idempotency
//! keys and finished runs past the run retention, once a minute.

use std::sync::Arc;
use std::time::Duration;

use keel_core::Timestamp;

use crate::{Engine, Shutdown};

const EVERY: Duration = Duration::from_secs(60);
/// Runs deleted per statement: a pass deletes in chunks, so that no single
/// write holds the store for long.
const RUNS_CHUNK: u32 = 1000;

pub struct Retention {
    engine: Arc<Engine>,
}

impl Retention {
    pub fn new(engine: Arc<Engine>) -> Self {
        Retention { engine }
    }

    pub async fn run(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                () = shutdown.clone().wait() => return,
            }
            // On a shared database one node prunes for all: the maintenance leader.
            if !matches!(self.engine.store.maintenance_leader().await, Ok(true)) {
                continue;
            }
            match self.engine.store.jobs_prune(self.engine.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "pruned finished jobs past retention"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
            self.prune_runs().await;
        }
    }

    async fn prune_runs(&self) {
        let engine = &self.engine;
        // A retention past i64 (a huge flag value) keeps every run.
        let retention = i64::try_from(engine.run_retention_ms).unwrap_or(i64::MAX);
        let before = Timestamp::from_millis(engine.now().as_millis().saturating_sub(retention));
        let mut pruned = 0;
        loop {
            match engine.store.runs_prune(before, RUNS_CHUNK).await {
                Ok(n) => {
                    pruned += n;
                    if n < u64::from(RUNS_CHUNK) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "run retention pass failed");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(runs = pruned, "pruned finished runs past retention");
        }
    }
}
