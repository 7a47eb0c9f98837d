//! The workflow phases: runs of a 3-step workflow, as fast as they go or
//! paced, timed from the server's own start and finish times.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_client::{Client, Run};
use serde_json::{Value, json};

use crate::jobs::CountingWorker;
use crate::server::{BenchServer, CpuMeter};
use crate::{Handlers, NS, PHASE_TIMEOUT, per_s, with};

/// Runs of a 3-step workflow whose steps are task jobs for no-op workers:
/// started `conc` at a time (or paced at `rate` per second), timed (and the
/// servers' CPU counted) until no run is running. Each run's start→finish
/// time comes from the server's own `created_at` and `updated_at`.
pub(crate) async fn workflow_runs(
    servers: &[BenchServer],
    clients: &[Client],
    name: &str,
    n: usize,
    handlers: Handlers,
    rate: Option<u64>,
) -> anyhow::Result<Value> {
    let conc = handlers.conc;
    let steps = ["a", "b", "c"];
    let mut yaml = format!("name: {name}\nsteps:\n");
    for (i, step) in steps.iter().enumerate() {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("needs: [{}], ", steps[i - 1])
        };
        yaml.push_str(&format!(
            "  {step}: {{ {needs}task: {{ queue: {name}, input: {{ step: {i} }} }} }}\n"
        ));
    }
    clients[0].put_workflow(NS, name, &yaml, true).await?;
    let cpu = CpuMeter::start(servers)?;
    let worker = CountingWorker::start(clients, name, handlers, n * steps.len(), Instant::now());
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut producers = tokio::task::JoinSet::new();
    match rate {
        None => {
            for p in 0..conc.min(n) {
                let (client, next, name) = (
                    clients[p % clients.len()].clone(),
                    next.clone(),
                    name.to_owned(),
                );
                producers.spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        client.start_run(NS, &name, &json!({}), None).await?;
                    }
                    Ok::<_, keel_client::ClientError>(())
                });
            }
        }
        Some(rate) => {
            let paced = tokio::time::Instant::now();
            for i in 0..n {
                let due = paced + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
                let (client, name) = (clients[i % clients.len()].clone(), name.to_owned());
                producers.spawn(async move {
                    client
                        .start_run(NS, &name, &json!({}), None)
                        .await
                        .map(|_| ())
                });
                while producers.try_join_next().is_some() {}
            }
        }
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    worker.wait().await?;
    tokio::time::timeout(PHASE_TIMEOUT, none_running(&clients[0], name))
        .await
        .context("runs did not finish in time")??;
    let elapsed = started.elapsed();
    let cpu = cpu.report(servers)?;
    let runs = all_succeeded(&clients[0], name, n).await?;
    worker.shut_down().await?;
    let mut lats: Vec<f64> = runs
        .iter()
        .map(|run| run.updated_at.millis_since(run.created_at) as f64)
        .collect();
    lats.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lats.get(((p / 100.0) * lats.len() as f64) as usize)
            .or(lats.last())
            .copied()
    };
    let report = json!({
        "runs": n, "steps_per_run": steps.len(), "rate": rate,
        "handlers": handlers.conc, "prefetch": handlers.prefetch,
        "runs_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64(),
        "p50_ms": pct(50.0), "p99_ms": pct(99.0), "max_ms": pct(100.0),
    });
    Ok(if rate.is_none() {
        with(report, cpu)
    } else {
        report
    })
}

/// Waits until no run of `workflow` is running (a cheap question, asked often).
pub(crate) async fn none_running(client: &Client, workflow: &str) -> anyhow::Result<()> {
    loop {
        let running = client
            .list_runs(NS, Some(workflow), Some("running"), 1, None)
            .await?;
        if running.runs.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `n` succeeded runs of `workflow`, once none is running.
pub(crate) async fn all_succeeded(
    client: &Client,
    workflow: &str,
    n: usize,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::with_capacity(n);
    let mut cursor: Option<String> = None;
    loop {
        let page = client
            .list_runs(
                NS,
                Some(workflow),
                Some("succeeded"),
                1000,
                cursor.as_deref(),
            )
            .await?;
        runs.extend(page.runs);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    anyhow::ensure!(
        runs.len() == n,
        "{} of {n} runs of {workflow} succeeded",
        runs.len()
    );
    Ok(runs)
}
