//! The system and sysbatch schedulers: one allocation of each group on every feasible
//! node, no ranking and no limit (Nomad's `scheduler_system.go`).
//!
//! Per group and node: place where none runs; stop on nodes that went down (lost), that
//! drain (unless the drain ignores system jobs) or that no longer pass the constraints;
//! update in place or destructively when the job changed, except on a node that takes
//! no new allocations (ineligible, or draining but ignoring system jobs), where an
//! allocation of an older version is stopped. A finished sysbatch allocation
//! is left alone; a finished or failed system allocation is replaced. Every allocation is
//! named `job.group[0]`, as Nomad names them. Nodes where a feasible group does not fit
//! are reported in the group's metric and leave the evaluation blocked.
//!
//! A system group with an `update` block whose `max_parallel` > 0 rolls out a new job
//! version under a deployment, as Nomad (1.11 on) does, through the reconciler's
//! [`Rollout`]: the deployment is created with the plan when the version never ran or
//! the group updates allocations, and wants one healthy allocation on every node the
//! group runs on after the pass, a number each later pass sets again while it is active
//! (nodes join and leave). Placements and in-place updates (never limited) join it;
//! destructive updates are limited to `max_parallel` minus the deployment's allocations
//! not yet healthy (none while one is unhealthy or the deployment is paused or failed),
//! the rest waiting for the deployment watcher's next evaluation. Without
//! an update block, or with `max_parallel = 0`, every update happens at once. A group's
//! `canary` is a percentage of the nodes it runs on (rounded up): that many destructive
//! updates are made first as canaries, at most `max_parallel` at a time, and the rest
//! wait until the deployment is promoted (by hand, or by `auto_promote` once the
//! canaries are healthy).

use super::feasible;
use super::generic::{inplace_copy, new_plan};
use super::reconcile::{
    ALLOC_JOB_STOPPED, ALLOC_LOST, ALLOC_MIGRATING, ALLOC_NOT_NEEDED, ALLOC_UPDATING, Rollout,
    created_description, current_deployment,
};
use super::select::{GroupStack, Stack};
use super::update::tasks_updated;
use super::{Algorithm, ScheduleOutput};
use crate::id::IdGen;
use crate::model::{
    AllocClientStatus, AllocDeploymentStatus, AllocDesiredStatus, Allocation, AllocationMetric,
    Deployment, DesiredUpdates, Evaluation, Job, JobType, Node, NodeStatus, StopRequest, TaskGroup,
    alloc_name,
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
    let live_job = job.filter(|j| !j.stop);
    let current = current_deployment(snap, &eval.namespace, &eval.job_id, live_job);
    out.plan.deployment_updates.extend(current.cancelled);
    out.deployment_id = current.active_id;
    let Some(job) = live_job else {
        for alloc in allocs.iter().filter(|a| !a.is_terminal()) {
            out.plan.append_stop(alloc, StopRequest::new(ALLOC_JOB_STOPPED));
        }
        return out;
    };
    let mut stack = Stack::new(snap, job, IdGen::new(seed), Algorithm::Binpack);
    let mut nodes: Vec<&Arc<Node>> =
        snap.nodes().filter(|n| feasible::in_job_scope(job, n)).collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let mut planned: Option<Deployment> = None;
    for (index, group) in job.task_groups.iter().enumerate() {
        let mut on_node: BTreeMap<&str, Vec<&Arc<Allocation>>> = BTreeMap::new();
        for alloc in allocs.iter().filter(|a| a.task_group == group.name && !a.server_terminal()) {
            on_node.entry(alloc.node_id.as_str()).or_default().push(alloc);
        }
        let group_allocs: Vec<&Arc<Allocation>> = on_node.values().flatten().copied().collect();
        let gs = stack.group_stack(index);
        let desired = DesiredUpdates::default();
        let mut pass =
            GroupPass { snap, job, group, eval, gs, out: &mut out, changes: Vec::new(), desired };
        for node in &nodes {
            let existing = on_node.remove(node.id.as_str()).unwrap_or_default();
            pass.node(node, &existing);
        }
        // Allocations on nodes that left the job's scope or the cluster.
        for (node_id, existing) in on_node {
            for alloc in existing.iter().filter(|a| !a.is_terminal()) {
                let lost = snap.node(node_id).is_none_or(|n| n.status == NodeStatus::Down);
                pass.stop(alloc, if lost { ALLOC_LOST } else { ALLOC_NOT_NEEDED }, lost);
            }
        }
        pass.roll(&mut stack, current.deployment.as_deref(), &group_allocs, &mut planned);
        let desired = std::mem::take(&mut pass.desired);
        out.desired_updates.insert(group.name.clone(), desired);
        out.queued.entry(group.name.clone()).or_default();
    }
    // A deployment created by this pass, or the active one with new desired totals.
    if let Some(mut deployment) = planned.filter(|d| !d.task_groups.is_empty()) {
        if current.deployment.is_none() {
            deployment.status_description = created_description(&deployment).to_owned();
        }
        out.plan.deployment = Some(deployment);
    }
    out
}

/// What one node needs of a group, decided before any of it is done: whether the
/// group deploys, and how many destructive updates it may make, depend on them all.
enum Change {
    /// A live allocation of the current version stays.
    Keep(Arc<Allocation>),
    Place(Arc<Node>),
    InPlace(Arc<Allocation>),
    Destructive(Arc<Node>, Arc<Allocation>),
}

struct GroupPass<'a, 'o> {
    snap: &'a Snapshot,
    job: &'a Job,
    group: &'a TaskGroup,
    eval: &'a Evaluation,
    gs: GroupStack,
    out: &'o mut ScheduleOutput,
    changes: Vec<Change>,
    /// What `job plan` shows for the group, counted as Nomad's system scheduler does.
    desired: DesiredUpdates,
}

impl GroupPass<'_, '_> {
    fn node(&mut self, node: &Arc<Node>, existing: &[&Arc<Allocation>]) {
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
            self.update(node, alloc);
            for extra in &live[1..] {
                self.stop(extra, ALLOC_NOT_NEEDED, false);
            }
            return;
        }
        if sysbatch_done {
            self.desired.ignore += 1;
        } else {
            self.changes.push(Change::Place(node.clone()));
        }
    }

    /// A node that takes no new allocations keeps those of the job's current version; one
    /// of an older version is stopped, not updated (as Nomad does on a node that is not
    /// ready), so a deployment never waits on a node it cannot roll.
    fn unschedulable(&mut self, node: &Node, live: &[&Arc<Allocation>]) {
        let ignore_drain = node.drain_strategy.as_ref().is_some_and(|d| d.ignore_system_jobs);
        for alloc in live {
            match node.status {
                NodeStatus::Down | NodeStatus::Disconnected => self.stop(alloc, ALLOC_LOST, true),
                _ if node.is_draining() && !ignore_drain => {
                    self.stop(alloc, ALLOC_MIGRATING, false)
                }
                _ if alloc.job_version != self.job.version => {
                    self.stop(alloc, ALLOC_NOT_NEEDED, false)
                }
                _ => self.changes.push(Change::Keep((*alloc).clone())),
            }
        }
    }

    fn update(&mut self, node: &Arc<Node>, alloc: &Arc<Allocation>) {
        if alloc.job_version == self.job.version {
            self.changes.push(Change::Keep(alloc.clone()));
            return;
        }
        let old_job = self.snap.alloc_job(alloc);
        let old_group = old_job.as_ref().and_then(|j| j.group(&self.group.name));
        let change = match (old_job.as_deref(), old_group) {
            (Some(old_job), Some(old)) if !tasks_updated(old_job, old, self.job, self.group) => {
                Change::InPlace(alloc.clone())
            }
            _ => Change::Destructive(node.clone(), alloc.clone()),
        };
        self.changes.push(change);
    }

    /// Carries out the group's changes under its rollout: the deployment is created
    /// (in `planned`) if the group deploys, and destructive updates beyond the rollout's
    /// limit wait for a later evaluation.
    fn roll(
        &mut self,
        stack: &mut Stack<'_>,
        deployment: Option<&Deployment>,
        group_allocs: &[&Arc<Allocation>],
        planned: &mut Option<Deployment>,
    ) {
        let changes = std::mem::take(&mut self.changes);
        let destructive = changes.iter().filter(|c| matches!(c, Change::Destructive(..))).count();
        let updating = destructive > 0 || changes.iter().any(|c| matches!(c, Change::InPlace(_)));
        let mut rollout = Rollout::new(self.job, self.group, deployment);
        rollout.note_node_canaries(group_allocs);
        // The desired total is known only once the placements are made (a node the
        // group does not fit on runs nothing); it is set below. The nodes it would run
        // on count the canaries.
        let nodes = i32::try_from(changes.len()).unwrap_or(i32::MAX);
        rollout.start(
            (self.job, self.group),
            group_allocs,
            (updating, destructive > 0),
            nodes,
            planned,
        );
        let starts_here = deployment.is_none()
            && planned.as_ref().is_some_and(|d| d.task_groups.contains_key(&self.group.name));
        if let Some(new) = planned.as_mut().filter(|d| starts_here && d.id.is_empty()) {
            new.id = stack.ids().next_id();
            self.out.deployment_id = new.id.clone();
        }
        let unhealthy_held = changes.iter().any(|c| match c {
            Change::Keep(alloc) => {
                deployment.is_some_and(|d| d.id == alloc.deployment_id)
                    && alloc.deployment_healthy() == Some(false)
            }
            _ => false,
        });
        let stops = &self.out.plan.node_update;
        let stopped =
            |a: &Allocation| stops.get(&a.node_id).is_some_and(|s| s.iter().any(|x| x.id == a.id));
        let counted = (group_allocs, &stopped as &dyn Fn(&Allocation) -> bool);
        let mut destructive_allowed =
            rollout.destructive_limit(counted, destructive, unhealthy_held);
        let mut canaries_allowed = rollout.node_canary_limit(counted);
        let deployment_id = self.out.deployment_id.clone();
        let mut running = 0;
        for change in changes {
            match change {
                Change::Keep(_) => {
                    running += 1;
                    self.desired.ignore += 1;
                }
                Change::Place(node) => {
                    running += usize::from(self.place(stack, &node, None, &deployment_id, false));
                    self.desired.place += 1;
                }
                Change::InPlace(alloc) => {
                    running += 1;
                    self.desired.in_place_update += 1;
                    let updated = inplace_copy(&alloc, self.job, self.eval, &deployment_id);
                    self.out.plan.append_alloc(updated, None);
                }
                Change::Destructive(node, alloc) => {
                    running += 1;
                    // Canaries first, then plain updates once promoted.
                    let canary = canaries_allowed > 0;
                    if canary {
                        canaries_allowed -= 1;
                        self.desired.canary += 1;
                    } else if destructive_allowed > 0 {
                        destructive_allowed -= 1;
                        self.desired.destructive_update += 1;
                    } else {
                        self.desired.ignore += 1;
                        continue;
                    }
                    stack.note_stop(&alloc);
                    self.append_stop(&alloc, ALLOC_UPDATING, false);
                    self.place(stack, &node, Some(&alloc), &deployment_id, canary);
                }
            }
        }
        if !starts_here {
            self.resize(deployment, running, planned);
            return;
        }
        let Some(new) = planned.as_mut() else { return };
        if running == 0 {
            new.task_groups.remove(&self.group.name);
        } else if let Some(state) = new.task_groups.get_mut(&self.group.name) {
            state.desired_total = i32::try_from(running).unwrap_or(i32::MAX);
        }
    }

    /// An active deployment whose group now runs on another number of nodes (a node
    /// joined, went down or stopped fitting) is planned again with the group's new desired
    /// total, as Nomad's system scheduler does on every pass; otherwise it could never
    /// finish, the watcher wanting exactly its desired total of healthy allocations.
    fn resize(
        &mut self,
        deployment: Option<&Deployment>,
        running: usize,
        planned: &mut Option<Deployment>,
    ) {
        let Some(current) = deployment.filter(|d| d.is_active()) else { return };
        let Some(state) = current.task_groups.get(&self.group.name) else { return };
        let total = i32::try_from(running).unwrap_or(i32::MAX);
        if state.desired_total == total {
            return;
        }
        let resized = planned.get_or_insert_with(|| current.clone());
        if let Some(state) = resized.task_groups.get_mut(&self.group.name) {
            state.desired_total = total;
        }
    }

    /// Stops an allocation the group no longer wants on its node (migrating off a draining
    /// node counts as a migration).
    fn stop(&mut self, alloc: &Allocation, description: &str, lost: bool) {
        if description == ALLOC_MIGRATING {
            self.desired.migrate += 1;
        } else {
            self.desired.stop += 1;
        }
        self.append_stop(alloc, description, lost);
    }

    fn append_stop(&mut self, alloc: &Allocation, description: &str, lost: bool) {
        let client_status = lost.then_some(AllocClientStatus::Lost);
        self.out
            .plan
            .append_stop(alloc, StopRequest { client_status, ..StopRequest::new(description) });
    }

    /// Places the group on `node`, joining `deployment_id` if it is set (as a canary if
    /// `canary`); false if it did not fit.
    fn place(
        &mut self,
        stack: &mut Stack<'_>,
        node: &Node,
        previous: Option<&Arc<Allocation>>,
        deployment_id: &str,
        canary: bool,
    ) -> bool {
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
            return false;
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
            deployment_id: deployment_id.to_owned(),
            deployment_status: canary.then(|| AllocDeploymentStatus {
                canary: true,
                ..AllocDeploymentStatus::default()
            }),
            ..Allocation::default()
        };
        self.out.plan.append_alloc(alloc, None);
        true
    }
}
