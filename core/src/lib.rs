//! drover-core: the sans-IO heart of drover.
//!
//! Everything here is a pure data type or a deterministic state machine. Time enters as a
//! [`time::Millis`] parameter, randomness from seeded generators, and bytes through
//! [`codec`]. Nothing in this crate opens a file, a socket or a thread, or reads a clock;
//! `tests/tidy.rs` enforces that.

pub mod broker;
pub mod client;
pub mod codec;
pub mod gossip;
pub mod id;
pub mod jobspec;
pub mod model;
pub mod plan;
pub mod raft;
pub mod rpc;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod taskenv;
pub mod time;
