//! Subscriptions: where they start, hand-offs with their jobs, pulled
//! fetches and commits with per-key claims, timeouts, seeks, retention.

use std::collections::BTreeMap;

use keel_core::subscription::{
    DEFAULT_CONSUMER_TIMEOUT_MS, Filter, Start, SubscriptionSpec, Target,
};
use keel_core::{NewEvent, TopicName, TopicPolicy};

use super::*;

cases![
    subscriptions_start_where_asked_and_keep_their_position,
    a_handoff_moves_the_position_with_its_jobs_or_not_at_all,
    pulled_fetches_keep_each_key_in_order_across_consumers,
    expired_claims_go_again_and_stale_commits_are_refused,
    filters_seeks_and_targets_shape_what_is_fetched,
    events_removed_by_retention_are_counted_as_skipped,
];

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

pub(super) fn spec(topic_name: &str) -> SubscriptionSpec {
    SubscriptionSpec {
        topic: topic(topic_name),
        filter: Filter::default(),
        target: None,
        consumer_timeout_ms: DEFAULT_CONSUMER_TIMEOUT_MS,
    }
}

fn event(id: &str, key: Option<&str>) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        generated_id: false,
        kind: "t".to_owned(),
        source: String::new(),
        key: key.map(str::to_owned),
        time: T0,
        data: format!("{id:?}"),
        headers: BTreeMap::new(),
    }
}

async fn publish(s: &dyn Store, events: Vec<NewEvent>, now: Timestamp) {
    s.events_publish(&ns(), &topic("orders"), events, now)
        .await
        .unwrap();
}

fn ids(events: &[keel_core::Event]) -> Vec<&str> {
    events.iter().map(|e| e.event.id.as_str()).collect()
}

async fn subscriptions_start_where_asked_and_keep_their_position(h: Harness) {
    let s = h.store.clone();
    publish(&*s, vec![event("a", None), event("b", None)], T0).await;
    publish(&*s, vec![event("c", None)], at(10_000)).await;
    let starts = [
        ("from-earliest", Start::Earliest, 0),
        ("from-latest", Start::Latest, 3),
        ("from-seq", Start::Seq(2), 1),
        ("from-time", Start::Time(at(5_000)), 2),
    ];
    for (name, start, position) in starts {
        let (sub, created) = s
            .subscription_put(&ns(), name, &spec("orders"), start, T0)
            .await
            .unwrap();
        assert!(created);
        assert_eq!((sub.position, sub.head_seq), (position, 3), "{name}");
        assert_eq!(sub.lag(), 3 - position);
    }
    // A subscription may come before its topic.
    let (early, _) = s
        .subscription_put(&ns(), "early", &spec("later"), Start::Latest, T0)
        .await
        .unwrap();
    assert_eq!((early.position, early.head_seq), (0, 0));
    // Updating keeps the position; the topic cannot change.
    let mut changed = spec("orders");
    changed.filter.types = vec!["x.*".into()];
    let (sub, created) = s
        .subscription_put(&ns(), "from-seq", &changed, Start::Latest, at(1))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!((sub.position, sub.spec.filter.types.len()), (1, 1));
    let err = s
        .subscription_put(&ns(), "from-seq", &spec("other"), Start::Latest, at(1))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    s.close().await;
    let s = (h.reopen)().await;
    let got = s.subscription_get(&ns(), "from-seq").await.unwrap();
    assert_eq!(got.spec, changed);
    assert_eq!(got.created_at, T0);
    let of_orders = s
        .subscriptions_list(Some(&ns()), Some(&topic("orders")))
        .await
        .unwrap();
    assert_eq!(of_orders.len(), 4);
    assert_eq!(s.subscriptions_list(None, None).await.unwrap().len(), 5);
    s.subscription_delete(&ns(), "early").await.unwrap();
    assert_eq!(
        s.subscription_get(&ns(), "early").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        s.subscription_delete(&ns(), "early")
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let paused = s.subscription_pause(&ns(), "from-seq", true).await.unwrap();
    assert!(paused.paused);
    // Deleting the topic removes its subscriptions.
    s.topic_delete(&ns(), &topic("orders")).await.unwrap();
    assert!(s.subscriptions_list(None, None).await.unwrap().is_empty());
}

async fn a_handoff_moves_the_position_with_its_jobs_or_not_at_all(h: Harness) {
    let s = h.store.clone();
    publish(&*s, vec![event("a", Some("k")), event("b", Some("k"))], T0).await;
    let mut target_spec = spec("orders");
    target_spec.target = Some(Target::Queue {
        queue: QueueName::new("billing").unwrap(),
        job: None,
    });
    s.subscription_put(&ns(), "bill", &target_spec, Start::Earliest, T0)
        .await
        .unwrap();
    let q = queue("billing");
    let owned = |seq: u64| OwnedJob {
        queue: q.clone(),
        id: keel_core::JobIdGenerator::default().next(T0),
        job: job(&seq.to_string()),
        owner: Some(JobOwner::Subscription {
            subscription: "bill".into(),
            seq,
        }),
    };
    assert!(
        s.subscription_handoff(&ns(), "bill", 0, 2, 2, 0, vec![owned(1), owned(2)], T0)
            .await
            .unwrap()
    );
    // A second hand-off from the old position (another node) writes nothing.
    assert!(
        !s.subscription_handoff(&ns(), "bill", 0, 2, 2, 0, vec![owned(1)], T0)
            .await
            .unwrap()
    );
    s.close().await;
    let s = (h.reopen)().await;
    let sub = s.subscription_get(&ns(), "bill").await.unwrap();
    assert_eq!((sub.position, sub.delivered, sub.lag()), (2, 2, 0));
    let leased = lease(&*s, &q, 10, T0).await;
    assert_eq!(payloads(&leased), ["1", "2"]);
}

async fn pulled_fetches_keep_each_key_in_order_across_consumers(h: Harness) {
    let s = &*h.store;
    s.subscription_put(&ns(), "pull", &spec("orders"), Start::Earliest, T0)
        .await
        .unwrap();
    publish(
        s,
        vec![
            event("a1", Some("a")),
            event("b1", Some("b")),
            event("a2", Some("a")),
            event("c1", None),
        ],
        T0,
    )
    .await;
    let first = s
        .subscription_fetch(&ns(), "pull", "c1", 1, T0)
        .await
        .unwrap();
    assert_eq!(ids(&first.events), ["a1"]);
    let second = s
        .subscription_fetch(&ns(), "pull", "c2", 10, T0)
        .await
        .unwrap();
    assert_eq!(ids(&second.events), ["b1", "c1"], "a2 waits for a1");
    let idle = s
        .subscription_fetch(&ns(), "pull", "c3", 10, T0)
        .await
        .unwrap();
    assert!(idle.events.is_empty() && idle.cursor.is_none());
    s.subscription_commit(&ns(), "pull", "c1", &first.cursor.unwrap(), at(1))
        .await
        .unwrap();
    assert_eq!(s.subscription_get(&ns(), "pull").await.unwrap().position, 1);
    let third = s
        .subscription_fetch(&ns(), "pull", "c3", 10, at(2))
        .await
        .unwrap();
    assert_eq!(ids(&third.events), ["a2"]);
    let second_cursor = second.cursor.unwrap();
    let committed = s
        .subscription_commit(&ns(), "pull", "c2", &second_cursor, at(3))
        .await
        .unwrap();
    assert_eq!(committed, 2);
    // Committing again is harmless, and commits nothing more.
    let again = s
        .subscription_commit(&ns(), "pull", "c2", &second_cursor, at(3))
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(s.subscription_get(&ns(), "pull").await.unwrap().position, 2);
    s.subscription_commit(&ns(), "pull", "c3", &third.cursor.unwrap(), at(4))
        .await
        .unwrap();
    let sub = s.subscription_get(&ns(), "pull").await.unwrap();
    assert_eq!((sub.position, sub.delivered, sub.lag()), (4, 4, 0));
    let err = s
        .subscription_commit(&ns(), "pull", "c1", "no-such-cursor", at(5))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CursorStale);
}

async fn expired_claims_go_again_and_stale_commits_are_refused(h: Harness) {
    let s = h.store.clone();
    s.subscription_put(&ns(), "pull", &spec("orders"), Start::Earliest, T0)
        .await
        .unwrap();
    publish(
        &*s,
        vec![event("a1", Some("a")), event("a2", Some("a"))],
        T0,
    )
    .await;
    let lost = s
        .subscription_fetch(&ns(), "pull", "c1", 1, T0)
        .await
        .unwrap();
    assert_eq!(ids(&lost.events), ["a1"]);
    let early = s
        .subscription_fetch(&ns(), "pull", "c2", 10, at(29_000))
        .await
        .unwrap();
    assert!(early.events.is_empty(), "a1's claim still holds its key");
    s.close().await;
    let s = (h.reopen)().await;
    let again = s
        .subscription_fetch(&ns(), "pull", "c2", 10, at(31_000))
        .await
        .unwrap();
    assert_eq!(
        ids(&again.events),
        ["a1", "a2"],
        "in order, to the next consumer"
    );
    let err = s
        .subscription_commit(&ns(), "pull", "c1", &lost.cursor.unwrap(), at(31_500))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CursorStale);
    s.subscription_commit(&ns(), "pull", "c2", &again.cursor.unwrap(), at(32_000))
        .await
        .unwrap();
    assert_eq!(s.subscription_get(&ns(), "pull").await.unwrap().position, 2);
}

async fn filters_seeks_and_targets_shape_what_is_fetched(h: Harness) {
    let s = &*h.store;
    let mut paid = spec("orders");
    paid.filter = Filter {
        types: vec!["order.paid".into()],
        condition: Some("event.data.total > 100".into()),
    };
    s.subscription_put(&ns(), "big", &paid, Start::Earliest, T0)
        .await
        .unwrap();
    let mut batch = Vec::new();
    for (i, (kind, total)) in [
        ("order.paid", 150),
        ("order.created", 500),
        ("order.paid", 50),
        ("order.paid", 101),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = event(&format!("e{i}"), None);
        e.kind = kind.into();
        e.data = format!(r#"{{"total":{total}}}"#);
        batch.push(e);
    }
    publish(s, batch, T0).await;
    let got = s
        .subscription_fetch(&ns(), "big", "c", 10, T0)
        .await
        .unwrap();
    assert_eq!(ids(&got.events), ["e0", "e3"]);
    s.subscription_commit(&ns(), "big", "c", &got.cursor.unwrap(), T0)
        .await
        .unwrap();
    let sub = s.subscription_get(&ns(), "big").await.unwrap();
    assert_eq!(
        (sub.position, sub.delivered),
        (4, 2),
        "passes the events it does not want"
    );
    let replay = s
        .subscription_seek(&ns(), "big", Start::Seq(2))
        .await
        .unwrap();
    assert_eq!(replay.position, 1);
    let again = s
        .subscription_fetch(&ns(), "big", "c", 10, T0)
        .await
        .unwrap();
    assert_eq!(ids(&again.events), ["e3"]);
    let mut targeted = spec("orders");
    targeted.target = Some(Target::Workflow {
        workflow: keel_core::WorkflowName::new("onboard").unwrap(),
        input: None,
    });
    s.subscription_put(&ns(), "runs", &targeted, Start::Earliest, T0)
        .await
        .unwrap();
    let err = s
        .subscription_fetch(&ns(), "runs", "c", 10, T0)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HasTarget);
}

async fn events_removed_by_retention_are_counted_as_skipped(h: Harness) {
    let s = &*h.store;
    let policy = TopicPolicy {
        retention_ms: 60_000,
        ..TopicPolicy::default()
    };
    s.topic_put(&ns(), &topic("orders"), &policy, T0)
        .await
        .unwrap();
    s.subscription_put(&ns(), "slow", &spec("orders"), Start::Earliest, T0)
        .await
        .unwrap();
    publish(s, vec![event("old1", None), event("old2", None)], T0).await;
    publish(s, vec![event("new", None)], at(50_000)).await;
    assert_eq!(s.events_prune(at(61_000), 100).await.unwrap(), 2);
    let got = s
        .subscription_fetch(&ns(), "slow", "c", 10, at(61_000))
        .await
        .unwrap();
    assert_eq!(ids(&got.events), ["new"]);
    let sub = s.subscription_get(&ns(), "slow").await.unwrap();
    assert_eq!((sub.skipped, sub.position), (2, 2));
}
