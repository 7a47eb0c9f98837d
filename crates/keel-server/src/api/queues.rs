//! Queue endpoints: statistics, policy, pause and resume.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_core::{JobState, QueuePolicy};
use serde_json::{Value, json};

use super::ApiError;
use super::extract::{JsonBody, QueuePath};
use keel_engine::Engine;

pub(super) async fn stats(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
) -> Result<Json<Value>, ApiError> {
    let stats = engine.store.queue_stats(&queue).await?;
    let now = engine.now();
    let counts: serde_json::Map<String, Value> = JobState::ALL
        .into_iter()
        .map(|s| {
            (
                s.as_str().to_owned(),
                json!(stats.counts.get(&s).copied().unwrap_or(0)),
            )
        })
        .collect();
    Ok(Json(json!({
        "namespace": queue.namespace.as_str(),
        "queue": queue.queue.as_str(),
        "counts": counts,
        "oldest_ready_at": stats.oldest_ready_at,
        "oldest_ready_age_ms": stats.oldest_ready_at.map(|t| now.millis_since(t)),
        "paused": stats.paused,
        "policy": stats.policy,
        "rates": engine.jobs.rates(&queue),
    })))
}

pub(super) async fn set_policy(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
    JsonBody(policy): JsonBody<QueuePolicy>,
) -> Result<Json<QueuePolicy>, ApiError> {
    policy.validate()?;
    engine
        .store
        .queue_policy_set(&queue, policy.clone(), engine.now())
        .await?;
    Ok(Json(policy))
}

async fn set_paused(
    engine: &Engine,
    queue: &keel_core::QueueRef,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    engine
        .store
        .queue_pause(queue, paused, engine.now())
        .await?;
    Ok(Json(
        json!({ "queue": queue.queue.as_str(), "paused": paused }),
    ))
}

pub(super) async fn pause(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
) -> Result<Json<Value>, ApiError> {
    set_paused(&engine, &queue, true).await
}

pub(super) async fn resume(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
) -> Result<Json<Value>, ApiError> {
    set_paused(&engine, &queue, false).await
}
