//! Authentication of tenant requests (signing v2): signature, timestamp window, replay
//! protection, the node the request names, and the hash of its body; then the tenant's
//! request allowance on this node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use xnode_types::PublicKeyBytes;
use xnode_types::request_auth::{
    CanonicalRequest, HEADER_CONTENT_BLAKE3, HEADER_DATA_KEY, HEADER_NODE, HEADER_NONCE,
    HEADER_SIGNATURE, HEADER_TENANT, HEADER_TIMESTAMP, MAX_CLOCK_SKEW_MS, canonical_request,
    content_hash, data_key_hash, is_hash_hex, parse_signature,
};

use crate::error::ApiError;

/// Remembers the nonces of recent requests so none can be replayed within the window, and
/// takes each tenant's requests from its allowance.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(PublicKeyBytes, String), u64>>,
    tenant_rate: Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .ok_or_else(|| {
            ApiError::Unauthenticated(format!(
                "missing the {name} header; sign requests with a tenant key (xnode key new)"
            ))
        })?
        .to_str()
        .map_err(|_| ApiError::Unauthenticated(format!("the {name} header is not valid text")))
}

/// A v2 header, or the refusal that tells a v1 client to upgrade.
fn v2_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .ok_or_else(|| {
            ApiError::SigningV2Required(format!(
                "request signing v2 is required: sign XNODE-REQUEST-V2 and send the {HEADER_NODE} \
                 and {HEADER_CONTENT_BLAKE3} headers (this request has no {name}; see \
                 docs/http-api.md, or update the client)"
            ))
        })?
        .to_str()
        .map_err(|_| ApiError::Unauthenticated(format!("the {name} header is not valid text")))
}

impl ReplayGuard {
    /// A guard that takes every verified request from its tenant's allowance in
    /// `tenant_rate` (shared with the S3 gateway, so both ports draw on one allowance).
    pub fn new(tenant_rate: Arc<xnode_serve::KeyedRateLimiter<PublicKeyBytes>>) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            tenant_rate,
        }
    }

    /// Checks a signed request meant for the node `own_node` and returns the tenant that
    /// signed it. The body is checked against the signed hash by whoever reads it
    /// ([`check_body_hash`], [`HashCheckedStream`]), before acting on it.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        own_node: &str,
    ) -> Result<PublicKeyBytes, ApiError> {
        self.verify_with_proof(method, path, query, headers, own_node)
            .map(|(tenant, _)| tenant)
    }

    /// [`ReplayGuard::verify`], also returning the request's proof: the tenant's signature
    /// and what it binds, which authorises this node to write the tenant's object
    /// metadata (see `xnode_store::seal`).
    pub fn verify_with_proof(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        own_node: &str,
    ) -> Result<(PublicKeyBytes, xnode_store::TenantRequestProof), ApiError> {
        // An unsigned request is told to sign; a signed one without the v2 headers is told
        // to upgrade.
        let tenant = PublicKeyBytes::from_hex(header(headers, HEADER_TENANT)?)
            .map_err(|e| ApiError::Unauthenticated(format!("bad {HEADER_TENANT}: {e}")))?;
        let node = v2_header(headers, HEADER_NODE)?;
        let content_blake3 = v2_header(headers, HEADER_CONTENT_BLAKE3)?;
        // A request signed for another node is a replay (or a misdirected client): the
        // signature binds the node, so this node must not act on it.
        if node != own_node {
            return Err(ApiError::WrongNode(format!(
                "this request is signed for node {node}, not for this node ({own_node})"
            )));
        }
        if !is_hash_hex(content_blake3) {
            return Err(ApiError::BadRequest(format!(
                "{HEADER_CONTENT_BLAKE3} must be a BLAKE3 hash in 64 lowercase hex digits"
            )));
        }
        let data_key = match headers.get(HEADER_DATA_KEY) {
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::BadRequest(format!("the {HEADER_DATA_KEY} header is not valid text"))
            })?),
            None => None,
        };
        let data_key_blake3 = data_key_hash(data_key);
        let timestamp: u64 = header(headers, HEADER_TIMESTAMP)?.parse().map_err(|_| {
            ApiError::Unauthenticated(format!("{HEADER_TIMESTAMP} must be Unix milliseconds"))
        })?;
        let nonce = header(headers, HEADER_NONCE)?;
        if nonce.len() < 16
            || nonce.len() > 128
            || !nonce.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ApiError::Unauthenticated(format!(
                "{HEADER_NONCE} must be 16-128 letters or digits"
            )));
        }
        let signature = parse_signature(header(headers, HEADER_SIGNATURE)?).ok_or_else(|| {
            ApiError::BadSignature(format!("{HEADER_SIGNATURE} must be 64 bytes of hex"))
        })?;
        let now = now_ms();
        if timestamp.abs_diff(now) > MAX_CLOCK_SKEW_MS {
            return Err(ApiError::StaleRequest(format!(
                "request timestamp is {} s away from this node's clock (at most {} s allowed)",
                timestamp.abs_diff(now) / 1000,
                MAX_CLOCK_SKEW_MS / 1000
            )));
        }
        let signed = CanonicalRequest {
            method,
            path,
            query,
            timestamp_ms: timestamp,
            nonce,
            tenant: &tenant,
            node: own_node,
            content_blake3,
            data_key_blake3: &data_key_blake3,
        };
        if !tenant.verify(&canonical_request(&signed), &signature) {
            return Err(ApiError::BadSignature(
                "the request signature does not verify for this tenant".into(),
            ));
        }
        // Counted only now that the signature verified (no one can spend another tenant's
        // allowance), and before the nonce is recorded, so a client told to wait may send
        // the very same request again.
        if let Err(refusal) = self.tenant_rate.check(tenant, Instant::now()) {
            return Err(ApiError::RateLimited {
                retry_after: refusal.retry_after,
            });
        }
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Nonces older than twice the window can no longer be replayed (their timestamp
        // would be refused), so they are forgotten; this keeps memory bounded by the
        // request rate times the window.
        if seen.len() > 10_000 {
            seen.retain(|_, &mut t| now.saturating_sub(t) <= 2 * MAX_CLOCK_SKEW_MS);
        }
        if seen.insert((tenant, nonce.to_owned()), timestamp).is_some() {
            return Err(ApiError::ReplayedRequest(
                "this request (its nonce) was already used".into(),
            ));
        }
        let proof = xnode_store::TenantRequestProof {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            timestamp_ms: timestamp,
            nonce: nonce.to_owned(),
            content_blake3: content_blake3.to_owned(),
            data_key_blake3,
            signature,
        };
        Ok((tenant, proof))
    }
}

/// The tenant's data key from its header, required to write or read object data.
pub fn data_key(headers: &HeaderMap) -> Result<xnode_store::DataKey, ApiError> {
    let text = header(headers, HEADER_DATA_KEY).map_err(|_| {
        ApiError::BadRequest(format!(
            "object data needs the tenant's data key in {HEADER_DATA_KEY}"
        ))
    })?;
    xnode_store::DataKey::from_hex(text)
        .map_err(|e| ApiError::BadRequest(format!("bad {HEADER_DATA_KEY}: {e}")))
}

/// Checks a body read whole against the hash the (verified) request signed, before the
/// body is acted on.
pub fn check_body_hash(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let signed = v2_header(headers, HEADER_CONTENT_BLAKE3)?;
    let actual = content_hash(body);
    if signed != actual {
        return Err(ApiError::BodyHashMismatch(format!(
            "the body's BLAKE3 hash is {actual}, but the request signed {signed}"
        )));
    }
    Ok(())
}

/// A streamed body that is hashed as it passes and, if its hash differs from the signed
/// one, ends with an error instead of ending cleanly.
///
/// The consumer (object storage) commits an object only after the stream ended cleanly, so
/// a body that does not match its signature is never committed: its chunks stay
/// unreferenced and garbage collection removes them. `mismatched` says afterwards whether
/// the error was a hash mismatch, so the caller can report `body_hash_mismatch`.
pub struct HashCheckedStream<S> {
    inner: S,
    hasher: Option<blake3::Hasher>,
    expected: [u8; 32],
    mismatched: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<S> HashCheckedStream<S> {
    /// Wraps `inner`, expecting the hash the request's (verified) headers signed.
    pub fn new(
        inner: S,
        headers: &HeaderMap,
    ) -> Result<(Self, std::sync::Arc<std::sync::atomic::AtomicBool>), ApiError> {
        let signed = v2_header(headers, HEADER_CONTENT_BLAKE3)?;
        let expected: [u8; 32] = hex::decode(signed)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{HEADER_CONTENT_BLAKE3} must be a BLAKE3 hash in 64 lowercase hex digits"
                ))
            })?;
        let mismatched = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        Ok((
            Self {
                inner,
                hasher: Some(blake3::Hasher::new()),
                expected,
                mismatched: mismatched.clone(),
            },
            mismatched,
        ))
    }
}

/// The error a [`HashCheckedStream`] ends with when the body differs from its signature.
#[derive(Debug, thiserror::Error)]
#[error("the body's BLAKE3 hash differs from the signed {HEADER_CONTENT_BLAKE3}")]
pub struct BodyHashMismatch;

impl<S, E> futures::Stream for HashCheckedStream<S>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<bytes::Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(hasher) = this.hasher.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                hasher.update(&bytes);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(e.to_string())))
            }
            Poll::Ready(None) => {
                let actual = hasher.finalize();
                this.hasher = None;
                // Constant time is not needed: both hashes are public.
                if actual.as_bytes() == &this.expected {
                    Poll::Ready(None)
                } else {
                    this.mismatched
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    Poll::Ready(Some(Err(BodyHashMismatch.to_string())))
                }
            }
        }
    }
}
