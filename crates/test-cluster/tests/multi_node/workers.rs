//! Every node lists its background workers, and their state, over the API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use xnode_test_cluster::{Cluster, Tenant};

/// The workers every node runs, whatever its configuration (OTLP export only runs when an
/// endpoint is configured).
const EXPECTED: &[&str] = &[
    "compute-reconcile",
    "compute-usage",
    "mesh-events",
    "observe-gossip-in",
    "observe-publish",
    "record-refresh",
    "registry-anti-entropy",
    "registry-events",
    "registry-gossip-in",
    "rpc:compute",
    "rpc:registry-sync",
    "rpc:store",
    "storage-gc",
    "storage-repair",
    "storage-scrub",
];

async fn workers(base: &str) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{base}/v1/node/workers"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_lists_its_background_workers_with_their_state() {
    let cluster = Cluster::start(3).await;
    // Some traffic, so that every node's storage service has served peers: with rf = 3
    // on three nodes, every node holds a copy.
    let tenant = Tenant::new();
    cluster.create_bucket(0, &tenant, "work").await;
    cluster
        .put(0, &tenant, "work", "x", b"some bytes")
        .await
        .unwrap();
    for i in 0..cluster.len() {
        let base = cluster.api_url(i).to_owned();
        // Workers that run on a timer report a step once their first period passed; give
        // the repair scan (immediately) and gossip intake (a summary arrives every 2 s)
        // time to have run.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let list = loop {
            let list = workers(&base).await;
            let ran = |name: &str| {
                list.iter()
                    .any(|w| w["name"] == name && w["steps"].as_u64().unwrap_or(0) > 0)
            };
            if ran("storage-repair")
                && ran("observe-gossip-in")
                && ran("rpc:registry-sync")
                && (i == 0 || ran("rpc:store"))
            {
                break list;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i}'s workers never ran: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let names: BTreeSet<&str> = list.iter().map(|w| w["name"].as_str().unwrap()).collect();
        for expected in EXPECTED {
            assert!(
                names.contains(expected),
                "node {i} lacks worker {expected}: {names:?}"
            );
        }
        for w in &list {
            let state = w["state"].as_str().unwrap();
            assert!(
                ["idle", "busy", "error"].contains(&state),
                "node {i}: worker {} is {state} while the node runs",
                w["name"]
            );
        }
        let repair = list.iter().find(|w| w["name"] == "storage-repair").unwrap();
        assert!(repair["last_run_ms"].as_u64().is_some());
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_stops_every_worker() {
    let cluster = Cluster::start(1).await;
    let node = cluster.node(0).clone();
    assert!(!node.workers().is_empty());
    cluster.shutdown().await;
    for w in node.workers() {
        assert_eq!(
            w.state,
            xnode_worker::WorkerState::Done,
            "worker {} still runs after shutdown",
            w.name
        );
    }
}
