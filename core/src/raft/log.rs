//! The in-memory Raft log: a snapshot, trailing entries it covers, and the entries after it.
//!
//! The runtime holds the durable copy; this one mirrors it, so the machine never reads a
//! disk. A compaction keeps up to `Config::snapshot_trailing_entries` entries at or before
//! the snapshot's index (hashicorp/raft's `TrailingLogs`), so a follower a little behind
//! catches up by AppendEntries instead of receiving the whole state. Membership entries
//! take effect when appended, so the log also tracks where they are, to find the
//! membership in force after a truncation.

use super::message::{
    Entry, Index, Membership, Payload, Persist, Restored, Snapshot, SnapshotMeta, Term,
};

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The latest snapshot.
    pub(crate) snapshot: Snapshot,
    /// Contiguous entries, empty or reaching at least `snapshot.meta.index`; the first is
    /// at or before `snapshot.meta.index + 1`. Those up to the snapshot's index are the
    /// trailing entries: committed, covered by the snapshot, kept to be sent.
    entries: Vec<Entry>,
    /// Indices of membership entries after the snapshot, ascending. A trailing one is
    /// left out: the snapshot's membership already accounts for it.
    membership_indices: Vec<Index>,
}

impl RaftLog {
    /// The log a node restarts with. Trailing entries that stop short of the snapshot are
    /// what a write torn after its compaction left; they serve nothing and are dropped.
    pub(crate) fn new(snapshot: Snapshot, entries: Vec<Entry>) -> RaftLog {
        let snapshot_index = snapshot.meta.index;
        let mut log = RaftLog { snapshot, entries: Vec::new(), membership_indices: Vec::new() };
        if entries.last().is_none_or(|e| e.index < snapshot_index) {
            return log;
        }
        let first = entries[0].index;
        assert!(first <= snapshot_index + 1, "a gap between the snapshot and entry {first}");
        let trailing = (snapshot_index + 1 - first) as usize;
        if let Some(at_snapshot) = trailing.checked_sub(1).map(|i| &entries[i]) {
            assert_eq!(at_snapshot.term, log.snapshot.meta.term, "trailing entries diverge");
        }
        let mut entries = entries.into_iter();
        log.entries.extend(entries.by_ref().take(trailing));
        assert!(log.entries.windows(2).all(|w| w[1].index == w[0].index + 1));
        for entry in entries {
            log.push(entry);
        }
        log
    }

    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot.meta.index
    }

    /// The first index whose entry the log holds (the one after the snapshot when no
    /// trailing entries are kept).
    pub(crate) fn first_index(&self) -> Index {
        self.entries.first().map_or(self.snapshot.meta.index + 1, |e| e.index)
    }

    pub(crate) fn last_index(&self) -> Index {
        self.entries.last().map_or(self.snapshot.meta.index, |e| e.index)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.meta.term, |e| e.term)
    }

    /// The term at `index`, or `None` when it is compacted away or beyond the end.
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.meta.index {
            return Some(self.snapshot.meta.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        let position = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(position).ok()?)
    }

    /// Entries `from..=to`, both within the log (empty when `to < from`).
    pub(crate) fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let first = self.first_index();
        assert!(from >= first && to <= self.last_index() && from <= to + 1);
        &self.entries[(from - first) as usize..(to + 1 - first) as usize]
    }

    /// True when `(last_term, last_index)` is at least as up to date as this log.
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    pub(crate) fn push(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "log must stay contiguous");
        assert!(entry.term >= self.last_term(), "terms never decrease along the log");
        if matches!(entry.payload, Payload::Membership(_)) {
            self.membership_indices.push(entry.index);
        }
        self.entries.push(entry);
    }

    /// Drops every entry at or after `index`.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        assert!(index > self.snapshot.meta.index, "cannot truncate into the snapshot");
        let keep = (index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.membership_indices.retain(|&i| i < index);
    }

    /// Replaces the prefix up to `snapshot.meta.index` with `snapshot`, keeping the entries
    /// after it and up to `trailing_entries` entries at or before it. Returns the first
    /// index kept. The caller checked that the log holds that index with that term.
    pub(crate) fn compact(&mut self, snapshot: Snapshot, trailing_entries: u64) -> Index {
        let index = snapshot.meta.index;
        assert!(index > self.snapshot.meta.index && index <= self.last_index());
        assert_eq!(self.term_at(index), Some(snapshot.meta.term));
        let first = self.first_index();
        let first_kept = (index + 1).saturating_sub(trailing_entries).max(first);
        self.entries.drain(..(first_kept - first) as usize);
        self.membership_indices.retain(|&i| i > index);
        self.snapshot = snapshot;
        first_kept
    }

    /// Installs a snapshot from the leader. The log survives (compacted as by
    /// [`RaftLog::compact`]) only when it holds the snapshot's last entry with the same term
    /// (Raft figure 13, rule 6), and so agrees with the leader's up to there; otherwise the
    /// whole log goes (rule 7), so no conflicting entry can outlive it. Returns the first
    /// index kept, `None` when the whole log was dropped.
    pub(crate) fn install(&mut self, snapshot: Snapshot, trailing_entries: u64) -> Option<Index> {
        let index = snapshot.meta.index;
        let matches = index <= self.last_index() && self.term_at(index) == Some(snapshot.meta.term);
        if matches && index > self.snapshot.meta.index {
            return Some(self.compact(snapshot, trailing_entries));
        }
        self.entries.clear();
        self.membership_indices.clear();
        self.snapshot = snapshot;
        None
    }

    /// The membership in force at the end of the log.
    pub(crate) fn membership(&self) -> &Membership {
        self.membership_at(self.last_index())
    }

    /// The membership in force at `index`, at or after the snapshot (the latest
    /// membership entry at or before it, else the snapshot's).
    pub(crate) fn membership_at(&self, index: Index) -> &Membership {
        assert!(index >= self.snapshot.meta.index, "membership before the snapshot");
        let position = self.membership_indices.partition_point(|&i| i <= index);
        if position == 0 {
            return &self.snapshot.meta.membership;
        }
        match &self.entry(self.membership_indices[position - 1]).map(|e| &e.payload) {
            Some(Payload::Membership(m)) => m,
            _ => unreachable!("membership index points at a membership entry"),
        }
    }

    /// The index of the latest membership entry still in the log, if any.
    pub(crate) fn last_membership_index(&self) -> Index {
        self.membership_indices.last().copied().unwrap_or(self.snapshot.meta.index)
    }

    /// A snapshot description for `index`, which must be in the log.
    pub(crate) fn meta_at(&self, index: Index) -> SnapshotMeta {
        let term = self.term_at(index).expect("snapshot index is in the log");
        SnapshotMeta { index, term, membership: self.membership_at(index).clone() }
    }
}

/// The durable copy's rule: how a store that writes what Raft asks ends up holding the log
/// Raft holds in memory. Every store applies writes through it, record by record, so a
/// restart hands [`RaftLog::new`] the log Raft had.
impl Restored {
    /// Applies a whole write.
    pub fn apply(&mut self, persist: &Persist) -> Result<(), String> {
        if let Some(snapshot) = &persist.snapshot {
            self.apply_snapshot(snapshot.clone(), persist.log_reset, persist.log_first_index);
        }
        if let Some(hard_state) = persist.hard_state {
            self.hard_state = hard_state;
        }
        persist.entries.iter().try_for_each(|entry| self.apply_entry(entry.clone()))
    }

    /// A snapshot takes over the log's prefix: every entry goes on a reset, else those
    /// before `log_first_index` (the trailing ones from it on stay).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot, log_reset: bool, log_first_index: Index) {
        if log_reset {
            self.entries.clear();
        } else {
            self.entries.retain(|e| e.index >= log_first_index);
        }
        self.snapshot = snapshot;
    }

    /// An entry replaces the one at its index and everything after it.
    pub fn apply_entry(&mut self, entry: Entry) -> Result<(), String> {
        let covered = self.snapshot.meta.index;
        let next = self.entries.last().map_or(covered + 1, |e| e.index + 1);
        match self.entries.first().map(|e| e.index) {
            Some(first) if first <= entry.index && entry.index <= next => {
                self.entries.truncate((entry.index - first) as usize);
            }
            // The entry after the snapshot always fits: trailing entries that stop short
            // of the snapshot (a write torn after its compaction) go.
            _ if entry.index == covered + 1 => self.entries.clear(),
            // An empty log takes back trailing entries (a compaction's write whose
            // earlier entries were never stored, a new segment's restatement).
            None if entry.index <= covered => {}
            _ => return Err(format!("entry {} cannot follow entry {}", entry.index, next - 1)),
        }
        self.entries.push(entry);
        Ok(())
    }
}
