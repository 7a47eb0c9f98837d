//! A namespace's quotas: how much of the server one tenant may hold and how
//! fast it may write. Sizes are checked by the stores where the thing is
//! created (429 `quota_exceeded`; stored bytes by the engine against the
//! store's measure), rates by a GCRA per namespace with one
//! second of burst (429 `rate_limited` with a retry time); the state of a
//! rate is one "theoretical arrival time" ([`take`]), kept by the store so
//! that every node counts against the same budget.

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode, Timestamp};

/// The quotas of one namespace; `None` is no quota of that kind (for
/// `max_jobs`: the server's `--max-namespace-jobs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Unfinished jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u64>,
    /// Jobs enqueued per second (a batch counts each job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_enqueue_per_second: Option<u32>,
    /// Events published per second (a batch counts each event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_publish_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_schedules: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<u32>,
    /// Bytes stored: job payloads and results, and event data, as sent.
    /// New jobs and events are refused past it; a completion never is (a
    /// refused one would only run the job again), but its result counts.
    /// Measured by the store every few seconds and kept up to date in
    /// between by the payloads each node admits, so across nodes a
    /// namespace may pass it by what the others admitted meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// The largest rate quota: a million a second is more than a node writes.
pub const MAX_RATE: u32 = 1_000_000;

impl Quotas {
    pub fn validate(&self) -> Result<(), Error> {
        for (name, rate) in [
            ("max_enqueue_per_second", self.max_enqueue_per_second),
            ("max_publish_per_second", self.max_publish_per_second),
        ] {
            if rate.is_some_and(|r| r == 0 || r > MAX_RATE) {
                return Err(Error::invalid(format!(
                    "{name} must be 1 to {MAX_RATE}, or absent for no quota"
                )));
            }
        }
        if self.max_jobs == Some(0) {
            return Err(Error::invalid("max_jobs must be at least 1"));
        }
        if self.max_bytes == Some(0) {
            return Err(Error::invalid("max_bytes must be at least 1"));
        }
        Ok(())
    }
}

/// The rates a namespace's quotas bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateKind {
    Enqueue,
    Publish,
}

impl RateKind {
    pub const fn quota_name(self) -> &'static str {
        match self {
            RateKind::Enqueue => "max_enqueue_per_second",
            RateKind::Publish => "max_publish_per_second",
        }
    }

    pub fn limit(self, quotas: &Quotas) -> Option<u32> {
        match self {
            RateKind::Enqueue => quotas.max_enqueue_per_second,
            RateKind::Publish => quotas.max_publish_per_second,
        }
    }
}

/// The window of burst a rate quota allows: one second's worth.
const BURST_US: i64 = 1_000_000;

/// Takes `n` from a rate of `per_second` whose theoretical arrival time is
/// `tat_us` (microseconds; `None`: unknown, as after a restart, which counts
/// the burst as spent). Returns the new arrival time to store, or 429
/// `rate_limited` with when to retry (nothing taken).
pub fn take(
    namespace: &str,
    kind: RateKind,
    per_second: u32,
    tat_us: Option<i64>,
    n: u64,
    now: Timestamp,
) -> Result<i64, Error> {
    let now_us = now.as_millis().saturating_mul(1000);
    let interval_us = (BURST_US / i64::from(per_second.max(1))).max(1);
    let tat = tat_us
        .unwrap_or_else(|| burst_spent(per_second, now))
        .max(now_us);
    let cost = i64::try_from(n)
        .unwrap_or(i64::MAX)
        .saturating_mul(interval_us);
    let next = tat.saturating_add(cost);
    if next - now_us <= BURST_US {
        return Ok(next);
    }
    let name = kind.quota_name();
    if u64::from(per_second) < n {
        return Err(Error::new(
            ErrorCode::RateLimited,
            format!(
                "{n} at once is more than namespace {namespace}'s {name} of {per_second} allows in one call"
            ),
        ));
    }
    let wait_us = next - now_us - BURST_US;
    let mut e = Error::new(
        ErrorCode::RateLimited,
        format!("namespace {namespace} is over its {name} of {per_second}"),
    );
    e.retry_after_ms = Some((wait_us as u64).div_ceil(1000));
    Err(e)
}

/// The arrival time to assume when it is unknown (after a restart): the
/// burst spent, as of `now`. A store keeps it from its first sight on, so
/// that a refused take waits it out once instead of assuming it anew.
pub fn burst_spent(per_second: u32, now: Timestamp) -> i64 {
    let interval_us = (BURST_US / i64::from(per_second.max(1))).max(1);
    now.as_millis().saturating_mul(1000) + BURST_US - interval_us
}

/// 429 `quota_exceeded` for a size quota.
pub fn exceeded(namespace: &str, quota: &str, limit: u64, would_hold: u64) -> Error {
    Error::new(
        ErrorCode::QuotaExceeded,
        format!(
            "namespace {namespace} would hold {would_hold} under quota {quota}; the quota is {limit}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_millis(1_000_000);

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(T.as_millis() + ms)
    }

    #[test]
    fn a_rate_allows_one_second_of_burst_then_its_pace() {
        let mut tat = Some(T.as_millis() * 1000);
        for _ in 0..10 {
            tat = Some(take("a", RateKind::Enqueue, 10, tat, 1, T).expect("within the burst"));
        }
        let e = take("a", RateKind::Enqueue, 10, tat, 1, T).unwrap_err();
        assert_eq!(
            (e.code, e.retry_after_ms),
            (ErrorCode::RateLimited, Some(100))
        );
        assert!(
            e.message.contains("max_enqueue_per_second of 10"),
            "{}",
            e.message
        );
        assert!(take("a", RateKind::Enqueue, 10, tat, 1, at(100)).is_ok());
        assert!(take("a", RateKind::Enqueue, 10, tat, 2, at(100)).is_err());
    }

    #[test]
    fn an_unknown_state_counts_the_burst_as_spent() {
        let first = take("a", RateKind::Publish, 10, None, 1, T).expect("one at once");
        let e = take("a", RateKind::Publish, 10, Some(first), 1, T).unwrap_err();
        assert_eq!(e.retry_after_ms, Some(100));
    }

    #[test]
    fn a_batch_larger_than_a_second_is_refused_for_good() {
        let e = take("a", RateKind::Enqueue, 10, None, 11, T).unwrap_err();
        assert_eq!((e.code, e.retry_after_ms), (ErrorCode::RateLimited, None));
    }

    #[test]
    fn quotas_refuse_zero_rates_and_unknown_fields() {
        let q: Quotas = serde_json::from_str(r#"{"max_enqueue_per_second": 0}"#).unwrap();
        assert!(q.validate().is_err());
        assert!(serde_json::from_str::<Quotas>(r#"{"max_bytez": 1}"#).is_err());
        let q: Quotas = serde_json::from_str(r#"{"max_bytes": 0}"#).unwrap();
        assert!(q.validate().is_err());
    }
}
