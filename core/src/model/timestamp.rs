//! Wall-clock timestamps as the API objects carry them.
//!
//! Allocations, evaluations, nodes and deployments stamp Go `time.Time` fields. Core never
//! reads a clock, so a [`Timestamp`] is always a value the leader stamped into a log entry.

use super::value::DurationNs;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A wall-clock instant as Unix nanoseconds, stamped by the leader.
///
/// The JSON form is Go's `time.Time` form (RFC 3339 with nanoseconds, `Z`), so API clients
/// read it as they read Nomad's; the binary form is the plain `i64`. Zero is Go's zero time
/// (`0001-01-01T00:00:00Z`), which Nomad uses for "not set".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Timestamp {
    pub const UNSET: Timestamp = Timestamp(0);

    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    pub const fn is_unset(self) -> bool {
        self.0 == 0
    }

    /// `self + duration`, saturating; an unset timestamp stays unset.
    pub fn plus(self, duration: DurationNs) -> Timestamp {
        if self.is_unset() { self } else { Timestamp(self.0.saturating_add(duration.0)) }
    }

    /// RFC 3339 in UTC with trailing zeros of the fraction dropped, as Go's `RFC3339Nano`.
    pub fn to_rfc3339(self) -> String {
        if self.is_unset() {
            return GO_ZERO_TIME.to_owned();
        }
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
        let second_of_day = secs.rem_euclid(SECS_PER_DAY);
        let (hour, minute, second) =
            (second_of_day / 3600, (second_of_day % 3600) / 60, second_of_day % 60);
        let fraction = if nanos == 0 {
            String::new()
        } else {
            format!(".{nanos:09}").trim_end_matches('0').to_owned()
        };
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        if text == GO_ZERO_TIME {
            return Ok(Timestamp::UNSET);
        }
        let fields = Rfc3339::parse(text.as_bytes())
            .ok_or_else(|| format!("{text:?} is not an RFC 3339 timestamp"))?;
        fields.unix_nanos().map(Timestamp).ok_or_else(|| {
            format!("{text:?} is outside the representable range (years 1678 to 2261)")
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The fields of an RFC 3339 timestamp, checked for range but not yet combined.
struct Rfc3339 {
    year: i64,
    month: u32,
    day: u32,
    second_of_day: i64,
    nanos: i64,
    offset_secs: i64,
}

impl Rfc3339 {
    fn parse(bytes: &[u8]) -> Option<Rfc3339> {
        let mut cursor = Cursor { bytes, at: 0 };
        let year = cursor.digits(4)?;
        cursor.expect(b"-")?;
        let month = cursor.digits(2)?;
        cursor.expect(b"-")?;
        let day = cursor.digits(2)?;
        cursor.expect(b"Tt")?;
        let hour = cursor.digits(2)?;
        cursor.expect(b":")?;
        let minute = cursor.digits(2)?;
        cursor.expect(b":")?;
        let second = cursor.digits(2)?;
        let nanos = cursor.fraction()?;
        let offset_secs = cursor.offset()?;
        let valid = cursor.at == bytes.len()
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month as u32)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(Rfc3339 {
            year,
            month: month as u32,
            day: day as u32,
            second_of_day: hour * 3600 + minute * 60 + second,
            nanos,
            offset_secs,
        })
    }

    fn unix_nanos(&self) -> Option<i64> {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * SECS_PER_DAY + self.second_of_day - self.offset_secs;
        // i128: the floor second of i64::MIN nanoseconds is itself out of i64 nanoseconds.
        let nanos = i128::from(secs) * i128::from(NANOS_PER_SEC) + i128::from(self.nanos);
        i64::try_from(nanos).ok()
    }
}

/// A forward-only reader over ASCII bytes; every method returns `None` on a mismatch.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, count: usize) -> Option<i64> {
        let slice = self.bytes.get(self.at..self.at + count)?;
        let mut value = 0i64;
        for &byte in slice {
            value = value * 10 + i64::from(char::from(byte).to_digit(10)?);
        }
        self.at += count;
        Some(value)
    }

    /// Consumes one byte if it is one of `choices`.
    fn expect(&mut self, choices: &[u8]) -> Option<()> {
        let byte = *self.bytes.get(self.at)?;
        choices.contains(&byte).then(|| self.at += 1)
    }

    /// An optional `.ddd…` fraction in nanoseconds; digits past the ninth are dropped.
    fn fraction(&mut self) -> Option<i64> {
        if self.expect(b".").is_none() {
            return Some(0);
        }
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        if digits.is_empty() {
            return None;
        }
        let mut nanos = 0i64;
        for position in 0..9 {
            let digit = digits.get(position).map_or(0, |d| i64::from(d - b'0'));
            nanos = nanos * 10 + digit;
        }
        Some(nanos)
    }

    /// `Z`, or `+HH:MM` / `-HH:MM`, in seconds east of UTC.
    fn offset(&mut self) -> Option<i64> {
        if self.expect(b"Zz").is_some() {
            return Some(0);
        }
        let sign = if self.expect(b"+").is_some() {
            1
        } else {
            self.expect(b"-")?;
            -1
        };
        let hours = self.digits(2)?;
        self.expect(b":")?;
        let minutes = self.digits(2)?;
        (hours < 24 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(crate) fn days_in_month(year: i64, month: u32) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day)
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_rfc3339())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(TimestampVisitor)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

/// Accepts an RFC 3339 string, or an integer of Unix nanoseconds (some tools write those).
struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp or integer Unix nanoseconds")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
        Timestamp::parse_rfc3339(text).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, nanos: i64) -> Result<Timestamp, E> {
        Ok(Timestamp(nanos))
    }

    fn visit_u64<E: de::Error>(self, nanos: u64) -> Result<Timestamp, E> {
        i64::try_from(nanos).map(Timestamp).map_err(|_| E::custom("timestamp out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_go_does() {
        assert_eq!(Timestamp::UNSET.to_rfc3339(), "0001-01-01T00:00:00Z");
        assert_eq!(Timestamp(1).to_rfc3339(), "1970-01-01T00:00:00.000000001Z");
        let t = Timestamp(1_700_000_000_250_000_000);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.25Z");
        assert_eq!(Timestamp(-1_000_000_000).to_rfc3339(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn timestamps_parse_offsets_and_fractions() {
        let utc = Timestamp::parse_rfc3339("2023-11-14T22:13:20.25Z").unwrap();
        assert_eq!(utc, Timestamp(1_700_000_000_250_000_000));
        let east = Timestamp::parse_rfc3339("2023-11-15T00:13:20.250000000001+02:00").unwrap();
        assert_eq!(east, utc);
        assert_eq!(Timestamp::parse_rfc3339("0001-01-01T00:00:00Z"), Ok(Timestamp::UNSET));
        for bad in ["2023-02-29T00:00:00Z", "2023-11-14 22:13:20Z", "2023-11-14T22:13:20", "x"] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::parse_rfc3339("9999-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn timestamps_round_trip_through_text() {
        for nanos in [1, -1, 951_782_400_000_000_000, 4_102_444_799_999_999_999, i64::MIN, i64::MAX]
        {
            let text = Timestamp(nanos).to_rfc3339();
            assert_eq!(Timestamp::parse_rfc3339(&text), Ok(Timestamp(nanos)), "{text}");
        }
    }
}
