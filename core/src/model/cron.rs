//! Cron schedules as Nomad reads a `periodic` block's `cron`/`crons` (hashicorp/cronexpr):
//! five fields (minute, hour, day of month, month, day of week), six (a year appended) or
//! seven (seconds first, year last), or a macro (`@hourly`, `@daily`, ...).
//!
//! A schedule answers one question, [`CronSchedule::next_after`]: the first whole second
//! strictly after a given unix second that the schedule names. It reads no clock: the
//! instant comes from the caller (the leader's `now`), so the periodic dispatcher is
//! replayable. Times are UTC; drover supports no other `time_zone` (the validator says so).
//!
//! Supported in each field: `*`, `?` (day fields), numbers, names (`JAN`..`DEC`,
//! `SUN`..`SAT`, any case), ranges `a-b`, steps `*/n`, `a-b/n`, `a/n`, and lists of
//! those. cronexpr's `L`, `W` and `#` are refused with a message saying so.

use super::timestamp::{civil_from_days, days_from_civil, days_in_month};

const SECS_PER_DAY: i64 = 86_400;
/// The year range: cronexpr's starts at 1970 and ends at 2099; drover's ends at 2097, so
/// the years fit one 128-bit set.
const YEAR_MIN: i64 = 1970;
const YEAR_MAX: i64 = YEAR_MIN + 127;
/// How far ahead a search looks before it decides a schedule never fires again (a
/// schedule such as `0 0 30 2 *` names no real day).
const SEARCH_YEARS_MAX: i64 = 8;

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A parsed cron expression. Each field is a bit set of the values it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1..=31.
    days_of_month: u64,
    /// Bits 1..=12.
    months: u64,
    /// Bits 0..=6, Sunday = 0.
    days_of_week: u64,
    /// Bits 0..=127 as offsets from 1970.
    years: u128,
    /// Whether each day field was restricted (not `*` or `?`): with both restricted, a
    /// day matches either, as in Vixie cron and cronexpr.
    dom_restricted: bool,
    dow_restricted: bool,
}

struct Field {
    name: &'static str,
    min: i64,
    max: i64,
    names: &'static [&'static str],
    /// The value of the first name (months count from 1, weekdays from 0).
    names_from: i64,
}

const SECOND: Field = Field { name: "second", min: 0, max: 59, names: &[], names_from: 0 };
const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[], names_from: 0 };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[], names_from: 0 };
const DAY_OF_MONTH: Field =
    Field { name: "day of month", min: 1, max: 31, names: &[], names_from: 0 };
const MONTH: Field = Field { name: "month", min: 1, max: 12, names: &MONTHS, names_from: 1 };
// 7 is Sunday too, as in cronexpr; it is folded onto 0 after parsing.
const DAY_OF_WEEK: Field =
    Field { name: "day of week", min: 0, max: 7, names: &WEEKDAYS, names_from: 0 };
const YEAR: Field = Field { name: "year", min: YEAR_MIN, max: YEAR_MAX, names: &[], names_from: 0 };

impl CronSchedule {
    /// Parses one expression; the error says which field is wrong and why.
    pub fn parse(spec: &str) -> Result<CronSchedule, String> {
        let spec = spec.trim();
        let expanded = match spec.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 * *".to_owned(),
            "@monthly" => "0 0 0 1 * * *".to_owned(),
            "@weekly" => "0 0 0 * * 0 *".to_owned(),
            "@daily" | "@midnight" => "0 0 0 * * * *".to_owned(),
            "@hourly" => "0 0 * * * * *".to_owned(),
            other if other.starts_with('@') => return Err(format!("unknown macro {spec}")),
            _ => spec.to_owned(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 | 6 => ("0", &fields[..]),
            7 => (fields[0], &fields[1..]),
            n => return Err(format!("expected 5 to 7 fields, got {n}")),
        };
        let year = rest.get(5).copied().unwrap_or("*");
        let days_of_week = parse_field(rest[4], &DAY_OF_WEEK)?;
        let days_of_week = (days_of_week | (days_of_week >> 7)) & 0x7f;
        let mut years = 0u128;
        for value in values(year, &YEAR)? {
            years |= 1u128 << (value - YEAR_MIN);
        }
        Ok(CronSchedule {
            seconds: parse_field(second, &SECOND)?,
            minutes: parse_field(rest[0], &MINUTE)?,
            hours: parse_field(rest[1], &HOUR)?,
            days_of_month: parse_field(rest[2], &DAY_OF_MONTH)?,
            months: parse_field(rest[3], &MONTH)?,
            days_of_week,
            years,
            dom_restricted: !matches!(rest[2], "*" | "?"),
            dow_restricted: !matches!(rest[4], "*" | "?"),
        })
    }

    /// The first second strictly after `unix_secs` the schedule names, or `None` when it
    /// names none in the next [`SEARCH_YEARS_MAX`] years (or before cronexpr's last year).
    pub fn next_after(&self, unix_secs: i64) -> Option<i64> {
        let mut t = unix_secs.checked_add(1)?;
        let (start_year, _, _) = civil_from_days(t.div_euclid(SECS_PER_DAY));
        let year_limit = (start_year + SEARCH_YEARS_MAX).min(YEAR_MAX);
        // Each pass moves `t` to the start of the next unit that can match, so the loop
        // runs at most a few times per day of the searched range.
        loop {
            let days = t.div_euclid(SECS_PER_DAY);
            let second_of_day = t.rem_euclid(SECS_PER_DAY);
            let (year, month, day) = civil_from_days(days);
            if year > year_limit {
                return None;
            }
            if year < YEAR_MIN || self.years & (1u128 << (year - YEAR_MIN)) == 0 {
                t = days_from_civil(year + 1, 1, 1) * SECS_PER_DAY;
                continue;
            }
            if self.months & (1 << month) == 0 {
                let (y, m) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                t = days_from_civil(y, m, 1) * SECS_PER_DAY;
                continue;
            }
            if !self.day_matches(days, year, month, day) {
                t = (days + 1) * SECS_PER_DAY;
                continue;
            }
            let hour = second_of_day / 3600;
            let minute = second_of_day / 60 % 60;
            let second = second_of_day % 60;
            let day_start = days * SECS_PER_DAY;
            match next_bit(self.hours, hour) {
                None => {
                    t = day_start + SECS_PER_DAY;
                    continue;
                }
                Some(h) if h != hour => {
                    t = day_start + h * 3600;
                    continue;
                }
                Some(_) => {}
            }
            let hour_start = day_start + hour * 3600;
            match next_bit(self.minutes, minute) {
                None => {
                    t = hour_start + 3600;
                    continue;
                }
                Some(m) if m != minute => {
                    t = hour_start + m * 60;
                    continue;
                }
                Some(_) => {}
            }
            let minute_start = hour_start + minute * 60;
            match next_bit(self.seconds, second) {
                None => t = minute_start + 60,
                Some(s) => return Some(minute_start + s),
            }
        }
    }

    fn day_matches(&self, days: i64, year: i64, month: u32, day: u32) -> bool {
        // 1970-01-01 was a Thursday.
        let weekday = (days + 4).rem_euclid(7);
        let dom =
            self.days_of_month & (1 << day) != 0 && i64::from(day) <= days_in_month(year, month);
        let dow = self.days_of_week & (1 << weekday) != 0;
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }
}

/// The smallest set bit at or above `from`.
fn next_bit(set: u64, from: i64) -> Option<i64> {
    if from >= 64 {
        return None;
    }
    let above = set >> from;
    (above != 0).then(|| from + i64::from(above.trailing_zeros()))
}

fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let mut set = 0u64;
    for value in values(text, field)? {
        set |= 1 << value;
    }
    Ok(set)
}

/// Every value a field's text names, in its field's range.
fn values(text: &str, field: &Field) -> Result<Vec<i64>, String> {
    let mut out = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{} field {text:?} has an empty list item", field.name));
        }
        if let Some(c) = item.chars().find(|c| matches!(c, 'L' | 'l' | 'W' | 'w' | '#')) {
            // A name such as "wed" or "jul" contains these letters; only refuse them
            // outside a name.
            if !item.split(['-', '/']).any(|part| value_of(part, field).is_ok()) {
                return Err(format!(
                    "{} field {item:?}: {c:?} is not supported by drover",
                    field.name
                ));
            }
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: i64 = step.parse().map_err(|_| {
                    format!("{} field {item:?}: step {step:?} is not a number", field.name)
                })?;
                if step <= 0 {
                    return Err(format!("{} field {item:?}: step must be positive", field.name));
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = match range {
            "*" | "?" => {
                if range == "?" && !matches!(field.name, "day of month" | "day of week") {
                    return Err(format!("{} field {item:?}: ? is only for day fields", field.name));
                }
                (field.min, field.max)
            }
            _ => match range.split_once('-') {
                Some((a, b)) => (value_of(a, field)?, value_of(b, field)?),
                // `a/n` runs from a to the field's end; a bare `a` is one value.
                None if item.contains('/') => (value_of(range, field)?, field.max),
                None => {
                    let v = value_of(range, field)?;
                    (v, v)
                }
            },
        };
        if low > high {
            return Err(format!("{} field {item:?}: range {low}-{high} is backwards", field.name));
        }
        out.extend((low..=high).step_by(step as usize));
    }
    Ok(out)
}

fn value_of(text: &str, field: &Field) -> Result<i64, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        return Ok(field.names_from + i as i64);
    }
    let value: i64 = text
        .parse()
        .map_err(|_| format!("{} field: {text:?} is not a number or a name", field.name))?;
    if !(field.min..=field.max).contains(&value) {
        return Err(format!(
            "{} field: {value} is outside {}-{}",
            field.name, field.min, field.max
        ));
    }
    Ok(value)
}

/// The earliest next launch of any of `schedules` after `unix_secs`.
pub fn next_of(schedules: &[CronSchedule], unix_secs: i64) -> Option<i64> {
    schedules.iter().filter_map(|s| s.next_after(unix_secs)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20Z, a Tuesday.
    const T0: i64 = 1_700_000_000;

    fn next(spec: &str, after: i64) -> Option<i64> {
        CronSchedule::parse(spec).unwrap().next_after(after)
    }

    /// Brute force over every minute and each of its seconds: the reference
    /// `next_after` must agree with.
    fn brute(schedule: &CronSchedule, after: i64, horizon_secs: i64) -> Option<i64> {
        let first_minute = after.div_euclid(60) * 60;
        (0..horizon_secs / 60).map(|k| first_minute + k * 60).find_map(|minute_start| {
            let days = minute_start.div_euclid(SECS_PER_DAY);
            let (year, month, day) = civil_from_days(days);
            let sod = minute_start.rem_euclid(SECS_PER_DAY);
            let fits = schedule.years & (1u128 << (year - YEAR_MIN)) != 0
                && schedule.months & (1 << month) != 0
                && schedule.day_matches(days, year, month, day)
                && schedule.hours & (1 << (sod / 3600)) != 0
                && schedule.minutes & (1 << (sod / 60 % 60)) != 0;
            let seconds = (0..60).filter(|s| schedule.seconds & (1 << s) != 0);
            fits.then(|| seconds.map(|s| minute_start + s).find(|&t| t > after)).flatten()
        })
    }

    #[test]
    fn next_times() {
        assert_eq!(next("*/15 * * * *", T0), Some(T0 + 100)); // 22:15:00
        assert_eq!(next("0 0 * * *", T0), Some(1_700_006_400)); // 2023-11-15T00:00:00Z
        assert_eq!(next("@hourly", T0), Some(T0 + 2800)); // 23:00:00
        assert_eq!(next("*/20 * * * * * *", T0), Some(T0 + 20));
        assert_eq!(next("0 0 30 2 *", T0), None);
        assert_eq!(next("0 0 * * * 2020", T0), None);
        assert_eq!(next("0 12 * * MON-FRI", T0), Some(1_700_049_600)); // Wed 12:00
        assert_eq!(next("0 0 1 jan *", T0), Some(1_704_067_200)); // 2024-01-01
    }

    #[test]
    fn next_after_agrees_with_brute_force() {
        let specs = [
            "*/7 * * * *",
            "5,35 */3 * * *",
            "0 9-17/2 * * 1-5",
            "30 4 1,15 * 5",
            "*/13 */11 * * * * *",
            "0 0 29 2 *",
            "15 10 * * SUN",
        ];
        for spec in specs {
            let schedule = CronSchedule::parse(spec).unwrap();
            for k in 0..10 {
                let after = T0 + k * 79_193;
                let horizon = 60 * SECS_PER_DAY;
                let expected = brute(&schedule, after, horizon);
                let got = schedule.next_after(after).filter(|&t| t < after + horizon);
                assert_eq!(got, expected, "{spec} after {after}");
            }
        }
    }

    #[test]
    fn bad_expressions_say_why() {
        let err = |spec: &str| CronSchedule::parse(spec).unwrap_err();
        assert_eq!(err("* *"), "expected 5 to 7 fields, got 2");
        assert_eq!(err("61 * * * *"), "minute field: 61 is outside 0-59");
        assert_eq!(err("0 0 L * *"), "day of month field \"L\": 'L' is not supported by drover");
        assert_eq!(err("0 0 * * 5#3"), "day of week field \"5#3\": '#' is not supported by drover");
        assert_eq!(err("*/0 * * * *"), "minute field \"*/0\": step must be positive");
        assert_eq!(err("@often"), "unknown macro @often");
        assert!(CronSchedule::parse("0 0 * JUL WED").is_ok());
    }
}
