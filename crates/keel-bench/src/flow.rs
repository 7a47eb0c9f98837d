//! Flow control phases: how close a queue's `rate_limit` holds its rate
//! (`rate_limit`), and what the limits cost a drain that they never hold
//! back (`process_limited`, next to `process_after_bulk` in the same run).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_client::Client;
use keel_core::QueuePolicy;
use keel_core::flow::Rate;
use serde_json::{Value, json};

use crate::jobs::{drain, enqueue_bulk};
use crate::server::BenchServer;
use crate::{Handlers, NS, per_s};

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

/// A drain like `process_after_bulk`, alternating two rounds of a plain
/// queue and a queue whose `max_concurrency` and `rate_limit` are set far
/// above what the drain reaches (plain, limited, plain, limited, each
/// freshly enqueued): the cost of checking the limits on every lease, with
/// the store's growth shared alike.
pub(crate) async fn process_limited(
    servers: &[BenchServer],
    clients: &[Client],
    n: usize,
    batch: usize,
    handlers: Handlers,
    origin: Instant,
) -> anyhow::Result<Value> {
    let limits = QueuePolicy {
        max_concurrency: Some(1_000_000),
        rate_limit: Some(Rate {
            limit: 1_000_000,
            period_ms: 1000,
            burst: Some(10_000),
        }),
        ..QueuePolicy::default()
    };
    let (mut plain, mut limited) = (Vec::new(), Vec::new());
    let (mut plain_cpu, mut limited_cpu) = (0.0, 0.0);
    for round in 0..2 {
        for with_limits in [false, true] {
            let queue = format!("bench-limits-{round}-{with_limits}");
            if with_limits {
                clients[0].put_queue_policy(NS, &queue, &limits).await?;
            }
            enqueue_bulk(clients, &queue, n, batch).await?;
            let (elapsed, cpu) = drain(servers, clients, &queue, n, handlers, origin).await?;
            let server = cpu["server_cpu_s"].as_f64().unwrap_or(0.0);
            if with_limits {
                limited.push(per_s(n, elapsed));
                limited_cpu += server;
            } else {
                plain.push(per_s(n, elapsed));
                plain_cpu += server;
            }
        }
    }
    let mean = |v: &[u64]| v.iter().sum::<u64>() / v.len().max(1) as u64;
    Ok(json!({
        "n": n, "rounds": 2,
        "plain_jobs_per_s": plain, "limited_jobs_per_s": limited,
        "plain_mean": mean(&plain), "limited_mean": mean(&limited),
        "plain_server_cpu_s": (plain_cpu * 100.0).round() / 100.0,
        "limited_server_cpu_s": (limited_cpu * 100.0).round() / 100.0,
    }))
}
