//! Keeps connections' tokens fresh: works each namespace's
//! `keel.connections` queue (one refresh job per connection and version,
//! `connections::refresh`), and every few seconds asks for the refresh of
//! the connections whose refresh time came. Every node sweeps; the jobs'
//! idempotency keys make one job of what they all ask.

use std::sync::Arc;
use std::time::Duration;

use keel_core::{Namespace, QueuePolicy, QueueRef};
use keel_store::{Ack, LeasedJob};
use tokio::sync::Notify;

use super::queue_worker::{self, QueueWorker};
use crate::Shutdown;
use crate::connections::{ConnectionService, REFRESH_QUEUE};
use crate::jobs::JobService;
use crate::queues::QueueService;

const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Refresher {
    connections: Arc<ConnectionService>,
}

impl QueueWorker for Refresher {
    const WORKER_ID: &'static str = "keel-refresh";
    /// Refreshes of one namespace in flight on this node.
    const IN_FLIGHT: usize = 16;
    const LEASE_BATCH: u32 = 16;

    type Done = Ack;

    fn picks(&self, queue: &QueueRef, _policy: &QueuePolicy) -> bool {
        queue.queue.as_str() == REFRESH_QUEUE
    }

    fn woken(&self) -> &Notify {
        &self.connections.queues_woken
    }

    fn jobs(&self) -> &Arc<JobService> {
        self.connections.jobs()
    }

    fn queues(&self) -> &Arc<QueueService> {
        self.connections.queues()
    }

    async fn handle(&self, namespace: &Namespace, job: LeasedJob) -> Ack {
        let outcome = self.connections.refresh(namespace, &job).await;
        Ack {
            token: job.lease_token,
            outcome,
        }
    }

    async fn finish(&self, namespace: &Namespace, acks: Vec<Ack>) {
        queue_worker::ack_all(self.connections.jobs(), namespace, acks).await;
    }
}

impl Refresher {
    pub fn new(connections: Arc<ConnectionService>) -> Self {
        Refresher { connections }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let sweeper = tokio::spawn(sweep(self.connections.clone(), shutdown.clone()));
        queue_worker::run(self, shutdown).await;
        let _ = sweeper.await;
    }
}

async fn sweep(connections: Arc<ConnectionService>, shutdown: Shutdown) {
    loop {
        if let Err(e) = connections.sweep().await {
            tracing::warn!(error = %e, "cannot look for connections to refresh");
        }
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = shutdown.clone().wait() => return,
        }
    }
}
