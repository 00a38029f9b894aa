//! Scheduling benchmarks: C1M-core and single-evaluation latency.
//!
//! Both run the real pipeline in one process without Raft: jobs are registered through
//! the state machine, their evaluations go through the [`EvalBroker`], a worker
//! schedules each against a snapshot, the plan applier re-checks the plan, and the state
//! machine applies the result; the broker is then acked. Log indexes and leader time are
//! simulated; wall time is measured around the whole loop and around each evaluation.
//!
//! ```text
//! drover-bench c1m-core [--nodes 5000] [--jobs 1000] [--count 1000]
//! drover-bench eval-latency [--nodes 5000] [--jobs 1000] [--count 10]
//! ```

pub mod store;

use drover_core::broker::{BrokerConfig, EvalBroker};
use drover_core::id::IdGen;
use drover_core::model::{
    Constraint, DriverInfo, EvalStatus, Evaluation, Job, JobType, Node, NodeStatus, Resources,
    SchedulerType, Task, TaskGroup, TriggeredBy,
};
use drover_core::scheduler::SchedulerConfig;
use drover_core::scheduler::worker::{Log, process};
use drover_core::state::{Command, State};
use drover_core::time::Millis;
use std::time::Instant;

/// Leader time at the start of a run (unix ns); it advances 1 ms per evaluation.
const START_NS: i64 = 1_700_000_000_000_000_000;

/// The shape of a run.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub nodes: usize,
    pub jobs: usize,
    pub count: usize,
}

/// Node classes (CPU MHz, memory MB), cycled over the cluster so it is heterogeneous.
const CLASSES: [(&str, i64, i64); 4] = [
    ("small", 16_000, 32_768),
    ("medium", 32_000, 65_536),
    ("large", 48_000, 98_304),
    ("xlarge", 64_000, 131_072),
];

fn node(i: usize) -> Node {
    let (class, cpu, mem) = CLASSES[i % CLASSES.len()];
    let mut node = Node {
        id: format!("node-{i:05}"),
        name: format!("node-{i:05}"),
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

struct Bench {
    state: State,
    index: u64,
    now_ns: i64,
    broker: EvalBroker,
    ids: IdGen,
    latencies_us: Vec<u64>,
    placements: usize,
}

impl Bench {
    fn new(nodes: usize) -> Bench {
        let mut bench = Bench {
            state: State::new(),
            index: 0,
            now_ns: START_NS,
            broker: EvalBroker::new(BrokerConfig::default()),
            ids: IdGen::new(42),
            latencies_us: Vec::new(),
            placements: 0,
        };
        for i in 0..nodes {
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
        let eval = Evaluation {
            id: self.ids.next_id(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            scheduler: SchedulerType::Service,
            triggered_by: TriggeredBy::JobRegister,
            job_id: job.id.clone(),
            status: EvalStatus::Pending,
            ..Evaluation::default()
        };
        self.commit(Command::JobRegister { job, enforce_index: None, eval: Some(eval) });
    }

    /// Dequeue → schedule → plan apply → state apply → ack, until the broker is empty.
    fn drain(&mut self) {
        let config = SchedulerConfig::default();
        while let Some((eval, token)) = self.broker.dequeue(self.now(), &[SchedulerType::Service]) {
            let started = Instant::now();
            let mut log = Log {
                state: &mut self.state,
                next_index: &mut self.index,
                now_ns: self.now_ns,
                record: false,
            };
            let run = process(&mut log, &eval, None, config);
            self.latencies_us.push(started.elapsed().as_micros() as u64);
            self.placements += run.placed;
            let now = self.now();
            self.broker.handle_ack(now, &eval.id, &token).expect("the worker holds the token");
            self.now_ns += 1_000_000;
        }
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
    let mut bench = Bench::new(shape.nodes);
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

/// Single-evaluation latency: `jobs` evaluations of `count` allocations each on `nodes`
/// nodes, one at a time. Prints `evals=N p50_ms=A p99_ms=B`.
pub fn eval_latency(shape: Shape) {
    let mut bench = Bench::new(shape.nodes);
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
