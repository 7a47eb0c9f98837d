//! A stored row this version cannot read is an error, never a made-up
//! default: a job whose backoff or state was damaged must not come back
//! with the default backoff or as `dead`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use keel_core::{ErrorCode, Limits, Namespace, NewJob, QueueName, QueueRef, Timestamp};
use keel_store::{JobStore, MaintenanceStore, Store};
use keel_store_postgres::PostgresStore;
use keel_store_postgres::testing::TestSchema;
use serde_json::value::RawValue;
use tokio_postgres::NoTls;

#[tokio::test]
async fn a_damaged_job_row_is_an_error_on_read() {
    let schema = TestSchema::create("keel_corrupt").await.unwrap();
    let store = PostgresStore::open(&schema.url(), &Limits::default())
        .await
        .unwrap();
    let queue = QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new("q").unwrap(),
    };
    let job = NewJob {
        max_attempts: 3,
        ..NewJob::new(
            RawValue::from_string("{}".to_owned()).unwrap(),
            Timestamp::from_millis(1_000),
        )
    };
    let id = store
        .jobs_enqueue(&queue, vec![job], Timestamp::from_millis(1_000))
        .await
        .unwrap()[0]
        .id;
    let (client, connection) = tokio_postgres::connect(&schema.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    for damage in [
        "UPDATE keel_jobs SET backoff = '{\"base_ms\":\"soon\"}'",
        "UPDATE keel_jobs SET backoff = '{}', state = 'lost'",
    ] {
        client.batch_execute(damage).await.unwrap();
        let e = store.job_get(&queue.namespace, id).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal, "{damage}");
        assert!(e.message.contains("corrupt row"), "{damage}: {}", e.message);
    }
    store.close().await;
}

/// Found by `scripts/chaos pg-kill`, whose schema was dropped while a node
/// still ran: the maintenance leader's lock query read NULL and panicked.
#[tokio::test]
async fn a_schema_dropped_under_a_running_node_is_an_error_not_a_panic() {
    let schema = TestSchema::create("keel_dropped").await.unwrap();
    let store = PostgresStore::open(&schema.url(), &Limits::default())
        .await
        .unwrap();
    let (client, connection) =
        tokio_postgres::connect(&keel_store_postgres::testing::base_url(), NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", schema.name))
        .await
        .unwrap();
    let e = store.maintenance_leader().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal, "{e:?}");
    store.close().await;
}
