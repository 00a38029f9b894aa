//! The HCL2 function library jobspecs may call: Nomad's common subset of Terraform's.
//!
//! hcl-rs ships no functions, so these are drover's. Each takes evaluated JSON values and
//! returns a value or a plain message; the caller adds the location. Functions are pure.

use super::eval::{float_value, to_bool, to_number, to_template_string, type_name, values_equal};
use serde_json::{Map, Value};

type FnResult = Result<Value, String>;

/// A function's body: its own name (several share one body) and its arguments, already
/// checked against its [`Arity`].
type Builtin = fn(&str, &[Value]) -> FnResult;

/// How many arguments a function takes.
#[derive(Clone, Copy)]
enum Arity {
    Exactly(usize),
    /// Variadic or optional arguments: the body checks the count itself.
    Own,
}

use Arity::{Exactly, Own};

/// Every function, sorted by name for [`call`]'s binary search (a test checks the order).
const FUNCTIONS: &[(&str, Arity, Builtin)] = &[
    ("abs", Exactly(1), rounding),
    ("ceil", Exactly(1), rounding),
    ("coalesce", Own, coalesce),
    ("compact", Exactly(1), compact),
    ("concat", Own, concat),
    ("contains", Exactly(2), contains),
    ("distinct", Exactly(1), distinct),
    ("element", Exactly(2), element),
    ("flatten", Exactly(1), flatten_list),
    ("floor", Exactly(1), rounding),
    ("format", Own, format),
    ("join", Exactly(2), join),
    ("jsondecode", Exactly(1), jsondecode),
    ("jsonencode", Exactly(1), jsonencode),
    ("keys", Exactly(1), keys_or_values),
    ("length", Exactly(1), length),
    ("lookup", Own, lookup),
    ("lower", Exactly(1), string_case),
    ("max", Own, min_max),
    ("merge", Own, merge),
    ("min", Own, min_max),
    ("range", Own, range),
    ("replace", Exactly(3), replace),
    ("reverse", Exactly(1), reverse),
    ("slice", Exactly(3), slice),
    ("sort", Exactly(1), sort),
    ("split", Exactly(2), split),
    ("substr", Exactly(3), substr),
    ("title", Exactly(1), string_case),
    ("tobool", Exactly(1), tobool),
    ("tolist", Exactly(1), tolist),
    ("tomap", Exactly(1), tomap),
    ("tonumber", Exactly(1), tonumber),
    ("tostring", Exactly(1), string_case),
    ("trim", Exactly(2), trim),
    ("trimprefix", Exactly(2), trim),
    ("trimspace", Exactly(1), string_case),
    ("trimsuffix", Exactly(2), trim),
    ("upper", Exactly(1), string_case),
    ("values", Exactly(1), keys_or_values),
    ("zipmap", Exactly(2), zipmap),
];

pub(crate) fn call(name: &str, args: Vec<Value>) -> FnResult {
    let Ok(index) = FUNCTIONS.binary_search_by(|(n, _, _)| (*n).cmp(name)) else {
        let hint = super::diag::suggest(name, FUNCTIONS.iter().map(|(n, _, _)| *n))
            .map(|s| format!("; did you mean {s}()?"))
            .unwrap_or_default();
        return Err(format!("unknown function \"{name}\"{hint}"));
    };
    let (_, arity, body) = FUNCTIONS[index];
    if let Exactly(n) = arity
        && args.len() != n
    {
        return Err(format!(
            "{name}() takes {n} argument{}, got {}",
            if n == 1 { "" } else { "s" },
            args.len()
        ));
    }
    body(name, &args)
}

/// upper, lower, title, trimspace and tostring.
fn string_case(name: &str, args: &[Value]) -> FnResult {
    let s = string_arg(name, &args[0])?;
    Ok(Value::String(match name {
        "upper" => s.to_uppercase(),
        "lower" => s.to_lowercase(),
        "trimspace" => s.trim().to_owned(),
        "title" => title(&s),
        _ => s,
    }))
}

fn tonumber(_: &str, args: &[Value]) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        v => to_number(v)
            .map(float_value)
            .ok_or_else(|| format!("tonumber(): cannot convert {} to a number", show(v))),
    }
}

fn tobool(_: &str, args: &[Value]) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        v => to_bool(v)
            .map(Value::Bool)
            .ok_or_else(|| format!("tobool(): cannot convert {} to a bool", show(v))),
    }
}

fn tolist(name: &str, args: &[Value]) -> FnResult {
    list_arg(name, &args[0]).map(Value::Array)
}

fn tomap(name: &str, args: &[Value]) -> FnResult {
    object_arg(name, &args[0]).map(Value::Object)
}

fn join(name: &str, args: &[Value]) -> FnResult {
    let sep = string_arg(name, &args[0])?;
    let parts: Result<Vec<String>, String> =
        list_arg(name, &args[1])?.iter().map(|v| string_arg(name, v)).collect();
    Ok(Value::String(parts?.join(&sep)))
}

fn split(name: &str, args: &[Value]) -> FnResult {
    let sep = string_arg(name, &args[0])?;
    let text = string_arg(name, &args[1])?;
    if text.is_empty() {
        return Ok(Value::Array(vec![Value::String(String::new())]));
    }
    if sep.is_empty() {
        return Ok(Value::Array(text.chars().map(|c| Value::String(c.to_string())).collect()));
    }
    Ok(Value::Array(text.split(sep.as_str()).map(|s| Value::String(s.to_owned())).collect()))
}

fn concat(name: &str, args: &[Value]) -> FnResult {
    let mut out = Vec::new();
    for arg in args {
        out.extend(list_arg(name, arg)?);
    }
    Ok(Value::Array(out))
}

fn lookup(name: &str, args: &[Value]) -> FnResult {
    if args.len() != 2 && args.len() != 3 {
        return Err(format!("lookup() takes 2 or 3 arguments, got {}", args.len()));
    }
    let map = object_arg(name, &args[0])?;
    let key = string_arg(name, &args[1])?;
    match map.get(&key) {
        Some(v) => Ok(v.clone()),
        None => {
            args.get(2).cloned().ok_or_else(|| format!("lookup(): no key \"{key}\" and no default"))
        }
    }
}

fn merge(name: &str, args: &[Value]) -> FnResult {
    let mut out = Map::new();
    for arg in args {
        if arg.is_null() {
            continue;
        }
        out.extend(object_arg(name, arg)?);
    }
    Ok(Value::Object(out))
}

fn length(_: &str, args: &[Value]) -> FnResult {
    Ok(Value::from(match &args[0] {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        Value::String(s) => s.chars().count(),
        other => {
            return Err(format!("length(): cannot take the length of {}", type_name(other)));
        }
    } as u64))
}

/// trim, trimprefix and trimsuffix.
fn trim(name: &str, args: &[Value]) -> FnResult {
    let text = string_arg(name, &args[0])?;
    let cut = string_arg(name, &args[1])?;
    Ok(Value::String(match name {
        "trimprefix" => text.strip_prefix(cut.as_str()).unwrap_or(&text).to_owned(),
        "trimsuffix" => text.strip_suffix(cut.as_str()).unwrap_or(&text).to_owned(),
        _ => text.trim_matches(|c| cut.contains(c)).to_owned(),
    }))
}

fn replace(name: &str, args: &[Value]) -> FnResult {
    let text = string_arg(name, &args[0])?;
    let from = string_arg(name, &args[1])?;
    let to = string_arg(name, &args[2])?;
    if from.len() > 1 && from.starts_with('/') && from.ends_with('/') {
        return Err("replace(): regular-expression patterns (/.../) are not supported".into());
    }
    if from.is_empty() {
        return Ok(Value::String(text));
    }
    Ok(Value::String(text.replace(&from, &to)))
}

fn substr(name: &str, args: &[Value]) -> FnResult {
    let text = string_arg(name, &args[0])?;
    let chars: Vec<char> = text.chars().collect();
    let offset = int_arg(name, &args[1])?;
    let length = int_arg(name, &args[2])?;
    let len = chars.len() as i64;
    let start = if offset < 0 { (len + offset).max(0) } else { offset.min(len) };
    let end = if length < 0 { len } else { (start + length).min(len) };
    Ok(Value::String(chars[start as usize..end.max(start) as usize].iter().collect()))
}

fn contains(name: &str, args: &[Value]) -> FnResult {
    let items = list_arg(name, &args[0])?;
    Ok(Value::Bool(items.iter().any(|v| values_equal(v, &args[1]))))
}

/// keys and values, both in key order.
fn keys_or_values(name: &str, args: &[Value]) -> FnResult {
    let mut entries: Vec<(String, Value)> = object_arg(name, &args[0])?.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Value::Array(
        entries
            .into_iter()
            .map(|(k, v)| if name == "keys" { Value::String(k) } else { v })
            .collect(),
    ))
}

fn element(name: &str, args: &[Value]) -> FnResult {
    let items = list_arg(name, &args[0])?;
    if items.is_empty() {
        return Err("element(): cannot take an element of an empty list".into());
    }
    let index = int_arg(name, &args[1])?;
    if index < 0 {
        return Err("element(): the index must not be negative".into());
    }
    Ok(items[index as usize % items.len()].clone())
}

fn coalesce(_: &str, args: &[Value]) -> FnResult {
    args.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "coalesce(): every argument is null or empty".into())
}

fn compact(name: &str, args: &[Value]) -> FnResult {
    Ok(Value::Array(
        list_arg(name, &args[0])?
            .into_iter()
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
            .collect(),
    ))
}

fn distinct(name: &str, args: &[Value]) -> FnResult {
    let mut out: Vec<Value> = Vec::new();
    for item in list_arg(name, &args[0])? {
        if !out.iter().any(|o| values_equal(o, &item)) {
            out.push(item);
        }
    }
    Ok(Value::Array(out))
}

fn flatten_list(name: &str, args: &[Value]) -> FnResult {
    let mut out = Vec::new();
    flatten(list_arg(name, &args[0])?, &mut out, 0)?;
    Ok(Value::Array(out))
}

fn reverse(name: &str, args: &[Value]) -> FnResult {
    let mut items = list_arg(name, &args[0])?;
    items.reverse();
    Ok(Value::Array(items))
}

fn sort(name: &str, args: &[Value]) -> FnResult {
    let items: Result<Vec<String>, String> =
        list_arg(name, &args[0])?.iter().map(|v| string_arg(name, v)).collect();
    let mut items = items?;
    items.sort();
    Ok(Value::Array(items.into_iter().map(Value::String).collect()))
}

fn slice(name: &str, args: &[Value]) -> FnResult {
    let items = list_arg(name, &args[0])?;
    let (start, end) = (int_arg(name, &args[1])?, int_arg(name, &args[2])?);
    if start < 0 || end < start || end as usize > items.len() {
        return Err(format!("slice(): [{start}, {end}) is out of range for {} items", items.len()));
    }
    Ok(Value::Array(items[start as usize..end as usize].to_vec()))
}

fn zipmap(name: &str, args: &[Value]) -> FnResult {
    let keys = list_arg(name, &args[0])?;
    let values = list_arg(name, &args[1])?;
    if keys.len() != values.len() {
        return Err("zipmap(): the lists must have the same length".into());
    }
    let mut out = Map::new();
    for (k, v) in keys.iter().zip(values) {
        out.insert(string_arg(name, k)?, v);
    }
    Ok(Value::Object(out))
}

/// min and max.
fn min_max(name: &str, args: &[Value]) -> FnResult {
    if args.is_empty() {
        return Err(format!("{name}() needs at least one number"));
    }
    let mut best: Option<f64> = None;
    for arg in args {
        let n = number_arg(name, arg)?;
        best = Some(match best {
            None => n,
            Some(b) if name == "min" => b.min(n),
            Some(b) => b.max(n),
        });
    }
    Ok(float_value(best.unwrap_or(0.0)))
}

/// abs, ceil and floor.
fn rounding(name: &str, args: &[Value]) -> FnResult {
    let n = number_arg(name, &args[0])?;
    Ok(float_value(match name {
        "abs" => n.abs(),
        "ceil" => n.ceil(),
        _ => n.floor(),
    }))
}

fn jsonencode(_: &str, args: &[Value]) -> FnResult {
    serde_json::to_string(&args[0]).map(Value::String).map_err(|e| format!("jsonencode(): {e}"))
}

fn jsondecode(name: &str, args: &[Value]) -> FnResult {
    let text = string_arg(name, &args[0])?;
    serde_json::from_str(&text).map_err(|e| format!("jsondecode(): invalid JSON: {e}"))
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => type_name(other).to_owned(),
    }
}

fn string_arg(name: &str, value: &Value) -> Result<String, String> {
    to_template_string(value)
        .map_err(|_| format!("{name}(): expected a string, got {}", type_name(value)))
}

fn number_arg(name: &str, value: &Value) -> Result<f64, String> {
    to_number(value).ok_or_else(|| format!("{name}(): expected a number, got {}", show(value)))
}

fn int_arg(name: &str, value: &Value) -> Result<i64, String> {
    let n = number_arg(name, value)?;
    if n.fract() != 0.0 {
        return Err(format!("{name}(): expected a whole number, got {n}"));
    }
    Ok(n as i64)
}

fn list_arg(name: &str, value: &Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items.clone()),
        other => Err(format!("{name}(): expected a list, got {}", type_name(other))),
    }
}

fn object_arg(name: &str, value: &Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map.clone()),
        other => Err(format!("{name}(): expected a map, got {}", type_name(other))),
    }
}

fn title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_word_start = true;
    for c in text.chars() {
        if at_word_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !c.is_alphanumeric();
    }
    out
}

fn flatten(items: Vec<Value>, out: &mut Vec<Value>, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err("flatten(): lists are nested too deeply".into());
    }
    for item in items {
        match item {
            Value::Array(inner) => flatten(inner, out, depth + 1)?,
            other => out.push(other),
        }
    }
    Ok(())
}

/// Most elements `range()` produces, so a typo cannot allocate the machine away.
const RANGE_LEN_MAX: usize = 1024;

fn range(_: &str, args: &[Value]) -> FnResult {
    let nums: Result<Vec<f64>, String> = args.iter().map(|a| number_arg("range", a)).collect();
    let nums = nums?;
    let (start, end, step) = match nums.as_slice() {
        [end] => (0.0, *end, 1.0),
        [start, end] => (*start, *end, if end >= start { 1.0 } else { -1.0 }),
        [start, end, step] => (*start, *end, *step),
        _ => return Err(format!("range() takes 1 to 3 arguments, got {}", args.len())),
    };
    if step == 0.0 || (step > 0.0 && end < start) || (step < 0.0 && end > start) {
        return Err("range(): the step must move from start towards end".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        if out.len() >= RANGE_LEN_MAX {
            return Err(format!("range(): more than {RANGE_LEN_MAX} elements"));
        }
        out.push(float_value(x));
        x += step;
    }
    Ok(Value::Array(out))
}

/// Widest field `format()` pads to.
const FORMAT_WIDTH_MAX: usize = 1024;

/// One `%...` directive of a format string, after the `%`.
struct Directive {
    flags: String,
    /// The digits as written; empty means no width.
    width: String,
    precision: Option<usize>,
    verb: char,
}

/// `format(spec, args...)` with the verbs %s %d %f %t %v %q %x %% and flags, width and
/// precision, as cty's format function reads them.
fn format(_: &str, args: &[Value]) -> FnResult {
    let Some(spec) = args.first() else {
        return Err("format() needs a format string".into());
    };
    let spec = string_arg("format", spec)?;
    let mut out = String::new();
    let mut next = 1;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let directive = parse_directive(&mut chars)?;
        if directive.verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            return Err(format!("format(): not enough arguments for \"%{}\"", directive.verb));
        };
        next += 1;
        let text = format_verb(&directive, arg)?;
        pad_into(&mut out, text, &directive)?;
    }
    if next < args.len() {
        return Err(format!("format(): {} argument(s) left over", args.len() - next));
    }
    Ok(Value::String(out))
}

/// Reads flags, width, precision and the verb that follow a `%`.
fn parse_directive(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Directive, String> {
    let mut flags = String::new();
    while let Some(&f) = chars.peek() {
        if "-+ 0#".contains(f) {
            flags.push(f);
            chars.next();
        } else {
            break;
        }
    }
    let mut width = String::new();
    while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
        width.push(d);
        chars.next();
    }
    let mut precision: Option<usize> = None;
    if chars.peek() == Some(&'.') {
        chars.next();
        let mut p = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            p.push(d);
            chars.next();
        }
        precision = Some(p.parse().unwrap_or(0));
    }
    let Some(verb) = chars.next() else {
        return Err("format(): the format string ends in the middle of a verb".into());
    };
    Ok(Directive { flags, width, precision, verb })
}

/// The argument rendered by the verb, truncated to the precision for string verbs.
fn format_verb(directive: &Directive, arg: &Value) -> Result<String, String> {
    let Directive { flags, precision, verb, .. } = directive;
    let verb = *verb;
    let text = match verb {
        's' | 'v' => match arg {
            Value::Array(_) | Value::Object(_) if verb == 'v' => arg.to_string(),
            _ => string_arg("format", arg)?,
        },
        'q' => format!("{:?}", string_arg("format", arg)?),
        't' => to_bool(arg)
            .ok_or_else(|| format!("format(): %t needs a bool, got {}", show(arg)))?
            .to_string(),
        'd' => {
            let n = number_arg("format", arg)?;
            if n.fract() != 0.0 {
                return Err(format!("format(): %d needs a whole number, got {n}"));
            }
            let s = format!("{}", n as i64);
            if flags.contains('+') && n >= 0.0 { format!("+{s}") } else { s }
        }
        'f' => format!("{:.*}", precision.unwrap_or(6), number_arg("format", arg)?),
        'x' => format!("{:x}", number_arg("format", arg)? as i64),
        other => return Err(format!("format(): unsupported verb \"%{other}\"")),
    };
    Ok(match (verb, precision) {
        ('s' | 'v' | 'q', Some(p)) => text.chars().take(*p).collect(),
        _ => text,
    })
}

/// Appends `text` padded to the directive's width: left-aligned with `-`, zero-padded
/// after the sign with `0` for numbers, else right-aligned with spaces.
fn pad_into(out: &mut String, text: String, directive: &Directive) -> Result<(), String> {
    let Directive { flags, precision, verb, .. } = directive;
    let width: usize = directive.width.parse().unwrap_or(0);
    if width > FORMAT_WIDTH_MAX || precision.is_some_and(|p| p > FORMAT_WIDTH_MAX) {
        return Err(format!("format(): width and precision may be at most {FORMAT_WIDTH_MAX}"));
    }
    let len = text.chars().count();
    if len >= width {
        out.push_str(&text);
    } else if flags.contains('-') {
        out.push_str(&text);
        out.extend(std::iter::repeat_n(' ', width - len));
    } else if flags.contains('0') && matches!(verb, 'd' | 'f' | 'x') {
        let (sign, digits) = match text.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", text.as_str()),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', width - len));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat_n(' ', width - len));
        out.push_str(&text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_pads_and_quotes() {
        let out = call(
            "format",
            vec![json!("%03d-%s-%q-%%-%5.1f"), json!(7), json!("a"), json!("b"), json!(2.25)],
        );
        assert_eq!(out, Ok(json!("007-a-\"b\"-%-  2.2")));
    }

    #[test]
    fn functions_are_sorted_for_binary_search() {
        assert!(FUNCTIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn unknown_function_suggests() {
        assert_eq!(
            call("uper", vec![]),
            Err("unknown function \"uper\"; did you mean upper()?".into())
        );
    }
}
