//! Concurrency: many workers leasing at once never receive the same job in
//! the same attempt, and every job is handed out exactly once.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::HashSet;

use common::Server;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_leases_never_share_a_job() {
    const JOBS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    for chunk in 0..JOBS / 1000 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| json!({"payload": chunk * 1000 + i}))
            .collect();
        let (status, _) = server
            .post(
                "/namespaces/default/queues/race/jobs",
                json!({"jobs": batch}),
            )
            .await;
        assert_eq!(status, 201);
    }

    let mut workers = Vec::new();
    for w in 0..16u64 {
        let lease_url = server.v1("/namespaces/default/queues/race/lease");
        let acks_url = server.v1("/namespaces/default/acks");
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut got: Vec<(String, u64)> = Vec::new();
            loop {
                let max_jobs = 1 + (w * 7 + got.len() as u64) % 25;
                let answer: Value = http
                    .post(&lease_url)
                    .json(&json!({"worker_id": format!("w{w}"), "max_jobs": max_jobs, "lease_ms": 120000}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let jobs = answer["jobs"].as_array().unwrap();
                if jobs.is_empty() {
                    return got;
                }
                let complete: Vec<Value> = jobs.iter().map(|j| json!({"id": j["id"], "lease_token": j["lease_token"]})).collect();
                let acked: Value = http.post(&acks_url).json(&json!({"complete": complete})).send().await.unwrap().json().await.unwrap();
                for status in acked["complete"].as_array().unwrap() {
                    assert_eq!(status["status"], 200, "{status}");
                }
                got.extend(jobs.iter().map(|j| (j["id"].as_str().unwrap().to_owned(), j["attempt"].as_u64().unwrap())));
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: HashSet<&(String, u64)> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a job was handed out twice in one attempt"
    );
    assert_eq!(all.len(), JOBS, "every job handed out exactly once");
    let (_, stats) = server.get("/namespaces/default/queues/race").await;
    assert_eq!(stats["counts"]["succeeded"], JOBS);
    assert_eq!(stats["counts"]["leased"], 0);
}
