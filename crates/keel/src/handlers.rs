//! `keel handler` and `keel state`: upload a handler from its file (`.js`
//! or `.wasm`), list, read, delete and test-call handlers, set their
//! secrets; read, write and list an object's state.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Subcommand};
use keel_client::{HandlerLimits, HandlerRequest, ObjectRef};
use serde_json::Value;

use crate::admin::{Target, print_json};

#[derive(Args)]
pub(crate) struct HandlerArgs {
    #[command(subcommand)]
    command: HandlerCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum HandlerCommand {
    /// Uploads FILE (`.js`: a module whose default export is
    /// `async function (job, ctx)`; `.wasm`: a module against the handler
    /// ABI) as handler NAME: a new version, unless nothing changed.
    Put {
        name: String,
        file: PathBuf,
        /// An origin its `fetch` may call (`https://api.example.com`); repeat.
        #[arg(long = "allow-http")]
        allow_http: Vec<String>,
        #[arg(long)]
        cpu_ms: Option<u64>,
        #[arg(long)]
        wall_ms: Option<u64>,
        #[arg(long)]
        memory_mb: Option<u32>,
    },
    List,
    Get {
        name: String,
    },
    Delete {
        name: String,
    },
    /// A test call of the current version with PAYLOAD (JSON); nothing
    /// is committed: prints the result or the error, the logs, the time,
    /// and the state writes it would have made.
    Invoke {
        name: String,
        payload: String,
        /// The object it works on: TYPE/KEY.
        #[arg(long)]
        object: Option<String>,
    },
    /// Replaces the handler's secrets: NAME=VALUE, each once.
    Secrets {
        name: String,
        secrets: Vec<String>,
    },
}

#[derive(Args)]
pub(crate) struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum StateCommand {
    /// One key of an object (TYPE/KEY): its value and version.
    Get { object: String, key: String },
    /// Puts a key (VALUE is JSON), only over VERSION with --if-match.
    Put {
        object: String,
        key: String,
        value: String,
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// An object's state in key order.
    List {
        object: String,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn object(text: &str) -> anyhow::Result<ObjectRef> {
    let (kind, key) = text
        .split_once('/')
        .with_context(|| format!("{text:?}: an object is TYPE/KEY"))?;
    Ok(ObjectRef {
        kind: kind.to_owned(),
        key: key.to_owned(),
    })
}

fn json(text: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not JSON"))
}

pub(crate) async fn handler(args: HandlerArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    match args.command {
        HandlerCommand::Put {
            name,
            file,
            allow_http,
            cpu_ms,
            wall_ms,
            memory_mb,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let wasm = file.extension().is_some_and(|e| e == "wasm");
            let defaults = HandlerLimits::default();
            let request = HandlerRequest {
                js: (!wasm).then(|| String::from_utf8_lossy(&bytes).into_owned()),
                wasm_base64: wasm.then(|| base64::engine::general_purpose::STANDARD.encode(&bytes)),
                limits: HandlerLimits {
                    cpu_ms: cpu_ms.unwrap_or(defaults.cpu_ms),
                    wall_ms: wall_ms.unwrap_or(defaults.wall_ms),
                    memory_mb: memory_mb.unwrap_or(defaults.memory_mb),
                    ..defaults
                },
                allow_http,
                shared: false,
            };
            let answer = client.put_handler(ns, &name, &request).await?;
            if target.json {
                return print_json(&answer);
            }
            println!("{name}: version {} ({})", answer.version, answer.hash);
        }
        HandlerCommand::List => {
            let list = client.list_handlers(ns).await?;
            if target.json {
                return print_json(&list);
            }
            for h in &list.handlers {
                println!("{}  v{}  {:?}  {}", h.name, h.version, h.kind, h.updated_at);
            }
        }
        HandlerCommand::Get { name } => print_json(&client.get_handler(ns, &name).await?)?,
        HandlerCommand::Delete { name } => {
            client.delete_handler(ns, &name).await?;
            println!("deleted {name}");
        }
        HandlerCommand::Invoke {
            name,
            payload,
            object: on,
        } => {
            let on = on.as_deref().map(object).transpose()?;
            let answer = client
                .invoke_handler(ns, &name, json(&payload, "the payload")?, on)
                .await?;
            if target.json {
                return print_json(&answer);
            }
            for line in &answer.logs {
                println!("log: {line}");
            }
            match (&answer.result, &answer.error) {
                (Some(result), _) => println!("result: {}", result.get()),
                (None, Some(e)) => println!("error ({}): {}", e.kind, e.message),
                (None, None) => {}
            }
            for w in &answer.writes {
                let value = w.value.as_ref().map_or("(deleted)", |v| v.get());
                println!("would write {} = {value}", w.key);
            }
            println!(
                "v{}: {:.2} ms of CPU, {:.2} ms in all, {} bytes of memory",
                answer.version, answer.cpu_ms, answer.wall_ms, answer.memory_bytes
            );
        }
        HandlerCommand::Secrets { name, secrets } => {
            let secrets = secrets
                .iter()
                .map(|s| {
                    s.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .with_context(|| "a secret is NAME=VALUE".to_owned())
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            let n = secrets.len();
            client.put_handler_secrets(ns, &name, secrets).await?;
            println!("{name}: {n} secrets set");
        }
    }
    Ok(())
}

pub(crate) async fn state(args: StateArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    match args.command {
        StateCommand::Get { object: on, key } => {
            let entry = client.get_state(ns, &object(&on)?, &key).await?;
            if target.json {
                return print_json(&entry);
            }
            println!("{} (version {})", entry.value.get(), entry.version);
        }
        StateCommand::Put {
            object: on,
            key,
            value,
            if_match,
        } => {
            let version = client
                .put_state(
                    ns,
                    &object(&on)?,
                    &key,
                    json(&value, "the value")?,
                    if_match,
                )
                .await?;
            println!("{key}: version {version}");
        }
        StateCommand::List {
            object: on,
            prefix,
            limit,
        } => {
            let page = client
                .list_state(ns, &object(&on)?, prefix.as_deref(), None, limit)
                .await?;
            if target.json {
                return print_json(&page);
            }
            for e in &page.entries {
                println!("{} = {} (version {})", e.key, e.value.get(), e.version);
            }
        }
    }
    Ok(())
}
