//! When a certificate expires: its `notAfter`, read from the DER of an
//! X.509 certificate by walking the few TLVs in front of it (the TBS
//! certificate's version, serial number, signature algorithm and issuer).
//! Only what a TLS probe needs; a certificate that does not read is `None`.

use chrono::NaiveDate;

use crate::Timestamp;

/// One DER element: its tag, its contents, and what follows it.
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The certificate's `notAfter`.
pub fn not_after(der: &[u8]) -> Option<Timestamp> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version, when present.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let after = element(validity)?.2;
    let (tag, time, _) = element(after)?;
    time_of(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`).
fn time_of(tag: u8, text: &str) -> Option<Timestamp> {
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i32 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let part = |i: usize| rest.get(i..i + 2)?.parse::<u32>().ok();
    let at = NaiveDate::from_ymd_opt(year, part(0)?, part(2)?)?.and_hms_opt(
        part(4)?,
        part(6)?,
        part(8)?,
    )?;
    Some(Timestamp::from_millis(at.and_utc().timestamp_millis()))
}

/// Whole days from `now` until `expires` (negative once expired).
pub fn days_left(expires: Timestamp, now: Timestamp) -> i64 {
    (expires.as_millis() - now.as_millis()).div_euclid(24 * 3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(hex: &[&str]) -> Vec<u8> {
        let hex: String = hex.concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_default())
            .collect()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap_or_default()
    }

    /// `openssl req -x509 -newkey ec -days 10`: notAfter as UTCTime.
    const SHORT: &[&str] = &[
        "3082017d30820123a00302010202147717930e155faa118c39136fef39622250a327a1300a06082a8648ce3d",
        "04030230143112301006035504030c096b65656c2e74657374301e170d3236313230373132343432315a170d",
        "3236313231373132343432315a30143112301006035504030c096b65656c2e746573743059301306072a8648",
        "ce3d020106082a8648ce3d03010703420004df3e80081b75f677ed96a2268405693fee54c78b4bc66cb2c550",
        "cd8c37d6aa3938e59fc944e878744f77e2ba7be9d2c99c3b1044bf362762f89354b54cedf2a5a3533051301d",
        "0603551d0e04160414aa5e638ce45080e089047ec7b2c7447d96f3c38d301f0603551d23041830168014aa5e",
        "638ce45080e089047ec7b2c7447d96f3c38d300f0603551d130101ff040530030101ff300a06082a8648ce3d",
        "040302034800304502205ef7a3637a76490eb2843aa7c8af186635053d0ca9dd76b639e16121c0a9a79a0221",
        "008763a25906a3899d58c86c92e6a1133f2822ac42484f14c30c3ed9be54b0a4e7",
    ];
    /// The same with `-days 10000`: notAfter past 2049, as GeneralizedTime.
    const LONG: &[&str] = &[
        "3082017f30820125a0030201020214601c5e38171d594a666482f01c19afae4d21f131300a06082a8648ce3d",
        "04030230143112301006035504030c096b65656c2e746573743020170d3236313230373132343432345a180f",
        "32303534303432343132343432345a30143112301006035504030c096b65656c2e746573743059301306072a",
        "8648ce3d020106082a8648ce3d030107034200047ee64bc3d484356674e7dbd51cdfdfd23555776c9ad043ea",
        "d1cd93903d947590df70b0a97b808ec50f5574fe0a844d9854504eeda463c18c4f75953fc8172d26a3533051",
        "301d0603551d0e041604145a4fcdccfc77949afbb999fa6a694bdf7ff638a8301f0603551d23041830168014",
        "5a4fcdccfc77949afbb999fa6a694bdf7ff638a8300f0603551d130101ff040530030101ff300a06082a8648",
        "ce3d040302034800304502205c4f7c2687480f7f5f8915da659552161e60505ac374d5cf623b8353c8a500b6",
        "022100d194cb595498a1fa074b6520707a8abc262f0654ab7676ff92a5c5019e2ecfad",
    ];

    #[test]
    fn not_after_is_read_from_utc_and_generalized_times() {
        assert_eq!(not_after(&der(SHORT)), Some(at("2026-12-17T12:44:21Z")));
        assert_eq!(not_after(&der(LONG)), Some(at("2054-04-24T12:44:24Z")));
    }

    #[test]
    fn what_does_not_read_is_none() {
        let short = der(SHORT);
        assert_eq!(not_after(&short[..40]), None);
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn days_left_counts_whole_days() {
        let expires = at("2026-12-17T12:00:00Z");
        assert_eq!(days_left(expires, at("2026-12-07T12:00:00Z")), 10);
        assert_eq!(days_left(expires, at("2026-12-07T12:00:01Z")), 9);
        assert_eq!(days_left(expires, at("2026-12-18T12:00:00Z")), -1);
    }
}
