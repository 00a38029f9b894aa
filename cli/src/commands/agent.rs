//! `drover agent -dev`: a server and a client in one process, the HTTP API on top, until
//! SIGINT or SIGTERM. `drover executor` is the hidden mode raw_exec starts tasks under.

use super::{Io, parse_flags};
use crate::flags::FlagSpec;
use drover_runtime::agent::{AgentHandle, DevConfig, start_dev};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HELP: &str = "\
Usage: drover agent [options]

  Starts the drover agent and runs until an interrupt is received.
  For now the agent runs only in development mode (-dev): a server and a
  client in one process, state in memory, raw_exec enabled.

General Options:

  -dev
    Start the agent in development mode: a server and a client in one
    process, the Raft log in memory, allocations under a temporary data
    directory removed on exit.

  -bind=<addr>
    The address the HTTP API listens on. Defaults to 127.0.0.1 in -dev.

  -http-port=<port>
    The HTTP API's port. Defaults to 4646.

  -data-dir=<path>
    Where allocations live. Defaults to a fresh temporary directory, which is
    removed on exit.

  -node=<name>
    The client node's name. Defaults to the machine's hostname.

  -dc=<datacenter>
    The datacenter of the node. Defaults to dc1.

  -region=<region>
    The region of the agent. Defaults to global.
";

const FLAGS: &[FlagSpec] = &[
    FlagSpec::bool("dev"),
    FlagSpec::value("bind"),
    FlagSpec::value("http-port"),
    FlagSpec::value("data-dir"),
    FlagSpec::value("node"),
    FlagSpec::value("dc"),
    FlagSpec::value("region"),
];

/// Nomad's ports: HTTP and RPC.
const HTTP_PORT_DEFAULT: u16 = 4646;
const RPC_PORT_DEFAULT: u16 = 4647;
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
    if !flags.is_set("dev") {
        let _ = writeln!(
            io.err,
            "Must specify -dev: servers and clients of a real cluster are not supported yet"
        );
        return 1;
    }
    let options = match DevOptions::from_flags(&flags) {
        Ok(options) => options,
        Err(message) => {
            let _ = writeln!(io.err, "{message}");
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(io.err, "Error starting agent: {error}");
            return 1;
        }
    };
    runtime.block_on(run_dev(options, io))
}

/// What the flags ask of a `-dev` agent.
struct DevOptions {
    bind: String,
    http_port: u16,
    data_dir: Option<PathBuf>,
    node: String,
    datacenter: String,
    region: String,
}

impl DevOptions {
    fn from_flags(flags: &crate::flags::Parsed) -> Result<DevOptions, String> {
        let http_port = match flags.last("http-port") {
            None => HTTP_PORT_DEFAULT,
            Some(text) => text
                .parse()
                .map_err(|_| format!("Invalid -http-port {text:?}: not a port number"))?,
        };
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let text = |name: &str, default: &str| flags.last(name).unwrap_or(default).to_owned();
        Ok(DevOptions {
            bind: text("bind", "127.0.0.1"),
            http_port,
            data_dir: flags.last("data-dir").map(PathBuf::from),
            node: text("node", hostname.trim()),
            datacenter: text("dc", "dc1"),
            region: text("region", "global"),
        })
    }
}

async fn run_dev(options: DevOptions, io: &mut Io<'_>) -> u8 {
    let started = Instant::now();
    let http_addr = format!("{}:{}", options.bind, options.http_port);
    let listener = match bind(&http_addr).await {
        Ok(listener) => listener,
        Err(message) => {
            let _ = writeln!(io.err, "Error starting agent: {message}");
            return 1;
        }
    };
    let http_addr = listener.local_addr().map_or(http_addr, |a| a.to_string());
    // A temporary data directory lives exactly as long as this value.
    let (data_dir, _temporary) = match data_dir(options.data_dir.as_deref()) {
        Ok(dirs) => dirs,
        Err(message) => {
            let _ = writeln!(io.err, "Error starting agent: {message}");
            return 1;
        }
    };
    let executor = match std::env::current_exe() {
        Ok(exe) => vec![exe.display().to_string(), "executor".to_owned()],
        Err(error) => {
            let _ =
                writeln!(io.err, "Error starting agent: cannot find the drover binary: {error}");
            return 1;
        }
    };
    let config = DevConfig {
        region: options.region,
        datacenter: options.datacenter,
        node_name: options.node,
        rpc_addr: format!("{}:{RPC_PORT_DEFAULT}", options.bind),
        http_addr: http_addr.clone(),
        data_dir,
        executor,
        rng_seed: seed(),
    };
    let (agent, ended) = match start_dev(config) {
        Ok(started) => started,
        Err(error) => {
            let _ = writeln!(io.err, "Error starting agent: {error}");
            return 1;
        }
    };
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let app = drover_runtime::http::router(agent.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.await;
            })
            .await
    });
    print_banner(io, &agent, &http_addr);
    if let Err(message) = await_ready(&agent).await {
        let _ = writeln!(io.err, "Error starting agent: {message}");
        return 1;
    }
    let ready_ms = started.elapsed().as_millis();
    let _ = writeln!(
        io.out,
        "    agent: ready: HTTP API on http://{http_addr}, node registered ({ready_ms} ms)"
    );
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

fn print_banner(io: &mut Io<'_>, agent: &AgentHandle, http_addr: &str) {
    let config = &agent.config;
    let _ = write!(
        io.out,
        "==> Starting drover agent...\n\
         ==> drover agent configuration:\n\n\
         \x20      Advertise Addrs: HTTP: {http_addr}; RPC: {rpc}\n\
         \x20           Bind Addrs: HTTP: [{http_addr}]\n\
         \x20               Client: true\n\
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
