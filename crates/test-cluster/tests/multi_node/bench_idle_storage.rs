//! Benchmark: what three idle nodes cost once they hold data, with anti-entropy rounds
//! skipped when nothing changed, against the same nodes made to run a round at every check
//! (`anti_entropy_full_interval = repair_interval`), measured in the same run.
//!
//! `cargo nextest run --workspace --run-ignored only --no-capture -E 'test(idle_storage_cost)'`
//! (`XNODE_BENCH_BUCKETS` and `XNODE_BENCH_OBJECTS` per bucket change the load; defaults
//! 40 and 50, half of each bucket deleted afterwards; `XNODE_BENCH_IDLE_SECS`, default 30,
//! the idle window; `XNODE_BENCH_IDLE_BASELINE=0` skips the baseline cluster;
//! `XNODE_BENCH_REPAIR=1` then loses a node's data and times its repair against a raw copy,
//! see `repair_drill`; `XNODE_BENCH_SETTLE_SECS`, default 600, bounds the wait for
//! anti-entropy to go quiet after the deleted half was garbage-collected, before the idle
//! window; `XNODE_BENCH_PROFILE_SECS` keeps the nodes idle that much longer, unmeasured,
//! for a profiler). Prints a Markdown row each, and the cost of the first garbage-collection round
//! (which reads everything) and of the next (which rereads what changed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};

use xnode_storage::gc::GcRound;
use xnode_test_cluster::{Cluster, Tenant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of this whole process (all three in-process nodes), from /proc (in USER_HZ,
/// which Linux fixes at 100 per second for this file).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    Duration::from_millis((utime + stime) * 10)
}

fn store_rpcs_served(c: &Cluster) -> u64 {
    (0..c.len())
        .flat_map(|i| c.node(i).workers())
        .filter(|w| w.name == "rpc:store")
        .map(|w| w.progress.items_done)
        .sum()
}

struct Idle {
    cpu_per_node: f64,
    rpcs_per_node_per_sec: f64,
    rounds: u64,
    skipped: u64,
}

fn bucket_name(b: usize) -> String {
    format!("bench-{b:04}")
}

/// Entries (tombstones included) node `i` holds of `buckets` buckets, from its own table.
async fn entries_held(c: &Cluster, i: usize, tenant: &Tenant, buckets: usize) -> usize {
    let storage = c.node(i).storage();
    let mut held = 0;
    for b in 0..buckets {
        let mut after: Option<String> = None;
        loop {
            let page = storage
                .local_range(
                    &tenant.id(),
                    &bucket_name(b),
                    "",
                    after.as_deref(),
                    1000,
                    false,
                )
                .await
                .unwrap();
            held += page.entries.len();
            match page.entries.last() {
                Some(last) if page.truncated => after = Some(last.path.key.clone()),
                _ => break,
            }
        }
    }
    held
}

/// Loses node 2's data (everything in its data dir but its key), restarts it and times how
/// long repair takes to bring back every chunk and entry it held, against copying node 1's
/// data dir (as large) on the same disk, measured in the same run.
async fn repair_drill(c: &mut Cluster, tenant: &Tenant, buckets: usize) {
    for i in 0..3 {
        c.node(i).storage().collect_garbage().await.unwrap();
    }
    let chunks_before = c.node(2).storage().health().chunks_stored;
    let entries_before = entries_held(c, 2, tenant, buckets).await;

    let copy_to = tempfile::tempdir().unwrap();
    let copying = Instant::now();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(c.data_dir(1))
        .arg(copy_to.path())
        .status()
        .unwrap();
    assert!(copied.success(), "cp -a failed");
    assert!(
        std::process::Command::new("sync")
            .status()
            .unwrap()
            .success()
    );
    let raw_copy = copying.elapsed();

    c.stop(2).await;
    // A stopped node's last blocking writes may still be landing: wipe until nothing but
    // the key is left.
    for attempt in 0.. {
        let mut left = 0;
        for entry in std::fs::read_dir(c.data_dir(2)).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n == xnode_node::identity::KEY_FILE)
            {
                continue;
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            left += usize::from(removed.is_err());
        }
        if left == 0 {
            break;
        }
        assert!(attempt < 50, "node 2's data dir could not be emptied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let repairing = Instant::now();
    c.restart(2).await;
    loop {
        let chunks = c.node(2).storage().health().chunks_stored;
        if chunks >= chunks_before && entries_held(c, 2, tenant, buckets).await >= entries_before {
            break;
        }
        assert!(
            repairing.elapsed() < Duration::from_secs(3600),
            "node 2 got {chunks} of {chunks_before} chunks back within an hour"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let repair = repairing.elapsed();
    println!(
        "repair of a lost data dir ({chunks_before} chunks, {entries_before} entries): {:.1} s; \
         raw copy of a node's data dir (cp -a and sync): {:.1} s; ratio {:.1}",
        repair.as_secs_f64(),
        raw_copy.as_secs_f64(),
        repair.as_secs_f64() / raw_copy.as_secs_f64().max(1e-3)
    );
}

/// Runs a garbage-collection round on each node and prints what they cost together.
async fn collect_everywhere(c: &Cluster, which: &str) {
    let rpcs_before = store_rpcs_served(c);
    let cpu_before = process_cpu();
    let collecting = Instant::now();
    let mut total = GcRound::default();
    for i in 0..3 {
        let round = c.node(i).storage().collect_garbage_round().await.unwrap();
        total.buckets += round.buckets;
        total.buckets_rescanned += round.buckets_rescanned;
        total.entries_read += round.entries_read;
        total.manifests_read += round.manifests_read;
        total.removed += round.removed;
    }
    eprintln!(
        "the {which} garbage-collection round on each node: {:.1} s, {:.1} CPU-s and {} store RPCs in all; \
         {} buckets listed, {} reread, {} entries and {} manifests read, {} chunks removed",
        collecting.elapsed().as_secs_f64(),
        (process_cpu() - cpu_before).as_secs_f64(),
        store_rpcs_served(c) - rpcs_before,
        total.buckets,
        total.buckets_rescanned,
        total.entries_read,
        total.manifests_read,
        total.removed,
    );
}

async fn measure(
    label: &str,
    every_check: bool,
    repair: bool,
    buckets: usize,
    objects: usize,
    seconds: u64,
) -> Idle {
    let mut c = Cluster::start_with(3, move |cfg| {
        cfg.storage.repair_interval = Duration::from_secs(1);
        // Garbage collection removes the chunks only deleted objects referenced before
        // the idle window (and before the drill counts what a node must get back); they
        // are younger than the default grace of an hour here.
        cfg.storage.gc_grace = Duration::from_secs(1);
        if every_check {
            cfg.storage.anti_entropy_full_interval = Duration::from_secs(1);
        }
    })
    .await;
    let tenant = Tenant::new();
    let loading = Instant::now();
    for b in 0..buckets {
        c.create_bucket(b % 3, &tenant, &bucket_name(b)).await;
    }
    // Writes, then deletes of every other object, 32 at a time through all three nodes.
    let all: Vec<(usize, usize)> = (0..buckets)
        .flat_map(|b| (0..objects).map(move |o| (b, o)))
        .collect();
    stream::iter(all.iter().copied())
        .map(|(b, o)| {
            let (c, tenant) = (&c, &tenant);
            async move {
                let body = format!("{b}/{o}");
                c.put(
                    o % 3,
                    tenant,
                    &bucket_name(b),
                    &format!("o{o}"),
                    body.as_bytes(),
                )
                .await
                .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    stream::iter(all.iter().copied().filter(|(_, o)| o % 2 == 0))
        .map(|(b, o)| {
            let (c, tenant) = (&c, &tenant);
            async move {
                c.node(o % 3)
                    .storage()
                    .delete_object(&tenant.id(), &bucket_name(b), &format!("o{o}"))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "loaded {} objects in {buckets} buckets and deleted half in {:.0} s",
        all.len(),
        loading.elapsed().as_secs_f64()
    );
    // Let background copies and the first rounds finish.
    c.wait_until("replicas in sync", Duration::from_secs(300), |c| {
        (0..3).all(|i| {
            let h = c.node(i).storage().health();
            h.under_replicated_chunks == 0 && h.under_replicated_objects == 0
        })
    })
    .await;
    // The deleted half's chunks are garbage: collect them now, as a round would within
    // `gc_interval`, so the idle window measures a settled network, not that work. The
    // round's own cost is reported: the first reads every holder's entries and every
    // manifest, as any round after a restart does.
    collect_everywhere(&c, "first").await;
    // What every later round costs (each node runs one per `gc_interval`): it rereads
    // only what changed since the last one, and collects what the first left (chunks
    // still in their grace period, copies that landed late).
    tokio::time::sleep(Duration::from_secs(2)).await;
    collect_everywhere(&c, "next").await;
    // Then wait until every node's anti-entropy skips a round (nothing changed since its
    // last clean one), at most `XNODE_BENCH_SETTLE_SECS` (the baseline never skips).
    let settling = Instant::now();
    let settle_limit = if every_check {
        Duration::ZERO
    } else {
        Duration::from_secs(env("XNODE_BENCH_SETTLE_SECS", 600) as u64)
    };
    let skipped_at_start: Vec<u64> = (0..3)
        .map(|i| c.node(i).storage().health().anti_entropy_skipped)
        .collect();
    while settling.elapsed() < settle_limit
        && !(0..3).all(|i| c.node(i).storage().health().anti_entropy_skipped > skipped_at_start[i])
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "anti-entropy quiet on every node after {:.0} s (limit {} s)",
        settling.elapsed().as_secs_f64(),
        settle_limit.as_secs()
    );

    // A node's first collection of its peers' audit logs (one `audit_collect_interval`
    // after it starts) asks each peer for every epoch reputation counts, once: closed
    // epochs never change, so later collections ask only for newly closed ones. That
    // start-up burst is not idle work; the window begins after it.
    let collecting = Instant::now();
    while collecting.elapsed() < Duration::from_secs(120)
        && !(0..3).all(|i| {
            c.node(i)
                .workers()
                .iter()
                .any(|w| w.name == "storage-reputation" && w.steps > 0)
        })
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let health = |c: &Cluster| -> (u64, u64) {
        (0..3)
            .map(|i| c.node(i).storage().health())
            .fold((0, 0), |(r, s), h| {
                (r + h.anti_entropy_rounds, s + h.anti_entropy_skipped)
            })
    };
    let (rounds0, skipped0) = health(&c);
    let rpcs0 = store_rpcs_served(&c);
    let cpu0 = process_cpu();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu0).as_secs_f64();
    let rpcs = store_rpcs_served(&c) - rpcs0;
    let (rounds1, skipped1) = health(&c);
    let idle = Idle {
        cpu_per_node: cpu / elapsed / 3.0,
        rpcs_per_node_per_sec: rpcs as f64 / elapsed / 3.0,
        rounds: rounds1 - rounds0,
        skipped: skipped1 - skipped0,
    };
    // The row first: the drill that follows takes long and must not lose it.
    println!(
        "| {label} | {:.2} % | {:.1} | {} | {} |",
        idle.cpu_per_node * 100.0,
        idle.rpcs_per_node_per_sec,
        idle.rounds,
        idle.skipped
    );
    // Idle longer, unmeasured, for a profiler to attach (`XNODE_BENCH_PROFILE_SECS`).
    let profile = env("XNODE_BENCH_PROFILE_SECS", 0) as u64;
    if profile > 0 {
        eprintln!(
            "idle {profile} s more for a profiler (pid {})",
            std::process::id()
        );
        tokio::time::sleep(Duration::from_secs(profile)).await;
    }
    if repair {
        repair_drill(&mut c, &tenant, buckets).await;
    }
    c.shutdown().await;
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run explicitly, see the module docs"]
async fn idle_storage_cost() {
    let buckets = env("XNODE_BENCH_BUCKETS", 40);
    let objects = env("XNODE_BENCH_OBJECTS", 50);
    let seconds = env("XNODE_BENCH_IDLE_SECS", 30) as u64;
    let baseline = env("XNODE_BENCH_IDLE_BASELINE", 1) != 0;
    let repair = env("XNODE_BENCH_REPAIR", 0) != 0;
    println!(
        "{buckets} buckets x {objects} objects (half deleted), 3 in-process nodes, {seconds} s idle"
    );
    println!(
        "| anti-entropy | CPU per node | store RPCs per node per s | rounds | checks skipped |"
    );
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    let configs = [
        ("a round at every check (baseline)", true),
        ("rounds only on change", false),
    ];
    for (label, every_check) in configs.into_iter().filter(|(_, every)| baseline || !every) {
        let idle = measure(
            label,
            every_check,
            repair && !every_check,
            buckets,
            objects,
            seconds,
        )
        .await;
        rows.push(idle);
    }
    if let [baseline, skipping] = &rows[..] {
        println!(
            "CPU ratio (rounds only on change / every check): {:.2}",
            skipping.cpu_per_node / baseline.cpu_per_node.max(1e-9)
        );
    }
}
