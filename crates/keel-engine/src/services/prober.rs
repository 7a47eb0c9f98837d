//! Runs the jobs of every namespace's `keel.monitor` queue: probes fired
//! by monitors' hidden schedules, heartbeats' checks, escalation steps and
//! resolution notices, through the loop the notifier shares
//! (`queue_worker.rs`): leased like any worker's jobs, so on PostgreSQL any
//! node takes any of them, once.

use std::sync::Arc;

use keel_core::monitor::{MonitorJob, SCHEDULE_PREFIX, monitor_queue};
use keel_core::{Error, ErrorCode, Namespace, QueuePolicy, QueueRef, Retry};
use keel_store::{Ack, AckOutcome, LeasedJob};
use tokio::sync::Notify;

use super::queue_worker::{self, QueueWorker};
use crate::Shutdown;
use crate::jobs::JobService;
use crate::monitors::MonitorService;
use crate::monitors::probe::{Clients, check};
use crate::queues::QueueService;

/// The tag a schedule's fire carries: the schedule's name.
const SCHEDULE_TAG: &str = "keel.schedule";

impl QueueWorker for Prober {
    const WORKER_ID: &'static str = "keel-prober";
    /// Probes of one namespace in flight on this node: mostly waiting on
    /// the network, so many.
    const IN_FLIGHT: usize = 512;
    const LEASE_BATCH: u32 = 128;

    type Done = Ack;

    fn picks(&self, queue: &QueueRef, _policy: &QueuePolicy) -> bool {
        queue.queue == monitor_queue()
    }

    fn woken(&self) -> &Notify {
        &self.monitors.queues_woken
    }

    fn jobs(&self) -> &Arc<JobService> {
        &self.jobs
    }

    fn queues(&self) -> &Arc<QueueService> {
        &self.queues
    }

    async fn finish(&self, namespace: &Namespace, acks: Vec<Ack>) {
        super::queue_worker::ack_all(&self.jobs, namespace, acks).await;
    }

    async fn handle(&self, namespace: &Namespace, job: LeasedJob) -> Ack {
        let token = job.lease_token;
        let outcome = match self.work(namespace, &job).await {
            Ok(()) => AckOutcome::Complete { result: None },
            Err(e) => {
                tracing::warn!(%namespace, job = %job.id, error = %e, "a monitor job failed");
                AckOutcome::Fail {
                    message: e.message,
                    retry: Retry {
                        retry: true,
                        retry_after_ms: None,
                    },
                }
            }
        };
        Ack { token, outcome }
    }
}

#[derive(Clone)]
pub struct Prober {
    monitors: Arc<MonitorService>,
    jobs: Arc<JobService>,
    queues: Arc<QueueService>,
    clients: Clients,
}

impl Prober {
    pub fn new(
        monitors: Arc<MonitorService>,
        jobs: Arc<JobService>,
        queues: Arc<QueueService>,
    ) -> Self {
        let clients = Clients::new(monitors.guard);
        Prober {
            monitors,
            jobs,
            queues,
            clients,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        queue_worker::run(self, shutdown).await;
    }

    async fn work(&self, namespace: &Namespace, job: &LeasedJob) -> Result<(), Error> {
        let work: MonitorJob = serde_json::from_str(job.payload.get())
            .map_err(|e| Error::internal(format!("not a monitor job: {e}")))?;
        let monitors = &self.monitors;
        match work {
            MonitorJob::Probe | MonitorJob::Check => {
                let Some(name) = job
                    .tags
                    .get(SCHEDULE_TAG)
                    .and_then(|s| s.strip_prefix(SCHEDULE_PREFIX))
                else {
                    return Ok(());
                };
                let monitor = match monitors.stored(namespace, name).await {
                    Ok(monitor) => monitor,
                    Err(e) if e.code == ErrorCode::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                let spec = &monitor.spec;
                let now = monitors.clock.now();
                let result = match (&spec.http, &spec.tcp) {
                    (Some(http), _) => self.clients.http(http, now).await,
                    (_, Some(tcp)) => self.clients.tcp(tcp, now).await,
                    _ => check(&monitor.state, monitor.created_at, now),
                };
                monitors.record(namespace, &monitor, result).await?;
                Ok(())
            }
            MonitorJob::Escalate { incident, step } => {
                monitors.escalate(namespace, incident, step).await
            }
            MonitorJob::Resolved { incident } => {
                monitors.notify_resolved(namespace, incident).await
            }
            MonitorJob::TlsExpiry { monitor, days_left } => {
                monitors
                    .warn_tls(namespace, &monitor, days_left, job.id)
                    .await
            }
        }
    }
}
