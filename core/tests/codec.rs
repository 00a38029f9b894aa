//! Property and corpus tests for the binary codec.
//!
//! - Generated jobs, allocations, evaluations, nodes and plans, and every JSON fixture,
//!   survive encode → decode unchanged.
//! - Arbitrary bytes, as a frame or as a bare payload, decode to a value or an error and
//!   never panic.
//! - A truncated frame asks for more bytes (stream) or is `Truncated` (buffer); a frame with
//!   any single bit flipped is rejected.
//! - The stream decoder yields the same frames however the bytes are split.

mod model_strategies;

use drover_core::codec::{
    self, CodecError, FrameDecoder, FrameKind, HEADER_LEN_BYTES, Peek, peek_frame,
};
use drover_core::model::{Allocation, Deployment, Evaluation, Job, Node, Plan, job_from_json_str};
use model_strategies::{allocation, check, evaluation, job, node, plan};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::Path;

const FRAME_LEN_MAX_BYTES: usize = 1 << 20;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(kind: FrameKind, value: &T) {
    let bytes = codec::encode(kind, value).expect("encodes");
    let back: T = codec::decode(kind, &bytes, FRAME_LEN_MAX_BYTES).expect("decodes");
    assert_eq!(&back, value);
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// A frame around `payload` with a correct checksum, built by hand so that arbitrary
/// payloads reach the payload decoder.
fn frame_around(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![b'D', b'R', codec::FORMAT_VERSION, kind.0];
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[2..8]), payload);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Decodes `bytes` as every frame type the servers exchange; only the absence of a panic
/// matters.
fn decode_as_everything(bytes: &[u8]) {
    let _ = codec::decode::<Job>(FrameKind::JOB, bytes, FRAME_LEN_MAX_BYTES);
    let _ = codec::decode::<Allocation>(FrameKind::ALLOCATION, bytes, FRAME_LEN_MAX_BYTES);
    let _ = codec::decode::<Evaluation>(FrameKind::EVALUATION, bytes, FRAME_LEN_MAX_BYTES);
    let _ = codec::decode::<Plan>(FrameKind::PLAN, bytes, FRAME_LEN_MAX_BYTES);
    let _ = codec::decode_payload::<Job>(bytes);
    let _ = codec::decode_payload::<Allocation>(bytes);
    let _ = codec::decode_payload::<Evaluation>(bytes);
    let _ = codec::decode_payload::<Node>(bytes);
    let _ = codec::decode_payload::<Plan>(bytes);
    let _ = codec::decode_payload::<Deployment>(bytes);
}

#[test]
fn jobs_round_trip() {
    check(48, job, |job| {
        round_trip(FrameKind::JOB, &job);
        Ok(())
    });
}

#[test]
fn allocations_round_trip() {
    check(48, allocation, |alloc| {
        round_trip(FrameKind::ALLOCATION, &alloc);
        Ok(())
    });
}

#[test]
fn evaluations_round_trip() {
    check(64, evaluation, |eval| {
        round_trip(FrameKind::EVALUATION, &eval);
        Ok(())
    });
}

#[test]
fn nodes_round_trip() {
    check(64, node, |node| {
        round_trip(FrameKind::NODE, &node);
        Ok(())
    });
}

#[test]
fn plans_round_trip() {
    check(24, plan, |plan| {
        round_trip(FrameKind::PLAN, &plan);
        Ok(())
    });
}

fn job_and_index() -> impl Strategy<Value = (Job, prop::sample::Index)> {
    (job(), any::<prop::sample::Index>())
}

#[test]
fn truncated_frames_need_more_bytes() {
    check(48, job_and_index, |(job, cut)| {
        let bytes = codec::encode(FrameKind::JOB, &job).unwrap();
        let cut = cut.index(bytes.len());
        let short = &bytes[..cut];
        match peek_frame(short, FRAME_LEN_MAX_BYTES) {
            // Before the header is complete the reader can only ask for the rest of it.
            Ok(Peek::NeedMore { bytes_missing }) => {
                let known = if cut < HEADER_LEN_BYTES { HEADER_LEN_BYTES } else { bytes.len() };
                prop_assert_eq!(bytes_missing, known - cut);
            }
            other => prop_assert!(false, "cut at {}: {:?}", cut, other),
        }
        let error = codec::decode::<Job>(FrameKind::JOB, short, FRAME_LEN_MAX_BYTES).unwrap_err();
        let truncated = matches!(error, CodecError::Truncated { .. });
        prop_assert!(truncated, "{}", error);
        Ok(())
    });
}

fn eval_and_index() -> impl Strategy<Value = (Evaluation, prop::sample::Index)> {
    (evaluation(), any::<prop::sample::Index>())
}

#[test]
fn any_single_bit_flip_is_rejected() {
    check(256, eval_and_index, |(eval, bit)| {
        let mut bytes = codec::encode(FrameKind::EVALUATION, &eval).unwrap();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let result =
            codec::decode::<Evaluation>(FrameKind::EVALUATION, &bytes, FRAME_LEN_MAX_BYTES);
        prop_assert!(result.is_err(), "flipping bit {} went unnoticed", bit);
        Ok(())
    });
}

fn evals_and_cuts() -> impl Strategy<Value = (Vec<Evaluation>, Vec<prop::sample::Index>)> {
    (
        prop::collection::vec(evaluation(), 1..4),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    )
}

#[test]
fn stream_splits_do_not_matter() {
    check(64, evals_and_cuts, |(evals, cuts)| {
        let mut stream = Vec::new();
        for eval in &evals {
            codec::encode_into(FrameKind::EVALUATION, eval, &mut stream).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len())).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut decoder = FrameDecoder::new(FRAME_LEN_MAX_BYTES);
        let mut decoded = Vec::new();
        let mut start = 0;
        for cut in cuts {
            decoder.push(&stream[start..cut]);
            start = cut;
            while let Some(frame) = decoder.next_frame().unwrap() {
                decoded.push(frame.decode::<Evaluation>(FrameKind::EVALUATION).unwrap());
            }
        }
        prop_assert_eq!(decoded, evals);
        prop_assert_eq!(decoder.pending_len_bytes(), 0);
        Ok(())
    });
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_as_everything(&bytes);
        let mut decoder = FrameDecoder::new(FRAME_LEN_MAX_BYTES);
        decoder.push(&bytes);
        let _ = decoder.next_frame();
    }

    #[test]
    fn arbitrary_payloads_in_valid_frames_never_panic(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        for kind in [FrameKind::JOB, FrameKind::ALLOCATION, FrameKind::EVALUATION, FrameKind::PLAN] {
            decode_as_everything(&frame_around(kind, &payload));
        }
    }
}

fn alloc_and_edits() -> impl Strategy<Value = (Allocation, Vec<(prop::sample::Index, u8)>)> {
    (allocation(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6))
}

/// Mutating a valid encoding (rather than random bytes) reaches deep into the decoder.
#[test]
fn mutated_encodings_never_panic() {
    check(256, alloc_and_edits, |(alloc, edits)| {
        let encoded = codec::encode(FrameKind::ALLOCATION, &alloc).unwrap();
        let mut payload = encoded[HEADER_LEN_BYTES..].to_vec();
        for (at, byte) in edits {
            let at = at.index(payload.len());
            payload[at] = byte;
        }
        decode_as_everything(&payload);
        decode_as_everything(&frame_around(FrameKind::ALLOCATION, &payload));
        Ok(())
    });
}

#[test]
fn frames_over_the_limit_are_refused_from_the_header() {
    let bytes = codec::encode(FrameKind::JOB, &Job::default()).unwrap();
    let limit = bytes.len() - 1;
    let error =
        codec::decode::<Job>(FrameKind::JOB, &bytes[..HEADER_LEN_BYTES], limit).unwrap_err();
    assert_eq!(
        error,
        CodecError::FrameTooLarge {
            frame_len_bytes: bytes.len() as u64,
            frame_len_max_bytes: limit
        }
    );
}

#[test]
fn wrong_versions_name_both_versions() {
    let mut bytes = codec::encode(FrameKind::JOB, &Job::default()).unwrap();
    bytes[2] = 1;
    let error = codec::decode::<Job>(FrameKind::JOB, &bytes, FRAME_LEN_MAX_BYTES).unwrap_err();
    assert_eq!(error, CodecError::UnsupportedVersion { found: 1, supported: 2 });
    let mut decoder = FrameDecoder::new(FRAME_LEN_MAX_BYTES);
    decoder.push(&bytes[..3]);
    assert_eq!(decoder.next_frame(), Err(error), "refused as soon as the version byte arrives");
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = codec::encode(FrameKind::JOB, &Job::default()).unwrap();
    bytes.push(0);
    let error = codec::decode::<Job>(FrameKind::JOB, &bytes, FRAME_LEN_MAX_BYTES).unwrap_err();
    assert_eq!(error, CodecError::TrailingBytes { extra_bytes: 1 });
}

/// Every JSON fixture, decoded, survives the binary codec too.
#[test]
fn fixtures_round_trip_through_the_codec() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        match name.split('-').next().unwrap() {
            "job" => round_trip(FrameKind::JOB, &job_from_json_str(&text).unwrap()),
            "node" => round_trip(FrameKind::NODE, &api_object::<Node>(&text)),
            "alloc" => round_trip(FrameKind::ALLOCATION, &api_object::<Allocation>(&text)),
            "eval" => round_trip(FrameKind::EVALUATION, &api_object::<Evaluation>(&text)),
            "deployment" => round_trip(FrameKind::DEPLOYMENT, &api_object::<Deployment>(&text)),
            other => panic!("fixture {name}: unknown kind {other:?}"),
        }
        count += 1;
    }
    assert!(count >= 15, "only {count} fixtures");
}

fn api_object<T: DeserializeOwned>(text: &str) -> T {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
    strip(&mut value);
    serde_json::from_value(value).unwrap()
}

/// The encoding is compact: the example job is a few hundred bytes, not kilobytes.
#[test]
fn the_example_job_encodes_compactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json");
    let text = std::fs::read_to_string(dir.join("job-example-short.json")).unwrap();
    let job = job_from_json_str(&text).unwrap();
    let bytes = codec::encode(FrameKind::JOB, &job).unwrap();
    let json = serde_json::to_vec(&job).unwrap();
    assert!(bytes.len() * 4 < json.len(), "{} binary vs {} JSON bytes", bytes.len(), json.len());
}
