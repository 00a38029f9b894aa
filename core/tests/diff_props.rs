//! Properties of the job diff (`model::diff`) and its plan annotations
//! (`scheduler::annotate`):
//!
//! - a job diffed with itself is unchanged: type `None` everywhere, no field, no object,
//!   no annotation;
//! - the primitive fields a diff lists for the job, a group or a task are exactly those
//!   whose API JSON values differ (absent reading as empty, server-set fields left out),
//!   each with its old and new text;
//! - diffing the other way round mirrors the primitive fields (old and new swapped, added
//!   and deleted exchanged);
//! - a new job is added throughout and every task forces a create;
//! - a diff survives its JSON form (lists written as `null` when empty).

mod model_strategies;

use drover_core::model::{DiffType, FieldDiff, JOB_FIELDS_EXCLUDED, Job, JobDiff, job_diff};
use drover_core::scheduler::annotate::{ANNOTATION_FORCES_CREATE, annotate};
use model_strategies::{check, job};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Two jobs with one ID whose groups and tasks partly share names, so that groups and
/// tasks present on both sides get diffed field by field.
fn job_pair() -> impl Strategy<Value = (Job, Job)> {
    (job(), job()).prop_map(|(old, mut new)| {
        new.id = old.id.clone();
        for (index, group) in new.task_groups.iter_mut().enumerate() {
            let Some(twin) = old.task_groups.get(index) else { continue };
            group.name = twin.name.clone();
            for (task, old_task) in group.tasks.iter_mut().zip(&twin.tasks) {
                task.name = old_task.name.clone();
            }
        }
        (old, new)
    })
}

fn all_fields(diff: &JobDiff) -> Vec<&FieldDiff> {
    let groups = diff.task_groups.iter();
    let tasks = groups.clone().flat_map(|g| &g.tasks);
    diff.fields
        .iter()
        .chain(groups.flat_map(|g| &g.fields))
        .chain(tasks.flat_map(|t| &t.fields))
        .collect()
}

#[test]
fn a_job_diffed_with_itself_is_unchanged() {
    check(64, job, |job| {
        for contextual in [false, true] {
            let mut diff = job_diff(Some(&job), Some(&job), contextual).unwrap();
            annotate(&mut diff, Some(&job), Some(&job), &BTreeMap::new());
            prop_assert_eq!(diff.diff_type, DiffType::None);
            prop_assert!(diff.fields.is_empty() && diff.objects.is_empty());
            for group in &diff.task_groups {
                prop_assert_eq!(group.diff_type, DiffType::None);
                prop_assert!(group.fields.is_empty() && group.objects.is_empty());
                prop_assert!(group.updates.is_none());
                for task in &group.tasks {
                    prop_assert_eq!(task.diff_type, DiffType::None);
                    prop_assert!(task.fields.is_empty() && task.objects.is_empty());
                    prop_assert!(task.annotations.is_empty());
                }
            }
        }
        Ok(())
    });
}

/// The oracle: a JSON object's primitive entries and its `Meta`/`Env` entries as text,
/// read straight from `serde_json`, with the server-set `excluded` keys left out.
fn primitive_texts(value: &Value, excluded: &[&str]) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    };
    let mut texts = BTreeMap::new();
    for (key, v) in value.as_object().into_iter().flatten() {
        if excluded.contains(&key.as_str()) {
            continue;
        }
        if let Some(t) = text(v) {
            texts.insert(key.clone(), t);
        } else if let (true, Some(map)) = (key == "Meta" || key == "Env", v.as_object()) {
            for (entry, v) in map {
                texts.extend(text(v).map(|t| (format!("{key}[{entry}]"), t)));
            }
        }
    }
    texts
}

/// `(name, old, new)` of every entry whose text differs, absent reading as "".
fn differing(old: &Value, new: &Value, excluded: &[&str]) -> BTreeSet<(String, String, String)> {
    let (a, b) = (primitive_texts(old, excluded), primitive_texts(new, excluded));
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let get = |m: &BTreeMap<String, String>, k: &String| m.get(k).cloned().unwrap_or_default();
    names
        .into_iter()
        .map(|k| (k.clone(), get(&a, k), get(&b, k)))
        .filter(|(_, o, n)| o != n)
        .collect()
}

fn listed(fields: &[FieldDiff]) -> BTreeSet<(String, String, String)> {
    fields.iter().map(|f| (f.name.clone(), f.old.clone(), f.new.clone())).collect()
}

/// Items by name, the last of a repeated name winning (as the diff pairs them).
fn by_name(items: &[Value]) -> BTreeMap<&str, &Value> {
    items.iter().map(|v| (v["Name"].as_str().unwrap_or_default(), v)).collect()
}

#[test]
fn listed_fields_are_the_differing_json_fields() {
    check(64, job_pair, |(old, new)| {
        let diff = job_diff(Some(&old), Some(&new), true).unwrap();
        let (a, b) = (serde_json::to_value(&old).unwrap(), serde_json::to_value(&new).unwrap());
        prop_assert_eq!(listed(&diff.fields), differing(&a, &b, JOB_FIELDS_EXCLUDED));
        let groups = |v: &Value| v["TaskGroups"].as_array().cloned().unwrap_or_default();
        let (old_groups, new_groups) = (groups(&a), groups(&b));
        let (old_groups, new_groups) = (by_name(&old_groups), by_name(&new_groups));
        for group in &diff.task_groups {
            let (Some(og), Some(ng)) =
                (old_groups.get(group.name.as_str()), new_groups.get(group.name.as_str()))
            else {
                continue;
            };
            prop_assert_eq!(listed(&group.fields), differing(og, ng, &["Name"]));
            let tasks = |v: &Value| v["Tasks"].as_array().cloned().unwrap_or_default();
            let (old_tasks, new_tasks) = (tasks(og), tasks(ng));
            let (old_tasks, new_tasks) = (by_name(&old_tasks), by_name(&new_tasks));
            for task in &group.tasks {
                let name = task.name.as_str();
                if let (Some(ot), Some(nt)) = (old_tasks.get(name), new_tasks.get(name)) {
                    prop_assert_eq!(listed(&task.fields), differing(ot, nt, &["Name", "Config"]));
                }
            }
        }
        Ok(())
    });
}

#[test]
fn diffing_backwards_mirrors_the_fields() {
    check(64, job_pair, |(old, new)| {
        let forward = job_diff(Some(&old), Some(&new), false).unwrap();
        let backward = job_diff(Some(&new), Some(&old), false).unwrap();
        let mirrored: Vec<(String, String, String, DiffType)> = forward
            .fields
            .iter()
            .map(|f| {
                let flipped = match f.diff_type {
                    DiffType::Added => DiffType::Deleted,
                    DiffType::Deleted => DiffType::Added,
                    other => other,
                };
                (f.name.clone(), f.new.clone(), f.old.clone(), flipped)
            })
            .collect();
        let back: Vec<_> = backward
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.old.clone(), f.new.clone(), f.diff_type))
            .collect();
        prop_assert_eq!(back, mirrored);
        prop_assert_eq!(forward.task_groups.len(), backward.task_groups.len());
        Ok(())
    });
}

#[test]
fn a_new_job_is_added_throughout() {
    check(64, job, |job| {
        let mut diff = job_diff(None, Some(&job), true).unwrap();
        annotate(&mut diff, None, Some(&job), &BTreeMap::new());
        prop_assert_eq!(diff.diff_type, DiffType::Added);
        prop_assert!(all_fields(&diff).iter().all(|f| f.diff_type == DiffType::Added));
        for group in &diff.task_groups {
            prop_assert_eq!(group.diff_type, DiffType::Added);
            for task in &group.tasks {
                prop_assert_eq!(task.diff_type, DiffType::Added);
                prop_assert_eq!(&task.annotations, &vec![ANNOTATION_FORCES_CREATE.to_owned()]);
            }
        }
        Ok(())
    });
}

#[test]
fn a_diff_survives_its_json() {
    check(32, job_pair, |(old, new)| {
        let diff = job_diff(Some(&old), Some(&new), true).unwrap();
        let text = serde_json::to_string(&diff).unwrap();
        prop_assert_eq!(serde_json::from_str::<JobDiff>(&text).unwrap(), diff);
        Ok(())
    });
}

#[test]
fn jobs_with_different_ids_are_refused() {
    let old = Job { id: "web".into(), ..Job::default() };
    let new = Job { id: "api".into(), ..Job::default() };
    let error = job_diff(Some(&old), Some(&new), false).unwrap_err();
    assert_eq!(error.to_string(), r#"can not diff jobs with different IDs: "web" and "api""#);
}
