//! Bearer tokens on every route: each route's need (an [`Access`] and what
//! it reaches) is one line of [`RULES`], checked from the route and its
//! path alone, before any handler or store access. A route missing from the
//! table needs an admin (fail closed). 401 `unauthenticated` for a missing,
//! unknown, expired or revoked token; 403 `forbidden` for a role, namespace
//! or resource the token does not reach. The webhook ingress (checked by
//! its source's signature), the health probes and the OpenAPI document are
//! open; `/metrics` is
//! open only with `--metrics-public`. A change let in is recorded in the
//! audit log around its handler (`audit.rs`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_core::auth::{Access, Reach};
use keel_core::{ErrorCode, QueueRef};
use keel_engine::Engine;

use super::ApiError;
use super::extract::path_segments;

/// How the API checks its callers.
#[derive(Clone, Copy, Debug)]
pub struct AuthConfig {
    /// Every route but the open ones needs a token (`keel server`'s default).
    pub required: bool,
    /// `/metrics` is open even when tokens are required.
    pub metrics_public: bool,
}

/// What a route reaches, by its path parameters.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Every namespace.
    All,
    /// `{ns}` as a whole.
    Namespace,
    /// `{ns}` and the resource of this kind named by this parameter.
    Resource(&'static str, &'static str),
    /// `{ns}`, and a lease token in the body.
    Leased,
    /// The `namespace` query parameter when given, else every namespace.
    Queried,
}

#[derive(Clone, Copy, Debug)]
enum Need {
    Open,
    Metrics,
    Token(Access, Shape),
}

use Access::{Admin, Operate, Publish, Read, ReadJobs, Work};
use Shape::{All, Leased, Namespace, Queried, Resource};

const fn on(kind: &'static str, param: &'static str) -> Shape {
    Resource(kind, param)
}
const QUEUE: Shape = on("queue", "queue");
const TOPIC: Shape = on("topic", "topic");
const SUBSCRIPTION: Shape = on("subscription", "name");
const WORKFLOW: Shape = on("workflow", "name");
const SOURCE: Shape = on("source", "name");
const ENDPOINT: Shape = on("endpoint", "name");
const SCHEDULE: Shape = on("schedule", "name");
const CHANNEL: Shape = on("channel", "name");
const TEMPLATE: Shape = on("template", "name");
const INBOX: Shape = on("inbox", "id");
const MONITOR: Shape = on("monitor", "name");
const HANDLER: Shape = on("handler", "name");
const OBJECT: Shape = on("object", "type");
const INTEGRATION: Shape = on("integration", "name");
const CONNECTION: Shape = on("connection", "name");

/// Every route's need, as docs/api.md's role table shows it.
#[rustfmt::skip]
const RULES: &[(&str, &str, Need)] = &[
    ("GET", "/healthz", Need::Open),
    ("GET", "/readyz", Need::Open),
    ("GET", "/metrics", Need::Metrics),
    ("GET", "/openapi.json", Need::Open),
    ("POST", "/v1/hooks/{ns}/{name}", Need::Open),
    // A signed link is its own authority (RFC 8058 one-click unsubscribe).
    ("POST", "/v1/unsubscribe/{token}", Need::Open),
    // A heartbeat's token is its own authority, as a ping URL is.
    ("POST", "/v1/ping/{token}", Need::Open),
    ("GET", "/v1/ping/{token}", Need::Open),
    ("POST", "/v1/ping/{token}/{signal}", Need::Open),
    ("GET", "/v1/ping/{token}/{signal}", Need::Open),
    ("GET", "/v1/unsubscribe/{token}", Need::Open),
    // A session's single-use state is its own authority (RFC 6749 10.12).
    ("GET", "/oauth/callback", Need::Open),
    ("POST", "/v1/tokens", Need::Token(Admin, All)),
    ("GET", "/v1/tokens", Need::Token(Admin, All)),
    ("DELETE", "/v1/tokens/{id}", Need::Token(Admin, All)),
    ("GET", "/v1/audit", Need::Token(Operate, Queried)),
    ("GET", "/v1/namespaces", Need::Token(Admin, All)),
    ("GET", "/v1/projects", Need::Token(Admin, All)),
    ("POST", "/v1/projects/{project}/plans", Need::Token(Admin, All)),
    ("POST", "/v1/projects/{project}/versions", Need::Token(Admin, All)),
    ("GET", "/v1/projects/{project}/versions", Need::Token(Admin, All)),
    ("GET", "/v1/projects/{project}/versions/{version}", Need::Token(Admin, All)),
    ("PUT", "/v1/namespaces/{ns}", Need::Token(Admin, Namespace)),
    ("GET", "/v1/namespaces/{ns}", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/slos", Need::Token(Read, Namespace)),
    ("POST", "/v1/namespaces/{ns}/queues/{queue}/jobs", Need::Token(Publish, QUEUE)),
    ("POST", "/v1/namespaces/{ns}/queues/{queue}/imports", Need::Token(Publish, QUEUE)),
    ("POST", "/v1/namespaces/{ns}/queues/{queue}/lease", Need::Token(Work, QUEUE)),
    ("GET", "/v1/namespaces/{ns}/queues/{queue}/stream", Need::Token(Work, QUEUE)),
    ("POST", "/v1/namespaces/{ns}/queues/{queue}/redrive", Need::Token(Operate, QUEUE)),
    ("GET", "/v1/namespaces/{ns}/queues/{queue}", Need::Token(ReadJobs, QUEUE)),
    ("PUT", "/v1/namespaces/{ns}/queues/{queue}", Need::Token(Operate, QUEUE)),
    ("POST", "/v1/namespaces/{ns}/queues/{queue}/pause", Need::Token(Operate, QUEUE)),
    ("POST", "/v1/namespaces/{ns}/queues/{queue}/resume", Need::Token(Operate, QUEUE)),
    ("GET", "/v1/namespaces/{ns}/jobs", Need::Token(ReadJobs, Namespace)),
    ("GET", "/v1/namespaces/{ns}/jobs/{id}", Need::Token(ReadJobs, Namespace)),
    ("POST", "/v1/namespaces/{ns}/jobs/{id}/complete", Need::Token(Work, Leased)),
    ("POST", "/v1/namespaces/{ns}/jobs/{id}/fail", Need::Token(Work, Leased)),
    ("POST", "/v1/namespaces/{ns}/jobs/{id}/heartbeat", Need::Token(Work, Leased)),
    ("POST", "/v1/namespaces/{ns}/jobs/{id}/cancel", Need::Token(Operate, Namespace)),
    ("POST", "/v1/namespaces/{ns}/acks", Need::Token(Work, Leased)),
    ("GET", "/v1/namespaces/{ns}/topics", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/topics/{topic}", Need::Token(Read, TOPIC)),
    ("PUT", "/v1/namespaces/{ns}/topics/{topic}", Need::Token(Operate, TOPIC)),
    ("DELETE", "/v1/namespaces/{ns}/topics/{topic}", Need::Token(Operate, TOPIC)),
    ("GET", "/v1/namespaces/{ns}/topics/{topic}/events", Need::Token(Read, TOPIC)),
    ("POST", "/v1/namespaces/{ns}/topics/{topic}/events", Need::Token(Publish, TOPIC)),
    ("GET", "/v1/namespaces/{ns}/topics/{topic}/events/{id}", Need::Token(Read, TOPIC)),
    ("POST", "/v1/namespaces/{ns}/topics/{topic}/imports", Need::Token(Publish, TOPIC)),
    ("POST", "/v1/namespaces/{ns}/topics/{topic}/match", Need::Token(Read, TOPIC)),
    ("GET", "/v1/namespaces/{ns}/subscriptions", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/subscriptions/{name}", Need::Token(Read, SUBSCRIPTION)),
    ("PUT", "/v1/namespaces/{ns}/subscriptions/{name}", Need::Token(Operate, SUBSCRIPTION)),
    ("DELETE", "/v1/namespaces/{ns}/subscriptions/{name}", Need::Token(Operate, SUBSCRIPTION)),
    ("POST", "/v1/namespaces/{ns}/subscriptions/{name}/pause", Need::Token(Operate, SUBSCRIPTION)),
    ("POST", "/v1/namespaces/{ns}/subscriptions/{name}/resume", Need::Token(Operate, SUBSCRIPTION)),
    ("POST", "/v1/namespaces/{ns}/subscriptions/{name}/seek", Need::Token(Operate, SUBSCRIPTION)),
    ("POST", "/v1/namespaces/{ns}/subscriptions/{name}/fetch", Need::Token(Work, SUBSCRIPTION)),
    ("POST", "/v1/namespaces/{ns}/subscriptions/{name}/commit", Need::Token(Work, SUBSCRIPTION)),
    ("GET", "/v1/namespaces/{ns}/workflows", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/workflows/{name}", Need::Token(Read, WORKFLOW)),
    ("PUT", "/v1/namespaces/{ns}/workflows/{name}", Need::Token(Operate, WORKFLOW)),
    ("GET", "/v1/namespaces/{ns}/workflows/{name}/versions", Need::Token(Read, WORKFLOW)),
    ("POST", "/v1/namespaces/{ns}/workflows/{name}/runs", Need::Token(Publish, WORKFLOW)),
    ("GET", "/v1/namespaces/{ns}/runs", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/runs/{id}", Need::Token(Read, Namespace)),
    ("POST", "/v1/namespaces/{ns}/runs/{id}/signals/{signal}", Need::Token(Publish, Namespace)),
    ("POST", "/v1/namespaces/{ns}/runs/{id}/cancel", Need::Token(Operate, Namespace)),
    ("POST", "/v1/namespaces/{ns}/runs/{id}/retry", Need::Token(Operate, Namespace)),
    ("GET", "/v1/namespaces/{ns}/sources", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/sources/{name}", Need::Token(Read, SOURCE)),
    ("PUT", "/v1/namespaces/{ns}/sources/{name}", Need::Token(Operate, SOURCE)),
    ("DELETE", "/v1/namespaces/{ns}/sources/{name}", Need::Token(Operate, SOURCE)),
    ("GET", "/v1/namespaces/{ns}/endpoints", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/endpoints/{name}", Need::Token(Read, ENDPOINT)),
    ("PUT", "/v1/namespaces/{ns}/endpoints/{name}", Need::Token(Operate, ENDPOINT)),
    ("DELETE", "/v1/namespaces/{ns}/endpoints/{name}", Need::Token(Operate, ENDPOINT)),
    ("POST", "/v1/namespaces/{ns}/endpoints/{name}/rotate-secret", Need::Token(Operate, ENDPOINT)),
    ("POST", "/v1/namespaces/{ns}/endpoints/{name}/enable", Need::Token(Operate, ENDPOINT)),
    ("GET", "/v1/namespaces/{ns}/endpoints/{name}/attempts", Need::Token(Read, ENDPOINT)),
    ("POST", "/v1/namespaces/{ns}/endpoints/{name}/recover", Need::Token(Operate, ENDPOINT)),
    ("GET", "/v1/namespaces/{ns}/schedules", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/schedules/{name}", Need::Token(Read, SCHEDULE)),
    ("PUT", "/v1/namespaces/{ns}/schedules/{name}", Need::Token(Operate, SCHEDULE)),
    ("DELETE", "/v1/namespaces/{ns}/schedules/{name}", Need::Token(Operate, SCHEDULE)),
    ("POST", "/v1/namespaces/{ns}/schedules/{name}/pause", Need::Token(Operate, SCHEDULE)),
    ("POST", "/v1/namespaces/{ns}/schedules/{name}/resume", Need::Token(Operate, SCHEDULE)),
    ("POST", "/v1/namespaces/{ns}/schedules/{name}/trigger", Need::Token(Operate, SCHEDULE)),
    ("POST", "/v1/namespaces/{ns}/schedules/{name}/backfill", Need::Token(Operate, SCHEDULE)),
    ("GET", "/v1/namespaces/{ns}/channels", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/channels/{name}", Need::Token(Read, CHANNEL)),
    ("PUT", "/v1/namespaces/{ns}/channels/{name}", Need::Token(Operate, CHANNEL)),
    ("DELETE", "/v1/namespaces/{ns}/channels/{name}", Need::Token(Operate, CHANNEL)),
    ("GET", "/v1/namespaces/{ns}/templates", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/templates/{name}", Need::Token(Read, TEMPLATE)),
    ("PUT", "/v1/namespaces/{ns}/templates/{name}", Need::Token(Operate, TEMPLATE)),
    ("DELETE", "/v1/namespaces/{ns}/templates/{name}", Need::Token(Operate, TEMPLATE)),
    ("GET", "/v1/namespaces/{ns}/recipients", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/recipients/{id}", Need::Token(Read, Namespace)),
    ("PUT", "/v1/namespaces/{ns}/recipients/{id}", Need::Token(Publish, Namespace)),
    ("DELETE", "/v1/namespaces/{ns}/recipients/{id}", Need::Token(Publish, Namespace)),
    ("GET", "/v1/namespaces/{ns}/recipients/{id}/preferences", Need::Token(Read, Namespace)),
    ("PUT", "/v1/namespaces/{ns}/recipients/{id}/preferences", Need::Token(Publish, Namespace)),
    ("GET", "/v1/namespaces/{ns}/preferences", Need::Token(Read, Namespace)),
    ("PUT", "/v1/namespaces/{ns}/preferences", Need::Token(Operate, Namespace)),
    ("POST", "/v1/namespaces/{ns}/notifications", Need::Token(Publish, Namespace)),
    ("GET", "/v1/namespaces/{ns}/notifications", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/notifications/{id}", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/inbox/{id}", Need::Token(Read, INBOX)),
    ("GET", "/v1/namespaces/{ns}/inbox/{id}/stream", Need::Token(Read, INBOX)),
    ("POST", "/v1/namespaces/{ns}/inbox/{id}/read", Need::Token(Publish, INBOX)),
    ("POST", "/v1/namespaces/{ns}/inbox/{id}/seen", Need::Token(Publish, INBOX)),
    ("POST", "/v1/namespaces/{ns}/inbox/{id}/archive", Need::Token(Publish, INBOX)),
    ("GET", "/v1/namespaces/{ns}/handlers", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/handlers/{name}", Need::Token(Read, HANDLER)),
    ("PUT", "/v1/namespaces/{ns}/handlers/{name}", Need::Token(Operate, HANDLER)),
    ("DELETE", "/v1/namespaces/{ns}/handlers/{name}", Need::Token(Operate, HANDLER)),
    ("PUT", "/v1/namespaces/{ns}/handlers/{name}/secrets", Need::Token(Operate, HANDLER)),
    ("POST", "/v1/namespaces/{ns}/handlers/{name}/invoke", Need::Token(Operate, HANDLER)),
    ("GET", "/v1/namespaces/{ns}/objects/{type}/{key}/state", Need::Token(Read, OBJECT)),
    ("GET", "/v1/namespaces/{ns}/objects/{type}/{key}/state/{k}", Need::Token(Read, OBJECT)),
    ("PUT", "/v1/namespaces/{ns}/objects/{type}/{key}/state/{k}", Need::Token(Publish, OBJECT)),
    ("DELETE", "/v1/namespaces/{ns}/objects/{type}/{key}/state/{k}", Need::Token(Publish, OBJECT)),
    ("POST", "/v1/namespaces/{ns}/objects/{type}/{key}/state:batch", Need::Token(Publish, OBJECT)),
    ("POST", "/v1/keys/rotate", Need::Token(Admin, All)),
    ("GET", "/v1/namespaces/{ns}/integrations", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/integrations/{name}", Need::Token(Read, INTEGRATION)),
    ("PUT", "/v1/namespaces/{ns}/integrations/{name}", Need::Token(Operate, INTEGRATION)),
    ("DELETE", "/v1/namespaces/{ns}/integrations/{name}", Need::Token(Operate, INTEGRATION)),
    ("POST", "/v1/namespaces/{ns}/integrations/{name}/connect-sessions", Need::Token(Publish, INTEGRATION)),
    ("GET", "/v1/namespaces/{ns}/connections", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/connections/{name}", Need::Token(Read, CONNECTION)),
    ("DELETE", "/v1/namespaces/{ns}/connections/{name}", Need::Token(Operate, CONNECTION)),
    ("POST", "/v1/namespaces/{ns}/connections/{name}/requests", Need::Token(Publish, CONNECTION)),
    ("GET", "/v1/namespaces/{ns}/monitors", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/monitors/{name}", Need::Token(Read, MONITOR)),
    ("PUT", "/v1/namespaces/{ns}/monitors/{name}", Need::Token(Operate, MONITOR)),
    ("DELETE", "/v1/namespaces/{ns}/monitors/{name}", Need::Token(Operate, MONITOR)),
    ("GET", "/v1/namespaces/{ns}/monitors/{name}/results", Need::Token(Read, MONITOR)),
    ("GET", "/v1/namespaces/{ns}/maintenance", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/maintenance/{name}", Need::Token(Read, Namespace)),
    ("PUT", "/v1/namespaces/{ns}/maintenance/{name}", Need::Token(Operate, Namespace)),
    ("DELETE", "/v1/namespaces/{ns}/maintenance/{name}", Need::Token(Operate, Namespace)),
    ("GET", "/v1/namespaces/{ns}/status-pages", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/status-pages/{name}", Need::Token(Read, Namespace)),
    ("PUT", "/v1/namespaces/{ns}/status-pages/{name}", Need::Token(Operate, Namespace)),
    ("DELETE", "/v1/namespaces/{ns}/status-pages/{name}", Need::Token(Operate, Namespace)),
    ("GET", "/v1/namespaces/{ns}/escalation-policies", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/escalation-policies/{name}", Need::Token(Read, Namespace)),
    ("PUT", "/v1/namespaces/{ns}/escalation-policies/{name}", Need::Token(Operate, Namespace)),
    ("DELETE", "/v1/namespaces/{ns}/escalation-policies/{name}", Need::Token(Operate, Namespace)),
    ("GET", "/v1/namespaces/{ns}/incidents", Need::Token(Read, Namespace)),
    ("GET", "/v1/namespaces/{ns}/incidents/{id}", Need::Token(Read, Namespace)),
    ("POST", "/v1/namespaces/{ns}/incidents/events", Need::Token(Publish, Namespace)),
    ("POST", "/v1/namespaces/{ns}/incidents/{id}/acknowledge", Need::Token(Publish, Namespace)),
    ("POST", "/v1/namespaces/{ns}/incidents/{id}/resolve", Need::Token(Publish, Namespace)),
    ("POST", "/v1/namespaces/{ns}/incidents/{id}/note", Need::Token(Publish, Namespace)),
];

static TABLE: LazyLock<HashMap<(&'static str, &'static str), Need>> =
    LazyLock::new(|| RULES.iter().map(|&(m, p, need)| ((m, p), need)).collect());

/// A route's need; HEAD is GET's. Unlisted: admin over everything.
fn need(method: &Method, path: &str) -> Need {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    TABLE
        .get(&(method, path))
        .copied()
        .unwrap_or(Need::Token(Admin, All))
}

/// Whether a route needs no token (the OpenAPI document says so).
pub(super) fn is_open(method: &str, path: &str) -> bool {
    matches!(TABLE.get(&(method, path)), Some(Need::Open))
}

/// Every route the table lists, as (method, path).
#[cfg(test)]
pub(super) fn routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    RULES.iter().map(|&(method, path, _)| (method, path))
}

/// Whether a request is a change the audit log records: anything but a
/// read that needs an operator or an admin.
fn is_audited(method: &Method, need: Need) -> bool {
    let read = method == Method::GET || method == Method::HEAD;
    !read && matches!(need, Need::Token(Operate | Admin, _))
}

pub(super) async fn check(
    State((engine, config)): State<(Arc<Engine>, AuthConfig)>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str())
        .unwrap_or_default();
    let route_need = need(req.method(), route);
    let audit = is_audited(req.method(), route_need).then(|| route.to_owned());
    let (access, shape) = match route_need {
        Need::Open => return next.run(req).await,
        Need::Metrics if config.metrics_public => return next.run(req).await,
        Need::Metrics => (Read, All),
        Need::Token(access, shape) => (access, shape),
    };
    let req = if config.required {
        let (mut parts, body) = req.into_parts();
        let caller = match authorize(&engine, &mut parts, access, shape).await {
            Ok(caller) => caller,
            Err(e) => return refusal(e),
        };
        parts.extensions.insert(caller);
        Request::from_parts(parts, body)
    } else {
        req
    };
    match audit {
        Some(route) => super::audit::record(&engine, &route, req, next).await,
        None => next.run(req).await,
    }
}

async fn authorize(
    engine: &Engine,
    parts: &mut axum::http::request::Parts,
    access: Access,
    shape: Shape,
) -> Result<keel_engine::tokens::Caller, ApiError> {
    let presented = bearer(&parts.headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "this route needs a token: Authorization: Bearer keel_...",
        )
    })?;
    let caller = engine.tokens().authenticate(presented).await?;
    let segments = match shape {
        All => Vec::new(),
        Queried => queried_namespace(&parts.uri),
        _ => path_segments(parts, &()).await?,
    };
    let param = |name: &str| {
        segments
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let reach = match shape {
        All => Reach::All,
        Queried if segments.is_empty() => Reach::All,
        Queried => Reach::Namespace(param("ns")),
        Namespace => Reach::Namespace(param("ns")),
        Leased => Reach::Leased(param("ns")),
        Resource(kind, name) => Reach::Resource {
            namespace: param("ns"),
            kind,
            name: param(name),
        },
    };
    caller.grant().permit(access, reach)?;
    Ok(caller)
}

/// The token a request presents as `Authorization: Bearer`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks again that `presented` may work `queue`. A worker stream calls
/// it before every lease, so that a token revoked or expired while its
/// stream is open ends the stream.
pub(super) async fn recheck_work(
    engine: &Engine,
    presented: &str,
    queue: &QueueRef,
) -> Result<(), ApiError> {
    let caller = engine.tokens().authenticate(presented).await?;
    caller.grant().permit(
        Work,
        Reach::Resource {
            namespace: queue.namespace.as_str(),
            kind: "queue",
            name: queue.queue.as_str(),
        },
    )?;
    Ok(())
}

/// The `namespace` query parameter, as the `ns` path parameter would be
/// (none when the query does not parse: the handler refuses it).
fn queried_namespace(uri: &axum::http::Uri) -> Vec<(String, String)> {
    axum::extract::Query::<keel_api::audit::AuditParams>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.namespace)
        .map(|ns| vec![("ns".to_owned(), ns)])
        .unwrap_or_default()
}

fn refusal(e: ApiError) -> Response {
    let unauthenticated = e.0.code == ErrorCode::Unauthenticated;
    let mut response = e.into_response();
    if unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_listed_once_and_unlisted_routes_need_an_admin() {
        assert_eq!(TABLE.len(), RULES.len(), "a route listed twice");
        assert!(matches!(
            need(&Method::GET, "/v1/namespaces/{ns}/new-thing"),
            Need::Token(Admin, All)
        ));
        assert!(matches!(need(&Method::HEAD, "/healthz"), Need::Open));
    }
}
