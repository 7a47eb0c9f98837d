//! Deletes finished jobs past their queue's retention, and expired idempotency
//! keys, once a minute.

use std::sync::Arc;
use std::time::Duration;

use crate::{Engine, Shutdown};

const EVERY: Duration = Duration::from_secs(60);

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
        }
    }
}
