//! Connections: a session is taken once and only in time; a swap wins only
//! on the version it read; an integration with connections is not deleted;
//! a rewrite of the sealed values is all or nothing and survives a reopen.

use std::sync::Arc;

use keel_core::connection::{ConnectionStatus, IntegrationSpec};
use keel_core::{ConnectionName, IntegrationName};

use super::*;
use crate::{ConnectSession, ConnectionWrite, Integration, Reseal, SealedRef};

cases![
    a_session_is_taken_once_and_only_in_time,
    a_swap_wins_only_on_the_version_it_read,
    an_integration_with_connections_is_not_deleted,
    a_rewrite_is_all_or_nothing_and_survives_a_reopen,
];

fn integration(name: &str) -> Integration {
    let spec: IntegrationSpec = serde_json::from_value(serde_json::json!({
        "provider": "github", "client_id": "id"
    }))
    .unwrap();
    Integration {
        namespace: ns(),
        name: IntegrationName::new(name).unwrap(),
        spec,
        client_secret: format!("sealed-secret-{name}"),
        created_at: at(0),
        updated_at: at(0),
    }
}

fn tokens(access: &str, refresh: Option<&str>) -> ConnectionWrite {
    ConnectionWrite {
        status: ConnectionStatus::Active,
        access_token: access.to_owned(),
        refresh_token: refresh.map(str::to_owned),
        token_type: "Bearer".into(),
        scope: Some("repo".into()),
        expires_at: Some(at(3_600_000)),
        refresh_at: at(3_300_000),
        refreshed_at: at(0),
        error: None,
    }
}

fn conn(name: &str) -> ConnectionName {
    ConnectionName::new(name).unwrap()
}

fn session(state: &str, expires: u64) -> ConnectSession {
    ConnectSession {
        state: state.to_owned(),
        namespace: ns(),
        integration: IntegrationName::new("gh").unwrap(),
        connection: conn("user-1"),
        verifier: "sealed-verifier".into(),
        redirect_url: "https://keel.example/oauth/callback".into(),
        return_to: None,
        expires_at: at(expires),
    }
}

async fn a_session_is_taken_once_and_only_in_time(h: Harness) {
    let s = h.store.clone();
    s.session_put(&session("a", 600_000), at(0)).await.unwrap();
    s.session_put(&session("b", 10), at(0)).await.unwrap();
    let taken = s.session_take("a", at(5)).await.unwrap().unwrap();
    assert_eq!(taken, session("a", 600_000));
    assert_eq!(s.session_take("a", at(5)).await.unwrap(), None);
    // Expired: not handed out, and gone.
    assert_eq!(s.session_take("b", at(10)).await.unwrap(), None);
    assert_eq!(s.session_take("nope", at(0)).await.unwrap(), None);
}

async fn a_swap_wins_only_on_the_version_it_read(h: Harness) {
    let s = h.store.clone();
    let gh = integration("gh");
    let (stored, new) = s.integration_put(&gh, at(0)).await.unwrap();
    assert!(new);
    assert_eq!(stored.client_secret, "sealed-secret-gh");
    assert!(!s.integration_put(&gh, at(1)).await.unwrap().1);

    let c = s
        .connection_put(
            &ns(),
            &conn("user-1"),
            &gh.name,
            &tokens("a1", Some("r1")),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(c.version, 1);
    let won = s
        .connection_swap(&ns(), &conn("user-1"), 1, &tokens("a2", Some("r2")), at(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((won.version, won.tokens.access_token.as_str()), (2, "a2"));
    // A second refresh that read version 1 loses, and changes nothing.
    let lost = s
        .connection_swap(&ns(), &conn("user-1"), 1, &tokens("a3", None), at(2))
        .await
        .unwrap();
    assert_eq!(lost, None);
    let read = s.connection_get(&ns(), &conn("user-1")).await.unwrap();
    assert_eq!(read.tokens.refresh_token.as_deref(), Some("r2"));
    // Connecting again moves the version on.
    let again = s
        .connection_put(&ns(), &conn("user-1"), &gh.name, &tokens("a4", None), at(3))
        .await
        .unwrap();
    assert_eq!(again.version, 3);
    assert_eq!(again.created_at, at(0));

    let mut due = tokens("a", None);
    due.refresh_at = at(50);
    s.connection_put(&ns(), &conn("user-2"), &gh.name, &due, at(3))
        .await
        .unwrap();
    let mut dead = due.clone();
    dead.status = ConnectionStatus::NeedsReauth;
    s.connection_put(&ns(), &conn("user-3"), &gh.name, &dead, at(3))
        .await
        .unwrap();
    let found = s.connections_due(at(100), 10).await.unwrap();
    assert_eq!(
        found.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["user-2"]
    );
    let gone = s.connection_delete(&ns(), &conn("user-2")).await.unwrap();
    assert_eq!(gone.name.as_str(), "user-2");
    let e = s.connection_get(&ns(), &conn("user-2")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(
        s.connection_swap(&ns(), &conn("user-2"), 1, &due, at(4))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.connections_list(&ns()).await.unwrap().len(), 2);
}

async fn an_integration_with_connections_is_not_deleted(h: Harness) {
    let s = h.store.clone();
    let gh = integration("gh");
    s.integration_put(&gh, at(0)).await.unwrap();
    s.connection_put(&ns(), &conn("u"), &gh.name, &tokens("a", None), at(0))
        .await
        .unwrap();
    let e = s.integration_delete(&ns(), &gh.name).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(s.integration_get(&ns(), &gh.name).await.is_ok());
    s.connection_delete(&ns(), &conn("u")).await.unwrap();
    s.integration_delete(&ns(), &gh.name).await.unwrap();
    let e = s.integration_delete(&ns(), &gh.name).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(s.integrations_list(&ns()).await.unwrap().is_empty());
}

async fn a_rewrite_is_all_or_nothing_and_survives_a_reopen(h: Harness) {
    let s = h.store.clone();
    let gh = integration("gh");
    s.integration_put(&gh, at(0)).await.unwrap();
    s.session_put(&session("st", 600_000), at(0)).await.unwrap();
    s.connection_put(&ns(), &conn("u"), &gh.name, &tokens("a", Some("r")), at(0))
        .await
        .unwrap();
    // A value that does not open stops the rewrite: nothing changes.
    let failing: Reseal = Arc::new(|at: &SealedRef, text: &str| {
        if matches!(at, SealedRef::RefreshToken { .. }) {
            Err(keel_core::Error::internal("does not open"))
        } else {
            Ok(format!("new:{text}"))
        }
    });
    assert!(s.sealed_rewrite(failing).await.is_err());
    let read = s.connection_get(&ns(), &conn("u")).await.unwrap();
    assert_eq!(read.tokens.access_token, "a");
    assert_eq!(
        s.integration_get(&ns(), &gh.name)
            .await
            .unwrap()
            .client_secret,
        "sealed-secret-gh"
    );
    // The context binds each value to its row and field.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let marking: Reseal = Arc::new(move |at: &SealedRef, text: &str| {
        log.lock().unwrap().push(at.context());
        Ok(format!("new:{text}"))
    });
    assert_eq!(s.sealed_rewrite(marking).await.unwrap(), 4);
    let mut contexts = seen.lock().unwrap().clone();
    contexts.sort();
    assert_eq!(
        contexts,
        vec![
            "keel.connection|default|gh|u|access_token",
            "keel.connection|default|gh|u|refresh_token",
            "keel.integration|default|gh|client_secret",
            "keel.session|st|verifier",
        ]
    );
    s.close().await;
    let s = (h.reopen)().await;
    let read = s.connection_get(&ns(), &conn("u")).await.unwrap();
    assert_eq!(read.tokens.access_token, "new:a");
    assert_eq!(read.tokens.refresh_token.as_deref(), Some("new:r"));
    let taken = s.session_take("st", at(1)).await.unwrap().unwrap();
    assert_eq!(taken.verifier, "new:sealed-verifier");
    assert_eq!(
        s.integration_get(&ns(), &gh.name)
            .await
            .unwrap()
            .client_secret,
        "new:sealed-secret-gh"
    );
}
