//! Feasibility: can this node run this task group at all (resources aside)?
//!
//! Checks run in Nomad's order: drivers, then job, group and task constraints. Results
//! are cached per computed node class, since nodes of one class are interchangeable for
//! everything but `unique.*` fields; a constraint that reads such a field "escapes" the
//! class and is checked per node, and marks blocked evaluations as escaped so that any
//! node change may unblock them. `distinct_hosts` and `distinct_property` depend on the
//! plan in progress, so [`super::select`] checks them.

use super::version;
use crate::model::{Constraint, Job, Node, TaskGroup};
use regex::{Regex, RegexBuilder};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

pub const OP_DISTINCT_HOSTS: &str = "distinct_hosts";
pub const OP_DISTINCT_PROPERTY: &str = "distinct_property";

/// The value a constraint target names on `node`: `${attr.X}`, `${meta.X}`,
/// `${node.unique.id}`, `${node.unique.name}`, `${node.datacenter}`, `${node.class}`,
/// `${node.pool}`; any other text is a literal. `None` means the node lacks it.
pub fn resolve<'a>(target: &'a str, node: &'a Node) -> Option<&'a str> {
    let Some(inner) = target.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Some(target);
    };
    match inner {
        "node.unique.id" => Some(&node.id),
        "node.unique.name" => Some(&node.name),
        "node.datacenter" => Some(&node.datacenter),
        "node.class" => Some(&node.node_class),
        "node.pool" => Some(&node.node_pool),
        _ => {
            if let Some(key) = inner.strip_prefix("attr.") {
                node.attributes.get(key).map(String::as_str)
            } else if let Some(key) = inner.strip_prefix("meta.") {
                node.meta.get(key).map(String::as_str)
            } else {
                None
            }
        }
    }
}

/// Whether a target reads a per-node field, outside the computed class.
pub fn escapes_class(target: &str) -> bool {
    ["${node.unique.", "${attr.unique.", "${meta.unique."].iter().any(|p| target.starts_with(p))
}

/// Nomad's text for a constraint in metrics: `${attr.kernel.name} = linux`.
pub fn constraint_text(c: &Constraint) -> String {
    format!("{} {} {}", c.l_target, c.operand, c.r_target).trim().to_owned()
}

/// Bytes the compiled program of one `regexp` pattern may take (the crate defaults to
/// 10 MiB). Constraint patterns are a few dozen bytes; a pattern that needs more, such as
/// `a{1000}{1000}`, fails to compile and so matches nothing.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Bytes of lazy-DFA cache one pattern may use while matching (the crate's default is 2 MiB).
pub const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a `regexp` constraint's pattern with the `regex` crate: RE2 syntax and
/// linear-time matching, as Go's `regexp` (which Nomad uses). An unanchored search, like
/// Go's `MatchString`. One difference remains: `\d`, `\w`, `\s` and `\b` are Unicode-aware
/// here and ASCII-only in Go, which only matters for non-ASCII attribute values.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
}

/// The `regexp` patterns of one scheduling pass, each compiled once however many groups,
/// affinities or group stacks use it. A pattern that does not compile is kept as `None`
/// (it matches nothing; validation refuses such jobs before they get here).
#[derive(Clone, Debug, Default)]
pub struct Patterns(BTreeMap<String, Option<Regex>>);

impl Patterns {
    pub fn compile(&mut self, pattern: &str) -> Option<Regex> {
        if let Some(compiled) = self.0.get(pattern) {
            return compiled.clone(); // a `Regex` clone shares the compiled program
        }
        let compiled = compile_regex(pattern).ok();
        self.0.insert(pattern.to_owned(), compiled.clone());
        compiled
    }

    /// Distinct patterns compiled so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A constraint ready to check, its pattern compiled (see [`Patterns`]).
#[derive(Clone, Debug)]
pub struct Compiled {
    pub constraint: Constraint,
    pub text: String,
    /// For `regexp`: the compiled pattern, `None` if it does not compile.
    regex: Option<Regex>,
}

impl Compiled {
    /// Compiles `constraint` on its own (tests, one-off checks).
    pub fn new(constraint: &Constraint) -> Compiled {
        Compiled::with_patterns(constraint, &mut Patterns::default())
    }

    /// Compiles `constraint`, sharing its pattern through the pass's `patterns`.
    pub fn with_patterns(constraint: &Constraint, patterns: &mut Patterns) -> Compiled {
        let regex = if constraint.operand == "regexp" {
            patterns.compile(&constraint.r_target)
        } else {
            None
        };
        Compiled { constraint: constraint.clone(), text: constraint_text(constraint), regex }
    }

    pub fn escapes(&self) -> bool {
        escapes_class(&self.constraint.l_target) || escapes_class(&self.constraint.r_target)
    }

    pub fn holds(&self, node: &Node) -> bool {
        let c = &self.constraint;
        let left = resolve(&c.l_target, node);
        let right = resolve(&c.r_target, node);
        check_operator(&c.operand, left, right, self.regex.as_ref())
    }
}

/// Nomad's `checkConstraint`: most operators need both sides present.
fn check_operator(
    op: &str,
    left: Option<&str>,
    right: Option<&str>,
    regex: Option<&Regex>,
) -> bool {
    match op {
        "is_set" => return left.is_some(),
        "is_not_set" => return left.is_none(),
        "!=" | "not" => return left != right,
        _ => {}
    }
    let (Some(l), Some(r)) = (left, right) else { return false };
    match op {
        "=" | "==" | "is" => l == r,
        "<" | "<=" | ">" | ">=" => check_order(op, l, r),
        "regexp" => regex.is_some_and(|re| re.is_match(l)),
        "version" => version::matches(r, l, false),
        "semver" => version::matches(r, l, true),
        "set_contains" | "set_contains_all" => {
            let have = split_set(l);
            split_set(r).iter().all(|want| have.contains(want))
        }
        "set_contains_any" => {
            let have = split_set(l);
            split_set(r).iter().any(|want| have.contains(want))
        }
        _ => false,
    }
}

fn split_set(text: &str) -> Vec<&str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// Numbers compare as numbers (integers, then floats), anything else lexically.
fn check_order(op: &str, l: &str, r: &str) -> bool {
    let order = match (l.parse::<i64>(), r.parse::<i64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => match (l.parse::<f64>(), r.parse::<f64>()) {
            (Ok(a), Ok(b)) => match a.partial_cmp(&b) {
                Some(order) => order,
                None => return false,
            },
            _ => l.cmp(r),
        },
    };
    match op {
        "<" => order.is_lt(),
        "<=" => order.is_le(),
        ">" => order.is_gt(),
        _ => order.is_ge(),
    }
}

/// Why a node was filtered, as the metric names it.
pub type Reason = String;

/// A task group's feasibility checks with a per-class cache.
#[derive(Debug)]
pub struct GroupChecker {
    drivers: Vec<String>,
    class_checks: Vec<Compiled>,
    node_checks: Vec<Compiled>,
    /// Computed class → verdict. A hash map with a fixed hasher: clusters can have
    /// hundreds of classes (rack meta alone multiplies them), and only lookups go through
    /// it, so its order never shows.
    cache: HashMap<String, Option<Reason>, BuildHasherDefault<FnvHasher>>,
    /// The same verdicts by the snapshot's class ID ([`crate::state::NodeList::class_id`]),
    /// so the hot path neither hashes nor compares class strings.
    by_class_id: Vec<Option<Option<Reason>>>,
}

/// FNV-1a as a `Hasher`: fixed across runs (std's default hasher is randomly seeded).
#[derive(Clone, Copy, Debug)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl GroupChecker {
    pub fn new(job: &Job, group: &TaskGroup, patterns: &mut Patterns) -> GroupChecker {
        let mut drivers: Vec<String> = group.tasks.iter().map(|t| t.driver.clone()).collect();
        drivers.sort();
        drivers.dedup();
        let all = job
            .constraints
            .iter()
            .chain(&group.constraints)
            .chain(group.tasks.iter().flat_map(|t| &t.constraints))
            .filter(|c| c.operand != OP_DISTINCT_HOSTS && c.operand != OP_DISTINCT_PROPERTY)
            .map(|c| Compiled::with_patterns(c, patterns));
        let (node_checks, class_checks): (Vec<_>, Vec<_>) = all.partition(Compiled::escapes);
        GroupChecker {
            drivers,
            class_checks,
            node_checks,
            cache: HashMap::default(),
            by_class_id: Vec::new(),
        }
    }

    /// Whether some check reads a per-node field, so class eligibility is not the answer.
    pub fn escaped(&self) -> bool {
        !self.node_checks.is_empty()
    }

    /// `None` if feasible, else the reason. The class part is cached.
    pub fn check(&mut self, node: &Node) -> Option<Reason> {
        if let Some(cached) = self.cache.get(&node.computed_class) {
            if cached.is_some() || self.node_checks.is_empty() {
                return cached.clone();
            }
        } else {
            let verdict = self.check_class(node);
            self.cache.insert(node.computed_class.clone(), verdict.clone());
            if verdict.is_some() {
                return verdict;
            }
        }
        self.node_checks.iter().find(|c| !c.holds(node)).map(|c| c.text.clone())
    }

    /// [`GroupChecker::check`] for a node whose computed class has ID `class_id` in the
    /// snapshot's node list: the class verdict is looked up by number.
    pub fn check_with_class_id(&mut self, node: &Node, class_id: u32) -> Option<Reason> {
        let slot = class_id as usize;
        if slot >= self.by_class_id.len() {
            self.by_class_id.resize(slot + 1, None);
        }
        if self.by_class_id[slot].is_none() {
            // First node of this class: the string-keyed cache holds the verdict for
            // `class_eligibility`.
            let verdict = match self.cache.get(&node.computed_class) {
                Some(cached) => cached.clone(),
                None => {
                    let verdict = self.check_class(node);
                    self.cache.insert(node.computed_class.clone(), verdict.clone());
                    verdict
                }
            };
            self.by_class_id[slot] = Some(verdict);
        }
        if let Some(Some(reason)) = &self.by_class_id[slot] {
            return Some(reason.clone());
        }
        self.node_checks.iter().find(|c| !c.holds(node)).map(|c| c.text.clone())
    }

    fn check_class(&self, node: &Node) -> Option<Reason> {
        for driver in &self.drivers {
            if !driver_usable(node, driver) {
                return Some(format!("missing drivers: {driver}"));
            }
        }
        self.class_checks.iter().find(|c| !c.holds(node)).map(|c| c.text.clone())
    }

    /// Computed class → whether the group could run there, for blocked evaluations.
    pub fn class_eligibility(&self) -> BTreeMap<String, bool> {
        self.cache.iter().map(|(class, verdict)| (class.clone(), verdict.is_none())).collect()
    }
}

/// A driver counts when the node reports it detected and healthy, or (older clients)
/// through a truthy `driver.X` attribute.
fn driver_usable(node: &Node, driver: &str) -> bool {
    if let Some(info) = node.drivers.get(driver) {
        return info.detected && info.healthy;
    }
    let attribute = node.attributes.get(&format!("driver.{driver}"));
    attribute.is_some_and(|v| matches!(v.as_str(), "1" | "true"))
}

/// Whether a node is in one of the job's datacenters (`*` globs allowed) and its pool.
pub fn in_job_scope(job: &Job, node: &Node) -> bool {
    in_job_scope_of(job, &node.datacenter, &node.node_pool)
}

/// [`in_job_scope`] for a node in `datacenter` and `pool`.
pub fn in_job_scope_of(job: &Job, datacenter: &str, pool: &str) -> bool {
    let pool_ok = job.node_pool == "all" || job.node_pool.is_empty() || job.node_pool == pool;
    pool_ok && job.datacenters.iter().any(|dc| glob_match(dc, datacenter))
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.len() == text.len() && pattern == text {
        return true;
    }
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(tail) = text.strip_prefix(prefix) else { return false };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(l: &str, op: &str, r: &str) -> Compiled {
        Compiled::new(&Constraint { l_target: l.into(), operand: op.into(), r_target: r.into() })
    }

    #[test]
    fn operators() {
        let mut node = Node { id: "n1".into(), ..Node::default() };
        node.attributes.insert("kernel.name".into(), "linux".into());
        node.attributes.insert("cpu.numcores".into(), "8".into());
        node.attributes.insert("os.version".into(), "22.04".into());
        node.meta.insert("tags".into(), "a,b,c".into());
        let yes = [
            c("${attr.kernel.name}", "=", "linux"),
            c("${attr.kernel.name}", "!=", "windows"),
            c("${attr.missing}", "!=", "x"),
            c("${attr.cpu.numcores}", ">=", "8"),
            c("${attr.cpu.numcores}", "<", "10"),
            c("${attr.kernel.name}", "regexp", "^lin"),
            c("${attr.os.version}", "version", ">= 20.04"),
            c("${meta.tags}", "set_contains", "a,c"),
            c("${meta.tags}", "set_contains_any", "x,b"),
            c("${attr.kernel.name}", "is_set", ""),
            c("${attr.nope}", "is_not_set", ""),
            c("${node.unique.id}", "=", "n1"),
        ];
        for check in &yes {
            assert!(check.holds(&node), "{}", check.text);
        }
        let no = [
            c("${attr.missing}", "=", "x"),
            c("${attr.cpu.numcores}", ">", "8"),
            c("${meta.tags}", "set_contains_all", "a,d"),
            c("${attr.kernel.name}", "regexp", "^win"),
            c("${attr.os.version}", "semver", ">= 20.04.0"),
        ];
        for check in &no {
            assert!(!check.holds(&node), "{}", check.text);
        }
    }

    #[test]
    fn regexp_matches_like_go() {
        let cases = [
            ("^linux$", "linux", true),
            ("^linux$", "linux2", false),
            ("lin", "xlinux", true),
            ("^(r1|r2)$", "r2", true),
            ("^(r1|r2)$", "r3", false),
            ("[0-9]+\\.[0-9]+", "v1.25", true),
            ("^a.c$", "abc", true),
            ("^ab*c$", "ac", true),
            ("^ab+c$", "ac", false),
            ("^a{2,3}$", "aaa", true),
            ("^a{2,3}$", "aaaa", false),
            ("^[^x]+$", "abc", true),
            ("^\\d{3}$", "123", true),
            ("^(a|ab)c$", "abc", true),
            ("(?i)^LINUX$", "linux", true),
            ("^(a+)+$", &format!("{}b", "a".repeat(64)), false), // no backtracking blow-up
        ];
        for (pattern, text, expected) in cases {
            let re = compile_regex(pattern).unwrap();
            assert_eq!(re.is_match(text), expected, "{pattern} ~ {text}");
        }
        for bad in ["(ab", "*a", "a{2,1}", "\\8"] {
            assert!(compile_regex(bad).is_err(), "{bad}");
        }
        // Size-bounded: a pattern whose program would be huge does not compile.
        assert!(compile_regex("(?:a{1000}){1000}").is_err());
        // An invalid pattern matches nothing.
        let node = Node { node_class: "gpu-a".into(), ..Node::default() };
        assert!(!c("${node.class}", "regexp", "(gpu").holds(&node));
        assert!(c("${node.class}", "regexp", "^gpu-(a|b)$").holds(&node));
    }

    #[test]
    fn patterns_compile_once_per_pass() {
        let mut patterns = Patterns::default();
        let constraint = Constraint {
            l_target: "${node.class}".into(),
            operand: "regexp".into(),
            r_target: "^gpu-".into(),
        };
        let a = Compiled::with_patterns(&constraint, &mut patterns);
        let b = Compiled::with_patterns(&constraint, &mut patterns);
        let equal = Constraint { operand: "=".into(), ..constraint.clone() };
        let _ = Compiled::with_patterns(&equal, &mut patterns);
        assert_eq!(patterns.len(), 1);
        let node = Node { node_class: "gpu-b".into(), ..Node::default() };
        assert!(a.holds(&node) && b.holds(&node));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "dc1"));
        assert!(glob_match("dc*", "dc1"));
        assert!(glob_match("us-*-1", "us-east-1"));
        assert!(!glob_match("dc2", "dc1"));
    }
}
