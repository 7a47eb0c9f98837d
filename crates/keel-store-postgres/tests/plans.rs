//! The plans PostgreSQL picks for the hot statements, as prepared statements
//! get them after five runs (generic plans), on a jobs table whose statistics
//! lag behind its size, as they do between autovacuum passes.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use keel_core::{Limits, Namespace, NewJob, QueueName, QueueRef, Timestamp};
use keel_store::{JobStore, LeaseRequest, Store};
use keel_store_postgres::PostgresStore;
use keel_store_postgres::testing::TestSchema;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_postgres::NoTls;

/// The plan of `sql` (with `params` as SQL literals) under a generic plan.
async fn generic_plan(
    client: &tokio_postgres::Client,
    sql: &str,
    types: &str,
    params: &str,
) -> String {
    client
        .batch_execute(&format!(
            "SET plan_cache_mode = force_generic_plan; PREPARE probe({types}) AS {sql}"
        ))
        .await
        .unwrap();
    let rows = client
        .query(&format!("EXPLAIN EXECUTE probe({params})"), &[])
        .await
        .unwrap();
    client.batch_execute("DEALLOCATE probe").await.unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn acks_lock_their_jobs_through_the_primary_key_alone() {
    let schema = TestSchema::create("keel_plans").await.unwrap();
    let store = PostgresStore::open(&schema.url(), &Limits::default())
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&schema.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    // Statistics taken while the table was small, then 100,000 finished jobs.
    client
        .batch_execute(
            "ANALYZE keel_jobs; \
             INSERT INTO keel_jobs (id, namespace, queue, state, payload, priority, attempt, max_attempts, \
                                    run_at, created_at, updated_at, finished_at, lease_seq, lease_ms, backoff) \
             SELECT gen_random_uuid(), 'default', 'q', 'succeeded', '1', 0, 1, 3, 0, 0, 0, 0, 1, 30000, '{}' \
             FROM generate_series(1, 100000)",
        )
        .await
        .unwrap();
    let plan = generic_plan(
        &client,
        include_str!("../queries/jobs/lock_jobs.sql"),
        "uuid[]",
        "ARRAY[gen_random_uuid()]",
    )
    .await;
    assert!(
        plan.contains("keel_jobs_pkey") && !plan.contains("keel_jobs_by_queue"),
        "{plan}"
    );
    store.close().await;
}

/// The executed plan of `sql` as a prepared statement (`types`), run with
/// `params` inside a transaction that is rolled back.
async fn analyzed(client: &tokio_postgres::Client, sql: &str, types: &str, params: &str) -> Value {
    client
        .batch_execute(&format!("BEGIN; PREPARE probe({types}) AS {sql}"))
        .await
        .unwrap();
    // The simple protocol answers in text, which the json column needs here.
    let answer = client
        .simple_query(&format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE probe({params})"
        ))
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    let text = answer
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Rows a plan's scans of `keel_jobs` read: what they returned plus what
/// their filters threw away, over all loops.
fn rows_visited(node: &Value) -> f64 {
    let own = if node["Relation Name"] == "keel_jobs" {
        let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
        let returned = node["Actual Rows"].as_f64().unwrap_or(0.0);
        let removed = node["Rows Removed by Filter"].as_f64().unwrap_or(0.0);
        (returned + removed) * loops
    } else {
        0.0
    };
    own + node["Plans"]
        .as_array()
        .map_or(0.0, |plans| plans.iter().map(rows_visited).sum())
}

/// Leasing costs the same however large the backlog behind ordering keys is:
/// with 10,000 ready jobs over 10 keys and most keys' jobs leased, a lease
/// reads the rows it hands out and not the backlog (the old statement checked
/// every ready job for an older unfinished job of its key: 777 ms for 7,400).
#[tokio::test]
async fn a_lease_reads_only_what_it_can_hand_out_behind_a_keyed_backlog() {
    let schema = TestSchema::create("keel_plans").await.unwrap();
    let store = PostgresStore::open(&schema.url(), &Limits::default())
        .await
        .unwrap();
    let queue = QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new("keyed").unwrap(),
    };
    for batch in 0..10 {
        let jobs = (0..1000)
            .map(|i| {
                let mut job = NewJob {
                    max_attempts: 3,
                    lease_ms: 600_000,
                    ..NewJob::new(
                        RawValue::from_string(format!("{}", batch * 1000 + i)).unwrap(),
                        Timestamp::from_millis(1_000),
                    )
                };
                job.ordering_key = Some(format!("k{}", i % 10));
                job
            })
            .collect();
        store
            .jobs_enqueue(&queue, jobs, Timestamp::from_millis(1_000))
            .await
            .unwrap();
    }
    let lease = |max_jobs| LeaseRequest {
        queue: queue.clone(),
        worker_id: "w".into(),
        max_jobs,
        lease_ms: None,
    };
    let held = store
        .jobs_lease(&lease(7), Timestamp::from_millis(2_000))
        .await
        .unwrap();
    assert_eq!(held.len(), 7, "the jobs holding 7 of the 10 keys");

    let (client, connection) = tokio_postgres::connect(&schema.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("ANALYZE keel_jobs").await.unwrap();
    let plan = analyzed(
        &client,
        include_str!("../queries/jobs/lease.sql"),
        "text, text, bigint, bigint, bigint, text",
        "'default', 'keyed', 20, 3000, NULL, 'w'",
    )
    .await;
    let visited = rows_visited(&plan[0]["Plan"]);
    let leased = plan[0]["Plan"]["Actual Rows"].as_f64().unwrap();
    assert_eq!(leased, 3.0, "the 3 free keys' jobs: {plan:#}");
    assert!(
        visited <= 3.0 * leased,
        "visited {visited} rows of keel_jobs to lease {leased}: {plan:#}"
    );
    store.close().await;
}

/// A keyed queue finds its keys with ready jobs by one probe per key, not by
/// reading a key's backlog: 10,000 ready jobs of one tenant and one of
/// another cost the lanes of a lease of 10 a few dozen rows.
#[tokio::test]
async fn keyed_lanes_read_per_key_not_per_backlog() {
    let schema = TestSchema::create("keel_plans").await.unwrap();
    let store = PostgresStore::open(&schema.url(), &Limits::default())
        .await
        .unwrap();
    let queue = QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new("fair").unwrap(),
    };
    let policy: keel_core::QueuePolicy =
        serde_json::from_value(serde_json::json!({"key": "tag:tenant"})).unwrap();
    keel_store::QueueStore::queue_policy_set(&store, &queue, policy, Timestamp::from_millis(1_000))
        .await
        .unwrap();
    let job = |tenant: &str| NewJob {
        max_attempts: 3,
        lease_ms: 600_000,
        tags: [("tenant".to_owned(), tenant.to_owned())].into(),
        ..NewJob::new(
            RawValue::from_string("1".into()).unwrap(),
            Timestamp::from_millis(1_000),
        )
    };
    for _ in 0..10 {
        let jobs = (0..1000).map(|_| job("noisy")).collect();
        store
            .jobs_enqueue(&queue, jobs, Timestamp::from_millis(1_000))
            .await
            .unwrap();
    }
    store
        .jobs_enqueue(&queue, vec![job("quiet")], Timestamp::from_millis(1_000))
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&schema.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("ANALYZE keel_jobs").await.unwrap();
    let plan = analyzed(
        &client,
        include_str!("../queries/jobs/flow_lanes.sql"),
        "text, text, bigint, boolean",
        "'default', 'fair', 10, true",
    )
    .await;
    assert_eq!(
        plan[0]["Plan"]["Actual Rows"].as_f64(),
        Some(2.0),
        "{plan:#}"
    );
    let visited = rows_visited(&plan[0]["Plan"]);
    assert!(
        visited <= 40.0,
        "visited {visited} rows of keel_jobs: {plan:#}"
    );
    store.close().await;
}
