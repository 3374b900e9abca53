//! Unit tests of the metadata table: names and paths, last-writer-wins merges, listings,
//! scans, internal keys and the anti-entropy digests.

use xnode_types::SecretKey;

use super::*;
use crate::entropy::{LEAVES, leaf_of};

pub(super) fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("node.redb")).unwrap();
    (dir, db)
}

pub(super) fn tenant(n: u8) -> PublicKeyBytes {
    PublicKeyBytes([n; 32])
}

pub(super) fn info(tag: &str) -> ObjectInfo {
    ObjectInfo {
        manifest: ChunkId::of(tag.as_bytes()),
        size: tag.len() as u64,
        etag: format!("\"{tag}\""),
        content_type: "text/plain".into(),
        user_meta: BTreeMap::from([("k".to_owned(), tag.to_owned())]),
        created_ms: 1,
    }
}

pub(super) fn meta(
    path: &ObjectPath,
    ms: u64,
    writer: NodeId,
    info: Option<ObjectInfo>,
) -> ObjectMeta {
    ObjectMeta {
        path: path.clone(),
        version: Hlc::new(ms, 0),
        writer,
        info,
        seal: None,
    }
}

pub(super) fn node() -> NodeId {
    SecretKey::generate().node_id()
}

#[test]
fn bucket_names() {
    for good in [
        "abc",
        "my-bucket",
        "my.bucket.2",
        "a1b",
        &"a".repeat(63),
        "1.2.3",
    ] {
        validate_bucket_name(good).unwrap();
    }
    for bad in [
        "ab",
        &"a".repeat(64),
        "My-Bucket",
        "-abc",
        "abc-",
        ".abc",
        "abc.",
        "a..b",
        "a_b",
        "a b",
        "a/b",
        "192.168.5.4",
        "xn--abc",
        "sthree-abc",
        "abc-s3alias",
        "abc--ol-s3",
        "ünï",
        "",
    ] {
        assert!(
            matches!(validate_bucket_name(bad), Err(StoreError::InvalidName(_))),
            "{bad:?} was accepted"
        );
    }
}

#[test]
fn object_keys() {
    for good in [
        "a",
        "dir/sub/file.txt",
        "ünïcødé 🚀",
        &"k".repeat(1024),
        " spaces ",
    ] {
        validate_object_key(good).unwrap();
    }
    for bad in [
        "",
        &"k".repeat(1025),
        "a\0b",
        "line\nbreak",
        "tab\t",
        "del\u{7f}",
        "c1\u{85}",
    ] {
        assert!(validate_object_key(bad).is_err(), "{bad:?} was accepted");
    }
    // 1024 bytes, not characters.
    assert!(validate_object_key(&"é".repeat(513)).is_err());
}

#[test]
fn paths_and_keys() {
    let p = ObjectPath::new(tenant(1), "bucket", "a/b").unwrap();
    assert_eq!(
        p.storage_key(),
        format!("{}/bucket/a/b", tenant(1).to_hex()).into_bytes()
    );
    assert_eq!(
        p.placement_key(),
        *blake3::hash(&p.storage_key()).as_bytes()
    );
    assert_ne!(
        p.placement_key(),
        ObjectPath::new(tenant(2), "bucket", "a/b")
            .unwrap()
            .placement_key()
    );
    assert!(ObjectPath::new(tenant(1), "BAD", "k").is_err());
    assert!(ObjectPath::new(tenant(1), "bucket", "").is_err());
    let owned: String = "bucket".into();
    ObjectPath::new(tenant(1), &owned, owned.clone()).unwrap();
}

#[test]
fn lww_merge_is_order_independent() {
    let path = ObjectPath::new(tenant(1), "bucket", "key").unwrap();
    let (w1, w2) = (node(), node());
    let versions = vec![
        meta(&path, 10, w1, Some(info("a"))),
        meta(&path, 20, w2, Some(info("b"))),
        meta(&path, 20, w1, Some(info("c"))),
        meta(&path, 15, w2, None),
        meta(&path, 5, w1, None),
    ];
    let mut expected = None;
    // Every rotation and its reverse: the winner is always the same.
    for r in 0..versions.len() {
        for reverse in [false, true] {
            let mut order = versions.clone();
            order.rotate_left(r);
            if reverse {
                order.reverse();
            }
            let (_dir, db) = db();
            let store = MetaStore::new(db);
            for m in order {
                store.merge(m).unwrap();
            }
            let got = store.get(&path).unwrap().unwrap();
            assert_eq!(got.version, Hlc::new(20, 0));
            if let Some(e) = &expected {
                assert_eq!(&got, e);
            }
            expected = Some(got);
        }
    }
}

#[test]
fn merge_reports_changes_and_tombstones_win_when_newer() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let path = ObjectPath::new(tenant(1), "bucket", "key").unwrap();
    let w = node();
    let live = meta(&path, 10, w, Some(info("a")));
    assert!(store.merge(live.clone()).unwrap());
    assert!(!store.merge(live.clone()).unwrap());
    assert!(!store.merge(meta(&path, 9, w, None)).unwrap());
    assert_eq!(store.get(&path).unwrap(), Some(live));

    let tomb = meta(&path, 11, w, None);
    assert!(store.merge(tomb.clone()).unwrap());
    assert_eq!(store.get(&path).unwrap(), Some(tomb.clone()));
    assert!(store.get(&path).unwrap().unwrap().is_tombstone());
    assert!(
        store
            .list(&tenant(1), "bucket", "", None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.scan(None, 10).unwrap(), vec![tomb]);
    assert_eq!(store.count_live_in_bucket(&tenant(1), "bucket").unwrap(), 0);

    // A later write brings it back.
    assert!(store.merge(meta(&path, 12, w, Some(info("b")))).unwrap());
    assert_eq!(store.count_live_in_bucket(&tenant(1), "bucket").unwrap(), 1);
}

#[test]
fn merge_says_whether_the_entry_won_or_was_superseded() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let path = ObjectPath::new(tenant(1), "bucket", "key").unwrap();
    let (w, other) = (node(), node());
    let newer = meta(&path, 20, other, Some(info("new")));
    assert_eq!(
        store.merge_outcome(newer.clone()).unwrap(),
        MergeOutcome::Stored
    );
    assert_eq!(
        store.merge_outcome(newer.clone()).unwrap(),
        MergeOutcome::Held
    );
    let older = meta(&path, 10, w, Some(info("old")));
    assert_eq!(
        store.merge_outcome(older).unwrap(),
        MergeOutcome::Superseded {
            version: Hlc::new(20, 0),
            writer: other
        }
    );
    assert!(
        !MergeOutcome::Superseded {
            version: Hlc::new(20, 0),
            writer: other
        }
        .is_held()
    );
    assert_eq!(store.get(&path).unwrap(), Some(newer));
}

#[test]
fn a_conditional_merge_is_refused_once_the_entry_moved_past_what_was_expected() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let path = ObjectPath::new(tenant(1), "bucket", "key").unwrap();
    let (a, b) = (node(), node());
    // Two writers both found the key absent: the first is merged, the second refused.
    let first = meta(&path, 10, a, Some(info("first")));
    assert_eq!(
        store.merge_if(first.clone(), None).unwrap(),
        ConditionalMerge::Merged(MergeOutcome::Stored)
    );
    let second = meta(&path, 11, b, Some(info("second")));
    assert_eq!(
        store.merge_if(second.clone(), None).unwrap(),
        ConditionalMerge::Moved {
            version: Hlc::new(10, 0),
            writer: a
        }
    );
    assert_eq!(store.get(&path).unwrap(), Some(first.clone()));
    // A retry of the merged entry is held, not refused.
    assert_eq!(
        store.merge_if(first.clone(), None).unwrap(),
        ConditionalMerge::Merged(MergeOutcome::Held)
    );
    // A writer that saw the first entry replaces it.
    assert_eq!(
        store
            .merge_if(second.clone(), Some((Hlc::new(10, 0), a)))
            .unwrap(),
        ConditionalMerge::Merged(MergeOutcome::Stored)
    );
    // A replica that is behind what the writer saw (it holds an older entry) accepts.
    let third = meta(&path, 30, a, None);
    assert_eq!(
        store
            .merge_if(third.clone(), Some((Hlc::new(20, 0), b)))
            .unwrap(),
        ConditionalMerge::Merged(MergeOutcome::Stored)
    );
    assert_eq!(store.get(&path).unwrap(), Some(third));
    // Unconditional merges never see `Moved`.
    let stale = meta(&path, 5, b, Some(info("stale")));
    assert!(matches!(
        store.merge_outcome(stale).unwrap(),
        MergeOutcome::Superseded { .. }
    ));
}

#[test]
fn merge_rejects_invalid_paths_and_oversized_entries() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let w = node();
    let mut bad = meta(
        &ObjectPath::new(tenant(1), "bucket", "k").unwrap(),
        1,
        w,
        None,
    );
    bad.path.bucket = "Bad/Bucket".into();
    assert!(matches!(store.merge(bad), Err(StoreError::InvalidName(_))));
    let mut big = info("x");
    big.user_meta
        .insert("big".into(), "x".repeat(MAX_META_BYTES));
    let path = ObjectPath::new(tenant(1), "bucket", "k").unwrap();
    assert!(matches!(
        store.merge(meta(&path, 1, w, Some(big))),
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(store.get(&path).unwrap(), None);
}

#[test]
fn concurrent_merges_keep_the_newest() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let path = ObjectPath::new(tenant(1), "bucket", "key").unwrap();
    let w = node();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = store.clone();
            let path = path.clone();
            s.spawn(move || {
                for i in 0..10u64 {
                    store.merge(meta(&path, i * 4 + t, w, None)).unwrap();
                }
            });
        }
    });
    assert_eq!(store.get(&path).unwrap().unwrap().version, Hlc::new(39, 0));
}

#[test]
fn list_prefix_start_after_limit_and_isolation() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let w = node();
    let put = |t: u8, bucket: &str, key: &str, live: bool| {
        let path = ObjectPath::new(tenant(t), bucket, key).unwrap();
        let info = live.then(|| info(key));
        store.merge(meta(&path, 1, w, info)).unwrap();
    };
    for key in ["a/1", "a/2", "a/3", "b/1", "c", "a/0-deleted"] {
        put(1, "bucket", key, !key.ends_with("deleted"));
    }
    // Same tenant, other buckets (one whose name extends this one's), other tenant.
    put(1, "bucket-2", "a/9", true);
    put(1, "bucke", "a/8", true);
    put(2, "bucket", "a/7", true);

    let keys = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.path.key).collect::<Vec<_>>();
    let t1 = tenant(1);
    assert_eq!(
        keys(store.list(&t1, "bucket", "", None, 100).unwrap()),
        ["a/1", "a/2", "a/3", "b/1", "c"]
    );
    assert_eq!(
        keys(store.list(&t1, "bucket", "a/", None, 100).unwrap()),
        ["a/1", "a/2", "a/3"]
    );
    assert_eq!(
        keys(store.list(&t1, "bucket", "a/", Some("a/1"), 100).unwrap()),
        ["a/2", "a/3"]
    );
    assert_eq!(
        keys(store.list(&t1, "bucket", "a/", None, 2).unwrap()),
        ["a/1", "a/2"]
    );
    // start_after before the prefix, and past it.
    assert_eq!(
        keys(store.list(&t1, "bucket", "b", Some("a"), 100).unwrap()),
        ["b/1"]
    );
    assert!(
        store
            .list(&t1, "bucket", "a/", Some("a/3"), 100)
            .unwrap()
            .is_empty()
    );
    assert!(store.list(&t1, "bucket", "", None, 0).unwrap().is_empty());
    assert!(
        store
            .list(&t1, "bucket", "zzz", None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        keys(store.list(&tenant(2), "bucket", "", None, 100).unwrap()),
        ["a/7"]
    );
    assert!(
        store
            .list(&tenant(3), "bucket", "", None, 100)
            .unwrap()
            .is_empty()
    );
    assert!(store.list(&t1, "a/b", "", None, 100).is_err());
    assert_eq!(store.count_live_in_bucket(&t1, "bucket").unwrap(), 5);
    assert_eq!(store.count_live_in_bucket(&t1, "bucket-2").unwrap(), 1);
}

#[test]
fn range_reads_hold_tombstones_and_respect_the_limit_and_byte_bound() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let w = node();
    let t1 = tenant(1);
    for (i, key) in ["a/1", "a/2", "a/3", "b/1"].iter().enumerate() {
        let path = ObjectPath::new(t1, "bucket", *key).unwrap();
        // a/2 is a tombstone.
        let live = *key != "a/2";
        store
            .merge(meta(&path, 1 + i as u64, w, live.then(|| info(key))))
            .unwrap();
    }
    let internal = ObjectPath::new(t1, "bucket", internal_key("a/x")).unwrap();
    store.merge(meta(&internal, 1, w, Some(info("x")))).unwrap();
    let other = ObjectPath::new(tenant(2), "bucket", "a/9").unwrap();
    store.merge(meta(&other, 1, w, Some(info("o")))).unwrap();

    let keys = |r: &MetaRange| {
        r.entries
            .iter()
            .map(|m| m.path.key.clone())
            .collect::<Vec<_>>()
    };
    let all = store
        .range(&t1, "bucket", "", None, 100, usize::MAX)
        .unwrap();
    assert_eq!(keys(&all), ["a/1", "a/2", "a/3", "b/1"]);
    assert!(all.entries[1].is_tombstone());
    assert!(!all.truncated);

    let prefixed = store
        .range(&t1, "bucket", "a/", Some("a/1"), 100, usize::MAX)
        .unwrap();
    assert_eq!(keys(&prefixed), ["a/2", "a/3"]);
    assert!(!prefixed.truncated);

    // A page that fills its limit exactly at the end of the range is not cut.
    let exact = store
        .range(&t1, "bucket", "a/", None, 3, usize::MAX)
        .unwrap();
    assert_eq!(keys(&exact), ["a/1", "a/2", "a/3"]);
    assert!(!exact.truncated);
    let cut = store.range(&t1, "bucket", "", None, 2, usize::MAX).unwrap();
    assert_eq!(keys(&cut), ["a/1", "a/2"]);
    assert!(cut.truncated);

    // The byte bound cuts the page, but never below one entry.
    let one = store.range(&t1, "bucket", "", None, 100, 1).unwrap();
    assert_eq!(keys(&one), ["a/1"]);
    assert!(one.truncated);

    // Internal keys only when the prefix asks for them.
    let internal_range = store
        .range(&t1, "bucket", &internal_key(""), None, 100, usize::MAX)
        .unwrap();
    assert_eq!(keys(&internal_range), [internal_key("a/x")]);
    assert!(store.range(&t1, "a/b", "", None, 10, usize::MAX).is_err());
}

#[test]
fn scan_walks_everything_in_pages() {
    let (_dir, db) = db();
    let store = MetaStore::new(db.clone());
    let w = node();
    // More than a page, including tombstones.
    for i in 0..(PAGE + 10) {
        let path = ObjectPath::new(tenant(1), "bucket", format!("k{i:04}")).unwrap();
        let info = (i % 3 != 0).then(|| info("x"));
        store.merge(meta(&path, 1, w, info)).unwrap();
    }
    let mut all = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(after.as_deref(), 100).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|m| m.path.storage_key());
        all.extend(page);
    }
    assert_eq!(all.len(), PAGE + 10);
    assert!(
        all.windows(2)
            .all(|w| w[0].path.storage_key() < w[1].path.storage_key())
    );
    let live = (0..PAGE + 10).filter(|i| i % 3 != 0).count();
    assert_eq!(
        store
            .list(&tenant(1), "bucket", "", None, 10_000)
            .unwrap()
            .len(),
        live
    );
    assert_eq!(
        store.count_live_in_bucket(&tenant(1), "bucket").unwrap(),
        live as u64
    );

    // A corrupt record is skipped by listings, and replaced by the next merge.
    let path = ObjectPath::new(tenant(1), "bucket", "k0001").unwrap();
    db.put(TABLE, &path.storage_key(), b"garbage").unwrap();
    assert_eq!(
        store
            .list(&tenant(1), "bucket", "k000", None, 100)
            .unwrap()
            .len(),
        5
    );
    assert!(store.get(&path).is_err());
    assert!(store.merge(meta(&path, 0, w, None)).unwrap());
    assert!(store.get(&path).unwrap().unwrap().is_tombstone());
}

#[test]
fn internal_keys_are_valid_paths_but_hidden_from_client_listings() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let t = tenant(1);
    assert!(ObjectPath::new(t, "bucket", "\u{1}x").is_err());
    assert!(ObjectPath::new(t, "bucket", internal_key("\u{1}x")).is_err());
    let hidden = ObjectPath::new(t, "bucket", internal_key("mpu/1")).unwrap();
    assert!(hidden.is_internal());
    let visible = ObjectPath::new(t, "bucket", "a").unwrap();
    assert!(!visible.is_internal());
    store
        .merge(meta(&hidden, 1, node(), Some(info("h"))))
        .unwrap();
    store
        .merge(meta(&visible, 1, node(), Some(info("v"))))
        .unwrap();
    let keys = |prefix: &str, after: Option<&str>| -> Vec<String> {
        store
            .list(&t, "bucket", prefix, after, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.path.key)
            .collect()
    };
    assert_eq!(keys("", None), vec!["a".to_string()]);
    assert_eq!(keys("", Some("")), vec!["a".to_string()]);
    assert_eq!(keys(&internal_key(""), None), vec![internal_key("mpu/1")]);
    assert_eq!(
        keys(&internal_key("mpu/"), None),
        vec![internal_key("mpu/1")]
    );
}

#[test]
fn bucket_digests_follow_every_merge_and_match_a_rebuild() {
    let (w1, w2) = (node(), node());
    let mut entries = Vec::new();
    for i in 0..40u64 {
        let bucket = if i % 2 == 0 { "even" } else { "odd" };
        let path = ObjectPath::new(tenant(1), bucket, format!("k{i}")).unwrap();
        entries.push(meta(&path, 10 + i, w1, Some(info(&format!("v{i}")))));
        // A newer version of some keys, and tombstones of others.
        if i % 3 == 0 {
            entries.push(meta(&path, 100 + i, w2, Some(info(&format!("w{i}")))));
        }
        if i % 5 == 0 {
            entries.push(meta(&path, 200 + i, w2, None));
        }
    }
    // One replica builds its digests first and keeps them current at every merge; the
    // other receives the same entries in reverse order and builds them at the end.
    let (_d1, db1) = db();
    let incremental = MetaStore::new(db1);
    assert!(incremental.bucket_digests().unwrap().is_empty());
    for m in &entries {
        incremental.merge(m.clone()).unwrap();
    }
    let (_d2, db2) = db();
    let rebuilt = MetaStore::new(db2);
    for m in entries.iter().rev() {
        rebuilt.merge(m.clone()).unwrap();
    }
    let a = incremental.bucket_digests().unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a, rebuilt.bucket_digests().unwrap());
    assert_eq!(
        incremental.leaf_digests(&tenant(1), "even").unwrap(),
        rebuilt.leaf_digests(&tenant(1), "even").unwrap()
    );

    // One newer entry on one replica: only its bucket and its leaf differ, and the
    // entries of that leaf carry it.
    let path = ObjectPath::new(tenant(1), "odd", "k1").unwrap();
    let newer = meta(&path, 1_000, w1, Some(info("newest")));
    assert!(incremental.merge(newer.clone()).unwrap());
    let (ea, eb) = (
        incremental.bucket_digest(&tenant(1), "even").unwrap(),
        rebuilt.bucket_digest(&tenant(1), "even").unwrap(),
    );
    assert_eq!(ea, eb);
    assert_ne!(
        incremental.bucket_digest(&tenant(1), "odd").unwrap(),
        rebuilt.bucket_digest(&tenant(1), "odd").unwrap()
    );
    let ours = incremental.leaf_digests(&tenant(1), "odd").unwrap();
    let theirs = rebuilt.leaf_digests(&tenant(1), "odd").unwrap();
    let differing: Vec<usize> = (0..LEAVES).filter(|l| ours[*l] != theirs[*l]).collect();
    assert_eq!(differing, vec![leaf_of(&path.storage_key())]);
    let sent = incremental
        .leaf_entries(&tenant(1), "odd", &differing, None, 1000)
        .unwrap();
    assert!(sent.contains(&newer));
    assert!(
        sent.iter()
            .all(|m| leaf_of(&m.path.storage_key()) == differing[0])
    );
    for m in sent {
        rebuilt.merge(m).unwrap();
    }
    assert_eq!(
        incremental.bucket_digests().unwrap(),
        rebuilt.bucket_digests().unwrap()
    );
    // A held entry changes nothing, and the generation counts only what was stored.
    let generation = rebuilt.generation();
    assert!(!rebuilt.merge(newer).unwrap());
    assert_eq!(rebuilt.generation(), generation);
}

#[test]
fn leaf_entries_pages_through_a_bucket() {
    let w = node();
    let (_d, db) = db();
    let store = MetaStore::new(db);
    for i in 0..300u64 {
        let path = ObjectPath::new(tenant(2), "pages", format!("k{i:04}")).unwrap();
        store.merge(meta(&path, 10, w, Some(info("x")))).unwrap();
    }
    let all: Vec<usize> = (0..LEAVES).collect();
    let mut seen = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .leaf_entries(&tenant(2), "pages", &all, after.as_deref(), 64)
            .unwrap();
        seen += page.len();
        match page.last() {
            Some(last) if page.len() == 64 => after = Some(last.path.storage_key()),
            _ => break,
        }
    }
    assert_eq!(seen, 300);
    // Another tenant's bucket of the same name is not reached.
    assert!(
        store
            .leaf_entries(&tenant(3), "pages", &all, None, 10)
            .unwrap()
            .is_empty()
    );
}

fn locked(tag: &str, mode: &str, until_ms: u64) -> ObjectInfo {
    let mut info = info(tag);
    info.user_meta.insert(LOCK_MODE_ENTRY.into(), mode.into());
    info.user_meta
        .insert(LOCK_UNTIL_ENTRY.into(), until_ms.to_string());
    info
}

/// A version under COMPLIANCE retention cannot be deleted, replaced or weakened by an
/// entry written before the retention ends, sealed or not; tags and a longer retention
/// over the same content can be written, and anything after the end.
#[test]
fn a_compliance_locked_version_is_neither_deleted_nor_weakened_before_it_lapses() {
    let (_dir, db) = db();
    let store = MetaStore::new(db);
    let version = ObjectPath::new(tenant(1), "bkt", internal_key("ver/doc/0123")).unwrap();
    let (w, until) = (node(), 10_000);
    let held = meta(&version, 100, w, Some(locked("a", COMPLIANCE_MODE, until)));
    assert_eq!(
        store.merge_outcome(held.clone()).unwrap(),
        MergeOutcome::Stored
    );

    let mut other_content = locked("b", COMPLIANCE_MODE, until);
    other_content.manifest = ChunkId::of(b"other");
    for breaking in [
        meta(&version, 200, w, None),
        meta(&version, 200, w, Some(info("a"))),
        meta(&version, 200, w, Some(locked("a", "GOVERNANCE", until))),
        meta(
            &version,
            200,
            w,
            Some(locked("a", COMPLIANCE_MODE, until - 1)),
        ),
        meta(&version, 200, w, Some(other_content)),
    ] {
        assert!(breaking.breaks_lock_of(&held), "{breaking:?}");
        assert!(matches!(
            store.merge_outcome(breaking).unwrap(),
            MergeOutcome::Superseded { .. }
        ));
    }
    assert_eq!(store.get(&version).unwrap(), Some(held.clone()));

    // Tags (other user metadata) and a longer retention over the same content.
    let mut tagged = locked("a", COMPLIANCE_MODE, until + 5);
    tagged.user_meta.insert("k".into(), "tagged".into());
    let longer = meta(&version, 300, w, Some(tagged));
    assert!(!longer.breaks_lock_of(&held));
    assert_eq!(
        store.merge_outcome(longer.clone()).unwrap(),
        MergeOutcome::Stored
    );

    // After the retention ends (by the deleting entry's own clock), a delete is a delete.
    let late = meta(&version, until + 5, w, None);
    assert!(!late.breaks_lock_of(&longer));
    assert_eq!(store.merge_outcome(late).unwrap(), MergeOutcome::Stored);

    // Only version objects are held: an object's own key keeps a copy of its current
    // version, which a newer version replaces.
    let current = ObjectPath::new(tenant(1), "bkt", "doc").unwrap();
    let copy = meta(&current, 100, w, Some(locked("a", COMPLIANCE_MODE, until)));
    assert!(!meta(&current, 200, w, Some(info("b"))).breaks_lock_of(&copy));
    // GOVERNANCE is the gateway's to enforce (its bypass depends on the request).
    let governed = meta(&version, 100, w, Some(locked("a", "GOVERNANCE", until)));
    assert!(!meta(&version, 200, w, None).breaks_lock_of(&governed));
    // A malformed end reads as never, not as lapsed.
    let mut malformed = locked("a", COMPLIANCE_MODE, 0);
    malformed
        .user_meta
        .insert(LOCK_UNTIL_ENTRY.into(), "soon".into());
    let malformed = meta(&version, 100, w, Some(malformed));
    assert!(meta(&version, u64::MAX - 1, w, None).breaks_lock_of(&malformed));
}
