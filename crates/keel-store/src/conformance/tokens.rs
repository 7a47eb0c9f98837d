//! API tokens: insert, get by id, list, revoke (404, idempotent), touch;
//! all of it kept across a reopen.

use keel_core::auth::{Grant, Role};

use super::*;
use crate::{Token, token_not_found};

cases![
    tokens_are_stored_found_listed_and_kept,
    revoke_keeps_its_first_time_and_touch_never_goes_back,
];

fn token(id: &str, role: Role, namespaces: &[&str], resources: Option<&[&str]>) -> Token {
    Token {
        id: id.to_owned(),
        name: format!("{id}-name"),
        grant: Grant {
            role,
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            resources: resources.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
        },
        secret_hash: id.bytes().rev().collect(),
        created_at: T0,
        expires_at: Some(at(90_000)),
        last_used_at: None,
        revoked_at: None,
    }
}

async fn tokens_are_stored_found_listed_and_kept(h: Harness) {
    let s = h.store.clone();
    let mut root = token("a1", Role::Admin, &["*"], None);
    root.expires_at = None;
    let mut worker = token(
        "b2",
        Role::Worker,
        &["acme", "globex"],
        Some(&["queue:emails*"]),
    );
    worker.created_at = at(5);
    s.token_insert(&root).await.unwrap();
    s.token_insert(&worker).await.unwrap();
    assert_eq!(s.token_get("zz").await.unwrap(), None);
    s.close().await;
    let s = (h.reopen)().await;
    assert_eq!(s.token_get("a1").await.unwrap(), Some(root.clone()));
    assert_eq!(s.token_get("b2").await.unwrap(), Some(worker.clone()));
    assert_eq!(s.tokens_list().await.unwrap(), [worker, root]);
}

async fn revoke_keeps_its_first_time_and_touch_never_goes_back(h: Harness) {
    let s = h.store.clone();
    s.token_insert(&token("c3", Role::Reader, &["acme"], None))
        .await
        .unwrap();
    let err = s.token_revoke("nope", at(1)).await.unwrap_err();
    assert_eq!(err, token_not_found("nope"));
    s.token_touch("c3", at(10)).await.unwrap();
    s.token_touch("c3", at(4)).await.unwrap();
    let revoked = s.token_revoke("c3", at(20)).await.unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.last_used_at),
        (Some(at(20)), Some(at(10)))
    );
    let again = s.token_revoke("c3", at(30)).await.unwrap();
    assert_eq!(again.revoked_at, Some(at(20)));
    s.token_touch("nope", at(40)).await.unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    assert_eq!(s.token_get("c3").await.unwrap(), Some(again));
}
