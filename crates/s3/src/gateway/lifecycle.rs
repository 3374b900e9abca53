//! Lifecycle rules: `PutBucketLifecycleConfiguration`/`Get`/`Delete`, checked as strictly
//! as S3 checks them, and the worker that carries them out: expiring objects (a delete
//! marker in a versioned bucket), expiring noncurrent versions, removing expired delete
//! markers and aborting incomplete multipart uploads.
//!
//! The rules are an owner-signed bucket setting (kind `lifecycle`, see `settings`): a
//! peer cannot make a tenant's objects expire by inventing rules, because rules that do
//! not verify against the bucket owner's key are never read. The deletes are ordinary
//! deletes sealed under the tenant's authority, which only a node holding one of the
//! tenant's registered S3 keys has (the nodes the tenant chose as its edges), so a node
//! without that trust cannot carry them out at all. Among the nodes that run the worker,
//! each bucket's rules are ordered by rendezvous hashing on the bucket over the storage
//! set: the first node acts when an object is due, the node ranked `r` only once it is
//! `r` lifecycle days overdue. The work is done once while the first node lives, and
//! still done (later) when it is down or holds none of the tenant's keys. Every delete
//! is conditional on what was evaluated (an object overwritten meanwhile is not
//! expired), so two nodes acting at once remove nothing twice.
//!
//! A lifecycle "day" is 24 hours, or `s3_lifecycle_day` of the node configuration (tests
//! make it seconds, as Ceph RGW does with `rgw_lc_debug_interval`). An object is due
//! `Days` days after it was written, rounded up to the next midnight UTC as S3 rounds it
//! (with a short test day there is no midnight to round to, so Xnode does not round).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_storage::buckets::Versioning;
use xnode_storage::conditional::{ETagMatch, Preconditions};
use xnode_store::{ObjectInfo, ObjectMeta, internal_key, is_internal_key};
use xnode_types::PublicKeyBytes;

use super::settings::decode_document;
use super::versioning::{is_delete_marker, parse_version_key, public_id};
use super::{Gateway, system_meta::last_modified_ms, tagging, unix_ms};
use crate::keys::AccessKey;

/// The setting kind lifecycle rules are stored under.
pub(crate) const LIFECYCLE_KIND: &str = "lifecycle";
/// Format version of [`LifecycleDocument`].
const LIFECYCLE_DOCUMENT_VERSION: u32 = 1;
/// S3's limits: rules per configuration and the length of a rule id.
const MAX_RULES: usize = 1000;
const MAX_ID_CHARS: usize = 255;
/// The most deletes one pass makes per bucket; the rest wait for the next pass.
const MAX_ACTIONS_PER_BUCKET: usize = 1000;

/// A bucket's lifecycle rules as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LifecycleDocument {
    /// Format version of this document.
    pub v: u32,
    pub rules: Vec<Rule>,
}

/// How a rule's filter was written, so it is given back the way it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FilterForm {
    /// The old top-level `<Prefix>` (or nothing at all).
    Legacy,
    /// `<Filter>` with at most one condition.
    Plain,
    /// `<Filter><And>...</And></Filter>`.
    And,
}

/// Which objects a rule applies to: all of its conditions hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_greater_than: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_less_than: Option<i64>,
}

/// When current objects expire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Expiration {
    Days(i32),
    /// Unix seconds (midnight UTC).
    Date(i64),
    /// Only remove delete markers that no version is left behind.
    ExpiredDeleteMarker,
}

/// One lifecycle rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rule {
    pub id: String,
    pub enabled: bool,
    pub form: FilterForm,
    pub filter: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_multipart_days: Option<i32>,
}

fn malformed(message: &str) -> s3s::S3Error {
    s3_error!(MalformedXML, "{message}")
}

fn invalid(message: &str) -> s3s::S3Error {
    s3_error!(InvalidArgument, "{message}")
}

fn positive_days(days: i32, what: &str) -> S3Result<i32> {
    if days > 0 {
        Ok(days)
    } else {
        Err(invalid(&format!("'{what}' must be a positive integer")))
    }
}

fn tag_pair(tag: Tag) -> S3Result<(String, String)> {
    match (tag.key, tag.value) {
        (Some(k), v) => Ok((k, v.unwrap_or_default())),
        (None, _) => Err(malformed("A lifecycle filter's Tag needs a Key")),
    }
}

fn check_size(size: Option<i64>) -> S3Result<Option<i64>> {
    match size {
        Some(s) if s < 0 => Err(invalid(
            "Object sizes in a lifecycle filter must not be negative",
        )),
        s => Ok(s),
    }
}

/// Checks that a date of a lifecycle rule is a midnight UTC, as S3 requires.
fn check_midnight(date: &Timestamp) -> S3Result<i64> {
    let date = time::OffsetDateTime::from(date.clone());
    if date.time() != time::Time::MIDNIGHT {
        return Err(invalid("'Date' must be at midnight GMT"));
    }
    Ok(date.unix_timestamp())
}

/// A rule's filter in stored form, checked: `<Prefix>` or `<Filter>`, not both, and a
/// `<Filter>` with one condition or one `<And>`.
fn convert_filter(rule: &mut LifecycleRule) -> S3Result<(FilterForm, Filter)> {
    match (rule.prefix.take(), rule.filter.take()) {
        (Some(_), Some(_)) => Err(malformed(
            "A lifecycle rule has either a Prefix or a Filter, not both",
        )),
        (prefix, None) => Ok((
            FilterForm::Legacy,
            Filter {
                prefix,
                ..Filter::default()
            },
        )),
        (None, Some(filter)) => {
            // Several conditions directly in `<Filter>` (without `<And>`) all apply, as
            // Ceph RGW and the conformance suite have it; `<And>` beside them is refused.
            let others = filter.prefix.is_some()
                || filter.tag.is_some()
                || filter.object_size_greater_than.is_some()
                || filter.object_size_less_than.is_some();
            if filter.and.is_some() && others {
                return Err(malformed(
                    "A lifecycle Filter holds either And or its conditions, not both",
                ));
            }
            if let Some(and) = filter.and {
                let tags = and
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .map(tag_pair)
                    .collect::<S3Result<Vec<_>>>()?;
                tagging::validate(&tags)?;
                return Ok((
                    FilterForm::And,
                    Filter {
                        prefix: and.prefix,
                        tags,
                        size_greater_than: check_size(and.object_size_greater_than)?,
                        size_less_than: check_size(and.object_size_less_than)?,
                    },
                ));
            }
            Ok((
                FilterForm::Plain,
                Filter {
                    prefix: filter.prefix,
                    tags: filter.tag.map(tag_pair).transpose()?.into_iter().collect(),
                    size_greater_than: check_size(filter.object_size_greater_than)?,
                    size_less_than: check_size(filter.object_size_less_than)?,
                },
            ))
        }
    }
}

/// Checks a configuration against S3's rules and converts it to the stored form.
fn validate(config: BucketLifecycleConfiguration) -> S3Result<LifecycleDocument> {
    if config.rules.is_empty() {
        return Err(malformed(
            "A lifecycle configuration needs at least one rule",
        ));
    }
    if config.rules.len() > MAX_RULES {
        return Err(invalid("A lifecycle configuration has at most 1000 rules"));
    }
    let mut ids = BTreeSet::new();
    let mut rules = Vec::with_capacity(config.rules.len());
    for mut rule in config.rules {
        let enabled = match rule.status.as_str() {
            ExpirationStatus::ENABLED => true,
            ExpirationStatus::DISABLED => false,
            _ => {
                return Err(malformed(
                    "A lifecycle rule's Status is Enabled or Disabled",
                ));
            }
        };
        let id = match rule.id.take().filter(|id| !id.is_empty()) {
            Some(id) if id.chars().count() > MAX_ID_CHARS => {
                return Err(invalid("ID length should not exceed allowed limit of 255"));
            }
            Some(id) => id,
            None => format!("{:016x}", rand::random::<u64>()),
        };
        if !ids.insert(id.clone()) {
            return Err(invalid(
                "Rule ID must be unique. Found same ID for more than one rule",
            ));
        }
        // Transitions are checked as S3 checks them before they are refused as not
        // built, so a malformed one gets the 400 any S3 gives it, not a 501 that would
        // suggest it could be stored elsewhere.
        let transitions = rule.transitions.take().unwrap_or_default();
        for transition in &transitions {
            transitions::check_transition(transition)?;
        }
        let noncurrent_transitions = rule
            .noncurrent_version_transitions
            .take()
            .unwrap_or_default();
        for transition in &noncurrent_transitions {
            transitions::check_noncurrent_transition(transition)?;
        }
        let (form, filter) = convert_filter(&mut rule)?;
        let expiration = match rule.expiration {
            None => None,
            Some(e) => {
                let given = usize::from(e.days.is_some())
                    + usize::from(e.date.is_some())
                    + usize::from(e.expired_object_delete_marker.is_some());
                if given != 1 {
                    return Err(malformed(
                        "A lifecycle Expiration has exactly one of Days, Date and ExpiredObjectDeleteMarker",
                    ));
                }
                if let Some(days) = e.days {
                    Some(Expiration::Days(positive_days(days, "Days")?))
                } else if let Some(date) = e.date {
                    Some(Expiration::Date(check_midnight(&date)?))
                } else if e.expired_object_delete_marker == Some(true) {
                    if !filter.tags.is_empty() {
                        return Err(invalid(
                            "ExpiredObjectDeleteMarker cannot be specified with tags",
                        ));
                    }
                    Some(Expiration::ExpiredDeleteMarker)
                } else {
                    None
                }
            }
        };
        let (noncurrent_days, newer_noncurrent_versions) = match rule.noncurrent_version_expiration
        {
            None => (None, None),
            Some(n) => {
                let Some(days) = n.noncurrent_days else {
                    return Err(malformed(
                        "NoncurrentVersionExpiration needs NoncurrentDays",
                    ));
                };
                let newer = match n.newer_noncurrent_versions {
                    Some(v) if v <= 0 => {
                        return Err(invalid(
                            "'NewerNoncurrentVersions' must be a positive integer",
                        ));
                    }
                    v => v,
                };
                (Some(positive_days(days, "NoncurrentDays")?), newer)
            }
        };
        let abort_multipart_days = match rule.abort_incomplete_multipart_upload {
            None => None,
            Some(a) => {
                let Some(days) = a.days_after_initiation else {
                    return Err(malformed(
                        "AbortIncompleteMultipartUpload needs DaysAfterInitiation",
                    ));
                };
                if !filter.tags.is_empty() {
                    return Err(invalid(
                        "AbortIncompleteMultipartUpload cannot be specified with tags",
                    ));
                }
                Some(positive_days(days, "DaysAfterInitiation")?)
            }
        };
        if !transitions.is_empty() || !noncurrent_transitions.is_empty() {
            return Err(s3_error!(
                NotImplemented,
                "Lifecycle transitions are not supported by this gateway (it has one storage class); the configuration was not stored"
            ));
        }
        if expiration.is_none() && noncurrent_days.is_none() && abort_multipart_days.is_none() {
            return Err(invalid(
                "At least one action needs to be specified in a rule",
            ));
        }
        rules.push(Rule {
            id,
            enabled,
            form,
            filter,
            expiration,
            noncurrent_days,
            newer_noncurrent_versions,
            abort_multipart_days,
        });
    }
    Ok(LifecycleDocument {
        v: LIFECYCLE_DOCUMENT_VERSION,
        rules,
    })
}

fn tag_of((key, value): &(String, String)) -> Tag {
    Tag {
        key: Some(key.clone()),
        value: Some(value.clone()),
    }
}

/// A stored rule as S3 gives it back.
fn to_dto(rule: &Rule) -> LifecycleRule {
    let f = &rule.filter;
    let (prefix, filter) = match rule.form {
        FilterForm::Legacy => (f.prefix.clone(), None),
        FilterForm::Plain => (
            None,
            Some(LifecycleRuleFilter {
                and: None,
                object_size_greater_than: f.size_greater_than,
                object_size_less_than: f.size_less_than,
                prefix: f.prefix.clone(),
                tag: f.tags.first().map(tag_of),
            }),
        ),
        FilterForm::And => (
            None,
            Some(LifecycleRuleFilter {
                and: Some(LifecycleRuleAndOperator {
                    object_size_greater_than: f.size_greater_than,
                    object_size_less_than: f.size_less_than,
                    prefix: f.prefix.clone(),
                    tags: (!f.tags.is_empty()).then(|| f.tags.iter().map(tag_of).collect()),
                }),
                object_size_greater_than: None,
                object_size_less_than: None,
                prefix: None,
                tag: None,
            }),
        ),
    };
    let expiration = rule.expiration.as_ref().map(|e| match e {
        Expiration::Days(d) => LifecycleExpiration {
            days: Some(*d),
            ..Default::default()
        },
        Expiration::Date(s) => LifecycleExpiration {
            date: time::OffsetDateTime::from_unix_timestamp(*s)
                .ok()
                .map(Timestamp::from),
            ..Default::default()
        },
        Expiration::ExpiredDeleteMarker => LifecycleExpiration {
            expired_object_delete_marker: Some(true),
            ..Default::default()
        },
    });
    LifecycleRule {
        abort_incomplete_multipart_upload: rule.abort_multipart_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d),
            }
        }),
        expiration,
        filter,
        id: Some(rule.id.clone()),
        noncurrent_version_expiration: rule.noncurrent_days.map(|d| NoncurrentVersionExpiration {
            newer_noncurrent_versions: rule.newer_noncurrent_versions,
            noncurrent_days: Some(d),
        }),
        noncurrent_version_transitions: None,
        prefix,
        status: ExpirationStatus::from_static(if rule.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        transitions: None,
    }
}

impl Filter {
    /// Whether the filter's prefix covers `key` (tags and sizes not considered).
    fn covers_key(&self, key: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
    }

    /// Whether an object (its key and metadata) passes every condition.
    fn matches(&self, key: &str, info: &ObjectInfo) -> bool {
        if !self.covers_key(key) {
            return false;
        }
        let size = i64::try_from(info.size).unwrap_or(i64::MAX);
        if self.size_greater_than.is_some_and(|gt| size <= gt)
            || self.size_less_than.is_some_and(|lt| size >= lt)
        {
            return false;
        }
        if self.tags.is_empty() {
            return true;
        }
        let tags = tagging::stored(&info.user_meta);
        self.tags.iter().all(|t| tags.contains(t))
    }
}

/// `days` lifecycle days in milliseconds, saturating.
fn days_ms(days: i32, day: Duration) -> u64 {
    u64::try_from(days)
        .unwrap_or(0)
        .saturating_mul(u64::try_from(day.as_millis()).unwrap_or(u64::MAX))
}

/// The calendar day: with it, a rule's days end at midnight UTC, as S3 counts them.
pub(crate) const CALENDAR_DAY: Duration = Duration::from_secs(86_400);

/// When an object written at `created_ms` is due under `expiration` (never for a rule
/// that only removes delete markers). With calendar days, `Days` are added to the write
/// and the result is rounded up to the next midnight UTC, as S3 does (so the date
/// `x-amz-expiration` announces is when the worker acts); a shorter test day has no
/// midnight to round to and is not rounded.
fn expiry_ms(expiration: &Expiration, created_ms: u64, day: Duration) -> Option<u64> {
    match expiration {
        Expiration::Days(d) => {
            let due = created_ms.saturating_add(days_ms(*d, day));
            Some(if day == CALENDAR_DAY {
                let day_ms = days_ms(1, CALENDAR_DAY);
                due.div_ceil(day_ms).saturating_mul(day_ms)
            } else {
                due
            })
        }
        Expiration::Date(s) => Some(u64::try_from(*s).unwrap_or(0).saturating_mul(1000)),
        Expiration::ExpiredDeleteMarker => None,
    }
}

impl Gateway {
    /// `x-amz-expiration` for the current object `key` of `bucket`, if a rule expires it.
    pub(super) fn expiration_of(
        &self,
        bucket: &str,
        key: &str,
        info: &ObjectInfo,
    ) -> Option<String> {
        let document: LifecycleDocument =
            super::settings::bucket_setting(self.storage.registry(), LIFECYCLE_KIND, bucket)?;
        expiration_header(&document.rules, key, info)
    }
}

/// One thing the worker decided to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Expire the current object, if its ETag is still this one.
    ExpireCurrent { key: String, etag: String },
    /// Remove one version (noncurrent, or a delete marker left alone).
    RemoveVersion { key: String, version_id: String },
    /// Abort an incomplete multipart upload.
    AbortUpload { upload_id: String },
}

/// One version of a key, newest first in [`Plan`]'s input.
pub(crate) struct VersionView<'a> {
    pub public_id: String,
    pub info: &'a ObjectInfo,
}

/// What a bucket's rules call for at `now_ms`, for a node that acts `grace_ms` after an
/// item is due: the sans-I/O heart of the worker.
pub(crate) struct Plan<'a> {
    pub rules: &'a [Rule],
    pub day: Duration,
    pub now_ms: u64,
    pub grace_ms: u64,
}

impl Plan<'_> {
    fn due(&self, at_ms: u64) -> bool {
        self.now_ms >= at_ms.saturating_add(self.grace_ms)
    }

    fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }

    /// The current object `key`: expired if any rule's expiration is due.
    pub(crate) fn current(&self, key: &str, info: &ObjectInfo) -> Option<Action> {
        let due = self.enabled().any(|rule| {
            rule.expiration
                .as_ref()
                .and_then(|e| expiry_ms(e, last_modified_ms(info), self.day))
                .is_some_and(|at| rule.filter.matches(key, info) && self.due(at))
        });
        due.then(|| Action::ExpireCurrent {
            key: key.to_owned(),
            etag: info.etag.clone(),
        })
    }

    /// The versions of `key` (newest first; `current` says whether the key has a current
    /// object): noncurrent versions past their rules' days, beyond the newest ones kept,
    /// and a delete marker no version is left behind.
    pub(crate) fn versions(
        &self,
        key: &str,
        versions: &[VersionView<'_>],
        current: bool,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let mut removed = BTreeSet::new();
        for rule in self.enabled() {
            let Some(days) = rule.noncurrent_days else {
                continue;
            };
            let keep = usize::try_from(rule.newer_noncurrent_versions.unwrap_or(0)).unwrap_or(0);
            // A version became noncurrent when the next newer one was written.
            for (i, pair) in versions.windows(2).enumerate() {
                let (newer, version) = (&pair[0], &pair[1]);
                if i < keep || !rule.filter.matches(key, version.info) {
                    continue;
                }
                let at = last_modified_ms(newer.info).saturating_add(days_ms(days, self.day));
                if self.due(at) && removed.insert(version.public_id.clone()) {
                    out.push(Action::RemoveVersion {
                        key: key.to_owned(),
                        version_id: version.public_id.clone(),
                    });
                }
            }
        }
        // A delete marker that is the key's only version hides nothing: rules that
        // expire objects or ask for it remove it.
        let left: Vec<&VersionView<'_>> = versions
            .iter()
            .filter(|v| !removed.contains(&v.public_id))
            .collect();
        if let [only] = left.as_slice()
            && !current
            && is_delete_marker(only.info)
        {
            let wanted = self.enabled().any(|rule| {
                rule.filter.covers_key(key)
                    && match &rule.expiration {
                        Some(Expiration::ExpiredDeleteMarker) => true,
                        Some(e) => expiry_ms(e, last_modified_ms(only.info), self.day)
                            .is_some_and(|at| self.due(at)),
                        None => false,
                    }
            });
            if wanted {
                out.push(Action::RemoveVersion {
                    key: key.to_owned(),
                    version_id: only.public_id.clone(),
                });
            }
        }
        out
    }

    /// An incomplete multipart upload of `key` begun at `initiated_ms`.
    pub(crate) fn upload(&self, upload_id: &str, key: &str, initiated_ms: u64) -> Option<Action> {
        let due = self.enabled().any(|rule| {
            rule.abort_multipart_days.is_some_and(|days| {
                rule.filter.covers_key(key)
                    && self.due(initiated_ms.saturating_add(days_ms(days, self.day)))
            })
        });
        due.then(|| Action::AbortUpload {
            upload_id: upload_id.to_owned(),
        })
    }
}

impl Gateway {
    pub(super) async fn put_bucket_lifecycle_configuration_impl(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let Some(config) = input.lifecycle_configuration else {
            return Err(malformed("The request carries no lifecycle configuration"));
        };
        let document = validate(config)?;
        self.store_bucket_setting(&key, &input.bucket, LIFECYCLE_KIND, Some(&document))
            .await?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn get_bucket_lifecycle_configuration_impl(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let key = self.key_of(&req)?;
        let Some(document) = self.load_bucket_setting::<LifecycleDocument>(
            &key.tenant,
            &req.input.bucket,
            LIFECYCLE_KIND,
        )?
        else {
            return Err(s3_error!(
                NoSuchLifecycleConfiguration,
                "The lifecycle configuration does not exist"
            ));
        };
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(document.rules.iter().map(to_dto).collect()),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_bucket_lifecycle_impl(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let key = self.key_of(&req)?;
        self.store_bucket_setting::<LifecycleDocument>(
            &key,
            &req.input.bucket,
            LIFECYCLE_KIND,
            None,
        )
        .await?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput {}))
    }

    /// Carries out one bucket's rules as a node that acts `grace_ms` after an item is due,
    /// with `key` (one of the owner's keys registered here). Returns the actions taken.
    async fn run_lifecycle(
        &self,
        key: &AccessKey,
        bucket: &str,
        rules: &[Rule],
        day: Duration,
        grace_ms: u64,
    ) -> S3Result<u64> {
        let tenant = &key.tenant;
        // Listings leave internal keys out unless asked for them: current objects, then
        // the version objects of a versioned bucket.
        let mut entries = self.list_all(tenant, bucket, "").await?;
        if self.versioning(bucket) != Versioning::Unversioned {
            entries.extend(
                self.list_all(
                    tenant,
                    bucket,
                    &internal_key(xnode_store::VERSIONS_DIRECTORY),
                )
                .await?,
            );
        }
        let plan = Plan {
            rules,
            day,
            now_ms: unix_ms(),
            grace_ms,
        };
        let mut actions = Vec::new();
        let mut current: BTreeMap<&str, &ObjectInfo> = BTreeMap::new();
        let mut versions: BTreeMap<&str, Vec<VersionView<'_>>> = BTreeMap::new();
        for ObjectMeta { path, info, .. } in &entries {
            let Some(info) = info else { continue };
            if !is_internal_key(&path.key) {
                current.insert(&path.key, info);
            } else if let Some((object, _)) = parse_version_key(&path.key) {
                versions.entry(object).or_default().push(VersionView {
                    public_id: public_id(info),
                    info,
                });
            }
        }
        for (object, info) in &current {
            actions.extend(plan.current(object, info));
        }
        // Internal ids sort newest first, so each key's versions are in that order.
        for (object, list) in &versions {
            actions.extend(plan.versions(object, list, current.contains_key(object)));
        }
        if rules
            .iter()
            .any(|r| r.enabled && r.abort_multipart_days.is_some())
        {
            for (upload_id, upload) in self.uploads_of(tenant, bucket).await? {
                actions.extend(plan.upload(&upload_id, &upload.key, upload.initiated_ms));
            }
        }
        let mut done = 0u64;
        for action in actions.into_iter().take(MAX_ACTIONS_PER_BUCKET) {
            let result = match &action {
                Action::ExpireCurrent { key: object, etag } => self
                    .delete_versioned(
                        key,
                        bucket,
                        object,
                        None,
                        Preconditions {
                            if_match: Some(ETagMatch::ETag(etag.clone())),
                            ..Default::default()
                        },
                        false,
                    )
                    .await
                    .map(|_| ()),
                Action::RemoveVersion {
                    key: object,
                    version_id,
                } => self
                    .delete_versioned(
                        key,
                        bucket,
                        object,
                        Some(version_id),
                        Preconditions::default(),
                        false,
                    )
                    .await
                    .map(|_| ()),
                Action::AbortUpload { upload_id } => {
                    self.remove_upload(tenant, bucket, upload_id).await;
                    Ok(())
                }
            };
            match result {
                Ok(()) => done = done.saturating_add(1),
                // Overwritten since it was evaluated: not expired, as the rule was about
                // the object that was there.
                Err(e) if e.code().as_str() == "PreconditionFailed" => {}
                // A version under object lock (retention or legal hold) is kept: no rule
                // expires it before its lock lapses, as in S3.
                Err(e) if e.code() == &s3s::S3ErrorCode::AccessDenied => {
                    tracing::debug!(bucket, ?action, "a locked version is not expired");
                }
                Err(e) => {
                    tracing::warn!(bucket, ?action, error = %e, "a lifecycle action failed; retried at the next pass");
                }
            }
        }
        Ok(done)
    }
}

/// The lifecycle worker of one node: each pass carries out the rules of every bucket whose
/// owner has an S3 key registered here.
#[derive(Clone)]
pub struct LifecycleRunner {
    gateway: Gateway,
    day: Duration,
}

impl std::fmt::Debug for LifecycleRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleRunner")
            .field("day", &self.day)
            .finish_non_exhaustive()
    }
}

impl LifecycleRunner {
    pub(crate) fn new(gateway: Gateway, day: Duration) -> Self {
        Self { gateway, day }
    }

    /// How often a pass runs: a fifth of a lifecycle day, between one second and ten
    /// minutes.
    pub fn period(&self) -> Duration {
        (self.day / 5).clamp(Duration::from_secs(1), Duration::from_secs(600))
    }

    /// Where this node stands among those that may carry out `bucket`'s rules: 0 for the
    /// first node of the bucket's rendezvous order over the storage set.
    fn rank(&self, bucket: &str) -> u64 {
        let storage = self.gateway.storage();
        let order = xnode_store::place(
            format!("s3-lifecycle/{bucket}").as_bytes(),
            &storage.storage_set(),
            usize::MAX,
        );
        let me = storage.node_id();
        let rank = order.iter().position(|n| *n == me).unwrap_or(order.len());
        u64::try_from(rank).unwrap_or(u64::MAX)
    }

    /// One pass over every bucket with rules whose owner trusts this node. Returns the
    /// number of actions taken.
    pub async fn pass(&self) -> Result<u64, LifecycleError> {
        let registry = self.gateway.storage().registry().clone();
        let mut done = 0u64;
        for tenant in self.gateway.keys.tenants().map_err(LifecycleError::Keys)? {
            let Some(key) = self.acting_key(&tenant)? else {
                continue;
            };
            let prefix = format!("tenant/{}/bucket-{LIFECYCLE_KIND}/", tenant.to_hex());
            for entry in registry.list(&prefix) {
                let Some(bucket) = entry.key.strip_prefix(&prefix) else {
                    continue;
                };
                let Some(document) =
                    xnode_storage::bucket_settings::setting_of(&registry, bucket, LIFECYCLE_KIND)
                        .and_then(|d| decode_document::<LifecycleDocument>(d, LIFECYCLE_KIND))
                else {
                    continue;
                };
                let grace_ms = self.rank(bucket).saturating_mul(days_ms(1, self.day));
                match self
                    .gateway
                    .run_lifecycle(&key, bucket, &document.rules, self.day, grace_ms)
                    .await
                {
                    Ok(n) => done = done.saturating_add(n),
                    Err(e) => {
                        tracing::warn!(bucket, error = %e, "lifecycle pass over a bucket failed");
                    }
                }
            }
        }
        Ok(done)
    }

    /// A key of `tenant` registered on this node, whose registration is this node's
    /// authority to write the tenant's objects; `None` if it holds no such key.
    fn acting_key(&self, tenant: &PublicKeyBytes) -> Result<Option<AccessKey>, LifecycleError> {
        let keys = self
            .gateway
            .keys
            .list(tenant)
            .map_err(LifecycleError::Keys)?;
        let Some(key) = keys.into_iter().find(|k| k.registration.is_some()) else {
            return Ok(None);
        };
        if let Some(registration) = &key.registration {
            self.gateway
                .storage()
                .authorise_s3_key(key.tenant, registration.clone());
        }
        Ok(Some(key))
    }
}

/// Why a lifecycle pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot read this node's S3 keys")]
    Keys(#[source] crate::keys::KeysError),
}

mod header;
mod transitions;
pub(crate) use header::expiration_header;

#[cfg(test)]
mod tests;
