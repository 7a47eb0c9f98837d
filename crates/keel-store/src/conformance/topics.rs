//! Topics and their events: policies, atomic and deduplicated publishing,
//! reading history, retention.

use std::collections::BTreeMap;

use keel_core::{NewEvent, TopicName, TopicPolicy};

use super::*;
use crate::EventQuery;

cases![
    topics_exist_once_put_or_published,
    publishing_gives_increasing_seqs_and_survives_reopen,
    duplicate_ids_within_the_window_store_nothing,
    large_batches_keep_every_field_and_generated_ids_stay_findable,
    one_bad_event_refuses_the_batch,
    events_are_read_after_a_seq_filtered_and_paged,
    retention_removes_old_events_only,
    deleting_a_topic_removes_its_events,
];

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn event(id: &str, key: Option<&str>, data: &str) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        generated_id: false,
        kind: "order.created".to_owned(),
        source: "/shop".to_owned(),
        key: key.map(str::to_owned),
        time: T0,
        data: data.to_owned(),
        headers: BTreeMap::from([("trace".to_owned(), "t1".to_owned())]),
    }
}

fn after(after: u64, limit: u32) -> EventQuery {
    EventQuery {
        after,
        key: None,
        kind: None,
        limit,
    }
}

async fn topics_exist_once_put_or_published(h: Harness) {
    let s = &*h.store;
    let orders = topic("orders");
    assert_eq!(
        s.topic_get(&ns(), &orders).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        s.events_read(&ns(), &orders, &after(0, 10))
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    let policy = TopicPolicy {
        retention_ms: 60_000,
        ..TopicPolicy::default()
    };
    let (made, created) = s.topic_put(&ns(), &orders, &policy, T0).await.unwrap();
    assert!(created);
    assert_eq!((made.policy, made.head_seq, made.events), (policy, 0, 0));
    let (again, created) = s.topic_put(&ns(), &orders, &policy, at(5)).await.unwrap();
    assert!(!created);
    assert_eq!(again.created_at, T0);
    s.events_publish(&ns(), &topic("audit"), vec![event("a", None, "1")], at(1))
        .await
        .unwrap();
    let audit = s.topic_get(&ns(), &topic("audit")).await.unwrap();
    assert_eq!(
        (audit.policy, audit.head_seq, audit.events),
        (TopicPolicy::default(), 1, 1)
    );
    let names: Vec<String> = s
        .topics_list(&ns())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["audit", "orders"]);
    let other = Namespace::new("other").unwrap();
    assert!(s.topics_list(&other).await.unwrap().is_empty());
}

async fn publishing_gives_increasing_seqs_and_survives_reopen(h: Harness) {
    let s = h.store.clone();
    let orders = topic("orders");
    let first = s
        .events_publish(
            &ns(),
            &orders,
            vec![event("a", Some("k1"), r#"{"n":1}"#)],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        first,
        [Published {
            id: "a".into(),
            seq: 1,
            duplicate: false
        }]
    );
    let batch = s
        .events_publish(
            &ns(),
            &orders,
            vec![event("b", Some("k1"), "2"), event("c", None, "3")],
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(batch.iter().map(|p| p.seq).collect::<Vec<_>>(), [2, 3]);
    s.close().await;
    let s = (h.reopen)().await;
    let events = s.events_read(&ns(), &orders, &after(0, 10)).await.unwrap();
    assert_eq!(events.len(), 3);
    let a = &events[0];
    assert_eq!((a.seq, a.published_at), (1, T0));
    assert_eq!(a.event, event("a", Some("k1"), r#"{"n":1}"#));
    assert_eq!(events[2].event.key, None);
    let got = s.event_get(&ns(), &orders, "b").await.unwrap();
    assert_eq!((got.seq, got.event.data.as_str()), (2, "2"));
    assert_eq!(
        s.event_get(&ns(), &orders, "zz").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(s.topic_get(&ns(), &orders).await.unwrap().head_seq, 3);
}

async fn duplicate_ids_within_the_window_store_nothing(h: Harness) {
    let s = &*h.store;
    let orders = topic("orders");
    let policy = TopicPolicy {
        dedup_window_ms: 10_000,
        ..TopicPolicy::default()
    };
    s.topic_put(&ns(), &orders, &policy, T0).await.unwrap();
    s.events_publish(&ns(), &orders, vec![event("a", None, "1")], T0)
        .await
        .unwrap();
    let again = s
        .events_publish(
            &ns(),
            &orders,
            vec![
                event("a", None, "changed"),
                event("b", None, "2"),
                event("b", None, "2 again"),
            ],
            at(5_000),
        )
        .await
        .unwrap();
    let seen: Vec<(u64, bool)> = again.iter().map(|p| (p.seq, p.duplicate)).collect();
    assert_eq!(seen, [(1, true), (2, false), (2, true)]);
    let stored = s.events_read(&ns(), &orders, &after(0, 10)).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].event.data, "1");
    // Past the window the same id is a new event.
    let late = s
        .events_publish(&ns(), &orders, vec![event("a", None, "late")], at(20_000))
        .await
        .unwrap();
    assert_eq!((late[0].seq, late[0].duplicate), (3, false));
    assert_eq!(
        s.event_get(&ns(), &orders, "a").await.unwrap().event.data,
        "late"
    );
}

/// 70 events: more than one multi-row statement and a remainder, with ids
/// Keel generated (published without a dedup lookup) among them.
async fn large_batches_keep_every_field_and_generated_ids_stay_findable(h: Harness) {
    let s = &*h.store;
    let orders = topic("orders");
    let batch: Vec<NewEvent> = (0..70)
        .map(|i| NewEvent {
            generated_id: i % 2 == 0,
            key: (i % 3 == 0).then(|| format!("k{i}")),
            headers: if i % 5 == 0 {
                BTreeMap::new()
            } else {
                BTreeMap::from([("n".to_owned(), i.to_string())])
            },
            ..event(&format!("e{i}"), None, &i.to_string())
        })
        .collect();
    let published = s
        .events_publish(&ns(), &orders, batch.clone(), T0)
        .await
        .unwrap();
    let seqs: Vec<(u64, bool)> = published.iter().map(|p| (p.seq, p.duplicate)).collect();
    assert_eq!(seqs, (1..=70).map(|seq| (seq, false)).collect::<Vec<_>>());
    let stored = s.events_read(&ns(), &orders, &after(0, 100)).await.unwrap();
    assert_eq!(stored.len(), 70);
    for (seq, (got, sent)) in (1..).zip(stored.iter().zip(&batch)) {
        assert_eq!(got.seq, seq);
        let sent = NewEvent {
            generated_id: false,
            ..sent.clone()
        };
        assert_eq!(got.event, sent);
    }
    // A generated id is found by id, and sent again by a publisher it is a
    // duplicate.
    assert_eq!(s.event_get(&ns(), &orders, "e4").await.unwrap().seq, 5);
    let again = s
        .events_publish(&ns(), &orders, vec![event("e4", None, "again")], at(1))
        .await
        .unwrap();
    assert_eq!((again[0].seq, again[0].duplicate), (5, true));
}

async fn one_bad_event_refuses_the_batch(h: Harness) {
    let s = &*h.store;
    let orders = topic("orders");
    let policy = TopicPolicy {
        max_event_bytes: 8,
        ..TopicPolicy::default()
    };
    s.topic_put(&ns(), &orders, &policy, T0).await.unwrap();
    let err = s
        .events_publish(
            &ns(),
            &orders,
            vec![event("a", None, "1"), event("b", None, r#""far too long""#)],
            T0,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    let t = s.topic_get(&ns(), &orders).await.unwrap();
    assert_eq!((t.head_seq, t.events), (0, 0));
    assert!(
        s.events_read(&ns(), &orders, &after(0, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn events_are_read_after_a_seq_filtered_and_paged(h: Harness) {
    let s = &*h.store;
    let orders = topic("orders");
    let mut batch = Vec::new();
    for i in 1..=6 {
        let key = if i % 2 == 0 { "even" } else { "odd" };
        let mut e = event(&format!("e{i}"), Some(key), &i.to_string());
        if i == 5 {
            e.kind = "order.paid".into();
        }
        batch.push(e);
    }
    s.events_publish(&ns(), &orders, batch, T0).await.unwrap();
    let seqs = |events: Vec<keel_core::Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.events_read(&ns(), &orders, &after(2, 3)).await.unwrap()),
        [3, 4, 5]
    );
    let even = EventQuery {
        key: Some("even".into()),
        ..after(0, 10)
    };
    assert_eq!(
        seqs(s.events_read(&ns(), &orders, &even).await.unwrap()),
        [2, 4, 6]
    );
    let paid = EventQuery {
        kind: Some("order.paid".into()),
        ..after(0, 10)
    };
    assert_eq!(
        seqs(s.events_read(&ns(), &orders, &paid).await.unwrap()),
        [5]
    );
    assert!(
        s.events_read(&ns(), &orders, &after(6, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn retention_removes_old_events_only(h: Harness) {
    let s = &*h.store;
    let orders = topic("orders");
    let policy = TopicPolicy {
        retention_ms: 60_000,
        ..TopicPolicy::default()
    };
    s.topic_put(&ns(), &orders, &policy, T0).await.unwrap();
    s.events_publish(&ns(), &orders, vec![event("old", None, "1")], T0)
        .await
        .unwrap();
    s.events_publish(&ns(), &orders, vec![event("new", None, "2")], at(30_000))
        .await
        .unwrap();
    assert_eq!(s.events_prune(at(59_000), 100).await.unwrap(), 0);
    assert_eq!(s.events_prune(at(61_000), 100).await.unwrap(), 1);
    let kept = s.events_read(&ns(), &orders, &after(0, 10)).await.unwrap();
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    let t = s.topic_get(&ns(), &orders).await.unwrap();
    assert_eq!((t.head_seq, t.events), (2, 1));
    // Seqs keep counting from the head, never reused.
    let next = s
        .events_publish(&ns(), &orders, vec![event("next", None, "3")], at(61_000))
        .await
        .unwrap();
    assert_eq!(next[0].seq, 3);
}

async fn deleting_a_topic_removes_its_events(h: Harness) {
    let s = &*h.store;
    let orders = topic("orders");
    s.events_publish(&ns(), &orders, vec![event("a", None, "1")], T0)
        .await
        .unwrap();
    s.topic_delete(&ns(), &orders).await.unwrap();
    assert_eq!(
        s.topic_get(&ns(), &orders).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        s.topic_delete(&ns(), &orders).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // Published again, it starts over, with none of the old events.
    let again = s
        .events_publish(&ns(), &orders, vec![event("a", None, "2")], at(1))
        .await
        .unwrap();
    assert_eq!((again[0].seq, again[0].duplicate), (1, false));
}
