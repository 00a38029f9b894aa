//! Version constraints for the `version` and `semver` operators.
//!
//! `version` follows hashicorp/go-version's lenient form (`v1.2`, `1.2.3-beta.1+meta`,
//! missing segments read as 0); `semver` additionally insists on exactly three numeric
//! segments. A constraint is a comma-separated list of `op version` terms, all of which
//! must hold; operators are `= != > >= < <= ~>` (none means `=`).

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    segments: Vec<u64>,
    prerelease: Vec<String>,
}

impl Version {
    pub fn parse(text: &str, strict: bool) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text.split_once('+').map_or(text, |(v, _meta)| v);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, pre.split('.').map(str::to_owned).collect()),
            None => (text, Vec::new()),
        };
        let segments: Option<Vec<u64>> = core.split('.').map(|s| s.parse().ok()).collect();
        let segments = segments?;
        if segments.is_empty() || (strict && segments.len() != 3) {
            return None;
        }
        Some(Version { segments, prerelease: pre })
    }

    fn segment(&self, i: usize) -> u64 {
        self.segments.get(i).copied().unwrap_or(0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        let width = self.segments.len().max(other.segments.len());
        for i in 0..width {
            match self.segment(i).cmp(&other.segment(i)) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        compare_prerelease(&self.prerelease, &other.prerelease)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A release sorts after its prereleases; identifiers compare numerically when both are
/// numbers, else lexically, and numbers sort before words.
fn compare_prerelease(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Whether `value` satisfies every term of `constraint`; unparseable input never does.
pub fn matches(constraint: &str, value: &str, strict: bool) -> bool {
    let Some(version) = Version::parse(value, strict) else { return false };
    constraint.split(',').all(|term| term_holds(term.trim(), &version, strict))
}

fn term_holds(term: &str, version: &Version, strict: bool) -> bool {
    let ops = ["~>", ">=", "<=", "!=", "=", ">", "<"];
    let (op, rest) = ops
        .iter()
        .find_map(|op| term.strip_prefix(op).map(|rest| (*op, rest)))
        .unwrap_or(("=", term));
    let Some(target) = Version::parse(rest, strict) else { return false };
    let order = version.cmp(&target);
    match op {
        "=" => order == Ordering::Equal,
        "!=" => order != Ordering::Equal,
        ">" => order == Ordering::Greater,
        ">=" => order != Ordering::Less,
        "<" => order == Ordering::Less,
        "<=" => order != Ordering::Greater,
        _ => pessimistic(version, &target),
    }
}

/// `~> 1.2.3` means `>= 1.2.3, < 1.3`; `~> 1.2` means `>= 1.2, < 2`.
fn pessimistic(version: &Version, target: &Version) -> bool {
    let fixed = target.segments.len().saturating_sub(1).max(1);
    version >= target && (0..fixed).all(|i| version.segment(i) == target.segment(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints() {
        assert!(matches(">= 1.2, < 2.0", "1.10.0", false));
        assert!(!matches(">= 1.2, < 2.0", "2.0.0", false));
        assert!(matches("> 1.0", "v1.0.1", false));
        assert!(!matches("> 1.0.0", "1.0.0-beta", false));
        assert!(matches("< 1.0.0", "1.0.0-beta", false));
        assert!(matches("~> 1.2.3", "1.2.9", false));
        assert!(!matches("~> 1.2.3", "1.3.0", false));
        assert!(matches("~> 1.2", "1.9", false));
        assert!(!matches("~> 1.2", "2.0", false));
        assert!(matches("1.2.3", "1.2.3", true));
        assert!(!matches(">= 1.2.3", "1.3", true), "semver wants three segments");
        assert!(!matches(">= 1", "linux", false));
    }
}
