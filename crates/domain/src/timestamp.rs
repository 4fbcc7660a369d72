//! Instants as Unix milliseconds, written and read as RFC 3339 (`2026-11-24T07:15:00.123Z`).
//!
//! The stock component takes "now" from one clock (the Redis server's, inside its Lua scripts) so
//! that expiry decisions agree across instances; this type only converts, parses and compares.

use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z; only instants from year 1970 to 9999 exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(String);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "must be an RFC 3339 date-time such as 2026-11-24T07:15:00Z ({})",
            self.0
        )
    }
}

impl std::error::Error for TimeError {}

const MAX_MILLIS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// Days since the epoch of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

impl Timestamp {
    pub fn from_millis(ms: i64) -> Result<Self, TimeError> {
        if !(0..=MAX_MILLIS).contains(&ms) {
            return Err(TimeError(format!("{ms} ms is out of range")));
        }
        Ok(Timestamp(ms))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Accepts `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` (`t`, `z` and a space allowed as
    /// RFC 3339 permits); digits below a millisecond are truncated.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        let bad = |why: &str| TimeError(format!("{why} in {s:?}"));
        let b = s.as_bytes();
        if b.len() < 20 || !s.is_ascii() {
            return Err(bad("too short or not ASCII"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimeError> {
            let part = &s[range];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse::<i64>().map_err(|_| bad("bad number"))
            } else {
                Err(bad("expected digits"))
            }
        };
        let sep = |i: usize, allowed: &[u8]| -> Result<(), TimeError> {
            if allowed.contains(&b[i]) {
                Ok(())
            } else {
                Err(bad("unexpected separator"))
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        sep(4, b"-")?;
        sep(7, b"-")?;
        sep(10, b"Tt ")?;
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        sep(13, b":")?;
        sep(16, b":")?;
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
            return Err(bad("no such date"));
        }
        // 60 is a leap second: RFC 3339 allows it; it counts as :59.
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad("no such time"));
        }
        let mut i = 19;
        let mut millis = 0i64;
        if b[i] == b'.' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(bad("empty fraction"));
            }
            let frac = &s[start..i.min(start + 3)];
            millis = frac.parse::<i64>().map_err(|_| bad("bad fraction"))?
                * 10i64.pow(3 - frac.len() as u32);
        }
        let offset_min = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return Err(bad("bad offset"));
                }
                let m = oh * 60 + om;
                if *sign == b'-' {
                    -m
                } else {
                    m
                }
            }
            _ => return Err(bad("expected Z or an offset")),
        };
        let secs =
            days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_min * 60;
        Self::from_millis(secs * 1000 + millis)
    }

    /// Always UTC with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        let ms = self.0.rem_euclid(1000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_504_500_123).to_rfc3339(),
            "2026-11-24T07:15:00.123Z"
        );
        assert_eq!(
            Timestamp(MAX_MILLIS).to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let t = |s| Timestamp::parse_rfc3339(s).map(|t| t.millis());
        assert_eq!(t("2026-11-24T07:15:00.123Z"), Ok(1_795_504_500_123));
        assert_eq!(t("2026-11-24T07:15:00Z"), Ok(1_795_504_500_000));
        assert_eq!(t("2026-11-24T08:15:00+01:00"), Ok(1_795_504_500_000));
        assert_eq!(
            t("2026-11-24t06:45:00.1234567-00:30"),
            Ok(1_795_504_500_123)
        );
        assert!(t("2024-02-29T00:00:00Z").is_ok());
        for bad in [
            "",
            "2026-11-24",
            "2026-11-24T07:15:00",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T07:15:00.Z",
            "2026-11-24T07:15:00+1:00",
            "1969-12-31T23:59:59Z",
            "２026-11-24T07:15:00Z",
            "2026-11-24T07:15:00ZZ",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trips(ms in 0i64..=MAX_MILLIS) {
            let t = Timestamp::from_millis(ms).unwrap();
            proptest::prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Timestamp::parse_rfc3339(&s);
        }
    }
}
