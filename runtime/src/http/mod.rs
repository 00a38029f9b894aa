//! Nomad's v1 HTTP API over an agent, through axum on real tokio.
//!
//! Handlers are thin: decode the request, make an [`ApiRequest`], await the agent's
//! answer, encode it as Nomad does. The wire conventions live here once: PascalCase JSON
//! (the `core::model` types already serialize so), `X-Nomad-Index`,
//! `X-Nomad-KnownLeader` and `X-Nomad-LastContact` on reads, blocking queries
//! (`?index=N&wait=5m`), `?region=`, `?namespace=`, `?prefix=`, `?pretty`, plain-text
//! errors with Nomad's status codes, and a bound on request bodies.

mod agent;
mod cluster;
mod events;
mod forward;
mod fs;
mod jobs;
mod logs;
mod stream;

pub use forward::NodeHttp;

use crate::agent::AgentHandle;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_core::model::Node;
use drover_core::server::{ApiReply, ApiRequest, Query as Read, QueryResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The largest request body accepted; a larger one is refused with 413 before it is read
/// whole. A job of this size is far past anything an operator writes.
pub const REQUEST_BODY_LEN_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Nomad's default wait of a blocking query when `wait` is not given.
pub const BLOCKING_WAIT_DEFAULT_MS: u64 = 300_000;

/// The API's routes over `agent`.
pub fn router(agent: AgentHandle) -> Router {
    Router::new()
        .merge(jobs::routes())
        .merge(cluster::routes())
        .merge(agent::routes())
        .merge(logs::routes())
        .merge(fs::routes())
        .merge(events::routes())
        .fallback(|| async { ApiError::not_found("Invalid URL") })
        .layer(DefaultBodyLimit::max(REQUEST_BODY_LEN_MAX_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .with_state(agent)
}

/// Refuses a body whose declared length is over the bound at once, before reading any of
/// it (a body without a declared length is cut off at the bound while it is read).
async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH);
    let declared = declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > REQUEST_BODY_LEN_MAX_BYTES as u64) {
        let message = format!("request body larger than {REQUEST_BODY_LEN_MAX_BYTES} bytes");
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    next.run(request).await
}

// ------------------------------------------------------------------------ errors

/// An error answer: Nomad's plain-text body with its status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A server error as Nomad's HTTP layer codes it: a missing object is 404 (`… not
    /// found`, or a client's `Unknown allocation …`), everything else refused is 500.
    fn from_server(message: String) -> ApiError {
        if message.contains("not found") || message.starts_with("Unknown allocation") {
            ApiError::not_found(message)
        } else {
            ApiError::internal(message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let content_type = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        (self.status, content_type, self.message).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

// ------------------------------------------------------------------------ parameters

/// The query string, read leniently as Nomad does (unknown keys ignored) but strictly
/// where a value must parse.
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("Failed to parse {key} parameter: {text:?}"))
            }),
        }
    }

    /// `?flag`, `?flag=true`, `?flag=1` are set; absent or `false` are not.
    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(text) => {
                Err(ApiError::bad_request(format!("Failed to parse value of {key:?}: {text:?}")))
            }
        }
    }

    fn region(&self) -> String {
        self.get("region").unwrap_or_default().to_owned()
    }

    /// `?namespace=`, `default` when absent; `*` means every namespace in lists.
    fn namespace(&self) -> String {
        self.get("namespace").filter(|n| !n.is_empty()).unwrap_or("default").to_owned()
    }

    fn in_namespace(&self, namespace: &str) -> bool {
        let wanted = self.namespace();
        wanted == "*" || wanted == namespace
    }

    fn prefix(&self) -> &str {
        self.get("prefix").unwrap_or_default()
    }

    /// `?index=N&wait=D`: the index to pass and the longest wait, in milliseconds.
    fn blocking(&self) -> Result<(u64, u64), ApiError> {
        let index = self.u64("index")?.unwrap_or(0);
        let wait_ms = match self.get("wait") {
            None | Some("") => BLOCKING_WAIT_DEFAULT_MS,
            Some(text) => wait_ms(text)?,
        };
        Ok((index, wait_ms))
    }
}

/// A Go duration (`5m`, `30s`), or a bare number of seconds as Nomad also accepts.
fn wait_ms(text: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::bad_request(format!("Invalid wait time: {text:?}"));
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds.saturating_mul(1000));
    }
    let ns = drover_core::jobspec::parse_duration(text).map_err(|_| bad())?;
    u64::try_from(ns / 1_000_000).map_err(|_| bad())
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Params, ApiError> {
        let Query(map) = Query::<BTreeMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Ok(Params(map))
    }
}

/// Decodes a JSON request body; a body that is not JSON of the right shape is a 400 with
/// the parser's message. An empty body decodes as `{}` where the endpoint allows it.
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    drover_core::model::decode_api_json(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

// ------------------------------------------------------------------------ answers

/// What a read answers with besides its rows.
struct QueryMeta {
    index: u64,
    known_leader: bool,
}

/// A JSON answer, pretty with `?pretty`.
fn json_response<T: Serialize + ?Sized>(
    params: &Params,
    headers: HeaderMap,
    value: &T,
) -> Response {
    let pretty = params.get("pretty").is_some_and(|p| p != "false" && p != "0");
    let encoded = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) };
    match encoded {
        Ok(mut body) => {
            if pretty {
                body.push(b'\n');
            }
            let content_type = [(header::CONTENT_TYPE, "application/json")];
            (StatusCode::OK, headers, content_type, body).into_response()
        }
        Err(error) => {
            ApiError::internal(format!("cannot encode the answer: {error}")).into_response()
        }
    }
}

fn index_headers(meta: &QueryMeta) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("X-Nomad-Index", HeaderValue::from(meta.index));
    let leader = if meta.known_leader { "true" } else { "false" };
    headers.insert("X-Nomad-KnownLeader", HeaderValue::from_static(leader));
    // The agent answers from its own server's state, which is the leader's in `-dev`.
    headers.insert("X-Nomad-LastContact", HeaderValue::from(0u64));
    headers
}

/// A read's rows with the query headers.
fn read_response(params: &Params, meta: &QueryMeta, value: &impl Serialize) -> Response {
    json_response(params, index_headers(meta), value)
}

/// A write's answer: its fields plus Nomad's flattened `Index` (and query meta).
fn write_response(params: &Params, meta: &QueryMeta, mut fields: Map<String, Value>) -> Response {
    fields.insert("Index".into(), meta.index.into());
    fields.insert("LastContact".into(), 0.into());
    fields.insert("KnownLeader".into(), meta.known_leader.into());
    json_response(params, index_headers(meta), &Value::Object(fields))
}

/// Sends a call and turns the agent's refusal or a server error into an [`ApiError`].
async fn call(
    agent: &AgentHandle,
    params: &Params,
    request: ApiRequest,
) -> Result<ApiReply, ApiError> {
    let reply = agent
        .call(&params.region(), request)
        .await
        .map_err(|gone| ApiError::internal(gone.to_string()))?;
    match reply {
        ApiReply::Error { message } => Err(ApiError::from_server(message)),
        ApiReply::NotLeader { .. } => Err(ApiError::internal("No cluster leader")),
        reply => Ok(reply),
    }
}

/// A (possibly blocking) read: its rows and meta.
async fn read(
    agent: &AgentHandle,
    params: &Params,
    query: Read,
) -> Result<(QueryResult, QueryMeta), ApiError> {
    let (min_index, wait_ms) = params.blocking()?;
    let request =
        ApiRequest::Read { query, min_index, wait_ms: if min_index == 0 { 0 } else { wait_ms } };
    match call(agent, params, request).await? {
        ApiReply::Read { index, result } => {
            Ok((result, QueryMeta { index, known_leader: agent.known_leader() }))
        }
        other => Err(ApiError::internal(format!("unexpected answer to a read: {other:?}"))),
    }
}

/// A read's rows as JSON; `None` when the one object asked for does not exist. Nodes
/// never show their secret.
fn rows_json(result: QueryResult) -> Option<Value> {
    let public = |mut node: Node| {
        node.secret_id = String::new();
        node
    };
    let value = match result {
        QueryResult::Job(job) => serde_json::to_value(job?),
        QueryResult::Jobs(jobs) => serde_json::to_value(jobs),
        QueryResult::Node(node) => serde_json::to_value(public(*node?)),
        QueryResult::Nodes(nodes) => {
            serde_json::to_value(nodes.into_iter().map(public).collect::<Vec<_>>())
        }
        QueryResult::Allocs(allocs) => serde_json::to_value(allocs),
        QueryResult::Alloc(alloc) => serde_json::to_value(alloc?),
        QueryResult::Eval(eval) => serde_json::to_value(eval?),
        QueryResult::Evals(evals) => serde_json::to_value(evals),
        QueryResult::JobVersions(jobs) => serde_json::to_value(jobs),
        QueryResult::JobSummary(summary) => serde_json::to_value(summary?),
        QueryResult::Deployment(deployment) => serde_json::to_value(deployment?),
        QueryResult::Deployments(deployments) => serde_json::to_value(deployments),
        // The event stream frames events itself (`events`), the autopilot configuration
        // is shaped by its handler (`agent`); never read as rows.
        QueryResult::Events(_) | QueryResult::AutopilotConfig(_) => return None,
    };
    Some(value.unwrap_or(Value::Null))
}

/// Serves a read as the server answered it, or 404 with `missing` when the one object
/// asked for does not exist.
async fn serve(agent: &AgentHandle, params: &Params, query: Read, missing: &str) -> ApiResult {
    let (result, meta) = read(agent, params, query).await?;
    match rows_json(result) {
        Some(rows) => Ok(read_response(params, &meta, &rows)),
        None => Err(ApiError::not_found(missing)),
    }
}

/// Serves a read as `shape` makes it of the server's rows, with the query headers: the
/// one shape of every handler that filters, sorts or cuts what it read.
async fn serve_shaped<T: Serialize>(
    agent: &AgentHandle,
    params: &Params,
    query: Read,
    shape: impl FnOnce(QueryResult) -> Result<T, ApiError>,
) -> ApiResult {
    let (result, meta) = read(agent, params, query).await?;
    Ok(read_response(params, &meta, &shape(result)?))
}

/// The server answered a read with rows of another kind than asked (never expected).
fn unexpected<T>(_result: &QueryResult) -> Result<T, ApiError> {
    Err(ApiError::internal("the server answered a read with rows of another kind"))
}

/// The rows of a read's answer of the kind asked for (`rows!(result, Allocs)`).
macro_rules! rows {
    ($result:expr, $variant:ident) => {
        match $result {
            drover_core::server::QueryResult::$variant(rows) => Ok(rows),
            other => super::unexpected(&other),
        }
    };
}
use rows;

/// A committed write: (index, job modify index, eval IDs, eval create index).
struct Written {
    index: u64,
    job_modify_index: u64,
    eval_ids: Vec<String>,
    eval_create_index: u64,
}

async fn write(
    agent: &AgentHandle,
    params: &Params,
    request: ApiRequest,
) -> Result<(Written, QueryMeta), ApiError> {
    match call(agent, params, request).await? {
        ApiReply::Write { index, job_modify_index, eval_ids, eval_create_index } => {
            let meta = QueryMeta { index, known_leader: agent.known_leader() };
            Ok((Written { index, job_modify_index, eval_ids, eval_create_index }, meta))
        }
        other => Err(ApiError::internal(format!("unexpected answer to a write: {other:?}"))),
    }
}

/// The listed keys of an object, in the order given: how list stubs are cut from the full
/// objects (Nomad's `*ListStub` types carry a subset of the fields under the same names).
fn stub(value: &impl Serialize, keys: &[&str]) -> Map<String, Value> {
    let Ok(Value::Object(mut full)) = serde_json::to_value(value) else { return Map::new() };
    keys.iter().filter_map(|k| full.remove(*k).map(|v| ((*k).to_owned(), v))).collect()
}

/// Orders rows by a key, as Nomad's tables iterate (by ID).
fn sorted_by_key<T>(mut rows: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    rows.sort_by_key(|row| key(row));
    rows
}

/// A list's rows in Nomad's order (by ID), keeping those in the query's namespace whose ID
/// starts with its prefix.
fn listed<T>(params: &Params, rows: Vec<T>, scope: impl Fn(&T) -> (&str, &str)) -> Vec<T> {
    let mut rows: Vec<T> = rows
        .into_iter()
        .filter(|row| {
            let (namespace, id) = scope(row);
            params.in_namespace(namespace) && id.starts_with(params.prefix())
        })
        .collect();
    rows.sort_by(|a, b| scope(a).1.cmp(scope(b).1));
    rows
}

// ------------------------------------------------------------------------ file reads

/// Runs blocking file system work (opening, listing, reading an allocation's files) on
/// tokio's blocking threads: a call that stalls on a slow or hung disk would otherwise
/// stall an async worker, and with it every request that worker serves.
async fn off_async_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|stopped| std::io::Error::other(format!("the file read stopped: {stopped}")))
}
