//! The Raft cluster simulator: a seeded discrete-event loop over N `core::raft` nodes.
//!
//! A run is a pure function of its seed. The seed draws the cluster and the fault rates
//! ([`params::Params`]), then every random choice (delays, losses, crashes, partitions,
//! pauses, membership changes, leadership transfers, the workload) comes from one
//! `ChaCha8Rng`. Events are ordered by `(time, sequence)`, so ties break the same way
//! every time. Checkers run after every step. The safety phase runs with faults; the
//! liveness phase then heals the network, restarts every crashed server and turns faults
//! off, and a leader must commit every pending command within a bounded simulated time.

pub mod node;
pub mod params;

use crate::checkers::RaftChecker;
use crate::clock::{Clock, RATE_IDEAL_PPM};
pub use crate::rng::SimRng;
use drover_core::raft::{
    Config, Envelope, Membership, NodeId, Payload, Raft, ReadOutcome, WriteId,
};
use drover_core::time::Millis;
use drover_runtime::store::mem::MemStore;
use node::{Drained, SimNode};
use params::Params;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt::Write as _;

/// An upper bound on events per run, so a livelock in the simulator itself ends.
pub const EVENTS_PER_RUN_MAX: u64 = 20_000_000;
/// How many pending commands the client re-proposes per round in the liveness phase.
pub const REPROPOSE_BATCH_MAX: usize = 256;
/// Commands a client keeps outstanding; beyond it, it waits (as a real client would).
pub const PENDING_COMMANDS_MAX: usize = 64;

enum Event {
    Deliver(Envelope),
    Timer { node: NodeId, incarnation: u64, at: Millis },
    Sync { node: NodeId, incarnation: u64, write: WriteId },
    Propose,
    Read,
    Fault,
    Heal,
    Restart(NodeId),
    ClockJump,
    Figure8End { round: u64, stage: u8 },
    Liveness,
    LivenessCheck,
    Repropose,
}

struct Scheduled {
    at: Millis,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Scheduled) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Scheduled) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so the `BinaryHeap` pops the earliest event first.
    fn cmp(&self, other: &Scheduled) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The result of one seed.
pub struct Outcome {
    pub seed: u64,
    pub params: Params,
    pub violations: Vec<String>,
    pub trace: String,
    pub end: Millis,
    pub events: u64,
    pub commits: u64,
}

/// Runs one seed; with `trace` set, records a readable line per step.
pub fn run(seed: u64, trace: bool) -> Outcome {
    Sim::new(seed, trace, false).run()
}

/// Runs one seed, printing its trace to stdout as it goes (so a panic keeps the trace).
pub fn replay(seed: u64) -> Outcome {
    Sim::new(seed, true, true).run()
}

/// Runs one seed and turns a panic (a failed assertion in `core`) into a violation.
pub fn run_guarded(seed: u64) -> Result<Outcome, String> {
    std::panic::catch_unwind(|| run(seed, false)).map_err(|payload| panic_message(&*payload))
}

pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return format!("panic: {text}");
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return format!("panic: {text}");
    }
    "panic".to_string()
}

struct Sim {
    seed: u64,
    rng: SimRng,
    params: Params,
    now: Millis,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    events: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    next_node_id: NodeId,
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// The latest delivery time per link, which keeps a healed network FIFO.
    link_clock: BTreeMap<(NodeId, NodeId), Millis>,
    checker: RaftChecker,
    trace: Option<String>,
    /// Print the trace after every event instead of keeping it.
    stream: bool,
    liveness_since: Option<Millis>,
    done: bool,
    pending: BTreeSet<u64>,
    /// Pending commands already re-proposed to a leader in its current term: a leader
    /// never drops its own entries, so proposing them again there would only add load.
    reproposed: BTreeMap<u64, (NodeId, u64)>,
    next_command: u64,
    next_read: u64,
    config_applied_index: u64,
    /// The figure-8 schedule while it runs, and how many have started.
    figure8: Option<figure8::Figure8>,
    figure8_round: u64,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if let Some(out) = $sim.trace.as_mut() {
            let _ = write!(out, "t={} ", $sim.now);
            let _ = writeln!(out, $($arg)*);
        }
    };
}

// Declared after `trace!` so the macro is in scope there.
mod faults;
mod figure8;

impl Sim {
    fn new(seed: u64, trace: bool, stream: bool) -> Sim {
        let mut rng = SimRng::new(seed);
        let params = Params::draw(&mut rng);
        Sim {
            seed,
            rng,
            params,
            now: Millis::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            events: 0,
            nodes: BTreeMap::new(),
            next_node_id: 1,
            blocked: BTreeSet::new(),
            link_clock: BTreeMap::new(),
            checker: RaftChecker::new(),
            trace: trace.then(String::new),
            stream,
            liveness_since: None,
            done: false,
            pending: BTreeSet::new(),
            reproposed: BTreeMap::new(),
            next_command: 1,
            next_read: 1,
            config_applied_index: 0,
            figure8: None,
            figure8_round: 0,
        }
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled { at: at.max(self.now), seq: self.seq, event });
    }

    fn after(&mut self, low_ms: u64, high_ms: u64, event: Event) {
        let delay = self.rng.range(low_ms, high_ms.max(low_ms + 1));
        self.schedule(self.now + Millis(delay), event);
    }

    fn run(mut self) -> Outcome {
        trace!(self, "seed={} {}", self.seed, self.params);
        let voters: Vec<NodeId> = (1..=self.params.voters_initial as u64).collect();
        let membership = Membership::with_voters(voters.iter().copied());
        for _ in &voters {
            let id = self.add_node(membership.clone(), true);
            // Bootstrapping completes before the server starts: its first write is durable.
            let node = self.nodes.get_mut(&id).expect("node");
            let write = node.disk.last_written();
            sync_disk(id, &mut node.disk, write);
        }
        self.after(1, self.params.propose_interval_ms, Event::Propose);
        self.after(1, self.params.read_interval_ms, Event::Read);
        self.after(1, self.params.fault_interval_ms, Event::Fault);
        if self.params.clock_jump_interval_ms > 0 {
            self.after(1, self.params.clock_jump_interval_ms, Event::ClockJump);
        }
        self.schedule(Millis(self.params.safety_ms), Event::Liveness);
        while let Some(scheduled) = self.queue.pop() {
            assert!(scheduled.at >= self.now, "time never runs backwards");
            self.now = scheduled.at;
            self.events += 1;
            self.handle(scheduled.event);
            self.flush_trace();
            if self.done || !self.checker.violations.is_empty() {
                break;
            }
            if self.events >= EVENTS_PER_RUN_MAX {
                self.checker.violations.push("event budget exhausted".to_string());
                break;
            }
        }
        self.finish()
    }

    fn flush_trace(&mut self) {
        if let (true, Some(out)) = (self.stream, self.trace.as_mut()) {
            print!("{out}");
            out.clear();
        }
    }

    fn finish(mut self) -> Outcome {
        if self.checker.violations.is_empty() && !self.done {
            self.checker.violations.push("simulation ended before liveness was shown".to_string());
        }
        let verdict = if self.checker.violations.is_empty() {
            "ok".to_string()
        } else {
            self.checker.violations.join("; ")
        };
        trace!(self, "verdict: {verdict}");
        self.flush_trace();
        let commits = self.checker.commit_max();
        Outcome {
            seed: self.seed,
            params: self.params,
            violations: self.checker.violations,
            trace: self.trace.unwrap_or_default(),
            end: self.now,
            events: self.events,
            commits,
        }
    }

    fn config(&self, id: NodeId, incarnation: u64) -> Config {
        let p = &self.params;
        let mut config = Config::new(id, self.seed ^ (id << 48) ^ (incarnation << 32) ^ 0x5eed);
        config.election_timeout_ms = p.election_timeout_ms;
        config.heartbeat_interval_ms = p.heartbeat_interval_ms;
        config.pre_vote = p.pre_vote;
        config.check_quorum = p.check_quorum;
        config.append_entries_max = p.append_entries_max;
        config.appends_in_flight_max = p.appends_in_flight_max;
        config.snapshot_threshold_entries = p.snapshot_threshold_entries;
        config.snapshot_trailing_entries = p.snapshot_trailing_entries;
        config.snapshot_chunk_bytes_max = p.snapshot_chunk_bytes_max;
        config
    }

    fn add_node(&mut self, membership: Membership, joined: bool) -> NodeId {
        let id = self.next_node_id;
        self.next_node_id += 1;
        let drift_ppm = self.rng.range(0, self.params.clock_drift_ppm_max + 1);
        let rate_ppm = if self.rng.chance(0.5) {
            RATE_IDEAL_PPM + drift_ppm
        } else {
            RATE_IDEAL_PPM - drift_ppm
        };
        let clock = Clock::new(self.now, rate_ppm);
        let raft = Raft::new(clock.local(self.now), self.config(id, 0), membership);
        self.nodes.insert(id, SimNode::new(raft, joined, clock));
        self.checker.on_restart(id);
        trace!(self, "n{id} start clock_rate={rate_ppm}ppm");
        self.drain(id);
        id
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver(envelope) => self.deliver(envelope),
            Event::Timer { node, incarnation, at } => self.timer(node, incarnation, at),
            Event::Sync { node, incarnation, write } => self.sync(node, incarnation, write),
            Event::Propose => self.propose(),
            Event::Read => self.read(),
            Event::Fault => self.fault(),
            Event::Heal => {
                if !self.blocked.is_empty() {
                    trace!(self, "heal network");
                }
                self.blocked.clear();
            }
            Event::Restart(id) => self.restart(id),
            Event::ClockJump => self.clock_jump(),
            Event::Figure8End { round, stage } => self.figure8_end(round, stage),
            Event::Liveness => self.start_liveness(),
            Event::LivenessCheck => self.check_liveness(),
            Event::Repropose => self.repropose(),
        }
    }

    /// Postpones an event for a paused node; hands the event back when not paused.
    fn postpone_if_paused(&mut self, id: NodeId, event: Event) -> Option<Event> {
        let paused_until = self.nodes.get(&id).map_or(Millis::ZERO, |n| n.paused_until);
        if paused_until > self.now {
            self.schedule(paused_until, event);
            return None;
        }
        Some(event)
    }

    fn deliver(&mut self, envelope: Envelope) {
        let to = envelope.to;
        if !self.nodes.get(&to).is_some_and(|n| n.is_up()) {
            return;
        }
        let Some(Event::Deliver(envelope)) = self.postpone_if_paused(to, Event::Deliver(envelope))
        else {
            return;
        };
        let now = self.local_now(to);
        let node = self.nodes.get_mut(&to).expect("node");
        node.raft.as_mut().expect("up").handle_message(now, envelope);
        self.drain(to);
    }

    fn timer(&mut self, id: NodeId, incarnation: u64, at: Millis) {
        let Some(node) = self.nodes.get(&id) else { return };
        if node.incarnation != incarnation || !node.is_up() || node.timer_at != Some(at) {
            return;
        }
        if self.postpone_if_paused(id, Event::Timer { node: id, incarnation, at }).is_none() {
            return;
        }
        let now = self.local_now(id);
        let node = self.nodes.get_mut(&id).expect("node");
        node.timer_at = None;
        node.raft.as_mut().expect("up").handle_timeout(now);
        self.drain(id);
    }

    fn sync(&mut self, id: NodeId, incarnation: u64, write: WriteId) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        if node.incarnation != incarnation || !node.is_up() {
            return;
        }
        // The disk itself syncs on time; a paused process only hears of it later.
        sync_disk(id, &mut node.disk, write);
        if self.postpone_if_paused(id, Event::Sync { node: id, incarnation, write }).is_none() {
            return;
        }
        let now = self.local_now(id);
        let node = self.nodes.get_mut(&id).expect("node");
        node.raft.as_mut().expect("up").handle_durable(now, write);
        self.drain(id);
    }

    /// Carries out everything node `id` has to say, in the documented order, checking
    /// each output, until it has nothing left.
    fn drain(&mut self, id: NodeId) {
        let now = self.local_now(id);
        let tracing = self.trace.is_some();
        let padding = self.params.snapshot_padding_bytes;
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(drained) = node.drain(id, now, padding, tracing, &mut self.checker) else {
            return;
        };
        let raft = node.raft.as_ref().expect("up");
        if let Some(deadline) = raft.poll_timeout()
            && node.timer_at != Some(deadline)
        {
            node.timer_at = Some(deadline);
            self.schedule_timer(id);
        }
        for line in &drained.lines {
            trace!(self, "{line}");
        }
        self.after_drain(id, drained);
    }

    fn after_drain(&mut self, id: NodeId, drained: Drained) {
        for write in drained.writes {
            let latency = self.rng.range(0, self.params.disk_latency_max_ms + 1);
            let node = self.nodes.get_mut(&id).expect("node");
            node.sync_at = node.sync_at.max(self.now + Millis(latency));
            let (at, incarnation) = (node.sync_at, node.incarnation);
            self.schedule(at, Event::Sync { node: id, incarnation, write });
        }
        for envelope in drained.messages {
            self.transmit(envelope);
        }
        if let (Some(first), Some(last)) = (drained.applied.first(), drained.applied.last()) {
            trace!(self, "n{id} apply {}..{}", first.index, last.index);
        }
        for entry in &drained.applied {
            self.on_applied(entry);
        }
        for result in drained.reads {
            match result.outcome {
                ReadOutcome::Ready(index) => {
                    trace!(self, "n{id} read r{} ready index={index}", result.id);
                    self.checker.on_read_ready(id, result.id, index);
                }
                ReadOutcome::Failed => {
                    trace!(self, "n{id} read r{} failed", result.id);
                    self.checker.on_read_failed(result.id);
                }
            }
        }
    }

    fn on_applied(&mut self, entry: &drover_core::raft::Entry) {
        match &entry.payload {
            Payload::Command(data) => {
                let command = u64::from_le_bytes(data[..8].try_into().expect("command id"));
                self.pending.remove(&command);
            }
            Payload::Membership(membership) if entry.index > self.config_applied_index => {
                self.config_applied_index = entry.index;
                self.on_membership_committed(membership.clone());
            }
            _ => {}
        }
    }

    /// Servers enter the group when a membership naming them commits, and are shut down
    /// for good once a committed membership no longer does.
    fn on_membership_committed(&mut self, membership: Membership) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.nodes.get_mut(&id).expect("node");
            if membership.contains(id) {
                node.joined = true;
            } else if node.joined && !node.retired {
                node.retired = true;
                node.raft = None;
                trace!(self, "n{id} retired (removed from the group)");
            }
        }
    }

    fn transmit(&mut self, envelope: Envelope) {
        let (from, to) = (envelope.from, envelope.to);
        let faulty = self.liveness_since.is_none();
        if self.blocked.contains(&(from, to)) {
            trace!(self, "n{from}->n{to} {} [cut]", envelope.message);
            return;
        }
        if self.figure8_drops(&envelope) {
            trace!(self, "n{from}->n{to} {} [figure-8 cut]", envelope.message);
            return;
        }
        if faulty && self.rng.chance(self.params.loss) {
            trace!(self, "n{from}->n{to} {} [lost]", envelope.message);
            return;
        }
        let copies = if faulty && self.rng.chance(self.params.duplicate) { 2 } else { 1 };
        trace!(
            self,
            "n{from}->n{to} {}{}",
            envelope.message,
            if copies == 2 { " [dup]" } else { "" }
        );
        for _ in 0..copies {
            let mut delay = self.rng.range(self.params.delay_min_ms, self.params.delay_max_ms + 1);
            if faulty && self.rng.chance(self.params.spike) {
                delay += self.rng.range(50, 1000);
            }
            let mut at = self.now + Millis(delay);
            if !faulty {
                let clock = self.link_clock.entry((from, to)).or_insert(Millis::ZERO);
                at = at.max(*clock);
                *clock = at;
            }
            self.schedule(at, Event::Deliver(envelope.clone()));
        }
    }

    /// Live, unpaused servers.
    fn reachable(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_up() && n.paused_until <= self.now)
            .map(|(&id, _)| id)
            .collect()
    }

    /// The live leader with the highest term, as an omniscient client would find it.
    fn leader(&self) -> Option<NodeId> {
        self.reachable()
            .into_iter()
            .filter_map(|id| {
                let raft = self.nodes[&id].raft.as_ref()?;
                raft.is_leader().then_some((raft.term(), id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn raft_mut(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()).expect("node is up")
    }

    /// What node `id`'s own clock reads now: the only time its Raft node is given.
    fn local_now(&self, id: NodeId) -> Millis {
        self.nodes[&id].clock.local(self.now)
    }

    /// Schedules node `id`'s timer for the simulated instant its clock reaches it.
    fn schedule_timer(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let Some(deadline) = node.timer_at else { return };
        let at = node.clock.global_at(self.now, deadline);
        let incarnation = node.incarnation;
        self.schedule(at, Event::Timer { node: id, incarnation, at: deadline });
    }

    fn propose(&mut self) {
        if self.liveness_since.is_some() {
            return;
        }
        let interval = self.params.propose_interval_ms;
        self.after(1, 2 * interval, Event::Propose);
        if self.pending.len() >= PENDING_COMMANDS_MAX {
            return;
        }
        let target = match self.leader() {
            Some(leader) if self.rng.chance(0.8) => Some(leader),
            _ => {
                let reachable = self.reachable();
                self.rng.pick(&reachable)
            }
        };
        let Some(target) = target else { return };
        let command = self.next_command;
        self.next_command += 1;
        self.propose_command(target, command);
    }

    fn propose_command(&mut self, target: NodeId, command: u64) -> bool {
        let now = self.local_now(target);
        let result = self.raft_mut(target).propose(now, command_bytes(command));
        match result {
            Ok(index) => {
                trace!(self, "client c{command} -> n{target} index={index}");
                self.pending.insert(command);
            }
            Err(error) => trace!(self, "client c{command} -> n{target} refused: {error}"),
        }
        self.drain(target);
        result.is_ok()
    }

    fn read(&mut self) {
        self.after(1, 2 * self.params.read_interval_ms, Event::Read);
        let reachable = self.reachable();
        let Some(target) = self.rng.pick(&reachable) else { return };
        let read = self.next_read;
        self.next_read += 1;
        self.checker.on_read_issued(read);
        trace!(
            self,
            "client r{read} -> n{target} read (commit floor {})",
            self.checker.commit_max()
        );
        let now = self.local_now(target);
        self.raft_mut(target).read(now, read);
        self.drain(target);
    }

    fn start_liveness(&mut self) {
        self.liveness_since = Some(self.now);
        self.blocked.clear();
        self.figure8 = None;
        trace!(self, "liveness phase: network healed, faults off, crashed servers restart");
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.retired && n.raft.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in down {
            self.restart(id);
        }
        self.schedule(self.now + Millis(100), Event::LivenessCheck);
        self.schedule(self.now + Millis(200), Event::Repropose);
    }

    fn repropose(&mut self) {
        self.schedule(self.now + Millis(300), Event::Repropose);
        let Some(leader) = self.leader() else { return };
        let term = self.nodes[&leader].raft.as_ref().expect("up").term();
        let commands: Vec<u64> = self
            .pending
            .iter()
            .copied()
            .filter(|c| self.reproposed.get(c) != Some(&(leader, term)))
            .take(REPROPOSE_BATCH_MAX)
            .collect();
        for command in commands {
            if self.propose_command(leader, command) {
                self.reproposed.insert(command, (leader, term));
            }
        }
    }

    fn check_liveness(&mut self) {
        let since = self.liveness_since.expect("liveness phase");
        if self.now > since + Millis(self.params.liveness_bound_ms) {
            let violation = format!(
                "liveness: no convergence within {}ms (leader {:?}, {} commands pending, {})",
                self.params.liveness_bound_ms,
                self.leader(),
                self.pending.len(),
                self.describe_nodes()
            );
            self.checker.violations.push(violation);
            return;
        }
        self.schedule(self.now + Millis(100), Event::LivenessCheck);
        let Some(leader) = self.leader() else { return };
        let raft = self.nodes[&leader].raft.as_ref().expect("up");
        let commit = raft.commit_index();
        let own_term = raft.term_at(commit) == Some(raft.term());
        let membership = raft.membership().clone();
        let caught_up = membership
            .members()
            .all(|m| self.nodes.get(&m).is_some_and(|n| n.app.index >= commit && n.raft.is_some()));
        if own_term && caught_up && self.pending.is_empty() {
            trace!(self, "converged: n{leader} leads term {} at commit {commit}", raft.term());
            self.done = true;
        }
    }

    fn describe_nodes(&self) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let _ = match &node.raft {
                Some(r) => write!(
                    out,
                    "n{id}:{:?} t{} c{} l{} a{} ",
                    r.role(),
                    r.term(),
                    r.commit_index(),
                    r.last_index(),
                    node.app.index
                ),
                None => write!(out, "n{id}:{} ", if node.retired { "retired" } else { "down" }),
            };
        }
        out
    }
}

fn command_bytes(command: u64) -> Vec<u8> {
    command.to_le_bytes().to_vec()
}

/// Makes a node's writes up to `write` durable; a write the store refuses is a bug in the
/// machine under test, reported as the run's failure.
fn sync_disk(id: NodeId, disk: &mut MemStore, write: WriteId) {
    if let Err(error) = disk.sync_to(write) {
        panic!("n{id}: {error}");
    }
}
