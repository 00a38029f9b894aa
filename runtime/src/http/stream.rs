//! A file, or a task's rotated log files, streamed as Nomad streams them: the body of
//! `fs/stream` and `fs/logs`, and of the plain reads `fs/cat` and `fs/readat`.
//!
//! A [`Source`] says what follows its position; [`response`] makes the answer of it: the
//! bytes as they are, or (not `plain`) Nomad's stream frames back to back,
//! `{"Offset":…,"Data":"<base64>","File":…,"FileEvent":…}` with empty fields left out.
//! The answer ends when the source has nothing more, or, when it follows, looks at the
//! source again every [`FOLLOW_POLL_MS`] and sends `{}` as a heartbeat after
//! [`FOLLOW_HEARTBEAT_MS`] of silence. Every read of a source runs off the async workers.

use super::{ApiError, Params, off_async_workers};
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use std::io;
use std::time::{Duration, Instant};

/// The most bytes one frame carries (Nomad's `streamFrameSize`).
pub const STREAM_FRAME_LEN_MAX_BYTES: usize = 64 * 1024;
/// How often a followed source is looked at for what was written next.
const FOLLOW_POLL_MS: u64 = 200;
/// How long a followed framed stream may stay silent before a `{}` heartbeat.
const FOLLOW_HEARTBEAT_MS: u64 = 10_000;
/// Nomad's event for a followed file that was deleted; the stream ends with it.
pub(super) const FILE_DELETED: &str = "file deleted";
/// Nomad's event for a followed file cut shorter than what was read of it; reading goes on
/// from its start.
pub(super) const FILE_TRUNCATED: &str = "file truncated";

/// What a source read: bytes of a file, or an event about it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame {
    /// The file, as the caller names it.
    pub file: String,
    /// Where in the file the stream stands after `data`.
    pub offset_bytes: u64,
    pub data: Vec<u8>,
    pub event: Option<&'static str>,
}

/// Where a stream's bytes come from. Its reads may block: they run off the async workers.
pub(super) trait Source: Send + 'static {
    /// What follows the position, at most [`STREAM_FRAME_LEN_MAX_BYTES`] of it; `None`
    /// when there is nothing more for now.
    fn next_frame(&mut self) -> io::Result<Option<Frame>>;
}

/// `?origin=start|end`: whether an offset counts back from the end.
pub(super) fn origin_is_end(params: &Params) -> Result<bool, ApiError> {
    match params.get("origin") {
        None | Some("" | "start") => Ok(false),
        Some("end") => Ok(true),
        Some(_) => Err(ApiError::bad_request("origin must be start or end")),
    }
}

/// The answer that streams `source`, plain or framed, followed or ended once the source
/// has nothing more.
pub(super) fn response(source: impl Source, plain: bool, follow: bool) -> Response {
    let stream = Stream { source: Some(source), plain, follow, last_sent: Instant::now() };
    let body = Body::from_stream(futures_util::stream::unfold(stream, Stream::next));
    let content_type = if plain { "text/plain; charset=utf-8" } else { "application/json" };
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A frame as Nomad's `StreamFrame` encodes it, empty fields left out.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireFrame<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    data: String,
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_event: Option<&'a str>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A stream under way; without a source it has ended.
struct Stream<S> {
    source: Option<S>,
    plain: bool,
    follow: bool,
    last_sent: Instant,
}

impl<S: Source> Stream<S> {
    /// The stream's next piece; `None` ends it.
    async fn next(mut self) -> Option<(io::Result<Bytes>, Stream<S>)> {
        loop {
            let mut source = self.source.take()?;
            let read = off_async_workers(move || {
                let frame = source.next_frame();
                (source, frame)
            })
            .await;
            let frame = match read {
                Ok((source, Ok(frame))) => {
                    self.source = Some(source);
                    frame
                }
                // The error is passed on and ends the stream.
                Ok((_, Err(error))) | Err(error) => return Some((Err(error), self)),
            };
            match frame {
                Some(frame) => {
                    if frame.event == Some(FILE_DELETED) {
                        self.source = None;
                    }
                    // A plain stream carries bytes only, never an event.
                    if self.plain && frame.data.is_empty() {
                        continue;
                    }
                    self.last_sent = Instant::now();
                    return Some((Ok(self.encode(&frame)), self));
                }
                None if !self.follow => return None,
                None => {}
            }
            let heartbeat = Duration::from_millis(FOLLOW_HEARTBEAT_MS);
            if !self.plain && self.last_sent.elapsed() >= heartbeat {
                self.last_sent = Instant::now();
                return Some((Ok(Bytes::from_static(b"{}")), self));
            }
            tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        }
    }

    fn encode(&self, frame: &Frame) -> Bytes {
        if self.plain {
            return Bytes::copy_from_slice(&frame.data);
        }
        let wire = WireFrame {
            offset: frame.offset_bytes,
            data: base64::engine::general_purpose::STANDARD.encode(&frame.data),
            file: &frame.file,
            file_event: frame.event,
        };
        // A frame of a string, numbers and base64 text always encodes.
        Bytes::from(serde_json::to_vec(&wire).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A source that hands out what it was given, then nothing.
    struct Scripted(VecDeque<Option<Frame>>);

    impl Source for Scripted {
        fn next_frame(&mut self) -> io::Result<Option<Frame>> {
            Ok(self.0.pop_front().flatten())
        }
    }

    fn frame(data: &str, offset_bytes: u64, event: Option<&'static str>) -> Option<Frame> {
        let file = "alloc/data.txt".to_owned();
        Some(Frame { file, offset_bytes, data: data.as_bytes().to_vec(), event })
    }

    async fn body(source: Scripted, plain: bool, follow: bool) -> String {
        let response = response(source, plain, follow);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn frames_leave_out_empty_fields_and_plain_streams_carry_bytes_only() {
        let script = || {
            Scripted(VecDeque::from([
                frame("abc", 3, None),
                frame("", 0, Some(FILE_TRUNCATED)),
                frame("d", 1, None),
            ]))
        };
        assert_eq!(
            body(script(), false, false).await,
            concat!(
                r#"{"Offset":3,"Data":"YWJj","File":"alloc/data.txt"}"#,
                r#"{"File":"alloc/data.txt","FileEvent":"file truncated"}"#,
                r#"{"Offset":1,"Data":"ZA==","File":"alloc/data.txt"}"#,
            )
        );
        assert_eq!(body(script(), true, false).await, "abcd");
    }

    /// A followed stream waits out a quiet source and ends only with its file.
    #[tokio::test]
    async fn a_followed_stream_polls_until_its_file_is_deleted() {
        let script = Scripted(VecDeque::from([
            frame("a", 1, None),
            None,
            None,
            frame("b", 2, None),
            frame("", 2, Some(FILE_DELETED)),
            frame("never sent", 12, None),
        ]));
        let expected = concat!(
            r#"{"Offset":1,"Data":"YQ==","File":"alloc/data.txt"}"#,
            r#"{"Offset":2,"Data":"Yg==","File":"alloc/data.txt"}"#,
            r#"{"Offset":2,"File":"alloc/data.txt","FileEvent":"file deleted"}"#,
        );
        assert_eq!(body(script, false, true).await, expected);
    }

    #[test]
    fn the_origin_is_the_start_unless_the_end_is_asked_for() {
        let origin = |value: &str| {
            let params =
                Params(std::collections::BTreeMap::from([("origin".into(), value.into())]));
            origin_is_end(&params).map_err(|error| error.message)
        };
        assert_eq!(origin(""), Ok(false));
        assert_eq!(origin("start"), Ok(false));
        assert_eq!(origin("end"), Ok(true));
        assert_eq!(origin("middle"), Err("origin must be start or end".to_owned()));
        assert_eq!(origin_is_end(&Params::default()).map_err(|e| e.message), Ok(false));
    }
}
