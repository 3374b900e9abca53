//! Objects: streaming, encrypted uploads, ranged reads, deletes, and composition of objects
//! from other objects (multipart and copies, without copying data). Listings are in
//! `listing`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use md5::Digest as _;
use tokio::task::JoinSet;
use xnode_store::{
    Candidate, ChunkId, ChunkRef, Keyring, Manifest, ObjectInfo, ObjectKey, ObjectMeta, ObjectPath,
};
use xnode_types::{PublicKeyBytes, unix_ms};

use crate::conditional::Preconditions;
use crate::forward::Prefetched;
use crate::proto::BucketRef;
use crate::quorum::Route;
use crate::{Storage, StorageError};

/// An object's metadata and the byte range a read returns.
pub struct ObjectRead {
    pub meta: ObjectMeta,
    pub info: ObjectInfo,
    /// `[start, end)` of the plaintext being returned.
    pub range: (u64, u64),
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>,
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// An object's current version found by a quorum read, to be read with
/// [`Storage::read_opened`], with the manifest and chunks a forwarded read brought and the
/// quorum vouched for (see `forward`).
pub struct OpenedObject {
    pub meta: ObjectMeta,
    pub info: ObjectInfo,
    prefetched: Arc<Prefetched>,
}

impl std::fmt::Debug for OpenedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedObject")
            .field("meta", &self.meta)
            .field("forwarded", &self.prefetched.manifest.is_some())
            .finish_non_exhaustive()
    }
}

/// Up to this many chunks of one upload are being replicated while the next ones are read
/// and sealed. Each holds one sealed chunk until its write quorum answers, so this bounds an
/// upload's memory to a few chunks whatever the object size, while keeping enough writes in
/// flight that the replicas' fsyncs overlap instead of following one another.
const UPLOADS_IN_FLIGHT: usize = 8;

/// The object's running hashes: MD5 (the S3 ETag) and BLAKE3 of the plaintext (the
/// manifest's). They pass from one chunk's sealing job to the next, in chunk order.
type Hashes = (md5::Md5, blake3::Hasher);

/// One chunk after its CPU work: the hashes updated with it, and its sealed bytes.
struct SealedChunk {
    hashes: Hashes,
    id: ChunkId,
    sealed: Bytes,
    plain_len: u32,
}

/// The encrypt-and-replicate pipeline of one object upload. Three stages overlap: the
/// caller reads the next chunk's bytes from the client while a blocking thread hashes and
/// seals the previous one, and up to [`UPLOADS_IN_FLIGHT`] sealed chunks are replicated by
/// their own tasks. (Hashing and sealing used to run one after the other between reads,
/// partly on the async workers, and the uploads only progressed while the writer waited.)
struct ObjectWriter {
    storage: Arc<Storage>,
    set: Arc<Vec<Candidate>>,
    bucket: BucketRef,
    object_key: ObjectKey,
    nonce_prefix: [u8; 16],
    refs: Vec<ChunkRef>,
    /// The running hashes, or `None` while the chunk being sealed holds them.
    hashes: Option<Hashes>,
    /// The chunk being hashed and sealed on a blocking thread.
    sealing: Option<tokio::task::JoinHandle<Result<SealedChunk, xnode_store::StoreError>>>,
    chunks_pushed: u64,
    total: u64,
    /// Chunk uploads in flight; dropping the writer (an upload that fails or is cut off)
    /// aborts them.
    uploads: JoinSet<Result<(), StorageError>>,
}

fn task_failed(e: tokio::task::JoinError) -> StorageError {
    StorageError::Internal(format!("storage task failed: {e}"))
}

impl ObjectWriter {
    /// Starts hashing and sealing one plaintext chunk on a blocking thread, once the
    /// previous chunk is sealed and on its way to its replicas.
    async fn push(&mut self, plain: Vec<u8>) -> Result<(), StorageError> {
        self.replicate_sealed().await?;
        let (mut md5, mut hasher) = self.hashes.take().ok_or_else(|| {
            StorageError::Internal("the upload's hashes were lost by a failed chunk".into())
        })?;
        let plain_len = u32::try_from(plain.len())
            .map_err(|_| StorageError::Internal("a chunk longer than 4 GiB".into()))?;
        self.total = self.total.saturating_add(u64::from(plain_len));
        let index = self.chunks_pushed;
        self.chunks_pushed += 1;
        let (key, prefix) = (self.object_key.clone(), self.nonce_prefix);
        self.sealing = Some(tokio::task::spawn_blocking(move || {
            md5.update(&plain);
            hasher.update(&plain);
            let sealed = xnode_store::seal_chunk(&key, &prefix, index, &plain)?;
            Ok(SealedChunk {
                hashes: (md5, hasher),
                id: ChunkId::of(&sealed),
                sealed: Bytes::from(sealed),
                plain_len,
            })
        }));
        Ok(())
    }

    /// Waits for the chunk being sealed, if any, and starts replicating it, first waiting
    /// for room among the uploads in flight.
    async fn replicate_sealed(&mut self) -> Result<(), StorageError> {
        let Some(job) = self.sealing.take() else {
            return Ok(());
        };
        let chunk = job.await.map_err(task_failed)??;
        self.hashes = Some(chunk.hashes);
        self.refs.push(ChunkRef {
            id: chunk.id,
            plain_len: chunk.plain_len,
        });
        self.storage
            .metrics
            .chunk_write_bytes
            .inc_by(chunk.sealed.len() as u64);
        // A chunk that failed already fails the upload now, not after the rest was sent.
        while let Some(result) = self.uploads.try_join_next() {
            result.map_err(task_failed)??;
        }
        while self.uploads.len() >= UPLOADS_IN_FLIGHT {
            if let Some(result) = self.uploads.join_next().await {
                result.map_err(task_failed)??;
            }
        }
        let (storage, set, bucket) = (self.storage.clone(), self.set.clone(), self.bucket.clone());
        self.uploads.spawn(async move {
            storage
                .put_bucket_chunk(chunk.id, chunk.sealed, &set, &bucket, Route::BulkLink)
                .await
        });
        Ok(())
    }

    /// Waits for every chunk to reach its write quorum.
    async fn finish(mut self) -> Result<(Vec<ChunkRef>, Hashes, u64), StorageError> {
        self.replicate_sealed().await?;
        while let Some(result) = self.uploads.join_next().await {
            result.map_err(task_failed)??;
        }
        let hashes = self.hashes.take().ok_or_else(|| {
            StorageError::Internal("the upload's hashes were lost by a failed chunk".into())
        })?;
        Ok((self.refs, hashes, self.total))
    }
}

impl Storage {
    /// Stores an object streamed from `body`, encrypting it at this edge. Nothing is visible
    /// until every chunk and the manifest reached their write quorum and the metadata was
    /// written: an interrupted upload leaves no object (only unreferenced chunks, which
    /// garbage collection removes).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_object<S, E>(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        keys: &(impl Keyring + ?Sized),
        content_type: String,
        user_meta: BTreeMap<String, String>,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<ObjectMeta, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        self.put_object_if(
            tenant,
            bucket,
            key,
            keys,
            content_type,
            user_meta,
            expected_len,
            body,
            Preconditions::default(),
        )
        .await
    }

    /// [`Storage::put_object`], stored only if `pre` holds for the object's current
    /// version when the upload is committed (S3's `If-Match` and `If-None-Match`). The
    /// data is uploaded first; the condition is decided atomically by the key's
    /// coordinator (see `conditional`), so a write that fails it leaves only unreferenced
    /// chunks, which garbage collection removes.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_object_if<S, E>(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        keys: &(impl Keyring + ?Sized),
        content_type: String,
        user_meta: BTreeMap<String, String>,
        expected_len: Option<u64>,
        mut body: S,
        pre: Preconditions,
    ) -> Result<ObjectMeta, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        self.require_bucket(tenant, bucket)?;
        self.refuse_if_revoked(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        // Refused before a byte is stored when the declared length does not fit; a body
        // that grows past the room left is cut off as it streams.
        let room = self
            .admit_write(tenant, bucket, expected_len.unwrap_or(0))
            .await?;
        let set = self.storage_set();
        self.require_placeable(tenant, bucket, &set)?;
        let rf = self.bucket_rf(tenant, bucket);
        let bucket_ref = BucketRef {
            tenant: *tenant,
            name: bucket.to_owned(),
        };
        if set.len() < self.config.write_quorum.min(rf) {
            if let Some(reason) = self.admission.why_no_one_yet(&self.registry) {
                return Err(StorageError::Quorum(reason.into()));
            }
            return Err(StorageError::Quorum(format!(
                "only {} storage nodes are available, {} are needed",
                set.len(),
                self.config.write_quorum
            )));
        }
        let object_key = ObjectKey::generate();
        let nonce_prefix = xnode_store::random_nonce_prefix();
        let wrapped_key = keys.wrap_object_key(bucket, &path.storage_key(), &object_key)?;
        let mac_key = object_key.clone();
        let chunk_size = self.config.chunk_size as usize;

        let mut writer = ObjectWriter {
            storage: self.clone(),
            set: Arc::new(set.clone()),
            bucket: bucket_ref.clone(),
            object_key,
            nonce_prefix,
            refs: Vec::new(),
            hashes: Some((md5::Md5::new(), blake3::Hasher::new())),
            sealing: None,
            chunks_pushed: 0,
            total: 0,
            uploads: JoinSet::new(),
        };
        let mut buffer: Vec<u8> = Vec::with_capacity(chunk_size);
        let mut received: u64 = 0;
        loop {
            match body.next().await {
                Some(Ok(bytes)) => {
                    received = received.saturating_add(bytes.len() as u64);
                    if received > room {
                        return Err(StorageError::QuotaExceeded(format!(
                            "the upload passed the {room} bytes left in the tenant's storage quota"
                        )));
                    }
                    let mut bytes = &bytes[..];
                    while !bytes.is_empty() {
                        let take = (chunk_size - buffer.len()).min(bytes.len());
                        buffer.extend_from_slice(&bytes[..take]);
                        bytes = &bytes[take..];
                        if buffer.len() == chunk_size {
                            let plain =
                                std::mem::replace(&mut buffer, Vec::with_capacity(chunk_size));
                            writer.push(plain).await?;
                        }
                    }
                }
                Some(Err(e)) => return Err(StorageError::Interrupted(e.to_string())),
                None => break,
            }
        }
        if !buffer.is_empty() {
            writer.push(buffer).await?;
        }
        let (refs, (md5, hasher), total) = writer.finish().await?;
        if let Some(expected) = expected_len
            && expected != total
        {
            return Err(StorageError::Interrupted(format!(
                "received {total} of {expected} bytes"
            )));
        }

        let manifest = Manifest {
            object_size: total,
            chunk_size: self.config.chunk_size,
            chunks: refs,
            nonce_prefix,
            wrapped_key,
            plaintext_blake3: *hasher.finalize().as_bytes(),
            segments: Vec::new(),
            mac: None,
        };
        let mut manifest = manifest;
        manifest.authenticate(&mac_key)?;
        let encoded = manifest.encode()?;
        let etag = hex::encode(md5.finalize());
        let written = self
            .commit_object(
                path,
                &set,
                &bucket_ref,
                encoded,
                (total, etag, content_type, user_meta),
                pre,
            )
            .await?;
        self.record_write(tenant, bucket, total);
        Ok(written)
    }

    /// The last step of every object write: stores the manifest and writes the metadata
    /// that makes the object visible, through the key's coordinator when there are
    /// conditions.
    async fn commit_object(
        self: &Arc<Self>,
        path: ObjectPath,
        set: &[Candidate],
        bucket_ref: &BucketRef,
        encoded_manifest: Vec<u8>,
        (size, etag, content_type, user_meta): (u64, String, String, BTreeMap<String, String>),
        pre: Preconditions,
    ) -> Result<ObjectMeta, StorageError> {
        let manifest_id = Manifest::id_of(&encoded_manifest);
        let info = ObjectInfo {
            manifest: manifest_id,
            size,
            etag,
            content_type,
            user_meta,
            created_ms: unix_ms(),
        };
        let store_manifest = self.put_bucket_chunk(
            manifest_id,
            Bytes::from(encoded_manifest),
            set,
            bucket_ref,
            Route::Mesh,
        );
        if !pre.is_empty() {
            // The manifest must be stored before the metadata naming it can be visible.
            store_manifest.await?;
            return match self.commit_conditional(path, Some(info), pre, set).await? {
                Some(meta) => Ok(meta),
                None => Err(StorageError::Internal(
                    "a conditional write reported nothing written".into(),
                )),
            };
        }
        // The current version is read while the manifest is stored, so ordering this
        // write after it costs no extra round trip.
        let (stored, current) = tokio::join!(store_manifest, self.get_meta(&path, set));
        stored?;
        let current = current?;
        self.write_meta(path, Some(info), current.as_ref(), set)
            .await
    }

    /// An object's current metadata (never a tombstone).
    pub async fn head_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectMeta, ObjectInfo), StorageError> {
        let opened = self.open_object(tenant, bucket, key, None).await?;
        Ok((opened.meta, opened.info))
    }

    /// An object's current metadata from a read quorum, as [`Storage::head_object`], ready
    /// to be read with [`Storage::read_opened`]. With `read_from`, the caller means to
    /// read the object from that byte: an edge that holds no replica of the bucket's
    /// metadata then also asks the nearest replica for the manifest and the first chunks,
    /// in parallel with the quorum read, and keeps what the quorum vouches for (see
    /// `forward`), so the read that follows needs no further round trip for them.
    pub async fn open_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        read_from: Option<u64>,
    ) -> Result<OpenedObject, StorageError> {
        self.require_bucket(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        let set = self.storage_set();
        let forwarded = read_from.and_then(|from| self.start_forwarded_read(&path, from));
        let (current, prefetched) = match forwarded {
            Some(read) => self.read_meta_far(&path, &set, read).await?,
            None => (self.get_meta(&path, &set).await?, None),
        };
        let Some((meta, info)) = current.and_then(|m| m.info.clone().map(|i| (m, i))) else {
            return Err(StorageError::NoSuchKey(key.to_owned()));
        };
        Ok(OpenedObject {
            meta,
            info,
            prefetched: Arc::new(prefetched.unwrap_or_default()),
        })
    }

    /// The manifest of an object, fetched and verified.
    pub async fn manifest(&self, info: &ObjectInfo) -> Result<Manifest, StorageError> {
        let set = self.storage_set();
        let bytes = self.get_chunk(info.manifest, &set).await?;
        Ok(Manifest::decode(&bytes)?)
    }

    /// Reads an object, or the byte range `[start, end)` of it, decrypting at this edge.
    pub async fn get_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        keys: &(impl Keyring + ?Sized),
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ObjectRead, StorageError> {
        let from = range.map_or(0, |(start, _)| start);
        let opened = self.open_object(tenant, bucket, key, Some(from)).await?;
        self.read_opened(opened, keys, range).await
    }

    /// Reads the object [`Storage::open_object`] found (that version, whatever was written
    /// since), or the byte range `[start, end)` of it, decrypting at this edge.
    pub async fn read_opened(
        self: &Arc<Self>,
        opened: OpenedObject,
        keys: &(impl Keyring + ?Sized),
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ObjectRead, StorageError> {
        let OpenedObject {
            meta,
            info,
            prefetched,
        } = opened;
        let path = meta.path.clone();
        let tenant = path.tenant;
        let set = self.storage_set();
        let manifest_bytes = match &prefetched.manifest {
            Some(bytes) => bytes.clone(),
            None => {
                self.get_object_chunk(info.manifest, &set, Some(tenant), &tenant, &path.bucket)
                    .await?
            }
        };
        let manifest = Manifest::decode(&manifest_bytes)?;
        // One object key per segment (a single-segment object has one), for the path asked
        // for (never one a replica sent); the manifest is authenticated before any of it is
        // used.
        let object_keys = open_manifest(&manifest, &path, keys)?;
        if info.size != manifest.object_size {
            return Err(StorageError::Integrity(format!(
                "the metadata says {} bytes but the manifest {}",
                info.size, manifest.object_size
            )));
        }
        let size = manifest.object_size;
        let (start, end) = match range {
            None => (0, size),
            Some((start, end)) => {
                let end = end.map(|e| e.saturating_add(1).min(size)).unwrap_or(size);
                if start >= size || start >= end {
                    return Err(StorageError::InvalidRange(format!(
                        "range starts at {start} but the object has {size} bytes"
                    )));
                }
                (start, end)
            }
        };
        let keys: Vec<_> = object_keys
            .into_iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let segment = manifest.segment(i)?;
                Some((key, segment.nonce_prefix, segment.chunks.to_vec()))
            })
            .collect();
        let pieces = if start == end {
            Vec::new()
        } else {
            manifest.pieces_for_range(start, end)
        };
        let this = self.clone();
        let keys = Arc::new(keys);
        let bucket = Arc::new(path.bucket.clone());
        // Fetch up to 4 chunks ahead while the client reads; memory stays bounded.
        let body = futures::stream::iter(pieces)
            .map(move |piece| {
                let this = this.clone();
                let set = set.clone();
                let keys = keys.clone();
                let prefetched = prefetched.clone();
                let bucket = bucket.clone();
                async move {
                    let Some((object_key, nonce_prefix, chunks)) = keys.get(piece.segment) else {
                        return Err(StorageError::Internal(format!(
                            "segment {} is missing from the manifest",
                            piece.segment
                        )));
                    };
                    let Some(chunk) = chunks.get(piece.chunk) else {
                        return Err(StorageError::Internal(format!(
                            "chunk {} is missing from the manifest",
                            piece.chunk
                        )));
                    };
                    // A chunk a forwarded read brought is used once; the rest are read
                    // from the nearest holders as always.
                    let sealed = match prefetched.take_chunk(&chunk.id) {
                        Some((node, sealed)) => {
                            let bytes = sealed.len() as u64;
                            this.metrics.chunk_read_bytes.inc_by(bytes);
                            this.observe_egress(tenant, node, bytes);
                            sealed
                        }
                        None => {
                            this.get_object_chunk(chunk.id, &set, Some(tenant), &tenant, &bucket)
                                .await?
                        }
                    };
                    let plain = xnode_store::open_chunk(
                        object_key,
                        nonce_prefix,
                        piece.chunk as u64,
                        &sealed,
                    )?;
                    let from = piece.offset as usize;
                    let to = from + piece.len as usize;
                    if to > plain.len() {
                        return Err(StorageError::Internal(format!(
                            "chunk {} is shorter than its manifest says",
                            piece.chunk
                        )));
                    }
                    Ok(Bytes::copy_from_slice(&plain[from..to]))
                }
            })
            .buffered(4);
        Ok(ObjectRead {
            meta,
            info,
            range: (start, end),
            body: Box::pin(body),
        })
    }

    /// Deletes an object by writing a tombstone with quorum.
    pub async fn delete_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
    ) -> Result<(), StorageError> {
        self.delete_object_if(tenant, bucket, key, Preconditions::default())
            .await
            .map(|_| ())
    }

    /// [`Storage::delete_object`] only if `pre` holds (S3's `If-Match`,
    /// `x-amz-if-match-last-modified-time` and `x-amz-if-match-size`), decided atomically
    /// by the key's coordinator. A conditional delete of an object that does not exist
    /// succeeds and writes nothing, as in S3. Returns whether a tombstone was written
    /// (`false` only for that conditional delete of nothing), so a caller that writes
    /// more after a delete (a versioned bucket's delete marker) can write nothing too.
    pub async fn delete_object_if(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        pre: Preconditions,
    ) -> Result<bool, StorageError> {
        self.require_bucket(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        let set = self.storage_set();
        if !pre.is_empty() {
            return self
                .commit_conditional(path, None, pre, &set)
                .await
                .map(|written| written.is_some());
        }
        // Read first, so the tombstone is ordered after the version it deletes whatever
        // the clocks of the edges that wrote it (see `write_meta`).
        let current = self.get_meta(&path, &set).await?;
        self.write_meta(path, None, current.as_ref(), &set)
            .await
            .map(|_| true)
    }

    /// Makes one object out of existing objects of this tenant, given as `(bucket, key)`
    /// (for example the parts of a multipart upload, kept as internal objects, or the source
    /// of a copy), in order, **without copying their data**: the new manifest lists each source's chunks as a segment, with the source's
    /// object key re-wrapped for the new path. The sources stay as they are (the caller
    /// deletes them); their chunks are then referenced by the new object. The ETag is the
    /// caller's (S3 computes multipart ETags its own way). Like `put_object`, nothing is
    /// visible until the metadata write succeeds.
    #[allow(clippy::too_many_arguments)]
    pub async fn compose_object(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        keys: &(impl Keyring + ?Sized),
        sources: &[(String, String)],
        content_type: String,
        user_meta: BTreeMap<String, String>,
        etag: String,
    ) -> Result<ObjectMeta, StorageError> {
        self.compose_object_if(
            tenant,
            bucket,
            key,
            keys,
            sources,
            content_type,
            user_meta,
            etag,
            Preconditions::default(),
        )
        .await
    }

    /// [`Storage::compose_object`], made visible only if `pre` holds for the object's
    /// current version (CompleteMultipartUpload and CopyObject with `If-Match` or
    /// `If-None-Match`), decided atomically by the key's coordinator.
    #[allow(clippy::too_many_arguments)]
    pub async fn compose_object_if(
        self: &Arc<Self>,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
        keys: &(impl Keyring + ?Sized),
        sources: &[(String, String)],
        content_type: String,
        user_meta: BTreeMap<String, String>,
        etag: String,
        pre: Preconditions,
    ) -> Result<ObjectMeta, StorageError> {
        self.require_bucket(tenant, bucket)?;
        let path = ObjectPath::new(*tenant, bucket.to_owned(), key.to_owned())?;
        let storage_key = path.storage_key();
        let mut segments: Vec<xnode_store::Segment> = Vec::with_capacity(sources.len());
        // The first segment's key authenticates the new manifest.
        let mut first_key: Option<ObjectKey> = None;
        for (source_bucket, source_key) in sources {
            let (_, info) = self.head_object(tenant, source_bucket, source_key).await?;
            let manifest = self.manifest(&info).await?;
            let source_path = ObjectPath::new(*tenant, source_bucket.clone(), source_key.clone())?;
            let object_keys = open_manifest(&manifest, &source_path, keys)?;
            for (i, object_key) in object_keys.into_iter().enumerate() {
                let Some(segment) = manifest.segment(i) else {
                    break;
                };
                let size = segment.chunks.iter().map(|c| u64::from(c.plain_len)).sum();
                if size == 0 {
                    continue;
                }
                segments.push(xnode_store::Segment {
                    size,
                    chunk_size: segment.chunk_size,
                    chunks: segment.chunks.to_vec(),
                    nonce_prefix: segment.nonce_prefix,
                    wrapped_key: keys.wrap_object_key(bucket, &storage_key, &object_key)?,
                    plaintext_blake3: if i == 0 && manifest.segments.is_empty() {
                        manifest.plaintext_blake3
                    } else {
                        [0u8; 32]
                    },
                });
                if first_key.is_none() {
                    first_key = Some(object_key);
                }
            }
        }
        let object_size: u64 = segments.iter().map(|s| s.size).sum();
        // A copy or a completed multipart upload counts in full, as S3 bills it, though
        // it shares the chunks of its sources. An object rewritten onto itself (new
        // metadata or tags over the same chunks) adds nothing.
        let in_place = matches!(sources, [(b, k)] if b == bucket && k == key);
        if !in_place {
            self.admit_write(tenant, bucket, object_size).await?;
        }
        let mut manifest = if segments.is_empty() {
            // An empty object: one empty segment under a fresh key.
            let fresh = ObjectKey::generate();
            let wrapped_key = keys.wrap_object_key(bucket, &storage_key, &fresh)?;
            first_key = Some(fresh);
            Manifest {
                object_size: 0,
                chunk_size: self.config.chunk_size,
                chunks: Vec::new(),
                nonce_prefix: xnode_store::random_nonce_prefix(),
                wrapped_key,
                plaintext_blake3: *blake3::hash(&[]).as_bytes(),
                segments: Vec::new(),
                mac: None,
            }
        } else {
            let first = segments.remove(0);
            Manifest {
                object_size,
                chunk_size: first.chunk_size,
                chunks: first.chunks,
                nonce_prefix: first.nonce_prefix,
                wrapped_key: first.wrapped_key,
                plaintext_blake3: first.plaintext_blake3,
                segments,
                mac: None,
            }
        };
        let Some(first_key) = first_key else {
            return Err(StorageError::Internal(
                "a composed manifest without a first segment key".into(),
            ));
        };
        manifest.authenticate(&first_key)?;
        manifest.validate()?;
        let set = self.storage_set();
        let bucket_ref = BucketRef {
            tenant: *tenant,
            name: bucket.to_owned(),
        };
        let encoded = manifest.encode()?;
        let written = self
            .commit_object(
                path,
                &set,
                &bucket_ref,
                encoded,
                (object_size, etag, content_type, user_meta),
                pre,
            )
            .await?;
        if !in_place {
            self.record_write(tenant, bucket, object_size);
        }
        Ok(written)
    }
}

/// Unwraps the object key of every segment of `manifest` for `path` (the path the client
/// asked for) and checks the manifest's MAC with the first one. An authenticated manifest's
/// keys are wrapped in a context of their own (`wrap_aad`), so a manifest stripped of its
/// MAC cannot open them.
fn open_manifest(
    manifest: &Manifest,
    path: &ObjectPath,
    keys: &(impl Keyring + ?Sized),
) -> Result<Vec<ObjectKey>, StorageError> {
    let storage_key = path.storage_key();
    let mut object_keys = Vec::with_capacity(manifest.segment_count());
    for i in 0..manifest.segment_count() {
        let Some(segment) = manifest.segment(i) else {
            break;
        };
        let key = keys
            .unwrap_object_key(
                &path.bucket,
                &storage_key,
                manifest.is_authenticated(),
                segment.wrapped_key,
            )
            .map_err(|e| match e {
                // A keyring without the bucket's key says which and why.
                e @ xnode_store::StoreError::KeyNotHeld { .. } => StorageError::from(e),
                _ => StorageError::AccessDenied(
                    "the data key does not open this object (wrong tenant key, or a manifest that is not this object's)"
                        .into(),
                ),
            })?;
        object_keys.push(key);
    }
    if let Some(first) = object_keys.first() {
        manifest.verify(first)?;
    }
    Ok(object_keys)
}
