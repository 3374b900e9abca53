// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Eip712, Signatures} from "./Crypto.sol";

/// @title Committee
/// @notice The settlement committee: n signer addresses and a threshold of at least f+1,
/// where n = 3f+1 (so at most f faulty signers can never reach it alone). The settlement
/// and staking contracts ask it whether a digest carries a quorum of signatures.
///
/// A quorum is proved by signatures whose recovered signers are committee members in
/// strictly ascending address order: sorting is the cheap proof that no signer counts twice.
///
/// The committee changes itself by the same rule: `rotate` takes a new signer set and
/// threshold signed (EIP-712 `CommitteeChange`) by a quorum of the current committee, for
/// the current `generation` (so an old change can never be replayed) before a deadline.
contract Committee is Eip712 {
    bytes32 public constant COMMITTEE_CHANGE_TYPEHASH = keccak256(
        "CommitteeChange(address[] signers,uint256 threshold,uint64 generation,uint256 deadline)"
    );

    /// Bumped by every change; signatures name the generation they change.
    uint64 public generation;
    uint256 public threshold;
    address[] private signerList;
    /// 1 + the generation a signer belongs to, 0 if never a member: a rotation need not
    /// clear the old members one by one.
    mapping(address => uint64) private memberOf;

    event CommitteeChanged(uint64 indexed generation, address[] signers, uint256 threshold);

    error BadCommittee();
    error NotEnoughSignatures(uint256 given, uint256 needed);
    error NotASigner(address signer);
    error SignersNotAscending();
    error Expired();

    constructor(address[] memory initialSigners, uint256 initialThreshold)
        Eip712("Xnode Committee", "1")
    {
        _install(initialSigners, initialThreshold);
    }

    function signers() external view returns (address[] memory) {
        return signerList;
    }

    function isSigner(address account) public view returns (bool) {
        return memberOf[account] == generation + 1;
    }

    /// The smallest threshold accepted for `n` signers: f+1 with f = floor((n-1)/3).
    function minThreshold(uint256 n) public pure returns (uint256) {
        return (n - 1) / 3 + 1;
    }

    /// Reverts unless `signatures` hold at least `threshold` signatures over `digest` by
    /// distinct members, listed in ascending signer order. Every signature is checked,
    /// extra ones included, so a malformed list is refused rather than partly used.
    function checkQuorum(bytes32 digest, bytes[] calldata signatures) public view {
        if (signatures.length < threshold) {
            revert NotEnoughSignatures(signatures.length, threshold);
        }
        uint64 current = generation + 1;
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; ++i) {
            address signer = Signatures.recover(digest, signatures[i]);
            if (signer <= previous) revert SignersNotAscending();
            if (memberOf[signer] != current) revert NotASigner(signer);
            previous = signer;
        }
    }

    /// Replaces the committee with `newSigners` and `newThreshold`, signed by a quorum of
    /// the current one.
    function rotate(
        address[] calldata newSigners,
        uint256 newThreshold,
        uint256 deadline,
        bytes[] calldata signatures
    ) external {
        if (block.timestamp > deadline) revert Expired();
        bytes32 structHash = keccak256(
            abi.encode(
                COMMITTEE_CHANGE_TYPEHASH,
                keccak256(abi.encodePacked(newSigners)),
                newThreshold,
                generation,
                deadline
            )
        );
        checkQuorum(_digest(structHash), signatures);
        generation += 1;
        _install(newSigners, newThreshold);
    }

    function _install(address[] memory newSigners, uint256 newThreshold) private {
        uint256 n = newSigners.length;
        if (n == 0 || newThreshold < minThreshold(n) || newThreshold > n) revert BadCommittee();
        uint64 current = generation + 1;
        address previous = address(0);
        for (uint256 i = 0; i < n; ++i) {
            // Ascending and non-zero: no duplicates, and the zero address (what a failed
            // ecrecover yields) is never a member.
            if (newSigners[i] <= previous) revert BadCommittee();
            memberOf[newSigners[i]] = current;
            previous = newSigners[i];
        }
        signerList = newSigners;
        threshold = newThreshold;
        emit CommitteeChanged(generation, newSigners, newThreshold);
    }
}
