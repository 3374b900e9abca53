//! Benchmark: gossip overhead per node, for 5 and 50 nodes, on the in-process harness.
//! Run with `scripts/bench-gossip.sh`; it prints a Markdown table for BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use xnode_test_cluster::Cluster;

/// Sums a metric family's samples (all label sets) from Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn by_topic(text: &str, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let topic = line
            .split("topic=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("?");
        let topic = topic.rsplit('/').next().unwrap_or(topic).to_owned();
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *out.entry(topic).or_default() += v;
        }
    }
    out
}

async fn measure(n: usize, seconds: u64) -> (f64, f64, BTreeMap<String, f64>, Duration) {
    let started = Instant::now();
    // Dozens of full nodes in one process share two cores: relax the failure detector's
    // timeouts and slow the background maintenance (repair, scrub, anti-entropy,
    // reconciliation) so that CPU starvation is not mistaken for failures. Neither
    // changes what is measured: the observability summaries and node records keep their
    // intervals, and membership gossip only carries changes.
    let large = n > 20;
    let c = Cluster::start_configured(n, Duration::from_secs(180), move |cfg| {
        if large {
            cfg.swim.probe_interval = Duration::from_millis(1000);
            cfg.swim.probe_timeout = Duration::from_millis(2000);
            cfg.swim.indirect_timeout = Duration::from_millis(3000);
            cfg.swim.suspicion_min = Duration::from_secs(10);
            cfg.swim.suspicion_max = Duration::from_secs(30);
            cfg.anti_entropy_interval = Duration::from_secs(30);
            cfg.storage.repair_interval = Duration::from_secs(300);
            cfg.storage.scrub_bytes_per_sec = 1 << 20;
            cfg.storage.gc_interval = Duration::from_secs(3600);
            cfg.compute.reconcile_interval = Duration::from_secs(10);
            cfg.compute.max_instances = 4;
            cfg.compute.max_workers = 1;
            cfg.compute.max_jobs = 1;
        }
    })
    .await;
    let converged = started.elapsed();
    // Let start-up traffic (joins, first records) settle, then measure a quiet period.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before: Vec<String> = (0..n).map(|i| c.node(i).metrics_text()).collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after: Vec<String> = (0..n).map(|i| c.node(i).metrics_text()).collect();
    let mut out_total = 0.0;
    let mut in_total = 0.0;
    let mut topics: BTreeMap<String, f64> = BTreeMap::new();
    for (b, a) in before.iter().zip(&after) {
        out_total += metric_sum(a, "mesh_gossip_payload_out_bytes_total")
            - metric_sum(b, "mesh_gossip_payload_out_bytes_total");
        in_total += metric_sum(a, "mesh_gossip_payload_in_bytes_total")
            - metric_sum(b, "mesh_gossip_payload_in_bytes_total");
        let (ta, tb) = (
            by_topic(a, "mesh_gossip_payload_in_bytes_total"),
            by_topic(b, "mesh_gossip_payload_in_bytes_total"),
        );
        for (k, v) in ta {
            *topics.entry(k.clone()).or_default() += v - tb.get(&k).copied().unwrap_or(0.0);
        }
    }
    let per = |x: f64| x / n as f64 / seconds as f64;
    let topics = topics.into_iter().map(|(k, v)| (k, per(v))).collect();
    c.shutdown().await;
    (per(out_total), per(in_total), topics, converged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark; run with scripts/bench-gossip.sh"]
async fn gossip_overhead_for_5_and_50_nodes() {
    // XNODE_BENCH_SIZES overrides the cluster sizes, e.g. "5,20".
    let seconds: u64 = std::env::var("XNODE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    println!(
        "\n| nodes | published B/s per node | received B/s per node | received by topic (B/s per node) | start-up to convergence |"
    );
    println!("|---|---|---|---|---|");
    let sizes: Vec<usize> = std::env::var("XNODE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![5, 50]);
    for n in sizes {
        let (out, inn, topics, converged) = measure(n, seconds).await;
        let topics: Vec<String> = topics.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
        println!(
            "| {n} | {out:.0} | {inn:.0} | {} | {:.1} s |",
            topics.join(", "),
            converged.as_secs_f64()
        );
    }
    println!(
        "\n(measured over {seconds} s after a 5 s settling period; payload bytes, before gossipsub framing and its per-peer fan-out)"
    );
}
