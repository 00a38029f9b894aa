//! The node host: the loop that feeds a `core` machine its inputs and carries out its
//! outputs, shared by the production agent and the simulator.
//!
//! A host is generic over what differs between them: the [`Transport`] that carries
//! encoded frames to an address, the [`RaftStore`](crate::store::RaftStore) where Raft's
//! writes become durable, the [`DriverSet`] that runs tasks and the [`PassRunner`] that runs
//! scheduling passes. It owns no clock and no thread: every call takes `now`, the caller's
//! unix milliseconds, and the caller calls `handle_timeout` at the deadline the host
//! returns. Inbound frames come from the caller too (`handle_frame`), with the address they
//! came from.
//!
//! After every input a host drains its machine until nothing is left, **in this order**:
//!
//! - [`ServerHost`]: 1. every Raft batch (`poll_persist`) is written, then ONE `sync` makes
//!   them all durable (a group commit) and only then is the returned id reported with
//!   `handle_durable`, after which draining starts again from the top; 2. peer messages
//!   are encoded and sent to the named server's address; 3. replies go to the address the
//!   client's request came from, or to the API reply queue; 4. scheduling passes go to the
//!   runner and its outputs come back with `handle_schedule_output`; 5. calls for another
//!   region go to the region-forward queue; until a round does nothing.
//! - [`ClientHost`]: 1. driver commands go to the driver set and its events come back with
//!   `handle_driver_event`; 2. requests are encoded and sent, a send the transport refuses
//!   being reported with `handle_send_failed`; until a round does nothing. Client events
//!   stay in the machine's bounded outbox for the caller to read.
//!
//! A failed write or sync stops a server host for good: it returns
//! [`HostError::Store`], reports nothing durable it has not seen synced, and refuses every
//! later input with [`HostError::Stopped`]. The process restarts it from what the store
//! holds.

mod client;
mod server;
mod wire;

pub use client::{ClientCounters, ClientHost};
pub use server::{
    API_REPLIES_MAX, CLIENT_CONNS_MAX, REGION_FORWARDS_MAX, ServerCounters, ServerHost,
};
pub use wire::{WIRE_FRAME_LEN_MAX_BYTES, WireMessage, decode_wire, encode_wire};

use crate::store::StoreError;
use drover_core::client::{ConfigError, DriverCommand, DriverEvent};
use drover_core::scheduler::ScheduleOutput;
use drover_core::server::{PassId, SchedulePass};
use drover_core::state::SnapshotError;
use std::collections::VecDeque;
use std::fmt;

/// Carries encoded frames to other hosts. Frames that arrive are handed to the host by
/// its caller, with the sender's address.
pub trait Transport {
    /// Sends one frame to `to`; an error means it surely was not sent.
    fn send(&mut self, to: &str, frame: Vec<u8>) -> Result<(), SendError>;
}

/// Why a frame could not be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub to: String,
    pub reason: String,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot send to {}: {}", self.to, self.reason)
    }
}

/// The task drivers of one client node.
pub trait DriverSet {
    /// Carries out one command; its outcome comes back as a [`DriverEvent`].
    fn execute(&mut self, command: DriverCommand);

    /// An event ready now (a driver that answers later hands it to
    /// [`ClientHost::handle_driver_event`] instead).
    fn poll_event(&mut self) -> Option<DriverEvent>;
}

/// Runs scheduling passes off the machine's path.
pub trait PassRunner {
    fn submit(&mut self, pass: SchedulePass);

    /// A pass's output ready now (a runner that finishes later hands it to
    /// [`ServerHost::handle_schedule_output`] instead).
    fn poll_output(&mut self) -> Option<(PassId, ScheduleOutput)>;
}

/// Runs each pass the moment it is submitted, on the caller's thread.
#[derive(Debug, Default)]
pub struct InlinePassRunner {
    /// The host polls right after each submit, so this holds at most one output.
    outputs: VecDeque<(PassId, ScheduleOutput)>,
}

impl PassRunner for InlinePassRunner {
    fn submit(&mut self, pass: SchedulePass) {
        self.outputs.push_back((pass.pass_id, pass.run()));
    }

    fn poll_output(&mut self) -> Option<(PassId, ScheduleOutput)> {
        self.outputs.pop_front()
    }
}

/// Why a host stopped or could not start.
#[derive(Debug)]
pub enum HostError {
    /// The store failed a write or a sync: what it holds is unknown past its last sync.
    Store(StoreError),
    /// An earlier store error stopped this host.
    Stopped,
    /// The store's snapshot cannot be restored.
    Restore(SnapshotError),
    /// The client machine refused its configuration.
    ClientConfig(ConfigError),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Store(error) => write!(f, "raft store failed: {error}"),
            HostError::Stopped => write!(f, "host stopped after a raft store failure"),
            HostError::Restore(error) => write!(f, "cannot restore the state: {error}"),
            HostError::ClientConfig(reason) => write!(f, "client configuration: {reason}"),
        }
    }
}

impl std::error::Error for HostError {}
