//! The `schedules` phase: `n` schedules each firing once a minute (spread
//! over the minute by their seconds field, as real crons spread), a worker
//! draining what they enqueue, for `secs`. Reports how late each slot fired
//! (the fire's time minus its slot, both from the payload), how late it was
//! leased, the fires against the slots expected, duplicates, and the
//! server's CPU over the window.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_client::{Client, ScheduleRequest};
use keel_core::{Clock as _, Timestamp};
use serde_json::{Value, json};

use crate::server::{BenchServer, CpuMeter};
use crate::{NS, with};

const QUEUE: &str = "bench-schedules";
/// Schedules put at once.
const PUT_CONC: usize = 64;

/// One slot seen by the worker.
struct Seen {
    schedule: String,
    nominal: i64,
    fired_late_ms: f64,
    leased_late_ms: f64,
}

pub(crate) async fn schedules(
    servers: &[BenchServer],
    client: &Client,
    n: usize,
    secs: u64,
    conc: usize,
) -> anyhow::Result<Value> {
    let put_started = Instant::now();
    let mut puts = tokio::task::JoinSet::new();
    for w in 0..PUT_CONC {
        let client = client.clone();
        puts.spawn(async move {
            for i in (w..n).step_by(PUT_CONC) {
                let spec: ScheduleRequest = serde_json::from_value(json!({
                    "cron": format!("{} * * * * *", i % 60),
                    "overlap": "allow",
                    "target": {"queue": QUEUE, "job": {"payload": {
                        "s": "${{ schedule.name }}",
                        "nominal": "${{ schedule.nominal_time }}",
                        "fired": "${{ schedule.fired_at }}",
                    }}},
                }))?;
                client.put_schedule(NS, &format!("s{i}"), &spec).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(put) = puts.join_next().await {
        put??;
    }
    let put_secs = put_started.elapsed().as_secs_f64();

    // Measure whole minutes of slots from the next minute on.
    let now_ms = keel_core::SystemClock.now().as_millis();
    let from = (now_ms / 60_000 + 1) * 60_000;
    let to = from + i64::try_from(secs * 1000).unwrap_or(i64::MAX);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..conc.max(1) {
        let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
        workers.spawn(async move {
            loop {
                let lease = client.lease(NS, QUEUE, "bench", 200, 1000, None);
                let jobs = tokio::select! {
                    jobs = lease => jobs?,
                    () = stop.notified() => return anyhow::Ok(()),
                };
                let leased = keel_core::SystemClock.now().as_millis();
                let mut acks = Vec::with_capacity(jobs.len());
                let mut batch = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let payload = &job.payload;
                    let time = |field: &str| {
                        payload[field]
                            .as_str()
                            .and_then(Timestamp::parse_rfc3339)
                            .map_or(0, Timestamp::as_millis)
                    };
                    let nominal = time("nominal");
                    batch.push(Seen {
                        schedule: payload["s"].as_str().unwrap_or_default().to_owned(),
                        nominal,
                        fired_late_ms: (time("fired") - nominal) as f64,
                        leased_late_ms: (leased - nominal) as f64,
                    });
                    acks.push(json!({"id": job.id, "lease_token": job.lease_token}));
                }
                if !acks.is_empty() {
                    client.acks(NS, acks, Vec::new()).await?;
                }
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(batch);
            }
        });
    }
    let wait_start = Duration::from_millis(u64::try_from(from - now_ms).unwrap_or(0));
    tokio::time::sleep(wait_start).await;
    let cpu = CpuMeter::start(servers)?;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu.report(servers)?;
    let window_secs = window.elapsed().as_secs_f64();
    // Slots of the window's last seconds: give them time to arrive.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.notify_waiters();
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    let inside: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.nominal >= from && s.nominal < to)
        .collect();
    let distinct: HashSet<(&str, i64)> = inside
        .iter()
        .map(|s| (s.schedule.as_str(), s.nominal))
        .collect();
    let expected = n as u64 * secs / 60;
    let mut fired: Vec<f64> = inside.iter().map(|s| s.fired_late_ms).collect();
    let mut leased: Vec<f64> = inside.iter().map(|s| s.leased_late_ms).collect();
    Ok(with(
        json!({
            "schedules": n, "secs": secs, "put_secs": (put_secs * 10.0).round() / 10.0,
            "fires_expected": expected, "fires": inside.len(), "duplicates": inside.len() - distinct.len(),
            "fires_per_s": (inside.len() as f64 / window_secs).round(),
            "fire_late_p50_ms": pct(&mut fired, 50.0), "fire_late_p99_ms": pct(&mut fired, 99.0),
            "fire_late_max_ms": pct(&mut fired, 100.0),
            "leased_late_p50_ms": pct(&mut leased, 50.0), "leased_late_p99_ms": pct(&mut leased, 99.0),
            "server_cores": cpu["server_cpu_s"].as_f64().map(|s| (s / window_secs * 100.0).round() / 100.0),
        }),
        cpu,
    ))
}

fn pct(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * values.len() as f64) as usize;
    values
        .get(i.min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}
