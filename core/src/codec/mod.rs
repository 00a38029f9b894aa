//! The binary encoding of log entries, snapshots and RPC frames.
//!
//! Values are encoded with postcard (serde, compact varints, a documented stable wire
//! format) inside a versioned envelope: magic, format version, a kind tag, the payload
//! length and a crc32c (layout in [`frame`]). postcard is not self-describing, so every
//! model type serialises every field (no `skip_serializing_if`, no untagged enums); the
//! schema evolves by bumping [`FORMAT_VERSION`] or adding enum variants at the end.
//!
//! Decoding treats its input as hostile: a frame over the caller's `frame_len_max_bytes`
//! is refused from its header, before anything is allocated for it; nesting depth and
//! collection preallocation are bounded ([`depth`]); and every byte string yields a value
//! or a [`CodecError`], never a panic.

pub mod bytes;
mod depth;
mod error;
mod frame;

pub use depth::PREALLOCATION_MAX_ITEMS;
pub use error::CodecError;
pub use frame::{
    FORMAT_VERSION, FRAME_MAGIC, FrameDecoder, FrameKind, HEADER_LEN_BYTES, OwnedFrame, Peek,
    RawFrame, peek_frame, read_frame,
};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A sensible bound for RPC frames and log entries: large enough for a job with thousands
/// of allocations in its plan, small enough that one bad peer cannot exhaust memory.
pub const FRAME_LEN_MAX_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// How deeply a decoded value may nest (sequences, maps, enums, options each count one).
/// A plan carrying a job with a nested driver config uses about 20.
pub const NESTING_DEPTH_MAX: usize = 100;

/// Encodes `value` as one frame of `kind`.
pub fn encode<T: Serialize + ?Sized>(kind: FrameKind, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(kind, value, &mut out)?;
    Ok(out)
}

/// Appends one frame of `kind` holding `value` to `out` (e.g. a batch of log entries).
/// On error `out` is left as it was.
pub fn encode_into<T: Serialize + ?Sized>(
    kind: FrameKind,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    out.resize(start + HEADER_LEN_BYTES, 0);
    if let Err(error) = postcard::to_extend(value, Appender(out)) {
        out.truncate(start);
        return Err(CodecError::Encode { message: error.to_string() });
    }
    let payload_len = out.len() - start - HEADER_LEN_BYTES;
    let Ok(payload_len_bytes) = u32::try_from(payload_len) else {
        out.truncate(start);
        return Err(CodecError::Encode {
            message: format!("payload of {payload_len} bytes exceeds the 4 GiB frame format"),
        });
    };
    let frame = &mut out[start..];
    frame::Header::write(kind, payload_len_bytes, frame);
    let crc = frame::frame_crc(frame, &frame[HEADER_LEN_BYTES..]);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Lets postcard write straight into the caller's buffer.
struct Appender<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Appender<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

/// Decodes a buffer that holds exactly one frame of `kind`.
pub fn decode<T: DeserializeOwned>(
    kind: FrameKind,
    bytes: &[u8],
    frame_len_max_bytes: usize,
) -> Result<T, CodecError> {
    read_frame(bytes, frame_len_max_bytes)?.decode(kind)
}

/// Decodes a bare postcard payload (no envelope), with the same bounds as [`decode`].
/// The frame readers call this after the envelope checks; the fuzz target calls it
/// directly so that mutations reach the payload decoder without fixing up checksums.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let budget = depth::Budget::new(NESTING_DEPTH_MAX);
    let mut deserializer = postcard::Deserializer::from_bytes(payload);
    let limited = depth::Limited { inner: &mut deserializer, budget: &budget };
    let value = T::deserialize(limited).map_err(|error| match budget.exceeded() {
        true => CodecError::TooDeep { nesting_depth_max: NESTING_DEPTH_MAX },
        false => CodecError::Payload { message: error.to_string() },
    })?;
    let rest = deserializer
        .finalize()
        .map_err(|error| CodecError::Payload { message: error.to_string() })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { extra_bytes: rest.len() });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FreeValue;

    #[test]
    fn round_trip_and_layout() {
        let bytes = encode(FrameKind::RPC, &("hello", 7u32)).unwrap();
        assert_eq!(&bytes[..4], &[b'D', b'R', FORMAT_VERSION, 3]);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize, bytes.len() - 12);
        let back: (String, u32) = decode(FrameKind::RPC, &bytes, 1024).unwrap();
        assert_eq!(back, ("hello".to_owned(), 7));
    }

    #[test]
    fn refuses_other_versions_kinds_and_sizes() {
        let mut bytes = encode(FrameKind::JOB, &1u8).unwrap();
        let kind = decode::<u8>(FrameKind::NODE, &bytes, 1024).unwrap_err();
        assert_eq!(
            kind,
            CodecError::WrongKind { expected: FrameKind::NODE, found: FrameKind::JOB }
        );
        assert_eq!(kind.to_string(), "expected a node (17) frame, found a job (16) frame");
        let too_large = decode::<u8>(FrameKind::JOB, &bytes, 12).unwrap_err();
        assert!(matches!(too_large, CodecError::FrameTooLarge { frame_len_bytes: 13, .. }));
        bytes[2] = 9;
        let version = decode::<u8>(FrameKind::JOB, &bytes, 1024).unwrap_err();
        assert_eq!(
            version.to_string(),
            "frame has codec version 9, but this build reads only version 2"
        );
    }

    #[test]
    fn a_huge_length_is_refused_from_the_header_alone() {
        let mut header = encode(FrameKind::SNAPSHOT, &()).unwrap();
        header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = peek_frame(&header, FRAME_LEN_MAX_BYTES_DEFAULT).unwrap_err();
        assert!(matches!(error, CodecError::FrameTooLarge { .. }), "{error}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Each level: the `List` variant tag (5) and a length of one.
        let levels = 100_000;
        let mut payload = Vec::with_capacity(levels * 2 + 1);
        for _ in 0..levels {
            payload.extend_from_slice(&[5, 1]);
        }
        payload.push(0);
        let error = decode_payload::<FreeValue>(&payload).unwrap_err();
        assert_eq!(error, CodecError::TooDeep { nesting_depth_max: NESTING_DEPTH_MAX });
        assert_eq!(error.to_string(), "frame payload nests deeper than 100 levels");
    }

    #[test]
    fn nesting_within_the_bound_decodes() {
        let mut value = FreeValue::Int(1);
        for _ in 0..(NESTING_DEPTH_MAX / 2 - 1) {
            value = FreeValue::List(vec![value]);
        }
        let bytes = encode(FrameKind::RPC, &value).unwrap();
        assert_eq!(decode::<FreeValue>(FrameKind::RPC, &bytes, 1 << 20).unwrap(), value);
    }

    #[test]
    fn huge_claimed_lengths_fail_without_reserving_them() {
        // A list claiming u32::MAX elements, with none present.
        let payload = [5, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_payload::<FreeValue>(&payload).is_err());
        let strings = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_payload::<Vec<String>>(&strings).is_err());
    }

    #[test]
    fn stream_decoder_handles_byte_at_a_time_input() {
        let mut stream = Vec::new();
        for n in 0..5u32 {
            encode_into(FrameKind::LOG_ENTRY, &n, &mut stream).unwrap();
        }
        let mut decoder = FrameDecoder::new(1024);
        let mut seen = Vec::new();
        for byte in &stream {
            decoder.push(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                seen.push(frame.decode::<u32>(FrameKind::LOG_ENTRY).unwrap());
            }
        }
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert_eq!(decoder.pending_len_bytes(), 0);
    }

    #[test]
    fn stream_decoder_stays_failed_after_an_error() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(b"GET / HTTP/1.1\r\n");
        assert!(matches!(decoder.next_frame(), Err(CodecError::BadMagic { .. })));
        decoder.push(&encode(FrameKind::RPC, &1u8).unwrap());
        assert!(matches!(decoder.next_frame(), Err(CodecError::BadMagic { .. })));
    }
}
