//! Compute key grants against hostile peers (security review finding 3): a node placed for a
//! deployment gets only the keys of that deployment's signed buckets, never the tenant's
//! data key nor another bucket's key; no peer can substitute a key of its own; a job's keys
//! are gone once it has finished; records without signed key checks get no key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xnode_deploy::grants::GrantKeys;
use xnode_deploy::proto::{ComputeRequest, ComputeResponse, MAX_COMPUTE_MESSAGE};
use xnode_deploy::spec::{JOB_RECORD_VERSION, JobInput, JobSpec, Kind, RunState, StorageSpec};
use xnode_storage::StorageError;
use xnode_store::{BucketKey, DataKey, ScopedKeys};
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::{NodeId, PublicKeyBytes, unix_ms};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends a compute request from node `from` to `to`, as a modified node could.
async fn ask(
    cluster: &Cluster,
    from: usize,
    to: NodeId,
    request: &ComputeRequest,
) -> ComputeResponse {
    let bytes = cluster
        .node(from)
        .mesh()
        .request(
            to,
            "compute",
            xnode_wire::encode(request).unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    xnode_wire::decode(&bytes, MAX_COMPUTE_MESSAGE).unwrap()
}

async fn ask_grant(
    cluster: &Cluster,
    from: usize,
    to: NodeId,
    owner: &PublicKeyBytes,
    purpose: &str,
) -> Option<ScopedKeys> {
    match ask(
        cluster,
        from,
        to,
        &ComputeRequest::Grant {
            owner: owner.to_hex(),
            purpose: purpose.into(),
        },
    )
    .await
    {
        ComputeResponse::Grant(Some(bytes)) => {
            Some(GrantKeys::decode(&bytes).expect("a well-formed grant"))
        }
        ComputeResponse::Grant(None) => None,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_placed_peer_gets_only_its_buckets_keys_and_cannot_substitute_them() {
    let cluster = Cluster::start(4).await;
    let tenant = Tenant::new();
    let owner = tenant.id();
    cluster.create_bucket(0, &tenant, "data").await;
    cluster.create_bucket(0, &tenant, "secrets").await;
    cluster
        .put(
            0,
            &tenant,
            "secrets",
            "plan.txt",
            b"the tenant's secret plan",
        )
        .await
        .unwrap();
    // Placed on every node, so the "rogue" node 3 is placed too: what a node that ground
    // its id into placement would be.
    cluster
        .deploy(0, &tenant, "object-rw", Kind::Http, "object-rw", 4, |s| {
            s.allowed_hosts = vec!["store.xnode".into()];
            s.storage = Some(StorageSpec {
                bucket: "data".into(),
                key_checks: Default::default(),
            });
            s.env.insert("BUCKET".into(), "data".into());
        })
        .await;
    let rogue = 3;
    let data_key = tenant.data_key();
    let real_data_key = BucketKey::derive(&data_key, "data");

    // Every honest replica serves a call locally, and gets its keys for it: pushed by the
    // edge, or asked of a peer on first use.
    let client = http();
    for target in 0..3 {
        let response = client
            .get(format!("{}/fn/object-rw/missing", cluster.api_url(target)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{}", response.text().await.unwrap());
    }

    // (a) Theft: the edge and every replica answer a placed node, with the key of the
    // deployment's bucket only.
    for target in 0..3 {
        let keys = ask_grant(&cluster, rogue, cluster.id(target), &owner, "object-rw")
            .await
            .unwrap_or_else(|| panic!("node {target} gave a placed node no key"));
        assert_eq!(keys.buckets().collect::<Vec<_>>(), ["data"]);
        let key = keys.get("data").unwrap();
        assert_eq!(*key, real_data_key);
        assert_ne!(
            key.to_hex(),
            data_key.to_hex(),
            "the tenant's data key was handed out"
        );
        // The key opens nothing outside its bucket: not with the keyring as granted, not
        // even when presented as the other bucket's key.
        let storage = cluster.node(rogue).storage();
        for keyring in [
            keys.clone(),
            ScopedKeys::from_keys([("secrets".to_string(), key.clone())].into()),
        ] {
            match storage
                .get_object(&owner, "secrets", "plan.txt", &keyring, None)
                .await
            {
                Err(StorageError::AccessDenied(_)) => {}
                Err(e) => panic!("expected access_denied, got {e}"),
                Ok(_) => panic!("a granted bucket key read another bucket"),
            }
        }
        // Nor as a data key: the tenant's objects need the real one.
        let as_data_key = DataKey::from_hex(&key.to_hex()).unwrap();
        assert!(
            storage
                .get_object(&owner, "secrets", "plan.txt", &as_data_key, None)
                .await
                .is_err()
        );
    }
    // Keys of work that does not exist, or of another owner, go to nobody.
    assert!(
        ask_grant(&cluster, rogue, cluster.id(0), &owner, "job:nope")
            .await
            .is_none()
    );
    assert!(
        ask_grant(
            &cluster,
            rogue,
            cluster.id(0),
            &Tenant::new().id(),
            "object-rw"
        )
        .await
        .is_none()
    );

    // The function itself cannot leave its signed scope, with any method.
    cluster
        .deploy(
            0,
            &tenant,
            "object-rw-out",
            Kind::Http,
            "object-rw",
            1,
            |s| {
                s.allowed_hosts = vec!["store.xnode".into()];
                s.storage = Some(StorageSpec {
                    bucket: "data".into(),
                    key_checks: Default::default(),
                });
                s.env.insert("BUCKET".into(), "secrets".into());
            },
        )
        .await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = client
            .request(
                method.clone(),
                format!("{}/fn/object-rw-out/plan.txt", cluster.api_url(1)),
            )
            .body("overwritten")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status == 502 && text.contains("403"),
            "{method} outside the scope: {status} {text}"
        );
    }
    assert_eq!(
        cluster
            .get(2, &tenant, "secrets", "plan.txt", None)
            .await
            .unwrap(),
        b"the tenant's secret plan"
    );

    // (b) Substitution: a pushed attacker key is refused by every replica, in place of
    // the real key or for a bucket outside the scope.
    let attacker = ScopedKeys::derive(&DataKey([0x66; 32]), ["data"]);
    let widened = ScopedKeys::from_keys(
        [
            ("data".to_string(), real_data_key.clone()),
            (
                "secrets".to_string(),
                BucketKey::derive(&DataKey([0x66; 32]), "secrets"),
            ),
        ]
        .into(),
    );
    for target in 0..3 {
        for keys in [&attacker, &widened] {
            let answer = ask(
                &cluster,
                rogue,
                cluster.id(target),
                &ComputeRequest::PushGrant {
                    owner: owner.to_hex(),
                    purpose: "object-rw".into(),
                    keys: GrantKeys::encode(keys),
                },
            )
            .await;
            assert!(matches!(answer, ComputeResponse::Ok), "{answer:?}");
        }
        let kept = ask_grant(&cluster, rogue, cluster.id(target), &owner, "object-rw")
            .await
            .unwrap();
        assert_eq!(
            kept,
            ScopedKeys::from_keys([("data".to_string(), real_data_key.clone())].into())
        );
    }
    // The function's writes, on every replica, stay readable with the tenant's real key.
    for target in 0..3 {
        let key = format!("note-{target}.txt");
        let response = client
            .put(format!("{}/fn/object-rw/{key}", cluster.api_url(target)))
            .body("hi")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        assert_eq!(
            cluster.get(2, &tenant, "data", &key, None).await.unwrap(),
            b"hi"
        );
        assert!(
            cluster
                .node(rogue)
                .storage()
                .get_object(&owner, "data", &key, &attacker, None)
                .await
                .is_err(),
            "the attacker's key reads what the function wrote"
        );
    }

    // Deleting the deployment drops its keys everywhere.
    let tombstone = xnode_registry::Entry::sign(
        &tenant.key,
        xnode_deploy::spec::deployment_key(&owner, "object-rw"),
        None,
        xnode_types::Hlc::new(unix_ms(), 0),
    )
    .unwrap();
    let applied = cluster
        .node(0)
        .compute()
        .undeploy(&owner, "object-rw", tombstone)
        .unwrap();
    cluster.node(0).gossip_entry(&applied).await;
    cluster
        .wait_until(
            "every node to drop the deleted deployment's keys",
            Duration::from_secs(30),
            |c| (0..4).all(|i| !c.node(i).compute().holds_grant(&owner, "object-rw")),
        )
        .await;
    cluster.shutdown().await;
}

fn job(tenant: &Tenant, id: &str) -> JobSpec {
    JobSpec {
        v: JOB_RECORD_VERSION,
        id: id.into(),
        deployment: "transform".into(),
        args: vec![],
        stdin_b64: String::new(),
        inputs: vec![JobInput {
            name: "input".into(),
            bucket: "data".into(),
            key: "in.txt".into(),
        }],
        output_bucket: "out".into(),
        key_checks: Default::default(),
        owner: tenant.id().to_hex(),
        created_ms: unix_ms(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finished_jobs_keys_are_dropped_and_unsigned_jobs_get_none() {
    let cluster = Cluster::start(3).await;
    let tenant = Tenant::new();
    let owner = tenant.id();
    cluster.create_bucket(0, &tenant, "data").await;
    cluster.create_bucket(0, &tenant, "out").await;
    cluster
        .put(0, &tenant, "data", "in.txt", b"hello\n")
        .await
        .unwrap();
    cluster
        .deploy(0, &tenant, "transform", Kind::Job, "transform", 1, |_| {})
        .await;

    // A job signed without key checks (an old client) is refused at the edge: its runner
    // could get no key.
    let unsigned = job(&tenant, "old");
    let refused = cluster
        .node(0)
        .compute()
        .submit_job(&owner, tenant.job_as_given(&unsigned), tenant.data_key())
        .await;
    assert!(
        matches!(refused, Err(xnode_deploy::ComputeOpError::BadRequest(ref m)) if m.contains("key checks")),
        "{refused:?}"
    );
    // Checks of another tenant's keys do not match the data key sent: refused too.
    let mut foreign = job(&tenant, "foreign");
    foreign.key_checks = xnode_deploy::spec::key_checks(&DataKey([9; 32]), foreign.buckets());
    let refused = cluster
        .node(0)
        .compute()
        .submit_job(&owner, tenant.job_as_given(&foreign), tenant.data_key())
        .await;
    assert!(
        matches!(refused, Err(xnode_deploy::ComputeOpError::BadRequest(_))),
        "{refused:?}"
    );

    let entry = cluster
        .node(0)
        .compute()
        .submit_job(&owner, tenant.job(&job(&tenant, "j1")), tenant.data_key())
        .await
        .unwrap();
    cluster.node(0).gossip_entry(&entry).await;
    cluster
        .wait_until("the job to finish", Duration::from_secs(60), |c| {
            c.node(0)
                .compute()
                .job_runs(&owner, "j1")
                .iter()
                .any(|r| r.state != RunState::Running)
        })
        .await;
    let runs = cluster.node(0).compute().job_runs(&owner, "j1");
    let done = runs.iter().find(|r| r.state != RunState::Running).unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{runs:?}");
    assert_eq!(
        cluster
            .get(1, &tenant, "out", "jobs/j1/out/output.txt", None)
            .await
            .unwrap(),
        b"HELLO\n"
    );
    let runner = (0..3)
        .find(|&i| cluster.id(i).to_string() == done.node)
        .unwrap();
    // (c) The runner dropped the job's keys when it recorded the result, and the edge
    // drops its copy once it sees the result.
    assert!(!cluster.node(runner).compute().holds_grant(&owner, "job:j1"));
    cluster
        .wait_until(
            "every node to drop the finished job's keys",
            Duration::from_secs(30),
            |c| (0..3).all(|i| !c.node(i).compute().holds_grant(&owner, "job:j1")),
        )
        .await;
    // And no node hands them out any more, even to the job's own runner.
    for target in (0..3).filter(|&i| i != runner) {
        assert!(
            ask_grant(&cluster, runner, cluster.id(target), &owner, "job:j1")
                .await
                .is_none()
        );
    }
    cluster.shutdown().await;
}
