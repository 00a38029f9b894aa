//! The figure-8 schedule: a scripted fault that walks the cluster into the history of
//! figure 8 of the Raft paper, where a leader that commits an entry of an earlier term by
//! counting replicas loses a committed entry.
//!
//! 1. **Split**: the leader `A` (term `t1`) and a few other voters (the largest minority)
//!    are cut off from the rest, and `A` takes a burst of commands at least one append
//!    batch long, which reach only the minority.
//! 2. **Return**: once a voter of the majority leads a term `t2 > t1` (the rival), every
//!    message it sends in `t2` is dropped, so its no-op at `A`'s first uncommitted index
//!    stays on the rival alone. The rival is cut off; the minority rejoins the rest and,
//!    holding the longer log, wins `t3`. It replicates the old entries batch by batch.
//! 3. **Swap**: the moment the `t3` leader's commit index moves, it is muted and cut off
//!    and the rival rejoins. A correct leader moves it only once its own `t3` entry is on
//!    a majority, which then refuses the rival. A leader that committed an old-term entry
//!    early leaves a majority without `t3` entries, which elects the rival: the leader
//!    completeness checker sees it lead without that committed entry.
//!
//! Each stage ends after a bound (in election timeouts); then the cuts and mutes go and
//! the ordinary fault menu resumes. Regular faults wait while the schedule runs.

use super::{Event, Sim};
use drover_core::raft::{Envelope, Index, NodeId, Term};
use drover_core::time::Millis;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Election timeouts the majority gets to elect a rival.
pub const SPLIT_ELECTIONS_MAX: u64 = 12;
/// Election timeouts the minority gets to win a term and commit in it.
pub const RETURN_ELECTIONS_MAX: u64 = 16;
/// Election timeouts the rival gets to win against the muted leader.
pub const SWAP_ELECTIONS_MAX: u64 = 12;
/// Commands in the burst beyond one append batch.
pub const BURST_EXTRA_MAX: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Split { term: Term },
    Return { rival: NodeId, rival_term: Term, base: Index },
    Swap,
}

pub(super) struct Figure8 {
    round: u64,
    stage: Stage,
    minority: BTreeSet<NodeId>,
    majority: BTreeSet<NodeId>,
    /// Links whose messages are dropped: `(from, to)`.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Servers whose messages of one term are dropped.
    muted: BTreeSet<(NodeId, Term)>,
}

impl Stage {
    fn number(self) -> u8 {
        match self {
            Stage::Split { .. } => 0,
            Stage::Return { .. } => 1,
            Stage::Swap => 2,
        }
    }
}

impl Sim {
    /// Starts the schedule against the current leader, if the cluster can play it.
    pub(super) fn figure8_start(&mut self) {
        let Some(leader) = self.leader() else { return };
        let raft = self.nodes[&leader].raft.as_ref().expect("up");
        let (term, voters) = (raft.term(), raft.membership().voters.clone());
        let all_up = voters.iter().all(|v| self.nodes.get(v).is_some_and(|n| n.is_up()));
        if voters.len() < 3 || !all_up {
            return;
        }
        let minority_len = voters.len() - (voters.len() / 2 + 1);
        let mut others: Vec<NodeId> = voters.iter().copied().filter(|&v| v != leader).collect();
        let mut minority = BTreeSet::from([leader]);
        while minority.len() < minority_len {
            let at = self.rng.range(0, others.len() as u64) as usize;
            minority.insert(others.swap_remove(at));
        }
        let majority = voters.difference(&minority).copied().collect();
        self.figure8_round += 1;
        let mut schedule = Figure8 {
            round: self.figure8_round,
            stage: Stage::Split { term },
            minority,
            majority,
            cut: BTreeSet::new(),
            muted: BTreeSet::new(),
        };
        let minority = schedule.minority.clone();
        schedule.cut = self.cut_off(&minority);
        self.blocked.clear();
        trace!(self, "figure-8: n{leader} (term {term}) and {:?} split off", schedule.minority);
        self.figure8_enter(schedule, SPLIT_ELECTIONS_MAX);
        self.figure8_burst(leader);
    }

    /// Proposes at least one append batch of commands to the leader of the minority.
    fn figure8_burst(&mut self, leader: NodeId) {
        let count = self.params.append_entries_max as u64 + self.rng.range(0, BURST_EXTRA_MAX);
        for _ in 0..count {
            let command = self.next_command;
            self.next_command += 1;
            self.propose_command(leader, command);
        }
    }

    /// Every link between `group` and the servers outside it, both ways.
    fn cut_off(&self, group: &BTreeSet<NodeId>) -> BTreeSet<(NodeId, NodeId)> {
        let mut cut = BTreeSet::new();
        for &inside in group {
            for &outside in self.nodes.keys().filter(|id| !group.contains(id)) {
                cut.insert((inside, outside));
                cut.insert((outside, inside));
            }
        }
        cut
    }

    fn figure8_enter(&mut self, schedule: Figure8, elections: u64) {
        let bound = Millis(elections * self.params.election_timeout_ms);
        let (round, stage) = (schedule.round, schedule.stage.number());
        self.figure8 = Some(schedule);
        self.schedule(self.now + bound, Event::Figure8End { round, stage });
    }

    /// A stage ran out of time (or the swap played out): the schedule ends.
    pub(super) fn figure8_end(&mut self, round: u64, stage: u8) {
        let current =
            self.figure8.as_ref().is_some_and(|f| (f.round, f.stage.number()) == (round, stage));
        if current {
            self.figure8 = None;
            trace!(self, "figure-8: round {round} ends in stage {stage}");
        }
    }

    /// True when the schedule drops `envelope`; advances the schedule on what its sender
    /// has become first.
    pub(super) fn figure8_drops(&mut self, envelope: &Envelope) -> bool {
        let Some(mut schedule) = self.figure8.take() else { return false };
        let stage = schedule.stage;
        self.figure8_advance(&mut schedule, envelope.from);
        let (from, to, term) = (envelope.from, envelope.to, envelope.message.term());
        let drops = schedule.cut.contains(&(from, to)) || schedule.muted.contains(&(from, term));
        if schedule.stage != stage {
            let elections = match schedule.stage {
                Stage::Split { .. } => SPLIT_ELECTIONS_MAX,
                Stage::Return { .. } => RETURN_ELECTIONS_MAX,
                Stage::Swap => SWAP_ELECTIONS_MAX,
            };
            self.figure8_enter(schedule, elections);
        } else {
            self.figure8 = Some(schedule);
        }
        drops
    }

    fn figure8_advance(&mut self, schedule: &mut Figure8, sender: NodeId) {
        let Some(raft) = self.nodes.get(&sender).and_then(|n| n.raft.as_ref()) else { return };
        if !raft.is_leader() {
            return;
        }
        let (term, commit) = (raft.term(), raft.commit_index());
        match schedule.stage {
            Stage::Split { term: old } if term > old && schedule.majority.contains(&sender) => {
                let base = self.checker.commit_max();
                schedule.muted.insert((sender, term));
                schedule.cut = self.cut_off(&BTreeSet::from([sender]));
                schedule.stage = Stage::Return { rival: sender, rival_term: term, base };
                trace!(
                    self,
                    "figure-8: rival n{sender} leads term {term}, muted; minority rejoins"
                );
            }
            Stage::Return { rival, rival_term, base }
                if term > rival_term && sender != rival && commit > base =>
            {
                // Unmuted, the rival's stale messages teach it the newer term (a rival
                // without check-quorum would otherwise lead its muted term forever).
                schedule.muted.remove(&(rival, rival_term));
                schedule.muted.insert((sender, term));
                schedule.cut = self.cut_off(&BTreeSet::from([sender]));
                schedule.stage = Stage::Swap;
                trace!(
                    self,
                    "figure-8: n{sender} committed {commit} in term {term}, muted; rival n{rival} rejoins"
                );
            }
            _ => {}
        }
    }
}
