//! The cluster simulator: whole regions of servers and clients as madsim nodes, each
//! running `runtime`'s node host, driven by a seed through a workload and reliability.md's
//! fault menu, with the cluster checker after every step.
//!
//! A seed runs in a fresh madsim `Runtime` seeded with it. The supervisor (madsim's main
//! task) builds the machines ([`REGIONS`] × [`SERVERS_PER_REGION`] servers and
//! `params.clients` clients, spread over the regions), then runs the **safety phase**:
//! operator calls from the workload and faults, for at least ten simulated minutes. The
//! **liveness phase** then heals every link, restarts every machine, turns message and
//! task faults off and undoes drains; every job of both regions must reach its desired
//! state within a bounded simulated time, each region's Raft configuration must hold
//! exactly its servers now (autopilot done after a server replacement), and garbage
//! collection must then have bounded
//! the state (`checkers::cluster::check_gc_bound`, on each region's leader). A run is a pure function of its seed.

pub mod params;

mod client;
mod faults;
mod net;
mod server;
mod workload;
mod world;

use crate::checkers::cluster::{GcHistory, check_converged, check_gc_bound};
use crate::rng::SimRng;
use drover_core::server::ApiReply;
use faults::Faults;
use madsim::net::Endpoint;
use madsim::runtime::{Handle, Runtime};
use net::SimMsg;
use params::{Params, REGIONS, SERVERS_PER_REGION};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use workload::{Op, Workload};
use world::{API_ADDR, NodeKey, Shared, World, lock, trace};

/// How often the liveness phase looks for convergence.
pub const LIVENESS_POLL_MS: u64 = 2_000;

/// The result of one seed.
pub struct Outcome {
    pub seed: u64,
    pub params: Params,
    pub violations: Vec<String>,
    pub trace: String,
    /// Simulated time the run covered.
    pub sim_ms: u64,
    /// Inputs handled by all nodes.
    pub steps: u64,
    /// The highest Raft index applied in any region.
    pub commits: u64,
}

/// madsim's network settings for a seed: its latency range (so messages reorder); loss
/// and the other faults are ours, per message.
pub fn madsim_config(params: &Params) -> madsim::Config {
    let mut config = madsim::Config::default();
    config.net.send_latency =
        Duration::from_millis(params.latency_min_ms)..Duration::from_millis(params.latency_max_ms);
    config
}

fn params_of(seed: u64) -> Params {
    Params::draw(&mut SimRng::new(seed))
}

/// Runs one seed of the standard scenario; with `trace` set, records a readable line per
/// event.
pub fn run(seed: u64, trace: bool) -> Outcome {
    run_in_own_runtime(seed, trace, false)
}

/// Runs one seed, printing its trace as it goes (so a panic keeps what led to it).
pub fn replay(seed: u64) -> Outcome {
    run_in_own_runtime(seed, true, true)
}

/// Runs a seed in a fresh runtime and checks, once the runtime is gone, that nothing still
/// holds the seed's world: a task left behind would keep every seed's disks and state, and
/// a soak of thousands of seeds in one process would run out of memory.
fn run_in_own_runtime(seed: u64, tracing: bool, stream: bool) -> Outcome {
    let runtime = Runtime::with_seed_and_config(seed, madsim_config(&params_of(seed)));
    let (mut outcome, world) = runtime.block_on(supervise(tracing, stream));
    drop(runtime);
    if world.strong_count() > 0 {
        outcome.violations.push(
            "the seed's world outlived its runtime: tasks left pending still hold it".to_owned(),
        );
    }
    outcome
}

/// Runs one seed and turns a panic into a violation.
pub fn run_guarded(seed: u64) -> Result<Outcome, String> {
    std::panic::catch_unwind(|| run(seed, false))
        .map_err(|payload| crate::raft::panic_message(&*payload))
}

/// Runs the seed twice under madsim's determinism check (every random draw of the second
/// run must equal the first's); panics on divergence.
pub fn check_determinism(seed: u64) -> Outcome {
    let config = madsim_config(&params_of(seed));
    Runtime::check_determinism(seed, config, || async { supervise(true, false).await.0 })
}

/// Runs the seed; returns its outcome and a weak handle on its world, which must be the
/// last once the runtime is dropped.
async fn supervise(tracing: bool, stream: bool) -> (Outcome, Weak<Mutex<World>>) {
    let handle = Handle::current();
    let seed = handle.seed();
    let mut rng = SimRng::new(seed);
    let params = Params::draw(&mut rng);
    let world: Shared =
        Arc::new(Mutex::new(World::new(seed, params.clone(), rng, tracing, stream)));
    trace!(lock(&world), "seed={seed} {params}");
    let nodes = start_machines(&handle, &world, &params);
    let clients: Vec<NodeKey> =
        nodes.keys().copied().filter(|k| k.kind == world::Kind::Client).collect();
    let api = handle.create_node().name("api").ip(API_ADDR.ip()).build();
    let ep = match api.spawn(async { Endpoint::bind(API_ADDR).await }).await {
        Ok(Ok(ep)) => ep,
        _ => panic!("the API caller cannot bind {API_ADDR}"),
    };
    api.spawn(receive_replies(world.clone(), ep.clone()));
    let mut workload = Workload::new(&clients);
    let mut faults = Faults::new(handle.clone(), nodes);
    safety_phase(&world, &api, &ep, &mut workload, &mut faults).await;
    if lock(&world).checker.violations.is_empty() {
        liveness_phase(&world, &api, &ep, &mut workload, &mut faults).await;
    }
    let outcome = finish(&world);
    // A pending madsim task keeps itself alive (its info holds its own waker), so tasks
    // still pending when the runtime is dropped leak, and with them the world they share:
    // ~10 MB a seed, which a soak of thousands of seeds per process cannot afford. Killing
    // every node makes madsim drop their futures before this, the main task, returns.
    faults.kill_all();
    handle.kill(api.id());
    (outcome, Arc::downgrade(&world))
}

fn start_machines(
    handle: &Handle,
    world: &Shared,
    params: &Params,
) -> BTreeMap<NodeKey, madsim::task::NodeId> {
    let mut keys = Vec::new();
    for region in 1..=REGIONS as u8 {
        keys.extend((1..=SERVERS_PER_REGION as u8).map(|i| NodeKey::server(region, i)));
    }
    for c in 0..params.clients {
        let region = 1 + (c % REGIONS as u64) as u8;
        keys.push(NodeKey::client(region, 1 + (c / REGIONS as u64) as u8));
    }
    keys.into_iter().map(|key| (key, start_machine(handle, world, key))).collect()
}

/// Creates machine `key` (a madsim node at its address) running a server or a client from
/// boot, and again from boot after every restart.
fn start_machine(handle: &Handle, world: &Shared, key: NodeKey) -> madsim::task::NodeId {
    let world = world.clone();
    let builder = handle.create_node().name(key.name()).ip(key.addr().ip());
    let node = match key.kind {
        world::Kind::Server => builder.init(move || server::run(world.clone(), key)).build(),
        world::Kind::Client => builder.init(move || client::run(world.clone(), key)).build(),
    };
    node.id()
}

/// The API caller's mailbox: every answer is traced and kept.
async fn receive_replies(world: Shared, ep: Endpoint) {
    while let Ok((payload, from)) = ep.recv_from_raw(net::TAG).await {
        let Ok(message) = payload.downcast::<SimMsg>() else { continue };
        if let SimMsg::ApiReply(response) = *message {
            let mut w = lock(&world);
            let from = NodeKey::from_addr(from).map_or("?".to_owned(), |k| k.name());
            trace!(w, "api <- {from} #{} {}", response.request_id, describe_reply(&response.reply));
            w.replies.insert(response.request_id, response.reply);
        }
    }
}

fn describe_reply(reply: &ApiReply) -> String {
    match reply {
        ApiReply::Write { index, eval_ids, .. } => {
            format!("ok index={index} evals={}", eval_ids.len())
        }
        ApiReply::NotLeader { leader } => format!("not leader ({leader:?})"),
        ApiReply::Error { message } => format!("error: {message}"),
        ApiReply::CasWrite { index, updated } => format!("ok index={index} updated={updated}"),
        ApiReply::Plan { .. } => "plan".to_owned(),
        ApiReply::Read { index, .. } => format!("read index={index}"),
    }
}

async fn call(world: &Shared, api: &madsim::runtime::NodeHandle, ep: &Endpoint, op: Op) {
    trace!(lock(world), "api -> {} #{} {}", op.server.name(), op.call.request_id, op.what);
    let (world, ep) = (world.clone(), ep.clone());
    api.spawn(async move {
        net::send(&world, &ep, None, op.server.addr(), SimMsg::Api(op.call)).await;
    });
}

async fn sleep_until_elapsed(world: &Shared, elapsed_ms: u64) {
    let now = lock(world).elapsed_ms();
    if elapsed_ms > now {
        madsim::time::sleep(Duration::from_millis(elapsed_ms - now)).await;
    }
}

async fn safety_phase(
    world: &Shared,
    api: &madsim::runtime::NodeHandle,
    ep: &Endpoint,
    workload: &mut Workload,
    faults: &mut Faults,
) {
    let (safety_ms, op_interval, fault_interval) = {
        let w = lock(world);
        (w.params.safety_ms, w.params.op_interval_ms, w.params.fault_interval_ms)
    };
    let draw = |world: &Shared, interval: u64| lock(world).rng.range(1, 2 * interval.max(1));
    let mut next_op = 5_000 + draw(world, op_interval);
    let mut next_fault =
        if fault_interval > 0 { 10_000 + draw(world, fault_interval) } else { u64::MAX };
    loop {
        let next = [next_op, next_fault, faults.next_undo().unwrap_or(u64::MAX), safety_ms]
            .into_iter()
            .min()
            .expect("four candidates");
        sleep_until_elapsed(world, next).await;
        if !lock(world).checker.violations.is_empty() {
            return;
        }
        let elapsed = lock(world).elapsed_ms();
        if elapsed >= safety_ms {
            return;
        }
        faults.undo_due(world, elapsed);
        if elapsed >= next_op {
            next_op = elapsed + draw(world, op_interval);
            let op = {
                let mut w = lock(world);
                let w = &mut *w;
                workload.next(&mut w.rng, &w.members)
            };
            if let Some(op) = op {
                call(world, api, ep, op).await;
            }
        }
        if elapsed >= next_fault {
            next_fault = elapsed + draw(world, fault_interval);
            faults.inject(world, elapsed);
        }
    }
}

async fn liveness_phase(
    world: &Shared,
    api: &madsim::runtime::NodeHandle,
    ep: &Endpoint,
    workload: &mut Workload,
    faults: &mut Faults,
) {
    faults.heal(world);
    let (since, bound) = {
        let mut w = lock(world);
        w.faulty = false;
        trace!(w, "liveness phase: network healed, machines up, faults off, drains undone");
        (w.elapsed_ms(), w.params.liveness_bound_ms)
    };
    // Undrains are sent again until a write answers them: the server they went to may
    // still be booting, and a call it never received would leave its node drained.
    let mut undrains = workload.undrain_all(&lock(world).members);
    loop {
        undrains.retain(|op| {
            !matches!(lock(world).replies.get(&op.call.request_id), Some(ApiReply::Write { .. }))
        });
        for op in &undrains {
            call(world, api, ep, op.clone()).await;
        }
        let next_poll = lock(world).elapsed_ms() + LIVENESS_POLL_MS;
        sleep_until_elapsed(world, next_poll).await;
        let mut w = lock(world);
        if !w.checker.violations.is_empty() {
            return;
        }
        let pending: Vec<String> = (1..=REGIONS as u8)
            .filter_map(|region| {
                let Some(leader) = w.leader(region) else {
                    return Some(format!("r{region}: no leader"));
                };
                let Some(state) = &w.views[&leader].state else {
                    return Some(format!("r{region}: the leader has not shown its state"));
                };
                let converged = check_converged(state)
                    .and_then(|()| check_membership(&w, region, &w.views[&leader]));
                converged.err().map(|why| format!("r{region}: {why}"))
            })
            .collect();
        if pending.is_empty() {
            let took = w.elapsed_ms() - since;
            trace!(w, "converged: every job of every region in its desired state after {took}ms");
            let states: BTreeMap<u8, &drover_core::state::State> = (1..=REGIONS as u8)
                .filter_map(|r| Some((r, w.views[&w.leader(r)?].state.as_ref()?)))
                .collect();
            let lost = workload.lost_acknowledged(&w.replies, &states);
            for violation in lost {
                w.checker.violation(violation);
            }
            check_gc_bound_on_leaders(&mut w);
            return;
        }
        if w.elapsed_ms() > since + bound {
            let violation =
                format!("liveness: no convergence within {bound}ms: {}", pending.join("; "));
            w.checker.violation(violation);
            return;
        }
    }
}

/// Autopilot finished: the leader's Raft configuration holds exactly the region's servers
/// now, every one a voter (a replaced server removed, its replacement promoted).
fn check_membership(w: &World, region: u8, leader: &world::ServerView) -> Result<(), String> {
    let Some(membership) = &leader.membership else {
        return Err("the leader has not shown its Raft configuration".to_owned());
    };
    let servers: std::collections::BTreeSet<u64> =
        w.servers(region).iter().map(|s| u64::from(s.index)).collect();
    if membership.voters == servers && membership.learners.is_empty() {
        return Ok(());
    }
    Err(format!(
        "Raft configuration voters={:?} learners={:?}, servers now {servers:?}",
        membership.voters, membership.learners
    ))
}

/// The state bounded under churn (`check_gc_bound`), on each region's leader.
fn check_gc_bound_on_leaders(w: &mut World) {
    for region in 1..=REGIONS as u8 {
        let Some(leader) = w.leader(region) else { continue };
        let at = (region, u64::from(leader.index));
        let (Some(state), Some(started)) = (&w.views[&leader].state, w.checker.loop_started(at))
        else {
            continue;
        };
        let state = state.clone();
        let now = w.clocks[&leader].local(w.global_now());
        let found = {
            let eval_written = |job: &drover_core::model::Job| w.checker.eval_written(region, job);
            let purged_at =
                |namespace: &str, job_id: &str| w.checker.purged_at(region, namespace, job_id);
            let history = GcHistory { eval_written: &eval_written, purged_at: &purged_at };
            check_gc_bound(&state, now, started, &server::SIM_GC, &history)
        };
        match found {
            Ok(found) => {
                trace!(
                    w,
                    "gc bound r{region}: holds evals={} allocs={} jobs={} nodes={}",
                    state.evals().count(),
                    state.alloc_count(),
                    state.jobs().count(),
                    state.node_count()
                );
                for violation in found {
                    w.checker.violation(format!("r{region}: {violation}"));
                }
            }
            Err(why) => trace!(w, "gc bound r{region}: not judged: {why}"),
        }
    }
}

fn finish(world: &Shared) -> Outcome {
    let mut w = lock(world);
    let verdict = if w.checker.violations.is_empty() {
        "ok".to_owned()
    } else {
        w.checker.violations.join("; ")
    };
    let stats = w.net;
    trace!(
        w,
        "network: sent={} cut={} lost={} duplicated={} delayed={}",
        stats.sent,
        stats.cut,
        stats.lost,
        stats.duplicated,
        stats.delayed
    );
    trace!(w, "verdict: {verdict}");
    Outcome {
        seed: w.seed,
        params: w.params.clone(),
        violations: w.checker.violations.clone(),
        trace: w.take_trace(),
        sim_ms: w.elapsed_ms(),
        steps: w.steps,
        commits: w.checker.commits(),
    }
}
