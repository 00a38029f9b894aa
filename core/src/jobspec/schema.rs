//! What each jobspec block may contain: attributes (with their kind and API key) and nested
//! blocks (with how they nest), after Nomad's jobspec2 (`api` struct tags).
//!
//! Keys starting with `@` are not API keys: the lowering consumes them (constraint
//! shorthands, port placement). A key of `""` means "accepted, not carried into the job".

/// How an attribute's value is checked and converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string; numbers and bools convert to their text, as HCL does.
    Str,
    /// A whole number that fits an i32 (strings of digits convert).
    Int,
    /// A whole number within the inclusive range.
    IntIn(i64, i64),
    Bool,
    /// A Go duration string ("30s", "1h30m") or a number of nanoseconds.
    Duration,
    /// A list of strings.
    StrList,
    /// A map of strings (`meta`, `env`): an attribute `meta = {...}` or a block `meta {...}`.
    StrMap,
    /// A map of lists of strings (check `header`).
    HeaderMap,
    /// Any value, carried as it is.
    Any,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Attr {
    pub name: &'static str,
    pub key: &'static str,
    pub kind: Kind,
}

/// How a nested block lands in its parent's JSON object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nest {
    /// At most one, an object under `key`.
    One,
    /// Any number, a list under `key`.
    Many,
    /// Any number with one label each, a list under `key`; the label goes to `label_key`.
    Labeled(&'static str),
    /// Any number with one label each, an object under `key` keyed by the label; the label
    /// also goes to `label_key`.
    LabeledMap(&'static str),
    /// A `port "label"` block: ReservedPorts if it has `static`, DynamicPorts otherwise.
    Port,
    /// A map block (`meta {}`, `env {}`): its attributes become a string map.
    StrMap,
    /// A free-form block (driver `config`, scaling `policy`): any attributes and blocks,
    /// nested blocks becoming lists of objects as in Nomad.
    Free,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Child {
    pub name: &'static str,
    pub key: &'static str,
    pub nest: Nest,
    pub schema: &'static Schema,
}

#[derive(Debug)]
pub(crate) struct Schema {
    /// The block's name in messages.
    pub name: &'static str,
    pub attrs: &'static [Attr],
    pub blocks: &'static [Child],
}

impl Schema {
    pub fn attr(&self, name: &str) -> Option<&'static Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn block(&self, name: &str) -> Option<&'static Child> {
        self.blocks.iter().find(|b| b.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.attrs.iter().map(|a| a.name).chain(self.blocks.iter().map(|b| b.name))
    }
}

const fn a(name: &'static str, key: &'static str, kind: Kind) -> Attr {
    Attr { name, key, kind }
}

const fn b(name: &'static str, key: &'static str, nest: Nest, schema: &'static Schema) -> Child {
    Child { name, key, nest, schema }
}

use Kind::{Any, Bool, Duration, HeaderMap, Int, IntIn, Str, StrList, StrMap};

/// The body of a free-form or map block: everything is accepted.
pub(crate) static FREE: Schema = Schema { name: "*", attrs: &[], blocks: &[] };
pub(crate) static META: Schema = Schema { name: "meta", attrs: &[], blocks: &[] };
pub(crate) static ENV: Schema = Schema { name: "env", attrs: &[], blocks: &[] };

const CONSTRAINT_ATTRS: &[Attr] = &[
    a("attribute", "LTarget", Str),
    a("operator", "Operand", Str),
    a("value", "RTarget", Str),
    a("distinct_hosts", "@distinct_hosts", Bool),
    a("distinct_property", "@distinct_property", Str),
    a("regexp", "@regexp", Str),
    a("version", "@version", Str),
    a("semver", "@semver", Str),
    a("set_contains", "@set_contains", Str),
    a("set_contains_all", "@set_contains_all", Str),
    a("set_contains_any", "@set_contains_any", Str),
    a("is_set", "@is_set", Str),
    a("is_not_set", "@is_not_set", Str),
];

pub(crate) static CONSTRAINT: Schema =
    Schema { name: "constraint", attrs: CONSTRAINT_ATTRS, blocks: &[] };

pub(crate) static AFFINITY: Schema = Schema {
    name: "affinity",
    attrs: &[
        a("attribute", "LTarget", Str),
        a("operator", "Operand", Str),
        a("value", "RTarget", Str),
        a("weight", "Weight", IntIn(-100, 100)),
        a("regexp", "@regexp", Str),
        a("version", "@version", Str),
        a("semver", "@semver", Str),
        a("set_contains", "@set_contains", Str),
        a("set_contains_all", "@set_contains_all", Str),
        a("set_contains_any", "@set_contains_any", Str),
    ],
    blocks: &[],
};

static SPREAD_TARGET: Schema =
    Schema { name: "target", attrs: &[a("percent", "Percent", IntIn(0, 100))], blocks: &[] };

pub(crate) static SPREAD: Schema = Schema {
    name: "spread",
    attrs: &[a("attribute", "Attribute", Str), a("weight", "Weight", IntIn(0, 100))],
    blocks: &[b("target", "SpreadTarget", Nest::Labeled("Value"), &SPREAD_TARGET)],
};

pub(crate) static UPDATE: Schema = Schema {
    name: "update",
    attrs: &[
        a("stagger", "Stagger", Duration),
        a("max_parallel", "MaxParallel", Int),
        a("health_check", "HealthCheck", Str),
        a("min_healthy_time", "MinHealthyTime", Duration),
        a("healthy_deadline", "HealthyDeadline", Duration),
        a("progress_deadline", "ProgressDeadline", Duration),
        a("auto_revert", "AutoRevert", Bool),
        a("auto_promote", "AutoPromote", Bool),
        a("canary", "Canary", Int),
    ],
    blocks: &[],
};

pub(crate) static MIGRATE: Schema = Schema {
    name: "migrate",
    attrs: &[
        a("max_parallel", "MaxParallel", Int),
        a("health_check", "HealthCheck", Str),
        a("min_healthy_time", "MinHealthyTime", Duration),
        a("healthy_deadline", "HealthyDeadline", Duration),
    ],
    blocks: &[],
};

pub(crate) static RESTART: Schema = Schema {
    name: "restart",
    attrs: &[
        a("attempts", "Attempts", Int),
        a("interval", "Interval", Duration),
        a("delay", "Delay", Duration),
        a("mode", "Mode", Str),
        a("render_templates", "RenderTemplates", Bool),
    ],
    blocks: &[],
};

pub(crate) static RESCHEDULE: Schema = Schema {
    name: "reschedule",
    attrs: &[
        a("attempts", "Attempts", Int),
        a("interval", "Interval", Duration),
        a("delay", "Delay", Duration),
        a("delay_function", "DelayFunction", Str),
        a("max_delay", "MaxDelay", Duration),
        a("unlimited", "Unlimited", Bool),
    ],
    blocks: &[],
};

static PERIODIC: Schema = Schema {
    name: "periodic",
    attrs: &[
        a("cron", "Spec", Str),
        a("crons", "Specs", StrList),
        a("prohibit_overlap", "ProhibitOverlap", Bool),
        a("time_zone", "TimeZone", Str),
        a("enabled", "Enabled", Bool),
    ],
    blocks: &[],
};

static PARAMETERIZED: Schema = Schema {
    name: "parameterized",
    attrs: &[
        a("payload", "Payload", Str),
        a("meta_required", "MetaRequired", StrList),
        a("meta_optional", "MetaOptional", StrList),
    ],
    blocks: &[],
};

static MULTIREGION_STRATEGY: Schema = Schema {
    name: "strategy",
    attrs: &[a("max_parallel", "MaxParallel", Int), a("on_failure", "OnFailure", Str)],
    blocks: &[],
};

static MULTIREGION_REGION: Schema = Schema {
    name: "region",
    attrs: &[
        a("count", "Count", Int),
        a("datacenters", "Datacenters", StrList),
        a("node_pool", "NodePool", Str),
        a("meta", "Meta", StrMap),
    ],
    blocks: &[b("meta", "Meta", Nest::StrMap, &META)],
};

static MULTIREGION: Schema = Schema {
    name: "multiregion",
    attrs: &[],
    blocks: &[
        b("strategy", "Strategy", Nest::One, &MULTIREGION_STRATEGY),
        b("region", "Regions", Nest::Labeled("Name"), &MULTIREGION_REGION),
    ],
};

pub(crate) static JOB: Schema = Schema {
    name: "job",
    attrs: &[
        a("name", "Name", Str),
        a("region", "Region", Str),
        a("namespace", "Namespace", Str),
        a("type", "Type", Str),
        a("priority", "Priority", Int),
        a("datacenters", "Datacenters", StrList),
        a("node_pool", "NodePool", Str),
        a("all_at_once", "AllAtOnce", Bool),
        a("meta", "Meta", StrMap),
        a("vault_token", "", Str),
        a("consul_token", "", Str),
    ],
    blocks: &[
        b("meta", "Meta", Nest::StrMap, &META),
        b("constraint", "Constraints", Nest::Many, &CONSTRAINT),
        b("affinity", "Affinities", Nest::Many, &AFFINITY),
        b("spread", "Spreads", Nest::Many, &SPREAD),
        b("group", "TaskGroups", Nest::Labeled("Name"), &GROUP),
        b("task", "@Tasks", Nest::Labeled("Name"), &TASK),
        b("update", "Update", Nest::One, &UPDATE),
        b("migrate", "Migrate", Nest::One, &MIGRATE),
        b("reschedule", "Reschedule", Nest::One, &RESCHEDULE),
        b("periodic", "Periodic", Nest::One, &PERIODIC),
        b("parameterized", "ParameterizedJob", Nest::One, &PARAMETERIZED),
        b("multiregion", "Multiregion", Nest::One, &MULTIREGION),
        b("vault", "", Nest::Free, &FREE),
    ],
};

static PORT: Schema = Schema {
    name: "port",
    attrs: &[
        a("static", "Value", IntIn(0, 65535)),
        a("to", "To", IntIn(-1, 65535)),
        a("host_network", "HostNetwork", Str),
    ],
    blocks: &[],
};

static DNS: Schema = Schema {
    name: "dns",
    attrs: &[
        a("servers", "Servers", StrList),
        a("searches", "Searches", StrList),
        a("options", "Options", StrList),
    ],
    blocks: &[],
};

pub(crate) static NETWORK: Schema = Schema {
    name: "network",
    attrs: &[a("mode", "Mode", Str), a("hostname", "Hostname", Str), a("mbits", "MBits", Int)],
    blocks: &[b("port", "", Nest::Port, &PORT), b("dns", "DNS", Nest::One, &DNS)],
};

static CHECK_RESTART: Schema = Schema {
    name: "check_restart",
    attrs: &[
        a("limit", "Limit", Int),
        a("grace", "Grace", Duration),
        a("ignore_warnings", "IgnoreWarnings", Bool),
    ],
    blocks: &[],
};

static CHECK: Schema = Schema {
    name: "check",
    attrs: &[
        a("name", "Name", Str),
        a("type", "Type", Str),
        a("command", "Command", Str),
        a("args", "Args", StrList),
        a("path", "Path", Str),
        a("protocol", "Protocol", Str),
        a("port", "PortLabel", Str),
        a("address_mode", "AddressMode", Str),
        a("interval", "Interval", Duration),
        a("timeout", "Timeout", Duration),
        a("initial_status", "InitialStatus", Str),
        a("method", "Method", Str),
        a("header", "Header", HeaderMap),
        a("task", "TaskName", Str),
        a("on_update", "OnUpdate", Str),
        a("expose", "Expose", Bool),
        a("tls_skip_verify", "TLSSkipVerify", Bool),
        a("tls_server_name", "TLSServerName", Str),
        a("grpc_service", "GRPCService", Str),
        a("grpc_use_tls", "GRPCUseTLS", Bool),
        a("body", "Body", Str),
        a("success_before_passing", "SuccessBeforePassing", Int),
        a("failures_before_critical", "FailuresBeforeCritical", Int),
        a("failures_before_warning", "FailuresBeforeWarning", Int),
    ],
    blocks: &[
        b("check_restart", "CheckRestart", Nest::One, &CHECK_RESTART),
        b("header", "Header", Nest::Free, &FREE),
    ],
};

pub(crate) static SERVICE: Schema = Schema {
    name: "service",
    attrs: &[
        a("name", "Name", Str),
        a("port", "PortLabel", Str),
        a("tags", "Tags", StrList),
        a("canary_tags", "CanaryTags", StrList),
        a("address_mode", "AddressMode", Str),
        a("address", "Address", Str),
        a("task", "TaskName", Str),
        a("on_update", "OnUpdate", Str),
        a("provider", "Provider", Str),
        a("meta", "Meta", StrMap),
        a("canary_meta", "CanaryMeta", StrMap),
        a("tagged_addresses", "TaggedAddresses", StrMap),
        a("enable_tag_override", "EnableTagOverride", Bool),
        a("cluster", "Cluster", Str),
    ],
    blocks: &[
        b("check", "Checks", Nest::Many, &CHECK),
        b("check_restart", "CheckRestart", Nest::One, &CHECK_RESTART),
        b("meta", "Meta", Nest::StrMap, &META),
        b("canary_meta", "CanaryMeta", Nest::StrMap, &META),
        b("connect", "Connect", Nest::Free, &FREE),
        b("identity", "Identity", Nest::Free, &FREE),
    ],
};

static VOLUME: Schema = Schema {
    name: "volume",
    attrs: &[
        a("type", "Type", Str),
        a("source", "Source", Str),
        a("read_only", "ReadOnly", Bool),
        a("per_alloc", "PerAlloc", Bool),
        a("access_mode", "AccessMode", Str),
        a("attachment_mode", "AttachmentMode", Str),
        a("sticky", "Sticky", Bool),
    ],
    blocks: &[b("mount_options", "MountOptions", Nest::Free, &FREE)],
};

static EPHEMERAL_DISK: Schema = Schema {
    name: "ephemeral_disk",
    attrs: &[a("size", "SizeMB", Int), a("sticky", "Sticky", Bool), a("migrate", "Migrate", Bool)],
    blocks: &[],
};

static DISCONNECT: Schema = Schema {
    name: "disconnect",
    attrs: &[
        a("lost_after", "LostAfter", Duration),
        a("replace", "Replace", Bool),
        a("reconcile", "Reconcile", Str),
        a("stop_on_client_after", "StopOnClientAfter", Duration),
    ],
    blocks: &[],
};

static SCALING: Schema = Schema {
    name: "scaling",
    attrs: &[
        a("min", "Min", Int),
        a("max", "Max", Int),
        a("enabled", "Enabled", Bool),
        a("type", "Type", Str),
    ],
    blocks: &[b("policy", "Policy", Nest::Free, &FREE)],
};

pub(crate) static GROUP: Schema = Schema {
    name: "group",
    attrs: &[
        a("count", "Count", Int),
        a("shutdown_delay", "ShutdownDelay", Duration),
        a("max_client_disconnect", "MaxClientDisconnect", Duration),
        a("stop_after_client_disconnect", "StopAfterClientDisconnect", Duration),
        a("prevent_reschedule_on_lost", "PreventRescheduleOnLost", Bool),
        a("meta", "Meta", StrMap),
    ],
    blocks: &[
        b("meta", "Meta", Nest::StrMap, &META),
        b("constraint", "Constraints", Nest::Many, &CONSTRAINT),
        b("affinity", "Affinities", Nest::Many, &AFFINITY),
        b("spread", "Spreads", Nest::Many, &SPREAD),
        b("task", "Tasks", Nest::Labeled("Name"), &TASK),
        b("network", "Networks", Nest::Many, &NETWORK),
        b("service", "Services", Nest::Many, &SERVICE),
        b("volume", "Volumes", Nest::LabeledMap("Name"), &VOLUME),
        b("restart", "RestartPolicy", Nest::One, &RESTART),
        b("reschedule", "ReschedulePolicy", Nest::One, &RESCHEDULE),
        b("ephemeral_disk", "EphemeralDisk", Nest::One, &EPHEMERAL_DISK),
        b("update", "Update", Nest::One, &UPDATE),
        b("migrate", "Migrate", Nest::One, &MIGRATE),
        b("disconnect", "Disconnect", Nest::One, &DISCONNECT),
        b("scaling", "Scaling", Nest::One, &SCALING),
        b("consul", "Consul", Nest::Free, &FREE),
        b("vault", "", Nest::Free, &FREE),
    ],
};

static RESOURCES: Schema = Schema {
    name: "resources",
    attrs: &[
        a("cpu", "CPU", Int),
        a("cores", "Cores", Int),
        a("memory", "MemoryMB", Int),
        a("memory_max", "MemoryMaxMB", Int),
        a("disk", "DiskMB", Int),
        a("secrets", "SecretsMB", Int),
    ],
    blocks: &[
        b("network", "Networks", Nest::Many, &NETWORK),
        b("device", "Devices", Nest::Labeled("Name"), &FREE),
        b("numa", "NUMA", Nest::Free, &FREE),
    ],
};

static TEMPLATE_WAIT: Schema = Schema {
    name: "wait",
    attrs: &[a("min", "Min", Duration), a("max", "Max", Duration)],
    blocks: &[],
};

static CHANGE_SCRIPT: Schema = Schema {
    name: "change_script",
    attrs: &[
        a("command", "Command", Str),
        a("args", "Args", StrList),
        a("timeout", "Timeout", Duration),
        a("fail_on_error", "FailOnError", Bool),
    ],
    blocks: &[],
};

static TEMPLATE: Schema = Schema {
    name: "template",
    attrs: &[
        a("source", "SourcePath", Str),
        a("destination", "DestPath", Str),
        a("data", "EmbeddedTmpl", Str),
        a("change_mode", "ChangeMode", Str),
        a("change_signal", "ChangeSignal", Str),
        a("splay", "Splay", Duration),
        a("perms", "Perms", Str),
        a("uid", "Uid", Int),
        a("gid", "Gid", Int),
        a("left_delimiter", "LeftDelim", Str),
        a("right_delimiter", "RightDelim", Str),
        a("env", "Envvars", Bool),
        a("error_on_missing_key", "ErrMissingKey", Bool),
        a("vault_grace", "VaultGrace", Duration),
    ],
    blocks: &[
        b("wait", "Wait", Nest::One, &TEMPLATE_WAIT),
        b("change_script", "ChangeScript", Nest::One, &CHANGE_SCRIPT),
    ],
};

static ARTIFACT: Schema = Schema {
    name: "artifact",
    attrs: &[
        a("source", "GetterSource", Str),
        a("destination", "RelativeDest", Str),
        a("mode", "GetterMode", Str),
        a("options", "GetterOptions", StrMap),
        a("headers", "GetterHeaders", StrMap),
        a("chown", "Chown", Bool),
    ],
    blocks: &[
        b("options", "GetterOptions", Nest::StrMap, &META),
        b("headers", "GetterHeaders", Nest::StrMap, &META),
    ],
};

static LOGS: Schema = Schema {
    name: "logs",
    attrs: &[
        a("max_files", "MaxFiles", Int),
        a("max_file_size", "MaxFileSizeMB", Int),
        a("disabled", "Disabled", Bool),
        a("enabled", "@enabled", Bool),
    ],
    blocks: &[],
};

static LIFECYCLE: Schema = Schema {
    name: "lifecycle",
    attrs: &[a("hook", "Hook", Str), a("sidecar", "Sidecar", Bool)],
    blocks: &[],
};

static VOLUME_MOUNT: Schema = Schema {
    name: "volume_mount",
    attrs: &[
        a("volume", "Volume", Str),
        a("destination", "Destination", Str),
        a("read_only", "ReadOnly", Bool),
        a("propagation_mode", "PropagationMode", Str),
        a("selinux_label", "SELinuxLabel", Str),
    ],
    blocks: &[],
};

static VAULT: Schema = Schema {
    name: "vault",
    attrs: &[
        a("policies", "Policies", StrList),
        a("role", "Role", Str),
        a("namespace", "Namespace", Str),
        a("cluster", "Cluster", Str),
        a("env", "Env", Bool),
        a("disable_file", "DisableFile", Bool),
        a("change_mode", "ChangeMode", Str),
        a("change_signal", "ChangeSignal", Str),
        a("allow_token_expiration", "AllowTokenExpiration", Bool),
    ],
    blocks: &[],
};

static IDENTITY: Schema = Schema {
    name: "identity",
    attrs: &[
        a("name", "Name", Str),
        a("aud", "Audience", StrList),
        a("env", "Env", Bool),
        a("file", "File", Bool),
        a("filepath", "Filepath", Str),
        a("ttl", "TTL", Duration),
        a("change_mode", "ChangeMode", Str),
        a("change_signal", "ChangeSignal", Str),
    ],
    blocks: &[],
};

static DISPATCH_PAYLOAD: Schema =
    Schema { name: "dispatch_payload", attrs: &[a("file", "File", Str)], blocks: &[] };

pub(crate) static TASK: Schema = Schema {
    name: "task",
    attrs: &[
        a("driver", "Driver", Str),
        a("user", "User", Str),
        a("kill_timeout", "KillTimeout", Duration),
        a("kill_signal", "KillSignal", Str),
        a("leader", "Leader", Bool),
        a("shutdown_delay", "ShutdownDelay", Duration),
        a("kind", "Kind", Str),
        a("meta", "Meta", StrMap),
        a("env", "Env", StrMap),
        a("config", "Config", Any),
    ],
    blocks: &[
        b("config", "Config", Nest::Free, &FREE),
        b("env", "Env", Nest::StrMap, &ENV),
        b("meta", "Meta", Nest::StrMap, &META),
        b("constraint", "Constraints", Nest::Many, &CONSTRAINT),
        b("affinity", "Affinities", Nest::Many, &AFFINITY),
        b("resources", "Resources", Nest::One, &RESOURCES),
        b("template", "Templates", Nest::Many, &TEMPLATE),
        b("artifact", "Artifacts", Nest::Many, &ARTIFACT),
        b("logs", "LogConfig", Nest::One, &LOGS),
        b("lifecycle", "Lifecycle", Nest::One, &LIFECYCLE),
        b("restart", "RestartPolicy", Nest::One, &RESTART),
        b("service", "Services", Nest::Many, &SERVICE),
        b("volume_mount", "VolumeMounts", Nest::Many, &VOLUME_MOUNT),
        b("vault", "Vault", Nest::One, &VAULT),
        b("identity", "Identities", Nest::Many, &IDENTITY),
        b("dispatch_payload", "DispatchPayload", Nest::One, &DISPATCH_PAYLOAD),
        b("scaling", "", Nest::Labeled("Name"), &SCALING),
        b("consul", "Consul", Nest::Free, &FREE),
        b("csi_plugin", "CSIPluginConfig", Nest::Free, &FREE),
    ],
};

/// A `dynamic` block's own names, for suggestions.
pub(crate) static DYNAMIC: Schema = Schema {
    name: "dynamic",
    attrs: &[a("for_each", "", Any), a("iterator", "", Any), a("labels", "", Any)],
    blocks: &[b("content", "", Nest::One, &FREE)],
};

/// Blocks and attributes allowed at the top of a file.
pub(crate) const TOP_LEVEL: &[&str] = &["job", "variable", "variables", "locals"];

/// Attributes of a `variable` block.
pub(crate) const VARIABLE_ATTRS: &[&str] =
    &["type", "default", "description", "sensitive", "nullable"];
