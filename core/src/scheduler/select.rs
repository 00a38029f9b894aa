//! The placement stack: a seeded shuffle of candidate nodes, feasibility, fit, scoring,
//! the limit iterator and max-score selection (Nomad's `GenericStack`).
//!
//! A [`Stack`] lives for one scheduling pass. It keeps, per candidate node, what the plan
//! in progress adds and removes, so each placement sees the ones before it. Node order is
//! a shuffle seeded by the caller (eval ID × state index); the scan position carries over
//! between placements, as Nomad's static iterator does, so successive placements look at
//! fresh nodes.

use super::feasible::{
    self, Compiled, GroupChecker, OP_DISTINCT_HOSTS, OP_DISTINCT_PROPERTY, Patterns,
};
use super::rank::{self, Algorithm, SpreadTracker};
use crate::id::IdGen;
use crate::model::{
    AllocatedPortMapping, AllocatedResources, AllocatedTaskResources, Allocation, AllocationMetric,
    ComparableResources, Job, NetworkResource, Node, TaskGroup,
};
use crate::state::{NodeAllocs, NodeList, Snapshot, alloc_ports};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Low-scoring options the limit iterator may pass over before taking them anyway.
pub const LOW_SCORE_SKIPS_MAX: usize = 3;
/// With affinities or spreads, at least this many options are scored.
pub const NODE_LIMIT_FOR_PREFERENCES: usize = 100;
/// Random probes for a free dynamic port before scanning the range in order.
pub const DYNAMIC_PORT_PROBES_MAX: usize = 20;

/// Per candidate node: the plan's changes so far.
#[derive(Clone, Debug, Default)]
struct NodeSlot<'a> {
    base: Option<Option<&'a NodeAllocs>>,
    delta: ComparableResources,
    ports_added: Vec<i32>,
    ports_freed: Vec<i32>,
    /// Live allocations of this job on the node, per group index.
    group_allocs: Vec<(usize, u32)>,
}

impl NodeSlot<'_> {
    fn job_allocs(&self) -> u32 {
        self.group_allocs.iter().map(|(_, n)| n).sum()
    }

    fn group_count(&self, group: usize) -> u32 {
        self.group_allocs.iter().find(|(g, _)| *g == group).map_or(0, |(_, n)| *n)
    }

    fn bump_group(&mut self, group: usize, by: i64) {
        match self.group_allocs.iter_mut().find(|(g, _)| *g == group) {
            Some((_, n)) => *n = (i64::from(*n) + by).max(0) as u32,
            None if by > 0 => self.group_allocs.push((group, by as u32)),
            None => {}
        }
    }
}

/// A chosen node and what was assigned there.
#[derive(Clone, Debug)]
pub struct Selected {
    pub node: Arc<Node>,
    pub resources: AllocatedResources,
    pub score: f64,
}

/// What a group asks for, computed once per group.
#[derive(Clone, Debug)]
pub struct GroupAsk {
    pub group_index: usize,
    pub total: ComparableResources,
    pub template: AllocatedResources,
    pub networks: Vec<NetworkResource>,
}

impl GroupAsk {
    pub fn new(group_index: usize, group: &TaskGroup) -> GroupAsk {
        let mut template = AllocatedResources::default();
        for task in &group.tasks {
            let mut allocated = AllocatedTaskResources::default();
            allocated.cpu.cpu_shares = i64::from(task.resources.cpu_mhz);
            allocated.memory.memory_mb = i64::from(task.resources.memory_mb);
            allocated.memory.memory_max_mb = i64::from(task.resources.memory_max_mb);
            template.tasks.insert(task.name.clone(), allocated);
        }
        template.shared.disk_mb = i64::from(group.ephemeral_disk.size_mb);
        let networks: Vec<NetworkResource> = group
            .networks
            .iter()
            .chain(group.tasks.iter().flat_map(|t| &t.resources.networks))
            .cloned()
            .collect();
        GroupAsk { group_index, total: template.comparable(), template, networks }
    }
}

/// Per group: feasibility, the plan-dependent constraints, and scoring inputs.
pub struct GroupStack {
    pub checker: GroupChecker,
    /// Per candidate node, the feasibility verdict once computed.
    verdicts: Vec<Verdict>,
    pub ask: GroupAsk,
    distinct_hosts: Option<bool>,
    properties: Vec<PropertyLimit>,
    spreads: Vec<SpreadTracker>,
    affinities: Vec<(Compiled, i8)>,
    desired_count: u32,
    limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Unknown,
    Feasible,
    Filtered(Arc<str>),
}

/// A `distinct_property` constraint: at most `limit` allocations per property value.
struct PropertyLimit {
    target: String,
    text: String,
    limit: u32,
    counts: BTreeMap<String, u32>,
}

pub struct Stack<'a> {
    snap: &'a Snapshot,
    job: &'a Job,
    /// The snapshot's node list: per-node class, capacity and usage, flat.
    list: &'a NodeList,
    nodes: Vec<&'a Arc<Node>>,
    /// Per candidate, its position in `list`.
    list_pos: Vec<u32>,
    /// List position → candidate position (`u32::MAX` if not a candidate), built on first
    /// use (only jobs with allocations need it).
    index_of: Option<Vec<u32>>,
    slots: Vec<NodeSlot<'a>>,
    cursor: usize,
    ids: IdGen,
    algorithm: Algorithm,
    /// Node IDs per live allocation of this job, for the property and spread counts.
    job_alloc_nodes: Vec<(usize, &'a str)>,
    /// `regexp` patterns compiled in this pass, shared by every group stack.
    patterns: Patterns,
}

impl<'a> Stack<'a> {
    /// Builds the candidate list: ready, eligible nodes in the job's datacenters and pool,
    /// shuffled with `seed`.
    pub fn new(snap: &'a Snapshot, job: &'a Job, ids: IdGen, algorithm: Algorithm) -> Stack<'a> {
        // The table's iteration order is a fixed function of the node IDs (no sort
        // needed for determinism); Fisher-Yates with the seeded stream does the rest.
        // Scope is decided once per distinct (datacenter, pool), not once per node.
        let list = snap.node_list();
        let in_scope: Vec<bool> = list
            .scopes()
            .iter()
            .map(|(dc, pool)| feasible::in_job_scope_of(job, dc, pool))
            .collect();
        let mut list_pos: Vec<u32> = (0..list.len())
            .filter(|&i| list.schedulable(i) && in_scope[list.scope_id(i) as usize])
            .map(|i| i as u32)
            .collect();
        let mut ids = ids;
        for i in (1..list_pos.len()).rev() {
            let j = (ids.next_u64() % (i as u64 + 1)) as usize;
            list_pos.swap(i, j);
        }
        let nodes: Vec<&'a Arc<Node>> =
            list_pos.iter().map(|&p| &list.nodes()[p as usize]).collect();
        let slots = vec![NodeSlot::default(); nodes.len()];
        let mut stack = Stack {
            snap,
            job,
            list,
            nodes,
            list_pos,
            index_of: None,
            slots,
            cursor: 0,
            ids,
            algorithm,
            job_alloc_nodes: Vec::new(),
            patterns: Patterns::default(),
        };
        stack.count_existing();
        stack
    }

    fn position(&mut self, node_id: &str) -> Option<usize> {
        let (list, list_pos) = (self.list, &self.list_pos);
        let index = self.index_of.get_or_insert_with(|| {
            let mut index = vec![u32::MAX; list.len()];
            for (candidate, &p) in list_pos.iter().enumerate() {
                index[p as usize] = candidate as u32;
            }
            index
        });
        let candidate = index[list.position(node_id)?];
        (candidate != u32::MAX).then_some(candidate as usize)
    }

    pub fn candidate_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn ids(&mut self) -> &mut IdGen {
        &mut self.ids
    }

    fn count_existing(&mut self) {
        for alloc in self.snap.job_allocs(&self.job.namespace, &self.job.id) {
            if alloc.is_terminal() {
                continue;
            }
            let Some(group) = self.job.task_groups.iter().position(|g| g.name == alloc.task_group)
            else {
                continue;
            };
            let Some(node) = self.snap.node(&alloc.node_id) else { continue };
            self.job_alloc_nodes.push((group, node.id.as_str()));
            if let Some(i) = self.position(&alloc.node_id) {
                self.slots[i].bump_group(group, 1);
            }
        }
    }

    /// Records a stop from the plan: its resources and ports are free for placements.
    pub fn note_stop(&mut self, alloc: &Allocation) {
        if alloc.is_terminal() {
            return;
        }
        if let Some(group) = self.job.task_groups.iter().position(|g| g.name == alloc.task_group) {
            if let Some(k) =
                self.job_alloc_nodes.iter().position(|(g, n)| *g == group && *n == alloc.node_id)
            {
                self.job_alloc_nodes.swap_remove(k);
            }
            if let Some(i) = self.position(&alloc.node_id) {
                self.slots[i].bump_group(group, -1);
            }
        }
        let Some(i) = self.position(&alloc.node_id) else { return };
        let r = alloc.allocated_resources.comparable();
        let slot = &mut self.slots[i];
        slot.delta.cpu_shares -= r.cpu_shares;
        slot.delta.memory_mb -= r.memory_mb;
        slot.delta.disk_mb -= r.disk_mb;
        slot.ports_freed.extend(alloc_ports(alloc));
    }

    pub fn group_stack(&mut self, group_index: usize) -> GroupStack {
        let job = self.job;
        let group = &job.task_groups[group_index];
        let checker = GroupChecker::new(job, group, &mut self.patterns);
        let job_level = job.constraints.iter().map(|c| (c, false));
        let group_level = group.constraints.iter().map(|c| (c, true));
        let constraints: Vec<_> = job_level.chain(group_level).collect();
        let distinct_hosts = constraints
            .iter()
            .filter(|(c, _)| c.operand == OP_DISTINCT_HOSTS && c.r_target != "false")
            .map(|(_, group_only)| *group_only)
            .min();
        let properties = constraints
            .iter()
            .filter(|(c, _)| c.operand == OP_DISTINCT_PROPERTY)
            .map(|(c, group_only)| self.property_limit(c, *group_only, group_index))
            .collect();
        let spreads = job
            .spreads
            .iter()
            .chain(&group.spreads)
            .map(|s| {
                SpreadTracker::new(
                    s,
                    group.count.max(0) as u32,
                    self.group_values(&s.attribute, group_index),
                )
            })
            .collect::<Vec<_>>();
        let affinities: Vec<_> = job
            .affinities
            .iter()
            .chain(&group.affinities)
            .chain(group.tasks.iter().flat_map(|t| &t.affinities))
            .map(|a| {
                let c = crate::model::Constraint {
                    l_target: a.l_target.clone(),
                    r_target: a.r_target.clone(),
                    operand: a.operand.clone(),
                };
                (Compiled::with_patterns(&c, &mut self.patterns), a.weight)
            })
            .collect();
        let limit = self.limit(group, !spreads.is_empty() || !affinities.is_empty());
        GroupStack {
            verdicts: vec![Verdict::Unknown; self.nodes.len()],
            checker,
            ask: GroupAsk::new(group_index, group),
            distinct_hosts,
            properties,
            spreads,
            affinities,
            desired_count: group.count.max(1) as u32,
            limit,
        }
    }

    /// Nomad's limit: ⌈log2 n⌉ (at least 2) for services, 2 for batch, and at least
    /// `max(count, 100)` when affinities or spreads make more options worth scoring.
    fn limit(&self, group: &TaskGroup, preferences: bool) -> usize {
        if preferences {
            return (group.count.max(0) as usize).max(NODE_LIMIT_FOR_PREFERENCES);
        }
        if self.job.job_type.finishes() {
            return 2;
        }
        let n = self.nodes.len().max(1) as f64;
        (n.log2().ceil() as usize).max(2)
    }

    fn property_limit(
        &self,
        c: &crate::model::Constraint,
        group_only: bool,
        group_index: usize,
    ) -> PropertyLimit {
        let limit = c.r_target.parse::<u32>().ok().filter(|&n| n > 0).unwrap_or(1);
        let mut counts = BTreeMap::new();
        for (group, node_id) in &self.job_alloc_nodes {
            if group_only && *group != group_index {
                continue;
            }
            if let Some(value) =
                self.snap.node(node_id).and_then(|node| feasible::resolve(&c.l_target, node))
            {
                *counts.entry(value.to_owned()).or_default() += 1;
            }
        }
        PropertyLimit {
            target: c.l_target.clone(),
            text: feasible::constraint_text(c),
            limit,
            counts,
        }
    }

    /// Attribute value → live allocations of this group, for spread scoring.
    fn group_values(&self, attribute: &str, group_index: usize) -> BTreeMap<String, u32> {
        let mut counts = BTreeMap::new();
        for (group, node_id) in &self.job_alloc_nodes {
            if *group != group_index {
                continue;
            }
            if let Some(value) =
                self.snap.node(node_id).and_then(|n| feasible::resolve(attribute, n))
            {
                *counts.entry(value.to_owned()).or_default() += 1;
            }
        }
        counts
    }

    fn base(&mut self, i: usize) -> Option<&'a NodeAllocs> {
        let slot = &mut self.slots[i];
        if slot.base.is_none() {
            slot.base = Some(self.snap.node_allocs(&self.nodes[i].id).map(|b| b.as_ref()));
        }
        slot.base.flatten()
    }

    /// Picks a node for one allocation of `gs`'s group, or records why none fits.
    /// `penalty` lists nodes a rescheduled allocation failed on.
    pub fn select(
        &mut self,
        gs: &mut GroupStack,
        penalty: &[String],
        metric: &mut AllocationMetric,
    ) -> Option<Selected> {
        let n = self.nodes.len();
        let mut best: Option<(usize, f64, Ports)> = None;
        let mut skipped: Vec<(usize, f64, Ports)> = Vec::new();
        let mut taken = 0;
        let mut seen = 0;
        while taken < gs.limit && seen < n {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % n;
            seen += 1;
            metric.evaluate_node();
            let Some((score, resources)) = self.consider(i, gs, penalty, metric) else { continue };
            if score <= 0.0 && skipped.len() < LOW_SCORE_SKIPS_MAX {
                skipped.push((i, score, resources));
                continue;
            }
            taken += 1;
            if best.as_ref().is_none_or(|(_, s, _)| score > *s) {
                best = Some((i, score, resources));
            }
        }
        for option in skipped {
            if best.as_ref().is_none_or(|(_, s, _)| option.1 > *s) {
                best = Some(option);
            }
        }
        let (i, score, ports) = best?;
        let resources = resources_with_ports(gs, ports);
        self.commit(i, gs, &resources);
        Some(Selected { node: self.nodes[i].clone(), resources, score })
    }

    /// Places on one given node (system jobs): feasibility and fit, no ranking.
    pub fn select_node(
        &mut self,
        gs: &mut GroupStack,
        node_id: &str,
        metric: &mut AllocationMetric,
    ) -> Option<Selected> {
        let i = self.position(node_id)?;
        metric.evaluate_node();
        let (score, ports) = self.consider(i, gs, &[], metric)?;
        let resources = resources_with_ports(gs, ports);
        self.commit(i, gs, &resources);
        Some(Selected { node: self.nodes[i].clone(), resources, score })
    }

    /// Feasibility, fit and score of one node, or `None` (with the metric updated).
    fn consider(
        &mut self,
        i: usize,
        gs: &mut GroupStack,
        penalty: &[String],
        metric: &mut AllocationMetric,
    ) -> Option<(f64, Ports)> {
        let node: &'a Arc<Node> = self.nodes[i];
        let p = self.list_pos[i] as usize;
        if gs.verdicts[i] == Verdict::Unknown {
            gs.verdicts[i] = match gs.checker.check_with_class_id(node, self.list.class_id(p)) {
                None => Verdict::Feasible,
                Some(reason) => Verdict::Filtered(reason.into()),
            };
        }
        if let Verdict::Filtered(reason) = &gs.verdicts[i] {
            metric.filter_node(node, reason);
            return None;
        }
        if let Some(reason) = self.plan_constraints(i, gs, node) {
            metric.filter_node(node, &reason);
            return None;
        }
        let used = self.used(i, p);
        let capacity = self.list.capacity(p);
        if let Some(dimension) = exhausted(&used, &gs.ask.total, &capacity) {
            metric.exhausted_node(node, dimension);
            return None;
        }
        let ports = match self.assign_ports(i, node, gs) {
            Ok(ports) => ports,
            Err(dimension) => {
                metric.exhausted_node(node, dimension);
                return None;
            }
        };
        // Score normalisation: the mean of the scores that apply to this node.
        let mut total = rank::fit_score(self.algorithm, &used, &gs.ask.total, &capacity);
        let mut scores = 1.0;
        let collisions = self.slots[i].group_count(gs.ask.group_index);
        if collisions > 0 {
            total -= f64::from(collisions + 1) / f64::from(gs.desired_count);
            scores += 1.0;
        }
        if penalty.iter().any(|p| *p == node.id) {
            total -= 1.0;
            scores += 1.0;
        }
        for extra in
            [rank::affinity_score(&gs.affinities, node), rank::spread_score(&gs.spreads, node)]
                .into_iter()
                .flatten()
        {
            total += extra;
            scores += 1.0;
        }
        Some((total / scores, ports))
    }

    /// The node's usage in the snapshot plus the plan's changes so far.
    fn used(&self, i: usize, p: usize) -> ComparableResources {
        let base = self.list.used(p);
        let d = self.slots[i].delta;
        ComparableResources {
            cpu_shares: base.cpu_shares + d.cpu_shares,
            memory_mb: base.memory_mb + d.memory_mb,
            disk_mb: base.disk_mb + d.disk_mb,
        }
    }

    /// `distinct_hosts` and `distinct_property`, which depend on the plan so far.
    fn plan_constraints(&self, i: usize, gs: &GroupStack, node: &Node) -> Option<String> {
        let slot = &self.slots[i];
        if let Some(group_only) = gs.distinct_hosts {
            let present =
                if group_only { slot.group_count(gs.ask.group_index) } else { slot.job_allocs() };
            if present > 0 {
                return Some(OP_DISTINCT_HOSTS.to_owned());
            }
        }
        for property in &gs.properties {
            let Some(value) = feasible::resolve(&property.target, node) else {
                return Some(format!("{} (missing property)", property.text));
            };
            if property.counts.get(value).copied().unwrap_or(0) >= property.limit {
                return Some(property.text.clone());
            }
        }
        None
    }

    /// Static ports must be free; dynamic ones get a free port from the node's range.
    /// Returns the group's networks with every port's value filled in.
    fn assign_ports(
        &mut self,
        i: usize,
        node: &Node,
        gs: &GroupStack,
    ) -> Result<Ports, &'static str> {
        if gs.ask.networks.is_empty() {
            return Ok(None);
        }
        let base = self.base(i);
        let slot = &self.slots[i];
        let mut used: BTreeSet<i32> =
            base.map(|b| b.ports.keys().copied().collect()).unwrap_or_default();
        for port in &slot.ports_freed {
            used.remove(port);
        }
        used.extend(&slot.ports_added);
        used.extend(
            node.reserved_resources.networks.ports().unwrap_or_default().into_iter().map(i32::from),
        );
        let (low, high) =
            (node.node_resources.min_dynamic_port, node.node_resources.max_dynamic_port);
        let mut networks = gs.ask.networks.clone();
        for network in &mut networks {
            for port in &network.reserved_ports {
                if !used.insert(port.value) {
                    return Err("network: reserved port collision");
                }
            }
            for port in &mut network.dynamic_ports {
                port.value = self
                    .free_port(&used, low, high)
                    .ok_or("network: dynamic port selection failed")?;
                used.insert(port.value);
            }
        }
        Ok(Some(networks))
    }

    fn free_port(&mut self, used: &BTreeSet<i32>, low: i32, high: i32) -> Option<i32> {
        if high < low {
            return None;
        }
        let span = (high - low + 1) as u64;
        for _ in 0..DYNAMIC_PORT_PROBES_MAX {
            let port = low + (self.ids.next_u64() % span) as i32;
            if !used.contains(&port) {
                return Some(port);
            }
        }
        (low..=high).find(|p| !used.contains(p))
    }

    /// Adds a placement to the plan-in-progress view.
    fn commit(&mut self, i: usize, gs: &mut GroupStack, resources: &AllocatedResources) {
        let node: &'a Arc<Node> = self.nodes[i];
        let slot = &mut self.slots[i];
        let r = resources.comparable();
        slot.delta.cpu_shares += r.cpu_shares;
        slot.delta.memory_mb += r.memory_mb;
        slot.delta.disk_mb += r.disk_mb;
        slot.ports_added.extend(resources.shared.ports.iter().map(|p| p.value));
        slot.bump_group(gs.ask.group_index, 1);
        if !gs.properties.is_empty() || !gs.spreads.is_empty() {
            self.job_alloc_nodes.push((gs.ask.group_index, node.id.as_str()));
        }
        for property in &mut gs.properties {
            if let Some(value) = feasible::resolve(&property.target, node) {
                *property.counts.entry(value.to_owned()).or_default() += 1;
            }
        }
        for spread in &mut gs.spreads {
            spread.record(node);
        }
    }
}

/// The first dimension in which `used + ask` exceeds `capacity` (Nomad's names).
fn exhausted(
    used: &ComparableResources,
    ask: &ComparableResources,
    capacity: &crate::model::NodeCapacity,
) -> Option<&'static str> {
    if used.cpu_shares + ask.cpu_shares > capacity.cpu_shares {
        Some("cpu")
    } else if used.memory_mb + ask.memory_mb > capacity.memory_mb {
        Some("memory")
    } else if used.disk_mb + ask.disk_mb > capacity.disk_mb {
        Some("disk")
    } else {
        None
    }
}

/// Port assignments for a group with networks (`None` when it has none).
type Ports = Option<Vec<NetworkResource>>;

/// The group's allocated resources with the chosen ports filled in; built once per
/// placement, not per node considered.
fn resources_with_ports(gs: &GroupStack, ports: Ports) -> AllocatedResources {
    let mut resources = gs.ask.template.clone();
    if let Some(networks) = ports {
        for port in networks.iter().flat_map(|n| n.reserved_ports.iter().chain(&n.dynamic_ports)) {
            let to = if port.to == -1 { port.value } else { port.to };
            resources.shared.ports.push(AllocatedPortMapping {
                label: port.label.clone(),
                value: port.value,
                to,
                host_ip: String::new(),
            });
        }
        resources.shared.networks = networks;
    }
    resources
}
