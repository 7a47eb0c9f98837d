//! The loop the services that work queues inside Keel share (the notifier's
//! `keel.notify.{channel}` queues, the prober's `keel.monitor` queues, the
//! handler runner's queues and its effects' queues): the queues the worker
//! picks among those with a policy, looked for again when it is woken and
//! every 5 s; one task per queue that leases jobs while it has room for
//! them, hands each to the worker and finishes what it answers in batches
//! (acks, or a handler's commits). At shutdown the work in flight finishes
//! and is written.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_core::{Namespace, QueuePolicy, QueueRef};
use keel_store::{Ack, LeaseRequest, LeasedJob};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use crate::Shutdown;
use crate::jobs::JobService;
use crate::queues::QueueService;

const RESCAN_EVERY: Duration = Duration::from_secs(5);
const IDLE_WAKE: Duration = Duration::from_secs(5);
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(500);
/// Finished jobs written per batch.
const FINISH_BATCH: usize = 256;

/// A service that works some of Keel's own queues.
pub(super) trait QueueWorker: Clone + Send + Sync + 'static {
    /// The lease's `worker_id`, and what the logs call the jobs.
    const WORKER_ID: &'static str;
    /// Jobs of one queue in flight on this node.
    const IN_FLIGHT: usize;
    /// The most jobs one lease takes.
    const LEASE_BATCH: u32;

    /// What working one job answers, to be written by [`Self::finish`].
    type Done: Send + 'static;

    /// Whether the worker works this queue.
    fn picks(&self, queue: &QueueRef, policy: &QueuePolicy) -> bool;
    /// Fired when a queue it picks may have been made on this node.
    fn woken(&self) -> &Notify;
    fn jobs(&self) -> &Arc<JobService>;
    fn queues(&self) -> &Arc<QueueService>;
    /// Works one job; how to end it.
    fn handle(
        &self,
        namespace: &Namespace,
        job: LeasedJob,
    ) -> impl Future<Output = Self::Done> + Send;
    /// Writes a batch of ends (for most workers: [`ack_all`]).
    fn finish(
        &self,
        namespace: &Namespace,
        done: Vec<Self::Done>,
    ) -> impl Future<Output = ()> + Send;
}

/// Acks a batch, logging what was refused.
pub(crate) async fn ack_all(jobs: &JobService, namespace: &Namespace, acks: Vec<Ack>) {
    match jobs.ack(namespace, acks).await {
        Ok(results) => {
            for e in results.iter().filter_map(|r| r.as_ref().err()) {
                tracing::debug!(error = %e, "an ack was refused");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot ack jobs; their leases expire and they go again");
        }
    }
}

/// Works every queue `worker` picks until shutdown.
pub(super) async fn run<W: QueueWorker>(worker: W, shutdown: Shutdown) {
    let mut running: HashSet<QueueRef> = HashSet::new();
    let mut tasks = Vec::new();
    loop {
        let changed = worker.woken().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        match worker.queues().policies().await {
            Ok(policies) => {
                for (queue, policy) in policies {
                    if !worker.picks(&queue, &policy) || running.contains(&queue) {
                        continue;
                    }
                    running.insert(queue.clone());
                    tasks.push(tokio::spawn(work(worker.clone(), queue, shutdown.clone())));
                }
            }
            Err(e) => {
                tracing::warn!(worker = W::WORKER_ID, error = %e, "cannot read the queues to work");
            }
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

/// One queue, until shutdown.
async fn work<W: QueueWorker>(worker: W, queue: QueueRef, shutdown: Shutdown) {
    let (acks, pending) = mpsc::channel(2 * W::IN_FLIGHT);
    let flusher = tokio::spawn(flush(worker.clone(), queue.namespace.clone(), pending));
    let slots = Arc::new(Semaphore::new(W::IN_FLIGHT));
    while !shutdown.is_fired() {
        let Ok(first) = slots.clone().acquire_owned().await else {
            break;
        };
        let more = (slots.available_permits() as u32).min(W::LEASE_BATCH - 1);
        let request = LeaseRequest {
            queue: queue.clone(),
            worker_id: W::WORKER_ID.to_owned(),
            max_jobs: 1 + more,
            lease_ms: None,
        };
        let leased = tokio::select! {
            leased = worker.jobs().lease(&request, IDLE_WAKE) => leased,
            () = shutdown.clone().wait() => break,
        };
        let jobs = match leased {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(%queue, worker = W::WORKER_ID, error = %e, "cannot lease");
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
            let (worker, namespace, acks) = (worker.clone(), queue.namespace.clone(), acks.clone());
            tokio::spawn(async move {
                let ack = worker.handle(&namespace, job).await;
                let _ = acks.send((ack, slot)).await;
            });
        }
    }
    drop(acks);
    let _ = slots.acquire_many(W::IN_FLIGHT as u32).await;
    let _ = flusher.await;
}

/// Writes a queue's ends in batches, as they come: one batch for every job
/// that finished while the previous batch was being written. A job's slot
/// is freed only once its end is written, so a task never holds more leases
/// than its slots.
async fn flush<W: QueueWorker>(
    worker: W,
    namespace: Namespace,
    mut pending: mpsc::Receiver<(W::Done, OwnedSemaphorePermit)>,
) {
    let mut batch = Vec::with_capacity(FINISH_BATCH);
    while pending.recv_many(&mut batch, FINISH_BATCH).await > 0 {
        let (done, slots): (Vec<W::Done>, Vec<_>) = std::mem::take(&mut batch).into_iter().unzip();
        worker.finish(&namespace, done).await;
        drop(slots);
    }
}
