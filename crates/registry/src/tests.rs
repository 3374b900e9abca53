//! Unit tests for the registry CRDT, its policy and anti-entropy.

use std::sync::Arc;

use xnode_db::Db;
use xnode_types::{Hlc, HlcClock, NodeRecord, SecretKey};

use super::*;
use crate::sync::{SyncRequest, SyncResponse};

fn open_registry(dir: &tempfile::TempDir, name: &str) -> Registry {
    let db = Db::open(&dir.path().join(name)).unwrap();
    Registry::open(
        db,
        Arc::new(HlcClock::new()),
        Box::new(DefaultPolicy),
        RegistryMetrics::default(),
    )
    .unwrap()
}

fn tenant_key(key: &SecretKey, suffix: &str) -> String {
    format!("tenant/{}/{suffix}", key.public().to_hex())
}

/// A fixed set of conflicting writes: same keys, different clocks and owners' values.
fn conflicting_entries() -> Vec<Entry> {
    let a = SecretKey::from_seed(&[1; 32]).unwrap();
    let b = SecretKey::from_seed(&[2; 32]).unwrap();
    let mut out = Vec::new();
    for (i, wall) in [5u64, 8, 7, 9, 3].iter().enumerate() {
        let key = tenant_key(&a, "x");
        let value = if i == 3 { None } else { Some(vec![i as u8]) };
        out.push(Entry::sign(&a, key, value, Hlc::new(*wall, i as u32 % 2)).unwrap());
    }
    for wall in [4u64, 8] {
        out.push(
            Entry::sign(
                &b,
                tenant_key(&b, "y"),
                Some(vec![wall as u8]),
                Hlc::new(wall, 0),
            )
            .unwrap(),
        );
    }
    out
}

fn state(reg: &Registry) -> Vec<Entry> {
    reg.snapshot()
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let head = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, head.clone());
            out.push(p);
        }
    }
    out
}

#[test]
fn merge_is_commutative_and_associative() {
    // Applying the same set of entries in every order gives the same state: that is
    // commutativity and associativity of the merge for this set.
    let entries = conflicting_entries();
    let dir = tempfile::tempdir().unwrap();
    let reference = open_registry(&dir, "ref");
    for e in &entries {
        reference.apply_remote(e.clone()).unwrap();
    }
    let expected = state(&reference);
    // Entries 0..5 are on one key; permute a 5-element subset fully (120 orders).
    for (n, order) in permutations(&entries[..5])
        .into_iter()
        .enumerate()
        .step_by(7)
    {
        let reg = open_registry(&dir, &format!("p{n}"));
        for e in order.iter().chain(&entries[5..]) {
            reg.apply_remote(e.clone()).unwrap();
        }
        assert_eq!(state(&reg), expected, "order {n} diverged");
    }
    // The winner on the contested key is the highest clock: wall 9 (index 3, a tombstone).
    let a = SecretKey::from_seed(&[1; 32]).unwrap();
    assert!(reference.get(&tenant_key(&a, "x")).is_none());
    assert!(
        reference
            .get_any(&tenant_key(&a, "x"))
            .unwrap()
            .is_tombstone()
    );
}

#[test]
fn merge_is_idempotent() {
    let entries = conflicting_entries();
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    for e in &entries {
        reg.apply_remote(e.clone()).unwrap();
    }
    let once = state(&reg);
    for e in &entries {
        reg.apply_remote(e.clone()).unwrap();
    }
    assert_eq!(state(&reg), once);
}

#[test]
fn bad_signature_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    let key = SecretKey::generate();
    let mut entry =
        Entry::sign(&key, tenant_key(&key, "a"), Some(vec![1]), Hlc::new(1, 0)).unwrap();
    entry.value = Some(vec![2]);
    assert!(matches!(
        reg.apply_remote(entry),
        Err(RegistryError::BadSignature { .. })
    ));
    assert_eq!(reg.metrics().invalid_signatures.get(), 1);
    assert!(reg.list("").is_empty());
}

#[test]
fn an_entry_no_newer_than_the_held_one_is_dropped_unverified_and_a_newer_forgery_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    let key = SecretKey::generate();
    let held = Entry::sign(&key, tenant_key(&key, "a"), Some(vec![1]), Hlc::new(5, 0)).unwrap();
    reg.apply_remote(held.clone()).unwrap();
    // A copy with a changed value but the held entry's version: stale, whatever its
    // signature, and the held value stays.
    let mut same_version = held.clone();
    same_version.value = Some(vec![2]);
    assert!(matches!(reg.apply_remote(same_version), Ok(Applied::Stale)));
    assert_eq!(reg.metrics().invalid_signatures.get(), 0);
    // An older one, likewise.
    let older = Entry::sign(&key, tenant_key(&key, "a"), Some(vec![3]), Hlc::new(4, 0)).unwrap();
    assert!(matches!(reg.apply_remote(older), Ok(Applied::Stale)));
    // A forgery that claims to be newer is checked and refused.
    let mut newer = held.clone();
    newer.hlc = Hlc::new(6, 0);
    newer.value = Some(vec![4]);
    assert!(matches!(
        reg.apply_remote(newer),
        Err(RegistryError::BadSignature { .. })
    ));
    assert_eq!(reg.get(&held.key).unwrap().value, Some(vec![1]));
}

#[test]
fn a_batch_from_a_peer_is_checked_entry_by_entry_and_keeps_the_newest_of_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    let key = SecretKey::generate();
    let sign = |suffix: &str, value: u8, wall: u64| {
        Entry::sign(
            &key,
            tenant_key(&key, suffix),
            Some(vec![value]),
            Hlc::new(wall, 0),
        )
        .unwrap()
    };
    reg.apply_remote(sign("held", 1, 10)).unwrap();
    let mut forged = sign("forged", 1, 1);
    forged.value = Some(vec![9]);
    let stranger = SecretKey::generate();
    let foreign = Entry::sign(
        &stranger,
        tenant_key(&key, "x"),
        Some(vec![1]),
        Hlc::new(1, 0),
    )
    .unwrap();
    let results = reg.apply_remote_many(vec![
        sign("a", 1, 2),
        forged,
        sign("held", 2, 5),
        sign("a", 3, 4),
        foreign,
        sign("a", 2, 3),
    ]);
    let outcomes: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(applied) => format!("{applied:?}"),
            Err(RegistryError::BadSignature { .. }) => "bad signature".into(),
            Err(RegistryError::Forbidden { .. }) => "forbidden".into(),
            Err(e) => format!("{e}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "Stale",
            "bad signature",
            "Stale",
            "Updated",
            "forbidden",
            "Stale"
        ]
    );
    assert_eq!(
        reg.get(&tenant_key(&key, "a")).unwrap().value,
        Some(vec![3])
    );
    assert_eq!(
        reg.get(&tenant_key(&key, "held")).unwrap().value,
        Some(vec![1])
    );
    assert!(reg.get(&tenant_key(&key, "forged")).is_none());
    // What was merged is durable.
    drop(reg);
    let reg = open_registry(&dir, "r");
    assert_eq!(
        reg.get(&tenant_key(&key, "a")).unwrap().value,
        Some(vec![3])
    );
}

#[test]
fn policy_limits_owners_to_their_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    let node = SecretKey::generate();
    let other = SecretKey::generate();
    let own_key = NodeRecord::registry_key(&node.node_id());
    assert!(reg.put(&node, &own_key, vec![1]).is_ok());
    // Another key may not write this node's record, nor a tenant's namespace.
    let forged = Entry::sign(
        &other,
        own_key.clone(),
        Some(vec![9]),
        Hlc::new(u64::MAX / 2, 0),
    )
    .unwrap();
    assert!(matches!(
        reg.apply_remote(forged),
        Err(RegistryError::Forbidden { .. })
    ));
    assert_eq!(reg.metrics().rejected_by_policy.get(), 1);
    assert!(reg.put(&other, &tenant_key(&node, "x"), vec![1]).is_err());
    assert!(reg.put(&other, "unknown/space", vec![1]).is_err());
    assert!(reg.put(&other, "", vec![1]).is_err());
    assert!(reg.put(&other, "has space", vec![1]).is_err());
    assert_eq!(reg.get(&own_key).unwrap().value, Some(vec![1]));
}

#[test]
fn entries_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    {
        let reg = open_registry(&dir, "r");
        reg.put(&key, &tenant_key(&key, "a"), vec![1]).unwrap();
        reg.delete(&key, &tenant_key(&key, "a")).unwrap();
        reg.put(&key, &tenant_key(&key, "b"), vec![2]).unwrap();
    }
    let reg = open_registry(&dir, "r");
    assert!(reg.get(&tenant_key(&key, "a")).is_none());
    assert_eq!(
        reg.get(&tenant_key(&key, "b")).unwrap().value,
        Some(vec![2])
    );
    // A local write after restart still orders after what was written before it.
    let later = reg.put(&key, &tenant_key(&key, "b"), vec![3]).unwrap();
    assert_eq!(reg.get(&tenant_key(&key, "b")).unwrap(), later);
}

#[test]
fn garbage_bytes_from_peers_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    for bytes in [&b""[..], &[1], &[1, 1], &[1, 1, 0xff, 0xff], &[9, 9, 9]] {
        assert!(reg.apply_remote_bytes(bytes).is_err());
    }
    assert!(reg.metrics().malformed.get() >= 4);
}

async fn sync_pair(a: &Registry, b: &Registry) -> crate::sync::SyncStats {
    a.sync_with(true, |req: SyncRequest| {
        // Round-trip through the wire encoding, as a real transport would.
        let bytes = xnode_wire::encode(&req).unwrap();
        let req: SyncRequest = xnode_wire::decode(&bytes, sync::MAX_SYNC_MESSAGE_BYTES).unwrap();
        let resp = b.handle_sync(req);
        let bytes = xnode_wire::encode(&resp).unwrap();
        let resp: Result<SyncResponse, String> =
            xnode_wire::decode(&bytes, sync::MAX_SYNC_MESSAGE_BYTES).map_err(|e| e.to_string());
        async move { resp }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn anti_entropy_converges_two_diverged_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_registry(&dir, "a");
    let b = open_registry(&dir, "b");
    let ka = SecretKey::generate();
    let kb = SecretKey::generate();
    for i in 0..300 {
        a.put(&ka, &tenant_key(&ka, &format!("k{i}")), vec![i as u8])
            .unwrap();
    }
    for i in 0..50 {
        b.put(&kb, &tenant_key(&kb, &format!("k{i}")), vec![i as u8])
            .unwrap();
    }
    // A conflicting key written on both: b's write is later and must win everywhere.
    let shared = tenant_key(&ka, "k7");
    let newer = Entry::sign(
        &ka,
        shared.clone(),
        Some(vec![77]),
        Hlc::new(u64::MAX / 4, 0),
    )
    .unwrap();
    b.apply_remote(newer.clone()).unwrap();

    let stats = sync_pair(&a, &b).await;
    assert_eq!(stats.pulled, 51);
    assert_eq!(stats.pushed, 299);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(a.get(&shared).unwrap(), newer);

    // A second round finds nothing to do.
    let stats = sync_pair(&a, &b).await;
    assert_eq!(stats, Default::default());
}

/// The requests of one round from `a` to `b`, by name, and what it changed.
async fn sync_requests(
    a: &Registry,
    b: &Registry,
    root_first: bool,
) -> (Vec<&'static str>, sync::SyncStats) {
    let mut sent = Vec::new();
    let stats = a
        .sync_with(root_first, |req: SyncRequest| {
            sent.push(match &req {
                SyncRequest::Root { .. } => "root",
                SyncRequest::Digest { .. } => "digest",
                SyncRequest::Pull { .. } => "pull",
                SyncRequest::Push { .. } => "push",
            });
            let resp = Ok(b.handle_sync(req));
            async move { resp }
        })
        .await
        .unwrap();
    (sent, stats)
}

#[tokio::test]
async fn registries_in_sync_exchange_only_their_roots() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_registry(&dir, "a");
    let b = open_registry(&dir, "b");
    let key = SecretKey::generate();
    for i in 0..100 {
        let entry = a
            .put(&key, &tenant_key(&key, &format!("k{i}")), vec![i])
            .unwrap();
        b.apply_remote(entry).unwrap();
    }
    assert_eq!(a.digest_root(), b.digest_root());
    let (sent, stats) = sync_requests(&a, &b, true).await;
    assert_eq!(sent, ["root"]);
    assert_eq!(stats, Default::default());
    // A peer older than protocol 1.4 does not know `Root`: it gets the bucket hashes.
    let (sent, stats) = sync_requests(&a, &b, false).await;
    assert_eq!(sent, ["digest"]);
    assert_eq!(stats, Default::default());
    // One entry more on either side: the roots differ and the round goes on as before.
    b.put(&key, &tenant_key(&key, "late"), vec![1]).unwrap();
    assert_ne!(a.digest_root(), b.digest_root());
    let (sent, stats) = sync_requests(&a, &b, true).await;
    assert_eq!(sent, ["root", "digest", "pull"]);
    assert_eq!(stats.pulled, 1);
    a.put(&key, &tenant_key(&key, "later"), vec![2]).unwrap();
    let (sent, stats) = sync_requests(&a, &b, true).await;
    assert_eq!(sent, ["root", "digest", "push"]);
    assert_eq!(stats.pushed, 1);
    assert_eq!(a.digest_root(), b.digest_root());
}

/// Every sync message stays in format 1: the messages an older node is sent (it is never
/// sent `Root`) are the ones it reads, so a rolling upgrade keeps anti-entropy working.
#[test]
fn sync_messages_stay_in_format_1() {
    let requests = [
        SyncRequest::Digest {
            buckets: vec![[7; 16]; sync::BUCKETS],
        },
        SyncRequest::Pull {
            keys: vec!["tenant/x".into()],
        },
        SyncRequest::Root { root: [1; 16] },
    ];
    for request in &requests {
        let bytes = xnode_wire::encode(request).unwrap();
        assert_eq!(bytes[1], 1);
        let _: SyncRequest = xnode_wire::decode(&bytes, sync::MAX_SYNC_MESSAGE_BYTES).unwrap();
    }
    let responses = [
        SyncResponse::Pushed {
            updated: 3,
            rejected: 0,
        },
        SyncResponse::InSync,
        SyncResponse::Differs,
    ];
    for response in &responses {
        let mut bytes = xnode_wire::encode(response).unwrap();
        assert_eq!(bytes[1], 1);
        let _: SyncResponse = xnode_wire::decode(&bytes, sync::MAX_SYNC_MESSAGE_BYTES).unwrap();
        // A version this build does not know is refused, not misread.
        bytes[1] = 2;
        assert!(xnode_wire::decode::<SyncResponse>(&bytes, sync::MAX_SYNC_MESSAGE_BYTES).is_err());
    }
}

#[tokio::test]
async fn anti_entropy_does_not_accept_forged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_registry(&dir, "a");
    let b = open_registry(&dir, "b");
    let key = SecretKey::generate();
    let mut forged =
        Entry::sign(&key, tenant_key(&key, "x"), Some(vec![1]), Hlc::new(5, 0)).unwrap();
    forged.value = Some(vec![2]);
    let resp = b.handle_sync(SyncRequest::Push {
        entries: vec![forged],
    });
    assert!(matches!(
        resp,
        SyncResponse::Pushed {
            updated: 0,
            rejected: 1
        }
    ));
    assert!(b.list("").is_empty());
    let _ = a;
}

#[test]
fn malformed_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    let resp = reg.handle_sync(SyncRequest::Digest {
        buckets: vec![[0; 16]; 3],
    });
    assert!(matches!(resp, SyncResponse::Refused { .. }));
}

/// Claims on one name by three tenants, applied in every order: the index always ranks
/// them by `(hlc, owner)`, a tombstone drops its claim, and a restart rebuilds the index.
#[test]
fn the_claim_index_ranks_claims_whatever_their_arrival_order() {
    let keys: Vec<SecretKey> = (1..=3u8)
        .map(|i| SecretKey::from_seed(&[i; 32]).unwrap())
        .collect();
    let claims: Vec<Entry> = keys
        .iter()
        .zip([30u64, 10, 20])
        .map(|(k, wall)| {
            Entry::sign(
                k,
                claims::claim_key("bucket", &k.public(), "photos"),
                Some(b"{}".to_vec()),
                Hlc::new(wall, 0),
            )
            .unwrap()
        })
        .collect();
    let expected: Vec<_> = [1usize, 2, 0].iter().map(|&i| keys[i].public()).collect();
    for (n, order) in permutations(&claims).into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let reg = open_registry(&dir, &format!("r{n}"));
        for e in order {
            reg.apply_remote(e).unwrap();
        }
        let owners: Vec<_> = reg
            .claims("bucket", "photos")
            .iter()
            .map(|e| e.owner)
            .collect();
        assert_eq!(owners, expected);
        assert_eq!(reg.claimed_names("bucket"), ["photos"]);
        assert!(reg.claims("deployment", "photos").is_empty());
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "r");
    for e in &claims {
        reg.apply_remote(e.clone()).unwrap();
    }
    // The winner deletes its claim: the next one holds the name.
    let winner = &keys[1];
    let tombstone = Entry::sign(
        winner,
        claims::claim_key("bucket", &winner.public(), "photos"),
        None,
        Hlc::new(40, 0),
    )
    .unwrap();
    reg.apply_remote(tombstone).unwrap();
    let owners: Vec<_> = reg
        .claims("bucket", "photos")
        .iter()
        .map(|e| e.owner)
        .collect();
    assert_eq!(owners, [keys[2].public(), keys[0].public()]);
    drop(reg);
    let reopened = open_registry(&dir, "r");
    let owners: Vec<_> = reopened
        .claims("bucket", "photos")
        .iter()
        .map(|e| e.owner)
        .collect();
    assert_eq!(owners, [keys[2].public(), keys[0].public()]);
}

#[test]
fn claim_keys_parse_and_clocks_are_bounded() {
    let k = SecretKey::from_seed(&[9; 32]).unwrap();
    let key = claims::claim_key("deployment", &k.public(), "hello");
    let hex = k.public().to_hex();
    assert_eq!(
        claims::parse_claim_key(&key),
        Some((hex.as_str(), "deployment", "hello"))
    );
    assert_eq!(claims::parse_claim_key("node/abc"), None);
    assert_eq!(claims::parse_claim_key("tenant/short/bucket/x"), None);
    let now = 1_000_000_000;
    let at = |wall| Entry::sign(&k, key.clone(), Some(vec![]), Hlc::new(wall, 0)).unwrap();
    assert!(claims::check_claim_clock(&at(now), now).is_ok());
    assert!(claims::check_claim_clock(&at(now - 299_000), now).is_ok());
    assert!(matches!(
        claims::check_claim_clock(&at(now - 301_000), now),
        Err(claims::ClaimClockError::TooOld { .. })
    ));
    assert!(matches!(
        claims::check_claim_clock(&at(now + 301_000), now),
        Err(claims::ClaimClockError::InTheFuture { .. })
    ));
    assert!(claims::check_claim_clock(&at(u64::MAX), 0).is_err());
    assert!(claims::check_claim_clock(&at(0), u64::MAX).is_err());
}

#[test]
fn owner_bytes_follow_updates_and_deletes_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "owners.redb");
    let (a, b) = (SecretKey::generate(), SecretKey::generate());
    let (key_a, key_b) = (tenant_key(&a, "x"), tenant_key(&b, "y"));
    reg.apply_remote(Entry::sign(&a, key_a.clone(), Some(vec![0; 100]), Hlc::new(1, 0)).unwrap())
        .unwrap();
    reg.apply_remote(Entry::sign(&b, key_b.clone(), Some(vec![0; 10]), Hlc::new(1, 0)).unwrap())
        .unwrap();
    assert_eq!(reg.owner_bytes(&a.public()), key_a.len() as u64 + 100);
    // An update replaces what the entry counted; a delete frees it all.
    reg.apply_remote(Entry::sign(&a, key_a.clone(), Some(vec![0; 40]), Hlc::new(2, 0)).unwrap())
        .unwrap();
    assert_eq!(reg.owner_bytes(&a.public()), key_a.len() as u64 + 40);
    reg.apply_remote(Entry::sign(&b, key_b.clone(), None, Hlc::new(2, 0)).unwrap())
        .unwrap();
    assert_eq!(reg.owner_bytes(&b.public()), 0);
    assert_eq!(reg.metrics().entries.get(), 1);
    assert_eq!(reg.metrics().tombstones.get(), 1);
    drop(reg);
    let reg = open_registry(&dir, "owners.redb");
    assert_eq!(reg.owner_bytes(&a.public()), key_a.len() as u64 + 40);
    assert_eq!(reg.owner_bytes(&b.public()), 0);
    assert_eq!(reg.metrics().entries.get(), 1);
}

#[test]
fn a_tenant_past_its_registry_quota_is_refused_but_may_shrink_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "quota.redb");
    let (tenant, other) = (SecretKey::generate(), SecretKey::generate());
    let key = |n: u32| tenant_key(&tenant, &format!("job/j{n}"));
    let per_entry = key(0).len() as u64 + 1000;
    reg.set_owner_quota(Some(3 * per_entry));
    for n in 0..3 {
        reg.apply_tenant_entry(
            Entry::sign(&tenant, key(n), Some(vec![1; 1000]), Hlc::new(1, 0)).unwrap(),
        )
        .unwrap();
    }
    let refused = reg
        .apply_tenant_entry(
            Entry::sign(&tenant, key(3), Some(vec![1; 1000]), Hlc::new(1, 0)).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(refused, RegistryError::OwnerQuota { have, adding, max }
            if have == 3 * per_entry && adding == per_entry && max == 3 * per_entry),
        "{refused}"
    );
    assert!(reg.get(&key(3)).is_none());
    // Another tenant has its own room.
    reg.apply_tenant_entry(
        Entry::sign(
            &other,
            tenant_key(&other, "job/j0"),
            Some(vec![1; 1000]),
            Hlc::new(1, 0),
        )
        .unwrap(),
    )
    .unwrap();
    // Shrinking an entry and deleting one pass, and make room for a new one.
    reg.apply_tenant_entry(
        Entry::sign(&tenant, key(0), Some(vec![1; 10]), Hlc::new(2, 0)).unwrap(),
    )
    .unwrap();
    reg.apply_tenant_entry(Entry::sign(&tenant, key(1), None, Hlc::new(2, 0)).unwrap())
        .unwrap();
    reg.apply_tenant_entry(
        Entry::sign(&tenant, key(3), Some(vec![1; 1000]), Hlc::new(3, 0)).unwrap(),
    )
    .unwrap();
    // Entries from peers are not bounded by this node's quota for its own clients.
    reg.apply_remote(Entry::sign(&tenant, key(4), Some(vec![1; 1000]), Hlc::new(3, 0)).unwrap())
        .unwrap();
}

#[test]
fn the_anti_entropy_digest_kept_as_entries_merge_is_the_digest_of_what_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_registry(&dir, "digest.redb");
    let fresh = |reg: &Registry| crate::sync::SyncDigest::of(&reg.snapshot());
    assert_eq!(crate::sync::SyncDigest(reg.digest()), fresh(&reg));
    // Conflicting writes in an awkward order: newer, older (stale), a tombstone, and the
    // same entry again.
    for entry in conflicting_entries()
        .into_iter()
        .chain(conflicting_entries().into_iter().rev())
    {
        let _ = reg.apply_remote(entry);
        assert_eq!(crate::sync::SyncDigest(reg.digest()), fresh(&reg));
    }
    let key = SecretKey::generate();
    for i in 0..40u8 {
        reg.put(&key, &tenant_key(&key, &format!("k{}", i % 7)), vec![i])
            .unwrap();
    }
    let held = reg.digest();
    assert_eq!(crate::sync::SyncDigest(held.clone()), fresh(&reg));
    // Reopened from disk, the same digest.
    drop(reg);
    let reopened = open_registry(&dir, "digest.redb");
    assert_eq!(reopened.digest(), held);
}
