//! `#[serde(with = "crate::codec::bytes")]` for a `Vec<u8>` that holds opaque bytes (a log
//! entry's command, a snapshot chunk).
//!
//! serde writes a plain `Vec<u8>` as a sequence, one element at a time; postcard lays a
//! sequence of bytes out exactly as a byte string (a varint length, then the bytes), so
//! writing and reading it as a byte string keeps the wire format and turns a loop over
//! every byte into one copy.

use serde::de::{SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_byte_buf(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    /// Formats that write bytes as a sequence (JSON) read back through here.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSequence(Vec<u8>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes(#[serde(with = "super")] Vec<u8>);

    /// The byte-string form is the sequence form on postcard's wire, both ways, so logs
    /// and snapshots written before it read the same.
    #[test]
    fn bytes_keep_postcard_wire_format() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let sequence = postcard::to_allocvec(&AsSequence(bytes.clone())).expect("encode");
            let string = postcard::to_allocvec(&AsBytes(bytes.clone())).expect("encode");
            assert_eq!(sequence, string, "len {len}");
            let read: AsBytes = postcard::from_bytes(&sequence).expect("decode");
            assert_eq!(read.0, bytes, "len {len}");
            let json = serde_json::to_string(&AsBytes(bytes.clone())).expect("json");
            let back: AsBytes = serde_json::from_str(&json).expect("json back");
            assert_eq!(back.0, bytes, "len {len}");
        }
    }
}
