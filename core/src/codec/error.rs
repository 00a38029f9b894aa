//! Why a frame could not be encoded or decoded.
//!
//! Each variant carries the numbers an operator needs to tell a torn log tail from a
//! version mismatch from hostile input, and `Display` states them in a sentence.

use super::frame::FrameKind;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The first bytes are not drover's frame magic: not a drover stream, or desynchronised.
    BadMagic { found: Vec<u8> },
    /// A frame written by another codec version.
    UnsupportedVersion { found: u8, supported: u8 },
    /// The header announces a frame larger than the caller allows; refused before reading.
    FrameTooLarge { frame_len_bytes: u64, frame_len_max_bytes: usize },
    /// Fewer bytes than the header announces (a torn write, or a cut connection).
    Truncated { frame_len_bytes: usize, available_bytes: usize },
    /// The checksum does not match: the frame was damaged.
    ChecksumMismatch { expected: u32, actual: u32 },
    /// A valid frame, but of another kind than the caller expects.
    WrongKind { expected: FrameKind, found: FrameKind },
    /// Bytes left over after the frame (whole-buffer decode) or after the value (payload).
    TrailingBytes { extra_bytes: usize },
    /// The payload nests deeper than the decoder allows (hostile or corrupt input).
    TooDeep { nesting_depth_max: usize },
    /// The payload does not decode as the expected type.
    Payload { message: String },
    /// The value could not be encoded (or exceeds the 4 GiB a length field can state).
    Encode { message: String },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::BadMagic { found } => {
                write!(f, "not a drover frame: expected magic 0x4452 (\"DR\"), found {found:02x?}")
            }
            CodecError::UnsupportedVersion { found, supported } => write!(
                f,
                "frame has codec version {found}, but this build reads only version {supported}"
            ),
            CodecError::FrameTooLarge { frame_len_bytes, frame_len_max_bytes } => write!(
                f,
                "frame of {frame_len_bytes} bytes exceeds the limit of {frame_len_max_bytes} bytes"
            ),
            CodecError::Truncated { frame_len_bytes, available_bytes } => {
                write!(f, "truncated frame: {available_bytes} of {frame_len_bytes} bytes present")
            }
            CodecError::ChecksumMismatch { expected, actual } => write!(
                f,
                "frame checksum mismatch: header says crc32c {expected:#010x}, content has {actual:#010x}"
            ),
            CodecError::WrongKind { expected, found } => {
                write!(f, "expected a {expected} frame, found a {found} frame")
            }
            CodecError::TrailingBytes { extra_bytes } => {
                write!(f, "{extra_bytes} unexpected bytes after the encoded value")
            }
            CodecError::TooDeep { nesting_depth_max } => {
                write!(f, "frame payload nests deeper than {nesting_depth_max} levels")
            }
            CodecError::Payload { message } => {
                write!(f, "frame payload does not decode: {message}")
            }
            CodecError::Encode { message } => write!(f, "cannot encode value: {message}"),
        }
    }
}

impl std::error::Error for CodecError {}
