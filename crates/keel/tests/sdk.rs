//! The worker SDK and the example workers, against the real server.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Server;
use keel_client::{Client, JobFailure, JobSpec, JobState, LeasedJob, Worker, WorkerOptions};
use serde_json::json;
use tokio::sync::Notify;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_retries_heartbeats_and_drains() {
    retries_heartbeats_and_drains(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_on_lease_calls_retries_heartbeats_and_drains() {
    retries_heartbeats_and_drains(false).await;
}

/// 100 jobs, one slow (only heartbeats keep it) and ten flaky, taken from
/// a worker stream or from lease calls.
async fn retries_heartbeats_and_drains(stream: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let client = Client::new(&server.url).unwrap();
    let mut jobs: Vec<JobSpec> = (0..100)
        .map(|n| JobSpec::new(json!({"n": n, "flaky": n % 10 == 3})))
        .collect();
    jobs[0].payload = json!({"n": 0, "slow": true});
    let enqueued = client.enqueue_many("default", "sdk", &jobs).await.unwrap();

    let handled = Arc::new(AtomicUsize::new(0));
    let all_handled = Arc::new(Notify::new());
    let (count, done) = (handled.clone(), all_handled.clone());
    let handler = move |job: LeasedJob| {
        let (count, done) = (count.clone(), done.clone());
        async move {
            if job.payload["slow"] == true {
                // Over twice the 2 s lease: only heartbeats keep the job.
                tokio::time::sleep(Duration::from_millis(4500)).await;
            }
            let result = if job.payload["flaky"] == true && job.attempt == 1 {
                Err(JobFailure {
                    message: "flaky".into(),
                    retry: true,
                    retry_after_ms: Some(0),
                })
            } else {
                Ok(json!({"n": job.payload["n"]}))
            };
            if count.fetch_add(1, Ordering::SeqCst) + 1 == 110 {
                done.notify_one();
            }
            result
        }
    };
    let mut options = WorkerOptions::new("default", "sdk");
    options.stream = stream;
    options.concurrency = 8;
    options.max_batch = 8;
    // Long enough that a loaded machine (the whole suite at once) does not
    // let leases run out on their way to the worker.
    options.lease_ms = 2000;
    options.wait_ms = 200;
    Worker::new(client.clone(), options)
        .run(handler, async move { all_handled.notified().await })
        .await;

    let stats = client.queue_stats("default", "sdk").await.unwrap();
    assert_eq!(stats.count(JobState::Succeeded), 100, "{stats:?}");
    let slow = client
        .get_job("default", &enqueued[0].id.to_string())
        .await
        .unwrap();
    assert_eq!(slow.attempt, 1, "heartbeats kept the slow job's lease");
    let flaky = client
        .get_job("default", &enqueued[3].id.to_string())
        .await
        .unwrap();
    assert_eq!((flaky.attempt, flaky.errors.len()), (2, 1));
    assert_eq!(flaky.result, Some(json!({"n": 3})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_jobs_keep_their_leases_while_they_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let client = Client::new(&server.url).unwrap();
    let jobs: Vec<JobSpec> = (0..6).map(|n| JobSpec::new(json!(n))).collect();
    let ids: Vec<String> = client
        .enqueue_many("default", "prefetch", &jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id.to_string())
        .collect();
    let handled = Arc::new(AtomicUsize::new(0));
    let leased_at_first_start = Arc::new(AtomicUsize::new(0));
    let all_handled = Arc::new(Notify::new());
    let (count, leased, done, stats_client) = (
        handled.clone(),
        leased_at_first_start.clone(),
        all_handled.clone(),
        client.clone(),
    );
    let handler = move |_job: LeasedJob| {
        let (count, leased, done, client) = (
            count.clone(),
            leased.clone(),
            done.clone(),
            stats_client.clone(),
        );
        async move {
            if count.load(Ordering::SeqCst) == 0 {
                let stats = client.queue_stats("default", "prefetch").await.unwrap();
                let n = stats.count(JobState::Leased);
                leased.store(n as usize, Ordering::SeqCst);
            }
            // One handler at a time: the last job waits about 2.5 s for it,
            // far past its 600 ms lease.
            tokio::time::sleep(Duration::from_millis(400)).await;
            if count.fetch_add(1, Ordering::SeqCst) + 1 == 6 {
                done.notify_one();
            }
            Ok(json!("done"))
        }
    };
    let mut options = WorkerOptions::new("default", "prefetch");
    options.concurrency = 1;
    options.prefetch = 5;
    options.max_batch = 6;
    options.lease_ms = 600;
    options.wait_ms = 200;
    let worker = Worker::new(client.clone(), options)
        .run(handler, async move { all_handled.notified().await });
    // Jobs that lost their leases while waiting would be leased and run
    // again and again.
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker drained the six jobs");

    assert_eq!(
        leased_at_first_start.load(Ordering::SeqCst),
        6,
        "all six jobs were leased before the first one ran"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 6, "no job ran twice");
    for id in ids {
        let job = client.get_job("default", &id).await.unwrap();
        assert_eq!(
            (job.state.as_str(), job.attempt),
            ("succeeded", 1),
            "{id}: heartbeats kept its lease while it waited for the handler"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_running_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let client = Client::new(&server.url).unwrap();
    let ids: Vec<String> = client
        .enqueue_many(
            "default",
            "drain",
            &(0..4).map(|n| JobSpec::new(json!(n))).collect::<Vec<_>>(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id.to_string())
        .collect();
    let started = Arc::new(AtomicUsize::new(0));
    let all_started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, a, r) = (started.clone(), all_started.clone(), release.clone());
    let handler = move |_job: LeasedJob| {
        let (s, a, r) = (s.clone(), a.clone(), r.clone());
        async move {
            if s.fetch_add(1, Ordering::SeqCst) + 1 == 4 {
                a.notify_one();
            }
            r.notified().await;
            Ok(json!("finished during the drain"))
        }
    };
    let mut options = WorkerOptions::new("default", "drain");
    options.concurrency = 4;
    let shutdown = {
        let release = release.clone();
        async move {
            all_started.notified().await;
            // Shut down while all four handlers are mid-job, then let them finish.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                release.notify_waiters();
            });
        }
    };
    Worker::new(client.clone(), options)
        .run(handler, shutdown)
        .await;
    for id in ids {
        let job = client.get_job("default", &id).await.unwrap();
        assert_eq!(
            job.state.as_str(),
            "succeeded",
            "{id} was finished and acknowledged before run() returned"
        );
    }
}

#[tokio::test]
async fn python_example_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = Server::start_secured(&dir, &[]).await;
    let worker = server
        .mint(
            &admin,
            json!({"name": "py", "role": "worker", "namespaces": ["default"]}),
        )
        .await;
    let client = Client::new(&server.url).unwrap().with_token(&admin);
    let mut jobs: Vec<JobSpec> = (0..19).map(|n| JobSpec::new(json!({"n": n}))).collect();
    jobs.push(JobSpec::new(json!({"fail": true})));
    client.enqueue_many("default", "py", &jobs).await.unwrap();
    let output = tokio::process::Command::new("python3")
        .arg(repo_root().join("examples/python/worker.py"))
        .args([&server.url, "py", "--max-jobs", "20"])
        .env("KEEL_TOKEN", worker["token"].as_str().unwrap())
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = client.queue_stats("default", "py").await.unwrap();
    assert_eq!(stats.count(JobState::Succeeded), 19, "{stats:?}");
    assert_eq!(stats.count(JobState::Dead), 1, "{stats:?}");
}

/// The Python example prints a line per job, and when the server goes away
/// (kill -9, restarted on the same address) it tries again with backoff and
/// goes on with the jobs enqueued after the restart (regression: it died
/// with a traceback).
#[tokio::test]
async fn python_example_worker_survives_a_server_restart() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let listen = common::free_address();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let args = ["--listen", &listen, "--data-dir", &data_dir];
    let mut server = Server::start_with(&args).await;
    let client = Client::new(&server.url).unwrap();
    client
        .enqueue("default", "py", &JobSpec::new(json!({"n": 1})))
        .await
        .unwrap();
    let mut worker = tokio::process::Command::new("python3")
        .arg(repo_root().join("examples/python/worker.py"))
        .args([&server.url, "py", "--max-jobs", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut out = BufReader::new(worker.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(worker.stderr.take().unwrap()).lines();
    let next_job = async |out: &mut tokio::io::Lines<_>| loop {
        let line: String = out.next_line().await.unwrap().expect("the worker goes on");
        if line.starts_with("job ") {
            return line;
        }
    };
    assert!(next_job(&mut out).await.ends_with("(attempt 1) completed"));

    server.kill9().await;
    let line = err.next_line().await.unwrap().unwrap();
    assert!(line.starts_with("server unreachable"), "{line}");
    let server = Server::start_with(&args).await;
    client
        .enqueue("default", "py", &JobSpec::new(json!({"n": 2})))
        .await
        .unwrap();
    assert!(next_job(&mut out).await.ends_with("(attempt 1) completed"));
    let status = worker.wait().await.unwrap();
    assert!(status.success(), "two jobs, then it stops");
    let stats = client.queue_stats("default", "py").await.unwrap();
    assert_eq!(stats.count(JobState::Succeeded), 2, "{stats:?}");
    drop(server);
}

#[tokio::test]
async fn rust_example_worker() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = tokio::process::Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "keel-client",
            "--example",
            "worker",
            "--message-format",
            "short",
        ])
        .current_dir(repo_root())
        .status()
        .await
        .expect("cargo runs");
    assert!(built.success());
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = Server::start_secured(&dir, &[]).await;
    let worker = server
        .mint(&admin, json!({"name": "rs", "role": "worker", "namespaces": ["default"], "resources": ["queue:emails"]}))
        .await;
    let client = Client::new(&server.url).unwrap().with_token(&admin);
    let jobs: Vec<JobSpec> = (0..5)
        .map(|n| JobSpec::new(json!({"to": format!("user{n}@example.com")})))
        .collect();
    client
        .enqueue_many("default", "emails", &jobs)
        .await
        .unwrap();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let output = tokio::process::Command::new(target.join("debug/examples/worker"))
        .args([&server.url, "emails", "5"])
        .env("KEEL_TOKEN", worker["token"].as_str().unwrap())
        .output()
        .await
        .expect("the example runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = client.queue_stats("default", "emails").await.unwrap();
    assert_eq!(stats.count(JobState::Succeeded), 5, "{stats:?}");
}
