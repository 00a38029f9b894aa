//! Terms, roles and elections: pre-vote, votes, the leader lease and check-quorum.
//!
//! A follower whose election deadline passes first asks for pre-votes at `term + 1`
//! without changing its term; only when a quorum would vote does it become a candidate.
//! A follower that heard from its leader within the minimum election timeout (the lease)
//! ignores pre-votes and votes, unless a vote is forced by a leadership transfer. So a
//! node rejoining after a partition cannot depose a healthy leader.

use super::message::{Entry, Message, NodeId, Payload, Term};
use super::progress::Progress;
use super::{LeaderState, Raft, Role};
use crate::time::Millis;
use rand_core::Rng;
use std::collections::{BTreeMap, VecDeque};

impl Raft {
    pub(super) fn is_voter(&self) -> bool {
        self.log.membership().voters.contains(&self.config.id)
    }

    /// Draws a fresh randomized deadline, or clears it when this node cannot campaign.
    pub(super) fn reset_election_deadline(&mut self, now: Millis) {
        if self.role == Role::Leader || !self.is_voter() {
            self.election_deadline = None;
            return;
        }
        let timeout_ms = self.config.election_timeout_ms;
        let jitter_ms = self.rng.next_u64() % timeout_ms;
        self.election_deadline = Some(now + Millis(timeout_ms + jitter_ms));
    }

    /// Re-arms the election timer after the membership may have changed.
    pub(super) fn refresh_election_deadline(&mut self, now: Millis) {
        let can_campaign = self.role != Role::Leader && self.is_voter();
        if can_campaign != self.election_deadline.is_some() {
            self.reset_election_deadline(now);
        }
    }

    /// True while this node trusts a live leader (itself included).
    pub(super) fn in_lease(&self, now: Millis) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        let timeout = Millis(self.config.election_timeout_ms);
        self.leader.is_some() && self.last_leader_contact.is_some_and(|t| now < t + timeout)
    }

    /// Applies the term rules; returns false when the message must be dropped.
    pub(super) fn accept_term(&mut self, now: Millis, from: NodeId, message: &Message) -> bool {
        let term = message.term();
        if term > self.term {
            match message {
                Message::PreVote { .. } => return true,
                Message::PreVoteResponse { granted: true, .. } => return true,
                Message::Vote { force: false, .. } if self.in_lease(now) => return false,
                _ => {}
            }
            let from_leader = matches!(
                message,
                Message::Append { .. } | Message::Heartbeat { .. } | Message::SnapshotChunk { .. }
            );
            self.become_follower(now, term, from_leader.then_some(from));
            return true;
        }
        if term < self.term {
            self.answer_stale(from, message);
            return false;
        }
        true
    }

    /// Tells a node with a stale term about the current one, so a deposed leader or a
    /// pre-candidate that fell behind catches up instead of retrying forever.
    fn answer_stale(&mut self, from: NodeId, message: &Message) {
        let term = self.term;
        let answer = match message {
            Message::Append { .. } | Message::Heartbeat { .. } | Message::SnapshotChunk { .. } => {
                Message::AppendResponse {
                    term,
                    success: false,
                    index: 0,
                    hint_index: 0,
                    hint_term: 0,
                }
            }
            Message::PreVote { .. } => Message::PreVoteResponse { term, granted: false },
            Message::Vote { .. } => Message::VoteResponse { term, granted: false },
            _ => return,
        };
        self.send(from, answer);
    }

    pub(super) fn become_follower(&mut self, now: Millis, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "terms never go backwards");
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.write_hard_state();
        }
        if let Some(leading) = self.leading.take() {
            self.fail_leader_reads(leading);
        }
        if self.leader != leader {
            self.fail_remote_reads();
        }
        self.role = Role::Follower;
        self.votes.clear();
        self.leader = leader;
        if leader.is_some() {
            self.last_leader_contact = Some(now);
        }
        self.reset_election_deadline(now);
    }

    /// A message from the leader of the current term.
    pub(super) fn on_leader_contact(&mut self, now: Millis, from: NodeId) {
        assert!(self.role != Role::Leader, "two leaders in term {}", self.term);
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.term, Some(from));
        }
        self.last_leader_contact = Some(now);
        self.reset_election_deadline(now);
    }

    pub(super) fn on_election_timeout(&mut self, now: Millis) {
        assert!(self.role != Role::Leader);
        if !self.is_voter() {
            return;
        }
        if self.config.pre_vote {
            self.become_pre_candidate(now);
        } else {
            self.become_candidate(now, false);
        }
    }

    fn become_pre_candidate(&mut self, now: Millis) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.fail_remote_reads();
        self.votes = BTreeMap::from([(self.config.id, true)]);
        self.reset_election_deadline(now);
        let message = Message::PreVote {
            term: self.term + 1,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        self.send_to_voters(message);
        self.count_votes(now);
    }

    pub(super) fn become_candidate(&mut self, now: Millis, force: bool) {
        assert!(self.is_voter());
        self.term += 1;
        self.vote = Some(self.config.id);
        self.write_hard_state();
        self.role = Role::Candidate;
        self.leader = None;
        self.fail_remote_reads();
        self.votes = BTreeMap::from([(self.config.id, true)]);
        self.reset_election_deadline(now);
        let message = Message::Vote {
            term: self.term,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            force,
        };
        self.send_to_voters(message);
        self.count_votes(now);
    }

    fn send_to_voters(&mut self, message: Message) {
        let me = self.config.id;
        let voters: Vec<NodeId> = self.log.membership().voters.iter().copied().collect();
        for voter in voters.into_iter().filter(|&v| v != me) {
            self.send(voter, message.clone());
        }
    }

    pub(super) fn on_pre_vote(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        last_index: u64,
        last_term: Term,
    ) {
        let can_vote = term > self.term
            || self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none());
        let granted =
            can_vote && !self.in_lease(now) && self.log.is_up_to_date(last_index, last_term);
        let term = if granted { term } else { self.term };
        self.send(from, Message::PreVoteResponse { term, granted });
    }

    pub(super) fn on_vote(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        last_index: u64,
        last_term: Term,
    ) {
        assert_eq!(term, self.term);
        let can_vote = self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        if granted {
            self.vote = Some(from);
            self.write_hard_state();
            self.reset_election_deadline(now);
        }
        // The answer waits for the vote to be durable: a restarted node must remember it.
        self.send_after_writes(from, Message::VoteResponse { term: self.term, granted });
    }

    pub(super) fn on_vote_response(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
    ) {
        let expected = if pre_vote { Role::PreCandidate } else { Role::Candidate };
        if self.role != expected || !self.log.membership().voters.contains(&from) {
            return;
        }
        if pre_vote && granted && term != self.term + 1 {
            return;
        }
        self.votes.insert(from, granted);
        self.count_votes(now);
    }

    pub(super) fn count_votes(&mut self, now: Millis) {
        let membership = self.log.membership();
        let quorum = membership.quorum();
        let voters = membership.voters.len();
        // The candidate's own vote counts once it is durable, like everyone else's: a
        // single voter that crashed before then could otherwise lead the same term twice.
        let own_durable =
            self.role != Role::Candidate || self.out.durable >= self.out.hard_state_write;
        let granted = self
            .votes
            .iter()
            .filter(|&(v, g)| {
                *g && membership.voters.contains(v) && (own_durable || *v != self.config.id)
            })
            .count();
        let rejected = self.votes.values().filter(|g| !**g).count();
        if granted >= quorum {
            match self.role {
                Role::PreCandidate => self.become_candidate(now, false),
                Role::Candidate => self.become_leader(now),
                _ => unreachable!("only candidates count votes"),
            }
        } else if voters - rejected < quorum {
            self.become_follower(now, self.term, None);
        }
    }

    fn become_leader(&mut self, now: Millis) {
        assert_eq!(self.role, Role::Candidate);
        assert_eq!(self.vote, Some(self.config.id));
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.votes.clear();
        self.election_deadline = None;
        let next_index = self.log.last_index() + 1;
        let progress = self
            .log
            .membership()
            .members()
            .filter(|&m| m != self.config.id)
            .map(|m| (m, Progress::new(next_index)))
            .collect();
        self.leading = Some(LeaderState {
            progress,
            heartbeat_deadline: now + Millis(self.config.heartbeat_interval_ms),
            check_quorum_deadline: now + Millis(self.config.election_timeout_ms),
            term_start_index: next_index,
            transfer: None,
            read_seq: 0,
            rounds_sent: VecDeque::new(),
            reads: VecDeque::new(),
            reads_waiting: Vec::new(),
        });
        let noop = Entry { term: self.term, index: next_index, at: now, payload: Payload::Noop };
        self.append_entry(noop);
        self.bcast_append();
    }

    /// A transfer target campaigns at once, skipping pre-vote and the lease.
    pub(super) fn on_timeout_now(&mut self, now: Millis, from: NodeId) {
        if self.role == Role::Leader || !self.is_voter() || self.leader != Some(from) {
            return;
        }
        self.become_candidate(now, true);
    }

    /// Heartbeats, check-quorum and the transfer deadline.
    pub(super) fn leader_timeouts(&mut self, now: Millis) {
        let heartbeat_ms = self.config.heartbeat_interval_ms;
        let election_ms = self.config.election_timeout_ms;
        let leading = self.leading.as_mut().expect("leading");
        if leading.transfer.is_some_and(|(_, d)| d <= now) {
            leading.transfer = None;
        }
        if leading.heartbeat_deadline <= now {
            leading.heartbeat_deadline = now + Millis(heartbeat_ms);
            // Every round gets its own number, so an answer dates the round it answers:
            // the leader lease counts from when that round was sent. Reads stay correct:
            // a later round confirms every read registered before it.
            leading.read_seq += 1;
            let read_seq = leading.read_seq;
            self.bcast_heartbeat(now, read_seq);
        }
        let leading = self.leading.as_mut().expect("leading");
        if leading.check_quorum_deadline <= now {
            leading.check_quorum_deadline = now + Millis(election_ms);
            if self.config.check_quorum && !self.quorum_active() {
                self.become_follower(now, self.term, None);
                return;
            }
            let leading = self.leading.as_mut().expect("leading");
            for progress in leading.progress.values_mut() {
                progress.recent_active = false;
            }
        }
    }

    fn quorum_active(&self) -> bool {
        let leading = self.leading.as_ref().expect("leading");
        let membership = self.log.membership();
        let active = membership
            .voters
            .iter()
            .filter(|&&v| {
                v == self.config.id || leading.progress.get(&v).is_some_and(|p| p.recent_active)
            })
            .count();
        active >= membership.quorum()
    }
}
