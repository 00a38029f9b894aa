//! Semantic validation of a canonical [`Job`]: every rule Nomad enforces at registration
//! (and a few it should), reporting every problem at once.
//!
//! Each [`ValidationError`] carries the path of the offending field in the API JSON form
//! (`TaskGroups[0].Count`), so the HTTP API can name the field and the jobspec can point at
//! `file:line:col`, and a plain message that names its group and task.

use super::job::{
    Affinity, CONSTRAINT_OPERATORS, Constraint, Job, JobType, MigrateStrategy,
    ParameterizedJobConfig, PeriodicConfig, ReschedulePolicy, RestartPolicy,
    SCALING_POLICY_TYPE_HORIZONTAL, ScalingPolicy, Service, ServiceCheck, Spread, Task,
    TaskArtifact, TaskGroup, Template, UpdateStrategy,
};
use super::resources::{CPU_MIN_MHZ, MEMORY_MIN_MB, NetworkResource, Resources};
use super::value::DurationNs;
use std::collections::BTreeSet;
use std::fmt;

/// One step of a path into the API JSON form of a job.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// A rule a job breaks, at a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub path: Vec<PathSegment>,
    pub message: String,
}

impl ValidationError {
    /// The path as text: `TaskGroups[0].Tasks[1].Resources.CPU`.
    pub fn path_string(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                PathSegment::Key(key) if out.is_empty() => out.push_str(key),
                PathSegment::Key(key) => {
                    out.push('.');
                    out.push_str(key);
                }
                PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Shortest restart interval Nomad accepts.
pub const RESTART_INTERVAL_MIN: DurationNs = DurationNs::from_secs(5);
/// Shortest reschedule delay and interval Nomad accepts.
pub const RESCHEDULE_DELAY_MIN: DurationNs = DurationNs::from_secs(5);
pub const RESCHEDULE_INTERVAL_MIN: DurationNs = DurationNs::from_secs(15);
/// Shortest service check interval.
pub const CHECK_INTERVAL_MIN: DurationNs = DurationNs::from_secs(1);
/// Smallest ephemeral disk, in MB.
pub const EPHEMERAL_DISK_MIN_MB: i32 = 10;

/// Every rule the job breaks; empty when it is valid.
pub fn validate_job(job: &Job) -> Vec<ValidationError> {
    let mut v = Validator { errors: Vec::new() };
    v.job(job);
    v.errors
}

#[derive(Clone, Default)]
struct Path(Vec<PathSegment>);

impl Path {
    fn key(&self, key: &str) -> Path {
        let mut p = self.0.clone();
        p.push(PathSegment::Key(key.to_owned()));
        Path(p)
    }

    fn index(&self, i: usize) -> Path {
        let mut p = self.0.clone();
        p.push(PathSegment::Index(i));
        Path(p)
    }
}

struct Validator {
    errors: Vec<ValidationError>,
}

/// The placement rules of a job or group.
struct Placement<'a> {
    constraints: &'a [Constraint],
    affinities: &'a [Affinity],
    spreads: &'a [Spread],
}

fn q(text: &str) -> String {
    format!("\"{text}\"")
}

impl Validator {
    fn err(&mut self, path: &Path, message: String) {
        self.errors.push(ValidationError { path: path.0.clone(), message });
    }

    fn job(&mut self, job: &Job) {
        let root = Path::default();
        let ctx = format!("job {}", q(&job.id));
        self.job_identity(job, &root, &ctx);
        if job.task_groups.is_empty() {
            self.err(
                &root.key("TaskGroups"),
                format!("{ctx} has no groups; add group \"name\" {{ ... }}"),
            );
        }
        let placement = Placement {
            constraints: &job.constraints,
            affinities: &job.affinities,
            spreads: &job.spreads,
        };
        self.placement(job.job_type, placement, &root, &ctx);
        if let Some(periodic) = &job.periodic {
            self.periodic(job, periodic, &root.key("Periodic"), &ctx);
        }
        if let Some(param) = &job.parameterized_job {
            self.parameterized(job, param, &root.key("ParameterizedJob"), &ctx);
        }
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (i, group) in job.task_groups.iter().enumerate() {
            let path = root.key("TaskGroups").index(i);
            if !seen.insert(group.name.as_str()) {
                self.err(
                    &path.key("Name"),
                    format!("{ctx}: group {} is declared more than once", q(&group.name)),
                );
            }
            self.group(job, group, &path);
        }
    }

    /// ID, name, region, namespace, datacenters and priority.
    fn job_identity(&mut self, job: &Job, root: &Path, ctx: &str) {
        if job.id.is_empty() {
            self.err(&root.key("ID"), "job ID must not be empty".into());
        } else if job.id.contains(' ') || job.id.contains('\0') {
            self.err(&root.key("ID"), format!("{ctx}: job ID must not contain spaces"));
        }
        if job.name.contains('\0') {
            self.err(&root.key("Name"), format!("{ctx}: name must not contain NUL"));
        }
        if job.region.is_empty() {
            self.err(&root.key("Region"), format!("{ctx}: region must not be empty"));
        }
        if job.namespace.is_empty() {
            self.err(&root.key("Namespace"), format!("{ctx}: namespace must not be empty"));
        }
        if let Some(i) = job.datacenters.iter().position(String::is_empty) {
            self.err(
                &root.key("Datacenters").index(i),
                format!("{ctx}: datacenter names must not be empty"),
            );
        }
        if !(1..=100).contains(&job.priority) {
            self.err(
                &root.key("Priority"),
                format!("{ctx}: priority must be between 1 and 100, got {}", job.priority),
            );
        }
    }

    /// Constraints, affinities and spreads of a job or group; system and sysbatch jobs
    /// place on every node, so affinities and spreads mean nothing there.
    fn placement(&mut self, job_type: JobType, p: Placement<'_>, path: &Path, ctx: &str) {
        for (i, c) in p.constraints.iter().enumerate() {
            self.constraint(c, &path.key("Constraints").index(i), ctx);
        }
        for (i, a) in p.affinities.iter().enumerate() {
            self.affinity(a, &path.key("Affinities").index(i), ctx);
        }
        for (i, s) in p.spreads.iter().enumerate() {
            self.spread(s, &path.key("Spreads").index(i), ctx);
        }
        let system = matches!(job_type, JobType::System | JobType::Sysbatch);
        if system && !p.affinities.is_empty() {
            self.err(
                &path.key("Affinities"),
                format!("{ctx}: {} jobs cannot have affinities", job_type.as_str()),
            );
        }
        if system && !p.spreads.is_empty() {
            self.err(
                &path.key("Spreads"),
                format!("{ctx}: {} jobs cannot have spreads", job_type.as_str()),
            );
        }
    }

    /// A periodic block is checked only when enabled.
    fn periodic(&mut self, job: &Job, periodic: &PeriodicConfig, path: &Path, ctx: &str) {
        if !periodic.enabled {
            return;
        }
        if !job.job_type.finishes() {
            self.err(
                path,
                format!(
                    "{ctx}: periodic works only with batch or sysbatch jobs, not {}",
                    job.job_type.as_str()
                ),
            );
        }
        if periodic.spec_type != "cron" {
            self.err(
                &path.key("SpecType"),
                format!("{ctx}: periodic spec type must be cron, got {}", q(&periodic.spec_type)),
            );
        }
        if periodic.spec.is_empty() && periodic.specs.is_empty() {
            self.err(path, format!("{ctx}: periodic needs a schedule: set cron or crons"));
        }
        if !periodic.spec.is_empty() && !periodic.specs.is_empty() {
            self.err(path, format!("{ctx}: periodic takes cron or crons, not both"));
        }
        if !periodic.spec.is_empty()
            && let Err(why) = check_cron(&periodic.spec)
        {
            self.err(
                &path.key("Spec"),
                format!("{ctx}: periodic cron {}: {why}", q(&periodic.spec)),
            );
        }
        for (i, spec) in periodic.specs.iter().enumerate() {
            if let Err(why) = check_cron(spec) {
                self.err(
                    &path.key("Specs").index(i),
                    format!("{ctx}: periodic cron {}: {why}", q(spec)),
                );
            }
        }
        if !is_utc(&periodic.time_zone) {
            self.err(
                &path.key("TimeZone"),
                format!(
                    "{ctx}: periodic time_zone {} is not supported: drover runs periodic \
                     schedules in UTC only",
                    q(&periodic.time_zone)
                ),
            );
        }
    }

    fn parameterized(&mut self, job: &Job, param: &ParameterizedJobConfig, path: &Path, ctx: &str) {
        if !job.job_type.finishes() {
            self.err(
                path,
                format!(
                    "{ctx}: parameterized works only with batch or sysbatch jobs, not {}",
                    job.job_type.as_str()
                ),
            );
        }
        if !matches!(param.payload.as_str(), "optional" | "required" | "forbidden") {
            self.err(
                &path.key("Payload"),
                format!(
                    "{ctx}: parameterized payload must be optional, required or forbidden, got {}",
                    q(&param.payload)
                ),
            );
        }
        let required: BTreeSet<&String> = param.meta_required.iter().collect();
        if let Some(both) = param.meta_optional.iter().find(|k| required.contains(k)) {
            self.err(
                &path.key("MetaOptional"),
                format!("{ctx}: meta key {} is both required and optional", q(both)),
            );
        }
    }

    fn group(&mut self, job: &Job, group: &TaskGroup, path: &Path) {
        let ctx = format!("group {}", q(&group.name));
        self.group_count(job, group, path, &ctx);
        let placement = Placement {
            constraints: &group.constraints,
            affinities: &group.affinities,
            spreads: &group.spreads,
        };
        self.placement(job.job_type, placement, path, &ctx);
        self.group_policies(job, group, path, &ctx);
        self.group_disk(group, path, &ctx);
        if let Some(delay) = group.shutdown_delay
            && delay.0 < 0
        {
            self.err(
                &path.key("ShutdownDelay"),
                format!("{ctx}: shutdown_delay must not be negative"),
            );
        }
        let labels = self.group_networks(group, path, &ctx);
        for (i, service) in group.services.iter().enumerate() {
            self.service(service, &path.key("Services").index(i), &ctx, &labels);
        }
        self.group_volumes(group, path, &ctx);
        if let Some(scaling) = &group.scaling {
            self.scaling(group, scaling, path, &ctx);
        }
        self.group_tasks(group, path, &ctx, &labels);
    }

    /// The name, the count (at most one per node in system jobs) and that there are tasks.
    fn group_count(&mut self, job: &Job, group: &TaskGroup, path: &Path, ctx: &str) {
        if group.name.is_empty() {
            self.err(&path.key("Name"), "a group name must not be empty".into());
        }
        if group.count < 0 {
            self.err(&path.key("Count"), format!("{ctx}: count must be >= 0, got {}", group.count));
        }
        let system = matches!(job.job_type, JobType::System | JobType::Sysbatch);
        if system && group.count > 1 {
            self.err(
                &path.key("Count"),
                format!(
                    "{ctx}: count must be 0 or 1 in a {} job, got {}",
                    job.job_type.as_str(),
                    group.count
                ),
            );
        }
        if group.tasks.is_empty() {
            self.err(
                &path.key("Tasks"),
                format!("{ctx} has no tasks; add task \"name\" {{ ... }}"),
            );
        }
    }

    /// Restart, reschedule, update and migrate.
    fn group_policies(&mut self, job: &Job, group: &TaskGroup, path: &Path, ctx: &str) {
        if let Some(restart) = &group.restart_policy {
            self.restart(restart, &path.key("RestartPolicy"), ctx);
        }
        match &group.reschedule_policy {
            Some(_) if job.job_type == JobType::System => self.err(
                &path.key("ReschedulePolicy"),
                format!("{ctx}: system jobs are never rescheduled; remove the reschedule block"),
            ),
            Some(reschedule) => self.reschedule(reschedule, &path.key("ReschedulePolicy"), ctx),
            None => {}
        }
        if let Some(update) = &group.update {
            self.update(update, &path.key("Update"), ctx);
        }
        if let Some(migrate) = &group.migrate {
            self.migrate(migrate, &path.key("Migrate"), ctx);
        }
    }

    /// The ephemeral disk's size, which every task's rotated logs must fit in.
    fn group_disk(&mut self, group: &TaskGroup, path: &Path, ctx: &str) {
        if group.ephemeral_disk.size_mb < EPHEMERAL_DISK_MIN_MB {
            self.err(&path.key("EphemeralDisk").key("SizeMB"), format!(
                "{ctx}: ephemeral_disk size must be at least {EPHEMERAL_DISK_MIN_MB} MB, got {}",
                group.ephemeral_disk.size_mb
            ));
        }
        for (i, task) in group.tasks.iter().enumerate() {
            let logs =
                i64::from(task.log_config.max_files) * i64::from(task.log_config.max_file_size_mb);
            let disk = i64::from(group.ephemeral_disk.size_mb);
            if !task.log_config.disabled && logs >= disk && disk >= i64::from(EPHEMERAL_DISK_MIN_MB)
            {
                self.err(&path.key("Tasks").index(i).key("LogConfig"), format!(
                    "task {} in {ctx}: logs may use {logs} MB, which must be less than the ephemeral_disk size of {disk} MB",
                    q(&task.name)
                ));
            }
        }
    }

    /// The group's network and the tasks' own networks share one port namespace; returns
    /// every port label, for services and checks to refer to.
    fn group_networks(&mut self, group: &TaskGroup, path: &Path, ctx: &str) -> BTreeSet<String> {
        if group.networks.len() > 1 {
            self.err(
                &path.key("Networks").index(1),
                format!("{ctx}: only one network block is allowed per group"),
            );
        }
        let mut labels: BTreeSet<String> = BTreeSet::new();
        let mut statics: BTreeSet<i32> = BTreeSet::new();
        for (i, network) in group.networks.iter().enumerate() {
            self.network(network, &path.key("Networks").index(i), ctx, &mut labels, &mut statics);
        }
        for (i, task) in group.tasks.iter().enumerate() {
            for (j, network) in task.resources.networks.iter().enumerate() {
                let npath = path.key("Tasks").index(i).key("Resources").key("Networks").index(j);
                self.network(network, &npath, ctx, &mut labels, &mut statics);
            }
        }
        labels
    }

    fn group_volumes(&mut self, group: &TaskGroup, path: &Path, ctx: &str) {
        for (label, volume) in &group.volumes {
            let vpath = path.key("Volumes").key(label);
            if !matches!(volume.volume_type.as_str(), "host" | "csi") {
                self.err(
                    &vpath.key("Type"),
                    format!(
                        "{ctx}: volume {} type must be host or csi, got {}",
                        q(label),
                        q(&volume.volume_type)
                    ),
                );
            }
            if volume.source.is_empty() {
                self.err(
                    &vpath.key("Source"),
                    format!("{ctx}: volume {} needs a source", q(label)),
                );
            }
        }
    }

    /// A scaling policy's range must be sound and hold the current count.
    fn scaling(&mut self, group: &TaskGroup, scaling: &ScalingPolicy, path: &Path, ctx: &str) {
        let spath = path.key("Scaling");
        if scaling.policy_type != SCALING_POLICY_TYPE_HORIZONTAL {
            self.err(
                &spath.key("Type"),
                format!(
                    "{ctx}: scaling type must be {SCALING_POLICY_TYPE_HORIZONTAL}, got {}",
                    q(&scaling.policy_type)
                ),
            );
        }
        let min = scaling.min.unwrap_or(i64::from(group.count));
        if scaling.max < 0 || min < 0 {
            self.err(&spath, format!("{ctx}: scaling min and max must not be negative"));
        } else if min > scaling.max {
            self.err(
                &spath.key("Max"),
                format!("{ctx}: scaling max ({}) must be at least min ({min})", scaling.max),
            );
        } else if i64::from(group.count) < min || i64::from(group.count) > scaling.max {
            self.err(
                &path.key("Count"),
                format!(
                    "{ctx}: count {} is outside the scaling range {min}..={}",
                    group.count, scaling.max
                ),
            );
        }
    }

    /// At most one leader, unique names, then each task.
    fn group_tasks(
        &mut self,
        group: &TaskGroup,
        path: &Path,
        ctx: &str,
        labels: &BTreeSet<String>,
    ) {
        let mut task_names: BTreeSet<&str> = BTreeSet::new();
        let leaders = group.tasks.iter().filter(|t| t.leader).count();
        if leaders > 1 {
            self.err(
                &path.key("Tasks"),
                format!("{ctx}: only one task may be the leader, found {leaders}"),
            );
        }
        for (i, task) in group.tasks.iter().enumerate() {
            let tpath = path.key("Tasks").index(i);
            if !task_names.insert(task.name.as_str()) {
                self.err(
                    &tpath.key("Name"),
                    format!("{ctx}: task {} is declared more than once", q(&task.name)),
                );
            }
            self.task(group, task, &tpath, labels);
        }
    }

    fn network(
        &mut self,
        network: &NetworkResource,
        path: &Path,
        ctx: &str,
        labels: &mut BTreeSet<String>,
        statics: &mut BTreeSet<i32>,
    ) {
        let mode = network.mode.as_str();
        if !(matches!(mode, "" | "host" | "bridge" | "none") || mode.starts_with("cni/")) {
            self.err(
                &path.key("Mode"),
                format!(
                    "{ctx}: network mode must be host, bridge, none or cni/<name>, got {}",
                    q(mode)
                ),
            );
        }
        for (kind, ports) in
            [("ReservedPorts", &network.reserved_ports), ("DynamicPorts", &network.dynamic_ports)]
        {
            for (i, port) in ports.iter().enumerate() {
                let ppath = path.key(kind).index(i);
                if port.label.is_empty() {
                    self.err(&ppath, format!("{ctx}: a port needs a label"));
                } else if !labels.insert(port.label.clone()) {
                    self.err(
                        &ppath.key("Label"),
                        format!("{ctx}: port label {} is used more than once", q(&port.label)),
                    );
                }
                if kind == "ReservedPorts" {
                    if !(1..=65535).contains(&port.value) {
                        self.err(
                            &ppath.key("Value"),
                            format!(
                                "{ctx}: port {} static value must be between 1 and 65535, got {}",
                                q(&port.label),
                                port.value
                            ),
                        );
                    } else if !statics.insert(port.value) {
                        self.err(&ppath.key("Value"), format!(
                            "{ctx}: port {} uses static port {}, which another port already uses",
                            q(&port.label),
                            port.value
                        ));
                    }
                }
                if !(-1..=65535).contains(&port.to) {
                    self.err(
                        &ppath.key("To"),
                        format!(
                            "{ctx}: port {} to must be between -1 and 65535, got {}",
                            q(&port.label),
                            port.to
                        ),
                    );
                }
            }
        }
    }

    fn service(&mut self, service: &Service, path: &Path, ctx: &str, labels: &BTreeSet<String>) {
        let sctx = format!("{ctx}, service {}", q(&service.name));
        if service.name.is_empty() {
            self.err(&path.key("Name"), format!("{ctx}: a service needs a name"));
        }
        if !matches!(service.provider.as_str(), "consul" | "nomad") {
            self.err(
                &path.key("Provider"),
                format!("{sctx}: provider must be consul or nomad, got {}", q(&service.provider)),
            );
        }
        if !matches!(service.address_mode.as_str(), "auto" | "host" | "driver" | "alloc") {
            self.err(
                &path.key("AddressMode"),
                format!(
                    "{sctx}: address_mode must be auto, host, driver or alloc, got {}",
                    q(&service.address_mode)
                ),
            );
        }
        if !matches!(service.on_update.as_str(), "require_healthy" | "ignore_warnings" | "ignore") {
            self.err(
                &path.key("OnUpdate"),
                format!(
                    "{sctx}: on_update must be require_healthy, ignore_warnings or ignore, got {}",
                    q(&service.on_update)
                ),
            );
        }
        self.port_ref(&service.port_label, &path.key("PortLabel"), &sctx, labels);
        for (i, check) in service.checks.iter().enumerate() {
            // Unnamed checks are told apart by their 1-based position.
            let cctx = if check.name.is_empty() {
                format!("{sctx}, check #{}", i + 1)
            } else {
                format!("{sctx}, check {}", q(&check.name))
            };
            self.service_check(check, &path.key("Checks").index(i), &cctx, labels);
        }
        if let Some(cr) = &service.check_restart {
            self.check_restart(cr.limit, cr.grace, &path.key("CheckRestart"), &sctx);
        }
    }

    fn service_check(
        &mut self,
        check: &ServiceCheck,
        cpath: &Path,
        cctx: &str,
        labels: &BTreeSet<String>,
    ) {
        if !matches!(check.check_type.as_str(), "http" | "tcp" | "script" | "grpc") {
            self.err(
                &cpath.key("Type"),
                format!(
                    "{cctx}: type must be http, tcp, script or grpc, got {}",
                    q(&check.check_type)
                ),
            );
        }
        if check.check_type == "http" && check.path.is_empty() {
            self.err(&cpath.key("Path"), format!("{cctx}: http checks need a path"));
        }
        if check.check_type == "script" && check.command.is_empty() {
            self.err(&cpath.key("Command"), format!("{cctx}: script checks need a command"));
        }
        if check.interval.0 <= 0 {
            self.err(&cpath.key("Interval"), format!("{cctx}: interval is required"));
        } else if check.interval < CHECK_INTERVAL_MIN {
            self.err(
                &cpath.key("Interval"),
                format!(
                    "{cctx}: interval must be at least {CHECK_INTERVAL_MIN}, got {}",
                    check.interval
                ),
            );
        }
        if check.timeout.0 <= 0 {
            self.err(&cpath.key("Timeout"), format!("{cctx}: timeout is required"));
        }
        self.port_ref(&check.port_label, &cpath.key("PortLabel"), cctx, labels);
        if let Some(cr) = &check.check_restart {
            self.check_restart(cr.limit, cr.grace, &cpath.key("CheckRestart"), cctx);
        }
    }

    fn port_ref(&mut self, label: &str, path: &Path, ctx: &str, labels: &BTreeSet<String>) {
        if label.is_empty()
            || label.contains("${")
            || label.parse::<u16>().is_ok()
            || labels.contains(label)
        {
            return;
        }
        self.err(path, format!("{ctx}: port {} is not defined by any network port", q(label)));
    }

    fn check_restart(&mut self, limit: i32, grace: DurationNs, path: &Path, ctx: &str) {
        if limit < 0 {
            self.err(
                &path.key("Limit"),
                format!("{ctx}: check_restart limit must not be negative, got {limit}"),
            );
        }
        if grace.0 < 0 {
            self.err(
                &path.key("Grace"),
                format!("{ctx}: check_restart grace must not be negative"),
            );
        }
    }

    fn task(&mut self, group: &TaskGroup, task: &Task, path: &Path, labels: &BTreeSet<String>) {
        let ctx = format!("task {} in group {}", q(&task.name), q(&group.name));
        if task.name.is_empty() {
            self.err(
                &path.key("Name"),
                format!("group {}: a task name must not be empty", q(&group.name)),
            );
        } else if task.name.contains('/') {
            self.err(&path.key("Name"), format!("{ctx}: a task name must not contain /"));
        }
        if task.driver.is_empty() {
            self.err(&path.key("Driver"), format!("{ctx}: driver is required"));
        }
        self.resources(&task.resources, &path.key("Resources"), &ctx);
        self.task_lifecycle(task, path, &ctx);
        self.task_logs(task, path, &ctx);
        for (i, artifact) in task.artifacts.iter().enumerate() {
            self.artifact(artifact, &path.key("Artifacts").index(i), &ctx);
        }
        for (i, template) in task.templates.iter().enumerate() {
            self.template(template, &path.key("Templates").index(i), &ctx);
        }
        for (i, service) in task.services.iter().enumerate() {
            self.service(service, &path.key("Services").index(i), &ctx, labels);
        }
        for (i, mount) in task.volume_mounts.iter().enumerate() {
            if !group.volumes.contains_key(&mount.volume) {
                self.err(
                    &path.key("VolumeMounts").index(i).key("Volume"),
                    format!(
                        "{ctx}: volume_mount refers to volume {}, which the group does not declare",
                        q(&mount.volume)
                    ),
                );
            }
        }
        for (i, c) in task.constraints.iter().enumerate() {
            self.constraint(c, &path.key("Constraints").index(i), &ctx);
        }
        for (i, a) in task.affinities.iter().enumerate() {
            self.affinity(a, &path.key("Affinities").index(i), &ctx);
        }
        // A policy inherited from the group was already checked (and reported) there.
        if let Some(restart) = &task.restart_policy
            && Some(restart) != group.restart_policy.as_ref()
        {
            self.restart(restart, &path.key("RestartPolicy"), &ctx);
        }
    }

    fn resources(&mut self, r: &Resources, rpath: &Path, ctx: &str) {
        if r.cores < 0 {
            self.err(
                &rpath.key("Cores"),
                format!("{ctx}: cores must not be negative, got {}", r.cores),
            );
        }
        if r.cores > 0 && r.cpu_mhz > 0 {
            self.err(&rpath.key("CPU"), format!("{ctx}: ask for cpu or cores, not both"));
        } else if r.cores == 0 && r.cpu_mhz < CPU_MIN_MHZ {
            self.err(
                &rpath.key("CPU"),
                format!("{ctx}: cpu must be at least {CPU_MIN_MHZ} MHz, got {}", r.cpu_mhz),
            );
        }
        if r.memory_mb < MEMORY_MIN_MB {
            self.err(
                &rpath.key("MemoryMB"),
                format!("{ctx}: memory must be at least {MEMORY_MIN_MB} MB, got {}", r.memory_mb),
            );
        }
        if r.memory_max_mb != 0 && r.memory_max_mb < r.memory_mb {
            self.err(
                &rpath.key("MemoryMaxMB"),
                format!(
                    "{ctx}: memory_max ({} MB) must be at least memory ({} MB)",
                    r.memory_max_mb, r.memory_mb
                ),
            );
        }
        if r.disk_mb < 0 {
            self.err(&rpath.key("DiskMB"), format!("{ctx}: disk must not be negative"));
        }
    }

    /// kill_timeout, shutdown_delay and the lifecycle hook.
    fn task_lifecycle(&mut self, task: &Task, path: &Path, ctx: &str) {
        if task.kill_timeout.0 < 0 {
            self.err(&path.key("KillTimeout"), format!("{ctx}: kill_timeout must not be negative"));
        }
        if task.shutdown_delay.0 < 0 {
            self.err(
                &path.key("ShutdownDelay"),
                format!("{ctx}: shutdown_delay must not be negative"),
            );
        }
        if let Some(lifecycle) = &task.lifecycle
            && !matches!(lifecycle.hook.as_str(), "prestart" | "poststart" | "poststop")
        {
            self.err(
                &path.key("Lifecycle").key("Hook"),
                format!(
                    "{ctx}: lifecycle hook must be prestart, poststart or poststop, got {}",
                    q(&lifecycle.hook)
                ),
            );
        }
    }

    fn task_logs(&mut self, task: &Task, path: &Path, ctx: &str) {
        let logs = &task.log_config;
        if logs.max_files < 1 {
            self.err(
                &path.key("LogConfig").key("MaxFiles"),
                format!("{ctx}: logs max_files must be at least 1, got {}", logs.max_files),
            );
        }
        if logs.max_file_size_mb < 1 {
            self.err(
                &path.key("LogConfig").key("MaxFileSizeMB"),
                format!(
                    "{ctx}: logs max_file_size must be at least 1 MB, got {}",
                    logs.max_file_size_mb
                ),
            );
        }
    }

    fn artifact(&mut self, artifact: &TaskArtifact, apath: &Path, ctx: &str) {
        if artifact.getter_source.is_empty() {
            self.err(&apath.key("GetterSource"), format!("{ctx}: artifact needs a source"));
        }
        if !matches!(artifact.getter_mode.as_str(), "any" | "file" | "dir") {
            self.err(
                &apath.key("GetterMode"),
                format!(
                    "{ctx}: artifact mode must be any, file or dir, got {}",
                    q(&artifact.getter_mode)
                ),
            );
        }
    }

    fn template(&mut self, template: &Template, tpath: &Path, ctx: &str) {
        if template.source_path.is_empty() && template.embedded_tmpl.is_empty() {
            self.err(tpath, format!("{ctx}: template needs data or source"));
        }
        if template.dest_path.is_empty() {
            self.err(&tpath.key("DestPath"), format!("{ctx}: template needs a destination"));
        }
        match template.change_mode.as_str() {
            "noop" | "restart" | "script" => {}
            "signal" if template.change_signal.is_empty() => {
                self.err(
                    &tpath.key("ChangeMode"),
                    format!("{ctx}: template change_mode signal needs change_signal"),
                );
            }
            "signal" => {}
            other => self.err(
                &tpath.key("ChangeMode"),
                format!(
                    "{ctx}: template change_mode must be noop, restart, signal or script, got {}",
                    q(other)
                ),
            ),
        }
        if template.splay.0 < 0 {
            self.err(&tpath.key("Splay"), format!("{ctx}: template splay must not be negative"));
        }
    }

    fn restart(&mut self, r: &RestartPolicy, path: &Path, ctx: &str) {
        if !matches!(r.mode.as_str(), "fail" | "delay") {
            self.err(
                &path.key("Mode"),
                format!("{ctx}: restart mode must be fail or delay, got {}", q(&r.mode)),
            );
        }
        if r.attempts < 0 {
            self.err(
                &path.key("Attempts"),
                format!("{ctx}: restart attempts must not be negative, got {}", r.attempts),
            );
        }
        if r.interval < RESTART_INTERVAL_MIN {
            self.err(
                &path.key("Interval"),
                format!(
                    "{ctx}: restart interval must be at least {RESTART_INTERVAL_MIN}, got {}",
                    r.interval
                ),
            );
        } else if r.delay.0.saturating_mul(i64::from(r.attempts.max(0))) > r.interval.0 {
            self.err(&path.key("Delay"), format!(
                "{ctx}: {} restarts with a delay of {} do not fit in the restart interval of {}",
                r.attempts, r.delay, r.interval
            ));
        }
        if r.delay.0 < 0 {
            self.err(&path.key("Delay"), format!("{ctx}: restart delay must not be negative"));
        }
    }

    fn reschedule(&mut self, r: &ReschedulePolicy, path: &Path, ctx: &str) {
        if r.attempts == 0 && !r.unlimited {
            return;
        }
        if !matches!(r.delay_function.as_str(), "constant" | "exponential" | "fibonacci") {
            self.err(&path.key("DelayFunction"), format!(
                "{ctx}: reschedule delay_function must be constant, exponential or fibonacci, got {}",
                q(&r.delay_function)
            ));
        }
        if r.delay < RESCHEDULE_DELAY_MIN {
            self.err(
                &path.key("Delay"),
                format!(
                    "{ctx}: reschedule delay must be at least {RESCHEDULE_DELAY_MIN}, got {}",
                    r.delay
                ),
            );
        }
        if r.attempts < 0 {
            self.err(
                &path.key("Attempts"),
                format!("{ctx}: reschedule attempts must not be negative"),
            );
        }
        if r.delay_function != "constant" && r.max_delay < r.delay {
            self.err(
                &path.key("MaxDelay"),
                format!(
                    "{ctx}: reschedule max_delay ({}) must be at least the delay ({})",
                    r.max_delay, r.delay
                ),
            );
        }
        if !r.unlimited && r.interval < RESCHEDULE_INTERVAL_MIN {
            self.err(&path.key("Interval"), format!(
                "{ctx}: reschedule interval must be at least {RESCHEDULE_INTERVAL_MIN} when attempts are limited, got {}",
                r.interval
            ));
        }
    }

    fn update(&mut self, u: &UpdateStrategy, path: &Path, ctx: &str) {
        if !matches!(u.health_check.as_str(), "checks" | "task_states" | "manual") {
            self.err(
                &path.key("HealthCheck"),
                format!(
                    "{ctx}: update health_check must be checks, task_states or manual, got {}",
                    q(&u.health_check)
                ),
            );
        }
        if u.max_parallel < 0 {
            self.err(
                &path.key("MaxParallel"),
                format!("{ctx}: update max_parallel must not be negative, got {}", u.max_parallel),
            );
        }
        if u.canary < 0 {
            self.err(
                &path.key("Canary"),
                format!("{ctx}: update canary must not be negative, got {}", u.canary),
            );
        }
        if u.auto_promote && u.canary == 0 {
            self.err(
                &path.key("AutoPromote"),
                format!("{ctx}: update auto_promote needs canary > 0"),
            );
        }
        self.update_deadlines(u, path, ctx);
        if u.stagger.0 <= 0 {
            self.err(
                &path.key("Stagger"),
                format!("{ctx}: update stagger must be positive, got {}", u.stagger),
            );
        }
    }

    /// min_healthy_time < healthy_deadline < progress_deadline (0 = no progress deadline).
    fn update_deadlines(&mut self, u: &UpdateStrategy, path: &Path, ctx: &str) {
        if u.min_healthy_time.0 < 0 {
            self.err(
                &path.key("MinHealthyTime"),
                format!("{ctx}: update min_healthy_time must not be negative"),
            );
        }
        if u.healthy_deadline.0 <= 0 {
            self.err(
                &path.key("HealthyDeadline"),
                format!(
                    "{ctx}: update healthy_deadline must be positive, got {}",
                    u.healthy_deadline
                ),
            );
        }
        if u.progress_deadline.0 < 0 {
            self.err(
                &path.key("ProgressDeadline"),
                format!("{ctx}: update progress_deadline must not be negative"),
            );
        }
        if u.min_healthy_time >= u.healthy_deadline {
            self.err(
                &path.key("MinHealthyTime"),
                format!(
                    "{ctx}: update min_healthy_time ({}) must be less than healthy_deadline ({})",
                    u.min_healthy_time, u.healthy_deadline
                ),
            );
        }
        if u.progress_deadline.0 != 0 && u.healthy_deadline >= u.progress_deadline {
            self.err(
                &path.key("HealthyDeadline"),
                format!(
                    "{ctx}: update healthy_deadline ({}) must be less than progress_deadline ({})",
                    u.healthy_deadline, u.progress_deadline
                ),
            );
        }
    }

    fn migrate(&mut self, m: &MigrateStrategy, path: &Path, ctx: &str) {
        if !matches!(m.health_check.as_str(), "checks" | "task_states") {
            self.err(
                &path.key("HealthCheck"),
                format!(
                    "{ctx}: migrate health_check must be checks or task_states, got {}",
                    q(&m.health_check)
                ),
            );
        }
        if m.max_parallel < 0 {
            self.err(
                &path.key("MaxParallel"),
                format!("{ctx}: migrate max_parallel must not be negative, got {}", m.max_parallel),
            );
        }
        if m.min_healthy_time.0 < 0 {
            self.err(
                &path.key("MinHealthyTime"),
                format!("{ctx}: migrate min_healthy_time must not be negative"),
            );
        }
        if m.healthy_deadline.0 <= 0 {
            self.err(
                &path.key("HealthyDeadline"),
                format!("{ctx}: migrate healthy_deadline must be positive"),
            );
        } else if m.min_healthy_time > m.healthy_deadline {
            self.err(
                &path.key("MinHealthyTime"),
                format!(
                    "{ctx}: migrate min_healthy_time ({}) must not exceed healthy_deadline ({})",
                    m.min_healthy_time, m.healthy_deadline
                ),
            );
        }
    }

    fn constraint(&mut self, c: &Constraint, path: &Path, ctx: &str) {
        let op = c.operand.as_str();
        if !CONSTRAINT_OPERATORS.contains(&op) {
            let hint = closest(op, CONSTRAINT_OPERATORS)
                .map(|s| format!("; did you mean {}?", q(s)))
                .unwrap_or_default();
            self.err(
                &path.key("Operand"),
                format!("{ctx}: unknown constraint operator {}{hint}", q(op)),
            );
            return;
        }
        if op != "distinct_hosts" && c.l_target.is_empty() {
            self.err(
                &path.key("LTarget"),
                format!("{ctx}: constraint {} needs an attribute", q(op)),
            );
        }
        match op {
            "is_set" | "is_not_set" if !c.r_target.is_empty() => {
                self.err(
                    &path.key("RTarget"),
                    format!("{ctx}: constraint {} takes no value", q(op)),
                );
            }
            "distinct_property" if !c.r_target.is_empty() => match c.r_target.parse::<u64>() {
                Ok(0) => self.err(
                    &path.key("RTarget"),
                    format!("{ctx}: distinct_property allows at least 1 per value, got 0"),
                ),
                Ok(_) => {}
                Err(_) => self.err(
                    &path.key("RTarget"),
                    format!(
                        "{ctx}: distinct_property value must be a count, got {}",
                        q(&c.r_target)
                    ),
                ),
            },
            _ => self.common_operand(op, &c.r_target, path, ctx, "constraint"),
        }
    }

    fn common_operand(&mut self, op: &str, target: &str, path: &Path, ctx: &str, what: &str) {
        match op {
            "=" | "==" | "is" | "!=" | "not" | "<" | "<=" | ">" | ">=" | "set_contains"
            | "set_contains_all" | "set_contains_any"
                if target.is_empty() =>
            {
                self.err(&path.key("RTarget"), format!("{ctx}: {what} {} needs a value", q(op)));
            }
            "regexp" => {
                if let Err(why) = check_regexp(target) {
                    self.err(
                        &path.key("RTarget"),
                        format!("{ctx}: {what} regexp {} does not compile: {why}", q(target)),
                    );
                }
            }
            "version" | "semver" => {
                if let Err(why) = check_version_constraint(target) {
                    self.err(
                        &path.key("RTarget"),
                        format!("{ctx}: {what} {op} {} is invalid: {why}", q(target)),
                    );
                }
            }
            _ => {}
        }
    }

    fn affinity(&mut self, a: &Affinity, path: &Path, ctx: &str) {
        let op = a.operand.as_str();
        let allowed: Vec<&str> = CONSTRAINT_OPERATORS
            .iter()
            .copied()
            .filter(|o| {
                !matches!(*o, "distinct_hosts" | "distinct_property" | "is_set" | "is_not_set")
            })
            .collect();
        if !allowed.contains(&op) {
            let hint = closest(op, &allowed)
                .map(|s| format!("; did you mean {}?", q(s)))
                .unwrap_or_default();
            self.err(
                &path.key("Operand"),
                format!("{ctx}: unknown affinity operator {}{hint}", q(op)),
            );
        } else {
            if a.l_target.is_empty() {
                self.err(&path.key("LTarget"), format!("{ctx}: affinity needs an attribute"));
            }
            self.common_operand(op, &a.r_target, path, ctx, "affinity");
        }
        if a.weight == 0 || !(-100..=100).contains(&a.weight) {
            self.err(
                &path.key("Weight"),
                format!(
                    "{ctx}: affinity weight must be between -100 and 100 and not 0, got {}",
                    a.weight
                ),
            );
        }
    }

    fn spread(&mut self, s: &Spread, path: &Path, ctx: &str) {
        if s.attribute.is_empty() {
            self.err(&path.key("Attribute"), format!("{ctx}: spread needs an attribute"));
        }
        if !(1..=100).contains(&s.weight) {
            self.err(
                &path.key("Weight"),
                format!("{ctx}: spread weight must be between 1 and 100, got {}", s.weight),
            );
        }
        let mut seen = BTreeSet::new();
        let mut sum: u32 = 0;
        for (i, t) in s.spread_target.iter().enumerate() {
            let tpath = path.key("SpreadTarget").index(i);
            if !seen.insert(t.value.as_str()) {
                self.err(
                    &tpath.key("Value"),
                    format!("{ctx}: spread target {} is listed twice", q(&t.value)),
                );
            }
            if t.percent > 100 {
                self.err(
                    &tpath.key("Percent"),
                    format!(
                        "{ctx}: spread target {} percent must be at most 100, got {}",
                        q(&t.value),
                        t.percent
                    ),
                );
            }
            sum += u32::from(t.percent);
        }
        if sum > 100 {
            self.err(
                &path.key("SpreadTarget"),
                format!("{ctx}: spread target percents add up to {sum}, more than 100"),
            );
        }
    }
}

fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if name.is_empty() {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        if d <= (name.len() / 3).max(1) && d < name.len() && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Checks a regular expression against RE2-like syntax (Go's `regexp`), in one line.
fn check_regexp(pattern: &str) -> Result<(), String> {
    match regex_syntax::Parser::new().parse(pattern) {
        Ok(_) => Ok(()),
        Err(regex_syntax::Error::Parse(e)) => Err(e.kind().to_string()),
        Err(regex_syntax::Error::Translate(e)) => Err(e.kind().to_string()),
        Err(other) => Err(other.to_string().lines().last().unwrap_or_default().to_owned()),
    }
}

/// `>= 1.2, < 2.0.0-beta`: comma-separated `[op] version` terms (go-version syntax).
fn check_version_constraint(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("empty version constraint".into());
    }
    for term in text.split(',') {
        let term = term.trim();
        let version = ["~>", ">=", "<=", "!=", ">", "<", "=", "^", "~"]
            .iter()
            .find_map(|op| term.strip_prefix(op))
            .unwrap_or(term)
            .trim();
        let version = version.strip_prefix('v').unwrap_or(version);
        let core = version.split(['-', '+']).next().unwrap_or_default();
        let parts_ok = !core.is_empty()
            && core.split('.').all(|p| {
                matches!(p, "x" | "X" | "*")
                    || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            });
        if !parts_ok {
            return Err(format!("{term:?} is not an operator followed by a version such as 1.2.3"));
        }
    }
    Ok(())
}

/// The names of UTC a periodic block may give (Go's `time.LoadLocation` reads "" as UTC).
fn is_utc(zone: &str) -> bool {
    matches!(zone, "" | "UTC" | "Etc/UTC" | "Etc/GMT" | "GMT" | "Zulu" | "Etc/Zulu")
}

/// Checks a cron expression by parsing it as the periodic dispatcher will.
fn check_cron(spec: &str) -> Result<(), String> {
    super::cron::CronSchedule::parse(spec).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constraints() {
        assert!(check_version_constraint(">= 1.2, < 2.0.0-beta1").is_ok());
        assert!(check_version_constraint("~> 1.0").is_ok());
        assert!(check_version_constraint("abc").is_err());
        assert!(check_version_constraint("").is_err());
    }

    #[test]
    fn regexps_report_one_line() {
        assert!(check_regexp("^linux-[0-9]+$").is_ok());
        let why = check_regexp("(unclosed").unwrap_err();
        assert!(!why.contains('\n'), "{why}");
    }

    #[test]
    fn cron_shapes() {
        assert!(check_cron("*/15 * * * *").is_ok());
        assert!(check_cron("@daily").is_ok());
        assert!(check_cron("* *").is_err());
    }
}
