//! The network between agents: [`quic`] carries frames between servers and clients;
//! [`transport`] puts it behind the node host's sync `Transport`; [`https`] is the HTTP
//! API's TLS listener; [`gossip_key`] seals the servers' gossip datagrams when the region
//! has a key.

pub mod gossip_key;
pub mod https;
pub mod quic;
pub mod transport;
