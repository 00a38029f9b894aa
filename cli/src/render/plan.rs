//! `job plan`'s output, as Nomad prints it with `-no-color` (`command/job_plan.go`): the
//! annotated job diff, the scheduler's dry run, the job modify index and the command that
//! submits the job with `-check-index`; and the plan's exit code.
//!
//! Markers are `+` (added), `-` (deleted) and `+/-` (edited); names and values are aligned
//! within each block, values quoted as Go's `%q`. Without `-verbose`, added and deleted
//! groups and tasks are one line each, and the fields of a job or group that is not itself
//! edited are left out.

use super::go_quote;
use super::metrics::format_alloc_metrics;
use drover_core::model::{
    AllocationMetric, DesiredUpdates, DiffType, Evaluation, FieldDiff, JobDiff, JobType,
    ObjectDiff, TaskDiff, TaskGroupDiff, TriggeredBy,
};
use std::collections::BTreeMap;
use std::fmt::Write;

/// No allocation would be created or destroyed.
pub const PLAN_EXIT_NO_CHANGE: u8 = 0;
/// Allocations would be placed, stopped, migrated, replaced or canaried.
pub const PLAN_EXIT_ALLOCATIONS_CHANGE: u8 = 1;
/// The plan could not be made (bad job file, server error).
pub const PLAN_EXIT_ERROR: u8 = 255;

/// The exit code of a plan: 255 when it could not be made (`None`); 0 when the job is
/// unchanged or its groups only ignore or update allocations in place; 1 when any group
/// places, stops, migrates, destructively updates or canaries one.
pub fn plan_exit_code(plan: Option<(&JobDiff, &BTreeMap<String, DesiredUpdates>)>) -> u8 {
    let Some((diff, desired)) = plan else {
        return PLAN_EXIT_ERROR;
    };
    if diff.diff_type == DiffType::None {
        return PLAN_EXIT_NO_CHANGE;
    }
    let changes =
        |d: &DesiredUpdates| d.stop + d.place + d.migrate + d.destructive_update + d.canary;
    if desired.values().any(|d| changes(d) > 0) {
        PLAN_EXIT_ALLOCATIONS_CHANGE
    } else {
        PLAN_EXIT_NO_CHANGE
    }
}

/// What the plan endpoint answered (the parts of `JobPlanResponse` the output shows).
pub struct PlanOutcome<'a> {
    /// The annotated diff (`core::scheduler::annotate::plan_diff`).
    pub diff: &'a JobDiff,
    pub job_type: JobType,
    pub failed_tg_allocs: &'a BTreeMap<String, AllocationMetric>,
    /// Follow-up evaluations the dry run would create (a rolling update's next step).
    pub created_evals: &'a [Evaluation],
    pub job_modify_index: u64,
    /// Warnings the server returned with the plan, printed as they are.
    pub warnings: &'a str,
}

/// How the operator asked: the flags and arguments that shape the output.
pub struct PlanRequest<'a> {
    /// `-diff` (on by default).
    pub show_diff: bool,
    /// `-verbose`: expand added and deleted groups and tasks, and unchanged parents.
    pub verbose: bool,
    /// The job file argument, repeated in the suggested `job run` command.
    pub path: &'a str,
    pub vars: &'a [String],
    pub var_files: &'a [String],
}

/// The whole output of `job plan`, ending with a newline.
pub fn render_plan(outcome: &PlanOutcome<'_>, request: &PlanRequest<'_>) -> String {
    let mut out = String::new();
    if request.show_diff {
        let _ = writeln!(out, "{}\n", format_job_diff(outcome.diff, request.verbose).trim());
    }
    let _ = writeln!(out, "Scheduler dry-run:\n{}\n", format_dry_run(outcome));
    if !outcome.warnings.is_empty() {
        let _ = writeln!(out, "Job Warnings:\n{}\n", outcome.warnings);
    }
    let _ = writeln!(out, "{}", format_job_modify_index(outcome.job_modify_index, request));
    out
}

fn format_job_modify_index(index: u64, request: &PlanRequest<'_>) -> String {
    let mut args = String::new();
    for var in request.vars {
        let _ = write!(args, "-var={} ", go_quote(var));
    }
    for file in request.var_files {
        let _ = write!(args, "-var-file={} ", go_quote(file));
    }
    format!(
        "Job Modify Index: {index}\n\
         To submit the job with version verification run:\n\
         \n\
         drover job run -check-index {index} {args}{path}\n\
         \n\
         When running the job with the check-index flag, the job will only be run if the\n\
         job modify index given matches the server-side version. If the index has\n\
         changed, another user has modified the job and the plan's results are\n\
         potentially invalid.",
        path = request.path
    )
}

/// The dry run's verdict: all placed, or which groups failed and why; then the rolling
/// update's next step, if the dry run created one.
fn format_dry_run(outcome: &PlanOutcome<'_>) -> String {
    let rolling = outcome
        .created_evals
        .iter()
        .rev()
        .find(|eval| eval.triggered_by == TriggeredBy::RollingUpdate);
    let mut out = String::new();
    if outcome.failed_tg_allocs.is_empty() {
        out.push_str("- All tasks successfully allocated.\n");
    } else {
        out.push_str(if outcome.job_type == JobType::System {
            "- WARNING: Failed to place allocations on all nodes.\n"
        } else {
            "- WARNING: Failed to place all allocations.\n"
        });
        for (group, metric) in outcome.failed_tg_allocs {
            let noun = if metric.coalesced_failures > 0 { "allocations" } else { "allocation" };
            let failed = metric.coalesced_failures + 1;
            let _ = writeln!(
                out,
                "  Task Group {} (failed to place {failed} {noun}):",
                go_quote(group)
            );
            let _ = writeln!(out, "{}\n", format_alloc_metrics(metric, "    "));
        }
        if rolling.is_none() {
            out.pop();
        }
    }
    if let Some(eval) = rolling {
        let _ = writeln!(out, "- Rolling update, next evaluation will be in {}.", eval.wait);
    }
    out.pop();
    out
}

/// The marker of a diff type and its width.
fn marker(diff_type: DiffType) -> &'static str {
    match diff_type {
        DiffType::Added => "+ ",
        DiffType::Deleted => "- ",
        DiffType::Edited => "+/- ",
        DiffType::None => "",
    }
}

fn spaces(count: usize) -> String {
    " ".repeat(count)
}

/// The annotated diff of a job, as `job plan` prints it above the dry run.
pub fn format_job_diff(job: &JobDiff, verbose: bool) -> String {
    let mut out = format!("{}Job: {}\n", marker(job.diff_type), go_quote(&job.id));
    let (longest_field, mut longest_marker) = longest_prefixes(&job.fields, &job.objects);
    for group in &job.task_groups {
        longest_marker = longest_marker.max(marker(group.diff_type).len());
    }
    if job.diff_type == DiffType::Edited || verbose {
        let block =
            aligned_fields_and_objects(&job.fields, &job.objects, 0, longest_field, longest_marker);
        if !block.is_empty() {
            let _ = writeln!(out, "{block}");
        }
    }
    for group in &job.task_groups {
        let indent = longest_marker - marker(group.diff_type).len();
        let _ = writeln!(out, "{}", format_group_diff(group, indent, verbose));
    }
    out
}

fn format_group_diff(group: &TaskGroupDiff, indent: usize, verbose: bool) -> String {
    let mut out = format!(
        "{}{}Task Group: {}",
        marker(group.diff_type),
        spaces(indent),
        go_quote(&group.name)
    );
    let updates = group.updates.as_ref().filter(|u| !u.is_empty());
    match updates {
        // Sorted by update name, as the map's keys are.
        Some(updates) => {
            let counts: Vec<String> =
                updates.iter().map(|(kind, count)| format!("{count} {kind}")).collect();
            let _ = writeln!(out, " ({})", counts.join(", "));
        }
        None => out.push('\n'),
    }
    let (longest_field, mut longest_marker) = longest_prefixes(&group.fields, &group.objects);
    for task in &group.tasks {
        longest_marker = longest_marker.max(marker(task.diff_type).len());
    }
    let start = indent + 2;
    if group.diff_type == DiffType::Edited || verbose {
        let block = aligned_fields_and_objects(
            &group.fields,
            &group.objects,
            start,
            longest_field,
            longest_marker,
        );
        if !block.is_empty() {
            let _ = writeln!(out, "{block}");
        }
    }
    for task in &group.tasks {
        let task_indent = longest_marker - marker(task.diff_type).len();
        let _ = writeln!(out, "{}", format_task_diff(task, start, task_indent, verbose));
    }
    out
}

fn format_task_diff(task: &TaskDiff, start: usize, indent: usize, verbose: bool) -> String {
    let mut out = format!(
        "{}{}{}Task: {}",
        spaces(start),
        marker(task.diff_type),
        spaces(indent),
        go_quote(&task.name)
    );
    if !task.annotations.is_empty() {
        let _ = write!(out, " ({})", task.annotations.join(", "));
    }
    let collapsed = matches!(task.diff_type, DiffType::Added | DiffType::Deleted) && !verbose;
    if task.diff_type == DiffType::None || collapsed {
        return out;
    }
    out.push('\n');
    let (longest_field, longest_marker) = longest_prefixes(&task.fields, &task.objects);
    out.push_str(&aligned_fields_and_objects(
        &task.fields,
        &task.objects,
        start + 2,
        longest_field,
        longest_marker,
    ));
    out
}

fn format_object_diff(object: &ObjectDiff, start: usize, indent: usize) -> String {
    let object_marker = marker(object.diff_type);
    let mut out = format!("{}{object_marker}{}{} {{\n", spaces(start), spaces(indent), object.name);
    let (longest_field, longest_marker) = longest_prefixes(&object.fields, &object.objects);
    out.push_str(&aligned_fields_and_objects(
        &object.fields,
        &object.objects,
        start + indent + 2,
        longest_field,
        longest_marker,
    ));
    let _ = write!(out, "\n{}}}", spaces(start + object_marker.len() + indent));
    out
}

fn format_field_diff(
    field: &FieldDiff,
    start: usize,
    indent: usize,
    value_indent: usize,
) -> String {
    let mut out = format!(
        "{}{}{}{}: {}",
        spaces(start),
        marker(field.diff_type),
        spaces(indent),
        field.name,
        spaces(value_indent)
    );
    let value = match field.diff_type {
        DiffType::Deleted => go_quote(&field.old),
        DiffType::Edited => format!("{} => {}", go_quote(&field.old), go_quote(&field.new)),
        DiffType::Added | DiffType::None => go_quote(&field.new),
    };
    out.push_str(&value);
    if !field.annotations.is_empty() {
        let _ = write!(out, " ({})", field.annotations.join(", "));
    }
    out
}

/// Fields then objects, one per line (no final newline), markers and values aligned.
fn aligned_fields_and_objects(
    fields: &[FieldDiff],
    objects: &[ObjectDiff],
    start: usize,
    longest_field: usize,
    longest_marker: usize,
) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(fields.len() + objects.len());
    for field in fields {
        let indent = longest_marker - marker(field.diff_type).len();
        let value_indent = longest_field - field.name.len();
        lines.push(format_field_diff(field, start, indent, value_indent));
    }
    for object in objects {
        let indent = longest_marker - marker(object.diff_type).len();
        lines.push(format_object_diff(object, start, indent));
    }
    lines.join("\n")
}

/// The longest field name and the widest marker among `fields` and `objects`.
fn longest_prefixes(fields: &[FieldDiff], objects: &[ObjectDiff]) -> (usize, usize) {
    let longest_field = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let markers = fields.iter().map(|f| f.diff_type).chain(objects.iter().map(|o| o.diff_type));
    let longest_marker = markers.map(|t| marker(t).len()).max().unwrap_or(0);
    (longest_field, longest_marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_what_allocations_would_do() {
        let edited = JobDiff { diff_type: DiffType::Edited, ..JobDiff::default() };
        let unchanged = JobDiff::default();
        let groups = |updates: DesiredUpdates| BTreeMap::from([("web".to_owned(), updates)]);
        let in_place =
            groups(DesiredUpdates { in_place_update: 2, ignore: 1, ..Default::default() });
        let canary = groups(DesiredUpdates { canary: 1, ..Default::default() });
        assert_eq!(plan_exit_code(None), PLAN_EXIT_ERROR);
        assert_eq!(plan_exit_code(Some((&unchanged, &canary))), PLAN_EXIT_NO_CHANGE);
        assert_eq!(plan_exit_code(Some((&edited, &in_place))), PLAN_EXIT_NO_CHANGE);
        assert_eq!(plan_exit_code(Some((&edited, &canary))), PLAN_EXIT_ALLOCATIONS_CHANGE);
    }
}
