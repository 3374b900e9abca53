//! Soak test: with one core kept busy by a CPU hog, no node is ever reported suspect or
//! dead. It runs for 60 s (set `XNODE_SOAK_SECS` to change), so it is `#[ignore]`d in
//! the main run and executed as its own step by `scripts/test.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
#[ignore = "long-running; scripts/test.sh runs it as a separate step"]
fn no_false_suspicion_under_a_cpu_hog() {
    let secs: u64 = std::env::var("XNODE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let root = tempfile::tempdir().unwrap();
    let procs = start_cluster(root.path(), 5);
    wait_converged(&procs, 5);

    // One core busy for the whole test: a tight loop in its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        })
    };
    let start = Instant::now();
    let mut polls = 0u64;
    let mut bad = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        for p in &procs {
            match states(&p.api_url) {
                Some(list) => {
                    polls += 1;
                    for (id, state) in list {
                        if state != "alive" {
                            bad.push(format!(
                                "{:.1}s: {} reported {id} {state}",
                                start.elapsed().as_secs_f64(),
                                p.api_url
                            ));
                        }
                    }
                }
                None => bad.push(format!(
                    "{:.1}s: {} did not answer",
                    start.elapsed().as_secs_f64(),
                    p.api_url
                )),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = hog.join();
    eprintln!(
        "{polls} views polled over {secs} s under a CPU hog; {} false reports",
        bad.len()
    );
    assert!(bad.is_empty(), "false failure reports:\n{}", bad.join("\n"));
    // The metric agrees: nobody ever changed to suspect.
    for p in &procs {
        let metrics = http()
            .get(format!("{}/metrics", p.api_url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let suspects = metrics
            .lines()
            .find(|l| l.starts_with("mesh_membership_changes_total{state=\"suspect\"}"))
            .map(|l| l.rsplit(' ').next().unwrap_or("0").to_string());
        assert!(
            suspects.is_none() || suspects.as_deref() == Some("0"),
            "{}: {suspects:?}",
            p.api_url
        );
    }
}
