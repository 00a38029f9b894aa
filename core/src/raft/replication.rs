//! Log replication: proposals, appends, heartbeats, fast back-off and the commit rule.
//!
//! The leader batches up to `append_entries_max` entries (and `append_bytes_max` bytes)
//! per append and pipelines up to `appends_in_flight_max` appends per follower. A follower
//! that rejects an append answers with a hint (its last index and the term there), and the
//! leader skips back over a whole conflicting term at once. The leader commits only an
//! entry of its own term that a quorum of voters holds durably (Raft figure 8).

use super::message::{Entry, Index, Message, NodeId, Payload, ProposeError, Term};
use super::progress::ProgressState;
use super::{Raft, Role};
use crate::time::Millis;

impl Raft {
    /// Appends a command to the leader's log; returns its index.
    pub fn propose(&mut self, now: Millis, data: Vec<u8>) -> Result<Index, ProposeError> {
        self.check_accepts_proposals()?;
        Ok(self.append_own(now, Payload::Command(data)))
    }

    pub(super) fn check_accepts_proposals(&self) -> Result<(), ProposeError> {
        let Some(leading) = &self.leading else {
            return Err(ProposeError::NotLeader { leader: self.leader });
        };
        if leading.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        Ok(())
    }

    /// Appends an entry of the leader's term and starts replicating it.
    pub(super) fn append_own(&mut self, now: Millis, payload: Payload) -> Index {
        assert!(self.is_leader());
        let index = self.log.last_index() + 1;
        let is_membership = matches!(payload, Payload::Membership(_));
        self.append_entry(Entry { term: self.term, index, at: now, payload });
        if is_membership {
            self.sync_progress();
        }
        self.bcast_append();
        index
    }

    pub(super) fn bcast_append(&mut self) {
        let peers: Vec<NodeId> =
            self.leading.as_ref().expect("leading").progress.keys().copied().collect();
        for peer in peers {
            self.send_appends(peer);
        }
    }

    /// Sends as many appends to `peer` as its flow control allows.
    pub(super) fn send_appends(&mut self, peer: NodeId) {
        let bound = self.config.appends_in_flight_max;
        for _ in 0..bound {
            if !self.send_append(peer) {
                break;
            }
        }
    }

    /// Sends one append (or starts a snapshot) to `peer`; false when nothing went out.
    fn send_append(&mut self, peer: NodeId) -> bool {
        let term = self.term;
        let commit = self.commit;
        let leading = self.leading.as_ref().expect("leading");
        let Some(progress) = leading.progress.get(&peer) else { return false };
        if !progress.can_send(self.config.appends_in_flight_max) {
            return false;
        }
        let prev_index = progress.next_index - 1;
        assert!(prev_index <= self.log.last_index(), "next index beyond the log");
        let Some(prev_term) = self.log.term_at(prev_index) else {
            self.start_snapshot(peer);
            return true;
        };
        let last = self.batch_end(prev_index);
        if progress.state == ProgressState::Replicate && last == prev_index {
            return false;
        }
        let entries = self.log.slice(prev_index + 1, last).to_vec();
        let leading = self.leading.as_mut().expect("leading");
        leading.progress.get_mut(&peer).expect("progress").sent(last);
        self.send(peer, Message::Append { term, prev_index, prev_term, entries, commit });
        true
    }

    /// Tells followers with nothing left to receive about a new commit index at once,
    /// rather than at the next heartbeat.
    fn bcast_commit(&mut self) {
        let last_index = self.log.last_index();
        let leading = self.leading.as_ref().expect("leading");
        let idle: Vec<NodeId> = leading
            .progress
            .iter()
            .filter(|(_, p)| p.state == ProgressState::Replicate && p.next_index > last_index)
            .map(|(&id, _)| id)
            .collect();
        for peer in idle {
            self.send_empty_append(peer);
        }
    }

    fn send_empty_append(&mut self, peer: NodeId) {
        let leading = self.leading.as_ref().expect("leading");
        let prev_index = leading.progress[&peer].next_index - 1;
        let Some(prev_term) = self.log.term_at(prev_index) else { return };
        let (term, commit) = (self.term, self.commit);
        self.send(
            peer,
            Message::Append { term, prev_index, prev_term, entries: Vec::new(), commit },
        );
    }

    /// The last index of a batch starting after `prev_index`, within both bounds.
    fn batch_end(&self, prev_index: Index) -> Index {
        let last_index = self.log.last_index();
        let mut end = prev_index;
        let mut bytes = 0;
        while end < last_index
            && ((end - prev_index) as usize) < self.config.append_entries_max
            && bytes < self.config.append_bytes_max
        {
            end += 1;
            bytes += self.log.entry(end).expect("entry in log").size_bytes();
        }
        end
    }

    pub(super) fn bcast_heartbeat(&mut self, now: Millis, read_seq: u64) {
        let term = self.term;
        let leading = self.leading.as_mut().expect("leading");
        if leading.rounds_sent.back().is_none_or(|&(seq, _)| seq < read_seq) {
            leading.rounds_sent.push_back((read_seq, now));
            if leading.rounds_sent.len() > super::HEARTBEAT_ROUNDS_TRACKED_MAX {
                leading.rounds_sent.pop_front();
            }
        }
        let beats: Vec<(NodeId, Index)> = leading
            .progress
            .iter()
            .map(|(&peer, p)| (peer, p.match_index.min(self.commit)))
            .collect();
        for (peer, commit) in beats {
            self.send(peer, Message::Heartbeat { term, commit, read_seq });
        }
    }

    pub(super) fn on_append(
        &mut self,
        now: Millis,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        self.on_leader_contact(now, from);
        let term = self.term;
        if prev_index < self.commit {
            let index = self.commit;
            let response =
                Message::AppendResponse { term, success: true, index, hint_index: 0, hint_term: 0 };
            self.send_after_writes(from, response);
            return;
        }
        if self.log.term_at(prev_index) != Some(prev_term) {
            let hint_index = prev_index.min(self.log.last_index());
            let hint_term = self.log.term_at(hint_index).expect("hint is past the snapshot");
            let response = Message::AppendResponse {
                term,
                success: false,
                index: prev_index,
                hint_index,
                hint_term,
            };
            self.send_after_writes(from, response);
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        let last_term = entries.last().map_or(prev_term, |e| e.term);
        self.append_from_leader(entries);
        // Log matching: after the append this log agrees with the leader's up to last_new.
        assert_eq!(self.log.term_at(last_new), Some(last_term));
        self.refresh_election_deadline(now);
        self.advance_follower_commit(commit.min(last_new));
        // The answer waits until the entries are durable: it counts towards commitment.
        let response = Message::AppendResponse {
            term,
            success: true,
            index: last_new,
            hint_index: 0,
            hint_term: 0,
        };
        self.send_after_writes(from, response);
    }

    /// Appends the leader's entries, truncating the first conflicting suffix.
    fn append_from_leader(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            match self.log.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(entry.index > self.commit, "a committed entry would be overwritten");
                    self.log.truncate_from(entry.index);
                    self.out.truncated(entry.index);
                    self.append_entry(entry);
                }
                None => self.append_entry(entry),
            }
        }
    }

    fn advance_follower_commit(&mut self, commit: Index) {
        let commit = commit.min(self.log.last_index());
        if commit > self.commit {
            self.commit = commit;
        }
    }

    pub(super) fn on_heartbeat(&mut self, now: Millis, from: NodeId, commit: Index, read_seq: u64) {
        self.on_leader_contact(now, from);
        self.advance_follower_commit(commit);
        self.send(from, Message::HeartbeatResponse { term: self.term, read_seq });
    }

    pub(super) fn on_heartbeat_response(&mut self, now: Millis, from: NodeId, read_seq: u64) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let leading = self.leading.as_mut().expect("leading");
        let Some(progress) = leading.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        // The first send of this round is the earliest the follower could have heard it.
        let sent = leading.rounds_sent.iter().find(|(seq, _)| *seq == read_seq).map(|(_, at)| *at);
        if let Some(sent) = sent {
            progress.lease_sent = progress.lease_sent.max(Some(sent));
        }
        match progress.state {
            ProgressState::Probe { .. } => progress.state = ProgressState::Probe { paused: false },
            // A lost append would stall a full pipeline; free a slot so the follower's
            // rejection of the next one reveals the gap.
            ProgressState::Replicate
                if progress.in_flight.len() >= self.config.appends_in_flight_max =>
            {
                progress.in_flight.pop_front();
            }
            ProgressState::Replicate => {}
            ProgressState::Snapshot { .. } => {
                self.send_snapshot_chunk(from);
                self.ack_reads(now, from, read_seq);
                return;
            }
        }
        if progress.match_index < last_index {
            // Everything was sent but the last acknowledgement may be lost: an empty
            // append at the end of the log makes the follower confirm its position.
            let all_sent =
                progress.state == ProgressState::Replicate && progress.next_index > last_index;
            if all_sent {
                self.send_empty_append(from);
            } else {
                self.send_appends(from);
            }
        }
        self.ack_reads(now, from, read_seq);
    }

    pub(super) fn on_append_response(
        &mut self,
        now: Millis,
        from: NodeId,
        success: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let leading = self.leading.as_mut().expect("leading");
        let Some(progress) = leading.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        if success {
            let moved = progress.update_match(index);
            if matches!(progress.state, ProgressState::Probe { .. }) {
                progress.become_replicate();
            }
            if moved {
                self.maybe_commit(now);
            }
            if !self.is_leader() {
                return;
            }
            self.maybe_send_timeout_now(from);
            self.send_appends(from);
            return;
        }
        let stale = match progress.state {
            ProgressState::Replicate => index <= progress.match_index,
            ProgressState::Probe { .. } => progress.next_index - 1 != index,
            ProgressState::Snapshot { .. } => true,
        };
        if stale {
            return;
        }
        let next = if hint_term > 0 {
            self.find_conflict_by_term(hint_index, hint_term) + 1
        } else {
            hint_index + 1
        };
        let leading = self.leading.as_mut().expect("leading");
        let progress = leading.progress.get_mut(&from).expect("progress");
        let upper = index.max(progress.match_index + 1);
        progress.become_probe();
        progress.next_index = next.clamp(progress.match_index + 1, upper);
        self.send_appends(from);
    }

    /// The largest index at or below `index` whose term is at most `term`, searching the
    /// trailing entries too; the index before the log's first entry when none is.
    fn find_conflict_by_term(&self, index: Index, term: Term) -> Index {
        let mut i = index.min(self.log.last_index());
        while i >= self.log.first_index() {
            if self.log.term_at(i).is_some_and(|t| t <= term) {
                break;
            }
            i -= 1;
        }
        i
    }

    /// Advances the commit index to what a quorum of voters holds, if of this term.
    pub(super) fn maybe_commit(&mut self, now: Millis) {
        let Some(leading) = &self.leading else { return };
        let own = self.out.durable_last_index.min(self.log.last_index());
        let membership = self.log.membership();
        let mut matched: Vec<Index> = membership
            .voters
            .iter()
            .map(|&v| {
                if v == self.config.id {
                    own
                } else {
                    leading.progress.get(&v).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        if matched.is_empty() {
            return;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matched[membership.quorum() - 1];
        if quorum_index <= self.commit || self.log.term_at(quorum_index) != Some(self.term) {
            return;
        }
        assert!(quorum_index <= self.log.last_index(), "commit beyond the leader's log");
        self.commit = quorum_index;
        self.on_leader_commit(now);
        if self.is_leader() {
            self.bcast_commit();
        }
    }

    /// Work that waits for the commit index: reads, and handing over once removed.
    fn on_leader_commit(&mut self, now: Millis) {
        self.release_waiting_reads(now);
        let removed = !self.is_voter() && self.commit >= self.log.last_membership_index();
        if removed {
            self.hand_over(now);
        }
    }
}
