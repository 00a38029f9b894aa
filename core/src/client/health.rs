//! Deployment health of one allocation, judged from its task states.
//!
//! Nomad's rule for `health_check = "task_states"` (and for `"checks"` when there are no
//! service checks to watch, which this client does not run): an allocation in a deployment
//! is healthy once every task that should be up has been up for `min_healthy_time` without
//! interruption; it is unhealthy as soon as a task fails, or if it has not become healthy
//! by `healthy_deadline`. The verdict is given once and then kept.

use super::task_runner::{Hook, TaskRunner};
use crate::model::{Allocation, DurationNs};
use crate::time::Millis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HealthWatch {
    min_healthy_ms: u64,
    deadline: Millis,
    /// Since when every task has been up, if it is now.
    up_since: Option<Millis>,
    /// The verdict and when it was reached.
    pub verdict: Option<(bool, Millis)>,
}

impl HealthWatch {
    /// A watch for an allocation that belongs to a deployment whose group the client
    /// judges (not `manual`), or `None`.
    pub fn for_alloc(now: Millis, alloc: &Allocation) -> Option<HealthWatch> {
        if alloc.deployment_id.is_empty() {
            return None;
        }
        let update = alloc.group()?.update.as_ref()?;
        if update.health_check == "manual" || update.max_parallel <= 0 {
            return None;
        }
        let millis = |d: DurationNs| Millis(d.as_millis());
        Some(HealthWatch {
            min_healthy_ms: update.min_healthy_time.as_millis(),
            deadline: now + millis(update.healthy_deadline),
            up_since: None,
            verdict: None,
        })
    }

    /// The next instant the verdict may change on its own.
    pub fn deadline(&self) -> Option<Millis> {
        if self.verdict.is_some() {
            return None;
        }
        let healthy_at = self.up_since.map(|since| since + Millis(self.min_healthy_ms));
        Some(healthy_at.map_or(self.deadline, |at| at.min(self.deadline)))
    }

    /// Re-judges the tasks at `now`; returns the verdict if it was reached just now.
    pub fn observe(&mut self, now: Millis, tasks: &[TaskRunner]) -> Option<bool> {
        if self.verdict.is_some() {
            return None;
        }
        let failed = tasks.iter().any(|t| t.is_dead() && t.state.failed);
        let up = tasks.iter().all(is_up);
        self.up_since = if up { Some(self.up_since.unwrap_or(now)) } else { None };
        let healthy = self.up_since.is_some_and(|since| now >= since + Millis(self.min_healthy_ms));
        let verdict = if failed {
            Some(false)
        } else if healthy {
            Some(true)
        } else if now >= self.deadline {
            Some(false)
        } else {
            None
        };
        self.verdict = verdict.map(|healthy| (healthy, now));
        verdict
    }
}

/// Whether a task is where a healthy allocation needs it: sidecars and main tasks
/// running, ephemeral prestart tasks completed, ephemeral poststart tasks running or
/// completed; poststop tasks do not count.
fn is_up(task: &TaskRunner) -> bool {
    match (task.hook, task.sidecar) {
        (Hook::Poststop, _) => true,
        (Hook::Prestart, false) => task.succeeded(),
        (Hook::Poststart, false) => task.is_running() || task.succeeded(),
        _ => task.is_running(),
    }
}
