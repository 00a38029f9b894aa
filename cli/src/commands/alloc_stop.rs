//! `drover alloc stop <alloc>`: stops an allocation so the scheduler replaces it, and
//! monitors the evaluation that does it, as Nomad's `alloc stop`.

use super::{Io, api_command_with_args, report, resolve_prefix};
use crate::api::{EvalWrite, encode_component};
use crate::flags::FlagSpec;

const HELP: &str = "\
Usage: drover alloc stop [options] <allocation>

  Stop an existing allocation. This command is used to signal a specific alloc
  to shut down. When the allocation has been shut down, it will then be
  rescheduled. An interactive monitoring session will display log lines as the
  allocation completes shutting down. It is safe to exit the monitor early with
  ctrl-c.

Stop Specific Options:

  -detach
    Return immediately instead of entering monitor mode. After the
    stop command is submitted, a new evaluation ID is printed to the
    screen, which can be used to examine the rescheduling evaluation using the
    eval status command.

  -verbose
    Show full information.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("detach"), FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command_with_args(args, FLAGS, HELP, &["<allocation>"], io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let alloc_id = resolve_prefix(&client, "/v1/allocations", &flags.args[0], "allocation")?;
        let path = format!("/v1/allocation/{}/stop", encode_component(&alloc_id));
        let answer: EvalWrite = client
            .write("PUT", &path, &[], None)
            .map_err(|error| format!("Error stopping allocation: {error}"))?;
        if flags.is_set("detach") {
            let _ = writeln!(io.out, "{}", answer.eval_id);
            return Ok(0);
        }
        Ok(crate::monitor::monitor(&client, &answer.eval_id, flags.is_set("verbose"), io))
    })
}
