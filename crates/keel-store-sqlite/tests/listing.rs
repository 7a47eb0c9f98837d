//! Listing a namespace's jobs across its queues reads the store's newest
//! jobs first and falls back to the indexes when they hold less than a
//! page (`rows::list_jobs`): the pages are the same either way, newest
//! first, each job once, whether the namespace holds most of the store or
//! a few old jobs of it.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use std::collections::BTreeMap;

use keel_core::{Limits, Namespace, NewJob, QueueName, QueueRef, Timestamp};
use keel_store::{JobFilter, JobStore, Store};
use keel_store_sqlite::SqliteStore;
use serde_json::value::RawValue;

fn job(tenant: &str) -> NewJob {
    NewJob {
        max_attempts: 3,
        tags: BTreeMap::from([("tenant".to_owned(), tenant.to_owned())]),
        ..NewJob::new(
            RawValue::from_string("{}".to_owned()).unwrap(),
            Timestamp::from_millis(1_000),
        )
    }
}

fn queue(ns: &str, q: &str) -> QueueRef {
    QueueRef {
        namespace: Namespace::new(ns).unwrap(),
        queue: QueueName::new(q).unwrap(),
    }
}

/// Every job `filter` lists in `ns`, page after page, by creation.
async fn all(store: &SqliteStore, ns: &str, mut filter: JobFilter) -> Vec<Timestamp> {
    let mut seen = Vec::new();
    loop {
        let page = store
            .jobs_list(&Namespace::new(ns).unwrap(), &filter)
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.created_at));
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn a_namespace_lists_the_same_whatever_share_of_the_store_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), &Limits::default()).unwrap();
    // Three old jobs of `small`, then 25,000 of `big` over two queues,
    // each batch a millisecond later than the one before.
    let mut at = 1_000;
    for q in ["a", "b", "a"] {
        at += 1;
        store
            .jobs_enqueue(
                &queue("small", q),
                vec![job("x")],
                Timestamp::from_millis(at),
            )
            .await
            .unwrap();
    }
    for batch in 0..25 {
        at += 1;
        let tenant = if batch % 5 == 0 { "rare" } else { "common" };
        let q = if batch % 2 == 0 { "a" } else { "b" };
        store
            .jobs_enqueue(
                &queue("big", q),
                (0..1000).map(|_| job(tenant)).collect(),
                Timestamp::from_millis(at),
            )
            .await
            .unwrap();
    }
    let newest_first = |times: &[Timestamp]| times.windows(2).all(|w| w[0] >= w[1]);
    let filter = |limit, tag: Option<&str>| JobFilter {
        limit,
        tag: tag.map(|t| ("tenant".to_owned(), t.to_owned())),
        ..JobFilter::default()
    };
    // The small namespace: nothing among the newest jobs, found by index.
    let small = all(&store, "small", filter(2, None)).await;
    assert_eq!(small.len(), 3);
    assert!(newest_first(&small));
    // The big one: every job once, newest first, across the window's edge.
    let big = all(&store, "big", filter(4_000, None)).await;
    assert_eq!(big.len(), 25_000);
    assert!(newest_first(&big));
    // A tag of a fifth of them, pages reaching past the window.
    let rare = all(&store, "big", filter(1_500, Some("rare"))).await;
    assert_eq!(rare.len(), 5_000);
    assert!(newest_first(&rare));
    assert!(
        all(&store, "big", filter(10, Some("none")))
            .await
            .is_empty()
    );
    store.close().await;
}
