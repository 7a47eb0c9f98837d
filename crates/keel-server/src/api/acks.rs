//! The calls that end or extend a job's attempt: complete, fail, heartbeat,
//! batch acks (each item answered on its own), and cancel. Each checks the
//! lease token against the job it names before the engine sees it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_api::ErrorDetail;
use keel_api::jobs::{
    AckAnswer, AckItem, AcksAnswer, AcksRequest, CompleteRequest, FailRequest, HeartbeatAnswer,
    HeartbeatRequest,
};
use keel_core::limits::MAX_LEASE_MS;
use keel_core::policy::check_lease_ms;
use keel_core::{Error, ErrorCode, JobId, LeaseToken, Namespace, Retry};
use keel_store::{Ack, AckOutcome, Acked};
use serde_json::Value;
use serde_json::value::RawValue;

use super::ApiError;
use super::error::status;
use super::extract::{JobPath, JsonBody, NamespacePath};
use keel_engine::Engine;

type Api<T> = Result<T, ApiError>;

fn token_for(id: JobId, token: &str) -> Api<LeaseToken> {
    let token: LeaseToken = token
        .parse()
        .map_err(|()| ApiError::invalid("lease_token is malformed"))?;
    if token.job != id {
        return Err(ApiError::invalid("lease_token belongs to another job"));
    }
    Ok(token)
}

pub(super) fn check_result(engine: &Engine, result: Option<&RawValue>) -> Result<(), Error> {
    match result {
        Some(r) if r.get().len() > engine.limits().max_payload_bytes => Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "result is over the limit of {} bytes",
                engine.limits().max_payload_bytes
            ),
        )),
        _ => Ok(()),
    }
}

fn truncate(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

fn complete_outcome(engine: &Engine, body: CompleteRequest) -> Result<AckOutcome, Error> {
    check_result(engine, body.result.as_deref())?;
    Ok(AckOutcome::Complete {
        result: body.result,
    })
}

fn fail_outcome(engine: &Engine, body: FailRequest) -> Result<AckOutcome, Error> {
    if body.retry_after_ms.is_some_and(|ms| ms > MAX_LEASE_MS * 30) {
        return Err(Error::invalid("retry_after_ms must be at most 30 days"));
    }
    Ok(AckOutcome::Fail {
        message: truncate(
            body.error.unwrap_or_default(),
            engine.limits().max_error_len,
        ),
        retry: Retry {
            retry: body.retry,
            retry_after_ms: body.retry_after_ms,
        },
    })
}

async fn ack_one(
    engine: &Engine,
    namespace: &Namespace,
    token: LeaseToken,
    outcome: AckOutcome,
) -> Api<Json<AckAnswer>> {
    let mut results = engine
        .jobs()
        .ack(namespace, vec![Ack { token, outcome }])
        .await?;
    let result = results
        .pop()
        .ok_or_else(|| ApiError(Error::internal("no answer for the ack")))?;
    Ok(Json(wire_acked(&result?)))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/jobs/{id}/complete",
    tag = "jobs",
    summary = "Complete a leased job",
    request_body = keel_api::jobs::CompleteRequest,
    responses((status = 200, description = "OK", body = keel_api::jobs::AckAnswer))
)]
pub(super) async fn complete(
    State(engine): State<Arc<Engine>>,
    JobPath(ns, id): JobPath,
    JsonBody(body): JsonBody<CompleteRequest>,
) -> Api<Json<AckAnswer>> {
    let token = token_for(id, &body.lease_token)?;
    let outcome = complete_outcome(&engine, body)?;
    ack_one(&engine, &ns, token, outcome).await
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/jobs/{id}/fail",
    tag = "jobs",
    summary = "Fail a leased job (retried or dead)",
    request_body = keel_api::jobs::FailRequest,
    responses((status = 200, description = "OK", body = keel_api::jobs::AckAnswer))
)]
pub(super) async fn fail(
    State(engine): State<Arc<Engine>>,
    JobPath(ns, id): JobPath,
    JsonBody(body): JsonBody<FailRequest>,
) -> Api<Json<AckAnswer>> {
    let token = token_for(id, &body.lease_token)?;
    let outcome = fail_outcome(&engine, body)?;
    ack_one(&engine, &ns, token, outcome).await
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/jobs/{id}/heartbeat",
    tag = "jobs",
    summary = "Extend a lease",
    request_body = keel_api::jobs::HeartbeatRequest,
    responses((status = 200, description = "OK", body = keel_api::jobs::HeartbeatAnswer))
)]
pub(super) async fn heartbeat(
    State(engine): State<Arc<Engine>>,
    JobPath(ns, id): JobPath,
    JsonBody(body): JsonBody<HeartbeatRequest>,
) -> Api<Json<HeartbeatAnswer>> {
    let token = token_for(id, &body.lease_token)?;
    if let Some(ms) = body.lease_ms {
        check_lease_ms(ms)?;
    }
    let until = engine.jobs().heartbeat(&ns, token, body.lease_ms).await?;
    Ok(Json(HeartbeatAnswer {
        lease_expires_at: until,
    }))
}

/// One batch item: parsed and checked on its own, so one bad item fails alone.
fn ack_item<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    item: Value,
    to_outcome: fn(&Engine, T) -> Result<AckOutcome, Error>,
    token_of: fn(&T) -> &str,
) -> Result<(JobId, Ack), (Option<String>, Error)> {
    let id_text = item.get("id").and_then(Value::as_str).map(str::to_owned);
    let bad = |e: Error| (id_text.clone(), e);
    let mut fields = item;
    if let Some(map) = fields.as_object_mut() {
        map.remove("id");
    }
    let body: T = serde_json::from_value(fields).map_err(|e| bad(Error::invalid(e.to_string())))?;
    let id_text = id_text
        .clone()
        .ok_or_else(|| bad(Error::invalid("missing field `id`")))?;
    let id: JobId = id_text
        .parse()
        .map_err(|_| bad(Error::job_not_found(&id_text)))?;
    let token = token_for(id, token_of(&body)).map_err(|e| bad(e.0))?;
    let outcome = to_outcome(engine, body).map_err(bad)?;
    Ok((id, Ack { token, outcome }))
}

fn item_status(id: Option<String>, result: Result<Acked, Error>) -> AckItem {
    match result {
        Ok(acked) => AckItem::Done {
            id: acked.id,
            status: 200,
            state: acked.state,
            run_at: acked.run_at,
        },
        Err(e) => AckItem::Refused {
            id,
            status: status(e.code).as_u16(),
            error: ErrorDetail::from(&e),
        },
    }
}

type ParsedAck = Result<(JobId, Ack), (Option<String>, Error)>;
/// An item's place in the answer: the job it acks, or why it was refused.
type Slot = Result<JobId, (Option<String>, Error)>;

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/acks",
    tag = "jobs",
    summary = "Complete and fail leased jobs in one call",
    request_body(content = Option<keel_api::jobs::AcksRequest>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = keel_api::jobs::AcksAnswer))
)]
/// Answers `{"complete":[...],"fail":[...]}` with one status per item, in the
/// order sent: each item succeeds or fails on its own.
pub(super) async fn acks(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    JsonBody(body): JsonBody<AcksRequest>,
) -> Api<Json<AcksAnswer>> {
    Ok(Json(apply_acks(&engine, &ns, body).await?))
}

/// A batch of acks, each item answered on its own: `POST .../acks` and a
/// worker stream's `acks` frame.
pub(super) async fn apply_acks(
    engine: &Engine,
    ns: &Namespace,
    body: AcksRequest,
) -> Api<AcksAnswer> {
    let total = body.complete.len() + body.fail.len();
    if total > engine.limits().max_batch {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!(
                "a batch holds at most {} acks; this one has {total}",
                engine.limits().max_batch
            ),
        ));
    }
    // Valid items go to the store in order; each answer slot remembers
    // whether its item went.
    let mut valid: Vec<Ack> = Vec::with_capacity(total);
    let mut keep = |parsed: ParsedAck| {
        parsed.map(|(id, ack)| {
            valid.push(ack);
            id
        })
    };
    let complete: Vec<Slot> = body
        .complete
        .into_iter()
        .map(|item| {
            keep(ack_item::<CompleteRequest>(
                engine,
                item,
                complete_outcome,
                |b| &b.lease_token,
            ))
        })
        .collect();
    let fail: Vec<Slot> = body
        .fail
        .into_iter()
        .map(|item| {
            keep(ack_item::<FailRequest>(engine, item, fail_outcome, |b| {
                &b.lease_token
            }))
        })
        .collect();
    let mut applied = engine.jobs().ack(ns, valid).await?.into_iter();
    let mut answer = |slots: Vec<Slot>| -> Vec<AckItem> {
        slots
            .into_iter()
            .map(|slot| match slot {
                Ok(id) => {
                    let result = applied
                        .next()
                        .unwrap_or_else(|| Err(Error::internal("no answer for the ack")));
                    item_status(Some(id.to_string()), result)
                }
                Err((id, e)) => item_status(id, Err(e)),
            })
            .collect()
    };
    let complete = answer(complete);
    let fail = answer(fail);
    Ok(AcksAnswer { complete, fail })
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/jobs/{id}/cancel",
    tag = "jobs",
    summary = "Cancel a job that has not finished",
    responses((status = 200, description = "OK", body = keel_api::jobs::AckAnswer))
)]
pub(super) async fn cancel(
    State(engine): State<Arc<Engine>>,
    JobPath(ns, id): JobPath,
) -> Api<Json<AckAnswer>> {
    Ok(Json(wire_acked(&engine.jobs().cancel(&ns, id).await?)))
}

// The store's acknowledgement in the wire contract's shape.

fn wire_acked(a: &Acked) -> AckAnswer {
    AckAnswer {
        id: a.id,
        state: a.state,
        run_at: a.run_at,
    }
}
