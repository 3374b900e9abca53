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

/// A parent in the observability tree that sends one child false final totals (here: a
/// million requests in a bucket nobody used) is outvoted: the child's audits ask two
/// other members, which agree with each other, and the child takes their figures. A slot
/// is audited once it has been final for a slot's length, so the test waits that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parent_that_misstates_final_totals_to_a_child_is_outvoted() {
    use xnode_observe::SLOT_MS;
    use xnode_observe::aggregate::{NetworkTotals, OPEN_MS, SlotFigures};

    let c = Cluster::start_with(5, |cfg| {
        cfg.observe_interval = Duration::from_millis(300);
        cfg.observe_summaries_up_to = 1;
    })
    .await;
    let started = std::time::Instant::now();
    // Members take their places 30 s after they start (`JOIN_SETTLE_MS`).
    c.wait_until("one tree over all five", Duration::from_secs(60), |c| {
        (0..5).all(|i| c.node(i).observe_network().totals.tree.members == 5)
    })
    .await;
    let root = (0..5)
        .find(|&i| c.node(i).observe_network().totals.tree.parent.is_none())
        .unwrap();
    let victim = (root + 1) % 5;
    let victim_id = c.id(victim);
    // The lies below are about slots that started 100 s ago, which audits compare. Honest
    // members hold totals of every slot since OPEN_MS before the tree formed (the root
    // sums every open slot from its first round, 30 s after the start), so after 60 s
    // they hold the lied-about ones.
    let audited_after = Duration::from_secs(60);
    const { assert!(OPEN_MS >= 80_000) };
    tokio::time::sleep(audited_after.saturating_sub(started.elapsed())).await;

    // The root's service is taken over: the victim gets false totals of audited slots,
    // the others an empty answer.
    let mut inbound = c.node(root).mesh().serve("observe-tree");
    let lying = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still_lying = lying.clone();
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            let now = unix_ms();
            let slots = if request.from == victim_id
                && still_lying.load(std::sync::atomic::Ordering::Relaxed)
            {
                // Slots that stay audited for ten to twenty seconds more.
                let first = now - 100_000 - now % SLOT_MS;
                (0..2)
                    .map(|k| SlotFigures {
                        slot_ms: first + k * SLOT_MS,
                        nodes: 5,
                        scopes: [(
                            "bucket:lie".to_owned(),
                            xnode_observe::ScopeStats {
                                requests: 1_000_000,
                                ..Default::default()
                            },
                        )]
                        .into(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let answer = NetworkTotals {
                slots,
                have: Vec::new(),
            };
            let _ = request.reply.send(Ok(xnode_wire::encode(&answer).unwrap()));
        }
    });
    c.wait_until(
        "the victim to find and correct the lie",
        Duration::from_secs(30),
        |c| {
            let tree = c.node(victim).observe_network().totals.tree;
            tree.audit_corrections >= 2 && tree.audit_disagreements >= 2
        },
    )
    .await;
    // Once the lies stop, every false slot the victim took is found within a few audits.
    lying.store(false, std::sync::atomic::Ordering::Relaxed);
    c.wait_until(
        "the victim to hold no false slot",
        Duration::from_secs(30),
        |c| {
            c.node(victim)
                .observe_series("bucket:lie", 3_600_000)
                .points
                .is_empty()
        },
    )
    .await;
    // The members that heard no lie never disagreed.
    for i in (0..5).filter(|&i| i != victim && i != root) {
        assert_eq!(c.node(i).observe_network().totals.tree.audit_corrections, 0);
    }
    c.shutdown().await;
}

/// Beyond `observe_summaries_up_to` a node's figures are asked of it. A node that answers
/// with another node's figures, with windows nobody asked for or with garbage gets a clear
/// refusal to the client, and names no live member cannot make the node dial anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_asked_for_its_figures_can_only_speak_for_itself() {
    use xnode_observe::NodeFigures;

    let c = Cluster::start_with(3, |cfg| {
        cfg.observe_interval = Duration::from_millis(300);
        cfg.observe_summaries_up_to = 1;
    })
    .await;
    let (asker, rogue, honest) = (0, 1, 2);
    let url = |id: &xnode_types::NodeId| format!("{}/v1/observe/nodes/{id}", c.api_url(asker));
    // Once the asker holds the others alive (and their records), it asks them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let honest_figures: Value = loop {
        let r = reqwest::get(url(&c.id(honest))).await.unwrap();
        if r.status() == 200 && c.node(asker).totals_from_tree() {
            break r.json().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(honest_figures["id"], c.id(honest).to_string());
    // Clients asking again and again within `observe_interval` are answered from what the
    // asker pulled last: the honest node is not asked forty times.
    let served = |c: &Cluster| {
        let base = c.api_url(honest).to_owned();
        async move {
            let text = reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("observe_figures_served_total "))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .unwrap()
        }
    };
    let before = served(&c).await;
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let r = reqwest::get(url(&c.id(honest))).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let rounds = started.elapsed().as_millis() / 300 + 1;
    let asked = served(&c).await - before;
    assert!(
        u128::from(asked) <= rounds,
        "asked {asked} times in {rounds} windows"
    );

    // The rogue's service is taken over: it answers first with the honest node's figures
    // (as if it spoke for it), then with a window of a length nobody asked for, then with
    // bytes that decode as nothing.
    let impersonated = {
        let summary = forged_summary(c.id(honest), unix_ms(), 1, unix_ms());
        NodeFigures {
            summary,
            windows: Vec::new(),
        }
    };
    let mut odd_window = impersonated.clone();
    odd_window.summary.node = c.id(rogue);
    odd_window.windows = vec![(7, Default::default())];
    let answers = vec![
        xnode_wire::encode(&impersonated).unwrap(),
        xnode_wire::encode(&odd_window).unwrap(),
        vec![0xff; 40],
    ];
    let mut inbound = c.node(rogue).mesh().serve("observe-figures");
    tokio::spawn(async move {
        let mut answers = answers.into_iter();
        while let Some(request) = inbound.recv().await {
            let Some(answer) = answers.next() else { break };
            let _ = request.reply.send(Ok(answer));
        }
    });
    for expected in [
        "answered with the figures of node",
        "windows this node does not know",
        "did not send its figures",
    ] {
        let r = reqwest::get(url(&c.id(rogue))).await.unwrap();
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}");
    }
    // An id that is no member is not dialled: a 404 at once.
    let stranger = xnode_types::SecretKey::generate().node_id();
    let started = std::time::Instant::now();
    let r = reqwest::get(url(&stranger)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(started.elapsed() < Duration::from_secs(2));
    c.shutdown().await;
}
