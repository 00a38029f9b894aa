//! Broker tests: Nomad's queueing rules, and property tests over random operation
//! sequences: every dequeued evaluation is acked or nacked (and every evaluation ends
//! acked, failed or cancelled exactly once), at most one outstanding evaluation per job,
//! no evaluation handed out again while a plan of it is with the applier, and at most
//! one blocked evaluation per job.

use drover_core::broker::blocked::BlockedEvals;
use drover_core::broker::{BrokerConfig, BrokerError, EvalBroker};
use drover_core::model::{EvalStatus, Evaluation, SchedulerType, Timestamp};
use drover_core::time::Millis;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn eval(id: &str, job: &str, priority: i32, create_index: u64) -> Evaluation {
    Evaluation {
        id: id.into(),
        namespace: "default".into(),
        job_id: job.into(),
        priority,
        create_index,
        status: EvalStatus::Pending,
        ..Evaluation::default()
    }
}

const T0: Millis = Millis(1_700_000_000_000);
const SERVICE: &[SchedulerType] = &[SchedulerType::Service];

#[test]
fn priority_then_index_and_one_per_job() {
    let mut broker = EvalBroker::new(BrokerConfig::default());
    broker.handle_enqueue(T0, eval("a", "web", 50, 1)).unwrap();
    broker.handle_enqueue(T0, eval("b", "api", 70, 2)).unwrap();
    broker.handle_enqueue(T0, eval("c", "web", 90, 3)).unwrap();
    broker.handle_enqueue(T0, eval("d", "web", 50, 4)).unwrap();
    let (first, t1) = broker.dequeue(T0, SERVICE).unwrap();
    assert_eq!(first.id, "b", "higher priority first");
    let (second, t2) = broker.dequeue(T0, SERVICE).unwrap();
    assert_eq!(second.id, "a", "web's later evaluations wait behind a");
    assert!(broker.dequeue(T0, SERVICE).is_none());
    assert_eq!(broker.stats().total_pending, 2);
    assert_eq!(
        broker.handle_ack(T0, "a", &t1),
        Err(BrokerError::TokenMismatch { eval_id: "a".into() })
    );
    broker.handle_ack(T0, "a", &t2).unwrap();
    let cancelled = broker.poll_cancelled().unwrap();
    assert_eq!(
        (cancelled.id.as_str(), cancelled.status),
        ("c", EvalStatus::Canceled),
        "older pending cancelled"
    );
    let (next, _) = broker.dequeue(T0, SERVICE).unwrap();
    assert_eq!(next.id, "d", "the newest pending evaluation is promoted");
    broker.handle_ack(T0, "b", &t1).unwrap();
}

#[test]
fn nack_delays_then_fails_after_the_delivery_limit() {
    let mut broker = EvalBroker::new(BrokerConfig::default());
    broker.handle_enqueue(T0, eval("a", "web", 50, 1)).unwrap();
    let mut now = T0;
    let mut delays = Vec::new();
    for _ in 0..3 {
        broker.handle_tick(now);
        let (_, token) = broker.dequeue(now, SERVICE).expect("redelivered once due");
        broker.handle_nack(now, "a", &token).unwrap();
        if let Some(due) = broker.poll_timeout() {
            delays.push(due.as_u64() - now.as_u64());
            now = due;
        }
    }
    assert_eq!(delays, vec![1_000, 20_000], "1 s after the first delivery, then (n-1) x 20 s");
    let failed = broker.poll_failed().expect("third nack fails it");
    assert_eq!(failed.id, "a");
    let follow_up = broker.failed_follow_up(&failed, 5);
    let wait_ms = follow_up.wait.as_millis();
    assert!((60_000..360_000).contains(&wait_ms), "1 min + up to 5 min, got {wait_ms}");
    assert_eq!(follow_up.previous_eval, "a");
}

#[test]
fn unacked_evaluations_time_out_and_wait_until_is_honoured() {
    let mut broker = EvalBroker::new(BrokerConfig::default());
    let mut later = eval("w", "batch", 50, 2);
    later.wait_until = Timestamp((T0.as_u64() as i64 + 30_000) * 1_000_000);
    broker.handle_enqueue(T0, later).unwrap();
    broker.handle_enqueue(T0, eval("a", "web", 50, 1)).unwrap();
    let (_, token) = broker.dequeue(T0, SERVICE).unwrap();
    assert!(broker.dequeue(T0, SERVICE).is_none(), "w waits");
    assert_eq!(broker.poll_timeout(), Some(T0 + Millis(30_000)));
    broker.pause_nack_timeout("a", &token, 1).unwrap();
    broker.handle_tick(T0 + Millis(61_000));
    assert!(broker.is_outstanding("a"), "paused while the plan is queued");
    broker.resume_nack_timeout(T0 + Millis(61_000), "a", &token).unwrap();
    broker.handle_tick(T0 + Millis(122_000));
    assert!(!broker.is_outstanding("a"), "nacked by timeout");
    assert_eq!(
        broker.poll_timeout(),
        Some(T0 + Millis(123_000)),
        "re-enqueued 1 s after the timeout"
    );
    broker.handle_tick(T0 + Millis(123_000));
    let ready: BTreeSet<String> =
        std::iter::from_fn(|| broker.dequeue(T0 + Millis(200_000), SERVICE).map(|(e, _)| e.id))
            .collect();
    assert_eq!(ready, BTreeSet::from(["a".to_string(), "w".to_string()]));
}

#[test]
fn a_nack_while_the_plan_is_with_the_applier_waits_for_its_verdict() {
    let mut broker = EvalBroker::new(BrokerConfig::default());
    broker.handle_enqueue(T0, eval("a", "web", 50, 1)).unwrap();
    let (_, token) = broker.dequeue(T0, SERVICE).unwrap();
    broker.pause_nack_timeout("a", &token, 1).unwrap();
    assert_eq!(
        broker.pause_nack_timeout("a", &token, 1),
        Err(BrokerError::DuplicatePlan { eval_id: "a".into() }),
        "a copy of the plan"
    );
    broker.take_plan(T0, "a", &token).unwrap();
    let nacked = T0 + Millis(10_000);
    broker.handle_nack(nacked, "a", &token).unwrap();
    broker.handle_tick(nacked + Millis(90_000));
    assert!(broker.is_outstanding("a"), "held while the plan may still commit");
    assert_eq!(broker.poll_timeout(), None);
    let verdict = nacked + Millis(90_000);
    broker.resume_nack_timeout(verdict, "a", &token).unwrap();
    assert!(!broker.is_outstanding("a"), "the nack took effect with the verdict");
    assert_eq!(broker.poll_timeout(), Some(verdict + Millis(1_000)), "1 s after the verdict");

    // Nacked while its plan waits in the queue: the applier refuses the plan when it
    // takes it, and the nack takes effect then.
    let now = verdict + Millis(1_000);
    broker.handle_tick(now);
    let (_, token) = broker.dequeue(now, SERVICE).unwrap();
    broker.pause_nack_timeout("a", &token, 1).unwrap();
    broker.handle_nack(now, "a", &token).unwrap();
    assert!(broker.is_outstanding("a"), "the plan is still queued");
    assert_eq!(
        broker.take_plan(now, "a", &token),
        Err(BrokerError::NotOutstanding { eval_id: "a".into() })
    );
    assert!(!broker.is_outstanding("a"));
    assert_eq!(broker.poll_timeout(), Some(now + Millis(20_000)), "the second delivery's delay");
}

#[test]
fn blocked_evaluations_wake_by_class_escape_and_missed_changes() {
    let blocked_eval = |id: &str, job: &str, snapshot_index: u64| {
        let mut e = eval(id, job, 50, snapshot_index);
        e.status = EvalStatus::Blocked;
        e.snapshot_index = snapshot_index;
        e.class_eligibility.insert("linux".into(), true);
        e.class_eligibility.insert("windows".into(), false);
        e
    };
    let mut tracker = BlockedEvals::default();
    tracker.block(blocked_eval("a", "web", 10));
    let mut escaped = blocked_eval("b", "db", 10);
    escaped.escaped_computed_class = true;
    tracker.block(escaped);
    tracker.unblock_class("windows", 11);
    let woken: Vec<String> = tracker.drain_unblocked().into_iter().map(|e| e.id).collect();
    assert_eq!(
        woken,
        ["b"],
        "an escaped evaluation wakes on any change, a captured one not on an ineligible class"
    );
    tracker.unblock_class("gpu", 12);
    assert_eq!(tracker.drain_unblocked().len(), 1, "a class the scheduler never saw may fit");
    tracker.block(blocked_eval("c", "api", 11));
    assert_eq!(
        tracker.drain_unblocked().len(),
        1,
        "a change after its snapshot was missed: released at once"
    );
    tracker.block(blocked_eval("d", "web", 13));
    let cancelled: Vec<String> = tracker.drain_cancelled().into_iter().map(|e| e.id).collect();
    assert!(cancelled.is_empty(), "web's earlier blocked evaluation was already released");
    tracker.block(blocked_eval("e", "web", 14));
    let cancelled: Vec<String> = tracker.drain_cancelled().into_iter().map(|e| e.id).collect();
    assert_eq!(cancelled, ["d"], "one blocked evaluation per job: the older is cancelled");
    assert_eq!(tracker.len(), 1);
}

#[derive(Clone, Debug)]
enum Op {
    Enqueue {
        job: u8,
        priority: u8,
    },
    Dequeue,
    Ack(u8),
    Nack(u8),
    /// A worker submits a plan of an evaluation it holds: its clock stops.
    Submit(u8),
    /// The network delivers a copy of a plan submitted earlier.
    SubmitCopy(u8),
    /// The applier takes a queued plan.
    Take(u8),
    /// The applier's verdict on a plan (or the queue refusing it).
    Verdict(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4u8, 0..3u8).prop_map(|(job, priority)| Op::Enqueue { job, priority }),
        3 => Just(Op::Dequeue),
        2 => any::<u8>().prop_map(Op::Ack),
        1 => any::<u8>().prop_map(Op::Nack),
        2 => any::<u8>().prop_map(Op::Submit),
        1 => any::<u8>().prop_map(Op::SubmitCopy),
        2 => any::<u8>().prop_map(Op::Take),
        2 => any::<u8>().prop_map(Op::Verdict),
        1 => any::<u16>().prop_map(Op::Advance),
    ]
}

/// A plan with the applier: queued, or taken and committing.
struct AtApplier {
    token: String,
    taken: bool,
}

/// A worker population driving the broker, and what the test has seen.
struct Model {
    broker: EvalBroker,
    now: Millis,
    next: u64,
    /// Dequeued and not yet acked or nacked: id → (job, token).
    outstanding: BTreeMap<String, (String, String)>,
    /// Evaluations with a plan at the applier, which may still commit.
    at_applier: BTreeMap<String, AtApplier>,
    /// Every plan submitted, for copies: (id, token, number).
    submitted: Vec<(String, String, u64)>,
    /// How each evaluation left the broker.
    ended: BTreeMap<String, &'static str>,
    enqueued: BTreeSet<String>,
}

impl Model {
    fn new() -> Model {
        Model {
            broker: EvalBroker::new(BrokerConfig::default()),
            now: T0,
            next: 0,
            outstanding: BTreeMap::new(),
            at_applier: BTreeMap::new(),
            submitted: Vec::new(),
            ended: BTreeMap::new(),
            enqueued: BTreeSet::new(),
        }
    }

    fn end(&mut self, id: String, how: &'static str) -> Result<(), TestCaseError> {
        prop_assert!(self.ended.insert(id, how).is_none(), "an evaluation ended twice");
        Ok(())
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(e) = self.broker.poll_failed() {
            self.end(e.id, "failed")?;
        }
        while let Some(e) = self.broker.poll_cancelled() {
            self.end(e.id, "cancelled")?;
        }
        // A nack deadline may have taken an evaluation back from its worker.
        let broker = &self.broker;
        self.outstanding.retain(|id, _| broker.is_outstanding(id));
        Ok(())
    }

    fn dequeue(&mut self) -> Result<bool, TestCaseError> {
        let Some((e, token)) = self.broker.dequeue(self.now, SERVICE) else { return Ok(false) };
        prop_assert!(!self.at_applier.contains_key(&e.id), "{} handed out during its plan", e.id);
        let busy = self.outstanding.values().any(|(job, _)| *job == e.job_id);
        prop_assert!(!busy, "two outstanding evaluations for {}", e.job_id);
        self.outstanding.insert(e.id.clone(), (e.job_id.clone(), token));
        Ok(true)
    }

    /// A worker acks or nacks an evaluation it holds; it acks only after its plan's
    /// verdict, but may nack (give up waiting) while the plan is at the applier.
    fn finish(&mut self, k: usize, ack: bool) -> Result<(), TestCaseError> {
        let held: Vec<&String> = (self.outstanding.keys())
            .filter(|id| !ack || !self.at_applier.contains_key(*id))
            .collect();
        let Some(id) = held.get(k % held.len().max(1)).map(|id| (*id).clone()) else {
            return Ok(());
        };
        let (_, token) = self.outstanding.remove(&id).expect("chosen from the map");
        if ack {
            self.broker.handle_ack(self.now, &id, &token).expect("the worker holds the token");
            self.end(id, "acked")
        } else {
            self.broker.handle_nack(self.now, &id, &token).expect("the worker holds the token");
            Ok(())
        }
    }

    /// A worker holding an evaluation submits a plan (one at a time), numbered anew.
    fn submit(&mut self, k: usize) {
        let held = self.outstanding.iter().filter(|(id, _)| !self.at_applier.contains_key(*id));
        let held: Vec<(String, String)> =
            held.map(|(id, (_, token))| (id.clone(), token.clone())).collect();
        let Some((id, token)) = held.get(k % held.len().max(1)).cloned() else { return };
        let seq = self.submitted.len() as u64 + 1;
        self.broker.pause_nack_timeout(&id, &token, seq).expect("the worker holds it");
        self.submitted.push((id.clone(), token.clone(), seq));
        self.at_applier.insert(id, AtApplier { token, taken: false });
    }

    /// A copy of an earlier submission arrives: always refused.
    fn submit_copy(&mut self, k: usize) -> Result<(), TestCaseError> {
        let Some((id, token, seq)) = self.submitted.get(k % self.submitted.len().max(1)).cloned()
        else {
            return Ok(());
        };
        let refused = self.broker.pause_nack_timeout(&id, &token, seq).is_err();
        prop_assert!(refused, "a copy of plan {} of {} was taken", seq, id);
        Ok(())
    }

    /// The applier takes a queued plan; refused when its worker nacked meanwhile.
    fn take(&mut self, k: usize) -> Result<(), TestCaseError> {
        let queued: Vec<String> =
            self.at_applier.iter().filter(|(_, a)| !a.taken).map(|(id, _)| id.clone()).collect();
        let Some(id) = queued.get(k % queued.len().max(1)).cloned() else { return Ok(()) };
        let token = self.at_applier[&id].token.clone();
        let taken = self.broker.take_plan(self.now, &id, &token).is_ok();
        prop_assert_eq!(taken, self.outstanding.contains_key(&id), "taken iff still held");
        match taken {
            true => self.at_applier.get_mut(&id).expect("chosen from the map").taken = true,
            false => drop(self.at_applier.remove(&id)),
        }
        Ok(())
    }

    /// The applier answers a plan; its worker, if it still waits, goes on holding it.
    fn verdict(&mut self, k: usize) {
        let Some(id) = self.at_applier.keys().nth(k % self.at_applier.len().max(1)).cloned() else {
            return;
        };
        let token = self.at_applier.remove(&id).expect("chosen from the map").token;
        self.broker.resume_nack_timeout(self.now, &id, &token).expect("held until the verdict");
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Enqueue { job, priority } => {
                self.next += 1;
                let id = format!("e{}", self.next);
                self.enqueued.insert(id.clone());
                let e = eval(&id, &format!("j{job}"), i32::from(*priority) * 10, self.next);
                self.broker.handle_enqueue(self.now, e).expect("room");
            }
            Op::Dequeue => drop(self.dequeue()?),
            Op::Ack(k) => self.finish(usize::from(*k), true)?,
            Op::Nack(k) => self.finish(usize::from(*k), false)?,
            Op::Submit(k) => self.submit(usize::from(*k)),
            Op::SubmitCopy(k) => self.submit_copy(usize::from(*k))?,
            Op::Take(k) => self.take(usize::from(*k))?,
            Op::Verdict(k) => self.verdict(usize::from(*k)),
            Op::Advance(ms) => {
                self.now = self.now + Millis(u64::from(*ms) * 10);
                self.broker.handle_tick(self.now);
            }
        }
        self.drain()
    }

    /// Liveness: workers that ack everything empty the broker.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            if !self.at_applier.is_empty() {
                self.verdict(0);
            } else if !self.outstanding.is_empty() {
                self.finish(0, true)?;
            } else if !self.dequeue()? {
                match self.broker.poll_timeout() {
                    Some(due) => {
                        self.now = due.max(self.now);
                        self.broker.handle_tick(self.now);
                    }
                    None => break,
                }
            }
            self.drain()?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_evaluation_ends_once_and_jobs_have_one_outstanding(ops in proptest::collection::vec(op(), 1..80)) {
        let mut model = Model::new();
        for op in &ops {
            model.step(op)?;
        }
        model.settle()?;
        let stats = model.broker.stats();
        prop_assert_eq!(stats.total_ready + stats.total_unacked + stats.total_pending + stats.total_delayed, 0);
        let done: BTreeSet<String> = model.ended.keys().cloned().collect();
        prop_assert_eq!(done, model.enqueued, "every evaluation ends acked, failed or cancelled");
    }

    #[test]
    fn at_most_one_blocked_evaluation_per_job(ops in proptest::collection::vec((0..4u8, any::<bool>(), 0..3u8), 1..60)) {
        let mut blocked = BlockedEvals::default();
        let mut seen = BTreeSet::new();
        let mut ended = BTreeSet::new();
        for (n, (job, unblock, class)) in ops.iter().enumerate() {
            let index = n as u64 + 1;
            if *unblock {
                blocked.unblock_class(&format!("c{class}"), index);
            } else {
                let mut e = eval(&format!("b{n}"), &format!("j{job}"), 50, index);
                e.status = EvalStatus::Blocked;
                e.snapshot_index = index;
                e.class_eligibility.insert(format!("c{class}"), true);
                e.class_eligibility.insert(format!("c{}", (class + 1) % 3), false);
                seen.insert(e.id.clone());
                blocked.block(e);
            }
            for e in blocked.drain_unblocked().into_iter().chain(blocked.drain_cancelled()) {
                prop_assert!(ended.insert(e.id), "an evaluation left the tracker twice");
            }
            prop_assert!(blocked.len() <= 4, "at most one per job");
            let stats = blocked.stats();
            prop_assert_eq!(stats.total_blocked, blocked.len());
        }
        prop_assert_eq!(ended.len() + blocked.len(), seen.len(), "nothing lost");
    }
}
