//! A scheduling worker driven in-line: schedule → evaluate plan → commit, with Nomad's
//! retry rules, over a [`State`] the caller owns. The simulation and the benchmark use it
//! directly; a server runs the same steps with the plan going through its plan queue and
//! Raft.
//!
//! Retries: a partially committed plan means the snapshot was stale, so the worker plans
//! again from fresh state, up to [`super::plan_attempts_max`] times; the counter resets
//! whenever an attempt commits something. When attempts run out, the evaluation fails
//! and a blocked evaluation (`max-plan-attempts`) takes over. A pass that could not place
//! everything completes the evaluation and creates a blocked one (`queued-allocs`).

use super::{ScheduleOutput, SchedulerConfig, plan_attempts_max, schedule};
use crate::id::{IdGen, seed_from};
use crate::model::{BlockedContext, EvalStatus, Evaluation, Plan, TriggeredBy};
use crate::plan::{Evaluated, evaluate_plan_owned};
use crate::state::{ApplyOutcome, Command, Snapshot, State};

/// Everything one evaluation did, for tests and traces.
#[derive(Clone, Debug, Default)]
pub struct EvalRun {
    pub attempts: Vec<(Plan, Evaluated)>,
    pub output: ScheduleOutput,
    /// The evaluation as finally stored (complete or failed).
    pub eval: Evaluation,
    pub blocked: Option<Evaluation>,
    /// What the leader must act on: evaluations created, capacity changes.
    pub outcomes: Vec<ApplyOutcome>,
    /// Placements committed over all attempts (kept even when plans are not recorded).
    pub placed: usize,
}

/// The log the worker appends to: the next Raft index and the leader's time.
pub struct Log<'a> {
    pub state: &'a mut State,
    pub next_index: &'a mut u64,
    pub now_ns: i64,
    /// Keep every plan and result in [`EvalRun::attempts`] (tests, traces); without it
    /// the attempts hold empty plans and results, and nothing is copied.
    pub record: bool,
}

impl Log<'_> {
    fn commit(&mut self, command: Command) -> ApplyOutcome {
        *self.next_index += 1;
        self.state
            .apply(*self.next_index, self.now_ns, command)
            .expect("worker commands are never refused")
    }
}

/// Processes `eval`; the first attempt plans against `stale` if given and not older than
/// the evaluation (to provoke the optimistic-concurrency path), later ones against the
/// latest state.
pub fn process(
    log: &mut Log<'_>,
    eval: &Evaluation,
    stale: Option<Snapshot>,
    config: SchedulerConfig,
) -> EvalRun {
    let mut run = EvalRun::default();
    let mut ids = verdict_ids(&eval.id, log.state.latest_index());
    let max = plan_attempts_max(eval.scheduler);
    let mut failures = 0;
    // A worker must plan from state at least as new as the evaluation and every earlier
    // evaluation of its job (Nomad's wait index): an older snapshot may predate the plan
    // of the job's previous evaluation and would place the same allocations again. A server waits for its state to
    // catch up (or nacks); here the caller's state is current, so it is used instead.
    let wait_index = eval.modify_index.max(log.state.job_wait_index(&eval.namespace, &eval.job_id));
    let mut stale = stale.filter(|snap| snap.latest_index() >= wait_index);
    let mut committed_all = false;
    let mut snapshot_index = 0;
    while failures < max {
        let snap = stale.take().unwrap_or_else(|| log.state.snapshot());
        snapshot_index = snap.latest_index();
        let seed = seed_from(&eval.id, snap.latest_index());
        let mut output = schedule(&snap, eval, seed, log.now_ns, config);
        drop(snap); // let the commit below write without copying shared tables
        let plan = std::mem::take(&mut output.plan);
        run.output = output;
        if plan.is_no_op() && run.output.followups.is_empty() {
            committed_all = true;
            break;
        }
        let expected = plan.placement_count();
        let summary = if log.record {
            plan.clone()
        } else {
            Plan { snapshot_index: plan.snapshot_index, ..Plan::default() }
        };
        let job = plan.job.clone();
        let mut evaluated = evaluate_plan_owned(log.state, plan);
        let placed = evaluated.result.node_allocation.values().map(Vec::len).sum::<usize>();
        let full = placed == expected;
        run.placed += placed;
        let result = if log.record {
            evaluated.result.clone()
        } else {
            std::mem::take(&mut evaluated.result)
        };
        let evals = if full { run.output.followups.clone() } else { Vec::new() };
        run.outcomes.push(log.commit(Command::PlanApply { result, job, evals }));
        run.attempts.push((summary, evaluated));
        if full {
            committed_all = true;
            break;
        }
        failures = next_failures(failures, placed);
    }
    finish(log, eval, &mut ids, (committed_all, snapshot_index), &mut run);
    run
}

/// The IDs a worker mints for an evaluation's verdict (its blocked successor), seeded
/// from the evaluation and the state index it started from.
pub fn verdict_ids(eval_id: &str, state_index: u64) -> IdGen {
    IdGen::new(seed_from(eval_id, state_index) ^ 0x5eed)
}

/// The retry counter after an attempt that committed `placed` placements: progress
/// resets it, a fruitless attempt counts against [`super::plan_attempts_max`].
pub fn next_failures(failures: u32, placed: usize) -> u32 {
    if placed > 0 { 0 } else { failures + 1 }
}

/// Stores the evaluation's verdict and, if anything is left unplaced, its blocked
/// successor.
fn finish(
    log: &mut Log<'_>,
    eval: &Evaluation,
    ids: &mut IdGen,
    (committed_all, snapshot_index): (bool, u64),
    run: &mut EvalRun,
) {
    let verdict = Verdict { committed_all, snapshot_index, state_index: log.state.latest_index() };
    let (done, blocked) = verdict.evals(eval, &run.output, ids, log.now_ns);
    let mut evals = vec![done.clone()];
    evals.extend(blocked.clone());
    run.blocked = blocked;
    run.outcomes.push(log.commit(Command::EvalUpsert { evals }));
    run.eval = done;
}

/// How an evaluation ended: whether every plan committed whole, the snapshot its last
/// pass saw, and the state index when it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub committed_all: bool,
    pub snapshot_index: u64,
    pub state_index: u64,
}

impl Verdict {
    /// The evaluation as finally stored (complete or failed) and, if anything is left
    /// unplaced, its blocked successor. The blocked evaluation records the snapshot its
    /// scheduler saw, so the tracker can tell a capacity change it missed from one it
    /// already accounted for.
    pub fn evals(
        self,
        eval: &Evaluation,
        output: &ScheduleOutput,
        ids: &mut IdGen,
        now_ns: i64,
    ) -> (Evaluation, Option<Evaluation>) {
        let mut done = eval.clone();
        done.status = if self.committed_all { EvalStatus::Complete } else { EvalStatus::Failed };
        done.status_description =
            if self.committed_all { String::new() } else { "maximum attempts reached".into() };
        done.failed_tg_allocs = output.failed_tg_allocs.clone();
        done.queued_allocations = output.queued.clone();
        done.snapshot_index = self.state_index;
        if !output.has_failures() && self.committed_all {
            return (done, None);
        }
        let context = BlockedContext {
            failed_tg_allocs: output.failed_tg_allocs.clone(),
            class_eligibility: output.class_eligibility.clone(),
            escaped_computed_class: output.escaped_computed_class,
            quota_limit_reached: String::new(),
        };
        let mut blocked = eval.blocked_eval(ids.next_id(), context, now_ns);
        if !self.committed_all {
            blocked.triggered_by = TriggeredBy::MaxPlanAttempts;
        }
        blocked.snapshot_index = self.snapshot_index;
        done.blocked_eval = blocked.id.clone();
        (done, Some(blocked))
    }
}
