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
//!   presigned lifetimes, bodies without a length).
//!
//! Lower layers know nothing of S3: multipart uploads are kept as internal objects
//! (`xnode_store::internal_key`) and joined with `Storage::compose_object`.

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
        let decision = authorize::decide(
            &self.storage,
            &self.keys,
            requester.as_ref(),
            &operation,
            form_object.as_ref().unwrap_or(cx.s3_path()),
            cx.uri().query(),
            cx.headers(),
        )
        .await?;
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
        if let Some(key) = decision.act_as {
            cx.extensions_mut().insert(authorize::ActingFor(key));
        }
        Ok(())
    }
}

impl SignedOnly {
    /// `x-amz-expected-bucket-owner` (and its copy-source twin) name the account that must
    /// own the bucket: the header must name the bucket's owner (the signing tenant, for
    /// requests that name no existing bucket), as AWS answers 403 otherwise.
    fn check_expected_owner(
        &self,
        tenant: &PublicKeyBytes,
        cx: &S3AccessContext<'_>,
    ) -> S3Result<()> {
        let expected: Vec<&str> = [
            "x-amz-expected-bucket-owner",
            "x-amz-source-expected-bucket-owner",
        ]
        .iter()
        .filter_map(|h| cx.headers().get(*h))
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
        if expected.is_empty() {
            return Ok(());
        }
        let tenant = tenant.to_hex();
        if expected.iter().any(|e| !e.eq_ignore_ascii_case(&tenant)) {
            return Err(s3_error!(AccessDenied, "Access Denied"));
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
    /// The operations themselves, for the lifecycle worker.
    gateway: Gateway,
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
        });
        Self {
            service: builder.build(),
            metrics,
            registry,
            gateway,
        }
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
        self.metrics
            .observe(operation, status, elapsed.as_secs_f64());
        if elapsed >= SLOW_REQUEST {
            tracing::warn!(parent: &span, operation, status, seconds = elapsed.as_secs_f64(), "slow S3 request");
        }
        response
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
