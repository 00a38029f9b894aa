//! `GET /v1/client/fs/logs/:alloc_id`: a task's rotated log files as one stream.
//!
//! The kept files `<task>.<type>.<n>` read as one sequence; `origin` and `offset` pick
//! where to start (`offset` bytes after the start, or before the end), `follow` keeps
//! the answer open and sends what the task writes next. Without `plain=true` the bytes go
//! in Nomad's stream frames naming the file they come from (`alloc/logs/…`, see
//! [`super::stream`]). The logs of an allocation another node runs are that node's
//! agent's stream, passed on ([`super::forward`]).

use super::forward::{self, Answer, Incoming};
use super::stream::{self, Frame, STREAM_FRAME_LEN_MAX_BYTES, Source};
use super::{ApiError, ApiResult, Params, off_async_workers};
use crate::agent::AgentHandle;
use crate::driver::alloc_dir::AllocDir;
use crate::driver::logs::existing_indexes;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

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
    let kind = match params.get("type") {
        Some(kind @ ("stdout" | "stderr")) => kind.to_owned(),
        _ => return Err(ApiError::bad_request("must provide log type (stdout/stderr)")),
    };
    let from_end = stream::origin_is_end(&params)?;
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
    let base = format!("{task}.{kind}");
    let started = off_async_workers(move || LogCursor::start(dir, base, offset, from_end)).await;
    let cursor = started
        .and_then(|cursor| cursor)
        .map_err(|e| ApiError::internal(format!("cannot read the logs: {e}")))?;
    Ok(stream::response(cursor, plain, follow))
}

/// Where the stream is in the task's log files.
struct LogCursor {
    dir: PathBuf,
    /// `<task>.<stdout|stderr>`.
    base: String,
    index: u32,
    offset_bytes: u64,
}

impl LogCursor {
    /// Starts `offset` bytes after the start of the oldest kept file, or before the end of
    /// the newest, counting across files.
    fn start(dir: PathBuf, base: String, offset: u64, from_end: bool) -> io::Result<LogCursor> {
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
        Ok(LogCursor { dir, base, index, offset_bytes })
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
        let mut chunk = Vec::with_capacity(STREAM_FRAME_LEN_MAX_BYTES);
        file.take(STREAM_FRAME_LEN_MAX_BYTES as u64).read_to_end(&mut chunk)?;
        if chunk.is_empty() {
            return Ok(None);
        }
        self.offset_bytes += chunk.len() as u64;
        Ok(Some(chunk))
    }

    /// Moves to the next file once the task rotated past the current one.
    fn advance_file(&mut self) -> bool {
        let newer = existing_indexes(&self.dir, &self.base).unwrap_or_default();
        match newer.into_iter().find(|&i| i > self.index) {
            Some(next) => {
                self.index = next;
                self.offset_bytes = 0;
                true
            }
            None => false,
        }
    }
}

impl Source for LogCursor {
    /// The next chunk of the current file, else of the next newer one.
    fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(data) = self.read_chunk()? {
                let file = format!("alloc/logs/{}", self.file_name(self.index));
                return Ok(Some(Frame {
                    file,
                    offset_bytes: self.offset_bytes,
                    data,
                    event: None,
                }));
            }
            if !self.advance_file() {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the stream of a cursor answers until it ends (not following).
    async fn drain(cursor: LogCursor, plain: bool) -> String {
        let response = stream::response(cursor, plain, false);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn offsets_count_across_the_kept_files_from_either_end() {
        let dir = tempfile::tempdir().unwrap();
        for (index, text) in [(3, "abc"), (4, "defg"), (5, "hi")] {
            std::fs::write(dir.path().join(format!("web.stdout.{index}")), text).unwrap();
        }
        let read = |offset, from_end| {
            let base = "web.stdout".to_owned();
            let cursor = LogCursor::start(dir.path().to_owned(), base, offset, from_end);
            drain(cursor.unwrap(), true)
        };
        assert_eq!(read(0, false).await, "abcdefghi");
        assert_eq!(read(4, false).await, "efghi");
        assert_eq!(read(3, true).await, "ghi");
        assert_eq!(read(100, true).await, "abcdefghi");
        assert_eq!(read(100, false).await, "");
    }

    #[tokio::test]
    async fn frames_carry_base64_data_and_the_file_they_come_from() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.stderr.0"), "oops\n").unwrap();
        let base = "web.stderr".to_owned();
        let cursor = LogCursor::start(dir.path().to_owned(), base, 0, false);
        assert_eq!(
            drain(cursor.unwrap(), false).await,
            r#"{"Offset":5,"Data":"b29wcwo=","File":"alloc/logs/web.stderr.0"}"#
        );
    }
}
