//! Multi-node behaviour of the foundation, on the in-process harness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xnode_mesh::MemberState;
use xnode_test_cluster::Cluster;
use xnode_types::SecretKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_converge_detect_crash_leave_and_restart() {
    let mut c = Cluster::start(5).await;
    let took = c.wait_converged(Duration::from_secs(3)).await;
    eprintln!("converged {took:?} after start returned");

    c.crash(4).await;
    let dead = c
        .wait_state(4, MemberState::Dead, Duration::from_secs(2))
        .await;
    eprintln!("crash detected by every survivor in {dead:?}");

    let id = c.id(3);
    let before = c.node(3).local().incarnation;
    c.stop(3).await;
    let left = c
        .wait_state(3, MemberState::Left, Duration::from_secs(1))
        .await;
    eprintln!("graceful leave seen by every survivor in {left:?}");

    c.restart(3).await;
    assert_eq!(c.node(3).id(), id, "a restarted node keeps its identity");
    assert!(
        c.node(3).local().incarnation > before,
        "a restart raises the incarnation"
    );
    c.wait_state(3, MemberState::Alive, Duration::from_secs(3))
        .await;
    c.restart(4).await;
    c.wait_converged(Duration::from_secs(5)).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_is_detected_and_heals() {
    let c = Cluster::start(4).await;
    c.partition(&[0, 1], &[2, 3]).await;
    c.wait_until(
        "each side to see the other dead",
        Duration::from_secs(5),
        |c| {
            [0, 1].iter().all(|&a| {
                [2, 3].iter().all(|&b| {
                    c.state(a, b) == Some(MemberState::Dead)
                        && c.state(b, a) == Some(MemberState::Dead)
                })
            })
        },
    )
    .await;
    // Within each side, nobody was harmed.
    assert_eq!(c.state(0, 1), Some(MemberState::Alive));
    assert_eq!(c.state(2, 3), Some(MemberState::Alive));
    c.heal().await;
    // Dead members are re-probed; they refute with a higher incarnation and rejoin.
    let took = c.wait_converged(Duration::from_secs(15)).await;
    eprintln!("partition healed in {took:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_converges_despite_lossy_links() {
    let c = Cluster::start(4).await;
    c.set_drop_rate(0, 0.25).await;
    let tenant = SecretKey::generate();
    let keys: Vec<String> = (0..20)
        .map(|i| format!("tenant/{}/item-{i}", tenant.public().to_hex()))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        c.node(0)
            .registry()
            .put(&tenant, key, vec![i as u8])
            .unwrap();
    }
    // Gossip loses some of it; anti-entropy repairs the rest.
    c.wait_until(
        "every node to hold every entry",
        Duration::from_secs(40),
        |c| (1..4).all(|n| keys.iter().all(|k| c.node(n).registry().get(k).is_some())),
    )
    .await;
    c.heal().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_registry_entries_are_dropped_and_counted() {
    let c = Cluster::start(3).await;
    let tenant = SecretKey::generate();
    let key = format!("tenant/{}/x", tenant.public().to_hex());
    let mut entry = xnode_registry::Entry::sign(
        &tenant,
        key.clone(),
        Some(vec![1]),
        xnode_types::Hlc::new(1, 0),
    )
    .unwrap();
    entry.value = Some(vec![2]);
    let bytes = xnode_wire::encode(&entry).unwrap();
    // Publish the forgery on the registry topic, as a malicious node would.
    let mut delivered = false;
    for _ in 0..50 {
        c.node(0)
            .mesh()
            .publish("registry", bytes.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.node(1).registry().metrics().invalid_signatures.get() > 0 {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the forged entry reached node 1 and was counted");
    assert!(c.node(1).registry().get(&key).is_none());
    let metrics = reqwest::get(format!("{}/metrics", c.api_url(1)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("registry_invalid_signatures_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpc_delay_is_injected() {
    let c = Cluster::start(2).await;
    let peer = c.id(1);
    let mut served = c.node(1).mesh().serve("ping-test");
    tokio::spawn(async move {
        while let Some(r) = served.recv().await {
            let _ = r.reply.send(Ok(r.body.to_vec()));
        }
    });
    let t = std::time::Instant::now();
    c.node(0)
        .mesh()
        .request(peer, "ping-test", vec![1], Duration::from_secs(5))
        .await
        .unwrap();
    let normal = t.elapsed();
    c.set_delay(0, Duration::from_millis(300)).await;
    let t = std::time::Instant::now();
    c.node(0)
        .mesh()
        .request(peer, "ping-test", vec![1], Duration::from_secs(5))
        .await
        .unwrap();
    let delayed = t.elapsed();
    assert!(
        delayed >= Duration::from_millis(300),
        "normal {normal:?}, delayed {delayed:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_api_serves_nodes_metrics_and_openapi() {
    let c = Cluster::start(3).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{}{}", c.api_url(0), path);
        let http = http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let health: serde_json::Value = get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let me: serde_json::Value = get("/v1/node").await.json().await.unwrap();
    assert_eq!(me["id"], c.id(0).to_string());
    assert_eq!(me["zone"], "zone-0");
    assert!(!me["addresses"].as_array().unwrap().is_empty());
    let nodes: serde_json::Value = get("/v1/nodes").await.json().await.unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["state"], "alive");
        assert!(n["capacity"]["cpu_cores"].as_u64().unwrap() >= 1);
        assert!(n["last_seen"].is_string());
        assert!(n["zone"].is_string());
    }
    let metrics = get("/metrics").await;
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics")
    );
    let text = metrics.text().await.unwrap();
    for needle in [
        "mesh_peers{state=\"alive\"} 2",
        "mesh_gossip_messages_out_total",
        "mesh_probe_rtt_seconds_bucket",
        "registry_entries",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Every metric the Grafana dashboard in the repository queries exists.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../dashboards/xnode-grafana.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queries: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    // And every metric the shipped Prometheus alert rules query.
    let alerts = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboards/xnode-alerts.yml"
    ))
    .unwrap();
    queries.extend(
        alerts
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:"))
            .map(str::to_string),
    );
    assert!(
        queries.len() > 10,
        "the dashboard and the alert rules query metrics"
    );
    for expr in &queries {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let metric = ["api_", "mesh_", "store_", "registry_"]
                .iter()
                .any(|p| word.starts_with(p));
            if !metric {
                continue;
            }
            let base = ["_bucket", "_total", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            assert!(
                text.contains(&format!("# TYPE {base} ")),
                "the dashboard or an alert rule queries {word}, which no node exports"
            );
        }
    }
    let spec: serde_json::Value = get("/v1/openapi.json").await.json().await.unwrap();
    assert!(spec["paths"]["/v1/nodes"].is_object());
    for path in [
        "/v1/buckets",
        "/v1/buckets/{bucket}",
        "/v1/buckets/{bucket}/objects",
        "/v1/buckets/{bucket}/objects/{key}",
        "/v1/storage/health",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} is missing from the OpenAPI document"
        );
    }
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let missing = get("/v1/nope").await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let bad = http
        .put(format!("{}/v1/admin/faults", c.api_url(0)))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = http
        .put(format!("{}/v1/admin/faults", c.api_url(0)))
        .json(&serde_json::json!({"drop_rate": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = get(&format!("/v1/nodes/{}", SecretKey::generate().node_id())).await;
    assert_eq!(unknown.status(), 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cannot_speak_for_another_through_its_record() {
    let c = Cluster::start(3).await;
    // Node 0 signs, under its own key, a record that claims node 1 has left.
    let mut forged = c
        .node(0)
        .records()
        .into_iter()
        .find(|r| r.node_id == c.id(0))
        .unwrap();
    forged.node_id = c.id(1);
    forged.status = xnode_types::NodeStatus::Left;
    forged.incarnation = 1_000;
    let key = xnode_types::NodeRecord::registry_key(&c.id(0));
    c.node(0)
        .registry()
        .put(c.node(0).key(), &key, xnode_wire::encode(&forged).unwrap())
        .unwrap();
    c.wait_until("the forged record to spread", Duration::from_secs(5), |c| {
        c.node(2)
            .registry()
            .get(&key)
            .is_some_and(|e| e.value.as_deref() == Some(&xnode_wire::encode(&forged).unwrap()[..]))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for observer in [0, 2] {
        assert_eq!(
            c.state(observer, 1),
            Some(MemberState::Alive),
            "observer {observer}"
        );
    }
    assert_eq!(
        c.node(1).local().incarnation,
        1,
        "node 1 was never pushed to refute"
    );
    c.shutdown().await;
}
