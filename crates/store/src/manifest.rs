//! Object manifests: the list of chunks that make up an object, with what is needed to
//! decrypt them. A manifest is itself stored as a chunk, addressed by its encoding's hash.
//!
//! Format version 2 adds **segments**: an object may be the concatenation of several
//! independently sealed runs of chunks, each with its own object key and nonce prefix. That
//! lets a gateway join separately uploaded parts (S3 multipart uploads) into one object
//! without re-reading or re-encrypting their data. The top-level fields describe the first
//! segment; `segments` holds the others, in order. Version 1 manifests (one segment) are
//! still read.
//!
//! Format version 3 **authenticates** the manifest: `mac` is a keyed BLAKE3 over the rest of
//! the manifest, under a key derived from the first segment's object key, which only the
//! tenant's edge can unwrap. Storage nodes can no longer truncate, reorder or duplicate the
//! chunk list or the segments of a manifest and have the result read as the object. The
//! object keys of an authenticated manifest are wrapped with [`wrap_aad`]`(path, true)`, a
//! context no older manifest uses, so stripping the MAC (presenting the manifest as an older,
//! unauthenticated one) makes the key impossible to unwrap. Older manifests decode with
//! `mac: None` and stay readable, unauthenticated, until their object is rewritten.

use serde::{Deserialize, Serialize};
use xnode_wire::{Versioned, kinds};

use crate::StoreError;
use crate::chunker::MAX_CHUNK_SIZE;
use crate::chunks::ChunkId;
use crate::crypto::{ObjectKey, WrappedKey};

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
    /// Plaintext size of the object (all segments).
    pub object_size: u64,
    /// Plaintext size of every chunk but the last (of the first segment).
    pub chunk_size: u32,
    /// The chunks of the first segment.
    pub chunks: Vec<ChunkRef>,
    /// Chunk `i` is sealed under the nonce `nonce_prefix || i` (see `crypto`).
    pub nonce_prefix: [u8; 16],
    pub wrapped_key: WrappedKey,
    /// BLAKE3 of the first segment's plaintext (the whole object when it has one segment),
    /// so a reader can check the reassembled data.
    pub plaintext_blake3: [u8; 32],
    /// The further segments, in order (version 2; empty for a single-segment object).
    pub segments: Vec<Segment>,
    /// Keyed BLAKE3 of the manifest with `mac: None`, under [`Manifest::mac_key`] of the
    /// first segment's object key (version 3). `None` only in older manifests.
    pub mac: Option<[u8; 32]>,
}

/// blake3 key-derivation context of the manifest MAC key.
const MAC_KEY_CONTEXT: &str = "xnode 2026-11 manifest mac v1";
/// Prefix of the associated data object keys are wrapped with in authenticated manifests.
const AUTHENTICATED_AAD_PREFIX: &[u8] = b"xnode manifest v3\0";

/// The associated data an object key is wrapped with for the object whose path has
/// `storage_key`: the path itself in unauthenticated (format 1 and 2) manifests, the path
/// under a prefix of its own in authenticated ones, so a key wrapped for one kind never
/// unwraps as the other.
pub fn wrap_aad(storage_key: &[u8], authenticated: bool) -> Vec<u8> {
    if !authenticated {
        return storage_key.to_vec();
    }
    let mut aad = AUTHENTICATED_AAD_PREFIX.to_vec();
    aad.extend_from_slice(storage_key);
    aad
}

/// A further run of chunks of a multi-segment object, sealed under its own object key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Plaintext size of this segment.
    pub size: u64,
    pub chunk_size: u32,
    pub chunks: Vec<ChunkRef>,
    pub nonce_prefix: [u8; 16],
    pub wrapped_key: WrappedKey,
    pub plaintext_blake3: [u8; 32],
}

/// One segment's chunks and keys, whichever field holds it.
#[derive(Clone, Copy, Debug)]
pub struct SegmentView<'a> {
    pub chunk_size: u32,
    pub chunks: &'a [ChunkRef],
    pub nonce_prefix: [u8; 16],
    pub wrapped_key: &'a WrappedKey,
}

/// A piece of a range read: `len` bytes at `offset` in chunk `chunk` of segment `segment`
/// (0 is the first segment, `i` is `segments[i - 1]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub segment: usize,
    pub chunk: usize,
    pub offset: u32,
    pub len: u32,
}

/// The layout of format version 2 (no MAC).
#[derive(Deserialize)]
struct ManifestV2 {
    object_size: u64,
    chunk_size: u32,
    chunks: Vec<ChunkRef>,
    nonce_prefix: [u8; 16],
    wrapped_key: WrappedKey,
    plaintext_blake3: [u8; 32],
    segments: Vec<Segment>,
}

/// The layout of format version 1 (a single segment).
#[derive(Deserialize)]
struct ManifestV1 {
    object_size: u64,
    chunk_size: u32,
    chunks: Vec<ChunkRef>,
    nonce_prefix: [u8; 16],
    wrapped_key: WrappedKey,
    plaintext_blake3: [u8; 32],
}

impl Versioned for Manifest {
    const KIND_TAG: u8 = kinds::MANIFEST;
    const KIND_NAME: &'static str = "manifest";
    // Version 2 added segments, version 3 the MAC.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        match version {
            1 => {
                let v1: ManifestV1 = xnode_wire::decode_body::<Self, _>(body)?;
                Ok(Manifest {
                    object_size: v1.object_size,
                    chunk_size: v1.chunk_size,
                    chunks: v1.chunks,
                    nonce_prefix: v1.nonce_prefix,
                    wrapped_key: v1.wrapped_key,
                    plaintext_blake3: v1.plaintext_blake3,
                    segments: Vec::new(),
                    mac: None,
                })
            }
            2 => {
                let v2: ManifestV2 = xnode_wire::decode_body::<Self, _>(body)?;
                Ok(Manifest {
                    object_size: v2.object_size,
                    chunk_size: v2.chunk_size,
                    chunks: v2.chunks,
                    nonce_prefix: v2.nonce_prefix,
                    wrapped_key: v2.wrapped_key,
                    plaintext_blake3: v2.plaintext_blake3,
                    segments: v2.segments,
                    mac: None,
                })
            }
            _ => Err(xnode_wire::unsupported::<Self>(version)),
        }
    }
}

/// Checks one segment's chunk lengths: every chunk but the last is exactly `chunk_size`,
/// the last is non-empty and not larger, and they add up to `size`.
fn validate_segment(
    which: &str,
    chunk_size: u32,
    chunks: &[ChunkRef],
    size: u64,
) -> Result<(), StoreError> {
    let bad = |reason: String| Err(StoreError::InvalidManifest(reason));
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return bad(format!(
            "{which}: chunk size {chunk_size} is outside 1..={MAX_CHUNK_SIZE}"
        ));
    }
    let mut total: u64 = 0;
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        let ok = if i < last {
            chunk.plain_len == chunk_size
        } else {
            chunk.plain_len > 0 && chunk.plain_len <= chunk_size
        };
        if !ok {
            return bad(format!(
                "{which}: chunk {i} of {} has {} plaintext bytes with chunk size {chunk_size}",
                chunks.len(),
                chunk.plain_len,
            ));
        }
        total = total.saturating_add(u64::from(chunk.plain_len));
    }
    if total != size {
        return bad(format!(
            "{which}: chunks hold {total} bytes but it has {size}"
        ));
    }
    Ok(())
}

/// The chunks of one segment overlapping its local range `[start, end)`.
fn segment_range(
    chunk_size: u32,
    chunks: &[ChunkRef],
    start: u64,
    end: u64,
) -> Vec<(usize, u32, u32)> {
    let size = u64::from(chunk_size);
    if start >= end || size == 0 {
        return Vec::new();
    }
    let first = start / size;
    let last = (end - 1) / size;
    let mut out = Vec::new();
    for index in first..=last {
        let Ok(i) = usize::try_from(index) else { break };
        let Some(chunk) = chunks.get(i) else {
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

    /// Checks that the chunk lengths describe the object: in every segment, every chunk
    /// but the last is exactly its `chunk_size`, the last is non-empty and not larger, and
    /// the segments add up to `object_size`.
    pub fn validate(&self) -> Result<(), StoreError> {
        let mut rest: u64 = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            validate_segment(
                &format!("segment {}", i + 1),
                segment.chunk_size,
                &segment.chunks,
                segment.size,
            )?;
            rest = rest
                .checked_add(segment.size)
                .ok_or_else(|| StoreError::InvalidManifest("segment sizes overflow".into()))?;
        }
        let Some(first) = self.object_size.checked_sub(rest) else {
            return Err(StoreError::InvalidManifest(format!(
                "segments hold {rest} bytes but the object has {}",
                self.object_size
            )));
        };
        if self.segments.is_empty() {
            validate_segment("the object", self.chunk_size, &self.chunks, first)
        } else {
            validate_segment("segment 0", self.chunk_size, &self.chunks, first)
        }
    }

    /// Plaintext size of the first segment.
    pub fn first_segment_size(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.plain_len)).sum()
    }

    /// Number of segments (at least 1).
    pub fn segment_count(&self) -> usize {
        1 + self.segments.len()
    }

    /// Segment `i` (0 is the first).
    pub fn segment(&self, i: usize) -> Option<SegmentView<'_>> {
        if i == 0 {
            return Some(SegmentView {
                chunk_size: self.chunk_size,
                chunks: &self.chunks,
                nonce_prefix: self.nonce_prefix,
                wrapped_key: &self.wrapped_key,
            });
        }
        self.segments.get(i - 1).map(|s| SegmentView {
            chunk_size: s.chunk_size,
            chunks: &s.chunks,
            nonce_prefix: s.nonce_prefix,
            wrapped_key: &s.wrapped_key,
        })
    }

    /// Every chunk id the object's data uses, in every segment.
    pub fn all_chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.chunks
            .iter()
            .chain(self.segments.iter().flat_map(|s| s.chunks.iter()))
            .map(|c| c.id)
    }

    /// The pieces of every segment overlapping the plaintext range `[start, end)` of the
    /// object, in order. `end` is clamped to the object size.
    pub fn pieces_for_range(&self, start: u64, end: u64) -> Vec<Piece> {
        let end = end.min(self.object_size);
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let mut base: u64 = 0;
        for i in 0..self.segment_count() {
            let Some(seg) = self.segment(i) else { break };
            let size: u64 = if i == 0 {
                self.first_segment_size()
            } else {
                self.segments[i - 1].size
            };
            let seg_end = base.saturating_add(size);
            if seg_end > start && base < end {
                let from = start.max(base) - base;
                let to = end.min(seg_end) - base;
                for (chunk, offset, len) in segment_range(seg.chunk_size, seg.chunks, from, to) {
                    out.push(Piece {
                        segment: i,
                        chunk,
                        offset,
                        len,
                    });
                }
            }
            base = seg_end;
            if base >= end {
                break;
            }
        }
        out
    }

    /// Whether the manifest carries a MAC (format 3); its keys are then wrapped with
    /// [`wrap_aad`]`(path, true)`.
    pub fn is_authenticated(&self) -> bool {
        self.mac.is_some()
    }

    /// The MAC of the manifest's fields other than `mac` under `first_key`, the first
    /// segment's object key.
    fn compute_mac(&self, first_key: &ObjectKey) -> Result<blake3::Hash, StoreError> {
        let mut unsigned = self.clone();
        unsigned.mac = None;
        let body = xnode_wire::encode(&unsigned)?;
        let key = blake3::derive_key(MAC_KEY_CONTEXT, first_key.as_bytes());
        Ok(blake3::keyed_hash(&key, &body))
    }

    /// Sets the MAC under `first_key`, the first segment's object key. The object keys
    /// must have been wrapped with [`wrap_aad`]`(path, true)`.
    pub fn authenticate(&mut self, first_key: &ObjectKey) -> Result<(), StoreError> {
        self.mac = None;
        self.mac = Some(*self.compute_mac(first_key)?.as_bytes());
        Ok(())
    }

    /// Checks the MAC under `first_key` (in constant time). An unauthenticated manifest
    /// passes: the caller decides, through [`wrap_aad`], what such a manifest may open.
    pub fn verify(&self, first_key: &ObjectKey) -> Result<(), StoreError> {
        let Some(mac) = self.mac else { return Ok(()) };
        if self.compute_mac(first_key)? == blake3::Hash::from(mac) {
            Ok(())
        } else {
            Err(StoreError::Integrity(
                "the manifest does not match its MAC: its chunk list or segments were altered"
                    .into(),
            ))
        }
    }

    /// The manifest's own chunk id: the hash of its encoding.
    pub fn id_of(encoded: &[u8]) -> ChunkId {
        ChunkId::of(encoded)
    }

    /// The chunks of the first segment overlapping the plaintext byte range `[start, end)`,
    /// as (chunk index, offset in the chunk where the range starts, bytes to take). `end` is
    /// clamped to the object size; an empty or out-of-range request yields nothing.
    pub fn chunks_for_range(&self, start: u64, end: u64) -> Vec<(usize, u32, u32)> {
        segment_range(
            self.chunk_size,
            &self.chunks,
            start,
            end.min(self.object_size),
        )
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
            segments: Vec::new(),
            mac: None,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for size in [0, 1, 99, 100, 101, 1000] {
            let m = manifest(size, 100);
            let bytes = m.encode().unwrap();
            assert_eq!(bytes[0], kinds::MANIFEST);
            assert_eq!(bytes[1], Manifest::VERSION);
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
        future[1] = Manifest::VERSION + 1;
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

    fn two_segments() -> Manifest {
        let mut m = manifest(250, 100);
        let tail = manifest(130, 100);
        m.segments.push(Segment {
            size: 130,
            chunk_size: 100,
            chunks: tail.chunks.clone(),
            nonce_prefix: [9u8; 16],
            wrapped_key: tail.wrapped_key.clone(),
            plaintext_blake3: [4u8; 32],
        });
        m.object_size = 380;
        m
    }

    #[test]
    fn version_1_manifests_are_still_read() {
        let m = manifest(250, 100);
        // Version 1's layout: the same fields without `segments`.
        let v1 = (
            m.object_size,
            m.chunk_size,
            &m.chunks,
            m.nonce_prefix,
            &m.wrapped_key,
            m.plaintext_blake3,
        );
        let mut bytes = vec![kinds::MANIFEST, 1];
        bytes.extend(postcard::to_stdvec(&v1).unwrap());
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn multi_segment_manifests_validate_and_map_ranges() {
        let m = two_segments();
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.segment_count(), 2);
        assert_eq!(m.all_chunk_ids().count(), 5);
        let p = |segment, chunk, offset, len| Piece {
            segment,
            chunk,
            offset,
            len,
        };
        assert_eq!(
            m.pieces_for_range(0, 380),
            vec![
                p(0, 0, 0, 100),
                p(0, 1, 0, 100),
                p(0, 2, 0, 50),
                p(1, 0, 0, 100),
                p(1, 1, 0, 30)
            ]
        );
        assert_eq!(
            m.pieces_for_range(240, 260),
            vec![p(0, 2, 40, 10), p(1, 0, 0, 10)]
        );
        assert_eq!(m.pieces_for_range(379, 1000), vec![p(1, 1, 29, 1)]);
        assert!(m.pieces_for_range(380, 400).is_empty());
        // A single-segment manifest maps like chunks_for_range.
        let one = manifest(250, 100);
        assert_eq!(
            one.pieces_for_range(50, 210)
                .iter()
                .map(|p| (p.chunk, p.offset, p.len))
                .collect::<Vec<_>>(),
            one.chunks_for_range(50, 210)
        );
        // Sizes that do not add up are refused.
        let mut bad = two_segments();
        bad.object_size = 381;
        assert!(bad.encode().is_ok() && Manifest::decode(&bad.encode().unwrap()).is_err());
        let mut bad = two_segments();
        bad.segments[0].size = 131;
        assert!(Manifest::decode(&bad.encode().unwrap()).is_err());
        let mut bad = two_segments();
        bad.segments[0].size = u64::MAX;
        assert!(Manifest::decode(&bad.encode().unwrap()).is_err());
    }

    #[test]
    fn version_2_manifests_are_still_read_unauthenticated() {
        let m = two_segments();
        let v2 = (
            m.object_size,
            m.chunk_size,
            &m.chunks,
            m.nonce_prefix,
            &m.wrapped_key,
            m.plaintext_blake3,
            &m.segments,
        );
        let mut bytes = vec![kinds::MANIFEST, 2];
        bytes.extend(postcard::to_stdvec(&v2).unwrap());
        let read = Manifest::decode(&bytes).unwrap();
        assert_eq!(read, m);
        assert!(!read.is_authenticated());
    }

    #[test]
    fn an_authenticated_manifest_detects_truncation_reordering_and_duplication() {
        let key = ObjectKey::generate();
        let mut m = two_segments();
        let mut third = m.segments[0].clone();
        third.nonce_prefix = [8u8; 16];
        m.object_size += third.size;
        m.segments.push(third);
        m.authenticate(&key).unwrap();
        assert!(m.is_authenticated());
        let read = Manifest::decode(&m.encode().unwrap()).unwrap();
        read.verify(&key).unwrap();
        // Another key (another object's) does not verify it.
        assert!(matches!(
            read.verify(&ObjectKey::generate()),
            Err(StoreError::Integrity(_))
        ));

        let tampered = |change: &dyn Fn(&mut Manifest)| {
            let mut t = m.clone();
            change(&mut t);
            let t = Manifest::decode(&t.encode().unwrap()).unwrap();
            assert!(
                matches!(t.verify(&key), Err(StoreError::Integrity(_))),
                "{t:?}"
            );
        };
        // A truncated chunk list (sizes adjusted so it still validates).
        tampered(&|t| {
            let last = t.chunks.pop().unwrap();
            t.object_size -= u64::from(last.plain_len);
        });
        // Dropped, duplicated and reordered segments.
        tampered(&|t| {
            let s = t.segments.pop().unwrap();
            t.object_size -= s.size;
        });
        tampered(&|t| {
            let s = t.segments[0].clone();
            t.segments.push(s.clone());
            t.object_size += s.size;
        });
        tampered(&|t| t.segments.swap(0, 1));
        tampered(&|t| t.chunks.swap(0, 1));
        // Stripping the MAC makes it unauthenticated, and keys wrapped for an
        // authenticated manifest do not unwrap in that context.
        let kek = DataKey::derive(&[5u8; 32]);
        let path = b"tenant/bucket/key";
        let wrapped = wrap_key(&kek, &key, &wrap_aad(path, true)).unwrap();
        assert!(crate::crypto::unwrap_key(&kek, &wrapped, &wrap_aad(path, false)).is_err());
        assert!(crate::crypto::unwrap_key(&kek, &wrapped, &wrap_aad(path, true)).is_ok());
        assert_ne!(wrap_aad(path, true), wrap_aad(path, false));
    }
}
