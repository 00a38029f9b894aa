//! Object diffs of the nested parts that need more than the generic shapes: networks and
//! their ports, resources, services and checks, templates, vault, spreads, scaling,
//! parameterized and multiregion blocks.

use super::flat::{
    by_identity, by_key, free_form_diff, keyed_diffs, primitive_object_diff, primitive_set_diff,
    sort_objects, string_set_diff, struct_diff,
};
use super::{DiffType, ObjectDiff};
use crate::model::job::{
    ChangeScript, Multiregion, MultiregionRegion, ParameterizedJobConfig, ScalingPolicy, Service,
    ServiceCheck, Spread, Template, Vault,
};
use crate::model::resources::{DnsConfig, NetworkResource, Port, Resources};
use std::collections::BTreeMap;

/// The list `get` reads from `value`, empty when `value` is absent.
fn list<T, U>(value: Option<&T>, get: fn(&T) -> &[U]) -> &[U] {
    value.map(get).unwrap_or_default()
}

/// The optional part `get` reads from `value`.
fn part<T, U>(value: Option<&T>, get: fn(&T) -> Option<&U>) -> Option<&U> {
    value.and_then(get)
}

/// Adds `nested` to `diff`'s objects, when there is a diff.
fn with_objects(diff: Option<ObjectDiff>, nested: Vec<ObjectDiff>) -> Option<ObjectDiff> {
    diff.map(|mut diff| {
        diff.objects.extend(nested);
        diff
    })
}

/// Spreads compared by identity; each shows its attribute, weight and targets.
pub(super) fn spread_diffs(old: &[Spread], new: &[Spread], contextual: bool) -> Vec<ObjectDiff> {
    keyed_diffs(by_identity(old), by_identity(new), |a, b| {
        let targets = |s| list(s, |s: &Spread| s.spread_target.as_slice());
        let nested = primitive_set_diff("SpreadTarget", targets(a), targets(b), contextual);
        with_objects(struct_diff("Spread", a, b, &[], contextual), nested)
    })
}

pub(super) fn parameterized_diff(
    old: Option<&ParameterizedJobConfig>,
    new: Option<&ParameterizedJobConfig>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let optional = |p| list(p, |p: &ParameterizedJobConfig| p.meta_optional.as_slice());
    let required = |p| list(p, |p: &ParameterizedJobConfig| p.meta_required.as_slice());
    let mut nested = Vec::new();
    nested.extend(string_set_diff("MetaOptional", optional(old), optional(new), contextual));
    nested.extend(string_set_diff("MetaRequired", required(old), required(new), contextual));
    with_objects(struct_diff("ParameterizedJob", old, new, &[], contextual), nested)
}

pub(super) fn multiregion_diff(
    old: Option<&Multiregion>,
    new: Option<&Multiregion>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let strategy = |m| part(m, |m: &Multiregion| m.strategy.as_ref());
    let regions = |m| by_key(list(m, |m: &Multiregion| m.regions.as_slice()), |r| &r.name);
    let mut nested = Vec::new();
    nested.extend(primitive_object_diff("Strategy", strategy(old), strategy(new), &[], contextual));
    nested.extend(keyed_diffs(regions(old), regions(new), |a, b| region_diff(a, b, contextual)));
    sort_objects(&mut nested);
    with_objects(struct_diff("Multiregion", old, new, &[], contextual), nested)
}

fn region_diff(
    old: Option<&MultiregionRegion>,
    new: Option<&MultiregionRegion>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let datacenters = |r| list(r, |r: &MultiregionRegion| r.datacenters.as_slice());
    let nested = string_set_diff("Datacenters", datacenters(old), datacenters(new), contextual)
        .filter(|d| d.diff_type != DiffType::None);
    with_objects(struct_diff("Region", old, new, &[], contextual), nested.into_iter().collect())
}

/// A task's resources: the numbers, then its networks.
pub(super) fn resources_diff(
    old: Option<&Resources>,
    new: Option<&Resources>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let networks = |r| list(r, |r: &Resources| r.networks.as_slice());
    let nested = network_diffs(networks(old), networks(new), contextual);
    with_objects(struct_diff("Resources", old, new, &[], contextual), nested)
}

/// Networks compared by identity: a changed network is one deleted and one added.
pub(super) fn network_diffs(
    old: &[NetworkResource],
    new: &[NetworkResource],
    contextual: bool,
) -> Vec<ObjectDiff> {
    keyed_diffs(by_identity(old), by_identity(new), |a, b| network_diff(a, b, contextual))
}

fn network_diff(
    old: Option<&NetworkResource>,
    new: Option<&NetworkResource>,
    contextual: bool,
) -> Option<ObjectDiff> {
    // Nomad leaves out the fields a node fills in at placement.
    let diff = struct_diff("Network", old, new, &["Device", "CIDR", "IP"], contextual);
    let reserved = |n| list(n, |n: &NetworkResource| n.reserved_ports.as_slice());
    let dynamic = |n| list(n, |n: &NetworkResource| n.dynamic_ports.as_slice());
    let mut nested = port_diffs(reserved(old), reserved(new), false, contextual);
    nested.extend(port_diffs(dynamic(old), dynamic(new), true, contextual));
    let dns = |n| part(n, |n: &NetworkResource| n.dns.as_ref());
    nested.extend(dns_diff(dns(old), dns(new), contextual));
    with_objects(diff, nested)
}

/// Ports matched by label. A dynamic port's value is assigned at placement, so it is not
/// part of the diff.
fn port_diffs(old: &[Port], new: &[Port], dynamic: bool, contextual: bool) -> Vec<ObjectDiff> {
    let (name, excluded): (&str, &[&str]) =
        if dynamic { ("Dynamic Port", &["Value"]) } else { ("Static Port", &[]) };
    let label: fn(&Port) -> &str = |p| &p.label;
    keyed_diffs(by_key(old, label), by_key(new, label), |a, b| {
        primitive_object_diff(name, a, b, excluded, contextual)
    })
}

fn dns_diff(
    old: Option<&DnsConfig>,
    new: Option<&DnsConfig>,
    contextual: bool,
) -> Option<ObjectDiff> {
    if old == new {
        return None;
    }
    // Each list is one field, its members joined by commas.
    let joined = |dns: Option<&DnsConfig>| {
        let mut flat = BTreeMap::new();
        let Some(dns) = dns else { return flat };
        for (name, list) in
            [("Servers", &dns.servers), ("Searches", &dns.searches), ("Options", &dns.options)]
        {
            if !list.is_empty() {
                flat.insert(name.to_owned(), list.join(","));
            }
        }
        flat
    };
    let fields = super::flat::field_diffs(&joined(old), &joined(new), contextual);
    let diff_type = super::flat::presence_type(old, new);
    Some(ObjectDiff { diff_type, name: "DNS".into(), fields, objects: Vec::new() })
}

pub(super) fn scaling_diff(
    old: Option<&ScalingPolicy>,
    new: Option<&ScalingPolicy>,
) -> Option<ObjectDiff> {
    let policy = |s: Option<&ScalingPolicy>| s.map(|s| s.policy.clone()).unwrap_or_default();
    let (a, b) = (policy(old), policy(new));
    // Nomad lists only the scaling fields that changed, even in a contextual diff.
    let nested = free_form_diff("Policy", &a, &b, a.is_empty(), b.is_empty(), false);
    let diff = struct_diff("Scaling", old, new, &["Type"], false);
    with_objects(diff, nested.into_iter().collect())
}

/// Services have no identity of their own, so each old service is matched with the new
/// one that shares the most of name (3), port label (2) and position (1), needing more
/// than 2 points; unmatched ones were deleted or added.
pub(super) fn service_diffs(old: &[Service], new: &[Service], contextual: bool) -> Vec<ObjectDiff> {
    matched_diffs(old, new, best_service_match, |a, b| service_diff(a, b, contextual))
}

/// Diffs of two lists whose items have no key: a lone item on each side is the same one;
/// otherwise each old item takes the unmatched new item `partner` picks for it, and the
/// items left over were deleted or added.
fn matched_diffs<T>(
    old: &[T],
    new: &[T],
    partner: fn(&T, usize, &[T], &[bool]) -> Option<usize>,
    diff: impl Fn(Option<&T>, Option<&T>) -> Option<ObjectDiff>,
) -> Vec<ObjectDiff> {
    if let ([a], [b]) = (old, new) {
        return diff(Some(a), Some(b)).into_iter().collect();
    }
    let mut matched = vec![false; new.len()];
    let mut diffs = Vec::new();
    for (index, item) in old.iter().enumerate() {
        let found = partner(item, index, new, &matched);
        if let Some(found) = found {
            matched[found] = true;
        }
        diffs.extend(diff(Some(item), found.map(|p| &new[p])));
    }
    let added = new.iter().zip(&matched).filter(|(_, m)| !**m);
    diffs.extend(added.filter_map(|(item, _)| diff(None, Some(item))));
    sort_objects(&mut diffs);
    diffs
}

fn best_service_match(
    service: &Service,
    index: usize,
    candidates: &[Service],
    matched: &[bool],
) -> Option<usize> {
    const SCORE_MIN: u32 = 3;
    let mut best: Option<(usize, u32)> = None;
    for (position, candidate) in candidates.iter().enumerate().filter(|(i, _)| !matched[*i]) {
        let score = u32::from(position == index)
            + 2 * u32::from(candidate.port_label == service.port_label)
            + 3 * u32::from(candidate.name == service.name);
        if score >= SCORE_MIN && best.is_none_or(|(_, top)| score > top) {
            best = Some((position, score));
        }
    }
    best.map(|(position, _)| position)
}

fn service_diff(
    old: Option<&Service>,
    new: Option<&Service>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let diff = struct_diff("Service", old, new, &[], contextual)?;
    let canary_tags = |s| list(s, |s: &Service| s.canary_tags.as_slice());
    let tags = |s| list(s, |s: &Service| s.tags.as_slice());
    let checks = |s| by_key(list(s, |s: &Service| s.checks.as_slice()), |c| &c.name);
    let mut nested = Vec::new();
    nested.extend(string_set_diff("CanaryTags", canary_tags(old), canary_tags(new), contextual));
    nested.extend(string_set_diff("Tags", tags(old), tags(new), contextual));
    nested.extend(keyed_diffs(checks(old), checks(new), |a, b| check_diff(a, b, contextual)));
    with_objects(Some(diff), nested)
}

fn check_diff(
    old: Option<&ServiceCheck>,
    new: Option<&ServiceCheck>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let header = |c: Option<&ServiceCheck>| c.map(|c| c.header.clone()).unwrap_or_default();
    let (a, b) = (header(old), header(new));
    let restart = |c| part(c, |c: &ServiceCheck| c.check_restart.as_ref());
    let mut nested = Vec::new();
    nested.extend(free_form_diff("Header", &a, &b, a.is_empty(), b.is_empty(), contextual));
    nested.extend(struct_diff("CheckRestart", restart(old), restart(new), &[], contextual));
    with_objects(struct_diff("Check", old, new, &[], contextual), nested)
}

pub(super) fn vault_diff(
    old: Option<&Vault>,
    new: Option<&Vault>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let policies = |v| list(v, |v: &Vault| v.policies.as_slice());
    let nested = string_set_diff("Policies", policies(old), policies(new), contextual);
    with_objects(struct_diff("Vault", old, new, &[], contextual), nested.into_iter().collect())
}

/// Templates are matched by destination.
pub(super) fn template_diffs(
    old: &[Template],
    new: &[Template],
    contextual: bool,
) -> Vec<ObjectDiff> {
    let same_destination = |template: &Template, _: usize, new: &[Template], matched: &[bool]| {
        (0..new.len()).find(|&i| !matched[i] && new[i].dest_path == template.dest_path)
    };
    matched_diffs(old, new, same_destination, |a, b| template_diff(a, b, contextual))
}

fn template_diff(
    old: Option<&Template>,
    new: Option<&Template>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let script = |t| part(t, |t: &Template| t.change_script.as_ref());
    let (a, b) = (script(old), script(new));
    let args = |s| list(s, |s: &ChangeScript| s.args.as_slice());
    let script_args = string_set_diff("Args", args(a), args(b), contextual);
    let script_diff = with_objects(
        struct_diff("ChangeScript", a, b, &[], contextual),
        script_args.into_iter().collect(),
    );
    with_objects(
        struct_diff("Template", old, new, &[], contextual),
        script_diff.into_iter().collect(),
    )
}
