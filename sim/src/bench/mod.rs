//! Scheduling benchmarks: C1M-core and single-evaluation latency.
//!
//! Both run the real pipeline in one process without Raft: jobs are registered through
//! the state machine, their evaluations go through the [`EvalBroker`], scheduler workers
//! (one thread each) plan a batch of them at once on one immutable snapshot, the single
//! plan applier re-checks each plan against the latest state and the state machine
//! applies what fits (a plan made stale by its batch-mates is partly refused, and its
//! worker plans again from fresh state, by the worker's retry rules); the broker is then
//! acked. Log indexes and leader time are simulated; wall time is measured around the
//! whole loop and, per evaluation, from its dequeue to its ack. C1M-core also prints
//! where the time went (planning, plan re-check, state writes) and checks that every
//! placement is in state and no node is over-committed.
//!
//! ```text
//! drover-bench c1m-core [--nodes 5000] [--jobs 1000] [--count 1000] [--workers cores-1]
//! drover-bench eval-latency [--nodes 5000] [--jobs 1000] [--count 10] [--workers cores-1]
//! ```

pub mod c1m;
pub mod store;

use drover_core::broker::{BrokerConfig, EvalBroker};
use drover_core::id::IdGen;
use drover_core::model::{
    ComparableResources, Constraint, DriverInfo, EvalStatus, Evaluation, Job, JobType, Node,
    NodeStatus, Plan, Resources, SchedulerType, Task, TaskGroup, TriggeredBy,
};
use drover_core::scheduler::SchedulerConfig;
use drover_core::scheduler::worker::{EvalWork, Log};
use drover_core::state::{Command, State};
use drover_core::time::Millis;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Leader time at the start of a run (unix ns); it advances 1 ms per evaluation.
const START_NS: i64 = 1_700_000_000_000_000_000;

/// The shape of a run.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub nodes: usize,
    pub jobs: usize,
    pub count: usize,
    /// Scheduler workers: evaluations planned at once, one thread each (default: one per
    /// core but the applier's; on 2 cores a second planner only competes with the applier
    /// and with page faults, and measured slower).
    pub workers: usize,
}

/// Node classes (CPU MHz, memory MB), cycled over the cluster so it is heterogeneous.
const CLASSES: [(&str, i64, i64); 4] = [
    ("small", 16_000, 32_768),
    ("medium", 32_000, 65_536),
    ("large", 48_000, 98_304),
    ("xlarge", 64_000, 131_072),
];

fn node_id(i: usize) -> String {
    format!("node-{i:05}")
}

fn node(i: usize) -> Node {
    let (class, cpu, mem) = CLASSES[i % CLASSES.len()];
    let mut node = Node {
        id: node_id(i),
        name: node_id(i),
        datacenter: format!("dc{}", i % 3 + 1),
        node_class: class.into(),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    node.node_resources.cpu.cpu_shares = cpu;
    node.node_resources.memory.memory_mb = mem;
    node.node_resources.disk.disk_mb = 500_000;
    node.reserved_resources.cpu.cpu_shares = 500;
    node.reserved_resources.memory.memory_mb = 1024;
    node.attributes.insert("kernel.name".into(), "linux".into());
    node.attributes
        .insert("cpu.arch".into(), if i.is_multiple_of(10) { "arm64" } else { "amd64" }.into());
    node.attributes.insert("unique.hostname".into(), node.id.clone());
    node.meta.insert("rack".into(), format!("r{}", i % 40));
    node.drivers.insert(
        "docker".into(),
        DriverInfo { detected: true, healthy: true, ..DriverInfo::default() },
    );
    node
}

/// A service job of one group with `count` small containers; every job constrains the
/// kernel, every fifth also the CPU architecture (as C1M's jobs carried constraints).
fn job(j: usize, count: usize) -> Job {
    let mut resources = Resources {
        cpu_mhz: 20 + (j % 5) as i32 * 10,
        memory_mb: 32 + (j % 4) as i32 * 16,
        ..Resources::default()
    };
    resources.disk_mb = 0;
    let task = Task { name: "app".into(), driver: "docker".into(), resources, ..Task::default() };
    let mut group = TaskGroup {
        name: "g".into(),
        count: count as i32,
        tasks: vec![task],
        ..TaskGroup::default()
    };
    group.ephemeral_disk.size_mb = 10;
    let mut constraints = vec![Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    }];
    if j.is_multiple_of(5) {
        constraints.push(Constraint {
            l_target: "${attr.cpu.arch}".into(),
            r_target: "amd64".into(),
            operand: "=".into(),
        });
    }
    Job {
        id: format!("job-{j:04}"),
        name: format!("job-{j:04}"),
        job_type: JobType::Service,
        datacenters: vec!["dc1".into(), "dc2".into(), "dc3".into()],
        constraints,
        task_groups: vec![group],
        ..Job::default()
    }
}

/// Wall time per stage of the pipeline, summed over the run.
#[derive(Debug, Default)]
struct Breakdown {
    /// Planning: the parallel passes on shared snapshots, retries included.
    schedule: Duration,
    /// The plan applier's re-check against the latest state.
    plan_evaluate: Duration,
    /// State machine writes: committed plans and evaluation verdicts.
    state_apply: Duration,
    /// Passes planned again after a partial commit.
    replans: usize,
}

struct Bench {
    state: State,
    index: u64,
    now_ns: i64,
    broker: EvalBroker,
    ids: IdGen,
    /// Evaluations planned at once, each on its own thread (Nomad runs one scheduler
    /// worker per core).
    workers: usize,
    latencies_us: Vec<u64>,
    placements: usize,
    breakdown: Breakdown,
}

/// An evaluation in the workers' hands, from dequeue to ack.
struct Work {
    eval: Evaluation,
    token: String,
    /// Leader time for its passes and commits.
    now_ns: i64,
    /// When the broker handed it out: its latency runs from here to its ack.
    dequeued: Instant,
    steps: EvalWork,
}

impl Bench {
    fn new(shape: Shape) -> Bench {
        let mut bench = Bench {
            state: State::new(),
            index: 0,
            now_ns: START_NS,
            broker: EvalBroker::new(BrokerConfig::default()),
            ids: IdGen::new(42),
            workers: shape.workers,
            latencies_us: Vec::new(),
            placements: 0,
            breakdown: Breakdown::default(),
        };
        for i in 0..shape.nodes {
            bench.commit(Command::NodeRegister { node: node(i) });
        }
        bench
    }

    fn now(&self) -> Millis {
        Millis((self.now_ns / 1_000_000) as u64)
    }

    fn commit(&mut self, command: Command) {
        self.index += 1;
        let outcome =
            self.state.apply(self.index, self.now_ns, command).expect("bench commands apply");
        for eval in outcome.evals {
            if eval.status == EvalStatus::Pending {
                let now = self.now();
                self.broker.handle_enqueue(now, (*eval).clone()).expect("broker has room");
            }
        }
    }

    fn register(&mut self, job: Job) {
        let eval =
            Evaluation::for_job(self.ids.next_id(), &job, TriggeredBy::JobRegister, self.now_ns);
        self.commit(Command::JobRegister { job, enforce_index: None, eval: Some(eval) });
    }

    /// Until the broker is empty: fill a batch of up to one evaluation per worker (first
    /// those whose plan was partly refused, then fresh ones from the broker), plan them
    /// all at once on one snapshot, then let the applier re-check and commit each plan in
    /// turn against the latest state. A plan made stale by its batch-mates is partly
    /// refused, and its evaluation goes into the next batch to plan again from fresh
    /// state (the worker's retry rules); the others are finished and acked.
    fn drain(&mut self) {
        let config = SchedulerConfig::default();
        let mut retries: VecDeque<Work> = VecDeque::new();
        loop {
            let mut batch: Vec<Work> = Vec::new();
            while batch.len() < self.workers {
                if let Some(work) = retries.pop_front() {
                    batch.push(work);
                    continue;
                }
                let now = self.now();
                let Some((eval, token)) = self.broker.dequeue(now, &[SchedulerType::Service])
                else {
                    break;
                };
                let steps = EvalWork::new(&self.state, &eval, false);
                let dequeued = Instant::now();
                batch.push(Work { eval, token, now_ns: self.now_ns, dequeued, steps });
                self.now_ns += 1_000_000;
            }
            if batch.is_empty() {
                return;
            }
            let plans = self.plan_batch(&mut batch, config);
            for (mut work, plan) in batch.into_iter().zip(plans) {
                if let Some(plan) = plan {
                    self.apply_plan(&mut work, plan);
                }
                if work.steps.wants_plan() {
                    self.breakdown.replans += 1;
                    retries.push_back(work);
                } else {
                    self.finish(work);
                }
            }
        }
    }

    /// Plans every evaluation of the batch on one snapshot, one thread each. The
    /// snapshot is gone when this returns, so commits write without copying tables.
    fn plan_batch(&mut self, batch: &mut [Work], config: SchedulerConfig) -> Vec<Option<Plan>> {
        let started = Instant::now();
        let snap = self.state.snapshot();
        let plans = std::thread::scope(|scope| {
            let snap = &snap;
            let (first, rest) = batch.split_first_mut().expect("batch is not empty");
            let others: Vec<_> = rest
                .iter_mut()
                .map(|work| scope.spawn(move || work.steps.plan(snap, work.now_ns, config)))
                .collect();
            let mut plans = vec![first.steps.plan(snap, first.now_ns, config)];
            plans.extend(others.into_iter().map(|h| h.join().expect("a worker panicked")));
            plans
        });
        self.breakdown.schedule += started.elapsed();
        plans
    }

    /// The applier: re-check `plan` against the latest state and commit what fits.
    fn apply_plan(&mut self, work: &mut Work, plan: Plan) {
        let started = Instant::now();
        let checked = work.steps.evaluate(&self.state, plan);
        let evaluated = Instant::now();
        work.steps.commit(&mut self.log(work.now_ns), checked);
        self.breakdown.plan_evaluate += evaluated - started;
        self.breakdown.state_apply += evaluated.elapsed();
    }

    /// Stores the evaluation's verdict and acks it.
    fn finish(&mut self, work: Work) {
        let started = Instant::now();
        let run = work.steps.finish(&mut self.log(work.now_ns));
        self.breakdown.state_apply += started.elapsed();
        self.placements += run.placed;
        let now = self.now();
        self.broker
            .handle_ack(now, &work.eval.id, &work.token)
            .expect("the worker holds the token");
        self.latencies_us.push(work.dequeued.elapsed().as_micros() as u64);
    }

    fn log(&mut self, now_ns: i64) -> Log<'_> {
        Log { state: &mut self.state, next_index: &mut self.index, now_ns, record: false }
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank] as f64 / 1000.0
    }
}

/// C1M-core: `jobs` service jobs of `count` allocations on `nodes` nodes. Prints
/// `placements=P wall_s=W per_s=R eval_p50_ms=A eval_p99_ms=B`.
pub fn c1m_core(shape: Shape) {
    let setup = Instant::now();
    let mut bench = Bench::new(shape);
    println!("setup: {} nodes in {:.3}s", shape.nodes, setup.elapsed().as_secs_f64());
    let started = Instant::now();
    for j in 0..shape.jobs {
        bench.register(job(j, shape.count));
    }
    bench.drain();
    let wall_s = started.elapsed().as_secs_f64();
    for j in [0, shape.jobs / 2, shape.jobs.saturating_sub(1)] {
        let allocs = bench.state.job_allocs("default", &format!("job-{j:04}"));
        let evaluated: u64 = allocs.iter().map(|a| a.metrics.nodes_evaluated).sum();
        let exhausted: u64 = allocs.iter().map(|a| a.metrics.nodes_exhausted).sum();
        let n = allocs.len().max(1) as f64;
        println!(
            "job-{j:04}: nodes evaluated per placement {:.1}, exhausted {:.1}",
            evaluated as f64 / n,
            exhausted as f64 / n
        );
    }
    let live = bench.state.allocs().filter(|a| !a.is_terminal()).count();
    assert_eq!(live, bench.placements, "every committed placement is in state");
    assert_no_node_overcommitted(&bench.state);
    let b = &bench.breakdown;
    println!(
        "breakdown: workers={} schedule_s={:.3} plan_evaluate_s={:.3} state_apply_s={:.3} \
         broker_other_s={:.3} replans={}",
        bench.workers,
        b.schedule.as_secs_f64(),
        b.plan_evaluate.as_secs_f64(),
        b.state_apply.as_secs_f64(),
        wall_s - (b.schedule + b.plan_evaluate + b.state_apply).as_secs_f64(),
        b.replans
    );
    let per_s = bench.placements as f64 / wall_s;
    println!(
        "placements={} wall_s={wall_s:.3} per_s={per_s:.0} eval_p50_ms={:.3} eval_p99_ms={:.3}",
        bench.placements,
        bench.percentile_ms(50.0),
        bench.percentile_ms(99.0)
    );
    // A million allocations take a while to free, and the process ends here anyway.
    std::mem::forget(bench);
}

/// Sums every live allocation's resources per node from the allocations themselves (not
/// the state's running totals) and checks each node's sum against its capacity.
fn assert_no_node_overcommitted(state: &State) {
    // A hash map: a million lookups in an ordered map of thousands of node IDs cost more
    // than reading the allocations.
    let mut used: HashMap<&str, ComparableResources> = HashMap::with_capacity(state.node_count());
    for alloc in state.allocs().filter(|a| !a.is_terminal()) {
        let r = alloc.allocated_resources.comparable();
        let sum = used.entry(alloc.node_id.as_str()).or_default();
        sum.cpu_shares += r.cpu_shares;
        sum.memory_mb += r.memory_mb;
        sum.disk_mb += r.disk_mb;
    }
    for (node_id, sum) in used {
        let capacity =
            state.node(node_id).expect("allocations run on known nodes").schedulable_capacity();
        assert!(
            sum.cpu_shares <= capacity.cpu_shares
                && sum.memory_mb <= capacity.memory_mb
                && sum.disk_mb <= capacity.disk_mb,
            "node {node_id} over-committed: {sum:?} > {capacity:?}"
        );
    }
}

/// Single-evaluation latency: `jobs` evaluations of `count` allocations each on `nodes`
/// nodes, one at a time. Prints `evals=N p50_ms=A p99_ms=B`.
pub fn eval_latency(shape: Shape) {
    let mut bench = Bench::new(shape);
    for j in 0..shape.jobs {
        bench.register(job(j, shape.count));
        bench.drain();
    }
    println!(
        "evals={} p50_ms={:.3} p99_ms={:.3}",
        bench.latencies_us.len(),
        bench.percentile_ms(50.0),
        bench.percentile_ms(99.0)
    );
}
