//! `drover job validate`: parses and validates a job file without talking to an agent.

use super::{Io, load_job_arg, parse_flags};
use crate::flags::FlagSpec;

const HELP: &str = concat!(
    "\
Usage: drover job validate [options] <path>
Alias: drover validate

  Checks if a given HCL job file has a valid specification. This can be used to
  check for any syntax errors or validation problems with a job.

  If the supplied path is \"-\", the jobfile is read from stdin. Otherwise it is
  read from the file at the supplied path.

Validate Options:

",
    job_file_options_help!()
);

const FLAGS: &[FlagSpec] =
    &[FlagSpec::bool("json"), FlagSpec::repeated("var"), FlagSpec::repeated("var-file")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let flags = match parse_flags(args, FLAGS, HELP, io) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    match load_job_arg(&flags, HELP, io) {
        Ok(_) => {
            let _ = writeln!(io.out, "Job validation successful");
            0
        }
        Err(code) => code,
    }
}
