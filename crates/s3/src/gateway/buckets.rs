//! Bucket operations: listing, creating (a tenant-signed registry claim), deleting (a
//! tombstone, once the bucket is empty), `HeadBucket` and `GetBucketLocation`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use xnode_storage::StorageError;
use xnode_storage::buckets::{BucketRecord, bucket_key, owner_of};
use xnode_types::Hlc;

use super::{Gateway, s3_err, tenant_owner, timestamp, unix_ms};

/// The most buckets one ListBuckets page returns (S3's limit for `max-buckets`).
const MAX_BUCKETS: usize = 10_000;

/// S3's naming rules beyond the store's (which every API shares): no label of a
/// DNS name may start or end with `-`, so `.-` and `-.` are refused.
fn check_s3_bucket_name(name: &str) -> S3Result<()> {
    xnode_store::validate_bucket_name(name).map_err(|e| s3_error!(InvalidBucketName, "{e}"))?;
    if name.contains(".-") || name.contains("-.") {
        return Err(s3_error!(
            InvalidBucketName,
            "bucket name {name:?} has a label that starts or ends with '-'"
        ));
    }
    Ok(())
}

/// ListBuckets continuation tokens are the hex of the last name returned.
fn decode_bucket_token(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

impl Gateway {
    pub(super) async fn list_buckets_impl(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        // An unsigned request owns no bucket.
        if req.credentials.is_none() {
            return Ok(S3Response::new(ListBucketsOutput {
                buckets: Some(Vec::new()),
                ..Default::default()
            }));
        }
        let key = self.key_of(&req)?;
        let input = req.input;
        let max = match input.max_buckets {
            None => MAX_BUCKETS,
            Some(m) if (1..=MAX_BUCKETS as i32).contains(&m) => m as usize,
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-buckets must be between 1 and {MAX_BUCKETS}"
                ));
            }
        };
        let after = input
            .continuation_token
            .as_deref()
            .map(decode_bucket_token)
            .transpose()?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut all = self.storage().list_buckets(&key.tenant);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let mut page: Vec<_> = all
            .into_iter()
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
            .take(max + 1)
            .collect();
        let truncated = page.len() > max;
        page.truncate(max);
        let next = truncated
            .then(|| page.last().map(|b| hex::encode(b.name.as_bytes())))
            .flatten();
        let buckets = page
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(tenant_owner(&key.tenant)),
            continuation_token: next,
            prefix: input.prefix,
        }))
    }

    pub(super) async fn create_bucket_impl(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let key = self.key_of(&req)?;
        let name = req.input.bucket.clone();
        check_s3_bucket_name(&name)?;
        let requested_acl = super::acl::Acl::from_headers(&req.headers, &key.tenant)?;
        let ownership = Gateway::creation_mode(req.input.object_ownership.as_ref())?;
        // S3 refuses a bucket created with ACLs disabled and an ACL that grants anyone
        // but the owner, rather than store grants that would never count.
        if ownership == Some(super::ownership::Mode::BucketOwnerEnforced)
            && requested_acl
                .as_ref()
                .is_some_and(|acl| *acl != super::acl::Acl::private(&key.tenant))
        {
            return Err(s3_error!(
                InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
            ));
        }
        match owner_of(self.storage.registry(), &name) {
            Some((owner, _)) if owner == key.tenant => {
                // The gateway answers as us-east-1 (GetBucketLocation says so), where S3
                // lets the owner create its bucket again: a no-op answered 200, contents
                // and settings kept (clients such as `aws s3 mb` retries rely on it). A
                // no-op cannot give the bucket another ACL, object lock or region pin, so a
                // request asking for any of them is refused as Ceph RGW refuses it.
                let current = super::acl::bucket_acl(self.storage.registry(), &name, &owner);
                let asked = requested_acl.unwrap_or_else(|| super::acl::Acl::private(&owner));
                let lock_asked = req.input.object_lock_enabled_for_bucket == Some(true);
                let regions_asked =
                    requested_regions(req.input.create_bucket_configuration.as_ref())?;
                let other_region = !regions_asked.is_empty()
                    && regions_asked != self.storage().bucket_regions(&owner, &name);
                let other_ownership = ownership.is_some()
                    && ownership != super::ownership::ownership_of(self.storage.registry(), &name);
                if asked != current
                    || (lock_asked && !self.lock_enabled(&name))
                    || other_region
                    || other_ownership
                {
                    return Err(s3_error!(
                        BucketAlreadyExists,
                        "You already own this bucket, with another ACL, region, object ownership or without object lock; a new CreateBucket does not change them"
                    ));
                }
                return Ok(S3Response::new(CreateBucketOutput {
                    location: Some(format!("/{name}")),
                }));
            }
            Some(_) => {
                return Err(s3_error!(
                    BucketAlreadyExists,
                    "The requested bucket name is not available"
                ));
            }
            None => {}
        }
        let Some(signer) = key.tenant_key() else {
            return Err(s3_error!(
                AccessDenied,
                "This access key may not create buckets (it was created with --no-bucket-admin); use `xnode bucket create`"
            ));
        };
        let regions = requested_regions(req.input.create_bucket_configuration.as_ref())?;
        self.storage()
            .check_pin(&regions, None)
            .map_err(|e| s3_error!(InvalidLocationConstraint, "{e}"))?;
        let hlc = Hlc::new(unix_ms(), 0);
        let mut record = serde_json::json!({
            "v": BucketRecord::version_for(&regions),
            "name": name,
            "owner": key.tenant.to_hex(),
            "created_ms": hlc.wall_ms,
        });
        if !regions.is_empty() {
            record["regions"] = serde_json::json!(regions);
        }
        let record = record.to_string();
        let entry = xnode_registry::Entry::sign(
            &signer,
            bucket_key(&key.tenant, &name),
            Some(record.into_bytes()),
            hlc,
        )
        .map_err(|e| s3_error!(InternalError, "cannot sign the bucket claim: {e}"))?;
        let applied = self
            .storage()
            .create_bucket(&key.tenant, &name, entry)
            .map_err(s3_err)?;
        self.storage.registry().spread(&applied).await;
        if req.input.object_lock_enabled_for_bucket == Some(true) {
            self.enable_lock_at_creation(&key, &name).await?;
        }
        // A canned ACL or grants asked for at creation become the bucket's first ACL.
        if let Some(acl) = requested_acl {
            self.put_bucket_setting(&key, super::settings::ACL_KIND, &name, Some(&acl))
                .await?;
        }
        if let Some(mode) = ownership {
            self.store_ownership(&key, &name, mode).await?;
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    pub(super) async fn delete_bucket_impl(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let key = self.key_of(&req)?;
        let name = req.input.bucket.clone();
        self.require_bucket(&key.tenant, &name)?;
        let Some(signer) = key.tenant_key() else {
            return Err(s3_error!(
                AccessDenied,
                "This access key may not delete buckets (it was created with --no-bucket-admin); use `xnode bucket rm`"
            ));
        };
        let objects = self
            .storage()
            .list_objects(&key.tenant, &name, "", None, 1)
            .await
            .map_err(s3_err)?;
        // Versions other than the current ones count too, as in S3.
        let versions = self
            .storage()
            .list_objects(
                &key.tenant,
                &name,
                &xnode_store::internal_key(xnode_store::VERSIONS_DIRECTORY),
                None,
                1,
            )
            .await
            .map_err(s3_err)?;
        if !objects.is_empty() || !versions.is_empty() {
            return Err(s3_err(StorageError::BucketNotEmpty(name)));
        }
        // Pending multipart uploads go with the bucket.
        for (id, _) in self.uploads_of(&key.tenant, &name).await? {
            self.remove_upload(&key.tenant, &name, &id).await;
        }
        let claim_hlc = self
            .storage
            .registry()
            .get(&bucket_key(&key.tenant, &name))
            .map(|e| e.hlc)
            .unwrap_or(Hlc::new(0, 0));
        let now = unix_ms();
        let hlc = if now > claim_hlc.wall_ms {
            Hlc::new(now, 0)
        } else {
            Hlc::new(claim_hlc.wall_ms, claim_hlc.logical.saturating_add(1))
        };
        let tombstone =
            xnode_registry::Entry::sign(&signer, bucket_key(&key.tenant, &name), None, hlc)
                .map_err(|e| s3_error!(InternalError, "cannot sign the bucket deletion: {e}"))?;
        let applied = self
            .storage()
            .delete_bucket(&key.tenant, &name, tombstone)
            .await
            .map_err(s3_err)?;
        self.storage.registry().spread(&applied).await;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn head_bucket_impl(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn get_bucket_location_impl(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        // A pinned bucket answers its (first) region; an unpinned one the default, null.
        let location_constraint = self
            .storage()
            .bucket_regions(&key.tenant, &req.input.bucket)
            .into_iter()
            .next()
            .map(BucketLocationConstraint::from);
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }
}

/// The regions a `CreateBucket` asks its data to stay in: the `LocationConstraint` S3
/// clients send, as a region (a node zone) to pin the bucket to. No constraint, an empty
/// one and `us-east-1` (the default region, which clients never send) pin nothing.
fn requested_regions(config: Option<&CreateBucketConfiguration>) -> S3Result<Vec<String>> {
    let Some(constraint) = config.and_then(|c| c.location_constraint.as_ref()) else {
        return Ok(Vec::new());
    };
    let region = constraint.as_str();
    if region.is_empty() || region == "us-east-1" {
        return Ok(Vec::new());
    }
    let regions = vec![region.to_owned()];
    xnode_store::validate_regions(&regions)
        .map_err(|e| s3_error!(InvalidLocationConstraint, "{e}"))?;
    Ok(regions)
}
