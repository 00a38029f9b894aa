//! `GET /v1/client/fs/logs/:alloc_id`: a task's rotated log files as one stream.
//!
//! The kept files `<task>.<type>.<n>` read as one sequence; `origin` and `offset` pick
//! where to start (`offset` bytes after the start, or before the end), `follow` keeps
//! the answer open and sends what the task writes next. Without `plain=true` the bytes go
//! in Nomad's stream frames, `{"Offset":…,"Data":"<base64>","File":"alloc/logs/…"}`,
//! back to back, with `{}` as a heartbeat while following. The logs of an allocation
//! another node runs are that node's agent's stream, passed on ([`super::forward`]).

use super::forward::{self, Answer, Incoming};
use super::{ApiError, ApiResult, Params};
use crate::agent::AgentHandle;
use crate::driver::alloc_dir::AllocDir;
use crate::driver::logs::existing_indexes;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The most bytes one frame carries (Nomad's `streamFrameSize`).
pub const LOG_FRAME_LEN_MAX_BYTES: usize = 64 * 1024;
/// How often a followed log is looked at for new output.
const FOLLOW_POLL_MS: u64 = 200;
/// How long a followed JSON stream may stay silent before a `{}` heartbeat.
const FOLLOW_HEARTBEAT_MS: u64 = 10_000;

pub(super) fn routes() -> Router<AgentHandle> {
    Router::new().route("/v1/client/fs/logs/{alloc_id}", get(logs))
}

async fn logs(
    State(agent): State<AgentHandle>,
    Path(alloc_id): Path<String>,
    params: Params,
    request: Incoming,
) -> ApiResult {
    let task = params.get("task").filter(|t| !t.is_empty());
    let task = task.ok_or_else(|| ApiError::bad_request("must provide task name"))?.to_owned();
    let stream = match params.get("type") {
        Some(kind @ ("stdout" | "stderr")) => kind.to_owned(),
        _ => return Err(ApiError::bad_request("must provide log type (stdout/stderr)")),
    };
    let from_end = match params.get("origin") {
        None | Some("" | "start") => false,
        Some("end") => true,
        Some(_) => return Err(ApiError::bad_request("origin must be start or end")),
    };
    let offset = params.u64("offset")?.unwrap_or(0);
    let follow = params.flag("follow")?;
    let plain = params.flag("plain")?;
    let alloc = forward::client_alloc(&agent, &alloc_id, "alloc not found").await?;
    let group = alloc.job.as_ref().and_then(|j| j.group(&alloc.task_group));
    if group.is_some_and(|g| g.tasks.iter().all(|t| t.name != task)) {
        return Err(ApiError::bad_request(format!("unknown task name {task:?}")));
    }
    if !forward::runs_here(&agent, &alloc).await? {
        return forward::to_alloc_node(&agent, &alloc, request, Answer::Streamed).await;
    }
    let dir = AllocDir::new(&agent.config.data_dir.join("alloc"), &alloc_id).logs_dir();
    let base = format!("{task}.{stream}");
    let cursor = LogCursor::start(dir, base, offset, from_end, plain, follow)
        .map_err(|e| ApiError::internal(format!("cannot read the logs: {e}")))?;
    let body = Body::from_stream(futures_util::stream::unfold(cursor, LogCursor::next));
    let content_type = if plain { "text/plain; charset=utf-8" } else { "application/json" };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Where the stream is in the task's log files.
struct LogCursor {
    dir: PathBuf,
    /// `<task>.<stdout|stderr>`.
    base: String,
    index: u32,
    offset_bytes: u64,
    plain: bool,
    follow: bool,
    last_sent: Instant,
    done: bool,
}

impl LogCursor {
    /// Starts `offset` bytes after the start of the oldest kept file, or before the end of
    /// the newest, counting across files.
    fn start(
        dir: PathBuf,
        base: String,
        offset: u64,
        from_end: bool,
        plain: bool,
        follow: bool,
    ) -> io::Result<LogCursor> {
        let indexes = match existing_indexes(&dir, &base) {
            Ok(indexes) => indexes,
            // The task has not written yet: start at the first file it will write.
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let sizes: Vec<(u32, u64)> = indexes
            .iter()
            .map(|&i| {
                (i, std::fs::metadata(dir.join(format!("{base}.{i}"))).map_or(0, |m| m.len()))
            })
            .collect();
        let total: u64 = sizes.iter().map(|(_, len)| len).sum();
        let mut skip = if from_end { total.saturating_sub(offset) } else { offset.min(total) };
        let mut position = (indexes.first().copied().unwrap_or(0), 0);
        for &(index, len) in &sizes {
            position = (index, skip.min(len));
            if skip < len {
                break;
            }
            skip -= len;
        }
        let (index, offset_bytes) = position;
        let last_sent = Instant::now();
        Ok(LogCursor { dir, base, index, offset_bytes, plain, follow, last_sent, done: false })
    }

    fn file_name(&self, index: u32) -> String {
        format!("{}.{index}", self.base)
    }

    /// The next chunk of the current file, if it holds more.
    fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut file = match std::fs::File::open(self.dir.join(self.file_name(self.index))) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        file.seek(SeekFrom::Start(self.offset_bytes))?;
        let mut chunk = Vec::with_capacity(LOG_FRAME_LEN_MAX_BYTES);
        file.take(LOG_FRAME_LEN_MAX_BYTES as u64).read_to_end(&mut chunk)?;
        if chunk.is_empty() {
            return Ok(None);
        }
        self.offset_bytes += chunk.len() as u64;
        Ok(Some(chunk))
    }

    /// Moves to the next file once the task rotated past the current one.
    fn advance_file(&mut self) -> io::Result<bool> {
        let newer = existing_indexes(&self.dir, &self.base).unwrap_or_default();
        match newer.into_iter().find(|&i| i > self.index) {
            Some(next) => {
                self.index = next;
                self.offset_bytes = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn frame(&self, chunk: &[u8]) -> Bytes {
        if self.plain {
            return Bytes::copy_from_slice(chunk);
        }
        let frame = serde_json::json!({
            "Offset": self.offset_bytes,
            "Data": base64::engine::general_purpose::STANDARD.encode(chunk),
            "File": format!("alloc/logs/{}", self.file_name(self.index)),
        });
        Bytes::from(frame.to_string())
    }

    /// The stream's next piece; `None` ends it (all read and not following).
    async fn next(mut self) -> Option<(io::Result<Bytes>, LogCursor)> {
        if self.done {
            return None;
        }
        loop {
            match self.read_chunk() {
                Ok(Some(chunk)) => {
                    self.last_sent = Instant::now();
                    let frame = self.frame(&chunk);
                    return Some((Ok(frame), self));
                }
                Ok(None) => {}
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
            }
            match self.advance_file() {
                Ok(true) => continue,
                Ok(false) if !self.follow => return None,
                Ok(false) => {}
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
            }
            let heartbeat = Duration::from_millis(FOLLOW_HEARTBEAT_MS);
            if !self.plain && self.last_sent.elapsed() >= heartbeat {
                self.last_sent = Instant::now();
                return Some((Ok(Bytes::from_static(b"{}")), self));
            }
            tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything a cursor yields until it ends (not following).
    fn drain(cursor: LogCursor) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut out = String::new();
            let mut next = Some(cursor);
            while let Some(cursor) = next.take() {
                match cursor.next().await {
                    Some((Ok(bytes), cursor)) => {
                        out.push_str(&String::from_utf8_lossy(&bytes));
                        next = Some(cursor);
                    }
                    Some((Err(error), _)) => panic!("{error}"),
                    None => {}
                }
            }
            out
        })
    }

    #[test]
    fn offsets_count_across_the_kept_files_from_either_end() {
        let dir = tempfile::tempdir().unwrap();
        for (index, text) in [(3, "abc"), (4, "defg"), (5, "hi")] {
            std::fs::write(dir.path().join(format!("web.stdout.{index}")), text).unwrap();
        }
        let read = |offset, from_end| {
            let base = "web.stdout".to_owned();
            let cursor =
                LogCursor::start(dir.path().to_owned(), base, offset, from_end, true, false);
            drain(cursor.unwrap())
        };
        assert_eq!(read(0, false), "abcdefghi");
        assert_eq!(read(4, false), "efghi");
        assert_eq!(read(3, true), "ghi");
        assert_eq!(read(100, true), "abcdefghi");
        assert_eq!(read(100, false), "");
    }

    #[test]
    fn frames_carry_base64_data_and_the_file_they_come_from() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.stderr.0"), "oops\n").unwrap();
        let base = "web.stderr".to_owned();
        let cursor = LogCursor::start(dir.path().to_owned(), base, 0, false, false, false);
        assert_eq!(
            drain(cursor.unwrap()),
            r#"{"Offset":5,"Data":"b29wcwo=","File":"alloc/logs/web.stderr.0"}"#
        );
    }
}
