//! Compute across real in-process nodes: functions served through every node, failover
//! when a replica's node dies, hostile guests stopped with clear errors, jobs that rerun
//! when their node dies, and workers that move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use xnode_node::compute::spec::{
    JOB_RECORD_VERSION, JobInput, JobSpec, Kind, RunState, StorageSpec,
};
use xnode_test_cluster::{Cluster, Tenant};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_answers_through_every_node_and_survives_a_replica_crash() {
    let mut cluster = Cluster::start(5).await;
    let tenant = Tenant::new();
    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 2, |_| {})
        .await;
    let client = http();
    for i in 0..5 {
        let response = client
            .get(format!("{}/fn/hello/there", cluster.api_url(i)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "through node {i}");
        assert!(response.headers().contains_key("traceparent"));
        let body = response.text().await.unwrap();
        assert!(body.contains("hello from xnode"), "{body}");
    }

    // Kill a replica's node while a client keeps calling through a node that is not one.
    let spec = cluster.node(0).compute().deployment("hello").unwrap().spec;
    let placed = cluster.node(0).compute().place(&spec);
    let victim = (0..5).find(|&i| placed.contains(&cluster.id(i))).unwrap();
    let gateway = (0..5).find(|&i| !placed.contains(&cluster.id(i))).unwrap();
    let url = format!("{}/fn/hello/", cluster.api_url(gateway));
    let load = {
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut last_ok = Instant::now();
            let mut longest_gap = Duration::ZERO;
            let mut ok = 0u32;
            while started.elapsed() < Duration::from_secs(6) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        longest_gap = longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                        ok += 1;
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            longest_gap = longest_gap.max(last_ok.elapsed());
            (longest_gap, ok)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.crash(victim).await;
    let crashed_at = Instant::now();
    cluster
        .wait_replicas(gateway, "hello", 2, Duration::from_secs(5))
        .await;
    let restored = crashed_at.elapsed();
    let (gap, ok) = load.await.unwrap();
    println!(
        "longest gap without a successful response: {gap:?}; {ok} successes; two replicas again after {restored:?}"
    );
    assert!(gap <= Duration::from_secs(3), "gap {gap:?}");
    assert!(
        restored <= Duration::from_secs(5),
        "replicas restored after {restored:?}"
    );

    // The deployment view lists the nodes running it.
    let view: Value = client
        .get(format!("{}/v1/deployments/hello", cluster.api_url(gateway)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["replicas"].as_array().unwrap().len(), 2, "{view}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_functions_fail_clearly_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3).await;
    let tenant = Tenant::new();
    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 3, |_| {})
        .await;
    let limits = |s: &mut xnode_node::compute::spec::DeploymentSpec| {
        s.limits.timeout_ms = Some(1000);
        s.limits.memory_mb = Some(32);
        s.limits.max_output_kb = Some(1024);
    };
    for (name, module) in [
        ("membomb", "membomb"),
        ("recurse", "recurse"),
        ("bigout", "bigout"),
    ] {
        cluster
            .deploy(0, &tenant, name, Kind::Http, module, 3, limits)
            .await;
    }
    // Unlimited fuel, so that the wall-clock limit is what stops it.
    cluster
        .deploy(0, &tenant, "spin", Kind::Http, "spin", 3, |s| {
            limits(s);
            s.limits.fuel = Some(u64::MAX / 2);
        })
        .await;
    cluster
        .deploy(0, &tenant, "burner", Kind::Http, "spin", 3, |s| {
            s.limits.fuel = Some(50_000_000)
        })
        .await;
    cluster
        .deploy(
            0,
            &tenant,
            "fetch",
            Kind::Http,
            "forbidden-fetch",
            3,
            limits,
        )
        .await;
    let client = http();
    let base = cluster.api_url(1).to_owned();
    for (name, status, code) in [
        ("spin", 504, "timeout"),
        ("burner", 502, "out_of_fuel"),
        ("membomb", 502, "out_of_memory"),
        ("recurse", 502, "stack_overflow"),
        ("bigout", 502, "output_too_large"),
    ] {
        let started = Instant::now();
        let response = client
            .get(format!("{base}/fn/{name}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    let response = client
        .get(format!("{base}/fn/fetch/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("HttpRequestDenied"));
    let response = client
        .get(format!("{base}/fn/hello/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client
        .get(format!("{base}/fn/nothing-here/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    cluster.shutdown().await;
}

async fn wait_job(
    cluster: &Cluster,
    via: usize,
    tenant: &Tenant,
    id: &str,
    timeout: Duration,
) -> Vec<xnode_node::compute::spec::JobRun> {
    cluster
        .wait_until("the job to finish", timeout, |c| {
            c.node(via)
                .compute()
                .job_runs(&tenant.id(), id)
                .iter()
                .any(|r| r.state != RunState::Running)
        })
        .await;
    cluster.node(via).compute().job_runs(&tenant.id(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_transforms_an_object_and_a_killed_job_reruns_elsewhere() {
    let mut cluster = Cluster::start(4).await;
    let tenant = Tenant::new();
    cluster.create_bucket(0, &tenant, "data").await;
    cluster
        .put(0, &tenant, "data", "in.txt", b"hello\nworld\n")
        .await
        .unwrap();
    cluster
        .deploy(0, &tenant, "transform", Kind::Job, "transform", 1, |_| {})
        .await;
    let job = JobSpec {
        v: JOB_RECORD_VERSION,
        id: "t1".into(),
        deployment: "transform".into(),
        args: vec![],
        stdin_b64: String::new(),
        inputs: vec![JobInput {
            name: "input".into(),
            bucket: "data".into(),
            key: "in.txt".into(),
        }],
        output_bucket: "data".into(),
        owner: tenant.id().to_hex(),
        created_ms: now_ms(),
    };
    let entry = cluster
        .node(0)
        .compute()
        .submit_job(&tenant.id(), tenant.job(&job), tenant.data_key())
        .await
        .unwrap();
    cluster.node(0).gossip_entry(&entry).await;
    let runs = wait_job(&cluster, 0, &tenant, "t1", Duration::from_secs(20)).await;
    let done = runs.iter().find(|r| r.state != RunState::Running).unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{done:?}");
    let output = cluster
        .get(1, &tenant, "data", "jobs/t1/out/output.txt", None)
        .await
        .unwrap();
    assert_eq!(output, b"HELLO\nWORLD\n");

    // A long job (the heartbeat program, told to finish after 6 beats of 1 s) whose node
    // is killed mid-run completes on another node.
    cluster
        .deploy(0, &tenant, "slow", Kind::Job, "heartbeat", 1, |s| {
            s.env.insert("INTERVAL_SECS".into(), "1".into());
            s.env.insert("EXIT_AFTER".into(), "6".into());
            s.limits.timeout_ms = Some(60_000);
        })
        .await;
    let job = JobSpec {
        id: "slow1".into(),
        deployment: "slow".into(),
        inputs: vec![],
        created_ms: now_ms(),
        ..job
    };
    let entry = cluster
        .node(0)
        .compute()
        .submit_job(&tenant.id(), tenant.job(&job), tenant.data_key())
        .await
        .unwrap();
    cluster.node(0).gossip_entry(&entry).await;
    cluster
        .wait_until("the job to start", Duration::from_secs(10), |c| {
            !c.node(0)
                .compute()
                .job_runs(&tenant.id(), "slow1")
                .is_empty()
        })
        .await;
    let first = cluster.node(0).compute().job_runs(&tenant.id(), "slow1")[0]
        .node
        .clone();
    let victim = (0..4)
        .find(|&i| cluster.id(i).to_string() == first)
        .unwrap();
    let observer = (0..4).find(|&i| i != victim).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.crash(victim).await;
    let runs = wait_job(
        &cluster,
        observer,
        &tenant,
        "slow1",
        Duration::from_secs(30),
    )
    .await;
    let done = runs.iter().find(|r| r.state != RunState::Running).unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{runs:?}");
    assert_ne!(
        done.node, first,
        "the job must have run again on another node"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_publishes_heartbeats_and_moves_when_its_node_dies() {
    let mut cluster = Cluster::start(3).await;
    let tenant = Tenant::new();
    cluster.create_bucket(0, &tenant, "data").await;
    cluster
        .deploy(0, &tenant, "heartbeat", Kind::Worker, "heartbeat", 1, |s| {
            s.env.insert("INTERVAL_SECS".into(), "1".into());
            s.storage = Some(StorageSpec {
                bucket: "data".into(),
            });
        })
        .await;
    let started = Instant::now();
    let mut beat = None;
    while started.elapsed() < Duration::from_secs(15) && beat.is_none() {
        beat = cluster
            .get(0, &tenant, "data", "workers/heartbeat/heartbeat.json", None)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let beat = beat.expect("a heartbeat object");
    assert!(beat["count"].as_u64().unwrap() >= 1, "{beat}");

    let running_on = cluster.node(0).compute().replicas_of("heartbeat")[0].0;
    let victim = (0..3).find(|&i| cluster.id(i) == running_on).unwrap();
    let observer = (0..3).find(|&i| i != victim).unwrap();
    cluster.crash(victim).await;
    cluster
        .wait_until("the worker to move", Duration::from_secs(10), |c| {
            c.node(observer)
                .compute()
                .replicas_of("heartbeat")
                .iter()
                .any(|(n, r)| *n != running_on && r.state == "running")
        })
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_counts_function_calls_and_errors_network_wide() {
    let cluster = Cluster::start(5).await;
    let tenant = Tenant::new();
    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 2, |_| {})
        .await;
    cluster
        .deploy(0, &tenant, "broken", Kind::Http, "recurse", 2, |_| {})
        .await;
    let client = http();
    let (mut sent, mut failed) = (0u64, 0u64);
    for n in 0..1000u64 {
        let via = (n % 5) as usize;
        let name = if n % 20 == 0 { "broken" } else { "hello" };
        let status = client
            .get(format!("{}/fn/{name}/", cluster.api_url(via)))
            .send()
            .await
            .unwrap()
            .status();
        sent += 1;
        if status.is_server_error() {
            failed += 1;
        }
    }
    assert_eq!(failed, 50);
    // Within 5 s every node's network view has every request and every error.
    let started = Instant::now();
    cluster
        .wait_until(
            "every node to count every call",
            Duration::from_secs(5),
            |c| {
                (0..5).all(|i| {
                    let report = c.node(i).observe_network();
                    let functions = report.windows.get("1m").and_then(|w| w.get("functions"));
                    functions.is_some_and(|f| f.requests == sent && f.server_errors == failed)
                })
            },
        )
        .await;
    println!("all five nodes agreed after {:?}", started.elapsed());
    let broken = cluster.node(3).observe_scope("deployment:broken");
    assert_eq!(broken.windows["1m"].requests, 50);
    assert_eq!(broken.windows["1m"].server_errors, 50);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_replica_is_marked_degraded_and_gets_no_more_traffic() {
    let cluster = Cluster::start(4).await;
    let tenant = Tenant::new();
    cluster
        .deploy(0, &tenant, "hello", Kind::Http, "hello", 3, |_| {})
        .await;
    let spec = cluster.node(0).compute().deployment("hello").unwrap().spec;
    let placed = cluster.node(0).compute().place(&spec);
    let gateway = (0..4).find(|&i| !placed.contains(&cluster.id(i))).unwrap();
    let slow = (0..4).find(|&i| placed.contains(&cluster.id(i))).unwrap();
    cluster
        .node(slow)
        .set_handling_faults(Duration::from_millis(500), 0.0)
        .unwrap();
    let client = http();
    let url = format!("{}/fn/hello/", cluster.api_url(gateway));
    let started = Instant::now();
    loop {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        if cluster
            .node(gateway)
            .compute()
            .degraded_nodes("hello")
            .contains(&cluster.id(slow))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not marked degraded within 10 s"
        );
    }
    println!("marked degraded after {:?}", started.elapsed());
    let view: Value = client
        .get(format!("{}/v1/deployments/hello", cluster.api_url(gateway)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slow_id = cluster.id(slow).to_string();
    assert!(
        view["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["node"] == slow_id.as_str() && r["degraded"] == true),
        "{view}"
    );
    for _ in 0..40 {
        let response = client.get(&url).send().await.unwrap();
        let served_by = response.headers()["x-xnode-served-by"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(served_by, slow_id, "a degraded replica got traffic");
    }
    cluster.shutdown().await;
}
