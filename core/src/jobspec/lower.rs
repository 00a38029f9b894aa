//! Lowering: a `job` block to Nomad's API JSON form, plus a table from each produced JSON
//! path (`TaskGroups[0].Tasks[1].Resources.CPU`) to the source span it came from.
//!
//! Only what the file says is written (absent = not set); defaults are the canonicalize
//! step's business. Every problem found is recorded and lowering carries on, so one run
//! reports every error in the file.

use super::diag::{Diag, suggest};
use super::eval::{
    EvalError, Evaluator, key_value_pairs, span_of, to_bool, to_number, to_template_string,
    type_name,
};
use super::schema::{Attr, Child, DYNAMIC, JOB, Kind, Nest, Schema};
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Block, BlockLabel, Body, Structure};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::ops::Range;

/// JSON path → byte span of the attribute or block that produced it.
pub(crate) type SpanTable = HashMap<String, Range<usize>>;

pub(crate) struct Lowerer<'a> {
    pub eval: Evaluator<'a>,
    pub diags: Vec<Diag>,
    pub spans: SpanTable,
    /// Paths whose attribute failed to lower (already reported): validation errors about
    /// them would only repeat the news.
    pub failed: std::collections::HashSet<String>,
    /// While expanding a `dynamic` block: the span its generated blocks report.
    dynamic_span: Option<Range<usize>>,
}

/// A `dynamic` block's settings, as written.
struct DynamicParts<'b> {
    for_each: Option<&'b Expression>,
    /// The name the element is bound to in `content`.
    iterator: String,
    labels: Option<&'b Expression>,
    content: Option<&'b Block>,
}

impl<'a> Lowerer<'a> {
    pub fn new(eval: Evaluator<'a>) -> Lowerer<'a> {
        Lowerer {
            eval,
            diags: Vec::new(),
            spans: SpanTable::new(),
            failed: Default::default(),
            dynamic_span: None,
        }
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diags.push(Diag::new(0, span, message));
    }

    fn eval_error(&mut self, error: EvalError) {
        self.diags.push(Diag::new(0, error.span, error.message));
    }

    /// Lowers `job "id" { ... }` to the API JSON object.
    pub fn job(&mut self, block: &Block) -> Value {
        let id = block.labels.first().map(|l| l.as_str().to_owned()).unwrap_or_default();
        let context = format!("job \"{id}\"");
        self.spans.insert(String::new(), span_of(block));
        let mut job = Map::new();
        job.insert("ID".into(), Value::String(id));
        self.spans.insert("ID".into(), span_of(block));
        let groups_declared =
            block.body.blocks().filter(|b| b.ident.value().as_str() == "group").count();
        self.body_into(&block.body, &JOB, "", &context, &mut job, groups_declared);
        if let Some(Value::Array(tasks)) = job.remove("@Tasks") {
            let groups = job.entry("TaskGroups").or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(groups) = groups {
                for task in tasks {
                    let name = task.get("Name").cloned().unwrap_or(Value::Null);
                    let mut group = Map::new();
                    group.insert("Name".into(), name);
                    group.insert("Tasks".into(), Value::Array(vec![task]));
                    groups.push(Value::Object(group));
                }
            }
        }
        Value::Object(job)
    }

    /// Lowers a body by its schema into `out`. `groups_declared` is only used by the job
    /// body, where bare tasks become groups after the declared ones.
    fn body_into(
        &mut self,
        body: &Body,
        schema: &'static Schema,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
        groups_declared: usize,
    ) {
        let mut attrs_seen: HashMap<String, Range<usize>> = HashMap::new();
        let mut bare_tasks = 0;
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    let name = attr.key.value().as_str();
                    let span = span_of(attr);
                    if let Some(first) = attrs_seen.get(name) {
                        let first = first.clone();
                        self.redefined(span, name, context, first);
                        continue;
                    }
                    attrs_seen.insert(name.to_owned(), span.clone());
                    let Some(spec) = schema.attr(name) else {
                        if schema.block(name).is_some() {
                            self.error(span, format!("\"{name}\" in {context} is a block, not an attribute: write {name} {{ ... }}"));
                        } else {
                            self.unknown(span, "attribute", name, context, schema);
                        }
                        continue;
                    };
                    if spec.kind == Kind::StrMap
                        && body.blocks().any(|b| b.ident.value().as_str() == name)
                    {
                        self.error(
                            span,
                            format!("{context}: {name} is set both as an attribute and as a block"),
                        );
                        continue;
                    }
                    self.attribute(&attr.value, spec, span, path, context, out);
                }
                Structure::Block(block) if block.ident.value().as_str() == "dynamic" => {
                    self.dynamic(block, schema, path, context, out);
                }
                Structure::Block(block) => {
                    let name = block.ident.value().as_str();
                    let span = self.block_span(block);
                    let Some(child) = schema.block(name) else {
                        if schema.attr(name).is_some() {
                            self.error(span, format!("\"{name}\" in {context} is an attribute, not a block: write {name} = ..."));
                        } else {
                            self.unknown(span, "block", name, context, schema);
                        }
                        continue;
                    };
                    if child.key == "@Tasks" {
                        let index = groups_declared + bare_tasks;
                        bare_tasks += 1;
                        self.bare_task(block, child, index, out);
                        continue;
                    }
                    self.child(block, child, path, context, out);
                }
            }
        }
    }

    fn block_span(&self, block: &Block) -> Range<usize> {
        self.dynamic_span.clone().unwrap_or_else(|| span_of(block))
    }

    /// `dynamic "port" { for_each = ...; iterator = p; labels = [...]; content { ... } }`:
    /// one generated block per element, with `p.key` and `p.value` in scope.
    fn dynamic(
        &mut self,
        block: &Block,
        schema: &'static Schema,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
    ) {
        let span = span_of(block);
        if !self.labels_ok(block, 1, context) {
            return;
        }
        let kind = block.labels[0].as_str().to_owned();
        let Some(child) = schema.block(&kind) else {
            self.unknown(span, "block", &kind, context, schema);
            return;
        };
        if child.key == "@Tasks" {
            self.error(span, "dynamic task blocks are not supported directly under a job");
            return;
        }
        let parts = self.dynamic_parts(block, kind);
        let (Some(for_each), Some(content)) = (parts.for_each, parts.content) else {
            self.error(span, "a dynamic block needs for_each and a content block");
            return;
        };
        let items = match self.eval.eval(for_each).map(key_value_pairs) {
            Ok(Ok(items)) => items,
            Ok(Err(other)) => {
                let message =
                    format!("for_each must be a list or a map, got {}", type_name(&other));
                return self.error(span_of(for_each), message);
            }
            Err(error) => return self.eval_error(error),
        };
        let outer_span = self.dynamic_span.replace(span.clone());
        for (key, value) in items {
            let mut binding = Map::new();
            binding.insert("key".into(), key);
            binding.insert("value".into(), value);
            self.eval.bindings.borrow_mut().push((parts.iterator.clone(), Value::Object(binding)));
            match self.dynamic_labels(parts.labels) {
                Ok(labels) => {
                    let mut generated = Block::new(hcl::edit::Ident::new(child.name));
                    generated.body = content.body.clone();
                    generated.labels = labels;
                    self.child(&generated, child, path, context, out);
                }
                Err(message) => self.error(span.clone(), message),
            }
            self.eval.bindings.borrow_mut().pop();
        }
        self.dynamic_span = outer_span;
    }

    /// Reads a dynamic block's body; the iterator name defaults to the block kind.
    fn dynamic_parts<'b>(&mut self, block: &'b Block, kind: String) -> DynamicParts<'b> {
        let mut parts =
            DynamicParts { for_each: None, iterator: kind, labels: None, content: None };
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match attr.key.value().as_str() {
                    "for_each" => parts.for_each = Some(&attr.value),
                    "labels" => parts.labels = Some(&attr.value),
                    "iterator" => match &attr.value {
                        Expression::Variable(ident) => parts.iterator = ident.value().to_string(),
                        other => self.error(span_of(other), "iterator must be a bare name"),
                    },
                    other => {
                        self.unknown(span_of(attr), "attribute", other, "dynamic block", &DYNAMIC)
                    }
                },
                Structure::Block(inner) if inner.ident.value().as_str() == "content" => {
                    if parts.content.replace(inner).is_some() {
                        self.error(span_of(inner), "a dynamic block takes one content block");
                    }
                }
                Structure::Block(inner) => {
                    let name = inner.ident.value();
                    self.unknown(span_of(inner), "block", name, "dynamic block", &DYNAMIC);
                }
            }
        }
        parts
    }

    /// The generated block's labels, evaluated with the iterator bound.
    fn dynamic_labels(&self, labels: Option<&Expression>) -> Result<Vec<BlockLabel>, String> {
        let items = match labels.map(|l| self.eval.eval(l)) {
            None => Vec::new(),
            Some(Ok(Value::Array(items))) => items,
            Some(Ok(other)) => {
                return Err(format!("labels must be a list, got {}", type_name(&other)));
            }
            Some(Err(error)) => return Err(error.message),
        };
        Ok(items
            .iter()
            .map(|item| {
                let text = to_template_string(item).unwrap_or_default();
                BlockLabel::String(hcl::edit::Decorated::new(text))
            })
            .collect())
    }

    fn redefined(&mut self, span: Range<usize>, name: &str, context: &str, first: Range<usize>) {
        let src = self.eval.src;
        let (line, _) = super::diag::line_col(src, first.start);
        self.error(
            span,
            format!("{context}: attribute \"{name}\" is set twice (first on line {line})"),
        );
    }

    fn unknown(
        &mut self,
        span: Range<usize>,
        what: &str,
        name: &str,
        context: &str,
        schema: &Schema,
    ) {
        let hint = suggest(name, schema.names())
            .map(|s| format!("; did you mean \"{s}\"?"))
            .unwrap_or_default();
        self.error(span, format!("unknown {what} \"{name}\" in {context}{hint}"));
    }

    fn attribute(
        &mut self,
        expr: &Expression,
        spec: &Attr,
        span: Range<usize>,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
    ) {
        let value = match self.eval.eval(expr) {
            Ok(value) => value,
            Err(error) => {
                self.failed.insert(join(path, spec.key));
                return self.eval_error(error);
            }
        };
        if value.is_null() || spec.key.is_empty() {
            return;
        }
        match convert(spec.kind, value) {
            Ok(value) => {
                self.spans.insert(join(path, spec.key), span);
                out.insert(spec.key.to_owned(), value);
            }
            Err(problem) => {
                self.failed.insert(join(path, spec.key));
                let value_span = span_of(expr);
                self.error(value_span, format!("{context}: {} {problem}", spec.name));
            }
        }
    }

    fn labels_ok(&mut self, block: &Block, wanted: usize, context: &str) -> bool {
        let name = block.ident.value().as_str();
        let got = block.labels.len();
        if got == wanted {
            return true;
        }
        let span = self.block_span(block);
        let message = match (wanted, got) {
            (0, _) => format!("{context}: a {name} block takes no label"),
            (1, 0) => format!("{context}: a {name} block needs a name: {name} \"name\" {{ ... }}"),
            _ => format!("{context}: a {name} block takes exactly one label"),
        };
        self.error(span, message);
        false
    }

    /// Lowers one block of a known kind into `out`, where its nesting says.
    fn child(
        &mut self,
        block: &Block,
        child: &'static Child,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
    ) {
        let labels_wanted = match child.nest {
            Nest::One | Nest::Free | Nest::StrMap | Nest::Many => 0,
            Nest::Labeled(_) | Nest::LabeledMap(_) | Nest::Port => 1,
        };
        if !self.labels_ok(block, labels_wanted, context) {
            return;
        }
        match child.nest {
            Nest::One | Nest::Free | Nest::StrMap => {
                self.single_child(block, child, path, context, out)
            }
            Nest::Many => self.repeated_child(block, child, path, context, out),
            Nest::Labeled(label_key) => {
                self.labeled_child(block, child, label_key, path, context, out)
            }
            Nest::LabeledMap(label_key) => {
                self.labeled_map_child(block, child, label_key, path, context, out)
            }
            Nest::Port => self.port(block, child, path, out),
        }
    }

    /// A block that may appear once: an object under `child.key`.
    fn single_child(
        &mut self,
        block: &Block,
        child: &'static Child,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
    ) {
        let name = child.name;
        let span = self.block_span(block);
        if child.key.is_empty() {
            // Accepted, not carried: still check the body if it has a schema.
            if child.nest == Nest::One {
                let mut scratch = Map::new();
                let child_context = format!("{context} {name}");
                self.body_into(&block.body, child.schema, "@", &child_context, &mut scratch, 0);
            }
            return;
        }
        if out.contains_key(child.key) && child.nest != Nest::StrMap {
            self.error(span, format!("{context}: only one {name} block is allowed"));
            return;
        }
        if out.contains_key(child.key) {
            self.error(span, format!("{context}: {name} is set more than once"));
            return;
        }
        let child_path = join(path, child.key);
        self.spans.insert(child_path.clone(), span);
        let value = match child.nest {
            Nest::Free => Value::Object(self.free_body(&block.body, 0)),
            Nest::StrMap => self.str_map_body(&block.body, context, name),
            _ => {
                let child_context = format!("{context} {name}");
                Value::Object(self.block_body(block, child.schema, &child_path, &child_context))
            }
        };
        out.insert(child.key.to_owned(), value);
    }

    /// An unlabeled block that may repeat: appended to the list under `child.key`.
    fn repeated_child(
        &mut self,
        block: &Block,
        child: &'static Child,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
    ) {
        let span = self.block_span(block);
        let list = list_slot(out, child.key);
        let child_path = format!("{}[{}]", join(path, child.key), list);
        self.spans.entry(join(path, child.key)).or_insert_with(|| span.clone());
        self.spans.insert(child_path.clone(), span);
        let value = match child.schema.name {
            "*" => Value::Object(self.free_body(&block.body, 0)),
            _ => {
                let child_context = format!("{context} {}", child.name);
                Value::Object(self.block_body(block, child.schema, &child_path, &child_context))
            }
        };
        push(out, child.key, value);
    }

    /// A labeled block that may repeat: appended to the list under `child.key`, with the
    /// label stored under `label_key`.
    fn labeled_child(
        &mut self,
        block: &Block,
        child: &'static Child,
        label_key: &str,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
    ) {
        if child.key.is_empty() {
            return;
        }
        let name = child.name;
        let span = self.block_span(block);
        let label = label_of(block);
        let list = list_slot(out, child.key);
        let child_path = format!("{}[{}]", join(path, child.key), list);
        self.spans.entry(join(path, child.key)).or_insert_with(|| span.clone());
        self.spans.insert(child_path.clone(), span.clone());
        self.spans.insert(join(&child_path, label_key), span);
        let mut value = Map::new();
        value.insert(label_key.to_owned(), Value::String(label.clone()));
        let body = if child.schema.name == "*" {
            self.free_body(&block.body, 0)
        } else {
            let child_context = if name == "task" && context.starts_with("group ") {
                format!("task \"{label}\" in {context}")
            } else {
                format!("{name} \"{label}\"")
            };
            self.block_body(block, child.schema, &child_path, &child_context)
        };
        value.extend(body);
        push(out, child.key, Value::Object(value));
    }

    /// A labeled block kept in a map under `child.key`, keyed by its unique label.
    fn labeled_map_child(
        &mut self,
        block: &Block,
        child: &'static Child,
        label_key: &str,
        path: &str,
        context: &str,
        out: &mut Map<String, Value>,
    ) {
        let name = child.name;
        let span = self.block_span(block);
        let label = label_of(block);
        let map = out.entry(child.key).or_insert_with(|| Value::Object(Map::new()));
        if map.get(&label).is_some() {
            self.error(span, format!("{context}: {name} \"{label}\" is declared twice"));
            return;
        }
        let child_path = format!("{}.{label}", join(path, child.key));
        self.spans.insert(child_path.clone(), span);
        let mut value = Map::new();
        value.insert(label_key.to_owned(), Value::String(label.clone()));
        let child_context = format!("{name} \"{label}\"");
        value.extend(self.block_body(block, child.schema, &child_path, &child_context));
        if let Some(Value::Object(map)) = out.get_mut(child.key) {
            map.insert(label, Value::Object(value));
        }
    }

    /// `port "label" { ... }`: reserved with a `static` number, else dynamic.
    fn port(
        &mut self,
        block: &Block,
        child: &'static Child,
        path: &str,
        out: &mut Map<String, Value>,
    ) {
        let span = self.block_span(block);
        let label = label_of(block);
        let key = if block.body.has_attribute("static") { "ReservedPorts" } else { "DynamicPorts" };
        let list = list_slot(out, key);
        let child_path = format!("{}[{}]", join(path, key), list);
        self.spans.insert(child_path.clone(), span);
        let mut value = Map::new();
        value.insert("Label".into(), Value::String(label.clone()));
        let child_context = format!("port \"{label}\"");
        value.extend(self.block_body(block, child.schema, &child_path, &child_context));
        push(out, key, Value::Object(value));
    }

    /// A bare `task` under the job: a group of the same name holding just that task.
    fn bare_task(
        &mut self,
        block: &Block,
        child: &'static Child,
        index: usize,
        out: &mut Map<String, Value>,
    ) {
        if !self.labels_ok(block, 1, "job") {
            return;
        }
        let label = block.labels.first().map(|l| l.as_str().to_owned()).unwrap_or_default();
        let span = span_of(block);
        let group_path = format!("TaskGroups[{index}]");
        let task_path = format!("{group_path}.Tasks[0]");
        for p in [
            group_path.clone(),
            format!("{group_path}.Name"),
            task_path.clone(),
            format!("{task_path}.Name"),
        ] {
            self.spans.insert(p, span.clone());
        }
        let mut value = Map::new();
        value.insert("Name".into(), Value::String(label.clone()));
        value.extend(self.block_body(
            block,
            child.schema,
            &task_path,
            &format!("task \"{label}\""),
        ));
        push(out, "@Tasks", Value::Object(value));
    }

    /// A block body by its schema, then the fix-ups particular to that block.
    fn block_body(
        &mut self,
        block: &Block,
        schema: &'static Schema,
        path: &str,
        context: &str,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        self.body_into(&block.body, schema, path, context, &mut out, 0);
        match schema.name {
            "constraint" | "affinity" => self.shorthands(&mut out, path),
            "logs" => {
                if let Some(Value::Bool(enabled)) = out.remove("@enabled") {
                    out.entry("Disabled").or_insert(Value::Bool(!enabled));
                }
            }
            "group" => {
                let lost_after = out.get("Disconnect").and_then(|d| d.get("LostAfter")).cloned();
                if let Some(lost_after) = lost_after
                    && !out.contains_key("MaxClientDisconnect")
                {
                    out.insert("MaxClientDisconnect".into(), lost_after);
                    if let Some(span) = self.spans.get(&join(path, "Disconnect.LostAfter")).cloned()
                    {
                        self.spans.insert(join(path, "MaxClientDisconnect"), span);
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Constraint and affinity shorthands, in jobspec2's order (later ones win).
    fn shorthands(&mut self, out: &mut Map<String, Value>, path: &str) {
        for operator in [
            "version",
            "semver",
            "regexp",
            "set_contains_any",
            "set_contains_all",
            "set_contains",
            "distinct_hosts",
            "distinct_property",
            "is_set",
            "is_not_set",
        ] {
            let key = format!("@{operator}");
            let Some(value) = out.remove(&key) else { continue };
            let span = self.spans.remove(&join(path, &key));
            let target = match operator {
                "distinct_hosts" => {
                    if value != Value::Bool(true) {
                        continue;
                    }
                    None
                }
                "distinct_property" | "is_set" | "is_not_set" => Some("LTarget"),
                _ => Some("RTarget"),
            };
            if value.as_str() == Some("") {
                continue;
            }
            out.insert("Operand".into(), Value::String(operator.into()));
            if let Some(span) = &span {
                self.spans.insert(join(path, "Operand"), span.clone());
            }
            if let Some(target) = target {
                out.insert(target.into(), value);
                if let Some(span) = span {
                    self.spans.insert(join(path, target), span);
                }
            }
        }
    }

    /// `meta { k = "v" }`: every attribute a string.
    fn str_map_body(&mut self, body: &Body, context: &str, name: &str) -> Value {
        let mut out = Map::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    let key = attr.key.value().to_string();
                    match self.eval.eval(&attr.value) {
                        Ok(Value::Null) => {}
                        Ok(value) => match to_template_string(&value) {
                            Ok(text) => {
                                out.insert(key, Value::String(text));
                            }
                            Err(_) => self.error(
                                span_of(&attr.value),
                                format!(
                                    "{context}: {name} value \"{key}\" must be a string, got {}",
                                    type_name(&value)
                                ),
                            ),
                        },
                        Err(error) => self.eval_error(error),
                    }
                }
                Structure::Block(block) => {
                    self.error(
                        span_of(block),
                        format!("{context}: {name} holds only attributes, not blocks"),
                    );
                }
            }
        }
        Value::Object(out)
    }

    /// A free-form body: attributes as their values; nested blocks as lists of objects
    /// under their name, labeled ones as `{label: [body]}`, as Nomad decodes driver config.
    fn free_body(&mut self, body: &Body, depth: usize) -> Map<String, Value> {
        let mut out = Map::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => match self.eval.eval(&attr.value) {
                    Ok(value) => {
                        out.insert(attr.key.value().to_string(), value);
                    }
                    Err(error) => self.eval_error(error),
                },
                Structure::Block(block) => {
                    if depth > super::NESTING_DEPTH_MAX {
                        self.error(span_of(block), "blocks are nested too deeply");
                        continue;
                    }
                    let mut value = Value::Object(self.free_body(&block.body, depth + 1));
                    for label in block.labels.iter().rev() {
                        let mut wrapper = Map::new();
                        wrapper.insert(label.as_str().to_owned(), Value::Array(vec![value]));
                        value = Value::Object(wrapper);
                    }
                    push(&mut out, block.ident.value().as_str(), value);
                }
            }
        }
        out
    }
}

fn label_of(block: &Block) -> String {
    block.labels.first().map(|l| l.as_str().to_owned()).unwrap_or_default()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn list_slot(out: &Map<String, Value>, key: &str) -> usize {
    // (The caller records the list's own span on its first element.)
    out.get(key).and_then(Value::as_array).map_or(0, Vec::len)
}

fn push(out: &mut Map<String, Value>, key: &str, value: Value) {
    match out.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(items) => items.push(value),
        slot => *slot = Value::Array(vec![value]),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => type_name(other).to_owned(),
    }
}

/// Checks and converts an evaluated value to an attribute's kind; the error completes the
/// sentence "<attribute> ...".
pub(crate) fn convert(kind: Kind, value: Value) -> Result<Value, String> {
    match kind {
        Kind::Any => Ok(value),
        Kind::Str => match &value {
            Value::String(_) => Ok(value),
            Value::Number(_) | Value::Bool(_) => Ok(Value::String(describe(&value).trim_matches('"').to_owned())),
            other => Err(format!("must be a string, got {}", type_name(other))),
        },
        Kind::Bool => to_bool(&value).map(Value::Bool).ok_or_else(|| format!("must be true or false, got {}", describe(&value))),
        Kind::Int => convert_int(i64::from(i32::MIN), i64::from(i32::MAX), &value),
        Kind::IntIn(lo, hi) => convert_int(lo, hi, &value),
        Kind::Duration => match &value {
            Value::String(text) => parse_duration(text)
                .map(Value::from)
                .map_err(|why| format!("is not a valid duration: {text:?} ({why}); write e.g. \"30s\", \"1h30m\" or \"250ms\"")),
            Value::Number(n) if n.is_i64() => Ok(value),
            other => Err(format!("must be a duration such as \"30s\", got {}", describe(other))),
        },
        Kind::StrList => match value {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match &item {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                        Ok(Value::String(to_template_string(&item).unwrap_or_default()))
                    }
                    other => Err(format!("must be a list of strings, but holds {}", type_name(other))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Err(format!("must be a list of strings, got {}", describe(&other))),
        },
        Kind::StrMap => match value {
            Value::Object(map) => convert_str_map(map).map(Value::Object),
            other => Err(format!("must be a map of strings, got {}", describe(&other))),
        },
        Kind::HeaderMap => match value {
            Value::Object(map) => convert_header_map(map).map(Value::Object),
            other => Err(format!("must be a map of lists of strings, got {}", describe(&other))),
        },
    }
}

/// A whole number (or a string holding one) within `lo..=hi`.
fn convert_int(lo: i64, hi: i64, value: &Value) -> Result<Value, String> {
    let n = match value {
        Value::Number(_) | Value::String(_) => to_number(value),
        _ => None,
    };
    match n {
        Some(n) if n.fract() == 0.0 && n >= lo as f64 && n <= hi as f64 => {
            Ok(Value::from(n as i64))
        }
        Some(n) if n.fract() == 0.0 => {
            Err(format!("must be between {lo} and {hi}, got {}", describe(value)))
        }
        _ => Err(format!("must be a whole number, got {}", describe(value))),
    }
}

/// Scalars become strings; null entries are dropped, as Nomad does.
fn convert_str_map(map: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in map {
        match &v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                out.insert(k, Value::String(to_template_string(&v).unwrap_or_default()));
            }
            Value::Null => {}
            other => {
                return Err(format!("must map to strings, but \"{k}\" is {}", type_name(other)));
            }
        }
    }
    Ok(out)
}

/// HTTP headers: each value a list of strings, or one string standing for a list of one.
fn convert_header_map(map: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in map {
        let list = match v {
            Value::Array(_) => convert(Kind::StrList, v)?,
            Value::String(_) => Value::Array(vec![v]),
            other => {
                let got = type_name(&other);
                return Err(format!("must map to lists of strings, but \"{k}\" is {got}"));
            }
        };
        out.insert(k, list);
    }
    Ok(out)
}

/// Parses a Go duration (`time.ParseDuration`): "300ms", "-1.5h", "2h45m"; "0" alone is
/// allowed without a unit. Returns nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: f64 = 0.0;
    let mut chars = rest.char_indices().peekable();
    while chars.peek().is_some() {
        let start = chars.peek().map_or(0, |(i, _)| *i);
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_ascii_digit() || c == '.' {
                end = i + c.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let number = &rest[start..end];
        if number.is_empty() || number == "." {
            return Err("expected a number".into());
        }
        let value: f64 = number.parse().map_err(|_| format!("bad number {number:?}"))?;
        let unit_start = end;
        let mut unit_end = end;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_ascii_digit() || c == '.' {
                break;
            }
            unit_end = i + c.len_utf8();
            chars.next();
        }
        let unit = &rest[unit_start..unit_end];
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit after {number}")),
            other => return Err(format!("unknown unit {other:?}")),
        };
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return Err("duration is too long".into());
    }
    let ns = total.round() as i64;
    Ok(if negative { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("-2m"), Ok(-120_000_000_000));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }
}
