//! The cluster checker: reliability.md's invariants over whole servers, checked after
//! every step of every simulated server, plus the end-of-run ones the liveness phase
//! calls. Each check names the invariant it is (reliability.md section and the Nomad
//! issue behind it).
//!
//! It reads a server through its public getters only: Raft's role, term and log, the
//! leader loop's term and heartbeat deadlines, and the replicated state.

use super::raft::entry_hash;
use drover_core::codec::{self, FRAME_LEN_MAX_BYTES_DEFAULT, FrameKind};
use drover_core::model::{AllocClientStatus, AllocDesiredStatus, EvalStatus, JobType, NodeStatus};
use drover_core::raft::{Entry, Index, NodeId, Payload, Term};
use drover_core::server::{HeartbeatConfig, Server};
use drover_core::state::{Command, State};
use drover_core::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// Heartbeat deadlines kept per node and leader loop.
const DEADLINES_KEPT: usize = 16;

/// A server of a region: (region number, server id).
pub type ServerRef = (u8, NodeId);

fn name((region, id): ServerRef) -> String {
    format!("r{region}s{id}")
}

/// When a server's step happened, on the simulated clock and on its own.
#[derive(Clone, Copy, Debug)]
pub struct StepTime {
    /// Simulated unix ms.
    pub global_ms: u64,
    /// Simulated unix ms at which the server's lease ends (0: it holds none).
    pub lease_until_global: u64,
    /// The server's own clock.
    pub local: Millis,
}

/// A leader loop that is running, as its server last showed it.
#[derive(Clone, Copy, Debug)]
struct ActiveLoop {
    term: Term,
    /// Simulated ms at which its lease ends: the loop cannot run past it.
    lease_until_global: u64,
}

/// What is known of the leader loop of one term.
#[derive(Clone, Debug)]
struct LoopRecord {
    server: NodeId,
    /// The server's own clock when the loop started (entries it stamps use this clock).
    established_local: Millis,
    /// Nodes that were live in the state the loop started from: they get the failover TTL.
    live_at_start: BTreeSet<String>,
    /// The heartbeat deadlines the loop showed for each node, by the loop's clock when it
    /// showed them (the latest few): a down-marking is judged by the deadline in force
    /// when it was proposed, not by a heartbeat that arrived while it was committing.
    deadlines: BTreeMap<String, BTreeMap<Millis, Millis>>,
}

pub struct ClusterChecker {
    pub violations: Vec<String>,
    tracing: bool,
    heartbeat: HeartbeatConfig,
    leaders: BTreeMap<(u8, Term), NodeId>,
    loops: BTreeMap<ServerRef, ActiveLoop>,
    loop_terms: BTreeMap<(u8, Term), LoopRecord>,
    /// Per region, the hash of the entry applied at each index, as first seen.
    canon: BTreeMap<u8, BTreeMap<Index, u64>>,
    applied: BTreeMap<ServerRef, Index>,
    /// Per region, the last state index the state checks ran on.
    state_checked: BTreeMap<u8, u64>,
}

impl ClusterChecker {
    pub fn new(tracing: bool) -> ClusterChecker {
        ClusterChecker {
            violations: Vec::new(),
            tracing,
            heartbeat: HeartbeatConfig::default(),
            leaders: BTreeMap::new(),
            loops: BTreeMap::new(),
            loop_terms: BTreeMap::new(),
            canon: BTreeMap::new(),
            applied: BTreeMap::new(),
            state_checked: BTreeMap::new(),
        }
    }

    pub fn violation(&mut self, violation: String) {
        self.violations.push(violation);
    }

    /// The highest index applied in any region.
    pub fn commits(&self) -> u64 {
        self.canon.values().filter_map(|c| c.keys().next_back()).copied().max().unwrap_or(0)
    }

    /// A server (re)started with its state machine at `applied`.
    pub fn on_server_start(&mut self, server: ServerRef, applied: Index) {
        self.applied.insert(server, applied);
        self.loops.remove(&server);
    }

    /// A server went down: its leader loop went with it.
    pub fn on_server_down(&mut self, server: ServerRef) {
        self.loops.remove(&server);
    }

    /// Checks one server after a step; returns trace notes (commits, leadership) when
    /// tracing.
    pub fn on_server_step(
        &mut self,
        at: ServerRef,
        server: &Server,
        time: StepTime,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        self.check_election(at, server);
        self.check_leader_loop(at, server, time, &mut notes);
        self.check_applied(at, server, &mut notes);
        let state = server.state();
        let checked = self.state_checked.entry(at.0).or_default();
        if state.latest_index() > *checked {
            *checked = state.latest_index();
            let found = check_state(state);
            self.violations.extend(found.into_iter().map(|v| format!("{}: {v}", name(at))));
        }
        notes
    }

    /// reliability.md §2, Raft election safety: at most one leader per term per region.
    fn check_election(&mut self, at: ServerRef, server: &Server) {
        let raft = server.raft();
        if !raft.is_leader() {
            return;
        }
        let leader = *self.leaders.entry((at.0, raft.term())).or_insert(at.1);
        if leader != at.1 {
            self.violations.push(format!(
                "election safety: region r{} term {} has leaders s{leader} and s{}",
                at.0,
                raft.term(),
                at.1
            ));
        }
    }

    /// reliability.md §3, Nomad #4749 / PR #3890 and #3333: at most one active leader loop
    /// (broker, plan applier, heartbeat timers) per region at any instant, and only one
    /// server's loop per term.
    fn check_leader_loop(
        &mut self,
        at: ServerRef,
        server: &Server,
        time: StepTime,
        notes: &mut Vec<String>,
    ) {
        let StepTime { global_ms, lease_until_global, local } = time;
        let Some(term) = server.leader_loop_term() else {
            if self.loops.remove(&at).is_some() && self.tracing {
                notes.push("leader loop stopped".to_owned());
            }
            return;
        };
        if self.loops.get(&at).is_none_or(|l| l.term != term) {
            let live_at_start = server
                .state()
                .nodes()
                .filter(|n| n.status != NodeStatus::Down)
                .map(|n| n.id.clone())
                .collect();
            let record = LoopRecord {
                server: at.1,
                established_local: local,
                live_at_start,
                deadlines: BTreeMap::new(),
            };
            let earlier = self.loop_terms.entry((at.0, term)).or_insert(record);
            if earlier.server != at.1 {
                let other = earlier.server;
                self.violations.push(format!(
                    "leader loop: region r{} term {term} ran on s{other} and s{}",
                    at.0, at.1
                ));
            }
            if self.tracing {
                notes.push(format!(
                    "leader loop started term={term} epoch={}",
                    server.leader_epoch()
                ));
            }
        }
        self.loops.insert(at, ActiveLoop { term, lease_until_global });
        for (&other, active) in &self.loops {
            if other.0 == at.0 && other != at && active.lease_until_global > global_ms {
                self.violations.push(format!(
                    "two active leader loops: {} (term {term}) and {} (term {}, lease until t={}ms)",
                    name(at),
                    name(other),
                    active.term,
                    active.lease_until_global
                ));
            }
        }
        if let Some(record) = self.loop_terms.get_mut(&(at.0, term)) {
            for node in server.state().nodes() {
                let Some(deadline) = server.heartbeat_deadline(&node.id) else { continue };
                // Looked up before inserting: the leader steps often, nodes join rarely.
                let seen = match record.deadlines.get_mut(&node.id) {
                    Some(seen) => seen,
                    None => record.deadlines.entry(node.id.clone()).or_default(),
                };
                if seen.values().next_back() != Some(&deadline) {
                    seen.insert(local, deadline);
                }
                while seen.len() > DEADLINES_KEPT {
                    seen.pop_first();
                }
            }
        }
    }

    /// reliability.md §1-2, state machine safety as a hash chain: every server applies
    /// the same entry at each index. The first server to apply an index fixes it.
    fn check_applied(&mut self, at: ServerRef, server: &Server, notes: &mut Vec<String>) {
        let raft = server.raft();
        let seen = self.applied.get(&at).copied().unwrap_or(0);
        let applied = raft.applied_index();
        for index in seen + 1..=applied {
            // Entries a snapshot replaced were checked on the servers that applied them.
            let Some(entry) = raft.entry(index) else { continue };
            let hash = entry_hash(entry);
            let canon = self.canon.entry(at.0).or_default();
            match canon.get(&index) {
                Some(&first) if first != hash => self.violations.push(format!(
                    "applied histories differ: {} applied another entry at index {index}",
                    name(at)
                )),
                Some(_) => {}
                None => {
                    canon.insert(index, hash);
                    self.on_first_apply(at, entry, notes);
                }
            }
        }
        self.applied.insert(at, applied.max(seen));
    }

    fn on_first_apply(&mut self, at: ServerRef, entry: &Entry, notes: &mut Vec<String>) {
        let Payload::Command(bytes) = &entry.payload else { return };
        let Ok(command) =
            codec::decode::<Command>(FrameKind::LOG_ENTRY, bytes, FRAME_LEN_MAX_BYTES_DEFAULT)
        else {
            self.violations.push(format!("entry {} of r{} does not decode", entry.index, at.0));
            return;
        };
        if let Command::NodeStatus { node_id, status: NodeStatus::Down, .. } = &command {
            self.check_down(at.0, entry, node_id);
        }
        if self.tracing {
            notes.push(format!(
                "commit idx={} term={} {}",
                entry.index,
                entry.term,
                describe(&command)
            ));
        }
    }

    /// reliability.md §3, Nomad #3840, #3595: a node is marked down only by the current
    /// leader's loop, only after its heartbeat deadline (TTL + grace) passed, and not
    /// within the failover TTL of a takeover for nodes that were live then.
    fn check_down(&mut self, region: u8, entry: &Entry, node_id: &str) {
        let Some(record) = self.loop_terms.get(&(region, entry.term)) else {
            self.violations.push(format!(
                "node {node_id} marked down in term {} of r{region}, which had no leader loop",
                entry.term
            ));
            return;
        };
        let at = entry.at;
        let earliest = if record.live_at_start.contains(node_id) {
            record.established_local + Millis(self.heartbeat.failover_heartbeat_ttl_ms)
        } else {
            record.established_local
                + Millis(self.heartbeat.min_heartbeat_ttl_ms + self.heartbeat.heartbeat_grace_ms)
        };
        // A heartbeat after the takeover legitimately replaces the failover TTL by the
        // normal one; the last deadline the loop showed is the one that must have passed.
        let deadline = record
            .deadlines
            .get(node_id)
            .and_then(|seen| seen.range(..=at).next_back().map(|(_, &d)| d))
            .unwrap_or(earliest);
        if at < deadline {
            self.violations.push(format!(
                "node {node_id} marked down at {at} by r{region}s{} (term {}), before its deadline {deadline} (loop started {})",
                record.server, entry.term, record.established_local
            ));
        }
    }
}

/// The invariants that hold in every replicated state, whatever happened before.
pub fn check_state(state: &State) -> Vec<String> {
    let mut found = Vec::new();
    check_node_usage(state, &mut found);
    check_alloc_names(state, &mut found);
    check_blocked_evals(state, &mut found);
    check_summaries(state, &mut found);
    check_reschedule_trackers(state, &mut found);
    found
}

fn live(alloc: &drover_core::model::Allocation) -> bool {
    alloc.desired_status == AllocDesiredStatus::Run && !alloc.client_status.is_terminal()
}

/// reliability.md §3, Nomad #25413, #18509, #9506: no node is over-committed (cpu,
/// memory, disk) and no host port is held twice on one node.
fn check_node_usage(state: &State, found: &mut Vec<String>) {
    /// What the live allocations on one node hold.
    #[derive(Default)]
    struct NodeUse<'a> {
        cpu: i64,
        memory: i64,
        disk: i64,
        ports: BTreeMap<i32, &'a str>,
    }
    let mut used: BTreeMap<&str, NodeUse<'_>> = BTreeMap::new();
    for alloc in state.allocs().filter(|a| !a.is_terminal()) {
        let node = used.entry(alloc.node_id.as_str()).or_default();
        let comparable = alloc.allocated_resources.comparable();
        node.cpu += comparable.cpu_shares;
        node.memory += comparable.memory_mb;
        node.disk += comparable.disk_mb;
        for port in drover_core::state::alloc_ports(alloc) {
            if let Some(other) = node.ports.insert(port, alloc.name.as_str()) {
                found.push(format!(
                    "port {port} on node {} held by {other} and {}",
                    alloc.node_id, alloc.name
                ));
            }
        }
    }
    for (node_id, usage) in used {
        let Some(node) = state.node(node_id) else { continue };
        let capacity = node.schedulable_capacity();
        if usage.cpu > capacity.cpu_shares
            || usage.memory > capacity.memory_mb
            || usage.disk > capacity.disk_mb
        {
            found.push(format!(
                "node {} over-committed: cpu {}/{} memory {}/{} disk {}/{}",
                node.name,
                usage.cpu,
                capacity.cpu_shares,
                usage.memory,
                capacity.memory_mb,
                usage.disk,
                capacity.disk_mb
            ));
        }
    }
}

/// reliability.md §3, Nomad #1269, #3593: live allocations of a group never exceed its
/// count (the larger of the current count and the count of the version each live
/// allocation was placed for, while a plan stopping the surplus is on its way), names are
/// unique among them, and a system group has at most one per node.
fn check_alloc_names(state: &State, found: &mut Vec<String>) {
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&drover_core::model::Allocation>> =
        BTreeMap::new();
    for alloc in state.allocs().filter(|a| live(a)) {
        let key = (alloc.namespace.as_str(), alloc.job_id.as_str(), alloc.task_group.as_str());
        groups.entry(key).or_default().push(alloc);
    }
    for ((namespace, job_id, group), allocs) in groups {
        // A purged job's allocations live on until the plan that stops them commits, and
        // nothing is left to say what they were: they are not checked then.
        let Some(job) = state.job(namespace, job_id) else { continue };
        if matches!(job.job_type, JobType::System | JobType::Sysbatch) {
            let mut nodes = BTreeSet::new();
            for alloc in &allocs {
                if !nodes.insert(alloc.node_id.as_str()) {
                    found.push(format!(
                        "system group {job_id}.{group} has two live allocations on node {}",
                        alloc.node_id
                    ));
                }
            }
            continue;
        }
        // A canary runs beside the allocation whose name it took until that one stops
        // after promotion: the deployment's canaries are allowed on top of the count.
        let mut names = BTreeSet::new();
        for alloc in allocs.iter().filter(|a| !a.is_canary()) {
            if !names.insert(alloc.name.as_str()) {
                found.push(format!("two live allocations named {}", alloc.name));
            }
        }
        let canaries_allowed = allocs
            .iter()
            .filter(|a| a.is_canary())
            .filter_map(|a| state.deployment(&a.deployment_id))
            .filter_map(|d| d.task_groups.get(group).map(|g| g.desired_canaries.max(0) as usize))
            .max()
            .unwrap_or(0);
        let canaries = allocs.iter().filter(|a| a.is_canary()).count().min(canaries_allowed);
        let current = job.group(group).map_or(0, |g| g.count);
        let placed_for = allocs
            .iter()
            .filter_map(|a| state.alloc_job(a).and_then(|j| j.group(group).map(|g| g.count)))
            .max()
            .unwrap_or(0);
        let allowed = current.max(placed_for).max(0) as usize + canaries;
        if allocs.len() > allowed {
            found.push(format!(
                "group {job_id}.{group} has {} live allocations, count allows {allowed}",
                allocs.len()
            ));
        }
    }
}

/// reliability.md §3, Nomad #15858 / PR #14621: at most one blocked evaluation per job.
fn check_blocked_evals(state: &State, found: &mut Vec<String>) {
    let mut blocked: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for eval in state.evals().filter(|e| e.status == EvalStatus::Blocked) {
        *blocked.entry((eval.namespace.as_str(), eval.job_id.as_str())).or_default() += 1;
    }
    for ((_, job_id), count) in blocked {
        if count > 1 {
            found.push(format!("job {job_id} has {count} blocked evaluations"));
        }
    }
}

/// reliability.md §3, Nomad #17722, #4731: summary counters equal the totals recomputed
/// from the allocations (they are unsigned, so "never negative" is this equality).
fn check_summaries(state: &State, found: &mut Vec<String>) {
    for job in state.jobs() {
        let Some(summary) = state.job_summary(&job.namespace, &job.id) else { continue };
        let mut running: BTreeMap<&str, u64> = BTreeMap::new();
        let mut starting: BTreeMap<&str, u64> = BTreeMap::new();
        let allocs = state.job_allocs(&job.namespace, &job.id);
        // Allocations left by an earlier job of the same name (purged, registered again)
        // belong to that job's summary, which the purge removed.
        for alloc in allocs.iter().filter(|a| a.create_index >= summary.create_index) {
            match alloc.client_status {
                AllocClientStatus::Running => *running.entry(&alloc.task_group).or_default() += 1,
                AllocClientStatus::Pending => *starting.entry(&alloc.task_group).or_default() += 1,
                _ => {}
            }
        }
        for (group, counts) in &summary.summary {
            let want = (
                running.get(group.as_str()).copied().unwrap_or(0),
                starting.get(group.as_str()).copied().unwrap_or(0),
            );
            if (counts.running, counts.starting) != want {
                found.push(format!(
                    "summary of {}.{group}: running/starting {}/{}, allocations say {}/{}",
                    job.id, counts.running, counts.starting, want.0, want.1
                ));
            }
        }
    }
}

/// reliability.md §3, Nomad #24918: a replacement of a failed or lost allocation
/// carries its predecessor's reschedule events.
fn check_reschedule_trackers(state: &State, found: &mut Vec<String>) {
    for alloc in state.allocs().filter(|a| !a.previous_allocation.is_empty()) {
        let Some(previous) = state.alloc(&alloc.previous_allocation) else { continue };
        let rescheduled =
            matches!(previous.client_status, AllocClientStatus::Failed | AllocClientStatus::Lost)
                && previous.next_allocation == alloc.id;
        let before = previous.reschedule_tracker.as_ref().map_or(0, |t| t.events.len());
        let after = alloc.reschedule_tracker.as_ref().map_or(0, |t| t.events.len());
        if rescheduled && after < before {
            found.push(format!(
                "{} replaced {} but kept {after} of its {before} reschedule events",
                alloc.name, previous.id
            ));
        }
    }
}

/// One line per command for the trace.
fn describe(command: &Command) -> String {
    match command {
        Command::JobRegister { job, eval, .. } => format!(
            "job register {} v{} {:?} groups={} eval={}",
            job.id,
            job.version,
            job.job_type,
            job.task_groups
                .iter()
                .map(|g| format!("{}x{}", g.name, g.count))
                .collect::<Vec<_>>()
                .join(","),
            eval.as_ref().map_or("-", |e| short(&e.id))
        ),
        Command::JobDeregister { job_id, purge, .. } => {
            format!("job {} {job_id}", if *purge { "purge" } else { "stop" })
        }
        Command::NodeRegister { node } => {
            format!("node register {} {}", node.name, node.status.as_str())
        }
        Command::NodeStatus { node_id, status, evals } => {
            format!("node {} {} evals={}", short(node_id), status.as_str(), evals.len())
        }
        Command::NodeEligibility { node_id, eligibility, .. } => {
            format!("node {} eligibility {eligibility:?}", short(node_id))
        }
        Command::NodeDrain { node_id, drain, .. } => {
            format!(
                "node {} drain {}",
                short(node_id),
                if drain.is_some() { "start" } else { "cancel" }
            )
        }
        Command::EvalUpsert { evals } => format!(
            "evals {}",
            evals
                .iter()
                .map(|e| format!("{}:{}", short(&e.id), e.status.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Command::PlanApply { result, evals, .. } => {
            let placed: Vec<String> = result
                .node_allocation
                .values()
                .flatten()
                .map(|a| format!("{}@{}", a.name, a.node_name))
                .collect();
            let stopped: usize = result.node_update.values().map(Vec::len).sum();
            format!("plan place=[{}] stop={stopped} evals={}", placed.join(" "), evals.len())
        }
        Command::AllocClientUpdate { updates, .. } => {
            format!("alloc client updates {}", updates.len())
        }
        Command::DeploymentUpsert { deployment } => format!("deployment {}", short(&deployment.id)),
        Command::Reap { eval_ids, alloc_ids, jobs, node_ids } => format!(
            "gc evals={} allocs={} jobs={} nodes={}",
            eval_ids.len(),
            alloc_ids.len(),
            jobs.len(),
            node_ids.len()
        ),
        Command::PeriodicLaunch { child, eval, forced, .. } => format!(
            "periodic launch {}{} eval {}",
            child.id,
            if *forced { " (forced)" } else { "" },
            short(&eval.id)
        ),
        #[allow(unreachable_patterns)]
        other => format!("{:?}", std::mem::discriminant(other)),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// reliability.md §3, Nomad #19805, #25354, #11774, #12680 (liveness): once faults stop,
/// every evaluation is terminal (Nomad #3333, #15858: none is left pending), every node
/// is ready, and every job is in its desired state: a service group runs `count`
/// allocations of the current version, a system group one per node, a batch or sysbatch
/// group runs nothing more, a stopped job runs nothing. `Err` says what is still missing.
/// Whether the job's most recent finished evaluation could not place all of `group`.
fn latest_eval_failed(state: &State, job: &drover_core::model::Job, group: &str) -> bool {
    state
        .evals()
        .filter(|e| e.job_id == job.id && e.namespace == job.namespace)
        .filter(|e| e.status == EvalStatus::Complete)
        .max_by_key(|e| e.modify_index)
        .is_some_and(|e| e.failed_tg_allocs.contains_key(group))
}

/// Whether the deployment of the job's current version failed.
fn deployment_failed(state: &State, job: &drover_core::model::Job) -> bool {
    state.latest_deployment(&job.namespace, &job.id).is_some_and(|d| {
        d.job_version == job.version
            && d.job_create_index == job.create_index
            && d.status == drover_core::model::DeploymentStatus::Failed
    })
}

pub fn check_converged(state: &State) -> Result<(), String> {
    if let Some(eval) = state.evals().find(|e| e.status == EvalStatus::Pending) {
        return Err(format!("evaluation {} of {} still pending", short(&eval.id), eval.job_id));
    }
    if let Some(node) = state.nodes().find(|n| !n.is_ready()) {
        return Err(format!("node {} is {}", node.name, node.status.as_str()));
    }
    let schedulable: Vec<&str> =
        state.nodes().filter(|n| n.is_schedulable()).map(|n| n.id.as_str()).collect();
    for job in state.jobs() {
        let allocs = state.job_allocs(&job.namespace, &job.id);
        for group in &job.task_groups {
            let mine: Vec<_> = allocs.iter().filter(|a| a.task_group == group.name).collect();
            let live: Vec<_> = mine.iter().filter(|a| live(a)).collect();
            let running_current = live
                .iter()
                .filter(|a| {
                    a.client_status == AllocClientStatus::Running && a.job_version == job.version
                })
                .count();
            let settled = match (job.stop, job.job_type) {
                (true, _) => live.is_empty(),
                // A failed deployment stops the rollout where it was (as in Nomad, until
                // the operator acts): the group is settled once it runs its count.
                (false, JobType::Service) if deployment_failed(state, job) => {
                    live.len() == group.count.max(0) as usize
                        && live.iter().all(|a| a.client_status == AllocClientStatus::Running)
                }
                (false, JobType::Service) => {
                    running_current == group.count.max(0) as usize && live.len() == running_current
                }
                // A system group runs on every schedulable node its tasks fit on (where
                // one does not fit, the job's latest finished evaluation says so). A node
                // made ineligible keeps what it runs, as in Nomad, so it is not counted.
                (false, JobType::System) => {
                    let running_on: BTreeSet<&str> =
                        live.iter().map(|a| a.node_id.as_str()).collect();
                    live.len() == running_current
                        && (schedulable.iter().all(|node| running_on.contains(node))
                            || latest_eval_failed(state, job, &group.name))
                }
                // A child of a periodic job that still launches may be mid-run when
                // the check looks: it is settled while its allocations run the current
                // version (its batch tasks then complete on their own).
                (false, JobType::Batch) if launched_by_active_parent(state, job) => {
                    live.len() == running_current
                }
                // A batch group is settled once nothing of it runs and no evaluation of
                // the job is pending (checked above): its allocations completed or failed
                // for good, and garbage collection may have reaped them since, so their
                // count can no longer be judged.
                (false, JobType::Batch | JobType::Sysbatch) => live.is_empty(),
            };
            if !settled {
                let live_on: Vec<String> = live
                    .iter()
                    .map(|a| {
                        let node = state.node(&a.node_id).map_or("?", |n| n.name.as_str());
                        format!("{}@{node}:{}", a.name, a.client_status.as_str())
                    })
                    .collect();
                return Err(format!(
                    "{} {:?}{} group {}: {} live ({} running at v{}), count {}, {} schedulable nodes; live: {}",
                    job.id,
                    job.job_type,
                    if job.stop { " (stopped)" } else { "" },
                    group.name,
                    live.len(),
                    running_current,
                    job.version,
                    group.count,
                    schedulable.len(),
                    live_on.join(" ")
                ));
            }
        }
    }
    Ok(())
}

/// Whether `job` is a child launched by a periodic job that is still active.
fn launched_by_active_parent(state: &State, job: &drover_core::model::Job) -> bool {
    !job.parent_id.is_empty()
        && state.job(&job.namespace, &job.parent_id).is_some_and(|p| p.is_periodic_active())
}

/// Periodic at-most-once across failover (reliability.md §3, Nomad #11052: a new leader
/// force-ran every periodic job). A child's ID names its parent and launch second, so a
/// time launched twice is a child ID created at two different Raft indexes (the first
/// reaped by GC, then launched again); and each server's launch record of a parent never
/// goes back while the server runs (a restarted server replays its log from older state,
/// so its records are followed afresh). A parent purged and registered again is a new
/// job (another create index): its record starts afresh, as Nomad deletes a purged
/// job's launch.
#[derive(Debug, Default)]
pub struct PeriodicChecker {
    /// Per region, each periodic child ever seen, with the index that created it and its
    /// parent's create index then (the parent's incarnation).
    children: BTreeMap<(u8, String), (u64, u64)>,
    /// Per server, each parent's create index and launch record as last seen.
    records: BTreeMap<ServerRef, BTreeMap<String, (u64, i64)>>,
    /// Per server, the jobs-table index last checked.
    checked: BTreeMap<ServerRef, u64>,
}

impl PeriodicChecker {
    pub fn on_server_start(&mut self, server: ServerRef) {
        self.records.remove(&server);
        self.checked.remove(&server);
    }

    /// Checks a server's state after a step; returns the violations found.
    pub fn on_server_step(&mut self, at: ServerRef, state: &State) -> Vec<String> {
        let jobs_index = state.table_indexes().jobs;
        if self.checked.insert(at, jobs_index) == Some(jobs_index) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for child in state.jobs().filter(|j| !j.parent_id.is_empty() && j.id.contains("/periodic-"))
        {
            let parent =
                state.job(&child.namespace, &child.parent_id).map_or(0, |p| p.create_index);
            let key = (at.0, child.id.clone());
            let (first, incarnation) =
                *self.children.entry(key.clone()).or_insert((child.create_index, parent));
            if incarnation != parent {
                // The parent was purged and registered again: a new job, whose launches
                // are its own.
                self.children.insert(key, (child.create_index, parent));
            } else if first != child.create_index {
                found.push(format!(
                    "{}: periodic child {} launched twice (created at index {first} and {})",
                    name(at),
                    child.id,
                    child.create_index
                ));
            }
        }
        let records = self.records.entry(at).or_default();
        for (key, launch_ns) in state.periodic_launches() {
            let Some(parent) = state.job(&key.namespace, &key.id) else { continue };
            let seen = (parent.create_index, launch_ns);
            let previous = records.insert(key.id.clone(), seen);
            if let Some((incarnation, before)) = previous
                && incarnation == parent.create_index
                && launch_ns < before
            {
                found.push(format!(
                    "{}: periodic job {} launch record went back from {before} to {launch_ns}",
                    name(at),
                    key.id,
                ));
            }
        }
        found
    }
}
