//! The servers a benchmark measures: a `keel` process per node (on a fresh
//! data directory or a PostgreSQL schema of its own) and the CPU they use.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// An admin token made straight on the store before the server starts;
/// `None` when this `keel` has no tokens (a build from before them).
async fn admin_token(
    keel: &Path,
    store_args: &[std::ffi::OsString],
) -> anyhow::Result<Option<String>> {
    let out = tokio::process::Command::new(keel)
        .args(["token", "create", "--role", "admin", "--name", "bench"])
        .args(store_args)
        .output()
        .await
        .context("running keel token create")?;
    if !out.status.success() {
        if String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand") {
            return Ok(None);
        }
        bail!(
            "keel token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Some(String::from_utf8(out.stdout)?.trim().to_owned()))
}

/// A schema of its own on the benchmark's PostgreSQL, dropped at the end.
pub(crate) struct BenchSchema {
    base: String,
    name: String,
}

impl BenchSchema {
    pub(crate) async fn create(base: &str) -> anyhow::Result<Self> {
        let name = format!("keel_bench_{}", std::process::id());
        let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await?;
        Ok(BenchSchema {
            base: base.to_owned(),
            name,
        })
    }

    pub(crate) fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.name
        )
    }

    pub(crate) async fn drop(self) -> anyhow::Result<()> {
        let (client, connection) =
            tokio_postgres::connect(&self.base, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await?;
        Ok(())
    }
}

/// A `keel server` child process on a temporary data directory, with
/// tokens required (the default) and an admin token of its own.
pub(crate) struct BenchServer {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) url: String,
    /// `None` for a `keel` from before tokens (an A/B against an old build).
    token: Option<String>,
    _dir: tempfile::TempDir,
}

impl BenchServer {
    /// A server on a fresh temporary directory, or on `database_url`.
    pub(crate) async fn start(keel: &Path, database_url: Option<String>) -> anyhow::Result<Self> {
        BenchServer::start_with(keel, database_url, &[]).await
    }

    /// [`BenchServer::start`] with more of `keel server`'s arguments.
    pub(crate) async fn start_with(
        keel: &Path,
        database_url: Option<String>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
        let store_args: Vec<std::ffi::OsString> = match database_url {
            Some(url) => vec!["--database-url".into(), url.into()],
            None => vec!["--data-dir".into(), dir.path().into()],
        };
        let token = admin_token(keel, &store_args).await?;
        let mut child = tokio::process::Command::new(keel)
            // The webhook phases push to a receiver on loopback.
            .args(["server", "--listen", "127.0.0.1:0", "--allow-private-http"])
            .args(store_args)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting keel server")?;
        let pid = child.id().context("the server has a pid")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await?
            .context("the server exited before listening")?;
        let url = line
            .strip_prefix("keel listening on ")
            .context("unexpected first line")?
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(BenchServer {
            child,
            pid,
            url,
            token,
            _dir: dir,
        })
    }

    /// A client of this server that sends its admin token.
    pub(crate) fn client(&self) -> anyhow::Result<keel_client::Client> {
        let client = keel_client::Client::new(&self.url)?;
        Ok(match &self.token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }

    /// The admin token its clients send, if it has one.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(crate) fn proc_file(&self, name: &str) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(
            Path::new("/proc").join(self.pid.to_string()).join(name),
        )?)
    }

    pub(crate) fn rss_mb(&self) -> anyhow::Result<f64> {
        let status = self.proc_file("status")?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS in /proc/PID/status")?;
        Ok((kb / 1024.0 * 10.0).round() / 10.0)
    }

    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.pid.to_string())
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("cannot signal the server");
        }
        let exit = self.child.wait().await?;
        if !exit.success() {
            bail!("the server exited with {exit}");
        }
        Ok(())
    }
}

/// User plus system CPU time of a process (`self` or a pid), from Linux's
/// clock ticks of 10 ms.
pub(crate) fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// CPU seconds the server, this benchmark process and the whole machine (the
/// database and anything else included) spent during a phase.
pub(crate) struct CpuMeter {
    server: f64,
    client: f64,
    machine: f64,
}

pub(crate) fn servers_cpu(servers: &[BenchServer]) -> anyhow::Result<f64> {
    servers.iter().map(BenchServer::cpu_seconds).sum()
}

/// Busy CPU seconds of the whole machine since boot: every CPU's time in
/// `/proc/stat` but idle and iowait (guest time is already inside user).
pub(crate) fn machine_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .context("/proc/stat")?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    Ok((ticks.iter().sum::<f64>() - idle) / 100.0)
}

impl CpuMeter {
    pub(crate) fn start(servers: &[BenchServer]) -> anyhow::Result<Self> {
        Ok(CpuMeter {
            server: servers_cpu(servers)?,
            client: cpu_seconds("self")?,
            machine: machine_cpu_seconds()?,
        })
    }

    /// `{"server_cpu_s","client_cpu_s","machine_cpu_s"}` since `start`, all
    /// nodes together.
    pub(crate) fn report(&self, servers: &[BenchServer]) -> anyhow::Result<Value> {
        let round = |s: f64| (s * 100.0).round() / 100.0;
        Ok(json!({
            "server_cpu_s": round(servers_cpu(servers)? - self.server),
            "client_cpu_s": round(cpu_seconds("self")? - self.client),
            "machine_cpu_s": round(machine_cpu_seconds()? - self.machine),
        }))
    }
}
