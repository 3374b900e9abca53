//! A rogue node against the mesh: node 0 of each cluster sends, through its own handles and
//! the `rogue` hooks of xnode-mesh, what a modified binary could (forged membership
//! gossip, raw SWIM requests, invalid gossip), and the honest nodes must not be moved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xnode_mesh::proto::{SwimRequest, SwimResponse};
use xnode_mesh::{
    LivenessRecord, MemberState, MembershipUpdate, MeshEvent, SelfStatus, Validation,
};
use xnode_test_cluster::Cluster;
use xnode_types::{NodeId, SecretKey};

const ROGUE: usize = 0;
const RAW_TIMEOUT: Duration = Duration::from_secs(5);

fn encode<T: xnode_wire::Versioned>(value: &T) -> Vec<u8> {
    xnode_wire::encode(value).unwrap()
}

/// Publishes a membership update from the rogue a few times (gossipsub gives each publish
/// its own id), so it reaches every peer even if the first went out before a mesh formed.
async fn gossip_membership(c: &Cluster, update: &MembershipUpdate) {
    gossip_raw_membership(c, encode(update)).await;
}

async fn gossip_raw_membership(c: &Cluster, bytes: Vec<u8>) {
    for _ in 0..3 {
        c.node(ROGUE)
            .mesh()
            .publish("membership", bytes.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn swim_raw(c: &Cluster, to: usize, bytes: Vec<u8>) -> Option<Vec<u8>> {
    c.node(ROGUE)
        .mesh()
        .send_swim_raw(c.id(to), bytes, RAW_TIMEOUT)
        .await
        .ok()
}

/// Watches for `duration` that every honest node sees every honest node alive, failing at
/// the first observation of anything else.
async fn assert_honest_nodes_stay_alive(c: &Cluster, duration: Duration) {
    let honest: Vec<usize> = (0..c.len()).filter(|&i| i != ROGUE).collect();
    let start = Instant::now();
    while start.elapsed() < duration {
        for &o in &honest {
            for &t in &honest {
                if o == t {
                    continue;
                }
                let state = c.state(o, t);
                assert_eq!(
                    state,
                    Some(MemberState::Alive),
                    "node {o} sees honest node {t} as {state:?} after {:?}",
                    start.elapsed()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The victim's driver still runs: it answers a probe with its own signed record.
async fn assert_mesh_answers(c: &Cluster, victim: usize) {
    let answer = swim_raw(c, victim, encode(&SwimRequest::Ping { about_you: None }))
        .await
        .expect("the victim answers a ping");
    match xnode_wire::decode::<SwimResponse>(&answer, 1 << 20).unwrap() {
        SwimResponse::Ack {
            record: Some(record),
        }
        | SwimResponse::CoordinatedAck {
            record: Some(record),
            ..
        } => {
            assert_eq!(record.node, c.id(victim));
            record.verify(c.node(victim).mesh().network()).unwrap();
        }
        other => panic!("expected an ack with a record, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_at_u64_max_leaves_its_victim_alive_and_running() {
    let c = Cluster::start(4).await;
    let victim = 1;
    let (rogue, vid) = (c.id(ROGUE), c.id(victim));
    let before = c.node(victim).mesh().incarnation();
    let death = MembershipUpdate::Dead {
        node: vid,
        incarnation: u64::MAX,
        from: rogue,
    };
    // By gossip.
    gossip_membership(&c, &death).await;
    // By push-pull, to every honest node, in the rogue's name and in another's.
    let forged_witness = MembershipUpdate::Dead {
        node: vid,
        incarnation: u64::MAX,
        from: c.id(2),
    };
    for to in 1..c.len() {
        let sync = SwimRequest::Sync {
            updates: vec![death.clone(), forged_witness.clone()],
        };
        swim_raw(&c, to, encode(&sync)).await;
    }
    // In a probe's `about_you`, to the victim itself (its refutation would overflow).
    for state in [MemberState::Dead, MemberState::Suspect] {
        let ping = SwimRequest::Ping {
            about_you: Some((state, u64::MAX)),
        };
        swim_raw(&c, victim, encode(&ping)).await;
    }

    assert_honest_nodes_stay_alive(&c, Duration::from_secs(4)).await;
    assert_mesh_answers(&c, victim).await;
    let after = c.node(victim).mesh().incarnation();
    assert!(
        after <= before + 1,
        "the victim's incarnation went from {before} to {after}"
    );
    for o in 2..c.len() {
        let seen = c
            .node(o)
            .mesh()
            .members()
            .into_iter()
            .find(|m| m.id == vid)
            .unwrap();
        assert!(seen.incarnation <= after, "{seen:?}");
    }
    c.shutdown().await;
}

/// The version-1 encoding of `Left{node, u64::MAX}`: what any node could send before
/// liveness was signed (postcard: variant 3, the id as a string, the incarnation as a
/// varint).
fn v1_left_body(node: NodeId) -> Vec<u8> {
    let id = node.to_string();
    let mut out = vec![3, id.len() as u8];
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&[0xff; 9]);
    out.push(0x01);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn left_hearsay_about_an_honest_node_is_ignored() {
    let c = Cluster::start(4).await;
    let victim = 1;
    let vid = c.id(victim);
    let network = c.node(victim).mesh().network().to_owned();

    // A `left` record the rogue signed in the victim's name.
    let rogue_key = SecretKey::generate();
    let mut forged = LivenessRecord::sign(&rogue_key, &network, u64::MAX, SelfStatus::Left, &[]);
    forged.node = vid;
    let forged = MembershipUpdate::Signed(forged);
    gossip_membership(&c, &forged).await;
    // The unsigned `left` of format 1, by gossip and by push-pull.
    let mut v1_update = vec![7, 1];
    v1_update.extend(v1_left_body(vid));
    gossip_raw_membership(&c, v1_update).await;
    let mut v1_sync = vec![5, 1, 2, 1];
    v1_sync.extend(v1_left_body(vid));
    for to in 1..c.len() {
        swim_raw(&c, to, v1_sync.clone()).await;
        let sync = SwimRequest::Sync {
            updates: vec![forged.clone()],
        };
        swim_raw(&c, to, encode(&sync)).await;
    }

    assert_honest_nodes_stay_alive(&c, Duration::from_secs(3)).await;
    assert_mesh_answers(&c, victim).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_pull_flood_of_fake_members_stays_bounded_and_harms_no_one() {
    let c = Cluster::start(4).await;
    let network = c.node(1).mesh().network().to_owned();
    let before: Vec<usize> = (0..c.len())
        .map(|i| c.node(i).mesh().members().len())
        .collect();
    // 10,000 members that do not exist, each validly signed by its own fresh key, all
    // pointing at an address nobody answers on.
    let fakes: Vec<MembershipUpdate> = (0..10_000)
        .map(|_| {
            MembershipUpdate::Signed(LivenessRecord::sign(
                &SecretKey::generate(),
                &network,
                1,
                SelfStatus::Alive,
                &["/ip4/198.51.100.1/tcp/1".to_owned()],
            ))
        })
        .collect();
    let whole = encode(&SwimRequest::Sync {
        updates: fakes.clone(),
    });
    let halves: Vec<Vec<u8>> = fakes
        .chunks(5_000)
        .map(|chunk| {
            encode(&SwimRequest::Sync {
                updates: chunk.to_vec(),
            })
        })
        .collect();
    let flood_until = Instant::now() + Duration::from_secs(6);
    let mut sent = 0;
    while Instant::now() < flood_until {
        for to in 1..c.len() {
            swim_raw(&c, to, whole.clone()).await;
            for half in &halves {
                swim_raw(&c, to, half.clone()).await;
                sent += 1;
            }
        }
        // Meanwhile, no honest node suspects another.
        assert_honest_nodes_stay_alive(&c, Duration::from_millis(200)).await;
    }
    eprintln!("sent {sent} push-pull floods of 5,000 fake members");
    assert_honest_nodes_stay_alive(&c, Duration::from_secs(3)).await;
    for (i, &members_before) in before.iter().enumerate().skip(1) {
        let members = c.node(i).mesh().members().len();
        eprintln!("node {i}: {members_before} members before, {members} after");
        assert!(
            members <= members_before + xnode_mesh::swim::admission::MAX_UNVERIFIED_MEMBERS,
            "node {i} holds {members} members"
        );
        assert!(
            members < members_before + 1_000,
            "node {i} holds {members} members"
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_suspicious_pings_raises_the_incarnation_at_most_once_a_second() {
    let c = Cluster::start(3).await;
    let victim = 1;
    let mut events = c.node(victim).mesh().events();
    let before = c.node(victim).mesh().incarnation();
    let start = Instant::now();
    let mut pings = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        let current = c.node(victim).mesh().incarnation();
        let ping = encode(&SwimRequest::Ping {
            about_you: Some((MemberState::Suspect, current)),
        });
        let batch = (0..20).map(|_| swim_raw(&c, victim, ping.clone()));
        futures::future::join_all(batch).await;
        pings += 20;
    }
    let elapsed = start.elapsed();
    // Deferred refutations land at most one interval later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = c.node(victim).mesh().incarnation();
    let mut bumps = 0u64;
    while let Ok(event) = events.try_recv() {
        if let MeshEvent::LocalIncarnation(_) = event {
            bumps += 1;
        }
    }
    let allowed = elapsed.as_secs() + 3;
    eprintln!(
        "{pings} suspicious pings in {elapsed:?}: incarnation {before} -> {after}, {bumps} bumps"
    );
    assert!(after - before <= allowed, "{before} -> {after}");
    assert!(bumps <= allowed, "{bumps} incarnation bumps");
    assert_eq!(c.state(2, victim), Some(MemberState::Alive));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_gossip_is_not_forwarded_and_its_sender_is_scored_down() {
    const TOPIC: &str = "hostile-test";
    let c = Cluster::start(3).await;
    let (relay, far) = (1, 2);
    // The rogue reaches `far` only through `relay`.
    c.partition(&[ROGUE], &[far]).await;
    // The relay's subscriber accepts what starts with "ok" and rejects the rest.
    let mut at_relay = c.node(relay).mesh().subscribe(TOPIC).await.unwrap();
    let relay_mesh = c.node(relay).mesh().clone();
    tokio::spawn(async move {
        while let Some(message) = at_relay.recv().await {
            let verdict = if message.data.starts_with(b"ok") {
                Validation::Accept
            } else {
                Validation::Reject
            };
            relay_mesh.report_validation(&message.id, verdict);
        }
    });
    let mut at_far = c.node(far).mesh().subscribe(TOPIC).await.unwrap();

    // Valid gossip crosses the relay (retry until the topic's mesh has formed).
    let mut crossed = false;
    for n in 0..100 {
        c.node(ROGUE)
            .mesh()
            .publish(TOPIC, format!("ok-{n}").into_bytes())
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), at_far.recv()).await {
            assert_eq!(m.source, c.id(ROGUE));
            crossed = true;
            break;
        }
    }
    assert!(crossed, "accepted gossip is forwarded by the relay");
    let score_before = c.node(relay).mesh().peer_score(c.id(ROGUE)).await.unwrap();

    for n in 0..5 {
        c.node(ROGUE)
            .mesh()
            .publish(TOPIC, format!("bad-{n}").into_bytes())
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Ok(Some(m)) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        at_far.recv(),
    )
    .await
    {
        assert!(
            m.data.starts_with(b"ok"),
            "rejected gossip reached the far node: {:?}",
            String::from_utf8_lossy(&m.data)
        );
    }
    let score = c
        .node(relay)
        .mesh()
        .peer_score(c.id(ROGUE))
        .await
        .unwrap()
        .expect("the relay scores the rogue");
    let honest = c
        .node(relay)
        .mesh()
        .peer_score(c.id(far))
        .await
        .unwrap()
        .expect("the relay scores the far node");
    eprintln!("rogue's score at the relay: {score_before:?} -> {score}; honest peer's: {honest}");
    assert!(score < -80.0, "the rogue is graylisted: {score}");
    assert!(honest >= 0.0, "the honest peer is not penalised: {honest}");
    c.heal().await;
    c.shutdown().await;
}
