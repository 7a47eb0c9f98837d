//! Admin commands: thin uses of `keel-client`, human-readable by default and
//! JSON with `--json`.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_client::{Client, Debounce, JobSpec, ListQuery};
use serde_json::Value;

#[derive(Args)]
pub(crate) struct Target {
    /// Server to talk to.
    #[arg(
        long,
        env = "KEEL_SERVER",
        default_value = "http://127.0.0.1:5335",
        global = true
    )]
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
        let ca = match &self.ca_cert {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };
        let client = Client::with_ca_cert(&self.server, ca.as_deref())?;
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
pub(crate) struct EnqueueArgs {
    queue: String,
    /// The payload, as JSON.
    payload: String,
    #[arg(long)]
    priority: Option<i64>,
    #[arg(long)]
    delay_ms: Option<u64>,
    #[arg(long)]
    max_attempts: Option<u32>,
    #[arg(long)]
    idempotency_key: Option<String>,
    #[arg(long)]
    ordering_key: Option<String>,
    /// Collapse enqueues of this key within the window into one job.
    #[arg(long, requires = "debounce_window_ms")]
    debounce_key: Option<String>,
    /// The debounce window, from the key's first enqueue.
    #[arg(long, requires = "debounce_key")]
    debounce_window_ms: Option<u64>,
    /// A tag as key=value (key:value works too); repeat for more.
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    #[command(flatten)]
    target: Target,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    keel_core::job::parse_tag(text).map_err(|e| e.message)
}

pub(crate) async fn enqueue(args: EnqueueArgs) -> anyhow::Result<()> {
    let payload: Value = serde_json::from_str(&args.payload).context("the payload is not JSON")?;
    let job = JobSpec {
        payload,
        priority: args.priority,
        delay_ms: args.delay_ms,
        max_attempts: args.max_attempts,
        idempotency_key: args.idempotency_key,
        ordering_key: args.ordering_key,
        tags: args.tags.into_iter().collect::<BTreeMap<_, _>>(),
        debounce: args
            .debounce_key
            .zip(args.debounce_window_ms)
            .map(|(key, window_ms)| Debounce { key, window_ms }),
        ..JobSpec::default()
    };
    let enqueued = args
        .target
        .client()?
        .enqueue(&args.target.namespace, &args.queue, &job)
        .await?;
    if args.target.json {
        return print_json(&enqueued);
    }
    let dedup = if enqueued.deduplicated {
        " (deduplicated: an earlier job has this key)"
    } else if enqueued.debounced {
        " (debounced: this payload replaced the waiting job's)"
    } else {
        ""
    };
    println!("{} {}{dedup}", enqueued.id, enqueued.state);
    Ok(())
}

#[derive(Args)]
pub(crate) struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Show one job.
    Get { id: String },
    /// List jobs, newest first.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        state: Option<String>,
        /// Only jobs with this tag: key=value (key:value works too).
        #[arg(long, value_parser = parse_tag)]
        tag: Option<(String, String)>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
}

pub(crate) async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let ns = &args.target.namespace;
    match args.command {
        JobsCommand::Get { id } => {
            let job = client.get_job(ns, &id).await?;
            if args.target.json {
                return print_json(&job);
            }
            println!("id:           {}", job.id);
            println!("queue:        {}", job.queue);
            println!("state:        {}", job.state);
            println!("attempt:      {}/{}", job.attempt, job.max_attempts);
            println!("priority:     {}", job.priority);
            println!("run at:       {}", job.run_at);
            println!("created:      {}", job.created_at);
            println!("updated:      {}", job.updated_at);
            if let Some(key) = &job.ordering_key {
                println!("ordering key: {key}");
            }
            if !job.tags.is_empty() {
                let tags: Vec<String> = job.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("tags:         {}", tags.join(" "));
            }
            println!("payload:      {}", job.payload);
            if let Some(result) = &job.result {
                println!("result:       {result}");
            }
            for e in &job.errors {
                println!("error #{}:     {} ({})", e.attempt, e.message, e.at);
            }
            match job.waiting.as_deref() {
                Some([]) => println!("waiting on:   nothing (the next lease call takes it)"),
                Some(gates) => {
                    for gate in gates {
                        println!("waiting on:   {}", gate.describe());
                    }
                }
                None => {}
            }
        }
        JobsCommand::List {
            queue,
            state,
            tag,
            limit,
            cursor,
        } => {
            let page = client
                .list_jobs(
                    ns,
                    &ListQuery {
                        queue,
                        state,
                        tag: tag.map(|(k, v)| format!("{k}:{v}")),
                        limit: Some(limit),
                        cursor,
                    },
                )
                .await?;
            if args.target.json {
                return print_json(&page);
            }
            println!(
                "{:<36}  {:<9}  {:<20}  {:>7}  CREATED",
                "ID", "STATE", "QUEUE", "ATTEMPT"
            );
            for job in &page.jobs {
                let attempt = format!("{}/{}", job.attempt, job.max_attempts);
                println!(
                    "{:<36}  {:<9}  {:<20}  {:>7}  {}",
                    job.id, job.state, job.queue, attempt, job.created_at
                );
            }
            if let Some(cursor) = page.next_cursor {
                println!("more: --cursor {cursor}");
            }
        }
    }
    Ok(())
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
    Stats { queue: String },
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
    }
    Ok(())
}
