//! drover-runtime: binds `drover-core` to the world (transport, disk, HTTP, drivers).
//!
//! Every decision is a `core` machine's; this crate carries decisions out. So far it holds
//! the node host ([`host`]), the Raft store ([`store`]), QUIC between agents ([`net`]),
//! the cluster CA ([`tls`]), the machine fingerprint ([`fingerprint`]) and the raw_exec
//! driver ([`driver`]); the HTTP API and the agent follow.

pub mod agent;
pub mod driver;
pub mod fingerprint;
pub mod host;
pub mod http;
pub mod net;
pub mod store;
pub mod tls;
