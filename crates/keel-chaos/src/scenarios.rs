//! The scenarios: a cluster, the load, the faults of each, the drain and
//! the verdict, and the figures docs/reliability.md reports.

use std::fmt;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::history::Verdict;
use crate::workload::{self, Load, Nodes};
use crate::{Scenario, Settings};

mod faults;
mod load;

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
        Scenario::Kill9 => faults::kill9(s, &mut report).await?,
        Scenario::PowerLoss => faults::power_loss(s, &mut report).await?,
        Scenario::PgKill => faults::pg_kill(s, &mut report).await?,
        Scenario::PgPause => faults::pg_pause(s, &mut report).await?,
        Scenario::PgPartition => faults::pg_partition(s, &mut report).await?,
        Scenario::PgRestart => faults::pg_restart(s, &mut report).await?,
        Scenario::Eio => faults::eio(s, &mut report).await?,
        Scenario::DiskFull => faults::disk_full(s, &mut report).await?,
        Scenario::Slowloris => load::slowloris(s, &mut report).await?,
        Scenario::Overload => load::overload(s, &mut report).await?,
        Scenario::Soak => load::soak(s, &mut report).await?,
    }
    Ok(report)
}

/// The mixed load on `cluster`: its queues and subscription made, four
/// producers, a publisher and eight workers started.
pub(super) async fn under_load(cluster: &Cluster) -> anyhow::Result<(Nodes, Load)> {
    let nodes = Nodes::new(cluster.urls());
    workload::setup(&nodes).await?;
    let load = Load::start(&nodes, 4, 8);
    Ok((nodes, load))
}

/// Drains the load and puts the checker's verdict in the report.
pub(super) async fn verdict(load: Load, nodes: &Nodes, report: &mut Report) {
    let history = load.drain(nodes, DRAIN).await;
    report.figure("operations", history.len());
    report.verdict = Some(history.check());
}

pub(super) fn pause() -> Duration {
    Duration::from_millis(fastrand::u64(200..1500))
}

/// What a process holds.
#[derive(Clone, Copy, Default)]
pub(super) struct Usage {
    /// Resident memory, in MB.
    pub(super) rss_mb: u64,
    /// The part of it that is the process's own (heap, stacks), not pages
    /// of files it maps, in MB.
    pub(super) anon_mb: u64,
    pub(super) descriptors: usize,
    pub(super) threads: u64,
}

impl Usage {
    pub(super) fn max(self, other: Usage) -> Usage {
        Usage {
            rss_mb: self.rss_mb.max(other.rss_mb),
            anon_mb: self.anon_mb.max(other.anon_mb),
            descriptors: self.descriptors.max(other.descriptors),
            threads: self.threads.max(other.threads),
        }
    }
}

pub(super) fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Usage {
        rss_mb: kb("VmRSS:") / 1024,
        anon_mb: kb("RssAnon:") / 1024,
        descriptors: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count),
        threads: kb("Threads:"),
    }
}
