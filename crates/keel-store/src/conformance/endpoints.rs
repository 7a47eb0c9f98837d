//! Endpoints: put (create, keep or set the secret, no change), rotate,
//! disable and enable, the attempts log and the health it moves, pruning,
//! and push queues found by their policy.

use keel_core::EndpointName;
use keel_core::endpoint::{EndpointSpec, endpoint_queue};
use keel_core::policy::Push;

use super::*;
use crate::{AttemptQuery, NewAttempt, SecretChoice, endpoint_not_found};

cases![
    endpoints_are_put_rotated_listed_and_deleted,
    attempts_are_logged_paged_and_move_health,
    disabling_reports_the_change_once,
    a_disabled_endpoint_has_nothing_leased_until_enabled,
    attempts_are_pruned_in_bounded_chunks,
    push_queues_are_listed_with_their_policy,
];

fn name(n: &str) -> EndpointName {
    EndpointName::new(n).unwrap()
}

fn spec(url: &str) -> EndpointSpec {
    serde_json::from_value(serde_json::json!({"url": url, "ordered": true})).unwrap()
}

fn attempt(endpoint: &str, n: u64, succeeded: bool) -> NewAttempt {
    NewAttempt {
        namespace: ns(),
        endpoint: name(endpoint),
        message_id: format!("msg_{n}"),
        job_id: JobId::from_bytes([n as u8; 16]),
        at: at(n),
        succeeded,
        http_status: Some(if succeeded { 200 } else { 500 }),
        latency_ms: n,
        response_excerpt: Some(format!("body {n}")),
        error: (!succeeded).then(|| "500 Internal Server Error".to_owned()),
    }
}

async fn endpoints_are_put_rotated_listed_and_deleted(h: Harness) {
    let s = h.store.clone();
    let crm = name("crm");
    let keep = |s: &str| SecretChoice::KeepOr(s.to_owned());
    let (made, created) = s
        .endpoint_put(&ns(), &crm, &spec("https://a"), keep("whsec_one"), T0)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(made.secrets.current, "whsec_one");
    assert_eq!(made.spec, spec("https://a"));
    let (same, created) = s
        .endpoint_put(&ns(), &crm, &spec("https://a"), keep("whsec_other"), at(1))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        (same.secrets.current.as_str(), same.updated_at),
        ("whsec_one", T0)
    );
    let (set, _) = s
        .endpoint_put(
            &ns(),
            &crm,
            &spec("https://b"),
            SecretChoice::Set("whsec_two".into()),
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(
        (set.secrets.current.as_str(), set.updated_at),
        ("whsec_two", at(2))
    );
    let rotated = s
        .endpoint_rotate(&ns(), &crm, "whsec_three".into(), at(3))
        .await
        .unwrap();
    assert_eq!(rotated.secrets.signing(at(4)), ["whsec_three", "whsec_two"]);
    s.endpoint_put(
        &Namespace::new("other").unwrap(),
        &crm,
        &spec("https://c"),
        keep("whsec_x"),
        T0,
    )
    .await
    .unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    assert_eq!(s.endpoint_get(&ns(), &crm).await.unwrap(), rotated);
    assert_eq!(s.endpoints_list(Some(&ns())).await.unwrap(), [rotated]);
    assert_eq!(s.endpoints_list(None).await.unwrap().len(), 2);
    s.attempts_record(vec![attempt("crm", 1, true)])
        .await
        .unwrap();
    s.endpoint_delete(&ns(), &crm).await.unwrap();
    assert_eq!(
        s.endpoint_get(&ns(), &crm).await.unwrap_err(),
        endpoint_not_found("crm")
    );
    assert_eq!(
        s.endpoint_delete(&ns(), &crm).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let query = AttemptQuery {
        limit: 10,
        ..Default::default()
    };
    s.endpoint_put(&ns(), &crm, &spec("https://a"), keep("whsec_one"), T0)
        .await
        .unwrap();
    assert!(
        s.attempts_list(&ns(), &crm, &query)
            .await
            .unwrap()
            .is_empty(),
        "attempts go with it"
    );
}

async fn attempts_are_logged_paged_and_move_health(h: Harness) {
    let s = &*h.store;
    let keep = SecretChoice::KeepOr("whsec_one".into());
    s.endpoint_put(&ns(), &name("a"), &spec("https://a"), keep.clone(), T0)
        .await
        .unwrap();
    s.endpoint_put(&ns(), &name("b"), &spec("https://b"), keep, T0)
        .await
        .unwrap();
    let touched = s
        .attempts_record(vec![
            attempt("a", 1, false),
            attempt("b", 2, true),
            attempt("a", 3, false),
            attempt("gone", 4, false),
        ])
        .await
        .unwrap();
    let health: Vec<_> = touched
        .iter()
        .map(|e| (e.name.as_str(), e.health.failure_streak))
        .collect();
    assert_eq!(
        health,
        [("a", 2), ("b", 0)],
        "an unknown endpoint is left out"
    );
    let a = s.endpoint_get(&ns(), &name("a")).await.unwrap();
    assert_eq!(a.health.failing_since, Some(at(1)));
    s.attempts_record(vec![attempt("a", 5, true)])
        .await
        .unwrap();
    let a = s.endpoint_get(&ns(), &name("a")).await.unwrap();
    assert_eq!(
        (a.health.failing_since, a.health.last_success_at),
        (None, Some(at(5)))
    );

    let page = |succeeded, before, limit| AttemptQuery {
        succeeded,
        before,
        limit,
    };
    let all = s
        .attempts_list(&ns(), &name("a"), &page(None, None, 10))
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|a| a.attempt.message_id.as_str()).collect();
    assert_eq!(ids, ["msg_5", "msg_3", "msg_1"], "newest first");
    assert_eq!(all[1].attempt, attempt("a", 3, false), "every field kept");
    let failed = s
        .attempts_list(&ns(), &name("a"), &page(Some(false), None, 10))
        .await
        .unwrap();
    assert_eq!(failed.len(), 2);
    let next = s
        .attempts_list(&ns(), &name("a"), &page(None, Some(all[0].id), 1))
        .await
        .unwrap();
    assert_eq!(next[0].attempt.message_id, "msg_3");
    let other = Namespace::new("other").unwrap();
    assert!(
        s.attempts_list(&other, &name("a"), &page(None, None, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn disabling_reports_the_change_once(h: Harness) {
    let s = &*h.store;
    let e = name("e");
    s.endpoint_put(
        &ns(),
        &e,
        &spec("https://a"),
        SecretChoice::KeepOr("whsec_one".into()),
        T0,
    )
    .await
    .unwrap();
    s.attempts_record(vec![attempt("e", 1, false)])
        .await
        .unwrap();
    assert!(
        s.endpoint_disable(&ns(), &e, Some("410 Gone".into()), at(2))
            .await
            .unwrap()
    );
    assert!(
        !s.endpoint_disable(&ns(), &e, Some("again".into()), at(3))
            .await
            .unwrap()
    );
    let got = s.endpoint_get(&ns(), &e).await.unwrap();
    assert_eq!(
        (
            got.health.disabled_at,
            got.health.disabled_reason.as_deref()
        ),
        (Some(at(2)), Some("410 Gone"))
    );
    assert!(s.endpoint_disable(&ns(), &e, None, at(4)).await.unwrap());
    let got = s.endpoint_get(&ns(), &e).await.unwrap();
    assert_eq!(
        (got.health.disabled_at, got.health.failure_streak),
        (None, 0)
    );
    assert!(!s.endpoint_disable(&ns(), &e, None, at(5)).await.unwrap());
    assert_eq!(
        s.endpoint_disable(&ns(), &name("nope"), None, T0)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
}

async fn attempts_are_pruned_in_bounded_chunks(h: Harness) {
    let s = &*h.store;
    s.endpoint_put(
        &ns(),
        &name("a"),
        &spec("https://a"),
        SecretChoice::KeepOr("whsec_one".into()),
        T0,
    )
    .await
    .unwrap();
    s.attempts_record((1..=5).map(|n| attempt("a", n, true)).collect())
        .await
        .unwrap();
    assert_eq!(s.attempts_prune(at(4), 2).await.unwrap(), 2);
    assert_eq!(s.attempts_prune(at(4), 2).await.unwrap(), 1);
    assert_eq!(s.attempts_prune(at(4), 2).await.unwrap(), 0);
    let left = s
        .attempts_list(
            &ns(),
            &name("a"),
            &AttemptQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(left.len(), 2, "attempts at 4 and 5 stay");
}

async fn push_queues_are_listed_with_their_policy(h: Harness) {
    let s = &*h.store;
    let q = queue("calls");
    let policy = QueuePolicy {
        push: Some(Push {
            endpoint: name("lambda"),
            concurrency: Some(8),
        }),
        ..Default::default()
    };
    s.queue_policy_set(&q, policy.clone(), T0).await.unwrap();
    s.queue_policy_set(
        &queue("plain"),
        QueuePolicy {
            max_attempts: Some(3),
            ..Default::default()
        },
        T0,
    )
    .await
    .unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let listed = s.queue_policies().await.unwrap();
    assert!(listed.contains(&(q, policy)), "{listed:?}");
    assert_eq!(listed.iter().filter(|(_, p)| p.push.is_some()).count(), 1);
}

/// Regression: a message refused with 410 was retried on schedule and
/// delivered to the endpoint it had disabled. Disabling pauses the
/// endpoint's queue in the same write, so no node leases its deliveries
/// until it is enabled.
async fn a_disabled_endpoint_has_nothing_leased_until_enabled(h: Harness) {
    let s = h.store.clone();
    let e = name("gone");
    s.endpoint_put(
        &ns(),
        &e,
        &spec("https://a"),
        SecretChoice::KeepOr("whsec_one".into()),
        T0,
    )
    .await
    .unwrap();
    let queue = endpoint_queue(&ns(), &e).unwrap();
    s.jobs_enqueue(&queue, vec![job("1")], T0).await.unwrap();
    assert!(
        s.endpoint_disable(&ns(), &e, Some("410 Gone".into()), at(1))
            .await
            .unwrap()
    );
    assert!(lease(&*s, &queue, 10, at(2)).await.is_empty());
    assert!(s.queue_stats(&queue).await.unwrap().paused);
    assert!(s.endpoint_disable(&ns(), &e, None, at(3)).await.unwrap());
    assert_eq!(lease(&*s, &queue, 10, at(4)).await.len(), 1);
}
