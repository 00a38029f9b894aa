//! The client's driver set over raw_exec. A start runs on a blocking thread of its own
//! (an executor takes milliseconds to report its task running, and a node loop that
//! waited for each in turn would start a hundred tasks one after another), which then
//! waits for the task's exit; both come back to the loop as [`DriverEvent`]s through its
//! input channel, the start always before the exit. The client machine asks nothing of
//! an attempt until it heard the attempt started, so no stop can overtake its start.
//! A task an earlier agent process started is reattached if it still runs, and reported
//! exited (with its recorded exit, or as lost) if it ended while no agent ran.

use super::Input;
use crate::driver::alloc_dir::AllocDir;
use crate::driver::executor::{ExecutorSpec, ExitResult, Running};
use crate::driver::raw_exec::{
    DriverError, RawExec, Recovered, StartTask, TaskHandle, signal_by_name, signal_running,
};
use crate::host::DriverSet;
use drover_core::client::{DriverCommand, DriverEvent, TaskExit, TaskRef};
use drover_core::model::{Allocation, FreeValue, Node, Task};
use drover_core::taskenv::{TaskEnvInput, interpolate_config, task_env};
use rustix::process::Signal;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long one wait for a task's exit lasts before the waiting thread looks again.
const EXIT_WAIT_SLICE_MS: u64 = 60_000;

/// What the loop and the tasks' threads share.
#[derive(Debug, Default)]
struct Tasks {
    /// The tasks running now, by task, with their attempt and pids: what a stop signals.
    running: BTreeMap<TaskRef, (u32, Running)>,
    /// Starts handed to a thread and not answered yet.
    starting: usize,
    /// Set by the agent's shutdown: a task whose start completes afterwards is sent it at
    /// once, so a shutdown never leaves a task behind that was starting meanwhile.
    stop_signal: Option<Signal>,
}

type SharedTasks = Arc<Mutex<Tasks>>;

/// raw_exec for one client node.
pub struct RawExecDrivers {
    driver: Arc<RawExec>,
    alloc_root: PathBuf,
    node: Node,
    region: String,
    events: VecDeque<DriverEvent>,
    tasks: SharedTasks,
    /// The tasks this agent process asked to start (until their status is destroyed):
    /// only a task's first start here looks for what an earlier process left.
    started_here: BTreeSet<TaskRef>,
    inputs: mpsc::Sender<Input>,
}

impl RawExecDrivers {
    pub fn new(
        driver: RawExec,
        alloc_root: PathBuf,
        node: Node,
        region: String,
        inputs: mpsc::Sender<Input>,
    ) -> RawExecDrivers {
        RawExecDrivers {
            driver: Arc::new(driver),
            alloc_root,
            node,
            region,
            events: VecDeque::new(),
            tasks: SharedTasks::default(),
            started_here: BTreeSet::new(),
            inputs,
        }
    }

    /// How many tasks still run or are being started.
    pub fn running_count(&self) -> usize {
        let tasks = lock(&self.tasks);
        tasks.running.len() + tasks.starting
    }

    /// Signals every running task, and every task whose start completes from now on (the
    /// agent's shutdown).
    pub fn signal_all(&self, signal: Signal) {
        let mut tasks = lock(&self.tasks);
        tasks.stop_signal = Some(signal);
        for (_, running) in tasks.running.values() {
            let _gone = signal_running(running, signal);
        }
    }

    fn start(&mut self, task: TaskRef, attempt: u32, spec: &Task, alloc: &Allocation) {
        // The first start of a task in this agent process may find what an earlier
        // process started (the client machine learnt its allocation again from the
        // servers after a restart): a task still running is reattached, never started
        // twice; one that ended while no agent ran is reported started and then exited,
        // so the restart policy decides what follows, as it would have had the agent
        // been up. The client never asks to start an attempt while an earlier one of this
        // process may run, and each attempt's status is destroyed once it exited.
        let first_here = self.started_here.insert(task.clone());
        let start = match self.executor_spec(&task, spec, alloc) {
            Ok(start) => start,
            Err(StartError { message, recoverable }) => {
                let failed =
                    DriverEvent::StartFailed { task, attempt, error: message, recoverable };
                return self.events.push_back(failed);
            }
        };
        lock(&self.tasks).starting += 1;
        let attempt = TaskAttempt {
            driver: Arc::clone(&self.driver),
            tasks: Arc::clone(&self.tasks),
            inputs: self.inputs.clone(),
            task,
            attempt,
        };
        tokio::task::spawn_blocking(move || attempt.run(first_here, &start));
    }

    /// What the executor runs for `spec`, its allocation directory built.
    fn executor_spec(
        &self,
        task: &TaskRef,
        spec: &Task,
        alloc: &Allocation,
    ) -> Result<StartTask, StartError> {
        if spec.driver != "raw_exec" {
            return Err(StartError::fatal(format!("driver {:?} is not available", spec.driver)));
        }
        let job = alloc
            .job
            .as_deref()
            .ok_or_else(|| StartError::fatal("the allocation carries no job".into()))?;
        let alloc_dir = AllocDir::new(&self.alloc_root, &alloc.id);
        alloc_dir.build([spec.name.as_str()]).map_err(|e| StartError::retry(e.to_string()))?;
        let dirs = alloc_dir.task_dirs(&spec.name);
        let input = TaskEnvInput {
            alloc,
            job,
            task: spec,
            node: &self.node,
            region: &self.region,
            dirs: &dirs,
        };
        let task_vars = task_env(&input);
        let config = interpolate_config(&spec.config, &task_vars, &self.node);
        let (command, args) = command_line(&config).map_err(StartError::fatal)?;
        // raw_exec tasks see the agent's environment under Nomad's variables.
        let mut env: BTreeMap<String, String> = std::env::vars().collect();
        env.extend(task_vars);
        let log = &spec.log_config;
        let spec = ExecutorSpec {
            command,
            args,
            env,
            cwd: alloc_dir.task_root(&spec.name),
            logs_dir: alloc_dir.logs_dir(),
            task_name: spec.name.clone(),
            log_files_max: log.max_files.max(1) as u32,
            log_file_size_max_bytes: log.max_file_size_mb.max(1) as u64 * 1024 * 1024,
        };
        Ok(StartTask { alloc_id: task.alloc_id.clone(), spec })
    }

    fn signal(&self, task: &TaskRef, attempt: u32, signal: Signal) {
        let tasks = lock(&self.tasks);
        let running = tasks.running.get(task).filter(|(a, _)| *a == attempt).map(|r| r.1);
        drop(tasks);
        if let Some(running) = running {
            let _gone = signal_running(&running, signal);
        }
    }
}

/// One attempt of a task on its blocking thread: started (or reattached, or found ended),
/// then waited for.
struct TaskAttempt {
    driver: Arc<RawExec>,
    tasks: SharedTasks,
    inputs: mpsc::Sender<Input>,
    task: TaskRef,
    attempt: u32,
}

impl TaskAttempt {
    fn run(self, first_here: bool, start: &StartTask) {
        let found = if first_here {
            self.driver.recover(&self.task.alloc_id, &self.task.task).ok()
        } else {
            None
        };
        let started = match found {
            Some(Recovered::Running(handle)) => Ok(handle),
            Some(Recovered::Exited(exit)) => return self.ended_while_away(exit),
            Some(Recovered::Lost) => return self.ended_while_away(lost_exit()),
            Some(Recovered::Unknown) | None => self.driver.start(start).map_err(StartError::from),
        };
        match started {
            Ok(handle) => {
                self.answered(Some(handle.running));
                let status_dir = handle.status_dir.display().to_string();
                self.report(DriverEvent::Started {
                    task: self.task.clone(),
                    attempt: self.attempt,
                    handle: status_dir,
                });
                let exit = self.await_exit(handle);
                let mut tasks = lock(&self.tasks);
                if tasks
                    .running
                    .get(&self.task)
                    .is_some_and(|(current, _)| *current == self.attempt)
                {
                    tasks.running.remove(&self.task);
                }
                drop(tasks);
                self.report(DriverEvent::Exited {
                    task: self.task.clone(),
                    attempt: self.attempt,
                    exit,
                });
            }
            Err(StartError { message, recoverable }) => {
                self.answered(None);
                self.report(DriverEvent::StartFailed {
                    task: self.task.clone(),
                    attempt: self.attempt,
                    error: message,
                    recoverable,
                });
            }
        }
    }

    /// The start is answered: the task runs (with these pids) or never will.
    fn answered(&self, running: Option<Running>) {
        let mut tasks = lock(&self.tasks);
        tasks.starting -= 1;
        if let Some(running) = running {
            if let Some(signal) = tasks.stop_signal {
                let _gone = signal_running(&running, signal);
            }
            tasks.running.insert(self.task.clone(), (self.attempt, running));
        }
    }

    /// Reports a task that ended while no agent ran: started, then exited as recorded.
    fn ended_while_away(self, exit: ExitResult) {
        self.answered(None);
        let handle = self.driver.status_dir(&self.task.alloc_id, &self.task.task);
        let (task, attempt) = (self.task.clone(), self.attempt);
        let handle = handle.display().to_string();
        self.report(DriverEvent::Started { task: task.clone(), attempt, handle });
        self.report(DriverEvent::Exited { task, attempt, exit: task_exit(exit) });
    }

    fn await_exit(&self, mut handle: TaskHandle) -> TaskExit {
        let slice = Duration::from_millis(EXIT_WAIT_SLICE_MS);
        loop {
            match self.driver.wait(&mut handle, slice) {
                Ok(Some(exit)) => return task_exit(exit),
                Ok(None) => continue,
                Err(error) => {
                    return TaskExit { exit_code: -1, signal: 0, error: Some(error.to_string()) };
                }
            }
        }
    }

    fn report(&self, event: DriverEvent) {
        // A loop that is gone has no client left to tell.
        let _sent = self.inputs.blocking_send(Input::Driver(event));
    }
}

fn task_exit(exit: ExitResult) -> TaskExit {
    let error = (!exit.error.is_empty()).then_some(exit.error);
    TaskExit { exit_code: exit.exit_code, signal: exit.signal, error }
}

impl DriverSet for RawExecDrivers {
    fn execute(&mut self, command: DriverCommand) {
        match command {
            DriverCommand::Start { task, attempt, spec, alloc } => {
                self.start(task, attempt, &spec, &alloc)
            }
            DriverCommand::Stop { task, attempt, signal, .. } => {
                // The client sends ForceKill itself once the kill timeout passed.
                let signal = signal_by_name(&signal).unwrap_or(Signal::TERM);
                self.signal(&task, attempt, signal);
            }
            DriverCommand::Signal { task, attempt, signal, .. } => {
                // The API refused names this driver cannot send before they got here.
                if let Some(signal) = signal_by_name(&signal) {
                    self.signal(&task, attempt, signal);
                }
            }
            DriverCommand::ForceKill { task, attempt, .. } => {
                self.signal(&task, attempt, Signal::KILL)
            }
            DriverCommand::Destroy { task, .. } => {
                // Status only; the allocation directory (and its logs) stays until exit.
                let _forgotten = self.driver.destroy(&task.alloc_id, &task.task);
                self.started_here.remove(&task);
            }
        }
    }

    fn poll_event(&mut self) -> Option<DriverEvent> {
        self.events.pop_front()
    }
}

/// Why a start failed, and whether trying again may help.
struct StartError {
    message: String,
    recoverable: bool,
}

impl StartError {
    fn fatal(message: String) -> StartError {
        StartError { message, recoverable: false }
    }

    fn retry(message: String) -> StartError {
        StartError { message, recoverable: true }
    }
}

impl From<DriverError> for StartError {
    fn from(error: DriverError) -> StartError {
        // An executor that could not run the command will not do better next time.
        let recoverable = !matches!(error, DriverError::ExecutorFailed { .. });
        StartError { message: error.to_string(), recoverable }
    }
}

/// The exit of a task whose executor died without recording one (killed with the agent,
/// or the machine rebooted): how the task ended is unknown, and it is not running.
fn lost_exit() -> ExitResult {
    ExitResult {
        exit_code: -1,
        signal: 0,
        error: "task lost while the agent was down: its executor exited without recording the task's exit".into(),
    }
}

/// raw_exec's `command` and `args` from the interpolated driver config.
fn command_line(config: &BTreeMap<String, FreeValue>) -> Result<(String, Vec<String>), String> {
    let command = match config.get("command") {
        Some(FreeValue::String(command)) if !command.is_empty() => command.clone(),
        _ => return Err("raw_exec: config needs a \"command\" string".into()),
    };
    let args = match config.get("args") {
        None => Vec::new(),
        Some(FreeValue::List(items)) => items
            .iter()
            .map(|item| match item {
                FreeValue::String(text) => Ok(text.clone()),
                other => Err(format!("raw_exec: args must be strings, found {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("raw_exec: args must be a list, found {other:?}")),
    };
    Ok((command, args))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
