//! Nomad's job diff: what changes between the job a cluster runs and the one submitted,
//! as the data `job plan` prints and `POST /v1/job/:id/plan` returns (`Diff`).
//!
//! The shape and the rules are Nomad's (`nomad/structs/diff.go`): a job diff holds the
//! job's own primitive fields, its objects (datacenters, constraints, periodic, …) and
//! one diff per task group, which in turn holds its tasks. Primitive fields of the job,
//! a group or a task are listed only when they changed; in a contextual diff, an object
//! that changed also lists its unchanged fields (type `None`), which is what `job plan`
//! shows around a change. Fields are sorted by name, groups and tasks by name, objects
//! within a list by Nomad's order; a struct's objects come in a fixed order per struct.
//!
//! Server-set fields (indexes, status, version, submit time) are never diffed. Beyond
//! Nomad, spreads, a group's migrate strategy and a task's lifecycle are diffed too (as
//! `Spread`, `Migrate` and `Lifecycle` objects), so that no block an operator can edit
//! changes unseen.
//!
//! This module only compares. The annotations `job plan` adds (what forces a task to be
//! replaced, how many allocations each group creates) are the scheduler's:
//! `scheduler::annotate`.

mod flat;
mod parts;

use super::job::{Job, Task, TaskGroup};
use flat::{
    keyed_diffs, pair_by_key, presence_type, primitive_field_diffs, primitive_object_diff,
    primitive_set_diff, string_set_diff,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// How one thing changed. Serialises as Nomad's strings: `Added`, `Deleted`, `Edited`,
/// `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DiffType {
    Added,
    Deleted,
    Edited,
    #[default]
    None,
}

impl DiffType {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffType::Added => "Added",
            DiffType::Deleted => "Deleted",
            DiffType::Edited => "Edited",
            DiffType::None => "None",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default, with = "nil_when_empty")]
    pub fields: Vec<FieldDiff>,
    #[serde(default, with = "nil_when_empty")]
    pub objects: Vec<ObjectDiff>,
    #[serde(default, with = "nil_when_empty")]
    pub task_groups: Vec<TaskGroupDiff>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskGroupDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    #[serde(default, with = "nil_when_empty")]
    pub fields: Vec<FieldDiff>,
    #[serde(default, with = "nil_when_empty")]
    pub objects: Vec<ObjectDiff>,
    #[serde(default, with = "nil_when_empty")]
    pub tasks: Vec<TaskDiff>,
    /// Update kind (`create`, `in-place update`, …) → allocation count, from the
    /// scheduler's dry run; `None` (JSON `null`) when the plan said nothing of the group.
    #[serde(default)]
    pub updates: Option<BTreeMap<String, u64>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    #[serde(default, with = "nil_when_empty")]
    pub fields: Vec<FieldDiff>,
    #[serde(default, with = "nil_when_empty")]
    pub objects: Vec<ObjectDiff>,
    /// Why the task's allocations change: `forces create/destroy update`, ….
    #[serde(default, with = "nil_when_empty")]
    pub annotations: Vec<String>,
}

/// A nested part of a job, group or task: a policy, a network, the driver config, a set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    #[serde(default, with = "nil_when_empty")]
    pub fields: Vec<FieldDiff>,
    #[serde(default, with = "nil_when_empty")]
    pub objects: Vec<ObjectDiff>,
}

/// One field: its old and new value as text (`""` when absent on that side).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub old: String,
    pub new: String,
    #[serde(default, with = "nil_when_empty")]
    pub annotations: Vec<String>,
}

/// Lists are `null` when empty, as Go writes a nil slice, and `null` reads as empty.
mod nil_when_empty {
    use super::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        items: &Vec<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if items.is_empty() {
            serializer.serialize_none()
        } else {
            serializer.serialize_some(items)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
    }
}

/// Why two jobs cannot be diffed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffError {
    /// A diff compares two versions of one job.
    DifferentIds { old: String, new: String },
}

impl fmt::Display for DiffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiffError::DifferentIds { old, new } => {
                write!(f, "can not diff jobs with different IDs: {old:?} and {new:?}")
            }
        }
    }
}

impl std::error::Error for DiffError {}

/// Job fields set by the servers, never part of what an operator changes.
pub const JOB_FIELDS_EXCLUDED: &[&str] = &[
    "ID",
    "Status",
    "StatusDescription",
    "Version",
    "Stable",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "SubmitTime",
];

/// The diff from `old` to `new`: `old` absent for a new job, `new` absent for a removed
/// one. With `contextual`, objects that changed list their unchanged fields too (what
/// `job plan` asks for).
pub fn job_diff(
    old: Option<&Job>,
    new: Option<&Job>,
    contextual: bool,
) -> Result<JobDiff, DiffError> {
    if let (Some(a), Some(b)) = (old, new)
        && a.id != b.id
    {
        return Err(DiffError::DifferentIds { old: a.id.clone(), new: b.id.clone() });
    }
    let id = new.or(old).map(|job| job.id.clone()).unwrap_or_default();
    let fields = primitive_field_diffs(old, new, JOB_FIELDS_EXCLUDED, false);
    let objects = job_objects(old, new, contextual);
    let task_groups = group_diffs(old, new, contextual);
    let diff_type = match (old, new) {
        (None, Some(_)) => DiffType::Added,
        (Some(_), None) => DiffType::Deleted,
        _ if fields.iter().any(|f| f.diff_type != DiffType::None)
            || objects.iter().any(|o| o.diff_type != DiffType::None)
            || task_groups.iter().any(|g| g.diff_type != DiffType::None) =>
        {
            DiffType::Edited
        }
        _ => DiffType::None,
    };
    Ok(JobDiff { diff_type, id, fields, objects, task_groups })
}

/// The job's objects in Nomad's order. Job-level update, reschedule and migrate blocks
/// are not diffed: canonicalization copied them into every group, where they are.
fn job_objects(old: Option<&Job>, new: Option<&Job>, contextual: bool) -> Vec<ObjectDiff> {
    let empty = Job::default();
    let (a, b) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut objects = Vec::new();
    objects.extend(
        string_set_diff("Datacenters", &a.datacenters, &b.datacenters, contextual)
            .filter(|d| d.diff_type != DiffType::None),
    );
    objects.extend(primitive_set_diff("Constraint", &a.constraints, &b.constraints, contextual));
    objects.extend(primitive_set_diff("Affinity", &a.affinities, &b.affinities, contextual));
    objects.extend(parts::spread_diffs(&a.spreads, &b.spreads, contextual));
    objects.extend(primitive_object_diff(
        "Periodic",
        a.periodic.as_ref(),
        b.periodic.as_ref(),
        &[],
        contextual,
    ));
    objects.extend(parts::parameterized_diff(
        a.parameterized_job.as_ref(),
        b.parameterized_job.as_ref(),
        contextual,
    ));
    objects.extend(parts::multiregion_diff(
        a.multiregion.as_ref(),
        b.multiregion.as_ref(),
        contextual,
    ));
    objects
}

fn group_diffs(old: Option<&Job>, new: Option<&Job>, contextual: bool) -> Vec<TaskGroupDiff> {
    let old = old.map_or(&[][..], |j| j.task_groups.as_slice());
    let new = new.map_or(&[][..], |j| j.task_groups.as_slice());
    let pairs = pair_by_key(old, new, |g| &g.name);
    pairs.into_iter().map(|(a, b)| group_diff(a, b, contextual)).collect()
}

fn group_diff(old: Option<&TaskGroup>, new: Option<&TaskGroup>, contextual: bool) -> TaskGroupDiff {
    let name = new.or(old).map(|g| g.name.clone()).unwrap_or_default();
    let fields = primitive_field_diffs(old, new, &["Name"], false);
    let empty = TaskGroup::default();
    let (a, b) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut objects = Vec::new();
    objects.extend(primitive_set_diff("Constraint", &a.constraints, &b.constraints, contextual));
    objects.extend(primitive_set_diff("Affinity", &a.affinities, &b.affinities, contextual));
    objects.extend(parts::spread_diffs(&a.spreads, &b.spreads, contextual));
    objects.extend(primitive_object_diff(
        "RestartPolicy",
        a.restart_policy.as_ref(),
        b.restart_policy.as_ref(),
        &[],
        contextual,
    ));
    objects.extend(primitive_object_diff(
        "ReschedulePolicy",
        a.reschedule_policy.as_ref(),
        b.reschedule_policy.as_ref(),
        &[],
        contextual,
    ));
    objects.extend(primitive_object_diff(
        "EphemeralDisk",
        old.map(|g| &g.ephemeral_disk),
        new.map(|g| &g.ephemeral_disk),
        &[],
        contextual,
    ));
    // Nomad leaves `Stagger` out: it belongs to the old job-level update block.
    objects.extend(primitive_object_diff(
        "Update",
        a.update.as_ref(),
        b.update.as_ref(),
        &["Stagger"],
        contextual,
    ));
    objects.extend(primitive_object_diff(
        "Migrate",
        a.migrate.as_ref(),
        b.migrate.as_ref(),
        &[],
        contextual,
    ));
    objects.extend(parts::network_diffs(&a.networks, &b.networks, contextual));
    objects.extend(parts::scaling_diff(a.scaling.as_ref(), b.scaling.as_ref()));
    objects.extend(parts::service_diffs(&a.services, &b.services, contextual));
    objects.extend(keyed_diffs(
        a.volumes.iter().map(|(k, v)| (k.clone(), v)),
        b.volumes.iter().map(|(k, v)| (k.clone(), v)),
        |x, y| flat::struct_diff("Volume", x, y, &[], contextual),
    ));
    TaskGroupDiff {
        diff_type: presence_type(old, new),
        name,
        fields,
        objects,
        tasks: task_diffs(&a.tasks, &b.tasks, contextual),
        updates: None,
    }
}

fn task_diffs(old: &[Task], new: &[Task], contextual: bool) -> Vec<TaskDiff> {
    let pairs = pair_by_key(old, new, |t| &t.name);
    pairs.into_iter().map(|(a, b)| task_diff(a, b, contextual)).collect()
}

fn task_diff(old: Option<&Task>, new: Option<&Task>, contextual: bool) -> TaskDiff {
    const EXCLUDED: &[&str] = &["Name", "Config"];
    let name = new.or(old).map(|t| t.name.clone()).unwrap_or_default();
    let fields = primitive_field_diffs(old, new, EXCLUDED, false);
    let empty = Task::default();
    let (a, b) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut objects = Vec::new();
    objects.extend(primitive_set_diff("Constraint", &a.constraints, &b.constraints, contextual));
    objects.extend(primitive_set_diff("Affinity", &a.affinities, &b.affinities, contextual));
    objects.extend(flat::free_form_diff(
        "Config",
        &a.config,
        &b.config,
        a.config.is_empty(),
        b.config.is_empty(),
        contextual,
    ));
    objects.extend(parts::resources_diff(
        old.map(|t| &t.resources),
        new.map(|t| &t.resources),
        contextual,
    ));
    objects.extend(primitive_object_diff(
        "LogConfig",
        old.map(|t| &t.log_config),
        new.map(|t| &t.log_config),
        &[],
        contextual,
    ));
    objects.extend(primitive_set_diff("Artifact", &a.artifacts, &b.artifacts, contextual));
    objects.extend(parts::service_diffs(&a.services, &b.services, contextual));
    objects.extend(parts::vault_diff(a.vault.as_ref(), b.vault.as_ref(), contextual));
    objects.extend(parts::template_diffs(&a.templates, &b.templates, contextual));
    objects.extend(flat::struct_diff(
        "Identity",
        a.identity.as_ref(),
        b.identity.as_ref(),
        &[],
        contextual,
    ));
    objects.extend(primitive_object_diff(
        "Lifecycle",
        a.lifecycle.as_ref(),
        b.lifecycle.as_ref(),
        &[],
        contextual,
    ));
    TaskDiff { diff_type: presence_type(old, new), name, fields, objects, annotations: Vec::new() }
}
