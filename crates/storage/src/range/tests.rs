//! Unit tests of range listings: answers checked against their question, and the merge of
//! a read quorum's answers equal to the listing of every replica's entries together.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use xnode_store::{ChunkId, ObjectInfo, ObjectPath, internal_key};
use xnode_types::{Hlc, NodeId, SecretKey};

use super::*;

const TENANT: PublicKeyBytes = PublicKeyBytes([1; 32]);
const BUCKET: &str = "photos";
const FAR_AHEAD: u64 = 1_000_000;

fn writer() -> NodeId {
    static WRITER: std::sync::OnceLock<NodeId> = std::sync::OnceLock::new();
    *WRITER.get_or_init(|| SecretKey::generate().node_id())
}

fn entry(key: &str, ms: u64, live: bool) -> ObjectMeta {
    ObjectMeta {
        path: ObjectPath {
            tenant: TENANT,
            bucket: BUCKET.into(),
            key: key.into(),
        },
        version: Hlc::new(ms, 0),
        writer: writer(),
        info: live.then(|| ObjectInfo {
            manifest: ChunkId::of(format!("{key}@{ms}").as_bytes()),
            size: ms,
            etag: String::new(),
            content_type: String::new(),
            user_meta: Default::default(),
            created_ms: ms,
        }),
        seal: None,
    }
}

fn question<'a>(prefix: &'a str, after: Option<&'a str>, limit: usize) -> RangeQuestion<'a> {
    RangeQuestion {
        tenant: &TENANT,
        bucket: BUCKET,
        prefix,
        after,
        limit,
    }
}

/// One replica's share of the table, answering range questions as `MetaStore::range`
/// does (tombstones included; cut at the limit, and only if more entries follow).
#[derive(Clone, Default)]
struct Replica(BTreeMap<String, ObjectMeta>);

impl Replica {
    fn merge(&mut self, meta: &ObjectMeta) {
        match self.0.get(&meta.path.key) {
            Some(held) if !meta.supersedes(held) => {}
            _ => {
                self.0.insert(meta.path.key.clone(), meta.clone());
            }
        }
    }

    fn answer(&self, q: &RangeQuestion<'_>) -> (Vec<ObjectMeta>, bool) {
        let mut matching = self
            .0
            .values()
            .filter(|m| m.path.key.starts_with(q.prefix))
            .filter(|m| q.after.is_none_or(|a| m.path.key.as_str() > a));
        let entries: Vec<ObjectMeta> = matching.by_ref().take(q.limit).cloned().collect();
        (entries, matching.next().is_some())
    }

    /// The live keys under `prefix` after `after`: what a listing of this table shows.
    fn live_keys(&self, prefix: &str, after: Option<&str>) -> Vec<String> {
        self.0
            .values()
            .filter(|m| m.info.is_some() && m.path.key.starts_with(prefix))
            .filter(|m| after.is_none_or(|a| m.path.key.as_str() > a))
            .map(|m| m.path.key.clone())
            .collect()
    }
}

/// Lists through `replicas` (one read quorum) page by page, as the edge does: each page
/// in rounds of `answer_limit` entries per replica. Returns the pages' keys and how many
/// rounds it took.
fn list_pages(
    replicas: &[&Replica],
    prefix: &str,
    start_after: Option<&str>,
    page_size: usize,
    answer_limit: usize,
) -> (Vec<Vec<String>>, usize) {
    let mut pages = Vec::new();
    let mut rounds = 0;
    let mut after: Option<String> = start_after.map(str::to_owned);
    loop {
        let mut page = Vec::new();
        let mut cursor = after.clone();
        loop {
            rounds += 1;
            assert!(rounds < 10_000, "the listing makes no progress");
            let q = question(prefix, cursor.as_deref(), answer_limit);
            let answers: Vec<CheckedRange> = replicas
                .iter()
                .map(|r| {
                    let (entries, truncated) = r.answer(&q);
                    check_range(&q, entries, truncated, FAR_AHEAD).unwrap()
                })
                .collect();
            match absorb(merge_ranges(&answers), &mut page, page_size) {
                Next::Done => break,
                Next::After(next) => {
                    assert!(cursor.as_ref().is_none_or(|c| next > *c), "no progress");
                    cursor = Some(next);
                }
            }
        }
        let full = page.len() == page_size;
        after = page.last().map(|m| m.path.key.clone());
        pages.push(page.into_iter().map(|m| m.path.key).collect());
        if !full {
            return (pages, rounds);
        }
    }
}

#[test]
fn answers_outside_the_question_are_refused_whole() {
    let q = question("a/", Some("a/1"), 3);
    let ok = |entries: Vec<ObjectMeta>| check_range(&q, entries, false, FAR_AHEAD);
    assert!(ok(vec![entry("a/2", 1, true), entry("a/3", 1, false)]).is_ok());

    let mut other_tenant = entry("a/2", 1, true);
    other_tenant.path.tenant = PublicKeyBytes([2; 32]);
    let mut other_bucket = entry("a/2", 1, true);
    other_bucket.path.bucket = "other".into();
    for (what, bad) in [
        ("another tenant", other_tenant),
        ("another bucket", other_bucket),
        ("outside the prefix", entry("b/2", 1, true)),
        ("the cursor itself", entry("a/1", 1, true)),
        ("before the cursor", entry("a/0", 1, true)),
        ("an internal key", entry(&internal_key("a/2"), 1, true)),
        ("an invalid key", entry("a/\u{1}", 1, true)),
    ] {
        assert!(
            matches!(ok(vec![bad]), Err(BadRange::OutOfRange { .. })),
            "{what}"
        );
    }
    assert!(matches!(
        ok(vec![entry("a/3", 1, true), entry("a/2", 1, true)]),
        Err(BadRange::OutOfOrder { .. })
    ));
    assert!(matches!(
        ok(vec![entry("a/2", 1, true), entry("a/2", 2, true)]),
        Err(BadRange::OutOfOrder { .. })
    ));
    assert!(matches!(
        ok((2..6).map(|i| entry(&format!("a/{i}"), 1, true)).collect()),
        Err(BadRange::TooMany { got: 4, limit: 3 })
    ));
    // Internal keys are in range when the prefix asks for them.
    let internal_prefix = internal_key("a/");
    let internal = question(&internal_prefix, None, 3);
    assert!(
        check_range(
            &internal,
            vec![entry(&internal_key("a/2"), 1, true)],
            false,
            9
        )
        .is_ok()
    );
}

#[test]
fn a_cut_answer_must_fill_its_limit_or_its_byte_bound() {
    let q = question("", None, 3);
    let two = vec![entry("a", 1, true), entry("b", 1, true)];
    assert!(matches!(
        check_range(&q, two.clone(), true, FAR_AHEAD),
        Err(BadRange::CutShort { entries: 2, .. })
    ));
    assert!(matches!(
        check_range(&q, Vec::new(), true, FAR_AHEAD),
        Err(BadRange::CutShort { entries: 0, .. })
    ));
    let mut three = two;
    three.push(entry("c", 1, true));
    let checked = check_range(&q, three, true, FAR_AHEAD).unwrap();
    assert_eq!(checked.until.as_deref(), Some("c"));

    // Large entries: an answer cut at the byte bound short of its limit is honest.
    let big = |key: &str| {
        let mut m = entry(key, 1, true);
        if let Some(info) = m.info.as_mut() {
            info.user_meta.insert("pad".into(), "x".repeat(60 * 1024));
        }
        m
    };
    let bulky: Vec<ObjectMeta> = (0..40).map(|i| big(&format!("k{i:02}"))).collect();
    let q = question("", None, 1000);
    assert!(check_range(&q, bulky, true, FAR_AHEAD).is_ok());
}

#[test]
fn entries_dated_too_far_ahead_are_left_out_of_the_merge() {
    let q = question("", None, 10);
    // One replica holds a tombstone dated far into the future: it hides nothing.
    let lying = check_range(
        &q,
        vec![entry("a", 10, true), entry("b", u64::MAX, false)],
        false,
        100,
    )
    .unwrap();
    assert_eq!(lying.future, 1);
    let honest = check_range(
        &q,
        vec![entry("a", 10, true), entry("b", 20, true)],
        false,
        100,
    )
    .unwrap();
    let mut page = Vec::new();
    assert_eq!(
        absorb(merge_ranges(&[lying, honest]), &mut page, 10),
        Next::Done
    );
    let keys: Vec<&str> = page.iter().map(|m| m.path.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn tombstones_hide_keys_and_the_newest_version_wins() {
    let q = question("", None, 10);
    let check = |entries| check_range(&q, entries, false, FAR_AHEAD).unwrap();
    // Replica 0 missed the delete of "b" and the overwrite of "c"; replica 1 missed "d".
    let stale = check(vec![
        entry("a", 1, true),
        entry("b", 1, true),
        entry("c", 1, true),
    ]);
    let fresh = check(vec![
        entry("a", 1, true),
        entry("b", 2, false),
        entry("c", 3, true),
        entry("d", 4, true),
    ]);
    let merged = merge_ranges(&[stale, fresh]);
    let behind: Vec<Vec<&str>> = merged
        .behind
        .iter()
        .map(|b| b.iter().map(|m| m.path.key.as_str()).collect())
        .collect();
    assert_eq!(behind, [vec!["b", "c", "d"], vec![]]);
    let mut page = Vec::new();
    absorb(merged, &mut page, 10);
    let listed: Vec<(&str, u64)> = page
        .iter()
        .map(|m| (m.path.key.as_str(), m.version.wall_ms))
        .collect();
    assert_eq!(listed, [("a", 1), ("c", 3), ("d", 4)]);
}

#[test]
fn keys_past_the_shortest_cut_wait_for_the_next_round() {
    let q = question("", None, 2);
    // The cut replica holds a tombstone of "c" that it did not get to send.
    let cut = check_range(&q, vec![entry("a", 1, true), entry("b", 1, true)], true, 9).unwrap();
    let whole = check_range(&q, vec![entry("b", 1, true), entry("c", 1, true)], true, 9).unwrap();
    let merged = merge_ranges(&[cut, whole]);
    assert_eq!(merged.until.as_deref(), Some("b"));
    let mut page = Vec::new();
    assert_eq!(absorb(merged, &mut page, 10), Next::After("b".into()));
    assert_eq!(page.len(), 2);
}

#[test]
fn common_prefixes_group_the_keys_live_after_the_merge() {
    let q = question("", None, 10);
    let check = |entries| check_range(&q, entries, false, FAR_AHEAD).unwrap();
    // "old/x" was deleted; the stale replica still lists it.
    let stale = check(vec![
        entry("a/1", 1, true),
        entry("old/x", 1, true),
        entry("z", 1, true),
    ]);
    let fresh = check(vec![
        entry("a/1", 1, true),
        entry("old/x", 2, false),
        entry("z", 1, true),
    ]);
    let mut page = Vec::new();
    absorb(merge_ranges(&[stale, fresh]), &mut page, 10);
    let mut groups: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for m in &page {
        match common_prefix(&m.path.key, "", "/") {
            Some(group) if groups.last() != Some(&group) => groups.push(group),
            Some(_) => {}
            None => keys.push(&m.path.key),
        }
    }
    assert_eq!(groups, ["a/"]);
    assert_eq!(keys, ["z"]);

    assert_eq!(
        common_prefix("photos/2024/a.jpg", "photos/", "/"),
        Some("photos/2024/")
    );
    assert_eq!(common_prefix("photos/a.jpg", "photos/", "/"), None);
    assert_eq!(common_prefix("a--b--c", "", "--"), Some("a--"));
    assert_eq!(common_prefix("a/b", "", ""), None);
    assert_eq!(common_prefix("b/c", "a", "/"), None);
}

/// One write of the generated histories: a key, live or deleted, and which of the three
/// replicas took it (at least two: a write acknowledged at `W = 2`).
fn write() -> impl Strategy<Value = (usize, bool, usize)> {
    (0usize..40, proptest::bool::weighted(0.7), 0usize..4)
}

const ACKNOWLEDGED_BY: [[bool; 3]; 4] = [
    [true, true, false],
    [true, false, true],
    [false, true, true],
    [true, true, true],
];

fn key_name(i: usize) -> String {
    // Some keys share prefixes and delimiters, some do not.
    match i % 4 {
        0 => format!("a/{i:02}"),
        1 => format!("a/b/{i:02}"),
        2 => format!("b{i:02}"),
        _ => format!("c/{i:02}/x"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever writes reached which replicas (each on at least two of three), listing
    /// through any two replicas, in any page size and any answer size, lists exactly the
    /// live keys of the union of all three tables: every key once, in order.
    #[test]
    fn a_quorum_merge_lists_what_the_union_holds(
        writes in proptest::collection::vec(write(), 0..120),
        page_size in 1usize..12,
        answer_limit in 1usize..9,
        prefix in prop_oneof![Just(""), Just("a/"), Just("c/"), Just("b")],
        start_after in prop_oneof![Just(None), Just(Some("a/10")), Just(Some("b"))],
    ) {
        let mut replicas = [Replica::default(), Replica::default(), Replica::default()];
        let mut union = Replica::default();
        for (n, (key, live, to)) in writes.iter().enumerate() {
            let meta = entry(&key_name(*key), n as u64 + 1, *live);
            union.merge(&meta);
            for (replica, took) in replicas.iter_mut().zip(ACKNOWLEDGED_BY[*to]) {
                if took {
                    replica.merge(&meta);
                }
            }
        }
        let expected = union.live_keys(prefix, start_after);
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let quorum = [&replicas[pair[0]], &replicas[pair[1]]];
            let (pages, _) = list_pages(&quorum, prefix, start_after, page_size, answer_limit);
            prop_assert!(pages.iter().all(|p| p.len() <= page_size));
            let listed: Vec<String> = pages.into_iter().flatten().collect();
            prop_assert_eq!(&listed, &expected, "replicas {:?}", pair);
        }
    }
}

#[test]
fn a_page_of_a_thousand_keys_takes_one_round() {
    let mut replicas = [Replica::default(), Replica::default(), Replica::default()];
    for i in 0..5000u64 {
        let meta = entry(&format!("k{i:05}"), i + 1, true);
        // Replica 2 was down for the second half.
        for r in replicas.iter_mut().take(if i < 2500 { 3 } else { 2 }) {
            r.merge(&meta);
        }
    }
    let (pages, rounds) = list_pages(&[&replicas[1], &replicas[2]], "", None, 1000, 1000);
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1000, 1000, 1000, 1000, 1000, 0]);
    assert!(rounds <= 8, "{rounds} rounds for five pages");
}

/// A listing of versions does not lose a COMPLIANCE-locked version to a replica that
/// took a tombstone over it (whichever order the answers come in).
#[test]
fn a_range_merge_keeps_a_compliance_locked_version_over_a_tombstone_that_breaks_it() {
    let key = internal_key("ver/doc/0123");
    let mut locked = entry(&key, 100, true);
    if let Some(info) = locked.info.as_mut() {
        info.user_meta
            .insert(xnode_store::LOCK_MODE_ENTRY.into(), "COMPLIANCE".into());
        info.user_meta
            .insert(xnode_store::LOCK_UNTIL_ENTRY.into(), "10000".into());
    }
    let tombstone = entry(&key, 200, false);
    let answer = |meta: &ObjectMeta| CheckedRange {
        entries: vec![meta.clone()],
        until: None,
        future: 0,
        revoked: 0,
        verified: vec![true],
    };
    for answers in [
        [answer(&locked), answer(&tombstone)],
        [answer(&tombstone), answer(&locked)],
    ] {
        let merged = merge_ranges(&answers);
        assert_eq!(merged.newest, vec![locked.clone()]);
    }
}
