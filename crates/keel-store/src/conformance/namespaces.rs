//! Namespace quotas: stored and kept, usage counted, `max_jobs` in place
//! of the server's bound, `max_schedules` and `max_subscriptions` at
//! creation, rate quotas taken with one second of burst, and the bytes a
//! namespace stores measured.

use keel_core::quota::{Quotas, RateKind};
use keel_core::subscription::Start;
use keel_core::{NewEvent, TopicName};

use super::*;

cases![
    quotas_are_stored_listed_and_kept,
    size_quotas_refuse_the_one_too_many_and_name_the_quota,
    a_rate_quota_allows_a_second_of_burst_then_its_pace,
    a_batch_refused_after_a_reopen_goes_through_once_it_waited,
    stored_bytes_are_payloads_results_and_event_data,
];

fn other() -> Namespace {
    Namespace::new("other").unwrap()
}

async fn quotas_are_stored_listed_and_kept(h: Harness) {
    let s = h.store.clone();
    assert_eq!(s.namespace_get(&ns()).await.unwrap(), None);
    let quotas = Quotas {
        max_jobs: Some(10),
        max_schedules: Some(2),
        ..Quotas::default()
    };
    s.namespace_put(&ns(), &quotas, T0).await.unwrap();
    s.namespace_put(&other(), &Quotas::default(), at(1))
        .await
        .unwrap();
    let changed = Quotas {
        max_jobs: Some(20),
        ..quotas
    };
    s.namespace_put(&ns(), &changed, at(2)).await.unwrap();
    enqueue(&*s, &queue("q"), vec![job("1"), job("2")]).await;
    s.close().await;
    let s = (h.reopen)().await;
    let got = s.namespace_get(&ns()).await.unwrap().unwrap();
    assert_eq!((got.quotas, got.updated_at), (changed, at(2)));
    let names: Vec<String> = s
        .namespaces_list()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.namespace.to_string())
        .collect();
    assert_eq!(names, [ns().to_string(), "other".to_owned()]);
    let usage = s.namespace_usage(&ns()).await.unwrap();
    assert_eq!(
        (usage.jobs, usage.schedules, usage.subscriptions),
        (2, 0, 0)
    );
    assert_eq!(s.namespace_usage(&other()).await.unwrap().jobs, 0);
}

async fn size_quotas_refuse_the_one_too_many_and_name_the_quota(h: Harness) {
    let s = h.store.clone();
    let quotas = Quotas {
        max_jobs: Some(3),
        max_schedules: Some(1),
        max_subscriptions: Some(1),
        ..Quotas::default()
    };
    s.namespace_put(&ns(), &quotas, T0).await.unwrap();
    enqueue(&*s, &queue("q"), vec![job("1"), job("2")]).await;
    let err = s
        .jobs_enqueue(&queue("q"), vec![job("3"), job("4")], T0)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::QuotaExceeded);
    assert!(err.message.contains("max_jobs"), "{}", err.message);
    enqueue(&*s, &queue("q"), vec![job("3")]).await;
    // Another namespace keeps the server's bound.
    let theirs = QueueRef {
        namespace: other(),
        queue: QueueName::new("q").unwrap(),
    };
    enqueue(&*s, &theirs, vec![job("1"), job("2"), job("3"), job("4")]).await;

    let first = s
        .schedules_write(vec![super::schedules::write("a", 0, at(60_000))], T0)
        .await
        .unwrap();
    assert!(first[0].is_ok());
    let second = s
        .schedules_write(vec![super::schedules::write("b", 0, at(60_000))], T0)
        .await
        .unwrap();
    let err = second[0].clone().unwrap_err();
    assert_eq!(err.code, ErrorCode::QuotaExceeded);
    assert!(err.message.contains("max_schedules"), "{}", err.message);

    let spec = super::subscriptions::spec("orders");
    s.subscription_put(&ns(), "one", &spec, Start::Latest, T0)
        .await
        .unwrap();
    // Changing the one there is is no new subscription.
    s.subscription_put(&ns(), "one", &spec, Start::Latest, T0)
        .await
        .unwrap();
    let err = s
        .subscription_put(&ns(), "two", &spec, Start::Latest, T0)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::QuotaExceeded);
    assert!(err.message.contains("max_subscriptions"), "{}", err.message);
    // Raised: room again, on the next call.
    let raised = Quotas {
        max_jobs: Some(5),
        max_subscriptions: Some(2),
        ..quotas
    };
    s.namespace_put(&ns(), &raised, at(1)).await.unwrap();
    s.subscription_put(&ns(), "two", &spec, Start::Latest, T0)
        .await
        .unwrap();
    let usage = s.namespace_usage(&ns()).await.unwrap();
    assert_eq!(
        (usage.jobs, usage.schedules, usage.subscriptions),
        (3, 1, 2)
    );
}

async fn a_rate_quota_allows_a_second_of_burst_then_its_pace(h: Harness) {
    let s = h.store.clone();
    let quotas = Quotas {
        max_enqueue_per_second: Some(10),
        ..Quotas::default()
    };
    s.namespace_put(&ns(), &quotas, T0).await.unwrap();
    for _ in 0..2 {
        s.namespace_rate_take(&ns(), RateKind::Enqueue, 10, 5, T0)
            .await
            .unwrap();
    }
    let err = s
        .namespace_rate_take(&ns(), RateKind::Enqueue, 10, 1, T0)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.retry_after_ms),
        (ErrorCode::RateLimited, Some(100))
    );
    // Publishing has a budget of its own; so has every other namespace.
    s.namespace_rate_take(&ns(), RateKind::Publish, 10, 1, T0)
        .await
        .unwrap();
    s.namespace_put(&other(), &quotas, T0).await.unwrap();
    s.namespace_rate_take(&other(), RateKind::Enqueue, 10, 1, T0)
        .await
        .unwrap();
    s.namespace_rate_take(&ns(), RateKind::Enqueue, 10, 1, at(100))
        .await
        .unwrap();
    assert!(
        s.namespace_rate_take(&ns(), RateKind::Enqueue, 10, 1, at(100))
            .await
            .is_err()
    );
}

/// A store that forgets its rates at a restart counts the burst as spent;
/// a refused batch must then wait out its pace once, not forever (an
/// import waiting on its quota after a restart never went on).
async fn a_batch_refused_after_a_reopen_goes_through_once_it_waited(h: Harness) {
    let quotas = Quotas {
        max_enqueue_per_second: Some(10),
        ..Quotas::default()
    };
    h.store.namespace_put(&ns(), &quotas, T0).await.unwrap();
    h.store.close().await;
    let s = (h.reopen)().await;
    let mut now = 0;
    for _ in 0..3 {
        match s
            .namespace_rate_take(&ns(), RateKind::Enqueue, 10, 5, at(now))
            .await
        {
            Ok(()) => return,
            Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                now += e.retry_after_ms.unwrap();
            }
        }
    }
    panic!("a batch of 5 at 10 a second still refused {now} ms later");
}

async fn stored_bytes_are_payloads_results_and_event_data(h: Harness) {
    let s = h.store.clone();
    assert_eq!(s.namespace_usage(&ns()).await.unwrap().bytes, 0);
    // Payloads of 5 and 7 bytes; the first completes with `{"ok":true}` (11).
    enqueue(&*s, &queue("q"), vec![job(r#"{"a":1}"#), job(r#""seven""#)]).await;
    let leased = lease(&*s, &queue("q"), 1, T0).await;
    ack(&*s, leased[0].lease_token, complete(), T0)
        .await
        .unwrap();
    // Event data of 2 and 8 bytes.
    let orders = TopicName::new("orders").unwrap();
    let event = |id: &str, data: &str| NewEvent {
        id: id.into(),
        generated_id: false,
        kind: String::new(),
        source: String::new(),
        key: None,
        time: T0,
        data: data.into(),
        headers: Default::default(),
    };
    s.events_publish(
        &ns(),
        &orders,
        vec![event("a", "{}"), event("b", "[1,2,34]")],
        T0,
    )
    .await
    .unwrap();
    // Another namespace's are not counted.
    let theirs = QueueRef {
        namespace: other(),
        queue: QueueName::new("q").unwrap(),
    };
    enqueue(&*s, &theirs, vec![job(r#""elsewhere""#)]).await;
    let bytes = s.namespace_usage(&ns()).await.unwrap().bytes;
    assert_eq!(bytes, 7 + 7 + 11 + 2 + 8);
    s.close().await;
    let s = (h.reopen)().await;
    assert_eq!(s.namespace_usage(&ns()).await.unwrap().bytes, bytes);
    assert_eq!(s.namespace_usage(&other()).await.unwrap().bytes, 11);
}
