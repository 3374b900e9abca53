//! The browser's cryptography checked against the Rust code it must match: BLAKE3 (hash and
//! derive_key) against the `blake3` crate, the data key against `DataKey::derive`, bucket key
//! checks against `BucketKey::check`, and
//! request and registry-entry signatures made by `assets/js/tenant.js` (WebCrypto Ed25519,
//! run here in Node.js) verified by `request_auth` and `Entry::verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use xnode_types::{Hlc, PublicKeyBytes, SignatureBytes};

const SCRIPT: &str = r#"
globalThis.localStorage = { m: new Map(), getItem(k) { return this.m.get(k) ?? null; }, setItem(k, v) { this.m.set(k, v); }, removeItem(k) { this.m.delete(k); } };
const dir = process.env.ASSETS;
const { blake3, deriveKey } = await import(`${dir}/js/blake3.js`);
const t = await import(`${dir}/js/tenant.js`);
const hex = (b) => Buffer.from(b).toString('hex');
const lengths = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4097, 8193, 31744, 102401];
const hashes = lengths.map((n) => hex(blake3(Uint8Array.from({ length: n }, (_, i) => i % 251))));
const derived = hex(deriveKey('xnode 2026-11 tenant data key v1', Uint8Array.from({ length: 32 }, (_, i) => i)));
const keyFile = new Uint8Array(34); keyFile[0] = 17; keyFile[1] = 1; keyFile.set(Uint8Array.from({ length: 32 }, (_, i) => 255 - i), 2);
const tenant = await t.importTenant(keyFile);
const request = await t.signRequest('put', '/v1/buckets/b/objects/a%20b', 'x=1', { node: '12D3KooWNodeA', body: 'café body', dataKey: true });
const empty = await t.signRequest('get', '/v1/buckets', '', { node: '12D3KooWNodeA' });
const record = JSON.stringify({ v: 1, name: 'café', owner: tenant.tenant, created_ms: 5 });
const entry = await t.signEntry(`tenant/${tenant.tenant}/bucket/café`, record, 1234, 7);
const tomb = await t.signEntry(`tenant/${tenant.tenant}/bucket/x`, null, 99, 0);
const exported = hex(t.exportKeyFile());
const checks = t.keyChecks(['photos', 'data', 'photos']);
console.log(JSON.stringify({ hashes, derived, tenant: tenant.tenant, dataKey: tenant.dataKey, request, empty, record, entry, tomb, exported, checks }));
"#;

#[test]
fn browser_crypto_matches_the_rust_implementation() {
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
    let output = match Command::new("node")
        .args(["--no-warnings", "--input-type=module", "-e", SCRIPT])
        .env("ASSETS", assets)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(std::env::var("CI").is_err(), "Node.js is needed: {e}");
            eprintln!("SKIPPED: Node.js is not installed ({e})");
            return;
        }
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let lengths = [
        0usize, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4097, 8193, 31744, 102401,
    ];
    for (i, n) in lengths.iter().enumerate() {
        let input: Vec<u8> = (0..*n).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            v["hashes"][i],
            blake3::hash(&input).to_hex().as_str(),
            "length {n}"
        );
    }
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_eq!(v["derived"], xnode_store::DataKey::derive(&seed).to_hex());

    // The key file the CLI writes, imported: same tenant, same data key, same file out.
    let seed: [u8; 32] = std::array::from_fn(|i| 255 - i as u8);
    let key = xnode_types::SecretKey::from_seed(&seed).unwrap();
    let tenant = key.public();
    assert_eq!(v["tenant"], tenant.to_hex());
    assert_eq!(v["dataKey"], xnode_store::DataKey::derive(&seed).to_hex());
    let mut file = vec![17u8, 1];
    file.extend_from_slice(&seed);
    assert_eq!(v["exported"], hex::encode(&file));

    // The key checks a deployment signs are the ones nodes verify bucket keys against.
    let data_key = xnode_store::DataKey::derive(&seed);
    let checks: std::collections::BTreeMap<String, String> =
        serde_json::from_value(v["checks"].clone()).unwrap();
    assert_eq!(
        checks,
        ["data", "photos"]
            .iter()
            .map(|b| (
                b.to_string(),
                xnode_store::BucketKey::derive(&data_key, b)
                    .check()
                    .to_hex()
            ))
            .collect::<std::collections::BTreeMap<_, _>>()
    );

    // A request signature (v2) verifies exactly as the API checks it: it binds the node,
    // the body's hash and the data key header's hash.
    use xnode_types::request_auth::{
        CanonicalRequest, EMPTY_BODY_BLAKE3, canonical_request, content_hash, data_key_hash,
    };
    let r = &v["request"];
    assert_eq!(r["x-xnode-tenant"], tenant.to_hex());
    assert_eq!(r["x-xnode-node"], "12D3KooWNodeA");
    assert_eq!(
        r["x-xnode-content-blake3"],
        content_hash("café body".as_bytes())
    );
    let data_key = xnode_store::DataKey::derive(&seed).to_hex();
    assert_eq!(r["x-xnode-data-key"], data_key);
    let ts: u64 = r["x-xnode-timestamp"].as_str().unwrap().parse().unwrap();
    let nonce = r["x-xnode-nonce"].as_str().unwrap();
    assert!(nonce.len() >= 16 && nonce.bytes().all(|b| b.is_ascii_alphanumeric()));
    let sig = xnode_types::request_auth::parse_signature(r["x-xnode-signature"].as_str().unwrap())
        .unwrap();
    let body_hash = content_hash("café body".as_bytes());
    let key_hash = data_key_hash(Some(&data_key));
    let signed = CanonicalRequest {
        method: "PUT",
        path: "/v1/buckets/b/objects/a%20b",
        query: "x=1",
        timestamp_ms: ts,
        nonce,
        tenant: &tenant,
        node: "12D3KooWNodeA",
        content_blake3: &body_hash,
        data_key_blake3: &key_hash,
    };
    assert!(tenant.verify(&canonical_request(&signed), &sig));
    for other in [
        CanonicalRequest {
            query: "",
            ..signed
        },
        CanonicalRequest {
            node: "12D3KooWNodeB",
            ..signed
        },
        CanonicalRequest {
            content_blake3: EMPTY_BODY_BLAKE3,
            ..signed
        },
        CanonicalRequest {
            data_key_blake3: "",
            ..signed
        },
    ] {
        assert!(!tenant.verify(&canonical_request(&other), &sig));
    }
    // Without a body or a data key: the empty body's hash, and no data key header.
    let e = &v["empty"];
    assert_eq!(e["x-xnode-content-blake3"], EMPTY_BODY_BLAKE3);
    assert!(e.get("x-xnode-data-key").is_none());
    let sig = xnode_types::request_auth::parse_signature(e["x-xnode-signature"].as_str().unwrap())
        .unwrap();
    assert!(tenant.verify(
        &canonical_request(&CanonicalRequest {
            method: "GET",
            path: "/v1/buckets",
            query: "",
            timestamp_ms: e["x-xnode-timestamp"].as_str().unwrap().parse().unwrap(),
            nonce: e["x-xnode-nonce"].as_str().unwrap(),
            tenant: &tenant,
            node: "12D3KooWNodeA",
            content_blake3: EMPTY_BODY_BLAKE3,
            data_key_blake3: "",
        }),
        &sig
    ));

    // Registry entries (a bucket claim with a non-ASCII name, and a tombstone) verify.
    let entry =
        |value: Option<Vec<u8>>, key: String, e: &serde_json::Value| xnode_registry::Entry {
            key,
            value,
            hlc: Hlc::new(
                e["hlc_wall_ms"].as_u64().unwrap(),
                e["hlc_logical"].as_u64().unwrap() as u32,
            ),
            owner: tenant,
            signature: SignatureBytes(
                xnode_types::request_auth::parse_signature(e["signature"].as_str().unwrap())
                    .unwrap()
                    .0,
            ),
        };
    let claim = entry(
        Some(v["record"].as_str().unwrap().as_bytes().to_vec()),
        format!("tenant/{}/bucket/café", tenant.to_hex()),
        &v["entry"],
    );
    assert_eq!(claim.hlc, Hlc::new(1234, 7));
    assert!(claim.verify());
    let tomb = entry(
        None,
        format!("tenant/{}/bucket/x", tenant.to_hex()),
        &v["tomb"],
    );
    assert!(tomb.verify());
    let mut forged = claim.clone();
    forged.value = Some(b"{}".to_vec());
    assert!(!forged.verify());
    let _: PublicKeyBytes = tenant;
}
