//! Job summaries: per task group, how many allocations are queued, starting, running,
//! failed, complete, lost or unknown.
//!
//! Kept incrementally on every allocation write (as Nomad's state store does) and never
//! allowed below zero: a decrement of an empty counter is a bug in the bookkeeping, so it
//! panics (the assertion stays on in release). [`JobSummary::recompute`] rebuilds the
//! counts from the allocations, for tests that compare the two.

use crate::model::{AllocClientStatus, Allocation, Job};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupSummary {
    pub queued: u64,
    pub complete: u64,
    pub failed: u64,
    pub running: u64,
    pub starting: u64,
    pub lost: u64,
    pub unknown: u64,
}

impl TaskGroupSummary {
    fn counter(&mut self, status: AllocClientStatus) -> &mut u64 {
        match status {
            AllocClientStatus::Pending => &mut self.starting,
            AllocClientStatus::Running => &mut self.running,
            AllocClientStatus::Complete => &mut self.complete,
            AllocClientStatus::Failed => &mut self.failed,
            AllocClientStatus::Lost => &mut self.lost,
            AllocClientStatus::Unknown => &mut self.unknown,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobSummary {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub namespace: String,
    pub summary: BTreeMap<String, TaskGroupSummary>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl JobSummary {
    pub fn new(job: &Job, index: u64) -> JobSummary {
        let mut summary = JobSummary {
            job_id: job.id.clone(),
            namespace: job.namespace.clone(),
            create_index: index,
            modify_index: index,
            ..JobSummary::default()
        };
        summary.add_groups(job);
        summary
    }

    /// A job update may add groups; removed groups keep their history, as in Nomad.
    pub fn add_groups(&mut self, job: &Job) {
        for group in &job.task_groups {
            self.summary.entry(group.name.clone()).or_default();
        }
    }

    /// Moves one allocation between counters: `old` is its previous client status (None
    /// for a new allocation), `new` its current one.
    pub fn transition(
        &mut self,
        group: &str,
        old: Option<AllocClientStatus>,
        new: AllocClientStatus,
    ) {
        if !self.summary.contains_key(group) {
            self.summary.insert(group.to_owned(), TaskGroupSummary::default());
        }
        let counts = self.summary.get_mut(group).expect("inserted above");
        match old {
            Some(old) if old == new => return,
            Some(old) => {
                let counter = counts.counter(old);
                *counter = counter.checked_sub(1).expect("summary counter never negative");
            }
            None => counts.queued = counts.queued.saturating_sub(1),
        }
        *counts.counter(new) += 1;
    }

    /// Takes a reaped allocation out of the counter of its last client status.
    pub fn forget(&mut self, group: &str, status: AllocClientStatus) {
        if let Some(counts) = self.summary.get_mut(group) {
            let counter = counts.counter(status);
            *counter = counter.saturating_sub(1);
        }
    }

    /// The counts recomputed from allocations (queued is not derivable; it is kept).
    pub fn recompute<'a>(&self, allocs: impl Iterator<Item = &'a Allocation>) -> JobSummary {
        let mut fresh = self.clone();
        for counts in fresh.summary.values_mut() {
            *counts = TaskGroupSummary { queued: counts.queued, ..TaskGroupSummary::default() };
        }
        for alloc in allocs {
            *fresh
                .summary
                .entry(alloc.task_group.clone())
                .or_default()
                .counter(alloc.client_status) += 1;
        }
        fresh
    }
}
