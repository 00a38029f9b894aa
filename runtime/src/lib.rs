//! drover-runtime: binds `drover-core` to the world (transport, disk, HTTP, drivers).
//!
//! Every decision is a `core` machine's; this crate carries decisions out. So far it holds
//! the Raft store ([`store`]) and the machine fingerprint ([`fingerprint`]); the node
//! host, QUIC transport, HTTP API and drivers follow.

pub mod driver;
pub mod fingerprint;
pub mod net;
pub mod store;
pub mod tls;
