//! The text-scenario runner shared by the interaction tests (raft, server, client).
//!
//! A script is a run of commands, each followed by `----` and the output it produced;
//! blank lines and `#` comments are kept as written. [`check_script`] replays every
//! command through the caller's interpreter, and either compares the rendered script
//! with the file (showing the first line that differs) or, with `REWRITE=1`, writes it
//! back so a reviewer reads the change as a diff.

use std::fmt::Write;
use std::path::Path;

/// Replays `tests/<dir>/<name>` through `run` (one command line in, its output out).
pub fn check_script(dir: &str, name: &str, mut run: impl FnMut(&str) -> String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir).join(name);
    let script =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rendered = String::new();
    let mut lines = script.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            rendered.push_str(line);
            rendered.push('\n');
            continue;
        }
        let _ = writeln!(rendered, "{line}");
        assert_eq!(lines.next(), Some("----"), "{name}: `{line}` must be followed by ----");
        while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
            lines.next();
        }
        rendered.push_str("----\n");
        rendered.push_str(&run(line));
    }
    if std::env::var_os("REWRITE").is_some() {
        std::fs::write(&path, rendered).expect("rewrite the script");
        return;
    }
    if rendered != script {
        let diff = first_difference(&script, &rendered);
        panic!("{name}: output changed (REWRITE=1 regenerates it)\n{diff}");
    }
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = e.iter().zip(&a).position(|(x, y)| x != y).unwrap_or(e.len().min(a.len()));
    let expected = e.get(at).copied().unwrap_or("<end>");
    let actual = a.get(at).copied().unwrap_or("<end>");
    format!("line {}:\n  expected: {expected}\n  actual:   {actual}", at + 1)
}
