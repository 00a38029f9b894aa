//! Command-line flags the way Nomad (Go's `flag` package) reads them.
//!
//! Nomad users type `-var k=v`, `-check-index 5`, `-detach`: single-dash long flags. We accept
//! those and the double-dash spelling, `-flag value` and `-flag=value`, and stop at the first
//! argument that is not a flag (or at `--`), exactly as Go's parser does, so scripts written
//! for `nomad` work with `drover`.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagKind {
    /// `-detach`, or `-detach=false`.
    Bool,
    /// `-check-index 5`; the last one given wins.
    Value,
    /// `-var a=1 -var b=2`; every one is kept, in order.
    Repeated,
}

#[derive(Clone, Copy, Debug)]
pub struct FlagSpec {
    pub name: &'static str,
    pub kind: FlagKind,
}

impl FlagSpec {
    pub const fn bool(name: &'static str) -> FlagSpec {
        FlagSpec { name, kind: FlagKind::Bool }
    }
    pub const fn value(name: &'static str) -> FlagSpec {
        FlagSpec { name, kind: FlagKind::Value }
    }
    pub const fn repeated(name: &'static str) -> FlagSpec {
        FlagSpec { name, kind: FlagKind::Repeated }
    }
}

/// Flags every command accepts (Nomad's global API flags).
pub const GLOBAL_FLAGS: &[FlagSpec] = &[
    FlagSpec::value("address"),
    FlagSpec::value("region"),
    FlagSpec::value("namespace"),
    FlagSpec::value("token"),
    FlagSpec::value("ca-cert"),
    FlagSpec::value("ca-path"),
    FlagSpec::value("client-cert"),
    FlagSpec::value("client-key"),
    FlagSpec::value("tls-server-name"),
    FlagSpec::bool("tls-skip-verify"),
    FlagSpec::bool("no-color"),
    FlagSpec::bool("help"),
    FlagSpec::bool("h"),
];

#[derive(Debug, Default)]
pub struct Parsed {
    values: BTreeMap<&'static str, Vec<String>>,
    pub args: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FlagError {
    Undefined(String),
    MissingValue(String),
    BadBool { flag: String, value: String },
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Undefined(name) => write!(f, "flag provided but not defined: -{name}"),
            FlagError::MissingValue(name) => write!(f, "flag needs an argument: -{name}"),
            FlagError::BadBool { flag, value } => {
                write!(f, "invalid boolean value {value:?} for -{flag}: parse error")
            }
        }
    }
}

impl Parsed {
    pub fn is_set(&self, name: &str) -> bool {
        self.values.get(name).and_then(|v| v.last()).is_some_and(|v| v == "true")
    }

    /// A value flag's value: the last one given wins, as in Go.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.all(name).last().map(String::as_str)
    }

    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn wants_help(&self) -> bool {
        self.is_set("help") || self.is_set("h")
    }
}

/// Parses `args` against the command's flags plus the global ones.
pub fn parse(args: &[String], specs: &[FlagSpec]) -> Result<Parsed, FlagError> {
    let lookup = |name: &str| specs.iter().chain(GLOBAL_FLAGS).find(|s| s.name == name).copied();
    let mut parsed = Parsed::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        let Some(body) = flag_body(arg) else {
            parsed.args.push(arg.clone());
            break;
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        let spec = lookup(name).ok_or_else(|| FlagError::Undefined(name.to_owned()))?;
        let value = match (spec.kind, inline) {
            (FlagKind::Bool, None) => "true".to_owned(),
            (FlagKind::Bool, Some(text)) => parse_bool(name, &text)?,
            (_, Some(text)) => text,
            (_, None) => {
                rest.next().cloned().ok_or_else(|| FlagError::MissingValue(name.into()))?
            }
        };
        parsed.values.entry(spec.name).or_default().push(value);
    }
    parsed.args.extend(rest.cloned());
    Ok(parsed)
}

/// `-x`, `--x` → `x`; anything else (including `-` alone) is not a flag.
fn flag_body(arg: &str) -> Option<&str> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    (!body.is_empty() && !body.starts_with('-')).then_some(body)
}

fn parse_bool(flag: &str, text: &str) -> Result<String, FlagError> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok("true".into()),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok("false".into()),
        _ => Err(FlagError::BadBool { flag: flag.into(), value: text.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] =
        &[FlagSpec::bool("detach"), FlagSpec::value("check-index"), FlagSpec::repeated("var")];

    fn check(args: &str, expect: &str) {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        let actual = match parse(&args, SPECS) {
            Ok(p) => format!("{:?} args={:?}", p.values, p.args),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(actual, expect);
    }

    #[test]
    fn reads_flags_like_go() {
        check("-detach job.hcl", r#"{"detach": ["true"]} args=["job.hcl"]"#);
        check("--check-index 7 a b", r#"{"check-index": ["7"]} args=["a", "b"]"#);
        check("-var=a=1 -var b=2 x", r#"{"var": ["a=1", "b=2"]} args=["x"]"#);
        check("-detach=false x", r#"{"detach": ["false"]} args=["x"]"#);
        check("x -detach", r#"{} args=["x", "-detach"]"#);
        check("-- -detach", r#"{} args=["-detach"]"#);
        check("- x", r#"{} args=["-", "x"]"#);
        check("-bogus", "error: flag provided but not defined: -bogus");
        check("-check-index", "error: flag needs an argument: -check-index");
        check("-detach=maybe", r#"error: invalid boolean value "maybe" for -detach: parse error"#);
    }
}
