//! Objects' state from outside: one key (`GET` answers the value and its
//! version; `PUT` and `DELETE` take `If-Match: VERSION`, 412 on a stale
//! one), atomic batches of up to 100 operations, and pages in key order.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_api::handlers::{
    StateAnswer, StateBatch, StateBatchAnswer, StateListQuery, StatePage, StatePut, StateVersion,
};
use keel_core::handler::state::{ObjectRef, StateQuery};
use keel_core::{ErrorCode, Namespace};
use keel_engine::Engine;

use crate::api::ApiError;
use crate::api::extract::{JsonBody, QueryParams, path_segments, segment, user_namespace};

type Api<T> = Result<T, ApiError>;

/// `{ns}`, `{type}` and `{key}` of an object, and `{k}` (a state key) when
/// the route has one.
pub(in crate::api) struct ObjectPath(Namespace, ObjectRef, String);

impl<S: Send + Sync> FromRequestParts<S> for ObjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let object = ObjectRef::new(segment(&segments, "type"), segment(&segments, "key"))?;
        Ok(ObjectPath(
            user_namespace(segment(&segments, "ns"))?,
            object,
            segment(&segments, "k").to_owned(),
        ))
    }
}

/// `If-Match: VERSION` (quotes allowed, as an entity tag).
fn if_match(headers: &HeaderMap) -> Api<Option<u64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "If-Match must be a state version (a number)",
            )
        })
}

fn etag(version: u64) -> [(header::HeaderName, HeaderValue); 1] {
    let tag = HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    [(header::ETAG, tag)]
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/objects/{type}/{key}/state/{k}",
    tag = "objects",
    summary = "One state key of an object: its value and version (404 when absent)",
    responses((status = 200, description = "OK", body = keel_api::handlers::StateAnswer))
)]
pub(in crate::api) async fn get(
    State(engine): State<Arc<Engine>>,
    ObjectPath(ns, object, key): ObjectPath,
) -> Api<Response> {
    let entry = engine.handlers().state_get(&ns, &object, &key).await?;
    let version = entry.version;
    Ok((
        etag(version),
        Json(StateAnswer {
            value: entry.value,
            version,
        }),
    )
        .into_response())
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/objects/{type}/{key}/state/{k}",
    tag = "objects",
    summary = "Put one state key (If-Match: VERSION puts only over it; 0: only if absent)",
    request_body = keel_api::handlers::StatePut,
    responses((status = 200, description = "OK", body = keel_api::handlers::StateVersion))
)]
pub(in crate::api) async fn put(
    State(engine): State<Arc<Engine>>,
    ObjectPath(ns, object, key): ObjectPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<StatePut>,
) -> Api<Response> {
    let version = engine
        .handlers()
        .state_put(&ns, &object, &key, body.value, if_match(&headers)?)
        .await?;
    Ok((etag(version), Json(StateVersion { version })).into_response())
}

#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/objects/{type}/{key}/state/{k}",
    tag = "objects",
    summary = "Delete one state key (If-Match: VERSION deletes only that version)",
    responses((status = 204, description = "deleted"))
)]
pub(in crate::api) async fn delete(
    State(engine): State<Arc<Engine>>,
    ObjectPath(ns, object, key): ObjectPath,
    headers: HeaderMap,
) -> Api<StatusCode> {
    engine
        .handlers()
        .state_delete(&ns, &object, &key, if_match(&headers)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/objects/{type}/{key}/state:batch",
    tag = "objects",
    summary = "Up to 100 puts and deletes on one object, all or none",
    request_body = keel_api::handlers::StateBatch,
    responses((status = 200, description = "OK", body = keel_api::handlers::StateBatchAnswer))
)]
pub(in crate::api) async fn batch(
    State(engine): State<Arc<Engine>>,
    ObjectPath(ns, object, _): ObjectPath,
    JsonBody(body): JsonBody<StateBatch>,
) -> Api<Json<StateBatchAnswer>> {
    let versions = engine
        .handlers()
        .state_batch(&ns, &object, body.ops)
        .await?;
    Ok(Json(StateBatchAnswer { versions }))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/objects/{type}/{key}/state",
    tag = "objects",
    summary = "An object's state in key order: a prefix or a [start, end) range, a page at a time",
    params(StateListQuery),
    responses((status = 200, description = "OK", body = keel_api::handlers::StatePage))
)]
pub(in crate::api) async fn list(
    State(engine): State<Arc<Engine>>,
    ObjectPath(ns, object, _): ObjectPath,
    QueryParams(q): QueryParams<StateListQuery>,
) -> Api<Json<StatePage>> {
    let query = StateQuery {
        prefix: q.prefix,
        start: q.start,
        end: q.end,
        after: q.cursor,
        limit: q.limit.unwrap_or(100),
    };
    let page = engine.handlers().state_list(&ns, &object, query).await?;
    Ok(Json(StatePage {
        entries: page.entries,
        next_cursor: page.next_cursor,
    }))
}
