//! The evaluation broker and the blocked-evaluation tracker (leader only).
//!
//! [`EvalBroker`] follows Nomad's `eval_broker.go`, rebuilt as a sans-IO machine:
//! - one ready queue per scheduler type, ordered by priority (high first), then create
//!   index (old first); ties across types go to the lower create index;
//! - at most one ready-or-unacked evaluation per job; later ones wait in the job's
//!   pending set, and on ack the newest is promoted while the older are cancelled;
//! - a dequeued evaluation must be acked or nacked before its nack deadline (60 s,
//!   paused while its plan is with the applier), else it is nacked for the worker;
//! - a nack that arrives while the evaluation's plan is with the applier takes effect
//!   only when the plan's verdict is in: handed out again before, the evaluation would
//!   be planned on a state without that plan, and placed a second time;
//! - a nack re-enqueues after 1 s for the first delivery, then (n−1) × 20 s; after the
//!   delivery limit (3) the evaluation goes to the failed queue, and the leader stores it
//!   as failed with a `failed-follow-up` evaluation delayed 1 min + rand(0–5 min);
//! - evaluations with `Wait`/`WaitUntil` sit in a delay queue until due.
//!
//! Time: the broker's `now` is the leader's unix time in milliseconds, so `WaitUntil`
//! (unix ns) compares directly. Nothing here sleeps: [`EvalBroker::poll_timeout`] says
//! when [`EvalBroker::handle_tick`] must next run.
//!
//! Draining order, after any `handle_*` call: [`EvalBroker::poll_failed`] (store as
//! failed, create the follow-up), then [`EvalBroker::poll_cancelled`] (store as
//! canceled); workers call [`EvalBroker::dequeue`] whenever they are idle.

pub mod blocked;

use crate::id::IdGen;
use crate::model::{DurationNs, EvalStatus, Evaluation, SchedulerType};
use crate::time::Millis;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    pub nack_timeout_ms: u64,
    pub initial_nack_delay_ms: u64,
    pub subsequent_nack_delay_ms: u64,
    pub delivery_limit: u32,
    /// Evaluations the broker tracks at once (ready, unacked, pending, delayed).
    pub evals_tracked_max: usize,
    pub failed_followup_base_ms: u64,
    pub failed_followup_jitter_ms: u64,
    pub seed: u64,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            nack_timeout_ms: 60_000,
            initial_nack_delay_ms: 1_000,
            subsequent_nack_delay_ms: 20_000,
            delivery_limit: 3,
            evals_tracked_max: 1_000_000,
            failed_followup_base_ms: 60_000,
            failed_followup_jitter_ms: 300_000,
            seed: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerError {
    Full {
        evals_tracked_max: usize,
    },
    NotOutstanding {
        eval_id: String,
    },
    TokenMismatch {
        eval_id: String,
    },
    Duplicate {
        eval_id: String,
    },
    /// A copy of a plan already submitted (the network duplicated it): another plan of
    /// the evaluation is with the applier (a worker has one there at a time), or this
    /// one's number is not past the last one taken.
    DuplicatePlan {
        eval_id: String,
    },
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::Full { evals_tracked_max } => {
                write!(f, "eval broker full ({evals_tracked_max} evaluations)")
            }
            BrokerError::NotOutstanding { eval_id } => {
                write!(f, "evaluation ID not found: {eval_id}")
            }
            BrokerError::TokenMismatch { eval_id } => {
                write!(f, "token does not match for evaluation ID {eval_id}")
            }
            BrokerError::Duplicate { eval_id } => write!(f, "evaluation {eval_id} already tracked"),
            BrokerError::DuplicatePlan { eval_id } => {
                write!(f, "a copy of a plan of evaluation {eval_id} already submitted")
            }
        }
    }
}

/// Ready order: priority high first, then create index, then ID.
type ReadyKey = (Reverse<i32>, u64, String);
type JobKey = (String, String);

#[derive(Clone, Debug)]
struct Entry {
    eval: Evaluation,
    deliveries: u32,
}

#[derive(Clone, Debug)]
struct Unacked {
    token: String,
    clock: NackClock,
    /// The number of the last plan of this delivery that was submitted (0: none yet).
    plan_seq_max: u64,
}

/// Where a dequeued evaluation's nack clock stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NackClock {
    /// The worker must ack or nack by then.
    Running { deadline: Millis },
    /// Its plan is with the applier: no deadline.
    Paused,
    /// Its worker nacked while its plan was with the applier: the nack takes effect when
    /// the plan's verdict is in.
    PausedNacked,
}

impl NackClock {
    fn deadline(self) -> Option<Millis> {
        match self {
            NackClock::Running { deadline } => Some(deadline),
            NackClock::Paused | NackClock::PausedNacked => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    pub total_ready: usize,
    pub total_unacked: usize,
    pub total_pending: usize,
    pub total_delayed: usize,
    pub total_failed: usize,
}

#[derive(Clone, Debug)]
pub struct EvalBroker {
    config: BrokerConfig,
    entries: BTreeMap<String, Entry>,
    ready: BTreeMap<SchedulerType, BTreeSet<ReadyKey>>,
    /// The job's one ready-or-unacked (or nack-delayed) evaluation.
    job_owner: BTreeMap<JobKey, String>,
    pending: BTreeMap<JobKey, BTreeSet<(u64, String)>>,
    unacked: BTreeMap<String, Unacked>,
    delayed: BTreeSet<(Millis, String)>,
    failed: VecDeque<Evaluation>,
    cancelled: VecDeque<Evaluation>,
    ids: IdGen,
}

impl EvalBroker {
    pub fn new(config: BrokerConfig) -> EvalBroker {
        EvalBroker {
            config,
            entries: BTreeMap::new(),
            ready: BTreeMap::new(),
            job_owner: BTreeMap::new(),
            pending: BTreeMap::new(),
            unacked: BTreeMap::new(),
            delayed: BTreeSet::new(),
            failed: VecDeque::new(),
            cancelled: VecDeque::new(),
            ids: IdGen::new(config.seed),
        }
    }

    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            total_ready: self.ready.values().map(BTreeSet::len).sum(),
            total_unacked: self.unacked.len(),
            total_pending: self.pending.values().map(BTreeSet::len).sum(),
            total_delayed: self.delayed.len(),
            total_failed: self.failed.len(),
        }
    }

    /// Accepts a pending evaluation. Its job's outstanding one, if any, keeps priority;
    /// this one waits behind it.
    pub fn handle_enqueue(&mut self, now: Millis, eval: Evaluation) -> Result<(), BrokerError> {
        if self.entries.contains_key(&eval.id) {
            return Err(BrokerError::Duplicate { eval_id: eval.id });
        }
        if self.entries.len() >= self.config.evals_tracked_max {
            return Err(BrokerError::Full { evals_tracked_max: self.config.evals_tracked_max });
        }
        let due = due_time(now, &eval);
        let id = eval.id.clone();
        self.entries.insert(id.clone(), Entry { eval, deliveries: 0 });
        if due > now {
            self.delayed.insert((due, id));
        } else {
            self.make_ready(id);
        }
        Ok(())
    }

    /// Routes a due evaluation: to the ready queue if its job has nothing outstanding,
    /// else to the job's pending set.
    fn make_ready(&mut self, id: String) {
        let eval = &self.entries[&id].eval;
        let job = (eval.namespace.clone(), eval.job_id.clone());
        match self.job_owner.get(&job) {
            Some(owner) if *owner != id => {
                let key = (eval.create_index, id);
                self.pending.entry(job).or_default().insert(key);
            }
            _ => {
                let key = (Reverse(eval.priority), eval.create_index, id.clone());
                self.ready.entry(eval.scheduler).or_default().insert(key);
                self.job_owner.insert(job, id);
            }
        }
    }

    /// Hands out the best ready evaluation among `schedulers`, with a fresh token; the
    /// worker must ack or nack it before `now + nack_timeout`.
    pub fn dequeue(
        &mut self,
        now: Millis,
        schedulers: &[SchedulerType],
    ) -> Option<(Evaluation, String)> {
        let (scheduler, key) = schedulers
            .iter()
            .filter_map(|s| self.ready.get(s).and_then(|q| q.first()).map(|k| (*s, k.clone())))
            .min_by(|a, b| a.1.cmp(&b.1))?;
        self.ready.get_mut(&scheduler).expect("queue exists").remove(&key);
        let id = key.2;
        let token = self.ids.next_id();
        let clock = NackClock::Running { deadline: now + Millis(self.config.nack_timeout_ms) };
        self.unacked.insert(id.clone(), Unacked { token: token.clone(), clock, plan_seq_max: 0 });
        let entry = self.entries.get_mut(&id).expect("ready evals are tracked");
        entry.deliveries += 1;
        Some((entry.eval.clone(), token))
    }

    fn check_token(&self, id: &str, token: &str) -> Result<(), BrokerError> {
        match self.unacked.get(id) {
            None => Err(BrokerError::NotOutstanding { eval_id: id.to_owned() }),
            Some(u) if u.token != token => {
                Err(BrokerError::TokenMismatch { eval_id: id.to_owned() })
            }
            Some(_) => Ok(()),
        }
    }

    /// The evaluation was processed: forget it, cancel older pending evaluations of its
    /// job and promote the newest.
    pub fn handle_ack(&mut self, _now: Millis, id: &str, token: &str) -> Result<(), BrokerError> {
        self.check_token(id, token)?;
        self.unacked.remove(id);
        let entry = self.entries.remove(id).expect("unacked evals are tracked");
        self.release_job(&entry.eval);
        Ok(())
    }

    /// The job's outstanding evaluation is gone: promote the newest pending one.
    fn release_job(&mut self, eval: &Evaluation) {
        let job = (eval.namespace.clone(), eval.job_id.clone());
        self.job_owner.remove(&job);
        let Some(mut waiting) = self.pending.remove(&job) else { return };
        let newest = waiting.pop_last();
        for (_, older) in waiting {
            let mut cancelled =
                self.entries.remove(&older).expect("pending evals are tracked").eval;
            cancelled.status = EvalStatus::Canceled;
            cancelled.status_description = "canceled after more recent eval was processed".into();
            self.cancelled.push_back(cancelled);
        }
        if let Some((_, id)) = newest {
            self.make_ready(id);
        }
    }

    /// The worker gave up: re-enqueue after a delay, or fail after the delivery limit.
    /// While the evaluation's plan is with the applier, the nack waits for its verdict
    /// (see [`EvalBroker::resume_nack_timeout`]).
    pub fn handle_nack(&mut self, now: Millis, id: &str, token: &str) -> Result<(), BrokerError> {
        self.check_token(id, token)?;
        let unacked = self.unacked.get_mut(id).expect("checked");
        if unacked.clock.deadline().is_none() {
            unacked.clock = NackClock::PausedNacked;
            return Ok(());
        }
        self.take_back(now, id);
        Ok(())
    }

    /// Takes a dequeued evaluation back from its worker.
    fn take_back(&mut self, now: Millis, id: &str) {
        self.unacked.remove(id);
        self.requeue_or_fail(now, id);
    }

    fn requeue_or_fail(&mut self, now: Millis, id: &str) {
        let deliveries = self.entries[id].deliveries;
        if deliveries >= self.config.delivery_limit {
            let entry = self.entries.remove(id).expect("tracked");
            self.release_job(&entry.eval);
            self.failed.push_back(entry.eval);
            return;
        }
        let delay = if deliveries <= 1 {
            self.config.initial_nack_delay_ms
        } else {
            u64::from(deliveries - 1) * self.config.subsequent_nack_delay_ms
        };
        // The job stays owned by this evaluation while it waits out the delay.
        self.delayed.insert((now + Millis(delay), id.to_owned()));
    }

    /// Plan `plan_seq` of the evaluation (its worker numbers its requests) joins the
    /// applier's queue: the nack clock stops until its verdict
    /// ([`EvalBroker::resume_nack_timeout`]). A copy is refused: a worker has one plan
    /// with the applier at a time and numbers each anew, and a copy applied after its
    /// original's verdict would write the plan again over newer state.
    pub fn pause_nack_timeout(
        &mut self,
        id: &str,
        token: &str,
        plan_seq: u64,
    ) -> Result<(), BrokerError> {
        self.check_token(id, token)?;
        let unacked = self.unacked.get_mut(id).expect("checked");
        if unacked.clock.deadline().is_none() || plan_seq <= unacked.plan_seq_max {
            return Err(BrokerError::DuplicatePlan { eval_id: id.to_owned() });
        }
        unacked.plan_seq_max = plan_seq;
        unacked.clock = NackClock::Paused;
        Ok(())
    }

    /// The applier takes the evaluation's plan from its queue. Refused when the worker
    /// nacked while the plan waited: the nack takes effect now, and the plan must not be
    /// applied (its worker no longer holds the evaluation).
    pub fn take_plan(&mut self, now: Millis, id: &str, token: &str) -> Result<(), BrokerError> {
        self.check_token(id, token)?;
        if self.unacked[id].clock == NackClock::PausedNacked {
            self.take_back(now, id);
            return Err(BrokerError::NotOutstanding { eval_id: id.to_owned() });
        }
        Ok(())
    }

    /// The plan's verdict is in: the nack clock runs again, or a nack that came while it
    /// was paused takes effect now.
    pub fn resume_nack_timeout(
        &mut self,
        now: Millis,
        id: &str,
        token: &str,
    ) -> Result<(), BrokerError> {
        self.check_token(id, token)?;
        let unacked = self.unacked.get_mut(id).expect("checked");
        if unacked.clock == NackClock::PausedNacked {
            self.take_back(now, id);
        } else {
            let deadline = now + Millis(self.config.nack_timeout_ms);
            unacked.clock = NackClock::Running { deadline };
        }
        Ok(())
    }

    /// Expires nack deadlines and releases delayed evaluations that are due.
    pub fn handle_tick(&mut self, now: Millis) {
        let expired: Vec<String> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.clock.deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.take_back(now, &id);
        }
        while let Some((due, _)) = self.delayed.first() {
            if *due > now {
                break;
            }
            let (_, id) = self.delayed.pop_first().expect("checked non-empty");
            self.make_ready(id);
        }
    }

    /// When `handle_tick` must next run, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let nack = self.unacked.values().filter_map(|u| u.clock.deadline()).min();
        let delayed = self.delayed.first().map(|(due, _)| *due);
        nack.into_iter().chain(delayed).min()
    }

    /// Evaluations that hit the delivery limit: store them as failed.
    #[must_use]
    pub fn poll_failed(&mut self) -> Option<Evaluation> {
        self.failed.pop_front()
    }

    /// Pending evaluations superseded by a newer one of the same job.
    #[must_use]
    pub fn poll_cancelled(&mut self) -> Option<Evaluation> {
        self.cancelled.pop_front()
    }

    /// The follow-up for a failed evaluation, delayed base + rand(jitter) (Nomad: 1 min +
    /// up to 5 min), with an ID from the broker's seeded stream.
    pub fn failed_follow_up(&mut self, failed: &Evaluation, now_ns: i64) -> Evaluation {
        let jitter = self.ids.next_u64() % self.config.failed_followup_jitter_ms.max(1);
        let wait = DurationNs::from_millis((self.config.failed_followup_base_ms + jitter) as i64);
        failed.failed_follow_up_eval(self.ids.next_id(), wait, now_ns)
    }

    /// Whether `id` is dequeued and not yet acked or nacked.
    pub fn is_outstanding(&self, id: &str) -> bool {
        self.unacked.contains_key(id)
    }
}

/// When an evaluation may be handed out: after `WaitUntil` (unix ns) or `Wait` from now.
fn due_time(now: Millis, eval: &Evaluation) -> Millis {
    let until = Millis((eval.wait_until.0.max(0) / 1_000_000) as u64);
    let after_wait = now + Millis(eval.wait.as_millis());
    until.max(after_wait)
}
