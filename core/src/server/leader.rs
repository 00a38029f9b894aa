//! The leader's loop: the eval broker and blocked evaluations, the plan queue and its
//! applier, heartbeat timers, garbage collection and the plugged leader services.
//!
//! It exists only inside [`LeaderLoop`], which the server creates when Raft leads and
//! drops when it does not: nothing here can outlive leadership, so two servers never
//! run it for the same term, and a deposed leader stops marking nodes down at once.

use super::autopilot::Autopilot;
use super::requests::Waiter;
use super::{Server, ServerConfig, Stage};
use crate::broker::blocked::BlockedEvals;
use crate::broker::{BrokerError, EvalBroker};
use crate::model::{EvalStatus, Evaluation, JobType, NodeStatus, Plan, PlanResult, TriggeredBy};
use crate::plan::queue::{PlanQueue, PlanTicket};
use crate::plan::{InFlight, evaluate_plan_pipelined};
use crate::raft::{Index, NodeId, Term};
use crate::state::{ApplyOutcome, Command, JobKey, State};
use crate::time::Millis;
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Plans the applier has proposed and not yet seen applied. Nomad's applier keeps one
/// committing while it evaluates the next; a few let Raft carry several in one append
/// while the followers are busy applying.
const PLANS_IN_FLIGHT_MAX: usize = 4;

/// Nomad's heartbeat settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    pub min_heartbeat_ttl_ms: u64,
    pub max_heartbeats_per_second: u64,
    pub heartbeat_grace_ms: u64,
    /// Every node's TTL right after a leader takes over, so none is marked down for
    /// heartbeats that went to the old leader.
    pub failover_heartbeat_ttl_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> HeartbeatConfig {
        HeartbeatConfig {
            min_heartbeat_ttl_ms: 10_000,
            max_heartbeats_per_second: 50,
            heartbeat_grace_ms: 10_000,
            failover_heartbeat_ttl_ms: 300_000,
        }
    }
}

/// Nomad's garbage-collection thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcConfig {
    pub interval_ms: u64,
    pub eval_gc_threshold_ms: u64,
    pub batch_eval_gc_threshold_ms: u64,
    pub job_gc_threshold_ms: u64,
    pub node_gc_threshold_ms: u64,
    /// Objects of each kind one GC entry reaps at most, so one entry stays small.
    pub reap_batch_max: usize,
}

impl Default for GcConfig {
    fn default() -> GcConfig {
        GcConfig {
            interval_ms: 300_000,
            eval_gc_threshold_ms: 3_600_000,
            batch_eval_gc_threshold_ms: 86_400_000,
            job_gc_threshold_ms: 14_400_000,
            node_gc_threshold_ms: 86_400_000,
            reap_batch_max: 1024,
        }
    }
}

/// A leader-only service plugged into the server: the periodic dispatcher and the
/// deployment watcher live here. It starts with the leader's loop, is ticked at its
/// deadlines, and stops the moment leadership ends; its commands go through Raft.
pub trait LeaderService {
    fn establish(&mut self, now: Millis, state: &State);
    /// Committed entries were applied while leading: the state may have changed.
    fn on_applied(&mut self, _now: Millis, _state: &State) {}
    /// Work due at `now`: commands to commit.
    fn tick(&mut self, now: Millis, state: &State) -> Vec<Command>;
    fn poll_timeout(&self) -> Option<Millis>;
    fn revoke(&mut self);
}

/// Each node's heartbeat deadline, also ordered by deadline: the leader asks for the
/// earliest on every turn of its loop, and a scan of thousands of nodes each time cost
/// more than the loop's own work.
#[derive(Clone, Debug, Default)]
pub(super) struct HeartbeatDeadlines {
    by_node: BTreeMap<String, Millis>,
    by_deadline: BTreeSet<(Millis, String)>,
}

impl HeartbeatDeadlines {
    pub fn get(&self, node_id: &str) -> Option<Millis> {
        self.by_node.get(node_id).copied()
    }

    pub fn set(&mut self, node_id: &str, deadline: Millis) {
        if let Some(old) = self.by_node.insert(node_id.to_owned(), deadline) {
            self.by_deadline.remove(&(old, node_id.to_owned()));
        }
        self.by_deadline.insert((deadline, node_id.to_owned()));
    }

    pub fn remove(&mut self, node_id: &str) {
        if let Some(deadline) = self.by_node.remove(node_id) {
            self.by_deadline.remove(&(deadline, node_id.to_owned()));
        }
    }

    pub fn earliest(&self) -> Option<Millis> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Forgets the nodes whose deadline is at or before `now` and returns them in ID
    /// order.
    pub fn take_expired(&mut self, now: Millis) -> Vec<String> {
        let mut expired = Vec::new();
        while self.by_deadline.first().is_some_and(|(deadline, _)| *deadline <= now) {
            let Some((_, node_id)) = self.by_deadline.pop_first() else { break };
            self.by_node.remove(&node_id);
            expired.push(node_id);
        }
        expired.sort_unstable();
        expired
    }
}

/// Where a queued plan came from, so its verdict finds the worker.
#[derive(Clone, Debug)]
pub(super) struct PlanOrigin {
    /// `None`: a worker on this server.
    pub peer: Option<NodeId>,
    pub worker: u32,
    pub seq: u64,
}

#[derive(Clone, Debug)]
struct QueuedPlan {
    origin: PlanOrigin,
    followups: Vec<Evaluation>,
}

/// Everything that exists only while this server leads.
pub(super) struct LeaderLoop {
    pub term: Term,
    pub broker: EvalBroker,
    pub blocked: BlockedEvals,
    plans: PlanQueue,
    queued: BTreeMap<PlanTicket, QueuedPlan>,
    /// The Raft indexes of the plans proposed and not applied yet. The next plan is
    /// evaluated as if they had applied; it can commit only after them, as Raft commits
    /// this leader's entries in order, and if one of them is lost so is every later
    /// entry (and this loop with its term).
    applying: BTreeSet<Index>,
    /// Node → when it is marked down without a heartbeat.
    pub heartbeats: HeartbeatDeadlines,
    /// The index of the last node change this loop proposed (registration, status,
    /// drain, eligibility). Its evaluations were chosen from the state before it, which
    /// lacks any job whose registration was still committing; so an evaluation handed
    /// out afterwards plans from state that includes the change, and sees the node as it
    /// left it (Nomad creates node evaluations after the change applies, to the same end).
    pub node_change_index: Index,
    next_gc: Millis,
    pub heartbeat: HeartbeatConfig,
    pub autopilot: Autopilot,
}

impl LeaderLoop {
    /// Starts from the state: pending evaluations back into the broker, blocked ones into
    /// the tracker, and every live node on the failover TTL.
    pub fn establish(now: Millis, term: Term, config: &ServerConfig, state: &State) -> LeaderLoop {
        let mut leader = LeaderLoop {
            term,
            broker: EvalBroker::new(config.broker),
            blocked: BlockedEvals::default(),
            plans: PlanQueue::new(config.plans_pending_max),
            queued: BTreeMap::new(),
            applying: BTreeSet::new(),
            heartbeats: HeartbeatDeadlines::default(),
            node_change_index: 0,
            next_gc: now + Millis(config.gc.interval_ms),
            heartbeat: config.heartbeat,
            autopilot: Autopilot::new(now),
        };
        for eval in state.evals() {
            if eval.should_enqueue() {
                let _ = leader.broker.handle_enqueue(now, (**eval).clone());
            } else if eval.should_block() {
                leader.blocked.block((**eval).clone());
            }
        }
        let failover = now + Millis(config.heartbeat.failover_heartbeat_ttl_ms);
        for node in state.nodes().filter(|n| n.status != NodeStatus::Down) {
            leader.heartbeats.set(&node.id, failover);
        }
        leader
    }

    /// What an applied entry means for the broker and the tracker.
    pub fn absorb(&mut self, now: Millis, index: Index, outcome: &ApplyOutcome) {
        for eval in &outcome.evals {
            if eval.should_block() {
                self.blocked.block((**eval).clone());
            } else if eval.should_enqueue() && !self.broker.is_outstanding(&eval.id) {
                let _ = self.broker.handle_enqueue(now, (**eval).clone());
            }
        }
        for class in &outcome.capacity_changed {
            self.blocked.unblock_class(class, index);
        }
    }

    /// The entry at `index` applied: the plans proposed up to it are in the state now.
    pub fn entry_applied(&mut self, index: Index) {
        self.applying = self.applying.split_off(&(index + 1));
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let heartbeat = self.heartbeats.earliest();
        [self.broker.poll_timeout(), heartbeat, Some(self.next_gc)].into_iter().flatten().min()
    }

    /// A node's TTL: `max(min_ttl, nodes / rate)` plus a random stagger up to that much.
    pub fn heartbeat_ttl_ms(&self, nodes: usize, rng: &mut ChaCha8Rng) -> u64 {
        let config = self.heartbeat;
        let rate = config.max_heartbeats_per_second.max(1);
        let base = config.min_heartbeat_ttl_ms.max(nodes as u64 * 1000 / rate);
        base + rng.next_u64() % base.max(1)
    }
}

impl Server {
    /// The leader's next steps: broker and tracker outputs into Raft, the next plan.
    pub(super) fn leader_step(&mut self, now: Millis) -> bool {
        let now_ns = Server::now_ns(now);
        let mut commands = Vec::new();
        let leader = self.leader.as_mut().expect("leader_step runs while leading");
        while let Some(mut failed) = leader.broker.poll_failed() {
            let followup = leader.broker.failed_follow_up(&failed, now_ns);
            failed.status = EvalStatus::Failed;
            failed.status_description = "evaluation reached delivery limit".into();
            failed.next_eval = followup.id.clone();
            commands.push(Command::EvalUpsert { evals: vec![failed, followup] });
        }
        // The state cancels a job's older blocked evaluation itself when a newer one is
        // written; only what it still holds as live needs writing.
        let state = &self.state;
        let cancelled: Vec<Evaluation> = std::iter::from_fn(|| leader.broker.poll_cancelled())
            .chain(leader.blocked.drain_cancelled())
            .filter(|e| state.eval(&e.id).is_some_and(|stored| !stored.is_terminal()))
            .collect();
        for batch in cancelled.chunks(self.config.gc.reap_batch_max.max(1)) {
            commands.push(Command::EvalUpsert { evals: batch.to_vec() });
        }
        // An evaluation the state already ended (a newer blocked one of its job cancelled
        // it) is not run again.
        let unblocked = leader.blocked.drain_unblocked().into_iter();
        for mut eval in unblocked.filter(|e| state.eval(&e.id).is_some_and(|s| !s.is_terminal())) {
            eval.status = EvalStatus::Pending;
            let _ = leader.broker.handle_enqueue(now, eval);
        }
        let moved = !commands.is_empty();
        for command in commands {
            self.propose(command, now, Waiter::Leader);
        }
        moved | self.apply_next_plan(now) | self.autopilot_step(now)
    }

    /// A worker's plan joins the queue; its evaluation's nack clock stops meanwhile.
    pub(super) fn submit_plan(
        &mut self,
        now: Millis,
        origin: PlanOrigin,
        plan: Plan,
        followups: Vec<Evaluation>,
    ) {
        let Some(leader) = self.leader.as_mut() else {
            return self.answer_plan(now, &origin, Err("not the leader".into()));
        };
        let (eval_id, token) = (plan.eval_id.clone(), plan.eval_token.clone());
        match leader.broker.pause_nack_timeout(&eval_id, &token, origin.seq) {
            Ok(()) => {}
            // A copy of a plan already submitted: its worker hears the original's verdict.
            Err(BrokerError::DuplicatePlan { .. }) => return,
            Err(error) => return self.answer_plan(now, &origin, Err(error.to_string())),
        }
        match leader.plans.handle_enqueue(plan) {
            Ok(ticket) => drop(leader.queued.insert(ticket, QueuedPlan { origin, followups })),
            Err(_) => {
                let _ = leader.broker.resume_nack_timeout(now, &eval_id, &token);
                self.answer_plan(now, &origin, Err("plan queue full".into()))
            }
        }
    }

    /// Re-checks the next plan against the latest state, with the plans still committing
    /// counted as applied, and proposes what fits.
    fn apply_next_plan(&mut self, now: Millis) -> bool {
        let leader = self.leader.as_ref().expect("leading");
        if leader.applying.len() >= PLANS_IN_FLIGHT_MAX || leader.plans.is_empty() {
            return false;
        }
        // The results of the plans in flight are kept until they apply; were one missing,
        // the next plan would wait for it rather than be evaluated without it.
        if self.plans_in_flight().is_none() {
            return false;
        }
        let leader = self.leader.as_mut().expect("leading");
        let Some((ticket, plan)) = leader.plans.poll_next() else { return false };
        let queued = leader.queued.remove(&ticket).expect("every ticket is recorded");
        let (eval_id, token) = (plan.eval_id.clone(), plan.eval_token.clone());
        // A plan whose worker nacked while it waited, or whose token is stale, is refused:
        // its worker no longer holds the evaluation.
        if leader.broker.take_plan(now, &eval_id, &token).is_err() {
            let message = format!("evaluation {eval_id} is no longer held with this token");
            self.answer_plan(now, &queued.origin, Err(message));
            return true;
        }
        let expected = plan.placement_count();
        let job = plan.job.clone();
        self.stage_begin(Stage::PlanEvaluate);
        let in_flight = self.plans_in_flight().expect("nothing applied since the check");
        let evaluated = evaluate_plan_pipelined(&self.state, &in_flight, plan);
        self.stage_end(Stage::PlanEvaluate);
        let placed: usize = evaluated.result.node_allocation.values().map(Vec::len).sum();
        let evals = if placed == expected { queued.followups } else { Vec::new() };
        let command = Command::PlanApply { result: evaluated.result, job, evals };
        let index_before = self.raft.last_index();
        self.propose(command, now, Waiter::Plan { origin: queued.origin, eval_id, token });
        if self.raft.last_index() > index_before {
            let index = self.raft.last_index();
            self.leader.as_mut().expect("leading").applying.insert(index);
        }
        true
    }

    /// The results of the plans still committing, from the commands this leader
    /// proposed; `None` if one is missing.
    fn plans_in_flight(&self) -> Option<InFlight<'_>> {
        let leader = self.leader.as_ref()?;
        let results = leader.applying.iter().map(|index| match self.proposed.get(index) {
            Some((_, Command::PlanApply { result, .. })) => Some(result),
            _ => None,
        });
        let results: Option<Vec<&PlanResult>> = results.collect();
        let last_index = leader.applying.last().copied().unwrap_or(0);
        Some(InFlight::new(results?, last_index))
    }

    /// The applied plan's verdict goes back to its worker, whose evaluation's nack clock
    /// runs again.
    pub(super) fn plan_applied(&mut self, now: Millis, eval_id: &str, token: &str) {
        if let Some(leader) = self.leader.as_mut() {
            let _ = leader.broker.resume_nack_timeout(now, eval_id, token);
        }
    }

    pub(super) fn answer_plan(
        &mut self,
        now: Millis,
        origin: &PlanOrigin,
        result: Result<super::PlanVerdict, String>,
    ) {
        match origin.peer {
            Some(peer) => self.send(
                peer,
                super::PeerMessage::PlanReply { worker: origin.worker, seq: origin.seq, result },
            ),
            None => self.local_plan_reply(now, origin.worker, origin.seq, result),
        }
    }

    /// Fires the leader's deadlines: broker timers, missed heartbeats, GC, services.
    pub(super) fn leader_timeouts(&mut self, now: Millis) {
        let Some(leader) = self.leader.as_mut() else { return };
        leader.broker.handle_tick(now);
        let expired = leader.heartbeats.take_expired(now);
        let gc_due = leader.next_gc <= now;
        if gc_due {
            leader.next_gc = now + Millis(self.config.gc.interval_ms);
        }
        for node_id in expired {
            self.mark_node_down(now, &node_id);
        }
        if gc_due {
            self.collect_garbage(now);
        }
        self.tick_services(now);
    }

    fn tick_services(&mut self, now: Millis) {
        let mut commands = Vec::new();
        for service in &mut self.services {
            if service.poll_timeout().is_some_and(|d| d <= now) {
                commands.extend(service.tick(now, &self.state));
            }
        }
        for command in commands {
            self.propose(command, now, Waiter::Leader);
        }
    }

    /// A node missed its heartbeat past TTL and grace: down, with evaluations for every
    /// job it ran so their allocations are replaced.
    fn mark_node_down(&mut self, now: Millis, node_id: &str) {
        let Some(node) = self.state.node(node_id) else { return };
        if node.status == NodeStatus::Down {
            return;
        }
        let evals = self.node_evals(now, node_id, TriggeredBy::NodeUpdate);
        let command =
            Command::NodeStatus { node_id: node_id.to_owned(), status: NodeStatus::Down, evals };
        self.propose(command, now, Waiter::Leader);
    }

    /// Evaluations for every job with live allocations on the node, and every system
    /// job (which may now run there).
    pub(super) fn node_evals(
        &mut self,
        now: Millis,
        node_id: &str,
        trigger: TriggeredBy,
    ) -> Vec<Evaluation> {
        let mut jobs: Vec<JobKey> = self
            .state
            .node_allocs(node_id)
            .map(|n| {
                let live = n.allocs.values().filter(|a| !a.is_terminal());
                live.map(|a| JobKey::new(&a.namespace, &a.job_id)).collect()
            })
            .unwrap_or_default();
        let system = self
            .state
            .jobs()
            .filter(|j| matches!(j.job_type, JobType::System | JobType::Sysbatch) && !j.stop);
        jobs.extend(system.map(|j| JobKey::of_job(j)));
        jobs.sort();
        jobs.dedup();
        let node_modify_index = self.state.node(node_id).map_or(0, |n| n.modify_index);
        jobs.iter()
            .filter_map(|key| self.job_eval(now, key, trigger))
            .map(|e| Evaluation { node_id: node_id.to_owned(), node_modify_index, ..e })
            .collect()
    }

    /// A pending evaluation of a stored job (none for a template job).
    pub(super) fn job_eval(
        &mut self,
        now: Millis,
        key: &JobKey,
        trigger: TriggeredBy,
    ) -> Option<Evaluation> {
        let job = self.state.job(&key.namespace, &key.id)?.clone();
        let mut eval = self.eval_unless_template(now, &job, trigger)?;
        eval.job_modify_index = job.job_modify_index;
        Some(eval)
    }

    /// Resets a node's heartbeat timer and returns the TTL to give the client.
    pub(super) fn reset_heartbeat(&mut self, now: Millis, node_id: &str) -> u64 {
        let nodes = self.state.node_count();
        let Some(leader) = self.leader.as_mut() else { return 0 };
        let ttl_ms = leader.heartbeat_ttl_ms(nodes, &mut self.rng);
        let deadline = now + Millis(ttl_ms + leader.heartbeat.heartbeat_grace_ms);
        leader.heartbeats.set(node_id, deadline);
        ttl_ms
    }

    /// Stops expecting heartbeats from a node (Nomad's `clearHeartbeatTimer`).
    pub(super) fn clear_heartbeat(&mut self, node_id: &str) {
        if let Some(leader) = self.leader.as_mut() {
            leader.heartbeats.remove(node_id);
        }
    }

    /// Reaps terminal evaluations and their allocations, dead jobs and down nodes past
    /// Nomad's thresholds, in one bounded entry.
    fn collect_garbage(&mut self, now: Millis) {
        let command =
            super::requests::gc_candidates(&self.state, Server::now_ns(now), &self.config.gc);
        if let Command::Reap { eval_ids, alloc_ids, jobs, node_ids } = &command
            && eval_ids.is_empty()
            && alloc_ids.is_empty()
            && jobs.is_empty()
            && node_ids.is_empty()
        {
            return;
        }
        self.propose(command, now, Waiter::Leader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_deadlines_expire_in_node_order() {
        let mut deadlines = HeartbeatDeadlines::default();
        deadlines.set("c", Millis(30));
        deadlines.set("a", Millis(20));
        deadlines.set("b", Millis(10));
        assert_eq!(deadlines.earliest(), Some(Millis(10)));
        // A heartbeat moves the node's deadline; its old one no longer counts.
        deadlines.set("b", Millis(40));
        assert_eq!(
            (deadlines.earliest(), deadlines.get("b")),
            (Some(Millis(20)), Some(Millis(40)))
        );
        assert_eq!(deadlines.take_expired(Millis(19)), Vec::<String>::new());
        assert_eq!(deadlines.take_expired(Millis(30)), vec!["a".to_owned(), "c".to_owned()]);
        assert_eq!((deadlines.get("a"), deadlines.earliest()), (None, Some(Millis(40))));
        assert_eq!(deadlines.take_expired(Millis(40)), vec!["b".to_owned()]);
        assert_eq!(deadlines.earliest(), None);
    }

    #[test]
    fn a_removed_node_never_expires() {
        let mut deadlines = HeartbeatDeadlines::default();
        deadlines.set("a", Millis(10));
        deadlines.set("b", Millis(20));
        deadlines.remove("a");
        deadlines.remove("unknown");
        assert_eq!((deadlines.get("a"), deadlines.earliest()), (None, Some(Millis(20))));
        assert_eq!(deadlines.take_expired(Millis(20)), vec!["b".to_owned()]);
    }
}
