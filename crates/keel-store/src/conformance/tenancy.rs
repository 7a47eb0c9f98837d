//! Namespaces are walls: what one namespace holds is neither visible nor
//! changeable through another, in the domains whose own cases do not
//! already check it (jobs, workflows, runs, sources, endpoints and
//! schedules do). The same names are used on both sides on purpose.

use std::collections::BTreeMap;

use keel_core::subscription::{DEFAULT_CONSUMER_TIMEOUT_MS, Filter, Start, SubscriptionSpec};
use keel_core::{NewEvent, TopicName, TopicPolicy};

use crate::EventQuery;

use super::*;

cases![
    topics_and_events_stay_in_their_namespace,
    subscriptions_stay_in_their_namespace,
    queue_policies_and_pauses_stay_in_their_namespace,
];

fn other() -> Namespace {
    Namespace::new("other").unwrap()
}

fn orders() -> TopicName {
    TopicName::new("orders").unwrap()
}

fn event(id: &str) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        generated_id: false,
        kind: "t".to_owned(),
        source: String::new(),
        key: None,
        time: T0,
        data: format!("{id:?}"),
        headers: BTreeMap::new(),
    }
}

fn not_found<T: std::fmt::Debug>(result: Result<T, keel_core::Error>) {
    assert_eq!(result.unwrap_err().code, ErrorCode::NotFound);
}

async fn topics_and_events_stay_in_their_namespace(h: Harness) {
    let s = &*h.store;
    s.events_publish(&ns(), &orders(), vec![event("e1"), event("e2")], T0)
        .await
        .unwrap();
    let read = EventQuery {
        after: 0,
        key: None,
        kind: None,
        limit: 100,
    };
    not_found(s.topic_get(&other(), &orders()).await);
    assert!(s.topics_list(&other()).await.unwrap().is_empty());
    not_found(s.events_read(&other(), &orders(), &read).await);
    not_found(s.event_get(&other(), &orders(), "e1").await);
    not_found(s.topic_delete(&other(), &orders()).await);

    // The same topic and event id elsewhere: a new topic, not a duplicate.
    let theirs = s
        .events_publish(&other(), &orders(), vec![event("e1")], at(1))
        .await
        .unwrap();
    assert_eq!((theirs[0].seq, theirs[0].duplicate), (1, false));
    let policy = TopicPolicy {
        max_event_bytes: 10,
        ..TopicPolicy::default()
    };
    s.topic_put(&other(), &orders(), &policy, at(2))
        .await
        .unwrap();
    s.topic_delete(&other(), &orders()).await.unwrap();

    let ours = s.topic_get(&ns(), &orders()).await.unwrap();
    assert_eq!(ours.head_seq, 2);
    assert_ne!(ours.policy.max_event_bytes, 10);
    let events = s.events_read(&ns(), &orders(), &read).await.unwrap();
    assert_eq!(events.len(), 2);
}

async fn subscriptions_stay_in_their_namespace(h: Harness) {
    let s = &*h.store;
    s.events_publish(&ns(), &orders(), vec![event("e1")], T0)
        .await
        .unwrap();
    let spec = SubscriptionSpec {
        topic: orders(),
        filter: Filter::default(),
        target: None,
        consumer_timeout_ms: DEFAULT_CONSUMER_TIMEOUT_MS,
    };
    s.subscription_put(&ns(), "audit", &spec, Start::Earliest, T0)
        .await
        .unwrap();
    not_found(s.subscription_get(&other(), "audit").await);
    assert!(
        s.subscriptions_list(Some(&other()), None)
            .await
            .unwrap()
            .is_empty()
    );
    not_found(s.subscription_pause(&other(), "audit", true).await);
    not_found(s.subscription_seek(&other(), "audit", Start::Latest).await);
    not_found(
        s.subscription_fetch(&other(), "audit", "c", 10, at(1))
            .await,
    );
    not_found(s.subscription_delete(&other(), "audit").await);

    // The same name elsewhere is a subscription of its own, on that
    // namespace's topic, which has no events.
    let (theirs, new) = s
        .subscription_put(&other(), "audit", &spec, Start::Earliest, at(1))
        .await
        .unwrap();
    assert!(new);
    assert_eq!(theirs.namespace, other());
    let fetched = s
        .subscription_fetch(&other(), "audit", "c", 10, at(2))
        .await
        .unwrap();
    assert!(fetched.events.is_empty(), "{fetched:?}");
    s.subscription_delete(&other(), "audit").await.unwrap();

    let ours = s
        .subscription_fetch(&ns(), "audit", "c", 10, at(3))
        .await
        .unwrap();
    assert_eq!(ours.events.len(), 1);
}

async fn queue_policies_and_pauses_stay_in_their_namespace(h: Harness) {
    let s = &*h.store;
    let ours = queue("emails");
    let theirs = QueueRef {
        namespace: other(),
        queue: ours.queue.clone(),
    };
    let policy = QueuePolicy {
        max_concurrency: Some(3),
        ..QueuePolicy::default()
    };
    s.queue_policy_set(&ours, policy.clone(), T0).await.unwrap();
    s.queue_pause(&ours, true, T0).await.unwrap();
    enqueue(s, &ours, vec![job("1")]).await;

    assert_eq!(
        s.queue_policy(&theirs).await.unwrap(),
        QueuePolicy::default()
    );
    let stats = s.queue_stats(&theirs).await.unwrap();
    assert!(!stats.paused);
    assert!(stats.counts.values().all(|n| *n == 0), "{stats:?}");
    enqueue(s, &theirs, vec![job("2")]).await;
    assert_eq!(payloads(&lease(s, &theirs, 10, at(1)).await), ["2"]);

    // Changing theirs leaves ours as it was.
    s.queue_pause(&theirs, true, at(2)).await.unwrap();
    s.queue_pause(&theirs, false, at(3)).await.unwrap();
    s.queue_policy_set(&theirs, QueuePolicy::default(), at(3))
        .await
        .unwrap();
    assert_eq!(s.queue_policy(&ours).await.unwrap(), policy);
    assert!(s.queue_stats(&ours).await.unwrap().paused);
    assert!(lease(s, &ours, 10, at(4)).await.is_empty());
}
