//! Typed bindings generated from the committed contract artifacts, and the EIP-712
//! structs the contracts hash.
//!
//! The contract bindings come from `contracts/out/*.json`, so a change of the Solidity
//! interface that is not rebuilt and committed fails to compile here. The typed structs
//! are written out once more below because EIP-712 hashes them by their Solidity
//! declaration; the tests check that the contracts compute the same digests.

#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol!(
    #[derive(Debug, PartialEq, Eq)]
    XnodeToken,
    "../../contracts/out/XnodeToken.json"
);

alloy::sol!(
    #[derive(Debug, PartialEq, Eq)]
    Committee,
    "../../contracts/out/Committee.json"
);

alloy::sol!(
    #[derive(Debug, PartialEq, Eq)]
    Settlement,
    "../../contracts/out/Settlement.json"
);

alloy::sol!(
    #[derive(Debug, PartialEq, Eq)]
    Staking,
    "../../contracts/out/Staking.json"
);

/// The EIP-712 structs, exactly as the contracts' type hashes declare them.
pub mod typed {
    alloy::sol! {

        /// One tenant's charge for an epoch (`Settlement.CHARGE_TYPEHASH`).
        #[derive(Debug, PartialEq, Eq)]
        struct Charge {
            bytes32 tenant;
            uint256 amount;
        }

        /// An epoch's reward root, its funding and its charges (`Settlement.EPOCH_ROOT_TYPEHASH`).
        #[derive(Debug, PartialEq, Eq)]
        struct EpochRoot {
            uint64 epoch;
            bytes32 rewardsRoot;
            uint256 total;
            Charge[] charges;
            uint256 deadline;
        }

        /// A slash of an operator's bond (`Staking.SLASH_TYPEHASH`).
        #[derive(Debug, PartialEq, Eq)]
        struct Slash {
            address operator;
            uint256 amount;
            uint64 epoch;
            uint256 deadline;
        }

        /// The committee's clearance of an operator's exit (`Staking.EXIT_CLEARANCE_TYPEHASH`):
        /// the unbond it releases (by its `readyAt`), the settled epoch in which the
        /// operator's nodes held nothing, and the last second it may be used.
        #[derive(Debug, PartialEq, Eq)]
        struct ExitClearance {
            address operator;
            uint256 unbondReadyAt;
            uint64 quietEpoch;
            uint256 deadline;
        }

        /// A new committee (`Committee.COMMITTEE_CHANGE_TYPEHASH`).
        #[derive(Debug, PartialEq, Eq)]
        struct CommitteeChange {
            address[] signers;
            uint256 threshold;
            uint64 generation;
            uint256 deadline;
        }
    }
}
