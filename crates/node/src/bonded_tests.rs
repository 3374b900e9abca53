//! Unit tests of `bonded` admission against a chain in memory: the agreed block is the same
//! whatever a node's tip, bonds count from the next epoch boundary, probation, and a chain
//! that cannot be read keeps the last snapshot (none admits no one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use xnode_registry::admission::AdmissionPolicy;
use xnode_types::{NodeId, SecretKey};

use super::*;

/// A chain in memory: blocks with a timestamp and the bonds after them, a tip, and a
/// switch that makes every read fail (the RPC endpoint down).
#[derive(Default)]
struct ChainState {
    blocks: Vec<(u64, BTreeMap<Address, u128>)>,
    tip: usize,
    down: bool,
}

#[derive(Clone, Default)]
struct MemoryChain(Arc<Mutex<ChainState>>);

impl MemoryChain {
    /// Mines a block at `timestamp` that sets `account`'s bond to `bond`.
    fn mine(&self, timestamp: u64, account: Address, bond: u128) {
        let mut state = self.0.lock().unwrap();
        let mut bonds = state
            .blocks
            .last()
            .map(|(_, bonds)| bonds.clone())
            .unwrap_or_default();
        bonds.insert(account, bond);
        state.blocks.push((timestamp, bonds));
        state.tip = state.blocks.len() - 1;
    }

    /// The same chain seen by a node whose endpoint's tip is block `tip`.
    fn at_tip(&self, tip: usize) -> MemoryChain {
        let state = self.0.lock().unwrap();
        MemoryChain(Arc::new(Mutex::new(ChainState {
            blocks: state.blocks.clone(),
            tip,
            down: false,
        })))
    }

    fn set_down(&self, down: bool) {
        self.0.lock().unwrap().down = down;
    }

    fn unreachable() -> BondReadError {
        BondReadError::Rpc(RpcError::Malformed {
            method: "eth_call",
            reason: "connection refused".into(),
        })
    }
}

impl BondChain for MemoryChain {
    async fn last_block_at_or_before(&self, at: u64) -> Result<u64, BondReadError> {
        let state = self.0.lock().unwrap();
        if state.down {
            return Err(Self::unreachable());
        }
        let found = state.blocks[..=state.tip]
            .iter()
            .rposition(|(timestamp, _)| *timestamp <= at)
            .unwrap_or(0);
        Ok(u64::try_from(found).unwrap())
    }

    async fn bonded(&self, account: Address, block: u64) -> Result<u128, BondReadError> {
        let state = self.0.lock().unwrap();
        if state.down {
            return Err(Self::unreachable());
        }
        let block = usize::try_from(block).unwrap();
        assert!(block <= state.tip, "read beyond the tip");
        Ok(state.blocks[block].1.get(&account).copied().unwrap_or(0))
    }
}

const MIN: u128 = 10;
/// Ten-second epochs: epoch 5 starts at second 50, and its agreed block is the last one
/// at or before second 49.
const EPOCH_MS: u64 = 10_000;

fn rule(probation_epochs: u64) -> BondRule {
    BondRule {
        epoch_ms: EPOCH_MS,
        requirement: BondRequirement {
            min_bond: MIN,
            probation_epochs,
        },
    }
}

struct Network {
    chain: MemoryChain,
    operators: Vec<OperatorPayout>,
    /// Nodes by name: `a1` and `a2` share operator a's payout address.
    nodes: BTreeMap<&'static str, NodeId>,
    accounts: BTreeMap<char, Address>,
}

/// Operators a (two nodes), b, c and d. Genesis at 0; a bonds at 40, b at 45, c bonds
/// too little at 49, d bonds at 50 (the first second of epoch 5), a unbonds at 55, and a
/// block at 70 moves the tip past epoch 6's agreed time.
fn network() -> Network {
    let accounts: BTreeMap<char, Address> = ['a', 'b', 'c', 'd']
        .into_iter()
        .zip(1u8..)
        .map(|(name, byte)| (name, Address::repeat_byte(byte)))
        .collect();
    let mut nodes = BTreeMap::new();
    let mut operators = Vec::new();
    for (name, account) in [("a1", 'a'), ("a2", 'a'), ("b", 'b'), ("c", 'c'), ("d", 'd')] {
        let node = SecretKey::generate().node_id();
        nodes.insert(name, node);
        operators.push(OperatorPayout {
            node,
            payout: accounts[&account],
        });
    }
    let chain = MemoryChain::default();
    let genesis = Address::repeat_byte(0xee);
    chain.mine(0, genesis, 0);
    chain.mine(40, accounts[&'a'], MIN);
    chain.mine(45, accounts[&'b'], MIN + 5);
    chain.mine(49, accounts[&'c'], MIN - 1);
    chain.mine(50, accounts[&'d'], MIN);
    chain.mine(55, accounts[&'a'], 0);
    chain.mine(70, genesis, 0);
    Network {
        chain,
        operators,
        nodes,
        accounts,
    }
}

impl Network {
    fn ids(&self, names: &[&str]) -> BTreeSet<NodeId> {
        names.iter().map(|name| self.nodes[name]).collect()
    }
}

#[tokio::test]
async fn every_node_reads_the_same_snapshot_whatever_its_tip() {
    let net = network();
    // Blocks: 0 genesis, 1 a@40, 2 b@45, 3 c@49, 4 d@50, 5 a-unbond@55, 6 @70.
    let mut snapshots = Vec::new();
    for tip in 3..=6 {
        let chain = net.chain.at_tip(tip);
        snapshots.push(
            read_snapshot(&chain, &rule(0), &net.operators, 5)
                .await
                .unwrap(),
        );
    }
    let expected = BondSnapshot {
        epoch: 5,
        block: 3,
        nodes: net.ids(&["a1", "a2", "b"]),
    };
    for snapshot in &snapshots {
        assert_eq!(snapshot, &expected);
    }
    // The rule itself: the second before the epoch starts, never before genesis.
    assert_eq!(rule(0).agreed_second(5), 49);
    assert_eq!(rule(0).agreed_second(0), 0);
    assert_eq!(rule(0).epoch_at(49_999), 4);
    assert_eq!(rule(0).epoch_at(50_000), 5);
    assert_eq!(rule(0).agreed_second(u64::MAX), u64::MAX / 1000 - 1);
}

#[tokio::test]
async fn bonds_and_unbonds_count_from_the_next_epoch_boundary() {
    let net = network();
    // d bonded in the first second of epoch 5: not in epoch 5's snapshot, in epoch 6's.
    // a unbonded during epoch 5: in epoch 5's snapshot, out of epoch 6's.
    let five = read_snapshot(&net.chain, &rule(0), &net.operators, 5)
        .await
        .unwrap();
    let six = read_snapshot(&net.chain, &rule(0), &net.operators, 6)
        .await
        .unwrap();
    assert_eq!(five.nodes, net.ids(&["a1", "a2", "b"]));
    assert_eq!(six.block, 5);
    assert_eq!(six.nodes, net.ids(&["b", "d"]));
    // c never reached the minimum; an address nobody lists admits nobody.
    assert!(!six.nodes.contains(&net.nodes["c"]));
    assert_eq!(net.accounts.len(), 4);
}

#[tokio::test]
async fn probation_admits_a_bond_only_once_it_is_old_enough() {
    let net = network();
    // One epoch of probation: epoch 6 needs the bond at second 49 and at second 59. b
    // (bonded at 45) qualifies; d (bonded at 50) does not yet.
    let six = read_snapshot(&net.chain, &rule(1), &net.operators, 6)
        .await
        .unwrap();
    assert_eq!(six.nodes, net.ids(&["b"]));
    let seven = read_snapshot(&net.chain, &rule(1), &net.operators, 7)
        .await
        .unwrap();
    assert_eq!(seven.nodes, net.ids(&["b", "d"]));
    // Operators bonded from the start serve their probation too: with two epochs, epoch
    // 5 looks back to second 29, before any bond.
    let early = read_snapshot(&net.chain, &rule(2), &net.operators, 5)
        .await
        .unwrap();
    assert!(early.nodes.is_empty(), "{early:?}");
}

#[tokio::test]
async fn an_unreachable_chain_keeps_the_last_snapshot_and_no_snapshot_admits_no_one() {
    let net = network();
    let admission = Arc::new(Admission::new("prod", AdmissionPolicy::Bonded));
    let metrics = BondMetrics::default();
    let mut worker = BondSnapshots::new(
        admission.clone(),
        net.chain.clone(),
        rule(0),
        net.operators.clone(),
        metrics.clone(),
    );
    // The chain is down from the start: no snapshot, so no one is admitted.
    net.chain.set_down(true);
    let error = worker.refresh(55_000).await.unwrap_err().to_string();
    assert!(error.contains("no node is admitted"), "{error}");
    assert!(admission.bond_snapshot().is_none());
    assert_eq!(metrics.snapshot_stale.get(), 1);
    assert_eq!(metrics.read_errors.get(), 1);

    // It comes back: epoch 5's snapshot.
    net.chain.set_down(false);
    assert!(worker.refresh(55_000).await.unwrap());
    assert_eq!(admission.bond_snapshot().unwrap().epoch, 5);
    assert_eq!(metrics.snapshot_stale.get(), 0);
    assert_eq!(metrics.snapshot_epoch.get(), 5);
    assert_eq!(metrics.bonded_nodes.get(), 3);
    // Within the same epoch nothing is read again (even with the chain down).
    net.chain.set_down(true);
    assert!(!worker.refresh(59_999).await.unwrap());

    // Epoch 6 begins with the chain down: epoch 5's snapshot stays, and it says so.
    let error = worker.refresh(60_000).await.unwrap_err().to_string();
    assert!(error.contains("keeping epoch 5's snapshot"), "{error}");
    let held = admission.bond_snapshot().unwrap();
    assert_eq!(held.epoch, 5);
    assert_eq!(held.nodes, net.ids(&["a1", "a2", "b"]));
    assert_eq!(metrics.snapshot_stale.get(), 1);
    assert!(
        worker
            .progress()
            .detail
            .unwrap()
            .starts_with("stale: cannot read epoch 6")
    );

    // Back again: every node that reads epoch 6 switches to the same set.
    net.chain.set_down(false);
    assert!(worker.refresh(61_000).await.unwrap());
    assert_eq!(
        admission.bond_snapshot().unwrap().nodes,
        net.ids(&["b", "d"])
    );
    assert_eq!(metrics.snapshot_stale.get(), 0);
}

/// A node's record, with its operator's certificate for `network`, as a registry entry.
fn record_entry(node: &SecretKey, operator: &SecretKey, network: &str) -> xnode_registry::Entry {
    let record = xnode_types::NodeRecord {
        node_id: node.node_id(),
        addresses: Vec::new(),
        api_url: None,
        zone: String::new(),
        capacity: xnode_types::Capacity::default(),
        version: "0.1.0".into(),
        incarnation: 1,
        status: xnode_types::NodeStatus::Active,
        started_at_ms: 1,
        labels: Default::default(),
        operator: Some(xnode_types::OperatorCert::issue(
            operator,
            network,
            &node.node_id(),
        )),
    };
    xnode_registry::Entry::sign(
        node,
        xnode_types::NodeRecord::registry_key(&node.node_id()),
        Some(xnode_wire::encode(&record).unwrap()),
        xnode_types::Hlc::new(1_000, 0),
    )
    .unwrap()
}

fn binding_entry(
    operator: &SecretKey,
    binding: &xnode_registry::payout::PayoutBinding,
) -> xnode_registry::Entry {
    xnode_registry::Entry::sign(
        operator,
        binding.registry_key(),
        Some(binding.encode().unwrap()),
        xnode_types::Hlc::new(1_000, 0),
    )
    .unwrap()
}

/// With no configured table, the payout binding in the registry binds a node to its
/// operator's bond; a Sybil that names the bonded operator's address (without its
/// signature) is refused on arrival and admitted by nothing.
#[tokio::test]
async fn a_registry_binding_admits_its_operators_nodes_and_a_sybil_naming_the_address_is_not_admitted()
 {
    use alloy::signers::local::PrivateKeySigner;
    use xnode_registry::payout::PayoutBinding;

    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(
        xnode_registry::Registry::open(
            xnode_db::Db::open(&dir.path().join("db")).unwrap(),
            Arc::new(xnode_types::HlcClock::new()),
            Box::new(xnode_registry::DefaultPolicy),
            xnode_registry::RegistryMetrics::default(),
        )
        .unwrap(),
    );
    registry.set_network("prod");
    let honest = SecretKey::generate();
    let wallet = PrivateKeySigner::random();
    let honest_node = SecretKey::generate();
    let sybil = SecretKey::generate();
    let sybil_node = SecretKey::generate();
    let chain = MemoryChain::default();
    chain.mine(0, Address::repeat_byte(0xee), 0);
    chain.mine(40, wallet.address(), MIN);

    registry
        .apply_remote(record_entry(&honest_node, &honest, "prod"))
        .unwrap();
    registry
        .apply_remote(record_entry(&sybil_node, &sybil, "prod"))
        .unwrap();
    let binding = PayoutBinding::issue(&honest, &wallet, "prod", 1).unwrap();
    registry
        .apply_remote(binding_entry(&honest, &binding))
        .unwrap();
    // The Sybil's binding names the bonded wallet, with a consent it signed itself.
    let mut stolen = PayoutBinding::issue(&sybil, &PrivateKeySigner::random(), "prod", 1).unwrap();
    stolen.address = wallet.address().into_array();
    assert!(
        registry
            .apply_remote(binding_entry(&sybil, &stolen))
            .is_err()
    );

    let admission = Arc::new(Admission::new("prod", AdmissionPolicy::Bonded));
    let source_registry = registry.clone();
    let mut worker = BondSnapshots::new(
        admission.clone(),
        chain,
        rule(0),
        Vec::new(),
        BondMetrics::default(),
    )
    .with_bindings(Arc::new(move |cut_ms| {
        crate::settlement::registry_payouts(&source_registry, "prod", cut_ms)
    }));
    assert!(worker.refresh(55_000).await.unwrap());
    let snapshot = admission.bond_snapshot().unwrap();
    assert_eq!(
        snapshot.nodes,
        BTreeSet::from([honest_node.node_id()]),
        "only the node whose operator's address signed is admitted"
    );
}

/// A payout binding dated before the epoch but received after the node took the epoch's
/// snapshot (gossip is late, or its writer's clock is behind) counts as soon as it
/// arrives: the node reads again at the same agreed block, so it ends up with the
/// snapshot of every node that had the binding in time. An unchanged table reads nothing.
#[tokio::test]
async fn a_binding_that_arrives_after_the_snapshot_is_taken_retakes_it_at_the_same_block() {
    let net = network();
    let by_name = |name: &str| {
        net.operators
            .iter()
            .find(|o| o.node == net.nodes[name])
            .cloned()
            .unwrap()
    };
    let received = Arc::new(Mutex::new(vec![by_name("b")]));
    let source = received.clone();
    let admission = Arc::new(Admission::new("prod", AdmissionPolicy::Bonded));
    let mut worker = BondSnapshots::new(
        admission.clone(),
        net.chain.clone(),
        rule(0),
        Vec::new(),
        BondMetrics::default(),
    )
    .with_bindings(Arc::new(move |_cut_ms| source.lock().unwrap().clone()));

    assert!(worker.refresh(55_000).await.unwrap());
    assert_eq!(admission.bond_snapshot().unwrap().nodes, net.ids(&["b"]));

    // Nothing moved: no read at all, so even a chain that is down changes nothing.
    net.chain.set_down(true);
    assert!(!worker.refresh(56_000).await.unwrap());
    net.chain.set_down(false);

    // a1's binding arrives late, dated before epoch 5.
    received.lock().unwrap().push(by_name("a1"));
    assert!(worker.refresh(57_000).await.unwrap());
    let retaken = admission.bond_snapshot().unwrap();
    let fresh = read_snapshot(&net.chain, &rule(0), &[by_name("a1"), by_name("b")], 5)
        .await
        .unwrap();
    assert_eq!(
        *retaken, fresh,
        "the same snapshot as a node that had both in time"
    );
    assert_eq!(retaken.nodes, net.ids(&["a1", "b"]));
    assert_eq!(retaken.block, 3);
    assert!(!worker.refresh(58_000).await.unwrap());
}
