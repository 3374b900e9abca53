//! Benchmark: what validating a registry entry from a peer costs, against decoding it alone.
//!
//! ```text
//! cargo run --release -p xnode-registry --example bench_entry_validation [ENTRIES]
//! ```
//!
//! Registry entries (node records, tenants' deployments, jobs, claims) arrive by gossip
//! and by anti-entropy. Each is decoded, its owner's Ed25519 signature over the key, the
//! value's BLAKE3 hash and the clock is verified, the write policy is checked, and it is
//! merged and persisted. This times, on one core and in the same run, decoding alone (the
//! baseline), decoding and verifying, the whole `apply_remote_bytes` (verification, policy,
//! merge and a database write per entry), the same for batches as anti-entropy applies
//! them (one database write per batch), a duplicate, and signing an entry. It reports each step as a
//! multiple of the baseline measured in the same run.

use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xnode_db::Db;
use xnode_registry::{DefaultPolicy, Entry, MAX_ENTRY_BYTES, Registry, RegistryMetrics};
use xnode_types::{HlcClock, SecretKey};

const DEFAULT_ENTRIES: usize = 2_000;
/// About the size of a deployment's or a job's record.
const VALUE_BYTES: usize = 400;

fn main() -> Result<(), Box<dyn Error>> {
    let count = match std::env::args().nth(1) {
        Some(n) => n.parse::<usize>()?.clamp(1, 100_000),
        None => DEFAULT_ENTRIES,
    };
    let clock = HlcClock::new();
    let tenants: Vec<SecretKey> = (0..16).map(|_| SecretKey::generate()).collect();
    let mut entries = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let tenant = &tenants[i % tenants.len()];
        let key = format!("tenant/{}/deploy/bench-{i}", tenant.public().to_hex());
        let value = vec![u8::try_from(i % 251).unwrap_or(0); VALUE_BYTES];
        entries.push(Entry::sign(tenant, key, Some(value), clock.now())?);
    }
    let sign = started.elapsed();
    let encoded: Vec<Vec<u8>> = entries
        .iter()
        .map(xnode_wire::encode)
        .collect::<Result<_, _>>()?;
    let entry_bytes = encoded.first().map_or(0, Vec::len);

    let decode = time(|| {
        for bytes in &encoded {
            black_box(xnode_wire::decode::<Entry>(bytes, MAX_ENTRY_BYTES)?);
        }
        Ok(())
    })?;
    let verify = time(|| {
        for bytes in &encoded {
            let entry = xnode_wire::decode::<Entry>(bytes, MAX_ENTRY_BYTES)?;
            if !entry.verify() {
                return Err("an entry signed here does not verify".into());
            }
        }
        Ok(())
    })?;

    let dir = tempfile::tempdir()?;
    let registry = Registry::open(
        Db::open(&dir.path().join("registry.redb"))?,
        Arc::new(HlcClock::new()),
        Box::new(DefaultPolicy),
        RegistryMetrics::default(),
    )?;
    let apply = time(|| {
        for bytes in &encoded {
            black_box(registry.apply_remote_bytes(bytes)?);
        }
        Ok(())
    })?;
    let batched_dir = tempfile::tempdir()?;
    let batched = Registry::open(
        Db::open(&batched_dir.path().join("registry.redb"))?,
        Arc::new(HlcClock::new()),
        Box::new(DefaultPolicy),
        RegistryMetrics::default(),
    )?;
    let apply_batched = time(|| {
        for batch in entries.chunks(256) {
            for result in batched.apply_remote_many(batch.to_vec()) {
                black_box(result?);
            }
        }
        Ok(())
    })?;
    let apply_again = time(|| {
        for bytes in &encoded {
            black_box(registry.apply_remote_bytes(bytes)?);
        }
        Ok(())
    })?;

    println!("registry entries: {count} tenant entries of {entry_bytes} bytes, one core");
    println!("| step | per entry | x decode |");
    println!("|---|---:|---:|");
    for (step, total) in [
        ("decode (baseline)", decode),
        ("decode + verify the signature", verify),
        (
            "apply_remote_bytes, news (verify, policy, merge, persist)",
            apply,
        ),
        (
            "apply_remote_many, batches of 256 (an anti-entropy pull), news",
            apply_batched,
        ),
        ("apply_remote_bytes, a duplicate", apply_again),
        ("sign an entry", sign),
    ] {
        println!(
            "| {step} | {:.1} µs | {:.1} |",
            total.as_secs_f64() * 1e6 / count as f64,
            total.as_secs_f64() / decode.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// Times one pass of `step`.
fn time(mut step: impl FnMut() -> Result<(), Box<dyn Error>>) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    step()?;
    Ok(started.elapsed())
}
