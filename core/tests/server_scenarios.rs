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
//! - `tick MS`, `campaign N`, `crash N`, `restart N`, `isolate N`, `deafen N` (N hears no
//!   peer, its own messages still go out), `heal`, `status`
//! - `hold A B`: messages from server A to server B wait; `release A B` delivers them,
//!   one at a time, in order
//! - `snapshot-every N [trailing=T]` (first command: servers snapshot every N applied
//!   entries, keeping T entries behind each snapshot),
//!   `defer-snapshots N` (server N's snapshots wait), `encode-snapshots N` (encode them
//!   now, as the runtime's thread would), `log` (each server's log bounds and snapshots)
//! - `node C [cpu=] [mem=]`: client node C registers and heartbeats until `client-stop C`
//! - `job ID [count=] [cpu=] [mem=] [type=] [enforce=IDX] [region=R]`, with an update
//!   block from `max_parallel=`, `canary=`, `min_healthy=`, `healthy_deadline=`,
//!   `progress=` (seconds), `auto_promote`, `auto_revert`, and a reschedule policy from
//!   `delay=` (seconds, constant) and `attempts=` (per hour; unlimited without), `plan ID …`,
//!   `stop-job ID [purge]`, `scale ID count=N`, `revert ID version=V [prior=V]`,
//!   `evaluate ID`, `drain C`, `purge C` (`PUT /v1/node/C/purge`), `alloc-stop NAME` (the
//!   live allocation of that name)
//! - `periodic ID cron=SPEC [overlap-prohibited] [disabled]`: a periodic batch job (`_`
//!   stands for a space in SPEC), `force ID`: `job periodic force`
//! - `time`: the script's clock as unix seconds; `clock N ms=MS`: steps server N's clock
//!   by MS (negative: back; its `now` then stands still until the clock catches up, as
//!   the hosts keep it monotonic)
//! - `alloc NAME running|complete|failed`: the allocation's node reports it;
//!   `health NAME healthy|unhealthy`: its node reports its deployment health
//! - `read jobs|nodes|evals|allocs|deployments [min=IDX] [wait=MS]`, `read versions|summary|
//!   job-evals|job-deployments JOB`, `read alloc NAME`, `node-allocs C [min=IDX] [wait=MS]`
//! - `show allocs|evals|nodes|jobs|launches|deployments|versions [on=N]`, `heartbeats`;
//!   `show reschedules`: each allocation's predecessor, reschedule events and whether
//!   the deployment watcher allowed its replacement
//! - `defer-passes N`: server N holds its scheduling passes; `run-passes N` runs them,
//!   `fail-passes N` reports them failed (a pass that panicked)
//! - `join N`: server N starts with an empty disk and no voters, waiting to be added;
//!   `gossip 1 2 3:failed 4:left`: what gossip reports to every server (alive unless
//!   said); `raft [on=N]`: the Raft configuration as server N holds it;
//!   `remove-peer id=N|address=A`: `operator raft remove-peer`; `autopilot KEY=VALUE…`
//!   (first command: autopilot's `min_quorum` and `cleanup_dead_servers` in every
//!   server's own configuration); `set-autopilot KEY=VALUE… [cas=IDX]`: `operator
//!   autopilot set-config` (the settings given changed on the server's current ones:
//!   `cleanup_dead_servers`, `min_quorum`, `max_trailing_logs`,
//!   `last_contact_threshold_ms`, `server_stabilization_time_ms`); `read autopilot`
//! - `snapshot-every ENTRIES [trailing=T]` (first command only): servers snapshot that
//!   often, keeping T trailing entries;
//!   `defer-snapshots N`: server N's state snapshots wait, as a runtime encoding them on
//!   another thread leaves them; `encode-snapshots N` encodes and hands them back; `log`
//!   shows each server's log bounds and snapshots

#[path = "server/harness.rs"]
mod harness;

#[path = "script/mod.rs"]
mod script;

use harness::Cluster;

/// Replays one script and compares (or, with REWRITE=1, rewrites) its expected output.
fn check(name: &str) {
    check_on(Cluster::new(3, 7), name);
}

fn check_on(mut cluster: Cluster, name: &str) {
    script::check_script("server", name, |line| cluster.run(line));
    assert!(cluster.violations.is_empty(), "{name}: {:?}", cluster.violations);
}

#[test]
fn register_job_places_allocs_on_every_server() {
    check("register.txt");
}

#[test]
fn deploy_lost_healthy_replacement() {
    check("deploy_lost_healthy.txt");
}

#[test]
fn deploy_unhealthy_replaced_then_successful() {
    check("deploy_unhealthy_replaced.txt");
}

#[test]
fn deploy_canary_replaced_then_promoted() {
    check("deploy_canary_replaced.txt");
}

#[test]
fn deploy_unhealthy_replacements_fail_at_deadline() {
    check("deploy_unhealthy_deadline.txt");
}

#[test]
fn deploy_unhealthy_out_of_attempts_fails_at_once() {
    check("deploy_unhealthy_attempts.txt");
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
fn purge_forgets_the_node_and_its_allocations_are_lost() {
    check("purge.txt");
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
fn plan_shows_system_scheduler_counts() {
    check("plan_system.txt");
}

#[test]
fn a_pipelined_plan_counts_the_one_committing_and_never_commits_without_it() {
    check("plan_pipelined.txt");
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

#[test]
fn a_failed_pass_sends_its_evaluation_back_to_the_broker() {
    check("pass_failed.txt");
}

#[test]
fn gc_keeps_allocations_the_client_has_not_finished() {
    check("gc_client_pending.txt");
}

#[test]
fn cancelling_a_drain_brings_system_jobs_back() {
    check("undrain_system.txt");
}

#[test]
fn a_restarted_leader_loop_waits_for_its_earlier_proposals() {
    check("reestablish_barrier.txt");
}

#[test]
fn a_node_change_racing_a_job_registration_still_places_the_system_job() {
    check("undrain_racing_register.txt");
}

#[test]
fn applied_commands_leave_events() {
    check("events.txt");
}

#[test]
fn alloc_stop_marks_for_migration_and_the_scheduler_replaces() {
    check("alloc_stop.txt");
}

#[test]
fn periodic_launches_at_cron_times_only() {
    check("periodic_launch.txt");
}

#[test]
fn periodic_prohibit_overlap_skips_while_a_child_runs() {
    check("periodic_overlap.txt");
}

#[test]
fn periodic_failover_neither_relaunches_nor_skips() {
    check("periodic_failover.txt");
}

#[test]
fn periodic_force_launches_now() {
    check("periodic_force.txt");
}

#[test]
fn a_periodic_job_scaled_or_evaluated_never_runs_itself() {
    check("periodic_scale.txt");
}

#[test]
fn periodic_disabled_or_deregistered_stops_launching() {
    check("periodic_stop.txt");
}

#[test]
fn a_snapshot_is_encoded_off_the_loop_and_compacts_the_log_once_handed_back() {
    check("snapshot_off_loop.txt");
}

#[test]
fn a_loop_restarted_in_its_term_waits_for_its_last_plan() {
    check("lease_lapse_plan.txt");
}

#[test]
fn a_new_server_joins_as_learner_then_voter_after_stabilization() {
    check("members_join.txt");
}

#[test]
fn failed_servers_are_removed_only_while_quorum_allows() {
    check("members_failed.txt");
}

#[test]
fn a_server_gossip_does_not_report_is_removed_as_failed() {
    check("members_stale.txt");
}

#[test]
fn failed_servers_stay_without_cleanup_dead_servers() {
    check("members_no_cleanup.txt");
}

#[test]
fn a_learner_out_of_contact_is_not_promoted() {
    check("members_last_contact.txt");
}

#[test]
fn a_server_that_left_is_removed() {
    check("members_left.txt");
}

#[test]
fn a_new_leader_finishes_a_join_after_failover() {
    check("members_failover.txt");
}

#[test]
fn remove_peer_by_id_or_address() {
    check("remove_peer.txt");
}

#[test]
fn failed_servers_are_removed_by_the_quorum_rule_alone_without_min_quorum() {
    check("members_quorum.txt");
}

#[test]
fn autopilot_follows_the_configuration_an_operator_sets() {
    check("members_set_config.txt");
}

#[test]
fn remove_peer_waits_for_the_change_in_flight() {
    check("remove_peer_waits.txt");
}

#[test]
fn the_deployment_watcher_drives_a_rollout_to_successful() {
    check("deploy_rollout.txt");
}

#[test]
fn the_deployment_watcher_drives_a_system_rollout_node_by_node() {
    check("deploy_system_rollout.txt");
}

#[test]
fn an_unhealthy_system_allocation_fails_the_deployment_and_reverts() {
    check("deploy_system_auto_revert.txt");
}

#[test]
fn an_unhealthy_allocation_fails_the_deployment_and_reverts() {
    check("deploy_auto_revert.txt");
}

#[test]
fn a_deployment_without_progress_fails_at_its_deadline() {
    check("deploy_progress_deadline.txt");
}

#[test]
fn healthy_canaries_are_promoted_automatically() {
    check("deploy_auto_promote.txt");
}

#[test]
fn a_new_leader_resumes_the_deployment() {
    check("deploy_failover.txt");
}

/// A cluster whose GC thresholds are 2 h (batch evaluations) and 1 h (jobs) instead of
/// 24 h and 4 h, so a script crosses them in few steps.
fn short_batch_gc() -> Cluster {
    Cluster::with_config(3, 7, |config| {
        config.gc.batch_eval_gc_threshold_ms = 7_200_000;
        config.gc.job_gc_threshold_ms = 3_600_000;
    })
}

#[test]
fn gc_keeps_a_running_batch_jobs_completed_allocations() {
    check_on(short_batch_gc(), "gc_batch.txt");
}

#[test]
fn gc_reaps_what_an_older_batch_job_version_completed() {
    check_on(short_batch_gc(), "gc_batch_superseded.txt");
}

#[test]
fn gc_reaps_whole_evaluations_within_its_bound() {
    // Evaluations reaped after 10 min instead of an hour, at most three of a kind a pass.
    let cluster = Cluster::with_config(3, 7, |config| {
        config.gc.eval_gc_threshold_ms = 600_000;
        config.gc.reap_batch_max = 3;
    });
    check_on(cluster, "gc_reap_bound.txt");
}
