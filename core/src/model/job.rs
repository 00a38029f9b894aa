//! Jobs, task groups and tasks: the desired state an operator submits.
//!
//! Field names and JSON keys follow Nomad's v1 API (`api/jobs.go`, `api/tasks.go`), so a
//! document exported by `nomad job run -output` deserialises as it is. Values are the
//! canonical ones: [`crate::model::canonicalize`] has already filled every default, so code
//! that reads a `Job` never has to guess what an absent field means.

use super::alloc::RescheduleTracker;
use super::resources::{NetworkResource, Resources};
use super::value::{DurationNs, FreeValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// String-to-string maps (`meta`, `env`) keep a stable order so encodings are deterministic.
pub type Meta = BTreeMap<String, String>;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    #[default]
    Service,
    Batch,
    System,
    Sysbatch,
}

impl JobType {
    pub const ALL: [JobType; 4] =
        [JobType::Service, JobType::Batch, JobType::System, JobType::Sysbatch];

    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Service => "service",
            JobType::Batch => "batch",
            JobType::System => "system",
            JobType::Sysbatch => "sysbatch",
        }
    }

    pub fn parse(text: &str) -> Option<JobType> {
        JobType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Batch and sysbatch jobs run to completion; service and system jobs run until
    /// stopped.
    pub fn finishes(self) -> bool {
        matches!(self, JobType::Batch | JobType::Sysbatch)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    pub region: String,
    pub namespace: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    pub priority: i32,
    pub all_at_once: bool,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    pub task_groups: Vec<TaskGroup>,
    pub update: Option<UpdateStrategy>,
    pub periodic: Option<PeriodicConfig>,
    pub parameterized_job: Option<ParameterizedJobConfig>,
    pub reschedule: Option<ReschedulePolicy>,
    pub migrate: Option<MigrateStrategy>,
    pub multiregion: Option<Multiregion>,
    pub meta: Meta,
    // Server-set fields.
    pub stop: bool,
    #[serde(rename = "ParentID")]
    pub parent_id: String,
    pub dispatched: bool,
    pub status: String,
    pub status_description: String,
    pub stable: bool,
    pub version: u64,
    /// Unix nanoseconds, stamped by the leader when the version was registered.
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

impl Default for Job {
    fn default() -> Job {
        Job {
            region: "global".into(),
            namespace: "default".into(),
            id: String::new(),
            name: String::new(),
            job_type: JobType::Service,
            priority: 50,
            all_at_once: false,
            datacenters: Vec::new(),
            node_pool: "default".into(),
            constraints: Vec::new(),
            affinities: Vec::new(),
            spreads: Vec::new(),
            task_groups: Vec::new(),
            update: None,
            periodic: None,
            parameterized_job: None,
            reschedule: None,
            migrate: None,
            multiregion: None,
            meta: Meta::new(),
            stop: false,
            parent_id: String::new(),
            dispatched: false,
            status: String::new(),
            status_description: String::new(),
            stable: false,
            version: 0,
            submit_time: 0,
            create_index: 0,
            modify_index: 0,
            job_modify_index: 0,
        }
    }
}

impl Job {
    pub fn group(&self, name: &str) -> Option<&TaskGroup> {
        self.task_groups.iter().find(|g| g.name == name)
    }

    /// The reschedule policy of `group`: its own, else the job's.
    pub fn reschedule_policy<'a>(&'a self, group: &'a TaskGroup) -> Option<&'a ReschedulePolicy> {
        group.reschedule_policy.as_ref().or(self.reschedule.as_ref())
    }

    /// Periodic and parameterized jobs are templates: registering them creates no
    /// evaluation, and they never get allocations of their own (a disabled periodic job
    /// included, as in Nomad: `enabled = false` pauses its launches, it does not turn it
    /// into a job that runs itself).
    pub fn is_template(&self) -> bool {
        self.periodic.is_some() || self.parameterized_job.is_some()
    }

    /// Batch and sysbatch jobs run to completion; service and system jobs run until stopped.
    pub fn finishes(&self) -> bool {
        self.job_type.finishes()
    }

    /// Whether garbage collection may reap this job whole once its evaluations and
    /// allocations are old enough: a dead job that was stopped, a launched child, or a
    /// batch or sysbatch job that finished. A dead service or system job that was not
    /// stopped stays (its allocations were lost, not finished); a template runs until
    /// stopped.
    pub fn is_reapable_dead(&self) -> bool {
        let finished = !self.parent_id.is_empty() || (self.finishes() && !self.is_template());
        self.status == "dead" && (self.stop || finished)
    }

    /// Whether the evaluation pass of garbage collection may reap this job's batch or
    /// sysbatch evaluations (with their allocations) one by one: only once the job is
    /// stopped and dead. A live batch job keeps them, since the scheduler counts its
    /// completed allocations as work done and would run reaped ones again; a finished one
    /// is reaped whole by the job pass.
    pub fn batch_evals_reapable(&self) -> bool {
        self.stop && self.status == "dead"
    }

    /// Nomad's `IsPeriodicActive`: a periodic job the dispatcher launches children of.
    pub fn is_periodic_active(&self) -> bool {
        self.periodic.as_ref().is_some_and(|p| p.enabled)
            && !self.stop
            && self.parameterized_job.is_none()
    }

    /// The parsed schedules of a periodic job (`cron` or each of `crons`); a spec that
    /// does not parse (validation refuses those) is left out.
    pub fn periodic_schedules(&self) -> Vec<super::cron::CronSchedule> {
        let Some(periodic) = &self.periodic else { return Vec::new() };
        let specs = std::iter::once(&periodic.spec).filter(|s| !s.is_empty());
        specs
            .chain(&periodic.specs)
            .filter_map(|spec| super::cron::CronSchedule::parse(spec).ok())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    pub name: String,
    pub count: i32,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    pub tasks: Vec<Task>,
    pub volumes: BTreeMap<String, VolumeRequest>,
    pub restart_policy: Option<RestartPolicy>,
    pub reschedule_policy: Option<ReschedulePolicy>,
    pub ephemeral_disk: EphemeralDisk,
    pub update: Option<UpdateStrategy>,
    pub migrate: Option<MigrateStrategy>,
    pub networks: Vec<NetworkResource>,
    pub meta: Meta,
    pub services: Vec<Service>,
    pub shutdown_delay: Option<DurationNs>,
    pub max_client_disconnect: Option<DurationNs>,
    pub scaling: Option<ScalingPolicy>,
}

impl TaskGroup {
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

impl Default for TaskGroup {
    fn default() -> TaskGroup {
        TaskGroup {
            name: String::new(),
            count: 1,
            constraints: Vec::new(),
            affinities: Vec::new(),
            spreads: Vec::new(),
            tasks: Vec::new(),
            volumes: BTreeMap::new(),
            restart_policy: None,
            reschedule_policy: None,
            ephemeral_disk: EphemeralDisk::default(),
            update: None,
            migrate: None,
            networks: Vec::new(),
            meta: Meta::new(),
            services: Vec::new(),
            shutdown_delay: None,
            max_client_disconnect: None,
            scaling: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub name: String,
    pub driver: String,
    pub user: String,
    pub lifecycle: Option<TaskLifecycle>,
    pub config: BTreeMap<String, FreeValue>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub env: Meta,
    pub services: Vec<Service>,
    pub resources: Resources,
    pub restart_policy: Option<RestartPolicy>,
    pub meta: Meta,
    pub kill_timeout: DurationNs,
    pub log_config: LogConfig,
    pub artifacts: Vec<TaskArtifact>,
    pub templates: Vec<Template>,
    pub volume_mounts: Vec<VolumeMount>,
    pub vault: Option<Vault>,
    pub identity: Option<WorkloadIdentity>,
    pub identities: Vec<WorkloadIdentity>,
    pub leader: bool,
    pub shutdown_delay: DurationNs,
    pub kill_signal: String,
}

impl Default for Task {
    fn default() -> Task {
        Task {
            name: String::new(),
            driver: String::new(),
            user: String::new(),
            lifecycle: None,
            config: BTreeMap::new(),
            constraints: Vec::new(),
            affinities: Vec::new(),
            env: Meta::new(),
            services: Vec::new(),
            resources: Resources::default(),
            restart_policy: None,
            meta: Meta::new(),
            kill_timeout: DurationNs::from_secs(5),
            log_config: LogConfig::default(),
            artifacts: Vec::new(),
            templates: Vec::new(),
            volume_mounts: Vec::new(),
            vault: None,
            identity: None,
            identities: Vec::new(),
            leader: false,
            shutdown_delay: DurationNs::ZERO,
            kill_signal: String::new(),
        }
    }
}

/// `LTarget Operand RTarget`, e.g. `${attr.kernel.name} = linux`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Constraint {
    pub l_target: String,
    pub r_target: String,
    pub operand: String,
}

impl Default for Constraint {
    fn default() -> Constraint {
        Constraint { l_target: String::new(), r_target: String::new(), operand: "=".into() }
    }
}

/// Constraint operators Nomad accepts, in its spelling.
pub const CONSTRAINT_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    "<",
    "<=",
    ">",
    ">=",
    "regexp",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "version",
    "semver",
    "distinct_hosts",
    "distinct_property",
    "is_set",
    "is_not_set",
];

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Affinity {
    pub l_target: String,
    pub r_target: String,
    pub operand: String,
    pub weight: i8,
}

impl Default for Affinity {
    fn default() -> Affinity {
        Affinity {
            l_target: String::new(),
            r_target: String::new(),
            operand: "=".into(),
            weight: 50,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Spread {
    pub attribute: String,
    pub weight: i8,
    pub spread_target: Vec<SpreadTarget>,
}

impl Default for Spread {
    fn default() -> Spread {
        Spread { attribute: String::new(), weight: 50, spread_target: Vec::new() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpreadTarget {
    pub value: String,
    pub percent: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStrategy {
    pub stagger: DurationNs,
    pub max_parallel: i32,
    pub health_check: String,
    pub min_healthy_time: DurationNs,
    pub healthy_deadline: DurationNs,
    pub progress_deadline: DurationNs,
    pub canary: i32,
    pub auto_revert: bool,
    pub auto_promote: bool,
}

impl Default for UpdateStrategy {
    fn default() -> UpdateStrategy {
        UpdateStrategy {
            stagger: DurationNs::from_secs(30),
            max_parallel: 1,
            health_check: "checks".into(),
            min_healthy_time: DurationNs::from_secs(10),
            healthy_deadline: DurationNs::from_mins(5),
            progress_deadline: DurationNs::from_mins(10),
            canary: 0,
            auto_revert: false,
            auto_promote: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MigrateStrategy {
    pub max_parallel: i32,
    pub health_check: String,
    pub min_healthy_time: DurationNs,
    pub healthy_deadline: DurationNs,
}

impl Default for MigrateStrategy {
    fn default() -> MigrateStrategy {
        MigrateStrategy {
            max_parallel: 1,
            health_check: "checks".into(),
            min_healthy_time: DurationNs::from_secs(10),
            healthy_deadline: DurationNs::from_mins(5),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub attempts: i32,
    pub interval: DurationNs,
    pub delay: DurationNs,
    pub mode: String,
    pub render_templates: bool,
}

impl RestartPolicy {
    /// Nomad's default for a job type (`api/tasks.go`).
    pub fn default_for(job_type: JobType) -> RestartPolicy {
        let batch = job_type.finishes();
        RestartPolicy {
            attempts: if batch { 3 } else { 2 },
            interval: if batch { DurationNs::from_hours(24) } else { DurationNs::from_mins(30) },
            delay: DurationNs::from_secs(15),
            mode: "fail".into(),
            render_templates: false,
        }
    }
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy::default_for(JobType::Service)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReschedulePolicy {
    pub attempts: i32,
    pub interval: DurationNs,
    pub delay: DurationNs,
    pub delay_function: String,
    pub max_delay: DurationNs,
    pub unlimited: bool,
}

impl ReschedulePolicy {
    /// Nomad's default for a job type; system and sysbatch jobs are never rescheduled.
    pub fn default_for(job_type: JobType) -> Option<ReschedulePolicy> {
        match job_type {
            JobType::Service => Some(ReschedulePolicy {
                attempts: 0,
                interval: DurationNs::ZERO,
                delay: DurationNs::from_secs(30),
                delay_function: "exponential".into(),
                max_delay: DurationNs::from_hours(1),
                unlimited: true,
            }),
            JobType::Batch => Some(ReschedulePolicy {
                attempts: 1,
                interval: DurationNs::from_hours(24),
                delay: DurationNs::from_secs(5),
                delay_function: "constant".into(),
                max_delay: DurationNs::ZERO,
                unlimited: false,
            }),
            JobType::System | JobType::Sysbatch => None,
        }
    }

    /// Whether an allocation whose chain was rescheduled as `tracker` says may be
    /// rescheduled once more at `now_ns`: the policy is unlimited, or fewer than
    /// `attempts` reschedules fall within the `interval` before `now_ns`.
    pub fn allows_another(&self, tracker: Option<&RescheduleTracker>, now_ns: i64) -> bool {
        if self.unlimited {
            return true;
        }
        let window_start = now_ns.saturating_sub(self.interval.0);
        let attempted = tracker.map_or(0, |t| t.attempts_since(window_start));
        self.attempts > 0 && attempted < usize::try_from(self.attempts).unwrap_or(0)
    }
}

impl Default for ReschedulePolicy {
    fn default() -> ReschedulePolicy {
        ReschedulePolicy {
            attempts: 0,
            interval: DurationNs::ZERO,
            delay: DurationNs::ZERO,
            delay_function: String::new(),
            max_delay: DurationNs::ZERO,
            unlimited: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeriodicConfig {
    pub enabled: bool,
    pub spec: String,
    pub specs: Vec<String>,
    pub spec_type: String,
    pub prohibit_overlap: bool,
    pub time_zone: String,
}

impl Default for PeriodicConfig {
    fn default() -> PeriodicConfig {
        PeriodicConfig {
            enabled: true,
            spec: String::new(),
            specs: Vec::new(),
            spec_type: "cron".into(),
            prohibit_overlap: false,
            time_zone: "UTC".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ParameterizedJobConfig {
    pub payload: String,
    pub meta_required: Vec<String>,
    pub meta_optional: Vec<String>,
}

impl Default for ParameterizedJobConfig {
    fn default() -> ParameterizedJobConfig {
        ParameterizedJobConfig {
            payload: "optional".into(),
            meta_required: Vec::new(),
            meta_optional: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EphemeralDisk {
    pub sticky: bool,
    pub migrate: bool,
    #[serde(rename = "SizeMB")]
    pub size_mb: i32,
}

impl Default for EphemeralDisk {
    fn default() -> EphemeralDisk {
        EphemeralDisk { sticky: false, migrate: false, size_mb: 300 }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskLifecycle {
    pub hook: String,
    pub sidecar: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    pub max_files: i32,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: i32,
    pub disabled: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { max_files: 10, max_file_size_mb: 10, disabled: false }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskArtifact {
    pub getter_source: String,
    pub getter_options: Meta,
    pub getter_headers: Meta,
    pub getter_mode: String,
    pub relative_dest: String,
    pub chown: bool,
}

impl Default for TaskArtifact {
    fn default() -> TaskArtifact {
        TaskArtifact {
            getter_source: String::new(),
            getter_options: Meta::new(),
            getter_headers: Meta::new(),
            getter_mode: "any".into(),
            relative_dest: "local/".into(),
            chown: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Template {
    pub source_path: String,
    pub dest_path: String,
    pub embedded_tmpl: String,
    pub change_mode: String,
    pub change_signal: String,
    pub change_script: Option<ChangeScript>,
    pub splay: DurationNs,
    pub perms: String,
    pub left_delim: String,
    pub right_delim: String,
    pub envvars: bool,
    pub err_missing_key: bool,
}

impl Default for Template {
    fn default() -> Template {
        Template {
            source_path: String::new(),
            dest_path: String::new(),
            embedded_tmpl: String::new(),
            change_mode: "restart".into(),
            change_signal: String::new(),
            change_script: None,
            splay: DurationNs::from_secs(5),
            perms: "0644".into(),
            left_delim: "{{".into(),
            right_delim: "}}".into(),
            envvars: false,
            err_missing_key: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    pub name: String,
    pub tags: Vec<String>,
    pub canary_tags: Vec<String>,
    pub port_label: String,
    pub address_mode: String,
    pub address: String,
    pub checks: Vec<ServiceCheck>,
    pub check_restart: Option<CheckRestart>,
    pub meta: Meta,
    pub task_name: String,
    pub on_update: String,
    pub provider: String,
}

impl Default for Service {
    fn default() -> Service {
        Service {
            name: String::new(),
            tags: Vec::new(),
            canary_tags: Vec::new(),
            port_label: String::new(),
            address_mode: "auto".into(),
            address: String::new(),
            checks: Vec::new(),
            check_restart: None,
            meta: Meta::new(),
            task_name: String::new(),
            on_update: "require_healthy".into(),
            provider: "consul".into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    pub name: String,
    #[serde(rename = "Type")]
    pub check_type: String,
    pub command: String,
    pub args: Vec<String>,
    pub path: String,
    pub protocol: String,
    pub port_label: String,
    pub address_mode: String,
    pub interval: DurationNs,
    pub timeout: DurationNs,
    pub initial_status: String,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub check_restart: Option<CheckRestart>,
    pub task_name: String,
    pub on_update: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckRestart {
    pub limit: i32,
    pub grace: DurationNs,
    pub ignore_warnings: bool,
}

impl Default for CheckRestart {
    fn default() -> CheckRestart {
        CheckRestart { limit: 0, grace: DurationNs::from_secs(1), ignore_warnings: false }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeRequest {
    pub name: String,
    #[serde(rename = "Type")]
    pub volume_type: String,
    pub source: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeMount {
    pub volume: String,
    pub destination: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScalingPolicy {
    pub min: Option<i64>,
    pub max: i64,
    pub enabled: bool,
    /// `horizontal` for a group's count; the only kind a group's `scaling` block may have.
    #[serde(rename = "Type")]
    pub policy_type: String,
    pub policy: BTreeMap<String, FreeValue>,
}

/// The scaling policy type of a group's count (`api.ScalingPolicyTypeHorizontal`).
pub const SCALING_POLICY_TYPE_HORIZONTAL: &str = "horizontal";

impl Default for ScalingPolicy {
    fn default() -> ScalingPolicy {
        ScalingPolicy {
            min: None,
            max: 0,
            enabled: true,
            policy_type: SCALING_POLICY_TYPE_HORIZONTAL.into(),
            policy: BTreeMap::new(),
        }
    }
}

/// What a template with `change_mode = "script"` runs when it re-renders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChangeScript {
    pub command: String,
    pub args: Vec<String>,
    pub timeout: DurationNs,
    pub fail_on_error: bool,
}

impl Default for ChangeScript {
    fn default() -> ChangeScript {
        ChangeScript {
            command: String::new(),
            args: Vec::new(),
            timeout: DurationNs::from_secs(5),
            fail_on_error: false,
        }
    }
}

/// A task's Vault token request (the `vault` block).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Vault {
    pub policies: Vec<String>,
    pub role: String,
    pub namespace: String,
    pub cluster: String,
    pub env: bool,
    pub disable_file: bool,
    pub change_mode: String,
    pub change_signal: String,
    pub allow_token_expiration: bool,
}

impl Default for Vault {
    fn default() -> Vault {
        Vault {
            policies: Vec::new(),
            role: String::new(),
            namespace: String::new(),
            cluster: "default".into(),
            env: true,
            disable_file: false,
            change_mode: "restart".into(),
            change_signal: String::new(),
            allow_token_expiration: false,
        }
    }
}

/// A workload identity token the task receives (the `identity` block).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkloadIdentity {
    pub name: String,
    pub audience: Vec<String>,
    pub env: bool,
    pub file: bool,
    pub filepath: String,
    #[serde(rename = "TTL")]
    pub ttl: DurationNs,
    pub change_mode: String,
    pub change_signal: String,
}

/// How a multi-region job rolls out across regions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Multiregion {
    pub strategy: Option<MultiregionStrategy>,
    pub regions: Vec<MultiregionRegion>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MultiregionStrategy {
    pub max_parallel: i32,
    pub on_failure: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MultiregionRegion {
    pub name: String,
    pub count: i32,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub meta: Meta,
}
