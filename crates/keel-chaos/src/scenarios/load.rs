//! The scenarios of load rather than faults: a slowloris, an open-loop
//! overload, and a long soak, with what the node holds meanwhile (read
//! from `/proc`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Report, under_load, usage, verdict};
use crate::Settings;
use crate::cluster::{Cluster, Store};
use crate::workload::NAMESPACE;

pub(super) async fn slowloris(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let header = s.header_timeout;
    let header_ms = header.as_millis().to_string();
    let cluster = Cluster::start(
        &s.keel,
        Store::Embedded(dir.path().into()),
        1,
        &["--header-timeout-ms", &header_ms],
    )
    .await?;
    let pid = cluster.pid(0).context("the node runs")?;
    let addr = format!("127.0.0.1:{}", cluster.nodes[0].port);
    let before = usage(pid);
    let mut attackers = Vec::new();
    for i in 0..s.connections {
        let addr = addr.clone();
        attackers.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return None;
            };
            let opened = Instant::now();
            let mut buf = [0u8; 1024];
            match i % 3 {
                0 => {}
                1 => stream
                    .write_all(b"POST /v1/namespaces/x/queues/q/jobs HT")
                    .await
                    .ok()?,
                _ => stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.ok()?,
            }
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        if read.map_or(true, |n| n == 0) {
                            return Some(opened.elapsed());
                        }
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)), if i % 3 == 2 => {
                        if stream.write_all(b"x-trickle: y\r\n").await.is_err() {
                            return Some(opened.elapsed());
                        }
                    }
                }
            }
        }));
    }
    // While they are held: a well-behaved client, and what the node holds.
    tokio::time::sleep(header / 2).await;
    let during = usage(pid);
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let sent = Instant::now();
        let resp = http.get(format!("http://{addr}/healthz")).send().await?;
        report.expect(resp.status() == 200, || {
            format!("healthz answered {}", resp.status())
        });
        slowest = slowest.max(sent.elapsed());
    }
    let mut closed = Vec::new();
    for attacker in attackers {
        if let Some(Some(after)) = tokio::time::timeout(header + Duration::from_secs(15), attacker)
            .await
            .ok()
            .and_then(Result::ok)
        {
            closed.push(after);
        }
    }
    let after = usage(pid);
    closed.sort();
    let last = closed.last().copied().unwrap_or_default();
    report.figure("connections", s.connections);
    report.figure("header timeout", format!("{header:?}"));
    report.figure("closed by the server", closed.len());
    report.figure("last closed after", format!("{last:.1?}"));
    report.figure(
        "a well-behaved request during the attack, slowest of 20",
        format!("{slowest:.1?}"),
    );
    report.figure(
        "resident memory before / during / after (MB)",
        format!("{} / {} / {}", before.rss_mb, during.rss_mb, after.rss_mb),
    );
    report.figure(
        "descriptors before / during / after",
        format!(
            "{} / {} / {}",
            before.descriptors, during.descriptors, after.descriptors
        ),
    );
    report.expect(closed.len() == s.connections, || {
        format!(
            "{} of {} connections were not closed",
            s.connections - closed.len(),
            s.connections
        )
    });
    report.expect(last < header + Duration::from_secs(5), || {
        format!("a connection stayed {last:?}")
    });
    report.expect(slowest < Duration::from_secs(1), || {
        format!("a well-behaved request took {slowest:?}")
    });
    report.expect(after.descriptors <= before.descriptors + 16, || {
        format!(
            "descriptors leaked: {} before, {} after",
            before.descriptors, after.descriptors
        )
    });
    Ok(())
}

/// One enqueue: its status (0: no answer) and how long it took.
async fn enqueue_once(
    http: &reqwest::Client,
    url: &str,
    n: u64,
) -> (u16, Duration, Option<String>) {
    let sent = Instant::now();
    let answer = http
        .post(url)
        .json(&json!({"payload": {"n": n}}))
        .send()
        .await;
    let Ok(resp) = answer else {
        return (0, sent.elapsed(), None);
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = resp.bytes().await;
    (status, sent.elapsed(), retry_after)
}

/// Requests the overload generator keeps in flight at most.
const GENERATOR_IN_FLIGHT: usize = 4096;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(super) async fn overload(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(&s.keel, Store::Embedded(dir.path().into()), 1, &[]).await?;
    let pid = cluster.pid(0).context("the node runs")?;
    let url = format!(
        "{}/v1/namespaces/{NAMESPACE}/queues/load/jobs",
        cluster.urls()[0]
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .build()?;

    // Capacity: 64 clients, closed loop, for 3 s.
    let measured = Instant::now();
    let mut clients = Vec::new();
    for c in 0..64u64 {
        let (http, url) = (http.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let mut done = 0u64;
            while measured.elapsed() < Duration::from_secs(3) {
                if enqueue_once(&http, &url, c).await.0 == 201 {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut capacity = 0u64;
    for client in clients {
        capacity += client.await?;
    }
    let capacity = capacity / 3;
    let rate = capacity * 2;

    // Open loop at twice that: a request every 1/rate s, whatever came back,
    // up to the generator's own bound of requests in flight (each holds a
    // connection and a descriptor); a request past it is not sent, and
    // counted.
    let before = usage(pid);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(GENERATOR_IN_FLIGHT));
    let mut not_sent = 0u64;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut peak_rss = before.rss_mb;
    let mut sampled = Instant::now();
    while started.elapsed() < s.duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            sent += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                not_sent += 1;
                continue;
            };
            let (http, url, tx) = (http.clone(), url.clone(), tx.clone());
            let n = sent;
            tokio::spawn(async move {
                let _ = tx.send(enqueue_once(&http, &url, n).await);
                drop(permit);
            });
        }
        if sampled.elapsed() > Duration::from_millis(500) {
            peak_rss = peak_rss.max(usage(pid).rss_mb);
            sampled = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(tx);
    let mut admitted = Vec::new();
    let (mut shed, mut shed_without_retry_after, mut other, mut no_answer) =
        (0u64, 0u64, 0u64, 0u64);
    while let Some((status, took, retry_after)) = rx.recv().await {
        match status {
            201 => admitted.push(took),
            429 | 503 => {
                shed += 1;
                shed_without_retry_after += u64::from(retry_after.is_none());
            }
            0 => no_answer += 1,
            _ => other += 1,
        }
    }
    admitted.sort();

    // Recovery: the load gone, a closed-loop client is served promptly.
    let mut recovered = Vec::new();
    for n in 0..50 {
        let (status, took, _) = enqueue_once(&http, &url, n).await;
        report.expect(status == 201, || {
            format!("after the load, an enqueue answered {status}")
        });
        recovered.push(took);
    }
    recovered.sort();
    let stats: serde_json::Value = http
        .get(format!(
            "{}/v1/namespaces/{NAMESPACE}/queues/load",
            cluster.urls()[0]
        ))
        .send()
        .await?
        .json()
        .await?;
    let stored = stats["counts"]["ready"].as_u64().unwrap_or(0);
    let acked = admitted.len() as u64 + 50;

    report.figure(
        "measured capacity (64 clients, closed loop)",
        format!("{capacity} enqueues/s"),
    );
    report.figure(
        "offered, open loop",
        format!("{rate}/s for {:?} ({sent} requests)", s.duration),
    );
    report.figure(
        "admitted (201) / shed (429, 503) / other / no answer",
        format!("{} / {shed} / {other} / {no_answer}", admitted.len()),
    );
    report.figure(
        "not sent: the generator had 4,096 requests in flight",
        not_sent,
    );
    report.figure(
        "admitted latency p50 / p99 / max",
        format!(
            "{:.0?} / {:.0?} / {:.0?}",
            percentile(&admitted, 0.5),
            percentile(&admitted, 0.99),
            admitted.last().copied().unwrap_or_default()
        ),
    );
    report.figure(
        "resident memory before / peak (MB)",
        format!("{} / {}", before.rss_mb, peak_rss),
    );
    report.figure(
        "after the load: p99 of 50 enqueues",
        format!("{:.1?}", percentile(&recovered, 0.99)),
    );
    report.figure("acknowledged / stored", format!("{acked} / {stored}"));
    report.expect(other == 0, || {
        format!("{other} answers were neither 201 nor 429/503")
    });
    report.expect(shed_without_retry_after == 0, || {
        format!("{shed_without_retry_after} refusals had no Retry-After")
    });
    report.expect(stored >= acked, || {
        format!("{acked} enqueues acknowledged, {stored} stored")
    });
    report.expect(
        percentile(&recovered, 0.99) < Duration::from_secs(1),
        || "no recovery after the load".into(),
    );
    cluster.stop().await
}

pub(super) async fn soak(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let wal = dir.path().join("keel.db-wal");
    let wal_mb = || std::fs::metadata(&wal).map_or(0, |m| m.len() >> 20);
    let cluster = Cluster::start(&s.keel, Store::Embedded(dir.path().into()), 1, &[]).await?;
    let pid = cluster.pid(0).context("the node runs")?;
    let (nodes, load) = under_load(&cluster).await?;
    // Warm up for a fifth of the run, then measure from there to the end.
    tokio::time::sleep(s.duration / 5).await;
    let warm = usage(pid);
    let mut peak = warm;
    let mut wal_peak = wal_mb();
    let end = Instant::now() + s.duration * 4 / 5;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        peak = peak.max(usage(pid));
        wal_peak = wal_peak.max(wal_mb());
    }
    let last = usage(pid);
    let growth = |from: u64, to: u64| to as f64 / from.max(1) as f64 - 1.0;
    report.figure("duration", format!("{:?}", s.duration));
    report.figure(
        "resident memory after warm-up / peak / end (MB)",
        format!("{} / {} / {}", warm.rss_mb, peak.rss_mb, last.rss_mb),
    );
    report.figure(
        "of which anonymous (heap, stacks) (MB)",
        format!("{} / {} / {}", warm.anon_mb, peak.anon_mb, last.anon_mb),
    );
    report.figure("WAL file, longest (MB)", wal_peak);
    report.figure(
        "descriptors after warm-up / end",
        format!("{} / {}", warm.descriptors, last.descriptors),
    );
    report.figure(
        "threads after warm-up / end",
        format!("{} / {}", warm.threads, last.threads),
    );
    let rss_growth = growth(warm.rss_mb, last.rss_mb);
    report.expect(rss_growth < 0.10, || {
        format!("memory grew {:.1} %", rss_growth * 100.0)
    });
    // The WAL is started over past 64 MB (keel-store-sqlite's checkpointer).
    report.expect(wal_peak <= 256, || format!("the WAL grew to {wal_peak} MB"));
    report.expect(last.descriptors <= warm.descriptors + 16, || {
        format!(
            "descriptors grew from {} to {}",
            warm.descriptors, last.descriptors
        )
    });
    report.expect(last.threads <= warm.threads + 4, || {
        format!("threads grew from {} to {}", warm.threads, last.threads)
    });
    verdict(load, &nodes, report).await;
    Ok(())
}
