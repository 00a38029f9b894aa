//! Free-form values (driver `config`, template options) and durations.
//!
//! Driver config is a schemaless map in Nomad's API. `serde_json::Value` would do for JSON
//! but not for postcard, which is not self-describing, so [`FreeValue`] serialises as plain
//! JSON for human-readable formats and as a tagged enum for binary ones.

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A duration in integer nanoseconds: the unit Nomad's JSON uses for every duration.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct DurationNs(pub i64);

impl DurationNs {
    pub const ZERO: DurationNs = DurationNs(0);
    const NS_PER_MS: i64 = 1_000_000;
    const NS_PER_SEC: i64 = 1_000_000_000;

    pub const fn from_secs(secs: i64) -> DurationNs {
        DurationNs(secs * Self::NS_PER_SEC)
    }

    pub const fn from_mins(mins: i64) -> DurationNs {
        DurationNs::from_secs(mins * 60)
    }

    pub const fn from_hours(hours: i64) -> DurationNs {
        DurationNs::from_mins(hours * 60)
    }

    pub const fn from_millis(ms: i64) -> DurationNs {
        DurationNs(ms * Self::NS_PER_MS)
    }

    /// Whole milliseconds, rounding toward zero; negative durations clamp to zero.
    pub const fn as_millis(self) -> u64 {
        if self.0 < 0 { 0 } else { (self.0 / Self::NS_PER_MS) as u64 }
    }
}

impl fmt::Display for DurationNs {
    /// Go's `time.Duration` style, which is what Nomad prints: `1h30m0s`, `5s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns == 0 {
            return f.write_str("0s");
        }
        let sign = if ns < 0 { "-" } else { "" };
        let abs = ns.unsigned_abs();
        if abs < 1_000 {
            return write!(f, "{sign}{abs}ns");
        }
        if abs < 1_000_000 {
            return write!(f, "{sign}{}µs", trim_fraction(abs, 1_000));
        }
        if abs < 1_000_000_000 {
            return write!(f, "{sign}{}ms", trim_fraction(abs, 1_000_000));
        }
        let total_secs = abs / 1_000_000_000;
        let (hours, mins) = (total_secs / 3600, (total_secs % 3600) / 60);
        let secs = trim_fraction(abs % 60_000_000_000, 1_000_000_000);
        if hours > 0 {
            write!(f, "{sign}{hours}h{mins}m{secs}s")
        } else if mins > 0 {
            write!(f, "{sign}{mins}m{secs}s")
        } else {
            write!(f, "{sign}{secs}s")
        }
    }
}

/// A Go duration's text (`"200ms"`, `"1m30s"`, `time.ParseDuration`'s form) in whole
/// milliseconds; a negative one is refused, as no wait or threshold an operator sets can be.
pub fn go_duration_ms(text: &str) -> Result<u64, String> {
    let ns = crate::jobspec::parse_duration(text)?;
    if ns < 0 {
        return Err("a duration cannot be negative".to_owned());
    }
    Ok(DurationNs(ns).as_millis())
}

/// Whole milliseconds as Go prints a duration (`time.Duration.String`): `200ms`, `1.5s`,
/// `1m30s`, `2h0m0s`, `0s`.
pub fn go_duration_text(ms: u64) -> String {
    let ns = i64::try_from(ms).unwrap_or(i64::MAX).saturating_mul(DurationNs::NS_PER_MS);
    DurationNs(ns).to_string()
}

/// `value / unit` with its fraction, trailing zeros dropped: 1_500_000 / 1_000_000 → "1.5".
fn trim_fraction(value: u64, unit: u64) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A schemaless value, as found in driver `config` blocks.
#[derive(Clone, Debug, PartialEq)]
pub enum FreeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<FreeValue>),
    Map(BTreeMap<String, FreeValue>),
}

impl FreeValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FreeValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn from_json(value: &serde_json::Value) -> FreeValue {
        use serde_json::Value as J;
        match value {
            J::Null => FreeValue::Null,
            J::Bool(b) => FreeValue::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => FreeValue::Int(i),
                None => FreeValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            J::String(s) => FreeValue::String(s.clone()),
            J::Array(items) => FreeValue::List(items.iter().map(FreeValue::from_json).collect()),
            J::Object(map) => FreeValue::Map(
                map.iter().map(|(k, v)| (k.clone(), FreeValue::from_json(v))).collect(),
            ),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            FreeValue::Null => J::Null,
            FreeValue::Bool(b) => J::Bool(*b),
            FreeValue::Int(i) => J::from(*i),
            FreeValue::Float(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
            FreeValue::String(s) => J::String(s.clone()),
            FreeValue::List(items) => J::Array(items.iter().map(FreeValue::to_json).collect()),
            FreeValue::Map(map) => {
                J::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// The binary form: an externally tagged enum that postcard can encode.
#[derive(Serialize, Deserialize)]
enum Tagged {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<FreeValue>),
    Map(BTreeMap<String, FreeValue>),
}

impl Serialize for FreeValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            let tagged = match self.clone() {
                FreeValue::Null => Tagged::Null,
                FreeValue::Bool(b) => Tagged::Bool(b),
                FreeValue::Int(i) => Tagged::Int(i),
                FreeValue::Float(x) => Tagged::Float(x),
                FreeValue::String(s) => Tagged::String(s),
                FreeValue::List(l) => Tagged::List(l),
                FreeValue::Map(m) => Tagged::Map(m),
            };
            return tagged.serialize(serializer);
        }
        match self {
            FreeValue::Null => serializer.serialize_none(),
            FreeValue::Bool(b) => serializer.serialize_bool(*b),
            FreeValue::Int(i) => serializer.serialize_i64(*i),
            FreeValue::Float(x) => serializer.serialize_f64(*x),
            FreeValue::String(s) => serializer.serialize_str(s),
            FreeValue::List(l) => l.serialize(serializer),
            FreeValue::Map(m) => m.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for FreeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return Ok(match Tagged::deserialize(deserializer)? {
                Tagged::Null => FreeValue::Null,
                Tagged::Bool(b) => FreeValue::Bool(b),
                Tagged::Int(i) => FreeValue::Int(i),
                Tagged::Float(x) => FreeValue::Float(x),
                Tagged::String(s) => FreeValue::String(s),
                Tagged::List(l) => FreeValue::List(l),
                Tagged::Map(m) => FreeValue::Map(m),
            });
        }
        deserializer.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = FreeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<FreeValue, E> {
        Ok(FreeValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<FreeValue, E> {
        Ok(FreeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<FreeValue, D::Error> {
        FreeValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<FreeValue, E> {
        Ok(FreeValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FreeValue, E> {
        Ok(FreeValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FreeValue, E> {
        Ok(i64::try_from(v).map_or(FreeValue::Float(v as f64), FreeValue::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<FreeValue, E> {
        Ok(FreeValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<FreeValue, E> {
        Ok(FreeValue::String(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FreeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(FreeValue::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FreeValue, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, FreeValue>()? {
            out.insert(k, v);
        }
        Ok(FreeValue::Map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_read_and_print_as_go_does() {
        let ms = [0, 1, 200, 1_000, 1_500, 10_000, 90_000, 7_200_000, 3_723_004];
        let printed: Vec<String> = ms.map(go_duration_text).to_vec();
        assert_eq!(
            printed,
            ["0s", "1ms", "200ms", "1s", "1.5s", "10s", "1m30s", "2h0m0s", "1h2m3.004s"]
        );
        let read: Vec<Result<u64, String>> = printed.iter().map(|t| go_duration_ms(t)).collect();
        assert_eq!(read, ms.map(Ok));
        assert_eq!(go_duration_ms("1.5ms"), Ok(1), "whole milliseconds");
        assert_eq!(go_duration_ms("-1s"), Err("a duration cannot be negative".to_owned()));
        assert_eq!(go_duration_ms("soon"), Err("expected a number".to_owned()));
    }
}
