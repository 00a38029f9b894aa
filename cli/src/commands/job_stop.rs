//! `drover job stop <job>`: deregisters a job (or purges it) and monitors the evaluation.

use super::{Io, api_command_with_args, report, resolve_prefix};
use crate::api::{EvalWrite, encode_component};
use crate::flags::FlagSpec;

const HELP: &str = "\
Usage: drover job stop [options] <job>
Alias: drover stop

  Stop an existing job. This command is used to signal allocations to shut
  down for the given job ID. Upon successful deregistration, an interactive
  monitor session will start to display log lines as the job unwinds its
  allocations and completes shutting down.

Stop Options:

  -detach
    Return immediately instead of entering monitor mode. After the
    deregister command is submitted, a new evaluation ID is printed to the
    screen, which can be used to examine the evaluation using the eval status
    command.

  -purge
    Purge is used to stop the job and purge it from the system. If not set, the
    job will still be queryable and will be purged by the garbage collector.

  -yes
    Automatic yes to prompts.
";

const FLAGS: &[FlagSpec] =
    &[FlagSpec::bool("detach"), FlagSpec::bool("purge"), FlagSpec::bool("yes")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command_with_args(args, FLAGS, HELP, &["<job>"], io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let job_id = resolve_prefix(&client, "/v1/jobs", &flags.args[0], "job")?;
        let path = format!("/v1/job/{}", encode_component(&job_id));
        let params = [("purge", flags.is_set("purge").to_string())];
        let answer: EvalWrite = client
            .write("DELETE", &path, &params, None)
            .map_err(|error| format!("Error deregistering job: {error}"))?;
        if answer.eval_id.is_empty() {
            return Ok(0);
        }
        if flags.is_set("detach") {
            let _ = writeln!(io.out, "{}", answer.eval_id);
            return Ok(0);
        }
        Ok(crate::monitor::monitor(&client, &answer.eval_id, false, io))
    })
}
