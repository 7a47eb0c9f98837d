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
    let sqlite = Arc::new(SqliteStore::open(&path, &limits).unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
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
        fill_storage: Some(Box::new(move |full| {
            let sqlite = sqlite.clone();
            Box::pin(async move {
                sqlite.limit_pages(full.then_some(4)).await.unwrap();
            })
        })),
    }
}

fn main() {
    keel_store::conformance::run(open)
}
