//! The bulk import phase (issue 38): `n` records of about 200 bytes as a
//! CSV file, imported by `keel import` (the binary beside the server) into
//! a queue, deduplicated by their id column: the rate, the CPU of the
//! server and of the importer, and the most memory each held (`VmHWM`, the
//! importer's read while it runs).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::server::{BenchServer, CpuMeter, cpu_seconds};
use crate::{NS, per_s, with};

/// Writes the file, imports it, and checks every record landed once.
pub(crate) async fn import(
    keel: &Path,
    servers: &[BenchServer],
    client: &keel_client::Client,
    n: usize,
) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("records.csv");
    let bytes = write_records(&file, n)?;
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let mut importer = tokio::process::Command::new(keel)
        .args([
            "import",
            "bench-import",
            &file.to_string_lossy(),
            "--key",
            "id",
        ])
        .args(["--namespace", NS, "--server", &servers[0].url, "--json"])
        .args(
            servers[0]
                .token()
                .map(|t| ["--token", t])
                .into_iter()
                .flatten(),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting keel import")?;
    let pid = importer.id().context("the importer's pid")?.to_string();
    let (mut importer_cpu, mut importer_kb) = (0.0, 0);
    let status = loop {
        if let Ok(cpu) = cpu_seconds(&pid) {
            importer_cpu = cpu;
        }
        importer_kb = importer_kb.max(peak_kb(&pid).unwrap_or(0));
        tokio::select! {
            status = importer.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    let elapsed = started.elapsed();
    let out = importer.wait_with_output().await?;
    anyhow::ensure!(
        status.success(),
        "keel import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).context("the import's summary")?;
    anyhow::ensure!(summary["accepted"] == json!(n), "imported {summary}");
    let stats = client.queue_stats(NS, "bench-import").await?;
    anyhow::ensure!(
        stats.count(keel_core::JobState::Ready) == n as u64,
        "the queue holds {} ready jobs of {n}",
        stats.count(keel_core::JobState::Ready)
    );
    let server_kb = servers
        .iter()
        .filter_map(|s| peak_kb(&s.pid.to_string()))
        .max();
    let fields = json!({
        "n": n,
        "file_mb": (bytes as f64 / 1e6).round(),
        "records_per_s": per_s(n, elapsed),
        "secs": elapsed.as_secs_f64(),
        "importer_cpu_s": (importer_cpu * 100.0).round() / 100.0,
        "importer_peak_mb": importer_kb / 1024,
        "server_peak_mb": server_kb.unwrap_or(0) / 1024,
    });
    Ok(with(fields, cpu.report(servers)?))
}

/// `n` records of about 200 bytes: the file's size.
fn write_records(path: &Path, n: usize) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "id,email,name,city,amount,note")?;
    for i in 0..n {
        writeln!(
            out,
            "r{i:08},user{i}@example.com,User Number {i},\"Springfield, IL\",{}.{:02},\"imported record {i} with some padding text to bring it to two hundred bytes in all, as a CRM export row\"",
            i % 10_000,
            i % 100
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// The most resident memory the process has held, in KiB.
fn peak_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
