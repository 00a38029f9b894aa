//! What `job plan` adds to a job diff: per group, how many allocations each kind of update
//! touches and whether the count forces creations or destructions; per task, why its
//! allocations change. Nomad's `scheduler/annotate.go`, with the in-place-or-destructive
//! decision taken from this scheduler's own rule ([`super::update`]), so that the plan
//! says exactly what the scheduler will do.

use super::update::{task_updated, tasks_updated};
use crate::model::{
    DesiredUpdates, DiffError, DiffType, FieldDiff, Job, JobDiff, TaskDiff, TaskGroupDiff, job_diff,
};
use std::collections::BTreeMap;

pub const ANNOTATION_FORCES_CREATE: &str = "forces create";
pub const ANNOTATION_FORCES_DESTROY: &str = "forces destroy";
pub const ANNOTATION_FORCES_IN_PLACE_UPDATE: &str = "forces in-place update";
pub const ANNOTATION_FORCES_DESTRUCTIVE_UPDATE: &str = "forces create/destroy update";

/// The update kinds of a group's `Updates`, in Nomad's words.
pub const UPDATE_TYPE_IGNORE: &str = "ignore";
pub const UPDATE_TYPE_CREATE: &str = "create";
pub const UPDATE_TYPE_DESTROY: &str = "destroy";
pub const UPDATE_TYPE_MIGRATE: &str = "migrate";
pub const UPDATE_TYPE_CANARY: &str = "canary";
pub const UPDATE_TYPE_IN_PLACE_UPDATE: &str = "in-place update";
pub const UPDATE_TYPE_DESTRUCTIVE_UPDATE: &str = "create/destroy update";

/// The diff a plan returns (`JobPlanResponse.Diff`): the contextual diff from the running
/// job (`None` when the job is new) to the submitted one, annotated with the dry run's
/// `desired` updates per group (the plan's `DesiredTGUpdates`).
pub fn plan_diff(
    old: Option<&Job>,
    new: &Job,
    desired: &BTreeMap<String, DesiredUpdates>,
) -> Result<JobDiff, DiffError> {
    let mut diff = job_diff(old, Some(new), true)?;
    annotate(&mut diff, old, Some(new), desired);
    Ok(diff)
}

/// Annotates `diff`, the diff from `old` to `new`, with the scheduler's view of it.
pub fn annotate(
    diff: &mut JobDiff,
    old: Option<&Job>,
    new: Option<&Job>,
    desired: &BTreeMap<String, DesiredUpdates>,
) {
    for group in &mut diff.task_groups {
        if let Some(updates) = desired.get(&group.name) {
            group.updates = Some(update_counts(updates));
        }
        if let Some(count) = group.fields.iter_mut().find(|f| f.name == "Count") {
            annotate_count(count);
        }
        annotate_tasks(group, old, new);
    }
}

/// The non-zero counts of `updates`, by Nomad's update names.
fn update_counts(updates: &DesiredUpdates) -> BTreeMap<String, u64> {
    [
        (UPDATE_TYPE_IGNORE, updates.ignore),
        (UPDATE_TYPE_CREATE, updates.place),
        (UPDATE_TYPE_MIGRATE, updates.migrate),
        (UPDATE_TYPE_DESTROY, updates.stop),
        (UPDATE_TYPE_CANARY, updates.canary),
        (UPDATE_TYPE_IN_PLACE_UPDATE, updates.in_place_update),
        (UPDATE_TYPE_DESTRUCTIVE_UPDATE, updates.destructive_update),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .map(|(name, count)| (name.to_owned(), count))
    .collect()
}

/// A count going up forces creations, going down destructions. An absent side is 0.
fn annotate_count(count: &mut FieldDiff) {
    // The values are the diff's own rendering of an integer, so they always parse.
    let value = |text: &str| text.parse::<i64>().unwrap_or(0);
    let (old, new) = (value(&count.old), value(&count.new));
    if old < new {
        count.annotations.push(ANNOTATION_FORCES_CREATE.into());
    } else if new < old {
        count.annotations.push(ANNOTATION_FORCES_DESTROY.into());
    }
}

fn annotate_tasks(group: &mut TaskGroupDiff, old: Option<&Job>, new: Option<&Job>) {
    let old_group = old.and_then(|job| job.group(&group.name));
    let new_group = new.and_then(|job| job.group(&group.name));
    for task in &mut group.tasks {
        let annotation = match (group.diff_type, task.diff_type) {
            (_, DiffType::None) => None,
            (DiffType::Added, DiffType::Added) => Some(ANNOTATION_FORCES_CREATE),
            (DiffType::Deleted, DiffType::Deleted) => Some(ANNOTATION_FORCES_DESTROY),
            _ => task_update_kind(task, old.zip(old_group), new.zip(new_group)),
        };
        task.annotations.extend(annotation.map(str::to_owned));
    }
}

/// Whether the scheduler replaces the task's allocations or updates them in place. A task
/// added to or removed from a running group changes the group's tasks, which the
/// scheduler's rule decides as a whole.
fn task_update_kind(
    task: &TaskDiff,
    old: Option<(&Job, &crate::model::TaskGroup)>,
    new: Option<(&Job, &crate::model::TaskGroup)>,
) -> Option<&'static str> {
    let ((old_job, old_group), (new_job, new_group)) = (old?, new?);
    let destructive = match (old_group.task(&task.name), new_group.task(&task.name)) {
        (Some(a), Some(b)) => task_updated(a, b),
        _ => tasks_updated(old_job, old_group, new_job, new_group),
    };
    Some(if destructive {
        ANNOTATION_FORCES_DESTRUCTIVE_UPDATE
    } else {
        ANNOTATION_FORCES_IN_PLACE_UPDATE
    })
}
