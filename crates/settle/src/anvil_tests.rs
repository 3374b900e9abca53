//! End to end on anvil, as far as the sans-I/O pieces and the chain client go: four nodes'
//! bundles are gathered (one member first missing a bundle, then converging by summary
//! exchange), each member computes the same root from the same on-chain escrow, signs
//! it with its derived committee key, a single vote cannot post (our side refuses and so
//! does the contract), f+1 votes post through [`ChainClient`] with locally signed
//! transactions, every operator claims exactly the ledger's amount, and the tenant's
//! escrow drops by exactly its countersigned receipts. Skipped with a message where anvil
//! is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use xnode_chain::anvil::{Anvil, SKIP_MESSAGE, anvil_binary};
use xnode_chain::{DomainName, Settlement, SettlementPlan, XnodeToken, domain};
use xnode_ledger::{ReputationState, TenantEscrow, compute_epoch};

use crate::tests::{EPOCH, World, params, verified};
use crate::*;

/// anvil's first development account (publicly known; funded on every anvil).
const DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const WAIT: Duration = Duration::from_secs(60);

async fn view<C: SolCall>(client: &ChainClient, to: Address, call: &C) -> C::Return {
    let bytes = client.call(to, &call.abi_encode()).await.unwrap();
    C::abi_decode_returns(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_closes_and_settles_on_anvil() {
    let Some(binary) = anvil_binary() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let anvil = Anvil::start(&binary).unwrap();
    let poster_key: B256 = DEV_KEY.parse().unwrap();
    let client = ChainClient::new(
        anvil.url(),
        PrivateKeySigner::from_bytes(&poster_key).unwrap(),
    )
    .unwrap();
    let chain_id = client.chain_id().await.unwrap();

    let world = World::new();
    let members: Vec<PrivateKeySigner> = world.nodes.iter().map(committee_signer).collect();
    let addresses: Vec<Address> = members.iter().map(PrivateKeySigner::address).collect();
    let contracts = anvil.deploy_contracts(&addresses, 2).unwrap();
    assert_eq!(contracts.deployer, client.address());
    let (token, settlement) = (contracts.token, contracts.settlement);
    let tenant = B256::from(world.tenant.public().0);
    let escrowed = 500_000_000u128;
    contracts.deposit(&anvil, tenant, escrowed).unwrap();

    // Member 0 missed node 3's bundle at first; the summary exchange brings it.
    let bundles: Vec<EvidenceBundle> = (0..4).map(|i| world.bundle(i)).collect();
    let mut sets: Vec<EvidenceSet> = (0..4).map(|_| EvidenceSet::new(EPOCH)).collect();
    for (member, set) in sets.iter_mut().enumerate() {
        for (i, bundle) in bundles.iter().enumerate() {
            if member == 0 && i == 3 {
                continue;
            }
            set.insert(verified(bundle.clone()));
        }
    }
    let summary = sets[1].summary();
    for (publisher, _) in sets[0].wanted_from(&summary) {
        let bundle = sets[1].get(&publisher).unwrap().clone();
        sets[0].insert(bundle);
    }

    // Every member reads the escrow from the chain and computes the epoch.
    let on_chain = view(&client, settlement, &Settlement::escrowOfCall(tenant)).await;
    let escrows = vec![TenantEscrow {
        tenant: world.tenant.public(),
        balance: u128::try_from(on_chain).unwrap(),
    }];
    let outputs: Vec<_> = sets
        .iter()
        .map(|set| {
            compute_epoch(&set.epoch_input(
                params(),
                world.stakes(),
                escrows.clone(),
                ReputationState::default(),
            ))
            .unwrap()
        })
        .collect();
    assert!(
        outputs.iter().all(|output| output == &outputs[0]),
        "roots differ"
    );
    let output = &outputs[0];
    let plan = SettlementPlan::from_epoch(output).unwrap();
    let deadline = U256::from(4_000_000_000u64);
    let digest = plan.digest(
        &domain(DomainName::Settlement, chain_id, settlement),
        deadline,
    );

    let config = CommitteeConfig::new(&addresses, 2).unwrap();
    let mut quorum = QuorumCollector::new(config, EPOCH, digest, B256::ZERO);
    let votes: Vec<RootVote> = members
        .iter()
        .map(|member| RootVote::sign(member, EPOCH, digest, B256::ZERO).unwrap())
        .collect();
    quorum.add(&votes[0]).unwrap();
    assert!(quorum.signatures().is_err(), "one vote released signatures");
    // The contract refuses one signature too (estimation reverts, nothing is posted).
    let lone = plan.post_root_calldata(deadline, vec![votes[0].signature.clone()]);
    assert!(client.send(Some(settlement), lone, WAIT).await.is_err());

    quorum.add(&votes[2]).unwrap();
    let posted = client
        .send(
            Some(settlement),
            plan.post_root_calldata(deadline, quorum.signatures().unwrap()),
            WAIT,
        )
        .await
        .unwrap();
    eprintln!("postRoot used {} gas", posted.gas_used);

    for claim in &plan.claims {
        client
            .send(Some(settlement), plan.claim_calldata(claim), WAIT)
            .await
            .unwrap();
        let balance = view(&client, token, &XnodeToken::balanceOfCall(claim.account)).await;
        let mut address = [0u8; 20];
        address.copy_from_slice(claim.account.as_slice());
        assert_eq!(balance, U256::from(output.payout_of(&address)));
        assert!(balance > U256::ZERO);
    }
    assert_eq!(plan.claims.len(), 4);

    // The tenant paid exactly the priced latest receipts: 1,000 + 2,000 + 3,000 + 4,000
    // fuel at 1,000 base units each.
    let charged = output.charge_of(&world.tenant.public());
    assert_eq!(charged, 10_000 * 1_000);
    let left = view(&client, settlement, &Settlement::escrowOfCall(tenant)).await;
    assert_eq!(left, U256::from(escrowed - charged));
}
