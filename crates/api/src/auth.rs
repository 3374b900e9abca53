//! Authentication of tenant requests: signature, timestamp window and replay protection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use xnode_types::PublicKeyBytes;
use xnode_types::request_auth::{
    HEADER_DATA_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TENANT, HEADER_TIMESTAMP,
    MAX_CLOCK_SKEW_MS, canonical_request, parse_signature,
};

use crate::error::ApiError;

/// Remembers the nonces of recent requests so none can be replayed within the window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(PublicKeyBytes, String), u64>>,
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

impl ReplayGuard {
    /// Checks a signed request and returns the tenant that signed it.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<PublicKeyBytes, ApiError> {
        let tenant = PublicKeyBytes::from_hex(header(headers, HEADER_TENANT)?)
            .map_err(|e| ApiError::Unauthenticated(format!("bad {HEADER_TENANT}: {e}")))?;
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
        if !tenant.verify(
            &canonical_request(method, path, query, timestamp, nonce, &tenant),
            &signature,
        ) {
            return Err(ApiError::BadSignature(
                "the request signature does not verify for this tenant".into(),
            ));
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
        Ok(tenant)
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
