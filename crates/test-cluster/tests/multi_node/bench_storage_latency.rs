//! Benchmark: the latency of small object writes, deletes and reads through one edge of a
//! 3-node in-process cluster (W = R = 2 of 3). Run with
//! `cargo nextest run --workspace -E 'test(/^bench_storage_latency::/)' --run-ignored all --no-capture`;
//! it prints the median and 90th percentile of each operation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xnode_test_cluster::{Cluster, Tenant};

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    eprintln!(
        "{name:>8}: median {:>7.2} ms, p90 {:>7.2} ms ({} runs)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        samples.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn small_object_latency() {
    let c = Cluster::start(3).await;
    c.wait_converged(Duration::from_secs(30)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "bench").await;
    let body = vec![7u8; 4096];
    // Warm up connections.
    for i in 0..20 {
        c.put(0, &tenant, "bench", &format!("warm{i}"), &body)
            .await
            .unwrap();
    }
    let (mut puts, mut overwrites, mut gets, mut deletes) = (vec![], vec![], vec![], vec![]);
    for i in 0..200 {
        let key = format!("k{i}");
        let t = Instant::now();
        c.put(0, &tenant, "bench", &key, &body).await.unwrap();
        puts.push(t.elapsed());
        let t = Instant::now();
        c.put(0, &tenant, "bench", &key, &body).await.unwrap();
        overwrites.push(t.elapsed());
        let t = Instant::now();
        c.get(0, &tenant, "bench", &key, None).await.unwrap();
        gets.push(t.elapsed());
        let t = Instant::now();
        c.node(0)
            .storage()
            .delete_object(&tenant.id(), "bench", &key)
            .await
            .unwrap();
        deletes.push(t.elapsed());
    }
    summary("put", puts);
    summary("overwrite", overwrites);
    summary("get", gets);
    summary("delete", deletes);
    c.shutdown().await;
}

/// Store RPCs served to peers by every node so far.
fn store_rpcs_served(c: &Cluster) -> u64 {
    (0..c.len())
        .flat_map(|i| c.node(i).workers())
        .filter(|w| w.name == "rpc:store")
        .map(|w| w.progress.items_done)
        .sum()
}

/// How one way of listing a whole bucket page by page fared.
#[derive(Clone, Copy)]
struct Listing {
    seconds: f64,
    rpcs: u64,
    keys: usize,
}

/// The median run, or nothing for a way not measured.
fn median(mut runs: Vec<Listing>) -> Option<Listing> {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    runs.get(runs.len() / 2).copied()
}

/// Benchmark: listing a bucket of `XNODE_BENCH_LIST_KEYS` keys (default 5,000) in pages of
/// 1,000 on 4 nodes (rf 3, R = 2). Through an edge that holds a replica of the bucket:
/// range listings as they run (the edge's own table, agreed by the other replicas'
/// digests), range listings made to merge the replicas' entries (the other replicas say
/// their digest differs, as when one missed a write), listing by key reads (a quorum read
/// per listed key, the path before store protocol 5), and reading the same entries from
/// the edge's own table; and through the node that holds no replica (one replica's
/// entries, agreed by the others' digests). Interleaved rounds, medians.
/// Run with
/// `cargo nextest run --workspace --run-ignored only --no-capture -E 'test(listing_cost)'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn listing_cost() {
    use futures::StreamExt;
    let keys: usize = std::env::var("XNODE_BENCH_LIST_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    // More rounds give a profiler more to see; the medians are the same.
    let rounds: usize = std::env::var("XNODE_BENCH_LIST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    const PAGE: usize = 1_000;
    let c = Cluster::start(4).await;
    c.wait_converged(Duration::from_secs(30)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "listed").await;
    let replicas = c
        .node(0)
        .storage()
        .metadata_replicas(&tenant.id(), "listed");
    let index_of = |id: &xnode_types::NodeId| (0..c.len()).find(|&i| c.id(i) == *id).unwrap();
    let edge = index_of(&replicas[0]);
    let outside = (0..c.len())
        .find(|&i| !replicas.contains(&c.id(i)))
        .unwrap();
    let loading = Instant::now();
    futures::stream::iter(0..keys)
        .map(|i| {
            let (c, tenant) = (&c, &tenant);
            async move {
                let key = format!("dir{}/key{i:07}", i % 10);
                c.put(i % 4, tenant, "listed", &key, b"x").await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "loaded {keys} keys in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    // Let the writes' background copies, read repairs and anti-entropy rounds finish
    // before measuring: until no store RPC is served for 2 s (an idle network serves
    // none), at most 2 minutes.
    let settling = Instant::now();
    let mut served = store_rpcs_served(&c);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = store_rpcs_served(&c);
        if now == served || settling.elapsed() > Duration::from_secs(120) {
            break;
        }
        served = now;
    }
    eprintln!(
        "settled {:.1} s after the load",
        settling.elapsed().as_secs_f64()
    );
    let storage = c.node(edge).storage();
    let id = tenant.id();

    // A quorum read per key is the old path, thousands of times slower per key; above
    // 10,000 keys it would take most of the run, so it is measured only below that.
    let default_ways: &[usize] = if keys > 10_000 {
        &[0, 3, 4, 2]
    } else {
        &[0, 3, 4, 1, 2]
    };
    // `XNODE_BENCH_LIST_WAYS=4,2` measures only those ways (numbered as in the match
    // below), so a profiler sees one path.
    let ways: Vec<usize> = std::env::var("XNODE_BENCH_LIST_WAYS")
        .ok()
        .map(|v| v.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .unwrap_or_else(|| default_ways.to_vec());
    let ways = ways.as_slice();
    let (mut ranges, mut by_key, mut local, mut merged, mut vouched) =
        (vec![], vec![], vec![], vec![], vec![]);
    let differing: xnode_storage::ServeTamper =
        std::sync::Arc::new(|request, honest| match request {
            xnode_storage::proto::StoreRequest::MetaRangeDigest { .. } => {
                xnode_storage::ServeFault::Answer(xnode_storage::proto::StoreResponse::RangeDigest(
                    Default::default(),
                ))
            }
            _ => xnode_storage::ServeFault::Answer(honest),
        });
    for _ in 0..rounds {
        for &way in ways {
            for i in (0..c.len()).filter(|&i| i != edge) {
                c.node(i)
                    .storage()
                    .set_serve_tamper((way == 3).then(|| differing.clone()));
            }
            let rpcs = store_rpcs_served(&c);
            let started = Instant::now();
            let mut listed = 0usize;
            let mut after: Option<String> = None;
            loop {
                let page: Vec<String> = match way {
                    0 | 3 => storage
                        .list_objects(&id, "listed", "", after.as_deref(), PAGE)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|m| m.path.key)
                        .collect(),
                    4 => c
                        .node(outside)
                        .storage()
                        .list_objects(&id, "listed", "", after.as_deref(), PAGE)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|m| m.path.key)
                        .collect(),
                    1 => storage
                        .list_objects_by_key_reads(&id, "listed", "", after.as_deref(), PAGE)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|m| m.path.key)
                        .collect(),
                    2 => storage
                        .local_range(&id, "listed", "", after.as_deref(), PAGE, false)
                        .await
                        .unwrap()
                        .entries
                        .into_iter()
                        .filter(|m| m.info.is_some())
                        .map(|m| m.path.key)
                        .collect(),
                    _ => unreachable!("no such way"),
                };
                listed += page.len();
                let full = page.len() == PAGE;
                after = page.into_iter().last();
                if !full {
                    break;
                }
            }
            let run = Listing {
                seconds: started.elapsed().as_secs_f64(),
                rpcs: store_rpcs_served(&c) - rpcs,
                keys: listed,
            };
            assert_eq!(run.keys, keys, "every key listed");
            [
                &mut ranges,
                &mut by_key,
                &mut local,
                &mut merged,
                &mut vouched,
            ][way]
                .push(run);
        }
    }
    // The first merged listing finds the seals of the entries this edge wrote itself
    // unverified (it verified the rest as a replica when they arrived); later rounds find
    // every seal remembered (see `xnode_store::VerifiedSeals`).
    let first = |runs: &[Listing]| runs.first().map_or(f64::NAN, |r| r.seconds * 1e3);
    eprintln!(
        "first listings: {:.0} ms agreed, {:.0} ms merged, {:.0} ms without a replica",
        first(&ranges),
        first(&merged),
        first(&vouched)
    );
    let metrics = storage.metrics();
    eprintln!(
        "rounds through the edge: {} agreed by digests, {} merged",
        metrics.listing_rounds_agreed.get(),
        metrics.listing_rounds_merged.get()
    );
    let (ranges, by_key, local, merged, vouched) = (
        median(ranges),
        median(by_key),
        median(local),
        median(merged),
        median(vouched),
    );
    let pages = keys.div_ceil(PAGE) as f64;
    eprintln!("| way | keys | total | per page | store RPCs served per page |");
    eprintln!("|---|---:|---:|---:|---:|");
    let rows = [
        ("ranges: the edge's table, agreed by digests", ranges),
        ("ranges: the replicas' entries merged", merged),
        (
            "ranges via an edge without a replica: one replica's entries, agreed by digests",
            vouched,
        ),
        ("a quorum read per key (before)", by_key),
        ("the edge's own table, no network", local),
    ];
    for (name, run) in rows.into_iter().filter_map(|(n, r)| Some((n, r?))) {
        eprintln!(
            "| {name} | {} | {:.0} ms | {:.1} ms | {:.1} |",
            run.keys,
            run.seconds * 1e3,
            run.seconds * 1e3 / pages,
            run.rpcs as f64 / pages
        );
    }
    let seconds = |run: Option<Listing>| run.map_or(f64::NAN, |r| r.seconds);
    if by_key.is_some() {
        eprintln!(
            "range listing: {:.1}x faster than key reads",
            seconds(by_key) / seconds(ranges)
        );
    }
    eprintln!(
        "range listing: {:.2}x the local table ({:.2}x when the replicas' entries are merged, {:.2}x through an edge without a replica)",
        seconds(ranges) / seconds(local),
        seconds(merged) / seconds(local),
        seconds(vouched) / seconds(local)
    );
    c.shutdown().await;
}
