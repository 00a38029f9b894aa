//! The `drover-bench` command: benchmarks of the machines, alone and wired together.
//!
//! ```text
//! cargo run --release -p drover-sim --bin drover-bench -- raft-commit [--entries N]
//! cargo run --release -p drover-sim --bin drover-bench -- store-fsync [--dir D] [--entries N]
//! cargo run --release -p drover-sim --bin drover-bench -- c1m | c1m-core | eval-latency \
//!     [--nodes N] [--jobs J] [--count C] [--workers W]
//! ```
//! `c1m` is the whole control plane (three servers with Raft, see `bench::c1m`);
//! `c1m-core` and `eval-latency` the scheduling pipeline without Raft (`bench`).
//! `raft-commit` runs a 3-node Raft group in one thread with instant delivery and a no-op
//! disk (every write is durable at once), proposes commands as fast as the leader takes
//! them, and ends with `entries=N wall_s=W per_s=R`: committed and applied on the leader.

use drover_core::raft::{Config, Envelope, Membership, NodeId, Payload, Raft};
use drover_core::time::Millis;
use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::time::Instant;

/// Proposals the client keeps outstanding beyond the applied index.
const PROPOSALS_IN_FLIGHT_MAX: u64 = 4096;
/// Proposals per client round before the cluster is pumped.
const PROPOSALS_PER_ROUND_MAX: u64 = 256;

struct Cluster {
    nodes: BTreeMap<NodeId, Raft>,
    queue: VecDeque<Envelope>,
    now: Millis,
    applied_commands: u64,
}

impl Cluster {
    fn new(size: u64) -> Cluster {
        let membership = Membership::with_voters(1..=size);
        let nodes = (1..=size)
            .map(|id| (id, Raft::new(Millis::ZERO, Config::new(id, id), membership.clone())))
            .collect();
        Cluster { nodes, queue: VecDeque::new(), now: Millis::ZERO, applied_commands: 0 }
    }

    /// Drains one node's outputs: writes are durable at once, messages are queued.
    fn drain(&mut self, id: NodeId) {
        let leader = self.leader();
        let raft = self.nodes.get_mut(&id).expect("node");
        loop {
            let mut progressed = false;
            while let Some(persist) = raft.poll_persist() {
                raft.handle_durable(self.now, persist.id);
                progressed = true;
            }
            while let Some(envelope) = raft.poll_message() {
                self.queue.push_back(envelope);
                progressed = true;
            }
            let _ = raft.poll_snapshot();
            while let Some(entries) = raft.poll_committed() {
                let commands = entries.iter().filter(|e| matches!(e.payload, Payload::Command(_)));
                if Some(id) == leader {
                    self.applied_commands += commands.count() as u64;
                }
                progressed = true;
            }
            while raft.poll_read().is_some() {}
            if let Some(index) = raft.snapshot_due() {
                raft.handle_snapshot_taken(self.now, index, Vec::new());
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    fn pump(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            self.drain(id);
        }
        while let Some(envelope) = self.queue.pop_front() {
            let to = envelope.to;
            self.nodes.get_mut(&to).expect("node").handle_message(self.now, envelope);
            self.drain(to);
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes.iter().find(|(_, r)| r.is_leader()).map(|(&id, _)| id)
    }

    fn elect(&mut self) -> NodeId {
        for _ in 0..100 {
            if let Some(leader) = self.leader() {
                return leader;
            }
            let next = self.nodes.values().filter_map(|r| r.poll_timeout()).min().expect("a timer");
            self.now = next;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.nodes.get_mut(&id).expect("node").handle_timeout(self.now);
            }
            self.pump();
        }
        panic!("no leader after 100 election rounds");
    }
}

fn raft_commit(entries: u64) {
    let mut cluster = Cluster::new(3);
    let leader = cluster.elect();
    let started = Instant::now();
    let mut proposed = 0u64;
    let payload = vec![0u8; 64];
    while cluster.applied_commands < entries {
        let window = (cluster.applied_commands + PROPOSALS_IN_FLIGHT_MAX).min(entries);
        let round_end = window.min(proposed + PROPOSALS_PER_ROUND_MAX);
        let raft = cluster.nodes.get_mut(&leader).expect("leader");
        while proposed < round_end {
            raft.propose(cluster.now, payload.clone()).expect("the leader accepts proposals");
            proposed += 1;
        }
        cluster.pump();
        // Simulated time moves so heartbeats keep the followers content.
        cluster.now = cluster.now + Millis(1);
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for id in ids {
            let raft = cluster.nodes.get_mut(&id).expect("node");
            if raft.poll_timeout().is_some_and(|t| t <= cluster.now) {
                raft.handle_timeout(cluster.now);
            }
        }
        assert_eq!(cluster.leader(), Some(leader), "leadership is stable without faults");
    }
    let wall_s = started.elapsed().as_secs_f64();
    let per_s = cluster.applied_commands as f64 / wall_s;
    println!("entries={} wall_s={wall_s:.3} per_s={per_s:.0}", cluster.applied_commands);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut entries = 1_000_000u64;
    match args.first().map(String::as_str) {
        Some("raft-commit") => {}
        Some(which @ ("c1m" | "c1m-core" | "eval-latency")) => {
            return scheduling_bench(which, &args[1..]);
        }
        Some("store-fsync") => return drover_sim::bench::store::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: drover-bench raft-commit [--entries N] | c1m | c1m-core | eval-latency [--nodes N] [--jobs J] [--count C] [--workers W] | store-fsync [--dir D] [--entries N]"
            );
            return ExitCode::from(2);
        }
    }
    if let (Some("--entries"), Some(value)) = (args.get(1).map(String::as_str), args.get(2)) {
        match value.parse() {
            Ok(n) => entries = n,
            Err(_) => {
                eprintln!("drover-bench: --entries needs a number");
                return ExitCode::from(2);
            }
        }
    }
    raft_commit(entries);
    ExitCode::SUCCESS
}

/// `c1m`, `c1m-core` and `eval-latency` (code in `drover_sim::bench`).
fn scheduling_bench(which: &str, flags: &[String]) -> ExitCode {
    let count = if which == "eval-latency" { 10 } else { 1000 };
    // c1m-core: the applier is one thread and needs a core of its own; planning gets the
    // rest. c1m: one scheduler worker per server (three planners in all).
    let workers = if which == "c1m" {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
    };
    let mut shape = drover_sim::bench::Shape { nodes: 5000, jobs: 1000, count, workers };
    for pair in flags.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<usize>().ok());
        match (pair[0].as_str(), value) {
            ("--nodes", Some(n)) => shape.nodes = n,
            ("--jobs", Some(n)) => shape.jobs = n,
            ("--count", Some(n)) => shape.count = n,
            ("--workers", Some(n)) if n > 0 => shape.workers = n,
            _ => {
                eprintln!(
                    "drover-bench {which}: expected --nodes N, --jobs J, --count C or --workers W"
                );
                return ExitCode::from(2);
            }
        }
    }
    match which {
        "c1m" => {
            if let Err(error) = drover_sim::bench::c1m::c1m(shape) {
                eprintln!("drover-bench c1m: {error}");
                return ExitCode::FAILURE;
            }
        }
        "c1m-core" => drover_sim::bench::c1m_core(shape),
        _ => drover_sim::bench::eval_latency(shape),
    }
    ExitCode::SUCCESS
}
