//! The building blocks of a diff: values flattened to `name → text` maps, field diffs
//! between two such maps, the two shapes of object diff Nomad uses, and its sort order.
//!
//! Nomad flattens a struct by reflection (`helper/flatmap`); we flatten its API JSON form,
//! whose keys are the same PascalCase names, so a field is named exactly as Nomad names it.

use super::{DiffType, FieldDiff, ObjectDiff};
use serde::Serialize;
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Field name → value text, ordered by name (the order Nomad sorts field diffs in).
pub(super) type Flat = BTreeMap<String, String>;

/// Map-valued fields that Nomad flattens into `Name[key]` fields rather than skipping.
const MAP_FIELDS: &[&str] = &["Meta", "Env", "GetterOptions", "GetterHeaders"];

/// The API JSON object of `value`; `None` for an absent value (or one that is not an
/// object, which no model type is).
fn object_of<T: Serialize>(value: Option<&T>) -> Option<Map<String, Value>> {
    match serde_json::to_value(value?) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The primitive fields of `value`, as Nomad's `Flatten(obj, filter, true)`: booleans,
/// numbers and strings, plus `Meta[key]`-style entries of map fields. Nested objects and
/// lists are left out: each has its own object diff. `excluded` names fields never diffed.
pub(super) fn primitive_fields<T: Serialize>(value: Option<&T>, excluded: &[&str]) -> Flat {
    let mut flat = Flat::new();
    for (key, field) in object_of(value).unwrap_or_default() {
        if excluded.contains(&key.as_str()) {
            continue;
        }
        if let Some(text) = primitive_text(&field) {
            flat.insert(key, text);
        } else if let (true, Value::Object(entries)) = (MAP_FIELDS.contains(&key.as_str()), &field)
        {
            for (entry, value) in entries {
                if let Some(text) = primitive_text(value) {
                    flat.insert(format!("{key}[{entry}]"), text);
                }
            }
        }
    }
    flat
}

/// Every leaf of a free-form value (driver config, a scaling policy, check headers), as
/// Nomad's `Flatten(obj, nil, false)`: `image`, `args[0]`, `labels[team]`; null is `nil`.
pub(super) fn all_fields<T: Serialize>(value: &T) -> Flat {
    let mut flat = Flat::new();
    if let Ok(json) = serde_json::to_value(value) {
        flatten_into(String::new(), &json, &mut flat);
    }
    flat
}

fn flatten_into(prefix: String, value: &Value, flat: &mut Flat) {
    let child =
        |key: &str| if prefix.is_empty() { key.to_owned() } else { format!("{prefix}[{key}]") };
    match value {
        Value::Object(entries) => {
            for (key, entry) in entries {
                flatten_into(child(key), entry, flat);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten_into(format!("{prefix}[{index}]"), item, flat);
            }
        }
        Value::Null => {
            flat.insert(prefix, "nil".into());
        }
        primitive => {
            flat.insert(prefix, primitive_text(primitive).unwrap_or_default());
        }
    }
}

fn primitive_text(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(number_text(n)),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Integers as they are; floats as Go's `%v` prints a float64 (shortest digits, an
/// exponent below 1e-4 or from 1e6), so `6379.0` reads `6379` as it does in Nomad.
fn number_text(n: &Number) -> String {
    match n.as_f64() {
        Some(x) if !n.is_i64() && !n.is_u64() => go_float_text(x),
        _ => n.to_string(),
    }
}

fn go_float_text(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if x != 0.0 && !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    }
    format!("{x}")
}

/// One field's diff, or `None` when unchanged and the diff is not contextual. An empty
/// side means absent, so a value appearing is `Added` and one disappearing `Deleted`.
pub(super) fn field_diff(name: &str, old: &str, new: &str, contextual: bool) -> Option<FieldDiff> {
    let diff_type = match (old, new) {
        _ if old == new && !contextual => return None,
        _ if old == new => DiffType::None,
        ("", _) => DiffType::Added,
        (_, "") => DiffType::Deleted,
        _ => DiffType::Edited,
    };
    let (old, new) = match diff_type {
        DiffType::Added => ("", new),
        DiffType::Deleted => (old, ""),
        _ => (old, new),
    };
    Some(FieldDiff {
        diff_type,
        name: name.to_owned(),
        old: old.to_owned(),
        new: new.to_owned(),
        annotations: Vec::new(),
    })
}

/// The diffs of every field in either map, sorted by name.
pub(super) fn field_diffs(old: &Flat, new: &Flat, contextual: bool) -> Vec<FieldDiff> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let text = |flat: &'_ Flat, name: &String| flat.get(name).cloned().unwrap_or_default();
    names
        .into_iter()
        .filter_map(|name| field_diff(name, &text(old, name), &text(new, name), contextual))
        .collect()
}

/// The diffs of the primitive fields of two values of one type.
pub(super) fn primitive_field_diffs<T: Serialize>(
    old: Option<&T>,
    new: Option<&T>,
    excluded: &[&str],
    contextual: bool,
) -> Vec<FieldDiff> {
    field_diffs(&primitive_fields(old, excluded), &primitive_fields(new, excluded), contextual)
}

/// An object's type from its fields alone (Nomad's `primitiveObjectDiff` rule): `None`
/// when nothing changed.
fn type_from_fields(fields: &[FieldDiff]) -> Option<DiffType> {
    let has = |t: DiffType| fields.iter().any(|f| f.diff_type == t);
    let (added, deleted) = (has(DiffType::Added), has(DiffType::Deleted));
    if has(DiffType::Edited) || (added && deleted) {
        Some(DiffType::Edited)
    } else if added {
        Some(DiffType::Added)
    } else if deleted {
        Some(DiffType::Deleted)
    } else {
        None
    }
}

/// A flat object (a policy, a port, a constraint) compared field by field; absent when no
/// field changed, even in a contextual diff.
pub(super) fn primitive_object_diff<T: Serialize>(
    name: &str,
    old: Option<&T>,
    new: Option<&T>,
    excluded: &[&str],
    contextual: bool,
) -> Option<ObjectDiff> {
    let fields = primitive_field_diffs(old, new, excluded, contextual);
    let diff_type = type_from_fields(&fields)?;
    Some(ObjectDiff { diff_type, name: name.to_owned(), fields, objects: Vec::new() })
}

/// The type of a whole object present on one side or both: `None` when equal.
pub(super) fn presence_type<T: PartialEq>(old: Option<&T>, new: Option<&T>) -> DiffType {
    match (old, new) {
        (None, Some(_)) => DiffType::Added,
        (Some(_), None) => DiffType::Deleted,
        (Some(a), Some(b)) if a != b => DiffType::Edited,
        _ => DiffType::None,
    }
}

/// An object with nested parts (a service, a network, a template): absent when equal,
/// otherwise typed by presence, with its primitive fields; the caller adds the nested
/// object diffs, computed against an empty value on the absent side.
pub(super) fn struct_diff<T: Serialize + PartialEq>(
    name: &str,
    old: Option<&T>,
    new: Option<&T>,
    excluded: &[&str],
    contextual: bool,
) -> Option<ObjectDiff> {
    let diff_type = presence_type(old, new);
    if diff_type == DiffType::None {
        return None;
    }
    let fields = primitive_field_diffs(old, new, excluded, contextual);
    Some(ObjectDiff { diff_type, name: name.to_owned(), fields, objects: Vec::new() })
}

/// A free-form map (driver config, a scaling policy, check headers) as one object whose
/// fields are all its leaves: `Added` when it was empty, `Deleted` when it becomes empty.
pub(super) fn free_form_diff<T: Serialize + PartialEq>(
    name: &str,
    old: &T,
    new: &T,
    old_empty: bool,
    new_empty: bool,
    contextual: bool,
) -> Option<ObjectDiff> {
    let diff_type = match () {
        _ if old == new => return None,
        _ if old_empty => DiffType::Added,
        _ if new_empty => DiffType::Deleted,
        _ => DiffType::Edited,
    };
    let fields = field_diffs(&all_fields(old), &all_fields(new), contextual);
    Some(ObjectDiff { diff_type, name: name.to_owned(), fields, objects: Vec::new() })
}

/// A list of strings compared as a set (datacenters, tags, policies): one field per
/// member, each named after the set. Absent when both sets are empty, or equal and the
/// diff is not contextual.
pub(super) fn string_set_diff(
    name: &str,
    old: &[String],
    new: &[String],
    contextual: bool,
) -> Option<ObjectDiff> {
    let old: BTreeSet<&str> = old.iter().map(String::as_str).collect();
    let new: BTreeSet<&str> = new.iter().map(String::as_str).collect();
    if old == new && !contextual {
        return None;
    }
    let removed = old.difference(&new).filter_map(|m| field_diff(name, m, "", contextual));
    let kept = old.intersection(&new).filter_map(|m| field_diff(name, m, m, contextual));
    let added = new.difference(&old).filter_map(|m| field_diff(name, "", m, contextual));
    let mut fields: Vec<FieldDiff> = removed.chain(kept).chain(added).collect();
    fields.sort_by(compare_fields);
    let diff_type = match (old.is_subset(&new), new.is_subset(&old)) {
        (false, false) => DiffType::Edited,
        (true, false) => DiffType::Added,
        (false, true) => DiffType::Deleted,
        (true, true) if fields.is_empty() => return None,
        (true, true) => DiffType::None,
    };
    Some(ObjectDiff { diff_type, name: name.to_owned(), fields, objects: Vec::new() })
}

/// Diffs of two collections matched by key (a port's label, a check's name, a volume's
/// name, or the whole value for sets compared by identity): `diff(old, new)` for every
/// key, then sorted. When a key repeats, the last value wins, as in Nomad's maps.
pub(super) fn keyed_diffs<'a, T: 'a>(
    old: impl IntoIterator<Item = (String, &'a T)>,
    new: impl IntoIterator<Item = (String, &'a T)>,
    diff: impl Fn(Option<&T>, Option<&T>) -> Option<ObjectDiff>,
) -> Vec<ObjectDiff> {
    let old: BTreeMap<String, &T> = old.into_iter().collect();
    let new: BTreeMap<String, &T> = new.into_iter().collect();
    let changed = old.iter().filter_map(|(key, o)| diff(Some(*o), new.get(key).copied()));
    let added = new
        .iter()
        .filter(|(key, _)| !old.contains_key(*key))
        .filter_map(|(_, n)| diff(None, Some(*n)));
    let mut diffs: Vec<ObjectDiff> = changed.chain(added).collect();
    sort_objects(&mut diffs);
    diffs
}

/// Items keyed by `key` (a name, a label), for [`keyed_diffs`].
pub(super) fn by_key<T>(items: &[T], key: fn(&T) -> &str) -> Vec<(String, &T)> {
    items.iter().map(|item| (key(item).to_owned(), item)).collect()
}

/// The items of `old` and `new` paired by `key`, in key order: what groups and tasks are
/// diffed by (each pair yields a diff, unchanged ones included).
pub(super) fn pair_by_key<'a, T>(
    old: &'a [T],
    new: &'a [T],
    key: fn(&T) -> &str,
) -> Vec<(Option<&'a T>, Option<&'a T>)> {
    let old: BTreeMap<String, &T> = by_key(old, key).into_iter().collect();
    let new: BTreeMap<String, &T> = by_key(new, key).into_iter().collect();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter().map(|k| (old.get(k).copied(), new.get(k).copied())).collect()
}

/// Values keyed by their whole serialized form: a set compared by identity, where an edit
/// shows as one value deleted and another added (Nomad keys these by a hash).
pub(super) fn by_identity<T: Serialize>(items: &[T]) -> impl Iterator<Item = (String, &T)> {
    items.iter().map(|item| (serde_json::to_string(item).unwrap_or_default(), item))
}

/// A list of flat values (constraints, affinities, artifacts) compared as a set.
pub(super) fn primitive_set_diff<T: Serialize>(
    name: &str,
    old: &[T],
    new: &[T],
    contextual: bool,
) -> Vec<ObjectDiff> {
    keyed_diffs(by_identity(old), by_identity(new), |o, n| {
        primitive_object_diff(name, o, n, &[], contextual)
    })
}

/// Nomad's order of diff types within a sorted list: edited, added, deleted, unchanged.
fn type_rank(diff_type: DiffType) -> u8 {
    match diff_type {
        DiffType::Edited => 0,
        DiffType::Added => 1,
        DiffType::Deleted => 2,
        DiffType::None => 3,
    }
}

pub(super) fn compare_fields(a: &FieldDiff, b: &FieldDiff) -> Ordering {
    (&a.name, &a.old, &a.new).cmp(&(&b.name, &b.old, &b.new))
}

/// Nomad's object order: by name, then type, then how many fields and objects, then the
/// fields and objects themselves.
fn compare_objects(a: &ObjectDiff, b: &ObjectDiff) -> Ordering {
    a.name
        .cmp(&b.name)
        .then(type_rank(a.diff_type).cmp(&type_rank(b.diff_type)))
        .then(a.fields.len().cmp(&b.fields.len()))
        .then(a.objects.len().cmp(&b.objects.len()))
        .then_with(|| compare_all(&a.fields, &b.fields, compare_fields))
        .then_with(|| compare_all(&a.objects, &b.objects, compare_objects))
}

fn compare_all<T>(a: &[T], b: &[T], compare: fn(&T, &T) -> Ordering) -> Ordering {
    a.iter().zip(b).map(|(x, y)| compare(x, y)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
}

pub(super) fn sort_objects(objects: &mut [ObjectDiff]) {
    objects.sort_by(compare_objects);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FreeValue;

    #[test]
    fn floats_read_as_go_prints_them() {
        let cases = [
            (6379.0, "6379"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (123456.0, "123456"),
            (123456789.0, "1.23456789e+08"),
            (f64::INFINITY, "+Inf"),
        ];
        for (value, text) in cases {
            assert_eq!(go_float_text(value), text, "{value}");
        }
    }

    #[test]
    fn free_form_values_flatten_to_every_leaf() {
        let config = BTreeMap::from([
            ("image".to_owned(), FreeValue::String("redis:7".into())),
            ("args".to_owned(), FreeValue::List(vec![FreeValue::Int(1), FreeValue::Float(1.5)])),
            (
                "labels".to_owned(),
                FreeValue::Map(BTreeMap::from([
                    ("team".to_owned(), FreeValue::Bool(true)),
                    ("unset".to_owned(), FreeValue::Null),
                ])),
            ),
            ("empty".to_owned(), FreeValue::List(Vec::new())),
        ]);
        let flat: Vec<(String, String)> = all_fields(&config).into_iter().collect();
        let expected = [
            ("args[0]", "1"),
            ("args[1]", "1.5"),
            ("image", "redis:7"),
            ("labels[team]", "true"),
            ("labels[unset]", "nil"),
        ];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(flat, expected);
    }
}
