//! Liveness, readiness and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use keel_api::health::{Health, HealthStatus};

use keel_engine::Engine;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process serves HTTP",
    responses((status = 200, description = "OK", body = keel_api::health::Health))
)]
/// The process serves HTTP.
pub(super) async fn healthz() -> impl IntoResponse {
    Json(Health::is(HealthStatus::Ok))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "The store answers and the server is not draining",
    responses((status = 200, description = "OK", body = keel_api::health::Health), (status = 503, description = "draining or the store does not answer", body = keel_api::health::Health))
)]
/// The store answers and the server is not draining.
pub(super) async fn readyz(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    if engine.shutdown().is_fired() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health::is(HealthStatus::Draining)),
        );
    }
    match engine.probe().await {
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

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics (text format)",
    responses((status = 200, description = "text/plain", body = String, content_type = "text/plain"))
)]
pub(super) async fn metrics(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    let text = engine.metrics().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
