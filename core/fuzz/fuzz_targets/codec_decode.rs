//! Fuzz target: the binary codec must answer every byte string with a value or an error,
//! never a panic, an abort or an unbounded allocation.
//!
//! The first input byte chooses a mode and a type. Modes: decode the rest as a bare
//! payload (so mutations reach postcard without having to forge a checksum), as a whole
//! frame, inside a frame with a correct checksum, or as a byte stream cut at a
//! fuzzer-chosen point. Whatever decodes must re-encode stably.

#![no_main]

use drover_core::codec::{self, FrameDecoder, FrameKind};
use drover_core::model::{Allocation, Deployment, Evaluation, Job, Node, Plan, PlanResult};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Small enough that the "too large" path is reached, large enough for real values.
const FRAME_LEN_MAX_BYTES: usize = 1 << 20;

#[derive(Clone, Copy)]
enum Mode {
    Payload,
    Frame,
    ValidFrame,
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let mode = match selector & 0b11 {
        0 => Mode::Payload,
        1 => Mode::Frame,
        2 => Mode::ValidFrame,
        _ => return stream(rest, usize::from(selector >> 2)),
    };
    match (selector >> 2) % 7 {
        0 => check::<Job>(mode, FrameKind::JOB, rest),
        1 => check::<Allocation>(mode, FrameKind::ALLOCATION, rest),
        2 => check::<Evaluation>(mode, FrameKind::EVALUATION, rest),
        3 => check::<Node>(mode, FrameKind::NODE, rest),
        4 => check::<Deployment>(mode, FrameKind::DEPLOYMENT, rest),
        5 => check::<Plan>(mode, FrameKind::PLAN, rest),
        _ => check::<PlanResult>(mode, FrameKind::PLAN_RESULT, rest),
    }
});

fn check<T: Serialize + DeserializeOwned>(mode: Mode, kind: FrameKind, bytes: &[u8]) {
    let decoded: Option<T> = match mode {
        Mode::Payload => codec::decode_payload(bytes).ok(),
        Mode::Frame => codec::decode(kind, bytes, FRAME_LEN_MAX_BYTES).ok(),
        Mode::ValidFrame => {
            codec::decode(kind, &frame_around(kind, bytes), FRAME_LEN_MAX_BYTES).ok()
        }
    };
    if let Some(value) = decoded {
        assert_stable(&value);
    }
}

/// encode → decode → encode gives the same bytes (compared as bytes, so NaN floats are
/// fine where `PartialEq` would not be).
fn assert_stable<T: Serialize + DeserializeOwned>(value: &T) {
    let first = codec::encode(FrameKind::RPC, value).expect("a decoded value encodes");
    let again: T = codec::decode(FrameKind::RPC, &first, usize::MAX).expect("own encoding decodes");
    let second = codec::encode(FrameKind::RPC, &again).expect("encodes again");
    assert_eq!(first, second, "re-encoding changed the bytes");
}

/// A frame with a correct checksum around arbitrary payload bytes.
fn frame_around(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![b'D', b'R', codec::FORMAT_VERSION, kind.0];
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[2..8]), payload);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The stream reader, fed in two parts split at `cut`.
fn stream(bytes: &[u8], cut: usize) {
    let cut = cut.min(bytes.len());
    let mut decoder = FrameDecoder::new(FRAME_LEN_MAX_BYTES);
    for part in [&bytes[..cut], &bytes[cut..]] {
        decoder.push(part);
        while let Ok(Some(frame)) = decoder.next_frame() {
            let _ = frame.decode::<Evaluation>(FrameKind::EVALUATION);
            let _ = frame.decode::<Job>(FrameKind::JOB);
        }
    }
}
