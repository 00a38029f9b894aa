//! Scenario tests for `core::server`: three servers and scripted client nodes in one
//! process (see `server/harness.rs`).
//!
//! Each file under `tests/server/` is a script of commands, each followed by `----` and
//! what it printed: replies, leader-loop changes, and state dumps. The test replays the
//! script and compares the whole file; after a deliberate change, run
//! `REWRITE=1 cargo test -p drover-core --test server_scenarios` and commit the diff only
//! if you understand every line of it. Every scenario also fails on a safety violation
//! (two active leader loops, disagreeing applied histories, an over-committed node).
//!
//! Commands (`to=N` picks the server a request goes to; it defaults to the leader):
//! - `tick MS`, `campaign N`, `crash N`, `restart N`, `isolate N`, `heal`, `status`
//! - `node C [cpu=] [mem=]`: client node C registers and heartbeats until `client-stop C`
//! - `job ID [count=] [cpu=] [mem=] [type=] [enforce=IDX] [region=R]`, `plan ID …`,
//!   `stop-job ID [purge]`, `scale ID count=N`, `revert ID version=V [prior=V]`,
//!   `evaluate ID`, `drain C`
//! - `alloc NAME running|complete|failed`: the allocation's node reports it
//! - `read jobs|nodes|evals [min=IDX] [wait=MS]`, `node-allocs C [min=IDX] [wait=MS]`
//! - `show allocs|evals|nodes|jobs [on=N]`, `heartbeats`

#[path = "server/harness.rs"]
mod harness;

use harness::Cluster;
use std::fmt::Write as _;
use std::path::Path;

/// Replays one script and compares (or, with REWRITE=1, rewrites) its expected output.
fn check(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server").join(name);
    let script =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cluster = Cluster::new(3, 7);
    let mut rendered = String::new();
    let mut lines = script.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            rendered.push_str(line);
            rendered.push('\n');
            continue;
        }
        let _ = writeln!(rendered, "{line}");
        assert_eq!(lines.next(), Some("----"), "{name}: `{line}` must be followed by ----");
        while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
            lines.next();
        }
        rendered.push_str("----\n");
        rendered.push_str(&cluster.run(line));
    }
    assert!(cluster.violations.is_empty(), "{name}: {:?}", cluster.violations);
    if std::env::var_os("REWRITE").is_some() {
        std::fs::write(&path, rendered).expect("rewrite the script");
        return;
    }
    if rendered != script {
        let diff = first_difference(&script, &rendered);
        panic!("{name}: output changed (REWRITE=1 regenerates it)\n{diff}");
    }
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = e.iter().zip(&a).position(|(x, y)| x != y).unwrap_or(e.len().min(a.len()));
    let expected = e.get(at).copied().unwrap_or("<end>");
    let actual = a.get(at).copied().unwrap_or("<end>");
    format!("line {}:\n  expected: {expected}\n  actual:   {actual}", at + 1)
}

#[test]
fn register_job_places_allocs_on_every_server() {
    check("register.txt");
}

#[test]
fn enforce_index_errors() {
    check("enforce_index.txt");
}

#[test]
fn follower_forwards_writes() {
    check("forward.txt");
}

#[test]
fn failover_restores_broker_and_heartbeats() {
    check("failover.txt");
}

#[test]
fn missed_heartbeats_mark_node_down() {
    check("heartbeat_down.txt");
}

#[test]
fn drain_migrates() {
    check("drain.txt");
}

#[test]
fn client_alloc_updates() {
    check("alloc_updates.txt");
}

#[test]
fn blocking_reads() {
    check("blocking_read.txt");
}

#[test]
fn plan_dry_run_commits_nothing() {
    check("plan_dry_run.txt");
}

#[test]
fn follower_worker_submits_to_leader() {
    check("follower_worker.txt");
}

#[test]
fn gc_reaps_terminal_objects() {
    check("gc.txt");
}

#[test]
fn scale_evaluate_revert() {
    check("job_changes.txt");
}

#[test]
fn isolated_leader_stops_before_a_new_one_starts() {
    check("partition.txt");
}
