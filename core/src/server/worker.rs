//! Scheduler workers: dequeue an evaluation, wait for state to reach its index, run a
//! scheduling pass (an effect for the runtime), submit the plan, retry on a partial
//! commit, and finish with the evaluation's verdict, following the retry rules of
//! [`crate::scheduler::worker`] (whose functions decide; this file only moves messages).
//!
//! On the leader a worker talks to the broker and the plan queue directly; on a follower
//! the same steps travel as [`PeerMessage`]s to the leader. A worker whose leader changes
//! drops its evaluation: the old leader's broker is gone, and the new one re-enqueued the
//! evaluation from state.

use super::leader::PlanOrigin;
use super::requests::Waiter;
use super::{PassId, PeerMessage, PlanVerdict, SchedulePass, Server, WorkerId};
use crate::id::{IdGen, seed_from};
use crate::model::{Evaluation, Plan, SchedulerType};
use crate::raft::NodeId;
use crate::scheduler::worker::{Verdict, next_failures, verdict_ids};
use crate::scheduler::{ScheduleOutput, plan_attempts_max};
use crate::state::Command;
use crate::time::Millis;

const SCHEDULERS: [SchedulerType; 4] =
    [SchedulerType::Service, SchedulerType::Batch, SchedulerType::System, SchedulerType::Sysbatch];

/// An evaluation a worker holds.
#[derive(Clone, Debug)]
struct Assignment {
    eval: Evaluation,
    token: String,
    /// The server whose broker handed it out.
    leader: NodeId,
    failures: u32,
    snapshot_index: u64,
    output: ScheduleOutput,
    ids: IdGen,
}

#[derive(Clone, Debug, Default)]
enum Step {
    /// Ready to dequeue at `retry_at`.
    #[default]
    Idle,
    Resting {
        retry_at: Millis,
    },
    /// Asked `leader` for an evaluation.
    Dequeuing {
        leader: NodeId,
        deadline: Millis,
    },
    /// Waiting for local state to reach `min_index` before planning.
    WaitingState {
        assignment: Box<Assignment>,
        min_index: u64,
        deadline: Millis,
    },
    Scheduling {
        assignment: Box<Assignment>,
        pass_id: PassId,
    },
    /// The plan is with the applier; `expected` placements were proposed.
    Submitted {
        assignment: Box<Assignment>,
        expected: usize,
        deadline: Millis,
    },
}

#[derive(Clone, Debug, Default)]
pub(super) struct Worker {
    step: Step,
    /// Numbers each request to the leader, so a late reply to an old one is ignored.
    seq: u64,
}

impl Worker {
    pub fn deadline(&self) -> Option<Millis> {
        match &self.step {
            Step::Resting { retry_at } => Some(*retry_at),
            Step::Dequeuing { deadline, .. }
            | Step::WaitingState { deadline, .. }
            | Step::Submitted { deadline, .. } => Some(*deadline),
            Step::Idle | Step::Scheduling { .. } => None,
        }
    }

    /// Drops whatever the worker held (leadership changed).
    pub fn reset(&mut self) {
        self.step = Step::Idle;
        self.seq += 1;
    }
}

impl Server {
    /// Moves every worker that can move without an outside answer.
    pub(super) fn workers_step(&mut self, now: Millis) -> bool {
        let mut moved = false;
        for worker in 0..self.workers.len() as WorkerId {
            moved |= self.worker_step(now, worker);
        }
        moved
    }

    fn worker_step(&mut self, now: Millis, id: WorkerId) -> bool {
        let leader = self.leader_id();
        let worker = &mut self.workers[id as usize];
        // A worker whose evaluation came from a server that no longer leads drops it.
        let stale = match &worker.step {
            Step::WaitingState { assignment, .. }
            | Step::Scheduling { assignment, .. }
            | Step::Submitted { assignment, .. } => Some(assignment.leader) != leader,
            Step::Dequeuing { leader: asked, .. } => Some(*asked) != leader,
            _ => false,
        };
        if stale {
            worker.reset();
        }
        match std::mem::take(&mut worker.step) {
            Step::Idle => self.dequeue(now, id, leader),
            Step::WaitingState { assignment, min_index, deadline } => {
                if self.state.latest_index() >= min_index {
                    self.start_pass(now, id, assignment);
                    true
                } else {
                    self.workers[id as usize].step =
                        Step::WaitingState { assignment, min_index, deadline };
                    false
                }
            }
            step => {
                self.workers[id as usize].step = step;
                false
            }
        }
    }

    fn dequeue(&mut self, now: Millis, id: WorkerId, leader: Option<NodeId>) -> bool {
        let Some(leader) = leader else { return false };
        // Like Nomad, the leader keeps a quarter of its workers (at least one) scheduling
        // and leaves the rest of its time to the applier and the broker.
        let active_on_leader = (self.workers.len() / 4).max(1);
        if leader == self.config.id && id as usize >= active_on_leader {
            return false;
        }
        if leader != self.config.id {
            let worker = &mut self.workers[id as usize];
            worker.seq += 1;
            let seq = worker.seq;
            let deadline = now + Millis(self.config.peer_rpc_timeout_ms);
            worker.step = Step::Dequeuing { leader, deadline };
            self.send(leader, PeerMessage::Dequeue { worker: id, seq });
            return true;
        }
        match self.local_dequeue(now) {
            Some((eval, token, wait_index)) => {
                self.assign(now, id, leader, eval, token, wait_index);
                true
            }
            None => false,
        }
    }

    /// The leader's broker hands out its best evaluation, with the index a worker's
    /// state must reach before planning it (Nomad's wait index, and the last node change
    /// proposed: see [`super::leader::LeaderLoop::node_change_index`]).
    fn local_dequeue(&mut self, now: Millis) -> Option<(Evaluation, String, u64)> {
        let leader = self.leader.as_mut()?;
        let (eval, token) = leader.broker.dequeue(now, &SCHEDULERS)?;
        let wait_index = eval
            .modify_index
            .max(self.state.job_wait_index(&eval.namespace, &eval.job_id))
            .max(leader.node_change_index);
        Some((eval, token, wait_index))
    }

    fn assign(
        &mut self,
        now: Millis,
        id: WorkerId,
        leader: NodeId,
        eval: Evaluation,
        token: String,
        wait_index: u64,
    ) {
        let ids = verdict_ids(&eval.id, self.state.latest_index());
        let assignment = Box::new(Assignment {
            eval,
            token,
            leader,
            failures: 0,
            snapshot_index: 0,
            output: ScheduleOutput::default(),
            ids,
        });
        let deadline = now + Millis(self.config.worker_state_wait_ms);
        self.workers[id as usize].step =
            Step::WaitingState { assignment, min_index: wait_index, deadline };
    }

    fn start_pass(&mut self, now: Millis, id: WorkerId, mut assignment: Box<Assignment>) {
        let snapshot = self.state.snapshot();
        assignment.snapshot_index = snapshot.latest_index();
        self.next_pass += 1;
        let pass_id = self.next_pass;
        let seed = seed_from(&assignment.eval.id, snapshot.latest_index());
        let eval = assignment.eval.clone();
        let config = self.config.scheduler;
        let now_ns = Server::now_ns(now);
        self.passes.push_back(SchedulePass { pass_id, eval, snapshot, seed, now_ns, config });
        self.workers[id as usize].step = Step::Scheduling { assignment, pass_id };
    }

    /// A pass finished: submit its plan, or finish if there is nothing to commit.
    pub(super) fn on_pass_output(
        &mut self,
        now: Millis,
        pass_id: PassId,
        mut output: ScheduleOutput,
    ) {
        // No worker waits for it when leadership changed meanwhile: the output is dropped.
        let Some((id, mut assignment)) = self.take_scheduling(pass_id) else { return };
        let mut plan = std::mem::take(&mut output.plan);
        let followups = output.followups.clone();
        assignment.output = output;
        if plan.is_no_op() && followups.is_empty() {
            return self.finish(now, id as WorkerId, assignment, true);
        }
        plan.eval_id = assignment.eval.id.clone();
        plan.eval_token = assignment.token.clone();
        let expected = plan.placement_count();
        let worker = &mut self.workers[id];
        worker.seq += 1;
        let seq = worker.seq;
        let leader = assignment.leader;
        let deadline = now + Millis(self.config.peer_rpc_timeout_ms);
        worker.step = Step::Submitted { assignment, expected, deadline };
        self.submit(now, leader, id as WorkerId, seq, plan, followups);
    }

    /// A pass that produced no output (it panicked, or the runtime could not run it): the
    /// evaluation goes back to the broker, as Nomad's worker nacks on a scheduler error,
    /// and its delivery limit stops a pass that always fails.
    pub(super) fn on_pass_failed(&mut self, now: Millis, pass_id: PassId) {
        if let Some((id, assignment)) = self.take_scheduling(pass_id) {
            self.nack(now, id as WorkerId, assignment);
        }
    }

    /// The worker running pass `pass_id` and its evaluation, leaving the worker idle.
    fn take_scheduling(&mut self, pass_id: PassId) -> Option<(usize, Box<Assignment>)> {
        let id = self.workers.iter().position(
            |w| matches!(&w.step, Step::Scheduling { pass_id: p, .. } if *p == pass_id),
        )?;
        match std::mem::take(&mut self.workers[id].step) {
            Step::Scheduling { assignment, .. } => Some((id, assignment)),
            _ => None,
        }
    }

    fn submit(
        &mut self,
        now: Millis,
        leader: NodeId,
        worker: WorkerId,
        seq: u64,
        plan: Plan,
        followups: Vec<Evaluation>,
    ) {
        if leader == self.config.id {
            self.submit_plan(now, PlanOrigin { peer: None, worker, seq }, plan, followups);
        } else {
            self.send(
                leader,
                PeerMessage::SubmitPlan { worker, seq, plan: Box::new(plan), followups },
            );
        }
    }

    /// The applier's verdict on a local worker's plan.
    pub(super) fn local_plan_reply(
        &mut self,
        now: Millis,
        worker: WorkerId,
        seq: u64,
        result: Result<PlanVerdict, String>,
    ) {
        let Some(slot) = self.workers.get_mut(worker as usize) else { return };
        if slot.seq != seq {
            return;
        }
        let Step::Submitted { mut assignment, expected, deadline } = std::mem::take(&mut slot.step)
        else {
            return;
        };
        let verdict = match result {
            Ok(verdict) => verdict,
            Err(_) => return self.nack(now, worker, assignment),
        };
        let placed = verdict.placed as usize;
        if placed == expected {
            return self.finish(now, worker, assignment, true);
        }
        assignment.failures = next_failures(assignment.failures, placed);
        if assignment.failures >= plan_attempts_max(assignment.eval.scheduler) {
            return self.finish(now, worker, assignment, false);
        }
        let min_index = verdict.refresh_index.max(verdict.alloc_index);
        let deadline = now.max(deadline) + Millis(self.config.worker_state_wait_ms);
        self.workers[worker as usize].step = Step::WaitingState { assignment, min_index, deadline };
    }

    /// Stores the verdict (the evaluation and any blocked successor) through the leader,
    /// which acks the evaluation once they commit.
    fn finish(
        &mut self,
        now: Millis,
        worker: WorkerId,
        mut assignment: Box<Assignment>,
        committed_all: bool,
    ) {
        let verdict = Verdict {
            committed_all,
            snapshot_index: assignment.snapshot_index,
            state_index: self.state.latest_index(),
        };
        let now_ns = Server::now_ns(now).max(assignment.eval.modify_time);
        let (done, blocked) =
            verdict.evals(&assignment.eval, &assignment.output, &mut assignment.ids, now_ns);
        let mut evals = vec![done];
        evals.extend(blocked);
        let (eval_id, token) = (assignment.eval.id.clone(), assignment.token.clone());
        self.workers[worker as usize].step = Step::Idle;
        if assignment.leader == self.config.id {
            let waiter = Waiter::Finish { eval_id, token };
            self.propose(Command::EvalUpsert { evals }, now, waiter);
        } else {
            self.send(assignment.leader, PeerMessage::Finish { eval_id, token, evals });
        }
    }

    fn nack(&mut self, now: Millis, worker: WorkerId, assignment: Box<Assignment>) {
        self.workers[worker as usize].step = Step::Idle;
        let (eval_id, token) = (assignment.eval.id.clone(), assignment.token.clone());
        if assignment.leader == self.config.id {
            if let Some(leader) = self.leader.as_mut() {
                let _ = leader.broker.handle_nack(now, &eval_id, &token);
            }
        } else {
            self.send(assignment.leader, PeerMessage::Nack { eval_id, token });
        }
    }

    /// Worker deadlines: a resting worker wakes; one left waiting too long gives up.
    pub(super) fn worker_timeouts(&mut self, now: Millis) {
        for id in 0..self.workers.len() {
            let Some(deadline) = self.workers[id].deadline() else { continue };
            if deadline > now {
                continue;
            }
            match std::mem::take(&mut self.workers[id].step) {
                Step::WaitingState { assignment, .. } | Step::Submitted { assignment, .. } => {
                    self.nack(now, id as WorkerId, assignment)
                }
                _ => self.workers[id].reset(),
            }
        }
    }

    /// Worker traffic between servers: the leader's side and the follower's side.
    pub(super) fn on_worker_message(&mut self, now: Millis, from: NodeId, message: PeerMessage) {
        match message {
            PeerMessage::Dequeue { worker, seq } => {
                let eval = self.local_dequeue(now).map(|(e, t, w)| (Box::new(e), t, w));
                self.send(from, PeerMessage::DequeueReply { worker, seq, eval });
            }
            PeerMessage::DequeueReply { worker, seq, eval } => {
                self.on_dequeue_reply(now, from, worker, seq, eval)
            }
            PeerMessage::SubmitPlan { worker, seq, plan, followups } => self.submit_plan(
                now,
                PlanOrigin { peer: Some(from), worker, seq },
                *plan,
                followups,
            ),
            PeerMessage::PlanReply { worker, seq, result } => {
                if self.leader_id() == Some(from) {
                    self.local_plan_reply(now, worker, seq, result);
                }
            }
            PeerMessage::Finish { eval_id, token, evals } => {
                if self.leader.as_ref().is_some_and(|l| l.broker.is_outstanding(&eval_id)) {
                    let waiter = Waiter::Finish { eval_id, token };
                    self.propose(Command::EvalUpsert { evals }, now, waiter);
                }
            }
            PeerMessage::Nack { eval_id, token } => {
                if let Some(leader) = self.leader.as_mut() {
                    let _ = leader.broker.handle_nack(now, &eval_id, &token);
                }
            }
            PeerMessage::Raft { .. }
            | PeerMessage::Forward { .. }
            | PeerMessage::ForwardReply { .. } => {}
        }
    }

    fn on_dequeue_reply(
        &mut self,
        now: Millis,
        from: NodeId,
        worker: WorkerId,
        seq: u64,
        eval: Option<(Box<Evaluation>, String, u64)>,
    ) {
        let Some(slot) = self.workers.get_mut(worker as usize) else { return };
        if slot.seq != seq || !matches!(slot.step, Step::Dequeuing { .. }) {
            // A late answer: give a handed-out evaluation back at once.
            if let Some((eval, token, _)) = eval {
                self.send(from, PeerMessage::Nack { eval_id: eval.id, token });
            }
            return;
        }
        match eval {
            Some((eval, token, wait_index)) => {
                self.assign(now, worker, from, *eval, token, wait_index)
            }
            None => {
                slot.step = Step::Resting { retry_at: now + Millis(self.config.dequeue_retry_ms) }
            }
        }
    }
}
