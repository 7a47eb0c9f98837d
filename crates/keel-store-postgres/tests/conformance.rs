//! The store conformance suite on PostgreSQL. Each test runs in a schema of
//! its own, dropped afterwards (see `keel_store_postgres::testing`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use std::sync::Arc;

use keel_core::Limits;
use keel_store::Store;
use keel_store::conformance::Harness;
use keel_store_postgres::PostgresStore;
use keel_store_postgres::testing::TestSchema;

async fn open(limits: Limits) -> Harness {
    let schema = TestSchema::create("keel_test").await.unwrap();
    let url = schema.url();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url, &limits).await.unwrap());
    Harness {
        store,
        reopen: Box::new(move || {
            let (url, limits) = (url.clone(), limits.clone());
            Box::pin(async move {
                Arc::new(PostgresStore::open(&url, &limits).await.unwrap()) as Arc<dyn Store>
            })
        }),
        guard: Box::new(schema),
        // A full disk cannot be made in a test here; the mapping of
        // PostgreSQL's disk_full to 507 is in `db()`.
        fill_storage: None,
    }
}

fn main() {
    keel_store::conformance::run(open)
}
