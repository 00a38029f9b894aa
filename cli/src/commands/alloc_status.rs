//! `drover alloc status <alloc>`: one allocation, its tasks and their recent events.

use super::{Io, api_command_with_args, print_json, report, resolve_prefix};
use crate::flags::FlagSpec;
use crate::output::{key_values, now_ns, table, time_ago, time_text};
use drover_core::model::{Allocation, TaskEvent, TaskState};

const HELP: &str = "\
Usage: drover alloc status [options] <allocation>

  Display information about existing allocations and its tasks. This command can
  be used to inspect the current status of an allocation, including its running
  status, metadata, and verbose failure messages reported by internal
  subsystems.

Alloc Status Options:

  -json
    Output the allocation in its JSON format.

  -verbose
    Show full information.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("json"), FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command_with_args(args, FLAGS, HELP, &["<allocation>"], io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let alloc_id = resolve_prefix(&client, "/v1/allocations", &flags.args[0], "allocation")?;
        let (alloc, _) = client
            .get::<Allocation>(&format!("/v1/allocation/{alloc_id}"), &[], None)
            .map_err(|error| format!("Error querying allocation: {error}"))?;
        if flags.is_set("json") {
            return print_json(&alloc, io);
        }
        let verbose = flags.is_set("verbose");
        let _ = write!(io.out, "{}", key_values(&alloc_fields(&alloc, verbose)));
        for (name, state) in &alloc.task_states {
            let _ = write!(io.out, "\n{}", task_section(&alloc, name, state));
        }
        Ok(0)
    })
}

fn or_none(text: &str) -> String {
    if text.is_empty() { "<none>".to_owned() } else { text.to_owned() }
}

fn alloc_fields(alloc: &Allocation, verbose: bool) -> Vec<(&'static str, String)> {
    let id = |id: &str| crate::output::display_id(id, verbose);
    let now = now_ns();
    let mut fields = vec![
        ("ID", id(&alloc.id)),
        ("Eval ID", id(&alloc.eval_id)),
        ("Name", alloc.name.clone()),
        ("Node ID", id(&alloc.node_id)),
        ("Node Name", alloc.node_name.clone()),
        ("Job ID", alloc.job_id.clone()),
        ("Job Version", alloc.job_version.to_string()),
        ("Client Status", alloc.client_status.as_str().to_owned()),
        ("Client Description", or_none(&alloc.client_description)),
        ("Desired Status", alloc.desired_status.as_str().to_owned()),
        ("Desired Description", or_none(&alloc.desired_description)),
        ("Created", time_ago(alloc.create_time, now)),
        ("Modified", time_ago(alloc.modify_time, now)),
    ];
    if !alloc.deployment_id.is_empty() {
        fields.push(("Deployment ID", id(&alloc.deployment_id)));
        let health = match alloc.deployment_healthy() {
            None => "unset",
            Some(true) => "healthy",
            Some(false) => "unhealthy",
        };
        fields.push(("Deployment Health", health.to_owned()));
    }
    fields
}

/// `Task "web" is "running"`, its resources, restart counts and events, newest first.
fn task_section(alloc: &Allocation, name: &str, state: &TaskState) -> String {
    let state_name = serde_json::to_value(state.state).ok();
    let state_name = state_name.as_ref().and_then(|v| v.as_str()).unwrap_or_default();
    let mut text = format!("Task {name:?} is {state_name:?}\n");
    text.push_str("Task Resources:\n");
    text.push_str(&resources_table(alloc, name));
    let when = |at: drover_core::model::Timestamp| {
        if at.is_unset() { "N/A".to_owned() } else { time_text(at.0) }
    };
    let counts = [
        ("Started At", when(state.started_at)),
        ("Finished At", when(state.finished_at)),
        ("Total Restarts", state.restarts.to_string()),
        ("Last Restart", when(state.last_restart)),
    ];
    text.push_str(&format!("\nTask Events:\n{}", key_values(&counts)));
    let mut rows = vec![crate::output::cells(&["Time", "Type", "Description"])];
    rows.extend(
        state
            .events
            .iter()
            .rev()
            .map(|event| vec![time_text(event.time), event.event_type.clone(), describe(event)]),
    );
    text.push_str(&format!("\nRecent Events:\n{}", table(&rows)));
    text
}

fn resources_table(alloc: &Allocation, task: &str) -> String {
    let resources = alloc.allocated_resources.tasks.get(task).cloned().unwrap_or_default();
    let addresses: Vec<String> = alloc
        .allocated_resources
        .shared
        .ports
        .iter()
        .map(|port| format!("{}: {}:{}", port.label, port.host_ip, port.value))
        .collect();
    let rows = vec![
        crate::output::cells(&["CPU", "Memory", "Disk", "Addresses"]),
        vec![
            format!("{} MHz", resources.cpu.cpu_shares),
            format!("{} MiB", resources.memory.memory_mb),
            format!("{} MiB", alloc.allocated_resources.shared.disk_mb),
            addresses.join(", "),
        ],
    ];
    table(&rows)
}

/// An event's message: the client's display message, or what the type says.
fn describe(event: &TaskEvent) -> String {
    if !event.display_message.is_empty() {
        return event.display_message.clone();
    }
    if !event.message.is_empty() {
        return event.message.clone();
    }
    match event.event_type.as_str() {
        "Terminated" => format!("Exit Code: {}", event.exit_code),
        _ => String::new(),
    }
}
