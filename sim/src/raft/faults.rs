//! The faults of the safety phase: crashes with power loss, partitions, pauses,
//! membership changes, leadership transfers and the figure-8 schedule ([`super::figure8`]),
//! drawn from the seed.
//!
//! Half of the crashes and isolations target the current leader, the way a Jepsen
//! nemesis does, because leader changes are where consensus bugs live.

use super::node::App;
use super::{Event, Sim};
use drover_core::raft::{ConfChange, Membership, NodeId, Raft};
use drover_core::time::Millis;
use drover_runtime::store::RaftStore;
use std::collections::BTreeSet;
use std::fmt::Write as _;

impl Sim {
    pub(super) fn fault(&mut self) {
        if self.liveness_since.is_some() {
            return;
        }
        let p = &self.params;
        let interval = p.fault_interval_ms;
        let weights = [
            p.crash_weight,
            p.partition_weight,
            p.pause_weight,
            p.membership_weight,
            p.transfer_weight,
            p.figure8_weight,
        ];
        self.after(interval / 2, interval * 3 / 2, Event::Fault);
        if self.figure8.is_some() {
            return;
        }
        let total: u32 = weights.iter().sum();
        if total == 0 {
            return;
        }
        let mut draw = self.rng.range(0, u64::from(total)) as u32;
        let mut choice = 0;
        while draw >= weights[choice] {
            draw -= weights[choice];
            choice += 1;
        }
        match choice {
            0 => self.crash(),
            1 => self.partition(),
            2 => self.pause(),
            3 => self.change_membership(),
            4 => self.transfer(),
            _ => self.figure8_start(),
        }
    }

    pub(super) fn crash(&mut self) {
        let up: Vec<NodeId> =
            self.nodes.iter().filter(|(_, n)| n.is_up()).map(|(&id, _)| id).collect();
        // Half the crashes hit the leader, the way a Jepsen nemesis targets it.
        let leader = self.leader().filter(|_| self.rng.chance(0.5));
        let Some(id) = leader.or_else(|| self.rng.pick(&up)) else { return };
        let unsynced = {
            let node = &self.nodes[&id];
            (node.disk.last_written() - node.disk.synced()) as usize
        };
        let kept = self.rng.range(0, unsynced as u64 + 1) as usize;
        let torn = self.rng.chance(0.5).then(|| self.rng.range(0, 40) as usize);
        let node = self.nodes.get_mut(&id).expect("node");
        node.disk.crash(kept, torn);
        node.raft = None;
        node.incarnation += 1;
        node.timer_at = None;
        node.sync_at = Millis::ZERO;
        node.paused_until = Millis::ZERO;
        trace!(self, "n{id} crash (kept {kept} of {unsynced} unsynced writes, torn={torn:?})");
        self.after(50, 3000, Event::Restart(id));
    }

    pub(super) fn restart(&mut self, id: NodeId) {
        let incarnation = {
            let node = &self.nodes[&id];
            if node.retired || node.raft.is_some() {
                return;
            }
            node.incarnation
        };
        let config = self.config(id, incarnation);
        let now = self.local_now(id);
        let node = self.nodes.get_mut(&id).expect("node");
        let raft = Raft::restore(now, config, node.disk.restored());
        node.app = App::from_snapshot(&node.disk.snapshot().data);
        let (index, hash) = (node.app.index, node.app.hash);
        let (term, last) = (raft.term(), raft.last_index());
        node.raft = Some(raft);
        self.checker.on_restart(id);
        self.checker.on_snapshot_loaded(id, index, hash);
        trace!(self, "n{id} restart term={term} snapshot={index} last={last}");
        self.drain(id);
    }

    pub(super) fn partition(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.blocked.clear();
        let mode = self.rng.range(0, 4);
        let side: BTreeSet<NodeId> = ids.iter().copied().filter(|_| self.rng.chance(0.5)).collect();
        let leader = self.leader().filter(|_| self.rng.chance(0.5));
        let isolated = leader.or_else(|| self.rng.pick(&ids)).expect("nodes exist");
        for &a in &ids {
            for &b in &ids {
                if a == b {
                    continue;
                }
                let cut = match mode {
                    // Symmetric: two sides that cannot talk.
                    0 => side.contains(&a) != side.contains(&b),
                    // Asymmetric: one side's messages to the other are lost.
                    1 => side.contains(&a) && !side.contains(&b),
                    // Partial: random links cut both ways.
                    2 => a < b && self.rng.chance(0.3),
                    // One node isolated.
                    _ => a == isolated || b == isolated,
                };
                if cut {
                    self.blocked.insert((a, b));
                    if mode == 2 {
                        self.blocked.insert((b, a));
                    }
                }
            }
        }
        trace!(self, "partition mode={mode} cut={:?}", self.blocked);
        let heal_max_ms = 4 * self.params.fault_interval_ms;
        self.after(20, heal_max_ms.max(40), Event::Heal);
    }

    /// Steps one running server's clock forward a little, then plans the next step.
    pub(super) fn clock_jump(&mut self) {
        if self.liveness_since.is_some() {
            return;
        }
        let interval = self.params.clock_jump_interval_ms;
        self.after(interval / 2, interval * 3 / 2, Event::ClockJump);
        let up: Vec<NodeId> =
            self.nodes.iter().filter(|(_, n)| n.is_up()).map(|(&id, _)| id).collect();
        let Some(id) = self.rng.pick(&up) else { return };
        let jump = Millis(self.rng.range(1, self.params.clock_jump_max_ms + 1));
        let now = self.now;
        self.nodes.get_mut(&id).expect("node").clock.jump(now, jump);
        trace!(self, "n{id} clock jumps ahead {}ms", jump.as_u64());
        self.schedule_timer(id);
    }

    pub(super) fn pause(&mut self) {
        let reachable = self.reachable();
        let Some(id) = self.rng.pick(&reachable) else { return };
        let until = self.now + Millis(self.rng.range(50, 2000));
        self.nodes.get_mut(&id).expect("node").paused_until = until;
        trace!(self, "n{id} paused until {until}");
    }

    pub(super) fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let membership = self.nodes[&leader].raft.as_ref().expect("up").membership().clone();
        let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let change = match self.rng.range(0, 4) {
            0 if self.nodes.len() < self.params.nodes_max => {
                ConfChange::AddLearner(self.next_node_id)
            }
            1 if !learners.is_empty() => {
                ConfChange::Promote(self.rng.pick(&learners).expect("learner"))
            }
            2 if voters.len() >= 3 => ConfChange::Remove(self.rng.pick(&voters).expect("voter")),
            3 if !learners.is_empty() => {
                ConfChange::Remove(self.rng.pick(&learners).expect("learner"))
            }
            _ => return,
        };
        let now = self.local_now(leader);
        let result = self.raft_mut(leader).propose_change(now, change);
        trace!(self, "operator -> n{leader} {change:?}: {result:?}");
        self.drain(leader);
        if let (Ok(_), ConfChange::AddLearner(_)) = (result, change) {
            self.add_node(Membership::default(), false);
        }
    }

    pub(super) fn transfer(&mut self) {
        let Some(leader) = self.leader() else { return };
        let voters: Vec<NodeId> = {
            let raft = self.nodes[&leader].raft.as_ref().expect("up");
            raft.membership().voters.iter().copied().filter(|&v| v != leader).collect()
        };
        let Some(target) = self.rng.pick(&voters) else { return };
        let now = self.local_now(leader);
        let result = self.raft_mut(leader).transfer_leadership(now, target);
        trace!(self, "operator -> n{leader} transfer to n{target}: {result:?}");
        self.drain(leader);
    }
}
