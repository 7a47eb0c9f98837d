//! Topics and events end to end: the real binary over real sockets, both of
//! Keel's own body forms and both CloudEvents modes, history reads, a
//! follower woken by the publish itself, and kill -9 after an acknowledged
//! publish.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::{Server, assert_error};
use serde_json::{Value, json};

const TOPIC: &str = "/namespaces/default/topics/orders";
const EVENTS: &str = "/namespaces/default/topics/orders/events";

fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_topic_is_put_published_to_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    assert_error(&server.get(TOPIC).await, 404, "not_found");
    let (status, topic) = server
        .call("PUT", TOPIC, Some(json!({"retention_ms": 3_600_000})))
        .await;
    assert_eq!(status, 201, "{topic}");
    assert_eq!(topic["retention_ms"], 3_600_000);
    assert_eq!(topic["dedup_window_ms"], 86_400_000);
    assert_eq!(topic["head_seq"], 0);
    let (status, _) = server.call("PUT", TOPIC, Some(json!({}))).await;
    assert_eq!(
        status, 200,
        "a second put changes the policy, creates nothing"
    );

    let (status, one) = server
        .post(
            EVENTS,
            json!({"type": "order.created", "key": "c1", "data": {"total": 120}, "headers": {"trace": "t1"}}),
        )
        .await;
    assert_eq!(status, 201, "{one}");
    assert_eq!(
        (one["seq"].as_u64(), one["duplicate"].as_bool()),
        (Some(1), Some(false))
    );
    let generated = one["id"].as_str().unwrap();
    assert_eq!(
        generated.len(),
        36,
        "a UUID when no id is given: {generated}"
    );

    let batch: Vec<Value> = (2..=5)
        .map(|i| json!({"id": format!("e{i}"), "type": if i == 4 { "order.paid" } else { "order.created" }, "key": if i % 2 == 0 { "c2" } else { "c1" }, "data": i}))
        .collect();
    let (status, answer) = server.post(EVENTS, json!({"events": batch})).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(seqs(&answer), [2, 3, 4, 5]);

    let (_, page) = server.get(&format!("{EVENTS}?after=1&limit=2")).await;
    assert_eq!(seqs(&page), [2, 3]);
    assert_eq!(page["next_after"], 3);
    let (_, page) = server.get(&format!("{EVENTS}?key=c1")).await;
    assert_eq!(seqs(&page), [1, 3, 5]);
    assert_eq!(page["next_after"], Value::Null);
    let (_, page) = server.get(&format!("{EVENTS}?type=order.paid")).await;
    assert_eq!(seqs(&page), [4]);
    let first = &server.get(&format!("{EVENTS}?limit=1")).await.1["events"][0];
    assert_eq!(first["data"], json!({"total": 120}));
    assert_eq!(first["headers"], json!({"trace": "t1"}));
    assert_eq!(first["key"], "c1");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));

    let (status, event) = server.get(&format!("{EVENTS}/e3")).await;
    assert_eq!((status, event["seq"].as_u64()), (200, Some(3)));
    assert_error(
        &server.get(&format!("{EVENTS}/nope")).await,
        404,
        "not_found",
    );

    let (_, topic) = server.get(TOPIC).await;
    assert_eq!(
        (topic["head_seq"].as_u64(), topic["events"].as_u64()),
        (Some(5), Some(5))
    );
    let (_, list) = server.get("/namespaces/default/topics").await;
    assert_eq!(list["topics"][0]["name"], "orders");

    let (status, _) = server.call("DELETE", TOPIC, None).await;
    assert_eq!(status, 204);
    assert_error(&server.get(TOPIC).await, 404, "not_found");
}

#[tokio::test]
async fn duplicates_and_bad_input_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    server
        .call("PUT", TOPIC, Some(json!({"max_event_bytes": 16})))
        .await;
    let (_, first) = server.post(EVENTS, json!({"id": "a", "data": 1})).await;
    let (status, again) = server.post(EVENTS, json!({"id": "a", "data": 2})).await;
    assert_eq!(status, 201);
    assert_eq!(
        (again["seq"].clone(), again["duplicate"].clone()),
        (first["seq"].clone(), json!(true))
    );

    // One event over the topic's size refuses the whole batch.
    let answer = server
        .post(
            EVENTS,
            json!({"events": [{"id": "b", "data": 1}, {"id": "c", "data": "far more than sixteen bytes"}]}),
        )
        .await;
    assert_error(&answer, 413, "payload_too_large");
    assert_error(&server.get(&format!("{EVENTS}/b")).await, 404, "not_found");

    assert_error(
        &server.post(EVENTS, json!({"dta": 1})).await,
        400,
        "invalid_request",
    );
    assert_error(
        &server.post(EVENTS, json!({"events": []})).await,
        400,
        "invalid_request",
    );
    let many: Vec<Value> = (0..1001).map(|i| json!({"data": i})).collect();
    assert_error(
        &server.post(EVENTS, json!({"events": many})).await,
        400,
        "batch_too_large",
    );
    assert_error(
        &server.post(EVENTS, json!({"key": ""})).await,
        400,
        "invalid_request",
    );
    assert_error(
        &server
            .post("/namespaces/default/topics/bad%20name/events", json!({}))
            .await,
        400,
        "invalid_name",
    );
    assert_error(
        &server
            .call("PUT", TOPIC, Some(json!({"retention_ms": 5})))
            .await,
        400,
        "invalid_request",
    );
    assert_error(
        &server.get(&format!("{EVENTS}?limit=0")).await,
        400,
        "invalid_request",
    );
    let (_, topic) = server.get(TOPIC).await;
    assert_eq!(topic["events"], 1, "{topic}");
}

#[tokio::test]
async fn cloudevents_are_taken_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let structured = json!({
        "specversion": "1.0", "id": "ce-1", "type": "com.example.order", "source": "/shop",
        "subject": "c9", "time": "2026-01-02T03:04:05.000Z", "datacontenttype": "application/json",
        "data": {"n": 1}, "tenant": "acme"
    });
    let (status, answer) = server
        .send(
            "POST",
            EVENTS,
            &[("content-type", "application/cloudevents+json")],
            structured.to_string().into_bytes(),
        )
        .await;
    assert_eq!((status, answer["seq"].as_u64()), (201, Some(1)), "{answer}");
    let batch = json!([
        {"specversion": "1.0", "id": "ce-2", "type": "t", "source": "/s", "data": 2},
        {"specversion": "1.0", "id": "ce-3", "type": "t", "source": "/s", "data": 3}
    ]);
    let (status, answer) = server
        .send(
            "POST",
            EVENTS,
            &[("content-type", "application/cloudevents-batch+json")],
            batch.to_string().into_bytes(),
        )
        .await;
    assert_eq!((status, seqs(&answer)), (201, vec![2, 3]), "{answer}");
    let (status, answer) = server
        .send(
            "POST",
            EVENTS,
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "ce-4"),
                ("ce-type", "com.example.note"),
                ("ce-source", "/notes"),
                ("ce-subject", "c9"),
                ("ce-priority", "high"),
                ("content-type", "text/plain"),
            ],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!((status, answer["seq"].as_u64()), (201, Some(4)), "{answer}");

    let (_, first) = server.get(&format!("{EVENTS}/ce-1")).await;
    assert_eq!(first["type"], "com.example.order");
    assert_eq!(first["source"], "/shop");
    assert_eq!(first["key"], "c9");
    assert_eq!(first["time"], "2026-01-02T03:04:05.000Z");
    assert_eq!(first["data"], json!({"n": 1}));
    assert_eq!(first["headers"], json!({"tenant": "acme"}));
    let (_, binary) = server.get(&format!("{EVENTS}/ce-4")).await;
    assert_eq!(binary["data"], "hello");
    assert_eq!(binary["key"], "c9");
    assert_eq!(binary["headers"], json!({"priority": "high"}));

    let missing = server
        .send(
            "POST",
            EVENTS,
            &[("content-type", "application/cloudevents+json")],
            json!({"specversion": "1.0", "type": "t", "source": "/s"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_error(&missing, 400, "invalid_request");
}

#[tokio::test]
async fn a_follower_is_woken_by_the_publish() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    server.post(EVENTS, json!({"data": "before"})).await;
    let url = server.v1(&format!("{EVENTS}?after=1&wait_ms=30000"));
    let follower = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let page: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        (page, started.elapsed())
    });
    server.wait_for_gauge("keel_event_waiters", 1.0).await;
    server.post(EVENTS, json!({"data": "after"})).await;
    let (page, waited) = follower.await.unwrap();
    assert_eq!(seqs(&page), [2], "{page}");
    assert_eq!(page["events"][0]["data"], "after");
    assert!(
        waited < std::time::Duration::from_secs(20),
        "woken by the publish, not by the end of the wait ({waited:?})"
    );
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]).await;
    let batch: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("e{i}"), "data": i}))
        .collect();
    let (status, _) = server.post(EVENTS, json!({"events": batch})).await;
    assert_eq!(status, 201);
    let (status, _) = server
        .post(EVENTS, json!({"id": "last", "data": "x"}))
        .await;
    assert_eq!(status, 201);
    server.kill9().await;
    let server = Server::start(&dir, &[]).await;
    let (_, page) = server.get(&format!("{EVENTS}?limit=1000")).await;
    assert_eq!(seqs(&page), (1..=201).collect::<Vec<u64>>());
    // The dedup window outlives the restart too.
    let (_, again) = server
        .post(EVENTS, json!({"id": "last", "data": "y"}))
        .await;
    assert_eq!(
        (again["seq"].as_u64(), again["duplicate"].as_bool()),
        (Some(201), Some(true))
    );
}
