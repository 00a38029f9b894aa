//! Snapshots: compaction after the state machine takes one, and streaming one to a
//! follower that fell behind the leader's log, in chunks of `snapshot_chunk_bytes_max`.
//!
//! A compaction at index I keeps the entries from `I - snapshot_trailing_entries + 1` on
//! (hashicorp/raft's `TrailingLogs`), in memory and, through the same write, on disk. A
//! follower whose next index is past the first kept entry catches up by AppendEntries;
//! only one further behind gets the snapshot. That keeps snapshot transfers, the step
//! where hashicorp/raft #212 and #697 looped (reliability.md §2, "Snapshot install"), for
//! followers that really lost the log, and lets a checker see every committed entry on
//! some server before it goes (the applied-history hash chain, reliability.md §1).
//!
//! A follower assembles chunks in order (it answers each with the next offset it expects)
//! and installs the snapshot when the last one arrives. Installing keeps the log suffix
//! only when the log holds the snapshot's last entry with the same term, and drops the
//! whole log otherwise: the hashicorp/raft #697 livelock needs a conflicting entry to
//! survive an install, which this rules out.

use super::message::{Index, Message, NodeId, Snapshot, SnapshotMeta};
use super::progress::ProgressState;
use super::{Raft, Role};
use crate::time::Millis;

impl Raft {
    /// The state machine captured its state at `index` (at most the applied index).
    pub fn handle_snapshot_taken(&mut self, _now: Millis, index: Index, data: Vec<u8>) {
        assert!(index <= self.applied, "snapshot at {index} beyond applied {}", self.applied);
        if index <= self.log.snapshot_index() {
            return;
        }
        let snapshot = Snapshot { meta: self.log.meta_at(index), data };
        let first_kept = self.log.compact(snapshot.clone(), self.config.snapshot_trailing_entries);
        self.out.write_snapshot(snapshot, Some(first_kept));
        assert_eq!(self.log.snapshot_index(), index);
    }

    pub(super) fn start_snapshot(&mut self, peer: NodeId) {
        let index = self.log.snapshot_index();
        let leading = self.leading.as_mut().expect("leading");
        let progress = leading.progress.get_mut(&peer).expect("progress");
        progress.state = ProgressState::Snapshot { index, offset: 0 };
        progress.in_flight.clear();
        self.send_snapshot_chunk(peer);
    }

    /// Sends the chunk the follower expects next, restarting if the snapshot changed.
    pub(super) fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let term = self.term;
        let chunk_max = self.config.snapshot_chunk_bytes_max as u64;
        let snapshot = &self.log.snapshot;
        let leading = self.leading.as_mut().expect("leading");
        let progress = leading.progress.get_mut(&peer).expect("progress");
        let ProgressState::Snapshot { index, offset } = &mut progress.state else { return };
        if *index != snapshot.meta.index {
            *index = snapshot.meta.index;
            *offset = 0;
        }
        let length = snapshot.data.len() as u64;
        let start = (*offset).min(length);
        let end = (start + chunk_max).min(length);
        let message = Message::SnapshotChunk {
            term,
            meta: snapshot.meta.clone(),
            offset: start,
            data: snapshot.data[start as usize..end as usize].to_vec(),
            done: end == length,
        };
        self.send(peer, message);
    }

    pub(super) fn on_snapshot_response(
        &mut self,
        now: Millis,
        from: NodeId,
        index: Index,
        offset: u64,
        installed: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let leading = self.leading.as_mut().expect("leading");
        let Some(progress) = leading.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        let ProgressState::Snapshot { index: sending, offset: expected } = &mut progress.state
        else {
            return;
        };
        if installed {
            // The follower's log matches ours up to the snapshot, and maybe no further.
            progress.update_match(index);
            progress.become_probe();
            self.maybe_commit(now);
            if self.is_leader() {
                self.maybe_send_timeout_now(from);
                self.send_appends(from);
            }
            return;
        }
        if index != *sending {
            return;
        }
        *expected = offset;
        self.send_snapshot_chunk(from);
    }

    pub(super) fn on_snapshot_chunk(
        &mut self,
        now: Millis,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        self.on_leader_contact(now, from);
        let term = self.term;
        let index = meta.index;
        if index <= self.commit {
            // Already covered: our log matches the leader's up to our commit index.
            let last_index = self.log.last_index();
            let response =
                Message::SnapshotResponse { term, index, offset: 0, installed: true, last_index };
            self.send_after_writes(from, response);
            return;
        }
        let same =
            self.incoming.as_ref().is_some_and(|(m, _)| m.index == index && m.term == meta.term);
        if !same {
            self.incoming = Some((meta.clone(), Vec::new()));
        }
        let (_, buffer) = self.incoming.as_mut().expect("incoming");
        if offset != buffer.len() as u64 {
            let offset = buffer.len() as u64;
            let response =
                Message::SnapshotResponse { term, index, offset, installed: false, last_index: 0 };
            self.send(from, response);
            return;
        }
        buffer.extend_from_slice(&data);
        if !done {
            let offset = buffer.len() as u64;
            let response =
                Message::SnapshotResponse { term, index, offset, installed: false, last_index: 0 };
            self.send(from, response);
            return;
        }
        let (meta, data) = self.incoming.take().expect("incoming");
        self.install_snapshot(now, Snapshot { meta, data });
        let last_index = self.log.last_index();
        let response =
            Message::SnapshotResponse { term, index, offset: 0, installed: true, last_index };
        // The answer waits for the snapshot to be durable.
        self.send_after_writes(from, response);
    }

    fn install_snapshot(&mut self, now: Millis, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        assert!(index > self.commit && self.applied <= self.commit);
        let first_kept = self.log.install(snapshot.clone(), self.config.snapshot_trailing_entries);
        self.out.truncated(match first_kept {
            Some(_) => self.log.last_index() + 1,
            None => index + 1,
        });
        self.out.write_snapshot(snapshot.clone(), first_kept);
        self.commit = index;
        self.applied = index;
        self.to_install = Some(snapshot);
        self.refresh_election_deadline(now);
        assert_eq!(self.log.snapshot_index(), index);
        assert!(self.log.last_index() >= index);
    }
}
