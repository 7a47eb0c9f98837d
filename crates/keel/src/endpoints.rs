//! `keel endpoint`: configure endpoints, rotate their secrets, read their
//! attempts and send again what failed.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel_client::{EndpointAnswer, EndpointRequest};

use crate::admin::{Target, named_spec, print_json};

#[derive(Args)]
pub(crate) struct EndpointArgs {
    #[command(subcommand)]
    command: EndpointCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Creates or changes an endpoint from a YAML or JSON file: `name` plus
    /// the fields of `PUT .../endpoints/{name}`. Prints a new secret once.
    Put { file: PathBuf },
    /// The namespace's endpoints with their status.
    List,
    /// One endpoint (never its secret).
    Get { name: String },
    /// A new secret, printed once; the old one signs too for a day.
    RotateSecret { name: String },
    /// Enables a disabled endpoint.
    Enable { name: String },
    /// The newest attempts.
    Attempts {
        name: String,
        /// `succeeded` or `failed`.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Sends again every delivery that died since a time (RFC 3339).
    Recover {
        name: String,
        #[arg(long)]
        since: String,
    },
}

pub(crate) async fn endpoint(args: EndpointArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let endpoints = match args.command {
        EndpointCommand::Put { file } => {
            let (name, request): (String, EndpointRequest) = named_spec(&file, "endpoint")?;
            vec![client.put_endpoint(ns, &name, &request).await?]
        }
        EndpointCommand::List => client.list_endpoints(ns).await?.endpoints,
        EndpointCommand::Get { name } => vec![client.get_endpoint(ns, &name).await?],
        EndpointCommand::Enable { name } => vec![client.enable_endpoint(ns, &name).await?],
        EndpointCommand::RotateSecret { name } => {
            let rotated = client.rotate_endpoint_secret(ns, &name).await?;
            if target.json {
                return print_json(&rotated);
            }
            println!("{}", rotated.secret);
            return Ok(());
        }
        EndpointCommand::Attempts {
            name,
            status,
            limit,
        } => {
            let page = client
                .endpoint_attempts(ns, &name, status.as_deref(), None, Some(limit))
                .await?;
            if target.json {
                return print_json(&page);
            }
            if page.attempts.is_empty() {
                println!("no attempts of {name} (with this status)");
            }
            for a in &page.attempts {
                let status = a.http_status.map_or("-".to_owned(), |s| s.to_string());
                let error = a.error.as_deref().unwrap_or_default();
                println!(
                    "{}  {}  {}  {status}  {} ms  {error}",
                    a.at, a.message_id, a.status, a.latency_ms
                );
            }
            return Ok(());
        }
        EndpointCommand::Recover { name, since } => {
            let answer = client.recover_endpoint(ns, &name, &since).await?;
            if target.json {
                return print_json(&answer);
            }
            println!("{} deliveries sent again", answer.recovered);
            return Ok(());
        }
    };
    if target.json {
        return print_json(&endpoints);
    }
    if endpoints.is_empty() {
        println!("no endpoints");
    }
    for e in &endpoints {
        print_endpoint(e);
    }
    Ok(())
}

fn print_endpoint(e: &EndpointAnswer) {
    let s = &e.status;
    let state = match &s.disabled_at {
        Some(at) => format!("disabled since {at}"),
        None if s.failure_streak > 0 => format!("failing ({} in a row)", s.failure_streak),
        None => "ok".to_owned(),
    };
    println!(
        "{}  {}  {state}  in flight {}  backlog {}  dead {}",
        e.name, e.spec.url, s.in_flight, s.backlog, s.dead
    );
    if let Some(secret) = &e.secret {
        println!("secret (shown once): {secret}");
    }
}
