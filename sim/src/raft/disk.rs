//! A simulated disk for one Raft node, with a power-fail model.
//!
//! Writes land in a volatile queue and become durable when the simulator syncs them, in
//! order. A crash keeps a random prefix of the unsynced writes and may tear the last one
//! kept: a prefix of its records survives (snapshot, then hard state, then each entry).

use drover_core::raft::{Entry, HardState, Persist, Restored, Snapshot, WriteId};
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Disk {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Contiguous entries after `snapshot.meta.index`.
    entries: Vec<Entry>,
    unsynced: VecDeque<Persist>,
    /// Every write up to this id is durable.
    pub synced: WriteId,
}

impl Disk {
    pub fn write(&mut self, persist: Persist) {
        assert!(self.unsynced.back().is_none_or(|w| w.id < persist.id), "writes come in order");
        self.unsynced.push_back(persist);
    }

    pub fn last_written(&self) -> WriteId {
        self.unsynced.back().map_or(self.synced, |w| w.id)
    }

    /// Makes every write up to `id` durable.
    pub fn sync(&mut self, id: WriteId) {
        while self.unsynced.front().is_some_and(|w| w.id <= id) {
            let write = self.unsynced.pop_front().expect("front");
            self.synced = write.id;
            self.apply(write, usize::MAX);
        }
    }

    /// Power failure: keeps `kept` unsynced writes, the last of them torn to `records`
    /// records when `torn` is set, and loses the rest. Then the node's write ids restart.
    pub fn crash(&mut self, kept: usize, torn: Option<usize>) {
        let writes: Vec<Persist> = self.unsynced.drain(..).collect();
        let kept = kept.min(writes.len());
        for (i, write) in writes.into_iter().take(kept).enumerate() {
            let records = if i + 1 == kept { torn.unwrap_or(usize::MAX) } else { usize::MAX };
            self.apply(write, records);
        }
        self.synced = 0;
    }

    /// Applies the first `records` records of a write.
    fn apply(&mut self, write: Persist, records: usize) {
        let mut budget = records;
        if let Some(snapshot) = write.snapshot {
            if budget == 0 {
                return;
            }
            budget -= 1;
            self.install(snapshot, write.log_reset);
        }
        if let Some(hard_state) = write.hard_state {
            if budget == 0 {
                return;
            }
            budget -= 1;
            self.hard_state = hard_state;
        }
        for entry in write.entries {
            if budget == 0 {
                return;
            }
            budget -= 1;
            self.append(entry);
        }
    }

    fn install(&mut self, snapshot: Snapshot, log_reset: bool) {
        let index = snapshot.meta.index;
        let old = self.snapshot.meta.index;
        if log_reset {
            self.entries.clear();
        } else {
            let drop = (index.saturating_sub(old) as usize).min(self.entries.len());
            self.entries.drain(..drop);
        }
        self.snapshot = snapshot;
    }

    fn append(&mut self, entry: Entry) {
        let first = self.snapshot.meta.index + 1;
        if entry.index < first {
            return;
        }
        let position = (entry.index - first) as usize;
        assert!(position <= self.entries.len(), "disk log would have a gap at {}", entry.index);
        self.entries.truncate(position);
        self.entries.push(entry);
    }

    /// What a restarted node reads back.
    pub fn restore(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    pub fn durable_hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The term of the durable entry at `index` (the snapshot's own index included).
    pub fn durable_term_at(&self, index: u64) -> Option<u64> {
        let snapshot_index = self.snapshot.meta.index;
        if index == snapshot_index {
            return Some(self.snapshot.meta.term);
        }
        if index < snapshot_index {
            return None;
        }
        self.entries.get((index - snapshot_index - 1) as usize).map(|e| e.term)
    }

    /// True when the entry at `index` is durable, in the log or inside the snapshot.
    pub fn durable_covers(&self, index: u64) -> bool {
        index <= self.snapshot.meta.index || self.durable_term_at(index).is_some()
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}
