//! Why a job waits: the facts `job_waiting` reports for the gates of
//! `keel_core::gate` (due time, pause, the concurrency bound, the holder of
//! an ordering key), bound to the job's namespace.

use keel_core::ErrorCode;

use super::*;

cases![
    waiting_reports_due_time_pause_concurrency_and_key_holder,
    waiting_reports_the_rate_limit_and_its_state,
];

async fn waiting_reports_due_time_pause_concurrency_and_key_holder(h: Harness) {
    let s = &*h.store;
    let q = queue("work");
    let policy = QueuePolicy {
        max_concurrency: Some(1),
        ..Default::default()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    let mut later = job(r#""later""#);
    later.run_at = at(60_000);
    let mut first = job(r#""first""#);
    first.ordering_key = Some("acme".into());
    let mut second = job(r#""second""#);
    second.ordering_key = Some("acme".into());
    let ids = enqueue(s, &q, vec![later, first, second, job(r#""free""#)]).await;
    let facts = s.job_waiting(&ns(), ids[0]).await.unwrap();
    assert_eq!(
        (facts.state, facts.run_at),
        (JobState::Scheduled, at(60_000))
    );
    let behind = s.job_waiting(&ns(), ids[2]).await.unwrap();
    assert_eq!(
        behind.key_holder,
        Some(ids[1]),
        "the first of the key holds it"
    );
    assert_eq!(behind.ordering_key.as_deref(), Some("acme"));
    assert_eq!(s.job_waiting(&ns(), ids[1]).await.unwrap().key_holder, None);

    let leased = lease(s, &q, 10, T0).await;
    assert_eq!(leased.len(), 1);
    s.queue_pause(&q, true, T0).await.unwrap();
    let free = s.job_waiting(&ns(), ids[3]).await.unwrap();
    assert!(free.paused);
    assert_eq!((free.leased, free.max_concurrency), (1, Some(1)));
    let other = Namespace::new("other").unwrap();
    assert_eq!(
        s.job_waiting(&other, ids[3]).await.unwrap_err().code,
        ErrorCode::JobNotFound
    );
}

/// A job held back by its queue's rate limit: the facts carry the rate and
/// the state a lease left, so the gate says when the next slot opens.
async fn waiting_reports_the_rate_limit_and_its_state(h: Harness) {
    let s = &*h.store;
    let q = queue("paced");
    let rate = keel_core::flow::Rate {
        limit: 1,
        period_ms: 60_000,
        burst: None,
    };
    let policy = QueuePolicy {
        rate_limit: Some(rate),
        ..Default::default()
    };
    s.queue_policy_set(&q, policy, T0).await.unwrap();
    let ids = enqueue(s, &q, vec![job("1"), job("2")]).await;
    assert_eq!(lease(s, &q, 5, T0).await.len(), 1);
    let facts = s.job_waiting(&ns(), ids[1]).await.unwrap();
    assert_eq!(facts.rate_limit, Some(rate));
    let gates = keel_core::gate::gates(&facts, Some(0), at(1));
    assert_eq!(gates.len(), 1, "{gates:?}");
    assert_eq!(gates[0].gate, keel_core::gate::GateKind::RateLimit);
    assert_eq!(gates[0].eligible_at, Some(at(60_000)));
}
