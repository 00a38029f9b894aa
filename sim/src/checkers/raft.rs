//! The Raft checker: election safety, leader append-only, log matching, leader
//! completeness, state machine safety, commit monotonicity, persist-before-send and
//! linearizable reads.

use drover_core::raft::{Entry, Envelope, Index, Message, NodeId, Payload, Persist, Raft, Term};
use drover_runtime::store::mem::MemStore;
use std::collections::BTreeMap;

/// A 64-bit FNV-1a over the parts of an entry, so equal entries hash equally.
pub fn entry_hash(entry: &Entry) -> u64 {
    let mut hash = Fnv::default();
    hash.u64(entry.index);
    hash.u64(entry.term);
    hash.u64(entry.at.as_u64());
    match &entry.payload {
        Payload::Noop => hash.u64(1),
        Payload::Command(bytes) => {
            hash.u64(2);
            hash.bytes(bytes);
        }
        Payload::Membership(m) => {
            hash.u64(3);
            m.voters.iter().for_each(|&v| hash.u64(v));
            hash.u64(u64::MAX);
            m.learners.iter().for_each(|&v| hash.u64(v));
        }
    }
    hash.0
}

/// The next link of the applied-history hash chain.
pub fn chain_next(previous: u64, entry: &Entry) -> u64 {
    let mut hash = Fnv(previous);
    hash.u64(entry_hash(entry));
    hash.0
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
}

#[derive(Default)]
struct NodeView {
    commit: Index,
    /// `(term, last_index, term at last_index)` while this node leads.
    leading: Option<(Term, Index, Term)>,
}

#[derive(Default)]
pub struct RaftChecker {
    /// term → the one node that led it.
    leaders: BTreeMap<Term, NodeId>,
    /// `(index, term)` → `(entry hash, term of the previous entry)`, for log matching.
    entries: BTreeMap<(Index, Term), (u64, Term)>,
    /// `chain[i]`: the applied-history hash after index `i`; `chain[0]` is the empty state.
    chain: Vec<u64>,
    /// The highest commit index any node reached, and the term of that entry.
    commit_max: (Index, Term),
    /// Per observer term: the highest commit index seen by a node in that term, with the
    /// entry's term. Leaders of later terms must hold it.
    commits_by_term: BTreeMap<Term, (Index, Term)>,
    nodes: BTreeMap<NodeId, NodeView>,
    /// Read id → the highest commit index when the read was issued.
    reads: BTreeMap<u64, Index>,
    pub violations: Vec<String>,
}

impl RaftChecker {
    pub fn new() -> RaftChecker {
        RaftChecker { chain: vec![0], ..RaftChecker::default() }
    }

    fn fail(&mut self, message: String) {
        self.violations.push(message);
    }

    /// A node restarted: its volatile view starts over.
    pub fn on_restart(&mut self, id: NodeId) {
        self.nodes.insert(id, NodeView::default());
    }

    /// Log matching: an `(index, term)` pair always names the same entry with the same
    /// predecessor term, so by induction equal pairs mean equal prefixes.
    pub fn on_persist(&mut self, id: NodeId, persist: &Persist, raft: &Raft) {
        let mut previous: Option<Term> = None;
        for entry in &persist.entries {
            let key = (entry.index, entry.term);
            // A compaction's write starts at its first trailing entry, whose predecessor
            // is gone; the entry itself was recorded when it was first written.
            let trailing = entry.index <= raft.snapshot_meta().index;
            let prev_term = match previous {
                Some(term) => term,
                None => match raft.term_at(entry.index - 1) {
                    Some(term) => term,
                    None if trailing && self.entries.contains_key(&key) => self.entries[&key].1,
                    None => {
                        self.fail(format!(
                            "n{id} persisted entry {} without its predecessor",
                            entry.index
                        ));
                        return;
                    }
                },
            };
            previous = Some(entry.term);
            let value = (entry_hash(entry), prev_term);
            match self.entries.get(&key) {
                Some(&known) if known != value => self.fail(format!(
                    "log matching: n{id} holds a different entry at index {} term {}",
                    entry.index, entry.term
                )),
                Some(_) => {}
                None => {
                    self.entries.insert(key, value);
                }
            }
        }
    }

    /// Persist before send: what a response claims must already be on the disk.
    pub fn on_send(&mut self, envelope: &Envelope, disk: &MemStore, raft: &Raft) {
        let id = envelope.from;
        if envelope.after_write > disk.synced() {
            self.fail(format!(
                "n{id} sent {} before write {} was durable (synced {})",
                envelope.message,
                envelope.after_write,
                disk.synced()
            ));
            return;
        }
        // A response from an older term may have been overtaken by later writes (a held
        // message of a paused node): only a response of the durable term is checked.
        if envelope.message.term() < disk.durable_hard_state().term.max(raft.term()) {
            return;
        }
        match &envelope.message {
            Message::VoteResponse { term, granted: true } => {
                let durable = disk.durable_hard_state();
                if durable.term != *term || durable.vote != Some(envelope.to) {
                    self.fail(format!("n{id} granted a vote in term {term} that is not durable"));
                }
            }
            Message::AppendResponse { success: true, index, .. } => {
                let durable = disk.durable_term_at(*index);
                let memory = raft.term_at(*index);
                let matches = match (durable, memory) {
                    (Some(d), Some(m)) => d == m,
                    (None, _) => disk.durable_covers(*index),
                    (Some(_), None) => true,
                };
                if !matches {
                    self.fail(format!("n{id} acknowledged index {index} that is not durable"));
                }
            }
            Message::SnapshotResponse { installed: true, index, .. }
                if !disk.durable_covers(*index) =>
            {
                self.fail(format!("n{id} acknowledged snapshot {index} that is not durable"));
            }
            _ => {}
        }
    }

    /// State machine safety: applied histories are prefixes of one hash chain.
    pub fn on_apply(&mut self, id: NodeId, index: Index, hash: u64) {
        let position = index as usize;
        if position < self.chain.len() {
            if self.chain[position] != hash {
                self.fail(format!(
                    "state machine safety: n{id} applied a different entry at {index}"
                ));
            }
        } else if position == self.chain.len() {
            self.chain.push(hash);
        } else {
            self.fail(format!(
                "n{id} applied {index} beyond the known history {}",
                self.chain.len()
            ));
        }
    }

    /// A node loaded a snapshot (from the leader or from its disk on restart).
    pub fn on_snapshot_loaded(&mut self, id: NodeId, index: Index, hash: u64) {
        match self.chain.get(index as usize) {
            Some(&known) if known == hash => {}
            Some(_) => {
                self.fail(format!("n{id} loaded a snapshot at {index} that differs from history"))
            }
            None => self.fail(format!("n{id} loaded a snapshot at {index} nobody applied")),
        }
    }

    /// Role, term and commit checks after every step of node `id`.
    pub fn after_step(&mut self, id: NodeId, raft: &Raft) {
        let commit = raft.commit_index();
        let term = raft.term();
        let view = self.nodes.entry(id).or_default();
        let previous_commit = view.commit;
        view.commit = commit;
        let previous_leading = view.leading.take();
        if commit < previous_commit {
            self.fail(format!("n{id} commit index went back from {previous_commit} to {commit}"));
        }
        if commit > self.commit_max.0 {
            let commit_term = raft.term_at(commit).unwrap_or(raft.snapshot_meta().term);
            self.commit_max = (commit, commit_term);
        }
        let known = self.commits_by_term.get(&term).map_or(0, |&(i, _)| i);
        if commit > known {
            let commit_term = raft.term_at(commit).unwrap_or(raft.snapshot_meta().term);
            self.commits_by_term.insert(term, (commit, commit_term));
        }
        if !raft.is_leader() {
            return;
        }
        let last_index = raft.last_index();
        let last_term = raft.last_term();
        match previous_leading {
            Some((t, prev_last, prev_last_term)) if t == term => {
                let still = prev_last < raft.first_index()
                    || raft.term_at(prev_last) == Some(prev_last_term);
                if last_index < prev_last || !still {
                    self.fail(format!("leader append-only: n{id} rewrote its log in term {term}"));
                }
            }
            _ => self.on_new_leader(id, raft),
        }
        let view = self.nodes.get_mut(&id).expect("view");
        view.leading = Some((term, last_index, last_term));
    }

    fn on_new_leader(&mut self, id: NodeId, raft: &Raft) {
        let term = raft.term();
        if let Some(&other) = self.leaders.get(&term)
            && other != id
        {
            self.fail(format!("election safety: n{other} and n{id} both lead term {term}"));
        }
        self.leaders.insert(term, id);
        // Leader completeness: the new leader holds every entry committed in earlier terms.
        let earlier = self.commits_by_term.range(..term).map(|(_, &c)| c).max();
        let Some((index, commit_term)) = earlier else { return };
        let covered = index <= raft.snapshot_meta().index
            || (index <= raft.last_index() && raft.term_at(index) == Some(commit_term));
        if !covered {
            self.fail(format!(
                "leader completeness: n{id} leads term {term} without committed entry {index}"
            ));
        }
    }

    pub fn commit_max(&self) -> Index {
        self.commit_max.0
    }

    pub fn on_read_issued(&mut self, read: u64) {
        self.reads.insert(read, self.commit_max.0);
    }

    /// Linearizable reads: the read index covers everything committed before the read.
    pub fn on_read_ready(&mut self, id: NodeId, read: u64, index: Index) {
        let Some(floor) = self.reads.remove(&read) else { return };
        if index < floor {
            self.fail(format!("stale linearizable read r{read} at n{id}: index {index} < {floor}"));
        }
    }

    pub fn on_read_failed(&mut self, read: u64) {
        self.reads.remove(&read);
    }

    /// The chain hash at `index`, if some node applied that far.
    pub fn chain_at(&self, index: Index) -> Option<u64> {
        self.chain.get(index as usize).copied()
    }
}
