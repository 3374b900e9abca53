//! The policy document of a browser-form upload (S3's POST object), evaluated as S3
//! evaluates it: a base64 JSON document with an `expiration` and a list of `conditions`
//! (exact matches, `starts-with` prefixes and a `content-length-range`) that every form
//! field must satisfy, and that must name every form field except the few S3 exempts.
//!
//! s3s checks the policy too, but answers a failed condition `400 InvalidPolicyDocument`
//! where S3 answers `403 AccessDenied`, accepts expirations S3 refuses and checks the
//! `key` before `${filename}` is expanded; `post_form` therefore runs this evaluation
//! first, and s3s's own checks then pass on every form this one accepts.

use std::collections::BTreeMap;

use base64::Engine;
use time::OffsetDateTime;

/// The largest policy accepted, in base64 characters. S3 refuses form fields before the
/// file larger than 20 KB in all, so a real policy is far smaller; the bound keeps a
/// hostile policy from costing more than a few small allocations to refuse.
pub(crate) const MAX_POLICY_BASE64: usize = 20 * 1024;

/// Why a form does not satisfy its policy, each with the status and message S3 gives.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PolicyError {
    /// The document itself is malformed: `400 InvalidPolicyDocument`.
    #[error("Invalid Policy: {0}")]
    Invalid(String),
    /// The policy's expiration has passed: `403 AccessDenied`.
    #[error("Invalid according to Policy: Policy expired.")]
    Expired,
    /// A condition does not hold for the form: `403 AccessDenied`.
    #[error("Invalid according to Policy: Policy Condition failed: {0}")]
    ConditionFailed(String),
    /// A form field no condition names: `403 AccessDenied`.
    #[error("Invalid according to Policy: Extra input fields: {0}")]
    ExtraField(String),
}

impl PolicyError {
    /// The S3 error a client gets for this failure.
    pub(crate) fn to_s3(&self) -> s3s::S3Error {
        let code = match self {
            Self::Invalid(_) => s3s::S3ErrorCode::InvalidPolicyDocument,
            Self::Expired | Self::ConditionFailed(_) | Self::ExtraField(_) => {
                s3s::S3ErrorCode::AccessDenied
            }
        };
        s3s::S3Error::with_message(code, self.to_string())
    }
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(message.into())
}

/// One condition of a policy. Field names are kept lowercase without their `$`: S3
/// matches form field names case-insensitively and values exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    /// The field's value must equal `value` (`{"field": "value"}` or `["eq", "$field", "value"]`).
    Eq { field: String, value: String },
    /// The field's value must start with `prefix` (an empty prefix allows any value).
    StartsWith { field: String, prefix: String },
    /// The file's size in bytes must lie in `min..=max` (checked by s3s as it reads the
    /// file: `400 EntityTooSmall` or `EntityTooLarge`, as S3 answers).
    LengthRange { min: u64, max: u64 },
}

impl Condition {
    /// The condition as S3 quotes it in a refusal.
    fn describe(&self) -> String {
        match self {
            Self::Eq { field, value } => format!("[\"eq\", \"${field}\", {value:?}]"),
            Self::StartsWith { field, prefix } => {
                format!("[\"starts-with\", \"${field}\", {prefix:?}]")
            }
            Self::LengthRange { min, max } => format!("[\"content-length-range\", {min}, {max}]"),
        }
    }

    /// The form field this condition names, if it names one.
    fn field(&self) -> Option<&str> {
        match self {
            Self::Eq { field, .. } | Self::StartsWith { field, .. } => Some(field),
            Self::LengthRange { .. } => None,
        }
    }
}

/// A parsed POST policy.
#[derive(Clone, Debug)]
pub(crate) struct PostPolicy {
    pub(crate) expiration: OffsetDateTime,
    pub(crate) conditions: Vec<Condition>,
}

/// Whether form field `name` (lowercase) needs no condition. S3 exempts the signature's
/// own fields (`x-amz-signature`; `AWSAccessKeyId` and `signature` for SigV2), `policy`,
/// `file` and fields named `x-ignore-*`. The `x-amz-checksum-*` fields are exempt here as
/// in Ceph RGW (the conformance suite's upload sends one its policy does not name): a
/// checksum can only make an upload fail, it never changes what is stored.
pub(crate) fn is_exempt(name: &str) -> bool {
    matches!(
        name,
        "x-amz-signature" | "awsaccesskeyid" | "signature" | "policy" | "file"
    ) || name.starts_with("x-ignore-")
        || name.starts_with("x-amz-checksum-")
}

/// Parses an expiration as S3 accepts it: ISO 8601 in UTC, `2026-11-27T12:00:00Z` or with
/// fractional seconds (`...:00.000Z`).
fn parse_expiration(text: &str) -> Result<OffsetDateTime, PolicyError> {
    let refuse = || invalid(format!("Invalid 'expiration' value: '{text}'"));
    let shaped = text.len() >= 20
        && text.ends_with('Z')
        && text.as_bytes().get(10) == Some(&b'T')
        && text.is_ascii();
    if !shaped {
        return Err(refuse());
    }
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| refuse())
}

/// A field name in a condition: `$name`, matched case-insensitively.
fn condition_field(value: &serde_json::Value, op: &str) -> Result<String, PolicyError> {
    let name = value.as_str().ok_or_else(|| {
        invalid(format!(
            "Invalid '{op}' condition: the field must be a string"
        ))
    })?;
    let name = name.strip_prefix('$').ok_or_else(|| {
        invalid(format!(
            "Invalid '{op}' condition: the field '{name}' must start with '$'"
        ))
    })?;
    if name.is_empty() {
        return Err(invalid(format!(
            "Invalid '{op}' condition: empty field name"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// A `content-length-range` bound: a non-negative integer (S3 also accepts one written as
/// a string of digits).
fn length_bound(value: &serde_json::Value) -> Result<u64, PolicyError> {
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        invalid(format!(
            "Invalid 'content-length-range' condition: {value} is not a non-negative integer"
        ))
    })
}

fn parse_condition(value: &serde_json::Value) -> Result<Condition, PolicyError> {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries = map.iter();
            let (Some((field, value)), None) = (entries.next(), entries.next()) else {
                return Err(invalid(
                    "Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
                ));
            };
            let value = value.as_str().ok_or_else(|| {
                invalid(format!(
                    "Invalid Simple-Condition: the value of '{field}' must be a string"
                ))
            })?;
            let field = field.strip_prefix('$').unwrap_or(field);
            if field.is_empty() {
                return Err(invalid("Invalid Simple-Condition: empty field name"));
            }
            Ok(Condition::Eq {
                field: field.to_ascii_lowercase(),
                value: value.to_owned(),
            })
        }
        serde_json::Value::Array(items) => {
            let op = items
                .first()
                .and_then(|v| v.as_str())
                .ok_or_else(|| invalid("Invalid Condition: the first element must be an operator"))?
                .to_ascii_lowercase();
            let [_, first, second] = items.as_slice() else {
                return Err(invalid(format!(
                    "Invalid '{op}' condition: it must have exactly 3 elements"
                )));
            };
            match op.as_str() {
                "eq" | "starts-with" => {
                    let field = condition_field(first, &op)?;
                    let text = second.as_str().ok_or_else(|| {
                        invalid(format!(
                            "Invalid '{op}' condition: the value must be a string"
                        ))
                    })?;
                    Ok(if op == "eq" {
                        Condition::Eq {
                            field,
                            value: text.to_owned(),
                        }
                    } else {
                        Condition::StartsWith {
                            field,
                            prefix: text.to_owned(),
                        }
                    })
                }
                "content-length-range" => {
                    let (min, max) = (length_bound(first)?, length_bound(second)?);
                    if min > max {
                        return Err(invalid(format!(
                            "Invalid 'content-length-range' condition: minimum {min} is above maximum {max}"
                        )));
                    }
                    Ok(Condition::LengthRange { min, max })
                }
                other => Err(invalid(format!(
                    "Invalid Condition: unknown operator '{other}'"
                ))),
            }
        }
        _ => Err(invalid(
            "Invalid Condition: a condition must be an object or an array",
        )),
    }
}

impl PostPolicy {
    /// Parses the `policy` form field (base64 of the JSON document).
    pub(crate) fn from_base64(encoded: &str) -> Result<Self, PolicyError> {
        let encoded = encoded.trim();
        if encoded.len() > MAX_POLICY_BASE64 {
            return Err(invalid(format!(
                "the policy is {} characters long; at most {MAX_POLICY_BASE64} are accepted",
                encoded.len()
            )));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| invalid("the policy is not valid base64"))?;
        Self::from_json(&decoded)
    }

    /// Parses the JSON policy document. Its keys are case-sensitive, as in S3, and a key
    /// other than `expiration` and `conditions` is refused rather than ignored.
    pub(crate) fn from_json(json: &[u8]) -> Result<Self, PolicyError> {
        let document: serde_json::Value =
            serde_json::from_slice(json).map_err(|_| invalid("Invalid JSON."))?;
        let serde_json::Value::Object(document) = document else {
            return Err(invalid("the policy must be a JSON object"));
        };
        if let Some(other) = document
            .keys()
            .find(|k| !matches!(k.as_str(), "expiration" | "conditions"))
        {
            return Err(invalid(format!(
                "Unexpected field in the policy: '{other}'"
            )));
        }
        let expiration = match document.get("expiration") {
            None => return Err(invalid("Policy missing expiration.")),
            Some(serde_json::Value::String(text)) => parse_expiration(text)?,
            Some(other) => return Err(invalid(format!("Invalid 'expiration' value: {other}"))),
        };
        let conditions = match document.get("conditions") {
            None => return Err(invalid("Policy missing conditions.")),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(parse_condition)
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(invalid("'conditions' must be a list")),
        };
        let ranges = conditions
            .iter()
            .filter(|c| matches!(c, Condition::LengthRange { .. }))
            .count();
        if ranges > 1 {
            return Err(invalid(
                "more than one 'content-length-range' condition is not accepted",
            ));
        }
        Ok(Self {
            expiration,
            conditions,
        })
    }

    /// Checks the form against the policy at `now`: not expired, every condition on a
    /// field holds (`bucket` is the bucket the form was posted to; a field the form lacks
    /// has the empty value), and every field of `fields` (lowercase names, after
    /// `${filename}` is expanded) is named by a condition unless exempt.
    pub(crate) fn check(
        &self,
        now: OffsetDateTime,
        bucket: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), PolicyError> {
        if now >= self.expiration {
            return Err(PolicyError::Expired);
        }
        for condition in &self.conditions {
            let Some(field) = condition.field() else {
                continue;
            };
            let actual = if field == "bucket" {
                bucket
            } else {
                fields.get(field).map_or("", String::as_str)
            };
            let holds = match condition {
                Condition::Eq { value, .. } => actual == value,
                Condition::StartsWith { prefix, .. } => actual.starts_with(prefix.as_str()),
                Condition::LengthRange { .. } => true,
            };
            if !holds {
                return Err(PolicyError::ConditionFailed(condition.describe()));
            }
        }
        if let Some(extra) = fields.keys().find(|name| {
            !is_exempt(name) && !self.conditions.iter().any(|c| c.field() == Some(name))
        }) {
            return Err(PolicyError::ExtraField(extra.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(json: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse(
            "2026-11-27T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }

    const GOOD: &str = r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [
        {"bucket": "photos"}, ["starts-with", "$key", "user/"], {"acl": "private"},
        ["StArTs-WiTh", "$CoNtEnT-TyPe", "image/"], ["content-length-range", 1, 1024],
        ["eq", "$x-amz-meta-tag", ""]]}"#;

    fn good_fields() -> BTreeMap<String, String> {
        fields(&[
            ("key", "user/cat.jpg"),
            ("acl", "private"),
            ("content-type", "image/jpeg"),
            ("policy", "ignored"),
            ("awsaccesskeyid", "AK"),
            ("signature", "sig"),
            ("x-ignore-anything", "1"),
            ("x-amz-checksum-sha256", "abc"),
        ])
    }

    #[test]
    fn a_matching_form_passes() {
        let policy = PostPolicy::from_base64(&encode(GOOD)).unwrap();
        assert!(
            policy
                .conditions
                .contains(&Condition::LengthRange { min: 1, max: 1024 })
        );
        assert_eq!(policy.check(now(), "photos", &good_fields()), Ok(()));
    }

    #[test]
    fn expiry_conditions_and_extra_fields_are_refused_as_s3_refuses_them() {
        let policy = PostPolicy::from_base64(&encode(GOOD)).unwrap();
        let later = now() + time::Duration::hours(1);
        assert_eq!(
            policy.check(later, "photos", &good_fields()),
            Err(PolicyError::Expired)
        );
        assert_eq!(
            policy.check(now(), "other", &good_fields()),
            Err(PolicyError::ConditionFailed(
                "[\"eq\", \"$bucket\", \"photos\"]".into()
            ))
        );
        let mut f = good_fields();
        f.insert("key".into(), "admin/cat.jpg".into());
        assert!(matches!(
            policy.check(now(), "photos", &f),
            Err(PolicyError::ConditionFailed(_))
        ));
        // A field the form lacks has the empty value.
        let mut f = good_fields();
        f.remove("content-type");
        assert!(matches!(
            policy.check(now(), "photos", &f),
            Err(PolicyError::ConditionFailed(_))
        ));
        let mut f = good_fields();
        f.insert("x-amz-meta-tag".into(), "x".into());
        assert!(matches!(
            policy.check(now(), "photos", &f),
            Err(PolicyError::ConditionFailed(_))
        ));
        let mut f = good_fields();
        f.insert("x-amz-meta-other".into(), "x".into());
        assert_eq!(
            policy.check(now(), "photos", &f),
            Err(PolicyError::ExtraField("x-amz-meta-other".into()))
        );
        assert_eq!(PolicyError::Expired.to_s3().code().as_str(), "AccessDenied");
        assert_eq!(
            PolicyError::Expired.to_string(),
            "Invalid according to Policy: Policy expired."
        );
        assert_eq!(
            invalid("x").to_s3().code().as_str(),
            "InvalidPolicyDocument"
        );
    }

    #[test]
    fn hostile_documents_get_clear_errors_and_no_panic() {
        let huge = "A".repeat(MAX_POLICY_BASE64 + 4);
        let cases: Vec<(String, &str)> = vec![
            (huge, "characters long"),
            ("not base64!".into(), "base64"),
            (encode("\u{0}\u{1}garbage"), "Invalid JSON"),
            (
                encode("{\"expiration\": \"2026-11-27T13:00:00Z\""),
                "Invalid JSON",
            ),
            (encode("[1, 2]"), "JSON object"),
            (encode(r#"{"conditions": []}"#), "missing expiration"),
            (
                encode(r#"{"expiration": "2026-11-27T13:00:00Z"}"#),
                "missing conditions",
            ),
            (
                encode(r#"{"EXPIRATION": "2026-11-27T13:00:00Z", "conditions": []}"#),
                "Unexpected field",
            ),
            (
                encode(r#"{"expiration": 5, "conditions": []}"#),
                "expiration",
            ),
            (
                encode(r#"{"expiration": "2026-11-27 13:00:00.5+00:00", "conditions": []}"#),
                "expiration",
            ),
            (
                encode(r#"{"expiration": "2026-13-45T99:00:00Z", "conditions": []}"#),
                "expiration",
            ),
            (
                encode(r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": {}}"#),
                "must be a list",
            ),
            (
                encode(r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [{}]}"#),
                "exactly one property",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [{"a": "1", "b": "2"}]}"#,
                ),
                "exactly one property",
            ),
            (
                encode(r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [{"a": 1}]}"#),
                "must be a string",
            ),
            (
                encode(r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [[]]}"#),
                "operator",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [[7, "$key", "a"]]}"#,
                ),
                "operator",
            ),
            (
                encode(r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["eq", "$key"]]}"#),
                "exactly 3",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["eq", "key", "a"]]}"#,
                ),
                "must start with '$'",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["eq", "$", "a"]]}"#,
                ),
                "empty field",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["eq", "$key", 5]]}"#,
                ),
                "must be a string",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["matches", "$key", "a"]]}"#,
                ),
                "unknown operator",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["content-length-range", -1, 0]]}"#,
                ),
                "non-negative",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["content-length-range", 0]]}"#,
                ),
                "exactly 3",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["content-length-range", 1e300, 2]]}"#,
                ),
                "non-negative",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["content-length-range", 9, 2]]}"#,
                ),
                "above maximum",
            ),
            (
                encode(
                    r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": [["content-length-range", 0, 2], ["content-length-range", 0, 3]]}"#,
                ),
                "more than one",
            ),
            (
                encode(r#"{"expiration": "2026-11-27T13:00:00Z", "conditions": ["eq"]}"#),
                "object or an array",
            ),
        ];
        for (policy, expected) in cases {
            match PostPolicy::from_base64(&policy) {
                Err(PolicyError::Invalid(message)) => assert!(
                    message.contains(expected),
                    "{message:?} should mention {expected:?}"
                ),
                other => panic!("{expected}: {other:?}"),
            }
        }
        // Deeply nested JSON is refused by the parser's recursion limit, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(PostPolicy::from_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn only_the_documented_fields_are_exempt() {
        for name in [
            "policy",
            "file",
            "signature",
            "awsaccesskeyid",
            "x-amz-signature",
            "x-ignore-x",
            "x-amz-checksum-crc32",
        ] {
            assert!(is_exempt(name), "{name}");
        }
        for name in [
            "key",
            "acl",
            "bucket",
            "submit",
            "x-amz-credential",
            "x-amz-server-side-encryption",
            "success_action_status",
            "tagging",
        ] {
            assert!(!is_exempt(name), "{name}");
        }
    }
}
