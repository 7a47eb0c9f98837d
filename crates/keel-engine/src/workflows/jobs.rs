//! The jobs a run's steps ride on: task jobs on the user's queues (owned by
//! the run's step, tagged for workers), HTTP calls and timers on Keel's own
//! queue, and how a step learns from its job's ack how it ended.

use std::collections::BTreeMap;

use keel_core::workflow::{HttpRequest, Outcome, RunId, Work};
use keel_core::{Backoff, Error, JobState, Namespace, NewJob, QueueName, QueueRef, Timestamp};
use keel_store::{AckOutcome, Acked, JobOwner, OwnedJob};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Driver, http};

/// Keel's own namespace: HTTP calls and timers of workflow runs. Reserved: the
/// API refuses it.
pub const SYSTEM_NAMESPACE: &str = "_keel";
pub const SYSTEM_QUEUE: &str = "workflow";
/// The tags that tell a worker which run, step and fan-out item a task job is
/// for. Keel itself reads the job's owner instead ([`JobOwner::Run`]).
pub const RUN_TAG: &str = "keel.run";
pub const STEP_TAG: &str = "keel.step";
pub const ITEM_TAG: &str = "keel.item";

/// Attempts for a timer job: it only fails when its run cannot be advanced.
pub(super) const TIMER_ATTEMPTS: u32 = 100;
/// Lease of a timer job, and the margin of an HTTP call's lease over the
/// call's own timeout: a node that dies holding one delays it by this much.
pub(super) const SYSTEM_LEASE_MS: u64 = 5_000;
/// A task step's lease when the step gives no `timeout_ms`.
pub(super) const DEFAULT_TASK_LEASE_MS: u64 = 30_000;
#[allow(
    clippy::expect_used,
    reason = "constant names; `system_queue_names_are_valid` checks them"
)]
pub fn system_queue() -> QueueRef {
    QueueRef {
        namespace: Namespace::new(SYSTEM_NAMESPACE).expect("valid name"),
        queue: QueueName::new(SYSTEM_QUEUE).expect("valid name"),
    }
}

/// A job on Keel's own queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SystemJob {
    Http {
        namespace: String,
        run: RunId,
        request: HttpRequest,
    },
    Wake {
        namespace: String,
        run: RunId,
        at: Timestamp,
    },
    /// A `notify` step's notification, with its dedup key.
    Notify {
        namespace: String,
        run: RunId,
        request: Value,
    },
}

/// How a step's job ended, from its ack (`None`: cancelled, or its lease
/// expired on the last attempt).
pub fn job_outcome(acked: &Acked, ack: Option<&AckOutcome>) -> Outcome {
    let attempts = acked.attempt;
    let result = match (acked.state, ack) {
        (JobState::Succeeded, Some(AckOutcome::Complete { result })) => Ok(result
            .as_ref()
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null)),
        (JobState::Dead, Some(AckOutcome::Fail { message, .. })) => Err(message.clone()),
        (JobState::Dead, _) => Err("its lease expired on its last attempt".to_owned()),
        (JobState::Cancelled, _) => Err("the step's job was cancelled".to_owned()),
        _ => return Outcome::Progress { attempts },
    };
    Outcome::Done { attempts, result }
}

impl Driver {
    /// The job that does a task or HTTP step, under a fresh id.
    pub(super) fn step_job(
        &self,
        namespace: &Namespace,
        run: RunId,
        step: &str,
        item: Option<usize>,
        work: Work,
        now: Timestamp,
    ) -> Result<OwnedJob, Error> {
        let id = self.next_job_id(now);
        match work {
            Work::Task {
                queue,
                payload,
                priority,
                max_attempts,
                backoff,
                lease_ms,
            } => {
                let mut tags = BTreeMap::from([
                    (RUN_TAG.to_owned(), run.to_string()),
                    (STEP_TAG.to_owned(), step.to_owned()),
                ]);
                if let Some(i) = item {
                    tags.insert(ITEM_TAG.to_owned(), i.to_string());
                }
                let job = NewJob {
                    payload: raw(&payload)?,
                    priority,
                    run_at: now,
                    max_attempts,
                    backoff,
                    lease_ms: lease_ms.unwrap_or(DEFAULT_TASK_LEASE_MS).clamp(
                        keel_core::limits::MIN_LEASE_MS,
                        keel_core::limits::MAX_LEASE_MS,
                    ),
                    idempotency_key: None,
                    ordering_key: None,
                    tags,
                    debounce_key: None,
                    traceparent: None,
                };
                let queue = QueueRef {
                    namespace: namespace.clone(),
                    queue,
                };
                let owner = JobOwner::Run {
                    run,
                    step: step.to_owned(),
                    item: item.map(|i| i as u32),
                };
                Ok(OwnedJob {
                    queue,
                    id,
                    job,
                    owner: Some(owner),
                })
            }
            Work::Http {
                request,
                max_attempts,
                backoff,
            } => {
                let lease_ms =
                    request.timeout_ms.unwrap_or(http::DEFAULT_TIMEOUT_MS) + SYSTEM_LEASE_MS;
                let payload = SystemJob::Http {
                    namespace: namespace.to_string(),
                    run,
                    request,
                };
                let job = system_job(&payload, None, now, max_attempts, backoff, lease_ms, run)?;
                // The step runner makes the call and advances the run itself.
                Ok(OwnedJob {
                    queue: system_queue(),
                    id,
                    job,
                    owner: None,
                })
            }
            Work::Notify {
                mut request,
                max_attempts,
                backoff,
            } => {
                // The step's own key unless it names one: a retried or
                // replayed step never sends twice.
                if let Some(body) = request.as_object_mut()
                    && !body.contains_key("dedup_key")
                {
                    let mut key = format!("keel.run/{run}/{step}");
                    if let Some(i) = item {
                        key.push_str(&format!("/{i}"));
                    }
                    body.insert("dedup_key".to_owned(), Value::String(key));
                }
                let payload = SystemJob::Notify {
                    namespace: namespace.to_string(),
                    run,
                    request,
                };
                let job = system_job(
                    &payload,
                    None,
                    now,
                    max_attempts,
                    backoff,
                    SYSTEM_LEASE_MS,
                    run,
                )?;
                Ok(OwnedJob {
                    queue: system_queue(),
                    id,
                    job,
                    owner: None,
                })
            }
            Work::Child { .. } => Err(Error::internal("a child run is not a job")),
        }
    }
}

/// A job on Keel's own queue, for `run`.
pub(super) fn system_job(
    job: &SystemJob,
    idempotency_key: Option<String>,
    run_at: Timestamp,
    max_attempts: u32,
    backoff: Backoff,
    lease_ms: u64,
    run: RunId,
) -> Result<NewJob, Error> {
    let payload = serde_json::to_value(job).map_err(|e| Error::internal(e.to_string()))?;
    Ok(NewJob {
        payload: raw(&payload)?,
        priority: 0,
        run_at,
        max_attempts,
        backoff,
        lease_ms: lease_ms.min(keel_core::limits::MAX_LEASE_MS),
        idempotency_key,
        ordering_key: None,
        tags: BTreeMap::from([(RUN_TAG.to_owned(), run.to_string())]),
        debounce_key: None,
        traceparent: None,
    })
}

pub(super) fn raw(value: &Value) -> Result<Box<RawValue>, Error> {
    RawValue::from_string(value.to_string()).map_err(|e| Error::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_queue_names_are_valid() {
        assert!(Namespace::new(SYSTEM_NAMESPACE).is_ok());
        assert!(QueueName::new(SYSTEM_QUEUE).is_ok());
    }
}
