//! How commands lay out what they print, as Nomad's CLI does: tables whose columns are
//! padded to their widest cell and joined by two spaces, `key = value` blocks aligned on
//! the `=`, IDs cut to 8 characters and times as RFC 3339 in UTC to the second.

use drover_core::model::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many characters of an ID a table or message shows.
pub const SHORT_ID_LEN: usize = 8;
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The first 8 characters of an ID, as Nomad shows them unless `-verbose`.
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(SHORT_ID_LEN).map_or(id, |(end, _)| &id[..end])
}

/// An ID as tables show it: whole with `-verbose`, else its first 8 characters.
pub fn display_id(id: &str, verbose: bool) -> String {
    if verbose { id.to_owned() } else { short_id(id).to_owned() }
}

/// Strings of a header row.
pub fn cells(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// A table: the first row is the header. Every column but the last is padded to its
/// widest cell; columns are joined by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| if c + 1 == row.len() { cell.clone() } else { pad(cell, widths[c]) })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `key = value` lines with the `=` aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{} = {v}\n", pad(k, width)).replace(" \n", "\n")).collect()
}

fn pad(cell: &str, width: usize) -> String {
    format!("{cell}{}", " ".repeat(width.saturating_sub(cell.chars().count())))
}

/// Unix nanoseconds as `2006-01-02T15:04:05Z`.
pub fn time_text(unix_ns: i64) -> String {
    Timestamp(unix_ns.div_euclid(NANOS_PER_SEC) * NANOS_PER_SEC).to_rfc3339()
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// How long ago `unix_ns` was, as Nomad's tables say it: the two largest units, `1h5m ago`.
pub fn time_ago(unix_ns: i64, now_ns: i64) -> String {
    let seconds = (now_ns - unix_ns).max(0) / NANOS_PER_SEC;
    let units = [
        (seconds / 86_400, "d"),
        (seconds / 3600 % 24, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(units.len() - 1);
    let shown: String = units[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0 || first == units.len() - 1)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    format!("{shown} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![
            vec!["ID".into(), "Status".into(), "Note".into()],
            vec!["a1b2c3d4".into(), "running".into(), "".into()],
            vec!["x".into(), "dead".into(), "gone".into()],
        ];
        assert_eq!(
            table(&rows),
            "ID        Status   Note\na1b2c3d4  running\nx         dead     gone\n"
        );
        let pairs =
            [("ID", "web".to_owned()), ("Submit Date", "now".into()), ("Empty", String::new())];
        assert_eq!(key_values(&pairs), "ID          = web\nSubmit Date = now\nEmpty       =\n");
    }

    #[test]
    fn ids_times_and_ages() {
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(time_text(1_700_000_000_123_456_789), "2023-11-14T22:13:20Z");
        let s = NANOS_PER_SEC;
        assert_eq!(time_ago(0, 5 * s), "5s ago");
        assert_eq!(time_ago(0, 0), "0s ago");
        assert_eq!(time_ago(0, 3 * 3600 * s + 61 * s), "3h1m ago");
        assert_eq!(time_ago(0, 3600 * s + 5 * s), "1h ago");
        assert_eq!(time_ago(10 * s, 0), "0s ago");
    }
}
