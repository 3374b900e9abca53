//! Access control lists: canned ACLs, `x-amz-grant-*` headers, `PutBucketAcl`,
//! `PutObjectAcl`, `GetBucketAcl` and `GetObjectAcl`, answered as AWS answers them.
//!
//! A bucket's ACL is a bucket setting in the registry (see [`super::settings`]), signed by
//! the bucket's owner and replicated to every node, so every node enforces it (see
//! `crate::authorize`). An object's ACL lives in the object's sealed metadata (entry
//! `:acl`), replicated with the object. An object or bucket without one is private: only
//! its owner has access. Grants name tenants by their canonical id (the tenant's public
//! key, hex) or the groups AllUsers (anyone, signed or not) and AuthenticatedUsers (any
//! tenant that signs its request); Xnode has no e-mail directory, so grants by e-mail are
//! refused as AWS refuses an address it cannot resolve.

use hyper::HeaderMap;
use s3s::dto::{self, AccessControlPolicy, Grantee as S3Grantee, Owner};
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_types::PublicKeyBytes;

use super::ownership::{acls_disabled, acls_not_supported, object_owner};
use super::settings::{ACL_KIND, PUBLIC_ACCESS_BLOCK_KIND, bucket_setting};
use super::versioning::{VERSION_ID, public_id};
use super::{Gateway, s3_err, tenant_owner};

/// Where an object's ACL is kept in its metadata.
pub(crate) const OBJECT_ACL: &str = ":acl";
/// The URI of the group of everyone, signed or not.
pub(crate) const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// The URI of the group of every request signed with a valid key.
pub(crate) const AUTHENTICATED_USERS: &str =
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
/// The most grants one ACL may hold (AWS's limit).
const MAX_GRANTS: usize = 100;

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Permission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

impl Permission {
    fn as_s3(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::ReadAcp => "READ_ACP",
            Permission::WriteAcp => "WRITE_ACP",
            Permission::FullControl => "FULL_CONTROL",
        }
    }

    fn parse(text: &str) -> S3Result<Self> {
        Ok(match text {
            "READ" => Permission::Read,
            "WRITE" => Permission::Write,
            "READ_ACP" => Permission::ReadAcp,
            "WRITE_ACP" => Permission::WriteAcp,
            "FULL_CONTROL" => Permission::FullControl,
            other => {
                return Err(s3_error!(
                    MalformedACLError,
                    "unknown permission {other:?} in the ACL"
                ));
            }
        })
    }
}

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Grantee {
    /// A tenant, by its public key.
    Tenant(PublicKeyBytes),
    /// Anyone, including unsigned requests.
    AllUsers,
    /// Any request signed with a valid access key of any tenant.
    AuthenticatedUsers,
}

impl Grantee {
    fn from_uri(uri: &str) -> S3Result<Self> {
        match uri {
            ALL_USERS => Ok(Grantee::AllUsers),
            AUTHENTICATED_USERS => Ok(Grantee::AuthenticatedUsers),
            other => Err(s3_error!(
                InvalidArgument,
                "the group {other:?} is not supported (only AllUsers and AuthenticatedUsers)"
            )),
        }
    }

    fn from_id(id: &str) -> S3Result<Self> {
        PublicKeyBytes::from_hex(id.trim())
            .map(Grantee::Tenant)
            .map_err(|_| s3_error!(InvalidArgument, "Invalid id: {id:?} is not a tenant id"))
    }

    fn is_public(&self) -> bool {
        matches!(self, Grantee::AllUsers | Grantee::AuthenticatedUsers)
    }
}

fn unresolvable_email(email: &str) -> s3s::S3Error {
    s3_error!(
        UnresolvableGrantByEmailAddress,
        "The e-mail address {email:?} cannot be resolved: Xnode tenants have no e-mail addresses; grant by id (the tenant's public key)"
    )
}

/// One grant of an ACL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) grantee: Grantee,
    pub(crate) permission: Permission,
}

/// An access control list. The stored form is JSON with a format version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Acl {
    pub(crate) v: u32,
    pub(crate) grants: Vec<Grant>,
}

/// Format version of a stored [`Acl`].
pub(crate) const ACL_VERSION: u32 = 1;

/// Who is asking: a tenant (signed request) or anyone (unsigned).
pub(crate) type Requester<'a> = Option<&'a PublicKeyBytes>;

impl Acl {
    fn new(grants: Vec<Grant>) -> S3Result<Self> {
        if grants.len() > MAX_GRANTS {
            return Err(s3_error!(
                MalformedACLError,
                "an ACL holds at most {MAX_GRANTS} grants"
            ));
        }
        Ok(Acl {
            v: ACL_VERSION,
            grants,
        })
    }

    /// Full control for the owner, nothing for anyone else.
    pub(crate) fn private(owner: &PublicKeyBytes) -> Self {
        Acl {
            v: ACL_VERSION,
            grants: vec![Grant {
                grantee: Grantee::Tenant(*owner),
                permission: Permission::FullControl,
            }],
        }
    }

    /// A canned ACL (`x-amz-acl`) of a resource its owner owns: a bucket, or an object
    /// of the bucket's owner, for which `bucket-owner-read` and
    /// `bucket-owner-full-control` mean `private`.
    #[cfg(test)]
    pub(crate) fn canned(name: &str, owner: &PublicKeyBytes) -> S3Result<Self> {
        Acl::canned_object(name, owner, owner)
    }

    /// A canned ACL of an object owned by `owner` in a bucket owned by `bucket_owner`:
    /// `bucket-owner-read` and `bucket-owner-full-control` grant the bucket's owner READ
    /// or FULL_CONTROL after the object owner's own full control, as S3 lists them.
    pub(crate) fn canned_object(
        name: &str,
        owner: &PublicKeyBytes,
        bucket_owner: &PublicKeyBytes,
    ) -> S3Result<Self> {
        let mut acl = Acl::private(owner);
        let group = |grantee: Grantee, permission| Grant {
            grantee,
            permission,
        };
        // The bucket owner's grant comes after the object owner's full control.
        let for_bucket_owner = |permission| {
            if owner == bucket_owner {
                Vec::new()
            } else {
                vec![Grant {
                    grantee: Grantee::Tenant(*bucket_owner),
                    permission,
                }]
            }
        };
        let (before, after) = match name {
            "private" => (vec![], vec![]),
            "bucket-owner-read" => (vec![], for_bucket_owner(Permission::Read)),
            "bucket-owner-full-control" => (vec![], for_bucket_owner(Permission::FullControl)),
            "public-read" => (vec![group(Grantee::AllUsers, Permission::Read)], vec![]),
            "public-read-write" => (
                vec![
                    group(Grantee::AllUsers, Permission::Read),
                    group(Grantee::AllUsers, Permission::Write),
                ],
                vec![],
            ),
            "authenticated-read" => (
                vec![group(Grantee::AuthenticatedUsers, Permission::Read)],
                vec![],
            ),
            other => {
                return Err(s3_error!(
                    NotImplemented,
                    "the canned ACL {other:?} is not supported by this gateway; the request was not carried out"
                ));
            }
        };
        acl.grants.splice(0..0, before);
        acl.grants.extend(after);
        Ok(acl)
    }

    /// The ACL a request's headers ask for: `x-amz-acl` or the `x-amz-grant-*` headers
    /// (not both, as in S3); `None` if neither is present.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        owner: &PublicKeyBytes,
    ) -> S3Result<Option<Self>> {
        Acl::from_object_headers(headers, owner, owner)
    }

    /// The ACL a write's headers ask for an object owned by `owner` in a bucket owned by
    /// `bucket_owner` (see [`Acl::canned_object`]); `None` if they ask for none.
    pub(crate) fn from_object_headers(
        headers: &HeaderMap,
        owner: &PublicKeyBytes,
        bucket_owner: &PublicKeyBytes,
    ) -> S3Result<Option<Self>> {
        let canned = headers
            .get("x-amz-acl")
            .map(|v| v.to_str().unwrap_or("\u{FFFD}").trim().to_owned());
        let mut grants = Vec::new();
        for (header, permission) in [
            ("x-amz-grant-read", Permission::Read),
            ("x-amz-grant-write", Permission::Write),
            ("x-amz-grant-read-acp", Permission::ReadAcp),
            ("x-amz-grant-write-acp", Permission::WriteAcp),
            ("x-amz-grant-full-control", Permission::FullControl),
        ] {
            for value in headers.get_all(header) {
                let text = value.to_str().map_err(|_| {
                    s3_error!(InvalidArgument, "the {header} header is not valid text")
                })?;
                for grantee in parse_grantees(text)? {
                    grants.push(Grant {
                        grantee,
                        permission,
                    });
                }
            }
        }
        match (canned, grants.is_empty()) {
            (None, true) => Ok(None),
            (Some(name), true) => Acl::canned_object(&name, owner, bucket_owner).map(Some),
            (None, false) => Acl::new(grants).map(Some),
            (Some(_), false) => Err(s3_error!(
                InvalidRequest,
                "Specifying both Canned ACLs and Header Grants is not allowed"
            )),
        }
    }

    /// The ACL of an `AccessControlPolicy` body. The owner it names, if any, must be the
    /// resource's owner (ownership cannot be given away).
    pub(crate) fn from_policy(
        policy: &AccessControlPolicy,
        owner: &PublicKeyBytes,
    ) -> S3Result<Self> {
        if let Some(id) = policy.owner.as_ref().and_then(|o| o.id.as_deref())
            && !id.eq_ignore_ascii_case(&owner.to_hex())
        {
            return Err(s3_error!(
                AccessDenied,
                "the ACL names another owner; ownership cannot be changed"
            ));
        }
        let mut grants = Vec::new();
        for grant in policy.grants.iter().flatten() {
            let permission = grant
                .permission
                .as_ref()
                .ok_or_else(|| s3_error!(MalformedACLError, "a grant has no permission"))
                .and_then(|p| Permission::parse(p.as_str()))?;
            let Some(grantee) = &grant.grantee else {
                return Err(s3_error!(MalformedACLError, "a grant has no grantee"));
            };
            grants.push(Grant {
                grantee: grantee_of(grantee)?,
                permission,
            });
        }
        Acl::new(grants)
    }

    /// Whether `requester` holds `needed` (or full control) through this ACL. Grants to
    /// the public groups count only if `public_grants` (a public access block's
    /// `IgnorePublicAcls` turns them off).
    pub(crate) fn allows(
        &self,
        requester: Requester<'_>,
        needed: Permission,
        public_grants: bool,
    ) -> bool {
        self.grants.iter().any(|g| {
            let holder = match &g.grantee {
                Grantee::Tenant(t) => requester == Some(t),
                Grantee::AllUsers => public_grants,
                Grantee::AuthenticatedUsers => public_grants && requester.is_some(),
            };
            holder && (g.permission == needed || g.permission == Permission::FullControl)
        })
    }

    /// Whether any grant is to a public group.
    pub(crate) fn is_public(&self) -> bool {
        self.grants.iter().any(|g| g.grantee.is_public())
    }

    /// The owner and grants as S3 answers them: group grants first, then tenants (the
    /// order the suite and AWS's own answers use).
    pub(crate) fn to_s3(&self, owner: &PublicKeyBytes) -> (Owner, Vec<dto::Grant>) {
        let mut grants: Vec<&Grant> = self.grants.iter().collect();
        grants.sort_by_key(|g| !g.grantee.is_public());
        let grants = grants
            .into_iter()
            .map(|g| {
                let grantee = match &g.grantee {
                    Grantee::Tenant(t) => {
                        let o = tenant_owner(t);
                        S3Grantee {
                            display_name: o.display_name,
                            email_address: None,
                            id: o.id,
                            type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
                            uri: None,
                        }
                    }
                    group => S3Grantee {
                        display_name: None,
                        email_address: None,
                        id: None,
                        type_: dto::Type::from_static(dto::Type::GROUP),
                        uri: Some(
                            if *group == Grantee::AllUsers {
                                ALL_USERS
                            } else {
                                AUTHENTICATED_USERS
                            }
                            .to_owned(),
                        ),
                    },
                };
                dto::Grant {
                    grantee: Some(grantee),
                    permission: Some(dto::Permission::from(g.permission.as_s3().to_owned())),
                }
            })
            .collect();
        (tenant_owner(owner), grants)
    }

    pub(crate) fn encode(&self) -> String {
        // Serialising plain enums and vectors cannot fail; an empty text would read back
        // as private, the safe side.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored ACL; `None` (private) if it is malformed or of an unknown version.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        serde_json::from_str::<Acl>(text)
            .ok()
            .filter(|a| a.v == ACL_VERSION && a.grants.len() <= MAX_GRANTS)
    }
}

fn grantee_of(grantee: &S3Grantee) -> S3Result<Grantee> {
    match grantee.type_.as_str() {
        dto::Type::CANONICAL_USER => {
            let id = grantee
                .id
                .as_deref()
                .ok_or_else(|| s3_error!(InvalidArgument, "a CanonicalUser grantee needs an ID"))?;
            Grantee::from_id(id)
        }
        dto::Type::GROUP => {
            let uri = grantee
                .uri
                .as_deref()
                .ok_or_else(|| s3_error!(InvalidArgument, "a Group grantee needs a URI"))?;
            Grantee::from_uri(uri)
        }
        dto::Type::AMAZON_CUSTOMER_BY_EMAIL => Err(unresolvable_email(
            grantee.email_address.as_deref().unwrap_or_default(),
        )),
        other => Err(s3_error!(
            MalformedACLError,
            "unknown grantee type {other:?}"
        )),
    }
}

/// The grantees of one `x-amz-grant-*` header: `id="..."`, `uri="..."` or
/// `emailAddress="..."`, separated by commas.
fn parse_grantees(text: &str) -> S3Result<Vec<Grantee>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((kind, value)) = part.split_once('=') else {
            return Err(s3_error!(
                InvalidArgument,
                "a grant header entry must be id=..., uri=... or emailAddress=..."
            ));
        };
        let value = value.trim().trim_matches('"');
        out.push(match kind.trim().to_ascii_lowercase().as_str() {
            "id" => Grantee::from_id(value)?,
            "uri" => Grantee::from_uri(value)?,
            "emailaddress" => return Err(unresolvable_email(value)),
            other => {
                return Err(s3_error!(
                    InvalidArgument,
                    "unknown grantee type {other:?} in a grant header"
                ));
            }
        });
    }
    Ok(out)
}

/// The ACL an object's metadata holds, in a bucket owned by `bucket_owner` (private to
/// the object's owner if none).
pub(crate) fn object_acl(
    meta: &std::collections::BTreeMap<String, String>,
    bucket_owner: &PublicKeyBytes,
) -> Acl {
    meta.get(OBJECT_ACL)
        .and_then(|t| Acl::decode(t))
        .unwrap_or_else(|| Acl::private(&object_owner(meta, bucket_owner)))
}

/// The ACL of bucket `name` owned by `owner` (private if none was set).
pub(crate) fn bucket_acl(
    registry: &xnode_registry::Registry,
    name: &str,
    owner: &PublicKeyBytes,
) -> Acl {
    bucket_setting::<Acl>(registry, ACL_KIND, name)
        .filter(|a| a.v == ACL_VERSION)
        .unwrap_or_else(|| Acl::private(owner))
}

/// A bucket's public access block, as the four S3 switches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PublicAccessBlock {
    pub(crate) block_public_acls: bool,
    pub(crate) ignore_public_acls: bool,
    pub(crate) block_public_policy: bool,
    pub(crate) restrict_public_buckets: bool,
}

/// The public access block of bucket `name`, if one is set.
pub(crate) fn public_access_block(
    registry: &xnode_registry::Registry,
    name: &str,
) -> Option<PublicAccessBlock> {
    bucket_setting::<PublicAccessBlock>(registry, PUBLIC_ACCESS_BLOCK_KIND, name)
}

impl Gateway {
    /// Refuses a public ACL on a bucket whose public access block says `BlockPublicAcls`.
    pub(super) fn check_acl_allowed(&self, bucket: &str, acl: &Acl) -> S3Result<()> {
        if acl.is_public()
            && public_access_block(self.storage.registry(), bucket)
                .is_some_and(|b| b.block_public_acls)
        {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the bucket's public access block refuses public ACLs"
            ));
        }
        Ok(())
    }

    /// The ACL a write asks for in its headers for an object owned by `owner` in a bucket
    /// owned by `bucket_owner`, checked against the bucket's public access block, ready to
    /// be stored in the object's metadata. A bucket with ACLs disabled stores none (the
    /// write was already refused if it asked for anything but the bucket owner's full
    /// control, which is what every object there has).
    pub(super) fn requested_object_acl(
        &self,
        headers: &HeaderMap,
        owner: &PublicKeyBytes,
        bucket_owner: &PublicKeyBytes,
        bucket: &str,
    ) -> S3Result<Option<String>> {
        if acls_disabled(self.storage.registry(), bucket) {
            return Ok(None);
        }
        let Some(acl) = Acl::from_object_headers(headers, owner, bucket_owner)? else {
            return Ok(None);
        };
        self.check_acl_allowed(bucket, &acl)?;
        Ok(Some(acl.encode()))
    }

    pub(super) async fn get_bucket_acl_impl(
        &self,
        req: S3Request<dto::GetBucketAclInput>,
    ) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
        let key = self.key_of(&req)?;
        let bucket = &req.input.bucket;
        self.require_bucket(&key.tenant, bucket)?;
        let acl = bucket_acl(self.storage.registry(), bucket, &key.tenant);
        let (owner, grants) = acl.to_s3(&key.tenant);
        Ok(S3Response::new(dto::GetBucketAclOutput {
            grants: Some(grants),
            owner: Some(owner),
        }))
    }

    pub(super) async fn put_bucket_acl_impl(
        &self,
        req: S3Request<dto::PutBucketAclInput>,
    ) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
        let key = self.key_of(&req)?;
        let bucket = req.input.bucket.clone();
        self.require_bucket(&key.tenant, &bucket)?;
        if acls_disabled(self.storage.registry(), &bucket) {
            return Err(acls_not_supported());
        }
        let acl = match (
            Acl::from_headers(&req.headers, &key.tenant)?,
            &req.input.access_control_policy,
        ) {
            (Some(acl), None) => acl,
            (None, Some(policy)) => Acl::from_policy(policy, &key.tenant)?,
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    UnexpectedContent,
                    "This request does not support content together with ACL headers"
                ));
            }
            (None, None) => {
                return Err(s3_error!(
                    MissingSecurityHeader,
                    "Your request was missing a required header: an ACL, grant headers or an AccessControlPolicy body"
                ));
            }
        };
        self.check_acl_allowed(&bucket, &acl)?;
        self.put_bucket_setting(&key, ACL_KIND, &bucket, Some(&acl))
            .await?;
        Ok(S3Response::new(dto::PutBucketAclOutput {}))
    }

    /// The stored objects that hold the ACL of `object` (or of its version `version_id`):
    /// the version object and, when that version is the current one, the copy under the
    /// object's key (see `versioning`), so that a read by version id and a plain read
    /// answer the same ACL. Tags are kept the same way.
    pub(super) async fn acl_copies(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        object: &str,
        version_id: Option<&str>,
    ) -> S3Result<Vec<String>> {
        let current = self.storage().head_object(tenant, bucket, object).await;
        let current_id = match &current {
            Ok((_, info)) if info.user_meta.contains_key(VERSION_ID) => Some(public_id(info)),
            _ => None,
        };
        let mut copies = Vec::new();
        match version_id {
            Some(id) => {
                copies.push(self.readable_version(tenant, bucket, object, id).await?);
                if current_id.as_deref() == Some(id) {
                    copies.push(object.to_owned());
                }
            }
            None => {
                current.map_err(s3_err)?;
                copies.push(object.to_owned());
                // The current version's own object; one deleted meanwhile has no ACL to
                // keep in step.
                if let Some(id) = current_id
                    && let Ok((stored, _)) = self.find_version(tenant, bucket, object, &id).await
                {
                    copies.push(stored);
                }
            }
        }
        copies.dedup();
        Ok(copies)
    }

    pub(super) async fn get_object_acl_impl(
        &self,
        req: S3Request<dto::GetObjectAclInput>,
    ) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(&input.key)?;
        let stored = match input.version_id.as_deref() {
            Some(id) => {
                self.readable_version(&key.tenant, &input.bucket, &input.key, id)
                    .await?
            }
            None => input.key.clone(),
        };
        let (_, info) = self
            .storage()
            .head_object(&key.tenant, &input.bucket, &stored)
            .await
            .map_err(s3_err)?;
        // With ACLs disabled, the bucket's owner owns every object and no ACL counts.
        let (acl, owner) = if acls_disabled(self.storage.registry(), &input.bucket) {
            (Acl::private(&key.tenant), key.tenant)
        } else {
            (
                object_acl(&info.user_meta, &key.tenant),
                object_owner(&info.user_meta, &key.tenant),
            )
        };
        let (owner, grants) = acl.to_s3(&owner);
        Ok(S3Response::new(dto::GetObjectAclOutput {
            grants: Some(grants),
            owner: Some(owner),
            request_charged: None,
        }))
    }

    pub(super) async fn put_object_acl_impl(
        &self,
        req: S3Request<dto::PutObjectAclInput>,
    ) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
        let key = self.key_of(&req)?;
        let bucket = req.input.bucket.clone();
        let object = req.input.key.clone();
        self.require_bucket(&key.tenant, &bucket)?;
        self.check_key(&object)?;
        if acls_disabled(self.storage.registry(), &bucket) {
            return Err(acls_not_supported());
        }
        // The ACL is the object owner's: canned ACLs are relative to it, and a body may
        // not name another owner (ownership is never given away by an ACL).
        let version_id = req.input.version_id.as_deref();
        let copies = self
            .acl_copies(&key.tenant, &bucket, &object, version_id)
            .await?;
        let owner = match copies.first() {
            Some(stored) => {
                let (_, info) = self
                    .storage()
                    .head_object(&key.tenant, &bucket, stored)
                    .await
                    .map_err(s3_err)?;
                object_owner(&info.user_meta, &key.tenant)
            }
            None => key.tenant,
        };
        let acl = match (
            Acl::from_object_headers(&req.headers, &owner, &key.tenant)?,
            &req.input.access_control_policy,
        ) {
            (Some(acl), None) => acl,
            (None, Some(policy)) => Acl::from_policy(policy, &owner)?,
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    UnexpectedContent,
                    "This request does not support content together with ACL headers"
                ));
            }
            (None, None) => {
                return Err(s3_error!(
                    MissingSecurityHeader,
                    "Your request was missing a required header: an ACL, grant headers or an AccessControlPolicy body"
                ));
            }
        };
        self.check_acl_allowed(&bucket, &acl)?;
        for stored in copies {
            let (_, info) = self
                .storage()
                .head_object(&key.tenant, &bucket, &stored)
                .await
                .map_err(s3_err)?;
            // A new version of the object's metadata over the same chunks, as tagging does.
            let mut meta = info.user_meta.clone();
            meta.insert(OBJECT_ACL.to_owned(), acl.encode());
            super::system_meta::keep_last_modified(&mut meta, &info);
            self.storage()
                .compose_object(
                    &key.tenant,
                    &bucket,
                    &stored,
                    &self.rewrap_key(&key, &info.user_meta)?,
                    &[(bucket.clone(), stored.clone())],
                    info.content_type.clone(),
                    meta,
                    info.etag.clone(),
                )
                .await
                .map_err(s3_err)?;
        }
        Ok(S3Response::new(dto::PutObjectAclOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use xnode_types::SecretKey;

    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, hyper::header::HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn canned_acls_grant_what_they_say() {
        let owner = SecretKey::generate().public();
        let other = SecretKey::generate().public();
        let private = Acl::canned("private", &owner).unwrap();
        assert!(private.allows(Some(&owner), Permission::Write, true));
        assert!(!private.allows(Some(&other), Permission::Read, true));
        assert!(!private.allows(None, Permission::Read, true));
        let public = Acl::canned("public-read", &owner).unwrap();
        assert!(public.allows(None, Permission::Read, true));
        assert!(!public.allows(None, Permission::Write, true));
        assert!(
            !public.allows(None, Permission::Read, false),
            "ignored public grants"
        );
        let rw = Acl::canned("public-read-write", &owner).unwrap();
        assert!(rw.allows(None, Permission::Write, true));
        let auth = Acl::canned("authenticated-read", &owner).unwrap();
        assert!(auth.allows(Some(&other), Permission::Read, true));
        assert!(!auth.allows(None, Permission::Read, true));
        assert!(!auth.allows(Some(&other), Permission::ReadAcp, true));
        assert_eq!(
            Acl::canned("log-delivery-write", &owner)
                .unwrap_err()
                .code()
                .as_str(),
            "NotImplemented"
        );
    }

    #[test]
    fn grant_headers_are_parsed_and_checked() {
        let owner = SecretKey::generate().public();
        let other = SecretKey::generate().public();
        let h = headers(&[
            (
                "x-amz-grant-read",
                format!("id=\"{}\", uri=\"{ALL_USERS}\"", other.to_hex()),
            ),
            ("x-amz-grant-write-acp", format!("id={}", other.to_hex())),
        ]);
        let acl = Acl::from_headers(&h, &owner).unwrap().unwrap();
        assert!(acl.allows(Some(&other), Permission::WriteAcp, true));
        assert!(acl.allows(None, Permission::Read, true));
        assert!(!acl.allows(Some(&owner), Permission::Write, true));
        assert!(acl.is_public());
        let both = headers(&[
            ("x-amz-acl", "private".into()),
            ("x-amz-grant-read", format!("id={}", other.to_hex())),
        ]);
        assert_eq!(
            Acl::from_headers(&both, &owner)
                .unwrap_err()
                .code()
                .as_str(),
            "InvalidRequest"
        );
        for bad in [
            "id=nothex",
            "emailAddress=a@b.c",
            "uri=http://x/y",
            "nonsense",
        ] {
            let h = headers(&[("x-amz-grant-read", bad.into())]);
            assert!(Acl::from_headers(&h, &owner).is_err(), "{bad}");
        }
        assert_eq!(Acl::from_headers(&HeaderMap::new(), &owner).unwrap(), None);
    }

    #[test]
    fn acls_round_trip_and_answer_groups_first() {
        let owner = SecretKey::generate().public();
        let acl = Acl::canned("public-read-write", &owner).unwrap();
        assert_eq!(Acl::decode(&acl.encode()), Some(acl.clone()));
        assert_eq!(Acl::decode("{\"v\":9,\"grants\":[]}"), None);
        let (o, grants) = acl.to_s3(&owner);
        assert_eq!(o.id, Some(owner.to_hex()));
        assert_eq!(grants.len(), 3);
        assert_eq!(
            grants[0].grantee.as_ref().unwrap().uri.as_deref(),
            Some(ALL_USERS)
        );
        assert_eq!(grants[2].grantee.as_ref().unwrap().id, Some(owner.to_hex()));
        let policy = AccessControlPolicy {
            grants: Some(grants),
            owner: Some(o),
        };
        assert_eq!(Acl::from_policy(&policy, &owner).unwrap().grants.len(), 3);
        let stranger = SecretKey::generate().public();
        assert_eq!(
            Acl::from_policy(&policy, &stranger)
                .unwrap_err()
                .code()
                .as_str(),
            "AccessDenied"
        );
    }
}
