//! Fingerprinting: what a client machine is, as the node attributes and resources it
//! registers with.
//!
//! Attribute names follow Nomad's (`cpu.arch`, `cpu.numcores`, `cpu.totalcompute`,
//! `memory.totalbytes`, `kernel.name`, `unique.hostname`, `unique.network.ip-address`,
//! `unique.storage.bytesfree`, ...), so constraints written for Nomad match. Each source
//! file is parsed by a pure function of its text, tested on captured samples; only
//! [`fingerprint`] touches the machine.

use drover_core::model::{NetworkResource, Node};
use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;

/// Used when neither `/proc/cpuinfo` nor cpufreq state a clock speed (some VMs and ARM
/// boards): a conservative figure that still lets small tasks be placed.
pub const CPU_MHZ_FALLBACK: u64 = 1000;

/// What the processor file says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuInfo {
    pub model_name: String,
    pub cores: u32,
    /// The fastest core's clock, in MHz.
    pub mhz: u64,
}

/// Parses `/proc/cpuinfo`: the number of `processor` stanzas, the model name, the clock.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut mhz_max: f64 = 0.0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "processor" => info.cores += 1,
            "model name" | "Model" if info.model_name.is_empty() => info.model_name = value.into(),
            "cpu MHz" => mhz_max = mhz_max.max(value.parse().unwrap_or(0.0)),
            _ => {}
        }
    }
    info.mhz = mhz_max.round() as u64;
    info
}

/// Parses `MemTotal` out of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total_bytes(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Parses `/etc/os-release` into (`ID`, `VERSION_ID`), unquoted.
pub fn parse_os_release(text: &str) -> (String, String) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    (field("ID"), field("VERSION_ID"))
}

/// Go's name for a Rust target architecture, which is what Nomad's `cpu.arch` says.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Everything fingerprinted, to merge into the node the client registers.
#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    pub attributes: BTreeMap<String, String>,
    pub cpu_total_mhz: u64,
    pub cpu_cores: u32,
    pub memory_mb: u64,
    pub disk_free_mb: u64,
    pub address: IpAddr,
}

impl Fingerprint {
    /// Writes the fingerprint into `node`, keeping what the operator configured (name,
    /// class, datacenter, meta, reserved resources).
    pub fn apply_to(&self, node: &mut Node) {
        node.attributes.extend(self.attributes.clone());
        let resources = &mut node.node_resources;
        resources.cpu.cpu_shares = self.cpu_total_mhz as i64;
        resources.cpu.total_cpu_cores = self.cpu_cores;
        resources.cpu.reservable_cpu_cores = (0..self.cpu_cores).collect();
        resources.memory.memory_mb = self.memory_mb as i64;
        resources.disk.disk_mb = self.disk_free_mb as i64;
        let ip = self.address.to_string();
        let cidr = match self.address {
            IpAddr::V4(_) => format!("{ip}/32"),
            IpAddr::V6(_) => format!("{ip}/128"),
        };
        let network = NetworkResource {
            mode: "host".into(),
            device: String::new(),
            cidr,
            ip,
            ..NetworkResource::default()
        };
        resources.networks = vec![network];
    }
}

/// Fingerprints this machine; `data_dir` is where allocations will live (its file system
/// gives the disk figures). A source that cannot be read leaves its attributes out.
pub fn fingerprint(data_dir: &Path) -> Fingerprint {
    let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let mut cpu = parse_cpuinfo(&read("/proc/cpuinfo"));
    if cpu.cores == 0 {
        cpu.cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    }
    if cpu.mhz == 0 {
        cpu.mhz = cpufreq_max_mhz().unwrap_or(CPU_MHZ_FALLBACK);
    }
    let memory_bytes = parse_meminfo_total_bytes(&read("/proc/meminfo")).unwrap_or(0);
    let (disk_total_bytes, disk_free_bytes) = disk_bytes(data_dir).unwrap_or((0, 0));
    let (os_name, os_version) = parse_os_release(&read("/etc/os-release"));
    let address = preferred_address();
    let cpu_total_mhz = cpu.mhz * u64::from(cpu.cores);

    let mut attributes = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        if !value.is_empty() {
            attributes.insert(key.to_owned(), value);
        }
    };
    set("cpu.arch", go_arch(std::env::consts::ARCH).to_owned());
    set("cpu.modelname", cpu.model_name.clone());
    set("cpu.numcores", cpu.cores.to_string());
    set("cpu.reservablecores", cpu.cores.to_string());
    set("cpu.frequency", cpu.mhz.to_string());
    set("cpu.totalcompute", cpu_total_mhz.to_string());
    set("cpu.usablecompute", cpu_total_mhz.to_string());
    set("memory.totalbytes", memory_bytes.to_string());
    set("kernel.name", std::env::consts::OS.to_owned());
    set("kernel.arch", std::env::consts::ARCH.to_owned());
    set("kernel.version", read("/proc/sys/kernel/osrelease").trim().to_owned());
    set("os.name", os_name);
    set("os.version", os_version);
    set("unique.hostname", read("/proc/sys/kernel/hostname").trim().to_owned());
    set("unique.network.ip-address", address.to_string());
    set("unique.storage.volume", data_dir.display().to_string());
    set("unique.storage.bytestotal", disk_total_bytes.to_string());
    set("unique.storage.bytesfree", disk_free_bytes.to_string());
    set("drover.version", env!("CARGO_PKG_VERSION").to_owned());

    Fingerprint {
        attributes,
        cpu_total_mhz,
        cpu_cores: cpu.cores,
        memory_mb: memory_bytes / (1024 * 1024),
        disk_free_mb: disk_free_bytes / (1024 * 1024),
        address,
    }
}

fn cpufreq_max_mhz() -> Option<u64> {
    let khz = fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").ok()?;
    khz.trim().parse::<u64>().ok().map(|khz| khz / 1000)
}

/// (total, available to unprivileged users) bytes of the file system holding `dir`.
fn disk_bytes(dir: &Path) -> Option<(u64, u64)> {
    let probe = dir.ancestors().find(|p| p.exists())?;
    let stat = rustix::fs::statvfs(probe).ok()?;
    Some((stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize))
}

/// The address this machine would use to reach the outside: connecting a UDP socket
/// sends nothing but makes the kernel choose the route and the source address. Without
/// a route (an isolated machine), loopback.
fn preferred_address() -> IpAddr {
    let probe = || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
        socket.local_addr().ok().map(|a| a.ip())
    };
    probe().filter(|ip| !ip.is_unspecified()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2445.426\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2450.001\n";

    #[test]
    fn cpuinfo_counts_processors_and_takes_the_fastest_clock() {
        let info = parse_cpuinfo(CPUINFO);
        assert_eq!(info, CpuInfo { model_name: "AMD EPYC 7B13".into(), cores: 2, mhz: 2450 });
    }

    #[test]
    fn cpuinfo_without_a_clock_reports_zero_for_the_fallback() {
        let arm = "processor\t: 0\nBogoMIPS\t: 48.00\n\nprocessor\t: 1\nModel\t: Raspberry Pi 4\n";
        assert_eq!(
            parse_cpuinfo(arm),
            CpuInfo { model_name: "Raspberry Pi 4".into(), cores: 2, mhz: 0 }
        );
    }

    #[test]
    fn meminfo_total_is_in_bytes() {
        let text = "MemTotal:       24568120 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total_bytes(text), Some(24_568_120 * 1024));
        assert_eq!(parse_meminfo_total_bytes("garbage"), None);
    }

    #[test]
    fn os_release_fields_are_unquoted() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(parse_os_release(text), ("debian".into(), "12".into()));
    }

    #[test]
    fn this_machine_fingerprints_into_a_schedulable_node() {
        let fingerprint = fingerprint(Path::new("."));
        let mut node = Node::default();
        fingerprint.apply_to(&mut node);
        assert!(node.node_resources.cpu.cpu_shares > 0);
        assert!(node.node_resources.memory.memory_mb > 0);
        assert!(node.node_resources.disk.disk_mb > 0);
        for key in ["cpu.arch", "cpu.numcores", "kernel.name", "unique.network.ip-address"] {
            assert!(node.attributes.contains_key(key), "missing {key}: {:?}", node.attributes);
        }
        assert_eq!(node.attributes["cpu.arch"], go_arch(std::env::consts::ARCH));
    }
}
