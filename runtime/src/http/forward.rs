//! Requests about an allocation that runs on another node, carried to that node's agent.
//!
//! `alloc signal`, `alloc restart` and `alloc logs` act on the client that runs the
//! allocation, but an operator points the CLI at any agent, usually a server. When this
//! agent's client does not run the allocation, the request is sent on, unchanged, to the
//! HTTP API of the node that does (its `HTTPAddr`), and that agent's answer is passed
//! back: a restart's or signal's answer read whole (bounded), a log stream streamed as it
//! arrives, followed or not.
//!
//! Why an HTTP proxy and not a request over the QUIC connection a client keeps with the
//! servers (Nomad's model): a client talks to one server at a time and no server records
//! where a node's connection is, so that route would first need every server to learn
//! which one holds the node, a request kind the servers pass between themselves, and a
//! stream protocol with flow control for followed logs over frames that today are one
//! message each. The node's own API already serves all three requests, streams logs with
//! HTTP's flow control, and is reachable from the servers wherever Nomad's own CLI reaches
//! it (Nomad's API client goes to a node's `HTTPAddr` for logs). The proxy speaks HTTPS
//! when `tls { http = true }`, verifying the node's certificate against the cluster's CA
//! and the region's agent names and presenting this agent's own certificate, so
//! `verify_https_client` holds on the node too. What it costs: the node's HTTP port must
//! be reachable from the agent the operator calls (`advertise { http }` names it).
//!
//! Every step is bounded: the connection and the answer's head arrive within
//! [`FORWARD_ANSWER_TIMEOUT_MS`] (else "No path to node", Nomad's wording), the head is at
//! most [`FORWARD_HEAD_LEN_MAX_BYTES`], a whole answer at most
//! [`FORWARD_BODY_LEN_MAX_BYTES`] (an answer over either bound is refused with an error
//! naming it, since the node was reached and "No path" would mislead); a followed stream's connection is kept alive by TCP
//! keep-alives, so a node that vanishes ends it instead of holding it open forever. A
//! request already forwarded once is never forwarded again: two agents whose views
//! disagree answer "No path to node" instead of passing it back and forth.

use super::{ApiError, ApiResult, Params, read, rows};
use crate::agent::AgentHandle;
use crate::agent::config::TlsMinVersion;
use crate::net::quic::{NetError, TlsIdentity};
use crate::tls::{DOMAIN_DEFAULT, Role};
use axum::body::{Body, Bytes};
use axum::extract::FromRequest;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use axum::response::{IntoResponse, Response};
use drover_core::model::{Allocation, Node, NodeStatus};
use drover_core::server::Query;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long the node's agent may take to accept the connection, finish the TLS handshake
/// and send the head of its answer. It is longer than a client-only agent's own wait for
/// a server ([`crate::agent`]'s forward timeout), so the node's answer, even an error,
/// arrives first.
pub const FORWARD_ANSWER_TIMEOUT_MS: u64 = 15_000;
/// The most bytes of status line and headers read from the node's agent.
pub const FORWARD_HEAD_LEN_MAX_BYTES: usize = 64 * 1024;
/// The most bytes of an answer read whole (a restart's or signal's, an `alloc fs` listing
/// or stat, or an error).
pub const FORWARD_BODY_LEN_MAX_BYTES: usize = 1024 * 1024;
/// Idle time before the first TCP keep-alive probe on a forwarded connection.
const KEEPALIVE_IDLE_MS: u64 = 15_000;
/// Between keep-alive probes; after [`KEEPALIVE_PROBES`] unanswered, the stream ends.
const KEEPALIVE_INTERVAL_MS: u64 = 5_000;
const KEEPALIVE_PROBES: u32 = 3;
/// Marks a request one agent forwarded to another.
const FORWARDED_HEADER: &str = "x-drover-forwarded";
/// The caller's ACL token, which the node's agent judges the request by.
const TOKEN_HEADER: &str = "x-nomad-token";
/// Nomad's answer when the node that runs an allocation cannot be reached.
const NO_PATH: &str = "No path to node";

/// How this agent speaks to other nodes' HTTP APIs: as its own API is served.
#[derive(Clone, Debug)]
pub enum NodeHttp {
    Plain,
    /// HTTPS verified against the cluster's CA, this agent's certificate presented.
    Https(Arc<rustls::ClientConfig>),
}

impl NodeHttp {
    /// HTTPS to the region's agents, from `min_version` on: a node's certificate must
    /// chain to `identity`'s CA and name a client or a server of `region` (an agent that
    /// is both holds a server certificate).
    pub fn https(
        identity: &TlsIdentity,
        region: &str,
        min_version: TlsMinVersion,
    ) -> Result<NodeHttp, NetError> {
        let tls = |e: &dyn std::fmt::Display| NetError::Tls(e.to_string());
        let parsed = identity.parse()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            parsed.roots,
            provider.clone(),
        )
        .build()
        .map_err(|e| tls(&e))?;
        let names = [Role::Client, Role::Server].map(|role| role.dns_name(region, DOMAIN_DEFAULT));
        let names = names
            .into_iter()
            .map(|name| ServerName::try_from(name).map_err(|e| tls(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        let verifier = Arc::new(AgentNames { webpki, names });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(crate::net::https::protocol_versions(min_version))
            .map_err(|e| tls(&e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(parsed.chain, parsed.key)
            .map_err(|e| tls(&e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(NodeHttp::Https(Arc::new(config)))
    }
}

/// Accepts a certificate that chains to the CA and names one of `names`, whatever name
/// the connection was opened with (a node is dialled by its address).
#[derive(Debug)]
struct AgentNames {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for AgentNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut refused = rustls::Error::General("no agent name to verify".into());
        for name in &self.names {
            match self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(error) => refused = error,
            }
        }
        Err(refused)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// What the caller of a forwarded request gets of the node's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// Read whole, within the bounds, then answered.
    Whole,
    /// Passed on as it arrives (a log stream).
    Streamed,
}

/// The request as it reached this agent, to be sent on unchanged.
pub(super) struct Incoming {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Incoming, ApiError> {
        let (method, uri, headers) =
            (request.method().clone(), request.uri().clone(), request.headers().clone());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        Ok(Incoming { method, uri, headers, body })
    }
}

/// The allocation a request for its client names, read at once (only its node and job
/// matter, which never change); 404 with `missing` when the servers do not know it.
pub(super) async fn client_alloc(
    agent: &AgentHandle,
    alloc_id: &str,
    missing: &str,
) -> Result<Box<Allocation>, ApiError> {
    let query = Query::Alloc { alloc_id: alloc_id.to_owned() };
    let (result, _) = read(agent, &Params::default(), query).await?;
    rows!(result, Alloc)?.ok_or_else(|| ApiError::not_found(missing))
}

/// Whether `alloc` runs on this agent's own client.
pub(super) async fn runs_here(agent: &AgentHandle, alloc: &Allocation) -> Result<bool, ApiError> {
    let status = agent.status().await.map_err(|gone| ApiError::internal(gone.to_string()))?;
    Ok(!status.node_id.is_empty() && alloc.node_id == status.node_id)
}

/// Sends `request` to the agent of the node that runs `alloc` and answers with what it
/// answered: "Unknown node" when the servers do not know the node, "No path to node"
/// when it is down, names no HTTP address, or does not answer in time.
pub(super) async fn to_alloc_node(
    agent: &AgentHandle,
    alloc: &Allocation,
    request: Incoming,
    answer: Answer,
) -> ApiResult {
    if request.headers.contains_key(FORWARDED_HEADER) {
        // Sent here because the sender's servers placed the allocation on this node, yet
        // this agent's view says another: passing it on again could go round forever.
        return Err(ApiError::internal(NO_PATH));
    }
    let query = Query::Node { node_id: alloc.node_id.clone() };
    let (result, _) = read(agent, &Params::default(), query).await?;
    let node = rows!(result, Node)?;
    let addr = node_http_addr(node.as_deref())?;
    let timeout = Duration::from_millis(FORWARD_ANSWER_TIMEOUT_MS);
    let sent = send_within(&agent.config.node_http, addr, request, timeout).await;
    let response = sent.map_err(Unanswered::into_api_error)?;
    let (parts, body) = response.into_parts();
    let body = Body::new(body);
    let mut headers = HeaderMap::new();
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, content_type.clone());
    }
    let body = match answer {
        Answer::Streamed => body,
        Answer::Whole => match tokio::time::timeout(timeout, read_whole(body)).await {
            Ok(whole) => Body::from(whole.map_err(Unanswered::into_api_error)?),
            Err(_) => return Err(ApiError::internal(NO_PATH)),
        },
    };
    Ok((parts.status, headers, body).into_response())
}

/// Where a node's agent is reached, as the servers know the node: Nomad's "Unknown node"
/// for one they do not know, "No path to node" for one that is down or names no address.
fn node_http_addr(node: Option<&Node>) -> Result<&str, ApiError> {
    let node = node.ok_or_else(|| ApiError::internal("Unknown node"))?;
    if node.status == NodeStatus::Down || node.http_addr.is_empty() {
        return Err(ApiError::internal(NO_PATH));
    }
    Ok(&node.http_addr)
}

/// Why a forwarded request has no answer to pass on.
#[derive(Debug)]
enum Unanswered {
    /// The node's agent could not be reached or stopped answering: Nomad's "No path to
    /// node" to the caller, the cause kept for the tests.
    NoPath(String),
    /// It answered more than the bounds allow; the caller is told which bound.
    TooLong(String),
}

impl Unanswered {
    fn into_api_error(self) -> ApiError {
        match self {
            Unanswered::NoPath(_) => ApiError::internal(NO_PATH),
            Unanswered::TooLong(why) => ApiError::internal(why),
        }
    }
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::NoPath(why) | Unanswered::TooLong(why) => f.write_str(why),
        }
    }
}

impl From<String> for Unanswered {
    fn from(why: String) -> Unanswered {
        Unanswered::NoPath(why)
    }
}

/// An answer's body read whole, at most [`FORWARD_BODY_LEN_MAX_BYTES`] of it.
async fn read_whole(body: Body) -> Result<Bytes, Unanswered> {
    use futures_util::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut whole = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Unanswered::NoPath(e.to_string()))?;
        if whole.len() + chunk.len() > FORWARD_BODY_LEN_MAX_BYTES {
            return Err(Unanswered::TooLong(format!(
                "the answer of the node's agent is longer than {FORWARD_BODY_LEN_MAX_BYTES} bytes"
            )));
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(whole))
}

/// [`send`], given up after `timeout`.
async fn send_within(
    http: &NodeHttp,
    addr: &str,
    request: Incoming,
    timeout: Duration,
) -> Result<Response<hyper::body::Incoming>, Unanswered> {
    match tokio::time::timeout(timeout, send(http, addr, request)).await {
        Ok(sent) => sent,
        Err(_) => Err(Unanswered::NoPath(format!("no answer within {} ms", timeout.as_millis()))),
    }
}

/// Opens a connection to `addr` (TLS as `http` says), sends `request` and returns the
/// answer once its head arrived; the connection lives as long as the answer's body.
async fn send(
    http: &NodeHttp,
    addr: &str,
    request: Incoming,
) -> Result<Response<hyper::body::Incoming>, Unanswered> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    keep_alive(&tcp).map_err(|e| e.to_string())?;
    let outgoing = outgoing(addr, request).map_err(Unanswered::NoPath)?;
    match http {
        NodeHttp::Plain => exchange(tcp, outgoing).await,
        NodeHttp::Https(config) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            // The verifier checks the agent names, not this one; SNI carries the address.
            let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| e.to_string())?;
            let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
            exchange(tls, outgoing).await
        }
    }
}

/// The request as sent on: same method, path, query and body, marked as forwarded.
fn outgoing(addr: &str, request: Incoming) -> Result<Request<Body>, String> {
    let target = request.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut outgoing = Request::builder().method(request.method).uri(target);
    let headers = outgoing.headers_mut().ok_or("a request that cannot be built")?;
    // What the caller said about the body and about itself; nothing of this connection.
    let kept = [header::CONTENT_TYPE, header::ACCEPT, HeaderName::from_static(TOKEN_HEADER)];
    for name in kept {
        if let Some(value) = request.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    headers.insert(header::HOST, HeaderValue::from_str(addr).map_err(|e| e.to_string())?);
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
    outgoing.body(Body::from(request.body)).map_err(|e| e.to_string())
}

/// One HTTP/1.1 exchange over `io`, the connection driven by a task of its own until the
/// answer's body is read or dropped.
async fn exchange<T>(
    io: T,
    request: Request<Body>,
) -> Result<Response<hyper::body::Incoming>, Unanswered>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(FORWARD_HEAD_LEN_MAX_BYTES)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // Ends with the answer, or with an error the caller already saw as a cut stream.
        let _ended = connection.await;
    });
    sender.send_request(request).await.map_err(|e| {
        if e.is_parse_too_large() {
            Unanswered::TooLong(format!(
                "the head of the node's agent's answer is longer than \
                 {FORWARD_HEAD_LEN_MAX_BYTES} bytes"
            ))
        } else {
            Unanswered::NoPath(e.to_string())
        }
    })
}

/// TCP keep-alives on a forwarded connection: a followed log may be silent for hours, and
/// a node that vanished without closing must still end it.
fn keep_alive(tcp: &TcpStream) -> std::io::Result<()> {
    use rustix::net::sockopt;
    sockopt::set_socket_keepalive(tcp, true)?;
    sockopt::set_tcp_keepidle(tcp, Duration::from_millis(KEEPALIVE_IDLE_MS))?;
    sockopt::set_tcp_keepintvl(tcp, Duration::from_millis(KEEPALIVE_INTERVAL_MS))?;
    sockopt::set_tcp_keepcnt(tcp, KEEPALIVE_PROBES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::config::HttpsOptions;
    use crate::net::https::{HttpsListener, server_config};
    use crate::tls::{CA_DAYS_DEFAULT, CertSpec, PemPair, create_ca, create_cert};
    use axum::routing::get;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// The bound the tests give up after, short so a hang shows quickly.
    const TEST_TIMEOUT_MS: u64 = 500;

    fn identity(ca: &PemPair, role: Role, region: &str) -> TlsIdentity {
        let now = time::OffsetDateTime::now_utc();
        let spec = CertSpec {
            role,
            region: region.into(),
            domain: DOMAIN_DEFAULT.into(),
            days: 1,
            extra_dns_names: vec![],
            extra_ips: vec![],
        };
        let pair = create_cert(ca, &spec, now).unwrap();
        TlsIdentity { ca_pem: ca.cert_pem.clone(), cert_pem: pair.cert_pem, key_pem: pair.key_pem }
    }

    fn ca() -> PemPair {
        create_ca(DOMAIN_DEFAULT, CA_DAYS_DEFAULT, time::OffsetDateTime::now_utc()).unwrap()
    }

    /// A node's agent that echoes requests: whether one came marked as forwarded, and
    /// its target.
    fn echo_app() -> axum::Router {
        let echo = |headers: HeaderMap, uri: Uri| async move {
            format!("forwarded={} {uri}", headers.contains_key(FORWARDED_HEADER))
        };
        axum::Router::new().route("/echo", get(echo))
    }

    /// The status and body `addr` answers a forwarded `GET path` with, or the error.
    async fn outcome(http: &NodeHttp, addr: &str) -> String {
        let request = Incoming {
            method: Method::GET,
            uri: "/echo?task=t&follow=true".parse().unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let timeout = Duration::from_millis(TEST_TIMEOUT_MS);
        match send_within(http, addr, request, timeout).await {
            Ok(response) => {
                let status = response.status();
                let body = axum::body::to_bytes(Body::new(response.into_body()), 1024).await;
                format!("{status} {}", String::from_utf8_lossy(&body.unwrap()))
            }
            Err(error) => format!("error: {error}"),
        }
    }

    #[test]
    fn a_node_is_reached_at_its_http_address_unless_unknown_or_down() {
        let node = |status, http_addr: &str| Node {
            status,
            http_addr: http_addr.to_owned(),
            ..Node::default()
        };
        let route = |node: Option<&Node>| match node_http_addr(node) {
            Ok(addr) => addr.to_owned(),
            Err(error) => format!("{} {}", error.status.as_u16(), error.message),
        };
        assert_eq!(route(Some(&node(NodeStatus::Ready, "10.0.0.7:4646"))), "10.0.0.7:4646");
        assert_eq!(route(Some(&node(NodeStatus::Disconnected, "10.0.0.7:4646"))), "10.0.0.7:4646");
        assert_eq!(route(Some(&node(NodeStatus::Down, "10.0.0.7:4646"))), "500 No path to node");
        assert_eq!(route(Some(&node(NodeStatus::Ready, ""))), "500 No path to node");
        assert_eq!(route(None), "500 Unknown node");
    }

    #[tokio::test]
    async fn a_request_goes_on_unchanged_and_marked_as_forwarded() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(tcp, echo_app()).await });
        assert_eq!(
            outcome(&NodeHttp::Plain, &addr).await,
            "200 OK forwarded=true /echo?task=t&follow=true"
        );
    }

    #[tokio::test]
    async fn over_https_only_a_node_of_the_region_signed_by_the_ca_is_trusted() {
        let ca = ca();
        // The node asks for a client certificate, as `verify_https_client` does.
        let node = identity(&ca, Role::Client, "eu");
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap().to_string();
        let options = HttpsOptions { verify_client: true, min_version: TlsMinVersion::Tls12 };
        let listener = HttpsListener::new(tcp, server_config(&node, options).unwrap()).unwrap();
        tokio::spawn(async move { axum::serve(listener, echo_app()).await });
        let https = |identity: &TlsIdentity, region: &str| {
            NodeHttp::https(identity, region, TlsMinVersion::Tls12)
        };

        let same_region = https(&identity(&ca, Role::Server, "eu"), "eu").unwrap();
        let answer = outcome(&same_region, &addr).await;
        assert_eq!(answer, "200 OK forwarded=true /echo?task=t&follow=true");
        let other_region = https(&identity(&ca, Role::Server, "us"), "us").unwrap();
        let answer = outcome(&other_region, &addr).await;
        assert!(answer.contains("certificate not valid for name"), "{answer}");
        let other_ca = https(&identity(&self::ca(), Role::Server, "eu"), "eu").unwrap();
        let answer = outcome(&other_ca, &addr).await;
        // Another CA of the same name: its signature does not verify.
        assert!(answer.contains("invalid peer certificate: BadSignature"), "{answer}");
        // An agent that speaks plain HTTP to it passes on the node's own word for that.
        let answer = outcome(&NodeHttp::Plain, &addr).await;
        assert_eq!(answer, "400 Bad Request Client sent an HTTP request to an HTTPS server.\n");
    }

    #[tokio::test]
    async fn a_silent_an_oversized_or_an_absent_node_is_given_up_within_the_bounds() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let held = silent.accept().await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(held);
        });
        let answer = outcome(&NodeHttp::Plain, &silent_addr).await;
        assert_eq!(answer, format!("error: no answer within {TEST_TIMEOUT_MS} ms"));

        let oversized = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let oversized_addr = oversized.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = oversized.accept().await.unwrap();
            let padding = "x".repeat(1024);
            let mut head = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..FORWARD_HEAD_LEN_MAX_BYTES / 1024 + 1 {
                head.push_str(&format!("X-Pad-{i}: {padding}\r\n"));
            }
            let _written = stream.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let answer = outcome(&NodeHttp::Plain, &oversized_addr).await;
        let too_long = format!(
            "error: the head of the node's agent's answer is longer than \
             {FORWARD_HEAD_LEN_MAX_BYTES} bytes"
        );
        assert_eq!(answer, too_long);

        // A whole answer over its bound names the bound.
        let long_body = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let long_body_addr = long_body.local_addr().unwrap().to_string();
        let body = "x".repeat(FORWARD_BODY_LEN_MAX_BYTES + 1);
        tokio::spawn(async move {
            let app = axum::Router::new().route("/echo", get(move || async move { body }));
            axum::serve(long_body, app).await
        });
        let request = Incoming {
            method: Method::GET,
            uri: "/echo".parse().unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let timeout = Duration::from_millis(TEST_TIMEOUT_MS);
        let response = send_within(&NodeHttp::Plain, &long_body_addr, request, timeout).await;
        let whole = read_whole(Body::new(response.unwrap().into_body())).await;
        let refused = format!(
            "the answer of the node's agent is longer than {FORWARD_BODY_LEN_MAX_BYTES} bytes"
        );
        assert_eq!(whole.unwrap_err().to_string(), refused);

        // A port nothing listens on any more.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let answer = outcome(&NodeHttp::Plain, &closed_addr).await;
        assert!(answer.contains("refused"), "{answer}");
    }
}
