//! Metered, countersigned receipts across real nodes: function calls made through a
//! tenant's edge are metered by the replicas that ran them, countersigned by the edge
//! under the tenant's grant, and settle in the ledger to exactly the calls made; a
//! replica that inflates its counter is countersigned only for what the edge saw, and
//! stops serving the tenant once the grace for its uncovered usage ran out. Objects stored
//! and read through the edge are metered the same way: the bytes replicas served and the
//! byte-hours they held, countersigned up to what the edge verified and placed. A job and
//! a worker are metered by the nodes that run them and countersigned by the edge from
//! their reports, never above the job's fuel limit or the workers' fuel rate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use xnode_deploy::spec::{JOB_RECORD_VERSION, JobSpec, Kind, StorageSpec};
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
        config.metering.exchange_interval = EXCHANGE;
        config.storage.chunk_size = 64 * 1024;
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

    // Another tenant, with the same edge, runs a job and a worker on the compute nodes
    // meanwhile (its own tenant, so that its runners' storage traffic does not mix with
    // the first tenant's counters checked below).
    let worker_tenant = Tenant::new();
    grant_countersigning(
        &cluster,
        &worker_tenant,
        0,
        epoch.0.saturating_sub(1),
        epoch.0 + 2,
    )
    .await;
    let compute_started = start_job_and_worker(&cluster, &worker_tenant).await;

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

    // Storage: a bucket with one copy of each chunk, so most of an object's chunks live on
    // nodes 1 and 2 and the edge reads them over the network.
    cluster
        .create_bucket_with_rf(0, &tenant, "metered", 1)
        .await;
    let object: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let stored_at = std::time::Instant::now();
    cluster
        .put(0, &tenant, "metered", "data", &object)
        .await
        .unwrap();
    let read = cluster.get(0, &tenant, "metered", "data", None).await;
    assert!(read.unwrap() == object, "the object reads back");
    let remote = remote_chunks(&cluster, &tenant, "metered", "data").await;
    assert!(remote.chunks > 0, "some chunks are placed off the edge");

    // A modified node 1 claims 1000 calls it never served, and a terabyte-hour of storage.
    let inflater = cluster.node(1);
    inflater
        .metering()
        .provided(tenant.id(), edge.id(), Resource::FunctionRequests, 1000);
    inflater.metering().provided(
        tenant.id(),
        edge.id(),
        Resource::StorageByteHours,
        INFLATED_BYTE_HOURS,
    );

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

    // Egress: the replicas' receipts add up to exactly what the edge verified, which is
    // the sealed bytes of the chunks it read from them (plus at most the seal's overhead).
    let by_resource = |receipts: &[Receipt], resource: Resource| -> u64 {
        receipts
            .iter()
            .filter(|r| r.body.resource == resource)
            .map(|r| r.body.cumulative)
            .sum()
    };
    let observed = |c: &Cluster, resource: Resource| -> u64 {
        let metering = c.node(0).metering();
        let now = metering.current_epoch().0;
        let mut total = 0;
        for provider in [c.id(1), c.id(2)] {
            for epoch in [now.saturating_sub(1), now] {
                let key = xnode_metering::CounterKey {
                    tenant: tenant.id(),
                    provider,
                    resource,
                    epoch: xnode_ledger::Epoch(epoch),
                };
                total += metering.observed_total(&key).unwrap();
            }
        }
        total
    };
    cluster
        .wait_until(
            "egress receipts covering what the edge read",
            Duration::from_secs(20),
            |c| {
                // Every chunk read is observed (the edge counts each as it arrives; on a
                // loaded machine the receipts can match a count still missing some) and
                // countersigned.
                let seen = observed(c, Resource::EgressBytes);
                seen >= remote.least_bytes && by_resource(&held(c), Resource::EgressBytes) == seen
            },
        )
        .await;
    let egress = by_resource(&held(&cluster), Resource::EgressBytes);
    eprintln!(
        "egress: {egress} bytes countersigned for {} chunks read from replicas",
        remote.chunks
    );
    assert!(
        egress >= remote.least_bytes && egress <= remote.most_bytes,
        "egress {egress} is not the {}..={} bytes of the {} chunks read from replicas",
        remote.least_bytes,
        remote.most_bytes,
        remote.chunks
    );

    // A replica that serves garbage is not paid for it: node 2 corrupts what it sends, so
    // the read fails (one copy of each chunk), its meter counts the bytes it sent, and its
    // countersigned egress stays what the edge verified.
    let node2 = cluster.id(2);
    if remote.holders.contains(&node2) {
        let egress_of = |c: &Cluster, provided: bool| -> u64 {
            let now = c.node(0).metering().current_epoch().0;
            (now.saturating_sub(1)..=now)
                .map(|epoch| {
                    let key = xnode_metering::CounterKey {
                        tenant: tenant.id(),
                        provider: node2,
                        resource: Resource::EgressBytes,
                        epoch: xnode_ledger::Epoch(epoch),
                    };
                    if provided {
                        c.node(2).metering().provided_total(&key).unwrap()
                    } else {
                        c.node(0).metering().observed_total(&key).unwrap()
                    }
                })
                .sum()
        };
        cluster.node(2).set_corrupt_served_chunks(true).unwrap();
        let garbled = cluster.get(0, &tenant, "metered", "data", None).await;
        cluster.node(2).set_corrupt_served_chunks(false).unwrap();
        assert!(garbled.is_err(), "bytes that did not match were returned");
        // Several exchange rounds, in which node 2 proposes what it metered.
        tokio::time::sleep(5 * EXCHANGE).await;
        let signed: u64 = held(&cluster)
            .iter()
            .filter(|r| r.body.provider == node2 && r.body.resource == Resource::EgressBytes)
            .map(|r| r.body.cumulative)
            .sum();
        let (metered, verified) = (egress_of(&cluster, true), egress_of(&cluster, false));
        assert!(
            metered > verified && signed == verified,
            "node 2 metered {metered}, the edge verified {verified}, {signed} countersigned"
        );
    }

    // Byte-hours: countersigned, never above what the edge observed nor above the bytes
    // placed on replicas times the time since the upload began (with room for a sampling
    // round that began before it, however late a busy machine ran it); node 1's
    // terabyte-hour is not signed.
    let byte_hours_bound = |elapsed: Duration| {
        let ms = (elapsed + Duration::from_secs(10)).as_millis() as u64;
        xnode_metering::byte_hours(remote.most_bytes, ms)
    };
    // Node 2 is honest: it is countersigned for the chunks it holds on its own meter (node
    // 1's inflated claim is countersigned up to what the edge observed, so it proves
    // nothing about the replica's meter).
    let honest = cluster.id(2);
    let honest_byte_hours = |c: &Cluster| -> u64 {
        held(c)
            .iter()
            .filter(|r| r.body.provider == honest && r.body.resource == Resource::StorageByteHours)
            .map(|r| r.body.cumulative)
            .sum()
    };
    cluster
        .wait_until("countersigned byte-hours", Duration::from_secs(20), |c| {
            by_resource(&held(c), Resource::StorageByteHours) > 0
                && (!remote.holders.contains(&honest) || honest_byte_hours(c) > 0)
        })
        .await;
    let receipts = held(&cluster);
    let byte_hours = by_resource(&receipts, Resource::StorageByteHours);
    let bound = byte_hours_bound(stored_at.elapsed());
    eprintln!("stored: {byte_hours} byte-hours countersigned (at most {bound})");
    assert!(
        byte_hours <= observed(&cluster, Resource::StorageByteHours) && byte_hours <= bound,
        "{byte_hours} byte-hours countersigned; the bound is {bound}"
    );
    assert!(
        receipts
            .iter()
            .all(|r| r.body.resource != Resource::StorageByteHours
                || r.body.cumulative < INFLATED_BYTE_HOURS),
        "the inflated byte-hours were countersigned"
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

    check_job_and_worker_receipts(&cluster, &worker_tenant, compute_started).await;
    cluster.shutdown().await;
}

/// The fuel limit of the test's job.
const JOB_FUEL_LIMIT: u64 = 2_000_000_000;

/// Deploys a worker and runs a short job for `tenant` through node 0, on the compute
/// nodes. Returns when the worker was deployed.
async fn start_job_and_worker(cluster: &Cluster, tenant: &Tenant) -> std::time::Instant {
    let on_compute = |spec: &mut xnode_deploy::spec::DeploymentSpec| {
        spec.placement
            .labels
            .insert("role".into(), "compute".into());
        spec.env.insert("INTERVAL_SECS".into(), "0.5".into());
    };
    cluster.create_bucket(0, tenant, "compute").await;
    let started = std::time::Instant::now();
    cluster
        .deploy(0, tenant, "beat", Kind::Worker, "heartbeat", 1, |spec| {
            on_compute(spec);
            spec.storage = Some(StorageSpec {
                bucket: "compute".into(),
                key_checks: Default::default(),
            });
        })
        .await;
    cluster
        .deploy(0, tenant, "batch", Kind::Job, "heartbeat", 1, |spec| {
            on_compute(spec);
            spec.env.insert("EXIT_AFTER".into(), "2".into());
            spec.limits.fuel = Some(JOB_FUEL_LIMIT);
            spec.limits.timeout_ms = Some(60_000);
        })
        .await;
    // Jobs run on any node: pick an id whose runner is not the edge (a job run on its own
    // edge exchanges no receipt).
    let candidates = cluster.node(0).compute().candidates();
    let mut job = JobSpec {
        v: JOB_RECORD_VERSION,
        id: String::new(),
        deployment: "batch".into(),
        args: vec![],
        stdin_b64: String::new(),
        inputs: vec![],
        output_bucket: "compute".into(),
        key_checks: Default::default(),
        owner: tenant.id().to_hex(),
        created_ms: xnode_types::unix_ms(),
    };
    job.id = (0..)
        .map(|n| format!("metered-{n}"))
        .find(|id| {
            let candidate = JobSpec {
                id: id.clone(),
                ..job.clone()
            };
            xnode_deploy::runner::job_runners(&candidate, &candidates).first()
                != Some(&cluster.id(0))
        })
        .unwrap();
    let entry = cluster
        .node(0)
        .compute()
        .submit_job(&tenant.id(), tenant.job(&job), tenant.data_key())
        .await
        .unwrap();
    cluster.node(0).gossip_entry(&entry).await;
    started
}

/// The job's and the worker's fuel is countersigned by the edge: more than zero, never
/// above the job's fuel limit or the workers' rate cap for the time the worker ran, and
/// an inflated proposal of either is countersigned only up to what the edge observed.
async fn check_job_and_worker_receipts(
    cluster: &Cluster,
    tenant: &Tenant,
    started: std::time::Instant,
) {
    let tenant_id = tenant.id();
    let edge = cluster.id(0);
    let network = cluster.node(0).config().network.clone();
    let countersigned = move |c: &Cluster, resource: Resource| -> BTreeMap<NodeId, u64> {
        let mut by_provider = BTreeMap::new();
        for i in [1, 2] {
            let metering = c.node(i).metering();
            let now = metering.current_epoch().0;
            for epoch in [now.saturating_sub(1), now] {
                for r in metering.receipts(xnode_ledger::Epoch(epoch), 1000).unwrap() {
                    if r.body.tenant == tenant_id
                        && r.body.resource == resource
                        && r.body.provider == c.id(i)
                        && r.grant.as_ref().is_some_and(|g| g.body.delegate == edge)
                        && r.verify(&network).is_ok()
                    {
                        *by_provider.entry(r.body.provider).or_insert(0) += r.body.cumulative;
                    }
                }
            }
        }
        by_provider
    };
    let observed = move |c: &Cluster, resource: Resource, provider: NodeId| -> u64 {
        let metering = c.node(0).metering();
        let now = metering.current_epoch().0;
        (now.saturating_sub(1)..=now)
            .map(|epoch| {
                let key = xnode_metering::CounterKey {
                    tenant: tenant_id,
                    provider,
                    resource,
                    epoch: xnode_ledger::Epoch(epoch),
                };
                metering.observed_total(&key).unwrap()
            })
            .sum()
    };
    let total = |map: &BTreeMap<NodeId, u64>| map.values().sum::<u64>();
    cluster
        .wait_until(
            "countersigned job and worker fuel",
            Duration::from_secs(20),
            |c| {
                total(&countersigned(c, Resource::JobFuel)) > 0
                    && total(&countersigned(c, Resource::WorkerFuel)) > 0
            },
        )
        .await;
    let worker_bound = |elapsed: Duration| -> u64 {
        let secs = elapsed.as_secs() + 5;
        xnode_deploy::MAX_WORKER_FUEL_PER_SECOND.saturating_mul(secs)
    };
    let job = countersigned(cluster, Resource::JobFuel);
    let worker = countersigned(cluster, Resource::WorkerFuel);
    eprintln!("job fuel countersigned: {job:?}; worker fuel countersigned: {worker:?}");
    assert_eq!(job.len(), 1, "one node ran the job: {job:?}");
    assert!(total(&job) <= JOB_FUEL_LIMIT);
    assert_eq!(worker.len(), 1, "one node runs the worker: {worker:?}");
    assert!(total(&worker) <= worker_bound(started.elapsed()));

    // The runners inflate their claims far beyond the bounds: the edge countersigns no
    // more than it observed, which stays within them.
    let (job_runner, _) = job.iter().next().map(|(n, f)| (*n, *f)).unwrap();
    let (worker_runner, _) = worker.iter().next().map(|(n, f)| (*n, *f)).unwrap();
    let node = |id: NodeId| (0..cluster.len()).find(|&i| cluster.id(i) == id).unwrap();
    cluster.node(node(job_runner)).metering().provided(
        tenant_id,
        edge,
        Resource::JobFuel,
        JOB_FUEL_LIMIT * 10,
    );
    cluster.node(node(worker_runner)).metering().provided(
        tenant_id,
        edge,
        Resource::WorkerFuel,
        u64::MAX / 4,
    );
    // Several exchange rounds, in which the runners propose what they metered.
    tokio::time::sleep(10 * EXCHANGE).await;
    let job = countersigned(cluster, Resource::JobFuel)[&job_runner];
    let worker = countersigned(cluster, Resource::WorkerFuel)[&worker_runner];
    let provided = |id: NodeId, resource: Resource| -> u64 {
        let metering = cluster.node(node(id)).metering();
        let now = metering.current_epoch().0;
        (now.saturating_sub(1)..=now)
            .map(|epoch| {
                let key = xnode_metering::CounterKey {
                    tenant: tenant_id,
                    provider: id,
                    resource,
                    epoch: xnode_ledger::Epoch(epoch),
                };
                metering.provided_total(&key).unwrap()
            })
            .sum()
    };
    eprintln!("after inflation: job {job}, worker {worker}");
    assert!(provided(job_runner, Resource::JobFuel) > JOB_FUEL_LIMIT * 10);
    assert!(
        job > 0 && job <= JOB_FUEL_LIMIT && job <= observed(cluster, Resource::JobFuel, job_runner)
    );
    assert!(provided(worker_runner, Resource::WorkerFuel) >= u64::MAX / 4);
    assert!(
        worker > 0
            && worker <= worker_bound(started.elapsed())
            && worker <= observed(cluster, Resource::WorkerFuel, worker_runner)
    );
}

fn cluster_edge(cluster: &Cluster) -> NodeId {
    cluster.id(0)
}

/// How often the test's nodes exchange receipts and sample stored bytes.
const EXCHANGE: Duration = Duration::from_millis(200);
/// What the modified node 1 claims of stored byte-hours.
const INFLATED_BYTE_HOURS: u64 = 1_000_000_000_000;

/// The chunks of an object placed off the edge (node 0), whose reads cross the network.
struct RemoteChunks {
    chunks: u64,
    /// Their plain bytes (the sealed ones are a little more).
    least_bytes: u64,
    /// Their plain bytes plus a generous allowance for the seal of each.
    most_bytes: u64,
    /// The nodes they are placed on.
    holders: Vec<NodeId>,
}

async fn remote_chunks(
    cluster: &Cluster,
    tenant: &Tenant,
    bucket: &str,
    key: &str,
) -> RemoteChunks {
    let details = cluster
        .node(0)
        .storage()
        .object_details(&tenant.id(), bucket, key)
        .await
        .unwrap();
    let edge = cluster.id(0);
    let mut remote = RemoteChunks {
        chunks: 0,
        least_bytes: 0,
        most_bytes: 0,
        holders: vec![],
    };
    // The manifest's size is its sealed size; data chunks report their plain size.
    for (chunk, seal) in
        std::iter::once((&details.manifest, 0)).chain(details.chunks.iter().map(|c| (c, 64)))
    {
        if !chunk.placed_on.contains(&edge) {
            remote.chunks += 1;
            remote.least_bytes += chunk.size;
            remote.most_bytes += chunk.size + seal;
            remote.holders.extend(chunk.placed_on.iter().copied());
        }
    }
    remote
}
