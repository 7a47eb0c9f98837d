//! The jobs domain: enqueue, lease, complete, fail, heartbeat, batch acks,
//! cancel, read, list and redrive (docs/api.md).

use std::collections::BTreeMap;

use keel_core::{AttemptError, Backoff, JobId, JobState, Timestamp, TraceParent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::ErrorDetail;

/// The answer for one enqueued job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Enqueued {
    pub id: JobId,
    pub state: JobState,
    /// True when an idempotency key matched an earlier job, whose id this is.
    pub deduplicated: bool,
    /// True when a debounce key matched a job still in its window: this is
    /// its id, and the enqueued payload replaced its own.
    #[serde(default)]
    pub debounced: bool,
}

/// The answer for a batch, in the batch's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnqueuedBatch {
    pub jobs: Vec<Enqueued>,
}

/// `POST .../queues/{queue}/jobs`: one job, or `{"jobs":[...]}` enqueued
/// all or none. The server tells the two apart itself; this names them for
/// the OpenAPI document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EnqueueRequest {
    Batch {
        jobs: Vec<keel_core::job::JobRequest>,
    },
    One(Box<keel_core::job::JobRequest>),
}

/// The answer to an enqueue: one job's, or a batch's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EnqueueAnswer {
    Batch(EnqueuedBatch),
    One(Enqueued),
}

/// `POST .../queues/{queue}/lease`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// The answer to a lease. Serialized straight from its jobs, never through
/// `serde_json::Value`: payloads are raw JSON kept verbatim, and some valid
/// JSON (`1e999`) has no `Value` form.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct Leased<P = Box<RawValue>> {
    #[schema(value_type = Vec<LeasedJob>)]
    pub jobs: Vec<LeasedJob<P>>,
}

/// A job handed to a worker.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct LeasedJob<P = Box<RawValue>> {
    pub id: JobId,
    pub queue: String,
    #[schema(value_type = serde_json::Value)]
    pub payload: P,
    pub attempt: u32,
    pub max_attempts: u32,
    /// `"{job id}.{lease sequence}"`: what completes, fails or extends this lease.
    pub lease_token: String,
    pub lease_expires_at: Timestamp,
    pub priority: i16,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub created_at: Timestamp,
    /// When the job became leasable.
    pub run_at: Timestamp,
    /// The W3C trace context the job was enqueued in: the handler's span
    /// continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<TraceParent>,
}

/// `POST .../jobs/{id}/complete`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub lease_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<Box<RawValue>>,
}

/// `POST .../jobs/{id}/fail`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub lease_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// False sends the job to `dead` at once.
    #[serde(default = "yes")]
    pub retry: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

fn yes() -> bool {
    true
}

/// `POST .../jobs/{id}/heartbeat`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub lease_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAnswer {
    pub lease_expires_at: Timestamp,
}

/// The state a job reached through a complete, fail or cancel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AckAnswer {
    pub id: JobId,
    pub state: JobState,
    /// When a retried job becomes leasable again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Timestamp>,
}

/// `POST .../acks`: items are checked one by one (a bad item fails alone),
/// so they are taken as JSON and parsed as [`CompleteRequest`] or
/// [`FailRequest`] plus an `id` each.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcksRequest {
    #[serde(default)]
    pub complete: Vec<Value>,
    #[serde(default)]
    pub fail: Vec<Value>,
}

/// One status per item, in the order sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AcksAnswer {
    pub complete: Vec<AckItem>,
    pub fail: Vec<AckItem>,
}

/// How one item of a batch ack went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AckItem {
    Done {
        id: JobId,
        /// 200.
        status: u16,
        state: JobState,
        run_at: Option<Timestamp>,
    },
    Refused {
        id: Option<String>,
        status: u16,
        error: ErrorDetail,
    },
}

/// A job as `GET .../jobs/{id}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct Job<P = Box<RawValue>> {
    pub id: JobId,
    pub queue: String,
    pub state: JobState,
    #[schema(value_type = serde_json::Value)]
    pub payload: P,
    pub priority: i16,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<P>,
    pub errors: Vec<AttemptError>,
    pub tags: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub idempotency_key: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub lease_ms: u64,
    pub backoff: Backoff,
    /// For a scheduled or ready job read by id: every gate that holds it
    /// (empty: the next lease call takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Vec<keel_core::gate::Gate>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<TraceParent>,
}

/// A page of jobs, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct JobPage<P = Box<RawValue>> {
    #[schema(value_type = Vec<Job>)]
    pub jobs: Vec<Job<P>>,
    pub next_cursor: Option<String>,
}

/// `POST .../queues/{queue}/redrive`: `ids` or `all`, one of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<Box<RawValue>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedriveAnswer {
    pub redriven: usize,
    pub ids: Vec<JobId>,
}

/// `GET .../queues/{queue}/stream` (a WebSocket): the query of the upgrade.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// The lease time of every job pushed on the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// A worker's frame on its stream, one JSON text message each (docs/api.md,
/// "Worker streams"; a WebSocket's frames are outside the OpenAPI document).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkerFrame {
    /// `{"credit":N}`: room for N more jobs. The server pushes jobs while
    /// the credit lasts, each job spending one.
    Credit(u32),
    /// `{"acks":{"id":7,"complete":[...],"fail":[...]}}`: outcomes, as
    /// `POST .../acks` takes them; answered by an `acked` frame of the same id.
    Acks(StreamAcks),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamAcks {
    /// The worker's number for the batch, repeated in its answer.
    pub id: u64,
    #[serde(default)]
    pub complete: Vec<Value>,
    #[serde(default)]
    pub fail: Vec<Value>,
}

/// The server's frame on a worker's stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame<P = Box<RawValue>> {
    /// `{"jobs":[...]}`: jobs leased to this worker, as a lease answers them.
    Jobs(Vec<LeasedJob<P>>),
    /// `{"acked":{"id":7,"complete":[...],"fail":[...]}}`: the answer to an
    /// `acks` frame, one status per item as `POST .../acks` gives them.
    Acked(StreamAcked),
    /// `{"error":{"code","message"}}`: why the server ends the stream; a
    /// close follows.
    Error(ErrorDetail),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamAcked {
    pub id: u64,
    pub complete: Vec<AckItem>,
    pub fail: Vec<AckItem>,
}
