//! Handlers: upload (JavaScript or a WebAssembly module, compiled and
//! checked before a version is made: 400 naming a syntax error or a
//! forbidden import), read, list, delete, secrets (write-only) and test
//! calls. Objects' state is in [`state`].

pub(super) mod state;

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use keel_api::handlers::{
    HandlerAnswer, HandlerList, HandlerRequest, HandlerSummary, InvokeAnswer, InvokeError,
    InvokeRequest, SecretsRequest, VersionQuery, WriteAnswer,
};
use keel_core::handler::{HandlerSettings, HandlerVersion};
use keel_core::{HandlerName, Namespace};
use keel_engine::Engine;
use keel_engine::handlers::{Code, Upload};
use keel_sandbox::Failure;

use super::ApiError;
use super::extract::{
    JsonBody, NamespacePath, QueryParams, path_segments, segment, user_namespace,
};

type Api<T> = Result<T, ApiError>;

/// `{ns}` and `{name}` of a handler, validated.
pub(super) struct HandlerPath(pub Namespace, pub HandlerName);

impl<S: Send + Sync> FromRequestParts<S> for HandlerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(HandlerPath(
            user_namespace(segment(&segments, "ns"))?,
            HandlerName::new(segment(&segments, "name"))?,
        ))
    }
}

fn answer(v: HandlerVersion) -> HandlerAnswer {
    HandlerAnswer {
        name: v.name.to_string(),
        version: v.version,
        kind: v.kind,
        hash: v.hash,
        js: v.source,
        limits: v.settings.limits,
        allow_http: v.settings.allow_http,
        shared: v.settings.shared,
        created_at: v.created_at,
    }
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/handlers/{name}",
    tag = "handlers",
    summary = "Upload a handler: a new version, unless it is the current one",
    request_body = keel_api::handlers::HandlerRequest,
    responses(
        (status = 200, description = "unchanged: the current version", body = keel_api::handlers::HandlerAnswer),
        (status = 201, description = "a new version", body = keel_api::handlers::HandlerAnswer)
    )
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    HandlerPath(ns, name): HandlerPath,
    JsonBody(request): JsonBody<HandlerRequest>,
) -> Api<Response> {
    let code = match (request.js, request.wasm_base64) {
        (Some(js), None) => Code::Js(js),
        (None, Some(b64)) => Code::Wasm(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| ApiError::invalid(format!("wasm_base64 is not base64: {e}")))?,
        ),
        _ => return Err(ApiError::invalid("give js or wasm_base64, one of them")),
    };
    let upload = Upload {
        code,
        settings: HandlerSettings {
            limits: request.limits,
            allow_http: request.allow_http,
            shared: request.shared,
        },
    };
    let (version, created) = engine.handlers().put(&ns, &name, upload).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer(version))).into_response())
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/handlers/{name}",
    tag = "handlers",
    summary = "A handler's current version, or the one asked for",
    params(VersionQuery),
    responses((status = 200, description = "OK", body = keel_api::handlers::HandlerAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    HandlerPath(ns, name): HandlerPath,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Api<Json<HandlerAnswer>> {
    Ok(Json(answer(
        engine.handlers().get(&ns, &name, query.version).await?,
    )))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/handlers",
    tag = "handlers",
    summary = "List handlers",
    responses((status = 200, description = "OK", body = keel_api::handlers::HandlerList))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<HandlerList>> {
    let handlers = engine.handlers().list(&ns).await?;
    Ok(Json(HandlerList {
        handlers: handlers
            .into_iter()
            .map(|h| HandlerSummary {
                name: h.name.to_string(),
                version: h.version,
                kind: h.kind,
                hash: h.hash,
                created_at: h.created_at,
                updated_at: h.updated_at,
            })
            .collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/handlers/{name}",
    tag = "handlers",
    summary = "Delete a handler, its versions and its secrets",
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete(
    State(engine): State<Arc<Engine>>,
    HandlerPath(ns, name): HandlerPath,
) -> Api<StatusCode> {
    engine.handlers().delete(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/handlers/{name}/secrets",
    tag = "handlers",
    summary = "Replace a handler's secrets (never readable back)",
    request_body = keel_api::handlers::SecretsRequest,
    responses((status = 204, description = "stored"))
)]
pub(super) async fn secrets(
    State(engine): State<Arc<Engine>>,
    HandlerPath(ns, name): HandlerPath,
    JsonBody(request): JsonBody<SecretsRequest>,
) -> Api<StatusCode> {
    engine
        .handlers()
        .put_secrets(&ns, &name, request.secrets)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/handlers/{name}/invoke",
    tag = "handlers",
    summary = "A test call of the current version: its outcome, logs and time; nothing committed",
    request_body = keel_api::handlers::InvokeRequest,
    responses((status = 200, description = "OK", body = keel_api::handlers::InvokeAnswer))
)]
pub(super) async fn invoke(
    State(engine): State<Arc<Engine>>,
    HandlerPath(ns, name): HandlerPath,
    JsonBody(request): JsonBody<InvokeRequest>,
) -> Api<Json<InvokeAnswer>> {
    let invoked = engine
        .handlers()
        .invoke(&ns, &name, request.payload, request.object)
        .await?;
    let inv = invoked.invocation;
    let (result, error) = match inv.outcome {
        Ok(result) => (Some(result), None),
        Err(failure) => {
            let (kind, limit) = match &failure {
                Failure::Thrown(_) => ("thrown", None),
                Failure::Limit(limit, _) => ("limit", Some(limit.as_str().to_owned())),
                Failure::Trap(_) => ("trap", None),
            };
            let message = keel_engine::handlers::failure_message(&failure);
            (
                None,
                Some(InvokeError {
                    kind: kind.to_owned(),
                    limit,
                    message,
                }),
            )
        }
    };
    Ok(Json(InvokeAnswer {
        version: invoked.version,
        result,
        error,
        logs: inv.logs,
        logs_dropped: inv.logs_dropped,
        cpu_ms: inv.cpu.as_secs_f64() * 1000.0,
        wall_ms: inv.wall.as_secs_f64() * 1000.0,
        memory_bytes: inv.memory_bytes as u64,
        writes: invoked
            .writes
            .into_iter()
            .map(|(key, value)| WriteAnswer { key, value })
            .collect(),
        events: to_values(invoked.effects.events),
        jobs: to_values(invoked.effects.jobs),
    }))
}

fn to_values<T: serde::Serialize>(items: Vec<T>) -> Vec<serde_json::Value> {
    items
        .into_iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect()
}
