//! Deterministic identifiers: UUID-shaped strings drawn from a seeded ChaCha8 stream.
//!
//! Core never asks the OS for randomness, so every ID (allocations, follow-up evals,
//! deployments) comes from an [`IdGen`] whose seed is part of its caller's inputs. The
//! same seed gives the same IDs, which is what makes a scheduling pass replayable.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// A seeded source of UUID-shaped IDs (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
#[derive(Clone, Debug)]
pub struct IdGen {
    rng: ChaCha8Rng,
}

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// The next ID: 128 random bits shaped as a version-4, variant-1 UUID.
    pub fn next_id(&mut self) -> String {
        let high = self.rng.next_u64();
        let low = self.rng.next_u64();
        uuid_text(high, low)
    }

    /// A raw 64-bit draw from the same stream (for shuffles and tie-breaks).
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// Formats 128 bits as a UUID, forcing the version (4) and variant (10xx) nibbles.
fn uuid_text(high: u64, low: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let high = (high & !0xf000) | 0x4000;
    let low = (low & !(0xc << 60)) | (0x8 << 60);
    let bits = (u128::from(high) << 64) | u128::from(low);
    let mut out = String::with_capacity(36);
    for nibble in 0..32 {
        if matches!(nibble, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        let value = (bits >> (124 - 4 * nibble)) & 0xf;
        out.push(char::from(HEX[value as usize]));
    }
    out
}

/// A seed derived from an evaluation ID and a state index, Nomad's recipe for node
/// shuffles ("to aid in postmortem debugging"): FNV-1a of the ID, xor the index.
pub fn seed_from(eval_id: &str, state_index: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in eval_id.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^ state_index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_seeded() {
        let mut first = IdGen::new(7);
        let mut again = IdGen::new(7);
        let id = first.next_id();
        assert_eq!(id, again.next_id());
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, first.next_id());
        assert_ne!(IdGen::new(8).next_id(), id);
    }

    #[test]
    fn seeds_depend_on_id_and_index() {
        assert_ne!(seed_from("a", 1), seed_from("a", 2));
        assert_ne!(seed_from("a", 1), seed_from("b", 1));
    }
}
