//! Allocations: one task group instance placed on one node.
//!
//! The servers own the desired side (`DesiredStatus`, the transition flags); the client
//! owns the observed side (`ClientStatus`, task states). Keeping the two apart, as Nomad
//! does, lets either side write its half without clobbering the other. JSON keys follow
//! `api/allocations.go`.

use super::job::Job;
use super::metric::AllocationMetric;
use super::resources::NetworkResource;
use super::timestamp::Timestamp;
use super::value::DurationNs;
use super::vec_map::VecMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the servers want of an allocation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AllocDesiredStatus {
    #[default]
    Run,
    Stop,
    /// Stopped to make room for a higher-priority allocation (preemption).
    Evict,
}

impl AllocDesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocDesiredStatus::Run => "run",
            AllocDesiredStatus::Stop => "stop",
            AllocDesiredStatus::Evict => "evict",
        }
    }
}

/// What the client reports of an allocation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AllocClientStatus {
    #[default]
    Pending,
    Running,
    Complete,
    Failed,
    /// The node was lost; the allocation may still run there, unobserved.
    Lost,
    /// The node is disconnected and the group tolerates it (`disconnect.lost_after`).
    Unknown,
}

impl AllocClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocClientStatus::Pending => "pending",
            AllocClientStatus::Running => "running",
            AllocClientStatus::Complete => "complete",
            AllocClientStatus::Failed => "failed",
            AllocClientStatus::Lost => "lost",
            AllocClientStatus::Unknown => "unknown",
        }
    }

    /// Complete, failed and lost allocations never run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            AllocClientStatus::Complete | AllocClientStatus::Failed | AllocClientStatus::Lost
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// `<job>.<group>[<index>]`; see [`alloc_name`] and [`Allocation::index`].
    pub name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The job version this allocation runs. Plans strip it from stops to stay small.
    /// Boxed: a job is ten times the size of the rest of an allocation, and allocations
    /// are moved and stored by the million (serde encodes a box as its contents).
    pub job: Option<Box<Job>>,
    pub job_version: u64,
    pub task_group: String,
    pub allocated_resources: AllocatedResources,
    pub metrics: AllocationMetric,
    pub desired_status: AllocDesiredStatus,
    pub desired_description: String,
    pub desired_transition: DesiredTransition,
    pub client_status: AllocClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    /// The sequence number of the client's report the client side came from: a report
    /// with a lower or equal one is older (delayed, duplicated, or sent by an earlier run
    /// of the client) and changes nothing.
    pub client_report_seq: u64,
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub deployment_status: Option<AllocDeploymentStatus>,
    pub reschedule_tracker: Option<RescheduleTracker>,
    pub previous_allocation: String,
    pub next_allocation: String,
    #[serde(rename = "FollowupEvalID")]
    pub followup_eval_id: String,
    pub preempted_allocations: Vec<String>,
    pub preempted_by_allocation: String,
    pub create_index: u64,
    pub modify_index: u64,
    /// The index of the last change by the servers (client status updates do not move it).
    pub alloc_modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    pub modify_time: i64,
}

impl Allocation {
    /// It belongs to an older version of `job` or to a job of the same name registered
    /// before `job` was (purged and registered again). A finished batch allocation of
    /// such no longer counts as the job's work done.
    pub fn ran_earlier_job(&self, job: &super::job::Job) -> bool {
        self.job_version < job.version || self.create_index < job.create_index
    }

    /// Terminal on either side: the servers stopped or evicted it, or the client finished,
    /// failed or lost it. A terminal allocation no longer holds resources for new plans.
    pub fn is_terminal(&self) -> bool {
        self.server_terminal() || self.client_status.is_terminal()
    }

    /// The servers asked it to stop or evicted it.
    pub fn server_terminal(&self) -> bool {
        matches!(self.desired_status, AllocDesiredStatus::Stop | AllocDesiredStatus::Evict)
    }

    /// The instance number from the name (`web.api[3]` → 3), or `None` if the name has none.
    pub fn index(&self) -> Option<u32> {
        alloc_index(&self.name)
    }

    /// The deployment's health verdict, if it has given one.
    pub fn deployment_healthy(&self) -> Option<bool> {
        self.deployment_status.as_ref().and_then(|s| s.healthy)
    }

    pub fn is_canary(&self) -> bool {
        self.deployment_status.as_ref().is_some_and(|s| s.canary)
    }

    /// The task group this allocation runs, from its job snapshot.
    pub fn group(&self) -> Option<&super::job::TaskGroup> {
        self.job.as_ref()?.group(&self.task_group)
    }
}

/// `<job>.<group>[<index>]`, the name Nomad gives the index-th instance of a group.
pub fn alloc_name(job_id: &str, group: &str, index: u32) -> String {
    format!("{job_id}.{group}[{index}]")
}

/// Parses the index out of an allocation name; tolerant of dots and brackets in job or
/// group names because it reads only the trailing `[N]`.
pub fn alloc_index(name: &str) -> Option<u32> {
    let inner = name.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Resources handed to an allocation at placement, with the ports actually assigned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedResources {
    pub tasks: VecMap<String, AllocatedTaskResources>,
    pub shared: AllocatedSharedResources,
}

impl AllocatedResources {
    /// The sum over tasks, plus the shared disk: what this allocation takes from its node.
    pub fn comparable(&self) -> ComparableResources {
        let mut total = ComparableResources { disk_mb: self.shared.disk_mb, ..Default::default() };
        for task in self.tasks.values() {
            total.cpu_shares += task.cpu.cpu_shares;
            total.memory_mb += task.memory.memory_mb;
        }
        total
    }
}

/// Flat resource totals, for fit checks and plan re-verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComparableResources {
    pub cpu_shares: i64,
    pub memory_mb: i64,
    pub disk_mb: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedTaskResources {
    pub cpu: AllocatedCpuResources,
    pub memory: AllocatedMemoryResources,
    pub networks: Vec<NetworkResource>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedCpuResources {
    pub cpu_shares: i64,
    pub reserved_cores: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedSharedResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
    pub networks: Vec<NetworkResource>,
    pub ports: Vec<AllocatedPortMapping>,
}

/// A port as placed: the host port (`Value`), the port inside the task (`To`) and the
/// host address it is bound on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedPortMapping {
    pub label: String,
    pub value: i32,
    pub to: i32,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
}

/// Transitions the servers ask of a running allocation; `None` means "no opinion".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredTransition {
    /// Set by a node drain: move this allocation elsewhere.
    pub migrate: Option<bool>,
    /// Set when a failed allocation should be replaced now.
    pub reschedule: Option<bool>,
    /// Set by `job eval -force-reschedule`: replace even if the policy says not to.
    pub force_reschedule: Option<bool>,
    pub no_shutdown_delay: Option<bool>,
}

impl DesiredTransition {
    pub fn should_migrate(&self) -> bool {
        self.migrate == Some(true)
    }

    pub fn should_force_reschedule(&self) -> bool {
        self.force_reschedule == Some(true)
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskStateKind {
    #[default]
    Pending,
    Running,
    Dead,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskState {
    pub state: TaskStateKind,
    pub failed: bool,
    pub restarts: u64,
    pub last_restart: Timestamp,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub events: Vec<TaskEvent>,
}

/// One file or directory of an allocation's directory, as the client's `fs/ls` and
/// `fs/stat` answer (Nomad's `AllocFileInfo`). `FileMode` is Go's `os.FileMode` text
/// (`-rw-r--r--`, `drwxrwxrwx`, `Lrwxrwxrwx` for a link); `ContentType` is sniffed from
/// the first bytes and only `stat` fills it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocFileInfo {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub file_mode: String,
    pub mod_time: Timestamp,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_type: String,
}

impl TaskState {
    /// Dead and not failed: the task ran to completion.
    pub fn successful(&self) -> bool {
        self.state == TaskStateKind::Dead && !self.failed
    }
}

/// Event types a task runner emits (Nomad's spelling, shown by `alloc status`).
pub mod task_event {
    pub const RECEIVED: &str = "Received";
    pub const TASK_SETUP: &str = "Task Setup";
    pub const DRIVER: &str = "Driver";
    pub const STARTED: &str = "Started";
    pub const TERMINATED: &str = "Terminated";
    pub const RESTARTING: &str = "Restarting";
    pub const NOT_RESTARTING: &str = "Not Restarting";
    pub const KILLING: &str = "Killing";
    pub const KILLED: &str = "Killed";
    pub const DRIVER_FAILURE: &str = "Driver Failure";
    pub const SETUP_FAILURE: &str = "Setup Failure";
    pub const SIGNALING: &str = "Signaling";
    pub const RESTART_SIGNAL: &str = "Restart Signaled";
    pub const SIBLING_FAILED: &str = "Sibling Task Failed";
    pub const LEADER_DEAD: &str = "Leader Task Dead";
    /// Sidecars killed because every main task of the group is dead.
    pub const MAIN_DEAD: &str = "Main Tasks Dead";
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskEvent {
    #[serde(rename = "Type")]
    pub event_type: String,
    /// Unix nanoseconds.
    pub time: i64,
    pub display_message: String,
    pub details: BTreeMap<String, String>,
    pub message: String,
    pub fails_task: bool,
    pub restart_reason: String,
    pub setup_error: String,
    pub driver_error: String,
    pub exit_code: i32,
    pub signal: i32,
    pub kill_reason: String,
    pub kill_timeout: DurationNs,
    pub kill_error: String,
    pub start_delay: i64,
    pub failed_sibling: String,
    pub task_signal_reason: String,
    pub task_signal: String,
}

/// A deployment's view of one allocation: healthy, unhealthy, or not yet decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocDeploymentStatus {
    pub healthy: Option<bool>,
    pub timestamp: Timestamp,
    pub canary: bool,
    pub modify_index: u64,
}

/// The chain of replacements that led to this allocation, for reschedule limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleTracker {
    pub events: Vec<RescheduleEvent>,
}

impl RescheduleTracker {
    /// Reschedules that happened after `since` (unix ns), for `attempts` within `interval`.
    pub fn attempts_since(&self, since: i64) -> usize {
        self.events.iter().filter(|e| e.reschedule_time > since).count()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleEvent {
    /// Unix nanoseconds.
    pub reschedule_time: i64,
    #[serde(rename = "PrevAllocID")]
    pub prev_alloc_id: String,
    #[serde(rename = "PrevNodeID")]
    pub prev_node_id: String,
    pub delay: DurationNs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indexes() {
        assert_eq!(alloc_name("web", "api", 3), "web.api[3]");
        assert_eq!(alloc_index("web.api[3]"), Some(3));
        assert_eq!(alloc_index("a.b[c].d[12]"), Some(12));
        for bad in ["web.api", "web.api[]", "web.api[x]", "web.api[-1]", "[", "]", ""] {
            assert_eq!(alloc_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn terminal_on_either_side() {
        let mut alloc = Allocation::default();
        assert!(!alloc.is_terminal());
        alloc.client_status = AllocClientStatus::Lost;
        assert!(alloc.is_terminal());
        alloc.client_status = AllocClientStatus::Unknown;
        assert!(!alloc.is_terminal());
        alloc.desired_status = AllocDesiredStatus::Evict;
        assert!(alloc.is_terminal());
    }

    #[test]
    fn comparable_sums_tasks_and_shared_disk() {
        let mut resources = AllocatedResources::default();
        resources.shared.disk_mb = 300;
        for (name, cpu) in [("a", 100), ("b", 250)] {
            let mut task = AllocatedTaskResources::default();
            task.cpu.cpu_shares = cpu;
            task.memory.memory_mb = 64;
            resources.tasks.insert(name.into(), task);
        }
        let total = resources.comparable();
        assert_eq!((total.cpu_shares, total.memory_mb, total.disk_mb), (350, 128, 300));
    }
}
