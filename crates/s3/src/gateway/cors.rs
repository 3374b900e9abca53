//! CORS: `PutBucketCors`/`GetBucketCors`/`DeleteBucketCors`, the answer to a browser's
//! preflight `OPTIONS` request and the `Access-Control-*` headers of actual requests, so
//! web pages can upload straight to a bucket.
//!
//! A bucket's rules are an owner-signed bucket setting (kind `cors`, see `settings`),
//! replicated through the registry, so every node answers a preflight the same way. Rules
//! are matched as S3 matches them: the first rule whose allowed origins (each with at most
//! one `*` wildcard) match `Origin`, whose allowed methods hold the method asked for, and
//! whose allowed headers (with wildcards) cover every header in
//! `Access-Control-Request-Headers` answers. CORS only tells a browser what it may show a
//! page; it never grants access (requests are still signed and checked as any other).

use hyper::HeaderMap;
use hyper::header::HeaderValue;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use xnode_registry::Registry;

use super::Gateway;
use super::settings::decode_document;

/// The setting kind CORS rules are stored under.
pub(crate) const CORS_KIND: &str = "cors";
/// Format version of [`CorsDocument`].
const CORS_DOCUMENT_VERSION: u32 = 1;
/// S3's limits: rules per configuration and the length of a rule id.
const MAX_RULES: usize = 100;
const MAX_ID_CHARS: usize = 255;
/// The methods a CORS rule may allow.
const METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "DELETE"];

/// A bucket's CORS rules as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CorsDocument {
    /// Format version of this document.
    pub v: u32,
    pub rules: Vec<CorsRule>,
}

/// One CORS rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

fn invalid(message: String) -> s3s::S3Error {
    s3_error!(InvalidRequest, "{message}")
}

/// Checks a configuration against S3's rules and converts it to the stored form.
fn validate(config: CORSConfiguration) -> S3Result<CorsDocument> {
    if config.cors_rules.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "The CORS configuration must have at least one rule"
        ));
    }
    if config.cors_rules.len() > MAX_RULES {
        return Err(invalid(format!(
            "The CORS configuration must have at most {MAX_RULES} rules"
        )));
    }
    let mut rules = Vec::with_capacity(config.cors_rules.len());
    for rule in config.cors_rules {
        if let Some(id) = &rule.id
            && id.chars().count() > MAX_ID_CHARS
        {
            return Err(invalid(format!(
                "A CORS rule id is at most {MAX_ID_CHARS} characters"
            )));
        }
        if rule.allowed_methods.is_empty() || rule.allowed_origins.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "Every CORS rule needs at least one AllowedMethod and one AllowedOrigin"
            ));
        }
        for method in &rule.allowed_methods {
            if !METHODS.contains(&method.as_str()) {
                return Err(invalid(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {method}"
                )));
            }
        }
        for origin in &rule.allowed_origins {
            if origin.matches('*').count() > 1 {
                return Err(invalid(format!(
                    "AllowedOrigin {origin:?} can not have more than one wildcard."
                )));
            }
        }
        let headers = rule.allowed_headers.unwrap_or_default();
        for header in &headers {
            if header.matches('*').count() > 1 {
                return Err(invalid(format!(
                    "AllowedHeader {header:?} can not have more than one wildcard."
                )));
            }
        }
        if rule.max_age_seconds.is_some_and(|s| s < 0) {
            return Err(invalid("MaxAgeSeconds must not be negative".into()));
        }
        rules.push(CorsRule {
            id: rule.id,
            origins: rule.allowed_origins,
            methods: rule.allowed_methods,
            headers,
            expose: rule.expose_headers.unwrap_or_default(),
            max_age_seconds: rule.max_age_seconds,
        });
    }
    Ok(CorsDocument {
        v: CORS_DOCUMENT_VERSION,
        rules,
    })
}

/// Whether `value` matches `pattern`, which holds at most one `*` standing for any run
/// of characters (ASCII case is ignored: origins and header names are case-insensitive).
fn wildcard_match(pattern: &str, value: &str) -> bool {
    let (pattern, value) = (pattern.to_ascii_lowercase(), value.to_ascii_lowercase());
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, suffix)) => {
            value.len() >= prefix.len().saturating_add(suffix.len())
                && value.starts_with(prefix)
                && value.ends_with(suffix)
        }
    }
}

/// What a matching rule allows a request from one origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CorsGrant {
    /// `*` when the rule allows any origin, else the request's origin.
    pub allow_origin: String,
    pub allow_methods: String,
    /// The requested headers, echoed back (preflights only).
    pub allow_headers: Option<String>,
    pub expose_headers: Option<String>,
    pub max_age_seconds: Option<i32>,
}

impl CorsDocument {
    /// The first rule allowing `method` from `origin` with every header in
    /// `requested_headers` (a comma-separated list, as a preflight sends it).
    pub(crate) fn grant(
        &self,
        origin: &str,
        method: &str,
        requested_headers: Option<&str>,
    ) -> Option<CorsGrant> {
        let requested: Vec<String> = requested_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        self.rules.iter().find_map(|rule| {
            let matched_origin = rule.origins.iter().find(|o| wildcard_match(o, origin))?;
            if !rule.methods.iter().any(|m| m == method) {
                return None;
            }
            let headers_allowed = requested
                .iter()
                .all(|h| rule.headers.iter().any(|p| wildcard_match(p, h)));
            if !headers_allowed {
                return None;
            }
            Some(CorsGrant {
                allow_origin: if matched_origin == "*" {
                    "*".to_owned()
                } else {
                    origin.to_owned()
                },
                allow_methods: rule.methods.join(", "),
                allow_headers: (!requested.is_empty()).then(|| requested.join(", ")),
                expose_headers: (!rule.expose.is_empty()).then(|| rule.expose.join(", ")),
                max_age_seconds: rule.max_age_seconds,
            })
        })
    }
}

/// The CORS rules of bucket `name`, whoever asks (a preflight is unsigned).
pub(crate) fn rules_of(registry: &Registry, bucket: &str) -> Option<CorsDocument> {
    xnode_storage::bucket_settings::setting_of(registry, bucket, CORS_KIND)
        .and_then(|d| decode_document(d, CORS_KIND))
}

impl CorsGrant {
    /// Adds the grant's `Access-Control-*` headers to a response.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, preflight: bool) {
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        put("access-control-allow-origin", &self.allow_origin);
        put("access-control-allow-methods", &self.allow_methods);
        if self.allow_origin != "*" {
            put("access-control-allow-credentials", "true");
        }
        if let Some(h) = &self.allow_headers {
            put("access-control-allow-headers", h);
        }
        if let Some(h) = &self.expose_headers {
            put("access-control-expose-headers", h);
        }
        if let Some(age) = self.max_age_seconds {
            put("access-control-max-age", &age.to_string());
        }
        put(
            "vary",
            if preflight {
                "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
            } else {
                "Origin"
            },
        );
    }
}

/// The bucket a path-style request is for (its first path segment), if any.
fn bucket_of(path: &str) -> Option<&str> {
    let bucket = path.trim_start_matches('/').split('/').next()?;
    (!bucket.is_empty()).then_some(bucket)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// An error answer in S3's XML form with a code s3s has no name for.
fn error_response(status: hyper::StatusCode, code: &str, message: &str) -> s3s::HttpResponse {
    let mut error = s3s::S3Error::with_message(
        s3s::S3ErrorCode::Custom(code.to_owned().into()),
        message.to_owned(),
    );
    error.set_status_code(status);
    error.to_http_response().unwrap_or_else(|_| {
        let mut r = s3s::HttpResponse::new(s3s::Body::empty());
        *r.status_mut() = status;
        r
    })
}

/// The answer to a preflight `OPTIONS` request (unsigned, as browsers send it): 200 with
/// the matching rule's headers, 400 without `Origin` or `Access-Control-Request-Method`,
/// 403 when no rule of the bucket allows the request.
pub(crate) fn preflight(registry: &Registry, path: &str, headers: &HeaderMap) -> s3s::HttpResponse {
    let (Some(origin), Some(method)) = (
        header(headers, "origin"),
        header(headers, "access-control-request-method"),
    ) else {
        return error_response(
            hyper::StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin and Access-Control-Request-Method request headers needed.",
        );
    };
    let Some(bucket) = bucket_of(path) else {
        return error_response(
            hyper::StatusCode::BAD_REQUEST,
            "BadRequest",
            "A preflight request must name a bucket.",
        );
    };
    let grant = rules_of(registry, bucket).and_then(|rules| {
        rules.grant(
            origin,
            method,
            header(headers, "access-control-request-headers"),
        )
    });
    match grant {
        Some(grant) => {
            let mut response = s3s::HttpResponse::new(s3s::Body::empty());
            grant.apply(response.headers_mut(), true);
            response
        }
        None => error_response(
            hyper::StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the evaluation of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ),
    }
}

/// Adds the `Access-Control-*` headers of the bucket's matching rule to the answer of an
/// actual (non-preflight) request that carries `Origin`, errors included, so a page can
/// read why its request failed. The method matched is `Access-Control-Request-Method`
/// when the request carries one, else the request's own.
pub(crate) fn decorate(
    registry: &Registry,
    method: &hyper::Method,
    path: &str,
    request_headers: &HeaderMap,
    response_headers: &mut HeaderMap,
) {
    let Some(origin) = header(request_headers, "origin") else {
        return;
    };
    let Some(bucket) = bucket_of(path) else {
        return;
    };
    let method =
        header(request_headers, "access-control-request-method").unwrap_or(method.as_str());
    if let Some(grant) = rules_of(registry, bucket).and_then(|r| r.grant(origin, method, None)) {
        grant.apply(response_headers, false);
    }
}

impl Gateway {
    pub(super) async fn put_bucket_cors_impl(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let document = validate(input.cors_configuration)?;
        self.store_bucket_setting(&key, &input.bucket, CORS_KIND, Some(&document))
            .await?;
        Ok(S3Response::new(PutBucketCorsOutput {}))
    }

    pub(super) async fn get_bucket_cors_impl(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let key = self.key_of(&req)?;
        let Some(document) =
            self.load_bucket_setting::<CorsDocument>(&key.tenant, &req.input.bucket, CORS_KIND)?
        else {
            return Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            ));
        };
        let rules = document
            .rules
            .into_iter()
            .map(|r| CORSRule {
                allowed_headers: (!r.headers.is_empty()).then_some(r.headers),
                allowed_methods: r.methods,
                allowed_origins: r.origins,
                expose_headers: (!r.expose.is_empty()).then_some(r.expose),
                id: r.id,
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(rules),
        }))
    }

    pub(super) async fn delete_bucket_cors_impl(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let key = self.key_of(&req)?;
        self.store_bucket_setting::<CorsDocument>(&key, &req.input.bucket, CORS_KIND, None)
            .await?;
        Ok(S3Response::new(DeleteBucketCorsOutput {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str]) -> CORSRule {
        CORSRule {
            allowed_headers: None,
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            expose_headers: None,
            id: None,
            max_age_seconds: None,
        }
    }

    fn config(rules: Vec<CORSRule>) -> CORSConfiguration {
        CORSConfiguration { cors_rules: rules }
    }

    #[test]
    fn origins_match_with_one_wildcard() {
        let doc = validate(config(vec![
            rule(&["*suffix"], &["GET"]),
            rule(&["start*end"], &["GET"]),
            rule(&["prefix*"], &["GET"]),
            rule(&["*.put"], &["PUT"]),
        ]))
        .unwrap();
        let origin = |o: &str, m: &str| doc.grant(o, m, None).map(|g| g.allow_origin);
        assert_eq!(origin("foo.suffix", "GET").as_deref(), Some("foo.suffix"));
        assert_eq!(origin("foo.bar", "GET"), None);
        assert_eq!(origin("foo.suffix.get", "GET"), None);
        assert_eq!(origin("startend", "GET").as_deref(), Some("startend"));
        assert_eq!(origin("start12end", "GET").as_deref(), Some("start12end"));
        assert_eq!(origin("0start12end", "GET"), None);
        assert_eq!(
            origin("prefix.suffix", "GET").as_deref(),
            Some("prefix.suffix")
        );
        assert_eq!(origin("bla.prefix", "GET"), None);
        assert_eq!(origin("foo.put", "GET"), None);
        assert_eq!(origin("foo.put", "PUT").as_deref(), Some("foo.put"));
        // The pattern's prefix and suffix may not overlap in the origin.
        let doc = validate(config(vec![rule(&["ab*ba"], &["GET"])])).unwrap();
        assert_eq!(doc.grant("aba", "GET", None), None);
        assert!(doc.grant("abba", "GET", None).is_some());
    }

    #[test]
    fn a_wildcard_origin_is_answered_as_a_wildcard() {
        let doc = validate(config(vec![rule(&["*"], &["GET"])])).unwrap();
        let grant = doc.grant("https://example.org", "GET", None).unwrap();
        assert_eq!(grant.allow_origin, "*");
        assert_eq!(grant.allow_methods, "GET");
    }

    #[test]
    fn requested_headers_must_all_be_allowed() {
        let mut r = rule(&["*"], &["GET", "PUT"]);
        r.allowed_headers = Some(vec!["x-amz-meta-*".into(), "Content-Type".into()]);
        r.expose_headers = Some(vec!["ETag".into()]);
        r.max_age_seconds = Some(600);
        let doc = validate(config(vec![r])).unwrap();
        let grant = doc
            .grant("o", "PUT", Some("content-type, X-Amz-Meta-A"))
            .unwrap();
        assert_eq!(
            grant.allow_headers.as_deref(),
            Some("content-type, x-amz-meta-a")
        );
        assert_eq!(grant.expose_headers.as_deref(), Some("ETag"));
        assert_eq!(grant.max_age_seconds, Some(600));
        assert_eq!(doc.grant("o", "PUT", Some("authorization")), None);
        // A rule without allowed headers allows none.
        let doc = validate(config(vec![rule(&["*"], &["GET"])])).unwrap();
        assert_eq!(doc.grant("o", "GET", Some("x-amz-meta-header2")), None);
    }

    #[test]
    fn malformed_configurations_are_refused() {
        let code = |c: CORSConfiguration| validate(c).err().map(|e| e.code().as_str().to_owned());
        assert_eq!(code(config(vec![])).as_deref(), Some("MalformedXML"));
        assert_eq!(
            code(config(vec![rule(&["*"], &["PATCH"])])).as_deref(),
            Some("InvalidRequest")
        );
        assert_eq!(
            code(config(vec![rule(&["*a*"], &["GET"])])).as_deref(),
            Some("InvalidRequest")
        );
        assert_eq!(
            code(config(vec![rule(&[], &["GET"])])).as_deref(),
            Some("MalformedXML")
        );
        let mut r = rule(&["*"], &["GET"]);
        r.max_age_seconds = Some(-1);
        assert_eq!(code(config(vec![r])).as_deref(), Some("InvalidRequest"));
        let many = (0..=MAX_RULES).map(|_| rule(&["*"], &["GET"])).collect();
        assert_eq!(code(config(many)).as_deref(), Some("InvalidRequest"));
    }
}
