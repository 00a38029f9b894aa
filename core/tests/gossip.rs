//! Gossip membership in a deterministic in-memory network: pools converge, a crash is
//! noticed by every survivor, a restarted server rejoins, a partition heals, and no byte
//! string makes the machine panic. A server's two pools together: the region's pool
//! holds only the region's servers and notices a crash in seconds, the pool of every
//! region tells the regions and whom to forward to. Timelines are insta snapshots.

use drover_core::gossip::{
    DATAGRAM_LEN_MAX_BYTES, Gossip, GossipConfig, GossipError, GossipMembership,
    JOIN_RETRY_INTERVAL_MS, Member, MemberEvent, POOL_TAG_LAN, POOL_TAG_WAN, Pool,
};
use drover_core::time::Millis;
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// What the network runs on each server: one pool, or a server's two.
trait Node {
    fn data(&mut self, now: Millis, bytes: &[u8]) -> Result<(), GossipError>;
    fn timeout(&mut self, now: Millis);
    fn deadline(&self) -> Option<Millis>;
    fn transmit(&mut self) -> Option<(String, Vec<u8>)>;
    fn event(&mut self) -> Option<MemberEvent>;
    /// One line on what the server believes.
    fn describe(&self) -> String;
    /// Panics on a datagram the server must never send.
    fn check_transmit(&self, _from: &str, _to: &str, _bytes: &[u8]) {}
}

/// A pool and a server's two pools take the same inputs and give the same outputs.
macro_rules! node_io {
    () => {
        fn data(&mut self, now: Millis, bytes: &[u8]) -> Result<(), GossipError> {
            self.handle_data(now, bytes)
        }
        fn timeout(&mut self, now: Millis) {
            self.handle_timeout(now);
        }
        fn deadline(&self) -> Option<Millis> {
            self.poll_timeout()
        }
        fn transmit(&mut self) -> Option<(String, Vec<u8>)> {
            self.poll_transmit()
        }
        fn event(&mut self) -> Option<MemberEvent> {
            self.poll_event()
        }
    };
}

impl Node for Gossip {
    node_io!();
    fn describe(&self) -> String {
        let members: Vec<String> =
            self.members().iter().map(|m| format!("{}@{}", m.name, m.generation)).collect();
        let regions: Vec<&str> = self.regions().into_iter().collect();
        format!("regions {regions:?} members {members:?}")
    }
}

impl Node for GossipMembership {
    node_io!();
    /// The region's servers, the regions, and whom a request for the other region goes to.
    fn describe(&self) -> String {
        let view: Vec<String> =
            self.view().iter().map(|m| format!("{} {:?}", m.name, m.status)).collect();
        let regions: Vec<&str> = self.regions().into_iter().collect();
        let own = &self.identity().region;
        let other = if own == "r1" { "r2" } else { "r1" };
        let forward = self.servers_in(other);
        format!("view {view:?} regions {regions:?} {other} {forward:?}")
    }
    /// The region's pool never talks to another region.
    fn check_transmit(&self, from: &str, to: &str, bytes: &[u8]) {
        let region_of = |addr: &str| addr.split('-').next().unwrap_or_default().to_owned();
        match bytes.first() {
            Some(&POOL_TAG_LAN) => assert_eq!(region_of(to), region_of(from), "{from}→{to}"),
            Some(&POOL_TAG_WAN) => {}
            other => panic!("{from} sent a datagram with pool byte {other:?}"),
        }
    }
}

/// A network of gossiping servers with seeded delay and loss; addresses are server names,
/// whose prefix is the region (`r1-s2`).
struct Net<N> {
    now: Millis,
    nodes: BTreeMap<String, N>,
    in_flight: BTreeMap<(Millis, u64), (String, String, Vec<u8>)>,
    sent: u64,
    crashed: BTreeSet<String>,
    /// Pairs (either order) that cannot reach each other.
    cut: BTreeSet<(String, String)>,
    loss_pct: u32,
    rng: ChaCha8Rng,
    timeline: String,
}

fn member(region: &str, i: u32, generation: u32) -> Member {
    let name = format!("{region}-s{i}");
    Member {
        rpc_addr: format!("{name}:4647"),
        gossip_addr: name.clone(),
        name,
        region: region.into(),
        datacenter: format!("{region}-dc1"),
        server_id: u64::from(i),
        generation,
        has_raft_state: false,
        cluster_id: 0,
    }
}

impl<N: Node> Net<N> {
    fn new(seed: u64, loss_pct: u32) -> Net<N> {
        Net {
            now: Millis::ZERO,
            nodes: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            sent: 0,
            crashed: BTreeSet::new(),
            cut: BTreeSet::new(),
            loss_pct,
            rng: ChaCha8Rng::seed_from_u64(seed),
            timeline: String::new(),
        }
    }

    /// Runs `node` as server `name` from now on.
    fn add(&mut self, name: &str, node: N) {
        self.crashed.remove(name);
        self.nodes.insert(name.to_owned(), node);
        self.drain(name);
    }

    fn crash(&mut self, name: &str) {
        self.crashed.insert(name.into());
        self.nodes.remove(name);
        writeln!(self.timeline, "t={} {name} crashes", self.now).unwrap();
    }

    fn reachable(&self, from: &str, to: &str) -> bool {
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        !self.crashed.contains(to)
            && !self.cut.contains(&pair(from, to))
            && !self.cut.contains(&pair(to, from))
    }

    /// Moves a node's datagrams onto the wire and its events into the timeline.
    fn drain(&mut self, name: &str) {
        let Some(node) = self.nodes.get_mut(name) else { return };
        let mut transmits = Vec::new();
        while let Some(transmit) = node.transmit() {
            node.check_transmit(name, &transmit.0, &transmit.1);
            transmits.push(transmit);
        }
        while let Some(event) = node.event() {
            let (what, who) = match event {
                MemberEvent::Up(m) => ("up", m),
                MemberEvent::Down(m) => ("down", m),
            };
            let line =
                format!("t={} {name} sees {} {what} (gen {})", self.now, who.name, who.generation);
            writeln!(self.timeline, "{line}").unwrap();
        }
        for (to, bytes) in transmits {
            if self.rng.random_range(0..100) < self.loss_pct {
                continue;
            }
            let delay = Millis(self.rng.random_range(1..30));
            self.sent += 1;
            self.in_flight.insert((self.now + delay, self.sent), (name.to_owned(), to, bytes));
        }
    }

    /// Runs until `until`, delivering datagrams and firing timers in time order.
    fn run_until(&mut self, until: Millis) {
        loop {
            let next_datagram = self.in_flight.keys().next().map(|(at, _)| *at);
            let next_timer = self.nodes.values().filter_map(N::deadline).min();
            let Some(next) = next_datagram.into_iter().chain(next_timer).min() else { break };
            if next > until {
                break;
            }
            self.now = next;
            if next_datagram == Some(next) {
                let (_, (from, to, bytes)) = self.in_flight.pop_first().expect("it is there");
                if self.reachable(&from, &to) {
                    let node = self.nodes.get_mut(&to).expect("reachable nodes run");
                    // Stale datagrams for an older generation are refused; that is fine.
                    let _refused = node.data(self.now, &bytes);
                    self.drain(&to);
                }
                continue;
            }
            let due: Vec<String> = self
                .nodes
                .iter()
                .filter(|(_, g)| g.deadline() == Some(next))
                .map(|(n, _)| n.clone())
                .collect();
            for name in due {
                self.nodes.get_mut(&name).expect("due nodes run").timeout(next);
                self.drain(&name);
            }
        }
        self.now = until;
    }

    /// Every running server's view: the members it believes alive, and its regions.
    fn views(&self) -> String {
        let mut out = String::new();
        for (name, node) in &self.nodes {
            writeln!(out, "{name}: {}", node.describe()).unwrap();
        }
        out
    }
}

impl Net<Gossip> {
    /// Starts a server in `pool`, announcing itself to `join` if given.
    fn start(&mut self, identity: Member, pool: Pool, size: u32, join: Option<&str>) {
        let name = identity.gossip_addr.clone();
        let seed = self.rng.next_u64();
        let config = GossipConfig { pool, cluster_size_hint: size, rng_seed: seed };
        let mut gossip = Gossip::new(identity, &config);
        if let Some(target) = join {
            gossip.handle_join(self.now, target).expect("announce is accepted");
        }
        self.add(&name, gossip);
    }
}

/// Two regions of three servers in one WAN pool, every server joining through r1-s1.
fn wan_pool(seed: u64, loss_pct: u32) -> Net<Gossip> {
    let mut net = Net::new(seed, loss_pct);
    for region in ["r1", "r2"] {
        for i in 1..=3 {
            let join = (region, i) != ("r1", 1);
            net.start(member(region, i, 0), Pool::Wan, 6, join.then_some("r1-s1"));
        }
    }
    net
}

/// One region of three servers in one LAN pool, r1-s2 and r1-s3 joining through r1-s1.
fn lan_pool(seed: u64) -> Net<Gossip> {
    let mut net = Net::new(seed, 0);
    for i in 1..=3 {
        net.start(member("r1", i, 0), Pool::Lan, 3, (i > 1).then_some("r1-s1"));
    }
    net
}

/// Two regions of three servers, each running both pools and joining through r1-s1
/// (its `retry_join`).
fn two_regions(seed: u64) -> Net<GossipMembership> {
    let mut net = Net::new(seed, 0);
    for region in ["r1", "r2"] {
        for i in 1..=3 {
            let mut node = GossipMembership::new(member(region, i, 0), 3, 6, net.rng.next_u64());
            if (region, i) != ("r1", 1) {
                node.handle_join(net.now, "r1-s1").expect("announce is accepted");
            }
            net.add(&format!("{region}-s{i}"), node);
        }
    }
    net
}

/// The one helper: runs a scenario and snapshots its timeline and final views.
fn check<N: Node>(name: &str, net: &Net<N>) {
    insta::assert_snapshot!(name, format!("{}\n{}", net.timeline, net.views()));
}

#[test]
fn wan_pool_converges_and_names_every_region() {
    let mut net = wan_pool(7, 0);
    net.run_until(Millis::from_secs(30));
    for gossip in net.nodes.values() {
        assert_eq!(gossip.members().len(), 5, "{}", net.views());
        assert_eq!(gossip.servers_in("r2"), ["r2-s1:4647", "r2-s2:4647", "r2-s3:4647"]);
    }
    check("wan_converges", &net);
}

#[test]
fn lan_pool_holds_one_region() {
    let mut net = lan_pool(3);
    net.run_until(Millis::from_secs(10));
    for gossip in net.nodes.values() {
        assert_eq!(gossip.members().len(), 2);
        assert_eq!(gossip.regions().into_iter().collect::<Vec<_>>(), ["r1"]);
    }
    check("lan_pool", &net);
}

#[test]
fn a_crash_is_noticed_by_every_survivor_and_a_restart_rejoins() {
    let mut net = wan_pool(11, 0);
    net.run_until(Millis::from_secs(30));
    net.timeline.clear();
    net.crash("r2-s3");
    net.run_until(Millis::from_secs(120));
    for gossip in net.nodes.values() {
        assert!(gossip.members().iter().all(|m| m.name != "r2-s3"), "{}", net.views());
    }
    net.start(member("r2", 3, 1), Pool::Wan, 6, Some("r1-s2"));
    net.run_until(Millis::from_secs(180));
    for gossip in net.nodes.values() {
        assert_eq!(gossip.members().len(), 5, "{}", net.views());
    }
    check("crash_and_rejoin", &net);
}

#[test]
fn a_partition_between_regions_heals() {
    let mut net = wan_pool(5, 0);
    net.run_until(Millis::from_secs(30));
    net.timeline.clear();
    for a in 1..=3 {
        for b in 1..=3 {
            net.cut.insert((format!("r1-s{a}"), format!("r2-s{b}")));
        }
    }
    net.run_until(Millis::from_secs(150));
    assert_eq!(net.nodes["r1-s1"].regions().into_iter().collect::<Vec<_>>(), ["r1"]);
    net.cut.clear();
    net.run_until(Millis::from_secs(400));
    for gossip in net.nodes.values() {
        assert_eq!(gossip.regions().len(), 2, "{}", net.views());
    }
    check("partition_heals", &net);
}

/// A server cut off from every peer declares them all down and they declare it down:
/// foca then stops probing on its side and ignores it on theirs. Once the network heals
/// it must come back within one join retry, whether or not it knew members when it
/// joined (it once retried only until its first members, and stayed alone until a peer's
/// periodic announce to down members happened to reach it, or for good).
#[test]
fn a_server_cut_off_from_every_peer_rejoins_after_the_heal() {
    let mut net = lan_pool(17);
    // Past the first join retry, which finds members.
    net.run_until(Millis::from_secs(40));
    for peer in ["r1-s1", "r1-s2"] {
        net.cut.insert(("r1-s3".to_owned(), peer.to_owned()));
    }
    // Past the peers' periodic announces to down members at 65 s and 130 s.
    net.run_until(Millis::from_secs(150));
    assert!(net.nodes["r1-s3"].members().is_empty(), "{}", net.views());
    net.cut.clear();
    net.run_until(Millis::from_secs(150) + Millis(JOIN_RETRY_INTERVAL_MS + 5_000));
    for gossip in net.nodes.values() {
        assert_eq!(gossip.members().len(), 2, "{}", net.views());
    }
}

/// foca stops probing when it changes identity and waits for a peer to talk to the new
/// one; a peer hears of it only from the datagrams sent at the change. Here every server
/// changes identity while the network drops everything, so each keeps believing its
/// peers alive under identities they no longer answer to, and no one probes or announces
/// to the members it holds down any more. The servers must announce their new
/// identities once the network heals (they once sat silent for good: a region whose
/// servers were all renewed during a partition, found by the cluster simulation).
#[test]
fn identities_renewed_while_cut_off_are_announced_after_the_heal() {
    let mut net = lan_pool(23);
    net.run_until(Millis::from_secs(40));
    let names: Vec<String> = net.nodes.keys().cloned().collect();
    for a in &names {
        for b in &names {
            net.cut.insert((a.clone(), b.clone()));
        }
    }
    for (i, name) in (1..).zip(&names) {
        let renewed = Member { has_raft_state: true, ..member("r1", i, 0) };
        let node = net.nodes.get_mut(name).expect("the node runs");
        node.handle_identity_change(net.now, renewed).expect("a new identity is accepted");
        net.drain(name);
    }
    net.run_until(Millis::from_secs(41));
    net.cut.clear();
    net.run_until(Millis::from_secs(41) + Millis(JOIN_RETRY_INTERVAL_MS + 5_000));
    for (name, gossip) in &net.nodes {
        let members = gossip.members();
        assert_eq!(members.len(), 2, "{}", net.views());
        let renewed = members.iter().all(|m| m.has_raft_state && m.generation == 1);
        assert!(renewed, "{name} knows an old identity: {}", net.views());
    }
}

/// A server that left the pool on purpose stays gone: its join retry must not bring it
/// back, nor a change of identity made while it shuts down.
#[test]
fn a_server_that_left_never_announces_itself_again() {
    let mut net = lan_pool(29);
    net.run_until(Millis::from_secs(40));
    let node = net.nodes.get_mut("r1-s3").expect("r1-s3 runs");
    node.handle_leave(net.now).expect("a member can leave");
    let renewed = Member { has_raft_state: true, ..member("r1", 3, 0) };
    node.handle_identity_change(net.now, renewed).expect("a new identity is accepted");
    net.drain("r1-s3");
    net.run_until(Millis::from_secs(40) + Millis(4 * JOIN_RETRY_INTERVAL_MS));
    for name in ["r1-s1", "r1-s2"] {
        let members = net.nodes[name].members();
        assert!(members.iter().all(|m| m.name != "r1-s3"), "{}", net.views());
    }
}

#[test]
fn the_same_seed_gives_the_same_timeline() {
    let run = |seed| {
        let mut net = wan_pool(seed, 10);
        net.run_until(Millis::from_secs(40));
        net.crash("r1-s2");
        net.run_until(Millis::from_secs(120));
        format!("{}{}", net.timeline, net.views())
    };
    assert_eq!(run(99), run(99));
    assert_ne!(run(99), run(100));
}

#[test]
fn oversized_datagrams_are_refused() {
    let mut gossip = Gossip::new(
        member("r1", 1, 0),
        &GossipConfig { pool: Pool::Lan, cluster_size_hint: 3, rng_seed: 1 },
    );
    let error = gossip.handle_data(Millis::ZERO, &vec![0; DATAGRAM_LEN_MAX_BYTES + 1]);
    assert_eq!(error, Err(GossipError::DatagramTooLarge { len_bytes: DATAGRAM_LEN_MAX_BYTES + 1 }));
}

#[test]
fn each_region_pool_holds_its_region_and_every_server_knows_both_regions() {
    let mut net = two_regions(7);
    net.run_until(Millis::from_secs(20));
    for node in net.nodes.values() {
        assert_eq!(node.view().len(), 3, "{}", net.views());
        assert_eq!(node.members().len(), 5, "{}", net.views());
    }
    check("two_pools_converge", &net);
}

/// The region's pool declares a crashed server down within seconds and the view reports
/// it failed; the other region's servers, on wide-area timings, keep forwarding to it a
/// while longer.
#[test]
fn a_crash_is_failed_in_its_region_before_the_other_region_forgets_it() {
    let mut net = two_regions(7);
    net.run_until(Millis::from_secs(20));
    net.timeline.clear();
    net.crash("r1-s2");
    net.run_until(Millis::from_secs(30));
    writeln!(net.timeline, "-- at t={}:\n{}", net.now, net.views()).unwrap();
    net.run_until(Millis::from_secs(120));
    check("two_pools_crash", &net);
}

#[test]
fn a_datagram_naming_no_pool_changes_nothing() {
    let mut node = GossipMembership::new(member("r1", 1, 0), 3, 6, 1);
    for datagram in [&[][..], &[b'X', 1, 2, 3][..], &[POOL_TAG_LAN, 0xff][..]] {
        let refused = node.handle_data(Millis(5), datagram);
        assert!(refused.is_err(), "{datagram:?} was accepted");
    }
    assert_eq!(node.poll_transmit(), None);
    assert_eq!(node.poll_event(), None);
    assert!(node.members().is_empty());
    assert_eq!(node.view().len(), 1);
}

proptest! {
    /// Arbitrary bytes are an error or a no-op, never a panic, and never a phantom member.
    #[test]
    fn arbitrary_bytes_never_panic(datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20)) {
        let mut gossip = Gossip::new(
            member("r1", 1, 0),
            &GossipConfig { pool: Pool::Wan, cluster_size_hint: 3, rng_seed: 2 },
        );
        for (i, datagram) in datagrams.iter().enumerate() {
            let _outcome = gossip.handle_data(Millis(i as u64), datagram);
            gossip.handle_timeout(Millis(i as u64));
        }
        prop_assert!(gossip.members().len() <= datagrams.len());
    }

    /// The same for a server's two pools, each datagram behind either pool's byte.
    #[test]
    fn arbitrary_bytes_behind_a_pool_byte_never_panic(datagrams in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)), 1..20)) {
        let mut node = GossipMembership::new(member("r1", 1, 0), 3, 6, 2);
        for (i, (lan, bytes)) in datagrams.iter().enumerate() {
            let tag = if *lan { POOL_TAG_LAN } else { POOL_TAG_WAN };
            let datagram: Vec<u8> = [tag].into_iter().chain(bytes.iter().copied()).collect();
            let _outcome = node.handle_data(Millis(i as u64), &datagram);
            node.handle_timeout(Millis(i as u64));
        }
        prop_assert!(node.members().len() <= datagrams.len());
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After two minutes of 0–20 % loss (false suspicions, renewed identities), a pool
    /// whose network turned healthy again has every server seeing every other.
    #[test]
    fn lossy_pools_converge_once_healthy(seed in 0u64..1000, loss_pct in 0u32..20) {
        let mut net = wan_pool(seed, loss_pct);
        net.run_until(Millis::from_secs(120));
        net.loss_pct = 0;
        net.run_until(Millis::from_secs(300));
        for gossip in net.nodes.values() {
            prop_assert_eq!(gossip.members().len(), 5, "{}", net.views());
        }
    }
}
