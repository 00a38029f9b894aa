//! The `drover-sim` command: runs seeded simulations and replays one seed.
//!
//! ```text
//! cargo sim raft --seeds N [--from S] [--jobs J]      run seeds S..S+N, J at a time
//! cargo sim raft --replay SEED                         print one seed's trace and verdict
//! cargo sim cluster --seeds N [--from S] [--jobs J]   the madsim cluster, likewise
//! cargo sim cluster --replay SEED
//! ```
//! A seed run ends with `seeds=N violations=V seeds_per_min=R` (the cluster adds
//! `sim_to_wall=X`, simulated time over wall time) and exits 1 when V > 0, after printing
//! the replay command of every failing seed.

use drover_sim::raft;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const USAGE: &str = "usage: drover-sim raft|cluster --seeds N [--from S] [--jobs J]\n       drover-sim raft|cluster --replay SEED";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Simulation {
    Raft,
    Cluster,
}

impl Simulation {
    fn name(self) -> &'static str {
        match self {
            Simulation::Raft => "raft",
            Simulation::Cluster => "cluster",
        }
    }
}

struct Args {
    simulation: Simulation,
    seeds: u64,
    from: u64,
    jobs: u64,
    replay: Option<u64>,
}

/// What one seed came to: its violations, or a panic, and the simulated time it covered.
struct SeedResult {
    violations: Vec<String>,
    sim_ms: u64,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut rest = args.iter();
    let simulation = match rest.next().map(String::as_str) {
        Some("raft") => Simulation::Raft,
        Some("cluster") => Simulation::Cluster,
        Some(other) => return Err(format!("unknown simulation {other:?}")),
        None => return Err("missing simulation name".to_string()),
    };
    let mut parsed = Args { simulation, seeds: 100, from: 0, jobs: default_jobs(), replay: None };
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
        Some(seed) => replay(&args, seed),
        None => run_seeds(&args),
    }
}

fn replay(args: &Args, seed: u64) -> ExitCode {
    let outcome = std::panic::catch_unwind(|| match args.simulation {
        Simulation::Raft => {
            let outcome = raft::replay(seed);
            let summary =
                format!("t={}, events={}, commit={}", outcome.end, outcome.events, outcome.commits);
            (outcome.violations, summary)
        }
        Simulation::Cluster => cluster_replay(seed),
    });
    match outcome {
        Ok((violations, summary)) if violations.is_empty() => {
            println!("seed {seed}: ok ({summary})");
            ExitCode::SUCCESS
        }
        Ok((violations, _)) => {
            println!("seed {seed}: VIOLATION: {}", violations.join("; "));
            ExitCode::FAILURE
        }
        Err(payload) => {
            println!("seed {seed}: VIOLATION: {}", raft::panic_message(&*payload));
            ExitCode::FAILURE
        }
    }
}

#[cfg(madsim)]
fn cluster_replay(seed: u64) -> (Vec<String>, String) {
    let outcome = drover_sim::cluster::replay(seed);
    let summary = format!(
        "simulated {}.{:03}s, steps={}, commit={}",
        outcome.sim_ms / 1000,
        outcome.sim_ms % 1000,
        outcome.steps,
        outcome.commits
    );
    (outcome.violations, summary)
}

#[cfg(not(madsim))]
fn cluster_replay(_seed: u64) -> (Vec<String>, String) {
    (vec![NOT_MADSIM.to_owned()], String::new())
}

#[cfg(not(madsim))]
const NOT_MADSIM: &str = "the cluster simulation needs --cfg madsim: run it with `cargo sim`";

fn run_seed(args: &Args, seed: u64) -> SeedResult {
    match args.simulation {
        Simulation::Raft => match raft::run_guarded(seed) {
            Ok(outcome) => {
                SeedResult { violations: outcome.violations, sim_ms: outcome.end.as_u64() }
            }
            Err(panic) => SeedResult { violations: vec![panic], sim_ms: 0 },
        },
        Simulation::Cluster => run_cluster_seed(seed),
    }
}

#[cfg(madsim)]
fn run_cluster_seed(seed: u64) -> SeedResult {
    match drover_sim::cluster::run_guarded(seed) {
        Ok(outcome) => SeedResult { violations: outcome.violations, sim_ms: outcome.sim_ms },
        Err(panic) => SeedResult { violations: vec![panic], sim_ms: 0 },
    }
}

#[cfg(not(madsim))]
fn run_cluster_seed(_seed: u64) -> SeedResult {
    SeedResult { violations: vec![NOT_MADSIM.to_owned()], sim_ms: 0 }
}

fn run_seeds(args: &Args) -> ExitCode {
    let started = Instant::now();
    // Failed assertions become violations; their default report would interleave.
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicU64::new(args.from);
    let end = args.from + args.seeds;
    let sim_ms = AtomicU64::new(0);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let result = run_seed(args, seed);
                    sim_ms.fetch_add(result.sim_ms, Ordering::Relaxed);
                    if !result.violations.is_empty() {
                        let violation = result.violations.join("; ");
                        failures
                            .lock()
                            .expect("no panics while holding it")
                            .push((seed, violation));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("threads joined");
    failures.sort();
    let name = args.simulation.name();
    for (seed, violation) in &failures {
        println!("seed {seed} failed: {violation}");
        println!("  replay: cargo sim {name} --replay {seed}");
    }
    let wall = started.elapsed().as_secs_f64();
    let per_minute = args.seeds as f64 / (wall / 60.0).max(1e-9);
    let mut summary =
        format!("seeds={} violations={} seeds_per_min={per_minute:.0}", args.seeds, failures.len());
    if args.simulation == Simulation::Cluster {
        let sim_to_wall = sim_ms.into_inner() as f64 / 1000.0 / wall.max(1e-9);
        summary.push_str(&format!(" sim_to_wall={sim_to_wall:.0}"));
    }
    println!("{summary}");
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
