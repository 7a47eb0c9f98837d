//! `keel workflow validate|apply|run` and `keel run get|list`: definitions
//! checked offline with the server's own validator, and runs shown as their
//! DAG, with what a running run is waiting on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_client::Run;
use keel_core::workflow::definition::{Format, parse_source};
use keel_core::workflow::{Definition, Problem, RunStatus, StepStatus};
use serde_json::Value;

use crate::admin::Target;

#[derive(Args)]
pub(crate) struct WorkflowArgs {
    #[command(subcommand)]
    command: WorkflowCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum WorkflowCommand {
    /// Check a definition file (YAML or JSON) without a server.
    Validate {
        /// The definition file.
        file: PathBuf,
    },
    /// Store a definition file on the server as the workflow's next version.
    Apply {
        /// The definition file.
        file: PathBuf,
    },
    /// The namespace's workflows, each at its latest version.
    List,
    /// Start a run of a workflow.
    Run {
        /// The workflow's name.
        name: String,
        /// The run's input, as JSON.
        #[arg(long, default_value = "{}")]
        input: String,
        /// A second start with this key within 24 h answers the first run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait for the run to end and show it; exit 1 unless it succeeded.
        /// While it runs, say what it is waiting on.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit 1, saying what
        /// the run still waits on).
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
    },
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(subcommand)]
    command: RunCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum RunCommand {
    /// Show a run: its status and every step of its DAG.
    Get {
        /// The run's id.
        id: String,
    },
    /// Send a signal to a run (a `wait_for: {signal}` step takes it).
    Signal {
        /// The run's id.
        id: String,
        /// The signal's name.
        signal: String,
        /// The signal's data, as JSON (a step's output is it).
        #[arg(long, default_value = "{}")]
        data: String,
    },
    /// Cancel a run.
    Cancel {
        /// The run's id.
        id: String,
        /// Undo its completed steps first (their compensations, newest first).
        #[arg(long)]
        compensate: bool,
        /// Wait until the run has ended (its compensations done) and show it.
        #[arg(long)]
        wait: bool,
    },
    /// List runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs in this status (running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Most runs listed.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// The flags that name the server and namespace a command talked to, for a
/// command it suggests (none for the defaults).
fn target_flags(target: &Target) -> String {
    let mut flags = String::new();
    if target.server() != crate::admin::DEFAULT_SERVER {
        flags.push_str(&format!(" --server {}", target.server()));
    }
    if target.namespace != "default" {
        flags.push_str(&format!(" -n {}", target.namespace));
    }
    flags
}

fn read_definition(file: &Path) -> anyhow::Result<(String, Value, bool)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let yaml = file.extension().is_none_or(|e| e != "json");
    let format = if yaml { Format::Yaml } else { Format::Json };
    let value = parse_source(&text, format).map_err(|p| problems_error(file, &p))?;
    Definition::from_value(&value).map_err(|p| problems_error(file, &p))?;
    Ok((text, value, yaml))
}

fn problems_error(file: &Path, problems: &[Problem]) -> anyhow::Error {
    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::anyhow!(
        "{} has {} problem(s):\n{}",
        file.display(),
        problems.len(),
        list.join("\n")
    )
}

pub(crate) async fn workflow(args: WorkflowArgs) -> anyhow::Result<()> {
    let target = &args.target;
    match args.command {
        WorkflowCommand::List => {
            let list = target.client()?.list_workflows(&target.namespace).await?;
            if target.json {
                return crate::admin::print_json(&list);
            }
            if list.workflows.is_empty() {
                println!(
                    "no workflows in {}: keel workflow apply FILE stores one",
                    target.namespace
                );
            }
            for w in list.workflows {
                println!("{}  v{}  {}", w.name, w.version, w.created_at.to_rfc3339());
            }
            Ok(())
        }
        WorkflowCommand::Validate { file } => {
            let (_, value, _) = read_definition(&file)?;
            let steps = value["steps"].as_object().map_or(0, serde_json::Map::len);
            println!("{}: valid ({steps} steps)", file.display());
            Ok(())
        }
        WorkflowCommand::Apply { file } => {
            let (text, value, yaml) = read_definition(&file)?;
            let name = value["name"].as_str().unwrap_or_default();
            let stored = target
                .client()?
                .put_workflow(&target.namespace, name, &text, yaml)
                .await?;
            if target.json {
                return crate::admin::print_json(&stored);
            }
            println!("{name}: version {}", stored.version);
            Ok(())
        }
        WorkflowCommand::Run {
            name,
            input,
            idempotency_key,
            wait,
            timeout,
        } => {
            let input: Value = serde_json::from_str(&input).context("--input is not JSON")?;
            let client = target.client()?;
            let run = client
                .start_run(&target.namespace, &name, &input, idempotency_key.as_deref())
                .await?;
            let id = run.id.to_string();
            if !wait {
                if target.json {
                    return crate::admin::print_json(&run);
                }
                println!("{id}");
                return Ok(());
            }
            let run = wait_for_end(target, &id, timeout.map(Duration::from_secs)).await?;
            show_run(target, &run).await?;
            if run.status != RunStatus::Succeeded {
                anyhow::bail!("run {id} ended {}", run.status);
            }
            Ok(())
        }
    }
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let target = &args.target;
    match args.command {
        RunCommand::Get { id } => {
            let run = target
                .client()?
                .get_run(&target.namespace, &id, None)
                .await?;
            show_run(target, &run).await
        }
        RunCommand::Signal { id, signal, data } => {
            let data: Value = serde_json::from_str(&data).context("--data is not JSON")?;
            let run = target
                .client()?
                .signal_run(&target.namespace, &id, &signal, &data)
                .await?;
            if target.json {
                return crate::admin::print_json(&run);
            }
            println!("{} {}: signal {signal} sent", run.id, run.status);
            Ok(())
        }
        RunCommand::Cancel {
            id,
            compensate,
            wait,
        } => {
            let run = target
                .client()?
                .cancel_run(&target.namespace, &id, compensate)
                .await?;
            if wait {
                let run = wait_for_end(target, &id, None).await?;
                return show_run(target, &run).await;
            }
            if target.json {
                return crate::admin::print_json(&run);
            }
            println!("{} {}", run.id, run.status);
            Ok(())
        }
        RunCommand::List {
            workflow,
            status,
            limit,
        } => {
            let page = target
                .client()?
                .list_runs(
                    &target.namespace,
                    workflow.as_deref(),
                    status.as_deref(),
                    limit,
                    None,
                )
                .await?;
            if target.json {
                return crate::admin::print_json(&page);
            }
            if page.runs.is_empty() {
                println!("no runs");
            }
            for run in page.runs {
                println!(
                    "{}  {} v{}  {}  {}",
                    run.id,
                    run.workflow,
                    run.version,
                    run.status,
                    run.created_at.to_rfc3339(),
                );
            }
            Ok(())
        }
    }
}

/// Waits for run `id` to end, saying on stderr what it waits on whenever
/// that changes; with `timeout`, gives up after it with what it still waits on.
async fn wait_for_end(target: &Target, id: &str, timeout: Option<Duration>) -> anyhow::Result<Run> {
    const POLL: Duration = Duration::from_secs(5);
    let client = target.client()?;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut told = Vec::new();
    loop {
        let left = deadline.map_or(POLL, |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
                .min(POLL)
        });
        let run = client
            .get_run(&target.namespace, id, Some(left.as_millis() as u64))
            .await?;
        if run.status.is_final() {
            return Ok(run);
        }
        let waits = waiting_on(target, &run).await?;
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            anyhow::bail!(
                "run {id} is still running after {}s; waiting on:\n{}",
                timeout.map_or(0, |t| t.as_secs()),
                waits.join("\n")
            );
        }
        if waits != told {
            eprintln_waits(&waits);
            told = waits;
        }
    }
}

#[allow(
    clippy::print_stderr,
    reason = "progress of a command the user is waiting on"
)]
fn eprintln_waits(waits: &[String]) {
    eprintln!("waiting on:");
    for wait in waits {
        eprintln!("{wait}");
    }
}

/// What a running run waits on, one line per step in flight: a task no
/// worker has leased (and on which queue), a signal (and how to send it), a
/// sleep, a call, a child run.
async fn waiting_on(target: &Target, run: &Run) -> anyhow::Result<Vec<String>> {
    let client = target.client()?;
    let definition = client
        .get_workflow(&target.namespace, &run.workflow, Some(run.version))
        .await?
        .definition;
    let id = run.id;
    let mut waits = Vec::new();
    for (name, step) in &run.steps {
        if !step.state.is_active() {
            continue;
        }
        let def = &definition["steps"][name];
        let line = if let Some(queue) = def["task"]["queue"].as_str() {
            let stats = client.queue_stats(&target.namespace, queue).await?;
            if stats.count(keel_core::JobState::Leased) == 0 {
                format!(
                    "  {name}: a job on queue {queue:?} that no worker has leased (is a worker running on {queue:?}?)"
                )
            } else {
                format!("  {name}: a job on queue {queue:?}, in a worker's hands")
            }
        } else if let Some(signal) = def["wait_for"]["signal"].as_str() {
            format!(
                "  {name}: signal {signal:?}; send it with\n      keel run signal {id} {signal} --data '{{}}'{}",
                target_flags(target)
            )
        } else if def["wait_for"].is_object() {
            format!("  {name}: an event")
        } else if def["sleep"].is_object() {
            format!("  {name}: a sleep")
        } else if let Some(url) = def["http"]["url"].as_str() {
            format!("  {name}: an HTTP call to {url}")
        } else if def["workflow"].is_object() {
            format!("  {name}: a child run")
        } else {
            format!("  {name}: {}", step.state)
        };
        waits.push(line);
    }
    Ok(waits)
}

/// The run's steps in DAG order (each after its needs), with states.
async fn show_run(target: &Target, run: &Run) -> anyhow::Result<()> {
    if target.json {
        return crate::admin::print_json(run);
    }
    let definition = target
        .client()?
        .get_workflow(&target.namespace, &run.workflow, Some(run.version))
        .await
        .map(|w| w.definition)
        .unwrap_or(Value::Null);
    println!(
        "run {} · {} v{} · {}{}",
        run.id,
        run.workflow,
        run.version,
        run.status,
        // Only while it undoes its steps: a run that ended says how.
        if run.compensating && run.status == RunStatus::Running {
            " (compensating)"
        } else {
            ""
        }
    );
    if let Some(error) = &run.error {
        println!("error: {error}");
    }
    let steps = &run.steps;
    let needs = |name: &str| -> Vec<String> {
        definition["steps"][name]["needs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let compensation = |name: &str| definition["steps"][name]["compensation"] == true;
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..=steps.len() {
        for name in steps.keys() {
            let d = needs(name)
                .iter()
                .map(|n| depth.get(n).map_or(0, |d| d + 1))
                .max()
                .unwrap_or(0);
            depth.insert(name.clone(), d);
        }
    }
    // A compensation is shown once it ran or runs, not as a pending step of
    // a run that never needed it.
    let mut order: Vec<&String> = steps
        .iter()
        .filter(|(name, step)| !compensation(name) || step.state != StepStatus::Pending)
        .map(|(name, _)| name)
        .collect();
    order.sort_by_key(|n| {
        (
            compensation(n),
            depth.get(*n).copied().unwrap_or(0),
            (*n).clone(),
        )
    });
    let mut in_compensations = false;
    for name in order {
        if compensation(name) && !in_compensations {
            println!("compensations:");
            in_compensations = true;
        }
        let step = &steps[name];
        let state = step.state;
        let mark = match state {
            StepStatus::Succeeded => "✓",
            StepStatus::Failed => "✗",
            StepStatus::Running | StepStatus::Waiting => "▶",
            StepStatus::Skipped => "–",
            StepStatus::Cancelled => "⊘",
            StepStatus::Pending => "·",
        };
        let indent = "  ".repeat(1 + depth.get(name).copied().unwrap_or(0));
        let after = needs(name);
        let after = if after.is_empty() {
            String::new()
        } else {
            format!("  ← {}", after.join(", "))
        };
        println!(
            "{indent}{mark} {name}  {state}  attempts {}{after}",
            step.attempts
        );
        if let Some(error) = &step.error {
            println!("{indent}    error: {error}");
        }
    }
    if run.status == RunStatus::Succeeded {
        println!("output: {}", run.output.as_ref().unwrap_or(&Value::Null));
    }
    if run.status == RunStatus::Running {
        println!("waiting on:");
        for wait in waiting_on(target, run).await? {
            println!("{wait}");
        }
    }
    Ok(())
}
