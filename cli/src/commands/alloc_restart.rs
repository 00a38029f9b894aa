//! `drover alloc restart <alloc> [task]`: restarts a task of an allocation, or every
//! running task, in place on the client that runs it, as Nomad's `alloc restart`.

use super::{Io, api_command, report, resolve_prefix};
use crate::api::encode_component;
use crate::flags::FlagSpec;

const HELP: &str = "\
Usage: drover alloc restart [options] <allocation> <task>

  Restart an existing allocation. This command is used to restart a specific alloc
  and its tasks. If no task is provided then all of the allocation's tasks that
  are currently running will be restarted.

  Use the option '-all-tasks' to restart tasks that have already run, such
  as non-sidecar prestart and poststart tasks.

Restart Specific Options:

  -all-tasks
    If set, all tasks in the allocation will be restarted, even the ones that
    already ran. This option cannot be used with '-task' or the '<task>'
    argument. Tasks that already ran are not started again yet: every running
    task is restarted.

  -task <task-name>
    Specify the individual task to restart. If task name is given with both an
    argument and the '-task' option, preference is given to the '-task' option.

  -verbose
    Show full information.
";

const FLAGS: &[FlagSpec] =
    &[FlagSpec::bool("all-tasks"), FlagSpec::value("task"), FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if flags.args.is_empty() || flags.args.len() > 2 {
        let _ = writeln!(io.err, "This command takes one or two arguments: <allocation> <task>");
        let _ = writeln!(io.err, "For additional help try 'drover alloc restart -help'");
        return 1;
    }
    let task = flags.last("task").map(str::to_owned).or_else(|| flags.args.get(1).cloned());
    let all_tasks = flags.is_set("all-tasks");
    if all_tasks && task.is_some() {
        let _ = writeln!(io.err, "The -all-tasks option is not allowed when restarting a task");
        return 1;
    }
    report(io, |_io| {
        let alloc_id = resolve_prefix(&client, "/v1/allocations", &flags.args[0], "allocation")?;
        let path = format!("/v1/client/allocation/{}/restart", encode_component(&alloc_id));
        let body = serde_json::json!({
            "TaskName": task.unwrap_or_default(),
            "AllTasks": all_tasks,
        });
        client
            .write::<serde_json::Value>("PUT", &path, &[], Some(&body))
            .map_err(|error| format!("Failed to restart allocation:\n\n{error}"))?;
        Ok(0)
    })
}
