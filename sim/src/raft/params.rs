//! The swarm: every seed draws its own cluster shape, timing and fault rates.

use crate::clock::RATE_IDEAL_PPM;
use crate::raft::SimRng;
use drover_core::raft::SNAPSHOT_TRAILING_ENTRIES;
use std::fmt;

/// How long, on an ideal clock, a healed quorum may take to elect a leader and commit
/// every pending command.
pub const LIVENESS_BOUND_IDEAL_MS: u64 = 30_000;
/// The widest clock drift a seed draws: clocks run at 0.9..1.1 of simulated time.
pub const CLOCK_DRIFT_MAX_PPM: u64 = 100_000;
/// The share of seeds whose fault menu includes the figure-8 schedule.
pub const FIGURE8_SEEDS: f64 = 0.5;

#[derive(Clone, Debug)]
pub struct Params {
    pub voters_initial: usize,
    pub nodes_max: usize,
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub append_entries_max: usize,
    pub appends_in_flight_max: usize,
    pub snapshot_threshold_entries: u64,
    /// Entries a compaction keeps behind the snapshot: none, a few (so a lagging follower
    /// catches up from the log or needs the snapshot, both), or the default.
    pub snapshot_trailing_entries: u64,
    pub snapshot_chunk_bytes_max: usize,
    /// Padding in each snapshot image, so snapshots span several chunks.
    pub snapshot_padding_bytes: usize,
    pub loss: f64,
    pub duplicate: f64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    pub spike: f64,
    pub disk_latency_max_ms: u64,
    /// Each server's clock runs at `10^6 ± d` ppm of simulated time, `d` drawn up to this.
    pub clock_drift_ppm_max: u64,
    /// Mean time between forward clock jumps of one server in the safety phase (0: none).
    pub clock_jump_interval_ms: u64,
    pub clock_jump_max_ms: u64,
    pub fault_interval_ms: u64,
    pub crash_weight: u32,
    pub partition_weight: u32,
    pub pause_weight: u32,
    pub membership_weight: u32,
    pub transfer_weight: u32,
    /// The scripted figure-8 history (`figure8.rs`), in half of the seeds.
    pub figure8_weight: u32,
    pub propose_interval_ms: u64,
    pub read_interval_ms: u64,
    pub safety_ms: u64,
    pub liveness_bound_ms: u64,
}

impl Params {
    pub fn draw(rng: &mut SimRng) -> Params {
        let election_timeout_ms = rng.range(100, 400);
        let tiny_snapshots = rng.chance(0.6);
        let faults = |rng: &mut SimRng| if rng.chance(0.8) { rng.range(1, 5) as u32 } else { 0 };
        let mut params = Params {
            voters_initial: [1, 2, 3, 3, 3, 4, 5, 5][rng.range(0, 8) as usize],
            nodes_max: 7,
            election_timeout_ms,
            heartbeat_interval_ms: (election_timeout_ms / rng.range(3, 8)).max(10),
            pre_vote: rng.chance(0.7),
            check_quorum: true,
            append_entries_max: rng.range(1, 32) as usize,
            appends_in_flight_max: rng.range(1, 9) as usize,
            snapshot_threshold_entries: if tiny_snapshots { rng.range(2, 40) } else { 8192 },
            snapshot_trailing_entries: SNAPSHOT_TRAILING_ENTRIES,
            snapshot_chunk_bytes_max: rng.range(8, 200) as usize,
            snapshot_padding_bytes: rng.range(0, 300) as usize,
            loss: rng.unit() * 0.3,
            duplicate: rng.unit() * 0.2,
            delay_min_ms: 1,
            delay_max_ms: rng.range(2, 60),
            spike: rng.unit() * 0.05,
            disk_latency_max_ms: rng.range(0, 20),
            clock_drift_ppm_max: if rng.chance(0.8) {
                rng.range(0, CLOCK_DRIFT_MAX_PPM + 1)
            } else {
                0
            },
            clock_jump_interval_ms: if rng.chance(0.5) { rng.range(500, 5_000) } else { 0 },
            clock_jump_max_ms: rng.range(1, election_timeout_ms / 2),
            fault_interval_ms: if rng.chance(0.3) {
                rng.range(20, 200)
            } else {
                rng.range(100, 1500)
            },
            crash_weight: faults(rng),
            partition_weight: faults(rng),
            pause_weight: faults(rng),
            membership_weight: faults(rng),
            transfer_weight: faults(rng),
            figure8_weight: 0,
            propose_interval_ms: rng.range(5, 150),
            read_interval_ms: rng.range(20, 400),
            safety_ms: rng.range(3_000, 12_000),
            liveness_bound_ms: LIVENESS_BOUND_IDEAL_MS,
        };
        // Timers on a slow clock fire late: the bound stretches by the slowest rate.
        params.liveness_bound_ms = LIVENESS_BOUND_IDEAL_MS * RATE_IDEAL_PPM
            / (RATE_IDEAL_PPM - params.clock_drift_ppm_max);
        params.figure8_weight = if rng.chance(FIGURE8_SEEDS) { rng.range(1, 5) as u32 } else { 0 };
        params.snapshot_trailing_entries = match rng.range(0, 3) {
            0 => 0,
            1 => rng.range(1, 2 * params.snapshot_threshold_entries.min(40)),
            _ => SNAPSHOT_TRAILING_ENTRIES,
        };
        // Without the leader lease (check-quorum), a server removed by an entry that never
        // commits keeps calling elections that depose every leader: Raft's known liveness
        // hole (dissertation 4.2.3). Only runs without membership changes may go without.
        if params.membership_weight == 0 {
            params.check_quorum = rng.chance(0.6);
        }
        params
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "voters={} election={}ms heartbeat={}ms pre_vote={} check_quorum={} batch={} in_flight={} \
             snapshot_every={} trailing={} chunk={}B loss={:.2} dup={:.2} delay={}..{}ms spike={:.3} \
             disk<={}ms drift<={}ppm jumps_every={}ms<={}ms faults_every={}ms crash/partition/pause/member/transfer/figure8={}/{}/{}/{}/{}/{} \
             propose_every={}ms read_every={}ms safety={}ms",
            self.voters_initial,
            self.election_timeout_ms,
            self.heartbeat_interval_ms,
            self.pre_vote,
            self.check_quorum,
            self.append_entries_max,
            self.appends_in_flight_max,
            self.snapshot_threshold_entries,
            self.snapshot_trailing_entries,
            self.snapshot_chunk_bytes_max,
            self.loss,
            self.duplicate,
            self.delay_min_ms,
            self.delay_max_ms,
            self.spike,
            self.disk_latency_max_ms,
            self.clock_drift_ppm_max,
            self.clock_jump_interval_ms,
            self.clock_jump_max_ms,
            self.fault_interval_ms,
            self.crash_weight,
            self.partition_weight,
            self.pause_weight,
            self.membership_weight,
            self.transfer_weight,
            self.figure8_weight,
            self.propose_interval_ms,
            self.read_interval_ms,
            self.safety_ms,
        )
    }
}
