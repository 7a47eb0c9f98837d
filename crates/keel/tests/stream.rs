//! Worker streams (`GET .../queues/{queue}/stream`, a WebSocket) against the
//! real server: credit bounds what is pushed, acks are answered per item,
//! tokens are checked at the upgrade and again while the stream lives, and
//! a streamed worker survives a kill -9 of the server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed check"
)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use keel_client::{
    AckItem, Client, JobSpec, JobState, LeasedJob, StreamJobs, Worker, WorkerOptions,
};
use serde_json::json;
use tokio::sync::Notify;

/// The next `n` jobs the stream pushes.
async fn take(jobs: &mut StreamJobs, n: usize) -> Vec<LeasedJob> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(20), jobs.next())
            .await
            .expect("jobs pushed in time")
            .unwrap();
        got.extend(batch);
    }
    assert_eq!(got.len(), n, "no more than the credit");
    got
}

#[tokio::test]
async fn credit_bounds_the_jobs_pushed_and_acks_are_answered_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let client = Client::new(&server.url).unwrap();
    let jobs: Vec<JobSpec> = (0..5).map(|n| JobSpec::new(json!(n))).collect();
    client.enqueue_many("default", "s", &jobs).await.unwrap();

    let (stream, mut pushed) = client
        .stream("default", "s", "w1", Some(30_000))
        .await
        .unwrap();
    stream.grant(3).unwrap();
    let first = take(&mut pushed, 3).await;
    let stats = client.queue_stats("default", "s").await.unwrap();
    assert_eq!(
        (stats.count(JobState::Leased), stats.count(JobState::Ready)),
        (3, 2),
        "only the credit's worth is leased: {stats:?}"
    );

    let answer = stream
        .acks(
            vec![
                json!({"id": first[0].id, "lease_token": first[0].lease_token, "result": "ok"}),
                json!({"id": first[1].id, "lease_token": "not-a-token"}),
            ],
            vec![json!({"id": first[2].id, "lease_token": first[2].lease_token, "retry": false})],
        )
        .await
        .unwrap();
    assert!(
        matches!(
            &answer.complete[0],
            AckItem::Done {
                state: JobState::Succeeded,
                ..
            }
        ),
        "{answer:?}"
    );
    assert!(
        matches!(&answer.complete[1], AckItem::Refused { status: 400, .. }),
        "a bad item fails alone: {answer:?}"
    );
    assert!(
        matches!(
            &answer.fail[0],
            AckItem::Done {
                state: JobState::Dead,
                ..
            }
        ),
        "{answer:?}"
    );

    stream.grant(2).unwrap();
    let rest = take(&mut pushed, 2).await;
    let ids: HashSet<_> = first.iter().chain(&rest).map(|j| j.id).collect();
    assert_eq!(ids.len(), 5, "every job once");
    let stats = client.queue_stats("default", "s").await.unwrap();
    assert_eq!(
        (
            stats.count(JobState::Succeeded),
            stats.count(JobState::Dead),
            stats.count(JobState::Leased)
        ),
        (1, 1, 3),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_stream_needs_a_websocket_and_a_live_worker_token() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = Server::start_secured(&dir, &[]).await;
    let path = "/v1/namespaces/default/queues/s/stream";
    let (status, body) = server.call_as(Some(&admin), "GET", path, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    let anonymous = Client::new(&server.url).unwrap();
    let refused = anonymous
        .stream("default", "s", "w", None)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Some("unauthenticated"), "{refused}");

    let reader = server
        .mint(
            &admin,
            json!({"name": "r", "role": "reader", "namespaces": ["default"]}),
        )
        .await;
    let as_reader = Client::new(&server.url)
        .unwrap()
        .with_token(reader["token"].as_str().unwrap());
    let refused = as_reader
        .stream("default", "s", "w", None)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Some("forbidden"), "{refused}");

    let worker = server
        .mint(
            &admin,
            json!({"name": "w", "role": "worker", "namespaces": ["default"]}),
        )
        .await;
    let as_worker = Client::new(&server.url)
        .unwrap()
        .with_token(worker["token"].as_str().unwrap());
    let (stream, mut pushed) = as_worker.stream("default", "s", "w", None).await.unwrap();
    let (status, _) = server
        .call_as(
            Some(&admin),
            "DELETE",
            &format!("/v1/tokens/{}", worker["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // The next lease checks the token again and ends the stream.
    stream.grant(1).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), pushed.next())
        .await
        .expect("the stream ended in time")
        .err()
        .unwrap();
    assert_eq!(ended.code(), Some("unauthenticated"), "{ended}");
}

/// A streamed worker keeps going through a kill -9 of the server: it
/// reconnects to the restarted server, and every job, acknowledged before
/// the kill or after, ends succeeded (one whose ack the kill lost runs again
/// after its lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_worker_reconnects_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let listen = common::free_address();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let args = ["--listen", listen.as_str(), "--data-dir", data_dir.as_str()];
    let mut server = Server::start_with(&args).await;
    let client = Client::new(&server.url).unwrap();
    let batch =
        |from: u32| -> Vec<JobSpec> { (from..from + 50).map(|n| JobSpec::new(json!(n))).collect() };
    client
        .enqueue_many("default", "k", &batch(0))
        .await
        .unwrap();

    let seen: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let (first_half, all) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (s, h, a) = (seen.clone(), first_half.clone(), all.clone());
    let handler = move |job: LeasedJob| {
        let (s, h, a) = (s.clone(), h.clone(), a.clone());
        async move {
            let mut seen = s.lock().unwrap();
            seen.insert(job.payload.as_u64().unwrap());
            match seen.len() {
                50 => h.notify_one(),
                100 => a.notify_one(),
                _ => {}
            }
            Ok(json!(null))
        }
    };
    let mut options = WorkerOptions::new("default", "k");
    options.concurrency = 4;
    options.lease_ms = 1000;
    let done = all.clone();
    let worker = tokio::spawn(
        Worker::new(client.clone(), options).run(handler, async move { done.notified().await }),
    );
    first_half.notified().await;
    server.kill9().await;
    let server = Server::start_with(&args).await;
    client
        .enqueue_many("default", "k", &batch(50))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the worker saw all 100 jobs and drained")
        .unwrap();
    let mut stats = client.queue_stats("default", "k").await.unwrap();
    // A job whose ack the kill lost comes back after its 1 s lease; the
    // worker (stopped) no longer takes it, so take it here.
    while stats.count(JobState::Succeeded) < 100 {
        let leased = client
            .lease("default", "k", "t", 100, 5_000, None)
            .await
            .unwrap();
        for job in &leased {
            client.complete("default", job, json!(null)).await.unwrap();
        }
        stats = client.queue_stats("default", "k").await.unwrap();
        assert!(
            !leased.is_empty() || stats.count(JobState::Succeeded) == 100,
            "{stats:?}"
        );
    }
    assert_eq!(stats.count(JobState::Succeeded), 100, "{stats:?}");
    drop(server);
}
