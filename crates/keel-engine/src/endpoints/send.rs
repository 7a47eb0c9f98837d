//! One push: a POST in the Standard Webhooks format (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature` with a `v1,` HMAC-SHA256 of
//! `id.timestamp.body` per signing secret), and what came back, read up to
//! a bound and classified.

use std::time::{Duration, Instant};

use base64::Engine as _;
use keel_core::endpoint::{EndpointSpec, Secrets, whsec_key};
use keel_core::{Timestamp, TraceParent};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::outbound::{describe, read_bounded};

/// The most of an answer kept (a push queue job's result).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// The most of an answer the attempts log and a job's errors keep.
const EXCERPT_BYTES: usize = 256;
/// The longest `Retry-After` honoured: a day.
const MAX_RETRY_AFTER_MS: u64 = 24 * 3_600_000;

/// What one push came to.
#[derive(Debug)]
pub struct Answer {
    /// None when no answer came (refused, timeout, connection error).
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub body: Vec<u8>,
    /// `Retry-After` of a 429 or a 503, in ms.
    pub retry_after_ms: Option<u64>,
    pub error: Option<String>,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }

    /// The first bytes of the body, as text.
    pub fn excerpt(&self) -> Option<String> {
        if self.body.is_empty() {
            return None;
        }
        let mut end = self.body.len().min(EXCERPT_BYTES);
        while end > 0 && std::str::from_utf8(&self.body[..end]).is_err() {
            end -= 1;
        }
        Some(String::from_utf8_lossy(&self.body[..end]).into_owned())
    }

    /// What a failed attempt says in a job's `errors[]`: status, latency
    /// and the first bytes of the body, or the error.
    pub fn describe(&self) -> String {
        match (&self.error, self.status) {
            (Some(e), _) => format!("{e} after {} ms", self.latency_ms),
            (None, Some(s)) => format!(
                "HTTP {s} after {} ms: {}",
                self.latency_ms,
                self.excerpt().unwrap_or_default()
            ),
            (None, None) => "no answer".to_owned(),
        }
    }
}

/// The `webhook-signature` value: one `v1,<base64>` per secret, space apart.
pub fn signature(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(id.len() + body.len() + 24);
    signed.extend_from_slice(format!("{id}.{timestamp}.").as_bytes());
    signed.extend_from_slice(body);
    secrets
        .iter()
        .filter_map(|s| whsec_key(s))
        .map(|key| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            let tag = ring::hmac::sign(&key, &signed);
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// POSTs `body` (JSON) to the endpoint as message `id`, signed at `now`,
/// in the trace the message was published in (`traceparent`), if any.
pub async fn push(
    client: &reqwest::Client,
    spec: &EndpointSpec,
    secrets: &Secrets,
    (id, traceparent): (&str, Option<&TraceParent>),
    body: &[u8],
    now: Timestamp,
) -> Answer {
    let timestamp = now.as_millis().div_euclid(1000);
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            headers.insert(k, v);
        }
    }
    let signature = signature(&secrets.signing(now), id, timestamp, body);
    for (k, v) in [
        ("content-type", "application/json"),
        ("webhook-id", id),
        ("webhook-timestamp", &timestamp.to_string()),
        ("webhook-signature", &signature),
        ("traceparent", traceparent.map_or("", TraceParent::as_str)),
    ] {
        if v.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::try_from(v) {
            headers.insert(k, v);
        }
    }
    let started = Instant::now();
    let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
    let sent = client
        .post(&spec.url)
        .headers(headers)
        .timeout(Duration::from_millis(spec.timeout_ms()))
        .body(body.to_vec())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return Answer {
                status: None,
                latency_ms: elapsed(started),
                body: Vec::new(),
                retry_after_ms: None,
                error: Some(describe(&e)),
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after_ms = matches!(status, 429 | 503)
        .then(|| retry_after(response.headers()))
        .flatten();
    let (body, error) = match read_bounded(response, MAX_ANSWER_BYTES).await {
        Ok((body, _)) => (body, None),
        Err(e) => (Vec::new(), Some(describe(&e))),
    };
    Answer {
        status: Some(status),
        latency_ms: elapsed(started),
        body,
        retry_after_ms,
        error,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not honoured: the
/// schedule applies), bounded.
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries: this secret, id, timestamp and body sign to this.
    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotating_signs_with_each_secret() {
        let sig = signature(&["whsec_YQ==", "whsec_Yg=="], "m", 1, b"{}");
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn retry_after_is_seconds_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(7000));
        h.insert("retry-after", HeaderValue::from_static("99999999"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER_MS));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
