//! The effects a client asks of its task drivers, and what the drivers report back.
//!
//! The client never touches a process: it asks the runtime to start, stop, force-kill and
//! destroy tasks, and learns of starts and exits only through [`DriverEvent`]s. Every
//! command and event names the task *attempt*, so an event that belongs to an earlier
//! incarnation of a restarted task is recognised and dropped instead of being applied to
//! the current one.

use crate::model::{Allocation, Task};
use std::fmt;
use std::sync::Arc;

/// One task of one allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskRef {
    pub alloc_id: String,
    pub task: String,
}

impl TaskRef {
    pub fn new(alloc_id: &str, task: &str) -> TaskRef {
        TaskRef { alloc_id: alloc_id.to_owned(), task: task.to_owned() }
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.alloc_id, self.task)
    }
}

/// What the client asks of a driver. `attempt` counts the task's starts from 1.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverCommand {
    /// Start the task; answer with [`DriverEvent::Started`] or [`DriverEvent::StartFailed`],
    /// and later [`DriverEvent::Exited`].
    Start { task: TaskRef, attempt: u32, spec: Box<Task>, alloc: Arc<Allocation> },
    /// Send `signal` to the task; the client sends [`DriverCommand::ForceKill`] itself if
    /// the task has not exited `kill_timeout_ms` later.
    Stop { task: TaskRef, attempt: u32, handle: String, signal: String, kill_timeout_ms: u64 },
    /// Send `signal` (a name such as `SIGHUP`) to the running task and nothing more: an
    /// operator's `alloc signal`. No event answers it.
    Signal { task: TaskRef, attempt: u32, handle: String, signal: String },
    /// Kill the task at once (SIGKILL or the driver's equivalent).
    ForceKill { task: TaskRef, attempt: u32, handle: String },
    /// The attempt has exited: release what the driver holds for it.
    Destroy { task: TaskRef, attempt: u32, handle: String },
}

impl DriverCommand {
    pub fn task(&self) -> &TaskRef {
        match self {
            DriverCommand::Start { task, .. }
            | DriverCommand::Stop { task, .. }
            | DriverCommand::Signal { task, .. }
            | DriverCommand::ForceKill { task, .. }
            | DriverCommand::Destroy { task, .. } => task,
        }
    }

    pub fn attempt(&self) -> u32 {
        match self {
            DriverCommand::Start { attempt, .. }
            | DriverCommand::Stop { attempt, .. }
            | DriverCommand::Signal { attempt, .. }
            | DriverCommand::ForceKill { attempt, .. }
            | DriverCommand::Destroy { attempt, .. } => *attempt,
        }
    }
}

/// What an operator asks of an allocation's running tasks on their client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskAction {
    /// Stop and start again at once, outside the restart policy (`alloc restart`).
    Restart,
    /// Send a signal, by name (`alloc signal`); the driver knows which names it can send.
    Signal(String),
}

/// How a task attempt ended, as the driver saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskExit {
    pub exit_code: i32,
    pub signal: i32,
    /// The driver's own error, if the wait itself failed.
    pub error: Option<String>,
}

impl TaskExit {
    /// Exit code 0, no signal, no error: the only outcome a batch task need not retry.
    pub fn successful(&self) -> bool {
        self.exit_code == 0 && self.signal == 0 && self.error.is_none()
    }
}

/// What a driver reports to the client.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverEvent {
    Started {
        task: TaskRef,
        attempt: u32,
        handle: String,
    },
    /// The task could not be started. An unrecoverable error (a bad image name, a missing
    /// binary) is never retried; a recoverable one follows the restart policy.
    StartFailed {
        task: TaskRef,
        attempt: u32,
        error: String,
        recoverable: bool,
    },
    Exited {
        task: TaskRef,
        attempt: u32,
        exit: TaskExit,
    },
}

impl DriverEvent {
    pub fn task(&self) -> &TaskRef {
        match self {
            DriverEvent::Started { task, .. }
            | DriverEvent::StartFailed { task, .. }
            | DriverEvent::Exited { task, .. } => task,
        }
    }

    pub fn attempt(&self) -> u32 {
        match self {
            DriverEvent::Started { attempt, .. }
            | DriverEvent::StartFailed { attempt, .. }
            | DriverEvent::Exited { attempt, .. } => *attempt,
        }
    }
}
