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
            lower_own_priority();
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

/// Niceness of a snapshot encoding thread: it yields the cores to the server loops.
const SNAPSHOT_THREAD_NICENESS: i32 = 10;

/// Lowers the calling thread's scheduling priority (Linux keeps a niceness per thread, and
/// `setpriority` of "this process" sets the caller's): on a busy machine an encoding of
/// seconds at the loops' priority delayed their heartbeats and acknowledgements past the
/// leader's lease. It only runs later; a refusal leaves it at its priority. Relative to
/// the thread's niceness (an agent started with `nice` keeps its encodings below it),
/// capped at 19, the lowest.
fn lower_own_priority() {
    let Ok(niceness) = rustix::process::getpriority_process(None) else { return };
    let lowered = (niceness + SNAPSHOT_THREAD_NICENESS).min(19);
    let _unchanged = rustix::process::setpriority_process(None, lowered);
}

fn encode(request: SnapshotRequest, inline: bool) -> Encoded {
    let started = Instant::now();
    let bytes = request.encode();
    let index = request.index;
    // Dropping a large state is itself slow: let it go here, on the encoding thread.
    drop(request);
    Encoded { index, bytes, took: started.elapsed(), inline }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::getpriority_process;

    #[test]
    fn an_encoding_thread_lowers_its_own_priority_only() {
        let before = getpriority_process(None).expect("reads this thread's niceness");
        let lowered = std::thread::spawn(|| {
            lower_own_priority();
            getpriority_process(None).expect("reads the thread's niceness")
        })
        .join()
        .expect("the thread ends");
        // Niceness is capped at 19; a thread already there cannot go lower.
        assert_eq!(lowered, (before + SNAPSHOT_THREAD_NICENESS).min(19));
        assert_eq!(getpriority_process(None).expect("reads it again"), before);
    }
}
