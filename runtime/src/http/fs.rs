//! `GET /v1/client/fs/{ls,stat,cat,readat}/:alloc_id?path=`: an allocation's directory,
//! read on the client that runs it.
//!
//! `ls` lists a directory (`/` when no path is given) and `stat` describes one entry, as
//! Nomad's `AllocFileInfo`; `cat` streams a file whole and `readat` `limit` bytes of it
//! from `offset`. Paths stay inside the allocation's directory
//! ([`crate::driver::alloc_fs`]). A request for an allocation another node runs is that
//! node's agent's answer, passed on ([`super::forward`]). Errors carry Nomad's words and
//! codes: `ls` and `stat` answer 500 for anything the file system refused; `cat` and
//! `readat` answer 400, as Nomad's streaming endpoint does, but 500 for a secret. Every
//! call on the file system runs on tokio's blocking threads ([`in_alloc_dir`]).

use super::forward::{self, Answer, FORWARD_BODY_LEN_MAX_BYTES, Incoming};
use super::{ApiError, ApiResult, Params, json_response, off_async_workers};
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
use std::path::PathBuf;

/// The longest listing answered, in bytes of compact JSON: half the bound on an answer one
/// agent reads whole of another's ([`FORWARD_BODY_LEN_MAX_BYTES`]). A listing asked for
/// with `?pretty` is less than twice its compact form (an entry's indentation and line
/// breaks take fewer bytes than its field names), so any listing a node answers also
/// passes through the agent that forwarded the request to it.
const LISTING_JSON_LEN_MAX_BYTES: usize = FORWARD_BODY_LEN_MAX_BYTES / 2;
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
    /// By this agent, whose client runs the allocation: the root of its directory.
    Here(PathBuf),
    /// By the node that runs it: its answer.
    There(Response),
}

/// Reads the allocation and either names its directory here or forwards `request` to
/// the node that runs it.
async fn locate(
    agent: &AgentHandle,
    alloc_id: &str,
    request: Incoming,
    answer: Answer,
) -> Result<Served, ApiError> {
    let alloc = forward::client_alloc(agent, alloc_id, UNKNOWN_ALLOC).await?;
    if !forward::runs_here(agent, &alloc).await? {
        return Ok(Served::There(forward::to_alloc_node(agent, &alloc, request, answer).await?));
    }
    let dir = AllocDir::new(&agent.config.data_dir.join("alloc"), alloc_id);
    Ok(Served::Here(dir.root))
}

/// Opens the allocation's directory at `root` and runs `read` on it, off the async
/// workers: the one way every endpoint here touches the file system, each path confined
/// by [`AllocFs`] as ever.
async fn in_alloc_dir<T: Send + 'static>(
    root: PathBuf,
    read: impl FnOnce(&AllocFs) -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    let outcome = off_async_workers(move || read(&AllocFs::new(&root)?)).await;
    outcome.map_err(|stopped| FsError::Io(stopped.to_string()))?
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
    match locate(&agent, &alloc_id, request, Answer::Whole).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(root) => {
            let listed = in_alloc_dir(root, move |fs| fs.list(&path, LISTING_JSON_LEN_MAX_BYTES));
            let files = listed.await.map_err(internal)?;
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
    match locate(&agent, &alloc_id, request, Answer::Whole).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(root) => {
            let info = in_alloc_dir(root, move |fs| fs.stat(&path)).await.map_err(internal)?;
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
    match locate(&agent, &alloc_id, request, Answer::Streamed).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(root) => {
            let file = in_alloc_dir(root, move |fs| fs.read_at(&path, 0)).await;
            Ok(file_answer(file.map_err(streamed)?, None))
        }
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
    match locate(&agent, &alloc_id, request, Answer::Streamed).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(root) => {
            let file = in_alloc_dir(root, move |fs| fs.read_at(&path, offset)).await;
            let file = file.map_err(streamed)?;
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

/// The next chunk of a read, read off the async workers; an error ends the stream after
/// it is passed on.
async fn next_chunk(
    reader: Option<io::Take<File>>,
) -> Option<(io::Result<Bytes>, Option<io::Take<File>>)> {
    let mut reader = reader?;
    let read = off_async_workers(move || {
        let mut chunk = Vec::with_capacity(READ_CHUNK_LEN_BYTES);
        let read = (&mut reader).take(READ_CHUNK_LEN_BYTES as u64).read_to_end(&mut chunk);
        (reader, read.map(|_| chunk))
    })
    .await;
    match read {
        Ok((_, Ok(chunk))) if chunk.is_empty() => None,
        Ok((reader, Ok(chunk))) => Some((Ok(Bytes::from(chunk)), Some(reader))),
        Ok((_, Err(error))) | Err(error) => Some((Err(error), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::model::AllocFileInfo;

    #[tokio::test]
    async fn file_system_work_runs_off_the_async_workers_and_stays_confined() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("alloc-1");
        std::fs::create_dir_all(root.join("web/local")).unwrap();
        let caller = std::thread::current().id();
        let (files, worker) = in_alloc_dir(root.clone(), |fs| {
            Ok((fs.list("web", LISTING_JSON_LEN_MAX_BYTES)?, std::thread::current().id()))
        })
        .await
        .unwrap();
        assert_ne!(worker, caller, "the listing ran on the runtime's own thread");
        let names: Vec<String> = files.into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["local"]);
        let escaped = in_alloc_dir(root, |fs| fs.list("web/../..", usize::MAX)).await;
        assert_eq!(escaped.unwrap_err(), FsError::Escapes);
        let missing = in_alloc_dir(scratch.path().join("alloc-2"), |fs| fs.stat("/")).await;
        assert_eq!(missing.unwrap_err().to_string(), "open /: no such file or directory");
    }

    /// The listing that weighs most against the bounds is one of entries as short as they
    /// come: as many as the listing bound holds, asked for `?pretty`, still fit through a
    /// forward.
    #[tokio::test]
    async fn a_listing_within_its_bound_passes_a_forward_even_pretty() {
        let shortest = AllocFileInfo {
            name: "a".to_owned(),
            file_mode: "----------".to_owned(),
            ..AllocFileInfo::default()
        };
        let entry_len_bytes = serde_json::to_vec(&shortest).unwrap().len() + 1;
        let files = vec![shortest; LISTING_JSON_LEN_MAX_BYTES / entry_len_bytes];
        assert!(serde_json::to_vec(&files).unwrap().len() <= LISTING_JSON_LEN_MAX_BYTES);
        let pretty = Params(std::collections::BTreeMap::from([("pretty".into(), "".into())]));
        let response = json_response(&pretty, HeaderMap::new(), &files);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert!(body.len() > LISTING_JSON_LEN_MAX_BYTES, "the pretty form is longer");
        assert!(body.len() <= FORWARD_BODY_LEN_MAX_BYTES, "{} bytes", body.len());
    }
}
