//! The webhook phases: pushes to a local receiver (every answer a success,
//! and with one answer in ten a 500), push-queue jobs, and signed webhooks
//! ingested through a source. The receiver runs in this process, on
//! loopback; the server runs with `--allow-private-http` so it may call it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use keel_client::{Client, EndpointRequest, SourceRequest};
use keel_core::subscription::Target;
use keel_core::{Clock as _, EndpointName, QueuePolicy};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::server::{BenchServer, CpuMeter};
use crate::{NS, PHASE_TIMEOUT, per_s, with};

/// Deliveries in flight to the receiver.
const IN_FLIGHT: u32 = 128;
/// Webhooks posted at once to the ingress.
const INGEST_CONC: usize = 64;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Counts distinct `webhook-id`s answered 2xx; answers 500 to every
/// `fail_every`th request (never when 0).
struct Receiver {
    url: String,
    done: Arc<Mutex<HashSet<String>>>,
    requests: Arc<AtomicUsize>,
    reached: Arc<Notify>,
}

impl Receiver {
    async fn start(n: usize, fail_every: usize) -> anyhow::Result<Receiver> {
        let done: Arc<Mutex<HashSet<String>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(Notify::new());
        let (d, r, notify) = (done.clone(), requests.clone(), reached.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let (done, requests, reached) = (d.clone(), r.clone(), notify.clone());
            async move {
                let k = requests.fetch_add(1, Ordering::Relaxed) + 1;
                if fail_every > 0 && k.is_multiple_of(fail_every) {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "try again");
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut done = done
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                done.insert(id);
                if done.len() >= n {
                    reached.notify_one();
                }
                (StatusCode::OK, "{\"ok\":true}")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver {
            url,
            done,
            requests,
            reached,
        })
    }

    async fn wait(&self) -> anyhow::Result<()> {
        tokio::time::timeout(PHASE_TIMEOUT, self.reached.notified())
            .await
            .context("the receiver never got every message")
    }

    fn delivered(&self) -> usize {
        self.done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

async fn endpoint(client: &Client, name: &str, url: &str) -> anyhow::Result<()> {
    let request: EndpointRequest = serde_json::from_value(json!({
        "url": url, "max_in_flight": IN_FLIGHT, "retry_schedule_ms": [0, 10, 10, 10, 10, 10],
    }))?;
    client.put_endpoint(NS, name, &request).await?;
    Ok(())
}

/// `n` events published in batches to a topic whose subscription pushes
/// each to the receiver; timed from the first publish to the last message
/// received, with the attempts it took.
pub(crate) async fn push(
    servers: &[BenchServer],
    client: &Client,
    n: usize,
    fail_every: usize,
) -> anyhow::Result<Value> {
    let receiver = Receiver::start(n, fail_every).await?;
    let name = format!("bench-push-{fail_every}");
    endpoint(client, &name, &receiver.url).await?;
    let target = Target::Endpoint {
        endpoint: EndpointName::new(&name)?,
        payload: None,
    };
    crate::events::subscribe(client, &name, &name, Some(target)).await?;
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    crate::events::publish_batches(std::slice::from_ref(client), &name, n, 1000, 0).await?;
    receiver.wait().await?;
    let elapsed = started.elapsed();
    let fields = json!({
        "n": n, "deliveries_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64(),
        "requests": receiver.requests.load(Ordering::Relaxed), "delivered": receiver.delivered(),
        "in_flight": IN_FLIGHT,
    });
    Ok(with(fields, cpu.report(servers)?))
}

/// `n` jobs enqueued in batches on a push queue; timed from the first
/// enqueue to the last job received.
pub(crate) async fn push_queue(
    servers: &[BenchServer],
    client: &Client,
    n: usize,
    batch: usize,
) -> anyhow::Result<Value> {
    let receiver = Receiver::start(n, 0).await?;
    endpoint(client, "bench-fn", &receiver.url).await?;
    let policy: QueuePolicy = serde_json::from_value(json!({
        "push": {"endpoint": "bench-fn", "concurrency": IN_FLIGHT},
    }))?;
    client
        .put_queue_policy(NS, "bench-push-queue", &policy)
        .await?;
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    crate::jobs::enqueue_bulk(std::slice::from_ref(client), "bench-push-queue", n, batch).await?;
    receiver.wait().await?;
    let elapsed = started.elapsed();
    let fields = json!({ "n": n, "jobs_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64(), "concurrency": IN_FLIGHT });
    Ok(with(fields, cpu.report(servers)?))
}

/// `n` Standard Webhooks requests, each signed here, posted to a source's
/// ingress `INGEST_CONC` at a time; each answered only once durable.
pub(crate) async fn ingest(
    servers: &[BenchServer],
    client: &Client,
    url: &str,
    n: usize,
) -> anyhow::Result<Value> {
    let source: SourceRequest = serde_json::from_value(json!({
        "topic": "bench-ingest", "verify": {"scheme": "standard_webhooks", "secret": SECRET},
    }))?;
    client.put_source(NS, "bench-src", &source).await?;
    let http = reqwest::Client::new();
    let ingress = format!("{url}/v1/hooks/{NS}/bench-src");
    let key =
        base64::engine::general_purpose::STANDARD.decode(SECRET.trim_start_matches("whsec_"))?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let mut posters = tokio::task::JoinSet::new();
    for _ in 0..INGEST_CONC {
        let (http, ingress, key, next) = (http.clone(), ingress.clone(), key.clone(), next.clone());
        posters.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let id = format!("msg_{i}");
                let body = json!({"type": "invoice.paid", "data": {"i": i}}).to_string();
                let ts = (keel_core::SystemClock.now().as_millis() / 1000).to_string();
                let signed = format!("{id}.{ts}.{body}");
                let tag = ring::hmac::sign(&key, signed.as_bytes());
                let signature = format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
                );
                let answer = http
                    .post(&ingress)
                    .header("webhook-id", id)
                    .header("webhook-timestamp", ts)
                    .header("webhook-signature", signature)
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(answer.status().is_success(), "ingress: {}", answer.status());
            }
        });
    }
    while let Some(done) = posters.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    let fields = json!({ "n": n, "conc": INGEST_CONC, "webhooks_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64() });
    Ok(with(fields, cpu.report(servers)?))
}
