//! Benchmark: what three idle nodes cost once they hold data, with anti-entropy rounds
//! skipped when nothing changed, against the same nodes made to run a round at every check
//! (`anti_entropy_full_interval = repair_interval`), measured in the same run.
//!
//! `cargo nextest run --workspace --run-ignored only --no-capture -E 'test(idle_storage_cost)'`
//! (`XNODE_BENCH_BUCKETS` and `XNODE_BENCH_OBJECTS` per bucket change the load; defaults
//! 40 and 50, half of each bucket deleted afterwards). Prints a Markdown row each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xnode_test_cluster::{Cluster, Tenant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of this whole process (all three in-process nodes), from /proc (in USER_HZ,
/// which Linux fixes at 100 per second for this file).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    Duration::from_millis((utime + stime) * 10)
}

fn store_rpcs_served(c: &Cluster) -> u64 {
    (0..c.len())
        .flat_map(|i| c.node(i).workers())
        .filter(|w| w.name == "rpc:store")
        .map(|w| w.progress.items_done)
        .sum()
}

struct Idle {
    cpu_per_node: f64,
    rpcs_per_node_per_sec: f64,
    rounds: u64,
    skipped: u64,
}

async fn measure(every_check: bool, buckets: usize, objects: usize, seconds: u64) -> Idle {
    let c = Cluster::start_with(3, move |cfg| {
        cfg.storage.repair_interval = Duration::from_secs(1);
        if every_check {
            cfg.storage.anti_entropy_full_interval = Duration::from_secs(1);
        }
    })
    .await;
    let tenant = Tenant::new();
    for b in 0..buckets {
        let bucket = format!("bench-{b:04}");
        c.create_bucket(b % 3, &tenant, &bucket).await;
        for o in 0..objects {
            c.put(
                o % 3,
                &tenant,
                &bucket,
                &format!("o{o}"),
                format!("{b}/{o}").as_bytes(),
            )
            .await
            .unwrap();
        }
        for o in (0..objects).step_by(2) {
            c.node(o % 3)
                .storage()
                .delete_object(&tenant.id(), &bucket, &format!("o{o}"))
                .await
                .unwrap();
        }
    }
    // Let background copies and the first rounds finish.
    c.wait_until("replicas in sync", Duration::from_secs(300), |c| {
        (0..3).all(|i| {
            let h = c.node(i).storage().health();
            h.under_replicated_chunks == 0 && h.under_replicated_objects == 0
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let health = |c: &Cluster| -> (u64, u64) {
        (0..3)
            .map(|i| c.node(i).storage().health())
            .fold((0, 0), |(r, s), h| {
                (r + h.anti_entropy_rounds, s + h.anti_entropy_skipped)
            })
    };
    let (rounds0, skipped0) = health(&c);
    let rpcs0 = store_rpcs_served(&c);
    let cpu0 = process_cpu();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu0).as_secs_f64();
    let rpcs = store_rpcs_served(&c) - rpcs0;
    let (rounds1, skipped1) = health(&c);
    c.shutdown().await;
    Idle {
        cpu_per_node: cpu / elapsed / 3.0,
        rpcs_per_node_per_sec: rpcs as f64 / elapsed / 3.0,
        rounds: rounds1 - rounds0,
        skipped: skipped1 - skipped0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run explicitly, see the module docs"]
async fn idle_storage_cost() {
    let buckets = env("XNODE_BENCH_BUCKETS", 40);
    let objects = env("XNODE_BENCH_OBJECTS", 50);
    let seconds = 30;
    println!(
        "{buckets} buckets x {objects} objects (half deleted), 3 in-process nodes, {seconds} s idle"
    );
    println!(
        "| anti-entropy | CPU per node | store RPCs per node per s | rounds | checks skipped |"
    );
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (label, every_check) in [
        ("a round at every check (baseline)", true),
        ("rounds only on change", false),
    ] {
        let idle = measure(every_check, buckets, objects, seconds).await;
        println!(
            "| {label} | {:.2} % | {:.1} | {} | {} |",
            idle.cpu_per_node * 100.0,
            idle.rpcs_per_node_per_sec,
            idle.rounds,
            idle.skipped
        );
        rows.push(idle);
    }
    let (baseline, skipping) = (&rows[0], &rows[1]);
    println!(
        "CPU ratio (rounds only on change / every check): {:.2}",
        skipping.cpu_per_node / baseline.cpu_per_node.max(1e-9)
    );
}
