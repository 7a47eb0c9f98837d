//! Workers that take their jobs over a worker stream (a WebSocket per
//! worker, the Rust SDK's way) instead of lease calls: jobs pushed on
//! credit, completions and failures sent as ack batches on the stream and
//! answered per item. Half of every run's workers are these, so the checker
//! judges both protocols. A stream that breaks is opened again on the next
//! node; completions whose answer the break lost are recorded `Unknown`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keel_client::{AckItem, Client, LeasedJob};
use serde_json::json;

use crate::history::{History, Kind, Op, Outcome};
use crate::workload::{EVENT_JOBS, JOBS, NAMESPACE, Nodes, fails_on_purpose, uid_of};

/// Jobs a streamed worker holds at once, as a polling worker's `max_jobs`.
const CREDIT: u32 = 10;

pub(crate) async fn work_streamed(
    queue: &'static str,
    w: usize,
    nodes: Nodes,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let kind = if queue == JOBS {
        Kind::Job
    } else {
        debug_assert_eq!(queue, EVENT_JOBS);
        Kind::Event
    };
    while !stop.load(Ordering::Relaxed) {
        let opened = match Client::new(&nodes.base()) {
            Ok(client) => {
                client
                    .stream(NAMESPACE, queue, &format!("w{w}"), None)
                    .await
            }
            Err(e) => Err(e),
        };
        let Ok((stream, mut jobs)) = opened else {
            nodes.skip();
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if stream.grant(CREDIT).is_err() {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            let batch = match tokio::time::timeout(Duration::from_millis(500), jobs.next()).await {
                Err(_) => continue,
                Ok(Ok(batch)) => batch,
                Ok(Err(_)) => {
                    nodes.skip();
                    break;
                }
            };
            let taken = u32::try_from(batch.len()).unwrap_or(CREDIT);
            settle(&stream, kind, batch, &history).await;
            if stream.grant(taken).is_err() {
                break;
            }
        }
        stream.close();
    }
}

/// Records the batch's leases, then fails or completes each job in one
/// ack batch and records how each completion came out.
async fn settle(
    stream: &keel_client::JobStream,
    kind: Kind,
    batch: Vec<LeasedJob>,
    history: &History,
) {
    let at = Instant::now();
    let (mut complete, mut fail, mut completing) = (Vec::new(), Vec::new(), Vec::new());
    for job in batch {
        let uid = uid_of(&job.payload);
        let id = job.id.to_string();
        history.record(Op::Lease {
            kind,
            uid: uid.clone(),
            id: id.clone(),
            at,
        });
        if fails_on_purpose(&uid, u64::from(job.attempt)) {
            fail.push(json!({"id": id, "lease_token": job.lease_token, "error": "a first attempt failed on purpose"}));
        } else {
            complete.push(json!({"id": id, "lease_token": job.lease_token}));
            completing.push((uid, job.lease_token));
        }
    }
    let sent = Instant::now();
    let answer = stream.acks(complete, fail).await;
    for (i, (uid, token)) in completing.into_iter().enumerate() {
        let outcome = match &answer {
            Ok(a) => match a.complete.get(i) {
                Some(AckItem::Done { .. }) => Outcome::Acked,
                Some(AckItem::Refused { .. }) => Outcome::Failed,
                None => Outcome::Unknown,
            },
            Err(_) => Outcome::Unknown,
        };
        history.record(Op::Complete {
            uid,
            token,
            sent,
            outcome,
        });
    }
}
