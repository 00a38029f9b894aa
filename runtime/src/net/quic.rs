//! QUIC between agents (quinn over rustls), with mutual TLS from the cluster's own CA.
//!
//! One endpoint both listens and dials. Every frame travels on its own unidirectional
//! stream, so a slow or lost frame never blocks the next one (no head-of-line blocking
//! between Raft heartbeats and a large snapshot chunk), and connections are cached per
//! peer and redialled when they fail. Both ends present a certificate signed by the CA;
//! a dialler also checks that the peer's certificate names the role and region it meant
//! to reach (`server.global.drover`), so a client certificate cannot pose as a server.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The largest frame accepted from a peer; larger streams are reset unread.
pub const FRAME_LEN_MAX_BYTES: usize = drover_core::codec::FRAME_LEN_MAX_BYTES_DEFAULT;
/// Frames received and not yet taken by the host; past this, peers wait (back-pressure).
pub const INBOUND_FRAMES_MAX: usize = 4096;
/// A connection that heard nothing from its peer for this long is closed, so the next
/// send redials: a peer that died (and maybe restarted on the same address, where it
/// cannot reset connections it does not know) is noticed within this.
pub const IDLE_TIMEOUT_MS: u32 = 5_000;
/// Keep-alives on an idle connection, well within the idle timeout.
pub const KEEP_ALIVE_MS: u64 = 1_000;

/// This agent's certificate and key, and the CA its peers' certificates must chain to.
#[derive(Clone)]
pub struct TlsIdentity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// How long a send may take, dialling included, before it is given up: a dead peer's
/// handshake would otherwise wait for the whole idle timeout.
pub const SEND_TIMEOUT_MS: u64 = 2_000;

/// A frame from a peer.
#[derive(Debug, PartialEq, Eq)]
pub struct Inbound {
    pub from: SocketAddr,
    /// The DNS names of the peer's certificate (verified against the CA): what role and
    /// region it holds (`server.global.drover`).
    pub peer_names: Arc<[String]>,
    pub frame: Vec<u8>,
}

impl Inbound {
    /// Whether the peer's certificate names `name`.
    pub fn peer_is(&self, name: &str) -> bool {
        self.peer_names.iter().any(|n| n == name)
    }
}

#[derive(Debug)]
pub enum NetError {
    Tls(String),
    Bind(std::io::Error),
    Connect { to: SocketAddr, reason: String },
    Send { to: SocketAddr, reason: String },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Tls(reason) => write!(f, "TLS configuration: {reason}"),
            NetError::Bind(error) => write!(f, "cannot bind the QUIC endpoint: {error}"),
            NetError::Connect { to, reason } => write!(f, "cannot connect to {to}: {reason}"),
            NetError::Send { to, reason } => write!(f, "cannot send to {to}: {reason}"),
        }
    }
}

impl std::error::Error for NetError {}

/// A QUIC endpoint: `send` frames to peers, `recv` what peers sent.
pub struct QuicNet {
    sender: QuicSender,
    inbound: mpsc::Receiver<Inbound>,
}

/// The sending half of a [`QuicNet`], cheap to clone into the tasks that send.
#[derive(Clone)]
pub struct QuicSender {
    endpoint: quinn::Endpoint,
    connections: Arc<Mutex<HashMap<(SocketAddr, String), quinn::Connection>>>,
}

impl QuicNet {
    /// Binds `addr` (port 0 picks a free one) and starts accepting peers. Must run inside
    /// a tokio runtime.
    pub fn bind(addr: SocketAddr, identity: &TlsIdentity) -> Result<QuicNet, NetError> {
        let (server, client) = configs(identity)?;
        let mut endpoint = quinn::Endpoint::server(server, addr).map_err(NetError::Bind)?;
        endpoint.set_default_client_config(client);
        let (sender, inbound) = mpsc::channel(INBOUND_FRAMES_MAX);
        tokio::spawn(accept_loop(endpoint.clone(), sender));
        Ok(QuicNet { sender: QuicSender { endpoint, connections: Arc::default() }, inbound })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sender.endpoint.local_addr().expect("a bound endpoint has an address")
    }

    /// A sender for tasks of their own.
    pub fn sender(&self) -> QuicSender {
        self.sender.clone()
    }

    /// Sends one frame to `to`, whose certificate must name `peer_name`.
    pub async fn send(
        &self,
        to: SocketAddr,
        peer_name: &str,
        frame: &[u8],
    ) -> Result<(), NetError> {
        self.sender.send(to, peer_name, frame).await
    }

    /// The next frame a peer sent; `None` once the endpoint is closed.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.inbound.recv().await
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.sender.endpoint.close(0u32.into(), b"shutting down");
    }
}

impl QuicSender {
    /// Sends one frame to `to`, whose certificate must name `peer_name`, within
    /// [`SEND_TIMEOUT_MS`].
    pub async fn send(
        &self,
        to: SocketAddr,
        peer_name: &str,
        frame: &[u8],
    ) -> Result<(), NetError> {
        let timeout = std::time::Duration::from_millis(SEND_TIMEOUT_MS);
        match tokio::time::timeout(timeout, self.send_now(to, peer_name, frame)).await {
            Ok(sent) => sent,
            Err(_) => {
                self.forget(to, peer_name);
                let reason = format!("not sent within {SEND_TIMEOUT_MS} ms");
                Err(NetError::Send { to, reason })
            }
        }
    }

    fn forget(&self, to: SocketAddr, peer_name: &str) {
        self.connections.lock().expect("not poisoned").remove(&(to, peer_name.to_owned()));
    }

    async fn send_now(
        &self,
        to: SocketAddr,
        peer_name: &str,
        frame: &[u8],
    ) -> Result<(), NetError> {
        let connection = self.connection(to, peer_name).await?;
        let sent = async {
            let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
            stream.write_all(frame).await.map_err(|e| e.to_string())?;
            stream.finish().map_err(|e| e.to_string())
        };
        match sent.await {
            Ok(()) => Ok(()),
            Err(reason) => {
                // The next send redials instead of reusing a broken connection.
                self.forget(to, peer_name);
                Err(NetError::Send { to, reason })
            }
        }
    }

    async fn connection(
        &self,
        to: SocketAddr,
        peer_name: &str,
    ) -> Result<quinn::Connection, NetError> {
        let key = (to, peer_name.to_owned());
        let cached = self.connections.lock().expect("not poisoned").get(&key).cloned();
        if let Some(connection) = cached.filter(|c| c.close_reason().is_none()) {
            return Ok(connection);
        }
        let connect_error = |reason: String| NetError::Connect { to, reason };
        let connecting =
            self.endpoint.connect(to, peer_name).map_err(|e| connect_error(e.to_string()))?;
        let connection = connecting.await.map_err(|e| connect_error(e.to_string()))?;
        self.connections.lock().expect("not poisoned").insert(key, connection.clone());
        Ok(connection)
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, sender: mpsc::Sender<Inbound>) {
    while let Some(incoming) = endpoint.accept().await {
        let sender = sender.clone();
        tokio::spawn(async move {
            // A peer that fails the handshake (wrong CA, no certificate) is dropped here.
            let Ok(connection) = incoming.await else { return };
            let from = connection.remote_address();
            let peer_names = peer_dns_names(&connection);
            while let Ok(mut stream) = connection.accept_uni().await {
                let sender = sender.clone();
                let peer_names = Arc::clone(&peer_names);
                tokio::spawn(async move {
                    let Ok(frame) = stream.read_to_end(FRAME_LEN_MAX_BYTES).await else {
                        // Too large or cut short: dropped whole, never half-delivered.
                        let _reset = stream.stop(1u32.into());
                        return;
                    };
                    let _closed = sender.send(Inbound { from, peer_names, frame }).await;
                });
            }
        });
    }
}

/// The DNS names of the certificate a verified peer presented.
fn peer_dns_names(connection: &quinn::Connection) -> Arc<[String]> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let identity = connection.peer_identity();
    let chain = identity.as_ref().and_then(|i| i.downcast_ref::<Vec<CertificateDer<'static>>>());
    let Some(leaf) = chain.and_then(|c| c.first()) else { return Arc::from([]) };
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else { return Arc::from([]) };
    let Ok(Some(names)) = cert.subject_alternative_name() else { return Arc::from([]) };
    let dns = names.value.general_names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        _ => None,
    });
    dns.collect()
}

/// An identity's PEM read: the CA as roots, this agent's chain and key.
pub(crate) struct ParsedIdentity {
    pub roots: Arc<rustls::RootCertStore>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn tls_error(e: &dyn fmt::Display) -> NetError {
    NetError::Tls(e.to_string())
}

impl TlsIdentity {
    pub(crate) fn parse(&self) -> Result<ParsedIdentity, NetError> {
        let tls = tls_error;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| tls(&e))?;
        Ok(ParsedIdentity { roots: Arc::new(roots), chain, key })
    }
}

fn configs(identity: &TlsIdentity) -> Result<(quinn::ServerConfig, quinn::ClientConfig), NetError> {
    let tls = tls_error;
    let ParsedIdentity { roots, chain, key } = identity.parse()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls(&e))?;
    let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| tls(&e))?;
    let client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls(&e))?;

    let server_crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).map_err(|e| tls(&e))?;
    let client_crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(|e| tls(&e))?;
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    transport.keep_alive_interval(Some(std::time::Duration::from_millis(KEEP_ALIVE_MS)));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    Ok((server, client))
}
