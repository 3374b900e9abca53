//! The reward table's Merkle tree, verifiable by OpenZeppelin's `MerkleProof`.
//!
//! A Solidity rewards contract stores one root per epoch and pays a claim that proves its
//! `(epoch, account, amount)` leaf is under that root, so every claim costs a few hashes
//! instead of a table on chain. The hashing follows OpenZeppelin's `StandardMerkleTree`:
//!
//! - leaf = `keccak256(bytes.concat(keccak256(abi.encode(uint64 epoch, address account,
//!   uint256 amount))))`: 96 bytes of ABI words (epoch and amount big-endian and
//!   left-padded to 32 bytes, the 20-byte address left-padded with 12 zero bytes), hashed
//!   twice so a leaf can never be mistaken for an inner node;
//! - inner node = `keccak256(min(a, b) ‖ max(a, b))` (pairs sorted, as `MerkleProof`'s
//!   commutative hash expects, so proofs need no left/right flags);
//! - leaves sorted ascending by hash (a canonical order independent of input order);
//!   each layer pairs neighbours, and an odd last node is promoted unhashed to the next
//!   layer (its proof simply has no element for that layer).
//!
//! An empty table has the all-zero root (which no claim can prove against).

use sha3::{Digest, Keccak256};

use crate::params::Epoch;

/// A 32-byte keccak256 hash.
pub type Hash = [u8; 32];

/// keccak256 of `data`.
pub fn keccak256(data: &[u8]) -> Hash {
    Keccak256::digest(data).into()
}

/// `abi.encode(uint64 epoch, address account, uint256 amount)`: three 32-byte words.
pub fn abi_encode_leaf(epoch: Epoch, account: &[u8; 20], amount: u128) -> [u8; 96] {
    let mut words = [0u8; 96];
    words[24..32].copy_from_slice(&epoch.0.to_be_bytes());
    words[44..64].copy_from_slice(account);
    words[80..96].copy_from_slice(&amount.to_be_bytes());
    words
}

/// The leaf of `(epoch, account, amount)`, double-hashed as in `StandardMerkleTree`.
pub fn leaf_hash(epoch: Epoch, account: &[u8; 20], amount: u128) -> Hash {
    keccak256(&keccak256(&abi_encode_leaf(epoch, account, amount)))
}

/// `keccak256(min(a, b) ‖ max(a, b))`, OpenZeppelin's commutative pair hash.
pub fn hash_pair(a: &Hash, b: &Hash) -> Hash {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut joined = [0u8; 64];
    joined[..32].copy_from_slice(low);
    joined[32..].copy_from_slice(high);
    keccak256(&joined)
}

/// Whether `proof` leads from `leaf` to `root` (what `MerkleProof.verify` computes).
pub fn verify_proof(root: &Hash, leaf: &Hash, proof: &[Hash]) -> bool {
    let computed = proof
        .iter()
        .fold(*leaf, |node, sibling| hash_pair(&node, sibling));
    &computed == root
}

/// A Merkle tree over a set of leaves, every layer kept for proofs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    /// `layers[0]` holds the sorted leaves, the last layer holds the root alone.
    layers: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree; the leaves are sorted first, so their order does not matter.
    pub fn new(mut leaves: Vec<Hash>) -> Self {
        leaves.sort_unstable();
        let mut layers = vec![leaves];
        while let Some(layer) = layers.last() {
            if layer.len() <= 1 {
                break;
            }
            let next: Vec<Hash> = layer
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => hash_pair(left, right),
                    [odd] => *odd,
                    _ => [0; 32],
                })
                .collect();
            layers.push(next);
        }
        Self { layers }
    }

    /// The root; all zeros for an empty tree.
    pub fn root(&self) -> Hash {
        self.layers
            .last()
            .and_then(|layer| layer.first())
            .copied()
            .unwrap_or([0; 32])
    }

    /// The proof for `leaf`, or `None` if it is not in the tree.
    pub fn proof(&self, leaf: &Hash) -> Option<Vec<Hash>> {
        let mut index = self.layers.first()?.binary_search(leaf).ok()?;
        let mut proof = Vec::with_capacity(self.layers.len());
        for layer in &self.layers[..self.layers.len().saturating_sub(1)] {
            let sibling = index ^ 1;
            if let Some(hash) = layer.get(sibling) {
                proof.push(*hash);
            }
            index /= 2;
        }
        Some(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a value as one 32-byte big-endian ABI word, independently of the code above.
    fn word(value_be: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[32 - value_be.len()..].copy_from_slice(value_be);
        out
    }

    #[test]
    fn leaf_matches_a_hand_made_abi_encoding() {
        let account: [u8; 20] =
            *b"\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00\x01\x02\x03\x04";
        let mut encoded = Vec::new();
        encoded.extend_from_slice(&word(&[0x2a])); // uint64 epoch = 42
        encoded.extend_from_slice(&word(&account)); // address, left-padded
        encoded.extend_from_slice(&word(&[0x0d, 0xe0, 0xb6, 0xb3, 0xa7, 0x64, 0x00, 0x00])); // 1e18
        assert_eq!(encoded.len(), 96);
        assert_eq!(
            &encoded[..],
            &abi_encode_leaf(Epoch(42), &account, 10u128.pow(18))[..]
        );
        let expected = keccak256(&keccak256(&encoded));
        assert_eq!(leaf_hash(Epoch(42), &account, 10u128.pow(18)), expected);
    }

    fn from_hex(text: &str) -> Hash {
        let mut out = [0u8; 32];
        for (index, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 + 2 * index..4 + 2 * index], 16).unwrap();
        }
        out
    }

    /// Vectors printed by `@openzeppelin/merkle-tree` 1.0.8:
    /// `StandardMerkleTree.of(values, ["uint64", "address", "uint256"])`.
    #[test]
    fn matches_openzeppelin_standard_merkle_tree() {
        let account: [u8; 20] = [
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
            0xff, 0x00, 0x01, 0x02, 0x03, 0x04,
        ];
        assert_eq!(
            leaf_hash(Epoch(42), &account, 10u128.pow(18)),
            from_hex("0xdb71ef4d787e6dbe94484d5266c7935d3c3bbb29f147caa81b1a9de34489f554")
        );
        // Three leaves: the shapes of both trees coincide, so the roots are equal.
        let leaves = (1..=3u8)
            .map(|i| leaf_hash(Epoch(9), &[i; 20], 1000 * u128::from(i)))
            .collect();
        let tree = MerkleTree::new(leaves);
        assert_eq!(
            tree.root(),
            from_hex("0x1d7cd6cf8a1249d8f8de5f3733764f91d8935bf229d11cffe4806b49257670e7")
        );
        // OpenZeppelin's proofs, leaf by leaf: ours are the same siblings.
        let expected_proofs: [(u8, &[&str]); 3] = [
            (
                1,
                &["0x561b1ac9cc620fa70208e0709db5c24be4508c1f34b0fa8d71968db882381c3e"],
            ),
            (
                2,
                &[
                    "0x1ae2c552a3ec39ce9c28899ae66354b06df80f5977083c938a942fa32af3e6c7",
                    "0x95efa06cbf5c6a77bbe6f22eaebab1a5772fd9cb5df12aaf892b6fa27117333c",
                ],
            ),
            (
                3,
                &[
                    "0x2d12ed332195e85a64e0a1a3a77c81cca70ace39d572171e38a5be9a66de88bc",
                    "0x95efa06cbf5c6a77bbe6f22eaebab1a5772fd9cb5df12aaf892b6fa27117333c",
                ],
            ),
        ];
        for (i, proof) in expected_proofs {
            let leaf = leaf_hash(Epoch(9), &[i; 20], 1000 * u128::from(i));
            let expected: Vec<Hash> = proof.iter().map(|hex| from_hex(hex)).collect();
            assert_eq!(tree.proof(&leaf).unwrap(), expected, "leaf {i}");
        }
    }

    #[test]
    fn keccak_is_ethereum_keccak_not_sha3() {
        // keccak256("") as every Ethereum tool prints it.
        assert_eq!(
            keccak256(b""),
            [
                0xc5, 0xd2, 0x46, 0x01, 0x86, 0xf7, 0x23, 0x3c, 0x92, 0x7e, 0x7d, 0xb2, 0xdc, 0xc7,
                0x03, 0xc0, 0xe5, 0x00, 0xb6, 0x53, 0xca, 0x82, 0x27, 0x3b, 0x7b, 0xfa, 0xd8, 0x04,
                0x5d, 0x85, 0xa4, 0x70
            ]
        );
    }

    #[test]
    fn every_leaf_proves_and_others_do_not() {
        for count in 0..=17u8 {
            let leaves: Vec<Hash> = (0..count)
                .map(|i| leaf_hash(Epoch(1), &[i; 20], u128::from(i) + 1))
                .collect();
            let tree = MerkleTree::new(leaves.clone());
            let root = tree.root();
            for leaf in &leaves {
                let proof = tree.proof(leaf).unwrap();
                assert!(verify_proof(&root, leaf, &proof), "{count} leaves");
            }
            let outsider = leaf_hash(Epoch(1), &[0xee; 20], 5);
            assert_eq!(tree.proof(&outsider), None);
            if count > 0 {
                let any_proof = tree.proof(&leaves[0]).unwrap();
                assert!(!verify_proof(&root, &outsider, &any_proof));
            } else {
                assert_eq!(root, [0; 32]);
            }
        }
    }

    #[test]
    fn small_trees_have_the_expected_shape() {
        let a = leaf_hash(Epoch(1), &[1; 20], 1);
        let b = leaf_hash(Epoch(1), &[2; 20], 2);
        let c = leaf_hash(Epoch(1), &[3; 20], 3);
        assert_eq!(MerkleTree::new(vec![a]).root(), a);
        assert_eq!(MerkleTree::new(vec![b, a]).root(), hash_pair(&a, &b));
        let mut sorted = [a, b, c];
        sorted.sort_unstable();
        let expected = hash_pair(&hash_pair(&sorted[0], &sorted[1]), &sorted[2]);
        assert_eq!(MerkleTree::new(vec![c, a, b]).root(), expected);
    }
}
