//! Client nodes: what a machine offers (resources, drivers, attributes) and its health.
//!
//! A node registers with its fingerprint and then heartbeats; the servers own its status,
//! eligibility and drain. JSON keys follow Nomad's `api/nodes.go`. The computed class
//! groups nodes that are interchangeable for feasibility checks, so a scheduler checks a
//! constraint once per class instead of once per node.

use super::job::Meta;
use super::resources::{DYNAMIC_PORT_MAX, DYNAMIC_PORT_MIN, NetworkResource};
use super::timestamp::Timestamp;
use super::value::DurationNs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Attribute and meta keys under this prefix are unique per node, so they never take part
/// in the computed class (otherwise every node would be its own class).
pub const UNIQUE_NAMESPACE_PREFIX: &str = "unique.";

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Initializing,
    Ready,
    Down,
    Disconnected,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Initializing => "initializing",
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
            NodeStatus::Disconnected => "disconnected",
        }
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeEligibility {
    #[default]
    Eligible,
    Ineligible,
}

impl NodeEligibility {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeEligibility::Eligible => "eligible",
            NodeEligibility::Ineligible => "ineligible",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    /// The node's credential for its own RPCs; never shown by the API to other callers.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub datacenter: String,
    pub name: String,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    #[serde(rename = "TLSEnabled")]
    pub tls_enabled: bool,
    /// Fingerprinted facts: `kernel.name`, `cpu.arch`, `driver.docker`, `unique.hostname`, ….
    pub attributes: BTreeMap<String, String>,
    pub node_resources: NodeResources,
    pub reserved_resources: NodeReservedResources,
    pub meta: Meta,
    pub node_class: String,
    pub node_pool: String,
    /// `v1:<hash>` of the scheduling-relevant fields; see [`computed_class`].
    pub computed_class: String,
    pub drain_strategy: Option<DrainStrategy>,
    pub scheduling_eligibility: NodeEligibility,
    pub status: NodeStatus,
    pub status_description: String,
    /// Unix seconds of the last status change (Nomad's unit for this field).
    pub status_updated_at: i64,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for Node {
    fn default() -> Node {
        Node {
            id: String::new(),
            secret_id: String::new(),
            datacenter: "dc1".into(),
            name: String::new(),
            http_addr: String::new(),
            tls_enabled: false,
            attributes: BTreeMap::new(),
            node_resources: NodeResources::default(),
            reserved_resources: NodeReservedResources::default(),
            meta: Meta::new(),
            node_class: String::new(),
            node_pool: "default".into(),
            computed_class: String::new(),
            drain_strategy: None,
            scheduling_eligibility: NodeEligibility::Eligible,
            status: NodeStatus::Initializing,
            status_description: String::new(),
            status_updated_at: 0,
            drivers: BTreeMap::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

impl Node {
    pub fn is_ready(&self) -> bool {
        self.status == NodeStatus::Ready
    }

    pub fn is_draining(&self) -> bool {
        self.drain_strategy.is_some()
    }

    /// Whether new work may be placed here: ready, eligible and not draining.
    pub fn is_schedulable(&self) -> bool {
        self.is_ready()
            && self.scheduling_eligibility == NodeEligibility::Eligible
            && !self.is_draining()
    }

    /// A driver counts only when it was both detected and reported healthy.
    pub fn driver_healthy(&self, driver: &str) -> bool {
        self.drivers.get(driver).is_some_and(|d| d.detected && d.healthy)
    }

    /// Recomputes and stores [`computed_class`]; call after any fingerprint change.
    pub fn compute_class(&mut self) {
        self.computed_class = computed_class(self);
    }

    /// What is left for allocations once the operator's reservation is taken out.
    pub fn schedulable_capacity(&self) -> NodeCapacity {
        let total = &self.node_resources;
        let reserved = &self.reserved_resources;
        NodeCapacity {
            cpu_shares: total.cpu.cpu_shares.saturating_sub(reserved.cpu.cpu_shares).max(0),
            memory_mb: total.memory.memory_mb.saturating_sub(reserved.memory.memory_mb).max(0),
            disk_mb: total.disk.disk_mb.saturating_sub(reserved.disk.disk_mb).max(0),
        }
    }
}

/// The resources a node can give to allocations, in Nomad's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCapacity {
    pub cpu_shares: i64,
    pub memory_mb: i64,
    pub disk_mb: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeResources {
    pub cpu: NodeCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
    pub networks: Vec<NetworkResource>,
    pub min_dynamic_port: i32,
    pub max_dynamic_port: i32,
}

impl Default for NodeResources {
    fn default() -> NodeResources {
        NodeResources {
            cpu: NodeCpuResources::default(),
            memory: NodeMemoryResources::default(),
            disk: NodeDiskResources::default(),
            networks: Vec::new(),
            min_dynamic_port: i32::from(DYNAMIC_PORT_MIN),
            max_dynamic_port: i32::from(DYNAMIC_PORT_MAX),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeCpuResources {
    /// Total MHz across cores.
    pub cpu_shares: i64,
    pub total_cpu_cores: u32,
    pub reservable_cpu_cores: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDiskResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
}

/// What the operator holds back from scheduling (for the OS, other daemons, …).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedResources {
    pub cpu: NodeReservedCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
    pub networks: NodeReservedNetworkResources,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedCpuResources {
    pub cpu_shares: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedNetworkResources {
    /// Nomad's port-range syntax: `22,80,8000-8080`.
    pub reserved_host_ports: String,
}

impl NodeReservedNetworkResources {
    /// The reserved ports, sorted and without duplicates.
    pub fn ports(&self) -> Result<Vec<u16>, String> {
        parse_port_ranges(&self.reserved_host_ports)
    }
}

/// Parses `22,80,8000-8080` into ports; empty text is no ports.
pub fn parse_port_ranges(spec: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (parse_port(low)?, parse_port(high)?),
            None => (parse_port(part)?, parse_port(part)?),
        };
        if low > high {
            return Err(format!("port range {part:?} runs backwards"));
        }
        ports.extend(low..=high);
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("{text:?} is not a port between 1 and 65535")),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub attributes: BTreeMap<String, String>,
    pub detected: bool,
    pub healthy: bool,
    pub health_description: String,
    pub update_time: Timestamp,
}

/// A drain in progress. Nomad's JSON flattens the spec's fields into this object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainStrategy {
    /// 0 = no deadline, negative = force now, positive = migrate within this long.
    pub deadline: DurationNs,
    pub ignore_system_jobs: bool,
    /// `StartedAt + Deadline`, set when the drain starts with a positive deadline.
    pub force_deadline: Timestamp,
    pub started_at: Timestamp,
}

/// What an operator asks for in `POST /v1/node/:id/drain` (`DrainSpec`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainSpec {
    pub deadline: DurationNs,
    pub ignore_system_jobs: bool,
}

/// When a drain stops waiting for allocations to migrate and stops them outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainDeadline {
    /// No deadline: allocations migrate at their own pace.
    Never,
    /// Forced drain: stop everything now.
    Now,
    At(Timestamp),
}

impl DrainStrategy {
    /// Starts a drain at `now` (the leader's stamp) with the operator's spec.
    pub fn start(spec: DrainSpec, now: Timestamp) -> DrainStrategy {
        let force_deadline =
            if spec.deadline.0 > 0 { now.plus(spec.deadline) } else { Timestamp::UNSET };
        DrainStrategy {
            deadline: spec.deadline,
            ignore_system_jobs: spec.ignore_system_jobs,
            force_deadline,
            started_at: now,
        }
    }

    pub fn spec(&self) -> DrainSpec {
        DrainSpec { deadline: self.deadline, ignore_system_jobs: self.ignore_system_jobs }
    }

    pub fn deadline_time(&self) -> DrainDeadline {
        match self.deadline.0 {
            0 => DrainDeadline::Never,
            d if d < 0 => DrainDeadline::Now,
            _ => DrainDeadline::At(self.force_deadline),
        }
    }
}

/// The node's computed class: a stable hash of what feasibility checks look at.
///
/// Covers the datacenter, node pool, node class, attributes and meta (except the
/// `unique.` ones) and the drivers' detected/healthy state. Unlike Nomad's hashstructure
/// value, the number is FNV-1a over a length-prefixed encoding, so it is the same on every
/// build and platform; only equality between nodes matters.
pub fn computed_class(node: &Node) -> String {
    let mut hash = Fnv1a::new();
    hash.field(b"datacenter", node.datacenter.as_bytes());
    hash.field(b"node_pool", node.node_pool.as_bytes());
    hash.field(b"node_class", node.node_class.as_bytes());
    hash.shared_map(b"attributes", &node.attributes);
    hash.shared_map(b"meta", &node.meta);
    for (name, driver) in &node.drivers {
        hash.field(b"driver", name.as_bytes());
        hash.field(b"detected", &[u8::from(driver.detected), u8::from(driver.healthy)]);
    }
    format!("v1:{}", hash.finish())
}

/// 64-bit FNV-1a: tiny, fixed, and the same everywhere (unlike std's seeded hasher).
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Fnv1a {
        Fnv1a(Self::OFFSET_BASIS)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(Self::PRIME);
        }
    }

    /// Length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
    fn field(&mut self, name: &[u8], value: &[u8]) {
        for part in [name, value] {
            self.bytes(&(part.len() as u64).to_le_bytes());
            self.bytes(part);
        }
    }

    /// Hashes the entries whose keys are not in the `unique.` namespace.
    fn shared_map(&mut self, name: &[u8], map: &BTreeMap<String, String>) {
        for (key, value) in map.iter().filter(|(k, _)| !k.starts_with(UNIQUE_NAMESPACE_PREFIX)) {
            self.field(name, key.as_bytes());
            self.field(b"=", value.as_bytes());
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        let mut node = Node { id: "n1".into(), node_class: "large".into(), ..Node::default() };
        node.attributes.insert("kernel.name".into(), "linux".into());
        node.attributes.insert("unique.hostname".into(), "host-1".into());
        node.meta.insert("rack".into(), "r1".into());
        node.drivers.insert(
            "docker".into(),
            DriverInfo { detected: true, healthy: true, ..Default::default() },
        );
        node
    }

    #[test]
    fn computed_class_ignores_unique_fields_and_identity() {
        let first = node();
        let mut second = node();
        second.id = "n2".into();
        second.attributes.insert("unique.hostname".into(), "host-2".into());
        second.meta.insert("unique.serial".into(), "x".into());
        second.node_resources.cpu.cpu_shares = 4000;
        assert_eq!(computed_class(&first), computed_class(&second));
        assert!(computed_class(&first).starts_with("v1:"));
    }

    #[test]
    fn computed_class_changes_with_scheduling_fields() {
        let base = computed_class(&node());
        let mut changed = node();
        changed.meta.insert("rack".into(), "r2".into());
        assert_ne!(base, computed_class(&changed));
        let mut unhealthy = node();
        unhealthy.drivers.get_mut("docker").unwrap().healthy = false;
        assert_ne!(base, computed_class(&unhealthy));
        let mut other_dc = node();
        other_dc.datacenter = "dc2".into();
        assert_ne!(base, computed_class(&other_dc));
    }

    #[test]
    fn computed_class_is_a_fixed_function() {
        // Pinned: a change here re-classes every node of a running cluster.
        assert_eq!(computed_class(&Node::default()), computed_class(&Node::default()));
        assert_eq!(computed_class(&Node::default()), "v1:6110953299872801798");
    }

    #[test]
    fn port_ranges_parse_like_nomad() {
        assert_eq!(parse_port_ranges("22, 80,8000-8002,80"), Ok(vec![22, 80, 8000, 8001, 8002]));
        assert_eq!(parse_port_ranges(""), Ok(vec![]));
        assert!(parse_port_ranges("9-3").is_err());
        assert!(parse_port_ranges("70000").is_err());
        assert!(parse_port_ranges("0").is_err());
    }

    #[test]
    fn drain_deadlines() {
        let now = Timestamp(1_000);
        let spec = DrainSpec { deadline: DurationNs(500), ignore_system_jobs: false };
        assert_eq!(
            DrainStrategy::start(spec, now).deadline_time(),
            DrainDeadline::At(Timestamp(1_500))
        );
        let forced = DrainSpec { deadline: DurationNs(-1), ..DrainSpec::default() };
        assert_eq!(DrainStrategy::start(forced, now).deadline_time(), DrainDeadline::Now);
        assert_eq!(
            DrainStrategy::start(DrainSpec::default(), now).deadline_time(),
            DrainDeadline::Never
        );
    }

    #[test]
    fn capacity_subtracts_reservations() {
        let mut node = node();
        node.node_resources.cpu.cpu_shares = 4000;
        node.node_resources.memory.memory_mb = 8192;
        node.reserved_resources.cpu.cpu_shares = 500;
        node.reserved_resources.memory.memory_mb = 10_000;
        let capacity = node.schedulable_capacity();
        assert_eq!((capacity.cpu_shares, capacity.memory_mb), (3500, 0));
    }
}
