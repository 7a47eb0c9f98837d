//! Runs the jobs on Keel's own queue: the HTTP calls of `http` steps, the
//! notifications of `notify` steps and the timers of runs. It is a worker like any other (lease, do, ack), so its jobs
//! get the job core's retries, backoff and lease expiry, and on PostgreSQL any
//! node may take them. Also sweeps running runs after a start, and then now and
//! then, to resume what a crash interrupted.

use std::sync::Arc;
use std::time::Duration;

use keel_core::notification::NotifyRequest;
use keel_core::workflow::RunId;
use keel_core::{Clock, Error, Namespace, Retry};
use keel_store::{
    Accepted, Ack, AckOutcome, Acked, LeaseRequest, LeasedJob, MaintenanceStore, RunStore,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Shutdown;
use crate::jobs::JobService;
use crate::notifications::NotificationService;
use crate::workflows::{Driver, Hint, Op, SystemJob, job_outcome, system_queue};

/// Calls and timers handled at once.
const CONCURRENCY: usize = 64;
/// The longest wait for the queue's ready signal before looking again.
const IDLE_WAKE: Duration = Duration::from_secs(5);
/// Pause after a store error before leasing again.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(500);
/// How often the maintenance leader looks for runs that no event will move.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_PAGE: u32 = 100;

#[derive(Clone)]
pub struct StepRunner {
    jobs: Arc<JobService>,
    workflows: Arc<Driver>,
    notifications: Arc<NotificationService>,
    clock: Arc<dyn Clock>,
}

impl StepRunner {
    pub fn new(
        jobs: Arc<JobService>,
        workflows: Arc<Driver>,
        notifications: Arc<NotificationService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        StepRunner {
            jobs,
            workflows,
            notifications,
            clock,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let queue = system_queue();
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        while !shutdown.is_fired() {
            let free = slots.available_permits().max(1) as u32;
            let req = LeaseRequest {
                queue: queue.clone(),
                worker_id: "keel-steps".to_owned(),
                max_jobs: free.min(32),
                lease_ms: None,
            };
            let leased = match self.jobs.lease(&req, IDLE_WAKE).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot lease workflow jobs");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER_ERROR) => continue,
                        () = shutdown.clone().wait() => break,
                    }
                }
            };
            for job in leased {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let runner = self.clone();
                tokio::spawn(async move {
                    handle(&runner, job).await;
                    drop(slot);
                });
            }
        }
        // Let calls in flight finish and ack.
        let _ = slots.acquire_many(CONCURRENCY as u32).await;
    }
}

async fn handle(runner: &StepRunner, job: LeasedJob) {
    let driver = &runner.workflows;
    let system: SystemJob = match serde_json::from_str(job.payload.get()) {
        Ok(s) => s,
        Err(e) => {
            let fail = fail(format!("not a workflow job: {e}"), false, None);
            ack(runner, &job, fail).await;
            return;
        }
    };
    match system {
        SystemJob::Wake { namespace, run, at } => {
            let now = runner.clock.now();
            if at > now {
                // Promoted early (clocks of two nodes differ): wait the rest.
                let wait = fail("not yet".to_owned(), true, Some(at.millis_since(now)));
                ack(runner, &job, wait).await;
                return;
            }
            let Ok(namespace) = Namespace::new(&namespace) else {
                ack(runner, &job, fail("bad namespace".to_owned(), false, None)).await;
                return;
            };
            let outcome = match driver
                .advance(&namespace, run, Hint::Nothing, Op::Advance)
                .await
            {
                Ok(_) => AckOutcome::Complete { result: None },
                Err(e) if e.code == keel_core::ErrorCode::NotFound => {
                    AckOutcome::Complete { result: None }
                }
                Err(e) => fail(e.to_string(), true, None),
            };
            ack(runner, &job, outcome).await;
        }
        SystemJob::Http {
            namespace,
            run,
            request,
        } => {
            let called = match keel_core::Namespace::new(&namespace) {
                Ok(ns) => {
                    driver
                        .http
                        .call(&ns, &request, job.traceparent.as_ref())
                        .await
                }
                Err(e) => Err(crate::workflows::http::CallError {
                    message: e.message,
                    retry: false,
                }),
            };
            let outcome = match called {
                Ok(body) => AckOutcome::Complete {
                    result: serde_json::value::RawValue::from_string(body.to_string()).ok(),
                },
                Err(e) => fail(e.message, e.retry, None),
            };
            finish(runner, &job, (&namespace, run), outcome).await;
        }
        SystemJob::Notify {
            namespace,
            run,
            request,
        } => {
            let outcome = notify(runner, &namespace, request).await;
            finish(runner, &job, (&namespace, run), outcome).await;
        }
    }
}

/// Acks a step's system job and, once it is final, advances its run.
async fn finish(
    runner: &StepRunner,
    job: &LeasedJob,
    (namespace, run): (&str, RunId),
    outcome: AckOutcome,
) {
    let acked = ack(runner, job, outcome.clone()).await;
    if let Some(acked) = acked.filter(|a| a.state.is_final())
        && let Ok(namespace) = Namespace::new(namespace)
    {
        let hint = Hint::Job(job.id, job_outcome(&acked, Some(&outcome)));
        runner
            .workflows
            .advance_logged(&namespace, run, hint, Op::Advance)
            .await;
    }
}

/// Sends a `notify` step's notification; its result is the notification's
/// id and its deliveries' statuses. A request the server refuses (a 4xx)
/// fails the step at once; anything else is tried again.
async fn notify(runner: &StepRunner, namespace: &str, request: Value) -> AckOutcome {
    let request: NotifyRequest = match serde_json::from_value(request) {
        Ok(request) => request,
        Err(e) => return fail(format!("notify: not a notification: {e}"), false, None),
    };
    let namespace = match Namespace::new(namespace) {
        Ok(namespace) => namespace,
        Err(e) => return fail(e.message, false, None),
    };
    match runner.notifications.send(&namespace, &request, None).await {
        Ok(accepted) => {
            let (id, deliveries) = match &accepted {
                Accepted::New(n) | Accepted::Replayed(n) => (
                    n.id,
                    n.deliveries
                        .iter()
                        .map(|d| json!({"channel": d.channel, "status": d.status, "id": d.id}))
                        .collect::<Vec<_>>(),
                ),
                Accepted::Duplicate { first, channels } => (
                    *first,
                    channels
                        .iter()
                        .map(|c| json!({"channel": c, "status": "suppressed_duplicate"}))
                        .collect(),
                ),
            };
            let result = json!({"id": id, "deliveries": deliveries});
            AckOutcome::Complete {
                result: serde_json::value::RawValue::from_string(result.to_string()).ok(),
            }
        }
        Err(e) => {
            let definite = e.code.http_status() < 500 && e.code.http_status() != 429;
            fail(
                format!("notify: {}", e.message),
                !definite,
                e.retry_after_ms,
            )
        }
    }
}

fn fail(message: String, retry: bool, retry_after_ms: Option<u64>) -> AckOutcome {
    AckOutcome::Fail {
        message,
        retry: Retry {
            retry,
            retry_after_ms,
        },
    }
}

/// Acks a system job; what became of it, unless the ack was refused.
async fn ack(runner: &StepRunner, job: &LeasedJob, outcome: AckOutcome) -> Option<Acked> {
    let queue = system_queue();
    let acks = vec![Ack {
        token: job.lease_token,
        outcome,
    }];
    match runner.jobs.ack(&queue.namespace, acks).await {
        Ok(mut results) => match results.pop() {
            Some(Ok(acked)) => Some(acked),
            Some(Err(e)) => {
                log_lost(job, &e);
                None
            }
            None => None,
        },
        Err(e) => {
            log_lost(job, &e);
            None
        }
    }
}

fn log_lost(job: &LeasedJob, e: &Error) {
    tracing::warn!(job = %job.id, error = %e, "cannot ack a workflow job; its lease will expire and it runs again");
}

/// Resumes running runs: at start, then every [`SWEEP_EVERY`] on the
/// maintenance leader. It catches what no event reports: a crash between a
/// job's ack and its run's advance, a lease that expired on its last attempt.
pub struct RunSweep {
    workflows: Arc<Driver>,
    runs: Arc<dyn RunStore>,
    leader: Arc<dyn MaintenanceStore>,
}

impl RunSweep {
    pub fn new(
        workflows: Arc<Driver>,
        runs: Arc<dyn RunStore>,
        leader: Arc<dyn MaintenanceStore>,
    ) -> Self {
        RunSweep {
            workflows,
            runs,
            leader,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        loop {
            if matches!(self.leader.maintenance_leader().await, Ok(true)) {
                self.sweep(&shutdown).await;
            }
            tokio::select! {
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                () = shutdown.clone().wait() => return,
            }
        }
    }

    async fn sweep(&self, shutdown: &Shutdown) {
        let mut cursor = None;
        loop {
            let page = match self.runs.runs_active(cursor, SWEEP_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list running runs");
                    return;
                }
            };
            for run in page.runs {
                if shutdown.is_fired() {
                    return;
                }
                self.workflows
                    .advance_logged(&run.namespace, run.id, Hint::All, Op::Advance)
                    .await;
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                return;
            }
        }
    }
}
