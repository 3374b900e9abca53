//! Object manifests: the list of chunks that make up an object, with what is needed to
//! decrypt them. A manifest is itself stored as a chunk, addressed by its encoding's hash.

use serde::{Deserialize, Serialize};
use xnode_wire::{Versioned, kinds};

use crate::StoreError;
use crate::chunker::MAX_CHUNK_SIZE;
use crate::chunks::ChunkId;
use crate::crypto::WrappedKey;

/// The largest encoded manifest accepted. About 37 bytes per chunk, so this covers objects
/// of roughly 450k chunks (about 450 GiB at the default chunk size).
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// One chunk of an object: the id of its sealed bytes and its plaintext length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub plain_len: u32,
}

/// How to reassemble an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Plaintext size of the object.
    pub object_size: u64,
    /// Plaintext size of every chunk but the last.
    pub chunk_size: u32,
    pub chunks: Vec<ChunkRef>,
    /// Chunk `i` is sealed under the nonce `nonce_prefix || i` (see `crypto`).
    pub nonce_prefix: [u8; 16],
    pub wrapped_key: WrappedKey,
    /// BLAKE3 of the whole plaintext, so a reader can check the reassembled object.
    pub plaintext_blake3: [u8; 32],
}

impl Versioned for Manifest {
    const KIND_TAG: u8 = kinds::MANIFEST;
    const KIND_NAME: &'static str = "manifest";
    const VERSION: u8 = 1;
}

impl Manifest {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let bytes = xnode_wire::encode(self)?;
        // Refuse to write what no node would read back.
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(StoreError::TooLarge {
                what: "manifest",
                len: bytes.len(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Decodes and validates a manifest, so later arithmetic on it cannot go wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let manifest: Self = xnode_wire::decode(bytes, MAX_MANIFEST_BYTES)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks that the chunk lengths describe the object: every chunk but the last is
    /// exactly `chunk_size`, the last is non-empty and not larger, and they add up to
    /// `object_size`.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |reason: String| Err(StoreError::InvalidManifest(reason));
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return bad(format!(
                "chunk size {} is outside 1..={MAX_CHUNK_SIZE}",
                self.chunk_size
            ));
        }
        let mut total: u64 = 0;
        let last = self.chunks.len().saturating_sub(1);
        for (i, chunk) in self.chunks.iter().enumerate() {
            let ok = if i < last {
                chunk.plain_len == self.chunk_size
            } else {
                chunk.plain_len > 0 && chunk.plain_len <= self.chunk_size
            };
            if !ok {
                return bad(format!(
                    "chunk {i} of {} has {} plaintext bytes with chunk size {}",
                    self.chunks.len(),
                    chunk.plain_len,
                    self.chunk_size
                ));
            }
            total = total.saturating_add(u64::from(chunk.plain_len));
        }
        if total != self.object_size {
            return bad(format!(
                "chunks hold {total} bytes but the object has {}",
                self.object_size
            ));
        }
        Ok(())
    }

    /// The manifest's own chunk id: the hash of its encoding.
    pub fn id_of(encoded: &[u8]) -> ChunkId {
        ChunkId::of(encoded)
    }

    /// The chunks overlapping the plaintext byte range `[start, end)`, as (chunk index,
    /// offset in the chunk where the range starts, bytes to take). `end` is clamped to the
    /// object size; an empty or out-of-range request yields nothing.
    pub fn chunks_for_range(&self, start: u64, end: u64) -> Vec<(usize, u32, u32)> {
        let end = end.min(self.object_size);
        let size = u64::from(self.chunk_size);
        if start >= end || size == 0 {
            return Vec::new();
        }
        let first = start / size;
        let last = (end - 1) / size;
        let mut out = Vec::new();
        for index in first..=last {
            let Ok(i) = usize::try_from(index) else { break };
            let Some(chunk) = self.chunks.get(i) else {
                break;
            };
            let chunk_start = index * size;
            let chunk_end = chunk_start.saturating_add(u64::from(chunk.plain_len));
            let from = start.max(chunk_start);
            let to = end.min(chunk_end);
            if from >= to {
                continue;
            }
            // Both fit in u32: they are bounded by the chunk's plaintext length.
            let offset = u32::try_from(from - chunk_start).unwrap_or(u32::MAX);
            let take = u32::try_from(to - from).unwrap_or(u32::MAX);
            out.push((i, offset, take));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{DataKey, ObjectKey, wrap_key};

    fn manifest(object_size: u64, chunk_size: u32) -> Manifest {
        let mut chunks = Vec::new();
        let mut left = object_size;
        let mut n = 0u32;
        while left > 0 {
            let len = left.min(u64::from(chunk_size)) as u32;
            chunks.push(ChunkRef {
                id: ChunkId::of(&n.to_le_bytes()),
                plain_len: len,
            });
            left -= u64::from(len);
            n += 1;
        }
        let kek = DataKey::derive(&[1u8; 32]);
        Manifest {
            object_size,
            chunk_size,
            chunks,
            nonce_prefix: [7u8; 16],
            wrapped_key: wrap_key(&kek, &ObjectKey::generate(), b"x").unwrap(),
            plaintext_blake3: [3u8; 32],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for size in [0, 1, 99, 100, 101, 1000] {
            let m = manifest(size, 100);
            let bytes = m.encode().unwrap();
            assert_eq!(bytes[0], kinds::MANIFEST);
            assert_eq!(bytes[1], 1);
            assert_eq!(Manifest::decode(&bytes).unwrap(), m);
            assert_eq!(Manifest::id_of(&bytes), ChunkId::of(&bytes));
        }
    }

    #[test]
    fn decode_rejects_inconsistent_manifests() {
        let good = manifest(250, 100);
        let check = |m: &Manifest| {
            let bytes = xnode_wire::encode(m).unwrap();
            assert!(
                matches!(
                    Manifest::decode(&bytes),
                    Err(StoreError::InvalidManifest(_))
                ),
                "{m:?}"
            );
        };
        let mut m = good.clone();
        m.object_size = 251;
        check(&m);
        let mut m = good.clone();
        m.chunk_size = 0;
        check(&m);
        let mut m = good.clone();
        m.chunk_size = MAX_CHUNK_SIZE + 1;
        check(&m);
        let mut m = good.clone();
        m.chunks[0].plain_len = 99;
        m.chunks[2].plain_len = 51;
        check(&m);
        let mut m = good.clone();
        m.chunks[2].plain_len = 0;
        m.object_size = 200;
        check(&m);
        let mut m = good.clone();
        m.chunks[2].plain_len = 101;
        m.object_size = 301;
        check(&m);
        let mut m = manifest(0, 100);
        m.object_size = 5;
        check(&m);

        assert!(Manifest::decode(&[]).is_err());
        assert!(Manifest::decode(&[kinds::MANIFEST, 1, 0xff]).is_err());
        assert!(Manifest::decode(&[kinds::OBJECT_META, 1]).is_err());
        let mut future = good.encode().unwrap();
        future[1] = 2;
        assert!(Manifest::decode(&future).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_u64;
        for len in 0..200 {
            let mut bytes = vec![kinds::MANIFEST, 1];
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(seed as u8);
            }
            let _ = Manifest::decode(&bytes);
        }
    }

    #[test]
    fn ranges() {
        let m = manifest(250, 100);
        // The whole object.
        assert_eq!(
            m.chunks_for_range(0, 250),
            vec![(0, 0, 100), (1, 0, 100), (2, 0, 50)]
        );
        // `end` past the object is clamped.
        assert_eq!(m.chunks_for_range(0, u64::MAX), m.chunks_for_range(0, 250));
        // Inside one chunk.
        assert_eq!(m.chunks_for_range(110, 120), vec![(1, 10, 10)]);
        // One byte.
        assert_eq!(m.chunks_for_range(99, 100), vec![(0, 99, 1)]);
        // Exactly one chunk, aligned.
        assert_eq!(m.chunks_for_range(100, 200), vec![(1, 0, 100)]);
        // Across chunks.
        assert_eq!(
            m.chunks_for_range(50, 210),
            vec![(0, 50, 50), (1, 0, 100), (2, 0, 10)]
        );
        // The tail.
        assert_eq!(m.chunks_for_range(249, 250), vec![(2, 49, 1)]);
        // Empty and out-of-range requests.
        assert!(m.chunks_for_range(10, 10).is_empty());
        assert!(m.chunks_for_range(20, 10).is_empty());
        assert!(m.chunks_for_range(250, 300).is_empty());
        assert!(m.chunks_for_range(u64::MAX - 1, u64::MAX).is_empty());
        // The empty object.
        let empty = manifest(0, 100);
        assert!(empty.chunks.is_empty());
        assert!(empty.chunks_for_range(0, 0).is_empty());
        assert!(empty.chunks_for_range(0, 10).is_empty());
        // An object of exactly one full chunk.
        assert_eq!(
            manifest(100, 100).chunks_for_range(0, 100),
            vec![(0, 0, 100)]
        );
        // A manifest built in code without validation must not panic either.
        let mut broken = manifest(250, 100);
        broken.chunks.truncate(1);
        assert_eq!(broken.chunks_for_range(0, 250), vec![(0, 0, 100)]);
        broken.chunk_size = 0;
        assert!(broken.chunks_for_range(0, 250).is_empty());
    }
}
