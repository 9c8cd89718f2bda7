//! crypto: sealing and opening gossip datagrams.
//!
//! Every datagram a keyed node sends is `[1][24-byte random nonce][XChaCha20-Poly1305
//! ciphertext and tag]`, authenticated together with the cluster id (associated data), so a
//! datagram of another cluster or under another key fails to open and is dropped before
//! anything parses it. XChaCha's 24-byte nonce makes random nonces safe for any number of
//! datagrams under one key. Several keys may be accepted (rotation); the first one seals.
//!
//! Without a key (`--insecure-gossip`, or loopback only) datagrams are `[0][plaintext]`. A
//! keyed node never accepts those, and an unkeyed node never accepts sealed ones.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Length of a cluster key, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to its plaintext.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
const SEALED: u8 = 1;
const PLAIN: u8 = 0;
/// Prefix of the associated data, so a key used elsewhere cannot authenticate our datagrams.
const AAD_PREFIX: &[u8] = b"joyride-gossip-v1\0";

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not valid base64")]
    Base64,
    #[error(
        "decodes to {0} bytes; a cluster key is 32 random bytes (make one with `joyride keygen`)"
    )]
    Length(usize),
}

/// Why a datagram was dropped unread.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("datagram is not authenticated by any of our keys")]
    Unauthenticated,
    #[error("plaintext datagram, but this cluster requires a key")]
    Unexpected,
    #[error("sealed datagram, but this node has no key")]
    NoKey,
    #[error("empty or truncated datagram")]
    Truncated,
}

/// A cluster key.
#[derive(Clone)]
pub struct ClusterKey([u8; KEY_LEN]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl PartialEq for ClusterKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl ClusterKey {
    /// Parses the base64 form (standard alphabet, padding optional).
    pub fn parse(text: &str) -> Result<ClusterKey, KeyError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| KeyError::Base64)?;
        let arr: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(ClusterKey(arr))
    }

    /// A new random key.
    pub fn generate() -> ClusterKey {
        let mut k = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        ClusterKey(k)
    }

    /// The base64 form, as `joyride keygen` prints it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

/// The keys of a node, or none. Built once; sealing and opening take `&self`.
pub struct Keyring {
    /// The first key seals; every key opens.
    ciphers: Vec<XChaCha20Poly1305>,
    aad: Vec<u8>,
}

impl Keyring {
    /// `keys` empty means no encryption (insecure mode).
    pub fn new(keys: &[ClusterKey], cluster_id: &str) -> Keyring {
        let mut aad = AAD_PREFIX.to_vec();
        aad.extend_from_slice(cluster_id.as_bytes());
        Keyring {
            ciphers: keys
                .iter()
                .map(|k| XChaCha20Poly1305::new(Key::from_slice(&k.0)))
                .collect(),
            aad,
        }
    }

    pub fn is_keyed(&self) -> bool {
        !self.ciphers.is_empty()
    }

    /// The datagram carrying `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let Some(cipher) = self.ciphers.first() else {
            let mut out = Vec::with_capacity(1 + plaintext.len());
            out.push(PLAIN);
            out.extend_from_slice(plaintext);
            return out;
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &self.aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for datagram sizes");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a datagram, if one of our keys authenticates it.
    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (&kind, rest) = datagram.split_first().ok_or(OpenError::Truncated)?;
        match (kind, self.is_keyed()) {
            (PLAIN, false) => Ok(rest.to_vec()),
            (PLAIN, true) => Err(OpenError::Unexpected),
            (SEALED, false) => Err(OpenError::NoKey),
            (SEALED, true) => {
                if rest.len() < NONCE_LEN + TAG_LEN {
                    return Err(OpenError::Truncated);
                }
                let (nonce, ct) = rest.split_at(NONCE_LEN);
                self.ciphers
                    .iter()
                    .find_map(|c| {
                        c.decrypt(
                            XNonce::from_slice(nonce),
                            Payload {
                                msg: ct,
                                aad: &self.aad,
                            },
                        )
                        .ok()
                    })
                    .ok_or(OpenError::Unauthenticated)
            }
            _ => Err(OpenError::Unauthenticated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parse_round_trip_and_errors() {
        let k = ClusterKey::generate();
        assert_eq!(ClusterKey::parse(&k.to_base64()).unwrap(), k);
        assert_eq!(ClusterKey::parse("!!"), Err(KeyError::Base64));
        assert_eq!(ClusterKey::parse("c2hvcnQ="), Err(KeyError::Length(5)));
    }

    #[test]
    fn seal_open_with_rotation_and_rejections() {
        let (a, b, c) = (
            ClusterKey::generate(),
            ClusterKey::generate(),
            ClusterKey::generate(),
        );
        let old = Keyring::new(std::slice::from_ref(&a), "prod");
        let rotating = Keyring::new(&[b.clone(), a.clone()], "prod");
        let other = Keyring::new(&[c], "prod");
        let other_cluster = Keyring::new(std::slice::from_ref(&a), "staging");
        let plain = Keyring::new(&[], "prod");

        let d = old.seal(b"hello");
        assert_eq!(d.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(rotating.open(&d).unwrap(), b"hello", "second key opens");
        assert_eq!(
            old.open(&rotating.seal(b"x")),
            Err(OpenError::Unauthenticated)
        );
        assert_eq!(other.open(&d), Err(OpenError::Unauthenticated));
        assert_eq!(other_cluster.open(&d), Err(OpenError::Unauthenticated));
        assert_eq!(plain.open(&d), Err(OpenError::NoKey));
        assert_eq!(old.open(&plain.seal(b"x")), Err(OpenError::Unexpected));
        assert_eq!(plain.open(&plain.seal(b"x")).unwrap(), b"x");
        assert_eq!(old.open(&[]), Err(OpenError::Truncated));
        assert_eq!(old.open(&[1, 2, 3]), Err(OpenError::Truncated));

        // Nonces are fresh: the same plaintext never seals to the same bytes.
        assert_ne!(old.seal(b"same"), old.seal(b"same"));
        // Any flipped bit is caught.
        let mut t = old.seal(b"payload");
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(old.open(&t), Err(OpenError::Unauthenticated));
    }
}
