//! The audit log (`/ui/audit`, admins): who changed what, newest first,
//! filtered by namespace, action or actor, a page at a time.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_core::auth::{Access, Reach};
use keel_store::AuditQuery;
use minijinja::{Value, context};
use serde::Deserialize;

use super::{NsQuery, Refused, Ui};
use crate::api::audit::answer;

/// Entries on a page.
const PAGE: u32 = 100;

#[derive(Deserialize)]
pub(super) struct AuditSearch {
    #[serde(flatten)]
    ns: NsQuery,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    /// Entries older than this id (the last of the previous page).
    before: Option<i64>,
}

fn some(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(search): Query<AuditSearch>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    let ns = search.ns.namespace(&ui)?;
    ui.require(&session, Access::Admin, Reach::All, "read the audit log")?;
    let entries = ui
        .engine
        .audit()
        .list(&AuditQuery {
            namespace: some(&search.namespace),
            action: some(&search.action),
            actor: some(&search.actor),
            after: None,
            before: Some(search.before.unwrap_or(i64::MAX)),
            limit: PAGE,
        })
        .await
        .map_err(|e| ui.failed(&e))?;
    let next = (entries.len() == PAGE as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten()
        .map(|id| {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("ns", ns.as_str())
                .append_pair("namespace", &search.namespace)
                .append_pair("action", &search.action)
                .append_pair("actor", &search.actor)
                .append_pair("before", &id.to_string())
                .finish();
            format!("/ui/audit?{query}")
        });
    let entries: Vec<Value> = entries
        .into_iter()
        .map(answer)
        .map(|e| {
            context! {
                id => e.id,
                at => e.at.to_string(),
                actor => e.actor.name,
                role => e.actor.role.map(|r| r.as_str()),
                namespace => e.namespace,
                action => e.action,
                target => e.target,
                outcome => e.outcome,
                request_id => e.request_id,
            }
        })
        .collect();
    Ok(ui.page(
        "audit.html",
        Some(&session),
        ns.as_str(),
        context! {
            entries => entries,
            filter => context! {
                namespace => search.namespace, action => search.action, actor => search.actor,
            },
            next => next,
        },
    ))
}
