//! The project phase (issue 38): a project of `n` resources (topics,
//! queues, subscriptions from each topic to its queue, schedules) written as
//! a directory and driven by the `keel` binary as a user would: the first
//! `keel plan` (all creates), `keel apply` of the saved plan, `keel plan`
//! again (nothing to change), and `keel plan` after a tenth of the
//! resources changed. Each is a command's wall time, its process start
//! included; the target is a plan of 500 resources within 2 s.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::NS;
use crate::server::BenchServer;

pub(crate) async fn project(keel: &Path, server: &BenchServer, n: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_string_lossy().into_owned();
    std::fs::write(
        dir.path().join("keel.toml"),
        format!("name = \"bench\"\nnamespace = \"{NS}\"\n"),
    )?;
    std::fs::create_dir(dir.path().join("resources"))?;
    write(dir.path(), n, 86_400_000)?;
    let plan_file = dir
        .path()
        .join("bench.plan.json")
        .to_string_lossy()
        .into_owned();

    let first = timed(keel, server, &["plan", "-C", &d, "--out", &plan_file], 2).await?;
    let apply = timed(keel, server, &["apply", &plan_file, "-C", &d], 0).await?;
    let again = timed(keel, server, &["plan", "-C", &d], 0).await?;
    write(dir.path(), n, 3_600_000)?;
    let changed = timed(keel, server, &["plan", "-C", &d], 2).await?;
    Ok(json!({
        "n": n,
        "plan_create_ms": first,
        "apply_ms": apply,
        "plan_unchanged_ms": again,
        "plan_tenth_changed_ms": changed,
    }))
}

/// `n` resources, a quarter of each kind; every tenth topic's retention is
/// `retention_ms`, the others' a day.
fn write(dir: &Path, n: usize, retention_ms: u64) -> anyhow::Result<()> {
    let each = n / 4;
    let mut text = String::from("topics:\n");
    for i in 0..each {
        let retention = if i % 10 == 0 {
            retention_ms
        } else {
            86_400_000
        };
        writeln!(text, "  t{i}: {{ retention_ms: {retention} }}")?;
    }
    text.push_str("queues:\n");
    for i in 0..each {
        writeln!(text, "  q{i}: {{ max_attempts: 5, lease_ms: 30000 }}")?;
    }
    text.push_str("subscriptions:\n");
    for i in 0..each {
        writeln!(text, "  s{i}: {{ topic: t{i}, target: {{ queue: q{i} }} }}")?;
    }
    text.push_str("schedules:\n");
    for i in 0..n - 3 * each {
        writeln!(
            text,
            "  c{i}: {{ every_ms: 3600000, target: {{ queue: q{}, job: {{ payload: {{}} }} }} }}",
            i % each.max(1)
        )?;
    }
    std::fs::write(dir.join("resources/bench.yaml"), text)?;
    Ok(())
}

/// Runs `keel ARGS` against the server; its wall time in ms, once its exit
/// code was `want`.
async fn timed(keel: &Path, server: &BenchServer, args: &[&str], want: i32) -> anyhow::Result<u64> {
    let started = Instant::now();
    let out = tokio::process::Command::new(keel)
        .args(args)
        .args(["--server", &server.url])
        .args(server.token().map(|t| ["--token", t]).into_iter().flatten())
        .output()
        .await
        .context("running keel")?;
    let ms = started.elapsed().as_millis() as u64;
    if out.status.code() != Some(want) {
        bail!(
            "keel {}: exit {:?}, not {want}: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(ms)
}
