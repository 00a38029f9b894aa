//! The command tree and its help texts.
//!
//! `drover <command> [args]` and `drover job <subcommand> [args]`. The top-level `run` and
//! `validate` are aliases of the `job` subcommands, as in Nomad.

mod agent;
mod job_init;
mod job_run;
mod job_validate;
mod tls;

use std::io::Write;

/// Where a command writes: stdout and stderr, or buffers in tests.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Exit code for "this command does not exist" (what Nomad's CLI library returns).
const EXIT_UNKNOWN_COMMAND: u8 = 127;

const MAIN_HELP: &str = "\
Usage: drover [-version] [-help] <command> [args]

Common commands:
    agent       Runs a drover agent
    run         Run a new job or update an existing job
    job         Interact with jobs
    tls         Create the certificates agents verify each other with
    validate    Checks if a given job specification is valid
    version     Prints the drover version
";

const JOB_HELP: &str = "\
Usage: drover job <subcommand> [options] [args]

  This command groups subcommands for interacting with jobs.

  Create an example job file:

      $ drover job init

  Check that a job file is valid:

      $ drover job validate <path>

  Print the API form of a job without submitting it:

      $ drover job run -output <path>

  Please see the individual subcommand help for detailed usage information.

Subcommands:
    init        Create an example job file
    run         Run a new job or update an existing job
    validate    Checks if a given job specification is valid
";

type Command = fn(&[String], &mut Io<'_>) -> u8;

const COMMANDS: &[(&str, Command)] = &[
    ("agent", agent::run),
    // Not in the help: the process raw_exec runs each task under.
    ("executor", agent::executor),
    ("job", job),
    ("run", job_run::run),
    ("tls", tls::run),
    ("validate", job_validate::run),
    ("version", version),
];

const JOB_SUBCOMMANDS: &[(&str, Command)] =
    &[("init", job_init::run), ("run", job_run::run), ("validate", job_validate::run)];

/// Runs the command named by `args[0]` and returns its exit code.
pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, COMMANDS, MAIN_HELP, io)
}

fn job(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, JOB_SUBCOMMANDS, JOB_HELP, io)
}

fn dispatch(args: &[String], table: &[(&str, Command)], help: &str, io: &mut Io<'_>) -> u8 {
    let Some(first) = args.first() else {
        let _ = write!(io.err, "{help}");
        return 1;
    };
    if matches!(first.as_str(), "-h" | "-help" | "--help" | "help") {
        let _ = write!(io.out, "{help}");
        return 0;
    }
    if matches!(first.as_str(), "-v" | "-version" | "--version") {
        return version(&[], io);
    }
    match table.iter().find(|(name, _)| name == first) {
        Some((_, command)) => command(&args[1..], io),
        None => {
            let _ = writeln!(io.err, "Unknown command: {first:?}\n");
            let _ = write!(io.err, "{help}");
            EXIT_UNKNOWN_COMMAND
        }
    }
}

fn version(_args: &[String], io: &mut Io<'_>) -> u8 {
    let _ = writeln!(io.out, "drover v{}", env!("CARGO_PKG_VERSION"));
    0
}

/// Parses a command's flags; on `-help` prints its help, on a bad flag prints the error and
/// the help to stderr. `Err(code)` is the exit code to return at once.
fn parse_flags(
    args: &[String],
    specs: &[crate::flags::FlagSpec],
    help: &str,
    io: &mut Io<'_>,
) -> Result<crate::flags::Parsed, u8> {
    match crate::flags::parse(args, specs) {
        Ok(parsed) if parsed.wants_help() => {
            let _ = write!(io.out, "{help}");
            Err(0)
        }
        Ok(parsed) => Ok(parsed),
        Err(error) => {
            let _ = writeln!(io.err, "{error}\n");
            let _ = write!(io.err, "{help}");
            Err(1)
        }
    }
}

/// The `<path>` argument of `job run` and `job validate`, read with the `-json`, `-var` and
/// `-var-file` flags both commands share, as a parsed, canonical and valid job. `Err` is the
/// exit code; the complaint is already printed.
fn load_job_arg(
    flags: &crate::flags::Parsed,
    help: &str,
    io: &mut Io<'_>,
) -> Result<drover_core::model::Job, u8> {
    let [path] = flags.args.as_slice() else {
        // Nomad's wording (command/job_validate.go and job_run.go).
        let _ = writeln!(io.err, "This command takes one argument: <path>");
        let _ = writeln!(io.err, "For additional help try 'drover {} -help'", command_name(help));
        return Err(1);
    };
    let source = crate::jobfile::JobSource {
        path,
        vars: flags.all("var"),
        var_files: flags.all("var-file"),
        json: flags.is_set("json"),
    };
    crate::jobfile::load(&source).map_err(|message| {
        let _ = writeln!(io.err, "{message}");
        1
    })
}

/// `Usage: drover job run [options] <path>` → `job run`.
fn command_name(help: &str) -> String {
    let usage = help.lines().next().unwrap_or_default();
    let words: Vec<&str> = usage
        .split_whitespace()
        .skip(2)
        .take_while(|w| !w.starts_with('[') && !w.starts_with('<'))
        .collect();
    words.join(" ")
}
