//! OAuth2 integrations and connections: put, get, list and delete them;
//! start a connect session; the callback the provider sends the end user
//! back to (`GET /oauth/callback`, open: its single-use `state` is its
//! authority); calls made as a connection; the keys' rotation. No answer
//! holds a secret or a token.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use keel_api::connections::{
    ConnectAnswer, ConnectRequest, ConnectionAnswer, ConnectionList, IntegrationAnswer,
    IntegrationList, IntegrationRequest, KeysRotated, ProxyAnswer, ProxyRequest,
};
use keel_core::connection::DEFAULT_TOPIC;
use keel_core::{ConnectionName, IntegrationName, Namespace};
use keel_engine::Engine;
use keel_engine::connections::Callback;
use keel_store::{Connection, Integration};

use super::extract::{JsonBody, NamespacePath, path_segments, segment, user_namespace};
use super::{ApiError, created};

type Api<T> = Result<T, ApiError>;

/// `{ns}` and `{name}` of an integration, validated.
pub(super) struct IntegrationPath(Namespace, IntegrationName);

impl<S: Send + Sync> FromRequestParts<S> for IntegrationPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(IntegrationPath(
            user_namespace(segment(&segments, "ns"))?,
            IntegrationName::new(segment(&segments, "name"))?,
        ))
    }
}

/// `{ns}` and `{name}` of a connection, validated.
pub(super) struct ConnectionPath(Namespace, ConnectionName);

impl<S: Send + Sync> FromRequestParts<S> for ConnectionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        Ok(ConnectionPath(
            user_namespace(segment(&segments, "ns"))?,
            ConnectionName::new(segment(&segments, "name"))?,
        ))
    }
}

fn integration_answer(i: Integration) -> IntegrationAnswer {
    let resolved = i.spec.check(true).ok();
    IntegrationAnswer {
        name: i.name.to_string(),
        provider: i.spec.provider,
        client_id: i.spec.client_id,
        client_secret_set: !i.client_secret.is_empty(),
        auth_url: resolved
            .as_ref()
            .map(|r| r.auth_url.to_string())
            .unwrap_or_default(),
        token_url: resolved
            .as_ref()
            .map(|r| r.token_url.to_string())
            .unwrap_or_default(),
        api_base: resolved
            .map(|r| r.api_base.iter().map(origin).collect())
            .unwrap_or_default(),
        scopes: i.spec.scopes,
        pkce: i.spec.pkce,
        client_auth: i.spec.client_auth,
        redirect_url: i.spec.redirect_url,
        topic: i
            .spec
            .topic
            .map_or_else(|| DEFAULT_TOPIC.to_owned(), |t| t.to_string()),
        created_at: i.created_at,
        updated_at: i.updated_at,
    }
}

/// An origin as it is written: without its scheme's own port.
fn origin(o: &keel_core::handler::Origin) -> String {
    match (o.scheme.as_str(), o.port) {
        ("https", 443) | ("http", 80) => format!("{}://{}", o.scheme, o.host),
        _ => o.to_string(),
    }
}

fn connection_answer(c: Connection) -> ConnectionAnswer {
    let t = c.tokens;
    ConnectionAnswer {
        name: c.name.to_string(),
        integration: c.integration.to_string(),
        status: t.status,
        version: c.version,
        token_type: t.token_type,
        scope: t.scope,
        has_refresh_token: t.refresh_token.is_some(),
        expires_at: t.expires_at,
        refresh_at: t.refresh_at,
        refreshed_at: t.refreshed_at,
        error: t.error,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

#[utoipa::path(put, path = "/namespaces/{ns}/integrations/{name}", tag = "connections",
    summary = "Create or change an OAuth2 integration (its client secret is kept sealed, never shown)",
    request_body = keel_api::connections::IntegrationRequest,
    responses((status = 200, description = "OK", body = IntegrationAnswer),
              (status = 201, description = "created", body = IntegrationAnswer)))]
pub(super) async fn integration_put(
    State(engine): State<Arc<Engine>>,
    IntegrationPath(ns, name): IntegrationPath,
    JsonBody(spec): JsonBody<IntegrationRequest>,
) -> Api<Response> {
    let (integration, new) = engine
        .connections()
        .put_integration(&ns, &name, spec)
        .await?;
    Ok(created((integration_answer(integration), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/integrations/{name}", tag = "connections",
    summary = "One integration",
    responses((status = 200, description = "OK", body = IntegrationAnswer)))]
pub(super) async fn integration_get(
    State(engine): State<Arc<Engine>>,
    IntegrationPath(ns, name): IntegrationPath,
) -> Api<Json<IntegrationAnswer>> {
    let integration = engine.connections().integration(&ns, &name).await?;
    Ok(Json(integration_answer(integration)))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/integrations/{name}", tag = "connections",
    summary = "Delete an integration (409 while it has connections)",
    responses((status = 204, description = "deleted")))]
pub(super) async fn integration_delete(
    State(engine): State<Arc<Engine>>,
    IntegrationPath(ns, name): IntegrationPath,
) -> Api<StatusCode> {
    engine.connections().delete_integration(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/integrations", tag = "connections",
    summary = "A namespace's integrations",
    responses((status = 200, description = "OK", body = IntegrationList)))]
pub(super) async fn integrations_list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<IntegrationList>> {
    let integrations = engine.connections().integrations(&ns).await?;
    Ok(Json(IntegrationList {
        integrations: integrations.into_iter().map(integration_answer).collect(),
    }))
}

#[utoipa::path(post, path = "/namespaces/{ns}/integrations/{name}/connect-sessions",
    tag = "connections",
    summary = "Start connecting an end user: the provider's authorize URL, with a single-use state good for 10 minutes",
    request_body = ConnectRequest,
    responses((status = 201, description = "send the end user to authorize_url", body = ConnectAnswer)))]
pub(super) async fn connect(
    State(engine): State<Arc<Engine>>,
    IntegrationPath(ns, name): IntegrationPath,
    JsonBody(request): JsonBody<ConnectRequest>,
) -> Api<Response> {
    let answer = engine.connections().connect(&ns, &name, request).await?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The provider's redirect: `state` and `code`, or `error`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[utoipa::path(get, path = "/oauth/callback", tag = "connections",
    summary = "Where the provider sends the end user back: the code is exchanged and the connection stored",
    params(CallbackQuery),
    responses((status = 200, description = "connected (a page)", content_type = "text/html", body = String),
              (status = 303, description = "connected: on to the session's return_to")))]
pub(super) async fn callback(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<CallbackQuery>,
) -> Api<Response> {
    let connected = engine
        .connections()
        .callback(Callback {
            state: query.state,
            code: query.code,
            error: query.error,
            error_description: query.error_description,
        })
        .await?;
    let name = connected.connection.name.to_string();
    if let Some(to) = connected.return_to
        && let Ok(mut url) = url::Url::parse(&to)
    {
        url.query_pairs_mut()
            .append_pair("connection", &name)
            .append_pair("status", "connected");
        return Ok(Redirect::to(url.as_str()).into_response());
    }
    Ok(Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connected</title></head>\
         <body><p>Connected. You can close this window.</p></body></html>",
    )
    .into_response())
}

#[utoipa::path(get, path = "/namespaces/{ns}/connections", tag = "connections",
    summary = "A namespace's connections (never their tokens)",
    responses((status = 200, description = "OK", body = ConnectionList)))]
pub(super) async fn connections_list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<ConnectionList>> {
    let connections = engine.connections().connections(&ns).await?;
    Ok(Json(ConnectionList {
        connections: connections.into_iter().map(connection_answer).collect(),
    }))
}

#[utoipa::path(get, path = "/namespaces/{ns}/connections/{name}", tag = "connections",
    summary = "One connection (never its tokens)",
    responses((status = 200, description = "OK", body = ConnectionAnswer)))]
pub(super) async fn connection_get(
    State(engine): State<Arc<Engine>>,
    ConnectionPath(ns, name): ConnectionPath,
) -> Api<Json<ConnectionAnswer>> {
    let connection = engine.connections().connection(&ns, &name).await?;
    Ok(Json(connection_answer(connection)))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/connections/{name}", tag = "connections",
    summary = "Forget a connection and its tokens (connection.deleted is published)",
    responses((status = 204, description = "deleted")))]
pub(super) async fn connection_delete(
    State(engine): State<Arc<Engine>>,
    ConnectionPath(ns, name): ConnectionPath,
) -> Api<StatusCode> {
    engine.connections().delete_connection(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/namespaces/{ns}/connections/{name}/requests", tag = "connections",
    summary = "Make a call as the connection: Keel adds its Authorization header (refreshed first when due) and answers what came back",
    request_body = ProxyRequest,
    responses((status = 200, description = "the provider's answer", body = ProxyAnswer)))]
pub(super) async fn proxy(
    State(engine): State<Arc<Engine>>,
    ConnectionPath(ns, name): ConnectionPath,
    JsonBody(request): JsonBody<ProxyRequest>,
) -> Api<Json<ProxyAnswer>> {
    Ok(Json(engine.connections().proxy(&ns, &name, request).await?))
}

#[utoipa::path(post, path = "/keys/rotate", tag = "connections",
    summary = "Seal every secret again with a new key, in one transaction",
    responses((status = 200, description = "OK", body = KeysRotated)))]
pub(super) async fn rotate(State(engine): State<Arc<Engine>>) -> Api<Json<KeysRotated>> {
    let (active, resealed) = engine.connections().rotate_keys().await?;
    Ok(Json(KeysRotated { active, resealed }))
}
