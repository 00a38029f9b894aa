//! Membership changes, one server at a time, and leadership transfer.
//!
//! A change is accepted only when the leader has committed an entry of its own term and
//! no earlier change is still uncommitted (the single-server rule: any two consecutive
//! memberships share a voter majority). New servers join as learners and are promoted
//! once they hold the committed log. A leader that removes itself keeps leading until the
//! change commits, counting only the remaining voters; then it tells the remaining voters
//! the commit index, sends TimeoutNow to the most caught-up one, and steps down, so the
//! group elects a successor at once instead of after an election timeout.

use super::Raft;
use super::message::{ConfChange, Index, Message, NodeId, Payload, ProposeError};
use super::progress::Progress;
use crate::time::Millis;
use std::cmp::Reverse;

impl Raft {
    /// Proposes one membership change; returns the index of its entry.
    pub fn propose_change(
        &mut self,
        now: Millis,
        change: ConfChange,
    ) -> Result<Index, ProposeError> {
        self.check_accepts_change()?;
        let leading = self.leading.as_ref().expect("leading");
        let mut membership = self.log.membership().clone();
        match change {
            ConfChange::AddLearner(id) => {
                if membership.contains(id) || id == 0 {
                    return Err(ProposeError::InvalidChange);
                }
                membership.learners.insert(id);
            }
            ConfChange::Promote(id) => {
                if !membership.learners.contains(&id) {
                    return Err(ProposeError::InvalidChange);
                }
                let matched = leading.progress.get(&id).map_or(0, |p| p.match_index);
                if matched < self.commit {
                    return Err(ProposeError::LearnerBehind);
                }
                membership.learners.remove(&id);
                membership.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                let last_voter = membership.voters.len() == 1 && membership.voters.contains(&id);
                if !membership.contains(id) || last_voter {
                    return Err(ProposeError::InvalidChange);
                }
                membership.voters.remove(&id);
                membership.learners.remove(&id);
                membership.addresses.remove(&id);
            }
        }
        assert!(!membership.voters.is_empty());
        let current = &self.log.membership().voters;
        let changed = current.symmetric_difference(&membership.voters).count();
        assert!(changed <= 1, "one voter at a time");
        Ok(self.append_own(now, Payload::Membership(membership)))
    }

    /// Records where server `id` listens (`None`: forgets it) in a membership entry that
    /// changes no voter, under the same one-change-at-a-time rule.
    pub fn propose_address(
        &mut self,
        now: Millis,
        id: NodeId,
        address: Option<String>,
    ) -> Result<Index, ProposeError> {
        self.check_accepts_change()?;
        let mut membership = self.log.membership().clone();
        let unchanged = match &address {
            Some(address) => membership.addresses.get(&id) == Some(address),
            None => !membership.addresses.contains_key(&id),
        };
        if id == 0 || unchanged {
            return Err(ProposeError::InvalidChange);
        }
        match address {
            Some(address) => membership.addresses.insert(id, address),
            None => membership.addresses.remove(&id),
        };
        Ok(self.append_own(now, Payload::Membership(membership)))
    }

    /// Whether a membership change is in the log and not yet committed.
    pub fn change_pending(&self) -> bool {
        self.log.last_membership_index() > self.commit
    }

    fn check_accepts_change(&self) -> Result<(), ProposeError> {
        self.check_accepts_proposals()?;
        let leading = self.leading.as_ref().expect("leading");
        if self.commit < leading.term_start_index {
            return Err(ProposeError::NotReady);
        }
        if self.change_pending() {
            return Err(ProposeError::ChangePending);
        }
        Ok(())
    }

    /// Makes the leader track exactly the members of the latest membership.
    pub(super) fn sync_progress(&mut self) {
        let next_index = self.log.last_index() + 1;
        let membership = self.log.membership().clone();
        let me = self.config.id;
        let leading = self.leading.as_mut().expect("leading");
        leading.progress.retain(|id, _| membership.contains(*id));
        for member in membership.members().filter(|&m| m != me) {
            leading.progress.entry(member).or_insert_with(|| Progress::new(next_index));
        }
        if let Some((target, _)) = leading.transfer
            && !membership.voters.contains(&target)
        {
            leading.transfer = None;
        }
    }

    /// Hands leadership to `target` once its log is complete (TimeoutNow). Proposals are
    /// refused until the transfer ends, succeeds or times out (one election timeout).
    pub fn transfer_leadership(&mut self, now: Millis, target: NodeId) -> Result<(), ProposeError> {
        self.check_accepts_proposals()?;
        if target == self.config.id || !self.log.membership().voters.contains(&target) {
            return Err(ProposeError::InvalidChange);
        }
        let deadline = now + Millis(self.config.election_timeout_ms);
        self.leading.as_mut().expect("leading").transfer = Some((target, deadline));
        self.maybe_send_timeout_now(target);
        self.send_appends(target);
        Ok(())
    }

    /// A removed leader whose removal committed: publishes the commit index, asks the most
    /// caught-up voter to campaign at once, and steps down.
    pub(super) fn hand_over(&mut self, now: Millis) {
        let leading = self.leading.as_ref().expect("leading");
        let read_seq = leading.read_seq;
        let voters = &self.log.membership().voters;
        // The highest match index wins; among equals, the lowest id.
        let successor = leading
            .progress
            .iter()
            .filter(|(id, _)| voters.contains(id))
            .max_by_key(|&(&id, p)| (p.match_index, Reverse(id)))
            .map(|(&id, _)| id);
        self.bcast_heartbeat(now, read_seq);
        if let Some(target) = successor {
            self.send(target, Message::TimeoutNow { term: self.term });
        }
        self.become_follower(now, self.term, None);
    }

    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let last_index = self.log.last_index();
        let leading = self.leading.as_ref().expect("leading");
        let Some((target, _)) = leading.transfer else { return };
        let caught_up = leading.progress.get(&peer).is_some_and(|p| p.match_index == last_index);
        if target == peer && caught_up {
            self.send(peer, Message::TimeoutNow { term: self.term });
        }
    }
}
