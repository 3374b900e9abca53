//! Server access logging configuration: `PutBucketLogging` and `GetBucketLogging` (an
//! empty `BucketLoggingStatus` turns logging off).
//!
//! A bucket's logging configuration is an owner-signed bucket setting (kind `logging`,
//! see `settings`), replicated through the registry like CORS or lifecycle rules, so every
//! edge node that serves a request for the bucket knows where its record goes. It is
//! checked as S3 checks it when it is put: the target bucket must exist and belong to the
//! same tenant (`InvalidTargetBucketForLogging` otherwise), must not itself log into
//! another bucket (chains of log buckets are refused, as Ceph RGW refuses them), and its
//! bucket policy must allow the logging service principal (`logging.s3.amazonaws.com`)
//! `s3:PutObject` on `arn:aws:s3:::<target>/<prefix>` for this source bucket and account
//! (`AccessDenied` otherwise). The same policy is checked again at every delivery, so
//! taking the permission away stops delivery. Logging into the source bucket itself is
//! allowed, as in S3: deliveries are never logged, so it cannot loop.
//!
//! `TargetGrants` are honoured: each grantee (a tenant by canonical id, or the AllUsers or
//! AuthenticatedUsers group) gets `READ` or `FULL_CONTROL` on every log object, written
//! as the object's ACL; `WRITE` (meaningless on an object) and grantees by e-mail address
//! are refused with `InvalidArgument`. Delivery itself is `crate::access_log`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_registry::Registry;
use xnode_storage::buckets::owner_of;
use xnode_types::PublicKeyBytes;

use super::Gateway;
use super::acl::{ALL_USERS, AUTHENTICATED_USERS};
use super::policy::bucket_policy;
use super::settings::bucket_setting;

/// The setting kind a bucket's logging configuration is stored under.
pub(crate) const LOGGING_KIND: &str = "logging";
/// Format version of [`LoggingDocument`].
const LOGGING_DOCUMENT_VERSION: u32 = 1;
/// The longest target prefix accepted, in bytes: the rest of an object key's 1024 bytes
/// is left for the date, partition and unique parts of log object names.
const MAX_PREFIX_BYTES: usize = 512;
/// The most grants a configuration may carry (S3's limit on an ACL).
const MAX_GRANTS: usize = 100;

/// A bucket's server access logging configuration as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoggingDocument {
    /// Format version of this document.
    pub v: u32,
    pub target_bucket: String,
    pub target_prefix: String,
    pub key_format: KeyFormat,
    #[serde(default)]
    pub grants: Vec<LogGrant>,
}

/// How log object names are formed (S3's `TargetObjectKeyFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyFormat {
    /// `[prefix]YYYY-mm-DD-HH-MM-SS-UniqueString`.
    Simple,
    /// `[prefix][account]/[region]/[bucket]/YYYY/mm/DD/YYYY-mm-DD-HH-MM-SS-UniqueString`,
    /// the date directories from the first event's time or from the delivery's.
    Partitioned { event_time: bool },
}

/// Who a log object is shared with, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogGrant {
    /// A tenant id (hex), or a group URI.
    pub grantee: String,
    pub group: bool,
    pub full_control: bool,
}

impl LogGrant {
    /// The grantee as an `x-amz-grant-*` header entry.
    pub(crate) fn header_entry(&self) -> String {
        if self.group {
            format!("uri=\"{}\"", self.grantee)
        } else {
            format!("id=\"{}\"", self.grantee)
        }
    }
}

fn invalid_argument(message: &str) -> s3s::S3Error {
    s3_error!(InvalidArgument, "{message}")
}

fn invalid_target(message: &str) -> s3s::S3Error {
    let mut e = s3s::S3Error::with_message(
        s3s::S3ErrorCode::Custom("InvalidTargetBucketForLogging".into()),
        message.to_owned(),
    );
    e.set_status_code(hyper::StatusCode::BAD_REQUEST);
    e
}

fn convert_grants(grants: Option<TargetGrants>) -> S3Result<Vec<LogGrant>> {
    let grants = grants.unwrap_or_default();
    if grants.len() > MAX_GRANTS {
        return Err(invalid_argument(
            "A logging configuration has at most 100 grants",
        ));
    }
    let mut out = Vec::with_capacity(grants.len());
    for grant in grants {
        let full_control = match grant.permission.as_ref().map(BucketLogsPermission::as_str) {
            Some(BucketLogsPermission::READ) => false,
            Some(BucketLogsPermission::FULL_CONTROL) => true,
            Some(BucketLogsPermission::WRITE) => {
                return Err(invalid_argument(
                    "WRITE cannot be granted on log objects; grant READ or FULL_CONTROL",
                ));
            }
            _ => return Err(s3_error!(MalformedXML, "A TargetGrant needs a Permission")),
        };
        let Some(grantee) = grant.grantee else {
            return Err(s3_error!(MalformedXML, "A TargetGrant needs a Grantee"));
        };
        let (grantee, group) = match grantee.type_.as_str() {
            Type::CANONICAL_USER => {
                let id = grantee.id.unwrap_or_default();
                if PublicKeyBytes::from_hex(&id).is_err() {
                    return Err(invalid_argument(
                        "A CanonicalUser grantee must be a tenant id",
                    ));
                }
                (id, false)
            }
            Type::GROUP => {
                let uri = grantee.uri.unwrap_or_default();
                if uri != ALL_USERS && uri != AUTHENTICATED_USERS {
                    return Err(invalid_argument(
                        "A Group grantee must be the AllUsers or AuthenticatedUsers group",
                    ));
                }
                (uri, true)
            }
            _ => {
                return Err(invalid_argument(
                    "Grantees by e-mail address are not supported; name the tenant id",
                ));
            }
        };
        out.push(LogGrant {
            grantee,
            group,
            full_control,
        });
    }
    Ok(out)
}

/// Checks a `LoggingEnabled` against S3's rules on its form and converts it to the
/// stored form (the target bucket is checked by the gateway, which sees the registry).
fn validate(enabled: LoggingEnabled) -> S3Result<LoggingDocument> {
    if enabled.target_bucket.is_empty() {
        return Err(s3_error!(MalformedXML, "TargetBucket must not be empty"));
    }
    if enabled.target_prefix.len() > MAX_PREFIX_BYTES {
        return Err(invalid_argument(
            "The TargetPrefix is longer than 512 bytes",
        ));
    }
    if enabled.target_prefix.chars().any(char::is_control) {
        return Err(invalid_argument(
            "The TargetPrefix must not hold control characters",
        ));
    }
    let key_format = match enabled.target_object_key_format {
        None
        | Some(TargetObjectKeyFormat {
            partitioned_prefix: None,
            ..
        }) => KeyFormat::Simple,
        Some(TargetObjectKeyFormat {
            partitioned_prefix: Some(partitioned),
            simple_prefix,
        }) => {
            if simple_prefix.is_some() {
                return Err(s3_error!(
                    MalformedXML,
                    "TargetObjectKeyFormat takes SimplePrefix or PartitionedPrefix, not both"
                ));
            }
            let event_time = match partitioned
                .partition_date_source
                .as_ref()
                .map(PartitionDateSource::as_str)
            {
                None | Some(PartitionDateSource::EVENT_TIME) => true,
                Some(PartitionDateSource::DELIVERY_TIME) => false,
                Some(_) => {
                    return Err(s3_error!(
                        MalformedXML,
                        "PartitionDateSource must be EventTime or DeliveryTime"
                    ));
                }
            };
            KeyFormat::Partitioned { event_time }
        }
    };
    Ok(LoggingDocument {
        v: LOGGING_DOCUMENT_VERSION,
        target_bucket: enabled.target_bucket,
        target_prefix: enabled.target_prefix,
        key_format,
        grants: convert_grants(enabled.target_grants)?,
    })
}

/// The logging configuration of bucket `name`, whoever asks (every edge that serves the
/// bucket reads it), if its owner set one for the bucket's current claim.
pub(crate) fn logging_of(registry: &Registry, name: &str) -> Option<LoggingDocument> {
    bucket_setting::<LoggingDocument>(registry, LOGGING_KIND, name)
        .filter(|d| d.v == LOGGING_DOCUMENT_VERSION)
}

/// Whether the target bucket's policy lets the logging service deliver `source`'s logs
/// (owned by `owner`) as `document` says.
pub(crate) fn delivery_allowed(
    registry: &Registry,
    source: &str,
    owner: &PublicKeyBytes,
    document: &LoggingDocument,
) -> bool {
    bucket_policy(registry, &document.target_bucket).is_some_and(|p| {
        p.allows_log_delivery(
            &document.target_bucket,
            &document.target_prefix,
            source,
            &owner.to_hex(),
        )
    })
}

fn to_dto(document: LoggingDocument) -> LoggingEnabled {
    let target_object_key_format = Some(match document.key_format {
        KeyFormat::Simple => TargetObjectKeyFormat {
            partitioned_prefix: None,
            simple_prefix: Some(SimplePrefix {}),
        },
        KeyFormat::Partitioned { event_time } => TargetObjectKeyFormat {
            partitioned_prefix: Some(PartitionedPrefix {
                partition_date_source: Some(PartitionDateSource::from(
                    if event_time {
                        PartitionDateSource::EVENT_TIME
                    } else {
                        PartitionDateSource::DELIVERY_TIME
                    }
                    .to_owned(),
                )),
            }),
            simple_prefix: None,
        },
    });
    let grants: Vec<TargetGrant> = document
        .grants
        .into_iter()
        .map(|g| TargetGrant {
            grantee: Some(Grantee {
                display_name: None,
                email_address: None,
                id: (!g.group).then(|| g.grantee.clone()),
                type_: Type::from(
                    if g.group {
                        Type::GROUP
                    } else {
                        Type::CANONICAL_USER
                    }
                    .to_owned(),
                ),
                uri: g.group.then_some(g.grantee),
            }),
            permission: Some(BucketLogsPermission::from(
                if g.full_control {
                    BucketLogsPermission::FULL_CONTROL
                } else {
                    BucketLogsPermission::READ
                }
                .to_owned(),
            )),
        })
        .collect();
    LoggingEnabled {
        target_bucket: document.target_bucket,
        target_grants: (!grants.is_empty()).then_some(grants),
        target_object_key_format,
        target_prefix: document.target_prefix,
    }
}

impl Gateway {
    /// The registry bucket settings are read from (for the access log worker).
    pub(crate) fn storage_registry(&self) -> &Registry {
        self.storage.registry()
    }

    /// Writes log object `name` with `body` into the target bucket of `document`, as
    /// bucket owner `owner`'s own object through the normal PutObject path, with one of
    /// the owner's S3 keys registered on this node; the configuration's grants become
    /// the object's ACL.
    pub(crate) async fn deliver_log(
        &self,
        owner: &PublicKeyBytes,
        document: &LoggingDocument,
        name: String,
        body: Vec<u8>,
    ) -> S3Result<()> {
        let held = self
            .keys
            .list(owner)
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let Some(key) = held.into_iter().find(|k| k.registration.is_some()) else {
            return Err(s3_error!(
                AccessDenied,
                "this node holds none of the bucket owner's registered S3 keys"
            ));
        };
        let mut headers = hyper::HeaderMap::new();
        for (header, full_control) in [
            ("x-amz-grant-read", false),
            ("x-amz-grant-full-control", true),
        ] {
            let entries: Vec<String> = document
                .grants
                .iter()
                .filter(|g| g.full_control == full_control)
                .map(LogGrant::header_entry)
                .collect();
            if entries.is_empty() {
                continue;
            }
            let value = hyper::header::HeaderValue::from_str(&entries.join(", "))
                .map_err(|e| s3_error!(InternalError, "a log grant is not a header value: {e}"))?;
            headers.insert(header, value);
        }
        let length = i64::try_from(body.len())
            .map_err(|_| s3_error!(InternalError, "the log object is too large"))?;
        let input = PutObjectInput::builder()
            .bucket(document.target_bucket.clone())
            .key(name)
            .content_length(Some(length))
            .content_type(Some("text/plain".to_owned()))
            .body(Some(StreamingBlob::from(s3s::Body::from(body))))
            .build()
            .map_err(|e| s3_error!(InternalError, "cannot form the log object's write: {e}"))?;
        let mut extensions = hyper::http::Extensions::new();
        // Log deliveries are the bucket owner's own writes.
        let requester = Some(key.tenant);
        extensions.insert(crate::authorize::ActingFor { key, requester });
        let req = S3Request {
            input,
            method: hyper::Method::PUT,
            uri: hyper::Uri::from_static("/"),
            headers,
            extensions,
            credentials: None,
            region: None,
            service: None,
            trailing_headers: None,
        };
        self.put_object_impl(req).await.map(|_| ())
    }

    pub(super) async fn put_bucket_logging_impl(
        &self,
        req: S3Request<PutBucketLoggingInput>,
    ) -> S3Result<S3Response<PutBucketLoggingOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let Some(enabled) = input.bucket_logging_status.logging_enabled else {
            self.put_bucket_setting::<LoggingDocument>(&key, LOGGING_KIND, &input.bucket, None)
                .await?;
            return Ok(S3Response::new(PutBucketLoggingOutput {}));
        };
        let document = validate(enabled)?;
        let registry = self.storage.registry();
        match owner_of(registry, &document.target_bucket) {
            None => {
                return Err(invalid_target(
                    "The target bucket for logging does not exist",
                ));
            }
            Some((owner, _)) if owner != key.tenant => {
                return Err(invalid_target(
                    "The owner for the bucket to be logged and the target bucket must be the same.",
                ));
            }
            Some(_) => {}
        }
        // A log bucket that logs elsewhere would make chains whose records multiply; the
        // source itself may be its own target (deliveries are not logged).
        if document.target_bucket != input.bucket
            && logging_of(registry, &document.target_bucket).is_some()
        {
            return Err(invalid_argument(
                "The target bucket has server access logging enabled itself",
            ));
        }
        if !delivery_allowed(registry, &input.bucket, &key.tenant, &document) {
            return Err(s3_error!(
                AccessDenied,
                "The target bucket's policy must allow the logging service principal (logging.s3.amazonaws.com) s3:PutObject on the target prefix for this bucket"
            ));
        }
        // The same configuration again changes nothing, and keeps its date (which
        // GetBucketLogging answers as Last-Modified, as Ceph RGW does).
        if logging_of(registry, &input.bucket).as_ref() != Some(&document) {
            self.put_bucket_setting(&key, LOGGING_KIND, &input.bucket, Some(&document))
                .await?;
        }
        Ok(S3Response::new(PutBucketLoggingOutput {}))
    }

    pub(super) async fn get_bucket_logging_impl(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        let key = self.key_of(&req)?;
        let bucket = &req.input.bucket;
        let document =
            self.load_bucket_setting::<LoggingDocument>(&key.tenant, bucket, LOGGING_KIND)?;
        let mut response = S3Response::new(GetBucketLoggingOutput {
            logging_enabled: document
                .filter(|d| d.v == LOGGING_DOCUMENT_VERSION)
                .map(to_dto),
        });
        // When the configuration last changed: the date of its signed setting.
        let setting =
            xnode_storage::bucket_settings::setting_key(LOGGING_KIND, &key.tenant, bucket);
        if let Some(entry) = self.storage.registry().get(&setting) {
            let mut text = Vec::new();
            if super::timestamp(entry.hlc.wall_ms)
                .format(TimestampFormat::HttpDate, &mut text)
                .is_ok()
                && let Ok(value) = hyper::header::HeaderValue::from_bytes(&text)
            {
                response.headers.insert(hyper::header::LAST_MODIFIED, value);
            }
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(format: Option<TargetObjectKeyFormat>) -> LoggingEnabled {
        LoggingEnabled {
            target_bucket: "logs".into(),
            target_grants: None,
            target_object_key_format: format,
            target_prefix: "log/".into(),
        }
    }

    fn code(e: s3s::S3Error) -> String {
        e.code().as_str().to_owned()
    }

    #[test]
    fn key_formats_are_checked_and_returned_as_set() {
        let simple = validate(enabled(None)).unwrap();
        assert_eq!(simple.key_format, KeyFormat::Simple);
        // The default format is returned explicitly, as S3 returns it.
        let dto = to_dto(simple);
        assert!(
            dto.target_object_key_format
                .and_then(|f| f.simple_prefix)
                .is_some()
        );
        let partitioned = |source: &str| {
            validate(enabled(Some(TargetObjectKeyFormat {
                partitioned_prefix: Some(PartitionedPrefix {
                    partition_date_source: Some(PartitionDateSource::from(source.to_owned())),
                }),
                simple_prefix: None,
            })))
        };
        assert_eq!(
            partitioned("DeliveryTime").unwrap().key_format,
            KeyFormat::Partitioned { event_time: false }
        );
        assert_eq!(
            partitioned("EventTime").unwrap().key_format,
            KeyFormat::Partitioned { event_time: true }
        );
        assert_eq!(code(partitioned("kaboom").unwrap_err()), "MalformedXML");
    }

    #[test]
    fn grants_are_kept_or_refused_clearly() {
        let tenant = xnode_types::SecretKey::generate().public().to_hex();
        let grant = |type_: &str, id: Option<&str>, uri: Option<&str>, permission: &str| {
            let mut e = enabled(None);
            e.target_grants = Some(vec![TargetGrant {
                grantee: Some(Grantee {
                    display_name: None,
                    email_address: None,
                    id: id.map(str::to_owned),
                    type_: Type::from(type_.to_owned()),
                    uri: uri.map(str::to_owned),
                }),
                permission: Some(BucketLogsPermission::from(permission.to_owned())),
            }]);
            validate(e)
        };
        let kept = grant("CanonicalUser", Some(&tenant), None, "FULL_CONTROL").unwrap();
        assert_eq!(kept.grants[0].header_entry(), format!("id=\"{tenant}\""));
        assert!(kept.grants[0].full_control);
        let back = to_dto(kept).target_grants.unwrap();
        assert_eq!(
            back[0].grantee.as_ref().unwrap().id.as_deref(),
            Some(tenant.as_str())
        );
        assert!(grant("Group", None, Some(ALL_USERS), "READ").is_ok());
        for refused in [
            grant("CanonicalUser", Some(&tenant), None, "WRITE"),
            grant("CanonicalUser", Some("not-a-tenant"), None, "READ"),
            grant("AmazonCustomerByEmail", None, None, "READ"),
            grant("Group", None, Some("http://example.com/group"), "READ"),
        ] {
            assert_eq!(code(refused.unwrap_err()), "InvalidArgument");
        }
    }

    #[test]
    fn prefixes_are_bounded_and_printable() {
        let mut e = enabled(None);
        e.target_prefix = "a".repeat(MAX_PREFIX_BYTES + 1);
        assert_eq!(code(validate(e).unwrap_err()), "InvalidArgument");
        let mut e = enabled(None);
        e.target_prefix = "log\n".into();
        assert_eq!(code(validate(e).unwrap_err()), "InvalidArgument");
    }
}
