//! Compute against hostile tenants and peers (security review findings 1, 11, 13 and 21):
//! jobs injected through the registry are checked like jobs from the API and never write
//! outside a node's compute directory; only the node a job is placed on reports its
//! result; logs go only to their tenant; guests stay within the node's own caps. And
//! storage quotas (finding 23): a tenant's usage is counted from the replicated metadata,
//! so writing through another node does not escape it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xnode_deploy::spec::{JOB_RECORD_VERSION, JobInput, JobSpec, Kind, RunState};
use xnode_test_cluster::rogue::Rogue;
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::unix_ms;

fn job(tenant: &Tenant, id: &str, deployment: &str, inputs: Vec<JobInput>) -> JobSpec {
    JobSpec {
        v: JOB_RECORD_VERSION,
        id: id.into(),
        deployment: deployment.into(),
        args: vec![],
        stdin_b64: String::new(),
        inputs,
        output_bucket: "data".into(),
        key_checks: Default::default(),
        owner: tenant.id().to_hex(),
        created_ms: unix_ms(),
    }
}

fn input(name: &str, key: &str) -> JobInput {
    JobInput {
        name: name.into(),
        bucket: "data".into(),
        key: key.into(),
    }
}

/// Every run record any node published for a job id, whoever it names as owner.
fn any_runs(cluster: &Cluster, via: usize, id: &str) -> Vec<String> {
    let suffix = format!("/{id}");
    cluster
        .node(via)
        .registry()
        .list("run/")
        .into_iter()
        .filter(|e| e.key.contains("/job/") && e.key.ends_with(&suffix))
        .map(|e| e.key)
        .collect()
}

/// Submits `job` through node `via`'s compute API, as the HTTP route does.
async fn submit(cluster: &Cluster, via: usize, tenant: &Tenant, job: &JobSpec) {
    let entry = cluster
        .node(via)
        .compute()
        .submit_job(&tenant.id(), tenant.job(job), tenant.data_key())
        .await
        .unwrap();
    cluster.node(via).gossip_entry(&entry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_injected_through_the_registry_write_nothing_outside_the_compute_directory() {
    let cluster = Cluster::start(3).await;
    let tenant = Tenant::new();
    cluster.create_bucket(0, &tenant, "data").await;
    cluster
        .put(0, &tenant, "data", "payload", b"pwned\n")
        .await
        .unwrap();
    cluster
        .deploy(0, &tenant, "jobd", Kind::Job, "transform", 1, |_| {})
        .await;
    cluster
        .deploy(0, &tenant, "slow", Kind::Job, "heartbeat", 1, |s| {
            s.env.insert("INTERVAL_SECS".into(), "1".into());
            s.env.insert("EXIT_AFTER".into(), "4".into());
            s.limits.timeout_ms = Some(30_000);
        })
        .await;
    // A legitimate job first, so that node 0 holds the tenant's data key, as in the
    // review's reproduction.
    submit(
        &cluster,
        0,
        &tenant,
        &job(&tenant, "legit", "jobd", vec![input("input", "payload")]),
    )
    .await;

    // The attack: jobs signed by the tenant but sent straight into the registry from a
    // peer, past the API's checks. One names an input by an absolute path outside any
    // scratch directory; one has an id that climbs out of the jobs directory.
    let outside = tempfile::tempdir().unwrap();
    let proof = outside.path().join("xnode-rce-proof");
    let root = cluster.data_dir(0).parent().unwrap().to_path_buf();
    let climb = format!("../../../escaped-{:08x}", rand::random::<u32>());
    let absolute = job(
        &tenant,
        "x1",
        "jobd",
        vec![input(proof.to_str().unwrap(), "payload")],
    );
    let climbing = job(&tenant, &climb, "slow", vec![input("input", "payload")]);
    let rogue = Rogue::new(cluster.node(2).clone());
    for spec in [&absolute, &climbing] {
        rogue.push_entry(&tenant.job(spec)).await;
    }

    // The legitimate job runs (so jobs do run here), and for a while neither attack
    // leaves a trace: no file at the absolute path, no directory beside the nodes' data
    // directories, no run of either job.
    let started = Instant::now();
    let mut legit_done = false;
    while started.elapsed() < Duration::from_secs(12) || !legit_done {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the legitimate job did not finish"
        );
        legit_done = cluster
            .node(0)
            .compute()
            .job_runs(&tenant.id(), "legit")
            .iter()
            .any(|r| r.state == RunState::Succeeded);
        assert!(
            !proof.exists(),
            "a job input was written to {}",
            proof.display()
        );
        let escaped: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("escaped-"))
            .collect();
        assert!(
            escaped.is_empty(),
            "a job's scratch space escaped the compute directory: {escaped:?}"
        );
        for id in ["x1", climb.as_str()] {
            let runs = any_runs(&cluster, 0, id);
            assert!(runs.is_empty(), "job {id:?} ran: {runs:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_never_runs_another_tenants_deployment() {
    let cluster = Cluster::start(3).await;
    let victim = Tenant::new();
    let attacker = Tenant::new();
    cluster.create_bucket(0, &victim, "data").await;
    cluster
        .put(0, &victim, "data", "secret", b"victim data")
        .await
        .unwrap();
    cluster
        .deploy(0, &victim, "vjob", Kind::Job, "transform", 1, |_| {})
        .await;
    // The victim runs a job of its own, so nodes hold its data key.
    submit(
        &cluster,
        0,
        &victim,
        &job(&victim, "mine", "vjob", vec![input("input", "secret")]),
    )
    .await;
    // The attacker's job names the victim's deployment and the victim's object.
    let mut stolen = job(&attacker, "deputy", "vjob", vec![input("input", "secret")]);
    stolen.owner = attacker.id().to_hex();
    Rogue::new(cluster.node(2).clone())
        .push_entry(&attacker.job(&stolen))
        .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let runs = any_runs(&cluster, 0, "deputy");
        assert!(
            runs.is_empty(),
            "another tenant's job ran the victim's code: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.shutdown().await;
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET path` through node `via`'s API, signed by `tenant`.
async fn signed_get(
    cluster: &Cluster,
    via: usize,
    tenant: &Tenant,
    path: &str,
) -> serde_json::Value {
    let mut request = http().get(format!("{}{path}", cluster.api_url(via)));
    for (k, v) in tenant.signed_headers(&cluster.id(via), "GET", path, "", b"", false) {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_job_result_from_a_node_that_did_not_run_the_job_is_ignored() {
    let cluster = Cluster::start(3).await;
    let tenant = Tenant::new();
    cluster.create_bucket(0, &tenant, "data").await;
    cluster
        .put(0, &tenant, "data", "in.txt", b"hello\n")
        .await
        .unwrap();
    cluster
        .deploy(0, &tenant, "jobd", Kind::Job, "transform", 1, |_| {})
        .await;
    let spec = job(&tenant, "t1", "jobd", vec![input("input", "in.txt")]);
    // The forger is a live node that placement ranks below the job's runner: it never
    // runs the job, and publishes a "succeeded" run for it before the job even exists.
    let ranking =
        xnode_deploy::runner::job_ranking(&spec, &cluster.node(0).compute().candidates(), 3);
    let forger_id = *ranking.last().unwrap();
    let forger = (0..3).find(|&i| cluster.id(i) == forger_id).unwrap();
    let forged = xnode_deploy::spec::JobRun {
        v: 1,
        job: "t1".into(),
        owner: tenant.id().to_hex(),
        node: forger_id.to_string(),
        state: RunState::Succeeded,
        exit_code: Some(0),
        reason: None,
        outputs: vec!["x".into()],
        started_ms: u64::MAX,
        finished_ms: Some(u64::MAX),
        fuel: 0,
        wall_ms: 0,
    };
    let node = cluster.node(forger);
    let entry = node
        .registry()
        .put(
            node.key(),
            &xnode_deploy::spec::run_key(&forger_id, &tenant.id(), "t1"),
            serde_json::to_vec(&forged).unwrap(),
        )
        .unwrap();
    node.gossip_entry(&entry).await;
    cluster
        .wait_until("the forged run to spread", Duration::from_secs(10), |c| {
            (0..3).all(|i| c.node(i).registry().get(&entry.key).is_some())
        })
        .await;
    submit(&cluster, 0, &tenant, &spec).await;

    // The job runs on its runner, and the API reports that run, never the forged one.
    let started = Instant::now();
    loop {
        let view = signed_get(&cluster, 0, &tenant, "/v1/jobs/t1").await;
        assert_ne!(
            view["run"]["node"],
            forger_id.to_string(),
            "the API reports the forged run: {view}"
        );
        if view["state"] == "succeeded" {
            let outputs = view["run"]["outputs"].as_array().unwrap();
            assert!(
                outputs.iter().any(|o| o == "jobs/t1/out/output.txt"),
                "{view}"
            );
            assert_eq!(view["run"]["node"], ranking[0].to_string(), "{view}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the job did not run: {view}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let output = cluster
        .get(1, &tenant, "data", "jobs/t1/out/output.txt", None)
        .await
        .unwrap();
    assert_eq!(output, b"HELLO\n");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_gets_no_logs_of_another_tenant() {
    use xnode_deploy::proto::{ComputeRequest, ComputeResponse, LogsAuth, MAX_COMPUTE_MESSAGE};
    let cluster = Cluster::start(3).await;
    let tenant = Tenant::new();
    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 1, |_| {})
        .await;
    let spec = cluster.node(0).compute().deployment("hello").unwrap().spec;
    let replica_id = cluster.node(0).compute().place(&spec)[0];
    let peer = (0..3).find(|&i| cluster.id(i) != replica_id).unwrap();
    for _ in 0..3 {
        let r = http()
            .get(format!(
                "{}/fn/hello/secret?token=s3cr3t",
                cluster.api_url(0)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The tenant, through its edge, sees the replica's lines.
    let mine = cluster
        .node(peer)
        .compute()
        .gather_logs(
            &tenant.id(),
            "hello",
            &LogsAuth::sign(&tenant.key, "hello", &cluster.id(peer)),
        )
        .await;
    assert!(
        mine.iter().any(|l| l.message.contains("s3cr3t")),
        "the tenant does not see its own logs: {mine:?}"
    );
    // A peer asking for them by itself, or with a signature of another tenant, gets none.
    let stranger = Tenant::new();
    let owner = tenant.id().to_hex();
    let asks = [
        ComputeRequest::Logs {
            owner: owner.clone(),
            deployment: "hello".into(),
        },
        ComputeRequest::SignedLogsV2 {
            owner: owner.clone(),
            deployment: "hello".into(),
            auth: LogsAuth::sign(&stranger.key, "hello", &cluster.id(peer)),
        },
        ComputeRequest::SignedLogsV2 {
            owner: owner.clone(),
            deployment: "hello".into(),
            // The tenant's signature, but for another deployment's logs.
            auth: LogsAuth::sign(&tenant.key, "other", &cluster.id(peer)),
        },
        ComputeRequest::SignedLogsV2 {
            owner: owner.clone(),
            deployment: "hello".into(),
            // The tenant's signature for these logs, but of a request to the replica
            // itself, replayed by another node: it does not name the node relaying it.
            auth: LogsAuth::sign(&tenant.key, "hello", &replica_id),
        },
        ComputeRequest::SignedLogs {
            owner: owner.clone(),
            deployment: "hello".into(),
            // A v1 signature names no node, so it is no longer answered.
            auth: xnode_deploy::proto::LogsAuthV1 {
                query: String::new(),
                timestamp_ms: unix_ms(),
                nonce: "0123456789abcdef".into(),
                signature: vec![0; 64],
            },
        },
    ];
    for ask in asks {
        let bytes = cluster
            .node(peer)
            .mesh()
            .request(
                replica_id,
                "compute",
                xnode_wire::encode(&ask).unwrap(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        let answer: ComputeResponse = xnode_wire::decode(&bytes, MAX_COMPUTE_MESSAGE).unwrap();
        match answer {
            ComputeResponse::Logs(lines) => {
                assert!(lines.is_empty(), "{ask:?} got the tenant's logs: {lines:?}")
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guest_cannot_reach_the_nodes_loopback_unless_the_operator_allows_it() {
    let cluster = Cluster::start(3).await;
    let tenant = Tenant::new();
    let api = cluster.api_url(0).trim_start_matches("http://").to_owned();
    let port = api.rsplit(':').next().unwrap().to_owned();
    // "*" allows every host name; the node still refuses the addresses behind them.
    for (name, target) in [
        ("ssrf-ip", api.clone()),
        ("ssrf-name", format!("localhost:{port}")),
        ("ssrf-meta", "169.254.169.254".to_owned()),
    ] {
        cluster
            .deploy(0, &tenant, name, Kind::Http, "forbidden-fetch", 1, |s| {
                s.allowed_hosts = vec!["*".into()];
                s.env.insert("TARGET".into(), target.clone());
                s.env.insert("TARGET_PATH".into(), "/healthz".into());
                s.limits.timeout_ms = Some(8_000);
            })
            .await;
        let r = http()
            .get(format!("{}/fn/{name}/", cluster.api_url(1)))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("UNEXPECTED"),
            "{name}: the guest reached {target}: {body}"
        );
        assert_eq!(status, 502, "{name}: {body}");
    }
    cluster.shutdown().await;

    // An operator who allows loopback lets guests reach it (here: a node's own API).
    let cluster = Cluster::start_with(3, |c| {
        c.compute.outbound_allow = vec!["127.0.0.0/8".into()];
    })
    .await;
    let api = cluster.api_url(0).trim_start_matches("http://").to_owned();
    cluster
        .deploy(
            0,
            &tenant,
            "allowed",
            Kind::Http,
            "forbidden-fetch",
            1,
            |s| {
                s.allowed_hosts = vec!["*".into()];
                s.env.insert("TARGET".into(), api.clone());
                s.env.insert("TARGET_PATH".into(), "/healthz".into());
            },
        )
        .await;
    let r = http()
        .get(format!("{}/fn/allowed/", cluster.api_url(1)))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        body.contains("UNEXPECTED") && body.contains("status 200"),
        "{body}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absurd_manifest_limits_are_clamped_to_the_nodes_caps() {
    let cluster = Cluster::start_with(3, |c| {
        c.compute.max_function_timeout = Duration::from_secs(2);
        c.compute.max_output_mb = 1;
    })
    .await;
    let tenant = Tenant::new();
    cluster
        .deploy(0, &tenant, "spin", Kind::Http, "spin", 1, |s| {
            s.limits.timeout_ms = Some(u64::MAX);
            s.limits.fuel = Some(u64::MAX);
        })
        .await;
    cluster
        .deploy(0, &tenant, "bigout", Kind::Http, "bigout", 1, |s| {
            s.limits.max_output_kb = Some(u64::MAX);
            s.limits.timeout_ms = Some(u64::MAX);
        })
        .await;
    for (name, status, code) in [
        ("spin", 504, "timeout"),
        ("bigout", 502, "output_too_large"),
    ] {
        let started = Instant::now();
        let r = http()
            .get(format!("{}/fn/{name}/", cluster.api_url(1)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{name}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    cluster.shutdown().await;
}

/// Deploys without waiting for replicas (some are meant never to start).
async fn deploy_nowait(
    cluster: &Cluster,
    tenant: &Tenant,
    name: &str,
    kind: Kind,
    module: &str,
    replicas: u32,
    configure: impl FnOnce(&mut xnode_deploy::spec::DeploymentSpec),
) {
    let compute = cluster.node(0).compute();
    let id = compute
        .put_module(xnode_test_cluster::guest(module))
        .await
        .unwrap();
    let entry = tenant.deployment(name, kind, &id, replicas, configure);
    let (applied, _) = compute
        .deploy(&tenant.id(), entry, Some(tenant.data_key()))
        .await
        .unwrap();
    cluster.node(0).gossip_entry(&applied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_cannot_take_the_slots_functions_need() {
    let cluster = Cluster::start_with(3, |c| {
        c.compute.max_instances = 8;
        c.compute.max_workers = 2;
        c.compute.max_jobs = 1;
    })
    .await;
    let tenant = Tenant::new();
    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 3, |_| {})
        .await;
    // Eight workers on every node, each holding an instance slot while it sleeps.
    for i in 0..8 {
        deploy_nowait(
            &cluster,
            &tenant,
            &format!("sleeper-{i}"),
            Kind::Worker,
            "heartbeat",
            3,
            |s| {
                s.env.insert("INTERVAL_SECS".into(), "1".into());
            },
        )
        .await;
    }
    cluster
        .wait_until("workers to start", Duration::from_secs(20), |c| {
            (0..8).any(|i| {
                c.node(0)
                    .compute()
                    .replicas_of(&format!("sleeper-{i}"))
                    .iter()
                    .any(|(_, r)| r.state == "running")
            })
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for round in 0..20 {
        let via = round % 3;
        let r = http()
            .get(format!("{}/fn/hello/", cluster.api_url(via)))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(
            status,
            200,
            "through node {via}: {}",
            r.text().await.unwrap()
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_storage_quota_counts_writes_made_through_every_node() {
    // 10 kB objects in buckets with 3 copies store 30 kB each: a 100 kB quota holds 3.
    // The same operator allows two buckets and one deployment per tenant, and 8 MiB of
    // module uploads per hour.
    let c = Cluster::start_with(3, |cfg| {
        cfg.storage.quota.max_stored_bytes = Some(100_000);
        cfg.storage.quota.usage_refresh = Duration::from_secs(1);
        cfg.storage.quota.max_buckets = Some(2);
        cfg.compute.max_deployments_per_tenant = Some(1);
        cfg.compute.module_upload_mb_per_hour = 8;
    })
    .await;
    let tenant = Tenant::new();
    let neighbour = Tenant::new();
    c.create_bucket(0, &tenant, "quota").await;
    c.create_bucket(0, &neighbour, "roomy").await;
    let object = vec![7u8; 10_000];

    // Two objects written through nodes 1 and 2: node 0 never saw them go by.
    c.put(1, &tenant, "quota", "a", &object).await.unwrap();
    c.put(2, &tenant, "quota", "b", &object).await.unwrap();
    // Node 0 counts them from the replicas: one more fits, a fourth does not.
    c.put(0, &tenant, "quota", "c", &object).await.unwrap();
    let refused = c.put(0, &tenant, "quota", "d", &object).await.unwrap_err();
    assert!(
        matches!(refused, xnode_storage::StorageError::QuotaExceeded(_)),
        "{refused}"
    );
    // Another edge refuses too once its count is fresh (it counted 2 objects before).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = c.put(1, &tenant, "quota", "d", &object).await.unwrap_err();
    assert!(
        matches!(refused, xnode_storage::StorageError::QuotaExceeded(_)),
        "{refused}"
    );
    // Nothing of the refused writes became visible.
    assert!(c.get(0, &tenant, "quota", "d", None).await.is_err());
    // A neighbour's quota is its own.
    c.put(0, &neighbour, "roomy", "x", &object).await.unwrap();

    // A delete frees room at the next count.
    c.node(0)
        .storage()
        .delete_object(&tenant.id(), "quota", "a")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.put(0, &tenant, "quota", "d", &object).await.unwrap();

    // Buckets: a second one, made through another node, counts on node 0 once its
    // registry has it; a third is refused there, and nothing of it is claimed.
    c.create_bucket(1, &tenant, "second").await;
    c.wait_until(
        "node 0 to see the second bucket",
        Duration::from_secs(20),
        |c| c.node(0).storage().list_buckets(&tenant.id()).len() == 2,
    )
    .await;
    let refused = c
        .node(0)
        .storage()
        .create_bucket(&tenant.id(), "third", tenant.bucket_claim("third"))
        .unwrap_err();
    assert!(
        matches!(
            refused,
            xnode_storage::StorageError::TooManyBuckets { have: 2, max: 2 }
        ),
        "{refused}"
    );
    assert_eq!(c.node(0).storage().list_buckets(&tenant.id()).len(), 2);
    // Renewing a bucket it has is not a new bucket.
    c.node(0)
        .storage()
        .create_bucket(&tenant.id(), "second", tenant.bucket_claim("second"))
        .unwrap();

    // Deployments: one is allowed, a second is refused, an update of the first passes.
    deploy_nowait(&c, &tenant, "only", Kind::Http, "hello", 1, |_| {}).await;
    let compute = c.node(0).compute();
    let module = compute
        .put_module(xnode_test_cluster::guest("hello"))
        .await
        .unwrap();
    let refused = compute
        .deploy(
            &tenant.id(),
            tenant.deployment("another", Kind::Http, &module, 1, |_| {}),
            Some(tenant.data_key()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            xnode_deploy::ComputeOpError::QuotaExceeded { have: 1, max: 1 }
        ),
        "{refused}"
    );
    compute
        .deploy(
            &tenant.id(),
            tenant.deployment("only", Kind::Http, &module, 2, |_| {}),
            Some(tenant.data_key()),
        )
        .await
        .unwrap();
    // The neighbour has its own allowance.
    deploy_nowait(&c, &neighbour, "theirs", Kind::Http, "hello", 1, |_| {}).await;

    // Module uploads: 8 MiB per hour each. A 5 MiB module passes, a second is refused
    // with the wait until the budget has room, and the neighbour still uploads.
    let http = reqwest::Client::new();
    let upload = |who: &Tenant, fill: u8| {
        let mut module = b"\0asm".to_vec();
        module.resize(5 << 20, fill);
        let mut request = http
            .post(format!("{}/v1/modules", c.api_url(0)))
            .body(module.clone());
        for (name, value) in who.signed_headers(&c.id(0), "POST", "/v1/modules", "", &module, false)
        {
            request = request.header(name, value);
        }
        request.send()
    };
    assert_eq!(upload(&tenant, 1).await.unwrap().status(), 201);
    let refused = upload(&tenant, 2).await.unwrap();
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 2 MiB more at 8 MiB per hour: 15 minutes.
    assert!((850..=950).contains(&wait), "retry after {wait} s");
    assert_eq!(upload(&neighbour, 3).await.unwrap().status(), 201);
    c.shutdown().await;
}
