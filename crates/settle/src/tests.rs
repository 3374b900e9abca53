//! Unit tests: bundles as hostile input, canonical inputs and roots, the set exchange, and
//! the committee's quorum (including against the contract's own digest and recovery).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy::primitives::{Address, B256, U256};
use xnode_chain::{DomainName, SettlementPlan, domain};
use xnode_ledger::{
    AUDIT_VERSION, AuditBody, AuditResult, Epoch, LedgerParams, Price, RECEIPT_VERSION, Receipt,
    ReceiptBody, ReputationState, Resource, Stake, TenantEscrow, compute_epoch,
};
use xnode_types::{SecretKey, SignatureBytes};

use crate::*;

pub(crate) const NET: &str = "settle-test";
pub(crate) const EPOCH: Epoch = Epoch(7);

pub(crate) fn receipt(
    provider: &SecretKey,
    tenant: &SecretKey,
    cumulative: u64,
    seq: u64,
) -> Receipt {
    ReceiptBody {
        v: RECEIPT_VERSION,
        network: NET.to_owned(),
        tenant: tenant.public(),
        provider: provider.node_id(),
        provider_key: provider.public(),
        resource: Resource::FunctionFuel,
        epoch: EPOCH,
        cumulative,
        seq,
    }
    .sign_as_provider(provider)
    .countersign(tenant)
}

pub(crate) fn audit(
    auditor: &SecretKey,
    audited: &SecretKey,
    chunk: u8,
    at_ms: u64,
) -> AuditResult {
    AuditBody {
        v: AUDIT_VERSION,
        network: NET.to_owned(),
        epoch: EPOCH,
        auditor: auditor.node_id(),
        auditor_key: auditor.public(),
        audited: audited.node_id(),
        chunk: [chunk; 32],
        passed: true,
        at_ms,
    }
    .sign(auditor)
}

/// Default parameters with function fuel priced at 1,000 base units per unit.
pub(crate) fn params() -> LedgerParams {
    let mut params = LedgerParams::with_defaults(NET);
    params.prices.function_fuel = Price::new(1_000, 0);
    params
}

pub(crate) fn verified(bundle: EvidenceBundle) -> VerifiedBundle {
    bundle.verify(NET, EPOCH, &BundleLimits::default()).unwrap()
}

/// Four nodes, one tenant; each node served the tenant and audited the next node.
pub(crate) struct World {
    pub(crate) nodes: Vec<SecretKey>,
    pub(crate) tenant: SecretKey,
}

impl World {
    pub(crate) fn new() -> Self {
        Self {
            nodes: (0..4).map(|_| SecretKey::generate()).collect(),
            tenant: SecretKey::generate(),
        }
    }

    /// Node `i`'s bundle: two receipts of its counter (the second supersedes the first)
    /// and one audit of its neighbour.
    pub(crate) fn bundle(&self, i: usize) -> EvidenceBundle {
        let node = &self.nodes[i];
        let cumulative = 1_000 * (i as u64 + 1);
        let receipts = vec![
            receipt(node, &self.tenant, cumulative / 2, 1),
            receipt(node, &self.tenant, cumulative, 2),
        ];
        let audits = vec![audit(node, &self.nodes[(i + 1) % 4], i as u8, 5)];
        EvidenceBundle::sign(node, NET, EPOCH, receipts, audits).unwrap()
    }

    pub(crate) fn stakes(&self) -> Vec<Stake> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| Stake {
                operator: node.node_id(),
                payout_address: [i as u8 + 1; 20],
                bonded: 1_000_000,
                unbonding_at: None,
            })
            .collect()
    }

    pub(crate) fn escrows(&self) -> Vec<TenantEscrow> {
        vec![TenantEscrow {
            tenant: self.tenant.public(),
            balance: 1_000_000_000_000,
        }]
    }

    pub(crate) fn output(&self, set: &EvidenceSet) -> xnode_ledger::EpochOutput {
        let input = set.epoch_input(
            params(),
            self.stakes(),
            self.escrows(),
            ReputationState::default(),
        );
        compute_epoch(&input).unwrap()
    }
}

#[test]
fn a_bundle_round_trips_and_verifies() {
    let world = World::new();
    let bundle = world.bundle(0);
    let bytes = bundle.encode().unwrap();
    let decoded = EvidenceBundle::decode(&bytes, &BundleLimits::default()).unwrap();
    let checked = verified(decoded);
    assert_eq!(checked.receipts().len(), 2);
    assert_eq!(checked.audits().len(), 1);
    assert_eq!(checked.publisher(), &world.nodes[0].node_id());
}

#[test]
fn hostile_bundles_are_refused() {
    let world = World::new();
    let limits = BundleLimits::default();
    let check = |bundle: EvidenceBundle| bundle.verify(NET, EPOCH, &limits);

    let mut forged = world.bundle(0);
    forged.signature = SignatureBytes([7; 64]);
    assert!(matches!(check(forged), Err(BundleError::BadSignature)));

    // A signed bundle whose content was changed afterwards.
    let mut padded = world.bundle(0);
    padded.body.receipts.pop();
    assert!(matches!(check(padded), Err(BundleError::BadSignature)));

    assert!(matches!(
        world.bundle(0).verify(NET, Epoch(8), &limits),
        Err(BundleError::WrongEpoch { .. })
    ));
    assert!(matches!(
        world.bundle(0).verify("other", EPOCH, &limits),
        Err(BundleError::WrongNetwork { .. })
    ));

    // Another node's receipt, re-signed by a publisher that wants to be paid for it.
    let thief = &world.nodes[1];
    let stolen = receipt(&world.nodes[0], &world.tenant, 9_999, 3);
    let bundle = EvidenceBundle::sign(thief, NET, EPOCH, vec![stolen], vec![]).unwrap();
    assert!(matches!(
        check(bundle),
        Err(BundleError::ForeignReceipt { .. })
    ));

    // A receipt the tenant never countersigned: the whole bundle is refused.
    let node = &world.nodes[0];
    let mut unsigned = receipt(node, &world.tenant, 5_000, 9);
    unsigned.tenant_sig = None;
    let bundle = EvidenceBundle::sign(node, NET, EPOCH, vec![unsigned], vec![]).unwrap();
    assert!(matches!(check(bundle), Err(BundleError::Receipt { .. })));

    // A forged tenant signature likewise.
    let mut forged_tenant = receipt(node, &world.tenant, 5_000, 9);
    forged_tenant.tenant_sig = Some(SignatureBytes([3; 64]));
    let bundle = EvidenceBundle::sign(node, NET, EPOCH, vec![forged_tenant], vec![]).unwrap();
    assert!(matches!(check(bundle), Err(BundleError::Receipt { .. })));

    // An audit signed by someone else than the publisher.
    let foreign_audit = audit(&world.nodes[2], &world.nodes[3], 1, 1);
    let bundle = EvidenceBundle::sign(node, NET, EPOCH, vec![], vec![foreign_audit]).unwrap();
    assert!(matches!(
        check(bundle),
        Err(BundleError::ForeignAudit { .. })
    ));

    // Counts and size are checked before any signature.
    let tight = BundleLimits {
        max_bytes: 8 << 20,
        max_receipts: 1,
        max_audits: 1,
    };
    assert!(matches!(
        world.bundle(0).verify(NET, EPOCH, &tight),
        Err(BundleError::TooManyItems { .. })
    ));
    let bytes = world.bundle(0).encode().unwrap();
    let small = BundleLimits {
        max_bytes: bytes.len() - 1,
        ..BundleLimits::default()
    };
    assert!(matches!(
        EvidenceBundle::decode(&bytes, &small),
        Err(BundleError::TooLarge { .. })
    ));
    assert!(matches!(
        EvidenceBundle::decode(&bytes[..bytes.len() / 2], &BundleLimits::default()),
        Err(BundleError::Malformed(_))
    ));
}

#[test]
fn the_same_bundles_in_any_order_give_the_same_root_bit_for_bit() {
    let world = World::new();
    let bundles: Vec<EvidenceBundle> = (0..4).map(|i| world.bundle(i)).collect();
    let mut forward = EvidenceSet::new(EPOCH);
    for bundle in &bundles {
        assert!(forward.insert(verified(bundle.clone())));
    }
    let mut backward = EvidenceSet::new(EPOCH);
    for bundle in bundles.iter().rev() {
        backward.insert(verified(bundle.clone()));
        // A repeat changes nothing.
        assert!(!backward.insert(verified(bundle.clone())));
    }
    assert_eq!(forward.digest(), backward.digest());
    let a = world.output(&forward);
    let b = world.output(&backward);
    assert_eq!(a, b);
    assert_ne!(a.merkle_root, [0; 32]);

    // Each node's superseded receipt counted once: the tenant pays for the latest
    // cumulative of each counter only (1,000 + 2,000 + 3,000 + 4,000 units of fuel).
    assert_eq!(
        a.ignored_receipts.superseded, 0,
        "dropped before the ledger"
    );
    let input = forward.epoch_input(
        params(),
        world.stakes(),
        world.escrows(),
        ReputationState::default(),
    );
    let cumulatives: Vec<u64> = input.receipts.iter().map(|r| r.body().cumulative).collect();
    let mut sorted = cumulatives.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1_000, 2_000, 3_000, 4_000]);
    let mut single = EvidenceSet::new(EPOCH);
    let only_latest = EvidenceBundle::sign(
        &world.nodes[0],
        NET,
        EPOCH,
        vec![receipt(&world.nodes[0], &world.tenant, 1_000, 2)],
        vec![],
    )
    .unwrap();
    single.insert(verified(only_latest));
    let mut with_old = EvidenceSet::new(EPOCH);
    let with_superseded = EvidenceBundle::sign(
        &world.nodes[0],
        NET,
        EPOCH,
        vec![
            receipt(&world.nodes[0], &world.tenant, 1_000, 2),
            receipt(&world.nodes[0], &world.tenant, 500, 1),
            receipt(&world.nodes[0], &world.tenant, 1_000, 2),
        ],
        vec![],
    )
    .unwrap();
    with_old.insert(verified(with_superseded));
    let charge = |set: &EvidenceSet| world.output(set).charge_of(&world.tenant.public());
    assert_eq!(charge(&single), charge(&with_old));
    assert!(charge(&single) > 0);
}

#[test]
fn a_missing_bundle_is_found_by_exchanging_summaries_and_roots_then_agree() {
    let world = World::new();
    let bundles: Vec<EvidenceBundle> = (0..4).map(|i| world.bundle(i)).collect();
    // Member A missed node 3's bundle, member B missed node 0's.
    let mut a = EvidenceSet::new(EPOCH);
    let mut b = EvidenceSet::new(EPOCH);
    for (i, bundle) in bundles.iter().enumerate() {
        if i != 3 {
            a.insert(verified(bundle.clone()));
        }
        if i != 0 {
            b.insert(verified(bundle.clone()));
        }
    }
    assert_ne!(a.digest(), b.digest());
    assert_ne!(world.output(&a).merkle_root, world.output(&b).merkle_root);

    // Each fetches what the other's summary lists and it lacks.
    let a_wants = a.wanted_from(&b.summary());
    let b_wants = b.wanted_from(&a.summary());
    assert_eq!(
        a_wants,
        vec![(
            world.nodes[3].node_id(),
            b.get(&world.nodes[3].node_id()).unwrap().digest()
        )]
    );
    assert_eq!(b_wants.len(), 1);
    for (publisher, _) in &a_wants {
        a.insert(b.get(publisher).unwrap().clone());
    }
    for (publisher, _) in &b_wants {
        b.insert(a.get(publisher).unwrap().clone());
    }
    assert_eq!(a.digest(), b.digest());
    assert!(a.wanted_from(&b.summary()).is_empty());
    assert_eq!(world.output(&a), world.output(&b));
}

#[test]
fn an_equivocating_publisher_ends_with_one_bundle_everywhere() {
    let world = World::new();
    let node = &world.nodes[0];
    let first = EvidenceBundle::sign(
        node,
        NET,
        EPOCH,
        vec![receipt(node, &world.tenant, 10, 1)],
        vec![],
    )
    .unwrap();
    let second = EvidenceBundle::sign(
        node,
        NET,
        EPOCH,
        vec![receipt(node, &world.tenant, 20, 2)],
        vec![],
    )
    .unwrap();
    let mut a = EvidenceSet::new(EPOCH);
    a.insert(verified(first.clone()));
    let mut b = EvidenceSet::new(EPOCH);
    b.insert(verified(second.clone()));
    for (publisher, _) in a.wanted_from(&b.summary()) {
        a.insert(b.get(&publisher).unwrap().clone());
    }
    for (publisher, _) in b.wanted_from(&a.summary()) {
        b.insert(a.get(&publisher).unwrap().clone());
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.len(), 1);
}

pub(crate) fn committee(
    n: usize,
) -> (Vec<SecretKey>, Vec<alloy::signers::local::PrivateKeySigner>) {
    let nodes: Vec<SecretKey> = (0..n).map(|_| SecretKey::generate()).collect();
    let signers = nodes.iter().map(committee_signer).collect();
    (nodes, signers)
}

#[test]
fn committee_keys_are_derived_deterministically_and_per_node() {
    let (nodes, signers) = committee(2);
    assert_eq!(committee_signer(&nodes[0]).address(), signers[0].address());
    assert_ne!(signers[0].address(), signers[1].address());
}

#[test]
fn fewer_than_f_plus_one_agreeing_votes_release_nothing() {
    let world = World::new();
    let mut set = EvidenceSet::new(EPOCH);
    for i in 0..4 {
        set.insert(verified(world.bundle(i)));
    }
    let output = world.output(&set);
    let plan = SettlementPlan::from_epoch(&output).unwrap();
    let settlement = domain(DomainName::Settlement, 31337, Address::repeat_byte(0x55));
    let deadline = U256::from(1_900_000_000u64);
    let digest = plan.digest(&settlement, deadline);

    let (_, signers) = committee(4);
    let addresses: Vec<Address> = signers.iter().map(|s| s.address()).collect();
    assert!(
        CommitteeConfig::new(&addresses, 1).is_err(),
        "below f+1 = 2"
    );
    assert!(CommitteeConfig::new(&addresses, 5).is_err());
    assert!(CommitteeConfig::new(&[addresses[0], addresses[0]], 1).is_err());
    let config = CommitteeConfig::new(&addresses, 2).unwrap();
    let context = B256::repeat_byte(3);
    let mut quorum = QuorumCollector::new(config, EPOCH, digest, context);

    let first = RootVote::sign(&signers[0], EPOCH, digest, context).unwrap();
    assert_eq!(quorum.add(&first).unwrap(), VoteOutcome::Counted);
    assert_eq!(quorum.add(&first).unwrap(), VoteOutcome::Duplicate);
    assert!(matches!(
        quorum.signatures(),
        Err(CommitteeError::BelowThreshold { have: 1, need: 2 })
    ));
    assert_eq!(quorum.poster(), None);

    // A member that computed another root does not count towards ours.
    let other = RootVote::sign(&signers[1], EPOCH, B256::repeat_byte(9), context).unwrap();
    assert_eq!(quorum.add(&other).unwrap(), VoteOutcome::Dissent);
    assert!(!quorum.has_quorum());
    // The same root computed from another context (other prices, another previous
    // reputation) does not count either, and a context swapped after signing is refused.
    let other_context = RootVote::sign(&signers[1], EPOCH, digest, B256::repeat_byte(4)).unwrap();
    assert_eq!(quorum.add(&other_context).unwrap(), VoteOutcome::Dissent);
    let mut swapped = RootVote::sign(&signers[1], EPOCH, digest, B256::repeat_byte(4)).unwrap();
    swapped.context = context;
    assert!(matches!(
        quorum.add(&swapped),
        Err(CommitteeError::SignerMismatch)
    ));
    assert!(!quorum.has_quorum());

    // An outsider, a vote claiming another signer, a vote for another epoch.
    let outsider = committee_signer(&SecretKey::generate());
    let vote = RootVote::sign(&outsider, EPOCH, digest, context).unwrap();
    assert!(matches!(quorum.add(&vote), Err(CommitteeError::NotAMember)));
    let mut impostor = RootVote::sign(&outsider, EPOCH, digest, context).unwrap();
    impostor.signer = addresses[2];
    assert!(matches!(
        quorum.add(&impostor),
        Err(CommitteeError::SignerMismatch)
    ));
    let late = RootVote::sign(&signers[2], Epoch(6), digest, context).unwrap();
    assert!(matches!(
        quorum.add(&late),
        Err(CommitteeError::WrongEpoch { .. })
    ));
    let mut garbled = RootVote::sign(&signers[2], EPOCH, digest, context).unwrap();
    garbled.signature = alloy::primitives::Bytes::from(vec![1u8; 10]);
    assert!(matches!(
        quorum.add(&garbled),
        Err(CommitteeError::MalformedSignature(_))
    ));
    assert!(!quorum.has_quorum());

    let third = RootVote::sign(&signers[3], EPOCH, digest, context).unwrap();
    assert_eq!(quorum.add(&third).unwrap(), VoteOutcome::Counted);
    let signatures = quorum.signatures().unwrap();
    assert_eq!(signatures.len(), 2);
    let poster = quorum.poster().unwrap();
    assert!(poster == addresses[0] || poster == addresses[3]);

    // The released signatures are ascending by signer, and each recovers over the
    // digest the contract computes, as `Committee.checkQuorum` requires.
    let recovered: Vec<Address> = signatures
        .iter()
        .map(|bytes| {
            alloy::primitives::Signature::try_from(bytes.as_ref())
                .unwrap()
                .recover_address_from_prehash(&digest)
                .unwrap()
        })
        .collect();
    let mut ascending = recovered.clone();
    ascending.sort();
    assert_eq!(recovered, ascending);
    let mut expected = vec![addresses[0], addresses[3]];
    expected.sort();
    assert_eq!(recovered, expected);
}
