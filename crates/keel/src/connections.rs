//! `keel integration`, `keel connection` and `keel keys`: configure OAuth2
//! integrations, connect end users, read connections (never their tokens),
//! make calls as one, and rotate the keys their secrets are sealed with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel_client::{ConnectRequest, ConnectionAnswer, IntegrationRequest, ProxyRequest};

use crate::admin::{Target, named_spec, print_json};

#[derive(Args)]
pub(crate) struct IntegrationArgs {
    #[command(subcommand)]
    command: IntegrationCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum IntegrationCommand {
    /// Creates or replaces an integration from a YAML or JSON file: `name`
    /// plus the fields of `PUT .../integrations/{name}`.
    Put {
        file: PathBuf,
    },
    /// The namespace's integrations (never their client secrets).
    List,
    Get {
        name: String,
    },
    /// Deletes an integration that has no connections.
    Delete {
        name: String,
    },
}

#[derive(Args)]
pub(crate) struct ConnectionArgs {
    #[command(subcommand)]
    command: ConnectionCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum ConnectionCommand {
    /// Prints the URL to send an end user to, to connect them as NAME.
    Connect {
        integration: String,
        name: String,
        /// Where their browser goes once connected.
        #[arg(long)]
        return_to: Option<String>,
    },
    /// The namespace's connections (never their tokens).
    List,
    Get {
        name: String,
    },
    /// Forgets a connection and its tokens.
    Delete {
        name: String,
    },
    /// Makes a call as the connection and prints the answer.
    Call {
        name: String,
        url: String,
        #[arg(long, short = 'X', default_value = "GET")]
        method: String,
        /// The request's body.
        #[arg(long, short)]
        data: Option<String>,
        /// `Name: value`, repeatable.
        #[arg(long, short = 'H')]
        header: Vec<String>,
    },
}

#[derive(Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Makes a new key the active one and seals every secret again with
    /// it, in one transaction.
    Rotate,
}

pub(crate) async fn integration(args: IntegrationArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let integrations = match args.command {
        IntegrationCommand::Put { file } => {
            let (name, request): (String, IntegrationRequest) = named_spec(&file, "integration")?;
            vec![client.put_integration(ns, &name, &request).await?]
        }
        IntegrationCommand::List => client.list_integrations(ns).await?.integrations,
        IntegrationCommand::Get { name } => vec![client.get_integration(ns, &name).await?],
        IntegrationCommand::Delete { name } => {
            client.delete_integration(ns, &name).await?;
            println!("deleted integration {name}");
            return Ok(());
        }
    };
    if target.json {
        return print_json(&integrations);
    }
    if integrations.is_empty() {
        println!("no integrations");
    }
    for i in &integrations {
        let provider = serde_json::to_value(i.provider).unwrap_or_default();
        println!(
            "{}  {}  client {}  api {}",
            i.name,
            provider.as_str().unwrap_or("?"),
            i.client_id,
            i.api_base.join(" ")
        );
    }
    Ok(())
}

pub(crate) async fn connection(args: ConnectionArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let connections = match args.command {
        ConnectionCommand::Connect {
            integration,
            name,
            return_to,
        } => {
            let request = ConnectRequest {
                connection: keel_core::ConnectionName::new(&name)
                    .map_err(|e| anyhow::anyhow!(e.message))?,
                return_to,
                scopes: None,
            };
            let answer = client.connect_session(ns, &integration, &request).await?;
            if target.json {
                return print_json(&answer);
            }
            println!("{}", answer.authorize_url);
            return Ok(());
        }
        ConnectionCommand::List => client.list_connections(ns).await?.connections,
        ConnectionCommand::Get { name } => vec![client.get_connection(ns, &name).await?],
        ConnectionCommand::Delete { name } => {
            client.delete_connection(ns, &name).await?;
            println!("deleted connection {name}");
            return Ok(());
        }
        ConnectionCommand::Call {
            name,
            url,
            method,
            data,
            header,
        } => {
            let mut headers = BTreeMap::new();
            for h in header {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("a header is `Name: value`, not {h:?}"))?;
                headers.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            let request = ProxyRequest {
                method,
                url,
                headers,
                body: data,
            };
            let answer = client.call_as(ns, &name, &request).await?;
            if target.json {
                return print_json(&answer);
            }
            println!("{}", answer.status);
            println!("{}", answer.body);
            return Ok(());
        }
    };
    if target.json {
        return print_json(&connections);
    }
    if connections.is_empty() {
        println!("no connections");
    }
    for c in &connections {
        print_connection(c);
    }
    Ok(())
}

fn print_connection(c: &ConnectionAnswer) {
    let status = serde_json::to_value(c.status).unwrap_or_default();
    let expires = c
        .expires_at
        .map_or_else(|| "unknown".to_owned(), |t| t.to_rfc3339());
    println!(
        "{}  {}  {}  v{}  expires {}{}",
        c.name,
        c.integration,
        status.as_str().unwrap_or("?"),
        c.version,
        expires,
        c.error
            .as_deref()
            .map(|e| format!("  ({e})"))
            .unwrap_or_default()
    );
}

pub(crate) async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    match args.command {
        KeysCommand::Rotate => {
            let rotated = client.rotate_keys().await?;
            if target.json {
                return print_json(&rotated);
            }
            println!(
                "key {} is active; {} secrets sealed again with it",
                rotated.active, rotated.resealed
            );
        }
    }
    Ok(())
}
