//! Input variables and locals: `variable "x" { type default validation }`, `variables {}`,
//! values from var files (HCL, or JSON by `.json` name) and `-var` flags, then `locals`.
//!
//! Precedence, lowest first: a variable's default, var files in order, `-var` in order.
//! A `-var` string converts to the declared type; for collection types it is parsed as an
//! HCL expression (`-var 'dcs=["a","b"]'`), as Nomad and Terraform do. Assigning an
//! undeclared variable is an error, and so is a variable left without any value.

use super::Diagnostic;
use super::diag::{Diag, Sources, suggest};
use super::eval::{EvalError, Evaluator, VarType, span_of};
use super::schema::VARIABLE_ATTRS;
use super::{ParseOptions, VarFile};
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Block, Body, Structure};
use serde_json::{Map, Value};
use std::ops::Range;

/// The evaluated `var` and `local` objects.
pub(crate) struct Scope {
    pub vars: Map<String, Value>,
    pub locals: Map<String, Value>,
}

struct Declared<'a> {
    name: String,
    span: Range<usize>,
    ty: VarType,
    value: Option<Value>,
    /// The declaration itself is broken (already reported): no "has no value" error.
    broken: bool,
    validations: Vec<&'a Block>,
}

/// Declares, assigns and checks every variable, then evaluates locals. Returns `None` when
/// any of that failed (the errors are in `diags` and `extra`).
pub(crate) fn resolve(
    body: &Body,
    text: &str,
    options: &ParseOptions,
    sources: &mut Sources,
    diags: &mut Vec<Diag>,
    extra: &mut Vec<Diagnostic>,
) -> Option<Scope> {
    let errors_before = diags.len() + extra.len();
    let mut declared = declare_all(body, text, diags);
    assign_var_files(&options.var_files, sources, &mut declared, diags);
    assign_var_flags(&options.vars, &mut declared, extra);
    let vars = assigned_values(&declared, diags);
    for d in &declared {
        if vars.contains_key(&d.name) {
            check_validations(d, text, &vars, diags);
        }
    }
    let locals = evaluate_locals(body, text, &vars, diags);
    if diags.len() + extra.len() > errors_before {
        return None;
    }
    Some(Scope { vars, locals })
}

/// Every `variable` block and `variables` attribute, in source order, with its default.
fn declare_all<'a>(body: &'a Body, text: &str, diags: &mut Vec<Diag>) -> Vec<Declared<'a>> {
    let constant = Evaluator::constant(text);
    let mut declared: Vec<Declared<'_>> = Vec::new();
    for block in body.blocks() {
        match block.ident.value().as_str() {
            "variable" => {
                if let Some(d) = declare(block, &constant, diags) {
                    if let Some(first) = declared.iter().find(|x| x.name == d.name) {
                        let (line, _) = super::diag::line_col(text, first.span.start);
                        diags.push(Diag::new(
                            0,
                            d.span.clone(),
                            format!(
                                "variable \"{}\" is declared twice (first on line {line})",
                                d.name
                            ),
                        ));
                        continue;
                    }
                    declared.push(d);
                }
            }
            "variables" => declare_shorthand(block, &constant, &mut declared, diags),
            _ => {}
        }
    }
    declared
}

/// A `variables { name = default }` block: untyped variables with defaults.
fn declare_shorthand<'a>(
    block: &Block,
    constant: &Evaluator<'_>,
    declared: &mut Vec<Declared<'a>>,
    diags: &mut Vec<Diag>,
) {
    for structure in block.body.iter() {
        let Structure::Attribute(attr) = structure else {
            diags.push(Diag::new(
                0,
                span_of(structure),
                "a variables block holds only name = default attributes",
            ));
            continue;
        };
        let name = attr.key.value().to_string();
        match constant.eval(&attr.value) {
            Ok(value) => declared.push(Declared {
                name,
                span: span_of(attr),
                ty: VarType::Any,
                value: Some(value),
                broken: false,
                validations: Vec::new(),
            }),
            Err(error) => diags.push(eval_diag(0, error)),
        }
    }
}

/// Var files override defaults, in the order given.
fn assign_var_files(
    files: &[VarFile],
    sources: &mut Sources,
    declared: &mut [Declared<'_>],
    diags: &mut Vec<Diag>,
) {
    for file in files {
        let source = sources.add(&file.name, &file.contents);
        for (name, value, span) in read_var_file(file, source, diags) {
            match declared.iter_mut().find(|d| d.name == name) {
                Some(d) => match d.ty.convert(value) {
                    Ok(value) => d.value = Some(value),
                    Err(why) => {
                        diags.push(Diag::new(source, span, format!("variable \"{name}\": {why}")))
                    }
                },
                None => diags.push(Diag::new(source, span, undeclared(&name, declared))),
            }
        }
    }
}

/// `-var` flags override var files, in the order given. Their errors have no source
/// location, so they go to `extra`.
fn assign_var_flags(
    flags: &[(String, String)],
    declared: &mut [Declared<'_>],
    extra: &mut Vec<Diagnostic>,
) {
    for (name, raw) in flags {
        let flag = format!("-var {name}={raw}");
        let flag_error =
            |message: String| Diagnostic { file: flag.clone(), line: 0, column: 0, message };
        let Some(d) = declared.iter_mut().find(|d| &d.name == name) else {
            extra.push(flag_error(undeclared(name, declared)));
            continue;
        };
        match flag_value(&d.ty, raw).and_then(|v| d.ty.convert(v)) {
            Ok(value) => d.value = Some(value),
            Err(why) => extra.push(flag_error(format!("variable \"{name}\": {why}"))),
        }
    }
}

/// A `-var` string as is for primitive types; for collection types it is an HCL
/// expression, as in Nomad and Terraform.
fn flag_value(ty: &VarType, raw: &str) -> Result<Value, String> {
    if ty.is_primitive() {
        return Ok(Value::String(raw.to_owned()));
    }
    match hcl::edit::parser::parse_expr(raw) {
        Ok(expr) => Evaluator::constant(raw).eval(&expr).map_err(|e| e.message),
        Err(error) => Err(format!("not a valid {} value: {}", ty.describe(), error.message())),
    }
}

/// The `var` object; a variable left without any value is an error.
fn assigned_values(declared: &[Declared<'_>], diags: &mut Vec<Diag>) -> Map<String, Value> {
    let mut vars = Map::new();
    for d in declared {
        match &d.value {
            Some(value) => {
                vars.insert(d.name.clone(), value.clone());
            }
            None if d.broken => {}
            None => diags.push(Diag::new(0, d.span.clone(), format!(
                "variable \"{0}\" has no value: give it a default, pass -var {0}=..., or set it in a var file",
                d.name
            ))),
        }
    }
    vars
}

fn undeclared(name: &str, declared: &[Declared<'_>]) -> String {
    let hint = suggest(name, declared.iter().map(|d| d.name.as_str()))
        .map(|s| format!("; did you mean \"{s}\"?"))
        .unwrap_or_default();
    format!("variable \"{name}\" is assigned a value but not declared in the jobspec{hint}")
}

fn eval_diag(source: usize, error: EvalError) -> Diag {
    Diag::new(source, error.span, error.message)
}

/// What a `variable` block's body says, before the default is converted to the type.
struct VariableBody<'a> {
    ty: VarType,
    /// An attribute failed to evaluate (already reported).
    broken: bool,
    default: Option<(Value, Range<usize>)>,
    validations: Vec<&'a Block>,
}

fn declare<'a>(
    block: &'a Block,
    constant: &Evaluator<'_>,
    diags: &mut Vec<Diag>,
) -> Option<Declared<'a>> {
    let span = span_of(block);
    let name = variable_name(block, &span, diags)?;
    let VariableBody { ty, mut broken, default, validations } =
        variable_body(block, &name, constant, diags);
    let value = match default {
        Some((value, _)) if value.is_null() => None,
        Some((value, value_span)) => match ty.convert(value) {
            Ok(value) => Some(value),
            Err(why) => {
                broken = true;
                diags.push(Diag::new(0, value_span, format!("variable \"{name}\" default: {why}")));
                None
            }
        },
        None => None,
    };
    Some(Declared { name, span, ty, value, broken, validations })
}

/// The block's one label, if it is a usable name (`var` and `local` would shadow scopes).
fn variable_name(block: &Block, span: &Range<usize>, diags: &mut Vec<Diag>) -> Option<String> {
    if block.labels.len() != 1 {
        diags.push(Diag::new(
            0,
            span.clone(),
            "a variable block needs exactly one name: variable \"name\" { ... }",
        ));
        return None;
    }
    let name = block.labels[0].as_str().to_owned();
    if name == "var"
        || name == "local"
        || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        diags.push(Diag::new(0, span.clone(), format!("\"{name}\" is not a valid variable name")));
        return None;
    }
    Some(name)
}

fn variable_body<'a>(
    block: &'a Block,
    name: &str,
    constant: &Evaluator<'_>,
    diags: &mut Vec<Diag>,
) -> VariableBody<'a> {
    let mut out =
        VariableBody { ty: VarType::Any, broken: false, default: None, validations: Vec::new() };
    for structure in block.body.iter() {
        match structure {
            Structure::Attribute(attr) => match attr.key.value().as_str() {
                "type" => match VarType::parse(&attr.value) {
                    Ok(t) => out.ty = t,
                    Err(error) => {
                        out.broken = true;
                        diags.push(eval_diag(0, error));
                    }
                },
                "default" => match constant.eval(&attr.value) {
                    Ok(value) => out.default = Some((value, span_of(&attr.value))),
                    Err(error) => {
                        out.broken = true;
                        diags.push(eval_diag(0, error));
                    }
                },
                "description" | "sensitive" | "nullable" => {}
                other => {
                    let hint = suggest(other, VARIABLE_ATTRS.iter().copied())
                        .map(|s| format!("; did you mean \"{s}\"?"))
                        .unwrap_or_default();
                    diags.push(Diag::new(0, span_of(attr), format!(
                        "unknown attribute \"{other}\" in variable \"{name}\"{hint}"
                    )));
                }
            },
            Structure::Block(inner) if inner.ident.value().as_str() == "validation" => out.validations.push(inner),
            Structure::Block(inner) => diags.push(Diag::new(0, span_of(inner), format!(
                "unknown block \"{}\" in variable \"{name}\"; only validation blocks are allowed",
                inner.ident.value()
            ))),
        }
    }
    out
}

fn check_validations(
    d: &Declared<'_>,
    text: &str,
    vars: &Map<String, Value>,
    diags: &mut Vec<Diag>,
) {
    let evaluator = Evaluator::new(text, Some(vars), None);
    for block in &d.validations {
        let condition = block.body.get_attribute("condition");
        let message = block.body.get_attribute("error_message");
        let (Some(condition), Some(message)) = (condition, message) else {
            diags.push(Diag::new(
                0,
                span_of(*block),
                "a validation block needs condition and error_message",
            ));
            continue;
        };
        match evaluator.eval(&condition.value) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => {
                let text = evaluator
                    .eval(&message.value)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "validation failed".into());
                diags.push(Diag::new(
                    0,
                    d.span.clone(),
                    format!("variable \"{}\": {text}", d.name),
                ));
            }
            Ok(other) => diags.push(Diag::new(
                0,
                span_of(&condition.value),
                format!(
                    "validation condition must be a bool, got {}",
                    super::eval::type_name(&other)
                ),
            )),
            Err(error) => diags.push(eval_diag(0, error)),
        }
    }
}

/// `name = value` pairs of a var file with their spans.
fn read_var_file(
    file: &VarFile,
    source: usize,
    diags: &mut Vec<Diag>,
) -> Vec<(String, Value, Range<usize>)> {
    let text = file.contents.as_str();
    if file.name.ends_with(".json") {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .map(|(name, value)| {
                    let at = text.find(&format!("\"{name}\"")).unwrap_or(0);
                    (name, value, at..at)
                })
                .collect(),
            Ok(_) => {
                diags.push(Diag::new(
                    source,
                    0..0,
                    "a JSON var file must hold one object of name: value",
                ));
                Vec::new()
            }
            Err(error) => {
                let at = super::diag::offset_of(text, error.line(), error.column());
                diags.push(Diag::new(source, at..at, format!("invalid JSON: {error}")));
                Vec::new()
            }
        };
    }
    if super::too_deep(text).is_some() {
        diags.push(Diag::new(source, 0..0, "brackets are nested too deeply"));
        return Vec::new();
    }
    let body: Body = match hcl::edit::parser::parse_body(text) {
        Ok(body) => body,
        Err(error) => {
            let location = error.location();
            let at = super::diag::offset_of(text, location.line(), location.column());
            diags.push(Diag::new(source, at..at, format!("syntax error: {}", error.message())));
            return Vec::new();
        }
    };
    let constant = Evaluator::constant(text);
    let mut out = Vec::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => match constant.eval(&attr.value) {
                Ok(value) => out.push((attr.key.value().to_string(), value, span_of(attr))),
                Err(error) => diags.push(eval_diag(source, error)),
            },
            Structure::Block(block) => diags.push(Diag::new(
                source,
                span_of(block),
                "a var file holds only name = value attributes",
            )),
        }
    }
    out
}

/// Evaluates every `locals` attribute, in dependency order.
fn evaluate_locals(
    body: &Body,
    text: &str,
    vars: &Map<String, Value>,
    diags: &mut Vec<Diag>,
) -> Map<String, Value> {
    let mut pending: Vec<(String, &Expression, Range<usize>)> = Vec::new();
    for block in body.blocks().filter(|b| b.ident.value().as_str() == "locals") {
        for structure in block.body.iter() {
            let Structure::Attribute(attr) = structure else {
                diags.push(Diag::new(
                    0,
                    span_of(structure),
                    "a locals block holds only name = value attributes",
                ));
                continue;
            };
            let name = attr.key.value().to_string();
            if pending.iter().any(|(n, _, _)| *n == name) {
                diags.push(Diag::new(
                    0,
                    span_of(attr),
                    format!("local value \"{name}\" is declared twice"),
                ));
                continue;
            }
            pending.push((name, &attr.value, span_of(attr)));
        }
    }
    let mut locals = Map::new();
    loop {
        let names: Vec<String> = pending.iter().map(|(n, _, _)| n.clone()).collect();
        let mut progress = false;
        let mut still = Vec::new();
        let mut last_errors = Vec::new();
        for (name, expr, span) in pending {
            let result = {
                let mut evaluator = Evaluator::new(text, Some(vars), Some(&locals));
                evaluator.pending_locals = &names;
                evaluator.eval(expr)
            };
            match result {
                Ok(value) => {
                    locals.insert(name, value);
                    progress = true;
                }
                Err(error) if error.pending_local.is_some() => {
                    last_errors.push(error);
                    still.push((name, expr, span));
                }
                Err(error) => {
                    diags.push(eval_diag(0, error));
                    locals.insert(name, Value::Null);
                    progress = true;
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if !progress {
            for error in last_errors {
                diags.push(eval_diag(0, error));
            }
            break;
        }
    }
    locals
}
