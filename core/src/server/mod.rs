//! One region's server as a sans-IO machine: Raft, the replicated state, the leader's
//! loop (broker, blocked evaluations, plan applier, heartbeats, GC) and scheduler workers.
//!
//! A [`Server`] owns no clock, disk, socket or thread. The runtime feeds it inputs:
//! [`Server::handle_peer_message`], [`Server::handle_client_rpc`], [`Server::handle_members`],
//! [`Server::handle_api_call`], [`Server::handle_schedule_output`],
//! [`Server::handle_schedule_failed`], [`Server::handle_durable`],
//! [`Server::handle_snapshot_encoded`] and [`Server::handle_timeout`], each with `now`,
//! the region's unix time in milliseconds (it must never go backwards). After every input
//! it drains the outputs **in this order**:
//! 1. [`Server::poll_persist`]: write the Raft batch, then report it with `handle_durable`;
//! 2. [`Server::poll_peer_message`]: send to the named server (Raft messages come out only
//!    once the writes they depend on are durable, so persist-before-send holds end to end);
//! 3. [`Server::poll_reply`]: answer a client node or an API caller;
//! 4. [`Server::poll_schedule`]: run the pass on a worker thread and report its output
//!    with `handle_schedule_output` (or, if it produced none, `handle_schedule_failed`);
//! 5. [`Server::poll_region_forward`]: hand a call naming another region to that region;
//! 6. [`Server::poll_snapshot_request`]: encode the state it holds with
//!    [`SnapshotRequest::encode`] (on any thread: the state is an O(1) copy of the
//!    server's, and encoding a large one takes seconds) and hand the bytes back with
//!    `handle_snapshot_encoded`; Raft compacts its log only then;
//! 7. [`Server::poll_timeout`]: call `handle_timeout` at that instant at the latest.
//!
//! Every server applies committed entries ([`crate::state::Command`] frames, stamped with
//! the leader's time) to its [`State`] in log order and snapshots it for compaction. The
//! leader's loop runs exactly while this server leads and has committed an entry of its
//! term; it starts from the state (pending evaluations back into the broker, blocked ones
//! into the tracker, every node on the failover heartbeat TTL) and is dropped whole the
//! moment Raft steps down. [`Server::leader_epoch`] counts how often it started.
//!
//! Scheduler workers run on every server: a follower's workers dequeue from the leader
//! and submit plans to it with [`PeerMessage`]s; the leader's use its broker and plan
//! queue directly. Writes reach only the leader: a follower forwards API writes and
//! answers client writes with [`crate::rpc::ServerReply::NotLeader`]. Reads are served
//! from local state, blocking until the table they read passes the caller's index.

mod autopilot;
mod deployments;
mod leader;
mod message;
mod periodic;
mod probe;
mod requests;
mod snapshot;
mod worker;

pub use crate::state::{
    AUTOPILOT_COUNT_MAX, AutopilotConfig, AutopilotConfigRecord, LAST_CONTACT_THRESHOLD_MIN_MS,
};
pub use autopilot::{
    AUTOPILOT_INTERVAL_MS, AutopilotChange, MemberStatus, RaftServer, ServerMember, next_change,
};
pub use deployments::DeploymentWatcher;
pub use leader::{GcConfig, HeartbeatConfig, LeaderService};
pub use message::{
    ApiCall, ApiReply, ApiRequest, ApiResponse, ClientCall, ClientConn, PassId, PeerEnvelope,
    PeerMessage, PlanVerdict, Query, QueryResult, RegionForward, Reply, SchedulePass, WorkerId,
};
pub use periodic::{PeriodicDispatcher, child_job_id, launch_command};
pub use probe::{Stage, StageProbe};
pub use requests::{batch_eval_kept, batch_eval_superseded};
pub use snapshot::SnapshotRequest;

use crate::broker::BrokerConfig;
use crate::codec::{self, FRAME_LEN_MAX_BYTES_DEFAULT, FrameKind};
use crate::id::IdGen;
use crate::raft::{self, Entry, Index, Membership, NodeId, Payload, Persist, Raft, Term, WriteId};
use crate::rpc::ServerAddr;
use crate::scheduler::{ScheduleOutput, SchedulerConfig};
use crate::state::{ApplyOutcome, Command, Event, State};
use crate::time::Millis;
use leader::LeaderLoop;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use requests::{ParkedRead, PendingWrite, Waiter};
use std::collections::{BTreeMap, VecDeque};
use worker::Worker;

/// Blocking reads parked at once; more are answered at once with what is there.
pub const BLOCKING_QUERIES_MAX: usize = 4096;
/// API writes forwarded to the leader and not yet answered.
pub const FORWARDS_PENDING_MAX: usize = 4096;
/// Nomad's cap on a blocking query's wait.
pub const BLOCKING_WAIT_MAX_MS: u64 = 300_000;
/// The events the server keeps for the event stream, newest last; older ones are dropped
/// (a subscriber that falls further behind resumes at the oldest kept).
pub const EVENT_RING_CAPACITY_EVENTS: usize = 4096;

/// A server's settings. Every bound is named with its unit last.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: NodeId,
    pub region: String,
    pub rng_seed: u64,
    /// The region's servers this one starts with (itself included) and their RPC
    /// addresses: the voters of a brand-new region; empty for a server that joins a
    /// running region and waits to be added.
    pub servers: BTreeMap<NodeId, ServerAddr>,
    pub raft: raft::Config,
    pub broker: BrokerConfig,
    pub scheduler: SchedulerConfig,
    pub heartbeat: HeartbeatConfig,
    pub gc: GcConfig,
    /// What autopilot runs with until an operator sets a configuration through Raft.
    pub autopilot: AutopilotConfig,
    /// Scheduler workers on this server.
    pub workers_count: u32,
    pub plans_pending_max: usize,
    /// How long a worker waits for local state to reach an evaluation's index.
    pub worker_state_wait_ms: u64,
    /// How long an idle follower worker waits before asking the leader again.
    pub dequeue_retry_ms: u64,
    /// How long a forwarded call or a worker's request to the leader may go unanswered.
    pub peer_rpc_timeout_ms: u64,
}

impl ServerConfig {
    pub fn new(id: NodeId, rng_seed: u64, servers: BTreeMap<NodeId, ServerAddr>) -> ServerConfig {
        ServerConfig {
            id,
            region: "global".into(),
            rng_seed,
            servers,
            raft: raft::Config::new(id, rng_seed),
            broker: BrokerConfig { seed: rng_seed ^ 0xb40c, ..BrokerConfig::default() },
            scheduler: SchedulerConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            gc: GcConfig::default(),
            autopilot: AutopilotConfig::default(),
            workers_count: 1,
            plans_pending_max: crate::plan::queue::PLANS_PENDING_MAX_DEFAULT,
            worker_state_wait_ms: 5_000,
            dequeue_retry_ms: 500,
            peer_rpc_timeout_ms: 10_000,
        }
    }
}

/// A forwarded API call waiting for the leader's answer.
#[derive(Clone, Debug)]
struct Forwarded {
    request_id: u64,
    deadline: Millis,
}

/// A dry run (`job plan`) waiting for its scheduling pass.
#[derive(Clone, Debug)]
struct DryRun {
    caller: requests::Caller,
    job_modify_index: u64,
    /// The job as the cluster runs it (`None` when new) and as submitted, for the diff.
    running: Option<crate::model::Job>,
    submitted: crate::model::Job,
}

/// One server. See the module documentation for the protocol with the runtime.
pub struct Server {
    config: ServerConfig,
    raft: Raft,
    state: State,
    rng: ChaCha8Rng,
    ids: IdGen,
    leader: Option<LeaderLoop>,
    leader_epoch: u64,
    services: Vec<Box<dyn LeaderService>>,
    pending_writes: BTreeMap<Index, PendingWrite>,
    parked: Vec<ParkedRead>,
    forwards: BTreeMap<u64, Forwarded>,
    next_forward: u64,
    workers: Vec<Worker>,
    next_pass: PassId,
    dry_runs: BTreeMap<PassId, DryRun>,
    passes: VecDeque<SchedulePass>,
    peer_out: VecDeque<PeerEnvelope>,
    replies: VecDeque<Reply>,
    region_out: VecDeque<RegionForward>,
    /// Verdicts of plans committed at an index a local waiter is waiting on.
    committed_plans: BTreeMap<Index, PlanVerdict>,
    /// Commands this leader proposed, by index, with the term they were proposed in: an
    /// entry is identified by its index and term (Raft's log matching), so when that
    /// entry commits it is applied from here instead of being decoded from its bytes.
    proposed: BTreeMap<Index, (Term, Command)>,
    /// Committed entries whose payload did not decode (never expected; counted, skipped).
    undecodable_entries: u64,
    /// What the applied entries changed, for the event stream; at most
    /// [`EVENT_RING_CAPACITY_EVENTS`], in index order.
    events: VecDeque<Event>,
    /// The state snapshot handed out and not yet encoded, and its index.
    snapshot_out: Option<SnapshotRequest>,
    snapshot_in_flight: Option<Index>,
    /// State snapshots the runtime could not encode (never expected; the next is asked
    /// for at the next applied entry).
    snapshot_failures: u64,
    probe: Option<Box<dyn StageProbe>>,
    /// The region's servers as gossip last reported them.
    members: BTreeMap<NodeId, ServerMember>,
    /// Operators' removals waiting for the membership change in flight to commit.
    removals_waiting: VecDeque<(requests::Caller, NodeId)>,
    /// Raft messages dropped because they came from another Raft group.
    raft_messages_foreign: u64,
}

/// The id of the Raft group a region's first servers bootstrap: the same on each of them
/// (it depends only on the region and its first voters and their addresses), and unlike
/// any other group's.
fn cluster_id(region: &str, servers: &BTreeMap<NodeId, ServerAddr>) -> u64 {
    use crate::state::table::{FNV_OFFSET_BASIS, fnv1a};
    let mut hash = fnv1a(FNV_OFFSET_BASIS, region.as_bytes());
    for (id, addr) in servers {
        hash = fnv1a(fnv1a(hash, &id.to_le_bytes()), addr.as_bytes());
        hash = fnv1a(hash, &[0]);
    }
    // 0 means "not known yet".
    hash.max(1)
}

impl Server {
    /// A brand-new server of a region whose voters are `config.servers` (none: it joins
    /// a running region once its leader adds it).
    pub fn new(now: Millis, config: ServerConfig) -> Server {
        let mut membership = Membership::with_voters(config.servers.keys().copied());
        membership.addresses = config.servers.clone();
        if !config.servers.is_empty() {
            membership.cluster_id = cluster_id(&config.region, &config.servers);
        }
        let raft = Raft::new(now, config.raft.clone(), membership);
        Server::with_raft(config, raft, State::new())
    }

    /// A server restarted from its disk: Raft's durable state, the state machine restored
    /// from `restored.snapshot` (entries after it are applied again as they commit).
    pub fn restore(
        now: Millis,
        config: ServerConfig,
        restored: raft::Restored,
    ) -> Result<Server, crate::state::SnapshotError> {
        let state = state_from_bytes(&restored.snapshot.data)?;
        let raft = Raft::restore(now, config.raft.clone(), restored);
        Ok(Server::with_raft(config, raft, state))
    }

    fn with_raft(config: ServerConfig, raft: Raft, state: State) -> Server {
        let workers = (0..config.workers_count).map(|_| Worker::default()).collect();
        // The periodic dispatcher and the deployment watcher run on every server.
        let dispatcher: Box<dyn LeaderService> =
            Box::new(PeriodicDispatcher::new(config.rng_seed ^ 0x9e71));
        let watcher: Box<dyn LeaderService> =
            Box::new(DeploymentWatcher::new(config.rng_seed ^ 0xde91));
        Server {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed ^ 0x5e4e),
            ids: IdGen::new(config.rng_seed ^ 0x1d5),
            config,
            raft,
            state,
            leader: None,
            leader_epoch: 0,
            services: vec![dispatcher, watcher],
            pending_writes: BTreeMap::new(),
            parked: Vec::new(),
            forwards: BTreeMap::new(),
            next_forward: 0,
            workers,
            next_pass: 0,
            dry_runs: BTreeMap::new(),
            passes: VecDeque::new(),
            peer_out: VecDeque::new(),
            replies: VecDeque::new(),
            region_out: VecDeque::new(),
            undecodable_entries: 0,
            snapshot_out: None,
            snapshot_in_flight: None,
            snapshot_failures: 0,
            committed_plans: BTreeMap::new(),
            proposed: BTreeMap::new(),
            events: VecDeque::new(),
            probe: None,
            members: BTreeMap::new(),
            removals_waiting: VecDeque::new(),
            raft_messages_foreign: 0,
        }
    }

    /// Plugs a probe told where the server's work begins and ends (see [`Stage`]).
    pub fn set_stage_probe(&mut self, probe: Box<dyn StageProbe>) {
        self.probe = Some(probe);
    }

    /// Plugs a leader-only service (the periodic dispatcher, the deployment watcher): it
    /// starts and stops with the leader's loop and its commands go through Raft.
    pub fn add_leader_service(&mut self, service: Box<dyn LeaderService>) {
        self.services.push(service);
    }

    // ---------------------------------------------------------------- getters

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Raft messages dropped because they came from another Raft group.
    pub fn raft_messages_foreign(&self) -> u64 {
        self.raft_messages_foreign
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether this server runs the leader's loop right now.
    pub fn is_leader_loop_active(&self) -> bool {
        self.leader.is_some()
    }

    /// How many times this server's leader loop has started; with the term, what a
    /// checker needs to see that at most one loop runs at a time.
    pub fn leader_epoch(&self) -> u64 {
        self.leader_epoch
    }

    /// The term the active leader loop serves, if any.
    pub fn leader_loop_term(&self) -> Option<Term> {
        self.leader.as_ref().map(|l| l.term)
    }

    pub fn undecodable_entries(&self) -> u64 {
        self.undecodable_entries
    }

    /// The index of the state snapshot handed to the runtime and not yet encoded.
    pub fn snapshot_in_flight(&self) -> Option<Index> {
        self.snapshot_in_flight
    }

    pub fn snapshot_failures(&self) -> u64 {
        self.snapshot_failures
    }

    /// The leader's address, when known.
    pub fn leader_addr(&self) -> Option<ServerAddr> {
        self.raft.leader().and_then(|id| self.peer_addr(id))
    }

    /// Broker and tracker counters on the leader (ready, unacked, blocked).
    pub fn broker_stats(&self) -> Option<(crate::broker::BrokerStats, usize)> {
        self.leader.as_ref().map(|l| (l.broker.stats(), l.blocked.len()))
    }

    /// The heartbeat deadline the leader holds for `node_id`.
    pub fn heartbeat_deadline(&self, node_id: &str) -> Option<Millis> {
        self.leader.as_ref().and_then(|l| l.heartbeats.get(node_id))
    }

    // ---------------------------------------------------------------- outputs

    #[must_use]
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.raft.poll_persist()
    }

    #[must_use]
    pub fn poll_peer_message(&mut self) -> Option<PeerEnvelope> {
        if let Some(envelope) = self.raft.poll_message() {
            let raft::Envelope { from, to, message, .. } = envelope;
            let cluster_id = self.raft.membership().cluster_id;
            return Some(PeerEnvelope {
                from,
                to,
                message: PeerMessage::Raft { cluster_id, message },
            });
        }
        self.peer_out.pop_front()
    }

    #[must_use]
    pub fn poll_reply(&mut self) -> Option<Reply> {
        self.replies.pop_front()
    }

    #[must_use]
    pub fn poll_schedule(&mut self) -> Option<SchedulePass> {
        self.passes.pop_front()
    }

    #[must_use]
    pub fn poll_region_forward(&mut self) -> Option<RegionForward> {
        self.region_out.pop_front()
    }

    /// A copy of the state for the runtime to encode for log compaction; see the module
    /// documentation. At most one is out at a time.
    #[must_use]
    pub fn poll_snapshot_request(&mut self) -> Option<SnapshotRequest> {
        self.snapshot_out.take()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        // Called after every input: the earliest deadline without collecting them.
        let leading = self.leader.as_ref().and_then(|leader| {
            let services = self.services.iter().filter_map(|s| s.poll_timeout()).min();
            [leader.poll_timeout(), self.raft.lease_until(), services].into_iter().flatten().min()
        });
        let waiting = self.parked.iter().map(|p| p.deadline);
        let forwarded = self.forwards.values().map(|f| f.deadline);
        let workers = self.workers.iter().filter_map(Worker::deadline);
        [self.raft.poll_timeout(), leading, self.autopilot_timeout()]
            .into_iter()
            .flatten()
            .chain(waiting)
            .chain(forwarded)
            .chain(workers)
            .min()
    }

    // ---------------------------------------------------------------- inputs

    pub fn handle_durable(&mut self, now: Millis, id: WriteId) {
        self.raft.handle_durable(now, id);
        self.advance(now);
    }

    /// The bytes of the snapshot from [`Server::poll_snapshot_request`] at `index`, or
    /// why they could not be made. Raft compacts its log up to `index` and writes the
    /// snapshot through [`Server::poll_persist`].
    pub fn handle_snapshot_encoded(
        &mut self,
        now: Millis,
        index: Index,
        encoded: Result<Vec<u8>, crate::state::SnapshotError>,
    ) {
        if self.snapshot_in_flight != Some(index) {
            return; // not the one asked for (a restart forgot it): ignored
        }
        self.snapshot_in_flight = None;
        match encoded {
            Ok(bytes) => {
                self.stage_begin(Stage::SnapshotWrite);
                self.raft.handle_snapshot_taken(now, index, bytes);
                self.stage_end(Stage::SnapshotWrite);
            }
            Err(_) => self.snapshot_failures += 1,
        }
        self.advance(now);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        self.raft.handle_timeout(now);
        self.advance(now);
        self.leader_timeouts(now);
        self.expire_parked(now);
        self.expire_forwards(now);
        self.worker_timeouts(now);
        self.advance(now);
    }

    pub fn handle_peer_message(&mut self, now: Millis, envelope: PeerEnvelope) {
        if envelope.to != self.config.id || self.peer_addr(envelope.from).is_none() {
            return; // misaddressed or from a stranger: dropped, never trusted
        }
        let from = envelope.from;
        match envelope.message {
            PeerMessage::Raft { cluster_id, message } => {
                let ours = self.raft.membership().cluster_id;
                if ours != 0 && cluster_id != 0 && cluster_id != ours {
                    // Another Raft group under this region's name: never mixed with ours.
                    self.raft_messages_foreign += 1;
                    return;
                }
                let to = self.config.id;
                self.raft.handle_message(now, raft::Envelope { from, to, after_write: 0, message });
            }
            PeerMessage::Forward { forward_id, call } => {
                self.on_forward(now, from, forward_id, call)
            }
            PeerMessage::ForwardReply { forward_id, reply } => {
                if let Some(forwarded) = self.forwards.remove(&forward_id) {
                    let response = ApiResponse { request_id: forwarded.request_id, reply };
                    self.replies.push_back(Reply::Api(response));
                }
            }
            message => self.on_worker_message(now, from, message),
        }
        self.advance(now);
    }

    pub fn handle_client_rpc(&mut self, now: Millis, call: ClientCall) {
        self.on_client_rpc(now, call);
        self.advance(now);
    }

    pub fn handle_api_call(&mut self, now: Millis, call: ApiCall) {
        if !call.region.is_empty() && call.region != self.config.region {
            let region = call.region.clone();
            self.region_out.push_back(RegionForward { region, call });
            return;
        }
        self.on_api_call(now, requests::Caller::Api(call.request_id), call.request);
        self.advance(now);
    }

    /// The output of a pass from [`Server::poll_schedule`].
    pub fn handle_schedule_output(&mut self, now: Millis, pass_id: PassId, output: ScheduleOutput) {
        if let Some(dry_run) = self.dry_runs.remove(&pass_id) {
            self.answer_dry_run(dry_run, output);
        } else {
            self.on_pass_output(now, pass_id, output);
        }
        self.advance(now);
    }

    /// A pass from [`Server::poll_schedule`] that produced no output: it panicked, or the
    /// runtime could not run it. A worker's evaluation goes back to the broker; a dry run
    /// is answered with the reason.
    pub fn handle_schedule_failed(&mut self, now: Millis, pass_id: PassId, reason: &str) {
        if let Some(dry_run) = self.dry_runs.remove(&pass_id) {
            let message = format!("scheduling pass failed: {reason}");
            self.answer(dry_run.caller, ApiReply::Error { message });
        } else {
            self.on_pass_failed(now, pass_id);
        }
        self.advance(now);
    }

    // ---------------------------------------------------------------- the engine

    /// Applies what committed, follows leadership changes, and runs the leader's and the
    /// workers' next steps, until nothing moves.
    fn advance(&mut self, now: Millis) {
        for _ in 0..64 {
            let mut moved = self.apply_committed(now);
            moved |= self.follow_leadership(now);
            if self.leader.is_some() {
                moved |= self.leader_step(now);
            }
            moved |= self.workers_step(now);
            if !moved {
                break;
            }
        }
        if self.leader.is_some() {
            for service in &mut self.services {
                service.on_applied(now, &self.state);
            }
        }
        self.answer_parked(now);
    }

    fn apply_committed(&mut self, now: Millis) -> bool {
        let mut moved = false;
        if let Some(snapshot) = self.raft.poll_snapshot() {
            match state_from_bytes(&snapshot.data) {
                Ok(state) => self.state = state,
                Err(_) => self.undecodable_entries += 1,
            }
            moved = true;
        }
        while let Some(entries) = self.raft.poll_committed() {
            for entry in entries {
                self.apply_entry(now, entry);
            }
            moved = true;
        }
        // The state is handed out as it stands at `index` (an O(1) copy) and encoded off
        // this loop: encoding a state of a million allocations takes seconds, long enough
        // for a leader to lose its lease.
        if self.snapshot_in_flight.is_none()
            && let Some(index) = self.raft.snapshot_due()
        {
            self.snapshot_in_flight = Some(index);
            self.snapshot_out = Some(SnapshotRequest { index, state: self.state.clone() });
        }
        moved
    }

    fn apply_entry(&mut self, now: Millis, entry: Entry) {
        let now_ns = (entry.at.as_u64() as i64).saturating_mul(1_000_000);
        let result = match entry.payload {
            Payload::Command(bytes) => match self.entry_command(entry.index, entry.term, &bytes) {
                Ok(command) => {
                    if let Command::PlanApply { result, .. } = &command
                        && self.pending_writes.contains_key(&entry.index)
                    {
                        let verdict = PlanVerdict::of(result, entry.index);
                        self.committed_plans.insert(entry.index, verdict);
                    }
                    self.stage_begin(Stage::StateApply);
                    let (outcome, events) =
                        self.state.apply_recording(entry.index, now_ns, command);
                    self.stage_end(Stage::StateApply);
                    self.keep_events(events);
                    Some(outcome)
                }
                Err(_) => {
                    self.undecodable_entries += 1;
                    None
                }
            },
            Payload::Noop | Payload::Membership(_) => None,
        };
        if let Some(leader) = self.leader.as_mut() {
            leader.entry_applied(entry.index);
            if let Some(Ok(outcome)) = &result {
                leader.absorb(now, entry.index, outcome);
            }
        }
        if let Some(pending) = self.pending_writes.remove(&entry.index) {
            let result = if pending.term == entry.term {
                result.unwrap_or(Ok(ApplyOutcome::default())).map_err(|e| e.to_string())
            } else {
                Err("leadership lost while committing".to_owned())
            };
            self.resolve_write(now, entry.index, pending.waiter, result);
        }
    }

    /// Adds an entry's events to the ring, dropping the oldest past its capacity.
    fn keep_events(&mut self, events: Vec<Event>) {
        let dropped = (self.events.len() + events.len()).saturating_sub(EVENT_RING_CAPACITY_EVENTS);
        self.events.drain(..dropped.min(self.events.len()));
        let skipped = events.len().saturating_sub(EVENT_RING_CAPACITY_EVENTS);
        self.events.extend(events.into_iter().skip(skipped));
        assert!(self.events.len() <= EVENT_RING_CAPACITY_EVENTS, "the event ring is bounded");
    }

    /// The events kept for the stream, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// The command a committed entry holds: the one this server proposed at that index
    /// in that term, or else its bytes decoded.
    fn entry_command(
        &mut self,
        index: Index,
        term: Term,
        bytes: &[u8],
    ) -> Result<Command, crate::codec::CodecError> {
        // Older proposals can no longer commit in their term: their entries were replaced.
        while self.proposed.first_key_value().is_some_and(|(&i, _)| i < index) {
            self.proposed.pop_first();
        }
        if self.proposed.first_key_value().is_some_and(|(&i, (t, _))| i == index && *t == term)
            && let Some((_, (_, command))) = self.proposed.pop_first()
        {
            return Ok(command);
        }
        self.stage_begin(Stage::EntryDecode);
        let decoded =
            codec::decode::<Command>(FrameKind::LOG_ENTRY, bytes, FRAME_LEN_MAX_BYTES_DEFAULT);
        self.stage_end(Stage::EntryDecode);
        decoded
    }

    /// Starts the leader's loop once Raft leads with an entry of its term committed,
    /// every entry of its log applied, and a lease (a quorum heard it recently enough
    /// that no other leader can be elected); drops it the moment either ends, so at most
    /// one loop runs at once.
    ///
    /// Applying the whole log is Nomad's barrier write before it establishes leadership:
    /// a loop that stopped for want of a lease and starts again in the same term may have
    /// left plans and verdicts in the log, uncommitted. Its broker would hand their
    /// evaluations out again, and a pass on state without those plans would place what
    /// they place a second time.
    fn follow_leadership(&mut self, now: Millis) -> bool {
        let leased = self.raft.lease_until().is_some_and(|until| now < until);
        let ready = leased
            && self.raft.term_at(self.raft.commit_index()) == Some(self.raft.term())
            && self.raft.applied_index() == self.raft.last_index();
        match &self.leader {
            None if ready => {
                self.establish_leadership(now);
                true
            }
            Some(running) if !leased || running.term != self.raft.term() => {
                self.revoke_leadership(now);
                true
            }
            _ => false,
        }
    }

    fn establish_leadership(&mut self, now: Millis) {
        self.leader_epoch += 1;
        let term = self.raft.term();
        let leader = LeaderLoop::establish(now, term, &self.config, &self.state);
        self.leader = Some(leader);
        for service in &mut self.services {
            service.establish(now, &self.state);
        }
    }

    fn revoke_leadership(&mut self, now: Millis) {
        self.leader = None;
        for service in &mut self.services {
            service.revoke();
        }
        self.proposed.clear();
        self.fail_waiting_removals();
        let pending = std::mem::take(&mut self.pending_writes);
        for write in pending.into_values() {
            self.fail_waiter(now, write.waiter, "leadership lost while committing".into());
        }
        for worker in &mut self.workers {
            worker.reset();
        }
    }

    /// Proposes `command` through Raft; `waiter` learns the outcome once it applies.
    fn propose(&mut self, command: Command, now: Millis, waiter: Waiter) {
        self.stage_begin(Stage::CommandEncode);
        let encoded = codec::encode(FrameKind::LOG_ENTRY, &command);
        self.stage_end(Stage::CommandEncode);
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(error) => return self.fail_waiter(now, waiter, format!("cannot encode: {error}")),
        };
        match self.raft.propose(now, bytes) {
            Ok(index) => {
                let node_change = matches!(
                    command,
                    Command::NodeRegister { .. }
                        | Command::NodeStatus { .. }
                        | Command::NodeDrain { .. }
                        | Command::NodeEligibility { .. }
                        | Command::NodeDeregister { .. }
                );
                if let Some(leader) = self.leader.as_mut().filter(|_| node_change) {
                    leader.node_change_index = index;
                }
                let term = self.raft.term();
                self.pending_writes.insert(index, PendingWrite { term, waiter });
                self.proposed.insert(index, (term, command));
            }
            Err(error) => self.fail_waiter(now, waiter, error.to_string()),
        }
    }

    fn stage_begin(&mut self, stage: Stage) {
        if let Some(probe) = self.probe.as_mut() {
            probe.begin(stage);
        }
    }

    fn stage_end(&mut self, stage: Stage) {
        if let Some(probe) = self.probe.as_mut() {
            probe.end(stage);
        }
    }

    fn send(&mut self, to: NodeId, message: PeerMessage) {
        self.peer_out.push_back(PeerEnvelope { from: self.config.id, to, message });
    }

    fn now_ns(now: Millis) -> i64 {
        (now.as_u64() as i64).saturating_mul(1_000_000)
    }

    fn leader_id(&self) -> Option<NodeId> {
        self.raft.leader().filter(|&id| id != self.config.id || self.leader.is_some())
    }
}

/// The state a snapshot's bytes hold; empty bytes are the empty state of a new region.
fn state_from_bytes(bytes: &[u8]) -> Result<State, crate::state::SnapshotError> {
    if bytes.is_empty() {
        return Ok(State::new());
    }
    State::from_snapshot_bytes(bytes, FRAME_LEN_MAX_BYTES_DEFAULT)
}
