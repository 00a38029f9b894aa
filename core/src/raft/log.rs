//! The in-memory Raft log: a snapshot followed by contiguous entries.
//!
//! The runtime holds the durable copy; this one mirrors it, so the machine never reads a
//! disk. Membership entries take effect when appended, so the log also tracks where they
//! are, to find the membership in force after a truncation.

use super::message::{Entry, Index, Membership, Payload, Snapshot, SnapshotMeta, Term};

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The latest snapshot; entries start right after `snapshot.meta.index`.
    pub(crate) snapshot: Snapshot,
    entries: Vec<Entry>,
    /// Indices of membership entries still in `entries`, ascending.
    membership_indices: Vec<Index>,
}

impl RaftLog {
    pub(crate) fn new(snapshot: Snapshot, entries: Vec<Entry>) -> RaftLog {
        let mut log = RaftLog { snapshot, entries: Vec::new(), membership_indices: Vec::new() };
        for entry in entries {
            log.push(entry);
        }
        log
    }

    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot.meta.index
    }

    pub(crate) fn first_index(&self) -> Index {
        self.snapshot.meta.index + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        self.snapshot.meta.index + self.entries.len() as u64
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
        if index <= self.snapshot.meta.index {
            return None;
        }
        self.entries.get((index - self.snapshot.meta.index - 1) as usize)
    }

    /// Entries `from..=to`, both within the log (empty when `to < from`).
    pub(crate) fn slice(&self, from: Index, to: Index) -> &[Entry] {
        assert!(from > self.snapshot.meta.index && to <= self.last_index() && from <= to + 1);
        let offset = self.snapshot.meta.index + 1;
        &self.entries[(from - offset) as usize..(to + 1 - offset) as usize]
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
        let keep = (index - self.snapshot.meta.index - 1) as usize;
        self.entries.truncate(keep);
        self.membership_indices.retain(|&i| i < index);
    }

    /// Replaces the prefix up to `snapshot.meta.index` with `snapshot`, keeping the entries
    /// after it. The caller checked that the log holds that index with that term.
    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        assert!(index > self.snapshot.meta.index && index <= self.last_index());
        assert_eq!(self.term_at(index), Some(snapshot.meta.term));
        let drop = (index - self.snapshot.meta.index) as usize;
        self.entries.drain(..drop);
        self.membership_indices.retain(|&i| i > index);
        self.snapshot = snapshot;
    }

    /// Installs a snapshot from the leader. Entries after it survive only when the log
    /// holds the snapshot's last entry with the same term (Raft figure 13, rule 6);
    /// otherwise the whole log goes (rule 7), so no conflicting tail can outlive it.
    /// Returns true when the whole log was dropped.
    pub(crate) fn install(&mut self, snapshot: Snapshot) -> bool {
        let index = snapshot.meta.index;
        let matches = index <= self.last_index() && self.term_at(index) == Some(snapshot.meta.term);
        if matches && index > self.snapshot.meta.index {
            self.compact(snapshot);
            return false;
        }
        self.entries.clear();
        self.membership_indices.clear();
        self.snapshot = snapshot;
        true
    }

    /// The membership in force at the end of the log.
    pub(crate) fn membership(&self) -> &Membership {
        self.membership_at(self.last_index())
    }

    /// The membership in force at `index` (the latest membership entry at or before it).
    pub(crate) fn membership_at(&self, index: Index) -> &Membership {
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
