//! A worker's stream: one WebSocket per worker, on which the server pushes
//! jobs while the worker's credit lasts and answers batches of acks apart
//! from the jobs. Leasing and acking are the engine calls of the plain routes
//! (`POST .../lease`, `POST .../acks`), so every guarantee is theirs; what
//! the stream saves is an HTTP request, its parse and its token check per
//! lease and per ack batch, and the worker's turn to ask for more (the next
//! lease starts as soon as credit is back).

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_api::ErrorDetail;
use keel_api::jobs::{AcksRequest, ServerFrame, StreamAcked, StreamParams, WorkerFrame};
use keel_core::policy::check_lease_ms;
use keel_core::{Error, ErrorCode};
use keel_engine::Engine;
use keel_engine::tokens::Caller;
use keel_store::{LeaseRequest, LeasedJob};
use tokio::task::JoinSet;

use super::ApiError;
use super::acks::apply_acks;
use super::auth::{bearer, recheck_work};
use super::extract::{QueryParams, QueuePath};
use super::jobs::{wire_leased, worker_id};

/// The most jobs a worker may have asked for and not yet been sent.
const MAX_CREDIT: u64 = 10_000;
/// Ack batches of one stream applied at once; past it, the stream's frames
/// wait to be read.
const ACKS_IN_FLIGHT: usize = 8;
/// Leases of one stream running at once, each for the credit the others did
/// not ask for: the next batch is on its way while the last one is sent, and
/// the writer commits them together (as the SDK's two lease calls).
const LEASES_IN_FLIGHT: usize = 2;
/// How long one lease waits for a job before it is asked again (and a ping
/// keeps an idle stream's proxies from closing it).
const LEASE_WAIT: Duration = Duration::from_secs(20);

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/queues/{queue}/stream",
    tag = "jobs",
    summary = "A worker's stream (WebSocket): jobs pushed on credit, acks answered apart",
    params(StreamParams),
    responses((status = 101, description = "Switching Protocols: JSON text frames follow (docs/api.md, \"Worker streams\")"))
)]
pub(super) async fn stream(
    State(engine): State<Arc<Engine>>,
    QueuePath(queue): QueuePath,
    QueryParams(params): QueryParams<StreamParams>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::invalid(format!(
            "this route is a WebSocket: {}",
            e.body_text().to_lowercase()
        ))
    })?;
    if let Some(ms) = params.lease_ms {
        check_lease_ms(ms)?;
    }
    let worker = Worker {
        lease: LeaseRequest {
            queue,
            worker_id: worker_id(engine.limits(), params.worker_id)?,
            max_jobs: 1,
            lease_ms: params.lease_ms,
        },
        // Present exactly when the router checked a token.
        token: caller.and_then(|_| bearer(&headers).map(Arc::from)),
    };
    let max_frame = engine.limits().max_body_bytes;
    Ok(upgrade
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| serve(socket, engine, worker)))
}

/// What a stream leases with.
struct Worker {
    lease: LeaseRequest,
    token: Option<Arc<str>>,
}

async fn serve(mut socket: WebSocket, engine: Arc<Engine>, worker: Worker) {
    let worker = Arc::new(worker);
    let mut shutdown = std::pin::pin!(engine.shutdown().clone().wait());
    // Credit not yet spent, and the part of it that leases in flight asked for.
    let (mut credit, mut asked): (u64, u64) = (0, 0);
    let mut leases: JoinSet<(u64, Result<Vec<LeasedJob>, ApiError>)> = JoinSet::new();
    let mut acking: JoinSet<Result<StreamAcked, ApiError>> = JoinSet::new();
    // Set once the stream is ending: no more leases or frames read, and the
    // acks in flight are still answered.
    let mut ending: Option<ErrorDetail> = None;
    let mut closed_by_worker = false;
    loop {
        if leases.len() < LEASES_IN_FLIGHT && credit > asked && ending.is_none() {
            let ask = (credit - asked).min(u64::from(engine.limits().max_lease_jobs));
            asked += ask;
            leases.spawn(lease_some(engine.clone(), worker.clone(), ask));
        }
        if ending.is_some() && acking.is_empty() {
            break;
        }
        let out = tokio::select! {
            read = socket.recv(), if ending.is_none() && acking.len() < ACKS_IN_FLIGHT => {
                match read {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<WorkerFrame>(&text) {
                        Ok(WorkerFrame::Credit(n)) => {
                            credit += u64::from(n);
                            if credit > MAX_CREDIT {
                                ending = Some(refusal(Error::invalid(format!(
                                    "credit may reach at most {MAX_CREDIT} jobs"
                                ))));
                            }
                            None
                        }
                        Ok(WorkerFrame::Acks(acks)) => {
                            let engine = engine.clone();
                            let namespace = worker.lease.queue.namespace.clone();
                            acking.spawn(async move {
                                let body = AcksRequest { complete: acks.complete, fail: acks.fail };
                                let answer = apply_acks(&engine, &namespace, body).await?;
                                Ok(StreamAcked { id: acks.id, complete: answer.complete, fail: answer.fail })
                            });
                            None
                        }
                        Err(e) => {
                            ending = Some(refusal(Error::invalid(format!("bad frame: {e}"))));
                            None
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        ending = Some(refusal(Error::invalid("frames are JSON text")));
                        None
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        closed_by_worker = true;
                        ending = Some(refusal(Error::new(ErrorCode::ShuttingDown, "closed")));
                        None
                    }
                }
            }
            Some(leased) = leases.join_next(), if !leases.is_empty() => {
                let leased = match leased {
                    Ok((ask, leased)) => {
                        asked -= ask;
                        leased
                    }
                    Err(_) => Err(ApiError(Error::internal("a lease was dropped"))),
                };
                match leased {
                    Ok(jobs) if jobs.is_empty() => Some(Message::Ping(Default::default())),
                    Ok(jobs) => {
                        credit = credit.saturating_sub(jobs.len() as u64);
                        Some(frame(&ServerFrame::Jobs(jobs.into_iter().map(wire_leased).collect())))
                    }
                    Err(e) => {
                        ending = Some(refusal(e.0));
                        None
                    }
                }
            }
            Some(answered) = acking.join_next(), if !acking.is_empty() => match answered {
                Ok(Ok(acked)) => Some(frame(&ServerFrame::<()>::Acked(acked))),
                Ok(Err(e)) => {
                    ending = Some(refusal(e.0));
                    None
                }
                Err(_) => {
                    ending = Some(refusal(Error::internal("an ack batch was dropped")));
                    None
                }
            },
            () = &mut shutdown, if ending.is_none() => {
                ending = Some(refusal(Error::new(ErrorCode::ShuttingDown, "the server is shutting down")));
                None
            }
        };
        if ending.is_some() {
            // Leases that had not answered are dropped; what they leased
            // comes back after its lease, as with a dropped lease call.
            leases.abort_all();
            asked = 0;
        }
        if let Some(out) = out
            && socket.send(out).await.is_err()
        {
            return;
        }
    }
    if let Some(why) = ending
        && !closed_by_worker
    {
        let _ = socket.send(frame(&ServerFrame::<()>::Error(why))).await;
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// One lease of up to `ask` jobs, after the stream's token is checked
/// again; `ask` comes back with the answer.
async fn lease_some(
    engine: Arc<Engine>,
    worker: Arc<Worker>,
    ask: u64,
) -> (u64, Result<Vec<LeasedJob>, ApiError>) {
    let leased = async {
        if let Some(token) = &worker.token {
            recheck_work(&engine, token, &worker.lease.queue).await?;
        }
        let req = LeaseRequest {
            max_jobs: u32::try_from(ask).unwrap_or(1),
            ..worker.lease.clone()
        };
        Ok(engine.jobs().lease(&req, LEASE_WAIT).await?)
    };
    (ask, leased.await)
}

fn refusal(e: Error) -> ErrorDetail {
    ErrorDetail::from(&e)
}

fn frame<P: serde::Serialize>(frame: &ServerFrame<P>) -> Message {
    let text = serde_json::to_string(frame)
        .unwrap_or_else(|_| unreachable!("a frame serializes: its payloads are JSON already"));
    Message::Text(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_one_json_object_keyed_by_their_kind() {
        let credit: WorkerFrame = serde_json::from_str(r#"{"credit":5}"#).expect("parses");
        assert!(matches!(credit, WorkerFrame::Credit(5)));
        let acks: WorkerFrame =
            serde_json::from_str(r#"{"acks":{"id":3,"complete":[{"id":"x"}]}}"#).expect("parses");
        assert!(
            matches!(acks, WorkerFrame::Acks(a) if a.id == 3 && a.complete.len() == 1 && a.fail.is_empty())
        );
        assert!(serde_json::from_str::<WorkerFrame>(r#"{"credit":1,"acks":{"id":1}}"#).is_err());
        let Message::Text(text) = frame(&ServerFrame::<()>::Error(refusal(Error::invalid("no"))))
        else {
            panic!("a text frame");
        };
        assert_eq!(
            text.as_str(),
            r#"{"error":{"code":"invalid_request","message":"no"}}"#
        );
    }
}
