//! Unit tests of versioning: internal version ids and the keys of version objects.

use super::*;

#[test]
fn version_keys_round_trip_and_newer_ids_sort_first() {
    let older = new_internal_id();
    let newer = new_internal_id();
    assert!(newer < older, "{newer} should sort before {older}");
    assert!(is_internal_id(&older));
    for key in ["a", "a/b", "dir/with/slashes/", "ünïcode"] {
        let stored = version_key(key, &older);
        assert_eq!(parse_version_key(&stored), Some((key, older.as_str())));
        assert!(stored.starts_with(&versions_prefix(key)));
    }
    // A key's versions are not mistaken for those of a longer key sharing its prefix.
    let nested = version_key("a/b", &older);
    let prefix = versions_prefix("a");
    let rest = nested.strip_prefix(&prefix).unwrap_or_default();
    assert!(!is_internal_id(rest));
    assert_eq!(parse_version_key(&internal_key("ver/short")), None);
    assert_eq!(parse_version_key(&internal_key("mpu/x")), None);
}

#[test]
fn public_ids_default_to_null() {
    let mut info = ObjectInfo {
        manifest: xnode_store::ChunkId::of(b"m"),
        size: 0,
        etag: "e".into(),
        content_type: "t".into(),
        user_meta: BTreeMap::new(),
        created_ms: 1,
    };
    assert_eq!(public_id(&info), NULL_VERSION);
    info.user_meta.insert(VERSION_ID.into(), "abc".into());
    assert_eq!(public_id(&info), "abc");
    assert!(!is_delete_marker(&info));
}
