//! S3 Object Ownership: `Put/Get/DeleteBucketOwnershipControls` and the
//! `x-amz-object-ownership` header of `CreateBucket`, kept as an owner-signed bucket
//! setting (kind `ownership`, see [`super::settings`]) like the bucket's other settings.
//!
//! The setting decides who owns an object a tenant other than the bucket's owner writes
//! (through a bucket policy or ACL grant), and whether ACLs count at all:
//!
//! - `BucketOwnerEnforced`: ACLs are disabled. The bucket's owner owns every object, ACLs
//!   grant nothing, and a request that sets an ACL other than `bucket-owner-full-control`
//!   fails with `AccessControlListNotSupported`.
//! - `BucketOwnerPreferred`: the writer owns its object, unless the write carries the
//!   `bucket-owner-full-control` canned ACL, in which case the bucket's owner does.
//! - `ObjectWriter`: the writer owns its object.
//!
//! A bucket with no setting behaves as `ObjectWriter`, as S3 buckets made before 2023 and
//! Ceph RGW buckets do, so ACL grants keep working; `GetBucketOwnershipControls` then
//! answers `OwnershipControlsNotFoundError`.
//!
//! The owner of an object other than the bucket's owner is recorded in the object's
//! sealed metadata (entry `:owner`, the writer's tenant id in hex); an object without the
//! entry (every object written before this existed) is the bucket owner's. The object is
//! still stored as the bucket owner's object, encrypted with the bucket owner's key and
//! counted in its quota: ownership decides who the ACL answers name and who holds the
//! object's ACL, never whose key encrypts it.

use s3s::dto::{
    DeleteBucketOwnershipControlsInput, DeleteBucketOwnershipControlsOutput,
    GetBucketOwnershipControlsInput, GetBucketOwnershipControlsOutput, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, PutBucketOwnershipControlsInput,
    PutBucketOwnershipControlsOutput,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use xnode_types::PublicKeyBytes;

use super::Gateway;
use super::settings::bucket_setting;

/// The setting kind of a bucket's object ownership.
pub(crate) const OWNERSHIP_KIND: &str = "ownership";
/// Format version of a stored [`OwnershipDocument`].
const OWNERSHIP_VERSION: u32 = 1;
/// Where an object's owner is kept in its metadata, when it is not the bucket's owner.
pub(crate) const OBJECT_OWNER: &str = ":owner";
/// The canned ACL that gives the bucket's owner full control of an object.
pub(crate) const BUCKET_OWNER_FULL_CONTROL: &str = "bucket-owner-full-control";

/// The three object ownership modes S3 defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
}

impl Mode {
    fn parse(text: &str) -> S3Result<Self> {
        match text {
            ObjectOwnership::BUCKET_OWNER_ENFORCED => Ok(Mode::BucketOwnerEnforced),
            ObjectOwnership::BUCKET_OWNER_PREFERRED => Ok(Mode::BucketOwnerPreferred),
            ObjectOwnership::OBJECT_WRITER => Ok(Mode::ObjectWriter),
            other => Err(s3_error!(
                InvalidArgument,
                "{other:?} is not an object ownership (BucketOwnerEnforced, BucketOwnerPreferred or ObjectWriter)"
            )),
        }
    }

    fn as_s3(self) -> &'static str {
        match self {
            Mode::BucketOwnerEnforced => ObjectOwnership::BUCKET_OWNER_ENFORCED,
            Mode::BucketOwnerPreferred => ObjectOwnership::BUCKET_OWNER_PREFERRED,
            Mode::ObjectWriter => ObjectOwnership::OBJECT_WRITER,
        }
    }
}

/// The stored setting. Unknown fields are refused, so a document a newer gateway wrote
/// with more in it reads as absent rather than half understood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OwnershipDocument {
    pub(crate) v: u32,
    pub(crate) object_ownership: Mode,
}

/// The ownership setting of bucket `name`, if its owner set one for the bucket's current
/// claim. A document that does not decode, or of another version, counts as none: it can
/// only have been signed by the owner (the setting's signature and binding to the bucket
/// are checked by `bucket_setting`), so reading it as the default harms no one else.
pub(crate) fn ownership_of(registry: &xnode_registry::Registry, name: &str) -> Option<Mode> {
    bucket_setting::<OwnershipDocument>(registry, OWNERSHIP_KIND, name)
        .filter(|d| d.v == OWNERSHIP_VERSION)
        .map(|d| d.object_ownership)
}

/// Whether bucket `name` has ACLs disabled (`BucketOwnerEnforced`).
pub(crate) fn acls_disabled(registry: &xnode_registry::Registry, name: &str) -> bool {
    ownership_of(registry, name) == Some(Mode::BucketOwnerEnforced)
}

/// The owner of an object with metadata `meta` in a bucket owned by `bucket_owner`: the
/// tenant its `:owner` entry names, or the bucket's owner. An entry that does not parse
/// (which only the bucket owner's own gateway could have written) reads as the bucket
/// owner's, the side that never grants anyone else anything.
pub(crate) fn object_owner(
    meta: &BTreeMap<String, String>,
    bucket_owner: &PublicKeyBytes,
) -> PublicKeyBytes {
    meta.get(OBJECT_OWNER)
        .and_then(|hex| PublicKeyBytes::from_hex(hex).ok())
        .unwrap_or(*bucket_owner)
}

/// The canned ACL a request's headers ask for, if any.
fn canned_acl(headers: &hyper::HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-acl")
        .map(|v| v.to_str().unwrap_or("\u{FFFD}").trim())
}

/// Whether a request sets an ACL: a canned ACL or any `x-amz-grant-*` header.
fn sets_acl(headers: &hyper::HeaderMap) -> bool {
    headers.contains_key("x-amz-acl")
        || headers
            .keys()
            .any(|name| name.as_str().starts_with("x-amz-grant-"))
}

/// `AccessControlListNotSupported`, S3's answer to an ACL on a bucket with ACLs disabled.
pub(crate) fn acls_not_supported() -> s3s::S3Error {
    s3_error!(
        AccessControlListNotSupported,
        "The bucket does not allow ACLs (its object ownership is BucketOwnerEnforced)"
    )
}

/// Who owns an object that `writer` (`None`: an unsigned request) writes into bucket
/// `bucket` owned by `bucket_owner`, with the request's `headers`; refuses with
/// `AccessControlListNotSupported` an ACL that a bucket with ACLs disabled does not take.
/// Anonymous writers own nothing: their objects are the bucket owner's.
pub(crate) fn owner_of_write(
    registry: &xnode_registry::Registry,
    bucket: &str,
    bucket_owner: &PublicKeyBytes,
    writer: Option<&PublicKeyBytes>,
    headers: &hyper::HeaderMap,
) -> S3Result<PublicKeyBytes> {
    let mode = ownership_of(registry, bucket).unwrap_or(Mode::ObjectWriter);
    let full_control = canned_acl(headers) == Some(BUCKET_OWNER_FULL_CONTROL);
    if mode == Mode::BucketOwnerEnforced && sets_acl(headers) && !full_control {
        return Err(acls_not_supported());
    }
    let writer = writer.copied().unwrap_or(*bucket_owner);
    Ok(match mode {
        Mode::BucketOwnerEnforced => *bucket_owner,
        Mode::BucketOwnerPreferred if full_control => *bucket_owner,
        Mode::BucketOwnerPreferred | Mode::ObjectWriter => writer,
    })
}

/// Records `owner` as the owner of an object whose metadata is `meta`: the `:owner` entry
/// when it is not the bucket's owner, none otherwise (so the bucket owner's objects keep
/// the format they always had).
pub(crate) fn record_owner(
    meta: &mut BTreeMap<String, String>,
    owner: &PublicKeyBytes,
    bucket_owner: &PublicKeyBytes,
) {
    if owner == bucket_owner {
        meta.remove(OBJECT_OWNER);
    } else {
        meta.insert(OBJECT_OWNER.to_owned(), owner.to_hex());
    }
}

/// The ownership a `PutBucketOwnershipControls` body asks for: exactly one rule, as S3
/// requires.
fn requested_mode(controls: &OwnershipControls) -> S3Result<Mode> {
    match controls.rules.as_slice() {
        [rule] => Mode::parse(rule.object_ownership.as_str()),
        _ => Err(s3_error!(
            MalformedXML,
            "OwnershipControls must hold exactly one rule"
        )),
    }
}

impl Gateway {
    /// Who will own what `req` writes into `bucket` of `bucket_owner` (the writer or the
    /// bucket's owner, by the bucket's mode), and the object ACL the request asks for.
    pub(super) fn owner_and_acl_of_write<T>(
        &self,
        req: &S3Request<T>,
        bucket_owner: &PublicKeyBytes,
        bucket: &str,
    ) -> S3Result<(PublicKeyBytes, Option<String>)> {
        let owner = owner_of_write(
            self.storage.registry(),
            bucket,
            bucket_owner,
            self.requester_of(req).as_ref(),
            &req.headers,
        )?;
        let acl = self.requested_object_acl(&req.headers, &owner, bucket_owner, bucket)?;
        Ok((owner, acl))
    }

    /// The tenant a request is made by: the signer, also when the request was granted and
    /// is carried out with the bucket owner's key; `None` for an unsigned request.
    pub(super) fn requester_of<T>(&self, req: &S3Request<T>) -> Option<PublicKeyBytes> {
        match req.extensions.get::<crate::authorize::ActingFor>() {
            Some(acting) => acting.requester,
            None => self
                .keys
                .get(&req.credentials.as_ref()?.access_key)
                .ok()
                .flatten()
                .map(|k| k.tenant),
        }
    }

    /// Refuses to disable the ACLs of a bucket whose ACL grants anyone but its owner,
    /// as S3 does: those grants would silently stop working.
    fn check_enforceable(&self, bucket: &str, owner: &PublicKeyBytes) -> S3Result<()> {
        let acl = super::acl::bucket_acl(self.storage.registry(), bucket, owner);
        if acl != super::acl::Acl::private(owner) {
            return Err(s3_error!(
                InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
            ));
        }
        Ok(())
    }

    /// Stores `mode` as bucket `bucket`'s object ownership (signed with `key`, the owner's).
    pub(super) async fn store_ownership(
        &self,
        key: &crate::keys::AccessKey,
        bucket: &str,
        mode: Mode,
    ) -> S3Result<()> {
        if mode == Mode::BucketOwnerEnforced {
            self.check_enforceable(bucket, &key.tenant)?;
        }
        let document = OwnershipDocument {
            v: OWNERSHIP_VERSION,
            object_ownership: mode,
        };
        self.put_bucket_setting(key, OWNERSHIP_KIND, bucket, Some(&document))
            .await
    }

    /// The ownership a `CreateBucket` asks for in `x-amz-object-ownership`, checked.
    pub(super) fn creation_mode(ownership: Option<&ObjectOwnership>) -> S3Result<Option<Mode>> {
        ownership.map(|o| Mode::parse(o.as_str())).transpose()
    }

    pub(super) async fn put_bucket_ownership_controls_impl(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let mode = requested_mode(&input.ownership_controls)?;
        self.store_ownership(&key, &input.bucket, mode).await?;
        Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
    }

    pub(super) async fn get_bucket_ownership_controls_impl(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        let Some(mode) = ownership_of(self.storage.registry(), &req.input.bucket) else {
            return Err(s3_error!(
                OwnershipControlsNotFoundError,
                "The bucket ownership controls were not found"
            ));
        };
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls {
                rules: vec![OwnershipControlsRule {
                    object_ownership: ObjectOwnership::from_static(mode.as_s3()),
                }],
            }),
        }))
    }

    pub(super) async fn delete_bucket_ownership_controls_impl(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        let key = self.key_of(&req)?;
        self.put_bucket_setting::<OwnershipDocument>(&key, OWNERSHIP_KIND, &req.input.bucket, None)
            .await?;
        Ok(S3Response::new(DeleteBucketOwnershipControlsOutput {}))
    }
}

#[cfg(test)]
mod tests;
