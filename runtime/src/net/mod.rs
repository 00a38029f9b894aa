//! The network between agents: [`quic`] carries frames between servers and clients.

pub mod quic;
