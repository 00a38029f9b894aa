//! The HTTP API over TLS: an [`axum::serve::Listener`] that hands axum connections whose
//! TLS handshake already succeeded (Nomad's `tls { http = true }`).
//!
//! Handshakes run on tasks of their own, each bounded in time, behind a bound on how many
//! run at once, so a caller that connects and says nothing (or fails its handshake) never
//! holds up the next one nor stops the listener. A caller that speaks plain HTTP to the
//! HTTPS port is answered as Go's `net/http` answers it, with a 400 saying so, so the
//! CLI's error names the mistake instead of a broken connection.

use super::quic::{NetError, ParsedIdentity, TlsIdentity};
use crate::agent::config::{HttpsOptions, TlsMinVersion};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a caller may take to finish its handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
pub const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;
/// Handshaken connections waiting for axum to take them.
const READY_CONNECTIONS_MAX: usize = 64;
/// The most read from a plain-HTTP caller after its 400 (the rest of its request).
const PLAIN_HTTP_DRAIN_MAX_BYTES: usize = 64 * 1024;
/// The first byte of every TLS record that opens a handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// What Go's HTTP server answers a plain-HTTP request on a TLS port with.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The server side of the API's TLS: the agent's certificate, the TLS versions from
/// `options.min_version` on, and with `options.verify_client` a caller must present a
/// certificate signed by the cluster's CA.
pub fn server_config(
    identity: &TlsIdentity,
    options: HttpsOptions,
) -> Result<Arc<rustls::ServerConfig>, NetError> {
    let tls = |e: &dyn std::fmt::Display| NetError::Tls(e.to_string());
    let ParsedIdentity { roots, chain, key } = identity.parse()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(options.min_version))
        .map_err(|e| tls(&e))?;
    let builder = if options.verify_client {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| tls(&e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS versions spoken from `min_version` on (rustls speaks none older than 1.2).
pub fn protocol_versions(
    min_version: TlsMinVersion,
) -> &'static [&'static rustls::SupportedProtocolVersion] {
    const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min_version {
        TlsMinVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsMinVersion::Tls13 => TLS13_ONLY,
    }
}

/// A TCP listener whose connections come out TLS-handshaken. Must be made inside a tokio
/// runtime; dropping it stops the accepting task.
pub struct HttpsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl HttpsListener {
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<HttpsListener> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_CONNECTIONS_MAX);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
        Ok(HttpsListener { ready, local_addr })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ends only when this listener is dropped; until then
            // there is simply nothing to hand out.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections and handshakes each on a task of its own until the listener
/// is dropped.
async fn accept_loop(
    mut listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        // axum's accept retries (and backs off on) errors such as running out of files.
        let (stream, from) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = ready.closed() => return,
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            let handshaken = tokio::time::timeout(timeout, handshake(stream, acceptor)).await;
            drop(permit);
            if let Ok(Some(stream)) = handshaken {
                let _closed = ready.send((stream, from)).await;
            }
        });
    }
}

/// The TLS handshake, or `None` when it failed (the caller sees the TLS alert) or the
/// caller spoke plain HTTP (it got the 400 that says so).
async fn handshake(stream: TcpStream, acceptor: TlsAcceptor) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let peeked = stream.peek(&mut first).await.ok()?;
    if peeked == 1 && first[0] != TLS_HANDSHAKE_RECORD {
        answer_plain_http(stream).await;
        return None;
    }
    acceptor.accept(stream).await.ok()
}

/// Answers a plain-HTTP caller with the 400, then reads what it still sends until it
/// closes, so closing on unread bytes does not reset the connection under the answer.
async fn answer_plain_http(mut stream: TcpStream) {
    if stream.write_all(PLAIN_HTTP_ANSWER).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut left = PLAIN_HTTP_DRAIN_MAX_BYTES;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(read) => left = left.saturating_sub(read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CA_DAYS_DEFAULT, CertSpec, DOMAIN_DEFAULT, Role, create_ca, create_cert};
    use tokio_rustls::TlsConnector;

    /// A CA and a server identity signed by it.
    fn identity() -> TlsIdentity {
        let now = time::OffsetDateTime::now_utc();
        let ca = create_ca(DOMAIN_DEFAULT, CA_DAYS_DEFAULT, now).unwrap();
        let spec = CertSpec {
            role: Role::Server,
            region: "global".into(),
            domain: DOMAIN_DEFAULT.into(),
            days: 1,
            extra_dns_names: vec![],
            extra_ips: vec![],
        };
        let server = create_cert(&ca, &spec, now).unwrap();
        TlsIdentity { ca_pem: ca.cert_pem, cert_pem: server.cert_pem, key_pem: server.key_pem }
    }

    /// Writes `bytes` on a fresh connection, closes its sending side and reads until the
    /// server closes.
    async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn options(min_version: TlsMinVersion) -> HttpsOptions {
        HttpsOptions { verify_client: false, min_version }
    }

    /// An API over HTTPS from `min_version` on, answering `hello`.
    async fn serve_hello(identity: &TlsIdentity, min_version: TlsMinVersion) -> SocketAddr {
        let config = server_config(identity, options(min_version)).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = HttpsListener::new(tcp, config).unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// What a caller gets from `addr`: the TLS version agreed and the answer, or the
    /// handshake's error. It speaks only `version` if one is given, else every version
    /// rustls deems safe.
    async fn call_with(
        identity: &TlsIdentity,
        addr: SocketAddr,
        version: Option<&'static rustls::SupportedProtocolVersion>,
    ) -> String {
        let ParsedIdentity { roots, .. } = identity.parse().unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider);
        let builder = match version {
            Some(version) => builder.with_protocol_versions(&[version]),
            None => builder.with_safe_default_protocol_versions(),
        };
        let client = builder.unwrap().with_root_certificates(roots).with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = match connector.connect(name, tcp).await {
            Ok(tls) => tls,
            Err(error) => return format!("refused: {error}"),
        };
        let agreed = tls.get_ref().1.protocol_version();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer.lines().next().unwrap_or_default().to_owned();
        let body = answer.rsplit("\r\n").next().unwrap_or_default();
        format!("{agreed:?} {status} {body}")
    }

    #[tokio::test]
    async fn tls_min_version_decides_whether_a_tls_1_2_caller_is_served() {
        let identity = identity();
        let tls12 = serve_hello(&identity, TlsMinVersion::Tls12).await;
        let tls13 = serve_hello(&identity, TlsMinVersion::Tls13).await;
        let served = |addr, version| call_with(&identity, addr, Some(version));
        let hello = |version: &str| format!("Some({version}) HTTP/1.1 200 OK hello");
        assert_eq!(served(tls12, &rustls::version::TLS12).await, hello("TLSv1_2"));
        assert_eq!(served(tls12, &rustls::version::TLS13).await, hello("TLSv1_3"));
        assert_eq!(served(tls13, &rustls::version::TLS13).await, hello("TLSv1_3"));
        assert_eq!(
            served(tls13, &rustls::version::TLS12).await,
            "refused: received fatal alert: ProtocolVersion"
        );
    }

    #[tokio::test]
    async fn bad_callers_are_turned_away_and_the_listener_keeps_serving() {
        let identity = identity();
        let addr = serve_hello(&identity, TlsMinVersion::Tls12).await;

        let plain = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(plain.ends_with("Client sent an HTTP request to an HTTPS server.\n"), "{plain}");
        // A handshake record that is no ClientHello: the handshake fails, nothing more.
        let broken = exchange(addr, &[0x16, 0x03, 0x01, 0x00, 0x02, 0xff, 0xff]).await;
        assert!(!broken.contains("HTTP/"), "{broken}");

        let served = call_with(&identity, addr, None).await;
        assert_eq!(served, "Some(TLSv1_3) HTTP/1.1 200 OK hello");
    }
}
