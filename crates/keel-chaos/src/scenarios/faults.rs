//! The faults done to processes, the database and the disk: kill -9,
//! nodes killed or paused on PostgreSQL, PostgreSQL restarted, fsync
//! failing with EIO, the disk filled; each under the mixed load, with the
//! checker's verdict after the drain.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::{Report, pause, under_load, verdict};
use crate::Settings;
use crate::cluster::{Cluster, Store};
use crate::relay::Relay;
use crate::workload::{self, NAMESPACE};

pub(super) async fn kill9(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(&s.keel, Store::Embedded(dir.path().into()), 1, &[]).await?;
    let (nodes, load) = under_load(&cluster).await?;
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

/// Each cycle: kill -9 under load, then the power cut, where the disk keeps
/// each unsynced page with probability 1/2, then a restart on what it kept.
pub(super) async fn power_loss(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let backing = tempfile::tempdir()?;
    let at = tempfile::tempdir()?;
    let mut disk = crate::powerfs::Mounted::mount(backing.path(), at.path())?;
    let data = at.path().join("data");
    let mut cluster = Cluster::start(&s.keel, Store::Embedded(data), 1, &[]).await?;
    let (nodes, load) = under_load(&cluster).await?;
    for _ in 0..s.cycles {
        tokio::time::sleep(pause()).await;
        cluster.kill9(0).await?;
        disk.cut(0.5)?;
        cluster.restart(0).await?;
    }
    tokio::time::sleep(pause()).await;
    report.figure("power cuts", s.cycles);
    report.figure(
        "unsynced pages written back / lost at the cuts",
        format!("{} / {}", disk.kept, disk.lost),
    );
    report.expect(disk.lost > 0, || {
        "no cut lost an unsynced page: the filesystem did not hold writes back".into()
    });
    verdict(load, &nodes, report).await;
    // Gone before the filesystem is unmounted.
    cluster.stop().await
}

/// Three nodes on a schema of their own.
async fn pg_cluster(s: &Settings) -> anyhow::Result<(Cluster, Schema)> {
    pg_cluster_through(s, &[]).await
}

/// Three nodes on a schema of their own, each reaching PostgreSQL through
/// its own relay when `relays` are given.
async fn pg_cluster_through(s: &Settings, relays: &[Relay]) -> anyhow::Result<(Cluster, Schema)> {
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
    let urls = if relays.is_empty() {
        vec![url]
    } else {
        relays
            .iter()
            .map(|relay| {
                let mut through = reqwest::Url::parse(&url)?;
                through.set_host(Some("127.0.0.1"))?;
                through
                    .set_port(Some(relay.port))
                    .map_err(|()| anyhow::anyhow!("{} takes no port", s.database_url))?;
                Ok(through.to_string())
            })
            .collect::<anyhow::Result<_>>()?
    };
    let cluster = Cluster::start(&s.keel, Store::Postgres(urls), 3, &[]).await?;
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

pub(super) async fn pg_kill(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let (mut cluster, _schema) = pg_cluster(s).await?;
    let (nodes, load) = under_load(&cluster).await?;
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

pub(super) async fn pg_pause(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let (cluster, _schema) = pg_cluster(s).await?;
    let (nodes, load) = under_load(&cluster).await?;
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

pub(super) async fn pg_partition(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let database = reqwest::Url::parse(&s.database_url)?;
    let target = tokio::net::lookup_host((
        database.host_str().unwrap_or("127.0.0.1"),
        database.port().unwrap_or(5432),
    ))
    .await?
    .next()
    .context("the database's host has no address")?;
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(Relay::start(target).await?);
    }
    let (cluster, _schema) = pg_cluster_through(s, &relays).await?;
    let (nodes, load) = under_load(&cluster).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut slowest = Duration::ZERO;
    for _ in 0..s.cycles {
        tokio::time::sleep(pause()).await;
        let victim = fastrand::usize(..relays.len());
        relays[victim].cut();
        // Past the queues' 3 s leases. A second in, the cut-off node must
        // answer a read that needs the database, not hang (requests that
        // took a connection at the moment of the cut wait for TCP or for
        // the heal: keel-store-postgres, `check_if_idle`).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let asked = Instant::now();
        let answer = http
            .get(format!(
                "{}/v1/namespaces/{NAMESPACE}/jobs?limit=1",
                cluster.urls()[victim]
            ))
            .send()
            .await;
        let took = asked.elapsed();
        slowest = slowest.max(took);
        let status = answer.map(|r| r.status().as_u16());
        report.expect(
            matches!(status, Ok(503)) && took <= Duration::from_secs(6),
            || format!("a node cut off from the database answered {status:?} after {took:.1?}"),
        );
        tokio::time::sleep(Duration::from_millis(3000).saturating_sub(took)).await;
        relays[victim].heal();
    }
    tokio::time::sleep(pause()).await;
    report.figure("nodes", 3);
    report.figure(
        "partitions of 4 s from the database (a random node each, leases 3 s)",
        s.cycles,
    );
    report.figure("slowest answer of a cut-off node", format!("{slowest:.1?}"));
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

pub(super) async fn pg_restart(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let (version, name) = pg_cluster_name()?;
    let (cluster, _schema) = pg_cluster(s).await?;
    let (nodes, load) = under_load(&cluster).await?;
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

pub(super) async fn eio(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(&s.keel, Store::Embedded(dir.path().into()), 0, &[]).await?;
    // libfiu's POSIX preload, its control pipe at /tmp/fiu-ctrl-PID.
    cluster.wrapper = vec!["fiu-run".into(), "-x".into()];
    cluster.add_node()?;
    cluster
        .restart(0)
        .await
        .context("keel under fiu-run (apt install fiu-utils)")?;
    let (nodes, load) = under_load(&cluster).await?;
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

pub(super) async fn disk_full(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let _mount = Mount::tmpfs(dir.path(), 64)?;
    let data = dir.path().join("data");
    let ballast = dir.path().join("ballast");
    let cluster = Cluster::start(&s.keel, Store::Embedded(data), 1, &[]).await?;
    let (nodes, load) = under_load(&cluster).await?;
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
