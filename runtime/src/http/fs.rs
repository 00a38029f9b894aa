//! `GET /v1/client/fs/{ls,stat,cat,readat,stream}/:alloc_id?path=`: an allocation's
//! directory, read on the client that runs it.
//!
//! `ls` lists a directory (`/` when no path is given) and `stat` describes one entry, as
//! Nomad's `AllocFileInfo`; `cat` streams a file whole and `readat` `limit` bytes of it
//! from `offset`; `stream` sends a file from `offset` (after its start, or before its end
//! with `origin=end`) in Nomad's stream frames, or plain, and unless `follow=false` keeps
//! sending what is appended to it ([`super::stream`]). Paths stay inside the allocation's directory
//! ([`crate::driver::alloc_fs`]). A request for an allocation another node runs is that
//! node's agent's answer, passed on ([`super::forward`]). Errors carry Nomad's words and
//! codes: `ls` and `stat` answer 500 for anything the file system refused; `cat`,
//! `readat` and `stream` answer 400, as Nomad's streaming endpoint does, but 500 for a
//! secret. Every
//! call on the file system runs on tokio's blocking threads ([`in_alloc_dir`]).

use super::forward::{self, Answer, FORWARD_BODY_LEN_MAX_BYTES, Incoming};
use super::stream::{self, FILE_DELETED, FILE_TRUNCATED, Frame, STREAM_FRAME_LEN_MAX_BYTES};
use super::{ApiError, ApiResult, Params, json_response, off_async_workers};
use crate::agent::AgentHandle;
use crate::driver::alloc_dir::AllocDir;
use crate::driver::alloc_fs::{AllocFs, FsError};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::num::IntErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The longest listing answered, in bytes of compact JSON: half the bound on an answer one
/// agent reads whole of another's ([`FORWARD_BODY_LEN_MAX_BYTES`]). A listing asked for
/// with `?pretty` is less than twice its compact form (an entry's indentation and line
/// breaks take fewer bytes than its field names), so any listing a node answers also
/// passes through the agent that forwarded the request to it.
const LISTING_JSON_LEN_MAX_BYTES: usize = FORWARD_BODY_LEN_MAX_BYTES / 2;
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
        .route("/v1/client/fs/stream/{alloc_id}", get(stream))
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
    let how = Streaming { limit_bytes: None, plain: true, follow: false };
    file_stream(&agent, &alloc_id, request, path, |fs, path| fs.read_at(path, 0), how).await
}

async fn read_at(
    State(agent): State<AgentHandle>,
    Path(alloc_id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    let path = required_path(&params)?;
    let offset = seekable(go_int(&params, "offset", true)?.unwrap_or_default())?;
    // Nomad reads to the end for a limit that is absent, zero or negative.
    let limit = go_int(&params, "limit", false)?.filter(|limit| *limit > 0);
    let how = Streaming { limit_bytes: limit.map(i64::unsigned_abs), plain: true, follow: false };
    let open = move |fs: &AllocFs, path: &str| fs.read_at(path, offset);
    file_stream(&agent, &alloc_id, request, path, open, how).await
}

async fn stream(
    State(agent): State<AgentHandle>,
    Path(alloc_id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    let path = required_path(&params)?;
    let offset = seekable(go_int(&params, "offset", false)?.unwrap_or_default())?;
    let from_end = stream::origin_is_end(&params)?;
    // Nomad follows the file unless told not to.
    let follow = params.get("follow").is_none() || params.flag("follow")?;
    let how = Streaming { limit_bytes: None, plain: params.flag("plain")?, follow };
    let open = move |fs: &AllocFs, path: &str| {
        if from_end { fs.read_from_end(path, offset) } else { fs.read_at(path, offset) }
    };
    file_stream(&agent, &alloc_id, request, path, open, how).await
}

/// How a file is streamed: how much of it, plain or in frames, followed or not.
struct Streaming {
    limit_bytes: Option<u64>,
    plain: bool,
    follow: bool,
}

/// Streams the file at `path` of the allocation's directory from where `open` positions
/// it: here, or as the node that runs the allocation answers.
async fn file_stream(
    agent: &AgentHandle,
    alloc_id: &str,
    request: Incoming,
    path: String,
    open: impl FnOnce(&AllocFs, &str) -> Result<File, FsError> + Send + 'static,
    how: Streaming,
) -> ApiResult {
    match locate(agent, alloc_id, request, Answer::Streamed).await? {
        Served::There(answer) => Ok(answer),
        Served::Here(root) => {
            let Streaming { limit_bytes, plain, follow } = how;
            let opened = in_alloc_dir(root, move |fs| {
                let file = open(fs, &path)?;
                Ok(FileSource::new(file, path, limit_bytes, follow))
            });
            Ok(stream::response(opened.await.map_err(streamed)?, plain, follow))
        }
    }
}

fn required_path(params: &Params) -> Result<String, ApiError> {
    let path = params.get("path").filter(|p| !p.is_empty());
    Ok(path.ok_or_else(|| ApiError::internal(NO_PATH_GIVEN))?.to_owned())
}

/// An integer parameter as Nomad parses it (Go's `strconv.ParseInt`), worded as it
/// words a failure; one `required` fails to parse when absent, as in Nomad.
fn go_int(params: &Params, key: &str, required: bool) -> Result<Option<i64>, ApiError> {
    let text = params.get(key).unwrap_or_default();
    if text.is_empty() && !required {
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

/// An offset a file can be read from: one before its start is refused as Go's seek
/// refuses it.
fn seekable(offset: i64) -> Result<u64, ApiError> {
    u64::try_from(offset)
        .map_err(|_| ApiError::bad_request(format!("can't seek to offset {offset}")))
}

/// One file of an allocation's directory, read from where it was opened: `limit` bytes
/// at most, or, followed, also what is appended to it, with its truncation and its
/// deletion told as Nomad's file events.
struct FileSource {
    file: File,
    /// The path as the caller gave it, which frames name.
    path: String,
    offset_bytes: u64,
    left_bytes: u64,
    follow: bool,
}

impl FileSource {
    fn new(mut file: File, path: String, limit_bytes: Option<u64>, follow: bool) -> FileSource {
        // The descriptor was just positioned by a seek; asking where cannot fail.
        let offset_bytes = file.stream_position().unwrap_or_default();
        let left_bytes = limit_bytes.unwrap_or(u64::MAX);
        FileSource { file, path, offset_bytes, left_bytes, follow }
    }

    fn frame(&self, data: Vec<u8>, event: Option<&'static str>) -> Frame {
        Frame { file: self.path.clone(), offset_bytes: self.offset_bytes, data, event }
    }
}

impl stream::Source for FileSource {
    fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let wanted_bytes = self.left_bytes.min(STREAM_FRAME_LEN_MAX_BYTES as u64);
        let mut data = Vec::with_capacity(wanted_bytes as usize);
        (&mut self.file).take(wanted_bytes).read_to_end(&mut data)?;
        if !data.is_empty() {
            self.offset_bytes += data.len() as u64;
            self.left_bytes -= data.len() as u64;
            return Ok(Some(self.frame(data, None)));
        }
        if !self.follow || self.left_bytes == 0 {
            return Ok(None);
        }
        // At the end of a followed file: it may have been deleted or cut short since.
        let metadata = self.file.metadata()?;
        if metadata.nlink() == 0 {
            return Ok(Some(self.frame(Vec::new(), Some(FILE_DELETED))));
        }
        if metadata.len() < self.offset_bytes {
            self.file.seek(SeekFrom::Start(0))?;
            self.offset_bytes = 0;
            return Ok(Some(self.frame(Vec::new(), Some(FILE_TRUNCATED))));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::model::AllocFileInfo;
    use std::io::Write as _;

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

    /// What a source of `path` yields next: its bytes as text, its offset, its event.
    fn next(source: &mut FileSource) -> Option<(String, u64, Option<&'static str>)> {
        use stream::Source as _;
        let frame = source.next_frame().unwrap()?;
        Some((String::from_utf8(frame.data).unwrap(), frame.offset_bytes, frame.event))
    }

    #[test]
    fn a_followed_file_tells_what_is_appended_to_it_and_its_truncation_and_deletion() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("out.txt");
        std::fs::write(&path, "ab").unwrap();
        let open = || File::open(&path).unwrap();
        let mut source = FileSource::new(open(), "web/out.txt".to_owned(), None, true);
        assert_eq!(next(&mut source), Some(("ab".to_owned(), 2, None)));
        assert_eq!(next(&mut source), None, "nothing more for now");
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"cd").unwrap();
        assert_eq!(next(&mut source), Some(("cd".to_owned(), 4, None)));
        std::fs::write(&path, "x").unwrap();
        assert_eq!(next(&mut source), Some((String::new(), 0, Some(FILE_TRUNCATED))));
        assert_eq!(next(&mut source), Some(("x".to_owned(), 1, None)));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(next(&mut source), Some((String::new(), 1, Some(FILE_DELETED))));

        // Not followed, a read ends at the end of the file or of its limit.
        std::fs::write(&path, "abc").unwrap();
        let mut limited = FileSource::new(open(), "web/out.txt".to_owned(), Some(2), false);
        assert_eq!(next(&mut limited), Some(("ab".to_owned(), 2, None)));
        assert_eq!(next(&mut limited), None);
        let mut whole = FileSource::new(open(), "web/out.txt".to_owned(), None, false);
        assert_eq!(next(&mut whole), Some(("abc".to_owned(), 3, None)));
        std::fs::write(&path, "").unwrap();
        assert_eq!(next(&mut whole), None, "a truncation is told only while following");
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
