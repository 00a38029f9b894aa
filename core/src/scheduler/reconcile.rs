//! The reconciler: from a job's desired groups and its existing allocations to a list of
//! changes (Nomad's `AllocReconciler.Compute`), without choosing any node.
//!
//! Per group, each existing allocation lands in one bucket: ignore (current, healthy),
//! in-place update, destructive update, migrate (draining node), lost (node down or
//! gone), reschedule now or later (failed), stop (surplus, or the job is stopped). Each
//! allocation that keeps a slot keeps its name `job.group[i]`; new placements take the
//! lowest free indexes.
//!
//! Deployments (Nomad's `computeDeployment…`): a group with an `update` block whose
//! `max_parallel` > 0 rolls out a new version under a deployment, created with the plan
//! when the group has allocations to place or update and this version never ran. Its
//! destructive updates are limited to `max_parallel` minus the deployment's allocations
//! not yet healthy (none while one is unhealthy, the deployment is paused or failed, or
//! canaries wait for promotion). With `canary = N`, N canaries of the new version are
//! placed beside the old allocations, which stay until the deployment is promoted; a
//! promoted canary then takes its name's slot and the old allocation of that name stops.
//! A deployment created with canaries says whether it waits for a manual or an automatic
//! promotion.
//! Canaries of a deployment that was cancelled or failed unpromoted are stopped. An
//! active deployment of another job version, or of a stopped job, is cancelled. A failed
//! allocation of the job's failed deployment is not rescheduled; an unhealthy failed one
//! of its active deployment only once the deployment watcher allowed it (its progress
//! deadline and reschedule policy leave room), and until it is replaced no other
//! allocation of the group is updated.

use super::update::tasks_updated;
use crate::model::{
    AllocClientStatus, Allocation, Deployment, DeploymentState, DeploymentStatus,
    DeploymentStatusUpdate, DesiredUpdates, Job, JobType, Node, NodeStatus, RescheduleEvent,
    ReschedulePolicy, TaskGroup, UpdateStrategy, alloc_name, deployment_description,
};
use crate::state::Snapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const ALLOC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const ALLOC_MIGRATING: &str = "alloc is being migrated";
pub const ALLOC_UPDATING: &str = "alloc is being updated due to job update";
pub const ALLOC_LOST: &str = "alloc is lost since its node is down";
pub const ALLOC_RESCHEDULED: &str = "alloc was rescheduled because it failed";
pub const ALLOC_JOB_STOPPED: &str = "alloc not needed since job was stopped";
pub const ALLOC_CANARY_CANCELLED: &str = "alloc not needed as it is a canary of an old deployment";

/// Reschedules whose time falls within this window of `now` happen now (Nomad's 1 s).
pub const RESCHEDULE_WINDOW_NS: i64 = 1_000_000_000;

/// One allocation to place.
#[derive(Clone, Debug)]
pub struct PlaceRequest {
    pub group: String,
    pub name: String,
    pub index: u32,
    /// The allocation this one replaces (migrate, lost, reschedule, destructive update).
    pub previous: Option<Arc<Allocation>>,
    /// Set for reschedules: the new allocation's tracker gets this event appended.
    pub reschedule: Option<RescheduleEvent>,
    pub canary: bool,
}

/// One allocation to stop.
#[derive(Clone, Debug)]
pub struct StopDecision {
    pub alloc: Arc<Allocation>,
    pub description: &'static str,
    pub client_status: Option<AllocClientStatus>,
}

/// A failed allocation to reschedule at `at_ns`, by a follow-up evaluation.
#[derive(Clone, Debug)]
pub struct DelayedReschedule {
    pub alloc: Arc<Allocation>,
    pub at_ns: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    pub place: Vec<PlaceRequest>,
    pub stop: Vec<StopDecision>,
    pub inplace: Vec<Arc<Allocation>>,
    pub delayed: Vec<DelayedReschedule>,
    pub desired: BTreeMap<String, DesiredUpdates>,
    /// A deployment this pass creates (its ID still empty: the scheduler mints it).
    pub new_deployment: Option<Deployment>,
    /// The active deployment placements join, if one exists already.
    pub deployment_id: String,
    /// Deployments this pass cancels.
    pub deployment_updates: Vec<DeploymentStatusUpdate>,
}

/// Inputs besides the snapshot: the job (None if purged), the eval's ID (a follow-up
/// evaluation reschedules the allocations that point at it) and the leader's time.
pub struct Reconciler<'a> {
    pub snap: &'a Snapshot,
    pub job: Option<&'a Job>,
    pub namespace: &'a str,
    pub job_id: &'a str,
    pub eval_id: &'a str,
    pub now_ns: i64,
}

/// How a live allocation's node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeTaint {
    Fine,
    Lost,
    Draining,
}

impl Reconciler<'_> {
    pub fn compute(&self, allocs: &[Arc<Allocation>]) -> Reconciled {
        let mut out = Reconciled::default();
        let live_job = self.job.filter(|j| !j.stop);
        let deployment = self.current_deployment(live_job, &mut out);
        let Some(job) = live_job else {
            for alloc in allocs.iter().filter(|a| !a.is_terminal()) {
                out.stop.push(StopDecision {
                    alloc: alloc.clone(),
                    description: ALLOC_JOB_STOPPED,
                    client_status: None,
                });
            }
            return out;
        };
        let mut by_group: BTreeMap<&str, Vec<&Arc<Allocation>>> = BTreeMap::new();
        for alloc in allocs.iter().filter(|a| !a.server_terminal()) {
            by_group.entry(alloc.task_group.as_str()).or_default().push(alloc);
        }
        for (name, group_allocs) in &by_group {
            if job.group(name).is_none() {
                for alloc in group_allocs.iter().filter(|a| !a.is_terminal()) {
                    out.stop.push(StopDecision {
                        alloc: (*alloc).clone(),
                        description: ALLOC_NOT_NEEDED,
                        client_status: None,
                    });
                }
            }
        }
        for group in &job.task_groups {
            let group_allocs = by_group.remove(group.name.as_str()).unwrap_or_default();
            self.compute_group(job, group, deployment.as_deref(), &group_allocs, &mut out);
        }
        if let Some(created) = out.new_deployment.as_mut() {
            created.status_description = created_description(created).to_owned();
        }
        out
    }

    fn current_deployment(
        &self,
        job: Option<&Job>,
        out: &mut Reconciled,
    ) -> Option<Arc<Deployment>> {
        let current = current_deployment(self.snap, self.namespace, self.job_id, job);
        out.deployment_id = current.active_id;
        out.deployment_updates.extend(current.cancelled);
        current.deployment
    }

    fn taint(&self, alloc: &Allocation) -> NodeTaint {
        match self.snap.node(&alloc.node_id).map(|n| n.as_ref()) {
            None => NodeTaint::Lost,
            Some(Node { status: NodeStatus::Down | NodeStatus::Disconnected, .. }) => {
                NodeTaint::Lost
            }
            Some(_) if alloc.desired_transition.should_migrate() => NodeTaint::Draining,
            Some(_) => NodeTaint::Fine,
        }
    }

    fn compute_group(
        &self,
        job: &Job,
        group: &TaskGroup,
        deployment: Option<&Deployment>,
        allocs: &[&Arc<Allocation>],
        out: &mut Reconciled,
    ) {
        let mut desired = DesiredUpdates::default();
        let mut rollout = Rollout::new(job, group, deployment);
        // Every allocation that holds a name slot, by index; lower indexes survive a
        // scale-down (Nomad stops the highest names first).
        let mut slots: BTreeMap<u32, Vec<Slot>> = BTreeMap::new();
        for alloc in allocs {
            match rollout.canary_verdict(self.snap, alloc) {
                CanaryVerdict::Slot => {}
                CanaryVerdict::Waiting => {
                    // A canary whose node is lost or drains is replaced now by a canary
                    // of the same name (Nomad's lost and migrating canaries), whatever
                    // its client last reported.
                    let kind = match self.taint(alloc) {
                        NodeTaint::Lost => SlotKind::Lost,
                        NodeTaint::Draining => SlotKind::Migrate,
                        NodeTaint::Fine => continue,
                    };
                    let slot = Slot { alloc: (*alloc).clone(), kind, canary: true };
                    self.act(job, group, slot, &mut desired, out);
                    continue;
                }
                CanaryVerdict::Failed => {
                    // Replaced by the rules of any failed allocation, as a canary.
                    let kind = if alloc.next_allocation.is_empty() {
                        self.failed_kind(job, group, deployment, alloc)
                    } else {
                        SlotKind::Done
                    };
                    if kind != SlotKind::Done {
                        let slot = Slot { alloc: (*alloc).clone(), kind, canary: true };
                        self.act(job, group, slot, &mut desired, out);
                    }
                    continue;
                }
                CanaryVerdict::Stop => {
                    if !alloc.is_terminal() {
                        desired.stop += 1;
                        out.stop.push(StopDecision {
                            alloc: (*alloc).clone(),
                            description: ALLOC_CANARY_CANCELLED,
                            client_status: None,
                        });
                    }
                    continue;
                }
            }
            if let Some(slot) = self.classify(job, group, deployment, alloc) {
                slots.entry(alloc.index().unwrap_or(u32::MAX)).or_default().push(slot);
            }
        }
        let mut ordered: Vec<Slot> = Vec::new();
        for (_, mut same_name) in slots {
            // Two live allocations with one name happen when a partial commit kept a
            // replacement but dropped its predecessor's stop, or when a promoted canary
            // meets the replacement of a lost allocation it was to take over: keep the
            // deployment's canary (as Nomad), else the newest, and stop the rest.
            same_name.sort_by_key(|s| {
                let canary = s.alloc.is_canary()
                    && deployment.is_some_and(|d| d.id == s.alloc.deployment_id);
                (std::cmp::Reverse(canary), std::cmp::Reverse(s.alloc.create_index))
            });
            let mut rest = same_name.into_iter();
            ordered.extend(rest.next());
            for duplicate in rest.filter(|s| !s.alloc.is_terminal()) {
                desired.stop += 1;
                out.stop.push(StopDecision {
                    alloc: duplicate.alloc,
                    description: ALLOC_NOT_NEEDED,
                    client_status: None,
                });
            }
        }
        let count = usize::try_from(group.count.max(0)).unwrap_or(0);
        for surplus in ordered.split_off(count.min(ordered.len())) {
            if !surplus.alloc.is_terminal() {
                desired.stop += 1;
                out.stop.push(StopDecision {
                    alloc: surplus.alloc,
                    description: ALLOC_NOT_NEEDED,
                    client_status: None,
                });
            }
        }
        let used: BTreeSet<u32> = ordered.iter().filter_map(|s| s.alloc.index()).collect();
        let missing = count.saturating_sub(ordered.len());
        let destructive: Vec<u32> = ordered
            .iter()
            .filter(|s| s.kind == SlotKind::Destructive)
            .filter_map(|s| s.alloc.index())
            .collect();
        let updating =
            !destructive.is_empty() || ordered.iter().any(|s| s.kind == SlotKind::InPlace);
        let changes = (updating, !destructive.is_empty());
        rollout.start((job, group), allocs, changes, group.count, &mut out.new_deployment);
        for index in rollout.canary_indexes(&destructive) {
            desired.canary += 1;
            let request = self.request(job, group, index, None, None);
            out.place.push(PlaceRequest { canary: true, ..request });
        }
        let unhealthy_held = ordered.iter().any(|s| s.holds_unhealthy(deployment));
        let stopping: BTreeSet<&str> = out.stop.iter().map(|s| s.alloc.id.as_str()).collect();
        let stopped = |a: &Allocation| stopping.contains(a.id.as_str());
        let mut destructive_allowed =
            rollout.destructive_limit((allocs, &stopped), destructive.len(), unhealthy_held);
        for slot in ordered {
            if slot.kind == SlotKind::Destructive {
                if destructive_allowed == 0 {
                    desired.ignore += 1;
                    continue;
                }
                destructive_allowed -= 1;
            }
            self.act(job, group, slot, &mut desired, out);
        }
        let mut free = (0u32..).filter(|i| !used.contains(i));
        for _ in 0..missing {
            let index = free.next().expect("unbounded index range");
            desired.place += 1;
            out.place.push(self.request(job, group, index, None, None));
        }
        out.desired.insert(group.name.clone(), desired);
    }

    /// Which bucket an allocation falls in, or `None` if it no longer holds a slot.
    fn classify(
        &self,
        job: &Job,
        group: &TaskGroup,
        deployment: Option<&Deployment>,
        alloc: &Arc<Allocation>,
    ) -> Option<Slot> {
        if job.job_type == JobType::Batch && alloc.is_terminal() && alloc.ran_earlier_job(job) {
            return None; // an updated or re-registered batch job runs again (as Nomad)
        }
        let kind = match alloc.client_status {
            AllocClientStatus::Complete if job.job_type == JobType::Batch => SlotKind::Done,
            AllocClientStatus::Complete | AllocClientStatus::Lost => return None,
            AllocClientStatus::Failed if !alloc.next_allocation.is_empty() => return None,
            AllocClientStatus::Failed => self.failed_kind(job, group, deployment, alloc),
            _ => match self.taint(alloc) {
                NodeTaint::Lost => SlotKind::Lost,
                NodeTaint::Draining => SlotKind::Migrate,
                NodeTaint::Fine => self.update_kind(job, group, alloc),
            },
        };
        Some(Slot { alloc: alloc.clone(), kind, canary: false })
    }

    /// What becomes of a failed allocation not replaced yet.
    fn failed_kind(
        &self,
        job: &Job,
        group: &TaskGroup,
        deployment: Option<&Deployment>,
        alloc: &Allocation,
    ) -> SlotKind {
        if in_failed_deployment(deployment, alloc) || awaits_watcher(deployment, alloc) {
            return SlotKind::Done;
        }
        self.reschedule_kind(job, group, alloc)
    }

    fn update_kind(&self, job: &Job, group: &TaskGroup, alloc: &Allocation) -> SlotKind {
        if alloc.job_version == job.version {
            return SlotKind::Ignore;
        }
        let old_group = self.snap.alloc_job(alloc).and_then(|old| old.group(&group.name).cloned());
        match old_group {
            Some(old)
                if !tasks_updated(
                    self.snap.alloc_job(alloc).as_deref().unwrap_or(job),
                    &old,
                    job,
                    group,
                ) =>
            {
                SlotKind::InPlace
            }
            _ => SlotKind::Destructive,
        }
    }

    /// A failed allocation keeps its slot; it is replaced while its policy allows.
    fn reschedule_kind(&self, job: &Job, group: &TaskGroup, alloc: &Allocation) -> SlotKind {
        let tracker = alloc.reschedule_tracker.as_ref();
        let Some(policy) =
            job.reschedule_policy(group).filter(|p| p.allows_another(tracker, self.now_ns))
        else {
            return SlotKind::Done;
        };
        let delay = reschedule_delay(policy, tracker.map_or(0, |t| t.events.len()));
        let at_ns = alloc.modify_time.saturating_add(delay);
        let due =
            alloc.followup_eval_id == self.eval_id || at_ns <= self.now_ns + RESCHEDULE_WINDOW_NS;
        if due {
            return SlotKind::RescheduleNow { delay };
        }
        if !alloc.followup_eval_id.is_empty() {
            return SlotKind::Done; // a follow-up evaluation is already waiting for it
        }
        SlotKind::RescheduleLater { at_ns }
    }

    fn act(
        &self,
        job: &Job,
        group: &TaskGroup,
        slot: Slot,
        desired: &mut DesiredUpdates,
        out: &mut Reconciled,
    ) {
        let index = slot.alloc.index().unwrap_or(0);
        let alloc = slot.alloc;
        // A canary's replacement is a canary.
        let replacement = |previous, reschedule| PlaceRequest {
            canary: slot.canary,
            ..self.request(job, group, index, Some(previous), reschedule)
        };
        match slot.kind {
            SlotKind::Ignore | SlotKind::Done => desired.ignore += 1,
            SlotKind::InPlace => {
                desired.in_place_update += 1;
                out.inplace.push(alloc);
            }
            SlotKind::Destructive => {
                desired.destructive_update += 1;
                out.stop.push(StopDecision {
                    alloc: alloc.clone(),
                    description: ALLOC_UPDATING,
                    client_status: None,
                });
                out.place.push(replacement(alloc, None));
            }
            SlotKind::Migrate => {
                desired.migrate += 1;
                out.stop.push(StopDecision {
                    alloc: alloc.clone(),
                    description: ALLOC_MIGRATING,
                    client_status: None,
                });
                out.place.push(replacement(alloc, None));
            }
            SlotKind::Lost => {
                desired.place += 1;
                desired.stop += 1;
                let stop = StopDecision {
                    alloc: alloc.clone(),
                    description: ALLOC_LOST,
                    client_status: Some(AllocClientStatus::Lost),
                };
                out.stop.push(stop);
                out.place.push(replacement(alloc, None));
            }
            SlotKind::RescheduleNow { delay } => {
                desired.place += 1;
                let event = RescheduleEvent {
                    reschedule_time: self.now_ns,
                    prev_alloc_id: alloc.id.clone(),
                    prev_node_id: alloc.node_id.clone(),
                    delay: crate::model::DurationNs(delay),
                };
                out.stop.push(StopDecision {
                    alloc: alloc.clone(),
                    description: ALLOC_RESCHEDULED,
                    client_status: None,
                });
                out.place.push(replacement(alloc, Some(event)));
            }
            SlotKind::RescheduleLater { at_ns } => {
                desired.ignore += 1;
                out.delayed.push(DelayedReschedule { alloc, at_ns });
            }
        }
    }

    fn request(
        &self,
        job: &Job,
        group: &TaskGroup,
        index: u32,
        previous: Option<Arc<Allocation>>,
        reschedule: Option<RescheduleEvent>,
    ) -> PlaceRequest {
        PlaceRequest {
            group: group.name.clone(),
            name: alloc_name(&job.id, &group.name, index),
            index,
            previous,
            reschedule,
            canary: false,
        }
    }
}

#[derive(Clone, Debug)]
struct Slot {
    alloc: Arc<Allocation>,
    kind: SlotKind,
    /// A canary of the current deployment waiting for promotion (it holds no name's
    /// slot): its replacement is a canary too.
    canary: bool,
}

impl Slot {
    /// An unhealthy allocation of `deployment` that keeps its slot through this pass
    /// (running, or failed and not replaced now; a lost or migrating one is replaced
    /// now): the rollout waits for its replacement or for the deployment to fail
    /// (Nomad's `computeLimit` over the untainted set).
    fn holds_unhealthy(&self, deployment: Option<&Deployment>) -> bool {
        deployment.is_some_and(|d| d.id == self.alloc.deployment_id)
            && self.alloc.deployment_healthy() == Some(false)
            && matches!(
                self.kind,
                SlotKind::Ignore | SlotKind::Done | SlotKind::RescheduleLater { .. }
            )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKind {
    Ignore,
    /// Holds its slot and needs nothing now (a finished batch allocation, a failed one
    /// whose reschedule a follow-up evaluation already owns, that its policy or failed
    /// deployment does not replace, or that waits for the deployment watcher).
    Done,
    InPlace,
    Destructive,
    Migrate,
    Lost,
    RescheduleNow {
        delay: i64,
    },
    RescheduleLater {
        at_ns: i64,
    },
}

/// What a canary allocation is to this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CanaryVerdict {
    /// Not a canary, or a promoted one: it holds its name's slot.
    Slot,
    /// A canary of the current deployment waiting for promotion: kept beside the slots.
    Waiting,
    /// A canary of the current deployment, waiting for promotion, that failed: it keeps
    /// its place among the canaries and is rescheduled as any failed allocation is (by
    /// the group's policy, once the deployment watcher allows it), its replacement a
    /// canary carrying its reschedule tracker (Nomad's reconciler reschedules failed
    /// canaries rather than placing new ones beside them).
    Failed,
    /// A canary of a deployment that ended (or was replaced) unpromoted.
    Stop,
}

/// One group's rollout under its update strategy and the job's current deployment.
/// Service groups roll through it; system groups too, one allocation per node, their
/// `canary` a percentage of the nodes the group runs on (Nomad 1.11).
pub(super) struct Rollout<'a> {
    /// The update strategy, when the group deploys (service and system jobs,
    /// `max_parallel` > 0).
    strategy: Option<&'a UpdateStrategy>,
    deployment: Option<&'a Deployment>,
    state: Option<&'a DeploymentState>,
    /// Canaries of the current deployment waiting for promotion, by name index.
    waiting_canaries: BTreeSet<u32>,
    /// A system group's live canaries of the current deployment waiting for promotion:
    /// all share one name, so they are counted, not named.
    node_canaries: usize,
    /// Canaries this pass places.
    canaries_wanted: usize,
}

impl<'a> Rollout<'a> {
    pub(super) fn new(
        job: &'a Job,
        group: &'a TaskGroup,
        deployment: Option<&'a Deployment>,
    ) -> Rollout<'a> {
        let deploys = matches!(job.job_type, JobType::Service | JobType::System);
        let strategy = group.update.as_ref().filter(|u| u.max_parallel > 0 && deploys);
        let state = deployment.and_then(|d| d.task_groups.get(&group.name));
        Rollout {
            strategy,
            deployment,
            state,
            waiting_canaries: BTreeSet::new(),
            node_canaries: 0,
            canaries_wanted: 0,
        }
    }

    fn is_active(&self) -> bool {
        self.deployment.is_some_and(|d| d.is_active())
    }

    fn promoted(&self) -> bool {
        self.state.is_some_and(|s| s.promoted)
    }

    fn canary_verdict(&mut self, snap: &Snapshot, alloc: &Allocation) -> CanaryVerdict {
        if !alloc.is_canary() {
            return CanaryVerdict::Slot;
        }
        let current = self.deployment.is_some_and(|d| d.id == alloc.deployment_id);
        if current && self.is_active() && !self.promoted() {
            if alloc.client_status == AllocClientStatus::Failed {
                self.waiting_canaries.extend(alloc.index());
                return CanaryVerdict::Failed;
            }
            if alloc.client_status.is_terminal() {
                return CanaryVerdict::Stop;
            }
            self.waiting_canaries.extend(alloc.index());
            return CanaryVerdict::Waiting;
        }
        let promoted = snap
            .deployment(&alloc.deployment_id)
            .and_then(|d| d.task_groups.get(&alloc.task_group))
            .is_some_and(|g| g.promoted);
        if promoted { CanaryVerdict::Slot } else { CanaryVerdict::Stop }
    }

    /// Counts a system group's canaries waiting for promotion (before [`Rollout::start`]).
    pub(super) fn note_node_canaries(&mut self, allocs: &[&Arc<Allocation>]) {
        if !self.is_active() || self.promoted() {
            return;
        }
        let current = |a: &&&Arc<Allocation>| {
            self.deployment.is_some_and(|d| d.id == a.deployment_id)
                && a.is_canary()
                && !a.is_terminal()
        };
        self.node_canaries = allocs.iter().filter(current).count();
    }

    /// Creates the deployment (in `created`, shared by the job's groups) when the group
    /// rolls out a version that never ran (or updates its allocations), wanting
    /// `desired_total` allocations, and decides how many canaries to place: `canary` of
    /// them for a service group; for a system group, `canary` percent of the
    /// `desired_total` nodes it runs on, rounded up.
    pub(super) fn start(
        &mut self,
        (job, group): (&Job, &TaskGroup),
        allocs: &[&Arc<Allocation>],
        (updating, destructive): (bool, bool),
        desired_total: i32,
        created: &mut Option<Deployment>,
    ) {
        let Some(strategy) = self.strategy else { return };
        let canarying = strategy.canary > 0 && destructive && !self.promoted();
        if let Some(state) = self.state {
            if canarying && self.is_active() {
                let wanted = usize::try_from(state.desired_canaries.max(0)).unwrap_or(0);
                let live = self.waiting_canaries.len() + self.node_canaries;
                self.canaries_wanted = wanted.saturating_sub(live);
            }
            return;
        }
        if self.deployment.is_some() || group.count <= 0 {
            return;
        }
        let had_running = allocs
            .iter()
            .any(|a| a.job_version == job.version && a.create_index >= job.create_index);
        if had_running && !updating {
            return;
        }
        let desired_canaries = match job.job_type {
            _ if !canarying => 0,
            JobType::System => percent_of_nodes(strategy.canary, desired_total),
            _ => strategy.canary,
        };
        self.canaries_wanted = usize::try_from(desired_canaries).unwrap_or(0);
        let deployment = created.get_or_insert_with(|| new_deployment(job));
        let state = DeploymentState {
            auto_revert: strategy.auto_revert,
            auto_promote: strategy.auto_promote,
            progress_deadline: strategy.progress_deadline,
            desired_canaries,
            desired_total,
            ..DeploymentState::default()
        };
        deployment.task_groups.insert(group.name.clone(), state);
    }

    /// Name indexes for the canaries to place: the first destructive slots not already
    /// holding a waiting canary.
    fn canary_indexes(&self, destructive: &[u32]) -> Vec<u32> {
        destructive
            .iter()
            .copied()
            .filter(|i| !self.waiting_canaries.contains(i))
            .take(self.canaries_wanted)
            .collect()
    }

    /// Nomad's `computeLimit`: how many of `destructive` updates this pass may make;
    /// none while an unhealthy allocation of the deployment holds its slot.
    pub(super) fn destructive_limit(
        &self,
        allocs: GroupAllocs<'_>,
        destructive: usize,
        unhealthy_held: bool,
    ) -> usize {
        let Some(strategy) = self.strategy.filter(|_| destructive > 0) else { return destructive };
        let max_parallel = usize::try_from(strategy.max_parallel).unwrap_or(0);
        if self.canaries_wanted > 0 || !self.waiting_canaries.is_empty() || self.node_canaries > 0 {
            return 0; // canaries first, and the rest only once they are promoted
        }
        let Some(deployment) = self.deployment else { return max_parallel };
        let unpromoted = self.state.is_some_and(|s| s.desired_canaries > 0 && !s.promoted);
        if !rolls(deployment) || unpromoted || unhealthy_held {
            return 0;
        }
        max_parallel.saturating_sub(waiting_for_health(deployment, allocs))
    }

    /// How many of a system group's destructive updates this pass makes as canaries:
    /// those still wanted, at most `max_parallel` less the deployment's allocations not
    /// yet healthy (Nomad: "up to max_parallel ... whichever is lower").
    pub(super) fn node_canary_limit(&self, allocs: GroupAllocs<'_>) -> usize {
        let Some(strategy) = self.strategy.filter(|_| self.canaries_wanted > 0) else { return 0 };
        let max_parallel = usize::try_from(strategy.max_parallel).unwrap_or(0);
        let waiting = match self.deployment {
            Some(deployment) if !rolls(deployment) => return 0,
            Some(deployment) => waiting_for_health(deployment, allocs),
            None => 0,
        };
        self.canaries_wanted.min(max_parallel.saturating_sub(waiting))
    }
}

/// A paused or failed deployment makes no destructive update.
fn rolls(deployment: &Deployment) -> bool {
    !matches!(deployment.status, DeploymentStatus::Paused | DeploymentStatus::Failed)
}

/// A group's allocations, as the rollout limits count them, and which of them the
/// pass's own plan stops.
pub(super) type GroupAllocs<'a> = (&'a [&'a Arc<Allocation>], &'a dyn Fn(&Allocation) -> bool);

/// The deployment's live allocations whose health is not known yet. Those the pass's
/// plan stops do not count: they wait for no health, and counting them would hold the
/// rollout with nothing left to wake it.
fn waiting_for_health(deployment: &Deployment, (allocs, stopped): GroupAllocs<'_>) -> usize {
    let waiting = |a: &&&Arc<Allocation>| {
        a.deployment_id == deployment.id
            && !a.is_terminal()
            && a.deployment_healthy().is_none()
            && !stopped(a)
    };
    allocs.iter().filter(waiting).count()
}

/// A system group's canaries: `percent` of `nodes`, rounded up (so any percentage of
/// at least one node is one canary), never more than the nodes.
fn percent_of_nodes(percent: i32, nodes: i32) -> i32 {
    let percent = u64::try_from(percent.clamp(0, 100)).unwrap_or(0);
    let nodes = u64::try_from(nodes).unwrap_or(0);
    i32::try_from((percent * nodes).div_ceil(100)).unwrap_or(0)
}

/// The allocation belongs to the job's failed deployment. Nomad's reconciler never
/// reschedules one: the rollout stopped there, and a replacement would carry it on. No
/// follow-up evaluation is made for it either, since it would place nothing.
fn in_failed_deployment(deployment: Option<&Deployment>, alloc: &Allocation) -> bool {
    deployment.is_some_and(|d| d.status == DeploymentStatus::Failed && d.id == alloc.deployment_id)
}

/// An unhealthy failed allocation of the job's active deployment that the deployment
/// watcher has not allowed to be replaced yet (Nomad's `DesiredTransition.Reschedule`).
/// The watcher decides: with a progress deadline it allows the replacement while the
/// reschedule policy has attempts left, otherwise it fails the deployment. A failed
/// allocation that was healthy first is rescheduled as any other: the watcher never
/// looks at it, and the deployment could not finish while it held its slot.
fn awaits_watcher(deployment: Option<&Deployment>, alloc: &Allocation) -> bool {
    deployment.is_some_and(|d| d.is_active() && d.id == alloc.deployment_id)
        && alloc.deployment_healthy() == Some(false)
        && alloc.desired_transition.reschedule != Some(true)
}

/// What a deployment says as it is created: canaries that wait for a promotion say who
/// promotes them (Nomad's `computeDeploymentUpdates`).
pub(super) fn created_description(deployment: &Deployment) -> &'static str {
    if !deployment.requires_promotion() {
        deployment_description::RUNNING
    } else if deployment.task_groups.values().all(|g| g.desired_canaries == 0 || g.auto_promote) {
        deployment_description::RUNNING_AUTO_PROMOTION
    } else {
        deployment_description::RUNNING_NEEDS_PROMOTION
    }
}

/// The job's latest deployment as a scheduling pass sees it.
pub(super) struct CurrentDeployment {
    /// The deployment of the job's current version, whatever its status.
    pub deployment: Option<Arc<Deployment>>,
    /// Its ID while it is active: placements and in-place updates join it.
    pub active_id: String,
    /// The cancellation of an active deployment of another version or of a stopped job.
    pub cancelled: Option<DeploymentStatusUpdate>,
}

/// The deployment of the job's current version, if any (whatever its status); an
/// active deployment of another version, or of a stopped or purged job, is cancelled.
/// Service and system schedulers alike read a job's deployment through this.
pub(super) fn current_deployment(
    snap: &Snapshot,
    namespace: &str,
    job_id: &str,
    job: Option<&Job>,
) -> CurrentDeployment {
    let mut found =
        CurrentDeployment { deployment: None, active_id: String::new(), cancelled: None };
    let Some(latest) = snap.latest_deployment(namespace, job_id) else { return found };
    let current = job.is_some_and(|j| {
        latest.job_create_index == j.create_index && latest.job_version == j.version
    });
    if current {
        if latest.is_active() {
            found.active_id = latest.id.clone();
        }
        found.deployment = Some(latest.clone());
    } else if latest.is_active() {
        let description = match job {
            Some(_) => deployment_description::NEWER_JOB,
            None => deployment_description::STOPPED_JOB,
        };
        found.cancelled = Some(DeploymentStatusUpdate {
            deployment_id: latest.id.clone(),
            status: DeploymentStatus::Cancelled,
            status_description: description.to_owned(),
        });
    }
    found
}

/// A deployment of the job's current version, its groups still to be added.
fn new_deployment(job: &Job) -> Deployment {
    let running = deployment_description::RUNNING;
    Deployment {
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        job_version: job.version,
        job_modify_index: job.job_modify_index,
        job_spec_modify_index: job.job_modify_index,
        job_create_index: job.create_index,
        status: DeploymentStatus::Running,
        status_description: running.to_owned(),
        eval_priority: job.priority,
        ..Deployment::default()
    }
}

/// The delay before the n-th reschedule (n previous reschedules), per the policy's
/// delay function, capped at `max_delay` when one is set.
pub fn reschedule_delay(policy: &ReschedulePolicy, previous: usize) -> i64 {
    let base = policy.delay.0.max(0);
    let raw = match policy.delay_function.as_str() {
        "exponential" => {
            base.saturating_mul(1i64.checked_shl(previous.min(62) as u32).unwrap_or(i64::MAX))
        }
        "fibonacci" => {
            let (mut a, mut b) = (base, base);
            for _ in 0..previous.min(90) {
                (a, b) = (b, a.saturating_add(b));
            }
            a
        }
        _ => base,
    };
    if policy.max_delay.0 > 0 { raw.min(policy.max_delay.0) } else { raw }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DurationNs;

    #[test]
    fn delay_functions() {
        let mut policy = ReschedulePolicy {
            delay: DurationNs::from_secs(5),
            delay_function: "exponential".into(),
            max_delay: DurationNs::from_secs(60),
            ..ReschedulePolicy::default()
        };
        let secs = |p: &ReschedulePolicy, n| reschedule_delay(p, n) / 1_000_000_000;
        assert_eq!([0, 1, 2, 3, 4].map(|n| secs(&policy, n)), [5, 10, 20, 40, 60]);
        policy.delay_function = "fibonacci".into();
        assert_eq!([0, 1, 2, 3, 4].map(|n| secs(&policy, n)), [5, 5, 10, 15, 25]);
        policy.delay_function = "constant".into();
        assert_eq!(secs(&policy, 7), 5);
    }
}
