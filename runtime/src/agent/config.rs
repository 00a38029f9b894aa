//! The agent's configuration files, in the shape of Nomad's agent configuration.
//!
//! [`parse`] reads one HCL file into a [`FileConfig`], every field optional; [`FileConfig::merge`]
//! lays a later file (or the command line's flags, which the CLI turns into one more
//! `FileConfig`) over an earlier one, as Nomad merges `-config` files; [`resolve`] checks
//! the merged whole and fills in the defaults. Pure: no file, socket or clock is touched
//! here, so a bad file is reported the same way wherever it comes from.
//!
//! Every unknown key and every value of the wrong type is an error at its
//! `file:line:col`; nothing is ignored, because a misspelt `bootstrap_expect` that was
//! silently dropped would start a server that never elects a leader.

use super::log::LogLevel;
use crate::net::gossip_key::GossipKey;
use drover_core::jobspec::{Diagnostic, line_col};
use drover_core::server::{AUTOPILOT_COUNT_MAX, AutopilotConfig, LAST_CONTACT_THRESHOLD_MIN_MS};
use hcl::edit::Span;
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Attribute, Block, Body, Structure};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Nomad's ports: HTTP API, RPC (Raft, client and forwarded calls), gossip.
pub const HTTP_PORT_DEFAULT: u16 = 4646;
pub const RPC_PORT_DEFAULT: u16 = 4647;
pub const SERF_PORT_DEFAULT: u16 = 4648;
pub const REGION_DEFAULT: &str = "global";
pub const DATACENTER_DEFAULT: &str = "dc1";
/// A region larger than this cannot be bootstrapped by `bootstrap_expect`.
pub const BOOTSTRAP_EXPECT_MAX: u32 = 7;

/// Nomad's `autopilot` block: how the leader manages the servers of the Raft configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutopilotSection {
    pub cleanup_dead_servers: Option<bool>,
    pub last_contact_threshold_ms: Option<u64>,
    pub max_trailing_logs: Option<u64>,
    pub server_stabilization_time_ms: Option<u64>,
    pub min_quorum: Option<u64>,
}

impl AutopilotSection {
    fn merge(self, later: AutopilotSection) -> AutopilotSection {
        AutopilotSection {
            cleanup_dead_servers: later.cleanup_dead_servers.or(self.cleanup_dead_servers),
            last_contact_threshold_ms: later
                .last_contact_threshold_ms
                .or(self.last_contact_threshold_ms),
            max_trailing_logs: later.max_trailing_logs.or(self.max_trailing_logs),
            server_stabilization_time_ms: later
                .server_stabilization_time_ms
                .or(self.server_stabilization_time_ms),
            min_quorum: later.min_quorum.or(self.min_quorum),
        }
    }

    /// Nomad's defaults for what is not said, but `min_quorum` defaults to
    /// `bootstrap_expect` rather than 0: autopilot never shrinks the voters below the
    /// size the region was bootstrapped at unless the operator says so.
    fn resolve(self, bootstrap_expect: u32) -> AutopilotConfig {
        let nomad = AutopilotConfig::default();
        let min_quorum = self.min_quorum.map_or(bootstrap_expect as usize, |n| n as usize);
        AutopilotConfig {
            cleanup_dead_servers: self.cleanup_dead_servers.unwrap_or(nomad.cleanup_dead_servers),
            last_contact_threshold_ms: self
                .last_contact_threshold_ms
                .unwrap_or(nomad.last_contact_threshold_ms),
            server_stabilization_time_ms: self
                .server_stabilization_time_ms
                .unwrap_or(nomad.server_stabilization_time_ms),
            max_trailing_logs: self.max_trailing_logs.unwrap_or(nomad.max_trailing_logs),
            min_quorum,
        }
    }
}

/// One agent configuration file, or the flags, before defaults: `None` is "not said".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub data_dir: Option<String>,
    pub bind_addr: Option<String>,
    pub region: Option<String>,
    pub datacenter: Option<String>,
    pub name: Option<String>,
    /// `log_level`: the agent log's least severe level (Nomad's default `INFO`).
    pub log_level: Option<LogLevel>,
    pub ports: Ports,
    pub addresses: Addresses,
    pub advertise: Addresses,
    pub server: ServerSection,
    pub client: ClientSection,
    pub tls: TlsSection,
    pub autopilot: AutopilotSection,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub http: Option<u16>,
    pub rpc: Option<u16>,
    pub serf: Option<u16>,
}

/// Per-service addresses: where to bind (`addresses`) or what to tell peers (`advertise`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    pub http: Option<String>,
    pub rpc: Option<String>,
    pub serf: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSection {
    pub enabled: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    /// `server_join { retry_join = [...] }` (or `retry_join` in `server` itself).
    pub retry_join: Option<Vec<String>>,
    /// `encrypt`: the region's gossip key, checked when parsed.
    pub encrypt: Option<GossipKeyText>,
}

/// A gossip key in its base64 form, known to be a valid key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKeyText(pub String);

impl fmt::Debug for GossipKeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKeyText(<redacted>)")
    }
}

impl GossipKeyText {
    /// `text` when it is a usable gossip key, else what is wrong with it.
    pub fn parse(text: &str) -> Result<GossipKeyText, String> {
        GossipKey::from_base64(text).map(|_| GossipKeyText(text.trim().to_owned()))
    }

    pub fn key(&self) -> GossipKey {
        GossipKey::from_base64(&self.0).expect("checked when parsed")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSection {
    pub enabled: Option<bool>,
    pub servers: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSection {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// `http = true`: the HTTP API speaks HTTPS only, with the agent's certificate.
    pub http: Option<bool>,
    /// `verify_https_client = true`: an HTTPS caller must present a certificate signed
    /// by the CA (mutual TLS).
    pub verify_https_client: Option<bool>,
    /// `tls_min_version`: the oldest TLS the HTTP API speaks (`tls12` by default).
    pub tls_min_version: Option<TlsMinVersion>,
}

/// The oldest TLS version the agent's HTTPS speaks (Nomad's `tls_min_version`). The RPC
/// between agents is QUIC, which is TLS 1.3 by its definition, whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMinVersion {
    #[default]
    Tls12,
    Tls13,
}

impl TlsMinVersion {
    /// Nomad's names, `tls12` and `tls13`; its `tls10` and `tls11` are refused, as
    /// drover's TLS (rustls) never speaks them.
    fn parse(text: &str) -> Result<TlsMinVersion, String> {
        match text {
            "tls12" => Ok(TlsMinVersion::Tls12),
            "tls13" => Ok(TlsMinVersion::Tls13),
            "tls10" | "tls11" => Err(format!(
                "tls_min_version = {text:?} is not supported: drover speaks TLS 1.2 and 1.3 only (tls12, tls13)"
            )),
            _ => Err(format!("tls_min_version = {text:?}: expected tls12 or tls13")),
        }
    }
}

impl FileConfig {
    /// `later` over `self`: what `later` says wins, what it leaves unsaid is kept. Lists
    /// are replaced whole, never concatenated, so a flag's `-servers` is the whole list.
    pub fn merge(self, later: FileConfig) -> FileConfig {
        FileConfig {
            data_dir: later.data_dir.or(self.data_dir),
            bind_addr: later.bind_addr.or(self.bind_addr),
            region: later.region.or(self.region),
            datacenter: later.datacenter.or(self.datacenter),
            name: later.name.or(self.name),
            log_level: later.log_level.or(self.log_level),
            ports: Ports {
                http: later.ports.http.or(self.ports.http),
                rpc: later.ports.rpc.or(self.ports.rpc),
                serf: later.ports.serf.or(self.ports.serf),
            },
            addresses: self.addresses.merge(later.addresses),
            advertise: self.advertise.merge(later.advertise),
            server: ServerSection {
                enabled: later.server.enabled.or(self.server.enabled),
                bootstrap_expect: later.server.bootstrap_expect.or(self.server.bootstrap_expect),
                retry_join: later.server.retry_join.or(self.server.retry_join),
                encrypt: later.server.encrypt.or(self.server.encrypt),
            },
            client: ClientSection {
                enabled: later.client.enabled.or(self.client.enabled),
                servers: later.client.servers.or(self.client.servers),
            },
            tls: TlsSection {
                ca_file: later.tls.ca_file.or(self.tls.ca_file),
                cert_file: later.tls.cert_file.or(self.tls.cert_file),
                key_file: later.tls.key_file.or(self.tls.key_file),
                http: later.tls.http.or(self.tls.http),
                verify_https_client: later.tls.verify_https_client.or(self.tls.verify_https_client),
                tls_min_version: later.tls.tls_min_version.or(self.tls.tls_min_version),
            },
            autopilot: self.autopilot.merge(later.autopilot),
        }
    }
}

impl Addresses {
    fn merge(self, later: Addresses) -> Addresses {
        Addresses {
            http: later.http.or(self.http),
            rpc: later.rpc.or(self.rpc),
            serf: later.serf.or(self.serf),
        }
    }
}

/// Every error of one file, in source order; displays one `file:line:col: message` each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads one agent configuration file. `filename` names it in the errors.
pub fn parse(filename: &str, text: &str) -> Result<FileConfig, ConfigErrors> {
    let body = hcl::edit::parser::parse_body(text).map_err(|error| {
        let location = error.location();
        ConfigErrors(vec![Diagnostic {
            file: filename.to_owned(),
            line: u32::try_from(location.line()).unwrap_or(u32::MAX),
            column: u32::try_from(location.column()).unwrap_or(u32::MAX),
            message: format!("syntax error: {}", error.message()),
        }])
    })?;
    let mut reader = Reader { errors: Vec::new() };
    let config = reader.top(&body);
    if reader.errors.is_empty() {
        return Ok(config);
    }
    reader.errors.sort_by_key(|(span, _)| span.start);
    let diagnostics = reader.errors.into_iter().map(|(span, message)| {
        let (line, column) = line_col(text, span.start);
        Diagnostic { file: filename.to_owned(), line, column, message }
    });
    Err(ConfigErrors(diagnostics.collect()))
}

/// Walks the syntax tree, collecting every error with its span.
struct Reader {
    errors: Vec<(Range<usize>, String)>,
}

/// The keys a block may hold, for the unknown-key message.
const TOP_KEYS: &[&str] = &[
    "data_dir",
    "bind_addr",
    "region",
    "datacenter",
    "name",
    "log_level",
    "ports",
    "addresses",
    "advertise",
    "server",
    "client",
    "tls",
    "autopilot",
];
const PORT_KEYS: &[&str] = &["http", "rpc", "serf"];
const SERVER_KEYS: &[&str] =
    &["enabled", "bootstrap_expect", "server_join", "retry_join", "encrypt"];
const SERVER_JOIN_KEYS: &[&str] = &["retry_join"];
const CLIENT_KEYS: &[&str] = &["enabled", "servers"];
const AUTOPILOT_KEYS: &[&str] = &[
    "cleanup_dead_servers",
    "last_contact_threshold",
    "max_trailing_logs",
    "server_stabilization_time",
    "min_quorum",
    "enable_redundancy_zones",
    "disable_upgrade_migration",
    "enable_custom_upgrades",
];
const TLS_KEYS: &[&str] =
    &["ca_file", "cert_file", "key_file", "rpc", "http", "verify_https_client", "tls_min_version"];

impl Reader {
    fn top(&mut self, body: &Body) -> FileConfig {
        let mut config = FileConfig::default();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => match attr.key.value().as_str() {
                    "data_dir" => config.data_dir = self.string(attr),
                    "bind_addr" => config.bind_addr = self.string(attr),
                    "region" => config.region = self.name(attr),
                    "datacenter" => config.datacenter = self.name(attr),
                    "name" => config.name = self.name(attr),
                    "log_level" => config.log_level = self.log_level(attr),
                    key => self.unknown(attr, key, "the top level", TOP_KEYS),
                },
                Structure::Block(block) => match self.block_name(block) {
                    "ports" => config.ports = self.ports(block),
                    "addresses" => config.addresses = self.addresses(block),
                    "advertise" => config.advertise = self.addresses(block),
                    "server" => config.server = self.server(block),
                    "client" => config.client = self.client(block),
                    "tls" => config.tls = self.tls(block),
                    "autopilot" => config.autopilot = self.autopilot(block),
                    key => self.unknown(block, key, "the top level", TOP_KEYS),
                },
            }
        }
        config
    }

    fn ports(&mut self, block: &Block) -> Ports {
        let [http, rpc, serf] = self.per_service(block, Reader::port);
        Ports { http, rpc, serf }
    }

    fn addresses(&mut self, block: &Block) -> Addresses {
        let [http, rpc, serf] = self.per_service(block, Reader::string);
        Addresses { http, rpc, serf }
    }

    /// A block with one value per service (`http`, `rpc`, `serf`), each read by `read`.
    fn per_service<T>(
        &mut self,
        block: &Block,
        read: fn(&mut Reader, &Attribute) -> Option<T>,
    ) -> [Option<T>; 3] {
        let mut values = [None, None, None];
        for attr in self.attributes(block, PORT_KEYS) {
            let slot = PORT_KEYS.iter().position(|k| *k == attr.key.value().as_str());
            if let Some(slot) = slot {
                values[slot] = read(self, attr);
            }
        }
        values
    }

    fn server(&mut self, block: &Block) -> ServerSection {
        let mut server = ServerSection::default();
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) => match attr.key.value().as_str() {
                    "enabled" => server.enabled = self.bool(attr),
                    "bootstrap_expect" => server.bootstrap_expect = self.bootstrap_expect(attr),
                    "retry_join" => server.retry_join = self.strings(attr),
                    "encrypt" => server.encrypt = self.gossip_key(attr),
                    key => self.unknown(attr, key, "server", SERVER_KEYS),
                },
                Structure::Block(inner) => match self.block_name(inner) {
                    "server_join" => {
                        for attr in self.attributes(inner, SERVER_JOIN_KEYS) {
                            server.retry_join = self.strings(attr);
                        }
                    }
                    key => self.unknown(inner, key, "server", SERVER_KEYS),
                },
            }
        }
        server
    }

    fn client(&mut self, block: &Block) -> ClientSection {
        let mut client = ClientSection::default();
        for attr in self.attributes(block, CLIENT_KEYS) {
            match attr.key.value().as_str() {
                "enabled" => client.enabled = self.bool(attr),
                _ => client.servers = self.strings(attr),
            }
        }
        client
    }

    fn tls(&mut self, block: &Block) -> TlsSection {
        let mut tls = TlsSection::default();
        for attr in self.attributes(block, TLS_KEYS) {
            match attr.key.value().as_str() {
                "ca_file" => tls.ca_file = self.string(attr),
                "cert_file" => tls.cert_file = self.string(attr),
                "key_file" => tls.key_file = self.string(attr),
                "http" => tls.http = self.bool(attr),
                "verify_https_client" => tls.verify_https_client = self.bool(attr),
                "tls_min_version" => {
                    let text = self.string(attr);
                    match text.as_deref().map(TlsMinVersion::parse) {
                        Some(Ok(version)) => tls.tls_min_version = Some(version),
                        Some(Err(message)) => self.error(&attr.value, &message),
                        None => {}
                    }
                }
                // Agents always speak mutual TLS to each other; saying so is fine.
                _ => {
                    if self.bool(attr) == Some(false) {
                        self.error(attr, "tls.rpc = false is not supported: agents always verify each other with the cluster's CA");
                    }
                }
            }
        }
        tls
    }

    fn autopilot(&mut self, block: &Block) -> AutopilotSection {
        let mut autopilot = AutopilotSection::default();
        for attr in self.attributes(block, AUTOPILOT_KEYS) {
            match attr.key.value().as_str() {
                "cleanup_dead_servers" => autopilot.cleanup_dead_servers = self.bool(attr),
                "last_contact_threshold" => {
                    autopilot.last_contact_threshold_ms =
                        self.duration_ms(attr, LAST_CONTACT_THRESHOLD_MIN_MS);
                }
                "server_stabilization_time" => {
                    autopilot.server_stabilization_time_ms = self.duration_ms(attr, 0);
                }
                "max_trailing_logs" => {
                    autopilot.max_trailing_logs = self.integer(attr, 0, AUTOPILOT_COUNT_MAX);
                }
                "min_quorum" => autopilot.min_quorum = self.integer(attr, 0, AUTOPILOT_COUNT_MAX),
                // Nomad Enterprise's settings: off is what drover does, on is refused.
                key => {
                    if self.bool(attr) == Some(true) {
                        self.error(attr, &format!("autopilot.{key} = true is a Nomad Enterprise feature drover does not have"));
                    }
                }
            }
        }
        autopilot
    }

    /// A Go duration string (`"200ms"`, `"10s"`) of at least `min_ms`, in milliseconds.
    fn duration_ms(&mut self, attr: &Attribute, min_ms: u64) -> Option<u64> {
        let text = self.string(attr)?;
        let ms = drover_core::model::go_duration_ms(&text).ok();
        match ms.filter(|ms| *ms >= min_ms) {
            Some(ms) => Some(ms),
            None => {
                let least = if min_ms == 0 { "0s".to_owned() } else { format!("{min_ms}ms") };
                self.type_error(
                    attr,
                    &format!("a duration such as \"10s\" of at least {least}, not {text:?}"),
                );
                None
            }
        }
    }

    /// The attributes of a block that may hold only attributes named in `keys`; anything
    /// else is reported.
    fn attributes<'b>(&mut self, block: &'b Block, keys: &[&str]) -> Vec<&'b Attribute> {
        let context = block.ident.value().as_str();
        let mut attributes = Vec::new();
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attr) if keys.contains(&attr.key.value().as_str()) => {
                    attributes.push(attr);
                }
                Structure::Attribute(attr) => {
                    self.unknown(attr, attr.key.value().as_str(), context, keys);
                }
                Structure::Block(inner) => {
                    self.unknown(inner, inner.ident.value().as_str(), context, keys);
                }
            }
        }
        attributes
    }

    /// A block's name; labels are not part of the agent configuration's shape.
    fn block_name<'b>(&mut self, block: &'b Block) -> &'b str {
        let name = block.ident.value().as_str();
        if let Some(label) = block.labels.first() {
            let span = label.span().unwrap_or(0..0);
            self.errors.push((span, format!("block \"{name}\" takes no labels")));
        }
        name
    }

    fn unknown(&mut self, node: &impl Span, key: &str, context: &str, keys: &[&str]) {
        let expected = keys.join(", ");
        self.error(
            node,
            &format!("unknown key \"{key}\" in {context}; expected one of: {expected}"),
        );
    }

    fn error(&mut self, node: &impl Span, message: &str) {
        self.errors.push((node.span().unwrap_or(0..0), message.to_owned()));
    }

    fn type_error(&mut self, attr: &Attribute, expected: &str) {
        let key = attr.key.value().as_str();
        self.errors
            .push((attr.value.span().unwrap_or(0..0), format!("{key}: expected {expected}")));
    }

    fn string(&mut self, attr: &Attribute) -> Option<String> {
        match &attr.value {
            Expression::String(text) => Some(text.value().clone()),
            _ => {
                self.type_error(attr, "a string");
                None
            }
        }
    }

    /// A region, datacenter or node name: a non-empty string without spaces.
    fn name(&mut self, attr: &Attribute) -> Option<String> {
        let text = self.string(attr)?;
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            self.type_error(attr, "a non-empty name without spaces");
            return None;
        }
        Some(text)
    }

    fn log_level(&mut self, attr: &Attribute) -> Option<LogLevel> {
        let text = self.string(attr)?;
        match LogLevel::parse(&text) {
            Ok(level) => Some(level),
            Err(_) => {
                self.type_error(
                    attr,
                    "one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"off\"",
                );
                None
            }
        }
    }

    fn bool(&mut self, attr: &Attribute) -> Option<bool> {
        match &attr.value {
            Expression::Bool(value) => Some(*value.value()),
            _ => {
                self.type_error(attr, "true or false");
                None
            }
        }
    }

    fn integer(&mut self, attr: &Attribute, min: u64, max: u64) -> Option<u64> {
        let value = match &attr.value {
            Expression::Number(number) => number.value().as_u64(),
            _ => None,
        };
        match value.filter(|v| (min..=max).contains(v)) {
            Some(value) => Some(value),
            None => {
                self.type_error(attr, &format!("a whole number from {min} to {max}"));
                None
            }
        }
    }

    fn port(&mut self, attr: &Attribute) -> Option<u16> {
        self.integer(attr, 1, u64::from(u16::MAX)).and_then(|p| u16::try_from(p).ok())
    }

    fn bootstrap_expect(&mut self, attr: &Attribute) -> Option<u32> {
        let max = u64::from(BOOTSTRAP_EXPECT_MAX);
        self.integer(attr, 1, max).and_then(|n| u32::try_from(n).ok())
    }

    fn gossip_key(&mut self, attr: &Attribute) -> Option<GossipKeyText> {
        let text = self.string(attr)?;
        match GossipKeyText::parse(&text) {
            Ok(key) => Some(key),
            Err(why) => {
                self.errors.push((attr.value.span().unwrap_or(0..0), format!("encrypt: {why}")));
                None
            }
        }
    }

    fn strings(&mut self, attr: &Attribute) -> Option<Vec<String>> {
        let Expression::Array(array) = &attr.value else {
            self.type_error(attr, "a list of strings");
            return None;
        };
        let mut strings = Vec::new();
        for item in array.iter() {
            match item {
                Expression::String(text) if !text.value().is_empty() => {
                    strings.push(text.value().clone());
                }
                other => {
                    let key = attr.key.value().as_str();
                    let span = other.span().unwrap_or(0..0);
                    self.errors.push((span, format!("{key}: expected a non-empty string")));
                }
            }
        }
        Some(strings)
    }
}

/// A whole agent's settings, defaults filled in and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSettings {
    pub server: bool,
    pub client: bool,
    pub data_dir: PathBuf,
    pub region: String,
    pub datacenter: String,
    /// The node's (and, on a server, the gossip member's) name.
    pub name: String,
    /// Where each service binds, `host:port`.
    pub http_bind: String,
    pub rpc_bind: String,
    pub serf_bind: String,
    /// What peers are told to dial; the bind address unless `advertise` says otherwise.
    pub rpc_advertise: String,
    pub serf_advertise: String,
    /// The node's HTTP address (`HTTPAddr`), where other agents carry requests for its
    /// allocations: `advertise { http }`, else the bind address, else (bound to every
    /// interface) the RPC advertise host with the HTTP port.
    pub http_advertise: String,
    pub bootstrap_expect: u32,
    /// Gossip addresses of other servers, `host` or `host:port` (port 4648 by default).
    pub retry_join: Vec<String>,
    /// RPC addresses of servers for a client, `host` or `host:port` (4647 by default).
    pub servers: Vec<String>,
    pub tls: TlsFiles,
    /// The key gossip datagrams are sealed with; none: gossip in the clear.
    pub gossip_key: Option<GossipKeyText>,
    /// How the HTTP API is served.
    pub http_tls: HttpTls,
    pub autopilot: AutopilotConfig,
    pub log_level: LogLevel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The HTTP API's transport, from `tls { http, verify_https_client, tls_min_version }`
/// (Nomad's defaults: plain HTTP; with `http = true`, HTTPS from TLS 1.2 on without
/// client certificates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpTls {
    Plain,
    Https(HttpsOptions),
}

/// How the HTTP API speaks HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpsOptions {
    /// Callers must present a certificate signed by the cluster's CA.
    pub verify_client: bool,
    pub min_version: TlsMinVersion,
}

impl HttpTls {
    /// The URL scheme callers use: `http` or `https`.
    pub fn scheme(self) -> &'static str {
        match self {
            HttpTls::Plain => "http",
            HttpTls::Https(_) => "https",
        }
    }
}

/// Checks the merged configuration of a non-`-dev` agent and fills in Nomad's defaults.
/// `hostname` is the node name when none is given.
pub fn resolve(config: FileConfig, hostname: &str) -> Result<AgentSettings, String> {
    let server = config.server.enabled.unwrap_or(false);
    let client = config.client.enabled.unwrap_or(false);
    if !server && !client {
        return Err("Must specify either server, client or dev mode for the agent.".into());
    }
    let Some(data_dir) = config.data_dir.filter(|d| !d.is_empty()) else {
        return Err("Must specify data directory (data_dir or -data-dir)".into());
    };
    let tls = match tls_files(&config.tls) {
        Some(files) => files,
        None => {
            let role = if server { "-server" } else { "-client" };
            return Err(format!(
                "TLS is required outside -dev: agents verify each other with the cluster's CA.\n\
                 Create one and a certificate for this agent:\n\
                 \x20 drover tls ca create\n\
                 \x20 drover tls cert create {role}\n\
                 then name them in the agent configuration:\n\
                 \x20 tls {{\n\
                 \x20   ca_file   = \"drover-agent-ca.pem\"\n\
                 \x20   cert_file = \"global-{}-drover.pem\"\n\
                 \x20   key_file  = \"global-{}-drover-key.pem\"\n\
                 \x20 }}",
                &role[1..],
                &role[1..],
            ));
        }
    };
    let http_tls = http_tls(&config.tls)?;
    let bootstrap_expect = config.server.bootstrap_expect.unwrap_or(0);
    if server && bootstrap_expect == 0 {
        return Err("A server needs bootstrap_expect (or -bootstrap-expect): how many servers form the region (1, 3 or 5)".into());
    }
    if !server && config.server.bootstrap_expect.is_some() {
        return Err("bootstrap_expect requires server mode".into());
    }
    if !server && config.server.encrypt.is_some() {
        return Err("encrypt (the gossip key) requires server mode: only servers gossip".into());
    }
    let servers = config.client.servers.unwrap_or_default();
    if client && !server && servers.is_empty() {
        return Err(
            "A client needs the servers it reports to: client { servers = [...] } or -servers"
                .into(),
        );
    }
    if config.ports.http == Some(0) {
        return Err("-http-port 0 (an ephemeral port) is for -dev only: other agents reach this one's API at the port it advertises".into());
    }
    let bind = config.bind_addr.unwrap_or_else(|| "0.0.0.0".to_owned());
    let http_port = config.ports.http.unwrap_or(HTTP_PORT_DEFAULT);
    let rpc_port = config.ports.rpc.unwrap_or(RPC_PORT_DEFAULT);
    let serf_port = config.ports.serf.unwrap_or(SERF_PORT_DEFAULT);
    let at = |host: &Option<String>, port: u16| {
        let host = host.as_deref().unwrap_or(&bind);
        join_host_port(host, port)
    };
    let rpc_bind = at(&config.addresses.rpc, rpc_port);
    let serf_bind = at(&config.addresses.serf, serf_port);
    // An IPv6 host holds colons too: `with_default_port` tells it from `host:port`.
    let advertise = |given: Option<String>, bound: &str, port: u16| match given {
        Some(addr) => with_default_port(&addr, port),
        None => bound.to_owned(),
    };
    let rpc_advertise = advertise(config.advertise.rpc, &rpc_bind, rpc_port);
    let serf_advertise = advertise(config.advertise.serf, &serf_bind, serf_port);
    let http_bind = at(&config.addresses.http, http_port);
    let http_advertise = match config.advertise.http {
        Some(given) => with_default_port(&given, http_port),
        None if is_unspecified(&http_bind) => {
            let rpc_host = rpc_advertise.rsplit_once(':').map_or("", |(host, _)| host);
            join_host_port(rpc_host.trim_matches(['[', ']']), http_port)
        }
        None => http_bind.clone(),
    };
    for (what, addr) in [("RPC", &rpc_advertise), ("serf", &serf_advertise)] {
        if is_unspecified(addr) {
            return Err(format!(
                "The {what} address {addr} cannot be advertised to peers: set bind_addr or advertise {{ {} = \"...\" }}",
                what.to_lowercase()
            ));
        }
    }
    Ok(AgentSettings {
        server,
        client,
        data_dir: data_dir.into(),
        region: config.region.unwrap_or_else(|| REGION_DEFAULT.to_owned()),
        datacenter: config.datacenter.unwrap_or_else(|| DATACENTER_DEFAULT.to_owned()),
        name: config.name.unwrap_or_else(|| hostname.to_owned()),
        http_bind,
        rpc_bind,
        serf_bind,
        rpc_advertise,
        serf_advertise,
        http_advertise,
        bootstrap_expect,
        retry_join: config.server.retry_join.unwrap_or_default(),
        servers,
        tls,
        gossip_key: config.server.encrypt,
        http_tls,
        autopilot: config.autopilot.resolve(bootstrap_expect),
        log_level: config.log_level.unwrap_or(LogLevel::Info),
    })
}

/// Whether `addr` (`host:port`) is the any-address, which no peer can dial.
fn is_unspecified(addr: &str) -> bool {
    addr.starts_with("0.0.0.0:") || addr.starts_with("[::]:")
}

/// The `tls` block's files, when it names all three.
fn tls_files(tls: &TlsSection) -> Option<TlsFiles> {
    match (&tls.ca_file, &tls.cert_file, &tls.key_file) {
        (Some(ca_file), Some(cert_file), Some(key_file)) => Some(TlsFiles {
            ca_file: ca_file.into(),
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        }),
        _ => None,
    }
}

/// How the HTTP API is served, from `tls { http, verify_https_client }`.
fn http_tls(tls: &TlsSection) -> Result<HttpTls, String> {
    match (tls.http.unwrap_or(false), tls.verify_https_client) {
        (true, verify) => Ok(HttpTls::Https(HttpsOptions {
            verify_client: verify.unwrap_or(false),
            min_version: tls.tls_min_version.unwrap_or_default(),
        })),
        (false, Some(true)) => Err("tls.verify_https_client = true requires tls.http = true: client certificates are asked for only over HTTPS".into()),
        (false, _) => Ok(HttpTls::Plain),
    }
}

/// What a `-dev` agent runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevSettings {
    /// None: a fresh temporary directory, removed on exit.
    pub data_dir: Option<PathBuf>,
    pub region: String,
    pub datacenter: String,
    pub name: String,
    /// The RPC address the server names itself by (`<bind>:4647`); nothing listens there.
    pub rpc_addr: String,
    pub http_bind: String,
    /// With `tls { http = true }`: the agent's certificate and whether callers must show
    /// theirs.
    pub https: Option<(TlsFiles, HttpsOptions)>,
    pub autopilot: AutopilotConfig,
    pub log_level: LogLevel,
}

/// The bind address of a `-dev` agent unless its configuration gives another.
pub const DEV_BIND_DEFAULT: &str = "127.0.0.1";

/// Nomad's `-dev` defaults (loopback, port 4646, the machine's name, a temporary data
/// directory) with the merged `-config` files and flags over them. What one process
/// holding a server and its client cannot honour (other servers to join or report to,
/// gossip, RPC and advertised addresses, a role turned off) is refused, never ignored.
pub fn resolve_dev(config: FileConfig, hostname: &str) -> Result<DevSettings, String> {
    let unsupported = unsupported_in_dev(&config);
    if !unsupported.is_empty() {
        return Err(format!(
            "-dev runs one server and its client in one process; it cannot honour: {}",
            unsupported.join(", ")
        ));
    }
    let https = match http_tls(&config.tls)? {
        HttpTls::Plain => None,
        HttpTls::Https(options) => {
            let files = tls_files(&config.tls).ok_or(
                "tls.http = true needs the agent's certificate: tls.ca_file, tls.cert_file and tls.key_file",
            )?;
            Some((files, options))
        }
    };
    let bind = config.bind_addr.unwrap_or_else(|| DEV_BIND_DEFAULT.to_owned());
    let http_host = config.addresses.http.as_deref().unwrap_or(&bind);
    Ok(DevSettings {
        data_dir: config.data_dir.filter(|d| !d.is_empty()).map(PathBuf::from),
        region: config.region.unwrap_or_else(|| REGION_DEFAULT.to_owned()),
        datacenter: config.datacenter.unwrap_or_else(|| DATACENTER_DEFAULT.to_owned()),
        name: config.name.unwrap_or_else(|| hostname.to_owned()),
        rpc_addr: join_host_port(&bind, RPC_PORT_DEFAULT),
        http_bind: join_host_port(http_host, config.ports.http.unwrap_or(HTTP_PORT_DEFAULT)),
        https,
        autopilot: config.autopilot.resolve(0),
        log_level: config.log_level.unwrap_or(LogLevel::Info),
    })
}

/// The settings a `-dev` agent cannot honour, by their configuration names.
fn unsupported_in_dev(config: &FileConfig) -> Vec<&'static str> {
    let said = [
        ("server.enabled = false", config.server.enabled == Some(false)),
        ("client.enabled = false", config.client.enabled == Some(false)),
        (
            "server.bootstrap_expect other than 1",
            config.server.bootstrap_expect.is_some_and(|n| n != 1),
        ),
        ("server.retry_join", config.server.retry_join.is_some()),
        ("server.encrypt", config.server.encrypt.is_some()),
        ("client.servers", config.client.servers.is_some()),
        ("ports.rpc", config.ports.rpc.is_some()),
        ("ports.serf", config.ports.serf.is_some()),
        ("addresses.rpc", config.addresses.rpc.is_some()),
        ("addresses.serf", config.addresses.serf.is_some()),
        ("advertise", config.advertise != Addresses::default()),
    ];
    said.into_iter().filter(|(_, given)| *given).map(|(name, _)| name).collect()
}

/// `host:port`, bracketing an IPv6 host.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// `addr` with `port` added when it names none (`10.0.0.1` → `10.0.0.1:4648`).
pub fn with_default_port(addr: &str, port: u16) -> String {
    let has_port = match addr.rsplit_once(':') {
        Some((host, tail)) => {
            tail.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port { addr.to_owned() } else { join_host_port(addr.trim_matches(['[', ']']), port) }
}
