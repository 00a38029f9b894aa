//! A server agent of a real cluster: Raft and RPC over QUIC with the cluster's CA, the
//! log in a [`FileStore`] under `<data_dir>/server/raft`, scheduling passes on a
//! [`ThreadPassRunner`], and gossip (SWIM over UDP) to find the region's other servers.
//!
//! `<data_dir>/server` also holds what a restart needs beyond Raft's own state:
//! - `server-id`: this server's Raft id, drawn once, so it is the same server after a
//!   restart and every peer knows it by the same number (gossip carries it);
//! - `gossip-generation`: the gossip generation this server last started under; the next
//!   start takes a higher one (see [`next_gossip_generation`]), so a restarted server's
//!   new identity wins over the old one in every peer's memory whatever its clock says;
//! - `peers.json`: the voter set the region bootstrapped with, id → RPC address. It is
//!   written (atomically, synced) before Raft first starts; its presence means "already
//!   bootstrapped", so a restarted server resumes from its log and never bootstraps
//!   again. Raft's own membership lives in its snapshot and log; the file gives the
//!   addresses.
//!
//! Bootstrap (`bootstrap_expect = N`): the server gossips until it knows N servers of its
//! region (itself included), then starts Raft with exactly those as voters. Every server
//! computes the same set from the same members, with ids that are the servers' own.
//! Gossip carries whether each server holds Raft state (`has_raft_state`, announced once
//! its Raft committed an entry); a server with an empty data directory that sees one
//! never bootstraps (Nomad's rule): it starts Raft with no voters and waits for the
//! leader to add it (a learner first, a voter once stable), receiving the log or a
//! snapshot. It writes no `peers.json`; its Raft directory says it joined, so a restart
//! resumes from its log.
//!
//! Once Raft runs, the loop tells the server every gossip change (each server of the
//! region alive, or failed once gossip declared it down), which the leader's autopilot
//! turns into membership changes with `min_quorum` = `bootstrap_expect`.

use super::config::{
    AgentSettings, HttpTls, RPC_PORT_DEFAULT, SERF_PORT_DEFAULT, with_default_port,
};
use super::log::{AgentLog, LogObserver};
use super::node_loop::fingerprinted_node;
use super::node_loop::{Clock, act_here, server_status};
use super::{
    AgentError, AgentRoles, AgentStatus, DevConfig, Input, RawExecDrivers, ServerMember,
    spawn_node_loop,
};
use crate::driver::raw_exec::{RawExec, RawExecConfig};
use crate::host::{
    ClientHost, HostError, PassPoolConfig, ServerHost, ThreadPassRunner, Transport, WakeFn,
    WireMessage, decode_wire, encode_wire,
};
use crate::http::NodeHttp;
use crate::net::gossip_key::GossipKey;
use crate::net::quic::{Inbound, QuicNet, TlsIdentity};
use crate::net::transport::QuicTransport;
use crate::store::file::FileStore;
use crate::tls::{DOMAIN_DEFAULT, Role};
use drover_core::client::ClientConfig;
use drover_core::gossip::{GossipMembership, Member, MemberEvent};
use drover_core::id::IdGen;
use drover_core::server::{ApiCall, ApiReply, ApiResponse, ServerConfig};
use drover_core::time::Millis;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, oneshot};

/// How long the loop sleeps when nothing has a deadline.
const IDLE_SLEEP_MS: u64 = 60_000;
/// How long a client agent waits for a server's answer to a forwarded API call, beyond
/// the call's own blocking wait.
const FORWARD_TIMEOUT_MS: u64 = 10_000;
/// The largest gossip datagram read.
const DATAGRAM_BUF_BYTES: usize = 64 * 1024;

type ClusterServer = ServerHost<QuicTransport, FileStore, ThreadPassRunner>;
type ClusterClient = ClientHost<QuicTransport, RawExecDrivers>;

/// What a cluster agent is made of, beyond its settings.
#[derive(Clone)]
pub struct ClusterConfig {
    pub settings: AgentSettings,
    pub tls: TlsIdentity,
    /// The HTTP address other agents reach this one's API on (the node's `HTTPAddr`).
    pub http_addr: String,
    /// The executor command line (the agent's own binary and `executor`).
    pub executor: Vec<String>,
    pub rng_seed: u64,
    /// Where the agent's log lines go ([`super::log`]).
    pub log: AgentLog,
}

/// Starts a cluster agent's node loop (see the module docs): a server, a client, or both.
pub fn start_cluster(
    config: ClusterConfig,
) -> Result<(super::AgentHandle, super::LoopEnd), AgentError> {
    let settings = &config.settings;
    let node_http = match settings.http_tls {
        HttpTls::Plain => NodeHttp::Plain,
        HttpTls::Https(options) => {
            NodeHttp::https(&config.tls, &settings.region, options.min_version)
                .map_err(|e| AgentError::Setup(format!("HTTPS to other nodes: {e}")))?
        }
    };
    let identity = DevConfig {
        region: settings.region.clone(),
        datacenter: settings.datacenter.clone(),
        node_name: settings.name.clone(),
        rpc_addr: settings.rpc_advertise.clone(),
        http_addr: config.http_addr.clone(),
        node_http,
        data_dir: settings.data_dir.clone(),
        executor: config.executor.clone(),
        rng_seed: config.rng_seed,
        autopilot: settings.autopilot,
        log: config.log.clone(),
    };
    spawn_node_loop(identity, move |identity, inputs, receiver, known_leader| {
        let mut server_loop = ServerLoop::start(config, known_leader)?;
        server_loop.start_client(identity, inputs)?;
        Ok(server_loop.run(receiver))
    })
}

/// Who waits for the answer to a call this agent sent on to a server.
enum Waiting {
    /// A caller of this agent's HTTP API (the agent runs no server).
    Caller(oneshot::Sender<ApiReply>),
    /// The local server, which handed the call on because it names another region: the
    /// id the server gave it.
    Server { request_id: u64, region: String },
}

/// Where an API call that came over the wire came from, to send its answer back.
struct RemoteCaller {
    addr: String,
    /// The call's id on the caller.
    request_id: u64,
    /// Set for another region's server: the name its certificate shows, which this
    /// region's transport does not know.
    other_region_server: Option<String>,
}

/// Whether a certificate name is a server's (`server.<region>.drover`), of any region.
fn names_a_server(name: &str) -> bool {
    name.strip_prefix("server.")
        .and_then(|rest| rest.strip_suffix(DOMAIN_DEFAULT))
        .is_some_and(|region| region.len() > 1 && region.ends_with('.'))
}

/// The server agent's loop: its host once bootstrapped, gossip, and the callers.
struct ServerLoop {
    clock: Clock,
    settings: AgentSettings,
    server_dir: PathBuf,
    rng_seed: u64,
    server_id: u64,
    /// `server.<region>.drover`: what a peer's certificate must say for Raft traffic.
    server_name: String,
    /// `client.<region>.drover`: a client agent of this region.
    client_name: String,
    quic: QuicNet,
    /// Gossip (and the region's servers it shows) and its socket, on a server.
    gossip: Option<(GossipMembership, UdpSocket, std::net::UdpSocket)>,
    /// The region's gossip key (`server { encrypt }`): datagrams are sealed with it and
    /// any that does not open with it is dropped unread.
    gossip_key: Option<GossipKey>,
    /// Datagrams dropped because they did not open with the gossip key.
    gossip_refused: u64,
    client: Option<ClusterClient>,
    host: Option<ClusterServer>,
    /// The pass pool rings this when a result is ready.
    passes_ready: Arc<Notify>,
    replies: BTreeMap<u64, oneshot::Sender<ApiReply>>,
    next_request: u64,
    identity: AgentStatus,
    known_leader: Arc<AtomicBool>,
    /// Frames that claimed to be Raft traffic from a peer without a server certificate.
    frames_refused: u64,
    /// Frames the transport accepted and the network then lost.
    frames_lost: Arc<AtomicU64>,
    /// On a server: API calls from client agents and other regions' servers, by the id
    /// given to the host.
    remote_calls: BTreeMap<u64, RemoteCaller>,
    /// Calls sent on to a server (a client-only agent's to its servers, a server's to
    /// another region) → who waits for the answer and when to give up.
    forwarded: BTreeMap<u64, (Waiting, Millis)>,
    /// The servers a client-only agent forwards API calls to, in turn.
    forward_servers: Vec<String>,
    log: LogObserver,
}

impl ServerLoop {
    fn start(
        config: ClusterConfig,
        known_leader: Arc<AtomicBool>,
    ) -> Result<ServerLoop, AgentError> {
        let settings = config.settings;
        let setup = |what: &str, error: &dyn std::fmt::Display| {
            AgentError::Setup(format!("{what}: {error}"))
        };
        let server_dir = settings.data_dir.join("server");
        let mut rpc_bind = resolve_one(&settings.rpc_bind).map_err(|e| setup("rpc address", &e))?;
        if !settings.server {
            // A client dials the servers; replies come back on the same endpoint.
            rpc_bind.set_port(0);
        }
        let quic = QuicNet::bind(rpc_bind, &config.tls).map_err(|e| setup("RPC", &e))?;
        let clock = Clock::new();
        let (server_id, peers, gossip) = if settings.server {
            std::fs::create_dir_all(&server_dir)
                .map_err(|e| setup(&format!("cannot create {}", server_dir.display()), &e))?;
            let server_id = load_or_create_server_id(&server_dir, config.rng_seed)
                .map_err(|e| setup("the server id", &e))?;
            let peers = load_peers(&server_dir).map_err(|e| setup("the voter set", &e))?;
            let has_raft_state = peers.is_some() || server_dir.join("raft").exists();
            let generation = load_and_advance_generation(&server_dir, clock.now())
                .map_err(|e| setup("the gossip generation", &e))?;
            let started = GossipStart { server_id, generation, has_raft_state };
            let gossip = start_gossip(&settings, &started, config.rng_seed, clock.now())
                .map_err(AgentError::Setup)?;
            (server_id, peers, Some(gossip))
        } else {
            (0, None, None)
        };
        let identity = AgentStatus {
            region: settings.region.clone(),
            datacenter: settings.datacenter.clone(),
            node_name: settings.name.clone(),
            server_id,
            rpc_addr: settings.rpc_advertise.clone(),
            roles: AgentRoles {
                dev: false,
                server: settings.server,
                client: settings.client,
                bootstrap_expect: settings.bootstrap_expect,
            },
            regions: vec![settings.region.clone()],
            ..AgentStatus::default()
        };
        let gossip_key = settings.gossip_key.as_ref().map(|key| key.key());
        let mut server_loop = ServerLoop {
            clock,
            server_name: Role::Server.dns_name(&settings.region, DOMAIN_DEFAULT),
            client_name: Role::Client.dns_name(&settings.region, DOMAIN_DEFAULT),
            settings,
            server_dir,
            rng_seed: config.rng_seed,
            server_id,
            quic,
            gossip,
            gossip_key,
            gossip_refused: 0,
            client: None,
            host: None,
            passes_ready: Arc::new(Notify::new()),
            replies: BTreeMap::new(),
            next_request: 0,
            identity,
            known_leader,
            frames_refused: 0,
            frames_lost: Arc::default(),
            remote_calls: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            forward_servers: Vec::new(),
            log: LogObserver::new(config.log),
        };
        if let Some(peers) = peers {
            server_loop.start_host(peers)?;
        } else if server_loop.server_dir.join("raft").exists() {
            // It joined a running region before: its membership is in its log.
            server_loop.start_host(BTreeMap::new())?;
        } else if server_loop.gossip.is_some() {
            server_loop.maybe_bootstrap()?;
        }
        server_loop.send_gossip();
        Ok(server_loop)
    }

    /// On a client agent, the client host: the node under the id kept in
    /// `<data_dir>/client/node-id`, raw_exec tasks under `<data_dir>/alloc` with their
    /// executors' state under `<data_dir>/executor`, so a restarted agent reattaches to
    /// the tasks it finds alive instead of starting them again.
    fn start_client(
        &mut self,
        identity: &DevConfig,
        inputs: mpsc::Sender<Input>,
    ) -> Result<(), AgentError> {
        if !self.settings.client {
            return Ok(());
        }
        let client_dir = self.settings.data_dir.join("client");
        std::fs::create_dir_all(&client_dir).map_err(|e| {
            AgentError::Setup(format!("cannot create {}: {e}", client_dir.display()))
        })?;
        let (id, secret_id) =
            load_or_create_node_id(&client_dir, self.rng_seed).map_err(AgentError::Setup)?;
        let node = fingerprinted_node(identity, id, secret_id);
        self.identity.node_id = node.id.clone();
        let raw_exec = RawExec::new(RawExecConfig {
            executor: identity.executor.clone(),
            state_root: identity.data_dir.join("executor"),
        });
        let alloc_root = identity.data_dir.join("alloc");
        let drivers = RawExecDrivers::new(
            raw_exec,
            alloc_root,
            node.clone(),
            identity.region.clone(),
            inputs,
        );
        let mut servers: Vec<String> = Vec::new();
        for addr in &self.settings.servers {
            let addr = resolve_one(&with_default_port(addr, RPC_PORT_DEFAULT))
                .map_err(|e| AgentError::Setup(format!("client servers: {e}")))?;
            servers.push(addr.to_string());
        }
        if self.settings.server {
            servers.push(self.settings.rpc_advertise.clone());
        }
        servers.dedup();
        self.forward_servers.clone_from(&servers);
        let config = ClientConfig::new(node, servers, self.rng_seed ^ 0xc11e);
        let client_name = Role::Client.dns_name(&self.settings.region, DOMAIN_DEFAULT);
        let transport =
            QuicTransport::new(self.quic.sender(), self.server_name.clone(), client_name)
                .to_servers_only();
        let client = ClientHost::start(self.clock.now(), config, transport, drivers)
            .map_err(AgentError::Host)?;
        self.client = Some(client);
        Ok(())
    }

    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) -> Result<(), HostError> {
        let mut datagram = vec![0u8; DATAGRAM_BUF_BYTES];
        loop {
            let sleep = self
                .next_deadline()
                .map_or(Duration::from_millis(IDLE_SLEEP_MS), |d| self.clock.until(d));
            let passes_ready = Arc::clone(&self.passes_ready);
            tokio::select! {
                input = inputs.recv() => match input {
                    None => return Ok(()),
                    Some(Input::Shutdown(done)) => {
                        self.shutdown();
                        let _ = done.send(());
                        return Ok(());
                    }
                    Some(input) => self.handle_input(input)?,
                },
                inbound = self.quic.recv() => {
                    if let Some(inbound) = inbound {
                        self.handle_inbound(&inbound)?;
                    }
                }
                received = recv_datagram(self.gossip.as_ref(), &mut datagram) => {
                    if let Ok(len) = received {
                        self.handle_datagram(&datagram[..len])?;
                    }
                }
                () = passes_ready.notified() => {
                    if let Some(host) = self.host.as_mut() {
                        host.handle_passes_ready(self.clock.now())?;
                    }
                }
                () = tokio::time::sleep(sleep) => self.handle_timeouts()?,
            }
            self.settle();
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        let host = self.host.as_ref().and_then(ClusterServer::next_deadline);
        let client = self.client.as_ref().and_then(ClusterClient::next_deadline);
        let gossip = self.gossip.as_ref().and_then(|(g, _, _)| g.poll_timeout());
        let forwarded = self.forwarded.values().map(|(_, deadline)| *deadline).min();
        host.into_iter().chain(client).chain(gossip).chain(forwarded).min()
    }

    fn handle_input(&mut self, input: Input) -> Result<(), HostError> {
        let now = self.clock.now();
        match input {
            Input::Api { region, request, reply } => match self.host.as_mut() {
                Some(host) => {
                    self.next_request += 1;
                    let request_id = self.next_request;
                    self.replies.insert(request_id, reply);
                    host.handle_api_call(now, ApiCall { request_id, region, request })?;
                }
                None if self.settings.server => {
                    // Nomad's answer while the region has not elected its first leader.
                    let _ = reply.send(ApiReply::Error { message: "No cluster leader".into() });
                }
                None => self.forward(now, ApiCall { request_id: 0, region, request }, reply),
            },
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
        Ok(())
    }

    /// A client-only agent's API call, sent to the next server in turn.
    fn forward(&mut self, now: Millis, mut call: ApiCall, reply: oneshot::Sender<ApiReply>) {
        let Some(client) = self.client.as_mut().filter(|_| !self.forward_servers.is_empty()) else {
            let _ = reply.send(ApiReply::Error { message: "No known servers".into() });
            return;
        };
        self.next_request += 1;
        call.request_id = self.next_request;
        let server = &self.forward_servers[call.request_id as usize % self.forward_servers.len()];
        let wait_ms = match &call.request {
            drover_core::server::ApiRequest::Read { wait_ms, .. } => *wait_ms,
            _ => 0,
        };
        let sent =
            encode_wire(&WireMessage::Api(call.clone())).map_err(|e| e.to_string()).and_then(
                |frame| client.transport_mut().send(server, frame).map_err(|e| e.to_string()),
            );
        match sent {
            Ok(()) => {
                let deadline = now + Millis(FORWARD_TIMEOUT_MS + wait_ms);
                self.forwarded.insert(call.request_id, (Waiting::Caller(reply), deadline));
            }
            Err(reason) => {
                let message = format!("cannot reach server {server}: {reason}");
                let _ = reply.send(ApiReply::Error { message });
            }
        }
    }

    /// A frame from a peer. Only a peer holding a server certificate of this region may
    /// speak Raft; a client's certificate may only make client requests and API calls.
    fn handle_inbound(&mut self, inbound: &Inbound) -> Result<(), HostError> {
        let now = self.clock.now();
        let from_server = inbound.peer_is(&self.server_name);
        let from_region = from_server || inbound.peer_is(&self.client_name);
        // Another region's server may only make API calls (a request forwarded to this
        // region) and answer the ones this server forwarded to it.
        let other_region_server = match from_region {
            true => None,
            false => inbound.peer_names.iter().find(|n| names_a_server(n)).cloned(),
        };
        match decode_wire(&inbound.frame) {
            Ok(WireMessage::Api(call)) if from_region || other_region_server.is_some() => {
                let caller = RemoteCaller {
                    addr: inbound.from.to_string(),
                    request_id: call.request_id,
                    other_region_server,
                };
                return self.handle_remote_call(now, caller, call);
            }
            Ok(WireMessage::ApiAnswer(answer)) => {
                // Only the region that was asked may answer: ids are sequential, and a
                // server of a third region must not settle a call it was never sent.
                let asked = match self.forwarded.get(&answer.request_id) {
                    Some((Waiting::Caller(_), _)) => from_server,
                    Some((Waiting::Server { region, .. }, _)) => {
                        inbound.peer_is(&Role::Server.dns_name(region, DOMAIN_DEFAULT))
                    }
                    None => return Ok(()),
                };
                if !asked {
                    self.frames_refused += 1;
                } else if let Some((waiting, _)) = self.forwarded.remove(&answer.request_id) {
                    self.deliver(waiting, answer.reply);
                }
                return Ok(());
            }
            Ok(WireMessage::Api(_)) => {
                self.frames_refused += 1;
                return Ok(());
            }
            // Anything else is this region's business alone.
            _ if !from_region => {
                self.frames_refused += 1;
                return Ok(());
            }
            _ => {}
        }
        // Replies are the client's (from a server only); everything else the server's.
        let is =
            |kind: fn(&WireMessage) -> bool| decode_wire(&inbound.frame).is_ok_and(|m| kind(&m));
        if let Some(client) = self.client.as_mut()
            && (self.host.is_none() || is(|m| matches!(m, WireMessage::Reply(_))))
        {
            if from_server {
                client.handle_frame(now, &inbound.from.to_string(), &inbound.frame);
            } else {
                self.frames_refused += 1;
            }
            return Ok(());
        }
        let Some(host) = self.host.as_mut() else { return Ok(()) };
        if !from_server && is(|m| matches!(m, WireMessage::Peer(_))) {
            self.frames_refused += 1;
            return Ok(());
        }
        host.handle_frame(now, &inbound.from.to_string(), &inbound.frame)
    }

    fn handle_timeouts(&mut self) -> Result<(), HostError> {
        let now = self.clock.now();
        if let Some(host) = self.host.as_mut()
            && host.next_deadline().is_some_and(|d| d <= now)
        {
            host.handle_timeout(now)?;
        }
        if let Some(client) = self.client.as_mut()
            && client.next_deadline().is_some_and(|d| d <= now)
        {
            client.handle_timeout(now);
        }
        let expired: Vec<u64> =
            self.forwarded.iter().filter(|(_, (_, d))| *d <= now).map(|(&id, _)| id).collect();
        for id in expired {
            if let Some((waiting, _)) = self.forwarded.remove(&id) {
                let message = match &waiting {
                    Waiting::Caller(_) => "No response from the servers in time".to_owned(),
                    Waiting::Server { region, .. } => {
                        format!("No response from region {region} in time")
                    }
                };
                self.deliver(waiting, ApiReply::Error { message });
            }
        }
        if let Some((membership, _, _)) = self.gossip.as_mut()
            && membership.poll_timeout().is_some_and(|d| d <= now)
        {
            membership.handle_timeout(now);
            self.after_gossip().map_err(|_| HostError::Stopped)?;
        }
        Ok(())
    }

    /// Sends what gossip wants sent, bootstraps (or joins) once it may, and tells the
    /// server what changed.
    fn after_gossip(&mut self) -> Result<(), AgentError> {
        self.send_gossip();
        let Some((membership, _, _)) = self.gossip.as_mut() else { return Ok(()) };
        while let Some(event) = membership.poll_event() {
            self.log.member(&event);
            if let MemberEvent::Up(member) = event
                && member.region == self.settings.region
                && let Some(transport) = self.host.as_mut().map(ServerHost::transport_mut)
            {
                transport.add_server(&member.rpc_addr);
            }
        }
        if self.host.is_none() {
            self.maybe_bootstrap()?;
        }
        self.tell_members().map_err(AgentError::Host)
    }

    /// Hands the server the gossip view when it changed.
    fn tell_members(&mut self) -> Result<(), HostError> {
        let (Some(host), Some((membership, _, _))) = (self.host.as_mut(), self.gossip.as_mut())
        else {
            return Ok(());
        };
        match membership.poll_view() {
            Some(view) => host.handle_members(self.clock.now(), view),
            None => Ok(()),
        }
    }

    /// Tells the pool this server holds Raft state, and of which Raft group, once its Raft
    /// committed an entry.
    fn announce_raft_state(&mut self) {
        let (Some(host), Some((membership, _, _))) = (self.host.as_ref(), self.gossip.as_mut())
        else {
            return;
        };
        let raft = host.server().raft();
        let (commit_index, cluster_id) = (raft.commit_index(), raft.membership().cluster_id);
        membership.handle_raft_state(self.clock.now(), commit_index, cluster_id);
        self.send_gossip();
    }

    fn send_gossip(&mut self) {
        let Some((membership, _, sender)) = self.gossip.as_mut() else { return };
        while let Some((to, datagram)) = membership.poll_transmit() {
            let sealed = match &self.gossip_key {
                Some(key) => match key.seal(&datagram) {
                    Ok(sealed) => sealed,
                    // No randomness for a nonce: better unsent than sent in the clear.
                    Err(_) => continue,
                },
                None => datagram,
            };
            if let Ok(addr) = to.parse::<SocketAddr>() {
                // Gossip tolerates loss: a full socket buffer drops the datagram.
                let _dropped = sender.send_to(&sealed, addr);
            }
        }
    }

    /// One datagram from the serf port: opened with the gossip key when there is one,
    /// then handed to gossip.
    fn handle_datagram(&mut self, datagram: &[u8]) -> Result<(), HostError> {
        let opened;
        let plain = match &self.gossip_key {
            Some(key) => match key.open(datagram) {
                Some(plain) => {
                    opened = plain;
                    &opened[..]
                }
                None => {
                    self.gossip_refused += 1;
                    return Ok(());
                }
            },
            None => datagram,
        };
        let Some((membership, _, _)) = self.gossip.as_mut() else { return Ok(()) };
        // A malformed datagram changes nothing; gossip is lossy anyway.
        let _refused = membership.handle_data(self.clock.now(), plain);
        self.after_gossip().map_err(|_| HostError::Stopped)
    }

    /// Starts Raft once `bootstrap_expect` servers of the region are known and none of
    /// them holds Raft state; joins instead (Raft with no voters, waiting to be added)
    /// as soon as one does.
    fn maybe_bootstrap(&mut self) -> Result<(), AgentError> {
        let region = self.settings.region.clone();
        let Some((membership, _, _)) = self.gossip.as_ref() else { return Ok(()) };
        let own = membership.identity().clone();
        let members = membership.region_members();
        if members.iter().any(|m| m.region == region && m.has_raft_state) {
            return self.start_host(BTreeMap::new());
        }
        let known: BTreeMap<u64, String> = members
            .into_iter()
            .chain([&own])
            .filter(|m| m.region == region)
            .map(|m| (m.server_id, m.rpc_addr.clone()))
            .collect();
        if known.len() < self.settings.bootstrap_expect as usize {
            return Ok(());
        }
        save_peers(&self.server_dir, &known)
            .map_err(|e| AgentError::Setup(format!("cannot save the voter set: {e}")))?;
        self.start_host(known)
    }

    fn start_host(&mut self, peers: BTreeMap<u64, String>) -> Result<(), AgentError> {
        let store = FileStore::open(&self.server_dir.join("raft"))
            .map_err(|e| AgentError::Host(HostError::Store(e)))?;
        let mut config = ServerConfig::new(self.server_id, self.rng_seed, peers.clone());
        config.region = self.settings.region.clone();
        config.autopilot = self.settings.autopilot;
        let passes_ready = Arc::clone(&self.passes_ready);
        let wake: WakeFn = Arc::new(move || passes_ready.notify_one());
        let runner =
            ThreadPassRunner::with_wake(PassPoolConfig::for_this_machine(), Arc::clone(&wake))
                .map_err(|e| AgentError::Setup(e.to_string()))?;
        let client_name = Role::Client.dns_name(&self.settings.region, DOMAIN_DEFAULT);
        let mut transport =
            QuicTransport::new(self.quic.sender(), self.server_name.clone(), client_name);
        let gossiped = self.gossip.iter().flat_map(|(g, _, _)| g.view()).map(|m| m.addr);
        for addr in peers.values().cloned().chain(gossiped) {
            transport.add_server(&addr);
        }
        self.frames_lost = transport.lost_counter();
        let mut host = ServerHost::start(self.clock.now(), config, transport, store, runner)
            .map_err(AgentError::Host)?;
        // A large state takes seconds to encode: on the loop it would hold up heartbeats
        // and Raft until the leader lost its lease. The finished bytes wake the loop the
        // way a finished pass does.
        host.encode_snapshots_on_thread(Some(wake));
        self.host = Some(host);
        if let Some((membership, _, _)) = self.gossip.as_mut() {
            membership.handle_host_start();
        }
        self.tell_members().map_err(AgentError::Host)
    }

    /// Answers what the server answered.
    fn settle(&mut self) {
        while let Some(event) = self.client.as_mut().and_then(|c| c.poll_event()) {
            self.log.client(&event);
        }
        let Some(host) = self.host.as_mut() else { return };
        self.log.server(host.server());
        let mut answers = Vec::new();
        while let Some(response) = host.poll_api_reply() {
            answers.push(response);
        }
        let mut forwards = Vec::new();
        while let Some(forward) = host.poll_region_forward() {
            forwards.push(forward);
        }
        for answer in answers {
            self.answer(answer);
        }
        for forward in forwards {
            self.forward_to_region(forward);
        }
        let Some(host) = self.host.as_mut() else { return };
        let leader = host.server().leader_addr().is_some();
        self.known_leader.store(leader, Ordering::Relaxed);
        self.announce_raft_state();
    }

    /// Hands an answer to its caller: a local one, or a client agent's over the wire.
    fn answer(&mut self, response: ApiResponse) {
        if let Some(reply) = self.replies.remove(&response.request_id) {
            // A caller that went away (a closed HTTP connection) needs no answer.
            let _ = reply.send(response.reply);
            return;
        }
        let Some(caller) = self.remote_calls.remove(&response.request_id) else {
            return;
        };
        let answer = ApiResponse { request_id: caller.request_id, reply: response.reply };
        let Ok(frame) = encode_wire(&WireMessage::ApiAnswer(answer)) else { return };
        // A lost answer times out on the caller.
        match caller.other_region_server {
            Some(name) => self.send_to_other_region(&caller.addr, name, frame),
            None => {
                if let Some(host) = self.host.as_mut() {
                    let _sent = host.transport_mut().send(&caller.addr, frame);
                }
            }
        }
    }

    /// An API call over the wire: from a client agent of this region, or forwarded by
    /// another region's server. A call is forwarded between regions at most once, so one
    /// from another region must name this one.
    fn handle_remote_call(
        &mut self,
        now: Millis,
        caller: RemoteCaller,
        call: ApiCall,
    ) -> Result<(), HostError> {
        self.next_request += 1;
        let request_id = self.next_request;
        let misrouted = caller.other_region_server.is_some() && call.region != self.settings.region;
        self.remote_calls.insert(request_id, caller);
        let Some(host) = self.host.as_mut().filter(|_| !misrouted) else {
            let message = match misrouted {
                true => format!("region {} is not served here", call.region),
                false => "No cluster leader".to_owned(),
            };
            self.answer(ApiResponse { request_id, reply: ApiReply::Error { message } });
            return Ok(());
        };
        host.handle_api_call(now, ApiCall { request_id, ..call })
    }

    /// Sends a call naming another region to one of that region's servers gossip knows
    /// alive, picked by the call's id; with none, answers Nomad's "No path to region".
    fn forward_to_region(&mut self, forward: drover_core::server::RegionForward) {
        let waiting_id = forward.call.request_id;
        let servers = match self.gossip.as_ref() {
            Some((membership, _, _)) => membership.servers_in(&forward.region),
            None => Vec::new(),
        };
        if servers.is_empty() {
            let reply = ApiReply::Error { message: "No path to region".to_owned() };
            return self.answer(ApiResponse { request_id: waiting_id, reply });
        }
        self.next_request += 1;
        let request_id = self.next_request;
        let server = &servers[request_id as usize % servers.len()];
        let wait_ms = match &forward.call.request {
            drover_core::server::ApiRequest::Read { wait_ms, .. } => *wait_ms,
            _ => 0,
        };
        let call = ApiCall { request_id, ..forward.call };
        let frame = match encode_wire(&WireMessage::Api(call)) {
            Ok(frame) => frame,
            Err(error) => {
                let reply = ApiReply::Error { message: error.to_string() };
                return self.answer(ApiResponse { request_id: waiting_id, reply });
            }
        };
        let name = Role::Server.dns_name(&forward.region, DOMAIN_DEFAULT);
        self.send_to_other_region(server, name, frame);
        let deadline = self.clock.now() + Millis(FORWARD_TIMEOUT_MS + wait_ms);
        let waiting = Waiting::Server { request_id: waiting_id, region: forward.region };
        self.forwarded.insert(request_id, (waiting, deadline));
    }

    /// Sends a frame to another region's server, whose certificate must show `name`; a
    /// frame that cannot be sent is given up when its call times out.
    fn send_to_other_region(&self, addr: &str, name: String, frame: Vec<u8>) {
        let Ok(addr) = addr.parse::<SocketAddr>() else { return };
        let sender = self.quic.sender();
        tokio::spawn(async move {
            let _sent = sender.send(addr, &name, &frame).await;
        });
    }

    /// Hands an answer to whoever waits for it.
    fn deliver(&mut self, waiting: Waiting, reply: ApiReply) {
        match waiting {
            Waiting::Caller(caller) => {
                // A caller that went away (a closed HTTP connection) needs no answer.
                let _ = caller.send(reply);
            }
            Waiting::Server { request_id, .. } => self.answer(ApiResponse { request_id, reply }),
        }
    }

    fn status(&self) -> AgentStatus {
        let mut status = match self.host.as_ref() {
            Some(host) => {
                let addr_of = |id: u64| host.server().peer_addr(id).unwrap_or_default();
                server_status(host, &self.identity, addr_of)
            }
            None => self.identity.clone(),
        };
        if let Some((membership, _, _)) = self.gossip.as_ref() {
            let mut members: Vec<ServerMember> = membership
                .members()
                .into_iter()
                .chain([membership.identity()])
                .map(server_member)
                .collect();
            members.sort_by(|a, b| a.name.cmp(&b.name));
            status.members = members;
            status.regions = membership.regions().into_iter().map(str::to_owned).collect();
        }
        let members = status.members.len().saturating_sub(1);
        status.counters.extend([
            ("server.frames_refused", self.frames_refused),
            ("gossip.datagrams_refused", self.gossip_refused),
            ("server.frames_lost", self.frames_lost.load(Ordering::Relaxed)),
            ("gossip.members", members as u64),
        ]);
        if let Some(client) = self.client.as_ref() {
            status.node_registered = client.client().is_registered();
            status.allocs_running_here = client.drivers().running_count();
            let c = client.counters();
            status.counters.extend([
                ("client.frames_undecodable", c.frames_undecodable),
                ("client.sends_failed", c.sends_failed),
                ("client.allocs", client.client().alloc_ids().count() as u64),
            ]);
        }
        status
    }

    /// Leaves gossip and closes the endpoint. Tasks keep running: a restarted client
    /// reattaches to them (an operator stops them through their jobs).
    fn shutdown(&mut self) {
        let now = self.clock.now();
        if let Some((membership, _, _)) = self.gossip.as_mut()
            && membership.handle_leave(now).is_ok()
        {
            self.send_gossip();
        }
        self.quic.close();
    }
}

fn server_member(member: &Member) -> ServerMember {
    ServerMember {
        name: member.name.clone(),
        region: member.region.clone(),
        datacenter: member.datacenter.clone(),
        server_id: member.server_id,
        rpc_addr: member.rpc_addr.clone(),
    }
}

/// A datagram for gossip, or never on an agent without gossip.
async fn recv_datagram(
    gossip: Option<&(GossipMembership, UdpSocket, std::net::UdpSocket)>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match gossip {
        Some((_, udp, _)) => udp.recv_from(buf).await.map(|(len, _)| len),
        None => std::future::pending().await,
    }
}

/// A server's gossip: its member identity, its UDP socket on the serf port, and the
/// `retry_join` targets announced to.
/// Who a server is in gossip as it starts.
struct GossipStart {
    server_id: u64,
    generation: u32,
    has_raft_state: bool,
}

fn start_gossip(
    settings: &AgentSettings,
    started: &GossipStart,
    rng_seed: u64,
    now: Millis,
) -> Result<(GossipMembership, UdpSocket, std::net::UdpSocket), String> {
    let serf_bind = resolve_one(&settings.serf_bind)?;
    // Sends go through a plain non-blocking clone of the socket: tokio's `try_send_to`
    // refuses until the reactor has seen the socket writable, which would lose the
    // first announces (and with them 30 s until the next join attempt).
    let (udp, sender) = std::net::UdpSocket::bind(serf_bind)
        .and_then(|socket| {
            socket.set_nonblocking(true)?;
            let sender = socket.try_clone()?;
            Ok((UdpSocket::from_std(socket)?, sender))
        })
        .map_err(|e| format!("cannot listen for gossip on {serf_bind}: {e}"))?;
    let member = Member {
        name: format!("{}.{}", settings.name, settings.region),
        region: settings.region.clone(),
        datacenter: settings.datacenter.clone(),
        server_id: started.server_id,
        rpc_addr: settings.rpc_advertise.clone(),
        gossip_addr: settings.serf_advertise.clone(),
        generation: started.generation,
        has_raft_state: started.has_raft_state,
        // Announced once Raft has committed an entry and the group is known.
        cluster_id: 0,
    };
    // The other regions' servers are not known before they answer; their targets are
    // the best guess.
    let servers = settings.bootstrap_expect.max(settings.retry_join.len() as u32 + 1);
    let mut gossip =
        GossipMembership::new(member, settings.bootstrap_expect, servers, rng_seed ^ 0x6055);
    for target in &settings.retry_join {
        let target = with_default_port(target, SERF_PORT_DEFAULT);
        // A name that does not resolve now is tried again at the next start.
        let Ok(addr) = resolve_one(&target) else { continue };
        if addr.to_string() != settings.serf_advertise {
            let _refused = gossip.handle_join(now, &addr.to_string());
        }
    }
    Ok((gossip, udp, sender))
}

/// The client's node id and secret from `<dir>/node-id`, drawn once from `seed`.
fn load_or_create_node_id(dir: &Path, seed: u64) -> Result<(String, String), String> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut lines = text.lines();
            match (lines.next(), lines.next()) {
                (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                    Ok((id.to_owned(), secret.to_owned()))
                }
                _ => Err(format!("{} does not hold a node id and secret", path.display())),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut ids = IdGen::new(splitmix(seed ^ 0x40de));
            let (id, secret) = (ids.next_id(), ids.next_id());
            write_atomically(&path, format!("{id}\n{secret}\n").as_bytes())?;
            Ok((id, secret))
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// The first address `addr` (`host:port`) resolves to.
fn resolve_one(addr: &str) -> Result<SocketAddr, String> {
    let with_port = with_default_port(addr, RPC_PORT_DEFAULT);
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

/// This server's Raft id from `<dir>/server-id`, drawn from `seed` and saved the first
/// time. Ids start at 1 and stay below 2^53, so JSON readers see them exactly.
fn load_or_create_server_id(dir: &Path, seed: u64) -> Result<u64, String> {
    let path = dir.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| format!("{} does not hold a server id", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = (splitmix(seed) >> 11).max(1);
            write_atomically(&path, id.to_string().as_bytes())?;
            Ok(id)
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Generations one start leaves to foca's renewals (one each time the pool declares the
/// server down) before the next start's generation.
const GOSSIP_RENEWALS_PER_START: u32 = 1 << 16;

/// The generation this start gossips under: past every generation the last start could
/// have reached (its own plus its renewals), and at least the wall clock in seconds, so
/// a server whose data directory was wiped still wins over an identity its peers
/// remember. The wall clock alone would not do: stepped back before a restart, it would
/// give a generation that loses to the old identity, and the server could not rejoin.
fn next_gossip_generation(last: Option<u32>, now: Millis) -> u32 {
    let by_clock = u32::try_from(now.0 / 1000).unwrap_or(u32::MAX);
    let after_last = last.map_or(0, |last| last.saturating_add(GOSSIP_RENEWALS_PER_START));
    by_clock.max(after_last)
}

/// Reads `<dir>/gossip-generation`, saves the next generation there (synced) and returns
/// it.
fn load_and_advance_generation(dir: &Path, now: Millis) -> Result<u32, String> {
    let path = dir.join("gossip-generation");
    let last = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            text.trim()
                .parse::<u32>()
                .map_err(|_| format!("{} does not hold a generation", path.display()))?,
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let generation = next_gossip_generation(last, now);
    write_atomically(&path, generation.to_string().as_bytes())?;
    Ok(generation)
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The voter set this server bootstrapped with, if it did.
fn load_peers(dir: &Path) -> Result<Option<BTreeMap<u64, String>>, String> {
    let path = dir.join("peers.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<BTreeMap<u64, String>>(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is damaged: {e}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

fn save_peers(dir: &Path, peers: &BTreeMap<u64, String>) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(peers).map_err(|e| e.to_string())?;
    write_atomically(&dir.join("peers.json"), &bytes)
}

/// Writes `path` whole or not at all (see [`crate::store::file::write_atomically`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    crate::store::file::write_atomically(path, &path.with_extension("tmp"), bytes)
        .map(drop)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restart's generation beats every generation the start before could reach, even
    /// when the clock went back between the two.
    #[test]
    fn a_restart_wins_over_the_last_start_whatever_the_clock() {
        let first = next_gossip_generation(None, Millis(1_700_000_000_000));
        assert_eq!(first, 1_700_000_000);
        let renewed_most = first + GOSSIP_RENEWALS_PER_START - 1;
        for now_ms in [0, 1_600_000_000_000, 1_700_000_000_000, 1_800_000_000_000] {
            let next = next_gossip_generation(Some(first), Millis(now_ms));
            assert!(next > renewed_most, "clock {now_ms} ms gave {next}");
        }
        assert_eq!(next_gossip_generation(Some(u32::MAX - 1), Millis(0)), u32::MAX);
    }

    #[test]
    fn the_generation_survives_in_the_data_directory() {
        let dir = std::env::temp_dir().join(format!("drover-gossip-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = load_and_advance_generation(&dir, Millis(5_000_000)).unwrap();
        let second = load_and_advance_generation(&dir, Millis(1_000)).unwrap();
        assert_eq!((first, second), (5_000, 5_000 + GOSSIP_RENEWALS_PER_START));
        std::fs::write(dir.join("gossip-generation"), "garbage").unwrap();
        let error = load_and_advance_generation(&dir, Millis(0)).unwrap_err();
        assert!(error.contains("does not hold a generation"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
