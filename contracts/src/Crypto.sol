// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice ECDSA recovery of 65-byte `r ‖ s ‖ v` signatures, refusing malleable ones.
library Signatures {
    /// Half the secp256k1 group order: a valid `s` above it has a twin `n - s` that verifies
    /// too, so only the lower one is accepted (as OpenZeppelin's ECDSA does).
    uint256 private constant HALF_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    error BadSignature();

    /// The signer of `digest`; reverts on a malformed, malleable or unrecoverable signature.
    function recover(bytes32 digest, bytes calldata signature) internal pure returns (address) {
        if (signature.length != 65) revert BadSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert BadSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert BadSignature();
        return signer;
    }
}

/// @notice Merkle proofs as the ledger builds them (`crates/ledger/src/merkle.rs`), which is
/// OpenZeppelin's `MerkleProof` with sorted pair hashing: no left/right flags.
library MerkleProofs {
    function verify(bytes32[] calldata proof, bytes32 root, bytes32 leaf)
        internal
        pure
        returns (bool)
    {
        bytes32 node = leaf;
        for (uint256 i = 0; i < proof.length; ++i) {
            node = hashPair(node, proof[i]);
        }
        return node == root;
    }

    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32 out) {
        (bytes32 low, bytes32 high) = a < b ? (a, b) : (b, a);
        assembly ("memory-safe") {
            mstore(0x00, low)
            mstore(0x20, high)
            out := keccak256(0x00, 0x40)
        }
    }
}

/// @notice EIP-712 domain separation: every signed struct names this contract, its chain
/// and the protocol version, so a signature for one contract or chain is useless on another.
abstract contract Eip712 {
    bytes32 private constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    bytes32 private immutable nameHash;
    bytes32 private immutable versionHash;

    constructor(string memory name, string memory version) {
        nameHash = keccak256(bytes(name));
        versionHash = keccak256(bytes(version));
    }

    /// Computed on every call rather than cached, so a chain fork with a new chain id
    /// never accepts signatures made for the old one.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, nameHash, versionHash, block.chainid, address(this))
        );
    }

    /// `keccak256("\x19\x01" ‖ domainSeparator ‖ structHash)`, what signers sign.
    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }
}
