//! A lease is answered before its own commit is durable, so a crash can lose
//! it while its worker holds the token. The job is then leased again; the old
//! token must never complete it. The disk is set back by hand to what such a
//! crash leaves (the job ready, its lease count as before the lost lease).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use keel_core::{ErrorCode, Limits, Namespace, NewJob, QueueName, QueueRef, Timestamp};
use keel_store::{Ack, AckOutcome, JobStore, LeaseRequest, Store};
use keel_store_sqlite::SqliteStore;
use serde_json::value::RawValue;

const NOW: Timestamp = Timestamp::from_millis(1_000);

fn complete(token: keel_core::LeaseToken) -> Vec<Ack> {
    vec![Ack {
        token,
        outcome: AckOutcome::Complete { result: None },
    }]
}

#[tokio::test]
async fn a_token_of_a_lease_lost_in_a_crash_never_completes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let queue = QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new("q").unwrap(),
    };
    let req = LeaseRequest {
        queue: queue.clone(),
        worker_id: "w".into(),
        max_jobs: 1,
        lease_ms: Some(60_000),
    };
    let payload = RawValue::from_string("{}".to_owned()).unwrap();
    let store = SqliteStore::open(dir.path(), &limits).unwrap();
    store
        .jobs_enqueue(&queue, vec![NewJob::new(payload, NOW)], NOW)
        .await
        .unwrap();
    let lost = store.jobs_lease(&req, NOW).await.unwrap()[0].lease_token;
    store.close().await;

    // What the disk holds when the lease's commit did not survive.
    let conn = rusqlite::Connection::open(dir.path().join("keel.db")).unwrap();
    conn.execute(
        "UPDATE jobs SET state = 'ready', attempt = 0, lease_seq = 0, lease_expires_at = NULL",
        [],
    )
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(dir.path(), &limits).unwrap();
    let again = store.jobs_lease(&req, NOW).await.unwrap()[0].lease_token;
    assert_eq!(again.job, lost.job);
    assert!(
        again.lease_seq > lost.lease_seq,
        "a new run's numbers are above the old run's"
    );
    let refused = store
        .jobs_ack(&queue.namespace, complete(lost), NOW)
        .await
        .unwrap();
    assert_eq!(
        refused[0].as_ref().unwrap_err().code,
        ErrorCode::LeaseLost,
        "the lost lease's token is stale"
    );
    let done = store
        .jobs_ack(&queue.namespace, complete(again), NOW)
        .await
        .unwrap();
    assert!(done[0].is_ok(), "the new lease completes the job");
    store.close().await;
}
