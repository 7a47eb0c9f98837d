//! What a job is enqueued with.

use std::collections::BTreeMap;

use keel_core::handler::ObjectRef;
use keel_core::job::Debounce;
use serde::Serialize;
use serde_json::Value;

/// A job to enqueue; every field but `payload` is optional.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobSpec {
    pub payload: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debounce: Option<Debounce>,
    /// The entity the job works on: jobs of one object run one at a time,
    /// and a handler keeps its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
}

impl JobSpec {
    pub fn new(payload: Value) -> Self {
        JobSpec {
            payload,
            ..JobSpec::default()
        }
    }
}
