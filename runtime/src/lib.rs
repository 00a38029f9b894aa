//! drover-runtime: binds `drover-core` to the world (transport, disk, HTTP, drivers).
//!
//! Every decision is a `core` machine's; this crate carries decisions out. So far it holds
//! the node host ([`host`]), the Raft store ([`store`]), the machine fingerprint
//! ([`fingerprint`]) and the raw_exec driver ([`driver`]); the QUIC transport and the HTTP
//! API follow.

pub mod driver;
pub mod fingerprint;
pub mod host;
pub mod store;
pub mod tls;
