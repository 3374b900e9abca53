//! Observability against a hostile peer and anonymous clients (security review finding
//! 15): a peer's summaries cannot crash the network view or grow it without bound, and
//! request paths cannot fill a node's scopes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use xnode_observe::{NodeSummary, Outcome, Recorder};
use xnode_test_cluster::Cluster;
use xnode_types::unix_ms;

async fn network(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/v1/observe/network"))
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn forged_summary(node: xnode_types::NodeId, started_ms: u64, seq: u64, at_ms: u64) -> NodeSummary {
    let r = Recorder::new();
    r.record(&["api", "storage"], Outcome::default(), None, at_ms);
    let (mut scopes, _) = r.snapshot(at_ms);
    for s in scopes.values_mut() {
        s.requests = u64::MAX;
        s.bytes_in = u64::MAX;
        s.server_errors = u64::MAX;
    }
    NodeSummary {
        node,
        started_ms,
        seq,
        at_ms,
        system: Default::default(),
        peers: Default::default(),
        active_tenants: u32::MAX,
        scopes,
        peer_rtts: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saturated_and_misdated_summaries_do_not_break_the_network_view() {
    let c = Cluster::start_with(3, |cfg| cfg.observe_interval = Duration::from_millis(300)).await;
    let rogue = c.node(0).clone();
    // Maximal counters from two "new runs" of the node in one slot (each run's counters
    // count in full, so the slot holds their sum: an overflow without saturation), then
    // a summary dated in the far future.
    let now = unix_ms();
    for (run, seq, at) in [
        (now + 1_000, 1_000_000, now),
        (now + 2_000, 1_000_001, now + 1),
    ] {
        let bytes = xnode_wire::encode(&forged_summary(rogue.id(), run, seq, at)).unwrap();
        rogue.mesh().publish("observe", bytes).await.unwrap();
    }
    let future = forged_summary(rogue.id(), now + 3_000, 2_000_000, u64::MAX - 1);
    rogue
        .mesh()
        .publish("observe", xnode_wire::encode(&future).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 1..3 {
        let (status, body) = network(c.api_url(i)).await;
        assert_eq!(status, 200, "node {i}'s network view failed: {body}");
        let nodes = body["nodes"].as_array().unwrap();
        assert!(
            nodes
                .iter()
                .all(|n| n["reported_at_ms"].as_u64().unwrap() < u64::MAX - 1),
            "a summary dated in the far future was taken: {body}"
        );
    }
    // The view keeps taking honest summaries afterwards: node 1 hears node 2's new ones
    // (a panic in the intake worker would stop that silently).
    let attack_over = unix_ms();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = network(c.api_url(1)).await;
        assert_eq!(status, 200);
        let fresh = body["nodes"].as_array().unwrap().iter().any(|n| {
            n["id"] == c.id(2).to_string() && n["reported_at_ms"].as_u64().unwrap() > attack_over
        });
        if fresh {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 stopped taking summaries after the attack"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_requests_cannot_fill_a_nodes_scopes() {
    let c = Cluster::start_with(2, |cfg| cfg.observe_interval = Duration::from_millis(300)).await;
    let http = reqwest::Client::new();
    let long = "a".repeat(60_000);
    for i in 0..70 {
        // Huge names, and many distinct names of buckets that do not exist.
        for path in [
            format!("/v1/buckets/{long}{i}"),
            format!("/v1/buckets/nope-{i}/objects/x"),
        ] {
            let _ = http
                .get(format!("{}{path}", c.api_url(0)))
                .send()
                .await
                .unwrap();
        }
    }
    let (scopes, _) = c.node(0).recorder().snapshot(unix_ms());
    let bogus: Vec<String> = scopes
        .keys()
        .filter(|k| k.starts_with("bucket:"))
        .map(|k| k.chars().take(40).collect())
        .collect();
    assert!(
        bogus.is_empty(),
        "{} scopes for buckets that do not exist, such as {:?}",
        bogus.len(),
        &bogus[..bogus.len().min(3)]
    );
    // Node 0's summaries still fit, so node 1 keeps seeing it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = network(c.api_url(1)).await;
        let seen = body["nodes"].as_array().unwrap().iter().any(|n| {
            n["id"] == c.id(0).to_string()
                && n["reported_at_ms"].as_u64().unwrap() + 5_000 > unix_ms()
        });
        if seen {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 lost node 0 from its view: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.shutdown().await;
}
