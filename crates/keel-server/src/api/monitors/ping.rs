//! Heartbeat pings: `GET|POST /v1/ping/{token}` and `/{token}/start`,
//! `/{token}/fail`, `/{token}/{exit_status}`. The token is the authority
//! (as a signed link is); the answer comes once the ping is durable.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use keel_core::Error;
use keel_engine::Engine;
use keel_engine::monitors::Ping;

use super::super::ApiError;

type Api<T> = Result<T, ApiError>;

async fn record(engine: &Engine, token: &str, ping: Ping, body: &[u8]) -> Api<&'static str> {
    engine.monitors().ping(token, ping, body).await?;
    Ok("OK\n")
}

#[utoipa::path(post, path = "/ping/{token}", tag = "monitors",
    summary = "A heartbeat: the job ran (a body up to 10 kB is kept)",
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, description = "recorded, durably", body = String, content_type = "text/plain")))]
pub(in super::super) async fn ping(
    State(engine): State<Arc<Engine>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Api<&'static str> {
    record(&engine, &token, Ping::Success, &body).await
}

#[utoipa::path(get, path = "/ping/{token}", tag = "monitors",
    summary = "A heartbeat, by GET",
    responses((status = 200, description = "recorded, durably", body = String, content_type = "text/plain")))]
pub(in super::super) async fn ping_get(
    State(engine): State<Arc<Engine>>,
    Path(token): Path<String>,
) -> Api<&'static str> {
    record(&engine, &token, Ping::Success, &[]).await
}

/// `start`, `fail`, or an exit status 0 to 255.
fn signal(text: &str) -> Result<Ping, Error> {
    match text {
        "start" => Ok(Ping::Start),
        "fail" => Ok(Ping::Fail),
        code => code
            .parse::<u8>()
            .map(Ping::Exit)
            .map_err(|_| Error::invalid("ping with /start, /fail or an exit status 0 to 255")),
    }
}

#[utoipa::path(post, path = "/ping/{token}/{signal}", tag = "monitors",
    summary = "A heartbeat's start, failure, or exit status (0 passes)",
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, description = "recorded, durably", body = String, content_type = "text/plain")))]
pub(in super::super) async fn signal_post(
    State(engine): State<Arc<Engine>>,
    Path((token, text)): Path<(String, String)>,
    body: Bytes,
) -> Api<&'static str> {
    record(&engine, &token, signal(&text)?, &body).await
}

#[utoipa::path(get, path = "/ping/{token}/{signal}", tag = "monitors",
    summary = "A heartbeat's start, failure, or exit status, by GET",
    responses((status = 200, description = "recorded, durably", body = String, content_type = "text/plain")))]
pub(in super::super) async fn signal_get(
    State(engine): State<Arc<Engine>>,
    Path((token, text)): Path<(String, String)>,
) -> Api<&'static str> {
    record(&engine, &token, signal(&text)?, &[]).await
}
