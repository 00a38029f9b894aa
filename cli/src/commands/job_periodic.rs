//! `drover job periodic force <job>`: launches a periodic job now, as Nomad's
//! `job periodic force` does, and monitors the child's evaluation (or, with `-detach`,
//! prints its ID).

use super::{Command, Io, api_command_with_args, dispatch, report};
use crate::api::{Client, EvalWrite, encode_component};
use crate::flags::FlagSpec;

const HELP: &str = "\
Usage: drover job periodic <subcommand> [options] [args]

  This command groups subcommands for interacting with periodic jobs.

Subcommands:
    force       Force the launch of a periodic job
";

const FORCE_HELP: &str = "\
Usage: drover job periodic force <job id>

  This command is used to force the creation of a new instance of a periodic job.
  This is used to immediately run a periodic job, even if it violates the job's
  prohibit_overlap setting.

Periodic Force Options:

  -detach
    Return immediately instead of entering monitor mode. After the force,
    the evaluation ID will be printed to the screen, which can be used to
    examine the evaluation using the eval status command.
";

const FORCE_FLAGS: &[FlagSpec] = &[FlagSpec::bool("detach"), FlagSpec::bool("verbose")];

const SUBCOMMANDS: &[(&str, Command)] = &[("force", force)];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, SUBCOMMANDS, HELP, io)
}

fn force(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) =
        match api_command_with_args(args, FORCE_FLAGS, FORCE_HELP, &["<job id>"], io) {
            Ok(parsed) => parsed,
            Err(code) => return code,
        };
    report(io, |io| {
        let job_id = periodic_job_by_prefix(&client, flags.args[0].trim())?;
        let path = format!("/v1/job/{}/periodic/force", encode_component(&job_id));
        let answer: EvalWrite = client
            .write("POST", &path, &[], None)
            .map_err(|error| format!("Error forcing periodic job {job_id:?}: {error}"))?;
        if flags.is_set("detach") {
            let _ = writeln!(io.out, "Force periodic successful");
            let _ = writeln!(io.out, "Evaluation ID: {}", answer.eval_id);
            return Ok(0);
        }
        Ok(crate::monitor::monitor(&client, &answer.eval_id, flags.is_set("verbose"), io))
    })
}

/// The one periodic job whose ID is or starts with `prefix` (Nomad's `JobIDByPrefix`
/// filtered to periodic jobs, with its texts).
fn periodic_job_by_prefix(client: &Client, prefix: &str) -> Result<String, String> {
    let params = [("prefix", prefix.to_owned())];
    let (rows, _) = client
        .get::<Vec<serde_json::Value>>("/v1/jobs", &params, None)
        .map_err(|error| format!("Error querying job: {error}"))?;
    let periodic = |row: &serde_json::Value| match &row["Periodic"] {
        serde_json::Value::Bool(periodic) => *periodic,
        other => other.is_object(),
    };
    let ids: Vec<&str> =
        rows.iter().filter(|row| periodic(row)).filter_map(|row| row["ID"].as_str()).collect();
    if let Some(exact) = ids.iter().find(|id| **id == prefix) {
        return Ok((*exact).to_owned());
    }
    match ids.as_slice() {
        [] => Err(format!("No periodic job(s) with prefix or ID {prefix:?} found")),
        [one] => Ok((*one).to_owned()),
        many => Err(format!("Prefix matched multiple jobs\n\n{}", many.join("\n"))),
    }
}
