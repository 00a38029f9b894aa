//! Safety properties of `core::server` over random histories: requests, client nodes
//! coming and going, leader crashes and restarts, isolation and message drops, servers
//! joining, failing, leaving and being removed, all in the in-process harness
//! (`server/harness.rs`).
//!
//! After every step the harness checks that at most one server runs the leader loop,
//! that no two servers applied different entries at the same index (so applied histories
//! are prefixes of one another), and that no server's state over-commits a node.
//! Once healed, one leader loop runs, every replica holds the same state, and no group
//! runs more live allocations than its count.

#[path = "server/harness.rs"]
mod harness;

use drover_core::model::AllocClientStatus;
use drover_core::raft::NodeId;
use drover_core::server::{ApiRequest, MemberStatus};
use harness::{Cluster, job};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Tick {
        ms: u64,
    },
    /// A client node registers (again); its size depends on its name only, since a node
    /// that shrinks under its allocations is over-committed by the operator, not by us.
    Node {
        index: u8,
    },
    StopClient {
        index: u8,
    },
    Job {
        index: u8,
        count: u32,
        cpu: u32,
        to: u64,
    },
    StopJob {
        index: u8,
        to: u64,
    },
    CrashLeader,
    Restart {
        server: u64,
    },
    Isolate {
        server: u64,
    },
    Heal,
    Drops {
        percent: u64,
    },
    AllocRunning {
        pick: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (100u64..6_000).prop_map(|ms| Op::Tick { ms }),
        2 => (0u8..4).prop_map(|index| Op::Node { index }),
        1 => (0u8..4).prop_map(|index| Op::StopClient { index }),
        3 => (0u8..3, 1u32..5, 200u32..1_500, 1u64..4)
            .prop_map(|(index, count, cpu, to)| Op::Job { index, count, cpu, to }),
        1 => (0u8..3, 1u64..4).prop_map(|(index, to)| Op::StopJob { index, to }),
        1 => Just(Op::CrashLeader),
        1 => (1u64..4).prop_map(|server| Op::Restart { server }),
        1 => (1u64..4).prop_map(|server| Op::Isolate { server }),
        1 => Just(Op::Heal),
        1 => (0u64..30).prop_map(|percent| Op::Drops { percent }),
        1 => any::<u8>().prop_map(|pick| Op::AllocRunning { pick }),
    ]
}

fn step(cluster: &mut Cluster, op: &Op) {
    match op {
        Op::Tick { ms } => cluster.tick(*ms),
        Op::Node { index } => {
            let to = cluster.leader().unwrap_or(1);
            let cpu = 1_000 + 700 * i64::from(*index);
            cluster.register_node(&format!("c{index}"), cpu, 4_096, to);
        }
        Op::StopClient { index } => cluster.stop_client(&format!("c{index}")),
        Op::Job { index, count, cpu, to } => {
            let job = job(&format!("job{index}"), "service", *count, *cpu, 256);
            cluster.api(
                *to,
                "",
                ApiRequest::JobRegister { job: Box::new(job), enforce_index: None },
            );
        }
        Op::StopJob { index, to } => {
            let request = ApiRequest::JobDeregister {
                namespace: "default".into(),
                job_id: format!("job{index}"),
                purge: false,
            };
            cluster.api(*to, "", request);
        }
        Op::CrashLeader => {
            if let Some(leader) = cluster.leader() {
                cluster.crash(leader);
            }
        }
        Op::Restart { server } => cluster.restart(*server),
        Op::Isolate { server } => cluster.isolate(*server),
        Op::Heal => cluster.heal(),
        Op::Drops { percent } => cluster.drop_percent = *percent,
        Op::AllocRunning { pick } => {
            let Some(leader) = cluster.leader() else { return };
            let state = cluster.server(leader).expect("leader is up").state();
            let live: Vec<(String, String)> = state
                .allocs()
                .filter(|a| !a.is_terminal())
                .map(|a| (a.node_id.clone(), a.id.clone()))
                .collect();
            if let Some((node, alloc)) = live.get(*pick as usize % live.len().max(1)) {
                cluster.alloc_update(node, alloc, AllocClientStatus::Running);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// One leader loop at a time, agreeing applied histories, no over-committed node.
    #[test]
    fn server_safety(seed in 0u64..1_000, ops in proptest::collection::vec(op(), 1..30)) {
        // Snapshots every 8 entries, so compaction and snapshot installs happen too; two
        // workers per server, so plans race each other.
        let mut cluster = Cluster::with_settings(3, seed, 8, 2);
        cluster.tick(3_000);
        for op in &ops {
            step(&mut cluster, op);
            prop_assert!(cluster.violations.is_empty(), "after {op:?}: {:?}", cluster.violations);
        }
        // Heal everything: the region must still agree.
        cluster.drop_percent = 0;
        cluster.heal();
        for server in cluster.server_ids() {
            cluster.restart(server);
        }
        cluster.tick(10_000);
        prop_assert!(cluster.violations.is_empty(), "after healing: {:?}", cluster.violations);
        // Liveness once healed: one leader loop, and every server applied the same state.
        prop_assert!(cluster.leader().is_some(), "no leader loop after healing");
        let states: Vec<u64> = cluster
            .server_ids()
            .iter()
            .filter_map(|&id| cluster.server(id))
            .map(|s| s.state().latest_index())
            .collect();
        prop_assert!(states.windows(2).all(|w| w[0] == w[1]), "states differ: {states:?}");
        let servers: Vec<_> =
            cluster.server_ids().iter().filter_map(|&id| cluster.server(id)).collect();
        // No group runs more live allocations than its count (Nomad #1269).
        if let Some(server) = servers.first() {
            let state = server.state();
            for job in state.jobs().filter(|j| !j.stop) {
                let live = state.job_allocs(&job.namespace, &job.id);
                for group in &job.task_groups {
                    let running =
                        live.iter().filter(|a| a.task_group == group.name && !a.is_terminal());
                    let running = running.count() as i64;
                    prop_assert!(running <= group.count as i64, "{} runs {running}", job.id);
                }
            }
        }
        for pair in servers.windows(2) {
            prop_assert!(pair[0].state() == pair[1].state(), "replicas hold different states");
            prop_assert_eq!(pair[0].undecodable_entries(), 0);
        }
    }
}

/// A step of a history in which the region's servers change.
#[derive(Clone, Debug)]
enum MemberOp {
    /// Server 4 or 5 starts with an empty disk, waiting to be added.
    Join {
        server: u64,
    },
    /// Gossip reports each of servers 1..=5 alive, failed or left (by `statuses`' bits).
    Gossip {
        statuses: u16,
    },
    RemovePeer {
        server: u64,
        to: u64,
    },
    /// Time, crashes, restarts, isolation, jobs: the steps of [`server_safety`].
    Other(Op),
}

fn member_op() -> impl Strategy<Value = MemberOp> {
    prop_oneof![
        4 => (100u64..12_000).prop_map(|ms| MemberOp::Other(Op::Tick { ms })),
        2 => (4u64..6).prop_map(|server| MemberOp::Join { server }),
        3 => any::<u16>().prop_map(|statuses| MemberOp::Gossip { statuses }),
        1 => Just(MemberOp::Other(Op::CrashLeader)),
        1 => (1u64..6).prop_map(|server| MemberOp::Other(Op::Restart { server })),
        1 => (1u64..6).prop_map(|server| MemberOp::Other(Op::Isolate { server })),
        1 => Just(MemberOp::Other(Op::Heal)),
        1 => (1u64..6, 1u64..6).prop_map(|(server, to)| MemberOp::RemovePeer { server, to }),
        1 => (0u8..3, 1u64..6)
            .prop_map(|(index, to)| MemberOp::Other(Op::Job { index, count: 1, cpu: 100, to })),
    ]
}

fn member_step(cluster: &mut Cluster, op: &MemberOp) {
    match op {
        MemberOp::Join { server } => cluster.join(*server),
        MemberOp::Gossip { statuses } => {
            let members: Vec<(NodeId, MemberStatus)> = (1..=5u64)
                .filter(|id| cluster.server_ids().contains(id))
                .map(|id| {
                    let status = match (statuses >> (2 * id)) & 3 {
                        0 | 1 => MemberStatus::Alive,
                        2 => MemberStatus::Failed,
                        _ => MemberStatus::Left,
                    };
                    (id, status)
                })
                .collect();
            cluster.set_gossip(&members);
        }
        MemberOp::RemovePeer { server, to } => {
            let request = ApiRequest::RaftRemovePeer { id: Some(*server), address: None };
            cluster.api(*to, "", request);
        }
        MemberOp::Other(op) => step(cluster, op),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// While servers join, fail, leave and are removed (by autopilot or an operator),
    /// never two Raft leaders in one term, never two leader loops, applied histories
    /// agree.
    #[test]
    fn membership_changes_keep_one_leader_per_term(
        seed in 0u64..1_000,
        ops in proptest::collection::vec(member_op(), 1..30),
    ) {
        let mut cluster = Cluster::with_settings(3, seed, 8, 1);
        cluster.tick(3_000);
        for op in &ops {
            member_step(&mut cluster, op);
            prop_assert!(cluster.violations.is_empty(), "after {op:?}: {:?}", cluster.violations);
        }
        cluster.heal();
        cluster.tick(20_000);
        prop_assert!(cluster.violations.is_empty(), "healed: {:?}", cluster.violations);
    }
}
