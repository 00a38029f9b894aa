//! One client node as a sans-IO state machine.
//!
//! A [`Client`] registers its fingerprinted node with the region's servers, heartbeats,
//! watches for the allocations placed on it, runs each through an allocation runner and
//! its task runners (lifecycle hooks, restart policy, kills), and reports their status
//! back in batches. It owns no clock, socket, process or thread:
//!
//! - inputs: [`Client::handle_reply`] (a server's answer), [`Client::handle_send_failed`]
//!   (the runtime could not deliver a request), [`Client::handle_driver_event`] (a task
//!   started, failed to start or exited) and [`Client::handle_timeout`], each with the
//!   runtime's wall-clock `now` in Unix milliseconds (a `now` earlier than one already
//!   seen is taken as the latest one, so a clock step backwards never rewinds deadlines);
//! - outputs, drained after every input (and after [`Client::new`]) **in this order**:
//!   1. [`Client::poll_driver_command`]: start, stop, signal, force-kill or destroy a task;
//!   2. [`Client::poll_send`]: send a request to the named server;
//!   3. [`Client::poll_event`]: observable events, for logs and traces;
//!   4. [`Client::poll_timeout`]: call `handle_timeout` at that instant at the latest.
//!
//! Three channels talk to the servers, each with at most one request in flight: the node
//! (register, then heartbeats every TTL), the allocation watch (a blocking query from the
//! last index seen) and status updates (batched for `updates_batch_delay_ms`, at most
//! `updates_batch_max` per request, the latest state of each allocation winning). A failed
//! or timed-out request moves the client to the next known server and retries after a
//! seeded exponential backoff; a `NotLeader` hint is followed at once. Tasks keep running
//! while no server answers. After a heartbeat succeeds again, or after re-registering
//! because the servers forgot the node, the client resyncs: it reloads its allocations
//! from index 0 and reports every allocation's status again.

mod alloc_runner;
mod config;
mod driver;
mod health;
mod links;
mod output;
mod restart;
mod servers;
mod task_runner;

pub use config::{
    ALLOC_WATCH_WAIT_MS, ClientConfig, ConfigError, KILL_TIMEOUT_MAX_MS, TASK_EVENTS_MAX,
    UPDATES_BATCH_DELAY_MS,
};
pub use driver::{DriverCommand, DriverEvent, TaskAction, TaskExit, TaskRef};
pub use output::ClientEvent;
pub use restart::{
    REASON_DELAY, REASON_NO_RESTARTS_ALLOWED, REASON_SUCCESSFUL, REASON_UNRECOVERABLE,
    REASON_WITHIN_POLICY,
};

use crate::model::{AllocClientStatus, Node, TaskState};
use crate::rpc::{ClientRpc, ServerAddr};
use crate::state::AllocClientUpdate;
use crate::time::Millis;
use alloc_runner::AllocRunner;
use links::{Links, Request};
use output::{Ctx, Outputs};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use servers::ServerList;
use std::collections::BTreeMap;

/// One client node. After every input, drain [`Client::poll_driver_command`], then
/// [`Client::poll_send`], then [`Client::poll_event`], then ask [`Client::poll_timeout`];
/// the module documentation gives the whole protocol with the runtime.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    rng: ChaCha8Rng,
    /// The latest `now` seen.
    now: Millis,
    servers: ServerList,
    next_request_id: u64,
    in_flight: BTreeMap<u64, Request>,
    links: Links,
    allocs: BTreeMap<String, AllocRunner>,
    out: Outputs,
}

impl Client {
    /// A client that registers its node at once (drain the outputs after this call).
    pub fn new(now: Millis, config: ClientConfig) -> Result<Client, ConfigError> {
        config.validate()?;
        let mut client = Client {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            now,
            servers: ServerList::new(&config.servers, config.servers_max),
            next_request_id: 1,
            in_flight: BTreeMap::new(),
            links: Links::new(now),
            allocs: BTreeMap::new(),
            out: Outputs::new(config.events_max),
            config,
        };
        client.pump(now);
        Ok(client)
    }

    // ---------------------------------------------------------------- getters

    pub fn node(&self) -> &Node {
        &self.config.node
    }

    pub fn servers(&self) -> &[ServerAddr] {
        self.servers.all()
    }

    /// The server requests go to next.
    pub fn current_server(&self) -> &ServerAddr {
        self.servers.current()
    }

    pub fn is_registered(&self) -> bool {
        self.links.registered
    }

    /// The last heartbeat (or registration) succeeded.
    pub fn is_connected(&self) -> bool {
        self.links.connected
    }

    /// The allocation table index the watch has seen.
    pub fn alloc_index(&self) -> u64 {
        self.links.watch_index
    }

    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Allocations waiting for their status to be sent.
    pub fn updates_pending(&self) -> usize {
        self.links.dirty.len()
    }

    pub fn alloc_ids(&self) -> impl Iterator<Item = &str> {
        self.allocs.keys().map(String::as_str)
    }

    pub fn alloc_status(&self, alloc_id: &str) -> Option<(AllocClientStatus, &str)> {
        self.allocs.get(alloc_id).map(|r| (r.status, r.description.as_str()))
    }

    pub fn task_state(&self, alloc_id: &str, task: &str) -> Option<&TaskState> {
        let runner = self.allocs.get(alloc_id)?;
        runner.tasks.iter().find(|t| t.task_ref.task == task).map(|t| &t.state)
    }

    /// What the client would report for an allocation now.
    pub fn alloc_report(&self, alloc_id: &str) -> Option<AllocClientUpdate> {
        self.allocs.get(alloc_id).map(AllocRunner::report)
    }

    pub fn events_dropped(&self) -> u64 {
        self.out.events_dropped
    }

    // ---------------------------------------------------------------- outputs

    #[must_use]
    pub fn poll_driver_command(&mut self) -> Option<DriverCommand> {
        self.out.driver.pop_front()
    }

    #[must_use]
    pub fn poll_send(&mut self) -> Option<(ServerAddr, ClientRpc)> {
        self.out.sends.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.out.next_event()
    }

    /// The next instant at which `handle_timeout` must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        let requests = self.in_flight.values().map(|r| r.deadline);
        let tasks = self.allocs.values().filter_map(AllocRunner::deadline);
        self.links.due().into_iter().chain(requests).chain(tasks).min()
    }

    // ---------------------------------------------------------------- inputs

    /// Fires every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        let now = self.advance(now);
        let due: Vec<String> = self
            .allocs
            .iter()
            .filter(|(_, r)| r.deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for alloc_id in due {
            let mut ctx = ctx(&mut self.rng, &mut self.out, &self.config, now);
            if let Some(runner) = self.allocs.get_mut(&alloc_id) {
                runner.on_timeout(&mut ctx);
            }
            self.mark_dirty(now, &alloc_id);
        }
        self.pump(now);
    }

    /// A task driver's report.
    pub fn handle_driver_event(&mut self, now: Millis, event: DriverEvent) {
        let now = self.advance(now);
        let (task, attempt) = (event.task().clone(), event.attempt());
        let mut ctx = ctx(&mut self.rng, &mut self.out, &self.config, now);
        let accepted = match self.allocs.get_mut(&task.alloc_id) {
            Some(runner) => runner.on_driver_event(&mut ctx, event),
            None => false,
        };
        if accepted {
            self.mark_dirty(now, &task.alloc_id);
        } else {
            self.out.event(ClientEvent::DriverEventIgnored { task, attempt });
        }
        self.pump(now);
    }

    /// An operator's action on a task (`Some`) or on every running task (`None`) of an
    /// allocation on this node (see [`TaskAction`]). `Err` says why nothing was done, in
    /// Nomad's words.
    pub fn handle_task_action(
        &mut self,
        now: Millis,
        alloc_id: &str,
        task: Option<&str>,
        action: &TaskAction,
    ) -> Result<(), String> {
        let now = self.advance(now);
        let mut ctx = ctx(&mut self.rng, &mut self.out, &self.config, now);
        let result = match self.allocs.get_mut(alloc_id) {
            Some(runner) => match action {
                TaskAction::Restart => runner.restart(&mut ctx, task),
                TaskAction::Signal(signal) => runner.signal(&mut ctx, task, signal),
            },
            None => Err(format!("Unknown allocation \"{alloc_id}\"")),
        };
        self.mark_dirty(now, alloc_id);
        self.pump(now);
        result
    }

    fn advance(&mut self, now: Millis) -> Millis {
        self.now = self.now.max(now);
        self.now
    }

    /// Queues an allocation's status for the next batch.
    fn mark_dirty(&mut self, now: Millis, alloc_id: &str) {
        if self.allocs.contains_key(alloc_id) {
            self.links.mark_dirty(now, alloc_id, self.config.updates_batch_delay_ms);
        }
    }
}

/// The context runners act in, borrowed from the client's fields.
fn ctx<'a>(
    rng: &'a mut ChaCha8Rng,
    out: &'a mut Outputs,
    config: &ClientConfig,
    now: Millis,
) -> Ctx<'a> {
    Ctx {
        now,
        rng,
        out,
        task_events_max: config.task_events_max,
        kill_timeout_max_ms: config.kill_timeout_max_ms,
    }
}
