//! What a leader knows about each follower's log, and how it paces appends to it.
//!
//! ```text
//!            reject / lost            snapshot needed
//!   Replicate ───────────▶ Probe ───────────────────▶ Snapshot
//!       ▲   success           │ ▲   installed              │
//!       └─────────────────────┘ └──────────────────────────┘
//! ```
//! Probe sends one append and waits; Replicate pipelines up to `appends_in_flight_max`
//! appends; Snapshot streams chunks and sends no appends.

use super::message::Index;
use crate::time::Millis;
use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    /// One append at a time; `paused` until a response or heartbeat response arrives.
    Probe { paused: bool },
    /// Optimistic pipelining; `in_flight` holds the last index of each unacknowledged
    /// append.
    Replicate,
    /// Streaming the snapshot at `index`; `offset` is the next byte the follower expects.
    Snapshot { index: Index, offset: u64 },
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: Index,
    pub(crate) next_index: Index,
    pub(crate) state: ProgressState,
    pub(crate) in_flight: VecDeque<Index>,
    /// Set by any response in the current check-quorum window.
    pub(crate) recent_active: bool,
    /// When the leader sent the newest heartbeat round this follower acknowledged: the
    /// follower refuses other candidates for an election timeout from a later instant.
    pub(crate) lease_sent: Option<Millis>,
}

impl Progress {
    pub(crate) fn new(next_index: Index) -> Progress {
        assert!(next_index > 0);
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe { paused: false },
            in_flight: VecDeque::new(),
            recent_active: true,
            lease_sent: None,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe { paused: false };
        self.next_index = self.match_index + 1;
        self.in_flight.clear();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.in_flight.clear();
    }

    /// Records an acknowledged index; returns true when the match index moved.
    pub(crate) fn update_match(&mut self, index: Index) -> bool {
        while self.in_flight.front().is_some_and(|&i| i <= index) {
            self.in_flight.pop_front();
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index + 1);
        assert!(self.next_index > self.match_index);
        true
    }

    /// True when an append may be sent now.
    pub(crate) fn can_send(&self, appends_in_flight_max: usize) -> bool {
        match self.state {
            ProgressState::Probe { paused } => !paused,
            ProgressState::Replicate => self.in_flight.len() < appends_in_flight_max,
            ProgressState::Snapshot { .. } => false,
        }
    }

    /// Records that an append ending at `last` went out.
    pub(crate) fn sent(&mut self, last: Index) {
        match &mut self.state {
            ProgressState::Probe { paused } => *paused = true,
            ProgressState::Replicate => {
                assert!(last >= self.next_index.saturating_sub(1));
                self.next_index = last + 1;
                self.in_flight.push_back(last);
            }
            ProgressState::Snapshot { .. } => unreachable!("no appends while streaming a snapshot"),
        }
    }
}
