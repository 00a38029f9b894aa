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
use crate::model::{BlockedContext, EvalStatus, Evaluation, Job, Plan, TriggeredBy};
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
    let mut work = EvalWork::new(log.state, eval, log.record);
    let mut stale = stale.filter(|snap| work.can_plan_on(snap));
    while work.wants_plan() {
        let snap = stale.take().unwrap_or_else(|| log.state.snapshot());
        let plan = work.plan(&snap, log.now_ns, config);
        drop(snap); // let the commit below write without copying shared tables
        if let Some(plan) = plan {
            let checked = work.evaluate(log.state, plan);
            work.commit(log, checked);
        }
    }
    work.finish(log)
}

/// One evaluation in a worker's hands, in the steps a server splits between its
/// scheduler workers ([`EvalWork::plan`], on any snapshot new enough) and its plan
/// applier ([`EvalWork::evaluate`] and [`EvalWork::commit`], against the latest state).
/// [`process`] runs the steps in-line; a caller may plan several evaluations on one
/// snapshot at once and commit them one by one, as Nomad's workers and applier do.
pub struct EvalWork {
    eval: Evaluation,
    ids: IdGen,
    attempts_max: u32,
    /// Attempts in a row that committed nothing.
    failures: u32,
    /// A worker must plan from state at least as new as the evaluation and every earlier
    /// evaluation of its job (Nomad's wait index): an older snapshot may predate the plan
    /// of the job's previous evaluation and would place the same allocations again.
    wait_index: u64,
    committed_all: bool,
    snapshot_index: u64,
    record: bool,
    run: EvalRun,
}

/// A plan the applier has re-checked, with what the worker needs to judge the result.
pub struct Checked {
    /// The plan itself when recording, else only its snapshot index.
    summary: Plan,
    job: Option<Job>,
    placements_expected: usize,
    evaluated: Evaluated,
}

impl EvalWork {
    /// Takes `eval` on; `state` is the latest state (its index seeds the IDs minted when
    /// the evaluation is finished). `record` keeps every plan and result in the run.
    pub fn new(state: &State, eval: &Evaluation, record: bool) -> EvalWork {
        EvalWork {
            eval: eval.clone(),
            ids: verdict_ids(&eval.id, state.latest_index()),
            attempts_max: plan_attempts_max(eval.scheduler),
            failures: 0,
            wait_index: eval.modify_index.max(state.job_wait_index(&eval.namespace, &eval.job_id)),
            committed_all: false,
            snapshot_index: 0,
            record,
            run: EvalRun::default(),
        }
    }

    /// Whether `snap` is new enough to plan from. A server waits for its state to catch
    /// up (or nacks); an in-line caller's state is current, so it plans on that instead.
    pub fn can_plan_on(&self, snap: &Snapshot) -> bool {
        snap.latest_index() >= self.wait_index
    }

    /// Whether another attempt is due: nothing committed in full yet, attempts left.
    pub fn wants_plan(&self) -> bool {
        !self.committed_all && self.failures < self.attempts_max
    }

    /// Schedules the evaluation on `snap` (which [`EvalWork::can_plan_on`] accepts).
    /// `None`: the pass has nothing to commit, and the evaluation is done.
    pub fn plan(&mut self, snap: &Snapshot, now_ns: i64, config: SchedulerConfig) -> Option<Plan> {
        self.snapshot_index = snap.latest_index();
        let seed = seed_from(&self.eval.id, snap.latest_index());
        let mut output = schedule(snap, &self.eval, seed, now_ns, config);
        let plan = std::mem::take(&mut output.plan);
        self.run.output = output;
        if plan.is_no_op() && self.run.output.followups.is_empty() {
            self.committed_all = true;
            return None;
        }
        Some(plan)
    }

    /// The applier's re-check of `plan` against `state`, the latest state.
    pub fn evaluate(&self, state: &State, plan: Plan) -> Checked {
        let summary = if self.record {
            plan.clone()
        } else {
            Plan { snapshot_index: plan.snapshot_index, ..Plan::default() }
        };
        let job = plan.job.clone();
        let placements_expected = plan.placement_count();
        Checked { summary, job, placements_expected, evaluated: evaluate_plan_owned(state, plan) }
    }

    /// Commits what the applier accepted. A partial commit means the snapshot was stale:
    /// the next attempt plans again from fresh state.
    pub fn commit(&mut self, log: &mut Log<'_>, checked: Checked) {
        let Checked { summary, job, placements_expected, mut evaluated } = checked;
        let placed = evaluated.result.node_allocation.values().map(Vec::len).sum::<usize>();
        let full = placed == placements_expected;
        self.run.placed += placed;
        let result = if self.record {
            evaluated.result.clone()
        } else {
            std::mem::take(&mut evaluated.result)
        };
        let evals = if full { self.run.output.followups.clone() } else { Vec::new() };
        self.run.outcomes.push(log.commit(Command::PlanApply { result, job, evals }));
        self.run.attempts.push((summary, evaluated));
        if full {
            self.committed_all = true;
        } else {
            self.failures = next_failures(self.failures, placed);
        }
    }

    /// Stores the evaluation's verdict and, if anything is left unplaced, its blocked
    /// successor (see [`Verdict::evals`]).
    pub fn finish(mut self, log: &mut Log<'_>) -> EvalRun {
        let verdict = Verdict {
            committed_all: self.committed_all,
            snapshot_index: self.snapshot_index,
            state_index: log.state.latest_index(),
        };
        let (done, blocked) =
            verdict.evals(&self.eval, &self.run.output, &mut self.ids, log.now_ns);
        let mut evals = vec![done.clone()];
        evals.extend(blocked.clone());
        self.run.blocked = blocked;
        self.run.outcomes.push(log.commit(Command::EvalUpsert { evals }));
        self.run.eval = done;
        self.run
    }
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
        if !output.deployment_id.is_empty() {
            done.deployment_id = output.deployment_id.clone();
        }
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
