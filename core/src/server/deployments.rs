//! The deployment watcher: drives each active deployment to its end.
//!
//! It is a [`LeaderService`]: it exists only while this server leads, starts from the
//! state (so a new leader resumes every deployment where the log left it), and acts
//! only through Raft commands. For each active deployment of the job's current version,
//! after Nomad's `deploymentwatcher`, the first rule that holds decides:
//! - an allocation turned unhealthy in a group without a progress deadline, or in one
//!   with a deadline but whose reschedule policy allows it no other attempt: the
//!   deployment fails ("Failed due to unhealthy allocations"); with `auto_revert`, the
//!   latest stable version of the job is registered again in the same entry ("… -
//!   rolling back to job version N");
//! - a group passed its `RequireProgressBy` unfinished: it fails ("Failed due to
//!   progress deadline"), with the same rollback;
//! - every group has its desired total healthy (and is promoted if it has canaries), and
//!   runs exactly that many allocations, all of the deployment's version and healthy:
//!   the deployment is successful, which makes the job version stable;
//! - every canary is placed and healthy and every canary group asked for
//!   `auto_promote`: the deployment is promoted;
//! - an allocation turned unhealthy in a group with a progress deadline, and its
//!   reschedule policy allows another attempt: it is marked for replacement
//!   (`DesiredTransition.Reschedule`), which the scheduler's reconciler waits for before
//!   it reschedules an unhealthy failed allocation of an active deployment;
//! - the count of healthy or unhealthy allocations changed: an evaluation
//!   (`deployment-watcher`) lets the scheduler place the next batch.
//!
//! Each command carries an evaluation, so the scheduler acts on the new status. A
//! deployment is not acted on again until it changes, or `RETRY_MS` later if the
//! command was lost or refused. Each tick reads a deployment's allocations once
//! (`Survey`) and every rule works from what that pass found.

use super::leader::LeaderService;
use crate::id::IdGen;
use crate::model::{
    Allocation, Deployment, DeploymentState, DeploymentStatus, DeploymentStatusUpdate,
    DesiredTransition, Evaluation, Job, Timestamp, TriggeredBy, deployment_description,
};
use crate::state::{Command, State};
use crate::time::Millis;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long a proposed command may take to show in the state before it is proposed again.
pub const RETRY_MS: u64 = 5_000;

const NANOS_PER_MILLI: i64 = 1_000_000;

/// What the watcher last did for one deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Watched {
    /// Healthy and unhealthy allocations over all groups when last seen.
    health: (i32, i32),
    /// The deployment's modify index when a command for it was proposed, and when the
    /// command may be proposed again if the deployment has not changed by then.
    proposed: Option<(u64, Millis)>,
}

/// The watcher. See the module documentation.
pub struct DeploymentWatcher {
    /// Evaluation IDs; seeded, so a run replays.
    ids: IdGen,
    leading: bool,
    watched: BTreeMap<String, Watched>,
    /// The state changed since the last tick (or the watcher just started).
    dirty: bool,
    /// The deployments and allocations indexes last looked at.
    synced: (u64, u64),
    /// The time of the last call, which a dirty watcher reports as its deadline.
    last_now: Millis,
    /// The earliest progress deadline or retry among the watched deployments.
    next_deadline: Option<Millis>,
}

impl DeploymentWatcher {
    pub fn new(seed: u64) -> DeploymentWatcher {
        DeploymentWatcher {
            ids: IdGen::new(seed),
            leading: false,
            watched: BTreeMap::new(),
            dirty: false,
            synced: (0, 0),
            last_now: Millis(0),
            next_deadline: None,
        }
    }

    fn note_state(&mut self, now: Millis, state: &State) {
        self.last_now = now;
        let indexes = state.table_indexes();
        let synced = (indexes.deployments, indexes.allocs);
        if synced != self.synced {
            self.synced = synced;
            self.dirty = true;
        }
    }

    fn decide(
        &mut self,
        now: Millis,
        state: &State,
        job: &Job,
        deployment: &Deployment,
        survey: &Survey<'_>,
    ) -> Option<Command> {
        let now_ns = nanos(now);
        let watched = self.watched.entry(deployment.id.clone()).or_default();
        if let Some((index, retry_at)) = watched.proposed {
            if index == deployment.modify_index && now < retry_at {
                return None;
            }
            watched.proposed = None;
        }
        let health = deployment
            .task_groups
            .values()
            .fold((0, 0), |(h, u), g| (h + g.healthy_allocs, u + g.unhealthy_allocs));
        let health_changed = std::mem::replace(&mut watched.health, health) != health;
        let running = deployment.status == DeploymentStatus::Running;
        let command = if survey.fail_now {
            self.fail(state, job, deployment, deployment_description::FAILED_ALLOCATIONS, now_ns)
        } else if running && survey.past_progress_deadline(now_ns) {
            self.fail(state, job, deployment, deployment_description::PROGRESS_DEADLINE, now_ns)
        } else if running && survey.unfinished.is_empty() {
            let update = status_update(deployment, DeploymentStatus::Successful, SUCCESSFUL);
            let eval = Some(self.eval(job, deployment, now_ns));
            Command::DeploymentWatcherUpdate { update, revert: None, eval }
        } else if running && ready_to_auto_promote(state, deployment) {
            let eval = Some(self.eval(job, deployment, now_ns));
            let deployment_id = deployment.id.clone();
            Command::DeploymentPromote { deployment_id, all: true, groups: Vec::new(), eval }
        } else if !survey.replaceable.is_empty() {
            let allow =
                DesiredTransition { reschedule: Some(true), ..DesiredTransition::default() };
            let transitions =
                survey.replaceable.iter().map(|id| (id.clone(), allow.clone())).collect();
            let evals = vec![self.eval(job, deployment, now_ns)];
            Command::AllocDesiredTransition { transitions, evals }
        } else if health_changed && running {
            Command::EvalUpsert { evals: vec![self.eval(job, deployment, now_ns)] }
        } else {
            return None;
        };
        let watched = self.watched.get_mut(&deployment.id).expect("inserted above");
        watched.proposed = Some((deployment.modify_index, now + Millis(RETRY_MS)));
        Some(command)
    }

    /// Fails the deployment; with auto-revert, the latest stable version before it is
    /// registered again.
    fn fail(
        &mut self,
        state: &State,
        job: &Job,
        deployment: &Deployment,
        reason: &str,
        now_ns: i64,
    ) -> Command {
        let mut description = reason.to_owned();
        let mut revert = None;
        if deployment.has_auto_revert() {
            let stable = state
                .job_versions(&job.namespace, &job.id)
                .into_iter()
                .find(|j| j.stable && j.version != deployment.job_version);
            match stable {
                Some(stable) => {
                    description =
                        format!("{reason} - rolling back to job version {}", stable.version);
                    revert = Some(Job { stable: false, stop: false, ..(*stable).clone() });
                }
                None => description = format!("{reason} - no stable job version to auto revert to"),
            }
        }
        let update = DeploymentStatusUpdate {
            deployment_id: deployment.id.clone(),
            status: DeploymentStatus::Failed,
            status_description: description,
        };
        let eval = Some(self.eval(job, deployment, now_ns));
        Command::DeploymentWatcherUpdate { update, revert, eval }
    }

    fn eval(&mut self, job: &Job, deployment: &Deployment, now_ns: i64) -> Evaluation {
        let mut eval =
            Evaluation::for_job(self.ids.next_id(), job, TriggeredBy::DeploymentWatcher, now_ns);
        eval.deployment_id = deployment.id.clone();
        eval
    }

    fn deadline_of(&self, deployment: &Deployment, survey: &Survey<'_>) -> Option<Millis> {
        let progress = (deployment.status == DeploymentStatus::Running)
            .then(|| survey.progress_deadline())
            .flatten()
            .map(|by| Millis((by.0 / NANOS_PER_MILLI).max(0) as u64));
        let retry = self.watched.get(&deployment.id).and_then(|w| w.proposed).map(|(_, at)| at);
        progress.into_iter().chain(retry).min()
    }
}

/// The leader's time in Unix nanoseconds, as deadlines and reschedule trackers count.
fn nanos(now: Millis) -> i64 {
    (now.as_u64() as i64).saturating_mul(NANOS_PER_MILLI)
}

/// The job of `deployment` when the deployment is of its current version; otherwise the
/// watcher leaves it alone, and the job's next evaluation cancels it.
fn current_job<'a>(state: &'a State, deployment: &Deployment) -> Option<&'a Arc<Job>> {
    let job = state.job(&deployment.namespace, &deployment.job_id)?;
    let current = !job.stop
        && job.version == deployment.job_version
        && job.create_index == deployment.job_create_index;
    current.then_some(job)
}

const SUCCESSFUL: &str = deployment_description::SUCCESSFUL;

fn status_update(
    deployment: &Deployment,
    status: DeploymentStatus,
    description: &str,
) -> DeploymentStatusUpdate {
    DeploymentStatusUpdate {
        deployment_id: deployment.id.clone(),
        status,
        status_description: description.to_owned(),
    }
}

/// What one pass over a deployment's job allocations found: every rule of a tick reads
/// it, so a tick reads each allocation once and copies no list of them.
struct Survey<'a> {
    /// The groups not finished yet. A group is finished once its counters say so (its
    /// desired total healthy, its canaries promoted) and it runs exactly its desired
    /// total, all of the deployment's job version and healthy. The counters alone can
    /// say finished too early: a healthy allocation lost with its node is replaced within
    /// the deployment and the replacement's health counts again, while an allocation of
    /// the old version still waits its turn (Nomad's reconciler likewise requires that
    /// nothing is left to place or update).
    unfinished: Vec<&'a DeploymentState>,
    /// An unhealthy allocation fails the deployment now.
    fail_now: bool,
    /// Unhealthy allocations whose replacement the reconciler may make, by ID.
    replaceable: Vec<String>,
}

/// Live allocations of one group: how many, and whether all run the deployment's
/// version and are healthy.
#[derive(Clone, Copy)]
struct GroupLive {
    count: usize,
    all_rolled_out: bool,
}

impl<'a> Survey<'a> {
    fn of(state: &State, job: &Job, deployment: &'a Deployment, now_ns: i64) -> Survey<'a> {
        // A group without a progress deadline fails on its first unhealthy allocation.
        let mut fail_now = deployment
            .task_groups
            .values()
            .any(|g| g.unhealthy_allocs > 0 && g.progress_deadline.0 == 0);
        let mut replaceable = Vec::new();
        let mut live: BTreeMap<&str, GroupLive> = BTreeMap::new();
        for alloc in state.job_allocs_iter(&deployment.namespace, &deployment.job_id) {
            if !alloc.is_terminal() {
                let group = live
                    .entry(alloc.task_group.as_str())
                    .or_insert(GroupLive { count: 0, all_rolled_out: true });
                group.count += 1;
                group.all_rolled_out &= alloc.job_version == deployment.job_version
                    && alloc.deployment_healthy() == Some(true);
            }
            if alloc.deployment_id != deployment.id || alloc.deployment_healthy() != Some(false) {
                continue;
            }
            let progress_based = deployment
                .task_groups
                .get(&alloc.task_group)
                .is_some_and(|g| g.progress_deadline.0 > 0);
            if !progress_based {
                continue; // counted above
            }
            if !may_reschedule(job, alloc, now_ns) {
                // No other attempt will come: waiting for the deadline cannot help.
                fail_now = true;
            } else if needs_replacement_mark(alloc) {
                replaceable.push(alloc.id.clone());
            }
        }
        let unfinished = deployment
            .task_groups
            .iter()
            .filter(|(name, g)| {
                let wanted = usize::try_from(g.desired_total).unwrap_or(0);
                let rolled_out = live
                    .get(name.as_str())
                    .map_or(wanted == 0, |l| l.count == wanted && l.all_rolled_out);
                !g.is_complete() || !rolled_out
            })
            .map(|(_, g)| g)
            .collect();
        Survey { unfinished, fail_now, replaceable }
    }

    /// The earliest `RequireProgressBy` among the unfinished groups that have one.
    fn progress_deadline(&self) -> Option<Timestamp> {
        self.unfinished
            .iter()
            .filter(|g| !g.require_progress_by.is_unset())
            .map(|g| g.require_progress_by)
            .min()
    }

    /// A group still unfinished past its `RequireProgressBy`.
    fn past_progress_deadline(&self, now_ns: i64) -> bool {
        self.progress_deadline().is_some_and(|by| by <= Timestamp(now_ns))
    }
}

/// Whether the reschedule policy of the allocation's group allows it another attempt
/// now (Nomad's `RescheduleEligible`); a group without a policy allows none.
fn may_reschedule(job: &Job, alloc: &Allocation, now_ns: i64) -> bool {
    job.group(&alloc.task_group)
        .and_then(|group| job.reschedule_policy(group))
        .is_some_and(|policy| policy.allows_another(alloc.reschedule_tracker.as_ref(), now_ns))
}

/// An unhealthy allocation not yet marked for replacement, that a mark can still reach
/// (the state ignores one on an allocation the servers stopped) and that nothing
/// replaced yet.
fn needs_replacement_mark(alloc: &Allocation) -> bool {
    alloc.desired_transition.reschedule != Some(true)
        && !alloc.server_terminal()
        && alloc.next_allocation.is_empty()
}

/// Every group with canaries wants auto-promotion and has as many healthy canaries
/// running as it asked for (the state's promotion rule).
fn ready_to_auto_promote(state: &State, deployment: &Deployment) -> bool {
    let canary_groups: Vec<_> =
        deployment.task_groups.values().filter(|g| g.desired_canaries > 0 && !g.promoted).collect();
    !canary_groups.is_empty()
        && canary_groups.iter().all(|g| {
            g.auto_promote
                && g.enough_canaries(g.healthy_canaries(|id| state.alloc(id).map(|a| &**a)))
        })
}

impl LeaderService for DeploymentWatcher {
    fn establish(&mut self, now: Millis, state: &State) {
        self.leading = true;
        // Nothing is known of what the last leader did: a deployment with healthy
        // allocations gets an evaluation at once (a spare one is harmless; a missing one
        // would stall the rollout), and every rule is checked against the state.
        self.watched.clear();
        self.synced = (0, 0);
        self.note_state(now, state);
    }

    fn on_applied(&mut self, now: Millis, state: &State) {
        if self.leading {
            self.note_state(now, state);
        }
    }

    fn tick(&mut self, now: Millis, state: &State) -> Vec<Command> {
        if !self.leading {
            return Vec::new();
        }
        self.note_state(now, state);
        self.dirty = false;
        let mut commands = Vec::new();
        let mut next_deadline: Option<Millis> = None;
        let active: Vec<_> = state.active_deployments().cloned().collect();
        self.watched.retain(|id, _| active.iter().any(|d| d.id == *id));
        let now_ns = nanos(now);
        for deployment in &active {
            let Some(job) = current_job(state, deployment) else { continue };
            let survey = Survey::of(state, job, deployment, now_ns);
            if let Some(command) = self.decide(now, state, job, deployment, &survey) {
                commands.push(command);
            }
            if let Some(at) = self.deadline_of(deployment, &survey) {
                next_deadline = Some(next_deadline.map_or(at, |n| n.min(at)));
            }
        }
        self.next_deadline = next_deadline;
        commands
    }

    fn poll_timeout(&self) -> Option<Millis> {
        if !self.leading {
            return None;
        }
        if self.dirty {
            return Some(self.last_now);
        }
        self.next_deadline
    }

    fn revoke(&mut self) {
        self.leading = false;
        self.watched.clear();
        self.dirty = false;
        self.next_deadline = None;
    }
}
