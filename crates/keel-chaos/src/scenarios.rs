//! The scenarios: a cluster, the load, the faults of each, the drain and
//! the verdict, and the figures docs/reliability.md reports.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::{Cluster, Store};
use crate::history::Verdict;
use crate::workload::{self, Load, NAMESPACE, Nodes};
use crate::{Scenario, Settings};

/// How long the drain may take after the faults stop.
const DRAIN: Duration = Duration::from_secs(300);

/// What a scenario measured and found.
pub(crate) struct Report {
    scenario: Scenario,
    figures: Vec<(&'static str, String)>,
    verdict: Option<Verdict>,
    failures: Vec<String>,
}

impl Report {
    fn new(scenario: Scenario) -> Report {
        Report {
            scenario,
            figures: Vec::new(),
            verdict: None,
            failures: Vec::new(),
        }
    }

    fn figure(&mut self, name: &'static str, value: impl fmt::Display) {
        self.figures.push((name, value.to_string()));
    }

    fn expect(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(failure());
        }
    }

    pub(crate) fn passed(&self) -> bool {
        self.failures.is_empty()
            && self
                .verdict
                .as_ref()
                .is_none_or(|v| v.violations() == 0 && v.pending() == 0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario {:?}", self.scenario)?;
        for (name, value) in &self.figures {
            writeln!(f, "  {name}: {value}")?;
        }
        if let Some(verdict) = &self.verdict {
            write!(f, "{verdict}")?;
        }
        for failure in &self.failures {
            writeln!(f, "  FAILED: {failure}")?;
        }
        Ok(())
    }
}

pub(crate) async fn run(scenario: Scenario, s: &Settings) -> anyhow::Result<Report> {
    anyhow::ensure!(
        s.keel.exists(),
        "{} does not exist: build it first (scripts/chaos does)",
        s.keel.display()
    );
    let mut report = Report::new(scenario);
    match scenario {
        Scenario::Kill9 => kill9(s, &mut report).await?,
        Scenario::PgKill => pg_kill(s, &mut report).await?,
        Scenario::PgPause => pg_pause(s, &mut report).await?,
        Scenario::PgRestart => pg_restart(s, &mut report).await?,
        Scenario::Eio => eio(s, &mut report).await?,
        Scenario::DiskFull => disk_full(s, &mut report).await?,
        Scenario::Slowloris => slowloris(s, &mut report).await?,
        Scenario::Overload => overload(s, &mut report).await?,
        Scenario::Soak => soak(s, &mut report).await?,
    }
    Ok(report)
}

/// Drains the load and puts the checker's verdict in the report.
async fn verdict(load: Load, nodes: &Nodes, report: &mut Report) {
    let history = load.drain(nodes, DRAIN).await;
    report.figure("operations", history.len());
    report.verdict = Some(history.check());
}

fn pause() -> Duration {
    Duration::from_millis(fastrand::u64(200..1500))
}

async fn kill9(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(&s.keel, Store::Embedded(dir.path().into()), 1, &[]).await?;
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    let started = Instant::now();
    for _ in 0..s.cycles {
        tokio::time::sleep(pause()).await;
        cluster.kill9(0).await?;
        cluster.restart(0).await?;
    }
    tokio::time::sleep(pause()).await;
    report.figure("kill -9 cycles", s.cycles);
    report.figure("under load for", format!("{:.0?}", started.elapsed()));
    verdict(load, &nodes, report).await;
    Ok(())
}

/// Three nodes on a schema of their own.
async fn pg_cluster(s: &Settings) -> anyhow::Result<(Cluster, Schema)> {
    let schema = Schema(format!("keel_chaos_{:08x}", fastrand::u32(..)));
    let separator = if s.database_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}options=-c%20search_path%3D{}",
        s.database_url, schema.0
    );
    let cluster = Cluster::start(&s.keel, Store::Postgres(url), 3, &[]).await?;
    Ok((cluster, schema))
}

/// A PostgreSQL schema the scenario made (the first node's start creates
/// it); dropped with `psql` when the scenario ends.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

async fn pg_kill(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let (mut cluster, _schema) = pg_cluster(s).await?;
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    for _ in 0..s.cycles {
        tokio::time::sleep(pause()).await;
        let victim = fastrand::usize(..cluster.nodes.len());
        cluster.kill9(victim).await?;
        tokio::time::sleep(pause()).await;
        cluster.restart(victim).await?;
    }
    tokio::time::sleep(pause()).await;
    report.figure("nodes", 3);
    report.figure("kill -9 cycles (a random node each)", s.cycles);
    verdict(load, &nodes, report).await;
    cluster.stop().await
}

async fn pg_pause(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let (cluster, _schema) = pg_cluster(s).await?;
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    for _ in 0..s.cycles {
        tokio::time::sleep(pause()).await;
        let victim = fastrand::usize(..cluster.nodes.len());
        cluster.signal(victim, "STOP").await?;
        // Past the queues' 3 s leases: what the node was committing for a
        // worker is stale by the time it wakes.
        tokio::time::sleep(Duration::from_millis(4000)).await;
        cluster.signal(victim, "CONT").await?;
    }
    tokio::time::sleep(pause()).await;
    report.figure("nodes", 3);
    report.figure("pauses of 4 s (a random node each, leases 3 s)", s.cycles);
    verdict(load, &nodes, report).await;
    cluster.stop().await
}

/// The machine's PostgreSQL cluster, as `pg_lsclusters` names it.
fn pg_cluster_name() -> anyhow::Result<(String, String)> {
    let out = std::process::Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .context("pg_lsclusters (pg-restart restarts the machine's own PostgreSQL)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.lines().next().unwrap_or_default().split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(version), Some(name)) => Ok((version.to_owned(), name.to_owned())),
        _ => anyhow::bail!("no PostgreSQL cluster found by pg_lsclusters"),
    }
}

async fn pg_restart(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let (version, name) = pg_cluster_name()?;
    let (cluster, _schema) = pg_cluster(s).await?;
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    let mut down_for = Duration::ZERO;
    for _ in 0..s.cycles {
        tokio::time::sleep(pause()).await;
        let started = Instant::now();
        let status = tokio::process::Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                &version,
                &name,
                "restart",
                "-m",
                "fast",
            ])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "pg_ctlcluster restart: {status}");
        down_for = down_for.max(started.elapsed());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    report.figure("nodes", 3);
    report.figure("PostgreSQL restarts (fast: sessions ended)", s.cycles);
    report.figure("longest restart", format!("{down_for:.1?}"));
    verdict(load, &nodes, report).await;
    cluster.stop().await
}

async fn eio(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(&s.keel, Store::Embedded(dir.path().into()), 0, &[]).await?;
    // libfiu's POSIX preload, its control pipe at /tmp/fiu-ctrl-PID.
    cluster.wrapper = vec!["fiu-run".into(), "-x".into()];
    cluster.add_node()?;
    cluster
        .restart(0)
        .await
        .context("keel under fiu-run (apt install fiu-utils)")?;
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    let mut stopped = 0;
    for cycle in 0..s.cycles {
        tokio::time::sleep(pause()).await;
        let pid = cluster.pid(0).context("the node runs")?;
        // Both points in one call: the node may be gone by the next one,
        // and then a write to its control pipe would wait for ever.
        let mut ctrl = tokio::process::Command::new("fiu-ctrl");
        for point in ["posix/io/sync/fdatasync", "posix/io/sync/fsync"] {
            ctrl.args(["-c", &format!("enable name={point},failinfo=5")]);
        }
        let mut ctrl = ctrl.arg(pid.to_string()).kill_on_drop(true).spawn()?;
        let _ = tokio::time::timeout(Duration::from_secs(5), ctrl.wait()).await;
        for end in ["in", "out"] {
            let _ = std::fs::remove_file(format!("/tmp/fiu-ctrl-{pid}.{end}"));
        }
        // The next sync fails: the node must stop, not acknowledge.
        match cluster.exited(0, Duration::from_secs(10)).await {
            Some(status) if !status.success() => stopped += 1,
            other => report.expect(false, || {
                format!("cycle {cycle}: after a failed fsync the node went on ({other:?})")
            }),
        }
        cluster.kill9(0).await?;
        cluster.restart(0).await?;
    }
    tokio::time::sleep(pause()).await;
    report.figure("fsync failures injected (EIO)", s.cycles);
    report.figure("node stopped instead of acknowledging", stopped);
    verdict(load, &nodes, report).await;
    cluster.stop().await
}

/// A tmpfs of its own, unmounted when the scenario ends.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size_mb: u32) -> anyhow::Result<Mount> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(at)
            .status()
            .context("mount")?;
        anyhow::ensure!(
            status.success(),
            "mount -t tmpfs failed ({status}): disk-full needs root"
        );
        Ok(Mount(at.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

async fn disk_full(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let _mount = Mount::tmpfs(dir.path(), 64)?;
    let data = dir.path().join("data");
    let ballast = dir.path().join("ballast");
    let cluster = Cluster::start(&s.keel, Store::Embedded(data), 1, &[]).await?;
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    let http = reqwest::Client::new();
    let base = format!("{}/v1/namespaces/{NAMESPACE}", cluster.urls()[0]);
    let filler = json!({"payload": {"fill": "x".repeat(200_000)}});
    for cycle in 0..s.cycles {
        // Fill the disk: ballast, then big jobs until a write is refused.
        std::fs::write(&ballast, vec![0u8; 40 << 20]).ok();
        let full_at = Instant::now();
        let mut refused = None;
        while full_at.elapsed() < Duration::from_secs(60) {
            let resp = http
                .post(format!("{base}/queues/filler/jobs"))
                .json(&filler)
                .send()
                .await?;
            let status = resp.status().as_u16();
            if status == 507 {
                let body: serde_json::Value = resp.json().await?;
                refused = Some(
                    body["error"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                break;
            }
            report.expect(status == 201, || {
                format!("cycle {cycle}: filling answered {status}")
            });
        }
        report.expect(refused.as_deref() == Some("storage_full"), || {
            format!("cycle {cycle}: a full disk answered {refused:?}, not 507 storage_full")
        });
        // Reads go on while the disk is full.
        let read = http
            .get(format!("{base}/queues/{}", workload::JOBS))
            .send()
            .await?;
        report.expect(read.status() == 200, || {
            format!(
                "cycle {cycle}: a read on a full disk answered {}",
                read.status()
            )
        });
        // Free the space: writes work again. (The filler jobs stay: the next
        // cycle's ballast fills the disk again at once.)
        std::fs::remove_file(&ballast).ok();
        let freed = Instant::now();
        let mut back = false;
        while !back && freed.elapsed() < Duration::from_secs(30) {
            let resp = http
                .post(format!("{base}/queues/filler/jobs"))
                .json(&json!({"payload": 1}))
                .send()
                .await?;
            back = resp.status() == 201;
            if !back {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        report.expect(back, || {
            format!("cycle {cycle}: writes did not come back once space was freed")
        });
    }
    report.figure("disk-full cycles (64 MB tmpfs)", s.cycles);
    verdict(load, &nodes, report).await;
    // Gone before the tmpfs is unmounted.
    cluster.stop().await
}

/// A process's resident memory (kB), open descriptors and threads.
fn usage(pid: u32) -> (u64, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (field("VmRSS:"), fds, field("Threads:"))
}

async fn slowloris(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
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
        format!(
            "{} / {} / {}",
            before.0 / 1024,
            during.0 / 1024,
            after.0 / 1024
        ),
    );
    report.figure(
        "descriptors before / during / after",
        format!("{} / {} / {}", before.1, during.1, after.1),
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
    report.expect(after.1 <= before.1 + 16, || {
        format!("descriptors leaked: {} before, {} after", before.1, after.1)
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn overload(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
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

    // Open loop at twice that: a request every 1/rate s, whatever came back.
    let before = usage(pid);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut peak_rss = before.0;
    let mut sampled = Instant::now();
    while started.elapsed() < s.duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let (http, url, tx) = (http.clone(), url.clone(), tx.clone());
            let n = sent;
            tokio::spawn(async move {
                let _ = tx.send(enqueue_once(&http, &url, n).await);
            });
            sent += 1;
        }
        if sampled.elapsed() > Duration::from_millis(500) {
            peak_rss = peak_rss.max(usage(pid).0);
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
        format!("{} / {}", before.0 / 1024, peak_rss / 1024),
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

async fn soak(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(&s.keel, Store::Embedded(dir.path().into()), 1, &[]).await?;
    let pid = cluster.pid(0).context("the node runs")?;
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    // Warm up for a fifth of the run, then measure from there to the end.
    tokio::time::sleep(s.duration / 5).await;
    let warm = usage(pid);
    let mut peak = warm;
    let end = Instant::now() + s.duration * 4 / 5;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = usage(pid);
        peak = (peak.0.max(now.0), peak.1.max(now.1), peak.2.max(now.2));
    }
    let last = usage(pid);
    let growth = last.0 as f64 / warm.0.max(1) as f64 - 1.0;
    report.figure("duration", format!("{:?}", s.duration));
    report.figure(
        "resident memory after warm-up / peak / end (MB)",
        format!("{} / {} / {}", warm.0 / 1024, peak.0 / 1024, last.0 / 1024),
    );
    report.figure(
        "memory growth after warm-up",
        format!("{:.1} %", growth * 100.0),
    );
    report.figure(
        "descriptors after warm-up / end",
        format!("{} / {}", warm.1, last.1),
    );
    report.figure(
        "threads after warm-up / end",
        format!("{} / {}", warm.2, last.2),
    );
    report.expect(growth < 0.10, || {
        format!("memory grew {:.1} %", growth * 100.0)
    });
    report.expect(last.1 <= warm.1 + 16, || {
        format!("descriptors grew from {} to {}", warm.1, last.1)
    });
    report.expect(last.2 <= warm.2 + 4, || {
        format!("threads grew from {} to {}", warm.2, last.2)
    });
    verdict(load, &nodes, report).await;
    Ok(())
}
