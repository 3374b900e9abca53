//! Bucket versioning: `PutBucketVersioning`/`GetBucketVersioning`, version ids on writes,
//! delete markers, reads and deletes by version id and `ListObjectVersions`.
//!
//! Every version of an object in a versioned bucket is an internal object of its own,
//! `\0ver/<key>/<id>`: sealed, replicated, quota-counted and kept alive for garbage
//! collection exactly like any other object, so a hostile replica can forge or roll back a
//! version no more than it can an object. The object's ordinary key keeps a copy of its
//! current version (composed from the version object, sharing its chunks), so reads and
//! listings without a version id, conditional writes and everything else that works on
//! the current object are unchanged. Internal ids sort newest first (`u64::MAX` minus a
//! time stamp, then random bits), so a key's versions list in S3's order. Suspended
//! writes are the `null` version: the version object is stored under a fresh internal id
//! and carries `null` as its public id, and older `null` versions of the key are removed.
//! Objects written before versioning was enabled are `null` versions that live only
//! under their key; a versioned write first preserves such an object as a version object.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use xnode_storage::StorageError;
use xnode_storage::buckets::Versioning;
use xnode_storage::conditional::{Decision, decide_on_delete_marker};
use xnode_store::{ObjectInfo, ObjectMeta, VERSIONS_DIRECTORY, internal_key};
use xnode_types::PublicKeyBytes;

use super::objects::last_modified_changed;
use super::{Gateway, MAX_KEYS, empty_body, etag_of, last_modified, s3_err, unix_ms};
use crate::keys::AccessKey;

/// The metadata entry holding an object's public version id (`null` or 32 hex digits).
pub(super) const VERSION_ID: &str = ":version-id";
/// The metadata entry that makes a version object a delete marker.
const DELETE_MARKER: &str = ":delete-marker";
/// The public id of the version of an unversioned or suspended write.
pub(super) const NULL_VERSION: &str = "null";
/// How many times a delete of a version retries after losing a race to another write of
/// the same key, and looks again at a key whose versions other requests are changing at
/// the same moment (see `restore_current`).
const RESTORE_ATTEMPTS: usize = 16;
/// Length of an internal version id (hex digits).
const ID_LEN: usize = 32;

/// The last time stamp handed out, so ids from one gateway never repeat or go backwards.
static LAST_STAMP: AtomicU64 = AtomicU64::new(0);

/// A fresh internal version id: newer ids sort first.
fn new_internal_id() -> String {
    // Milliseconds shifted left by 12 bits leave room for 4096 ids per millisecond.
    let now = unix_ms().saturating_mul(4096);
    let mut last = LAST_STAMP.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(last.saturating_add(1));
        match LAST_STAMP.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    format!("{:016x}{:016x}", u64::MAX - stamp, rand::random::<u64>())
}

fn is_internal_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The prefix of every version object of `key`.
fn versions_prefix(key: &str) -> String {
    internal_key(&format!("{VERSIONS_DIRECTORY}{key}/"))
}

/// The internal object holding version `id` of `key`.
pub(crate) fn version_key(key: &str, id: &str) -> String {
    internal_key(&format!("{VERSIONS_DIRECTORY}{key}/{id}"))
}

/// The object key and internal id of a version object's key.
pub(super) fn parse_version_key(stored: &str) -> Option<(&str, &str)> {
    let rest = stored.strip_prefix(&internal_key(VERSIONS_DIRECTORY))?;
    let split = rest.len().checked_sub(ID_LEN + 1)?;
    let (key, tail) = (rest.get(..split)?, rest.get(split..)?);
    let id = tail.strip_prefix('/')?;
    (is_internal_id(id) && !key.is_empty()).then_some((key, id))
}

/// The public version id an object's metadata carries (`null` for objects written
/// without versioning).
pub(super) fn public_id(info: &ObjectInfo) -> String {
    info.user_meta
        .get(VERSION_ID)
        .cloned()
        .unwrap_or_else(|| NULL_VERSION.to_owned())
}

pub(super) fn is_delete_marker(info: &ObjectInfo) -> bool {
    info.user_meta.contains_key(DELETE_MARKER)
}

/// A version being written: its internal object and public id.
pub(super) struct NewVersion {
    pub(super) stored_key: String,
    pub(super) public_id: String,
    suspended: bool,
}

impl NewVersion {
    /// The `x-amz-version-id` a write answers: none for the `null` version of a
    /// suspended bucket, as S3 answers it.
    pub(super) fn response_id(self) -> Option<String> {
        (!self.suspended).then_some(self.public_id)
    }
}

/// One version in a key's history.
struct Version {
    key: String,
    /// The internal id; empty for a `null` version that lives only under its key.
    internal_id: String,
    info: ObjectInfo,
}

impl Gateway {
    pub(super) fn versioning(&self, bucket: &str) -> Versioning {
        xnode_storage::buckets::versioning_of(self.storage.registry(), bucket)
    }

    /// Every version of `key`, newest first (internal ones only).
    async fn versions_of(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        key: &str,
    ) -> S3Result<Vec<Version>> {
        let prefix = versions_prefix(key);
        let entries = self.list_all(tenant, bucket, &prefix).await?;
        Ok(entries
            .into_iter()
            .filter_map(|m| {
                let (k, id) = parse_version_key(&m.path.key)?;
                if k != key {
                    return None;
                }
                Some(Version {
                    key: k.to_owned(),
                    internal_id: id.to_owned(),
                    info: m.info?,
                })
            })
            .collect())
    }

    /// Every live object under `prefix`, following pages.
    pub(super) async fn list_all(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        prefix: &str,
    ) -> S3Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .storage()
                .list_objects(tenant, bucket, prefix, after.as_deref(), MAX_KEYS)
                .await
                .map_err(s3_err)?;
            let full = page.len() >= MAX_KEYS;
            if let Some(last) = page.last() {
                after = Some(last.path.key.clone());
            }
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Prepares a write of `object` in a versioned bucket: preserves a `null` version that
    /// lives only under its key, and stamps `meta` with the new version's public id.
    /// `None` in an unversioned bucket (the write goes straight to its key).
    pub(super) async fn begin_version(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        meta: &mut BTreeMap<String, String>,
    ) -> S3Result<Option<NewVersion>> {
        let suspended = match self.versioning(bucket) {
            Versioning::Unversioned => {
                meta.remove(VERSION_ID);
                return Ok(None);
            }
            Versioning::Enabled => false,
            Versioning::Suspended => true,
        };
        self.preserve_unversioned(key, bucket, object).await?;
        let internal = new_internal_id();
        let public_id = if suspended {
            NULL_VERSION.to_owned()
        } else {
            internal.clone()
        };
        meta.remove(DELETE_MARKER);
        meta.insert(VERSION_ID.to_owned(), public_id.clone());
        Ok(Some(NewVersion {
            stored_key: version_key(object, &internal),
            public_id,
            suspended,
        }))
    }

    /// An object written before versioning was enabled becomes a version object (its
    /// `null` version) before anything replaces it.
    async fn preserve_unversioned(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
    ) -> S3Result<()> {
        let info = match self
            .storage()
            .head_object(&key.tenant, bucket, object)
            .await
        {
            Ok((_, info)) => info,
            Err(StorageError::NoSuchKey(_)) => return Ok(()),
            Err(e) => return Err(s3_err(e)),
        };
        if info.user_meta.contains_key(VERSION_ID) {
            return Ok(());
        }
        // Dated by its own creation, so it sorts below every later version.
        let written_ms = super::system_meta::last_modified_ms(&info);
        let stamp = written_ms.saturating_mul(4096);
        let internal = format!("{:016x}{:016x}", u64::MAX - stamp, 0u64);
        let mut meta = info.user_meta.clone();
        meta.insert(VERSION_ID.to_owned(), NULL_VERSION.to_owned());
        super::system_meta::keep_last_modified(&mut meta, &info);
        self.storage()
            .compose_object(
                &key.tenant,
                bucket,
                &version_key(object, &internal),
                &self.rewrap_key(key, &info.user_meta)?,
                &[(bucket.to_owned(), object.to_owned())],
                info.content_type.clone(),
                meta,
                info.etag.clone(),
            )
            .await
            .map_err(s3_err)?;
        Ok(())
    }

    /// Makes a written version object the object's current version, if `pre` holds for
    /// the current one (conditional writes are decided on the object's key, as without
    /// versioning). A version whose condition failed is removed again. An unconditional
    /// write that lost the key to another write of the same moment keeps its version (S3
    /// keeps every version of concurrent PUTs); the key then gets the newest version.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish_version(
        &self,
        key: &AccessKey,
        data_key: &xnode_store::DataKey,
        bucket: &str,
        object: &str,
        version: &NewVersion,
        info: &ObjectInfo,
        pre: xnode_storage::conditional::Preconditions,
    ) -> S3Result<()> {
        let unconditional = pre.is_empty();
        // The key's copy is the version, not a later write of it.
        let mut meta = info.user_meta.clone();
        super::system_meta::keep_last_modified(&mut meta, info);
        let current = self
            .storage()
            .compose_object_if(
                &key.tenant,
                bucket,
                object,
                data_key,
                &[(bucket.to_owned(), version.stored_key.clone())],
                info.content_type.clone(),
                meta,
                info.etag.clone(),
                pre,
            )
            .await;
        match current {
            Ok(_) => {}
            Err(StorageError::Conflict(_)) if unconditional => {
                self.restore_current(key, bucket, object).await?;
            }
            Err(e) => {
                if let Err(cleanup) = self
                    .storage()
                    .delete_object(&key.tenant, bucket, &version.stored_key)
                    .await
                {
                    tracing::warn!(error = %cleanup, "could not remove a version whose write failed");
                }
                return Err(s3_err(e));
            }
        }
        if version.suspended {
            self.remove_other_null_versions(key, bucket, object, &version.stored_key)
                .await?;
        }
        Ok(())
    }

    /// A suspended bucket keeps one `null` version per key: the one just written.
    async fn remove_other_null_versions(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        keep: &str,
    ) -> S3Result<()> {
        for v in self.versions_of(&key.tenant, bucket, object).await? {
            let stored = version_key(object, &v.internal_id);
            if stored != keep && public_id(&v.info) == NULL_VERSION {
                self.storage()
                    .delete_object(&key.tenant, bucket, &stored)
                    .await
                    .map_err(s3_err)?;
            }
        }
        Ok(())
    }

    /// The stored key of version `version_id` of `object`, and its metadata.
    pub(super) async fn find_version(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        object: &str,
        version_id: &str,
    ) -> S3Result<(String, ObjectInfo)> {
        let no_such = || s3_error!(NoSuchVersion, "The specified version does not exist.");
        if version_id == NULL_VERSION {
            // A `null` version object (a suspended write, or a preserved unversioned
            // object) first; else an object written without versioning, under its key.
            if let Some(v) = self
                .versions_of(tenant, bucket, object)
                .await?
                .into_iter()
                .find(|v| public_id(&v.info) == NULL_VERSION)
            {
                return Ok((version_key(object, &v.internal_id), v.info));
            }
            return match self.storage().head_object(tenant, bucket, object).await {
                Ok((_, info)) if !info.user_meta.contains_key(VERSION_ID) => {
                    Ok((object.to_owned(), info))
                }
                Ok(_) | Err(StorageError::NoSuchKey(_)) => Err(no_such()),
                Err(e) => Err(s3_err(e)),
            };
        }
        if !is_internal_id(version_id) {
            return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
        }
        let stored = version_key(object, version_id);
        match self.storage().head_object(tenant, bucket, &stored).await {
            Ok((_, info)) => Ok((stored, info)),
            Err(StorageError::NoSuchKey(_)) => Err(no_such()),
            Err(e) => Err(s3_err(e)),
        }
    }

    /// The public id of the delete marker that is `object`'s current version, if it is one
    /// (never in an unversioned bucket).
    pub(super) async fn current_delete_marker(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        object: &str,
    ) -> S3Result<Option<String>> {
        if self.versioning(bucket) == Versioning::Unversioned {
            return Ok(None);
        }
        Ok(self
            .versions_of(tenant, bucket, object)
            .await?
            .into_iter()
            .next()
            .filter(|v| is_delete_marker(&v.info))
            .map(|v| public_id(&v.info)))
    }

    /// Resolves the key a GET or HEAD with `versionId` reads. A delete marker cannot be
    /// read (`405`, as S3 answers).
    pub(super) async fn readable_version(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        object: &str,
        version_id: &str,
    ) -> S3Result<String> {
        let (stored, info) = self
            .find_version(tenant, bucket, object, version_id)
            .await?;
        if is_delete_marker(&info) {
            let mut e = s3_error!(
                MethodNotAllowed,
                "The specified method is not allowed against this resource."
            );
            let mut headers = hyper::HeaderMap::new();
            headers.insert(
                "x-amz-delete-marker",
                hyper::header::HeaderValue::from_static("true"),
            );
            e.set_headers(headers);
            return Err(e);
        }
        Ok(stored)
    }

    /// S3's DELETE of one object, with or without a version id. Returns the version id
    /// the response names and whether it is (or removed) a delete marker.
    pub(super) async fn delete_versioned(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        version_id: Option<&str>,
        pre: xnode_storage::conditional::Preconditions,
        bypass_governance: bool,
    ) -> S3Result<(Option<String>, bool)> {
        let tenant = &key.tenant;
        if let Some(id) = version_id {
            let (stored, info) = match self.find_version(tenant, bucket, object, id).await {
                Ok(found) => found,
                // Deleting a version that is not there succeeds, as in S3.
                Err(e) if e.code() == &s3s::S3ErrorCode::NoSuchVersion => {
                    return Ok((Some(id.to_owned()), false));
                }
                Err(e) => return Err(e),
            };
            let marker = is_delete_marker(&info);
            let pre = super::system_meta::pin_last_modified(pre, Some(&info))
                .ok_or_else(last_modified_changed)?;
            // A locked version stays (object lock); a delete marker never holds a lock.
            if let Some(reason) = super::object_lock::VersionLock::of(&info.user_meta)
                .refuses_delete(unix_ms(), bypass_governance)
            {
                return Err(s3_error!(AccessDenied, "Access Denied: {reason}"));
            }
            // The delete's conditions (`If-Match`, last-modified time, size) are about the
            // version named, decided by its key's coordinator as for a current object.
            // Several requests may delete the same version at once (DeleteObjects from
            // many clients); the ones that lose the race to another delete look again
            // and find the version gone, which is the outcome they asked for.
            let mut attempt = 0;
            loop {
                match self
                    .storage()
                    .delete_object_if(tenant, bucket, &stored, pre.clone())
                    .await
                {
                    Ok(_) => break,
                    Err(StorageError::Conflict(_) | StorageError::ConditionalConflict(_))
                        if attempt < RESTORE_ATTEMPTS =>
                    {
                        attempt += 1;
                    }
                    Err(e) => return Err(s3_err(e)),
                }
            }
            if stored != object {
                self.restore_current(key, bucket, object).await?;
            }
            return Ok((Some(id.to_owned()), marker));
        }
        let pre = self
            .pin_current_last_modified(tenant, bucket, object, pre)
            .await?;
        let versioning = self.versioning(bucket);
        if versioning == Versioning::Unversioned {
            self.storage()
                .delete_object_if(tenant, bucket, object, pre)
                .await
                .map_err(s3_err)?;
            return Ok((None, false));
        }
        // A delete marker: the current version goes, the history stays.
        self.preserve_unversioned(key, bucket, object).await?;
        // The object's key is empty when its current version is a delete marker, which
        // the coordinator would take for "no object": such conditions are decided against
        // the marker here (a refusal writes nothing, so deciding at the edge is safe).
        let behind_marker = !pre.is_empty()
            && self
                .current_delete_marker(tenant, bucket, object)
                .await?
                .is_some();
        if behind_marker && decide_on_delete_marker(&pre) == Decision::Failed {
            return Err(s3_err(StorageError::PreconditionFailed(
                "the object's current version is a delete marker".into(),
            )));
        }
        let deleted = self
            .storage()
            .delete_object_if(tenant, bucket, object, pre)
            .await
            .map_err(s3_err)?;
        if !deleted && !behind_marker {
            // A conditional delete of a key with no version at all: success, and no marker.
            return Ok((None, false));
        }
        let internal = new_internal_id();
        let public = if versioning == Versioning::Suspended {
            NULL_VERSION.to_owned()
        } else {
            internal.clone()
        };
        let stored = version_key(object, &internal);
        let mut meta = BTreeMap::new();
        meta.insert(VERSION_ID.to_owned(), public.clone());
        meta.insert(DELETE_MARKER.to_owned(), "true".to_owned());
        self.storage()
            .put_object(
                tenant,
                bucket,
                &stored,
                &key.data_key(),
                "application/x-delete-marker".to_owned(),
                meta,
                Some(0),
                empty_body(),
            )
            .await
            .map_err(s3_err)?;
        if versioning == Versioning::Suspended {
            self.remove_other_null_versions(key, bucket, object, &stored)
                .await?;
        }
        Ok((Some(public), true))
    }

    /// After a version was deleted: the object's key holds the newest remaining version,
    /// or nothing if that is a delete marker or no version is left.
    ///
    /// Deletes of a key's versions may run at once on several gateways (DeleteObjects
    /// from many clients): one may copy a version to the key just as another deletes that
    /// version. So every write here is followed by a fresh look at the versions, until
    /// the key matches the newest one; the last writer always checks its own write.
    async fn restore_current(&self, key: &AccessKey, bucket: &str, object: &str) -> S3Result<()> {
        for _ in 0..RESTORE_ATTEMPTS {
            let newest = self
                .versions_of(&key.tenant, bucket, object)
                .await?
                .into_iter()
                .next();
            let current = match self
                .storage()
                .head_object(&key.tenant, bucket, object)
                .await
            {
                Ok((_, info)) => Some(info),
                Err(StorageError::NoSuchKey(_)) => None,
                Err(e) => return Err(s3_err(e)),
            };
            match newest {
                Some(v) if !is_delete_marker(&v.info) => {
                    if current.as_ref().map(public_id) == Some(public_id(&v.info)) {
                        return Ok(());
                    }
                    let mut meta = v.info.user_meta.clone();
                    super::system_meta::keep_last_modified(&mut meta, &v.info);
                    match self
                        .storage()
                        .compose_object(
                            &key.tenant,
                            bucket,
                            object,
                            &self.rewrap_key(key, &v.info.user_meta)?,
                            &[(bucket.to_owned(), version_key(object, &v.internal_id))],
                            v.info.content_type.clone(),
                            meta,
                            v.info.etag.clone(),
                        )
                        .await
                    {
                        // The version was deleted meanwhile, or another request wrote the
                        // key at the same moment: look again.
                        Ok(_)
                        | Err(StorageError::NoSuchKey(_))
                        | Err(StorageError::Conflict(_)) => {}
                        Err(e) => return Err(s3_err(e)),
                    }
                }
                _ => {
                    // A `null` version living only under the key is its own current
                    // version; a copy of a version object is not.
                    if !current
                        .as_ref()
                        .is_some_and(|c| c.user_meta.contains_key(VERSION_ID))
                    {
                        return Ok(());
                    }
                    match self
                        .storage()
                        .delete_object(&key.tenant, bucket, object)
                        .await
                    {
                        Ok(_)
                        | Err(StorageError::NoSuchKey(_))
                        | Err(StorageError::Conflict(_)) => {}
                        Err(e) => return Err(s3_err(e)),
                    }
                }
            }
        }
        tracing::warn!(
            bucket,
            object,
            "the current version kept changing while it was restored; left to the next delete"
        );
        Ok(())
    }

    pub(super) async fn put_bucket_versioning_impl(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        if input
            .versioning_configuration
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(s3_error!(
                NotImplemented,
                "MFA delete is not supported by this gateway"
            ));
        }
        let status = match input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) if self.lock_enabled(&input.bucket) => {
                return Err(s3_error!(
                    InvalidBucketState,
                    "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed"
                ));
            }
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The versioning status must be Enabled or Suspended"
                ));
            }
        };
        let entry = self.sign_bucket_setting(
            &key,
            &input.bucket,
            xnode_storage::buckets::VERSIONING_KIND,
            Some(&status),
        )?;
        let applied = self
            .storage()
            .set_bucket_versioning(&key.tenant, &input.bucket, entry)
            .map_err(s3_err)?;
        self.storage.registry().spread(&applied).await;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(super) async fn get_bucket_versioning_impl(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let key = self.key_of(&req)?;
        let status = self
            .storage()
            .bucket_versioning(&key.tenant, &req.input.bucket)
            .map_err(s3_err)?;
        let status = match status {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    pub(super) async fn list_object_versions_impl(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let max = match input.max_keys {
            None => MAX_KEYS,
            Some(m) if m >= 0 => usize::try_from(m).unwrap_or(MAX_KEYS).min(MAX_KEYS),
            Some(_) => {
                return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
            }
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let tenant = &key.tenant;
        // Version objects under the prefix, and `null` versions living only under their key.
        let mut all: Vec<Version> = self
            .list_all(
                tenant,
                &input.bucket,
                &internal_key(&format!("{VERSIONS_DIRECTORY}{prefix}")),
            )
            .await?
            .into_iter()
            .filter_map(|m| {
                let (k, id) = parse_version_key(&m.path.key)?;
                if !k.starts_with(prefix.as_str()) {
                    return None;
                }
                Some(Version {
                    key: k.to_owned(),
                    internal_id: id.to_owned(),
                    info: m.info?,
                })
            })
            .collect();
        for m in self.list_all(tenant, &input.bucket, &prefix).await? {
            if let Some(info) = m.info
                && !info.user_meta.contains_key(VERSION_ID)
            {
                all.push(Version {
                    key: m.path.key,
                    internal_id: String::new(),
                    info,
                });
            }
        }
        all.sort_by(|a, b| (&a.key, &a.internal_id).cmp(&(&b.key, &b.internal_id)));
        // The newest version of each key is its latest.
        let mut latest = vec![false; all.len()];
        for (i, v) in all.iter().enumerate() {
            latest[i] = i == 0 || all[i - 1].key != v.key;
        }
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let version_marker = input.version_id_marker.clone().filter(|v| !v.is_empty());
        let start = if key_marker.is_empty() {
            0
        } else if let Some(vm) = version_marker.as_deref() {
            match all
                .iter()
                .position(|v| v.key == key_marker && public_id(&v.info) == vm)
            {
                Some(i) => i + 1,
                None => all
                    .iter()
                    .position(|v| v.key > key_marker)
                    .unwrap_or(all.len()),
            }
        } else {
            // A key marker that is a common prefix (a previous page ended on it) skips
            // every key under it.
            let rolled_up = delimiter
                .as_deref()
                .is_some_and(|d| key_marker.ends_with(d));
            all.iter()
                .position(|v| {
                    v.key > key_marker && !(rolled_up && v.key.starts_with(key_marker.as_str()))
                })
                .unwrap_or(all.len())
        };
        // With `encoding-type=url` (which botocore always asks for and then decodes), every
        // key in the answer is URL-encoded, as in the object listings.
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: &str| {
            if url {
                super::listing::url_encode(s)
            } else {
                s.to_owned()
            }
        };
        // Each version names its own owner, as ListObjects names each object's.
        let owners = super::listing::Owners::of(self, &input.bucket, tenant);
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut count = 0usize;
        let mut truncated = false;
        let mut next: Option<(String, String)> = None;
        let mut i = start;
        while i < all.len() {
            let v = &all[i];
            if count >= max {
                truncated = true;
                break;
            }
            if let Some(d) = delimiter.as_deref()
                && let Some(pos) = v.key.get(prefix.len()..).and_then(|rest| rest.find(d))
            {
                let common = v.key[..prefix.len() + pos + d.len()].to_owned();
                // Every version under the common prefix is rolled into it.
                while i < all.len() && all[i].key.starts_with(&common) {
                    i += 1;
                }
                next = Some((common.clone(), String::new()));
                prefixes.push(common);
                count += 1;
                continue;
            }
            let id = public_id(&v.info);
            if is_delete_marker(&v.info) {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(latest[i]),
                    key: Some(enc(&v.key)),
                    last_modified: Some(last_modified(&v.info)),
                    owner: Some(owners.name(&v.info.user_meta)),
                    version_id: Some(id.clone()),
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(etag_of(&v.info)),
                    is_latest: Some(latest[i]),
                    key: Some(enc(&v.key)),
                    last_modified: Some(last_modified(&v.info)),
                    owner: Some(owners.name(&v.info.user_meta)),
                    size: i64::try_from(v.info.size).ok(),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(id.clone()),
                    ..Default::default()
                });
            }
            next = Some((v.key.clone(), id));
            count += 1;
            i += 1;
        }
        let (next_key_marker, next_version_id_marker) = match (truncated, next) {
            (true, Some((k, v))) => (Some(k), (!v.is_empty()).then_some(v)),
            _ => (None, None),
        };
        Ok(S3Response::new(ListObjectVersionsOutput {
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(&p)),
                    })
                    .collect(),
            ),
            delete_markers: Some(markers),
            delimiter: input.delimiter.as_deref().map(enc),
            encoding_type: input.encoding_type,
            is_truncated: Some(truncated),
            key_marker: input.key_marker.as_deref().map(enc),
            max_keys: i32::try_from(max).ok(),
            name: Some(input.bucket),
            next_key_marker: next_key_marker.as_deref().map(enc),
            next_version_id_marker,
            prefix: input.prefix.as_deref().map(enc),
            version_id_marker: input.version_id_marker,
            versions: Some(versions),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests;
