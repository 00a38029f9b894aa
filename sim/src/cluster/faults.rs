//! The fault menu of reliability.md, injected by the supervisor during the safety phase:
//! partitions (symmetric, asymmetric, partial; inside a region and between regions),
//! leader kills, server restarts with disk faults, client kills, slow nodes, disk errors
//! (a server's disk fails its next write or sync: the host stops, the machine is killed,
//! its unsynced writes lost or torn, and it restarts later) and clock steps (a node's wall
//! clock stepped forward or back, read when its process next starts) and server
//! replacement (a server lost for good and a new one joining in its place, at most once
//! per region and only while the region's other servers are up). Message loss,
//! duplication and delays are per message, in `net`. Clock drift is per node, in
//! `World::clock`. Every fault is undone by a later action, and all of them by `heal`.

use super::params::REGIONS;
use super::world::{Kind, NodeKey, Shared, World, lock, trace};
use drover_runtime::store::mem::DiskFault;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// What a fault leaves to undo, at a simulated instant.
#[derive(Clone, Debug)]
enum Undo {
    Links(Vec<(NodeKey, NodeKey)>),
    Restart(NodeKey),
    Fast(NodeKey),
}

pub struct Faults {
    handle: Handle,
    nodes: BTreeMap<NodeKey, NodeId>,
    clients: Vec<NodeKey>,
    down: BTreeSet<NodeKey>,
    /// Undo actions by (elapsed ms, sequence).
    undo: BTreeMap<(u64, u64), Undo>,
    sequence: u64,
    /// Regions that had a server replaced (once per region per seed).
    replaced: BTreeSet<u8>,
}

impl Faults {
    pub fn new(handle: Handle, nodes: BTreeMap<NodeKey, NodeId>) -> Faults {
        let clients = nodes.keys().filter(|k| k.kind == Kind::Client).copied().collect();
        Faults {
            handle,
            nodes,
            clients,
            down: BTreeSet::new(),
            undo: BTreeMap::new(),
            sequence: 0,
            replaced: BTreeSet::new(),
        }
    }

    /// Kills every machine still running, so madsim drops their tasks now (see
    /// `supervise`); the seed is over.
    pub fn kill_all(&mut self) {
        for &id in self.nodes.values() {
            self.handle.kill(id);
        }
    }

    /// When the next undo is due, in elapsed simulated ms.
    pub fn next_undo(&self) -> Option<u64> {
        self.undo.keys().next().map(|(at, _)| *at)
    }

    fn later(&mut self, at: u64, undo: Undo) {
        self.sequence += 1;
        self.undo.insert((at, self.sequence), undo);
    }

    /// Kills every server whose disk failed (its host stopped), so its disk crashes
    /// with the power-fail model and it restarts later.
    fn reap_disk_failures(&mut self, world: &Shared, elapsed: u64) {
        let failed = std::mem::take(&mut lock(world).disk_failed);
        for key in failed {
            self.kill(world, key, elapsed, "disk failure");
        }
    }

    /// Carries out every undo due by `elapsed`.
    pub fn undo_due(&mut self, world: &Shared, elapsed: u64) {
        self.reap_disk_failures(world, elapsed);
        let later = self.undo.split_off(&(elapsed + 1, 0));
        let due = std::mem::replace(&mut self.undo, later);
        for undo in due.into_values() {
            self.apply_undo(world, undo);
        }
    }

    fn apply_undo(&mut self, world: &Shared, undo: Undo) {
        match undo {
            Undo::Links(links) => {
                let mut w = lock(world);
                for link in &links {
                    w.cut.remove(link);
                }
                trace!(w, "fault healed: {} links", links.len());
            }
            Undo::Restart(key) => self.restart(world, key),
            Undo::Fast(key) => {
                let mut w = lock(world);
                w.slow_ms.remove(&key);
                trace!(w, "fault healed: {} at full speed", key.name());
            }
        }
    }

    /// Injects one fault drawn by the seed's weights.
    pub fn inject(&mut self, world: &Shared, elapsed: u64) {
        let weights = {
            let w = lock(world);
            let p = &w.params;
            [
                p.partition_weight,
                p.leader_kill_weight,
                p.server_restart_weight,
                p.client_kill_weight,
                p.slow_weight,
                p.disk_fault_weight,
                p.clock_jump_weight,
                p.server_replace_weight,
            ]
        };
        let total: u32 = weights.iter().sum();
        if total == 0 {
            return;
        }
        let mut roll = lock(world).rng.range(0, u64::from(total)) as u32;
        let mut kind = 0;
        while roll >= weights[kind] {
            roll -= weights[kind];
            kind += 1;
        }
        match kind {
            0 => self.partition(world, elapsed),
            1 => self.kill_leader(world, elapsed),
            2 => {
                let server = pick_server(&mut lock(world));
                if let Some(server) = server {
                    self.kill(world, server, elapsed, "restart");
                }
            }
            3 => {
                let client = lock(world).rng.pick(&self.clients);
                if let Some(client) = client {
                    self.kill(world, client, elapsed, "client kill");
                }
            }
            4 => self.slow(world, elapsed),
            5 => self.arm_disk_fault(world),
            6 => self.step_clock(world, elapsed),
            _ => self.replace_server(world),
        }
    }

    /// Loses one server for good and starts a new one (the region's next index, an empty
    /// disk) that joins in its place. Only while every server of the region is up, so the
    /// region keeps a quorum through the change, as an operator replacing a machine would.
    fn replace_server(&mut self, world: &Shared) {
        let mut w = lock(world);
        let region = w.rng.range(1, REGIONS as u64 + 1) as u8;
        let servers = w.servers(region);
        if self.replaced.contains(&region) || servers.iter().any(|s| self.down.contains(s)) {
            return;
        }
        let Some(lost) = w.rng.pick(&servers) else { return };
        let Some(id) = self.nodes.remove(&lost) else { return };
        self.handle.kill(id);
        self.replaced.insert(region);
        let index = servers.iter().map(|s| s.index).max().unwrap_or(0) + 1;
        let joiner = NodeKey::server(region, index);
        if let Some(view) = w.views.get_mut(&lost) {
            view.up = false;
            view.leader_loop = false;
        }
        w.checker.on_server_down((lost.region, u64::from(lost.index)));
        w.slow_ms.remove(&lost);
        w.joiners.insert(joiner);
        w.members.entry(region).or_default().retain(|&s| s != lost);
        w.members.entry(region).or_default().push(joiner);
        trace!(w, "fault: {} lost for good; {} joins in its place", lost.name(), joiner.name());
        drop(w);
        self.nodes.insert(joiner, super::start_machine(&self.handle, world, joiner));
    }

    /// Arms a write or sync error on one server's disk; it fires at that server's next
    /// persist.
    fn arm_disk_fault(&mut self, world: &Shared) {
        let mut w = lock(world);
        let Some(key) = pick_server(&mut w) else { return };
        let fault = if w.rng.chance(0.5) { DiskFault::Write } else { DiskFault::Sync };
        w.disk(key).lock().unwrap_or_else(|p| p.into_inner()).arm_fault(fault);
        trace!(w, "fault: {}'s disk fails its next {fault:?}", key.name());
    }

    /// Steps a node's wall clock by up to two minutes either way; the node is restarted
    /// to read it (a running agent's `now` never sees a wall-clock step).
    fn step_clock(&mut self, world: &Shared, elapsed: u64) {
        let key = {
            let mut w = lock(world);
            let keys: Vec<NodeKey> = self.nodes.keys().copied().collect();
            let Some(key) = w.rng.pick(&keys) else { return };
            let magnitude = w.rng.range(1_000, 120_000) as i64;
            let step_ms = if w.rng.chance(0.5) { magnitude } else { -magnitude };
            *w.clock_steps.entry(key).or_default() += step_ms;
            trace!(w, "fault: {}'s wall clock stepped by {step_ms}ms", key.name());
            key
        };
        self.kill(world, key, elapsed, "restart after a clock step");
    }

    /// Cuts links: a server from its region (both ways or one way), one link between two
    /// servers, the two regions' servers from each other, or a client from its servers.
    fn partition(&mut self, world: &Shared, elapsed: u64) {
        let mut w = lock(world);
        let region = w.rng.range(1, REGIONS as u64 + 1) as u8;
        let servers = w.servers(region);
        let victim = w.rng.pick(&servers).expect("a region has servers");
        let peers: Vec<NodeKey> = servers.iter().copied().filter(|&s| s != victim).collect();
        let mode = w.rng.range(0, 5);
        let (links, what): (Vec<(NodeKey, NodeKey)>, String) = match mode {
            0 => (
                peers.iter().flat_map(|&p| [(victim, p), (p, victim)]).collect(),
                format!("isolate {}", victim.name()),
            ),
            1 => (
                peers.iter().map(|&p| (victim, p)).collect(),
                format!("cut {} outbound (asymmetric)", victim.name()),
            ),
            2 => {
                let other = w.rng.pick(&peers).expect("three servers");
                (
                    vec![(victim, other), (other, victim)],
                    format!("cut link {}-{} (partial)", victim.name(), other.name()),
                )
            }
            3 => {
                let (a, b) = (w.servers(1), w.servers(2));
                let links =
                    a.iter().flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)])).collect();
                (links, "split the regions".to_owned())
            }
            _ => {
                let clients: Vec<NodeKey> =
                    self.clients.iter().copied().filter(|c| c.region == region).collect();
                let Some(client) = w.rng.pick(&clients) else { return };
                (
                    servers.iter().flat_map(|&s| [(client, s), (s, client)]).collect(),
                    format!("isolate client {}", client.name()),
                )
            }
        };
        let heal_at = elapsed + w.rng.range(1_000, 60_000);
        for link in &links {
            w.cut.insert(*link);
        }
        trace!(w, "fault: {what} until t={}s", heal_at / 1000);
        drop(w);
        self.later(heal_at, Undo::Links(links));
    }

    fn kill_leader(&mut self, world: &Shared, elapsed: u64) {
        let leader = {
            let mut w = lock(world);
            let region = w.rng.range(1, REGIONS as u64 + 1) as u8;
            w.leader(region)
        };
        if let Some(leader) = leader {
            self.kill(world, leader, elapsed, "leader kill");
        }
    }

    /// Kills a machine; a server's disk loses or tears what it had not synced. It comes
    /// back after a while.
    fn kill(&mut self, world: &Shared, key: NodeKey, elapsed: u64, why: &str) {
        if self.down.contains(&key) {
            return;
        }
        let Some(&id) = self.nodes.get(&key) else { return };
        self.handle.kill(id);
        self.down.insert(key);
        let mut w = lock(world);
        let back_at = elapsed + w.rng.range(1_000, 60_000);
        if key.kind == Kind::Server {
            let kept = w.rng.range(0, 3) as usize;
            let torn = w.rng.chance(0.5).then(|| w.rng.range(0, 4) as usize);
            let disk = w.disk(key);
            let mut disk = disk.lock().unwrap_or_else(|p| p.into_inner());
            let unsynced = disk.unsynced_writes();
            disk.crash(kept, torn);
            drop(disk);
            if let Some(view) = w.views.get_mut(&key) {
                view.up = false;
                view.leader_loop = false;
            }
            w.checker.on_server_down((key.region, u64::from(key.index)));
            trace!(
                w,
                "fault: {why}: {} killed ({unsynced} unsynced writes, kept {kept}, torn {torn:?}), back at t={}s",
                key.name(),
                back_at / 1000
            );
        } else {
            trace!(w, "fault: {why}: {} killed, back at t={}s", key.name(), back_at / 1000);
        }
        drop(w);
        self.later(back_at, Undo::Restart(key));
    }

    fn restart(&mut self, world: &Shared, key: NodeKey) {
        if !self.down.remove(&key) {
            return;
        }
        if let Some(&id) = self.nodes.get(&key) {
            trace!(lock(world), "{} restarting", key.name());
            self.handle.restart(id);
        }
    }

    fn slow(&mut self, world: &Shared, elapsed: u64) {
        let mut w = lock(world);
        let keys: Vec<NodeKey> = self.nodes.keys().copied().collect();
        let Some(key) = w.rng.pick(&keys) else { return };
        let slow_ms = w.rng.range(1, 300);
        let until = elapsed + w.rng.range(5_000, 60_000);
        w.slow_ms.insert(key, slow_ms);
        trace!(w, "fault: {} slow ({slow_ms}ms per input) until t={}s", key.name(), until / 1000);
        drop(w);
        self.later(until, Undo::Fast(key));
    }

    /// The liveness phase: every link healed, every machine up and at full speed.
    pub fn heal(&mut self, world: &Shared) {
        // A fault armed but not fired is disarmed; one that fired is reaped and its
        // machine restarted with the others.
        let disks: Vec<_> = lock(world).disks.values().cloned().collect();
        for disk in disks {
            disk.lock().unwrap_or_else(|p| p.into_inner()).arm_fault_none();
        }
        let elapsed = lock(world).elapsed_ms();
        self.reap_disk_failures(world, elapsed);
        let undo = std::mem::take(&mut self.undo);
        for undo in undo.into_values() {
            self.apply_undo(world, undo);
        }
        let mut w = lock(world);
        w.cut.clear();
        w.slow_ms.clear();
    }
}

/// One server of a region drawn by the seed, among the region's servers now.
fn pick_server(w: &mut World) -> Option<NodeKey> {
    let region = w.rng.range(1, REGIONS as u64 + 1) as u8;
    let servers = w.servers(region);
    w.rng.pick(&servers)
}
