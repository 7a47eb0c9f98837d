//! Endpoints: put, get, list, delete, rotate the secret, enable, the
//! attempts log and recovery. The pushing itself is the engine's pusher
//! service; a secret appears only in the answer that made or set it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_api::endpoints::{
    AttemptAnswer, AttemptList, EndpointAnswer, EndpointList, EndpointRequest, EndpointStatus,
    RecoverAnswer, RecoverRequest, RotatedAnswer,
};
use keel_core::Timestamp;
use keel_core::endpoint::QUEUE_PREFIX;
use keel_engine::Engine;
use keel_engine::endpoints::Status;
use keel_store::{Attempt, AttemptQuery};
use serde::Deserialize;

use super::ApiError;
use super::extract::{EndpointPath, JsonBody, NamespacePath, QueryParams, count};

type Api<T> = Result<T, ApiError>;

const DEFAULT_ATTEMPTS: u32 = 100;
const MAX_ATTEMPTS_PAGE: u32 = 1000;

pub(crate) fn answer(status: Status, secret: Option<String>) -> EndpointAnswer {
    let Status {
        endpoint: e,
        in_flight,
        backlog,
        dead,
    } = status;
    EndpointAnswer {
        queue: format!("{QUEUE_PREFIX}{}", e.name),
        name: e.name.to_string(),
        spec: e.spec,
        status: EndpointStatus {
            last_success_at: e.health.last_success_at,
            failing_since: e.health.failing_since,
            failure_streak: e.health.failure_streak,
            disabled_at: e.health.disabled_at,
            disabled_reason: e.health.disabled_reason,
            in_flight,
            backlog,
            dead,
        },
        secret,
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/endpoints/{name}",
    tag = "endpoints",
    summary = "Create or change an endpoint",
    request_body = keel_api::endpoints::EndpointRequest,
    responses((status = 200, description = "OK", body = keel_api::endpoints::EndpointAnswer), (status = 201, description = "created", body = keel_api::endpoints::EndpointAnswer))
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    EndpointPath(ns, name): EndpointPath,
    JsonBody(request): JsonBody<EndpointRequest>,
) -> Api<Response> {
    let (_, created, secret) = engine
        .endpoints()
        .put(&ns, &name, &request.spec, request.secret)
        .await?;
    let status = engine.endpoints().status(&ns, &name).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(answer(status, secret))).into_response())
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/endpoints/{name}",
    tag = "endpoints",
    summary = "One endpoint with its health",
    responses((status = 200, description = "OK", body = keel_api::endpoints::EndpointAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    EndpointPath(ns, name): EndpointPath,
) -> Api<Json<EndpointAnswer>> {
    let status = engine.endpoints().status(&ns, &name).await?;
    Ok(Json(answer(status, None)))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/endpoints",
    tag = "endpoints",
    summary = "List endpoints with their health",
    responses((status = 200, description = "OK", body = keel_api::endpoints::EndpointList))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<EndpointList>> {
    let mut endpoints = Vec::new();
    for e in engine.endpoints().list(&ns).await? {
        endpoints.push(answer(engine.endpoints().status(&ns, &e.name).await?, None));
    }
    Ok(Json(EndpointList { endpoints }))
}

#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/endpoints/{name}",
    tag = "endpoints",
    summary = "Delete an endpoint",
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete(
    State(engine): State<Arc<Engine>>,
    EndpointPath(ns, name): EndpointPath,
) -> Api<StatusCode> {
    engine.endpoints().delete(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/endpoints/{name}/rotate-secret",
    tag = "endpoints",
    summary = "Rotate an endpoint's signing secret",
    responses((status = 200, description = "OK", body = keel_api::endpoints::RotatedAnswer))
)]
pub(super) async fn rotate(
    State(engine): State<Arc<Engine>>,
    EndpointPath(ns, name): EndpointPath,
) -> Api<Json<RotatedAnswer>> {
    let endpoint = engine.endpoints().rotate(&ns, &name).await?;
    Ok(Json(RotatedAnswer {
        secret: endpoint.secrets.current,
        previous_valid_until: endpoint.secrets.previous_until,
    }))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/endpoints/{name}/enable",
    tag = "endpoints",
    summary = "Enable a disabled endpoint",
    responses((status = 200, description = "OK", body = keel_api::endpoints::EndpointAnswer))
)]
pub(super) async fn enable(
    State(engine): State<Arc<Engine>>,
    EndpointPath(ns, name): EndpointPath,
) -> Api<Json<EndpointAnswer>> {
    let status = engine.endpoints().enable(&ns, &name).await?;
    Ok(Json(answer(status, None)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AttemptParams {
    /// `succeeded` or `failed`.
    status: Option<String>,
    /// A previous page's `next_cursor`.
    after: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/endpoints/{name}/attempts",
    tag = "endpoints",
    summary = "An endpoint's delivery attempts",
    params(AttemptParams),
    responses((status = 200, description = "OK", body = keel_api::endpoints::AttemptList))
)]
pub(super) async fn attempts(
    State(engine): State<Arc<Engine>>,
    EndpointPath(ns, name): EndpointPath,
    QueryParams(params): QueryParams<AttemptParams>,
) -> Api<Json<AttemptList>> {
    let succeeded = match params.status.as_deref() {
        None => None,
        Some("succeeded") => Some(true),
        Some("failed") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status must be succeeded or failed, not {other:?}"
            )));
        }
    };
    let before = params
        .after
        .map(|c| c.parse::<i64>())
        .transpose()
        .map_err(|_| ApiError::invalid("after is a next_cursor from an earlier page"))?;
    let limit = count("limit", params.limit, DEFAULT_ATTEMPTS, MAX_ATTEMPTS_PAGE)?;
    let query = AttemptQuery {
        succeeded,
        before,
        limit,
    };
    let attempts = engine.endpoints().attempts(&ns, &name, &query).await?;
    let next_cursor = (attempts.len() == limit as usize)
        .then(|| attempts.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Json(AttemptList {
        attempts: attempts.into_iter().map(attempt).collect(),
        next_cursor,
    }))
}

pub(crate) fn attempt(a: Attempt) -> AttemptAnswer {
    let Attempt { id, attempt: a } = a;
    AttemptAnswer {
        id,
        message_id: a.message_id,
        job_id: a.job_id.to_string(),
        at: a.at,
        status: if a.succeeded { "succeeded" } else { "failed" }.to_owned(),
        http_status: a.http_status,
        latency_ms: a.latency_ms,
        response_excerpt: a.response_excerpt,
        error: a.error,
    }
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/endpoints/{name}/recover",
    tag = "endpoints",
    summary = "Send again what died since a time",
    request_body = keel_api::endpoints::RecoverRequest,
    responses((status = 200, description = "OK", body = keel_api::endpoints::RecoverAnswer))
)]
pub(super) async fn recover(
    State(engine): State<Arc<Engine>>,
    EndpointPath(ns, name): EndpointPath,
    JsonBody(request): JsonBody<RecoverRequest>,
) -> Api<Json<RecoverAnswer>> {
    let since = Timestamp::parse_rfc3339(&request.since)
        .ok_or_else(|| ApiError::invalid("since must be an RFC 3339 time"))?;
    let recovered = engine.endpoints().recover(&ns, &name, since).await?;
    Ok(Json(RecoverAnswer { recovered }))
}
