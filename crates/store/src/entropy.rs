//! Set digests for anti-entropy: two replicas compare a few bytes instead of their tables.
//!
//! A [`SetDigest`] is the XOR of the BLAKE3 hashes of a set's members. It is updated in
//! O(1) when a member is added or removed (XOR the member's hash in or out), so a replica
//! keeps one per bucket current at every write, and two replicas that hold the same set
//! hold the same digest whatever the order in which the members arrived.
//!
//! XOR of hashes is not collision resistant against a chosen set (a peer can craft members
//! whose hashes cancel), which is acceptable here: a digest only decides whether two
//! replicas *skip* exchanging entries, and a replica that wants to avoid repair can simply
//! not store what it is sent. Nothing is accepted or trusted because two digests match;
//! entries are still validated one by one when they are exchanged.

use serde::{Deserialize, Serialize};

/// How many leaves a bucket's key space is cut into when two replicas' bucket digests
/// differ: the second level of the comparison. 64 leaves of 32 bytes is 2 KiB per answer;
/// a difference in one key then costs re-sending about 1/64 of the bucket.
pub const LEAVES: usize = 64;

/// The XOR of the hashes of a set's members; all zeroes for the empty set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SetDigest(pub [u8; 32]);

impl SetDigest {
    /// Adds or removes (the same operation) a member by its hash.
    pub fn toggle(&mut self, member: &[u8; 32]) {
        for (d, m) in self.0.iter_mut().zip(member) {
            *d ^= m;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0u8; 32]
    }
}

impl std::fmt::Debug for SetDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SetDigest({})", hex::encode(&self.0[..8]))
    }
}

/// The leaf a key belongs to: from the hash of the key alone, so every version of an entry
/// falls in the same leaf on every replica.
pub fn leaf_of(key: &[u8]) -> usize {
    usize::from(blake3::hash(key).as_bytes()[0]) % LEAVES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_order_and_removal_undoes_addition() {
        let a = *blake3::hash(b"a").as_bytes();
        let b = *blake3::hash(b"b").as_bytes();
        let mut x = SetDigest::default();
        x.toggle(&a);
        x.toggle(&b);
        let mut y = SetDigest::default();
        y.toggle(&b);
        y.toggle(&a);
        assert_eq!(x, y);
        y.toggle(&a);
        y.toggle(&b);
        assert!(y.is_empty());
        assert_ne!(x, SetDigest::default());
    }

    #[test]
    fn leaves_are_in_range_and_stable() {
        for i in 0..1000u32 {
            let key = i.to_be_bytes();
            assert!(leaf_of(&key) < LEAVES);
            assert_eq!(leaf_of(&key), leaf_of(&key));
        }
    }
}
