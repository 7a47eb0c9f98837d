//! Liveness, readiness and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use keel_core::{Namespace, QueueName, QueueRef};
use serde_json::json;

use keel_engine::Engine;

/// The process serves HTTP.
pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The store answers and the server is not draining.
pub(super) async fn readyz(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    if engine.shutdown.is_fired() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        );
    }
    let probe = QueueRef {
        namespace: Namespace::new("keel").unwrap_or_else(|_| unreachable!("a valid name")),
        queue: QueueName::new("readyz").unwrap_or_else(|_| unreachable!("a valid name")),
    };
    match engine.store.queue_stats(&probe).await {
        Ok(_) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": e.message })),
        ),
    }
}

pub(super) async fn metrics(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    let text = keel_engine::metrics::render(engine.store.as_ref()).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
