//! Admin commands: thin uses of `keel-client`, human-readable by default and
//! JSON with `--json`.

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_client::Client;

/// The server a command talks to unless told otherwise.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:5335";

#[derive(Args)]
pub(crate) struct Target {
    /// Server to talk to.
    #[arg(long, env = "KEEL_SERVER", default_value = DEFAULT_SERVER, global = true)]
    server: String,
    /// PEM certificate authority to trust for an https server whose
    /// certificate a private CA issued.
    #[arg(long, env = "KEEL_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// API token (`keel_…`) sent with every request.
    #[arg(long, env = "KEEL_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[arg(long, short, default_value = "default", global = true)]
    pub namespace: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Target {
    pub(crate) fn server(&self) -> &str {
        self.server.trim_end_matches('/')
    }

    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.client_or(None)
    }

    /// A client for `--server` (or `KEEL_SERVER`), else for `fallback`
    /// (a project's `server`), else for the default server.
    pub(crate) fn client_or(&self, fallback: Option<&str>) -> anyhow::Result<Client> {
        let server = match fallback {
            Some(project_server) if self.server == DEFAULT_SERVER => project_server,
            _ => self.server.as_str(),
        };
        let ca = match &self.ca_cert {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };
        let client = Client::with_ca_cert(server, ca.as_deref())?;
        Ok(match &self.token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A YAML or JSON file that names a resource (`name:`) beside the fields of
/// its `PUT` body, read as the name and the body of type `T` (`what` names
/// the resource in errors).
pub(crate) fn named_spec<T: serde::de::DeserializeOwned>(
    file: &std::path::Path,
    what: &str,
) -> anyhow::Result<(String, T)> {
    use keel_core::workflow::definition::{Format, parse_source};
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let format = if file.extension().is_some_and(|e| e == "json") {
        Format::Json
    } else {
        Format::Yaml
    };
    let mut value = parse_source(&text, format).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}: {}", file.display(), list.join("; "))
    })?;
    let name = value
        .as_object_mut()
        .and_then(|o| o.remove("name"))
        .and_then(|n| n.as_str().map(str::to_owned))
        .with_context(|| format!("the file must name the {what} (`name:`)"))?;
    let spec = serde_json::from_value(value)
        .with_context(|| format!("{} is not a {what}", file.display()))?;
    Ok((name, spec))
}

#[derive(Args)]
pub(crate) struct QueuesArgs {
    #[command(subcommand)]
    command: QueuesCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum QueuesCommand {
    /// Counts by state, oldest ready age and recent rates.
    Stats {
        /// The queue's name.
        queue: String,
    },
    /// Pause a queue: nothing is leased from it until it is resumed.
    Pause {
        /// The queue's name.
        queue: String,
    },
    /// Resume a paused queue.
    Resume {
        /// The queue's name.
        queue: String,
    },
}

async fn set_paused(
    target: &Target,
    client: &Client,
    queue: &str,
    paused: bool,
) -> anyhow::Result<()> {
    let answer = client.set_paused(&target.namespace, queue, paused).await?;
    if target.json {
        return print_json(&answer);
    }
    let now = if answer.paused { "paused" } else { "resumed" };
    println!("queue {}/{queue} {now}", target.namespace);
    Ok(())
}

#[derive(Args)]
pub(crate) struct SlosArgs {
    #[command(flatten)]
    target: Target,
}

/// One line per objective: value, budget left, the burn rates the pages
/// watch, and the alerts firing.
pub(crate) async fn slos(args: SlosArgs) -> anyhow::Result<()> {
    let answer = args.target.client()?.slos(&args.target.namespace).await?;
    if args.target.json {
        return print_json(&answer);
    }
    if answer.slos.is_empty() {
        println!(
            "no objectives in {}: set \"slo\" in a queue's or topic's policy",
            args.target.namespace
        );
    }
    for s in &answer.slos {
        let value = s.value.map_or("-".to_owned(), |v| format!("{v}"));
        let burn = |w: &str| s.burn_rates.get(w).copied().unwrap_or(0.0);
        let firing: Vec<String> = s
            .alerts
            .iter()
            .filter(|a| a.firing)
            .map(|a| {
                format!(
                    "{} {}/{}",
                    a.severity.as_str(),
                    a.long_window,
                    a.short_window
                )
            })
            .collect();
        println!(
            "{} {} {}: target {} value {value} budget left {:.1}% burn 5m {:.2} 1h {:.2} 6h {:.2}{}",
            s.kind.as_str(),
            s.name,
            s.objective.as_str(),
            s.target,
            s.budget_remaining * 100.0,
            burn("5m"),
            burn("1h"),
            burn("6h"),
            if firing.is_empty() {
                String::new()
            } else {
                format!(" FIRING {}", firing.join(", "))
            }
        );
    }
    Ok(())
}

pub(crate) async fn queues(args: QueuesArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    match args.command {
        QueuesCommand::Stats { queue } => {
            let stats = client.queue_stats(&args.target.namespace, &queue).await?;
            if args.target.json {
                return print_json(&stats);
            }
            let paused = if stats.paused { " (paused)" } else { "" };
            println!("queue {}/{}{paused}", args.target.namespace, queue);
            for (state, n) in &stats.counts {
                println!("  {:<10} {n}", state.as_str());
            }
            if let Some(age) = stats.oldest_ready_age_ms {
                println!("  oldest ready job waits {age} ms");
            }
            let rates = &stats.rates;
            println!(
                "  last minute: {:.1} enqueued/s, {:.1} completed/s, {:.1} failed/s",
                rates.enqueued_per_s, rates.completed_per_s, rates.failed_per_s
            );
        }
        QueuesCommand::Pause { queue } => {
            return set_paused(&args.target, &client, &queue, true).await;
        }
        QueuesCommand::Resume { queue } => {
            return set_paused(&args.target, &client, &queue, false).await;
        }
    }
    Ok(())
}
