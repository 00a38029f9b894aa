//! A server's view of its region's servers, kept from its gossip pool (which holds every
//! region's servers): what the agent and the simulator both hand a
//! [`ServerHost`](super::ServerHost) with `handle_members`.
//!
//! [`GossipMembership`] owns the [`Gossip`] machine and keeps its shape: `handle_*(now, …)`
//! in; then, drained in this order, [`GossipMembership::poll_transmit`] (datagrams to send
//! to a gossip address), [`GossipMembership::poll_event`] (members that came up or went
//! down), [`GossipMembership::poll_view`] (the region's servers, when that changed since
//! the host last heard), and [`GossipMembership::poll_timeout`]. It does no IO: the caller
//! carries the datagrams (over UDP, or over the simulated network) and calls
//! `handle_timeout` at the deadline.
//!
//! Gossip forgets a member it declared down, and cannot tell one that failed from one that
//! left; autopilot must still see a dead server to remove it from Raft. So a server of
//! the region declared down is kept here as failed until gossip sees it alive again.

use drover_core::gossip::{EVENTS_PENDING_MAX, Gossip, GossipError, Member, MemberEvent};
use drover_core::server::{MemberStatus, ServerMember};
use drover_core::time::Millis;
use std::collections::{BTreeMap, VecDeque};

/// One server's gossip and the region's servers as it tells them to its host.
pub struct GossipMembership {
    gossip: Gossip,
    /// Servers of the region gossip declared down (and has not seen back), by Raft id.
    failed: BTreeMap<u64, Member>,
    /// Gossip's events, taken after every input so `failed` is never behind; bounded as
    /// gossip's own queue is (the oldest dropped).
    events: VecDeque<MemberEvent>,
    /// The view last handed out by `poll_view`; `None` once a new host started, which
    /// has been told nothing.
    told: Option<Vec<ServerMember>>,
}

impl GossipMembership {
    pub fn new(gossip: Gossip) -> GossipMembership {
        GossipMembership { gossip, failed: BTreeMap::new(), events: VecDeque::new(), told: None }
    }

    pub fn gossip(&self) -> &Gossip {
        &self.gossip
    }

    /// Announces this server to a known gossip address (a `retry_join` target).
    pub fn handle_join(&mut self, now: Millis, gossip_addr: &str) -> Result<(), GossipError> {
        let joined = self.gossip.handle_join(now, gossip_addr);
        self.take_events();
        joined
    }

    /// A datagram from a peer; malformed bytes change nothing.
    pub fn handle_data(&mut self, now: Millis, datagram: &[u8]) -> Result<(), GossipError> {
        let handled = self.gossip.handle_data(now, datagram);
        self.take_events();
        handled
    }

    /// Runs gossip's timers due at or before `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.gossip.handle_timeout(now);
        self.take_events();
    }

    /// Tells the pool this server leaves on purpose (a graceful shutdown).
    pub fn handle_leave(&mut self, now: Millis) -> Result<(), GossipError> {
        let left = self.gossip.handle_leave(now);
        self.take_events();
        left
    }

    /// A new host started: it has been told nothing yet, so the next `poll_view` hands
    /// it the whole view.
    pub fn handle_host_start(&mut self) {
        self.told = None;
    }

    /// The host's Raft has committed up to `commit_index` in group `cluster_id`: once it
    /// committed anything, the pool is told this server holds Raft state of that group
    /// (a server that sees one never bootstraps; a leader never takes in another group's).
    pub fn handle_raft_state(&mut self, now: Millis, commit_index: u64, cluster_id: u64) {
        let own = self.gossip.identity();
        let announced = own.has_raft_state && own.cluster_id == cluster_id;
        if announced || commit_index == 0 {
            return;
        }
        let identity = Member { has_raft_state: true, cluster_id, ..own.clone() };
        // Refused only for an unchanged identity, which this is not.
        let _refused = self.gossip.handle_identity_change(now, identity);
        self.take_events();
    }

    /// The next datagram to send, with the gossip address it goes to.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(String, Vec<u8>)> {
        self.gossip.poll_transmit()
    }

    /// The next change gossip reported, of any region, already counted into the view.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// The region's servers, when they differ from what was last handed out (or a new
    /// host started since).
    #[must_use]
    pub fn poll_view(&mut self) -> Option<Vec<ServerMember>> {
        let view = self.view();
        if self.told.as_ref() == Some(&view) {
            return None;
        }
        self.told = Some(view.clone());
        Some(view)
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.gossip.poll_timeout()
    }

    /// The region's servers as gossip sees them: each alive one (this one included), and
    /// each declared down and not seen alive since as failed. Gossip cannot tell a
    /// server that left from one that failed, so neither is reported as left.
    pub fn view(&self) -> Vec<ServerMember> {
        let own = self.gossip.identity();
        let region = &own.region;
        let mut view: BTreeMap<u64, ServerMember> = BTreeMap::new();
        let alive = self.gossip.members().into_iter().chain([own]);
        for (member, status) in alive
            .map(|m| (m, MemberStatus::Alive))
            .chain(self.failed.values().map(|m| (m, MemberStatus::Failed)))
        {
            if &member.region != region || view.contains_key(&member.server_id) {
                continue;
            }
            let told = ServerMember {
                id: member.server_id,
                name: member.name.clone(),
                addr: member.rpc_addr.clone(),
                status,
                cluster_id: member.cluster_id,
            };
            view.insert(member.server_id, told);
        }
        view.into_values().collect()
    }

    fn take_events(&mut self) {
        while let Some(event) = self.gossip.poll_event() {
            let region = &self.gossip.identity().region;
            match &event {
                MemberEvent::Up(member) if &member.region == region => {
                    self.failed.remove(&member.server_id);
                }
                MemberEvent::Down(member) if &member.region == region => {
                    self.failed.insert(member.server_id, member.clone());
                }
                MemberEvent::Up(_) | MemberEvent::Down(_) => {}
            }
            if self.events.len() == EVENTS_PENDING_MAX {
                self.events.pop_front();
            }
            self.events.push_back(event);
        }
    }
}
