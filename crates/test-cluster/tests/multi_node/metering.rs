//! Metered, countersigned receipts across real nodes: function calls made through a
//! tenant's edge are metered by the replicas that ran them, countersigned by the edge
//! under the tenant's grant, and settle in the ledger to exactly the calls made; a
//! replica that inflates its counter is countersigned only for what the edge saw, and
//! stops serving the tenant once the grace for its uncovered usage ran out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use xnode_deploy::spec::Kind;
use xnode_ledger::{
    EpochInput, GRANT_VERSION, GrantBody, LedgerParams, Price, PriceTable, Receipt, Resource,
    SignatureVerifier, Stake, TenantEscrow, compute_epoch,
};
use xnode_metering::Tolerance;
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::NodeId;

/// The tenant lets node `edge` countersign its receipts for epochs `from..=until`, through
/// the signed `PUT /v1/ledger/grant` route, as a client does.
pub(crate) async fn grant_countersigning(
    cluster: &Cluster,
    tenant: &Tenant,
    edge: usize,
    from: u64,
    until: u64,
) {
    let node = cluster.node(edge);
    let grant = GrantBody {
        v: GRANT_VERSION,
        network: node.config().network.clone(),
        tenant: tenant.id(),
        delegate: node.id(),
        delegate_key: node.key().public(),
        from_epoch: xnode_ledger::Epoch(from),
        until_epoch: xnode_ledger::Epoch(until),
    }
    .sign(&tenant.key);
    let body = serde_json::to_vec(&serde_json::json!({ "grant": grant })).unwrap();
    let mut request = reqwest::Client::new()
        .put(format!("{}/v1/ledger/grant", cluster.api_url(edge)))
        .body(body.clone());
    for (name, value) in
        tenant.signed_headers(&node.id(), "PUT", "/v1/ledger/grant", "", &body, false)
    {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn countersigned_receipts_settle_to_the_calls_made_and_inflation_is_not_signed() {
    // Node 0 is the tenant's edge and runs nothing; nodes 1 and 2 run the function.
    let cluster = Cluster::start_with(3, |config| {
        config.metering.exchange_interval = Duration::from_millis(200);
        config.metering.tolerance = Tolerance { ppm: 0, slack: 0 };
        config.metering.enforce = true;
        config.metering.grace = Duration::from_secs(1);
        if !config.data_dir.ends_with("node-0") {
            config
                .compute
                .labels
                .insert("role".into(), "compute".into());
        }
    })
    .await;
    let tenant = Tenant::new();
    let edge = cluster.node(0);
    let network = edge.config().network.clone();
    let epoch = edge.metering().current_epoch();

    // The tenant lets its edge countersign, through the signed API route.
    grant_countersigning(&cluster, &tenant, 0, epoch.0.saturating_sub(1), epoch.0 + 2).await;
    let http = reqwest::Client::new();

    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 2, |spec| {
            spec.placement
                .labels
                .insert("role".into(), "compute".into());
        })
        .await;
    let calls = 8u64;
    for _ in 0..calls {
        let answer = http
            .get(format!("{}/fn/hello/", cluster.api_url(0)))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    // A modified node 1 claims 1000 calls it never served.
    let inflater = cluster.node(1);
    inflater
        .metering()
        .provided(tenant.id(), edge.id(), Resource::FunctionRequests, 1000);

    // Wait until each replica holds a countersigned receipt for exactly what the edge saw
    // it serve, and the receipts add up to the calls made.
    let providers: Vec<NodeId> = vec![cluster.id(1), cluster.id(2)];
    let held = |c: &Cluster| -> Vec<Receipt> {
        [1, 2]
            .iter()
            .flat_map(|&i| {
                let metering = c.node(i).metering();
                let now = metering.current_epoch();
                let mut all = metering
                    .receipts(xnode_ledger::Epoch(now.0.saturating_sub(1)), 1000)
                    .unwrap();
                all.extend(metering.receipts(now, 1000).unwrap());
                all
            })
            .filter(|r| r.body.provider != cluster_edge(c) && r.body.tenant == tenant.id())
            .collect()
    };
    let requests_total = |receipts: &[Receipt]| -> u64 {
        receipts
            .iter()
            .filter(|r| r.body.resource == Resource::FunctionRequests)
            .map(|r| r.body.cumulative)
            .sum()
    };
    cluster
        .wait_until(
            "receipts covering every call",
            Duration::from_secs(20),
            |c| requests_total(&held(c)) == calls,
        )
        .await;
    let receipts = held(&cluster);
    assert!(
        receipts
            .iter()
            .all(|r| providers.contains(&r.body.provider)),
        "only the replicas hold receipts"
    );
    // The inflated part was never countersigned: node 1's meter is 1000 ahead of its
    // best receipt.
    let inflated_receipt = receipts
        .iter()
        .filter(|r| {
            r.body.provider == cluster.id(1) && r.body.resource == Resource::FunctionRequests
        })
        .map(|r| r.body.cumulative)
        .max()
        .unwrap_or(0);
    assert!(
        inflated_receipt < 1000,
        "node 1 got {inflated_receipt} countersigned"
    );

    // The same receipts through the HTTP route, as another node would fetch them.
    let listed: serde_json::Value = http
        .get(format!(
            "{}/v1/ledger/receipts?epoch={}",
            cluster.api_url(2),
            receipts[0].body.epoch.0
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["provider"] == cluster.id(2).to_string()
                && r["countersigned_by"] == edge.id().to_string())
    );

    // Settle: one base unit per call, none for fuel, so the charge is the calls made.
    let mut params = LedgerParams::with_defaults(network.clone());
    let free = Price::new(0, 0);
    params.prices = PriceTable {
        storage_byte_hours: free,
        egress_bytes: free,
        function_fuel: free,
        function_requests: Price::new(1, 0),
        job_fuel: free,
        worker_fuel: free,
    };
    let mut verifier = SignatureVerifier::new(&network);
    let mut by_epoch: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    for receipt in &receipts {
        by_epoch
            .entry(receipt.body.epoch.0)
            .or_default()
            .push(verifier.receipt(receipt).expect("a held receipt verifies"));
    }
    let mut charged = 0u128;
    for (epoch, receipts) in by_epoch {
        let output = compute_epoch(&EpochInput {
            epoch: xnode_ledger::Epoch(epoch),
            params: params.clone(),
            receipts,
            audits: vec![],
            stakes: (0..3)
                .map(|i| Stake {
                    operator: cluster.id(i),
                    payout_address: [i as u8 + 1; 20],
                    bonded: 10u128.pow(24),
                    unbonding_at: None,
                })
                .collect(),
            escrows: vec![TenantEscrow {
                tenant: tenant.id(),
                balance: 10u128.pow(24),
            }],
            reputation: Default::default(),
        })
        .unwrap();
        charged += output
            .tenants
            .iter()
            .filter(|t| t.tenant == tenant.id())
            .map(|t| t.charged)
            .sum::<u128>();
    }
    assert_eq!(charged, u128::from(calls));

    // Node 1's inflated usage is never countersigned, so after the grace it stops serving
    // the tenant; node 2, fully countersigned, keeps serving, and the edge's calls still
    // succeed through it.
    cluster
        .wait_until(
            "node 1 to stop serving the tenant",
            Duration::from_secs(10),
            |c| !c.node(1).metering().may_serve(&tenant.id()),
        )
        .await;
    assert!(cluster.node(2).metering().may_serve(&tenant.id()));
    let answer = http
        .get(format!("{}/fn/hello/", cluster.api_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    cluster.shutdown().await;
}

fn cluster_edge(cluster: &Cluster) -> NodeId {
    cluster.id(0)
}
