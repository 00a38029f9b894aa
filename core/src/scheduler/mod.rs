//! Schedulers: from an evaluation and an immutable snapshot to a plan.
//!
//! [`schedule`] is a pure function of its inputs: the snapshot, the evaluation, a seed
//! (for the node shuffle and the IDs it mints) and the leader's time (for reschedule
//! delays). The pipeline is Nomad's: the reconciler ([`reconcile`]) decides what to
//! place, stop and update; the stack ([`select`]) filters nodes ([`feasible`]), checks
//! fit and scores them ([`rank`]); the result is a [`Plan`] plus the evaluations the pass
//! wants created (a blocked one for what did not fit, follow-ups for delayed reschedules).
//! Service and batch jobs go through [`generic`]; system and sysbatch through [`system`].

pub mod annotate;
pub mod feasible;
pub mod generic;
pub mod rank;
pub mod reconcile;
pub mod render;
pub mod select;
pub mod system;
pub mod update;
pub mod version;
pub mod worker;

pub use rank::Algorithm;

use crate::model::{AllocationMetric, DesiredUpdates, Evaluation, JobType, Plan, SchedulerType};
use crate::state::Snapshot;
use std::collections::BTreeMap;

/// Scheduler configuration (Nomad's `SchedulerConfiguration`, the part we honour).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub algorithm: Algorithm,
}

/// What one scheduling pass produces.
#[derive(Clone, Debug, Default)]
pub struct ScheduleOutput {
    pub plan: Plan,
    /// Per group, why placements failed (the evaluation's `FailedTGAllocs`).
    pub failed_tg_allocs: BTreeMap<String, AllocationMetric>,
    /// Per group, how many allocations are still unplaced.
    pub queued: BTreeMap<String, i64>,
    /// Per group, the reconciler's counts (what `job plan` shows).
    pub desired_updates: BTreeMap<String, DesiredUpdates>,
    /// Evaluations to create with the plan: follow-ups for delayed reschedules.
    pub followups: Vec<Evaluation>,
    /// Computed class → eligibility, and whether a check escaped the class: what a
    /// blocked evaluation needs to know which node changes could unblock it.
    pub class_eligibility: BTreeMap<String, bool>,
    pub escaped_computed_class: bool,
    /// The deployment the pass placed for (created or active): the evaluation names it.
    pub deployment_id: String,
}

impl ScheduleOutput {
    pub fn has_failures(&self) -> bool {
        !self.failed_tg_allocs.is_empty()
    }
}

/// Runs one scheduling pass for `eval` against `snap`.
pub fn schedule(
    snap: &Snapshot,
    eval: &Evaluation,
    seed: u64,
    now_ns: i64,
    config: SchedulerConfig,
) -> ScheduleOutput {
    let job = snap.job(&eval.namespace, &eval.job_id).cloned();
    let job_type = job.as_ref().map(|j| j.job_type);
    match (eval.scheduler, job_type) {
        (SchedulerType::System | SchedulerType::Sysbatch, _)
        | (_, Some(JobType::System | JobType::Sysbatch)) => {
            system::schedule(snap, eval, job.as_deref(), seed, now_ns)
        }
        _ => generic::schedule(snap, eval, job.as_deref(), seed, now_ns, config),
    }
}

/// Plan attempts before the worker gives up and blocks the evaluation: 5 for service
/// and system, 2 for batch and sysbatch (Nomad's values).
pub fn plan_attempts_max(scheduler: SchedulerType) -> u32 {
    if scheduler.finishes() { 2 } else { 5 }
}
