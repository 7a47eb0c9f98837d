//! "Why is this waiting?": `GET .../jobs/{id}` of a scheduled or ready job
//! lists every gate that holds it — not due yet, paused queue, the queue's
//! concurrency bound, an earlier job of its ordering key, no worker — and
//! the CLI says it in words. A typo in a queue policy is refused, not
//! ignored (it would leave the queue unlimited).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::Server;
use serde_json::{Value, json};

fn gates(job: &Value) -> Vec<&str> {
    job["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gate"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_waiting_job_says_what_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let (status, body) = server
        .call(
            "PUT",
            "/namespaces/default/queues/work",
            Some(json!({"max_concurrency": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let later = server
        .enqueue("work", json!({"payload": 1, "delay_ms": 600_000}))
        .await;
    let first = server
        .enqueue("work", json!({"payload": 2, "ordering_key": "acme"}))
        .await;
    let second = server
        .enqueue("work", json!({"payload": 3, "ordering_key": "acme"}))
        .await;
    let free = server.enqueue("work", json!({"payload": 4})).await;

    let job = server.job(&later).await;
    assert_eq!(gates(&job), ["scheduled", "no_worker"], "{job}");
    assert!(job["waiting"][0]["eligible_at"].is_string());

    // A worker parked in its long-poll is a worker.
    let parked = server.v1("/namespaces/default/queues/idle/lease");
    let poll = tokio::spawn(
        reqwest::Client::new()
            .post(parked)
            .json(&json!({"max_jobs": 1, "wait_ms": 10_000}))
            .send(),
    );
    let idle = server
        .enqueue("idle", json!({"payload": 0, "delay_ms": 600_000}))
        .await;
    server
        .wait_for_gauge_where("keel_lease_waiters", "queue=\"idle\"", 1.0)
        .await;
    assert_eq!(gates(&server.job(&idle).await), ["scheduled"]);
    poll.abort();

    let leased = server
        .lease("work", json!({"worker_id": "w", "max_jobs": 10}))
        .await;
    assert_eq!(leased.len(), 1, "the bound lets one out");
    assert_eq!(leased[0]["id"], first);
    let job = server.job(&second).await;
    assert_eq!(gates(&job), ["concurrency", "ordering_key"], "{job}");
    assert_eq!(job["waiting"][1]["blocking_job"], first);
    assert_eq!(job["waiting"][1]["key"], "acme");
    assert_eq!(
        (
            job["waiting"][0]["used"].as_u64(),
            job["waiting"][0]["limit"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        server.job(&first).await.get("waiting").is_none(),
        "a leased job waits on nothing"
    );

    let (status, _) = server
        .post("/namespaces/default/queues/work/pause", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(gates(&server.job(&free).await), ["paused", "concurrency"]);
    let (ok, out, err) = server.cli(&["jobs", "get", &free]).await;
    assert!(ok, "{err}");
    assert!(out.contains("waiting on:   the queue is paused"), "{out}");
    assert!(
        out.contains("waiting on:   concurrency: 1/1 leased"),
        "{out}"
    );

    let (status, _) = server
        .post("/namespaces/default/queues/work/resume", json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(
            &format!("/namespaces/default/jobs/{first}/complete"),
            json!({"lease_token": leased[0]["lease_token"]}),
        )
        .await;
    assert_eq!(status, 200);
    let job = server.job(&free).await;
    assert_eq!(job["waiting"], json!([]), "nothing holds it now: {job}");
}

/// A run's step whose task has not started says what holds its job.
#[tokio::test]
async fn a_run_shows_the_gates_of_its_waiting_step() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let definition = json!({"name": "w", "steps": {"work": {"task": {"queue": "nobody"}}}});
    let (status, body) = server
        .call("PUT", "/namespaces/default/workflows/w", Some(definition))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post("/namespaces/default/workflows/w/runs", json!({"input": {}}))
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap();
    let (_, run) = server.get(&format!("/namespaces/default/runs/{id}")).await;
    let step = &run["steps"]["work"];
    assert_eq!(step["state"], "running", "{run}");
    assert_eq!(step["waiting"], json!([{"gate": "no_worker"}]), "{run}");
}
