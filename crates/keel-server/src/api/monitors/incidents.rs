//! Incidents (list, one with its timeline, acknowledge, resolve, note), the
//! PagerDuty Events v2 shaped ingress, and escalation policies. Who acts is
//! the caller's token name.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use keel_api::monitors::{
    IncidentEventAnswer, IncidentEventRequest, IncidentList, IncidentsPage, NoteRequest,
    PolicyAnswer, PolicyList,
};
use keel_api::notifications::SettingsPage;
use keel_core::Error;
use keel_core::monitor::{EscalationPolicy, Incident, IncidentStatus};
use keel_engine::Engine;
use keel_engine::monitors::IncidentAction;
use keel_engine::notifications::Named;
use keel_engine::tokens::Caller;
use keel_store::IncidentQuery;

use super::super::extract::{IncidentPath, JsonBody, NamePath, NamespacePath, QueryParams};
use super::super::{ApiError, created};

type Api<T> = Result<T, ApiError>;

const PAGE: u32 = 100;

/// Who acts: the token's name, or `anonymous` with auth off.
fn actor(caller: Option<Extension<Caller>>) -> String {
    caller.map_or_else(
        || "anonymous".to_owned(),
        |Extension(c)| c.name().to_owned(),
    )
}

#[utoipa::path(get, path = "/namespaces/{ns}/incidents", tag = "incidents",
    summary = "Incidents, newest first", params(IncidentsPage),
    responses((status = 200, description = "OK", body = IncidentList)))]
pub(in super::super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<IncidentsPage>,
) -> Api<Json<IncidentList>> {
    let status = page
        .status
        .as_deref()
        .map(|s| {
            IncidentStatus::parse(s)
                .ok_or_else(|| Error::invalid("status must be open, acknowledged or resolved"))
        })
        .transpose()?;
    let before = page
        .before
        .as_deref()
        .map(|b| {
            b.parse()
                .map_err(|_| Error::invalid(format!("before: {b:?} is not an incident id")))
        })
        .transpose()?;
    let query = IncidentQuery {
        status,
        monitor: page.monitor,
        before,
        limit: page.limit.unwrap_or(PAGE),
    };
    let incidents = engine.monitors().incidents(&ns, &query).await?;
    Ok(Json(IncidentList { incidents }))
}

#[utoipa::path(get, path = "/namespaces/{ns}/incidents/{id}", tag = "incidents",
    summary = "One incident with its timeline",
    responses((status = 200, description = "OK", body = Incident)))]
pub(in super::super) async fn get(
    State(engine): State<Arc<Engine>>,
    IncidentPath(ns, id): IncidentPath,
) -> Api<Json<Incident>> {
    Ok(Json(engine.monitors().incident(&ns, &id).await?))
}

#[utoipa::path(post, path = "/namespaces/{ns}/incidents/{id}/acknowledge", tag = "incidents",
    summary = "Acknowledge an open incident: its escalation stops on every node (409 when not open)",
    responses((status = 200, description = "OK", body = Incident)))]
pub(in super::super) async fn acknowledge(
    State(engine): State<Arc<Engine>>,
    caller: Option<Extension<Caller>>,
    IncidentPath(ns, id): IncidentPath,
) -> Api<Json<Incident>> {
    let by = actor(caller);
    let incident = engine
        .monitors()
        .act(&ns, &id, IncidentAction::Acknowledge, &by)
        .await?;
    Ok(Json(incident))
}

#[utoipa::path(post, path = "/namespaces/{ns}/incidents/{id}/resolve", tag = "incidents",
    summary = "Resolve an incident: everyone paged hears it (409 when resolved already)",
    responses((status = 200, description = "OK", body = Incident)))]
pub(in super::super) async fn resolve(
    State(engine): State<Arc<Engine>>,
    caller: Option<Extension<Caller>>,
    IncidentPath(ns, id): IncidentPath,
) -> Api<Json<Incident>> {
    let by = actor(caller);
    let incident = engine
        .monitors()
        .act(&ns, &id, IncidentAction::Resolve, &by)
        .await?;
    Ok(Json(incident))
}

#[utoipa::path(post, path = "/namespaces/{ns}/incidents/{id}/note", tag = "incidents",
    summary = "Add a note to an incident's timeline",
    request_body = NoteRequest,
    responses((status = 200, description = "OK", body = Incident)))]
pub(in super::super) async fn note(
    State(engine): State<Arc<Engine>>,
    caller: Option<Extension<Caller>>,
    IncidentPath(ns, id): IncidentPath,
    JsonBody(note): JsonBody<NoteRequest>,
) -> Api<Json<Incident>> {
    let by = actor(caller);
    let incident = engine
        .monitors()
        .act(&ns, &id, IncidentAction::Note(note.text), &by)
        .await?;
    Ok(Json(incident))
}

#[utoipa::path(post, path = "/namespaces/{ns}/incidents/events", tag = "incidents",
    summary = "Trigger, acknowledge or resolve an incident by dedup key (PagerDuty Events v2's shape)",
    request_body = IncidentEventRequest,
    responses((status = 202, description = "accepted", body = IncidentEventAnswer)))]
pub(in super::super) async fn event(
    State(engine): State<Arc<Engine>>,
    caller: Option<Extension<Caller>>,
    NamespacePath(ns): NamespacePath,
    JsonBody(event): JsonBody<IncidentEventRequest>,
) -> Api<Response> {
    let by = actor(caller);
    let dedup_key = event.dedup_key.clone();
    let (incident, changed) = engine.monitors().event(&ns, event, &by).await?;
    let message = if changed {
        "Event processed"
    } else {
        "Event processed; the incident was as asked already"
    };
    let answer = IncidentEventAnswer {
        status: "success".to_owned(),
        message: message.to_owned(),
        dedup_key,
        incident,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

fn policy(p: Named<EscalationPolicy>) -> PolicyAnswer {
    PolicyAnswer {
        name: p.name,
        spec: p.spec,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

#[utoipa::path(put, path = "/namespaces/{ns}/escalation-policies/{name}", tag = "incidents",
    summary = "Create or change an escalation policy",
    request_body = EscalationPolicy,
    responses((status = 200, description = "OK", body = PolicyAnswer), (status = 201, description = "created", body = PolicyAnswer)))]
pub(in super::super) async fn policy_put(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, name): NamePath,
    JsonBody(spec): JsonBody<EscalationPolicy>,
) -> Api<Response> {
    let (p, new) = engine.monitors().policy_put(&ns, &name, &spec).await?;
    Ok(created((policy(p), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/escalation-policies/{name}", tag = "incidents",
    summary = "One escalation policy",
    responses((status = 200, description = "OK", body = PolicyAnswer)))]
pub(in super::super) async fn policy_get(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, name): NamePath,
) -> Api<Json<PolicyAnswer>> {
    Ok(Json(policy(engine.monitors().policy(&ns, &name).await?)))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/escalation-policies/{name}", tag = "incidents",
    summary = "Delete an escalation policy (incidents that page through it stop escalating)",
    responses((status = 204, description = "deleted")))]
pub(in super::super) async fn policy_delete(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, name): NamePath,
) -> Api<StatusCode> {
    engine.monitors().policy_delete(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/escalation-policies", tag = "incidents",
    summary = "A namespace's escalation policies by name", params(SettingsPage),
    responses((status = 200, description = "OK", body = PolicyList)))]
pub(in super::super) async fn policies_list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<SettingsPage>,
) -> Api<Json<PolicyList>> {
    let list = engine
        .monitors()
        .policies(&ns, page.after.as_deref(), page.limit.unwrap_or(PAGE))
        .await?;
    Ok(Json(PolicyList {
        policies: list.into_iter().map(policy).collect(),
    }))
}
