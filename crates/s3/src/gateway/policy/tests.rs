//! Unit tests of bucket policies: parsing, validation, and how statements and their
//! conditions (string operators, set operators, `Null`, object tag keys) decide a request.

use xnode_types::SecretKey;

use super::*;

fn request<'a>(who: Option<&'a PublicKeyBytes>, action: &'a str, resource: &str) -> Request<'a> {
    Request {
        requester: who,
        logging_service: false,
        action,
        resource: resource.to_owned(),
        context: BTreeMap::new(),
    }
}

#[test]
fn allow_deny_principals_and_wildcards() {
    let alt = SecretKey::generate().public();
    let other = SecretKey::generate().public();
    let text = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:Get*",
             "Resource": "arn:aws:s3:::b/public/*"},
            {"Effect": "Allow", "Principal": {"AWS": [format!("arn:aws:iam::{}:root", alt.to_hex())]},
             "Action": ["s3:PutObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::b/public/secret"}
        ]
    })
    .to_string();
    let p = Policy::parse(&text, "b").unwrap();
    assert!(p.is_public());
    assert_eq!(
        p.evaluate(&request(None, "s3:GetObject", "arn:aws:s3:::b/public/x")),
        Verdict::Allow
    );
    assert_eq!(
        p.evaluate(&request(None, "s3:GetObject", "arn:aws:s3:::b/private/x")),
        Verdict::Silent
    );
    assert_eq!(
        p.evaluate(&request(
            None,
            "s3:GetObject",
            "arn:aws:s3:::b/public/secret"
        )),
        Verdict::Deny
    );
    assert_eq!(
        p.evaluate(&request(Some(&alt), "s3:PutObject", "arn:aws:s3:::b/k")),
        Verdict::Allow
    );
    assert_eq!(
        p.evaluate(&request(Some(&other), "s3:PutObject", "arn:aws:s3:::b/k")),
        Verdict::Silent
    );
    assert_eq!(
        p.evaluate(&request(Some(&alt), "s3:ListBucket", "arn:aws:s3:::b")),
        Verdict::Allow
    );
}

#[test]
fn conditions_grant_only_when_they_hold() {
    let text = serde_json::json!({
        "Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::b",
            "Condition": {"StringEquals": {"s3:prefix": "pub/"}}}
    })
    .to_string();
    let p = Policy::parse(&text, "b").unwrap();
    assert!(!p.is_public());
    let mut r = request(None, "s3:ListBucket", "arn:aws:s3:::b");
    assert_eq!(p.evaluate(&r), Verdict::Silent);
    r.context.insert("s3:prefix".into(), vec!["pub/".into()]);
    assert_eq!(p.evaluate(&r), Verdict::Allow);
    r.context.insert("s3:prefix".into(), vec!["secret/".into()]);
    assert_eq!(p.evaluate(&r), Verdict::Silent);
    // An unknown condition never grants, and always denies.
    let text = serde_json::json!({
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/32"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        ]
    })
    .to_string();
    let p = Policy::parse(&text, "b").unwrap();
    assert_eq!(
        p.evaluate(&request(None, "s3:GetObject", "arn:aws:s3:::b/k")),
        Verdict::Silent
    );
    assert_eq!(
        p.evaluate(&request(None, "s3:DeleteObject", "arn:aws:s3:::b/k")),
        Verdict::Deny
    );
}

/// A policy with one statement of `effect` on `s3:*` over `b/*` with `condition`.
fn one_statement(effect: &str, condition: serde_json::Value) -> Policy {
    let text = serde_json::json!({
        "Statement": {"Effect": effect, "Principal": "*", "Action": "s3:*",
            "Resource": "arn:aws:s3:::b/*", "Condition": condition}
    })
    .to_string();
    Policy::parse(&text, "b").unwrap()
}

fn with(context: &[(&str, &[&str])]) -> Request<'static> {
    let mut r = request(None, "s3:GetObject", "arn:aws:s3:::b/k");
    for (k, values) in context {
        r.context.insert(
            (*k).to_owned(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        );
    }
    r
}

#[test]
fn object_tag_conditions_match_like_iam() {
    let p = one_statement(
        "Allow",
        serde_json::json!({"StringEquals": {"s3:ExistingObjectTag/security": "public"}}),
    );
    assert!(p.uses_existing_object_tags());
    let tagged = |v: &'static [&'static str]| with(&[("s3:existingobjecttag/security", v)]);
    assert_eq!(p.evaluate(&tagged(&["public"])), Verdict::Allow);
    assert_eq!(p.evaluate(&tagged(&["private"])), Verdict::Silent);
    // A missing tag does not match, and tag keys are case-sensitive.
    assert_eq!(p.evaluate(&with(&[])), Verdict::Silent);
    let other_case = with(&[("s3:existingobjecttag/Security", &["public"])]);
    assert_eq!(p.evaluate(&other_case), Verdict::Silent);
    // The condition key's prefix is not case-sensitive.
    let p = one_statement(
        "Allow",
        serde_json::json!({"StringLike": {"S3:REQUESTOBJECTTAG/team": "eng-*"}}),
    );
    assert!(!p.uses_existing_object_tags());
    let r = with(&[("s3:requestobjecttag/team", &["eng-storage"])]);
    assert_eq!(p.evaluate(&r), Verdict::Allow);
    // A negated operator matches a missing tag; `...IfExists` matches one too.
    let p = one_statement(
        "Deny",
        serde_json::json!({"StringNotEquals": {"s3:ExistingObjectTag/security": "public"}}),
    );
    assert_eq!(p.evaluate(&with(&[])), Verdict::Deny);
    let p = one_statement(
        "Allow",
        serde_json::json!({"StringEqualsIfExists": {"s3:RequestObjectTag/security": "public"}}),
    );
    assert_eq!(p.evaluate(&with(&[])), Verdict::Allow);
    let r = with(&[("s3:requestobjecttag/security", &["secret"])]);
    assert_eq!(p.evaluate(&r), Verdict::Silent);
}

#[test]
fn tag_key_sets_and_null_follow_iam() {
    let keys = |v: &'static [&'static str]| with(&[("s3:requestobjecttagkeys", v)]);
    let all = one_statement(
        "Allow",
        serde_json::json!({"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}}),
    );
    assert_eq!(all.evaluate(&keys(&["a"])), Verdict::Allow);
    assert_eq!(all.evaluate(&keys(&["a", "c"])), Verdict::Silent);
    // `ForAllValues:` holds for a request that sets no tags at all, but not for one
    // whose tags the check cannot see (a PutObjectTagging body): that fails closed.
    assert_eq!(all.evaluate(&with(&[])), Verdict::Allow);
    assert_eq!(
        all.evaluate(&with(&[(REQUEST_TAGS_UNSEEN, &[])])),
        Verdict::Silent
    );
    let any = one_statement(
        "Allow",
        serde_json::json!({"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": "a"}}),
    );
    assert_eq!(any.evaluate(&keys(&["c", "a"])), Verdict::Allow);
    assert_eq!(any.evaluate(&keys(&["c"])), Verdict::Silent);
    assert_eq!(any.evaluate(&with(&[])), Verdict::Silent);
    let none_of = one_statement(
        "Deny",
        serde_json::json!({"ForAnyValue:StringNotLike": {"s3:RequestObjectTagKeys": "team*"}}),
    );
    assert_eq!(none_of.evaluate(&keys(&["team-a", "x"])), Verdict::Deny);
    assert_eq!(none_of.evaluate(&keys(&["team-a"])), Verdict::Silent);
    // `Null`: `true` asks that the key be absent, `false` that it be present; a JSON
    // boolean is accepted as IAM accepts it.
    let unencrypted = one_statement(
        "Deny",
        serde_json::json!({"Null": {"s3:x-amz-server-side-encryption": true}}),
    );
    assert_eq!(unencrypted.evaluate(&with(&[])), Verdict::Deny);
    let sse = with(&[("s3:x-amz-server-side-encryption", &["AES256"])]);
    assert_eq!(unencrypted.evaluate(&sse), Verdict::Silent);
    let encrypted = one_statement(
        "Allow",
        serde_json::json!({"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}}),
    );
    let ssec = with(&[(
        "s3:x-amz-server-side-encryption-customer-algorithm",
        &["AES256"],
    )]);
    assert_eq!(encrypted.evaluate(&ssec), Verdict::Allow);
    assert_eq!(encrypted.evaluate(&with(&[])), Verdict::Silent);
    // A `Null` value other than true or false cannot be evaluated, so it never grants.
    let odd = one_statement("Allow", serde_json::json!({"Null": {"s3:prefix": "maybe"}}));
    assert_eq!(odd.evaluate(&with(&[])), Verdict::Silent);
}

#[test]
fn hostile_tag_condition_keys_do_not_panic() {
    let huge = format!("s3:ExistingObjectTag/{}", "k".repeat(19 * 1024));
    let multibyte = format!("s3:ExistingObjectTag/{}", "ключ🔑".repeat(100));
    for key in [
        huge.as_str(),
        multibyte.as_str(),
        "s3:ExistingObjectTag/",
        "s3:ExistingObjectTag",
        "s3:RequestObjectTag/",
        "ключ/🔑",
        "",
    ] {
        let allow = one_statement("Allow", serde_json::json!({"StringEquals": {key: ""}}));
        let deny = one_statement("Deny", serde_json::json!({"StringLike": {key: "*"}}));
        // No request carries such a tag, so the Allow never grants and the Deny holds
        // only if the key is one the gateway does not know (which fails closed).
        let r = with(&[("s3:existingobjecttag/", &[""])]);
        assert_eq!(allow.evaluate(&with(&[])), Verdict::Silent, "{key}");
        let _ = allow.evaluate(&r);
        let _ = deny.evaluate(&r);
    }
    // An empty tag key names no tag the gateway ever stores, and unknown keys deny.
    let deny = one_statement(
        "Deny",
        serde_json::json!({"StringLike": {"s3:ExistingObjectTag": "*"}}),
    );
    assert_eq!(deny.evaluate(&with(&[])), Verdict::Deny);
    // A policy over the size limit is refused before any key is looked at.
    let too_big = format!("{{\"Statement\": \"{}\"}}", "x".repeat(MAX_POLICY_BYTES));
    assert!(Policy::parse(&too_big, "b").is_err());
}

#[test]
fn malformed_policies_are_refused() {
    for bad in [
        "not json".to_owned(),
        "[]".to_owned(),
        serde_json::json!({"Statement": []}).to_string(),
        serde_json::json!({"Statement": {"Effect": "Maybe", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b"}}).to_string(),
        serde_json::json!({"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "*"}, "Action": "s3:*", "Resource": "arn:aws:s3:::b"}}).to_string(),
        serde_json::json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::other/*"}}).to_string(),
        serde_json::json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ec2:*", "Resource": "arn:aws:s3:::b"}}).to_string(),
        serde_json::json!({"Version": "1999", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b"}}).to_string(),
    ] {
        let e = Policy::parse(&bad, "b").unwrap_err();
        assert_eq!(e.code().as_str(), "MalformedPolicy", "{bad}");
    }
}

#[test]
fn glob_matches_like_iam() {
    assert!(glob("a*c", "abbbc"));
    assert!(glob("a?c", "abc"));
    assert!(!glob("a?c", "abbc"));
    assert!(glob("*", ""));
    assert!(!glob("abc", "abcd"));
}

fn logging_policy(principal: serde_json::Value, resource: &str, account: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["s3:PutObject"],
            "Resource": resource,
            "Condition": {
                "ArnLike": {"aws:SourceArn": "arn:aws:s3:::src"},
                "StringEquals": {"aws:SourceAccount": account}
            }
        }]
    })
    .to_string()
}

#[test]
fn only_the_logging_service_principal_is_accepted_and_it_grants_only_log_delivery() {
    let owner = SecretKey::generate().public().to_hex();
    let service = serde_json::json!({"Service": LOGGING_SERVICE});
    let text = logging_policy(service.clone(), "arn:aws:s3:::logs/log/", &owner);
    let policy = Policy::parse(&text, "logs").unwrap();
    assert!(policy.allows_log_delivery("logs", "log/", "src", &owner));
    // Another prefix, source bucket or source account is not covered.
    assert!(!policy.allows_log_delivery("logs", "other/", "src", &owner));
    assert!(!policy.allows_log_delivery("logs", "log/", "elsewhere", &owner));
    let stranger = SecretKey::generate().public().to_hex();
    assert!(!policy.allows_log_delivery("logs", "log/", "src", &stranger));
    // The service principal grants a tenant's or anyone's own request nothing.
    assert_eq!(
        policy.evaluate(&request(None, "s3:PutObject", "arn:aws:s3:::logs/log/")),
        Verdict::Silent
    );
    // `*` does not grant log delivery; a wildcard resource over the prefix does.
    let anyone = logging_policy(
        serde_json::json!({"AWS": "*"}),
        "arn:aws:s3:::logs/log/",
        &owner,
    );
    let anyone = Policy::parse(&anyone, "logs").unwrap();
    assert!(!anyone.allows_log_delivery("logs", "log/", "src", &owner));
    let wildcard = serde_json::json!({
        "Statement": [{
            "Effect": "Allow",
            "Principal": service,
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::logs/log/*",
            "Condition": {
                "ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"},
                "StringLike": {"aws:SourceAccount": "*"}
            }
        }]
    });
    let wildcard = Policy::parse(&wildcard.to_string(), "logs").unwrap();
    assert!(wildcard.allows_log_delivery("logs", "log/", "src", &stranger));
    // Other service principals are still refused.
    let other = logging_policy(
        serde_json::json!({"Service": "lambda.amazonaws.com"}),
        "arn:aws:s3:::logs/log/",
        &owner,
    );
    assert_eq!(
        Policy::parse(&other, "logs")
            .err()
            .map(|e| e.code().as_str().to_owned()),
        Some("MalformedPolicy".to_owned())
    );
}
