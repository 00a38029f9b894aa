//! What every simulated node shares with the supervisor: the network's fault filter, the
//! disks that outlive a crash, the clocks, the observer's view of each server, the checker
//! and the trace.
//!
//! madsim runs a seed on one thread and polls one task at a time, so the registry behind
//! its mutex is read and written in the same order on every run of the seed. Nodes take
//! the lock only between inputs, never across an `await`.

use super::params::{Params, REGIONS, SERVERS_PER_REGION};
use crate::checkers::cluster::ClusterChecker;
use crate::clock::{Clock, RATE_IDEAL_PPM};
use crate::rng::SimRng;
use drover_core::raft::{Membership, Term};
use drover_core::server::ApiReply;
use drover_core::state::State;
use drover_core::time::Millis;
use drover_runtime::store::mem::MemStore;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// 2023-11-14T22:13:20Z: hosts read unix milliseconds, and every clock starts here.
pub const START_MS: u64 = 1_700_000_000_000;
/// Server RPC port and client port, as Nomad's defaults.
pub const SERVER_PORT: u16 = 4647;
pub const CLIENT_PORT: u16 = 4646;
/// The operator's API caller lives on its own simulated machine.
pub const API_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1)), 4646);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Server,
    Client,
}

/// One simulated machine: region `r<region>`, server `s<index>` or client `c<index>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    pub region: u8,
    pub kind: Kind,
    pub index: u8,
}

impl NodeKey {
    pub fn server(region: u8, index: u8) -> NodeKey {
        NodeKey { region, kind: Kind::Server, index }
    }

    pub fn client(region: u8, index: u8) -> NodeKey {
        NodeKey { region, kind: Kind::Client, index }
    }

    pub fn name(&self) -> String {
        let kind = match self.kind {
            Kind::Server => 's',
            Kind::Client => 'c',
        };
        format!("r{}{kind}{}", self.region, self.index)
    }

    /// `10.<region>.0.<n>` for servers, `10.<region>.1.<n>` for clients.
    pub fn addr(&self) -> SocketAddr {
        let (subnet, port) = match self.kind {
            Kind::Server => (0, SERVER_PORT),
            Kind::Client => (1, CLIENT_PORT),
        };
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, self.region, subnet, self.index)), port)
    }

    pub fn from_addr(addr: SocketAddr) -> Option<NodeKey> {
        let IpAddr::V4(ip) = addr.ip() else { return None };
        let [ten, region, subnet, index] = ip.octets();
        match (ten, subnet) {
            (10, 0) if region != 99 => Some(NodeKey::server(region, index)),
            (10, 1) if region != 99 => Some(NodeKey::client(region, index)),
            _ => None,
        }
    }
}

pub fn region_name(region: u8) -> String {
    format!("r{region}")
}

/// What the supervisor sees of one server after its last step.
#[derive(Clone, Debug)]
pub struct ServerView {
    pub up: bool,
    pub term: Term,
    pub leader_loop: bool,
    /// Its replicated state, shown in the liveness phase only (the phase that reads it).
    pub state: Option<State>,
    /// Its Raft configuration, shown in the liveness phase only.
    pub membership: Option<Membership>,
}

/// Traffic the transport handled, for the trace's last line.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetStats {
    pub sent: u64,
    pub cut: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

pub struct World {
    pub seed: u64,
    pub params: Params,
    pub rng: SimRng,
    /// madsim's instant at simulated time 0.
    pub start: Instant,
    trace: Option<String>,
    stream: bool,
    /// The safety phase: message faults and task failures on.
    pub faulty: bool,
    /// Directed links that drop every message (partitions, symmetric or not).
    pub cut: BTreeSet<(NodeKey, NodeKey)>,
    pub clocks: BTreeMap<NodeKey, Clock>,
    /// Each server's disk, kept here so that a restarted server reopens what it wrote.
    pub disks: BTreeMap<NodeKey, Arc<Mutex<MemStore>>>,
    /// Extra processing time per input on a slow node.
    pub slow_ms: BTreeMap<NodeKey, u64>,
    /// Servers whose disk failed and whose host stopped: the supervisor kills them (the
    /// disk loses or tears what was unsynced) and restarts them later.
    pub disk_failed: BTreeSet<NodeKey>,
    /// Clock steps waiting for a node's next boot: a running process reads monotonic time
    /// (the agent's `now` is its start's unix time plus a monotonic clock), so a wall
    /// clock stepped back reaches a node only when its process starts again.
    pub clock_steps: BTreeMap<NodeKey, i64>,
    pub periodic: crate::checkers::cluster::PeriodicChecker,
    pub views: BTreeMap<NodeKey, ServerView>,
    pub checker: ClusterChecker,
    pub replies: BTreeMap<u64, ApiReply>,
    pub net: NetStats,
    /// Inputs handled by all nodes.
    pub steps: u64,
    /// Each region's servers, in the order they joined; a replaced server (killed for
    /// good, disk and all) leaves this list.
    pub members: BTreeMap<u8, Vec<NodeKey>>,
    /// Servers that started with an empty disk in a running region: they join (wait to be
    /// added by the leader's autopilot) instead of bootstrapping.
    pub joiners: BTreeSet<NodeKey>,
    /// How many times each machine's process started.
    boots: BTreeMap<NodeKey, u64>,
}

pub type Shared = Arc<Mutex<World>>;

/// The registry's lock; a node that panicked while holding it already failed the seed.
pub fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl World {
    pub fn new(seed: u64, params: Params, rng: SimRng, trace: bool, stream: bool) -> World {
        let checker = ClusterChecker::new(trace);
        World {
            seed,
            params,
            rng,
            start: Instant::now(),
            trace: trace.then(String::new),
            stream,
            faulty: true,
            cut: BTreeSet::new(),
            clocks: BTreeMap::new(),
            disks: BTreeMap::new(),
            slow_ms: BTreeMap::new(),
            disk_failed: BTreeSet::new(),
            clock_steps: BTreeMap::new(),
            periodic: Default::default(),
            views: BTreeMap::new(),
            checker,
            replies: BTreeMap::new(),
            net: NetStats::default(),
            steps: 0,
            members: (1..=REGIONS as u8)
                .map(|r| {
                    (r, (1..=SERVERS_PER_REGION as u8).map(|i| NodeKey::server(r, i)).collect())
                })
                .collect(),
            joiners: BTreeSet::new(),
            boots: BTreeMap::new(),
        }
    }

    /// The random seed machine `key`'s process draws as it starts, new on every boot as
    /// a real agent's is (it seeds from the clock and its pid): a restarted server that
    /// drew its last life's seed again would hand out its last life's evaluation and
    /// allocation IDs again.
    pub fn boot_seed(&mut self, key: NodeKey) -> u64 {
        let boot = self.boots.entry(key).or_insert(0);
        *boot += 1;
        let mut z = self.seed
            ^ (u64::from(key.kind == Kind::Client) << 56)
            ^ (u64::from(key.region) << 40)
            ^ (u64::from(key.index) << 32)
            ^ boot.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // splitmix64's finaliser, so neighbouring boots draw unrelated seeds.
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// How many times machine `key`'s process started, this start included.
    pub fn boots(&self, key: NodeKey) -> u64 {
        self.boots.get(&key).copied().unwrap_or(0)
    }

    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// Simulated milliseconds since the run began.
    pub fn elapsed_ms(&self) -> u64 {
        Instant::now().saturating_duration_since(self.start).as_millis() as u64
    }

    /// Simulated unix time in milliseconds, as an ideal clock reads it.
    pub fn global_now(&self) -> Millis {
        Millis(START_MS + self.elapsed_ms())
    }

    /// The madsim instant of simulated unix time `global`.
    pub fn instant_at(&self, global: Millis) -> Instant {
        self.start + Duration::from_millis(global.as_u64().saturating_sub(START_MS))
    }

    /// Gives `key` a clock drifting by up to the seed's bound, once.
    pub fn clock(&mut self, key: NodeKey) -> Clock {
        if let Some(clock) = self.clocks.get_mut(&key) {
            if let Some(step_ms) = self.clock_steps.remove(&key) {
                let now = Instant::now().saturating_duration_since(self.start).as_millis() as u64;
                clock.step(Millis(START_MS + now), step_ms);
            }
            return *clock;
        }
        let drift_ppm = self.rng.range(0, self.params.clock_drift_ppm_max + 1);
        let rate_ppm = if self.rng.chance(0.5) {
            RATE_IDEAL_PPM + drift_ppm
        } else {
            RATE_IDEAL_PPM - drift_ppm
        };
        let clock = Clock::new(Millis(START_MS), rate_ppm);
        self.clocks.insert(key, clock);
        clock
    }

    pub fn disk(&mut self, key: NodeKey) -> Arc<Mutex<MemStore>> {
        Arc::clone(self.disks.entry(key).or_insert_with(|| Arc::new(Mutex::new(MemStore::new()))))
    }

    /// One trace line, stamped with simulated time.
    pub fn trace(&mut self, line: std::fmt::Arguments<'_>) {
        let elapsed = self.elapsed_ms();
        let Some(out) = self.trace.as_mut() else { return };
        let _ = writeln!(out, "t={}.{:03}s {line}", elapsed / 1000, elapsed % 1000);
        if self.stream {
            print!("{out}");
            out.clear();
        }
    }

    pub fn take_trace(&mut self) -> String {
        self.trace.take().unwrap_or_default()
    }

    /// The server running its region's leader loop, by the views.
    pub fn leader(&self, region: u8) -> Option<NodeKey> {
        self.views
            .iter()
            .filter(|(k, v)| k.region == region && v.up && v.leader_loop)
            .max_by_key(|(_, v)| v.term)
            .map(|(&k, _)| k)
    }

    /// The region's servers now (a replaced one no longer among them): the machines the
    /// supervisor runs for it, whatever gossip believes of them.
    pub fn servers(&self, region: u8) -> Vec<NodeKey> {
        self.members.get(&region).cloned().unwrap_or_default()
    }
}

/// Writes one trace line when the run is traced.
macro_rules! trace {
    ($world:expr, $($arg:tt)*) => {
        if $world.tracing() {
            $world.trace(format_args!($($arg)*));
        }
    };
}
pub(crate) use trace;
