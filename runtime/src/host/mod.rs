//! The node host: the loop that feeds a `core` machine its inputs and carries out its
//! outputs, shared by the production agent and the simulator.
//!
//! A host is generic over what differs between them: the [`Transport`] that carries
//! encoded frames to an address, the [`RaftStore`](crate::store::RaftStore) where Raft's
//! writes become durable, the [`DriverSet`] that runs tasks and the [`PassRunner`] that runs
//! scheduling passes ([`ThreadPassRunner`] runs them on a pool of threads for the agent,
//! [`InlinePassRunner`] in place for the simulator). It owns no clock, and no thread but
//! the state-snapshot encoder a caller may ask for: every call takes `now`, the caller's
//! unix milliseconds, and the caller calls `handle_timeout` at the deadline the host
//! returns. Inbound frames come from the caller too (`handle_frame`), with the address
//! they came from.
//!
//! A server's gossip (`drover_core::gossip::GossipMembership`, which is sans-IO itself)
//! is what the agent and the simulator tell the host of its region's servers
//! (`ServerHost::handle_members`).
//!
//! After every input a host drains its machine until nothing is left, **in this order**:
//!
//! - [`ServerHost`]: 1. every Raft batch (`poll_persist`) is written, then ONE `sync` makes
//!   them all durable (a group commit) and only then is the returned id reported with
//!   `handle_durable`, after which draining starts again from the top; 2. peer messages
//!   are encoded and sent to the named server's address; 3. replies go to the address the
//!   client's request came from, or to the API reply queue; 4. scheduling passes go to the
//!   runner and its finished results come back (`handle_schedule_output`, or
//!   `handle_schedule_failed` for a pass that produced none); 5. calls for another region
//!   go to the region-forward queue; 6. a state snapshot the server asks for is encoded
//!   (in place, or on a thread of its own after `encode_snapshots_on_thread`) and its
//!   bytes handed back with `handle_snapshot_encoded`, after which Raft compacts its log
//!   and writes the snapshot through step 1; until a round does nothing.
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
mod pass_pool;
mod server;
mod snapshot;
mod wire;

pub use client::{ClientCounters, ClientHost};
pub use pass_pool::{
    PASS_QUEUE_LEN_MAX_DEFAULT, PassFn, PassPoolConfig, PassPoolError, PassStats, ThreadPassRunner,
    WakeFn,
};
pub use server::{
    API_REPLIES_MAX, CLIENT_CONNS_MAX, HostTimings, REGION_FORWARDS_MAX, ServerCounters, ServerHost,
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
    /// Takes a pass; a pass the runner cannot take comes back as a failed result.
    fn submit(&mut self, pass: SchedulePass);

    /// A pass's result ready now. The host collects them after every input; a runner
    /// that finishes between inputs wakes its caller, who calls
    /// [`ServerHost::handle_passes_ready`].
    fn poll_output(&mut self) -> Option<(PassId, PassResult)>;
}

/// What became of a pass: its output, or why there is none.
pub type PassResult = Result<ScheduleOutput, PassFailure>;

/// A pass that produced no output: it panicked, or the runner refused it. The server
/// sends its evaluation back to the broker (`Server::handle_schedule_failed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassFailure {
    pub reason: String,
}

impl fmt::Display for PassFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Runs each pass the moment it is submitted, on the caller's thread (the simulator's
/// and the tests' runner: a pass that panics there fails the run, as it should).
#[derive(Debug, Default)]
pub struct InlinePassRunner {
    /// The host polls right after each submit, so this holds at most one output.
    outputs: VecDeque<(PassId, PassResult)>,
}

impl PassRunner for InlinePassRunner {
    fn submit(&mut self, pass: SchedulePass) {
        self.outputs.push_back((pass.pass_id, Ok(pass.run())));
    }

    fn poll_output(&mut self) -> Option<(PassId, PassResult)> {
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
