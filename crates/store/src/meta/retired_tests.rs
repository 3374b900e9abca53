//! Tests of the cold table of retired tombstones, and of removing tombstones from the
//! hot table.

#![allow(clippy::unwrap_used)]

use super::tests::{db, info, meta, node, tenant};
use super::*;
use crate::entropy::{LEAVES, leaf_of};

#[test]
fn removing_a_tombstone_keeps_the_digests_equal_to_a_rebuild() {
    let w = node();
    let (_d, db1) = db();
    let store = MetaStore::new(db1);
    // Digests built before the removal, so the removal must keep them current.
    assert!(store.bucket_digests().unwrap().is_empty());
    let mut tombstones = Vec::new();
    for i in 0..10u64 {
        let path = ObjectPath::new(tenant(1), "bucket", format!("k{i}")).unwrap();
        store
            .merge(meta(&path, 10, w, Some(info(&format!("v{i}")))))
            .unwrap();
        if i % 2 == 0 {
            let tombstone = meta(&path, 20, w, None);
            store.merge(tombstone.clone()).unwrap();
            tombstones.push(tombstone);
        }
    }
    // A bucket holding only a tombstone: removing it must drop the bucket's digest
    // altogether, as a rebuild would not list it.
    let lone = ObjectPath::new(tenant(1), "lone", "gone").unwrap();
    let lone_tombstone = meta(&lone, 30, w, None);
    store.merge(lone_tombstone.clone()).unwrap();
    tombstones.push(lone_tombstone);

    let generation = store.generation();
    for tombstone in &tombstones {
        assert!(store.retire_tombstone_if_equal(tombstone).unwrap());
        assert_eq!(store.get_hot(&tombstone.path).unwrap(), None);
    }
    assert!(
        store.generation() > generation,
        "a removal counts as a change"
    );
    // A second removal of the same entry finds nothing.
    assert!(!store.retire_tombstone_if_equal(&tombstones[0]).unwrap());

    // The same live entries merged into a fresh table, digests built from scratch.
    let (_d2, db2) = db();
    let fresh = MetaStore::new(db2);
    for i in (1..10u64).step_by(2) {
        let path = ObjectPath::new(tenant(1), "bucket", format!("k{i}")).unwrap();
        fresh
            .merge(meta(&path, 10, w, Some(info(&format!("v{i}")))))
            .unwrap();
    }
    let kept = store.bucket_digests().unwrap();
    assert_eq!(kept.len(), 1, "the emptied bucket has no digest left");
    assert_eq!(kept, fresh.bucket_digests().unwrap());
    assert_eq!(
        store.leaf_digests(&tenant(1), "bucket").unwrap(),
        fresh.leaf_digests(&tenant(1), "bucket").unwrap()
    );
    assert_eq!(
        store.scan(None, 100).unwrap(),
        fresh.scan(None, 100).unwrap()
    );
}

#[test]
fn a_tombstone_is_removed_only_while_it_is_exactly_the_entry_held() {
    let (w1, w2) = (node(), node());
    let (_d, db) = db();
    let store = MetaStore::new(db);
    let path = ObjectPath::new(tenant(1), "bucket", "key").unwrap();
    let tombstone = meta(&path, 20, w1, None);
    store.merge(tombstone.clone()).unwrap();

    // Another tombstone of the same key (other clock or writer) is not the one held.
    assert!(
        !store
            .retire_tombstone_if_equal(&meta(&path, 19, w1, None))
            .unwrap()
    );
    assert!(
        !store
            .retire_tombstone_if_equal(&meta(&path, 20, w2, None))
            .unwrap()
    );
    // A live entry is never removed, even when it is the one held.
    let live_path = ObjectPath::new(tenant(1), "bucket", "live").unwrap();
    let live = meta(&live_path, 5, w1, Some(info("x")));
    store.merge(live.clone()).unwrap();
    assert!(!store.retire_tombstone_if_equal(&live).unwrap());
    assert_eq!(store.get(&live_path).unwrap(), Some(live));

    // The key was written again after the tombstone was confirmed: the write stays.
    let rewritten = meta(&path, 30, w2, Some(info("again")));
    store.merge(rewritten.clone()).unwrap();
    let generation = store.generation();
    let digests = store.bucket_digests().unwrap();
    assert!(!store.retire_tombstone_if_equal(&tombstone).unwrap());
    assert_eq!(store.get(&path).unwrap(), Some(rewritten));
    assert_eq!(store.generation(), generation);
    assert_eq!(store.bucket_digests().unwrap(), digests);
}

#[test]
fn a_retired_tombstone_outranks_older_entries_and_answers_point_reads_only() {
    let (w1, w2) = (node(), node());
    let (_d, db1) = db();
    let store = MetaStore::new(db1);
    // Digests built first, so every step below must keep them current.
    assert!(store.bucket_digests().unwrap().is_empty());
    let path = ObjectPath::new(tenant(1), "bucket", "gone").unwrap();
    let other = ObjectPath::new(tenant(1), "bucket", "kept").unwrap();
    let old = meta(&path, 10, w1, Some(info("old")));
    let tombstone = meta(&path, 20, w1, None);
    let kept = meta(&other, 10, w1, Some(info("kept")));
    for m in [&old, &tombstone, &kept] {
        store.merge(m.clone()).unwrap();
    }
    assert!(store.retire_tombstone_if_equal(&tombstone).unwrap());
    assert_eq!(store.retired_count().unwrap(), 1);

    // Out of the hot table, listings, ranges, scans and digests...
    assert_eq!(store.get_hot(&path).unwrap(), None);
    assert_eq!(store.scan(None, 100).unwrap(), std::slice::from_ref(&kept));
    let range = store
        .range(&tenant(1), "bucket", "", None, 100, 1 << 20)
        .unwrap();
    assert_eq!(range.entries, std::slice::from_ref(&kept));
    assert_eq!(
        store.list(&tenant(1), "bucket", "", None, 100).unwrap(),
        std::slice::from_ref(&kept)
    );
    let (_d2, db2) = db();
    let fresh = MetaStore::new(db2);
    fresh.merge(kept.clone()).unwrap();
    assert_eq!(
        store.bucket_digests().unwrap(),
        fresh.bucket_digests().unwrap()
    );
    assert_eq!(
        store.leaf_digests(&tenant(1), "bucket").unwrap(),
        fresh.leaf_digests(&tenant(1), "bucket").unwrap()
    );
    // ...but a point read still answers the tombstone.
    assert_eq!(store.get(&path).unwrap(), Some(tombstone.clone()));
    assert_eq!(store.get_retired(&path).unwrap(), Some(tombstone.clone()));

    // The version the delete replaced, offered again, loses as it did to the hot
    // tombstone, plainly or conditionally; the tombstone itself is held already.
    let generation = store.generation();
    let lost = MergeOutcome::Superseded {
        version: tombstone.version,
        writer: w1,
    };
    assert_eq!(store.merge_outcome(old.clone()).unwrap(), lost);
    assert_eq!(
        store.merge_if(old.clone(), None).unwrap(),
        ConditionalMerge::Moved {
            version: tombstone.version,
            writer: w1
        }
    );
    assert_eq!(
        store.merge_outcome(tombstone.clone()).unwrap(),
        MergeOutcome::Held
    );
    assert_eq!(store.get_hot(&path).unwrap(), None);
    assert_eq!(store.generation(), generation);
    assert_eq!(
        store.bucket_digests().unwrap(),
        fresh.bucket_digests().unwrap()
    );

    // A strictly newer write brings the key back and the cold record goes.
    let again = meta(&path, 30, w2, Some(info("again")));
    assert_eq!(
        store.merge_outcome(again.clone()).unwrap(),
        MergeOutcome::Stored
    );
    assert_eq!(store.get_retired(&path).unwrap(), None);
    assert_eq!(store.retired_count().unwrap(), 0);
    assert_eq!(store.get(&path).unwrap(), Some(again.clone()));
    fresh.merge(again).unwrap();
    assert_eq!(
        store.bucket_digests().unwrap(),
        fresh.bucket_digests().unwrap()
    );
    assert_eq!(
        store.scan(None, 100).unwrap(),
        fresh.scan(None, 100).unwrap()
    );
}

#[test]
fn a_retired_tombstone_from_a_peer_replaces_only_older_entries_and_keeps_the_cold_digest() {
    let w1 = node();
    let (_d, db1) = db();
    let store = MetaStore::new(db1);
    // Both digests built first, so every step below must keep them current.
    assert!(store.bucket_digests().unwrap().is_empty());
    let empty = store.retired_bucket_digest(&tenant(1), "bucket").unwrap();
    assert!(empty.is_empty());
    let older = ObjectPath::new(tenant(1), "bucket", "older").unwrap();
    let newer = ObjectPath::new(tenant(1), "bucket", "newer").unwrap();
    let old_version = meta(&older, 10, w1, Some(info("old")));
    let new_version = meta(&newer, 30, w1, Some(info("new")));
    store.merge(old_version.clone()).unwrap();
    store.merge(new_version.clone()).unwrap();

    // A retired tombstone newer than the hot entry replaces it: the key reads deleted,
    // leaves the hot table and its digest, and the cold digest counts it.
    let cold_older = meta(&older, 20, w1, None);
    assert!(store.merge_retired(cold_older.clone()).unwrap());
    assert_eq!(store.get_hot(&older).unwrap(), None);
    assert_eq!(store.get(&older).unwrap(), Some(cold_older.clone()));
    // The old version offered again loses to it, as to a hot tombstone.
    assert!(!store.merge(old_version).unwrap());
    assert_eq!(store.get(&older).unwrap(), Some(cold_older.clone()));

    // One older than the hot entry changes nothing.
    let cold_newer = meta(&newer, 20, w1, None);
    assert!(!store.merge_retired(cold_newer).unwrap());
    assert_eq!(store.get(&newer).unwrap(), Some(new_version.clone()));
    assert_eq!(store.get_retired(&newer).unwrap(), None);

    // A live entry is never stored as retired; the same record twice is held already.
    let live_as_cold = meta(&newer, 40, w1, Some(info("live")));
    assert!(!store.merge_retired(live_as_cold).unwrap());
    assert_eq!(store.get(&newer).unwrap(), Some(new_version.clone()));
    assert!(!store.merge_retired(cold_older.clone()).unwrap());
    assert_eq!(store.retired_count().unwrap(), 1);

    // Both digests equal those of a replica that built them from the same tables.
    let (_d2, db2) = db();
    let fresh = MetaStore::new(db2);
    fresh.merge(new_version).unwrap();
    fresh.merge(cold_older.clone()).unwrap();
    assert!(fresh.retire_tombstone_if_equal(&cold_older).unwrap());
    assert_eq!(
        store.bucket_digests().unwrap(),
        fresh.bucket_digests().unwrap()
    );
    let digest = store.retired_bucket_digest(&tenant(1), "bucket").unwrap();
    assert!(!digest.is_empty());
    assert_eq!(
        digest,
        fresh.retired_bucket_digest(&tenant(1), "bucket").unwrap()
    );
    let (_d3, db3) = db();
    let rebuilt = MetaStore::new(db3);
    rebuilt.merge(cold_older.clone()).unwrap();
    assert!(rebuilt.retire_tombstone_if_equal(&cold_older).unwrap());
    assert_eq!(
        digest,
        rebuilt.retired_bucket_digest(&tenant(1), "bucket").unwrap()
    );

    // A newer write brings the key back; the cold record leaves the cold digest.
    store
        .merge(meta(&older, 50, w1, Some(info("back"))))
        .unwrap();
    assert!(
        store
            .retired_bucket_digest(&tenant(1), "bucket")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn retired_leaves_name_only_the_cold_records_that_differ() {
    let w = node();
    let (_d1, db1) = db();
    let (_d2, db2) = db();
    let ours = MetaStore::new(db1);
    let theirs = MetaStore::new(db2);
    let mut shared = Vec::new();
    for i in 0..20u64 {
        let path = ObjectPath::new(tenant(1), "bucket", format!("k{i}")).unwrap();
        shared.push(meta(&path, 20, w, None));
    }
    for tombstone in &shared {
        assert!(ours.merge_retired(tombstone.clone()).unwrap());
        assert!(theirs.merge_retired(tombstone.clone()).unwrap());
    }
    let only_ours = meta(
        &ObjectPath::new(tenant(1), "bucket", "extra").unwrap(),
        20,
        w,
        None,
    );
    assert!(ours.merge_retired(only_ours.clone()).unwrap());
    // The hot table knows nothing of them.
    assert!(ours.bucket_digests().unwrap().is_empty());
    assert_eq!(
        ours.leaf_digests(&tenant(1), "bucket").unwrap(),
        theirs.leaf_digests(&tenant(1), "bucket").unwrap()
    );
    assert_eq!(ours.retired_bucket_digests().unwrap().len(), 1);
    let (a, b) = (
        ours.retired_leaf_digests(&tenant(1), "bucket").unwrap(),
        theirs.retired_leaf_digests(&tenant(1), "bucket").unwrap(),
    );
    let differing: Vec<usize> = (0..LEAVES).filter(|&l| a[l] != b[l]).collect();
    assert_eq!(differing, [leaf_of(&only_ours.path.storage_key())]);
    let sent = ours
        .retired_leaf_entries(&tenant(1), "bucket", &differing, None, 100)
        .unwrap();
    assert!(sent.contains(&only_ours));
    assert!(sent.iter().all(|m| m.is_tombstone()));
    for tombstone in sent {
        theirs.merge_retired(tombstone).unwrap();
    }
    assert_eq!(
        ours.retired_bucket_digests().unwrap(),
        theirs.retired_bucket_digests().unwrap()
    );
}
