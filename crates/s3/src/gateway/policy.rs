//! Bucket policies (`PutBucketPolicy`, `GetBucketPolicy`, `DeleteBucketPolicy`,
//! `GetBucketPolicyStatus`) and public access blocks (`Put/Get/DeletePublicAccessBlock`).
//!
//! A policy is stored as its owner sent it (S3 returns the document byte for byte), in a
//! bucket setting signed by the owner (see `settings`), and parsed again wherever it is
//! evaluated. What is understood: `Effect` Allow or Deny; `Principal` `*`, `{"AWS": "*"}`
//! or tenant ids (bare, or as `arn:aws:iam::<id>:root`; any other principal matches no
//! one), and the one service principal `{"Service": "logging.s3.amazonaws.com"}`, which
//! stands for server access log delivery (`gateway::logging`; other services are refused,
//! and an Allow must name the logging service: `*` grants it nothing); `Action` and
//! `Resource` with `*` and `?` wildcards; and conditions with the
//! string operators (`StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`,
//! `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`, each optionally
//! `...IfExists` and `ForAnyValue:`/`ForAllValues:`), the ARN operators (`ArnEquals`,
//! `ArnLike` and their negations, matched as `StringLike`) and `Null`, on the keys
//! `s3:prefix`, `s3:delimiter`, `s3:max-keys`, `aws:Referer`, `aws:UserAgent`,
//! `aws:SourceArn` and `aws:SourceAccount` (set only for log delivery), the request headers
//! `s3:x-amz-acl`, `s3:x-amz-grant-*`, `s3:x-amz-server-side-encryption`,
//! `s3:x-amz-server-side-encryption-customer-algorithm`,
//! `s3:x-amz-server-side-encryption-aws-kms-key-id`, `s3:x-amz-copy-source` and
//! `s3:x-amz-metadata-directive`, and the object tag keys `s3:ExistingObjectTag/<key>`
//! (the tags stored on the object the request acts on), `s3:RequestObjectTag/<key>` and
//! `s3:RequestObjectTagKeys` (the tags of the request's `x-amz-tagging` header). A
//! condition the gateway cannot evaluate (another operator or key) never grants: an Allow
//! statement with one matches no request, a Deny statement with one matches every request
//! it otherwise covers. Anything else malformed (`NotPrincipal`, `NotAction`,
//! `NotResource`, a resource that cannot name this bucket, an unknown effect) is refused
//! with `MalformedPolicy` when the policy is put.

use std::collections::BTreeMap;

use s3s::dto;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde_json::Value;
use xnode_types::PublicKeyBytes;

use super::Gateway;
use super::acl::{PublicAccessBlock, bucket_acl, public_access_block};
use super::settings::{POLICY_KIND, PUBLIC_ACCESS_BLOCK_KIND, bucket_setting};

/// The largest policy document accepted (AWS's limit is 20 KiB).
const MAX_POLICY_BYTES: usize = 20 * 1024;

fn malformed(why: impl std::fmt::Display) -> s3s::S3Error {
    s3_error!(MalformedPolicy, "{why}")
}

/// What a policy says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// An Allow statement covers it and no Deny does.
    Allow,
    /// A Deny statement covers it.
    Deny,
    /// No statement covers it.
    Silent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal {
    Anyone,
    Tenant(PublicKeyBytes),
    /// `{"Service": "logging.s3.amazonaws.com"}`: the delivery of server access logs.
    LoggingService,
    /// A principal that names no Xnode tenant (an IAM user, another account).
    Nobody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Condition {
    operator: String,
    /// The key as the request context names it (see [`canonical_key`]); `None` if the
    /// gateway does not know it.
    key: Option<String>,
    values: Vec<String>,
}

/// The values of the condition keys of one request, by canonical key (see
/// [`canonical_key`]). Most keys have one value; `s3:RequestObjectTagKeys` has one per tag.
pub(crate) type Context = BTreeMap<String, Vec<String>>;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Statement {
    allow: bool,
    principals: Vec<Principal>,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// A parsed bucket policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    statements: Vec<Statement>,
}

/// What a request is, for a policy: who asks, the action (`s3:GetObject`), the resource
/// (`arn:aws:s3:::bucket/key`) and the values condition keys take.
pub(crate) struct Request<'a> {
    pub(crate) requester: Option<&'a PublicKeyBytes>,
    /// The request is the delivery of server access logs (`requester` is then `None`).
    pub(crate) logging_service: bool,
    pub(crate) action: &'a str,
    pub(crate) resource: String,
    pub(crate) context: Context,
}

/// Condition values: strings, or booleans and numbers written as JSON literals (IAM
/// accepts `"Null": {"key": true}`).
fn condition_values(value: &Value) -> S3Result<Vec<String>> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(malformed(
            "condition values must be strings, booleans or numbers",
        )),
    };
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => Err(malformed("a condition needs at least one value")),
        other => Ok(vec![one(other)?]),
    }
}

/// One string or a list of strings.
fn strings(value: &Value, what: &str) -> S3Result<Vec<String>> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(format!("{what} must be strings")))
            })
            .collect(),
        _ => Err(malformed(format!(
            "{what} must be a string or a list of strings"
        ))),
    }
}

fn principal(text: &str) -> Principal {
    if text == "*" {
        return Principal::Anyone;
    }
    let id = text
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.strip_suffix(":root"))
        .unwrap_or(text);
    PublicKeyBytes::from_hex(id)
        .map(Principal::Tenant)
        .unwrap_or(Principal::Nobody)
}

/// `*` matches any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The single-valued condition keys the gateway can evaluate (lower case: IAM compares
/// condition key names without regard to case).
const KNOWN_KEYS: &[&str] = &[
    "s3:prefix",
    "s3:delimiter",
    "s3:max-keys",
    "aws:referer",
    "aws:useragent",
    "s3:x-amz-acl",
    "s3:x-amz-grant-read",
    "s3:x-amz-grant-write",
    "s3:x-amz-grant-read-acp",
    "s3:x-amz-grant-write-acp",
    "s3:x-amz-grant-full-control",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-customer-algorithm",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:x-amz-copy-source",
    "s3:x-amz-metadata-directive",
    "aws:sourcearn",
    "aws:sourceaccount",
    REQUEST_TAG_KEYS,
];

/// The service principal that stands for server access log delivery.
pub(crate) const LOGGING_SERVICE: &str = "logging.s3.amazonaws.com";

/// The prefix of the keys naming a tag stored on the object a request acts on.
pub(crate) const EXISTING_TAG_PREFIX: &str = "s3:existingobjecttag/";
/// The prefix of the keys naming a tag the request sets (`x-amz-tagging`).
pub(crate) const REQUEST_TAG_PREFIX: &str = "s3:requestobjecttag/";
/// The keys of the tags the request sets, one value per tag.
pub(crate) const REQUEST_TAG_KEYS: &str = "s3:requestobjecttagkeys";
/// Present in a context whose request sets tags the access check cannot see (the body
/// of PutObjectTagging, read only after the check): conditions on the request's tags
/// then cannot be evaluated, and fail closed rather than see "no tags".
pub(crate) const REQUEST_TAGS_UNSEEN: &str = ":request-tags-unseen";

/// The name a condition key has in a request's [`Context`], or `None` if the gateway
/// cannot evaluate it. The `s3:...` part is compared without regard to case, as IAM
/// does; the tag key after `ExistingObjectTag/` or `RequestObjectTag/` keeps its case,
/// because tag keys are case-sensitive.
fn canonical_key(key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    if KNOWN_KEYS.contains(&lower.as_str()) {
        return Some(lower);
    }
    [EXISTING_TAG_PREFIX, REQUEST_TAG_PREFIX]
        .into_iter()
        .find(|prefix| lower.starts_with(prefix))
        .and_then(|prefix| Some(format!("{prefix}{}", key.get(prefix.len()..)?)))
}

/// How a condition treats a key with several values (IAM's set operators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetQualifier {
    /// No qualifier: a positive operator matches if any value matches, a negated one if
    /// none does (the same as for a single value).
    Plain,
    /// `ForAnyValue:`: some value of the request satisfies the operator.
    AnyValue,
    /// `ForAllValues:`: every value of the request satisfies the operator (and a key the
    /// request lacks satisfies it).
    AllValues,
}

impl Condition {
    /// `None` if the gateway cannot evaluate this condition.
    fn holds(&self, context: &Context) -> Option<bool> {
        let key = self.key.as_deref()?;
        if context.contains_key(REQUEST_TAGS_UNSEEN)
            && (key == REQUEST_TAG_KEYS || key.starts_with(REQUEST_TAG_PREFIX))
        {
            return None;
        }
        let (qualifier, operator) = if let Some(op) = self.operator.strip_prefix("ForAnyValue:") {
            (SetQualifier::AnyValue, op)
        } else if let Some(op) = self.operator.strip_prefix("ForAllValues:") {
            (SetQualifier::AllValues, op)
        } else {
            (SetQualifier::Plain, self.operator.as_str())
        };
        let present = context.get(key).filter(|values| !values.is_empty());
        if operator == "Null" {
            // `true` asks that the key be absent, `false` that it be present.
            let mut holds = false;
            for v in &self.values {
                holds |= match v.as_str() {
                    "true" => present.is_none(),
                    "false" => present.is_some(),
                    _ => return None,
                };
            }
            return Some(holds);
        }
        let (operator, if_exists) = match operator.strip_suffix("IfExists") {
            Some(op) => (op, true),
            None => (operator, false),
        };
        let (positive, negated) = match operator {
            "StringNotEquals" => ("StringEquals", true),
            "StringNotEqualsIgnoreCase" => ("StringEqualsIgnoreCase", true),
            "StringNotLike" | "ArnNotLike" | "ArnNotEquals" => ("StringLike", true),
            // IAM matches ARNs with wildcards under both ARN operators.
            "ArnLike" | "ArnEquals" => ("StringLike", false),
            "StringEquals" | "StringEqualsIgnoreCase" | "StringLike" => (operator, false),
            _ => return None,
        };
        let matches = |value: &str| {
            self.values.iter().any(|v| match positive {
                "StringEquals" => v == value,
                "StringEqualsIgnoreCase" => v.to_lowercase() == value.to_lowercase(),
                _ => glob(v, value),
            })
        };
        let Some(values) = present else {
            // A key absent from the request: the positive operators do not match, the
            // negated ones do, `...IfExists` matches, `ForAnyValue:` does not and
            // `ForAllValues:` does (as IAM evaluates them).
            return Some(match qualifier {
                SetQualifier::Plain => if_exists || negated,
                SetQualifier::AnyValue => if_exists,
                SetQualifier::AllValues => true,
            });
        };
        // Whether one value of the request satisfies the (possibly negated) operator.
        let satisfies = |value: &String| matches(value) != negated;
        Some(match qualifier {
            SetQualifier::Plain if negated => values.iter().all(satisfies),
            SetQualifier::Plain | SetQualifier::AnyValue => values.iter().any(satisfies),
            SetQualifier::AllValues => values.iter().all(satisfies),
        })
    }
}

impl Statement {
    fn covers(&self, request: &Request<'_>) -> bool {
        let principal = self.principals.iter().any(|p| match p {
            // Log delivery is granted only by a statement that names the logging service;
            // `*` still denies it.
            Principal::Anyone => !request.logging_service || !self.allow,
            Principal::Tenant(t) => !request.logging_service && request.requester == Some(t),
            Principal::LoggingService => request.logging_service,
            Principal::Nobody => false,
        });
        principal
            && self.actions.iter().any(|a| {
                glob(
                    &a.to_ascii_lowercase(),
                    &request.action.to_ascii_lowercase(),
                )
            })
            && self.resources.iter().any(|r| glob(r, &request.resource))
    }

    /// Whether the statement's conditions hold; one the gateway cannot evaluate counts
    /// against granting (false for Allow, true for Deny).
    fn conditions_hold(&self, context: &Context) -> bool {
        self.conditions
            .iter()
            .all(|c| c.holds(context).unwrap_or(!self.allow))
    }

    /// Public in S3's sense: allows anyone, unconditionally.
    fn is_public(&self) -> bool {
        self.allow && self.conditions.is_empty() && self.principals.contains(&Principal::Anyone)
    }
}

impl Policy {
    /// Parses and checks a policy document for bucket `bucket`.
    pub(crate) fn parse(text: &str, bucket: &str) -> S3Result<Self> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(malformed(format!(
                "policies are limited to {MAX_POLICY_BYTES} bytes"
            )));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return Err(malformed("a policy must be a JSON object"));
        };
        for key in doc.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(malformed(format!("unknown field {key:?}")));
            }
        }
        if let Some(version) = doc.get("Version")
            && !matches!(version.as_str(), Some("2012-10-17" | "2008-10-17"))
        {
            return Err(malformed("Version must be 2012-10-17 or 2008-10-17"));
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(malformed("a policy needs a Statement")),
        };
        let statements = statements
            .into_iter()
            .map(|s| parse_statement(s, bucket))
            .collect::<S3Result<Vec<_>>>()?;
        Ok(Policy { statements })
    }

    /// What this policy says about `request`: any Deny wins over any Allow.
    pub(crate) fn evaluate(&self, request: &Request<'_>) -> Verdict {
        let mut verdict = Verdict::Silent;
        for s in &self.statements {
            if !s.covers(request) || !s.conditions_hold(&request.context) {
                continue;
            }
            if !s.allow {
                return Verdict::Deny;
            }
            verdict = Verdict::Allow;
        }
        verdict
    }

    /// Whether this policy (a target bucket's) lets the logging service deliver the
    /// server access logs of `source_bucket`, owned by tenant `source_account`, under
    /// `prefix` of `target_bucket`: a statement naming the logging service allows
    /// `s3:PutObject` on `arn:aws:s3:::<target>/<prefix>` with `aws:SourceArn` and
    /// `aws:SourceAccount` set to the source's, and none denies it.
    pub(crate) fn allows_log_delivery(
        &self,
        target_bucket: &str,
        prefix: &str,
        source_bucket: &str,
        source_account: &str,
    ) -> bool {
        let mut context = Context::new();
        context.insert(
            "aws:sourcearn".to_owned(),
            vec![format!("arn:aws:s3:::{source_bucket}")],
        );
        context.insert(
            "aws:sourceaccount".to_owned(),
            vec![source_account.to_owned()],
        );
        self.evaluate(&Request {
            requester: None,
            logging_service: true,
            action: "s3:PutObject",
            resource: format!("arn:aws:s3:::{target_bucket}/{prefix}"),
            context,
        }) == Verdict::Allow
    }

    pub(crate) fn is_public(&self) -> bool {
        self.statements.iter().any(Statement::is_public)
    }

    /// Whether any condition tests the tags stored on the object (so a request's context
    /// needs them, which costs a metadata read).
    pub(crate) fn uses_existing_object_tags(&self) -> bool {
        self.statements.iter().any(|s| {
            s.conditions.iter().any(|c| {
                c.key
                    .as_deref()
                    .is_some_and(|k| k.starts_with(EXISTING_TAG_PREFIX))
            })
        })
    }
}

fn parse_statement(value: &Value, bucket: &str) -> S3Result<Statement> {
    let bucket_arn = &format!("arn:aws:s3:::{bucket}");
    let Value::Object(s) = value else {
        return Err(malformed("a Statement must be an object"));
    };
    for key in s.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition" => {}
            "NotPrincipal" | "NotAction" | "NotResource" => {
                return Err(malformed(format!("{key} is not supported")));
            }
            other => return Err(malformed(format!("unknown field {other:?} in a Statement"))),
        }
    }
    let allow = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err(malformed("Effect must be Allow or Deny")),
    };
    let principals = match s.get("Principal") {
        Some(Value::String(star)) if star == "*" => vec![Principal::Anyone],
        Some(Value::Object(map)) if !map.is_empty() => {
            let mut out = Vec::new();
            for (kind, names) in map {
                if kind == "Service" {
                    for name in strings(names, "principals")? {
                        if name != LOGGING_SERVICE {
                            return Err(malformed(format!(
                                "service principal {name:?} is not supported (only {LOGGING_SERVICE:?}, for server access logs)"
                            )));
                        }
                        out.push(Principal::LoggingService);
                    }
                    continue;
                }
                if kind != "AWS" && kind != "CanonicalUser" {
                    return Err(malformed(format!(
                        "principal type {kind:?} is not supported"
                    )));
                }
                out.extend(strings(names, "principals")?.iter().map(|p| principal(p)));
            }
            out
        }
        _ => return Err(malformed("a Statement needs a Principal")),
    };
    let actions = strings(
        s.get("Action")
            .ok_or_else(|| malformed("a Statement needs an Action"))?,
        "actions",
    )?;
    for a in &actions {
        if a != "*" && !a.to_ascii_lowercase().starts_with("s3:") {
            return Err(malformed(format!("action {a:?} is not an S3 action")));
        }
    }
    let resources = strings(
        s.get("Resource")
            .ok_or_else(|| malformed("a Statement needs a Resource"))?,
        "resources",
    )?;
    // A resource must be able to name this bucket or its objects (`arn:aws:s3:::*/*`
    // does; one naming only another bucket does not, and is refused as AWS refuses it).
    for r in &resources {
        let names_this_bucket = r
            .strip_prefix("arn:aws:s3:::")
            .is_some_and(|rest| glob(rest.split('/').next().unwrap_or_default(), bucket))
            || glob(r, bucket_arn);
        if !names_this_bucket {
            return Err(malformed(format!(
                "Policy has invalid resource {r:?}: it must be in this bucket"
            )));
        }
    }
    let mut conditions = Vec::new();
    match s.get("Condition") {
        None => {}
        Some(Value::Object(ops)) => {
            for (operator, keys) in ops {
                let Value::Object(keys) = keys else {
                    return Err(malformed("a Condition operator takes an object of keys"));
                };
                for (key, values) in keys {
                    conditions.push(Condition {
                        operator: operator.clone(),
                        key: canonical_key(key),
                        values: condition_values(values)?,
                    });
                }
            }
        }
        Some(_) => return Err(malformed("Condition must be an object")),
    }
    Ok(Statement {
        allow,
        principals,
        actions,
        resources,
        conditions,
    })
}

/// The policy of bucket `name`, if one is set and still parses.
pub(crate) fn bucket_policy(registry: &xnode_registry::Registry, name: &str) -> Option<Policy> {
    let text = bucket_setting::<String>(registry, POLICY_KIND, name)?;
    Policy::parse(&text, name).ok()
}

fn setting(v: Option<bool>) -> bool {
    v.unwrap_or(false)
}

impl Gateway {
    pub(super) async fn put_bucket_policy_impl(
        &self,
        req: S3Request<dto::PutBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::PutBucketPolicyOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let policy = Policy::parse(&input.policy, &input.bucket)?;
        if policy.is_public()
            && public_access_block(self.storage.registry(), &input.bucket)
                .is_some_and(|b| b.block_public_policy)
        {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the bucket's public access block refuses public policies"
            ));
        }
        self.put_bucket_setting(&key, POLICY_KIND, &input.bucket, Some(&input.policy))
            .await?;
        Ok(S3Response::new(dto::PutBucketPolicyOutput {}))
    }

    pub(super) async fn get_bucket_policy_impl(
        &self,
        req: S3Request<dto::GetBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        let Some(policy) =
            bucket_setting::<String>(self.storage.registry(), POLICY_KIND, &req.input.bucket)
        else {
            return Err(s3_error!(
                NoSuchBucketPolicy,
                "The bucket policy does not exist"
            ));
        };
        Ok(S3Response::new(dto::GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    pub(super) async fn delete_bucket_policy_impl(
        &self,
        req: S3Request<dto::DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketPolicyOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        self.put_bucket_setting::<String>(&key, POLICY_KIND, &req.input.bucket, None)
            .await?;
        Ok(S3Response::new(dto::DeleteBucketPolicyOutput {}))
    }

    pub(super) async fn get_bucket_policy_status_impl(
        &self,
        req: S3Request<dto::GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyStatusOutput>> {
        let key = self.key_of(&req)?;
        let bucket = &req.input.bucket;
        self.require_bucket(&key.tenant, bucket)?;
        let registry = self.storage.registry();
        let public = bucket_policy(registry, bucket).is_some_and(|p| p.is_public())
            || bucket_acl(registry, bucket, &key.tenant).is_public();
        Ok(S3Response::new(dto::GetBucketPolicyStatusOutput {
            policy_status: Some(dto::PolicyStatus {
                is_public: Some(public),
            }),
        }))
    }

    pub(super) async fn put_public_access_block_impl(
        &self,
        req: S3Request<dto::PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::PutPublicAccessBlockOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let c = input.public_access_block_configuration;
        let block = PublicAccessBlock {
            block_public_acls: setting(c.block_public_acls),
            ignore_public_acls: setting(c.ignore_public_acls),
            block_public_policy: setting(c.block_public_policy),
            restrict_public_buckets: setting(c.restrict_public_buckets),
        };
        self.put_bucket_setting(&key, PUBLIC_ACCESS_BLOCK_KIND, &input.bucket, Some(&block))
            .await?;
        Ok(S3Response::new(dto::PutPublicAccessBlockOutput {}))
    }

    pub(super) async fn get_public_access_block_impl(
        &self,
        req: S3Request<dto::GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::GetPublicAccessBlockOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        let Some(b) = public_access_block(self.storage.registry(), &req.input.bucket) else {
            let mut e = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
                "The public access block configuration was not found",
            );
            e.set_status_code(hyper::StatusCode::NOT_FOUND);
            return Err(e);
        };
        Ok(S3Response::new(dto::GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(dto::PublicAccessBlockConfiguration {
                block_public_acls: Some(b.block_public_acls),
                ignore_public_acls: Some(b.ignore_public_acls),
                block_public_policy: Some(b.block_public_policy),
                restrict_public_buckets: Some(b.restrict_public_buckets),
            }),
        }))
    }

    pub(super) async fn delete_public_access_block_impl(
        &self,
        req: S3Request<dto::DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::DeletePublicAccessBlockOutput>> {
        let key = self.key_of(&req)?;
        self.require_bucket(&key.tenant, &req.input.bucket)?;
        self.put_bucket_setting::<PublicAccessBlock>(
            &key,
            PUBLIC_ACCESS_BLOCK_KIND,
            &req.input.bucket,
            None,
        )
        .await?;
        Ok(S3Response::new(dto::DeletePublicAccessBlockOutput {}))
    }
}

#[cfg(test)]
mod tests;
