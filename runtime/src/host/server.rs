//! The host of one server machine: frames in, Raft writes to the store, messages and
//! replies out, passes to the runner. The drain order is in the parent module's doc.

use super::snapshot::{Encoded, SnapshotEncoder};
use super::wire::{WireMessage, decode_wire, encode_wire};
use super::{HostError, PassFailure, PassRunner, Transport, WakeFn};
use crate::store::{RaftStore, StoreError};
use drover_core::raft::Restored;
use drover_core::rpc::{ClientRpc, ServerAddr, ServerRpc};
use drover_core::scheduler::ScheduleOutput;
use drover_core::server::{
    ApiCall, ApiResponse, ClientCall, ClientConn, PassId, PeerEnvelope, RegionForward, Reply,
    Server, ServerConfig,
};
use drover_core::time::Millis;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Client addresses a server host remembers; a new one past this evicts the oldest, whose
/// pending replies are then lost (its client times out and retries).
pub const CLIENT_CONNS_MAX: usize = 65_536;
/// API replies held until the caller collects them; older ones are dropped past this.
pub const API_REPLIES_MAX: usize = 4096;
/// Calls for another region held until the caller collects them; more are dropped.
pub const REGION_FORWARDS_MAX: usize = 1024;

/// What a server host counted instead of failing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Frames that did not decode (bad envelope, checksum, payload, size).
    pub frames_undecodable: u64,
    /// Frames that decoded but have no business here (a reply, a peer message for another
    /// server).
    pub frames_unexpected: u64,
    /// Messages for a server with no known address.
    pub sends_unroutable: u64,
    pub sends_failed: u64,
    pub encode_errors: u64,
    /// Client addresses forgotten to make room past [`CLIENT_CONNS_MAX`].
    pub conns_evicted: u64,
    pub api_replies_dropped: u64,
    pub region_forwards_dropped: u64,
    pub store_errors: u64,
    /// Group commits: one per drain round that wrote anything.
    pub syncs: u64,
}

/// Where a server host's time went, once [`ServerHost::enable_timings`] asked for it. What
/// `total` holds beyond the other fields is the machine's own work (Raft, the state
/// machine, the broker, the applier; its [`drover_core::server::StageProbe`] splits it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostTimings {
    /// Inside the host's inputs, from call to return.
    pub total: Duration,
    pub frame_decode: Duration,
    /// Encoding frames and handing them to the transport.
    pub frame_encode: Duration,
    pub store_write: Duration,
    pub store_sync: Duration,
    /// Handing passes to the runner and collecting its results.
    pub runner: Duration,
    /// Encoding state snapshots on the host's own thread (part of `total`).
    pub snapshot_encode: Duration,
    /// Encoding state snapshots on their own thread (not part of `total`).
    pub snapshot_encode_off_loop: Duration,
}

impl HostTimings {
    /// The machine's own share of `total`.
    pub fn machine(&self) -> Duration {
        let host = self.frame_decode
            + self.frame_encode
            + self.store_write
            + self.store_sync
            + self.runner
            + self.snapshot_encode;
        self.total.saturating_sub(host)
    }
}

/// One server machine with its transport, Raft store and pass runner.
pub struct ServerHost<T, S, R> {
    server: Server,
    transport: T,
    store: S,
    runner: R,
    conn_by_addr: BTreeMap<ServerAddr, ClientConn>,
    addr_by_conn: BTreeMap<ClientConn, ServerAddr>,
    next_conn: ClientConn,
    api_replies: VecDeque<ApiResponse>,
    region_forwards: VecDeque<RegionForward>,
    counters: ServerCounters,
    stopped: bool,
    timings: Option<HostTimings>,
    snapshots: SnapshotEncoder,
}

impl<T: Transport, S: RaftStore, R: PassRunner> ServerHost<T, S, R> {
    /// Starts a server from what `store` holds: a brand-new region member when it holds
    /// nothing, a restart otherwise. The first writes are durable before this returns.
    pub fn start(
        now: Millis,
        config: ServerConfig,
        transport: T,
        store: S,
        runner: R,
    ) -> Result<Self, HostError> {
        let restored = store.restored();
        let server = if restored == Restored::default() {
            Server::new(now, config)
        } else {
            Server::restore(now, config, restored).map_err(HostError::Restore)?
        };
        let mut host = ServerHost {
            server,
            transport,
            store,
            runner,
            conn_by_addr: BTreeMap::new(),
            addr_by_conn: BTreeMap::new(),
            next_conn: 1,
            api_replies: VecDeque::new(),
            region_forwards: VecDeque::new(),
            counters: ServerCounters::default(),
            stopped: false,
            timings: None,
            snapshots: SnapshotEncoder::Inline,
        };
        host.drain(now)?;
        Ok(host)
    }

    // ---------------------------------------------------------------- getters

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// Plugs a probe into the server machine (see [`drover_core::server::Stage`]).
    pub fn set_stage_probe(&mut self, probe: Box<dyn drover_core::server::StageProbe>) {
        self.server.set_stage_probe(probe);
    }

    /// Encodes the server's state snapshots on a thread started for each, instead of on
    /// the caller's: `wake` is called when one is done, and the caller then gives the host
    /// any input (e.g. [`ServerHost::handle_passes_ready`]) so it hands the bytes over.
    pub fn encode_snapshots_on_thread(&mut self, wake: Option<WakeFn>) {
        self.snapshots = SnapshotEncoder::Thread { wake, running: None };
    }

    /// Starts measuring where the host's time goes, from zero (two clock reads per step,
    /// so off by default).
    pub fn enable_timings(&mut self) {
        self.timings = Some(HostTimings::default());
    }

    pub fn timings(&self) -> Option<HostTimings> {
        self.timings
    }

    pub fn counters(&self) -> ServerCounters {
        self.counters
    }

    /// The host stopped on a store error and takes no more input.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// When to call [`ServerHost::handle_timeout`] at the latest.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.server.poll_timeout()
    }

    /// Ends the host, handing back its store (to restart from it, or to crash it).
    pub fn into_store(self) -> S {
        self.store
    }

    // ---------------------------------------------------------------- outputs

    /// The next answer to an [`ApiCall`], in the order they were given.
    pub fn poll_api_reply(&mut self) -> Option<ApiResponse> {
        self.api_replies.pop_front()
    }

    /// The next call naming another region, for the caller to carry there.
    pub fn poll_region_forward(&mut self) -> Option<RegionForward> {
        self.region_forwards.pop_front()
    }

    // ---------------------------------------------------------------- inputs

    /// A frame from `from`: a peer's message or a client's request. Bad frames are
    /// counted and dropped.
    pub fn handle_frame(&mut self, now: Millis, from: &str, frame: &[u8]) -> Result<(), HostError> {
        self.check_running()?;
        let started = self.clock();
        let decoded = decode_wire(frame);
        self.add_time(started, |t| &mut t.frame_decode);
        match decoded {
            Ok(WireMessage::Peer(envelope)) if envelope.to == self.server.id() => {
                self.server.handle_peer_message(now, envelope);
            }
            Ok(WireMessage::Request(rpc)) => self.handle_request(now, from, rpc),
            Ok(
                WireMessage::Peer(_)
                | WireMessage::Reply(_)
                | WireMessage::Api(_)
                | WireMessage::ApiAnswer(_),
            ) => {
                self.counters.frames_unexpected += 1;
            }
            Err(_) => self.counters.frames_undecodable += 1,
        }
        self.drain_timed(now, started)
    }

    pub fn handle_timeout(&mut self, now: Millis) -> Result<(), HostError> {
        self.input(now, |server| server.handle_timeout(now))
    }

    /// The region's servers as gossip sees them now (see [`Server::handle_members`]).
    pub fn handle_members(
        &mut self,
        now: Millis,
        members: Vec<drover_core::server::ServerMember>,
    ) -> Result<(), HostError> {
        self.input(now, |server| server.handle_members(now, members))
    }

    /// An operator's call; its answer comes out of [`ServerHost::poll_api_reply`].
    pub fn handle_api_call(&mut self, now: Millis, call: ApiCall) -> Result<(), HostError> {
        self.input(now, |server| server.handle_api_call(now, call))
    }

    /// A pass's output from a runner that hands results over outside `poll_output`.
    pub fn handle_schedule_output(
        &mut self,
        now: Millis,
        pass_id: PassId,
        output: ScheduleOutput,
    ) -> Result<(), HostError> {
        self.input(now, |server| server.handle_schedule_output(now, pass_id, output))
    }

    /// A pass that produced no output, from such a runner.
    pub fn handle_schedule_failed(
        &mut self,
        now: Millis,
        pass_id: PassId,
        failure: &PassFailure,
    ) -> Result<(), HostError> {
        self.input(now, |server| server.handle_schedule_failed(now, pass_id, &failure.reason))
    }

    /// The runner (or the snapshot thread) woke the caller: finished passes and snapshots
    /// are collected and handed in.
    pub fn handle_passes_ready(&mut self, now: Millis) -> Result<(), HostError> {
        self.input(now, |_| {})
    }

    /// Runs one input on the machine, then drains it.
    fn input(&mut self, now: Millis, give: impl FnOnce(&mut Server)) -> Result<(), HostError> {
        self.check_running()?;
        let started = self.clock();
        give(&mut self.server);
        self.drain_timed(now, started)
    }

    fn drain_timed(&mut self, now: Millis, started: Option<Instant>) -> Result<(), HostError> {
        let drained = self.drain(now);
        self.add_time(started, |t| &mut t.total);
        drained
    }

    /// Now, if timings are on.
    fn clock(&self) -> Option<Instant> {
        self.timings.map(|_| Instant::now())
    }

    fn add_time(
        &mut self,
        started: Option<Instant>,
        field: impl FnOnce(&mut HostTimings) -> &mut Duration,
    ) {
        if let (Some(started), Some(timings)) = (started, self.timings.as_mut()) {
            *field(timings) += started.elapsed();
        }
    }

    fn check_running(&self) -> Result<(), HostError> {
        if self.stopped { Err(HostError::Stopped) } else { Ok(()) }
    }

    /// A client's request: its address becomes the connection the reply goes back on.
    fn handle_request(&mut self, now: Millis, from: &str, rpc: ClientRpc) {
        let conn = match self.conn_by_addr.get(from) {
            Some(&conn) => conn,
            None => self.open_conn(from),
        };
        self.server.handle_client_rpc(now, ClientCall { conn, rpc });
    }

    fn open_conn(&mut self, addr: &str) -> ClientConn {
        if self.addr_by_conn.len() >= CLIENT_CONNS_MAX
            && let Some((_, oldest)) = self.addr_by_conn.pop_first()
        {
            self.conn_by_addr.remove(&oldest);
            self.counters.conns_evicted += 1;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conn_by_addr.insert(addr.to_owned(), conn);
        self.addr_by_conn.insert(conn, addr.to_owned());
        conn
    }

    // ---------------------------------------------------------------- draining

    /// Drains the machine in the documented order until a round does nothing.
    fn drain(&mut self, now: Millis) -> Result<(), HostError> {
        loop {
            if self.persist(now)? {
                continue;
            }
            let mut progressed = false;
            while let Some(envelope) = self.server.poll_peer_message() {
                self.send_peer(envelope);
                progressed = true;
            }
            while let Some(reply) = self.server.poll_reply() {
                self.send_reply(reply);
                progressed = true;
            }
            progressed |= self.exchange_passes(now);
            while let Some(forward) = self.server.poll_region_forward() {
                self.queue_region_forward(forward);
                progressed = true;
            }
            progressed |= self.exchange_snapshots(now);
            if !progressed {
                return Ok(());
            }
        }
    }

    /// New passes to the runner, finished ones back to the machine. Returns whether any
    /// moved.
    fn exchange_passes(&mut self, now: Millis) -> bool {
        let mut moved = false;
        while let Some(pass) = self.server.poll_schedule() {
            let started = self.clock();
            self.runner.submit(pass);
            self.add_time(started, |t| &mut t.runner);
            moved = true;
        }
        loop {
            let started = self.clock();
            let finished = self.runner.poll_output();
            self.add_time(started, |t| &mut t.runner);
            let Some((pass_id, result)) = finished else { return moved };
            match result {
                Ok(output) => self.server.handle_schedule_output(now, pass_id, output),
                Err(failure) => self.server.handle_schedule_failed(now, pass_id, &failure.reason),
            }
            moved = true;
        }
    }

    /// A state snapshot the server asks for goes to the encoder; encoded ones go back to
    /// the server (which then has Raft write them through the store). Returns whether any
    /// moved.
    fn exchange_snapshots(&mut self, now: Millis) -> bool {
        let mut moved = false;
        if let Some(request) = self.server.poll_snapshot_request() {
            moved = true;
            if let Some(encoded) = self.snapshots.submit(request) {
                self.snapshot_encoded(now, encoded);
            }
        }
        if let Some(encoded) = self.snapshots.poll_done() {
            moved = true;
            self.snapshot_encoded(now, encoded);
        }
        moved
    }

    fn snapshot_encoded(&mut self, now: Millis, encoded: Encoded) {
        let Encoded { index, bytes, took, inline } = encoded;
        if let Some(timings) = self.timings.as_mut() {
            if inline {
                timings.snapshot_encode += took;
            } else {
                timings.snapshot_encode_off_loop += took;
            }
        }
        self.server.handle_snapshot_encoded(now, index, bytes);
    }

    /// Writes every pending batch, then one sync for all of them, then reports the synced
    /// id. Returns whether anything was written.
    fn persist(&mut self, now: Millis) -> Result<bool, HostError> {
        let mut written = false;
        while let Some(persist) = self.server.poll_persist() {
            let started = self.clock();
            let write = self.store.write(persist);
            self.add_time(started, |t| &mut t.store_write);
            if let Err(error) = write {
                return Err(self.stop(error));
            }
            written = true;
        }
        if !written {
            return Ok(false);
        }
        let started = self.clock();
        let synced = self.store.sync();
        self.add_time(started, |t| &mut t.store_sync);
        match synced {
            Ok(write_id) => {
                self.counters.syncs += 1;
                self.server.handle_durable(now, write_id);
                Ok(true)
            }
            Err(error) => Err(self.stop(error)),
        }
    }

    fn stop(&mut self, error: StoreError) -> HostError {
        self.stopped = true;
        self.counters.store_errors += 1;
        HostError::Store(error)
    }

    fn send_peer(&mut self, envelope: PeerEnvelope) {
        let Some(addr) = self.server.peer_addr(envelope.to) else {
            self.counters.sends_unroutable += 1;
            return;
        };
        self.send(&addr, &WireMessage::Peer(envelope));
    }

    fn send_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Client { conn, rpc } => self.send_client_reply(conn, rpc),
            Reply::Api(response) => {
                if self.api_replies.len() >= API_REPLIES_MAX {
                    self.api_replies.pop_front();
                    self.counters.api_replies_dropped += 1;
                }
                self.api_replies.push_back(response);
            }
        }
    }

    fn send_client_reply(&mut self, conn: ClientConn, rpc: ServerRpc) {
        let Some(addr) = self.addr_by_conn.get(&conn).cloned() else {
            self.counters.sends_unroutable += 1;
            return;
        };
        self.send(&addr, &WireMessage::Reply(rpc));
    }

    fn queue_region_forward(&mut self, forward: RegionForward) {
        if self.region_forwards.len() >= REGION_FORWARDS_MAX {
            self.counters.region_forwards_dropped += 1;
            return;
        }
        self.region_forwards.push_back(forward);
    }

    fn send(&mut self, to: &str, message: &WireMessage) {
        let started = self.clock();
        match encode_wire(message) {
            Ok(frame) => {
                if self.transport.send(to, frame).is_err() {
                    self.counters.sends_failed += 1;
                }
            }
            Err(_) => self.counters.encode_errors += 1,
        }
        self.add_time(started, |t| &mut t.frame_encode);
    }
}
