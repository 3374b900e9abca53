//! The object metadata table: which manifest a (tenant, bucket, key) currently names.
//!
//! This is one replica's share of the table. Entries merge last-writer-wins on
//! `(version, writer)`, with deletes kept as tombstones, so replicas that receive the same
//! entries in any order hold the same state; the caller does placement, quorum and
//! anti-entropy on top.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::warn;
use xnode_db::{Db, Table, WriteOp};
use xnode_types::{Hlc, NodeId, PublicKeyBytes};
use xnode_wire::{Versioned, kinds};

use crate::chunks::ChunkId;
use crate::entropy::SetDigest;
use crate::seal::MetaSeal;
use crate::{StoreError, clip, successor};

/// Table `objects`: [`ObjectPath::storage_key`] -> encoded [`ObjectMeta`].
const TABLE: Table = Table("objects");
/// Table `objects_retired`, the cold table: [`ObjectPath::storage_key`] -> encoded
/// [`ObjectMeta`], a tombstone that tombstone collection took out of [`TABLE`]. It is read
/// only by point lookups: every merge (so an older version of the key still loses to the
/// tombstone, whoever offers it) and every point read (so a quorum read still sees the
/// delete). Listings, ranges, scans and digests never read it, so what they cost grows
/// with what is stored, not with every key ever deleted; the table itself grows by one
/// small record per collected key, on disk only. A later write of the key moves it back
/// out. Added to the same database file without a format change: redb creates a table
/// on its first write, and a binary from before it never opens it (see
/// `docs/decisions/2026-11-28-tombstones-are-collected-on-every-holders-confirmation.md`).
const RETIRED: Table = Table("objects_retired");
/// The largest encoded metadata entry accepted. Keys are at most 1 KiB and S3 caps user
/// metadata at 2 KiB, so this leaves ample room while bounding what a peer can make us
/// store or decode.
pub const MAX_META_BYTES: usize = 64 * 1024;
/// Entries read per database scan.
const PAGE: usize = 256;

/// Where an object lives: a tenant's bucket and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectPath {
    pub tenant: PublicKeyBytes,
    pub bucket: String,
    pub key: String,
}

impl ObjectPath {
    /// A validated path.
    pub fn new(
        tenant: PublicKeyBytes,
        bucket: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let path = Self {
            tenant,
            bucket: bucket.into(),
            key: key.into(),
        };
        path.validate()?;
        Ok(path)
    }

    /// Checks the bucket name and key (a client key, or an internal one, see
    /// [`internal_key`]); paths that arrive deserialized skip [`ObjectPath::new`].
    pub fn validate(&self) -> Result<(), StoreError> {
        validate_bucket_name(&self.bucket)?;
        match self.key.strip_prefix(INTERNAL_KEY_PREFIX) {
            Some(rest) => validate_object_key(rest),
            None => validate_object_key(&self.key),
        }
    }

    /// Whether this is an internal object (see [`internal_key`]).
    pub fn is_internal(&self) -> bool {
        is_internal_key(&self.key)
    }

    /// `tenant_hex/bucket/key`. Tenant hex has a fixed length and bucket names cannot hold
    /// `/`, so all of a bucket's keys share one prefix and sort by key: listing is a range
    /// scan.
    pub fn storage_key(&self) -> Vec<u8> {
        let mut out = bucket_prefix(&self.tenant, &self.bucket);
        out.extend_from_slice(self.key.as_bytes());
        out
    }

    /// The hash placement runs on, so one object's metadata replicas are chosen the same
    /// way on every node.
    pub fn placement_key(&self) -> [u8; 32] {
        *blake3::hash(&self.storage_key()).as_bytes()
    }
}

fn bucket_prefix(tenant: &PublicKeyBytes, bucket: &str) -> Vec<u8> {
    format!("{}/{bucket}/", tenant.to_hex()).into_bytes()
}

/// S3's bucket naming rules: 3 to 63 characters of lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit, no `..`, not shaped like an IPv4 address,
/// and none of the prefixes and suffixes S3 reserves.
pub fn validate_bucket_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidName(format!(
            "bucket name {:?} {reason}",
            clip(name)
        )))
    };
    if !(3..=63).contains(&name.len()) {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return bad("may hold only lowercase letters, digits, '-' and '.'");
    }
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !edge(name.bytes().next()) || !edge(name.bytes().last()) {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain \"..\"");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return bad("uses a reserved prefix");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return bad("uses a reserved suffix");
    }
    Ok(())
}

/// Internal objects have keys starting with this character. A client key can never start
/// with it (control characters are refused), and listings skip internal objects unless the
/// prefix asked for starts with it. Gateways keep their own state in them (for example the
/// parts of an S3 multipart upload), replicated like any object but invisible to clients.
pub const INTERNAL_KEY_PREFIX: char = '\0';

/// The internal key for `name` (`name` must be a valid client key).
pub fn internal_key(name: &str) -> String {
    format!("{INTERNAL_KEY_PREFIX}{name}")
}

/// Whether `key` names an internal object.
pub fn is_internal_key(key: &str) -> bool {
    key.starts_with(INTERNAL_KEY_PREFIX)
}

/// Object keys: 1 to 1024 bytes of UTF-8 without control characters (NUL included).
pub fn validate_object_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(StoreError::InvalidName(format!(
            "object key must be 1 to 1024 bytes, not {}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(StoreError::InvalidName(format!(
            "object key {:?} contains a control character",
            clip(key)
        )));
    }
    Ok(())
}

/// What a live object is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The chunk holding the object's encoded [`crate::Manifest`].
    pub manifest: ChunkId,
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    pub user_meta: BTreeMap<String, String>,
    pub created_ms: u64,
}

/// One version of one object's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectMeta {
    pub path: ObjectPath,
    pub version: Hlc,
    /// The node that accepted the write; breaks ties between equal clocks.
    pub writer: NodeId,
    /// `None` is a tombstone: the object was deleted at `version`.
    pub info: Option<ObjectInfo>,
    /// The writer's signature and the tenant's authority (format 2, see [`crate::seal`]);
    /// `None` for entries written before metadata was signed (format 1). Boxed: most
    /// code moves entries around without looking at their seal.
    pub seal: Option<Box<MetaSeal>>,
}

/// Format 1 of [`ObjectMeta`]: no seal.
#[derive(Deserialize)]
struct ObjectMetaV1 {
    path: ObjectPath,
    version: Hlc,
    writer: NodeId,
    info: Option<ObjectInfo>,
}

/// Format 2 of [`ObjectMeta`], as it is decoded.
#[derive(Deserialize)]
struct ObjectMetaV2 {
    path: ObjectPath,
    version: Hlc,
    writer: NodeId,
    info: Option<ObjectInfo>,
    seal: Option<Box<MetaSeal>>,
}

thread_local! {
    /// Set while decoding a body written in a format whose entries had no seal (object
    /// metadata format 1, store protocol versions before 6), so every entry nested in it
    /// decodes in the layout it was written in.
    static UNSEALED_LAYOUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `decode` with object metadata entries read in their format-1 layout (without a
/// seal): for upgrading bodies of older formats that nest entries. Decoding is
/// synchronous, so a thread-local flag reaches every nested entry and no other decode.
pub fn decode_unsealed_layout<T>(decode: impl FnOnce() -> T) -> T {
    let before = UNSEALED_LAYOUT.with(|f| f.replace(true));
    let out = decode();
    UNSEALED_LAYOUT.with(|f| f.set(before));
    out
}

impl<'de> Deserialize<'de> for ObjectMeta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if UNSEALED_LAYOUT.with(std::cell::Cell::get) {
            let v1 = ObjectMetaV1::deserialize(d)?;
            Ok(ObjectMeta {
                path: v1.path,
                version: v1.version,
                writer: v1.writer,
                info: v1.info,
                seal: None,
            })
        } else {
            let v2 = ObjectMetaV2::deserialize(d)?;
            Ok(ObjectMeta {
                path: v2.path,
                version: v2.version,
                writer: v2.writer,
                info: v2.info,
                seal: v2.seal,
            })
        }
    }
}

impl Versioned for ObjectMeta {
    const KIND_TAG: u8 = kinds::OBJECT_META;
    const KIND_NAME: &'static str = "object metadata";
    // Version 2 added the seal.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        if version != 1 {
            return Err(xnode_wire::unsupported::<Self>(version));
        }
        decode_unsealed_layout(|| xnode_wire::decode_body::<Self, _>(body))
    }
}

impl ObjectMeta {
    /// Last-writer-wins: whether `self` replaces `other`, i.e. `(version, writer)` is
    /// strictly greater. Two different entries with equal `(version, writer)` should not
    /// exist, but if they do the contents break the tie, so every replica still picks the
    /// same one whatever the order of arrival.
    ///
    /// A sealed entry supersedes every unsealed one whatever their versions: entries
    /// written before metadata was signed are trusted only while nothing signed exists for
    /// the key, so an unsigned forgery can never win over a signed write.
    pub fn supersedes(&self, other: &ObjectMeta) -> bool {
        (self.is_sealed(), self.version, &self.writer, &self.info)
            > (other.is_sealed(), other.version, &other.writer, &other.info)
    }

    pub fn is_tombstone(&self) -> bool {
        self.info.is_none()
    }
}

/// What merging an entry into a replica's table did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeOutcome {
    /// The entry was new or newer, and is now held.
    Stored,
    /// This very entry was held already (a retry, or a repair).
    Held,
    /// A newer entry is held; the one given lost and is not stored.
    Superseded { version: Hlc, writer: NodeId },
}

impl MergeOutcome {
    /// Whether the entry given is what the replica holds afterwards.
    pub fn is_held(&self) -> bool {
        matches!(self, MergeOutcome::Stored | MergeOutcome::Held)
    }
}

/// What a conditional merge ([`MetaStore::merge_if`]) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionalMerge {
    /// The held entry was not newer than expected, and the entry was merged.
    Merged(MergeOutcome),
    /// The held entry is newer than the one expected: it is left as it is.
    Moved { version: Hlc, writer: NodeId },
}

/// This node's share of the object metadata table. Cheap to clone; clones share the lock.
#[derive(Clone)]
pub struct MetaStore {
    db: Db,
    /// Serialises merges, so two concurrent merges of one key cannot both read the old
    /// entry and the older of the two be written last.
    merge_lock: Arc<Mutex<()>>,
    /// One [`SetDigest`] per bucket over the entries held (tombstones included), kept
    /// current by every merge once built; `None` until the first anti-entropy round asks
    /// for it (building it walks the whole table).
    digests: Arc<Mutex<Option<BucketDigests>>>,
    /// One [`SetDigest`] per bucket over its retired tombstones (the cold table), kept
    /// current the same way once built, so two replicas of a bucket tell whether they
    /// hold the same cold records without rescanning their cold tables every round.
    retired_digests: Arc<Mutex<Option<BucketDigests>>>,
    /// Counts entries stored, so anti-entropy can tell nothing changed since its last
    /// clean round.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

/// A bucket named by owner and name.
pub type BucketName = (PublicKeyBytes, String);
type BucketDigests = BTreeMap<BucketName, SetDigest>;

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaStore")
    }
}

impl MetaStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            merge_lock: Arc::new(Mutex::new(())),
            digests: Arc::new(Mutex::new(None)),
            retired_digests: Arc::new(Mutex::new(None)),
            generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Stores `meta` if no entry exists for its path or it supersedes the one held. Returns
    /// whether anything changed. Entries from peers arrive here, so the path is validated.
    pub fn merge(&self, meta: ObjectMeta) -> Result<bool, StoreError> {
        Ok(self.merge_outcome(meta)? == MergeOutcome::Stored)
    }

    /// [`MetaStore::merge`], saying what the entry held afterwards is: the one given
    /// (stored now, or held already) or a newer one that superseded it. A writer needs the
    /// difference: only a write that is held counts as acknowledged.
    pub fn merge_outcome(&self, meta: ObjectMeta) -> Result<MergeOutcome, StoreError> {
        match self.merge_checked(meta, None)? {
            ConditionalMerge::Merged(outcome) => Ok(outcome),
            // Only a merge with an expectation can find the entry moved.
            ConditionalMerge::Moved { version, writer } => {
                Ok(MergeOutcome::Superseded { version, writer })
            }
        }
    }

    /// Merges `meta` as [`MetaStore::merge_outcome`] does, but only if the entry held for
    /// its path is not newer than `expected` (the `(version, writer)` a quorum read found,
    /// `None` when it found no entry). This is the replica's half of a conditional write:
    /// the coordinator evaluated the condition against `expected`, so an entry that moved
    /// past it since (another write landed here) makes the condition stale, and the merge
    /// is refused. A replica that is merely behind (holds an older entry) accepts.
    pub fn merge_if(
        &self,
        meta: ObjectMeta,
        expected: Option<(Hlc, NodeId)>,
    ) -> Result<ConditionalMerge, StoreError> {
        self.merge_checked(meta, Some(expected))
    }

    fn merge_checked(
        &self,
        meta: ObjectMeta,
        expected: Option<Option<(Hlc, NodeId)>>,
    ) -> Result<ConditionalMerge, StoreError> {
        meta.path.validate()?;
        let key = meta.path.storage_key();
        let encoded = xnode_wire::encode(&meta)?;
        if encoded.len() > MAX_META_BYTES {
            return Err(StoreError::TooLarge {
                what: "object metadata",
                len: encoded.len(),
                limit: MAX_META_BYTES,
            });
        }
        let _guard = self
            .merge_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut replaced = None;
        // The entry the merge compares against: the hot entry, or with none readable the
        // retired tombstone of the key, which must win and lose exactly as it did while
        // it was hot (an older version offered again after collection is refused).
        let hot = match self.db.get(TABLE, &key)? {
            Some(bytes) => decode_entry(&key, &bytes),
            None => None,
        };
        let retired = match hot {
            Some(_) => None,
            None => self.retired_entry(&key)?,
        };
        let from_cold = retired.is_some();
        let leaving_cold = retired.clone();
        // An unreadable hot entry (with no retired one) is replaced by any readable one;
        // peers hold copies. It never counted in a digest (building skips it).
        if let Some(current) = hot.or(retired) {
            if current == meta {
                return Ok(ConditionalMerge::Merged(MergeOutcome::Held));
            }
            if expected.is_some_and(|e| e.is_none_or(|e| (current.version, current.writer) > e)) {
                return Ok(ConditionalMerge::Moved {
                    version: current.version,
                    writer: current.writer,
                });
            }
            // A sealed entry cannot delete or weaken a version whose COMPLIANCE
            // retention had not lapsed when it was written (`meta/retention.rs`).
            if !meta.supersedes(&current) || meta.breaks_lock_of(&current) {
                return Ok(ConditionalMerge::Merged(MergeOutcome::Superseded {
                    version: current.version,
                    writer: current.writer,
                }));
            }
            // A retired tombstone never counted in a digest, so there is nothing to take
            // out of one; its cold record goes with this write (the key lives again).
            if !from_cold {
                replaced = Some(current);
            }
        }
        let mut writes = vec![WriteOp::Put {
            table: TABLE,
            key: key.clone(),
            value: encoded.clone(),
        }];
        if from_cold {
            writes.push(WriteOp::Delete {
                table: RETIRED,
                key,
            });
        }
        // One transaction: a crash cannot leave the key both live and retired, nor
        // neither.
        self.db.write(writes)?;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Still under the merge lock, so the digest moves in the same order as the table.
        let mut guard = lock_digests(&self.digests);
        if let Some(digests) = guard.as_mut() {
            match replaced.as_ref().map(entry_hash).transpose() {
                Ok(old) => {
                    let digest = digests
                        .entry((meta.path.tenant, meta.path.bucket.clone()))
                        .or_default();
                    if let Some(old) = old {
                        digest.toggle(&old);
                    }
                    digest.toggle(&blake3_of(&encoded));
                }
                // Cannot happen for an entry that decoded, but if it did the digests
                // would drift: drop them, and the next round rebuilds them from the table.
                Err(_) => *guard = None,
            }
        }
        drop(guard);
        if let Some(old) = leaving_cold.as_ref() {
            toggle_digest(&self.retired_digests, old);
        }
        Ok(ConditionalMerge::Merged(MergeOutcome::Stored))
    }

    /// A number that changes whenever an entry is stored (it starts again at zero on
    /// restart).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The digest of every bucket this replica holds entries of. The first call walks the
    /// whole table (holding merges back meanwhile); later ones are a copy.
    pub fn bucket_digests(&self) -> Result<Vec<(BucketName, SetDigest)>, StoreError> {
        self.ensure_digests()?;
        Ok(lock_digests(&self.digests)
            .as_ref()
            .map(|d| d.iter().map(|(b, d)| (b.clone(), *d)).collect())
            .unwrap_or_default())
    }

    /// The digest of one bucket's entries (all zeroes when none is held).
    pub fn bucket_digest(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<SetDigest, StoreError> {
        self.ensure_digests()?;
        Ok(lock_digests(&self.digests)
            .as_ref()
            .and_then(|d| d.get(&(*tenant, bucket.to_owned())).copied())
            .unwrap_or_default())
    }

    fn ensure_digests(&self) -> Result<(), StoreError> {
        if lock_digests(&self.digests).is_some() {
            return Ok(());
        }
        let _guard = self
            .merge_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lock_digests(&self.digests).is_some() {
            return Ok(());
        }
        let mut built = BucketDigests::new();
        let mut failed = None;
        self.scan_pages(&[], Vec::new(), |meta, _| match entry_hash(&meta) {
            Ok(hash) => {
                built
                    .entry((meta.path.tenant, meta.path.bucket))
                    .or_default()
                    .toggle(&hash);
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        *lock_digests(&self.digests) = Some(built);
        Ok(())
    }

    /// What this replica answers for `path`, tombstone or not: the hot entry, or with
    /// none the retired tombstone of the key. Every point read (a peer's `GetMeta`, this
    /// node's own share of a quorum read, a forwarded read) goes through here, so a
    /// collected delete still outranks an older version another replica offers.
    pub fn get(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        match self.get_hot(path)? {
            Some(meta) => Ok(Some(meta)),
            None => self.get_retired(path),
        }
    }

    /// The entry the hot table holds for `path`, tombstone or not, leaving retired
    /// tombstones out: what listings and scans see.
    pub fn get_hot(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        decode_at(&self.db, TABLE, &path.storage_key())
    }

    /// Live objects of a bucket whose key starts with `prefix` and is greater than
    /// `start_after`, in key order, at most `limit`.
    pub fn list(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        // A name with '/' in it would reach into another bucket's keys.
        validate_bucket_name(bucket)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (scan_prefix, start) = range_bounds(tenant, bucket, prefix, start_after);
        let mut out = Vec::new();
        self.scan_pages(&scan_prefix, start, |meta, _| {
            if meta.info.is_some() {
                out.push(meta);
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// A range of a bucket's entries, **tombstones included**: keys that start with
    /// `prefix` and are greater than `after`, in key order, at most `limit` entries and
    /// about `max_bytes` of encoded entries (at least one entry is returned whatever its
    /// size). Internal keys are left out unless `prefix` is internal, as in
    /// [`MetaStore::list`]. What an edge merges from a read quorum of replicas to list a
    /// bucket: the tombstones let it tell a deleted key from one a replica missed.
    pub fn range(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<MetaRange, StoreError> {
        let read = RangeRead {
            tenant,
            bucket,
            prefix,
            after,
            limit,
            max_bytes,
        };
        self.read_range(&read, false)
    }

    /// [`MetaStore::range`], with the digest of the entries read (as
    /// [`MetaStore::range_digest`] makes it): what a listing edge holding the bucket
    /// compares with the other replicas' digests. Hashing every entry costs about as much
    /// as reading it, so only that read pays for it.
    pub fn range_digested(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<MetaRange, StoreError> {
        let read = RangeRead {
            tenant,
            bucket,
            prefix,
            after,
            limit,
            max_bytes,
        };
        self.read_range(&read, true)
    }

    fn read_range(&self, read: &RangeRead<'_>, digested: bool) -> Result<MetaRange, StoreError> {
        let RangeRead {
            tenant,
            bucket,
            prefix,
            after,
            limit,
            max_bytes,
        } = *read;
        validate_bucket_name(bucket)?;
        let mut page = MetaRange::default();
        if limit == 0 {
            // Nothing was read, so nothing is known to be complete.
            page.truncated = true;
            return Ok(page);
        }
        let (scan_prefix, start) = range_bounds(tenant, bucket, prefix, after);
        let mut bytes = 0usize;
        let mut digest = digested.then(RangeHasher::new);
        self.scan_pages(&scan_prefix, start, |meta, stored| {
            let total = bytes.saturating_add(stored.len());
            // One entry past either bound is seen before stopping, so an answer that ends
            // exactly at the end of the range is not reported cut.
            if page.entries.len() >= limit || (total > max_bytes && !page.entries.is_empty()) {
                page.truncated = true;
                return false;
            }
            bytes = total;
            if let Some(digest) = digest.as_mut() {
                digest.add(stored);
            }
            page.entries.push(meta);
            true
        })?;
        page.digest = digest.map(|digest| digest.finish(true));
        Ok(page)
    }

    /// Every entry, tombstones included, in storage-key order after `after` (exclusive), at
    /// most `limit`: the walk repair and anti-entropy make over the table.
    pub fn scan(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = after.map(successor).unwrap_or_default();
        let mut out = Vec::new();
        self.scan_pages(&[], start, |meta, _| {
            out.push(meta);
            out.len() < limit
        })?;
        Ok(out)
    }

    /// How many live objects a bucket holds (for refusing to delete a non-empty bucket).
    pub fn count_live_in_bucket(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<u64, StoreError> {
        validate_bucket_name(bucket)?;
        let prefix = bucket_prefix(tenant, bucket);
        let mut count = 0u64;
        self.scan_pages(&prefix, prefix.clone(), |meta, _| {
            if meta.info.is_some() {
                count += 1;
            }
            true
        })?;
        Ok(count)
    }

    /// Feeds readable entries with keys `>= start` under `prefix` to `visit` (with the
    /// length of their stored encoding), page by page,
    /// until it returns false or the entries run out. Unreadable entries are skipped (and
    /// logged): one bad record must not make a whole bucket unlistable.
    fn scan_pages(
        &self,
        prefix: &[u8],
        start: Vec<u8>,
        visit: impl FnMut(ObjectMeta, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.scan_table(TABLE, prefix, start, visit)
    }

    /// [`MetaStore::scan_pages`] over `table` (the hot one or the cold one).
    fn scan_table(
        &self,
        table: Table,
        prefix: &[u8],
        mut start: Vec<u8>,
        mut visit: impl FnMut(ObjectMeta, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mut more = true;
        loop {
            let page = self.db.scan_from(table, prefix, &start, PAGE)?;
            for (key, value) in &page {
                if !more {
                    return Ok(());
                }
                if let Some(meta) = decode_entry(key, value) {
                    more = visit(meta, value);
                }
            }
            if !more {
                return Ok(());
            }
            match page.last() {
                Some((key, _)) if page.len() == PAGE => start = successor(key),
                _ => return Ok(()),
            }
        }
    }
}

/// One page of a bucket's entries read by [`MetaStore::range`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaRange {
    /// Entries in key order, tombstones included.
    pub entries: Vec<ObjectMeta>,
    /// The page was cut at the limit or the byte bound: keys after the last entry were not
    /// read. `false` means it holds every entry of the range.
    pub truncated: bool,
    /// The digest of the entries read (see [`MetaStore::range_digest`]), when asked for
    /// ([`MetaStore::range_digested`]).
    pub digest: Option<RangeDigest>,
}

/// What [`MetaStore::range`] reads.
#[derive(Clone, Copy)]
struct RangeRead<'a> {
    tenant: &'a PublicKeyBytes,
    bucket: &'a str,
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
    max_bytes: usize,
}

/// The scan prefix and first storage key of a listing of `prefix` after `after` in a
/// bucket. Internal keys sort first (`\0`), so a listing that does not ask for them
/// starts past them.
fn range_bounds(
    tenant: &PublicKeyBytes,
    bucket: &str,
    prefix: &str,
    after: Option<&str>,
) -> (Vec<u8>, Vec<u8>) {
    let base = bucket_prefix(tenant, bucket);
    let mut scan_prefix = base.clone();
    scan_prefix.extend_from_slice(prefix.as_bytes());
    let mut start = scan_prefix.clone();
    if !is_internal_key(prefix) {
        let mut past_internal = base.clone();
        past_internal.push(1);
        if past_internal > start {
            start = past_internal;
        }
    }
    if let Some(after) = after {
        let mut past = base;
        past.extend_from_slice(after.as_bytes());
        let past = successor(&past);
        if past > start {
            start = past;
        }
    }
    (scan_prefix, start)
}

fn lock_digests(
    digests: &Mutex<Option<BucketDigests>>,
) -> std::sync::MutexGuard<'_, Option<BucketDigests>> {
    digests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An entry's member hash in its bucket's digest: the hash of its current encoding, so two
/// replicas that hold the same entry agree even if one stored it in an older format.
fn entry_hash(meta: &ObjectMeta) -> Result<[u8; 32], StoreError> {
    Ok(blake3_of(&xnode_wire::encode(meta)?))
}

fn blake3_of(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The entry stored under `key` in `table`, decoded (an unreadable one is an error here:
/// a point read must not pass a damaged entry off as no entry).
fn decode_at(db: &Db, table: Table, key: &[u8]) -> Result<Option<ObjectMeta>, StoreError> {
    let Some(bytes) = db.get(table, key)? else {
        return Ok(None);
    };
    Ok(Some(xnode_wire::decode(&bytes, MAX_META_BYTES)?))
}

/// Decodes a stored entry and checks it sits under its own key.
fn decode_entry(key: &[u8], value: &[u8]) -> Option<ObjectMeta> {
    match xnode_wire::decode::<ObjectMeta>(value, MAX_META_BYTES) {
        Ok(meta) if meta.path.storage_key() == key => Some(meta),
        Ok(_) => {
            warn!(key = %String::from_utf8_lossy(key), "object metadata stored under the wrong key; skipped");
            None
        }
        Err(e) => {
            warn!(key = %String::from_utf8_lossy(key), error = %e, "unreadable object metadata; skipped");
            None
        }
    }
}

mod leaves;
mod range_digest;
mod references;
mod retention;
mod retired;
use range_digest::RangeHasher;
pub use range_digest::{DigestRange, EncodedRange, RangeDigest};
pub use retention::{COMPLIANCE_MODE, LOCK_MODE_ENTRY, LOCK_UNTIL_ENTRY, VERSIONS_DIRECTORY};
use retired::toggle_digest;

#[cfg(test)]
mod retired_tests;
#[cfg(test)]
mod tests;
