//! Endpoints end to end, against real HTTP receivers on loopback: signed
//! deliveries (Standard Webhooks, checked here with the documented
//! algorithm), retries on the schedule, 410 disabling with an event on
//! `keel.endpoints`, 429 with `Retry-After`, timeouts, a redirect to a
//! metadata address refused, secret rotation with both signatures valid,
//! per-key order, recover-since, push queues, the attempts log, and kill -9
//! during delivery (nothing lost; duplicates only of attempts in flight).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed check"
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::receiver::{Receiver, reply, signed_by};
use common::{Server, assert_error, eventually};
use serde_json::{Value, json};

const NS: &str = "/namespaces/default";

async fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    (server, dir)
}

async fn put_endpoint(server: &Server, name: &str, spec: Value) -> Value {
    let (status, body) = server
        .call("PUT", &format!("{NS}/endpoints/{name}"), Some(spec))
        .await;
    assert!(status == 201 || status == 200, "{body}");
    body
}

/// Creates `topic` and a subscription pushing it to `endpoint`.
async fn subscribe(server: &Server, topic: &str, endpoint: &str) {
    let (status, body) = server
        .call("PUT", &format!("{NS}/topics/{topic}"), Some(json!({})))
        .await;
    assert!(status == 201 || status == 200, "{body}");
    let (status, body) = server
        .call(
            "PUT",
            &format!("{NS}/subscriptions/to-{endpoint}"),
            Some(json!({"topic": topic, "target": {"endpoint": endpoint}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn publish(server: &Server, topic: &str, events: Vec<Value>) -> Vec<String> {
    let (status, body) = server
        .post(
            &format!("{NS}/topics/{topic}/events"),
            json!({"events": events}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn endpoint_where(server: &Server, name: &str, what: &str, f: fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        let (_, e) = server.get(&format!("{NS}/endpoints/{name}")).await;
        f(&e).then_some(e)
    })
    .await
}

async fn attempts(server: &Server, name: &str, query: &str) -> Vec<Value> {
    let (status, body) = server
        .get(&format!("{NS}/endpoints/{name}/attempts{query}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["attempts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn messages_are_signed_retried_on_the_schedule_and_logged() {
    let (server, _dir) = server().await;
    let mut rx = Receiver::start().await;
    let made = put_endpoint(
        &server,
        "crm",
        json!({"url": rx.url, "retry_schedule_ms": [0, 50, 50], "headers": {"x-tenant": "acme"}}),
    )
    .await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{made}");
    let (_, shown) = server.get(&format!("{NS}/endpoints/crm")).await;
    assert!(
        shown.get("secret").is_none(),
        "GET never shows a secret: {shown}"
    );
    assert_eq!(shown["queue"], "keel.push.crm");
    let (_, again) = server
        .call("PUT", &format!("{NS}/endpoints/crm"), Some(json!({"url": rx.url, "retry_schedule_ms": [0, 50, 50], "headers": {"x-tenant": "acme"}})))
        .await;
    assert!(
        again.get("secret").is_none(),
        "an update keeps and hides the secret"
    );

    subscribe(&server, "orders", "crm").await;
    rx.then([reply(500), reply(502)]);
    let ids = publish(
        &server,
        "orders",
        vec![json!({"type": "order.paid", "key": "o1", "data": {"total": 5}})],
    )
    .await;
    let first = rx.next().await;
    let second = rx.next().await;
    let third = rx.next().await;
    for r in [&first, &second, &third] {
        assert_eq!(
            r.id(),
            ids[0],
            "webhook-id is the event's id on every attempt"
        );
        assert!(signed_by(r, &secret), "{:?}", r.headers);
        assert_eq!(r.headers["x-tenant"], "acme");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(first.json()["data"]["total"], 5, "the body is the event");
    assert_eq!(first.json()["type"], "order.paid");
    assert!(!signed_by(&first, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));

    let e = endpoint_where(&server, "crm", "a success recorded", |e| {
        !e["status"]["last_success_at"].is_null()
    })
    .await;
    assert_eq!(e["status"]["failure_streak"], 0);
    let log = attempts(&server, "crm", "").await;
    let seen: Vec<(&str, u64)> = log
        .iter()
        .map(|a| {
            (
                a["status"].as_str().unwrap(),
                a["http_status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("succeeded", 200), ("failed", 502), ("failed", 500)],
        "newest first"
    );
    assert_eq!(log[1]["response_excerpt"], "{\"status\":502}");
    let failed = attempts(&server, "crm", "?status=failed&limit=1").await;
    assert_eq!(failed.len(), 1);
    let (status, page) = server
        .get(&format!(
            "{NS}/endpoints/crm/attempts?status=failed&limit=1"
        ))
        .await;
    assert_eq!(status, 200);
    let older = attempts(
        &server,
        "crm",
        &format!(
            "?status=failed&after={}",
            page["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(older[0]["http_status"], 500);
    assert_error(
        &server
            .get(&format!("{NS}/endpoints/crm/attempts?status=odd"))
            .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_says_so_on_keel_endpoints() {
    let (server, _dir) = server().await;
    gone_disables(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_on_postgresql_too() {
    let schema = keel_store_postgres::testing::TestSchema::create("keel_gone")
        .await
        .unwrap();
    let server =
        Server::start_with(&["--database-url", &schema.url(), "--allow-private-http"]).await;
    gone_disables(&server).await;
}

/// A 410 disables the endpoint; nothing more reaches it until it is
/// enabled, neither the refused message's retry nor a new message.
/// (Regression: the retry was delivered to the disabled endpoint.)
async fn gone_disables(server: &Server) {
    let mut rx = Receiver::start().await;
    put_endpoint(
        server,
        "old",
        json!({"url": rx.url, "retry_schedule_ms": [0, 10, 10]}),
    )
    .await;
    subscribe(server, "news", "old").await;
    rx.then([reply(410)]);
    publish(server, "news", vec![json!({"data": 1})]).await;
    let gone = rx.next().await;
    let e = endpoint_where(server, "old", "disabled", |e| {
        !e["status"]["disabled_at"].is_null()
    })
    .await;
    assert!(
        e["status"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{e}"
    );
    let (status, events) = server
        .get(&format!("{NS}/topics/keel.endpoints/events?wait_ms=10000"))
        .await;
    assert_eq!(status, 200, "{events}");
    let event = &events["events"][0];
    assert_eq!(event["type"], "keel.endpoint.disabled");
    assert_eq!(event["data"]["endpoint"], "old");

    // Disabled: the refused message's retry comes due and a new message
    // arrives; both wait, leased by no node.
    publish(server, "news", vec![json!({"data": 2})]).await;
    eventually("both messages ready and waiting", || async {
        let (_, q) = server.get(&format!("{NS}/queues/keel.push.old")).await;
        (q["counts"]["ready"] == 2 && q["counts"]["leased"] == 0 && q["paused"] == true)
            .then_some(q)
    })
    .await;
    let enabled_at = Instant::now();
    let (status, enabled) = server
        .post(&format!("{NS}/endpoints/old/enable"), json!({}))
        .await;
    assert_eq!(status, 200, "{enabled}");
    assert!(enabled["status"]["disabled_at"].is_null());
    let mut ids = HashSet::new();
    while ids.len() < 2 {
        let received = rx.next().await;
        assert!(
            received.at >= enabled_at,
            "a message reached the endpoint while it was disabled"
        );
        ids.insert(received.id().to_owned());
    }
    assert!(
        ids.contains(gone.id()),
        "the message answered 410 is sent again"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_timeout_is_a_failure() {
    let (server, _dir) = server().await;
    let mut rx = Receiver::start().await;
    put_endpoint(
        &server,
        "slow",
        json!({"url": rx.url, "timeout_ms": 300, "retry_schedule_ms": [0, 10, 10, 10]}),
    )
    .await;
    subscribe(&server, "t", "slow").await;
    let mut busy = reply(429);
    busy.headers.push(("retry-after", "1".to_owned()));
    let mut stuck = reply(200);
    stuck.delay = Duration::from_secs(2);
    rx.then([busy, stuck]);
    publish(&server, "t", vec![json!({"data": 1})]).await;
    let first = rx.next().await;
    let second = rx.next().await;
    let third = rx.next().await;
    assert!(
        second.at - first.at >= Duration::from_millis(900),
        "Retry-After: 1 waited {:?}",
        second.at - first.at
    );
    assert!(
        third.at - second.at < Duration::from_secs(2),
        "the timeout cut the wait"
    );
    endpoint_where(&server, "slow", "a success", |e| {
        !e["status"]["last_success_at"].is_null()
    })
    .await;
    let log = attempts(&server, "slow", "?status=failed").await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        log[0]
    );
    assert!(log[0]["http_status"].is_null());
    assert_eq!(log[1]["http_status"], 429);
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_and_recover_resends_the_dead() {
    let (server, _dir) = server().await;
    let mut rx = Receiver::start().await;
    let made = put_endpoint(
        &server,
        "r",
        json!({"url": rx.url, "retry_schedule_ms": [0]}),
    )
    .await;
    let old = made["secret"].as_str().unwrap().to_owned();
    let (status, rotated) = server
        .post(&format!("{NS}/endpoints/r/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(!rotated["previous_valid_until"].is_null());
    subscribe(&server, "t", "r").await;
    let since = keel_core::Timestamp::from_millis(0).to_rfc3339();
    rx.then([reply(500), reply(500)]);
    publish(&server, "t", vec![json!({"data": 1}), json!({"data": 2})]).await;
    let a = rx.next().await;
    let b = rx.next().await;
    for r in [&a, &b] {
        assert!(signed_by(r, &old) && signed_by(r, &new), "{:?}", r.headers);
        assert_eq!(r.headers["webhook-signature"].split(' ').count(), 2);
    }
    // One attempt only: both are dead now; recover sends them again.
    endpoint_where(&server, "r", "two dead", |e| e["status"]["dead"] == 2).await;
    let (status, recovered) = server
        .post(
            &format!("{NS}/endpoints/r/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(
        (status, recovered["recovered"].as_u64()),
        (200, Some(2)),
        "{recovered}"
    );
    let again: HashSet<String> = [rx.next().await, rx.next().await]
        .iter()
        .map(|r| r.id().to_owned())
        .collect();
    assert_eq!(again, HashSet::from([a.id().to_owned(), b.id().to_owned()]));
    assert_error(
        &server
            .post(
                &format!("{NS}/endpoints/r/recover"),
                json!({"since": "yesterday"}),
            )
            .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn ordered_endpoints_deliver_each_key_in_order() {
    let (server, _dir) = server().await;
    let mut rx = Receiver::start().await;
    put_endpoint(
        &server,
        "seq",
        json!({"url": rx.url, "ordered": true, "max_in_flight": 8, "retry_schedule_ms": [0, 5, 5, 5, 5, 5]}),
    )
    .await;
    subscribe(&server, "t", "seq").await;
    // Every third answer fails: a failed message is retried before the
    // next of its key goes out.
    rx.then((0..40).map(|i| reply(if i % 3 == 0 { 500 } else { 200 })));
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"key": format!("k{}", i % 3), "data": {"n": i}}))
        .collect();
    publish(&server, "t", events).await;
    let mut last_seen: HashMap<String, i64> = HashMap::new();
    let mut delivered = HashSet::new();
    while delivered.len() < 30 {
        let r = rx.next().await;
        let body = r.json();
        let (key, n) = (
            body["key"].as_str().unwrap().to_owned(),
            body["data"]["n"].as_i64().unwrap(),
        );
        let before = last_seen.insert(key.clone(), n).unwrap_or(-1);
        assert!(n >= before, "key {key}: {n} after {before}");
        delivered.insert(n);
    }
}

#[tokio::test]
async fn push_queues_complete_jobs_with_the_answer() {
    let (server, _dir) = server().await;
    let mut rx = Receiver::start().await;
    put_endpoint(&server, "lambda", json!({"url": rx.url})).await;
    let (status, body) = server
        .call(
            "PUT",
            &format!("{NS}/queues/calls"),
            Some(json!({"push": {"endpoint": "nope"}})),
        )
        .await;
    assert_eq!(status, 404, "a push queue needs its endpoint: {body}");
    let (status, body) = server
        .call(
            "PUT",
            &format!("{NS}/queues/calls"),
            Some(json!({"push": {"endpoint": "lambda", "concurrency": 4}, "backoff": {"base_ms": 10, "max_ms": 10}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut ok = reply(200);
    ok.body = json!({"resized": true}).to_string();
    rx.then([reply(503), ok]);
    let id = server
        .enqueue("calls", json!({"payload": {"image": 7}}))
        .await;
    let first = rx.next().await;
    assert_eq!(first.id(), id, "webhook-id is the job's id");
    assert_eq!(first.json(), json!({"image": 7}), "the body is the payload");
    rx.next().await;
    let job = eventually("the job succeeded", || async {
        let job = server.job(&id).await;
        (job["state"] == "succeeded").then_some(job)
    })
    .await;
    assert_eq!(job["result"], json!({"resized": true}));
    let error = job["errors"][0]["message"].as_str().unwrap();
    assert!(error.starts_with("HTTP 503 after"), "{error}");
    assert_eq!(attempts(&server, "lambda", "").await.len(), 2);
}

#[tokio::test]
async fn the_guard_refuses_private_urls_and_redirects_to_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let strict = Server::start(&dir, &[]).await;
    let refused = strict
        .call(
            "PUT",
            &format!("{NS}/endpoints/in"),
            Some(json!({"url": "http://127.0.0.1:9/x"})),
        )
        .await;
    assert_error(&refused, 400, "invalid_request");
    assert_error(
        &strict
            .call(
                "PUT",
                &format!("{NS}/endpoints/in"),
                Some(json!({"url": "https://x", "bogus": 1})),
            )
            .await,
        400,
        "invalid_request",
    );
    assert_error(
        &strict
            .call(
                "PUT",
                &format!("{NS}/endpoints/in"),
                Some(json!({"url": "https://x", "secret": "plain"})),
            )
            .await,
        400,
        "invalid_request",
    );

    let (server, _dir) = server().await;
    let rx = Receiver::start().await;
    let moved = rx.url.replace("/hook", "/moved");
    put_endpoint(
        &server,
        "m",
        json!({"url": moved, "retry_schedule_ms": [0]}),
    )
    .await;
    subscribe(&server, "t", "m").await;
    publish(&server, "t", vec![json!({"data": 1})]).await;
    endpoint_where(&server, "m", "a failure", |e| {
        e["status"]["failure_streak"] == 1
    })
    .await;
    let log = attempts(&server, "m", "").await;
    let error = log[0]["error"].as_str().unwrap();
    assert!(
        error.contains("refused by keel") && error.contains("metadata"),
        "{error}"
    );
}

#[tokio::test]
async fn kill_9_during_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &["--allow-private-http"]).await;
    let mut rx = Receiver::start().await;
    // Slow answers keep deliveries in flight when the server dies.
    rx.then((0..60).map(|_| {
        let mut r = reply(200);
        r.delay = Duration::from_millis(50);
        r
    }));
    put_endpoint(
        &server,
        "k",
        json!({"url": rx.url, "timeout_ms": 1000, "max_in_flight": 4}),
    )
    .await;
    subscribe(&server, "t", "k").await;
    let ids = publish(&server, "t", (0..100).map(|i| json!({"data": i})).collect()).await;
    let mut got = rx.ids(10).await;
    server.kill9().await;
    let _server = Server::start(&dir, &["--allow-private-http"]).await;
    let wanted: HashSet<String> = ids.into_iter().collect();
    let repeats = rx.until_all(&wanted, &mut got).await;
    assert!(repeats <= 4, "only attempts in flight repeat: {repeats}");
}

#[tokio::test]
async fn the_cli_puts_lists_rotates_and_reads_attempts() {
    let (server, dir) = server().await;
    let file = dir.path().join("crm.yaml");
    std::fs::write(
        &file,
        "name: crm\nurl: https://crm.example.com/hooks\nordered: true\n",
    )
    .unwrap();
    let (ok, out, err) = server
        .cli(&["endpoint", "put", file.to_str().unwrap()])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("secret (shown once): whsec_"), "{out}");
    let (ok, out, _) = server.cli(&["endpoint", "list"]).await;
    assert!(
        ok && out.starts_with("crm  https://crm.example.com/hooks  ok"),
        "{out}"
    );
    assert!(!out.contains("whsec_"), "a list never shows a secret");
    let (ok, out, _) = server.cli(&["endpoint", "rotate-secret", "crm"]).await;
    assert!(ok && out.trim().starts_with("whsec_"), "{out}");
    let (ok, out, _) = server.cli(&["endpoint", "attempts", "crm", "--json"]).await;
    assert!(ok, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["attempts"],
        json!([])
    );
}
