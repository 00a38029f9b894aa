//! HCL jobspecs to [`crate::model::Job`], the way `nomad job run` reads them (jobspec2).
//!
//! The pipeline, each stage collecting every error it can before the next:
//! 1. bytes: size ([`SOURCE_LEN_MAX_BYTES`]), UTF-8, NUL bytes, nesting depth
//!    ([`NESTING_DEPTH_MAX`]), then HCL syntax through `hcl::edit` (which keeps spans);
//! 2. `variable`/`variables` blocks, values from var files and `-var` (later wins), then
//!    `locals` ([`vars`]);
//! 3. lowering the `job` block to Nomad's API JSON form with a span table ([`lower`]);
//! 4. [`crate::model::job_from_api_json`], the one canonicalize step (defaults, merges);
//! 5. [`crate::model::validate_job`], whose field paths map back to `file:line:col`.
//!
//! Runtime interpolations (`${attr.kernel.name}`, `${NOMAD_PORT_http}`, `${meta.rack}`)
//! stay literal text for the client to resolve.

mod diag;
mod eval;
mod funcs;
mod lower;
mod schema;
mod vars;

use crate::model::{self, Job, PathSegment};
use diag::{Diag, Sources};
use hcl::edit::structure::{Block, Body, Structure};
use std::fmt;
use std::ops::Range;

pub use diag::line_col;
pub use lower::parse_duration;

/// The largest jobspec accepted, in bytes.
pub const SOURCE_LEN_MAX_BYTES: usize = 10 * 1024 * 1024;
/// The deepest bracket nesting (`{`, `[`, `(`) accepted; deeper input is refused before
/// the parser sees it, so no input can exhaust the stack.
pub const NESTING_DEPTH_MAX: usize = 64;

/// What `-var` and `-var-file` supply.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// `-var name=value`, in command-line order; later values win.
    pub vars: Vec<(String, String)>,
    /// `-var-file`, in command-line order, applied before `vars`.
    pub var_files: Vec<VarFile>,
}

/// A variable file's name (for messages; `.json` selects JSON) and contents. Core reads no
/// files: the caller does.
#[derive(Clone, Debug)]
pub struct VarFile {
    pub name: String,
    pub contents: String,
}

/// One error, located. `line` and `column` are 1-based (columns count characters); both are
/// 0 when the error is not in a file (a `-var` flag), and `file` names the flag instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// Every error found in a jobspec, in file order. Displays one `file:line:col: message`
/// line per error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// Parses, canonicalizes and validates a jobspec.
pub fn parse(filename: &str, source: &[u8], options: &ParseOptions) -> Result<Job, Report> {
    let text = source_text(filename, source)?;
    let body = syntax(filename, text)?;
    let mut sources = Sources::default();
    sources.add(filename, text);
    let mut diags: Vec<Diag> = Vec::new();
    let mut extra: Vec<Diagnostic> = Vec::new();
    let finish = |sources: &Sources, diags: &[Diag], extra: Vec<Diagnostic>| {
        let mut diagnostics = sources.resolve(diags);
        diagnostics.extend(extra);
        Report { diagnostics }
    };

    let jobs = top_level_jobs(&body, &mut diags);
    let scope = vars::resolve(&body, text, options, &mut sources, &mut diags, &mut extra);
    let Some(first_job) = jobs.first() else {
        diags.push(Diag::new(0, 0..0, "no job block found; a jobspec needs job \"name\" { ... }"));
        return Err(finish(&sources, &diags, extra));
    };
    check_one_job(text, &jobs, &mut diags);
    let Some(scope) = scope else {
        return Err(finish(&sources, &diags, extra));
    };
    if !extra.is_empty() {
        return Err(finish(&sources, &diags, extra));
    }

    let mut lowerer =
        lower::Lowerer::new(eval::Evaluator::new(text, Some(&scope.vars), Some(&scope.locals)));
    let value = lowerer.job(first_job);
    diags.append(&mut lowerer.diags);
    let job_span = eval::span_of(*first_job);
    let locate = |path: &str| -> Range<usize> {
        locate(&lowerer.spans, path).unwrap_or_else(|| job_span.clone())
    };
    let job = canonical_job(value, &locate, &mut diags);
    for error in job.as_ref().map(model::validate_job).unwrap_or_default() {
        let key = path_key(&error.path);
        if !lowerer.failed.contains(&key) {
            diags.push(Diag::new(0, locate(&key), error.message));
        }
    }
    match job {
        Some(job) if diags.is_empty() => Ok(job),
        _ => Err(finish(&sources, &diags, extra)),
    }
}

/// A report of one error at `line:column`, for the checks made before there is a syntax tree.
fn located(filename: &str, line: u32, column: u32, message: String) -> Report {
    Report { diagnostics: vec![Diagnostic { file: filename.to_owned(), line, column, message }] }
}

/// The bytes as text, if they are a sane size, UTF-8, free of NUL bytes and not nested
/// deeper than [`NESTING_DEPTH_MAX`]: the checks that keep hostile input away from the parser.
fn source_text<'a>(filename: &str, source: &'a [u8]) -> Result<&'a str, Report> {
    if source.len() > SOURCE_LEN_MAX_BYTES {
        let message = format!(
            "the file is {} bytes; a jobspec may be at most {SOURCE_LEN_MAX_BYTES} bytes (10 MiB)",
            source.len(),
        );
        return Err(located(filename, 1, 1, message));
    }
    let text = std::str::from_utf8(source).map_err(|error| {
        let valid = &source[..error.valid_up_to()];
        let prefix = std::str::from_utf8(valid).unwrap_or_default();
        let (line, column) = diag::line_col(prefix, prefix.len());
        let message =
            format!("invalid UTF-8 at byte {}; a jobspec must be UTF-8 text", error.valid_up_to());
        located(filename, line, column, message)
    })?;
    if let Some(offset) = text.find('\0') {
        let (line, column) = diag::line_col(text, offset);
        let message = "NUL byte in the file; a jobspec must be text".to_owned();
        return Err(located(filename, line, column, message));
    }
    if let Some(offset) = too_deep(text) {
        let (line, column) = diag::line_col(text, offset);
        let message = format!("brackets are nested more than {NESTING_DEPTH_MAX} levels deep");
        return Err(located(filename, line, column, message));
    }
    Ok(text)
}

/// The HCL syntax tree, spans kept, or the parser's one error.
fn syntax(filename: &str, text: &str) -> Result<Body, Report> {
    hcl::edit::parser::parse_body(text).map_err(|error| {
        let location = error.location();
        located(
            filename,
            u32::try_from(location.line()).unwrap_or(u32::MAX),
            u32::try_from(location.column()).unwrap_or(u32::MAX),
            format!("syntax error: {}", error.message()),
        )
    })
}

/// The `job` blocks at the top of the file; anything there but jobs, variables and locals
/// is an error.
fn top_level_jobs<'b>(body: &'b Body, diags: &mut Vec<Diag>) -> Vec<&'b Block> {
    let mut jobs = Vec::new();
    for structure in body.iter() {
        match structure {
            Structure::Block(block) => match block.ident.value().as_str() {
                "job" => jobs.push(block),
                "variable" | "variables" | "locals" => {}
                other => {
                    let hint = diag::suggest(other, schema::TOP_LEVEL.iter().copied())
                        .map(|s| format!("; did you mean \"{s}\"?"))
                        .unwrap_or_default();
                    let message = format!("unknown block \"{other}\" at the top level{hint}");
                    diags.push(Diag::new(0, eval::span_of(block), message));
                }
            },
            Structure::Attribute(attr) => {
                let message = format!(
                    "unexpected attribute \"{}\" at the top level; attributes belong inside \
                     the job block",
                    attr.key.value()
                );
                diags.push(Diag::new(0, eval::span_of(attr), message));
            }
        }
    }
    jobs
}

/// One job per file, with one name.
fn check_one_job(text: &str, jobs: &[&Block], diags: &mut Vec<Diag>) {
    let Some(first) = jobs.first() else { return };
    for other in jobs.iter().skip(1) {
        let (line, _) = diag::line_col(text, eval::span_of(*first).start);
        diags.push(Diag::new(
            0,
            eval::span_of(*other),
            format!("only one job block is allowed per file; the first is on line {line}"),
        ));
    }
    if first.labels.len() != 1 {
        diags.push(Diag::new(
            0,
            eval::span_of(*first),
            "a job block needs exactly one name: job \"name\" { ... }",
        ));
    }
}

/// How many refused fields canonicalize may drop before giving up; each drop removes a
/// field, so this only bounds the work on a file full of them.
const CANONICALIZE_RETRIES_MAX: usize = 32;

/// The canonical job. A field the model refuses (an unknown job type, a number out of
/// range) is reported, dropped and the rest tried again, so that one bad value does not
/// hide the validation errors of everything else.
fn canonical_job(
    mut value: serde_json::Value,
    locate: &dyn Fn(&str) -> Range<usize>,
    diags: &mut Vec<Diag>,
) -> Option<Job> {
    for _ in 0..CANONICALIZE_RETRIES_MAX {
        match model::job_from_api_json(value.clone()) {
            Ok(job) => return Some(job),
            Err(error) => {
                diags.push(Diag::new(0, locate(&error.path), error.message));
                if !remove_path(&mut value, error.path.trim_start_matches('.')) {
                    return None;
                }
            }
        }
    }
    None
}

/// Removes the field at `TaskGroups[0].Tasks[1].Resources.CPU` from a job document;
/// `false` when there is no such field.
fn remove_path(value: &mut serde_json::Value, path: &str) -> bool {
    let (parent, last) = match path.rfind(['.', '[']) {
        Some(cut) => (&path[..cut], path[cut..].trim_start_matches('.')),
        None => ("", path),
    };
    let mut node = value;
    for part in parent.split(['.', '[']).filter(|p| !p.is_empty()) {
        let next = match part.strip_suffix(']') {
            Some(index) => index.parse::<usize>().ok().and_then(|i| node.get_mut(i)),
            None => node.get_mut(part),
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match (last.strip_suffix(']'), node) {
        (Some(index), serde_json::Value::Array(items)) => match index.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        (None, serde_json::Value::Object(map)) => map.remove(last).is_some(),
        _ => false,
    }
}

/// The span table key of a validation path: `TaskGroups[0].Tasks[1].Driver`.
fn path_key(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            PathSegment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            PathSegment::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

/// Where a group's merged policy field came from when the group did not set it: the
/// job's block (update, migrate, reschedule), or for a task's restart, its group's.
fn inherited(path: &str) -> Option<String> {
    let rest = path.strip_prefix("TaskGroups[")?;
    let (index, rest) = rest.split_once("].")?;
    if let Some((_, field)) =
        rest.strip_prefix("Tasks[").and_then(|r| r.split_once("].RestartPolicy."))
    {
        return Some(format!("TaskGroups[{index}].RestartPolicy.{field}"));
    }
    // The whole policy (`TaskGroups[0].ReschedulePolicy`) or one of its fields.
    let (policy, field) = rest.split_once('.').unwrap_or((rest, ""));
    let job_key = match policy {
        "Update" => "Update",
        "Migrate" => "Migrate",
        "ReschedulePolicy" => "Reschedule",
        _ => return None,
    };
    Some(if field.is_empty() { job_key.to_owned() } else { format!("{job_key}.{field}") })
}

/// The span of a path, of the job-level field it inherited, or of its nearest ancestor
/// that has one.
fn locate(spans: &lower::SpanTable, path: &str) -> Option<Range<usize>> {
    let path = path.trim_start_matches('.');
    if !spans.contains_key(path)
        && let Some(span) = inherited(path).and_then(|p| spans.get(&p))
    {
        return Some(span.clone());
    }
    let mut path = path;
    loop {
        if let Some(span) = spans.get(path) {
            return Some(span.clone());
        }
        if path.is_empty() {
            return None;
        }
        let cut = path.rfind(['.', '[']).unwrap_or(0);
        path = &path[..cut];
    }
}

/// The offset where bracket nesting first exceeds [`NESTING_DEPTH_MAX`], if it does.
/// Brackets inside strings and comments count too: this is a bound, not a parser.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, byte) in text.bytes().enumerate() {
        match byte {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > NESTING_DEPTH_MAX {
                    return Some(offset);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}
