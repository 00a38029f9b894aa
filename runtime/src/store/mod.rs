//! Where a server keeps its Raft log, hard state and snapshots.
//!
//! [`RaftStore`] is what the node host drives: it hands over each [`Persist`] batch Raft
//! asks for, then makes the batch durable with one `sync` (a group commit: every batch
//! drained after one input shares one fsync), and only then reports the last write id to
//! Raft with `handle_durable`. Nothing written counts before `sync` returns; a store that
//! loses power keeps a prefix of what it was given and never a reordering of it.
//!
//! [`file::FileStore`] keeps it in a data directory; [`mem::MemStore`] keeps it in memory
//! with a power-fail model, for tests and the simulator.

pub mod file;
pub mod mem;

use drover_core::codec::CodecError;
use drover_core::raft::{
    Entry, HardState, Index, Persist, Restored, Snapshot, SnapshotMeta, WriteId,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A place Raft's writes become durable.
pub trait RaftStore {
    /// Takes a batch; it is durable only once a later [`RaftStore::sync`] returns.
    fn write(&mut self, persist: Persist) -> Result<(), StoreError>;

    /// Makes every batch written so far durable and returns the last one's id (the id to
    /// report with `handle_durable`), or 0 when nothing was written since the start.
    fn sync(&mut self) -> Result<WriteId, StoreError>;

    /// What the store holds durably, for `Raft::restore` after a start.
    fn restored(&self) -> Restored;
}

/// One record of the log files, in the order a batch's parts take effect: a snapshot
/// (dropping the entries before `log_first_index`, or all of them on a reset), the hard
/// state, entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record {
    Snapshot { meta: SnapshotMeta, log_reset: bool, log_first_index: Index },
    HardState(HardState),
    Entry(Entry),
}

/// The format of the records in a log segment, named by the header every segment starts
/// with: `(format version, header fields)`, the fields empty so far, so that a later
/// version's header still reads as one of another version. Segments written before
/// segments named their format have no header and are refused.
pub const LOG_FORMAT_VERSION: u32 = 1;

/// Why the store could not write, sync or load. Every variant names the file involved.
#[derive(Debug)]
pub enum StoreError {
    Io {
        path: PathBuf,
        action: &'static str,
        error: std::io::Error,
    },
    /// A record that cannot be a torn tail: damage before the end of the last segment, in
    /// an older segment, or in a snapshot file. Refused rather than applied.
    Corrupt {
        path: PathBuf,
        offset_bytes: u64,
        reason: String,
    },
    /// A segment in a log format this build does not read (`None`: one without a header,
    /// written by a build from before segments named their format).
    UnsupportedFormat {
        path: PathBuf,
        found: Option<u32>,
        supported: u32,
    },
    Encode {
        reason: CodecError,
    },
    /// A batch that cannot follow what the store holds (a write id out of order, a gap in
    /// the log): a bug in the caller, refused rather than stored.
    Rejected {
        reason: String,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, action, error } => {
                write!(f, "{action} {}: {error}", path.display())
            }
            StoreError::Corrupt { path, offset_bytes, reason } => {
                write!(f, "{} is corrupt at byte {offset_bytes}: {reason}", path.display())
            }
            StoreError::UnsupportedFormat { path, found, supported } => {
                let found = match found {
                    Some(version) => format!("holds raft log format version {version}"),
                    None => "has no raft log format header (an older build wrote it)".to_owned(),
                };
                write!(
                    f,
                    "{} {found}, and this build reads only version {supported}: start this \
                     server with the drover version that wrote its data directory, or with \
                     an empty one and let it catch up from the other servers",
                    path.display()
                )
            }
            StoreError::Encode { reason } => write!(f, "cannot encode a raft record: {reason}"),
            StoreError::Rejected { reason } => write!(f, "raft write refused: {reason}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Applies one record to the state it describes, through Raft's own rule
/// (`Restored::apply_*`); the one rule for writing and replaying. A snapshot record
/// carries only its meta: the caller keeps the data.
pub(crate) fn apply_record(state: &mut Restored, record: Record) -> Result<(), String> {
    match record {
        Record::Snapshot { meta, log_reset, log_first_index } => {
            let snapshot = Snapshot { meta, data: Vec::new() };
            state.apply_snapshot(snapshot, log_reset, log_first_index);
        }
        Record::HardState(hard_state) => state.hard_state = hard_state,
        Record::Entry(entry) => state.apply_entry(entry)?,
    }
    Ok(())
}
