//! The job phases: enqueue one at a time and in batches, drain with a
//! worker, paced latency, and the same drain in process (no HTTP).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keel_client::{Client, JobSpec, LeasedJob, Worker, WorkerOptions};
use keel_core::{Clock, LeaseToken, Limits, Namespace, NewJob, QueueName, QueueRef, SystemClock};
use keel_store::{Ack, AckOutcome, LeaseRequest, Store};
use keel_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::server::{BenchServer, CpuMeter};
use crate::{Handlers, NS, PHASE_TIMEOUT};

pub(crate) async fn enqueue_single(
    clients: &[Client],
    queue: &str,
    n: usize,
    conc: usize,
) -> anyhow::Result<Duration> {
    let queue = queue.to_owned();
    crate::one_by_one(clients, n, conc, move |client, i| {
        let queue = queue.clone();
        async move {
            client
                .enqueue(NS, &queue, &JobSpec::new(json!({ "i": i })))
                .await
                .map(drop)
        }
    })
    .await
}

pub(crate) async fn enqueue_bulk(
    clients: &[Client],
    queue: &str,
    n: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for (k, from) in (0..n).step_by(batch.max(1)).enumerate() {
        let jobs: Vec<JobSpec> = (from..(from + batch).min(n))
            .map(|i| JobSpec::new(json!({ "i": i })))
            .collect();
        clients[k % clients.len()]
            .enqueue_many(NS, queue, &jobs)
            .await?;
    }
    Ok(started.elapsed())
}

/// A worker whose no-op handler counts its starts; for jobs carrying a
/// `t0`, records start minus `t0` in ms; and for jobs carrying a key `k` and
/// a rank `i`, counts those that start before an earlier one of their key.
pub(crate) struct CountingWorker {
    reached: Arc<Notify>,
    latencies: Arc<Mutex<Vec<f64>>>,
    out_of_order: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CountingWorker {
    /// One worker per client (node), all counting into one total.
    pub(crate) fn start(
        clients: &[Client],
        queue: &str,
        handlers: Handlers,
        target: usize,
        origin: Instant,
    ) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(Notify::new());
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(target)));
        let out_of_order = Arc::new(AtomicUsize::new(0));
        let last: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = clients
            .iter()
            .map(|client| {
                let (h, r, l) = (hits.clone(), reached.clone(), latencies.clone());
                let (o, last) = (out_of_order.clone(), last.clone());
                let handler = move |job: LeasedJob| {
                    if let (Some(key), Some(i)) =
                        (job.payload["k"].as_str(), job.payload["i"].as_i64())
                    {
                        let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
                        if last.insert(key.to_owned(), i).is_some_and(|p| p >= i) {
                            o.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(t0) = job.payload["t0"].as_f64() {
                        let ms = origin.elapsed().as_secs_f64() * 1000.0 - t0;
                        l.lock().unwrap_or_else(PoisonError::into_inner).push(ms);
                    }
                    if h.fetch_add(1, Ordering::SeqCst) + 1 == target {
                        r.notify_one();
                    }
                    async { Ok(Value::Null) }
                };
                let mut options = WorkerOptions::new(NS, queue);
                options.concurrency = handlers.conc;
                options.prefetch = handlers.prefetch;
                options.stream = handlers.stream;
                let room = (handlers.conc + handlers.prefetch) as u32;
                options.max_batch = room.min(Limits::default().max_lease_jobs);
                options.wait_ms = 1000;
                let worker = Worker::new(client.clone(), options);
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    worker.run(handler, shutdown).await;
                })
            })
            .collect();
        CountingWorker {
            reached,
            latencies,
            out_of_order,
            stop,
            tasks,
        }
    }

    pub(crate) async fn wait(&self) -> anyhow::Result<()> {
        tokio::time::timeout(PHASE_TIMEOUT, self.reached.notified())
            .await
            .context("the worker did not drain in time")
    }

    /// Jobs that started before an earlier one of their key, so far.
    pub(crate) fn out_of_order(&self) -> usize {
        self.out_of_order.load(Ordering::Relaxed)
    }

    pub(crate) async fn shut_down(self) -> anyhow::Result<Vec<f64>> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await?;
        }
        Ok(std::mem::take(
            &mut *self
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Drains `n` jobs; returns the time and the CPU spent until the last one
/// started (not counting the worker's shutdown).
pub(crate) async fn drain(
    servers: &[BenchServer],
    clients: &[Client],
    queue: &str,
    n: usize,
    handlers: Handlers,
    origin: Instant,
) -> anyhow::Result<(Duration, Value)> {
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let worker = CountingWorker::start(clients, queue, handlers, n, origin);
    worker.wait().await?;
    let elapsed = started.elapsed();
    let cpu = cpu.report(servers)?;
    worker.shut_down().await?;
    Ok((elapsed, cpu))
}

/// Open-loop: enqueues are fired on schedule whether or not earlier ones have
/// returned, so a slow server shows up as latency, not as a slower producer.
/// Enqueue requests in flight at most in a paced phase.
pub(crate) const MAX_PACED_IN_FLIGHT: usize = 512;

pub(crate) async fn latency(
    clients: &[Client],
    phase: &str,
    rate: u64,
    secs: u64,
    handlers: Handlers,
    origin: Instant,
) -> anyhow::Result<Value> {
    let total = (rate * secs) as usize;
    let queue = format!("bench-{phase}");
    let worker = CountingWorker::start(clients, &queue, handlers, total, origin);
    let started = tokio::time::Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    // Requests in flight are bounded (an overloaded server must not make the
    // client run out of sockets); a job's time counts from when it was due,
    // so waiting for a slot shows in its latency.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_PACED_IN_FLIGHT));
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if due > tokio::time::Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due).await;
        }
        let t0 = due
            .into_std()
            .saturating_duration_since(origin)
            .as_secs_f64()
            * 1000.0;
        let slot = in_flight.clone().acquire_owned().await?;
        let (client, queue) = (clients[i % clients.len()].clone(), queue.clone());
        producers.spawn(async move {
            let sent = client
                .enqueue(NS, &queue, &JobSpec::new(json!({ "t0": t0 })))
                .await;
            drop(slot);
            sent
        });
        while producers.try_join_next().is_some() {}
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    worker.wait().await?;
    let mut lats = worker.shut_down().await?;
    lats.sort_by(f64::total_cmp);
    let pct = |p: f64| crate::percentile(&lats, p);
    Ok(json!({
        "rate": rate, "secs": secs, "n": lats.len(),
        "p50_ms": pct(50.0), "p90_ms": pct(90.0), "p99_ms": pct(99.0), "max_ms": pct(100.0),
    }))
}

/// The same bulk enqueue and drain straight on the store: what HTTP costs.
pub(crate) async fn in_process(
    n: usize,
    conc: usize,
    batch: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let dir = tempfile::Builder::new()
        .prefix("keel-bench-inproc-")
        .tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), &Limits::default())?);
    let clock = SystemClock;
    let queue = QueueRef {
        namespace: Namespace::new(NS)?,
        queue: QueueName::new("inproc")?,
    };
    let started = Instant::now();
    for from in (0..n).step_by(batch.max(1)) {
        let now = clock.now();
        let jobs = (from..(from + batch).min(n))
            .map(|i| {
                Ok(NewJob::new(
                    serde_json::value::RawValue::from_string(format!("{{\"i\":{i}}}"))?,
                    now,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.jobs_enqueue(&queue, jobs, now).await?;
    }
    let enqueue = started.elapsed();

    // One leaser and one acker, as the SDK's worker runs.
    let started = Instant::now();
    let (acks, mut ack_queue) = mpsc::unbounded_channel::<Vec<LeaseToken>>();
    let acker = {
        let (store, ns) = (store.clone(), queue.namespace.clone());
        tokio::spawn(async move {
            while let Some(mut tokens) = ack_queue.recv().await {
                while let Ok(more) = ack_queue.try_recv() {
                    tokens.extend(more);
                }
                let acks = tokens.into_iter().map(|token| Ack {
                    token,
                    outcome: AckOutcome::Complete { result: None },
                });
                store
                    .jobs_ack(&ns, acks.collect(), SystemClock.now())
                    .await?;
            }
            Ok::<_, keel_core::Error>(())
        })
    };
    let req = LeaseRequest {
        queue,
        worker_id: "bench".into(),
        max_jobs: conc as u32,
        lease_ms: None,
    };
    let mut leased = 0;
    while leased < n {
        let jobs = store.jobs_lease(&req, clock.now()).await?;
        if jobs.is_empty() {
            bail!("the in-process queue ran dry after {leased} of {n} jobs");
        }
        leased += jobs.len();
        let _ = acks.send(jobs.into_iter().map(|j| j.lease_token).collect());
    }
    drop(acks);
    acker.await??;
    let drain = started.elapsed();
    store.close().await;
    Ok((enqueue, drain))
}
