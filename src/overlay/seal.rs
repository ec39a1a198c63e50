//! Every control-plane datagram is sealed with the cluster's pre-shared key: ChaCha20-Poly1305 with a
//! fresh random 96-bit nonce per message, carried in front of the ciphertext. 96 random bits keep the
//! chance of a nonce repeat negligible at control-plane rates (RFC 8439 §4 forbids reuse under one key).
//! Layout: `MAGIC | nonce (12) | ciphertext | tag (16)`, with the magic as associated data.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::Rng;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Protocol name and version; a datagram of another protocol or version is refused before decryption.
const MAGIC: &[u8; 4] = b"TTO1";

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("too short to be a sealed overlay message")]
    Short,
    #[error("not an overlay control-plane message of this version")]
    Magic,
    #[error("authentication failed: sealed with another key, or altered on the way")]
    Auth,
}

pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    pub fn new(key: &[u8; KEY_LEN]) -> Sealer {
        Sealer {
            cipher: ChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: MAGIC,
                },
            )
            .expect("encrypting a datagram-sized buffer cannot fail");
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, SealError> {
        if datagram.len() < MAGIC.len() + NONCE_LEN + TAG_LEN {
            return Err(SealError::Short);
        }
        let (magic, rest) = datagram.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(SealError::Magic);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| SealError::Short)?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: MAGIC,
                },
            )
            .map_err(|_| SealError::Auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_only_with_the_same_key_and_unaltered() {
        let a = Sealer::new(&[7; KEY_LEN]);
        let b = Sealer::new(&[8; KEY_LEN]);
        let sealed = a.seal(b"hello peers");
        assert_eq!(a.open(&sealed).unwrap(), b"hello peers");
        assert_eq!(b.open(&sealed), Err(SealError::Auth));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(a.open(&altered), Err(SealError::Auth));
        assert_eq!(a.open(b"TTO1short"), Err(SealError::Short));
        let mut other = sealed.clone();
        other[0] = b'X';
        assert_eq!(a.open(&other), Err(SealError::Magic));
        assert_ne!(
            a.seal(b"x")[4..16],
            a.seal(b"x")[4..16],
            "a fresh nonce per message"
        );
    }
}
