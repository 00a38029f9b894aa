//! The client's driver set over raw_exec: starts run at once on the node loop (an
//! executor reports within milliseconds), while each task's exit is awaited on a blocking
//! thread and comes back to the loop as a [`DriverEvent`] through its input channel.
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

/// The tasks running now, by task, with their attempt and pids: what a stop signals.
type RunningTasks = Arc<Mutex<BTreeMap<TaskRef, (u32, Running)>>>;

/// raw_exec for one client node.
pub struct RawExecDrivers {
    driver: Arc<RawExec>,
    alloc_root: PathBuf,
    node: Node,
    region: String,
    events: VecDeque<DriverEvent>,
    running: RunningTasks,
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
            running: RunningTasks::default(),
            started_here: BTreeSet::new(),
            inputs,
        }
    }

    /// How many tasks still run.
    pub fn running_count(&self) -> usize {
        lock(&self.running).len()
    }

    /// Signals every running task (the agent's shutdown).
    pub fn signal_all(&self, signal: Signal) {
        for (_, running) in lock(&self.running).values() {
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
        let found =
            if first_here { self.driver.recover(&task.alloc_id, &spec.name).ok() } else { None };
        let started = match found {
            Some(Recovered::Running(handle)) => Ok(handle),
            Some(Recovered::Exited(exit)) => return self.ended_while_away(task, attempt, exit),
            Some(Recovered::Lost) => return self.ended_while_away(task, attempt, lost_exit()),
            Some(Recovered::Unknown) | None => self.start_task(&task, spec, alloc),
        };
        let event = match started {
            Ok(handle) => {
                let started = DriverEvent::Started {
                    task: task.clone(),
                    attempt,
                    handle: handle.status_dir.display().to_string(),
                };
                lock(&self.running).insert(task.clone(), (attempt, handle.running));
                self.await_exit(task, attempt, handle);
                started
            }
            Err(StartError { message, recoverable }) => {
                DriverEvent::StartFailed { task, attempt, error: message, recoverable }
            }
        };
        self.events.push_back(event);
    }

    /// Reports a task that ended while no agent ran: started, then exited as recorded.
    fn ended_while_away(&mut self, task: TaskRef, attempt: u32, exit: ExitResult) {
        let handle = self.driver.status_dir(&task.alloc_id, &task.task).display().to_string();
        let error = (!exit.error.is_empty()).then_some(exit.error);
        let exit = TaskExit { exit_code: exit.exit_code, signal: exit.signal, error };
        self.events.push_back(DriverEvent::Started { task: task.clone(), attempt, handle });
        self.events.push_back(DriverEvent::Exited { task, attempt, exit });
    }

    fn start_task(
        &self,
        task: &TaskRef,
        spec: &Task,
        alloc: &Allocation,
    ) -> Result<TaskHandle, StartError> {
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
        let start = StartTask { alloc_id: task.alloc_id.clone(), spec };
        self.driver.start(&start).map_err(StartError::from)
    }

    /// Waits for the task's exit on a blocking thread and hands it to the node loop.
    fn await_exit(&self, task: TaskRef, attempt: u32, mut handle: TaskHandle) {
        let driver = Arc::clone(&self.driver);
        let running = Arc::clone(&self.running);
        let inputs = self.inputs.clone();
        tokio::task::spawn_blocking(move || {
            let slice = Duration::from_millis(EXIT_WAIT_SLICE_MS);
            let exit = loop {
                match driver.wait(&mut handle, slice) {
                    Ok(Some(exit)) => {
                        let error = (!exit.error.is_empty()).then_some(exit.error);
                        break TaskExit { exit_code: exit.exit_code, signal: exit.signal, error };
                    }
                    Ok(None) => continue,
                    Err(error) => {
                        break TaskExit {
                            exit_code: -1,
                            signal: 0,
                            error: Some(error.to_string()),
                        };
                    }
                }
            };
            let mut tasks = lock(&running);
            if tasks.get(&task).is_some_and(|(current, _)| *current == attempt) {
                tasks.remove(&task);
            }
            drop(tasks);
            // A loop that is gone has no client left to tell.
            let _sent =
                inputs.blocking_send(Input::Driver(DriverEvent::Exited { task, attempt, exit }));
        });
    }

    fn signal(&self, task: &TaskRef, attempt: u32, signal: Signal) {
        let running = lock(&self.running).get(task).filter(|(a, _)| *a == attempt).map(|r| r.1);
        if let Some(running) = running {
            let _gone = signal_running(&running, signal);
        }
    }
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
