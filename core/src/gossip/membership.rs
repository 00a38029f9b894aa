//! A server's gossip, in two pools as Consul runs them: a LAN pool of its own region's
//! servers (its Raft peers, failures noticed in seconds) and a WAN pool of every region's
//! servers (which regions exist and whom to forward to, with timings that tolerate a
//! wide-area network). What the agent and the simulator both hand the runtime's
//! `ServerHost` with `handle_members`.
//!
//! [`GossipMembership`] owns both [`Gossip`] machines and keeps their shape:
//! `handle_*(now, …)` in; then, drained in this order, [`GossipMembership::poll_transmit`]
//! (datagrams to send to a gossip address), [`GossipMembership::poll_event`] (members
//! that came up or went down), [`GossipMembership::poll_view`] (the region's servers, when
//! that changed since the host last heard), and [`GossipMembership::poll_timeout`]. It
//! does no IO: the caller carries the datagrams (over UDP, or over the simulated network)
//! and calls `handle_timeout` at the deadline.
//!
//! Both pools share the serf port: each datagram starts with the byte of its pool
//! ([`POOL_TAG_LAN`], [`POOL_TAG_WAN`]), inside the encryption when there is a key. Only
//! the WAN pool is joined from outside (the `retry_join` targets, which may be of any
//! region); the LAN pool is joined to each server of the region the WAN pool reports up,
//! so it never holds another region's server.
//!
//! Gossip forgets a member it declared down, and cannot tell one that failed from one that
//! left; autopilot must still see a dead server to remove it from Raft. So a server of
//! the region the LAN pool declared down is kept here as failed until it is seen alive
//! again.

use super::{EVENTS_PENDING_MAX, Gossip, GossipConfig, GossipError, Member, MemberEvent, Pool};
use crate::rpc::ServerAddr;
use crate::server::{MemberStatus, ServerMember};
use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The first byte of a datagram of the region's pool.
pub const POOL_TAG_LAN: u8 = b'L';
/// The first byte of a datagram of the pool of every region's servers.
pub const POOL_TAG_WAN: u8 = b'W';

/// One server's gossip pools and the region's servers as it tells them to its host.
pub struct GossipMembership {
    /// The region's servers: the Raft peers, the bootstrap count, autopilot's view.
    lan: Gossip,
    /// Every region's servers: the regions, and where a request naming one goes.
    wan: Gossip,
    /// Servers of the region the LAN pool declared down (and has not seen back), by Raft
    /// id.
    failed: BTreeMap<u64, Member>,
    /// The pools' events (the region's from the LAN pool, the others' from the WAN pool),
    /// taken after every input so `failed` is never behind; bounded as gossip's own queue
    /// is (the oldest dropped).
    events: VecDeque<MemberEvent>,
    /// The view last handed out by `poll_view`; `None` once a new host started, which
    /// has been told nothing.
    told: Option<Vec<ServerMember>>,
}

impl GossipMembership {
    /// Both pools under `identity`; `region_servers` is the expected size of the region
    /// (`bootstrap_expect`) and `servers` of every region together, as far as known.
    pub fn new(identity: Member, region_servers: u32, servers: u32, rng_seed: u64) -> Self {
        let lan = GossipConfig { pool: Pool::Lan, cluster_size_hint: region_servers, rng_seed };
        let wan = GossipConfig {
            pool: Pool::Wan,
            cluster_size_hint: servers.max(region_servers),
            // Each pool draws its own probe targets.
            rng_seed: rng_seed.rotate_left(32) ^ 0x7a4e,
        };
        GossipMembership {
            lan: Gossip::new(identity.clone(), &lan),
            wan: Gossip::new(identity, &wan),
            failed: BTreeMap::new(),
            events: VecDeque::new(),
            told: None,
        }
    }

    /// This server as its region's pool knows it.
    pub fn identity(&self) -> &Member {
        self.lan.identity()
    }

    /// Announces this server to a known gossip address (a `retry_join` target) in the
    /// pool of every region.
    pub fn handle_join(&mut self, now: Millis, gossip_addr: &str) -> Result<(), GossipError> {
        let joined = self.wan.handle_join(now, gossip_addr);
        self.after_input(now);
        joined
    }

    /// A datagram from a peer; malformed bytes, or a pool byte that names no pool, change
    /// nothing.
    pub fn handle_data(&mut self, now: Millis, datagram: &[u8]) -> Result<(), GossipError> {
        let handled = match datagram.split_first() {
            Some((&POOL_TAG_LAN, data)) => self.lan.handle_data(now, data),
            Some((&POOL_TAG_WAN, data)) => self.wan.handle_data(now, data),
            Some((tag, _)) => Err(GossipError::Protocol(format!("no gossip pool has tag {tag}"))),
            None => Err(GossipError::Protocol("an empty datagram".to_owned())),
        };
        self.after_input(now);
        handled
    }

    /// Runs both pools' timers due at or before `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.lan.handle_timeout(now);
        self.wan.handle_timeout(now);
        self.after_input(now);
    }

    /// Tells both pools this server leaves on purpose (a graceful shutdown).
    pub fn handle_leave(&mut self, now: Millis) -> Result<(), GossipError> {
        let lan = self.lan.handle_leave(now);
        let wan = self.wan.handle_leave(now);
        self.after_input(now);
        lan.and(wan)
    }

    /// A new host started: it has been told nothing yet, so the next `poll_view` hands
    /// it the whole view.
    pub fn handle_host_start(&mut self) {
        self.told = None;
    }

    /// The host's Raft has committed up to `commit_index` in group `cluster_id`: once it
    /// committed anything, both pools are told this server holds Raft state of that group
    /// (a server that sees one never bootstraps; a leader never takes in another group's).
    pub fn handle_raft_state(&mut self, now: Millis, commit_index: u64, cluster_id: u64) {
        if commit_index == 0 {
            return;
        }
        for pool in [&mut self.lan, &mut self.wan] {
            let own = pool.identity();
            if own.has_raft_state && own.cluster_id == cluster_id {
                continue;
            }
            let identity = Member { has_raft_state: true, cluster_id, ..own.clone() };
            // Refused only for an unchanged identity, which this is not.
            let _refused = pool.handle_identity_change(now, identity);
        }
        self.after_input(now);
    }

    /// The next datagram to send, pool byte first, with the gossip address it goes to.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(String, Vec<u8>)> {
        let (tag, (to, data)) = match self.lan.poll_transmit() {
            Some(transmit) => (POOL_TAG_LAN, transmit),
            None => (POOL_TAG_WAN, self.wan.poll_transmit()?),
        };
        let mut datagram = Vec::with_capacity(data.len() + 1);
        datagram.push(tag);
        datagram.extend_from_slice(&data);
        Some((to, datagram))
    }

    /// The next change gossip reported, already counted into the view: of a server of
    /// the region as its pool saw it, of any other as the pool of every region did.
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
        self.lan.poll_timeout().into_iter().chain(self.wan.poll_timeout()).min()
    }

    /// The region's servers as its pool sees them: each alive one (this one included), and
    /// each declared down and not seen alive since as failed. Gossip cannot tell a
    /// server that left from one that failed, so neither is reported as left.
    pub fn view(&self) -> Vec<ServerMember> {
        let mut view: BTreeMap<u64, ServerMember> = BTreeMap::new();
        let alive = self.region_members().into_iter().chain([self.identity()]);
        for (member, status) in alive
            .map(|m| (m, MemberStatus::Alive))
            .chain(self.failed.values().map(|m| (m, MemberStatus::Failed)))
        {
            if view.contains_key(&member.server_id) {
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

    /// The servers of this one's region its pool believes alive, itself excluded, ordered.
    pub fn region_members(&self) -> Vec<&Member> {
        let region = &self.identity().region;
        self.lan.members().into_iter().filter(|m| &m.region == region).collect()
    }

    /// The servers of every region believed alive, itself excluded, ordered: its own
    /// region's as their pool sees them, the others' as the pool of every region does.
    pub fn members(&self) -> Vec<&Member> {
        let region = &self.identity().region;
        let others = self.wan.members().into_iter().filter(|m| &m.region != region);
        let mut members: Vec<&Member> = self.region_members().into_iter().chain(others).collect();
        members.sort();
        members
    }

    /// Every region this server knows of, its own included.
    pub fn regions(&self) -> BTreeSet<&str> {
        self.wan.regions()
    }

    /// The RPC addresses of the live servers of `region` (this one included when it is
    /// there), sorted, so a caller can pick one to forward to.
    pub fn servers_in(&self, region: &str) -> Vec<ServerAddr> {
        let pool = if region == self.identity().region { &self.lan } else { &self.wan };
        pool.servers_in(region)
    }

    /// Datagrams and events the pools dropped because a queue was full, for metrics.
    pub fn dropped(&self) -> (u64, u64) {
        let ((lan_transmits, lan_events), (wan_transmits, wan_events)) =
            (self.lan.dropped(), self.wan.dropped());
        (lan_transmits + wan_transmits, lan_events + wan_events)
    }

    /// Takes both pools' events: the region's pool's into the view, and the others'
    /// pool's for other regions. A server of the region the pool of every region reports
    /// up is joined in the region's pool.
    fn after_input(&mut self, now: Millis) {
        let region = self.identity().region.clone();
        let own_addr = self.identity().gossip_addr.clone();
        while let Some(event) = self.wan.poll_event() {
            match &event {
                MemberEvent::Up(member) | MemberEvent::Down(member) if member.region != region => {
                    self.push_event(event);
                }
                MemberEvent::Up(member) if member.gossip_addr != own_addr => {
                    // foca refuses only this server's own address, which is left out.
                    let _refused = self.lan.handle_join(now, &member.gossip_addr);
                }
                MemberEvent::Up(_) | MemberEvent::Down(_) => {}
            }
        }
        while let Some(event) = self.lan.poll_event() {
            match &event {
                MemberEvent::Up(member) if member.region == region => {
                    self.failed.remove(&member.server_id);
                }
                MemberEvent::Down(member) if member.region == region => {
                    self.failed.insert(member.server_id, member.clone());
                }
                // Only the region's servers are ever joined to its pool.
                MemberEvent::Up(_) | MemberEvent::Down(_) => continue,
            }
            self.push_event(event);
        }
    }

    fn push_event(&mut self, event: MemberEvent) {
        if self.events.len() == EVENTS_PENDING_MAX {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}
