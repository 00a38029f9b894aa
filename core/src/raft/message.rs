//! The values Raft exchanges with its peers and its runtime: entries, messages, writes.
//!
//! Messages are named by what they ask of the receiver. Every outgoing message travels in
//! an [`Envelope`] that records the write it waited for (`after_write`), so a simulator can
//! check that nothing left the node before the state it depends on was durable.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A server's identity inside one Raft group.
pub type NodeId = u64;
/// A Raft term: an epoch with at most one leader.
pub type Term = u64;
/// A position in the replicated log; index 0 is the empty prefix.
pub type Index = u64;
/// The sequence number of one [`Persist`] batch handed to the runtime, starting at 1.
pub type WriteId = u64;
/// A caller-chosen identity for a read request, echoed back in its [`ReadResult`].
pub type ReadId = u64;

/// The servers of a group: voters decide, learners only receive the log. `addresses`
/// says where each server listens (as hashicorp/raft's configuration does), so every
/// member can reach one it did not start with; Raft itself never reads them.
/// `cluster_id` names the group: fixed when it is bootstrapped and carried by every later
/// membership, so a server learns it with the log; 0 on a server that has not yet heard
/// from the group it joins. The server layer drops Raft messages of another group, so
/// two groups that meet (one region name, peers reachable) never mix their logs; Raft
/// itself never reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub addresses: BTreeMap<NodeId, String>,
    pub cluster_id: u64,
}

impl Membership {
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), ..Membership::default() }
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member, voters first, in id order within each class.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The number of voters that form a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// One change to the membership; the leader applies at most one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChange {
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader so it can commit an entry of its own term.
    Noop,
    Command(#[serde(with = "crate::codec::bytes")] Vec<u8>),
    /// The complete membership in force from the moment this entry is appended.
    Membership(Membership),
}

/// One log entry. `at` is the leader's clock when it appended the entry: the only time the
/// replicated state machine may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub at: Millis,
    pub payload: Payload,
}

impl Entry {
    /// An estimate of the encoded size, used for batching bounds.
    pub fn size_bytes(&self) -> usize {
        let payload = match &self.payload {
            Payload::Noop => 0,
            Payload::Command(bytes) => bytes.len(),
            Payload::Membership(m) => {
                let addresses: usize = m.addresses.values().map(|a| 8 + a.len()).sum();
                8 * (m.voters.len() + m.learners.len()) + addresses
            }
        };
        24 + payload
    }
}

/// Term and vote, the state that must survive a crash before a vote is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
}

/// Where a snapshot sits in the log and which membership was in force there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    pub membership: Membership,
}

/// A state machine image covering every entry up to `meta.index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// One batch for the runtime to write, in this order: the snapshot (and, when
/// `log_reset`, dropping the whole log, else only the entries before `log_first_index`),
/// the hard state, then the entries (which replace any stored entry at or after
/// `entries[0].index`). The runtime reports it durable with `handle_durable(now, id)`;
/// writes become durable in `id` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    pub id: WriteId,
    pub snapshot: Option<Snapshot>,
    pub log_reset: bool,
    /// With a snapshot: the first entry the log keeps. The entries from it up to the
    /// snapshot's index are the trailing ones (`Config::snapshot_trailing_entries`).
    pub log_first_index: Index,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
}

/// What a restarted node reads back from its disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    /// Contiguous entries: trailing ones at or before `snapshot.meta.index` (a
    /// compaction's `log_first_index` on), then those following it.
    pub entries: Vec<Entry>,
}

/// A message from one Raft node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    PreVote {
        term: Term,
        last_index: Index,
        last_term: Term,
    },
    PreVoteResponse {
        term: Term,
        granted: bool,
    },
    /// `force` is set by a transfer target, which may disturb a leader that is still alive.
    Vote {
        term: Term,
        last_index: Index,
        last_term: Term,
        force: bool,
    },
    VoteResponse {
        term: Term,
        granted: bool,
    },
    Append {
        term: Term,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    /// On success `index` is the last index known to match; on rejection it is the rejected
    /// `prev_index`, and the hint points at where the follower's log could match.
    AppendResponse {
        term: Term,
        success: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    },
    Heartbeat {
        term: Term,
        commit: Index,
        read_seq: u64,
    },
    HeartbeatResponse {
        term: Term,
        read_seq: u64,
    },
    SnapshotChunk {
        term: Term,
        meta: SnapshotMeta,
        offset: u64,
        #[serde(with = "crate::codec::bytes")]
        data: Vec<u8>,
        done: bool,
    },
    /// `offset` is the next byte the follower expects; `installed` reports the whole
    /// snapshot durable, and then `last_index` is the follower's last log index.
    SnapshotResponse {
        term: Term,
        index: Index,
        offset: u64,
        installed: bool,
        last_index: Index,
    },
    TimeoutNow {
        term: Term,
    },
    ReadIndex {
        term: Term,
        id: ReadId,
    },
    ReadIndexResponse {
        term: Term,
        id: ReadId,
        index: Option<Index>,
    },
}

impl Message {
    pub fn term(&self) -> Term {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::SnapshotChunk { term, .. }
            | Message::SnapshotResponse { term, .. }
            | Message::TimeoutNow { term }
            | Message::ReadIndex { term, .. }
            | Message::ReadIndexResponse { term, .. } => *term,
        }
    }
}

impl fmt::Display for Message {
    /// The one-line form traces and scenario tests print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::PreVote { term, last_index, last_term } => {
                write!(f, "PreVote term={term} last={last_term}/{last_index}")
            }
            Message::PreVoteResponse { term, granted } => {
                write!(f, "PreVoteResponse term={term} granted={granted}")
            }
            Message::Vote { term, last_index, last_term, force } => {
                let force = if *force { " force" } else { "" };
                write!(f, "Vote term={term} last={last_term}/{last_index}{force}")
            }
            Message::VoteResponse { term, granted } => {
                write!(f, "VoteResponse term={term} granted={granted}")
            }
            Message::Append { term, prev_index, prev_term, entries, commit } => {
                write!(f, "Append term={term} prev={prev_term}/{prev_index}")?;
                if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                    write!(f, " idx={}..{}", first.index, last.index)?;
                }
                write!(f, " commit={commit}")
            }
            Message::AppendResponse { term, success, index, hint_index, hint_term } => {
                if *success {
                    write!(f, "AppendResponse term={term} ok index={index}")
                } else {
                    write!(
                        f,
                        "AppendResponse term={term} reject index={index} \
                         hint={hint_term}/{hint_index}"
                    )
                }
            }
            Message::Heartbeat { term, commit, read_seq } => {
                write!(f, "Heartbeat term={term} commit={commit} read={read_seq}")
            }
            Message::HeartbeatResponse { term, read_seq } => {
                write!(f, "HeartbeatResponse term={term} read={read_seq}")
            }
            Message::SnapshotChunk { term, meta, offset, data, done } => write!(
                f,
                "Snapshot term={term} snap={}/{} offset={offset} len={} done={done}",
                meta.term,
                meta.index,
                data.len()
            ),
            Message::SnapshotResponse { term, index, offset, installed, last_index } => write!(
                f,
                "SnapshotResponse term={term} snap={index} offset={offset} \
                 installed={installed} last={last_index}"
            ),
            Message::TimeoutNow { term } => write!(f, "TimeoutNow term={term}"),
            Message::ReadIndex { term, id } => write!(f, "ReadIndex term={term} id={id}"),
            Message::ReadIndexResponse { term, id, index } => match index {
                Some(index) => write!(f, "ReadIndexResponse term={term} id={id} index={index}"),
                None => write!(f, "ReadIndexResponse term={term} id={id} failed"),
            },
        }
    }
}

/// A message addressed to a peer. `after_write` is the write this message waited for
/// (0 when none): the node released it only once that write was reported durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub after_write: WriteId,
    pub message: Message,
}

/// The answer to a read request. `Ready(index)`: the read is linearizable once the local
/// state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Ready(Index),
    /// Leadership was lost or unknown; the caller may retry.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadResult {
    pub id: ReadId,
    pub outcome: ReadOutcome,
}

/// A cheap, possibly stale read: the local commit index and who this node follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleRead {
    pub index: Index,
    pub term: Term,
    pub leader: Option<NodeId>,
}

/// Why a proposal or a membership change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Only the leader accepts proposals; `leader` is this node's best guess.
    NotLeader { leader: Option<NodeId> },
    /// A leadership transfer is under way.
    Transferring,
    /// The leader has not yet committed an entry of its own term.
    NotReady,
    /// A membership change is appended but not yet committed.
    ChangePending,
    /// The change makes no sense against the current membership.
    InvalidChange,
    /// The learner has not caught up with the commit index yet.
    LearnerBehind,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(id) } => write!(f, "not leader (leader n{id})"),
            ProposeError::NotLeader { leader: None } => write!(f, "not leader"),
            ProposeError::Transferring => write!(f, "leadership transfer in progress"),
            ProposeError::NotReady => write!(f, "leader has not committed in its term"),
            ProposeError::ChangePending => write!(f, "membership change pending"),
            ProposeError::InvalidChange => write!(f, "invalid membership change"),
            ProposeError::LearnerBehind => write!(f, "learner not caught up"),
        }
    }
}
