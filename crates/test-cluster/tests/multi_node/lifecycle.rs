//! A node's life cycle in the network: a drain moves everything away before the node
//! goes, a restart moves nothing, a leave moves everything at once.

use std::time::Duration;

use xnode_node::drain::DrainState;
use xnode_store::{ChunkId, ObjectPath};
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::NodeStatus;

/// Small chunks keep tests fast. The repair grace is long, so any copy made while a test
/// runs is the drain's (or the leave's) doing, never a dead node's grace running out.
fn config(c: &mut xnode_node::Config) {
    c.storage.chunk_size = 64 * 1024;
    c.storage.repair_grace = Duration::from_secs(120);
    c.storage.repair_interval = Duration::from_millis(500);
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn chunk_on_disk(c: &Cluster, node: usize, id: &ChunkId) -> bool {
    c.data_dir(node)
        .join("chunks")
        .join(&id.to_hex()[..2])
        .join(id.to_hex())
        .exists()
}

/// Running nodes (by index) that hold chunk `id` on disk.
fn holders(c: &Cluster, id: &ChunkId) -> Vec<usize> {
    c.running()
        .into_iter()
        .filter(|&i| chunk_on_disk(c, i, id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_node_leaves_every_object_with_rf_copies_on_the_others() {
    let mut c = Cluster::start_with(4, config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "archive").await;
    let mut objects = Vec::new();
    let mut chunks: Vec<ChunkId> = Vec::new();
    for k in 0..3u8 {
        let body = data(150_000 + usize::from(k) * 10_000, k);
        let key = format!("file-{k}");
        let meta = c.put(0, &tenant, "archive", &key, &body).await.unwrap();
        let info = meta.info.unwrap();
        let manifest = c.node(0).storage().manifest(&info).await.unwrap();
        chunks.extend(manifest.chunks.iter().map(|r| r.id));
        chunks.push(info.manifest);
        objects.push((key, body));
    }
    c.wait_until(
        "every chunk on 3 of the 4 nodes",
        Duration::from_secs(15),
        |c| chunks.iter().all(|id| holders(c, id).len() == 3),
    )
    .await;
    // With 4 nodes and rf 3 each node holds about three quarters of the chunks; the one
    // that holds the most is drained, so its departure would leave many short.
    let victim = (0..4)
        .max_by_key(|&i| chunks.iter().filter(|id| chunk_on_disk(&c, i, id)).count())
        .unwrap();
    let held = chunks
        .iter()
        .filter(|id| chunk_on_disk(&c, victim, id))
        .count();
    assert!(held > 0, "the drained node holds data");

    // A deployment with a replica on every node: the drained node's must stop there.
    c.deploy(
        0,
        &tenant,
        "hello",
        xnode_deploy::spec::Kind::Http,
        "hello",
        4,
        |_| {},
    )
    .await;
    assert!(c.node(victim).compute().running_here() > 0);
    let repairs = |c: &Cluster| -> u64 {
        c.running()
            .iter()
            .map(|&i| c.node(i).storage().metrics().repairs.get())
            .sum()
    };
    let repairs_before = repairs(&c);
    // Only the node's operator may drain it: a stranger's signed request is refused and
    // changes nothing; the operator's (signed with its key file, as `xnode drain` does)
    // starts the drain.
    let http = reqwest::Client::new();
    let drain_request = |signer: &Tenant| {
        let mut request = http.post(format!("{}/v1/node/drain", c.api_url(victim)));
        for (name, value) in
            signer.signed_headers(&c.id(victim), "POST", "/v1/node/drain", "", b"", false)
        {
            request = request.header(name, value);
        }
        request
    };
    let stranger = drain_request(&Tenant::new()).send().await.unwrap();
    assert_eq!(stranger.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(c.node(victim).drain_status().state, DrainState::Idle);
    let (operator_key, _) = xnode_node::identity::load_operator_key(
        c.data_dir(victim),
        Some(
            &c.data_dir(victim)
                .join(xnode_node::identity::OPERATOR_KEY_FILE),
        ),
    )
    .unwrap();
    let operator = Tenant { key: operator_key };
    let started = drain_request(&operator).send().await.unwrap();
    assert_eq!(started.status(), reqwest::StatusCode::ACCEPTED);
    let started: serde_json::Value = started.json().await.unwrap();
    assert_eq!(started["state"], "draining");
    assert_eq!(started["stop_when_drained"], true);
    c.wait_until("the drain to finish", Duration::from_secs(30), |c| {
        c.node(victim).drain_status().state == DrainState::Drained
    })
    .await;
    let status = c.node(victim).drain_status();
    assert_eq!(status.under_replicated_chunks, 0);
    assert_eq!(status.under_replicated_objects, 0);
    // The copies are made by the drain's rounds and by the other nodes' repair, which
    // leave the draining node out of placement as soon as they see its record; the drain
    // finished only once it had checked every copy itself.
    assert!(status.rounds >= 1, "{status:?}");
    assert_eq!(status.workloads_here, 0, "{status:?}");
    assert_eq!(c.node(victim).compute().running_here(), 0);
    assert!(
        repairs(&c) > repairs_before,
        "copies were made for the drain"
    );
    assert!(
        c.node(victim).stop_requested().is_cancelled(),
        "a drain asks its process to stop"
    );
    c.stop(victim).await;

    // Every chunk is on all three other nodes (rf 3 of the 3 left), without waiting for
    // repair: the drain already made the copies.
    for id in &chunks {
        assert_eq!(holders(&c, id).len(), 3, "chunk {id} after the drain");
    }
    // Every object's metadata is on three other nodes too.
    for (key, _) in &objects {
        let path = ObjectPath {
            tenant: tenant.id(),
            bucket: "archive".into(),
            key: key.clone(),
        };
        let mut copies = 0;
        for i in c.running() {
            if c.node(i)
                .storage()
                .local_meta(&path)
                .await
                .unwrap()
                .is_some()
            {
                copies += 1;
            }
        }
        assert_eq!(copies, 3, "metadata of {key} after the drain");
    }
    // The deployment runs on the three others (a replica per node, at most).
    let observer = c.running()[0];
    c.wait_replicas(observer, "hello", 3, Duration::from_secs(10))
        .await;
    // The others know it left for good, and read everything through every node.
    for i in c.running() {
        let record = c
            .node(i)
            .records()
            .into_iter()
            .find(|r| r.node_id == c.id(victim))
            .unwrap();
        assert_eq!(record.status, NodeStatus::Left, "as node {i} sees it");
        for (key, body) in &objects {
            assert_eq!(
                &c.get(i, &tenant, "archive", key, None).await.unwrap(),
                body,
                "{key} via node {i}"
            );
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_keeps_the_nodes_place_and_a_leave_gives_it_up_at_once() {
    let mut c = Cluster::start_with(4, config).await;
    let in_every_set = |c: &Cluster, node: usize| {
        c.running().iter().all(|&i| {
            c.node(i)
                .storage()
                .storage_set()
                .iter()
                .any(|m| m.id == c.id(node))
        })
    };
    c.wait_until(
        "every node in every storage set",
        Duration::from_secs(10),
        |c| (0..4).all(|n| in_every_set(c, n)),
    )
    .await;

    // A graceful stop (SIGTERM) is a restart: the others keep the node's place.
    c.stop(3).await;
    c.wait_until(
        "the others to see node 3 stop",
        Duration::from_secs(10),
        |c| (0..3).all(|i| c.state(i, 3) == Some(xnode_mesh::MemberState::Left)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        in_every_set(&c, 3),
        "a stopped node keeps its place for the repair grace"
    );
    c.restart(3).await;

    // A leave gives the place up at once.
    c.node(2).leave().await.unwrap();
    assert!(c.node(2).stop_requested().is_cancelled());
    c.stop(2).await;
    c.wait_until(
        "the others to drop the node that left",
        Duration::from_secs(10),
        |c| {
            [0, 1, 3].iter().all(|&i| {
                !c.node(i)
                    .storage()
                    .storage_set()
                    .iter()
                    .any(|m| m.id == c.id(2))
            })
        },
    )
    .await;
    // A node that left does not come back under the same identity.
    match c.try_restart(2).await {
        Err(xnode_node::NodeError::Left { .. }) => {}
        Err(e) => panic!("a node that left refused to start, but for another reason: {e}"),
        Ok(()) => panic!("a node that left started again under the same identity"),
    }

    // A drain survives a crash: the restarted node says `draining` from its first record
    // and resumes. (With two other nodes and rf 3 this drain cannot finish, which keeps it
    // running for the check.)
    c.node(3).drain(false).await.unwrap();
    c.crash(3).await;
    c.restart(3).await;
    let status = c.node(3).drain_status();
    assert_eq!(status.state, DrainState::Draining, "{status:?}");
    assert!(!status.stop_when_drained);
    let own = c
        .node(3)
        .records()
        .into_iter()
        .find(|r| r.node_id == c.id(3))
        .unwrap();
    assert_eq!(own.status, NodeStatus::Draining);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_of_an_incompatible_protocol_is_refused_and_shown_as_such() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // Node 1 advertises a newer minor (a compatible next release); node 2, once the flag
    // is set and it restarts, a new major that no longer speaks 1.x.
    let next_major = Arc::new(AtomicBool::new(false));
    let flag = next_major.clone();
    let mut c = Cluster::start_with(3, move |cfg| {
        if cfg.data_dir.ends_with("node-1") {
            cfg.advertised_protocol = Some("1.5".into());
        }
        if cfg.data_dir.ends_with("node-2") && flag.load(Ordering::SeqCst) {
            cfg.advertised_protocol = Some("2.0".into());
        }
    })
    .await;
    let view = |c: &Cluster, observer: usize, node: usize| {
        c.node(observer)
            .nodes()
            .into_iter()
            .find(|n| n.id == c.id(node))
    };
    // The newer minor is accepted and talked to at this release's version.
    c.wait_until("node 0 to identify node 1", Duration::from_secs(10), |c| {
        view(c, 0, 1).is_some_and(|n| n.negotiated_protocol.is_some())
    })
    .await;
    let one = view(&c, 0, 1).unwrap();
    assert_eq!(one.protocol.as_deref(), Some("1.5 (oldest 1.0)"));
    assert_eq!(
        one.negotiated_protocol.as_deref(),
        Some(xnode_mesh::protocol::CURRENT.to_string().as_str())
    );
    assert_eq!(one.refused, None);

    c.stop(2).await;
    next_major.store(true, Ordering::SeqCst);
    c.restart(2).await;
    c.wait_until(
        "nodes 0 and 1 to refuse node 2, and node 2 to refuse them",
        Duration::from_secs(10),
        |c| {
            [0, 1]
                .iter()
                .all(|&i| view(c, i, 2).is_some_and(|n| n.refused.is_some()))
                && [0, 1]
                    .iter()
                    .all(|&i| view(c, 2, i).is_some_and(|n| n.refused.is_some()))
        },
    )
    .await;
    let two = view(&c, 0, 2).unwrap();
    assert_eq!(two.protocol.as_deref(), Some("2.0 (oldest 2.0)"));
    let reason = two.refused.unwrap();
    assert!(reason.contains("upgrade this node"), "{reason}");
    let reason = view(&c, 2, 0).unwrap().refused.unwrap();
    assert!(reason.contains("upgrade the peer"), "{reason}");
    // Counted, and never a live member: its messages are dropped.
    let metrics = c.node(0).metrics_text();
    let refused: u64 = metrics
        .lines()
        .find(|l| l.starts_with("mesh_peers_refused_total{reason=\"incompatible_protocol\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap();
    assert!(refused >= 1, "{metrics}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in [0, 1] {
        assert_ne!(
            c.state(i, 2),
            Some(xnode_mesh::MemberState::Alive),
            "as node {i} sees it"
        );
    }
    c.shutdown().await;
}
