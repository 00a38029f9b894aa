//! The one canonicalize step: Nomad's defaults applied to a job in its API JSON form.
//!
//! Both entry points, a JSON document (`{"Job": …}` or a bare Job) and an HCL jobspec
//! (which `jobspec` lowers to the same JSON form first), pass through [`job_from_api_json`].
//! Defaults that do not depend on context live in the types' `Default` impls and arrive
//! through `#[serde(default)]`; this module applies the ones that do: per-type restart,
//! reschedule, update and migrate policies, job → group → task policy merges, and names
//! derived from their parents.

use super::job::{
    Job, JobType, MigrateStrategy, ReschedulePolicy, RestartPolicy, SCALING_POLICY_TYPE_HORIZONTAL,
    UpdateStrategy,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;

/// An API document whose shape does not match the API types, with the path of the offending
/// field (`TaskGroups[0].Count`), so an API answer or CLI message can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiDecodeError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ApiDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ApiDecodeError {}

/// Parses a job from JSON text: `{"Job": {...}}` as `nomad job run -output` writes it, or a
/// bare Job object.
pub fn job_from_json_str(text: &str) -> Result<Job, ApiDecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|err| ApiDecodeError {
        path: String::new(),
        message: format!("invalid JSON: {err}"),
    })?;
    job_from_api_json(value)
}

/// Canonicalizes an API-form job document and decodes it into a [`Job`].
pub fn job_from_api_json(value: Value) -> Result<Job, ApiDecodeError> {
    let mut value = unwrap_job_envelope(value);
    strip_nulls(&mut value);
    let Value::Object(job) = &mut value else {
        return Err(ApiDecodeError {
            path: String::new(),
            message: "a job must be a JSON object".into(),
        });
    };
    canonicalize_job(job)?;
    decode_api_json(value)
}

/// Decodes any API object (node, allocation, evaluation, …) from Nomad's JSON form, where
/// `null` means unset: nulls are dropped so defaults apply, and an error names the path of
/// the field that did not fit (`TaskStates.web.Events[0].Time`).
pub fn decode_api_json<T: DeserializeOwned>(mut value: Value) -> Result<T, ApiDecodeError> {
    strip_nulls(&mut value);
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    T::deserialize(deserializer).map_err(|err: serde_json::Error| ApiDecodeError {
        path: track.path().to_string(),
        message: err.to_string(),
    })
}

/// Serialises a job in the form `nomad job run -output` prints: `{"Job": {...}}`.
pub fn job_to_api_json(job: &Job) -> Value {
    let mut envelope = Map::new();
    envelope.insert("Job".into(), serde_json::to_value(job).unwrap_or(Value::Null));
    Value::Object(envelope)
}

fn unwrap_job_envelope(value: Value) -> Value {
    match value {
        Value::Object(mut map)
            if map.len() == 1 && map.get("Job").is_some_and(Value::is_object) =>
        {
            map.remove("Job").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// Nomad's exports spell "unset" as `null`; absent and null mean the same, so drop nulls
/// and let defaults apply.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn canonicalize_job(job: &mut Map<String, Value>) -> Result<(), ApiDecodeError> {
    let job_type = match job.get("Type") {
        None => JobType::Service,
        Some(Value::String(text)) if text.is_empty() => JobType::Service,
        Some(Value::String(text)) => JobType::parse(text).ok_or_else(|| ApiDecodeError {
            path: "Type".into(),
            message: format!(
                "unknown job type {text:?}; expected one of service, batch, system, sysbatch"
            ),
        })?,
        Some(_) => return Err(type_error("Type", "a string")),
    };
    job.insert("Type".into(), Value::String(job_type.as_str().into()));
    let id = job.get("ID").and_then(Value::as_str).unwrap_or_default().to_owned();
    default_string(job, "Name", &id);
    if job.get("Datacenters").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        job.insert("Datacenters".into(), Value::Array(vec![Value::String("*".into())]));
    }
    if matches!(job_type, JobType::Service | JobType::System) {
        let update = merged(to_value(UpdateStrategy::default()), &[job.get("Update")]);
        job.insert("Update".into(), update);
    }
    let job_name = job.get("Name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let job_policies = JobPolicies {
        job_type,
        job_name,
        update: job.get("Update").cloned(),
        reschedule: job.get("Reschedule").cloned(),
        migrate: job.get("Migrate").cloned(),
    };
    if let Some(Value::Array(groups)) = job.get_mut("TaskGroups") {
        for (index, group) in groups.iter_mut().enumerate() {
            let Value::Object(group) = group else {
                return Err(type_error(&format!("TaskGroups[{index}]"), "an object"));
            };
            job_policies.canonicalize_group(group);
        }
    }
    Ok(())
}

/// What a job hands down to each of its groups.
struct JobPolicies {
    job_type: JobType,
    job_name: String,
    update: Option<Value>,
    reschedule: Option<Value>,
    migrate: Option<Value>,
}

impl JobPolicies {
    fn canonicalize_group(&self, group: &mut Map<String, Value>) {
        canonicalize_scaling(group);
        canonicalize_networks(group.get_mut("Networks"));
        let restart = merged(
            to_value(RestartPolicy::default_for(self.job_type)),
            &[group.get("RestartPolicy")],
        );
        group.insert("RestartPolicy".into(), restart.clone());
        match ReschedulePolicy::default_for(self.job_type) {
            Some(base) => {
                let layers = [self.reschedule.as_ref(), group.get("ReschedulePolicy")];
                group.insert("ReschedulePolicy".into(), merged(to_value(base), &layers));
            }
            // Nomad refuses a reschedule block in a system job instead of ignoring it, so
            // what was written is kept for validation to name.
            None if self.job_type == JobType::System => {
                let layers = [self.reschedule.as_ref(), group.get("ReschedulePolicy")];
                if layers.iter().any(Option::is_some) {
                    let written = merged(to_value(ReschedulePolicy::default()), &layers);
                    group.insert("ReschedulePolicy".into(), written);
                }
            }
            None => {
                group.remove("ReschedulePolicy");
            }
        }
        match self.job_type {
            JobType::Service | JobType::System => {
                let layers = [self.update.as_ref(), group.get("Update")];
                group.insert("Update".into(), merged(to_value(UpdateStrategy::default()), &layers));
            }
            JobType::Batch | JobType::Sysbatch => {
                group.remove("Update");
            }
        }
        if self.job_type == JobType::Service {
            let layers = [self.migrate.as_ref(), group.get("Migrate")];
            group.insert("Migrate".into(), merged(to_value(MigrateStrategy::default()), &layers));
        } else {
            group.remove("Migrate");
        }
        let group_name = group.get("Name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let group_service_name = format!("{}-{}", self.job_name, group_name);
        if let Some(Value::Array(services)) = group.get_mut("Services") {
            services.iter_mut().for_each(|s| canonicalize_service(s, &group_service_name));
        }
        if let Some(Value::Array(tasks)) = group.get_mut("Tasks") {
            for task in tasks.iter_mut().filter_map(Value::as_object_mut) {
                canonicalize_task(task, &restart, &group_service_name);
            }
        }
    }
}

fn canonicalize_task(task: &mut Map<String, Value>, group_restart: &Value, service_prefix: &str) {
    let restart = merged(group_restart.clone(), &[task.get("RestartPolicy")]);
    task.insert("RestartPolicy".into(), restart);
    // A task that asks for whole cores gets no default MHz share (Nomad's rule).
    if let Some(Value::Object(resources)) = task.get_mut("Resources") {
        if resources.contains_key("Cores") && !resources.contains_key("CPU") {
            resources.insert("CPU".into(), Value::from(0));
        }
        canonicalize_networks(resources.get_mut("Networks"));
    }
    if let Some(Value::Array(templates)) = task.get_mut("Templates") {
        templates.iter_mut().filter_map(Value::as_object_mut).for_each(canonicalize_template);
    }
    if let Some(Value::Array(artifacts)) = task.get_mut("Artifacts") {
        artifacts.iter_mut().filter_map(Value::as_object_mut).for_each(canonicalize_artifact);
    }
    let task_name = task.get("Name").and_then(Value::as_str).unwrap_or_default();
    let service_name = format!("{service_prefix}-{task_name}");
    if let Some(Value::Array(services)) = task.get_mut("Services") {
        services.iter_mut().for_each(|s| canonicalize_service(s, &service_name));
    }
}

/// A port without a host network binds to the node's default one; Nomad's server writes
/// that name in (`structs.NetworkResource.Canonicalize`), so a stored job always names it.
fn canonicalize_networks(networks: Option<&mut Value>) {
    let Some(Value::Array(networks)) = networks else { return };
    for network in networks.iter_mut().filter_map(Value::as_object_mut) {
        for key in ["ReservedPorts", "DynamicPorts"] {
            let Some(Value::Array(ports)) = network.get_mut(key) else { continue };
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                default_string(port, "HostNetwork", "default");
            }
        }
    }
}

/// `change_mode = "signal"` without a signal means SIGHUP, and signal names are upper case
/// (api/tasks.go `Template.Canonicalize`), so `"sighup"` and `"SIGHUP"` are the same job.
fn canonicalize_template(template: &mut Map<String, Value>) {
    match template.get("ChangeSignal") {
        Some(Value::String(signal)) => {
            let upper = signal.to_uppercase();
            template.insert("ChangeSignal".into(), Value::String(upper));
        }
        None if template.get("ChangeMode").and_then(Value::as_str) == Some("signal") => {
            template.insert("ChangeSignal".into(), Value::String("SIGHUP".into()));
        }
        _ => {}
    }
}

/// An artifact fetched in `file` mode lands at `local/<file name>` rather than in the
/// `local/` directory (api/tasks.go `TaskArtifact.Canonicalize`).
fn canonicalize_artifact(artifact: &mut Map<String, Value>) {
    let file_mode = artifact.get("GetterMode").and_then(Value::as_str) == Some("file");
    if !file_mode || artifact.contains_key("RelativeDest") {
        return;
    }
    let source = artifact.get("GetterSource").and_then(Value::as_str).unwrap_or_default();
    let file_name = source.rsplit('/').find(|part| !part.is_empty()).unwrap_or_default();
    artifact.insert("RelativeDest".into(), Value::String(format!("local/{file_name}")));
}

/// Nomad's scaling defaults: a policy is enabled unless it says otherwise, an unset count
/// starts at the policy's min, and an unset min is the count.
fn canonicalize_scaling(group: &mut Map<String, Value>) {
    let Some(Value::Object(scaling)) = group.get_mut("Scaling") else { return };
    scaling.entry("Enabled").or_insert(Value::Bool(true));
    default_string(scaling, "Type", SCALING_POLICY_TYPE_HORIZONTAL);
    let min = scaling.get("Min").cloned();
    match (group.contains_key("Count"), min) {
        (false, Some(min)) => {
            group.insert("Count".into(), min);
        }
        (true, None) => {
            let count = group.get("Count").cloned().unwrap_or(Value::from(1));
            if let Some(Value::Object(scaling)) = group.get_mut("Scaling") {
                scaling.insert("Min".into(), count);
            }
        }
        (false, None) => {
            if let Some(Value::Object(scaling)) = group.get_mut("Scaling") {
                scaling.insert("Min".into(), Value::from(1));
            }
        }
        (true, Some(_)) => {}
    }
}

fn canonicalize_service(service: &mut Value, default_name: &str) {
    let Value::Object(service) = service else { return };
    default_string(service, "Name", default_name);
    // A service's check_restart is every check's default (api/services.go).
    if let Some(service_restart) = service.get("CheckRestart").cloned()
        && let Some(Value::Array(checks)) = service.get_mut("Checks")
    {
        for check in checks.iter_mut().filter_map(Value::as_object_mut) {
            let own = check.get("CheckRestart").cloned();
            check.insert("CheckRestart".into(), merged(service_restart.clone(), &[own.as_ref()]));
        }
    }
    let on_update =
        service.get("OnUpdate").and_then(Value::as_str).unwrap_or("require_healthy").to_owned();
    if let Some(Value::Array(checks)) = service.get_mut("Checks") {
        for check in checks.iter_mut().filter_map(Value::as_object_mut) {
            default_string(check, "OnUpdate", &on_update);
        }
    }
}

/// `base` with the keys of each present layer written over it, later layers winning.
fn merged(base: Value, layers: &[Option<&Value>]) -> Value {
    let Value::Object(mut out) = base else { return base };
    for layer in layers.iter().flatten() {
        if let Value::Object(fields) = layer {
            out.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    Value::Object(out)
}

fn default_string(map: &mut Map<String, Value>, key: &str, default: &str) {
    let empty = map.get(key).and_then(Value::as_str).is_none_or(str::is_empty);
    if empty && !default.is_empty() {
        map.insert(key.into(), Value::String(default.into()));
    }
}

fn to_value<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn type_error(path: &str, expected: &str) -> ApiDecodeError {
    ApiDecodeError { path: path.into(), message: format!("expected {expected}") }
}
