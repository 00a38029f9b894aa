//! The cluster checker: reliability.md's invariants over whole servers, checked after
//! every step of every simulated server, plus the end-of-run ones the liveness phase
//! calls. Each check names the invariant it is (reliability.md section and the Nomad
//! issue behind it).
//!
//! It reads a server through its public getters only: Raft's role, term and log, the
//! leader loop's term and heartbeat deadlines, and the replicated state.

use super::raft::entry_hash;
use drover_core::codec::{self, FRAME_LEN_MAX_BYTES_DEFAULT, FrameKind};
use drover_core::model::SchedulerType;
use drover_core::model::{
    AllocClientStatus, AllocDesiredStatus, Allocation, EvalStatus, Evaluation, Job, JobType,
    NodeStatus,
};
use drover_core::raft::{Entry, Index, NodeId, Payload, Term};
use drover_core::server::{
    GcConfig, HeartbeatConfig, Server, batch_eval_kept, batch_eval_superseded,
};
use drover_core::state::{Command, State};
use drover_core::time::Millis;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
    /// The server's count of loops it started, and its own clock when this one started:
    /// a loop restarted within one term starts its timers (GC among them) afresh.
    epoch: u64,
    started_local: Millis,
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
    /// Per region, the state invariants over the newest state seen.
    states: BTreeMap<u8, StateChecker>,
    /// Per (region, namespace, job), when its last purge was proposed (leader's clock):
    /// a purged job's evaluations are left to GC from then on.
    purged_at: BTreeMap<(u8, String, String), Millis>,
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
            states: BTreeMap::new(),
            purged_at: BTreeMap::new(),
        }
    }

    pub fn violation(&mut self, violation: String) {
        self.violations.push(violation);
    }

    /// The highest index applied in any region.
    pub fn commits(&self) -> u64 {
        self.canon.values().filter_map(|c| c.keys().next_back()).copied().max().unwrap_or(0)
    }

    /// The newest write of any evaluation of a job the region's states ever showed.
    pub fn eval_written(&self, region: u8, job: &Job) -> Option<i64> {
        let key = (job.namespace.clone(), job.id.clone());
        self.states.get(&region)?.eval_written.get(&key).copied()
    }

    /// When the job was last purged in `region` (the leader's clock), if ever.
    pub fn purged_at(&self, region: u8, namespace: &str, job_id: &str) -> Option<Millis> {
        let key = (region, namespace.to_owned(), job_id.to_owned());
        self.purged_at.get(&key).copied()
    }

    /// When `at`'s running leader loop started, by its own clock.
    pub fn loop_started(&self, at: ServerRef) -> Option<Millis> {
        self.loops.get(&at).map(|active| active.started_local)
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
        let checker = self.states.entry(at.0).or_default();
        if state.latest_index() > checker.last.latest_index() {
            let found = checker.check(state);
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
        let epoch = server.leader_epoch();
        let started_local = match self.loops.get(&at) {
            Some(active) if active.term == term && active.epoch == epoch => active.started_local,
            _ => local,
        };
        self.loops.insert(at, ActiveLoop { term, epoch, started_local, lease_until_global });
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
            // The flat node list: a leader loop's scheduler builds it anyway.
            for node in server.state().node_list().nodes() {
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
    /// the same entry at each index. The first server to apply an index fixes it, so no
    /// committed index goes unseen: a compaction keeps far more trailing entries than a
    /// step applies, and the only entries a server lacks are those under a snapshot it
    /// installed, which the server that took it applied, and the checker saw, first.
    fn check_applied(&mut self, at: ServerRef, server: &Server, notes: &mut Vec<String>) {
        let raft = server.raft();
        let seen = self.applied.get(&at).copied().unwrap_or(0);
        let applied = raft.applied_index();
        for index in seen + 1..=applied {
            let canon = self.canon.entry(at.0).or_default();
            let Some(entry) = raft.entry(index) else {
                if !canon.contains_key(&index) {
                    self.violations.push(format!(
                        "{} applied index {index}, gone from its log, that no server was seen \
                         applying",
                        name(at)
                    ));
                }
                continue;
            };
            let hash = entry_hash(entry);
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
        if let (Payload::Membership(membership), true) = (&entry.payload, self.tracing) {
            notes.push(format!(
                "commit idx={} term={} raft configuration voters={:?} learners={:?}",
                entry.index, entry.term, membership.voters, membership.learners
            ));
        }
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
        if let Command::JobDeregister { namespace, job_id, purge: true, .. } = &command {
            self.purged_at.insert((at.0, namespace.clone(), job_id.clone()), entry.at);
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

/// The invariants that hold in every replicated state, whatever happened before, checked
/// on what changed since the last state checked. Each invariant is a function of one part
/// of the state: one node and the allocations using it, one group's live allocations,
/// one job (its summary, allocations and blocked evaluations), one allocation and its
/// predecessor. Only the parts an entry that changed belongs to are checked again, and
/// the first state is compared with the empty one, so all of it is checked.
///
/// Entries are compared by pointer: a state shares every entry it did not write with the
/// state it was applied from, and an entry written anew counts as changed even when it is
/// equal, so no change is missed (a state of another lineage, such as a restarted
/// server's, is all changes). A table whose index did not move holds what it held.
#[derive(Default)]
pub struct StateChecker {
    last: State,
    /// Non-terminal allocations by node: what holds each node's resources and ports.
    on_node: BTreeMap<String, BTreeMap<String, Arc<Allocation>>>,
    /// Live allocations by (namespace, job, group).
    in_group: BTreeMap<GroupKey, BTreeMap<String, Arc<Allocation>>>,
    /// Blocked evaluations by (namespace, job): reliability.md §3, Nomad #15858 / PR
    /// #14621, at most one blocked evaluation per job.
    blocked: BTreeMap<(String, String), BTreeMap<String, Arc<Evaluation>>>,
    /// Per (namespace, job), the newest write of any of its evaluations ever seen (unix
    /// ns), reaped ones included: GC judges a dead job by it.
    eval_written: BTreeMap<(String, String), i64>,
    /// Entries in the last state's tables that have no count of their own.
    evals_len: usize,
    jobs_len: usize,
}

type GroupKey = (String, String, String);

/// The parts of a state that entries which changed belong to.
#[derive(Default)]
struct Touched {
    nodes: BTreeSet<String>,
    groups: BTreeSet<GroupKey>,
    /// Jobs whose summary and groups to check again.
    jobs: BTreeSet<(String, String)>,
    /// Jobs whose blocked evaluations changed.
    blocked: BTreeSet<(String, String)>,
    /// Allocations whose reschedule tracker to check against their predecessor's.
    allocs: BTreeSet<String>,
    /// An ID written again for another object (another job's evaluation, another
    /// allocation): IDs are random and name one object for good.
    reused: Vec<String>,
}

/// One entry that differs between two states: (older, newer), `None` where absent.
type Change<'a, T> = (Option<&'a Arc<T>>, Option<&'a Arc<T>>);

/// The entries of one table that differ between two states, as (older, newer); `in_*`
/// looks an entry up by its own key in either state.
fn changes<'a, T>(
    newer: impl Iterator<Item = &'a Arc<T>>,
    older: impl Iterator<Item = &'a Arc<T>>,
    older_len: usize,
    in_older: impl Fn(&T) -> Option<&'a Arc<T>>,
    in_newer: impl Fn(&T) -> Option<&'a Arc<T>>,
) -> Vec<Change<'a, T>> {
    let mut found = Vec::new();
    let mut kept = 0;
    for entry in newer {
        match in_older(entry) {
            Some(old) if Arc::ptr_eq(old, entry) => kept += 1,
            Some(old) => {
                kept += 1;
                found.push((Some(old), Some(entry)));
            }
            None => found.push((None, Some(entry))),
        }
    }
    // Every older entry still present was counted: the rest were removed.
    if kept < older_len {
        found.extend(older.filter(|old| in_newer(old).is_none()).map(|old| (Some(old), None)));
    }
    found
}

/// A table's length after `changes` from a table of `older_len`.
fn len_after<T>(older_len: usize, changes: &[(Option<T>, Option<T>)]) -> usize {
    let added = changes.iter().filter(|(old, _)| old.is_none()).count();
    let removed = changes.iter().filter(|(_, new)| new.is_none()).count();
    older_len + added - removed
}

fn job_key(eval: &Evaluation) -> (String, String) {
    (eval.namespace.clone(), eval.job_id.clone())
}

fn job_of(alloc: &Allocation) -> (String, String) {
    (alloc.namespace.clone(), alloc.job_id.clone())
}

fn group_of(alloc: &Allocation) -> GroupKey {
    (alloc.namespace.clone(), alloc.job_id.clone(), alloc.task_group.clone())
}

impl StateChecker {
    /// Checks `state` (newer than the last one checked); returns the violations found.
    pub fn check(&mut self, state: &State) -> Vec<String> {
        let mut touched = Touched::default();
        let (now, before) = (state.table_indexes(), self.last.table_indexes());
        if now.allocs != before.allocs {
            self.alloc_changes(state, &mut touched);
        }
        if now.evals != before.evals {
            self.eval_changes(state, &mut touched);
        }
        let last = &self.last;
        if now.nodes != before.nodes {
            let nodes = changes(
                state.nodes(),
                last.nodes(),
                last.node_count(),
                |n| last.node(&n.id),
                |n| state.node(&n.id),
            );
            for node in nodes.into_iter().flat_map(|(old, new)| old.or(new)) {
                touched.nodes.insert(node.id.clone());
            }
        }
        if now.jobs != before.jobs {
            let jobs = changes(
                state.jobs(),
                last.jobs(),
                self.jobs_len,
                |j| last.job(&j.namespace, &j.id),
                |j| state.job(&j.namespace, &j.id),
            );
            self.jobs_len = len_after(self.jobs_len, &jobs);
            for job in jobs.into_iter().flat_map(|(old, new)| old.or(new)) {
                touched.jobs.insert((job.namespace.clone(), job.id.clone()));
            }
        }
        if now.job_summary != before.job_summary {
            // A summary without its job is not checked: only jobs' summaries are looked at.
            for job in state.jobs() {
                let summary = state.job_summary(&job.namespace, &job.id);
                let was = last.job_summary(&job.namespace, &job.id);
                if !matches!((summary, was), (Some(a), Some(b)) if Arc::ptr_eq(a, b)) {
                    touched.jobs.insert((job.namespace.clone(), job.id.clone()));
                }
            }
        }
        if now.job_versions != before.job_versions {
            // What a live allocation was placed for is read from the job's versions.
            touched.groups.extend(self.in_group.keys().cloned());
        }
        let mut found = self.check_touched(state, &touched);
        found.append(&mut touched.reused);
        self.last = state.clone();
        found
    }

    fn alloc_changes(&mut self, state: &State, touched: &mut Touched) {
        let last = &self.last;
        let allocs = changes(
            state.allocs(),
            last.allocs(),
            last.alloc_count(),
            |a| last.alloc(&a.id),
            |a| state.alloc(&a.id),
        );
        for (old, new) in allocs {
            if let (Some(old), Some(new)) = (old, new)
                && (job_of(old) != job_of(new)
                    || old.name != new.name
                    || old.node_id != new.node_id)
            {
                touched.reused.push(format!(
                    "allocation {} written again for another: {} on {} became {} on {}",
                    short(&new.id),
                    old.name,
                    short(&old.node_id),
                    new.name,
                    short(&new.node_id)
                ));
            }
            for alloc in old.iter().chain(new.iter()) {
                touched.nodes.insert(alloc.node_id.clone());
                touched.groups.insert(group_of(alloc));
                touched.jobs.insert(job_of(alloc));
            }
            if let Some(old) = old {
                forget(&mut self.on_node, &old.node_id, &old.id);
                forget(&mut self.in_group, &group_of(old), &old.id);
            }
            if let Some(new) = new {
                touched.allocs.insert(new.id.clone());
                if !new.is_terminal() {
                    let on_node = self.on_node.entry(new.node_id.clone()).or_default();
                    on_node.insert(new.id.clone(), new.clone());
                }
                if live(new) {
                    let in_group = self.in_group.entry(group_of(new)).or_default();
                    in_group.insert(new.id.clone(), new.clone());
                }
            }
        }
    }

    fn eval_changes(&mut self, state: &State, touched: &mut Touched) {
        let last = &self.last;
        let evals = changes(
            state.evals(),
            last.evals(),
            self.evals_len,
            |e| last.eval(&e.id),
            |e| state.eval(&e.id),
        );
        self.evals_len = len_after(self.evals_len, &evals);
        for (old, new) in evals {
            if let (Some(old), Some(new)) = (old, new)
                && job_key(old) != job_key(new)
            {
                touched.reused.push(format!(
                    "evaluation {} written again for job {} (it was job {}'s)",
                    short(&new.id),
                    new.job_id,
                    old.job_id
                ));
            }
            if let Some(old) = old {
                let job = (old.namespace.clone(), old.job_id.clone());
                forget(&mut self.blocked, &job, &old.id);
                touched.blocked.insert(job);
            }
            if let Some(new) = new {
                let written = self.eval_written.entry(job_key(new)).or_insert(new.modify_time);
                *written = (*written).max(new.modify_time);
            }
            if let Some(new) = new.filter(|e| e.status == EvalStatus::Blocked) {
                let job = (new.namespace.clone(), new.job_id.clone());
                self.blocked.entry(job.clone()).or_default().insert(new.id.clone(), new.clone());
                touched.blocked.insert(job);
            }
        }
    }

    fn check_touched(&self, state: &State, touched: &Touched) -> Vec<String> {
        let mut found = Vec::new();
        for node_id in &touched.nodes {
            if let Some(allocs) = self.on_node.get(node_id) {
                check_node_usage(state, node_id, allocs, &mut found);
            }
        }
        let mut groups: BTreeSet<&GroupKey> = touched.groups.iter().collect();
        for (namespace, job_id) in &touched.jobs {
            let first = (namespace.clone(), job_id.clone(), String::new());
            groups.extend(
                self.in_group
                    .range(first..)
                    .map(|(key, _)| key)
                    .take_while(|(ns, job, _)| ns == namespace && job == job_id),
            );
        }
        for group in groups {
            if let Some(allocs) = self.in_group.get(group) {
                let allocs: Vec<&Allocation> = allocs.values().map(|a| &**a).collect();
                check_group(state, group, &allocs, &mut found);
            }
        }
        for (namespace, job_id) in &touched.blocked {
            let Some(blocked) = self.blocked.get(&(namespace.clone(), job_id.clone())) else {
                continue;
            };
            if blocked.len() > 1 {
                let ids: Vec<String> = blocked
                    .values()
                    .map(|e| format!("{} (created at {})", short(&e.id), e.create_index))
                    .collect();
                let count = blocked.len();
                found.push(format!(
                    "job {job_id} has {count} blocked evaluations: {}",
                    ids.join(", ")
                ));
            }
        }
        for (namespace, job_id) in &touched.jobs {
            if let Some(job) = state.job(namespace, job_id) {
                check_summary(state, job, &mut found);
            }
        }
        for id in &touched.allocs {
            let Some(alloc) = state.alloc(id) else { continue };
            check_reschedule_tracker(state, alloc, &mut found);
            // A predecessor that changed is judged with the replacement it names.
            if let Some(next) = state.alloc(&alloc.next_allocation) {
                check_reschedule_tracker(state, next, &mut found);
            }
        }
        found
    }
}

/// Removes `id` from the set under `key`, and the set once empty.
fn forget<K: Ord, V>(sets: &mut BTreeMap<K, BTreeMap<String, V>>, key: &K, id: &str) {
    if let Some(set) = sets.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            sets.remove(key);
        }
    }
}

/// Checks a whole state at once (the first check of a [`StateChecker`]).
pub fn check_state(state: &State) -> Vec<String> {
    StateChecker::default().check(state)
}

fn live(alloc: &drover_core::model::Allocation) -> bool {
    alloc.desired_status == AllocDesiredStatus::Run && !alloc.client_status.is_terminal()
}

/// reliability.md §3, Nomad #25413, #18509, #9506: no node is over-committed (cpu,
/// memory, disk) and no host port is held twice on one node; `allocs` are the node's
/// non-terminal allocations.
fn check_node_usage(
    state: &State,
    node_id: &str,
    allocs: &BTreeMap<String, Arc<Allocation>>,
    found: &mut Vec<String>,
) {
    let (mut cpu, mut memory, mut disk) = (0, 0, 0);
    let mut ports: BTreeMap<i32, &str> = BTreeMap::new();
    for alloc in allocs.values() {
        let comparable = alloc.allocated_resources.comparable();
        cpu += comparable.cpu_shares;
        memory += comparable.memory_mb;
        disk += comparable.disk_mb;
        for port in drover_core::state::alloc_ports(alloc) {
            if let Some(other) = ports.insert(port, alloc.name.as_str()) {
                found.push(format!(
                    "port {port} on node {} held by {other} and {}",
                    alloc.node_id, alloc.name
                ));
            }
        }
    }
    let Some(node) = state.node(node_id) else { return };
    let capacity = node.schedulable_capacity();
    if cpu > capacity.cpu_shares || memory > capacity.memory_mb || disk > capacity.disk_mb {
        found.push(format!(
            "node {} over-committed: cpu {cpu}/{} memory {memory}/{} disk {disk}/{}",
            node.name, capacity.cpu_shares, capacity.memory_mb, capacity.disk_mb
        ));
    }
}

/// reliability.md §3, Nomad #1269, #3593: live allocations of a group never exceed its
/// count (the larger of the current count and the count of the version each live
/// allocation was placed for, while a plan stopping the surplus is on its way), names are
/// unique among them, and a system group has at most one per node. `allocs` are the
/// group's live allocations.
fn check_group(
    state: &State,
    (namespace, job_id, group): &GroupKey,
    allocs: &[&Allocation],
    found: &mut Vec<String>,
) {
    // A purged job's allocations live on until the plan that stops them commits, and
    // nothing is left to say what they were: they are not checked then.
    let Some(job) = state.job(namespace, job_id) else { return };
    if matches!(job.job_type, JobType::System | JobType::Sysbatch) {
        let mut nodes = BTreeSet::new();
        for alloc in allocs {
            if !nodes.insert(alloc.node_id.as_str()) {
                found.push(format!(
                    "system group {job_id}.{group} has two live allocations on node {}",
                    alloc.node_id
                ));
            }
        }
        return;
    }
    // A canary runs beside the allocation whose name it took until that one stops
    // after promotion: the deployment's canaries are allowed on top of the count.
    let mut names = BTreeSet::new();
    for alloc in allocs.iter().filter(|a| !a.is_canary()) {
        if !names.insert(alloc.name.as_str()) {
            found.push(format!("two live allocations named {}", alloc.name));
        }
    }
    let current = job.group(group).map_or(0, |g| g.count);
    let placed_for = allocs
        .iter()
        .filter_map(|a| state.alloc_job(a).and_then(|j| j.group(group).map(|g| g.count)))
        .max()
        .unwrap_or(0);
    let canaries_allowed = allocs
        .iter()
        .filter(|a| a.is_canary())
        .filter_map(|a| state.deployment(&a.deployment_id))
        .filter_map(|d| d.task_groups.get(group).map(|g| g.desired_canaries.max(0) as usize))
        .max()
        .unwrap_or(0);
    let canaries = allocs.iter().filter(|a| a.is_canary()).count().min(canaries_allowed);
    let allowed = current.max(placed_for).max(0) as usize + canaries;
    if allocs.len() > allowed {
        let held: Vec<String> = allocs
            .iter()
            .map(|a| {
                let canary = if a.is_canary() { ":canary" } else { "" };
                let deployment = short(&a.deployment_id);
                format!("{}:v{}{canary}@{}:{deployment}", a.name, a.job_version, a.create_index)
            })
            .collect();
        found.push(format!(
            "group {job_id}.{group} has {} live allocations, count allows {allowed}: {}",
            allocs.len(),
            held.join(" ")
        ));
    }
}

/// reliability.md §3, Nomad #17722, #4731: summary counters equal the totals recomputed
/// from the allocations (they are unsigned, so "never negative" is this equality).
fn check_summary(state: &State, job: &Job, found: &mut Vec<String>) {
    {
        let Some(summary) = state.job_summary(&job.namespace, &job.id) else { return };
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
fn check_reschedule_tracker(state: &State, alloc: &Allocation, found: &mut Vec<String>) {
    {
        let Some(previous) = state.alloc(&alloc.previous_allocation) else { return };
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
        Command::NodeDeregister { node_id, evals } => {
            format!("node {} purge evals={}", short(node_id), evals.len())
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
                .map(|a| format!("{}@{}:{}", a.name, a.node_name, short(&a.id)))
                .collect();
            let stopped: Vec<&str> =
                result.node_update.values().flatten().map(|s| short(&s.id)).collect();
            format!(
                "plan place=[{}] stop=[{}] evals={}",
                placed.join(" "),
                stopped.join(" "),
                evals.len()
            )
        }
        Command::AllocClientUpdate { updates, .. } => {
            let each: Vec<String> = updates
                .iter()
                .map(|u| format!("{}:{}", short(&u.alloc_id), u.client_status.as_str()))
                .collect();
            format!("alloc client updates [{}]", each.join(" "))
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
        Command::AllocDesiredTransition { transitions, evals } => {
            format!("alloc desired transitions {} evals={}", transitions.len(), evals.len())
        }
        Command::DeploymentPromote { deployment_id, all, groups, .. } => {
            let what = if *all { "all".to_owned() } else { groups.join(",") };
            format!("deployment {} promote {what}", short(deployment_id))
        }
        Command::DeploymentStatusChange { update, .. } => format!(
            "deployment {} {:?} by the operator",
            short(&update.deployment_id),
            update.status
        ),
        Command::DeploymentWatcherUpdate { update, revert, .. } => format!(
            "deployment {} {:?} ({}){}",
            short(&update.deployment_id),
            update.status,
            update.status_description,
            revert.as_ref().map_or(String::new(), |job| format!(" revert to v{}", job.version))
        ),
        Command::AutopilotSetConfig { cas_index, .. } => match cas_index {
            Some(index) => format!("autopilot configuration (cas {index})"),
            None => "autopilot configuration".to_owned(),
        },
        Command::DeploymentAllocHealth { deployment_id, healthy, unhealthy, .. } => format!(
            "deployment {} health healthy={} unhealthy={}",
            short(deployment_id),
            healthy.len(),
            unhealthy.len()
        ),
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

/// The job's latest deployment as a liveness failure shows it: its status and, for
/// `group`, placed/healthy/unhealthy of the desired total.
fn describe_deployment(state: &State, job: &drover_core::model::Job, group: &str) -> String {
    let Some(d) = state.latest_deployment(&job.namespace, &job.id) else { return String::new() };
    let counts = d.task_groups.get(group).map_or(String::new(), |g| {
        format!(
            " placed={} healthy={} unhealthy={} of {}",
            g.placed_allocs, g.healthy_allocs, g.unhealthy_allocs, g.desired_total
        )
    });
    format!(
        "; deployment {} for v{} {:?} ({}){counts}",
        short(&d.id),
        d.job_version,
        d.status,
        d.status_description
    )
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
                // A failed deployment stops the rolling update where it was, as for a
                // service: older versions may still run on some nodes.
                (false, JobType::System) => {
                    let running_on: BTreeSet<&str> =
                        live.iter().map(|a| a.node_id.as_str()).collect();
                    let rolled = live.len() == running_current
                        || (deployment_failed(state, job)
                            && live.iter().all(|a| a.client_status == AllocClientStatus::Running));
                    rolled
                        && (schedulable.iter().all(|node| running_on.contains(node))
                            || latest_eval_failed(state, job, &group.name))
                }
                // A child of a periodic job that still launches may be mid-run when
                // the check looks: it is settled while its allocations run the current
                // version (its batch tasks then complete on their own).
                (false, JobType::Batch) if launched_by_active_parent(state, job) => {
                    live.len() == running_current
                }
                // A batch group is settled once nothing of it runs, no evaluation of the
                // job is pending (checked above) and it holds `count` allocations of the
                // job as it stands (its version, this registration), completed or failed
                // for good, none replaced or stopped: what the scheduler counts. An
                // updated or re-registered job runs again (seed 975), and garbage
                // collection keeps a live batch job's allocations (seed 19173). Names are
                // not judged: a scale-down among finished allocations keeps whichever
                // still count, as Nomad's reconciler does (seed 139). A periodic or
                // parameterized job has none of its own.
                (false, JobType::Batch) if !job.is_template() => {
                    let holds = mine
                        .iter()
                        .filter(|a| {
                            !a.server_terminal()
                                && a.next_allocation.is_empty()
                                && a.job_version == job.version
                                && a.create_index >= job.create_index
                        })
                        .count();
                    live.is_empty() && holds == group.count.max(0) as usize
                }
                // One per node: which nodes it ran on is not tracked past their reaping.
                (false, JobType::Batch | JobType::Sysbatch) => live.is_empty(),
            };
            if !settled {
                // A batch group is judged by all it holds, finished allocations too.
                let shown: Vec<_> = if job.job_type == JobType::Batch {
                    mine.iter().collect()
                } else {
                    live.clone()
                };
                let live_on: Vec<String> = shown
                    .iter()
                    .map(|a| {
                        let node = state.node(&a.node_id).map_or("?", |n| n.name.as_str());
                        let health = match a.deployment_status.as_ref().and_then(|d| d.healthy) {
                            Some(true) => ":healthy",
                            Some(false) => ":unhealthy",
                            None => "",
                        };
                        let status = match a.desired_status {
                            AllocDesiredStatus::Run => a.client_status.as_str().to_owned(),
                            _ => format!(
                                "{}/{}",
                                a.desired_status.as_str(),
                                a.client_status.as_str()
                            ),
                        };
                        format!(
                            "{}@{node}:{status}:v{}{health}@{}",
                            a.name, a.job_version, a.create_index
                        )
                    })
                    .collect();
                return Err(format!(
                    "{} {:?}{} group {}: {} live ({} running at v{}), count {}, {} schedulable nodes{}; {}: {}",
                    job.id,
                    job.job_type,
                    if job.stop { " (stopped)" } else { "" },
                    group.name,
                    live.len(),
                    running_current,
                    job.version,
                    group.count,
                    schedulable.len(),
                    describe_deployment(state, job, &group.name),
                    if job.job_type == JobType::Batch { "allocations" } else { "live" },
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

/// How long a garbage collection pass may take to commit its reap in the liveness phase
/// (no faults, a settled leader), and how long before the cutoff a record's last write
/// must be for the pass to have seen it.
pub const GC_COMMIT_SLACK_MS: u64 = 10_000;

/// reliability.md §3, Nomad #18113, #12445, #27442: under churn the state stays bounded,
/// because garbage collection runs with Nomad's thresholds (scaled down in the
/// simulation, `SIM_GC`). Checked on a region's leader at the end of a seed, judged only
/// once its leader loop has run for `interval_ms + GC_COMMIT_SLACK_MS`, so that a GC pass
/// of that loop ran after `cutoff = now - interval_ms - GC_COMMIT_SLACK_MS` and its reap
/// committed by `now` (`now` is the leader's clock, the one its GC reads; a record
/// *settled* before the cutoff was last written before `cutoff - GC_COMMIT_SLACK_MS`, so
/// that pass saw it as it is). The leader's state then holds none of:
/// - a terminal evaluation last written before `cutoff - eval_gc_threshold_ms` (the
///   batch threshold for batch and sysbatch evaluations) whose allocations are all
///   settled and reapable, nor any of those allocations (a batch or sysbatch
///   evaluation only once its job is stopped and dead or gone: a live batch job keeps
///   what it completed, `batch_eval_kept`);
/// - a dead job that GC reaps whole (`Job::is_reapable_dead`: stopped, launched by a
///   periodic or parameterized job, or a finished batch or sysbatch job) submitted and last evaluated
///   before `cutoff - job_gc_threshold_ms`, whose evaluations are all terminal and whose
///   allocations are all settled and reapable ("last evaluated" counts evaluations GC
///   already reaped: the pass may have seen one the state no longer holds);
/// - a down node marked down before `cutoff - node_gc_threshold_ms` whose allocations
///   are all settled and terminal;
///
/// unless more than `reap_batch_max` of one kind qualify (a pass reaps at most that
/// many). An allocation is reapable when it is terminal and its client is done with it
/// (its client status is terminal, or its node is down since before the cutoff or gone).
/// So the terminal evaluations, terminal allocations, dead jobs and down nodes held are
/// at most those written within `threshold + interval_ms + 2 × GC_COMMIT_SLACK_MS` of
/// the end, plus those tied to an allocation that still runs: a number set by the
/// workload's rate, not by the length of the run. `Err` says the loop is too young to
/// judge; `Ok` holds the violations.
/// What the checker remembers that a state no longer shows, for [`check_gc_bound`].
pub struct GcHistory<'a> {
    /// The newest write of any evaluation of the job, reaped ones included (unix ns).
    pub eval_written: &'a dyn Fn(&Job) -> Option<i64>,
    /// When the job was last purged (leader's clock), if ever.
    pub purged_at: &'a dyn Fn(&str, &str) -> Option<Millis>,
}

pub fn check_gc_bound(
    state: &State,
    now: Millis,
    loop_started: Millis,
    gc: &GcConfig,
    history: &GcHistory<'_>,
) -> Result<Vec<String>, String> {
    let age_ms = now.as_u64().saturating_sub(loop_started.as_u64());
    if age_ms < gc.interval_ms + GC_COMMIT_SLACK_MS {
        return Err(format!("leader loop {age_ms}ms old, too young to judge"));
    }
    let ns = |ms: u64| (ms as i64).saturating_mul(1_000_000);
    let cutoff_ms = now.as_u64() - gc.interval_ms - GC_COMMIT_SLACK_MS;
    let cutoff = ns(cutoff_ms);
    let settled = cutoff - ns(GC_COMMIT_SLACK_MS);
    let node_down_settled = |node_id: &str| {
        state.node(node_id).is_none_or(|n| {
            n.status == NodeStatus::Down
                && n.status_updated_at.saturating_mul(1_000_000_000) <= settled
        })
    };
    let reapable = |a: &Allocation| {
        a.modify_time <= settled
            && a.is_terminal()
            && (a.client_status.is_terminal() || node_down_settled(&a.node_id))
    };
    let mut evals = Vec::new();
    let mut allocs = Vec::new();
    for eval in state.evals().filter(|e| e.is_terminal()) {
        let threshold = match eval.scheduler {
            SchedulerType::Batch | SchedulerType::Sysbatch => gc.batch_eval_gc_threshold_ms,
            _ => gc.eval_gc_threshold_ms,
        };
        if eval.modify_time > cutoff - ns(threshold) {
            continue;
        }
        // A batch evaluation is left to GC by its job's stop (a submission) or purge, and
        // its allocations by a registration of a newer version: one after the last pass
        // surely ran did not count for it (seed 421).
        let finishes = matches!(eval.scheduler, SchedulerType::Batch | SchedulerType::Sysbatch);
        let released = match state.job(&eval.namespace, &eval.job_id) {
            Some(job) => Some(job.submit_time),
            None => (history.purged_at)(&eval.namespace, &eval.job_id).map(|at| ns(at.as_u64())),
        };
        if finishes && released.is_none_or(|at| at > settled) {
            continue;
        }
        let placed = state.job_allocs(&eval.namespace, &eval.job_id);
        // An allocation of the job that changed since the last pass the leader surely ran
        // may have left this evaluation (a later evaluation updated it in place): the
        // evaluation may have become reapable only then (seed 707).
        if placed.iter().any(|a| a.modify_time > settled) {
            continue;
        }
        let mine: Vec<_> = placed.iter().filter(|a| a.eval_id == eval.id).collect();
        // A live batch job keeps what it completed, but not what an older version of it
        // did (`batch_eval_superseded`).
        let (whole, reaped) = if batch_eval_kept(state, eval) {
            batch_eval_superseded(state, eval, &mine, |_, a| reapable(a))
        } else if mine.iter().all(|a| reapable(a)) {
            (true, mine)
        } else {
            (false, Vec::new())
        };
        if whole {
            evals.push(short(&eval.id).to_owned());
        }
        allocs.extend(reaped.iter().map(|a| a.name.clone()));
    }
    let mut jobs = Vec::new();
    for job in state.jobs().filter(|j| j.is_reapable_dead()) {
        let mut job_evals =
            state.evals().filter(|e| e.job_id == job.id && e.namespace == job.namespace);
        let old = |t: i64| t <= cutoff - ns(gc.job_gc_threshold_ms);
        let evals_old = job_evals.all(|e| e.is_terminal() && old(e.modify_time))
            && (history.eval_written)(job).is_none_or(old);
        let placed = state.job_allocs(&job.namespace, &job.id);
        if old(job.submit_time) && evals_old && placed.iter().all(|a| reapable(a)) {
            jobs.push(job.id.clone());
        }
    }
    let nodes: Vec<String> = state
        .nodes()
        .filter(|n| {
            n.status == NodeStatus::Down
                && n.status_updated_at.saturating_mul(1_000_000_000)
                    <= cutoff - ns(gc.node_gc_threshold_ms)
        })
        .filter(|n| {
            state.node_allocs(&n.id).is_none_or(|held| {
                held.allocs.values().all(|a| a.is_terminal() && a.modify_time <= settled)
            })
        })
        .map(|n| n.name.clone())
        .collect();
    let mut found = Vec::new();
    for (kind, held) in
        [("evaluations", evals), ("allocations", allocs), ("jobs", jobs), ("nodes", nodes)]
    {
        if !held.is_empty() && held.len() <= gc.reap_batch_max {
            found.push(format!(
                "state not bounded by GC: {} {kind} past their threshold at t={cutoff_ms}ms still held: {}",
                held.len(),
                held.join(" ")
            ));
        }
    }
    Ok(found)
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

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::model::{
        AllocatedTaskResources, Evaluation, Job, Node, PlanResult, RescheduleEvent,
        RescheduleTracker, TaskGroup,
    };

    const NO_HISTORY: GcHistory<'static> =
        GcHistory { eval_written: &|_| None, purged_at: &|_, _| None };

    const NOW_NS: i64 = 1_700_000_000_000_000_000;

    /// A state built entry by entry, checked incrementally after each entry.
    struct Run {
        state: State,
        checker: StateChecker,
        index: u64,
    }

    impl Run {
        fn new() -> Run {
            let mut run = Run { state: State::new(), checker: StateChecker::default(), index: 0 };
            let job = Job {
                id: "web".into(),
                name: "web".into(),
                task_groups: vec![TaskGroup { name: "g".into(), count: 3, ..TaskGroup::default() }],
                ..Job::default()
            };
            assert_eq!(
                run.apply(Command::JobRegister { job, enforce_index: None, eval: None }),
                ""
            );
            let mut node = Node { id: "n1".into(), name: "n1".into(), ..Node::default() };
            node.status = NodeStatus::Ready;
            node.node_resources.cpu.cpu_shares = 4000;
            node.node_resources.memory.memory_mb = 8192;
            assert_eq!(run.apply(Command::NodeRegister { node }), "");
            run
        }

        /// Applies one entry and returns what the incremental check found.
        fn apply(&mut self, command: Command) -> String {
            self.index += 1;
            self.state.apply(self.index, NOW_NS, command).expect("the entry applies");
            let incremental = self.checker.check(&self.state).join("; ");
            // The whole state, checked at once, finds the same.
            let whole = check_state(&self.state).join("; ");
            assert!(whole.contains(&incremental), "whole: {whole}\nincremental: {incremental}");
            incremental
        }

        fn place(&mut self, allocs: Vec<Allocation>) -> String {
            let mut result = PlanResult::default();
            for alloc in allocs {
                result.node_allocation.entry(alloc.node_id.clone()).or_default().push(alloc);
            }
            let job = self.state.job("default", "web").map(|j| (**j).clone());
            self.apply(Command::PlanApply { result, job, evals: vec![] })
        }
    }

    fn alloc(id: &str, index: u32, cpu: i64) -> Allocation {
        let mut alloc = Allocation {
            id: id.into(),
            namespace: "default".into(),
            name: format!("web.g[{index}]"),
            node_id: "n1".into(),
            job_id: "web".into(),
            task_group: "g".into(),
            client_status: AllocClientStatus::Running,
            ..Allocation::default()
        };
        let mut task = AllocatedTaskResources::default();
        task.cpu.cpu_shares = cpu;
        alloc.allocated_resources.tasks.insert("t".into(), task);
        alloc
    }

    /// Places `first` (a state without violations), then `then`, whose check must find
    /// `want`.
    fn check(first: Vec<Allocation>, then: Vec<Allocation>, want: &str) {
        let mut run = Run::new();
        assert_eq!(run.place(first), "");
        let found = run.place(then);
        assert!(found.contains(want), "{found}");
    }

    #[test]
    fn a_node_over_committed_by_a_later_plan_is_caught() {
        let (first, then) = (alloc("a1", 0, 3000), alloc("a2", 1, 3000));
        check(vec![first], vec![then], "node n1 over-committed: cpu 6000/4000");
    }

    #[test]
    fn a_double_allocation_of_one_name_is_caught() {
        let (first, then) = (alloc("a1", 0, 100), alloc("a2", 0, 100));
        check(vec![first], vec![then], "two live allocations named web.g[0]");
    }

    #[test]
    fn more_live_allocations_than_the_count_are_caught() {
        let first = (0..3).map(|i| alloc(&format!("a{i}"), i, 100)).collect();
        let want = "group web.g has 4 live allocations, count allows 3";
        check(first, vec![alloc("a3", 3, 100)], want);
    }

    /// The state keeps one blocked evaluation per job (a newer one cancels the older in
    /// the same entry), so the checker never sees two; it stays as the guard of that rule.
    #[test]
    fn a_second_blocked_evaluation_of_a_job_cancels_the_first() {
        let mut run = Run::new();
        let blocked = |id: &str| Evaluation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "web".into(),
            status: EvalStatus::Blocked,
            ..Evaluation::default()
        };
        assert_eq!(run.apply(Command::EvalUpsert { evals: vec![blocked("e1")] }), "");
        assert_eq!(run.apply(Command::EvalUpsert { evals: vec![blocked("e2")] }), "");
        assert_eq!(run.state.eval("e1").map(|e| e.status), Some(EvalStatus::Canceled));
        assert_eq!(run.state.eval("e2").map(|e| e.status), Some(EvalStatus::Blocked));
    }

    /// Seed 7781: a restarted server drew its last life's seed again and handed out the
    /// same evaluation IDs, so a new job's evaluation overwrote another job's.
    #[test]
    fn an_evaluation_id_written_again_for_another_job_is_caught() {
        let mut run = Run::new();
        let eval = |job: &str| Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: job.into(),
            status: EvalStatus::Complete,
            ..Evaluation::default()
        };
        assert_eq!(run.apply(Command::EvalUpsert { evals: vec![eval("web")] }), "");
        // Past `apply`: a check of the whole state cannot see what an ID named before.
        run.index += 1;
        let rewrite = Command::EvalUpsert { evals: vec![eval("api")] };
        run.state.apply(run.index, NOW_NS, rewrite).expect("the entry applies");
        let found = run.checker.check(&run.state).join("; ");
        assert_eq!(found, "evaluation e1 written again for job api (it was job web's)");
    }

    #[test]
    fn a_replacement_that_drops_reschedule_events_is_caught() {
        let mut run = Run::new();
        let mut failed = alloc("a1", 0, 100);
        failed.client_status = AllocClientStatus::Failed;
        let event = RescheduleEvent { prev_alloc_id: "a0".into(), ..RescheduleEvent::default() };
        failed.reschedule_tracker = Some(RescheduleTracker { events: vec![event] });
        assert_eq!(run.place(vec![failed]), "");
        let mut replacement = alloc("a2", 0, 100);
        replacement.previous_allocation = "a1".into();
        let found = run.place(vec![replacement]);
        assert!(
            found.contains("web.g[0] replaced a1 but kept 0 of its 1 reschedule events"),
            "{found}"
        );
    }

    #[test]
    fn a_state_of_another_lineage_is_checked_whole() {
        let mut run = Run::new();
        assert!(!run.place(vec![alloc("a1", 0, 3000), alloc("a2", 1, 3000)]).is_empty());
        // A restarted server's state shares nothing with the last one checked.
        let mut other = StateChecker::default();
        assert_eq!(other.check(&State::new()), Vec::<String>::new());
        let rebuilt = run.state.clone();
        assert!(other.check(&rebuilt).join("; ").contains("over-committed"));
    }

    #[test]
    fn a_terminal_evaluation_held_past_its_threshold_breaks_the_gc_bound() {
        let mut run = Run::new();
        let eval = Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            status: EvalStatus::Complete,
            ..Evaluation::default()
        };
        assert_eq!(run.apply(Command::EvalUpsert { evals: vec![eval] }), "");
        let gc =
            GcConfig { interval_ms: 30_000, eval_gc_threshold_ms: 60_000, ..GcConfig::default() };
        let stamped = Millis((NOW_NS / 1_000_000) as u64);
        // The pass that must have reaped it: 60 s past its write, plus one interval and
        // the commit slack.
        let late = stamped + Millis(60_000 + 30_000 + GC_COMMIT_SLACK_MS);
        let found = check_gc_bound(&run.state, late, Millis(0), &gc, &NO_HISTORY).expect("judged");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("1 evaluations past their threshold"), "{found:?}");
        let young = late.as_u64() - 1_000;
        assert!(check_gc_bound(&run.state, late, Millis(young), &gc, &NO_HISTORY).is_err());
        let early = Millis(late.as_u64() - 1);
        assert_eq!(check_gc_bound(&run.state, early, Millis(0), &gc, &NO_HISTORY), Ok(Vec::new()));
    }
}
