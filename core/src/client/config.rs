//! A client's settings: its node, its servers, its seed, and every bound it keeps.

use crate::model::Node;
use crate::rpc::ServerAddr;
use std::fmt;

/// Nomad's client batches status updates for this long before sending them.
pub const UPDATES_BATCH_DELAY_MS: u64 = 200;
/// Nomad keeps this many events per task state.
pub const TASK_EVENTS_MAX: usize = 10;
/// Nomad's default cap on any task's kill timeout (`max_kill_timeout`).
pub const KILL_TIMEOUT_MAX_MS: u64 = 30_000;
/// Nomad's longest blocking-query wait.
pub const ALLOC_WATCH_WAIT_MS: u64 = 300_000;

/// Everything a client is given at start. Every bound is named with its unit last.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The fingerprinted node (attributes, resources, drivers), as the runtime found it.
    pub node: Node,
    /// The servers to try first; replaced by the list each heartbeat reply carries.
    pub servers: Vec<ServerAddr>,
    pub rng_seed: u64,
    /// How long a request may go unanswered before the client counts it failed.
    pub rpc_timeout_ms: u64,
    /// Retry backoff after failures: from `retry_base_ms`, doubling, up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// The shortest interval between heartbeats, whatever TTL a server hands out.
    pub heartbeat_interval_min_ms: u64,
    /// How long the servers may hold the allocation watch before answering.
    pub alloc_watch_wait_ms: u64,
    pub updates_batch_delay_ms: u64,
    /// Allocation updates per `AllocUpdate` request.
    pub updates_batch_max: usize,
    pub servers_max: usize,
    /// Allocations tracked at once; more are left to the servers, unstarted.
    pub allocs_max: usize,
    /// Tasks in one allocation; a group with more is refused.
    pub tasks_per_alloc_max: usize,
    pub task_events_max: usize,
    /// Observable events held until polled; older ones are dropped past this.
    pub events_max: usize,
    /// Consecutive `NotLeader` redirects followed before the client backs off instead.
    pub redirects_max: u32,
    pub kill_timeout_max_ms: u64,
}

impl ClientConfig {
    pub fn new(node: Node, servers: Vec<ServerAddr>, rng_seed: u64) -> ClientConfig {
        ClientConfig {
            node,
            servers,
            rng_seed,
            rpc_timeout_ms: 10_000,
            retry_base_ms: 1_000,
            retry_max_ms: 30_000,
            heartbeat_interval_min_ms: 1_000,
            alloc_watch_wait_ms: ALLOC_WATCH_WAIT_MS,
            updates_batch_delay_ms: UPDATES_BATCH_DELAY_MS,
            updates_batch_max: 64,
            servers_max: 32,
            allocs_max: 1024,
            tasks_per_alloc_max: 64,
            task_events_max: TASK_EVENTS_MAX,
            events_max: 4096,
            redirects_max: 3,
            kill_timeout_max_ms: KILL_TIMEOUT_MAX_MS,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.node.id.is_empty() {
            return Err(ConfigError::NoNodeId);
        }
        if self.servers.is_empty() || self.servers_max == 0 {
            return Err(ConfigError::NoServers);
        }
        let zero = [
            ("rpc_timeout_ms", self.rpc_timeout_ms),
            ("retry_base_ms", self.retry_base_ms),
            ("heartbeat_interval_min_ms", self.heartbeat_interval_min_ms),
            ("updates_batch_max", self.updates_batch_max as u64),
            ("tasks_per_alloc_max", self.tasks_per_alloc_max as u64),
            ("task_events_max", self.task_events_max as u64),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.retry_max_ms < self.retry_base_ms {
            return Err(ConfigError::RetryRange);
        }
        Ok(())
    }
}

/// Why a client cannot start with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    NoNodeId,
    NoServers,
    Zero(&'static str),
    RetryRange,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoNodeId => f.write_str("the node has no ID"),
            ConfigError::NoServers => f.write_str("the client knows no server"),
            ConfigError::Zero(name) => write!(f, "{name} must be greater than zero"),
            ConfigError::RetryRange => f.write_str("retry_max_ms must be at least retry_base_ms"),
        }
    }
}

impl std::error::Error for ConfigError {}
