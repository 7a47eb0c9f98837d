//! The plans PostgreSQL picks for the hot statements, as prepared statements
//! get them after five runs (generic plans), on a jobs table whose statistics
//! lag behind its size, as they do between autovacuum passes.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use keel_core::Limits;
use keel_store::Store;
use keel_store_postgres::PostgresStore;
use keel_store_postgres::testing::TestSchema;
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
