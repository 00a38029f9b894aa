//! Allocations, nodes, evaluations and deployments.

use super::forward::{self, Answer, Incoming};
use super::jobs::ALLOC_STUB_KEYS;
use super::{
    ApiError, ApiResult, Params, decode_body, listed, rows, serve, serve_shaped, sorted_by_key,
    stub, write, write_response,
};
use crate::agent::AgentHandle;
use crate::driver::raw_exec::signal_by_name;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use drover_core::client::TaskAction;
use drover_core::model::{DrainSpec, NodeEligibility};
use drover_core::server::{ApiRequest, Query};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub(super) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/allocations", get(allocations))
        .route("/v1/allocation/{id}", get(allocation))
        .route("/v1/nodes", get(nodes))
        .route("/v1/node/{id}", get(node))
        .route("/v1/node/{id}/allocations", get(node_allocations))
        .route("/v1/node/{id}/drain", post(drain).put(drain))
        .route("/v1/node/{id}/eligibility", post(eligibility).put(eligibility))
        .route("/v1/node/{id}/purge", post(purge).put(purge))
        .route("/v1/evaluations", get(evaluations))
        .route("/v1/evaluation/{id}", get(evaluation))
        .route("/v1/deployments", get(deployments))
        .route("/v1/deployment/{id}", get(deployment))
        // Allocation actions.
        .route("/v1/allocation/{id}/stop", post(alloc_stop).put(alloc_stop))
        .route("/v1/client/allocation/{id}/restart", post(alloc_restart).put(alloc_restart))
        .route("/v1/client/allocation/{id}/signal", post(alloc_signal).put(alloc_signal))
        // Deployment actions, and a job's latest deployment.
        .route("/v1/deployment/promote/{id}", post(deployment_promote).put(deployment_promote))
        .route("/v1/deployment/fail/{id}", post(deployment_fail).put(deployment_fail))
        .route("/v1/deployment/pause/{id}", post(deployment_pause).put(deployment_pause))
        .route(
            "/v1/deployment/allocation-health/{id}",
            post(deployment_alloc_health).put(deployment_alloc_health),
        )
        .route("/v1/deployment/allocations/{id}", get(deployment_allocations))
        .route("/v1/job/{id}/deployment", get(job_latest_deployment))
}

/// The fields of Nomad's `NodeListStub` that the node carries under the same name.
const NODE_STUB_KEYS: &[&str] = &[
    "ID",
    "Datacenter",
    "Name",
    "NodeClass",
    "NodePool",
    "SchedulingEligibility",
    "Status",
    "StatusDescription",
    "Drivers",
    "CreateIndex",
    "ModifyIndex",
];

async fn allocations(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    serve_shaped(&agent, &params, Query::Allocs, |result| {
        let allocs =
            listed(&params, rows!(result, Allocs)?, |a| (a.namespace.as_str(), a.id.as_str()));
        Ok(allocs.iter().map(|a| stub(a, ALLOC_STUB_KEYS)).collect::<Vec<_>>())
    })
    .await
}

async fn allocation(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    serve(&agent, &params, Query::Alloc { alloc_id: id }, "alloc not found").await
}

async fn nodes(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    serve_shaped(&agent, &params, Query::Nodes, |result| {
        let nodes = sorted_by_key(rows!(result, Nodes)?, |n| n.id.clone());
        let stubs: Vec<Map<String, Value>> = nodes
            .into_iter()
            .filter(|n| n.id.starts_with(params.prefix()))
            .map(|node| {
                let mut row = stub(&node, NODE_STUB_KEYS);
                let address = node.attributes.get("unique.network.ip-address").cloned();
                row.insert("Address".into(), address.unwrap_or_default().into());
                row.insert("Drain".into(), node.is_draining().into());
                let version = node.attributes.get("drover.version").cloned();
                row.insert("Version".into(), version.unwrap_or_default().into());
                row
            })
            .collect();
        Ok(stubs)
    })
    .await
}

async fn node(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    serve(&agent, &params, Query::Node { node_id: id }, "node not found").await
}

async fn node_allocations(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    serve(&agent, &params, Query::NodeAllocs { node_id: id }, "").await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DrainBody {
    drain_spec: Option<DrainSpec>,
    mark_eligible: bool,
}

async fn drain(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let body: DrainBody = decode_body(&body)?;
    let cancel = body.drain_spec.is_none();
    let request = ApiRequest::NodeDrain { node_id: id.clone(), drain: body.drain_spec };
    let (mut written, mut meta) = write(&agent, &params, request).await?;
    if cancel && body.mark_eligible {
        let eligible =
            ApiRequest::NodeEligibility { node_id: id, eligibility: NodeEligibility::Eligible };
        let (more, more_meta) = write(&agent, &params, eligible).await?;
        written.eval_ids.extend(more.eval_ids);
        written.eval_create_index = more.eval_create_index.max(written.eval_create_index);
        written.index = more.index;
        meta = more_meta;
    }
    Ok(write_response(&params, &meta, node_update_fields(&written)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EligibilityBody {
    eligibility: String,
}

async fn eligibility(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let body: EligibilityBody = decode_body(&body)?;
    let eligibility = match body.eligibility.as_str() {
        "eligible" => NodeEligibility::Eligible,
        "ineligible" => NodeEligibility::Ineligible,
        other => {
            return Err(ApiError::bad_request(format!("invalid scheduling eligibility {other:?}")));
        }
    };
    let request = ApiRequest::NodeEligibility { node_id: id, eligibility };
    let (written, meta) = write(&agent, &params, request).await?;
    Ok(write_response(&params, &meta, node_update_fields(&written)))
}

/// Nomad's `Node.Deregister`: the node is forgotten and the jobs it ran are evaluated.
async fn purge(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let (written, meta) = write(&agent, &params, ApiRequest::NodePurge { node_id: id }).await?;
    Ok(write_response(&params, &meta, node_update_fields(&written)))
}

/// Nomad's `NodeDrainUpdateResponse` / `NodeEligibilityUpdateResponse`, and the
/// purge's `NodeUpdateResponse`.
fn node_update_fields(written: &super::Written) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("NodeModifyIndex".into(), written.index.into());
    fields.insert("EvalIDs".into(), written.eval_ids.clone().into());
    fields.insert("EvalCreateIndex".into(), written.eval_create_index.into());
    fields
}

async fn evaluations(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    let job = params.get("job").unwrap_or_default();
    let status = params.get("status").unwrap_or_default();
    serve_shaped(&agent, &params, Query::Evals, |result| {
        let mut evals =
            listed(&params, rows!(result, Evals)?, |e| (e.namespace.as_str(), e.id.as_str()));
        evals.retain(|e| job.is_empty() || e.job_id == job);
        evals.retain(|e| status.is_empty() || e.status.as_str() == status);
        Ok(evals)
    })
    .await
}

async fn evaluation(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    serve(&agent, &params, Query::Eval { eval_id: id }, "eval not found").await
}

async fn deployments(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    serve_shaped(&agent, &params, Query::Deployments, |result| {
        Ok(listed(&params, rows!(result, Deployments)?, |d| (d.namespace.as_str(), d.id.as_str())))
    })
    .await
}

async fn deployment(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::Deployment { deployment_id: id };
    serve(&agent, &params, query, "deployment not found").await
}

// ------------------------------------------------------------------ allocation actions

/// `alloc stop`: Nomad's `AllocStopResponse`, the evaluation that replaces it.
async fn alloc_stop(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let (written, meta) = write(&agent, &params, ApiRequest::AllocStop { alloc_id: id }).await?;
    let mut fields = Map::new();
    fields.insert("EvalID".into(), written.eval_ids.first().cloned().unwrap_or_default().into());
    Ok(write_response(&params, &meta, fields))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartBody {
    task_name: String,
    all_tasks: bool,
}

/// `alloc restart`: Nomad's agent forwards it to the client that runs the allocation.
async fn alloc_restart(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    alloc_action(&agent, &params, id, request, |body: RestartBody| {
        if body.all_tasks && !body.task_name.is_empty() {
            return Err(ApiError::bad_request("Task name cannot be set when restarting all tasks"));
        }
        Ok((body.task_name, TaskAction::Restart))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SignalBody {
    task: String,
    signal: String,
}

/// `alloc signal`: forwarded like `alloc restart`; a signal the driver cannot send is
/// refused before anything reaches the client.
async fn alloc_signal(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    alloc_action(&agent, &params, id, request, |body: SignalBody| {
        if body.signal.is_empty() || signal_by_name(&body.signal).is_none() {
            let message = format!("Signal {:?} is not supported", body.signal);
            return Err(ApiError::bad_request(message));
        }
        Ok((body.task, TaskAction::Signal(body.signal)))
    })
    .await
}

/// An operator's action on an allocation's tasks, from its request body (`action_of`
/// checks the decoded body and names the task, empty for every task, and the action),
/// handed to the client that runs the allocation: this agent's own, or another node's
/// through its agent ([`forward`]).
async fn alloc_action<B: DeserializeOwned>(
    agent: &AgentHandle,
    params: &Params,
    alloc_id: String,
    request: Incoming,
    action_of: impl FnOnce(B) -> Result<(String, TaskAction), ApiError>,
) -> ApiResult {
    let (task, action) = action_of(decode_body(&request.body)?)?;
    let task = Some(task).filter(|t| !t.is_empty());
    let alloc = forward::client_alloc(agent, &alloc_id, "Unknown allocation").await?;
    if !forward::runs_here(agent, &alloc).await? {
        return forward::to_alloc_node(agent, &alloc, request, Answer::Whole).await;
    }
    match agent.act_on_alloc(alloc.id, task, action).await {
        Ok(Ok(())) => Ok(super::json_response(params, Default::default(), &Map::new())),
        Ok(Err(message)) => Err(ApiError::from_server(message)),
        Err(gone) => Err(ApiError::internal(gone.to_string())),
    }
}

// ------------------------------------------------------------------ deployment actions

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PromoteBody {
    all: bool,
    groups: Vec<String>,
}

async fn deployment_promote(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let body: PromoteBody = decode_body(&body)?;
    if body.all && !body.groups.is_empty() {
        return Err(ApiError::bad_request("Can not specify both all and groups to promote"));
    }
    if !body.all && body.groups.is_empty() {
        return Err(ApiError::bad_request("Must specify either all or groups to promote"));
    }
    let request =
        ApiRequest::DeploymentPromote { deployment_id: id, all: body.all, groups: body.groups };
    deployment_write(&agent, &params, request).await
}

async fn deployment_fail(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    deployment_write(&agent, &params, ApiRequest::DeploymentFail { deployment_id: id }).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PauseBody {
    pause: bool,
}

async fn deployment_pause(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let body: PauseBody = decode_body(&body)?;
    let request = ApiRequest::DeploymentPause { deployment_id: id, pause: body.pause };
    deployment_write(&agent, &params, request).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AllocHealthBody {
    #[serde(rename = "HealthyAllocationIDs")]
    healthy_allocation_ids: Vec<String>,
    #[serde(rename = "UnhealthyAllocationIDs")]
    unhealthy_allocation_ids: Vec<String>,
}

/// `POST /v1/deployment/allocation-health/:id`, for `health_check = "manual"`.
async fn deployment_alloc_health(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let body: AllocHealthBody = decode_body(&body)?;
    if body.healthy_allocation_ids.is_empty() && body.unhealthy_allocation_ids.is_empty() {
        return Err(ApiError::bad_request(
            "Must specify at least one healthy/unhealthy allocation ID",
        ));
    }
    let request = ApiRequest::DeploymentAllocHealth {
        deployment_id: id,
        healthy: body.healthy_allocation_ids,
        unhealthy: body.unhealthy_allocation_ids,
    };
    deployment_write(&agent, &params, request).await
}

/// `GET /v1/deployment/allocations/:id`: the allocations placed for the deployment.
async fn deployment_allocations(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::DeploymentAllocs { deployment_id: id };
    serve_shaped(&agent, &params, query, |result| {
        Ok(rows!(result, Allocs)?.iter().map(|a| stub(a, ALLOC_STUB_KEYS)).collect::<Vec<_>>())
    })
    .await
}

/// Commits a deployment action and answers as Nomad's `DeploymentUpdateResponse`.
async fn deployment_write(agent: &AgentHandle, params: &Params, request: ApiRequest) -> ApiResult {
    let (written, meta) = write(agent, params, request).await?;
    let mut fields = Map::new();
    fields.insert("EvalID".into(), written.eval_ids.first().cloned().unwrap_or_default().into());
    fields.insert("EvalCreateIndex".into(), written.eval_create_index.into());
    fields.insert("DeploymentModifyIndex".into(), written.index.into());
    fields.insert("RevertedJobVersion".into(), Value::Null);
    Ok(write_response(params, &meta, fields))
}

/// `GET /v1/job/:id/deployment`: the job's most recent deployment, or `null`.
async fn job_latest_deployment(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::JobDeployments { namespace: params.namespace(), job_id: id };
    serve_shaped(&agent, &params, query, |result| {
        let deployments = rows!(result, Deployments)?;
        Ok(deployments.into_iter().max_by_key(|d| d.create_index))
    })
    .await
}
