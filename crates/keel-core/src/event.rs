//! Events: what a topic holds, and the bounds a topic's policy may set.
//!
//! A topic is an append-only log; each event gets a `seq`, strictly
//! increasing within its topic in the order the events became durable, so a
//! reader that has seen seq N has seen every event before it.

use std::collections::BTreeMap;

use crate::{Error, ErrorCode, Timestamp};

/// Longest event id, type, source, key, header name or value.
pub const MAX_EVENT_FIELD: usize = 256;
/// Most headers on one event.
pub const MAX_HEADERS: usize = 32;
/// Longest retention or dedup window: ten years.
pub const MAX_WINDOW_MS: u64 = 10 * 365 * 24 * 3_600_000;

/// A topic's policy; every field has a default.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicPolicy {
    /// Events older than this (by publish time) are removed.
    pub retention_ms: u64,
    /// An id published again within this window is a duplicate.
    pub dedup_window_ms: u64,
    /// Largest event (its data, in bytes).
    pub max_event_bytes: u64,
    /// Objectives Keel measures the topic's deliveries against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::slo::Slo>,
}

impl Default for TopicPolicy {
    fn default() -> Self {
        TopicPolicy {
            retention_ms: 7 * 24 * 3_600_000,
            dedup_window_ms: 24 * 3_600_000,
            max_event_bytes: 1024 * 1024,
            slo: None,
        }
    }
}

impl TopicPolicy {
    /// Checks the bounds: windows of at least a second and at most ten years,
    /// events of 1 byte to `max_payload_bytes`.
    pub fn check(&self, max_payload_bytes: u64) -> Result<(), Error> {
        let window = |name: &str, ms: u64| {
            if (1000..=MAX_WINDOW_MS).contains(&ms) {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::InvalidRequest,
                    format!("{name} must be between 1000 and {MAX_WINDOW_MS}"),
                ))
            }
        };
        window("retention_ms", self.retention_ms)?;
        window("dedup_window_ms", self.dedup_window_ms)?;
        if !(1..=max_payload_bytes).contains(&self.max_event_bytes) {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!("max_event_bytes must be between 1 and {max_payload_bytes}"),
            ));
        }
        if let Some(slo) = &self.slo {
            slo.check()?;
        }
        Ok(())
    }
}

/// An event to publish, checked at the edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique within the topic's dedup window.
    pub id: String,
    /// Keel made `id` (a fresh UUIDv7 that no earlier event holds), so
    /// publishing skips the dedup lookup; false for an id the publisher
    /// chose, and for events read back.
    pub generated_id: bool,
    /// The CloudEvents `type` (`""` when absent).
    pub kind: String,
    pub source: String,
    /// The partition key (CloudEvents `subject`): per-key order.
    pub key: Option<String>,
    /// When it happened, as the publisher says.
    pub time: Timestamp,
    /// JSON text.
    pub data: String,
    pub headers: BTreeMap<String, String>,
}

/// The CloudEvents extension attribute (distributed tracing) that carries an
/// event's W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

impl NewEvent {
    /// The trace the event was published in, if it carries a valid one.
    pub fn traceparent(&self) -> Option<crate::TraceParent> {
        self.headers
            .get(TRACEPARENT)
            .and_then(|t| crate::TraceParent::parse(t))
    }

    /// Checks lengths and counts; `data` is JSON already.
    pub fn check(&self, policy: &TopicPolicy) -> Result<(), Error> {
        let invalid = |m: String| Err(Error::new(ErrorCode::InvalidRequest, m));
        if self.id.is_empty() || self.id.len() > MAX_EVENT_FIELD {
            return invalid(format!("id must be 1 to {MAX_EVENT_FIELD} bytes"));
        }
        for (name, value) in [("type", &self.kind), ("source", &self.source)] {
            if value.len() > MAX_EVENT_FIELD {
                return invalid(format!("{name} must be at most {MAX_EVENT_FIELD} bytes"));
            }
        }
        if let Some(key) = &self.key
            && (key.is_empty() || key.len() > MAX_EVENT_FIELD)
        {
            return invalid(format!("key must be 1 to {MAX_EVENT_FIELD} bytes"));
        }
        // The trace context is Keel's to add (from the publish request), so
        // it does not take one of the publisher's places.
        let own = self.headers.len() - usize::from(self.headers.contains_key(TRACEPARENT));
        if own > MAX_HEADERS {
            return invalid(format!(
                "an event may have at most {MAX_HEADERS} headers (besides traceparent)"
            ));
        }
        if self
            .headers
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > MAX_EVENT_FIELD || v.len() > MAX_EVENT_FIELD)
        {
            return invalid(format!(
                "header names must be 1 to {MAX_EVENT_FIELD} bytes, values at most {MAX_EVENT_FIELD}"
            ));
        }
        if let Some(context) = self.headers.get(TRACEPARENT)
            && crate::TraceParent::parse(context).is_none()
        {
            return invalid(format!(
                "traceparent {context:?} is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)"
            ));
        }
        if self.data.len() as u64 > policy.max_event_bytes {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "event {:?} has {} bytes of data, over the topic's max_event_bytes of {}",
                    self.id,
                    self.data.len(),
                    policy.max_event_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub event: NewEvent,
    /// When it became durable; retention counts from here.
    pub published_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> NewEvent {
        NewEvent {
            id: "e1".into(),
            generated_id: false,
            kind: "order.created".into(),
            source: String::new(),
            key: Some("k".into()),
            time: Timestamp::from_millis(0),
            data: "{}".into(),
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn policy_bounds_are_checked() {
        assert!(TopicPolicy::default().check(1024 * 1024).is_ok());
        let short = TopicPolicy {
            retention_ms: 10,
            ..TopicPolicy::default()
        };
        assert_eq!(
            short.check(1024).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let big = TopicPolicy {
            max_event_bytes: 2048,
            ..TopicPolicy::default()
        };
        assert!(big.check(1024).is_err());
    }

    #[test]
    fn events_over_the_topics_size_are_too_large() {
        let policy = TopicPolicy {
            max_event_bytes: 2,
            ..TopicPolicy::default()
        };
        assert!(event().check(&policy).is_ok());
        let e = NewEvent {
            data: "[1,2]".into(),
            ..event()
        };
        assert_eq!(
            e.check(&policy).unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
        let e = NewEvent {
            key: Some(String::new()),
            ..event()
        };
        assert_eq!(
            e.check(&policy).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn a_trace_context_takes_none_of_the_publishers_header_places() {
        let policy = TopicPolicy::default();
        let mut e = event();
        e.headers = (0..MAX_HEADERS)
            .map(|i| (format!("h{i}"), "v".into()))
            .collect();
        assert!(e.check(&policy).is_ok());
        e.headers.insert(
            TRACEPARENT.into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        );
        assert!(e.check(&policy).is_ok());
        assert_eq!(
            e.traceparent().unwrap().trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        e.headers.insert("one-more".into(), "v".into());
        assert_eq!(
            e.check(&policy).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        e.headers.remove("one-more");
        e.headers.insert(TRACEPARENT.into(), "00-nope".into());
        assert!(
            e.check(&policy)
                .unwrap_err()
                .message
                .contains("not a W3C trace context")
        );
    }
}
