//! The worker runtime: take jobs from a worker stream (or lease them in
//! batches), run handlers with bounded concurrency, heartbeat while they run,
//! acknowledge in batches, and drain on shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::stream::lock;
use crate::{Client, ClientError, JobStream, LeasedJob, StreamJobs};

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
    /// Jobs come on a worker stream (a WebSocket: pushed on credit, acks
    /// answered apart), or from lease calls when false or when the server
    /// has no streams. `max_batch`, `wait_ms` and `leases_in_flight` are
    /// the lease calls'.
    pub stream: bool,
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
            stream: true,
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
/// Ack batches sent on a stream and not yet answered.
const STREAM_ACKS_IN_FLIGHT: usize = 4;
/// How long a closing stream may take to deliver the jobs already on their way.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Where acks go: the open stream, else `POST .../acks`.
type AckRoute = Arc<Mutex<Option<JobStream>>>;

/// What every job's task needs.
struct Jobs<H> {
    client: Client,
    options: WorkerOptions,
    handler: Arc<H>,
    /// Jobs leased and not yet acknowledged (handlers and prefetch).
    held: Arc<Semaphore>,
    /// Handlers running.
    slots: Arc<Semaphore>,
    acks: mpsc::UnboundedSender<Outcome>,
}

impl Worker {
    pub fn new(client: Client, options: WorkerOptions) -> Self {
        Worker { client, options }
    }

    /// Runs `handler` on every job leased until `shutdown` resolves, then waits
    /// for the running handlers and sends their acknowledgements.
    ///
    /// Jobs come on a worker stream when `options.stream` is set and the
    /// server has streams (it reconnects after a second when the stream
    /// breaks), else from lease calls. At shutdown, the stream is closed or
    /// the lease calls still waiting are dropped: anything leased on the way
    /// comes back after its lease, as with any worker that goes away. Jobs
    /// already leased still run.
    pub async fn run<H, F>(self, handler: H, shutdown: impl Future<Output = ()>)
    where
        H: Fn(LeasedJob) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Value, JobFailure>> + Send + 'static,
    {
        let Worker { client, options } = self;
        let concurrency = options.concurrency.max(1);
        let room = concurrency + options.prefetch;
        let (acks, ack_queue) = mpsc::unbounded_channel();
        let route = AckRoute::default();
        let acker = tokio::spawn(send_acks(
            client.clone(),
            options.namespace.clone(),
            ack_queue,
            route.clone(),
        ));
        let jobs = Arc::new(Jobs {
            client,
            options,
            handler: Arc::new(handler),
            held: Arc::new(Semaphore::new(room)),
            slots: Arc::new(Semaphore::new(concurrency)),
            acks,
        });
        tokio::pin!(shutdown);
        let streamed = jobs.options.stream && jobs.stream(&route, shutdown.as_mut()).await;
        if !streamed {
            jobs.lease(shutdown).await;
        }
        // Every leased job holds its room until it has queued its outcome.
        let _ = jobs.held.acquire_many(room as u32).await;
        drop(jobs);
        let _ = acker.await;
    }
}

impl<H, F> Jobs<H>
where
    H: Fn(LeasedJob) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Value, JobFailure>> + Send + 'static,
{
    /// Takes jobs from worker streams until `shutdown`; `false` at once when
    /// the server has no streams.
    async fn stream(
        self: &Arc<Self>,
        route: &AckRoute,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let options = &self.options;
        loop {
            let opened = tokio::select! {
                opened = self.client.stream(&options.namespace, &options.queue, &options.worker_id, Some(options.lease_ms)) => opened,
                () = shutdown.as_mut() => return true,
            };
            let why = match opened {
                Ok((stream, jobs)) => {
                    *lock(route) = Some(stream.clone());
                    let ended = self.take(&stream, jobs, route, shutdown.as_mut()).await;
                    *lock(route) = None;
                    match ended {
                        Some(why) => why,
                        None => return true,
                    }
                }
                // A server without streams (behind tokens, an unknown route
                // needs an admin): lease calls say what is wrong, if anything.
                Err(e) if matches!(e.code(), Some("not_found" | "forbidden")) => return false,
                Err(e) => e,
            };
            tracing::warn!(error = %why, "worker stream ended; reconnecting in a second");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.as_mut() => return true,
            }
        }
    }

    /// Runs one stream: credit for every free room, a task per job pushed.
    /// `None` once `shutdown` closed it, else why it ended.
    async fn take(
        self: &Arc<Self>,
        stream: &JobStream,
        mut jobs: StreamJobs,
        route: &AckRoute,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Option<ClientError> {
        // Rooms granted as credit and not yet filled by a job.
        let mut granted: Vec<OwnedSemaphorePermit> = Vec::new();
        let mut closing = false;
        let mut granting = true;
        let close_wait = tokio::time::sleep(Duration::MAX);
        tokio::pin!(close_wait);
        loop {
            tokio::select! {
                permit = self.held.clone().acquire_owned(), if granting && !closing => {
                    let Ok(first) = permit else { return None };
                    let mut permits = vec![first];
                    while let Ok(more) = self.held.clone().try_acquire_owned() {
                        permits.push(more);
                    }
                    // A stream that has ended says why through `jobs`.
                    granting = stream.grant(permits.len() as u32).is_ok();
                    granted.extend(permits);
                }
                batch = jobs.next() => match batch {
                    Ok(batch) => {
                        let leased_at = tokio::time::Instant::now();
                        for job in batch {
                            self.spawn(job, granted.pop(), leased_at);
                        }
                    }
                    Err(_) if closing => return None,
                    Err(why) => return Some(why),
                },
                () = shutdown.as_mut(), if !closing => {
                    closing = true;
                    // The last acks go by `POST .../acks`.
                    *lock(route) = None;
                    stream.close();
                    close_wait.as_mut().reset(tokio::time::Instant::now() + CLOSE_WAIT);
                }
                () = &mut close_wait => return None,
            }
        }
    }

    /// Takes jobs from lease calls until `shutdown`. Up to
    /// `leases_in_flight` calls run at once, each for the room free when it
    /// starts (handlers and prefetch together), so that a fresh batch is on
    /// its way while the last one runs (the server commits concurrent leases
    /// together).
    async fn lease(self: &Arc<Self>, mut shutdown: Pin<&mut impl Future<Output = ()>>) {
        let options = &self.options;
        let lease_turns = Arc::new(Semaphore::new(options.leases_in_flight.max(1)));
        let mut leases = JoinSet::new();
        loop {
            let turn = tokio::select! {
                turn = lease_turns.clone().acquire_owned() => match turn { Ok(t) => t, Err(_) => break },
                () = shutdown.as_mut() => break,
            };
            let first = tokio::select! {
                permit = self.held.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
                () = shutdown.as_mut() => break,
            };
            let mut permits = vec![first];
            while permits.len() < options.max_batch as usize {
                match self.held.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let this = self.clone();
            leases.spawn(async move {
                let options = &this.options;
                let leased = this
                    .client
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
                            this.spawn(job, Some(permit), leased_at);
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
    }

    /// Runs one job in its own task; its room frees once its outcome is queued.
    fn spawn(
        self: &Arc<Self>,
        job: LeasedJob,
        room: Option<OwnedSemaphorePermit>,
        leased_at: tokio::time::Instant,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let run = run_one(
                &this.client,
                &this.options,
                job,
                leased_at,
                &this.slots,
                this.handler.as_ref(),
            );
            if let Some(outcome) = run.await {
                let _ = this.acks.send(outcome);
            }
            drop(room);
        });
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
/// batch was in flight goes in the next one. On a stream, a few batches are
/// in flight at once; a batch whose answer the stream did not bring goes
/// again by `POST .../acks` (applied twice, the second is refused per item).
async fn send_acks(
    client: Client,
    namespace: String,
    mut queue: mpsc::UnboundedReceiver<Outcome>,
    route: AckRoute,
) {
    let in_flight = Arc::new(Semaphore::new(STREAM_ACKS_IN_FLIGHT));
    let mut streamed = JoinSet::new();
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
        let stream = lock(&route).clone();
        match stream {
            Some(stream) => {
                let Ok(turn) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let (client, namespace) = (client.clone(), namespace.clone());
                streamed.spawn(async move {
                    if let Err(e) = stream.acks(complete.clone(), fail.clone()).await {
                        tracing::warn!(error = %e, "acks unanswered on the stream; sending them again");
                        post_acks(&client, &namespace, complete, fail).await;
                    }
                    drop(turn);
                });
                while streamed.try_join_next().is_some() {}
            }
            None => post_acks(&client, &namespace, complete, fail).await,
        }
    }
    while streamed.join_next().await.is_some() {}
}

async fn post_acks(client: &Client, namespace: &str, complete: Vec<Value>, fail: Vec<Value>) {
    for attempt in 1..=3u64 {
        match client.acks(namespace, complete.clone(), fail.clone()).await {
            Ok(_) => return,
            Err(e) => {
                // Unacknowledged jobs come back after their lease: at least once.
                tracing::warn!(error = %e, attempt, "ack batch failed");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}
