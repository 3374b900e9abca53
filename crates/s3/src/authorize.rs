//! Who may do what to a bucket: decided on every request, on every node, before the
//! operation runs, from the bucket's ACL, policy and public access block (replicated,
//! owner-signed registry settings) and, for object reads, the object's own ACL.
//!
//! The bucket's owner may do anything its key allows, except what its own policy denies
//! explicitly (the policy itself can always be changed). Anyone else (another tenant, or
//! an unsigned request) gets `AccessDenied` unless a grant or an Allow statement covers the
//! operation and no Deny statement does. A granted request is then carried out *as the
//! owner*: objects are encrypted with the owner's data key, so only a node that holds one
//! of the owner's S3 keys (a node the owner chose, and so trusts with its data) can serve
//! it; any other node refuses with a message saying so, never with the data. A copy by
//! another tenant reads its source with the owner's key too, so it is granted only from a
//! bucket of the same owner that grants the requester the read (see `decide_copy`). A
//! bucket whose object ownership is `BucketOwnerEnforced` has its ACLs disabled: only its
//! policy grants.

use s3s::path::S3Path;
use s3s::{S3Result, s3_error};
use xnode_storage::Storage;
use xnode_storage::buckets::owner_of;
use xnode_types::PublicKeyBytes;

use crate::gateway::access::{
    EXISTING_TAG_PREFIX, Permission, Policy, PolicyContext, PolicyRequest, REQUEST_TAG_KEYS,
    REQUEST_TAG_PREFIX, REQUEST_TAGS_UNSEEN, Verdict, acls_disabled, bucket_acl, bucket_policy,
    object_acl, parse_tagging_header, public_access_block, stored_tags, version_key,
};
use crate::keys::{AccessKey, S3Keys};

/// The owner's key a granted request is carried out with, and who made the request
/// (`None`: unsigned), left in the request's extensions for the gateway: the key decides
/// whose data key encrypts, the requester who owns what the request writes.
#[derive(Clone)]
pub(crate) struct ActingFor {
    pub(crate) key: AccessKey,
    pub(crate) requester: Option<PublicKeyBytes>,
}

/// The source owner's key a copy reads its source with, left in the request's extensions
/// when the requester copies from another owner's bucket into its own (see
/// [`copy_source_as`]).
#[derive(Clone)]
pub(crate) struct CopySourceAs(pub(crate) AccessKey);

/// The outcome of a request's access check.
pub(crate) struct Decision {
    /// The bucket's owner, if the request names an existing bucket.
    pub(crate) owner: Option<PublicKeyBytes>,
    /// The owner's key to act with, when someone else's request was granted.
    pub(crate) act_as: Option<AccessKey>,
    /// Someone else's request was granted by an ACL, not by the bucket policy (the
    /// `aclRequired` field of its access log record).
    pub(crate) acl_required: bool,
}

/// Whether an operation is judged by the bucket's ACL or by the object's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Bucket,
    Object,
}

/// What an ACL must grant for operation `op` (`None`: only a policy can grant it), and
/// the policy action it is; `None` for operations only the owner may perform.
fn needs(op: &str) -> Option<(Level, Option<Permission>, &'static str)> {
    use Level::*;
    use Permission::*;
    if let Some(action) = policy_only(op) {
        return Some((Object, None, action));
    }
    let (level, permission, action) = match op {
        "ListObjects" | "ListObjectsV2" => (Bucket, Read, "s3:ListBucket"),
        "HeadBucket" => (Bucket, Read, "s3:ListBucket"),
        "ListObjectVersions" => (Bucket, Read, "s3:ListBucketVersions"),
        "ListMultipartUploads" => (Bucket, Read, "s3:ListBucketMultipartUploads"),
        "GetBucketLocation" => (Bucket, Read, "s3:GetBucketLocation"),
        "GetBucketAcl" => (Bucket, ReadAcp, "s3:GetBucketAcl"),
        "PutBucketAcl" => (Bucket, WriteAcp, "s3:PutBucketAcl"),
        // A browser-form upload (POST object) is a PutObject, granted as S3 grants it.
        "PutObject"
        | "PostObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload" => (Bucket, Write, "s3:PutObject"),
        "ListParts" => (Bucket, Write, "s3:ListMultipartUploadParts"),
        "AbortMultipartUpload" => (Bucket, Write, "s3:AbortMultipartUpload"),
        "DeleteObject" | "DeleteObjects" => (Bucket, Write, "s3:DeleteObject"),
        "GetObject" | "HeadObject" | "GetObjectAttributes" => (Object, Read, "s3:GetObject"),
        "GetObjectTagging" => (Object, Read, "s3:GetObjectTagging"),
        "GetObjectAcl" => (Object, ReadAcp, "s3:GetObjectAcl"),
        "PutObjectAcl" => (Object, WriteAcp, "s3:PutObjectAcl"),
        _ => return None,
    };
    Some((level, Some(permission), action))
}

/// Operations no ACL permission covers, which a bucket policy may grant (as in S3).
fn policy_only(op: &str) -> Option<&'static str> {
    Some(match op {
        "PutObjectTagging" => "s3:PutObjectTagging",
        "DeleteObjectTagging" => "s3:DeleteObjectTagging",
        _ => return None,
    })
}

/// Changing the tags of a version named by id is its own action in S3
/// (`s3:PutObjectVersionTagging`, `s3:DeleteObjectVersionTagging`): a grant of
/// `s3:PutObjectTagging` lets its holder tag the current version only, so it cannot tag an
/// older version into the reach of a lifecycle rule that removes tagged noncurrent versions.
fn version_tagging_action(op: &str, query: Option<&str>) -> Option<&'static str> {
    query_value(query, "versionId")?;
    match op {
        "PutObjectTagging" => Some("s3:PutObjectVersionTagging"),
        "DeleteObjectTagging" => Some("s3:DeleteObjectVersionTagging"),
        _ => None,
    }
}

/// The policy action of an operation only the owner may perform, for Deny statements
/// that name it.
fn owner_action(op: &str) -> String {
    match op {
        "GetPublicAccessBlock" => "s3:GetBucketPublicAccessBlock".to_owned(),
        "PutPublicAccessBlock" => "s3:PutBucketPublicAccessBlock".to_owned(),
        "GetBucketPolicyStatus" => "s3:GetBucketPolicyStatus".to_owned(),
        "GetBucketVersioning" => "s3:GetBucketVersioning".to_owned(),
        "PutBucketVersioning" => "s3:PutBucketVersioning".to_owned(),
        "CopyObject" | "UploadPartCopy" => "s3:PutObject".to_owned(),
        // IAM names these differently from the operations (a delete is the put's action).
        "DeleteBucketTagging" => "s3:PutBucketTagging".to_owned(),
        "GetBucketCors" => "s3:GetBucketCORS".to_owned(),
        "PutBucketCors" | "DeleteBucketCors" => "s3:PutBucketCORS".to_owned(),
        "GetBucketLifecycleConfiguration" => "s3:GetLifecycleConfiguration".to_owned(),
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => {
            "s3:PutLifecycleConfiguration".to_owned()
        }
        "GetBucketEncryption" => "s3:GetEncryptionConfiguration".to_owned(),
        "PutBucketEncryption" | "DeleteBucketEncryption" => {
            "s3:PutEncryptionConfiguration".to_owned()
        }
        "DeleteBucketOwnershipControls" => "s3:PutBucketOwnershipControls".to_owned(),
        "GetObjectLockConfiguration" => "s3:GetBucketObjectLockConfiguration".to_owned(),
        "PutObjectLockConfiguration" => "s3:PutBucketObjectLockConfiguration".to_owned(),
        other => needs(other)
            .map(|(_, _, a)| a.to_owned())
            .unwrap_or_else(|| format!("s3:{other}")),
    }
}

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// Percent-decodes a query value (`+` is a space); `None` if it is not UTF-8.
fn decode_query(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The values of the condition keys a policy may test that the request itself carries.
fn condition_context(query: Option<&str>, headers: &hyper::HeaderMap) -> PolicyContext {
    let mut context = PolicyContext::new();
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = match k {
            "prefix" => "s3:prefix",
            "delimiter" => "s3:delimiter",
            "max-keys" => "s3:max-keys",
            _ => continue,
        };
        if let Some(v) = decode_query(v) {
            context.insert(key.to_owned(), vec![v]);
        }
    }
    for (header, key) in [
        ("referer", "aws:referer"),
        ("user-agent", "aws:useragent"),
        ("x-amz-acl", "s3:x-amz-acl"),
        ("x-amz-grant-read", "s3:x-amz-grant-read"),
        ("x-amz-grant-write", "s3:x-amz-grant-write"),
        ("x-amz-grant-read-acp", "s3:x-amz-grant-read-acp"),
        ("x-amz-grant-write-acp", "s3:x-amz-grant-write-acp"),
        ("x-amz-grant-full-control", "s3:x-amz-grant-full-control"),
        (
            "x-amz-server-side-encryption",
            "s3:x-amz-server-side-encryption",
        ),
        (
            "x-amz-server-side-encryption-customer-algorithm",
            "s3:x-amz-server-side-encryption-customer-algorithm",
        ),
        (
            "x-amz-server-side-encryption-aws-kms-key-id",
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
        ),
        ("x-amz-copy-source", "s3:x-amz-copy-source"),
        ("x-amz-metadata-directive", "s3:x-amz-metadata-directive"),
    ] {
        if let Some(v) = headers.get(header).and_then(|v| v.to_str().ok()) {
            context.insert(key.to_owned(), vec![v.to_owned()]);
        }
    }
    // The tags a write sets. A header that does not parse sets none here; the operation
    // refuses it with InvalidTag.
    if let Some(tags) = headers
        .get("x-amz-tagging")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_tagging_header(v).ok())
    {
        add_tags(&mut context, REQUEST_TAG_PREFIX, &tags);
        context.insert(
            REQUEST_TAG_KEYS.to_owned(),
            tags.into_iter().map(|(k, _)| k).collect(),
        );
    }
    context
}

/// Adds one condition key per tag, `<prefix><tag key>`, with the tag's value.
fn add_tags(context: &mut PolicyContext, prefix: &str, tags: &[(String, String)]) {
    for (k, v) in tags {
        context.insert(format!("{prefix}{k}"), vec![v.clone()]);
    }
}

/// The operations that act on an object that already exists, for which a policy may
/// test the object's stored tags (`s3:ExistingObjectTag/<key>`), as in S3.
const EXISTING_OBJECT_OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "GetObjectAttributes",
    "GetObjectAcl",
    "PutObjectAcl",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
];

/// The value of query parameter `name`, decoded.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode_query(v)).flatten()
    })
}

/// Adds the tags stored on the object (or on the version `versionId` names) a request
/// acts on to its context. An object that cannot be read adds none: a tag condition on a
/// missing key does not match, so such a request is granted nothing by it.
async fn add_existing_tags(
    storage: &std::sync::Arc<Storage>,
    owner: &PublicKeyBytes,
    bucket: &str,
    key: &str,
    query: Option<&str>,
    context: &mut PolicyContext,
) {
    // Only a well-formed version id names a version object; anything else would name
    // some other internal key, so it falls back to the current object (and the operation
    // itself refuses the id).
    let stored = match query_value(query, "versionId") {
        Some(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            version_key(key, &id)
        }
        _ => key.to_owned(),
    };
    if let Ok((_, info)) = storage.head_object(owner, bucket, &stored).await {
        add_tags(context, EXISTING_TAG_PREFIX, &stored_tags(&info.user_meta));
    }
}

/// Whether `policy` lets `requester` list the part of the bucket that holds `key`
/// (`s3:ListBucket` with `s3:prefix` set to the key): S3 then answers a read of a missing
/// key `404 NoSuchKey` rather than `403`.
fn policy_lets_list(
    policy: Option<&Policy>,
    requester: Option<&PublicKeyBytes>,
    bucket: &str,
    key: &str,
) -> bool {
    policy.is_some_and(|p| {
        let mut context = PolicyContext::new();
        context.insert("s3:prefix".to_owned(), vec![key.to_owned()]);
        p.evaluate(&PolicyRequest {
            requester,
            logging_service: false,
            action: "s3:ListBucket",
            resource: format!("arn:aws:s3:::{bucket}"),
            context,
        }) == Verdict::Allow
    })
}

/// Decides whether `requester` (`None`: unsigned) may perform `op` on `path`.
pub(crate) async fn decide(
    storage: &std::sync::Arc<Storage>,
    keys: &S3Keys,
    requester: Option<&PublicKeyBytes>,
    op: &str,
    path: &S3Path,
    query: Option<&str>,
    headers: &hyper::HeaderMap,
) -> S3Result<Decision> {
    let (bucket, object) = match path {
        S3Path::Root => (None, None),
        S3Path::Bucket { bucket } => (Some(&**bucket), None),
        S3Path::Object { bucket, key } => (Some(&**bucket), Some(&**key)),
    };
    let Some(bucket) = bucket else {
        // ListBuckets: a tenant lists its own buckets; anonymous requests own none, and
        // get an empty list as from S3.
        return Ok(Decision {
            owner: None,
            act_as: None,
            acl_required: false,
        });
    };
    let registry = storage.registry();
    let Some((owner, _)) = owner_of(registry, bucket) else {
        // The operation answers NoSuchBucket (or creates the bucket) itself.
        return match requester {
            Some(_) => Ok(Decision {
                owner: None,
                act_as: None,
                acl_required: false,
            }),
            None => Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            )),
        };
    };
    // Creating a bucket another tenant owns is answered by the operation itself
    // (`409 BucketAlreadyExists`, as S3 answers it); it is granted nothing.
    if op == "CreateBucket" && requester.is_some() {
        return Ok(Decision {
            owner: None,
            act_as: None,
            acl_required: false,
        });
    }
    let policy = bucket_policy(registry, bucket);
    let resource = match object {
        Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
        None => format!("arn:aws:s3:::{bucket}"),
    };
    let needed = needs(op);
    let action = version_tagging_action(op, query)
        .map(str::to_owned)
        .or_else(|| needed.map(|(_, _, a)| a.to_owned()))
        .unwrap_or_else(|| owner_action(op));
    let mut context = condition_context(query, headers);
    if op == "PutObjectTagging" {
        // Its tags are in the body, which is read after this check.
        context.insert(REQUEST_TAGS_UNSEEN.to_owned(), Vec::new());
    }
    if let (Some(p), Some(key)) = (&policy, object)
        && p.uses_existing_object_tags()
        && EXISTING_OBJECT_OPERATIONS.contains(&op)
    {
        add_existing_tags(storage, &owner, bucket, key, query, &mut context).await;
    }
    let verdict = policy.as_ref().map_or(Verdict::Silent, |p| {
        p.evaluate(&PolicyRequest {
            requester,
            logging_service: false,
            action: &action,
            resource: resource.clone(),
            context,
        })
    });
    if requester == Some(&owner) {
        // The owner can always change or remove its policy, as in S3, so a policy cannot
        // lock its owner out for good.
        let policy_op = matches!(
            op,
            "PutBucketPolicy" | "GetBucketPolicy" | "DeleteBucketPolicy"
        );
        if verdict == Verdict::Deny && !policy_op {
            return Err(denied());
        }
        return Ok(Decision {
            owner: Some(owner),
            act_as: None,
            acl_required: false,
        });
    }
    if matches!(op, "CopyObject" | "UploadPartCopy") {
        return Box::pin(decide_copy(
            storage, keys, requester, op, path, query, headers, &owner,
        ))
        .await;
    }
    let Some((level, permission, _)) = needed else {
        return Err(denied());
    };
    if verdict == Verdict::Deny {
        return Err(denied());
    }
    let block = public_access_block(registry, bucket).unwrap_or_default();
    // RestrictPublicBuckets: a public policy grants nothing to anyone but the owner.
    let policy_allows = verdict == Verdict::Allow
        && !(block.restrict_public_buckets && policy.as_ref().is_some_and(|p| p.is_public()));
    let public_grants = !block.ignore_public_acls;
    // A bucket whose object ownership is BucketOwnerEnforced has its ACLs disabled: only
    // its policy grants anything, as in S3.
    let acls_count = !acls_disabled(registry, bucket);
    let acl_allows = policy_allows
        || match (level, object, permission) {
            _ if !acls_count => false,
            (_, _, None) => false,
            (Level::Object, Some(key), Some(permission)) => {
                match storage.head_object(&owner, bucket, key).await {
                    Ok((_, info)) => object_acl(&info.user_meta, &owner).allows(
                        requester,
                        permission,
                        public_grants,
                    ),
                    // A missing object is answered NoSuchKey to those who may list the
                    // bucket, and AccessDenied to everyone else (as S3 does).
                    Err(_) => {
                        bucket_acl(registry, bucket, &owner).allows(
                            requester,
                            Permission::Read,
                            public_grants,
                        ) || policy_lets_list(policy.as_ref(), requester, bucket, key)
                    }
                }
            }
            (_, _, Some(permission)) => {
                bucket_acl(registry, bucket, &owner).allows(requester, permission, public_grants)
            }
        };
    if !acl_allows {
        return Err(denied());
    }
    // Object lock headers on a write need their own permissions, which only a policy
    // grants (as in S3): a tenant granted only the write must not be able to put a
    // retention or legal hold on an object that would keep the owner from deleting it.
    for action in lock_actions(op, headers) {
        let allowed = policy.as_ref().is_some_and(|p| {
            p.evaluate(&PolicyRequest {
                requester,
                logging_service: false,
                action,
                resource: resource.clone(),
                context: condition_context(query, headers),
            }) == Verdict::Allow
                && !(block.restrict_public_buckets && p.is_public())
        });
        if !allowed {
            return Err(denied());
        }
    }
    let held = keys
        .list(&owner)
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    // A key registered with the owner's signed request may also write; prefer it.
    let key = held
        .iter()
        .find(|k| k.registration.is_some())
        .or_else(|| held.first())
        .cloned();
    let Some(key) = key else {
        return Err(s3_error!(
            AccessDenied,
            "Access Denied: this bucket's access is granted, but this node holds none of the owner's S3 keys and cannot decrypt or write its objects; use a gateway node the bucket's owner registered an S3 key on"
        ));
    };
    Ok(Decision {
        owner: Some(owner),
        act_as: Some(key),
        acl_required: !policy_allows,
    })
}

/// The policy actions a write's object lock headers need beyond the write itself:
/// `s3:PutObjectRetention` for a mode or retain-until date, `s3:PutObjectLegalHold` for
/// a legal hold. Only the operations that take these headers need them.
fn lock_actions(op: &str, headers: &hyper::HeaderMap) -> Vec<&'static str> {
    if !matches!(
        op,
        "PutObject" | "PostObject" | "CopyObject" | "CreateMultipartUpload"
    ) {
        return Vec::new();
    }
    let mut actions = Vec::new();
    if headers.contains_key("x-amz-object-lock-mode")
        || headers.contains_key("x-amz-object-lock-retain-until-date")
    {
        actions.push("s3:PutObjectRetention");
    }
    if headers.contains_key("x-amz-object-lock-legal-hold") {
        actions.push("s3:PutObjectLegalHold");
    }
    actions
}

/// For a copy (`CopyObject`, `UploadPartCopy`) by the owner of the destination bucket from
/// a bucket of another owner, as S3 allows across accounts: the source owner's key to read
/// the source with, if the source grants the requester the read exactly as a `GetObject`
/// of it would be granted (`s3:GetObject` by its policy, or the object's ACL) and this
/// node holds one of the source owner's keys; `AccessDenied` otherwise. `None` when the
/// source is the requester's own or names no existing bucket (the copy answers that
/// itself). The source owner's key is used for that one read only: the copy is written
/// under the requester's own key, in its own bucket. A named source version is refused,
/// as in [`decide_copy`]: the grant on a version's own ACL is not checked here.
pub(crate) async fn copy_source_as(
    storage: &std::sync::Arc<Storage>,
    keys: &S3Keys,
    requester: &PublicKeyBytes,
    headers: &hyper::HeaderMap,
) -> S3Result<Option<AccessKey>> {
    let source = copy_source_of(headers);
    let Some(s3s::dto::CopySource::Bucket {
        bucket,
        key,
        version_id,
    }) = source
    else {
        return Ok(None);
    };
    match owner_of(storage.registry(), &bucket) {
        Some((source_owner, _)) if source_owner != *requester => {}
        _ => return Ok(None),
    }
    if version_id.is_some() {
        return Err(denied());
    }
    let source_path = S3Path::Object { bucket, key };
    let read = decide(
        storage,
        keys,
        Some(requester),
        "GetObject",
        &source_path,
        None,
        headers,
    )
    .await?;
    // A granted read of another owner's object is always carried out with that owner's
    // key; a decision without one grants nothing to copy with.
    read.act_as.map(Some).ok_or_else(denied)
}

/// Decides a copy (`CopyObject`, `UploadPartCopy`) by someone other than the
/// destination bucket's owner, `owner`. It is carried out with the owner's key, which
/// reads the source too, so it is granted only as S3 grants it and only within what that
/// key may rightly read for this requester: the destination must grant the write
/// (`s3:PutObject`), the source must be in a bucket of the same owner and grant the
/// requester the read (`s3:GetObject`, by its policy or the object's ACL). A grant on one
/// bucket therefore never reads another bucket the requester was not granted. A copy of a
/// named source version is refused: the grant on a version's own ACL is not checked here.
#[allow(clippy::too_many_arguments)]
async fn decide_copy(
    storage: &std::sync::Arc<Storage>,
    keys: &S3Keys,
    requester: Option<&PublicKeyBytes>,
    op: &str,
    path: &S3Path,
    query: Option<&str>,
    headers: &hyper::HeaderMap,
    owner: &PublicKeyBytes,
) -> S3Result<Decision> {
    let write = if op == "CopyObject" {
        "PutObject"
    } else {
        "UploadPart"
    };
    let destination = decide(storage, keys, requester, write, path, query, headers).await?;
    let source = copy_source_of(headers);
    let Some(s3s::dto::CopySource::Bucket {
        bucket,
        key,
        version_id: None,
    }) = source
    else {
        return Err(denied());
    };
    if owner_of(storage.registry(), &bucket).map(|(o, _)| o) != Some(*owner) {
        return Err(denied());
    }
    let source_path = S3Path::Object { bucket, key };
    decide(
        storage,
        keys,
        requester,
        "GetObject",
        &source_path,
        None,
        headers,
    )
    .await?;
    Ok(destination)
}

/// The `x-amz-copy-source` header of a copy, parsed; `None` when absent or malformed (the
/// gateway answers a malformed one itself).
fn copy_source_of(headers: &hyper::HeaderMap) -> Option<s3s::dto::CopySource> {
    headers
        .get("x-amz-copy-source")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| s3s::dto::CopySource::parse(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_bucket_settings_are_never_granted() {
        for op in [
            "CopyObject",
            "UploadPartCopy",
            "DeleteBucket",
            "PutBucketPolicy",
            "PutBucketVersioning",
            "PutPublicAccessBlock",
        ] {
            assert!(needs(op).is_none(), "{op}");
        }
        // Tagging is granted by a policy only, never by an ACL; a version's tags by
        // their own actions.
        assert_eq!(
            version_tagging_action("PutObjectTagging", Some("tagging&versionId=abc")),
            Some("s3:PutObjectVersionTagging")
        );
        assert_eq!(
            version_tagging_action("DeleteObjectTagging", Some("versionId=abc&tagging")),
            Some("s3:DeleteObjectVersionTagging")
        );
        assert_eq!(
            version_tagging_action("PutObjectTagging", Some("tagging")),
            None
        );
        assert_eq!(
            version_tagging_action("GetObject", Some("versionId=abc")),
            None
        );
        assert_eq!(needs("PutObjectTagging").map(|n| n.1), Some(None));
        assert_eq!(needs("GetObject").map(|n| n.0), Some(Level::Object));
        assert_eq!(
            owner_action("GetPublicAccessBlock"),
            "s3:GetBucketPublicAccessBlock"
        );
        // A Deny of IAM's action names covers the operations it names.
        assert_eq!(owner_action("DeleteBucketTagging"), "s3:PutBucketTagging");
        assert_eq!(owner_action("DeleteBucketCors"), "s3:PutBucketCORS");
        assert_eq!(
            owner_action("DeleteBucketLifecycle"),
            "s3:PutLifecycleConfiguration"
        );
        assert_eq!(owner_action("PutBucketPolicy"), "s3:PutBucketPolicy");
    }

    #[test]
    fn lock_headers_on_a_write_need_the_lock_permissions() {
        let mut h = hyper::HeaderMap::new();
        assert!(lock_actions("PutObject", &h).is_empty());
        h.insert(
            "x-amz-object-lock-mode",
            hyper::header::HeaderValue::from_static("COMPLIANCE"),
        );
        assert_eq!(lock_actions("PutObject", &h), ["s3:PutObjectRetention"]);
        h.insert(
            "x-amz-object-lock-legal-hold",
            hyper::header::HeaderValue::from_static("ON"),
        );
        for op in [
            "PutObject",
            "PostObject",
            "CopyObject",
            "CreateMultipartUpload",
        ] {
            assert_eq!(
                lock_actions(op, &h),
                ["s3:PutObjectRetention", "s3:PutObjectLegalHold"],
                "{op}"
            );
        }
        // Reads and other writes take no lock headers.
        assert!(lock_actions("GetObject", &h).is_empty());
    }

    #[test]
    fn condition_keys_come_from_the_query_and_headers() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "referer",
            hyper::header::HeaderValue::from_static("http://example.com/x"),
        );
        let c = condition_context(Some("list-type=2&prefix=a%2Fb+c&max-keys=5"), &h);
        let one = |c: &PolicyContext, k: &str| c.get(k).and_then(|v| v.first()).cloned();
        assert_eq!(one(&c, "s3:prefix").as_deref(), Some("a/b c"));
        assert_eq!(one(&c, "s3:max-keys").as_deref(), Some("5"));
        assert_eq!(
            one(&c, "aws:referer").as_deref(),
            Some("http://example.com/x")
        );
        assert!(!c.contains_key("s3:delimiter"));
        h.insert(
            "x-amz-acl",
            hyper::header::HeaderValue::from_static("public-read"),
        );
        h.insert(
            "x-amz-tagging",
            hyper::header::HeaderValue::from_static("security=public&Team=a%20b"),
        );
        let c = condition_context(None, &h);
        assert_eq!(one(&c, "s3:x-amz-acl").as_deref(), Some("public-read"));
        assert_eq!(
            one(&c, "s3:requestobjecttag/security").as_deref(),
            Some("public")
        );
        assert_eq!(one(&c, "s3:requestobjecttag/Team").as_deref(), Some("a b"));
        assert_eq!(
            c.get("s3:requestobjecttagkeys"),
            Some(&vec!["security".to_owned(), "Team".to_owned()])
        );
        // A tagging header that does not parse (bad percent-encoding) sets no tag keys.
        h.insert(
            "x-amz-tagging",
            hyper::header::HeaderValue::from_static("k=%zz"),
        );
        let c = condition_context(None, &h);
        assert!(!c.keys().any(|k| k.starts_with("s3:requestobjecttag")));
    }
}
