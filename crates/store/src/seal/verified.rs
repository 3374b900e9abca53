//! A bounded memory of seals whose signatures this node has already checked, so an entry
//! seen again (the same bytes from a second replica, or in the next listing page) costs a
//! hash instead of two ed25519 verifications.
//!
//! A seal is remembered by a digest that covers everything its signatures cover: the
//! signing text (the hash of the entry's path, version, writer, contents and authority,
//! the tenant's request proof and its signature included), the writer's key and the
//! writer's signature. Two entries share a digest only if they share all of those bytes,
//! so a remembered digest never vouches for bytes this node did not verify. Only the
//! signatures are remembered: the checks that depend on the moment or on the registry
//! (a request's window, a compute authority) run every time.

use std::collections::HashSet;
use std::sync::Mutex;

use xnode_types::{PublicKeyBytes, SignatureBytes, lock};

/// The BLAKE3 key-derivation context of a seal's digest: names what the digest is for.
const DIGEST_CONTEXT: &str = "xnode 2026-11 verified object-metadata seal v1";

/// How many digests one generation holds by default: two generations of 100,000 digests
/// take about 8 MB, and hold every entry of a 100,000-key listing.
pub const DEFAULT_VERIFIED_SEALS_PER_GENERATION: usize = 100_000;

/// The digest a verified seal is remembered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SealDigest([u8; 32]);

impl SealDigest {
    /// The digest of a seal whose writer signed `signing_text` with `writer_key`.
    pub fn new(
        signing_text: &[u8],
        writer_key: &PublicKeyBytes,
        signature: &SignatureBytes,
    ) -> SealDigest {
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        // The signing text has a fixed length (domain line and a 32-byte hash), the key
        // and the signature too, so the concatenation is unambiguous; the length is
        // hashed anyway so that stays true should the text ever change.
        hasher.update(&(signing_text.len() as u64).to_le_bytes());
        hasher.update(signing_text);
        hasher.update(&writer_key.0);
        hasher.update(&signature.0);
        SealDigest(*hasher.finalize().as_bytes())
    }
}

/// Digests of seals whose signatures verified, bounded: a digest is kept while it is in
/// one of the two newest generations, and a lookup that finds it in the older one moves
/// it to the newer (an approximate LRU with no per-entry bookkeeping). When the newer
/// generation is full, the older is dropped whole.
pub struct VerifiedSeals {
    generations: Mutex<Generations>,
    per_generation: usize,
}

#[derive(Default)]
struct Generations {
    newer: HashSet<SealDigest>,
    older: HashSet<SealDigest>,
}

impl Default for VerifiedSeals {
    fn default() -> Self {
        VerifiedSeals::with_capacity(DEFAULT_VERIFIED_SEALS_PER_GENERATION)
    }
}

impl VerifiedSeals {
    /// A memory keeping at most `per_generation` digests in each of its two generations.
    pub fn with_capacity(per_generation: usize) -> VerifiedSeals {
        VerifiedSeals {
            generations: Mutex::new(Generations::default()),
            per_generation: per_generation.max(1),
        }
    }

    /// Whether the seal with this digest verified before (it is then kept longer).
    pub fn contains(&self, digest: &SealDigest) -> bool {
        let mut g = lock(&self.generations);
        if g.newer.contains(digest) {
            return true;
        }
        if g.older.remove(digest) {
            Self::insert_newer(&mut g, *digest, self.per_generation);
            return true;
        }
        false
    }

    /// Remembers that the seal with this digest verified.
    pub fn insert(&self, digest: SealDigest) {
        let mut g = lock(&self.generations);
        Self::insert_newer(&mut g, digest, self.per_generation);
    }

    /// How many digests are remembered.
    pub fn len(&self) -> usize {
        let g = lock(&self.generations);
        g.newer.len().saturating_add(g.older.len())
    }

    /// Whether no digest is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_newer(g: &mut Generations, digest: SealDigest, per_generation: usize) {
        if g.newer.len() >= per_generation && !g.newer.contains(&digest) {
            g.older = std::mem::take(&mut g.newer);
        }
        g.newer.insert(digest);
    }
}
