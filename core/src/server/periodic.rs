//! The periodic dispatcher: launches the children of periodic jobs at their cron times.
//!
//! It is a [`LeaderService`]: it exists only while this server leads, its deadline is
//! the next launch (from [`LeaderService::poll_timeout`], never a timer), and a launch
//! is a Raft command ([`Command::PeriodicLaunch`]: the child job, its evaluation and the
//! parent's launch record in one entry), so every server agrees on it.
//!
//! Time is the leader's `now`, unix milliseconds; cron times are whole unix seconds. The
//! rules, after Nomad's `nomad/periodic.go` and `restorePeriodicDispatcher`:
//! - a child is `<parent>/periodic-<launch unix seconds>` with `ParentID` = the parent;
//! - the next launch is the first cron time after both `now` and the parent's recorded
//!   last launch: a leader whose clock is behind the one that launched last (a failover
//!   to a slower clock, a clock stepped back) never launches a time again, and the state
//!   refuses a scheduled launch not after the record even if one were proposed;
//! - when a leader takes over and a launch fell between the record and `now` (missed
//!   during the transition), it launches once at `now`, not once per missed time;
//!   a leader that wakes up late (a slow node) does the same: the earliest due time is
//!   launched and the other missed ones are skipped (Nomad launches each in turn);
//! - `prohibit_overlap` skips a launch while a child still has a live evaluation or
//!   allocation;
//! - a disabled, stopped or deregistered parent is dropped at the next state change.

use super::leader::LeaderService;
use crate::id::IdGen;
use crate::model::cron::{CronSchedule, next_of};
use crate::model::{Evaluation, Job, PeriodicConfig, TriggeredBy};
use crate::state::{Command, JobKey, State};
use crate::time::Millis;
use std::collections::BTreeMap;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The ID of the child launched at `launch_secs`, as Nomad names it.
pub fn child_job_id(parent_id: &str, launch_secs: i64) -> String {
    format!("{parent_id}/periodic-{launch_secs}")
}

/// The command that launches `parent` at `launch_secs`: a copy of the parent that is no
/// longer periodic, under the child's ID, with a `periodic-job` evaluation.
pub fn launch_command(
    parent: &Job,
    launch_secs: i64,
    eval_id: String,
    now_ns: i64,
    forced: bool,
) -> Command {
    let id = child_job_id(&parent.id, launch_secs);
    let child = Job {
        id: id.clone(),
        name: id,
        parent_id: parent.id.clone(),
        periodic: None,
        status: String::new(),
        status_description: String::new(),
        stable: false,
        version: 0,
        create_index: 0,
        modify_index: 0,
        job_modify_index: 0,
        ..parent.clone()
    };
    let eval = Evaluation::for_job(eval_id, &child, TriggeredBy::PeriodicJob, now_ns);
    Command::PeriodicLaunch {
        child,
        eval,
        launch_ns: launch_secs.saturating_mul(NANOS_PER_SEC),
        forced,
    }
}

fn unix_secs(now: Millis) -> i64 {
    (now.as_u64() / 1000) as i64
}

#[derive(Clone, Debug)]
struct Tracked {
    config: PeriodicConfig,
    schedules: Vec<CronSchedule>,
    /// The next launch, unix seconds; `None` when the schedule names no later time.
    next_secs: Option<i64>,
}

/// The dispatcher. See the module documentation.
pub struct PeriodicDispatcher {
    /// Evaluation IDs for launches; seeded, so a run replays.
    ids: IdGen,
    leading: bool,
    /// The jobs table index the tracked set was built from.
    synced_jobs_index: Option<u64>,
    tracked: BTreeMap<JobKey, Tracked>,
}

impl PeriodicDispatcher {
    pub fn new(seed: u64) -> PeriodicDispatcher {
        PeriodicDispatcher {
            ids: IdGen::new(seed),
            leading: false,
            synced_jobs_index: None,
            tracked: BTreeMap::new(),
        }
    }

    /// Follows the jobs table: tracks every active periodic job, keeps the deadline of
    /// an unchanged one, computes it for a new or changed one. On `restore` (a new
    /// leader) a launch missed since the record is due at once.
    fn sync(&mut self, now: Millis, state: &State, restore: bool) {
        let jobs_index = state.table_indexes().jobs;
        if self.synced_jobs_index == Some(jobs_index) {
            return;
        }
        self.synced_jobs_index = Some(jobs_index);
        let now_secs = unix_secs(now);
        let mut tracked = BTreeMap::new();
        for job in state.jobs().filter(|j| j.is_periodic_active()) {
            let key = JobKey::of_job(job);
            let config = job.periodic.clone().expect("active periodic jobs have a block");
            if let Some(kept) = self.tracked.remove(&key).filter(|t| t.config == config) {
                tracked.insert(key, kept);
                continue;
            }
            let schedules = job.periodic_schedules();
            let record_secs = state.periodic_launch(&job.namespace, &job.id).map(|ns| {
                // A record's second: launches are whole seconds, registrations are not.
                ns.div_euclid(NANOS_PER_SEC)
            });
            let mut next_secs = next_of(&schedules, now_secs.max(record_secs.unwrap_or(now_secs)));
            if restore
                && let Some(record) = record_secs
                && next_of(&schedules, record).is_some_and(|missed| missed < now_secs)
            {
                next_secs = Some(now_secs);
            }
            tracked.insert(key, Tracked { config, schedules, next_secs });
        }
        self.tracked = tracked;
    }
}

impl LeaderService for PeriodicDispatcher {
    fn establish(&mut self, now: Millis, state: &State) {
        self.leading = true;
        self.tracked.clear();
        self.synced_jobs_index = None;
        self.sync(now, state, true);
    }

    fn on_applied(&mut self, now: Millis, state: &State) {
        if self.leading {
            self.sync(now, state, false);
        }
    }

    fn tick(&mut self, now: Millis, state: &State) -> Vec<Command> {
        if !self.leading {
            return Vec::new();
        }
        self.sync(now, state, false);
        let now_secs = unix_secs(now);
        let now_ns = (now.as_u64() as i64).saturating_mul(1_000_000);
        let mut commands = Vec::new();
        for (key, tracked) in &mut self.tracked {
            let Some(launch_secs) = tracked.next_secs.filter(|&n| n <= now_secs) else {
                continue;
            };
            // Whatever becomes of this launch, the next one comes after it and after now.
            tracked.next_secs = next_of(&tracked.schedules, launch_secs.max(now_secs));
            let Some(job) = state.job(&key.namespace, &key.id) else { continue };
            if tracked.config.prohibit_overlap && state.periodic_child_running(job) {
                continue;
            }
            if state.job(&key.namespace, &child_job_id(&key.id, launch_secs)).is_some() {
                continue;
            }
            commands.push(launch_command(job, launch_secs, self.ids.next_id(), now_ns, false));
        }
        commands
    }

    fn poll_timeout(&self) -> Option<Millis> {
        if !self.leading {
            return None;
        }
        let next = self.tracked.values().filter_map(|t| t.next_secs).min()?;
        Some(Millis(next.max(0) as u64 * 1000))
    }

    fn revoke(&mut self) {
        self.leading = false;
        self.tracked.clear();
        self.synced_jobs_index = None;
    }
}
