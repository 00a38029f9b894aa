//! The outbox: writes for the runtime, and messages held until those writes are durable.
//!
//! Changes to the hard state, the log or the snapshot accumulate in one open write. A
//! message that answers a peer (a vote, an append or snapshot response) depends on every
//! write issued so far; any other message depends on the write that stored the current
//! term and vote. `poll_message` releases a message only when its write is durable.

use super::message::{
    Entry, Envelope, HardState, Index, Message, NodeId, Persist, Snapshot, WriteId,
};
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// The write still collecting changes; its id is already assigned.
    open: Option<Persist>,
    /// Writes handed to the runtime, with the log's last index after each.
    issued: VecDeque<(WriteId, Index)>,
    /// The last write id handed out (open or issued).
    pub(crate) last_write: WriteId,
    /// Every write up to this id is durable.
    pub(crate) durable: WriteId,
    /// The write that stored the current term and vote.
    pub(crate) hard_state_write: WriteId,
    /// The log's last index as of the latest durable write.
    pub(crate) durable_last_index: Index,
    /// Messages, in send order, each with the write it waits for.
    messages: VecDeque<Envelope>,
}

impl Outbox {
    pub(crate) fn new(durable_last_index: Index) -> Outbox {
        Outbox { durable_last_index, ..Outbox::default() }
    }

    fn open_write(&mut self) -> &mut Persist {
        if self.open.is_none() {
            self.last_write += 1;
            self.open = Some(Persist { id: self.last_write, ..Persist::default() });
        }
        self.open.as_mut().expect("just opened")
    }

    pub(crate) fn write_hard_state(&mut self, hard_state: HardState) {
        let write = self.open_write();
        write.hard_state = Some(hard_state);
        self.hard_state_write = write.id;
    }

    /// Records that `entry` now sits at `entry.index`, replacing anything from there on.
    pub(crate) fn write_entry(&mut self, entry: Entry) {
        let write = self.open_write();
        let index = entry.index;
        match write.entries.first().map(|e| e.index) {
            Some(first) if index >= first && index <= first + write.entries.len() as u64 => {
                write.entries.truncate((index - first) as usize);
            }
            _ => write.entries.clear(),
        }
        write.entries.push(entry);
    }

    /// Records a snapshot that keeps the log from `first_kept` on, or, with `None`, drops
    /// the whole log.
    pub(crate) fn write_snapshot(&mut self, snapshot: Snapshot, first_kept: Option<Index>) {
        let write = self.open_write();
        match first_kept {
            Some(first_kept) => {
                write.entries.retain(|e| e.index >= first_kept);
                write.log_first_index = first_kept;
            }
            None => {
                write.entries.clear();
                write.log_reset = true;
                write.log_first_index = snapshot.meta.index + 1;
            }
        }
        write.snapshot = Some(snapshot);
    }

    /// Closes the open write, if any, for the runtime.
    pub(crate) fn take_write(&mut self, last_index: Index) -> Option<Persist> {
        let write = self.open.take()?;
        self.issued.push_back((write.id, last_index));
        Some(write)
    }

    /// The log lost every entry from `index` on: durable knowledge stops before it.
    pub(crate) fn truncated(&mut self, index: Index) {
        let keep = index.saturating_sub(1);
        self.durable_last_index = self.durable_last_index.min(keep);
        for (_, last_index) in self.issued.iter_mut() {
            *last_index = (*last_index).min(keep);
        }
    }

    /// Marks writes up to `id` durable.
    pub(crate) fn mark_durable(&mut self, id: WriteId) {
        assert!(id <= self.last_write, "durable write {id} was never issued");
        assert!(self.open.as_ref().is_none_or(|w| w.id > id), "write {id} is still open");
        if id <= self.durable {
            return;
        }
        self.durable = id;
        while let Some(&(write, last_index)) = self.issued.front() {
            if write > id {
                break;
            }
            self.durable_last_index = last_index;
            self.issued.pop_front();
        }
    }

    /// Sends a message that answers a peer: it waits for every write issued so far.
    pub(crate) fn send_after_writes(&mut self, from: NodeId, to: NodeId, message: Message) {
        let after_write = self.last_write;
        self.messages.push_back(Envelope { from, to, after_write, message });
    }

    /// Sends a message that only depends on the current term and vote being durable.
    pub(crate) fn send(&mut self, from: NodeId, to: NodeId, message: Message) {
        let after_write = self.hard_state_write;
        self.messages.push_back(Envelope { from, to, after_write, message });
    }

    /// The next message whose write is durable, in send order per dependency.
    pub(crate) fn next_message(&mut self) -> Option<Envelope> {
        let position = self.messages.iter().position(|m| m.after_write <= self.durable)?;
        let envelope = self.messages.remove(position).expect("position is in range");
        assert!(envelope.after_write <= self.durable);
        Some(envelope)
    }
}
