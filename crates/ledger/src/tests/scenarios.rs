//! End-to-end scenarios: what a node, a cheat and a failing disk each get from an epoch.

use super::*;
use crate::{
    LedgerError, PenaltyLevel, ReceiptError, ReputationState, compute_epoch, leaf_hash,
    verify_proof,
};

#[test]
fn provider_only_forged_and_foreign_receipts_earn_nothing() {
    let (honest, cheat, tenant) = (key(0), key(1), key(10));
    let countersigned = signed_receipt(honest, tenant, Resource::EgressBytes, 5, 1_000);
    let provider_only =
        receipt_body(cheat, tenant, Resource::EgressBytes, 5, 5_000).sign_as_provider(cheat);
    let mut forged =
        receipt_body(cheat, tenant, Resource::StorageByteHours, 5, 7_000).sign_as_provider(cheat);
    forged.tenant_sig = Some(cheat.sign(&forged.body.signing_text()));
    let mut foreign_body = receipt_body(cheat, tenant, Resource::JobFuel, 5, 9_000);
    foreign_body.network = "othernet".into();
    let foreign = foreign_body.sign_as_provider(cheat).countersign(tenant);

    let all = [countersigned, provider_only, forged, foreign];
    let results: Vec<_> = all.iter().map(|receipt| receipt.verify(NETWORK)).collect();
    assert!(results[0].is_ok());
    assert_eq!(results[1], Err(ReceiptError::MissingTenantSignature));
    assert_eq!(results[2], Err(ReceiptError::BadTenantSignature));
    assert!(matches!(results[3], Err(ReceiptError::WrongNetwork { .. })));

    let mut epoch = input(5, simple_params());
    epoch.receipts = results.into_iter().filter_map(Result::ok).collect();
    epoch.stakes = vec![stake(0, 1, 1_000_000), stake(1, 2, 1_000_000)];
    epoch.escrows = vec![escrow(10, 1_000_000)];
    let output = compute_epoch(&epoch).unwrap();
    assert_eq!(output.reward_of(&node(0)), 1_000);
    assert_eq!(output.reward_of(&node(1)), 0);
    assert_eq!(output.charge_of(&key(10).public()), 1_000);
    assert_eq!(output.payout_of(&[2; 20]), 0);
}

#[test]
fn receipts_for_another_epoch_or_network_are_ignored() {
    let mut epoch = input(5, simple_params());
    let mut foreign = receipt_body(key(0), key(10), Resource::EgressBytes, 5, 100);
    foreign.network = "othernet".into();
    epoch.receipts = vec![
        unchecked_receipt(foreign),
        unchecked_receipt(receipt_body(key(0), key(10), Resource::EgressBytes, 4, 100)),
        unchecked_receipt(receipt_body(key(0), key(10), Resource::EgressBytes, 5, 30)),
    ];
    epoch.stakes = vec![stake(0, 1, 1)];
    epoch.escrows = vec![escrow(10, 1_000)];
    let output = compute_epoch(&epoch).unwrap();
    assert_eq!(output.ignored_receipts.wrong_network, 1);
    assert_eq!(output.ignored_receipts.wrong_epoch, 1);
    assert_eq!(output.reward_of(&node(0)), 30);
}

#[test]
fn only_the_highest_cumulative_of_a_counter_is_charged() {
    let mut epoch = input(1, simple_params());
    for cumulative in [40, 100, 70, 100, 10] {
        epoch.receipts.push(unchecked_receipt(receipt_body(
            key(0),
            key(10),
            Resource::FunctionFuel,
            1,
            cumulative,
        )));
    }
    epoch.stakes = vec![stake(0, 1, 1)];
    epoch.escrows = vec![escrow(10, 1_000)];
    let output = compute_epoch(&epoch).unwrap();
    assert_eq!(output.charge_of(&key(10).public()), 100);
    assert_eq!(output.ignored_receipts.superseded, 4);
}

#[test]
fn signed_audits_flow_into_reputation() {
    let mut epoch = input(2, simple_params());
    for auditor in 1..=3 {
        for chunk in 0..4u8 {
            let result = audit_body(auditor, 0, 2, chunk, chunk != 0).sign(key(auditor));
            epoch.audits.push(result.verify(NETWORK).unwrap());
        }
    }
    epoch.stakes = vec![stake(0, 1, 1_000)];
    let output = compute_epoch(&epoch).unwrap();
    let reputation = output.reputation.nodes[&node(0)];
    // One middle auditor counts: 3 passes, 1 failure, after decay of 4 audits.
    assert_eq!(reputation.beta_micro, 1_000_000);
    let penalty = output.penalty_of(&node(0)).unwrap();
    assert_eq!(penalty.counted_failures, 1);
    assert_eq!(penalty.slashed, 10);
}

#[test]
fn a_failing_node_is_penalised_in_steps() {
    let (bad, good, tenant) = (0, 1, 10);
    let mut reputation = ReputationState::default();
    let mut history = Vec::new();
    for epoch_number in 1..=20u64 {
        let mut epoch = input(epoch_number, simple_params());
        for auditor in 2..=4 {
            for chunk in 0..10u8 {
                epoch.audits.push(unchecked_audit(
                    auditor,
                    bad,
                    epoch_number,
                    chunk,
                    chunk >= 5,
                ));
                epoch
                    .audits
                    .push(unchecked_audit(auditor, good, epoch_number, chunk, true));
            }
        }
        for provider in [bad, good] {
            epoch.receipts.push(unchecked_receipt(receipt_body(
                key(provider),
                key(tenant),
                Resource::EgressBytes,
                epoch_number,
                1_000,
            )));
        }
        epoch.stakes = vec![stake(bad, 1, 1_000_000), stake(good, 2, 1_000_000)];
        epoch.escrows = vec![escrow(tenant, 1_000_000)];
        epoch.reputation = reputation;
        let output = compute_epoch(&epoch).unwrap();

        assert_eq!(output.reward_of(&node(good)), 1_000);
        assert!(output.penalty_of(&node(good)).is_none());
        let penalty = output.penalty_of(&node(bad)).unwrap().clone();
        assert_eq!(
            penalty.slashed,
            5 * 10,
            "five counted failures of 10-byte chunks"
        );
        let reward = output.reward_of(&node(bad));
        match penalty.level {
            PenaltyLevel::None | PenaltyLevel::Warning => assert_eq!(reward, 1_000),
            PenaltyLevel::Reduced => {
                assert_eq!(reward, 1_000 * u128::from(penalty.score_ppm) / 1_000_000);
                assert_eq!(penalty.reward_withheld, 1_000 - reward);
            }
            PenaltyLevel::Ejected => assert_eq!(reward, 0),
        }
        // The tenant pays for both services whatever happens to the operator.
        assert_eq!(output.charge_of(&key(tenant).public()), 2_000);
        history.push((penalty.score_ppm, penalty.level));
        reputation = output.reputation;
    }
    assert!(
        history.windows(2).all(|pair| pair[1].0 < pair[0].0),
        "score keeps falling"
    );
    assert!(
        history.windows(2).all(|pair| pair[1].1 >= pair[0].1),
        "levels only rise"
    );
    for level in [
        PenaltyLevel::Warning,
        PenaltyLevel::Reduced,
        PenaltyLevel::Ejected,
    ] {
        assert!(
            history.iter().any(|(_, seen)| *seen == level),
            "{level:?} missing"
        );
    }
    // The first epochs only warn: penalties are stepped, not a cliff.
    assert_eq!(history[0].1, PenaltyLevel::None);
}

#[test]
fn audits_from_fewer_than_three_auditors_do_not_count() {
    let mut epoch = input(1, simple_params());
    for auditor in [1, 2] {
        for chunk in 0..50u8 {
            epoch
                .audits
                .push(unchecked_audit(auditor, 0, 1, chunk, false));
        }
    }
    epoch.stakes = vec![stake(0, 1, 1_000)];
    let output = compute_epoch(&epoch).unwrap();
    assert!(output.penalty_of(&node(0)).is_none());
    assert!(!output.reputation.nodes.contains_key(&node(0)));
    assert_eq!(output.ignored_audits.nodes_below_auditor_quorum, 1);
    assert_eq!(output.totals.slashed, 0);
}

#[test]
fn every_payout_proves_and_a_tampered_amount_does_not() {
    let mut epoch = input(9, simple_params());
    // Seven operators over five payout addresses (two share address 1, two share 2).
    let payouts = [1u8, 1, 2, 2, 3, 4, 5];
    for (operator, payout) in payouts.iter().enumerate() {
        epoch.stakes.push(stake(operator, *payout, 1_000));
        for tenant in 10..13 {
            epoch.receipts.push(unchecked_receipt(receipt_body(
                key(operator),
                key(tenant),
                Resource::StorageByteHours,
                9,
                100 * (operator as u64 + 1) + tenant as u64,
            )));
        }
    }
    epoch.escrows = (10..13).map(|tenant| escrow(tenant, 1_000_000)).collect();
    let output = compute_epoch(&epoch).unwrap();
    assert_eq!(output.payouts.len(), 5);
    assert_eq!(
        output.payout_of(&[1; 20]),
        output.reward_of(&node(0)) + output.reward_of(&node(1))
    );
    for payout in &output.payouts {
        let proof = output.proof(&payout.address).unwrap();
        let leaf = leaf_hash(output.epoch, &payout.address, payout.amount);
        assert!(verify_proof(&output.merkle_root, &leaf, &proof));
        let tampered = leaf_hash(output.epoch, &payout.address, payout.amount + 1);
        assert!(!verify_proof(&output.merkle_root, &tampered, &proof));
        let other_epoch = leaf_hash(Epoch(10), &payout.address, payout.amount);
        assert!(!verify_proof(&output.merkle_root, &other_epoch, &proof));
    }
    assert_eq!(output.proof(&[9; 20]), None);
}

#[test]
fn an_escrow_shortfall_is_shared_pro_rata_to_the_last_unit() {
    let mut epoch = input(1, simple_params());
    for operator in 0..3 {
        epoch.stakes.push(stake(operator, operator as u8 + 1, 1));
        epoch.receipts.push(unchecked_receipt(receipt_body(
            key(operator),
            key(10),
            Resource::EgressBytes,
            1,
            50,
        )));
    }
    epoch.escrows = vec![escrow(10, 100)];
    let output = compute_epoch(&epoch).unwrap();
    assert_eq!(output.charge_of(&key(10).public()), 100);
    assert_eq!(output.tenants[0].usage_value, 150);
    let mut rewards: Vec<u128> = (0..3).map(|i| output.reward_of(&node(i))).collect();
    rewards.sort_unstable();
    assert_eq!(rewards, vec![33, 33, 34]);
    assert_eq!(output.totals.rewards, 100);
}

#[test]
fn paying_oneself_gains_no_emission() {
    let mut params = simple_params();
    params.emission.budget_per_epoch = 1_000;
    params.emission.max_per_paid_ppm = 1_000_000;
    let mut epoch = input(1, params);
    // Operator 0 pays itself; operator 1 shares operator 0's payout address and is paid
    // by operator 0's key too; operator 2 serves an independent tenant.
    epoch.stakes = vec![stake(0, 7, 1), stake(1, 7, 1), stake(2, 8, 1)];
    for (provider, tenant) in [(0, 0), (1, 0), (2, 10)] {
        epoch.receipts.push(unchecked_receipt(receipt_body(
            key(provider),
            key(tenant),
            Resource::StorageByteHours,
            1,
            200,
        )));
    }
    epoch.escrows = vec![escrow(0, 1_000), escrow(10, 1_000)];
    let output = compute_epoch(&epoch).unwrap();
    let row = |i: usize| {
        output
            .operators
            .iter()
            .find(|row| row.operator == node(i))
            .cloned()
            .unwrap()
    };
    assert_eq!((row(0).from_payments, row(0).emission), (200, 0));
    assert_eq!((row(1).from_payments, row(1).emission), (200, 0));
    // All weight is operator 2's, but its tenant's share is capped at what it paid.
    assert_eq!((row(2).from_payments, row(2).emission), (200, 200));
    // Self-dealing nets zero: operator 0's owner paid 400 and got 400 back.
    assert_eq!(output.payout_of(&[7; 20]), 400);
    assert_eq!(output.charge_of(&key(0).public()), 400);
}

#[test]
fn emission_follows_verified_storage_within_the_budget() {
    let mut params = simple_params();
    params.emission.budget_per_epoch = 90;
    params.emission.max_per_paid_ppm = 1_000_000;
    let mut epoch = input(1, params);
    epoch.stakes = vec![stake(0, 1, 1), stake(1, 2, 1), stake(2, 3, 1)];
    for (provider, usage) in [(0, 100), (1, 200), (2, 300)] {
        epoch.receipts.push(unchecked_receipt(receipt_body(
            key(provider),
            key(10),
            Resource::StorageByteHours,
            1,
            usage,
        )));
        // Compute and egress are paid but earn no emission (the tenant picks who serves).
        for resource in [Resource::WorkerFuel, Resource::EgressBytes] {
            epoch.receipts.push(unchecked_receipt(receipt_body(
                key(provider),
                key(10),
                resource,
                1,
                1_000,
            )));
        }
    }
    epoch.stakes[2].unbonding_at = Some(Epoch(3));
    epoch.escrows = vec![escrow(10, 10_000)];
    let output = compute_epoch(&epoch).unwrap();
    // Operator 2 is unbonding: no emission; the others split 90 by storage, 1:2.
    let emissions: Vec<u128> = output.operators.iter().map(|row| row.emission).collect();
    let mut by_node: Vec<(NodeId, u128)> = output
        .operators
        .iter()
        .map(|row| (row.operator, row.emission))
        .collect();
    by_node.sort_unstable();
    assert_eq!(emissions.iter().sum::<u128>(), 90);
    let emission_of = |i: usize| by_node.iter().find(|(n, _)| *n == node(i)).unwrap().1;
    assert_eq!(
        (emission_of(0), emission_of(1), emission_of(2)),
        (30, 60, 0)
    );
}

#[test]
fn inconsistent_accounts_are_errors() {
    let mut epoch = input(1, simple_params());
    epoch.stakes = vec![stake(0, 1, 1), stake(0, 2, 5)];
    assert_eq!(
        compute_epoch(&epoch),
        Err(LedgerError::DuplicateStake(node(0)))
    );
    epoch.stakes.pop();
    epoch.escrows = vec![escrow(10, 1), escrow(10, 1)];
    assert_eq!(
        compute_epoch(&epoch),
        Err(LedgerError::DuplicateEscrow(key(10).public()))
    );
    epoch.escrows = vec![escrow(10, u128::MAX), escrow(11, 1)];
    assert_eq!(compute_epoch(&epoch), Err(LedgerError::AmountOverflow));
    epoch.escrows.clear();
    epoch.params.penalties.warn_below_ppm = 0;
    assert_eq!(
        compute_epoch(&epoch),
        Err(LedgerError::ThresholdsOutOfOrder)
    );
}

#[test]
fn output_round_trips_through_json() {
    let mut epoch = input(1, simple_params());
    epoch.stakes = vec![stake(0, 1, 1)];
    epoch.escrows = vec![escrow(10, 50)];
    epoch.receipts = vec![unchecked_receipt(receipt_body(
        key(0),
        key(10),
        Resource::FunctionRequests,
        1,
        20,
    ))];
    epoch.audits = (1..=3)
        .map(|auditor| unchecked_audit(auditor, 0, 1, 1, true))
        .collect();
    let output = compute_epoch(&epoch).unwrap();
    let json = serde_json::to_string(&output).unwrap();
    let back: crate::EpochOutput = serde_json::from_str(&json).unwrap();
    assert_eq!(back, output);
    assert!(serde_json::to_string(&epoch).is_ok());
}

#[test]
fn an_unlinked_wash_trader_gets_at_most_half_its_storage_payment_in_emission() {
    let mut params = simple_params();
    params.emission.budget_per_epoch = 1_000_000;
    let mut epoch = input(1, params);
    epoch.stakes = vec![stake(0, 1, 1)];
    // Key 11 is not linked to operator 0 in any way the ledger can see.
    epoch.receipts = vec![unchecked_receipt(receipt_body(
        key(0),
        key(11),
        Resource::StorageByteHours,
        1,
        1_000,
    ))];
    epoch.escrows = vec![escrow(11, 1_000)];
    let output = compute_epoch(&epoch).unwrap();
    let row = &output.operators[0];
    assert_eq!((row.from_payments, row.emission), (1_000, 500));
    assert_eq!(
        output.totals.emission, 500,
        "the rest of the budget is not minted"
    );
}
