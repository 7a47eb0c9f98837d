//! The monitor phases (issue 36): 10,000 HTTP monitors at a 30-second
//! interval against a target in this process (how late each probe starts
//! against its slot, the CPU it takes, the memory it holds), the monitors
//! page and a status page at that size, and heartbeats pinged as fast as
//! 64 clients can (each ping durable before its 200).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_client::{Client, MonitorRequest, StatusPageRequest};
use serde_json::{Value, json};

use crate::server::{BenchServer, CpuMeter};
use crate::{BenchArgs, NS, emit, per_s, percentile, with};

/// Requests in flight while monitors are made, and pingers.
const CONC: usize = 64;

/// When each monitor's probe reached the target: (monitor, ms since the epoch).
type Arrivals = Arc<Mutex<Vec<(usize, i64)>>>;

fn now_ms() -> i64 {
    use keel_core::Clock as _;
    keel_core::SystemClock.now().as_millis()
}

/// The monitor phases `args` names, in order.
pub(crate) async fn phases(
    args: &BenchArgs,
    servers: &[BenchServer],
    client: &Client,
) -> anyhow::Result<()> {
    let named = |phase: &str| args.phases.iter().any(|p| p == phase);
    if named("monitor_probes") {
        let report = probes(servers, client, args.monitors_n, 30_000, args.monitor_secs).await?;
        emit("monitor_probes", report);
        if named("monitor_pages") {
            emit("monitor_pages", pages(&servers[0], client).await?);
        }
    }
    if named("heartbeats") {
        emit(
            "heartbeats",
            heartbeats(servers, client, 1000, args.n).await?,
        );
    }
    Ok(())
}

/// A target on loopback answering 200 at `/t/{i}`, noting each arrival.
async fn target(arrivals: Arrivals) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/t/{i}",
        axum::routing::get(move |axum::extract::Path(i): axum::extract::Path<usize>| {
            let arrivals = arrivals.clone();
            async move {
                arrivals
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((i, now_ms()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Calls `make(i)` for `i` below `n`, `CONC` at once.
async fn each<F, Fut>(n: usize, make: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONC.min(n) {
        let (next, make) = (next.clone(), make.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                make(i).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// `n` HTTP monitors every `interval_ms`, measured over `secs` after one
/// interval of warm-up.
async fn probes(
    servers: &[BenchServer],
    client: &Client,
    n: usize,
    interval_ms: u64,
    secs: u64,
) -> anyhow::Result<Value> {
    let arrivals: Arrivals = Arc::default();
    let url = target(arrivals.clone()).await?;
    let made = each(n, {
        let client = client.clone();
        move |i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let spec: MonitorRequest = serde_json::from_value(json!({
                    "http": {"url": format!("{url}/t/{i}"), "timeout_ms": 5000},
                    "interval_ms": interval_ms,
                }))?;
                client.put_monitor(NS, &format!("m{i}"), &spec).await?;
                Ok(())
            }
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    let from = now_ms();
    let cpu = CpuMeter::start(servers)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu.report(servers)?;
    let to = now_ms();
    let interval = interval_ms as i64;
    let arrived: Vec<(usize, i64)> = arrivals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(_, at)| (from..to).contains(at))
        .copied()
        .collect();
    let offset = |i: usize| (keel_core::monitor::offset(NS, &format!("m{i}")) % interval_ms) as i64;
    // A slot whose probe reached the target twice.
    let slots: std::collections::HashSet<(usize, i64)> = arrived
        .iter()
        .map(|&(i, at)| (i, (at - offset(i)).div_euclid(interval)))
        .collect();
    let twice = arrived.len() - slots.len();
    let mut late: Vec<f64> = arrived
        .iter()
        .map(|&(i, at)| ((at - offset(i)).rem_euclid(interval)) as f64)
        .collect();
    late.sort_by(f64::total_cmp);
    let expected = n as f64 * (to - from) as f64 / interval as f64;
    let rss_mb = servers[0].rss_mb()?;
    let server_cpu = cpu["server_cpu_s"].as_f64().unwrap_or(0.0);
    Ok(with(
        json!({
            "monitors": n,
            "secs": (to - from) as f64 / 1000.0,
            "interval_ms": interval_ms,
            "created_per_s": per_s(n, made),
            "probes": late.len(),
            "probes_expected": expected.round(),
            "slots_probed_twice": twice,
            "probes_per_s": (late.len() as f64 / (to - from) as f64 * 1000.0).round(),
            "start_late_p50_ms": percentile(&late, 50.0),
            "start_late_p99_ms": percentile(&late, 99.0),
            "start_late_max_ms": late.last().copied().unwrap_or(f64::NAN),
            "rss_mb": rss_mb,
            "cpu_percent_of_one_core": (server_cpu / secs as f64 * 1000.0).round() / 10.0,
        }),
        cpu,
    ))
}

/// The dashboard's monitors page (its first thousand) and a status page of
/// 100 monitors, with the monitors `probes` made: milliseconds per load.
async fn pages(server: &BenchServer, client: &Client) -> anyhow::Result<Value> {
    let names: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let page: StatusPageRequest =
        serde_json::from_value(json!({"title": "Bench status", "monitors": names}))?;
    client.put_status_page(NS, "bench", &page).await?;
    let http = reqwest::Client::new();
    let cookie = format!("keel_token={}", server.token().unwrap_or_default());
    let time = |path: &'static str| {
        let (http, url, cookie) = (
            http.clone(),
            format!("{}{path}", server.url),
            cookie.clone(),
        );
        async move {
            let mut ms = Vec::new();
            for _ in 0..20 {
                let started = Instant::now();
                let resp = http.get(&url).header("cookie", &cookie).send().await?;
                anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
                let body = resp.bytes().await?;
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(!body.is_empty());
            }
            let first = ms[0];
            ms.sort_by(f64::total_cmp);
            Ok::<_, anyhow::Error>(json!({"first_ms": (first * 100.0).round() / 100.0,
                "p50_ms": percentile(&ms, 50.0), "max_ms": percentile(&ms, 100.0)}))
        }
    };
    let monitors_page = time("/ui/monitors?ns=default").await?;
    let status_page = time("/status/bench").await?;
    Ok(json!({"monitors_page_1000_rows": monitors_page, "status_page_100_monitors": status_page}))
}

/// `n` pings over `monitors` heartbeat monitors from 64 clients.
async fn heartbeats(
    servers: &[BenchServer],
    client: &Client,
    monitors: usize,
    n: usize,
) -> anyhow::Result<Value> {
    let mut tokens = Vec::with_capacity(monitors);
    for i in 0..monitors {
        let spec: MonitorRequest =
            serde_json::from_value(json!({"heartbeat": {"period_ms": 3_600_000}, "paused": true}))?;
        let made = client.put_monitor(NS, &format!("hb{i}"), &spec).await?;
        let url = made.ping_url.context("a heartbeat has a ping url")?;
        tokens.push(url.trim_start_matches("/v1/ping/").to_owned());
    }
    let tokens = Arc::new(tokens);
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let cpu = CpuMeter::start(servers)?;
    let took = each(n, {
        let (client, latencies) = (client.clone(), latencies.clone());
        move |i| {
            let (client, tokens, latencies) = (client.clone(), tokens.clone(), latencies.clone());
            async move {
                let started = Instant::now();
                client.ping(&tokens[i % tokens.len()], None, "").await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                latencies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(ms);
                Ok(())
            }
        }
    })
    .await?;
    let mut ms = latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    ms.sort_by(f64::total_cmp);
    Ok(with(
        json!({
            "monitors": monitors,
            "secs": took.as_secs_f64(),
            "pings": n,
            "pings_per_s": per_s(n, took),
            "p50_ms": percentile(&ms, 50.0),
            "p99_ms": percentile(&ms, 99.0),
        }),
        cpu.report(servers)?,
    ))
}
