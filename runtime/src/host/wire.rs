//! The one value sent between hosts, framed by `core::codec` as [`FrameKind::RPC`].
//!
//! Servers exchange peer messages; a client sends requests to a server and the server
//! answers on the address the request came from. Decoding is bounded by the codec's frame
//! limit and nesting budget, so hostile bytes cost an error, never a panic or a large
//! allocation.

use drover_core::codec::{self, CodecError, FRAME_LEN_MAX_BYTES_DEFAULT, FrameKind};
use drover_core::rpc::{ClientRpc, ServerRpc};
use drover_core::server::{ApiCall, ApiResponse, PeerEnvelope};
use serde::{Deserialize, Serialize};

/// The largest frame a host accepts.
pub const WIRE_FRAME_LEN_MAX_BYTES: usize = FRAME_LEN_MAX_BYTES_DEFAULT;

/// Everything one host sends another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireMessage {
    /// Server to server, within a region.
    Peer(PeerEnvelope),
    /// Client node to server.
    Request(ClientRpc),
    /// Server to client node, on the address the request came from.
    Reply(ServerRpc),
    /// A client agent's API call for a server to answer (a client-only agent serves its
    /// HTTP API through the servers).
    Api(ApiCall),
    /// The server's answer to an [`WireMessage::Api`] call, on the address it came from.
    ApiAnswer(ApiResponse),
}

/// The buffer a frame is encoded into starts this large: most frames (heartbeats,
/// acknowledgements, small requests) fit, so each costs one allocation instead of the
/// buffer growing from nothing. Frames are sent and dropped, so the slack is not kept.
const WIRE_FRAME_CAPACITY_INITIAL_BYTES: usize = 256;

pub fn encode_wire(message: &WireMessage) -> Result<Vec<u8>, CodecError> {
    let mut frame = Vec::with_capacity(WIRE_FRAME_CAPACITY_INITIAL_BYTES);
    codec::encode_into(FrameKind::RPC, message, &mut frame)?;
    Ok(frame)
}

pub fn decode_wire(frame: &[u8]) -> Result<WireMessage, CodecError> {
    codec::decode(FrameKind::RPC, frame, WIRE_FRAME_LEN_MAX_BYTES)
}
