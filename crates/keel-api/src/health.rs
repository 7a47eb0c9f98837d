//! `/healthz` and `/readyz`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the process says of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// `/healthz`: the process serves HTTP.
    Ok,
    /// `/readyz`: the store answers and the server takes work.
    Ready,
    /// `/readyz`, 503: shutting down, finishing what is in flight.
    Draining,
    /// `/readyz`, 503: the store does not answer (`error` says why).
    Unavailable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    pub const fn is(status: HealthStatus) -> Self {
        Health {
            status,
            error: None,
        }
    }
}
