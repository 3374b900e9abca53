//! Unit tests of the exit clearance signing rule: a member signs only what its own
//! ledger state clears, for the epoch it checked, with a near deadline; a vote counts only
//! for the terms asked, from a member; and the call carries exactly the signed terms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolCall};
use xnode_chain::{DomainName, Staking, domain};
use xnode_ledger::{
    Epoch, ExitCheck, ExitRefusal, NodeActivity, NodeDeparture, Penalty, PenaltyLevel,
};
use xnode_types::{NodeId, SecretKey};

use crate::exit::{EXIT_CLEARANCE_VOTE_VERSION, MAX_CLEARANCE_SECONDS, sign_exit_clearance};
use crate::*;

const NOW: u64 = 1_900_000_000;

fn staking_domain() -> Eip712Domain {
    domain(DomainName::Staking, 31_337, Address::repeat_byte(9))
}

fn exiting_node() -> NodeId {
    SecretKey::from_seed(&[1; 32]).unwrap().node_id()
}

fn terms() -> ExitClearanceTerms {
    ExitClearanceTerms {
        operator: Address::repeat_byte(0xc1),
        unbond_ready_at: NOW - 10,
        quiet_epoch: Epoch(12),
        deadline: NOW + 600,
    }
}

/// Signs `asked` with a state in which the node drained in epoch 10 and, in epoch 12,
/// did what `activity` says and suffered `penalties`.
fn sign_with(
    asked: &ExitClearanceTerms,
    activity: NodeActivity,
    penalties: &[Penalty],
    signer: &PrivateKeySigner,
) -> Result<ExitClearanceVote, ExitClearanceError> {
    let departures = [NodeDeparture {
        node: exiting_node(),
        gone_since: Some(Epoch(10)),
    }];
    let activity = BTreeMap::from([(exiting_node(), activity)]);
    let own = ExitCheck {
        quiet_epoch: Epoch(12),
        quiet_epoch_posted: true,
        departures: &departures,
        activity: &activity,
        penalties,
        unpaid_slashes: 0,
    };
    sign_exit_clearance(&own, asked, NOW, &staking_domain(), signer)
}

#[test]
fn a_member_signs_a_clear_exit_and_the_vote_checks() {
    let signer = PrivateKeySigner::random();
    let committee = CommitteeConfig::new(&[signer.address()], 1).unwrap();
    let asked = terms();
    let vote = sign_with(&asked, NodeActivity::default(), &[], &signer).unwrap();
    assert_eq!(vote.v, EXIT_CLEARANCE_VOTE_VERSION);
    vote.check(&asked, &staking_domain(), &committee).unwrap();
    // The call carries exactly the signed terms.
    let call =
        Staking::withdrawClearedCall::abi_decode(&asked.calldata(vec![vote.signature])).unwrap();
    assert_eq!(call.quietEpoch, 12);
    assert_eq!(call.deadline, U256::from(asked.deadline));
}

#[test]
fn a_member_refuses_an_exit_its_own_state_does_not_clear() {
    let signer = PrivateKeySigner::random();
    let asked = terms();
    let stored = NodeActivity {
        storage_byte_hours: 1,
        audits_challenged: 0,
    };
    assert!(matches!(
        sign_with(&asked, stored, &[], &signer),
        Err(ExitClearanceError::NotClear(ExitRefusal::HeldData { .. }))
    ));
    let penalised = Penalty {
        node: exiting_node(),
        score_ppm: 990_000,
        level: PenaltyLevel::Warning,
        ejection: None,
        counted_failures: 1,
        slashed: 0,
        bond_after: 0,
        reward_withheld: 0,
    };
    assert!(matches!(
        sign_with(&asked, NodeActivity::default(), &[penalised], &signer),
        Err(ExitClearanceError::NotClear(ExitRefusal::Penalised { .. }))
    ));
    // Another epoch than the one the member checked.
    let other_epoch = ExitClearanceTerms {
        quiet_epoch: Epoch(13),
        ..asked
    };
    assert!(matches!(
        sign_with(&other_epoch, NodeActivity::default(), &[], &signer),
        Err(ExitClearanceError::OtherEpoch {
            ours: 12,
            asked: 13
        })
    ));
    // A past deadline, or one too far ahead, is refused.
    for deadline in [NOW - 1, NOW + MAX_CLEARANCE_SECONDS + 1, u64::MAX] {
        let asked = ExitClearanceTerms { deadline, ..asked };
        assert!(matches!(
            sign_with(&asked, NodeActivity::default(), &[], &signer),
            Err(ExitClearanceError::Deadline { .. })
        ));
    }
}

#[test]
fn a_vote_counts_only_for_the_terms_asked_from_a_member() {
    let member = PrivateKeySigner::random();
    let outsider = PrivateKeySigner::random();
    let committee = CommitteeConfig::new(&[member.address()], 1).unwrap();
    let asked = terms();
    let vote = sign_with(&asked, NodeActivity::default(), &[], &member).unwrap();
    // Other terms: another unbond, another operator.
    for other in [
        ExitClearanceTerms {
            unbond_ready_at: asked.unbond_ready_at + 1,
            ..asked
        },
        ExitClearanceTerms {
            operator: Address::repeat_byte(0xc2),
            ..asked
        },
    ] {
        assert!(matches!(
            vote.check(&other, &staking_domain(), &committee),
            Err(ExitClearanceError::OtherVote)
        ));
        // Terms edited to match do not match the signature.
        let mut edited = vote.clone();
        edited.terms = other;
        assert!(matches!(
            edited.check(&other, &staking_domain(), &committee),
            Err(ExitClearanceError::BadSigner)
        ));
    }
    // Signed by a key outside the committee.
    let outside = sign_with(&asked, NodeActivity::default(), &[], &outsider).unwrap();
    assert!(matches!(
        outside.check(&asked, &staking_domain(), &committee),
        Err(ExitClearanceError::BadSigner)
    ));
    // Another contract's domain.
    let elsewhere = domain(DomainName::Staking, 31_337, Address::repeat_byte(8));
    assert!(matches!(
        vote.check(&asked, &elsewhere, &committee),
        Err(ExitClearanceError::BadSigner)
    ));
    // A future format version, or a truncated signature.
    let mut future = vote.clone();
    future.v = EXIT_CLEARANCE_VOTE_VERSION + 1;
    assert!(matches!(
        future.check(&asked, &staking_domain(), &committee),
        Err(ExitClearanceError::UnsupportedVersion(_))
    ));
    let mut short = vote;
    short.signature = Bytes::from(vec![1, 2, 3]);
    assert!(short.check(&asked, &staking_domain(), &committee).is_err());
}

#[test]
fn epoch_records_keep_activity_and_older_records_read_back_without_it() {
    let mut record = EpochRecord::new(Epoch(12));
    record.status = EpochStatus::Posted;
    let bytes = xnode_wire::encode(&record).unwrap();
    // A version 2 record is this one without the trailing (empty) activity list.
    let mut old = bytes[..bytes.len() - 1].to_vec();
    old[1] = 2;
    assert_eq!(
        xnode_wire::decode::<EpochRecord>(&old, 1 << 20).unwrap(),
        record
    );
    // A version 1 record (no votes here) also lacks the context and the penalties, and
    // migrates through version 2.
    let mut v1 = bytes[..bytes.len() - 3].to_vec();
    v1[1] = 1;
    assert_eq!(
        xnode_wire::decode::<EpochRecord>(&v1, 1 << 20).unwrap(),
        record
    );
    record.activity = vec![(
        exiting_node(),
        NodeActivity {
            storage_byte_hours: 5,
            audits_challenged: 2,
        },
    )];
    let bytes = xnode_wire::encode(&record).unwrap();
    assert_eq!(
        xnode_wire::decode::<EpochRecord>(&bytes, 1 << 20).unwrap(),
        record
    );
}
