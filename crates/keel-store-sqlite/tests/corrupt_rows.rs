//! A stored row this version cannot read is an error, never a made-up
//! default: a job whose backoff was damaged must not come back with the
//! default backoff, and an unfinished job that cannot be read must stop the
//! store from opening rather than vanish from the hot index.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use keel_core::{ErrorCode, Limits, Namespace, NewJob, QueueName, QueueRef, Timestamp};
use keel_store::{JobStore, Store};
use keel_store_sqlite::SqliteStore;
use serde_json::value::RawValue;

fn job() -> NewJob {
    NewJob {
        max_attempts: 3,
        ..NewJob::new(
            RawValue::from_string("{}".to_owned()).unwrap(),
            Timestamp::from_millis(1_000),
        )
    }
}

#[tokio::test]
async fn a_damaged_job_row_is_an_error_on_read_and_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let queue = QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new("q").unwrap(),
    };
    let store = SqliteStore::open(dir.path(), &limits).unwrap();
    let id = store
        .jobs_enqueue(&queue, vec![job()], Timestamp::from_millis(1_000))
        .await
        .unwrap()[0]
        .id;
    store.close().await;

    let conn = rusqlite::Connection::open(dir.path().join("keel.db")).unwrap();
    conn.execute("UPDATE jobs SET backoff = '{\"base_ms\":\"soon\"}'", [])
        .unwrap();
    drop(conn);
    let Err(e) = SqliteStore::open(dir.path(), &limits) else {
        panic!("opened with an unfinished job it cannot read");
    };
    assert_eq!(e.code, ErrorCode::Internal);
    assert!(e.message.contains("corrupt row"), "{}", e.message);

    // Finished rows are not loaded at open: the read itself must refuse.
    let conn = rusqlite::Connection::open(dir.path().join("keel.db")).unwrap();
    conn.execute(
        "UPDATE jobs SET finished_at = 2000, state = 'succeeded'",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(dir.path(), &limits).unwrap();
    let e = store.job_get(&queue.namespace, id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
    assert!(e.message.contains("corrupt row"), "{}", e.message);
    store.close().await;
}
