//! W3C Trace Context (`traceparent`) carried through Keel: a job enqueued,
//! an event published or a run started inside a trace keeps the trace's
//! context, and whoever leases the job, receives the event or runs the step
//! continues that trace. Keel stores and forwards the header's text; only its
//! shape is checked here (<https://www.w3.org/TR/trace-context/#traceparent-header>).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// A valid `traceparent`: `00-<trace id>-<parent id>-<flags>`, lower-case
/// hex, neither id all zeros.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(
    value_type = String,
    example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    pattern = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
)]
#[serde(transparent)]
pub struct TraceParent(String);

impl TraceParent {
    /// The header's value when it has the version-00 shape; `None` for
    /// anything else, which the specification says to ignore.
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.split('-').collect();
        let [version, trace, parent, flags] = parts.as_slice() else {
            return None;
        };
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        (*version == "00"
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2)
            && !zero(trace)
            && !zero(parent))
        .then(|| Self(value.to_owned()))
    }

    /// A context from a tracer's own ids (each printed as lower-case hex);
    /// `None` for an invalid (all-zero) one.
    pub fn new(
        trace_id: impl fmt::LowerHex,
        span_id: impl fmt::LowerHex,
        flags: u8,
    ) -> Option<Self> {
        Self::parse(&format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}"))
    }

    /// The 32 hex digits naming the whole trace.
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The 16 hex digits of the span this context continues.
    pub fn parent_id(&self) -> &str {
        &self.0[36..52]
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.0[53..55], 16).unwrap_or(0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Given in a request body, a malformed context is the caller's mistake: a
/// 400, not a trace silently lost.
impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        Self::parse(&value).ok_or_else(|| {
            serde::de::Error::custom(Error::invalid(format!(
                "traceparent {value:?} is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)"
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn only_the_version_00_shape_is_a_context() {
        let t = TraceParent::parse(GOOD).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id(), "00f067aa0ba902b7");
        assert_eq!(t.to_string(), GOOD);
        assert_eq!(t.flags(), 1);
        assert_eq!(
            TraceParent::new(
                0x4bf92f3577b34da6a3ce929d0e0e4736_u128,
                0xf067aa0ba902b7_u64,
                1
            ),
            Some(t)
        );
        assert_eq!(TraceParent::new(0_u128, 1_u64, 0), None);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_body_field_is_checked_when_read() {
        let ok: TraceParent = serde_json::from_str(&format!("\"{GOOD}\"")).unwrap();
        assert_eq!(ok.as_str(), GOOD);
        let err = serde_json::from_str::<TraceParent>("\"00-abc\"").unwrap_err();
        assert!(err.to_string().contains("not a W3C trace context"), "{err}");
    }
}
