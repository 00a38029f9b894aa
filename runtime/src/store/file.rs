//! The Raft store in a data directory: segmented log files and atomic snapshot files.
//!
//! Layout of `<dir>`:
//! - `log-<seq>.seg`: log segments, each a header frame naming the records' format
//!   ([`LOG_FORMAT_VERSION`]) and then a run of codec frames holding one [`Record`] each
//!   (length and crc32c in every frame header). Only the newest segment is appended
//!   to. A new segment starts with a preamble that restates everything still live (the
//!   snapshot's position, the hard state, the retained entries, trailing ones included),
//!   so once the preamble is synced every older segment is deleted. The preamble is
//!   written as `log-<seq>.seg.tmp`, fsynced and only then renamed into place: a segment
//!   cut short inside its preamble would reset the log and drop synced entries the older
//!   segments still hold. A `.tmp` segment found on open never finished and is removed.
//! - `snapshot-<index>-<term>.bin`: one snapshot frame, written to a temporary file,
//!   fsynced, renamed into place and the directory fsynced, *before* the log record that
//!   names it. A crash between the two leaves the older snapshot in force, with the log
//!   that goes with it; the file a durable record names is always complete.
//!
//! On open the segments are replayed in order. A segment of another format is refused
//! whole ([`StoreError::UnsupportedFormat`]), before any of its records is read: a record
//! whose layout changed would otherwise read as damage, or worse, as something else. A
//! damaged frame at the very end of the newest segment is a torn write (the process or
//! the machine died mid-append): it was never reported durable, so it is cut off and the
//! length cut is reported. Damage anywhere else, the header included (it is synced before
//! the segment is named), is [`StoreError::Corrupt`], and nothing is applied.

use super::{LOG_FORMAT_VERSION, RaftStore, Record, StoreError, apply_record};
use drover_core::codec::{
    self, CodecError, FRAME_LEN_MAX_BYTES_DEFAULT, FrameKind, HEADER_LEN_BYTES, Peek,
};
use drover_core::raft::{Index, Persist, Restored, Snapshot, SnapshotMeta, WriteId};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A segment being written with its preamble, not yet part of the log.
const SEGMENT_TMP_SUFFIX: &str = ".seg.tmp";
/// A segment past this size is closed and a new one started (with its preamble).
pub const SEGMENT_LEN_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The largest log record read back; larger headers are damage, not data.
pub const RECORD_LEN_MAX_BYTES: usize = FRAME_LEN_MAX_BYTES_DEFAULT;
/// The largest snapshot file read back (a frame's length field stops at 4 GiB).
pub const SNAPSHOT_LEN_MAX_BYTES: usize = u32::MAX as usize;

/// Raft's log, hard state and snapshots in a directory. See the module docs.
pub struct FileStore {
    dir: PathBuf,
    segment: BufWriter<File>,
    segment_path: PathBuf,
    segment_seq: u64,
    segment_len_bytes: u64,
    /// Everything written so far (durable up to the last `sync`).
    state: Restored,
    last_written: WriteId,
    /// Snapshot files to delete once a newer snapshot's record is durable.
    obsolete_snapshots: Vec<PathBuf>,
    torn_tail_cut_bytes: u64,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`, replaying what it holds.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir, "create directory"))?;
        let segments = list(dir, "log-", ".seg")?;
        let mut state = Restored::default();
        let mut torn_tail_cut_bytes = 0;
        for (i, (_, path)) in segments.iter().enumerate() {
            let newest = i + 1 == segments.len();
            torn_tail_cut_bytes += replay(path, newest, &mut state)?;
        }
        state.snapshot = read_snapshot(dir, &state.snapshot.meta)?;
        let (segment_seq, segment_path, file) = match segments.last() {
            Some((seq, path)) => {
                let file = OpenOptions::new().append(true).open(path).map_err(io(path, "open"))?;
                (*seq, path.clone(), file)
            }
            None => (1, segment_file(dir, 1), write_segment(dir, 1, &segment_header()?)?),
        };
        let segment_len_bytes = file.metadata().map_err(io(&segment_path, "stat"))?.len();
        let mut store = FileStore {
            dir: dir.to_owned(),
            segment: BufWriter::new(file),
            segment_path,
            segment_seq,
            segment_len_bytes,
            state,
            last_written: 0,
            obsolete_snapshots: Vec::new(),
            torn_tail_cut_bytes,
        };
        store.obsolete_snapshots = store.stray_snapshots()?;
        store
            .obsolete_snapshots
            .extend(list(dir, "log-", SEGMENT_TMP_SUFFIX)?.into_iter().map(|(_, p)| p));
        store.delete_obsolete_snapshots();
        Ok(store)
    }

    /// Bytes cut from the end of the newest segment at open (a torn write), for the log.
    pub fn torn_tail_cut_bytes(&self) -> u64 {
        self.torn_tail_cut_bytes
    }

    fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut frame = Vec::new();
        codec::encode_into(FrameKind::LOG_ENTRY, record, &mut frame)
            .map_err(|reason| StoreError::Encode { reason })?;
        self.segment.write_all(&frame).map_err(io(&self.segment_path, "append to"))?;
        self.segment_len_bytes += frame.len() as u64;
        Ok(())
    }

    fn write_snapshot(
        &mut self,
        snapshot: Snapshot,
        log_reset: bool,
        log_first_index: Index,
    ) -> Result<(), StoreError> {
        let meta = snapshot.meta.clone();
        let path = snapshot_file(&self.dir, &meta);
        let bytes = codec::encode(FrameKind::SNAPSHOT, &snapshot)
            .map_err(|reason| StoreError::Encode { reason })?;
        write_atomically(&path, &path.with_extension("tmp"), &bytes)?;
        let previous = snapshot_file(&self.dir, &self.state.snapshot.meta);
        if self.state.snapshot.meta.index > 0 && previous != path {
            self.obsolete_snapshots.push(previous);
        }
        let record = Record::Snapshot { meta, log_reset, log_first_index };
        self.append(&record)?;
        apply_record(&mut self.state, record).map_err(|reason| self.corrupt_write(reason))?;
        self.state.snapshot.data = snapshot.data;
        Ok(())
    }

    /// Starts a new segment that restates everything live, then deletes the older ones.
    /// The new segment counts only once its whole preamble is durable (see the module
    /// docs), so it is written under a temporary name and renamed.
    fn rotate(&mut self) -> Result<(), StoreError> {
        self.sync_segment()?;
        let seq = self.segment_seq + 1;
        let old_segments = list(&self.dir, "log-", ".seg")?;
        let meta = self.state.snapshot.meta.clone();
        let log_first_index = self.state.entries.first().map_or(meta.index + 1, |e| e.index);
        let mut preamble = segment_header()?;
        let mut encode = |record: &Record| {
            codec::encode_into(FrameKind::LOG_ENTRY, record, &mut preamble)
                .map_err(|reason| StoreError::Encode { reason })
        };
        encode(&Record::Snapshot { meta, log_reset: true, log_first_index })?;
        encode(&Record::HardState(self.state.hard_state))?;
        for entry in &self.state.entries {
            encode(&Record::Entry(entry.clone()))?;
        }
        let file = write_segment(&self.dir, seq, &preamble)?;
        // Only now the new segment is the log's: a failure before its rename left the
        // store appending where it was (the next open removes the temporary file); one
        // after it (the directory's fsync) leaves the new segment named and whole, and
        // the host stops on the error.
        self.segment = BufWriter::new(file);
        self.segment_path = segment_file(&self.dir, seq);
        self.segment_seq = seq;
        self.segment_len_bytes = preamble.len() as u64;
        for (old_seq, old_path) in old_segments {
            if old_seq < seq {
                fs::remove_file(&old_path).map_err(io(&old_path, "remove"))?;
            }
        }
        Ok(())
    }

    fn sync_segment(&mut self) -> Result<(), StoreError> {
        self.segment.flush().map_err(io(&self.segment_path, "write"))?;
        self.segment.get_ref().sync_data().map_err(io(&self.segment_path, "fsync"))
    }

    /// Snapshot files other than the one in force (left by a crash mid-switch).
    fn stray_snapshots(&self) -> Result<Vec<PathBuf>, StoreError> {
        let current = snapshot_file(&self.dir, &self.state.snapshot.meta);
        let mut stray: Vec<PathBuf> = list(&self.dir, "snapshot-", ".bin")?
            .into_iter()
            .map(|(_, path)| path)
            .filter(|path| *path != current)
            .collect();
        stray.extend(list(&self.dir, "snapshot-", ".tmp")?.into_iter().map(|(_, path)| path));
        Ok(stray)
    }

    fn delete_obsolete_snapshots(&mut self) {
        for path in self.obsolete_snapshots.drain(..) {
            // A file that cannot be removed costs disk space, not correctness: the log
            // names the snapshot in force, and the next open retries the removal.
            let _ignored = fs::remove_file(path);
        }
    }

    fn corrupt_write(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.segment_path.clone(),
            offset_bytes: self.segment_len_bytes,
            reason: format!("raft asked for an impossible write: {reason}"),
        }
    }
}

impl RaftStore for FileStore {
    fn write(&mut self, persist: Persist) -> Result<(), StoreError> {
        let snapshot_written = persist.snapshot.is_some();
        if let Some(snapshot) = persist.snapshot {
            self.write_snapshot(snapshot, persist.log_reset, persist.log_first_index)?;
        }
        if let Some(hard_state) = persist.hard_state {
            let record = Record::HardState(hard_state);
            self.append(&record)?;
            apply_record(&mut self.state, record).map_err(|reason| self.corrupt_write(reason))?;
        }
        for entry in persist.entries {
            let record = Record::Entry(entry);
            self.append(&record)?;
            apply_record(&mut self.state, record).map_err(|reason| self.corrupt_write(reason))?;
        }
        self.last_written = persist.id;
        if snapshot_written || self.segment_len_bytes > SEGMENT_LEN_MAX_BYTES {
            self.rotate()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<WriteId, StoreError> {
        self.sync_segment()?;
        self.delete_obsolete_snapshots();
        Ok(self.last_written)
    }

    fn restored(&self) -> Restored {
        self.state.clone()
    }
}

/// The header frame every segment starts with (see [`LOG_FORMAT_VERSION`]).
fn segment_header() -> Result<Vec<u8>, StoreError> {
    codec::encode(FrameKind::LOG_SEGMENT_HEADER, &(LOG_FORMAT_VERSION, Vec::<u8>::new()))
        .map_err(|reason| StoreError::Encode { reason })
}

/// Writes `path` whole or not at all: `bytes` into `temporary`, fsynced, renamed to
/// `path`, and the directory fsynced. Returns the file, positioned after `bytes`.
pub fn write_atomically(path: &Path, temporary: &Path, bytes: &[u8]) -> Result<File, StoreError> {
    let mut file = File::create(temporary).map_err(io(temporary, "create"))?;
    file.write_all(bytes).map_err(io(temporary, "write"))?;
    file.sync_all().map_err(io(temporary, "fsync"))?;
    fs::rename(temporary, path).map_err(io(path, "rename into"))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(file)
}

/// Writes segment `seq` with its first bytes, `preamble` (the header, and for a segment
/// after the first, the records restating the log): a segment exists whole or not at
/// all. Returns the file, positioned to append.
fn write_segment(dir: &Path, seq: u64, preamble: &[u8]) -> Result<File, StoreError> {
    let path = segment_file(dir, seq);
    write_atomically(&path, &path.with_extension(&SEGMENT_TMP_SUFFIX[1..]), preamble)
}

/// Checks the segment's header and returns its length, where the records start.
fn read_header(path: &Path, bytes: &[u8]) -> Result<usize, StoreError> {
    let unsupported = |found| StoreError::UnsupportedFormat {
        path: path.to_owned(),
        found,
        supported: LOG_FORMAT_VERSION,
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        offset_bytes: 0,
        reason: format!("the segment header: {reason}"),
    };
    let frame = match codec::peek_frame(bytes, RECORD_LEN_MAX_BYTES) {
        Ok(Peek::Frame(frame)) => frame,
        // Segments are named only once their header is durable: an empty one is from a
        // build that created the file first, before segments had headers.
        Ok(Peek::NeedMore { .. }) if bytes.is_empty() => return Err(unsupported(None)),
        Ok(Peek::NeedMore { .. }) => return Err(corrupt("incomplete".to_owned())),
        Err(error) => return Err(corrupt(error.to_string())),
    };
    if frame.kind == FrameKind::LOG_ENTRY {
        return Err(unsupported(None));
    }
    let (version, _fields): (u32, Vec<u8>) =
        frame.decode(FrameKind::LOG_SEGMENT_HEADER).map_err(|e| corrupt(e.to_string()))?;
    if version != LOG_FORMAT_VERSION {
        return Err(unsupported(Some(version)));
    }
    Ok(frame.frame_len_bytes())
}

/// Replays one segment into `state`; returns the bytes cut from a torn tail.
fn replay(path: &Path, newest: bool, state: &mut Restored) -> Result<u64, StoreError> {
    let bytes = fs::read(path).map_err(io(path, "read"))?;
    let mut offset = read_header(path, &bytes)?;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let damage = match codec::peek_frame(rest, RECORD_LEN_MAX_BYTES) {
            Ok(Peek::Frame(frame)) => {
                let corrupt = |reason: String| StoreError::Corrupt {
                    path: path.to_owned(),
                    offset_bytes: offset as u64,
                    reason,
                };
                let record: Record =
                    frame.decode(FrameKind::LOG_ENTRY).map_err(|e| corrupt(e.to_string()))?;
                apply_record(state, record).map_err(corrupt)?;
                offset += frame.frame_len_bytes();
                continue;
            }
            Ok(Peek::NeedMore { .. }) => "the last record is incomplete".to_owned(),
            Err(error) => error.to_string(),
        };
        if newest && is_torn_tail(rest) {
            cut(path, offset as u64)?;
            return Ok(rest.len() as u64);
        }
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            offset_bytes: offset as u64,
            reason: damage,
        });
    }
    Ok(0)
}

/// Whether damage starting at `rest` can only be an unfinished append: the bytes written
/// (zeros at the end trimmed, as a file system leaves blocks it allocated but never wrote)
/// are the start of a frame, or one whole frame whose content did not all reach the disk.
fn is_torn_tail(rest: &[u8]) -> bool {
    let written_len = rest.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    if let Ok(Peek::NeedMore { .. }) = codec::peek_frame(&rest[..written_len], RECORD_LEN_MAX_BYTES)
    {
        return true;
    }
    match codec::peek_frame(rest, RECORD_LEN_MAX_BYTES) {
        Ok(Peek::NeedMore { .. }) => true,
        Err(CodecError::ChecksumMismatch { .. }) => {
            let payload_len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            HEADER_LEN_BYTES + payload_len as usize >= written_len
        }
        _ => false,
    }
}

fn cut(path: &Path, len_bytes: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io(path, "open"))?;
    file.set_len(len_bytes).map_err(io(path, "truncate"))?;
    file.sync_all().map_err(io(path, "fsync"))
}

fn read_snapshot(dir: &Path, meta: &SnapshotMeta) -> Result<Snapshot, StoreError> {
    if meta.index == 0 {
        // The empty image a new region starts from: its meta (the first voter set) is
        // all it holds, and the log record carries that.
        return Ok(Snapshot { meta: meta.clone(), data: Vec::new() });
    }
    let path = snapshot_file(dir, meta);
    let bytes = fs::read(&path).map_err(io(&path, "read the snapshot the log names"))?;
    let corrupt =
        |reason: String| StoreError::Corrupt { path: path.clone(), offset_bytes: 0, reason };
    let snapshot: Snapshot = codec::read_frame(&bytes, SNAPSHOT_LEN_MAX_BYTES)
        .and_then(|frame| frame.decode(FrameKind::SNAPSHOT))
        .map_err(|e| corrupt(e.to_string()))?;
    if snapshot.meta != *meta {
        return Err(corrupt(format!(
            "it holds index {} term {}, the log names index {} term {}",
            snapshot.meta.index, snapshot.meta.term, meta.index, meta.term
        )));
    }
    Ok(snapshot)
}

fn segment_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("log-{seq:020}.seg"))
}

fn snapshot_file(dir: &Path, meta: &SnapshotMeta) -> PathBuf {
    dir.join(format!("snapshot-{:020}-{:020}.bin", meta.index, meta.term))
}

/// Files named `<prefix><number...><suffix>` in `dir`, ordered by their first number.
fn list(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir, "list"))? {
        let path = entry.map_err(io(dir, "list"))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(middle) = name.strip_prefix(prefix).and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        let number = middle.split('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        found.push((number, path));
    }
    found.sort();
    Ok(found)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir, "fsync directory"))
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |error| StoreError::Io { path, action, error }
}
