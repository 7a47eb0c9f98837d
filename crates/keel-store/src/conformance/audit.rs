//! The audit log: appended in order, settled once, filtered by namespace,
//! action, actor and position, kept across a reopen, pruned by age.

use keel_core::auth::Role;

use super::*;
use crate::{Actor, AuditQuery, NewAuditEntry};

cases![entries_are_appended_settled_filtered_kept_and_pruned];

fn entry(at_ms: u64, ns: Option<&str>, action: &str, who: &str) -> NewAuditEntry {
    NewAuditEntry {
        at: at(at_ms),
        actor: Actor {
            token_id: Some(format!("{who}-id")),
            name: who.to_owned(),
            role: Some(Role::Operator),
        },
        namespace: ns.map(str::to_owned),
        action: action.to_owned(),
        target: "emails".to_owned(),
        request_id: format!("req-{at_ms}"),
        summary: r#"{"method":"PUT"}"#.to_owned(),
    }
}

async fn entries_are_appended_settled_filtered_kept_and_pruned(h: Harness) {
    let s = h.store.clone();
    let a = s
        .audit_append(&entry(1, Some("acme"), "queue.put", "ada"))
        .await
        .unwrap();
    let b = s
        .audit_append(&entry(2, Some("globex"), "queue.pause", "bob"))
        .await
        .unwrap();
    let mut anonymous = entry(3, None, "token.create", "anonymous");
    anonymous.actor = Actor {
        token_id: None,
        name: "anonymous".to_owned(),
        role: None,
    };
    let c = s.audit_append(&anonymous).await.unwrap();
    assert!(a < b && b < c);
    s.audit_settle(a, 200).await.unwrap();
    s.audit_settle(a, 500).await.unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let all = s
        .audit_list(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, [a, b, c]);
    assert_eq!(all[0].outcome, Some(200), "settled once");
    assert_eq!(all[1].outcome, None);
    assert_eq!(all[0].entry, entry(1, Some("acme"), "queue.put", "ada"));
    assert_eq!(all[2].entry, anonymous);
    let pick = |q: AuditQuery| {
        let s = s.clone();
        async move {
            s.audit_list(&AuditQuery { limit: 10, ..q })
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let ns = |n: &str| Some(n.to_owned());
    assert_eq!(
        pick(AuditQuery {
            namespace: ns("globex"),
            ..AuditQuery::default()
        })
        .await,
        [b]
    );
    assert_eq!(
        pick(AuditQuery {
            action: ns("token.create"),
            ..AuditQuery::default()
        })
        .await,
        [c]
    );
    assert_eq!(
        pick(AuditQuery {
            actor: ns("ada"),
            ..AuditQuery::default()
        })
        .await,
        [a]
    );
    assert_eq!(
        pick(AuditQuery {
            actor: ns("bob-id"),
            ..AuditQuery::default()
        })
        .await,
        [b]
    );
    assert_eq!(
        pick(AuditQuery {
            after: Some(a),
            ..AuditQuery::default()
        })
        .await,
        [b, c]
    );
    assert_eq!(
        pick(AuditQuery {
            before: Some(i64::MAX),
            ..AuditQuery::default()
        })
        .await,
        [c, b, a],
        "newest first"
    );
    assert_eq!(
        pick(AuditQuery {
            before: Some(c),
            namespace: ns("acme"),
            ..AuditQuery::default()
        })
        .await,
        [a]
    );
    let first = s
        .audit_list(&AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(s.audit_prune(at(3), 1).await.unwrap(), 1);
    assert_eq!(s.audit_prune(at(3), 10).await.unwrap(), 1);
    assert_eq!(pick(AuditQuery::default()).await, [c]);
}
