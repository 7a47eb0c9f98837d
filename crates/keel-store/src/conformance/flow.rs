//! Flow keys: a queue with a `key` bounds each key's leased jobs
//! (`max_key_concurrency`) and leases per period (`key_rate_limit`), and
//! shares its leases between keys in weighted fair share, priorities in
//! order within a key; a lone job of one key is not held behind another
//! key's backlog, however large.

use std::collections::BTreeMap;

use keel_core::flow::fair::Fairness;
use keel_core::flow::{FlowKey, Rate};

use super::*;

cases![
    a_key_bound_holds_per_key_and_frees_with_each_ack,
    a_lone_job_goes_next_behind_another_keys_flood,
    weights_share_leases_and_priorities_order_each_key,
    a_new_key_setting_keys_the_jobs_already_waiting,
    a_key_rate_limit_holds_each_key_to_its_own_rate,
    a_restart_gives_no_key_a_second_burst,
    a_fair_share_job_knows_its_place_in_its_keys_line,
];

fn tenant_policy() -> QueuePolicy {
    QueuePolicy {
        key: Some(FlowKey::Tag("tenant".into())),
        ..Default::default()
    }
}

fn of(tenant: &str, payload: &str) -> NewJob {
    let mut j = job(payload);
    j.tags = BTreeMap::from([("tenant".to_owned(), tenant.to_owned())]);
    j
}

fn tenants_of(jobs: &[LeasedJob]) -> Vec<String> {
    jobs.iter()
        .map(|j| j.tags.get("tenant").cloned().unwrap_or_default())
        .collect()
}

async fn a_key_bound_holds_per_key_and_frees_with_each_ack(mut h: Harness) {
    let q = queue("work");
    let s = &*h.store;
    let policy = QueuePolicy {
        max_key_concurrency: Some(2),
        ..tenant_policy()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    let mut jobs: Vec<NewJob> = (0..5).map(|i| of("a", &i.to_string())).collect();
    jobs.extend((0..3).map(|i| of("b", &format!("\"b{i}\""))));
    jobs.push(job(r#""untagged""#));
    let ids = enqueue(s, &q, jobs).await;
    let first = lease(s, &q, 10, T0).await;
    let mut got = tenants_of(&first);
    got.sort();
    assert_eq!(
        got,
        ["", "a", "a", "b", "b"],
        "two per key, the untagged key too"
    );
    assert!(lease(s, &q, 10, T0).await.is_empty());
    // The bound holds after a restart: the store knows each job's key.
    h.store.close().await;
    h.store = (h.reopen)().await;
    let s = &*h.store;
    assert!(lease(s, &q, 10, T0).await.is_empty());

    let waiting = s.job_waiting(&ns(), ids[4]).await.unwrap();
    assert_eq!(waiting.flow_key.as_deref(), Some("a"));
    assert_eq!(
        (waiting.key_leased, waiting.max_key_concurrency),
        (2, Some(2))
    );

    let a = first
        .iter()
        .find(|j| j.tags.get("tenant").is_some_and(|t| t == "a"))
        .unwrap();
    assert_eq!(
        ack(s, a.lease_token, complete(), at(1)).await,
        Ok(JobState::Succeeded)
    );
    assert_eq!(tenants_of(&lease(s, &q, 10, at(1)).await), ["a"]);
    // A lease that runs out frees its key's place too.
    let b = first
        .iter()
        .find(|j| j.tags.get("tenant").is_some_and(|t| t == "b"))
        .unwrap();
    s.job_cancel(&ns(), b.id, at(2)).await.unwrap();
    assert_eq!(tenants_of(&lease(s, &q, 10, at(2)).await), ["b"]);
}

async fn a_lone_job_goes_next_behind_another_keys_flood(h: Harness) {
    let s = &*h.store;
    let q = queue("work");
    s.queue_policy_set(&q, tenant_policy(), T0).await.unwrap();
    // (The suite's namespace bound is 20 jobs; the benchmark floods 100,000.)
    let flood: Vec<NewJob> = (0..18).map(|i| of("noisy", &i.to_string())).collect();
    enqueue(s, &q, flood).await;
    assert_eq!(tenants_of(&lease(s, &q, 10, T0).await), ["noisy"; 10]);
    enqueue(s, &q, vec![of("quiet", r#""lone""#)]).await;
    let next = lease(s, &q, 1, T0).await;
    assert_eq!(tenants_of(&next), ["quiet"], "the lone job goes next");
    // And the noisy key keeps the whole queue when alone (work-conserving).
    assert_eq!(lease(s, &q, 50, T0).await.len(), 8);
}

async fn weights_share_leases_and_priorities_order_each_key(h: Harness) {
    let s = &*h.store;
    let q = queue("work");
    let policy = QueuePolicy {
        fairness: Some(Fairness {
            weights: BTreeMap::from([("acme".to_owned(), 3)]),
            default_weight: 1,
        }),
        ..tenant_policy()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    let mut jobs = Vec::new();
    for i in 0..10 {
        let mut a = of("acme", &format!("\"acme{i}\""));
        a.priority = if i == 9 { 10 } else { 0 };
        jobs.push(a);
        jobs.push(of("beta", &format!("\"beta{i}\"")));
    }
    enqueue(s, &q, jobs).await;
    let mut counts = BTreeMap::<String, usize>::new();
    let mut acme_first = None;
    for _ in 0..2 {
        for j in lease(s, &q, 4, T0).await {
            let tenant = j.tags["tenant"].clone();
            if tenant == "acme" && acme_first.is_none() {
                acme_first = Some(j.payload.get().to_owned());
            }
            *counts.entry(tenant).or_default() += 1;
        }
    }
    assert_eq!(counts["acme"], 6, "{counts:?}");
    assert_eq!(counts["beta"], 2, "{counts:?}");
    assert_eq!(
        acme_first.as_deref(),
        Some(r#""acme9""#),
        "priority first within the key"
    );
}

async fn a_new_key_setting_keys_the_jobs_already_waiting(h: Harness) {
    let s = &*h.store;
    let q = queue("work");
    let jobs = ["a", "a", "a", "b", "b"]
        .iter()
        .map(|t| of(t, "1"))
        .collect();
    enqueue(s, &q, jobs).await;
    let policy = QueuePolicy {
        max_key_concurrency: Some(1),
        ..tenant_policy()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    let mut got = tenants_of(&lease(s, &q, 10, T0).await);
    got.sort();
    assert_eq!(got, ["a", "b"]);
    // Keyed by the ordering key instead: the jobs have none, one key "".
    let policy = QueuePolicy {
        key: Some(FlowKey::OrderingKey),
        max_key_concurrency: Some(3),
        ..Default::default()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    assert_eq!(
        lease(s, &q, 10, T0).await.len(),
        1,
        "two of three leased already"
    );
}

async fn a_key_rate_limit_holds_each_key_to_its_own_rate(h: Harness) {
    let s = &*h.store;
    let q = queue("work");
    let policy = QueuePolicy {
        // Two per second per key: one slot every 500 ms, a burst of two.
        key_rate_limit: Some(Rate {
            limit: 2,
            period_ms: 1000,
            burst: None,
        }),
        ..tenant_policy()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    let mut jobs: Vec<NewJob> = (0..6).map(|i| of("a", &i.to_string())).collect();
    jobs.extend((0..3).map(|i| of("b", &format!("\"b{i}\""))));
    let ids = enqueue(s, &q, jobs).await;
    let mut got = tenants_of(&lease(s, &q, 20, T0).await);
    got.sort();
    assert_eq!(got, ["a", "a", "b", "b"], "a burst of two per key");
    assert!(lease(s, &q, 20, at(499)).await.is_empty());

    let waiting = s.job_waiting(&ns(), ids[2]).await.unwrap();
    assert_eq!(waiting.flow_key.as_deref(), Some("a"));
    let rate = waiting.key_rate_limit.expect("the key's rate");
    assert_eq!(
        rate.allowed(waiting.key_rate_tat_us, at(499), 1).next_at,
        Some(at(500)),
        "the key's next slot"
    );

    let mut got = tenants_of(&lease(s, &q, 20, at(500)).await);
    got.sort();
    assert_eq!(got, ["a", "b"], "one slot per key every 500 ms");
    // A key that is idle does not lend its slots to another.
    assert_eq!(tenants_of(&lease(s, &q, 20, at(1000)).await), ["a"]);
    assert!(lease(s, &q, 20, at(1499)).await.is_empty());
}

async fn a_fair_share_job_knows_its_place_in_its_keys_line(h: Harness) {
    let s = &*h.store;
    let q = queue("work");
    let policy = QueuePolicy {
        fairness: Some(Fairness {
            weights: BTreeMap::new(),
            default_weight: 1,
        }),
        ..tenant_policy()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    let mut jobs: Vec<NewJob> = (0..3).map(|i| of("a", &i.to_string())).collect();
    let mut urgent = of("a", r#""urgent""#);
    urgent.priority = 5;
    jobs.push(urgent);
    jobs.push(of("b", r#""b""#));
    let ids = enqueue(s, &q, jobs).await;
    let place = async |id| s.job_waiting(&ns(), id).await.unwrap().fair_position;
    assert_eq!(place(ids[3]).await, Some(1), "priority first in its key");
    assert_eq!(place(ids[0]).await, Some(2));
    assert_eq!(place(ids[2]).await, Some(4));
    assert_eq!(place(ids[4]).await, Some(1), "its own key's line");
    let leased = lease(s, &q, 2, T0).await;
    assert_eq!(leased.len(), 2);
    assert_eq!(place(ids[2]).await, Some(3), "one of its key's leased");
    // A queue keyed without fair share has no line to stand in.
    let q2 = queue("bounded");
    let policy = QueuePolicy {
        max_key_concurrency: Some(1),
        ..tenant_policy()
    };
    s.queue_policy_set(&q2, policy, T0).await.unwrap();
    let ids = enqueue(s, &q2, vec![of("a", "1"), of("a", "2")]).await;
    assert_eq!(place(ids[1]).await, None);
}

/// As a queue's rate (`queues::a_restart_gives_a_rate_limit_no_second_burst`):
/// a restart lets no key burst again, and each key's steady rate goes on,
/// for keys that had leased before it and keys first seen after it.
async fn a_restart_gives_no_key_a_second_burst(h: Harness) {
    let q = queue("work");
    let policy = QueuePolicy {
        key_rate_limit: Some(Rate {
            limit: 10,
            period_ms: 1000,
            burst: Some(3),
        }),
        ..tenant_policy()
    };
    h.store.queue_policy_set(&q, policy, T0).await.unwrap();
    let mut jobs: Vec<NewJob> = (0..8).map(|i| of("a", &i.to_string())).collect();
    jobs.extend((0..8).map(|i| of("b", &format!("\"b{i}\""))));
    enqueue(&*h.store, &q, jobs).await;
    assert_eq!(
        lease(&*h.store, &q, 20, T0).await.len(),
        6,
        "a burst of three per key"
    );
    h.store.close().await;
    let s = (h.reopen)().await;
    enqueue(
        &*s,
        &q,
        (0..3).map(|i| of("c", &format!("\"c{i}\""))).collect(),
    )
    .await;
    // A key first seen now has no history: it may have its burst (a store
    // that cannot tell it from the others may hold it to the rate instead).
    let mut got = tenants_of(&lease(&*s, &q, 20, at(1)).await);
    assert!(
        got.iter().all(|t| t == "c"),
        "no key that leased before the restart bursts again: {got:?}"
    );
    for step in 1..=10 {
        let leased = tenants_of(&lease(&*s, &q, 20, at(step * 100)).await);
        assert!(leased.len() <= 3, "one per key per 100 ms: {leased:?}");
        got.extend(leased);
    }
    got.sort();
    let count = |t: &str| got.iter().filter(|g| *g == t).count();
    assert_eq!((count("a"), count("b"), count("c")), (5, 5, 3), "{got:?}");
}
