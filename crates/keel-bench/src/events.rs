//! The event phases: publish one event per request and in batches, drain a
//! pulled subscription, drain a queue-target subscription over 1,000 keys
//! with SDK workers (order checked per key), publish→handler latency, and
//! the workload users quote: 10 million events an hour through a keyed
//! subscription, with the CPU it used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use keel_client::{Client, NewEvent, StartAt, StartNamed, SubscriptionRequest};
use keel_core::subscription::Target;
use serde_json::{Value, json};

use crate::jobs::CountingWorker;
use crate::server::{BenchServer, CpuMeter};
use crate::{Handlers, NS, PHASE_TIMEOUT, per_s, with};

fn event(data: Value, key: Option<String>) -> NewEvent {
    NewEvent {
        id: None,
        kind: None,
        source: None,
        key,
        time: None,
        data: Some(data),
        headers: Default::default(),
    }
}

/// `n` events, one per request, `conc` in flight.
pub(crate) async fn publish_single(
    clients: &[Client],
    topic: &str,
    n: usize,
    conc: usize,
) -> anyhow::Result<Duration> {
    let topic = topic.to_owned();
    crate::one_by_one(clients, n, conc, move |client, i| {
        let topic = topic.clone();
        async move {
            client
                .publish(NS, &topic, &event(json!({ "i": i }), None))
                .await
                .map(drop)
        }
    })
    .await
}

/// `n` events in batches of `batch`, four batches in flight, keyed over
/// `keys` keys (none when 0).
pub(crate) async fn publish_batches(
    clients: &[Client],
    topic: &str,
    n: usize,
    batch: usize,
    keys: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for (k, from) in (0..n).step_by(batch.max(1)).enumerate() {
        let events: Vec<NewEvent> = (from..(from + batch).min(n))
            .map(|i| {
                let key = (keys > 0).then(|| format!("k{}", i % keys));
                event(json!({ "i": i, "k": key }), key)
            })
            .collect();
        let (client, topic) = (clients[k % clients.len()].clone(), topic.to_owned());
        producers.spawn(async move { client.publish_batch(NS, &topic, events).await });
        if producers.len() >= 4
            && let Some(done) = producers.join_next().await
        {
            done??;
        }
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

pub(crate) async fn subscribe(
    client: &Client,
    name: &str,
    topic: &str,
    target: Option<Target>,
) -> anyhow::Result<()> {
    let request = SubscriptionRequest {
        topic: topic.to_owned(),
        filter: None,
        start: Some(StartAt::Named(StartNamed::Earliest)),
        target,
        consumer_timeout_ms: None,
    };
    client.put_subscription(NS, name, &request).await?;
    Ok(())
}

/// One consumer drains a pulled subscription from the start of `topic`
/// until `n` events are committed: it fetches up to 1,000 at a time and
/// commits each batch while fetching the next (one commit in flight), as the
/// peers' consumers ack while they receive. More consumers only contend for
/// the same prefix of the log here.
pub(crate) async fn drain_pulled(
    servers: &[BenchServer],
    client: &Client,
    topic: &str,
    n: usize,
) -> anyhow::Result<(Duration, Value)> {
    let name = format!("{topic}-pulled");
    subscribe(client, &name, topic, None).await?;
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let drain = async {
        let mut done = 0;
        let mut committing: Option<tokio::task::JoinHandle<Result<_, keel_client::ClientError>>> =
            None;
        while done < n {
            let fetched = client.fetch(NS, &name, "c0", 1000, 200).await?;
            if let Some(previous) = committing.take() {
                previous.await??;
            }
            if let Some(cursor) = fetched.cursor {
                done += fetched.events.len();
                let (client, name) = (client.clone(), name.clone());
                committing = Some(tokio::spawn(async move {
                    client.commit(NS, &name, "c0", &cursor).await
                }));
            }
        }
        if let Some(last) = committing {
            last.await??;
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(PHASE_TIMEOUT, drain)
        .await
        .context("the pulled drain did not finish in time")??;
    Ok((started.elapsed(), cpu.report(servers)?))
}

/// Each job carries its event's seq and key (order is per key, in seq
/// order: concurrent batches may commit in another order than sent) and the
/// publisher's `t0`.
fn queue_target(queue: &str) -> anyhow::Result<Target> {
    let payload =
        json!({"i": "${{ event.seq }}", "k": "${{ event.key }}", "t0": "${{ event.data.t0 }}"});
    Ok(serde_json::from_value(
        json!({"queue": queue, "job": {"payload": payload}}),
    )?)
}

/// SDK workers counting `n` jobs (times from `origin`) on `{topic}-jobs`,
/// which a queue-target subscription from the start of `topic` feeds.
async fn fed_workers(
    clients: &[Client],
    topic: &str,
    handlers: Handlers,
    n: usize,
    origin: Instant,
) -> anyhow::Result<CountingWorker> {
    let queue = format!("{topic}-jobs");
    let worker = CountingWorker::start(clients, &queue, handlers, n, origin);
    subscribe(
        &clients[0],
        &format!("{topic}-target"),
        topic,
        Some(queue_target(&queue)?),
    )
    .await?;
    Ok(worker)
}

/// `n` events over `keys` keys, already published, handed by a queue-target
/// subscription to SDK workers: timed from the subscription's creation to
/// the last handler start.
pub(crate) async fn keyed_target(
    servers: &[BenchServer],
    clients: &[Client],
    topic: &str,
    n: usize,
    handlers: Handlers,
) -> anyhow::Result<Value> {
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let worker = fed_workers(clients, topic, handlers, n, started).await?;
    worker.wait().await?;
    let elapsed = started.elapsed();
    let cpu = cpu.report(servers)?;
    let out_of_order = worker.out_of_order();
    worker.shut_down().await?;
    ensure!(
        out_of_order == 0,
        "{out_of_order} events ran before an earlier one of their key"
    );
    Ok(with(
        json!({ "n": n, "keys": 1000, "events_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64(), "order_violations": out_of_order }),
        cpu,
    ))
}

/// Events published one per request at `rate` for `secs` (open loop, keyed
/// over 1,000 keys) through a queue-target subscription to SDK workers:
/// publish→handler latency, and the servers' CPU.
pub(crate) async fn paced(
    servers: &[BenchServer],
    clients: &[Client],
    topic: &str,
    rate: u64,
    secs: u64,
    handlers: Handlers,
) -> anyhow::Result<Value> {
    let total = (rate * secs) as usize;
    let origin = Instant::now();
    let worker = fed_workers(clients, topic, handlers, total, origin).await?;
    let cpu = CpuMeter::start(servers)?;
    let started = tokio::time::Instant::now();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        crate::jobs::MAX_PACED_IN_FLIGHT,
    ));
    let mut producers = tokio::task::JoinSet::new();
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
        let key = format!("k{}", i % 1000);
        let (client, topic) = (clients[i % clients.len()].clone(), topic.to_owned());
        producers.spawn(async move {
            let sent = client
                .publish(
                    NS,
                    &topic,
                    &event(json!({ "t0": t0, "i": i, "k": key }), Some(key)),
                )
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
    let cpu = cpu.report(servers)?;
    let out_of_order = worker.out_of_order();
    let mut lats = worker.shut_down().await?;
    lats.sort_by(f64::total_cmp);
    let pct = |p: f64| crate::percentile(&lats, p);
    Ok(with(
        json!({
            "rate": rate, "secs": secs, "n": lats.len(), "order_violations": out_of_order,
            "p50_ms": pct(50.0), "p90_ms": pct(90.0), "p99_ms": pct(99.0), "max_ms": pct(100.0),
        }),
        cpu,
    ))
}
