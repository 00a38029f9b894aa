//! `drover job run`: submits a job and monitors its evaluation and deployment, or with
//! `-output` prints the job's API JSON without submitting it.

use super::{Io, api_command, load_job_arg};
use crate::api::{ApiError, EvalWrite};
use crate::flags::FlagSpec;
use serde_json::json;

const HELP: &str = "\
Usage: drover job run [options] <path>
Alias: drover run

  Starts running a new job or updates an existing job using the specification
  located at <path>. This is the main command used to interact with drover.

  If the supplied path is \"-\", the jobfile is read from stdin. Otherwise it is
  read from the file at the supplied path.

  Upon successful job submission, this command will immediately enter an
  interactive monitor. The monitor follows the evaluation and then the
  deployment it placed for, until the deployment ends, is paused, or waits
  for a manual promotion of its canaries. The exit code is 0 when every
  allocation was placed and the deployment, if any, succeeded; 2 when some
  allocation could not be placed (the deployment, which waits for capacity,
  is not followed); and 1 when the deployment did not succeed or on any other
  error. With -detach the command exits as soon as the job is registered.

Run Options:

  -check-index
    If set, the job is only registered or updated if the passed job modify
    index matches the server side version. If a check-index value of zero is
    passed, the job is only registered if it does not yet exist. If a non-zero
    value is passed, it ensures that the job is being updated from a known
    state. The use of this flag is most common in conjunction with plan
    command.

  -detach
    Return immediately instead of entering monitor mode. After job submission,
    the evaluation ID will be printed to the screen, which can be used to
    examine the evaluation using the eval status command.

  -json
    Parses the job file as JSON. If the outer object has a Job field, such as
    from \"drover job inspect\" or \"drover job run -output\", the value of the
    field is used as the job.

  -output
    Output the JSON that would be submitted to the HTTP API without submitting
    the job.

  -var 'key=value'
    Variable for template, can be used multiple times.

  -var-file=path
    Path to HCL2 file containing user variables.

  -verbose
    Display full information: IDs are not shortened, and the deployment
    monitor lists the deployment's allocations.
";

const FLAGS: &[FlagSpec] = &[
    FlagSpec::value("check-index"),
    FlagSpec::bool("detach"),
    FlagSpec::bool("json"),
    FlagSpec::bool("output"),
    FlagSpec::repeated("var"),
    FlagSpec::repeated("var-file"),
    FlagSpec::bool("verbose"),
];

/// The text the server's EnforceIndex refusals start with (Nomad's
/// `RegisterEnforceIndexErrPrefix`).
const ENFORCE_INDEX_PREFIX: &str = "Enforcing job modify index";

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let job = match load_job_arg(&flags, HELP, io) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let mut document = drover_core::model::job_to_api_json(&job);
    if flags.is_set("output") {
        let text = serde_json::to_string_pretty(&document).unwrap_or_default();
        let _ = writeln!(io.out, "{text}");
        return 0;
    }
    if let Some(text) = flags.last("check-index") {
        let Ok(index) = text.parse::<u64>() else {
            let _ = writeln!(io.err, "Error parsing check-index value {text:?}");
            return 1;
        };
        document["EnforceIndex"] = json!(true);
        document["JobModifyIndex"] = json!(index);
    }
    let answer: EvalWrite = match client.write("PUT", "/v1/jobs", &[], Some(&document)) {
        Ok(answer) => answer,
        Err(error) => return refused(&error, io),
    };
    if !answer.warnings.is_empty() {
        let _ = writeln!(io.out, "Job Warnings:\n{}\n", answer.warnings);
    }
    if flags.is_set("detach") || answer.eval_id.is_empty() {
        let _ = writeln!(io.out, "Job registration successful");
        if !answer.eval_id.is_empty() {
            let _ = writeln!(io.out, "Evaluation ID: {}", answer.eval_id);
        }
        return 0;
    }
    crate::monitor::monitor(&client, &answer.eval_id, flags.is_set("verbose"), io)
}

/// A refused registration: an EnforceIndex refusal prints the server's reason and `Job not
/// updated`, as Nomad does; anything else `Error submitting job: …`.
fn refused(error: &ApiError, io: &mut Io<'_>) -> u8 {
    if let ApiError::Status { message, .. } = error
        && let Some(start) = message.find(ENFORCE_INDEX_PREFIX)
    {
        let _ = writeln!(io.err, "{}", message[start..].trim_end());
        let _ = writeln!(io.err, "Job not updated");
        return 1;
    }
    let _ = writeln!(io.err, "Error submitting job: {error}");
    1
}
