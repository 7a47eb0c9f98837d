//! Flow control phases: how close a queue's `rate_limit` holds its rate
//! (`rate_limit`), what the limits and fair share cost a drain that they
//! never hold back (`process_limited`), and how long one tenant's job waits
//! behind another's flood with and without fair share (`starvation`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_client::{Client, JobSpec};
use keel_core::QueuePolicy;
use keel_core::flow::fair::Fairness;
use keel_core::flow::{FlowKey, Rate};
use serde_json::{Value, json};

use crate::jobs::{drain, enqueue_bulk};
use crate::server::BenchServer;
use crate::{Handlers, NS, PHASE_TIMEOUT, per_s};

/// Leases per second the `rate_limit` phase allows.
const RATE: u32 = 1000;
/// Leasers of the `rate_limit` phase, each asking for up to 100 jobs.
const LEASERS: usize = 8;

/// `RATE` jobs per second (the default burst: a second's worth) over `secs`, asked for
/// by `LEASERS` leasers that always want more: the jobs leased per second
/// after the first second, against the limit.
pub(crate) async fn rate_limit(
    clients: &[Client],
    secs: u64,
    batch: usize,
) -> anyhow::Result<Value> {
    let queue = "bench-rate-limited";
    let policy = QueuePolicy {
        rate_limit: Some(Rate {
            limit: RATE,
            period_ms: 1000,
            burst: None,
        }),
        ..QueuePolicy::default()
    };
    clients[0].put_queue_policy(NS, queue, &policy).await?;
    let n = (u64::from(RATE) * (secs + 3)) as usize;
    enqueue_bulk(clients, queue, n, batch).await?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let leased: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut leasers = tokio::task::JoinSet::new();
    for w in 0..LEASERS {
        let (client, stop, leased) = (
            clients[w % clients.len()].clone(),
            stop.clone(),
            leased.clone(),
        );
        leasers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let jobs = client.lease(NS, queue, "bench", 100, 500, None).await?;
                let at = started.elapsed();
                leased
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(std::iter::repeat_n(at, jobs.len()));
                let acks = jobs
                    .iter()
                    .map(|j| json!({"id": j.id, "lease_token": j.lease_token}))
                    .collect();
                if !jobs.is_empty() {
                    client.acks(NS, acks, Vec::new()).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    tokio::time::sleep(Duration::from_secs(secs + 1)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(leaser) = leasers.join_next().await {
        leaser??;
    }
    let leased = std::mem::take(&mut *leased.lock().unwrap_or_else(PoisonError::into_inner));
    let window = Duration::from_secs(1)..Duration::from_secs(secs + 1);
    let inside = leased.iter().filter(|t| window.contains(t)).count();
    let per_s = inside as f64 / secs as f64;
    Ok(json!({
        "limit_per_s": RATE, "secs": secs, "leased": inside, "leased_per_s": per_s.round(),
        "error_pct": ((per_s / f64::from(RATE) - 1.0) * 1000.0).round() / 10.0,
    }))
}

/// Tenants the jobs of `process_limited` and the noisy tenant of
/// `starvation` spread over.
const TENANTS: usize = 100;

/// A drain like `process_after_bulk`, alternating two rounds of three
/// queues: a plain one; one whose `max_concurrency` and `rate_limit` are set
/// far above what the drain reaches; and one keyed by the tenant tag (100
/// tenants) with `max_key_concurrency` far above the drain and equal fair
/// share (plain, limited, keyed, plain, ..., each freshly enqueued with the
/// same tagged jobs): what checking the limits and sharing costs, with the
/// store's growth shared alike.
pub(crate) async fn process_limited(
    servers: &[BenchServer],
    clients: &[Client],
    n: usize,
    batch: usize,
    handlers: Handlers,
    origin: Instant,
) -> anyhow::Result<Value> {
    let limited = QueuePolicy {
        max_concurrency: Some(1_000_000),
        rate_limit: Some(Rate {
            limit: 1_000_000,
            period_ms: 1000,
            burst: Some(10_000),
        }),
        ..QueuePolicy::default()
    };
    let keyed = QueuePolicy {
        key: Some(FlowKey::Tag("tenant".into())),
        max_key_concurrency: Some(1_000_000),
        fairness: Some(fair()),
        ..QueuePolicy::default()
    };
    let modes = [
        ("plain", QueuePolicy::default()),
        ("limited", limited),
        ("keyed", keyed),
    ];
    let mut rates = vec![Vec::new(); modes.len()];
    let mut cpus = vec![0.0; modes.len()];
    for round in 0..2 {
        for (m, (mode, policy)) in modes.iter().enumerate() {
            let queue = format!("bench-limits-{round}-{mode}");
            clients[0].put_queue_policy(NS, &queue, policy).await?;
            enqueue_tagged(clients, &queue, n, batch, |i| format!("t{}", i % TENANTS)).await?;
            let (elapsed, cpu) = drain(servers, clients, &queue, n, handlers, origin).await?;
            rates[m].push(per_s(n, elapsed));
            cpus[m] += cpu["server_cpu_s"].as_f64().unwrap_or(0.0);
        }
    }
    let mean = |v: &[u64]| v.iter().sum::<u64>() / v.len().max(1) as u64;
    let mut report = json!({ "n": n, "rounds": 2, "tenants": TENANTS });
    for (m, (mode, _)) in modes.iter().enumerate() {
        report[format!("{mode}_jobs_per_s")] = json!(rates[m]);
        report[format!("{mode}_mean")] = json!(mean(&rates[m]));
        report[format!("{mode}_server_cpu_s")] = json!((cpus[m] * 100.0).round() / 100.0);
    }
    Ok(report)
}

/// Equal fair share between keys.
fn fair() -> Fairness {
    Fairness {
        weights: Default::default(),
        default_weight: 1,
    }
}

/// `n` jobs in batches of `batch`, job `i` tagged `tenant = tenant(i)`.
async fn enqueue_tagged(
    clients: &[Client],
    queue: &str,
    n: usize,
    batch: usize,
    tenant: impl Fn(usize) -> String,
) -> anyhow::Result<()> {
    for (k, from) in (0..n).step_by(batch.max(1)).enumerate() {
        let jobs: Vec<JobSpec> = (from..(from + batch).min(n))
            .map(|i| {
                let mut job = JobSpec::new(json!({ "i": i }));
                job.tags.insert("tenant".into(), tenant(i));
                job
            })
            .collect();
        clients[k % clients.len()]
            .enqueue_many(NS, queue, &jobs)
            .await?;
    }
    Ok(())
}

/// Tenant A's backlog in the `starvation` phase.
const FLOOD: usize = 100_000;
/// Tenant B's single jobs, one every `PROBE_EVERY`.
const PROBES: usize = 20;
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Workers draining the `starvation` queue.
const DRAINERS: usize = 4;

/// The starvation scenario: tenant A floods `FLOOD` jobs (on one key, or
/// spread over `TENANTS` keys when `spread`), `DRAINERS` leasers drain the
/// queue (100 jobs a call, acked at once), and tenant B enqueues one job
/// every 100 ms, `PROBES` times: each B job's wait from its enqueue call to
/// its lease. With `fair`, the queue is keyed by the tenant tag with equal
/// fair share; without, it is a plain queue (first come, first served).
pub(crate) async fn starvation(
    clients: &[Client],
    batch: usize,
    fair_share: bool,
    spread: bool,
) -> anyhow::Result<Value> {
    let queue = format!("bench-starve-{fair_share}-{spread}");
    if fair_share {
        let policy = QueuePolicy {
            key: Some(FlowKey::Tag("tenant".into())),
            fairness: Some(fair()),
            ..QueuePolicy::default()
        };
        clients[0].put_queue_policy(NS, &queue, &policy).await?;
    }
    let tenant = |i: usize| match spread {
        true => format!("a{}", i % TENANTS),
        false => "a".to_owned(),
    };
    enqueue_tagged(clients, &queue, FLOOD, batch, tenant).await?;
    let origin = Instant::now();
    let leased: Arc<Mutex<Vec<Option<Duration>>>> = Arc::new(Mutex::new(vec![None; PROBES]));
    let done = Arc::new(AtomicUsize::new(0));
    let mut leasers = tokio::task::JoinSet::new();
    for w in 0..DRAINERS {
        let (client, queue) = (clients[w % clients.len()].clone(), queue.clone());
        let (leased, done) = (leased.clone(), done.clone());
        leasers.spawn(async move {
            while done.load(Ordering::SeqCst) < FLOOD + PROBES {
                let jobs = client.lease(NS, &queue, "bench", 100, 200, None).await?;
                let at = origin.elapsed();
                for probe in jobs.iter().filter_map(|j| j.payload["probe"].as_u64()) {
                    leased.lock().unwrap_or_else(PoisonError::into_inner)[probe as usize] =
                        Some(at);
                }
                if jobs.is_empty() {
                    continue;
                }
                let acks = jobs
                    .iter()
                    .map(|j| json!({"id": j.id, "lease_token": j.lease_token}))
                    .collect();
                client.acks(NS, acks, Vec::new()).await?;
                done.fetch_add(jobs.len(), Ordering::SeqCst);
            }
            anyhow::Ok(())
        });
    }
    let mut sent = Vec::with_capacity(PROBES);
    for probe in 0..PROBES {
        let mut job = JobSpec::new(json!({ "probe": probe }));
        job.tags.insert("tenant".into(), "b".into());
        sent.push(origin.elapsed());
        clients[probe % clients.len()]
            .enqueue(NS, &queue, &job)
            .await?;
        tokio::time::sleep(PROBE_EVERY).await;
    }
    tokio::time::timeout(PHASE_TIMEOUT, async {
        while let Some(leaser) = leasers.join_next().await {
            leaser??;
        }
        anyhow::Ok(())
    })
    .await
    .context("starvation did not drain in time")??;
    let drained = origin.elapsed();
    let leased = leased.lock().unwrap_or_else(PoisonError::into_inner);
    let mut waits: Vec<f64> = sent
        .iter()
        .zip(leased.iter())
        .map(|(sent, leased)| {
            leased.map_or(f64::NAN, |at| {
                at.saturating_sub(*sent).as_secs_f64() * 1000.0
            })
        })
        .collect();
    waits.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((p / 100.0) * waits.len() as f64) as usize;
        waits[i.min(waits.len() - 1)].round()
    };
    Ok(json!({
        "fair": fair_share, "flood": FLOOD, "flood_keys": if spread { TENANTS } else { 1 },
        "probes": PROBES, "wait_p50_ms": pct(50.0), "wait_p99_ms": pct(99.0),
        "wait_max_ms": waits[PROBES - 1].round(),
        "drain_jobs_per_s": per_s(FLOOD + PROBES, drained),
    }))
}
