//! Unit tests of the chunk store: puts and reads, verification and quarantine, scrubbing,
//! listing, recovery at reopen and concurrent use.

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    store: ChunkStore,
    metrics: StoreMetrics,
}

fn open_in(dir: &Path) -> (ChunkStore, StoreMetrics) {
    let db = Db::open(&dir.join("node.redb")).unwrap();
    let metrics = StoreMetrics::default();
    let store = ChunkStore::open(&dir.join("chunks"), db, metrics.clone()).unwrap();
    (store, metrics)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, metrics) = open_in(dir.path());
    Fixture {
        dir,
        store,
        metrics,
    }
}

fn chunk(n: u32) -> (ChunkId, Vec<u8>) {
    let bytes = format!("chunk number {n}").repeat(10).into_bytes();
    (ChunkId::of(&bytes), bytes)
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tmp_files(&path));
        } else if path.to_string_lossy().ends_with(".tmp") {
            out.push(path);
        }
    }
    out
}

#[test]
fn chunk_id_hex_round_trip_and_errors() {
    let (id, _) = chunk(1);
    assert_eq!(ChunkId::from_hex(&id.to_hex()).unwrap(), id);
    assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
    assert_eq!(format!("{id}"), id.to_hex());
    assert!(format!("{id:?}").len() < 30);
    assert!(ChunkId::from_hex("abc").is_err());
    assert!(ChunkId::from_hex(&"zz".repeat(32)).is_err());
    assert!(ChunkId::from_hex(&"a".repeat(10_000)).is_err());
}

#[test]
fn put_get_round_trip_and_stats() {
    let f = fixture();
    let (id, bytes) = chunk(1);
    assert_eq!(f.store.get(&id).unwrap(), None);
    assert!(!f.store.contains(&id).unwrap());
    assert_eq!(f.store.put(&id, &bytes).unwrap(), PutOutcome::Stored);
    assert!(f.store.contains(&id).unwrap());
    assert_eq!(f.store.get(&id).unwrap().as_deref(), Some(&bytes[..]));
    assert_eq!(
        f.store.stats(),
        ChunkStats {
            chunks: 1,
            bytes: bytes.len() as u64
        }
    );
    assert_eq!(f.metrics.chunks_stored.get(), 1);
    assert_eq!(f.metrics.chunk_writes.get(), 1);
    assert_eq!(f.metrics.chunk_reads.get(), 1);
    assert!(f.store.path_of(&id).exists());

    assert!(f.store.remove(&id).unwrap());
    assert!(!f.store.remove(&id).unwrap());
    assert_eq!(f.store.get(&id).unwrap(), None);
    assert_eq!(f.store.stats(), ChunkStats::default());
    assert_eq!(f.metrics.bytes_stored.get(), 0);
}

#[test]
fn empty_chunk_is_a_chunk() {
    let f = fixture();
    let id = ChunkId::of(b"");
    assert_eq!(f.store.put(&id, b"").unwrap(), PutOutcome::Stored);
    assert_eq!(f.store.get(&id).unwrap(), Some(Vec::new()));
}

#[test]
fn put_is_idempotent() {
    let f = fixture();
    let (id, bytes) = chunk(2);
    assert_eq!(f.store.put(&id, &bytes).unwrap(), PutOutcome::Stored);
    assert_eq!(
        f.store.put(&id, &bytes).unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert_eq!(f.store.stats().chunks, 1);
    assert_eq!(f.metrics.chunk_writes.get(), 1);
    assert!(tmp_files(f.store.dir()).is_empty());
}

#[test]
fn wrong_bytes_are_a_hash_mismatch() {
    let f = fixture();
    let (id, _) = chunk(3);
    let err = f.store.put(&id, b"something else").unwrap_err();
    match err {
        StoreError::HashMismatch { expected, actual } => {
            assert_eq!(expected, id);
            assert_eq!(actual, ChunkId::of(b"something else"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!f.store.contains(&id).unwrap());
    assert!(!f.store.path_of(&id).exists());
}

#[test]
fn rot_on_disk_is_caught_quarantined_and_scrubbed() {
    let f = fixture();
    let (good, good_bytes) = chunk(10);
    let (bad, bad_bytes) = chunk(11);
    let (bad2, bad2_bytes) = chunk(12);
    for (id, bytes) in [
        (&good, &good_bytes),
        (&bad, &bad_bytes),
        (&bad2, &bad2_bytes),
    ] {
        f.store.put(id, bytes).unwrap();
    }
    for id in [&bad, &bad2] {
        let path = f.store.path_of(id);
        let mut on_disk = fs::read(&path).unwrap();
        on_disk[5] ^= 0x01;
        fs::write(&path, on_disk).unwrap();
    }

    // A read notices, quarantines and forgets the chunk.
    assert!(matches!(f.store.get(&bad), Err(StoreError::Corrupt { id }) if id == bad));
    assert!(!f.store.contains(&bad).unwrap());
    assert!(!f.store.path_of(&bad).exists());
    let quarantined: Vec<_> = fs::read_dir(f.store.dir().join(QUARANTINE_DIR))
        .unwrap()
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(f.store.get(&bad).unwrap(), None);
    assert_eq!(f.metrics.corrupt_chunks.get(), 1);

    // The scrubber finds the other one without anyone reading it.
    let batch = f.store.scrub_batch(None, u64::MAX).unwrap();
    assert_eq!(batch.corrupt, vec![bad2]);
    assert_eq!(batch.checked, 2);
    assert_eq!(batch.next_cursor, None);
    assert!(!f.store.contains(&bad2).unwrap());
    assert_eq!(f.metrics.corrupt_chunks.get(), 2);
    assert_eq!(
        f.store.stats(),
        ChunkStats {
            chunks: 1,
            bytes: good_bytes.len() as u64
        }
    );

    // A repair puts the right bytes back.
    assert_eq!(f.store.put(&bad, &bad_bytes).unwrap(), PutOutcome::Stored);
    assert_eq!(f.store.get(&bad).unwrap(), Some(bad_bytes));
}

#[test]
fn scrub_walks_in_batches_and_wraps() {
    let f = fixture();
    let mut ids: Vec<ChunkId> = (0..5)
        .map(|n| {
            let (id, bytes) = chunk(100 + n);
            f.store.put(&id, &bytes).unwrap();
            id
        })
        .collect();
    ids.sort();
    let mut cursor = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        // A budget of one byte checks exactly one chunk per batch.
        let batch = f.store.scrub_batch(cursor.as_ref(), 1).unwrap();
        assert_eq!(batch.checked, 1);
        assert!(batch.corrupt.is_empty());
        seen.push(batch.next_cursor);
        cursor = batch.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    let expected: Vec<_> = ids[..4].iter().copied().map(Some).chain([None]).collect();
    assert_eq!(seen, expected);
    assert_eq!(f.metrics.scrubbed_chunks.get(), 5);

    let empty = fixture();
    assert_eq!(
        empty.store.scrub_batch(None, 100).unwrap(),
        ScrubBatch::default()
    );
}

#[test]
fn list_is_ordered_and_paged() {
    let f = fixture();
    let mut ids: Vec<ChunkId> = (0..7)
        .map(|n| {
            let (id, bytes) = chunk(200 + n);
            f.store.put(&id, &bytes).unwrap();
            id
        })
        .collect();
    ids.sort();
    let first = f.store.list(None, 3).unwrap();
    assert_eq!(
        first.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids[..3]
    );
    let rest = f.store.list(Some(&ids[2]), 100).unwrap();
    assert_eq!(rest.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids[3..]);
    assert!(f.store.list(Some(&ids[6]), 100).unwrap().is_empty());
    assert!(f.store.list(None, 0).unwrap().is_empty());
    assert!(first.iter().all(|(_, size)| *size == 160));
}

#[test]
fn reopen_keeps_index_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, kept_bytes) = chunk(20);
    let (lost, lost_bytes) = chunk(21);
    let (orphan, orphan_bytes) = chunk(22);
    let chunks_dir = dir.path().join("chunks");
    {
        let (store, _) = open_in(dir.path());
        store.put(&kept, &kept_bytes).unwrap();
        store.put(&lost, &lost_bytes).unwrap();
        fs::remove_file(store.path_of(&lost)).unwrap();
        // A put that crashed after the rename but before the index write.
        fs::write(store.path_of(&orphan), &orphan_bytes).unwrap();
        // Puts that crashed mid-write.
        let sub = store.path_of(&kept).parent().unwrap().to_path_buf();
        fs::write(sub.join(format!("{}.1234.tmp", kept.to_hex())), b"half").unwrap();
        fs::write(chunks_dir.join("stray.tmp"), b"half").unwrap();
        // Something unrelated, which must be left alone.
        fs::write(sub.join("README"), b"not a chunk").unwrap();
    }
    let (store, metrics) = open_in(dir.path());
    assert!(tmp_files(&chunks_dir).is_empty());
    assert!(store.contains(&kept).unwrap());
    assert_eq!(store.get(&kept).unwrap(), Some(kept_bytes.clone()));
    assert!(!store.contains(&lost).unwrap());
    assert!(store.contains(&orphan).unwrap());
    assert_eq!(store.get(&orphan).unwrap(), Some(orphan_bytes.clone()));
    assert_eq!(
        store.stats(),
        ChunkStats {
            chunks: 2,
            bytes: (kept_bytes.len() + orphan_bytes.len()) as u64
        }
    );
    assert_eq!(metrics.chunks_stored.get(), 2);
    assert!(
        store
            .path_of(&kept)
            .parent()
            .unwrap()
            .join("README")
            .exists()
    );
}

#[test]
fn a_file_deleted_behind_our_back_reads_as_missing() {
    let f = fixture();
    let (id, bytes) = chunk(30);
    f.store.put(&id, &bytes).unwrap();
    fs::remove_file(f.store.path_of(&id)).unwrap();
    assert_eq!(f.store.get(&id).unwrap(), None);
    assert!(!f.store.contains(&id).unwrap());
    assert_eq!(f.store.stats(), ChunkStats::default());
}

#[test]
fn concurrent_puts_of_one_chunk_are_safe() {
    let f = fixture();
    let bytes = vec![7u8; 256 * 1024];
    let id = ChunkId::of(&bytes);
    let outcomes: Vec<PutOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| f.store.put(&id, &bytes).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PutOutcome::Stored)
            .count(),
        1
    );
    assert_eq!(f.store.stats().chunks, 1);
    assert_eq!(f.store.stats().bytes, bytes.len() as u64);
    assert_eq!(f.store.get(&id).unwrap(), Some(bytes.clone()));
    assert!(tmp_files(f.store.dir()).is_empty());
    drop(f.dir);
}

#[test]
fn concurrent_puts_and_gets_of_many_chunks() {
    let f = fixture();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let store = f.store.clone();
            s.spawn(move || {
                for n in 0..20 {
                    let (id, bytes) = chunk(1000 + n);
                    store.put(&id, &bytes).unwrap();
                    assert_eq!(store.get(&id).unwrap(), Some(bytes));
                }
            });
        }
    });
    assert_eq!(f.store.stats().chunks, 20);
    assert_eq!(f.store.list(None, 100).unwrap().len(), 20);
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<ChunkStore>();
}
