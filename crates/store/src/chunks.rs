//! The chunk store: content-addressed blobs on local disk, verified against their id on
//! every read and re-hashed by the scrubber.
//!
//! Durability rule: a chunk is indexed only after its file is complete and durable (written
//! to a temporary file, fsynced, renamed into place, parent directory fsynced). A crash at
//! any point therefore leaves either a stray `.tmp` file (removed at open), an unindexed
//! complete file (indexed at open), or a complete indexed chunk; never an index entry that
//! points at half a file. Index entries whose file has disappeared are dropped at open, so
//! replication sees the chunk as missing and repairs it.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use xnode_db::{Db, Table, WriteOp};

use crate::metrics::StoreMetrics;
use crate::{StoreError, clip, io_err, successor};

/// Index table: chunk id (32 bytes) -> [`INDEX_VERSION`] byte followed by the size as u64 LE.
const TABLE: Table = Table("chunks");
/// Layout version of an index value; bump it (and keep reading the old one) if it changes.
const INDEX_VERSION: u8 = 1;
/// Puts and removes of one id are serialised by a lock; ids share locks in stripes so the
/// lock table stays small while unrelated ids rarely contend.
const LOCK_STRIPES: usize = 64;
const QUARANTINE_DIR: &str = "quarantine";
const TMP_SUFFIX: &str = ".tmp";
/// Index entries read per database scan, bounding memory during open, list and scrub.
const PAGE: usize = 1024;
/// Index entries written per transaction during recovery at open.
const RECOVERY_BATCH: usize = 1024;

/// A chunk's identity: the BLAKE3 hash of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, StoreError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| StoreError::InvalidId(format!("{:?}: {e}", clip(s))))?;
        Ok(Self(out))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({}…)", hex::encode(&self.0[..6]))
    }
}

impl FromStr for ChunkId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// What [`ChunkStore::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    AlreadyPresent,
}

/// How much this store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub chunks: u64,
    pub bytes: u64,
}

/// The result of one [`ChunkStore::scrub_batch`] call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubBatch {
    /// Where the next batch starts; `None` once the end of the index was reached, so the
    /// next pass starts again from the beginning.
    pub next_cursor: Option<ChunkId>,
    /// Chunks checked in this batch.
    pub checked: u64,
    /// Bytes read in this batch.
    pub bytes: u64,
    /// Chunks this node was supposed to hold but no longer holds intact: corrupt ones (now
    /// quarantined) and ones whose file had vanished. Both were dropped from the index and
    /// need repair from another replica.
    pub corrupt: Vec<ChunkId>,
}

/// Content-addressed chunk files plus their index. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ChunkStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    quarantine: PathBuf,
    db: Db,
    metrics: StoreMetrics,
    stats: Mutex<ChunkStats>,
    /// Counts changes to the index (chunks added, replaced or removed), so anti-entropy
    /// can tell that nothing changed since its last clean round without walking it.
    generation: std::sync::atomic::AtomicU64,
    locks: [Mutex<()>; LOCK_STRIPES],
}

impl fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkStore")
            .field("dir", &self.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a careful (locked) second look at a chunk file found.
enum Recheck {
    Good(Vec<u8>),
    /// The file is gone; `was_indexed` says whether the index still claimed it.
    Missing {
        was_indexed: bool,
    },
    Quarantined,
}

impl ChunkStore {
    /// Opens the store in `dir` (created if needed), removes interrupted writes and
    /// reconciles the index with the files on disk.
    pub fn open(dir: &Path, db: Db, metrics: StoreMetrics) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let quarantine = dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&quarantine).map_err(io_err(&quarantine))?;
        // Every prefix directory exists from the start, so a put never has to create (and
        // make durable) a directory on its hot path.
        for byte in 0..=u8::MAX {
            let sub = dir.join(hex::encode([byte]));
            fs::create_dir_all(&sub).map_err(io_err(&sub))?;
        }
        sync_dir(dir)?;
        let store = Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                quarantine,
                db,
                metrics,
                stats: Mutex::new(ChunkStats::default()),
                generation: std::sync::atomic::AtomicU64::new(0),
                locks: std::array::from_fn(|_| Mutex::new(())),
            }),
        };
        store.recover()?;
        Ok(store)
    }

    /// The directory this store keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stores `bytes` under `id` after checking that they hash to it. Storing a chunk that
    /// is already held does nothing and reports [`PutOutcome::AlreadyPresent`]; "held"
    /// means indexed *and* its file is there, so an acknowledgement never counts a copy
    /// whose file vanished (a missing file is written again).
    pub fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let actual = ChunkId::of(bytes);
        if actual != *id {
            return Err(StoreError::HashMismatch {
                expected: *id,
                actual,
            });
        }
        let path = self.path_of(id);
        if self.contains(id)? && path.exists() {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let sub = self.subdir_of(id);
        // The slow part (writing and fsyncing the data) happens outside the lock, under a
        // name no concurrent put of the same id can share.
        let tmp = sub.join(format!(
            "{}.{:016x}{TMP_SUFFIX}",
            id.to_hex(),
            rand::random::<u64>()
        ));
        if let Err(e) = write_synced(&tmp, bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }

        let _guard = self.lock(id);
        // Another put of this id may have finished while we were writing.
        let indexed = self.index_size(id)?;
        if indexed.is_some() && path.exists() {
            let _ = fs::remove_file(&tmp);
            return Ok(PutOutcome::AlreadyPresent);
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&path)(e));
        }
        sync_dir(&sub)?;
        let size = bytes.len() as u64;
        self.inner.db.put(TABLE, &id.0, &encode_index_value(size))?;
        match indexed {
            // The index kept an entry whose file had vanished: it is whole again.
            Some(old) => self.adjust_stats(0, i128::from(size) - i128::from(old)),
            None => self.adjust_stats(1, size as i128),
        }
        let m = &self.inner.metrics;
        m.chunk_writes.inc();
        m.chunk_write_bytes.inc_by(size);
        Ok(PutOutcome::Stored)
    }

    /// Reads a chunk and verifies it. `Ok(None)` if it is not held. A chunk whose bytes no
    /// longer hash to its id is quarantined, dropped from the index, and reported as
    /// [`StoreError::Corrupt`]: this never returns bytes that do not match `id`.
    pub fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path_of(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) if ChunkId::of(&bytes) == *id => Some(bytes),
            // A mismatch or a missing file is rare; decide under the lock (see `recheck`).
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => match self.recheck(id)? {
                Recheck::Good(bytes) => bytes,
                Recheck::Missing { .. } => return Ok(None),
                Recheck::Quarantined => return Err(StoreError::Corrupt { id: *id }),
            },
        };
        let m = &self.inner.metrics;
        m.chunk_reads.inc();
        m.chunk_read_bytes.inc_by(bytes.len() as u64);
        Ok(Some(bytes))
    }

    /// When the chunk's file was last written (ms since the Unix epoch), if it exists.
    /// Audits use it to leave alone chunks too young for repair to have placed them.
    pub fn written_ms(&self, id: &ChunkId) -> Option<u64> {
        let modified = fs::metadata(self.path_of(id)).ok()?.modified().ok()?;
        let since = modified.duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since.as_millis()).ok()
    }

    /// Whether the index lists `id`.
    pub fn contains(&self, id: &ChunkId) -> Result<bool, StoreError> {
        Ok(self.inner.db.get(TABLE, &id.0)?.is_some())
    }

    /// Deletes a chunk. Returns whether there was anything to delete.
    pub fn remove(&self, id: &ChunkId) -> Result<bool, StoreError> {
        let path = self.path_of(id);
        let _guard = self.lock(id);
        // The file goes first: a crash in between leaves an index entry without a file,
        // which open drops, rather than an unindexed file, which open would re-index.
        let removed_file = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if removed_file {
            sync_dir(&self.subdir_of(id))?;
        }
        let was_indexed = self.drop_index_locked(id)?;
        Ok(removed_file || was_indexed)
    }

    /// Moves a chunk's file to `target` (on the same file system) and forgets the chunk,
    /// as [`ChunkStore::remove`] does, but keeping the bytes (the trash). Returns whether
    /// there was a file to move.
    pub fn move_out(&self, id: &ChunkId, target: &Path) -> Result<bool, StoreError> {
        let path = self.path_of(id);
        let _guard = self.lock(id);
        let moved = match fs::rename(&path, target) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if moved {
            sync_dir(&self.subdir_of(id))?;
            if let Some(parent) = target.parent() {
                sync_dir(parent)?;
            }
        }
        let was_indexed = self.drop_index_locked(id)?;
        Ok(moved || was_indexed)
    }

    /// Up to `limit` indexed chunks with their sizes, in id order, starting after `after`.
    pub fn list(
        &self,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, u64)>, StoreError> {
        let start = after.map(|a| successor(&a.0)).unwrap_or_default();
        let page = self.inner.db.scan_from(TABLE, &[], &start, limit)?;
        page.into_iter()
            .map(|(key, value)| {
                let id = id_from_key(&key)
                    .ok_or_else(|| StoreError::Index(format!("key of {} bytes", key.len())))?;
                let size = decode_index_value(&value)
                    .ok_or_else(|| StoreError::Index(format!("value for {id}")))?;
                Ok((id, size))
            })
            .collect()
    }

    /// How many chunks and bytes the index holds (kept in memory, exact).
    /// A number that changes whenever the set of chunks held changes (it never repeats in
    /// one process; it starts again at zero on restart).
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stats(&self) -> ChunkStats {
        *lock_ignoring_poison(&self.inner.stats)
    }

    /// Re-hashes indexed chunks after `cursor`, in id order, until about `max_bytes` have
    /// been read (always at least one chunk, so every call makes progress). Corrupt chunks
    /// are quarantined as in [`ChunkStore::get`] and returned for repair.
    pub fn scrub_batch(
        &self,
        cursor: Option<&ChunkId>,
        max_bytes: u64,
    ) -> Result<ScrubBatch, StoreError> {
        const SCRUB_PAGE: usize = 256;
        let mut batch = ScrubBatch::default();
        let mut after = cursor.copied();
        let m = &self.inner.metrics;
        loop {
            let page = self.list(after.as_ref(), SCRUB_PAGE)?;
            for (i, (id, _)) in page.iter().enumerate() {
                let path = self.path_of(id);
                let read = match hash_file(&path) {
                    Ok((actual, len)) if actual == *id => len,
                    Ok(_) => self.scrub_recheck(id, &mut batch)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.scrub_recheck(id, &mut batch)?
                    }
                    Err(e) => return Err(io_err(&path)(e)),
                };
                batch.checked += 1;
                batch.bytes = batch.bytes.saturating_add(read);
                m.scrubbed_chunks.inc();
                m.scrubbed_bytes.inc_by(read);
                after = Some(*id);
                if batch.bytes >= max_bytes {
                    let more = i + 1 < page.len() || !self.list(Some(id), 1)?.is_empty();
                    batch.next_cursor = if more { Some(*id) } else { None };
                    return Ok(batch);
                }
            }
            if page.len() < SCRUB_PAGE {
                return Ok(batch);
            }
        }
    }

    /// The locked second look for the scrubber; returns the bytes read.
    fn scrub_recheck(&self, id: &ChunkId, batch: &mut ScrubBatch) -> Result<u64, StoreError> {
        Ok(match self.recheck(id)? {
            Recheck::Good(bytes) => bytes.len() as u64,
            Recheck::Missing { was_indexed } => {
                if was_indexed {
                    self.inner.metrics.corrupt_chunks.inc();
                    batch.corrupt.push(*id);
                }
                0
            }
            Recheck::Quarantined => {
                batch.corrupt.push(*id);
                0
            }
        })
    }

    /// Looks at a chunk again under its lock, after an unlocked read found it missing or
    /// wrong. The lock orders us after any put or remove in flight, so what we see now is
    /// the settled state: a repair may have just replaced a bad file, in which case the
    /// chunk is good and must not be quarantined.
    fn recheck(&self, id: &ChunkId) -> Result<Recheck, StoreError> {
        let path = self.path_of(id);
        let _guard = self.lock(id);
        match fs::read(&path) {
            Ok(bytes) if ChunkId::of(&bytes) == *id => Ok(Recheck::Good(bytes)),
            Ok(_) => {
                self.quarantine_locked(id, &path)?;
                Ok(Recheck::Quarantined)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let was_indexed = self.drop_index_locked(id)?;
                if was_indexed {
                    warn!(chunk = %id, "indexed chunk file is missing; dropped from the index");
                }
                Ok(Recheck::Missing { was_indexed })
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Moves a bad chunk file aside (kept for inspection, never served) and forgets it.
    /// The caller holds the id's lock.
    fn quarantine_locked(&self, id: &ChunkId, path: &Path) -> Result<(), StoreError> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let target = self.inner.quarantine.join(format!(
            "{}.{ms}.{:08x}",
            id.to_hex(),
            rand::random::<u32>()
        ));
        fs::rename(path, &target).map_err(io_err(path))?;
        sync_dir(&self.subdir_of(id))?;
        self.drop_index_locked(id)?;
        self.inner.metrics.corrupt_chunks.inc();
        warn!(chunk = %id, quarantined_to = %target.display(), "chunk failed verification");
        Ok(())
    }

    /// Removes `id` from the index and the stats. The caller holds the id's lock.
    fn drop_index_locked(&self, id: &ChunkId) -> Result<bool, StoreError> {
        let Some(size) = self.index_size(id)? else {
            return Ok(false);
        };
        self.inner.db.delete(TABLE, &id.0)?;
        self.adjust_stats(-1, -(size as i128));
        Ok(true)
    }

    /// The indexed size of `id`, if indexed. An unreadable value counts as size 0 rather
    /// than failing, so the entry can still be replaced or dropped.
    fn index_size(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .inner
            .db
            .get(TABLE, &id.0)?
            .map(|v| decode_index_value(&v).unwrap_or(0)))
    }

    fn adjust_stats(&self, chunks: i128, bytes: i128) {
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut stats = lock_ignoring_poison(&self.inner.stats);
        stats.chunks = apply_delta(stats.chunks, chunks);
        stats.bytes = apply_delta(stats.bytes, bytes);
        self.publish_stats(&stats);
    }

    fn publish_stats(&self, stats: &ChunkStats) {
        let m = &self.inner.metrics;
        m.chunks_stored
            .set(i64::try_from(stats.chunks).unwrap_or(i64::MAX));
        m.bytes_stored
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
    }

    fn lock(&self, id: &ChunkId) -> MutexGuard<'_, ()> {
        lock_ignoring_poison(&self.inner.locks[usize::from(id.0[0]) % LOCK_STRIPES])
    }

    fn subdir_of(&self, id: &ChunkId) -> PathBuf {
        self.inner.dir.join(hex::encode(&id.0[..1]))
    }

    pub(crate) fn path_of(&self, id: &ChunkId) -> PathBuf {
        self.subdir_of(id).join(id.to_hex())
    }

    /// Brings the index in line with the files after a crash or an operator's meddling:
    /// removes interrupted writes, indexes complete files the index lacks, drops entries
    /// whose file is gone, and counts what is held.
    fn recover(&self) -> Result<(), StoreError> {
        let dir = &self.inner.dir;
        let db = &self.inner.db;
        let mut tmp_removed = 0u64;
        let mut orphans = Vec::new();
        let mut orphan_count = 0u64;

        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err(&path))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if kind.is_file() && name.ends_with(TMP_SUFFIX) {
                remove_stale(&path, &mut tmp_removed);
                continue;
            }
            if !kind.is_dir() || !is_prefix_dir(name) {
                continue;
            }
            for file in fs::read_dir(&path).map_err(io_err(&path))? {
                let file = file.map_err(io_err(&path))?;
                let file_path = file.path();
                let file_kind = file.file_type().map_err(io_err(&file_path))?;
                let file_name = file.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                if !file_kind.is_file() {
                    continue;
                }
                if file_name.ends_with(TMP_SUFFIX) {
                    remove_stale(&file_path, &mut tmp_removed);
                    continue;
                }
                let Some(id) = parse_chunk_file_name(file_name, name) else {
                    continue;
                };
                if db.get(TABLE, &id.0)?.is_none() {
                    // A put crashed between the rename and the index write. The file was
                    // verified and made durable before the rename, so it is whole; if it
                    // rotted since, reads and scrub will catch it like any other.
                    let len = file.metadata().map_err(io_err(&file_path))?.len();
                    orphans.push(WriteOp::Put {
                        table: TABLE,
                        key: id.0.to_vec(),
                        value: encode_index_value(len),
                    });
                    orphan_count += 1;
                    if orphans.len() >= RECOVERY_BATCH {
                        db.write(std::mem::take(&mut orphans))?;
                    }
                }
            }
        }
        db.write(orphans)?;

        let mut stats = ChunkStats::default();
        let mut dropped = 0u64;
        let mut start = Vec::new();
        loop {
            let page = db.scan_from(TABLE, &[], &start, PAGE)?;
            let mut fixes = Vec::new();
            for (key, value) in &page {
                let Some(id) = id_from_key(key) else {
                    warn!(len = key.len(), "dropping malformed chunk index key");
                    fixes.push(WriteOp::Delete {
                        table: TABLE,
                        key: key.clone(),
                    });
                    continue;
                };
                let path = self.path_of(&id);
                match fs::metadata(&path) {
                    Ok(meta) => {
                        let size = match decode_index_value(value) {
                            Some(size) => size,
                            None => {
                                fixes.push(WriteOp::Put {
                                    table: TABLE,
                                    key: key.clone(),
                                    value: encode_index_value(meta.len()),
                                });
                                meta.len()
                            }
                        };
                        stats.chunks += 1;
                        stats.bytes = stats.bytes.saturating_add(size);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        warn!(chunk = %id, "indexed chunk file is missing; dropped from the index");
                        dropped += 1;
                        fixes.push(WriteOp::Delete {
                            table: TABLE,
                            key: key.clone(),
                        });
                    }
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
            // Fixes only touch keys at or before the cursor, so applying them per page does
            // not disturb the scan.
            db.write(fixes)?;
            match page.last() {
                Some((key, _)) if page.len() == PAGE => start = successor(key),
                _ => break,
            }
        }

        *lock_ignoring_poison(&self.inner.stats) = stats;
        self.publish_stats(&stats);
        if tmp_removed > 0 || orphan_count > 0 || dropped > 0 {
            info!(
                tmp_removed,
                reindexed = orphan_count,
                dropped,
                "chunk store recovered from an interrupted run"
            );
        }
        Ok(())
    }
}

fn encode_index_value(size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(INDEX_VERSION);
    out.extend_from_slice(&size.to_le_bytes());
    out
}

fn decode_index_value(value: &[u8]) -> Option<u64> {
    match value {
        [INDEX_VERSION, rest @ ..] => Some(u64::from_le_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

fn id_from_key(key: &[u8]) -> Option<ChunkId> {
    key.try_into().ok().map(ChunkId)
}

fn is_prefix_dir(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A chunk file is named by its full lowercase hex id and lives in the directory named by
/// its first byte; anything else is not ours to index.
fn parse_chunk_file_name(name: &str, prefix_dir: &str) -> Option<ChunkId> {
    if name.len() != 64 || !name.starts_with(prefix_dir) {
        return None;
    }
    let id = ChunkId::from_hex(name).ok()?;
    (id.to_hex() == name).then_some(id)
}

fn remove_stale(path: &Path, count: &mut u64) {
    match fs::remove_file(path) {
        Ok(()) => *count += 1,
        Err(e) => warn!(path = %path.display(), error = %e, "cannot remove stale temporary file"),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    // Once durable, the file's pages are clean and can go. A store writes far more than it
    // reads back soon (three copies of every upload, repairs, rebalancing), and a page
    // cache that only grows makes every write take fresh memory, which is several times
    // dearer than reusing pages just freed (on this project's virtual machines a 64 MiB
    // upload spent a quarter of its CPU there; see BENCHMARKS.md). MinIO drops written
    // shards from the cache for the same reason. Reads still go through the cache. The
    // advice is only advice: a file system that ignores it loses nothing.
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    Ok(())
}

/// Hashes a file without holding it in memory.
fn hash_file(path: &Path) -> io::Result<(ChunkId, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let len = io::copy(&mut file, &mut hasher)?;
    Ok((ChunkId(*hasher.finalize().as_bytes()), len))
}

/// Makes renames and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for fsync on this platform; renames are durable
        // once the file system commits them.
        let _ = dir;
        Ok(())
    }
}

fn apply_delta(value: u64, delta: i128) -> u64 {
    u64::try_from((i128::from(value) + delta).max(0)).unwrap_or(u64::MAX)
}

/// A poisoned lock only means another thread panicked while holding it; the data it guards
/// here (a unit or plain counters) cannot be left half-updated, so carry on.
fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
