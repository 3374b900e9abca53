//! Fast, deterministic lookups of node ids and keys by a 64-bit fingerprint.
//!
//! An epoch looks up a million receipts' tenants and providers. Binary searches that
//! compare whole 80-byte node ids miss the cache at almost every step; comparing an inline
//! `u64` first keeps the search in a small array. A fingerprint only *orders* the search:
//! equal fingerprints fall back to comparing the full ids, so results never depend on a
//! fingerprint collision, and a flood of ids crafted to share one fingerprint costs a
//! binary search over them, not a linear scan. No hashing with secret or random seeds is
//! involved, so nothing here depends on anything but the input.

use xnode_types::{NodeId, PublicKeyBytes};

/// The last 8 bytes of a node id's multihash digest (the tail of the key for ed25519
/// ids), as a big-endian integer.
pub(crate) fn node_fingerprint(node: &NodeId) -> u64 {
    let peer = node.peer_id();
    let digest = peer.as_ref().digest();
    let mut tail = [0u8; 8];
    let take = digest.len().min(8);
    tail[8 - take..].copy_from_slice(&digest[digest.len() - take..]);
    u64::from_be_bytes(tail)
}

/// The first 8 bytes of a public key, as a big-endian integer.
pub(crate) fn key_fingerprint(key: &PublicKeyBytes) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&key.0[..8]);
    u64::from_be_bytes(head)
}

/// Positions of a list of ids, searchable by fingerprint, each id stored inline.
///
/// Fingerprints are uniformly spread (they are key bytes), so a fingerprint's rank is
/// about `fingerprint / 2^64 × len`: the search starts there and gallops outwards, which
/// costs one cache miss for ordinary ids. Crafted fingerprints that bunch together cost a
/// galloping then binary search, `O(log n)`, never a scan; ids sharing a fingerprint are
/// told apart by a binary search on the full id.
pub(crate) struct FingerprintIndex<K> {
    /// `(fingerprint, id, position in the indexed list)`, sorted.
    entries: Vec<(u64, K, u32)>,
}

impl<K: Ord> FingerprintIndex<K> {
    /// Indexes `(fingerprint, id)` pairs; `find` returns positions in this order.
    pub(crate) fn new(items: impl Iterator<Item = (u64, K)>) -> Self {
        let mut entries: Vec<(u64, K, u32)> = items
            .enumerate()
            .map(|(position, (fingerprint, id))| {
                (fingerprint, id, u32::try_from(position).unwrap_or(u32::MAX))
            })
            .collect();
        entries.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Self { entries }
    }

    /// The position of `id` in the indexed list, if it is there.
    pub(crate) fn find(&self, fingerprint: u64, id: &K) -> Option<usize> {
        let entries = &self.entries;
        let below = |index: usize| entries[index].0 < fingerprint;
        let first = self.lower_bound(fingerprint, below)?;
        let to_position = |entry: &(u64, K, u32)| usize::try_from(entry.2).unwrap_or(usize::MAX);
        let candidate = entries.get(first)?;
        if candidate.0 != fingerprint {
            return None;
        }
        if candidate.1 == *id {
            return Some(to_position(candidate));
        }
        // Another id shares the fingerprint: binary search on (fingerprint, id).
        let rest = &entries[first..];
        rest.binary_search_by(|entry| (entry.0, &entry.1).cmp(&(fingerprint, id)))
            .ok()
            .map(|found| to_position(&rest[found]))
    }

    /// The first index whose fingerprint is not below `fingerprint` (may be `len`),
    /// found by galloping from the interpolated rank; `None` if the index is empty.
    fn lower_bound(&self, fingerprint: u64, below: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        let rank = (u128::from(fingerprint) * len as u128) >> 64;
        let guess = usize::try_from(rank).unwrap_or(len - 1).min(len - 1);
        // Narrow to [low, high) with every index < low below and index high not below
        // (or high == len), then binary search inside.
        let (low, high) = if below(guess) {
            let (mut low, mut step) = (guess + 1, 1usize);
            loop {
                let probe = low.saturating_add(step - 1);
                if probe >= len {
                    break (low, len);
                }
                if !below(probe) {
                    break (low, probe);
                }
                low = probe + 1;
                step = step.saturating_mul(2);
            }
        } else {
            let (mut high, mut step) = (guess, 1usize);
            loop {
                if high == 0 {
                    break (0, 0);
                }
                let probe = high.saturating_sub(step);
                if below(probe) {
                    break (probe + 1, high);
                }
                high = probe;
                step = step.saturating_mul(2);
            }
        };
        Some(low + partition(low, high, &below))
    }
}

/// How many indexes of `low..high` satisfy the monotone `below` (binary search).
fn partition(low: usize, high: usize, below: &impl Fn(usize) -> bool) -> usize {
    let (mut first, mut last) = (low, high);
    while first < last {
        let middle = first + (last - first) / 2;
        if below(middle) {
            first = middle + 1;
        } else {
            last = middle;
        }
    }
    first - low
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all(fingerprints: &[u64]) {
        let items: Vec<(u64, u32)> = fingerprints
            .iter()
            .enumerate()
            .map(|(id, fp)| (*fp, u32::try_from(id).unwrap()))
            .collect();
        let index = FingerprintIndex::new(items.iter().copied());
        for (position, (fingerprint, id)) in items.iter().enumerate() {
            assert_eq!(index.find(*fingerprint, id), Some(position));
        }
        assert_eq!(index.find(12345, &u32::MAX), None);
        assert_eq!(index.find(u64::MAX, &u32::MAX), None);
        assert_eq!(index.find(0, &u32::MAX), None);
    }

    #[test]
    fn finds_every_id_whatever_the_fingerprint_spread() {
        check_all(&[]);
        check_all(&[0]);
        check_all(&[u64::MAX]);
        let spread: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        check_all(&spread);
        // Bunched at one end, and heavy collisions: galloping and the id fallback.
        let bunched: Vec<u64> = (0..1000u64).map(|i| i / 7).collect();
        check_all(&bunched);
        let top: Vec<u64> = (0..1000u64).map(|i| u64::MAX - i / 3).collect();
        check_all(&top);
        check_all(&[5; 100]);
    }

    #[test]
    fn key_and_node_fingerprints_differ_between_ids() {
        let a = xnode_types::SecretKey::from_seed(&[1; 32]).unwrap();
        let b = xnode_types::SecretKey::from_seed(&[2; 32]).unwrap();
        assert_ne!(
            node_fingerprint(&a.node_id()),
            node_fingerprint(&b.node_id())
        );
        assert_ne!(key_fingerprint(&a.public()), key_fingerprint(&b.public()));
    }
}
