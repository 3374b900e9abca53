//! Property tests: determinism, order independence, superseding, conservation and
//! robustness against arbitrary (including absurdly large) numbers.

use proptest::prelude::*;

use super::*;
use crate::{EpochOutput, LedgerError, ReceiptBook, compute_epoch};

const EPOCH: u64 = 3;

/// Operators are keys 0..10, tenants keys 8..16 (8 and 9 are both: self-dealing happens).
fn receipt_strategy(huge: bool) -> impl Strategy<Value = VerifiedReceipt> {
    let cumulative = if huge {
        any::<u64>().boxed()
    } else {
        (0u64..10_000).boxed()
    };
    (
        0usize..10,
        8usize..16,
        0usize..Resource::ALL.len(),
        prop_oneof![8 => Just(EPOCH), 1 => Just(EPOCH + 1)],
        prop_oneof![12 => Just(NETWORK), 1 => Just("othernet")],
        cumulative,
        0u64..4,
    )
        .prop_map(
            |(provider, tenant, resource, epoch, network, cumulative, seq)| {
                let mut body = receipt_body(
                    key(provider),
                    key(tenant),
                    Resource::ALL[resource],
                    epoch,
                    cumulative,
                );
                body.network = network.into();
                body.seq = seq;
                unchecked_receipt(body)
            },
        )
}

fn audit_strategy() -> impl Strategy<Value = VerifiedAudit> {
    (
        0usize..12,
        0usize..10,
        prop_oneof![10 => Just(EPOCH), 1 => Just(EPOCH - 1)],
        0u8..6,
        prop::bool::weighted(0.8),
        0u64..3,
    )
        .prop_map(|(auditor, audited, epoch, chunk, passed, at_ms)| {
            let mut body = audit_body(auditor, audited, epoch, chunk, passed);
            body.at_ms = at_ms;
            VerifiedAudit::assume_verified(crate::AuditResult {
                body,
                auditor_sig: xnode_types::SignatureBytes([0; 64]),
            })
        })
}

fn amount(huge: bool) -> BoxedStrategy<u128> {
    if huge {
        prop_oneof![1 => any::<u128>(), 4 => 0u128..1_000_000, 1 => Just(u128::MAX)].boxed()
    } else {
        (0u128..200_000).boxed()
    }
}

prop_compose! {
    fn epoch_input(huge: bool)(
        receipts in prop::collection::vec(receipt_strategy(huge), 0..60),
        audits in prop::collection::vec(audit_strategy(), 0..80),
        operators in prop::collection::btree_set(0usize..10, 0..10),
        payouts in prop::collection::vec(0u8..4, 10),
        bonds in prop::collection::vec(amount(huge), 10),
        tenants in prop::collection::btree_set(8usize..16, 0..8),
        balances in prop::collection::vec(amount(huge), 8),
        budget in amount(huge),
        max_per_paid_ppm in prop_oneof![Just(0u64), 0u64..3_000_000, Just(u64::MAX)],
        storage_price in amount(huge),
        price_exponent in 0u8..=38,
        repair_price in amount(huge),
        chunk_size in prop_oneof![Just(0u64), 1u64..1_000_000, Just(u64::MAX)],
    ) -> EpochInput {
        let mut params = simple_params();
        params.emission.budget_per_epoch = budget;
        params.emission.max_per_paid_ppm = max_per_paid_ppm;
        params.prices.storage_byte_hours = crate::Price::new(storage_price, price_exponent);
        params.prices.egress_bytes = crate::Price::new(storage_price, 0);
        params.penalties.repair_price = crate::Price::new(repair_price, 0);
        params.penalties.chunk_size_bytes = chunk_size;
        let mut epoch = input(EPOCH, params);
        epoch.receipts = receipts;
        epoch.audits = audits;
        epoch.stakes = operators
            .iter()
            .map(|&operator| stake(operator, payouts[operator], bonds[operator]))
            .collect();
        epoch.escrows = tenants
            .iter()
            .map(|&tenant| escrow(tenant, balances[tenant - 8]))
            .collect();
        epoch
    }
}

fn shuffled(input: &EpochInput, seed: u64) -> EpochInput {
    let mut copy = input.clone();
    shuffle(&mut copy.receipts, seed);
    shuffle(&mut copy.audits, seed ^ 1);
    shuffle(&mut copy.stakes, seed ^ 2);
    shuffle(&mut copy.escrows, seed ^ 3);
    copy
}

/// The accounting identities every output must satisfy.
fn check_conservation(input: &EpochInput, output: &EpochOutput) -> Result<(), TestCaseError> {
    let totals = output.totals;
    prop_assert_eq!(totals.charged, totals.from_payments + totals.withheld);
    prop_assert_eq!(totals.rewards, totals.from_payments + totals.emission);
    prop_assert!(totals.emission <= input.params.emission.budget_per_epoch);
    prop_assert!(totals.rewards <= totals.charged + input.params.emission.budget_per_epoch);
    let payout_sum: u128 = output.payouts.iter().map(|p| p.amount).sum();
    prop_assert_eq!(payout_sum, totals.rewards);
    for charge in &output.tenants {
        let escrow = input
            .escrows
            .iter()
            .find(|e| e.tenant == charge.tenant)
            .map_or(0, |e| e.balance);
        prop_assert!(charge.charged <= escrow);
        prop_assert!(charge.charged <= charge.usage_value);
        // A tenant pays its usage in full, or its whole escrow (exact unless the usage
        // value itself saturated u128).
        if charge.usage_value < u128::MAX {
            prop_assert!(charge.charged == charge.usage_value || charge.charged == escrow);
        }
    }
    // Emission attributable to tenants never exceeds the sum of their caps.
    let cap_sum = output.tenants.iter().fold(0u128, |sum, charge| {
        let cap = crate::mul_div(
            charge.charged,
            u128::from(input.params.emission.max_per_paid_ppm),
            u128::from(crate::PPM),
        )
        .unwrap_or(u128::MAX);
        sum.saturating_add(cap)
    });
    prop_assert!(totals.emission <= cap_sum);
    for penalty in &output.penalties {
        let bond = input
            .stakes
            .iter()
            .find(|s| s.operator == penalty.node)
            .map_or(0, |s| s.bonded);
        prop_assert!(penalty.slashed <= bond);
        prop_assert_eq!(penalty.bond_after, bond - penalty.slashed);
    }
    for row in &output.operators {
        prop_assert_eq!(row.reward, row.from_payments + row.emission);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_same_input_gives_the_same_output(input in epoch_input(false)) {
        let first = compute_epoch(&input);
        let second = compute_epoch(&input.clone());
        prop_assert_eq!(first, second);
    }

    #[test]
    fn input_order_does_not_matter(input in epoch_input(false), seed: u64) {
        let original = compute_epoch(&input);
        let reordered = compute_epoch(&shuffled(&input, seed));
        prop_assert_eq!(original, reordered);
    }

    #[test]
    fn input_order_does_not_matter_with_huge_numbers(input in epoch_input(true), seed: u64) {
        prop_assert_eq!(compute_epoch(&input), compute_epoch(&shuffled(&input, seed)));
    }

    /// Two epochs in a row, the second starting from the first's reputation (as settlement
    /// carries it): the same inputs in any order give the same second table, the same
    /// carried state and the same state digest, and the carried state is exactly the
    /// first's advanced by the second's audits.
    #[test]
    fn reputation_carried_over_two_epochs_is_deterministic_and_order_independent(
        first in epoch_input(false),
        later_audits in prop::collection::vec(audit_strategy(), 0..80),
        seed: u64,
    ) {
        let second_of = |first: &EpochInput, output: &EpochOutput| {
            let mut second = first.clone();
            second.epoch = crate::Epoch(EPOCH + 1);
            second.receipts.clear();
            second.audits = later_audits
                .iter()
                .map(|audit| {
                    let mut body = audit.body().clone();
                    body.epoch = crate::Epoch(body.epoch.0 + 1);
                    VerifiedAudit::assume_verified(crate::AuditResult {
                        body,
                        auditor_sig: xnode_types::SignatureBytes([0; 64]),
                    })
                })
                .collect();
            second.reputation = output.reputation.clone();
            second
        };
        let output = compute_epoch(&first).unwrap();
        let second = second_of(&first, &output);
        let carried = compute_epoch(&second).unwrap();

        let reordered_first = shuffled(&first, seed);
        let reordered_output = compute_epoch(&reordered_first).unwrap();
        prop_assert_eq!(reordered_output.reputation.digest(), output.reputation.digest());
        let reordered_second = shuffled(&second_of(&reordered_first, &reordered_output), seed ^ 9);
        let reordered = compute_epoch(&reordered_second).unwrap();
        prop_assert_eq!(&reordered, &carried);
        prop_assert_eq!(reordered.reputation.digest(), carried.reputation.digest());

        let (tallies, _) = crate::tally_audits(
            &second.audits,
            second.epoch,
            NETWORK,
            &second.params.reputation,
        );
        prop_assert_eq!(
            &carried.reputation,
            &output.reputation.advance(&tallies, &second.params.reputation)
        );
    }

    #[test]
    fn money_is_conserved(input in epoch_input(false)) {
        let output = compute_epoch(&input).unwrap();
        check_conservation(&input, &output)?;
        for payout in &output.payouts {
            let proof = output.proof(&payout.address).unwrap();
            let leaf = crate::leaf_hash(output.epoch, &payout.address, payout.amount);
            prop_assert!(crate::verify_proof(&output.merkle_root, &leaf, &proof));
        }
    }

    #[test]
    fn huge_numbers_never_panic_and_stay_conserved(input in epoch_input(true)) {
        match compute_epoch(&input) {
            Ok(output) => check_conservation(&input, &output)?,
            Err(error) => prop_assert_eq!(error, LedgerError::AmountOverflow),
        }
    }

    #[test]
    fn any_subset_in_any_order_keeps_the_highest_cumulative(
        cumulatives in prop::collection::vec(any::<u64>(), 1..12),
        keep in prop::collection::vec(any::<bool>(), 12),
        seed: u64,
    ) {
        let mut subset: Vec<u64> = cumulatives
            .iter()
            .zip(&keep)
            .filter(|(_, kept)| **kept)
            .map(|(c, _)| *c)
            .collect();
        if subset.is_empty() {
            subset.push(cumulatives[0]);
        }
        shuffle(&mut subset, seed);
        let highest = *subset.iter().max().unwrap();
        let receipts: Vec<VerifiedReceipt> = subset
            .iter()
            .map(|&c| unchecked_receipt(receipt_body(key(0), key(10), Resource::EgressBytes, EPOCH, c)))
            .collect();

        let mut book = ReceiptBook::new();
        for receipt in receipts.clone() {
            book.insert(receipt);
        }
        prop_assert_eq!(book.len(), 1);
        prop_assert_eq!(book.into_receipts()[0].body().cumulative, highest);

        let mut epoch = input(EPOCH, simple_params());
        epoch.receipts = receipts;
        epoch.stakes = vec![stake(0, 1, 1)];
        epoch.escrows = vec![escrow(10, u128::from(u64::MAX))];
        let output = compute_epoch(&epoch).unwrap();
        prop_assert_eq!(output.charge_of(&key(10).public()), u128::from(highest));
        prop_assert_eq!(output.reward_of(&node(0)), u128::from(highest));
    }
}
