//! The subscriptions domain: configuring one, where it stands, seeking,
//! pulled fetches and commits, and trying a filter on history (docs/api.md).

use keel_core::Timestamp;
use keel_core::subscription::{Filter, Start, Target};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::topics::EventAnswer;

/// Where a subscription starts, or a seek goes: `"earliest"`, `"latest"`,
/// `{"seq":N}` (the first event delivered is N) or `{"time":"RFC 3339"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StartAt {
    Named(Named),
    Seq { seq: u64 },
    Time { time: Timestamp },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Named {
    Earliest,
    Latest,
}

impl From<StartAt> for Start {
    fn from(start: StartAt) -> Start {
        match start {
            StartAt::Named(Named::Earliest) => Start::Earliest,
            StartAt::Named(Named::Latest) => Start::Latest,
            StartAt::Seq { seq } => Start::Seq(seq),
            StartAt::Time { time } => Start::Time(time),
        }
    }
}

/// `PUT .../subscriptions/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Only when the subscription is created (default `"latest"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartAt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_timeout_ms: Option<u64>,
}

/// Whether a subscription hands events on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Paused,
}

/// A subscription: its definition and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionAnswer {
    pub name: String,
    pub topic: String,
    pub filter: Filter,
    pub target: Option<Target>,
    pub consumer_timeout_ms: u64,
    pub status: SubscriptionStatus,
    /// The last seq handed off (target) or committed (pulled).
    pub position: u64,
    /// The topic's head seq minus the position.
    pub lag: u64,
    pub delivered: u64,
    /// Events retention removed before this subscription got to them.
    pub skipped: u64,
    pub created_at: Timestamp,
}

/// `GET .../subscriptions?topic=`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionAnswer>,
}

/// `POST .../subscriptions/{name}/fetch`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    pub consumer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// The answer to a fetch; `cursor` commits its events (null when none).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct FetchAnswer<P = Box<RawValue>> {
    #[schema(value_type = Vec<EventAnswer>)]
    pub events: Vec<EventAnswer<P>>,
    pub cursor: Option<String>,
}

/// `POST .../subscriptions/{name}/commit`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    pub consumer: String,
    pub cursor: String,
}

/// The answer to a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Committed {
    pub committed: bool,
}

/// `POST .../topics/{topic}/match`: a dry run of a filter over history.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub after: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct MatchAnswer<P = Box<RawValue>> {
    pub matched: u64,
    pub scanned: u64,
    /// The first few matches.
    #[schema(value_type = Vec<EventAnswer>)]
    pub sample: Vec<EventAnswer<P>>,
}
