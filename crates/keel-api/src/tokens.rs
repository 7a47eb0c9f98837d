//! The tokens domain: creating an API token (its secret comes out once),
//! listing tokens (never a secret) and revoking one (docs/api.md).

use keel_core::Timestamp;
use keel_core::auth::Role;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// `POST /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
    /// Absent for an admin (every namespace); `["*"]` for every namespace.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// `kind:name` patterns (`queue:emails*`); absent for every resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// A token for one recipient's in-app inbox and nothing else (a
    /// browser's): the same as `resources: ["inbox:{recipient}"]`, for a
    /// `reader` (read and follow it) or a `publisher` (mark it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Absent: 90 days. `null`: never expires.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_in_ms: Option<Option<u64>>,
}

/// A field that is present, `null` included, is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

/// A token as the API shows it: never its secret, except in [`TokenCreated`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenAnswer {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// The answer to `POST /v1/tokens`: the token, and the secret `keel_…`
/// that is shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub about: TokenAnswer,
    /// The whole token, to send as `Authorization: Bearer keel_…`.
    pub token: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenAnswer>,
}
