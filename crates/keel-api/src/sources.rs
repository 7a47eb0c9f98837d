//! The sources domain: configuring a webhook source (its secret goes in,
//! never out) and what the ingress answers (docs/api.md).

use keel_core::Timestamp;
use keel_core::source::{Encoding, Scheme};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT .../sources/{name}` takes `keel_core::source::SourceSpec` as it is:
/// `{"topic","verify":{"scheme","secret",...},"key"?,"type"?,"id"?}`.
pub use keel_core::source::SourceSpec as SourceRequest;

/// How a source verifies, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyAnswer {
    pub scheme: Scheme,
    pub tolerance_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A source as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceAnswer {
    pub name: String,
    pub topic: String,
    pub verify: VerifyAnswer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the provider sends its webhooks: `/v1/hooks/{ns}/{name}`.
    pub ingress: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceAnswer>,
}

/// Slack's `url_verification` answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChallengeAnswer {
    pub challenge: String,
}

/// The answer to a delivery on `/v1/hooks/{ns}/{name}`: the event it
/// published, or a provider's challenge answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IngestAnswer {
    Published(crate::topics::PublishedAnswer),
    Challenge(ChallengeAnswer),
}
