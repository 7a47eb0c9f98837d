//! `keel monitor` and `keel incident`: apply a file of monitoring settings
//! (channels, recipients, escalation policies, monitors, maintenance
//! windows, status pages), read monitors and their results, and list,
//! acknowledge and resolve incidents.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_client::{Client, IncidentEventRequest, MonitorAnswer};
use keel_core::monitor::Incident;

use crate::admin::{Target, print_json};

#[derive(Args)]
pub(crate) struct MonitorArgs {
    #[command(subcommand)]
    command: MonitorCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum MonitorCommand {
    /// Applies a YAML or JSON file whose sections (`channels`, `recipients`,
    /// `escalation_policies`, `monitors`, `maintenance`, `status_pages`)
    /// map names to `PUT` bodies, in that order.
    Apply {
        file: PathBuf,
    },
    /// The namespace's monitors with their state.
    List,
    /// One monitor with its uptime (and a heartbeat's ping URL).
    Get {
        name: String,
    },
    /// A monitor's last results.
    Results {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    Delete {
        name: String,
    },
}

/// The sections of an applied file, in the order they are applied: a
/// policy names channels, a monitor a policy, a status page monitors.
const SECTIONS: [(&str, &str); 6] = [
    ("channels", "channels"),
    ("recipients", "recipients"),
    ("escalation_policies", "escalation-policies"),
    ("monitors", "monitors"),
    ("maintenance", "maintenance"),
    ("status_pages", "status-pages"),
];

pub(crate) async fn monitor(args: MonitorArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let monitors = match args.command {
        MonitorCommand::Apply { file } => return apply(&client, ns, &file).await,
        MonitorCommand::List => client.list_monitors(ns, None, 1000).await?.monitors,
        MonitorCommand::Get { name } => vec![client.get_monitor(ns, &name).await?],
        MonitorCommand::Delete { name } => {
            client.delete_monitor(ns, &name).await?;
            println!("deleted {name}");
            return Ok(());
        }
        MonitorCommand::Results { name, limit } => {
            let page = client.monitor_results(ns, &name, None, limit).await?;
            if target.json {
                return print_json(&page);
            }
            for r in &page.results {
                let ok = match r.result.ok {
                    Some(true) => "ok",
                    Some(false) => "FAIL",
                    None => "-",
                };
                let latency = r
                    .result
                    .latency_ms
                    .map(|l| format!("{l} ms"))
                    .unwrap_or_default();
                let error = r.result.error.as_deref().unwrap_or_default();
                println!("{}  {ok}  {latency}  {error}", r.result.at);
            }
            return Ok(());
        }
    };
    if target.json {
        return print_json(&monitors);
    }
    if monitors.is_empty() {
        println!("no monitors");
    }
    for m in &monitors {
        print_monitor(m);
    }
    Ok(())
}

async fn apply(client: &Client, ns: &str, file: &std::path::Path) -> anyhow::Result<()> {
    use keel_core::workflow::definition::{Format, parse_source};
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let format = if file.extension().is_some_and(|e| e == "json") {
        Format::Json
    } else {
        Format::Yaml
    };
    let document = parse_source(&text, format).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}: {}", file.display(), list.join("; "))
    })?;
    let sections = document
        .as_object()
        .with_context(|| format!("{} is not a map of sections", file.display()))?;
    if let Some(unknown) = sections
        .keys()
        .find(|k| !SECTIONS.iter().any(|(s, _)| s == k))
    {
        anyhow::bail!(
            "{}: unknown section {unknown:?} (sections: {})",
            file.display(),
            SECTIONS.map(|(s, _)| s).join(", ")
        );
    }
    for (section, path) in SECTIONS {
        let Some(entries) = sections.get(section) else {
            continue;
        };
        let entries = entries
            .as_object()
            .with_context(|| format!("{section}: a map of names to bodies"))?;
        for (name, body) in entries {
            client
                .put_json(ns, path, name, body)
                .await
                .with_context(|| format!("{section}.{name}"))?;
            println!("{section}.{name} applied");
        }
    }
    Ok(())
}

fn print_monitor(m: &MonitorAnswer) {
    let incident = m
        .incident
        .as_deref()
        .map(|i| format!("  incident {i}"))
        .unwrap_or_default();
    let last = m
        .state
        .last_result_at
        .map(|t| format!("  last {t}"))
        .unwrap_or_default();
    println!(
        "{}  {}  {}{last}{incident}",
        m.name,
        m.kind,
        m.state.status.as_str()
    );
    if let Some(uptime) = &m.uptime {
        let pct = |u: Option<f64>| u.map_or("-".to_owned(), |u| format!("{:.3}%", u * 100.0));
        println!(
            "  uptime 24h {}  7d {}  30d {}",
            pct(uptime.day),
            pct(uptime.week),
            pct(uptime.month)
        );
    }
    if let Some(url) = &m.ping_url {
        println!("  ping {url}");
    }
}

#[derive(Args)]
pub(crate) struct IncidentArgs {
    #[command(subcommand)]
    command: IncidentCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum IncidentCommand {
    /// Incidents, newest first.
    List {
        /// `open`, `acknowledged` or `resolved`.
        #[arg(long)]
        status: Option<String>,
    },
    /// One incident with its timeline.
    Get {
        id: String,
    },
    /// Stops its escalation.
    Ack {
        id: String,
    },
    Resolve {
        id: String,
    },
    /// Opens an incident (or joins the open one under the key).
    Trigger {
        dedup_key: String,
        summary: String,
        #[arg(long)]
        escalation: Option<String>,
    },
}

pub(crate) async fn incident(args: IncidentArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let incidents = match args.command {
        IncidentCommand::List { status } => {
            client
                .list_incidents(ns, status.as_deref())
                .await?
                .incidents
        }
        IncidentCommand::Get { id } => {
            let incident = client.get_incident(ns, &id).await?;
            if target.json {
                return print_json(&incident);
            }
            print_incident(&incident);
            for e in &incident.timeline {
                let who = e.by.as_deref().unwrap_or_default();
                let text = e.text.as_deref().unwrap_or_default();
                println!("  {}  {}  {who}  {text}", e.at, e.kind);
            }
            return Ok(());
        }
        IncidentCommand::Ack { id } => vec![client.act_on_incident(ns, &id, "acknowledge").await?],
        IncidentCommand::Resolve { id } => vec![client.act_on_incident(ns, &id, "resolve").await?],
        IncidentCommand::Trigger {
            dedup_key,
            summary,
            escalation,
        } => {
            let event: IncidentEventRequest = serde_json::from_value(serde_json::json!({
                "dedup_key": dedup_key, "action": "trigger", "summary": summary,
                "escalation": escalation,
            }))?;
            vec![client.incident_event(ns, &event).await?.incident]
        }
    };
    if target.json {
        return print_json(&incidents);
    }
    if incidents.is_empty() {
        println!("no incidents");
    }
    for i in &incidents {
        print_incident(i);
    }
    Ok(())
}

fn print_incident(i: &Incident) {
    let what = i.monitor.as_deref().unwrap_or(&i.dedup_key);
    println!(
        "{}  {}  {}  {what}  {}",
        i.id,
        i.status.as_str(),
        i.opened_at,
        i.summary
    );
}
