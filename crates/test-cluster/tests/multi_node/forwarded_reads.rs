//! Forwarded reads (issue 18, item 5): an edge that holds no replica of a bucket's
//! metadata asks the nearest replica for the object's entry, manifest and first chunks in
//! parallel with its own quorum read, and uses that answer only if the quorum agrees and
//! every byte matches its id. A near replica that answers with a stale version or bad
//! bytes costs a fallback, never a wrong byte.

use std::sync::Arc;
use std::time::Duration;

use xnode_storage::ServeFault;
use xnode_storage::proto::{MAX_FORWARDED_BYTES, StoreRequest, StoreResponse};
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
                    StoreRequest::ForwardedRead { .. } => ServeFault::Answer(tamper(honest)),
                    _ => ServeFault::Answer(honest),
                },
            ) as xnode_storage::ServeTamper
        });
        c.node(i).storage().set_serve_tamper(hook);
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
                // A chunk's first byte, or the manifest's when no chunk came.
                let byte = match a.chunks.first_mut() {
                    Some(chunk) => chunk.data.first_mut(),
                    None => a.manifest.as_mut().and_then(|m| m.first_mut()),
                };
                if let Some(byte) = byte {
                    *byte ^= 0xff;
                }
                StoreResponse::Forwarded(a)
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
