//! The `drover-sim` command: runs seeded simulations and replays one seed.
//!
//! ```text
//! cargo sim raft --seeds N [--from S] [--jobs J]   run seeds S..S+N, J at a time
//! cargo sim raft --replay SEED                      print one seed's trace and verdict
//! ```
//! The seed run ends with `seeds=N violations=V seeds_per_min=R` and exits 1 when V > 0,
//! after printing the replay command of every failing seed.

use drover_sim::raft;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const USAGE: &str =
    "usage: drover-sim raft --seeds N [--from S] [--jobs J]\n       drover-sim raft --replay SEED";

struct Args {
    seeds: u64,
    from: u64,
    jobs: u64,
    replay: Option<u64>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args { seeds: 100, from: 0, jobs: default_jobs(), replay: None };
    let mut rest = args.iter();
    match rest.next().map(String::as_str) {
        Some("raft") => {}
        Some(other) => return Err(format!("unknown simulation {other:?}")),
        None => return Err("missing simulation name".to_string()),
    }
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: u64 = value.parse().map_err(|_| format!("{flag}: not a number: {value:?}"))?;
        match flag.as_str() {
            "--seeds" => parsed.seeds = number,
            "--from" => parsed.from = number,
            "--jobs" => parsed.jobs = number.max(1),
            "--replay" => parsed.replay = Some(number),
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    Ok(parsed)
}

fn default_jobs() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("drover-sim: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match args.replay {
        Some(seed) => replay(seed),
        None => run_seeds(&args),
    }
}

fn replay(seed: u64) -> ExitCode {
    let outcome = match std::panic::catch_unwind(|| raft::replay(seed)) {
        Ok(outcome) => outcome,
        Err(payload) => {
            println!("seed {seed}: VIOLATION: {}", raft::panic_message(&*payload));
            return ExitCode::FAILURE;
        }
    };
    if outcome.violations.is_empty() {
        println!(
            "seed {seed}: ok (t={}, events={}, commit={})",
            outcome.end, outcome.events, outcome.commits
        );
        ExitCode::SUCCESS
    } else {
        println!("seed {seed}: VIOLATION: {}", outcome.violations.join("; "));
        ExitCode::FAILURE
    }
}

fn run_seeds(args: &Args) -> ExitCode {
    let started = Instant::now();
    // Failed assertions become violations; their default report would interleave.
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicU64::new(args.from);
    let end = args.from + args.seeds;
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let violation = match raft::run_guarded(seed) {
                        Ok(outcome) if outcome.violations.is_empty() => continue,
                        Ok(outcome) => outcome.violations.join("; "),
                        Err(panic) => panic,
                    };
                    failures.lock().expect("no panics while holding it").push((seed, violation));
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("threads joined");
    failures.sort();
    for (seed, violation) in &failures {
        println!("seed {seed} failed: {violation}");
        println!("  replay: cargo sim raft --replay {seed}");
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let per_minute = args.seeds as f64 / minutes.max(1e-9);
    println!("seeds={} violations={} seeds_per_min={:.0}", args.seeds, failures.len(), per_minute);
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
