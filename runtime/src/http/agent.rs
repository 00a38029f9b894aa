//! The agent's own endpoints: `agent/self|health|members`, `status/leader|peers`,
//! `regions`, `operator/raft/configuration|peer`, `operator/autopilot/configuration` and
//! `metrics`.

use super::{
    ApiError, ApiResult, Params, QueryMeta, call, json_response, read_response, rows, serve_shaped,
};
use crate::agent::{AgentHandle, AgentRoles, AgentStatus, ServerMember};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use drover_core::model::{AutopilotConfiguration, go_duration_ms, go_duration_text};
use drover_core::server::{ApiReply, ApiRequest, AutopilotConfig, Query as Read};
use serde_json::{Value, json};

pub(super) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/health", get(health))
        .route("/v1/agent/members", get(members))
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
        .route("/v1/regions", get(regions))
        .route("/v1/operator/raft/configuration", get(raft_configuration))
        .route("/v1/operator/raft/peer", delete(raft_remove_peer))
        .route(
            "/v1/operator/autopilot/configuration",
            get(autopilot_configuration).put(autopilot_set_configuration),
        )
        .route("/v1/metrics", get(metrics))
}

async fn status(agent: &AgentHandle) -> Result<AgentStatus, ApiError> {
    agent.status().await.map_err(|gone| ApiError::internal(gone.to_string()))
}

/// `host:port` split for the member list.
fn host_port(addr: &str) -> (String, u64) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(0)),
        None => (addr.to_owned(), 0),
    }
}

/// A server as a gossip member, in Nomad's shape.
fn member(server: &ServerMember, roles: &AgentRoles) -> Value {
    let (addr, port) = host_port(&server.rpc_addr);
    json!({
        "Name": server.name,
        "Addr": addr,
        "Port": port,
        "Status": "alive",
        "Tags": {
            "role": "nomad",
            "region": server.region,
            "dc": server.datacenter,
            "build": env!("CARGO_PKG_VERSION"),
            "port": port.to_string(),
            "bootstrap": if roles.dev { "1" } else { "0" },
            "expect": roles.bootstrap_expect.to_string(),
            "raft_vsn": "3",
            "id": server.server_id.to_string(),
        },
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// This agent's own member entry: a server's from its member list; a client-only agent
/// is no gossip member, so it has none (`null`, as Nomad's client agents answer).
fn own_member(status: &AgentStatus) -> Value {
    let own = status.members.iter().find(|m| m.server_id == status.server_id);
    match own {
        Some(server) if status.roles.server => member(server, &status.roles),
        _ => Value::Null,
    }
}

async fn agent_self(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    let config = &agent.config;
    let answer = json!({
        "config": {
            "Region": status.region,
            "Datacenter": status.datacenter,
            "NodeName": status.node_name,
            "DataDir": config.data_dir.display().to_string(),
            "DevMode": status.roles.dev,
            "Version": { "Version": env!("CARGO_PKG_VERSION"), "VersionPrerelease": "" },
            "Server": {
                "Enabled": status.roles.server,
                "BootstrapExpect": status.roles.bootstrap_expect,
            },
            "Client": { "Enabled": status.roles.client, "NodeID": status.node_id },
            "Addresses": { "HTTP": config.http_addr, "RPC": status.rpc_addr },
        },
        "member": own_member(&status),
        "stats": {
            "nomad": {
                "leader": status.is_leader.to_string(),
                "known_regions": status.regions.len().to_string(),
                "server": status.roles.server.to_string(),
                "leader_addr": status.leader_addr.clone().unwrap_or_default(),
            },
            "raft": {
                "state": if status.is_leader { "Leader" } else { "Follower" },
                "term": status.raft_term.to_string(),
                "commit_index": status.raft_commit_index.to_string(),
                "applied_index": status.raft_applied_index.to_string(),
                "last_log_index": status.raft_last_index.to_string(),
                "num_peers": status.raft_voters.len().saturating_sub(1).to_string(),
            },
            "client": {
                "node_id": status.node_id,
                "known_servers": status.rpc_addr,
                "num_allocations": status.allocs_running_here.to_string(),
            },
        },
    });
    Ok(json_response(&params, HeaderMap::new(), &answer))
}

/// Healthy when the server knows a leader and the client's node is registered; Nomad
/// answers 500 with the same body when either is not.
async fn health(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    let server_ok = status.leader_addr.is_some();
    let client_ok = status.node_registered;
    let message = |ok: bool, why: &str| if ok { "ok".to_owned() } else { why.to_owned() };
    let answer = json!({
        "server": { "ok": server_ok, "message": message(server_ok, "No cluster leader") },
        "client": { "ok": client_ok, "message": message(client_ok, "not registered with the servers") },
    });
    let response = json_response(&params, HeaderMap::new(), &answer);
    if server_ok && client_ok {
        Ok(response)
    } else {
        Ok((StatusCode::INTERNAL_SERVER_ERROR, response).into_response())
    }
}

async fn members(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    let answer = json!({
        "ServerName": status.node_name,
        "ServerRegion": status.region,
        "ServerDC": status.datacenter,
        "Members": status.members.iter().map(|m| member(m, &status.roles)).collect::<Vec<_>>(),
    });
    Ok(json_response(&params, HeaderMap::new(), &answer))
}

async fn leader(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    Ok(json_response(&params, HeaderMap::new(), &status.leader_addr.unwrap_or_default()))
}

async fn peers(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    let peers: Vec<String> = status.raft_voters.into_iter().map(|(_, addr)| addr).collect();
    Ok(json_response(&params, HeaderMap::new(), &peers))
}

/// Every region gossip knows of, this one included, sorted.
async fn regions(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    Ok(json_response(&params, HeaderMap::new(), &status.regions))
}

/// Every server of the Raft configuration, learners with `Voter: false`.
async fn raft_configuration(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    let servers: Vec<Value> = status
        .raft_servers
        .iter()
        .map(|server| {
            // The server's gossip name; a `-dev` agent has no gossip, only itself.
            let known = status.members.iter().find(|m| m.server_id == server.id);
            let node = known.map_or(&server.node, |m| &m.name);
            json!({
                "ID": server.id.to_string(),
                "Node": node,
                "Address": server.address,
                "Leader": server.leader,
                "Voter": server.voter,
                "RaftProtocol": "3",
            })
        })
        .collect();
    let meta = QueryMeta { index: status.raft_commit_index, known_leader: agent.known_leader() };
    let answer = json!({ "Index": status.raft_commit_index, "Servers": servers });
    Ok(read_response(&params, &meta, &answer))
}

/// `operator raft remove-peer`: `?id=` (the server's Raft id) or `?address=` (its
/// `IP:port`); answered once the change committed, with an empty body as Nomad does.
async fn raft_remove_peer(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let id = match params.get("id") {
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("id \"{text}\" is not a server ID (a number)"))
        })?),
        None => None,
    };
    let address = params.get("address").map(str::to_owned);
    if id.is_none() && address.is_none() {
        return Err(ApiError::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        ));
    }
    let request = ApiRequest::RaftRemovePeer { id, address };
    let reply = agent
        .call(&params.region(), request)
        .await
        .map_err(|gone| ApiError::internal(gone.to_string()))?;
    match reply {
        ApiReply::Write { .. } => Ok(StatusCode::OK.into_response()),
        ApiReply::Error { message } => Err(ApiError::internal(message)),
        ApiReply::NotLeader { .. } => Err(ApiError::internal("No cluster leader")),
        other => Err(ApiError::internal(format!("unexpected answer to a write: {other:?}"))),
    }
}

/// The autopilot configuration the region runs with, in Nomad's `AutopilotConfiguration`
/// shape: the one an operator set, with the indexes of its Raft writes, else the server's
/// agent `autopilot` block, with indexes 0.
async fn autopilot_configuration(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    serve_shaped(&agent, &params, Read::AutopilotConfig, |result| {
        let record = rows!(result, AutopilotConfig)?;
        let config = &record.config;
        Ok(AutopilotConfiguration {
            cleanup_dead_servers: config.cleanup_dead_servers,
            last_contact_threshold: go_duration_text(config.last_contact_threshold_ms),
            max_trailing_logs: config.max_trailing_logs,
            min_quorum: config.min_quorum as u64,
            server_stabilization_time: go_duration_text(config.server_stabilization_time_ms),
            create_index: record.create_index,
            modify_index: record.modify_index,
            ..AutopilotConfiguration::default()
        })
    })
    .await
}

/// `operator autopilot set-config`: the body replaces the configuration (a field left
/// out is Go's zero value, as in Nomad); with `?cas=<ModifyIndex>` only if nobody wrote
/// since. Answers `true` when it wrote, `false` when the check failed.
async fn autopilot_set_configuration(
    State(agent): State<AgentHandle>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let config = autopilot_config_from_body(&body)?;
    let cas_index = match params.get("cas") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("Error parsing cas value: {text:?} is not an index"))
        })?),
    };
    let request = ApiRequest::AutopilotSetConfig { config, cas_index };
    match call(&agent, &params, request).await? {
        ApiReply::CasWrite { updated, .. } => {
            Ok(json_response(&params, HeaderMap::new(), &updated))
        }
        other => Err(ApiError::internal(format!("unexpected answer to a write: {other:?}"))),
    }
}

/// The configuration a PUT body sets, or a 400 saying what is wrong with it.
fn autopilot_config_from_body(body: &[u8]) -> Result<AutopilotConfig, ApiError> {
    let bad = |why: String| ApiError::bad_request(format!("Error parsing autopilot config: {why}"));
    let body: AutopilotConfiguration =
        serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let enterprise = [
        ("EnableRedundancyZones", body.enable_redundancy_zones),
        ("DisableUpgradeMigration", body.disable_upgrade_migration),
        ("EnableCustomUpgrades", body.enable_custom_upgrades),
    ];
    if let Some((name, _)) = enterprise.iter().find(|(_, on)| *on) {
        return Err(bad(format!(
            "{name} = true is a Nomad Enterprise feature drover does not have"
        )));
    }
    // A duration left out is Go's zero value.
    let duration_ms = |name: &str, text: &str| -> Result<u64, ApiError> {
        if text.is_empty() {
            return Ok(0);
        }
        go_duration_ms(text).map_err(|why| bad(format!("{name}: invalid duration {text:?}: {why}")))
    };
    let config = AutopilotConfig {
        cleanup_dead_servers: body.cleanup_dead_servers,
        last_contact_threshold_ms: duration_ms(
            "LastContactThreshold",
            &body.last_contact_threshold,
        )?,
        server_stabilization_time_ms: duration_ms(
            "ServerStabilizationTime",
            &body.server_stabilization_time,
        )?,
        max_trailing_logs: body.max_trailing_logs,
        min_quorum: usize::try_from(body.min_quorum).unwrap_or(usize::MAX),
    };
    config.check().map_err(bad)?;
    Ok(config)
}

/// Every figure is a gauge: the hosts' counters and the broker's queues, named as
/// `nomad.<area>.<figure>`. JSON as go-metrics' in-memory sink, or Prometheus text.
async fn metrics(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let status = status(&agent).await?;
    let figures: Vec<(String, u64)> =
        status.counters.iter().map(|(name, value)| (format!("nomad.{name}"), *value)).collect();
    if params.get("format") == Some("prometheus") {
        let text: String = figures
            .iter()
            .map(|(name, value)| {
                let name = name.replace('.', "_");
                format!("# TYPE {name} gauge\n{name} {value}\n")
            })
            .collect();
        let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
        return Ok((StatusCode::OK, content_type, text).into_response());
    }
    let gauges: Vec<Value> = figures
        .iter()
        .map(|(name, value)| json!({ "Name": name, "Value": value, "Labels": {} }))
        .collect();
    let answer = json!({
        "Timestamp": time_text(),
        "Gauges": gauges,
        "Counters": [],
        "Samples": [],
        "Points": [],
    });
    Ok(json_response(&params, HeaderMap::new(), &answer))
}

/// Now as go-metrics prints its interval (`2006-01-02 15:04:05 +0000 UTC`).
fn time_text() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
