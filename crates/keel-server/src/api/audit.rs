//! The audit log: every change an operator or admin makes through the API
//! (a route whose need is `operate` or `admin`, other than a read; the
//! token check in `auth.rs` calls [`record`] around it) is appended before
//! the handler runs, durable before the change begins, and
//! settled with the answer's status after it. An entry whose outcome stays
//! empty means the server stopped during the change. `GET /v1/audit` reads
//! it (admins; operators with `namespace=` one of theirs).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_api::audit::{ActorAnswer, AuditEntryAnswer, AuditPage, AuditParams};
use keel_core::{Error, ErrorCode};
use keel_engine::Engine;
use keel_engine::tokens::Caller;
use keel_store::{Actor, AuditEntry, AuditQuery, NewAuditEntry};

use super::ApiError;
use super::extract::{QueryParams, path_segments};
use super::request_id::RequestId;

const PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// Runs a change `next` between appending its entry and settling it
/// (`route` is its matched path); refuses it when the entry cannot be
/// written.
pub(super) async fn record(engine: &Engine, route: &str, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, engine.limits().max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is over {} bytes", engine.limits().max_body_bytes),
            )
            .into_response();
        }
    };
    let segments = path_segments(&mut parts, &()).await.unwrap_or_default();
    let param = |name: &str| {
        segments
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut target = segments
        .iter()
        .rfind(|(k, _)| k != "ns")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if target.is_empty() {
        // A change that makes its resource (a token) names it in its body.
        target = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
            .unwrap_or_default();
    }
    let mut summary =
        serde_json::json!({"method": parts.method.as_str(), "path": parts.uri.path()});
    if !bytes.is_empty() {
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        summary["body_sha256"] = digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into();
    }
    let actor = match parts.extensions.get::<Caller>() {
        Some(c) => Actor {
            token_id: Some(c.token_id().to_owned()),
            name: c.name().to_owned(),
            role: Some(c.grant().role),
        },
        None => Actor {
            token_id: None,
            name: "anonymous (auth off)".to_owned(),
            role: None,
        },
    };
    let entry = NewAuditEntry {
        at: engine.now(),
        actor,
        namespace: param("ns"),
        action: action(parts.method.as_str(), route),
        target,
        request_id: parts
            .extensions
            .get::<RequestId>()
            .and_then(|r| r.0.to_str().ok().map(str::to_owned))
            .unwrap_or_default(),
        summary: summary.to_string(),
    };
    // No entry, no change: a change must never go unrecorded.
    let pending = match engine.audit().begin(&entry).await {
        Ok(id) => id,
        Err(e) => return ApiError(e).into_response(),
    };
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if let Err(e) = engine
        .audit()
        .settle(pending, response.status().as_u16())
        .await
    {
        tracing::warn!(error = %e.message, "settling an audit entry failed");
    }
    response
}

/// `queue.put`, `queue.pause`, `job.cancel`, `token.create`, `token.revoke`:
/// the kind is the last collection the path names (`queues/{queue}`), the
/// verb its last word, or the method's.
fn action(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let mut kind = segments.first().copied().unwrap_or_default();
    for pair in segments.windows(2) {
        if pair[1].starts_with('{') && !pair[0].starts_with('{') {
            kind = pair[0];
        }
    }
    let kind = kind.strip_suffix('s').unwrap_or(kind);
    let last = segments.last().copied().unwrap_or_default();
    let verb = match method {
        _ if !last.starts_with('{') && last.trim_end_matches('s') != kind => last,
        "DELETE" if kind == "token" => "revoke",
        "DELETE" => "delete",
        "PUT" => "put",
        _ => "create",
    };
    format!("{kind}.{verb}")
}

#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    summary = "Read the audit log",
    params(keel_api::audit::AuditParams),
    responses((status = 200, description = "OK", body = keel_api::audit::AuditPage))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = params.limit.unwrap_or(PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid(format!("limit must be 1 to {MAX_PAGE}")).into());
    }
    let entries = engine
        .audit()
        .list(&AuditQuery {
            namespace: params.namespace,
            action: params.action,
            actor: params.actor,
            after: params.after,
            before: None,
            limit,
        })
        .await?;
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(answer).collect(),
        next_after,
    }))
}

pub(crate) fn answer(e: AuditEntry) -> AuditEntryAnswer {
    let entry = e.entry;
    AuditEntryAnswer {
        id: e.id,
        at: entry.at,
        actor: ActorAnswer {
            token_id: entry.actor.token_id,
            name: entry.actor.name,
            role: entry.actor.role,
        },
        namespace: entry.namespace,
        action: entry.action,
        target: entry.target,
        request_id: entry.request_id,
        summary: serde_json::from_str(&entry.summary).unwrap_or_default(),
        outcome: e.outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_name_the_kind_and_the_verb() {
        for (method, path, want) in [
            ("PUT", "/v1/namespaces/{ns}/queues/{queue}", "queue.put"),
            (
                "POST",
                "/v1/namespaces/{ns}/queues/{queue}/pause",
                "queue.pause",
            ),
            (
                "POST",
                "/v1/namespaces/{ns}/queues/{queue}/redrive",
                "queue.redrive",
            ),
            ("POST", "/v1/namespaces/{ns}/jobs/{id}/cancel", "job.cancel"),
            (
                "DELETE",
                "/v1/namespaces/{ns}/topics/{topic}",
                "topic.delete",
            ),
            (
                "POST",
                "/v1/namespaces/{ns}/endpoints/{name}/rotate-secret",
                "endpoint.rotate-secret",
            ),
            ("POST", "/v1/namespaces/{ns}/runs/{id}/retry", "run.retry"),
            ("POST", "/v1/tokens", "token.create"),
            ("DELETE", "/v1/tokens/{id}", "token.revoke"),
            ("PUT", "/v1/namespaces/{ns}", "namespace.put"),
        ] {
            assert_eq!(action(method, path), want, "{method} {path}");
        }
    }
}
