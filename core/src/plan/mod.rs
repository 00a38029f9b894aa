//! The plan applier: optimistic concurrency for schedulers.
//!
//! Schedulers plan against snapshots that may be stale by the time their plan arrives.
//! [`evaluate_plan`] re-checks every node the plan touches against the latest state: the
//! node must exist, be ready and eligible (a node that is not may still take stops), and
//! its live allocations, minus the plan's stops, evictions and updated allocations, plus
//! its placements, must fit in CPU, memory, disk, and ports without collision. Nodes that
//! fail are dropped whole (partial commit) and the result carries a `RefreshIndex`; an
//! all-at-once plan is then rejected whole. The caller commits the result through
//! [`crate::state::Command::PlanApply`].
//!
//! The applier's fit rules are a superset of the scheduler's, so a plan computed on the
//! same state is always accepted (checked by a property test); a stricter applier would
//! reject the same plan forever (Nomad #9506).
//!
//! The applier pipelines as Nomad's does: it evaluates the next plan while the results it
//! proposed before are still committing ([`InFlight`]), counting their placements as if
//! they had applied. Raft commits a leader's entries in log order, so the next plan
//! commits only if every result it was evaluated on committed first.

pub mod queue;

use crate::model::{
    Allocation, ComparableResources, DeploymentStatusUpdate, NodeEligibility, NodeStatus, Plan,
    PlanResult,
};
use crate::state::{State, alloc_ports};
use std::collections::{BTreeMap, BTreeSet};

/// Why a node's part of a plan was refused, for traces and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRejection {
    pub node_id: String,
    pub reason: String,
}

/// The result and, for a partial commit, which nodes were dropped and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluated {
    pub result: PlanResult,
    pub rejected: Vec<NodeRejection>,
}

/// Plan results proposed through Raft and not applied yet, in proposal order: the next
/// plan is evaluated as if they had applied. Only what makes a node fuller or a
/// deployment end is taken from them (placements, ended deployments); what they stop
/// still counts as running until it applies, which can only make the check stricter.
#[derive(Clone, Debug, Default)]
pub struct InFlight<'a> {
    results: Vec<&'a PlanResult>,
    /// The Raft index of the last of them.
    last_index: u64,
}

impl<'a> InFlight<'a> {
    /// `results` proposed in this order, the last at Raft index `last_index`.
    pub fn new(results: Vec<&'a PlanResult>, last_index: u64) -> InFlight<'a> {
        InFlight { results, last_index }
    }

    /// The live placements the results make on `node_id`.
    fn placements_on<'s>(&'s self, node_id: &'s str) -> impl Iterator<Item = &'a Allocation> + 's {
        let on_node = self.results.iter().filter_map(move |r| r.node_allocation.get(node_id));
        on_node.flatten().filter(|a| !a.is_terminal())
    }

    fn deployment_updates(&self) -> impl Iterator<Item = &'a DeploymentStatusUpdate> + '_ {
        self.results.iter().flat_map(|r| &r.deployment_updates)
    }
}

pub fn evaluate_plan(state: &State, plan: &Plan) -> PlanResult {
    evaluate_plan_verbose(state, plan).result
}

pub fn evaluate_plan_verbose(state: &State, plan: &Plan) -> Evaluated {
    evaluate_plan_owned(state, plan.clone())
}

/// [`evaluate_plan_verbose`] taking the plan by value, so accepted allocations move into
/// the result instead of being copied (the applier's hot path).
pub fn evaluate_plan_owned(state: &State, plan: Plan) -> Evaluated {
    evaluate_plan_pipelined(state, &InFlight::default(), plan)
}

/// [`evaluate_plan_owned`] against `state` with the `in_flight` results counted as
/// applied. A node refused here may fit once they apply, so the refresh index is at
/// least the last of them.
pub fn evaluate_plan_pipelined(state: &State, in_flight: &InFlight, mut plan: Plan) -> Evaluated {
    let mut out = Evaluated::default();
    let nodes: BTreeSet<&String> =
        plan.node_update.keys().chain(plan.node_allocation.keys()).collect();
    for node_id in nodes {
        if let Err(reason) = evaluate_node(state, in_flight, &plan, node_id) {
            out.rejected.push(NodeRejection { node_id: node_id.clone(), reason });
        }
    }
    for rejected in &out.rejected {
        plan.node_update.remove(&rejected.node_id);
        plan.node_allocation.remove(&rejected.node_id);
        plan.node_preemptions.remove(&rejected.node_id);
    }
    out.result.node_update = std::mem::take(&mut plan.node_update);
    out.result.node_allocation = std::mem::take(&mut plan.node_allocation);
    out.result.node_preemptions = std::mem::take(&mut plan.node_preemptions);
    if !out.rejected.is_empty() {
        let indexes = state.table_indexes();
        out.result.refresh_index =
            indexes.nodes.max(indexes.allocs).max(in_flight.last_index).max(1);
        if plan.all_at_once {
            out.result.node_update.clear();
            out.result.node_allocation.clear();
            out.result.node_preemptions.clear();
            return out;
        }
    }
    out.result.deployment = plan.deployment.clone();
    out.result.deployment_updates = plan.deployment_updates.clone();
    out
}

/// Nomad's `evaluateNodePlan`.
fn evaluate_node(
    state: &State,
    in_flight: &InFlight,
    plan: &Plan,
    node_id: &str,
) -> Result<(), String> {
    let placements = plan.node_allocation.get(node_id).map(Vec::as_slice).unwrap_or_default();
    if placements.is_empty() {
        return Ok(()); // stops and evictions always apply
    }
    let ended = placements.iter().find_map(|a| ended_deployment(state, in_flight, plan, a));
    if let Some(ended) = ended {
        return Err(format!("deployment {ended} is no longer active"));
    }
    // The node list holds the node, its capacity and its live usage flat, found with one
    // lookup: the applier re-checks every node of every plan, serially.
    let list = state.node_list();
    let Some(position) = list.position(node_id) else {
        return Err("node does not exist".into());
    };
    let node = &list.nodes()[position];
    if node.status != NodeStatus::Ready {
        return Err("node is not ready for placements".into());
    }
    let updates_only = || placements.iter().all(|a| state.alloc(&a.id).is_some());
    if node.scheduling_eligibility == NodeEligibility::Ineligible && !updates_only() {
        return Err("node is not eligible".into());
    }
    // What the plan replaces on this node: its stops, evictions and updated allocations.
    // A placement with create index 0 was made by the scheduler and never stored (state
    // stamps every stored allocation with its index, always > 0), so it replaces nothing
    // and needs no lookup; were such a placement to reuse a stored ID, its predecessor
    // would simply count twice, which can only make this check stricter.
    let mut removed = plan
        .node_update
        .get(node_id)
        .into_iter()
        .chain(plan.node_preemptions.get(node_id))
        .flatten()
        .chain(placements.iter().filter(|a| a.create_index != 0))
        .peekable();
    let live = || placements.iter().filter(|a| !a.is_terminal());
    let asks_ports = live().any(|a| !alloc_ports(a).is_empty());
    // Start from the node's live usage and take out what the plan replaces, so the check
    // costs O(plan) rather than O(allocations on the node); the node's allocations are
    // only looked at when the plan replaces some or asks for ports.
    let mut used = list.used(position);
    let base =
        if removed.peek().is_some() || asks_ports { state.node_allocs(node_id) } else { None };
    let mut ports: BTreeMap<i32, u32> = base.map(|b| b.ports.clone()).unwrap_or_default();
    for replaced in removed {
        let Some(alloc) =
            base.and_then(|b| b.allocs.get(replaced.id.as_str())).filter(|a| !a.is_terminal())
        else {
            continue;
        };
        add(&mut used, alloc, -1);
        for port in alloc_ports(alloc) {
            if let Some(count) = ports.get_mut(&port) {
                *count = count.saturating_sub(1);
            }
        }
    }
    // What plans still committing place here counts as placed. An in-place update among
    // them counts beside the version it replaces until it applies: stricter, never looser.
    for alloc in in_flight.placements_on(node_id) {
        add(&mut used, alloc, 1);
        if asks_ports {
            for port in alloc_ports(alloc) {
                *ports.entry(port).or_default() += 1;
            }
        }
    }
    let reserved: BTreeSet<i32> = if asks_ports {
        let reserved = node.reserved_resources.networks.ports().unwrap_or_default();
        reserved.into_iter().map(i32::from).collect()
    } else {
        BTreeSet::new()
    };
    for alloc in live() {
        add(&mut used, alloc, 1);
        for port in alloc_ports(alloc) {
            let count = ports.entry(port).or_default();
            if *count > 0 || reserved.contains(&port) {
                return Err(format!("network: port collision on {port}"));
            }
            *count = 1;
        }
    }
    let capacity = list.capacity(position);
    for (dimension, used, cap) in [
        ("cpu", used.cpu_shares, capacity.cpu_shares),
        ("memory", used.memory_mb, capacity.memory_mb),
        ("disk", used.disk_mb, capacity.disk_mb),
    ] {
        if used > cap {
            return Err(format!("{dimension} exhausted ({used} > {cap})"));
        }
    }
    Ok(())
}

/// The deployment a new placement joins, if it ended (failed, cancelled, successful)
/// since the plan was made, or a plan still committing ends it: nothing more is placed
/// for it.
fn ended_deployment<'a>(
    state: &State,
    in_flight: &InFlight,
    plan: &Plan,
    alloc: &'a Allocation,
) -> Option<&'a str> {
    let id = alloc.deployment_id.as_str();
    if alloc.create_index != 0
        || id.is_empty()
        || plan.deployment.as_ref().is_some_and(|d| d.id == id)
    {
        return None;
    }
    let ending =
        in_flight.deployment_updates().any(|u| u.deployment_id == id && !u.status.is_active());
    let ended = ending || state.deployment(id).is_some_and(|d| !d.is_active());
    ended.then_some(id)
}

fn add(used: &mut ComparableResources, alloc: &Allocation, sign: i64) {
    let r = alloc.allocated_resources.comparable();
    used.cpu_shares += sign * r.cpu_shares;
    used.memory_mb += sign * r.memory_mb;
    used.disk_mb += sign * r.disk_mb;
}
