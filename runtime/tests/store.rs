//! The file store: what was synced comes back after a restart, a torn tail is cut (and
//! only a tail), damage elsewhere is refused, a log of another format is refused by name,
//! and snapshots switch atomically.

use drover_core::raft::{
    Config, Entry, HardState, Membership, Payload, Persist, Raft, Restored, Snapshot, SnapshotMeta,
};
use drover_core::time::Millis;
use drover_runtime::store::file::FileStore;
use drover_runtime::store::mem::MemStore;
use drover_runtime::store::{LOG_FORMAT_VERSION, RaftStore, StoreError};
use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};

fn entry(index: u64, term: u64) -> Entry {
    Entry { term, index, at: Millis(index), payload: Payload::Command(vec![index as u8; 40]) }
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    let meta = SnapshotMeta { index, term, membership: Membership::default() };
    Snapshot { meta, data: format!("state@{index}").into_bytes() }
}

/// One batch of the kinds Raft issues, by a compact description.
#[derive(Clone, Debug)]
enum Batch {
    /// Entries `from..from+len` of `term`, replacing anything at or after `from`.
    Append {
        from: u64,
        len: u64,
        term: u64,
    },
    Vote {
        term: u64,
    },
    /// A snapshot at `upto` that keeps up to `trailing` entries at and before it.
    Compact {
        upto: u64,
        trailing: u64,
    },
    Install {
        index: u64,
        term: u64,
    },
}

/// The oracle: what a log holds after a batch, written independently of the store.
fn model_apply(model: &mut Restored, batch: &Batch) {
    match *batch {
        Batch::Append { from, len, term } => {
            model.entries.retain(|e| e.index < from);
            let next = model.entries.last().map_or(model.snapshot.meta.index + 1, |e| e.index + 1);
            if from == next {
                model.entries.extend((from..from + len).map(|i| entry(i, term)));
            }
        }
        Batch::Vote { term } => model.hard_state = HardState { term, vote: Some(1) },
        Batch::Compact { upto, trailing } => {
            let term = model.entries.iter().find(|e| e.index == upto).map_or(0, |e| e.term);
            model.snapshot = snapshot(upto, term);
            model.entries.retain(|e| e.index + trailing > upto);
        }
        Batch::Install { index, term } => {
            model.snapshot = snapshot(index, term);
            model.entries.clear();
        }
    }
}

/// Turns a batch into Raft's write, if it is one Raft could issue on `model`.
fn persist(id: u64, model: &Restored, batch: &Batch) -> Option<Persist> {
    let mut write = Persist { id, ..Persist::default() };
    let covered = model.snapshot.meta.index;
    let last = model.entries.last().map_or(covered, |e| e.index);
    match *batch {
        Batch::Append { from, len, term } => {
            if from <= covered || from > last + 1 || len == 0 {
                return None;
            }
            write.entries = (from..from + len).map(|i| entry(i, term)).collect();
        }
        Batch::Vote { term } => write.hard_state = Some(HardState { term, vote: Some(1) }),
        Batch::Compact { upto, trailing } => {
            if upto <= covered {
                return None;
            }
            let term = model.entries.iter().find(|e| e.index == upto)?.term;
            write.snapshot = Some(snapshot(upto, term));
            write.log_first_index = (upto + 1).saturating_sub(trailing);
        }
        Batch::Install { index, term } => {
            if index <= covered {
                return None;
            }
            write.snapshot = Some(snapshot(index, term));
            write.log_reset = true;
        }
    }
    Some(write)
}

fn batches() -> impl Strategy<Value = Vec<Batch>> {
    let batch = prop_oneof![
        6 => (1u64..60, 1u64..8, 1u64..5).prop_map(|(from, len, term)| Batch::Append { from, len, term }),
        1 => (1u64..5).prop_map(|term| Batch::Vote { term }),
        1 => (1u64..60, 0u64..8).prop_map(|(upto, trailing)| Batch::Compact { upto, trailing }),
        1 => (1u64..80, 1u64..5).prop_map(|(index, term)| Batch::Install { index, term }),
    ];
    prop::collection::vec(batch, 1..40)
}

/// The one helper: writes `batches` (syncing each), returning the store's directory, the
/// oracle's state after every synced batch, and the newest segment's length at each.
fn check(dir: &Path, batches: &[Batch]) -> Vec<(Restored, u64)> {
    let mut store = FileStore::open(dir).unwrap();
    let mut model = Restored::default();
    let mut synced = vec![(model.clone(), newest_segment_len(dir))];
    let mut id = 0;
    for batch in batches {
        let Some(write) = persist(id + 1, &model, batch) else { continue };
        id += 1;
        store.write(write).unwrap();
        assert_eq!(store.sync().unwrap(), id);
        model_apply(&mut model, batch);
        assert_eq!(store.restored(), model, "after {batch:?}");
        synced.push((model.clone(), newest_segment_len(dir)));
    }
    synced
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

fn newest_segment_len(dir: &Path) -> u64 {
    segments(dir).last().map_or(0, |p| fs::metadata(p).unwrap().len())
}

/// The length of a segment's header: what a new store's only segment holds.
fn header_len() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).unwrap());
    newest_segment_len(dir.path())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever sequence Raft writes, a reopened store restores exactly what was synced.
    #[test]
    fn synced_writes_survive_a_restart(batches in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let synced = check(dir.path(), &batches);
        let restored = FileStore::open(dir.path()).unwrap().restored();
        prop_assert_eq!(&restored, &synced.last().unwrap().0);
        prop_assert!(segments(dir.path()).len() == 1, "older segments are deleted");
    }

    /// A crash mid-append leaves any prefix of the newest segment past its header (synced
    /// before the segment is named), maybe padded with zeros: the store restores every
    /// whole record in it (a prefix of the log), cuts the rest and reports the cut; it
    /// never restores a garbled record.
    #[test]
    fn a_torn_tail_restores_every_whole_record(
        batches in prop::collection::vec((1u64..5, 1u64..6), 1..20),
        cut_permille in 0u64..1000,
        zeros in 0usize..64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut next = 1;
        let appends: Vec<Batch> = batches
            .iter()
            .map(|&(term, len)| {
                let batch = Batch::Append { from: next, len, term };
                next += len;
                batch
            })
            .collect();
        let synced = check(dir.path(), &appends);
        let segment = segments(dir.path()).pop().unwrap();
        let full_len = fs::metadata(&segment).unwrap().len();
        let header_len = header_len();
        let cut_len = header_len + (full_len - header_len) * cut_permille / 1000;
        let mut bytes = fs::read(&segment).unwrap();
        bytes.truncate(cut_len as usize);
        bytes.extend(std::iter::repeat_n(0, zeros));
        fs::write(&segment, &bytes).unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        // Every batch that fits whole survives; of the next, a prefix of its records may.
        let whole = synced.iter().rposition(|(_, len)| *len <= cut_len).unwrap();
        let restored = store.restored();
        let (at_least, at_most) = (&synced[whole].0, &synced[(whole + 1).min(synced.len() - 1)].0);
        prop_assert!(restored.entries.len() >= at_least.entries.len());
        prop_assert_eq!(&restored.entries[..], &at_most.entries[..restored.entries.len()]);
        let kept_len = fs::metadata(&segment).unwrap().len();
        prop_assert!(synced[whole].1 <= kept_len && kept_len <= cut_len);
        prop_assert_eq!(store.torn_tail_cut_bytes(), cut_len + zeros as u64 - kept_len);
    }
}

#[test]
fn damage_before_the_tail_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let appends: Vec<Batch> =
        (0..5).map(|i| Batch::Append { from: 1 + i * 3, len: 3, term: 1 }).collect();
    check(dir.path(), &appends);
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    bytes[header_len() as usize + 20] ^= 0xff; // inside the first record's payload
    fs::write(&segment, &bytes).unwrap();
    let error = FileStore::open(dir.path()).err().expect("damage is refused");
    let StoreError::Corrupt { path, offset_bytes, reason } = &error else {
        panic!("expected a corruption error, got {error}");
    };
    assert_eq!((path, *offset_bytes), (&segment, header_len()), "the first record's start");
    assert!(reason.contains("checksum"), "{error}");
}

/// A data directory written by a build with another log format is refused before any
/// record is read, naming the file and both versions, and left as it was.
#[test]
fn a_log_of_another_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), &[Batch::Append { from: 1, len: 3, term: 1 }]);
    let segment = segments(dir.path()).pop().unwrap();
    let written = fs::read(&segment).unwrap();
    let header = header_len() as usize;
    let refusal = |bytes: &[u8]| {
        fs::write(&segment, bytes).unwrap();
        let error = FileStore::open(dir.path()).err().expect("another format is refused");
        assert_eq!(fs::read(&segment).unwrap(), bytes, "the segment is left as it was");
        error
    };

    // A segment from before segments had headers: its records start at once.
    let error = refusal(&written[header..]);
    let StoreError::UnsupportedFormat { path, found, supported } = &error else {
        panic!("expected an unsupported format, got {error}");
    };
    assert_eq!((path, *found, *supported), (&segment, None, LOG_FORMAT_VERSION));
    let message = error.to_string();
    assert!(message.contains("has no raft log format header"), "{message}");
    assert!(message.contains(&format!("reads only version {LOG_FORMAT_VERSION}")), "{message}");

    // A newer build's header, with a field this build does not know.
    let newer = drover_core::codec::encode(
        drover_core::codec::FrameKind::LOG_SEGMENT_HEADER,
        &(LOG_FORMAT_VERSION + 1, vec![7u8, 7]),
    )
    .unwrap();
    let error = refusal(&[&newer[..], &written[header..]].concat());
    assert!(
        matches!(error, StoreError::UnsupportedFormat { found: Some(v), .. } if v == LOG_FORMAT_VERSION + 1),
        "{error}"
    );

    // An empty segment (an older build created the file first) has no header either; a
    // header cut short is damage, as headers are synced before a segment is named.
    assert!(matches!(refusal(&[]), StoreError::UnsupportedFormat { found: None, .. }));
    let cut_short = refusal(&written[..header - 1]);
    assert!(
        matches!(&cut_short, StoreError::Corrupt { offset_bytes: 0, reason, .. } if reason.contains("segment header")),
        "{cut_short}"
    );

    // The same store with its own header opens.
    fs::write(&segment, &written).unwrap();
    assert_eq!(FileStore::open(dir.path()).unwrap().restored().entries.len(), 3);
}

#[test]
fn a_snapshot_switch_interrupted_before_its_record_keeps_the_old_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let synced = check(
        dir.path(),
        &[Batch::Append { from: 1, len: 10, term: 2 }, Batch::Compact { upto: 4, trailing: 0 }],
    );
    // A newer snapshot file whose log record never became durable, and a temporary file.
    let orphan = dir.path().join(format!("snapshot-{:020}-{:020}.bin", 9, 2));
    fs::write(&orphan, b"complete but not in force").unwrap();
    let temporary = dir.path().join(format!("snapshot-{:020}-{:020}.tmp", 10, 2));
    fs::write(&temporary, b"half").unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.restored(), synced.last().unwrap().0);
    assert_eq!(store.restored().snapshot.meta.index, 4);
    assert!(!orphan.exists() && !temporary.exists());
}

#[test]
fn a_missing_snapshot_the_log_names_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), &[Batch::Install { index: 7, term: 3 }]);
    let file = dir.path().join(format!("snapshot-{:020}-{:020}.bin", 7, 3));
    fs::remove_file(&file).unwrap();
    let error = FileStore::open(dir.path()).err().expect("a missing snapshot is refused");
    assert!(error.to_string().contains("read the snapshot the log names"), "{error}");
}

#[test]
fn a_new_regions_first_voter_set_survives_a_restart() {
    // Raft::new writes an empty snapshot at index 0 whose meta is the bootstrap voter set:
    // a restarted server that lost it would know no voter and never elect a leader.
    let dir = tempfile::tempdir().unwrap();
    let membership = Membership::with_voters([3, 7, 9]);
    let meta = SnapshotMeta { index: 0, term: 0, membership: membership.clone() };
    let mut store = FileStore::open(dir.path()).unwrap();
    let first = Persist {
        id: 1,
        snapshot: Some(Snapshot { meta, data: Vec::new() }),
        log_reset: true,
        log_first_index: 1,
        hard_state: Some(HardState::default()),
        entries: vec![entry(1, 1)],
    };
    store.write(first).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.restored().snapshot.meta.membership, membership);
    assert_eq!(store.restored().entries.len(), 1);
}

/// Drives a one-voter Raft node against `store` until nothing moves, syncing each batch.
fn settle(raft: &mut Raft, store: &mut impl RaftStore, now: Millis) {
    loop {
        let mut moved = false;
        while let Some(persist) = raft.poll_persist() {
            store.write(persist).unwrap();
            moved = true;
        }
        if moved {
            let id = store.sync().unwrap();
            raft.handle_durable(now, id);
        }
        assert!(raft.poll_message().is_none(), "a lone voter sends nothing");
        while raft.poll_committed().is_some() {
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// The log as Raft holds it: snapshot position, then every entry it can hand out.
fn raft_log(raft: &Raft) -> (u64, u64, Vec<Entry>) {
    let meta = raft.snapshot_meta();
    let entries = (raft.first_index()..=raft.last_index())
        .map(|i| raft.entry(i).expect("the log is contiguous").clone())
        .collect();
    (meta.index, meta.term, entries)
}

/// A compaction's trailing entries reach the disk through the same write: the store
/// restores exactly the log Raft held (snapshot, trailing entries, tail), and so does a
/// node restored from it.
fn check_restart_keeps_trailing_entries<S: RaftStore>(mut store: S, reopen: impl Fn(S) -> S) {
    let mut config = Config::new(1, 7);
    config.snapshot_trailing_entries = 4;
    let mut now = Millis(0);
    let mut raft = Raft::new(now, config.clone(), Membership::with_voters([1]));
    settle(&mut raft, &mut store, now);
    now = raft.poll_timeout().expect("an election deadline");
    raft.handle_timeout(now);
    settle(&mut raft, &mut store, now);
    assert!(raft.is_leader());
    for command in 0..10u8 {
        raft.propose(now, vec![command]).unwrap();
    }
    settle(&mut raft, &mut store, now);
    raft.handle_snapshot_taken(now, 9, b"state@9".to_vec());
    raft.propose(now, vec![10]).unwrap();
    settle(&mut raft, &mut store, now);
    let held = raft_log(&raft);
    let indexes: Vec<u64> = held.2.iter().map(|e| e.index).collect();
    assert_eq!((held.0, indexes), (9, (6..=12).collect()), "9 - 4 + 1 = 6 is kept");
    let store = reopen(store);
    let restored = store.restored();
    assert_eq!(restored.entries, held.2);
    let raft = Raft::restore(now, config, restored);
    assert_eq!(raft_log(&raft), held);
}

#[test]
fn a_restart_keeps_the_trailing_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    check_restart_keeps_trailing_entries(FileStore::open(&path).unwrap(), |store| {
        drop(store);
        FileStore::open(&path).unwrap()
    });
    check_restart_keeps_trailing_entries(MemStore::new(), |mut store| {
        store.crash(0, None);
        store
    });
}

/// A new segment whose preamble was cut short (the machine died while restating the log)
/// must not count: it would reset the log and drop synced entries the older segments hold.
#[test]
fn a_segment_switch_cut_short_keeps_the_older_segments() {
    let dir = tempfile::tempdir().unwrap();
    let synced = check(
        dir.path(),
        &[Batch::Append { from: 1, len: 10, term: 2 }, Batch::Compact { upto: 4, trailing: 2 }],
    );
    let newest = segments(dir.path()).pop().unwrap();
    // The next segment's first bytes: a copy of the newest one's preamble, cut in half.
    let bytes = fs::read(&newest).unwrap();
    let cut_short = dir.path().join(format!("log-{:020}.seg.tmp", 99));
    fs::write(&cut_short, &bytes[..bytes.len() / 2]).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.restored(), synced.last().unwrap().0);
    assert!(!cut_short.exists(), "an unfinished segment is removed on open");
    assert_eq!(segments(dir.path()), vec![newest]);
}
