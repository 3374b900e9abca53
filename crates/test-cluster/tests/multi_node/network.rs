//! The network as a wide-area one: modelled link latency and loss, and partitions checked
//! against a history of what clients were told.

use std::time::Duration;

use xnode_mesh::LinkFault;
use xnode_test_cluster::Cluster;

/// The round trip node `observer` measures to node `target` with its probes, if any yet.
fn probe_rtt(c: &Cluster, observer: usize, target: usize) -> Option<Duration> {
    let target = c.id(target);
    c.node(observer)
        .nodes()
        .into_iter()
        .find(|n| n.id == target)
        .and_then(|n| n.rtt_us)
        .map(Duration::from_micros)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_modelled_link_delays_probes_and_its_cuts_partition() {
    let c = Cluster::start(3).await;
    // 40 ms each way between nodes 0 and 1; node 2 stays on loopback.
    let slow = LinkFault {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(5),
        ..LinkFault::default()
    };
    c.set_link(0, 1, slow).await;
    // The smoothed probe round trip moves towards 80 ms within a few probe rounds; the
    // bound leaves room for a loaded machine.
    c.wait_until(
        "probes to see the slow link",
        Duration::from_secs(10),
        |c| {
            probe_rtt(c, 0, 1).is_some_and(|rtt| rtt >= Duration::from_millis(65))
                && probe_rtt(c, 1, 0).is_some_and(|rtt| rtt >= Duration::from_millis(65))
        },
    )
    .await;
    let fast = probe_rtt(&c, 0, 2).expect("node 0 probed node 2");
    assert!(
        fast < Duration::from_millis(40),
        "the loopback link to node 2 measured {fast:?}"
    );
    // The slow link is slow, not broken: nobody suspects anyone.
    for (o, t) in [(0, 1), (1, 0), (0, 2), (2, 1)] {
        assert_eq!(c.state(o, t), Some(xnode_mesh::MemberState::Alive));
    }

    // Cut links close both ways, like `blocked`: with node 1's links to both others cut,
    // neither direct nor indirect probes reach it. (One cut link alone is bridged by
    // indirect probes through node 2, as SWIM intends.)
    let cut = LinkFault {
        cut: true,
        ..LinkFault::default()
    };
    c.set_link(1, 0, cut).await;
    c.set_link(1, 2, cut).await;
    assert!(c.node(0).faults().cut_peers().contains(&c.id(1)));
    c.wait_until(
        "nodes 0 and 2 to suspect node 1 across the cuts",
        Duration::from_secs(10),
        |c| {
            c.state(0, 1) != Some(xnode_mesh::MemberState::Alive)
                && c.state(2, 1) != Some(xnode_mesh::MemberState::Alive)
        },
    )
    .await;
    c.shutdown().await;
}
