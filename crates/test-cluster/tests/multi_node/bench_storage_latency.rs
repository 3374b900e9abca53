//! Benchmark: the latency of small object writes, deletes and reads through one edge of a
//! 3-node in-process cluster (W = R = 2 of 3). Run with
//! `cargo nextest run --workspace -E 'test(/^bench_storage_latency::/)' --run-ignored all --no-capture`;
//! it prints the median and 90th percentile of each operation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xnode_test_cluster::{Cluster, Tenant};

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    eprintln!(
        "{name:>8}: median {:>7.2} ms, p90 {:>7.2} ms ({} runs)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        samples.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn small_object_latency() {
    let c = Cluster::start(3).await;
    c.wait_converged(Duration::from_secs(30)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "bench").await;
    let body = vec![7u8; 4096];
    // Warm up connections.
    for i in 0..20 {
        c.put(0, &tenant, "bench", &format!("warm{i}"), &body)
            .await
            .unwrap();
    }
    let (mut puts, mut overwrites, mut gets, mut deletes) = (vec![], vec![], vec![], vec![]);
    for i in 0..200 {
        let key = format!("k{i}");
        let t = Instant::now();
        c.put(0, &tenant, "bench", &key, &body).await.unwrap();
        puts.push(t.elapsed());
        let t = Instant::now();
        c.put(0, &tenant, "bench", &key, &body).await.unwrap();
        overwrites.push(t.elapsed());
        let t = Instant::now();
        c.get(0, &tenant, "bench", &key, None).await.unwrap();
        gets.push(t.elapsed());
        let t = Instant::now();
        c.node(0)
            .storage()
            .delete_object(&tenant.id(), "bench", &key)
            .await
            .unwrap();
        deletes.push(t.elapsed());
    }
    summary("put", puts);
    summary("overwrite", overwrites);
    summary("get", gets);
    summary("delete", deletes);
    c.shutdown().await;
}
