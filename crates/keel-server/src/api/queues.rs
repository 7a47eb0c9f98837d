//! Queue endpoints: statistics, policy, pause and resume.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_api::queues::{PausedAnswer, QueueAnswer, QueueRates};
use keel_core::{JobState, QueuePolicy};

use super::ApiError;
use super::extract::{JsonBody, QueuePath};
use keel_engine::Engine;

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/queues/{queue}",
    tag = "queues",
    summary = "A queue's counts, rates and policy",
    responses((status = 200, description = "OK", body = keel_api::queues::QueueAnswer))
)]
pub(super) async fn stats(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
) -> Result<Json<QueueAnswer>, ApiError> {
    let status = engine.queues().status(&queue).await?;
    let (stats, rates) = (status.stats, status.rates);
    let now = engine.now();
    Ok(Json(QueueAnswer {
        namespace: queue.namespace.to_string(),
        queue: queue.queue.to_string(),
        counts: JobState::ALL
            .into_iter()
            .map(|s| (s, stats.counts.get(&s).copied().unwrap_or(0)))
            .collect(),
        oldest_ready_at: stats.oldest_ready_at,
        oldest_ready_age_ms: stats.oldest_ready_at.map(|t| now.millis_since(t)),
        paused: stats.paused,
        policy: stats.policy,
        rates: QueueRates {
            enqueued_per_s: rates.enqueued_per_s,
            completed_per_s: rates.completed_per_s,
            failed_per_s: rates.failed_per_s,
        },
    }))
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/queues/{queue}",
    tag = "queues",
    summary = "Set a queue's policy",
    request_body(content = Option<keel_core::QueuePolicy>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = keel_core::QueuePolicy))
)]
pub(super) async fn set_policy(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
    JsonBody(policy): JsonBody<QueuePolicy>,
) -> Result<Json<QueuePolicy>, ApiError> {
    engine.queues().set_policy(&queue, policy.clone()).await?;
    Ok(Json(policy))
}

async fn set_paused(
    engine: &Engine,
    queue: &keel_core::QueueRef,
    paused: bool,
) -> Result<Json<PausedAnswer>, ApiError> {
    engine.queues().pause(queue, paused).await?;
    Ok(Json(PausedAnswer {
        queue: queue.queue.to_string(),
        paused,
    }))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/queues/{queue}/pause",
    tag = "queues",
    summary = "Pause a queue: nothing is leased from it",
    responses((status = 200, description = "OK", body = keel_api::queues::PausedAnswer))
)]
pub(super) async fn pause(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
) -> Result<Json<PausedAnswer>, ApiError> {
    set_paused(&engine, &queue, true).await
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/queues/{queue}/resume",
    tag = "queues",
    summary = "Resume a paused queue",
    responses((status = 200, description = "OK", body = keel_api::queues::PausedAnswer))
)]
pub(super) async fn resume(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
) -> Result<Json<PausedAnswer>, ApiError> {
    set_paused(&engine, &queue, false).await
}
