//! Endpoints: HTTP receivers that Keel pushes to, signed in the Standard
//! Webhooks format. This module holds what is pure: the spec and its checks,
//! the retry schedule with its jitter, the signing secrets and their
//! rotation, and the queue an endpoint's deliveries wait on. Sending is the
//! engine's (`keel_engine::endpoints`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{EndpointName, Error, Namespace, QueueName, QueueRef, Timestamp};

pub const DEFAULT_TIMEOUT_MS: u64 = 15_000;
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about a day and a
/// half of trying before a delivery is dead.
pub const DEFAULT_RETRY_SCHEDULE_MS: [u64; 8] = [
    0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
];
/// Most attempts a schedule may give (no cap at 50 here).
pub const MAX_SCHEDULE: usize = 1000;
/// Longest wait between two attempts: a week.
pub const MAX_RETRY_DELAY_MS: u64 = 7 * 24 * 3_600_000;
/// Five days failing without a success disables an endpoint.
pub const DEFAULT_DISABLE_AFTER_MS: u64 = 5 * 24 * 3_600_000;
/// How long a rotated-out secret still signs, so receivers can switch.
pub const ROTATION_OVERLAP_MS: u64 = 24 * 3_600_000;
/// Deliveries to one endpoint in flight at once, by default.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 64;
pub const MAX_IN_FLIGHT: u32 = 10_000;
const MAX_HEADERS: usize = 32;
const MAX_URL: usize = 2048;
/// The queue of an endpoint's deliveries is this prefix and its name.
pub const QUEUE_PREFIX: &str = "keel.push.";
/// Headers Keel writes itself; an endpoint may not set them.
const RESERVED_HEADERS: [&str; 6] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
];

/// At most this many deliveries per second start, on each node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
}

/// An endpoint as configured (`PUT .../endpoints/{name}`), secrets apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Deliveries of one key one at a time, in order.
    #[serde(default)]
    pub ordered: bool,
    /// The wait before each attempt; its length is the number of attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_schedule_ms: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after_ms: Option<u64>,
}

impl EndpointSpec {
    pub fn check(&self, name: &EndpointName) -> Result<(), Error> {
        endpoint_queue(&Namespace::new("n")?, name)?;
        let scheme_ok = self.url.starts_with("http://") || self.url.starts_with("https://");
        if !scheme_ok || self.url.len() > MAX_URL {
            return Err(Error::invalid(format!(
                "url must be an http or https url of at most {MAX_URL} bytes"
            )));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(Error::invalid(format!("at most {MAX_HEADERS} headers")));
        }
        for (k, v) in &self.headers {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if k.is_empty() || k.len() > 256 || !k.chars().all(token) {
                return Err(Error::invalid(format!("header name {k:?} is not valid")));
            }
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(Error::invalid(format!("header {k:?} is set by Keel")));
            }
            if v.len() > 4096 || v.chars().any(|c| c.is_control() && c != '\t') {
                return Err(Error::invalid(format!("header {k:?} has an invalid value")));
            }
        }
        if !(100..=MAX_TIMEOUT_MS).contains(&self.timeout_ms()) {
            return Err(Error::invalid(format!(
                "timeout_ms must be between 100 and {MAX_TIMEOUT_MS}"
            )));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight()) {
            return Err(Error::invalid(format!(
                "max_in_flight must be between 1 and {MAX_IN_FLIGHT}"
            )));
        }
        if self.rate_limit.is_some_and(|r| r.per_second == 0) {
            return Err(Error::invalid("rate_limit.per_second must be at least 1"));
        }
        let schedule = self.retry_schedule();
        if schedule.is_empty() || schedule.len() > MAX_SCHEDULE {
            return Err(Error::invalid(format!(
                "retry_schedule_ms must have 1 to {MAX_SCHEDULE} entries"
            )));
        }
        if schedule.iter().any(|&ms| ms > MAX_RETRY_DELAY_MS) {
            return Err(Error::invalid(format!(
                "retry_schedule_ms entries are at most {MAX_RETRY_DELAY_MS}"
            )));
        }
        if self.disable_after_ms() < 60_000 {
            return Err(Error::invalid("disable_after_ms must be at least 60000"));
        }
        Ok(())
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT)
    }

    pub fn retry_schedule(&self) -> &[u64] {
        self.retry_schedule_ms
            .as_deref()
            .unwrap_or(&DEFAULT_RETRY_SCHEDULE_MS)
    }

    pub fn disable_after_ms(&self) -> u64 {
        self.disable_after_ms.unwrap_or(DEFAULT_DISABLE_AFTER_MS)
    }

    /// The wait before the attempt after failed attempt `attempt` (1-based),
    /// or `None` when the schedule is spent. `unit` in `[0, 1)` spreads the
    /// wait over ±10 %, so endpoints that failed together do not retry
    /// together.
    pub fn retry_delay_ms(&self, attempt: u32, unit: f64) -> Option<u64> {
        let delay = *self.retry_schedule().get(attempt as usize)?;
        let spread = 0.9 + 0.2 * unit.clamp(0.0, 1.0);
        Some((delay as f64 * spread) as u64)
    }
}

/// The queue an endpoint's deliveries wait on (an error for a name too long
/// to have one, which `EndpointSpec::check` refuses).
pub fn endpoint_queue(namespace: &Namespace, name: &EndpointName) -> Result<QueueRef, Error> {
    let queue = QueueName::new(&format!("{QUEUE_PREFIX}{name}")).map_err(|_| {
        Error::invalid(format!(
            "endpoint name {name:?} is too long: at most {} characters",
            128 - QUEUE_PREFIX.len()
        ))
    })?;
    Ok(QueueRef {
        namespace: namespace.clone(),
        queue,
    })
}

/// The endpoint whose deliveries wait on `queue`, if it is one.
pub fn queue_endpoint(queue: &QueueName) -> Option<EndpointName> {
    let name = queue.as_str().strip_prefix(QUEUE_PREFIX)?;
    EndpointName::new(name).ok()
}

/// An endpoint's signing secrets: the current one, and the one it replaced
/// while that still signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<Timestamp>,
}

impl Secrets {
    pub fn new(current: String) -> Self {
        Secrets {
            current,
            previous: None,
            previous_until: None,
        }
    }

    /// `current` replaced by `next`; the old one keeps signing for
    /// [`ROTATION_OVERLAP_MS`].
    pub fn rotated(&self, next: String, now: Timestamp) -> Self {
        Secrets {
            current: next,
            previous: Some(self.current.clone()),
            previous_until: Some(now.plus_ms(ROTATION_OVERLAP_MS)),
        }
    }

    /// The secrets that sign at `now`, current first.
    pub fn signing(&self, now: Timestamp) -> Vec<&str> {
        let mut keys = vec![self.current.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous, self.previous_until)
            && now < until
        {
            keys.push(previous);
        }
        keys
    }
}

/// The key inside a Standard Webhooks secret (`whsec_` + base64); `None`
/// when malformed.
pub fn whsec_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|key| (1..=64).contains(&key.len()))
}

/// A Standard Webhooks secret for `key` (random bytes, chosen by the caller).
pub fn whsec_encode(key: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// How an endpoint is doing, kept by the store from the attempts it records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub last_success_at: Option<Timestamp>,
    /// The first failure since the last success.
    pub failing_since: Option<Timestamp>,
    pub failure_streak: u64,
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
}

impl Health {
    /// Folds in one attempt's outcome.
    pub fn record(&mut self, succeeded: bool, at: Timestamp) {
        if succeeded {
            self.last_success_at = self.last_success_at.max(Some(at));
            self.failing_since = None;
            self.failure_streak = 0;
        } else {
            self.failure_streak += 1;
            self.failing_since.get_or_insert(at);
        }
    }

    /// Disables for `reason`, or enables (`None`), which also forgets the
    /// failure streak. True when that changed anything.
    pub fn set_disabled(&mut self, reason: Option<String>, now: Timestamp) -> bool {
        match reason {
            Some(_) if self.disabled_at.is_some() => false,
            Some(reason) => {
                self.disabled_at = Some(now);
                self.disabled_reason = Some(reason);
                true
            }
            None => {
                let was = self.disabled_at.take().is_some();
                self.disabled_reason = None;
                self.failing_since = None;
                self.failure_streak = 0;
                was
            }
        }
    }

    /// Whether an enabled endpoint has failed without a success for
    /// `disable_after_ms`.
    pub fn failing_too_long(&self, disable_after_ms: u64, now: Timestamp) -> bool {
        self.disabled_at.is_none()
            && self
                .failing_since
                .is_some_and(|since| now.millis_since(since) >= disable_after_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EndpointSpec {
        serde_json::from_str(r#"{"url":"https://example.com/hook"}"#).unwrap()
    }

    #[test]
    fn defaults_and_bounds() {
        let name = EndpointName::new("orders").unwrap();
        let s = spec();
        s.check(&name).unwrap();
        assert_eq!(s.retry_schedule().len(), 8);
        assert_eq!(s.timeout_ms(), 15_000);
        for bad in [
            r#"{"url":"ftp://x"}"#,
            r#"{"url":"https://x","headers":{"webhook-id":"1"}}"#,
            r#"{"url":"https://x","headers":{"x-a":"a\nb"}}"#,
            r#"{"url":"https://x","retry_schedule_ms":[]}"#,
            r#"{"url":"https://x","max_in_flight":0}"#,
            r#"{"url":"https://x","timeout_ms":1}"#,
        ] {
            let s: EndpointSpec = serde_json::from_str(bad).unwrap();
            assert!(s.check(&name).is_err(), "{bad}");
        }
        let long = EndpointName::new(&"e".repeat(128)).unwrap();
        assert!(spec().check(&long).is_err());
    }

    #[test]
    fn schedule_is_spent_after_its_length_and_jitters_by_a_tenth() {
        let s: EndpointSpec =
            serde_json::from_str(r#"{"url":"https://x","retry_schedule_ms":[0,1000,2000]}"#)
                .unwrap();
        assert_eq!(s.retry_delay_ms(1, 0.5), Some(1000));
        assert_eq!(s.retry_delay_ms(2, 0.0), Some(1800));
        assert_eq!(s.retry_delay_ms(2, 1.0), Some(2200));
        assert_eq!(s.retry_delay_ms(3, 0.5), None);
    }

    #[test]
    fn rotation_signs_with_both_for_a_day() {
        let now = Timestamp::from_millis(1_000_000);
        let secrets = Secrets::new("whsec_YQ==".into()).rotated("whsec_Yg==".into(), now);
        assert_eq!(secrets.signing(now), vec!["whsec_Yg==", "whsec_YQ=="]);
        let later = now.plus_ms(ROTATION_OVERLAP_MS);
        assert_eq!(secrets.signing(later), vec!["whsec_Yg=="]);
        assert_eq!(whsec_key(&whsec_encode(b"key")).unwrap(), b"key");
        assert!(whsec_key("nope").is_none());
    }

    #[test]
    fn health_counts_failures_since_the_last_success() {
        let mut h = Health::default();
        h.record(false, Timestamp::from_millis(10));
        h.record(false, Timestamp::from_millis(20));
        assert_eq!(
            (h.failure_streak, h.failing_since),
            (2, Some(Timestamp::from_millis(10)))
        );
        assert!(h.failing_too_long(100, Timestamp::from_millis(110)));
        assert!(!h.failing_too_long(100, Timestamp::from_millis(109)));
        h.record(true, Timestamp::from_millis(30));
        assert_eq!((h.failure_streak, h.failing_since), (0, None));
        assert_eq!(h.last_success_at, Some(Timestamp::from_millis(30)));
    }

    #[test]
    fn queues_name_their_endpoint() {
        let ns = Namespace::new("acme").unwrap();
        let name = EndpointName::new("crm").unwrap();
        let queue = endpoint_queue(&ns, &name).unwrap();
        assert_eq!(queue.queue.as_str(), "keel.push.crm");
        assert_eq!(queue_endpoint(&queue.queue), Some(name));
        assert_eq!(queue_endpoint(&QueueName::new("emails").unwrap()), None);
    }
}
