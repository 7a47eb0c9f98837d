//! The application's own transaction on PostgreSQL: `publish` and `enqueue`
//! called inside a transaction of the application's, on the database a Keel
//! node runs on. Rolled back, nothing happened; committed, the event and the
//! job are there, and the node's parked readers and leasers wake at once.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::{Server, assert_error};
use keel_store_postgres::testing::TestSchema;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

async fn application(schema: &TestSchema) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&schema.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_enqueue_commit_or_roll_back_with_the_application() {
    let schema = TestSchema::create("keel_outbox").await.unwrap();
    let node = Server::start_with(&["--database-url", &schema.url()]).await;
    let mut app = application(&schema).await;
    let (ns, s) = ("default", schema.name.as_str());
    let publish = format!("SELECT {s}.publish($1, 'orders', $2, 'order.created', $3::text::jsonb)");
    let enqueue = format!("SELECT {s}.enqueue($1, 'billing', $2::text::jsonb, 0, 0, $3)");

    let tx = app.transaction().await.unwrap();
    tx.query_one(&publish, &[&ns, &"c1", &r#"{"order":1}"#])
        .await
        .unwrap();
    tx.query_one(&enqueue, &[&ns, &r#"{"order":1}"#, &"c1"])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_error(
        &node.get("/namespaces/default/topics/orders").await,
        404,
        "not_found",
    );
    let (_, queue) = node.get("/namespaces/default/queues/billing").await;
    assert_eq!(queue["counts"]["ready"], 0, "{queue}");

    // A reader and a leaser parked on the node, then the commit.
    let (status, _) = node
        .call("PUT", "/namespaces/default/topics/orders", Some(json!({})))
        .await;
    assert_eq!(status, 201);
    let tail = node.v1("/namespaces/default/topics/orders/events?after=0&wait_ms=30000");
    let reader = tokio::spawn(async move {
        reqwest::get(&tail)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    let lease_url = node.v1("/namespaces/default/queues/billing/lease");
    let leaser = tokio::spawn(async move {
        reqwest::Client::new()
            .post(lease_url)
            .json(&json!({"max_jobs": 5, "wait_ms": 30000}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    node.wait_for_gauge("keel_lease_waiters", 1.0).await;
    node.wait_for_gauge("keel_event_waiters", 1.0).await;
    let tx = app.transaction().await.unwrap();
    let seq: i64 = tx
        .query_one(&publish, &[&ns, &"c1", &r#"{"order":2}"#])
        .await
        .unwrap()
        .get(0);
    tx.query_one(&enqueue, &[&ns, &r#"{"order":2}"#, &"c1"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seq, 1, "the rolled-back publish took no seq");

    let leased = leaser.await.unwrap();
    assert_eq!(
        leased["jobs"][0]["payload"],
        json!({"order": 2}),
        "{leased}"
    );
    assert_eq!(leased["jobs"][0]["max_attempts"], 20);
    let page = reader.await.unwrap();
    assert_eq!(page["events"][0]["data"], json!({"order": 2}), "{page}");
    assert_eq!(page["events"][0]["key"], "c1");

    // Published again under its id, within the window: the first seq, nothing stored.
    let again = format!("SELECT {s}.publish($1, 'orders', NULL, 't', 'null', 'same-id')");
    let first: i64 = app.query_one(&again, &[&ns]).await.unwrap().get(0);
    let second: i64 = app.query_one(&again, &[&ns]).await.unwrap().get(0);
    assert_eq!((first, second), (2, 2));
    // Bad input is refused inside the application's transaction.
    let bad = format!("SELECT {s}.enqueue('bad name', 'q', '{{}}')");
    let err = app.query_one(&bad, &[]).await.unwrap_err();
    let message = err.as_db_error().unwrap().message();
    assert!(message.starts_with("keel: namespace name"), "{message}");
}

/// Regression: `enqueue()` was written before flow keys, so a job it
/// enqueued on a queue whose policy has a `key` had none, and the keyed
/// lease never handed it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_on_a_keyed_queue_is_leased_by_its_key() {
    let schema = TestSchema::create("keel_outbox_keyed").await.unwrap();
    let node = Server::start_with(&["--database-url", &schema.url()]).await;
    let (status, _) = node
        .call(
            "PUT",
            "/namespaces/default/queues/tenants",
            Some(json!({"key": "tag:tenant", "max_key_concurrency": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let app = application(&schema).await;
    let s = schema.name.as_str();
    let enqueue = format!(
        "SELECT {s}.enqueue('default', 'tenants', '{{\"n\":1}}'::jsonb, 0, 0, NULL, NULL, '{{\"tenant\":\"a\"}}'::jsonb)"
    );
    app.query_one(&enqueue, &[]).await.unwrap();
    let (status, leased) = node
        .call(
            "POST",
            "/namespaces/default/queues/tenants/lease",
            Some(json!({"max_jobs": 5, "wait_ms": 5000})),
        )
        .await;
    assert_eq!(status, 200, "{leased}");
    assert_eq!(leased["jobs"][0]["payload"], json!({"n": 1}), "{leased}");
    assert_eq!(leased["jobs"][0]["tags"]["tenant"], "a");
}
