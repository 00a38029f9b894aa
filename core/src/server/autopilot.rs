//! Autopilot: the leader keeps the Raft membership in step with the region's live
//! servers, as Nomad's autopilot and its serf reconciliation do.
//!
//! Every server is told the region's servers as gossip sees them
//! ([`Server::handle_members`]: id, name, RPC address, alive/failed/left); it keeps that
//! view to reach a server its Raft configuration does not name yet. Only the leader acts
//! on it, one membership change at a time, each through Raft (the next waits until the
//! previous one committed), in this order:
//! 1. a member gossip reports as left is removed;
//! 2. an alive server's RPC address is recorded in the Raft configuration when it is not
//!    there or changed, so every member (and every later one) can reach it;
//! 3. an alive server outside the configuration is added as a learner (non-voter);
//! 4. a learner that has been healthy (alive, holding the log up to `max_trailing_logs`
//!    behind the commit index, and having acknowledged a heartbeat round sent at most
//!    `last_contact_threshold_ms` plus one heartbeat interval ago: the wait for the next
//!    round is the leader's, not the learner's) for `server_stabilization_time_ms` is
//!    promoted to voter;
//! 5. with `cleanup_dead_servers`, a failed learner is removed, and a failed voter only
//!    while the live voters are a majority of the voters and the voters left stay at
//!    least `min_quorum`; a server of the configuration gossip does not report at all
//!    counts as failed (raft-autopilot's "stale" servers): gossip forgets a server it
//!    declared down, and one that restarted never hears of a server that was gone by
//!    then, so a server lost for good would otherwise stay a voter forever;
//! 6. the address of a server that is neither a member nor alive is forgotten.
//!
//! A server that announces state of another Raft group (`cluster_id`) is never recorded
//! or added, whatever its status.
//!
//! The thresholds are the region's autopilot configuration: the one an operator set
//! through Raft (`operator autopilot set-config`, stored in the state), else the leader's
//! own from its agent's `autopilot` block. Every leader reads it afresh at each step, so a
//! change takes effect at the next one.
//!
//! The decision ([`next_change`]) is a pure function of the configuration, the gossip
//! view and which learners are stable; the only state the leader keeps is when each
//! learner was first seen healthy, and it lives in the leader's loop, so a new leader
//! recomputes everything from the Raft configuration and starts each stabilization anew.

use super::leader::LeaderLoop;
use super::requests::{Caller, PendingWrite, Waiter};
use super::{ApiReply, Server};
use crate::raft::{ConfChange, Membership, NodeId, ProposeError};
use crate::rpc::ServerAddr;
use crate::state::{AutopilotConfig, AutopilotConfigRecord};
use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// How often the leader looks again while servers are known: a learner's stabilization
/// ends, a change refused for the moment (the leader not ready yet) is retried.
pub const AUTOPILOT_INTERVAL_MS: u64 = 1_000;

/// A server's state as gossip reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberStatus {
    Alive,
    Failed,
    Left,
}

/// One server of the region as gossip knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMember {
    pub id: NodeId,
    /// The gossip name, `<node>.<region>`.
    pub name: String,
    pub addr: ServerAddr,
    pub status: MemberStatus,
    /// The Raft group it holds state of, as it announces it (0: none yet).
    pub cluster_id: u64,
}

/// One step autopilot takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutopilotChange {
    /// Record (`Some`) or forget (`None`) where a server listens.
    Address {
        id: NodeId,
        address: Option<ServerAddr>,
    },
    Membership(ConfChange),
}

/// A server of the Raft configuration, as `operator raft list-peers` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftServer {
    pub id: NodeId,
    /// The gossip name when known, else empty.
    pub node: String,
    pub address: ServerAddr,
    pub leader: bool,
    pub voter: bool,
}

/// The leader's autopilot state: when each learner was first seen healthy in a row.
#[derive(Debug)]
pub(super) struct Autopilot {
    healthy_since: BTreeMap<NodeId, Millis>,
    next_check: Millis,
}

impl Autopilot {
    pub(super) fn new(now: Millis) -> Autopilot {
        Autopilot { healthy_since: BTreeMap::new(), next_check: now }
    }

    pub(super) fn poll_timeout(&self) -> Millis {
        self.next_check
    }
}

/// The next change that brings `membership` in step with `members`, if any (see the
/// module documentation for the order). `stable` are the learners healthy for long
/// enough; `leader` is the server deciding, alive by definition.
pub fn next_change(
    membership: &Membership,
    members: &BTreeMap<NodeId, ServerMember>,
    stable: &BTreeSet<NodeId>,
    leader: NodeId,
    config: &AutopilotConfig,
) -> Option<AutopilotChange> {
    let status = |id: NodeId| members.get(&id).map(|m| m.status);
    let last_voter = |id: NodeId| membership.voters.len() == 1 && membership.voters.contains(&id);
    let remove = |id: NodeId| Some(AutopilotChange::Membership(ConfChange::Remove(id)));
    if let Some(id) =
        membership.members().find(|&id| status(id) == Some(MemberStatus::Left) && !last_voter(id))
    {
        return remove(id);
    }
    // A server of another Raft group under this region's name is never taken in: its
    // state is not ours, and the two groups' messages never mix.
    let ours = |m: &&ServerMember| {
        m.cluster_id == 0 || membership.cluster_id == 0 || m.cluster_id == membership.cluster_id
    };
    let alive = members.values().filter(|m| m.status == MemberStatus::Alive).filter(ours);
    for member in alive.clone() {
        if membership.addresses.get(&member.id) != Some(&member.addr) {
            let address = Some(member.addr.clone());
            return Some(AutopilotChange::Address { id: member.id, address });
        }
    }
    if let Some(member) = alive.clone().find(|m| !membership.contains(m.id)) {
        return Some(AutopilotChange::Membership(ConfChange::AddLearner(member.id)));
    }
    if let Some(&id) = membership.learners.iter().find(|id| stable.contains(id)) {
        return Some(AutopilotChange::Membership(ConfChange::Promote(id)));
    }
    if config.cleanup_dead_servers
        && let Some(id) = dead_to_remove(membership, members, leader, config)
    {
        return remove(id);
    }
    let forgotten = membership.addresses.keys().find(|&&id| {
        !membership.contains(id) && status(id) != Some(MemberStatus::Alive) && id != leader
    });
    forgotten.map(|&id| AutopilotChange::Address { id, address: None })
}

/// A failed learner, or a failed voter when the failed ones are a minority of the voters
/// (Nomad's rule: a quorum of live voters remains, among the current voters and so
/// among those left) and the removal keeps at least `min_quorum` voters. A server gossip
/// does not report counts as failed, never as alive.
fn dead_to_remove(
    membership: &Membership,
    members: &BTreeMap<NodeId, ServerMember>,
    leader: NodeId,
    config: &AutopilotConfig,
) -> Option<NodeId> {
    let failed = |id: &NodeId| {
        *id != leader && members.get(id).is_none_or(|m| m.status == MemberStatus::Failed)
    };
    if let Some(&id) = membership.learners.iter().find(|id| failed(id)) {
        return Some(id);
    }
    let &id = membership.voters.iter().find(|id| failed(id))?;
    let voters_left = membership.voters.len() - 1;
    let alive = |id: &NodeId| {
        *id == leader || members.get(id).is_some_and(|m| m.status == MemberStatus::Alive)
    };
    let alive_voters = membership.voters.iter().filter(|id| alive(id)).count();
    let minority_failed = alive_voters * 2 > membership.voters.len();
    (voters_left >= config.min_quorum.max(1) && minority_failed).then_some(id)
}

impl Server {
    /// The region's servers as gossip sees them now (this one included or not): the
    /// whole view, replacing the previous one.
    pub fn handle_members(&mut self, now: Millis, members: Vec<ServerMember>) {
        self.members = members.into_iter().map(|m| (m.id, m)).collect();
        self.advance(now);
    }

    /// The servers gossip reports, by id.
    pub fn members(&self) -> &BTreeMap<NodeId, ServerMember> {
        &self.members
    }

    /// Where server `id` listens: the Raft configuration's record, else gossip's, else
    /// the address this server started with.
    pub fn peer_addr(&self, id: NodeId) -> Option<ServerAddr> {
        let recorded = self.raft.membership().addresses.get(&id);
        let gossiped = self.members.get(&id).map(|m| &m.addr);
        recorded.or(gossiped).or_else(|| self.config.servers.get(&id)).cloned()
    }

    /// Every server of the Raft configuration, voters first, in id order.
    pub fn raft_servers(&self) -> Vec<RaftServer> {
        let membership = self.raft.membership();
        let leader = self.leader_id();
        membership
            .members()
            .map(|id| RaftServer {
                id,
                node: self.members.get(&id).map(|m| m.name.clone()).unwrap_or_default(),
                address: self.peer_addr(id).unwrap_or_default(),
                leader: leader == Some(id),
                voter: membership.voters.contains(&id),
            })
            .collect()
    }

    /// The voters' addresses, as `status/peers` lists them and clients learn them.
    pub fn voter_addrs(&self) -> Vec<ServerAddr> {
        let voters = self.raft.membership().voters.clone();
        voters.into_iter().filter_map(|id| self.peer_addr(id)).collect()
    }

    /// The autopilot configuration this region runs with: the one an operator set
    /// through Raft, else this server's own (its agent's `autopilot` block), with
    /// indexes 0.
    pub fn autopilot_config(&self) -> AutopilotConfigRecord {
        self.state.autopilot_config_or(self.config.autopilot)
    }

    pub(super) fn autopilot_timeout(&self) -> Option<Millis> {
        let leader = self.leader.as_ref()?;
        (!self.members.is_empty()).then(|| leader.autopilot.poll_timeout())
    }

    /// The leader's autopilot step: at most one change proposed, and only when none is
    /// pending. Returns whether it proposed one.
    pub(super) fn autopilot_step(&mut self, now: Millis) -> bool {
        let Some(leader) = self.leader.as_mut() else { return false };
        if self.members.is_empty() {
            return self.propose_waiting_removal(now);
        }
        if leader.autopilot.next_check <= now {
            leader.autopilot.next_check = now + Millis(AUTOPILOT_INTERVAL_MS);
        }
        let config = self.state.autopilot_config_or(self.config.autopilot).config;
        let contact_max_ms =
            config.last_contact_threshold_ms.saturating_add(self.config.raft.heartbeat_interval_ms);
        let stable = track_health(leader, &self.raft, &self.members, &config, now, contact_max_ms);
        if self.propose_waiting_removal(now) || self.raft.change_pending() {
            return false;
        }
        let membership = self.raft.membership();
        let Some(change) = next_change(membership, &self.members, &stable, self.config.id, &config)
        else {
            return false;
        };
        let proposed = match change {
            AutopilotChange::Address { id, address } => self.raft.propose_address(now, id, address),
            AutopilotChange::Membership(change) => self.raft.propose_change(now, change),
        };
        proposed.is_ok()
    }

    /// `operator raft remove-peer`: removes the server named by id or address from the
    /// Raft configuration; answered once the change commits.
    pub(super) fn remove_peer(
        &mut self,
        now: Millis,
        caller: Caller,
        id: Option<NodeId>,
        address: Option<ServerAddr>,
    ) {
        let membership = self.raft.membership();
        let found = match (id, &address) {
            (Some(id), _) => membership
                .contains(id)
                .then_some(id)
                .ok_or_else(|| format!("id \"{id}\" was not found in the Raft configuration")),
            (None, Some(address)) => membership
                .members()
                .find(|&m| self.peer_addr(m).as_ref() == Some(address))
                .ok_or_else(|| {
                    format!("address \"{address}\" was not found in the Raft configuration")
                }),
            (None, None) => Err("Must specify either ?id with the server's ID or ?address \
                                 with IP:port of peer to remove"
                .to_owned()),
        };
        match found {
            Ok(id) => self.propose_removal(now, caller, id),
            Err(message) => self.answer(caller, ApiReply::Error { message }),
        }
    }

    /// Removes `id` now, or once the membership change in flight (autopilot's, say)
    /// committed; a server already gone is answered as removed.
    fn propose_removal(&mut self, now: Millis, caller: Caller, id: NodeId) {
        if !self.raft.membership().contains(id) {
            let index = self.raft.commit_index();
            let reply = ApiReply::Write {
                index,
                job_modify_index: 0,
                eval_ids: Vec::new(),
                eval_create_index: 0,
            };
            return self.answer(caller, reply);
        }
        match self.raft.propose_change(now, ConfChange::Remove(id)) {
            Ok(index) => {
                let waiter = Waiter::Api { caller, eval_ids: Vec::new() };
                self.pending_writes.insert(index, PendingWrite { term: self.raft.term(), waiter });
            }
            Err(ProposeError::ChangePending) if self.leader.is_some() => {
                self.removals_waiting.push_back((caller, id));
            }
            Err(ProposeError::InvalidChange) => {
                let message = "cannot remove the last voter".to_owned();
                self.answer(caller, ApiReply::Error { message });
            }
            Err(error) => self.answer(caller, ApiReply::Error { message: error.to_string() }),
        }
    }

    /// Operators' removals that waited for a change in flight go first, one at a time.
    fn propose_waiting_removal(&mut self, now: Millis) -> bool {
        if self.raft.change_pending() {
            return false;
        }
        let Some((caller, id)) = self.removals_waiting.pop_front() else { return false };
        self.propose_removal(now, caller, id);
        true
    }

    /// Fails the removals still waiting when leadership ends.
    pub(super) fn fail_waiting_removals(&mut self) {
        for (caller, _) in std::mem::take(&mut self.removals_waiting) {
            let message = "leadership lost while committing".to_owned();
            self.answer(caller, ApiReply::Error { message });
        }
    }
}

/// Updates when each learner was first seen healthy in a row and returns those healthy
/// for the stabilization time.
fn track_health(
    leader: &mut LeaderLoop,
    raft: &crate::raft::Raft,
    members: &BTreeMap<NodeId, ServerMember>,
    config: &AutopilotConfig,
    now: Millis,
    contact_max_ms: u64,
) -> BTreeSet<NodeId> {
    let learners = &raft.membership().learners;
    let commit = raft.commit_index();
    let since = &mut leader.autopilot.healthy_since;
    since.retain(|id, _| learners.contains(id));
    let mut stable = BTreeSet::new();
    for &id in learners {
        let alive = members.get(&id).is_some_and(|m| m.status == MemberStatus::Alive);
        let matched = raft.progress(id).map_or(0, |(matched, _)| matched);
        let in_contact = raft
            .last_contact(id)
            .is_some_and(|sent| now.as_u64().saturating_sub(sent.as_u64()) <= contact_max_ms);
        if !alive || !in_contact || matched.saturating_add(config.max_trailing_logs) < commit {
            since.remove(&id);
            continue;
        }
        let first = *since.entry(id).or_insert(now);
        if now.as_u64() >= first.as_u64().saturating_add(config.server_stabilization_time_ms) {
            stable.insert(id);
        } else {
            let due = Millis(first.as_u64().saturating_add(config.server_stabilization_time_ms));
            leader.autopilot.next_check = leader.autopilot.next_check.min(due);
        }
    }
    stable
}
