//! `drover job init`: writes an example job file to start from.

use super::{Io, parse_flags};
use crate::flags::FlagSpec;
use std::io::Write;

const HELP: &str = "\
Usage: drover job init [options] [filename]

  Creates an example job file that can be used as a starting point to customize
  further. When no filename is supplied, a default filename of
  \"example.nomad.hcl\" will be used.

Init Options:

  -short
    If the short flag is set, a minimal jobspec without comments is emitted.
";

const DEFAULT_FILE_NAME: &str = "example.nomad.hcl";
pub const EXAMPLE_JOB: &str = include_str!("../../assets/example.nomad.hcl");
pub const EXAMPLE_JOB_SHORT: &str = include_str!("../../assets/example-short.nomad.hcl");

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let flags = match parse_flags(args, &[FlagSpec::bool("short")], HELP, io) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    if flags.args.len() > 1 {
        let _ = writeln!(io.err, "This command takes no arguments or one: <filename>");
        return 1;
    }
    let file_name = flags.args.first().map_or(DEFAULT_FILE_NAME, String::as_str);
    let contents = if flags.is_set("short") { EXAMPLE_JOB_SHORT } else { EXAMPLE_JOB };
    // create_new: never overwrite a job file someone already edited.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file_name)
        .and_then(|mut file| file.write_all(contents.as_bytes()));
    match written {
        Ok(()) => {
            let _ = writeln!(io.out, "Example job file written to {file_name}");
            0
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = writeln!(io.err, "Job '{file_name}' already exists");
            1
        }
        Err(error) => {
            let _ = writeln!(io.err, "Failed to write '{file_name}': {error}");
            1
        }
    }
}
