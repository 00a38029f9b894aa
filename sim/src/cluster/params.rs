//! The swarm: every seed draws its own cluster shape, timing, workload pace and fault
//! rates, as the Raft simulator's `params` does.

use crate::clock::RATE_IDEAL_PPM;
use crate::rng::SimRng;
use std::fmt;

/// The standard scenario's shape: regions, servers per region, clients in all.
pub const REGIONS: usize = 2;
pub const SERVERS_PER_REGION: u64 = 3;
pub const CLIENTS_MIN: u64 = 10;
pub const CLIENTS_MAX: u64 = 14;
/// Simulated time with faults and workload before the liveness phase.
pub const SAFETY_MIN_MS: u64 = 600_000;
/// The widest clock drift a seed draws: clocks run at 0.98..1.02 of simulated time.
pub const CLOCK_DRIFT_MAX_PPM: u64 = 20_000;

#[derive(Clone, Debug)]
pub struct Params {
    pub clients: u64,
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub snapshot_threshold_entries: u64,
    /// Network: madsim's per-message latency range, then our own faults per message.
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub loss: f64,
    pub duplicate: f64,
    /// A message held back this long (a reorder past its successors).
    pub spike: f64,
    pub spike_max_ms: u64,
    pub clock_drift_ppm_max: u64,
    /// Mean time between faults (0: a fault-free seed).
    pub fault_interval_ms: u64,
    pub partition_weight: u32,
    pub leader_kill_weight: u32,
    pub server_restart_weight: u32,
    pub client_kill_weight: u32,
    pub slow_weight: u32,
    /// A server's disk fails its next write or sync (the host stops; the machine is
    /// killed with its power-fail model and restarted later).
    pub disk_fault_weight: u32,
    /// A node's clock steps forward or back.
    pub clock_jump_weight: u32,
    /// A server is lost for good, disk and all, and a new one (new id, new address, empty
    /// disk) joins its region in its place: autopilot must add, promote and remove.
    pub server_replace_weight: u32,
    /// Mean time between workload operations.
    pub op_interval_ms: u64,
    /// Share of task attempts that fail, and of those that hang (ignore stop signals).
    pub task_fail: f64,
    pub task_hang: f64,
    pub safety_ms: u64,
    pub liveness_bound_ms: u64,
}

impl Params {
    pub fn draw(rng: &mut SimRng) -> Params {
        // Around hashicorp/raft's one second, which Nomad uses.
        let election_timeout_ms = rng.range(800, 2000);
        let weight = |rng: &mut SimRng| if rng.chance(0.8) { rng.range(1, 5) as u32 } else { 0 };
        let clock_drift_ppm_max =
            if rng.chance(0.8) { rng.range(0, CLOCK_DRIFT_MAX_PPM + 1) } else { 0 };
        Params {
            clients: rng.range(CLIENTS_MIN, CLIENTS_MAX + 1),
            election_timeout_ms,
            heartbeat_interval_ms: election_timeout_ms / rng.range(4, 8),
            snapshot_threshold_entries: if rng.chance(0.5) { rng.range(20, 200) } else { 8192 },
            latency_min_ms: 1,
            latency_max_ms: rng.range(2, 30),
            loss: rng.unit() * 0.1,
            duplicate: rng.unit() * 0.05,
            spike: rng.unit() * 0.02,
            spike_max_ms: rng.range(50, 2_000),
            clock_drift_ppm_max,
            fault_interval_ms: if rng.chance(0.9) { rng.range(5_000, 40_000) } else { 0 },
            partition_weight: weight(rng),
            leader_kill_weight: weight(rng),
            server_restart_weight: weight(rng),
            client_kill_weight: weight(rng),
            slow_weight: weight(rng),
            op_interval_ms: rng.range(2_000, 15_000),
            task_fail: rng.unit() * 0.2,
            task_hang: rng.unit() * 0.2,
            safety_ms: SAFETY_MIN_MS + rng.range(0, 60_000),
            disk_fault_weight: weight(rng),
            clock_jump_weight: weight(rng),
            server_replace_weight: weight(rng),
            // A new leader gives every node the failover TTL (300 s) before it may mark
            // one down, and a slow clock stretches every timer.
            liveness_bound_ms: 420_000 * RATE_IDEAL_PPM / (RATE_IDEAL_PPM - clock_drift_ppm_max),
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "regions={REGIONS}x{SERVERS_PER_REGION} clients={} election={}ms heartbeat={}ms \
             snapshot_every={} latency={}..{}ms loss={:.3} dup={:.3} spike={:.3}<={}ms \
             drift<={}ppm faults_every={}ms partition/leader_kill/restart/client_kill/slow/disk/clock/replace={}/{}/{}/{}/{}/{}/{}/{} \
             op_every={}ms task_fail={:.2} task_hang={:.2} safety={}ms",
            self.clients,
            self.election_timeout_ms,
            self.heartbeat_interval_ms,
            self.snapshot_threshold_entries,
            self.latency_min_ms,
            self.latency_max_ms,
            self.loss,
            self.duplicate,
            self.spike,
            self.spike_max_ms,
            self.clock_drift_ppm_max,
            self.fault_interval_ms,
            self.partition_weight,
            self.leader_kill_weight,
            self.server_restart_weight,
            self.client_kill_weight,
            self.slow_weight,
            self.disk_fault_weight,
            self.clock_jump_weight,
            self.server_replace_weight,
            self.op_interval_ms,
            self.task_fail,
            self.task_hang,
            self.safety_ms,
        )
    }
}
