//! Evaluations: the unit of scheduling work.
//!
//! Anything that may change where allocations should run (a job registered, a node down,
//! an allocation failed, a deployment progressing) creates an evaluation; the broker hands
//! it to a scheduler, whose plan answers it. Statuses and trigger names are Nomad's
//! strings (`structs.go`), which the CLI prints as they are. Follow-up evaluations take
//! their ID and time from the caller, because core neither generates UUIDs from the OS
//! nor reads a clock.

use super::job::{Job, JobType};
use super::metric::AllocationMetric;
use super::timestamp::Timestamp;
use super::value::DurationNs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EvalStatus {
    /// Waiting for capacity; the blocked-evals tracker re-enqueues it.
    Blocked,
    #[default]
    Pending,
    Complete,
    Failed,
    /// Superseded by a newer evaluation of the same job (Nomad spells it with one `l`).
    Canceled,
}

impl EvalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalStatus::Blocked => "blocked",
            EvalStatus::Pending => "pending",
            EvalStatus::Complete => "complete",
            EvalStatus::Failed => "failed",
            EvalStatus::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, EvalStatus::Complete | EvalStatus::Failed | EvalStatus::Canceled)
    }
}

/// Which scheduler handles an evaluation: one per job type, plus the core (GC) scheduler.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerType {
    #[default]
    Service,
    Batch,
    System,
    Sysbatch,
    /// Garbage collection and other server housekeeping.
    #[serde(rename = "_core")]
    Core,
}

impl SchedulerType {
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerType::Service => "service",
            SchedulerType::Batch => "batch",
            SchedulerType::System => "system",
            SchedulerType::Sysbatch => "sysbatch",
            SchedulerType::Core => "_core",
        }
    }

    /// It schedules a job that runs to completion ([`JobType::finishes`]).
    pub fn finishes(self) -> bool {
        matches!(self, SchedulerType::Batch | SchedulerType::Sysbatch)
    }
}

impl From<JobType> for SchedulerType {
    fn from(job_type: JobType) -> SchedulerType {
        match job_type {
            JobType::Service => SchedulerType::Service,
            JobType::Batch => SchedulerType::Batch,
            JobType::System => SchedulerType::System,
            JobType::Sysbatch => SchedulerType::Sysbatch,
        }
    }
}

/// Why an evaluation exists (Nomad's `EvalTrigger*`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum TriggeredBy {
    #[default]
    JobRegister,
    JobDeregister,
    PeriodicJob,
    NodeDrain,
    NodeUpdate,
    AllocStop,
    Scheduled,
    RollingUpdate,
    DeploymentWatcher,
    FailedFollowUp,
    MaxPlanAttempts,
    AllocFailure,
    QueuedAllocs,
    Preemption,
    JobScaling,
    Reconnect,
    AllocReschedule,
    MaxDisconnectTimeout,
}

impl TriggeredBy {
    pub const ALL: [TriggeredBy; 18] = [
        TriggeredBy::JobRegister,
        TriggeredBy::JobDeregister,
        TriggeredBy::PeriodicJob,
        TriggeredBy::NodeDrain,
        TriggeredBy::NodeUpdate,
        TriggeredBy::AllocStop,
        TriggeredBy::Scheduled,
        TriggeredBy::RollingUpdate,
        TriggeredBy::DeploymentWatcher,
        TriggeredBy::FailedFollowUp,
        TriggeredBy::MaxPlanAttempts,
        TriggeredBy::AllocFailure,
        TriggeredBy::QueuedAllocs,
        TriggeredBy::Preemption,
        TriggeredBy::JobScaling,
        TriggeredBy::Reconnect,
        TriggeredBy::AllocReschedule,
        TriggeredBy::MaxDisconnectTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggeredBy::JobRegister => "job-register",
            TriggeredBy::JobDeregister => "job-deregister",
            TriggeredBy::PeriodicJob => "periodic-job",
            TriggeredBy::NodeDrain => "node-drain",
            TriggeredBy::NodeUpdate => "node-update",
            TriggeredBy::AllocStop => "alloc-stop",
            TriggeredBy::Scheduled => "scheduled",
            TriggeredBy::RollingUpdate => "rolling-update",
            TriggeredBy::DeploymentWatcher => "deployment-watcher",
            TriggeredBy::FailedFollowUp => "failed-follow-up",
            TriggeredBy::MaxPlanAttempts => "max-plan-attempts",
            TriggeredBy::AllocFailure => "alloc-failure",
            TriggeredBy::QueuedAllocs => "queued-allocs",
            TriggeredBy::Preemption => "preemption",
            TriggeredBy::JobScaling => "job-scaling",
            TriggeredBy::Reconnect => "reconnect",
            TriggeredBy::AllocReschedule => "alloc-reschedule",
            TriggeredBy::MaxDisconnectTimeout => "max-disconnect-timeout",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Evaluation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    #[serde(rename = "Type")]
    pub scheduler: SchedulerType,
    pub triggered_by: TriggeredBy,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_modify_index: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_modify_index: u64,
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: EvalStatus,
    pub status_description: String,
    /// Delay before the broker hands this evaluation out (rolling updates).
    pub wait: DurationNs,
    /// Absolute time before which it is not handed out (delayed reschedules).
    pub wait_until: Timestamp,
    pub next_eval: String,
    pub previous_eval: String,
    pub blocked_eval: String,
    /// Filled only for `?related=true` reads; never stored.
    pub related_evals: Vec<EvaluationStub>,
    /// Per task group, why placements failed.
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, AllocationMetric>,
    /// For blocked evaluations: computed class → whether the job could run there.
    pub class_eligibility: BTreeMap<String, bool>,
    pub quota_limit_reached: String,
    /// A constraint looked at something outside the computed class (e.g. `unique.*`), so
    /// class eligibility cannot be trusted and any node change may unblock it.
    pub escaped_computed_class: bool,
    /// Set for `job plan` dry runs: the scheduler annotates instead of committing.
    pub annotate_plan: bool,
    pub queued_allocations: BTreeMap<String, i64>,
    #[serde(rename = "LeaderACL")]
    pub leader_acl: String,
    /// The state index the scheduler worked from, so a retry can wait for newer state.
    pub snapshot_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    pub modify_time: i64,
}

/// Why a blocked evaluation was cancelled: a newer blocked evaluation of its job took its
/// place (a job keeps one).
pub const BLOCKED_SUPERSEDED: &str = "evaluation superseded by a newer blocked evaluation";

impl Evaluation {
    /// Marks a blocked evaluation cancelled because a newer one of its job took its
    /// place: the leader's tracker and the state both use it, so they agree on the text.
    pub fn supersede(&mut self) {
        self.status = EvalStatus::Canceled;
        self.status_description = BLOCKED_SUPERSEDED.into();
    }

    /// Whether this blocked evaluation takes the place of `kept`, the one its job holds
    /// blocked: the newer by creation wins, and of two created by one entry the one
    /// written later (the state writes an entry's evaluations in order). The state, its
    /// snapshot restore and the leader's tracker all decide by this one rule.
    pub fn replaces_blocked(&self, kept: &Evaluation) -> bool {
        self.create_index >= kept.create_index
    }

    /// A new pending evaluation of `job` (its scheduler, priority and namespace), for a
    /// register, a node update, a periodic launch... `id` and `now_ns` come from the
    /// caller (seeded IDs, leader time).
    pub fn for_job(id: String, job: &Job, triggered_by: TriggeredBy, now_ns: i64) -> Evaluation {
        Evaluation {
            id,
            namespace: job.namespace.clone(),
            priority: job.priority,
            scheduler: SchedulerType::from(job.job_type),
            triggered_by,
            job_id: job.id.clone(),
            status: EvalStatus::Pending,
            create_time: now_ns,
            modify_time: now_ns,
            ..Evaluation::default()
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// Pending evaluations go to the broker's ready queues.
    pub fn should_enqueue(&self) -> bool {
        self.status == EvalStatus::Pending
    }

    /// Blocked evaluations go to the blocked-evals tracker.
    pub fn should_block(&self) -> bool {
        self.status == EvalStatus::Blocked
    }

    /// A new pending evaluation that continues this one's job, linked back through
    /// `PreviousEval`. `id` and `now_ns` come from the caller (seeded IDs, leader time).
    pub fn follow_up(&self, id: String, triggered_by: TriggeredBy, now_ns: i64) -> Evaluation {
        Evaluation {
            id,
            namespace: self.namespace.clone(),
            priority: self.priority,
            scheduler: self.scheduler,
            triggered_by,
            job_id: self.job_id.clone(),
            job_modify_index: self.job_modify_index,
            status: EvalStatus::Pending,
            previous_eval: self.id.clone(),
            create_time: now_ns,
            modify_time: now_ns,
            ..Evaluation::default()
        }
    }

    /// The next step of a rolling update, handed out after `wait`.
    pub fn next_rolling_eval(&self, id: String, wait: DurationNs, now_ns: i64) -> Evaluation {
        Evaluation { wait, ..self.follow_up(id, TriggeredBy::RollingUpdate, now_ns) }
    }

    /// The retry of an evaluation that hit the broker's delivery limit.
    pub fn failed_follow_up_eval(&self, id: String, wait: DurationNs, now_ns: i64) -> Evaluation {
        Evaluation { wait, ..self.follow_up(id, TriggeredBy::FailedFollowUp, now_ns) }
    }

    /// The evaluation that waits for capacity after placements failed.
    pub fn blocked_eval(&self, id: String, blocked: BlockedContext, now_ns: i64) -> Evaluation {
        Evaluation {
            status: EvalStatus::Blocked,
            failed_tg_allocs: blocked.failed_tg_allocs,
            class_eligibility: blocked.class_eligibility,
            escaped_computed_class: blocked.escaped_computed_class,
            quota_limit_reached: blocked.quota_limit_reached,
            ..self.follow_up(id, TriggeredBy::QueuedAllocs, now_ns)
        }
    }

    /// The summary the API lists and `?related=true` attaches.
    pub fn stub(&self) -> EvaluationStub {
        EvaluationStub {
            id: self.id.clone(),
            namespace: self.namespace.clone(),
            priority: self.priority,
            scheduler: self.scheduler,
            triggered_by: self.triggered_by,
            job_id: self.job_id.clone(),
            node_id: self.node_id.clone(),
            deployment_id: self.deployment_id.clone(),
            status: self.status,
            status_description: self.status_description.clone(),
            wait_until: self.wait_until,
            next_eval: self.next_eval.clone(),
            previous_eval: self.previous_eval.clone(),
            blocked_eval: self.blocked_eval.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
            create_time: self.create_time,
            modify_time: self.modify_time,
        }
    }
}

/// What a scheduler learned about why a job could not be placed, carried by the blocked
/// evaluation so the tracker knows which node changes could help.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockedContext {
    pub failed_tg_allocs: BTreeMap<String, AllocationMetric>,
    pub class_eligibility: BTreeMap<String, bool>,
    pub escaped_computed_class: bool,
    pub quota_limit_reached: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EvaluationStub {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    #[serde(rename = "Type")]
    pub scheduler: SchedulerType,
    pub triggered_by: TriggeredBy,
    #[serde(rename = "JobID")]
    pub job_id: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: EvalStatus,
    pub status_description: String,
    pub wait_until: Timestamp,
    pub next_eval: String,
    pub previous_eval: String,
    pub blocked_eval: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_use_nomads_spelling() {
        for trigger in TriggeredBy::ALL {
            let json = serde_json::to_value(trigger).unwrap();
            assert_eq!(json, trigger.as_str(), "{trigger:?}");
            assert_eq!(serde_json::from_value::<TriggeredBy>(json).unwrap(), trigger);
        }
        assert_eq!(serde_json::to_value(SchedulerType::Core).unwrap(), "_core");
        assert_eq!(serde_json::to_value(EvalStatus::Canceled).unwrap(), "canceled");
    }

    #[test]
    fn follow_ups_link_back_and_keep_the_job() {
        let eval = Evaluation {
            id: "e1".into(),
            job_id: "web".into(),
            priority: 70,
            scheduler: SchedulerType::Batch,
            status: EvalStatus::Complete,
            ..Evaluation::default()
        };
        let next = eval.next_rolling_eval("e2".into(), DurationNs::from_secs(30), 5);
        assert_eq!(next.previous_eval, "e1");
        assert_eq!((next.priority, next.scheduler), (70, SchedulerType::Batch));
        assert_eq!(next.triggered_by, TriggeredBy::RollingUpdate);
        assert!(next.should_enqueue());
        let blocked = eval.blocked_eval("e3".into(), BlockedContext::default(), 5);
        assert!(blocked.should_block() && !blocked.is_terminal());
        assert_eq!(blocked.triggered_by, TriggeredBy::QueuedAllocs);
        assert!(eval.is_terminal());
    }
}
