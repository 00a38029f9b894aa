//! Scheduler property tests over random clusters and workloads:
//! - live allocations never exceed a group's count, and live names are unique;
//! - a stopped job keeps nothing running;
//! - any plan the scheduler produces from a snapshot is accepted whole by the applier on
//!   that same state (no reject livelock, Nomad #9506);
//! - no sequence of applied plans over-commits a node's CPU, memory, disk or a port,
//!   including plans made from stale snapshots and plans the applier evaluated while the
//!   ones before them were still committing (pipelined);
//! - during a rolling update, the deployment's allocations not yet healthy never exceed
//!   `max_parallel` plus its canaries.

#[path = "scheduler/harness.rs"]
mod harness;

use drover_core::id::seed_from;
use drover_core::model::{
    Constraint, Deployment, Job, JobType, NetworkResource, Port, Resources, Task, TaskGroup,
};
use drover_core::plan::{InFlight, evaluate_plan_pipelined, evaluate_plan_verbose};
use drover_core::scheduler::{SchedulerConfig, schedule};
use drover_core::state::{Command, State, alloc_ports};
use harness::Cluster;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Clone, Debug)]
struct JobSpec {
    count: i32,
    cpu: i32,
    mem: i32,
    static_port: bool,
    dynamic_port: bool,
    distinct_hosts: bool,
    batch: bool,
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (0..7i32, 100..1500i32, 64..1500i32, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_map(|(count, cpu, mem, static_port, dynamic_port, distinct_hosts, batch)| JobSpec {
            count,
            cpu,
            mem,
            static_port: static_port && cpu % 3 == 0,
            dynamic_port,
            distinct_hosts,
            batch,
        })
}

fn build_job(id: usize, spec: &JobSpec) -> Job {
    let resources = Resources { cpu_mhz: spec.cpu, memory_mb: spec.mem, ..Resources::default() };
    let task = Task { name: "t".into(), driver: "docker".into(), resources, ..Task::default() };
    let mut network = NetworkResource::default();
    if spec.static_port {
        network.reserved_ports.push(Port { label: "s".into(), value: 8080, ..Port::default() });
    }
    if spec.dynamic_port {
        network.dynamic_ports.push(Port { label: "d".into(), ..Port::default() });
    }
    let mut group = TaskGroup {
        name: "g".into(),
        count: spec.count,
        tasks: vec![task],
        ..TaskGroup::default()
    };
    group.ephemeral_disk.size_mb = 100;
    if spec.static_port || spec.dynamic_port {
        group.networks.push(network);
    }
    if spec.distinct_hosts {
        group.constraints.push(Constraint {
            operand: "distinct_hosts".into(),
            r_target: "true".into(),
            ..Constraint::default()
        });
    }
    Job {
        id: format!("j{id}"),
        name: format!("j{id}"),
        job_type: if spec.batch { JobType::Batch } else { JobType::Service },
        datacenters: vec!["*".into()],
        task_groups: vec![group],
        ..Job::default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register(usize, JobSpec),
    Stop(usize),
    NodeDown(usize),
    NodeUp(usize),
    Fail(usize),
    /// Register two jobs, snapshot, place the second from fresh state, then plan the
    /// first against the stale snapshot (which does not see the second's allocations).
    StaleRace(usize, JobSpec, usize, JobSpec),
    /// Register two jobs and plan both on one snapshot; the applier evaluates the
    /// second while the first is committing.
    PipelinedRace(usize, JobSpec, usize, JobSpec),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, job_spec()).prop_map(|(j, s)| Op::Register(j, s)),
        1 => (0..4usize).prop_map(Op::Stop),
        1 => (0..5usize).prop_map(Op::NodeDown),
        1 => (0..5usize).prop_map(Op::NodeUp),
        1 => (0..20usize).prop_map(Op::Fail),
        2 => (0..4usize, job_spec(), 0..4usize, job_spec()).prop_map(|(a, s, b, t)| Op::StaleRace(a, s, b, t)),
        2 => (0..4usize, job_spec(), 0..4usize, job_spec()).prop_map(|(a, s, b, t)| Op::PipelinedRace(a, s, b, t)),
    ]
}

fn cluster(nodes: &[(i64, i64)]) -> Cluster {
    let mut cluster = Cluster::new();
    for (i, (cpu, mem)) in nodes.iter().enumerate() {
        let line = format!("node n{i} cpu={cpu} mem={mem} disk=1000 reserved_ports=22");
        cluster.step_line(&line).expect("node registers");
    }
    cluster
}

/// Every plan the scheduler would make now, from a snapshot of the current state, is
/// accepted by the applier on that same state.
fn check_plans_accepted(cluster: &Cluster) -> Result<(), TestCaseError> {
    for eval in cluster.due_evals() {
        let snap = cluster.state.snapshot();
        let out = schedule(&snap, &eval, 7, cluster.now_ns, SchedulerConfig::default());
        let evaluated = evaluate_plan_verbose(&cluster.state, &out.plan);
        prop_assert!(
            evaluated.rejected.is_empty(),
            "applier rejected a fresh plan: {:?}",
            evaluated.rejected
        );
    }
    Ok(())
}

/// No node is over-committed and no port is held twice: this holds after every commit.
fn check_resources(state: &State) -> Result<(), TestCaseError> {
    for node in state.nodes() {
        let Some(on_node) = state.node_allocs(&node.id) else { continue };
        let capacity = node.schedulable_capacity();
        let (mut cpu, mut mem, mut disk) = (0, 0, 0);
        let mut ports = BTreeSet::new();
        for alloc in on_node.allocs.values().filter(|a| !a.is_terminal()) {
            let r = alloc.allocated_resources.comparable();
            cpu += r.cpu_shares;
            mem += r.memory_mb;
            disk += r.disk_mb;
            for port in alloc_ports(alloc) {
                prop_assert!(port != 22, "reserved port handed out on {}", node.id);
                prop_assert!(ports.insert(port), "port {port} held twice on {}", node.id);
            }
        }
        prop_assert!(
            cpu <= capacity.cpu_shares && mem <= capacity.memory_mb && disk <= capacity.disk_mb,
            "node {} over-committed: cpu {cpu}/{} mem {mem}/{} disk {disk}/{}",
            node.id,
            capacity.cpu_shares,
            capacity.memory_mb,
            capacity.disk_mb
        );
        prop_assert_eq!(on_node.used.cpu_shares, cpu, "cached usage matches a recount");
    }
    Ok(())
}

/// Once every evaluation has run: no group runs more than its count, live names are
/// unique, stopped jobs run nothing. (A plan made from a stale snapshot may briefly
/// place for an older version; the newer version's evaluation corrects it, which is
/// why this is checked after the queue drains rather than after each commit.)
fn check_state(state: &State) -> Result<(), TestCaseError> {
    check_resources(state)?;
    let mut live: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for alloc in state.allocs().filter(|a| !a.is_terminal()) {
        live.entry((alloc.job_id.clone(), alloc.task_group.clone()))
            .or_default()
            .push(alloc.name.clone());
    }
    for ((job_id, group), names) in live {
        let job = state.job("default", &job_id).expect("allocations belong to jobs");
        let count = job.group(&group).map_or(0, |g| g.count) as usize;
        prop_assert!(!job.stop, "stopped job {job_id} still runs {names:?}");
        prop_assert!(
            names.len() <= count,
            "{job_id}.{group}: {} live > count {count}",
            names.len()
        );
        let unique: BTreeSet<&String> = names.iter().collect();
        prop_assert_eq!(unique.len(), names.len(), "duplicate live names {:?}", names);
    }
    Ok(())
}

/// Two jobs planned on one snapshot; the applier evaluates the second while the first's
/// result is still committing, counting it as applied, then both commit in that order
/// (as Raft commits a leader's entries) and no node is over-committed.
fn pipelined_race(
    cluster: &mut Cluster,
    (a, s): (usize, &JobSpec),
    (b, t): (usize, &JobSpec),
) -> Result<(), TestCaseError> {
    cluster.register_job(build_job(a, s));
    if b != a {
        cluster.register_job(build_job(b, t));
    }
    let snap = cluster.state.snapshot();
    let due = cluster.due_evals();
    let mut committing = Vec::new();
    let jobs = [format!("j{a}"), format!("j{b}")];
    for job_id in jobs.iter().take(if a == b { 1 } else { 2 }) {
        let Some(eval) = due.iter().rev().find(|e| &e.job_id == job_id) else { continue };
        // Seeded as a worker seeds its pass, so the two mint different allocation IDs.
        let seed = seed_from(&eval.id, snap.latest_index());
        let plan = schedule(&snap, eval, seed, cluster.now_ns, SchedulerConfig::default()).plan;
        let job = plan.job.clone();
        let results = committing.iter().map(|(result, _)| result).collect();
        let in_flight = InFlight::new(results, cluster.index + committing.len() as u64);
        let result = evaluate_plan_pipelined(&cluster.state, &in_flight, plan).result;
        committing.push((result, job));
    }
    for (result, job) in committing {
        cluster
            .commit(Command::PlanApply { result, job, evals: Vec::new() })
            .map_err(|e| TestCaseError::fail(format!("a pipelined plan did not apply: {e}")))?;
        check_resources(&cluster.state)?;
    }
    Ok(())
}

fn apply_op(cluster: &mut Cluster, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Register(j, spec) => cluster.register_job(build_job(*j, spec)),
        Op::Stop(j) => drop(cluster.step_line(&format!("stop-job j{j}"))),
        Op::NodeDown(n) => drop(cluster.step_line(&format!("node-status n{n} down"))),
        Op::NodeUp(n) => drop(cluster.step_line(&format!("node-status n{n} ready"))),
        Op::Fail(k) => {
            let live: Vec<String> = cluster
                .state
                .allocs()
                .filter(|a| !a.is_terminal())
                .map(|a| a.name.clone())
                .collect();
            if !live.is_empty() {
                drop(cluster.step_line(&format!("alloc {} failed", live[k % live.len()])));
            }
        }
        Op::StaleRace(a, s, b, t) => {
            cluster.register_job(build_job(*a, s));
            cluster.register_job(build_job(*b, t));
            cluster.take_stale();
            drop(cluster.step_line(&format!("run-job j{b}")));
            cluster.run_stale();
            check_resources(&cluster.state)?;
        }
        Op::PipelinedRace(a, s, b, t) => pipelined_race(cluster, (*a, s), (*b, t))?,
    }
    check_plans_accepted(cluster)?;
    cluster.run();
    check_state(&cluster.state)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn scheduling_is_safe(
        nodes in proptest::collection::vec((prop_oneof![Just(1000i64), Just(2000), Just(4000)], prop_oneof![Just(1024i64), Just(4096)]), 1..5),
        ops in proptest::collection::vec(op(), 1..12),
    ) {
        let mut cluster = cluster(&nodes);
        for op in &ops {
            apply_op(&mut cluster, op)?;
        }
    }

    #[test]
    fn a_stopped_job_places_nothing(spec in job_spec(), nodes in 1..4usize) {
        let mut cluster = cluster(&vec![(4000, 4096); nodes]);
        let mut job = build_job(0, &spec);
        job.stop = true;
        cluster.register_job(job);
        cluster.run();
        prop_assert_eq!(cluster.state.alloc_count(), 0);
    }
}

/// What the operator and the clients do during a rollout.
#[derive(Clone, Debug)]
enum RolloutOp {
    /// A client reports the k-th live allocation still without a verdict healthy.
    Healthy(usize),
    Promote,
    /// A new version with a destructive change.
    Update,
    /// The deployment watcher's (or anyone's) evaluation of the job.
    Eval,
}

fn rollout_op() -> impl Strategy<Value = RolloutOp> {
    prop_oneof![
        4 => (0..8usize).prop_map(RolloutOp::Healthy),
        1 => Just(RolloutOp::Promote),
        1 => Just(RolloutOp::Update),
        2 => Just(RolloutOp::Eval),
    ]
}

/// The one task of the rollout jobs; raising `memory` is a destructive update.
fn rollout_task(memory: i32) -> String {
    format!(
        r#"    task "t" {{
      driver = "docker"
      config {{ image = "app" }}
      resources {{
        cpu    = 100
        memory = {memory}
      }}
    }}
"#
    )
}

/// The active deployment of the job, if any.
fn active_deployment(state: &State, job: &str) -> Option<Arc<Deployment>> {
    state.latest_deployment("default", job).filter(|d| d.is_active()).cloned()
}

fn rollout_job(count: i32, max_parallel: i32, canary: i32, memory: i32) -> String {
    let task = rollout_task(memory);
    format!(
        r#"job "web" {{
  datacenters = ["*"]
  group "g" {{
    count = {count}
    update {{
      max_parallel = {max_parallel}
      canary       = {canary}
    }}
{task}  }}
}}"#
    )
}

/// The safety rule of rolling updates: the allocations of the active deployment that
/// are not yet healthy never exceed `max_parallel` plus its canaries.
fn check_rollout(state: &State, max_parallel: i32) -> Result<(), TestCaseError> {
    let Some(deployment) = active_deployment(state, "web") else { return Ok(()) };
    let canaries = deployment.task_groups.get("g").map_or(0, |g| g.desired_canaries);
    let waiting = state
        .allocs()
        .filter(|a| a.deployment_id == deployment.id && !a.is_terminal())
        .filter(|a| a.deployment_healthy() != Some(true))
        .count();
    let allowed = (max_parallel + canaries) as usize;
    prop_assert!(waiting <= allowed, "{waiting} allocations not yet healthy, allowed {allowed}");
    Ok(())
}

fn healthy_all(cluster: &mut Cluster) {
    let names: Vec<String> = cluster
        .state
        .allocs()
        .filter(|a| !a.is_terminal() && a.deployment_healthy().is_none())
        .map(|a| a.name.clone())
        .collect();
    for name in names {
        drop(cluster.step_line(&format!("health {name} healthy")));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rolling_updates_stay_within_max_parallel(
        count in 1..7i32,
        max_parallel in 1..4i32,
        canary in 0..3i32,
        ops in proptest::collection::vec(rollout_op(), 1..24),
    ) {
        let mut cluster = cluster(&[(8000, 16384), (8000, 16384)]);
        let mut memory = 64;
        cluster.register(&rollout_job(count, max_parallel, canary, memory));
        cluster.run();
        healthy_all(&mut cluster);
        for op in &ops {
            match op {
                RolloutOp::Healthy(k) => {
                    let waiting: Vec<String> = cluster
                        .state
                        .allocs()
                        .filter(|a| !a.is_terminal() && a.deployment_healthy().is_none())
                        .map(|a| a.name.clone())
                        .collect();
                    if !waiting.is_empty() {
                        let name = &waiting[k % waiting.len()];
                        drop(cluster.step_line(&format!("health {name} healthy")));
                    }
                }
                RolloutOp::Promote => drop(cluster.step_line("promote web")),
                RolloutOp::Update => {
                    memory += 16;
                    cluster.register(&rollout_job(count, max_parallel, canary, memory));
                }
                RolloutOp::Eval => drop(cluster.step_line("eval web")),
            }
            cluster.run();
            check_rollout(&cluster.state, max_parallel)?;
        }
    }
}

fn system_rollout_job(max_parallel: i32, memory: i32) -> String {
    let task = rollout_task(memory);
    format!(
        r#"job "agent" {{
  datacenters = ["*"]
  type = "system"
  group "g" {{
    update {{ max_parallel = {max_parallel} }}
{task}  }}
}}"#
    )
}

/// The safety rule of a system job's rolling update: the replacements of the active
/// deployment (destructive updates) not yet healthy never exceed `max_parallel`. New
/// nodes' placements and in-place updates are not limited, so they are not counted.
fn check_system_rollout(state: &State, max_parallel: i32) -> Result<(), TestCaseError> {
    let Some(deployment) = active_deployment(state, "agent") else { return Ok(()) };
    let replacing = state
        .allocs()
        .filter(|a| a.deployment_id == deployment.id && !a.is_terminal())
        .filter(|a| !a.previous_allocation.is_empty() && a.deployment_healthy() != Some(true))
        .count();
    let allowed = max_parallel as usize;
    prop_assert!(
        replacing <= allowed,
        "{replacing} replacements not yet healthy, allowed {allowed}"
    );
    Ok(())
}

/// `health` lines for the live allocations of the system job still without a verdict.
fn system_waiting(cluster: &Cluster) -> Vec<String> {
    cluster
        .state
        .allocs()
        .filter(|a| !a.is_terminal() && a.deployment_healthy().is_none())
        .map(|a| format!("health {}@{} healthy", a.name, a.node_id))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn system_rolling_updates_stay_within_max_parallel(
        nodes in 1..6usize,
        max_parallel in 1..4i32,
        ops in proptest::collection::vec(rollout_op(), 1..24),
    ) {
        let mut cluster = cluster(&vec![(8000, 16384); nodes]);
        let mut memory = 64;
        cluster.register(&system_rollout_job(max_parallel, memory));
        cluster.run();
        for line in system_waiting(&cluster) {
            drop(cluster.step_line(&line));
        }
        for op in &ops {
            match op {
                RolloutOp::Healthy(k) => {
                    let waiting = system_waiting(&cluster);
                    if !waiting.is_empty() {
                        drop(cluster.step_line(&waiting[k % waiting.len()]));
                    }
                }
                // A system job has no canaries to promote: the operator looks instead.
                RolloutOp::Promote | RolloutOp::Eval => drop(cluster.step_line("eval agent")),
                RolloutOp::Update => {
                    memory += 16;
                    cluster.register(&system_rollout_job(max_parallel, memory));
                }
            }
            cluster.run();
            check_system_rollout(&cluster.state, max_parallel)?;
        }
    }
}
