//! Liveness, readiness and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use keel_api::health::{Health, HealthStatus};
use keel_core::{Namespace, QueueName, QueueRef};

use keel_engine::Engine;

/// The process serves HTTP.
pub(super) async fn healthz() -> impl IntoResponse {
    Json(Health::is(HealthStatus::Ok))
}

/// The store answers and the server is not draining.
pub(super) async fn readyz(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    if engine.shutdown.is_fired() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health::is(HealthStatus::Draining)),
        );
    }
    let probe = QueueRef {
        namespace: Namespace::new("keel").unwrap_or_else(|_| unreachable!("a valid name")),
        queue: QueueName::new("readyz").unwrap_or_else(|_| unreachable!("a valid name")),
    };
    match engine.store.queue_stats(&probe).await {
        Ok(_) => (StatusCode::OK, Json(Health::is(HealthStatus::Ready))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Unavailable,
                error: Some(e.message),
            }),
        ),
    }
}

pub(super) async fn metrics(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    let text = keel_engine::metrics::render(engine.store.as_ref()).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
