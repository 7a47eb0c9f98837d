//! Queues: policies, pausing, counts.

use super::*;

cases![
    stats_count_by_state,
    pause_stops_leasing_until_resume,
    policy_round_trips_and_bounds_concurrency,
    an_ack_under_a_full_concurrency_bound_wakes_a_leaser,
    a_rate_limit_spaces_leases_and_says_when_the_next_may_go,
    a_restart_gives_a_rate_limit_no_second_burst,
];

async fn stats_count_by_state(h: Harness) {
    let q = queue("work");
    let mut later = job("1");
    later.run_at = at(60_000);
    let old = Timestamp::from_millis(T0.as_millis() - 5000);
    let mut waiting = job("0");
    waiting.run_at = old;
    enqueue(&*h.store, &q, vec![waiting, later, job("2"), job("3")]).await;
    let leased = lease(&*h.store, &q, 2, T0).await;
    ack(&*h.store, leased[0].lease_token, complete(), at(1))
        .await
        .unwrap();
    let stats = h.store.queue_stats(&q).await.unwrap();
    let count = |s| stats.counts.get(&s).copied().unwrap_or(0);
    assert_eq!(count(JobState::Scheduled), 1);
    assert_eq!(count(JobState::Ready), 1);
    assert_eq!(count(JobState::Leased), 1);
    assert_eq!(count(JobState::Succeeded), 1);
    assert_eq!(stats.oldest_ready_at, Some(T0));
    assert!(!stats.paused);
    let depths = h.store.queue_depths().await.unwrap();
    assert!(
        depths
            .iter()
            .any(|d| d.queue == q && d.state == JobState::Leased && d.count == 1)
    );
    assert!(
        depths.iter().all(|d| !d.state.is_final()),
        "depth is about unfinished jobs"
    );
}

async fn pause_stops_leasing_until_resume(h: Harness) {
    let q = queue("work");
    h.store.queue_pause(&q, true, T0).await.unwrap();
    enqueue(&*h.store, &q, vec![job("1")]).await;
    assert!(lease(&*h.store, &q, 10, T0).await.is_empty());
    assert!(h.store.queue_stats(&q).await.unwrap().paused);
    let listener = h.store.ready_signal().listener(&q);
    let woken = listener.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    h.store.queue_pause(&q, false, T0).await.unwrap();
    assert!(futures_ready(woken).await, "resume wakes leasers");
    assert_eq!(lease(&*h.store, &q, 10, T0).await.len(), 1);
}

async fn policy_round_trips_and_bounds_concurrency(h: Harness) {
    let q = queue("work");
    assert_eq!(
        h.store.queue_policy(&q).await.unwrap(),
        QueuePolicy::default()
    );
    let policy = QueuePolicy {
        max_concurrency: Some(2),
        max_attempts: Some(9),
        ..Default::default()
    };
    h.store
        .queue_policy_set(&q, policy.clone(), T0)
        .await
        .unwrap();
    assert_eq!(h.store.queue_policy(&q).await.unwrap(), policy);
    enqueue(&*h.store, &q, (0..5).map(|i| job(&i.to_string())).collect()).await;
    let leased = lease(&*h.store, &q, 10, T0).await;
    assert_eq!(leased.len(), 2);
    assert!(lease(&*h.store, &q, 10, T0).await.is_empty());
    ack(&*h.store, leased[0].lease_token, complete(), at(1))
        .await
        .unwrap();
    assert_eq!(lease(&*h.store, &q, 10, at(1)).await.len(), 1);
}

/// A leaser parked on a queue held back by `max_concurrency` wakes when an
/// ack makes room, not when its own wait runs out.
async fn an_ack_under_a_full_concurrency_bound_wakes_a_leaser(h: Harness) {
    let q = queue("work");
    let policy = QueuePolicy {
        max_concurrency: Some(1),
        ..Default::default()
    };
    h.store.queue_policy_set(&q, policy, T0).await.unwrap();
    enqueue(&*h.store, &q, vec![job("1"), job("2")]).await;
    let leased = lease(&*h.store, &q, 10, T0).await;
    assert_eq!(leased.len(), 1);
    let listener = h.store.ready_signal().listener(&q);
    let woken = listener.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    assert!(
        lease(&*h.store, &q, 10, T0).await.is_empty(),
        "the bound holds"
    );
    let woken = assert_pending(woken).await;
    ack(&*h.store, leased[0].lease_token, complete(), at(1))
        .await
        .unwrap();
    assert!(
        futures_ready(woken).await,
        "the ack made room: a leaser wakes"
    );
    assert_eq!(lease(&*h.store, &q, 10, at(1)).await.len(), 1);
}

/// `rate_limit` (a GCRA over the queue): a burst at once, then one job per
/// interval whoever asks, and the ready signal says when the next may go.
async fn a_rate_limit_spaces_leases_and_says_when_the_next_may_go(h: Harness) {
    let q = queue("paced");
    let policy = QueuePolicy {
        rate_limit: Some(keel_core::flow::Rate {
            limit: 10,
            period_ms: 1000,
            burst: Some(3),
        }),
        ..Default::default()
    };
    h.store
        .queue_policy_set(&q, policy.clone(), T0)
        .await
        .unwrap();
    assert_eq!(h.store.queue_policy(&q).await.unwrap(), policy);
    enqueue(
        &*h.store,
        &q,
        (0..20).map(|i| job(&i.to_string())).collect(),
    )
    .await;
    assert_eq!(lease(&*h.store, &q, 10, T0).await.len(), 3, "the burst");
    assert!(lease(&*h.store, &q, 10, at(50)).await.is_empty());
    let next = h.store.ready_signal().rate_next(&q);
    assert_eq!(next, Some(at(100)), "one interval after the burst's first");
    assert_eq!(lease(&*h.store, &q, 10, at(100)).await.len(), 1);
    // Over a second of asking every 10 ms: ten more, never a second burst.
    let mut got = 0;
    for step in 11..=110 {
        got += lease(&*h.store, &q, 10, at(step * 10)).await.len();
    }
    assert_eq!(got, 10, "the rate over one period");
}

/// A restart must not let more through than the limit: the burst spent
/// just before it is not spent again just after (a store that cannot know
/// assumes it was), and the steady rate goes on.
async fn a_restart_gives_a_rate_limit_no_second_burst(h: Harness) {
    let q = queue("paced");
    let policy = QueuePolicy {
        rate_limit: Some(keel_core::flow::Rate {
            limit: 10,
            period_ms: 1000,
            burst: Some(5),
        }),
        ..Default::default()
    };
    h.store.queue_policy_set(&q, policy, T0).await.unwrap();
    enqueue(
        &*h.store,
        &q,
        (0..15).map(|i| job(&i.to_string())).collect(),
    )
    .await;
    assert_eq!(lease(&*h.store, &q, 10, T0).await.len(), 5, "the burst");
    h.store.close().await;
    let store = (h.reopen)().await;
    assert!(
        lease(&*store, &q, 10, at(1)).await.is_empty(),
        "no second burst after the restart"
    );
    let mut got = 0;
    for step in 1..=10 {
        got += lease(&*store, &q, 10, at(step * 100)).await.len();
    }
    // Then the steady rate, one per 100 ms: a store that keeps the rate's
    // state gives all 10; one that assumes the burst was spent at its
    // first lease after the restart (1 ms later here) may give one fewer.
    assert!((9..=10).contains(&got), "then the steady rate: {got}");
}
