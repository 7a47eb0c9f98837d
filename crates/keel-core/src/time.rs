//! Wall-clock instants as milliseconds since the Unix epoch, the unit of every
//! time Keel stores, compares or sends (RFC 3339 UTC on the wire).

use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// `self + ms`, saturating instead of overflowing on absurd inputs.
    pub const fn plus_ms(self, ms: u64) -> Self {
        let ms = if ms > i64::MAX as u64 {
            i64::MAX
        } else {
            ms as i64
        };
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// Parses RFC 3339 (any offset), as clients send `run_at`.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.timestamp_millis()))
    }

    /// RFC 3339 in UTC with milliseconds: `2023-11-14T22:13:20.123Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    /// The RFC 3339 text of a time in years 0 to 9999, written digit by
    /// digit: every journal write and every answer carries many times, and
    /// chrono's general formatter was a tenth of a run's serialization.
    fn rfc3339_digits(self) -> Option<[u8; 24]> {
        let t = DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default();
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        put(20, 3, t.timestamp_subsec_millis());
        Some(out)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339_digits() {
            // ASCII digits and separators only.
            Some(digits) => f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?),
            None => f.write_str(
                &DateTime::<Utc>::from_timestamp_millis(self.0)
                    .unwrap_or_default()
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_keeps_milliseconds() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }

    fn chrono_rfc3339(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    proptest::proptest! {
        #[test]
        fn written_digits_match_chrono(ms in -70_000_000_000_000i64..260_000_000_000_000) {
            proptest::prop_assert_eq!(Timestamp::from_millis(ms).to_rfc3339(), chrono_rfc3339(ms));
        }

        #[test]
        fn any_instant_matches_chrono(ms: i64) {
            proptest::prop_assert_eq!(Timestamp::from_millis(ms).to_rfc3339(), chrono_rfc3339(ms));
        }
    }

    #[test]
    fn edges_of_four_digit_years_match_chrono() {
        // 0000-01-01, the epoch and just before it, 9999-12-31 and just after.
        for ms in [
            -62_167_219_200_000,
            -1,
            0,
            253_402_300_799_999,
            253_402_300_800_000,
        ] {
            assert_eq!(Timestamp::from_millis(ms).to_rfc3339(), chrono_rfc3339(ms));
        }
        assert_eq!(
            Timestamp::from_millis(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999Z"
        );
        let json = serde_json::to_string(&Timestamp::from_millis(1_700_000_000_123)).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
    }

    #[test]
    fn parses_offsets_into_utc() {
        let t = Timestamp::parse_rfc3339("2026-01-01T02:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(
            Timestamp::from_millis(i64::MAX - 1)
                .plus_ms(u64::MAX)
                .as_millis(),
            i64::MAX
        );
        assert_eq!(
            Timestamp::from_millis(5).millis_since(Timestamp::from_millis(9)),
            0
        );
    }
}
