//! The raw_exec driver: runs a command as the agent's user, without isolation.
//!
//! Each task runs under an executor ([`super::executor`]) in its own session, so tasks
//! survive an agent restart and are reattached, never started twice: `start` refuses a
//! task whose executor is alive, and `recover` tells a restarted agent whether each task
//! still runs, ended while it was away (with its exit), or was lost. Stopping sends the
//! task's kill signal (SIGTERM unless the job says otherwise) to its process group, waits
//! `kill_timeout`, then sends SIGKILL.

use super::executor::{
    self, EXIT_FILE, ExecutorSpec, ExitResult, RUNNING_FILE, Running, SPEC_FILE,
};
use rustix::process::{Pid, Signal};
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long an executor may take to report its task started (or failed to).
pub const START_TIMEOUT_MS: u64 = 10_000;
/// How long to wait for a task to die after SIGKILL before calling it lost.
pub const KILL_WAIT_MS: u64 = 5_000;
/// How often the status files are looked at while waiting.
pub const POLL_INTERVAL_MS: u64 = 5;

/// Where executors come from and where their status lives.
#[derive(Clone, Debug)]
pub struct RawExecConfig {
    /// The executor command line, before the status directory argument (the agent's own
    /// binary with `executor`).
    pub executor: Vec<String>,
    /// `<state_root>/<alloc_id>/<task>/` holds each task's status files.
    pub state_root: PathBuf,
}

/// A task to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartTask {
    pub alloc_id: String,
    pub spec: ExecutorSpec,
}

/// A running task.
#[derive(Debug)]
pub struct TaskHandle {
    pub status_dir: PathBuf,
    pub running: Running,
    /// The executor, when this agent started it (so it can be reaped when it exits).
    executor: Option<Child>,
}

/// What a restarted agent finds of a task.
#[derive(Debug)]
pub enum Recovered {
    Running(TaskHandle),
    Exited(ExitResult),
    /// Its executor is gone without recording an exit (the machine rebooted, or it was
    /// killed): the task's fate is unknown and it is not running under drover.
    Lost,
    /// This agent never started it.
    Unknown,
}

#[derive(Debug)]
pub enum DriverError {
    AlreadyRunning {
        status_dir: PathBuf,
    },
    StartTimeout {
        status_dir: PathBuf,
    },
    /// The executor itself failed; its log is `executor.log` in the status directory.
    ExecutorFailed {
        status_dir: PathBuf,
        detail: String,
    },
    Io(io::Error),
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverError::AlreadyRunning { status_dir } => {
                write!(f, "task is already running (status in {})", status_dir.display())
            }
            DriverError::StartTimeout { status_dir } => write!(
                f,
                "executor did not report within {START_TIMEOUT_MS} ms (see {})",
                status_dir.join("executor.log").display()
            ),
            DriverError::ExecutorFailed { status_dir, detail } => write!(
                f,
                "executor failed: {detail} (see {})",
                status_dir.join("executor.log").display()
            ),
            DriverError::Io(error) => write!(f, "raw_exec: {error}"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<io::Error> for DriverError {
    fn from(error: io::Error) -> DriverError {
        DriverError::Io(error)
    }
}

/// The driver. It keeps no state of its own: everything is in the status directories.
pub struct RawExec {
    config: RawExecConfig,
}

impl RawExec {
    pub fn new(config: RawExecConfig) -> RawExec {
        RawExec { config }
    }

    /// Where a task's status files live (its handle).
    pub fn status_dir(&self, alloc_id: &str, task: &str) -> PathBuf {
        self.config.state_root.join(alloc_id).join(task)
    }

    /// Starts the task under a new executor and returns once it runs.
    pub fn start(&self, task: &StartTask) -> Result<TaskHandle, DriverError> {
        let status_dir = self.status_dir(&task.alloc_id, &task.spec.task_name);
        if let Recovered::Running(_) = self.recover(&task.alloc_id, &task.spec.task_name)? {
            return Err(DriverError::AlreadyRunning { status_dir });
        }
        fs::create_dir_all(&status_dir)?;
        for stale in [RUNNING_FILE, EXIT_FILE] {
            remove_if_present(&status_dir.join(stale))?;
        }
        executor::write_status(&status_dir, SPEC_FILE, &task.spec)?;
        let (program, args) =
            self.config.executor.split_first().ok_or_else(|| DriverError::ExecutorFailed {
                status_dir: status_dir.clone(),
                detail: "no executor command configured".into(),
            })?;
        let log = fs::File::create(status_dir.join("executor.log"))?;
        let child = Command::new(program)
            .args(args)
            .arg(&status_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: signals meant for the agent do not reach it.
            .process_group(0)
            .spawn()?;
        self.await_start(status_dir, child)
    }

    fn await_start(
        &self,
        status_dir: PathBuf,
        mut child: Child,
    ) -> Result<TaskHandle, DriverError> {
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        loop {
            if let Some(running) = executor::read_status::<Running>(&status_dir, RUNNING_FILE)? {
                return Ok(TaskHandle { status_dir, running, executor: Some(child) });
            }
            if let Some(exit) = executor::read_status::<ExitResult>(&status_dir, EXIT_FILE)? {
                let _reaped = child.wait();
                let detail = if exit.error.is_empty() { format!("{exit:?}") } else { exit.error };
                return Err(DriverError::ExecutorFailed { status_dir, detail });
            }
            if let Some(status) = child.try_wait()? {
                let detail = format!("exited with {status} before the task started");
                return Err(DriverError::ExecutorFailed { status_dir, detail });
            }
            if Instant::now() > deadline {
                let _killed = child.kill();
                let _reaped = child.wait();
                return Err(DriverError::StartTimeout { status_dir });
            }
            thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// What became of a task this or an earlier agent process started.
    pub fn recover(&self, alloc_id: &str, task: &str) -> Result<Recovered, DriverError> {
        let status_dir = self.status_dir(alloc_id, task);
        if let Some(exit) = executor::read_status::<ExitResult>(&status_dir, EXIT_FILE)? {
            return Ok(Recovered::Exited(exit));
        }
        if let Some(running) = executor::read_status::<Running>(&status_dir, RUNNING_FILE)? {
            if process_alive(running.executor_pid) {
                return Ok(Recovered::Running(TaskHandle { status_dir, running, executor: None }));
            }
            // The exit may have landed between the two reads.
            return Ok(match executor::read_status::<ExitResult>(&status_dir, EXIT_FILE)? {
                Some(exit) => Recovered::Exited(exit),
                None => Recovered::Lost,
            });
        }
        if status_dir.join(SPEC_FILE).exists() {
            Ok(Recovered::Lost)
        } else {
            Ok(Recovered::Unknown)
        }
    }

    /// The task's exit, waiting at most `timeout`; `None` while it still runs.
    pub fn wait(
        &self,
        handle: &mut TaskHandle,
        timeout: Duration,
    ) -> Result<Option<ExitResult>, DriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = executor::read_status::<ExitResult>(&handle.status_dir, EXIT_FILE)?
            {
                if let Some(child) = handle.executor.as_mut() {
                    let _reaped = child.wait();
                }
                return Ok(Some(exit));
            }
            if !process_alive(handle.running.executor_pid) && handle.executor.is_none() {
                return Ok(None);
            }
            if let Some(child) = handle.executor.as_mut()
                && child.try_wait()?.is_some()
                && executor::read_status::<ExitResult>(&handle.status_dir, EXIT_FILE)?.is_none()
            {
                return Err(DriverError::ExecutorFailed {
                    status_dir: handle.status_dir.clone(),
                    detail: "exited without recording the task's exit".into(),
                });
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// Sends `signal` to the task's process group (a task that already ended is fine).
    pub fn signal(&self, handle: &TaskHandle, signal: Signal) -> Result<(), DriverError> {
        signal_running(&handle.running, signal)
    }

    /// Stops the task: `signal`, then SIGKILL once `kill_timeout` passed.
    pub fn stop(
        &self,
        handle: &mut TaskHandle,
        signal: Signal,
        kill_timeout: Duration,
    ) -> Result<ExitResult, DriverError> {
        self.signal(handle, signal)?;
        if let Some(exit) = self.wait(handle, kill_timeout)? {
            return Ok(exit);
        }
        self.signal(handle, Signal::KILL)?;
        match self.wait(handle, Duration::from_millis(KILL_WAIT_MS))? {
            Some(exit) => Ok(exit),
            None => Err(DriverError::ExecutorFailed {
                status_dir: handle.status_dir.clone(),
                detail: format!("task still running {KILL_WAIT_MS} ms after SIGKILL"),
            }),
        }
    }

    /// Forgets a finished task's status (its logs stay in the allocation directory).
    pub fn destroy(&self, alloc_id: &str, task: &str) -> Result<(), DriverError> {
        let dir = self.status_dir(alloc_id, task);
        match fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }
}

/// Sends `signal` to a running task's process group, for a caller that holds the task's
/// pids but not its handle (the handle is with the thread waiting for the exit).
pub fn signal_running(running: &Running, signal: Signal) -> Result<(), DriverError> {
    let Some(group) = Pid::from_raw(running.task_pid) else { return Ok(()) };
    match rustix::process::kill_process_group(group, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(errno) => Err(DriverError::Io(errno.into())),
    }
}

/// A signal by name (`SIGINT`, `SIGHUP`, ...; the `SIG` prefix may be left out), for a
/// task's `kill_signal` (empty means SIGTERM) and an operator's `alloc signal`; `None`
/// for a name this driver cannot send.
pub fn signal_by_name(name: &str) -> Option<Signal> {
    let signal = match name.trim_start_matches("SIG") {
        "" | "TERM" => Signal::TERM,
        "ABRT" | "IOT" => Signal::ABORT,
        "ALRM" => Signal::ALARM,
        "CHLD" => Signal::CHILD,
        "CONT" => Signal::CONT,
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "IO" => Signal::IO,
        "KILL" => Signal::KILL,
        "PIPE" => Signal::PIPE,
        "PROF" => Signal::PROF,
        "QUIT" => Signal::QUIT,
        "STOP" => Signal::STOP,
        "SYS" => Signal::SYS,
        "TRAP" => Signal::TRAP,
        "TSTP" => Signal::TSTP,
        "TTIN" => Signal::TTIN,
        "TTOU" => Signal::TTOU,
        "URG" => Signal::URG,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "VTALRM" => Signal::VTALARM,
        "WINCH" => Signal::WINCH,
        "XCPU" => Signal::XCPU,
        "XFSZ" => Signal::XFSZ,
        _ => return None,
    };
    Some(signal)
}

fn process_alive(pid: i32) -> bool {
    let Some(pid) = Pid::from_raw(pid) else { return false };
    if rustix::process::test_kill_process(pid).is_err() {
        return false;
    }
    // A zombie still answers signals; it is not running anything.
    let stat =
        fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z")
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
