//! The job service: every change to jobs goes through here, whoever asks (the
//! HTTP API, the step runner, the maintenance service), so that each one
//! counts the same metrics and rates and tells the same owner when a job ends.
//! An enqueue is admitted here too (batch bounds, the namespace's rate and
//! byte quotas, the queue's policy), whichever edge it came through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keel_core::job::JobRequest;
use keel_core::quota::RateKind;
use keel_core::{
    Clock, Error, ErrorCode, Job, JobId, JobState, LeaseToken, Limits, Namespace, NewJob,
    QueueName, QueueRef, Timestamp,
};
use keel_store::{
    Ack, AckOutcome, Acked, Enqueued, JobFilter, JobPage, JobStore, MaintenanceReport,
    MaintenanceStore, ReadySignal, RedriveSelection,
};
use serde_json::value::RawValue;

mod lease;

use self::lease::LeaseCalls;
use crate::Shutdown;
use crate::namespaces::NamespaceService;
use crate::owners::Owners;
use crate::queues::QueueService;
use crate::rates::{Event, OwnedCounts, Rates};
use crate::slos::SloService;

/// What the job service is built from.
pub(crate) struct JobDeps {
    pub store: Arc<dyn JobStore>,
    pub maintenance: Arc<dyn MaintenanceStore>,
    pub signal: ReadySignal,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub owners: Arc<Owners>,
    pub queues: Arc<QueueService>,
    pub namespaces: Arc<NamespaceService>,
    pub slos: Arc<SloService>,
    pub rates: Arc<Rates>,
}

pub struct JobService {
    store: Arc<dyn JobStore>,
    maintenance: Arc<dyn MaintenanceStore>,
    signal: ReadySignal,
    clock: Arc<dyn Clock>,
    limits: Limits,
    shutdown: Shutdown,
    owners: Arc<Owners>,
    queues: Arc<QueueService>,
    namespaces: Arc<NamespaceService>,
    rates: Arc<Rates>,
    slos: Arc<SloService>,
    /// Workers asking this node for each queue's jobs (a liveness hint, on
    /// this node's monotonic clock).
    lease_calls: Mutex<HashMap<QueueRef, LeaseCalls>>,
}

impl JobService {
    pub(crate) fn new(deps: JobDeps) -> Self {
        JobService {
            store: deps.store,
            maintenance: deps.maintenance,
            signal: deps.signal,
            clock: deps.clock,
            limits: deps.limits,
            shutdown: deps.shutdown,
            owners: deps.owners,
            queues: deps.queues,
            namespaces: deps.namespaces,
            rates: deps.rates,
            slos: deps.slos,
            lease_calls: Mutex::default(),
        }
    }

    /// Enqueues one job, once admitted (see [`JobService::enqueue_batch`]).
    pub async fn enqueue(&self, queue: &QueueRef, request: JobRequest) -> Result<Enqueued, Error> {
        let jobs = self.admit(queue, vec![request], false).await?;
        self.write(queue, jobs)
            .await?
            .pop()
            .ok_or_else(|| Error::internal("no answer for the enqueue"))
    }

    /// Enqueues a batch atomically, once admitted: 1 to `max_batch` jobs
    /// (400 `batch_too_large`), within the namespace's enqueue rate (429
    /// `rate_limited`) and `max_bytes` (429 `quota_exceeded`), each valid
    /// under the queue's policy (an error names the job: `jobs[i]: …`).
    pub async fn enqueue_batch(
        &self,
        queue: &QueueRef,
        requests: Vec<JobRequest>,
    ) -> Result<Vec<Enqueued>, Error> {
        let jobs = self.admit(queue, requests, true).await?;
        self.write(queue, jobs).await
    }

    async fn admit(
        &self,
        queue: &QueueRef,
        requests: Vec<JobRequest>,
        batch: bool,
    ) -> Result<Vec<NewJob>, Error> {
        if requests.is_empty() {
            return Err(Error::invalid("jobs must hold at least one job"));
        }
        if requests.len() > self.limits.max_batch {
            return Err(Error::new(
                ErrorCode::BatchTooLarge,
                format!(
                    "a batch holds at most {} jobs; this one has {}",
                    self.limits.max_batch,
                    requests.len()
                ),
            ));
        }
        self.namespaces
            .take(&queue.namespace, RateKind::Enqueue, requests.len() as u64)
            .await?;
        let policy = self.queues.policy(queue).await?;
        let now = self.clock.now();
        let jobs = requests
            .into_iter()
            .enumerate()
            .map(|(i, req)| {
                req.validate(&policy, &self.limits, now).map_err(|e| {
                    if batch {
                        Error::new(e.code, format!("jobs[{i}]: {}", e.message))
                    } else {
                        e
                    }
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let bytes = jobs.iter().map(|j| j.payload.get().len() as u64).sum();
        self.namespaces.take_bytes(&queue.namespace, bytes).await?;
        Ok(jobs)
    }

    async fn write(&self, queue: &QueueRef, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, Error> {
        let now = self.clock.now();
        let enqueued = self.store.jobs_enqueue(queue, jobs, now).await?;
        let fresh = enqueued
            .iter()
            .filter(|e| !e.deduplicated && !e.debounced)
            .count() as u64;
        self.rates.enqueued(queue, fresh, now);
        Ok(enqueued)
    }

    /// Enqueues jobs the engine made itself (a run's timers), valid by
    /// construction: no admission, counted like any enqueue.
    pub(crate) async fn enqueue_new(
        &self,
        queue: &QueueRef,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, Error> {
        self.write(queue, jobs).await
    }

    /// Counts the jobs an owner's write created (a run's steps, a
    /// subscription's deliveries, a schedule's fires) like any enqueue.
    pub(crate) fn owned_enqueued(&self, counts: &OwnedCounts) {
        self.rates.owned_enqueued(counts, self.clock.now());
    }

    pub async fn get(&self, namespace: &Namespace, id: JobId) -> Result<Job, Error> {
        self.store.job_get(namespace, id).await
    }

    /// Newest first, cursor-paged.
    pub async fn list(&self, namespace: &Namespace, filter: &JobFilter) -> Result<JobPage, Error> {
        self.store.jobs_list(namespace, filter).await
    }

    /// Completes or fails leased jobs, each on its own; counts the outcomes
    /// and tells the owners of the jobs that ended.
    pub async fn ack(
        &self,
        namespace: &Namespace,
        acks: Vec<Ack>,
    ) -> Result<Vec<Result<Acked, Error>>, Error> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        // Kept so that an owned job's owner hears the outcome without reading
        // the job back.
        let outcomes: Vec<AckOutcome> = acks.iter().map(|a| a.outcome.clone()).collect();
        let results = self.store.jobs_ack(namespace, acks, now).await?;
        self.ended(namespace, &results, &outcomes, now);
        Ok(results)
    }

    /// What follows jobs' ends, however they were written (acks, a
    /// handler's commits): their owners told, metrics, SLOs and rates.
    pub(crate) fn ended(
        &self,
        namespace: &Namespace,
        results: &[Result<Acked, Error>],
        outcomes: &[AckOutcome],
        now: Timestamp,
    ) {
        for (acked, outcome) in results.iter().zip(outcomes) {
            if let Ok(acked) = acked {
                self.owners.job_ended(namespace, acked, Some(outcome));
            }
        }
        // Count per queue, so that a batch of a thousand acks touches each
        // metric once instead of a thousand times.
        let mut tally: HashMap<&QueueName, (u64, u64, u64)> = HashMap::new();
        for acked in results.iter().flatten() {
            let (completed, failed, dead) = tally.entry(&acked.queue).or_default();
            match acked.state {
                JobState::Succeeded => *completed += 1,
                JobState::Dead => {
                    *failed += 1;
                    *dead += 1;
                }
                _ => *failed += 1,
            }
        }
        for (queue, (completed, failed, dead)) in tally {
            let queue = QueueRef {
                namespace: namespace.clone(),
                queue: queue.clone(),
            };
            crate::metrics::job_completed(&queue, completed);
            crate::metrics::job_failed(&queue, failed);
            crate::metrics::job_dead(&queue, dead);
            self.slos.queue_ended(&queue, now, completed, dead);
            self.rates.record(&queue, Event::Completed, completed, now);
            self.rates.record(&queue, Event::Failed, failed, now);
        }
    }

    /// Extends a lease; refused (409) for a stale token.
    pub async fn heartbeat(
        &self,
        namespace: &Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
    ) -> Result<Timestamp, Error> {
        self.store
            .job_heartbeat(namespace, token, lease_ms, self.clock.now())
            .await
    }

    /// Cancels a job its owner no longer needs (the owner decided it, so it
    /// is not told).
    pub(crate) async fn cancel_for_owner(
        &self,
        namespace: &Namespace,
        id: JobId,
    ) -> Result<Acked, Error> {
        self.store.job_cancel(namespace, id, self.clock.now()).await
    }

    /// Cancels an unfinished job and tells its owner.
    pub async fn cancel(&self, namespace: &Namespace, id: JobId) -> Result<Acked, Error> {
        let acked = self
            .store
            .job_cancel(namespace, id, self.clock.now())
            .await?;
        self.owners.job_ended(namespace, &acked, None);
        Ok(acked)
    }

    /// Dead jobs back to ready, attempts reset.
    pub async fn redrive(
        &self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
    ) -> Result<Vec<JobId>, Error> {
        self.store
            .jobs_redrive(queue, selection, payload, self.clock.now())
            .await
    }

    /// One maintenance pass: promotes due jobs, reclaims expired leases,
    /// counts them as failed attempts and tells the owners of jobs that died.
    pub async fn maintain(&self) -> Result<MaintenanceReport, Error> {
        let now = self.clock.now();
        let report = self.maintenance.maintenance_run(now).await?;
        for queue in &report.expired_to_ready {
            crate::metrics::job_failed(queue, 1);
        }
        for queue in &report.expired_to_dead {
            crate::metrics::job_failed(queue, 1);
            crate::metrics::job_dead(queue, 1);
            self.slos.queue_ended(queue, now, 0, 1);
        }
        for (namespace, acked) in &report.dead_owned {
            self.owners.job_ended(namespace, acked, None);
        }
        Ok(report)
    }
}
