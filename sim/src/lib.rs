//! drover-sim: seeded, deterministic simulation of drover clusters.
//!
//! [`raft`] drives clusters of `core::raft` nodes through faults; [`checkers`] holds the
//! invariants checked after every step. The `drover-sim` binary runs seed ranges and
//! replays single seeds; `drover-bench` measures throughput.

pub mod bench;
pub mod checkers;
pub mod clock;
#[cfg(madsim)]
pub mod cluster;
pub mod raft;
pub mod rng;
