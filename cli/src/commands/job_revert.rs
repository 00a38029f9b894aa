//! `drover job revert <job> <version>`: registers a kept version again and monitors the
//! evaluation.

use super::{Io, api_command_with_args, report, resolve_prefix};
use crate::api::{EvalWrite, encode_component};
use crate::flags::FlagSpec;
use serde_json::json;

const HELP: &str = "\
Usage: drover job revert [options] <job> <version>

  Revert is used to revert a job to a prior version of the job. The available
  versions to revert to can be found using \"drover job history\" command.

Revert Options:

  -detach
    Return immediately instead of entering monitor mode. After job revert,
    the evaluation ID will be printed to the screen, which can be used to
    examine the evaluation using the eval status command.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("detach")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) =
        match api_command_with_args(args, FLAGS, HELP, &["<job>", "<version>"], io) {
            Ok(parsed) => parsed,
            Err(code) => return code,
        };
    report(io, |io| {
        let text = &flags.args[1];
        let version: u64 = text
            .parse()
            .map_err(|_| format!("The job version to revert to must be a number, not {text:?}"))?;
        let job_id = resolve_prefix(&client, "/v1/jobs", &flags.args[0], "job")?;
        let path = format!("/v1/job/{}/revert", encode_component(&job_id));
        let body = json!({ "JobID": job_id, "JobVersion": version });
        let answer: EvalWrite = client
            .write("PUT", &path, &[], Some(&body))
            .map_err(|error| format!("Error reverting job: {error}"))?;
        if flags.is_set("detach") || answer.eval_id.is_empty() {
            if !answer.eval_id.is_empty() {
                let _ = writeln!(io.out, "Evaluation ID: {}", answer.eval_id);
            }
            return Ok(0);
        }
        Ok(crate::monitor::monitor(&client, &answer.eval_id, false, io))
    })
}
