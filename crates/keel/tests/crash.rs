//! Durability: every acknowledged write survives kill -9.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::HashSet;

use common::Server;
use serde_json::json;
use tokio::sync::mpsc;

/// Enqueues from many connections at once, kills the server with SIGKILL in
/// the middle of the stream, restarts it on the same data directory and
/// checks that every job whose enqueue was answered 201 is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]).await;

    let done_id = server.enqueue("crash", json!({"payload": "done"})).await;
    let leased = server
        .lease("crash", json!({"max_jobs": 1, "lease_ms": 1000}))
        .await;
    let done_token = leased[0]["lease_token"].as_str().unwrap().to_owned();
    let (status, _) = server
        .post(
            &format!("/namespaces/default/jobs/{done_id}/complete"),
            json!({"lease_token": done_token}),
        )
        .await;
    assert_eq!(status, 200);
    let held_id = server.enqueue("crash", json!({"payload": "held"})).await;
    let held = server
        .lease("crash", json!({"max_jobs": 1, "lease_ms": 3000}))
        .await;
    assert_eq!(held[0]["id"], held_id.as_str());
    let held_expiry = held[0]["lease_expires_at"].clone();

    let (acked_tx, mut acked_rx) = mpsc::unbounded_channel::<String>();
    let url = server.v1("/namespaces/default/queues/crash/jobs");
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (url, acked) = (url.clone(), acked_tx.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let body = if i % 10 == 0 {
                    json!({"jobs": (0..10).map(|k| json!({"payload": [writer, i, k]})).collect::<Vec<_>>()})
                } else {
                    json!({"payload": [writer, i]})
                };
                let Ok(resp) = http.post(&url).json(&body).send().await else { return };
                if resp.status() != 201 {
                    return;
                }
                let Ok(answer) = resp.json::<serde_json::Value>().await else { return };
                let ids = match answer["jobs"].as_array() {
                    Some(jobs) => jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect(),
                    None => vec![answer["id"].as_str().unwrap().to_owned()],
                };
                for id in ids {
                    let _ = acked.send(id);
                }
            }
        }));
    }
    drop(acked_tx);

    let mut acked = HashSet::new();
    while acked.len() < 3000 {
        acked.insert(acked_rx.recv().await.expect("the writers are running"));
    }
    server.kill9().await;
    for w in writers {
        w.await.unwrap();
    }
    while let Some(id) = acked_rx.recv().await {
        acked.insert(id);
    }

    let server = Server::start_in(dir.path(), &[]).await;
    let found: HashSet<String> = server.list_all("crash").await.into_iter().collect();
    let lost: Vec<&String> = acked.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged jobs lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );

    assert_eq!(
        server.job(&done_id).await["state"],
        "succeeded",
        "an acknowledged completion survives"
    );
    // The lease survived: either it is still held, with its exact expiry, or it
    // ran out (the stream can outlast it on a loaded machine) and was reclaimed
    // as a failed attempt; never silently dropped.
    let held = server.job(&held_id).await;
    match held["state"].as_str() {
        Some("leased") => assert_eq!(
            held["lease_expires_at"], held_expiry,
            "the lease survives as it was"
        ),
        Some("ready") => assert_eq!(held["errors"][0]["message"], "lease expired", "{held}"),
        other => panic!("the held job is {other:?}: {held}"),
    }
    assert_eq!(held["attempt"], 1);
    // After its lease runs out, the held job is leased again (queued behind the
    // stream's jobs, so take them all).
    let mut back = false;
    while !back {
        let jobs = server
            .lease(
                "crash",
                json!({"max_jobs": 1000, "wait_ms": 20000, "lease_ms": 60000}),
            )
            .await;
        assert!(
            !jobs.is_empty(),
            "the held job came back before the long-poll timed out"
        );
        back = jobs
            .iter()
            .any(|j| j["id"] == held_id.as_str() && j["attempt"] == 2);
    }
}
