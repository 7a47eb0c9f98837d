//! Several `keel server` processes on one PostgreSQL database, as users scale
//! out. Each test has a schema of its own, dropped at the end. The server is
//! `KEEL_TEST_DATABASE_URL` (default: the local one on 127.0.0.1:5432).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

fn base_url() -> String {
    std::env::var("KEEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema for one test; its nodes' connections are ended and it is dropped
/// when the test ends.
struct Database {
    schema: String,
}

impl Database {
    async fn new() -> Self {
        let schema = format!("keel_nodes_{:016x}", rand_u64());
        let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        Database { schema }
    }

    fn url(&self) -> String {
        let separator = if base_url().contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{s}&application_name={s}",
            base_url(),
            s = self.schema
        )
    }

    async fn node(&self) -> Server {
        Server::start_with(&["--database-url", &self.url()]).await
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.schema.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await.unwrap();
                tokio::spawn(connection);
                client
                    .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&name])
                    .await
                    .unwrap();
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await.unwrap();
            });
        })
        .join();
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

async fn is_leader(node: &Server) -> bool {
    let text = reqwest::get(format!("{}/metrics", node.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .any(|l| l.starts_with("keel_maintenance_leader") && l.ends_with(" 1"))
}

/// The index of the one node that leads maintenance, once one does.
async fn leader(nodes: &[&Server]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut leaders = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if is_leader(node).await {
                leaders.push(i);
            }
        }
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let [one] = leaders[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_move_between_nodes_and_wake_them() {
    let db = Database::new().await;
    let (a, b, c) = (db.node().await, db.node().await, db.node().await);
    let batch: Vec<Value> = (0..30).map(|i| json!({"payload": i})).collect();
    let (status, _) = a
        .post(
            "/namespaces/default/queues/shared/jobs",
            json!({"jobs": batch}),
        )
        .await;
    assert_eq!(status, 201);
    let leased = b
        .lease("shared", json!({"max_jobs": 30, "lease_ms": 60000}))
        .await;
    assert_eq!(leased.len(), 30, "jobs enqueued on A are leased from B");
    let complete: Vec<Value> = leased
        .iter()
        .map(|j| json!({"id": j["id"], "lease_token": j["lease_token"]}))
        .collect();
    let (status, acked) = c
        .post("/namespaces/default/acks", json!({"complete": complete}))
        .await;
    assert_eq!(status, 200);
    assert!(
        acked["complete"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == 200),
        "and completed on C"
    );
    assert_eq!(
        a.get("/namespaces/default/queues/shared").await.1["counts"]["succeeded"],
        30
    );

    // A long-poll parked on B is woken by an enqueue on A (LISTEN/NOTIFY).
    let waiting = {
        let url = b.v1("/namespaces/default/queues/wake/lease");
        tokio::spawn(async move {
            let started = Instant::now();
            let answer: Value = reqwest::Client::new()
                .post(url)
                .json(&json!({"wait_ms": 30000}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.enqueue("wake", json!({"payload": "from A"})).await;
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer["jobs"][0]["payload"], "from A");
    assert!(
        waited < Duration::from_secs(20),
        "woken by the other node, not the timeout: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_loses_nothing_and_nothing_completes_twice() {
    let db = Database::new().await;
    let (a, mut b, c) = (db.node().await, db.node().await, db.node().await);
    let batch: Vec<Value> = (0..20).map(|i| json!({"payload": i})).collect();
    a.post(
        "/namespaces/default/queues/crash/jobs",
        json!({"jobs": batch}),
    )
    .await;
    let held = b
        .lease("crash", json!({"max_jobs": 10, "lease_ms": 1500}))
        .await;
    assert_eq!(held.len(), 10);
    b.kill9().await;

    // The other nodes get everything: the 10 free jobs at once, the 10 held by
    // the dead node after their lease runs out (and a leader reclaims them).
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut done = 0;
    while done < 20 {
        let jobs = c
            .lease(
                "crash",
                json!({"max_jobs": 20, "wait_ms": 20000, "lease_ms": 60000}),
            )
            .await;
        assert!(
            !jobs.is_empty(),
            "the dead node's jobs came back before the long-poll timed out"
        );
        for job in &jobs {
            assert!(seen.insert((
                job["id"].as_str().unwrap().to_owned(),
                job["attempt"].as_u64().unwrap()
            )));
            let (status, _) = a
                .post(
                    &format!(
                        "/namespaces/default/jobs/{}/complete",
                        job["id"].as_str().unwrap()
                    ),
                    json!({"lease_token": job["lease_token"]}),
                )
                .await;
            assert_eq!(status, 200);
            done += 1;
        }
    }
    let stats = c.get("/namespaces/default/queues/crash").await.1;
    assert_eq!(stats["counts"]["succeeded"], 20);
    let stale = &held[0];
    let answer = a
        .post(
            &format!(
                "/namespaces/default/jobs/{}/complete",
                stale["id"].as_str().unwrap()
            ),
            json!({"lease_token": stale["lease_token"]}),
        )
        .await;
    assert_eq!(
        answer.0, 409,
        "the dead node's lease cannot complete the job again: {}",
        answer.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_moves_to_another_node_when_the_leader_dies() {
    let db = Database::new().await;
    let mut nodes = vec![db.node().await, db.node().await, db.node().await];
    let first = leader(&nodes.iter().collect::<Vec<_>>()).await;
    let mut dead = nodes.remove(first);
    dead.kill9().await;
    let killed = Instant::now();
    let survivors: Vec<&Server> = nodes.iter().collect();
    let next = leader(&survivors).await;
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "a new leader within 5 s, took {:?}",
        killed.elapsed()
    );

    // The new leader promotes due jobs: a delayed job enqueued now is leasable.
    let other = survivors[1 - next];
    other
        .enqueue("later", json!({"payload": 1, "delay_ms": 200}))
        .await;
    let started = Instant::now();
    let jobs = other.lease("later", json!({"wait_ms": 20000})).await;
    assert_eq!(jobs.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "promoted in {:?}",
        started.elapsed()
    );
}
