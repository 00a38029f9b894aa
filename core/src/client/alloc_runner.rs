//! One allocation on this node: its task runners, their lifecycle order, and the client
//! status derived from their states.
//!
//! Ordering follows Nomad's lifecycle hooks: prestart tasks start first; main tasks start
//! once every prestart task that is not a sidecar has completed successfully and every
//! prestart sidecar runs; poststart tasks start once every main task has started;
//! poststop tasks start once every other task is dead. A failed task kills its live
//! siblings, a dead leader kills the rest, and when only sidecars remain they are killed
//! too. Poststop tasks are never swept by those kills: they run after them.

use super::driver::DriverEvent;
use super::health::HealthWatch;
use super::output::{ClientEvent, Ctx, nanos};
use super::task_runner::{Hook, TaskRunner, event};
use crate::model::{
    AllocClientStatus, AllocDeploymentStatus, Allocation, TaskEvent, TaskStateKind, Timestamp,
    task_event,
};
use crate::state::AllocClientUpdate;
use crate::time::Millis;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct AllocRunner {
    pub alloc: Arc<Allocation>,
    pub tasks: Vec<TaskRunner>,
    /// Why the allocation cannot run here, if it cannot.
    pub refused: Option<String>,
    /// The servers asked for a stop (or forgot the allocation).
    stopping: bool,
    pub status: AllocClientStatus,
    pub description: String,
    /// Deployment health, for allocations the client judges.
    health: Option<HealthWatch>,
    /// The sequence number of the last report built ([`AllocRunner::next_report`]).
    report_seq: u64,
}

/// How far a client's reports for an allocation it (re)starts running skip past the
/// servers' last one: the earlier run of the client may have sent reports the servers
/// have not applied yet, and each of those must stay older than the new run's.
pub const REPORT_SEQ_RUN_GAP: u64 = 1 << 32;

impl AllocRunner {
    pub fn new(ctx: &mut Ctx<'_>, alloc: Arc<Allocation>, tasks_max: usize) -> AllocRunner {
        let mut runner = AllocRunner {
            tasks: Vec::new(),
            refused: None,
            stopping: false,
            status: AllocClientStatus::Pending,
            description: String::new(),
            health: HealthWatch::for_alloc(ctx.now, &alloc),
            report_seq: alloc.client_report_seq.saturating_add(REPORT_SEQ_RUN_GAP),
            alloc,
        };
        match build_tasks(ctx.now, &runner.alloc, tasks_max) {
            Ok(tasks) => runner.tasks = tasks,
            Err(reason) => {
                let alloc_id = runner.alloc.id.clone();
                ctx.out.event(ClientEvent::AllocRefused { alloc_id, reason: reason.clone() });
                runner.refused = Some(reason);
            }
        }
        for task in &mut runner.tasks {
            task.received(ctx);
        }
        runner.coordinate(ctx);
        runner
    }

    /// A newer version of the allocation from the servers.
    pub fn update(&mut self, ctx: &mut Ctx<'_>, alloc: Arc<Allocation>) {
        let stop = alloc.server_terminal();
        // An in-place update into a new deployment is judged again for it.
        let redeployed = alloc.deployment_id != self.alloc.deployment_id;
        self.alloc = alloc;
        if stop {
            self.stop(ctx);
        } else if redeployed {
            self.health = HealthWatch::for_alloc(ctx.now, &self.alloc);
            self.judge_health(ctx);
        }
    }

    pub fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopping = true;
        self.coordinate(ctx);
    }

    /// Every task is dead (or none could run): nothing of it is left on the node.
    pub fn is_done(&self) -> bool {
        self.tasks.iter().all(TaskRunner::is_dead)
    }

    pub fn deadline(&self) -> Option<Millis> {
        let health = self.health.as_ref().and_then(HealthWatch::deadline);
        self.tasks.iter().filter_map(TaskRunner::deadline).chain(health).min()
    }

    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        for task in &mut self.tasks {
            task.on_timeout(ctx, &self.alloc);
        }
        self.coordinate(ctx);
    }

    /// Applies a driver event; false if it names no task here or a stale attempt.
    pub fn on_driver_event(&mut self, ctx: &mut Ctx<'_>, driver_event: DriverEvent) -> bool {
        let Some(task) =
            self.tasks.iter_mut().find(|t| t.task_ref.task == driver_event.task().task)
        else {
            return false;
        };
        if task.attempt() != driver_event.attempt() {
            return false;
        }
        let accepted = match driver_event {
            DriverEvent::Started { handle, .. } => task.on_started(ctx, handle),
            DriverEvent::StartFailed { error, recoverable, .. } => {
                task.on_start_failed(ctx, error, recoverable)
            }
            DriverEvent::Exited { exit, .. } => task.on_exited(ctx, &exit),
        };
        self.coordinate(ctx);
        accepted
    }

    /// An operator's restart of one task, or of every running task when `task` is
    /// `None` (Nomad's texts for each case and for a task that is not here).
    pub fn restart(&mut self, ctx: &mut Ctx<'_>, task: Option<&str>) -> Result<(), String> {
        let result = match task {
            Some(name) => match self.tasks.iter_mut().find(|t| t.task_ref.task == name) {
                Some(runner) => runner.request_restart(ctx, "User requested task to restart"),
                None => Err(format!("Could not find task runner for task: {name}")),
            },
            None => {
                let running = self.tasks.iter_mut().filter(|t| t.is_running());
                let reason = "User requested running tasks to restart";
                let restarted: Result<Vec<()>, String> =
                    running.map(|t| t.request_restart(ctx, reason)).collect();
                match restarted {
                    Ok(tasks) if tasks.is_empty() => Err("Task not running".into()),
                    other => other.map(drop),
                }
            }
        };
        self.coordinate(ctx);
        result
    }

    /// An operator's signal to one task, or to every running task when `task` is `None`
    /// (none running is no error, as in Nomad).
    pub fn signal(
        &mut self,
        ctx: &mut Ctx<'_>,
        task: Option<&str>,
        signal: &str,
    ) -> Result<(), String> {
        match task {
            Some(name) => match self.tasks.iter_mut().find(|t| t.task_ref.task == name) {
                Some(runner) => runner.signal(ctx, signal),
                None => Err("Task not found".into()),
            },
            None => self
                .tasks
                .iter_mut()
                .filter(|t| t.is_running())
                .try_for_each(|t| t.signal(ctx, signal)),
        }
    }

    /// Runs the kill sweeps and opens lifecycle gates until nothing moves, then derives
    /// the client status.
    fn coordinate(&mut self, ctx: &mut Ctx<'_>) {
        // Each pass kills or starts at least one task, and a task is started at most once
        // from waiting and killed at most once, so this ends within 2 passes per task.
        for _ in 0..=2 * self.tasks.len() {
            if !self.sweep(ctx) && !self.open_gates(ctx) {
                break;
            }
        }
        self.judge_health(ctx);
        let (status, description) = self.derive_status();
        if (status, description.as_str()) != (self.status, self.description.as_str()) {
            self.status = status;
            self.description = description.clone();
            let alloc_id = self.alloc.id.clone();
            ctx.out.event(ClientEvent::AllocStatus { alloc_id, status, description });
        }
    }

    fn judge_health(&mut self, ctx: &mut Ctx<'_>) {
        let Some(health) = self.health.as_mut() else { return };
        if let Some(healthy) = health.observe(ctx.now, &self.tasks) {
            let alloc_id = self.alloc.id.clone();
            ctx.out.event(ClientEvent::AllocHealth { alloc_id, healthy });
        }
    }

    /// Why the live tasks (poststop excepted) must die now, if they must: the event each
    /// of them records (none for the servers' stop).
    fn kill_cause(&self, now: Millis) -> Option<Option<TaskEvent>> {
        if self.stopping {
            return Some(None);
        }
        let mut others = self.tasks.iter().filter(|t| t.hook != Hook::Poststop);
        if let Some(failed) = others.clone().find(|t| t.is_dead() && t.state.failed) {
            let mut sibling = event(
                now,
                task_event::SIBLING_FAILED,
                &format!("Task's sibling {:?} failed", failed.task_ref.task),
            );
            sibling.failed_sibling = failed.task_ref.task.clone();
            return Some(Some(sibling));
        }
        if others.clone().any(|t| t.leader && t.is_dead()) {
            return Some(Some(event(now, task_event::LEADER_DEAD, "Leader Task in Group dead")));
        }
        let mut live = others.clone().filter(|t| !t.is_dead()).peekable();
        let only_sidecars_live = live.peek().is_some() && live.all(|t| t.sidecar);
        if only_sidecars_live && others.any(|t| !t.sidecar) {
            return Some(Some(event(now, task_event::MAIN_DEAD, "Main tasks in the group died")));
        }
        None
    }

    fn sweep(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some(reason) = self.kill_cause(ctx.now) else { return false };
        let mut moved = false;
        for task in self.tasks.iter_mut().filter(|t| t.hook != Hook::Poststop) {
            moved |= task.kill(ctx, reason.clone());
        }
        moved
    }

    fn open_gates(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let main_open = self
            .tasks
            .iter()
            .filter(|t| t.hook == Hook::Prestart)
            .all(|t| if t.sidecar { t.is_running() } else { t.succeeded() });
        let poststart_open = main_open
            && self.tasks.iter().filter(|t| t.hook == Hook::Main).all(|t| t.ever_started());
        let poststop_open =
            self.tasks.iter().filter(|t| t.hook != Hook::Poststop).all(TaskRunner::is_dead);
        let mut moved = false;
        for task in self.tasks.iter_mut().filter(|t| t.is_waiting()) {
            let open = match task.hook {
                Hook::Prestart => true,
                Hook::Main => main_open,
                Hook::Poststart => poststart_open,
                Hook::Poststop => poststop_open,
            };
            if open {
                task.start(ctx, &self.alloc);
                moved = true;
            }
        }
        moved
    }

    /// Nomad's rule: any failed task fails the allocation; otherwise any running task
    /// makes it running, any pending one pending, and all dead makes it complete.
    fn derive_status(&self) -> (AllocClientStatus, String) {
        if let Some(reason) = &self.refused {
            return (AllocClientStatus::Failed, reason.clone());
        }
        let states = || self.tasks.iter().map(|t| &t.state);
        if states().any(|s| s.state == TaskStateKind::Dead && s.failed) {
            (AllocClientStatus::Failed, "Failed tasks".into())
        } else if states().any(|s| s.state == TaskStateKind::Running) {
            (AllocClientStatus::Running, "Tasks are running".into())
        } else if states().any(|s| s.state == TaskStateKind::Pending) {
            (AllocClientStatus::Pending, "No tasks have started".into())
        } else {
            (AllocClientStatus::Complete, "All tasks have completed".into())
        }
    }

    /// The allocation's status as the servers should record it.
    /// The report to send now, under the next sequence number.
    pub fn next_report(&mut self) -> AllocClientUpdate {
        self.report_seq = self.report_seq.saturating_add(1);
        self.report()
    }

    /// What the client would report now, under the last sequence number sent.
    pub fn report(&self) -> AllocClientUpdate {
        AllocClientUpdate {
            alloc_id: self.alloc.id.clone(),
            client_status: self.status,
            client_description: self.description.clone(),
            task_states: self
                .tasks
                .iter()
                .map(|t| (t.task_ref.task.clone(), t.state.clone()))
                .collect(),
            deployment_status: self.deployment_status(),
            deployment_id: self.alloc.deployment_id.clone(),
            report_seq: self.report_seq,
        }
    }

    /// The health verdict once reached, keeping the servers' canary flag.
    fn deployment_status(&self) -> Option<AllocDeploymentStatus> {
        let (healthy, at) = self.health.as_ref()?.verdict?;
        Some(AllocDeploymentStatus {
            healthy: Some(healthy),
            timestamp: Timestamp::from_unix_nanos(nanos(at)),
            canary: self.alloc.is_canary(),
            modify_index: 0,
        })
    }
}

/// The allocation's task runners, in the group's order, or why it cannot run here.
fn build_tasks(
    now: Millis,
    alloc: &Allocation,
    tasks_max: usize,
) -> Result<Vec<TaskRunner>, String> {
    let job = alloc.job.as_ref().ok_or("the allocation carries no job")?;
    let group = alloc
        .group()
        .ok_or_else(|| format!("job {:?} has no task group {:?}", job.id, alloc.task_group))?;
    if group.tasks.is_empty() {
        return Err(format!("task group {:?} has no tasks", group.name));
    }
    if group.tasks.len() > tasks_max {
        return Err(format!(
            "task group {:?} has {} tasks, more than this client runs in one allocation ({tasks_max})",
            group.name,
            group.tasks.len()
        ));
    }
    let mut names = BTreeSet::new();
    let mut tasks = Vec::with_capacity(group.tasks.len());
    for spec in &group.tasks {
        if !names.insert(spec.name.as_str()) {
            return Err(format!("task group {:?} names task {:?} twice", group.name, spec.name));
        }
        let policy = group.restart_policy.as_ref();
        tasks.push(TaskRunner::new(now, &alloc.id, spec, job.job_type, policy)?);
    }
    Ok(tasks)
}
