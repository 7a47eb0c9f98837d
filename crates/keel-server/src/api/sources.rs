//! Webhook sources: put, get, list, delete, and the ingress a provider
//! calls (`POST /v1/hooks/{ns}/{name}`), the one route meant to face the
//! internet: it answers 2xx only once the event is durable, 401 for a bad
//! or missing signature or a stale timestamp (storing nothing), 404 for an
//! unknown source, 413 past the body limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_api::sources::{ChallengeAnswer, SourceAnswer, SourceList, SourceRequest, VerifyAnswer};
use keel_api::topics::PublishedAnswer;
use keel_engine::Engine;
use keel_engine::sources::{HookRequest, Ingested};
use keel_store::Source;

use super::ApiError;
use super::extract::{Body, JsonBody, NamespacePath, SourcePath};

type Api<T> = Result<T, ApiError>;

fn answer(source: Source) -> SourceAnswer {
    let spec = source.spec;
    SourceAnswer {
        ingress: format!("/v1/hooks/{}/{}", source.namespace, source.name),
        name: source.name,
        topic: spec.topic.to_string(),
        verify: VerifyAnswer {
            scheme: spec.verify.scheme,
            tolerance_ms: spec.verify.tolerance_ms,
            header: spec.verify.header,
            encoding: spec.verify.encoding,
            prefix: spec.verify.prefix,
        },
        key: spec.key,
        kind: spec.kind,
        id: spec.id,
        created_at: source.created_at,
        updated_at: source.updated_at,
    }
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/sources/{name}",
    tag = "sources",
    summary = "Create or change a webhook source",
    request_body = keel_api::sources::SourceRequest,
    responses((status = 200, description = "OK", body = keel_api::sources::SourceAnswer), (status = 201, description = "created", body = keel_api::sources::SourceAnswer))
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    SourcePath(ns, name): SourcePath,
    JsonBody(spec): JsonBody<SourceRequest>,
) -> Api<Response> {
    let (source, created) = engine.sources().put(&ns, name.as_str(), &spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer(source))).into_response())
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/sources/{name}",
    tag = "sources",
    summary = "One webhook source",
    responses((status = 200, description = "OK", body = keel_api::sources::SourceAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    SourcePath(ns, name): SourcePath,
) -> Api<Json<SourceAnswer>> {
    Ok(Json(answer(
        engine.sources().get(&ns, name.as_str()).await?,
    )))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/sources",
    tag = "sources",
    summary = "List webhook sources",
    responses((status = 200, description = "OK", body = keel_api::sources::SourceList))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<SourceList>> {
    let sources = engine.sources().list(&ns).await?;
    Ok(Json(SourceList {
        sources: sources.into_iter().map(answer).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/sources/{name}",
    tag = "sources",
    summary = "Delete a webhook source",
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete(
    State(engine): State<Arc<Engine>>,
    SourcePath(ns, name): SourcePath,
) -> Api<StatusCode> {
    engine.sources().delete(&ns, name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/hooks/{ns}/{name}",
    tag = "sources",
    summary = "Webhook ingress, checked by the source's signature",
    request_body(content((serde_json::Value = "application/json"), (String = "application/x-www-form-urlencoded")), description = "the provider's delivery, as it sent it"),
    responses((status = 200, description = "OK", body = keel_api::sources::IngestAnswer))
)]
pub(super) async fn ingest(
    State(engine): State<Arc<Engine>>,
    SourcePath(ns, name): SourcePath,
    headers: HeaderMap,
    Body(body): Body,
) -> Api<Response> {
    // Header names arrive in lower case; a value that is not text is
    // nothing a signature scheme reads.
    let headers: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let request = HookRequest {
        headers,
        body: body.to_vec(),
    };
    let ingested = engine.sources().ingest(&ns, name.as_str(), request).await?;
    Ok(match ingested {
        Ingested::Published(p) => Json(PublishedAnswer {
            id: p.id,
            seq: p.seq,
            duplicate: p.duplicate,
        })
        .into_response(),
        Ingested::Challenge(challenge) => Json(ChallengeAnswer { challenge }).into_response(),
    })
}
