//! Scenario tests: each `tests/scheduler/<name>.txt` script runs against a fresh
//! cluster (state store, scheduler, plan applier, blocked-evals tracker) and its
//! transcript is compared with the insta snapshot `scheduler_scenarios__<name>.snap`.

#[path = "scheduler/harness.rs"]
mod harness;

use harness::Cluster;

/// Runs one scenario file and snapshots its transcript.
fn check(name: &str) {
    let path = format!("{}/tests/scheduler/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let transcript = Cluster::new().run_script(&script);
    assert!(!transcript.contains("error:"), "scenario {name} hit an error:\n{transcript}");
    insta::assert_snapshot!(name, transcript);
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
    };
}

scenarios!(
    affinity,
    all_at_once,
    batch_complete,
    batch_rerun,
    binpack,
    blocked_class,
    blocked_unblock,
    constraint_equal,
    constraint_is_set,
    constraint_not_equal,
    constraint_ordering,
    constraint_regexp,
    constraint_sets,
    constraint_versions,
    datacenter_pool,
    deploy_canary,
    deploy_canary_lost,
    deploy_canary_reschedule,
    deploy_promote_stops_duplicate,
    deploy_failed_no_reschedule,
    deploy_newer_version,
    deploy_rolling,
    deploy_stop_job,
    deploy_unhealthy_reschedule,
    distinct_hosts,
    distinct_property,
    drain_migrate,
    dynamic_ports,
    failure_metrics,
    node_down_lost,
    partial_commit,
    place_basic,
    reschedule_batch_attempts,
    reschedule_delay,
    reserved_port,
    scale_down,
    scale_up,
    spread_algorithm,
    spread_even,
    spread_targets,
    static_port_collision,
    stop_job,
    sysbatch,
    system_canary,
    system_constraint_down,
    system_new_node,
    system_rolling,
    system_rolling_lost,
    system_rolling_nodes,
    system_rolling_unhealthy,
    system_update_at_once,
    update_destructive,
    update_inplace,
);
