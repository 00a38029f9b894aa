//! The client ↔ server protocol: what a client node asks of its region's servers and what
//! it gets back.
//!
//! Both machines speak these types and nothing else across that boundary; the runtime
//! carries them (QUIC in production, the simulated network in `sim`), framed by
//! [`crate::codec`]. A client may send a request to any server it knows: a follower answers
//! [`ServerReply::NotLeader`] with the leader's address when it knows it, so the client can
//! retry there. Every request carries an id chosen by the client; the reply echoes it, so
//! replies that arrive late, twice or out of order are matched (or dropped) by the client.

use crate::model::{Allocation, Node, NodeStatus};
use crate::state::AllocClientUpdate;
use serde::{Deserialize, Serialize};

/// The text a server's [`ServerReply::Error`] contains when it does not know the node;
/// the client registers again when it sees it (Nomad matches the same words).
pub const NODE_NOT_FOUND: &str = "node not found";

/// A server's RPC address (`host:port`, port 4647 in production), as clients and servers
/// name each other.
pub type ServerAddr = String;

/// One request from a client node, with the id its reply will echo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRpc {
    pub request_id: u64,
    pub request: ClientRequest,
}

/// What a client asks of the servers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Registers the node, or re-registers it (after a restart, or with a new fingerprint).
    /// The reply carries the heartbeat TTL.
    NodeRegister { node: Box<Node> },
    /// Keeps the node alive; `status` is what the client believes it is (`ready`, or
    /// `initializing` before its first fingerprint is complete).
    NodeHeartbeat { node_id: String, status: NodeStatus },
    /// Task and allocation status, batched by the client.
    AllocUpdate { node_id: String, updates: Vec<AllocClientUpdate> },
    /// A blocking query: the node's allocations, answered once the servers changed one of
    /// them after `min_index`, or after `wait_ms` with the current set.
    NodeAllocs { node_id: String, min_index: u64, wait_ms: u64 },
}

/// One reply from a server, echoing the request's id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRpc {
    pub request_id: u64,
    pub reply: ServerReply,
}

/// What a server answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerReply {
    /// Register and heartbeat: the node must heartbeat again within `heartbeat_ttl_ms`.
    /// `servers` is the region's current server list, so clients follow membership changes.
    /// `allocs_index` is the last change the servers made to the node's allocations
    /// (`NodeAllocs::server_index`): a client whose watch has not seen it for a while
    /// knows the watch's answer was lost and asks again.
    HeartbeatOk { index: u64, heartbeat_ttl_ms: u64, servers: Vec<ServerAddr>, allocs_index: u64 },
    /// The updates were committed at `index`.
    AllocUpdateOk { index: u64 },
    /// The node's allocations as of `index` (the allocation table's index), every one the
    /// servers have not yet garbage-collected, terminal ones included.
    NodeAllocs { index: u64, allocs: Vec<Allocation> },
    /// This server does not lead its region; `leader` is the leader's address if known.
    NotLeader { leader: Option<ServerAddr> },
    /// The request was refused; `message` says why (for example an unknown node).
    Error { message: String },
}
