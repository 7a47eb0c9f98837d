//! Retry delays: exponential backoff with optional jitter.

use serde::{Deserialize, Serialize};

use crate::Error;

/// `delay(n) = min(max_ms, base_ms * factor^(n-1))` for the n-th failed attempt;
/// with `jitter`, a uniform pick in `[delay/2, delay]` ("equal jitter"), which
/// spreads a thundering herd of retries without ever retrying at once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
    pub factor: f64,
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1000,
            max_ms: 3_600_000,
            factor: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    pub fn validate(&self) -> Result<(), Error> {
        if !(1.0..=100.0).contains(&self.factor) {
            return Err(Error::invalid("backoff.factor must be between 1 and 100"));
        }
        if self.max_ms < self.base_ms {
            return Err(Error::invalid(
                "backoff.max_ms must be at least backoff.base_ms",
            ));
        }
        if self.max_ms > 30 * 24 * 3_600_000 {
            return Err(Error::invalid("backoff.max_ms must be at most 30 days"));
        }
        Ok(())
    }

    /// The delay after failed attempt `attempt` (1-based). `unit` is a uniform
    /// random number in `[0, 1)`, passed in to keep this function pure.
    pub fn delay_ms(&self, attempt: u32, unit: f64) -> u64 {
        let exponent = attempt.saturating_sub(1).min(1000) as i32;
        let raw = self.base_ms as f64 * self.factor.powi(exponent);
        let capped = raw.min(self.max_ms as f64);
        let delay = if self.jitter {
            capped / 2.0 + unit.clamp(0.0, 1.0) * capped / 2.0
        } else {
            capped
        };
        delay as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 1000,
            factor: 2.0,
            jitter: false,
        };
        let delays: Vec<u64> = (1..=6).map(|n| b.delay_ms(n, 0.7)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        let b = Backoff {
            jitter: true,
            ..Backoff::default()
        };
        assert_eq!(b.delay_ms(2, 0.0), 1000);
        assert_eq!(b.delay_ms(2, 0.999_999), 1999);
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        assert_eq!(Backoff::default().delay_ms(u32::MAX, 1.0), 3_600_000);
    }

    #[test]
    fn rejects_nonsense() {
        let bad = Backoff {
            factor: 0.5,
            ..Backoff::default()
        };
        assert!(bad.validate().is_err());
        let bad = Backoff {
            base_ms: 10,
            max_ms: 5,
            ..Backoff::default()
        };
        assert!(bad.validate().is_err());
    }
}
