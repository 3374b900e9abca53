//! Forwarded reads (issue 18, item 5): an edge that holds no replica of a bucket's
//! metadata asks the nearest replica for the object's entry, manifest and first chunks in
//! parallel with its own quorum read, and uses that answer only if the quorum agrees and
//! every byte matches its id. A near replica that answers with a stale version or bad
//! bytes costs a fallback, never a wrong byte.

use std::sync::Arc;
use std::time::Duration;

use xnode_storage::ServeFault;
use xnode_storage::proto::{MAX_FORWARDED_BYTES, MetaAttestation, StoreRequest, StoreResponse};
use xnode_store::ObjectPath;
use xnode_test_cluster::{Cluster, Tenant};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn count(c: &Cluster, metric: fn(&xnode_store::StoreMetrics) -> u64) -> u64 {
    c.running()
        .into_iter()
        .map(|i| metric(c.node(i).storage().metrics()))
        .sum()
}

fn used(m: &xnode_store::StoreMetrics) -> u64 {
    m.forwarded_reads_used.get()
}

fn refused(m: &xnode_store::StoreMetrics) -> u64 {
    m.forwarded_reads_refused.get()
}

/// Every node's forwarded-read answers go through `tamper` (`None` restores honesty).
fn tamper_all(
    c: &Cluster,
    tamper: Option<Arc<dyn Fn(StoreResponse) -> StoreResponse + Send + Sync>>,
) {
    for i in c.running() {
        let hook = tamper.clone().map(|tamper| {
            Arc::new(
                move |request: &StoreRequest, honest: StoreResponse| match request {
                    StoreRequest::ForwardedRead { .. }
                    | StoreRequest::QuorumForwardedRead { .. } => {
                        ServeFault::Answer(tamper(honest))
                    }
                    _ => ServeFault::Answer(honest),
                },
            ) as xnode_storage::ServeTamper
        });
        c.node(i).storage().set_serve_tamper(hook);
    }
}

/// Flips a chunk's first byte, or the manifest's when no chunk came.
fn spoil(answer: &mut xnode_storage::proto::ForwardedAnswer) {
    let byte = match answer.chunks.first_mut() {
        Some(chunk) => chunk.data.first_mut(),
        None => answer.manifest.as_mut().and_then(|m| m.first_mut()),
    };
    if let Some(byte) = byte {
        *byte ^= 0xff;
    }
}

/// Reads the object through every node `rounds` times, each read checked against `want`.
async fn read_everywhere(c: &Cluster, tenant: &Tenant, want: &[u8], rounds: usize) {
    for _ in 0..rounds {
        for i in c.running() {
            let got = c.get(i, tenant, "near", "k", None).await.unwrap();
            assert!(got == want, "node {i} returned other bytes");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_far_edge_uses_a_forwarded_read_only_when_current_and_intact() {
    let c = Cluster::start_with(4, |cfg| cfg.storage.chunk_size = 64 * 1024).await;
    let tenant = Tenant::new();
    // Two copies on four nodes: two nodes hold no replica of the bucket's metadata, and
    // forward their reads.
    c.create_bucket_with_rf(0, &tenant, "near", 2).await;
    let old = data(500 * 1024, 1); // eight chunks
    c.put(0, &tenant, "near", "k", &old).await.unwrap();

    // Honest replicas: the far edges use forwarded answers.
    read_everywhere(&c, &tenant, &old, 3).await;
    let honest_uses = count(&c, used);
    eprintln!(
        "honest: {honest_uses} forwarded reads used, {} refused",
        count(&c, refused)
    );
    assert!(honest_uses > 0, "no read used a forwarded answer");
    // The metadata replicas prefetch for their own reads (eight chunks on two of four
    // nodes: a replica lacks some of them).
    assert!(
        count(&c, |m| m.local_prefetches_used.get()) > 0,
        "no metadata replica used its own prefetch"
    );

    // A metadata replica's honest answer while the old version is current: replayed later,
    // it is a stale answer (a correctly sealed entry, its manifest and chunks).
    let path = ObjectPath::new(tenant.id(), "near", "k").unwrap();
    let request = StoreRequest::ForwardedRead {
        path,
        from: 0,
        max_bytes: MAX_FORWARDED_BYTES,
    };
    // A replica leaves out what placement puts on the node asking, so ask from every node
    // until an answer carries the manifest and chunks.
    let mut stale = None;
    'found: for from in c.running() {
        for to in c.running().into_iter().filter(|&to| to != from) {
            let answer = c.raw_store_request(from, c.id(to), &request).await;
            if let Ok(StoreResponse::Forwarded(a)) = answer
                && a.manifest.is_some()
                && !a.chunks.is_empty()
            {
                stale = Some(a);
                break 'found;
            }
        }
    }
    let stale = stale.expect("a metadata replica answers a forwarded read");
    let new = data(450 * 1024, 2);
    c.put(1, &tenant, "near", "k", &new).await.unwrap();

    // Stale answers are refused and the current bytes served.
    let before = (count(&c, used), count(&c, refused));
    tamper_all(
        &c,
        Some(Arc::new(move |_| StoreResponse::Forwarded(stale.clone()))),
    );
    read_everywhere(&c, &tenant, &new, 2).await;
    let after = (count(&c, used), count(&c, refused));
    assert_eq!(after.0, before.0, "a stale forwarded answer was used");
    assert!(after.1 > before.1, "no stale forwarded answer was refused");

    // Bad bytes in an otherwise current answer: refused too.
    let before = after;
    tamper_all(
        &c,
        Some(Arc::new(|honest| match honest {
            StoreResponse::Forwarded(mut a) => {
                spoil(&mut a);
                StoreResponse::Forwarded(a)
            }
            StoreResponse::QuorumForwarded {
                mut answer,
                attestations,
            } => {
                spoil(&mut answer);
                StoreResponse::QuorumForwarded {
                    answer,
                    attestations,
                }
            }
            other => other,
        })),
    );
    read_everywhere(&c, &tenant, &new, 2).await;
    let after = (count(&c, used), count(&c, refused));
    assert_eq!(
        after.0, before.0,
        "a forwarded answer with bad bytes was used"
    );
    assert!(
        after.1 > before.1,
        "no corrupt forwarded answer was refused"
    );

    // Honest again: forwarded answers are used for the new version.
    tamper_all(&c, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    read_everywhere(&c, &tenant, &new, 2).await;
    assert!(
        count(&c, used) > after.0,
        "no forwarded answer was used once the replicas were honest again"
    );
    c.shutdown().await;
}

/// How much later than the relayed path the edges' own metadata reads answer in the
/// relayed-quorum tests: on loopback an edge's own quorum read would otherwise always
/// finish first, and a far edge's situation is that its own read is the slow one.
const OWN_READ_DELAY: Duration = Duration::from_millis(500);

/// What a near replica answers a relayed-quorum read with, given the honest answer.
type Relay = Arc<dyn Fn(&StoreRequest, StoreResponse) -> StoreResponse + Send + Sync>;

/// Every node answers peers' `GetMeta` late (see [`OWN_READ_DELAY`]) and its relayed
/// quorum reads through `relay`.
fn far_edges(c: &Cluster, relay: Relay) {
    for i in c.running() {
        let relay = relay.clone();
        c.node(i).storage().set_serve_tamper(Some(Arc::new(
            move |request: &StoreRequest, honest| match request {
                StoreRequest::GetMeta { .. } => ServeFault::Delay(OWN_READ_DELAY, honest),
                StoreRequest::QuorumForwardedRead { .. } => {
                    ServeFault::Answer(relay(request, honest))
                }
                _ => ServeFault::Answer(honest),
            },
        )));
    }
}

fn relayed(m: &xnode_store::StoreMetrics) -> u64 {
    m.relayed_quorums_used.get()
}

fn contradicted(m: &xnode_store::StoreMetrics) -> u64 {
    m.relayed_quorums_contradicted.get()
}

/// A far edge decides the version from the near replica's relayed, signed read quorum
/// (so it need not wait for replicas far from it), but only from answers signed for its
/// own read: a relayed quorum replayed from an earlier read is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_far_edge_decides_from_a_relayed_quorum_signed_for_its_own_read() {
    let c = Cluster::start_with(4, |cfg| cfg.storage.chunk_size = 64 * 1024).await;
    let tenant = Tenant::new();
    c.create_bucket_with_rf(0, &tenant, "near", 2).await;
    let old = data(200 * 1024, 3);
    c.put(0, &tenant, "near", "k", &old).await.unwrap();
    far_edges(&c, Arc::new(|_, honest| honest));
    read_everywhere(&c, &tenant, &old, 3).await;
    let honest = count(&c, relayed);
    eprintln!("honest: {honest} relayed quorums used");
    assert!(honest > 0, "no far read decided from a relayed quorum");

    // An honest relayed answer for one read, kept to be replayed later.
    let path = ObjectPath::new(tenant.id(), "near", "k").unwrap();
    let request = StoreRequest::QuorumForwardedRead {
        path,
        from: 0,
        max_bytes: MAX_FORWARDED_BYTES,
        nonce: [9; 16],
    };
    let mut replay = None;
    'found: for from in c.running() {
        for to in c.running().into_iter().filter(|&to| to != from) {
            if let Ok(answer @ StoreResponse::QuorumForwarded { .. }) =
                c.raw_store_request(from, c.id(to), &request).await
                && matches!(&answer, StoreResponse::QuorumForwarded { attestations, .. } if attestations.len() >= 2)
            {
                replay = Some(answer);
                break 'found;
            }
        }
    }
    let replay = replay.expect("a metadata replica relays a signed quorum");
    let new = data(150 * 1024, 4);
    c.put(1, &tenant, "near", "k", &new).await.unwrap();

    let before = count(&c, relayed);
    far_edges(&c, Arc::new(move |_, _| replay.clone()));
    read_everywhere(&c, &tenant, &new, 2).await;
    assert_eq!(
        count(&c, relayed),
        before,
        "a relayed quorum signed for another read was used"
    );
    far_edges(&c, Arc::new(|_, honest| honest));
    read_everywhere(&c, &tenant, &new, 2).await;
    assert!(
        count(&c, relayed) > before,
        "honest relays were not used again"
    );
    c.shutdown().await;
}

/// The weakness a relayed quorum has, and how an edge limits it: near replicas that sign
/// a stale version between them (two liars, or a liar and a replica that missed the write)
/// can serve a far edge an old version once; the edge's own quorum read, finishing in the
/// background, finds the newer version, and the edge takes no relayed quorum from that
/// near replica afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relayed_quorum_that_hides_a_newer_version_is_caught_and_not_taken_again() {
    let c = Cluster::start_with(4, |cfg| cfg.storage.chunk_size = 64 * 1024).await;
    let tenant = Tenant::new();
    c.create_bucket_with_rf(0, &tenant, "near", 2).await;
    let old = data(120 * 1024, 5);
    c.put(0, &tenant, "near", "k", &old).await.unwrap();
    let path = ObjectPath::new(tenant.id(), "near", "k").unwrap();
    // The entry as a metadata replica holds it (some node answers with it).
    let (mut stale_meta, mut replicas) = (None, Vec::new());
    for to in c.running() {
        let from = if to == 0 { 1 } else { 0 };
        if let Ok(StoreResponse::Meta(Some(meta))) = c
            .raw_store_request(
                from,
                c.id(to),
                &StoreRequest::GetMeta { path: path.clone() },
            )
            .await
        {
            stale_meta = Some(meta);
            replicas.push(to);
        }
    }
    assert_eq!(replicas.len(), 2, "two metadata replicas");
    let stale_meta = stale_meta.expect("a metadata replica holds the entry");
    let new = data(100 * 1024, 6);
    c.put(1, &tenant, "near", "k", &new).await.unwrap();
    // The newer version must be dated well before the reads, or missing it could be a
    // race with the write rather than hiding.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // Every node, as a near replica, signs the old entry with both replicas' keys: here
    // the test holds them, as two colluding liars would.
    let keys: Vec<xnode_types::SecretKey> = replicas
        .iter()
        .map(|&i| {
            xnode_node::identity::load_or_create_key(c.data_dir(i))
                .unwrap()
                .0
        })
        .collect();
    far_edges(
        &c,
        Arc::new(move |request, honest| match (request, honest) {
            (
                StoreRequest::QuorumForwardedRead { nonce, .. },
                StoreResponse::QuorumForwarded { answer, .. },
            ) => StoreResponse::QuorumForwarded {
                answer,
                attestations: keys
                    .iter()
                    .map(|key| {
                        MetaAttestation::sign(key, nonce, &path, Some(stale_meta.clone())).unwrap()
                    })
                    .collect(),
            },
            (_, honest) => honest,
        }),
    );
    let mut fooled = Vec::new();
    for i in c.running() {
        let got = c.get(i, &tenant, "near", "k", None).await.unwrap();
        assert!(got == new || got == old, "node {i} returned other bytes");
        if got == old {
            fooled.push(i);
        }
    }
    eprintln!("edges served the hidden version's predecessor: {fooled:?}");
    assert!(!fooled.is_empty(), "no far edge took the relayed quorum");
    c.wait_until(
        "every fooled edge to notice that its relayed quorum hid a version",
        Duration::from_secs(30),
        |c| {
            fooled
                .iter()
                .all(|&i| contradicted(c.node(i).storage().metrics()) > 0)
        },
    )
    .await;
    let used_before = count(&c, relayed);
    read_everywhere(&c, &tenant, &new, 2).await;
    assert_eq!(
        count(&c, relayed),
        used_before,
        "a relayed quorum was taken again from a near replica that hid a version"
    );
    c.shutdown().await;
}
