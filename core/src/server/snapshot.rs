//! The state snapshot a server hands to its runtime for log compaction.

use crate::raft::Index;
use crate::state::{SnapshotError, State};

/// The state as it stood once entry `index` applied, to be encoded and handed back with
/// [`super::Server::handle_snapshot_encoded`]. Holding it costs little: the state's
/// tables are copy-on-write, so the server's later writes copy only what they change.
#[derive(Clone, Debug)]
pub struct SnapshotRequest {
    pub index: Index,
    pub state: State,
}

impl SnapshotRequest {
    /// The snapshot's bytes. Pure: the runtime calls it on whichever thread it likes.
    pub fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        self.state.to_snapshot_bytes()
    }
}
