//! Server access log delivery: the edge node that served a request for a bucket with
//! logging enabled (`gateway::logging`) appends one record in S3's server access log
//! format to a bounded in-memory buffer for that bucket; the `s3-access-log` worker rolls
//! each buffer into one object of the target bucket once the bucket has had no request
//! for `roll` (`s3_access_log_roll`, 300 s by default, about S3's own delivery delay), and
//! at the latest [`MAX_AGE_ROLLS`] rolls after the buffer's first record (an hour by
//! default), so a burst of requests lands in one object and a busy bucket's records
//! still arrive.
//!
//! A log object is written through the gateway's normal PutObject path, as the bucket
//! owner's own object, with one of the owner's S3 keys registered on this node (the same
//! authority the lifecycle worker acts under), so versioning, default encryption, object
//! lock defaults and quotas apply to it as to any object. Deliveries do not pass through
//! the HTTP front, so they are never logged themselves: a bucket may log into itself
//! without looping. Before each delivery the source's configuration and the target's
//! policy are read again; records whose bucket stopped logging, whose target no longer
//! allows the logging service, or whose owner has no key on this node are dropped.
//!
//! A request to a bucket whose buffer has been quiet for `roll` (or is being delivered)
//! first waits for that buffer's delivery, before its operation runs. The worker's tick
//! would deliver it within a fraction of `roll` anyway; waiting makes it certain that a
//! client which sleeps past the roll and then makes a request finds the log object
//! written, whatever the machine's load (as RGW rolls on the next request).
//!
//! Records are best effort, as in S3: a node that stops loses the records it had not
//! delivered yet. Buffers are bounded, so a tenant cannot exhaust a node's memory by
//! making requests: a bucket's buffer that reaches its record or byte cap is delivered at
//! the next tick whatever its age, and drops its oldest records until it is; new records
//! are dropped when all buffers together reach the node's cap. Every dropped record is
//! counted in `s3_access_log_records_dropped_total`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use xnode_types::PublicKeyBytes;

use crate::gateway::Gateway;
use crate::gateway::logging::{KeyFormat, LoggingDocument, delivery_allowed, logging_of};

/// The most records one bucket's buffer holds before it is delivered early.
const MAX_BUCKET_RECORDS: usize = 10_000;
/// The most bytes one bucket's buffer holds before it is delivered early.
const MAX_BUCKET_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes all buffers of a node hold together.
const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// A buffer is delivered at the latest this many roll periods after its first record,
/// however busy its bucket.
const MAX_AGE_ROLLS: u32 = 12;
/// The longest record kept (a record is a few hundred bytes; the user agent and URI
/// are what a client controls).
const MAX_RECORD_BYTES: usize = 8 * 1024;

/// The records of one source bucket not yet delivered.
#[derive(Debug, Default)]
struct Buffer {
    /// When the oldest record still held was taken (unix ms).
    first_ms: u64,
    /// When the newest record was taken (unix ms).
    last_ms: u64,
    records: VecDeque<String>,
    bytes: usize,
    /// Reached a cap: delivered at the next tick whatever its age.
    full: bool,
}

/// Counters of the access log, in the node's metrics (`s3_access_log_*`).
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessLogMetrics {
    pub(crate) recorded: Counter,
    pub(crate) dropped: Counter,
    pub(crate) objects: Counter,
}

/// The access log buffers of one node.
#[derive(Debug)]
pub(crate) struct AccessLog {
    buffers: Mutex<BTreeMap<String, Buffer>>,
    /// Per bucket, a lock held while its buffer is being delivered; an entry lives only
    /// as long as a delivery (or a request waiting for one).
    delivering: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The roll period of the running worker, in ms; 0 while none runs, and then
    /// requests deliver nothing themselves.
    roll_ms: AtomicU64,
    metrics: AccessLogMetrics,
}

impl AccessLog {
    pub(crate) fn new(metrics: AccessLogMetrics) -> Self {
        Self {
            buffers: Mutex::new(BTreeMap::new()),
            delivering: Mutex::new(BTreeMap::new()),
            roll_ms: AtomicU64::new(0),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Buffer>> {
        // A panic elsewhere while holding the lock leaves the map whole (every change
        // to it is a single insert or removal), so its contents stay usable.
        self.buffers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `record` (one line, without its newline) to `bucket`'s buffer, taken at
    /// `at_ms`.
    pub(crate) fn append(&self, bucket: &str, record: String, at_ms: u64) {
        if record.len() > MAX_RECORD_BYTES {
            self.metrics.dropped.inc();
            return;
        }
        let mut buffers = self.lock();
        let total: usize = buffers.values().map(|b| b.bytes).sum();
        if total.saturating_add(record.len()) > MAX_TOTAL_BYTES {
            self.metrics.dropped.inc();
            return;
        }
        let buffer = buffers.entry(bucket.to_owned()).or_default();
        if buffer.records.is_empty() {
            buffer.first_ms = at_ms;
        }
        buffer.last_ms = buffer.last_ms.max(at_ms);
        buffer.bytes = buffer.bytes.saturating_add(record.len().saturating_add(1));
        buffer.records.push_back(record);
        self.metrics.recorded.inc();
        while buffer.records.len() > MAX_BUCKET_RECORDS || buffer.bytes > MAX_BUCKET_BYTES {
            buffer.full = true;
            match buffer.records.pop_front() {
                Some(oldest) => {
                    buffer.bytes = buffer.bytes.saturating_sub(oldest.len().saturating_add(1));
                    self.metrics.dropped.inc();
                }
                None => break,
            }
        }
        if buffer.records.len() >= MAX_BUCKET_RECORDS || buffer.bytes >= MAX_BUCKET_BYTES {
            buffer.full = true;
        }
    }

    /// Sets the roll period of the worker that now runs (see [`AccessLog::deliver_if_quiet`]).
    pub(crate) fn set_roll(&self, roll: Duration) {
        let roll_ms = u64::try_from(roll.as_millis()).unwrap_or(u64::MAX).max(1);
        self.roll_ms.store(roll_ms, Ordering::Relaxed);
    }

    /// Whether a buffer is due for delivery at `now_ms`: no new record for `roll`, its
    /// first record [`MAX_AGE_ROLLS`] rolls old, or a cap reached.
    fn is_due(buffer: &Buffer, now_ms: u64, roll: Duration) -> bool {
        let roll_ms = u64::try_from(roll.as_millis()).unwrap_or(u64::MAX);
        let max_age_ms = roll_ms.saturating_mul(u64::from(MAX_AGE_ROLLS));
        buffer.full
            || now_ms.saturating_sub(buffer.last_ms) >= roll_ms
            || now_ms.saturating_sub(buffer.first_ms) >= max_age_ms
    }

    /// Takes the buffers due at `now_ms` (all with `everything`), as a roll would.
    #[cfg(test)]
    fn take_due(&self, now_ms: u64, roll: Duration, everything: bool) -> Vec<(String, Buffer)> {
        let mut buffers = self.lock();
        let due: Vec<String> = buffers
            .iter()
            .filter(|(_, b)| everything || Self::is_due(b, now_ms, roll))
            .map(|(name, _)| name.clone())
            .collect();
        due.into_iter()
            .filter_map(|name| buffers.remove(&name).map(|b| (name, b)))
            .collect()
    }

    /// The delivery lock of `bucket`, made if no delivery holds one.
    fn delivery_lock(&self, bucket: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut delivering = self
            .delivering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        delivering.entry(bucket.to_owned()).or_default().clone()
    }

    /// Forgets `bucket`'s delivery lock once nobody else holds it.
    fn release(&self, bucket: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut delivering = self
            .delivering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's copy and `lock` itself: nobody else waits for it.
        if Arc::strong_count(&lock) <= 2 {
            delivering.remove(bucket);
        }
    }

    /// Delivers `bucket`'s buffer if it is due (any buffer with `everything`), holding
    /// the bucket's delivery lock; returns whether a log object was written.
    async fn deliver_bucket(
        &self,
        gateway: &Gateway,
        bucket: &str,
        roll: Duration,
        everything: bool,
    ) -> bool {
        let lock = self.delivery_lock(bucket);
        let written = {
            let _delivering = lock.lock().await;
            let now_ms = xnode_types::unix_ms();
            let buffer = {
                let mut buffers = self.lock();
                let due = buffers
                    .get(bucket)
                    .is_some_and(|b| everything || Self::is_due(b, now_ms, roll));
                if due { buffers.remove(bucket) } else { None }
            };
            match buffer {
                None => false,
                Some(buffer) => {
                    let count = u64::try_from(buffer.records.len()).unwrap_or(u64::MAX);
                    match self.deliver(gateway, bucket, buffer, now_ms).await {
                        Ok(()) => {
                            self.metrics.objects.inc();
                            true
                        }
                        Err(why) => {
                            self.metrics.dropped.inc_by(count);
                            tracing::warn!(
                                bucket,
                                records = count,
                                why,
                                "server access log records dropped"
                            );
                            false
                        }
                    }
                }
            }
        };
        self.release(bucket, lock);
        written
    }

    /// Delivers every due buffer through `gateway`; returns the log objects written.
    pub(crate) async fn roll(&self, gateway: &Gateway, roll: Duration, everything: bool) -> u64 {
        let now_ms = xnode_types::unix_ms();
        let due: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, b)| everything || Self::is_due(b, now_ms, roll))
            .map(|(name, _)| name.clone())
            .collect();
        let mut written = 0u64;
        for bucket in due {
            if self
                .deliver_bucket(gateway, &bucket, roll, everything)
                .await
            {
                written = written.saturating_add(1);
            }
        }
        written
    }

    /// Before a request to `bucket` runs: waits for a delivery of its buffer under way,
    /// and delivers the buffer itself if it has been quiet for the worker's roll period.
    pub(crate) async fn deliver_if_quiet(&self, gateway: &Gateway, bucket: &str) {
        let roll_ms = self.roll_ms.load(Ordering::Relaxed);
        if roll_ms == 0 {
            return;
        }
        let roll = Duration::from_millis(roll_ms);
        let now_ms = xnode_types::unix_ms();
        let quiet = self
            .lock()
            .get(bucket)
            .is_some_and(|b| now_ms.saturating_sub(b.last_ms) >= roll_ms);
        let under_way = self
            .delivering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(bucket);
        if quiet || under_way {
            self.deliver_bucket(gateway, bucket, roll, false).await;
        }
    }

    async fn deliver(
        &self,
        gateway: &Gateway,
        bucket: &str,
        buffer: Buffer,
        now_ms: u64,
    ) -> Result<(), String> {
        let registry = gateway.storage_registry();
        let Some(document) = logging_of(registry, bucket) else {
            return Err("the bucket no longer logs".into());
        };
        let Some((owner, record)) = xnode_storage::buckets::owner_of(registry, bucket) else {
            return Err("the bucket no longer exists".into());
        };
        if !delivery_allowed(registry, bucket, &owner, &document) {
            return Err("the target bucket's policy does not allow the logging service".into());
        }
        let region = record
            .regions
            .first()
            .cloned()
            .unwrap_or_else(|| "us-east-1".to_owned());
        let name = object_name(&document, &owner, &region, bucket, buffer.first_ms, now_ms);
        let mut body = Vec::with_capacity(buffer.bytes);
        for line in &buffer.records {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        gateway
            .deliver_log(&owner, &document, name, body)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `YYYY-mm-DD-HH-MM-SS` of `ms` (UTC), and the date alone as `YYYY/mm/DD`.
fn key_times(ms: u64) -> (String, String) {
    let t = utc(ms);
    (
        format!(
            "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        format!("{:04}/{:02}/{:02}", t.year(), u8::from(t.month()), t.day()),
    )
}

fn utc(ms: u64) -> time::OffsetDateTime {
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The name of a log object as S3 forms it (`TargetObjectKeyFormat`), delivered at
/// `now_ms` with records from `first_ms` on.
fn object_name(
    document: &LoggingDocument,
    owner: &PublicKeyBytes,
    region: &str,
    bucket: &str,
    first_ms: u64,
    now_ms: u64,
) -> String {
    let (delivered, _) = key_times(now_ms);
    let unique = format!("{:016X}", rand::random::<u64>());
    let prefix = &document.target_prefix;
    match document.key_format {
        KeyFormat::Simple => format!("{prefix}{delivered}-{unique}"),
        KeyFormat::Partitioned { event_time } => {
            let (_, day) = key_times(if event_time { first_ms } else { now_ms });
            format!(
                "{prefix}{}/{region}/{bucket}/{day}/{delivered}-{unique}",
                owner.to_hex()
            )
        }
    }
}

/// What one served request was, for its log record (S3's server access log format).
#[derive(Clone, Debug, Default)]
pub(crate) struct Record {
    pub(crate) owner: String,
    pub(crate) bucket: String,
    pub(crate) time_ms: u64,
    pub(crate) requester: Option<String>,
    pub(crate) request_id: String,
    pub(crate) operation: String,
    pub(crate) key: Option<String>,
    /// `METHOD /path?query HTTP/1.1`.
    pub(crate) request_uri: String,
    pub(crate) status: u16,
    pub(crate) bytes_sent: Option<u64>,
    pub(crate) object_size: Option<u64>,
    pub(crate) total_ms: u64,
    pub(crate) referrer: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) version_id: Option<String>,
    pub(crate) sig_version: Option<&'static str>,
    pub(crate) auth_type: Option<&'static str>,
    pub(crate) host: Option<String>,
    /// Access was granted by an ACL rather than the bucket policy.
    pub(crate) acl_required: bool,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An unquoted field: `-` when empty, every byte outside printable ASCII (and the
/// quotes and brackets that delimit fields) percent-encoded, so a client-chosen value
/// can neither split a field nor start a new record.
fn token(value: Option<&str>) -> String {
    match value {
        None | Some("") => "-".to_owned(),
        Some(v) => escape(v, |b| b.is_ascii_graphic() && !b"\"[]\\%".contains(&b)),
    }
}

/// A quoted field's content: spaces are kept, the rest as in [`token`].
fn quoted(value: Option<&str>) -> String {
    match value {
        None | Some("") => "-".to_owned(),
        Some(v) => escape(v, |b| {
            (b == b' ' || b.is_ascii_graphic()) && !b"\"[]\\%".contains(&b)
        }),
    }
}

/// An object key as S3 logs it: URL-encoded, `/` kept.
fn key_field(key: Option<&str>) -> String {
    match key {
        None | Some("") => "-".to_owned(),
        Some(k) => escape(k, |b| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b)),
    }
}

fn escape(value: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn number(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl Record {
    /// The record as one line of S3's server access log format (26 fields).
    pub(crate) fn line(&self) -> String {
        let t = utc(self.time_ms);
        let month = MONTHS
            .get(usize::from(u8::from(t.month())).saturating_sub(1))
            .copied()
            .unwrap_or("Jan");
        let time = format!(
            "[{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000]",
            t.day(),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let fields = [
            token(Some(&self.owner)),
            token(Some(&self.bucket)),
            time,
            // The client's address is not known to the gateway behind its HTTP server.
            "-".to_owned(),
            token(self.requester.as_deref()),
            token(Some(&self.request_id)),
            token(Some(&self.operation)),
            key_field(self.key.as_deref()),
            format!("\"{}\"", quoted(Some(&self.request_uri))),
            self.status.to_string(),
            // The error code is in the response body, which streams past the gateway.
            "-".to_owned(),
            number(self.bytes_sent),
            number(self.object_size),
            self.total_ms.to_string(),
            self.total_ms.to_string(),
            format!("\"{}\"", quoted(self.referrer.as_deref())),
            format!("\"{}\"", quoted(self.user_agent.as_deref())),
            token(self.version_id.as_deref()),
            // Host id, cipher suite (the S3 port is plain HTTP), auth type, host header,
            // TLS version, access point ARN, whether an ACL was required.
            "-".to_owned(),
            token(self.sig_version),
            "-".to_owned(),
            token(self.auth_type),
            token(self.host.as_deref()),
            "-".to_owned(),
            "-".to_owned(),
            if self.acl_required { "Yes" } else { "-" }.to_owned(),
        ];
        fields.join(" ")
    }
}

/// S3's name of an operation in access logs (`REST.GET.OBJECT`), from s3s's name of it.
pub(crate) fn operation_name(operation: &str, method: &hyper::Method) -> String {
    let name = match operation {
        "GetObject" => "REST.GET.OBJECT",
        "HeadObject" => "REST.HEAD.OBJECT",
        "PutObject" | "CopyObject" => "REST.PUT.OBJECT",
        "PostObject" => "REST.POST.OBJECT",
        "DeleteObject" => "REST.DELETE.OBJECT",
        "DeleteObjects" => "REST.POST.MULTI_OBJECT_DELETE",
        "ListObjects" | "ListObjectsV2" => "REST.GET.BUCKET",
        "ListObjectVersions" => "REST.GET.BUCKETVERSIONS",
        "HeadBucket" => "REST.HEAD.BUCKET",
        "CreateMultipartUpload" => "REST.POST.UPLOADS",
        "UploadPart" => "REST.PUT.PART",
        "UploadPartCopy" => "REST.COPY.PART",
        "CompleteMultipartUpload" => "REST.POST.UPLOAD",
        "AbortMultipartUpload" => "REST.DELETE.UPLOAD",
        "ListParts" => "REST.GET.UPLOAD",
        "ListMultipartUploads" => "REST.GET.UPLOADS",
        "PutObjectTagging" => "REST.PUT.OBJECT_TAGGING",
        "GetObjectTagging" => "REST.GET.OBJECT_TAGGING",
        "DeleteObjectTagging" => "REST.DELETE.OBJECT_TAGGING",
        "PutObjectAcl" | "PutBucketAcl" => "REST.PUT.ACL",
        "GetObjectAcl" | "GetBucketAcl" => "REST.GET.ACL",
        "PutObjectLegalHold" => "REST.PUT.LEGAL_HOLD",
        "GetObjectLegalHold" => "REST.GET.LEGAL_HOLD",
        "PutObjectRetention" => "REST.PUT.RETENTION",
        "GetObjectRetention" => "REST.GET.RETENTION",
        other => {
            let rest = other
                .strip_prefix("Get")
                .or_else(|| other.strip_prefix("Put"))
                .or_else(|| other.strip_prefix("Delete"))
                .unwrap_or(other);
            return format!("REST.{}.{}", method.as_str(), rest.to_ascii_uppercase());
        }
    };
    name.to_owned()
}

/// How a request was authenticated, for the record: (`SigV2`/`SigV4`,
/// `AuthHeader`/`QueryString`), `None`s for an unsigned request.
pub(crate) fn authentication(
    headers: &hyper::HeaderMap,
    query: Option<&str>,
) -> (Option<&'static str>, Option<&'static str>) {
    if let Some(auth) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let version = if auth.starts_with("AWS4-") {
            "SigV4"
        } else {
            "SigV2"
        };
        return (Some(version), Some("AuthHeader"));
    }
    let query = query.unwrap_or("");
    let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
    if has("X-Amz-Signature") || has("X-Amz-Algorithm") {
        (Some("SigV4"), Some("QueryString"))
    } else if has("Signature") && has("AWSAccessKeyId") {
        (Some("SigV2"), Some("QueryString"))
    } else {
        (None, None)
    }
}

/// The worker's tick for roll period `roll`: a fifth of it, between 200 ms and 10 s, so
/// a buffer is delivered at most a fifth late.
pub(crate) fn tick(roll: Duration) -> Duration {
    (roll / 5).clamp(Duration::from_millis(200), Duration::from_secs(10))
}

#[cfg(test)]
mod tests;
