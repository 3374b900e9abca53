//! The ownership setting as it arrives from peers, and who owns what a write makes.

use std::sync::Arc;

use hyper::header::HeaderValue;
use xnode_registry::{DefaultPolicy, Entry, Registry, RegistryMetrics};
use xnode_storage::bucket_settings::{
    BUCKET_SETTING_RECORD_VERSION, BucketSettingRecord, setting_key,
};
use xnode_storage::buckets::{BUCKET_RECORD_VERSION, BucketRecord, bucket_key};
use xnode_types::{Hlc, HlcClock, SecretKey, unix_ms};

use super::*;

const BUCKET: &str = "photos";

/// A registry holding `owner`'s claim on [`BUCKET`], as a peer would have sent it.
fn registry_with_bucket(dir: &tempfile::TempDir, owner: &SecretKey) -> (Registry, u64) {
    let registry = Registry::open(
        xnode_db::Db::open(&dir.path().join("db")).unwrap(),
        Arc::new(HlcClock::new()),
        Box::new(DefaultPolicy),
        RegistryMetrics::default(),
    )
    .unwrap();
    let created_ms = unix_ms();
    let record = BucketRecord {
        v: BUCKET_RECORD_VERSION,
        name: BUCKET.into(),
        owner: owner.public().to_hex(),
        created_ms,
        replication_factor: None,
        regions: Vec::new(),
    };
    let claim = Entry::sign(
        owner,
        bucket_key(&owner.public(), BUCKET),
        Some(serde_json::to_vec(&record).unwrap()),
        Hlc::new(created_ms, 0),
    )
    .unwrap();
    registry.apply_remote(claim).unwrap();
    (registry, created_ms)
}

/// An ownership setting entry signed by `signer` under `owner`'s key for [`BUCKET`],
/// holding `document`, dated `logical` ticks after the bucket's creation.
fn setting(
    signer: &SecretKey,
    owner: &SecretKey,
    created_ms: u64,
    document: serde_json::Value,
    logical: u32,
) -> Entry {
    let record = BucketSettingRecord {
        v: BUCKET_SETTING_RECORD_VERSION,
        kind: OWNERSHIP_KIND.into(),
        bucket: BUCKET.into(),
        bucket_created_ms: created_ms,
        document,
    };
    Entry::sign(
        signer,
        setting_key(OWNERSHIP_KIND, &owner.public(), BUCKET),
        Some(serde_json::to_vec(&record).unwrap()),
        Hlc::new(created_ms, logical),
    )
    .unwrap()
}

#[test]
fn a_peers_ownership_setting_counts_only_if_the_owner_signed_a_known_mode() {
    let dir = tempfile::tempdir().unwrap();
    let owner = SecretKey::generate();
    let stranger = SecretKey::generate();
    let (registry, created) = registry_with_bucket(&dir, &owner);
    assert_eq!(ownership_of(&registry, BUCKET), None);

    // The owner's own setting, as gossip or anti-entropy brings it.
    let good = serde_json::json!({"v": 1, "object_ownership": "BucketOwnerEnforced"});
    registry
        .apply_remote(setting(&owner, &owner, created, good.clone(), 1))
        .unwrap();
    assert_eq!(
        ownership_of(&registry, BUCKET),
        Some(Mode::BucketOwnerEnforced)
    );
    assert!(acls_disabled(&registry, BUCKET));

    // A stranger cannot write under the owner's key: the registry refuses the entry,
    // and the owner's setting stands.
    let relaxed = serde_json::json!({"v": 1, "object_ownership": "ObjectWriter"});
    assert!(
        registry
            .apply_remote(setting(&stranger, &owner, created, relaxed, 2))
            .is_err()
    );
    assert_eq!(
        ownership_of(&registry, BUCKET),
        Some(Mode::BucketOwnerEnforced)
    );

    // Documents the gateway does not understand (an unknown mode, a newer version, more
    // fields than it knows) read as no setting, never as some other mode.
    for (logical, document) in [
        serde_json::json!({"v": 1, "object_ownership": "EveryoneOwnsEverything"}),
        serde_json::json!({"v": 2, "object_ownership": "ObjectWriter"}),
        serde_json::json!({"v": 1, "object_ownership": "ObjectWriter", "extra": true}),
        serde_json::json!("ObjectWriter"),
    ]
    .into_iter()
    .enumerate()
    {
        let logical = 10 + logical as u32;
        registry
            .apply_remote(setting(&owner, &owner, created, document.clone(), logical))
            .unwrap();
        assert_eq!(ownership_of(&registry, BUCKET), None, "{document}");
    }

    // A setting left from an earlier bucket of the same name does not apply.
    registry
        .apply_remote(setting(&owner, &owner, created - 1, good, 20))
        .unwrap();
    assert_eq!(ownership_of(&registry, BUCKET), None);
}

#[test]
fn who_owns_a_write_follows_the_buckets_mode() {
    let dir = tempfile::tempdir().unwrap();
    let owner = SecretKey::generate();
    let writer = SecretKey::generate().public();
    let (registry, created) = registry_with_bucket(&dir, &owner);
    let bucket_owner = owner.public();
    let none = hyper::HeaderMap::new();
    let mut full_control = hyper::HeaderMap::new();
    full_control.insert(
        "x-amz-acl",
        HeaderValue::from_static(BUCKET_OWNER_FULL_CONTROL),
    );
    let mut private = hyper::HeaderMap::new();
    private.insert("x-amz-acl", HeaderValue::from_static("private"));
    let write = |headers: &hyper::HeaderMap, writer: Option<&PublicKeyBytes>| {
        owner_of_write(&registry, BUCKET, &bucket_owner, writer, headers)
    };

    // No setting: the writer owns its object; an unsigned writer owns nothing.
    assert_eq!(write(&none, Some(&writer)).unwrap(), writer);
    assert_eq!(write(&none, None).unwrap(), bucket_owner);

    let set = |mode: &str, logical| {
        let document = serde_json::json!({"v": 1, "object_ownership": mode});
        registry
            .apply_remote(setting(&owner, &owner, created, document, logical))
            .unwrap();
    };
    set("BucketOwnerPreferred", 1);
    assert_eq!(write(&none, Some(&writer)).unwrap(), writer);
    assert_eq!(write(&private, Some(&writer)).unwrap(), writer);
    assert_eq!(write(&full_control, Some(&writer)).unwrap(), bucket_owner);

    set("ObjectWriter", 2);
    assert_eq!(write(&full_control, Some(&writer)).unwrap(), writer);

    set("BucketOwnerEnforced", 3);
    assert_eq!(write(&none, Some(&writer)).unwrap(), bucket_owner);
    assert_eq!(write(&full_control, Some(&writer)).unwrap(), bucket_owner);
    assert_eq!(
        write(&private, Some(&writer)).unwrap_err().code().as_str(),
        "AccessControlListNotSupported"
    );
    let mut grant = hyper::HeaderMap::new();
    grant.insert("x-amz-grant-read", HeaderValue::from_static("uri=\"x\""));
    assert_eq!(
        write(&grant, Some(&writer)).unwrap_err().code().as_str(),
        "AccessControlListNotSupported"
    );
}

#[test]
fn an_objects_owner_is_recorded_only_when_it_is_not_the_buckets() {
    let bucket_owner = SecretKey::generate().public();
    let writer = SecretKey::generate().public();
    let mut meta = BTreeMap::new();
    assert_eq!(object_owner(&meta, &bucket_owner), bucket_owner);
    record_owner(&mut meta, &writer, &bucket_owner);
    assert_eq!(object_owner(&meta, &bucket_owner), writer);
    record_owner(&mut meta, &bucket_owner, &bucket_owner);
    assert!(meta.is_empty());
    // An entry that does not parse names no one else.
    meta.insert(OBJECT_OWNER.to_owned(), "not a key".to_owned());
    assert_eq!(object_owner(&meta, &bucket_owner), bucket_owner);
}
