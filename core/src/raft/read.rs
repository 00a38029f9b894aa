//! Linearizable reads through ReadIndex.
//!
//! The leader records its commit index as the read index, then confirms it still leads
//! with one heartbeat round acknowledged by a quorum of voters. A new leader first waits
//! to commit its no-op, because only then does its commit index cover everything committed
//! before it. A follower forwards its reads to the leader and gives up after two election
//! timeouts. `Raft::stale_read` is the cheap alternative that skips all of this.

use super::message::{Index, Message, NodeId, ReadId, ReadOutcome, ReadResult};
use super::{LeaderState, PendingRead, READS_PENDING_MAX, Raft, ReadOrigin, Role};
use crate::time::Millis;
use std::collections::BTreeSet;

impl Raft {
    /// Starts a linearizable read; its answer comes out of `poll_read`.
    pub fn read(&mut self, now: Millis, id: ReadId) {
        if self.reads_pending() >= READS_PENDING_MAX {
            self.read_results.push_back(ReadResult { id, outcome: ReadOutcome::Failed });
            return;
        }
        if self.role == Role::Leader {
            self.leader_read(now, id, ReadOrigin::Local);
            return;
        }
        let Some(leader) = self.leader else {
            self.read_results.push_back(ReadResult { id, outcome: ReadOutcome::Failed });
            return;
        };
        let deadline = now + Millis(2 * self.config.election_timeout_ms);
        self.remote_reads.insert(id, deadline);
        self.send(leader, Message::ReadIndex { term: self.term, id });
    }

    fn reads_pending(&self) -> usize {
        let leading = self.leading.as_ref().map_or(0, |l| l.reads.len() + l.reads_waiting.len());
        leading + self.remote_reads.len()
    }

    fn leader_read(&mut self, now: Millis, id: ReadId, origin: ReadOrigin) {
        let commit = self.commit;
        let is_voter = self.is_voter();
        let me = self.config.id;
        let leading = self.leading.as_mut().expect("leading");
        if commit < leading.term_start_index {
            leading.reads_waiting.push((id, origin));
            return;
        }
        leading.read_seq += 1;
        let seq = leading.read_seq;
        let acks: BTreeSet<NodeId> = if is_voter { BTreeSet::from([me]) } else { BTreeSet::new() };
        leading.reads.push_back(PendingRead { id, origin, index: commit, seq, acks });
        self.ack_reads(now, me, 0);
        if self.leading.as_ref().is_some_and(|l| !l.reads.is_empty()) {
            self.bcast_heartbeat(now, seq);
        }
    }

    /// Reads queued before the no-op committed can start now.
    pub(super) fn release_waiting_reads(&mut self, now: Millis) {
        let leading = self.leading.as_mut().expect("leading");
        if self.commit < leading.term_start_index || leading.reads_waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut leading.reads_waiting);
        for (id, origin) in waiting {
            self.leader_read(now, id, origin);
        }
    }

    /// A heartbeat answer for round `read_seq` confirms every read up to that round.
    pub(super) fn ack_reads(&mut self, _now: Millis, from: NodeId, read_seq: u64) {
        let membership = self.log.membership();
        let quorum = membership.quorum();
        let from_voter = membership.voters.contains(&from);
        let Some(leading) = self.leading.as_mut() else { return };
        if from_voter {
            for read in leading.reads.iter_mut().take_while(|r| r.seq <= read_seq) {
                read.acks.insert(from);
            }
        }
        let mut ready = Vec::new();
        while leading.reads.front().is_some_and(|r| r.acks.len() >= quorum) {
            ready.push(leading.reads.pop_front().expect("front"));
        }
        for read in ready {
            self.answer_read(read.id, read.origin, Some(read.index));
        }
    }

    fn answer_read(&mut self, id: ReadId, origin: ReadOrigin, index: Option<Index>) {
        assert!(index.is_none_or(|i| i <= self.commit), "a read index is always committed");
        match origin {
            ReadOrigin::Local => {
                let outcome = index.map_or(ReadOutcome::Failed, ReadOutcome::Ready);
                self.read_results.push_back(ReadResult { id, outcome });
            }
            ReadOrigin::Remote(peer) => {
                self.send(peer, Message::ReadIndexResponse { term: self.term, id, index });
            }
        }
    }

    pub(super) fn on_read_index(&mut self, now: Millis, from: NodeId, id: ReadId) {
        if self.role == Role::Leader && self.reads_pending() < READS_PENDING_MAX {
            self.leader_read(now, id, ReadOrigin::Remote(from));
        } else {
            self.send(from, Message::ReadIndexResponse { term: self.term, id, index: None });
        }
    }

    pub(super) fn on_read_index_response(&mut self, id: ReadId, index: Option<Index>) {
        if self.remote_reads.remove(&id).is_some() {
            let outcome = index.map_or(ReadOutcome::Failed, ReadOutcome::Ready);
            self.read_results.push_back(ReadResult { id, outcome });
        }
    }

    pub(super) fn expire_remote_reads(&mut self, now: Millis) {
        let expired: Vec<ReadId> =
            self.remote_reads.iter().filter(|&(_, &d)| d <= now).map(|(&id, _)| id).collect();
        for id in expired {
            self.remote_reads.remove(&id);
            self.read_results.push_back(ReadResult { id, outcome: ReadOutcome::Failed });
        }
    }

    pub(super) fn fail_remote_reads(&mut self) {
        let pending = std::mem::take(&mut self.remote_reads);
        for id in pending.into_keys() {
            self.read_results.push_back(ReadResult { id, outcome: ReadOutcome::Failed });
        }
    }

    /// A leader stepping down answers every read it still holds with a failure.
    pub(super) fn fail_leader_reads(&mut self, leading: LeaderState) {
        let waiting = leading.reads.into_iter().map(|r| (r.id, r.origin));
        for (id, origin) in waiting.chain(leading.reads_waiting) {
            self.answer_read(id, origin, None);
        }
    }
}
