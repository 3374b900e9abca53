//! Unit tests of one epoch's close without a network: a member missing a bundle dissents
//! until it fetches it, votes that arrived early count once the roots agree, nothing is
//! released below the threshold, foreign votes are refused, a posted record survives
//! encoding and never reopens; a member that started from another reputation or used
//! other prices dissents even when the root is the same, and a carried reputation is
//! accepted only with the threshold's signatures over its exact state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use xnode_chain::{DomainName, domain};
use xnode_ledger::{Epoch, ReputationState};
use xnode_types::NodeId;

use crate::tests::{EPOCH, World, params, verified};
use crate::*;

const DEADLINE: u64 = 4_000_000_000;

fn settlement_domain() -> Eip712Domain {
    domain(DomainName::Settlement, 31_337, Address::repeat_byte(7))
}

struct Committee {
    world: World,
    signers: Vec<PrivateKeySigner>,
    config: CommitteeConfig,
}

impl Committee {
    /// Four members (the four nodes of the world), threshold 2 (f+1 for n = 4).
    fn new() -> Self {
        let world = World::new();
        let signers: Vec<PrivateKeySigner> = world.nodes.iter().map(committee_signer).collect();
        let addresses: Vec<Address> = signers.iter().map(PrivateKeySigner::address).collect();
        let config = CommitteeConfig::new(&addresses, 2).unwrap();
        Self {
            world,
            signers,
            config,
        }
    }

    /// A close holding the bundles of the nodes in `publishers`.
    fn close_with(&self, publishers: &[usize]) -> EpochClose {
        let mut close = EpochClose::new(EPOCH, self.config.clone());
        for &i in publishers {
            assert!(close.add_bundle(verified(self.world.bundle(i))));
        }
        close
    }

    /// Computes the root of `close` as member `member`, returns its digest.
    fn compute(&self, close: &mut EpochClose, member: usize) -> B256 {
        self.compute_from(close, member, params(), None, ReputationState::default())
    }

    /// Computes the root with given parameters and starting reputation.
    fn compute_from(
        &self,
        close: &mut EpochClose,
        member: usize,
        params: xnode_ledger::LedgerParams,
        previous_epoch: Option<u64>,
        reputation: ReputationState,
    ) -> B256 {
        let input = close.set().epoch_input(
            params,
            self.world.stakes(),
            self.world.escrows(),
            reputation,
        );
        close
            .compute_root(
                &input,
                previous_epoch,
                &settlement_domain(),
                U256::from(DEADLINE),
                Some(&self.signers[member]),
            )
            .unwrap()
    }
}

#[test]
fn a_member_missing_a_bundle_dissents_until_it_fetches_it_then_the_quorum_forms() {
    let committee = Committee::new();
    let mut full = committee.close_with(&[0, 1, 2, 3]);
    let mut partial = committee.close_with(&[0, 1, 2]);
    let full_digest = committee.compute(&mut full, 0);
    let partial_digest = committee.compute(&mut partial, 1);
    assert_ne!(
        full_digest, partial_digest,
        "a missing bundle changes the root"
    );

    // Each sees the other's vote as a dissent: nothing can be posted.
    let full_vote = full.own_vote().unwrap().clone();
    let partial_vote = partial.own_vote().unwrap().clone();
    assert_eq!(full.add_vote(partial_vote).unwrap(), VoteOutcome::Dissent);
    assert_eq!(partial.add_vote(full_vote).unwrap(), VoteOutcome::Dissent);
    assert!(!full.has_quorum() && !partial.has_quorum());
    assert!(full.post_calldata().is_err());
    let record = full.record();
    assert_eq!(record.status, EpochStatus::Voted);
    assert_eq!(record.votes.iter().filter(|v| v.agrees).count(), 1);

    // The partial member fetches what the full one lists; its root is dropped and
    // recomputed over the union, and the full member's early vote now agrees.
    let wanted = partial.set().wanted_from(&full.set().summary());
    assert_eq!(wanted.len(), 1);
    for (publisher, _) in wanted {
        let bundle = full.set().get(&publisher).unwrap().clone();
        assert!(partial.add_bundle(bundle));
    }
    assert!(partial.needs_root());
    assert_eq!(partial.set().digest(), full.set().digest());
    assert_eq!(committee.compute(&mut partial, 1), full_digest);
    assert!(partial.has_quorum(), "the early agreeing vote counted");
    assert!(partial.post_calldata().is_ok());
    let poster = partial.poster().unwrap();
    assert!(poster == committee.signers[0].address() || poster == committee.signers[1].address());

    // The full member learns the new vote and names the same poster.
    full.add_vote(partial.own_vote().unwrap().clone()).unwrap();
    assert!(full.has_quorum());
    assert_eq!(full.poster(), partial.poster());
    assert_eq!(full.record().status, EpochStatus::Quorum);
    assert_eq!(full.record().root, partial.record().root);
}

#[test]
fn below_the_threshold_nothing_is_released() {
    let committee = Committee::new();
    let mut close = committee.close_with(&[0, 1, 2, 3]);
    assert!(close.post_calldata().is_err(), "nothing computed yet");
    committee.compute(&mut close, 0);
    assert!(!close.has_quorum());
    assert_eq!(close.poster(), None);
    assert!(matches!(
        close.post_calldata(),
        Err(CloseError::Committee(CommitteeError::BelowThreshold {
            have: 1,
            need: 2
        }))
    ));
}

#[test]
fn votes_from_outsiders_or_with_a_forged_signer_are_refused() {
    let committee = Committee::new();
    let mut close = committee.close_with(&[0, 1, 2, 3]);
    let digest = committee.compute(&mut close, 0);
    let context = close.own_vote().unwrap().context;
    let outsider = PrivateKeySigner::random();
    let vote = RootVote::sign(&outsider, EPOCH, digest, context).unwrap();
    assert!(close.add_vote(vote).is_err());
    let mut forged = RootVote::sign(&outsider, EPOCH, digest, context).unwrap();
    forged.signer = committee.signers[2].address();
    assert!(close.add_vote(forged).is_err());
    let other_epoch =
        RootVote::sign(&committee.signers[2], Epoch(EPOCH.0 + 1), digest, context).unwrap();
    assert!(close.add_vote(other_epoch).is_err());
    assert!(!close.has_quorum());
    assert_eq!(close.record().votes.len(), 1, "only our own vote is held");
}

#[test]
fn a_posted_record_round_trips_and_never_reopens() {
    let committee = Committee::new();
    let mut close = committee.close_with(&[0, 1, 2]);
    let digest = committee.compute(&mut close, 0);
    let context = close.own_vote().unwrap().context;
    close
        .add_vote(RootVote::sign(&committee.signers[3], EPOCH, digest, context).unwrap())
        .unwrap();
    let tx = B256::repeat_byte(9);
    close.mark_posted(Some(tx));
    // A late bundle does not reopen a settled epoch.
    close.add_bundle(verified(committee.world.bundle(3)));
    assert!(!close.needs_root());
    let record = close.record();
    assert_eq!(record.status, EpochStatus::Posted);
    assert_eq!(record.tx_hash, Some(tx));
    assert_eq!(record.digest, Some(digest));
    assert_eq!(record.votes.len(), 2);
    assert!(record.total > 0 && !record.payouts.is_empty() && !record.charges.is_empty());
    let bytes = xnode_wire::encode(&record).unwrap();
    let back: EpochRecord = xnode_wire::decode(&bytes, 1 << 20).unwrap();
    assert_eq!(back, record);
}

/// A node no stake or receipt mentions: its reputation changes no payout.
fn bystander() -> xnode_types::NodeId {
    xnode_types::SecretKey::from_seed(&[77; 32])
        .unwrap()
        .node_id()
}

#[test]
fn another_starting_reputation_or_other_prices_dissent_even_with_the_same_root() {
    let committee = Committee::new();
    let mut carried = ReputationState::default();
    carried.nodes.insert(
        bystander(),
        xnode_ledger::Reputation {
            alpha_micro: 1,
            beta_micro: 1_000_000_000,
        },
    );
    let mut fresh = committee.close_with(&[0, 1, 2, 3]);
    let mut from_history = committee.close_with(&[0, 1, 2, 3]);
    let mut repriced = committee.close_with(&[0, 1, 2, 3]);
    let fresh_digest = committee.compute(&mut fresh, 0);
    let history_digest =
        committee.compute_from(&mut from_history, 1, params(), Some(EPOCH.0 - 1), carried);
    // A resource the world never meters: the table cannot change, only the parameters.
    let mut other_prices = params();
    other_prices.prices.worker_fuel.amount += 1;
    let repriced_digest =
        committee.compute_from(&mut repriced, 2, other_prices, None, Default::default());
    assert_eq!(fresh_digest, history_digest, "the payout table is the same");
    assert_eq!(
        fresh_digest, repriced_digest,
        "the payout table is the same"
    );

    for other in [&from_history, &repriced] {
        let vote = other.own_vote().unwrap().clone();
        assert_eq!(fresh.add_vote(vote).unwrap(), VoteOutcome::Dissent);
    }
    assert!(!fresh.has_quorum(), "no other context counts towards ours");
    let record = fresh.record();
    assert_eq!(record.votes.iter().filter(|v| v.agrees).count(), 1);
    let context = record.context.unwrap();
    assert_eq!(context.previous_epoch, None);
    assert_eq!(context.params_digest, params().digest());
    let history_context = from_history.record().context.unwrap();
    assert_eq!(history_context.previous_epoch, Some(EPOCH.0 - 1));
    assert_ne!(
        history_context.previous_reputation,
        context.previous_reputation
    );
}

#[test]
fn a_carried_reputation_needs_the_threshold_and_its_exact_state() {
    let committee = Committee::new();
    let mut close = committee.close_with(&[0, 1, 2, 3]);
    let digest = committee.compute(&mut close, 0);
    assert!(
        close.carried().is_none(),
        "nothing is carried before posting"
    );
    let context = close.own_vote().unwrap().context;
    close
        .add_vote(RootVote::sign(&committee.signers[1], EPOCH, digest, context).unwrap())
        .unwrap();
    close.mark_posted(None);
    let carried = close.carried().unwrap();
    assert_eq!(carried.votes.len(), 2);
    let params_digest = params().digest();
    carried
        .verify(EPOCH, &params_digest, &committee.config)
        .unwrap();
    let bytes = xnode_wire::encode(&carried).unwrap();
    let back: CarriedReputation = xnode_wire::decode(&bytes, 1 << 20).unwrap();
    assert_eq!(back, carried);

    // A peer that pads its own score, drops a signature, or serves another epoch or
    // another network's parameters is refused.
    let mut padded = carried.clone();
    padded.state.nodes.insert(
        bystander(),
        xnode_ledger::Reputation {
            alpha_micro: u128::MAX,
            beta_micro: 0,
        },
    );
    assert!(matches!(
        padded.verify(EPOCH, &params_digest, &committee.config),
        Err(CarryError::StateMismatch)
    ));
    let mut resigned = padded.clone();
    resigned.context.reputation = padded.state.digest();
    assert!(matches!(
        resigned.verify(EPOCH, &params_digest, &committee.config),
        Err(CarryError::TooFewSignatures { have: 0, need: 2 })
    ));
    let mut thin = carried.clone();
    thin.votes.pop();
    assert!(matches!(
        thin.verify(EPOCH, &params_digest, &committee.config),
        Err(CarryError::TooFewSignatures { have: 1, need: 2 })
    ));
    let mut doubled = thin.clone();
    doubled.votes.push(doubled.votes[0].clone());
    assert!(
        doubled
            .verify(EPOCH, &params_digest, &committee.config)
            .is_err()
    );
    assert!(matches!(
        carried.verify(Epoch(EPOCH.0 + 1), &params_digest, &committee.config),
        Err(CarryError::WrongEpoch { .. })
    ));
    assert!(matches!(
        carried.verify(EPOCH, &[0; 32], &committee.config),
        Err(CarryError::OtherParams)
    ));
}

#[test]
fn a_superseded_epoch_says_so_in_its_status() {
    let committee = Committee::new();
    let mut close = committee.close_with(&[0, 1]);
    close.mark_superseded();
    assert_eq!(close.record().status, EpochStatus::Superseded);
    committee.compute(&mut close, 0);
    let record = close.record();
    assert_eq!(record.status, EpochStatus::Superseded);
    assert!(close.is_final());
}

#[test]
fn a_payout_binding_that_arrives_after_the_root_makes_the_member_compute_again() {
    let committee = Committee::new();
    let mut close = committee.close_with(&[0, 1, 2, 3]);
    let mut table: Vec<(NodeId, [u8; 20])> = committee
        .world
        .stakes()
        .iter()
        .map(|s| (s.operator, s.payout_address))
        .collect();
    table.sort();
    // Nothing computed yet: the set decides.
    assert!(!close.payouts_moved(&table));
    committee.compute(&mut close, 0);
    assert!(!close.needs_root());
    assert!(!close.payouts_moved(&table), "the same table");
    // An operator's binding, dated before the cut but published late, moves one address.
    let mut moved = table.clone();
    moved[0].1 = [0xee; 20];
    assert!(close.payouts_moved(&moved));
    // A node that lost its binding leaves the table: that moves it too.
    assert!(close.payouts_moved(&table[1..]));
}
