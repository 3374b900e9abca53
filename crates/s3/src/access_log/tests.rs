//! Unit tests of access log records, buffers and log object names.

use super::*;

/// Splits a record as the s3-tests suite does (`[`/`]` read as quotes, then shell words).
fn fields(line: &str) -> Vec<String> {
    let line = line.replace(['[', ']'], "\"");
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(current);
    }
    out
}

fn record() -> Record {
    Record {
        owner: "ab".repeat(32),
        bucket: "photos".into(),
        time_ms: 1_549_411_238_000,
        requester: Some("cd".repeat(32)),
        request_id: "tx0001".into(),
        operation: operation_name("GetObject", &hyper::Method::GET),
        key: Some("dir/a b\"[c]".into()),
        request_uri: "GET /photos/dir/a%20b?x=\"1\" HTTP/1.1".into(),
        status: 200,
        bytes_sent: Some(42),
        object_size: Some(42),
        total_ms: 7,
        referrer: None,
        user_agent: Some("agent [1] \"quoted\"\nforged line".into()),
        version_id: None,
        sig_version: Some("SigV4"),
        auth_type: Some("AuthHeader"),
        host: Some("localhost:9000".into()),
        acl_required: true,
    }
}

#[test]
fn a_record_has_the_26_fields_of_the_s3_format_whatever_the_client_sent() {
    let line = record().line();
    assert!(!line.contains('\n'), "one line: {line}");
    let f = fields(&line);
    assert_eq!(f.len(), 26, "{f:?}");
    assert_eq!(f[0], "ab".repeat(32));
    assert_eq!(f[1], "photos");
    assert_eq!(f[2], "06/Feb/2019:00:00:38 +0000");
    assert_eq!(f[4], "cd".repeat(32));
    assert_eq!(f[5], "tx0001");
    assert_eq!(f[6], "REST.GET.OBJECT");
    assert_eq!(f[7], "dir/a%20b%22%5Bc%5D");
    assert_eq!(f[9], "200");
    assert_eq!(f[11], "42");
    assert_eq!(f[15], "-");
    assert!(f[16].starts_with("agent %5B1%5D %22quoted%22%0Aforged"));
    assert_eq!(f[19], "SigV4");
    assert_eq!(f[21], "AuthHeader");
    assert_eq!(f[22], "localhost:9000");
    assert_eq!(f[25], "Yes");
    // An unsigned request.
    let mut anonymous = record();
    anonymous.requester = None;
    anonymous.sig_version = None;
    anonymous.auth_type = None;
    anonymous.acl_required = false;
    let f = fields(&anonymous.line());
    assert_eq!(
        (f[4].as_str(), f[19].as_str(), f[21].as_str()),
        ("-", "-", "-")
    );
    assert_eq!(f[25], "-");
}

#[test]
fn authentication_is_told_from_the_header_or_the_query() {
    let mut h = hyper::HeaderMap::new();
    assert_eq!(authentication(&h, None), (None, None));
    assert_eq!(
        authentication(
            &h,
            Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab")
        ),
        (Some("SigV4"), Some("QueryString"))
    );
    assert_eq!(
        authentication(&h, Some("AWSAccessKeyId=AK&Expires=1&Signature=x")),
        (Some("SigV2"), Some("QueryString"))
    );
    h.insert(
        hyper::header::AUTHORIZATION,
        hyper::header::HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
    );
    assert_eq!(
        authentication(&h, None),
        (Some("SigV4"), Some("AuthHeader"))
    );
}

#[test]
fn a_full_buffer_drops_its_oldest_records_counts_them_and_is_due_at_once() {
    let metrics = AccessLogMetrics::default();
    let log = AccessLog::new(metrics.clone());
    for i in 0..MAX_BUCKET_RECORDS + 5 {
        log.append("b", format!("record {i}"), 1_000);
    }
    assert_eq!(metrics.dropped.get(), 5);
    // Not yet a roll period old, but full: due now.
    let due = log.take_due(1_001, Duration::from_secs(300), false);
    assert_eq!(due.len(), 1);
    let buffer = &due[0].1;
    assert_eq!(buffer.records.len(), MAX_BUCKET_RECORDS);
    assert_eq!(buffer.records.front().map(String::as_str), Some("record 5"));
    // A record too long is dropped, not kept.
    log.append("b", "x".repeat(MAX_RECORD_BYTES + 1), 1_000);
    assert_eq!(metrics.dropped.get(), 6);
    assert!(log.take_due(u64::MAX, Duration::ZERO, true).is_empty());
}

#[test]
fn buffers_are_due_once_quiet_for_a_roll_period_or_at_the_latest_after_twelve() {
    let log = AccessLog::new(AccessLogMetrics::default());
    log.append("a", "one".into(), 10_000);
    log.append("a", "two".into(), 12_000);
    log.append("b", "three".into(), 11_000);
    let roll = Duration::from_secs(3);
    // "b" has been quiet for 3 s at 14 s; "a" had a record at 12 s.
    let due = log.take_due(14_000, roll, false);
    assert_eq!(
        due.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(log.take_due(14_999, roll, false).is_empty());
    let due = log.take_due(15_000, roll, false);
    assert_eq!(
        due.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(due[0].1.records.len(), 2);
    // A bucket that is never quiet is delivered 12 rolls after its first record.
    let mut at = 100_000;
    log.append("busy", "first".into(), at);
    while at < 100_000 + 35_000 {
        at += 1_000;
        assert!(log.take_due(at, roll, false).is_empty(), "at {at}");
        log.append("busy", "more".into(), at);
    }
    assert_eq!(log.take_due(at + 1_000, roll, false).len(), 1);
    log.append("c", "four".into(), 20_000);
    assert_eq!(log.take_due(20_000, roll, true).len(), 1);
}

#[test]
fn log_object_names_follow_the_s3_key_formats() {
    let owner = PublicKeyBytes([7; 32]);
    let mut document = LoggingDocument {
        v: 1,
        target_bucket: "logs".into(),
        target_prefix: "log/".into(),
        key_format: KeyFormat::Simple,
        grants: Vec::new(),
    };
    // 2019-02-06 00:00:38 UTC, delivered the next day at 01:02:03.
    let first = 1_549_411_238_000;
    let now = first + 86_400_000 + 3_685_000;
    let simple = object_name(&document, &owner, "us-east-1", "src", first, now);
    assert!(simple.starts_with("log/2019-02-07-01-02-03-"), "{simple}");
    assert_eq!(simple.len(), "log/2019-02-07-01-02-03-".len() + 16);
    document.key_format = KeyFormat::Partitioned { event_time: true };
    let by_event = object_name(&document, &owner, "us-east-1", "src", first, now);
    let expected = format!(
        "log/{}/us-east-1/src/2019/02/06/2019-02-07-01-02-03-",
        owner.to_hex()
    );
    assert!(by_event.starts_with(&expected), "{by_event}");
    document.key_format = KeyFormat::Partitioned { event_time: false };
    let by_delivery = object_name(&document, &owner, "us-east-1", "src", first, now);
    assert!(by_delivery.contains("/src/2019/02/07/"), "{by_delivery}");
}
