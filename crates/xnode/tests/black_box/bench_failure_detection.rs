//! Benchmark: how long after `kill -9` every survivor of a 5-node network of real processes
//! reports the killed node `dead`, over 20 trials, and how long a graceful stop takes to be
//! seen as `left`. Run it with `scripts/bench-failure-detection.sh`; it prints a Markdown
//! table for BENCHMARKS.md. A baseline measured in the same run (the API round trip and
//! the SWIM probe round trip) shows how loaded the machine was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::support::*;
use nix::sys::signal::Signal;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[test]
#[ignore = "benchmark; run with scripts/bench-failure-detection.sh"]
fn failure_detection_latency() {
    let trials: usize = std::env::var("XNODE_BENCH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 5);
    let ids: Vec<String> = procs.iter().map(|p| node_id(&p.api_url)).collect();
    wait_until("convergence", Duration::from_secs(10), || {
        all_alive(&procs, 5)
    });

    // Baseline: API round trips to node 0.
    let client = http();
    let mut api_rtts: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            client
                .get(format!("{}/healthz", procs[0].api_url))
                .send()
                .unwrap();
            t.elapsed()
        })
        .collect();
    api_rtts.sort();

    let mut kills = Vec::new();
    let mut leaves = Vec::new();
    for trial in 0..trials {
        let victim = 1 + trial % 4;
        let observers: Vec<usize> = (0..5).filter(|&o| o != victim).collect();
        procs[victim].stop_with(Signal::SIGKILL);
        let t = Instant::now();
        wait_until("dead everywhere", Duration::from_secs(10), || {
            observers
                .iter()
                .all(|&o| state_of(&procs[o].api_url, &ids[victim]).as_deref() == Some("dead"))
        });
        kills.push(t.elapsed());
        procs[victim].start();
        node_id(&procs[victim].api_url);
        wait_until("reconvergence", Duration::from_secs(20), || {
            all_alive(&procs, 5)
        });

        if trial % 4 == 0 {
            procs[victim].stop_with(Signal::SIGTERM);
            let t = Instant::now();
            wait_until("left everywhere", Duration::from_secs(10), || {
                observers
                    .iter()
                    .all(|&o| state_of(&procs[o].api_url, &ids[victim]).as_deref() == Some("left"))
            });
            leaves.push(t.elapsed());
            procs[victim].start();
            node_id(&procs[victim].api_url);
            wait_until("reconvergence", Duration::from_secs(20), || {
                all_alive(&procs, 5)
            });
        }
    }
    // SWIM probe round trips as measured by node 0 (its Prometheus histogram),
    // read before the freeze trials, whose late acks would inflate it.
    let metrics = client
        .get(format!("{}/metrics", procs[0].api_url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let probe_mean =
        value("mesh_probe_rtt_seconds_sum") / value("mesh_probe_rtt_seconds_count").max(1.0);

    // A frozen process (SIGSTOP) keeps its sockets open: nothing breaks, so detection
    // rests on probe timeouts alone. After SIGCONT it refutes its death and rejoins.
    let mut freezes = Vec::new();
    let mut thaws = Vec::new();
    for trial in 0..5 {
        let victim = 1 + trial % 4;
        let observers: Vec<usize> = (0..5).filter(|&o| o != victim).collect();
        procs[victim].signal(Signal::SIGSTOP);
        let t = Instant::now();
        wait_until(
            "frozen node dead everywhere",
            Duration::from_secs(10),
            || {
                observers
                    .iter()
                    .all(|&o| state_of(&procs[o].api_url, &ids[victim]).as_deref() == Some("dead"))
            },
        );
        freezes.push(t.elapsed());
        procs[victim].signal(Signal::SIGCONT);
        let t = Instant::now();
        wait_until(
            "thawed node alive everywhere",
            Duration::from_secs(20),
            || all_alive(&procs, 5),
        );
        thaws.push(t.elapsed());
    }

    kills.sort();
    leaves.sort();
    println!("\n| measure | trials | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| kill -9 → every survivor reports `dead` | {} | {} | {} | {} |",
        kills.len(),
        ms(percentile(&kills, 50.0)),
        ms(percentile(&kills, 99.0)),
        ms(*kills.last().unwrap())
    );
    println!(
        "| SIGTERM → every survivor reports `left` | {} | {} | {} | {} |",
        leaves.len(),
        ms(percentile(&leaves, 50.0)),
        ms(percentile(&leaves, 99.0)),
        ms(*leaves.last().unwrap())
    );
    freezes.sort();
    thaws.sort();
    println!(
        "| SIGSTOP (frozen, sockets open) → every survivor reports `dead` | {} | {} | {} | {} |",
        freezes.len(),
        ms(percentile(&freezes, 50.0)),
        ms(percentile(&freezes, 99.0)),
        ms(*freezes.last().unwrap())
    );
    println!(
        "| SIGCONT → the refuted node is `alive` everywhere again | {} | {} | {} | {} |",
        thaws.len(),
        ms(percentile(&thaws, 50.0)),
        ms(percentile(&thaws, 99.0)),
        ms(*thaws.last().unwrap())
    );
    println!(
        "| baseline: `GET /healthz` round trip | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        api_rtts.len(),
        percentile(&api_rtts, 50.0).as_secs_f64() * 1000.0,
        percentile(&api_rtts, 99.0).as_secs_f64() * 1000.0,
        api_rtts.last().unwrap().as_secs_f64() * 1000.0
    );
    println!(
        "| baseline: SWIM probe round trip (mean, node 0) | {} | {:.2} ms | | |",
        value("mesh_probe_rtt_seconds_count") as u64,
        probe_mean * 1000.0
    );
    println!(
        "\nkill detection p50 is {:.0}x the probe round trip; p99 {} is {} the 2 s target.",
        percentile(&kills, 50.0).as_secs_f64() / probe_mean.max(1e-6),
        ms(percentile(&kills, 99.0)),
        if percentile(&kills, 99.0) < Duration::from_secs(2) {
            "within"
        } else {
            "OUTSIDE"
        }
    );
    assert!(percentile(&kills, 99.0) < Duration::from_secs(2));
}
