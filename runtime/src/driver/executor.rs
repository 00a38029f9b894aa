//! The executor: the small process that owns one task.
//!
//! The driver never runs a task as its own child. It starts an executor (the `drover`
//! binary's `executor` mode, in its own session) that starts the task in a new process
//! group, copies its output into rotated log files, waits for it and records how it
//! ended. The executor outlives the agent: an agent that restarts reads the executor's
//! status files and reattaches instead of starting the task twice, and output is not lost
//! while no agent runs.
//!
//! Files in the task's status directory, each written whole (temp file, then rename):
//! `spec.json` (what to run, from the driver), `running.json` (the executor's and the
//! task's pids, from the executor once the task started), `exit.json` (how it ended).

use super::logs::{RotatingWriter, Rotation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

pub const SPEC_FILE: &str = "spec.json";
pub const RUNNING_FILE: &str = "running.json";
pub const EXIT_FILE: &str = "exit.json";
/// A status file larger than this is damage, not a status.
pub const STATUS_FILE_LEN_MAX_BYTES: u64 = 1024 * 1024;

/// What to run, and where its output goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub logs_dir: PathBuf,
    pub task_name: String,
    pub log_files_max: u32,
    pub log_file_size_max_bytes: u64,
}

/// Written once the task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub executor_pid: i32,
    pub task_pid: i32,
}

/// How a task ended: an exit code, or the signal that killed it; `error` when it could not
/// be started at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitResult {
    pub exit_code: i32,
    pub signal: i32,
    pub error: String,
}

impl ExitResult {
    pub fn successful(&self) -> bool {
        self.exit_code == 0 && self.signal == 0 && self.error.is_empty()
    }
}

/// The executor's main: runs the task described in `status_dir/spec.json` to its end.
pub fn run(status_dir: &Path) -> io::Result<ExitResult> {
    let spec: ExecutorSpec = read_status(status_dir, SPEC_FILE)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {SPEC_FILE} in {}", status_dir.display()),
        )
    })?;
    let exit = match start_and_wait(&spec, status_dir) {
        Ok(exit) => exit,
        Err(error) => ExitResult { exit_code: -1, signal: 0, error: error.to_string() },
    };
    write_status(status_dir, EXIT_FILE, &exit)?;
    Ok(exit)
}

fn start_and_wait(spec: &ExecutorSpec, status_dir: &Path) -> io::Result<ExitResult> {
    let mut child = Command::new(&spec.command)
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a stop signals the task and everything it started.
        .process_group(0)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {:?}: {e}", spec.command)))?;
    let running = Running { executor_pid: std::process::id() as i32, task_pid: child.id() as i32 };
    write_status(status_dir, RUNNING_FILE, &running)?;
    let rotation = Rotation {
        files_max: spec.log_files_max,
        file_size_max_bytes: spec.log_file_size_max_bytes,
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let copiers =
        [("stdout", Box::new(stdout) as Box<dyn io::Read + Send>), ("stderr", Box::new(stderr))]
            .map(|(stream, source)| {
                let base = format!("{}.{stream}", spec.task_name);
                let dir = spec.logs_dir.clone();
                thread::spawn(move || -> io::Result<()> {
                    RotatingWriter::open(&dir, &base, rotation)?.copy_from(source)
                })
            });
    let status = child.wait()?;
    for copier in copiers {
        // Output that could not be written is lost output, not a reason to lose the exit.
        let _copied = copier.join();
    }
    Ok(ExitResult {
        exit_code: status.code().unwrap_or(-1),
        signal: status.signal().unwrap_or(0),
        error: String::new(),
    })
}

/// Reads a status file, `None` when it does not exist (yet).
pub fn read_status<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    let path = dir.join(name);
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len();
    if len > STATUS_FILE_LEN_MAX_BYTES {
        let message =
            format!("{} is {len} bytes, over {STATUS_FILE_LEN_MAX_BYTES}", path.display());
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    }
    let value = serde_json::from_reader(io::BufReader::new(file)).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
    })?;
    Ok(Some(value))
}

/// Writes a status file whole: a reader sees the old file or the new one, never half.
pub fn write_status<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    fs::write(&temporary, bytes)?;
    fs::File::open(&temporary)?.sync_all()?;
    fs::rename(&temporary, dir.join(name))
}
