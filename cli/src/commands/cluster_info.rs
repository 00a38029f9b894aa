//! `drover agent-info`, `drover operator raft list-peers|remove-peer` and `drover operator
//! autopilot get-config|set-config`: what the agent, the region's Raft and its autopilot
//! say about themselves, removing a server from Raft and setting autopilot's
//! configuration.

use super::{Io, api_command, print_json, report};
use crate::flags::FlagSpec;
use crate::output::{cells, table};
use drover_core::model::{AUTOPILOT_SETTINGS, AutopilotConfiguration, AutopilotSettingKind};
use serde_json::Value;
use std::collections::BTreeMap;

const AGENT_INFO_HELP: &str = "\
Usage: drover agent-info [options]

  Display status information about the local agent.

Agent Info Options:

  -json
    Output the agent info in JSON format.
";

const RAFT_PEERS_HELP: &str = "\
Usage: drover operator raft list-peers [options]

  Displays the current Raft peer configuration.

List Peers Options:

  -stale
    The -stale argument defaults to \"false\" which means the leader provides
    the result. If the cluster is in an outage state without a leader, you may
    need to set -stale to \"true\" to get the configuration from a non-leader
    server.
";

const RAFT_REMOVE_PEER_HELP: &str = "\
Usage: drover operator raft remove-peer [options]

  Remove the drover server with given -peer-address from the Raft configuration.

  There are rare cases where a peer may be left behind in the Raft quorum even
  though the server is no longer present and known to the cluster. This command
  can be used to remove the failed server so that it is no longer affects the
  Raft quorum. If the server still shows in the output of the \"drover
  server members\" command, it is added back while it stays alive.

Remove Peer Options:

  -peer-address=\"IP:port\"
    Remove a drover server with given address from the Raft configuration.

  -peer-id=\"id\"
    Remove a drover server with the given ID from the Raft configuration.
";

const AUTOPILOT_GET_HELP: &str = "\
Usage: drover operator autopilot get-config [options]

  Displays the current autopilot configuration: the one set with set-config,
  else the autopilot block of the server's agent configuration.
";

const AUTOPILOT_SET_HELP: &str = "\
Usage: drover operator autopilot set-config [options]

  Modifies the current Autopilot configuration. Only the settings given change;
  the change is refused if the configuration changed since it was read.

Set Config Options:

  -cleanup-dead-servers=[true|false]
     Controls whether drover will automatically remove dead servers when
     new ones are successfully added. Must be one of [true|false].

  -last-contact-threshold=200ms
     Controls the maximum amount of time a server can go without contact
     from the leader before being considered unhealthy. Must be a
     duration value such as \"200ms\".

  -max-trailing-logs=<value>
     Controls the maximum number of log entries that a server can trail
     the leader by before being considered unhealthy.

  -min-quorum=<value>
      Controls the minimum number of servers required in a cluster
      before autopilot can prune dead servers.

  -server-stabilization-time=<10s>
     Controls the minimum amount of time a server must be stable in
     the 'healthy' state before being added to the cluster. Must be a
     duration value such as \"10s\".

  -enable-redundancy-zones, -disable-upgrade-migration, -enable-custom-upgrades
     Nomad Enterprise features drover does not have: only false is accepted.
";

const JSON_FLAGS: &[FlagSpec] = &[FlagSpec::bool("json")];
const RAFT_REMOVE_PEER_FLAGS: &[FlagSpec] =
    &[FlagSpec::value("peer-address"), FlagSpec::value("peer-id")];
const RAFT_PEERS_FLAGS: &[FlagSpec] = &[FlagSpec::bool("stale")];
/// `GET /v1/agent/self`'s `stats`: section → key → value.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct AgentSelf {
    stats: BTreeMap<String, BTreeMap<String, Value>>,
}

pub fn agent_info(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, JSON_FLAGS, AGENT_INFO_HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let (agent, _) = client
            .get::<Value>("/v1/agent/self", &[], None)
            .map_err(|error| format!("Error querying agent info: {error}"))?;
        if flags.is_set("json") {
            return print_json(&agent, io);
        }
        let agent: AgentSelf = serde_json::from_value(agent)
            .map_err(|error| format!("Error querying agent info: {error}"))?;
        for (section, values) in &agent.stats {
            let _ = writeln!(io.out, "{section}");
            for (key, value) in values {
                let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                let _ = writeln!(io.out, "  {key} = {text}");
            }
        }
        Ok(0)
    })
}

/// `GET /v1/operator/raft/configuration`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RaftConfiguration {
    servers: Vec<RaftServer>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RaftServer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    voter: bool,
    raft_protocol: String,
}

pub fn raft_list_peers(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, RAFT_PEERS_FLAGS, RAFT_PEERS_HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let params = [("stale", flags.is_set("stale").to_string())];
        let (configuration, _) = client
            .get::<RaftConfiguration>("/v1/operator/raft/configuration", &params, None)
            .map_err(|error| format!("Failed to retrieve raft configuration: {error}"))?;
        let mut rows = vec![cells(&["Node", "ID", "Address", "State", "Voter", "RaftProtocol"])];
        rows.extend(configuration.servers.iter().map(|server| {
            let state = if server.leader { "leader" } else { "follower" };
            vec![
                server.node.clone(),
                server.id.clone(),
                server.address.clone(),
                state.to_owned(),
                server.voter.to_string(),
                server.raft_protocol.clone(),
            ]
        }));
        let _ = write!(io.out, "{}", table(&rows));
        Ok(0)
    })
}

pub fn raft_remove_peer(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, RAFT_REMOVE_PEER_FLAGS, RAFT_REMOVE_PEER_HELP, io)
    {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let address = flags.last("peer-address").unwrap_or_default().to_owned();
    let id = flags.last("peer-id").unwrap_or_default().to_owned();
    report(io, |io| {
        let (param, removed) = match (address.is_empty(), id.is_empty()) {
            (true, true) => {
                return Err("Error removing peer: an address or id is required for the peer to \
                            remove"
                    .to_owned());
            }
            (false, false) => {
                return Err("Error removing peer: cannot give both an address and id".to_owned());
            }
            (false, true) => (("address", address.clone()), format!("address {address:?}")),
            (true, false) => (("id", id.clone()), format!("id {id:?}")),
        };
        client
            .write::<Value>("DELETE", "/v1/operator/raft/peer", &[param], None)
            .map_err(|error| format!("Error removing peer: {error}"))?;
        let _ = writeln!(io.out, "Removed peer with {removed}");
        Ok(0)
    })
}

pub fn autopilot_get_config(args: &[String], io: &mut Io<'_>) -> u8 {
    let (_, client) = match api_command(args, &[], AUTOPILOT_GET_HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let (config, _) = client
            .get::<AutopilotConfiguration>("/v1/operator/autopilot/configuration", &[], None)
            .map_err(|error| format!("Error querying Autopilot configuration: {error}"))?;
        for (key, value) in config.settings() {
            let _ = writeln!(io.out, "{key} = {value}");
        }
        Ok(0)
    })
}

/// `operator autopilot set-config`: reads the configuration, changes the settings whose
/// flags are given (any value given counts, even the one already set) and writes it back
/// only if nobody changed it meanwhile (`?cas=<ModifyIndex>`).
pub fn autopilot_set_config(args: &[String], io: &mut Io<'_>) -> u8 {
    let specs: Vec<FlagSpec> = AUTOPILOT_SETTINGS
        .iter()
        .map(|setting| match setting.kind {
            AutopilotSettingKind::Bool => FlagSpec::bool(setting.flag),
            AutopilotSettingKind::Count | AutopilotSettingKind::Duration => {
                FlagSpec::value(setting.flag)
            }
        })
        .collect();
    let (flags, client) = match api_command(args, &specs, AUTOPILOT_SET_HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    // A value that does not read is a flag error, answered as the flags' own are.
    let changes = match autopilot_changes(&flags) {
        Ok(changes) => changes,
        Err(message) => {
            let _ = writeln!(io.err, "{message}\n");
            let _ = write!(io.err, "{AUTOPILOT_SET_HELP}");
            return 1;
        }
    };
    report(io, |io| {
        let (mut config, _) = client
            .get::<serde_json::Map<String, Value>>(
                "/v1/operator/autopilot/configuration",
                &[],
                None,
            )
            .map_err(|error| format!("Error querying for Autopilot configuration: {error}"))?;
        let modify_index = config.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
        config.extend(changes);
        let body = Value::Object(config);
        let params = [("cas", modify_index.to_string())];
        let updated = client
            .write::<bool>("PUT", "/v1/operator/autopilot/configuration", &params, Some(&body))
            .map_err(|error| format!("Error setting Autopilot configuration: {error}"))?;
        if updated {
            let _ = writeln!(io.out, "Configuration updated!");
            return Ok(0);
        }
        let _ = writeln!(io.out, "Configuration could not be atomically updated, please try again");
        Ok(1)
    })
}

/// The fields the given flags set, as JSON; a value that does not read is refused the
/// way Go's flag package words it.
fn autopilot_changes(flags: &crate::flags::Parsed) -> Result<Vec<(String, Value)>, String> {
    let given = AUTOPILOT_SETTINGS.iter().filter_map(|s| Some((s, flags.last(s.flag)?)));
    given.map(|(setting, text)| Ok((setting.field.to_owned(), setting.json_value(text)?))).collect()
}
