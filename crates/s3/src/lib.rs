//! The S3-compatible gateway of a node: the `s3s` crate's S3 protocol (routing, XML,
//! SigV4 in header and query form) over the node's distributed object store.
//!
//! - [`keys`]: S3 access keys, stored only on the nodes a tenant registered them on;
//! - [`gateway`]: the S3 operations, acting as the tenant an access key belongs to, with
//!   that tenant's data key for encryption (the same buckets and objects the native
//!   `/v1` API serves);
//! - [`serve`]: the HTTP server on its own port (`--s3 HOST:PORT`), with an `s3` tracing
//!   span per request and the `s3_` metrics;
//! - `gateway::cors` answers browsers' preflights and adds CORS headers to actual requests;
//!   `gateway::lifecycle` is also the worker that carries out lifecycle rules;
//! - `guard`: requests the gateway cannot honour are refused (501), never half-served;
//! - `authorize`: who may do what to a bucket (ACLs, bucket policies, public access
//!   blocks), decided on every node before an operation runs;
//! - `envelope`: what every request and response goes through around s3s (request ids,
//!   presigned lifetimes, bodies without a length);
//! - `access_log`: server access log records of the requests this node serves, rolled
//!   into log objects by the `s3-access-log` worker (configured by `gateway::logging`).
//!
//! Lower layers know nothing of S3: multipart uploads are kept as internal objects
//! (`xnode_store::internal_key`) and joined with `Storage::compose_object`.

mod access_log;
mod authorize;
mod envelope;
pub mod gateway;
pub mod guard;
pub mod keys;
pub mod metrics;
mod post_form;
mod post_policy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Result, s3_error};
use tokio::net::TcpListener;
use tracing::Instrument;
use xnode_db::Db;
use xnode_storage::Storage;
use xnode_types::PublicKeyBytes;

pub use gateway::Gateway;
pub use keys::{AccessKey, KeysError, S3Keys, generate_id_and_secret};
pub use metrics::S3Metrics;

/// Looks up SigV4 secrets in this node's key table.
struct KeyAuth {
    keys: S3Keys,
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.keys.get(access_key) {
            Ok(Some(key)) => Ok(SecretKey::from(key.secret)),
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records"
            )),
            Err(e) => Err(s3_error!(InternalError, "{e}")),
        }
    }
}

/// Where the access check leaves the operation's name for the metrics.
#[derive(Clone, Default)]
struct OperationSlot(Arc<std::sync::OnceLock<String>>);

/// What the access check learnt of a request for its access log record: the bucket and
/// key it names (path or virtual-host style) and the tenant that signed it.
#[derive(Clone, Debug)]
struct LogFacts {
    bucket: String,
    key: Option<String>,
    requester: Option<PublicKeyBytes>,
    /// Access was granted by an ACL rather than the bucket policy.
    acl_required: bool,
}

/// Where the access check leaves [`LogFacts`].
#[derive(Clone, Default)]
struct LogSlot(Arc<std::sync::OnceLock<LogFacts>>);

/// Every request, signed or not, is checked before its operation runs: requests the
/// gateway cannot honour are refused (`guard`), what the requester may touch is decided
/// from the bucket's owner, ACLs and policy (`authorize`), and requests over their
/// tenant's allowance on this node are refused. Unsigned requests, and requests another
/// tenant was granted, are counted against the bucket owner's allowance: the owner chose
/// to open its bucket, and a stranger's requests must be bounded by something.
struct SignedOnly {
    keys: S3Keys,
    storage: Arc<Storage>,
    tenant_rate: Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>>,
    /// Requests to a bucket whose access log is due wait for its delivery.
    access_log: Arc<access_log::AccessLog>,
    gateway: Gateway,
}

#[async_trait::async_trait]
impl S3Access for SignedOnly {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name().to_owned();
        tracing::Span::current().record("operation", operation.as_str());
        if let Some(slot) = cx.extensions_mut().get::<OperationSlot>() {
            let _ = slot.0.set(operation.clone());
        }
        // s3s calls this only once the signature verified, so the key is the signer's and
        // the allowance taken is its tenant's own. The tenant, not the access key, is
        // counted: a tenant may make as many keys as it likes.
        let requester = match cx.credentials() {
            None => None,
            Some(credentials) => match self.keys.get(&credentials.access_key) {
                Ok(Some(key)) => Some(key.tenant),
                Ok(None) => {
                    return Err(s3_error!(
                        InvalidAccessKeyId,
                        "The AWS Access Key Id you provided does not exist in our records"
                    ));
                }
                Err(e) => return Err(s3_error!(InternalError, "{e}")),
            },
        };
        // Access is decided first, as S3 does: a request a policy denies is answered 403
        // even when a header it carries would be refused (a policy that denies an
        // unwanted encryption algorithm must answer AccessDenied, not InvalidArgument).
        // A form upload names its object in the form, not the path: it is judged as a
        // write of that object, so policies on `bucket/prefix/*` apply to it as to a PUT.
        let form_key = cx
            .extensions_mut()
            .get::<post_form::FormObject>()
            .map(|o| o.key.clone());
        let form_object = match (form_key, cx.s3_path()) {
            (Some(key), s3s::path::S3Path::Bucket { bucket }) => Some(s3s::path::S3Path::Object {
                bucket: bucket.clone(),
                key: key.into(),
            }),
            _ => None,
        };
        let named = match form_object.as_ref().unwrap_or(cx.s3_path()) {
            s3s::path::S3Path::Root => None,
            s3s::path::S3Path::Bucket { bucket } => Some((bucket.to_string(), None)),
            s3s::path::S3Path::Object { bucket, key } => {
                Some((bucket.to_string(), Some(key.to_string())))
            }
        };
        let log_slot = cx.extensions_mut().get::<LogSlot>().cloned();
        let record_facts = |acl_required: bool| {
            if let (Some((bucket, key)), Some(slot)) = (named.clone(), &log_slot) {
                let _ = slot.0.set(LogFacts {
                    bucket,
                    key,
                    requester,
                    acl_required,
                });
            }
        };
        let decision = authorize::decide(
            &self.storage,
            &self.keys,
            requester.as_ref(),
            &operation,
            form_object.as_ref().unwrap_or(cx.s3_path()),
            cx.uri().query(),
            cx.headers(),
        )
        .await
        .inspect_err(|_| record_facts(false))?;
        record_facts(decision.acl_required);
        // A request after the bucket's log went quiet finds its log object written.
        if let Some((bucket, _)) = &named {
            self.access_log
                .deliver_if_quiet(&self.gateway, bucket)
                .await;
        }
        // Refused before anything is written: see `guard`.
        guard::check(&operation, cx.headers(), cx.uri().query())?;
        // An unsigned request naming no bucket (ListBuckets) touches no tenant's data and
        // has no tenant to charge; the per-address limits bound it.
        let charged = requester.or(decision.owner);
        if let Some(charged) = charged
            && let Err(refusal) = self.tenant_rate.check(charged, Instant::now())
        {
            // SlowDown (503) is what AWS answers a client over its request rate; SDKs
            // retry it with backoff.
            return Err(s3_error!(
                SlowDown,
                "Please reduce your request rate (this tenant's allowance on this node refills in {} s)",
                refusal.retry_after.as_secs()
            ));
        }
        if let Some(expected) = decision.owner.or(charged) {
            self.check_expected_owner(&expected, cx)?;
        }
        // A copy into the requester's own bucket from another owner's reads the source
        // under that owner's key, if the source grants the read.
        if matches!(operation.as_str(), "CopyObject" | "UploadPartCopy")
            && let Some(requester) = requester.as_ref()
            && decision.act_as.is_none()
            && decision.owner.as_ref() == Some(requester)
            && let Some(source) =
                authorize::copy_source_as(&self.storage, &self.keys, requester, cx.headers())
                    .await?
        {
            cx.extensions_mut().insert(authorize::CopySourceAs(source));
        }
        if let Some(key) = decision.act_as {
            cx.extensions_mut()
                .insert(authorize::ActingFor { key, requester });
        }
        Ok(())
    }
}

impl SignedOnly {
    /// `x-amz-expected-bucket-owner` names the account that must own the bucket: the
    /// header must name the bucket's owner (the signing tenant, for requests that name no
    /// existing bucket), as AWS answers 403 otherwise. Its copy-source twin,
    /// `x-amz-source-expected-bucket-owner`, names the owner of the copy's source bucket,
    /// which is another tenant's in a copy across owners.
    fn check_expected_owner(
        &self,
        tenant: &PublicKeyBytes,
        cx: &S3AccessContext<'_>,
    ) -> S3Result<()> {
        let source_owner = cx
            .headers()
            .get("x-amz-copy-source")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| s3s::dto::CopySource::parse(v).ok())
            .and_then(|source| match source {
                s3s::dto::CopySource::Bucket { bucket, .. } => {
                    xnode_storage::buckets::owner_of(self.storage.registry(), &bucket)
                }
                _ => None,
            })
            .map_or(*tenant, |(owner, _)| owner);
        for (header, owner) in [
            ("x-amz-expected-bucket-owner", tenant),
            ("x-amz-source-expected-bucket-owner", &source_owner),
        ] {
            if let Some(expected) = cx.headers().get(header)
                && !expected
                    .to_str()
                    .unwrap_or("")
                    .eq_ignore_ascii_case(&owner.to_hex())
            {
                return Err(s3_error!(AccessDenied, "Access Denied"));
            }
        }
        Ok(())
    }
}

/// S3 requests slower than this are logged (with their operation and status).
/// The largest file a browser form upload (POST object) may carry. S3 allows 5 GB, but s3s
/// holds a form's file in memory; this bounds what one form costs a node.
pub const MAX_POST_OBJECT_BYTES: u64 = 64 * 1024 * 1024;

const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(5);

/// The S3 service of a node, ready to serve connections.
#[derive(Clone)]
pub struct S3Gateway {
    service: S3Service,
    metrics: S3Metrics,
    /// Where buckets' CORS rules are read from, for preflights and actual requests.
    registry: Arc<xnode_registry::Registry>,
    /// The operations themselves, for the lifecycle and access log workers.
    gateway: Gateway,
    /// Server access log records not yet delivered.
    access_log: Arc<access_log::AccessLog>,
}

impl std::fmt::Debug for S3Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Gateway")
    }
}

impl S3Gateway {
    /// Builds the gateway over `storage`, keeping its access keys in `db` and its metrics
    /// in `metrics`; each tenant's signed requests are taken from its allowance in
    /// `tenant_rate` (the node's, shared with the API port).
    pub fn new(
        storage: Arc<Storage>,
        db: Db,
        tenant_rate: Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>>,
        metrics: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let keys = S3Keys::new(db);
        let metrics = S3Metrics::register(metrics);
        let registry = storage.registry().clone();
        let access_log = Arc::new(access_log::AccessLog::new(metrics.access_log.clone()));
        let gateway = Gateway::new(storage.clone(), keys.clone());
        let mut builder = S3ServiceBuilder::new(gateway.clone());
        // s3s reads a browser form's file into memory before the gateway sees it, up to
        // 5 GB by default: a hostile form (an anonymous one, where a bucket allows public
        // writes) must not cost a node that much memory. Larger objects go through PUT or
        // multipart uploads, which are streamed.
        let mut config = s3s::config::S3Config::default();
        config.post_object_max_file_size = MAX_POST_OBJECT_BYTES;
        builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
            config,
        ))));
        builder.set_auth(KeyAuth { keys: keys.clone() });
        builder.set_access(SignedOnly {
            keys,
            storage,
            tenant_rate,
            access_log: access_log.clone(),
            gateway: gateway.clone(),
        });
        Self {
            service: builder.build(),
            metrics,
            registry,
            gateway,
            access_log,
        }
    }

    /// The worker that rolls this node's server access log buffers into log objects
    /// (see `access_log`): a buffer is delivered once its bucket had no request for
    /// `roll`, and at the latest twelve rolls after its first record.
    pub fn access_log_worker(&self, roll: std::time::Duration) -> impl xnode_worker::Worker {
        let log = self.access_log.clone();
        log.set_roll(roll);
        let gateway = self.gateway.clone();
        xnode_worker::periodic(
            "s3-access-log",
            xnode_worker::Interval::AfterFirstPeriod(access_log::tick(roll)),
            move || {
                let log = log.clone();
                let gateway = gateway.clone();
                async move { Ok(log.roll(&gateway, roll, false).await) }
            },
        )
    }

    /// Delivers every buffered access log record now, whatever its age (for tests and
    /// for a node that stops cleanly). Returns the log objects written.
    pub async fn flush_access_log(&self) -> u64 {
        self.access_log
            .roll(&self.gateway, std::time::Duration::ZERO, true)
            .await
    }

    /// The worker that carries out buckets' lifecycle rules on this node (see
    /// `gateway::lifecycle`), with a lifecycle day of `day` (24 hours outside tests).
    pub fn lifecycle_worker(&self, day: std::time::Duration) -> impl xnode_worker::Worker {
        let runner = gateway::lifecycle::LifecycleRunner::new(self.gateway.clone(), day);
        let period = runner.period();
        xnode_worker::periodic(
            "s3-lifecycle",
            xnode_worker::Interval::AfterFirstPeriod(period),
            move || {
                let runner = runner.clone();
                async move {
                    runner
                        .pass()
                        .await
                        .map_err(|e| xnode_worker::WorkerError::from_error(&e))
                }
            },
        )
    }

    /// Serves one HTTP request.
    pub async fn handle(
        &self,
        mut req: hyper::Request<xnode_serve::TimedBody<hyper::body::Incoming>>,
    ) -> Result<s3s::HttpResponse, s3s::HttpError> {
        let slot = OperationSlot::default();
        req.extensions_mut().insert(slot.clone());
        let log_slot = LogSlot::default();
        req.extensions_mut().insert(log_slot.clone());
        let started_ms = xnode_types::unix_ms();
        let log_request = RequestLine::of(&req);
        let span = tracing::info_span!(
            "s3",
            method = %req.method(),
            path = %req.uri().path(),
            operation = tracing::field::Empty,
            status = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let expects_continue = envelope::expects_continue(req.headers());
        // Kept only when CORS headers may be due (a browser's request carries `Origin`).
        let cors_request = req
            .headers()
            .contains_key(hyper::header::ORIGIN)
            .then(|| req.headers().clone());
        let response = if method == hyper::Method::OPTIONS {
            // A browser's preflight: unsigned, answered from the bucket's CORS rules.
            let _ = slot.0.set("PreflightRequest".to_owned());
            Ok(gateway::cors::preflight(
                &self.registry,
                &path,
                req.headers(),
            ))
        } else {
            envelope::sigv2_bucket_path(&mut req);
            let prepared = match envelope::presigned_lifetime(req.uri().query()) {
                Ok(()) => envelope::with_known_length(req).await,
                Err(e) => Err(e),
            };
            // A browser-form upload is checked and completed first (see `post_form`).
            let prepared = match prepared {
                Ok(req) => post_form::prepare(req).await,
                Err(e) => Err(e),
            };
            let mut response = match prepared {
                Err(e) => e
                    .to_http_response()
                    .map_err(|e| s3s::HttpError::new(Box::new(e))),
                Ok((req, form)) => {
                    let response = self.service.call(req).instrument(span.clone()).await;
                    match form {
                        Some(form) => response.map(|r| form.finish(r)),
                        None => response,
                    }
                }
            };
            if let (Some(request_headers), Ok(response)) = (&cors_request, &mut response) {
                gateway::cors::decorate(
                    &self.registry,
                    &method,
                    &path,
                    request_headers,
                    response.headers_mut(),
                );
            }
            response
        };
        let request_id = envelope::new_request_id();
        span.record("request_id", request_id.as_str());
        let attributes = slot.0.get().is_some_and(|op| op == "GetObjectAttributes");
        let response = response.map(|r| {
            let r = envelope::with_request_id(r, &request_id);
            let r = if expects_continue {
                envelope::close_after_early_answer(r)
            } else {
                r
            };
            if attributes {
                envelope::unquoted_etag(r)
            } else {
                r
            }
        });
        let status = match &response {
            Ok(r) => r.status().as_u16(),
            Err(_) => 500,
        };
        span.record("status", status);
        let operation = slot.0.get().map(String::as_str).unwrap_or("unknown");
        let elapsed = started.elapsed();
        if let (Some(facts), Ok(r)) = (log_slot.0.get(), &response) {
            self.log_request(
                facts,
                operation,
                log_request,
                r,
                &request_id,
                started_ms,
                elapsed,
            );
        }
        self.metrics
            .observe(operation, status, elapsed.as_secs_f64());
        if elapsed >= SLOW_REQUEST {
            tracing::warn!(parent: &span, operation, status, seconds = elapsed.as_secs_f64(), "slow S3 request");
        }
        response
    }
}

/// What an access log record needs of a request, kept before the request is consumed.
struct RequestLine {
    method: hyper::Method,
    uri: String,
    referrer: Option<String>,
    user_agent: Option<String>,
    host: Option<String>,
    content_length: Option<u64>,
    sig_version: Option<&'static str>,
    auth_type: Option<&'static str>,
}

impl RequestLine {
    fn of<B>(req: &hyper::Request<B>) -> Self {
        let header = |name: hyper::header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (sig_version, auth_type) = access_log::authentication(req.headers(), req.uri().query());
        let uri = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        Self {
            method: req.method().clone(),
            uri: format!("{} {uri} {:?}", req.method(), req.version()),
            referrer: header(hyper::header::REFERER),
            user_agent: header(hyper::header::USER_AGENT),
            host: header(hyper::header::HOST),
            content_length: header(hyper::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            sig_version,
            auth_type,
        }
    }
}

impl S3Gateway {
    /// Appends the access log record of a served request, if its bucket logs.
    #[allow(clippy::too_many_arguments)]
    fn log_request(
        &self,
        facts: &LogFacts,
        operation: &str,
        request: RequestLine,
        response: &s3s::HttpResponse,
        request_id: &str,
        started_ms: u64,
        elapsed: std::time::Duration,
    ) {
        if gateway::logging::logging_of(&self.registry, &facts.bucket).is_none() {
            return;
        }
        let Some((owner, _)) = xnode_storage::buckets::owner_of(&self.registry, &facts.bucket)
        else {
            return;
        };
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let bytes_sent = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let object_size = match operation {
            "GetObject" | "HeadObject" => bytes_sent,
            "PutObject" | "UploadPart" => request.content_length,
            _ => None,
        };
        let record = access_log::Record {
            owner: owner.to_hex(),
            bucket: facts.bucket.clone(),
            time_ms: started_ms,
            requester: facts.requester.map(|t| t.to_hex()),
            request_id: request_id.to_owned(),
            operation: access_log::operation_name(operation, &request.method),
            key: facts.key.clone(),
            request_uri: request.uri,
            status: response.status().as_u16(),
            bytes_sent: if request.method == hyper::Method::HEAD {
                None
            } else {
                bytes_sent
            },
            object_size,
            total_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            referrer: request.referrer,
            user_agent: request.user_agent,
            version_id: header("x-amz-version-id"),
            sig_version: request.sig_version,
            auth_type: request.auth_type,
            host: request.host,
            acl_required: facts.acl_required,
        };
        self.access_log
            .append(&facts.bucket, record.line(), started_ms);
    }
}

/// Binds the S3 address, failing with a clear message if it is taken.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("S3 address {addr} is already in use (choose another with --s3)")
        } else {
            format!("cannot listen on S3 address {addr}: {e}")
        }
    })
}

/// Serves the S3 gateway on `listener` under `limits` until `shutdown` resolves, then
/// lets open requests finish (up to 3 s).
pub async fn serve(
    listener: TcpListener,
    gateway: S3Gateway,
    limits: xnode_serve::HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handler = move |req: hyper::Request<xnode_serve::TimedBody<hyper::body::Incoming>>| {
        let gateway = gateway.clone();
        async move { gateway.handle(req).await }
    };
    xnode_serve::serve(
        listener,
        limits,
        "s3",
        xnode_serve::ErrorStyle::S3Xml,
        handler,
        shutdown,
        std::time::Duration::from_secs(3),
    )
    .await
}
