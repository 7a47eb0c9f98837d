//! Notifications. Settings: put (create, change, no change), get, list in
//! pages by kind, delete of several kinds at once, all per namespace.
//! Traffic: a notification accepted with its deliveries and their jobs in
//! one write, dedup keys and request keys held until they expire, deliveries
//! moved by compare-and-set with a fallback's job in the same write, the
//! inbox written once per delivery with seqs in order, marks and prunes.

use keel_core::NotificationId;
use keel_core::notification::{DeliveryAttempt, DeliveryStatus};
use serde_json::json;

use super::*;
use crate::{
    Accepted, DeliveryMove, Hold, InboxMark, InboxPage, NewDelivery, NewInboxMessage,
    NewNotification, NotificationQuery, RequestKey, Setting,
};

cases![
    settings_are_put_read_listed_and_deleted_by_kind,
    a_put_that_changes_nothing_keeps_updated_at,
    a_notification_is_accepted_with_its_jobs_and_a_dedup_key_holds_until_it_expires,
    a_request_key_replays_its_notification_and_refuses_another_request,
    a_delivery_moves_only_from_what_it_is_and_a_fallback_starts_with_the_move,
    the_inbox_is_written_once_per_delivery_in_order_and_marked,
    a_digest_key_folds_later_notifications_into_the_first,
];

async fn settings_are_put_read_listed_and_deleted_by_kind(h: Harness) {
    let s = h.store.clone();
    let email = json!({"email": {"smtp_url": "smtp://h", "from": "a@b"}});
    let (stored, created) = s
        .setting_put(&ns(), Setting::Channel, "mail", &email, T0)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (stored.name.as_str(), &stored.body, stored.created_at),
        ("mail", &email, T0)
    );
    let in_app = json!({"in_app": {}});
    let (changed, created) = s
        .setting_put(&ns(), Setting::Channel, "mail", &in_app, at(5))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!((changed.created_at, changed.updated_at), (T0, at(5)));
    for name in ["c", "a", "b"] {
        s.setting_put(&ns(), Setting::Channel, name, &in_app, at(6))
            .await
            .unwrap();
    }
    // The same name as another kind, and in another namespace, is another setting.
    s.setting_put(
        &ns(),
        Setting::Recipient,
        "a",
        &json!({"email": "a@b"}),
        at(6),
    )
    .await
    .unwrap();
    s.setting_put(
        &ns(),
        Setting::Preferences,
        "a",
        &json!({"channels": {"mail": false}}),
        at(6),
    )
    .await
    .unwrap();
    s.setting_put(
        &Namespace::new("other").unwrap(),
        Setting::Channel,
        "z",
        &in_app,
        at(6),
    )
    .await
    .unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let got = s
        .setting_get(&ns(), Setting::Channel, "mail")
        .await
        .unwrap();
    assert_eq!(got, Some(changed));
    assert_eq!(
        s.setting_get(&ns(), Setting::Template, "mail")
            .await
            .unwrap(),
        None
    );
    let names = |page: Vec<crate::StoredSetting>| -> Vec<String> {
        page.into_iter().map(|s| s.name).collect()
    };
    let all = s
        .settings_list(&ns(), Setting::Channel, None, 10)
        .await
        .unwrap();
    assert_eq!(names(all), ["a", "b", "c", "mail"]);
    let page = s
        .settings_list(&ns(), Setting::Channel, Some("b"), 1)
        .await
        .unwrap();
    assert_eq!(names(page), ["c"]);
    assert!(
        s.setting_delete(&ns(), &[Setting::Recipient, Setting::Preferences], "a")
            .await
            .unwrap()
    );
    assert_eq!(
        s.setting_get(&ns(), Setting::Recipient, "a").await.unwrap(),
        None
    );
    assert_eq!(
        s.setting_get(&ns(), Setting::Preferences, "a")
            .await
            .unwrap(),
        None
    );
    assert!(
        s.setting_get(&ns(), Setting::Channel, "a")
            .await
            .unwrap()
            .is_some(),
        "another kind of the same name stays"
    );
    assert!(
        !s.setting_delete(&ns(), &[Setting::Recipient], "a")
            .await
            .unwrap(),
        "gone already"
    );
    s.close().await;
}

async fn a_put_that_changes_nothing_keeps_updated_at(h: Harness) {
    let s = h.store.clone();
    let body = json!({"subject": "hi {{ data.name }}"});
    s.setting_put(&ns(), Setting::Template, "t", &body, T0)
        .await
        .unwrap();
    let (same, created) = s
        .setting_put(&ns(), Setting::Template, "t", &body, at(9))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(same.updated_at, T0);
    s.close().await;
}

fn nid(n: u8) -> NotificationId {
    NotificationId::from_bytes([n; 16])
}

/// A queued delivery on `channel` with its job on `keel.notify.{channel}`.
fn queued(id: u8, channel: &str, notification: NotificationId) -> NewDelivery {
    let job_id = JobId::from_bytes([id; 16]);
    NewDelivery {
        id: job_id,
        channel: channel.to_owned(),
        status: DeliveryStatus::Queued,
        fallback_of: None,
        job: Some(OwnedJob {
            queue: queue(&format!("keel.notify.{channel}")),
            id: job_id,
            job: job(&format!("{id}")),
            owner: Some(JobOwner::Notification { notification }),
        }),
    }
}

fn notification(
    n: u8,
    deliveries: Vec<NewDelivery>,
    dedup: Option<(&str, Timestamp)>,
) -> NewNotification {
    NewNotification {
        namespace: ns(),
        id: nid(n),
        recipient: "u1".to_owned(),
        category: Some("ci".to_owned()),
        body: json!({"subject": format!("n{n}")}),
        request: None,
        hold: dedup.map(|(key, expires_at)| Hold {
            key: key.to_owned(),
            expires_at,
            held: DeliveryStatus::SuppressedDuplicate,
        }),
        deliveries,
    }
}

fn attempt(outcome: &str, at: Timestamp) -> DeliveryAttempt {
    DeliveryAttempt {
        at,
        outcome: outcome.to_owned(),
        answer: Some("HTTP 200".to_owned()),
        latency_ms: 3,
    }
}

async fn a_notification_is_accepted_with_its_jobs_and_a_dedup_key_holds_until_it_expires(
    h: Harness,
) {
    let s = h.store.clone();
    let week = at(7 * 24 * 3_600_000);
    let mut suppressed = queued(3, "mail", nid(1));
    suppressed.status = DeliveryStatus::SuppressedPreference;
    suppressed.job = None;
    let first = notification(
        1,
        vec![
            queued(1, "inbox", nid(1)),
            queued(2, "ops", nid(1)),
            suppressed,
        ],
        Some(("k", week)),
    );
    let Accepted::New(n) = s.notification_accept(first, T0).await.unwrap() else {
        panic!("a new notification");
    };
    let statuses: Vec<(&str, DeliveryStatus)> = n
        .deliveries
        .iter()
        .map(|d| (d.channel.as_str(), d.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("inbox", DeliveryStatus::Queued),
            ("ops", DeliveryStatus::Queued),
            ("mail", DeliveryStatus::SuppressedPreference)
        ]
    );
    let leased = lease(&*s, &queue("keel.notify.inbox"), 10, T0).await;
    assert_eq!(
        leased.len(),
        1,
        "the queued deliveries' jobs were written with them"
    );
    assert_eq!(leased[0].id, JobId::from_bytes([1; 16]));
    assert!(
        lease(&*s, &queue("keel.notify.mail"), 10, T0)
            .await
            .is_empty(),
        "none for a suppressed one"
    );

    // The same key on one channel already held and one new: only the new one goes.
    let second = notification(
        2,
        vec![queued(4, "inbox", nid(2)), queued(5, "sms", nid(2))],
        Some(("k", week)),
    );
    let Accepted::New(n2) = s.notification_accept(second, at(10)).await.unwrap() else {
        panic!("a new notification");
    };
    assert_eq!(n2.deliveries[0].status, DeliveryStatus::SuppressedDuplicate);
    assert_eq!(n2.deliveries[0].duplicate_of, Some(nid(1)));
    assert_eq!(n2.deliveries[1].status, DeliveryStatus::Queued);
    assert!(
        lease(&*s, &queue("keel.notify.inbox"), 10, at(10))
            .await
            .is_empty(),
        "no second job"
    );

    // Every channel held: nothing is written, the first answers.
    let third = notification(3, vec![queued(6, "ops", nid(3))], Some(("k", week)));
    assert_eq!(
        s.notification_accept(third, at(20)).await.unwrap(),
        Accepted::Duplicate {
            first: nid(1),
            channels: vec!["ops".to_owned()]
        }
    );
    assert_eq!(s.notification_get(&ns(), &nid(3)).await.unwrap(), None);

    // Expired, the key is taken again.
    let later = notification(
        4,
        vec![queued(7, "ops", nid(4))],
        Some(("k", at(8 * 24 * 3_600_000 + 1000))),
    );
    let after = week.plus_ms(1);
    assert!(matches!(
        s.notification_accept(later, after).await.unwrap(),
        Accepted::New(_)
    ));

    s.close().await;
    let s = (h.reopen)().await;
    let got = s.notification_get(&ns(), &nid(1)).await.unwrap().unwrap();
    assert_eq!(
        (got.recipient.as_str(), got.category.as_deref()),
        ("u1", Some("ci"))
    );
    assert_eq!(got.body, json!({"subject": "n1"}));
    let page = |status, channel: Option<&str>, before| NotificationQuery {
        recipient: Some("u1".to_owned()),
        status,
        channel: channel.map(str::to_owned),
        before,
        limit: 10,
    };
    let ids = |found: Vec<crate::Notification>| found.into_iter().map(|n| n.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s
            .notifications_list(&ns(), &page(None, None, None))
            .await
            .unwrap()),
        [nid(4), nid(2), nid(1)]
    );
    assert_eq!(
        ids(s
            .notifications_list(
                &ns(),
                &page(Some(DeliveryStatus::SuppressedDuplicate), None, None)
            )
            .await
            .unwrap()),
        [nid(2)]
    );
    assert_eq!(
        ids(s
            .notifications_list(&ns(), &page(None, Some("sms"), None))
            .await
            .unwrap()),
        [nid(2)]
    );
    assert_eq!(
        ids(s
            .notifications_list(&ns(), &page(None, None, Some(nid(2))))
            .await
            .unwrap()),
        [nid(1)]
    );

    // Pruned: keys expired by then and notifications made before.
    assert_eq!(
        s.notifications_prune(at(30 * 24 * 3_600_000), at(15), 10)
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.notification_get(&ns(), &nid(1)).await.unwrap(), None);
    assert_eq!(
        s.delivery_get(&ns(), &JobId::from_bytes([1; 16]))
            .await
            .unwrap(),
        None
    );
    assert!(s.notification_get(&ns(), &nid(4)).await.unwrap().is_some());
    s.close().await;
}

async fn a_request_key_replays_its_notification_and_refuses_another_request(h: Harness) {
    let s = h.store.clone();
    let key = |digest: &str| RequestKey {
        key: "req-1".to_owned(),
        digest: digest.to_owned(),
        expires_at: at(86_400_000),
    };
    let mut first = notification(1, vec![queued(1, "inbox", nid(1))], None);
    first.request = Some(key("aaa"));
    assert!(matches!(
        s.notification_accept(first, T0).await.unwrap(),
        Accepted::New(_)
    ));
    let mut again = notification(2, vec![queued(2, "inbox", nid(2))], None);
    again.request = Some(key("aaa"));
    let Accepted::Replayed(n) = s.notification_accept(again, at(5)).await.unwrap() else {
        panic!("replayed");
    };
    assert_eq!(n.id, nid(1));
    assert_eq!(
        lease(&*s, &queue("keel.notify.inbox"), 10, at(5))
            .await
            .len(),
        1,
        "one job"
    );
    let mut other = notification(3, vec![queued(3, "inbox", nid(3))], None);
    other.request = Some(key("bbb"));
    let refused = s.notification_accept(other, at(6)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::IdempotencyKeyReused);
    let mut expired = notification(4, vec![queued(4, "inbox", nid(4))], None);
    expired.request = Some(RequestKey {
        expires_at: at(2 * 86_400_000),
        ..key("ccc")
    });
    assert!(matches!(
        s.notification_accept(expired, at(86_400_000))
            .await
            .unwrap(),
        Accepted::New(_)
    ));
    s.close().await;
}

async fn a_delivery_moves_only_from_what_it_is_and_a_fallback_starts_with_the_move(h: Harness) {
    let s = h.store.clone();
    s.notification_accept(notification(1, vec![queued(1, "ops", nid(1))], None), T0)
        .await
        .unwrap();
    let d1 = JobId::from_bytes([1; 16]);
    let to = |from: Vec<DeliveryStatus>, to, then| DeliveryMove {
        id: d1,
        from,
        to,
        attempt: Some(attempt("x", at(1))),
        then,
    };
    let was = s
        .delivery_move(
            &ns(),
            to(vec![DeliveryStatus::Queued], DeliveryStatus::Sending, None),
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(was, DeliveryStatus::Queued);
    let was = s
        .delivery_move(
            &ns(),
            to(vec![DeliveryStatus::Queued], DeliveryStatus::Sending, None),
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(
        was,
        DeliveryStatus::Sending,
        "not moved: it is sending already"
    );
    let mut fallback = queued(2, "inbox", nid(1));
    fallback.fallback_of = Some(d1);
    let was = s
        .delivery_move(
            &ns(),
            to(
                vec![DeliveryStatus::Sending],
                DeliveryStatus::Failed,
                Some(fallback),
            ),
            at(3),
        )
        .await
        .unwrap();
    assert_eq!(was, DeliveryStatus::Sending);
    let n = s.notification_get(&ns(), &nid(1)).await.unwrap().unwrap();
    assert_eq!(n.deliveries.len(), 2);
    assert_eq!(
        (n.deliveries[0].status, n.deliveries[0].attempts.len()),
        (DeliveryStatus::Failed, 2)
    );
    assert_eq!(
        (
            n.deliveries[1].channel.as_str(),
            n.deliveries[1].fallback_of
        ),
        ("inbox", Some(d1))
    );
    assert_eq!(
        lease(&*s, &queue("keel.notify.inbox"), 10, at(3))
            .await
            .len(),
        1,
        "the fallback's job"
    );
    let missing = DeliveryMove {
        id: JobId::from_bytes([9; 16]),
        ..to(vec![], DeliveryStatus::Sent, None)
    };
    assert_eq!(
        s.delivery_move(&ns(), missing, at(4))
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    s.close().await;
}

async fn the_inbox_is_written_once_per_delivery_in_order_and_marked(h: Harness) {
    let s = h.store.clone();
    let deliveries = (1..=3)
        .map(|i| queued(i, &format!("c{i}"), nid(1)))
        .collect();
    s.notification_accept(notification(1, deliveries, None), T0)
        .await
        .unwrap();
    let message = |i: u8| NewInboxMessage {
        recipient: "u1".to_owned(),
        delivery: JobId::from_bytes([i; 16]),
        notification: nid(1),
        category: None,
        content: json!({"title": format!("t{i}"), "body": ""}),
    };
    assert_eq!(
        s.inbox_put(&ns(), message(1), attempt("sent", at(1)), at(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.inbox_put(&ns(), message(2), attempt("sent", at(2)), at(2))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.inbox_put(&ns(), message(1), attempt("sent", at(3)), at(3))
            .await
            .unwrap(),
        1,
        "a delivery's job run again writes nothing"
    );
    assert_eq!(
        s.inbox_put(&ns(), message(3), attempt("sent", at(4)), at(4))
            .await
            .unwrap(),
        3
    );
    let d1 = s
        .delivery_get(&ns(), &JobId::from_bytes([1; 16]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d1.status, d1.attempts.len()), (DeliveryStatus::Sent, 1));
    let seqs = |m: Vec<crate::InboxMessage>| m.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    let (page, unread) = s
        .inbox_list(&ns(), "u1", InboxPage::Before(None), 2)
        .await
        .unwrap();
    assert_eq!((seqs(page), unread), (vec![3, 2], 3));
    let (page, _) = s
        .inbox_list(&ns(), "u1", InboxPage::Before(Some(2)), 10)
        .await
        .unwrap();
    assert_eq!(seqs(page), [1]);
    let (page, _) = s
        .inbox_list(&ns(), "u1", InboxPage::After(1), 10)
        .await
        .unwrap();
    assert_eq!(seqs(page), [2, 3]);
    assert_eq!(
        s.inbox_mark(&ns(), "u1", InboxMark::Read, Some(vec![1, 2]), at(5))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.inbox_mark(&ns(), "u1", InboxMark::Read, None, at(6))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.inbox_mark(&ns(), "u1", InboxMark::Archived, Some(vec![3]), at(6))
            .await
            .unwrap(),
        1
    );
    s.close().await;
    let s = (h.reopen)().await;
    let (page, unread) = s
        .inbox_list(&ns(), "u1", InboxPage::Before(None), 10)
        .await
        .unwrap();
    assert_eq!(unread, 0);
    assert_eq!(
        page.iter().map(|m| m.read_at).collect::<Vec<_>>(),
        [Some(at(5)), Some(at(5))]
    );
    assert_eq!(page[0].content["title"], "t2");
    let (all, _) = s
        .inbox_list(&ns(), "u1", InboxPage::After(0), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "a stream sees archived messages too");
    let (other, unread) = s
        .inbox_list(&ns(), "u2", InboxPage::Before(None), 10)
        .await
        .unwrap();
    assert_eq!((other.len(), unread), (0, 0));
    s.close().await;
}

async fn a_digest_key_folds_later_notifications_into_the_first(h: Harness) {
    let s = h.store.clone();
    let window = at(60_000);
    let digest = |n: u8, id: u8| {
        let mut new = notification(n, vec![queued(id, "mail", nid(n))], None);
        new.hold = Some(Hold {
            key: "digest:daily".to_owned(),
            expires_at: window,
            held: DeliveryStatus::Digested,
        });
        new
    };
    let Accepted::New(first) = s.notification_accept(digest(1, 1), T0).await.unwrap() else {
        panic!("new");
    };
    assert_eq!(first.deliveries[0].status, DeliveryStatus::Queued);
    for (n, id) in [(2, 2), (3, 3)] {
        let Accepted::New(later) = s
            .notification_accept(digest(n, id), at(n as u64))
            .await
            .unwrap()
        else {
            panic!("a digested notification is written");
        };
        assert_eq!(later.deliveries[0].status, DeliveryStatus::Digested);
        assert_eq!(later.deliveries[0].duplicate_of, Some(nid(1)));
    }
    assert_eq!(
        lease(&*s, &queue("keel.notify.mail"), 10, at(5))
            .await
            .len(),
        1,
        "one job: the digest's"
    );
    let folded = s
        .notifications_digested(&ns(), &nid(1), "mail", 10)
        .await
        .unwrap();
    assert_eq!(
        folded.iter().map(|n| n.id).collect::<Vec<_>>(),
        [nid(2), nid(3)]
    );
    assert!(
        s.notifications_digested(&ns(), &nid(1), "sms", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // After the window, the key starts a new digest.
    let Accepted::New(next) = s
        .notification_accept(digest(4, 4), window.plus_ms(1))
        .await
        .unwrap()
    else {
        panic!("new");
    };
    assert_eq!(next.deliveries[0].status, DeliveryStatus::Queued);
    s.close().await;
}
