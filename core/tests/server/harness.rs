//! An in-process region: three `core::server` machines, scripted client nodes speaking
//! `core::rpc`, an in-memory network and disks, scheduling passes run inline, and the
//! safety checks (at most one active leader loop, applied histories that agree, no node
//! over-committed) after every step.
//!
//! Time starts at a fixed unix instant and moves only with `tick`/`campaign` (which
//! ticks until the new leader's loop runs); `tick`
//! jumps from one deadline to the next. Every disk write is synced as soon as it is
//! issued. Client nodes heartbeat on their own at half their TTL until stopped.

#![allow(dead_code)]

use drover_core::jobspec::{ParseOptions, parse};
use drover_core::model::{
    AllocClientStatus, AllocDeploymentStatus, DrainSpec, DriverInfo, DurationNs, Job, Node,
    NodeEligibility, NodeStatus, ReschedulePolicy, Timestamp, UpdateStrategy,
};
use drover_core::raft::{Index, Membership, NodeId, Restored, Term};
use drover_core::rpc::{ClientRequest, ClientRpc, ServerReply};
use drover_core::server::{
    ApiCall, ApiReply, ApiRequest, ClientCall, MemberStatus, PeerEnvelope, Query, QueryResult,
    Reply, SchedulePass, Server, ServerConfig, ServerMember, SnapshotRequest,
};
use drover_core::state::{AllocClientUpdate, AutopilotConfig, State};
use drover_core::time::Millis;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[path = "../render/mod.rs"]
mod render;
use std::fmt::Write as _;

/// 2023-11-14T22:13:20Z: servers read unix milliseconds.
pub const START_MS: u64 = 1_700_000_000_000;

struct Peer {
    server: Option<Server>,
    config: ServerConfig,
    /// What the node's disk holds: every write is synced as soon as it is issued.
    disk: Restored,
    /// The leader loop state last printed: (active, epoch).
    shown: (bool, u64),
    /// Applied indexes already checked against the region's history.
    checked: Index,
}

struct ClientNode {
    node: Node,
    server: NodeId,
    alive: bool,
    next_heartbeat: Millis,
}

pub struct Cluster {
    pub now: Millis,
    peers: BTreeMap<NodeId, Peer>,
    queue: VecDeque<PeerEnvelope>,
    isolated: BTreeSet<NodeId>,
    /// Directed links whose messages wait in `delayed` until `release`.
    held_links: BTreeSet<(NodeId, NodeId)>,
    delayed: Vec<PeerEnvelope>,
    clients: BTreeMap<String, ClientNode>,
    next_request: u64,
    /// Requests whose replies are not printed (automatic heartbeats).
    quiet: BTreeSet<u64>,
    /// The term of each applied index, as first seen on any server.
    history: BTreeMap<Index, Term>,
    /// Which server ran a leader loop in which term.
    loop_terms: BTreeMap<Term, NodeId>,
    /// Which server Raft made leader in which term.
    raft_leaders: BTreeMap<Term, NodeId>,
    /// The region's servers as gossip reports them to every server (`gossip`).
    gossip: Vec<ServerMember>,
    /// The voters and learners last printed.
    membership_shown: Membership,
    pub violations: Vec<String>,
    /// Percent of peer messages dropped (the property test's fault), drawn from `rng`.
    pub drop_percent: u64,
    /// Servers whose scheduling passes wait for `run-passes` instead of running at once.
    deferred: BTreeSet<NodeId>,
    held: Vec<(NodeId, SchedulePass)>,
    /// Servers whose state snapshots wait for `encode-snapshots` instead of being encoded
    /// at once (as a runtime encoding them on another thread would leave them).
    snapshots_deferred: BTreeSet<NodeId>,
    snapshots_held: Vec<(NodeId, SnapshotRequest)>,
    rng: ChaCha8Rng,
    pub out: String,
    /// Servers that receive nothing from their peers (a one-way cut) until `heal`.
    deaf: BTreeSet<NodeId>,
    /// Per server, how far its clock reads from the script's time (ms, either sign).
    clock_offsets: BTreeMap<NodeId, i64>,
    /// Per server, its last clock reading: a clock stepped back reads the same until it
    /// catches up, as the hosts keep `now` monotonic per machine.
    clock_last: BTreeMap<NodeId, Millis>,
}

fn server_addr(id: NodeId) -> String {
    format!("10.0.0.{id}:4647")
}

impl Cluster {
    pub fn new(servers: u64, seed: u64) -> Cluster {
        Cluster::with_settings(servers, seed, drover_core::raft::SNAPSHOT_THRESHOLD_ENTRIES, 1)
    }

    /// A region whose servers snapshot their state every `entries` applied entries and run
    /// `workers` scheduler workers each.
    pub fn with_settings(servers: u64, seed: u64, entries: u64, workers: u32) -> Cluster {
        Cluster::with_config(servers, seed, |config| {
            config.raft.snapshot_threshold_entries = entries;
            config.workers_count = workers;
        })
    }

    /// A region whose servers' configuration `adjust` changed from the default.
    pub fn with_config(servers: u64, seed: u64, adjust: impl Fn(&mut ServerConfig)) -> Cluster {
        let addrs: BTreeMap<NodeId, String> =
            (1..=servers).map(|id| (id, server_addr(id))).collect();
        let now = Millis(START_MS);
        let mut cluster = Cluster {
            now,
            peers: BTreeMap::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            held_links: BTreeSet::new(),
            delayed: Vec::new(),
            clients: BTreeMap::new(),
            next_request: 0,
            quiet: BTreeSet::new(),
            history: BTreeMap::new(),
            loop_terms: BTreeMap::new(),
            raft_leaders: BTreeMap::new(),
            gossip: Vec::new(),
            membership_shown: Membership::with_voters(1..=servers),
            violations: Vec::new(),
            drop_percent: 0,
            deferred: BTreeSet::new(),
            held: Vec::new(),
            snapshots_deferred: BTreeSet::new(),
            snapshots_held: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            clock_offsets: BTreeMap::new(),
            clock_last: BTreeMap::new(),
            deaf: BTreeSet::new(),
            out: String::new(),
        };
        for id in 1..=servers {
            let mut config =
                ServerConfig::new(id, seed.wrapping_mul(31).wrapping_add(id), addrs.clone());
            adjust(&mut config);
            cluster.start_server(id, config);
        }
        cluster
    }

    pub fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    pub fn server(&self, id: NodeId) -> Option<&Server> {
        self.peers.get(&id).and_then(|p| p.server.as_ref())
    }

    fn server_mut(&mut self, id: NodeId) -> Option<&mut Server> {
        self.peers.get_mut(&id).and_then(|p| p.server.as_mut())
    }

    pub fn server_ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    /// The server running the leader loop, if exactly one does.
    pub fn leader(&self) -> Option<NodeId> {
        let active: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.server.as_ref().is_some_and(Server::is_leader_loop_active))
            .map(|(id, _)| *id)
            .collect();
        (active.len() == 1).then(|| active[0])
    }

    // ------------------------------------------------------------------ the network

    /// Drains one server's outputs in the documented order until it is quiet.
    fn pump(&mut self, id: NodeId) {
        let now = self.server_now(id);
        for _ in 0..10_000 {
            let Some(peer) = self.peers.get_mut(&id) else { return };
            let Some(server) = peer.server.as_mut() else { return };
            let mut moved = false;
            while let Some(persist) = server.poll_persist() {
                peer.disk.apply(&persist).expect("raft writes what its log can follow");
                server.handle_durable(now, persist.id);
                moved = true;
            }
            let mut messages = Vec::new();
            while let Some(envelope) = server.poll_peer_message() {
                messages.push(envelope);
            }
            let mut replies = Vec::new();
            while let Some(reply) = server.poll_reply() {
                replies.push(reply);
            }
            let mut passes = Vec::new();
            while let Some(pass) = server.poll_schedule() {
                passes.push(pass);
            }
            let mut forwards = Vec::new();
            while let Some(forward) = server.poll_region_forward() {
                forwards.push(forward);
            }
            while let Some(request) = server.poll_snapshot_request() {
                moved = true;
                if self.snapshots_deferred.contains(&id) {
                    self.snapshots_held.push((id, request));
                    continue;
                }
                server.handle_snapshot_encoded(now, request.index, request.encode());
            }
            moved |= !(messages.is_empty()
                && replies.is_empty()
                && passes.is_empty()
                && forwards.is_empty());
            self.queue.extend(messages);
            for reply in replies {
                self.on_reply(id, reply);
            }
            for pass in passes {
                if self.deferred.contains(&id) {
                    self.line(format!("n{id} holds a pass for {}", pass.eval.job_id));
                    self.held.push((id, pass));
                    continue;
                }
                let output = pass.run();
                if let Some(server) = self.server_mut(id) {
                    server.handle_schedule_output(now, pass.pass_id, output);
                }
            }
            for forward in forwards {
                self.line(format!(
                    "n{id} forwards #{} to region {}",
                    forward.call.request_id, forward.region
                ));
            }
            if !moved {
                break;
            }
        }
        self.observe(id);
    }

    fn deliver(&mut self, envelope: PeerEnvelope) {
        let (from, to) = (envelope.from, envelope.to);
        let cut =
            self.isolated.contains(&from) || self.isolated.contains(&to) || self.deaf.contains(&to);
        let dropped = self.drop_percent > 0 && self.rng.next_u64() % 100 < self.drop_percent;
        if cut || dropped || self.server(to).is_none() {
            return;
        }
        if self.held_links.contains(&(from, to)) {
            self.delayed.push(envelope);
            return;
        }
        let now = self.server_now(to);
        self.server_mut(to).expect("checked").handle_peer_message(now, envelope);
        self.pump(to);
    }

    pub fn stabilize(&mut self) {
        for _ in 0..100_000 {
            let Some(envelope) = self.queue.pop_front() else { return };
            self.deliver(envelope);
        }
        panic!("the network did not settle");
    }

    /// Moves time forward by `ms`, from deadline to deadline.
    pub fn tick(&mut self, ms: u64) {
        let end = self.now + Millis(ms);
        for _ in 0..1_000_000 {
            self.stabilize();
            let servers: Vec<Millis> = self
                .server_ids()
                .into_iter()
                .filter_map(|id| Some(self.global_at(id, self.server(id)?.poll_timeout()?)))
                .collect();
            let clients = self.clients.values().filter(|c| c.alive).map(|c| c.next_heartbeat);
            let next = servers.into_iter().chain(clients).min().unwrap_or(end).max(self.now);
            if next > end {
                break;
            }
            self.now = next;
            for id in self.server_ids() {
                let local = self.server_now(id);
                let due =
                    self.server(id).and_then(Server::poll_timeout).is_some_and(|d| d <= local);
                if due {
                    self.server_mut(id).expect("due").handle_timeout(local);
                    self.pump(id);
                }
            }
            let due: Vec<String> = self
                .clients
                .iter()
                .filter(|(_, c)| c.alive && c.next_heartbeat <= next)
                .map(|(n, _)| n.clone())
                .collect();
            for name in due {
                self.heartbeat(&name);
            }
        }
        self.now = end;
        self.stabilize();
    }

    /// What server `id`'s clock reads now: the script's time plus its offset, never
    /// less than its last reading.
    fn server_now(&mut self, id: NodeId) -> Millis {
        let offset = self.clock_offsets.get(&id).copied().unwrap_or(0);
        let reading = Millis(self.now.as_u64().saturating_add_signed(offset));
        let last = self.clock_last.entry(id).or_insert(reading);
        *last = (*last).max(reading);
        *last
    }

    /// The script time at which server `id`'s clock reads `deadline`.
    fn global_at(&self, id: NodeId, deadline: Millis) -> Millis {
        let offset = self.clock_offsets.get(&id).copied().unwrap_or(0);
        let last = self.clock_last.get(&id).copied().unwrap_or(Millis::ZERO);
        if deadline <= last {
            return self.now;
        }
        Millis(deadline.as_u64().saturating_add_signed(-offset)).max(self.now)
    }

    /// Steps server `id`'s clock by `ms` (negative: back).
    pub fn step_clock(&mut self, id: NodeId, ms: i64) {
        *self.clock_offsets.entry(id).or_default() += ms;
        self.line(format!("n{id} clock stepped by {ms}ms"));
    }

    /// Fires server `id`'s election timeout now.
    pub fn campaign(&mut self, id: NodeId) {
        let Some(deadline) = self.server(id).and_then(|s| s.raft().poll_timeout()) else { return };
        let global = self.global_at(id, deadline);
        self.now = self.now.max(global);
        let now = self.server_now(id);
        self.server_mut(id).expect("up").handle_timeout(now);
        self.pump(id);
        self.stabilize();
        // The loop starts once a heartbeat round gave the new leader its lease.
        for _ in 0..40 {
            if self.leader().is_some() {
                break;
            }
            self.tick(50);
        }
    }

    pub fn crash(&mut self, id: NodeId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.server = None;
        }
        self.queue.retain(|e| e.from != id);
        self.observe(id);
        self.line(format!("n{id} crashed"));
    }

    pub fn restart(&mut self, id: NodeId) {
        let now = self.server_now(id);
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if peer.server.is_some() {
            return;
        }
        let restored = peer.disk.clone();
        match Server::restore(now, peer.config.clone(), restored) {
            Ok(server) => peer.server = Some(server),
            Err(error) => panic!("n{id} cannot restart: {error}"),
        }
        peer.checked = 0;
        self.line(format!("n{id} restarted"));
        self.pump(id);
        self.tell_gossip(id);
    }

    /// Starts server `id` with an empty disk and no voters of its own: it joins the
    /// running region once the leader adds it.
    pub fn join(&mut self, id: NodeId) {
        if self.peers.contains_key(&id) {
            return;
        }
        let template = &self.peers.values().next().expect("a region").config;
        let mut config = ServerConfig::new(id, template.rng_seed ^ id, BTreeMap::new());
        config.raft.snapshot_threshold_entries = template.raft.snapshot_threshold_entries;
        config.raft.snapshot_trailing_entries = template.raft.snapshot_trailing_entries;
        config.workers_count = template.workers_count;
        config.autopilot = template.autopilot;
        self.line(format!("n{id} started (joining)"));
        self.start_server(id, config);
        self.tell_gossip(id);
    }

    /// A brand-new server `id` with an empty disk.
    fn start_server(&mut self, id: NodeId, config: ServerConfig) {
        let server = Server::new(self.now, config.clone());
        let disk = Restored::default();
        let peer = Peer { server: Some(server), config, disk, shown: (false, 0), checked: 0 };
        self.peers.insert(id, peer);
        self.pump(id);
    }

    /// Gossip now reports `members` (`ID` alive, `ID:failed`, `ID:left`) to every server.
    pub fn set_gossip(&mut self, members: &[(NodeId, MemberStatus)]) {
        self.gossip = members
            .iter()
            .map(|&(id, status)| ServerMember {
                id,
                name: format!("s{id}.global"),
                addr: server_addr(id),
                status,
                cluster_id: 0,
            })
            .collect();
        for id in self.server_ids() {
            self.tell_gossip(id);
        }
        self.stabilize();
    }

    fn tell_gossip(&mut self, id: NodeId) {
        if self.gossip.is_empty() {
            return;
        }
        let now = self.server_now(id);
        let members = self.gossip.clone();
        if let Some(server) = self.server_mut(id) {
            server.handle_members(now, members);
            self.pump(id);
        }
    }

    /// The Raft configuration as server `id` holds it.
    fn raft_config(&mut self, id: NodeId) {
        let Some(server) = self.server(id) else { return };
        let lines: Vec<String> = server
            .raft_servers()
            .iter()
            .map(|s| {
                let role = if s.voter { "voter" } else { "learner" };
                let leader = if s.leader { " leader" } else { "" };
                format!("{} {} {role}{leader} node={}", s.id, s.address, s.node)
            })
            .collect();
        for line in lines {
            self.line(line);
        }
    }

    /// Starts every server afresh, snapshotting every `entries` applied entries (keeping
    /// `trailing` entries behind each snapshot, when given): a script's first command,
    /// before anything is written.
    fn snapshot_every(&mut self, entries: u64, trailing: Option<u64>) {
        for peer in self.peers.values_mut() {
            peer.config.raft.snapshot_threshold_entries = entries;
            if let Some(trailing) = trailing {
                peer.config.raft.snapshot_trailing_entries = trailing;
            }
        }
        self.start_afresh();
    }

    /// Starts every server afresh with the autopilot settings `key=value` gives
    /// (`min_quorum=3`, `cleanup_dead_servers=false`): a script's first command, before
    /// anything is written.
    fn autopilot(&mut self, settings: &[&str]) {
        for setting in settings {
            let (key, value) = setting.split_once('=').expect("key=value");
            for peer in self.peers.values_mut() {
                let autopilot = &mut peer.config.autopilot;
                match key {
                    "min_quorum" => autopilot.min_quorum = value.parse().expect("voters"),
                    "cleanup_dead_servers" => {
                        autopilot.cleanup_dead_servers = value.parse().expect("true or false");
                    }
                    other => panic!("unknown autopilot setting {other}"),
                }
            }
        }
        self.start_afresh();
    }

    fn start_afresh(&mut self) {
        let now = self.now;
        let ids = self.server_ids();
        for &id in &ids {
            let peer = self.peers.get_mut(&id).expect("listed");
            peer.disk = Restored::default();
            peer.server = Some(Server::new(now, peer.config.clone()));
        }
        for id in ids {
            self.pump(id);
        }
    }

    pub fn isolate(&mut self, id: NodeId) {
        self.isolated.insert(id);
    }

    pub fn heal(&mut self) {
        self.isolated.clear();
    }

    /// Messages from `from` to `to` wait until [`Cluster::release`] (a slow link).
    pub fn hold(&mut self, from: NodeId, to: NodeId) {
        self.held_links.insert((from, to));
    }

    /// Delivers what the link held, one message at a time and in order, and lets the
    /// link carry messages again.
    pub fn release(&mut self, from: NodeId, to: NodeId) {
        self.held_links.remove(&(from, to));
        let (held, kept) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|e| (e.from, e.to) == (from, to));
        self.delayed = kept;
        for envelope in held {
            self.deliver(envelope);
            self.stabilize();
        }
    }

    // ------------------------------------------------------------------ checks

    /// Prints leader-loop changes and checks the safety rules on server `id`.
    fn observe(&mut self, id: NodeId) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        let (active, epoch, term) = match &peer.server {
            Some(s) => (s.is_leader_loop_active(), s.leader_epoch(), s.raft().term()),
            None => (false, peer.shown.1, 0),
        };
        let shown = (active, epoch.max(peer.shown.1));
        let mut lines = Vec::new();
        if shown != peer.shown {
            lines.push(match active {
                true => format!("n{id} leads: loop started (term {term}, epoch {epoch})"),
                false => format!("n{id} leader loop stopped"),
            });
            peer.shown = shown;
        }
        let mut violations = Vec::new();
        if let Some(server) = &peer.server {
            if active && *self.loop_terms.entry(term).or_insert(id) != id {
                violations.push(format!("two leader loops in term {term}"));
            }
            let raft = server.raft();
            if raft.is_leader() && *self.raft_leaders.entry(raft.term()).or_insert(id) != id {
                violations.push(format!("two Raft leaders in term {}", raft.term()));
            }
            let membership = raft.membership();
            let shown = &self.membership_shown;
            if raft.is_leader()
                && (membership.voters != shown.voters || membership.learners != shown.learners)
            {
                let ids = |set: &BTreeSet<NodeId>| {
                    set.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
                };
                lines.push(format!(
                    "n{id} raft config: voters={} learners={}",
                    ids(&membership.voters),
                    ids(&membership.learners)
                ));
                self.membership_shown = membership.clone();
            }
            let applied = server.raft().applied_index();
            for index in (peer.checked + 1)..=applied {
                let Some(term) = server.raft().term_at(index) else { continue };
                if *self.history.entry(index).or_insert(term) != term {
                    violations.push(format!(
                        "n{id} applied term {term} at {index}, another server a different one"
                    ));
                }
            }
            peer.checked = peer.checked.max(applied);
            violations.extend(
                overcommitted(server.state())
                    .into_iter()
                    .map(|n| format!("n{id}: node {n} over-committed")),
            );
        }
        let active_loops = self
            .peers
            .values()
            .filter(|p| p.server.as_ref().is_some_and(Server::is_leader_loop_active))
            .count();
        if active_loops > 1 {
            violations.push(format!("{active_loops} active leader loops at {}", self.now));
        }
        for line in lines {
            self.line(line);
        }
        self.violations.extend(violations);
    }

    // ------------------------------------------------------------------ callers

    fn next_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Sends an API call to server `to` and delivers until the network settles.
    pub fn api(&mut self, to: NodeId, region: &str, request: ApiRequest) -> u64 {
        let request_id = self.next_id();
        let now = self.server_now(to);
        let call = ApiCall { request_id, region: region.into(), request };
        if let Some(server) = self.server_mut(to) {
            server.handle_api_call(now, call);
            self.pump(to);
        }
        self.stabilize();
        request_id
    }

    fn client_rpc(&mut self, name: &str, request: ClientRequest, quiet: bool) {
        let Some(client) = self.clients.get(name) else { return };
        let to = client.server;
        let request_id = self.next_id();
        if quiet {
            self.quiet.insert(request_id);
        }
        let conn = client_conn(name);
        let now = self.server_now(to);
        if self.server(to).is_none() {
            // No answer from a dead server: the client tries the next one next time.
            let ids = self.server_ids();
            let next = ids.iter().position(|&id| id == to).map_or(0, |i| (i + 1) % ids.len());
            self.clients.get_mut(name).expect("known").server = ids[next];
            return;
        }
        if let Some(server) = self.server_mut(to) {
            server.handle_client_rpc(
                now,
                ClientCall { conn, rpc: ClientRpc { request_id, request } },
            );
            self.pump(to);
        }
        self.stabilize();
    }

    pub fn register_node(&mut self, name: &str, cpu: i64, memory_mb: i64, to: NodeId) {
        let node = client_node(name, cpu, memory_mb);
        let next_heartbeat = self.now + Millis(1_000);
        self.clients.insert(
            name.into(),
            ClientNode { node: node.clone(), server: to, alive: true, next_heartbeat },
        );
        self.client_rpc(name, ClientRequest::NodeRegister { node: Box::new(node) }, false);
    }

    fn heartbeat(&mut self, name: &str) {
        let Some(client) = self.clients.get_mut(name) else { return };
        // Until an answer says otherwise, try again in a second.
        client.next_heartbeat = self.now + Millis(1_000);
        let request =
            ClientRequest::NodeHeartbeat { node_id: name.into(), status: NodeStatus::Ready };
        self.client_rpc(name, request, true);
    }

    pub fn stop_client(&mut self, name: &str) {
        if let Some(client) = self.clients.get_mut(name) {
            client.alive = false;
        }
    }

    pub fn alloc_update(&mut self, name: &str, alloc_id: &str, status: AllocClientStatus) {
        // Request ids only grow, as a client's report sequence does.
        let update = AllocClientUpdate {
            alloc_id: alloc_id.into(),
            client_status: status,
            report_seq: self.next_request + 1,
            ..AllocClientUpdate::default()
        };
        let request = ClientRequest::AllocUpdate { node_id: name.into(), updates: vec![update] };
        self.client_rpc(name, request, false);
    }

    pub fn node_allocs(&mut self, name: &str, min_index: u64, wait_ms: u64) {
        let request = ClientRequest::NodeAllocs { node_id: name.into(), min_index, wait_ms };
        self.client_rpc(name, request, false);
    }

    fn on_reply(&mut self, server: NodeId, reply: Reply) {
        match reply {
            Reply::Api(response) => {
                let text = render_api_reply(&response.reply);
                self.line(format!("n{server} reply #{}: {text}", response.request_id));
            }
            Reply::Client { conn, rpc } => {
                let name = self
                    .clients
                    .keys()
                    .find(|n| client_conn(n) == conn)
                    .cloned()
                    .unwrap_or_default();
                let quiet = self.quiet.remove(&rpc.request_id);
                let text = render_client_reply(&rpc.reply);
                if let Some(client) = self.clients.get_mut(&name) {
                    match &rpc.reply {
                        ServerReply::HeartbeatOk { heartbeat_ttl_ms, .. } => {
                            client.next_heartbeat = self.now + Millis(heartbeat_ttl_ms / 2);
                        }
                        ServerReply::NotLeader { leader: Some(addr) } => {
                            if let Some(id) = (1..=9).find(|id| server_addr(*id) == *addr) {
                                client.server = id;
                            }
                        }
                        ServerReply::NotLeader { leader: None } | ServerReply::Error { .. } => {
                            let others: Vec<NodeId> = self.peers.keys().copied().collect();
                            let next = others
                                .iter()
                                .position(|&id| id == client.server)
                                .map_or(0, |i| (i + 1) % others.len());
                            client.server = others[next];
                        }
                        _ => {}
                    }
                }
                if !quiet {
                    self.line(format!("{name} <- n{server}: {text}"));
                }
            }
        }
    }
}

fn client_conn(name: &str) -> u64 {
    name.bytes().fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)))
}

pub fn client_node(name: &str, cpu: i64, memory_mb: i64) -> Node {
    let mut node = Node {
        id: name.into(),
        name: name.into(),
        secret_id: format!("secret-{name}"),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    node.node_resources.cpu.cpu_shares = cpu;
    node.node_resources.memory.memory_mb = memory_mb;
    node.node_resources.disk.disk_mb = 100_000;
    node.attributes.insert("kernel.name".into(), "linux".into());
    node.attributes.insert("unique.hostname".into(), name.into());
    node.drivers.insert(
        "raw_exec".into(),
        DriverInfo { detected: true, healthy: true, ..DriverInfo::default() },
    );
    node
}

/// A one-group raw_exec job.
pub fn job(id: &str, job_type: &str, count: u32, cpu: u32, memory_mb: u32) -> Job {
    let hcl = format!(
        "job \"{id}\" {{\n  type = \"{job_type}\"\n  group \"g\" {{\n    count = {count}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{ command = \"/bin/sleep\" }}\n      resources {{\n        cpu = {cpu}\n        memory = {memory_mb}\n      }}\n    }}\n  }}\n}}\n"
    );
    match parse("job.hcl", hcl.as_bytes(), &ParseOptions::default()) {
        Ok(job) => job,
        Err(report) => panic!("test job does not parse:\n{report}"),
    }
}

/// A one-group raw_exec batch job launched on `cron` (`_` stands for a space, so the
/// spec fits one script word).
pub fn periodic_job(id: &str, cron: &str, prohibit_overlap: bool, enabled: bool) -> Job {
    let cron = cron.replace('_', " ");
    let hcl = format!(
        "job \"{id}\" {{\n  type = \"batch\"\n  periodic {{\n    crons = [\"{cron}\"]\n    prohibit_overlap = {prohibit_overlap}\n    enabled = {enabled}\n  }}\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{ command = \"/bin/true\" }}\n      resources {{\n        cpu = 100\n        memory = 64\n      }}\n    }}\n  }}\n}}\n"
    );
    match parse("periodic.hcl", hcl.as_bytes(), &ParseOptions::default()) {
        Ok(job) => job,
        Err(report) => panic!("test job does not parse:\n{report}"),
    }
}

/// The `update` block a `job` line asks for (`max_parallel=`, `canary=`, `auto_promote`,
/// `auto_revert`, and `min_healthy=`, `healthy_deadline=`, `progress=` in seconds), if any.
fn update_strategy(args: &[&str]) -> Option<UpdateStrategy> {
    let keys = ["max_parallel", "canary", "min_healthy", "healthy_deadline", "progress"];
    let flags = ["auto_promote", "auto_revert"];
    if !args
        .iter()
        .any(|a| keys.iter().any(|k| a.starts_with(&format!("{k}="))) || flags.contains(a))
    {
        return None;
    }
    let number =
        |key: &str, default: i64| kv(args, key).map_or(default, |v| v.parse().expect("a number"));
    let defaults = UpdateStrategy::default();
    let secs = |key: &str, default: DurationNs| {
        kv(args, key).map_or(default, |v| DurationNs::from_secs(v.parse().expect("seconds")))
    };
    Some(UpdateStrategy {
        max_parallel: number("max_parallel", 1) as i32,
        canary: number("canary", 0) as i32,
        auto_promote: args.contains(&"auto_promote"),
        auto_revert: args.contains(&"auto_revert"),
        health_check: "task_states".into(),
        min_healthy_time: secs("min_healthy", defaults.min_healthy_time),
        healthy_deadline: secs("healthy_deadline", defaults.healthy_deadline),
        progress_deadline: secs("progress", defaults.progress_deadline),
        ..defaults
    })
}

/// The reschedule policy a `job` line asks for, if any: `delay=` seconds (constant),
/// `attempts=` within an hour (unlimited without it).
fn reschedule_policy(args: &[&str]) -> Option<ReschedulePolicy> {
    let delay = kv(args, "delay");
    let attempts = kv(args, "attempts");
    if delay.is_none() && attempts.is_none() {
        return None;
    }
    let delay = DurationNs::from_secs(delay.map_or(5, |v| v.parse().expect("seconds")));
    Some(ReschedulePolicy {
        attempts: attempts.map_or(0, |v| v.parse().expect("a number")),
        interval: DurationNs::from_hours(1),
        delay,
        delay_function: "constant".into(),
        max_delay: delay,
        unlimited: attempts.is_none(),
    })
}

/// Nodes whose live allocations use more than they offer.
pub fn overcommitted(state: &State) -> Vec<String> {
    let mut over = Vec::new();
    for node in state.nodes() {
        let Some(allocs) = state.node_allocs(&node.id) else { continue };
        let capacity = node.schedulable_capacity();
        let used = allocs.used;
        if used.cpu_shares > capacity.cpu_shares || used.memory_mb > capacity.memory_mb {
            over.push(node.id.clone());
        }
    }
    over
}

fn render_api_reply(reply: &ApiReply) -> String {
    match reply {
        ApiReply::Write { index, job_modify_index, eval_ids, eval_create_index } => format!(
            "ok index={index} job_modify_index={job_modify_index} evals={} eval_create_index={eval_create_index}",
            eval_ids.len()
        ),
        ApiReply::Plan {
            job_modify_index, diff, desired_updates, failed_tg_allocs, plan, ..
        } => {
            let mut text = format!("plan job_modify_index={job_modify_index}");
            let _ = write!(text, " diff={}", diff.diff_type.as_str());
            for task in diff.task_groups.iter().flat_map(|g| &g.tasks) {
                if !task.annotations.is_empty() {
                    let _ = write!(text, " {}: {}", task.name, task.annotations.join(", "));
                }
            }
            for (group, u) in desired_updates {
                let _ = write!(
                    text,
                    " {group}: place={} stop={} ignore={} inplace={} destructive={}",
                    u.place, u.stop, u.ignore, u.in_place_update, u.destructive_update
                );
            }
            let _ = write!(
                text,
                " placements={} failed_groups={}",
                plan.placement_count(),
                failed_tg_allocs.len()
            );
            text
        }
        ApiReply::Read { index, result } => {
            format!("read index={index} {}", render_query_result(result))
        }
        ApiReply::NotLeader { leader } => {
            format!("not leader (leader {})", leader.as_deref().unwrap_or("unknown"))
        }
        ApiReply::Error { message } => format!("error: {message}"),
        ApiReply::CasWrite { index, updated } => format!("ok index={index} updated={updated}"),
    }
}

/// `config` with the settings `key=value` words give changed (`to=` and `cas=` are the
/// command's own).
fn autopilot_settings(mut config: AutopilotConfig, words: &[&str]) -> AutopilotConfig {
    for word in words {
        let (key, value) = word.split_once('=').expect("key=value");
        let number = || value.parse::<u64>().expect("a number");
        match key {
            "cleanup_dead_servers" => config.cleanup_dead_servers = value == "true",
            "last_contact_threshold_ms" => config.last_contact_threshold_ms = number(),
            "server_stabilization_time_ms" => config.server_stabilization_time_ms = number(),
            "max_trailing_logs" => config.max_trailing_logs = number(),
            "min_quorum" => config.min_quorum = number() as usize,
            "to" | "cas" => {}
            other => panic!("unknown autopilot setting {other}"),
        }
    }
    config
}

/// `read jobs|nodes|evals|allocs|deployments` or `read versions|summary|job-evals|
/// job-deployments JOB` or `read alloc NAME` (the first allocation with that name).
fn read_query(args: &[&str]) -> Query {
    let job = |job_id: &str| (String::from("default"), job_id.to_owned());
    match args {
        ["jobs", ..] => Query::Jobs,
        ["nodes", ..] => Query::Nodes,
        ["evals", ..] => Query::Evals,
        ["allocs", ..] => Query::Allocs,
        ["deployments", ..] => Query::Deployments,
        ["versions", id, ..] => {
            let (namespace, job_id) = job(id);
            Query::JobVersions { namespace, job_id }
        }
        ["summary", id, ..] => {
            let (namespace, job_id) = job(id);
            Query::JobSummary { namespace, job_id }
        }
        ["job-evals", id, ..] => {
            let (namespace, job_id) = job(id);
            Query::JobEvals { namespace, job_id }
        }
        ["job-deployments", id, ..] => {
            let (namespace, job_id) = job(id);
            Query::JobDeployments { namespace, job_id }
        }
        ["alloc", id, ..] => Query::Alloc { alloc_id: (*id).to_owned() },
        ["deployment", id, ..] => Query::Deployment { deployment_id: (*id).to_owned() },
        ["events", ..] => {
            let after = kv(args, "after").map_or(0, |v| v.parse().expect("an index"));
            Query::Events { after_index: after }
        }
        ["autopilot", ..] => Query::AutopilotConfig,
        other => panic!("unknown query {other:?}"),
    }
}

fn render_query_result(result: &QueryResult) -> String {
    match result {
        QueryResult::Job(job) => job
            .as_ref()
            .map_or("job=none".into(), |j| format!("job={} v{} {}", j.id, j.version, j.status)),
        QueryResult::Jobs(jobs) => format!("jobs={}", jobs.len()),
        QueryResult::Node(node) => node
            .as_ref()
            .map_or("node=none".into(), |n| format!("node={} {}", n.id, n.status.as_str())),
        QueryResult::Nodes(nodes) => format!("nodes={}", nodes.len()),
        QueryResult::Allocs(allocs) => format!("allocs={}", allocs.len()),
        QueryResult::Eval(eval) => {
            eval.as_ref().map_or("eval=none".into(), |e| format!("eval {}", e.status.as_str()))
        }
        QueryResult::Evals(evals) => format!("evals={}", evals.len()),
        QueryResult::JobVersions(jobs) => {
            let versions: Vec<String> = jobs.iter().map(|j| j.version.to_string()).collect();
            format!("versions=[{}]", versions.join(","))
        }
        QueryResult::JobSummary(summary) => summary.as_ref().map_or("summary=none".into(), |s| {
            let groups: Vec<String> = s
                .summary
                .iter()
                .map(|(g, c)| format!("{g}: starting={} running={}", c.starting, c.running))
                .collect();
            format!("summary {}", groups.join(" "))
        }),
        QueryResult::Alloc(alloc) => alloc.as_ref().map_or("alloc=none".into(), |a| {
            let job = a.job.as_ref().map_or("none".into(), |j| format!("v{}", j.version));
            format!("alloc {} job={job}", a.name)
        }),
        QueryResult::Deployment(deployment) => deployment
            .as_ref()
            .map_or("deployment=none".into(), |d| format!("deployment {}", d.status.as_str())),
        QueryResult::Deployments(deployments) => format!("deployments={}", deployments.len()),
        QueryResult::Events(events) => {
            let lines: Vec<String> = events.iter().map(render_event).collect();
            format!("events={}\n{}", events.len(), lines.join("\n"))
        }
        QueryResult::AutopilotConfig(record) => {
            let config = &record.config;
            format!(
                "autopilot cleanup_dead_servers={} last_contact_threshold_ms={} \
                 server_stabilization_time_ms={} max_trailing_logs={} min_quorum={} \
                 create_index={} modify_index={}",
                config.cleanup_dead_servers,
                config.last_contact_threshold_ms,
                config.server_stabilization_time_ms,
                config.max_trailing_logs,
                config.min_quorum,
                record.create_index,
                record.modify_index
            )
        }
    }
}

/// One event as `index topic type name`, naming objects as the scripts do (allocations
/// and evaluations by their job, nodes by their client name) and with the field an event
/// of that topic is watched for.
fn render_event(event: &drover_core::state::Event) -> String {
    use drover_core::state::EventPayload;
    let what = match &event.payload {
        EventPayload::Job(job) => format!("{} stop={} status={}", job.id, job.stop, job.status),
        EventPayload::Node(node) => {
            format!("{} {} {}", node.id, node.status.as_str(), node.scheduling_eligibility.as_str())
        }
        EventPayload::Allocation(alloc) => format!(
            "{} desired={} client={}",
            alloc.name,
            alloc.desired_status.as_str(),
            alloc.client_status.as_str()
        ),
        EventPayload::Evaluation(eval) => {
            format!(
                "eval of {} {} {}",
                eval.job_id,
                eval.triggered_by.as_str(),
                eval.status.as_str()
            )
        }
        EventPayload::Deployment(deployment) => {
            format!("deployment of {} {}", deployment.job_id, deployment.status.as_str())
        }
    };
    format!("  {} {} {} {what}", event.index, event.topic(), event.event_type.as_str())
}

fn render_client_reply(reply: &ServerReply) -> String {
    match reply {
        ServerReply::HeartbeatOk { index, heartbeat_ttl_ms, servers, allocs_index } => {
            let servers = servers.len();
            format!(
                "heartbeat ok index={index} ttl={heartbeat_ttl_ms}ms servers={servers} \
                 allocs_index={allocs_index}"
            )
        }
        ServerReply::AllocUpdateOk { index } => format!("alloc update ok index={index}"),
        ServerReply::NodeAllocs { index, allocs } => {
            let with_job = allocs.iter().filter(|a| a.job.is_some()).count();
            format!("node allocs index={index} allocs={} with_job={with_job}", allocs.len())
        }
        ServerReply::NotLeader { leader } => {
            format!("not leader (leader {})", leader.as_deref().unwrap_or("unknown"))
        }
        ServerReply::Error { message } => format!("error: {message}"),
    }
}

/// Stable text of one server's state for scenario files.
pub fn show(state: &State, what: &str) -> Vec<String> {
    match what {
        "allocs" => {
            let mut allocs: Vec<_> = state.allocs().collect();
            allocs.sort_by(|a, b| (a.create_index, &a.name).cmp(&(b.create_index, &b.name)));
            allocs
                .iter()
                .map(|a| {
                    format!(
                        "{} on {} desired={} client={} index={}",
                        a.name,
                        a.node_id,
                        a.desired_status.as_str(),
                        a.client_status.as_str(),
                        a.create_index
                    )
                })
                .collect()
        }
        "evals" => {
            let mut evals: Vec<_> = state.evals().collect();
            evals.sort_by(|a, b| {
                (a.create_index, a.triggered_by.as_str(), a.status.as_str()).cmp(&(
                    b.create_index,
                    b.triggered_by.as_str(),
                    b.status.as_str(),
                ))
            });
            evals
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {} node={} index={}",
                        e.job_id,
                        e.triggered_by.as_str(),
                        e.status.as_str(),
                        if e.node_id.is_empty() { "-" } else { &e.node_id },
                        e.create_index
                    )
                })
                .collect()
        }
        "nodes" => state
            .nodes()
            .map(|n| {
                let eligible = if n.scheduling_eligibility == NodeEligibility::Eligible {
                    "eligible"
                } else {
                    "ineligible"
                };
                let drain = if n.drain_strategy.is_some() { " draining" } else { "" };
                format!("{} {} {eligible}{drain}", n.id, n.status.as_str())
            })
            .collect(),
        "jobs" => state
            .jobs()
            .map(|j| format!("{} v{} {} stop={}", j.id, j.version, j.status, j.stop))
            .collect(),
        "deployments" => {
            let mut deployments: Vec<_> = state.deployments().collect();
            deployments.sort_by_key(|d| d.create_index);
            let mut lines = Vec::new();
            for d in deployments {
                lines.push(format!(
                    "{} v{} {}: {}",
                    d.job_id,
                    d.job_version,
                    d.status.as_str(),
                    d.status_description
                ));
                for (name, group) in &d.task_groups {
                    lines.push(format!("  {}", render::deployment_group_line(name, group)));
                }
            }
            lines
        }
        "versions" => {
            let mut lines = Vec::new();
            for job in state.jobs() {
                let versions = state.job_versions(&job.namespace, &job.id);
                let text: Vec<String> = versions
                    .iter()
                    .map(|v| format!("v{}{}", v.version, if v.stable { " stable" } else { "" }))
                    .collect();
                lines.push(format!("{}: {}", job.id, text.join(", ")));
            }
            lines.sort();
            lines
        }
        "reschedules" => {
            let mut allocs: Vec<_> = state.allocs().collect();
            allocs.sort_by(|a, b| (a.create_index, &a.name).cmp(&(b.create_index, &b.name)));
            allocs
                .iter()
                .map(|a| {
                    let previous = state
                        .alloc(&a.previous_allocation)
                        .map_or("-".to_owned(), |p| format!("{} index={}", p.name, p.create_index));
                    let events = a.reschedule_tracker.as_ref().map_or(0, |t| t.events.len());
                    let allowed = a.desired_transition.reschedule == Some(true);
                    format!(
                        "{} index={} client={} reschedules={events} previous=({previous}){}",
                        a.name,
                        a.create_index,
                        a.client_status.as_str(),
                        if allowed { " replacement allowed" } else { "" }
                    )
                })
                .collect()
        }
        "launches" => state
            .periodic_launches()
            .into_iter()
            .map(|(key, ns)| format!("{} last launch {}", key.id, ns / 1_000_000_000))
            .collect(),
        other => vec![format!("unknown table {other}")],
    }
}

/// Parses `key=value` words.
pub fn kv<'a>(words: &'a [&'a str], key: &str) -> Option<&'a str> {
    words.iter().find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

impl Cluster {
    /// Runs one scenario command and returns what it printed.
    pub fn run(&mut self, command: &str) -> String {
        self.out.clear();
        let words: Vec<&str> = command.split_whitespace().collect();
        let (name, args) = words.split_first().expect("a command");
        let number = |key: &str, default: u64| {
            kv(args, key).map_or(default, |v| v.parse().expect("a number"))
        };
        let to = number("to", self.leader().unwrap_or(1));
        match *name {
            "tick" => self.tick(args[0].parse().expect("ms")),
            "campaign" => self.campaign(args[0].parse().expect("id")),
            "crash" => self.crash(args[0].parse().expect("id")),
            "restart" => self.restart(args[0].parse().expect("id")),
            "snapshot-every" => {
                let trailing = args.get(1).and_then(|a| a.strip_prefix("trailing="));
                let trailing = trailing.map(|t| t.parse().expect("trailing entries"));
                self.snapshot_every(args[0].parse().expect("entries"), trailing)
            }
            "isolate" => self.isolate(args[0].parse().expect("id")),
            "heal" => {
                self.deaf.clear();
                self.heal();
            }
            "deafen" => {
                self.deaf.insert(args[0].parse().expect("id"));
            }
            "hold" | "release" => {
                let from = args[0].parse().expect("id");
                let to = args[1].parse().expect("id");
                match *name {
                    "hold" => self.hold(from, to),
                    _ => self.release(from, to),
                }
            }
            "node" => self.register_node(
                args[0],
                number("cpu", 4000) as i64,
                number("mem", 8192) as i64,
                to,
            ),
            "client-stop" => self.stop_client(args[0]),
            "job" | "plan" => {
                let job_type = kv(args, "type").unwrap_or("service");
                let mut job = job(
                    args[0],
                    job_type,
                    number("count", 1) as u32,
                    number("cpu", 500) as u32,
                    number("mem", 256) as u32,
                );
                if let Some(update) = update_strategy(args) {
                    job.update = Some(update.clone());
                    for group in &mut job.task_groups {
                        group.update = Some(update.clone());
                    }
                }
                if let Some(policy) = reschedule_policy(args) {
                    for group in &mut job.task_groups {
                        group.reschedule_policy = Some(policy.clone());
                    }
                }
                let request = match *name {
                    "job" => ApiRequest::JobRegister {
                        job: Box::new(job),
                        enforce_index: kv(args, "enforce").map(|v| v.parse().expect("index")),
                    },
                    _ => ApiRequest::JobPlan { job: Box::new(job) },
                };
                self.api(to, kv(args, "region").unwrap_or(""), request);
            }
            "periodic" => {
                let cron = kv(args, "cron").expect("cron=");
                let job = periodic_job(
                    args[0],
                    cron,
                    args.contains(&"overlap-prohibited"),
                    !args.contains(&"disabled"),
                );
                let request = ApiRequest::JobRegister { job: Box::new(job), enforce_index: None };
                self.api(to, "", request);
            }
            "force" => {
                let request = ApiRequest::JobPeriodicForce {
                    namespace: "default".into(),
                    job_id: args[0].into(),
                };
                self.api(to, "", request);
            }
            "time" => {
                let ms = self.now.as_u64();
                self.line(format!("unix {}.{:03}", ms / 1000, ms % 1000));
            }
            "clock" => {
                let ms = kv(args, "ms").expect("ms=").parse().expect("ms");
                self.step_clock(args[0].parse().expect("id"), ms);
            }
            "stop-job" => {
                let request = ApiRequest::JobDeregister {
                    namespace: "default".into(),
                    job_id: args[0].into(),
                    purge: args.contains(&"purge"),
                };
                self.api(to, "", request);
            }
            "scale" => {
                let request = ApiRequest::JobScale {
                    namespace: "default".into(),
                    job_id: args[0].into(),
                    group: "g".into(),
                    count: number("count", 1) as i64,
                };
                self.api(to, "", request);
            }
            "revert" => {
                let request = ApiRequest::JobRevert {
                    namespace: "default".into(),
                    job_id: args[0].into(),
                    version: number("version", 0),
                    enforce_prior_version: kv(args, "prior").map(|v| v.parse().expect("version")),
                };
                self.api(to, "", request);
            }
            "evaluate" => {
                let request =
                    ApiRequest::JobEvaluate { namespace: "default".into(), job_id: args[0].into() };
                self.api(to, "", request);
            }
            "drain" => {
                let request = ApiRequest::NodeDrain {
                    node_id: args[0].into(),
                    drain: Some(DrainSpec::default()),
                };
                self.api(to, "", request);
            }
            "alloc-stop" => {
                let state = self.server(to).expect("up").state();
                let named = state.allocs().find(|a| a.name == args[0] && !a.is_terminal());
                let alloc_id = named.map_or(args[0].to_owned(), |a| a.id.clone());
                self.api(to, "", ApiRequest::AllocStop { alloc_id });
            }
            "purge" => {
                self.api(to, "", ApiRequest::NodePurge { node_id: args[0].into() });
            }
            "undrain" => {
                let request = ApiRequest::NodeDrain { node_id: args[0].into(), drain: None };
                self.api(to, "", request);
            }
            "health" => {
                // `name@node` picks the allocation on that node (a system job's are all
                // named `job.g[0]`).
                let (alloc_name, on_node) = match args[0].split_once('@') {
                    Some((name, node)) => (name, Some(node)),
                    None => (args[0], None),
                };
                let state = self.server(to).expect("up").state();
                let alloc = state
                    .allocs()
                    .filter(|a| a.name == alloc_name && on_node.is_none_or(|n| a.node_id == n))
                    .filter(|a| !a.server_terminal())
                    .max_by_key(|a| a.create_index)
                    .map(|a| {
                        (a.id.clone(), a.node_id.clone(), a.is_canary(), a.deployment_id.clone())
                    });
                let Some((alloc_id, node, canary, deployment_id)) = alloc else {
                    self.line(format!("no live allocation {}", args[0]));
                    return std::mem::take(&mut self.out);
                };
                let status = AllocDeploymentStatus {
                    healthy: Some(args[1] == "healthy"),
                    timestamp: Timestamp(self.now.as_u64() as i64 * 1_000_000),
                    canary,
                    modify_index: 0,
                };
                let update = AllocClientUpdate {
                    alloc_id,
                    client_status: AllocClientStatus::Running,
                    deployment_status: Some(status),
                    deployment_id,
                    report_seq: self.next_request + 1,
                    ..AllocClientUpdate::default()
                };
                let request =
                    ClientRequest::AllocUpdate { node_id: node.clone(), updates: vec![update] };
                self.client_rpc(&node, request, false);
            }
            "alloc" => {
                let status = match args[1] {
                    "running" => AllocClientStatus::Running,
                    "complete" => AllocClientStatus::Complete,
                    "failed" => AllocClientStatus::Failed,
                    other => panic!("unknown status {other}"),
                };
                let state = self.server(to).expect("up").state();
                let alloc = state
                    .allocs()
                    .filter(|a| a.name == args[0] && !a.client_status.is_terminal())
                    .max_by_key(|a| a.create_index)
                    .map(|a| (a.id.clone(), a.node_id.clone()));
                let Some((alloc_id, node)) = alloc else {
                    self.line(format!("no live allocation {}", args[0]));
                    return std::mem::take(&mut self.out);
                };
                self.alloc_update(&node, &alloc_id, status);
            }
            "read" => {
                let mut query = read_query(args);
                // Scripts name allocations; the API takes their IDs.
                if let Query::Alloc { alloc_id } = &mut query {
                    let state = self.server(to).expect("up").state();
                    let named = state.allocs().find(|a| a.name == *alloc_id);
                    *alloc_id = named.map_or(alloc_id.clone(), |a| a.id.clone());
                }
                let request = ApiRequest::Read {
                    query,
                    min_index: number("min", 0),
                    wait_ms: number("wait", 0),
                };
                self.api(to, "", request);
            }
            "node-allocs" => self.node_allocs(args[0], number("min", 0), number("wait", 0)),
            "show" => {
                let on = number("on", self.leader().unwrap_or(1));
                let lines = self.server(on).map(|s| show(s.state(), args[0])).unwrap_or_default();
                for line in lines {
                    self.line(line);
                }
            }
            "heartbeats" => {
                let names: Vec<String> = self.clients.keys().cloned().collect();
                let lines: Vec<String> = names
                    .iter()
                    .map(|name| {
                        let deadline = self.server(to).and_then(|s| s.heartbeat_deadline(name));
                        let text = deadline.map_or("no timer".to_string(), |d| {
                            format!("down after {}", d - self.now)
                        });
                        format!("{name} {text}")
                    })
                    .collect();
                for line in lines {
                    self.line(line);
                }
            }
            "defer-passes" => {
                self.deferred.insert(args[0].parse().expect("id"));
            }
            "run-passes" | "fail-passes" => {
                let id: NodeId = args[0].parse().expect("id");
                self.deferred.remove(&id);
                let held: Vec<(NodeId, SchedulePass)> = self.held.drain(..).collect();
                for (server, pass) in held {
                    if server != id {
                        self.held.push((server, pass));
                        continue;
                    }
                    let now = self.server_now(id);
                    let Some(s) = self.server_mut(id) else { continue };
                    if *name == "run-passes" {
                        s.handle_schedule_output(now, pass.pass_id, pass.run());
                    } else {
                        s.handle_schedule_failed(now, pass.pass_id, "the pass panicked");
                    }
                    self.pump(id);
                }
                self.stabilize();
            }
            "defer-snapshots" => {
                self.snapshots_deferred.insert(args[0].parse().expect("id"));
            }
            "encode-snapshots" => {
                let id: NodeId = args[0].parse().expect("id");
                self.snapshots_deferred.remove(&id);
                let (mine, others) =
                    self.snapshots_held.drain(..).partition(|(server, _)| *server == id);
                self.snapshots_held = others;
                for (_, request) in mine {
                    let now = self.now;
                    let Some(server) = self.server_mut(id) else { continue };
                    server.handle_snapshot_encoded(now, request.index, request.encode());
                    self.pump(id);
                }
                self.stabilize();
            }
            "log" => self.log(),
            "status" => self.status(),
            "join" => self.join(args[0].parse().expect("id")),
            "autopilot" => self.autopilot(args),
            "gossip" => {
                let members: Vec<(NodeId, MemberStatus)> = args
                    .iter()
                    .map(|word| {
                        let (id, status) = word.split_once(':').unwrap_or((word, "alive"));
                        let status = match status {
                            "alive" => MemberStatus::Alive,
                            "failed" => MemberStatus::Failed,
                            "left" => MemberStatus::Left,
                            other => panic!("unknown member status {other}"),
                        };
                        (id.parse().expect("id"), status)
                    })
                    .collect();
                self.set_gossip(&members);
            }
            "raft" => self.raft_config(number("on", to)),
            "set-autopilot" => {
                let current = self.server(to).expect("up").autopilot_config().config;
                let config = autopilot_settings(current, args);
                let cas_index = kv(args, "cas").map(|v| v.parse().expect("an index"));
                self.api(to, "", ApiRequest::AutopilotSetConfig { config, cas_index });
            }
            "remove-peer" => {
                let request = ApiRequest::RaftRemovePeer {
                    id: kv(args, "id").map(|v| v.parse().expect("id")),
                    address: kv(args, "address").map(str::to_owned),
                };
                self.api(to, "", request);
            }
            other => panic!("unknown command {other}"),
        }
        std::mem::take(&mut self.out)
    }

    /// Each server's Raft log bounds and its snapshots: in force, and handed out.
    fn log(&mut self) {
        let mut lines = Vec::new();
        for (id, peer) in &self.peers {
            let Some(server) = &peer.server else { continue };
            let raft = server.raft();
            let in_flight = server.snapshot_in_flight().map_or("-".into(), |i| i.to_string());
            lines.push(format!(
                "n{id} log={}..{} snapshot={} on_disk={} in_flight={in_flight} held={}",
                raft.first_index(),
                raft.last_index(),
                raft.snapshot_meta().index,
                peer.disk.snapshot.meta.index,
                self.snapshots_held.iter().filter(|(s, _)| s == id).count(),
            ));
        }
        for line in lines {
            self.line(line);
        }
    }

    fn status(&mut self) {
        let mut lines = Vec::new();
        for (id, peer) in &self.peers {
            let Some(server) = &peer.server else {
                lines.push(format!("n{id} down"));
                continue;
            };
            let raft = server.raft();
            let (broker, blocked) =
                server.broker_stats().map_or((String::from("-"), 0), |(s, b)| {
                    (format!("ready={} unacked={}", s.total_ready, s.total_unacked), b)
                });
            lines.push(format!(
                "n{id} {:?} term={} loop={} epoch={} applied={} state_index={} broker={broker} blocked={blocked}",
                raft.role(),
                raft.term(),
                server.is_leader_loop_active(),
                server.leader_epoch(),
                raft.applied_index(),
                server.state().latest_index(),
            ));
        }
        for line in lines {
            self.line(line);
        }
    }
}
