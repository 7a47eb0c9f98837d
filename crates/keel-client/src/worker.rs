//! The worker runtime: lease in batches, run handlers with bounded
//! concurrency, heartbeat while they run, acknowledge in batches, and drain on
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::{Client, LeasedJob};

/// Why a handler gave up on a job.
#[derive(Clone, Debug)]
pub struct JobFailure {
    pub message: String,
    /// `false` sends the job to `dead` at once.
    pub retry: bool,
    pub retry_after_ms: Option<u64>,
}

impl JobFailure {
    /// A failure that may be retried after the job's backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        JobFailure {
            message: message.into(),
            retry: true,
            retry_after_ms: None,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        JobFailure {
            message: message.into(),
            retry: false,
            retry_after_ms: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub namespace: String,
    pub queue: String,
    pub worker_id: String,
    /// Handlers running at once.
    pub concurrency: usize,
    /// Jobs leased ahead of a free handler, waiting here for one (as
    /// RabbitMQ's prefetch or graphile-worker's local queue). Their leases
    /// run while they wait, and their heartbeats start when they are leased.
    /// 0 leases only for free handlers.
    pub prefetch: usize,
    /// Most jobs asked for in one lease call.
    pub max_batch: u32,
    /// Long-poll time of one lease call.
    pub wait_ms: u64,
    /// Lease time asked for; a heartbeat goes out every third of it.
    pub lease_ms: u64,
    /// Lease calls running at once.
    pub leases_in_flight: usize,
}

impl WorkerOptions {
    pub fn new(namespace: &str, queue: &str) -> Self {
        WorkerOptions {
            namespace: namespace.to_owned(),
            queue: queue.to_owned(),
            worker_id: format!("rust-{}", std::process::id()),
            concurrency: 10,
            prefetch: 0,
            max_batch: 100,
            wait_ms: 5_000,
            lease_ms: 30_000,
            leases_in_flight: 2,
        }
    }
}

pub struct Worker {
    client: Client,
    options: WorkerOptions,
}

/// An acknowledgement waiting to be sent in the next batch.
enum Outcome {
    Complete(Value),
    Fail(Value),
}

const MAX_ACK_BATCH: usize = 1000;

impl Worker {
    pub fn new(client: Client, options: WorkerOptions) -> Self {
        Worker { client, options }
    }

    /// Runs `handler` on every job leased until `shutdown` resolves, then waits
    /// for the running handlers and sends their acknowledgements.
    ///
    /// Up to `leases_in_flight` lease calls run at once, each for the room
    /// free when it starts (handlers and prefetch together), so that a fresh
    /// batch is on its way while the last one runs (the server commits
    /// concurrent leases together). At shutdown, lease calls still waiting are
    /// dropped: anything they leased comes back after its lease, as with any
    /// worker that goes away. Jobs already leased still run.
    pub async fn run<H, F>(self, handler: H, shutdown: impl Future<Output = ()>)
    where
        H: Fn(LeasedJob) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Value, JobFailure>> + Send + 'static,
    {
        let Worker { client, options } = self;
        let handler = Arc::new(handler);
        let concurrency = options.concurrency.max(1);
        // `held` bounds the jobs leased and not yet acknowledged; `slots` the
        // handlers among them.
        let room = concurrency + options.prefetch;
        let held = Arc::new(Semaphore::new(room));
        let slots = Arc::new(Semaphore::new(concurrency));
        let lease_turns = Arc::new(Semaphore::new(options.leases_in_flight.max(1)));
        let (acks, ack_queue) = mpsc::unbounded_channel();
        let acker = tokio::spawn(send_acks(
            client.clone(),
            options.namespace.clone(),
            ack_queue,
        ));
        let mut leases = JoinSet::new();
        tokio::pin!(shutdown);

        loop {
            let turn = tokio::select! {
                turn = lease_turns.clone().acquire_owned() => match turn { Ok(t) => t, Err(_) => break },
                () = &mut shutdown => break,
            };
            let first = tokio::select! {
                permit = held.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
                () = &mut shutdown => break,
            };
            let mut permits = vec![first];
            while permits.len() < options.max_batch as usize {
                match held.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let (client, options, handler, acks, slots) = (
                client.clone(),
                options.clone(),
                handler.clone(),
                acks.clone(),
                slots.clone(),
            );
            leases.spawn(async move {
                let leased = client
                    .lease(
                        &options.namespace,
                        &options.queue,
                        &options.worker_id,
                        permits.len() as u32,
                        options.wait_ms,
                        Some(options.lease_ms),
                    )
                    .await;
                let leased_at = tokio::time::Instant::now();
                match leased {
                    // Unused permits go back as `permits` drops.
                    Ok(jobs) => {
                        for (job, permit) in jobs.into_iter().zip(permits) {
                            let (client, options, handler, acks, slots) = (
                                client.clone(),
                                options.clone(),
                                handler.clone(),
                                acks.clone(),
                                slots.clone(),
                            );
                            tokio::spawn(async move {
                                let run = run_one(
                                    &client,
                                    &options,
                                    job,
                                    leased_at,
                                    &slots,
                                    handler.as_ref(),
                                );
                                if let Some(outcome) = run.await {
                                    let _ = acks.send(outcome);
                                }
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lease failed; retrying in a second");
                        drop(permits);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                drop(turn);
            });
            while leases.try_join_next().is_some() {}
        }
        leases.abort_all();
        while leases.join_next().await.is_some() {}
        // Every leased job holds its room until it has queued its outcome.
        let _ = held.acquire_many(room as u32).await;
        drop(acks);
        let _ = acker.await;
    }
}

/// Waits for a handler slot and runs one handler, with heartbeats from the
/// lease on (the wait included); `None` when the lease was lost (the outcome
/// would be refused, and another worker may own the job now).
async fn run_one<H, F>(
    client: &Client,
    options: &WorkerOptions,
    job: LeasedJob,
    leased_at: tokio::time::Instant,
    slots: &Semaphore,
    handler: &H,
) -> Option<Outcome>
where
    H: Fn(LeasedJob) -> F,
    F: Future<Output = Result<Value, JobFailure>>,
{
    let id = job.id;
    let token = job.lease_token.clone();
    let work = async {
        // The semaphore is never closed.
        let _slot = slots.acquire().await;
        handler(job.clone())
            .instrument(crate::trace::job_span(&job))
            .await
    };
    tokio::pin!(work);
    let every = Duration::from_millis((options.lease_ms / 3).max(50));
    let mut beat = tokio::time::interval_at(leased_at + every, every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = beat.tick() => {
                if let Err(e) = client.heartbeat(&options.namespace, &job, Some(options.lease_ms)).await
                    && e.code() == Some("lease_lost")
                {
                    tracing::warn!(job = %id, "lease lost; abandoning the job");
                    return None;
                }
            }
        }
    };
    Some(match result {
        Ok(result) => {
            Outcome::Complete(json!({ "id": id, "lease_token": token, "result": result }))
        }
        Err(f) => Outcome::Fail(json!({
            "id": id, "lease_token": token, "error": f.message, "retry": f.retry, "retry_after_ms": f.retry_after_ms,
        })),
    })
}

/// Sends acknowledgements in batches: whatever piled up while the previous
/// batch was in flight goes in the next one.
async fn send_acks(client: Client, namespace: String, mut queue: mpsc::UnboundedReceiver<Outcome>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_ACK_BATCH {
            match queue.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let (mut complete, mut fail) = (Vec::new(), Vec::new());
        for outcome in batch {
            match outcome {
                Outcome::Complete(v) => complete.push(v),
                Outcome::Fail(v) => fail.push(v),
            }
        }
        for attempt in 1..=3u64 {
            match client
                .acks(&namespace, complete.clone(), fail.clone())
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    // Unacknowledged jobs come back after their lease: at least once.
                    tracing::warn!(error = %e, attempt, "ack batch failed");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    }
}
