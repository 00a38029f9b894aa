//! Two Raft groups under one region name that meet (gossip shows each the other's
//! servers, their messages reach each other) never mix: each leader's autopilot leaves a
//! server announcing another group alone, and Raft messages tagged with another group
//! are dropped before Raft sees them. Before groups were named, a leader's autopilot
//! added the other group's leader as a learner and its heartbeat reached a leader of the
//! same term (a panic) or, with a higher term, made it truncate its own log.

use drover_core::server::{MemberStatus, PeerEnvelope, Server, ServerConfig, ServerMember};
use drover_core::time::Millis;
use std::collections::BTreeMap;

const START_MS: u64 = 1_700_000_000_000;

fn addr(id: u64) -> String {
    format!("10.0.0.{id}:4647")
}

/// A server that bootstraps a region of its own (`global`, one voter: itself).
fn bootstrap_alone(id: u64) -> Server {
    let config = ServerConfig::new(id, 7 + id, BTreeMap::from([(id, addr(id))]));
    Server::new(Millis(START_MS), config)
}

/// Runs `server` until its next deadline passes `until`, acknowledging every write at
/// once; returns the peer messages it sent.
fn run(server: &mut Server, now: &mut Millis, until: Millis) -> Vec<PeerEnvelope> {
    let mut sent = Vec::new();
    loop {
        while let Some(persist) = server.poll_persist() {
            server.handle_durable(*now, persist.id);
        }
        while let Some(envelope) = server.poll_peer_message() {
            sent.push(envelope);
        }
        while server.poll_reply().is_some() {}
        while let Some(request) = server.poll_snapshot_request() {
            server.handle_snapshot_encoded(*now, request.index, request.encode());
        }
        while let Some(pass) = server.poll_schedule() {
            let output = pass.run();
            server.handle_schedule_output(*now, pass.pass_id, output);
        }
        match server.poll_timeout() {
            Some(deadline) if deadline <= until => {
                *now = deadline.max(*now);
                server.handle_timeout(*now);
            }
            _ => return sent,
        }
    }
}

fn member(id: u64, announced_cluster_id: u64) -> ServerMember {
    ServerMember {
        id,
        name: format!("s{id}.global"),
        addr: addr(id),
        status: MemberStatus::Alive,
        cluster_id: announced_cluster_id,
    }
}

/// Two one-server groups, each leading its own term.
fn two_leaders() -> (Server, Server, Millis) {
    let (mut a, mut b) = (bootstrap_alone(1), bootstrap_alone(2));
    let mut now = Millis(START_MS);
    let until = Millis(START_MS + 5_000);
    let (mut now_b, mut _sent) = (now, Vec::new());
    _sent.extend(run(&mut a, &mut now, until));
    _sent.extend(run(&mut b, &mut now_b, until));
    assert!(a.is_leader_loop_active() && b.is_leader_loop_active(), "each leads its group");
    let (group_a, group_b) = (a.raft().membership().cluster_id, b.raft().membership().cluster_id);
    assert!(group_a != 0 && group_b != 0 && group_a != group_b, "{group_a} vs {group_b}");
    (a, b, now.max(now_b))
}

#[test]
fn a_leader_never_takes_in_a_server_announcing_another_group() {
    let (mut a, b, mut now) = two_leaders();
    let announced = b.raft().membership().cluster_id;
    let own = a.raft().membership().cluster_id;
    a.handle_members(now, vec![member(1, own), member(2, announced)]);
    let until = Millis(now.as_u64() + 30_000);
    let sent = run(&mut a, &mut now, until);
    let membership = a.raft().membership();
    assert!(!membership.contains(2), "server 2 taken in: {membership:?}");
    assert!(!membership.addresses.contains_key(&2), "its address recorded: {membership:?}");
    assert!(sent.iter().all(|e| e.to != 2), "nothing is sent to the other group");
}

#[test]
fn raft_messages_of_another_group_are_dropped() {
    let (mut a, mut b, mut now) = two_leaders();
    // Gossip has not carried server 2's group yet (0: unknown), so server 1's autopilot
    // adds it as a learner and its Raft messages go to server 2.
    a.handle_members(now, vec![member(1, 0), member(2, 0)]);
    let until = Millis(now.as_u64() + 5_000);
    let sent = run(&mut a, &mut now, until);
    let to_b: Vec<PeerEnvelope> = sent.into_iter().filter(|e| e.to == 2).collect();
    assert!(!to_b.is_empty(), "server 1 replicates to its new learner");
    b.handle_members(now, vec![member(1, 0), member(2, 0)]);
    let (term, last_index) = (b.raft().term(), b.raft().last_index());
    for envelope in to_b {
        b.handle_peer_message(now, envelope);
    }
    assert!(b.raft_messages_foreign() > 0, "the other group's messages were counted");
    assert!(b.is_leader_loop_active(), "server 2 still leads its own group");
    assert_eq!((b.raft().term(), b.raft().last_index()), (term, last_index));
}
