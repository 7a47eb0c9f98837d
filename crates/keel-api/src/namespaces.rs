//! The namespaces domain: quotas and their usage (docs/api.md).

use keel_core::quota::Quotas;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /v1/namespaces/{ns}` takes `keel_core::quota::Quotas`:
/// `{"max_jobs"?,"max_enqueue_per_second"?,"max_publish_per_second"?,
/// "max_schedules"?,"max_subscriptions"?,"max_bytes"?}`; an absent quota
/// is none.
pub use keel_core::quota::Quotas as NamespaceRequest;

/// What a namespace holds, next to its quotas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageAnswer {
    /// Unfinished jobs.
    pub jobs: u64,
    pub schedules: u64,
    pub subscriptions: u64,
    /// Job payloads and results, and event data, stored (their JSON text).
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceAnswer {
    pub namespace: String,
    pub quotas: Quotas,
    pub usage: UsageAnswer,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceList {
    pub namespaces: Vec<NamespaceAnswer>,
}
