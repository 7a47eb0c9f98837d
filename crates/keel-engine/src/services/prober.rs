//! Runs the jobs of every namespace's `keel.monitor` queue: probes fired
//! by monitors' hidden schedules, heartbeats' checks, escalation steps and
//! resolution notices. One task per such queue leases them like any
//! worker (so on PostgreSQL any node takes any of them, once), does the
//! work, records the result and acks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use keel_core::monitor::{MonitorJob, SCHEDULE_PREFIX, monitor_queue};
use keel_core::{Error, ErrorCode, Namespace, QueueRef, Retry};
use keel_store::{Ack, AckOutcome, LeaseRequest, LeasedJob};
use tokio::sync::{Semaphore, mpsc};

use super::pusher::flush_acks;
use crate::Shutdown;
use crate::jobs::JobService;
use crate::monitors::MonitorService;
use crate::monitors::probe::{Clients, check};
use crate::queues::QueueService;

const RESCAN_EVERY: Duration = Duration::from_secs(5);
const IDLE_WAKE: Duration = Duration::from_secs(5);
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(500);
/// Probes of one namespace in flight on this node: mostly waiting on the
/// network, so many.
const IN_FLIGHT: usize = 512;
const LEASE_BATCH: u32 = 128;
/// The tag a schedule's fire carries: the schedule's name.
const SCHEDULE_TAG: &str = "keel.schedule";

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
        let mut running: HashSet<QueueRef> = HashSet::new();
        let mut tasks = Vec::new();
        let ours = monitor_queue();
        loop {
            let changed = self.monitors.queues_woken.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.queues.policies().await {
                Ok(policies) => {
                    for (queue, _) in policies {
                        if queue.queue != ours || running.contains(&queue) {
                            continue;
                        }
                        running.insert(queue.clone());
                        tasks.push(tokio::spawn(self.clone().work(queue, shutdown.clone())));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the monitor queues"),
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(RESCAN_EVERY) => {}
                () = shutdown.clone().wait() => break,
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// One namespace's queue, until shutdown; work in flight finishes and
    /// its acks are written.
    async fn work(self, queue: QueueRef, shutdown: Shutdown) {
        let (acks, pending) = mpsc::channel(2 * IN_FLIGHT);
        let flusher = tokio::spawn(flush_acks(
            self.jobs.clone(),
            queue.namespace.clone(),
            pending,
        ));
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        while !shutdown.is_fired() {
            let Ok(first) = slots.clone().acquire_owned().await else {
                break;
            };
            let more = (slots.available_permits() as u32).min(LEASE_BATCH - 1);
            let request = LeaseRequest {
                queue: queue.clone(),
                worker_id: "keel-prober".to_owned(),
                max_jobs: 1 + more,
                lease_ms: None,
            };
            let leased = tokio::select! {
                leased = self.jobs.lease(&request, IDLE_WAKE) => leased,
                () = shutdown.clone().wait() => break,
            };
            let jobs = match leased {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "cannot lease monitor jobs");
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for job in jobs {
                let slot = match first.take() {
                    Some(slot) => slot,
                    None => match slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                };
                let (this, namespace, acks) = (self.clone(), queue.namespace.clone(), acks.clone());
                tokio::spawn(async move {
                    let token = job.lease_token;
                    let outcome = match this.handle(&namespace, &job).await {
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
                    let _ = acks.send((Ack { token, outcome }, slot)).await;
                });
            }
        }
        drop(acks);
        let _ = slots.acquire_many(IN_FLIGHT as u32).await;
        let _ = flusher.await;
    }

    async fn handle(&self, namespace: &Namespace, job: &LeasedJob) -> Result<(), Error> {
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
                let recorded = monitors.record(namespace, &monitor, result).await?;
                if recorded.change == keel_core::monitor::Change::Open {
                    crate::metrics::incident(namespace, "opened");
                }
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
