//! Jobs from the command line: enqueue one, read and list them, and what
//! an operator does by hand: cancel, redrive the dead, and lease, complete
//! or fail a job as a worker would (to try a queue out).

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_client::{AckItem, AcksAnswer, Debounce, JobSpec, ListQuery};
use serde_json::Value;

use crate::admin::{Target, print_json};

#[derive(Args)]
pub(crate) struct EnqueueArgs {
    /// The queue to put the job on.
    queue: String,
    /// The payload, as JSON.
    payload: String,
    /// -100 to 100, higher first (default 0).
    #[arg(long)]
    priority: Option<i64>,
    /// Leasable this many ms from now (default: at once).
    #[arg(long)]
    delay_ms: Option<u64>,
    /// Attempts before the job is dead (default: the queue's policy, else 20).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// A second enqueue with this key within 24 h answers the first job's id.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Jobs of one ordering key run one at a time, in enqueue order.
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
    /// The object the job works on, TYPE/KEY: its jobs run one at a time
    /// and a handler keeps its state.
    #[arg(long, conflicts_with = "ordering_key")]
    object: Option<String>,
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
        object: args
            .object
            .map(|o| {
                o.split_once('/')
                    .map(|(kind, key)| keel_client::ObjectRef {
                        kind: kind.to_owned(),
                        key: key.to_owned(),
                    })
                    .context("--object is TYPE/KEY")
            })
            .transpose()?,
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
    /// Show one job (a waiting job says why).
    Get {
        /// The job's id.
        id: String,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs of this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs in this state: scheduled, ready, leased, succeeded, dead
        /// or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs with this tag: key=value (key:value works too).
        #[arg(long, value_parser = parse_tag)]
        tag: Option<(String, String)>,
        /// Most jobs on a page.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// The `more: --cursor` a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Cancel a job that has not finished.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Send dead jobs of a queue back to ready, their attempts reset.
    Redrive {
        /// The queue whose dead jobs go back.
        queue: String,
        /// Only these jobs (repeat for more); without it, every dead job.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// A JSON payload that replaces theirs.
        #[arg(long)]
        payload: Option<String>,
    },
    /// Lease jobs by hand, as a worker would (to try things out): prints
    /// each job with the lease token that completes or fails it.
    Lease {
        /// The queue to lease from.
        queue: String,
        /// Most jobs to take.
        #[arg(long, default_value_t = 1)]
        max: u32,
        /// Wait this long for a job when none is ready, in ms.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// The lease's length, in ms (default: the queue's policy).
        #[arg(long)]
        lease_ms: Option<u64>,
    },
    /// Complete a leased job.
    Complete {
        /// The lease token `keel jobs lease` printed.
        lease_token: String,
        /// The job's result, as JSON.
        #[arg(long)]
        result: Option<String>,
    },
    /// Fail a leased job: it is retried with backoff, or dead when its
    /// attempts are spent or with --no-retry.
    Fail {
        /// The lease token `keel jobs lease` printed.
        lease_token: String,
        /// Why it failed.
        #[arg(long)]
        error: String,
        /// Dead at once: no more attempts.
        #[arg(long)]
        no_retry: bool,
        /// Retry after this many ms instead of the backoff.
        #[arg(long)]
        retry_after_ms: Option<u64>,
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
                    job.id,
                    job.state.as_str(),
                    job.queue,
                    attempt,
                    job.created_at
                );
            }
            if let Some(cursor) = page.next_cursor {
                println!("more: --cursor {cursor}");
            }
        }
        JobsCommand::Cancel { id } => {
            let acked = client.cancel_job(ns, &id).await?;
            if args.target.json {
                return print_json(&acked);
            }
            println!("{} {}", acked.id, acked.state);
        }
        JobsCommand::Redrive {
            queue,
            ids,
            payload,
        } => {
            let payload = payload
                .map(|p| serde_json::from_str::<Value>(&p))
                .transpose()
                .context("the payload is not JSON")?;
            let ids = (!ids.is_empty()).then_some(ids);
            let answer = client.redrive(ns, &queue, ids, payload).await?;
            if args.target.json {
                return print_json(&answer);
            }
            println!("redriven: {}", answer.redriven);
            for id in answer.ids {
                println!("{id}");
            }
        }
        JobsCommand::Lease {
            queue,
            max,
            wait_ms,
            lease_ms,
        } => {
            let worker = format!("keel-cli-{}", std::process::id());
            let jobs = client
                .lease(ns, &queue, &worker, max, wait_ms, lease_ms)
                .await?;
            if args.target.json {
                return print_json(&jobs);
            }
            if jobs.is_empty() {
                println!("no job ready on {queue}");
            }
            for job in jobs {
                println!(
                    "{} attempt {}/{} lease token {} until {}",
                    job.id, job.attempt, job.max_attempts, job.lease_token, job.lease_expires_at
                );
                println!("  payload: {}", job.payload);
            }
        }
        JobsCommand::Complete {
            lease_token,
            result,
        } => {
            let mut item =
                serde_json::json!({"id": job_of(&lease_token)?, "lease_token": lease_token});
            if let Some(result) = result {
                item["result"] = serde_json::from_str(&result).context("the result is not JSON")?;
            }
            let answer = client.acks(ns, vec![item], Vec::new()).await?;
            return acked(answer, args.target.json);
        }
        JobsCommand::Fail {
            lease_token,
            error,
            no_retry,
            retry_after_ms,
        } => {
            let item = serde_json::json!({
                "id": job_of(&lease_token)?,
                "lease_token": lease_token,
                "error": error,
                "retry": !no_retry,
                "retry_after_ms": retry_after_ms,
            });
            let answer = client.acks(ns, Vec::new(), vec![item]).await?;
            return acked(answer, args.target.json);
        }
    }
    Ok(())
}

/// The job a lease token is for (`{job id}.{lease sequence}`).
fn job_of(lease_token: &str) -> anyhow::Result<&str> {
    lease_token
        .rsplit_once('.')
        .map(|(id, _)| id)
        .context("a lease token is {job id}.{lease sequence}, as `keel jobs lease` prints it")
}

/// Prints the one ack's outcome; an ack refused (a stale lease) fails the
/// command with the server's code.
fn acked(answer: AcksAnswer, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&answer);
    }
    let item = answer
        .complete
        .into_iter()
        .chain(answer.fail)
        .next()
        .context("the server answered no item")?;
    match item {
        AckItem::Done { id, state, .. } => {
            println!("{id} {state}");
            Ok(())
        }
        AckItem::Refused { error, .. } => anyhow::bail!("{}: {}", error.code, error.message),
    }
}
