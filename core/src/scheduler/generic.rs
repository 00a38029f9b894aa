//! The service and batch scheduler (Nomad's `generic_sched.go`).
//!
//! Reconcile, then turn the decisions into a plan: stops first (so placements can use
//! what they free), in-place updates, follow-up evaluations for delayed reschedules, and
//! placements through the stack. A group whose placement fails once is not tried again
//! in this pass: later failures are coalesced into its metric, as Nomad does.

use super::reconcile::{Reconciled, Reconciler};
use super::select::Stack;
use super::{ScheduleOutput, SchedulerConfig};
use crate::id::IdGen;
use crate::model::{
    AllocClientStatus, AllocDeploymentStatus, AllocDesiredStatus, Allocation, AllocationMetric,
    Evaluation, Job, Plan, RescheduleTracker, StopRequest,
};
use crate::state::Snapshot;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn schedule(
    snap: &Snapshot,
    eval: &Evaluation,
    job: Option<&Job>,
    seed: u64,
    now_ns: i64,
    config: SchedulerConfig,
) -> ScheduleOutput {
    let allocs = snap.job_allocs(&eval.namespace, &eval.job_id);
    let reconciler = Reconciler {
        snap,
        job,
        namespace: &eval.namespace,
        job_id: &eval.job_id,
        eval_id: &eval.id,
        now_ns,
    };
    let mut reconciled = reconciler.compute(&allocs);
    let mut out = ScheduleOutput {
        plan: new_plan(snap, eval, job),
        desired_updates: reconciled.desired.clone(),
        ..Default::default()
    };
    let mut ids = IdGen::new(seed);
    out.plan.deployment_updates = std::mem::take(&mut reconciled.deployment_updates);
    let Some(job) = job.filter(|j| !j.stop) else {
        append_stops(&mut out.plan, &reconciled);
        return out;
    };
    let stack_ids = IdGen::new(ids.next_u64());
    let mut stack = Stack::new(snap, job, stack_ids, config.algorithm);
    if let Some(mut deployment) = reconciled.new_deployment.take() {
        deployment.id = ids.next_id();
        reconciled.deployment_id = deployment.id.clone();
        out.plan.deployment = Some(deployment);
    }
    for stop in &reconciled.stop {
        stack.note_stop(&stop.alloc);
    }
    append_stops(&mut out.plan, &reconciled);
    for alloc in &reconciled.inplace {
        let updated = inplace_copy(alloc, job, eval, &reconciled.deployment_id);
        out.plan.append_alloc(updated, None);
    }
    delay_reschedules(&mut out, &reconciled, eval, &mut ids, now_ns);
    let requests = std::mem::take(&mut reconciled.place);
    place(&mut out, requests, &mut stack, job, eval, &reconciled.deployment_id);
    out.deployment_id = reconciled.deployment_id;
    out
}

pub(crate) fn new_plan(snap: &Snapshot, eval: &Evaluation, job: Option<&Job>) -> Plan {
    Plan {
        eval_id: eval.id.clone(),
        priority: eval.priority,
        all_at_once: job.is_some_and(|j| j.all_at_once),
        job: job.cloned(),
        snapshot_index: snap.latest_index(),
        ..Plan::default()
    }
}

fn append_stops(plan: &mut Plan, reconciled: &Reconciled) {
    for stop in &reconciled.stop {
        let request =
            StopRequest { client_status: stop.client_status, ..StopRequest::new(stop.description) };
        plan.append_stop(&stop.alloc, request);
    }
}

/// The running allocation, moved to the new job version where it stands. It joins the
/// active deployment, if any, whose health it is judged for anew.
pub(crate) fn inplace_copy(
    alloc: &Allocation,
    job: &Job,
    eval: &Evaluation,
    deployment_id: &str,
) -> Allocation {
    let mut updated = Allocation {
        eval_id: eval.id.clone(),
        job_version: job.version,
        job: None,
        ..alloc.clone()
    };
    if !deployment_id.is_empty() && updated.deployment_id != deployment_id {
        updated.deployment_id = deployment_id.to_owned();
        updated.deployment_status = None;
    }
    updated
}

/// One follow-up evaluation per distinct reschedule time; each failed allocation learns
/// which evaluation will replace it (so later passes leave it alone).
fn delay_reschedules(
    out: &mut ScheduleOutput,
    reconciled: &Reconciled,
    eval: &Evaluation,
    ids: &mut IdGen,
    now_ns: i64,
) {
    let mut by_time: BTreeMap<i64, Vec<&Arc<Allocation>>> = BTreeMap::new();
    for delayed in &reconciled.delayed {
        by_time.entry(delayed.at_ns).or_default().push(&delayed.alloc);
    }
    for (at_ns, allocs) in by_time {
        let mut followup =
            eval.follow_up(ids.next_id(), crate::model::TriggeredBy::AllocFailure, now_ns);
        followup.wait_until = crate::model::Timestamp(at_ns);
        for alloc in allocs {
            let marked = Allocation {
                followup_eval_id: followup.id.clone(),
                job: None,
                ..(**alloc).clone()
            };
            out.plan.append_alloc(marked, None);
        }
        out.followups.push(followup);
    }
}

fn place(
    out: &mut ScheduleOutput,
    requests: Vec<super::reconcile::PlaceRequest>,
    stack: &mut Stack<'_>,
    job: &Job,
    eval: &Evaluation,
    deployment_id: &str,
) {
    let mut current: Option<(String, super::select::GroupStack)> = None;
    for request in requests {
        if let Some(metric) = out.failed_tg_allocs.get_mut(&request.group) {
            metric.coalesced_failures += 1;
            *out.queued.entry(request.group.clone()).or_default() += 1;
            continue;
        }
        if current.as_ref().is_none_or(|(name, _)| *name != request.group) {
            let index = job
                .task_groups
                .iter()
                .position(|g| g.name == request.group)
                .expect("reconciled group exists");
            current = Some((request.group.clone(), stack.group_stack(index)));
        }
        let (_, group_stack) = current.as_mut().expect("set above");
        let penalty: Vec<String> = request
            .previous
            .iter()
            .filter(|_| request.reschedule.is_some())
            .map(|p| p.node_id.clone())
            .collect();
        let mut metric = AllocationMetric {
            nodes_in_pool: stack.candidate_count() as u64,
            ..Default::default()
        };
        match stack.select(group_stack, &penalty, &mut metric) {
            Some(selected) => {
                let id = stack.ids().next_id();
                let reschedule_tracker = tracker(&request);
                let previous_allocation =
                    request.previous.as_ref().map(|p| p.id.clone()).unwrap_or_default();
                let alloc = Allocation {
                    id,
                    namespace: job.namespace.clone(),
                    eval_id: eval.id.clone(),
                    name: request.name,
                    node_id: selected.node.id.clone(),
                    node_name: selected.node.name.clone(),
                    job_id: job.id.clone(),
                    job_version: job.version,
                    task_group: request.group,
                    allocated_resources: selected.resources,
                    metrics: metric,
                    desired_status: AllocDesiredStatus::Run,
                    client_status: AllocClientStatus::Pending,
                    previous_allocation,
                    reschedule_tracker,
                    deployment_id: deployment_id.to_owned(),
                    deployment_status: request.canary.then(|| AllocDeploymentStatus {
                        canary: true,
                        ..AllocDeploymentStatus::default()
                    }),
                    ..Allocation::default()
                };
                // `append_alloc` clones the node ID for its map key; most placements land
                // on a node the plan already has, so look it up by reference first.
                match out.plan.node_allocation.get_mut(&alloc.node_id) {
                    Some(on_node) => on_node.push(alloc),
                    None => out.plan.append_alloc(alloc, None),
                }
            }
            None => {
                out.class_eligibility.extend(group_stack.checker.class_eligibility());
                out.escaped_computed_class |= group_stack.checker.escaped();
                out.failed_tg_allocs.insert(request.group.clone(), metric);
                *out.queued.entry(request.group.clone()).or_default() += 1;
            }
        }
    }
    for group in &job.task_groups {
        out.queued.entry(group.name.clone()).or_default();
    }
}

/// A rescheduled allocation inherits its predecessor's tracker plus this reschedule.
/// Replacements for lost or migrated allocations keep it too, so the reschedule budget
/// survives node failures (Nomad #24918).
fn tracker(request: &super::reconcile::PlaceRequest) -> Option<RescheduleTracker> {
    let mut tracker = request.previous.as_ref().and_then(|p| p.reschedule_tracker.clone());
    if let Some(event) = request.reschedule.clone() {
        tracker.get_or_insert_default().events.push(event);
    }
    tracker
}
