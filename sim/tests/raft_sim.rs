//! The Raft simulator under plain `cargo test`: a modest seed range must pass every
//! checker, and a seed must replay byte for byte.

use drover_sim::raft;

/// Seeds checked on every `cargo test`; `cargo sim raft --seeds N` runs any number.
const TEST_SEEDS: u64 = 200;

#[test]
fn seeds_pass_every_checker() {
    let mut failures = Vec::new();
    for seed in 0..TEST_SEEDS {
        match raft::run_guarded(seed) {
            Ok(outcome) if outcome.violations.is_empty() => {}
            Ok(outcome) => failures.push(format!("seed {seed}: {}", outcome.violations.join("; "))),
            Err(panic) => failures.push(format!("seed {seed}: {panic}")),
        }
    }
    assert!(
        failures.is_empty(),
        "replay with `cargo sim raft --replay SEED`:\n{}",
        failures.join("\n")
    );
}

#[test]
fn same_seed_same_trace() {
    for seed in [3, 17, 4242] {
        let first = raft::run(seed, true);
        let second = raft::run(seed, true);
        assert!(first.trace.lines().count() > 100, "seed {seed} traced too little to compare");
        assert!(first.trace == second.trace, "seed {seed} diverged between two runs");
        assert_eq!(first.events, second.events);
    }
    let other = raft::run(18, true);
    assert_ne!(raft::run(17, true).trace, other.trace, "different seeds should differ");
}

#[test]
fn trace_reads_like_the_contract() {
    let outcome = raft::run(7, true);
    let append = outcome.trace.lines().find(|l| l.contains(" Append term=") && l.contains(" idx="));
    let line = append.expect("an append with entries");
    // t=1.204s n2->n3 Append term=4 prev=4/16 idx=17..19 commit=16
    assert!(line.starts_with("t="), "{line}");
    assert!(
        line.split_whitespace().nth(1).is_some_and(|w| w.starts_with('n') && w.contains("->n")),
        "{line}"
    );
    assert!(outcome.trace.lines().last().is_some_and(|l| l.contains("verdict: ok")));
}
