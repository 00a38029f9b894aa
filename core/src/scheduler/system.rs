//! The system and sysbatch schedulers: one allocation of each group on every feasible
//! node, no ranking and no limit (Nomad's `scheduler_system.go`).
//!
//! Per group and node: place where none runs; stop on nodes that went down (lost), that
//! drain (unless the drain ignores system jobs) or that no longer pass the constraints;
//! update in place or destructively when the job changed. A finished sysbatch allocation
//! is left alone; a finished or failed system allocation is replaced. Every allocation is
//! named `job.group[0]`, as Nomad names them. Nodes where a feasible group does not fit
//! are reported in the group's metric and leave the evaluation blocked.

use super::feasible;
use super::generic::{inplace_copy, new_plan};
use super::reconcile::{
    ALLOC_JOB_STOPPED, ALLOC_LOST, ALLOC_MIGRATING, ALLOC_NOT_NEEDED, ALLOC_UPDATING,
};
use super::select::{GroupStack, Stack};
use super::update::tasks_updated;
use super::{Algorithm, ScheduleOutput};
use crate::id::IdGen;
use crate::model::{
    AllocClientStatus, AllocDesiredStatus, Allocation, AllocationMetric, Evaluation, Job, JobType,
    Node, NodeStatus, StopRequest, TaskGroup, alloc_name,
};
use crate::state::Snapshot;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn schedule(
    snap: &Snapshot,
    eval: &Evaluation,
    job: Option<&Job>,
    seed: u64,
    _now_ns: i64,
) -> ScheduleOutput {
    let allocs = snap.job_allocs(&eval.namespace, &eval.job_id);
    let mut out = ScheduleOutput { plan: new_plan(snap, eval, job), ..Default::default() };
    let Some(job) = job.filter(|j| !j.stop) else {
        for alloc in allocs.iter().filter(|a| !a.is_terminal()) {
            out.plan.append_stop(alloc, StopRequest::new(ALLOC_JOB_STOPPED));
        }
        return out;
    };
    let mut stack = Stack::new(snap, job, IdGen::new(seed), Algorithm::Binpack);
    let mut nodes: Vec<&Arc<Node>> =
        snap.nodes().filter(|n| feasible::in_job_scope(job, n)).collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    for (index, group) in job.task_groups.iter().enumerate() {
        let mut on_node: BTreeMap<&str, Vec<&Arc<Allocation>>> = BTreeMap::new();
        for alloc in allocs.iter().filter(|a| a.task_group == group.name && !a.server_terminal()) {
            on_node.entry(alloc.node_id.as_str()).or_default().push(alloc);
        }
        let gs = stack.group_stack(index);
        let mut pass = GroupPass { snap, job, group, eval, gs, out: &mut out };
        for node in &nodes {
            let existing = on_node.remove(node.id.as_str()).unwrap_or_default();
            pass.node(&mut stack, node, &existing);
        }
        // Allocations on nodes that left the job's scope or the cluster.
        for (node_id, existing) in on_node {
            for alloc in existing.iter().filter(|a| !a.is_terminal()) {
                let lost = snap.node(node_id).is_none_or(|n| n.status == NodeStatus::Down);
                pass.stop(alloc, if lost { ALLOC_LOST } else { ALLOC_NOT_NEEDED }, lost);
            }
        }
        out.queued.entry(group.name.clone()).or_default();
    }
    out
}

struct GroupPass<'a, 'o> {
    snap: &'a Snapshot,
    job: &'a Job,
    group: &'a TaskGroup,
    eval: &'a Evaluation,
    gs: GroupStack,
    out: &'o mut ScheduleOutput,
}

impl GroupPass<'_, '_> {
    fn node(&mut self, stack: &mut Stack<'_>, node: &Arc<Node>, existing: &[&Arc<Allocation>]) {
        let live: Vec<&Arc<Allocation>> =
            existing.iter().copied().filter(|a| !a.is_terminal()).collect();
        let sysbatch_done = self.job.job_type == JobType::Sysbatch
            && existing.iter().any(|a| a.client_status == AllocClientStatus::Complete);
        if !node.is_schedulable() {
            self.unschedulable(node, &live);
            return;
        }
        if self.gs.checker.check(node).is_some() {
            for alloc in live {
                self.stop(alloc, ALLOC_NOT_NEEDED, false);
            }
            return;
        }
        if let Some(alloc) = live.first() {
            self.update(stack, node, alloc);
            for extra in &live[1..] {
                self.stop(extra, ALLOC_NOT_NEEDED, false);
            }
            return;
        }
        if !sysbatch_done {
            self.place(stack, node, None);
        }
    }

    fn unschedulable(&mut self, node: &Node, live: &[&Arc<Allocation>]) {
        let ignore_drain = node.drain_strategy.as_ref().is_some_and(|d| d.ignore_system_jobs);
        for alloc in live {
            match node.status {
                NodeStatus::Down | NodeStatus::Disconnected => self.stop(alloc, ALLOC_LOST, true),
                _ if node.is_draining() && !ignore_drain => {
                    self.stop(alloc, ALLOC_MIGRATING, false)
                }
                _ => {}
            }
        }
    }

    fn update(&mut self, stack: &mut Stack<'_>, node: &Arc<Node>, alloc: &Arc<Allocation>) {
        if alloc.job_version == self.job.version {
            return;
        }
        let old_job = self.snap.alloc_job(alloc);
        let old_group = old_job.as_ref().and_then(|j| j.group(&self.group.name));
        match (old_job.as_deref(), old_group) {
            (Some(old_job), Some(old)) if !tasks_updated(old_job, old, self.job, self.group) => {
                self.out.plan.append_alloc(inplace_copy(alloc, self.job, self.eval, ""), None);
            }
            _ => {
                stack.note_stop(alloc);
                self.stop(alloc, ALLOC_UPDATING, false);
                self.place(stack, node, Some(alloc));
            }
        }
    }

    fn stop(&mut self, alloc: &Allocation, description: &str, lost: bool) {
        let client_status = lost.then_some(AllocClientStatus::Lost);
        self.out
            .plan
            .append_stop(alloc, StopRequest { client_status, ..StopRequest::new(description) });
    }

    fn place(&mut self, stack: &mut Stack<'_>, node: &Node, previous: Option<&Arc<Allocation>>) {
        let mut metric = AllocationMetric {
            nodes_in_pool: stack.candidate_count() as u64,
            ..Default::default()
        };
        let Some(selected) = stack.select_node(&mut self.gs, &node.id, &mut metric) else {
            let failed = self.out.failed_tg_allocs.entry(self.group.name.clone());
            match failed {
                std::collections::btree_map::Entry::Occupied(mut kept) => {
                    let kept = kept.get_mut();
                    kept.coalesced_failures += 1;
                    kept.nodes_evaluated += metric.nodes_evaluated;
                    kept.nodes_exhausted += metric.nodes_exhausted;
                    for (dimension, n) in metric.dimension_exhausted {
                        *kept.dimension_exhausted.entry_or_default(dimension) += n;
                    }
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(metric);
                }
            }
            self.out.class_eligibility.extend(self.gs.checker.class_eligibility());
            *self.out.queued.entry(self.group.name.clone()).or_default() += 1;
            return;
        };
        let alloc = Allocation {
            id: stack.ids().next_id(),
            namespace: self.job.namespace.clone(),
            eval_id: self.eval.id.clone(),
            name: alloc_name(&self.job.id, &self.group.name, 0),
            node_id: selected.node.id.clone(),
            node_name: selected.node.name.clone(),
            job_id: self.job.id.clone(),
            job_version: self.job.version,
            task_group: self.group.name.clone(),
            allocated_resources: selected.resources,
            metrics: metric,
            desired_status: AllocDesiredStatus::Run,
            client_status: AllocClientStatus::Pending,
            previous_allocation: previous.map(|p| p.id.clone()).unwrap_or_default(),
            ..Allocation::default()
        };
        self.out.plan.append_alloc(alloc, None);
    }
}
