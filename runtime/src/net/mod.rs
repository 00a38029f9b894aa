//! The network between agents: [`quic`] carries frames between servers and clients;
//! [`transport`] puts it behind the node host's sync `Transport`; [`https`] is the HTTP
//! API's TLS listener.

pub mod https;
pub mod quic;
pub mod transport;
