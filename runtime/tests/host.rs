//! The node hosts in a deterministic region, in one thread: three server hosts and two
//! client hosts over an in-memory network with seeded delays, memory stores with their
//! power-fail model, inline scheduling passes and fake drivers that start tasks at once
//! and let the test end them.
//!
//! Time starts at a fixed unix instant and jumps from one event (a frame's arrival, a
//! host's deadline) to the next. `check` renders the region as stable text for insta.

use drover_core::client::{ClientConfig, DriverCommand, DriverEvent, TaskExit, TaskRef};
use drover_core::codec::{self, FrameKind};
use drover_core::jobspec::{ParseOptions, parse};
use drover_core::model::Evaluation;
use drover_core::model::{DriverInfo, Job, Node, NodeStatus};
use drover_core::raft::{NodeId, Persist, Restored, WriteId};
use drover_core::rpc::{ServerReply, ServerRpc};
use drover_core::scheduler::{ScheduleOutput, SchedulerConfig};
use drover_core::server::SchedulePass;
use drover_core::server::{ApiCall, ApiReply, ApiRequest, ServerConfig};
use drover_core::state::State;
use drover_core::time::Millis;
use drover_runtime::host::{
    ClientHost, DriverSet, HostError, InlinePassRunner, PassFn, PassPoolConfig, PassRunner,
    SendError, ServerHost, ThreadPassRunner, Transport, WakeFn, WireMessage, encode_wire,
};
use drover_runtime::store::mem::MemStore;
use drover_runtime::store::{RaftStore, StoreError};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// 2023-11-14T22:13:20Z: hosts read unix milliseconds.
const START_MS: u64 = 1_700_000_000_000;
/// A frame spends between 1 and this many milliseconds on the network.
const NETWORK_DELAY_MAX_MS: u64 = 20;
/// How long a scenario may wait for the region to reach what it expects.
const SETTLE_MAX_MS: u64 = 120_000;

// ------------------------------------------------------------------------ network

struct Frame {
    from: String,
    to: String,
    bytes: Vec<u8>,
}

/// Frames in flight, ordered by (arrival, sequence) so ties break the same way every run.
struct Network {
    now: Millis,
    rng: ChaCha8Rng,
    in_flight: BTreeMap<(Millis, u64), Frame>,
    sequence: u64,
    /// Addresses whose host is down: frames to them are lost.
    down: BTreeSet<String>,
}

impl Network {
    fn next_arrival(&self) -> Option<Millis> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Millis) -> Option<Frame> {
        let (&key, _) = self.in_flight.iter().next().filter(|((at, _), _)| *at <= now)?;
        self.in_flight.remove(&key)
    }
}

/// One host's end of the network.
struct Endpoint {
    addr: String,
    network: Rc<RefCell<Network>>,
}

impl Transport for Endpoint {
    fn send(&mut self, to: &str, frame: Vec<u8>) -> Result<(), SendError> {
        let mut network = self.network.borrow_mut();
        let delay_ms = 1 + network.rng.next_u64() % NETWORK_DELAY_MAX_MS;
        let at = network.now + Millis(delay_ms);
        network.sequence += 1;
        let key = (at, network.sequence);
        let frame = Frame { from: self.addr.clone(), to: to.to_owned(), bytes: frame };
        network.in_flight.insert(key, frame);
        Ok(())
    }
}

// ------------------------------------------------------------------------ drivers

/// Starts every task at once; tasks end only when the test says so.
#[derive(Default)]
struct FakeDrivers {
    events: VecDeque<DriverEvent>,
    running: BTreeMap<TaskRef, u32>,
}

impl FakeDrivers {
    /// Every running task exits with `exit_code`.
    fn exit_all(&mut self, exit_code: i32) -> Vec<DriverEvent> {
        let running = std::mem::take(&mut self.running);
        running
            .into_iter()
            .map(|(task, attempt)| DriverEvent::Exited {
                task,
                attempt,
                exit: TaskExit { exit_code, ..TaskExit::default() },
            })
            .collect()
    }
}

impl DriverSet for FakeDrivers {
    fn execute(&mut self, command: DriverCommand) {
        match command {
            DriverCommand::Start { task, attempt, .. } => {
                let handle = format!("{task}#{attempt}");
                self.running.insert(task.clone(), attempt);
                self.events.push_back(DriverEvent::Started { task, attempt, handle });
            }
            DriverCommand::Stop { task, attempt, .. }
            | DriverCommand::ForceKill { task, attempt, .. } => {
                if self.running.remove(&task).is_some() {
                    let exit = TaskExit { signal: 15, ..TaskExit::default() };
                    self.events.push_back(DriverEvent::Exited { task, attempt, exit });
                }
            }
            DriverCommand::Signal { .. } | DriverCommand::Destroy { .. } => {}
        }
    }

    fn poll_event(&mut self) -> Option<DriverEvent> {
        self.events.pop_front()
    }
}

// ------------------------------------------------------------------------ region

type TestServer = ServerHost<Endpoint, MemStore, InlinePassRunner>;
type TestClient = ClientHost<Endpoint, FakeDrivers>;

struct Region {
    now: Millis,
    network: Rc<RefCell<Network>>,
    configs: BTreeMap<NodeId, ServerConfig>,
    servers: BTreeMap<NodeId, TestServer>,
    /// The stores of servers that are down.
    stopped: BTreeMap<NodeId, MemStore>,
    clients: BTreeMap<String, TestClient>,
    next_request: u64,
    /// What happened since the last `check`.
    log: String,
}

fn server_addr(id: NodeId) -> String {
    format!("10.0.0.{id}:4647")
}

fn client_addr(name: &str) -> String {
    format!("{name}:4646")
}

impl Region {
    fn new(seed: u64) -> Region {
        let network = Rc::new(RefCell::new(Network {
            now: Millis(START_MS),
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_flight: BTreeMap::new(),
            sequence: 0,
            down: BTreeSet::new(),
        }));
        let addrs: BTreeMap<NodeId, String> = (1..=3).map(|id| (id, server_addr(id))).collect();
        let mut region = Region {
            now: Millis(START_MS),
            network,
            configs: BTreeMap::new(),
            servers: BTreeMap::new(),
            stopped: BTreeMap::new(),
            clients: BTreeMap::new(),
            next_request: 1,
            log: String::new(),
        };
        for &id in addrs.keys() {
            let config =
                ServerConfig::new(id, seed.wrapping_mul(31).wrapping_add(id), addrs.clone());
            region.configs.insert(id, config);
            region.start_server(id, MemStore::new());
        }
        for (i, name) in ["c1", "c2"].into_iter().enumerate() {
            let config = ClientConfig::new(
                client_node(name),
                addrs.values().cloned().collect(),
                seed + i as u64,
            );
            let host = TestClient::start(
                region.now,
                config,
                region.endpoint(&client_addr(name)),
                FakeDrivers::default(),
            )
            .unwrap_or_else(|error| panic!("client {name} does not start: {error}"));
            region.clients.insert(name.to_owned(), host);
        }
        region
    }

    fn endpoint(&self, addr: &str) -> Endpoint {
        Endpoint { addr: addr.to_owned(), network: Rc::clone(&self.network) }
    }

    fn start_server(&mut self, id: NodeId, store: MemStore) {
        let config = self.configs[&id].clone();
        let endpoint = self.endpoint(&server_addr(id));
        let host =
            TestServer::start(self.now, config, endpoint, store, InlinePassRunner::default())
                .unwrap_or_else(|error| panic!("n{id} does not start: {error}"));
        self.network.borrow_mut().down.remove(&server_addr(id));
        self.servers.insert(id, host);
    }

    /// Power-fails server `id`: its unsynced writes are lost and frames to it too.
    fn crash(&mut self, id: NodeId) {
        let Some(host) = self.servers.remove(&id) else { return };
        let mut store = host.into_store();
        let unsynced = store.unsynced_writes();
        store.crash(0, None);
        self.network.borrow_mut().down.insert(server_addr(id));
        self.stopped.insert(id, store);
        let _ = writeln!(self.log, "n{id} crashed ({unsynced} unsynced writes lost)");
    }

    fn restart(&mut self, id: NodeId) {
        let Some(store) = self.stopped.remove(&id) else { return };
        self.start_server(id, store);
        let _ = writeln!(self.log, "n{id} restarted from its store");
    }

    /// The server whose leader loop runs.
    fn leader(&self) -> Option<NodeId> {
        self.servers.iter().find(|(_, h)| h.server().is_leader_loop_active()).map(|(&id, _)| id)
    }

    fn next_event(&self) -> Option<Millis> {
        let servers = self.servers.values().filter_map(TestServer::next_deadline);
        let clients = self.clients.values().filter_map(TestClient::next_deadline);
        let arrival = self.network.borrow().next_arrival();
        servers.chain(clients).chain(arrival).min()
    }

    /// Moves to the next event and carries it out.
    fn step(&mut self) {
        let Some(next) = self.next_event() else { return };
        self.now = self.now.max(next);
        self.network.borrow_mut().now = self.now;
        loop {
            let frame = self.network.borrow_mut().pop_due(self.now);
            let Some(frame) = frame else { break };
            self.deliver(frame);
        }
        let now = self.now;
        for (id, host) in &mut self.servers {
            if host.next_deadline().is_some_and(|d| d <= now) {
                host.handle_timeout(now).unwrap_or_else(|error| panic!("n{id}: {error}"));
            }
        }
        for host in self.clients.values_mut() {
            if host.next_deadline().is_some_and(|d| d <= now) {
                host.handle_timeout(now);
            }
        }
    }

    fn deliver(&mut self, frame: Frame) {
        if self.network.borrow().down.contains(&frame.to) {
            return;
        }
        let now = self.now;
        let server = self.servers.keys().copied().find(|&id| server_addr(id) == frame.to);
        if let Some(host) = server.and_then(|id| self.servers.get_mut(&id)) {
            host.handle_frame(now, &frame.from, &frame.bytes)
                .unwrap_or_else(|error| panic!("{}: {error}", frame.to));
            return;
        }
        let client = self.clients.keys().find(|name| client_addr(name) == frame.to).cloned();
        if let Some(host) = client.and_then(|name| self.clients.get_mut(&name)) {
            host.handle_frame(now, &frame.from, &frame.bytes);
        }
    }

    /// Runs until `done` holds; fails the test after [`SETTLE_MAX_MS`].
    fn run_until(&mut self, what: &str, done: impl Fn(&Region) -> bool) {
        let deadline = self.now + Millis(SETTLE_MAX_MS);
        while !done(self) {
            assert!(
                self.now < deadline,
                "{what}: not reached within {SETTLE_MAX_MS} ms\n{}",
                self.render()
            );
            self.step();
        }
        let _ = writeln!(self.log, "+{}ms {what}", self.now.0 - START_MS);
    }

    /// Hands an API call to server `id` and runs until its answer comes back.
    fn api(&mut self, id: NodeId, request: ApiRequest) -> ApiReply {
        let request_id = self.next_request;
        self.next_request += 1;
        let call = ApiCall { request_id, region: String::new(), request };
        let now = self.now;
        self.servers.get_mut(&id).map(|h| h.handle_api_call(now, call));
        let deadline = self.now + Millis(SETTLE_MAX_MS);
        loop {
            let host = self.servers.get_mut(&id).expect("the server answering the call is up");
            if let Some(response) = host.poll_api_reply() {
                assert_eq!(response.request_id, request_id);
                let _ = writeln!(
                    self.log,
                    "api n{id} #{request_id}: {}",
                    render_api_reply(&response.reply)
                );
                return response.reply;
            }
            assert!(self.now < deadline, "no answer to API call #{request_id}");
            self.step();
        }
    }

    fn register(&mut self, job: Job) -> ApiReply {
        let leader = self.leader().expect("a leader");
        self.api(leader, ApiRequest::JobRegister { job: Box::new(job), enforce_index: None })
    }

    /// Every task on `client` exits with `exit_code`.
    fn exit_tasks(&mut self, client: &str, exit_code: i32) {
        let now = self.now;
        let host = self.clients.get_mut(client).expect("client");
        let events = host.drivers_mut().exit_all(exit_code);
        let _ = writeln!(self.log, "{client}: {} tasks exit with code {exit_code}", events.len());
        for event in events {
            host.handle_driver_event(now, event);
        }
    }

    /// Allocations of `job_id` on the leader: (client status) per allocation, or empty.
    fn leader_allocs(&self, job_id: &str) -> Vec<String> {
        let Some(host) = self.leader().and_then(|id| self.servers.get(&id)) else {
            return Vec::new();
        };
        let mut allocs: Vec<String> = host
            .server()
            .state()
            .job_allocs("default", job_id)
            .iter()
            .map(|a| a.client_status.as_str().to_owned())
            .collect();
        allocs.sort();
        allocs
    }

    fn render(&self) -> String {
        let mut text = String::new();
        for (id, host) in &self.servers {
            let raft = host.server().raft();
            let state = host.server().state();
            let _ = writeln!(
                text,
                "n{id}: {:?} term={} leader_loop={} commit={} nodes={} jobs={} allocs={}",
                raft.role(),
                raft.term(),
                host.server().is_leader_loop_active(),
                raft.commit_index(),
                state.node_count(),
                state.jobs().count(),
                state.alloc_count(),
            );
        }
        for id in self.stopped.keys() {
            let _ = writeln!(text, "n{id}: down");
        }
        if let Some(host) = self.leader().and_then(|id| self.servers.get(&id)) {
            let state = host.server().state();
            for node in state.nodes() {
                let _ = writeln!(text, "node {}: {}", node.name, node.status.as_str());
            }
            let mut allocs: Vec<_> = state.allocs().collect();
            allocs.sort_by(|a, b| (&a.name, &a.node_name).cmp(&(&b.name, &b.node_name)));
            for alloc in allocs {
                let _ = writeln!(
                    text,
                    "alloc {} on {}: desired={} client={}",
                    alloc.name,
                    alloc.node_name,
                    alloc.desired_status.as_str(),
                    alloc.client_status.as_str()
                );
            }
        }
        for (name, host) in &self.clients {
            let client = host.client();
            let mut line = format!("{name}: registered={}", client.is_registered());
            for alloc_id in client.alloc_ids() {
                if let Some((status, _)) = client.alloc_status(alloc_id) {
                    let _ = write!(line, " {}", status.as_str());
                }
            }
            let _ = writeln!(text, "{line}");
        }
        text
    }
}

/// The one way a scenario shows what happened: the log since the last check, then the
/// region as it is now.
fn check(region: &mut Region, name: &str) {
    let text = format!("{}---\n{}", std::mem::take(&mut region.log), region.render());
    insta::assert_snapshot!(name, text);
}

fn client_node(name: &str) -> Node {
    let mut node = Node {
        id: format!("{name}-0000-0000-0000-000000000000"),
        name: name.into(),
        secret_id: format!("secret-{name}"),
        status: NodeStatus::Ready,
        datacenter: "dc1".into(),
        ..Node::default()
    };
    node.node_resources.cpu.cpu_shares = 4000;
    node.node_resources.memory.memory_mb = 8192;
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
fn job(id: &str, job_type: &str, count: u32) -> Job {
    let hcl = format!(
        "job \"{id}\" {{\n  type = \"{job_type}\"\n  group \"g\" {{\n    count = {count}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{ command = \"/bin/sleep\" }}\n      resources {{\n        cpu = 100\n        memory = 64\n      }}\n    }}\n  }}\n}}\n"
    );
    match parse("job.hcl", hcl.as_bytes(), &ParseOptions::default()) {
        Ok(job) => job,
        Err(report) => panic!("test job does not parse:\n{report}"),
    }
}

fn render_api_reply(reply: &ApiReply) -> String {
    match reply {
        ApiReply::Write { index, job_modify_index, eval_ids, .. } => {
            format!(
                "write ok index={index} job_modify_index={job_modify_index} evals={}",
                eval_ids.len()
            )
        }
        ApiReply::NotLeader { leader } => format!("not leader (leader {leader:?})"),
        ApiReply::Error { message } => format!("error: {message}"),
        other => format!("{other:?}"),
    }
}

/// A region with a leader and both clients registered and ready.
fn settled_region(seed: u64) -> Region {
    let mut region = Region::new(seed);
    region.run_until("a leader runs its loop and both clients are registered and ready", |r| {
        let Some(host) = r.leader().and_then(|id| r.servers.get(&id)) else { return false };
        let state = host.server().state();
        state.node_count() == 2
            && state.nodes().all(|n| n.status == NodeStatus::Ready)
            && r.clients.values().all(|c| c.client().is_registered())
    });
    region
}

fn all_are(statuses: &[String], count: usize, status: &str) -> bool {
    statuses.len() == count && statuses.iter().all(|s| s == status)
}

// ------------------------------------------------------------------------ scenarios

#[test]
fn a_service_job_is_placed_and_runs_on_the_clients() {
    let mut region = settled_region(1);
    check(&mut region, "elected");
    region.register(job("web", "service", 3));
    region.run_until("every allocation of web runs", |r| {
        all_are(&r.leader_allocs("web"), 3, "running")
    });
    check(&mut region, "service_running");
}

#[test]
fn the_leader_power_fails_and_restarts_from_its_store() {
    let mut region = settled_region(2);
    let acknowledged = match region.register(job("web", "service", 2)) {
        ApiReply::Write { index, .. } => index,
        other => panic!("register failed: {other:?}"),
    };
    region.run_until("every allocation of web runs", |r| {
        all_are(&r.leader_allocs("web"), 2, "running")
    });
    let old = region.leader().expect("a leader");
    region.crash(old);
    region.run_until("another server leads", |r| r.leader().is_some_and(|id| id != old));
    region.run_until("the new leader still has web running", |r| {
        all_are(&r.leader_allocs("web"), 2, "running")
    });
    region.restart(old);
    region.run_until("the restarted server has applied the acknowledged write", |r| {
        r.servers[&old].server().raft().applied_index() >= acknowledged
            && r.servers[&old].server().state().job("default", "web").is_some()
    });
    check(&mut region, "leader_restarted");
}

#[test]
fn batch_allocations_complete_when_their_tasks_exit() {
    let mut region = settled_region(3);
    region.register(job("report", "batch", 2));
    region.run_until("every allocation of report runs", |r| {
        all_are(&r.leader_allocs("report"), 2, "running")
    });
    for client in ["c1", "c2"] {
        region.exit_tasks(client, 0);
    }
    region.run_until("every allocation of report is complete", |r| {
        all_are(&r.leader_allocs("report"), 2, "complete")
    });
    check(&mut region, "batch_complete");
}

#[test]
fn hostile_frames_are_counted_and_dropped() {
    let mut region = settled_region(4);
    let now = region.now;
    let reply = WireMessage::Reply(ServerRpc {
        request_id: 7,
        reply: ServerReply::Error { message: "nope".into() },
    });
    let valid = encode_wire(&reply).expect("encode");
    let mut bad_checksum = valid.clone();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] ^= 0xff;
    let wrong_kind = codec::encode(FrameKind::JOB, &reply).expect("encode");
    let mut huge_len = valid.clone();
    huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let hostile: [&[u8]; 6] =
        [b"", b"\x00\x01garbage", &valid[..valid.len() / 2], &bad_checksum, &wrong_kind, &huge_len];
    let mut text = String::new();
    let host = region.servers.get_mut(&1).expect("n1");
    for bytes in hostile {
        host.handle_frame(now, "10.9.9.9:1", bytes).expect("a bad frame is not a host error");
    }
    // A reply has no business on a server.
    host.handle_frame(now, "10.9.9.9:1", &valid).expect("an unexpected frame is not a host error");
    let _ = writeln!(text, "n1: {:?}", host.counters());
    let client = region.clients.get_mut("c1").expect("c1");
    for bytes in hostile {
        client.handle_frame(now, "10.9.9.9:1", bytes);
    }
    let _ = writeln!(text, "c1: {:?}", client.counters());
    region.register(job("web", "service", 1));
    region.run_until("the region still places and runs work", |r| {
        all_are(&r.leader_allocs("web"), 1, "running")
    });
    region.log.insert_str(0, &text);
    check(&mut region, "hostile_frames");
}

// ------------------------------------------------------------------------ failing store

/// A memory store whose syncs fail once `failing` is set, as a disk that went away.
struct FailingStore {
    inner: MemStore,
    failing: Rc<RefCell<bool>>,
}

impl RaftStore for FailingStore {
    fn write(&mut self, persist: Persist) -> Result<(), StoreError> {
        self.inner.write(persist)
    }

    fn sync(&mut self) -> Result<WriteId, StoreError> {
        if *self.failing.borrow() {
            let error = std::io::Error::other("device gone");
            return Err(StoreError::Io { path: "raft/log".into(), action: "fsync", error });
        }
        self.inner.sync()
    }

    fn restored(&self) -> Restored {
        self.inner.restored()
    }
}

/// Counts the frames a host sends.
#[derive(Default)]
struct CountingTransport {
    frames: Rc<RefCell<u64>>,
}

impl Transport for CountingTransport {
    fn send(&mut self, _to: &str, _frame: Vec<u8>) -> Result<(), SendError> {
        *self.frames.borrow_mut() += 1;
        Ok(())
    }
}

#[test]
fn a_failed_sync_stops_the_host_and_reports_nothing_durable() {
    // A region of one: it elects itself as soon as its vote is durable.
    let addrs: BTreeMap<NodeId, String> = BTreeMap::from([(1, server_addr(1))]);
    let failing = Rc::new(RefCell::new(false));
    let store = FailingStore { inner: MemStore::new(), failing: Rc::clone(&failing) };
    let transport = CountingTransport::default();
    let frames = Rc::clone(&transport.frames);
    let config = ServerConfig::new(1, 5, addrs);
    let mut now = Millis(START_MS);
    let mut host = ServerHost::start(now, config, transport, store, InlinePassRunner::default())
        .expect("starts on a working store");
    let durable_before = host.server().raft().hard_state();
    *failing.borrow_mut() = true;
    // Run timeouts until the server campaigns, which needs its vote durable first.
    let error = loop {
        now = host.next_deadline().expect("a deadline").max(now);
        match host.handle_timeout(now) {
            Ok(()) => assert!(now.0 < START_MS + SETTLE_MAX_MS, "never campaigned"),
            Err(error) => break error,
        }
    };
    let sent_after_failure = *frames.borrow();
    let raft = host.server().raft();
    let mut text = format!("error: {error}\n");
    let _ = writeln!(
        text,
        "role: {:?} leader_loop: {}",
        raft.role(),
        host.server().is_leader_loop_active()
    );
    let _ = writeln!(text, "stopped: {}", host.is_stopped());
    let _ = writeln!(text, "store errors: {}", host.counters().store_errors);
    let _ = writeln!(
        text,
        "durable hard state on disk unchanged: {}",
        host.store().restored().hard_state == durable_before
    );
    let _ = writeln!(text, "next input: {:?}", host.handle_timeout(now).map_err(|e| e.to_string()));
    let _ =
        writeln!(text, "frames sent after the failure: {}", *frames.borrow() - sent_after_failure);
    assert!(matches!(error, HostError::Store(_)));
    insta::assert_snapshot!("failed_sync", text);
}

// ------------------------------------------------------------------------ group commit

/// A memory store that records each write and sync in a shared journal.
struct JournaledStore {
    inner: MemStore,
    journal: Rc<RefCell<Vec<String>>>,
}

impl RaftStore for JournaledStore {
    fn write(&mut self, persist: Persist) -> Result<(), StoreError> {
        let line = format!(
            "write {} (hard_state={} entries={})",
            persist.id,
            persist.hard_state.is_some(),
            persist.entries.len()
        );
        self.journal.borrow_mut().push(line);
        self.inner.write(persist)
    }

    fn sync(&mut self) -> Result<WriteId, StoreError> {
        let write_id = self.inner.sync()?;
        self.journal.borrow_mut().push(format!("sync -> {write_id}"));
        Ok(write_id)
    }

    fn restored(&self) -> Restored {
        self.inner.restored()
    }
}

#[test]
fn every_input_ends_in_one_sync_for_all_its_writes() {
    let addrs: BTreeMap<NodeId, String> = BTreeMap::from([(1, server_addr(1))]);
    let journal = Rc::new(RefCell::new(Vec::new()));
    let store = JournaledStore { inner: MemStore::new(), journal: Rc::clone(&journal) };
    let config = ServerConfig::new(1, 9, addrs);
    let mut now = Millis(START_MS);
    let mut host = ServerHost::start(
        now,
        config,
        CountingTransport::default(),
        store,
        InlinePassRunner::default(),
    )
    .expect("starts");
    while !host.server().is_leader_loop_active() {
        now = host.next_deadline().expect("a deadline").max(now);
        assert!(now.0 < START_MS + SETTLE_MAX_MS, "never led");
        host.handle_timeout(now).expect("a working store");
    }
    journal.borrow_mut().push(format!("-- leader, api call at +{}ms", now.0 - START_MS));
    let request =
        ApiRequest::JobRegister { job: Box::new(job("web", "service", 1)), enforce_index: None };
    host.handle_api_call(now, ApiCall { request_id: 1, region: String::new(), request })
        .expect("a working store");
    let reply = host.poll_api_reply().map(|r| render_api_reply(&r.reply));
    journal.borrow_mut().push(format!("-- reply: {reply:?}"));
    let lines = journal.borrow().clone();
    // Every sync follows at least one write and reports the last one written.
    let mut last_written = None;
    for line in &lines {
        if let Some(rest) = line.strip_prefix("write ") {
            last_written = rest.split(' ').next().map(str::to_owned);
        } else if let Some(id) = line.strip_prefix("sync -> ") {
            assert_eq!(last_written.take().as_deref(), Some(id), "{lines:#?}");
        }
    }
    insta::assert_snapshot!("group_commit", lines.join("\n"));
}

/// A region of one server at the start instant, on a fresh memory store.
fn lone_server<R: PassRunner>(seed: u64, runner: R) -> ServerHost<CountingTransport, MemStore, R> {
    let addrs: BTreeMap<NodeId, String> = BTreeMap::from([(1, server_addr(1))]);
    let config = ServerConfig::new(1, seed, addrs);
    let transport = CountingTransport::default();
    ServerHost::start(Millis(START_MS), config, transport, MemStore::new(), runner)
        .expect("starts on a working store")
}

/// Client node `name`'s registration, as its host would send it.
fn register_frame(name: &str) -> Vec<u8> {
    let request = drover_core::rpc::ClientRpc {
        request_id: 1,
        request: drover_core::rpc::ClientRequest::NodeRegister {
            node: Box::new(client_node(name)),
        },
    };
    encode_wire(&WireMessage::Request(request)).expect("encode")
}

// ------------------------------------------------------------------------ hostile bytes

proptest::proptest! {
    /// Any bytes, or a valid frame with one byte changed, cost a counter and nothing else.
    #[test]
    fn no_frame_makes_a_host_fail(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        position in 0usize..4096,
        flip in 1u8..=255,
    ) {
        let now = Millis(START_MS);
        let mut host = lone_server(11, InlinePassRunner::default());
        let mut mutated = register_frame("c1");
        let position = position % mutated.len();
        mutated[position] ^= flip;
        for bytes in [&noise, &mutated] {
            proptest::prop_assert!(host.handle_frame(now, "10.9.9.9:1", bytes).is_ok());
        }
        let counters = host.counters();
        proptest::prop_assert!(counters.frames_undecodable + counters.frames_unexpected >= 1);
    }
}

// ------------------------------------------------------------------------ pass threads

/// A pass pool's results so far, waited for through its wake function.
struct Pool {
    runner: ThreadPassRunner,
    woken: mpsc::Receiver<()>,
}

/// How long a test waits for a pass thread before failing.
const POOL_WAIT: Duration = Duration::from_secs(20);

impl Pool {
    fn start(threads: usize, queue_len_max: usize, run: PassFn) -> Pool {
        let (wake, woken) = wake_channel();
        let config = PassPoolConfig { threads, queue_len_max };
        let runner = ThreadPassRunner::start(config, run, Some(wake)).expect("the pool starts");
        Pool { runner, woken }
    }

    /// Waits for `count` results and renders them in pass order.
    fn results(&mut self, count: usize) -> String {
        let mut results = Vec::new();
        while results.len() < count {
            match self.runner.poll_output() {
                Some(result) => results.push(result),
                None => self.woken.recv_timeout(POOL_WAIT).expect("a pass finishes"),
            }
        }
        results.sort_by_key(|(pass_id, _)| *pass_id);
        let mut text = String::new();
        for (pass_id, result) in results {
            let line = match result {
                Ok(output) => format!("ok, {} placements", output.plan.placement_count()),
                Err(failure) => format!("failed: {failure}"),
            };
            let _ = writeln!(text, "pass {pass_id}: {line}");
        }
        text
    }
}

/// A wake function that posts to a channel, as a host's loop would wait on one.
fn wake_channel() -> (WakeFn, mpsc::Receiver<()>) {
    let (wake, woken) = mpsc::channel();
    let wake = Mutex::new(wake);
    let wake: WakeFn = Arc::new(move || {
        let _ = wake.lock().expect("wake lock").send(());
    });
    (wake, woken)
}

fn pass(pass_id: u64, job_id: &str) -> SchedulePass {
    SchedulePass {
        pass_id,
        eval: Evaluation { job_id: job_id.into(), ..Evaluation::default() },
        snapshot: State::new().snapshot(),
        seed: pass_id,
        now_ns: 0,
        config: SchedulerConfig::default(),
    }
}

/// A pass function that waits until the test opens the gate, saying when it started.
fn gated() -> (PassFn, mpsc::Receiver<String>, mpsc::Sender<()>) {
    let (started, started_rx) = mpsc::channel();
    let (open, gate) = mpsc::channel::<()>();
    let (started, gate) = (Mutex::new(started), Mutex::new(gate));
    let run: PassFn = Arc::new(move |pass: &SchedulePass| {
        let _ = started.lock().expect("lock").send(pass.eval.job_id.clone());
        let _ = gate.lock().expect("lock").recv_timeout(POOL_WAIT);
        ScheduleOutput::default()
    });
    (run, started_rx, open)
}

fn check_pool(name: &str, text: &str) {
    insta::assert_snapshot!(name, text);
}

#[test]
fn a_panicking_pass_is_a_failed_result_and_its_thread_goes_on() {
    let run: PassFn = Arc::new(|pass: &SchedulePass| {
        if pass.eval.job_id == "boom" {
            panic!("the scheduler tripped over {}", pass.eval.job_id);
        }
        pass.run()
    });
    let mut pool = Pool::start(1, 4, run);
    for (pass_id, job_id) in [(1, "web"), (2, "boom"), (3, "db")] {
        pool.runner.submit(pass(pass_id, job_id));
    }
    let mut text = pool.results(3);
    let stats = pool.runner.stats();
    let _ = writeln!(
        text,
        "threads={} finished={} panicked={} refused={}",
        pool.runner.threads(),
        stats.finished,
        stats.panicked,
        stats.refused
    );
    check_pool("pool_panic", &text);
}

#[test]
fn a_full_queue_refuses_a_pass_at_once() {
    let (run, started, open) = gated();
    let mut pool = Pool::start(1, 1, run);
    pool.runner.submit(pass(1, "first"));
    let mut text = format!("started: {}\n", started.recv_timeout(POOL_WAIT).expect("a start"));
    pool.runner.submit(pass(2, "queued"));
    pool.runner.submit(pass(3, "refused"));
    let refused = pool.runner.poll_output().map(|(id, r)| format!("pass {id}: {r:?}"));
    let _ = writeln!(text, "at once: {refused:?}");
    for _ in 0..2 {
        open.send(()).expect("the pass waits");
    }
    text.push_str(&pool.results(2));
    let _ = writeln!(text, "refused={}", pool.runner.stats().refused);
    check_pool("pool_full", &text);
}

#[test]
fn dropping_the_runner_joins_its_threads_and_drops_queued_passes() {
    let (run, started, open) = gated();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let ran_in_pass = Arc::clone(&ran);
    let counting: PassFn = Arc::new(move |pass: &SchedulePass| {
        let output = run(pass);
        ran_in_pass.lock().expect("lock").push(pass.eval.job_id.clone());
        output
    });
    let mut pool = Pool::start(2, 4, counting);
    for (pass_id, job_id) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        pool.runner.submit(pass(pass_id, job_id));
    }
    let mut first = [started.recv_timeout(POOL_WAIT), started.recv_timeout(POOL_WAIT)]
        .map(|name| name.expect("two passes start"));
    first.sort();
    // The gate opens only once the drop is under way, so the two running passes finish
    // after the runner stopped taking queued ones.
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..4 {
            let _ = open.send(());
        }
    });
    drop(pool);
    opener.join().expect("the opener ends");
    // Only the test holds the log now: the pass function, and every thread, is gone.
    let released = Arc::strong_count(&ran) == 1;
    let mut ran = ran.lock().expect("lock").clone();
    ran.sort();
    let text = format!(
        "started: {first:?}\nran: {ran:?}\nthreads joined, pass function released: {released}\n"
    );
    check_pool("pool_drop", &text);
}

#[test]
fn a_server_host_schedules_on_pass_threads_and_survives_a_panicking_pass() {
    // The first pass panics; the evaluation goes back to the broker and its second
    // delivery is planned and committed.
    let passes = Arc::new(Mutex::new(0u32));
    let run: PassFn = Arc::new(move |pass: &SchedulePass| {
        let nth = {
            let mut passes = passes.lock().expect("lock");
            *passes += 1;
            *passes
        };
        if nth == 1 {
            panic!("the first pass breaks");
        }
        pass.run()
    });
    let (wake, woken) = wake_channel();
    let config = PassPoolConfig { threads: 2, queue_len_max: 4 };
    let runner = ThreadPassRunner::start(config, run, Some(wake)).expect("the pool starts");
    let mut now = Millis(START_MS);
    let mut host = lone_server(13, runner);
    let mut log = String::new();
    let mut registered = false;
    let mut job_sent = false;
    let deadline = Millis(START_MS + SETTLE_MAX_MS);
    while host.server().state().job_allocs("default", "web").len() < 2 {
        assert!(now < deadline, "web was never placed");
        if host.server().is_leader_loop_active() && !registered {
            let frame = register_frame("c1");
            host.handle_frame(now, &client_addr("c1"), &frame).expect("a working store");
            registered = true;
        }
        if host.server().state().node_count() == 1 && !job_sent {
            let job = Box::new(job("web", "service", 2));
            let request = ApiRequest::JobRegister { job, enforce_index: None };
            host.handle_api_call(now, ApiCall { request_id: 1, region: String::new(), request })
                .expect("a working store");
            job_sent = true;
        }
        // Passes finish on their threads meanwhile; simulated time moves when none does.
        match woken.recv_timeout(Duration::from_millis(5)) {
            Ok(()) => host.handle_passes_ready(now).expect("a working store"),
            Err(_) => {
                now = host.next_deadline().map_or(now, |d| d.max(now));
                host.handle_timeout(now).expect("a working store");
            }
        }
        while let Some(reply) = host.poll_api_reply() {
            let _ = writeln!(log, "api: {}", render_api_reply(&reply.reply));
        }
    }
    let state = host.server().state();
    let mut allocs: Vec<String> = state
        .job_allocs("default", "web")
        .iter()
        .map(|a| format!("alloc {} on {}", a.name, a.node_name))
        .collect();
    allocs.sort();
    for line in allocs {
        let _ = writeln!(log, "{line}");
    }
    let stats = host.runner().stats();
    let _ = writeln!(log, "passes: finished={} panicked={}", stats.finished, stats.panicked);
    drop(host);
    check_pool("pool_host", &log);
}

#[test]
fn a_server_host_encodes_state_snapshots_on_a_thread_and_compacts_once_they_are_written() {
    let (wake, woken) = wake_channel();
    let addrs: BTreeMap<NodeId, String> = BTreeMap::from([(1, server_addr(1))]);
    let mut config = ServerConfig::new(1, 17, addrs);
    config.raft.snapshot_threshold_entries = 4;
    config.raft.snapshot_trailing_entries = 2;
    let mut now = Millis(START_MS);
    let transport = CountingTransport::default();
    let mut host =
        ServerHost::start(now, config, transport, MemStore::new(), InlinePassRunner::default())
            .expect("starts on a working store");
    host.encode_snapshots_on_thread(Some(wake));
    host.enable_timings();
    let deadline = Millis(START_MS + SETTLE_MAX_MS);
    let mut jobs_sent = 0;
    // Until the store holds a snapshot of a state with every job placed.
    while host.store().snapshot().meta.index == 0
        || host.server().state().alloc_count() < 3
        || host.server().snapshot_in_flight().is_some()
    {
        assert!(now < deadline, "no snapshot was written");
        if host.server().is_leader_loop_active() && host.server().state().node_count() == 0 {
            let frame = register_frame("c1");
            host.handle_frame(now, &client_addr("c1"), &frame).expect("a working store");
        }
        if host.server().state().node_count() == 1 && jobs_sent < 3 {
            jobs_sent += 1;
            let job = Box::new(job(&format!("web{jobs_sent}"), "service", 1));
            let request = ApiRequest::JobRegister { job, enforce_index: None };
            let call = ApiCall { request_id: jobs_sent, region: String::new(), request };
            host.handle_api_call(now, call).expect("a working store");
        }
        match woken.recv_timeout(Duration::from_millis(5)) {
            Ok(()) => host.handle_passes_ready(now).expect("a working store"),
            Err(_) => {
                now = host.next_deadline().map_or(now, |d| d.max(now));
                host.handle_timeout(now).expect("a working store");
            }
        }
    }
    let written = host.store().snapshot().clone();
    let raft = host.server().raft();
    // Raft dropped the entries the written snapshot covers but the two trailing ones, and
    // the store kept the same.
    assert_eq!(raft.snapshot_meta().index, written.meta.index);
    assert_eq!(raft.first_index(), written.meta.index - 1);
    let on_disk = host.store().restored().entries;
    assert_eq!(on_disk.first().map(|e| e.index), Some(raft.first_index()));
    let restored = State::from_snapshot_bytes(&written.data, usize::MAX).expect("decodes");
    assert!(restored.latest_index() <= written.meta.index);
    assert!(restored.node_count() == 1 && restored.jobs().count() >= 1);
    let timings = host.timings().expect("enabled");
    assert_eq!(timings.snapshot_encode, Duration::ZERO, "nothing encoded on the host's thread");
    assert!(timings.snapshot_encode_off_loop > Duration::ZERO);
}
