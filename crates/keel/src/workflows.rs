//! `keel workflow validate|apply|run` and `keel run get`: definitions checked
//! offline with the server's own validator, and runs shown as their DAG.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_core::workflow::definition::{Format, parse_source};
use keel_core::workflow::{Definition, Problem};
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
    Validate { file: PathBuf },
    /// Store a definition file on the server as the workflow's next version.
    Apply { file: PathBuf },
    /// Start a run of a workflow.
    Run {
        name: String,
        /// The run's input, as JSON.
        #[arg(long, default_value = "{}")]
        input: String,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait for the run to end and show it; exit 1 unless it succeeded.
        #[arg(long)]
        wait: bool,
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
    Get { id: String },
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
            println!("{name}: version {}", stored["version"]);
            Ok(())
        }
        WorkflowCommand::Run {
            name,
            input,
            idempotency_key,
            wait,
        } => {
            let input: Value = serde_json::from_str(&input).context("--input is not JSON")?;
            let client = target.client()?;
            let run = client
                .start_run(&target.namespace, &name, &input, idempotency_key.as_deref())
                .await?;
            let id = run["id"].as_str().unwrap_or_default().to_owned();
            if !wait {
                if target.json {
                    return crate::admin::print_json(&run);
                }
                println!("{id}");
                return Ok(());
            }
            let run = loop {
                let run = client.get_run(&target.namespace, &id, Some(30_000)).await?;
                if run["status"] != "running" {
                    break run;
                }
            };
            show_run(target, &run).await?;
            if run["status"] != "succeeded" {
                anyhow::bail!("run {id} ended {}", run["status"].as_str().unwrap_or("?"));
            }
            Ok(())
        }
    }
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let RunCommand::Get { id } = args.command;
    let run = args
        .target
        .client()?
        .get_run(&args.target.namespace, &id, None)
        .await?;
    show_run(&args.target, &run).await
}

/// The run's steps in DAG order (each after its needs), with states.
async fn show_run(target: &Target, run: &Value) -> anyhow::Result<()> {
    if target.json {
        return crate::admin::print_json(run);
    }
    let workflow = run["workflow"].as_str().unwrap_or_default();
    let version = run["version"].as_u64().unwrap_or_default();
    let definition = target
        .client()?
        .get_workflow(&target.namespace, workflow, Some(version as u32))
        .await
        .map(|w| w["definition"].clone())
        .unwrap_or(Value::Null);
    println!(
        "run {} · {workflow} v{version} · {}{}",
        run["id"].as_str().unwrap_or_default(),
        run["status"].as_str().unwrap_or_default(),
        if run["compensating"] == true {
            " (compensating)"
        } else {
            ""
        }
    );
    if let Some(error) = run["error"].as_str() {
        println!("error: {error}");
    }
    let steps = run["steps"].as_object().cloned().unwrap_or_default();
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
    let mut order: Vec<&String> = steps.keys().collect();
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
        let state = step["state"].as_str().unwrap_or_default();
        let mark = match state {
            "succeeded" => "✓",
            "failed" => "✗",
            "running" | "waiting" => "▶",
            "skipped" => "–",
            "cancelled" => "⊘",
            _ => "·",
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
            step["attempts"]
        );
        if let Some(error) = step["error"].as_str() {
            println!("{indent}    error: {error}");
        }
    }
    if run["status"] == "succeeded" {
        println!("output: {}", run["output"]);
    }
    Ok(())
}
