//! `xnode stake`, `xnode escrow` and a claim checked by the CLI, against the real
//! contracts on anvil: an operator bonds and starts unbonding, a tenant deposits, every
//! figure is read back from the chain, and a reward posted under a committee signature is
//! claimed with the proof the CLI checked. Skipped with a message where anvil is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolConstructor};
use serde_json::json;
use xnode_chain::anvil::{Anvil, SKIP_MESSAGE, anvil_binary};
use xnode_chain::{
    Committee, CommitteeSigners, DomainName, Settlement, SettlementPlan, Staking, XnodeToken,
    domain,
};
use xnode_settle::ChainClient;

use super::*;
use crate::cli::{ChainArgs, EscrowAction, StakeAction};

/// anvil's first development account (publicly known; funded on every anvil).
const DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

async fn deploy(client: &ChainClient, bytecode: &Bytes, args: Vec<u8>) -> Address {
    let mut code = bytecode.to_vec();
    code.extend(args);
    client
        .send(None, Bytes::from(code), MINED_WITHIN)
        .await
        .unwrap()
        .contract
        .expect("a deployment creates a contract")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bond_deposit_read_back_and_claim_on_anvil() {
    let Some(binary) = anvil_binary() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let anvil = Anvil::start(&binary).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, format!("0x{DEV_KEY}\n")).unwrap();
    let operator = PrivateKeySigner::from_bytes(&DEV_KEY.parse().unwrap()).unwrap();
    let client = ChainClient::new(anvil.url(), operator.clone()).unwrap();
    let chain_id = client.chain_id().await.unwrap();

    let committee_keys = CommitteeSigners::from_private_keys(&[B256::repeat_byte(0x42)]).unwrap();
    let token = deploy(
        &client,
        &XnodeToken::BYTECODE,
        XnodeToken::constructorCall {
            name_: "Xnode".into(),
            symbol_: "XND".into(),
            holder: operator.address(),
            supply: U256::from(1_000_000_000u64),
        }
        .abi_encode(),
    )
    .await;
    let committee = deploy(
        &client,
        &Committee::BYTECODE,
        Committee::constructorCall {
            initialSigners: committee_keys.addresses(),
            initialThreshold: U256::from(1),
        }
        .abi_encode(),
    )
    .await;
    let settlement = deploy(
        &client,
        &Settlement::BYTECODE,
        Settlement::constructorCall {
            token_: token,
            committee_: committee,
            withdrawalDelay_: U256::from(3600),
        }
        .abi_encode(),
    )
    .await;
    let staking = deploy(
        &client,
        &Staking::BYTECODE,
        Staking::constructorCall {
            token_: token,
            committee_: committee,
            repairPot_: Address::repeat_byte(0xee),
            unbondDelay_: U256::from(7 * 24 * 3600),
            exitFallbackDelay_: U256::from(30 * 24 * 3600),
        }
        .abi_encode(),
    )
    .await;

    // The node's configuration file names the chain; the key comes as a flag.
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[chain]\nrpc_url = \"{}\"\nsettlement_contract = \"{settlement}\"\nstaking_contract = \"{staking}\"\n",
            anvil.url()
        ),
    )
    .unwrap();
    let chain = ChainArgs {
        config: Some(config),
        key: Some(key_file.clone()),
        ..ChainArgs::default()
    };

    // Bond (the CLI approves the Staking contract first), then start unbonding part of it.
    stake(StakeAction::Bond {
        amount: "1_000".into(),
        chain: chain.clone(),
    })
    .await
    .unwrap();
    let bonded = view(&client, staking, &Staking::bondedCall(operator.address()))
        .await
        .unwrap();
    assert_eq!(bonded, U256::from(1000));
    stake(StakeAction::Unbond {
        amount: "400".into(),
        chain: chain.clone(),
    })
    .await
    .unwrap();
    let bonded = view(&client, staking, &Staking::bondedCall(operator.address()))
        .await
        .unwrap();
    let pending = view(
        &client,
        staking,
        &Staking::unbondingCall(operator.address()),
    )
    .await
    .unwrap();
    assert_eq!((bonded, pending.amount), (U256::from(600), U256::from(400)));
    assert!(pending.readyAt > U256::from(7 * 24 * 3600));
    // More than is bonded is refused before any transaction; withdrawing early reverts.
    assert!(
        stake(StakeAction::Unbond {
            amount: "601".into(),
            chain: chain.clone()
        })
        .await
        .is_err()
    );
    assert!(
        stake(StakeAction::Withdraw {
            quiet_epoch: None,
            api: "http://127.0.0.1:9".into(),
            chain: chain.clone()
        })
        .await
        .is_err()
    );
    // Status needs no key with --address.
    stake(StakeAction::Status {
        address: Some(operator.address()),
        chain: ChainArgs {
            key: None,
            ..chain.clone()
        },
    })
    .await
    .unwrap();

    // A tenant's escrow: deposit, read back.
    let tenant = "ab".repeat(32);
    escrow(EscrowAction::Deposit {
        amount: "5000".into(),
        tenant: Some(tenant.clone()),
        tenant_key: None,
        chain: chain.clone(),
    })
    .await
    .unwrap();
    let tenant_id = parse_tenant(&tenant).unwrap();
    let balance = view(&client, settlement, &Settlement::escrowOfCall(tenant_id))
        .await
        .unwrap();
    assert_eq!(balance, U256::from(5000));
    let withdrawer = view(
        &client,
        settlement,
        &Settlement::withdrawerOfCall(tenant_id),
    )
    .await
    .unwrap();
    assert_eq!(withdrawer, operator.address());
    escrow(EscrowAction::Status {
        tenant: Some(tenant),
        tenant_key: None,
        chain: ChainArgs {
            key: None,
            ..chain.clone()
        },
    })
    .await
    .unwrap();

    // An epoch's root posted under the committee's signature; the operator's claim, with
    // the proof as a node serves it, is checked by the CLI and accepted by the contract.
    let epoch = 3u64;
    let other = Address::repeat_byte(0x77);
    let payouts = [
        xnode_ledger::Payout {
            address: operator.address().0.0,
            amount: 700,
        },
        xnode_ledger::Payout {
            address: other.0.0,
            amount: 300,
        },
    ];
    let plan = SettlementPlan::from_payouts(epoch, &payouts, &[]).unwrap();
    let fund = XnodeToken::approveCall {
        spender: settlement,
        value: plan.total,
    };
    client
        .send(Some(token), fund.abi_encode().into(), MINED_WITHIN)
        .await
        .unwrap();
    let fund = Settlement::fundTreasuryCall { amount: plan.total };
    client
        .send(Some(settlement), fund.abi_encode().into(), MINED_WITHIN)
        .await
        .unwrap();
    let deadline = U256::from(4_000_000_000u64);
    let digest = plan.digest(
        &domain(DomainName::Settlement, chain_id, settlement),
        deadline,
    );
    let signatures = committee_keys.sign(digest, 1).unwrap();
    client
        .send(
            Some(settlement),
            plan.post_root_calldata(deadline, signatures),
            MINED_WITHIN,
        )
        .await
        .unwrap();

    let claim = plan.claim_of(operator.address()).unwrap();
    let served = json!({
        "epoch": epoch,
        "account": operator.address().to_string(),
        "amount": claim.amount.to_string(),
        "root": plan.rewards_root.to_string(),
        "proof": claim.proof.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "status": "posted",
    });
    let checked = CheckedClaim::from_view(&served, epoch, operator.address()).unwrap();
    let posted = view(&client, settlement, &Settlement::rootOfCall(epoch))
        .await
        .unwrap();
    assert_eq!(posted, checked.root);
    let before = view(
        &client,
        token,
        &XnodeToken::balanceOfCall(operator.address()),
    )
    .await
    .unwrap();
    let mined = client
        .send(Some(settlement), checked.calldata(), MINED_WITHIN)
        .await
        .unwrap();
    eprintln!("claim used {} gas", mined.gas_used);
    let after = view(
        &client,
        token,
        &XnodeToken::balanceOfCall(operator.address()),
    )
    .await
    .unwrap();
    assert_eq!(after - before, U256::from(700));
    assert!(
        view(
            &client,
            settlement,
            &Settlement::claimedCall {
                epoch,
                account: operator.address()
            }
        )
        .await
        .unwrap()
    );
    // The same claim twice is refused by the contract.
    assert!(
        client
            .send(Some(settlement), checked.calldata(), MINED_WITHIN)
            .await
            .is_err()
    );
}
