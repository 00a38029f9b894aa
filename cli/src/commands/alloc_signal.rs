//! `drover alloc signal [-s SIGNAL] <alloc> [task]`: sends a signal to a task of an
//! allocation, or to every running task, on the client that runs it, as Nomad's
//! `alloc signal`.

use super::{Io, api_command, report, resolve_prefix};
use crate::api::encode_component;
use crate::flags::FlagSpec;

const HELP: &str = "\
Usage: drover alloc signal [options] <allocation> <task>

  Signal an existing allocation. This command is used to signal a specific alloc
  and its subtasks. If no task is provided then all of the allocations subtasks
  will receive the signal.

Signal Specific Options:

  -s
    Specify the signal that the selected tasks should receive. Defaults to SIGKILL.

  -task <task-name>
    Specify the individual task that will receive the signal. If task name is given
    with both an argument and the '-task' option, preference is given to the '-task'
    option.

  -verbose
    Show full information.
";

/// Nomad's default for `-s`.
const SIGNAL_DEFAULT: &str = "SIGKILL";

const FLAGS: &[FlagSpec] =
    &[FlagSpec::value("s"), FlagSpec::value("task"), FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if flags.args.is_empty() || flags.args.len() > 2 {
        let _ = writeln!(io.err, "This command takes up to two arguments: <alloc-id> <task>");
        let _ = writeln!(io.err, "For additional help try 'drover alloc signal -help'");
        return 1;
    }
    let task = flags.last("task").map(str::to_owned).or_else(|| flags.args.get(1).cloned());
    let signal = flags.last("s").unwrap_or(SIGNAL_DEFAULT);
    report(io, |_io| {
        let alloc_id = resolve_prefix(&client, "/v1/allocations", &flags.args[0], "allocation")?;
        let path = format!("/v1/client/allocation/{}/signal", encode_component(&alloc_id));
        let body = serde_json::json!({ "Task": task.unwrap_or_default(), "Signal": signal });
        client
            .write::<serde_json::Value>("PUT", &path, &[], Some(&body))
            .map_err(|error| format!("Error signalling allocation: {error}"))?;
        Ok(0)
    })
}
