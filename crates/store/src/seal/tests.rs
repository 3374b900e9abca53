//! Unit tests of metadata seals: what verifies, and every way a forgery fails.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use xnode_types::request_auth::{EMPTY_BODY_BLAKE3, RequestToSign};
use xnode_types::{Hlc, SecretKey};

use super::*;
use crate::{ChunkId, ObjectInfo, ObjectPath};

fn info(tag: &str) -> ObjectInfo {
    ObjectInfo {
        manifest: ChunkId::of(tag.as_bytes()),
        size: tag.len() as u64,
        etag: format!("\"{tag}\""),
        content_type: "text/plain".into(),
        user_meta: BTreeMap::new(),
        created_ms: 1,
    }
}

/// The proof of a request `tenant` signed for `node` at `timestamp_ms`.
fn proof(
    tenant: &SecretKey,
    node: &NodeId,
    method: &str,
    path: &str,
    timestamp_ms: u64,
) -> TenantRequestProof {
    let node_text = node.to_string();
    let headers = RequestToSign {
        method,
        path,
        query: "",
        node: &node_text,
        content_blake3: EMPTY_BODY_BLAKE3,
        data_key: None,
    }
    .sign(tenant, timestamp_ms, "0123456789abcdef");
    let signature = headers
        .iter()
        .find(|(n, _)| *n == xnode_types::request_auth::HEADER_SIGNATURE)
        .and_then(|(_, v)| xnode_types::request_auth::parse_signature(v))
        .unwrap();
    TenantRequestProof {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        timestamp_ms,
        nonce: "0123456789abcdef".into(),
        content_blake3: EMPTY_BODY_BLAKE3.into(),
        data_key_blake3: String::new(),
        signature,
    }
}

struct Setup {
    tenant: SecretKey,
    edge: SecretKey,
    path: ObjectPath,
}

fn setup() -> Setup {
    let tenant = SecretKey::generate();
    let path = ObjectPath::new(tenant.public(), "photos", "a.jpg").unwrap();
    Setup {
        tenant,
        edge: SecretKey::generate(),
        path,
    }
}

fn entry(path: &ObjectPath, writer: &SecretKey, ms: u64, info: Option<ObjectInfo>) -> ObjectMeta {
    ObjectMeta {
        path: path.clone(),
        version: Hlc::new(ms, 0),
        writer: writer.node_id(),
        info,
        seal: None,
    }
}

const T: u64 = 1_800_000_000_000;

#[test]
fn an_entry_sealed_under_the_tenants_request_to_its_writer_verifies() {
    let s = setup();
    let authority = WriteAuthority::Request(proof(
        &s.tenant,
        &s.edge.node_id(),
        "PUT",
        "/v1/buckets/photos/objects/a.jpg",
        T,
    ));
    let live =
        entry(&s.path, &s.edge, T + 1000, Some(info("a"))).sealed(&s.edge, authority.clone());
    assert_eq!(live.verify_seal(&NoCompute), Ok(()));
    let tombstone = entry(&s.path, &s.edge, T + 2000, None).sealed(&s.edge, authority);
    assert_eq!(tombstone.verify_seal(&NoCompute), Ok(()));
    // The seal survives the wire.
    let decoded: ObjectMeta =
        xnode_wire::decode(&xnode_wire::encode(&live).unwrap(), crate::MAX_META_BYTES).unwrap();
    assert_eq!(decoded.verify_seal(&NoCompute), Ok(()));
}

#[test]
fn a_rogue_replica_cannot_forge_a_newer_version_or_tombstone() {
    let s = setup();
    let rogue = SecretKey::generate();
    let honest = entry(&s.path, &s.edge, T + 1000, Some(info("a"))).sealed(
        &s.edge,
        WriteAuthority::Request(proof(&s.tenant, &s.edge.node_id(), "PUT", "/x", T)),
    );
    // Unsigned: refused.
    let unsigned = entry(&s.path, &rogue, T + 5000, None);
    assert_eq!(unsigned.verify_seal(&NoCompute), Err(SealError::Unsigned));
    // Signed by the rogue, reusing the honest authority (which names the edge).
    let Some(seal) = &honest.seal else { panic!() };
    let reused = entry(&s.path, &rogue, T + 5000, None).sealed(&rogue, seal.authority.clone());
    assert_eq!(
        reused.verify_seal(&NoCompute),
        Err(SealError::BadTenantSignature)
    );
    // Claiming to be the edge, with the edge's authority but the rogue's key.
    let mut as_edge =
        entry(&s.path, &s.edge, T + 5000, None).sealed(&rogue, seal.authority.clone());
    assert_eq!(
        as_edge.verify_seal(&NoCompute),
        Err(SealError::WrongWriterKey)
    );
    // The honest seal moved onto a newer version or a tombstone.
    as_edge = honest.clone();
    as_edge.version = Hlc::new(T + 5000, 0);
    assert_eq!(
        as_edge.verify_seal(&NoCompute),
        Err(SealError::BadSignature)
    );
    let mut emptied = honest.clone();
    emptied.info = None;
    assert_eq!(
        emptied.verify_seal(&NoCompute),
        Err(SealError::BadSignature)
    );
    // ... or onto another path of the same tenant.
    let mut moved = honest.clone();
    moved.path.key = "b.jpg".into();
    assert_eq!(moved.verify_seal(&NoCompute), Err(SealError::BadSignature));
    // A request the tenant signed for the rogue itself is a real authority: the threat
    // model trusts the nodes a tenant talks to.
    let own = entry(&s.path, &rogue, T + 5000, None).sealed(
        &rogue,
        WriteAuthority::Request(proof(&s.tenant, &rogue.node_id(), "GET", "/x", T)),
    );
    assert_eq!(own.verify_seal(&NoCompute), Ok(()));
    // Another tenant's request does not authorise writes to this tenant's objects.
    let stranger = SecretKey::generate();
    let foreign = entry(&s.path, &rogue, T + 5000, None).sealed(
        &rogue,
        WriteAuthority::Request(proof(&stranger, &rogue.node_id(), "GET", "/x", T)),
    );
    assert_eq!(
        foreign.verify_seal(&NoCompute),
        Err(SealError::BadTenantSignature)
    );
}

#[test]
fn a_request_authorises_only_entries_dated_within_its_window() {
    let s = setup();
    let authority = WriteAuthority::Request(proof(&s.tenant, &s.edge.node_id(), "PUT", "/x", T));
    let late = entry(&s.path, &s.edge, T + REQUEST_AUTHORITY_MS + 1, None)
        .sealed(&s.edge, authority.clone());
    assert!(matches!(
        late.verify_seal(&NoCompute),
        Err(SealError::OutsideRequestWindow { .. })
    ));
    let early =
        entry(&s.path, &s.edge, T - MAX_CLOCK_SKEW_MS - 1, None).sealed(&s.edge, authority.clone());
    assert!(matches!(
        early.verify_seal(&NoCompute),
        Err(SealError::OutsideRequestWindow { .. })
    ));
    let last = entry(&s.path, &s.edge, T + REQUEST_AUTHORITY_MS, None).sealed(&s.edge, authority);
    assert_eq!(last.verify_seal(&NoCompute), Ok(()));
}

#[test]
fn an_s3_key_authority_must_be_the_registration_of_a_key_on_the_writer() {
    let s = setup();
    let registration = proof(
        &s.tenant,
        &s.edge.node_id(),
        "POST",
        S3_KEY_REGISTRATION_PATH,
        T,
    );
    // No expiry: S3 keys are permanent until deleted on their node.
    let later = entry(
        &s.path,
        &s.edge,
        T + 10 * REQUEST_AUTHORITY_MS,
        Some(info("a")),
    )
    .sealed(&s.edge, WriteAuthority::S3Key(registration));
    assert_eq!(later.verify_seal(&NoCompute), Ok(()));
    let other = proof(&s.tenant, &s.edge.node_id(), "GET", "/v1/node", T);
    let wrong = entry(&s.path, &s.edge, T, None).sealed(&s.edge, WriteAuthority::S3Key(other));
    assert_eq!(
        wrong.verify_seal(&NoCompute),
        Err(SealError::NotAnS3KeyRegistration)
    );
}

struct Confirms(NodeId);

impl ComputeCheck for Confirms {
    fn confirms(&self, _: &PublicKeyBytes, bucket: &str, purpose: &str, writer: &NodeId) -> bool {
        bucket == "photos" && purpose == "resizer" && *writer == self.0
    }
}

#[test]
fn a_compute_authority_is_what_the_registry_confirms() {
    let s = setup();
    let sealed = entry(&s.path, &s.edge, T, Some(info("a"))).sealed(
        &s.edge,
        WriteAuthority::Compute {
            purpose: "resizer".into(),
        },
    );
    assert_eq!(sealed.verify_seal(&Confirms(s.edge.node_id())), Ok(()));
    assert!(matches!(
        sealed.verify_seal(&NoCompute),
        Err(SealError::ComputeNotConfirmed { .. })
    ));
}

#[test]
fn format_1_entries_decode_unsealed_and_never_supersede_a_sealed_one() {
    let s = setup();
    let old = entry(&s.path, &s.edge, T + 10_000, Some(info("old")));
    // Format 1's layout: the four fields, no seal.
    let mut bytes = vec![xnode_wire::kinds::OBJECT_META, 1];
    bytes.extend(postcard::to_stdvec(&(&old.path, old.version, &old.writer, &old.info)).unwrap());
    let decoded: ObjectMeta = xnode_wire::decode(&bytes, crate::MAX_META_BYTES).unwrap();
    assert_eq!(decoded, old);
    assert_eq!(decoded.verify_seal(&NoCompute), Err(SealError::Unsigned));
    let sealed = entry(&s.path, &s.edge, T, Some(info("new"))).sealed(
        &s.edge,
        WriteAuthority::Request(proof(&s.tenant, &s.edge.node_id(), "PUT", "/x", T)),
    );
    assert!(
        sealed.supersedes(&decoded),
        "an older signed entry beats a newer unsigned one"
    );
    assert!(!decoded.supersedes(&sealed));
    assert_eq!(
        xnode_wire::encode(&sealed).unwrap()[1],
        2,
        "format 2 is written"
    );
}

/// Benchmark: the CPU cost of sealing an entry (once per write, at the edge) and of
/// verifying one (on each replica that merges it and on each reader), against encoding
/// the entry, which every write does anyway. Run with
/// `cargo test --release -p xnode-store seal::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: run it on purpose"]
fn bench_seal_and_verify() {
    let s = setup();
    let mut object = info("a-typical-object");
    object.user_meta = (0..4)
        .map(|i| (format!("x-meta-{i}"), "v".repeat(40)))
        .collect();
    let plain = entry(&s.path, &s.edge, T + 1000, Some(object));
    let authority = WriteAuthority::Request(proof(
        &s.tenant,
        &s.edge.node_id(),
        "PUT",
        "/v1/buckets/photos/objects/a.jpg",
        T,
    ));
    const N: u32 = 2000;
    let time = |name: &str, f: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        for _ in 0..N {
            f();
        }
        let each = start.elapsed() / N;
        eprintln!("{name:>28}: {:>7.1} µs", each.as_secs_f64() * 1e6);
        each
    };
    let mut sink = 0usize;
    time("encode (unsealed)", &mut || {
        sink += xnode_wire::encode(&plain).unwrap().len();
    });
    let sealed = plain.clone().sealed(&s.edge, authority.clone());
    time("encode (sealed)", &mut || {
        sink += xnode_wire::encode(&sealed).unwrap().len();
    });
    let seal = time("seal", &mut || {
        sink += plain.clone().sealed(&s.edge, authority.clone()).is_sealed() as usize;
    });
    let verify = time("verify", &mut || {
        sink += sealed.verify_seal(&NoCompute).is_ok() as usize;
    });
    eprintln!(
        "{:>28}: {} -> {} bytes",
        "entry size",
        xnode_wire::encode(&plain).unwrap().len(),
        xnode_wire::encode(&sealed).unwrap().len()
    );
    // A PUT with rf = 3 seals once and verifies at most 3 times on the replicas and twice
    // on the edge's read of the current version.
    eprintln!(
        "{:>28}: {:>7.1} µs of CPU, spread over the nodes",
        "per PUT (1 seal, 5 verify)",
        (seal + verify * 5).as_secs_f64() * 1e6
    );
    assert!(sink > 0);
}

#[test]
fn a_remembered_seal_vouches_only_for_the_exact_bytes_that_verified() {
    let s = setup();
    let verified = VerifiedSeals::with_capacity(16);
    let honest = entry(&s.path, &s.edge, T + 1000, Some(info("a"))).sealed(
        &s.edge,
        WriteAuthority::Request(proof(&s.tenant, &s.edge.node_id(), "PUT", "/x", T)),
    );
    assert_eq!(
        honest.verify_seal_remembering(&NoCompute, Some(&verified)),
        Ok(())
    );
    assert_eq!(verified.len(), 1);
    // The same bytes again: still fine, and nothing new remembered.
    assert_eq!(
        honest.verify_seal_remembering(&NoCompute, Some(&verified)),
        Ok(())
    );
    assert_eq!(verified.len(), 1);
    // Every forgery built from the remembered seal still fails, with the memory warm.
    let mut newer = honest.clone();
    newer.version = Hlc::new(T + 5000, 0);
    let mut emptied = honest.clone();
    emptied.info = None;
    let mut moved = honest.clone();
    moved.path.key = "b.jpg".into();
    for forged in [&newer, &emptied, &moved] {
        assert_eq!(
            forged.verify_seal_remembering(&NoCompute, Some(&verified)),
            Err(SealError::BadSignature)
        );
    }
    let mut bad_tenant_signature = honest.clone();
    if let Some(seal) = &mut bad_tenant_signature.seal
        && let WriteAuthority::Request(p) = &mut seal.authority
    {
        p.signature.0[0] ^= 1;
    }
    assert_ne!(
        bad_tenant_signature.verify_seal_remembering(&NoCompute, Some(&verified)),
        Ok(())
    );
    // Failures are not remembered.
    assert_eq!(verified.len(), 1);
}

#[test]
fn a_remembered_seal_still_meets_the_checks_of_the_moment() {
    let s = setup();
    let verified = VerifiedSeals::with_capacity(16);
    struct Confirms(bool);
    impl ComputeCheck for Confirms {
        fn confirms(&self, _: &PublicKeyBytes, _: &str, _: &str, _: &NodeId) -> bool {
            self.0
        }
    }
    let compute = entry(&s.path, &s.edge, T, None).sealed(
        &s.edge,
        WriteAuthority::Compute {
            purpose: "web".into(),
        },
    );
    assert_eq!(
        compute.verify_seal_remembering(&Confirms(true), Some(&verified)),
        Ok(())
    );
    assert_eq!(verified.len(), 1);
    // The deployment is gone: the remembered signature does not make it confirmed.
    assert!(matches!(
        compute.verify_seal_remembering(&Confirms(false), Some(&verified)),
        Err(SealError::ComputeNotConfirmed { .. })
    ));
    // An entry dated outside its request's window fails whether or not it was seen.
    let late = entry(&s.path, &s.edge, T + REQUEST_AUTHORITY_MS + 1, None).sealed(
        &s.edge,
        WriteAuthority::Request(proof(&s.tenant, &s.edge.node_id(), "PUT", "/x", T)),
    );
    for _ in 0..2 {
        assert!(matches!(
            late.verify_seal_remembering(&NoCompute, Some(&verified)),
            Err(SealError::OutsideRequestWindow { .. })
        ));
    }
}

#[test]
fn the_memory_of_verified_seals_is_bounded_and_keeps_what_is_used() {
    let verified = VerifiedSeals::with_capacity(4);
    let key = PublicKeyBytes([7; 32]);
    let digest = |i: u8| SealDigest::new(&[i], &key, &SignatureBytes([0; 64]));
    for i in 0..100u8 {
        verified.insert(digest(i));
        // The first digest is looked up often, so it stays.
        assert!(verified.contains(&digest(0)), "digest 0 lost at {i}");
        assert!(verified.len() <= 8, "{} digests held", verified.len());
    }
    assert!(!verified.contains(&digest(1)));
    assert!(verified.contains(&digest(99)));
}

/// Revocations as a test states them: (tenant, writer, registration id or `None` for
/// every authority) → revoked after.
struct Revoked(Vec<(PublicKeyBytes, NodeId, Option<String>, u64)>);

impl RevocationCheck for Revoked {
    fn revoked_after(
        &self,
        tenant: &PublicKeyBytes,
        writer: &NodeId,
        authority: &WriteAuthority,
    ) -> Option<u64> {
        let registration = match authority {
            WriteAuthority::S3Key(proof) => Some(proof.registration_id()),
            _ => None,
        };
        self.0
            .iter()
            .filter(|(t, w, scope, _)| {
                t == tenant && w == writer && (scope.is_none() || *scope == registration)
            })
            .map(|(_, _, _, after)| *after)
            .min()
    }
}

#[test]
fn a_revoked_writers_entries_after_the_revocation_are_refused_and_those_before_stay() {
    let s = setup();
    let request =
        WriteAuthority::Request(proof(&s.tenant, &s.edge.node_id(), "GET", "/v1/node", T));
    let before =
        entry(&s.path, &s.edge, T + 1000, Some(info("a"))).sealed(&s.edge, request.clone());
    let after = entry(&s.path, &s.edge, T + 3000, Some(info("b"))).sealed(&s.edge, request);
    let revoked = Revoked(vec![(s.tenant.public(), s.edge.node_id(), None, T + 2000)]);
    assert_eq!(
        before.revocation_status(&NoRevocations),
        RevocationStatus::NotRevoked
    );
    assert_eq!(
        before.revocation_status(&revoked),
        RevocationStatus::DatedBefore {
            revoked_after_ms: T + 2000
        }
    );
    assert_eq!(
        after.revocation_status(&revoked),
        RevocationStatus::DatedAfter {
            revoked_after_ms: T + 2000
        }
    );
    // Another tenant's revocation of the same node, or the tenant's of another node,
    // changes nothing.
    let elsewhere = Revoked(vec![
        (SecretKey::generate().public(), s.edge.node_id(), None, T),
        (s.tenant.public(), SecretKey::generate().node_id(), None, T),
    ]);
    assert_eq!(
        after.revocation_status(&elsewhere),
        RevocationStatus::NotRevoked
    );
}

#[test]
fn revoking_one_s3_registration_leaves_the_writers_other_registrations() {
    let s = setup();
    let first = proof(
        &s.tenant,
        &s.edge.node_id(),
        "POST",
        S3_KEY_REGISTRATION_PATH,
        T,
    );
    let second = proof(
        &s.tenant,
        &s.edge.node_id(),
        "POST",
        S3_KEY_REGISTRATION_PATH,
        T + 1,
    );
    assert_ne!(first.registration_id(), second.registration_id());
    assert_eq!(first.registration_id().len(), 32);
    let revoked = Revoked(vec![(
        s.tenant.public(),
        s.edge.node_id(),
        Some(first.registration_id()),
        T + 10,
    )]);
    let under_first =
        entry(&s.path, &s.edge, T + 20, None).sealed(&s.edge, WriteAuthority::S3Key(first));
    let under_second =
        entry(&s.path, &s.edge, T + 20, None).sealed(&s.edge, WriteAuthority::S3Key(second));
    assert!(matches!(
        under_first.revocation_status(&revoked),
        RevocationStatus::DatedAfter { .. }
    ));
    assert_eq!(
        under_second.revocation_status(&revoked),
        RevocationStatus::NotRevoked
    );
}
