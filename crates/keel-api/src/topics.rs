//! The topics domain: a topic's policy, publishing one event or an atomic
//! batch (natively or as CloudEvents), and reading history (docs/api.md).

use std::collections::BTreeMap;

use keel_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// `PUT .../topics/{topic}`: every field optional, a missing one takes its default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<u64>,
    /// Objectives for the topic's deliveries (`GET .../slos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<keel_core::slo::Slo>,
}

/// A topic: its policy and how far its log reaches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopicAnswer {
    pub name: String,
    pub retention_ms: u64,
    pub dedup_window_ms: u64,
    pub max_event_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<keel_core::slo::Slo>,
    /// The last seq given out; 0 when nothing was published.
    pub head_seq: u64,
    /// Events kept now.
    pub events: u64,
    pub created_at: Timestamp,
}

/// `GET .../topics`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<TopicAnswer>,
}

/// One event to publish, Keel's own form. Only `data` is usual; the rest
/// has defaults (`id`: a new UUIDv7, `time`: the publish time).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, bound(deserialize = "P: Deserialize<'de>"))]
#[schema(bound = "")]
pub struct EventRequest<P = Box<RawValue>> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub data: Option<P>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `{"events":[...]}`: published all or none.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, bound(deserialize = "P: Deserialize<'de>"))]
#[schema(bound = "")]
pub struct PublishBatch<P = Box<RawValue>> {
    #[schema(value_type = Vec<EventRequest>)]
    pub events: Vec<EventRequest<P>>,
}

/// The answer for one published event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublishedAnswer {
    pub id: String,
    pub seq: u64,
    /// True when the id was published within the dedup window: `seq` is the
    /// first event's and nothing was stored.
    pub duplicate: bool,
}

/// The answer for a batch, in the batch's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublishedBatch {
    pub events: Vec<PublishedAnswer>,
}

/// `POST .../topics/{topic}/events` with a JSON body: one event or a batch.
/// CloudEvents (structured, batched or binary) are the other content types.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PublishRequest {
    Batch(PublishBatch),
    One(EventRequest),
}

/// The answer to a publish: one event's, or a batch's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PublishAnswer {
    Batch(PublishedBatch),
    One(PublishedAnswer),
}

/// A stored event.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct EventAnswer<P = Box<RawValue>> {
    pub id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub key: Option<String>,
    pub time: Timestamp,
    #[schema(value_type = serde_json::Value)]
    pub data: P,
    pub headers: BTreeMap<String, String>,
}

/// `GET .../topics/{topic}/events`: in seq order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct EventPage<P = Box<RawValue>> {
    #[schema(value_type = Vec<EventAnswer>)]
    pub events: Vec<EventAnswer<P>>,
    /// Pass as `after` for the next page; null when this page was not full.
    pub next_after: Option<u64>,
}
