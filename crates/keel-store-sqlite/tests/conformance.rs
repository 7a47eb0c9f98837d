//! The store conformance suite on the embedded backend.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use std::sync::Arc;

use keel_core::Limits;
use keel_store::Store;
use keel_store::conformance::Harness;
use keel_store_sqlite::SqliteStore;

async fn open(limits: Limits) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, &limits).unwrap());
    Harness {
        store,
        reopen: Box::new(move || {
            let path = path.clone();
            let limits = limits.clone();
            Box::pin(async move {
                Arc::new(SqliteStore::open(&path, &limits).unwrap()) as Arc<dyn Store>
            })
        }),
        guard: Box::new(dir),
    }
}

fn main() {
    keel_store::conformance::run(open)
}
