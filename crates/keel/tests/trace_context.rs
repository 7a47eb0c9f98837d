//! W3C trace context carried through Keel in the default build (no `otel`):
//! a job enqueued with a `traceparent` header is leased with it, also after
//! a restart; a body's own context wins and a malformed one is refused; an
//! event published in a trace hands it to the jobs its subscription makes;
//! a run started in a trace hands it to every step's job and to its `http`
//! steps' calls; an endpoint receives it as the `traceparent` header. With `otel`, the
//! request's own server span takes the header's place (tests/otel.rs).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::receiver::Receiver;
use common::{Server, assert_error};
use serde_json::{Value, json};

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

async fn post_traced(s: &Server, path: &str, traceparent: &str, body: Value) -> (u16, Value) {
    s.send(
        "POST",
        path,
        &[
            ("traceparent", traceparent),
            ("content-type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await
}

async fn lease_one(s: &Server, queue: &str) -> Value {
    let jobs = s
        .lease(queue, json!({"max_jobs": 1, "wait_ms": 5000}))
        .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    jobs[0].clone()
}

#[tokio::test]
async fn jobs_keep_the_trace_they_were_enqueued_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir, &[]).await;
    let jobs = "/namespaces/default/queues/q/jobs";

    // The caller's header; a body's own context wins over it; a malformed
    // header is ignored (the specification's rule); none gives none.
    let (status, _) = post_traced(&s, jobs, CALLER, json!({"payload": 1})).await;
    assert_eq!(status, 201);
    let (status, _) = post_traced(
        &s,
        jobs,
        CALLER,
        json!({"jobs": [{"payload": 2, "traceparent": OTHER}, {"payload": 3}]}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = post_traced(&s, jobs, "00-zz-00-01", json!({"payload": 4})).await;
    assert_eq!(status, 201);
    let untraced = s.enqueue("q", json!({"payload": 5})).await;

    let leased = s.lease("q", json!({"max_jobs": 5, "wait_ms": 0})).await;
    let by_payload: Vec<(i64, Option<&str>)> = leased
        .iter()
        .map(|j| (j["payload"].as_i64().unwrap(), j["traceparent"].as_str()))
        .collect();
    assert_eq!(
        by_payload,
        [
            (1, Some(CALLER)),
            (2, Some(OTHER)),
            (3, Some(CALLER)),
            (4, None),
            (5, None)
        ]
    );
    assert!(leased[4].get("traceparent").is_none(), "absent, not null");

    // A malformed context in a body is the caller's mistake.
    for bad in [
        "00-abc",
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        assert_error(
            &s.post(jobs, json!({"payload": 1, "traceparent": bad}))
                .await,
            400,
            "invalid_request",
        );
    }

    // Stored with the job: read back by id, and after a restart.
    let first = leased[0]["id"].as_str().unwrap().to_owned();
    s.terminate().await;
    let s = Server::start(&dir, &[]).await;
    let (_, job) = s.get(&format!("/namespaces/default/jobs/{first}")).await;
    assert_eq!(job["traceparent"], CALLER);
    let (_, job) = s.get(&format!("/namespaces/default/jobs/{untraced}")).await;
    assert!(job.get("traceparent").is_none(), "{job}");
}

#[tokio::test]
async fn events_and_runs_hand_their_trace_to_the_jobs_they_make() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &[]).await;
    let (status, answer) = s
        .call(
            "PUT",
            "/namespaces/default/subscriptions/orders-to-billing",
            Some(json!({"topic": "orders", "target": {"queue": "billing"}})),
        )
        .await;
    assert!(status == 200 || status == 201, "{answer}");

    // An event published in a trace carries it as the CloudEvents
    // distributed-tracing attribute; one with its own keeps its own.
    let (status, _) = post_traced(
        &s,
        "/namespaces/default/topics/orders/events",
        CALLER,
        json!({"events": [{"id": "e1", "data": {"n": 1}}, {"id": "e2", "data": {"n": 2}, "headers": {"traceparent": OTHER}}]}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, page) = s.get("/namespaces/default/topics/orders/events").await;
    let carried: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["headers"]["traceparent"].as_str().unwrap())
        .collect();
    assert_eq!(carried, [CALLER, OTHER]);
    let first = lease_one(&s, "billing").await;
    let second = lease_one(&s, "billing").await;
    assert_eq!(
        (
            first["traceparent"].as_str(),
            second["traceparent"].as_str()
        ),
        (Some(CALLER), Some(OTHER))
    );
    // A malformed one is refused, not silently dropped.
    assert_error(
        &s.post(
            "/namespaces/default/topics/orders/events",
            json!({"data": 1, "headers": {"traceparent": "nope"}}),
        )
        .await,
        400,
        "invalid_request",
    );

    // A run started in a trace: each step's job carries it.
    let definition = json!({"name": "ship", "steps": {
        "pack": {"task": {"queue": "packing"}},
        "send": {"needs": ["pack"], "task": {"queue": "sending"}},
    }});
    let (status, _) = s
        .call(
            "PUT",
            "/namespaces/default/workflows/ship",
            Some(definition),
        )
        .await;
    assert!(status == 200 || status == 201);
    let (status, run) = post_traced(
        &s,
        "/namespaces/default/workflows/ship/runs",
        CALLER,
        json!({"input": {}}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let pack = lease_one(&s, "packing").await;
    assert_eq!(pack["traceparent"], CALLER);
    let (status, _) = s
        .post(
            &format!(
                "/namespaces/default/jobs/{}/complete",
                pack["id"].as_str().unwrap()
            ),
            json!({"lease_token": pack["lease_token"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(lease_one(&s, "sending").await["traceparent"], CALLER);
    // A body's context names the run's trace over the header's.
    let (status, _) = post_traced(
        &s,
        "/namespaces/default/workflows/ship/runs",
        CALLER,
        json!({"input": {}, "traceparent": OTHER}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(lease_one(&s, "packing").await["traceparent"], OTHER);
}

#[tokio::test]
async fn an_endpoint_receives_the_trace_of_the_event_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &["--allow-private-http"]).await;
    let mut rx = Receiver::start().await;
    let ns = "/namespaces/default";
    let (status, _) = s
        .call(
            "PUT",
            &format!("{ns}/endpoints/crm"),
            Some(json!({"url": rx.url})),
        )
        .await;
    assert!(status == 200 || status == 201);
    let (status, _) = s
        .call(
            "PUT",
            &format!("{ns}/subscriptions/to-crm"),
            Some(json!({"topic": "people", "target": {"endpoint": "crm"}})),
        )
        .await;
    assert!(status == 200 || status == 201);
    let events = format!("{ns}/topics/people/events");
    let (status, _) = post_traced(&s, &events, CALLER, json!({"id": "p1", "data": {}})).await;
    assert_eq!(status, 201);
    let got = rx.next().await;
    assert_eq!(got.id(), "p1");
    assert_eq!(
        got.headers.get("traceparent").map(String::as_str),
        Some(CALLER)
    );
    // An event published outside any trace is sent without one.
    let (status, _) = s.post(&events, json!({"id": "p2", "data": {}})).await;
    assert_eq!(status, 201);
    let got = rx.next().await;
    assert_eq!(got.id(), "p2");
    assert!(
        !got.headers.contains_key("traceparent"),
        "{:?}",
        got.headers
    );
}

#[tokio::test]
async fn a_runs_http_step_calls_in_the_runs_trace() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &["--allow-private-http"]).await;
    let mut rx = Receiver::start().await;
    let definition = json!({"name": "notify", "steps": {
        "call": {"http": {"method": "POST", "url": rx.url, "body": {"hello": 1}}},
    }});
    let (status, answer) = s
        .call(
            "PUT",
            "/namespaces/default/workflows/notify",
            Some(definition),
        )
        .await;
    assert!(status == 200 || status == 201, "{answer}");
    let (status, run) = post_traced(
        &s,
        "/namespaces/default/workflows/notify/runs",
        CALLER,
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let got = rx.next().await;
    assert_eq!(got.json(), json!({"hello": 1}));
    assert_eq!(
        got.headers.get("traceparent").map(String::as_str),
        Some(CALLER)
    );
}
