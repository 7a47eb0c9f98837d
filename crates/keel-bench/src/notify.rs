//! The notification phases (issue 35): notifications accepted (each a
//! durable write with its delivery's job) and delivered to the in-app
//! inbox; e-mails handed to an SMTP sink; Slack's pacing, one channel and
//! many; and 10,000 open inbox streams on one node with the time from a
//! send to its event. The sink and the Slack stand-in run in this process
//! on loopback (the server runs with `--allow-private-http`); the SMTP sink
//! speaks just enough SMTP (EHLO, MAIL, RCPT, DATA, QUIT) to take every
//! message as a mail server would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_client::{
    ChannelRequest, Client, DeliveryStatus, NotificationsPage, NotifyRequest, RecipientRequest,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use crate::server::{BenchServer, CpuMeter};
use crate::{BenchArgs, NS, PHASE_TIMEOUT, emit, per_s, percentile, with};

/// Notifications posted at once.
const CONC: usize = 64;
/// Recipients the accept phase spreads its notifications over.
const RECIPIENTS: usize = 100;
/// Notifications a second of the accept phase's steady part.
const PACED_RATE: u32 = 2000;

/// The notification phases `args` names, in order.
pub(crate) async fn phases(
    args: &BenchArgs,
    servers: &[BenchServer],
    client: &Client,
) -> anyhow::Result<()> {
    let n = args.notify_n.unwrap_or(args.n);
    let named = |phase: &str| args.phases.iter().any(|p| p == phase);
    if named("notify_accept") {
        emit("notify_accept", accept(servers, client, n).await?);
    }
    if named("notify_email") {
        emit("notify_email", email(servers, client, n).await?);
    }
    if named("notify_slack") {
        emit("notify_slack", slack(client).await?);
    }
    if named("notify_streams") {
        let report = streams(&args.keel_binary()?, args.inbox_streams, 200).await?;
        emit("notify_streams", report);
    }
    Ok(())
}

async fn channel(client: &Client, name: &str, spec: Value) -> anyhow::Result<()> {
    let spec: ChannelRequest = serde_json::from_value(spec)?;
    client.put_channel(NS, name, &spec).await?;
    Ok(())
}

async fn recipients(client: &Client, ids: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let spec = RecipientRequest {
        email: Some("bench@example.com".to_owned()),
        ..RecipientRequest::default()
    };
    for id in ids {
        client.put_recipient(NS, &id, &spec).await?;
    }
    Ok(())
}

fn request(channel: &str, to: &str, key: usize) -> anyhow::Result<NotifyRequest> {
    Ok(serde_json::from_value(json!({
        "subject": format!("bench {key}"), "text": "a benchmark notification",
        "channel": channel, "to": to, "dedup_key": format!("bench-{key}"),
    }))?)
}

/// Posts `n` notifications on `channel`, `CONC` at once; the latencies of
/// the accepting requests, sorted, in ms.
async fn post_all(client: &Client, channel: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut posters = tokio::task::JoinSet::new();
    for _ in 0..CONC.min(n) {
        let (client, next, channel) = (client.clone(), next.clone(), channel.to_owned());
        posters.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let to = format!("r{}", i % RECIPIENTS);
                let body = request(&channel, &to, i)?;
                let started = Instant::now();
                client.notify(NS, &body, None).await?;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = posters.join_next().await {
        all.extend(done??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// Waits until no delivery is queued or sending on the server.
async fn drained(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let mut busy = false;
        for status in [DeliveryStatus::Queued, DeliveryStatus::Sending] {
            let page = NotificationsPage {
                status: Some(status),
                limit: Some(1),
                ..NotificationsPage::default()
            };
            busy |= !client
                .list_notifications(NS, &page)
                .await?
                .notifications
                .is_empty();
        }
        if !busy {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "deliveries never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Notifications sent at `rate` a second for `secs`, each on its own
/// request whatever the others do (an open loop); the latencies of the
/// accepting requests, sorted, in ms.
async fn paced(client: &Client, channel: &str, rate: u32, secs: u64) -> anyhow::Result<Vec<f64>> {
    let n = rate as usize * secs as usize;
    let started = tokio::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / f64::from(rate)))
            .await;
        let (client, body) = (
            client.clone(),
            request(channel, &format!("r{}", i % RECIPIENTS), 1_000_000 + i)?,
        );
        calls.spawn(async move {
            let sent = Instant::now();
            client.notify(NS, &body, None).await?;
            Ok::<_, anyhow::Error>(sent.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = calls.join_next().await {
        all.push(done??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// `n` notifications accepted (`CONC` requests in flight) and delivered to
/// the in-app inbox: accepted per second with the requests' latency, and
/// delivered per second from the first request to the last delivery; then
/// the latency of accepting at a steady 2,000 a second.
pub(crate) async fn accept(
    servers: &[BenchServer],
    client: &Client,
    n: usize,
) -> anyhow::Result<Value> {
    channel(client, "bench-inbox", json!({"in_app": {}})).await?;
    recipients(client, (0..RECIPIENTS).map(|i| format!("r{i}"))).await?;
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let latencies = post_all(client, "bench-inbox", n).await?;
    let accepted = started.elapsed();
    drained(client).await?;
    let delivered = started.elapsed();
    let report = cpu.report(servers)?;
    let steady = paced(client, "bench-inbox", PACED_RATE, 3).await?;
    let fields = json!({
        "n": n, "in_flight": CONC, "accepted_per_s": per_s(n, accepted),
        "p50_ms": percentile(&latencies, 50.0), "p99_ms": percentile(&latencies, 99.0),
        "delivered_per_s": per_s(n, delivered), "secs": delivered.as_secs_f64(),
        "paced_rate": PACED_RATE, "paced_p50_ms": percentile(&steady, 50.0),
        "paced_p99_ms": percentile(&steady, 99.0),
    });
    Ok(with(fields, report))
}

/// An SMTP server that takes every message; counts them.
struct SmtpSink {
    port: u16,
    received: Arc<AtomicUsize>,
    reached: Arc<Notify>,
}

impl SmtpSink {
    async fn start(n: usize) -> anyhow::Result<SmtpSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (received, reached) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let (count, done) = (received.clone(), reached.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (count, done) = (count.clone(), done.clone());
                tokio::spawn(async move {
                    let _ = session(socket, |_| {
                        if count.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                            done.notify_one();
                        }
                    })
                    .await;
                });
            }
        });
        Ok(SmtpSink {
            port,
            received,
            reached,
        })
    }
}

/// One SMTP session: every command accepted, every message counted.
async fn session(socket: tokio::net::TcpStream, mut got: impl FnMut(usize)) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut in_data = false;
    let mut bytes = 0;
    while let Some(line) = lines.next_line().await? {
        if in_data {
            if line == "." {
                in_data = false;
                got(bytes);
                bytes = 0;
                write.write_all(b"250 2.0.0 queued\r\n").await?;
            } else {
                bytes += line.len() + 2;
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "DATA" => {
                in_data = true;
                b"354 go on\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 OK\r\n",
        };
        write.write_all(answer).await?;
    }
    Ok(())
}

/// `n` e-mails into the sink, timed from the first request to the last
/// message the sink took.
pub(crate) async fn email(
    servers: &[BenchServer],
    client: &Client,
    n: usize,
) -> anyhow::Result<Value> {
    let sink = SmtpSink::start(n).await?;
    let url = format!("smtp://127.0.0.1:{}?tls=none", sink.port);
    channel(
        client,
        "bench-mail",
        json!({"email": {"smtp_url": url, "from": "bench@example.com"}}),
    )
    .await?;
    recipients(client, (0..RECIPIENTS).map(|i| format!("r{i}"))).await?;
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let reached = sink.reached.notified();
    tokio::pin!(reached);
    reached.as_mut().enable();
    post_all(client, "bench-mail", n).await?;
    tokio::time::timeout(PHASE_TIMEOUT, reached)
        .await
        .context("the sink never got every e-mail")?;
    let elapsed = started.elapsed();
    let fields = json!({
        "n": n, "emails_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64(),
        "received": sink.received.load(Ordering::Relaxed),
    });
    Ok(with(fields, cpu.report(servers)?))
}

/// A Slack stand-in: when each request came, by path.
async fn slack_stand_in() -> anyhow::Result<(String, Arc<Mutex<HashMap<String, Vec<Instant>>>>)> {
    let arrivals: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let seen = arrivals.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(uri.path().to_owned())
                .or_default()
                .push(Instant::now());
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, arrivals))
}

/// 60 messages to one Slack channel (paced at one a second: at least 59 s)
/// and one message to each of 60 channels (not paced against each other).
pub(crate) async fn slack(client: &Client) -> anyhow::Result<Value> {
    const N: usize = 60;
    let (base, arrivals) = slack_stand_in().await?;
    recipients(client, std::iter::once("r0".to_owned())).await?;
    for c in 0..=N {
        let url = format!("{base}/hook/{c}");
        channel(
            client,
            &format!("bench-slack-{c}"),
            json!({"slack": {"webhook_url": url}}),
        )
        .await?;
    }
    let count = |path: &str| {
        arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .map_or(0, Vec::len)
    };
    let span = |paths: &[String]| -> f64 {
        let arrivals = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let at: Vec<Instant> = paths
            .iter()
            .flat_map(|p| arrivals.get(p).cloned().unwrap_or_default())
            .collect();
        match (at.iter().min(), at.iter().max()) {
            (Some(first), Some(last)) => (*last - *first).as_secs_f64(),
            _ => f64::NAN,
        }
    };
    let wait_for = |paths: Vec<String>, n: usize| async move {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        while paths.iter().map(|p| count(p)).sum::<usize>() < n {
            anyhow::ensure!(Instant::now() < deadline, "Slack never got every message");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, anyhow::Error>(())
    };
    let started = Instant::now();
    let many: Vec<String> = (1..=N).map(|c| format!("/hook/{c}")).collect();
    for c in 1..=N {
        client
            .notify(
                NS,
                &request(&format!("bench-slack-{c}"), "r0", 1000 + c)?,
                None,
            )
            .await?;
    }
    wait_for(many.clone(), N).await?;
    let spread = span(&many);
    let to_many = started.elapsed().as_secs_f64();
    for i in 0..N {
        client
            .notify(NS, &request("bench-slack-0", "r0", i)?, None)
            .await?;
    }
    let one = vec!["/hook/0".to_owned()];
    wait_for(one.clone(), N).await?;
    Ok(json!({
        "n": N, "one_channel_secs": span(&one), "many_channels_secs": to_many,
        "many_channels_spread_secs": spread,
    }))
}

/// `streams` inbox streams open on a server of their own, one recipient
/// each; then `sends` notifications to some of them, one every 20 ms, each
/// timed from its request to its event on the recipient's stream.
pub(crate) async fn streams(
    keel: &std::path::Path,
    streams: usize,
    sends: usize,
) -> anyhow::Result<Value> {
    let server = BenchServer::start_with(
        keel,
        None,
        &["--max-connections", &(streams + 1000).to_string()],
    )
    .await?;
    let client = server.client()?;
    channel(&client, "bench-inbox", json!({"in_app": {}})).await?;
    let step = (streams / sends.max(1)).max(1);
    let targets: Vec<usize> = (0..sends).map(|k| (k * step) % streams).collect();
    recipients(&client, targets.iter().map(|r| format!("s{r}"))).await?;
    let rss_before = server.rss_mb()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let (events, mut arrived) = mpsc::unbounded_channel::<(usize, Instant)>();
    let open = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(Notify::new());
    for r in 0..streams {
        let url = format!("{}/v1/namespaces/{NS}/inbox/s{r}/stream", server.url);
        let (http, events, open, opened) =
            (http.clone(), events.clone(), open.clone(), opened.clone());
        let token = server.token().map(str::to_owned);
        tokio::spawn(async move {
            let mut req = http.get(url);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let Ok(mut response) = req.send().await else {
                return;
            };
            if open.fetch_add(1, Ordering::Relaxed) + 1 == streams {
                opened.notify_one();
            }
            while let Ok(Some(chunk)) = response.chunk().await {
                if chunk.windows(6).any(|w| w == b"event:") {
                    let _ = events.send((r, Instant::now()));
                }
            }
        });
    }
    tokio::time::timeout(PHASE_TIMEOUT, opened.notified())
        .await
        .context("not every stream opened")?;
    let rss_open = server.rss_mb()?;
    let mut sent_at = HashMap::new();
    for (k, r) in targets.iter().enumerate() {
        sent_at.insert(*r, Instant::now());
        client
            .notify(NS, &request("bench-inbox", &format!("s{r}"), k)?, None)
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::with_capacity(sends);
    while latencies.len() < sends {
        let (r, at) = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
            .await
            .context("an event never came")?
            .context("the streams ended")?;
        if let Some(sent) = sent_at.remove(&r) {
            latencies.push((at - sent).as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let rss = server.rss_mb()?;
    server.stop().await?;
    Ok(json!({
        "n": streams, "streams": open.load(Ordering::Relaxed), "sends": sends,
        "rss_mb_before": rss_before, "rss_mb_open": rss_open, "rss_mb": rss,
        "p50_ms": percentile(&latencies, 50.0), "p99_ms": percentile(&latencies, 99.0),
    }))
}
