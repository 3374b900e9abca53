//! The physical limit of a 3-replica PUT on this machine, measured with the same code the
//! data path runs, so a benchmark can report an upload as a fraction of it in the same run.
//!
//! ```text
//! cargo run --release -p xnode-storage --example put_limits -- DIR SIZE_MIB [CHUNK_KIB]
//! ```
//!
//! A PUT of `SIZE_MIB` with three replicas has to do at least this much work:
//!
//! - **CPU:** MD5 of the plaintext (the S3 ETag), BLAKE3 of the plaintext (the manifest's
//!   whole-object hash), XChaCha20-Poly1305 sealing of every chunk, and BLAKE3 of every
//!   sealed chunk four times (its id at the edge, and once more on each replica, which must
//!   not trust the sender). Each is timed alone on one core; the CPU limit assumes all of
//!   it spreads perfectly over every core, which no real pipeline does.
//! - **Disk:** three copies of the sealed bytes written and fsynced, by three writers at
//!   once (the three replicas), each as one file with one fsync at the end: the cheapest way
//!   the disk can make three copies durable.
//!
//! The limit is the slower of the two, assuming CPU and disk overlap perfectly: a stricter
//! bar than any real upload can reach. For reference it also times the layout Xnode uses
//! (one file per chunk, each fsynced with its directory). It prints a human summary on
//! stderr and one JSON line on stdout. Files go under `DIR` (put it on the disk the nodes
//! use) and are removed afterwards.

use std::error::Error;
use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use md5::Digest as _;
use xnode_store::{ChunkId, ObjectKey, random_nonce_prefix, seal_chunk};

const REPLICAS: usize = 3;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: put_limits DIR SIZE_MIB [CHUNK_KIB]";
    let dir = PathBuf::from(args.get(1).ok_or(usage)?);
    let size_mib: usize = args.get(2).ok_or(usage)?.parse()?;
    let chunk_kib: usize = match args.get(3) {
        Some(arg) => arg.parse()?,
        None => 1024,
    };
    let chunk_size = chunk_kib.checked_mul(1024).ok_or("chunk size too large")?;
    let size = size_mib.checked_mul(1024 * 1024).ok_or("size too large")?;
    if chunk_size == 0 || size == 0 {
        return Err(usage.into());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Random bytes, so nothing compresses or dedupes; made with BLAKE3's XOF (fast).
    let mut plain = vec![0u8; size];
    blake3::Hasher::new()
        .update(&rand::random::<[u8; 32]>())
        .finalize_xof()
        .fill(&mut plain);

    let md5 = timed(|| {
        black_box(md5::Md5::digest(&plain));
    });
    let blake3_plain = timed(|| {
        black_box(blake3::hash(&plain));
    });
    let key = ObjectKey::generate();
    let prefix = random_nonce_prefix();
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    let seal = timed_result(|| {
        for (index, chunk) in plain.chunks(chunk_size).enumerate() {
            sealed.push(seal_chunk(&key, &prefix, index as u64, chunk)?);
        }
        Ok(())
    })?;
    drop(plain);
    let chunk_ids = timed(|| {
        for chunk in &sealed {
            black_box(ChunkId::of(chunk));
        }
    });
    let sealed_bytes: usize = sealed.iter().map(Vec::len).sum();
    let cpu = md5 + blake3_plain + seal + chunk_ids * (1 + REPLICAS as u32);
    let cpu_limit = cpu / cores as u32;

    let work = dir.join(format!("put-limits-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let result = measure_disk(&work, &sealed);
    let _ = fs::remove_dir_all(&work);
    let (disk_one_file, disk_chunk_files) = result?;

    let limit = cpu_limit.max(disk_one_file);
    let mib = size_mib as f64;
    let rate = |d: Duration| mib / d.as_secs_f64().max(1e-9);
    eprintln!(
        "{size_mib} MiB in {} chunks of {chunk_kib} KiB, {cores} cores:",
        sealed.len()
    );
    eprintln!(
        "  one core: MD5 {:.0} MiB/s, BLAKE3 {:.0} MiB/s, XChaCha20-Poly1305 {:.0} MiB/s, chunk ids {:.0} MiB/s",
        rate(md5),
        rate(blake3_plain),
        rate(seal),
        rate(chunk_ids)
    );
    eprintln!(
        "  CPU work {:.2} s on one core: {:.0} MiB/s over {cores} cores",
        cpu.as_secs_f64(),
        rate(cpu_limit)
    );
    eprintln!(
        "  disk, {REPLICAS} copies fsynced: {:.0} MiB/s as one file each, {:.0} MiB/s as one file per chunk",
        rate(disk_one_file),
        rate(disk_chunk_files)
    );
    eprintln!(
        "  limit: {:.0} MiB/s ({})",
        rate(limit),
        if disk_one_file >= cpu_limit {
            "disk"
        } else {
            "CPU"
        }
    );
    println!(
        "{{\"size_mib\":{size_mib},\"sealed_bytes\":{sealed_bytes},\"cores\":{cores},\
         \"md5_s\":{:.4},\"blake3_s\":{:.4},\"seal_s\":{:.4},\"chunk_ids_s\":{:.4},\
         \"cpu_s\":{:.4},\"cpu_limit_mibs\":{:.1},\"disk_mibs\":{:.1},\
         \"disk_chunk_files_mibs\":{:.1},\"limit_mibs\":{:.1},\"bound\":\"{}\"}}",
        md5.as_secs_f64(),
        blake3_plain.as_secs_f64(),
        seal.as_secs_f64(),
        chunk_ids.as_secs_f64(),
        cpu.as_secs_f64(),
        rate(cpu_limit),
        rate(disk_one_file),
        rate(disk_chunk_files),
        rate(limit),
        if disk_one_file >= cpu_limit {
            "disk"
        } else {
            "cpu"
        }
    );
    Ok(())
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn timed_result(
    f: impl FnOnce() -> Result<(), Box<dyn Error>>,
) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// Times three concurrent writers making `chunks` durable, first as one file each, then as
/// one file per chunk (each fsynced, and its directory after it).
fn measure_disk(work: &Path, chunks: &[Vec<u8>]) -> Result<(Duration, Duration), Box<dyn Error>> {
    let one_file = in_parallel(work, "one", |dir| {
        let path = dir.join("copy");
        let mut file = File::create(&path)?;
        for chunk in chunks {
            file.write_all(chunk)?;
        }
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })?;
    let chunk_files = in_parallel(work, "chunks", |dir| {
        for (index, chunk) in chunks.iter().enumerate() {
            let mut file = File::create(dir.join(format!("{index}")))?;
            file.write_all(chunk)?;
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })?;
    Ok((one_file, chunk_files))
}

/// Runs `write` for each replica at once, each in its own directory, and times them all.
fn in_parallel(
    work: &Path,
    name: &str,
    write: impl Fn(&Path) -> std::io::Result<()> + Sync,
) -> Result<Duration, Box<dyn Error>> {
    let dirs: Vec<PathBuf> = (0..REPLICAS)
        .map(|i| work.join(format!("{name}-{i}")))
        .collect();
    for dir in &dirs {
        fs::create_dir_all(dir)?;
    }
    let start = Instant::now();
    let results: Vec<std::io::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs.iter().map(|dir| scope.spawn(|| write(dir))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("writer panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    for result in results {
        result?;
    }
    for dir in &dirs {
        fs::remove_dir_all(dir)?;
    }
    Ok(elapsed)
}
