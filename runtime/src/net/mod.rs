//! The network between agents: [`quic`] carries frames between servers and clients;
//! [`transport`] puts it behind the node host's sync `Transport`.

pub mod quic;
pub mod transport;
