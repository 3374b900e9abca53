//! A short run of the registry anti-entropy simulation (real registries, the real digest
//! exchange): while nothing changes, what a node sends does not grow with what the
//! registry holds; one write reaches every node by anti-entropy alone, with no gossip;
//! and a node that joins with an empty registry catches up. Time is virtual, so a busy
//! machine slows the test but does not change its figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xnode_sim::registry::{RegistrySimConfig, run};

fn config(entries: usize) -> RegistrySimConfig {
    RegistrySimConfig {
        nodes: 120,
        entries,
        steady: Duration::from_secs(20),
        limit: Duration::from_secs(120),
        seed: 16,
        ..RegistrySimConfig::default()
    }
}

#[test]
fn anti_entropy_costs_a_root_hash_at_rest_and_spreads_a_write_to_every_node() {
    let small = run(config(120));
    println!("{small}");
    let large = run(config(480));
    println!("{large}");

    for report in [&small, &large] {
        // One round per node per 2 s, registries in sync: a 16-byte root and a one-byte
        // answer, about 0.8 kbit/s with framing (the 64 bucket hashes were 4.7).
        let [mean, p99, _] = report.steady.sent_kbit;
        assert!(mean > 0.3 && mean < 1.5, "steady sent {mean:.2} kbit/s");
        assert!(p99 < 2.0, "steady sent p99 {p99:.2} kbit/s");
        assert!(report.steady.received_kbit[1] < 3.0);
        // Rounds fail only by the 0.5 % of messages lost.
        assert!(report.steady.failed_rounds * 20 < report.steady.rounds);

        // One write, no gossip: every node holds it within a few tens of rounds.
        let [p50, p99, max] = report
            .spread_seconds
            .unwrap_or_else(|| panic!("{} of 120 nodes reached", report.spread_nodes_reached));
        assert!(p50 <= p99 && p99 <= max);
        assert!(max < 60.0, "the write took {max:.1} s to reach every node");

        // A node with an empty registry gets every entry.
        assert!(
            report.catch_up_seconds.is_some(),
            "the newcomer held {} entries",
            report.catch_up_entries
        );
    }
    // At rest, a registry four times as large costs the same: only digests cross.
    let (a, b) = (small.steady.sent_kbit[0], large.steady.sent_kbit[0]);
    assert!(
        (b / a - 1.0).abs() < 0.05,
        "steady sent {a:.2} against {b:.2} kbit/s"
    );
    // What differs is what a round that finds a difference carries: the versions of
    // every entry in the differing bucket.
    assert!(large.spread.sent_kbit[2] > small.spread.sent_kbit[2]);
    assert!(large.catch_up_received_bytes > 3 * small.catch_up_received_bytes);
}
