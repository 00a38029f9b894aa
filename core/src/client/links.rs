//! The client's three channels to the servers: node (register and heartbeat), allocation
//! watch, and status updates. Each holds at most one request in flight, so a client never
//! has more than three outstanding; replies are matched by request id, and one that
//! matches nothing in flight is dropped.

use super::alloc_runner::AllocRunner;
use super::output::ClientEvent;
use super::servers::backoff_ms;
use super::{Client, ctx};
use crate::model::{Allocation, NodeStatus};
use crate::rpc::{ClientRequest, ClientRpc, NODE_NOT_FOUND, ServerAddr, ServerReply, ServerRpc};
use crate::time::Millis;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    Node,
    Watch,
    Update,
}

/// A request in flight.
#[derive(Debug)]
pub(crate) struct Request {
    channel: Channel,
    server: ServerAddr,
    pub deadline: Millis,
    /// For updates: the allocations the request reports, requeued if it fails.
    alloc_ids: Vec<String>,
}

#[derive(Debug, Default)]
struct Link {
    in_flight: Option<u64>,
    /// When the channel sends next (if it has something to send).
    next_at: Option<Millis>,
    failures: u32,
    redirects: u32,
}

impl Link {
    fn is_due(&self, now: Millis) -> bool {
        self.in_flight.is_none() && self.next_at.is_some_and(|at| at <= now)
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.redirects = 0;
    }
}

#[derive(Debug)]
pub(crate) struct Links {
    node: Link,
    watch: Link,
    update: Link,
    pub registered: bool,
    pub connected: bool,
    pub watch_index: u64,
    /// When a heartbeat first reported a change to the node's allocations past
    /// `watch_index` (see `Client::note_allocs_index`).
    watch_behind_since: Option<Millis>,
    /// Allocations whose status changed since it was last sent, oldest first.
    pub dirty: VecDeque<String>,
    dirty_set: BTreeSet<String>,
}

impl Links {
    pub fn new(now: Millis) -> Links {
        Links {
            node: Link { next_at: Some(now), ..Link::default() },
            watch: Link::default(),
            update: Link::default(),
            registered: false,
            connected: false,
            watch_index: 0,
            watch_behind_since: None,
            dirty: VecDeque::new(),
            dirty_set: BTreeSet::new(),
        }
    }

    fn link_mut(&mut self, channel: Channel) -> &mut Link {
        match channel {
            Channel::Node => &mut self.node,
            Channel::Watch => &mut self.watch,
            Channel::Update => &mut self.update,
        }
    }

    /// The earliest instant a channel wants to send at.
    pub fn due(&self) -> Option<Millis> {
        let node = self.node.in_flight.is_none().then_some(self.node.next_at).flatten();
        let watch = (self.registered && self.watch.in_flight.is_none())
            .then_some(self.watch.next_at)
            .flatten();
        let update = (self.registered && self.update.in_flight.is_none() && !self.dirty.is_empty())
            .then_some(self.update.next_at)
            .flatten();
        [node, watch, update].into_iter().flatten().min()
    }

    pub fn mark_dirty(&mut self, now: Millis, alloc_id: &str, batch_delay_ms: u64) {
        if self.dirty_set.insert(alloc_id.to_owned()) {
            self.dirty.push_back(alloc_id.to_owned());
        }
        if self.update.next_at.is_none() {
            self.update.next_at = Some(now + Millis(batch_delay_ms));
        }
    }

    fn take_dirty(&mut self, count: usize) -> Vec<String> {
        let taken: Vec<String> = self.dirty.drain(..count.min(self.dirty.len())).collect();
        for alloc_id in &taken {
            self.dirty_set.remove(alloc_id);
        }
        taken
    }

    /// Puts the allocations of a failed update back at the head of the queue.
    fn requeue(&mut self, alloc_ids: Vec<String>) {
        for alloc_id in alloc_ids.into_iter().rev() {
            if self.dirty_set.insert(alloc_id.clone()) {
                self.dirty.push_front(alloc_id);
            }
        }
    }

    fn forget(&mut self, alloc_id: &str) {
        if self.dirty_set.remove(alloc_id) {
            self.dirty.retain(|id| id != alloc_id);
        }
    }
}

impl Client {
    /// A server's reply.
    pub fn handle_reply(&mut self, now: Millis, rpc: ServerRpc) {
        let now = self.advance(now);
        let Some(request) = self.in_flight.remove(&rpc.request_id) else {
            self.out.event(ClientEvent::ReplyIgnored { request_id: rpc.request_id });
            return;
        };
        self.links.link_mut(request.channel).in_flight = None;
        match (request.channel, rpc.reply) {
            (_, ServerReply::NotLeader { leader }) => self.redirect(now, request, leader),
            (channel, ServerReply::Error { message })
                if message.contains(NODE_NOT_FOUND)
                    && (channel != Channel::Node || self.links.registered) =>
            {
                self.node_unknown(now, request)
            }
            (
                Channel::Node,
                ServerReply::HeartbeatOk { heartbeat_ttl_ms, servers, allocs_index, .. },
            ) => {
                self.on_heartbeat_ok(now, &request.server, heartbeat_ttl_ms, &servers);
                self.note_allocs_index(now, allocs_index);
            }
            (Channel::Watch, ServerReply::NodeAllocs { index, allocs }) => {
                self.on_allocs(now, index, allocs)
            }
            (Channel::Update, ServerReply::AllocUpdateOk { .. }) => self.on_updates_ok(now),
            _ => self.fail(now, request),
        }
        self.pump(now);
    }

    /// The runtime could not deliver request `request_id` (no connection, refused).
    pub fn handle_send_failed(&mut self, now: Millis, request_id: u64) {
        let now = self.advance(now);
        if let Some(request) = self.in_flight.remove(&request_id) {
            self.links.link_mut(request.channel).in_flight = None;
            self.fail(now, request);
        }
        self.pump(now);
    }

    /// Expires requests past their deadline and sends what each channel has due.
    pub(super) fn pump(&mut self, now: Millis) {
        let expired: Vec<u64> =
            self.in_flight.iter().filter(|(_, r)| r.deadline <= now).map(|(id, _)| *id).collect();
        for request_id in expired {
            if let Some(request) = self.in_flight.remove(&request_id) {
                self.links.link_mut(request.channel).in_flight = None;
                self.fail(now, request);
            }
        }
        if self.links.node.is_due(now) {
            self.send_node(now);
        }
        if self.links.registered && self.links.watch.is_due(now) {
            self.send_watch(now);
        }
        if self.links.registered && self.links.update.is_due(now) && !self.links.dirty.is_empty() {
            self.send_updates(now);
        }
    }

    fn send(
        &mut self,
        now: Millis,
        channel: Channel,
        request: ClientRequest,
        timeout_ms: u64,
        alloc_ids: Vec<String>,
    ) {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let server = self.servers.current().clone();
        let deadline = now + Millis(timeout_ms);
        self.in_flight
            .insert(request_id, Request { channel, server: server.clone(), deadline, alloc_ids });
        let link = self.links.link_mut(channel);
        link.in_flight = Some(request_id);
        link.next_at = None;
        self.out.sends.push_back((server, ClientRpc { request_id, request }));
        assert!(self.in_flight.len() <= 3, "one request in flight per channel");
    }

    fn send_node(&mut self, now: Millis) {
        let node_id = self.config.node.id.clone();
        let request = if self.links.registered {
            ClientRequest::NodeHeartbeat { node_id, status: NodeStatus::Ready }
        } else {
            let mut node = self.config.node.clone();
            node.status = NodeStatus::Ready;
            ClientRequest::NodeRegister { node: Box::new(node) }
        };
        self.send(now, Channel::Node, request, self.config.rpc_timeout_ms, Vec::new());
    }

    fn send_watch(&mut self, now: Millis) {
        let wait_ms = self.config.alloc_watch_wait_ms;
        let request = ClientRequest::NodeAllocs {
            node_id: self.config.node.id.clone(),
            min_index: self.links.watch_index,
            wait_ms,
        };
        // The servers may add up to a sixteenth of the wait as jitter.
        let timeout_ms =
            wait_ms.saturating_add(wait_ms / 16).saturating_add(self.config.rpc_timeout_ms);
        self.send(now, Channel::Watch, request, timeout_ms, Vec::new());
    }

    fn send_updates(&mut self, now: Millis) {
        let alloc_ids = self.links.take_dirty(self.config.updates_batch_max);
        let updates: Vec<_> = alloc_ids
            .iter()
            .filter_map(|id| self.allocs.get_mut(id).map(AllocRunner::next_report))
            .collect();
        if updates.is_empty() {
            self.links.update.next_at = None;
            return;
        }
        assert!(updates.len() <= self.config.updates_batch_max);
        let request = ClientRequest::AllocUpdate { node_id: self.config.node.id.clone(), updates };
        self.send(now, Channel::Update, request, self.config.rpc_timeout_ms, alloc_ids);
    }

    /// Queues the allocations of an update that did not land again, except those the
    /// client dropped meanwhile (so every queued id still has a status to send).
    fn requeue_updates(&mut self, alloc_ids: Vec<String>) {
        let known = alloc_ids.into_iter().filter(|id| self.allocs.contains_key(id)).collect();
        self.links.requeue(known);
    }

    fn on_heartbeat_ok(&mut self, now: Millis, server: &str, ttl_ms: u64, servers: &[ServerAddr]) {
        let server = server.to_owned();
        let links = &mut self.links;
        links.node.succeeded();
        links.node.next_at = Some(now + Millis(ttl_ms.max(self.config.heartbeat_interval_min_ms)));
        if !links.registered {
            links.registered = true;
            links.connected = true;
            self.out.event(ClientEvent::Registered { server });
            self.resync(now);
        } else if !links.connected {
            links.connected = true;
            self.out.event(ClientEvent::Reconnected { server });
            self.resync(now);
        }
        if self.servers.replace(servers) {
            let servers = self.servers.all().to_vec();
            self.out.event(ClientEvent::ServersChanged { servers });
        }
    }

    /// Reloads every allocation from index 0 and reports every status again.
    fn resync(&mut self, now: Millis) {
        self.restart_watch(now);
        self.links.watch = Link { next_at: Some(now), ..Link::default() };
        self.links.watch_index = 0;
        let alloc_ids: Vec<String> = self.allocs.keys().cloned().collect();
        for alloc_id in alloc_ids {
            self.mark_dirty(now, &alloc_id);
        }
    }

    /// A heartbeat reported `allocs_index`, the servers' last change to the node's
    /// allocations. The watch brings such a change as soon as its server applies it, so a
    /// watch in flight that still has not brought one a whole RPC timeout after a
    /// heartbeat first reported it lost its answer (its server restarted while holding
    /// it, or the connection broke): the client asks again at once rather than wait out
    /// the rest of a five-minute wait.
    fn note_allocs_index(&mut self, now: Millis, allocs_index: u64) {
        let links = &mut self.links;
        if allocs_index <= links.watch_index || links.watch.in_flight.is_none() {
            links.watch_behind_since = None;
            return;
        }
        let since = *links.watch_behind_since.get_or_insert(now);
        if now - since < Millis(self.config.rpc_timeout_ms) {
            return;
        }
        let watch_index = links.watch_index;
        self.restart_watch(now);
        self.out.event(ClientEvent::WatchRenewed { watch_index, allocs_index });
    }

    /// Gives up the watch in flight (a late answer is ignored) and asks again at once.
    fn restart_watch(&mut self, now: Millis) {
        if let Some(request_id) = self.links.watch.in_flight.take() {
            self.in_flight.remove(&request_id);
        }
        self.links.watch.next_at = Some(now);
        self.links.watch_behind_since = None;
    }

    /// The servers do not know this node (they lost it, or it talks to a new cluster):
    /// register again at once.
    fn node_unknown(&mut self, now: Millis, request: Request) {
        self.links.registered = false;
        self.links.node.succeeded();
        self.links.node.next_at = Some(now);
        if request.channel == Channel::Update {
            self.requeue_updates(request.alloc_ids);
        }
    }

    fn fail(&mut self, now: Millis, request: Request) {
        self.servers.failed(&request.server);
        let link = self.links.link_mut(request.channel);
        link.failures += 1;
        link.redirects = 0;
        let failures = link.failures;
        let wait_ms = backoff_ms(
            failures,
            self.config.retry_base_ms,
            self.config.retry_max_ms,
            &mut self.rng,
        );
        self.links.link_mut(request.channel).next_at = Some(now + Millis(wait_ms));
        match request.channel {
            Channel::Node if self.links.connected => {
                self.links.connected = false;
                self.out.event(ClientEvent::Disconnected { server: request.server });
            }
            Channel::Update => self.requeue_updates(request.alloc_ids),
            Channel::Node | Channel::Watch => {}
        }
    }

    /// Follows a `NotLeader` hint at once, unless it has been followed too often in a
    /// row (servers that disagree on the leader) or names no one.
    fn redirect(&mut self, now: Millis, request: Request, leader: Option<ServerAddr>) {
        let redirects_max = self.config.redirects_max;
        let link = self.links.link_mut(request.channel);
        let follow = leader.filter(|_| link.redirects < redirects_max);
        match follow {
            Some(leader) if self.servers.prefer(&leader) => {
                let link = self.links.link_mut(request.channel);
                link.redirects += 1;
                link.next_at = Some(now);
                if request.channel == Channel::Update {
                    self.requeue_updates(request.alloc_ids);
                }
            }
            _ => self.fail(now, request),
        }
    }

    fn on_allocs(&mut self, now: Millis, index: u64, allocs: Vec<Allocation>) {
        self.links.watch.succeeded();
        if index > self.links.watch_index {
            self.apply_allocs(now, allocs);
            self.links.watch_index = index;
            self.links.watch_behind_since = None;
            self.links.watch.next_at = Some(now);
        } else {
            // Nothing newer (the wait expired, or a lagging server answered): ask again,
            // paced so a server that answers at once cannot spin the client.
            self.links.watch.next_at = Some(now + Millis(self.config.retry_base_ms));
        }
    }

    /// Starts new allocations, updates known ones, stops those the servers stopped or
    /// forgot, and drops the forgotten ones whose tasks are all dead.
    fn apply_allocs(&mut self, now: Millis, allocs: Vec<Allocation>) {
        let node_id = self.config.node.id.clone();
        let mut listed = BTreeSet::new();
        for alloc in allocs.into_iter().filter(|a| a.node_id == node_id) {
            listed.insert(alloc.id.clone());
            self.apply_alloc(now, alloc);
        }
        let forgotten: Vec<String> =
            self.allocs.keys().filter(|id| !listed.contains(*id)).cloned().collect();
        for alloc_id in forgotten {
            let mut ctx = ctx(&mut self.rng, &mut self.out, &self.config, now);
            let Some(runner) = self.allocs.get_mut(&alloc_id) else { continue };
            if runner.is_done() {
                self.allocs.remove(&alloc_id);
                self.links.forget(&alloc_id);
                self.out.event(ClientEvent::AllocRemoved { alloc_id });
            } else {
                runner.stop(&mut ctx);
                self.mark_dirty(now, &alloc_id);
            }
        }
    }

    fn apply_alloc(&mut self, now: Millis, alloc: Allocation) {
        let alloc_id = alloc.id.clone();
        let mut ctx = ctx(&mut self.rng, &mut self.out, &self.config, now);
        if let Some(runner) = self.allocs.get_mut(&alloc_id) {
            if alloc.alloc_modify_index > runner.alloc.alloc_modify_index {
                runner.update(&mut ctx, Arc::new(alloc));
                self.mark_dirty(now, &alloc_id);
            }
            return;
        }
        if alloc.is_terminal() {
            return;
        }
        if self.allocs.len() >= self.config.allocs_max {
            let reason = format!("the client runs {} allocations already", self.allocs.len());
            self.out.event(ClientEvent::AllocRefused { alloc_id, reason });
            return;
        }
        ctx.out.event(ClientEvent::AllocAdded { alloc_id: alloc_id.clone() });
        let runner = AllocRunner::new(&mut ctx, Arc::new(alloc), self.config.tasks_per_alloc_max);
        self.allocs.insert(alloc_id.clone(), runner);
        self.mark_dirty(now, &alloc_id);
    }

    fn on_updates_ok(&mut self, now: Millis) {
        let links = &mut self.links;
        links.update.succeeded();
        if !links.dirty.is_empty() && links.update.next_at.is_none() {
            links.update.next_at = Some(now + Millis(self.config.updates_batch_delay_ms));
        }
    }
}
