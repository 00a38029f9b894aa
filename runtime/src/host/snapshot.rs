//! Where a server host encodes the state snapshots its server asks for.
//!
//! Encoding a state of a million allocations takes seconds. Done on the server's loop, it
//! holds up heartbeats and Raft long enough for a leader to lose its lease, so the agent
//! and the benchmarks encode on a thread of their own; the simulator and the tests encode
//! in place, which keeps a run a function of its seed.

use super::WakeFn;
use drover_core::codec::CodecError;
use drover_core::raft::Index;
use drover_core::server::SnapshotRequest;
use drover_core::state::SnapshotError;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// How a host encodes state snapshots.
#[derive(Default)]
pub(super) enum SnapshotEncoder {
    /// At once, on the host's own thread.
    #[default]
    Inline,
    /// On a thread started for each snapshot; `wake` tells the host's caller the bytes are
    /// ready, and the caller then gives the host any input (`handle_passes_ready` does).
    Thread { wake: Option<WakeFn>, running: Option<Running> },
}

/// A snapshot being encoded on its own thread.
pub(super) struct Running {
    index: Index,
    done: Receiver<Encoded>,
}

/// A finished encoding and how long it took.
pub(super) struct Encoded {
    pub index: Index,
    pub bytes: Result<Vec<u8>, SnapshotError>,
    pub took: Duration,
    /// Whether it ran on the host's thread.
    pub inline: bool,
}

impl SnapshotEncoder {
    /// Starts encoding `request`; an inline encoder finishes it before returning.
    pub fn submit(&mut self, request: SnapshotRequest) -> Option<Encoded> {
        let SnapshotEncoder::Thread { wake, running } = self else {
            return Some(encode(request, true));
        };
        let index = request.index;
        let (sender, done) = mpsc::channel();
        let wake = wake.clone();
        // An O(1) copy, encoded here if no thread can start.
        let fallback = request.clone();
        let spawned = std::thread::Builder::new().name("state-snapshot".into()).spawn(move || {
            let _ = sender.send(encode(request, false));
            if let Some(wake) = wake {
                wake();
            }
        });
        match spawned {
            Ok(_) => {
                drop(fallback);
                *running = Some(Running { index, done });
                None
            }
            Err(_) => Some(encode(fallback, true)),
        }
    }

    /// The snapshot encoded off the host's thread, once it is done. A thread that ended
    /// without an answer (it panicked) is reported as a failed encoding.
    pub fn poll_done(&mut self) -> Option<Encoded> {
        let SnapshotEncoder::Thread { running, .. } = self else { return None };
        let finished = match running.as_ref()?.done.try_recv() {
            Ok(encoded) => encoded,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Encoded {
                index: running.as_ref()?.index,
                bytes: Err(SnapshotError::Codec(CodecError::Encode {
                    message: "the snapshot thread ended without its bytes".into(),
                })),
                took: Duration::ZERO,
                inline: false,
            },
        };
        *running = None;
        Some(finished)
    }
}

fn encode(request: SnapshotRequest, inline: bool) -> Encoded {
    let started = Instant::now();
    let bytes = request.encode();
    let index = request.index;
    // Dropping a large state is itself slow: let it go here, on the encoding thread.
    drop(request);
    Encoded { index, bytes, took: started.elapsed(), inline }
}
