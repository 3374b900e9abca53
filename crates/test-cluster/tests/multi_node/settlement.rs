//! Epochs settle on a real EVM across real nodes (issue 14's first acceptance test): five
//! nodes with `[chain]` and `[settlement]` against a local anvil, each node's operator paid
//! to the wallet it bound in the registry (no configured payout table); a tenant escrows tokens,
//! stores and reads objects and calls a function (receipts for the byte-hours stored, the
//! bytes served and the calls, countersigned by its edge); every epoch
//! closes, every node computes the same root, the committee posts it, `rootOf` on chain is
//! that root, each operator claims exactly its row of the ledger's table, and the tenant's
//! escrow dropped by exactly its countersigned receipts. The ledger routes answer over
//! HTTP. Then four of the five nodes stop: the one left is fewer than f+1 and cannot post.
//!
//! Skipped with a message where anvil is not installed (see `xnode_chain::anvil`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use xnode_chain::anvil::{Anvil, Contracts, SKIP_MESSAGE, TOKEN, anvil_binary};
use xnode_chain::{Address, B256, SettlementPlan, U256};
use xnode_deploy::spec::Kind;
use xnode_ledger::{
    EpochInput, LedgerParams, Payout, SignatureVerifier, Stake, TenantCharge, TenantEscrow,
    compute_epoch,
};
use xnode_settle::{CommitteeMember, EpochRecord, EpochStatus, committee_signer};
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::SecretKey;

const NODES: usize = 5;
/// f+1 for five members (f = 1).
const THRESHOLD: usize = 2;
const EPOCH: Duration = Duration::from_secs(3);
const ESCROWED: u128 = 1_000 * TOKEN;

fn node_index(data_dir: &std::path::Path) -> usize {
    data_dir
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("node-"))
        .and_then(|i| i.parse().ok())
        .expect("a test-cluster data dir is node-<i>")
}

/// Tokens each operator bonds: the ledger pays only operators with at least its minimum
/// bond (an unbonded one is ejected, `BondExhausted`).
const BOND: u128 = 10 * TOKEN;

/// Node keys for `nodes` nodes, made before the nodes start so that the committee's
/// addresses are known to the contracts and to every node's configuration; the
/// settlement contracts deployed on `anvil` with those members and `threshold`; and gas
/// for each member, which posts with its own committee key.
pub(crate) fn committee_on_anvil(
    anvil: &Anvil,
    nodes: usize,
    threshold: usize,
) -> (Vec<SecretKey>, Vec<CommitteeMember>, Contracts) {
    let keys: Vec<SecretKey> = (0..nodes).map(|_| SecretKey::generate()).collect();
    let members: Vec<CommitteeMember> = keys
        .iter()
        .map(|key| CommitteeMember {
            node: key.node_id(),
            address: committee_signer(key).address(),
        })
        .collect();
    let addresses: Vec<Address> = members.iter().map(|m| m.address).collect();
    let contracts = anvil.deploy_contracts(&addresses, threshold).unwrap();
    for address in &addresses {
        anvil
            .set_balance(*address, U256::from(100u128 * TOKEN))
            .unwrap();
    }
    (keys, members, contracts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn epochs_settle_on_anvil_across_five_nodes_and_one_member_cannot_post() {
    let Some(binary) = anvil_binary() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let anvil = Anvil::start(&binary).unwrap();

    let (keys, members, contracts) = committee_on_anvil(&anvil, NODES, THRESHOLD);
    let tenant = Tenant::new();
    let tenant_word = B256::from(tenant.id().0);
    contracts.deposit(&anvil, tenant_word, ESCROWED).unwrap();

    // Each node has its own operator, paid to a wallet of its own that bonds and claims.
    // No configuration names the wallets: each operator binds its wallet in the registry
    // (the wallet signs its consent), as `xnode admission bind-payout` does.
    let wallets: Vec<PrivateKeySigner> = (0..NODES).map(|_| PrivateKeySigner::random()).collect();
    let payouts: Vec<Address> = wallets.iter().map(PrivateKeySigner::address).collect();
    for payout in &payouts {
        // anvil sends for an impersonated account without its key.
        anvil
            .set_balance(*payout, U256::from(10u128.pow(19)))
            .unwrap();
        anvil
            .rpc("anvil_impersonateAccount", serde_json::json!([payout]))
            .unwrap();
        contracts.bond(&anvil, *payout, BOND).unwrap();
    }
    let payout_of = |i: usize| payouts[i];
    let operator_keys: Vec<SecretKey> = (0..NODES).map(|_| SecretKey::generate()).collect();
    let rpc_url = anvil.url();
    let node_keys = keys.clone();
    let node_operators = operator_keys.clone();
    let cluster = Cluster::start_with(NODES, move |config| {
        let i = node_index(&config.data_dir);
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let key_file = config.data_dir.join(xnode_node::identity::KEY_FILE);
        if !key_file.exists() {
            xnode_node::identity::write_key_file(&key_file, &node_keys[i]).unwrap();
        }
        let operator_file = config
            .data_dir
            .join(xnode_node::identity::OPERATOR_KEY_FILE);
        if !operator_file.exists() {
            xnode_node::identity::write_key_file(&operator_file, &node_operators[i]).unwrap();
        }
        config.metering.epoch = EPOCH;
        config.storage.audit_epoch = EPOCH;
        config.metering.exchange_interval = Duration::from_millis(200);
        config.chain.rpc_url = Some(rpc_url.clone());
        config.chain.settlement_contract = Some(contracts.settlement);
        config.chain.staking_contract = Some(contracts.staking);
        let settlement = &mut config.settlement;
        settlement.enabled = true;
        settlement.committee = members.clone();
        settlement.threshold = THRESHOLD;
        // Stored byte-hours accrue in every epoch, so every epoch's last receipts are
        // countersigned after it ends: the grace leaves them ten exchange rounds.
        settlement.grace = Duration::from_secs(2);
        settlement.gather = Duration::from_secs(1);
        settlement.round_interval = Duration::from_millis(300);
        settlement.backup_post_after = Duration::from_secs(2);
        settlement.post_deadline = Duration::from_secs(3600);
        if i != 0 {
            config
                .compute
                .labels
                .insert("role".into(), "compute".into());
        }
    })
    .await;
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(cluster.id(i), key.node_id(), "node {i} runs its made key");
    }
    let edge = cluster.node(0);
    let network = edge.config().network.clone();

    // Each operator publishes its binding through another node's API; every node gets
    // them by gossip. The tenant's activity starts after that, so every epoch it pays
    // for pays its providers through the bindings.
    let http = reqwest::Client::new();
    for (i, (operator, wallet)) in operator_keys.iter().zip(&wallets).enumerate() {
        let binding =
            xnode_registry::payout::PayoutBinding::issue(operator, wallet, &network, 1).unwrap();
        let entry = xnode_registry::Entry::sign(
            operator,
            binding.registry_key(),
            Some(binding.encode().unwrap()),
            xnode_types::Hlc::new(xnode_types::unix_ms(), 0),
        )
        .unwrap();
        let published = http
            .post(format!(
                "{}/v1/operator/payout-binding",
                cluster.api_url((i + 1) % NODES)
            ))
            .json(&serde_json::json!({
                "binding": alloy::hex::encode(entry.value.as_ref().unwrap()),
                "hlc_wall_ms": entry.hlc.wall_ms,
                "hlc_logical": entry.hlc.logical,
                "signature": alloy::hex::encode(entry.signature.0),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 200, "binding {i}");
    }
    cluster
        .wait_until(
            "every node holds every payout binding",
            Duration::from_secs(20),
            |c| {
                (0..NODES).all(|i| {
                    let table = c.node(i).registry().payout_table(u64::MAX);
                    operator_keys
                        .iter()
                        .zip(&payouts)
                        .all(|(operator, payout)| table.get(&operator.public()) == Some(payout))
                })
            },
        )
        .await;
    let first = edge.metering().current_epoch().0;

    // The tenant lets its edge (node 0) countersign, then stores objects and calls a
    // function that runs on two of the other nodes.
    crate::metering::grant_countersigning(
        &cluster,
        &tenant,
        0,
        first.saturating_sub(1),
        first + 100,
    )
    .await;

    // One copy of each chunk: most chunks live off the edge, so the replicas holding them
    // are paid byte-hours and the reads below cross the network (egress).
    cluster.create_bucket_with_rf(0, &tenant, "files", 1).await;
    for k in 0..3 {
        cluster
            .put(
                0,
                &tenant,
                "files",
                &format!("object-{k}"),
                &[k as u8; 50_000],
            )
            .await
            .unwrap();
    }
    for k in 0..3 {
        let read = cluster
            .get(0, &tenant, "files", &format!("object-{k}"), None)
            .await
            .unwrap();
        assert!(read == [k as u8; 50_000], "object-{k} reads back");
    }
    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 2, |spec| {
            spec.placement
                .labels
                .insert("role".into(), "compute".into());
        })
        .await;
    let calls = 6u64;
    for _ in 0..calls {
        let answer = http
            .get(format!("{}/fn/hello/", cluster.api_url(0)))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let held = |c: &Cluster, epoch: u64| -> Vec<xnode_ledger::Receipt> {
        (0..NODES)
            .flat_map(|i| {
                let provider = c.id(i);
                c.node(i)
                    .metering()
                    .receipts(xnode_ledger::Epoch(epoch), 10_000)
                    .unwrap()
                    .into_iter()
                    .filter(move |r| r.body.provider == provider)
            })
            .filter(|r| r.body.tenant == tenant.id())
            .collect()
    };
    let requests_held = |c: &Cluster| -> u64 {
        let now = c.node(0).metering().current_epoch().0;
        (first..=now)
            .flat_map(|epoch| held(c, epoch))
            .filter(|r| r.body.resource == xnode_ledger::Resource::FunctionRequests)
            .map(|r| r.body.cumulative)
            .sum()
    };
    cluster
        .wait_until(
            "countersigned receipts covering every call",
            Duration::from_secs(20),
            |c| requests_held(c) == calls,
        )
        .await;
    let last_call_epoch = edge.metering().current_epoch().0;

    // Every node's record of every epoch up to the last call's says posted.
    let record = |c: &Cluster, i: usize, epoch: u64| -> Option<EpochRecord> {
        c.node(i).settlement().epoch_record(epoch).unwrap()
    };
    cluster
        .wait_until(
            "every member's records posted up to the last call's epoch",
            Duration::from_secs(30),
            |c| {
                (first..=last_call_epoch).all(|epoch| {
                    (0..NODES).all(|i| {
                        record(c, i, epoch).is_some_and(|r| r.status == EpochStatus::Posted)
                    })
                })
            },
        )
        .await;

    // The escrow and the last posted epoch, read consistently (no post in between).
    let (escrow_left, last_posted) = loop {
        let before: u64 = anvil
            .call(
                contracts.settlement,
                &xnode_chain::Settlement::lastEpochCall {},
            )
            .unwrap();
        let escrow = contracts.escrow_of(&anvil, tenant_word).unwrap();
        let after: u64 = anvil
            .call(
                contracts.settlement,
                &xnode_chain::Settlement::lastEpochCall {},
            )
            .unwrap();
        if before == after {
            break (escrow, after);
        }
    };
    assert!(last_posted >= last_call_epoch);
    // Node 0 marks an epoch posted once it sees the root on chain: within a round or two.
    cluster
        .wait_until(
            "node 0's records posted up to the last epoch on chain",
            Duration::from_secs(10),
            |c| {
                (first..=last_posted).all(|epoch| {
                    record(c, 0, epoch).is_some_and(|r| r.status == EpochStatus::Posted)
                })
            },
        )
        .await;

    let mut charged_by_records = 0u128;
    let mut recorded_totals = 0u128;
    let mut resources_charged = std::collections::BTreeSet::new();
    let mut paid: BTreeMap<Address, u128> = BTreeMap::new();
    let mut priced_receipts = 0u128;
    let mut verifier = SignatureVerifier::new(&network);
    for epoch in first..=last_posted {
        let reference = record(&cluster, 0, epoch).unwrap();
        recorded_totals += reference.total;
        let root = reference.root.expect("a posted record has a root");
        for i in 1..NODES {
            if let Some(other) = record(&cluster, i, epoch)
                && other.status == EpochStatus::Posted
            {
                assert_eq!(other.root, Some(root), "node {i} root of epoch {epoch}");
                assert_eq!(
                    other.payouts, reference.payouts,
                    "node {i} table of epoch {epoch}"
                );
            }
        }
        assert_eq!(
            contracts.root_of(&anvil, epoch).unwrap(),
            root,
            "rootOf({epoch}) on chain"
        );
        charged_by_records += reference
            .charges
            .iter()
            .filter(|c| c.tenant == tenant.id())
            .map(|c| c.charged)
            .sum::<u128>();

        // Each operator claims its row, with the proof rebuilt from the recorded table.
        let payouts: Vec<Payout> = reference
            .payouts
            .iter()
            .map(|p| Payout {
                address: p.address.into_array(),
                amount: p.amount,
            })
            .collect();
        let charges: Vec<TenantCharge> = reference
            .charges
            .iter()
            .map(|c| TenantCharge {
                tenant: c.tenant,
                usage_value: c.charged,
                charged: c.charged,
            })
            .collect();
        let plan = SettlementPlan::from_payouts(epoch, &payouts, &charges).unwrap();
        assert_eq!(plan.rewards_root, root);
        for claim in &plan.claims {
            let before = contracts.balance_of(&anvil, claim.account).unwrap();
            anvil
                .execute(
                    "claim",
                    contracts.deployer,
                    Some(contracts.settlement),
                    &plan.claim_calldata(claim),
                )
                .unwrap();
            let after = contracts.balance_of(&anvil, claim.account).unwrap();
            assert_eq!(after - before, claim.amount, "claim of {}", claim.account);
            *paid.entry(claim.account).or_default() += u128::try_from(claim.amount).unwrap();
        }

        // What the tenant's countersigned receipts of the epoch are worth, priced from
        // the receipts the providers hold (not from any record).
        let held_now = held(&cluster, epoch);
        resources_charged.extend(
            held_now
                .iter()
                .filter(|r| r.body.cumulative > 0)
                .map(|r| r.body.resource),
        );
        let receipts = held_now
            .iter()
            .map(|r| verifier.receipt(r).expect("a held receipt verifies"))
            .collect();
        let output = compute_epoch(&EpochInput {
            epoch: xnode_ledger::Epoch(epoch),
            params: LedgerParams::with_defaults(network.clone()),
            receipts,
            audits: vec![],
            // As every member builds them: each configured operator and its bond. A
            // provider without a stake is not charged for.
            stakes: (0..NODES)
                .map(|i| Stake {
                    operator: cluster.id(i),
                    payout_address: payout_of(i).into_array(),
                    bonded: BOND,
                    unbonding_at: None,
                })
                .collect(),
            escrows: vec![TenantEscrow {
                tenant: tenant.id(),
                balance: ESCROWED,
            }],
            reputation: Default::default(),
        })
        .unwrap();
        priced_receipts += output
            .tenants
            .iter()
            .filter(|t| t.tenant == tenant.id())
            .map(|t| t.usage_value)
            .sum::<u128>();
    }
    assert!(charged_by_records > 0, "the tenant was charged nothing");
    // The charges include storage (byte-hours held, bytes served), not only the calls.
    for resource in [
        xnode_ledger::Resource::FunctionRequests,
        xnode_ledger::Resource::StorageByteHours,
        xnode_ledger::Resource::EgressBytes,
    ] {
        assert!(
            resources_charged.contains(&resource),
            "no countersigned {resource:?} receipt in the settled epochs: {resources_charged:?}"
        );
    }
    assert_eq!(
        U256::from(ESCROWED) - escrow_left,
        U256::from(charged_by_records),
        "the escrow dropped by the recorded charges"
    );
    assert_eq!(
        charged_by_records, priced_receipts,
        "the charges are the countersigned receipts"
    );
    // Rewards come from the tenant's payments only (no emission by default), to the
    // operators that served, exactly as the tables say.
    assert_eq!(paid.values().sum::<u128>(), recorded_totals);
    assert!(
        recorded_totals > 0 && recorded_totals <= charged_by_records,
        "rewards {recorded_totals} paid {paid:?} charged {charged_by_records}"
    );
    assert!(
        paid.keys()
            .all(|account| (0..NODES).any(|i| payout_of(i) == *account))
    );

    // The ledger routes over HTTP, on a node that is not the edge.
    let status: serde_json::Value = http
        .get(format!("{}/v1/ledger/status", cluster.api_url(2)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["enabled"], true);
    assert_eq!(status["member"], true);
    assert_eq!(status["threshold"], THRESHOLD);
    assert_eq!(status["members"], NODES);
    assert_eq!(status["epoch_seconds"], EPOCH.as_secs());
    assert_eq!(
        status["committee_address"],
        committee_signer(&keys[2]).address().to_string()
    );
    assert!(
        status["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "posted")
    );
    let charged_epoch = (first..=last_call_epoch)
        .find(|&epoch| {
            record(&cluster, 2, epoch).is_some_and(|r| r.charges.iter().any(|c| c.charged > 0))
        })
        .expect("an epoch with a charge");
    let view: serde_json::Value = http
        .get(format!(
            "{}/v1/ledger/epoch/{charged_epoch}",
            cluster.api_url(2)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = record(&cluster, 2, charged_epoch).unwrap();
    assert_eq!(view["status"], "posted");
    assert_eq!(view["root"], stored.root.unwrap().to_string());
    assert_eq!(view["charges"][0]["tenant"], tenant.id().to_hex(), "{view}");
    assert_eq!(
        view["total"],
        stored
            .payouts
            .iter()
            .map(|p| p.amount)
            .sum::<u128>()
            .to_string()
    );
    let missing = http
        .get(format!("{}/v1/ledger/epoch/1", cluster.api_url(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(missing["error"]["code"], "not_found");

    // Four of five members stop: the one left signs its root but is fewer than f+1, so
    // no later epoch is posted, by it or anyone.
    let mut cluster = cluster;
    for i in 1..NODES {
        cluster.stop(i).await;
    }
    let alone_from = cluster.node(0).settlement().current_epoch().0 + 1;
    cluster
        .wait_until(
            "the remaining member to sign an epoch after the others stopped",
            Duration::from_secs(20),
            |c| {
                record(c, 0, alone_from)
                    .is_some_and(|r| r.status == EpochStatus::Voted && r.root.is_some())
            },
        )
        .await;
    // It keeps trying for longer than the backup poster's wait; nothing reaches the chain.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < watch_until {
        let alone = record(&cluster, 0, alone_from).unwrap();
        assert_ne!(alone.status, EpochStatus::Posted);
        assert_eq!(alone.votes.iter().filter(|v| v.agrees).count(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let last: u64 = anvil
        .call(
            contracts.settlement,
            &xnode_chain::Settlement::lastEpochCall {},
        )
        .unwrap();
    assert!(last < alone_from, "epoch {last} was posted by one member");
    cluster.shutdown().await;
}
