//! Summary aggregation in the simulation: the product's aggregator on every node, over
//! trees from each node's own SWIM view, with reports, answers and audits on the simulated
//! network. Every live node must end up holding the exact network total of every slot
//! that closed in quiet times, and what a node receives must stay bounded by the tree's
//! fan-out whatever the size of the network. Time is virtual and every random choice comes
//! from the seed, so a loaded machine slows the test but does not change its figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xnode_observe::SLOT_MS;
use xnode_observe::aggregate::{FANOUT, NEWCOMER_MS, OPEN_MS};
use xnode_sim::observe::{LATENCY_SPREAD_LOG2, ROUND, SCOPES};
use xnode_sim::report::AggregationReport;
use xnode_sim::{SimConfig, run};

/// A run with one death and one join after two quiet minutes, and enough time after them
/// for some of the slots open during them to become final.
fn aggregate(nodes: usize) -> AggregationReport {
    let report = run(SimConfig {
        nodes,
        // Quiet from the start until the death at 120 s: the slots of 0 to 30 s close (90 s
        // after they start at the latest) before it.
        warmup: Duration::from_secs(20),
        steady: Duration::from_secs(100),
        deaths: 1,
        joins: 1,
        settle: Duration::from_secs(5),
        // The joining node takes its place in the tree 30 s after it joins, at 155 s; the
        // slots of 40 to 70 s are final by the end, at 180 s.
        tail: Duration::from_secs(50),
        observe: true,
        placement_keys: 0,
        seed: 11,
        ..SimConfig::default()
    });
    println!("{report}");
    report.aggregation.expect("aggregation simulated")
}

/// The most bytes one slot's figures can take on the wire with this workload: each scope
/// has a name, six counters and a latency histogram whose buckets (2 % wide) span the
/// workload's latencies, at most 13 bytes a bucket (index and count as varints) and 10 a
/// counter.
fn slot_bytes_bound() -> f64 {
    let gamma: f64 = 1.02 / 0.98;
    let buckets = (2.0 * LATENCY_SPREAD_LOG2 * 2f64.ln() / gamma.ln()).ceil() + 2.0;
    let scope = 16.0 + 6.0 * 10.0 + 3.0 * 10.0 + buckets * 13.0;
    16.0 + SCOPES.len() as f64 * scope
}

fn check(nodes: usize, agg: &AggregationReport) {
    // Every node that was there when a quiet slot started holds its exact total (requests
    // and the number of nodes), and got it within 25 s of the slot's end (a total goes
    // down the tree 10 s after its slot ends, then a level a round).
    assert!(
        agg.quiet.slots >= 4,
        "{} quiet slots final",
        agg.quiet.slots
    );
    assert_eq!(agg.quiet.inexact_slots, 0);
    assert_eq!(agg.quiet.exact, agg.quiet.holders);
    assert!(agg.quiet.holders >= agg.quiet.slots * (nodes - 1));
    assert!(agg.exact_after.max <= 25.0, "{}", agg.exact_after);
    // The slots open at the death and the join are final too, and every node holds them:
    // less the dead node's figures, give or take the joiner, or a subtree missed while
    // views differed, never nothing.
    assert!(
        agg.disturbed.slots >= 4,
        "{} disturbed slots",
        agg.disturbed.slots
    );
    for slot in &agg.slots {
        assert!(slot.holders > 0 && slot.missing == 0, "{slot:?}");
    }
    // Trees follow each node's view: rebuilt, or shared, exactly when the members with a
    // place in them changed.
    assert_eq!(agg.stale_views, 0);
    assert_eq!(agg.tracking_misses, 0);
    assert!(agg.views_built >= 3 && agg.views_peak <= 8, "{agg:?}");
    // Every fifth round each node audits its final totals against a random member.
    assert!(
        agg.audit_requests >= nodes as u64,
        "{} audits",
        agg.audit_requests
    );

    // What a node receives per round is at most FANOUT reports and one answer, each at
    // most the open slots (reports) or the five minutes a newcomer is sent (answers).
    let open_slots = (OPEN_MS / SLOT_MS + 1) as f64;
    let answer_slots = (NEWCOMER_MS / SLOT_MS + 1) as f64;
    let report_bound = open_slots * slot_bytes_bound() + 1_000.0;
    let answer_bound = answer_slots * slot_bytes_bound() + 1_000.0;
    assert!(
        (agg.largest_report_bytes as f64) < report_bound,
        "report {} bytes, bound {report_bound:.0}",
        agg.largest_report_bytes
    );
    assert!(
        (agg.largest_answer_bytes as f64) < answer_bound,
        "answer {} bytes, bound {answer_bound:.0}",
        agg.largest_answer_bytes
    );
    assert!(
        agg.reports_received_per_round_max <= FANOUT as f64 + 1.0,
        "{} reports a round",
        agg.reports_received_per_round_max
    );
    // In steady state a child resends only the slots its parent lacks, and a parent
    // answers only settled totals that changed: a few slots each, not the whole window.
    // Twice the mean sizes seen is the margin.
    let round = ROUND.as_secs_f64();
    let kbit = |bytes: f64| bytes * 8.0 / 1000.0 / round;
    let busiest_bound = kbit(2.0 * (FANOUT as f64 * agg.mean_report_bytes + agg.mean_answer_bytes));
    assert!(
        agg.received_kbit.max <= busiest_bound,
        "busiest node received {:.1} kbit/s, bound {busiest_bound:.1}",
        agg.received_kbit.max
    );
    let mean_bound = kbit(2.0 * (agg.mean_report_bytes + agg.mean_answer_bytes));
    assert!(
        agg.mean_received_kbit <= mean_bound,
        "mean received {:.1} kbit/s, bound {mean_bound:.1}",
        agg.mean_received_kbit
    );
}

#[test]
fn every_node_holds_the_exact_total_and_receives_a_bounded_rate_at_any_size() {
    let small = aggregate(100);
    check(100, &small);
    // Three times the nodes and one level more in the tree: a node still hears from at
    // most FANOUT children and its parent, so what it receives does not grow.
    let large = aggregate(300);
    check(300, &large);
    for (what, s, l) in [
        ("mean", small.mean_received_kbit, large.mean_received_kbit),
        ("p99", small.received_kbit.p99, large.received_kbit.p99),
        ("max", small.received_kbit.max, large.received_kbit.max),
    ] {
        assert!(
            l <= 1.5 * s + 2.0,
            "received {what}: {s:.1} kbit/s at 100 nodes, {l:.1} at 300"
        );
    }
}
