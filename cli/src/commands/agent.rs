//! `drover agent`: `-dev` (a server and a client in one process), or a server of a real
//! cluster from `-config` files and flags; the HTTP API on top, until SIGINT or SIGTERM.
//! `drover executor` is the hidden mode raw_exec starts tasks under.

use super::{Io, parse_flags};
use crate::flags::FlagSpec;
use drover_runtime::agent::config::{self, FileConfig, HttpTls, HttpsOptions};
use drover_runtime::agent::log::{AgentLog, LogLevel};
use drover_runtime::agent::{
    AgentHandle, ClusterConfig, DevConfig, LoopEnd, start_cluster, start_dev,
};
use drover_runtime::http::NodeHttp;
use drover_runtime::net::https::{self, HttpsListener};
use drover_runtime::net::quic::TlsIdentity;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HELP: &str = "\
Usage: drover agent [options]

  Starts the drover agent and runs until an interrupt is received. The agent
  is either a server of a cluster (-server, or server { enabled = true } in
  a -config file) or, in development mode (-dev), a server and a client in
  one process with state in memory and raw_exec enabled. Outside -dev the
  agents verify each other with the cluster's CA (drover tls ca create,
  drover tls cert create -server), named in the tls {} block.

General Options:

  -config=<path>
    An agent configuration file in HCL (data_dir, bind_addr, region,
    datacenter, name, log_level, ports, addresses, advertise, server, client,
    tls, autopilot). May be given more than once: later files win, and flags win
    over files. With -dev the files apply over the development defaults, so
    tls { http = true ... } serves the API over HTTPS.

  -dev
    Start the agent in development mode: a server and a client in one
    process, the Raft log in memory, allocations under a temporary data
    directory removed on exit.

  -bind=<addr>
    The address every service binds (bind_addr). Defaults to 127.0.0.1 in
    -dev, 0.0.0.0 otherwise.

  -http-port=<port>
    The HTTP API's port. Defaults to 4646. With -dev, 0 picks a free port, which
    the ready line names.

  -data-dir=<path>
    Where the agent keeps its state: the Raft log and snapshots of a server,
    allocations. In -dev defaults to a fresh temporary directory, which is
    removed on exit.

  -node=<name>
    The client node's name. Defaults to the machine's hostname.

  -dc=<datacenter>
    The datacenter of the node. Defaults to dc1.

  -region=<region>
    The region of the agent. Defaults to global.

  -log-level=<level>
    The least severe level the agent logs to standard output: trace, debug,
    info, warn, error or off (log_level in a -config file). Defaults to info.

Server Options:

  -server
    Run a server: Raft and RPC on port 4647, gossip on 4648.

  -bootstrap-expect=<n>
    How many servers form the region. The servers find each other by gossip
    and start Raft once n are known; a server with Raft state in its data
    directory resumes from it instead.

  -retry-join=<addr,...>
    Gossip addresses of other servers to join (port 4648 by default).

  -encrypt=<key>
    The region's gossip encryption key (server { encrypt }): every server of
    the region needs the same one. Make one with
    drover operator gossip keyring generate.

Client Options:

  -client
    Run a client: it registers with the servers it is given and runs what
    they place on it.

  -servers=<addr,...>
    RPC addresses of the servers a client reports to.
";

const FLAGS: &[FlagSpec] = &[
    FlagSpec::bool("dev"),
    FlagSpec::repeated("config"),
    FlagSpec::bool("server"),
    FlagSpec::bool("client"),
    FlagSpec::value("bootstrap-expect"),
    FlagSpec::value("servers"),
    FlagSpec::value("retry-join"),
    FlagSpec::value("encrypt"),
    FlagSpec::value("bind"),
    FlagSpec::value("http-port"),
    FlagSpec::value("data-dir"),
    FlagSpec::value("node"),
    FlagSpec::value("dc"),
    FlagSpec::value("region"),
    FlagSpec::value("log-level"),
];

/// How often readiness (the node registered) is looked at while starting.
const READY_POLL_MS: u64 = 5;
/// How long open HTTP requests may take to finish once the agent is shutting down.
const HTTP_DRAIN_MS: u64 = 1_000;
/// A start that is not ready by then has failed.
const READY_TIMEOUT_MS: u64 = 30_000;

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let flags = match parse_flags(args, FLAGS, HELP, io) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(io.err, "Error starting agent: {error}");
            return 1;
        }
    };
    if flags.is_set("dev") {
        let config = match dev_config(&flags) {
            Ok(config) => config,
            Err(message) => {
                let _ = writeln!(io.err, "{message}");
                return 1;
            }
        };
        return runtime.block_on(run_dev(config, io));
    }
    let config = match cluster_config(&flags) {
        Ok(config) => config,
        Err(message) => {
            let _ = writeln!(io.err, "{message}");
            return 1;
        }
    };
    runtime.block_on(run_cluster(config, io))
}

/// The `-config` files merged in order, then the flags over them. Every complaint is
/// the text to print.
fn merged_config(flags: &crate::flags::Parsed) -> Result<FileConfig, String> {
    let mut merged = FileConfig::default();
    for path in flags.all("config") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("Error loading configuration from {path}: {e}"))?;
        let file = config::parse(path, &text).map_err(|errors| errors.to_string())?;
        merged = merged.merge(file);
    }
    Ok(merged.merge(flag_config(flags)?))
}

/// A cluster agent's configuration, resolved, and its TLS files read.
fn cluster_config(
    flags: &crate::flags::Parsed,
) -> Result<(config::AgentSettings, TlsIdentity), String> {
    let settings = config::resolve(merged_config(flags)?, &hostname())?;
    let tls = read_tls_identity(&settings.tls)?;
    Ok((settings, tls))
}

/// A `-dev` agent's configuration over its defaults; when the API speaks HTTPS, the
/// agent's certificate and whether callers must show theirs.
fn dev_config(flags: &crate::flags::Parsed) -> Result<(config::DevSettings, DevHttps), String> {
    let settings = config::resolve_dev(merged_config(flags)?, &hostname())?;
    let https = match &settings.https {
        Some((files, options)) => Some((read_tls_identity(files)?, *options)),
        None => None,
    };
    Ok((settings, https))
}

/// The agent's certificate and whether HTTPS callers must show theirs.
type DevHttps = Option<(TlsIdentity, HttpsOptions)>;

/// The CA, certificate and key the `tls` block names.
fn read_tls_identity(files: &config::TlsFiles) -> Result<TlsIdentity, String> {
    let read = |what: &str, path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| format!("Error reading tls.{what} {}: {e}", path.display()))
    };
    Ok(TlsIdentity {
        ca_pem: read("ca_file", &files.ca_file)?,
        cert_pem: read("cert_file", &files.cert_file)?,
        key_pem: read("key_file", &files.key_file)?,
    })
}

/// What the flags say, as one more configuration laid over the files.
fn flag_config(flags: &crate::flags::Parsed) -> Result<FileConfig, String> {
    let mut config = FileConfig::default();
    let text = |name: &str| flags.last(name).map(str::to_owned);
    let list = |name: &str| {
        flags.last(name).map(|v| {
            v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        })
    };
    config.data_dir = text("data-dir");
    config.bind_addr = text("bind");
    config.region = text("region");
    config.datacenter = text("dc");
    config.name = text("node");
    if flags.is_set("server") {
        config.server.enabled = Some(true);
    }
    if flags.is_set("client") {
        config.client.enabled = Some(true);
    }
    if let Some(text) = flags.last("bootstrap-expect") {
        let n = text.parse::<u32>().ok().filter(|n| (1..=config::BOOTSTRAP_EXPECT_MAX).contains(n));
        let max = config::BOOTSTRAP_EXPECT_MAX;
        config.server.bootstrap_expect = Some(n.ok_or_else(|| {
            format!("Invalid -bootstrap-expect {text:?}: a number from 1 to {max}")
        })?);
    }
    config.server.retry_join = list("retry-join");
    if let Some(text) = flags.last("encrypt") {
        let key = config::GossipKeyText::parse(text);
        config.server.encrypt = Some(key.map_err(|why| format!("Invalid -encrypt: {why}"))?);
    }
    config.client.servers = list("servers");
    if let Some(text) = flags.last("log-level") {
        let level = LogLevel::parse(text).map_err(|why| format!("Invalid -log-level: {why}"))?;
        config.log_level = Some(level);
    }
    if let Some(text) = flags.last("http-port") {
        // 0 asks for an ephemeral port, which the ready line names (`-dev` only).
        let port = text.parse::<u16>().ok();
        config.ports.http =
            Some(port.ok_or_else(|| format!("Invalid -http-port {text:?}: not a port number"))?);
    }
    Ok(config)
}

fn hostname() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    hostname.trim().to_owned()
}

async fn run_cluster((settings, tls): (config::AgentSettings, TlsIdentity), io: &mut Io<'_>) -> u8 {
    let https = match settings.http_tls {
        HttpTls::Https(options) => Some((&tls, options)),
        HttpTls::Plain => None,
    };
    let listener = match api_listener(&settings.http_bind, https).await {
        Ok(listener) => listener,
        Err(message) => {
            let _ = writeln!(io.err, "Error starting agent: {message}");
            return 1;
        }
    };
    let http_addr = listener.local_addr();
    let scheme = settings.http_tls.scheme();
    let executor = match executor_command() {
        Ok(executor) => executor,
        Err(message) => {
            let _ = writeln!(io.err, "Error starting agent: {message}");
            return 1;
        }
    };
    let bootstrap_expect = settings.bootstrap_expect;
    let advertised = settings.http_advertise.clone();
    let log = AgentLog::stdout(settings.log_level);
    let config =
        ClusterConfig { settings, tls, http_addr: advertised, executor, rng_seed: seed(), log };
    let (agent, ended) = match start_cluster(config) {
        Ok(started) => started,
        Err(error) => {
            let _ = writeln!(io.err, "Error starting agent: {error}");
            return 1;
        }
    };
    print_banner(io, &agent, &http_addr, false);
    let _ = writeln!(
        io.out,
        "    agent: started: HTTP API on {scheme}://{http_addr}, RPC on {}, expecting {bootstrap_expect} server(s)",
        agent.config.rpc_addr
    );
    let http = listener.serve(&agent);
    until_stopped(agent, ended, http, io).await
}

/// The API's socket: plain HTTP, or HTTPS with the agent's certificate.
enum ApiListener {
    Plain(tokio::net::TcpListener),
    Https(HttpsListener),
}

impl ApiListener {
    fn local_addr(&self) -> String {
        use axum::serve::Listener;
        let addr = match self {
            ApiListener::Plain(listener) => listener.local_addr(),
            ApiListener::Https(listener) => listener.local_addr(),
        };
        addr.map_or_else(|e| format!("(unknown: {e})"), |a| a.to_string())
    }

    /// The URL scheme callers use.
    fn scheme(&self) -> &'static str {
        match self {
            ApiListener::Plain(_) => "http",
            ApiListener::Https(_) => "https",
        }
    }

    /// Serves the HTTP API over `agent` on this socket.
    fn serve(self, agent: &AgentHandle) -> HttpServer {
        match self {
            ApiListener::Plain(listener) => serve_http(agent, listener),
            ApiListener::Https(listener) => serve_http(agent, listener),
        }
    }
}

/// Binds the API's address; over TLS with the agent's certificate when `https` is given
/// (`tls { http = true }`), asking callers for theirs when its flag says so.
async fn api_listener(
    http_bind: &str,
    https: Option<(&TlsIdentity, HttpsOptions)>,
) -> Result<ApiListener, String> {
    let listener = bind(http_bind).await?;
    let Some((tls, options)) = https else {
        return Ok(ApiListener::Plain(listener));
    };
    let server_config =
        https::server_config(tls, options).map_err(|e| format!("cannot serve HTTPS: {e}"))?;
    let listener = HttpsListener::new(listener, server_config)
        .map_err(|e| format!("cannot serve HTTPS: {e}"))?;
    Ok(ApiListener::Https(listener))
}

async fn run_dev((settings, https): (config::DevSettings, DevHttps), io: &mut Io<'_>) -> u8 {
    let started = Instant::now();
    let https = https.as_ref().map(|(tls, options)| (tls, *options));
    let listener = match api_listener(&settings.http_bind, https).await {
        Ok(listener) => listener,
        Err(message) => {
            let _ = writeln!(io.err, "Error starting agent: {message}");
            return 1;
        }
    };
    let http_addr = listener.local_addr();
    let scheme = listener.scheme();
    // A temporary data directory lives exactly as long as this value.
    let (data_dir, _temporary) = match data_dir(settings.data_dir.as_deref()) {
        Ok(dirs) => dirs,
        Err(message) => {
            let _ = writeln!(io.err, "Error starting agent: {message}");
            return 1;
        }
    };
    let executor = match executor_command() {
        Ok(executor) => executor,
        Err(message) => {
            let _ = writeln!(io.err, "Error starting agent: {message}");
            return 1;
        }
    };
    let config = DevConfig {
        region: settings.region,
        datacenter: settings.datacenter,
        node_name: settings.name,
        rpc_addr: settings.rpc_addr,
        http_addr: http_addr.clone(),
        // The one node is this agent: nothing to reach elsewhere.
        node_http: NodeHttp::Plain,
        data_dir,
        executor,
        rng_seed: seed(),
        autopilot: settings.autopilot,
        log: AgentLog::stdout(settings.log_level),
    };
    let (agent, ended) = match start_dev(config) {
        Ok(started) => started,
        Err(error) => {
            let _ = writeln!(io.err, "Error starting agent: {error}");
            return 1;
        }
    };
    print_banner(io, &agent, &http_addr, true);
    let http = listener.serve(&agent);
    if let Err(message) = await_ready(&agent).await {
        let _ = writeln!(io.err, "Error starting agent: {message}");
        return 1;
    }
    let ready_ms = started.elapsed().as_millis();
    let _ = writeln!(
        io.out,
        "    agent: ready: HTTP API on {scheme}://{http_addr}, node registered ({ready_ms} ms)"
    );
    until_stopped(agent, ended, http, io).await
}

type HttpServer = (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>);

/// Serves the HTTP API over `agent` until the returned sender fires.
fn serve_http<L>(agent: &AgentHandle, listener: L) -> HttpServer
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let app = drover_runtime::http::router(agent.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.await;
            })
            .await
    });
    (stop_http, server)
}

/// Waits for a signal (exit 0) or the node loop's end (exit 1), then shuts down: tasks
/// first, then the API.
async fn until_stopped(
    agent: AgentHandle,
    ended: LoopEnd,
    (stop_http, server): HttpServer,
    io: &mut Io<'_>,
) -> u8 {
    let code = tokio::select! {
        signal = shutdown_signal() => {
            let _ = writeln!(io.out, "==> Caught signal: {signal}");
            let _ = writeln!(io.out, "==> Gracefully shutting down agent...");
            0
        }
        end = ended => {
            let why = match end {
                Ok(Err(error)) => error.to_string(),
                _ => "the node loop stopped".to_owned(),
            };
            let _ = writeln!(io.err, "==> Agent stopped: {why}");
            1
        }
    };
    // Tasks first (they are stopped and their executors gone), then the API.
    let _ = agent.shutdown().await;
    let _ = stop_http.send(());
    // A followed log never ends by itself: connections still open by then are dropped.
    if tokio::time::timeout(Duration::from_millis(HTTP_DRAIN_MS), server).await.is_err() {
        let _ = writeln!(io.out, "==> Closed HTTP connections still open after {HTTP_DRAIN_MS} ms");
    }
    let _ = writeln!(io.out, "==> Agent shut down");
    code
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, String> {
    let parsed: SocketAddr = addr.parse().map_err(|_| format!("invalid bind address {addr:?}"))?;
    tokio::net::TcpListener::bind(parsed)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))
}

/// The given data directory, or a fresh temporary one (and the value that removes it).
fn data_dir(given: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    if let Some(dir) = given {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        return Ok((dir.to_owned(), None));
    }
    let temporary = tempfile::Builder::new()
        .prefix("drover-dev-")
        .tempdir()
        .map_err(|e| format!("cannot create a data directory: {e}"))?;
    Ok((temporary.path().to_owned(), Some(temporary)))
}

/// A seed for IDs and jitter that differs between runs.
fn seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// The command line raw_exec starts executors with: this binary's `executor` mode.
fn executor_command() -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the drover binary: {e}"))?;
    Ok(vec![exe.display().to_string(), "executor".to_owned()])
}

fn print_banner(io: &mut Io<'_>, agent: &AgentHandle, http_addr: &str, client: bool) {
    let config = &agent.config;
    let _ = write!(
        io.out,
        "==> Starting drover agent...\n\
         ==> drover agent configuration:\n\n\
         \x20      Advertise Addrs: HTTP: {http_addr}; RPC: {rpc}\n\
         \x20           Bind Addrs: HTTP: [{http_addr}]\n\
         \x20               Client: {client}\n\
         \x20             Data Dir: {data_dir}\n\
         \x20               Region: {region} (DC: {dc})\n\
         \x20               Server: true\n\
         \x20              Version: {version}\n\n\
         ==> drover agent started! Log data will stream in below:\n\n",
        rpc = config.rpc_addr,
        data_dir = config.data_dir.display(),
        region = config.region,
        dc = config.datacenter,
        version = env!("CARGO_PKG_VERSION"),
    );
}

/// Waits until the server leads and the client's node is registered.
async fn await_ready(agent: &AgentHandle) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    loop {
        let status = agent.status().await.map_err(|gone| gone.to_string())?;
        if status.leader_addr.is_some() && status.node_registered {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready within {READY_TIMEOUT_MS} ms"));
        }
        tokio::time::sleep(Duration::from_millis(READY_POLL_MS)).await;
    }
}

/// The name of the signal that asked the agent to stop.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        // Without signal handlers the agent can only be killed; wait forever.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "interrupt",
        _ = terminate.recv() => "terminated",
    }
}

/// `drover executor STATUS_DIR`: the process raw_exec runs each task under.
pub fn executor(args: &[String], io: &mut Io<'_>) -> u8 {
    let [status_dir] = args else {
        let _ = writeln!(io.err, "usage: drover executor STATUS_DIR");
        return 2;
    };
    match drover_runtime::driver::executor::run(Path::new(status_dir)) {
        Ok(_) => 0,
        Err(error) => {
            let _ = writeln!(io.err, "drover executor: {error}");
            1
        }
    }
}
