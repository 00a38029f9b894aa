//! One task of one allocation: its attempts, its restart policy, its state and events.
//!
//! A task runner moves through phases: waiting for its lifecycle gate, starting, running,
//! killing, waiting to restart, dead. It asks for a start only from waiting or
//! restart-wait, so one attempt ends (exit or failed start) before the next begins: a
//! task never runs twice at once. Each phase change appends Nomad's task event and keeps
//! the reported [`TaskState`] in step.

use super::driver::{DriverCommand, TaskExit, TaskRef};
use super::output::{ClientEvent, Ctx, nanos};
use super::restart::{AttemptEnd, REASON_WITHIN_POLICY, RestartRules, RestartTracker, Verdict};
use crate::model::{
    Allocation, DurationNs, JobType, RestartPolicy, Task, TaskEvent, TaskState, TaskStateKind,
    Timestamp, task_event,
};
use crate::time::Millis;
use std::sync::Arc;

/// Nomad's default kill signal.
const KILL_SIGNAL_DEFAULT: &str = "SIGINT";

/// When a task runs relative to the group's main tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    Prestart,
    Main,
    Poststart,
    Poststop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Never started: its lifecycle gate is still closed.
    Waiting,
    /// A start was asked for; `kill_pending` if a kill came before the driver answered.
    Starting {
        kill_pending: bool,
    },
    Running {
        handle: String,
    },
    /// Stop sent; the forced kill follows at `force_at` unless the task exits first.
    Killing {
        handle: String,
        force_at: Option<Millis>,
    },
    RestartWait {
        until: Millis,
    },
    Dead,
}

#[derive(Debug)]
pub(crate) struct TaskRunner {
    pub task_ref: TaskRef,
    spec: Task,
    pub hook: Hook,
    pub sidecar: bool,
    pub leader: bool,
    pub state: TaskState,
    phase: Phase,
    attempt: u32,
    ever_started: bool,
    restart: RestartTracker,
    /// An operator asked for a restart: when the attempt being stopped exits, the next
    /// one starts at once, without counting against the restart policy.
    restart_requested: bool,
}

impl TaskRunner {
    /// A runner for `spec`, or why the task cannot run here.
    pub fn new(
        now: Millis,
        alloc_id: &str,
        spec: &Task,
        job_type: JobType,
        group_policy: Option<&RestartPolicy>,
    ) -> Result<TaskRunner, String> {
        let (hook, sidecar) = match &spec.lifecycle {
            None => (Hook::Main, false),
            Some(lifecycle) => match lifecycle.hook.as_str() {
                "prestart" => (Hook::Prestart, lifecycle.sidecar),
                "poststart" => (Hook::Poststart, lifecycle.sidecar),
                "poststop" => (Hook::Poststop, false),
                other => {
                    return Err(format!("task {:?}: unknown lifecycle hook {other:?}", spec.name));
                }
            },
        };
        let policy = spec
            .restart_policy
            .clone()
            .or_else(|| group_policy.cloned())
            .unwrap_or_else(|| RestartPolicy::default_for(job_type));
        let rules =
            RestartRules::from_policy(&policy).map_err(|e| format!("task {:?}: {e}", spec.name))?;
        let batch = job_type.finishes();
        let restart_on_success = match hook {
            Hook::Main => !batch,
            Hook::Prestart | Hook::Poststart => sidecar,
            Hook::Poststop => false,
        };
        Ok(TaskRunner {
            task_ref: TaskRef::new(alloc_id, &spec.name),
            spec: spec.clone(),
            hook,
            sidecar,
            leader: spec.leader,
            state: TaskState::default(),
            phase: Phase::Waiting,
            attempt: 0,
            ever_started: false,
            restart: RestartTracker::new(now, rules, restart_on_success),
            restart_requested: false,
        })
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
    }

    pub fn is_waiting(&self) -> bool {
        self.phase == Phase::Waiting
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }

    pub fn ever_started(&self) -> bool {
        self.ever_started
    }

    pub fn succeeded(&self) -> bool {
        self.is_dead() && !self.state.failed
    }

    /// Whether a kill was already asked for (or is moot).
    fn kill_underway(&self) -> bool {
        matches!(
            self.phase,
            Phase::Dead | Phase::Killing { .. } | Phase::Starting { kill_pending: true }
        )
    }

    /// The next instant this runner must act at: a restart or a forced kill.
    pub fn deadline(&self) -> Option<Millis> {
        match self.phase {
            Phase::RestartWait { until } => Some(until),
            Phase::Killing { force_at, .. } => force_at,
            _ => None,
        }
    }

    pub fn received(&mut self, ctx: &mut Ctx<'_>) {
        self.emit(ctx, event(ctx.now, task_event::RECEIVED, "Task received by client"));
    }

    /// Asks the driver for the next attempt. Only from waiting or restart-wait.
    pub fn start(&mut self, ctx: &mut Ctx<'_>, alloc: &Arc<Allocation>) {
        assert!(matches!(self.phase, Phase::Waiting | Phase::RestartWait { .. }));
        if self.attempt == 0 {
            self.emit(ctx, event(ctx.now, task_event::TASK_SETUP, "Building Task Directory"));
        }
        self.attempt += 1;
        self.phase = Phase::Starting { kill_pending: false };
        ctx.out.driver.push_back(DriverCommand::Start {
            task: self.task_ref.clone(),
            attempt: self.attempt,
            spec: Box::new(self.spec.clone()),
            alloc: Arc::clone(alloc),
        });
    }

    /// Fires a due restart or forced kill.
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>, alloc: &Arc<Allocation>) {
        match &mut self.phase {
            Phase::RestartWait { until } if *until <= ctx.now => self.start(ctx, alloc),
            Phase::Killing { handle, force_at } if force_at.is_some_and(|at| at <= ctx.now) => {
                *force_at = None;
                ctx.out.driver.push_back(DriverCommand::ForceKill {
                    task: self.task_ref.clone(),
                    attempt: self.attempt,
                    handle: handle.clone(),
                });
            }
            _ => {}
        }
    }

    /// The driver started the current attempt. Returns false if the event does not fit.
    pub fn on_started(&mut self, ctx: &mut Ctx<'_>, handle: String) -> bool {
        let Phase::Starting { kill_pending } = self.phase else { return false };
        self.ever_started = true;
        self.phase = Phase::Running { handle };
        self.state.state = TaskStateKind::Running;
        self.state.started_at = Timestamp::from_unix_nanos(nanos(ctx.now));
        self.emit(ctx, event(ctx.now, task_event::STARTED, "Task started by client"));
        if kill_pending {
            self.send_stop(ctx);
        }
        true
    }

    pub fn on_start_failed(&mut self, ctx: &mut Ctx<'_>, error: String, recoverable: bool) -> bool {
        let Phase::Starting { kill_pending } = self.phase else { return false };
        let mut failure = event(ctx.now, task_event::DRIVER_FAILURE, &error);
        failure.driver_error = error;
        failure.fails_task = !recoverable;
        self.emit(ctx, failure);
        if kill_pending {
            self.die(ctx, false);
        } else {
            self.after_attempt(ctx, AttemptEnd::StartError { recoverable });
        }
        true
    }

    pub fn on_exited(&mut self, ctx: &mut Ctx<'_>, exit: &TaskExit) -> bool {
        let (handle, killed) = match &self.phase {
            Phase::Running { handle } => (handle.clone(), false),
            Phase::Killing { handle, .. } => (handle.clone(), true),
            Phase::Starting { kill_pending } => (String::new(), *kill_pending),
            _ => return false,
        };
        ctx.out.driver.push_back(DriverCommand::Destroy {
            task: self.task_ref.clone(),
            attempt: self.attempt,
            handle,
        });
        if killed && std::mem::take(&mut self.restart_requested) {
            self.emit(ctx, terminated(ctx.now, exit));
            self.restart_now(ctx);
            return true;
        }
        if killed {
            self.emit(ctx, event(ctx.now, task_event::KILLED, "Task successfully killed"));
            self.die(ctx, false);
            return true;
        }
        self.emit(ctx, terminated(ctx.now, exit));
        let end = if exit.successful() { AttemptEnd::Success } else { AttemptEnd::Failure };
        self.after_attempt(ctx, end);
        true
    }

    /// An operator's restart (Nomad's `alloc restart`): a "Restart Signaled" event with
    /// `reason`, the running attempt stopped as a kill stops it, and the next attempt
    /// started as soon as it exited. Only a running task restarts.
    pub fn request_restart(&mut self, ctx: &mut Ctx<'_>, reason: &str) -> Result<(), String> {
        if !self.is_running() {
            return Err("Task not running".into());
        }
        self.restart_requested = true;
        self.emit(ctx, event(ctx.now, task_event::RESTART_SIGNAL, reason));
        self.send_stop(ctx);
        Ok(())
    }

    /// An operator's signal (Nomad's `alloc signal`): a "Signaling" event and the signal
    /// sent to the running attempt, which carries on. Only a running task is signalled.
    pub fn signal(&mut self, ctx: &mut Ctx<'_>, signal: &str) -> Result<(), String> {
        let Phase::Running { handle } = &self.phase else {
            return Err("Task not running".into());
        };
        let command = DriverCommand::Signal {
            task: self.task_ref.clone(),
            attempt: self.attempt,
            handle: handle.clone(),
            signal: signal.to_owned(),
        };
        let mut signaling =
            event(ctx.now, task_event::SIGNALING, &format!("Task being sent signal {signal}"));
        signaling.task_signal = signal.to_owned();
        self.emit(ctx, signaling);
        ctx.out.driver.push_back(command);
        Ok(())
    }

    /// The next attempt at once, as Nomad's restart tracker answers a triggered restart:
    /// no delay and no policy attempt used, though the task state counts the restart.
    fn restart_now(&mut self, ctx: &mut Ctx<'_>) {
        let mut restarting = event(ctx.now, task_event::RESTARTING, "Task restarting in 0s");
        restarting.start_delay = 0;
        self.emit(ctx, restarting);
        self.state.state = TaskStateKind::Pending;
        self.phase = Phase::RestartWait { until: ctx.now };
    }

    /// Stops the task for `reason` (an event naming why, if not the servers' stop).
    /// Returns false when a kill was already underway or the task is dead. A kill
    /// overrides a requested restart: the task stays dead.
    pub fn kill(&mut self, ctx: &mut Ctx<'_>, reason: Option<TaskEvent>) -> bool {
        self.restart_requested = false;
        if self.kill_underway() {
            return false;
        }
        if let Some(reason) = reason {
            self.emit(ctx, reason);
        }
        match &mut self.phase {
            Phase::Starting { kill_pending } => *kill_pending = true,
            Phase::Running { .. } => self.send_stop(ctx),
            Phase::Waiting | Phase::RestartWait { .. } => {
                self.emit(ctx, event(ctx.now, task_event::KILLED, "Task successfully killed"));
                self.die(ctx, false);
            }
            Phase::Killing { .. } | Phase::Dead => {}
        }
        true
    }

    fn send_stop(&mut self, ctx: &mut Ctx<'_>) {
        let Phase::Running { handle } = &self.phase else { return };
        let handle = handle.clone();
        let kill_timeout_ms = self.spec.kill_timeout.as_millis().min(ctx.kill_timeout_max_ms);
        let kill_timeout = DurationNs(nanos(Millis(kill_timeout_ms)));
        let mut killing = event(
            ctx.now,
            task_event::KILLING,
            &format!("Sent interrupt. Waiting {kill_timeout} before force killing"),
        );
        killing.kill_timeout = kill_timeout;
        self.emit(ctx, killing);
        let signal = if self.spec.kill_signal.is_empty() {
            KILL_SIGNAL_DEFAULT.to_owned()
        } else {
            self.spec.kill_signal.clone()
        };
        ctx.out.driver.push_back(DriverCommand::Stop {
            task: self.task_ref.clone(),
            attempt: self.attempt,
            handle: handle.clone(),
            signal,
            kill_timeout_ms,
        });
        self.phase = Phase::Killing { handle, force_at: Some(ctx.now + Millis(kill_timeout_ms)) };
    }

    fn after_attempt(&mut self, ctx: &mut Ctx<'_>, end: AttemptEnd) {
        match self.restart.decide(ctx.now, end, ctx.rng) {
            Verdict::Restart { delay_ms, reason } => {
                let delay = DurationNs(nanos(Millis(delay_ms)));
                let mut display = format!("Task restarting in {delay}");
                if reason != REASON_WITHIN_POLICY {
                    display = format!("{reason} - {display}");
                }
                let mut restarting = event(ctx.now, task_event::RESTARTING, &display);
                restarting.restart_reason = reason.to_owned();
                restarting.start_delay = delay.0;
                self.emit(ctx, restarting);
                self.state.state = TaskStateKind::Pending;
                self.phase = Phase::RestartWait { until: ctx.now + Millis(delay_ms) };
            }
            Verdict::Stop { failed: true, reason } => {
                let mut not_restarting = event(ctx.now, task_event::NOT_RESTARTING, &reason);
                not_restarting.restart_reason = reason;
                not_restarting.fails_task = true;
                self.emit(ctx, not_restarting);
                self.die(ctx, true);
            }
            Verdict::Stop { failed: false, .. } => self.die(ctx, false),
        }
    }

    fn die(&mut self, ctx: &mut Ctx<'_>, failed: bool) {
        self.phase = Phase::Dead;
        self.state.state = TaskStateKind::Dead;
        self.state.failed |= failed;
        self.state.finished_at = Timestamp::from_unix_nanos(nanos(ctx.now));
    }

    /// Appends an event to the task state (keeping the newest `task_events_max`) and
    /// reports it.
    fn emit(&mut self, ctx: &mut Ctx<'_>, event: TaskEvent) {
        if event.event_type == task_event::RESTARTING {
            self.state.restarts += 1;
            self.state.last_restart = Timestamp::from_unix_nanos(event.time);
        }
        if event.fails_task {
            self.state.failed = true;
        }
        let task = self.task_ref.clone();
        ctx.out.event(ClientEvent::Task { task, event: Box::new(event.clone()) });
        self.state.events.push(event);
        let excess = self.state.events.len().saturating_sub(ctx.task_events_max);
        self.state.events.drain(..excess);
    }
}

/// A task event of `event_type` at `now`, with the text `alloc status` shows.
pub(crate) fn event(now: Millis, event_type: &str, display: &str) -> TaskEvent {
    TaskEvent {
        event_type: event_type.to_owned(),
        time: nanos(now),
        display_message: display.to_owned(),
        ..TaskEvent::default()
    }
}

fn terminated(now: Millis, exit: &TaskExit) -> TaskEvent {
    let mut display = format!("Exit Code: {}", exit.exit_code);
    if exit.signal != 0 {
        display.push_str(&format!(", Signal: {}", exit.signal));
    }
    if let Some(error) = &exit.error {
        display.push_str(&format!(", Exit Message: {error:?}"));
    }
    let mut terminated = event(now, task_event::TERMINATED, &display);
    terminated.exit_code = exit.exit_code;
    terminated.signal = exit.signal;
    terminated.message = exit.error.clone().unwrap_or_default();
    terminated
}
