//! The first start on a database: a URL whose `search_path` names a schema
//! that does not exist yet gets it created, then migrated (regression: the
//! first start failed with `no schema has been selected to create in`).

#![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

use keel_core::Limits;
use keel_store::Store;
use keel_store_postgres::PostgresStore;
use keel_store_postgres::testing::{TestSchema, base_url};
use tokio_postgres::NoTls;

#[tokio::test]
async fn a_schema_named_in_search_path_is_created_at_the_first_start() {
    let schema = TestSchema::reserve("keel_first");
    let store = PostgresStore::open(&schema.url(), &Limits::default())
        .await
        .unwrap();
    store.close().await;
    let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = $1 AND table_name = 'keel_jobs'",
            &[&schema.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "migrated into {}", schema.name);
    // A second start finds it as the first left it.
    let again = PostgresStore::open(&schema.url(), &Limits::default())
        .await
        .unwrap();
    again.close().await;
}
