//! The event commands: `keel topic`, `keel publish`, `keel tail` and
//! `keel subscription`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_client::{
    NewEvent, StartAt, StartNamed, SubscriptionAnswer, SubscriptionRequest, TopicRequest,
};
use keel_core::Timestamp;
use serde_json::Value;

use crate::admin::{Target, named_spec, print_json};

#[derive(Args)]
pub(crate) struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// The namespace's topics.
    List,
    /// One topic: its policy, head seq and event count.
    Get { topic: String },
    /// Creates a topic or sets its policy (unset fields take the defaults).
    Put {
        topic: String,
        #[arg(long)]
        retention_ms: Option<u64>,
        #[arg(long)]
        dedup_window_ms: Option<u64>,
        #[arg(long)]
        max_event_bytes: Option<u64>,
    },
}

pub(crate) async fn topic(args: TopicArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let topics = match args.command {
        TopicCommand::List => client.list_topics(ns).await?.topics,
        TopicCommand::Get { topic } => vec![client.get_topic(ns, &topic).await?],
        TopicCommand::Put {
            topic,
            retention_ms,
            dedup_window_ms,
            max_event_bytes,
        } => {
            let policy = TopicRequest {
                retention_ms,
                dedup_window_ms,
                max_event_bytes,
                slo: None,
            };
            vec![client.put_topic(ns, &topic, &policy).await?]
        }
    };
    if target.json {
        return print_json(&topics);
    }
    if topics.is_empty() {
        println!("no topics");
    }
    for t in topics {
        println!(
            "{}  head {}  events {}  retention {} ms  dedup {} ms  max {} bytes",
            t.name, t.head_seq, t.events, t.retention_ms, t.dedup_window_ms, t.max_event_bytes
        );
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct PublishArgs {
    topic: String,
    /// The event's data, as JSON.
    data: String,
    #[arg(long)]
    key: Option<String>,
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let data: Value = serde_json::from_str(&args.data).context("the data is not JSON")?;
    let event = NewEvent {
        id: args.id,
        kind: args.kind,
        source: args.source,
        key: args.key,
        time: None,
        data: Some(data),
        headers: Default::default(),
    };
    let target = &args.target;
    let published = target
        .client()?
        .publish(&target.namespace, &args.topic, &event)
        .await?;
    if target.json {
        return print_json(&published);
    }
    let dedup = if published.duplicate {
        " (duplicate: published before within the dedup window)"
    } else {
        ""
    };
    println!("{} seq {}{dedup}", published.id, published.seq);
    Ok(())
}

#[derive(Args)]
pub(crate) struct TailArgs {
    topic: String,
    /// Where to start: `earliest`, `latest` (default) or a seq (the first shown).
    #[arg(long, default_value = "latest")]
    from: String,
    /// Only events of this key.
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// Follows a topic, printing each event as it is published, until stopped.
#[allow(
    clippy::print_stderr,
    reason = "what a command the user is waiting on waits for, apart from its output"
)]
pub(crate) async fn tail(args: TailArgs) -> anyhow::Result<()> {
    const WAIT_MS: u64 = 30_000;
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let mut after = match args.from.as_str() {
        "earliest" => 0,
        "latest" => client
            .get_topic(ns, &args.topic)
            .await
            .map_or(0, |t| t.head_seq),
        seq => seq
            .parse::<u64>()
            .context("--from is earliest, latest or a seq")?
            .saturating_sub(1),
    };
    let mut said_waiting = false;
    loop {
        let page = client
            .read_events(
                ns,
                &args.topic,
                after,
                args.key.as_deref(),
                1000,
                Some(WAIT_MS),
            )
            .await;
        let page = match page {
            Ok(page) => page,
            // Nothing published yet: wait for the topic to appear.
            Err(e) if e.code() == Some("not_found") => {
                if !said_waiting {
                    eprintln!(
                        "topic {} does not exist yet: waiting for its first event (Ctrl-C to stop)",
                        args.topic
                    );
                    said_waiting = true;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for event in page.events {
            after = event.seq;
            if target.json {
                println!("{}", serde_json::to_string(&event)?);
            } else {
                println!(
                    "{}  {}  {}  {}  {}",
                    event.seq,
                    event.time.to_rfc3339(),
                    if event.kind.is_empty() {
                        "-"
                    } else {
                        &event.kind
                    },
                    event.key.as_deref().unwrap_or("-"),
                    event.data
                );
            }
        }
    }
}

#[derive(Args)]
pub(crate) struct SubscriptionArgs {
    #[command(subcommand)]
    command: SubscriptionCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum SubscriptionCommand {
    /// Creates or updates a subscription from a YAML or JSON file: `name`
    /// plus the fields of `PUT .../subscriptions/{name}`.
    Put {
        file: PathBuf,
    },
    /// The namespace's subscriptions, optionally of one topic.
    List {
        #[arg(long)]
        topic: Option<String>,
    },
    /// One subscription and where it stands.
    Get {
        name: String,
    },
    /// Moves the position: a seq (the next delivered), a time (RFC 3339),
    /// `earliest` or `latest`.
    Seek {
        name: String,
        to: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
}

pub(crate) async fn subscription(args: SubscriptionArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let subs = match args.command {
        SubscriptionCommand::Put { file } => {
            let (name, request): (String, SubscriptionRequest) = named_spec(&file, "subscription")?;
            vec![client.put_subscription(ns, &name, &request).await?]
        }
        SubscriptionCommand::List { topic } => {
            client
                .list_subscriptions(ns, topic.as_deref())
                .await?
                .subscriptions
        }
        SubscriptionCommand::Get { name } => vec![client.get_subscription(ns, &name).await?],
        SubscriptionCommand::Seek { name, to } => {
            let to = match to.as_str() {
                "earliest" => StartAt::Named(StartNamed::Earliest),
                "latest" => StartAt::Named(StartNamed::Latest),
                other => match other.parse::<u64>() {
                    Ok(seq) => StartAt::Seq { seq },
                    Err(_) => StartAt::Time {
                        time: Timestamp::parse_rfc3339(other)
                            .context("seek to a seq, an RFC 3339 time, earliest or latest")?,
                    },
                },
            };
            vec![client.seek_subscription(ns, &name, to).await?]
        }
        SubscriptionCommand::Pause { name } => {
            vec![client.pause_subscription(ns, &name, true).await?]
        }
        SubscriptionCommand::Resume { name } => {
            vec![client.pause_subscription(ns, &name, false).await?]
        }
    };
    if target.json {
        return print_json(&subs);
    }
    if subs.is_empty() {
        println!("no subscriptions");
    }
    for s in &subs {
        print_subscription(s);
    }
    Ok(())
}

fn print_subscription(s: &SubscriptionAnswer) {
    let target = match &s.target {
        None => "pulled".to_owned(),
        Some(t) => serde_json::to_string(t).unwrap_or_default(),
    };
    println!(
        "{}  topic {}  {:?}  position {}  lag {}  delivered {}  skipped {}  → {target}",
        s.name, s.topic, s.status, s.position, s.lag, s.delivered, s.skipped
    );
}
