//! One simulated client machine: a `runtime::host::ClientHost` over the simulated network
//! with simulated task drivers. A kill takes the machine down whole (agent and tasks, as a
//! reboot does); a restart registers the same node again with nothing running.

use super::net::{self, AddrNames, Outbox, SimMsg, Wake};
use super::world::{NodeKey, Shared, lock, trace};
use crate::clock::Clock;
use crate::rng::SimRng;
use drover_core::client::{
    ClientConfig, ClientEvent, DriverCommand, DriverEvent, TaskExit, TaskRef,
};
use drover_core::model::{DriverInfo, JobType, Node, NodeStatus};
use drover_core::time::Millis;
use drover_runtime::host::{ClientHost, DriverSet};
use madsim::net::Endpoint;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// What every simulated client machine offers.
pub const NODE_CPU_SHARES: i64 = 4000;
pub const NODE_MEMORY_MB: i64 = 8192;
pub const NODE_DISK_MB: i64 = 100_000;

pub fn node_id(key: NodeKey) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", key.region, key.index)
}

fn node(key: NodeKey) -> Node {
    let name = key.name();
    let mut node = Node {
        id: node_id(key),
        name: name.clone(),
        secret_id: format!("secret-{name}"),
        status: NodeStatus::Ready,
        datacenter: "dc1".into(),
        ..Node::default()
    };
    node.node_resources.cpu.cpu_shares = NODE_CPU_SHARES;
    node.node_resources.memory.memory_mb = NODE_MEMORY_MB;
    node.node_resources.disk.disk_mb = NODE_DISK_MB;
    node.attributes.insert("kernel.name".into(), "linux".into());
    node.attributes.insert("unique.hostname".into(), name);
    node.drivers.insert(
        "raw_exec".into(),
        DriverInfo { detected: true, healthy: true, ..DriverInfo::default() },
    );
    node.compute_class();
    node
}

/// How one attempt of a task behaves, drawn from the seed, the task and the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Runs until stopped.
    Runs,
    /// Exits by itself after a while with this code.
    Exits { after_ms: u64, code: i32 },
}

struct Running {
    attempt: u32,
    /// Ignores the stop signal; only a force kill ends it.
    hangs: bool,
    /// Its own exit, queued in `timed`.
    exit_at: Option<(u64, u64)>,
}

/// Task drivers that run nothing: each start answers at once, and each attempt runs,
/// exits 0, fails or hangs as the seed says (failures and hangs only in the safety phase).
pub struct SimDrivers {
    world: Shared,
    key: NodeKey,
    ready: VecDeque<DriverEvent>,
    /// Events due later, by (simulated ms since start, sequence).
    timed: BTreeMap<(u64, u64), DriverEvent>,
    sequence: u64,
    running: BTreeMap<TaskRef, Running>,
}

impl SimDrivers {
    fn new(world: Shared, key: NodeKey) -> SimDrivers {
        SimDrivers {
            world,
            key,
            ready: VecDeque::new(),
            timed: BTreeMap::new(),
            sequence: 0,
            running: BTreeMap::new(),
        }
    }

    fn behaviour(&self, task: &TaskRef, attempt: u32, job_type: JobType) -> (Behaviour, bool) {
        let w = lock(&self.world);
        let mut hash = w.seed ^ 0x6472_6976;
        for b in task.alloc_id.bytes().chain(task.task.bytes()) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = SimRng::new(hash ^ u64::from(attempt));
        let faulty = w.faulty;
        let fails = faulty && rng.chance(w.params.task_fail);
        let hangs = faulty && rng.chance(w.params.task_hang);
        let batch = matches!(job_type, JobType::Batch | JobType::Sysbatch);
        let behaviour = match (batch, fails) {
            (_, true) => Behaviour::Exits { after_ms: rng.range(500, 60_000), code: 1 },
            (true, false) => Behaviour::Exits { after_ms: rng.range(500, 30_000), code: 0 },
            (false, false) => Behaviour::Runs,
        };
        (behaviour, hangs)
    }

    /// When the next timed event is due, in simulated ms since start.
    fn next_due(&self) -> Option<u64> {
        self.timed.keys().next().map(|(at, _)| *at)
    }

    fn take_due(&mut self, elapsed_ms: u64) -> Vec<DriverEvent> {
        let later = self.timed.split_off(&(elapsed_ms + 1, 0));
        let due = std::mem::replace(&mut self.timed, later);
        let events: Vec<DriverEvent> = due.into_values().collect();
        for event in &events {
            if let DriverEvent::Exited { task, attempt, .. } = event
                && self.running.get(task).is_some_and(|r| r.attempt == *attempt)
            {
                self.running.remove(task);
            }
        }
        events
    }

    fn start(&mut self, task: TaskRef, attempt: u32, job_type: JobType) {
        if let Some(earlier) = self.running.get(&task) {
            // The client's invariant: no task starts while an earlier attempt may run.
            let violation = format!(
                "{}: {task} attempt {attempt} started while attempt {} still runs",
                self.key.name(),
                earlier.attempt
            );
            lock(&self.world).checker.violation(violation);
        }
        let (behaviour, hangs) = self.behaviour(&task, attempt, job_type);
        let exit_at = match behaviour {
            Behaviour::Runs => None,
            Behaviour::Exits { after_ms, code } => {
                let at = lock(&self.world).elapsed_ms() + after_ms;
                self.sequence += 1;
                let exit = TaskExit { exit_code: code, ..TaskExit::default() };
                let event = DriverEvent::Exited { task: task.clone(), attempt, exit };
                self.timed.insert((at, self.sequence), event);
                Some((at, self.sequence))
            }
        };
        let handle = format!("{task}#{attempt}");
        self.running.insert(task.clone(), Running { attempt, hangs, exit_at });
        self.ready.push_back(DriverEvent::Started { task, attempt, handle });
    }

    fn kill(&mut self, task: TaskRef, attempt: u32, signal: i32, force: bool) {
        let Some(running) = self.running.get(&task) else { return };
        if running.attempt != attempt || (running.hangs && !force) {
            return;
        }
        if let Some(key) = running.exit_at {
            self.timed.remove(&key);
        }
        self.running.remove(&task);
        let exit = TaskExit { signal, ..TaskExit::default() };
        self.ready.push_back(DriverEvent::Exited { task, attempt, exit });
    }
}

impl DriverSet for SimDrivers {
    fn execute(&mut self, command: DriverCommand) {
        match command {
            DriverCommand::Start { task, attempt, alloc, .. } => {
                let job_type = alloc.job.as_ref().map(|j| j.job_type).unwrap_or_default();
                self.start(task, attempt, job_type);
            }
            DriverCommand::Stop { task, attempt, .. } => self.kill(task, attempt, 15, false),
            DriverCommand::ForceKill { task, attempt, .. } => self.kill(task, attempt, 9, true),
            // A simulated task ignores an operator's signal.
            DriverCommand::Signal { .. } | DriverCommand::Destroy { .. } => {}
        }
    }

    fn poll_event(&mut self) -> Option<DriverEvent> {
        self.ready.pop_front()
    }
}

type Host = ClientHost<Outbox, SimDrivers>;

/// The client machine's whole life, from boot (or reboot) to being killed.
pub async fn run(world: Shared, key: NodeKey) {
    let ep = match Endpoint::bind(key.addr()).await {
        Ok(ep) => ep,
        Err(error) => {
            lock(&world).checker.violation(format!("{}: cannot bind: {error}", key.name()));
            return;
        }
    };
    let (clock, config) = {
        let mut w = lock(&world);
        let servers = w.servers(key.region).iter().map(|k| k.addr().to_string()).collect();
        let seed = w.boot_seed(key);
        (w.clock(key), ClientConfig::new(node(key), servers, seed))
    };
    let now = local_now(&world, &clock);
    let drivers = SimDrivers::new(world.clone(), key);
    let mut host = match Host::start(now, config, Outbox::default(), drivers) {
        Ok(host) => host,
        Err(error) => {
            lock(&world).checker.violation(format!("{}: does not start: {error}", key.name()));
            return;
        }
    };
    trace!(lock(&world), "{} start", key.name());
    let mut receive = net::recv(&ep);
    let mut peers = AddrNames::default();
    loop {
        flush(&world, &ep, key, &mut host).await;
        let deadline = {
            let w = lock(&world);
            let host_at =
                host.next_deadline().map(|d| w.instant_at(clock.global_at(w.global_now(), d)));
            let driver_at =
                host.drivers_mut().next_due().map(|ms| w.start + Duration::from_millis(ms));
            host_at.into_iter().chain(driver_at).min()
        };
        match net::wait(&ep, &mut receive, deadline).await {
            Wake::Message(SimMsg::Frame(bytes), from) => {
                host.handle_frame(local_now(&world, &clock), peers.name(from), &bytes);
            }
            Wake::Message(..) => {}
            Wake::Timeout => {
                let now = local_now(&world, &clock);
                let elapsed = lock(&world).elapsed_ms();
                for event in host.drivers_mut().take_due(elapsed) {
                    host.handle_driver_event(now, event);
                }
                if host.next_deadline().is_some_and(|d| d <= now) {
                    host.handle_timeout(now);
                }
            }
            Wake::Closed => return,
        }
        lock(&world).steps += 1;
    }
}

fn local_now(world: &Shared, clock: &Clock) -> Millis {
    clock.local(lock(world).global_now())
}

/// Sends the frames the host queued and traces what the client did.
async fn flush(world: &Shared, ep: &Endpoint, key: NodeKey, host: &mut Host) {
    {
        let mut w = lock(world);
        while let Some(event) = host.poll_event() {
            if let ClientEvent::Task { task, event } = &event {
                let alloc = task.alloc_id.get(..8).unwrap_or(&task.alloc_id);
                trace!(w, "{} task {alloc}/{} {}", key.name(), task.task, event.event_type);
            } else {
                trace!(w, "{} {event:?}", key.name());
            }
        }
    }
    let frames = std::mem::take(&mut host.transport_mut().frames);
    for (to, frame) in frames {
        if let Ok(to) = to.parse() {
            net::send(world, ep, Some(key), to, SimMsg::Frame(frame)).await;
        }
    }
}
