//! Unit tests of the slash signing rule: a member signs a slash only if its own posted
//! table takes exactly that amount from that operator in that epoch, with the agreed
//! deadline; a vote is accepted only for the terms asked, from a member, with a signature
//! that recovers to it; and the call carries exactly the signed terms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolCall};
use xnode_chain::{DomainName, Staking, domain};
use xnode_ledger::{Epoch, Penalty, PenaltyLevel};
use xnode_types::SecretKey;

use crate::slash::{SlashTerms, sign_slash, slashes_of};
use crate::*;

const EXTRA: u64 = 3_600;

fn staking_domain() -> Eip712Domain {
    domain(DomainName::Staking, 31_337, Address::repeat_byte(9))
}

fn penalty(node: xnode_types::NodeId, slashed: u128) -> Penalty {
    Penalty {
        node,
        score_ppm: 900_000,
        level: PenaltyLevel::Reduced,
        ejection: None,
        counted_failures: 3,
        slashed,
        bond_after: 1_000,
        reward_withheld: 0,
    }
}

/// A posted record of epoch 7 slashing `cheater` by 500 (and a warned node by nothing),
/// with the operators' payout addresses.
fn posted() -> (EpochRecord, Vec<OperatorPayout>, Address) {
    let cheater = SecretKey::from_seed(&[1; 32]).unwrap().node_id();
    let warned = SecretKey::from_seed(&[2; 32]).unwrap().node_id();
    let operator = Address::repeat_byte(0xc1);
    let mut record = EpochRecord::new(Epoch(7));
    record.status = EpochStatus::Posted;
    record.deadline = 1_000_000;
    record.penalties = vec![penalty(cheater, 500), penalty(warned, 0)];
    let operators = vec![
        OperatorPayout {
            node: cheater,
            payout: operator,
        },
        OperatorPayout {
            node: warned,
            payout: Address::repeat_byte(0xc2),
        },
    ];
    (record, operators, operator)
}

fn own_terms(record: &EpochRecord, operators: &[OperatorPayout]) -> Vec<SlashTerms> {
    slashes_of(record, operators, EXTRA)
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

#[test]
fn a_posted_table_asks_for_its_nonzero_slashes_with_the_agreed_deadline() {
    let (mut record, operators, operator) = posted();
    let own = own_terms(&record, &operators);
    assert_eq!(
        own,
        vec![SlashTerms {
            operator,
            amount: 500,
            epoch: Epoch(7),
            deadline: 1_000_000 + EXTRA,
        }]
    );
    // A table not posted yet asks for nothing: its root may still change.
    record.status = EpochStatus::Quorum;
    assert!(own_terms(&record, &operators).is_empty());
    // A node without a payout address has no bond the ledger knows of.
    let (record, _, _) = posted();
    assert!(own_terms(&record, &operators[1..]).is_empty());
}

#[test]
fn a_member_signs_only_the_slashes_its_own_table_takes() {
    let (record, operators, operator) = posted();
    let own = own_terms(&record, &operators);
    let signer = PrivateKeySigner::random();
    let committee = CommitteeConfig::new(&[signer.address()], 1).unwrap();
    let asked = own[0];

    let vote = sign_slash(&own, &asked, &staking_domain(), &signer).unwrap();
    vote.check(&asked, &staking_domain(), &committee).unwrap();

    // Another amount (more or less), another deadline, another epoch, another operator,
    // or a table that does not take it at all: refused.
    for wrong in [
        SlashTerms {
            amount: 501,
            ..asked
        },
        SlashTerms {
            amount: 499,
            ..asked
        },
        SlashTerms {
            deadline: asked.deadline + 1,
            ..asked
        },
        SlashTerms {
            epoch: Epoch(8),
            ..asked
        },
        SlashTerms {
            operator: Address::repeat_byte(0xc2),
            ..asked
        },
    ] {
        let refused = sign_slash(&own, &wrong, &staking_domain(), &signer);
        assert!(
            matches!(
                refused,
                Err(SlashError::OtherTerms { .. } | SlashError::NotInTable { .. })
            ),
            "{wrong:?}: {refused:?}"
        );
    }
    let mut unposted = record.clone();
    unposted.status = EpochStatus::Voted;
    assert!(matches!(
        sign_slash(
            &own_terms(&unposted, &operators),
            &asked,
            &staking_domain(),
            &signer
        ),
        Err(SlashError::NotInTable { .. })
    ));
    assert_eq!(asked.operator, operator);
}

#[test]
fn a_slash_vote_counts_only_for_the_terms_asked_from_a_member() {
    let (record, operators, _) = posted();
    let own = own_terms(&record, &operators);
    let asked = own[0];
    let member = PrivateKeySigner::random();
    let outsider = PrivateKeySigner::random();
    let committee = CommitteeConfig::new(&[member.address()], 1).unwrap();

    let vote = sign_slash(&own, &asked, &staking_domain(), &member).unwrap();
    // Checked against other terms than the ones asked.
    let other = SlashTerms { amount: 1, ..asked };
    assert!(matches!(
        vote.check(&other, &staking_domain(), &committee),
        Err(SlashError::OtherVote)
    ));
    // Terms edited after signing: the signature no longer recovers to the signer.
    let mut edited = vote.clone();
    edited.terms.amount = 1;
    assert!(matches!(
        edited.check(&other, &staking_domain(), &committee),
        Err(SlashError::BadSigner)
    ));
    // Signed for another contract.
    let elsewhere = domain(DomainName::Staking, 31_337, Address::repeat_byte(8));
    let foreign = sign_slash(&own, &asked, &elsewhere, &member).unwrap();
    assert!(matches!(
        foreign.check(&asked, &staking_domain(), &committee),
        Err(SlashError::BadSigner)
    ));
    // Signed by a key outside the committee.
    let outside = sign_slash(&own, &asked, &staking_domain(), &outsider).unwrap();
    assert!(matches!(
        outside.check(&asked, &staking_domain(), &committee),
        Err(SlashError::BadSigner)
    ));
    // Another format version.
    let mut future = vote.clone();
    future.v = 2;
    assert!(matches!(
        future.check(&asked, &staking_domain(), &committee),
        Err(SlashError::UnsupportedVersion(2))
    ));
    // A malformed signature.
    let mut short = vote;
    short.signature = Bytes::from(vec![1, 2, 3]);
    assert!(short.check(&asked, &staking_domain(), &committee).is_err());
}

#[test]
fn the_slash_call_carries_exactly_the_signed_terms() {
    let (record, operators, operator) = posted();
    let asked = own_terms(&record, &operators)[0];
    let signatures = vec![Bytes::from(vec![7; 65])];
    let call = Staking::slashCall::abi_decode(&asked.calldata(signatures.clone())).unwrap();
    assert_eq!(call.operator, operator);
    assert_eq!(call.amount, U256::from(500));
    assert_eq!(call.epoch, 7);
    assert_eq!(call.deadline, U256::from(1_000_000 + EXTRA));
    assert_eq!(call.signatures, signatures);
}

#[test]
fn a_slash_record_survives_encoding_and_older_settle_messages_still_decode() {
    let (record, operators, _) = posted();
    let (node, terms) = slashes_of(&record, &operators, EXTRA)[0];
    let mut outcome = SlashOutcome::pending(node, terms);
    assert!(!outcome.is_final());
    outcome.status = SlashStatus::Taken;
    outcome.taken = Some(500);
    assert!(outcome.is_final());
    let slashes = EpochSlashes {
        epoch: 7,
        slashes: vec![outcome],
    };
    let bytes = xnode_wire::encode(&slashes).unwrap();
    assert_eq!(
        xnode_wire::decode::<EpochSlashes>(&bytes, 1 << 20).unwrap(),
        slashes
    );
    // Requests of versions 1 and 2 and responses of versions 2 and 3 (before
    // `SlashSignature` and `ExitClearance` were appended) still decode.
    let request = proto::SettleRequest::Vote { epoch: Epoch(7) };
    for version in [1, 2] {
        let mut old = xnode_wire::encode(&request).unwrap();
        old[1] = version;
        assert_eq!(
            xnode_wire::decode::<proto::SettleRequest>(&old, 1 << 20).unwrap(),
            request
        );
    }
    let response = proto::SettleResponse::Vote(None);
    for version in [2, 3] {
        let mut old = xnode_wire::encode(&response).unwrap();
        old[1] = version;
        assert_eq!(
            xnode_wire::decode::<proto::SettleResponse>(&old, 1 << 20).unwrap(),
            response
        );
    }
}
