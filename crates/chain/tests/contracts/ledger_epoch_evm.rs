//! The ledger and the contracts together: an epoch computed by `xnode_ledger::compute_epoch`
//! from countersigned receipts, settled on an in-process EVM through
//! `SettlementPlan::from_epoch`. Every payout address ends with exactly its row of the
//! ledger's table, every tenant's escrow drops by exactly its charge, and the treasury
//! keeps exactly what the ledger withheld.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::evm::{Deployment, committee_of};
use alloy::primitives::{Address, B256, U256};
use xnode_chain::{DomainName, Settlement, SettlementPlan, domain};
use xnode_ledger::{
    Epoch, EpochInput, LedgerParams, Price, PriceTable, RECEIPT_VERSION, ReceiptBody,
    ReputationState, Resource, Stake, TenantEscrow, compute_epoch,
};
use xnode_types::SecretKey;

const NETWORK: &str = "chain-test";
const EPOCH: u64 = 42;
const POSTER: Address = Address::repeat_byte(0x90);
const FUNDER: Address = Address::repeat_byte(0xf0);

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32]).unwrap()
}

fn receipt(
    provider: &SecretKey,
    tenant: &SecretKey,
    resource: Resource,
    cumulative: u64,
) -> ReceiptBody {
    ReceiptBody {
        v: RECEIPT_VERSION,
        network: NETWORK.into(),
        tenant: tenant.public(),
        provider: provider.node_id(),
        provider_key: provider.public(),
        resource,
        epoch: Epoch(EPOCH),
        cumulative,
        seq: cumulative,
    }
}

#[test]
fn a_ledger_epoch_settles_exactly_on_the_evm() {
    let operators: Vec<SecretKey> = (1..=3).map(key).collect();
    let tenants: Vec<SecretKey> = (10..=11).map(key).collect();
    let mut params = LedgerParams::with_defaults(NETWORK);
    let unit = Price::new(1_000, 0);
    params.prices = PriceTable {
        storage_byte_hours: unit,
        egress_bytes: unit,
        function_fuel: unit,
        function_requests: unit,
        job_fuel: unit,
        worker_fuel: unit,
    };
    params.emission.budget_per_epoch = 777_777;

    // Storage (which earns emission) and egress, countersigned by the tenants; the second
    // tenant's escrow covers only part of its usage.
    let mut receipts = Vec::new();
    for (index, operator) in operators.iter().enumerate() {
        let step = u64::try_from(index).unwrap() + 1;
        for (resource, amount) in [
            (Resource::StorageByteHours, 1_000 * step),
            (Resource::EgressBytes, 333 * step),
        ] {
            for tenant in &tenants {
                let signed = receipt(operator, tenant, resource, amount)
                    .sign_as_provider(operator)
                    .countersign(tenant);
                receipts.push(signed.verify(NETWORK).unwrap());
            }
        }
    }
    let stakes: Vec<Stake> = operators
        .iter()
        .enumerate()
        .map(|(index, operator)| Stake {
            operator: operator.node_id(),
            payout_address: [0x51 + u8::try_from(index).unwrap(); 20],
            bonded: 10_u128.pow(24),
            unbonding_at: None,
        })
        .collect();
    let escrows = vec![
        TenantEscrow {
            tenant: tenants[0].public(),
            balance: 100_000_000,
        },
        TenantEscrow {
            tenant: tenants[1].public(),
            balance: 5_000_000,
        },
    ];
    let output = compute_epoch(&EpochInput {
        epoch: Epoch(EPOCH),
        params,
        receipts,
        audits: Vec::new(),
        stakes,
        escrows: escrows.clone(),
        reputation: ReputationState::default(),
    })
    .unwrap();
    assert_eq!(output.payouts.len(), 3);
    assert!(
        output.totals.emission > 0,
        "the test should exercise emission"
    );
    assert!(
        output.charge_of(&tenants[1].public()) == 5_000_000,
        "the second escrow should bind"
    );
    let plan = SettlementPlan::from_epoch(&output).unwrap();

    let mut deployment = Deployment::new(committee_of(4, 0x40), 2);
    let settlement = deployment.settlement;
    for row in &escrows {
        let payer = Address::repeat_byte(row.tenant.0[0]);
        deployment.fund(payer, row.balance, settlement);
        deployment.chain.call(
            payer,
            settlement,
            &Settlement::depositCall {
                tenant: B256::from(row.tenant.0),
                amount: U256::from(row.balance),
            },
        );
    }
    // Emission comes from the treasury; fund exactly what the ledger emitted.
    deployment.fund(FUNDER, output.totals.emission, settlement);
    deployment.chain.call(
        FUNDER,
        settlement,
        &Settlement::fundTreasuryCall {
            amount: U256::from(output.totals.emission),
        },
    );

    let deadline = U256::from(deployment.chain.now + 600);
    let digest = plan.digest(
        &domain(DomainName::Settlement, crate::evm::CHAIN_ID, settlement),
        deadline,
    );
    let signatures = deployment.committee_keys.sign(digest, 2).unwrap();
    let posted = deployment.chain.try_raw(
        POSTER,
        settlement,
        plan.post_root_calldata(deadline, signatures),
    );
    assert!(posted.success, "post: {}", posted.output);

    for claim in &plan.claims {
        assert!(
            deployment
                .chain
                .try_raw(POSTER, settlement, plan.claim_calldata(claim))
                .success
        );
    }
    for payout in &output.payouts {
        assert_eq!(
            deployment.balance(Address::from(payout.address)),
            U256::from(payout.amount)
        );
    }
    for row in &escrows {
        let left = deployment.chain.call(
            Address::ZERO,
            settlement,
            &Settlement::escrowOfCall(B256::from(row.tenant.0)),
        );
        assert_eq!(
            left,
            U256::from(row.balance - output.charge_of(&row.tenant))
        );
    }
    let treasury = deployment
        .chain
        .call(Address::ZERO, settlement, &Settlement::treasuryCall {});
    assert_eq!(treasury, U256::from(output.totals.withheld));
    assert_eq!(
        deployment
            .chain
            .call(Address::ZERO, settlement, &Settlement::potOfCall(EPOCH)),
        U256::ZERO
    );
}
