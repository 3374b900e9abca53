//! Unit tests of lifecycle rules: parsing, validation and which objects a rule expires.

use std::collections::BTreeMap;

use super::*;

const DAY: Duration = Duration::from_secs(10);

fn info(created_ms: u64, size: u64, meta: &[(&str, &str)]) -> ObjectInfo {
    ObjectInfo {
        manifest: xnode_store::ChunkId::of(b"m"),
        size,
        etag: format!("etag-{created_ms}"),
        content_type: "text/plain".into(),
        user_meta: meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        created_ms,
    }
}

fn rule(id: &str, prefix: &str, days: i32) -> LifecycleRule {
    LifecycleRule {
        abort_incomplete_multipart_upload: None,
        expiration: Some(LifecycleExpiration {
            days: Some(days),
            ..Default::default()
        }),
        filter: None,
        id: Some(id.into()),
        noncurrent_version_expiration: None,
        noncurrent_version_transitions: None,
        prefix: Some(prefix.into()),
        status: ExpirationStatus::from_static(ExpirationStatus::ENABLED),
        transitions: None,
    }
}

fn config(rules: Vec<LifecycleRule>) -> BucketLifecycleConfiguration {
    BucketLifecycleConfiguration { rules }
}

fn code(c: BucketLifecycleConfiguration) -> Option<String> {
    validate(c).err().map(|e| e.code().as_str().to_owned())
}

#[test]
fn configurations_are_checked_like_s3() {
    assert_eq!(code(config(vec![rule("a", "x/", 1)])), None);
    assert_eq!(code(config(vec![])).as_deref(), Some("MalformedXML"));
    assert_eq!(
        code(config(vec![rule(&"a".repeat(256), "x/", 1)])).as_deref(),
        Some("InvalidArgument")
    );
    assert_eq!(
        code(config(vec![rule("a", "x/", 1), rule("a", "y/", 2)])).as_deref(),
        Some("InvalidArgument")
    );
    let mut r = rule("a", "x/", 1);
    r.status = ExpirationStatus::from("enabled".to_owned());
    assert_eq!(code(config(vec![r])).as_deref(), Some("MalformedXML"));
    assert_eq!(
        code(config(vec![rule("a", "x/", 0)])).as_deref(),
        Some("InvalidArgument")
    );
    let mut r = rule("a", "x/", 1);
    r.filter = Some(LifecycleRuleFilter::default());
    assert_eq!(code(config(vec![r])).as_deref(), Some("MalformedXML"));
    let mut r = rule("a", "x/", 1);
    r.prefix = None;
    r.filter = Some(LifecycleRuleFilter {
        prefix: Some("x/".into()),
        and: Some(LifecycleRuleAndOperator::default()),
        ..Default::default()
    });
    assert_eq!(code(config(vec![r])).as_deref(), Some("MalformedXML"));
    let mut r = rule("a", "x/", 1);
    r.expiration = None;
    assert_eq!(code(config(vec![r])).as_deref(), Some("InvalidArgument"));
    let mut r = rule("a", "x/", 1);
    r.expiration = Some(LifecycleExpiration {
        date: Some(Timestamp::from(
            time::OffsetDateTime::from_unix_timestamp(1_500_000_123).unwrap(),
        )),
        ..Default::default()
    });
    assert_eq!(code(config(vec![r])).as_deref(), Some("InvalidArgument"));
    // A well-formed transition is refused as not built, after every other check.
    let glacier = || {
        Some(TransitionStorageClass::from_static(
            TransitionStorageClass::GLACIER,
        ))
    };
    let mut r = rule("a", "x/", 1);
    r.transitions = Some(vec![Transition {
        days: Some(30),
        date: None,
        storage_class: glacier(),
    }]);
    assert_eq!(code(config(vec![r])).as_deref(), Some("NotImplemented"));
    let mut r = rule("a", "x/", 1);
    r.expiration = None;
    r.noncurrent_version_transitions = Some(vec![NoncurrentVersionTransition {
        noncurrent_days: Some(0),
        newer_noncurrent_versions: None,
        storage_class: glacier(),
    }]);
    assert_eq!(code(config(vec![r])).as_deref(), Some("NotImplemented"));
}

/// A malformed transition gets S3's 400, not the 501 of transitions not being built:
/// the conformance suite's `test_lifecycle_transition_set_invalid_date` sends a date
/// that is not a midnight.
#[test]
fn malformed_transitions_are_refused_before_transitions_are_refused_as_not_built() {
    let glacier = || {
        Some(TransitionStorageClass::from_static(
            TransitionStorageClass::GLACIER,
        ))
    };
    let with = |transition: Transition| {
        let mut r = rule("a", "x/", 1);
        r.transitions = Some(vec![transition]);
        code(config(vec![r]))
    };
    let not_midnight =
        Timestamp::from(time::OffsetDateTime::from_unix_timestamp(20_220_927).unwrap());
    assert_eq!(
        with(Transition {
            days: None,
            date: Some(not_midnight),
            storage_class: glacier(),
        })
        .as_deref(),
        Some("InvalidArgument")
    );
    assert_eq!(
        with(Transition {
            days: Some(-1),
            date: None,
            storage_class: glacier(),
        })
        .as_deref(),
        Some("InvalidArgument")
    );
    assert_eq!(with(Transition::default()).as_deref(), Some("MalformedXML"));
    assert_eq!(
        with(Transition {
            days: Some(1),
            date: None,
            storage_class: None,
        })
        .as_deref(),
        Some("MalformedXML")
    );
    let mut r = rule("a", "x/", 1);
    r.noncurrent_version_transitions = Some(vec![NoncurrentVersionTransition {
        noncurrent_days: None,
        newer_noncurrent_versions: None,
        storage_class: glacier(),
    }]);
    assert_eq!(code(config(vec![r])).as_deref(), Some("MalformedXML"));
}

#[test]
fn a_rule_without_an_id_gets_one() {
    let mut r = rule("a", "x/", 1);
    r.id = None;
    let doc = validate(config(vec![r])).unwrap();
    assert!(!doc.rules[0].id.is_empty());
}

#[test]
fn rules_come_back_as_they_were_written() {
    let legacy = rule("a", "x/", 31);
    let doc = validate(config(vec![legacy])).unwrap();
    let back = to_dto(&doc.rules[0]);
    assert_eq!(back.prefix.as_deref(), Some("x/"));
    assert!(back.filter.is_none());
    assert_eq!(back.expiration.unwrap().days, Some(31));
}

#[test]
fn current_objects_expire_by_days_prefix_tags_and_size() {
    let mut tagged = rule("t", "", 1);
    tagged.prefix = None;
    tagged.filter = Some(LifecycleRuleFilter {
        and: Some(LifecycleRuleAndOperator {
            prefix: Some("t/".into()),
            tags: Some(vec![Tag {
                key: Some("k".into()),
                value: Some("v".into()),
            }]),
            object_size_greater_than: Some(10),
            object_size_less_than: None,
        }),
        ..Default::default()
    });
    let doc = validate(config(vec![
        rule("a", "expire1/", 1),
        rule("b", "expire3/", 5),
        tagged,
    ]))
    .unwrap();
    let plan = |now_ms| Plan {
        rules: &doc.rules,
        day: DAY,
        now_ms,
        grace_ms: 0,
    };
    let o = info(1_000, 5, &[]);
    assert!(plan(10_999).current("expire1/a", &o).is_none());
    assert_eq!(
        plan(11_000).current("expire1/a", &o),
        Some(Action::ExpireCurrent {
            key: "expire1/a".into(),
            etag: "etag-1000".into()
        })
    );
    assert!(plan(40_000).current("expire3/a", &o).is_none());
    assert!(plan(51_000).current("expire3/a", &o).is_some());
    assert!(plan(1_000_000).current("keep/a", &o).is_none());
    // Tags and size must all hold.
    let with_tag = info(1_000, 50, &[(":tags", "k=v")]);
    assert!(plan(11_000).current("t/a", &with_tag).is_some());
    assert!(plan(11_000).current("t/a", &info(1_000, 50, &[])).is_none());
    // Tags put later rewrite the entry but keep the object's date, which the rule counts
    // from: tagging an object does not put off its expiry.
    let retagged = info(30_000, 50, &[(":tags", "k=v"), (":mtime", "1000")]);
    assert!(plan(11_000).current("t/a", &retagged).is_some());
    assert!(
        plan(11_000)
            .current("t/a", &info(1_000, 5, &[(":tags", "k=v")]))
            .is_none()
    );
    // A node ranked later waits its grace.
    let later = Plan {
        rules: &doc.rules,
        day: DAY,
        now_ms: 11_000,
        grace_ms: 10_000,
    };
    assert!(later.current("expire1/a", &o).is_none());
    // Disabled rules do nothing.
    let mut off = rule("a", "", 1);
    off.status = ExpirationStatus::from_static(ExpirationStatus::DISABLED);
    let doc = validate(config(vec![off])).unwrap();
    assert!(
        Plan {
            rules: &doc.rules,
            day: DAY,
            now_ms: u64::MAX,
            grace_ms: 0
        }
        .current("a", &o)
        .is_none()
    );
}

#[test]
fn noncurrent_versions_and_lone_delete_markers() {
    let mut r = rule("n", "", 1);
    r.expiration = None;
    r.noncurrent_version_expiration = Some(NoncurrentVersionExpiration {
        noncurrent_days: Some(2),
        newer_noncurrent_versions: None,
    });
    let doc = validate(config(vec![r])).unwrap();
    let (v3, v2, v1) = (
        info(30_000, 1, &[]),
        info(20_000, 1, &[]),
        info(10_000, 1, &[]),
    );
    let versions = vec![
        VersionView {
            public_id: "3".into(),
            info: &v3,
        },
        VersionView {
            public_id: "2".into(),
            info: &v2,
        },
        VersionView {
            public_id: "1".into(),
            info: &v1,
        },
    ];
    let plan = |now_ms| Plan {
        rules: &doc.rules,
        day: DAY,
        now_ms,
        grace_ms: 0,
    };
    // Version 1 became noncurrent at 20 s, version 2 at 30 s; two days are 20 s.
    assert!(plan(39_999).versions("k", &versions, true).is_empty());
    assert_eq!(
        plan(40_000).versions("k", &versions, true),
        vec![Action::RemoveVersion {
            key: "k".into(),
            version_id: "1".into()
        }]
    );
    assert_eq!(plan(50_000).versions("k", &versions, true).len(), 2);
    // A lone delete marker goes with ExpiredObjectDeleteMarker.
    let mut r = rule("m", "", 1);
    r.expiration = Some(LifecycleExpiration {
        expired_object_delete_marker: Some(true),
        ..Default::default()
    });
    let doc = validate(config(vec![r])).unwrap();
    let marker = info(1_000, 0, &[(":delete-marker", "true")]);
    let lone = vec![VersionView {
        public_id: "m".into(),
        info: &marker,
    }];
    let plan = Plan {
        rules: &doc.rules,
        day: DAY,
        now_ms: 2_000,
        grace_ms: 0,
    };
    assert_eq!(plan.versions("k", &lone, false).len(), 1);
    // Not while the key has a current object, nor when other versions remain.
    assert!(plan.versions("k", &lone, true).is_empty());
    let two = vec![
        VersionView {
            public_id: "m".into(),
            info: &marker,
        },
        VersionView {
            public_id: "1".into(),
            info: &v1,
        },
    ];
    assert!(plan.versions("k", &two, false).is_empty());
}

#[test]
fn incomplete_uploads_are_aborted_after_their_days() {
    let mut r = rule("u", "up/", 1);
    r.expiration = None;
    r.abort_incomplete_multipart_upload = Some(AbortIncompleteMultipartUpload {
        days_after_initiation: Some(1),
    });
    let doc = validate(config(vec![r])).unwrap();
    let plan = |now_ms| Plan {
        rules: &doc.rules,
        day: DAY,
        now_ms,
        grace_ms: 0,
    };
    assert!(plan(10_999).upload("id", "up/a", 1_000).is_none());
    assert!(plan(11_000).upload("id", "up/a", 1_000).is_some());
    assert!(plan(11_000).upload("id", "other/a", 1_000).is_none());
}

#[test]
fn the_expiration_header_names_the_earliest_matching_rule() {
    let Ok(document) = validate(config(vec![rule("late", "a/", 3), rule("early", "a/b", 1)]))
    else {
        panic!("a valid configuration was refused");
    };
    // Written 2012-12-21 00:00:00 UTC: one day later is a Saturday.
    let written = info(1_356_048_000_000, 1, &[]);
    assert_eq!(
        expiration_header(&document.rules, "a/b/c", &written).as_deref(),
        Some("expiry-date=\"Sat, 22 Dec 2012 00:00:00 GMT\", rule-id=\"early\"")
    );
    assert_eq!(
        expiration_header(&document.rules, "a/x", &written).as_deref(),
        Some("expiry-date=\"Mon, 24 Dec 2012 00:00:00 GMT\", rule-id=\"late\"")
    );
    assert_eq!(expiration_header(&document.rules, "b", &written), None);
}

#[test]
fn the_expiration_header_rounds_up_to_the_next_midnight_utc() {
    let Ok(document) = validate(config(vec![rule("one", "a/", 1)])) else {
        panic!("a valid configuration was refused");
    };
    // Written 2012-12-21 10:30:00.500 UTC: one day later, rounded up, is midnight
    // starting Sunday the 23rd, whatever the sub-second part of the write.
    let written = info(1_356_085_800_500, 1, &[]);
    assert_eq!(
        expiration_header(&document.rules, "a/b", &written).as_deref(),
        Some("expiry-date=\"Sun, 23 Dec 2012 00:00:00 GMT\", rule-id=\"one\"")
    );
    // The worker counts the same calendar days; a test day is not rounded.
    assert_eq!(
        expiry_ms(&Expiration::Days(1), 1_356_085_800_500, CALENDAR_DAY),
        Some(1_356_220_800_000)
    );
    assert_eq!(expiry_ms(&Expiration::Days(1), 1_000, DAY), Some(11_000));
}
