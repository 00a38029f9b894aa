//! The madsim cluster simulator (built with `--cfg madsim`, as `cargo sim` does): a seed
//! replays byte for byte, madsim's own determinism check passes, and a few seeds pass every
//! checker.
#![cfg(madsim)]

use drover_sim::cluster;

#[test]
fn same_seed_same_trace() {
    let first = cluster::run(11, true);
    let second = cluster::run(11, true);
    assert!(first.trace.lines().count() > 200, "seed 11 traced too little to compare");
    assert!(first.trace == second.trace, "seed 11 diverged between two runs");
    assert_eq!(first.steps, second.steps);
    let other = cluster::run(12, true);
    assert_ne!(first.trace, other.trace, "different seeds should differ");
}

#[test]
fn madsim_determinism_check_passes() {
    for seed in [3, 4] {
        // Panics if any random draw of the second run differs from the first's.
        let outcome = cluster::check_determinism(seed);
        assert!(outcome.sim_ms > 0);
    }
}

#[test]
fn trace_reads_like_the_contract() {
    let outcome = cluster::run(5, true);
    let trace = &outcome.trace;
    for needle in
        [" start", " leader loop started term=", " commit idx=", " node register ", "api -> "]
    {
        assert!(trace.contains(needle), "no {needle:?} in the trace");
    }
    assert!(trace.lines().all(|l| l.starts_with("t=")), "every line is timestamped");
    assert!(trace.lines().last().is_some_and(|l| l.contains("verdict: ")));
}

/// Seeds checked on every test run; `cargo sim cluster --seeds N` runs any number.
const TEST_SEEDS: std::ops::Range<u64> = 10..16;

#[test]
fn seeds_pass_every_checker() {
    let mut failures = Vec::new();
    for seed in TEST_SEEDS {
        match cluster::run_guarded(seed) {
            Ok(outcome) if outcome.violations.is_empty() => {}
            Ok(outcome) => failures.push(format!("seed {seed}: {}", outcome.violations.join("; "))),
            Err(panic) => failures.push(format!("seed {seed}: {panic}")),
        }
    }
    assert!(
        failures.is_empty(),
        "replay with `cargo sim cluster --replay SEED`:\n{}",
        failures.join("\n")
    );
}
