//! Expression evaluation: HCL2 expressions and templates to JSON values.
//!
//! hcl-rs evaluates without spans and stops at the first error, so drover evaluates the
//! `hcl::edit` syntax tree itself: every error names the byte range of the sub-expression
//! that failed. `var.x` and `local.x` resolve against the declared variables and locals;
//! any other root name (`attr`, `node`, `meta`, `env`, `NOMAD_*`, ...) is a runtime
//! interpolation and evaluates to its own source text, `${attr.kernel.name}`, so a client
//! can resolve it later (what Nomad's jobspec2 does).

use super::funcs;
use hcl::edit::Span;
use hcl::edit::expr::{
    BinaryOp, BinaryOperator, Expression, ForExpr, FuncCall, Object, ObjectKey, Traversal,
    TraversalOperator, UnaryOp, UnaryOperator,
};
use hcl::edit::template::{Directive, Element, ForDirective, IfDirective, Template};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::ops::Range;

/// Deepest expression nesting evaluated; the parser input is bounded too, this is the
/// evaluator's own guard.
pub(crate) const EVAL_DEPTH_MAX: usize = 200;
/// Most expression nodes one evaluator visits, so nested `for` loops cannot spin forever.
pub(crate) const EVAL_STEPS_MAX: u64 = 1_000_000;
/// Largest value (roughly, in bytes) an expression may build, so doubling strings or lists
/// through locals cannot exhaust memory.
pub(crate) const VALUE_LEN_MAX_BYTES: usize = 16 * 1024 * 1024;

/// An evaluation failure at a span of the source being evaluated.
#[derive(Clone, Debug)]
pub(crate) struct EvalError {
    pub span: Range<usize>,
    pub message: String,
    /// `local.<name>` was read before it was evaluated: the locals pass retries later.
    pub pending_local: Option<String>,
}

impl EvalError {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> EvalError {
        EvalError { span, message: message.into(), pending_local: None }
    }
}

pub(crate) type EvalResult = Result<Value, EvalError>;

pub(crate) fn span_of(node: &impl Span) -> Range<usize> {
    node.span().unwrap_or(0..0)
}

/// What names an expression may refer to.
pub(crate) struct Evaluator<'a> {
    pub src: &'a str,
    /// `None`: `var.*` is not allowed here (var files, variable defaults).
    pub vars: Option<&'a Map<String, Value>>,
    /// `None`: `local.*` is not allowed here.
    pub locals: Option<&'a Map<String, Value>>,
    /// Locals declared but not evaluated yet (reading one is a "pending" error).
    pub pending_locals: &'a [String],
    depth: Cell<usize>,
    steps: Cell<u64>,
    /// Names bound from outside an expression: `dynamic` block iterators.
    pub bindings: std::cell::RefCell<Vec<(String, Value)>>,
}

struct Scope {
    names: Vec<(String, Value)>,
}

impl Scope {
    fn get(&self, name: &str) -> Option<&Value> {
        self.names.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl Evaluator<'_> {
    /// A for-expression variable or a dynamic block iterator.
    fn bound(&self, scope: &Scope, name: &str) -> Option<Value> {
        scope.get(name).cloned().or_else(|| {
            self.bindings.borrow().iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        })
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(
        src: &'a str,
        vars: Option<&'a Map<String, Value>>,
        locals: Option<&'a Map<String, Value>>,
    ) -> Evaluator<'a> {
        Evaluator {
            src,
            vars,
            locals,
            pending_locals: &[],
            depth: Cell::new(0),
            steps: Cell::new(0),
            bindings: Default::default(),
        }
    }

    /// A constant context: no variables, no locals (var files, defaults, `-var` values).
    pub fn constant(src: &'a str) -> Evaluator<'a> {
        Evaluator::new(src, None, None)
    }

    /// Evaluates one expression; the step budget is per call.
    pub fn eval(&self, expr: &Expression) -> EvalResult {
        self.steps.set(0);
        let mut scope = Scope { names: Vec::new() };
        self.expr(expr, &mut scope)
    }

    fn expr(&self, expr: &Expression, scope: &mut Scope) -> EvalResult {
        let depth = self.depth.get() + 1;
        if depth > EVAL_DEPTH_MAX {
            return Err(EvalError::new(span_of(expr), "expression is nested too deeply"));
        }
        let steps = self.steps.get() + 1;
        if steps > EVAL_STEPS_MAX {
            return Err(EvalError::new(
                span_of(expr),
                "expression takes too many steps to evaluate",
            ));
        }
        self.steps.set(steps);
        self.depth.set(depth);
        let result = self.expr_inner(expr, scope);
        self.depth.set(depth - 1);
        let value = result?;
        let builds = matches!(
            expr,
            Expression::FuncCall(_)
                | Expression::StringTemplate(_)
                | Expression::HeredocTemplate(_)
                | Expression::ForExpr(_)
                | Expression::BinaryOp(_)
        );
        if builds && value_len(&value, 0) > VALUE_LEN_MAX_BYTES {
            return Err(EvalError::new(
                span_of(expr),
                format!("value is larger than {VALUE_LEN_MAX_BYTES} bytes"),
            ));
        }
        Ok(value)
    }

    fn expr_inner(&self, expr: &Expression, scope: &mut Scope) -> EvalResult {
        let span = span_of(expr);
        match expr {
            Expression::Null(_) => Ok(Value::Null),
            Expression::Bool(b) => Ok(Value::Bool(*b.value())),
            Expression::Number(n) => Ok(number_value(n.value())),
            Expression::String(s) => Ok(Value::String(s.value().clone())),
            Expression::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    out.push(self.expr(item, scope)?);
                }
                Ok(Value::Array(out))
            }
            Expression::Object(object) => self.object(object, scope),
            Expression::StringTemplate(template) => self.template(template, scope, true),
            Expression::HeredocTemplate(heredoc) => self.template(&heredoc.template, scope, false),
            Expression::Parenthesis(inner) => self.expr(inner.inner(), scope),
            Expression::Variable(ident) => self.variable(expr, ident.value().as_str(), scope),
            Expression::Traversal(traversal) => self.traversal(expr, traversal, scope),
            Expression::FuncCall(call) => self.func_call(call, scope, span),
            Expression::Conditional(cond) => {
                let test = self.expr(&cond.cond_expr, scope)?;
                match to_bool(&test) {
                    Some(true) => self.expr(&cond.true_expr, scope),
                    Some(false) => self.expr(&cond.false_expr, scope),
                    None => Err(EvalError::new(
                        span_of(&cond.cond_expr),
                        format!("condition must be a bool, got {}", type_name(&test)),
                    )),
                }
            }
            Expression::UnaryOp(op) => self.unary_op(op, scope, span),
            Expression::BinaryOp(op) => self.binary_op(op, scope, span),
            Expression::ForExpr(for_expr) => self.for_expr(for_expr, scope, span),
        }
    }

    fn object(&self, object: &Object, scope: &mut Scope) -> EvalResult {
        let mut out = Map::new();
        for (key, value) in object.iter() {
            let name = match key {
                ObjectKey::Ident(ident) => ident.value().to_string(),
                // A bare name as a key is the name, not the variable (`{ a = 1 }`).
                ObjectKey::Expression(Expression::Variable(ident)) => ident.value().to_string(),
                ObjectKey::Expression(key_expr) => {
                    let key_value = self.expr(key_expr, scope)?;
                    to_template_string(&key_value)
                        .map_err(|m| EvalError::new(span_of(key_expr), m))?
                }
            };
            out.insert(name, self.expr(value.expr(), scope)?);
        }
        Ok(Value::Object(out))
    }

    /// A bare name: a `for` binding, the whole `var` or `local` object, or runtime text.
    fn variable(&self, expr: &Expression, name: &str, scope: &Scope) -> EvalResult {
        if let Some(value) = self.bound(scope, name) {
            return Ok(value);
        }
        let span = span_of(expr);
        match name {
            "var" => self
                .vars
                .map(|v| Value::Object(v.clone()))
                .ok_or_else(|| EvalError::new(span, "variables cannot be used here")),
            "local" => self
                .locals
                .map(|v| Value::Object(v.clone()))
                .ok_or_else(|| EvalError::new(span, "locals cannot be used here")),
            _ => Ok(self.runtime_text(expr)),
        }
    }

    /// `root.a[0].b`: resolves the root, then walks the operators. A root that is neither
    /// bound, `var` nor `local` makes the whole traversal runtime text.
    fn traversal(&self, expr: &Expression, traversal: &Traversal, scope: &mut Scope) -> EvalResult {
        let span = span_of(expr);
        let root_name = match &traversal.expr {
            Expression::Variable(ident) => Some(ident.value().as_str()),
            _ => None,
        };
        let mut operators = traversal.operators.iter().map(|op| op.value()).peekable();
        let value = match root_name {
            Some(name) if self.bound(scope, name).is_some() => {
                self.bound(scope, name).unwrap_or(Value::Null)
            }
            Some(name @ ("var" | "local")) => {
                let Some(TraversalOperator::GetAttr(attr)) = operators.next() else {
                    return Err(EvalError::new(
                        span,
                        format!("{name} must be followed by a name, as in {name}.example"),
                    ));
                };
                self.named(name, attr.value().as_str(), span.clone())?
            }
            Some(_) => return Ok(self.runtime_text(expr)),
            None => self.expr(&traversal.expr, scope)?,
        };
        let rest: Vec<&TraversalOperator> = operators.collect();
        self.traverse(value, &rest, scope, &span)
    }

    fn func_call(&self, call: &FuncCall, scope: &mut Scope, span: Range<usize>) -> EvalResult {
        let name = call.name.name.value().as_str();
        if call.name.is_namespaced() {
            return Err(EvalError::new(
                span,
                format!("unknown function \"{name}\"; namespaced functions are not supported"),
            ));
        }
        let mut args = Vec::with_capacity(call.args.len());
        for arg in call.args.iter() {
            args.push(self.expr(arg, scope)?);
        }
        if call.args.expand_final() {
            match args.pop() {
                Some(Value::Array(items)) => args.extend(items),
                _ => {
                    return Err(EvalError::new(
                        span,
                        format!("{name}: the argument before ... must be a list"),
                    ));
                }
            }
        }
        funcs::call(name, args).map_err(|message| EvalError::new(span, message))
    }

    fn unary_op(&self, op: &UnaryOp, scope: &mut Scope, span: Range<usize>) -> EvalResult {
        let value = self.expr(&op.expr, scope)?;
        match op.operator.value() {
            UnaryOperator::Neg => match to_number(&value) {
                Some(n) => Ok(float_value(-n)),
                None => Err(EvalError::new(span, format!("cannot negate {}", type_name(&value)))),
            },
            UnaryOperator::Not => match to_bool(&value) {
                Some(b) => Ok(Value::Bool(!b)),
                None => {
                    Err(EvalError::new(span, format!("cannot apply ! to {}", type_name(&value))))
                }
            },
        }
    }

    /// `&&` and `||` short-circuit: the right side is not evaluated when the left decides.
    fn binary_op(&self, op: &BinaryOp, scope: &mut Scope, span: Range<usize>) -> EvalResult {
        let operator = *op.operator.value();
        let lhs = self.expr(&op.lhs_expr, scope)?;
        if matches!(operator, BinaryOperator::And | BinaryOperator::Or) {
            let l = to_bool(&lhs).ok_or_else(|| {
                EvalError::new(span_of(&op.lhs_expr), "logical operators need bools")
            })?;
            if (operator == BinaryOperator::And && !l) || (operator == BinaryOperator::Or && l) {
                return Ok(Value::Bool(l));
            }
            let rhs = self.expr(&op.rhs_expr, scope)?;
            return to_bool(&rhs).map(Value::Bool).ok_or_else(|| {
                EvalError::new(span_of(&op.rhs_expr), "logical operators need bools")
            });
        }
        let rhs = self.expr(&op.rhs_expr, scope)?;
        binary(operator, &lhs, &rhs).map_err(|m| EvalError::new(span, m))
    }

    /// `var.name` or `local.name`.
    fn named(&self, root: &str, name: &str, span: Range<usize>) -> EvalResult {
        let table = if root == "var" { self.vars } else { self.locals };
        let Some(table) = table else {
            let what = if root == "var" { "variables" } else { "locals" };
            return Err(EvalError::new(span, format!("{what} cannot be used here")));
        };
        if let Some(value) = table.get(name) {
            return Ok(value.clone());
        }
        if root == "local" && self.pending_locals.iter().any(|p| p == name) {
            return Err(EvalError {
                span,
                message: format!("local.{name} is part of a cycle"),
                pending_local: Some(name.to_owned()),
            });
        }
        let kind = if root == "var" { "variable" } else { "local value" };
        let hint = super::diag::suggest(name, table.keys().map(String::as_str))
            .map(|s| format!("; did you mean {root}.{s}?"))
            .unwrap_or_default();
        Err(EvalError::new(span, format!("undeclared {kind} {root}.{name}{hint}")))
    }

    fn traverse(
        &self,
        mut value: Value,
        operators: &[&TraversalOperator],
        scope: &mut Scope,
        span: &Range<usize>,
    ) -> EvalResult {
        for (i, op) in operators.iter().enumerate() {
            value = match op {
                TraversalOperator::GetAttr(name) => {
                    let name = name.value().as_str();
                    match &value {
                        Value::Object(map) => map.get(name).cloned().ok_or_else(|| {
                            EvalError::new(
                                span.clone(),
                                format!("object has no attribute \"{name}\""),
                            )
                        })?,
                        other => {
                            return Err(EvalError::new(
                                span.clone(),
                                format!("cannot read attribute \"{name}\" of {}", type_name(other)),
                            ));
                        }
                    }
                }
                TraversalOperator::Index(index_expr) => {
                    let index = self.expr(index_expr, scope)?;
                    index_value(&value, &index)
                        .map_err(|m| EvalError::new(span_of(index_expr), m))?
                }
                TraversalOperator::LegacyIndex(n) => index_value(&value, &Value::from(*n.value()))
                    .map_err(|m| EvalError::new(span.clone(), m))?,
                TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_) => {
                    let items = match value {
                        Value::Array(items) => items,
                        Value::Null => Vec::new(),
                        other => vec![other],
                    };
                    let rest = &operators[i + 1..];
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(self.traverse(item, rest, scope, span)?);
                    }
                    return Ok(Value::Array(out));
                }
            };
        }
        Ok(value)
    }

    fn for_expr(&self, for_expr: &ForExpr, scope: &mut Scope, span: Range<usize>) -> EvalResult {
        let collection = self.expr(&for_expr.intro.collection_expr, scope)?;
        let pairs = key_value_pairs(collection).map_err(|other| {
            EvalError::new(
                span_of(&for_expr.intro.collection_expr),
                format!("for expression needs a list or an object, got {}", type_name(&other)),
            )
        })?;
        let key_var = for_expr.intro.key_var.as_ref().map(|k| k.value().to_string());
        let value_var = for_expr.intro.value_var.value().to_string();
        let mut list = Vec::new();
        let mut object = Map::new();
        for (key, value) in pairs {
            let mark = scope.names.len();
            if let Some(key_var) = &key_var {
                scope.names.push((key_var.clone(), key));
            }
            scope.names.push((value_var.clone(), value));
            let result = self.for_item(for_expr, scope, &span, &mut list, &mut object);
            scope.names.truncate(mark);
            result?;
        }
        if for_expr.key_expr.is_some() { Ok(Value::Object(object)) } else { Ok(Value::Array(list)) }
    }

    fn for_item(
        &self,
        for_expr: &ForExpr,
        scope: &mut Scope,
        span: &Range<usize>,
        list: &mut Vec<Value>,
        object: &mut Map<String, Value>,
    ) -> Result<(), EvalError> {
        if let Some(cond) = &for_expr.cond {
            let keep = self.expr(&cond.expr, scope)?;
            match to_bool(&keep) {
                Some(true) => {}
                Some(false) => return Ok(()),
                None => {
                    return Err(EvalError::new(
                        span_of(&cond.expr),
                        "for condition must be a bool",
                    ));
                }
            }
        }
        let value = self.expr(&for_expr.value_expr, scope)?;
        let Some(key_expr) = &for_expr.key_expr else {
            list.push(value);
            return Ok(());
        };
        let key = self.expr(key_expr, scope)?;
        let key = to_template_string(&key).map_err(|m| EvalError::new(span_of(key_expr), m))?;
        if for_expr.grouping {
            if let Value::Array(items) =
                object.entry(key).or_insert_with(|| Value::Array(Vec::new()))
            {
                items.push(value);
            }
        } else if object.insert(key.clone(), value).is_some() {
            return Err(EvalError::new(
                span.clone(),
                format!("duplicate key \"{key}\" in for expression; use ... to group"),
            ));
        }
        Ok(())
    }

    fn template(&self, template: &Template, scope: &mut Scope, quoted: bool) -> EvalResult {
        // A quoted template that is one interpolation yields the value itself ("${var.n}").
        if quoted
            && template.len() == 1
            && let Some(Element::Interpolation(interp)) = template.iter().next()
        {
            return self.expr(&interp.expr, scope);
        }
        let mut out = String::new();
        self.template_into(template, scope, &mut out, &mut false)?;
        Ok(Value::String(out))
    }

    fn template_into(
        &self,
        template: &Template,
        scope: &mut Scope,
        out: &mut String,
        strip_next: &mut bool,
    ) -> Result<(), EvalError> {
        for element in template.iter() {
            match element {
                Element::Literal(text) => {
                    let text = text.value().as_str();
                    if *strip_next {
                        out.push_str(text.trim_start());
                    } else {
                        out.push_str(text);
                    }
                    *strip_next = false;
                }
                Element::Interpolation(interp) => {
                    if interp.strip.strip_start() {
                        trim_end_in_place(out);
                    }
                    let value = self.expr(&interp.expr, scope)?;
                    let text = to_template_string(&value)
                        .map_err(|m| EvalError::new(span_of(&interp.expr), m))?;
                    out.push_str(&text);
                    *strip_next = interp.strip.strip_end();
                }
                Element::Directive(directive) => match directive.as_ref() {
                    Directive::If(if_dir) => self.template_if(if_dir, scope, out, strip_next)?,
                    Directive::For(for_dir) => {
                        self.template_for(for_dir, scope, out, strip_next)?
                    }
                },
            }
        }
        Ok(())
    }

    /// `%{if}...%{else}...%{endif}`.
    fn template_if(
        &self,
        if_dir: &IfDirective,
        scope: &mut Scope,
        out: &mut String,
        strip_next: &mut bool,
    ) -> Result<(), EvalError> {
        if if_dir.if_expr.strip.strip_start() {
            trim_end_in_place(out);
        }
        *strip_next = if_dir.if_expr.strip.strip_end();
        let cond = self.expr(&if_dir.if_expr.cond_expr, scope)?;
        let chosen = match to_bool(&cond) {
            Some(true) => Some(&if_dir.if_expr.template),
            Some(false) => if_dir.else_expr.as_ref().map(|e| &e.template),
            None => {
                return Err(EvalError::new(
                    span_of(&if_dir.if_expr.cond_expr),
                    "%{if} condition must be a bool",
                ));
            }
        };
        if let Some(chosen) = chosen {
            self.template_into(chosen, scope, out, strip_next)?;
        }
        *strip_next = if_dir.endif_expr.strip.strip_end();
        Ok(())
    }

    /// `%{for k, v in collection}...%{endfor}`.
    fn template_for(
        &self,
        for_dir: &ForDirective,
        scope: &mut Scope,
        out: &mut String,
        strip_next: &mut bool,
    ) -> Result<(), EvalError> {
        let fe = &for_dir.for_expr;
        let collection = self.expr(&fe.collection_expr, scope)?;
        let pairs = key_value_pairs(collection).map_err(|other| {
            EvalError::new(
                span_of(&fe.collection_expr),
                format!("%{{for}} needs a list or an object, got {}", type_name(&other)),
            )
        })?;
        for (key, value) in pairs {
            let mark = scope.names.len();
            if let Some(k) = &fe.key_var {
                scope.names.push((k.value().to_string(), key));
            }
            scope.names.push((fe.value_var.value().to_string(), value));
            *strip_next = fe.strip.strip_end();
            let result = self.template_into(&fe.template, scope, out, strip_next);
            scope.names.truncate(mark);
            result?;
        }
        *strip_next = for_dir.endfor_expr.strip.strip_end();
        Ok(())
    }

    /// A runtime interpolation: its own source text, wrapped in `${...}`.
    fn runtime_text(&self, expr: &Expression) -> Value {
        let text = expr
            .span()
            .and_then(|s| self.src.get(s))
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|| expr.to_string().trim().to_owned());
        Value::String(format!("${{{text}}}"))
    }
}

/// What a `for` iterates: (index, element) of a list or (key, value) of an object; any
/// other value is given back for the caller's error.
pub(crate) fn key_value_pairs(collection: Value) -> Result<Vec<(Value, Value)>, Value> {
    match collection {
        Value::Array(items) => {
            Ok(items.into_iter().enumerate().map(|(i, v)| (Value::from(i as u64), v)).collect())
        }
        Value::Object(map) => Ok(map.into_iter().map(|(k, v)| (Value::String(k), v)).collect()),
        other => Err(other),
    }
}

/// Roughly how many bytes a value holds; stops counting past the limit.
fn value_len(value: &Value, acc: usize) -> usize {
    if acc > VALUE_LEN_MAX_BYTES {
        return acc;
    }
    match value {
        Value::String(s) => acc + s.len(),
        Value::Array(items) => items.iter().fold(acc + 8, |a, v| value_len(v, a)),
        Value::Object(map) => map.iter().fold(acc + 8, |a, (k, v)| value_len(v, a + k.len())),
        _ => acc + 8,
    }
}

fn trim_end_in_place(out: &mut String) {
    let len = out.trim_end().len();
    out.truncate(len);
}

pub(crate) fn number_value(n: &hcl::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        float_value(n.as_f64().unwrap_or(0.0))
    }
}

/// A number as JSON, integral values as integers (HCL numbers have one type).
pub(crate) fn float_value(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

pub(crate) fn to_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

pub(crate) fn to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The text a value contributes to a template (and to a string attribute).
pub(crate) fn to_template_string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("cannot use null as a string".into()),
        Value::Array(_) => Err("cannot use a list as a string; join or jsonencode it".into()),
        Value::Object(_) => Err("cannot use an object as a string; jsonencode it".into()),
    }
}

fn index_value(value: &Value, index: &Value) -> Result<Value, String> {
    match value {
        Value::Array(items) => {
            let i = to_number(index).ok_or_else(|| "a list index must be a number".to_owned())?;
            if i < 0.0 || i.fract() != 0.0 || i as usize >= items.len() {
                return Err(format!(
                    "index {i} is out of range for a list of {} items",
                    items.len()
                ));
            }
            Ok(items[i as usize].clone())
        }
        Value::Object(map) => {
            let key = to_template_string(index)?;
            map.get(&key).cloned().ok_or_else(|| format!("object has no key \"{key}\""))
        }
        other => Err(format!("cannot index {}", type_name(other))),
    }
}

/// Equality as HCL sees it: numbers by value, everything else structurally.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn binary(op: BinaryOperator, lhs: &Value, rhs: &Value) -> Result<Value, String> {
    use BinaryOperator as B;
    match op {
        B::Eq => return Ok(Value::Bool(values_equal(lhs, rhs))),
        B::NotEq => return Ok(Value::Bool(!values_equal(lhs, rhs))),
        _ => {}
    }
    let (Some(l), Some(r)) = (to_number(lhs), to_number(rhs)) else {
        return Err(format!(
            "operator {} needs numbers, got {} and {}",
            op.as_str(),
            type_name(lhs),
            type_name(rhs)
        ));
    };
    Ok(match op {
        B::Less => Value::Bool(l < r),
        B::LessEq => Value::Bool(l <= r),
        B::Greater => Value::Bool(l > r),
        B::GreaterEq => Value::Bool(l >= r),
        B::Plus => float_value(l + r),
        B::Minus => float_value(l - r),
        B::Mul => float_value(l * r),
        B::Div | B::Mod if r == 0.0 => return Err("division by zero".into()),
        B::Div => float_value(l / r),
        B::Mod => float_value(l % r),
        B::Eq | B::NotEq | B::And | B::Or => Value::Null,
    })
}

/// A variable's declared type: `string`, `number`, `bool`, `any`, `list(T)`, `set(T)`,
/// `map(T)`, `object({a = T})`, `tuple([T, ...])`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum VarType {
    String,
    Number,
    Bool,
    Any,
    List(Box<VarType>),
    Set(Box<VarType>),
    Map(Box<VarType>),
    Object(Vec<(String, VarType)>),
    Tuple(Vec<VarType>),
}

impl VarType {
    pub fn parse(expr: &Expression) -> Result<VarType, EvalError> {
        let bad = || {
            EvalError::new(
                span_of(expr),
                "unknown type; expected string, number, bool, any, list(T), set(T), map(T), object({...}) or tuple([...])",
            )
        };
        match expr {
            Expression::Variable(ident) => match ident.value().as_str() {
                "string" => Ok(VarType::String),
                "number" => Ok(VarType::Number),
                "bool" => Ok(VarType::Bool),
                "any" => Ok(VarType::Any),
                "list" => Ok(VarType::List(Box::new(VarType::Any))),
                "map" => Ok(VarType::Map(Box::new(VarType::Any))),
                "set" => Ok(VarType::Set(Box::new(VarType::Any))),
                _ => Err(bad()),
            },
            Expression::FuncCall(call) if call.args.len() == 1 => {
                let arg = call.args.iter().next().ok_or_else(bad)?;
                match call.name.name.value().as_str() {
                    "list" => Ok(VarType::List(Box::new(VarType::parse(arg)?))),
                    "set" => Ok(VarType::Set(Box::new(VarType::parse(arg)?))),
                    "map" => Ok(VarType::Map(Box::new(VarType::parse(arg)?))),
                    "object" => {
                        let Expression::Object(fields) = arg else { return Err(bad()) };
                        let mut out = Vec::new();
                        for (key, value) in fields.iter() {
                            let name = match key {
                                ObjectKey::Ident(i) => i.value().to_string(),
                                ObjectKey::Expression(e) => match e {
                                    Expression::String(s) => s.value().clone(),
                                    Expression::Variable(i) => i.value().to_string(),
                                    _ => return Err(bad()),
                                },
                            };
                            out.push((name, VarType::parse(value.expr())?));
                        }
                        Ok(VarType::Object(out))
                    }
                    "tuple" => {
                        let Expression::Array(items) = arg else { return Err(bad()) };
                        items
                            .iter()
                            .map(VarType::parse)
                            .collect::<Result<_, _>>()
                            .map(VarType::Tuple)
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    /// Whether a `-var` string is taken as it is (primitive types) or parsed as HCL.
    pub fn is_primitive(&self) -> bool {
        matches!(self, VarType::String | VarType::Number | VarType::Bool | VarType::Any)
    }

    pub fn describe(&self) -> String {
        match self {
            VarType::String => "string".into(),
            VarType::Number => "number".into(),
            VarType::Bool => "bool".into(),
            VarType::Any => "any".into(),
            VarType::List(t) => format!("list({})", t.describe()),
            VarType::Set(t) => format!("set({})", t.describe()),
            VarType::Map(t) => format!("map({})", t.describe()),
            VarType::Object(fields) => {
                let inner: Vec<String> =
                    fields.iter().map(|(k, t)| format!("{k} = {}", t.describe())).collect();
                format!("object({{{}}})", inner.join(", "))
            }
            VarType::Tuple(items) => {
                let inner: Vec<String> = items.iter().map(VarType::describe).collect();
                format!("tuple([{}])", inner.join(", "))
            }
        }
    }

    /// Converts a value to this type the way HCL does (numbers and bools to strings and
    /// back), or says why it cannot.
    pub fn convert(&self, value: Value) -> Result<Value, String> {
        match self {
            VarType::Any => Ok(value),
            VarType::String | VarType::Number | VarType::Bool => self.convert_primitive(value),
            VarType::List(t) | VarType::Set(t) => match value {
                Value::Array(items) => {
                    let set = matches!(self, VarType::Set(_));
                    convert_elements(t, items, set).map(Value::Array)
                }
                other => Err(self.mismatch(&other)),
            },
            VarType::Map(t) => match value {
                Value::Object(map) => {
                    let mut out = Map::new();
                    for (k, v) in map {
                        let v = t.convert(v).map_err(|m| format!("key \"{k}\": {m}"))?;
                        out.insert(k, v);
                    }
                    Ok(Value::Object(out))
                }
                other => Err(self.mismatch(&other)),
            },
            VarType::Object(fields) => match value {
                Value::Object(map) => convert_fields(fields, map).map(Value::Object),
                other => Err(self.mismatch(&other)),
            },
            VarType::Tuple(types) => match value {
                Value::Array(items) if items.len() == types.len() => {
                    let mut out = Vec::new();
                    for (i, (item, t)) in items.into_iter().zip(types).enumerate() {
                        out.push(t.convert(item).map_err(|m| format!("element {i}: {m}"))?);
                    }
                    Ok(Value::Array(out))
                }
                other => Err(self.mismatch(&other)),
            },
        }
    }

    fn mismatch(&self, value: &Value) -> String {
        format!("expected {}, got {}", self.describe(), type_name(value))
    }

    /// string, number and bool: strings convert to numbers and bools and back.
    fn convert_primitive(&self, value: Value) -> Result<Value, String> {
        match (self, &value) {
            (VarType::String, Value::String(_))
            | (VarType::Number, Value::Number(_))
            | (VarType::Bool, Value::Bool(_)) => Ok(value),
            (VarType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
            (VarType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
            (VarType::Number, Value::String(s)) => to_number(&value)
                .map(float_value)
                .ok_or_else(|| format!("expected number, got string {s:?} which is not a number")),
            (VarType::Bool, Value::String(s)) => to_bool(&value)
                .map(Value::Bool)
                .ok_or_else(|| format!("expected bool, got string {s:?}; use true or false")),
            _ => Err(self.mismatch(&value)),
        }
    }
}

/// A list's or set's elements converted to `t`; a set drops later duplicates.
fn convert_elements(t: &VarType, items: Vec<Value>, set: bool) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        out.push(t.convert(item).map_err(|m| format!("element {i}: {m}"))?);
    }
    if set {
        let mut unique: Vec<Value> = Vec::new();
        for item in out {
            if !unique.iter().any(|u| values_equal(u, &item)) {
                unique.push(item);
            }
        }
        out = unique;
    }
    Ok(out)
}

/// An object's declared attributes, each required and converted; others are dropped.
fn convert_fields(
    fields: &[(String, VarType)],
    mut map: Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, t) in fields {
        let v = map.remove(name).ok_or_else(|| format!("attribute \"{name}\" is required"))?;
        out.insert(name.clone(), t.convert(v).map_err(|m| format!("attribute \"{name}\": {m}"))?);
    }
    Ok(out)
}
