//! The `keyed_backlog` phase: leasing behind ordering keys, the case where
//! a store that checks every ready job for an older job of its key slows
//! down with the backlog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context;
use keel_client::{Client, JobSpec};
use serde_json::{Value, json};

use crate::{NS, PHASE_TIMEOUT, per_s};

/// Leasing behind ordering keys: `n` ready jobs spread over `keys` ordering
/// keys (none when 0), drained by `conc` leasers that lease up to 20 jobs
/// and ack them in one batch; every lease call is timed. Per-key order caps
/// the jobs in flight at one per key, so with 10 keys the drain is bound by
/// round trips, not by the store.
pub(crate) async fn keyed_backlog(
    clients: &[Client],
    n: usize,
    keys: usize,
    batch: usize,
    conc: usize,
) -> anyhow::Result<Value> {
    let queue = format!("bench-keyed-{keys}");
    for (k, from) in (0..n).step_by(batch.max(1)).enumerate() {
        let jobs: Vec<JobSpec> = (from..(from + batch).min(n))
            .map(|i| {
                let mut job = JobSpec::new(json!({ "i": i }));
                job.ordering_key = (keys > 0).then(|| format!("k{}", i % keys));
                job
            })
            .collect();
        clients[k % clients.len()]
            .enqueue_many(NS, &queue, &jobs)
            .await?;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut leasers = tokio::task::JoinSet::new();
    for w in 0..conc.max(1) {
        let (client, queue) = (clients[w % clients.len()].clone(), queue.clone());
        let (done, latencies) = (done.clone(), latencies.clone());
        leasers.spawn(async move {
            while done.load(Ordering::SeqCst) < n {
                // Timed: a lease that answers at once, jobs or none (none is
                // what a backlog of held keys looks like). Untimed: the
                // long-poll that then waits for a key to pass on.
                let asked = Instant::now();
                let mut jobs = client.lease(NS, &queue, "bench", 20, 0, None).await?;
                latencies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(asked.elapsed().as_secs_f64() * 1000.0);
                if jobs.is_empty() {
                    jobs = client.lease(NS, &queue, "bench", 20, 1000, None).await?;
                }
                if jobs.is_empty() {
                    continue;
                }
                let acks = jobs
                    .iter()
                    .map(|j| json!({ "id": j.id, "lease_token": j.lease_token }))
                    .collect();
                client.acks(NS, acks, Vec::new()).await?;
                done.fetch_add(jobs.len(), Ordering::SeqCst);
            }
            anyhow::Ok(())
        });
    }
    tokio::time::timeout(PHASE_TIMEOUT, async {
        while let Some(leaser) = leasers.join_next().await {
            leaser??;
        }
        anyhow::Ok(())
    })
    .await
    .context("keyed_backlog did not drain in time")??;
    let elapsed = started.elapsed();
    let mut lats = std::mem::take(&mut *latencies.lock().unwrap_or_else(PoisonError::into_inner));
    lats.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((p / 100.0) * lats.len() as f64) as usize;
        let ms = lats.get(i.min(lats.len().saturating_sub(1))).copied();
        (ms.unwrap_or(f64::NAN) * 100.0).round() / 100.0
    };
    Ok(json!({
        "keys": keys, "n": n, "drain_jobs_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64(),
        "lease_calls": lats.len(), "lease_p50_ms": pct(50.0), "lease_p99_ms": pct(99.0),
    }))
}
