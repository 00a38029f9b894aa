//! The deployment watcher: drives each active deployment to its end.
//!
//! It is a [`LeaderService`]: it exists only while this server leads, starts from the
//! state (so a new leader resumes every deployment where the log left it), and acts
//! only through Raft commands. For each active deployment of the job's current version,
//! after Nomad's `deploymentwatcher`, the first rule that holds decides:
//! - an allocation turned unhealthy: the deployment fails ("Failed due to unhealthy
//!   allocations"); with `auto_revert`, the latest stable version of the job is
//!   registered again in the same entry ("… - rolling back to job version N");
//! - a group passed its `RequireProgressBy` unfinished: it fails ("Failed due to
//!   progress deadline"), with the same rollback;
//! - every group has its desired total healthy (and is promoted if it has canaries), and
//!   runs exactly that many allocations, all of the deployment's version and healthy:
//!   the deployment is successful, which makes the job version stable;
//! - every canary is placed and healthy and every canary group asked for
//!   `auto_promote`: the deployment is promoted;
//! - the count of healthy or unhealthy allocations changed: an evaluation
//!   (`deployment-watcher`) lets the scheduler place the next batch.
//!
//! Each command carries an evaluation, so the scheduler acts on the new status. A
//! deployment is not acted on again until it changes, or `RETRY_MS` later if the
//! command was lost or refused.

use super::leader::LeaderService;
use crate::id::IdGen;
use crate::model::{
    Deployment, DeploymentState, DeploymentStatus, DeploymentStatusUpdate, Evaluation, Job,
    Timestamp, TriggeredBy, deployment_description,
};
use crate::state::{Command, State};
use crate::time::Millis;
use std::collections::BTreeMap;

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

    fn decide(&mut self, now: Millis, state: &State, deployment: &Deployment) -> Option<Command> {
        let job = state.job(&deployment.namespace, &deployment.job_id)?;
        let current = !job.stop
            && job.version == deployment.job_version
            && job.create_index == deployment.job_create_index;
        if !current {
            return None; // the job's next evaluation cancels it
        }
        let now_ns = (now.as_u64() as i64).saturating_mul(NANOS_PER_MILLI);
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
        let command = if health.1 > 0 {
            self.fail(state, job, deployment, deployment_description::FAILED_ALLOCATIONS, now_ns)
        } else if running && past_progress_deadline(state, deployment, now_ns) {
            self.fail(state, job, deployment, deployment_description::PROGRESS_DEADLINE, now_ns)
        } else if running && unfinished_groups(state, deployment).next().is_none() {
            let update = status_update(deployment, DeploymentStatus::Successful, SUCCESSFUL);
            let eval = Some(self.eval(job, deployment, now_ns));
            Command::DeploymentWatcherUpdate { update, revert: None, eval }
        } else if running && ready_to_auto_promote(state, deployment) {
            let eval = Some(self.eval(job, deployment, now_ns));
            let deployment_id = deployment.id.clone();
            Command::DeploymentPromote { deployment_id, all: true, groups: Vec::new(), eval }
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

    fn deadline_of(&self, state: &State, deployment: &Deployment) -> Option<Millis> {
        let progress = (deployment.status == DeploymentStatus::Running)
            .then(|| {
                unfinished_groups(state, deployment)
                    .filter(|g| !g.require_progress_by.is_unset())
                    .map(|g| g.require_progress_by)
                    .min()
            })
            .flatten()
            .map(|by| Millis((by.0 / NANOS_PER_MILLI).max(0) as u64));
        let retry = self.watched.get(&deployment.id).and_then(|w| w.proposed).map(|(_, at)| at);
        progress.into_iter().chain(retry).min()
    }
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

/// A group still unfinished past its `RequireProgressBy`.
fn past_progress_deadline(state: &State, deployment: &Deployment, now_ns: i64) -> bool {
    unfinished_groups(state, deployment)
        .any(|g| !g.require_progress_by.is_unset() && g.require_progress_by <= Timestamp(now_ns))
}

/// The deployment's groups not yet finished. A group is finished once its counters say
/// so (its desired total healthy, its canaries promoted) and it runs exactly its desired
/// total, all of the deployment's job version and healthy. The counters alone can say
/// finished too early: a healthy allocation lost with its node is replaced within the
/// deployment and the replacement's health counts again, while an allocation of the old
/// version still waits its turn (Nomad's reconciler likewise requires that nothing is
/// left to place or update).
fn unfinished_groups<'a>(
    state: &'a State,
    deployment: &'a Deployment,
) -> impl Iterator<Item = &'a DeploymentState> + 'a {
    deployment
        .task_groups
        .iter()
        .filter(|(name, g)| !g.is_complete() || !rolled_out(state, deployment, name, g))
        .map(|(_, g)| g)
}

fn rolled_out(
    state: &State,
    deployment: &Deployment,
    group: &str,
    wanted: &DeploymentState,
) -> bool {
    let allocs = state.job_allocs(&deployment.namespace, &deployment.job_id);
    let live: Vec<_> = allocs
        .iter()
        .filter(|a| a.task_group == group && !a.server_terminal() && !a.client_status.is_terminal())
        .collect();
    live.len() == usize::try_from(wanted.desired_total).unwrap_or(0)
        && live.iter().all(|a| {
            a.job_version == deployment.job_version && a.deployment_healthy() == Some(true)
        })
}

/// Every group with canaries wants auto-promotion and has all its canaries placed and
/// healthy.
fn ready_to_auto_promote(state: &State, deployment: &Deployment) -> bool {
    let canary_groups: Vec<_> =
        deployment.task_groups.values().filter(|g| g.desired_canaries > 0 && !g.promoted).collect();
    !canary_groups.is_empty()
        && canary_groups.iter().all(|g| {
            let placed = usize::try_from(g.desired_canaries).unwrap_or(0);
            g.auto_promote
                && g.placed_canaries.len() >= placed
                && g.placed_canaries
                    .iter()
                    .all(|id| state.alloc(id).is_some_and(|a| a.deployment_healthy() == Some(true)))
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
        for deployment in &active {
            if let Some(command) = self.decide(now, state, deployment) {
                commands.push(command);
            }
            if let Some(at) = self.deadline_of(state, deployment) {
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
