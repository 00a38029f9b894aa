//! A task's environment and the runtime interpolation of `${...}` in its config and env.
//!
//! The jobspec leaves `${NOMAD_*}`, `${attr.*}`, `${meta.*}` and `${node.*}` literal; once
//! an allocation is on a node, the client builds the task's environment with Nomad's
//! variable names (directories, limits, identity, ports, meta) and resolves those
//! references against it and the node. A reference nothing defines stays as written, as
//! Nomad leaves it, so a typo shows up in the task's own error rather than as an empty
//! string.

use crate::model::{Allocation, FreeValue, Job, Node, Task};
use crate::scheduler::feasible::resolve;
use std::collections::BTreeMap;

/// Where a task's directories are, as the task will see them (absolute host paths for
/// raw_exec, paths inside the container for isolating drivers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskDirs {
    /// The allocation's shared `alloc/` directory.
    pub alloc_dir: String,
    /// The task's `local/` directory.
    pub task_dir: String,
    pub secrets_dir: String,
}

/// Everything the environment is built from.
pub struct TaskEnvInput<'a> {
    pub alloc: &'a Allocation,
    pub job: &'a Job,
    pub task: &'a Task,
    pub node: &'a Node,
    pub region: &'a str,
    pub dirs: &'a TaskDirs,
}

/// The task's environment: Nomad's variables, then the task's `env` block (interpolated
/// against those variables and the node), which may override them.
pub fn task_env(input: &TaskEnvInput<'_>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    identity_vars(input, &mut env);
    resource_vars(input, &mut env);
    port_vars(input, &mut env);
    meta_vars(input, &mut env);
    let own: Vec<(String, String)> = input
        .task
        .env
        .iter()
        .map(|(key, value)| (key.clone(), interpolate(value, &env, input.node)))
        .collect();
    env.extend(own);
    env
}

fn identity_vars(input: &TaskEnvInput<'_>, env: &mut BTreeMap<String, String>) {
    let alloc = input.alloc;
    let mut set = |key: &str, value: &str| env.insert(key.to_owned(), value.to_owned());
    set("NOMAD_ALLOC_DIR", &input.dirs.alloc_dir);
    set("NOMAD_TASK_DIR", &input.dirs.task_dir);
    set("NOMAD_SECRETS_DIR", &input.dirs.secrets_dir);
    set("NOMAD_ALLOC_ID", &alloc.id);
    set("NOMAD_SHORT_ALLOC_ID", alloc.id.get(..8).unwrap_or(&alloc.id));
    set("NOMAD_ALLOC_NAME", &alloc.name);
    set("NOMAD_ALLOC_INDEX", &alloc.index().unwrap_or(0).to_string());
    set("NOMAD_TASK_NAME", &input.task.name);
    set("NOMAD_GROUP_NAME", &alloc.task_group);
    set("NOMAD_JOB_ID", &input.job.id);
    set("NOMAD_JOB_NAME", &input.job.name);
    if !input.job.parent_id.is_empty() {
        set("NOMAD_JOB_PARENT_ID", &input.job.parent_id);
    }
    set("NOMAD_NAMESPACE", &alloc.namespace);
    set("NOMAD_DC", &input.node.datacenter);
    set("NOMAD_REGION", input.region);
}

fn resource_vars(input: &TaskEnvInput<'_>, env: &mut BTreeMap<String, String>) {
    let allocated = input.alloc.allocated_resources.tasks.get(&input.task.name);
    let requested = &input.task.resources;
    let (cpu_mhz, memory_mb, memory_max_mb, cores) = match allocated {
        Some(a) => (
            a.cpu.cpu_shares,
            a.memory.memory_mb,
            a.memory.memory_max_mb,
            a.cpu.reserved_cores.clone(),
        ),
        None => (
            i64::from(requested.cpu_mhz),
            i64::from(requested.memory_mb),
            i64::from(requested.memory_max_mb),
            Vec::new(),
        ),
    };
    env.insert("NOMAD_CPU_LIMIT".into(), cpu_mhz.to_string());
    env.insert("NOMAD_MEMORY_LIMIT".into(), memory_mb.to_string());
    if memory_max_mb > memory_mb {
        env.insert("NOMAD_MEMORY_MAX_LIMIT".into(), memory_max_mb.to_string());
    }
    if !cores.is_empty() {
        env.insert("NOMAD_CPU_CORES".into(), cpuset_list(&cores));
    }
}

/// Cores in cpuset list notation: `0-2,7,12-14`.
pub fn cpuset_list(cores: &[u32]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for core in sorted {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == core => *end = core,
            _ => ranges.push((core, core)),
        }
    }
    let text: Vec<String> = ranges
        .iter()
        .map(
            |&(start, end)| if start == end { start.to_string() } else { format!("{start}-{end}") },
        )
        .collect();
    text.join(",")
}

/// For each port: the address the task binds (`NOMAD_IP/PORT/ADDR_<label>`, the mapped
/// `to` port when there is one) and the host side (`NOMAD_HOST_IP/PORT/ADDR_<label>`).
fn port_vars(input: &TaskEnvInput<'_>, env: &mut BTreeMap<String, String>) {
    for port in &input.alloc.allocated_resources.shared.ports {
        let label = env_name(&port.label);
        let inside = if port.to > 0 { port.to } else { port.value };
        let ip = &port.host_ip;
        env.insert(format!("NOMAD_IP_{label}"), ip.clone());
        env.insert(format!("NOMAD_PORT_{label}"), inside.to_string());
        env.insert(format!("NOMAD_ADDR_{label}"), join_host_port(ip, inside));
        env.insert(format!("NOMAD_ALLOC_PORT_{label}"), inside.to_string());
        env.insert(format!("NOMAD_HOST_IP_{label}"), ip.clone());
        env.insert(format!("NOMAD_HOST_PORT_{label}"), port.value.to_string());
        env.insert(format!("NOMAD_HOST_ADDR_{label}"), join_host_port(ip, port.value));
    }
}

fn join_host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

/// Job, then group, then task meta (the inner wins), each as `NOMAD_META_<key>` and, when
/// it differs, the upper-case `NOMAD_META_<KEY>`.
fn meta_vars(input: &TaskEnvInput<'_>, env: &mut BTreeMap<String, String>) {
    let group = input.job.task_groups.iter().find(|g| g.name == input.alloc.task_group);
    let mut meta = input.job.meta.clone();
    meta.extend(group.map(|g| g.meta.clone()).unwrap_or_default());
    meta.extend(input.task.meta.clone());
    for (key, value) in meta {
        let name = env_name(&key);
        env.insert(format!("NOMAD_META_{}", name.to_uppercase()), value.clone());
        env.insert(format!("NOMAD_META_{name}"), value);
    }
}

/// A label or key as part of a variable name: anything but `[A-Za-z0-9_]` becomes `_`.
pub fn env_name(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Replaces every `${name}` in `text` that the node (`attr.*`, `meta.*`, `node.*`) or the
/// environment defines; anything else, including an unterminated `${`, stays as written.
pub fn interpolate(text: &str, env: &BTreeMap<String, String>, node: &Node) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        let reference = &after[..=end];
        let name = &reference[2..end];
        match resolve(reference, node).or_else(|| env.get(name).map(String::as_str)) {
            Some(value) => out.push_str(value),
            None => out.push_str(reference),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Interpolates every string inside a driver `config` value, keys left alone.
pub fn interpolate_config(
    config: &BTreeMap<String, FreeValue>,
    env: &BTreeMap<String, String>,
    node: &Node,
) -> BTreeMap<String, FreeValue> {
    config.iter().map(|(key, value)| (key.clone(), interpolate_value(value, env, node))).collect()
}

fn interpolate_value(value: &FreeValue, env: &BTreeMap<String, String>, node: &Node) -> FreeValue {
    match value {
        FreeValue::String(text) => FreeValue::String(interpolate(text, env, node)),
        FreeValue::List(items) => {
            FreeValue::List(items.iter().map(|v| interpolate_value(v, env, node)).collect())
        }
        FreeValue::Map(map) => FreeValue::Map(interpolate_config(map, env, node)),
        other => other.clone(),
    }
}
