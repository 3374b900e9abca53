//! Slice proofs for storage audits: a holder proves it has a chunk by sending a small
//! slice of it with a proof that verifies against the chunk's id, its BLAKE3 hash.
//!
//! A chunk id is the BLAKE3 hash of the stored bytes, and BLAKE3 is a Merkle tree over
//! 1 KiB chunks, so a slice and the chaining values of the subtrees beside its path
//! authenticate the slice against the root hash (BLAKE3 verified streaming, the Bao
//! format, implemented by the `bao` crate). The verifier needs only the chunk id and the
//! slice it asked for, never the whole chunk: a proof of a 16 KiB slice of a 1 MiB chunk
//! is about 17 KiB.
//!
//! The holder computes the Bao outboard (the tree's parent nodes) from the chunk when it
//! is challenged rather than storing it: one BLAKE3 pass over a chunk it reads anyway
//! costs about a millisecond per MiB, while stored outboards would take 1/16 of the disk
//! (64 bytes of parents per 1 KiB of data) and a second file per chunk to keep in sync.
//!
//! Bao's slice encoding carries the content length in its header and binds it into the
//! root hash, so a proof also proves the chunk's length; a slice that runs past the end
//! decodes short and is refused.

use std::io::{Cursor, Read};

use crate::ChunkId;

/// The smallest slice an audit asks for: one BLAKE3 chunk (1 KiB).
pub const MIN_AUDIT_SLICE: u32 = 1024;
/// The largest slice an audit asks for, which bounds what an answer may carry.
pub const MAX_AUDIT_SLICE: u32 = 16 * 1024;
/// BLAKE3's chunk (tree leaf) size.
const BLAKE3_CHUNK: u64 = 1024;
/// A parent node in the Bao encoding: two 32-byte chaining values.
const PARENT_BYTES: u64 = 64;
/// The Bao header: the content length as a little-endian u64.
const HEADER_BYTES: u64 = 8;
/// The deepest tree a chunk of at most 2^32 bytes makes (2^32 / 1 KiB = 2^22 leaves).
const MAX_TREE_DEPTH: u64 = 22;

/// Why a slice proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The slice asked for is empty, too long, or starts past the end of the chunk.
    #[error(
        "slice of {len} bytes at offset {offset} is not a valid audit slice of a {chunk_len}-byte chunk"
    )]
    BadSlice {
        /// The slice's offset.
        offset: u64,
        /// The slice's length.
        len: u32,
        /// The chunk's length.
        chunk_len: u64,
    },
    /// The proof is longer than any honest proof of such a slice can be.
    #[error("proof of {len} bytes exceeds the bound of {limit} bytes for this slice")]
    TooLong {
        /// The proof's length.
        len: usize,
        /// The largest honest proof of the slice.
        limit: usize,
    },
    /// The proof does not verify against the chunk id (a wrong byte, another chunk, a
    /// truncated proof or another slice).
    #[error("proof does not verify against chunk {chunk}: {reason}")]
    Invalid {
        /// The chunk the proof was checked against.
        chunk: ChunkId,
        /// What the decoder found.
        reason: String,
    },
    /// The proof verified but holds fewer bytes than asked for: the slice runs past the
    /// end of the chunk whose length the proof commits to.
    #[error("proof holds {got} bytes of the {wanted} asked for")]
    Short {
        /// Bytes the proof held.
        got: usize,
        /// Bytes asked for.
        wanted: u32,
    },
}

/// Whether `(offset, len)` is a slice an audit may ask of a chunk of `chunk_len` bytes:
/// between [`MIN_AUDIT_SLICE`] (or the whole chunk, if shorter) and [`MAX_AUDIT_SLICE`]
/// bytes, entirely inside the chunk.
pub fn check_slice(offset: u64, len: u32, chunk_len: u64) -> Result<(), ProofError> {
    let min = u64::from(MIN_AUDIT_SLICE).min(chunk_len).max(1);
    let fits = offset
        .checked_add(u64::from(len))
        .is_some_and(|end| end <= chunk_len);
    if u64::from(len) < min || len > MAX_AUDIT_SLICE || !fits {
        return Err(ProofError::BadSlice {
            offset,
            len,
            chunk_len,
        });
    }
    Ok(())
}

/// The largest honest proof of a `len`-byte slice: the header, the slice widened to whole
/// BLAKE3 chunks (at most one extra chunk on each side), and the parent nodes along the
/// two edges of the slice at every level of the tree.
pub fn max_proof_len(len: u32) -> usize {
    let content = u64::from(len).saturating_add(2 * BLAKE3_CHUNK);
    let parents = PARENT_BYTES.saturating_mul(2 * MAX_TREE_DEPTH);
    let total = HEADER_BYTES.saturating_add(content).saturating_add(parents);
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// Proves that the holder has `chunk`: the Bao slice of `len` bytes at `offset`, with the
/// parent nodes that authenticate it against the chunk's BLAKE3 hash.
pub fn prove_slice(chunk: &[u8], offset: u64, len: u32) -> Result<Vec<u8>, ProofError> {
    let chunk_len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
    check_slice(offset, len, chunk_len)?;
    let (outboard, _) = bao::encode::outboard(chunk);
    let mut extractor = bao::encode::SliceExtractor::new_outboard(
        Cursor::new(chunk),
        Cursor::new(&outboard[..]),
        offset,
        u64::from(len),
    );
    let mut proof = Vec::with_capacity(max_proof_len(len));
    // Reading from memory cannot fail unless the outboard disagrees with the input,
    // which it cannot, since it was computed from it just above.
    extractor
        .read_to_end(&mut proof)
        .map_err(|e| ProofError::Invalid {
            chunk: ChunkId::of(chunk),
            reason: e.to_string(),
        })?;
    Ok(proof)
}

/// Checks `proof` against `chunk` for the slice of `len` bytes at `offset` and returns the
/// slice's bytes. The proof is refused before it is decoded if it is longer than an honest
/// one, and decoding reads only from it, writing at most `len` bytes: a hostile answer
/// can make the verifier neither allocate more nor panic.
pub fn verify_slice(
    chunk: &ChunkId,
    offset: u64,
    len: u32,
    proof: &[u8],
) -> Result<Vec<u8>, ProofError> {
    if len == 0 || len > MAX_AUDIT_SLICE {
        return Err(ProofError::BadSlice {
            offset,
            len,
            chunk_len: 0,
        });
    }
    let limit = max_proof_len(len);
    if proof.len() > limit {
        return Err(ProofError::TooLong {
            len: proof.len(),
            limit,
        });
    }
    let hash = blake3::Hash::from_bytes(chunk.0);
    let decoder = bao::decode::SliceDecoder::new(proof, &hash, offset, u64::from(len));
    let mut slice = Vec::with_capacity(len as usize);
    decoder
        .take(u64::from(len))
        .read_to_end(&mut slice)
        .map_err(|e| ProofError::Invalid {
            chunk: *chunk,
            reason: e.to_string(),
        })?;
    if slice.len() != len as usize {
        return Err(ProofError::Short {
            got: slice.len(),
            wanted: len,
        });
    }
    Ok(slice)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn chunk(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(151).wrapping_add(seed) ^ (i >> 10) as u8)
            .collect()
    }

    #[test]
    fn the_bao_root_is_the_chunk_id() {
        for len in [0, 1, 1024, 1025, 64 * 1024 + 7, 1024 * 1024] {
            let data = chunk(len, 1);
            let (_, root) = bao::encode::outboard(&data);
            assert_eq!(*root.as_bytes(), ChunkId::of(&data).0, "len {len}");
        }
    }

    #[test]
    fn an_honest_proof_verifies_and_returns_the_slice() {
        let data = chunk(1024 * 1024, 2);
        let id = ChunkId::of(&data);
        for (offset, len) in [
            (0u64, 1024u32),
            (1000, 16 * 1024),
            (512 * 1024 + 3, 5000),
            (1024 * 1024 - 16 * 1024, 16 * 1024),
        ] {
            let proof = prove_slice(&data, offset, len).unwrap();
            assert!(proof.len() <= max_proof_len(len), "{} bytes", proof.len());
            let slice = verify_slice(&id, offset, len, &proof).unwrap();
            assert_eq!(slice, &data[offset as usize..][..len as usize]);
        }
        // A chunk shorter than the minimum slice is proven whole.
        let small = chunk(300, 3);
        let proof = prove_slice(&small, 0, 300).unwrap();
        assert_eq!(
            verify_slice(&ChunkId::of(&small), 0, 300, &proof).unwrap(),
            small
        );
    }

    #[test]
    fn a_flipped_byte_anywhere_in_the_proof_fails() {
        let data = chunk(256 * 1024, 4);
        let id = ChunkId::of(&data);
        let (offset, len) = (100 * 1024 + 17, 4096);
        let proof = prove_slice(&data, offset, len).unwrap();
        // Every byte: the header, the parents and the slice's bytes.
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] ^= 0x01;
            assert!(
                verify_slice(&id, offset, len, &bad).is_err(),
                "flipping byte {i} of {} went unnoticed",
                proof.len()
            );
        }
    }

    #[test]
    fn wrong_offset_truncation_other_chunk_and_overlong_proofs_fail() {
        let data = chunk(256 * 1024, 5);
        let id = ChunkId::of(&data);
        let (offset, len) = (64 * 1024, 8192);
        let proof = prove_slice(&data, offset, len).unwrap();

        // The proof of another slice, checked as the one asked for.
        let elsewhere = prove_slice(&data, offset + 8192, len).unwrap();
        assert!(verify_slice(&id, offset, len, &elsewhere).is_err());
        // The right proof checked at another offset.
        assert!(verify_slice(&id, offset + 1024, len, &proof).is_err());

        // Truncated anywhere.
        for cut in [0, 8, 100, proof.len() / 2, proof.len() - 1] {
            assert!(
                verify_slice(&id, offset, len, &proof[..cut]).is_err(),
                "cut at {cut}"
            );
        }

        // The same slice of another chunk.
        let other = chunk(256 * 1024, 6);
        let other_proof = prove_slice(&other, offset, len).unwrap();
        assert!(matches!(
            verify_slice(&id, offset, len, &other_proof),
            Err(ProofError::Invalid { .. })
        ));

        // Longer than any honest proof: refused before decoding.
        let mut long = proof.clone();
        long.resize(max_proof_len(len) + 1, 0);
        assert!(matches!(
            verify_slice(&id, offset, len, &long),
            Err(ProofError::TooLong { .. })
        ));

        // Garbage of every small length never panics.
        for n in 0..200 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            assert!(verify_slice(&id, offset, len, &junk).is_err());
        }
    }

    #[test]
    fn a_slice_past_the_end_is_refused() {
        let data = chunk(10 * 1024, 7);
        let id = ChunkId::of(&data);
        assert!(prove_slice(&data, 9 * 1024, 2048).is_err());
        // A holder that answers with the proof of the tail, claiming it covers more.
        let tail = prove_slice(&data, 9 * 1024, 1024).unwrap();
        assert!(verify_slice(&id, 9 * 1024, 2048, &tail).is_err());
        // Slice bounds.
        assert!(check_slice(0, 0, 10).is_err());
        assert!(check_slice(0, 512, 4096).is_err());
        assert!(check_slice(0, MAX_AUDIT_SLICE + 1, 1 << 20).is_err());
        assert!(check_slice(u64::MAX, 1024, 1 << 20).is_err());
        assert!(check_slice(0, 10, 10).is_ok());
    }
}
