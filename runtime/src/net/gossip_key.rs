//! Gossip encryption: Nomad's `server { encrypt = "<base64 key>" }`.
//!
//! Gossip is UDP and, unlike Raft and RPC, carries no TLS; without a key anyone who can
//! reach the serf port can announce a server. With a key every datagram is sealed with
//! AES-GCM (the key's length picks AES-128 or AES-256) under a fresh random nonce, and a
//! datagram that does not open with the key (another key, no key, altered on the way) is
//! dropped unread, so only servers holding the key see each other.
//!
//! A sealed datagram is `version (1 byte) | nonce (12 bytes) | ciphertext | tag (16 bytes)`;
//! the version byte is authenticated too. foca's datagrams are at most 1,400 bytes, so a
//! sealed one (29 bytes more) still fits a 1,500-byte Ethernet frame.

use base64::Engine as _;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// The first byte of every sealed datagram.
const SEALED_VERSION: u8 = 1;
/// What sealing adds to a datagram: the version byte, the nonce and the tag.
pub const SEALED_OVERHEAD_BYTES: usize = 1 + NONCE_LEN + 16;
/// The key length `drover operator gossip keyring generate` makes (AES-256).
pub const GENERATED_KEY_LEN_BYTES: usize = 32;

/// A region's gossip key, ready to seal and open datagrams.
pub struct GossipKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key itself.
        f.write_str("GossipKey(..)")
    }
}

impl GossipKey {
    /// A key from its base64 form (standard alphabet, padded), 16 or 32 bytes long.
    pub fn from_base64(text: &str) -> Result<GossipKey, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|error| format!("the gossip key is not valid base64: {error}"))?;
        let algorithm = match bytes.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            24 => return Err("the gossip key is 24 bytes; use 16 or 32 (AES-128 or AES-256), e.g. one made by `drover operator gossip keyring generate`".to_owned()),
            len => {
                return Err(format!(
                    "the gossip key is {len} bytes; it must be 16 or 32 (AES-128 or AES-256), e.g. one made by `drover operator gossip keyring generate`"
                ));
            }
        };
        let unbound = UnboundKey::new(algorithm, &bytes)
            .map_err(|_| "the gossip key cannot be used for AES-GCM".to_owned())?;
        Ok(GossipKey { key: LessSafeKey::new(unbound), random: SystemRandom::new() })
    }

    /// `plain` sealed under a fresh nonce.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| "no randomness for a gossip nonce".to_owned())?;
        let mut sealed = Vec::with_capacity(plain.len() + SEALED_OVERHEAD_BYTES);
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([SEALED_VERSION]),
                &mut body,
            )
            .map_err(|_| "a gossip datagram could not be sealed".to_owned())?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The plain datagram inside `sealed`, or `None` when it was not sealed with this key
    /// (or was altered).
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from([SEALED_VERSION]), &mut body).ok()?;
        let len = plain.len();
        body.truncate(len);
        Some(body)
    }
}

/// A new random AES-256 gossip key in its base64 form.
pub fn generate_key() -> Result<String, String> {
    let mut key = [0u8; GENERATED_KEY_LEN_BYTES];
    SystemRandom::new().fill(&mut key).map_err(|_| "no randomness for a gossip key".to_owned())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> GossipKey {
        GossipKey::from_base64(text).expect("a valid key")
    }

    const KEY_256: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_128: &str = "AAECAwQFBgcICQoLDA0ODw==";

    #[test]
    fn a_sealed_datagram_opens_with_its_key_only() {
        for text in [KEY_256, KEY_128] {
            let sealed = key(text).seal(b"alive r1s1").expect("sealed");
            assert_eq!(sealed.len(), b"alive r1s1".len() + SEALED_OVERHEAD_BYTES);
            assert_eq!(key(text).open(&sealed).as_deref(), Some(&b"alive r1s1"[..]));
        }
        let sealed = key(KEY_256).seal(b"alive").expect("sealed");
        let other = key(&generate_key().expect("a key"));
        assert_eq!(other.open(&sealed), None);
    }

    #[test]
    fn altered_plain_or_truncated_datagrams_are_refused() {
        let key = key(KEY_256);
        let sealed = key.seal(b"suspect r1s2").expect("sealed");
        for at in [0, 1, NONCE_LEN + 1, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[at] ^= 0x01;
            assert_eq!(key.open(&altered), None, "byte {at} flipped");
        }
        for len in [0, 1, NONCE_LEN, SEALED_OVERHEAD_BYTES - 1] {
            assert_eq!(key.open(&sealed[..len]), None, "cut to {len} bytes");
        }
        assert_eq!(key.open(b"plain foca datagram, never sealed"), None);
    }

    #[test]
    fn the_same_datagram_seals_differently_each_time() {
        let key = key(KEY_256);
        assert_ne!(key.seal(b"x").expect("sealed"), key.seal(b"x").expect("sealed"));
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let error = |text: &str| GossipKey::from_base64(text).expect_err(text);
        assert!(error("not base64!").starts_with("the gossip key is not valid base64"));
        assert!(error("AAECAwQFBgcICQoLDA0ODxAREhMUFRYX").contains("24 bytes"));
        assert!(error("AAEC").contains("3 bytes; it must be 16 or 32"));
        assert_eq!(format!("{:?}", key(KEY_128)), "GossipKey(..)");
    }

    #[test]
    fn generated_keys_are_32_bytes_and_differ() {
        let (a, b) = (generate_key().expect("a key"), generate_key().expect("a key"));
        assert_ne!(a, b);
        let bytes = base64::engine::general_purpose::STANDARD.decode(&a).expect("base64");
        assert_eq!(bytes.len(), GENERATED_KEY_LEN_BYTES);
        GossipKey::from_base64(&a).expect("a generated key is valid");
    }
}
