//! Signed API requests: the canonical text a tenant signs, shared by clients and servers.
//!
//! A signed request (version 2) carries six headers: the tenant's public key, a timestamp,
//! a nonce, the id of the node it is meant for, the BLAKE3 hash of its body, and an ed25519
//! signature over [`canonical_request`]. The server refuses timestamps outside its window
//! and nonces it has already seen, so a captured request cannot be replayed to it; it
//! refuses a request that names another node, so a captured request cannot be replayed
//! to a different node either; and it refuses a body whose hash differs from the signed
//! one, so a replay cannot carry other content. When the request carries the tenant's data
//! key, the text binds a hash of that header (never the key itself), so the key cannot be
//! swapped either. Streamed uploads are hashed while they are stored and are not committed
//! when the hash differs. The full description is in `docs/http-api.md`.

use crate::{PublicKeyBytes, SecretKey, SignatureBytes};

pub const HEADER_TENANT: &str = "x-xnode-tenant";
pub const HEADER_TIMESTAMP: &str = "x-xnode-timestamp";
pub const HEADER_NONCE: &str = "x-xnode-nonce";
pub const HEADER_SIGNATURE: &str = "x-xnode-signature";
/// The id of the node the request is meant for (as `GET /v1/node` reports it).
pub const HEADER_NODE: &str = "x-xnode-node";
/// The BLAKE3 hash (64 lowercase hex digits) of the request's body; an empty body has
/// [`EMPTY_BODY_BLAKE3`].
pub const HEADER_CONTENT_BLAKE3: &str = "x-xnode-content-blake3";
/// The tenant's data key (derived from its secret), sent to its edge node so the edge can
/// encrypt and decrypt object data. Providers never see it.
pub const HEADER_DATA_KEY: &str = "x-xnode-data-key";

/// The first line of the canonical text: it separates request signatures from every other
/// thing a tenant key signs (registry entries sign `xnode/registry-entry/v1`).
pub const SIGNING_DOMAIN: &str = "XNODE-REQUEST-V2";

/// The BLAKE3 hash of an empty body, in hex.
pub const EMPTY_BODY_BLAKE3: &str =
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

/// How far a request's timestamp may be from the server's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// Everything a request signature binds.
#[derive(Clone, Copy, Debug)]
pub struct CanonicalRequest<'a> {
    pub method: &'a str,
    /// The percent-encoded path, as sent.
    pub path: &'a str,
    /// The raw query without `?`, as sent (empty when there is none).
    pub query: &'a str,
    pub timestamp_ms: u64,
    pub nonce: &'a str,
    pub tenant: &'a PublicKeyBytes,
    /// The id of the node the request is meant for.
    pub node: &'a str,
    /// The BLAKE3 hash of the body, in lowercase hex.
    pub content_blake3: &'a str,
    /// The BLAKE3 hash of the `x-xnode-data-key` header's value, in lowercase hex, or an
    /// empty string when the request carries no data key.
    pub data_key_blake3: &'a str,
}

/// The bytes a tenant signs for a request: one field per line, after [`SIGNING_DOMAIN`].
///
/// No field can contain a newline (paths and queries are URI text, nonces are letters
/// and digits, hashes are hex, node ids are base58), so the lines cannot be confused.
pub fn canonical_request(request: &CanonicalRequest<'_>) -> Vec<u8> {
    format!(
        "{SIGNING_DOMAIN}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        request.path,
        request.query,
        request.timestamp_ms,
        request.nonce,
        request.tenant.to_hex(),
        request.node,
        request.content_blake3,
        request.data_key_blake3,
    )
    .into_bytes()
}

/// The BLAKE3 hash of a body, in hex, as [`HEADER_CONTENT_BLAKE3`] carries it.
pub fn content_hash(body: &[u8]) -> String {
    blake3::hash(body).to_hex().to_string()
}

/// The hash of a data key header value that the canonical text binds, or an empty string
/// when there is none. Only the hash is signed and relayed, never the key.
pub fn data_key_hash(header_value: Option<&str>) -> String {
    match header_value {
        Some(value) => blake3::hash(value.as_bytes()).to_hex().to_string(),
        None => String::new(),
    }
}

/// Whether `text` has the form of a BLAKE3 hash in lowercase hex.
pub fn is_hash_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a client signs for one request; [`RequestToSign::sign`] turns it into headers.
#[derive(Clone, Copy, Debug)]
pub struct RequestToSign<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// The id of the node the request is sent to.
    pub node: &'a str,
    /// The BLAKE3 hash of the body ([`content_hash`]; [`EMPTY_BODY_BLAKE3`] for none).
    pub content_blake3: &'a str,
    /// The data key header value to send with the request, if any.
    pub data_key: Option<&'a str>,
}

impl RequestToSign<'_> {
    /// The authentication headers for this request, as `(name, value)` pairs, including
    /// the data key header when there is one.
    pub fn sign(
        &self,
        key: &SecretKey,
        timestamp_ms: u64,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let tenant = key.public();
        let data_key_blake3 = data_key_hash(self.data_key);
        let signature = key.sign(&canonical_request(&CanonicalRequest {
            method: self.method,
            path: self.path,
            query: self.query,
            timestamp_ms,
            nonce,
            tenant: &tenant,
            node: self.node,
            content_blake3: self.content_blake3,
            data_key_blake3: &data_key_blake3,
        }));
        let mut headers = vec![
            (HEADER_TENANT, tenant.to_hex()),
            (HEADER_TIMESTAMP, timestamp_ms.to_string()),
            (HEADER_NONCE, nonce.to_owned()),
            (HEADER_NODE, self.node.to_owned()),
            (HEADER_CONTENT_BLAKE3, self.content_blake3.to_owned()),
            (HEADER_SIGNATURE, hex::encode(signature.0)),
        ];
        if let Some(data_key) = self.data_key {
            headers.push((HEADER_DATA_KEY, data_key.to_owned()));
        }
        headers
    }
}

/// Parses a hex signature header.
pub fn parse_signature(text: &str) -> Option<SignatureBytes> {
    let bytes = hex::decode(text).ok()?;
    Some(SignatureBytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> &'a str {
        &headers.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn the_empty_body_hash_is_blake3_of_nothing() {
        assert_eq!(content_hash(b""), EMPTY_BODY_BLAKE3);
        assert!(is_hash_hex(EMPTY_BODY_BLAKE3));
        assert!(!is_hash_hex(&EMPTY_BODY_BLAKE3.to_uppercase()));
        assert!(!is_hash_hex("abc"));
        assert_eq!(data_key_hash(None), "");
        assert!(is_hash_hex(&data_key_hash(Some("00"))));
    }

    #[test]
    fn the_canonical_text_is_domain_separated_and_has_every_field_on_its_line() {
        let tenant = SecretKey::from_seed(&[7; 32]).unwrap().public();
        let text = canonical_request(&CanonicalRequest {
            method: "post",
            path: "/v1/s3/keys",
            query: "a=1",
            timestamp_ms: 1000,
            nonce: "abc",
            tenant: &tenant,
            node: "12D3KooWnode",
            content_blake3: EMPTY_BODY_BLAKE3,
            data_key_blake3: "",
        });
        let expected = format!(
            "XNODE-REQUEST-V2\nPOST\n/v1/s3/keys\na=1\n1000\nabc\n{}\n12D3KooWnode\n{EMPTY_BODY_BLAKE3}\n",
            tenant.to_hex()
        );
        assert_eq!(String::from_utf8(text).unwrap(), expected);
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let key = SecretKey::generate();
        let body_hash = content_hash(b"body");
        let request = RequestToSign {
            method: "put",
            path: "/v1/buckets/b/objects/k",
            query: "",
            node: "node-a",
            content_blake3: &body_hash,
            data_key: Some("k1"),
        };
        let headers = request.sign(&key, 1000, "abc");
        assert_eq!(header(&headers, HEADER_NODE), "node-a");
        assert_eq!(header(&headers, HEADER_CONTENT_BLAKE3), body_hash);
        assert_eq!(header(&headers, HEADER_DATA_KEY), "k1");
        let sig = parse_signature(header(&headers, HEADER_SIGNATURE)).unwrap();
        let tenant = key.public();
        let key_hash = data_key_hash(Some("k1"));
        let signed = CanonicalRequest {
            method: "PUT",
            path: "/v1/buckets/b/objects/k",
            query: "",
            timestamp_ms: 1000,
            nonce: "abc",
            tenant: &tenant,
            node: "node-a",
            content_blake3: &body_hash,
            data_key_blake3: &key_hash,
        };
        assert!(tenant.verify(&canonical_request(&signed), &sig));
        let other_body = content_hash(b"other");
        let other_key = data_key_hash(Some("k2"));
        let changes = [
            CanonicalRequest {
                method: "GET",
                ..signed
            },
            CanonicalRequest {
                path: "/v1/buckets/b/objects/x",
                ..signed
            },
            CanonicalRequest {
                query: "a=1",
                ..signed
            },
            CanonicalRequest {
                timestamp_ms: 1001,
                ..signed
            },
            CanonicalRequest {
                nonce: "abd",
                ..signed
            },
            CanonicalRequest {
                node: "node-b",
                ..signed
            },
            CanonicalRequest {
                content_blake3: &other_body,
                ..signed
            },
            CanonicalRequest {
                data_key_blake3: &other_key,
                ..signed
            },
            CanonicalRequest {
                data_key_blake3: "",
                ..signed
            },
        ];
        for changed in changes {
            assert!(
                !tenant.verify(&canonical_request(&changed), &sig),
                "{changed:?}"
            );
        }
        assert!(parse_signature("zz").is_none());
        assert!(parse_signature("abcd").is_none());
    }
}
