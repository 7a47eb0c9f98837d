//! The audit domain: reading the audit log (docs/api.md).

use keel_core::Timestamp;
use keel_core::auth::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /v1/audit?namespace=&action=&actor=&after=&limit=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    pub namespace: Option<String>,
    pub action: Option<String>,
    /// A token id or a token's name.
    pub actor: Option<String>,
    /// Entries after this id (the last page's `next_after`).
    pub after: Option<i64>,
    /// 1 to 1000; 100 by default.
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActorAnswer {
    /// `null` when the server ran with `--auth off`.
    pub token_id: Option<String>,
    pub name: String,
    pub role: Option<Role>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryAnswer {
    pub id: i64,
    pub at: Timestamp,
    pub actor: ActorAnswer,
    pub namespace: Option<String>,
    pub action: String,
    pub target: String,
    pub request_id: String,
    /// `{"method","path","body_sha256"?}`.
    pub summary: Value,
    /// The answer's status; `null` if the server stopped during the change.
    pub outcome: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryAnswer>,
    /// Pass as `after` for the next page; `null` when this page was the last.
    pub next_after: Option<i64>,
}
