//! Raft consensus as a sans-IO state machine.
//!
//! A [`Raft`] node owns no clock, disk, socket or thread. The runtime feeds it inputs and
//! carries out its outputs:
//!
//! - inputs: [`Raft::handle_message`], [`Raft::handle_timeout`], [`Raft::propose`],
//!   [`Raft::propose_change`], [`Raft::transfer_leadership`], [`Raft::read`],
//!   [`Raft::handle_durable`] and [`Raft::handle_snapshot_taken`], each with the runtime's
//!   `now` (which must never go backwards);
//! - outputs, drained after every input **in this order**:
//!   1. [`Raft::poll_persist`]: write the batch, then report it with `handle_durable`;
//!   2. [`Raft::poll_message`]: send each message (only those whose writes are durable come
//!      out, so persist-before-send holds by construction);
//!   3. [`Raft::poll_snapshot`]: load a snapshot received from the leader into the state
//!      machine;
//!   4. [`Raft::poll_committed`]: apply committed entries in order;
//!   5. [`Raft::poll_read`]: answer reads once the applied index reaches theirs;
//!   6. [`Raft::poll_timeout`]: call `handle_timeout` at that instant at the latest.
//!
//! A node restarts from what its disk holds with [`Raft::restore`]. Election timeouts are
//! randomized by a `ChaCha8Rng` seeded from [`Config::rng_seed`]; entries carry the
//! leader's `now`, the only time the replicated state machine may use.
//!
//! The algorithm is Raft with pre-vote, check-quorum (with the leader lease that makes
//! followers ignore disruptive votes), a no-op per new term, pipelined and batched
//! replication with fast back-off, chunked snapshots, single-server membership changes
//! with learners, leadership transfer and ReadIndex reads.

mod election;
mod log;
mod membership;
mod message;
mod output;
mod progress;
mod read;
mod replication;
mod snapshot;

pub use message::{
    ConfChange, Entry, Envelope, HardState, Index, Membership, Message, NodeId, Payload, Persist,
    ProposeError, ReadId, ReadOutcome, ReadResult, Restored, Snapshot, SnapshotMeta, StaleRead,
    Term, WriteId,
};

use crate::time::Millis;
use log::RaftLog;
use output::Outbox;
use progress::Progress;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many appends may be unacknowledged per follower while pipelining.
pub const APPENDS_IN_FLIGHT_MAX: usize = 8;
/// Reads a node holds at once (waiting for a heartbeat round or for the leader); more
/// fail at once, so a flood of reads cannot grow memory without bound.
pub const READS_PENDING_MAX: usize = 4096;
/// Heartbeat rounds whose send time a leader remembers for its lease; an answer to an
/// older round is too old to extend the lease anyway.
pub const HEARTBEAT_ROUNDS_TRACKED_MAX: usize = 64;
/// Nomad's default: take a snapshot after this many applied entries.
pub const SNAPSHOT_THRESHOLD_ENTRIES: u64 = 8192;
/// hashicorp/raft's default `TrailingLogs` (Nomad keeps it): entries a compaction leaves in
/// the log behind the snapshot, so a follower fewer entries behind than that (its next
/// index past the first entry kept) catches up from the log and needs no snapshot.
pub const SNAPSHOT_TRAILING_ENTRIES: u64 = 10_240;

/// A node's settings. Every bound is named with its unit last.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    pub rng_seed: u64,
    /// The minimum election timeout; each round draws from `[t, 2t)`.
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub append_entries_max: usize,
    pub append_bytes_max: usize,
    pub appends_in_flight_max: usize,
    pub snapshot_threshold_entries: u64,
    /// Entries kept at and before a snapshot's index when the log is compacted (0 keeps
    /// none).
    pub snapshot_trailing_entries: u64,
    pub snapshot_chunk_bytes_max: usize,
}

impl Config {
    pub fn new(id: NodeId, rng_seed: u64) -> Config {
        Config {
            id,
            rng_seed,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 64,
            append_bytes_max: 1 << 20,
            appends_in_flight_max: APPENDS_IN_FLIGHT_MAX,
            snapshot_threshold_entries: SNAPSHOT_THRESHOLD_ENTRIES,
            snapshot_trailing_entries: SNAPSHOT_TRAILING_ENTRIES,
            snapshot_chunk_bytes_max: 1 << 20,
        }
    }

    fn validate(&self) {
        assert!(self.id > 0, "node ids start at 1");
        assert!(self.heartbeat_interval_ms > 0);
        assert!(self.election_timeout_ms > self.heartbeat_interval_ms);
        assert!(self.append_entries_max > 0 && self.appends_in_flight_max > 0);
        assert!(self.snapshot_threshold_entries > 0 && self.snapshot_chunk_bytes_max > 0);
    }
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Who asked for a read: this node's caller, or a follower forwarding its caller's read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadOrigin {
    Local,
    Remote(NodeId),
}

#[derive(Debug)]
struct PendingRead {
    id: ReadId,
    origin: ReadOrigin,
    index: Index,
    seq: u64,
    acks: BTreeSet<NodeId>,
}

/// State that exists only while leading.
#[derive(Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    heartbeat_deadline: Millis,
    check_quorum_deadline: Millis,
    /// The index of this term's no-op; commit at or past it means the leader is ready.
    term_start_index: Index,
    transfer: Option<(NodeId, Millis)>,
    read_seq: u64,
    /// When each recent heartbeat round (by `read_seq`) was first sent, oldest first, at
    /// most [`HEARTBEAT_ROUNDS_TRACKED_MAX`].
    rounds_sent: VecDeque<(u64, Millis)>,
    reads: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term.
    reads_waiting: Vec<(ReadId, ReadOrigin)>,
}

/// One Raft node. See the module documentation for the protocol with the runtime.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    rng: ChaCha8Rng,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    commit: Index,
    /// The last index handed out by `poll_committed` (or covered by a snapshot).
    applied: Index,
    election_deadline: Option<Millis>,
    last_leader_contact: Option<Millis>,
    /// Votes received in the current (pre-)candidacy: voter to granted.
    votes: BTreeMap<NodeId, bool>,
    leading: Option<LeaderState>,
    out: Outbox,
    /// A snapshot being received: its meta and the bytes so far.
    incoming: Option<(SnapshotMeta, Vec<u8>)>,
    to_install: Option<Snapshot>,
    /// Reads forwarded to the leader, with their give-up deadline.
    remote_reads: BTreeMap<ReadId, Millis>,
    read_results: VecDeque<ReadResult>,
}

impl Raft {
    /// A brand-new node. A founding member passes the initial membership; a node that will
    /// join later passes an empty one and waits for the leader. The runtime must write the
    /// first `poll_persist` batch (a snapshot at index 0) like any other.
    pub fn new(now: Millis, config: Config, membership: Membership) -> Raft {
        let snapshot =
            Snapshot { meta: SnapshotMeta { index: 0, term: 0, membership }, data: Vec::new() };
        let mut raft = Raft::restore(
            now,
            config,
            Restored {
                hard_state: HardState::default(),
                snapshot: snapshot.clone(),
                entries: vec![],
            },
        );
        raft.out.write_snapshot(snapshot, None);
        raft.out.write_hard_state(HardState::default());
        raft
    }

    /// A node restarted from its durable state. Its state machine must be restored from
    /// `restored.snapshot` by the runtime; entries after it are applied again as they
    /// commit.
    pub fn restore(now: Millis, config: Config, restored: Restored) -> Raft {
        config.validate();
        let log = RaftLog::new(restored.snapshot, restored.entries);
        let hard_state = restored.hard_state;
        let term = hard_state.term.max(log.last_term());
        let snapshot_index = log.snapshot_index();
        let mut raft = Raft {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            config,
            term,
            vote: if term == hard_state.term { hard_state.vote } else { None },
            role: Role::Follower,
            leader: None,
            out: Outbox::new(log.last_index()),
            log,
            commit: snapshot_index,
            applied: snapshot_index,
            election_deadline: None,
            last_leader_contact: None,
            votes: BTreeMap::new(),
            leading: None,
            incoming: None,
            to_install: None,
            remote_reads: BTreeMap::new(),
            read_results: VecDeque::new(),
        };
        raft.reset_election_deadline(now);
        raft
    }

    // ---------------------------------------------------------------- getters

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The leader this node follows in its current term, itself when leading.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn commit_index(&self) -> Index {
        self.commit
    }

    pub fn applied_index(&self) -> Index {
        self.applied
    }

    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }

    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }

    /// The term of the entry at `index`, or `None` when compacted away or absent.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term_at(index)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.log.entry(index)
    }

    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.log.snapshot.meta
    }

    /// The membership in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }

    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote }
    }

    /// The leader's view of a follower: `(match_index, next_index)`.
    pub fn progress(&self, peer: NodeId) -> Option<(Index, Index)> {
        let leading = self.leading.as_ref()?;
        leading.progress.get(&peer).map(|p| (p.match_index, p.next_index))
    }

    /// When the leader sent the newest heartbeat round `peer` acknowledged: how recently
    /// the leader is known to have reached it. `None` when not leading or never heard.
    pub fn last_contact(&self, peer: NodeId) -> Option<Millis> {
        self.leading.as_ref()?.progress.get(&peer)?.lease_sent
    }

    /// Until when no other leader can exist: a quorum of voters acknowledged heartbeat
    /// rounds, and each refuses other candidates for an election timeout after it heard
    /// the round. `None` when not leading or before a quorum acknowledged a round.
    /// Assumes clocks advance at the same rate and a restarted voter stays silent for an
    /// election timeout (it campaigns no earlier); a runtime with drift subtracts its
    /// bound.
    pub fn lease_until(&self) -> Option<Millis> {
        let leading = self.leading.as_ref()?;
        let membership = self.log.membership();
        let me = self.config.id;
        let mut sent: Vec<Millis> = membership
            .voters
            .iter()
            .filter(|&&v| v != me)
            .filter_map(|v| leading.progress.get(v)?.lease_sent)
            .collect();
        sent.sort_unstable_by(|a, b| b.cmp(a));
        let needed = membership.quorum() - usize::from(membership.voters.contains(&me));
        let timeout = Millis(self.config.election_timeout_ms);
        match needed {
            0 => Some(Millis(u64::MAX)),
            n => sent.get(n - 1).map(|&at| at + timeout),
        }
    }

    /// A cheap read of local state, possibly stale: it never talks to the leader.
    pub fn stale_read(&self) -> StaleRead {
        StaleRead { index: self.commit, term: self.term, leader: self.leader }
    }

    /// The applied index at which the runtime should take a snapshot, when one is due.
    pub fn snapshot_due(&self) -> Option<Index> {
        let behind = self.applied - self.log.snapshot_index();
        (behind >= self.config.snapshot_threshold_entries).then_some(self.applied)
    }

    // ---------------------------------------------------------------- outputs

    /// The next batch to write. Report it with `handle_durable` once it is on disk.
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.out.take_write(self.log.last_index())
    }

    /// The next message to send; only messages whose writes are durable come out.
    #[must_use]
    pub fn poll_message(&mut self) -> Option<Envelope> {
        let envelope = self.out.next_message()?;
        assert_eq!(envelope.from, self.config.id);
        assert_ne!(envelope.to, self.config.id, "a node never messages itself");
        Some(envelope)
    }

    /// A snapshot from the leader for the state machine to load, replacing its state.
    #[must_use]
    pub fn poll_snapshot(&mut self) -> Option<Snapshot> {
        self.to_install.take()
    }

    /// Committed entries to apply, in log order.
    #[must_use]
    pub fn poll_committed(&mut self) -> Option<Vec<Entry>> {
        assert!(self.to_install.is_none(), "drain poll_snapshot before poll_committed");
        if self.applied >= self.commit {
            return None;
        }
        assert!(self.applied >= self.log.snapshot_index(), "applied fell behind the snapshot");
        let entries = self.log.slice(self.applied + 1, self.commit).to_vec();
        self.applied = self.commit;
        Some(entries)
    }

    #[must_use]
    pub fn poll_read(&mut self) -> Option<ReadResult> {
        self.read_results.pop_front()
    }

    /// The next instant at which `handle_timeout` must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut deadline = self.election_deadline;
        let mut consider = |d: Millis| deadline = Some(deadline.map_or(d, |x| x.min(d)));
        if let Some(leading) = &self.leading {
            consider(leading.heartbeat_deadline);
            consider(leading.check_quorum_deadline);
            if let Some((_, d)) = leading.transfer {
                consider(d);
            }
        }
        if let Some(&d) = self.remote_reads.values().min() {
            consider(d);
        }
        deadline
    }

    // ---------------------------------------------------------------- inputs

    /// Every write up to `id` is now durable.
    pub fn handle_durable(&mut self, now: Millis, id: WriteId) {
        self.out.mark_durable(id);
        match self.role {
            Role::Leader => self.maybe_commit(now),
            Role::Candidate => self.count_votes(now),
            Role::Follower | Role::PreCandidate => {}
        }
    }

    /// Fires every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.election_deadline.is_some_and(|d| d <= now) {
            self.election_deadline = None;
            self.on_election_timeout(now);
        }
        if self.leading.is_some() {
            self.leader_timeouts(now);
        }
        self.expire_remote_reads(now);
    }

    /// A message from a peer.
    pub fn handle_message(&mut self, now: Millis, envelope: Envelope) {
        assert_eq!(envelope.to, self.config.id, "message delivered to the wrong node");
        let from = envelope.from;
        let message = envelope.message;
        if !self.accept_term(now, from, &message) {
            return;
        }
        let pre_vote = matches!(message, Message::PreVote { .. } | Message::PreVoteResponse { .. });
        assert!(pre_vote || message.term() == self.term);
        self.step(now, from, message);
        assert!(self.commit <= self.log.last_index());
    }

    fn step(&mut self, now: Millis, from: NodeId, message: Message) {
        match message {
            Message::PreVote { term, last_index, last_term } => {
                self.on_pre_vote(now, from, term, last_index, last_term)
            }
            Message::PreVoteResponse { term, granted } => {
                self.on_vote_response(now, from, term, granted, true)
            }
            Message::Vote { term, last_index, last_term, .. } => {
                self.on_vote(now, from, term, last_index, last_term)
            }
            Message::VoteResponse { term, granted } => {
                self.on_vote_response(now, from, term, granted, false)
            }
            Message::Append { prev_index, prev_term, entries, commit, .. } => {
                self.on_append(now, from, prev_index, prev_term, entries, commit)
            }
            Message::AppendResponse { success, index, hint_index, hint_term, .. } => {
                self.on_append_response(now, from, success, index, hint_index, hint_term)
            }
            Message::Heartbeat { commit, read_seq, .. } => {
                self.on_heartbeat(now, from, commit, read_seq)
            }
            Message::HeartbeatResponse { read_seq, .. } => {
                self.on_heartbeat_response(now, from, read_seq)
            }
            Message::SnapshotChunk { meta, offset, data, done, .. } => {
                self.on_snapshot_chunk(now, from, meta, offset, data, done)
            }
            Message::SnapshotResponse { index, offset, installed, .. } => {
                self.on_snapshot_response(now, from, index, offset, installed)
            }
            Message::TimeoutNow { .. } => self.on_timeout_now(now, from),
            Message::ReadIndex { id, .. } => self.on_read_index(now, from, id),
            Message::ReadIndexResponse { id, index, .. } => self.on_read_index_response(id, index),
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.out.send(self.config.id, to, message);
    }

    fn send_after_writes(&mut self, to: NodeId, message: Message) {
        self.out.send_after_writes(self.config.id, to, message);
    }

    fn write_hard_state(&mut self) {
        self.out.write_hard_state(HardState { term: self.term, vote: self.vote });
    }

    /// Appends an entry to the log and to the open write.
    fn append_entry(&mut self, entry: Entry) {
        self.log.push(entry.clone());
        self.out.write_entry(entry);
    }
}
