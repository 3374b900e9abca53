//! In-process tests of the mesh: real libp2p swarms on loopback, no HTTP, no storage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xnode_mesh::{MemberState, Mesh, MeshConfig, MeshMetrics};
use xnode_types::{NodeId, SecretKey};

async fn start_mesh(
    network: &str,
    bootstrap: Vec<xnode_mesh::Multiaddr>,
) -> (Mesh, tokio::task::JoinHandle<()>) {
    let config = MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        mdns: false,
        network: network.into(),
        ..Default::default()
    };
    Mesh::start(config, &SecretKey::generate(), 1, MeshMetrics::default())
        .await
        .unwrap()
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn state_of(mesh: &Mesh, node: NodeId) -> Option<MemberState> {
    mesh.members()
        .into_iter()
        .find(|m| m.id == node)
        .map(|m| m.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_detect_a_crash_and_see_a_graceful_leave() {
    let net = format!("t{}", rand_suffix());
    let (first, _h0) = start_mesh(&net, vec![]).await;
    let boot = first.listen_addrs()[0].clone();
    let mut nodes = vec![(first, _h0)];
    for _ in 0..3 {
        nodes.push(start_mesh(&net, vec![boot.clone()]).await);
    }
    let ids: Vec<NodeId> = nodes.iter().map(|(m, _)| m.local_id()).collect();
    wait_for(
        "every node to see 3 alive peers",
        Duration::from_secs(5),
        || {
            nodes.iter().all(|(m, _)| {
                m.members()
                    .iter()
                    .filter(|x| x.state == MemberState::Alive)
                    .count()
                    == 3
            })
        },
    )
    .await;

    // Crash node 3: abort its driver, which drops the swarm and its sockets.
    let (_, crashed) = nodes.pop().unwrap();
    crashed.abort();
    let dead = ids[3];
    let took = wait_for("the crash to be detected", Duration::from_secs(5), || {
        nodes
            .iter()
            .all(|(m, _)| state_of(m, dead) == Some(MemberState::Dead))
    })
    .await;
    eprintln!("crash detected by all survivors in {took:?}");

    // Node 2 leaves gracefully.
    let (leaver, _) = nodes.pop().unwrap();
    leaver.leave(Duration::from_millis(300)).await;
    let left = ids[2];
    wait_for("the departure to be seen", Duration::from_secs(2), || {
        nodes
            .iter()
            .all(|(m, _)| state_of(m, left) == Some(MemberState::Left))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_different_networks_do_not_merge() {
    let (a, _ha) = start_mesh(&format!("a{}", rand_suffix()), vec![]).await;
    let (b, _hb) = start_mesh(
        &format!("b{}", rand_suffix()),
        vec![a.listen_addrs()[0].clone()],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.members().is_empty(), "{:?}", a.members());
    assert!(b.members().is_empty());
}

/// The push-pull sent when a connection opens can be lost (the peer was still starting,
/// or the connection it went over closed). Two nodes connected to each other and to no
/// one else must still find each other once messages get through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_first_push_pull_was_lost_still_join() {
    let net = format!("j{}", rand_suffix());
    let (a, _ha) = start_mesh(&net, vec![]).await;
    let lossy = xnode_mesh::FaultRules {
        drop_rate: 1.0,
        ..Default::default()
    };
    a.set_faults(lossy).await.unwrap();
    let (b, _hb) = start_mesh(&net, vec![a.listen_addrs()[0].clone()]).await;
    // Both sides' pushes on connect are lost: a drops b's, and its own never leave.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.members().is_empty() && b.members().is_empty());
    a.set_faults(xnode_mesh::FaultRules::default())
        .await
        .unwrap();
    wait_for("a and b to see each other", Duration::from_secs(10), || {
        state_of(&a, b.local_id()) == Some(MemberState::Alive)
            && state_of(&b, a.local_id()) == Some(MemberState::Alive)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_gossip_between_nodes() {
    let net = format!("r{}", rand_suffix());
    let (a, _ha) = start_mesh(&net, vec![]).await;
    let (b, _hb) = start_mesh(&net, vec![a.listen_addrs()[0].clone()]).await;
    let mut inbound = b.serve("echo");
    tokio::spawn(async move {
        while let Some(req) = inbound.recv().await {
            let mut body = req.body.to_vec();
            body.reverse();
            let _ = req.reply.send(Ok(body));
        }
    });
    let mut gossip = b.subscribe("news").await.unwrap();
    wait_for("a to see b", Duration::from_secs(5), || {
        state_of(&a, b.local_id()) == Some(MemberState::Alive)
    })
    .await;
    let answer = a
        .request(b.local_id(), "echo", vec![1, 2, 3], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer, vec![3, 2, 1]);
    let err = a
        .request(b.local_id(), "nope", vec![], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no service"), "{err}");

    // Gossip needs the topic mesh to form; retry publishing until it arrives.
    let mut got = None;
    for _ in 0..40 {
        a.publish("news", b"hello".to_vec()).await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(250), gossip.recv()).await {
            got = Some(m);
            break;
        }
    }
    let got = got.expect("gossip delivered");
    assert_eq!(got.source, a.local_id());
    assert_eq!(got.data, b"hello");
}

fn rand_suffix() -> u64 {
    rand::random::<u64>() % 1_000_000
}
