//! End to end on anvil, a real EVM node over JSON-RPC: deploy the committed contracts,
//! fund escrows and the treasury, post an epoch root with f+1 committee signatures (and
//! fail with f), claim every payout with the ledger's proofs, and refuse a double claim.
//!
//! anvil comes from npm (`@foundry-rs/anvil-linux-amd64`, pinned by
//! `contracts/anvil/package-lock.json`), installed by `scripts/test.sh`. Where it is not
//! installed the test says so and passes without running: `XNODE_ANVIL` may point at
//! another anvil binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{SolCall, SolConstructor};
use xnode_chain::anvil::{Anvil, SKIP_MESSAGE, TOKEN, anvil_binary, gas_used, succeeded};
use xnode_chain::{
    Committee, CommitteeSigners, DomainName, Settlement, SettlementPlan, XnodeToken, domain,
};
use xnode_ledger::{Payout, TenantCharge};
use xnode_types::PublicKeyBytes;

fn send(anvil: &Anvil, from: Address, to: Option<Address>, data: &[u8]) -> serde_json::Value {
    anvil.send(from, to, data).unwrap()
}

fn call<C: SolCall>(anvil: &Anvil, to: Address, call: &C) -> C::Return {
    anvil.call(to, call).unwrap()
}

fn deploy(
    anvil: &Anvil,
    from: Address,
    bytecode: &alloy::primitives::Bytes,
    args: Vec<u8>,
) -> Address {
    anvil.deploy("deployment", from, bytecode, args).unwrap()
}

#[test]
fn an_epoch_settles_on_anvil() {
    let Some(binary) = anvil_binary() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let anvil = Anvil::start(&binary).unwrap();
    let accounts: Vec<Address> = anvil.accounts().unwrap();
    let (deployer, poster) = (accounts[0], accounts[1]);
    let chain_id = anvil.chain_id().unwrap();

    let keys: Vec<B256> = (0..4u8).map(|i| B256::repeat_byte(0x40 + i)).collect();
    let committee_keys = CommitteeSigners::from_private_keys(&keys).unwrap();
    let token = deploy(
        &anvil,
        deployer,
        &XnodeToken::BYTECODE,
        XnodeToken::constructorCall {
            name_: "Xnode".into(),
            symbol_: "XND".into(),
            holder: deployer,
            supply: U256::from(1_000_000 * TOKEN),
        }
        .abi_encode(),
    );
    let committee = deploy(
        &anvil,
        deployer,
        &Committee::BYTECODE,
        Committee::constructorCall {
            initialSigners: committee_keys.addresses(),
            initialThreshold: U256::from(2),
        }
        .abi_encode(),
    );
    let settlement = deploy(
        &anvil,
        deployer,
        &Settlement::BYTECODE,
        Settlement::constructorCall {
            token_: token,
            committee_: committee,
            withdrawalDelay_: U256::from(3 * 3600),
        }
        .abi_encode(),
    );

    // The deployer pays for two tenants' escrows and 500 tokens of emission.
    let approve = XnodeToken::approveCall {
        spender: settlement,
        value: U256::MAX,
    };
    assert!(succeeded(&send(
        &anvil,
        deployer,
        Some(token),
        &approve.abi_encode()
    )));
    for (tenant, amount) in [([0xa1u8; 32], 3_000 * TOKEN), ([0xb2u8; 32], 1_000 * TOKEN)] {
        let deposit = Settlement::depositCall {
            tenant: B256::from(tenant),
            amount: U256::from(amount),
        };
        assert!(succeeded(&send(
            &anvil,
            deployer,
            Some(settlement),
            &deposit.abi_encode()
        )));
    }
    let fund = Settlement::fundTreasuryCall {
        amount: U256::from(500 * TOKEN),
    };
    assert!(succeeded(&send(
        &anvil,
        deployer,
        Some(settlement),
        &fund.abi_encode()
    )));

    let payouts = vec![
        Payout {
            address: [0x31; 20],
            amount: 1_200 * TOKEN,
        },
        Payout {
            address: [0x32; 20],
            amount: 2_000 * TOKEN + 7,
        },
        Payout {
            address: [0x33; 20],
            amount: 1_299 * TOKEN,
        },
    ];
    let charges = vec![
        TenantCharge {
            tenant: PublicKeyBytes([0xa1; 32]),
            usage_value: 3_000 * TOKEN,
            charged: 3_000 * TOKEN,
        },
        TenantCharge {
            tenant: PublicKeyBytes([0xb2; 32]),
            usage_value: 1_000 * TOKEN,
            charged: 1_000 * TOKEN,
        },
    ];
    let plan = SettlementPlan::from_payouts(12, &payouts, &charges).unwrap();
    let now = anvil.latest_timestamp().unwrap();
    let deadline = U256::from(now + 3600);
    let digest = plan.digest(
        &domain(DomainName::Settlement, chain_id, settlement),
        deadline,
    );

    // f = 1 signature: refused; f+1 = 2: accepted.
    let too_few = plan.post_root_calldata(deadline, committee_keys.sign(digest, 1).unwrap());
    assert!(!succeeded(&send(
        &anvil,
        poster,
        Some(settlement),
        &too_few
    )));
    let quorum = plan.post_root_calldata(deadline, committee_keys.sign(digest, 2).unwrap());
    let receipt = send(&anvil, poster, Some(settlement), &quorum);
    assert!(succeeded(&receipt), "post: {receipt}");
    eprintln!("anvil: postRoot used {} gas", gas_used(&receipt));

    for claim in &plan.claims {
        let receipt = send(
            &anvil,
            poster,
            Some(settlement),
            &plan.claim_calldata(claim),
        );
        assert!(succeeded(&receipt), "claim: {receipt}");
        eprintln!("anvil: claim used {} gas", gas_used(&receipt));
        let balance = call(&anvil, token, &XnodeToken::balanceOfCall(claim.account));
        assert_eq!(balance, claim.amount);
    }
    let again = send(
        &anvil,
        poster,
        Some(settlement),
        &plan.claim_calldata(&plan.claims[0]),
    );
    assert!(!succeeded(&again), "a double claim was paid");
    assert_eq!(
        call(&anvil, settlement, &Settlement::potOfCall(12)),
        U256::ZERO
    );
    assert_eq!(
        call(&anvil, settlement, &Settlement::treasuryCall {}),
        U256::from(4_500 * TOKEN) - plan.total
    );
    for tenant in [[0xa1u8; 32], [0xb2; 32]] {
        assert_eq!(
            call(
                &anvil,
                settlement,
                &Settlement::escrowOfCall(B256::from(tenant))
            ),
            U256::ZERO
        );
    }
}
