//! The endpoints domain: configuring an endpoint (a secret goes out only
//! when it is made, set or rotated), its status, its attempts log and
//! recovery (docs/api.md).

use keel_core::Timestamp;
use keel_core::endpoint::EndpointSpec;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT .../endpoints/{name}`: the spec, and a secret to sign with (a new
/// one is made for a new endpoint when absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct EndpointRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(flatten)]
    pub spec: EndpointSpec,
}

/// By hand: serde's `flatten` would let unknown fields through, and the
/// spec refuses them.
impl<'de> Deserialize<'de> for EndpointRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let secret = match fields.remove("secret") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => return Err(D::Error::custom("secret must be a string")),
        };
        let spec =
            serde_json::from_value(serde_json::Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(EndpointRequest { secret, spec })
    }
}

/// How an endpoint is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointStatus {
    pub last_success_at: Option<Timestamp>,
    /// The first failure since the last success.
    pub failing_since: Option<Timestamp>,
    pub failure_streak: u64,
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    /// Deliveries being made now, on every node.
    pub in_flight: u64,
    /// Deliveries waiting for their first attempt or their next.
    pub backlog: u64,
    /// Deliveries that ran out of attempts (`recover` sends them again).
    pub dead: u64,
}

/// An endpoint as the API shows it: never its secret, except in the answer
/// that made or set it (`secret`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointAnswer {
    pub name: String,
    #[serde(flatten)]
    pub spec: EndpointSpec,
    /// The queue its messages wait on: `keel.push.{name}`.
    pub queue: String,
    pub status: EndpointStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointAnswer>,
}

/// `POST .../rotate-secret`: the new secret, shown this once; the previous
/// one signs too until `previous_valid_until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotatedAnswer {
    pub secret: String,
    pub previous_valid_until: Option<Timestamp>,
}

/// One delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptAnswer {
    pub id: i64,
    /// The `webhook-id` sent: receivers deduplicate on it.
    pub message_id: String,
    pub job_id: String,
    pub at: Timestamp,
    /// `succeeded` or `failed`.
    pub status: String,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// A page of attempts, newest first; `next_cursor` is the `after` of the
/// next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<AttemptAnswer>,
    pub next_cursor: Option<String>,
}

/// `POST .../recover`: send again what died since then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// RFC 3339.
    pub since: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoverAnswer {
    pub recovered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_takes_the_secret_apart_and_refuses_unknown_fields() {
        let r: EndpointRequest =
            serde_json::from_str(r#"{"url":"https://x","secret":"whsec_YQ=="}"#).unwrap();
        assert_eq!(r.secret.as_deref(), Some("whsec_YQ=="));
        assert_eq!(r.spec.url, "https://x");
        let back: EndpointRequest =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(
            serde_json::from_str::<EndpointRequest>(r#"{"url":"https://x","urll":1}"#).is_err()
        );
    }
}
