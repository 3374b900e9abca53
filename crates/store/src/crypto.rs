//! Tenant data encryption: XChaCha20-Poly1305 with a random key per object, wrapped by the
//! tenant's key, so providers only ever hold ciphertext.
//!
//! A tenant's [`DataKey`] (derived from its seed) is the root of the keys that wrap each
//! object's random [`ObjectKey`]: new objects' keys are wrapped under the key of their
//! bucket, derived from the data key (see `keyring`); objects written before that under the
//! data key itself.
//! Chunks are sealed with the object key under the nonce `prefix || chunk index`, where the
//! 16-byte prefix is random per object; the index in the nonce makes swapping or reordering
//! chunks of one object fail authentication.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The Poly1305 tag appended to every sealed chunk.
pub const TAG_LEN: usize = 16;

/// blake3 key-derivation context; changing it changes every tenant's key.
const DATA_KEY_CONTEXT: &str = "xnode 2026-11 tenant data key v1";

/// A tenant's key-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(pub [u8; 32]);

impl DataKey {
    /// Derives the data key from a tenant's 32-byte secret seed. Domain separation keeps it
    /// unrelated to the signing key made from the same seed.
    pub fn derive(tenant_seed: &[u8; 32]) -> Self {
        Self(blake3::derive_key(DATA_KEY_CONTEXT, tenant_seed))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, StoreError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|e| {
            // Never echo the input: it is meant to be a secret.
            StoreError::Crypto(format!(
                "data key must be 64 hex digits ({} characters given): {e}",
                s.len()
            ))
        })?;
        Ok(Self(out))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The random key one object's chunks are sealed with.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectKey([u8; 32]);

impl ObjectKey {
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// The key's bytes, for deriving the keys that belong to the object (its manifest's
    /// MAC key). Never logged nor sent.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectKey(<redacted>)")
    }
}

/// An object key encrypted under a tenant's [`DataKey`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}

/// Encrypts `key` under `kek`. `aad` binds the wrapped key to its context (for example the
/// object's path), so it cannot be lifted into another object's manifest.
pub fn wrap_key(kek: &DataKey, key: &ObjectKey, aad: &[u8]) -> Result<WrappedKey, StoreError> {
    wrap_with(&kek.0, key, aad)
}

/// Decrypts a wrapped object key. Fails with [`StoreError::Crypto`] for the wrong key, the
/// wrong `aad` or tampered bytes.
pub fn unwrap_key(
    kek: &DataKey,
    wrapped: &WrappedKey,
    aad: &[u8],
) -> Result<ObjectKey, StoreError> {
    unwrap_with(&kek.0, wrapped, aad)
}

/// Encrypts `key` under the key-encryption key `kek` (a data key or a bucket key).
pub(crate) fn wrap_with(
    kek: &[u8; 32],
    key: &ObjectKey,
    aad: &[u8],
) -> Result<WrappedKey, StoreError> {
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new(Key::from_slice(kek))
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &key.0, aad })
        .map_err(|_| StoreError::Crypto("cannot wrap object key".into()))?;
    Ok(WrappedKey { nonce, ciphertext })
}

/// Decrypts an object key wrapped under `kek`.
pub(crate) fn unwrap_with(
    kek: &[u8; 32],
    wrapped: &WrappedKey,
    aad: &[u8],
) -> Result<ObjectKey, StoreError> {
    let plain = XChaCha20Poly1305::new(Key::from_slice(kek))
        .decrypt(
            XNonce::from_slice(&wrapped.nonce),
            Payload {
                msg: &wrapped.ciphertext,
                aad,
            },
        )
        .map_err(|_| {
            StoreError::Crypto("cannot unwrap object key (wrong data key or context)".into())
        })?;
    let key: [u8; 32] = plain.try_into().map_err(|v: Vec<u8>| {
        StoreError::Crypto(format!("wrapped key holds {} bytes, not 32", v.len()))
    })?;
    Ok(ObjectKey(key))
}

/// Encrypts chunk number `index` of an object. Returns ciphertext followed by the tag
/// ([`TAG_LEN`] bytes longer than `plaintext`).
pub fn seal_chunk(
    key: &ObjectKey,
    nonce_prefix: &[u8; 16],
    index: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let (cipher, nonce) = chunk_cipher(key, nonce_prefix, index)?;
    let mut sealed = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
    sealed.extend_from_slice(plaintext);
    cipher
        .seal_in_place_append_tag(nonce, ring::aead::Aad::empty(), &mut sealed)
        .map_err(|_| StoreError::Crypto(format!("cannot seal chunk {index}")))?;
    Ok(sealed)
}

/// Decrypts chunk number `index` of an object; fails if the key, the index or any byte is
/// wrong.
pub fn open_chunk(
    key: &ObjectKey,
    nonce_prefix: &[u8; 16],
    index: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, StoreError> {
    if sealed.len() < TAG_LEN {
        return Err(StoreError::Crypto(format!(
            "sealed chunk {index} is {} bytes, shorter than its tag",
            sealed.len()
        )));
    }
    let (cipher, nonce) = chunk_cipher(key, nonce_prefix, index)?;
    let mut plain = sealed.to_vec();
    let len = cipher
        .open_in_place(nonce, ring::aead::Aad::empty(), &mut plain)
        .map_err(|_| {
            StoreError::Crypto(format!(
                "chunk {index} failed authentication (wrong key, wrong position or tampered)"
            ))
        })?
        .len();
    plain.truncate(len);
    Ok(plain)
}

/// The cipher and nonce of one chunk: XChaCha20-Poly1305 under the nonce
/// `prefix || index`, computed as the construction defines it (HChaCha20 of the key and
/// the nonce's first 16 bytes gives a subkey; ChaCha20-Poly1305 under that subkey seals
/// with the nonce's last 8 bytes behind 4 zero bytes). The bytes are those of the
/// `chacha20poly1305` crate's `XChaCha20Poly1305` (a test checks it); `ring`'s
/// assembly does it about 1.7 times as fast on this project's machines.
fn chunk_cipher(
    key: &ObjectKey,
    nonce_prefix: &[u8; 16],
    index: u64,
) -> Result<(ring::aead::LessSafeKey, ring::aead::Nonce), StoreError> {
    let subkey = chacha20::hchacha::<chacha20::cipher::consts::U10>(
        Key::from_slice(&key.0),
        nonce_prefix.into(),
    );
    let unbound = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, subkey.as_slice())
        .map_err(|_| StoreError::Crypto("cannot make a chunk key".into()))?;
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&index.to_le_bytes());
    // Unique per chunk: the prefix is random per object and the index differs per chunk.
    Ok((
        ring::aead::LessSafeKey::new(unbound),
        ring::aead::Nonce::assume_unique_for_key(nonce),
    ))
}

/// A fresh random nonce prefix for a new object.
pub fn random_nonce_prefix() -> [u8; 16] {
    let mut prefix = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut prefix);
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nonce a chunk is sealed under, as the reference implementation takes it.
    fn chunk_nonce(prefix: &[u8; 16], index: u64) -> XNonce {
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(prefix);
        nonce[16..].copy_from_slice(&index.to_le_bytes());
        XNonce::from(nonce)
    }

    #[test]
    fn data_key_is_derived_deterministically_and_hex_round_trips() {
        let a = DataKey::derive(&[1u8; 32]);
        assert_eq!(a, DataKey::derive(&[1u8; 32]));
        assert_ne!(a, DataKey::derive(&[2u8; 32]));
        assert_ne!(a.0, [1u8; 32]);
        assert_eq!(DataKey::from_hex(&a.to_hex()).unwrap(), a);
        assert!(DataKey::from_hex("00").is_err());
        assert!(!format!("{a:?}").contains(&a.to_hex()[..8]));
        assert_eq!(
            format!("{:?}", ObjectKey::generate()),
            "ObjectKey(<redacted>)"
        );
        let bad = DataKey::from_hex("secretsecret").unwrap_err().to_string();
        assert!(!bad.contains("secret"), "{bad}");
    }

    #[test]
    fn chunk_round_trip_and_failures() {
        let key = ObjectKey::generate();
        let prefix = random_nonce_prefix();
        let plain = b"hello, encrypted world".to_vec();
        let sealed = seal_chunk(&key, &prefix, 3, &plain).unwrap();
        assert_eq!(sealed.len(), plain.len() + TAG_LEN);
        assert_ne!(&sealed[..plain.len()], &plain[..]);
        assert_eq!(open_chunk(&key, &prefix, 3, &sealed).unwrap(), plain);

        // Wrong key.
        let other = ObjectKey::generate();
        assert!(matches!(
            open_chunk(&other, &prefix, 3, &sealed),
            Err(StoreError::Crypto(_))
        ));
        // Wrong position.
        assert!(open_chunk(&key, &prefix, 4, &sealed).is_err());
        // Wrong nonce prefix.
        assert!(open_chunk(&key, &[0u8; 16], 3, &sealed).is_err());
        // Any flipped byte, in the body or the tag.
        for i in [0, plain.len() - 1, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x80;
            assert!(open_chunk(&key, &prefix, 3, &tampered).is_err());
        }
        // Truncated inputs.
        assert!(open_chunk(&key, &prefix, 3, &sealed[..TAG_LEN - 1]).is_err());
        assert!(open_chunk(&key, &prefix, 3, &[]).is_err());

        // The empty chunk still carries a tag.
        let empty = seal_chunk(&key, &prefix, 0, b"").unwrap();
        assert_eq!(empty.len(), TAG_LEN);
        assert_eq!(open_chunk(&key, &prefix, 0, &empty).unwrap(), b"");
    }

    /// Chunks sealed before `ring` did it must still open, and the format must not move:
    /// the bytes are those of the `chacha20poly1305` crate's XChaCha20-Poly1305 under the
    /// nonce `prefix || index`, both ways, at lengths around ChaCha's 64-byte blocks.
    #[test]
    fn chunks_are_xchacha20_poly1305_byte_for_byte() {
        let key = ObjectKey::generate();
        let prefix = random_nonce_prefix();
        let reference = XChaCha20Poly1305::new(Key::from_slice(&key.0));
        for (index, len) in [
            (0u64, 0usize),
            (1, 1),
            (2, 63),
            (3, 64),
            (7, 65),
            (u64::MAX, 1 << 20),
        ] {
            let mut plain = vec![0u8; len];
            rand::rngs::OsRng.fill_bytes(&mut plain);
            let nonce = chunk_nonce(&prefix, index);
            let theirs = reference.encrypt(&nonce, plain.as_slice()).unwrap();
            let ours = seal_chunk(&key, &prefix, index, &plain).unwrap();
            assert_eq!(ours, theirs, "chunk {index} of {len} bytes");
            assert_eq!(open_chunk(&key, &prefix, index, &theirs).unwrap(), plain);
            assert_eq!(reference.decrypt(&nonce, ours.as_slice()).unwrap(), plain);
        }
    }

    #[test]
    fn wrap_unwrap_checks_key_and_context() {
        let kek = DataKey::derive(&[9u8; 32]);
        let key = ObjectKey::generate();
        let wrapped = wrap_key(&kek, &key, b"tenant/bucket/key").unwrap();
        assert_eq!(wrapped.ciphertext.len(), 32 + TAG_LEN);
        let unwrapped = unwrap_key(&kek, &wrapped, b"tenant/bucket/key").unwrap();
        assert_eq!(unwrapped, key);

        assert!(matches!(
            unwrap_key(&kek, &wrapped, b"tenant/bucket/other"),
            Err(StoreError::Crypto(_))
        ));
        assert!(unwrap_key(&DataKey::derive(&[8u8; 32]), &wrapped, b"tenant/bucket/key").is_err());
        let mut tampered = wrapped.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(unwrap_key(&kek, &tampered, b"tenant/bucket/key").is_err());
        let mut short = wrapped.clone();
        short.ciphertext.truncate(3);
        assert!(unwrap_key(&kek, &short, b"tenant/bucket/key").is_err());

        // Sealing with the unwrapped key opens with the original.
        let prefix = random_nonce_prefix();
        let sealed = seal_chunk(&unwrapped, &prefix, 0, b"data").unwrap();
        assert_eq!(open_chunk(&key, &prefix, 0, &sealed).unwrap(), b"data");
    }

    #[test]
    fn wrapping_a_key_of_the_wrong_length_is_refused() {
        // A wrapped "key" of 16 bytes authenticates but is not an object key.
        let kek = DataKey::derive(&[3u8; 32]);
        let nonce = [5u8; 24];
        let ciphertext = XChaCha20Poly1305::new(Key::from_slice(&kek.0))
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &[0u8; 16],
                    aad: b"",
                },
            )
            .unwrap();
        let wrapped = WrappedKey { nonce, ciphertext };
        assert!(matches!(
            unwrap_key(&kek, &wrapped, b""),
            Err(StoreError::Crypto(_))
        ));
    }
}
