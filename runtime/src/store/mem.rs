//! An in-memory Raft store with a power-fail model, for tests and the simulator.
//!
//! Writes land in a volatile queue and become durable when synced, in order. A crash
//! keeps a chosen prefix of the unsynced writes and may tear the last one kept: a prefix
//! of its records survives (snapshot, then hard state, then each entry), as on a disk that
//! reorders nothing but may stop mid-write. Records take effect through the same rule as
//! [`super::file::FileStore`]'s replay. A fault can be armed ([`MemStore::arm_fault`]):
//! the next write or sync then fails with an I/O error, as a failing disk does, and the
//! host must stop without reporting anything durable.

use super::{RaftStore, Record, StoreError, apply_record};
use drover_core::raft::{HardState, Persist, Restored, Snapshot, WriteId};
use std::collections::VecDeque;

/// Writes held unsynced at once; a caller that never syncs is refused past this.
pub const UNSYNCED_WRITES_MAX: usize = 100_000;

/// An I/O error a [`MemStore`] is armed to return (the simulator's disk faults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// The next `write` fails and takes nothing.
    Write,
    /// The next `sync` fails and makes nothing durable: what was written stays unsynced,
    /// for a crash to lose or tear.
    Sync,
}

#[derive(Debug, Default)]
pub struct MemStore {
    /// What survives a crash: every synced write applied in order.
    durable: Restored,
    unsynced: VecDeque<Persist>,
    /// Every write up to this id is durable.
    synced: WriteId,
    armed: Option<DiskFault>,
    /// Whether an armed fault fired (the store failed its caller).
    fault_fired: bool,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// The id of the last write taken, synced or not.
    pub fn last_written(&self) -> WriteId {
        self.unsynced.back().map_or(self.synced, |w| w.id)
    }

    /// Every write up to this id is durable.
    pub fn synced(&self) -> WriteId {
        self.synced
    }

    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.len()
    }

    /// Arms one I/O error for the next write or sync.
    pub fn arm_fault(&mut self, fault: DiskFault) {
        self.armed = Some(fault);
    }

    /// Disarms a fault that has not fired; returns whether one had fired since the last
    /// call (the caller then treats the machine as failed).
    pub fn take_fault(&mut self) -> bool {
        self.arm_fault_none();
        std::mem::take(&mut self.fault_fired)
    }

    /// Disarms a fault that has not fired.
    pub fn arm_fault_none(&mut self) {
        self.armed = None;
    }

    pub fn fault_fired(&self) -> bool {
        self.fault_fired
    }

    /// The armed fault's error, if `fault` is armed; it fires once.
    fn fire(&mut self, fault: DiskFault) -> Result<(), StoreError> {
        if self.armed != Some(fault) {
            return Ok(());
        }
        self.armed = None;
        self.fault_fired = true;
        let action = match fault {
            DiskFault::Write => "write",
            DiskFault::Sync => "sync",
        };
        let error = std::io::Error::other("injected I/O error");
        Err(StoreError::Io { path: "<memory>".into(), action, error })
    }

    /// Makes every write up to `id` durable (the simulator syncs on its own schedule).
    pub fn sync_to(&mut self, id: WriteId) -> Result<(), StoreError> {
        while self.unsynced.front().is_some_and(|w| w.id <= id) {
            let Some(write) = self.unsynced.pop_front() else { break };
            self.synced = write.id;
            self.apply(write, usize::MAX).map_err(|reason| StoreError::Rejected { reason })?;
        }
        Ok(())
    }

    /// Power failure: keeps the first `kept` unsynced writes, the last of them torn to its
    /// first `torn` records when given, and loses the rest. Write ids restart with the
    /// next process, so the synced mark goes back to 0.
    pub fn crash(&mut self, kept: usize, torn: Option<usize>) {
        let writes: Vec<Persist> = self.unsynced.drain(..).collect();
        let kept = kept.min(writes.len());
        for (i, write) in writes.into_iter().take(kept).enumerate() {
            let records = if i + 1 == kept { torn.unwrap_or(usize::MAX) } else { usize::MAX };
            // A record that cannot follow the log ends what the disk kept, like a torn one.
            if self.apply(write, records).is_err() {
                break;
            }
        }
        self.synced = 0;
    }

    /// Applies the first `records` records of a write to the durable state.
    fn apply(&mut self, write: Persist, records: usize) -> Result<(), String> {
        let mut budget = records;
        if let Some(snapshot) = write.snapshot {
            if budget == 0 {
                return Ok(());
            }
            budget -= 1;
            let Snapshot { meta, data } = snapshot;
            let (log_reset, log_first_index) = (write.log_reset, write.log_first_index);
            let record = Record::Snapshot { meta, log_reset, log_first_index };
            apply_record(&mut self.durable, record)?;
            self.durable.snapshot.data = data;
        }
        if let Some(hard_state) = write.hard_state {
            if budget == 0 {
                return Ok(());
            }
            budget -= 1;
            apply_record(&mut self.durable, Record::HardState(hard_state))?;
        }
        for entry in write.entries {
            if budget == 0 {
                return Ok(());
            }
            budget -= 1;
            apply_record(&mut self.durable, Record::Entry(entry))?;
        }
        Ok(())
    }

    pub fn durable_hard_state(&self) -> HardState {
        self.durable.hard_state
    }

    /// The term of the durable entry at `index` (the snapshot's own index and trailing
    /// entries included).
    pub fn durable_term_at(&self, index: u64) -> Option<u64> {
        let snapshot = &self.durable.snapshot.meta;
        if index == snapshot.index {
            return Some(snapshot.term);
        }
        let first = self.durable.entries.first()?.index;
        let position = usize::try_from(index.checked_sub(first)?).ok()?;
        self.durable.entries.get(position).map(|e| e.term)
    }

    /// True when the entry at `index` is durable, in the log or inside the snapshot.
    pub fn durable_covers(&self, index: u64) -> bool {
        index <= self.durable.snapshot.meta.index || self.durable_term_at(index).is_some()
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.durable.snapshot
    }
}

impl RaftStore for MemStore {
    fn write(&mut self, persist: Persist) -> Result<(), StoreError> {
        self.fire(DiskFault::Write)?;
        if persist.id <= self.last_written() {
            let reason = format!("write {} after write {}", persist.id, self.last_written());
            return Err(StoreError::Rejected { reason });
        }
        if self.unsynced.len() >= UNSYNCED_WRITES_MAX {
            let reason = format!("more than {UNSYNCED_WRITES_MAX} writes unsynced");
            return Err(StoreError::Rejected { reason });
        }
        self.unsynced.push_back(persist);
        Ok(())
    }

    fn sync(&mut self) -> Result<WriteId, StoreError> {
        self.fire(DiskFault::Sync)?;
        self.sync_to(self.last_written())?;
        Ok(self.synced)
    }

    fn restored(&self) -> Restored {
        self.durable.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::raft::{Entry, Payload};

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, at: drover_core::time::Millis::ZERO, payload: Payload::Noop }
    }

    fn write(id: WriteId, term: u64, indexes: std::ops::RangeInclusive<u64>) -> Persist {
        Persist {
            id,
            hard_state: Some(HardState { term, ..HardState::default() }),
            entries: indexes.map(|i| entry(i, term)).collect(),
            ..Persist::default()
        }
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_tears_the_last_kept_write() {
        let mut store = MemStore::new();
        store.write(write(1, 1, 1..=2)).unwrap();
        assert_eq!(store.sync().unwrap(), 1);
        store.write(write(2, 2, 3..=5)).unwrap();
        store.write(write(3, 3, 6..=6)).unwrap();
        // Keep write 2 torn to its hard state and one entry; lose write 3.
        store.crash(1, Some(2));
        let restored = store.restored();
        assert_eq!(restored.hard_state.term, 2);
        let indexes: Vec<u64> = restored.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [1, 2, 3]);
        assert_eq!(store.synced(), 0);
    }

    #[test]
    fn an_armed_sync_fault_fails_once_and_leaves_the_writes_unsynced() {
        let mut store = MemStore::new();
        store.write(write(1, 1, 1..=2)).unwrap();
        store.arm_fault(DiskFault::Sync);
        assert!(matches!(store.sync(), Err(StoreError::Io { action: "sync", .. })));
        assert_eq!((store.synced(), store.unsynced_writes()), (0, 1));
        assert!(store.take_fault());
        store.crash(0, None);
        assert!(store.restored().entries.is_empty(), "an unsynced write is lost");
        store.arm_fault(DiskFault::Write);
        assert!(store.write(write(1, 1, 1..=1)).is_err());
        assert_eq!(store.unsynced_writes(), 0, "a failed write takes nothing");
        store.write(write(1, 1, 1..=1)).unwrap();
        assert_eq!(store.sync().unwrap(), 1);
    }

    #[test]
    fn writes_out_of_order_or_with_a_gap_are_refused() {
        let mut store = MemStore::new();
        store.write(write(2, 1, 1..=1)).unwrap();
        assert!(matches!(store.write(write(2, 1, 2..=2)), Err(StoreError::Rejected { .. })));
        store.write(write(3, 1, 5..=5)).unwrap();
        assert!(matches!(store.sync(), Err(StoreError::Rejected { .. })));
    }
}
