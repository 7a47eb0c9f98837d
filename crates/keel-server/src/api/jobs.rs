//! Job endpoints: enqueue, lease (long-poll), get, list and redrive; what
//! ends or extends an attempt is in `acks.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_api::jobs::{
    self as api, EnqueuedBatch, Job, JobPage, Leased, LeasedJob, RedriveAnswer, RedriveRequest,
};
use keel_core::job::JobRequest;
use keel_core::policy::check_lease_ms;
use keel_core::{Error, ErrorCode, JobId, JobState};
use keel_store::{JobFilter, LeaseRequest, RedriveSelection};
use serde::Deserialize;

use super::ApiError;
use super::acks::check_result;
use super::extract::{
    Body, JobPath, JsonBody, NamespacePath, Object, QueryParams, QueuePath, batch_items, count,
    json_error, parse, wait_ms,
};
use super::trace::RequestTrace;
use keel_engine::Engine;

type Api<T> = Result<T, ApiError>;

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/queues/{queue}/jobs",
    tag = "jobs",
    summary = "Enqueue one job or a batch",
    request_body = keel_api::jobs::EnqueueRequest,
    responses(
        (status = 201, description = "created", body = keel_api::jobs::EnqueueAnswer),
        (status = 200, description = "one job answered by an earlier one: a duplicate idempotency key, or a debounced enqueue", body = keel_api::jobs::EnqueueAnswer)
    )
)]
pub(super) async fn enqueue(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
    trace: RequestTrace,
    Body(bytes): Body,
) -> Api<Response> {
    let trace = |mut req: JobRequest| {
        req.traceparent = req.traceparent.or_else(|| trace.0.clone());
        req
    };
    Ok(match batch_items(&bytes, "jobs")? {
        Some(jobs) => {
            let requests: Vec<Object<JobRequest>> =
                serde_json::from_str(jobs.get()).map_err(json_error)?;
            let requests = requests.into_iter().map(|Object(r)| trace(r)).collect();
            let enqueued = engine.jobs().enqueue_batch(&queue, requests).await?;
            let jobs = enqueued.into_iter().map(wire_enqueued).collect();
            (StatusCode::CREATED, Json(EnqueuedBatch { jobs })).into_response()
        }
        None => {
            let enqueued = engine.jobs().enqueue(&queue, trace(parse(&bytes)?)).await?;
            let status = if enqueued.deduplicated || enqueued.debounced {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, Json(wire_enqueued(enqueued))).into_response()
        }
    })
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/queues/{queue}/lease",
    tag = "jobs",
    summary = "Lease jobs, waiting up to wait_ms for one",
    request_body(content = Option<keel_api::jobs::LeaseRequest>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = keel_api::jobs::Leased))
)]
pub(super) async fn lease(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
    JsonBody(body): JsonBody<api::LeaseRequest>,
) -> Api<Json<Leased>> {
    let limits = engine.limits();
    let max_jobs = count("max_jobs", body.max_jobs, 1, limits.max_lease_jobs)?;
    let wait_ms = wait_ms(limits, body.wait_ms)?;
    if let Some(ms) = body.lease_ms {
        check_lease_ms(ms)?;
    }
    let worker_id = worker_id(limits, body.worker_id)?;
    let req = LeaseRequest {
        queue,
        worker_id,
        max_jobs,
        lease_ms: body.lease_ms,
    };
    let jobs = engine
        .jobs()
        .lease(&req, Duration::from_millis(wait_ms))
        .await?;
    Ok(Json(Leased {
        jobs: jobs.into_iter().map(wire_leased).collect(),
    }))
}

/// A worker's name (empty when absent), within the key length.
pub(super) fn worker_id(limits: &keel_core::Limits, id: Option<String>) -> Api<String> {
    let id = id.unwrap_or_default();
    if id.len() > limits.max_key_len {
        return Err(ApiError::invalid(format!(
            "worker_id must be at most {} bytes",
            limits.max_key_len
        )));
    }
    Ok(id)
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/jobs/{id}",
    tag = "jobs",
    summary = "One job; a waiting job says what it waits for",
    responses((status = 200, description = "OK", body = keel_api::jobs::Job))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    JobPath(ns, id): JobPath,
) -> Api<Response> {
    let job = engine.jobs().get(&ns, id).await?;
    let waiting = match job.state {
        JobState::Scheduled | JobState::Ready => Some(engine.jobs().waiting(&ns, &job).await?),
        _ => None,
    };
    Ok(Json(Job {
        waiting,
        ..wire_job(job)
    })
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    queue: Option<String>,
    state: Option<String>,
    tag: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

const DEFAULT_LIST_LIMIT: u32 = 50;

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/jobs",
    tag = "jobs",
    summary = "List jobs, newest first",
    params(ListParams),
    responses((status = 200, description = "OK", body = keel_api::jobs::JobPage))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(params): QueryParams<ListParams>,
) -> Api<Json<JobPage>> {
    let limit = count(
        "limit",
        params.limit,
        DEFAULT_LIST_LIMIT,
        engine.limits().max_batch as u32,
    )?;
    let state = params
        .state
        .map(|s| {
            JobState::parse(&s).ok_or_else(|| ApiError::invalid(format!("unknown state {s:?}")))
        })
        .transpose()?;
    let tag = params
        .tag
        .as_deref()
        .map(keel_core::job::parse_tag)
        .transpose()?;
    let queue = params
        .queue
        .map(|q| keel_core::QueueName::new(&q))
        .transpose()?;
    let filter = JobFilter {
        queue,
        state,
        tag,
        limit,
        cursor: params.cursor,
    };
    let page = engine.jobs().list(&ns, &filter).await?;
    Ok(Json(JobPage {
        jobs: page.jobs.into_iter().map(wire_job).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/queues/{queue}/redrive",
    tag = "jobs",
    summary = "Send dead jobs back to ready",
    request_body = keel_api::jobs::RedriveRequest,
    responses((status = 200, description = "OK", body = keel_api::jobs::RedriveAnswer))
)]
pub(super) async fn redrive(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
    JsonBody(body): JsonBody<RedriveRequest>,
) -> Api<Json<RedriveAnswer>> {
    let selection = match (body.ids, body.all) {
        (Some(_), true) | (None, false) => {
            return Err(ApiError::invalid("give ids or all: true, one of them"));
        }
        (None, true) => RedriveSelection::All,
        (Some(ids), false) => {
            if ids.len() > engine.limits().max_batch {
                return Err(ApiError::new(
                    ErrorCode::BatchTooLarge,
                    format!("at most {} ids", engine.limits().max_batch),
                ));
            }
            // Ids that do not parse name no job, and no job is skipped silently
            // for a typo: refuse the call.
            let ids = ids
                .iter()
                .map(|id| {
                    id.parse::<JobId>()
                        .map_err(|_| ApiError(Error::job_not_found(id)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            RedriveSelection::Ids(ids)
        }
    };
    check_result(&engine, body.payload.as_deref())
        .map_err(|e| ApiError::new(e.code, "payload is over the size limit"))?;
    let moved = engine
        .jobs()
        .redrive(&queue, selection, body.payload)
        .await?;
    Ok(Json(RedriveAnswer {
        redriven: moved.len(),
        ids: moved,
    }))
}

// The store's answers in the wire contract's shape (keel-api): the store's
// types carry no serialization of their own.

fn wire_enqueued(e: keel_store::Enqueued) -> api::Enqueued {
    api::Enqueued {
        id: e.id,
        state: e.state,
        deduplicated: e.deduplicated,
        debounced: e.debounced,
    }
}

pub(super) fn wire_leased(j: keel_store::LeasedJob) -> LeasedJob {
    LeasedJob {
        id: j.id,
        queue: j.queue,
        payload: j.payload,
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        lease_token: j.lease_token.to_string(),
        lease_expires_at: j.lease_expires_at,
        priority: j.priority,
        tags: j.tags,
        ordering_key: j.ordering_key,
        created_at: j.created_at,
        run_at: j.run_at,
        traceparent: j.traceparent,
    }
}

fn wire_job(j: keel_core::Job) -> Job {
    Job {
        id: j.id,
        queue: j.queue,
        state: j.state,
        payload: j.payload,
        priority: j.priority,
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        run_at: j.run_at,
        created_at: j.created_at,
        updated_at: j.updated_at,
        result: j.result,
        errors: j.errors,
        tags: j.tags,
        ordering_key: j.ordering_key,
        idempotency_key: j.idempotency_key,
        lease_expires_at: j.lease_expires_at,
        lease_ms: j.lease_ms,
        backoff: j.backoff,
        waiting: None,
        traceparent: j.traceparent,
    }
}
