//! One simulated server: a Raft node, its disk, its state machine and its process state.

use crate::checkers::RaftChecker;
use crate::checkers::raft::chain_next;
use crate::clock::Clock;
use drover_core::raft::{Entry, Envelope, Index, Persist, Raft, ReadResult, WriteId};
use drover_core::time::Millis;
use drover_runtime::store::RaftStore;
use drover_runtime::store::mem::MemStore;
use std::fmt::Write as _;

/// The replicated state machine: the hash chain of everything applied, which is exactly
/// what the state machine safety checker compares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct App {
    pub index: Index,
    pub hash: u64,
}

impl App {
    pub fn apply(&mut self, entry: &Entry) {
        assert_eq!(entry.index, self.index + 1, "entries apply in order");
        self.hash = chain_next(self.hash, entry);
        self.index = entry.index;
    }

    /// The snapshot image: index, hash, then padding so it spans several chunks.
    pub fn snapshot_bytes(&self, padding_bytes: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + padding_bytes);
        bytes.extend_from_slice(&self.index.to_le_bytes());
        bytes.extend_from_slice(&self.hash.to_le_bytes());
        bytes.extend((0..padding_bytes).map(|i| (self.hash >> (i % 8 * 8)) as u8 ^ i as u8));
        bytes
    }

    pub fn from_snapshot(data: &[u8]) -> App {
        if data.len() < 16 {
            return App::default();
        }
        let index = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let hash = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        App { index, hash }
    }
}

pub struct SimNode {
    /// `None` while crashed or once retired.
    pub raft: Option<Raft>,
    pub disk: MemStore,
    pub incarnation: u64,
    pub paused_until: Millis,
    /// Removed from the group and shut down for good.
    pub retired: bool,
    /// Appeared in a committed membership at least once.
    pub joined: bool,
    pub app: App,
    /// The pending timer, as a deadline on the node's own clock.
    pub timer_at: Option<Millis>,
    /// The node's own clock; it keeps running (and drifting) across crashes.
    pub clock: Clock,
    /// Syncs complete in order: the latest scheduled sync time.
    pub sync_at: Millis,
}

impl SimNode {
    pub fn new(raft: Raft, joined: bool, clock: Clock) -> SimNode {
        SimNode {
            raft: Some(raft),
            disk: MemStore::default(),
            incarnation: 0,
            paused_until: Millis::ZERO,
            retired: false,
            joined,
            app: App::default(),
            timer_at: None,
            clock,
            sync_at: Millis::ZERO,
        }
    }

    pub fn is_up(&self) -> bool {
        self.raft.is_some() && !self.retired
    }
}

/// What one drain of a node produced, for the simulator to carry out.
#[derive(Default)]
pub struct Drained {
    pub writes: Vec<WriteId>,
    pub messages: Vec<Envelope>,
    pub applied: Vec<Entry>,
    pub reads: Vec<ReadResult>,
    pub lines: Vec<String>,
}

impl SimNode {
    /// Polls every output in the documented order until the node is quiet: writes go to
    /// the disk, snapshots and entries to the state machine, and the checker sees each.
    /// `None` when the node is down.
    pub fn drain(
        &mut self,
        id: u64,
        now: Millis,
        padding_bytes: usize,
        tracing: bool,
        checker: &mut RaftChecker,
    ) -> Option<Drained> {
        let raft = self.raft.as_mut()?;
        let mut out = Drained::default();
        loop {
            while let Some(persist) = raft.poll_persist() {
                checker.on_persist(id, &persist, raft);
                if tracing {
                    out.lines.push(describe_persist(id, &persist));
                }
                out.writes.push(persist.id);
                if let Err(error) = self.disk.write(persist) {
                    panic!("n{id}: {error}");
                }
            }
            while let Some(envelope) = raft.poll_message() {
                checker.on_send(&envelope, &self.disk, raft);
                out.messages.push(envelope);
            }
            if let Some(snapshot) = raft.poll_snapshot() {
                self.app = App::from_snapshot(&snapshot.data);
                assert_eq!(self.app.index, snapshot.meta.index);
                checker.on_snapshot_loaded(id, self.app.index, self.app.hash);
                if tracing {
                    let meta = &snapshot.meta;
                    out.lines.push(format!("n{id} install snapshot {}/{}", meta.term, meta.index));
                }
            }
            while let Some(entries) = raft.poll_committed() {
                for entry in entries {
                    self.app.apply(&entry);
                    checker.on_apply(id, entry.index, self.app.hash);
                    out.applied.push(entry);
                }
            }
            while let Some(result) = raft.poll_read() {
                out.reads.push(result);
            }
            let Some(index) = raft.snapshot_due() else { break };
            assert_eq!(index, self.app.index);
            raft.handle_snapshot_taken(now, index, self.app.snapshot_bytes(padding_bytes));
            if tracing {
                out.lines.push(format!("n{id} snapshot at {index}"));
            }
        }
        checker.after_step(id, raft);
        Some(out)
    }
}

fn describe_persist(id: u64, persist: &Persist) -> String {
    let mut line = format!("n{id} persist w{}", persist.id);
    if let Some(snapshot) = &persist.snapshot {
        let _ = write!(line, " snapshot={}/{}", snapshot.meta.term, snapshot.meta.index);
        if persist.log_reset {
            line.push_str(" reset");
        } else {
            let _ = write!(line, " keep={}..", persist.log_first_index);
        }
    }
    if let Some(hs) = persist.hard_state {
        let _ = write!(line, " term={} vote={:?}", hs.term, hs.vote);
    }
    if let (Some(first), Some(last)) = (persist.entries.first(), persist.entries.last()) {
        let _ = write!(line, " entries={}..{}", first.index, last.index);
    }
    line
}
