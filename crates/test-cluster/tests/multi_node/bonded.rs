//! `bonded` admission on a real chain (issues 12 and 14): four nodes on anvil, three whose
//! operators bonded the minimum and one whose operator bonded less. The fourth is a member
//! and an edge, but holds no chunk or metadata of a bucket written afterwards and runs no
//! function replica; once its operator tops the bond up, it becomes a candidate on every
//! node after its one-epoch probation, and a function replica moves onto it.
//!
//! Skipped with a message where anvil is not installed (see `xnode_chain::anvil`).

use std::time::Duration;

use xnode_chain::Address;
use xnode_chain::anvil::{Anvil, SKIP_MESSAGE, TOKEN, anvil_binary};
use xnode_deploy::spec::Kind;
use xnode_node::config::AdmissionPolicyName;
use xnode_settle::OperatorPayout;
use xnode_store::ObjectPath;
use xnode_test_cluster::{Cluster, Tenant, guest};
use xnode_types::SecretKey;

use crate::admission::{chunk_holders, data, meta_holders, node_index, object_chunks};

const NODES: usize = 4;
const UNBONDED: usize = 3;
const EPOCH: Duration = Duration::from_secs(2);
const MIN_BOND: u128 = 10 * TOKEN;
const CHUNK: u32 = 64 * 1024;

/// The epoch of `now_ms` as the nodes count it.
fn epoch_of(now_ms: u64) -> u64 {
    now_ms / EPOCH.as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_bonded_operators_hold_data_and_a_new_bond_admits_after_probation() {
    let Some(binary) = anvil_binary() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let anvil = Anvil::start(&binary).unwrap();
    let accounts = anvil.accounts().unwrap();
    // No settlement here: the committee only has to exist for the contracts to deploy.
    let contracts = anvil.deploy_contracts(&accounts[..1], 1).unwrap();
    let payouts: Vec<Address> = accounts[1..=NODES].to_vec();
    for (i, payout) in payouts.iter().enumerate() {
        let amount = if i == UNBONDED {
            MIN_BOND - 1
        } else {
            MIN_BOND
        };
        contracts.bond(&anvil, *payout, amount).unwrap();
    }
    let keys: Vec<SecretKey> = (0..NODES).map(|_| SecretKey::generate()).collect();
    let operators: Vec<OperatorPayout> = keys
        .iter()
        .zip(&payouts)
        .map(|(key, payout)| OperatorPayout {
            node: key.node_id(),
            payout: *payout,
        })
        .collect();
    let rpc_url = anvil.url();
    let staking = contracts.staking;
    let node_keys = keys.clone();
    let c = Cluster::start_with(NODES, move |config| {
        let i = node_index(config);
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let key_file = config.data_dir.join(xnode_node::identity::KEY_FILE);
        if !key_file.exists() {
            xnode_node::identity::write_key_file(&key_file, &node_keys[i]).unwrap();
        }
        config.storage.chunk_size = CHUNK;
        config.metering.epoch = EPOCH;
        config.chain.rpc_url = Some(rpc_url.clone());
        config.chain.staking_contract = Some(staking);
        config.settlement.operators = operators.clone();
        config.admission.policy = AdmissionPolicyName::Bonded;
        config.admission.min_bond = Some(MIN_BOND.to_string());
        config.admission.probation_epochs = Some(1);
    })
    .await;
    let outsider = c.id(UNBONDED);

    // The three bonds were mined before the nodes started, so once their probation is
    // over every node admits exactly those three, from the same block.
    c.wait_until(
        "every node admits exactly the three bonded operators' nodes",
        Duration::from_secs(15),
        |c| {
            c.running().iter().all(|&i| {
                let set = c.node(i).storage().storage_set();
                set.len() == 3 && set.iter().all(|n| n.id != outsider)
            })
        },
    )
    .await;
    assert!(!c.node(UNBONDED).storage().admitted_here());

    // A bucket written afterwards, through every node (the outsider is still an edge).
    let tenant = Tenant::new();
    c.create_bucket(UNBONDED, &tenant, "staked").await;
    let mut objects = Vec::new();
    for via in c.running() {
        let key = format!("via-{via}");
        let body = data(150_000, via as u8);
        let meta = c.put(via, &tenant, "staked", &key, &body).await.unwrap();
        objects.push((key, body, meta));
    }
    let mut chunks = Vec::new();
    for (_, _, meta) in &objects {
        chunks.extend(object_chunks(&c, 0, meta).await);
    }
    c.wait_until("every chunk on 3 nodes", Duration::from_secs(20), |c| {
        chunks.iter().all(|id| chunk_holders(c, id).len() == 3)
    })
    .await;
    for id in &chunks {
        assert!(
            !chunk_holders(&c, id).contains(&UNBONDED),
            "chunk {id} is on the node whose operator did not bond enough"
        );
    }
    for (key, body, _) in &objects {
        let path = ObjectPath::new(tenant.id(), "staked", key.clone()).unwrap();
        let holders = meta_holders(&c, &path).await;
        assert!(!holders.is_empty(), "{key}: no metadata anywhere");
        assert!(
            !holders.contains(&UNBONDED),
            "{key}: metadata on {holders:?}"
        );
        assert_eq!(
            &c.get(UNBONDED, &tenant, "staked", key, None).await.unwrap(),
            body,
            "{key} read through the outsider"
        );
    }

    // A function with four replicas runs on the three admitted nodes only.
    let compute = c.node(0).compute();
    let module = compute.put_module(guest("hello")).await.unwrap();
    let entry = tenant.deployment("hello", Kind::Http, &module, 4, |_| {});
    let (applied, _) = compute
        .deploy(&tenant.id(), entry, Some(tenant.data_key()))
        .await
        .unwrap();
    c.node(0).gossip_entry(&applied).await;
    c.wait_replicas(0, "hello", 3, Duration::from_secs(15))
        .await;
    assert_eq!(c.node(UNBONDED).compute().running_here(), 0);

    // The outsider's operator tops its bond up to the minimum. With one epoch of
    // probation it counts from the epoch after next: the bond must already stand at the
    // agreed block of the epoch before.
    let bonded_in = epoch_of(xnode_types::unix_ms());
    contracts.bond(&anvil, payouts[UNBONDED], 1).unwrap();
    c.wait_until(
        "every node admits the outsider after its probation",
        Duration::from_secs(15),
        |c| {
            c.running().iter().all(|&i| {
                c.node(i)
                    .storage()
                    .storage_set()
                    .iter()
                    .any(|n| n.id == outsider)
            })
        },
    )
    .await;
    assert!(c.node(UNBONDED).storage().admitted_here());
    let snapshot = c.node(0).storage().admission().bond_snapshot().unwrap();
    assert!(snapshot.nodes.contains(&outsider));
    assert!(
        snapshot.epoch >= bonded_in + 2,
        "admitted in epoch {} for a bond made in epoch {bonded_in}: no probation",
        snapshot.epoch
    );
    // The fourth replica moves onto it.
    c.wait_until(
        "the outsider runs a replica",
        Duration::from_secs(15),
        |c| c.node(UNBONDED).compute().running_here() == 1,
    )
    .await;
    c.shutdown().await;
}
