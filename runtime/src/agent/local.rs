//! The in-process transport of a `-dev` agent: the server and the client hosts share one
//! queue of frames, which the node loop delivers after every input. Frames still go
//! through the wire codec, so the hosts cannot tell it from a network.

use crate::host::{SendError, Transport};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Frames queued between the hosts of one process; a send past this is refused (the
/// host treats it as a failed send and retries as it would on a network).
pub const LOCAL_FRAMES_MAX: usize = 65_536;

/// One frame on its way.
#[derive(Debug)]
pub struct LocalFrame {
    pub from: String,
    pub to: String,
    pub bytes: Vec<u8>,
}

/// The queue every host of the process sends into.
#[derive(Clone, Debug, Default)]
pub struct LocalNet {
    frames: Arc<Mutex<VecDeque<LocalFrame>>>,
}

impl LocalNet {
    /// The transport of the host at `addr`.
    pub fn endpoint(&self, addr: &str) -> LocalTransport {
        LocalTransport { addr: addr.to_owned(), net: self.clone() }
    }

    /// The oldest frame not yet delivered.
    pub fn pop(&self) -> Option<LocalFrame> {
        self.frames.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop_front()
    }
}

/// One host's end of a [`LocalNet`].
#[derive(Debug)]
pub struct LocalTransport {
    addr: String,
    net: LocalNet,
}

impl Transport for LocalTransport {
    fn send(&mut self, to: &str, frame: Vec<u8>) -> Result<(), SendError> {
        let mut frames = self.net.frames.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if frames.len() >= LOCAL_FRAMES_MAX {
            let reason = format!("{LOCAL_FRAMES_MAX} frames already queued");
            return Err(SendError { to: to.to_owned(), reason });
        }
        frames.push_back(LocalFrame { from: self.addr.clone(), to: to.to_owned(), bytes: frame });
        Ok(())
    }
}
