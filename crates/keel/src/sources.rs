//! `keel source`: configure and inspect webhook sources.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel_client::{SourceAnswer, SourceRequest};

use crate::admin::{Target, named_spec, print_json};

#[derive(Args)]
pub(crate) struct SourceArgs {
    #[command(subcommand)]
    command: SourceCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum SourceCommand {
    /// Creates or replaces a source from a YAML or JSON file: `name` plus
    /// the fields of `PUT .../sources/{name}`.
    Put { file: PathBuf },
    /// The namespace's sources.
    List,
    /// One source (never its secret).
    Get { name: String },
}

pub(crate) async fn source(args: SourceArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let sources = match args.command {
        SourceCommand::Put { file } => {
            let (name, request): (String, SourceRequest) = named_spec(&file, "source")?;
            vec![client.put_source(ns, &name, &request).await?]
        }
        SourceCommand::List => client.list_sources(ns).await?.sources,
        SourceCommand::Get { name } => vec![client.get_source(ns, &name).await?],
    };
    if target.json {
        return print_json(&sources);
    }
    if sources.is_empty() {
        println!("no sources");
    }
    for s in &sources {
        print_source(s);
    }
    Ok(())
}

fn print_source(s: &SourceAnswer) {
    let scheme = serde_json::to_value(s.verify.scheme).unwrap_or_default();
    println!(
        "{}  {} → topic {}  ingress {}",
        s.name,
        scheme.as_str().unwrap_or("?"),
        s.topic,
        s.ingress
    );
}
