//! The command tree and its help texts.
//!
//! `drover <command> [args]` and `drover job <subcommand> [args]`. The top-level `run` and
//! `validate` are aliases of the `job` subcommands, as in Nomad.

/// The help text of the flags every command reading a job file shares (`-json`, `-var`,
/// `-var-file`), for `concat!` into each command's help.
macro_rules! job_file_options_help {
    () => {
        "  -json
    Parses the job file as JSON. If the outer object has a Job field, such as
    from \"drover job inspect\" or \"drover job run -output\", the value of the
    field is used as the job.

  -var 'key=value'
    Variable for template, can be used multiple times.

  -var-file=path
    Path to HCL2 file containing user variables.
"
    };
}

mod agent;
mod alloc_fs;
mod alloc_logs;
mod alloc_restart;
mod alloc_signal;
mod alloc_status;
mod alloc_stop;
mod cluster_info;
mod deployment;
mod deployment_actions;
mod eval_status;
mod job_init;
mod job_inspect;
mod job_periodic;
mod job_plan;
mod job_revert;
mod job_run;
mod job_status;
mod job_stop;
mod job_validate;
mod node_drain;
mod node_status;
mod operator_gossip;
mod server_members;
mod tls;

use std::io::Write;

/// Where a command writes: stdout and stderr, or buffers in tests.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// `out` is a terminal: a monitor may redraw what it printed instead of appending.
    pub tty: bool,
}

/// Exit code for "this command does not exist" (what Nomad's CLI library returns).
const EXIT_UNKNOWN_COMMAND: u8 = 127;

const MAIN_HELP: &str = "\
Usage: drover [-version] [-help] <command> [args]

Common commands:
    run         Run a new job or update an existing job
    stop        Stop a running job
    status      Display the status output for a resource
    alloc       Interact with allocations
    job         Interact with jobs
    node        Interact with nodes
    agent       Runs a drover agent

Other commands:
    agent-info  Display status information about the local agent
    deployment  Interact with deployments
    eval        Interact with evaluations
    fs          Inspect the contents of an allocation directory
    inspect     Inspect a submitted job
    logs        Streams the logs of a task
    operator    Provides cluster-level tools for drover operators
    plan        Dry-run a job update to determine its effects
    server      Interact with servers
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
    history     Display all tracked versions of a job
    init        Create an example job file
    inspect     Inspect a submitted job
    periodic    Interact with periodic jobs
    plan        Dry-run a job update to determine its effects
    revert      Revert to a prior version of the job
    run         Run a new job or update an existing job
    status      Display status information about a job
    stop        Stop a running job
    validate    Checks if a given job specification is valid
";

const ALLOC_HELP: &str = "\
Usage: drover alloc <subcommand> [options] [args]

  This command groups subcommands for interacting with allocations.

Subcommands:
    fs          Inspect the contents of an allocation directory
    logs        Streams the logs of a task
    restart     Restart a running allocation
    signal      Signal a running allocation
    status      Display allocation status information and metadata
    stop        Stop and reschedule a running allocation
";

const NODE_HELP: &str = "\
Usage: drover node <subcommand> [options] [args]

  This command groups subcommands for interacting with nodes.

Subcommands:
    drain       Toggle drain mode on a given node
    eligibility Toggle scheduling eligibility for a given node
    status      Display status information about nodes
";

const EVAL_HELP: &str = "\
Usage: drover eval <subcommand> [options] [args]

  This command groups subcommands for interacting with evaluations.

Subcommands:
    status      Display evaluation status and placement failure reasons
";

const DEPLOYMENT_HELP: &str = "\
Usage: drover deployment <subcommand> [options] [args]

  This command groups subcommands for interacting with deployments.

Subcommands:
    fail        Manually fail a deployment
    list        List all deployments
    pause       Pause a deployment
    promote     Promote canaries in a deployment
    resume      Resume a paused deployment
    status      Display the status of a deployment
";

const OPERATOR_HELP: &str = "\
Usage: drover operator <subcommand> [options] [args]

  Provides cluster-level tools for drover operators.

Subcommands:
    autopilot   Provides access to the Autopilot subsystem
    gossip      Provides access to the gossip subsystem
    keygen      Generates a new gossip encryption key
    raft        Provides access to the Raft subsystem
";

const AUTOPILOT_HELP: &str = "\
Usage: drover operator autopilot <subcommand> [options]

  This command groups subcommands for interacting with drover's Autopilot
  subsystem. Autopilot provides automatic, operator-friendly management of
  drover servers: cleanup of dead servers and stable server introduction.

Subcommands:
    get-config    Display the current Autopilot configuration
    set-config    Modify the current Autopilot configuration
";

const RAFT_HELP: &str = "\
Usage: drover operator raft <subcommand> [options] [args]

  This command groups subcommands for interacting with drover's Raft subsystem.

Subcommands:
    list-peers     Display the current Raft peer configuration
    remove-peer    Remove a Nomad server from the Raft configuration
";

const SERVER_HELP: &str = "\
Usage: drover server <subcommand> [options] [args]

  This command groups subcommands for interacting with servers.

Subcommands:
    members     Display a list of known servers and their status
";

type Command = fn(&[String], &mut Io<'_>) -> u8;

const COMMANDS: &[(&str, Command)] = &[
    ("agent", agent::run),
    ("agent-info", cluster_info::agent_info),
    ("alloc", alloc),
    ("deployment", deployment),
    ("eval", eval),
    // Not in the help: the process raw_exec runs each task under.
    ("executor", agent::executor),
    ("fs", alloc_fs::run),
    ("inspect", job_inspect::inspect),
    ("job", job),
    ("logs", alloc_logs::run),
    ("node", node),
    ("operator", operator),
    ("plan", job_plan::run),
    ("run", job_run::run),
    ("server", server),
    ("status", job_status::run),
    ("stop", job_stop::run),
    ("tls", tls::run),
    ("validate", job_validate::run),
    ("version", version),
];

const JOB_SUBCOMMANDS: &[(&str, Command)] = &[
    ("history", job_inspect::history),
    ("init", job_init::run),
    ("inspect", job_inspect::inspect),
    ("periodic", job_periodic::run),
    ("plan", job_plan::run),
    ("revert", job_revert::run),
    ("run", job_run::run),
    ("status", job_status::run),
    ("stop", job_stop::run),
    ("validate", job_validate::run),
];

const ALLOC_SUBCOMMANDS: &[(&str, Command)] = &[
    ("fs", alloc_fs::run),
    ("logs", alloc_logs::run),
    ("restart", alloc_restart::run),
    ("signal", alloc_signal::run),
    ("status", alloc_status::run),
    ("stop", alloc_stop::run),
];

const NODE_SUBCOMMANDS: &[(&str, Command)] = &[
    ("drain", node_drain::drain),
    ("eligibility", node_drain::eligibility),
    ("status", node_status::run),
];

const EVAL_SUBCOMMANDS: &[(&str, Command)] = &[("status", eval_status::run)];

const DEPLOYMENT_SUBCOMMANDS: &[(&str, Command)] = &[
    ("fail", deployment_actions::fail),
    ("list", deployment::list),
    ("pause", deployment_actions::pause),
    ("promote", deployment_actions::promote),
    ("resume", deployment_actions::resume),
    ("status", deployment::status),
];

const OPERATOR_SUBCOMMANDS: &[(&str, Command)] = &[
    ("autopilot", autopilot),
    ("gossip", operator_gossip::gossip),
    ("keygen", operator_gossip::generate),
    ("raft", raft),
];

const AUTOPILOT_SUBCOMMANDS: &[(&str, Command)] = &[
    ("get-config", cluster_info::autopilot_get_config),
    ("set-config", cluster_info::autopilot_set_config),
];

const RAFT_SUBCOMMANDS: &[(&str, Command)] = &[
    ("list-peers", cluster_info::raft_list_peers),
    ("remove-peer", cluster_info::raft_remove_peer),
];

const SERVER_SUBCOMMANDS: &[(&str, Command)] = &[("members", server_members::run)];

/// Runs the command named by `args[0]` and returns its exit code.
pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, COMMANDS, MAIN_HELP, io)
}

fn job(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, JOB_SUBCOMMANDS, JOB_HELP, io)
}

fn alloc(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, ALLOC_SUBCOMMANDS, ALLOC_HELP, io)
}

fn node(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, NODE_SUBCOMMANDS, NODE_HELP, io)
}

fn server(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, SERVER_SUBCOMMANDS, SERVER_HELP, io)
}

fn eval(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, EVAL_SUBCOMMANDS, EVAL_HELP, io)
}

fn deployment(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, DEPLOYMENT_SUBCOMMANDS, DEPLOYMENT_HELP, io)
}

fn operator(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, OPERATOR_SUBCOMMANDS, OPERATOR_HELP, io)
}

fn autopilot(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, AUTOPILOT_SUBCOMMANDS, AUTOPILOT_HELP, io)
}

fn raft(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, RAFT_SUBCOMMANDS, RAFT_HELP, io)
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

/// Parses an API command's flags and builds its client from the global flags and the
/// environment. `Err(code)` is the exit code to return at once.
fn api_command(
    args: &[String],
    specs: &[crate::flags::FlagSpec],
    help: &str,
    io: &mut Io<'_>,
) -> Result<(crate::flags::Parsed, crate::api::Client), u8> {
    let flags = parse_flags(args, specs, help, io)?;
    match crate::api::Client::from_flags(&flags) {
        Ok(client) => Ok((flags, client)),
        Err(message) => {
            let _ = writeln!(io.err, "{message}");
            Err(1)
        }
    }
}

/// [`api_command`] for a command that takes exactly the arguments `names`.
fn api_command_with_args(
    args: &[String],
    specs: &[crate::flags::FlagSpec],
    help: &str,
    names: &[&str],
    io: &mut Io<'_>,
) -> Result<(crate::flags::Parsed, crate::api::Client), u8> {
    let (flags, client) = api_command(args, specs, help, io)?;
    expect_args(&flags, names, help, io)?;
    Ok((flags, client))
}

/// Checks the command got exactly `count` arguments; otherwise prints Nomad's usage
/// complaint (`This command takes one argument: <job>`) and returns the exit code.
fn expect_args(
    flags: &crate::flags::Parsed,
    names: &[&str],
    help: &str,
    io: &mut Io<'_>,
) -> Result<(), u8> {
    if flags.args.len() == names.len() {
        return Ok(());
    }
    let what = match names.len() {
        1 => "one argument",
        2 => "two arguments",
        _ => "arguments",
    };
    let _ = writeln!(io.err, "This command takes {what}: {}", names.join(" "));
    let _ = writeln!(io.err, "For additional help try 'drover {} -help'", command_name(help));
    Err(1)
}

/// The full ID of the one object whose ID starts with `prefix`, looked up in the list at
/// `list_path` (`/v1/jobs`, `/v1/allocations`, ...). `noun` names the kind in messages
/// (`job`, `allocation`): none found and several found are errors, as in Nomad.
fn resolve_prefix(
    client: &crate::api::Client,
    list_path: &str,
    prefix: &str,
    noun: &str,
) -> Result<String, String> {
    let params = [("prefix", prefix.to_owned())];
    let (rows, _) = client
        .get::<Vec<serde_json::Value>>(list_path, &params, None)
        .map_err(|error| format!("Error querying {noun}: {error}"))?;
    let ids: Vec<&str> = rows.iter().filter_map(|row| row["ID"].as_str()).collect();
    if let Some(exact) = ids.iter().find(|id| **id == prefix) {
        return Ok((*exact).to_owned());
    }
    match ids.as_slice() {
        [] => Err(format!("No {noun}(s) with prefix or id {prefix:?} found")),
        [one] => Ok((*one).to_owned()),
        many => Err(format!("Prefix matched multiple {noun}s\n\n{}", many.join("\n"))),
    }
}

/// Prints an API object as indented JSON, as Nomad's `-json` does.
fn print_json(value: &impl serde::Serialize, io: &mut Io<'_>) -> Result<u8, String> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| format!("Error encoding JSON: {e}"))?;
    let _ = writeln!(io.out, "{text}");
    Ok(0)
}

/// Runs `work`, printing its error to stderr; the exit code is `work`'s or 1.
fn report(io: &mut Io<'_>, work: impl FnOnce(&mut Io<'_>) -> Result<u8, String>) -> u8 {
    match work(io) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(io.err, "{message}");
            1
        }
    }
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
