//! Applying log entries: the only way state changes.
//!
//! [`State::apply`] takes the entry's Raft index and the leader's stamped time (unix ns)
//! and nothing else from the outside world, so replicas that apply the same entries hold
//! the same state. A refused command (an EnforceIndex conflict) changes nothing but the
//! latest index, which every replica moves identically.

use super::events::{Event, EventPayload, EventType};
use super::table::IdKey;
use super::{AutopilotConfig, JOB_VERSIONS_RETAINED_MAX, JobKey, JobSummary, State};
use crate::model::{
    AllocClientStatus, AllocDeploymentStatus, Allocation, Deployment, DeploymentStatus,
    DeploymentStatusUpdate, DesiredTransition, DrainStrategy, EvalStatus, Evaluation, Job, Node,
    NodeEligibility, NodeStatus, PlanResult, TaskState, Timestamp, deployment_description,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// A state-changing log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Register or update a job; `enforce_index` is the `JobModifyIndex` the caller saw
    /// (`Some(0)`: the job must not exist). `eval` is created with it (none for templates).
    JobRegister {
        job: Job,
        enforce_index: Option<u64>,
        eval: Option<Evaluation>,
    },
    /// Stop a job (keeping it, `Stop = true`) or purge it.
    JobDeregister {
        namespace: String,
        job_id: String,
        purge: bool,
        eval: Option<Evaluation>,
    },
    NodeRegister {
        node: Node,
    },
    NodeStatus {
        node_id: String,
        status: NodeStatus,
        evals: Vec<Evaluation>,
    },
    NodeEligibility {
        node_id: String,
        eligibility: NodeEligibility,
        evals: Vec<Evaluation>,
    },
    /// Start (`Some`) or cancel (`None`) a drain; starting marks the node's allocations
    /// for migration and makes it ineligible.
    NodeDrain {
        node_id: String,
        drain: Option<DrainStrategy>,
        evals: Vec<Evaluation>,
    },
    EvalUpsert {
        evals: Vec<Evaluation>,
    },
    /// A plan as the applier committed it, with the evaluations it produced.
    PlanApply {
        result: PlanResult,
        job: Option<Job>,
        evals: Vec<Evaluation>,
    },
    /// Client-side status reports.
    AllocClientUpdate {
        updates: Vec<AllocClientUpdate>,
        evals: Vec<Evaluation>,
    },
    DeploymentUpsert {
        deployment: Deployment,
    },
    /// Garbage collection: forgets terminal evaluations and allocations, purges dead
    /// jobs and deletes down nodes, as the leader found them past their thresholds.
    /// Anything no longer eligible by the time the entry applies is kept.
    Reap {
        eval_ids: Vec<String>,
        alloc_ids: Vec<String>,
        jobs: Vec<JobKey>,
        node_ids: Vec<String>,
    },
    /// Sets what should happen to allocations next (Nomad's
    /// `AllocUpdateDesiredTransitionRequest`): `alloc stop` marks one for migration, and
    /// its evaluation lets the scheduler stop and replace it. Set fields overwrite, unset
    /// ones keep what the allocation had; terminal or unknown allocations are skipped.
    AllocDesiredTransition {
        transitions: BTreeMap<String, DesiredTransition>,
        evals: Vec<Evaluation>,
    },
    /// The periodic dispatcher (or a forced launch) starts one run of a periodic job:
    /// the child job (`<parent>/periodic-<unix seconds>`, `ParentID` set), its
    /// evaluation and the parent's launch record, in one entry so every server agrees on
    /// all three. A scheduled launch not after the recorded one is refused, so no time is
    /// launched twice whatever the proposing leader's clock read.
    PeriodicLaunch {
        child: Job,
        eval: Evaluation,
        launch_ns: i64,
        forced: bool,
    },
    /// `deployment promote`: marks the canaries of every group (`all`) or of `groups`
    /// promoted, with Nomad's rules: the deployment must be active and every canary
    /// being promoted healthy, and there must be one.
    DeploymentPromote {
        deployment_id: String,
        all: bool,
        groups: Vec<String>,
        eval: Option<Evaluation>,
    },
    /// `deployment fail|pause|resume`: an operator's status change of an active
    /// deployment.
    DeploymentStatusChange {
        update: DeploymentStatusUpdate,
        eval: Option<Evaluation>,
    },
    /// The deployment watcher's verdict on an active deployment (successful, or failed
    /// with Nomad's text), with the evaluation that lets the scheduler act on it and, for
    /// an auto-revert, the stable job version registered again as the newest.
    DeploymentWatcherUpdate {
        update: DeploymentStatusUpdate,
        revert: Option<Job>,
        eval: Option<Evaluation>,
    },
    /// `deployment allocation-health` (for `health_check = "manual"`): sets the health of
    /// allocations of an active deployment at the entry's time.
    DeploymentAllocHealth {
        deployment_id: String,
        healthy: Vec<String>,
        unhealthy: Vec<String>,
        eval: Option<Evaluation>,
    },
    /// `operator autopilot set-config`: replaces the autopilot configuration, or, with
    /// `cas_index`, only if its modify index is still that (0: none was ever set); the
    /// outcome's `updated` says which.
    AutopilotSetConfig {
        config: AutopilotConfig,
        cas_index: Option<u64>,
    },
    // Appended: entries are decoded by variant position (see `codec`).
    /// `PUT /v1/node/:id/purge` (Nomad's `Node.Deregister`): forgets the node. Its
    /// allocations stay as they were; `evals` (one per job with a live allocation there,
    /// and every system job) let the scheduler find them on a node it no longer knows
    /// and mark them lost, as for a node that went down.
    NodeDeregister {
        node_id: String,
        evals: Vec<Evaluation>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocClientUpdate {
    pub alloc_id: String,
    pub client_status: AllocClientStatus,
    pub client_description: String,
    /// The task runners' states, by task name; an empty map keeps what the server has.
    pub task_states: BTreeMap<String, TaskState>,
    /// Set once the client decided the allocation's health for a deployment.
    pub deployment_status: Option<AllocDeploymentStatus>,
    /// The deployment that verdict is for: one the servers moved the allocation out of
    /// since (an in-place update into a newer deployment) does not count for the next.
    pub deployment_id: String,
    /// Grows with every report the client sends for the allocation, across its restarts
    /// ([`Allocation::client_report_seq`]): the servers apply only a report newer than
    /// the one they hold.
    pub report_seq: u64,
}

/// Why a command was refused. `Display` gives Nomad's texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyError {
    EnforceIndex {
        expected: u64,
        reason: EnforceFailure,
    },
    NotFound {
        what: &'static str,
        id: String,
    },
    /// A rule of the command refused it (a deployment action with Nomad's message, a
    /// periodic launch already made or whose parent is gone or inactive).
    Refused {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnforceFailure {
    AlreadyExists,
    Conflicting { current: u64 },
    DoesNotExist,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::EnforceIndex { expected, reason } => {
                write!(f, "Enforcing job modify index {expected}: ")?;
                match reason {
                    EnforceFailure::AlreadyExists => f.write_str("job already exists"),
                    EnforceFailure::Conflicting { current } => {
                        write!(f, "job exists with conflicting job modify index: {current}")
                    }
                    EnforceFailure::DoesNotExist => f.write_str("job does not exist"),
                }
            }
            ApplyError::NotFound { what, id } => write!(f, "{what} not found: {id}"),
            ApplyError::Refused { message } => f.write_str(message),
        }
    }
}

/// What the leader must act on after an entry is applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyOutcome {
    pub job_modify_index: u64,
    /// Pending evaluations to hand to the broker, blocked ones to the tracker.
    pub evals: Vec<Arc<Evaluation>>,
    /// Computed classes where capacity may have appeared (a node became ready or eligible,
    /// an allocation finished): blocked evaluations for them may now fit.
    pub capacity_changed: Vec<String>,
    /// Whether a check-and-set command wrote (one without a check always does).
    pub updated: bool,
}

impl State {
    /// [`State::apply`], also returning the events of what the command changed (see
    /// `events`); a refused command changed nothing and has none.
    pub fn apply_recording(
        &mut self,
        index: u64,
        now_ns: i64,
        command: Command,
    ) -> (Result<ApplyOutcome, ApplyError>, Vec<Event>) {
        if let Some(event_type) = EventType::of(&command) {
            self.recorder.start(index, event_type);
        }
        let outcome = self.apply(index, now_ns, command);
        let events = self.recorder.finish();
        let events = if outcome.is_ok() { events } else { Vec::new() };
        (outcome, events)
    }

    /// Applies one log entry at `index`, stamped `now_ns` by the leader.
    pub fn apply(
        &mut self,
        index: u64,
        now_ns: i64,
        command: Command,
    ) -> Result<ApplyOutcome, ApplyError> {
        assert!(index > self.latest_index, "log index {index} not after {}", self.latest_index);
        self.latest_index = index;
        let mut outcome = ApplyOutcome::default();
        match command {
            Command::JobRegister { job, enforce_index, eval } => {
                outcome.job_modify_index = self.register_job(index, now_ns, job, enforce_index)?;
                let eval =
                    eval.map(|e| Evaluation { job_modify_index: outcome.job_modify_index, ..e });
                self.upsert_evals(index, now_ns, eval, &mut outcome);
            }
            Command::JobDeregister { namespace, job_id, purge, eval } => {
                self.deregister_job(index, now_ns, &JobKey::new(&namespace, &job_id), purge)?;
                self.upsert_evals(index, now_ns, eval, &mut outcome);
            }
            Command::NodeRegister { node } => self.register_node(index, now_ns, node, &mut outcome),
            Command::NodeStatus { node_id, status, evals } => {
                self.update_node(index, &node_id, &mut outcome, |n| n.status = status)?;
                self.upsert_evals(index, now_ns, evals, &mut outcome);
            }
            Command::NodeEligibility { node_id, eligibility, evals } => {
                self.update_node(index, &node_id, &mut outcome, |n| {
                    n.scheduling_eligibility = eligibility
                })?;
                self.upsert_evals(index, now_ns, evals, &mut outcome);
            }
            Command::NodeDrain { node_id, drain, evals } => {
                self.drain_node(index, now_ns, &node_id, drain, &mut outcome)?;
                self.upsert_evals(index, now_ns, evals, &mut outcome);
            }
            Command::EvalUpsert { evals } => self.upsert_evals(index, now_ns, evals, &mut outcome),
            Command::PlanApply { result, job, evals } => {
                self.apply_plan_result(index, now_ns, result, job.as_ref(), &mut outcome);
                self.upsert_evals(index, now_ns, evals, &mut outcome);
            }
            Command::AllocClientUpdate { updates, evals } => {
                for update in updates {
                    self.client_update(index, now_ns, update, &mut outcome);
                }
                self.upsert_evals(index, now_ns, evals, &mut outcome);
            }
            Command::DeploymentUpsert { deployment } => {
                self.upsert_deployment(index, now_ns, deployment)
            }
            Command::Reap { eval_ids, alloc_ids, jobs, node_ids } => {
                self.reap(index, &eval_ids, &alloc_ids, &jobs, &node_ids)
            }
            Command::DeploymentPromote { deployment_id, all, groups, eval } => {
                self.promote_deployment(index, now_ns, &deployment_id, all, &groups)?;
                self.upsert_evals(index, now_ns, eval, &mut outcome);
            }
            Command::DeploymentStatusChange { update, eval } => {
                self.active_deployment(&update.deployment_id)?;
                self.set_deployment_status(index, now_ns, &update);
                self.upsert_evals(index, now_ns, eval, &mut outcome);
            }
            Command::DeploymentWatcherUpdate { update, revert, eval } => {
                self.active_deployment(&update.deployment_id)?;
                self.set_deployment_status(index, now_ns, &update);
                if let Some(job) = revert {
                    outcome.job_modify_index = self.register_job(index, now_ns, job, None)?;
                }
                let eval = eval.map(|e| Evaluation {
                    job_modify_index: outcome.job_modify_index.max(e.job_modify_index),
                    ..e
                });
                self.upsert_evals(index, now_ns, eval, &mut outcome);
            }
            Command::DeploymentAllocHealth { deployment_id, healthy, unhealthy, eval } => {
                self.set_allocs_health(index, now_ns, &deployment_id, &healthy, &unhealthy)?;
                self.upsert_evals(index, now_ns, eval, &mut outcome);
            }
            Command::AllocDesiredTransition { transitions, evals } => {
                for (alloc_id, transition) in &transitions {
                    self.set_desired_transition(index, now_ns, alloc_id, transition);
                }
                self.upsert_evals(index, now_ns, evals, &mut outcome);
            }
            Command::PeriodicLaunch { child, eval, launch_ns, forced } => {
                self.launch_periodic(index, now_ns, child, launch_ns, forced)?;
                outcome.job_modify_index = index;
                let eval = Evaluation { job_modify_index: index, ..eval };
                self.upsert_evals(index, now_ns, [eval], &mut outcome);
            }
            Command::AutopilotSetConfig { config, cas_index } => {
                outcome.updated = self.set_autopilot_config(index, config, cas_index);
            }
            Command::NodeDeregister { node_id, evals } => {
                self.deregister_node(index, &node_id)?;
                self.upsert_evals(index, now_ns, evals, &mut outcome);
            }
        }
        Ok(outcome)
    }

    fn register_job(
        &mut self,
        index: u64,
        now_ns: i64,
        mut job: Job,
        enforce: Option<u64>,
    ) -> Result<u64, ApplyError> {
        let key = JobKey::of_job(&job);
        let existing = self.jobs.get(&key).cloned();
        check_enforce_index(existing.as_deref(), enforce)?;
        job.modify_index = index;
        job.submit_time = now_ns;
        match &existing {
            Some(old) if !spec_changed(old, &job) => {
                job.create_index = old.create_index;
                job.version = old.version;
                job.job_modify_index = old.job_modify_index;
                job.stable = old.stable;
            }
            Some(old) => {
                job.create_index = old.create_index;
                job.version = old.version + 1;
                job.job_modify_index = index;
                job.stable = false;
            }
            None => {
                job.create_index = index;
                job.version = 0;
                job.job_modify_index = index;
            }
        }
        job.status = self.job_status(&key, &job, job.stop).to_owned();
        // Nomad records a periodic job's registration as its first "launch", so a leader
        // that takes over before the first launch can tell whether it was missed.
        if job.is_periodic_active() && !self.periodic_launches.contains_key(&key) {
            self.periodic_launches.insert(key.clone(), now_ns);
        }
        let job = Arc::new(job);
        self.jobs.insert(key.clone(), job.clone());
        self.recorder.record(|| EventPayload::Job(job.clone()));
        self.push_version(index, &key, job.clone());
        let mut summary = self
            .job_summaries
            .get(&key)
            .map(|s| (**s).clone())
            .unwrap_or_else(|| JobSummary::new(&job, index));
        summary.add_groups(&job);
        summary.modify_index = index;
        self.job_summaries.insert(key, Arc::new(summary));
        self.indexes.jobs = index;
        self.indexes.job_summary = index;
        Ok(job.job_modify_index)
    }

    /// Keeps the newest versions; re-registering an unchanged spec replaces its entry.
    fn push_version(&mut self, index: u64, key: &JobKey, job: Arc<Job>) {
        let mut versions = self.job_versions.get(key).map(|v| (**v).clone()).unwrap_or_default();
        versions.retain(|old| old.version != job.version);
        versions.insert(0, job);
        versions.truncate(JOB_VERSIONS_RETAINED_MAX);
        self.job_versions.insert(key.clone(), Arc::new(versions));
        self.indexes.job_versions = index;
    }

    /// Purges the job, or stops it at `now_ns`: a stop is a submission of the job, as in
    /// Nomad, so GC counts the job's threshold from it (a stopped periodic job writes no
    /// evaluation to count from).
    fn deregister_job(
        &mut self,
        index: u64,
        now_ns: i64,
        key: &JobKey,
        purge: bool,
    ) -> Result<(), ApplyError> {
        let Some(job) = self.jobs.get(key).cloned() else {
            return Err(ApplyError::NotFound { what: "job", id: key.id.clone() });
        };
        if purge {
            self.jobs.remove(key);
            self.periodic_launches.remove(key);
            self.job_versions.remove(key);
            self.job_summaries.remove(key);
            self.indexes.job_versions = index;
            self.indexes.job_summary = index;
        } else {
            let mut stopped = (*job).clone();
            stopped.stop = true;
            stopped.submit_time = now_ns;
            stopped.modify_index = index;
            stopped.status = self.job_status(key, &job, true).to_owned();
            let stopped = Arc::new(stopped);
            self.recorder.record(|| EventPayload::Job(stopped.clone()));
            self.jobs.insert(key.clone(), stopped);
        }
        self.indexes.jobs = index;
        Ok(())
    }

    /// Nomad's job status. Periodic and parameterized jobs run until stopped (they never
    /// have allocations of their own). A job that finishes (a launched child, `ParentID`
    /// set, or a batch or sysbatch job) is dead once every evaluation and allocation it
    /// had is terminal, so GC can reap it whole. Any other job is dead once stopped with
    /// nothing live, running with anything live, pending otherwise.
    fn job_status(&self, key: &JobKey, job: &Job, stopped: bool) -> &'static str {
        if job.is_template() {
            return if stopped { "dead" } else { "running" };
        }
        let live =
            self.allocs_by_job.get(key).is_some_and(|m| m.values().any(|a| !a.is_terminal()));
        if !live && !stopped && (!job.parent_id.is_empty() || job.finishes()) {
            let has_alloc = self.allocs_by_job.get(key).is_some_and(|m| !m.is_empty());
            let evals =
                self.evals.values().filter(|e| e.job_id == key.id && e.namespace == key.namespace);
            let (mut any, mut open) = (false, false);
            for eval in evals {
                any = true;
                open |= !eval.is_terminal();
            }
            if !open && (any || has_alloc) {
                return "dead";
            }
        }
        match (live, stopped) {
            (true, _) => "running",
            (false, true) => "dead",
            (false, false) => "pending",
        }
    }

    /// Applies a periodic launch: checks the parent and the record, registers the child.
    fn launch_periodic(
        &mut self,
        index: u64,
        now_ns: i64,
        mut child: Job,
        launch_ns: i64,
        forced: bool,
    ) -> Result<(), ApplyError> {
        let refuse = |reason: String| ApplyError::Refused {
            message: format!("periodic launch of {} refused: {reason}", child.id),
        };
        let parent_key = JobKey::new(&child.namespace, &child.parent_id);
        let Some(parent) = self.jobs.get(&parent_key) else {
            return Err(refuse(format!("periodic job {} not found", child.parent_id)));
        };
        if !parent.is_periodic_active() {
            return Err(refuse(format!("job {} is not an active periodic job", parent.id)));
        }
        if self.jobs.contains_key(&JobKey::of_job(&child)) {
            return Err(refuse("a job with this ID was already launched".into()));
        }
        let last = self.periodic_launches.get(&parent_key).copied();
        if !forced && last.is_some_and(|last| launch_ns <= last) {
            return Err(refuse(format!(
                "launch time {launch_ns} is not after the last launch {}",
                last.unwrap_or_default()
            )));
        }
        // The record never moves back: a forced launch stamped by a clock behind the
        // last scheduled one must not make that time due again.
        let record = last.map_or(launch_ns, |last| last.max(launch_ns));
        self.periodic_launches.insert(parent_key, record);
        child.stop = false;
        self.register_job(index, now_ns, child, None)?;
        Ok(())
    }

    fn register_node(
        &mut self,
        index: u64,
        now_ns: i64,
        mut node: Node,
        outcome: &mut ApplyOutcome,
    ) {
        if let Some(old) = self.nodes.get(&node.id) {
            node.create_index = old.create_index;
            // The servers own eligibility and drain; a client re-registering keeps them.
            node.scheduling_eligibility = old.scheduling_eligibility;
            node.drain_strategy = old.drain_strategy.clone();
        } else {
            node.create_index = index;
        }
        node.modify_index = index;
        node.status_updated_at = now_ns / 1_000_000_000;
        node.compute_class();
        if node.is_schedulable() {
            outcome.capacity_changed.push(node.computed_class.clone());
        }
        let node = Arc::new(node);
        self.recorder.record(|| EventPayload::Node(node.clone()));
        self.nodes.insert(node.id.clone(), node);
        self.indexes.nodes = index;
        self.node_list = Default::default();
    }

    /// Removes a node from the nodes table; its allocations keep naming it.
    fn deregister_node(&mut self, index: u64, id: &str) -> Result<(), ApplyError> {
        let Some(node) = self.nodes.remove(&id.to_owned()) else {
            return Err(ApplyError::NotFound { what: "node", id: id.to_owned() });
        };
        self.recorder.record(|| EventPayload::Node(node));
        self.indexes.nodes = index;
        self.node_list = Default::default();
        Ok(())
    }

    fn update_node(
        &mut self,
        index: u64,
        id: &str,
        outcome: &mut ApplyOutcome,
        change: impl FnOnce(&mut Node),
    ) -> Result<(), ApplyError> {
        let Some(old) = self.nodes.get(id) else {
            return Err(ApplyError::NotFound { what: "node", id: id.to_owned() });
        };
        let mut node = (**old).clone();
        change(&mut node);
        node.modify_index = index;
        if node.is_schedulable() && !old.is_schedulable() {
            outcome.capacity_changed.push(node.computed_class.clone());
        }
        let node = Arc::new(node);
        self.recorder.record(|| EventPayload::Node(node.clone()));
        self.nodes.insert(node.id.clone(), node);
        self.indexes.nodes = index;
        self.node_list = Default::default();
        Ok(())
    }

    fn set_desired_transition(
        &mut self,
        index: u64,
        now_ns: i64,
        alloc_id: &str,
        transition: &DesiredTransition,
    ) {
        // A failed allocation still takes one: the deployment watcher allows the
        // replacement of an unhealthy one that way.
        let Some(existing) = self.allocs.get(alloc_id).filter(|a| !a.server_terminal()) else {
            return;
        };
        let mut alloc = (**existing).clone();
        let wanted = &mut alloc.desired_transition;
        wanted.migrate = transition.migrate.or(wanted.migrate);
        wanted.reschedule = transition.reschedule.or(wanted.reschedule);
        wanted.force_reschedule = transition.force_reschedule.or(wanted.force_reschedule);
        wanted.no_shutdown_delay = transition.no_shutdown_delay.or(wanted.no_shutdown_delay);
        alloc.modify_index = index;
        alloc.modify_time = now_ns;
        self.put_alloc(index, alloc);
    }

    /// Starting a drain marks every live allocation on the node for migration at once
    /// (Nomad's drainer paces this by `migrate.max_parallel`; pacing is not built yet).
    fn drain_node(
        &mut self,
        index: u64,
        now_ns: i64,
        id: &str,
        drain: Option<DrainStrategy>,
        outcome: &mut ApplyOutcome,
    ) -> Result<(), ApplyError> {
        let draining = drain.is_some();
        self.update_node(index, id, outcome, |node| {
            node.drain_strategy = drain;
            node.scheduling_eligibility =
                if draining { NodeEligibility::Ineligible } else { NodeEligibility::Eligible };
        })?;
        if !draining {
            return Ok(());
        }
        let live: Vec<Arc<Allocation>> = self
            .node_allocs(id)
            .map(|n| n.allocs.values().filter(|a| !a.is_terminal()).cloned().collect())
            .unwrap_or_default();
        for alloc in live {
            let mut marked = (*alloc).clone();
            marked.desired_transition.migrate = Some(true);
            marked.modify_index = index;
            marked.modify_time = now_ns;
            self.put_alloc(index, marked);
        }
        Ok(())
    }

    fn upsert_evals(
        &mut self,
        index: u64,
        now_ns: i64,
        evals: impl IntoIterator<Item = Evaluation>,
        outcome: &mut ApplyOutcome,
    ) {
        for mut eval in evals {
            match self.evals.get(&eval.id) {
                Some(old) => eval.create_index = old.create_index,
                None => eval.create_index = index,
            }
            eval.modify_index = index;
            if eval.create_time == 0 {
                eval.create_time = now_ns;
            }
            eval.modify_time = now_ns;
            self.keep_one_blocked(index, &mut eval);
            self.set_queued(index, &eval);
            self.raise_job_wait_index(&JobKey::new(&eval.namespace, &eval.job_id), index);
            let eval = Arc::new(eval);
            self.recorder.record(|| EventPayload::Evaluation(eval.clone()));
            self.evals.insert(eval.id.clone(), eval.clone());
            self.indexes.evals = index;
            if eval.is_terminal() {
                self.refresh_finished_status(&JobKey::new(&eval.namespace, &eval.job_id));
            }
            if eval.should_enqueue() || eval.should_block() {
                outcome.evals.push(eval);
            }
        }
    }

    /// Keeps at most one blocked evaluation per job: of the job's blocked one and `eval`
    /// (about to be written at `index`), the newer by creation stays blocked and the
    /// older is cancelled, as the leader's tracker would, but in this same entry.
    fn keep_one_blocked(&mut self, index: u64, eval: &mut Evaluation) {
        let key = JobKey::new(&eval.namespace, &eval.job_id);
        let tracked = self.blocked_evals.get(&key).cloned();
        if eval.status != EvalStatus::Blocked {
            if tracked.as_deref() == Some(eval.id.as_str()) {
                self.blocked_evals.remove(&key);
            }
            return;
        }
        let older = tracked
            .filter(|id| *id != eval.id)
            .and_then(|id| self.evals.get(&id).cloned())
            .filter(|e| e.status == EvalStatus::Blocked);
        match older {
            Some(kept) if !eval.replaces_blocked(&kept) => {
                eval.supersede();
                return;
            }
            Some(older) => {
                let mut older = (*older).clone();
                older.supersede();
                older.modify_index = index;
                older.modify_time = eval.modify_time;
                let older = Arc::new(older);
                self.recorder.record(|| EventPayload::Evaluation(older.clone()));
                self.evals.insert(older.id.clone(), older);
            }
            None => {}
        }
        self.blocked_evals.insert(key, eval.id.clone());
    }

    /// A finished or blocked evaluation reports what it could not place: the queued count.
    fn set_queued(&mut self, index: u64, eval: &Evaluation) {
        if eval.queued_allocations.is_empty()
            || !matches!(eval.status, EvalStatus::Complete | EvalStatus::Blocked)
        {
            return;
        }
        let key = JobKey::new(&eval.namespace, &eval.job_id);
        let Some(summary) = self.job_summaries.get(&key) else { return };
        let mut summary = (**summary).clone();
        for (group, &queued) in &eval.queued_allocations {
            summary.summary.entry(group.clone()).or_default().queued = queued.max(0) as u64;
        }
        summary.modify_index = index;
        self.job_summaries.insert(key, Arc::new(summary));
        self.indexes.job_summary = index;
    }

    fn apply_plan_result(
        &mut self,
        index: u64,
        now_ns: i64,
        result: PlanResult,
        job: Option<&Job>,
        outcome: &mut ApplyOutcome,
    ) {
        // The deployment first: the placements made for it count into it as they store.
        // Its one event is recorded after them, with the counts the entry leaves it at.
        let mut deployment_ids = BTreeSet::new();
        if let Some(deployment) = result.deployment {
            deployment_ids.insert(deployment.id.clone());
            let deployment = match self.deployments.get(&deployment.id) {
                Some(stored) => resized(stored, &deployment),
                None => deployment,
            };
            self.store_deployment(index, now_ns, deployment);
        }
        for update in &result.deployment_updates {
            if self.deployments.get(&update.deployment_id).is_some() {
                self.set_deployment_status(index, now_ns, update);
            }
        }
        // A stop whose replacement is in the same plan learns its successor with the stop,
        // so it is written (and announced on the event stream) once, not twice.
        let successors: BTreeMap<&str, &str> = result
            .node_allocation
            .values()
            .flatten()
            .filter(|a| !a.previous_allocation.is_empty())
            .map(|a| (a.previous_allocation.as_str(), a.id.as_str()))
            .collect();
        for stop in result.node_update.values().chain(result.node_preemptions.values()).flatten() {
            let Some(existing) = self.allocs.get(stop.id.as_str()).cloned() else { continue };
            let mut stopped = (*existing).clone();
            if let Some(&next) = successors.get(stop.id.as_str()) {
                stopped.next_allocation = next.to_owned();
            }
            stopped.desired_status = stop.desired_status;
            stopped.desired_description = stop.desired_description.clone();
            // The plan's copy may be stale on the client side; only a verdict of "lost"
            // from the servers overrides what the client last reported.
            if stop.client_status == AllocClientStatus::Lost {
                stopped.client_status = AllocClientStatus::Lost;
            }
            stopped.followup_eval_id = stop.followup_eval_id.clone();
            stopped.preempted_by_allocation = stop.preempted_by_allocation.clone();
            stopped.modify_index = index;
            stopped.alloc_modify_index = index;
            stopped.modify_time = now_ns;
            self.note_freed(&existing, &stopped, outcome);
            self.raise_job_wait_index(&JobKey::new(&stopped.namespace, &stopped.job_id), index);
            self.put_alloc(index, stopped);
        }
        let mut key = job.map(JobKey::of_job);
        if let Some(key) = key.as_ref().filter(|_| !result.node_allocation.is_empty()) {
            self.raise_job_wait_index(key, index);
        }
        let mut counted = false;
        for allocs in result.node_allocation.into_values() {
            let mut on_node = Vec::with_capacity(allocs.len());
            for alloc in allocs {
                let stored = self.store_placement(index, now_ns, alloc, &mut key, &mut counted);
                if std::mem::take(&mut counted) {
                    deployment_ids.insert(stored.1.deployment_id.clone());
                }
                on_node.push(stored);
            }
            self.index_on_nodes(&on_node);
        }
        for id in deployment_ids {
            self.record_deployment(&id);
        }
    }

    /// Stores one placement or in-place update of a committed plan and indexes it by job;
    /// the caller indexes it by node, once per node. `key` caches the job's key.
    fn store_placement(
        &mut self,
        index: u64,
        now_ns: i64,
        mut alloc: Allocation,
        key: &mut Option<JobKey>,
        counted: &mut bool,
    ) -> (IdKey, Arc<Allocation>) {
        // The scheduler sets the version of every placement and in-place update; an
        // allocation that only carries a note (a delayed reschedule's follow-up
        // evaluation) keeps its own, not the plan's job's.
        if let Some(own) = alloc.job.take() {
            alloc.job_version = own.version;
        }
        alloc.modify_index = index;
        alloc.alloc_modify_index = index;
        alloc.modify_time = now_ns;
        self.link_previous(index, now_ns, &alloc);
        if key.as_ref().is_none_or(|k| k.id != alloc.job_id || k.namespace != alloc.namespace) {
            let of_alloc = JobKey::new(&alloc.namespace, &alloc.job_id);
            self.raise_job_wait_index(&of_alloc, index);
            *key = Some(of_alloc);
        }
        // One walk of the alloc table both reads the stored version (an in-place
        // update keeps its creation and client side) and writes the new one.
        // The allocation moves into its `Arc` once, here, and is finished in place: it is
        // large, and each move of it cost more than the bookkeeping around it.
        let id = IdKey::new(&alloc.id);
        let mut alloc = Arc::new(alloc);
        let old = self.allocs.upsert_with(id.clone(), |old| {
            let fresh = Arc::get_mut(&mut alloc).expect("not shared yet");
            match old {
                Some(old) => {
                    fresh.create_index = old.create_index;
                    fresh.create_time = old.create_time;
                    fresh.client_status = old.client_status;
                    fresh.client_report_seq = old.client_report_seq;
                    fresh.task_states = old.task_states.clone();
                }
                None => {
                    fresh.create_index = index;
                    fresh.create_time = now_ns;
                }
            }
            alloc.clone()
        });
        self.recorder.record(|| EventPayload::Allocation(alloc.clone()));
        if self.count_in_deployment(index, now_ns, old.as_deref(), &alloc).is_some() {
            *counted = true;
        }
        self.index_in_job(index, (&id, &alloc), old, key.as_ref().expect("set above"));
        (id, alloc)
    }

    /// A replacement names its predecessor; the predecessor learns its successor, so no
    /// later pass replaces it twice.
    fn link_previous(&mut self, index: u64, now_ns: i64, alloc: &Allocation) {
        if alloc.previous_allocation.is_empty() {
            return;
        }
        let Some(previous) = self.allocs.get(alloc.previous_allocation.as_str()) else { return };
        if previous.next_allocation == alloc.id {
            return;
        }
        let mut previous = (**previous).clone();
        previous.next_allocation = alloc.id.clone();
        previous.modify_index = index;
        previous.modify_time = now_ns;
        self.put_alloc(index, previous);
    }

    fn client_update(
        &mut self,
        index: u64,
        now_ns: i64,
        update: AllocClientUpdate,
        outcome: &mut ApplyOutcome,
    ) {
        let Some(existing) = self.allocs.get(update.alloc_id.as_str()).cloned() else { return };
        // A report the servers hold a newer one of was delayed or duplicated on the way,
        // or sent by an earlier run of the client: it would set the allocation back (a
        // running one to pending, and nothing after it would correct that; seed 60346).
        if update.report_seq <= existing.client_report_seq {
            return;
        }
        // A finished allocation never runs again: a report that says otherwise is older
        // than the one that finished it (delayed or duplicated on the way; seed 565).
        if existing.client_status.is_terminal() && !update.client_status.is_terminal() {
            return;
        }
        let mut alloc = (*existing).clone();
        alloc.client_report_seq = update.report_seq;
        alloc.client_status = update.client_status;
        alloc.client_description = update.client_description;
        if !update.task_states.is_empty() {
            alloc.task_states = update.task_states;
        }
        // The canary flag is the servers' to set, never the client's.
        let canary = existing.is_canary();
        if let Some(status) =
            update.deployment_status.filter(|_| update.deployment_id == existing.deployment_id)
        {
            alloc.deployment_status = Some(AllocDeploymentStatus { canary, ..status });
        }
        alloc.modify_index = index;
        alloc.modify_time = now_ns;
        self.note_freed(&existing, &alloc, outcome);
        if let Some(id) = self.count_in_deployment(index, now_ns, Some(&existing), &alloc) {
            let id = id.to_owned();
            self.record_deployment(&id);
        }
        self.put_alloc(index, alloc);
    }

    /// An allocation turning terminal frees capacity on its node's class.
    fn note_freed(&self, old: &Allocation, new: &Allocation, outcome: &mut ApplyOutcome) {
        let freed = !old.is_terminal() && new.is_terminal();
        if let Some(node) = self.nodes.get(&new.node_id).filter(|_| freed) {
            outcome.capacity_changed.push(node.computed_class.clone());
        }
    }

    /// Writes an allocation into the three alloc tables and its job's summary.
    fn put_alloc(&mut self, index: u64, alloc: Allocation) {
        let key = JobKey::new(&alloc.namespace, &alloc.job_id);
        self.put_alloc_keyed(index, alloc, &key);
    }

    /// [`State::put_alloc`] with the job's key computed by the caller (once per plan).
    fn put_alloc_keyed(&mut self, index: u64, mut alloc: Allocation, key: &JobKey) {
        alloc.job = None;
        let alloc = Arc::new(alloc);
        self.recorder.record(|| EventPayload::Allocation(alloc.clone()));
        let id = IdKey::new(&alloc.id);
        let old = self.allocs.insert(id.clone(), alloc.clone());
        self.index_alloc(index, (id, alloc), old, key);
    }

    /// Updates the node and job indexes, the summary and the job status for `alloc`,
    /// just stored in the alloc table in place of `old`.
    fn index_alloc(
        &mut self,
        index: u64,
        (id, alloc): (IdKey, Arc<Allocation>),
        old: Option<Arc<Allocation>>,
        key: &JobKey,
    ) {
        self.index_in_job(index, (&id, &alloc), old, key);
        self.index_on_nodes(&[(id, alloc)]);
    }

    /// Adds stored allocations to their nodes' indexes and keeps the node list's usage
    /// current, with one lookup per run of allocations on the same node: a plan's
    /// placements come grouped by node, and finding a node cost more than adding to it.
    fn index_on_nodes(&mut self, allocs: &[(IdKey, Arc<Allocation>)]) {
        for run in allocs.chunk_by(|a, b| a.1.node_id == b.1.node_id) {
            let node_id = run[0].1.node_id.as_str();
            // make_mut copies a node's map only while a snapshot still shares it.
            let by_node = match self.allocs_by_node.get_mut(node_id) {
                Some(by_node) => Arc::make_mut(by_node),
                None => Arc::make_mut(
                    self.allocs_by_node.get_or_insert_with(node_id.to_owned(), Default::default),
                ),
            };
            for (id, alloc) in run {
                by_node.add(id.clone(), alloc);
            }
            let used = by_node.used;
            self.note_node_usage(node_id, used);
        }
    }

    /// Updates the job's index, its summary and its status for `alloc`, just stored in
    /// the alloc table in place of `old`.
    fn index_in_job(
        &mut self,
        index: u64,
        (id, alloc): (&IdKey, &Arc<Allocation>),
        old: Option<Arc<Allocation>>,
        key: &JobKey,
    ) {
        match self.allocs_by_job.get_mut(key) {
            Some(by_job) => drop(Arc::make_mut(by_job).insert(id.clone(), alloc.clone())),
            None => {
                let by_job = self.allocs_by_job.get_or_insert_with(key.clone(), Default::default);
                Arc::make_mut(by_job).insert(id.clone(), alloc.clone());
            }
        }
        // An allocation left by an earlier job of the same name (purged, then registered
        // again) is not counted by the new job's summary, so it cannot move its counters.
        if let Some(summary) = self.job_summaries.get_mut(key)
            && alloc.create_index >= summary.create_index
        {
            let summary = Arc::make_mut(summary);
            summary.transition(
                &alloc.task_group,
                old.map(|o| o.client_status),
                alloc.client_status,
            );
            summary.modify_index = index;
            self.indexes.job_summary = index;
        }
        self.refresh_job_status(key, alloc);
        self.indexes.allocs = index;
    }

    fn refresh_job_status(&mut self, key: &JobKey, changed: &Allocation) {
        let Some(job) = self.jobs.get(key) else { return };
        // A live allocation makes the job running without looking at its siblings.
        let status =
            if changed.is_terminal() { self.job_status(key, job, job.stop) } else { "running" };
        self.set_job_status(key, status);
    }

    /// The status of a job that finishes (a launched child, a batch or sysbatch job)
    /// after one of its evaluations finished (one that placed nothing leaves no
    /// allocation to move the status).
    fn refresh_finished_status(&mut self, key: &JobKey) {
        let Some(job) = self.jobs.get(key) else { return };
        if job.parent_id.is_empty() && !job.finishes() {
            return;
        }
        let status = self.job_status(key, job, job.stop);
        self.set_job_status(key, status);
    }

    /// Stores a job's new status; the change is an event, as every write of a job is.
    fn set_job_status(&mut self, key: &JobKey, status: &str) {
        let Some(job) = self.jobs.get(key) else { return };
        if job.status == status {
            return;
        }
        let mut job = (**job).clone();
        job.status = status.to_owned();
        let job = Arc::new(job);
        self.recorder.record(|| EventPayload::Job(job.clone()));
        self.jobs.insert(key.clone(), job);
    }

    /// The deployment, if it exists and is active (Nomad's texts otherwise).
    fn active_deployment(&self, id: &str) -> Result<Arc<Deployment>, ApplyError> {
        let refuse = |message: String| Err(ApplyError::Refused { message });
        match self.deployments.get(id) {
            None => {
                refuse(format!("Deployment ID {id:?} couldn't be updated as it does not exist"))
            }
            Some(d) if !d.is_active() => refuse(format!(
                "Deployment {:?} has terminal status {:?}:",
                d.id,
                d.status.as_str()
            )),
            Some(d) => Ok(d.clone()),
        }
    }

    /// Nomad's `UpdateDeploymentPromotion`: each group promoted must have as many healthy
    /// canaries still running as it asked for (a failed canary replaced by a healthy one
    /// does not hold it back; each group short of them is named), at least one canary
    /// must be promoted, and a deployment that needs no more promotion says it is running
    /// again.
    fn promote_deployment(
        &mut self,
        index: u64,
        now_ns: i64,
        id: &str,
        all: bool,
        groups: &[String],
    ) -> Result<(), ApplyError> {
        let deployment = self.active_deployment(id)?;
        let chosen = |group: &str| all || groups.iter().any(|g| g == group);
        let mut unhealthy = Vec::new();
        let mut have_canaries = false;
        for (group, state) in deployment.task_groups.iter().filter(|(g, _)| chosen(g)) {
            if state.desired_canaries == 0 {
                continue;
            }
            let healthy = state.healthy_canaries(|id| self.allocs.get(id).map(|a| &**a));
            have_canaries |= healthy > 0;
            if !state.enough_canaries(healthy) {
                let desired = state.desired_canaries;
                unhealthy.push(format!(
                    "Task group {group:?} has {healthy}/{desired} healthy allocations"
                ));
            }
        }
        if !unhealthy.is_empty() {
            return Err(ApplyError::Refused { message: multi_error(&unhealthy) });
        }
        if !have_canaries {
            return Err(ApplyError::Refused { message: "no canaries to promote".into() });
        }
        let mut promoted = (*deployment).clone();
        for (_, state) in promoted.task_groups.iter_mut().filter(|(g, _)| chosen(g)) {
            state.promoted = true;
        }
        if !promoted.requires_promotion() && promoted.status == DeploymentStatus::Running {
            promoted.status_description = deployment_description::RUNNING.to_owned();
        }
        self.upsert_deployment(index, now_ns, promoted);
        Ok(())
    }

    /// Moves a deployment to the update's status; a successful one makes its job version
    /// stable (the version an auto-revert goes back to), as Nomad's state store does.
    fn set_deployment_status(&mut self, index: u64, now_ns: i64, update: &DeploymentStatusUpdate) {
        let Some(old) = self.deployments.get(&update.deployment_id) else { return };
        let mut deployment = (**old).clone();
        deployment.status = update.status;
        deployment.status_description = update.status_description.clone();
        if update.status == DeploymentStatus::Successful {
            let key = JobKey::new(&deployment.namespace, &deployment.job_id);
            self.mark_stable(index, &key, deployment.job_version);
        }
        self.upsert_deployment(index, now_ns, deployment);
    }

    fn mark_stable(&mut self, index: u64, key: &JobKey, version: u64) {
        if let Some(versions) = self.job_versions.get(key) {
            let mut versions = (**versions).clone();
            for job in versions.iter_mut().filter(|j| j.version == version && !j.stable) {
                Arc::make_mut(job).stable = true;
            }
            self.job_versions.insert(key.clone(), Arc::new(versions));
            self.indexes.job_versions = index;
        }
        if let Some(job) = self.jobs.get(key).filter(|j| j.version == version && !j.stable) {
            let mut job = (**job).clone();
            job.stable = true;
            let job = Arc::new(job);
            self.recorder.record(|| EventPayload::Job(job.clone()));
            self.jobs.insert(key.clone(), job);
            self.indexes.jobs = index;
        }
    }

    /// Nomad's `updateDeploymentWithAlloc`: an allocation counts into its deployment's
    /// group once as placed (when it first carries the deployment's ID) and once as
    /// healthy or unhealthy (when its health is first set; a healthy one turning
    /// unhealthy moves over). A canary is listed by ID; a placement starts the progress
    /// deadline and a healthy allocation pushes it back. Returns the deployment's ID if
    /// it changed; the caller records it once per entry.
    fn count_in_deployment<'a>(
        &mut self,
        index: u64,
        now_ns: i64,
        old: Option<&Allocation>,
        alloc: &'a Allocation,
    ) -> Option<&'a str> {
        if alloc.deployment_id.is_empty() {
            return None;
        }
        let deployment = self.deployments.get_mut(alloc.deployment_id.as_str())?;
        let health = |a: &Allocation| a.deployment_status.as_ref().and_then(|s| s.healthy);
        let (mut placed, mut healthy, mut unhealthy) = (0, 0, 0);
        match old {
            Some(old) if old.deployment_id == alloc.deployment_id => {
                match (health(old), health(alloc)) {
                    (None, Some(true)) => healthy = 1,
                    (None, Some(false)) => unhealthy = 1,
                    (Some(true), Some(false)) => (healthy, unhealthy) = (-1, 1),
                    _ => {}
                }
            }
            _ => placed = 1,
        }
        let canary_unlisted = alloc.is_canary()
            && deployment
                .task_groups
                .get(&alloc.task_group)
                .is_some_and(|g| !g.placed_canaries.contains(&alloc.id));
        let group = deployment.task_groups.get(&alloc.task_group)?;
        if placed == 0 && healthy == 0 && unhealthy == 0 && !canary_unlisted {
            return None;
        }
        let mut require_progress_by = group.require_progress_by;
        if group.progress_deadline.0 > 0 {
            if placed != 0 && require_progress_by.is_unset() {
                require_progress_by = Timestamp(alloc.modify_time).plus(group.progress_deadline);
            } else if healthy > 0 {
                let healthy_at = alloc.deployment_status.as_ref().map_or(now_ns, |s| s.timestamp.0);
                require_progress_by =
                    require_progress_by.max(Timestamp(healthy_at).plus(group.progress_deadline));
            }
        }
        let deployment = Arc::make_mut(deployment);
        let group = deployment.task_groups.get_mut(&alloc.task_group).expect("looked up above");
        group.placed_allocs += placed;
        group.healthy_allocs += healthy;
        group.unhealthy_allocs += unhealthy;
        group.require_progress_by = require_progress_by;
        if canary_unlisted {
            group.placed_canaries.push(alloc.id.clone());
        }
        deployment.modify_index = index;
        deployment.modify_time = now_ns;
        self.indexes.deployments = index;
        Some(alloc.deployment_id.as_str())
    }

    /// Records the event of a deployment the entry changed in place.
    fn record_deployment(&mut self, id: &str) {
        if let Some(deployment) = self.deployments.get(id) {
            let deployment = deployment.clone();
            self.recorder.record(|| EventPayload::Deployment(deployment));
        }
    }

    /// Nomad's `UpdateDeploymentAllocHealth`: every allocation named must exist and be
    /// part of the active deployment; each takes the health given, stamped `now_ns`.
    fn set_allocs_health(
        &mut self,
        index: u64,
        now_ns: i64,
        deployment_id: &str,
        healthy: &[String],
        unhealthy: &[String],
    ) -> Result<(), ApplyError> {
        self.active_deployment(deployment_id)?;
        let verdicts =
            healthy.iter().map(|id| (id, true)).chain(unhealthy.iter().map(|id| (id, false)));
        let mut changed = Vec::new();
        for (id, verdict) in verdicts {
            let refuse = |message: String| Err(ApplyError::Refused { message });
            let Some(alloc) = self.allocs.get(id.as_str()) else {
                return refuse(format!("unknown alloc {id:?}"));
            };
            if alloc.deployment_id != deployment_id {
                return refuse(format!("alloc {id:?} is not part of deployment {deployment_id:?}"));
            }
            changed.push((alloc.clone(), verdict));
        }
        for (existing, verdict) in changed {
            let mut alloc = (*existing).clone();
            let canary = alloc.is_canary();
            alloc.deployment_status = Some(AllocDeploymentStatus {
                healthy: Some(verdict),
                timestamp: Timestamp(now_ns),
                canary,
                modify_index: index,
            });
            alloc.modify_index = index;
            alloc.modify_time = now_ns;
            self.count_in_deployment(index, now_ns, Some(&existing), &alloc);
            self.put_alloc(index, alloc);
        }
        self.record_deployment(deployment_id);
        Ok(())
    }

    fn upsert_deployment(&mut self, index: u64, now_ns: i64, deployment: Deployment) {
        let deployment = self.store_deployment(index, now_ns, deployment);
        self.recorder.record(|| EventPayload::Deployment(deployment));
    }

    /// Stores the deployment without recording its event: the caller records it once
    /// the entry is done changing it.
    fn store_deployment(
        &mut self,
        index: u64,
        now_ns: i64,
        mut deployment: Deployment,
    ) -> Arc<Deployment> {
        match self.deployments.get(&deployment.id) {
            Some(old) => deployment.create_index = old.create_index,
            None => {
                deployment.create_index = index;
                deployment.create_time = now_ns;
                let key = JobKey::new(&deployment.namespace, &deployment.job_id);
                self.latest_deployments.insert(key, deployment.id.clone());
            }
        }
        deployment.modify_index = index;
        deployment.modify_time = now_ns;
        if deployment.is_active() {
            self.active_deployments.insert(deployment.id.clone(), ());
        } else {
            self.active_deployments.remove(&deployment.id);
        }
        let deployment = Arc::new(deployment);
        self.deployments.insert(deployment.id.clone(), deployment.clone());
        self.indexes.deployments = index;
        deployment
    }
}

/// A plan that carries a deployment already stored resizes it: a system deployment
/// wants one allocation per node the group runs on, and nodes come and go while it
/// rolls out (Nomad's system scheduler sets each group's desired total every pass). Only
/// the desired totals are taken from the plan; the counters stay the state's own, which
/// may have moved since the plan's snapshot.
fn resized(stored: &Deployment, planned: &Deployment) -> Deployment {
    let mut deployment = stored.clone();
    for (name, group) in &mut deployment.task_groups {
        if let Some(planned) = planned.task_groups.get(name) {
            group.desired_total = planned.desired_total;
        }
    }
    deployment
}

impl State {
    fn reap(
        &mut self,
        index: u64,
        eval_ids: &[String],
        alloc_ids: &[String],
        jobs: &[JobKey],
        node_ids: &[String],
    ) {
        let mut reaped_from = BTreeSet::new();
        for id in eval_ids {
            if self.evals.get(id).is_some_and(|e| e.is_terminal()) {
                // Terminal, so no job's blocked evaluation: `blocked_evals` stays as it is.
                let eval = self.evals.remove(id).expect("checked above");
                reaped_from.insert(JobKey::new(&eval.namespace, &eval.job_id));
                self.indexes.evals = index;
            }
        }
        for id in alloc_ids {
            if let Some(alloc) = self.allocs.get(id.as_str()).filter(|a| a.is_terminal()) {
                reaped_from.insert(JobKey::new(&alloc.namespace, &alloc.job_id));
                self.remove_alloc(index, id);
            }
        }
        self.derive_job_wait_indexes(&reaped_from);
        for key in jobs {
            let live =
                self.allocs_by_job.get(key).is_some_and(|m| m.values().any(|a| !a.is_terminal()));
            if !live && self.jobs.get(key).is_some_and(|j| j.stop || j.status == "dead") {
                // Checked just above: the job exists, so purging cannot fail.
                let _ = self.deregister_job(index, 0, key, true);
            }
        }
        for id in node_ids {
            let empty =
                self.node_allocs(id).is_none_or(|n| n.allocs.values().all(|a| a.is_terminal()));
            if empty && self.nodes.get(id).is_some_and(|n| n.status == NodeStatus::Down) {
                self.nodes.remove(id);
                self.indexes.nodes = index;
                self.node_list = Default::default();
            }
        }
    }

    /// Derives the wait index of `jobs` again from what they still hold, as a restore
    /// does: reaping dropped evaluations or allocations it may have come from. Reaps are
    /// rare and batched, so one walk of the evaluations serves them all.
    fn derive_job_wait_indexes(&mut self, jobs: &BTreeSet<JobKey>) {
        if jobs.is_empty() {
            return;
        }
        let mut newest: BTreeMap<&JobKey, u64> = BTreeMap::new();
        for eval in self.evals.values() {
            let key = JobKey::new(&eval.namespace, &eval.job_id);
            if let Some(key) = jobs.get(&key) {
                let kept = newest.entry(key).or_default();
                *kept = (*kept).max(eval.modify_index);
            }
        }
        for key in jobs {
            let allocs = self.allocs_by_job.get(key).into_iter().flat_map(|m| m.values());
            let of_allocs = allocs.map(|a| a.alloc_modify_index).max().unwrap_or(0);
            let kept = newest.entry(key).or_default();
            *kept = (*kept).max(of_allocs);
        }
        for (key, index) in newest {
            self.job_wait_index.remove(key);
            self.raise_job_wait_index(key, index);
        }
    }

    /// Drops a terminal allocation from the alloc tables (it uses nothing on its node).
    fn remove_alloc(&mut self, index: u64, id: &str) {
        let Some(alloc) = self.allocs.remove(&IdKey::new(id)) else { return };
        assert!(alloc.is_terminal(), "only terminal allocations are reaped");
        // Empty per-node and per-job maps are dropped, as a restore would never build them.
        if let Some(by_node) = self.allocs_by_node.get_mut(alloc.node_id.as_str()) {
            let by_node = Arc::make_mut(by_node);
            by_node.remove(id);
            if by_node.allocs.is_empty() {
                self.allocs_by_node.remove(&alloc.node_id);
            }
        }
        let key = JobKey::new(&alloc.namespace, &alloc.job_id);
        // A reaped allocation no client will report on again leaves the live counters of
        // its job's summary (not those of a later job registered under the same name).
        if let Some(summary) = self.job_summaries.get_mut(&key)
            && alloc.create_index >= summary.create_index
            && !alloc.client_status.is_terminal()
        {
            Arc::make_mut(summary).forget(&alloc.task_group, alloc.client_status);
            self.indexes.job_summary = index;
        }
        if let Some(by_job) = self.allocs_by_job.get_mut(&key) {
            let by_job = Arc::make_mut(by_job);
            by_job.remove(id);
            if by_job.is_empty() {
                self.allocs_by_job.remove(&key);
            }
        }
        self.indexes.allocs = index;
    }
}

fn check_enforce_index(existing: Option<&Job>, enforce: Option<u64>) -> Result<(), ApplyError> {
    let Some(expected) = enforce else { return Ok(()) };
    let reason = match (existing, expected) {
        (Some(_), 0) => EnforceFailure::AlreadyExists,
        (Some(job), n) if job.job_modify_index != n => {
            EnforceFailure::Conflicting { current: job.job_modify_index }
        }
        (None, n) if n != 0 => EnforceFailure::DoesNotExist,
        _ => return Ok(()),
    };
    Err(ApplyError::EnforceIndex { expected, reason })
}

/// Whether `new` differs from `old` in anything but bookkeeping (indexes, version,
/// status, submit time, stability): only then does the job get a new version.
pub fn spec_changed(old: &Job, new: &Job) -> bool {
    fn spec(job: &Job) -> Job {
        Job {
            version: 0,
            create_index: 0,
            modify_index: 0,
            job_modify_index: 0,
            submit_time: 0,
            status: String::new(),
            status_description: String::new(),
            stable: false,
            ..job.clone()
        }
    }
    spec(old) != spec(new)
}

/// Go's `multierror` text (`1 error occurred:\n\t* …\n\n`), as Nomad prints errors that
/// collect several causes.
pub fn multi_error(errors: &[String]) -> String {
    let count = match errors.len() {
        1 => "1 error occurred".to_owned(),
        n => format!("{n} errors occurred"),
    };
    let bullets: String = errors.iter().map(|e| format!("\t* {e}\n")).collect();
    format!("{count}:\n{bullets}\n")
}
