//! The client's outboxes: messages for servers, commands for drivers, observable events.
//!
//! Messages and commands are never dropped: each is bounded by construction (one request
//! in flight per channel, a handful of commands per task per input). Events exist for
//! operators and traces only, so their queue keeps the newest `events_max` and counts
//! what it dropped.

use super::driver::{DriverCommand, TaskRef};
use crate::model::{AllocClientStatus, TaskEvent};
use crate::rpc::{ClientRpc, ServerAddr};
use crate::time::Millis;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// Something a client did or saw, for logs, traces and tests. Nothing depends on it.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The servers accepted the node's registration.
    Registered {
        server: ServerAddr,
    },
    /// A heartbeat failed: the client keeps its tasks running and keeps retrying.
    Disconnected {
        server: ServerAddr,
    },
    /// A heartbeat succeeded after failures; allocations and statuses are resynced.
    Reconnected {
        server: ServerAddr,
    },
    /// The heartbeat reply carried a different server list.
    ServersChanged {
        servers: Vec<ServerAddr>,
    },
    AllocAdded {
        alloc_id: String,
    },
    /// The allocation cannot run here; it is reported failed with `reason`.
    AllocRefused {
        alloc_id: String,
        reason: String,
    },
    /// The servers no longer list the allocation and all its tasks are dead.
    AllocRemoved {
        alloc_id: String,
    },
    AllocStatus {
        alloc_id: String,
        status: AllocClientStatus,
        description: String,
    },
    /// The client judged the allocation's deployment health.
    AllocHealth {
        alloc_id: String,
        healthy: bool,
    },
    Task {
        task: TaskRef,
        event: Box<TaskEvent>,
    },
    /// Heartbeats reported a change to the node's allocations (`allocs_index`) that the
    /// allocation watch, in flight since before, had still not brought a whole RPC
    /// timeout later: its answer was lost, so the client gave it up and asked again.
    WatchRenewed {
        watch_index: u64,
        allocs_index: u64,
    },
    /// A reply that matched no request in flight (late, duplicated, or for a request the
    /// client gave up on).
    ReplyIgnored {
        request_id: u64,
    },
    /// A driver event for an unknown task or an attempt that is no longer current.
    DriverEventIgnored {
        task: TaskRef,
        attempt: u32,
    },
}

#[derive(Debug)]
pub(crate) struct Outputs {
    pub driver: VecDeque<DriverCommand>,
    pub sends: VecDeque<(ServerAddr, ClientRpc)>,
    events: VecDeque<ClientEvent>,
    events_max: usize,
    pub events_dropped: u64,
}

impl Outputs {
    pub fn new(events_max: usize) -> Outputs {
        Outputs {
            driver: VecDeque::new(),
            sends: VecDeque::new(),
            events: VecDeque::new(),
            events_max,
            events_dropped: 0,
        }
    }

    pub fn event(&mut self, event: ClientEvent) {
        if self.events_max == 0 {
            self.events_dropped += 1;
            return;
        }
        if self.events.len() == self.events_max {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    pub fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

/// What a task or allocation runner needs to act: the time, the randomness, the outboxes.
pub(crate) struct Ctx<'a> {
    pub now: Millis,
    pub rng: &'a mut ChaCha8Rng,
    pub out: &'a mut Outputs,
    pub task_events_max: usize,
    pub kill_timeout_max_ms: u64,
}

/// Milliseconds as nanoseconds, saturating: a wall-clock `now` becomes the Unix
/// nanoseconds task states stamp, a delay becomes the `DurationNs` events carry.
pub(crate) fn nanos(ms: Millis) -> i64 {
    i64::try_from(ms.as_u64()).unwrap_or(i64::MAX).saturating_mul(1_000_000)
}
