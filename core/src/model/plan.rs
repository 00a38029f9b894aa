//! Plans and plan results: what a scheduler proposes and what the leader accepted.
//!
//! A scheduler works on a snapshot, so its plan may be stale by the time the leader sees
//! it. The plan applier re-checks every node against current state and may commit only
//! part of a plan; the [`PlanResult`] says what was committed and, on a partial commit,
//! the index the scheduler must refresh to before retrying (`RefreshIndex`).

use super::alloc::{AllocClientStatus, AllocDesiredStatus, Allocation};
use super::deployment::{Deployment, DeploymentStatusUpdate};
use super::job::Job;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Allocations keyed by node ID, the shape plans and results use for every change set.
pub type NodeAllocations = BTreeMap<String, Vec<Allocation>>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Plan {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// The broker's token for the evaluation: a plan from a worker that lost its lease
    /// (the eval was nacked and redelivered) is refused.
    pub eval_token: String,
    pub priority: i32,
    /// Commit everything or nothing (the job's `all_at_once`).
    pub all_at_once: bool,
    /// The job the placements run; `None` when the plan only stops a deregistered job.
    pub job: Option<Job>,
    /// Per node, allocations to stop (copies with the job stripped).
    pub node_update: NodeAllocations,
    /// Per node, allocations to create or update in place.
    pub node_allocation: NodeAllocations,
    /// Only for `job plan` dry runs.
    pub annotations: Option<PlanAnnotations>,
    pub deployment: Option<Deployment>,
    pub deployment_updates: Vec<DeploymentStatusUpdate>,
    /// Per node, allocations evicted to make room for this plan's placements.
    pub node_preemptions: NodeAllocations,
    /// The state index the scheduler's snapshot was taken at.
    pub snapshot_index: u64,
}

impl Plan {
    /// Adds a stop of `alloc`. The copy drops its job (the plan's job or state has it) and
    /// takes the stop reason, an optional client status and the follow-up evaluation.
    pub fn append_stop(&mut self, alloc: &Allocation, stop: StopRequest) {
        let mut stopped = alloc.clone();
        if self.job.is_none() {
            // Deregistration: the stopped allocations are the only source of the job.
            self.job = stopped.job.take().map(|job| *job);
        }
        stopped.job = None;
        stopped.desired_status = AllocDesiredStatus::Stop;
        stopped.desired_description = stop.description;
        if let Some(status) = stop.client_status {
            stopped.client_status = status;
        }
        if !stop.followup_eval_id.is_empty() {
            stopped.followup_eval_id = stop.followup_eval_id;
        }
        self.node_update.entry(stopped.node_id.clone()).or_default().push(stopped);
    }

    /// Adds a placement (or in-place update). `job` is `None` when the allocation runs the
    /// plan's job, which then travels once, in `Plan::job`, and is attached on commit; it
    /// is `Some` only for an allocation pinned to another version.
    pub fn append_alloc(&mut self, mut alloc: Allocation, job: Option<Job>) {
        alloc.job = job.map(Box::new);
        self.node_allocation.entry(alloc.node_id.clone()).or_default().push(alloc);
    }

    /// Adds an eviction of `alloc` on behalf of allocation `preempted_by`.
    pub fn append_preempted(&mut self, alloc: &Allocation, preempted_by: &str) {
        let mut evicted = alloc.clone();
        evicted.job = None;
        evicted.desired_status = AllocDesiredStatus::Evict;
        evicted.preempted_by_allocation = preempted_by.to_owned();
        evicted.desired_description = format!("Preempted by alloc ID {preempted_by}");
        self.node_preemptions.entry(evicted.node_id.clone()).or_default().push(evicted);
    }

    /// Removes a pending stop of `alloc_id` on `node_id` (the reconciler changed its mind).
    pub fn pop_stop(&mut self, node_id: &str, alloc_id: &str) {
        if let Some(stops) = self.node_update.get_mut(node_id) {
            stops.retain(|a| a.id != alloc_id);
            if stops.is_empty() {
                self.node_update.remove(node_id);
            }
        }
    }

    /// Nothing to commit: no stops, placements, deployment or deployment updates.
    /// Preemptions alone never make a plan (they only serve placements).
    pub fn is_no_op(&self) -> bool {
        self.node_update.is_empty()
            && self.node_allocation.is_empty()
            && self.deployment.is_none()
            && self.deployment_updates.is_empty()
    }

    /// How many placements the plan proposes, over all nodes.
    pub fn placement_count(&self) -> usize {
        self.node_allocation.values().map(Vec::len).sum()
    }
}

/// How an allocation is being stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopRequest {
    /// Becomes the allocation's `DesiredDescription` ("alloc not needed due to job update").
    pub description: String,
    /// Set when the servers also decide the client side (e.g. `lost` for a down node).
    pub client_status: Option<AllocClientStatus>,
    pub followup_eval_id: String,
}

impl StopRequest {
    pub fn new(description: impl Into<String>) -> StopRequest {
        StopRequest { description: description.into(), ..StopRequest::default() }
    }
}

/// What `job plan` shows: per group, the counts of each kind of change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanAnnotations {
    #[serde(rename = "DesiredTGUpdates")]
    pub desired_tg_updates: BTreeMap<String, DesiredUpdates>,
    pub preempted_allocs: Vec<Allocation>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredUpdates {
    pub ignore: u64,
    pub place: u64,
    pub migrate: u64,
    pub stop: u64,
    pub in_place_update: u64,
    pub destructive_update: u64,
    pub canary: u64,
    pub preemptions: u64,
}

/// What the plan applier committed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanResult {
    pub node_update: NodeAllocations,
    pub node_allocation: NodeAllocations,
    pub node_preemptions: NodeAllocations,
    pub deployment: Option<Deployment>,
    pub deployment_updates: Vec<DeploymentStatusUpdate>,
    /// Non-zero on a partial commit: the scheduler must see state at least this new
    /// before it plans again.
    pub refresh_index: u64,
    /// The Raft index the result was committed at.
    pub alloc_index: u64,
}

/// `(fully committed, placements proposed, placements committed)`.
pub type CommitCount = (bool, usize, usize);

impl PlanResult {
    /// Whether every placement of `plan` was committed, and the two counts. Only
    /// placements count, as in Nomad: stops are always accepted.
    pub fn is_full_commit(&self, plan: &Plan) -> CommitCount {
        let expected = plan.placement_count();
        let actual: usize = plan
            .node_allocation
            .keys()
            .map(|node| self.node_allocation.get(node).map_or(0, Vec::len))
            .sum();
        (actual == expected, expected, actual)
    }

    /// Nothing was committed at all.
    pub fn is_no_op(&self) -> bool {
        self.node_update.is_empty()
            && self.node_allocation.is_empty()
            && self.deployment.is_none()
            && self.deployment_updates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(id: &str, node: &str) -> Allocation {
        Allocation { id: id.into(), node_id: node.into(), ..Allocation::default() }
    }

    #[test]
    fn stops_strip_the_job_and_record_the_reason() {
        let job = Job { id: "web".into(), ..Job::default() };
        let running = Allocation { job: Some(Box::new(job.clone())), ..alloc("a1", "n1") };
        let mut plan = Plan::default();
        assert!(plan.is_no_op());
        let stop = StopRequest {
            client_status: Some(AllocClientStatus::Lost),
            ..StopRequest::new("node is down")
        };
        plan.append_stop(&running, stop);
        let stopped = &plan.node_update["n1"][0];
        assert_eq!(stopped.desired_status, AllocDesiredStatus::Stop);
        assert_eq!(stopped.client_status, AllocClientStatus::Lost);
        assert_eq!(stopped.desired_description, "node is down");
        assert!(stopped.job.is_none());
        assert_eq!(plan.job.as_ref(), Some(&job), "deregistration keeps the job");
        assert!(!plan.is_no_op());
        plan.pop_stop("n1", "a1");
        assert!(plan.is_no_op());
    }

    #[test]
    fn full_commit_counts_placements() {
        let mut plan = Plan::default();
        plan.append_alloc(alloc("a1", "n1"), None);
        plan.append_alloc(alloc("a2", "n1"), None);
        plan.append_alloc(alloc("a3", "n2"), None);
        plan.append_stop(&alloc("old", "n3"), StopRequest::new("replaced"));
        let mut result = PlanResult::default();
        result.node_allocation.insert("n1".into(), plan.node_allocation["n1"].clone());
        assert_eq!(result.is_full_commit(&plan), (false, 3, 2));
        result.node_allocation.insert("n2".into(), plan.node_allocation["n2"].clone());
        assert_eq!(result.is_full_commit(&plan), (true, 3, 3));
    }
}
