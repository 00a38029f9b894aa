//! The simulated network between nodes: madsim `Endpoint`s carry the messages, with
//! madsim's own latency (1 ms up to the seed's bound, so messages reorder), and this
//! module adds the seed's faults per message: partitions (cut directed links), loss,
//! duplication and long delays.
//!
//! A host's [`Transport`] only queues frames ([`Outbox`]); the node's loop carries them
//! out after each input, so a host never waits on the network.

use super::world::{NodeKey, Shared, World, lock};
use drover_core::server::{ApiCall, ApiResponse};
use drover_runtime::host::{SendError, Transport};
use madsim::net::{Endpoint, Payload};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

/// The madsim tag every message uses.
pub const TAG: u64 = 0x64_72_6f_76;

/// What travels between simulated machines.
#[derive(Clone, Debug)]
pub enum SimMsg {
    /// A host's encoded frame (`runtime::host::WireMessage`).
    Frame(Vec<u8>),
    /// An operator's call, from the API caller or from a server of another region.
    Api(ApiCall),
    /// Its answer, back along the way the call came.
    ApiReply(ApiResponse),
    /// A server's gossip datagram (`drover_core::gossip`), to another server of its region.
    Gossip(Vec<u8>),
}

impl SimMsg {
    fn kind(&self) -> &'static str {
        match self {
            SimMsg::Frame(_) => "frame",
            SimMsg::Api(_) => "api call",
            SimMsg::ApiReply(_) => "api reply",
            SimMsg::Gossip(_) => "gossip",
        }
    }
}

/// A host's transport: frames wait here until the node's loop sends them.
#[derive(Debug, Default)]
pub struct Outbox {
    pub frames: Vec<(String, Vec<u8>)>,
}

impl Transport for Outbox {
    fn send(&mut self, to: &str, frame: Vec<u8>) -> Result<(), SendError> {
        self.frames.push((to.to_owned(), frame));
        Ok(())
    }
}

/// Each peer's address as the host names it, formatted once: every received frame names
/// its sender, and formatting an address per frame was a visible share of a run.
#[derive(Debug, Default)]
pub struct AddrNames(BTreeMap<SocketAddr, String>);

impl AddrNames {
    pub fn name(&mut self, addr: SocketAddr) -> &str {
        self.0.entry(addr).or_insert_with(|| addr.to_string())
    }
}

/// How each copy of a message leaves: at once or after a delay.
fn fate(world: &mut World, from: Option<NodeKey>, to: SocketAddr) -> Vec<u64> {
    world.net.sent += 1;
    let to_key = NodeKey::from_addr(to);
    if let (Some(from), Some(to)) = (from, to_key)
        && world.cut.contains(&(from, to))
    {
        world.net.cut += 1;
        return Vec::new();
    }
    if !world.faulty {
        return vec![0];
    }
    let params = &world.params;
    let (loss, duplicate, spike, spike_max_ms) =
        (params.loss, params.duplicate, params.spike, params.spike_max_ms);
    if world.rng.chance(loss) {
        world.net.lost += 1;
        return Vec::new();
    }
    let copies = if world.rng.chance(duplicate) {
        world.net.duplicated += 1;
        2
    } else {
        1
    };
    (0..copies)
        .map(|_| {
            if world.rng.chance(spike) {
                world.net.delayed += 1;
                world.rng.range(1, spike_max_ms)
            } else {
                0
            }
        })
        .collect()
}

/// Sends `message` from `from` (a node, or the API caller when `None`) to `to`, with the
/// seed's faults.
pub async fn send(
    world: &Shared,
    ep: &Endpoint,
    from: Option<NodeKey>,
    to: SocketAddr,
    message: SimMsg,
) {
    let delays = {
        let mut world = lock(world);
        let delays = fate(&mut world, from, to);
        if world.tracing() && delays.is_empty() {
            let from = from.map_or("api".to_owned(), |k| k.name());
            let to = NodeKey::from_addr(to).map_or("api".to_owned(), |k| k.name());
            world.trace(format_args!("{from} -> {to} {} [dropped]", message.kind()));
        }
        delays
    };
    // Most messages leave once: the last copy takes the message itself, not a clone.
    let Some((&last_delay_ms, earlier)) = delays.split_last() else { return };
    for &delay_ms in earlier {
        send_copy(ep, to, message.clone(), delay_ms).await;
    }
    send_copy(ep, to, message, last_delay_ms).await;
}

/// Hands one copy of a message to madsim, at once or after `delay_ms`.
async fn send_copy(ep: &Endpoint, to: SocketAddr, message: SimMsg, delay_ms: u64) {
    if delay_ms == 0 {
        let _ = ep.send_to_raw(to, TAG, Box::new(message)).await;
    } else {
        let ep = ep.clone();
        madsim::task::spawn_local(async move {
            madsim::time::sleep(Duration::from_millis(delay_ms)).await;
            let _ = ep.send_to_raw(to, TAG, Box::new(message)).await;
        });
    }
}

/// A receive kept alive across the node's loop, so a timeout never drops a message that
/// was already taken from the mailbox.
pub type Recv = Pin<Box<dyn Future<Output = io::Result<(Payload, SocketAddr)>>>>;

pub fn recv(ep: &Endpoint) -> Recv {
    let ep = ep.clone();
    Box::pin(async move { ep.recv_from_raw(TAG).await })
}

pub enum Wake {
    Message(SimMsg, SocketAddr),
    Timeout,
    /// The endpoint closed: the node is going down.
    Closed,
}

/// Waits for the next message or until `deadline`, whichever comes first; a message
/// taken wins a tie, and `recv` is renewed after it.
pub async fn wait(ep: &Endpoint, receive: &mut Recv, deadline: Option<Instant>) -> Wake {
    let mut sleep = deadline.map(|at| Box::pin(madsim::time::sleep_until(at)));
    let received = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = receive.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if let Some(sleep) = sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    let Some(result) = received else { return Wake::Timeout };
    *receive = recv(ep);
    match result {
        // Every payload on the tag is a `SimMsg`; anything else is ignored.
        Ok((payload, from)) => match payload.downcast::<SimMsg>() {
            Ok(message) => Wake::Message(*message, from),
            Err(_) => Wake::Timeout,
        },
        Err(_) => Wake::Closed,
    }
}
