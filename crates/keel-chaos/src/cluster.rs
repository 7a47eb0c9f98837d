//! The Keel processes under test: one embedded node or several nodes on one
//! PostgreSQL schema, each on a fixed port so clients find it again after
//! a restart; and the faults done to them (kill -9, SIGSTOP and SIGCONT).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the nodes keep their state.
#[derive(Clone)]
pub(crate) enum Store {
    Embedded(PathBuf),
    /// The database URL of each node (node `i` takes the `i`-th, cycling).
    Postgres(Vec<String>),
}

pub(crate) struct Node {
    pub(crate) port: u16,
    pub(crate) child: Option<Child>,
}

pub(crate) struct Cluster {
    keel: PathBuf,
    store: Store,
    extra: Vec<String>,
    /// A command the nodes run under (`fiu-run -x`), if any.
    pub(crate) wrapper: Vec<String>,
    pub(crate) nodes: Vec<Node>,
}

/// A port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    pub(crate) async fn start(
        keel: &Path,
        store: Store,
        nodes: usize,
        extra: &[&str],
    ) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster {
            keel: keel.to_owned(),
            store,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            wrapper: Vec::new(),
            nodes: Vec::new(),
        };
        for _ in 0..nodes {
            cluster.add_node()?;
        }
        for i in 0..nodes {
            cluster.restart(i).await?;
        }
        Ok(cluster)
    }

    /// A node on a port of its own, not started yet.
    pub(crate) fn add_node(&mut self) -> anyhow::Result<()> {
        self.nodes.push(Node {
            port: free_port()?,
            child: None,
        });
        Ok(())
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Starts node `i` (again) and waits until it listens.
    pub(crate) async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let port = self.nodes[i].port;
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.keel);
                command
            }
            None => Command::new(&self.keel),
        };
        command
            .args(["server", "--auth", "off", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        match &self.store {
            Store::Embedded(dir) => command.arg("--data-dir").arg(dir),
            Store::Postgres(urls) => command.arg("--database-url").arg(&urls[i % urls.len()]),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // The port is free again at once after a kill -9 (SO_REUSEADDR),
        // but a start can still race the kernel: try again a few times.
        loop {
            let mut child = command.spawn().context("starting keel")?;
            let stdout = child.stdout.take().context("keel's stdout")?;
            let mut lines = BufReader::new(stdout).lines();
            if let Ok(Some(line)) = lines.next_line().await
                && line.starts_with("keel listening on ")
            {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                self.nodes[i].child = Some(child);
                return Ok(());
            }
            let status = child.wait().await?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {i} did not start: it exited {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Kills every node and waits for them to be gone (before the store
    /// they share is removed).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.kill9(i).await?;
        }
        Ok(())
    }

    /// Waits for node `i` to exit on its own, up to `within`.
    pub(crate) async fn exited(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let child = self.nodes[i].child.as_mut()?;
        let status = tokio::time::timeout(within, child.wait())
            .await
            .ok()?
            .ok()?;
        self.nodes[i].child = None;
        Some(status)
    }

    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().and_then(Child::id)
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to node `i`.
    pub(crate) async fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid(i).context("the node is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid}: {status}");
        Ok(())
    }
}
