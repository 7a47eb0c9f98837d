//! Subscriptions end to end: events become jobs (filtered, templated,
//! ordered per key) and runs, pulled consumers fetch and commit, fan-out,
//! the errors of the contract, and exactly-once hand-off across kill -9.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::BTreeMap;

use common::{Server, assert_error};
use serde_json::{Value, json};

const EVENTS: &str = "/namespaces/default/topics/orders/events";

fn sub(name: &str) -> String {
    format!("/namespaces/default/subscriptions/{name}")
}

async fn put(server: &Server, name: &str, body: Value) -> Value {
    let (status, answer) = server.call("PUT", &sub(name), Some(body)).await;
    assert!(status == 201 || status == 200, "{status} {answer}");
    answer
}

/// Stores a workflow definition written in YAML; the status and answer.
async fn put_workflow(server: &Server, name: &str, yaml: &str) -> (u16, Value) {
    server
        .send(
            "PUT",
            &format!("/namespaces/default/workflows/{name}"),
            &[("content-type", "application/yaml")],
            yaml.as_bytes().to_vec(),
        )
        .await
}

/// Leases every job on `queue` that arrives within a few long-polls, in
/// the order they are handed out, completing each.
async fn drain(server: &Server, queue: &str, expected: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < expected {
        let jobs = server
            .lease(
                queue,
                json!({"max_jobs": 50, "wait_ms": 10000, "lease_ms": 60000}),
            )
            .await;
        assert!(
            !jobs.is_empty(),
            "only {} of {expected} jobs arrived",
            got.len()
        );
        let complete: Vec<Value> = jobs
            .iter()
            .map(|j| json!({"id": j["id"], "lease_token": j["lease_token"]}))
            .collect();
        let (status, _) = server
            .post("/namespaces/default/acks", json!({"complete": complete}))
            .await;
        assert_eq!(status, 200);
        got.extend(jobs);
    }
    got
}

#[tokio::test]
async fn events_become_jobs_filtered_templated_and_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let created = put(
        &server,
        "billing",
        json!({
            "topic": "orders",
            "filter": {"types": ["order.*"], "if": "event.data.total > 100"},
            "start": "earliest",
            "target": {"queue": "billing",
                       "job": {"payload": {"order": "${{ event.data.id }}", "key": "${{ event.key }}"},
                               "max_attempts": 20, "priority": 5}}
        }),
    )
    .await;
    assert_eq!(created["status"], "active");
    // The deprecated shape (`payload` beside `job`) is still read, and
    // written back in the one shape a schedule's job target has too.
    let old = put(
        &server,
        "old-shape",
        json!({"topic": "orders", "target": {"queue": "elsewhere", "payload": {"a": 1}, "job": {"priority": 5}}}),
    )
    .await;
    assert_eq!(
        old["target"],
        json!({"queue": "elsewhere", "job": {"payload": {"a": 1}, "priority": 5}})
    );
    assert_eq!(created["position"], 0);
    let mut events = Vec::new();
    for i in 0..60 {
        let key = format!("customer-{}", i % 3);
        let kind = if i % 10 == 9 {
            "invoice.sent"
        } else {
            "order.created"
        };
        let total = if i % 7 == 6 { 50 } else { 150 };
        events.push(json!({"type": kind, "key": key, "data": {"id": i, "total": total}}));
    }
    let (status, _) = server.post(EVENTS, json!({"events": events})).await;
    assert_eq!(status, 201);
    let wanted: Vec<i64> = (0..60).filter(|i| i % 10 != 9 && i % 7 != 6).collect();
    let jobs = drain(&server, "billing", wanted.len()).await;
    // Regression: a subscription's jobs skipped the job service's counting.
    assert_eq!(
        server
            .metric("keel_jobs_enqueued_total", "queue=\"billing\"")
            .await,
        wanted.len() as f64
    );
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for job in &jobs {
        let key = job["payload"]["key"].as_str().unwrap().to_owned();
        assert_eq!(job["tags"]["keel.subscription"], "billing");
        assert_eq!(job["tags"]["keel.topic"], "orders");
        assert_eq!(job["max_attempts"], 20);
        per_key
            .entry(key)
            .or_default()
            .push(job["payload"]["order"].as_i64().unwrap());
    }
    for (key, orders) in &per_key {
        let mut sorted = orders.clone();
        sorted.sort_unstable();
        assert_eq!(orders, &sorted, "jobs of {key} out of publish order");
    }
    let mut all: Vec<i64> = per_key.into_values().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, wanted, "every wanted event once, no other");
    let (_, status) = server.get(&sub("billing")).await;
    assert_eq!(
        (status["position"].as_u64(), status["lag"].as_u64()),
        (Some(60), Some(0))
    );
    assert_eq!(status["delivered"].as_u64(), Some(wanted.len() as u64));
    let one = &server.job(jobs[0]["id"].as_str().unwrap()).await;
    assert_eq!(
        one["ordering_key"]
            .as_str()
            .map(|k| k.starts_with("customer-")),
        Some(true)
    );
}

#[tokio::test]
async fn an_event_starts_a_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]).await;
    let definition = "name: greet\nsteps:\n  pause: { sleep: { duration_ms: 1 } }\noutput: '${{ input.data.who }}'\n";
    let (status, _) = put_workflow(&server, "greet", definition).await;
    assert_eq!(status, 201);
    put(
        &server,
        "greeter",
        json!({"topic": "people", "target": {"workflow": "greet"}}),
    )
    .await;
    let (status, _) = server
        .post(
            "/namespaces/default/topics/people/events",
            json!({"type": "person.joined", "data": {"who": "ada"}}),
        )
        .await;
    assert_eq!(status, 201);
    let run = loop {
        let (_, page) = server.get("/namespaces/default/runs?workflow=greet").await;
        if let Some(run) = page["runs"].as_array().unwrap().first() {
            break run.clone();
        }
        server
            .wait_for_gauge("keel_events_delivered_total", 1.0)
            .await;
    };
    let id = run["id"].as_str().unwrap();
    let (_, done) = server
        .get(&format!("/namespaces/default/runs/{id}?wait_ms=10000"))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], "ada");
    assert_eq!(done["input"]["type"], "person.joined");
    server.kill9().await;
    let server = Server::start(&dir, &[]).await;
    let (_, status) = server.get(&sub("greeter")).await;
    assert_eq!(status["position"], 1);
    let (_, page) = server.get("/namespaces/default/runs?workflow=greet").await;
    assert_eq!(
        page["runs"].as_array().unwrap().len(),
        1,
        "one event, one run"
    );
}

#[tokio::test]
async fn pulled_consumers_fetch_wait_and_commit_and_every_subscription_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    put(&server, "audit", json!({"topic": "orders"})).await;
    put(
        &server,
        "stats",
        json!({"topic": "orders", "filter": {"types": ["order.paid"]}}),
    )
    .await;
    let url = server.v1(&format!("{}/fetch", sub("audit")));
    let waiting = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"consumer": "c1", "max_events": 10, "wait_ms": 30000}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    server.wait_for_gauge("keel_event_waiters", 1.0).await;
    server
        .post(
            EVENTS,
            json!({"events": [
                {"type": "order.created", "key": "a", "data": 1},
                {"type": "order.paid", "key": "a", "data": 2}
            ]}),
        )
        .await;
    let fetched = waiting.await.unwrap();
    let seqs: Vec<u64> = fetched["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2], "woken by the publish: {fetched}");
    let (status, _) = server
        .post(
            &format!("{}/commit", sub("audit")),
            json!({"consumer": "c1", "cursor": fetched["cursor"]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, audit) = server.get(&sub("audit")).await;
    assert_eq!(
        (audit["position"].as_u64(), audit["lag"].as_u64()),
        (Some(2), Some(0))
    );
    let (_, stats) = server
        .post(&format!("{}/fetch", sub("stats")), json!({"consumer": "s"}))
        .await;
    assert_eq!(stats["events"].as_array().unwrap().len(), 1);
    assert_eq!(stats["events"][0]["type"], "order.paid");

    assert_error(
        &server
            .post(
                &format!("{}/commit", sub("audit")),
                json!({"consumer": "c1", "cursor": "nope"}),
            )
            .await,
        409,
        "cursor_stale",
    );
    let (_, replay) = server
        .post(&format!("{}/seek", sub("audit")), json!({"seq": 1}))
        .await;
    assert_eq!(replay["position"], 0);
    let (_, again) = server
        .post(
            &format!("{}/fetch", sub("audit")),
            json!({"consumer": "c2"}),
        )
        .await;
    assert_eq!(again["events"].as_array().unwrap().len(), 2, "replayed");
    let (_, list) = server
        .get("/namespaces/default/subscriptions?topic=orders")
        .await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 2);
    let (_, dry) = server
        .post(
            "/namespaces/default/topics/orders/match",
            json!({"filter": {"types": ["order.paid"]}}),
        )
        .await;
    assert_eq!(
        (dry["matched"].as_u64(), dry["scanned"].as_u64()),
        (Some(1), Some(2))
    );
    let (_, paused) = server
        .post(&format!("{}/pause", sub("stats")), json!({}))
        .await;
    assert_eq!(paused["status"], "paused");
    let (status, _) = server.call("DELETE", &sub("stats"), None).await;
    assert_eq!(status, 204);
    assert_error(&server.get(&sub("stats")).await, 404, "not_found");
}

#[tokio::test]
async fn the_contract_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    put(
        &server,
        "jobs",
        json!({"topic": "orders", "target": {"queue": "work"}}),
    )
    .await;
    assert_error(
        &server
            .post(&format!("{}/fetch", sub("jobs")), json!({"consumer": "c"}))
            .await,
        409,
        "has_target",
    );
    assert_error(
        &server
            .call("PUT", &sub("jobs"), Some(json!({"topic": "other"})))
            .await,
        409,
        "conflict",
    );
    assert_error(
        &server
            .call(
                "PUT",
                &sub("bad"),
                Some(json!({"topic": "orders", "filter": {"if": "input.x"}})),
            )
            .await,
        400,
        "invalid_request",
    );
    assert_error(
        &server
            .call(
                "PUT",
                &sub("bad"),
                Some(
                    json!({"topic": "orders", "target": {"queue": "q", "job": {"priority": 1000}}}),
                ),
            )
            .await,
        400,
        "invalid_request",
    );
    assert_error(
        &server
            .call(
                "PUT",
                &sub("bad"),
                Some(json!({"topic": "orders", "consumer_timeout_ms": 5})),
            )
            .await,
        400,
        "invalid_request",
    );
    assert_error(&server.get(&sub("nope")).await, 404, "not_found");
    assert_error(&server.get(&sub("bad%20name")).await, 400, "invalid_name");
}

#[tokio::test]
async fn hand_offs_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]).await;
    put(
        &server,
        "copy",
        json!({"topic": "orders", "target": {"queue": "copies"}}),
    )
    .await;
    for batch in 0..10 {
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"id": format!("e{}", batch * 50 + i), "data": batch * 50 + i}))
            .collect();
        let (status, _) = server.post(EVENTS, json!({"events": events})).await;
        assert_eq!(status, 201);
    }
    server.kill9().await;
    let server = Server::start(&dir, &[]).await;
    let jobs = drain(&server, "copies", 500).await;
    let mut seen: Vec<i64> = jobs
        .iter()
        .map(|j| j["payload"]["data"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..500).collect::<Vec<i64>>(), "each event once");
    let (_, status) = server.get(&sub("copy")).await;
    assert_eq!(
        (status["position"].as_u64(), status["delivered"].as_u64()),
        (Some(500), Some(500))
    );
    assert_eq!(server.list_all("copies").await.len(), 500);
}

#[tokio::test]
async fn a_workflow_waits_for_the_first_matching_event_published_after_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let definition = "name: settle\nsteps:\n  paid:\n    wait_for: { event: { topic: payments, if: 'event.data.order == input.order' }, timeout_ms: 60000 }\noutput: '${{ steps.paid.output }}'\n";
    let (status, answer) = put_workflow(&server, "settle", definition).await;
    assert_eq!(status, 201, "{answer}");
    let payments = "/namespaces/default/topics/payments/events";
    // Published before the run started: it does not count.
    server.post(payments, json!({"data": {"order": 7}})).await;
    let (status, run) = server
        .post(
            "/namespaces/default/workflows/settle/runs",
            json!({"input": {"order": 7}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["steps"]["paid"]["state"], "waiting");
    let id = run["id"].as_str().unwrap().to_owned();
    server.post(payments, json!({"data": {"order": 3}})).await;
    server
        .post(payments, json!({"type": "paid", "data": {"order": 7}}))
        .await;
    let (_, done) = server
        .get(&format!("/namespaces/default/runs/{id}?wait_ms=10000"))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"]["seq"], 3, "{done}");
    assert_eq!(done["output"]["type"], "paid");

    let bad =
        "name: bad\nsteps:\n  w: { wait_for: { event: { topic: payments, if: 'nope.x' } } }\n";
    let (status, answer) = put_workflow(&server, "bad", bad).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_definition"))
    );
}
