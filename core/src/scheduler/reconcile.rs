//! The reconciler: from a job's desired groups and its existing allocations to a list of
//! changes (Nomad's `AllocReconciler.Compute`), without choosing any node.
//!
//! Per group, each existing allocation lands in one bucket: ignore (current, healthy),
//! in-place update, destructive update, migrate (draining node), lost (node down or
//! gone), reschedule now or later (failed), stop (surplus, or the job is stopped). Each
//! allocation that keeps a slot keeps its name `job.group[i]`; new placements take the
//! lowest free indexes. Canaries and deployments hook in through [`PlaceRequest::canary`]
//! and [`Reconciled::desired`]; the deployment logic itself is not built yet.

use super::update::tasks_updated;
use crate::model::{
    AllocClientStatus, Allocation, DesiredUpdates, Job, JobType, Node, NodeStatus, RescheduleEvent,
    ReschedulePolicy, TaskGroup, alloc_name,
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
}

/// Inputs besides the snapshot: the job (None if purged), the eval's ID (a follow-up
/// evaluation reschedules the allocations that point at it) and the leader's time.
pub struct Reconciler<'a> {
    pub snap: &'a Snapshot,
    pub job: Option<&'a Job>,
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
            self.compute_group(job, group, &group_allocs, &mut out);
        }
        out
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
        allocs: &[&Arc<Allocation>],
        out: &mut Reconciled,
    ) {
        let mut desired = DesiredUpdates::default();
        // Every allocation that holds a name slot, by index; lower indexes survive a
        // scale-down (Nomad stops the highest names first).
        let mut slots: BTreeMap<u32, Vec<Slot>> = BTreeMap::new();
        for alloc in allocs {
            if let Some(slot) = self.classify(job, group, alloc) {
                slots.entry(alloc.index().unwrap_or(u32::MAX)).or_default().push(slot);
            }
        }
        let mut ordered: Vec<Slot> = Vec::new();
        for (_, mut same_name) in slots {
            // Two live allocations with one name happen when a partial commit kept a
            // replacement but dropped its predecessor's stop: keep the newest, stop the rest.
            same_name.sort_by_key(|s| std::cmp::Reverse(s.alloc.create_index));
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
        for slot in ordered {
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
    fn classify(&self, job: &Job, group: &TaskGroup, alloc: &Arc<Allocation>) -> Option<Slot> {
        let kind = match alloc.client_status {
            AllocClientStatus::Complete if job.job_type == JobType::Batch => SlotKind::Done,
            AllocClientStatus::Complete | AllocClientStatus::Lost => return None,
            AllocClientStatus::Failed if !alloc.next_allocation.is_empty() => return None,
            AllocClientStatus::Failed => self.reschedule_kind(job, group, alloc),
            _ => match self.taint(alloc) {
                NodeTaint::Lost => SlotKind::Lost,
                NodeTaint::Draining => SlotKind::Migrate,
                NodeTaint::Fine => self.update_kind(job, group, alloc),
            },
        };
        Some(Slot { alloc: alloc.clone(), kind })
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
        let Some(policy) = group.reschedule_policy.clone().or_else(|| job.reschedule.clone())
        else {
            return SlotKind::Done;
        };
        let tracker = alloc.reschedule_tracker.clone().unwrap_or_default();
        let window_start = self.now_ns - policy.interval.0;
        let attempted = tracker.attempts_since(window_start);
        if !policy.unlimited && (policy.attempts <= 0 || attempted >= policy.attempts as usize) {
            return SlotKind::Done;
        }
        let delay = reschedule_delay(&policy, tracker.events.len());
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
                out.place.push(self.request(job, group, index, Some(alloc), None));
            }
            SlotKind::Migrate => {
                desired.migrate += 1;
                out.stop.push(StopDecision {
                    alloc: alloc.clone(),
                    description: ALLOC_MIGRATING,
                    client_status: None,
                });
                out.place.push(self.request(job, group, index, Some(alloc), None));
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
                out.place.push(self.request(job, group, index, Some(alloc), None));
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
                out.place.push(self.request(job, group, index, Some(alloc), Some(event)));
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKind {
    Ignore,
    /// Holds its slot and needs nothing (a finished batch allocation, or one whose
    /// reschedule a follow-up evaluation already owns).
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
