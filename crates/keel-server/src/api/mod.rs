//! HTTP API v1: routes, the error body, and extractors that turn every bad
//! input into a coded 4xx (never a 500 or a panic).

mod audit;
mod auth;
mod cloudevents;
mod endpoints;
mod error;
mod extract;
mod health;
mod jobs;
mod namespaces;
mod queues;
mod request_id;
mod schedules;
mod sources;
mod subscriptions;
mod tokens;
mod topics;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};

pub use auth::AuthConfig;
pub use error::ApiError;

use keel_engine::Engine;

/// The whole API; `auth` says whether callers need tokens.
pub fn router(engine: Arc<Engine>, auth: AuthConfig) -> Router {
    let body_limit = engine.limits.max_body_bytes;
    let v1 = Router::new()
        .route("/namespaces/{ns}/queues/{queue}/jobs", post(jobs::enqueue))
        .route("/namespaces/{ns}/queues/{queue}/lease", post(jobs::lease))
        .route(
            "/namespaces/{ns}/queues/{queue}/redrive",
            post(jobs::redrive),
        )
        .route(
            "/namespaces/{ns}/queues/{queue}",
            get(queues::stats).put(queues::set_policy),
        )
        .route("/namespaces/{ns}/queues/{queue}/pause", post(queues::pause))
        .route(
            "/namespaces/{ns}/queues/{queue}/resume",
            post(queues::resume),
        )
        .route("/namespaces/{ns}/jobs", get(jobs::list))
        .route("/namespaces/{ns}/jobs/{id}", get(jobs::get))
        .route("/namespaces/{ns}/jobs/{id}/complete", post(jobs::complete))
        .route("/namespaces/{ns}/jobs/{id}/fail", post(jobs::fail))
        .route(
            "/namespaces/{ns}/jobs/{id}/heartbeat",
            post(jobs::heartbeat),
        )
        .route("/namespaces/{ns}/jobs/{id}/cancel", post(jobs::cancel))
        .route("/namespaces/{ns}/acks", post(jobs::acks))
        .route("/namespaces/{ns}/topics", get(topics::list))
        .route(
            "/namespaces/{ns}/topics/{topic}",
            get(topics::get).put(topics::put).delete(topics::delete),
        )
        .route(
            "/namespaces/{ns}/topics/{topic}/events",
            get(topics::events).post(topics::publish),
        )
        .route(
            "/namespaces/{ns}/topics/{topic}/events/{id}",
            get(topics::event),
        )
        .route(
            "/namespaces/{ns}/topics/{topic}/match",
            post(subscriptions::matches),
        )
        .route("/namespaces/{ns}/subscriptions", get(subscriptions::list))
        .route(
            "/namespaces/{ns}/subscriptions/{name}",
            get(subscriptions::get)
                .put(subscriptions::put)
                .delete(subscriptions::delete),
        )
        .route(
            "/namespaces/{ns}/subscriptions/{name}/pause",
            post(subscriptions::pause),
        )
        .route(
            "/namespaces/{ns}/subscriptions/{name}/resume",
            post(subscriptions::resume),
        )
        .route(
            "/namespaces/{ns}/subscriptions/{name}/seek",
            post(subscriptions::seek),
        )
        .route(
            "/namespaces/{ns}/subscriptions/{name}/fetch",
            post(subscriptions::fetch),
        )
        .route(
            "/namespaces/{ns}/subscriptions/{name}/commit",
            post(subscriptions::commit),
        )
        .route(
            "/namespaces/{ns}/workflows/{name}",
            get(workflows::get).put(workflows::put),
        )
        .route(
            "/namespaces/{ns}/workflows/{name}/versions",
            get(workflows::versions),
        )
        .route(
            "/namespaces/{ns}/workflows/{name}/runs",
            post(workflows::start),
        )
        .route("/namespaces/{ns}/runs", get(workflows::list))
        .route("/namespaces/{ns}/runs/{id}", get(workflows::run))
        .route(
            "/namespaces/{ns}/runs/{id}/signals/{signal}",
            post(workflows::signal),
        )
        .route("/namespaces/{ns}/runs/{id}/cancel", post(workflows::cancel))
        .route("/namespaces/{ns}/runs/{id}/retry", post(workflows::retry))
        .route("/namespaces/{ns}/sources", get(sources::list))
        .route(
            "/namespaces/{ns}/sources/{name}",
            get(sources::get).put(sources::put).delete(sources::delete),
        )
        .route("/hooks/{ns}/{name}", post(sources::ingest))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/audit", get(audit::list))
        .route("/namespaces", get(namespaces::list))
        .route(
            "/namespaces/{ns}",
            get(namespaces::get).put(namespaces::put),
        )
        .route("/namespaces/{ns}/endpoints", get(endpoints::list))
        .route(
            "/namespaces/{ns}/endpoints/{name}",
            get(endpoints::get)
                .put(endpoints::put)
                .delete(endpoints::delete),
        )
        .route(
            "/namespaces/{ns}/endpoints/{name}/rotate-secret",
            post(endpoints::rotate),
        )
        .route(
            "/namespaces/{ns}/endpoints/{name}/enable",
            post(endpoints::enable),
        )
        .route(
            "/namespaces/{ns}/endpoints/{name}/attempts",
            get(endpoints::attempts),
        )
        .route(
            "/namespaces/{ns}/endpoints/{name}/recover",
            post(endpoints::recover),
        )
        .route("/namespaces/{ns}/schedules", get(schedules::list))
        .route(
            "/namespaces/{ns}/schedules/{name}",
            get(schedules::get)
                .put(schedules::put)
                .delete(schedules::delete),
        )
        .route(
            "/namespaces/{ns}/schedules/{name}/pause",
            post(schedules::pause),
        )
        .route(
            "/namespaces/{ns}/schedules/{name}/resume",
            post(schedules::resume),
        )
        .route(
            "/namespaces/{ns}/schedules/{name}/trigger",
            post(schedules::trigger),
        )
        .route(
            "/namespaces/{ns}/schedules/{name}/backfill",
            post(schedules::backfill),
        );
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(
            (engine.clone(), auth),
            auth::check,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(request_id::request_id))
        .with_state(engine)
}
