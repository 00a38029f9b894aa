//! The host's [`Transport`] over a [`QuicNet`]: the host's `send` is sync, the network is
//! not, so each destination gets a queue and a task that sends its frames one after the
//! other on the node loop's tokio runtime.
//!
//! A destination is a server when its address is one of the region's servers (the peer
//! must then hold `server.<region>.<domain>`), a client otherwise (a reply goes back to
//! the address its request came from, whose certificate must say `client.<region>...`).

use super::quic::QuicSender;
use crate::host::{SendError, Transport};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Frames queued for one destination; a send past this is refused, as a full socket
/// buffer would be, and the host counts it and retries as it would on any failure.
pub const PEER_QUEUE_FRAMES_MAX: usize = 1024;

/// A frame on its way, with the name the peer's certificate must hold.
type Outgoing = (Arc<str>, Vec<u8>);

/// One agent's way out to its peers. Must be used inside a tokio runtime.
pub struct QuicTransport {
    sender: QuicSender,
    server_name: String,
    client_name: String,
    /// The RPC addresses of the region's servers.
    servers: BTreeSet<String>,
    /// A client agent's transport: every destination is a server.
    only_servers: bool,
    queues: HashMap<SocketAddr, mpsc::Sender<Outgoing>>,
    /// Frames accepted here that the network then failed to deliver.
    lost: Arc<AtomicU64>,
}

impl QuicTransport {
    /// `server_name` and `client_name` are what the two roles' certificates name
    /// (`server.global.drover`, `client.global.drover`).
    pub fn new(sender: QuicSender, server_name: String, client_name: String) -> QuicTransport {
        QuicTransport {
            sender,
            server_name,
            client_name,
            servers: BTreeSet::new(),
            only_servers: false,
            queues: HashMap::new(),
            lost: Arc::default(),
        }
    }

    /// A client's transport: it talks to servers only, whatever their address.
    pub fn to_servers_only(mut self) -> QuicTransport {
        self.only_servers = true;
        self
    }

    /// Frames to `addr` go to a server from now on.
    pub fn add_server(&mut self, addr: &str) {
        self.servers.insert(addr.to_owned());
    }

    /// Counts the frames accepted by `send` and then lost (the peer unreachable or too
    /// slow); the caller keeps it to read after the transport moved into a host.
    pub fn lost_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lost)
    }

    fn queue(&mut self, to: SocketAddr) -> &mpsc::Sender<Outgoing> {
        let sender = &self.sender;
        let lost = &self.lost;
        self.queues.entry(to).or_insert_with(|| {
            let (queue, frames) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
            tokio::spawn(send_loop(sender.clone(), to, frames, Arc::clone(lost)));
            queue
        })
    }
}

impl Transport for QuicTransport {
    fn send(&mut self, to: &str, frame: Vec<u8>) -> Result<(), SendError> {
        let refuse = |reason: String| SendError { to: to.to_owned(), reason };
        let addr: SocketAddr =
            to.parse().map_err(|_| refuse("not an ip:port address".to_owned()))?;
        let name = if self.only_servers || self.servers.contains(to) {
            &self.server_name
        } else {
            &self.client_name
        };
        let name: Arc<str> = Arc::from(name.as_str());
        self.queue(addr).try_send((name, frame)).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                refuse(format!("{PEER_QUEUE_FRAMES_MAX} frames already queued"))
            }
            mpsc::error::TrySendError::Closed(_) => refuse("the send task ended".to_owned()),
        })
    }
}

/// Sends one destination's frames in order. When a send fails, what is queued behind it
/// right then is dropped too: it would wait for the same dead peer, and Raft and the
/// client resend what matters.
async fn send_loop(
    sender: QuicSender,
    to: SocketAddr,
    mut frames: mpsc::Receiver<Outgoing>,
    lost: Arc<AtomicU64>,
) {
    while let Some((name, frame)) = frames.recv().await {
        if sender.send(to, &name, &frame).await.is_err() {
            let mut dropped = 1;
            while frames.try_recv().is_ok() {
                dropped += 1;
            }
            lost.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}
