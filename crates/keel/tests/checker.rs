//! The events checker: publishers, pulled consumers that crash (leave a
//! fetch uncommitted, so it times out and goes out again) and a server
//! killed with -9 in the middle, then a verdict for the subscription:
//! - no acknowledged event lost: every one is committed in the end (or was
//!   fetched, then in a commit that the kill left without an answer: that
//!   commit may have landed, and then the event rightly never returns);
//! - none out of order within its key: when an event is handed out, every
//!   earlier event of its key is committed (or being committed), or comes
//!   before it in the same fetch;
//! - duplicates only of events not yet committed: no event is handed out
//!   again once its commit was acknowledged.
//!
//! Run on the embedded store and on three PostgreSQL nodes.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use common::Server;
use keel_store_postgres::testing::TestSchema;
use serde_json::{Value, json};

const KEYS: usize = 12;
const PER_PUBLISHER: usize = 120;
const PUBLISHERS: usize = 3;
const CONSUMERS: usize = 3;

/// What the consumers saw and did, shared by all of them.
#[derive(Default)]
struct Ledger {
    /// Commits sent (possibly not yet acknowledged).
    committing: BTreeSet<u64>,
    /// Commits acknowledged.
    committed: BTreeSet<u64>,
    /// Commits that got no answer at all (the server died with them in
    /// flight): they may have landed, and then rightly never come back.
    unanswered: BTreeSet<u64>,
    /// Each event's key, by seq.
    keys: HashMap<u64, String>,
    violations: Vec<String>,
    deliveries: usize,
}

impl Ledger {
    fn handed_out(&mut self, batch: &[(u64, String)]) {
        for (i, (seq, key)) in batch.iter().enumerate() {
            self.deliveries += 1;
            self.keys.insert(*seq, key.clone());
            if self.committed.contains(seq) {
                self.violations
                    .push(format!("seq {seq} handed out again after its commit"));
            }
            let earlier_in_batch: BTreeSet<u64> = batch[..i]
                .iter()
                .filter(|(_, k)| k == key)
                .map(|(s, _)| *s)
                .collect();
            let pending: Vec<u64> = self
                .keys
                .iter()
                .filter(|(s, k)| **s < *seq && *k == key)
                .map(|(s, _)| *s)
                .filter(|s| !self.committing.contains(s) && !earlier_in_batch.contains(s))
                .collect();
            if !pending.is_empty() {
                self.violations.push(format!(
                    "seq {seq} of key {key} handed out before {pending:?}"
                ));
            }
        }
    }
}

/// The servers the consumers and publishers talk to; a slot is swapped when
/// its server restarts.
type Urls = Arc<RwLock<Vec<String>>>;

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Option<Value> {
    let answer = http.post(url).json(body).send().await.ok()?;
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.ok()?;
    assert_ne!(status, 500, "{body}");
    (status < 300).then_some(body)
}

/// A consumer: fetch, then (one fetch in five) "crash" by dropping it, else
/// commit; until told to stop.
async fn consume(id: usize, urls: Urls, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    let consumer = format!("c{id}");
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let base = {
            let urls = urls.read().unwrap();
            urls[(id + n) % urls.len()].clone()
        };
        n += 1;
        let sub = format!("{base}/v1/namespaces/default/subscriptions/check");
        let fetch = json!({"consumer": consumer, "max_events": 20, "wait_ms": 500});
        let Some(fetched) = post(&http, &format!("{sub}/fetch"), &fetch).await else {
            tokio::time::sleep(Duration::from_millis(50)).await; // the server is restarting
            continue;
        };
        let batch: Vec<(u64, String)> = fetched["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap(),
                    e["key"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        ledger.lock().unwrap().handed_out(&batch);
        if n.is_multiple_of(5) {
            continue; // crashed: these go out again after the consumer timeout
        }
        ledger
            .lock()
            .unwrap()
            .committing
            .extend(batch.iter().map(|(s, _)| *s));
        let commit = json!({"consumer": consumer, "cursor": fetched["cursor"]});
        let answer = http
            .post(format!("{sub}/commit"))
            .json(&commit)
            .send()
            .await;
        let mut ledger = ledger.lock().unwrap();
        let seqs = batch.iter().map(|(s, _)| *s);
        match answer.map(|a| a.status().as_u16()) {
            Ok(status) if status < 300 => ledger.committed.extend(seqs),
            Ok(status) => {
                assert_ne!(status, 500, "a commit answered 500");
                for seq in seqs {
                    if !ledger.committed.contains(&seq) {
                        ledger.committing.remove(&seq);
                    }
                }
            }
            Err(_) => ledger.unanswered.extend(seqs),
        }
    }
}

/// Publishes `PER_PUBLISHER` events one at a time, keyed round-robin, each
/// retried under its id until acknowledged (the dedup window makes a retry
/// of a publish that did land a no-op); their seqs.
async fn publish(p: usize, urls: Urls) -> Vec<u64> {
    let http = reqwest::Client::new();
    let mut acked = Vec::new();
    for i in 0..PER_PUBLISHER {
        let event = json!({"id": format!("p{p}-{i}"), "key": format!("k{}", (p * 7 + i) % KEYS), "data": i});
        for attempt in 0.. {
            let base = {
                let urls = urls.read().unwrap();
                urls[(p + i + attempt) % urls.len()].clone()
            };
            let url = format!("{base}/v1/namespaces/default/topics/checked/events");
            if let Some(answer) = post(&http, &url, &event).await {
                acked.push(answer["seq"].as_u64().unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // the server is restarting
        }
    }
    acked
}

/// Runs publishers and consumers over `urls`; `crash` kills and restarts a
/// server halfway (it gets the URLs to update). Then checks the verdict.
async fn check(urls: Urls, crash: impl std::future::Future<Output = ()>) {
    let first = urls.read().unwrap()[0].clone();
    let http = reqwest::Client::new();
    let answer = http
        .put(format!("{first}/v1/namespaces/default/subscriptions/check"))
        .json(&json!({"topic": "checked", "start": "earliest", "consumer_timeout_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|id| tokio::spawn(consume(id, urls.clone(), ledger.clone(), stop.clone())))
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| tokio::spawn(publish(p, urls.clone())))
        .collect();
    crash.await;
    let mut acked = BTreeSet::new();
    for publisher in publishers {
        acked.extend(publisher.await.unwrap());
    }
    assert!(
        acked.len() >= PUBLISHERS * PER_PUBLISHER / 2,
        "most publishes are acknowledged"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<u64> = {
            let ledger = ledger.lock().unwrap();
            acked
                .difference(&ledger.committed)
                .filter(|seq| !ledger.unanswered.contains(seq))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged events never committed: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for consumer in consumers {
        consumer.await.unwrap();
    }
    let ledger = ledger.lock().unwrap();
    assert!(ledger.violations.is_empty(), "{:#?}", ledger.violations);
    assert!(
        ledger.deliveries > acked.len(),
        "crashed consumers made redeliveries ({} deliveries of {} events)",
        ledger.deliveries,
        acked.len()
    );
    let per_key: BTreeMap<&String, usize> =
        ledger.keys.values().fold(BTreeMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        });
    assert_eq!(per_key.len(), KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_store_passes_the_checker_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let urls: Urls = Arc::new(RwLock::new(vec![server.url.clone()]));
    let server = Arc::new(tokio::sync::Mutex::new(server));
    let crash = {
        let (server, urls, dir_path) = (server.clone(), urls.clone(), dir.path().to_owned());
        async move {
            let mut server = server.lock().await;
            server
                .wait_for_gauge("keel_events_published_total", 150.0)
                .await;
            server.kill9().await;
            *server = Server::start_in(&dir_path, &[]).await;
            urls.write().unwrap()[0] = server.url.clone();
        }
    };
    check(urls, crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_postgresql_nodes_pass_the_checker_across_kill_9() {
    let schema = TestSchema::create("keel_checker").await.unwrap();
    let url = schema.url();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start_with(&["--database-url", &url]).await);
    }
    let urls: Urls = Arc::new(RwLock::new(nodes.iter().map(|n| n.url.clone()).collect()));
    let victim = Arc::new(tokio::sync::Mutex::new(nodes.remove(1)));
    let crash = {
        let (victim, urls, url) = (victim.clone(), urls.clone(), url.clone());
        async move {
            let mut node = victim.lock().await;
            node.wait_for_gauge("keel_events_published_total", 50.0)
                .await;
            node.kill9().await;
            *node = Server::start_with(&["--database-url", &url]).await;
            urls.write().unwrap()[1] = node.url.clone();
        }
    };
    check(urls, crash).await;
    drop(nodes);
}
