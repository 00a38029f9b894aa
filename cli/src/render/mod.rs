//! Text the commands print, built from API values as pure functions so that every
//! command's output can be checked without a server.

pub mod allocs;
pub mod deployment;
pub mod metrics;
pub mod plan;
#[cfg(test)]
mod plan_scenarios;

/// `text` as Go's `%q` writes it: in double quotes, with `"` and `\` escaped, control
/// characters as `\n`, `\t`, `\x1b`, … and other printable characters as they are.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_as_go_does() {
        assert_eq!(go_quote("redis:7"), r#""redis:7""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("line\nnext\ttab\u{1b}"), r#""line\nnext\ttab\x1b""#);
        assert_eq!(go_quote("ünïcode"), "\"ünïcode\"");
    }
}
