//! The `drover` command: the operator's entry point, spelled the way Nomad's CLI is.
//!
//! Each command is a function from its arguments to an exit code, so that the exit codes
//! Nomad documents (`job plan`'s 0/1/255, `job run`'s 0/1/2) are visible in one place per
//! command. Output goes to stdout, diagnostics to stderr.

mod api;
mod commands;
mod flags;
mod jobfile;
mod monitor;
mod output;
mod render;

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tty = std::io::stdout().is_terminal();
    // Unlocked handles, each write taking the lock for itself: an agent's node loop
    // writes its log to stdout from its own thread while the command waits.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = commands::run(&args, &mut commands::Io { out: &mut out, err: &mut err, tty });
    ExitCode::from(code)
}
