//! C1M through the whole control plane: three server hosts with Raft, each on its own
//! thread with its own pool of pass threads, talking over an in-memory transport (every
//! message encoded and decoded as on the wire) with memory stores.
//!
//! The bench plays the client nodes and the operator: it registers `nodes` client nodes
//! through `ClientRpc` node registration on the leader and keeps them alive with
//! heartbeats at the TTL each reply gives, then registers `jobs` service jobs of `count`
//! allocations through `ApiCall`s, and measures the time until every placement is
//! committed on a quorum (applied on the leader, which applies only committed entries).
//! It then lets the followers catch up, checks that no node is over-committed on any
//! server, and prints where each server's time went.
//!
//! ```text
//! drover-bench c1m [--nodes 5000] [--jobs 1000] [--count 1000] [--workers 1]
//! ```
//! `--workers` is the scheduler workers of each server (one pass thread each). The leader
//! keeps a quarter of its workers, at least one, as Nomad's does; the followers' workers
//! dequeue from it and submit plans to its applier.

use super::{Shape, assert_no_node_overcommitted, job, node, node_id};
use drover_core::raft::NodeId;
use drover_core::rpc::{ClientRequest, ClientRpc, ServerReply};
use drover_core::server::{
    ApiCall, ApiReply, ApiRequest, ApiResponse, SchedulePass, ServerConfig, Stage, StageProbe,
};
use drover_core::time::Millis;
use drover_runtime::host::{
    HostTimings, PassPoolConfig, PassStats, SendError, ServerHost, ThreadPassRunner, Transport,
    WakeFn, WireMessage, decode_wire, encode_wire,
};
use drover_runtime::store::mem::MemStore;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVERS: u64 = 3;
/// How long the region may take to elect a leader, register the nodes, or let the
/// followers catch up after the run.
const SETTLE_MAX: Duration = Duration::from_secs(120);
/// How long the run may take before the bench gives up on it.
const RUN_MAX: Duration = Duration::from_secs(600);
/// Log entries between state snapshots: Nomad's default. The run writes about 8,500
/// entries (a registration per node and per job, a plan and a verdict per evaluation),
/// so each server snapshots a state of about a million allocations once, near the end;
/// the host encodes it on a thread of its own, off the server's loop.
const SNAPSHOT_THRESHOLD_ENTRIES: u64 = 8_192;
/// How often a server thread publishes its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(5);

// ------------------------------------------------------------------------ wiring

/// What a server thread is handed.
enum Inbound {
    Frame {
        from: String,
        bytes: Vec<u8>,
    },
    /// Its pass pool finished a pass.
    PassesReady,
    Api(ApiCall),
    /// The run starts: measure from here.
    StartMeasuring,
    Stop,
}

/// What reaches the bench's own thread: replies to the client nodes it plays, and API
/// answers.
enum ToBench {
    Frame { to: String, bytes: Vec<u8> },
    Api(ApiResponse),
}

/// Where each address is: a server's inbox, or else a client node the bench plays.
struct Routes {
    servers: BTreeMap<String, Sender<Inbound>>,
    bench: Sender<ToBench>,
}

struct ChannelTransport {
    addr: String,
    routes: Arc<Routes>,
}

impl Transport for ChannelTransport {
    fn send(&mut self, to: &str, frame: Vec<u8>) -> Result<(), SendError> {
        let sent = match self.routes.servers.get(to) {
            Some(inbox) => {
                inbox.send(Inbound::Frame { from: self.addr.clone(), bytes: frame }).is_ok()
            }
            None => {
                self.routes.bench.send(ToBench::Frame { to: to.to_owned(), bytes: frame }).is_ok()
            }
        };
        if sent {
            Ok(())
        } else {
            Err(SendError { to: to.to_owned(), reason: "the receiving thread ended".into() })
        }
    }
}

/// Unix milliseconds: the wall clock at the start, moved on by a monotonic clock.
#[derive(Clone, Copy)]
struct Clock {
    unix_start_ms: u64,
    started: Instant,
}

impl Clock {
    fn new() -> Clock {
        let unix_start_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Clock { unix_start_ms, started: Instant::now() }
    }

    fn now(&self) -> Millis {
        Millis(self.unix_start_ms + self.started.elapsed().as_millis() as u64)
    }
}

fn server_addr(id: NodeId) -> String {
    format!("10.0.0.{id}:4647")
}

fn node_addr(i: usize) -> String {
    format!("node-{i:05}:4646")
}

// ------------------------------------------------------------------------ a server thread

/// What a server thread shows the bench while it runs.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    leading: bool,
    allocs: usize,
    applied: u64,
    /// Evaluations in the leader's broker: ready, unacked, pending or delayed.
    evals_open: usize,
    /// The index its Raft log is compacted to.
    snapshot_index: u64,
}

/// Time per server stage, from the server's probe.
#[derive(Default)]
struct StageClock {
    begun: Option<Instant>,
    totals: Rc<RefCell<BTreeMap<Stage, Duration>>>,
}

impl StageProbe for StageClock {
    fn begin(&mut self, _stage: Stage) {
        self.begun = Some(Instant::now());
    }

    fn end(&mut self, stage: Stage) {
        if let Some(begun) = self.begun.take() {
            *self.totals.borrow_mut().entry(stage).or_default() += begun.elapsed();
        }
    }
}

/// What a server thread reports when it stops.
struct ServerReport {
    id: NodeId,
    leading: bool,
    allocs: usize,
    applied: u64,
    term: u64,
    /// How many times its leader loop started.
    leader_epochs: u64,
    /// The index of the state snapshot its log is compacted to (0: none).
    snapshot_index: u64,
    host: HostTimings,
    stages: BTreeMap<Stage, Duration>,
    passes: PassStats,
    frames_in: u64,
    error: Option<String>,
}

struct ServerThread {
    inbox: Sender<Inbound>,
    progress: Arc<Mutex<Progress>>,
    handle: JoinHandle<ServerReport>,
}

/// Runs one server host until told to stop.
struct ServerLoop {
    host: ServerHost<ChannelTransport, MemStore, ThreadPassRunner>,
    inbox: Receiver<Inbound>,
    routes: Arc<Routes>,
    progress: Arc<Mutex<Progress>>,
    clock: Clock,
    stages: Rc<RefCell<BTreeMap<Stage, Duration>>>,
    frames_in: u64,
}

impl ServerLoop {
    fn run(mut self) -> ServerReport {
        let error = self.serve().err();
        let state = self.host.server().state();
        // A check, not a figure: the run counts only if every server holds a sound state.
        assert_no_node_overcommitted(state);
        let report = ServerReport {
            id: self.host.server().id(),
            leading: self.host.server().is_leader_loop_active(),
            allocs: state.alloc_count(),
            applied: self.host.server().raft().applied_index(),
            term: self.host.server().raft().term(),
            leader_epochs: self.host.server().leader_epoch(),
            snapshot_index: self.host.server().raft().snapshot_meta().index,
            host: self.host.timings().unwrap_or_default(),
            stages: self.stages.borrow().clone(),
            passes: self.host.runner().stats(),
            frames_in: self.frames_in,
            error,
        };
        // A million allocations take seconds to free, and the process ends after the
        // report anyway (as C1M-core does).
        std::mem::forget(self);
        report
    }

    fn serve(&mut self) -> Result<(), String> {
        let mut published = Instant::now();
        loop {
            let now = self.clock.now();
            let wait_ms = self.host.next_deadline().map_or(1000, |d| d.0.saturating_sub(now.0));
            let event = self.inbox.recv_timeout(Duration::from_millis(wait_ms));
            let now = self.clock.now();
            let handled = match event {
                Ok(Inbound::Frame { from, bytes }) => {
                    self.frames_in += 1;
                    self.host.handle_frame(now, &from, &bytes)
                }
                Ok(Inbound::PassesReady) => self.host.handle_passes_ready(now),
                Ok(Inbound::Api(call)) => self.host.handle_api_call(now, call),
                Ok(Inbound::StartMeasuring) => {
                    self.host.enable_timings();
                    self.stages.borrow_mut().clear();
                    Ok(())
                }
                Ok(Inbound::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => self.host.handle_timeout(now),
            };
            handled.map_err(|e| e.to_string())?;
            // A flood of frames never lets the wait time out: deadlines fire here too.
            if self.host.next_deadline().is_some_and(|d| d <= now) {
                self.host.handle_timeout(now).map_err(|e| e.to_string())?;
            }
            while let Some(response) = self.host.poll_api_reply() {
                let _ = self.routes.bench.send(ToBench::Api(response));
            }
            if published.elapsed() >= PROGRESS_EVERY {
                self.publish();
                published = Instant::now();
            }
        }
    }

    fn publish(&self) {
        let server = self.host.server();
        let evals_open = server.broker_stats().map_or(0, |(stats, _)| {
            stats.total_ready + stats.total_unacked + stats.total_pending + stats.total_delayed
        });
        let progress = Progress {
            leading: server.is_leader_loop_active(),
            allocs: server.state().alloc_count(),
            applied: server.raft().applied_index(),
            evals_open,
            snapshot_index: server.raft().snapshot_meta().index,
        };
        *self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = progress;
    }
}

fn spawn_server(
    id: NodeId,
    workers: usize,
    clock: Clock,
    routes_rx: Receiver<Arc<Routes>>,
    inbox: (Sender<Inbound>, Receiver<Inbound>),
) -> ServerThread {
    let progress = Arc::new(Mutex::new(Progress::default()));
    let (sender, receiver) = inbox;
    let wake_to = Mutex::new(sender.clone());
    let shown = Arc::clone(&progress);
    let handle = std::thread::Builder::new()
        .name(format!("server-{id}"))
        .spawn(move || {
            let routes = routes_rx.recv().expect("the bench sends the routes");
            let addrs = (1..=SERVERS).map(|id| (id, server_addr(id))).collect();
            let mut config = ServerConfig::new(id, 0xc1 + id, addrs);
            config.workers_count = workers as u32;
            config.raft.snapshot_threshold_entries = SNAPSHOT_THRESHOLD_ENTRIES;
            let wake: WakeFn = Arc::new(move || {
                let _ = wake_to.lock().map(|inbox| inbox.send(Inbound::PassesReady));
            });
            let snapshot_wake = Arc::clone(&wake);
            let pool = PassPoolConfig {
                threads: workers,
                queue_len_max: drover_runtime::host::PASS_QUEUE_LEN_MAX_DEFAULT,
            };
            let runner = ThreadPassRunner::start(pool, Arc::new(SchedulePass::run), Some(wake))
                .expect("the pass threads start");
            let transport = ChannelTransport { addr: server_addr(id), routes: Arc::clone(&routes) };
            let mut host =
                ServerHost::start(clock.now(), config, transport, MemStore::new(), runner)
                    .expect("a fresh memory store starts");
            host.encode_snapshots_on_thread(Some(snapshot_wake));
            let stages = Rc::new(RefCell::new(BTreeMap::new()));
            host.set_stage_probe(Box::new(StageClock { begun: None, totals: Rc::clone(&stages) }));
            let server_loop = ServerLoop {
                host,
                inbox: receiver,
                routes,
                progress: shown,
                clock,
                stages,
                frames_in: 0,
            };
            server_loop.run()
        })
        .expect("a server thread starts");
    ServerThread { inbox: sender, progress, handle }
}

// ------------------------------------------------------------------------ the bench

/// The region and the bench's side of it: the client nodes and the operator.
struct Region {
    clock: Clock,
    servers: BTreeMap<NodeId, ServerThread>,
    inbox: Receiver<ToBench>,
    /// Client node → the unix ms of its next heartbeat.
    heartbeats: BinaryHeap<Reverse<(Millis, usize)>>,
    next_request: u64,
    /// Per client node: whether a registration or heartbeat was answered.
    registered: Vec<bool>,
    registered_nodes: usize,
    api_replies: usize,
    api_errors: Vec<String>,
    /// Per server, what `events` last saw: leading, and the index of its snapshot.
    seen: BTreeMap<NodeId, (bool, u64)>,
    /// Leader loops starting and stopping, snapshots written, with the time since the run
    /// started.
    events: Vec<String>,
    run_started: Option<Instant>,
}

impl Region {
    fn start(nodes: usize, workers: usize) -> Region {
        let clock = Clock::new();
        let (bench, inbox) = mpsc::channel();
        let mut servers = BTreeMap::new();
        let mut route_senders = Vec::new();
        let mut server_inboxes = BTreeMap::new();
        for id in 1..=SERVERS {
            let (routes_tx, routes_rx) = mpsc::channel();
            let (sender, receiver) = mpsc::channel();
            server_inboxes.insert(server_addr(id), sender.clone());
            servers.insert(id, spawn_server(id, workers, clock, routes_rx, (sender, receiver)));
            route_senders.push(routes_tx);
        }
        let routes = Arc::new(Routes { servers: server_inboxes, bench });
        for routes_tx in route_senders {
            routes_tx.send(Arc::clone(&routes)).expect("the server thread waits for its routes");
        }
        Region {
            clock,
            servers,
            inbox,
            heartbeats: BinaryHeap::new(),
            next_request: 1,
            registered: vec![false; nodes],
            registered_nodes: 0,
            api_replies: 0,
            api_errors: Vec::new(),
            seen: BTreeMap::new(),
            events: Vec::new(),
            run_started: None,
        }
    }

    fn progress(&self, id: NodeId) -> Progress {
        *self.servers[&id].progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn leader(&self) -> Option<NodeId> {
        self.servers.keys().copied().find(|&id| self.progress(id).leading)
    }

    fn send(&self, to: NodeId, inbound: Inbound) {
        let _ = self.servers[&to].inbox.send(inbound);
    }

    /// A client node's request, sent from its own address.
    fn client_request(&mut self, to: NodeId, i: usize, request: ClientRequest) {
        let request_id = self.next_request;
        self.next_request += 1;
        let frame = encode_wire(&WireMessage::Request(ClientRpc { request_id, request }))
            .expect("a client request encodes");
        self.send(to, Inbound::Frame { from: node_addr(i), bytes: frame });
    }

    /// Takes what reached the bench within `wait`: registrations and heartbeats answered
    /// (each schedules the node's next heartbeat), API answers counted.
    fn receive(&mut self, wait: Duration) {
        let Ok(first) = self.inbox.recv_timeout(wait) else { return };
        let rest: Vec<ToBench> = self.inbox.try_iter().collect();
        for message in std::iter::once(first).chain(rest) {
            match message {
                ToBench::Frame { to, bytes } => self.client_reply(&to, &bytes),
                ToBench::Api(response) => {
                    self.api_replies += 1;
                    if !matches!(response.reply, ApiReply::Write { .. }) {
                        self.api_errors.push(format!("{:?}", response.reply));
                    }
                }
            }
        }
    }

    fn client_reply(&mut self, to: &str, bytes: &[u8]) {
        let i: Option<usize> = to.strip_prefix("node-").and_then(|r| r.get(..5)?.parse().ok());
        let Some(i) = i.filter(|&i| i < self.registered.len()) else { return };
        match decode_wire(bytes) {
            Ok(WireMessage::Reply(rpc)) => match rpc.reply {
                ServerReply::HeartbeatOk { heartbeat_ttl_ms, .. } => {
                    if !self.registered[i] {
                        self.registered[i] = true;
                        self.registered_nodes += 1;
                    }
                    let next = self.clock.now() + Millis(heartbeat_ttl_ms);
                    self.heartbeats.push(Reverse((next, i)));
                }
                other => self.api_errors.push(format!("node {i}: {other:?}")),
            },
            other => self.api_errors.push(format!("node {i}: unexpected {other:?}")),
        }
    }

    /// Heartbeats every node whose TTL is up.
    fn heartbeat_due(&mut self, leader: NodeId) {
        let now = self.clock.now();
        while self.heartbeats.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, i))) = self.heartbeats.pop() else { break };
            let node_id = node_id(i);
            let status = drover_core::model::NodeStatus::Ready;
            self.client_request(leader, i, ClientRequest::NodeHeartbeat { node_id, status });
        }
    }

    /// Plays the client nodes until `done` holds, or fails after `max`.
    fn wait_for(
        &mut self,
        what: &str,
        max: Duration,
        done: impl Fn(&Region) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        while !done(self) {
            if started.elapsed() > max {
                return Err(format!("{what}: not reached within {}s", max.as_secs()));
            }
            self.receive(Duration::from_millis(2));
            self.note_events();
            if let Some(leader) = self.leader() {
                self.heartbeat_due(leader);
            }
        }
        Ok(())
    }

    /// Records leader loops starting or stopping and snapshots compacting a log.
    fn note_events(&mut self) {
        let at_s = self.run_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let ids: Vec<NodeId> = self.servers.keys().copied().collect();
        for id in ids {
            let progress = self.progress(id);
            let (leading, snapshot_index) = self.seen.get(&id).copied().unwrap_or_default();
            if progress.leading != leading {
                let what = if progress.leading { "started" } else { "stopped" };
                self.events.push(format!("{at_s:.1}s n{id} leader loop {what}"));
            }
            if progress.snapshot_index != snapshot_index {
                let index = progress.snapshot_index;
                self.events.push(format!("{at_s:.1}s n{id} snapshot at {index} written"));
            }
            self.seen.insert(id, (progress.leading, progress.snapshot_index));
        }
    }

    fn stop(self) -> Vec<ServerReport> {
        for server in self.servers.values() {
            let _ = server.inbox.send(Inbound::Stop);
        }
        self.servers
            .into_values()
            .map(|s| s.handle.join().expect("a server thread ends without panicking"))
            .collect()
    }
}

/// Runs the benchmark and prints its figures; the last line is
/// `placements=P wall_s=W per_s=R`.
pub fn c1m(shape: Shape) -> Result<(), String> {
    let setup = Instant::now();
    let mut region = Region::start(shape.nodes, shape.workers);
    region.wait_for("a leader", SETTLE_MAX, |r| r.leader().is_some())?;
    let leader = region.leader().ok_or("the leader went away")?;
    for i in 0..shape.nodes {
        let node = Box::new(node(i));
        region.client_request(leader, i, ClientRequest::NodeRegister { node });
    }
    let nodes = shape.nodes;
    region.wait_for("every node registered", SETTLE_MAX, |r| r.registered_nodes >= nodes)?;
    println!(
        "setup: 3 servers, leader n{leader}, {} nodes registered in {:.3}s",
        shape.nodes,
        setup.elapsed().as_secs_f64()
    );
    for &id in region.servers.keys() {
        region.send(id, Inbound::StartMeasuring);
    }
    let started = Instant::now();
    region.run_started = Some(started);
    for j in 0..shape.jobs {
        let request =
            ApiRequest::JobRegister { job: Box::new(job(j, shape.count)), enforce_index: None };
        let request_id = region.next_request;
        region.next_request += 1;
        region.send(leader, Inbound::Api(ApiCall { request_id, region: String::new(), request }));
    }
    let expected = shape.jobs * shape.count;
    let jobs = shape.jobs;
    // Whoever leads now: a leader that loses its lease hands the run to the next one.
    let finished = |r: &Region| {
        let Some(progress) = r.leader().map(|id| r.progress(id)) else { return false };
        progress.allocs >= expected || (r.api_replies >= jobs && progress.evals_open == 0)
    };
    let run = region.wait_for("every placement committed", RUN_MAX, finished);
    let wall_s = started.elapsed().as_secs_f64();
    run?;
    let leader = region.leader().ok_or("the leader went away")?;
    let placements = region.progress(leader).allocs;
    let applied = region.progress(leader).applied;
    region.wait_for("the followers caught up", SETTLE_MAX, |r| {
        r.servers.keys().all(|&id| r.progress(id).applied >= applied)
    })?;
    let errors = std::mem::take(&mut region.api_errors);
    let region_events = std::mem::take(&mut region.events);
    let reports = region.stop();
    print_breakdown(&reports, wall_s);
    // The leader kept its lease if no other loop ever started: one epoch on the leader,
    // none elsewhere.
    let epochs: u64 = reports.iter().map(|r| r.leader_epochs).sum();
    println!("events: {}", region_events.join("; "));
    println!("leadership: n{leader} led the whole run: {}", if epochs == 1 { "yes" } else { "no" });
    if let Some(error) = errors.first() {
        return Err(format!("{} requests failed, the first: {error}", errors.len()));
    }
    if let Some(error) = reports.iter().find_map(|r| r.error.clone()) {
        return Err(error);
    }
    let per_s = placements as f64 / wall_s;
    println!("placements={placements} wall_s={wall_s:.3} per_s={per_s:.0}");
    Ok(())
}

fn print_breakdown(reports: &[ServerReport], wall_s: f64) {
    for r in reports {
        let stage = |s: Stage| r.stages.get(&s).copied().unwrap_or_default().as_secs_f64();
        let staged: Duration = r.stages.values().sum();
        let raft_other = r.host.machine().saturating_sub(staged).as_secs_f64();
        println!(
            "n{} {}: term={} leader_epochs={} allocs={} applied={} snapshot_index={} \
             frames_in={} busy_s={:.3} (of {wall_s:.3}) schedule_s={:.3} passes={} \
             panicked={} refused={}",
            r.id,
            if r.leading { "leader" } else { "follower" },
            r.term,
            r.leader_epochs,
            r.allocs,
            r.applied,
            r.snapshot_index,
            r.frames_in,
            r.host.total.as_secs_f64(),
            r.passes.busy.as_secs_f64(),
            r.passes.finished,
            r.passes.panicked,
            r.passes.refused,
        );
        println!(
            "   plan_evaluate_s={:.3} raft: command_encode_s={:.3} frame_encode_s={:.3} \
             frame_decode_s={:.3} store_s={:.3} entry_decode_s={:.3} other_s={raft_other:.3} \
             state_apply_s={:.3} snapshot_s={:.3} snapshot_encode_s={:.3} \
             snapshot_encode_off_loop_s={:.3} runner_s={:.3}",
            stage(Stage::PlanEvaluate),
            stage(Stage::CommandEncode),
            r.host.frame_encode.as_secs_f64(),
            r.host.frame_decode.as_secs_f64(),
            (r.host.store_write + r.host.store_sync).as_secs_f64(),
            stage(Stage::EntryDecode),
            stage(Stage::StateApply),
            stage(Stage::SnapshotWrite),
            r.host.snapshot_encode.as_secs_f64(),
            r.host.snapshot_encode_off_loop.as_secs_f64(),
            r.host.runner.as_secs_f64(),
        );
    }
}
