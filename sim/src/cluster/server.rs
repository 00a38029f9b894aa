//! One simulated server machine: a `runtime::host::ServerHost` over the simulated network,
//! a disk from the world's registry (so it survives a crash), inline scheduling passes, a
//! drifting clock, and SWIM gossip with its region's servers (`runtime::host::
//! GossipMembership`, as the agent runs it) whose datagrams cross the same faulty network
//! as Raft's, so the host learns its region's servers as late or as wrongly as gossip
//! does. After every input it tells the host what gossip changed, sends what the host and
//! gossip queued, routes API answers and calls for another region, and shows the checker
//! what it now holds.

use super::net::{self, AddrNames, Outbox, SimMsg, Wake};
use super::params::SERVERS_PER_REGION;
use super::world::{NodeKey, ServerView, Shared, lock, region_name, trace};
use crate::checkers::cluster::StepTime;
use crate::clock::Clock;
use drover_core::gossip::{GossipMembership, Member, MemberEvent};
use drover_core::raft::{Persist, Restored, WriteId};
use drover_core::server::{ApiCall, ApiReply, ApiResponse, GcConfig, ServerConfig};
use drover_core::time::Millis;
use drover_runtime::host::{HostError, InlinePassRunner, ServerHost};
use drover_runtime::store::mem::MemStore;
use drover_runtime::store::{RaftStore, StoreError};
use madsim::net::Endpoint;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// API calls a server remembers the caller of; past this the oldest caller is forgotten
/// (its answer is dropped, as a closed connection's would be).
pub const CALLERS_MAX: usize = 4096;

/// GC thresholds scaled down so a ten-minute run collects: the state must stay bounded
/// under churn (reliability.md §3, Nomad #18113).
pub const SIM_GC: GcConfig = GcConfig {
    interval_ms: 30_000,
    eval_gc_threshold_ms: 60_000,
    batch_eval_gc_threshold_ms: 120_000,
    job_gc_threshold_ms: 120_000,
    node_gc_threshold_ms: 600_000,
    reap_batch_max: 1024,
};

/// A server's disk: the world's `MemStore`, shared so the registry keeps it when madsim
/// kills the node.
pub struct SharedDisk(pub Arc<Mutex<MemStore>>);

impl SharedDisk {
    fn disk(&self) -> std::sync::MutexGuard<'_, MemStore> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RaftStore for SharedDisk {
    fn write(&mut self, persist: Persist) -> Result<(), StoreError> {
        self.disk().write(persist)
    }

    fn sync(&mut self) -> Result<WriteId, StoreError> {
        self.disk().sync()
    }

    fn restored(&self) -> Restored {
        self.disk().restored()
    }
}

type Host = ServerHost<Outbox, SharedDisk, InlinePassRunner>;

struct ServerNode {
    world: Shared,
    key: NodeKey,
    ep: Endpoint,
    clock: Clock,
    /// Who to answer for each API call this server took, by request id.
    callers: BTreeMap<u64, SocketAddr>,
    /// Answers from another region waiting to go back to their callers.
    relayed: Vec<ApiResponse>,
    peers: AddrNames,
    membership: GossipMembership,
}

/// A server's configuration: the region's first servers bootstrap it together; a server
/// that replaced one starts with no servers and waits for the leader's autopilot to add it.
pub fn config(world: &Shared, key: NodeKey) -> ServerConfig {
    let mut world = lock(world);
    let servers = if world.joiners.contains(&key) {
        BTreeMap::new()
    } else {
        (1..=SERVERS_PER_REGION as u8)
            .map(|i| (u64::from(i), NodeKey::server(key.region, i).addr().to_string()))
            .collect()
    };
    let id = u64::from(key.index);
    let seed = world.boot_seed(key);
    let mut config = ServerConfig::new(id, seed, servers);
    config.region = region_name(key.region);
    config.raft.election_timeout_ms = world.params.election_timeout_ms;
    config.raft.heartbeat_interval_ms = world.params.heartbeat_interval_ms;
    config.raft.snapshot_threshold_entries = world.params.snapshot_threshold_entries;
    config.gc = SIM_GC;
    config.workers_count = 2;
    // As the agent sets it from `bootstrap_expect`: a dead server is removed only while
    // this many voters remain, so a replacement is promoted before its predecessor goes.
    config.autopilot.min_quorum = SERVERS_PER_REGION as usize;
    config
}

/// The server machine's whole life, from boot (or reboot) to being killed.
pub async fn run(world: Shared, key: NodeKey) {
    let ep = match Endpoint::bind(key.addr()).await {
        Ok(ep) => ep,
        Err(error) => return fail(&world, key, format!("cannot bind: {error}")),
    };
    let config = config(&world, key);
    let (clock, disk) = {
        let mut w = lock(&world);
        (w.clock(key), w.disk(key))
    };
    let now = clock.local(lock(&world).global_now());
    let membership = start_gossip(&world, key, now, config.rng_seed);
    let mut node = ServerNode {
        world,
        key,
        ep,
        clock,
        callers: BTreeMap::new(),
        relayed: Vec::new(),
        peers: AddrNames::default(),
        membership,
    };
    let disk_handle = Arc::clone(&disk);
    let host =
        Host::start(now, config, Outbox::default(), SharedDisk(disk), InlinePassRunner::default());
    let mut host = match host {
        Ok(host) => host,
        // Starting may persist (a restored log's torn tail cut, a hard state written), so
        // an armed disk fault can fire here as well as in the loop.
        Err(error) => return stopped(&node.world, key, &disk_handle, error, "does not start"),
    };
    {
        let mut w = lock(&node.world);
        let applied = host.server().raft().applied_index();
        trace!(
            w,
            "{} start (applied {applied}, commit {})",
            key.name(),
            host.server().raft().commit_index()
        );
        w.checker.on_server_start((key.region, u64::from(key.index)), applied);
        w.periodic.on_server_start((key.region, u64::from(key.index)));
        let term = host.server().raft().term();
        let view = w.views.entry(key).or_insert(ServerView {
            up: true,
            term,
            leader_loop: false,
            state: None,
            membership: None,
        });
        view.up = true;
    }
    let mut receive = net::recv(&node.ep);
    loop {
        if let Err(error) = node.after_gossip(&mut host) {
            return stopped(&node.world, key, &disk_handle, error, "host stopped");
        }
        node.flush(&mut host).await;
        node.observe(&host);
        let slow_ms = lock(&node.world).slow_ms.get(&key).copied().unwrap_or(0);
        if slow_ms > 0 {
            madsim::time::sleep(Duration::from_millis(slow_ms)).await;
        }
        let deadline = host.next_deadline().into_iter().chain(node.membership.poll_timeout()).min();
        let deadline = deadline.map(|d| node.instant_of(d));
        let result = match net::wait(&node.ep, &mut receive, deadline).await {
            Wake::Message(message, from) => {
                node.handle(&mut host, message, from).and_then(|()| node.handle_due(&mut host))
            }
            Wake::Timeout => node.handle_timeout(&mut host),
            Wake::Closed => return,
        };
        if let Err(error) = result {
            return stopped(&node.world, key, &disk_handle, error, "host stopped");
        }
    }
}

/// The host refused an input: a disk fault the seed injected, or a violation.
fn stopped(
    world: &Shared,
    key: NodeKey,
    disk: &Arc<Mutex<MemStore>>,
    error: HostError,
    what: &str,
) {
    let injected =
        matches!(error, HostError::Store(_)) && SharedDisk(Arc::clone(disk)).disk().take_fault();
    if injected {
        return disk_failed(world, key, &error);
    }
    fail(world, key, format!("{what}: {error}"))
}

/// The disk failed a write or sync: the host stopped without reporting it durable. The
/// server is down from now on (its leader loop with it); the supervisor kills the
/// machine, crashing its disk, and restarts it later.
fn disk_failed(world: &Shared, key: NodeKey, error: &HostError) {
    let mut w = lock(world);
    trace!(w, "{} stops: {error}", key.name());
    if let Some(view) = w.views.get_mut(&key) {
        view.up = false;
        view.leader_loop = false;
    }
    w.checker.on_server_down((key.region, u64::from(key.index)));
    w.disk_failed.insert(key);
}

/// The server's gossip, as the agent's `start_gossip` builds it: its region's pool and
/// the pool of every region's servers, seeded from its boot's seed so the run replays,
/// announced to every other server (its `retry_join`). Its own region's members are the
/// Raft peers it is told of; the others are where it forwards a request naming their
/// region. The gossip address is the RPC address: the datagrams travel as their own kind
/// of message on the same endpoint.
fn start_gossip(world: &Shared, key: NodeKey, now: Millis, boot_seed: u64) -> GossipMembership {
    let w = lock(world);
    let member = Member {
        name: format!("{}.{}", key.name(), region_name(key.region)),
        region: region_name(key.region),
        datacenter: "dc1".to_owned(),
        server_id: u64::from(key.index),
        rpc_addr: key.addr().to_string(),
        gossip_addr: key.addr().to_string(),
        // A restarted server must win over every identity it had before, including the
        // ones gossip renewed it to (a generation each time it was declared down), so the
        // boot count takes the high bits.
        generation: u32::try_from(w.boots(key) << 16).unwrap_or(u32::MAX),
        // Announced once its Raft committed an entry (`handle_raft_state`).
        has_raft_state: false,
        cluster_id: 0,
    };
    let servers: Vec<NodeKey> = w.members.values().flatten().copied().collect();
    let region_servers = servers.iter().filter(|peer| peer.region == key.region).count();
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut membership = GossipMembership::new(
        member,
        size(region_servers),
        size(servers.len()),
        boot_seed ^ 0x6055,
    );
    for peer in servers.into_iter().filter(|&peer| peer != key) {
        // Refused only for this server's own address, which is filtered out.
        let _refused = membership.handle_join(now, &peer.addr().to_string());
    }
    membership
}

fn fail(world: &Shared, key: NodeKey, reason: String) {
    lock(world).checker.violation(format!("{}: {reason}", key.name()));
}

impl ServerNode {
    fn local_now(&self) -> Millis {
        self.clock.local(lock(&self.world).global_now())
    }

    /// The simulated instant this node's clock reads `deadline`.
    fn instant_of(&self, deadline: Millis) -> std::time::Instant {
        let world = lock(&self.world);
        let global = self.clock.global_at(world.global_now(), deadline);
        world.instant_at(global)
    }

    fn handle(
        &mut self,
        host: &mut Host,
        message: SimMsg,
        from: SocketAddr,
    ) -> Result<(), HostError> {
        let now = self.local_now();
        match message {
            SimMsg::Frame(bytes) => host.handle_frame(now, self.peers.name(from), &bytes),
            SimMsg::Api(call) => {
                if self.callers.len() >= CALLERS_MAX {
                    self.callers.pop_first();
                }
                self.callers.insert(call.request_id, from);
                host.handle_api_call(now, call)
            }
            SimMsg::ApiReply(response) => {
                // Another region's answer: sent on to the caller by the next flush.
                self.relayed.push(response);
                Ok(())
            }
            SimMsg::Gossip(datagram) => {
                // A malformed datagram changes nothing; gossip is lossy anyway.
                let _refused = self.membership.handle_data(now, &datagram);
                Ok(())
            }
        }
    }

    /// The node woke at the earlier of the host's and gossip's deadlines.
    fn handle_timeout(&mut self, host: &mut Host) -> Result<(), HostError> {
        let now = self.local_now();
        let gossip_due = self.membership.poll_timeout().is_some_and(|d| d <= now);
        if gossip_due {
            self.membership.handle_timeout(now);
        }
        // Unless gossip's deadline woke the node, the host's did.
        if !gossip_due || host.next_deadline().is_some_and(|d| d <= now) {
            host.handle_timeout(now)?;
        }
        Ok(())
    }

    /// Runs the host's and gossip's timers that fell due while the node handled a message:
    /// `net::wait` hands a waiting message over a passed deadline, so a node whose mailbox
    /// never empties (a slow one under steady gossip) would otherwise never run them (a
    /// leader's lease lapsing among them), where the agent's `select!`, polling its
    /// branches in random order, does.
    fn handle_due(&mut self, host: &mut Host) -> Result<(), HostError> {
        let now = self.local_now();
        if self.membership.poll_timeout().is_some_and(|d| d <= now) {
            self.membership.handle_timeout(now);
        }
        if host.next_deadline().is_some_and(|d| d <= now) {
            host.handle_timeout(now)?;
        }
        Ok(())
    }

    /// Announces this server's Raft state to the pool once it has one, records what gossip
    /// changed in the trace, and tells the host the region's servers when that changed.
    fn after_gossip(&mut self, host: &mut Host) -> Result<(), HostError> {
        let now = self.local_now();
        let raft = host.server().raft();
        let (commit_index, cluster_id) = (raft.commit_index(), raft.membership().cluster_id);
        self.membership.handle_raft_state(now, commit_index, cluster_id);
        let mut w = lock(&self.world);
        while let Some(event) = self.membership.poll_event() {
            let (member, what) = match &event {
                MemberEvent::Up(member) => (member, "up"),
                MemberEvent::Down(member) => (member, "down"),
            };
            trace!(
                w,
                "{} gossip: {} {what} (generation {})",
                self.key.name(),
                member.name,
                member.generation
            );
        }
        let Some(view) = self.membership.poll_view() else { return Ok(()) };
        if w.tracing() {
            let view_text: Vec<String> =
                view.iter().map(|m| format!("{}:{:?}", m.id, m.status)).collect();
            trace!(w, "{} told members {}", self.key.name(), view_text.join(" "));
        }
        drop(w);
        host.handle_members(now, view)
    }

    /// Sends every frame the host queued, every gossip datagram, every API answer to its
    /// caller and every call for another region to one of that region's servers.
    async fn flush(&mut self, host: &mut Host) {
        let frames = std::mem::take(&mut host.transport_mut().frames);
        for (to, frame) in frames {
            match to.parse::<SocketAddr>() {
                Ok(to) => {
                    net::send(&self.world, &self.ep, Some(self.key), to, SimMsg::Frame(frame)).await
                }
                Err(_) => fail(&self.world, self.key, format!("unroutable address {to:?}")),
            }
        }
        while let Some((to, datagram)) = self.membership.poll_transmit() {
            match to.parse::<SocketAddr>() {
                Ok(to) => {
                    let message = SimMsg::Gossip(datagram);
                    net::send(&self.world, &self.ep, Some(self.key), to, message).await
                }
                Err(_) => fail(&self.world, self.key, format!("unroutable gossip address {to:?}")),
            }
        }
        let relayed = std::mem::take(&mut self.relayed);
        for response in relayed {
            self.answer(response).await;
        }
        while let Some(response) = host.poll_api_reply() {
            self.answer(response).await;
        }
        while let Some(forward) = host.poll_region_forward() {
            self.forward(forward.region, forward.call).await;
        }
    }

    async fn answer(&mut self, response: ApiResponse) {
        let Some(caller) = self.callers.remove(&response.request_id) else { return };
        net::send(&self.world, &self.ep, Some(self.key), caller, SimMsg::ApiReply(response)).await;
    }

    /// Carries a call naming another region to one of the servers of that region gossip
    /// knows alive, picked by the seed; with none, answers Nomad's "No path to region"
    /// (as the agent's `forward_to_region`).
    async fn forward(&mut self, region: String, call: ApiCall) {
        let servers = self.membership.servers_in(&region);
        let target = {
            let mut w = lock(&self.world);
            let target = w.rng.pick_cloned(&servers);
            let target = target.map(|t| t.parse::<SocketAddr>().map_err(|_| t));
            let via = match &target {
                Some(Ok(to)) => NodeKey::from_addr(*to).map_or(to.to_string(), |k| k.name()),
                Some(Err(unparsed)) => unparsed.clone(),
                None => "nobody (no path to region)".to_owned(),
            };
            trace!(
                w,
                "{} forward #{} to region {region} via {via}",
                self.key.name(),
                call.request_id
            );
            target
        };
        match target {
            Some(Ok(to)) => {
                net::send(&self.world, &self.ep, Some(self.key), to, SimMsg::Api(call)).await
            }
            Some(Err(to)) => fail(&self.world, self.key, format!("unroutable server {to:?}")),
            None => {
                let reply = ApiReply::Error { message: "No path to region".to_owned() };
                self.answer(ApiResponse { request_id: call.request_id, reply }).await;
            }
        }
    }

    /// Publishes this server's view and runs the checkers over it.
    fn observe(&self, host: &Host) {
        let mut w = lock(&self.world);
        w.steps += 1;
        let global = w.global_now();
        let server = host.server();
        let raft = server.raft();
        let (term, leader_loop) = (raft.term(), server.is_leader_loop_active());
        // Only a running leader loop holds a lease (and computing it sorts the voters).
        let lease_until = leader_loop.then(|| raft.lease_until()).flatten();
        let lease_until_global =
            lease_until.map_or(0, |until| self.clock.global_at(global, until).as_u64());
        let local = self.clock.local(global);
        let at = (self.key.region, u64::from(self.key.index));
        let time = StepTime { global_ms: global.as_u64(), lease_until_global, local };
        let notes = w.checker.on_server_step(at, server, time);
        let launched_twice = w.periodic.on_server_step(at, server.state());
        for violation in launched_twice {
            w.checker.violation(violation);
        }
        // The supervisor reads states only in the liveness phase: until then a view holds
        // none, so the server's tables are not shared (and copied on its next write) for
        // nothing. A state is a function of its index (every server applies the same
        // entries), so the view keeps its copy until the index moves.
        let publish = !w.faulty;
        let state = server.state();
        match w.views.get_mut(&self.key) {
            Some(view) => {
                (view.up, view.term, view.leader_loop) = (true, term, leader_loop);
                let stale =
                    view.state.as_ref().is_none_or(|s| s.latest_index() != state.latest_index());
                if publish && stale {
                    view.state = Some(state.clone());
                }
                if publish && view.membership.as_ref() != Some(raft.membership()) {
                    view.membership = Some(raft.membership().clone());
                }
            }
            None => {
                let state = publish.then(|| state.clone());
                let membership = publish.then(|| raft.membership().clone());
                let view = ServerView { up: true, term, leader_loop, state, membership };
                w.views.insert(self.key, view);
            }
        }
        for note in notes {
            trace!(w, "{} {note}", self.key.name());
        }
    }
}
