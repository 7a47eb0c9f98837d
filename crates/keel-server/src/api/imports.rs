//! Bulk import: a request body of any length (CSV or NDJSON), read as it
//! arrives into the engine's import (`keel_engine::imports`), not held in
//! memory; the answer is the import's summary. The body limit does not
//! apply: the stream is bounded by the import's batches instead, and ends
//! when no bytes arrive for the body timeout.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;
use keel_api::imports::{ImportAnswer, ImportQuery, ImportRejection};
use keel_engine::Engine;
use keel_engine::imports::{Format, ImportSpec, ImportSummary, ImportTarget};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::ApiError;
use super::extract::{BodyBounds, QueryParams, QueuePath, TopicPath};

type Api<T> = Result<T, ApiError>;

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/queues/{queue}/imports",
    tag = "jobs",
    summary = "Import records (CSV or NDJSON, streamed) as jobs",
    params(ImportQuery),
    request_body(content = String, description = "the records: CSV with a header line, or NDJSON", content_type = "text/csv"),
    responses((status = 200, description = "the import's summary", body = ImportAnswer))
)]
pub(super) async fn queue(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
    QueryParams(query): QueryParams<ImportQuery>,
    bounds: Option<axum::Extension<BodyBounds>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Api<Json<ImportAnswer>> {
    import(
        engine,
        ImportTarget::Queue(queue),
        query,
        bounds,
        &headers,
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/topics/{topic}/imports",
    tag = "events",
    summary = "Import records (CSV or NDJSON, streamed) as events",
    params(ImportQuery),
    request_body(content = String, description = "the records: CSV with a header line, or NDJSON", content_type = "text/csv"),
    responses((status = 200, description = "the import's summary", body = ImportAnswer))
)]
pub(super) async fn topic(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, _): TopicPath,
    QueryParams(query): QueryParams<ImportQuery>,
    bounds: Option<axum::Extension<BodyBounds>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Api<Json<ImportAnswer>> {
    let target = ImportTarget::Topic(ns, topic);
    import(engine, target, query, bounds, &headers, body).await
}

async fn import(
    engine: Arc<Engine>,
    target: ImportTarget,
    query: ImportQuery,
    bounds: Option<axum::Extension<BodyBounds>>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Api<Json<ImportAnswer>> {
    let spec = ImportSpec {
        format: format(query.format.as_deref(), headers)?,
        key: query.key,
        template: query.template,
        first_line: query.line,
        event_type: query.kind,
    };
    let idle = bounds.map_or(Duration::from_secs(30), |b| b.idle_timeout());
    let chunks =
        futures_util::stream::unfold(body.into_data_stream(), move |mut body| async move {
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(io::Error::other), body)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no bytes arrived for {} ms (--body-timeout-ms)",
                            idle.as_millis()
                        ),
                    )),
                    body,
                )),
            }
        });
    let input = SyncIoBridge::new(StreamReader::new(Box::pin(chunks)));
    let summary = engine.imports().import(target, spec, input).await?;
    Ok(Json(answer(summary)))
}

/// The format the query names, else the body's content type.
fn format(named: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match named.or(content_type) {
        Some("csv" | "text/csv") => Ok(Format::Csv),
        Some("ndjson" | "jsonl" | "application/x-ndjson" | "application/jsonl") => {
            Ok(Format::Ndjson)
        }
        Some(other) => Err(ApiError::invalid(format!(
            "format {other:?}: give format=csv or format=ndjson (or Content-Type text/csv or application/x-ndjson)"
        ))),
        None => Err(ApiError::invalid(
            "give format=csv or format=ndjson (or Content-Type text/csv or application/x-ndjson)",
        )),
    }
}

fn answer(s: ImportSummary) -> ImportAnswer {
    ImportAnswer {
        records: s.records,
        accepted: s.accepted,
        duplicates: s.duplicates,
        rejected: s.rejected,
        rejects: s
            .rejects
            .into_iter()
            .map(|r| ImportRejection {
                line: r.line,
                error: r.error,
            })
            .collect(),
        last_line: s.last_line,
    }
}
