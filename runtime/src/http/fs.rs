//! `GET /v1/client/fs/{ls,stat,cat,readat}/:alloc_id?path=`: an allocation's directory,
//! read on the client that runs it.
//!
//! `ls` lists a directory (`/` when no path is given) and `stat` describes one entry, as
//! Nomad's `AllocFileInfo`; `cat` streams a file whole and `readat` `limit` bytes of it
//! from `offset`. Paths stay inside the allocation's directory
//! ([`crate::driver::alloc_fs`]). A request for an allocation another node runs is that
//! node's agent's answer, passed on ([`super::forward`]). Errors carry Nomad's words and
//! codes: `ls` and `stat` answer 500 for anything the file system refused; `cat` and
//! `readat` answer 400, as Nomad's streaming endpoint does, but 500 for a secret.

use super::forward::{self, Answer, Incoming};
use super::{ApiError, ApiResult, Params, json_response};
use crate::agent::AgentHandle;
use crate::driver::alloc_dir::AllocDir;
use crate::driver::alloc_fs::{AllocFs, FsError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::fs::File;
use std::io::{self, Read};
use std::num::IntErrorKind;

/// The most bytes one chunk of a file's answer carries.
const READ_CHUNK_LEN_BYTES: usize = 64 * 1024;
/// Nomad's answer when a path is missing where one is needed.
const NO_PATH_GIVEN: &str = "must provide a file name";
/// The answer for an allocation the servers do not know.
const UNKNOWN_ALLOC: &str = "Unknown allocation";

pub(super) fn routes() -> Router<AgentHandle> {
    Router::new()
        .route("/v1/client/fs/ls/{alloc_id}", get(list))
        .route("/v1/client/fs/stat/{alloc_id}", get(stat))
        .route("/v1/client/fs/cat/{alloc_id}", get(cat))
        .route("/v1/client/fs/readat/{alloc_id}", get(read_at))
}

/// Where a request about an allocation's files is answered.
enum Served {
    /// By this agent, whose client runs the allocation.
    Here(AllocFs),
    /// By the node that runs it: its answer.
    There(Response),
}

/// Reads the allocation and either opens its directory here or forwards `request` to
/// the node that runs it.
async fn locate(
    agent: &AgentHandle,
    alloc_id: &str,
    request: Incoming,
    answer: Answer,
    refused: fn(FsError) -> ApiError,
) -> Result<Served, ApiError> {
    let alloc = forward::client_alloc(agent, alloc_id, UNKNOWN_ALLOC).await?;
    if !forward::runs_here(agent, &alloc).await? {
        return Ok(Served::There(forward::to_alloc_node(agent, &alloc, request, answer).await?));
    }
    let dir = AllocDir::new(&agent.config.data_dir.join("alloc"), alloc_id);
    Ok(Served::Here(AllocFs::new(&dir.root).map_err(refused)?))
}

fn internal(error: FsError) -> ApiError {
    ApiError::internal(error.to_string())
}

/// A streamed read's refusal: the file system's is the caller's mistake, a secret not.
fn streamed(error: FsError) -> ApiError {
    match error {
        FsError::Secret(_) => ApiError::internal(error.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

async fn list(
    State(agent): State<AgentHandle>,
    Path(alloc_id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    let path = params.get("path").filter(|p| !p.is_empty()).unwrap_or("/").to_owned();
    match locate(&agent, &alloc_id, request, Answer::Whole, internal).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(fs) => {
            let files = fs.list(&path).map_err(internal)?;
            Ok(json_response(&params, HeaderMap::new(), &files))
        }
    }
}

async fn stat(
    State(agent): State<AgentHandle>,
    Path(alloc_id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    let path = required_path(&params)?;
    match locate(&agent, &alloc_id, request, Answer::Whole, internal).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(fs) => {
            let info = fs.stat(&path).map_err(internal)?;
            Ok(json_response(&params, HeaderMap::new(), &info))
        }
    }
}

async fn cat(
    State(agent): State<AgentHandle>,
    Path(alloc_id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    let path = required_path(&params)?;
    match locate(&agent, &alloc_id, request, Answer::Streamed, streamed).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(fs) => Ok(file_answer(fs.read_at(&path, 0).map_err(streamed)?, None)),
    }
}

async fn read_at(
    State(agent): State<AgentHandle>,
    Path(alloc_id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    let path = required_path(&params)?;
    let offset = go_int(&params, "offset")?.unwrap_or_default();
    // Nomad reads to the end for a limit that is absent, zero or negative.
    let limit = go_int(&params, "limit")?.filter(|limit| *limit > 0);
    let offset = u64::try_from(offset)
        .map_err(|_| ApiError::bad_request(format!("can't seek to offset {offset}")))?;
    match locate(&agent, &alloc_id, request, Answer::Streamed, streamed).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(fs) => {
            let file = fs.read_at(&path, offset).map_err(streamed)?;
            Ok(file_answer(file, limit.map(i64::unsigned_abs)))
        }
    }
}

fn required_path(params: &Params) -> Result<String, ApiError> {
    let path = params.get("path").filter(|p| !p.is_empty());
    Ok(path.ok_or_else(|| ApiError::internal(NO_PATH_GIVEN))?.to_owned())
}

/// An integer parameter as Nomad parses it (Go's `strconv.ParseInt`), worded as it
/// words a failure; `offset` is required.
fn go_int(params: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    let text = params.get(key).unwrap_or_default();
    if text.is_empty() && key != "offset" {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|error| {
        let why = match error.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        ApiError::internal(format!(
            "error parsing {key}: strconv.ParseInt: parsing {text:?}: {why}"
        ))
    })
}

/// A file's bytes from where it is positioned, `limit` of them at most, as they are read.
fn file_answer(file: File, limit_bytes: Option<u64>) -> Response {
    let reader = file.take(limit_bytes.unwrap_or(u64::MAX));
    let body = Body::from_stream(futures_util::stream::unfold(Some(reader), next_chunk));
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The next chunk of a read; an error ends the stream after it is passed on.
async fn next_chunk(
    reader: Option<io::Take<File>>,
) -> Option<(io::Result<Bytes>, Option<io::Take<File>>)> {
    let mut reader = reader?;
    let mut chunk = Vec::with_capacity(READ_CHUNK_LEN_BYTES);
    match (&mut reader).take(READ_CHUNK_LEN_BYTES as u64).read_to_end(&mut chunk) {
        Ok(0) => None,
        Ok(_) => Some((Ok(Bytes::from(chunk)), Some(reader))),
        Err(error) => Some((Err(error), None)),
    }
}
