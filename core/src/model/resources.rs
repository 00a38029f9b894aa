//! Resources a task asks for, and the network shapes (ports) a group asks for.
//!
//! Units are Nomad's: CPU in MHz, memory and disk in MB. Ports with a `Value` are static
//! (`ReservedPorts`), ports without are dynamic and get a value from the node's range.

use serde::{Deserialize, Serialize};

/// Lowest and highest port handed out for dynamic ports (Nomad's defaults).
pub const DYNAMIC_PORT_MIN: u16 = 20_000;
pub const DYNAMIC_PORT_MAX: u16 = 32_000;
/// Smallest resource asks Nomad accepts for a task.
pub const CPU_MIN_MHZ: i32 = 1;
pub const MEMORY_MIN_MB: i32 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    #[serde(rename = "CPU")]
    pub cpu_mhz: i32,
    pub cores: i32,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i32,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: i32,
    #[serde(rename = "DiskMB")]
    pub disk_mb: i32,
    pub networks: Vec<NetworkResource>,
}

impl Default for Resources {
    fn default() -> Resources {
        Resources {
            cpu_mhz: 100,
            cores: 0,
            memory_mb: 300,
            memory_max_mb: 0,
            disk_mb: 0,
            networks: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkResource {
    pub mode: String,
    pub device: String,
    #[serde(rename = "CIDR")]
    pub cidr: String,
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "DNS")]
    pub dns: Option<DnsConfig>,
    pub reserved_ports: Vec<Port>,
    pub dynamic_ports: Vec<Port>,
    pub hostname: String,
    #[serde(rename = "MBits")]
    pub mbits: i32,
}

impl Default for NetworkResource {
    fn default() -> NetworkResource {
        NetworkResource {
            mode: "host".into(),
            device: String::new(),
            cidr: String::new(),
            ip: String::new(),
            dns: None,
            reserved_ports: Vec::new(),
            dynamic_ports: Vec::new(),
            hostname: String::new(),
            mbits: 0,
        }
    }
}

impl NetworkResource {
    /// Every port label this network asks for, static ones first.
    pub fn port_labels(&self) -> impl Iterator<Item = &str> {
        self.reserved_ports.iter().chain(&self.dynamic_ports).map(|p| p.label.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    pub label: String,
    /// The host port: fixed for reserved ports, assigned at placement for dynamic ones.
    pub value: i32,
    /// The port inside the task's network namespace (`to`); 0 means the same as `value`.
    pub to: i32,
    pub host_network: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}
