//! The frame envelope, and readers for whole buffers and for byte streams.
//!
//! ```text
//!  0      2         3      4                 8                12
//!  +------+---------+------+-----------------+-----------------+----------------+
//!  | "DR" | version | kind | payload len u32 | crc32c u32      | payload ...    |
//!  +------+---------+------+-----------------+-----------------+----------------+
//! ```
//!
//! Integers are little-endian. The crc32c covers bytes 2..8 (version, kind, length) and
//! the payload, so a damaged length or kind is caught as surely as a damaged payload. The
//! header is validated as soon as its bytes arrive: a wrong magic or version, or a length
//! over the caller's bound, is refused before anything is buffered for the payload.

use super::CodecError;
use std::fmt;

/// The two bytes that open every frame.
pub const FRAME_MAGIC: [u8; 2] = *b"DR";
/// The envelope and payload encoding this build writes and reads. Version 2: an
/// allocation and a client's report of it carry the report's sequence number.
pub const FORMAT_VERSION: u8 = 2;
pub const HEADER_LEN_BYTES: usize = 12;

/// What a frame holds, so a reader can refuse a frame meant for another purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameKind(pub u8);

impl FrameKind {
    pub const LOG_ENTRY: FrameKind = FrameKind(1);
    pub const SNAPSHOT: FrameKind = FrameKind(2);
    pub const RPC: FrameKind = FrameKind(3);
    /// The first frame of a Raft log segment, naming the format of the records after it.
    pub const LOG_SEGMENT_HEADER: FrameKind = FrameKind(4);
    pub const JOB: FrameKind = FrameKind(16);
    pub const NODE: FrameKind = FrameKind(17);
    pub const ALLOCATION: FrameKind = FrameKind(18);
    pub const EVALUATION: FrameKind = FrameKind(19);
    pub const DEPLOYMENT: FrameKind = FrameKind(20);
    pub const PLAN: FrameKind = FrameKind(21);
    pub const PLAN_RESULT: FrameKind = FrameKind(22);

    const NAMES: [(FrameKind, &'static str); 11] = [
        (FrameKind::LOG_ENTRY, "log entry"),
        (FrameKind::SNAPSHOT, "snapshot"),
        (FrameKind::RPC, "rpc"),
        (FrameKind::LOG_SEGMENT_HEADER, "log segment header"),
        (FrameKind::JOB, "job"),
        (FrameKind::NODE, "node"),
        (FrameKind::ALLOCATION, "allocation"),
        (FrameKind::EVALUATION, "evaluation"),
        (FrameKind::DEPLOYMENT, "deployment"),
        (FrameKind::PLAN, "plan"),
        (FrameKind::PLAN_RESULT, "plan result"),
    ];

    /// The kind's name, or `None` for a tag this build does not know.
    pub fn name(self) -> Option<&'static str> {
        FrameKind::NAMES.iter().find(|(kind, _)| *kind == self).map(|(_, name)| *name)
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "unknown kind ({})", self.0),
        }
    }
}

/// The fixed-size header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: FrameKind,
    pub(crate) payload_len_bytes: u32,
    pub(crate) crc: u32,
}

impl Header {
    pub(crate) fn frame_len_bytes(&self) -> usize {
        HEADER_LEN_BYTES + self.payload_len_bytes as usize
    }

    pub(crate) fn write(kind: FrameKind, payload_len_bytes: u32, out: &mut [u8]) {
        out[0..2].copy_from_slice(&FRAME_MAGIC);
        out[2] = FORMAT_VERSION;
        out[3] = kind.0;
        out[4..8].copy_from_slice(&payload_len_bytes.to_le_bytes());
    }

    /// Checks whatever prefix of a header `bytes` holds; returns the header once complete.
    /// `Ok(None)` means "valid so far, need more bytes".
    fn check(bytes: &[u8], frame_len_max_bytes: usize) -> Result<Option<Header>, CodecError> {
        let magic_seen = bytes.len().min(FRAME_MAGIC.len());
        if bytes[..magic_seen] != FRAME_MAGIC[..magic_seen] {
            return Err(CodecError::BadMagic { found: bytes[..magic_seen].to_vec() });
        }
        if let Some(&version) = bytes.get(2)
            && version != FORMAT_VERSION
        {
            return Err(CodecError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let Some(fixed) = bytes.get(..HEADER_LEN_BYTES) else { return Ok(None) };
        let header = Header {
            kind: FrameKind(fixed[3]),
            payload_len_bytes: u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            crc: u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        };
        if header.frame_len_bytes() > frame_len_max_bytes {
            return Err(CodecError::FrameTooLarge {
                frame_len_bytes: header.frame_len_bytes() as u64,
                frame_len_max_bytes,
            });
        }
        Ok(Some(header))
    }
}

/// The checksum stored in the header: crc32c over version, kind, length and payload.
pub(crate) fn frame_crc(header_bytes: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header_bytes[2..8]), payload)
}

/// A complete, checksum-verified frame borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    pub kind: FrameKind,
    pub payload: &'a [u8],
}

impl RawFrame<'_> {
    /// Header plus payload: how far a reader advances past this frame.
    pub fn frame_len_bytes(&self) -> usize {
        HEADER_LEN_BYTES + self.payload.len()
    }

    /// Decodes the payload as `T`, after checking the kind is `expected`.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        expected: FrameKind,
    ) -> Result<T, CodecError> {
        if self.kind != expected {
            return Err(CodecError::WrongKind { expected, found: self.kind });
        }
        super::decode_payload(self.payload)
    }
}

/// What the front of a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peek<'a> {
    /// A frame may be starting here but is incomplete; read at least this many more bytes.
    NeedMore {
        bytes_missing: usize,
    },
    Frame(RawFrame<'a>),
}

/// Looks at the start of `buffer` without copying: a whole frame, a request for more
/// bytes, or an error for bytes that can never become a valid frame. This is the reader
/// for log files (where `NeedMore` at end of file means a torn tail) and RPC streams.
pub fn peek_frame(buffer: &[u8], frame_len_max_bytes: usize) -> Result<Peek<'_>, CodecError> {
    let Some(header) = Header::check(buffer, frame_len_max_bytes)? else {
        return Ok(Peek::NeedMore { bytes_missing: HEADER_LEN_BYTES - buffer.len() });
    };
    let frame_len = header.frame_len_bytes();
    let Some(frame) = buffer.get(..frame_len) else {
        return Ok(Peek::NeedMore { bytes_missing: frame_len - buffer.len() });
    };
    let payload = &frame[HEADER_LEN_BYTES..];
    let actual = frame_crc(frame, payload);
    if actual != header.crc {
        return Err(CodecError::ChecksumMismatch { expected: header.crc, actual });
    }
    Ok(Peek::Frame(RawFrame { kind: header.kind, payload }))
}

/// Reads exactly one frame that fills `bytes`; a short buffer is [`CodecError::Truncated`].
pub fn read_frame(bytes: &[u8], frame_len_max_bytes: usize) -> Result<RawFrame<'_>, CodecError> {
    match peek_frame(bytes, frame_len_max_bytes)? {
        Peek::NeedMore { bytes_missing } => Err(CodecError::Truncated {
            frame_len_bytes: bytes.len() + bytes_missing,
            available_bytes: bytes.len(),
        }),
        Peek::Frame(frame) if frame.frame_len_bytes() < bytes.len() => {
            Err(CodecError::TrailingBytes { extra_bytes: bytes.len() - frame.frame_len_bytes() })
        }
        Peek::Frame(frame) => Ok(frame),
    }
}

/// A frame copied out of a [`FrameDecoder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedFrame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

impl OwnedFrame {
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        expected: FrameKind,
    ) -> Result<T, CodecError> {
        RawFrame { kind: self.kind, payload: &self.payload }.decode(expected)
    }
}

/// A sans-IO stream reader: push bytes as they arrive, pull frames as they complete.
///
/// After an error the stream is out of step (there is no resynchronisation marker), so
/// the decoder keeps returning that error; the caller drops the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already handed out as frames.
    consumed: usize,
    frame_len_max_bytes: usize,
    failed: Option<CodecError>,
}

impl FrameDecoder {
    pub fn new(frame_len_max_bytes: usize) -> FrameDecoder {
        FrameDecoder { buffer: Vec::new(), consumed: 0, frame_len_max_bytes, failed: None }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 && self.consumed >= self.buffer.len() / 2 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the stream's error.
    pub fn next_frame(&mut self) -> Result<Option<OwnedFrame>, CodecError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match peek_frame(&self.buffer[self.consumed..], self.frame_len_max_bytes) {
            Ok(Peek::NeedMore { .. }) => Ok(None),
            Ok(Peek::Frame(frame)) => {
                let owned = OwnedFrame { kind: frame.kind, payload: frame.payload.to_vec() };
                self.consumed += frame.frame_len_bytes();
                Ok(Some(owned))
            }
            Err(error) => {
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Bytes received but not yet returned as frames (a partial frame, at end of stream).
    pub fn pending_len_bytes(&self) -> usize {
        self.buffer.len() - self.consumed
    }
}
