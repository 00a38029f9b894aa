//! `drover job run`: for now the `-output` form, which prints the job's API JSON.
//!
//! Submitting and monitoring need an agent's HTTP API; until `drover agent` exists the
//! command says so plainly instead of pretending.

use super::{Io, load_job_arg, parse_flags};
use crate::flags::FlagSpec;

const HELP: &str = "\
Usage: drover job run [options] <path>
Alias: drover run

  Starts running a new job or updates an existing job using the specification
  located at <path>. This is the main command used to interact with drover.

  If the supplied path is \"-\", the jobfile is read from stdin. Otherwise it is
  read from the file at the supplied path.

Run Options:

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
";

const FLAGS: &[FlagSpec] = &[
    FlagSpec::bool("json"),
    FlagSpec::bool("output"),
    FlagSpec::repeated("var"),
    FlagSpec::repeated("var-file"),
];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let flags = match parse_flags(args, FLAGS, HELP, io) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    let job = match load_job_arg(&flags, HELP, io) {
        Ok(job) => job,
        Err(code) => return code,
    };
    if !flags.is_set("output") {
        let _ = writeln!(
            io.err,
            "Error submitting job: this build of drover has no agent to submit to yet; \
             use -output to print the job's API JSON"
        );
        return 1;
    }
    let document = drover_core::model::job_to_api_json(&job);
    let text = serde_json::to_string_pretty(&document).unwrap_or_default();
    let _ = writeln!(io.out, "{text}");
    0
}
