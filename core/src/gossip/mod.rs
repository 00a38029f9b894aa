//! Server membership by SWIM gossip, as a sans-IO machine over foca.
//!
//! One [`Gossip`] is one pool. Every server runs two, which [`GossipMembership`] pairs: a
//! LAN pool of its own region's servers, its Raft peers, and a WAN pool of every region's
//! servers, which tells it which regions exist and whom to forward a request naming
//! another region to. A pool runs foca's LAN or WAN timings ([`Pool`]).
//! Nothing else travels by gossip: desired state is Raft's, and regions share none of it.
//!
//! # Shape
//!
//! Inputs: [`Gossip::handle_join`] (announce to a known address), [`Gossip::handle_data`]
//! (a datagram from a peer), [`Gossip::handle_timeout`] (every deadline up to `now`) and
//! [`Gossip::handle_leave`]. Outputs, drained in this order after every input:
//! [`Gossip::poll_transmit`] (datagrams to send), then [`Gossip::poll_event`] (members that
//! came up or went down), then [`Gossip::poll_timeout`] for the next deadline. Foca's own
//! timers are kept here as absolute deadlines, so no timer is ever lost or run early.
//!
//! foca draws its probe targets from a `ChaCha8Rng` seeded by [`GossipConfig::rng_seed`];
//! together with the inputs, the seed fixes every datagram this machine sends.

mod membership;

pub use membership::{GossipMembership, POOL_TAG_LAN, POOL_TAG_WAN};

use crate::rpc::ServerAddr;
use crate::time::Millis;
use foca::{Foca, NoCustomBroadcast, Notification, PostcardCodec, Runtime, Timer};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// Datagrams waiting to be sent; gossip tolerates loss, so past this the newest is dropped.
pub const TRANSMITS_PENDING_MAX: usize = 1024;
/// Membership events waiting to be drained; past this the oldest is dropped and counted.
pub const EVENTS_PENDING_MAX: usize = 4096;
/// While no live member knows this server's identity, it announces itself to its join
/// targets and to every member it knows, alive or down, this often (Nomad's `retry_join`
/// interval; serf likewise keeps trying to reach its failed members). A lost first
/// announce must not isolate it for good, nor a partition that cut it off from every
/// peer: each side then holds the other down, foca stops probing on the side that knows
/// no live member, and the other side ignores the identity it declared down. Nor a lost
/// renewal: foca stops probing when it changes identity (renewed after the pool declared
/// it down, or a new `has_raft_state`) until a peer talks to the new identity, and a peer
/// hears of it only from the datagrams sent at the change; if the network drops them,
/// the peers keep addressing the old identity, which foca ignores. Only an announce,
/// accepted whatever identity it was addressed to, brings either back.
pub const JOIN_RETRY_INTERVAL_MS: u64 = 30_000;
/// A datagram larger than this is refused before foca decodes it.
pub const DATAGRAM_LEN_MAX_BYTES: usize = 64 * 1024;

/// One server as gossip knows it. Equality is identity: a restarted server rejoins with a
/// higher `generation`, which wins over the identity it had before.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub region: String,
    pub datacenter: String,
    /// The server's Raft id, kept in its data directory: the same server across restarts,
    /// and the same number on every peer that bootstraps a region with it.
    pub server_id: u64,
    /// Where this server answers RPC (Raft, forwarding, clients).
    pub rpc_addr: ServerAddr,
    /// Where this server listens for gossip; unique in a pool.
    pub gossip_addr: String,
    pub generation: u32,
    /// The server holds Raft state (it bootstrapped the region or was added to it): a
    /// server that sees one never bootstraps, it waits to be added (Nomad's rule).
    pub has_raft_state: bool,
    /// The Raft group it holds state of ([`crate::raft::Membership`]'s `cluster_id`; 0 until
    /// it knows one): a leader's autopilot never takes in a server of another group.
    pub cluster_id: u64,
}

impl foca::Identity for Member {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Member { generation: self.generation.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> String {
        self.gossip_addr.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Which pool a machine runs: its timings follow foca's LAN or WAN profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Lan,
    Wan,
}

#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub pool: Pool,
    /// Expected pool size; it sets how often an update is retransmitted and how long a
    /// suspect has to refute before it is declared down.
    pub cluster_size_hint: u32,
    pub rng_seed: u64,
}

/// A change in the pool, as this server learnt it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    Up(Member),
    Down(Member),
}

/// Why an input was refused. The machine stays usable after any of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipError {
    DatagramTooLarge {
        len_bytes: usize,
    },
    /// foca refused the input (malformed bytes, a message for another identity, ...).
    Protocol(String),
}

impl fmt::Display for GossipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GossipError::DatagramTooLarge { len_bytes } => write!(
                f,
                "gossip datagram of {len_bytes} bytes exceeds {DATAGRAM_LEN_MAX_BYTES} bytes"
            ),
            GossipError::Protocol(message) => write!(f, "gossip: {message}"),
        }
    }
}

impl std::error::Error for GossipError {}

/// What foca asked for during one input, kept until drained.
#[derive(Default)]
struct Effects {
    transmits: VecDeque<(String, Vec<u8>)>,
    transmits_dropped: u64,
    events: VecDeque<MemberEvent>,
    events_dropped: u64,
    /// Foca's timers by (deadline, arrival) so equal deadlines fire in submission order.
    timers: BTreeMap<(Millis, u64), Timer<Member>>,
    timers_submitted: u64,
    /// foca renewed this server's identity after learning the pool holds it down.
    rejoined: bool,
    /// foca's latest word on whether a live member knows this server's identity.
    connected: Option<bool>,
}

/// foca's [`Runtime`] for one input: it records instead of acting, with `now` fixed.
struct Recorder<'a> {
    now: Millis,
    effects: &'a mut Effects,
}

impl Runtime<Member> for Recorder<'_> {
    fn notify(&mut self, notification: Notification<'_, Member>) {
        let event = match notification {
            Notification::MemberUp(member) => MemberEvent::Up(member.clone()),
            Notification::MemberDown(member) => MemberEvent::Down(member.clone()),
            Notification::Rejoin(_) => {
                self.effects.rejoined = true;
                return;
            }
            Notification::Active => {
                self.effects.connected = Some(true);
                return;
            }
            Notification::Idle | Notification::Defunct => {
                self.effects.connected = Some(false);
                return;
            }
            _ => return,
        };
        let effects = &mut *self.effects;
        if effects.events.len() == EVENTS_PENDING_MAX {
            effects.events.pop_front();
            effects.events_dropped += 1;
        }
        effects.events.push_back(event);
    }

    fn send_to(&mut self, to: Member, data: &[u8]) {
        let effects = &mut *self.effects;
        if effects.transmits.len() == TRANSMITS_PENDING_MAX {
            effects.transmits_dropped += 1;
            return;
        }
        effects.transmits.push_back((to.gossip_addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Member>, after: Duration) {
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let effects = &mut *self.effects;
        effects.timers_submitted += 1;
        effects.timers.insert((self.now + Millis(after_ms), effects.timers_submitted), event);
    }
}

/// One pool's membership, seen from one server. See the module docs for the shape.
pub struct Gossip {
    foca: Foca<Member, PostcardCodec, ChaCha8Rng, NoCustomBroadcast>,
    effects: Effects,
    join_targets: BTreeSet<String>,
    join_retry_at: Option<Millis>,
    /// A live member knows this server's current identity (foca probes only then).
    connected: bool,
    /// The server left the pool on purpose: it never announces itself again.
    left: bool,
}

impl Gossip {
    pub fn new(identity: Member, config: &GossipConfig) -> Gossip {
        let size = NonZeroU32::new(config.cluster_size_hint.max(1)).unwrap_or(NonZeroU32::MIN);
        let foca_config = match config.pool {
            Pool::Lan => foca::Config::new_lan(size),
            Pool::Wan => foca::Config::new_wan(size),
        };
        let rng = ChaCha8Rng::seed_from_u64(config.rng_seed);
        Gossip {
            foca: Foca::new(identity, foca_config, rng, PostcardCodec),
            effects: Effects::default(),
            join_targets: BTreeSet::new(),
            join_retry_at: None,
            connected: false,
            left: false,
        }
    }

    pub fn identity(&self) -> &Member {
        self.foca.identity()
    }

    /// Announces this server to a known gossip address (a `-join`/`retry_join` target),
    /// and again every [`JOIN_RETRY_INTERVAL_MS`] for as long as no live member knows it.
    pub fn handle_join(&mut self, now: Millis, gossip_addr: &str) -> Result<(), GossipError> {
        self.join_targets.insert(gossip_addr.to_owned());
        self.join_retry_at = Some(now + Millis(JOIN_RETRY_INTERVAL_MS));
        let announced = self.announce(now, gossip_addr);
        self.after_input(now);
        announced
    }

    fn announce(&mut self, now: Millis, gossip_addr: &str) -> Result<(), GossipError> {
        let seed = Member { gossip_addr: gossip_addr.to_owned(), ..Member::default() };
        let recorder = Recorder { now, effects: &mut self.effects };
        self.foca.announce(seed, recorder).map_err(protocol)
    }

    /// Follows foca's connection state and keeps the join retry armed. A renewed
    /// identity is known to no one yet, so the retry is brought forward to `now`.
    fn after_input(&mut self, now: Millis) {
        if let Some(connected) = self.effects.connected.take() {
            self.connected = connected;
        }
        if self.left {
            self.join_retry_at = None;
        } else if std::mem::take(&mut self.effects.rejoined) {
            self.identity_changed(now);
        } else if self.join_retry_at.is_none() {
            self.join_retry_at = Some(now + Millis(JOIN_RETRY_INTERVAL_MS));
        }
    }

    /// foca changed this server's identity: it no longer probes, and no peer knows the
    /// new identity until a datagram sent under it arrives, so announce at once.
    fn identity_changed(&mut self, now: Millis) {
        self.connected = false;
        self.join_retry_at = Some(now);
    }

    fn retry_join(&mut self, now: Millis) {
        if self.join_retry_at.is_none_or(|at| at > now) {
            return;
        }
        self.join_retry_at = Some(now + Millis(JOIN_RETRY_INTERVAL_MS));
        if self.connected {
            return;
        }
        let own = self.identity().gossip_addr.clone();
        let known = self.foca.iter_membership_state().map(|member| member.id().gossip_addr.clone());
        let targets: BTreeSet<String> =
            self.join_targets.iter().cloned().chain(known).filter(|addr| *addr != own).collect();
        for target in targets {
            // foca refuses only our own address, which is left out.
            let _refused = self.announce(now, &target);
        }
    }

    /// A datagram from a peer. Malformed or oversized bytes are refused without effect.
    pub fn handle_data(&mut self, now: Millis, datagram: &[u8]) -> Result<(), GossipError> {
        if datagram.len() > DATAGRAM_LEN_MAX_BYTES {
            return Err(GossipError::DatagramTooLarge { len_bytes: datagram.len() });
        }
        let recorder = Recorder { now, effects: &mut self.effects };
        let handled = self.foca.handle_data(datagram, recorder).map_err(protocol);
        self.after_input(now);
        handled
    }

    /// Runs every timer due at or before `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(entry) = self.effects.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            let recorder = Recorder { now, effects: &mut self.effects };
            // A timer foca no longer wants (an old probe, a member already gone) is
            // refused by foca with an error that changes nothing, so it is dropped.
            let _stale = self.foca.handle_timer(timer, recorder);
        }
        self.after_input(now);
        self.retry_join(now);
    }

    /// Announces a changed identity (its `has_raft_state`, say) under the next
    /// generation, so it wins over the one the pool knows. Ignored once the server left:
    /// foca would announce the new identity, and the server would be back.
    pub fn handle_identity_change(
        &mut self,
        now: Millis,
        identity: Member,
    ) -> Result<(), GossipError> {
        if self.left {
            return Ok(());
        }
        let generation = self.identity().generation.wrapping_add(1);
        let recorder = Recorder { now, effects: &mut self.effects };
        let changed = self.foca.change_identity(Member { generation, ..identity }, recorder);
        changed.map_err(protocol)?;
        self.after_input(now);
        self.identity_changed(now);
        Ok(())
    }

    /// Tells the pool this server is leaving on purpose (a graceful shutdown).
    pub fn handle_leave(&mut self, now: Millis) -> Result<(), GossipError> {
        self.left = true;
        let recorder = Recorder { now, effects: &mut self.effects };
        let left = self.foca.leave_cluster(recorder).map_err(protocol);
        self.after_input(now);
        left
    }

    /// The next datagram to send, with the gossip address it goes to.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(String, Vec<u8>)> {
        self.effects.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.effects.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let timer = self.effects.timers.keys().next().map(|(deadline, _)| *deadline);
        timer.into_iter().chain(self.join_retry_at).min()
    }

    /// The members this server believes alive, itself excluded, ordered by name.
    pub fn members(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.foca.iter_members().map(|m| m.id()).collect();
        members.sort();
        members
    }

    /// Every region this server knows of, its own included.
    pub fn regions(&self) -> BTreeSet<&str> {
        let own = self.identity().region.as_str();
        self.members().into_iter().map(|m| m.region.as_str()).chain([own]).collect()
    }

    /// The RPC addresses of the live servers of `region` (this one included when it is
    /// there), sorted, so a caller can pick one to forward to.
    pub fn servers_in(&self, region: &str) -> Vec<ServerAddr> {
        let own = self.identity();
        let mut addrs: Vec<ServerAddr> = self
            .members()
            .into_iter()
            .chain([own])
            .filter(|m| m.region == region)
            .map(|m| m.rpc_addr.clone())
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Datagrams and events dropped because their queue was full, for metrics.
    pub fn dropped(&self) -> (u64, u64) {
        (self.effects.transmits_dropped, self.effects.events_dropped)
    }
}

fn protocol(error: foca::Error) -> GossipError {
    GossipError::Protocol(error.to_string())
}
