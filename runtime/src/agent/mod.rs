//! The agent process: the node hosts on a tokio runtime, fed by one channel.
//!
//! The hosts are sync machines, so one task owns them ([`node_loop`]) and everything else
//! reaches them through an [`AgentHandle`]: API calls (answered on a oneshot), driver
//! events from the threads that wait for task exits, status questions and the shutdown.
//! The task also wakes at the hosts' next deadline. In `-dev` the server and the client
//! live in this one process and exchange frames through an in-process transport
//! ([`local`]), with the Raft log in memory; tasks run under raw_exec ([`drivers`]) in
//! allocation directories below a data directory that is removed on exit.

mod cluster;
pub mod config;
mod drivers;
mod local;
pub mod log;
mod node_loop;

pub use cluster::{ClusterConfig, start_cluster};
pub use drivers::RawExecDrivers;
pub use local::{LOCAL_FRAMES_MAX, LocalNet, LocalTransport};
pub use node_loop::NodeLoop;

use crate::host::HostError;
use drover_core::client::{DriverEvent, TaskAction};
use drover_core::server::{ApiReply, ApiRequest};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Inputs queued for the node loop; a caller finding the queue full waits.
pub const INPUTS_MAX: usize = 4096;

/// What a `-dev` agent is made of.
#[derive(Clone, Debug)]
pub struct DevConfig {
    pub region: String,
    pub datacenter: String,
    pub node_name: String,
    /// The RPC address the server names itself by (`<bind>:4647`); in `-dev` no socket
    /// listens there, the client reaches the server in process.
    pub rpc_addr: String,
    /// The HTTP address clients of the API use, recorded on the node.
    pub http_addr: String,
    /// How this agent reaches other nodes' HTTP APIs, to act on their allocations.
    pub node_http: crate::http::NodeHttp,
    /// Allocations live in `<data_dir>/alloc`, executor status in `<data_dir>/executor`.
    pub data_dir: PathBuf,
    /// The executor command line (the agent's own binary and `executor`).
    pub executor: Vec<String>,
    /// Seeds the machines' randomness (IDs, jitter); the agent draws it at start.
    pub rng_seed: u64,
    /// What the server's autopilot runs with until an operator sets a configuration.
    pub autopilot: drover_core::server::AutopilotConfig,
    /// Where the agent's log lines go ([`log`]).
    pub log: log::AgentLog,
}

/// One input of the node loop.
pub enum Input {
    Api {
        region: String,
        request: ApiRequest,
        reply: oneshot::Sender<ApiReply>,
    },
    Driver(DriverEvent),
    /// An operator's action (restart, signal) on a task, or on every running task, of an
    /// allocation on this agent's client; answered with why nothing was done, if so.
    ClientTaskAction {
        alloc_id: String,
        task: Option<String>,
        action: TaskAction,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Status(oneshot::Sender<AgentStatus>),
    /// Stop every task, then end the loop; answered once the tasks are gone.
    Shutdown(oneshot::Sender<()>),
}

/// What the agent reports about itself (agent, status and operator endpoints).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentStatus {
    pub region: String,
    pub datacenter: String,
    pub node_name: String,
    /// This server's Raft id and RPC address.
    pub server_id: u64,
    pub rpc_addr: String,
    pub leader_addr: Option<String>,
    pub is_leader: bool,
    pub raft_term: u64,
    pub raft_commit_index: u64,
    pub raft_applied_index: u64,
    pub raft_last_index: u64,
    /// Every voter and its address.
    pub raft_voters: Vec<(u64, String)>,
    /// Every server of the Raft configuration, learners included.
    pub raft_servers: Vec<drover_core::server::RaftServer>,
    pub node_id: String,
    pub node_registered: bool,
    pub allocs_running_here: usize,
    pub counters: Vec<(&'static str, u64)>,
    pub roles: AgentRoles,
    /// The servers this agent knows alive (itself included when it is one), by name.
    pub members: Vec<ServerMember>,
    /// Every region this agent knows of, its own included, sorted: gossip's
    /// (`Gossip::regions`), or only its own on an agent without gossip.
    pub regions: Vec<String>,
}

/// What an agent runs, as `agent/self` reports its configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentRoles {
    pub dev: bool,
    pub server: bool,
    pub client: bool,
    pub bootstrap_expect: u32,
}

/// A server as the agent knows it: through gossip, or itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerMember {
    /// The gossip name, `<node>.<region>`.
    pub name: String,
    pub region: String,
    pub datacenter: String,
    pub server_id: u64,
    pub rpc_addr: String,
}

/// Why an agent could not start.
#[derive(Debug)]
pub enum AgentError {
    Host(HostError),
    Io(std::io::Error),
    /// A cluster agent could not set itself up (sockets, TLS, its data directory).
    Setup(String),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Host(error) => write!(f, "{error}"),
            AgentError::Io(error) => write!(f, "cannot start the node loop: {error}"),
            AgentError::Setup(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for AgentError {}

/// The node loop stopped: on a host error, or because it was shut down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentGone;

impl fmt::Display for AgentGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the agent is shutting down")
    }
}

impl std::error::Error for AgentGone {}

/// The way into a running agent, cheap to clone (one per HTTP request).
#[derive(Clone, Debug)]
pub struct AgentHandle {
    inputs: mpsc::Sender<Input>,
    pub config: Arc<DevConfig>,
    /// Whether the server knows a leader, as of the node loop's last input.
    known_leader: Arc<AtomicBool>,
}

impl AgentHandle {
    /// Hands `request` to the server and waits for its answer (a blocking read waits
    /// inside the server, up to its `wait_ms`).
    pub async fn call(&self, region: &str, request: ApiRequest) -> Result<ApiReply, AgentGone> {
        let (reply, answer) = oneshot::channel();
        let input = Input::Api { region: region.to_owned(), request, reply };
        self.inputs.send(input).await.map_err(|_| AgentGone)?;
        answer.await.map_err(|_| AgentGone)
    }

    /// Restarts or signals a task (or every running task) of an allocation this agent's
    /// client runs.
    pub async fn act_on_alloc(
        &self,
        alloc_id: String,
        task: Option<String>,
        action: TaskAction,
    ) -> Result<Result<(), String>, AgentGone> {
        let (reply, answer) = oneshot::channel();
        let input = Input::ClientTaskAction { alloc_id, task, action, reply };
        self.inputs.send(input).await.map_err(|_| AgentGone)?;
        answer.await.map_err(|_| AgentGone)
    }

    pub async fn status(&self) -> Result<AgentStatus, AgentGone> {
        let (reply, answer) = oneshot::channel();
        self.inputs.send(Input::Status(reply)).await.map_err(|_| AgentGone)?;
        answer.await.map_err(|_| AgentGone)
    }

    pub fn known_leader(&self) -> bool {
        self.known_leader.load(Ordering::Relaxed)
    }

    /// Stops every task and ends the node loop.
    pub async fn shutdown(&self) -> Result<(), AgentGone> {
        let (reply, answer) = oneshot::channel();
        self.inputs.send(Input::Shutdown(reply)).await.map_err(|_| AgentGone)?;
        answer.await.map_err(|_| AgentGone)
    }
}

/// How the node loop ended: `Ok` after a shutdown, the host's error otherwise.
pub type LoopEnd = oneshot::Receiver<Result<(), HostError>>;

/// Starts a `-dev` agent's node loop on a thread of its own with a single-threaded tokio
/// runtime (the hosts are not `Send`, and a slow start never holds up the HTTP workers).
/// Returns once the hosts started; the receiver learns when the loop ends.
pub fn start_dev(config: DevConfig) -> Result<(AgentHandle, LoopEnd), AgentError> {
    spawn_node_loop(config, |config, inputs, receiver, known_leader| {
        let node_loop =
            NodeLoop::start_dev(config, inputs, known_leader).map_err(AgentError::Host)?;
        Ok(node_loop.run(receiver))
    })
}

/// Runs the loop `start` makes on a thread of its own with a single-threaded tokio
/// runtime; `start` runs inside that runtime (it may bind sockets and spawn tasks).
fn spawn_node_loop<F, L>(config: DevConfig, start: F) -> Result<(AgentHandle, LoopEnd), AgentError>
where
    F: FnOnce(
            &DevConfig,
            mpsc::Sender<Input>,
            mpsc::Receiver<Input>,
            Arc<AtomicBool>,
        ) -> Result<L, AgentError>
        + Send
        + 'static,
    L: Future<Output = Result<(), HostError>>,
{
    let (inputs, receiver) = mpsc::channel(INPUTS_MAX);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = oneshot::channel();
    let loop_inputs = inputs.clone();
    let known_leader = Arc::new(AtomicBool::new(false));
    let loop_known_leader = Arc::clone(&known_leader);
    let loop_config = config.clone();
    let spawned = std::thread::Builder::new().name("node-loop".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = started_tx.send(Err(AgentError::Io(error)));
                return;
            }
        };
        let entered = runtime.enter();
        let node_loop = match start(&loop_config, loop_inputs, receiver, loop_known_leader) {
            Ok(node_loop) => node_loop,
            Err(error) => {
                let _ = started_tx.send(Err(error));
                return;
            }
        };
        drop(entered);
        let _ = started_tx.send(Ok(()));
        let end = runtime.block_on(node_loop);
        let _ = end_tx.send(end);
    });
    spawned.map_err(AgentError::Io)?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok((AgentHandle { inputs, config: Arc::new(config), known_leader }, end_rx)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(AgentError::Host(HostError::Stopped)),
    }
}
