//! S3 Object Lock: `PutObjectLockConfiguration`/`GetObjectLockConfiguration`,
//! `PutObjectRetention`/`GetObjectRetention`, `PutObjectLegalHold`/`GetObjectLegalHold`,
//! the `x-amz-object-lock-*` headers of PUT, CopyObject and CreateMultipartUpload, and
//! the rule every delete of a version obeys.
//!
//! A bucket has object lock when its owner set the `object-lock` bucket setting
//! (`gateway::settings`): at creation (`x-amz-bucket-object-lock-enabled`, which also
//! enables versioning) or later on a versioned bucket. The setting holds the optional
//! default retention; once present it is never removed, and the bucket's versioning can no
//! longer be suspended.
//!
//! A version's retention (mode and retain-until time) and legal hold are entries of the
//! version's own metadata (`:lock-mode`, `:lock-until`, `:legal-hold`), so they are part of
//! the metadata entry the edge seals with the tenant's authority and every replica
//! verifies: a replica or any other node can neither drop nor shorten them, because it
//! cannot write a sealed entry for the tenant at all. Changing a retention or a legal hold
//! writes a new metadata version over the same chunks, as tags do. The rules (a locked
//! version is not deleted; COMPLIANCE is never shortened or weakened; GOVERNANCE only with
//! `x-amz-bypass-governance-retention`) are enforced by the gateway of the edge that holds
//! the tenant's keys, which is the only node that can write for the tenant (see
//! SECURITY.md and docs/decisions/2026-11-27-object-lock-lives-in-sealed-version-metadata.md).

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_registry::Registry;
use xnode_storage::buckets::Versioning;
use xnode_store::ObjectInfo;

use super::settings::bucket_setting;
use super::versioning::{VERSION_ID, public_id};
use super::{Gateway, s3_err, timestamp, unix_ms};
use crate::keys::AccessKey;

/// The bucket-setting kind of a bucket's object-lock configuration.
pub(crate) const OBJECT_LOCK_KIND: &str = "object-lock";
/// The metadata entry holding a version's retention mode (`GOVERNANCE` or `COMPLIANCE`);
/// storage reads it too, to refuse breaking a COMPLIANCE retention itself.
const LOCK_MODE: &str = xnode_store::LOCK_MODE_ENTRY;
/// The metadata entry holding the end of a version's retention (Unix milliseconds).
const LOCK_UNTIL: &str = xnode_store::LOCK_UNTIL_ENTRY;
/// The metadata entry holding a version's legal hold (`ON` or `OFF`).
const LEGAL_HOLD: &str = ":legal-hold";

const GOVERNANCE: &str = "GOVERNANCE";
const COMPLIANCE: &str = xnode_store::COMPLIANCE_MODE;
const MS_PER_DAY: u64 = 86_400_000;
/// AWS's longest default retention: 100 years (36 500 days).
const MAX_DEFAULT_DAYS: u64 = 36_500;

/// A retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    /// Deletable, shortenable and removable by the owner with the bypass header.
    Governance,
    /// Neither deletable nor shortenable by anyone until it lapses.
    Compliance,
}

impl Mode {
    fn parse(text: &str) -> Option<Self> {
        match text {
            GOVERNANCE => Some(Mode::Governance),
            COMPLIANCE => Some(Mode::Compliance),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Governance => GOVERNANCE,
            Mode::Compliance => COMPLIANCE,
        }
    }
}

/// A bucket's default retention: a period counted from each version's creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DefaultRetention {
    mode: Mode,
    /// Exactly one of `days` and `years` is set.
    days: Option<u32>,
    years: Option<u32>,
}

impl DefaultRetention {
    /// The retention this default gives a version created at `created_ms`.
    fn from(&self, created_ms: u64) -> Retention {
        Retention {
            mode: self.mode,
            until_ms: created_ms.saturating_add(self.period_ms()),
        }
    }

    fn period_ms(&self) -> u64 {
        let days = match (self.days, self.years) {
            (Some(d), _) => u64::from(d),
            (None, Some(y)) => u64::from(y).saturating_mul(365),
            (None, None) => 0,
        };
        days.saturating_mul(MS_PER_DAY)
    }
}

/// The document of a bucket's `object-lock` setting. Its presence means object lock is
/// enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockConfig {
    /// Format version of this document.
    v: u32,
    default_retention: Option<DefaultRetention>,
}

const LOCK_CONFIG_VERSION: u32 = 1;

/// A version's retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retention {
    mode: Mode,
    until_ms: u64,
}

/// What holds a version: its retention and legal hold, as its metadata says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionLock {
    retention: Option<Retention>,
    /// `None`: never set; `Some(false)`: set to OFF.
    legal_hold: Option<bool>,
}

impl VersionLock {
    /// The lock recorded in an object's metadata. Entries that do not parse (only a
    /// gateway writes them, so none should) count as the strictest reading: an unknown
    /// mode with a time is COMPLIANCE, an unknown hold is ON.
    pub(crate) fn of(meta: &BTreeMap<String, String>) -> Self {
        let retention = meta.get(LOCK_UNTIL).map(|until| Retention {
            mode: meta
                .get(LOCK_MODE)
                .and_then(|m| Mode::parse(m))
                .unwrap_or(Mode::Compliance),
            until_ms: until.parse().unwrap_or(u64::MAX),
        });
        let legal_hold = meta.get(LEGAL_HOLD).map(|h| h != "OFF");
        VersionLock {
            retention,
            legal_hold,
        }
    }

    /// Writes this lock into an object's metadata, replacing whatever lock it held.
    fn store_into(&self, meta: &mut BTreeMap<String, String>) {
        strip(meta);
        if let Some(r) = self.retention {
            meta.insert(LOCK_MODE.to_owned(), r.mode.as_str().to_owned());
            meta.insert(LOCK_UNTIL.to_owned(), r.until_ms.to_string());
        }
        if let Some(on) = self.legal_hold {
            meta.insert(
                LEGAL_HOLD.to_owned(),
                if on { "ON" } else { "OFF" }.to_owned(),
            );
        }
    }

    /// The retention still in force at `now_ms`.
    fn active_retention(&self, now_ms: u64) -> Option<Retention> {
        self.retention.filter(|r| r.until_ms > now_ms)
    }

    /// Why deleting the version is refused at `now_ms`, if it is: a legal hold, a
    /// COMPLIANCE retention, or a GOVERNANCE retention without `bypass`.
    pub(crate) fn refuses_delete(&self, now_ms: u64, bypass: bool) -> Option<&'static str> {
        if self.legal_hold == Some(true) {
            return Some("the object version is under a legal hold");
        }
        match self.active_retention(now_ms) {
            Some(Retention {
                mode: Mode::Compliance,
                ..
            }) => Some("the object version is under COMPLIANCE retention"),
            Some(Retention {
                mode: Mode::Governance,
                ..
            }) if !bypass => Some(
                "the object version is under GOVERNANCE retention (x-amz-bypass-governance-retention lets its owner delete it)",
            ),
            _ => None,
        }
    }
}

/// Removes every lock entry from metadata (a copy does not inherit its source's lock).
pub(super) fn strip(meta: &mut BTreeMap<String, String>) {
    meta.remove(LOCK_MODE);
    meta.remove(LOCK_UNTIL);
    meta.remove(LEGAL_HOLD);
}

/// Copies the lock entries of `from` into `to` (from an upload's record to the object it
/// completes).
pub(super) fn copy_entries(from: &BTreeMap<String, String>, to: &mut BTreeMap<String, String>) {
    for name in [LOCK_MODE, LOCK_UNTIL, LEGAL_HOLD] {
        if let Some(value) = from.get(name) {
            to.insert(name.to_owned(), value.clone());
        }
    }
}

/// Whether a version's retention may go from `old` to `new` at `now_ms`: a lapsed
/// retention may become anything; COMPLIANCE only lengthens and stays COMPLIANCE;
/// GOVERNANCE lengthens in its mode freely, and anything else only with `bypass`.
fn retention_change_allowed(
    old: Option<Retention>,
    new: Option<Retention>,
    now_ms: u64,
    bypass: bool,
) -> bool {
    let Some(old) = old.filter(|r| r.until_ms > now_ms) else {
        return true;
    };
    let keeps = new.is_some_and(|n| n.mode == old.mode && n.until_ms >= old.until_ms);
    match old.mode {
        Mode::Compliance => keeps,
        Mode::Governance => keeps || bypass,
    }
}

/// The object-lock configuration of bucket `name`, if object lock is enabled on it.
pub(crate) fn lock_config(registry: &Registry, name: &str) -> Option<LockConfig> {
    bucket_setting::<LockConfig>(registry, OBJECT_LOCK_KIND, name)
}

fn invalid_retention_period(message: &str) -> s3s::S3Error {
    let mut e = s3s::S3Error::with_message(
        s3s::S3ErrorCode::Custom("InvalidRetentionPeriod".into()),
        message.to_owned(),
    );
    e.set_status_code(hyper::StatusCode::BAD_REQUEST);
    e
}

fn not_lock_enabled() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration"
    )
}

/// A configuration as S3 sends it, checked: `ObjectLockEnabled` must be `Enabled`; a rule
/// holds a default retention with a valid mode and exactly one positive period.
fn parse_config(config: Option<&ObjectLockConfiguration>) -> S3Result<LockConfig> {
    let Some(config) = config else {
        return Err(s3_error!(MalformedXML, "The configuration is missing"));
    };
    if config.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
        return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
    }
    let Some(rule) = &config.rule else {
        return Ok(LockConfig {
            v: LOCK_CONFIG_VERSION,
            default_retention: None,
        });
    };
    let Some(default) = &rule.default_retention else {
        return Err(s3_error!(
            MalformedXML,
            "A rule must hold a DefaultRetention"
        ));
    };
    let Some(mode) = default.mode.as_ref().and_then(|m| Mode::parse(m.as_str())) else {
        return Err(s3_error!(
            MalformedXML,
            "The retention mode must be GOVERNANCE or COMPLIANCE"
        ));
    };
    let positive = |n: i32, max: u64| {
        u32::try_from(n)
            .ok()
            .filter(|&n| n > 0 && u64::from(n) <= max)
            .ok_or_else(|| {
                invalid_retention_period("The default retention period must be a positive number of days or years, at most 100 years")
            })
    };
    let (days, years) = match (default.days, default.years) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(s3_error!(
                MalformedXML,
                "A default retention has exactly one of Days and Years"
            ));
        }
        (Some(d), None) => (Some(positive(d, MAX_DEFAULT_DAYS)?), None),
        (None, Some(y)) => (None, Some(positive(y, MAX_DEFAULT_DAYS / 365)?)),
    };
    Ok(LockConfig {
        v: LOCK_CONFIG_VERSION,
        default_retention: Some(DefaultRetention { mode, days, years }),
    })
}

fn retain_until_ms(date: &Timestamp) -> u64 {
    let t = time::OffsetDateTime::from(date.clone());
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// A retention as a request gives it (mode and date), checked: both or neither, a known
/// mode (`MalformedXML` in a body, `InvalidArgument` in headers, as AWS answers), a date
/// in the future.
fn parse_retention(
    mode: Option<&str>,
    until: Option<&Timestamp>,
    now_ms: u64,
    in_body: bool,
) -> S3Result<Option<Retention>> {
    let bad = |message: &str| {
        if in_body {
            s3_error!(MalformedXML, "{message}")
        } else {
            s3_error!(InvalidArgument, "{message}")
        }
    };
    match (mode, until) {
        (None, None) => Ok(None),
        (Some(mode), Some(until)) => {
            let mode = Mode::parse(mode)
                .ok_or_else(|| bad("The retention mode must be GOVERNANCE or COMPLIANCE"))?;
            let until_ms = retain_until_ms(until);
            if until_ms <= now_ms {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future"
                ));
            }
            Ok(Some(Retention { mode, until_ms }))
        }
        _ => Err(bad(
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
        )),
    }
}

fn parse_hold(status: Option<&str>, in_body: bool) -> S3Result<Option<bool>> {
    match status {
        None => Ok(None),
        Some(ObjectLockLegalHoldStatus::ON) => Ok(Some(true)),
        Some(ObjectLockLegalHoldStatus::OFF) => Ok(Some(false)),
        Some(other) if in_body => Err(s3_error!(
            MalformedXML,
            "Unknown legal hold status {other:?}"
        )),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Unknown legal hold status {other:?}"
        )),
    }
}

/// When a write takes the bucket's default retention: a PUT or a copy when it is made; a
/// multipart upload when it completes (see [`Gateway::apply_default_retention_at_completion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DefaultRetentionAt {
    Write,
    Completion,
}

/// The lock headers of a write (PUT, CopyObject, CreateMultipartUpload).
pub(super) struct LockHeaders<'a> {
    pub(super) mode: Option<&'a ObjectLockMode>,
    pub(super) until: Option<&'a Timestamp>,
    pub(super) legal_hold: Option<&'a ObjectLockLegalHoldStatus>,
}

/// The lock fields of GET and HEAD answers.
pub(super) struct LockFields {
    pub(super) mode: Option<ObjectLockMode>,
    pub(super) until: Option<Timestamp>,
    pub(super) legal_hold: Option<ObjectLockLegalHoldStatus>,
}

/// What GET and HEAD say about a version's lock.
pub(super) fn lock_fields(info: &ObjectInfo) -> LockFields {
    let lock = VersionLock::of(&info.user_meta);
    LockFields {
        mode: lock
            .retention
            .map(|r| ObjectLockMode::from_static(r.mode.as_str())),
        until: lock.retention.map(|r| timestamp(r.until_ms)),
        legal_hold: lock.legal_hold.map(|on| {
            ObjectLockLegalHoldStatus::from_static(if on {
                ObjectLockLegalHoldStatus::ON
            } else {
                ObjectLockLegalHoldStatus::OFF
            })
        }),
    }
}

impl Gateway {
    /// Whether object lock is enabled on bucket `name`.
    pub(super) fn lock_enabled(&self, name: &str) -> bool {
        lock_config(self.storage.registry(), name).is_some()
    }

    /// Stamps a new version's metadata with the lock its write asked for, or (with
    /// [`DefaultRetentionAt::Write`]) the bucket's default retention, counted from now.
    /// Lock headers on a bucket without object lock are refused.
    pub(super) fn apply_write_lock(
        &self,
        bucket: &str,
        headers: &LockHeaders<'_>,
        default_at: DefaultRetentionAt,
        meta: &mut BTreeMap<String, String>,
    ) -> S3Result<()> {
        strip(meta);
        let asked =
            headers.mode.is_some() || headers.until.is_some() || headers.legal_hold.is_some();
        let Some(config) = lock_config(self.storage.registry(), bucket) else {
            return if asked {
                Err(not_lock_enabled())
            } else {
                Ok(())
            };
        };
        let now = unix_ms();
        let retention =
            match parse_retention(headers.mode.map(|m| m.as_str()), headers.until, now, false)? {
                Some(r) => Some(r),
                None if default_at == DefaultRetentionAt::Write => {
                    config.default_retention.map(|d| d.from(now))
                }
                None => None,
            };
        let legal_hold = parse_hold(headers.legal_hold.map(|h| h.as_str()), false)?;
        VersionLock {
            retention,
            legal_hold,
        }
        .store_into(meta);
        Ok(())
    }

    /// Gives the object a multipart upload completes the bucket's default retention,
    /// counted from now (the completion), unless its upload asked for a retention of its
    /// own. S3 counts a default retention from when the object version is created, which
    /// for a multipart upload is its completion, not its initiation: an upload that took
    /// a week must not come out with a week less of retention.
    pub(super) fn apply_default_retention_at_completion(
        &self,
        bucket: &str,
        meta: &mut BTreeMap<String, String>,
    ) {
        if meta.contains_key(LOCK_UNTIL) {
            return;
        }
        let Some(default) =
            lock_config(self.storage.registry(), bucket).and_then(|c| c.default_retention)
        else {
            return;
        };
        let mut lock = VersionLock::of(meta);
        lock.retention = Some(default.from(unix_ms()));
        lock.store_into(meta);
    }

    /// Turns object lock on for a bucket just created with
    /// `x-amz-bucket-object-lock-enabled: true`: versioning enabled, no default retention.
    pub(super) async fn enable_lock_at_creation(
        &self,
        key: &AccessKey,
        bucket: &str,
    ) -> S3Result<()> {
        let entry = self.sign_bucket_setting(
            key,
            bucket,
            xnode_storage::buckets::VERSIONING_KIND,
            Some(&Versioning::Enabled),
        )?;
        let applied = self
            .storage()
            .set_bucket_versioning(&key.tenant, bucket, entry)
            .map_err(s3_err)?;
        self.storage.registry().spread(&applied).await;
        let config = LockConfig {
            v: LOCK_CONFIG_VERSION,
            default_retention: None,
        };
        self.store_bucket_setting(key, bucket, OBJECT_LOCK_KIND, Some(&config))
            .await
    }

    /// The stored key and metadata of the version a retention or legal-hold request
    /// names (the current one without a version id).
    async fn lock_target(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        version_id: Option<&str>,
    ) -> S3Result<(String, ObjectInfo)> {
        self.require_bucket(&key.tenant, bucket)?;
        self.check_key(object)?;
        if !self.lock_enabled(bucket) {
            return Err(not_lock_enabled());
        }
        let id = match version_id {
            Some(id) => id.to_owned(),
            None => {
                let (_, info) = self
                    .storage()
                    .head_object(&key.tenant, bucket, object)
                    .await
                    .map_err(s3_err)?;
                public_id(&info)
            }
        };
        let (stored, info) = self.find_version(&key.tenant, bucket, object, &id).await?;
        if super::versioning::is_delete_marker(&info) {
            return Err(s3_error!(
                MethodNotAllowed,
                "The specified method is not allowed against a delete marker."
            ));
        }
        Ok((stored, info))
    }

    /// Rewrites a version's lock: a new metadata version of the version object over the
    /// same chunks and, when it is the object's current version, of the copy under the
    /// object's key too.
    async fn rewrite_lock(
        &self,
        key: &AccessKey,
        bucket: &str,
        object: &str,
        stored: &str,
        info: &ObjectInfo,
        lock: VersionLock,
    ) -> S3Result<()> {
        let mut meta = info.user_meta.clone();
        lock.store_into(&mut meta);
        super::system_meta::keep_last_modified(&mut meta, info);
        let mut targets = vec![stored.to_owned()];
        if stored != object {
            match self
                .storage()
                .head_object(&key.tenant, bucket, object)
                .await
            {
                // The key holds a copy of the current version, stamped with its id.
                Ok((_, current))
                    if current.user_meta.contains_key(VERSION_ID)
                        && public_id(&current) == public_id(info) =>
                {
                    targets.push(object.to_owned());
                }
                Ok(_) | Err(xnode_storage::StorageError::NoSuchKey(_)) => {}
                Err(e) => return Err(s3_err(e)),
            }
        }
        for target in targets {
            self.storage()
                .compose_object(
                    &key.tenant,
                    bucket,
                    &target,
                    &self.rewrap_key(key, &info.user_meta)?,
                    &[(bucket.to_owned(), stored.to_owned())],
                    info.content_type.clone(),
                    meta.clone(),
                    info.etag.clone(),
                )
                .await
                .map_err(s3_err)?;
        }
        Ok(())
    }

    pub(super) async fn put_object_lock_configuration_impl(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        if input.token.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "object lock tokens are not supported by this gateway"
            ));
        }
        let config = parse_config(input.object_lock_configuration.as_ref())?;
        // Object lock is turned on for a bucket only while its versioning is enabled.
        if !self.lock_enabled(&input.bucket)
            && self.versioning(&input.bucket) != Versioning::Enabled
        {
            return Err(s3_error!(
                InvalidBucketState,
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
            ));
        }
        self.put_bucket_setting(&key, OBJECT_LOCK_KIND, &input.bucket, Some(&config))
            .await?;
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    pub(super) async fn get_object_lock_configuration_impl(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let Some(config) =
            self.load_bucket_setting::<LockConfig>(&key.tenant, &input.bucket, OBJECT_LOCK_KIND)?
        else {
            return Err(s3_error!(
                ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket"
            ));
        };
        let rule = config.default_retention.map(|d| ObjectLockRule {
            default_retention: Some(s3s::dto::DefaultRetention {
                mode: Some(ObjectLockRetentionMode::from_static(d.mode.as_str())),
                days: d.days.and_then(|n| i32::try_from(n).ok()),
                years: d.years.and_then(|n| i32::try_from(n).ok()),
            }),
        });
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(
                    ObjectLockEnabled::ENABLED,
                )),
                rule,
            }),
        }))
    }

    pub(super) async fn put_object_retention_impl(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let (stored, info) = self
            .lock_target(&key, &input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let now = unix_ms();
        let retention = input.retention.as_ref();
        let new = parse_retention(
            retention.and_then(|r| r.mode.as_ref()).map(|m| m.as_str()),
            retention.and_then(|r| r.retain_until_date.as_ref()),
            now,
            true,
        )?;
        let mut lock = VersionLock::of(&info.user_meta);
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        if !retention_change_allowed(lock.retention, new, now, bypass) {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the object version's retention may not be shortened or weakened"
            ));
        }
        lock.retention = new;
        self.rewrite_lock(&key, &input.bucket, &input.key, &stored, &info, lock)
            .await?;
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(super) async fn get_object_retention_impl(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let (_, info) = self
            .lock_target(&key, &input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let Some(r) = VersionLock::of(&info.user_meta).retention else {
            return Err(s3_error!(
                NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration"
            ));
        };
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from_static(r.mode.as_str())),
                retain_until_date: Some(timestamp(r.until_ms)),
            }),
        }))
    }

    pub(super) async fn put_object_legal_hold_impl(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let (stored, info) = self
            .lock_target(&key, &input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let Some(on) = parse_hold(
            input
                .legal_hold
                .as_ref()
                .and_then(|h| h.status.as_ref())
                .map(|s| s.as_str()),
            true,
        )?
        else {
            return Err(s3_error!(MalformedXML, "The legal hold status is missing"));
        };
        let mut lock = VersionLock::of(&info.user_meta);
        lock.legal_hold = Some(on);
        self.rewrite_lock(&key, &input.bucket, &input.key, &stored, &info, lock)
            .await?;
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(super) async fn get_object_legal_hold_impl(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        let (_, info) = self
            .lock_target(&key, &input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let Some(status) = lock_fields(&info).legal_hold else {
            return Err(s3_error!(
                NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration"
            ));
        };
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(status),
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(mode: Mode, until_ms: u64) -> Option<Retention> {
        Some(Retention { mode, until_ms })
    }

    #[test]
    fn compliance_is_never_shortened_or_weakened() {
        let old = retention(Mode::Compliance, 2_000);
        for bypass in [false, true] {
            assert!(!retention_change_allowed(old, None, 1_000, bypass));
            assert!(!retention_change_allowed(
                old,
                retention(Mode::Compliance, 1_999),
                1_000,
                bypass
            ));
            assert!(!retention_change_allowed(
                old,
                retention(Mode::Governance, 3_000),
                1_000,
                bypass
            ));
            assert!(retention_change_allowed(
                old,
                retention(Mode::Compliance, 3_000),
                1_000,
                bypass
            ));
        }
        // Once lapsed, anything goes.
        assert!(retention_change_allowed(old, None, 2_000, false));
    }

    #[test]
    fn governance_changes_need_the_bypass_except_lengthening() {
        let old = retention(Mode::Governance, 2_000);
        assert!(retention_change_allowed(
            old,
            retention(Mode::Governance, 2_500),
            1_000,
            false
        ));
        assert!(!retention_change_allowed(
            old,
            retention(Mode::Governance, 1_500),
            1_000,
            false
        ));
        assert!(!retention_change_allowed(
            old,
            retention(Mode::Compliance, 2_000),
            1_000,
            false
        ));
        assert!(!retention_change_allowed(old, None, 1_000, false));
        assert!(retention_change_allowed(
            old,
            retention(Mode::Compliance, 2_000),
            1_000,
            true
        ));
        assert!(retention_change_allowed(old, None, 1_000, true));
    }

    #[test]
    fn deletes_obey_holds_and_retention() {
        let mut meta = BTreeMap::new();
        let lock = VersionLock {
            retention: retention(Mode::Governance, 2_000),
            legal_hold: Some(false),
        };
        lock.store_into(&mut meta);
        assert_eq!(VersionLock::of(&meta), lock);
        assert!(lock.refuses_delete(1_000, false).is_some());
        assert!(lock.refuses_delete(1_000, true).is_none());
        assert!(lock.refuses_delete(2_000, false).is_none());
        let held = VersionLock {
            retention: None,
            legal_hold: Some(true),
        };
        assert!(held.refuses_delete(1_000, true).is_some());
        let compliance = VersionLock {
            retention: retention(Mode::Compliance, 2_000),
            legal_hold: None,
        };
        assert!(compliance.refuses_delete(1_999, true).is_some());
        // A malformed entry reads as the strictest lock, never as none.
        meta.insert(LOCK_MODE.into(), "bogus".into());
        meta.insert(LOCK_UNTIL.into(), "x".into());
        meta.insert(LEGAL_HOLD.into(), "?".into());
        let strict = VersionLock::of(&meta);
        assert!(strict.refuses_delete(u64::MAX - 1, true).is_some());
        strip(&mut meta);
        assert_eq!(VersionLock::of(&meta), VersionLock::default());
    }

    #[test]
    fn configurations_are_checked_as_aws_checks_them() {
        let conf = |enabled: &str, mode: &str, days: Option<i32>, years: Option<i32>| {
            ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from(enabled.to_owned())),
                rule: Some(ObjectLockRule {
                    default_retention: Some(s3s::dto::DefaultRetention {
                        mode: Some(ObjectLockRetentionMode::from(mode.to_owned())),
                        days,
                        years,
                    }),
                }),
            }
        };
        let code = |c: ObjectLockConfiguration| match parse_config(Some(&c)) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().as_str().to_owned(),
        };
        assert_eq!(code(conf("Enabled", GOVERNANCE, Some(1), None)), "ok");
        assert_eq!(code(conf("Enabled", COMPLIANCE, None, Some(1))), "ok");
        assert_eq!(
            code(conf("Enabled", GOVERNANCE, Some(1), Some(1))),
            "MalformedXML"
        );
        assert_eq!(
            code(conf("Enabled", GOVERNANCE, Some(0), None)),
            "InvalidRetentionPeriod"
        );
        assert_eq!(
            code(conf("Enabled", GOVERNANCE, None, Some(-1))),
            "InvalidRetentionPeriod"
        );
        assert_eq!(
            code(conf("Enabled", "governance", None, Some(1))),
            "MalformedXML"
        );
        assert_eq!(
            code(conf("Disabled", GOVERNANCE, None, Some(1))),
            "MalformedXML"
        );
        let Ok(parsed) = parse_config(Some(&conf("Enabled", GOVERNANCE, Some(2), None))) else {
            panic!("a valid configuration was refused");
        };
        assert_eq!(
            parsed.default_retention.map(|d| d.period_ms()),
            Some(2 * MS_PER_DAY)
        );
    }
}
