//! A worker that sends "e-mails": it fails a job whose payload asks it to, and
//! completes the others with a result.
//!
//! Run with: `cargo run -p keel-client --example worker -- http://127.0.0.1:5335 emails`
//! and stop with Ctrl-C; running jobs finish before it exits. It sends
//! `KEEL_TOKEN` (a worker token) when set, as a server with tokens requires.

use keel_client::{Client, JobFailure, Worker, WorkerOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:5335".into());
    let queue = args.next().unwrap_or_else(|| "emails".into());
    let max_jobs: Option<usize> = args.next().map(|n| n.parse()).transpose()?;

    let client = match std::env::var("KEEL_TOKEN") {
        Ok(token) => Client::new(&server)?.with_token(&token),
        Err(_) => Client::new(&server)?,
    };
    let mut options = WorkerOptions::new("default", &queue);
    options.concurrency = 8;
    let done = std::sync::Arc::new(tokio::sync::Notify::new());
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (done_tx, counter) = (done.clone(), handled.clone());

    let handler = move |job: keel_client::LeasedJob| {
        let (done, handled) = (done_tx.clone(), counter.clone());
        async move {
            let n = handled.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if max_jobs.is_some_and(|max| n >= max) {
                done.notify_one();
            }
            if job.payload["fail"] == json!(true) {
                return Err(JobFailure::fatal("the payload asked to fail"));
            }
            Ok(json!({ "sent_to": job.payload["to"], "attempt": job.attempt }))
        }
    };
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = done.notified() => {}
        }
    };
    Worker::new(client, options).run(handler, shutdown).await;
    println!(
        "worker stopped after {} jobs",
        handled.load(std::sync::atomic::Ordering::SeqCst)
    );
    Ok(())
}
