//! Pushes jobs to endpoints: every endpoint's own queue (messages from
//! subscriptions, or enqueued there) and every push queue (a queue whose
//! policy names an endpoint). One task per such queue leases like any
//! worker, up to the endpoint's `max_in_flight` (or the push queue's
//! `concurrency`), paced by its rate limit, and acks each job with what the
//! endpoint answered (acks written in batches, as they come). Every attempt
//! goes to the attempts log through one recorder, which writes them in
//! batches and disables endpoints that fail for too long. The set of queues is read again when something changes
//! here, and every few seconds for changes made on other nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_core::endpoint::endpoint_queue;
use keel_core::{EndpointName, Namespace, QueueRef, Retry};
use keel_store::{Ack, AckOutcome, Endpoint, LeaseRequest, LeasedJob, NewAttempt};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::endpoints::EndpointService;
use crate::endpoints::send::{self, Answer};
use crate::jobs::JobService;
use crate::queues::QueueService;
use crate::{Shutdown, metrics};

/// How often the queues to push from are read again, for changes made on
/// other nodes (a change made here is seen at once).
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// The longest wait for a queue's ready signal before looking again.
const IDLE_WAKE: Duration = Duration::from_secs(5);
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(500);
/// Jobs leased at once by one queue's task.
const LEASE_BATCH: u32 = 64;
/// Acks written per store call.
const ACK_BATCH: usize = 256;
/// Attempts written per store call.
const RECORD_BATCH: usize = 1000;

/// What a queue's jobs are to its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The endpoint's own queue: its retry schedule decides, no result kept.
    Messages,
    /// A push queue: the job's retry policy decides, the answer is its result.
    Push { concurrency: u32 },
}

/// A queue's running task, with what it was started for.
struct Running {
    endpoint: (Namespace, EndpointName),
    mode: Mode,
    capacity: u32,
    config: watch::Sender<Option<Arc<Endpoint>>>,
}

/// What the pusher works through: deliveries are jobs, their targets
/// endpoints, push queues named by queue policies.
#[derive(Clone)]
pub struct Pusher {
    endpoints: Arc<EndpointService>,
    jobs: Arc<JobService>,
    queues: Arc<QueueService>,
    clock: Arc<dyn keel_core::Clock>,
}

impl Pusher {
    pub fn new(
        endpoints: Arc<EndpointService>,
        jobs: Arc<JobService>,
        queues: Arc<QueueService>,
        clock: Arc<dyn keel_core::Clock>,
    ) -> Self {
        Pusher {
            endpoints,
            jobs,
            queues,
            clock,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let engine = self;
        let (attempts, log) = mpsc::channel(4 * RECORD_BATCH);
        let recorder = tokio::spawn(record(engine.clone(), log));
        let client = engine.endpoints.guard.client(true);
        let mut running: HashMap<QueueRef, Running> = HashMap::new();
        let mut tasks = Vec::new();
        loop {
            let changed = engine.endpoints.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match scan(&engine).await {
                Ok(wanted) => {
                    running.retain(|queue, r| {
                        let keep = wanted.get(queue).is_some_and(|(e, mode)| {
                            (e.namespace.clone(), e.name.clone()) == r.endpoint
                                && *mode == r.mode
                                && capacity(e, *mode) == r.capacity
                        });
                        if !keep {
                            let _ = r.config.send(None);
                        }
                        keep
                    });
                    for (queue, (endpoint, mode)) in wanted {
                        if let Some(r) = running.get(&queue) {
                            r.config.send_if_modified(|old| {
                                let new = old.as_deref() != Some(&*endpoint);
                                *old = Some(endpoint.clone());
                                new
                            });
                            continue;
                        }
                        let (config, watched) = watch::channel(Some(endpoint.clone()));
                        let task = Task {
                            engine: engine.clone(),
                            client: client.clone(),
                            queue: queue.clone(),
                            mode,
                            attempts: attempts.clone(),
                            shutdown: shutdown.clone(),
                        };
                        tasks.push(tokio::spawn(task.run(watched, capacity(&endpoint, mode))));
                        running.insert(
                            queue,
                            Running {
                                endpoint: (endpoint.namespace.clone(), endpoint.name.clone()),
                                mode,
                                capacity: capacity(&endpoint, mode),
                                config,
                            },
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the endpoints to push to"),
            }
            tasks.retain(|t| !t.is_finished());
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(RESCAN_EVERY) => {}
                () = shutdown.clone().wait() => break,
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        drop(attempts);
        let _ = recorder.await;
    }
}

fn capacity(endpoint: &Endpoint, mode: Mode) -> u32 {
    match mode {
        Mode::Messages => endpoint.spec.max_in_flight(),
        Mode::Push { concurrency } => concurrency,
    }
}

/// The queues to push from, each with its endpoint.
async fn scan(
    engine: &Pusher,
) -> Result<HashMap<QueueRef, (Arc<Endpoint>, Mode)>, keel_core::Error> {
    let endpoints: HashMap<(Namespace, EndpointName), Arc<Endpoint>> = engine
        .endpoints
        .list_all()
        .await?
        .into_iter()
        .map(|e| ((e.namespace.clone(), e.name.clone()), Arc::new(e)))
        .collect();
    let mut wanted = HashMap::new();
    for endpoint in endpoints.values() {
        let queue = endpoint_queue(&endpoint.namespace, &endpoint.name)?;
        wanted.insert(queue, (endpoint.clone(), Mode::Messages));
    }
    for (queue, policy) in engine.queues.policies().await? {
        let Some(push) = policy.push else { continue };
        if let Some(endpoint) = endpoints.get(&(queue.namespace.clone(), push.endpoint.clone())) {
            let mode = Mode::Push {
                concurrency: push.concurrency(),
            };
            wanted.insert(queue, (endpoint.clone(), mode));
        }
    }
    Ok(wanted)
}

/// One queue's pushing.
struct Task {
    engine: Pusher,
    client: reqwest::Client,
    queue: QueueRef,
    mode: Mode,
    attempts: mpsc::Sender<NewAttempt>,
    shutdown: Shutdown,
}

impl Task {
    async fn run(self, mut config: watch::Receiver<Option<Arc<Endpoint>>>, capacity: u32) {
        let (acks, pending) = mpsc::channel(2 * capacity as usize);
        let namespace = self.queue.namespace.clone();
        let flusher = tokio::spawn(flush_acks(self.engine.jobs.clone(), namespace, pending));
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(capacity as usize));
        let mut pace = Pace::default();
        while !this.shutdown.is_fired() {
            let Some(endpoint) = config.borrow_and_update().clone() else {
                break;
            };
            if endpoint.health.disabled_at.is_some() {
                tokio::select! {
                    _ = config.changed() => continue,
                    () = this.shutdown.clone().wait() => break,
                }
            }
            let Ok(first) = slots.clone().acquire_owned().await else {
                break;
            };
            let more = (slots.available_permits() as u32).min(LEASE_BATCH - 1);
            let req = LeaseRequest {
                queue: this.queue.clone(),
                worker_id: format!("keel-push/{}", endpoint.name),
                max_jobs: 1 + more,
                lease_ms: None,
            };
            // Not raced against a config change: leased jobs are never dropped.
            let jobs = match this.engine.jobs.lease(&req, IDLE_WAKE).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(queue = %this.queue, error = %e, "cannot lease deliveries");
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                    continue;
                }
            };
            // The lease may have waited through a change (a rotated secret, a
            // new url): what was leased goes out as the endpoint is now.
            // (Leased while it was enabled, it goes out even if it was
            // disabled meanwhile.)
            let endpoint = config.borrow().clone().unwrap_or(endpoint);
            let mut first = Some(first);
            for job in jobs {
                let slot = match first.take() {
                    Some(slot) => slot,
                    None => match slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                };
                if let Some(rate) = endpoint.spec.rate_limit {
                    pace.wait(rate.per_second).await;
                }
                let (this, endpoint, acks) = (this.clone(), endpoint.clone(), acks.clone());
                tokio::spawn(async move {
                    let ack = this.deliver(&endpoint, job).await;
                    let _ = acks.send((ack, slot)).await;
                });
            }
        }
        // Let deliveries in flight finish, and their acks be written.
        drop(acks);
        let _ = slots.acquire_many(capacity).await;
        let _ = flusher.await;
    }

    /// Pushes one job; how to ack it.
    async fn deliver(&self, endpoint: &Endpoint, job: LeasedJob) -> Ack {
        let engine = &self.engine;
        let message_id = job
            .tags
            .get("keel.event")
            .cloned()
            .unwrap_or_else(|| job.id.to_string());
        let now = engine.clock.now();
        let answer = send::push(
            &self.client,
            &endpoint.spec,
            &endpoint.secrets,
            (&message_id, job.traceparent.as_ref()),
            job.payload.get().as_bytes(),
            now,
        )
        .await;
        let succeeded = answer.succeeded();
        metrics::endpoint_attempt(&endpoint.namespace, &endpoint.name, succeeded);
        if answer.gone()
            && let Err(e) = engine
                .endpoints
                .disable(endpoint, format!("{} answered 410 Gone", endpoint.spec.url))
                .await
        {
            tracing::warn!(endpoint = %endpoint.name, error = %e, "cannot disable an endpoint");
        }
        let ack = Ack {
            token: job.lease_token,
            outcome: self.outcome(endpoint, &job, &answer),
        };
        let attempt = NewAttempt {
            namespace: endpoint.namespace.clone(),
            endpoint: endpoint.name.clone(),
            message_id,
            job_id: job.id,
            at: now,
            succeeded,
            http_status: answer.status,
            latency_ms: answer.latency_ms,
            response_excerpt: answer.excerpt(),
            error: (!succeeded).then(|| answer.describe()),
        };
        let _ = self.attempts.send(attempt).await;
        ack
    }

    /// How the job ends this attempt.
    fn outcome(&self, endpoint: &Endpoint, job: &LeasedJob, answer: &Answer) -> AckOutcome {
        if answer.succeeded() {
            let result = match self.mode {
                Mode::Messages => None,
                Mode::Push { .. } => result_of(&answer.body),
            };
            return AckOutcome::Complete { result };
        }
        let retry = match self.mode {
            Mode::Messages => match endpoint.spec.retry_delay_ms(job.attempt, fastrand::f64()) {
                Some(delay) => Retry {
                    retry: true,
                    retry_after_ms: Some(answer.retry_after_ms.unwrap_or(delay)),
                },
                None => Retry {
                    retry: false,
                    retry_after_ms: None,
                },
            },
            Mode::Push { .. } => Retry {
                retry: true,
                retry_after_ms: answer.retry_after_ms,
            },
        };
        AckOutcome::Fail {
            message: answer.describe(),
            retry,
        }
    }
}

/// Writes a queue's acks in batches, as they come: one store write for
/// every ack that finished while the previous write was going on. A
/// delivery's slot is freed only once its ack is written, so a task never
/// holds more leases than its slots.
async fn flush_acks(
    jobs: Arc<JobService>,
    namespace: Namespace,
    mut pending: mpsc::Receiver<(Ack, OwnedSemaphorePermit)>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while pending.recv_many(&mut batch, ACK_BATCH).await > 0 {
        let (acks, slots): (Vec<Ack>, Vec<_>) = std::mem::take(&mut batch).into_iter().unzip();
        super::queue_worker::ack_all(&jobs, &namespace, acks).await;
        drop(slots);
    }
}

/// A push queue job's result: the answer's JSON, or its text as a JSON
/// string; none when empty.
fn result_of(body: &[u8]) -> Option<Box<RawValue>> {
    if body.is_empty() {
        return None;
    }
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(raw) = serde_json::from_str::<&RawValue>(text)
    {
        return Some(raw.to_owned());
    }
    serde_json::value::to_raw_value(&String::from_utf8_lossy(body)).ok()
}

/// Spaces deliveries `1/per_second` apart on this node.
#[derive(Default)]
struct Pace {
    next: Option<tokio::time::Instant>,
}

impl Pace {
    async fn wait(&mut self, per_second: u32) {
        let at = self.slot(tokio::time::Instant::now(), per_second);
        tokio::time::sleep_until(at).await;
    }

    /// When the next delivery may start, asked at `now`: at once after a
    /// pause, else one gap after the one before.
    fn slot(&mut self, now: tokio::time::Instant, per_second: u32) -> tokio::time::Instant {
        let gap = Duration::from_secs(1) / per_second.max(1);
        let at = self.next.map_or(now, |n| n.max(now));
        self.next = Some(at + gap);
        at
    }
}

/// Writes attempts to the log in batches, as they come.
async fn record(engine: Pusher, mut log: mpsc::Receiver<NewAttempt>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while log.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        record_batch(&engine, std::mem::take(&mut batch)).await;
    }
}

/// Writes attempts, then disables the endpoints among them that have
/// failed without a success for longer than they allow.
async fn record_batch(engine: &Pusher, attempts: Vec<NewAttempt>) {
    let touched = match engine.endpoints.record(attempts).await {
        Ok(touched) => touched,
        Err(e) => {
            tracing::warn!(error = %e, "cannot write delivery attempts to the log");
            return;
        }
    };
    let now = engine.clock.now();
    for endpoint in touched {
        if !endpoint
            .health
            .failing_too_long(endpoint.spec.disable_after_ms(), now)
        {
            continue;
        }
        let since = endpoint.health.failing_since.unwrap_or(now);
        let reason = format!(
            "no success since {since} ({} failures in a row)",
            endpoint.health.failure_streak
        );
        if let Err(e) = engine.endpoints.disable(&endpoint, reason).await {
            tracing::warn!(endpoint = %endpoint.name, error = %e, "cannot disable an endpoint");
        }
    }
}

#[cfg(test)]
mod tests {

    use keel_core::{JobId, Limits, Timestamp, TopicName};
    use keel_store::{EventQuery, Store};
    use keel_store_sqlite::SqliteStore;

    use super::*;
    use crate::manual_clock::ManualClock;
    use crate::{Engine, EngineConfig, ShutdownTrigger};

    fn failed(name: &EndpointName, at: Timestamp) -> NewAttempt {
        NewAttempt {
            namespace: Namespace::new("default").unwrap(),
            endpoint: name.clone(),
            message_id: format!("m{}", at.as_millis()),
            job_id: JobId::from_bytes([1; 16]),
            at,
            succeeded: false,
            http_status: Some(500),
            latency_ms: 1,
            response_excerpt: None,
            error: Some("HTTP 500".into()),
        }
    }

    #[tokio::test]
    async fn an_endpoint_failing_past_its_bound_is_disabled_once_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), &Limits::default()).unwrap());
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        let clock = ManualClock::at(t0);
        let (_trigger, shutdown) = ShutdownTrigger::new();
        let config = EngineConfig::default();
        let engine = Engine::new(
            store.clone(),
            clock.clone(),
            Limits::default(),
            shutdown,
            config,
        );
        let ns = Namespace::new("default").unwrap();
        let name = EndpointName::new("flaky").unwrap();
        let spec = serde_json::from_value(serde_json::json!({
            "url": "https://example.com/hooks", "disable_after_ms": 60_000,
        }))
        .unwrap();
        engine
            .endpoints()
            .put(&ns, &name, &spec, None)
            .await
            .unwrap();
        let pusher = Pusher::new(
            engine.endpoints().clone(),
            engine.jobs().clone(),
            engine.queues().clone(),
            clock.clone(),
        );
        let at = |ms: u64| t0.plus_ms(ms);

        clock.set(at(30_000));
        record_batch(&pusher, vec![failed(&name, t0), failed(&name, at(30_000))]).await;
        let health = store.endpoint_get(&ns, &name).await.unwrap().health;
        assert_eq!((health.failure_streak, health.disabled_at), (2, None));

        clock.set(at(61_000));
        record_batch(&pusher, vec![failed(&name, at(61_000))]).await;
        record_batch(&pusher, vec![failed(&name, at(61_000))]).await;
        let health = store.endpoint_get(&ns, &name).await.unwrap().health;
        assert_eq!(health.disabled_at, Some(at(61_000)));
        assert!(
            health
                .disabled_reason
                .unwrap()
                .contains("3 failures in a row")
        );
        let topic = TopicName::new(crate::endpoints::EVENTS_TOPIC).unwrap();
        let query = EventQuery {
            after: 0,
            key: None,
            kind: None,
            limit: 10,
        };
        let events = store.events_read(&ns, &topic, &query).await.unwrap();
        assert_eq!(events.len(), 1, "reported once");
        assert_eq!(events[0].event.kind, "keel.endpoint.disabled");
        assert_eq!(events[0].event.key.as_deref(), Some("flaky"));
        store.close().await;
    }

    #[test]
    fn pace_spaces_starts_and_does_not_bank_idle_time() {
        let mut pace = Pace::default();
        let t0 = tokio::time::Instant::now();
        let starts: Vec<Duration> = (0..3).map(|_| pace.slot(t0, 10) - t0).collect();
        assert_eq!(starts, [0, 100, 200].map(Duration::from_millis));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            pace.slot(later, 10),
            later,
            "an idle pause is not saved up as a burst"
        );
        assert_eq!(pace.slot(later, 10) - later, Duration::from_millis(100));
    }

    #[test]
    fn a_push_result_is_the_json_answer_or_its_text() {
        assert_eq!(result_of(br#"{"ok":1}"#).unwrap().get(), r#"{"ok":1}"#);
        assert_eq!(result_of(b"fine").unwrap().get(), r#""fine""#);
        assert!(result_of(b"").is_none());
    }
}
