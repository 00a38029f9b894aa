//! The one task that owns the node hosts: it takes an input, hands it to the host it is
//! for, delivers the frames the hosts sent each other, answers the API calls whose
//! replies came out, and sleeps until the next input or the hosts' next deadline.

use super::local::{LocalNet, LocalTransport};
use super::log::LogObserver;
use super::{AgentRoles, AgentStatus, DevConfig, Input, RawExecDrivers, ServerMember};
use crate::driver::raw_exec::{RawExec, RawExecConfig};
use crate::fingerprint::fingerprint;
use crate::host::{ClientHost, HostError, InlinePassRunner, PassRunner, ServerHost, Transport};
use crate::store::RaftStore;
use crate::store::mem::MemStore;
use drover_core::client::{ClientConfig, TaskAction};
use drover_core::id::IdGen;
use drover_core::model::{DriverInfo, Node, NodeStatus};
use drover_core::server::{ApiCall, ApiReply, ServerConfig};
use drover_core::time::Millis;
use rustix::process::Signal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// In `-dev` the only server elects itself within this (and twice this at most): short,
/// so the agent is ready in well under a second.
const DEV_ELECTION_TIMEOUT_MS: u64 = 100;
const DEV_RAFT_HEARTBEAT_MS: u64 = 50;
/// The client's address inside the process (the server replies to it).
const DEV_CLIENT_ADDR: &str = "client.local";
/// At shutdown, how long tasks get after their kill signal before SIGKILL.
const SHUTDOWN_KILL_TIMEOUT_MS: u64 = 5_000;
/// How long to wait for tasks to die after SIGKILL before giving up on them.
const SHUTDOWN_KILL_WAIT_MS: u64 = 5_000;
/// How often the shutdown looks whether every task is gone.
const SHUTDOWN_POLL_MS: u64 = 10;
/// How long the loop sleeps when no host has a deadline.
const IDLE_SLEEP_MS: u64 = 60_000;

type DevServer = ServerHost<LocalTransport, MemStore, InlinePassRunner>;
type DevClient = ClientHost<LocalTransport, RawExecDrivers>;

/// The unix-millisecond clock the hosts read: the wall clock at start, then a monotonic
/// clock, so `now` never goes backwards whatever happens to the wall clock.
pub(super) struct Clock {
    start_unix_ms: u64,
    start: Instant,
}

impl Clock {
    pub(super) fn new() -> Clock {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { start_unix_ms: since_epoch.as_millis() as u64, start: Instant::now() }
    }

    pub(super) fn now(&self) -> Millis {
        Millis(self.start_unix_ms + self.start.elapsed().as_millis() as u64)
    }

    /// How long from now until `deadline`.
    pub(super) fn until(&self, deadline: Millis) -> Duration {
        Duration::from_millis(deadline.0.saturating_sub(self.now().0))
    }
}

/// The hosts of one agent and the callers waiting on them.
pub struct NodeLoop {
    clock: Clock,
    net: LocalNet,
    rpc_addr: String,
    server: DevServer,
    client: Option<DevClient>,
    /// The client starts once the server leads, so its first registration succeeds.
    client_waiting: Option<(ClientConfig, RawExecDrivers)>,
    replies: BTreeMap<u64, oneshot::Sender<ApiReply>>,
    next_request: u64,
    identity: AgentStatus,
    known_leader: Arc<AtomicBool>,
    log: LogObserver,
}

impl NodeLoop {
    /// A server and a client in one process, talking through a [`LocalNet`].
    pub fn start_dev(
        config: &DevConfig,
        inputs: mpsc::Sender<Input>,
        known_leader: Arc<AtomicBool>,
    ) -> Result<NodeLoop, HostError> {
        let clock = Clock::new();
        let net = LocalNet::default();
        let mut server_config =
            ServerConfig::new(1, config.rng_seed, BTreeMap::from([(1, config.rpc_addr.clone())]));
        server_config.region = config.region.clone();
        server_config.autopilot = config.autopilot;
        server_config.raft.election_timeout_ms = DEV_ELECTION_TIMEOUT_MS;
        server_config.raft.heartbeat_interval_ms = DEV_RAFT_HEARTBEAT_MS;
        let server = ServerHost::start(
            clock.now(),
            server_config,
            net.endpoint(&config.rpc_addr),
            MemStore::new(),
            InlinePassRunner::default(),
        )?;
        let node = dev_node(config);
        let identity = AgentStatus {
            region: config.region.clone(),
            datacenter: config.datacenter.clone(),
            node_name: config.node_name.clone(),
            server_id: 1,
            rpc_addr: config.rpc_addr.clone(),
            node_id: node.id.clone(),
            roles: AgentRoles { dev: true, server: true, client: true, bootstrap_expect: 1 },
            members: vec![ServerMember {
                name: format!("{}.{}", config.node_name, config.region),
                region: config.region.clone(),
                datacenter: config.datacenter.clone(),
                server_id: 1,
                rpc_addr: config.rpc_addr.clone(),
            }],
            regions: vec![config.region.clone()],
            ..AgentStatus::default()
        };
        let raw_exec = RawExec::new(RawExecConfig {
            executor: config.executor.clone(),
            state_root: config.data_dir.join("executor"),
        });
        let drivers = RawExecDrivers::new(
            raw_exec,
            config.data_dir.join("alloc"),
            node.clone(),
            config.region.clone(),
            inputs,
        );
        let client_config =
            ClientConfig::new(node, vec![config.rpc_addr.clone()], config.rng_seed ^ 0xc11e);
        Ok(NodeLoop {
            clock,
            net,
            rpc_addr: config.rpc_addr.clone(),
            server,
            client: None,
            client_waiting: Some((client_config, drivers)),
            replies: BTreeMap::new(),
            next_request: 0,
            identity,
            known_leader,
            log: LogObserver::new(config.log.clone()),
        })
    }

    /// Runs until shut down (every task stopped first) or until a host fails.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) -> Result<(), HostError> {
        loop {
            let sleep = self
                .next_deadline()
                .map_or(Duration::from_millis(IDLE_SLEEP_MS), |d| self.clock.until(d));
            let input = tokio::select! {
                input = inputs.recv() => input,
                () = tokio::time::sleep(sleep) => {
                    self.handle_timeouts()?;
                    continue;
                }
            };
            match input {
                None => return Ok(()),
                Some(Input::Shutdown(done)) => {
                    self.shutdown(&mut inputs).await;
                    let _ = done.send(());
                    return Ok(());
                }
                Some(input) => self.handle(input)?,
            }
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        let client = self.client.as_ref().and_then(DevClient::next_deadline);
        self.server.next_deadline().into_iter().chain(client).min()
    }

    fn handle(&mut self, input: Input) -> Result<(), HostError> {
        let now = self.clock.now();
        match input {
            Input::Api { region, request, reply } => {
                self.next_request += 1;
                let request_id = self.next_request;
                self.replies.insert(request_id, reply);
                self.server.handle_api_call(now, ApiCall { request_id, region, request })?;
            }
            Input::Driver(event) => {
                if let Some(client) = self.client.as_mut() {
                    client.handle_driver_event(now, event);
                }
            }
            Input::ClientTaskAction { alloc_id, task, action, reply } => {
                let client = self.client.as_mut();
                let _ = reply.send(act_here(client, now, &alloc_id, task, &action));
            }
            Input::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Input::Shutdown(_) => unreachable!("handled by the loop"),
        }
        self.settle()
    }

    fn handle_timeouts(&mut self) -> Result<(), HostError> {
        let now = self.clock.now();
        if self.server.next_deadline().is_some_and(|d| d <= now) {
            self.server.handle_timeout(now)?;
        }
        if let Some(client) = self.client.as_mut()
            && client.next_deadline().is_some_and(|d| d <= now)
        {
            client.handle_timeout(now);
        }
        self.settle()
    }

    /// Delivers frames between the hosts until none is left, starts the client once the
    /// server leads, and answers what the server answered.
    fn settle(&mut self) -> Result<(), HostError> {
        loop {
            if self.client.is_none()
                && self.server.server().is_leader_loop_active()
                && let Some((config, drivers)) = self.client_waiting.take()
            {
                let endpoint = self.net.endpoint(DEV_CLIENT_ADDR);
                self.client = Some(ClientHost::start(self.clock.now(), config, endpoint, drivers)?);
            }
            let Some(frame) = self.net.pop() else { break };
            let now = self.clock.now();
            if frame.to == self.rpc_addr {
                self.server.handle_frame(now, &frame.from, &frame.bytes)?;
            } else if let Some(client) =
                self.client.as_mut().filter(|_| frame.to == DEV_CLIENT_ADDR)
            {
                client.handle_frame(now, &frame.from, &frame.bytes);
            }
        }
        while let Some(response) = self.server.poll_api_reply() {
            if let Some(reply) = self.replies.remove(&response.request_id) {
                // A caller that went away (a closed HTTP connection) needs no answer.
                let _ = reply.send(response.reply);
            }
        }
        while let Some(forward) = self.server.poll_region_forward() {
            // One region per agent until federation: Nomad's answer for an unknown one.
            let message = "No path to region".to_owned();
            if let Some(reply) = self.replies.remove(&forward.call.request_id) {
                let _ = reply.send(ApiReply::Error { message });
            }
        }
        let leader = self.server.server().leader_addr().is_some();
        self.known_leader.store(leader, Ordering::Relaxed);
        self.log.server(self.server.server());
        while let Some(event) = self.client.as_mut().and_then(|c| c.poll_event()) {
            self.log.client(&event);
        }
        Ok(())
    }

    fn status(&self) -> AgentStatus {
        let own = (self.identity.server_id, self.rpc_addr.clone());
        let addr_of = |id| if id == own.0 { own.1.clone() } else { String::new() };
        let client = self.client.as_ref();
        AgentStatus {
            node_registered: client.is_some_and(|c| c.client().is_registered()),
            allocs_running_here: client.map_or(0, |c| c.drivers().running_count()),
            counters: self.counters(),
            ..server_status(&self.server, &self.identity, addr_of)
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = server_counters(&self.server);
        if let Some(client) = &self.client {
            let c = client.counters();
            counters.extend([
                ("client.frames_undecodable", c.frames_undecodable),
                ("client.sends_failed", c.sends_failed),
                ("client.allocs", client.client().alloc_ids().count() as u64),
                ("client.events_dropped", client.client().events_dropped()),
            ]);
        }
        counters
    }

    /// Stops every task: SIGTERM, then SIGKILL for what outlived the timeout.
    /// Exits keep arriving on `inputs` meanwhile and go to the client.
    async fn shutdown(&mut self, inputs: &mut mpsc::Receiver<Input>) {
        let Some(client) = self.client.as_ref() else { return };
        client.drivers().signal_all(Signal::TERM);
        if !self.await_tasks_gone(inputs, SHUTDOWN_KILL_TIMEOUT_MS).await {
            if let Some(client) = self.client.as_ref() {
                client.drivers().signal_all(Signal::KILL);
            }
            self.await_tasks_gone(inputs, SHUTDOWN_KILL_WAIT_MS).await;
        }
    }

    /// Whether every task ended within `timeout_ms`.
    async fn await_tasks_gone(
        &mut self,
        inputs: &mut mpsc::Receiver<Input>,
        timeout_ms: u64,
    ) -> bool {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let running = self.client.as_ref().map_or(0, |c| c.drivers().running_count());
            if running == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let poll = tokio::time::sleep(Duration::from_millis(SHUTDOWN_POLL_MS));
            tokio::select! {
                Some(Input::Driver(event)) = inputs.recv() => {
                    let _ = self.handle(Input::Driver(event));
                }
                () = poll => {}
            }
        }
    }
}

/// What a server host says of its Raft and its leader, over the agent's `identity`;
/// `addr_of` names each voter's RPC address.
pub(super) fn server_status<T: Transport, S: RaftStore, R: PassRunner>(
    host: &ServerHost<T, S, R>,
    identity: &AgentStatus,
    addr_of: impl Fn(u64) -> String,
) -> AgentStatus {
    let server = host.server();
    let raft = server.raft();
    let voters = raft.membership().voters.iter().map(|&id| (id, addr_of(id)));
    AgentStatus {
        leader_addr: server.leader_addr(),
        is_leader: server.is_leader_loop_active(),
        raft_term: raft.term(),
        raft_commit_index: raft.commit_index(),
        raft_applied_index: raft.applied_index(),
        raft_last_index: raft.last_index(),
        raft_voters: voters.collect(),
        raft_servers: server.raft_servers(),
        counters: server_counters(host),
        ..identity.clone()
    }
}

/// A server host's counters, and its broker's while it leads.
pub(super) fn server_counters<T: Transport, S: RaftStore, R: PassRunner>(
    host: &ServerHost<T, S, R>,
) -> Vec<(&'static str, u64)> {
    let s = host.counters();
    let mut counters = vec![
        ("server.frames_undecodable", s.frames_undecodable),
        ("server.frames_unexpected", s.frames_unexpected),
        ("server.sends_failed", s.sends_failed),
        ("server.api_replies_dropped", s.api_replies_dropped),
        ("server.raft_syncs", s.syncs),
        ("server.store_errors", s.store_errors),
        ("server.undecodable_entries", host.server().undecodable_entries()),
        ("server.raft_messages_foreign", host.server().raft_messages_foreign()),
    ];
    if let Some((broker, blocked)) = host.server().broker_stats() {
        counters.extend([
            ("broker.total_ready", broker.total_ready as u64),
            ("broker.total_unacked", broker.total_unacked as u64),
            ("broker.total_pending", broker.total_pending as u64),
            ("broker.total_failed", broker.total_failed as u64),
            ("broker.total_blocked", blocked as u64),
        ]);
    }
    counters
}

/// The client's node: the machine's fingerprint, raw_exec enabled, ready to register.
fn dev_node(config: &DevConfig) -> Node {
    let mut ids = IdGen::new(config.rng_seed ^ 0x40de);
    fingerprinted_node(config, ids.next_id(), ids.next_id())
}

/// The node a client registers: the machine's fingerprint under `id`, raw_exec enabled.
pub(super) fn fingerprinted_node(config: &DevConfig, id: String, secret_id: String) -> Node {
    let mut node = Node {
        id,
        secret_id,
        name: config.node_name.clone(),
        datacenter: config.datacenter.clone(),
        http_addr: config.http_addr.clone(),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    fingerprint(&config.data_dir).apply_to(&mut node);
    let raw_exec = DriverInfo {
        detected: true,
        healthy: true,
        health_description: "Healthy".into(),
        ..DriverInfo::default()
    };
    node.drivers.insert("raw_exec".into(), raw_exec);
    node.attributes.insert("driver.raw_exec".into(), "1".into());
    node.compute_class();
    node
}

/// An operator's action on an allocation's tasks on this agent's own client; an agent
/// without a client has no allocation to act on.
pub(super) fn act_here<T: Transport>(
    client: Option<&mut ClientHost<T, RawExecDrivers>>,
    now: Millis,
    alloc_id: &str,
    task: Option<String>,
    action: &TaskAction,
) -> Result<(), String> {
    match client {
        Some(client) => client.handle_task_action(now, alloc_id, task.as_deref(), action),
        None => Err(format!("Unknown allocation \"{alloc_id}\"")),
    }
}
