//! The store conformance suite on PostgreSQL. Each test runs in a schema of
//! its own, dropped afterwards. The server is `KEEL_TEST_DATABASE_URL`
//! (default: the local one on 127.0.0.1:5432); `.ci/run` starts it if needed.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use std::sync::Arc;

use keel_core::Limits;
use keel_store::Store;
use keel_store::conformance::Harness;
use keel_store_postgres::PostgresStore;
use tokio_postgres::NoTls;

fn base_url() -> String {
    std::env::var("KEEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Drops the test's schema when the test ends, pass or fail.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await.unwrap();
                tokio::spawn(connection);
                // The store's connections carry the schema as application_name;
                // end them first, so that no transaction left open by a test
                // holds the locks DROP SCHEMA needs.
                client
                    .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&name])
                    .await
                    .unwrap();
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await.unwrap();
            });
        })
        .join();
    }
}

async fn open(limits: Limits) -> Harness {
    let schema = format!("keel_test_{:016x}", fastrand::u64(..));
    let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let separator = if base_url().contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{separator}options=-c%20search_path%3D{schema}&application_name={schema}",
        base_url()
    );
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url, &limits).await.unwrap());
    Harness {
        store,
        reopen: Box::new(move || {
            let (url, limits) = (url.clone(), limits.clone());
            Box::pin(async move {
                Arc::new(PostgresStore::open(&url, &limits).await.unwrap()) as Arc<dyn Store>
            })
        }),
        guard: Box::new(Schema(schema)),
    }
}

keel_store::store_conformance_suite!(open);
