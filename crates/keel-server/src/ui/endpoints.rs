//! Endpoints: the list (`/ui/endpoints`) with each one's health, and an
//! endpoint's page (`/ui/endpoints/{name}`) with its settings and its
//! attempts log, newest first (all, or the failed ones). Header values are
//! not shown: they often carry credentials.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_api::endpoints::EndpointAnswer;
use keel_core::EndpointName;
use keel_store::AttemptQuery;
use minijinja::{Value, context};
use serde::Deserialize;

use super::{NsQuery, Refused, Ui, draw};
use crate::api::endpoints::{answer, attempt};

/// Attempts shown on a page.
const PAGE: u32 = 100;

fn view(e: &EndpointAnswer) -> Value {
    let status = &e.status;
    let spec = &e.spec;
    let health = if let Some(at) = status.disabled_at {
        format!(
            "disabled since {at}{}",
            status
                .disabled_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
    } else if let Some(since) = status.failing_since {
        format!("failing since {since} ({} in a row)", status.failure_streak)
    } else {
        "healthy".to_owned()
    };
    context! {
        name => e.name.clone(),
        url => spec.url.clone(),
        queue => e.queue.clone(),
        health => health,
        disabled => status.disabled_at.is_some(),
        failing => status.failing_since.is_some(),
        last_success_at => status.last_success_at.map(|t| t.to_string()),
        in_flight => status.in_flight,
        backlog => status.backlog,
        dead => status.dead,
        header_names => spec.headers.keys().cloned().collect::<Vec<_>>(),
        timeout => spec.timeout_ms.map(draw::duration),
        max_in_flight => spec.max_in_flight,
        ordered => spec.ordered,
    }
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let endpoints = &ui.engine.endpoints();
    let mut rows = Vec::new();
    for e in endpoints.list(&ns).await.map_err(|e| ui.failed(&e))? {
        let status = endpoints
            .status(&ns, &e.name)
            .await
            .map_err(|e| ui.failed(&e))?;
        rows.push(view(&answer(status, None)));
    }
    Ok(ui.page(
        "endpoints.html",
        Some(&session),
        ns.as_str(),
        context! { endpoints => rows },
    ))
}

#[derive(Deserialize)]
pub(super) struct AttemptsQuery {
    #[serde(flatten)]
    ns: NsQuery,
    /// `failed` for the failures only.
    #[serde(default)]
    status: String,
    /// The id of the last attempt of the previous page.
    before: Option<i64>,
}

pub(super) async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<AttemptsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query.ns).await?;
    let name = EndpointName::new(&name).map_err(|e| ui.bad(&e.message))?;
    let endpoints = &ui.engine.endpoints();
    let status = endpoints
        .status(&ns, &name)
        .await
        .map_err(|e| ui.failed(&e))?;
    let failed_only = query.status == "failed";
    let attempts = endpoints
        .attempts(
            &ns,
            &name,
            &AttemptQuery {
                succeeded: failed_only.then_some(false),
                before: query.before,
                limit: PAGE,
            },
        )
        .await
        .map_err(|e| ui.failed(&e))?;
    let next = (attempts.len() == PAGE as usize)
        .then(|| attempts.last().map(|a| a.id))
        .flatten()
        .map(|id| {
            format!(
                "/ui/endpoints/{name}?ns={ns}&status={}&before={id}",
                query.status
            )
        });
    let attempts: Vec<Value> = attempts
        .into_iter()
        .map(attempt)
        .map(|a| {
            context! {
                at => a.at.to_string(),
                status => a.status,
                http_status => a.http_status,
                latency => draw::duration(a.latency_ms),
                message_id => a.message_id,
                job_id => a.job_id,
                error => a.error,
                response => a.response_excerpt,
            }
        })
        .collect();
    Ok(ui.page(
        "endpoint.html",
        Some(&session),
        ns.as_str(),
        context! {
            endpoint => view(&answer(status, None)),
            attempts => attempts,
            failed_only => failed_only,
            next => next,
        },
    ))
}
