//! `/v1/jobs`, `/v1/job/:id/...`, `/v1/jobs/parse` and `/v1/validate/job`.

use super::{
    ApiError, ApiResult, Params, QueryMeta, call, decode_body, listed, read, rows, serve,
    serve_shaped, stub, write, write_response,
};
use crate::agent::AgentHandle;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use drover_core::jobspec::{self, ParseOptions, VarFile};
use drover_core::model::{self, Job, JobDiff, job_diff};
use drover_core::server::{ApiReply, ApiRequest, Query};
use drover_core::state::multi_error;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(super) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/jobs", get(list).put(register).post(register))
        .route("/v1/jobs/parse", post(parse).put(parse))
        .route("/v1/validate/job", post(validate).put(validate))
        .route("/v1/job/{id}", get(job).put(register_id).post(register_id).delete(deregister))
        .route("/v1/job/{id}/plan", post(plan).put(plan))
        .route("/v1/job/{id}/evaluate", post(evaluate).put(evaluate))
        .route("/v1/job/{id}/versions", get(versions))
        .route("/v1/job/{id}/summary", get(summary))
        .route("/v1/job/{id}/allocations", get(allocations))
        .route("/v1/job/{id}/evaluations", get(evaluations))
        .route("/v1/job/{id}/deployments", get(deployments))
        .route("/v1/job/{id}/revert", post(revert).put(revert))
        .route("/v1/job/{id}/scale", post(scale).put(scale))
        .merge(periodic_routes())
}

/// The fields of Nomad's `JobListStub`.
const JOB_STUB_KEYS: &[&str] = &[
    "ID",
    "ParentID",
    "Name",
    "Namespace",
    "Datacenters",
    "NodePool",
    "Multiregion",
    "Type",
    "Priority",
    "Periodic",
    "ParameterizedJob",
    "Stop",
    "Status",
    "StatusDescription",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "SubmitTime",
    "Meta",
];

/// The fields of Nomad's `AllocListStub`.
pub(super) const ALLOC_STUB_KEYS: &[&str] = &[
    "ID",
    "EvalID",
    "Name",
    "Namespace",
    "NodeID",
    "NodeName",
    "JobID",
    "JobVersion",
    "TaskGroup",
    "AllocatedResources",
    "DesiredStatus",
    "DesiredDescription",
    "ClientStatus",
    "ClientDescription",
    "DesiredTransition",
    "TaskStates",
    "DeploymentStatus",
    "FollowupEvalID",
    "NextAllocation",
    "RescheduleTracker",
    "PreviousAllocation",
    "CreateIndex",
    "ModifyIndex",
    "CreateTime",
    "ModifyTime",
];

async fn list(State(agent): State<AgentHandle>, params: Params) -> ApiResult {
    serve_shaped(&agent, &params, Query::Jobs, |result| {
        let jobs = listed(&params, rows!(result, Jobs)?, |j| (j.namespace.as_str(), j.id.as_str()));
        let stubs: Vec<Map<String, Value>> = jobs
            .iter()
            .map(|j| {
                let mut row = stub(j, JOB_STUB_KEYS);
                // Summaries are a table of their own: `/v1/job/:id/summary` serves them.
                row.insert("JobSummary".into(), Value::Null);
                row
            })
            .collect();
        Ok(stubs)
    })
    .await
}

/// `{"Job": …, "EnforceIndex": …, "JobModifyIndex": …}` minus the job.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RegisterOptions {
    enforce_index: bool,
    job_modify_index: u64,
}

async fn register(State(agent): State<AgentHandle>, params: Params, body: Bytes) -> ApiResult {
    register_job(&agent, &params, None, &body).await
}

async fn register_id(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    register_job(&agent, &params, Some(&id), &body).await
}

async fn register_job(
    agent: &AgentHandle,
    params: &Params,
    id: Option<&str>,
    body: &[u8],
) -> ApiResult {
    let mut envelope: Map<String, Value> = decode_body(body)?;
    let job_value = envelope.remove("Job").filter(|j| !j.is_null());
    let job_value = job_value.ok_or_else(|| ApiError::bad_request("Job must be specified"))?;
    let options: RegisterOptions = decode_body(&serde_json::to_vec(&envelope).unwrap_or_default())?;
    let mut job = job_from_body(job_value)?;
    if let Some(id) = id
        && job.id != id
    {
        return Err(ApiError::bad_request("Job ID does not match name"));
    }
    apply_query_scope(params, &mut job);
    check_valid(&job)?;
    let enforce_index = options.enforce_index.then_some(options.job_modify_index);
    let request = ApiRequest::JobRegister { job: Box::new(job), enforce_index };
    job_write(agent, params, request, true).await
}

/// A job from its API JSON, canonicalized (Nomad's defaults); a shape error is a 400.
fn job_from_body(value: Value) -> Result<Job, ApiError> {
    model::job_from_api_json(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The query's `region` and `namespace` override the body's, as in Nomad.
fn apply_query_scope(params: &Params, job: &mut Job) {
    if let Some(region) = params.get("region").filter(|r| !r.is_empty()) {
        job.region = region.to_owned();
    }
    if let Some(namespace) = params.get("namespace").filter(|n| !n.is_empty() && *n != "*") {
        job.namespace = namespace.to_owned();
    }
}

/// Refuses an invalid job with every error, in Nomad's multi-error form.
fn check_valid(job: &Job) -> Result<(), ApiError> {
    let errors: Vec<String> = model::validate_job(job).iter().map(ToString::to_string).collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(multi_error(&errors)))
}

/// Commits a job write and answers as Nomad's `JobRegisterResponse` and its kin do
/// (`Warnings` only where Nomad's answer has it).
async fn job_write(
    agent: &AgentHandle,
    params: &Params,
    request: ApiRequest,
    with_warnings: bool,
) -> ApiResult {
    let (written, meta) = write(agent, params, request).await?;
    let mut fields = eval_fields(&written.eval_ids, written.eval_create_index);
    fields.insert("JobModifyIndex".into(), written.job_modify_index.into());
    if with_warnings {
        fields.insert("Warnings".into(), "".into());
    }
    Ok(write_response(params, &meta, fields))
}

fn eval_fields(eval_ids: &[String], eval_create_index: u64) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("EvalID".into(), eval_ids.first().cloned().unwrap_or_default().into());
    fields.insert("EvalCreateIndex".into(), eval_create_index.into());
    fields
}

async fn job(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::Job { namespace: params.namespace(), job_id: id };
    serve(&agent, &params, query, "job not found").await
}

async fn deregister(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let purge = params.flag("purge")?;
    let request = ApiRequest::JobDeregister { namespace: params.namespace(), job_id: id, purge };
    job_write(&agent, &params, request, false).await
}

async fn plan(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let mut envelope: Map<String, Value> = decode_body(&body)?;
    // Nomad answers a plan without `"Diff": true` with a null diff.
    let want_diff = envelope.get("Diff").and_then(Value::as_bool).unwrap_or(false);
    let job_value = envelope.remove("Job").filter(|j| !j.is_null());
    let job_value = job_value.ok_or_else(|| ApiError::bad_request("Job must be specified"))?;
    let mut job = job_from_body(job_value)?;
    if job.id != id {
        return Err(ApiError::bad_request("Job ID does not match"));
    }
    apply_query_scope(&params, &mut job);
    check_valid(&job)?;
    let reply = call(&agent, &params, ApiRequest::JobPlan { job: Box::new(job) }).await?;
    let ApiReply::Plan {
        job_modify_index,
        desired_updates,
        failed_tg_allocs,
        created_evals,
        diff,
        ..
    } = reply
    else {
        return Err(ApiError::internal(format!("unexpected answer to a plan: {reply:?}")));
    };
    let answer = json!({
        "JobModifyIndex": job_modify_index,
        "CreatedEvals": created_evals,
        "Diff": if want_diff { json!(diff) } else { Value::Null },
        "Annotations": { "DesiredTGUpdates": desired_updates, "PreemptedAllocs": [] },
        "FailedTGAllocs": failed_tg_allocs,
        "NextPeriodicLaunch": "0001-01-01T00:00:00Z",
        "Warnings": "",
    });
    let meta = QueryMeta { index: job_modify_index, known_leader: agent.known_leader() };
    let Value::Object(fields) = answer else { unreachable!("a JSON object literal") };
    Ok(write_response(&params, &meta, fields))
}

async fn evaluate(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let request = ApiRequest::JobEvaluate { namespace: params.namespace(), job_id: id };
    job_write(&agent, &params, request, false).await
}

async fn versions(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::JobVersions { namespace: params.namespace(), job_id: id };
    let (result, meta) = read(&agent, &params, query).await?;
    let versions = rows!(result, JobVersions)?;
    if versions.is_empty() {
        return Err(ApiError::not_found("job versions not found"));
    }
    let diffs = if params.flag("diffs")? { json!(version_diffs(&versions)?) } else { Value::Null };
    let answer = json!({ "Versions": versions, "Diffs": diffs });
    let Value::Object(fields) = answer else { unreachable!("a JSON object literal") };
    Ok(write_response(&params, &meta, fields))
}

/// Each version against the one before it, newest first, as Nomad lists them: the
/// contextual diff that turns the older into the newer.
fn version_diffs(versions_newest_first: &[Job]) -> Result<Vec<JobDiff>, ApiError> {
    versions_newest_first
        .windows(2)
        .map(|pair| {
            job_diff(Some(&pair[1]), Some(&pair[0]), true)
                .map_err(|error| ApiError::internal(error.to_string()))
        })
        .collect()
}

async fn summary(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::JobSummary { namespace: params.namespace(), job_id: id };
    serve_shaped(&agent, &params, query, |result| {
        let summary = rows!(result, JobSummary)?;
        let summary = summary.ok_or_else(|| ApiError::not_found("job not found"))?;
        let mut fields =
            stub(&summary, &["JobID", "Namespace", "Summary", "CreateIndex", "ModifyIndex"]);
        // Parent jobs (periodic, parameterized) count their children; none are launched yet.
        fields.insert("Children".into(), json!({ "Pending": 0, "Running": 0, "Dead": 0 }));
        Ok(fields)
    })
    .await
}

async fn allocations(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::JobAllocs { namespace: params.namespace(), job_id: id };
    serve_shaped(&agent, &params, query, |result| {
        Ok(rows!(result, Allocs)?.iter().map(|a| stub(a, ALLOC_STUB_KEYS)).collect::<Vec<_>>())
    })
    .await
}

async fn evaluations(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::JobEvals { namespace: params.namespace(), job_id: id };
    serve(&agent, &params, query, "").await
}

async fn deployments(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::JobDeployments { namespace: params.namespace(), job_id: id };
    serve(&agent, &params, query, "").await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RevertBody {
    job_version: u64,
    enforce_prior_version: Option<u64>,
}

async fn revert(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let body: RevertBody = decode_body(&body)?;
    let request = ApiRequest::JobRevert {
        namespace: params.namespace(),
        job_id: id,
        version: body.job_version,
        enforce_prior_version: body.enforce_prior_version,
    };
    job_write(&agent, &params, request, true).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ScaleBody {
    count: Option<i64>,
    target: std::collections::BTreeMap<String, String>,
}

async fn scale(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let body: ScaleBody = decode_body(&body)?;
    let group = body.target.get("Group").cloned().unwrap_or_default();
    if group.is_empty() {
        return Err(ApiError::bad_request("Missing task group name"));
    }
    let count = body.count.ok_or_else(|| ApiError::bad_request("Count must be specified"))?;
    let request = ApiRequest::JobScale { namespace: params.namespace(), job_id: id, group, count };
    job_write(&agent, &params, request, true).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ParseBody {
    #[serde(rename = "JobHCL")]
    job_hcl: String,
    variables: String,
}

/// HCL to the API's JSON job, through the same jobspec the CLI uses.
async fn parse(params: Params, body: Bytes) -> ApiResult {
    let body: ParseBody = decode_body(&body)?;
    if body.job_hcl.is_empty() {
        return Err(ApiError::bad_request("Job spec is empty"));
    }
    let mut options = ParseOptions::default();
    if !body.variables.is_empty() {
        options.var_files.push(VarFile { name: "variables.hcl".into(), contents: body.variables });
    }
    let job = jobspec::parse("input.hcl", body.job_hcl.as_bytes(), &options)
        .map_err(|report| ApiError::bad_request(report.to_string()))?;
    Ok(super::json_response(&params, Default::default(), &job))
}

async fn validate(params: Params, body: Bytes) -> ApiResult {
    let mut envelope: Map<String, Value> = decode_body(&body)?;
    let job_value = envelope.remove("Job").filter(|j| !j.is_null());
    let job_value = job_value.ok_or_else(|| ApiError::bad_request("Job must be specified"))?;
    let errors: Vec<String> = match model::job_from_api_json(job_value) {
        Ok(job) => model::validate_job(&job).iter().map(ToString::to_string).collect(),
        Err(error) => vec![error.to_string()],
    };
    let error = if errors.is_empty() { String::new() } else { multi_error(&errors) };
    let answer = json!({
        "DriverConfigValidated": true,
        "ValidationErrors": errors,
        "Error": error,
        "Warnings": "",
    });
    Ok(super::json_response(&params, Default::default(), &answer))
}

// ------------------------------------------------------------------ periodic jobs

fn periodic_routes() -> Router<AgentHandle> {
    Router::new().route("/v1/job/{id}/periodic/force", post(periodic_force).put(periodic_force))
}

/// `POST /v1/job/:id/periodic/force`: launches the periodic job now; answers Nomad's
/// `PeriodicForceResponse` (the child's `EvalID`, `EvalCreateIndex`, `Index`).
async fn periodic_force(
    State(agent): State<AgentHandle>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult {
    let request = ApiRequest::JobPeriodicForce { namespace: params.namespace(), job_id: id };
    let (written, meta) = write(&agent, &params, request).await?;
    let fields = eval_fields(&written.eval_ids, written.eval_create_index);
    Ok(write_response(&params, &meta, fields))
}
