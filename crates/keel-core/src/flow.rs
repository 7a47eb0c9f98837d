//! Flow control arithmetic: a queue's rate limit as a GCRA (generic cell
//! rate algorithm). One number of state per queue, the theoretical arrival
//! time (TAT), decides how many jobs may be leased now and when the next
//! may: the stores keep that number (in the database on PostgreSQL, so the
//! limit holds across nodes) and this module does the sums. The same holds
//! per flow key ([`FlowKey`]: where a job's key comes from), and [`fair`]
//! shares a queue between its keys.

pub mod fair;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Timestamp};

/// Where a queue's jobs take their flow key from: a tag's value
/// (`"tag:tenant"`) or the job's `ordering_key`. A job without one has the
/// key `""`.
#[derive(Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub enum FlowKey {
    Tag(String),
    OrderingKey,
}

impl FlowKey {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.strip_prefix("tag:") {
            Some(tag) if !tag.is_empty() && tag.len() <= 256 => Ok(FlowKey::Tag(tag.to_owned())),
            None if text == "ordering_key" => Ok(FlowKey::OrderingKey),
            _ => Err(Error::invalid(
                "key must be \"tag:NAME\" or \"ordering_key\"",
            )),
        }
    }

    /// A job's key: the tag's value or its ordering key, else `""`.
    pub fn of(&self, tags: &BTreeMap<String, String>, ordering_key: Option<&str>) -> String {
        match self {
            FlowKey::Tag(tag) => tags.get(tag).cloned().unwrap_or_default(),
            FlowKey::OrderingKey => ordering_key.unwrap_or_default().to_owned(),
        }
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowKey::Tag(tag) => write!(f, "tag:{tag}"),
            FlowKey::OrderingKey => f.write_str("ordering_key"),
        }
    }
}

impl Serialize for FlowKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FlowKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        FlowKey::parse(&text).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// The longest period a rate may be given over: a day.
pub const MAX_PERIOD_MS: u64 = 24 * 3_600_000;

/// `limit` jobs leased per `period_ms`, at most `burst` at once (default:
/// `limit`, a whole period's jobs at once, as a fixed window allows; 1
/// spaces them evenly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub limit: u32,
    pub period_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// What a lease may take under a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Take {
    /// Jobs that may be leased now (at most what was asked).
    pub granted: u32,
    /// When the next job may be leased, if none more may now.
    pub next_at: Option<Timestamp>,
}

impl Rate {
    /// Refuses a rate no GCRA can keep; `field` names it in the message
    /// (`rate_limit`, `key_rate_limit`).
    pub fn check(&self, field: &str) -> Result<(), Error> {
        if self.limit == 0 {
            return Err(Error::invalid(format!("{field}.limit must be at least 1")));
        }
        if !(1..=MAX_PERIOD_MS).contains(&self.period_ms) {
            return Err(Error::invalid(format!(
                "{field}.period_ms must be between 1 and {MAX_PERIOD_MS}"
            )));
        }
        if self.burst == Some(0) {
            return Err(Error::invalid(format!("{field}.burst must be at least 1")));
        }
        Ok(())
    }

    /// Microseconds between two jobs at the steady rate.
    fn interval_us(&self) -> i64 {
        (self.period_ms as i64 * 1000 / i64::from(self.limit.max(1))).max(1)
    }

    fn burst(&self) -> i64 {
        i64::from(self.burst.unwrap_or(self.limit).max(1))
    }

    /// How many of `want` jobs may be leased at `now` given the stored TAT
    /// (microseconds since the epoch; 0 for a queue never leased from).
    pub fn allowed(&self, tat_us: i64, now: Timestamp, want: u32) -> Take {
        let t = self.interval_us();
        let now_us = now.as_millis() * 1000;
        let from = tat_us.max(now_us);
        let room = (now_us + self.burst() * t - from) / t;
        let granted = u32::try_from(room.clamp(0, i64::from(want))).unwrap_or(0);
        let next_at = (granted < want).then(|| {
            let at_us = from + (i64::from(granted) + 1 - self.burst()) * t;
            // Round up: a wake-up a little late finds the slot open.
            Timestamp::from_millis((at_us + 999).div_euclid(1000))
        });
        Take { granted, next_at }
    }

    /// The TAT of a rate whose whole burst was spent at `now`: what a
    /// store must assume when it cannot know what was leased just before it
    /// restarted. The next slot is one interval later, so the limit holds
    /// across the restart; the price is the burst.
    pub fn spent(&self, now: Timestamp) -> i64 {
        now.as_millis() * 1000 + self.burst() * self.interval_us()
    }

    /// The TAT after `n` jobs were leased at `now`.
    pub fn after(&self, tat_us: i64, now: Timestamp, n: u32) -> i64 {
        tat_us.max(now.as_millis() * 1000) + i64::from(n) * self.interval_us()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rate(limit: u32, period_ms: u64, burst: Option<u32>) -> Rate {
        Rate {
            limit,
            period_ms,
            burst,
        }
    }

    #[test]
    fn a_whole_period_at_once_by_default() {
        let r = rate(10, 1000, None);
        let t0 = Timestamp::from_millis(1_000_000);
        assert_eq!(r.allowed(0, t0, 50).granted, 10);
        let tat = r.after(0, t0, 10);
        assert_eq!(r.allowed(tat, t0.plus_ms(99), 5).granted, 0);
        assert_eq!(r.allowed(tat, t0.plus_ms(100), 5).granted, 1);
    }

    #[test]
    fn evenly_spaced_with_a_burst_of_one() {
        let r = rate(10, 1000, Some(1));
        let t0 = Timestamp::from_millis(1_000_000);
        let take = r.allowed(0, t0, 5);
        assert_eq!(take.granted, 1);
        assert_eq!(take.next_at, Some(t0.plus_ms(100)));
        let tat = r.after(0, t0, 1);
        assert_eq!(r.allowed(tat, t0.plus_ms(99), 5).granted, 0);
        assert_eq!(r.allowed(tat, t0.plus_ms(100), 5).granted, 1);
    }

    #[test]
    fn a_burst_at_once_then_the_rate() {
        let r = rate(10, 1000, Some(5));
        let t0 = Timestamp::from_millis(1_000_000);
        let take = r.allowed(0, t0, 8);
        assert_eq!(take.granted, 5);
        let tat = r.after(0, t0, 5);
        assert_eq!(r.allowed(tat, t0, 8).granted, 0);
        assert_eq!(r.allowed(tat, t0.plus_ms(100), 8).granted, 1);
        // Idle for a long time: the burst again, never more.
        assert_eq!(r.allowed(tat, t0.plus_ms(60_000), 8).granted, 5);
    }

    proptest! {
        /// Whatever the pattern of lease calls, no window of one period
        /// holds more than limit + burst leases, and a steady asker gets
        /// the rate within one job per period.
        #[test]
        fn never_over_the_rate(
            limit in 1u32..50,
            burst in 1u32..10,
            steps in proptest::collection::vec((0u64..200, 1u32..20), 1..200),
        ) {
            let r = rate(limit, 1000, Some(burst));
            let mut tat = 0;
            let mut now = Timestamp::from_millis(10_000_000);
            let mut leases: Vec<i64> = Vec::new();
            for (dt, want) in steps {
                now = now.plus_ms(dt);
                let take = r.allowed(tat, now, want);
                prop_assert!(take.granted <= want);
                if take.granted < want {
                    let next = take.next_at.unwrap_or(now);
                    prop_assert!(next > now || take.granted > 0);
                    prop_assert!(r.allowed(tat, next, 1).granted >= 1 || take.granted > 0);
                }
                tat = r.after(tat, now, take.granted);
                leases.extend(std::iter::repeat_n(now.as_millis(), take.granted as usize));
            }
            for (i, &start) in leases.iter().enumerate() {
                let inside = leases[i..].iter().take_while(|&&t| t < start + 1000).count();
                prop_assert!(inside as u32 <= limit + burst, "{inside} in a period");
            }
        }
    }
}
