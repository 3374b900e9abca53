//! Unit tests of the storage protocol's encodings: every request and answer round trips,
//! and the bodies of older format versions still decode.

#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn a_version_2_put_chunk_decodes_without_its_replication_factor() {
    let id = ChunkId::of(b"x");
    // Version 2's layout of `PutChunk`: variant 0, id, bytes, rf.
    let mut bytes = vec![kinds::STORE_REQUEST, 2];
    bytes.extend(postcard::to_stdvec(&(0u32, id, serde_bytes::Bytes::new(b"x"), 255u8)).unwrap());
    let decoded: StoreRequest = xnode_wire::decode(&bytes, MAX_STORE_MESSAGE).unwrap();
    match decoded {
        StoreRequest::PutChunk {
            id: got,
            data,
            bucket,
        } => {
            assert_eq!(got, id);
            assert_eq!(data.as_ref(), b"x");
            assert_eq!(bucket, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_4_requests_decode_and_conditional_writes_round_trip() {
    // Version 5 only appended variants: a version-4 body decodes as it is.
    let id = ChunkId::of(b"x");
    let mut bytes = vec![kinds::STORE_REQUEST, 4];
    bytes.extend(postcard::to_stdvec(&StoreRequest::GetChunk { id }).unwrap());
    let decoded: StoreRequest = xnode_wire::decode(&bytes, MAX_STORE_MESSAGE).unwrap();
    assert!(matches!(decoded, StoreRequest::GetChunk { id: got } if got == id));
    let path = ObjectPath::new(PublicKeyBytes([7; 32]), "bucket", "key").unwrap();
    let request = StoreRequest::CommitMeta {
        path: path.clone(),
        info: None,
        preconditions: Preconditions {
            if_match: Some(crate::conditional::ETagMatch::ETag("abc".into())),
            ..Default::default()
        },
    };
    let bytes = xnode_wire::encode(&request).unwrap();
    assert_eq!(
        bytes[1],
        StoreRequest::VERSION,
        "the format version is carried"
    );
    match xnode_wire::decode::<StoreRequest>(&bytes, MAX_STORE_MESSAGE).unwrap() {
        StoreRequest::CommitMeta {
            path: got,
            info,
            preconditions,
        } => {
            assert_eq!(got, path);
            assert_eq!(info, None);
            assert!(!preconditions.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // A version this node does not know yet is refused, not guessed at.
    let mut future = xnode_wire::encode(&request).unwrap();
    future[1] = StoreRequest::VERSION + 1;
    assert!(xnode_wire::decode::<StoreRequest>(&future, MAX_STORE_MESSAGE).is_err());
}

#[test]
fn version_6_requests_decode_and_tenant_chunk_reads_round_trip() {
    let id = ChunkId::of(b"x");
    let mut bytes = vec![kinds::STORE_REQUEST, 6];
    bytes.extend(postcard::to_stdvec(&StoreRequest::GetChunk { id }).unwrap());
    let decoded: StoreRequest = xnode_wire::decode(&bytes, MAX_STORE_MESSAGE).unwrap();
    assert!(matches!(decoded, StoreRequest::GetChunk { id: got } if got == id));
    let tenant = PublicKeyBytes([7; 32]);
    let bytes = xnode_wire::encode(&StoreRequest::GetTenantChunk { id, tenant }).unwrap();
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::GetTenantChunk { id: got, tenant: t } if got == id && t == tenant
    ));
}

#[test]
fn forwarded_reads_round_trip_and_version_6_answers_still_decode() {
    let path = ObjectPath::new(PublicKeyBytes([7; 32]), "bucket", "key").unwrap();
    let request = StoreRequest::ForwardedRead {
        path: path.clone(),
        from: 5,
        max_bytes: MAX_FORWARDED_BYTES,
    };
    let bytes = xnode_wire::encode(&request).unwrap();
    assert_eq!(
        bytes[1],
        StoreRequest::VERSION,
        "the format version is carried"
    );
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::ForwardedRead { path: p, from: 5, max_bytes }
            if p == path && max_bytes == MAX_FORWARDED_BYTES
    ));
    let id = ChunkId::of(b"x");
    let answer = StoreResponse::Forwarded(ForwardedAnswer {
        meta: None,
        manifest: Some(b"m".to_vec()),
        chunks: vec![ForwardedChunk {
            id,
            data: b"x".to_vec(),
        }],
    });
    let bytes = xnode_wire::encode(&answer).unwrap();
    assert_eq!(bytes[1], StoreResponse::VERSION);
    match xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap() {
        StoreResponse::Forwarded(a) => {
            assert_eq!(a.manifest.as_deref(), Some(&b"m"[..]));
            assert_eq!(a.chunks.len(), 1);
            assert_eq!(a.chunks[0].id, id);
        }
        other => panic!("{other:?}"),
    }
    // A version-6 answer (sealed entries, no `Forwarded` yet) decodes as it is.
    let mut bytes = vec![kinds::STORE_RESPONSE, 6];
    bytes.extend(postcard::to_stdvec(&StoreResponse::Chunk(Some(b"x".to_vec()))).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::Chunk(Some(data)) if data == b"x"
    ));
}

#[test]
fn version_5_bodies_decode_with_their_entries_unsealed() {
    // Version 5's `PutMeta` (variant 3): an entry without a seal.
    let path = ObjectPath::new(PublicKeyBytes([7; 32]), "bucket", "key").unwrap();
    let writer = xnode_types::SecretKey::generate().node_id();
    let version = Hlc::new(1000, 0);
    let info: Option<xnode_store::ObjectInfo> = None;
    let mut bytes = vec![kinds::STORE_REQUEST, 5];
    bytes.extend(postcard::to_stdvec(&(3u32, &path, version, &writer, &info)).unwrap());
    match xnode_wire::decode::<StoreRequest>(&bytes, MAX_STORE_MESSAGE).unwrap() {
        StoreRequest::PutMeta { meta } => {
            assert_eq!(
                (meta.path, meta.version, meta.writer),
                (path.clone(), version, writer)
            );
            assert!(meta.seal.is_none());
        }
        other => panic!("{other:?}"),
    }
    // And a version-5 answer holding one.
    let mut bytes = vec![kinds::STORE_RESPONSE, 5];
    bytes.extend(postcard::to_stdvec(&(4u32, Some((&path, version, &writer, &info)))).unwrap());
    match xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap() {
        StoreResponse::Meta(Some(meta)) => assert!(meta.seal.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tombstone_drops_round_trip_and_version_8_requests_and_7_answers_still_decode() {
    let path = ObjectPath::new(PublicKeyBytes([7; 32]), "bucket", "key").unwrap();
    let tombstone = ObjectMeta {
        path,
        version: Hlc::new(1000, 0),
        writer: xnode_types::SecretKey::generate().node_id(),
        info: None,
        seal: None,
    };
    let request = StoreRequest::DropTombstones {
        tombstones: vec![tombstone.clone()],
    };
    let bytes = xnode_wire::encode(&request).unwrap();
    assert_eq!(
        bytes[1],
        StoreRequest::VERSION,
        "the format version is carried"
    );
    match xnode_wire::decode::<StoreRequest>(&bytes, MAX_STORE_MESSAGE).unwrap() {
        StoreRequest::DropTombstones { tombstones } => assert_eq!(tombstones, [tombstone]),
        other => panic!("{other:?}"),
    }
    let answer = xnode_wire::encode(&StoreResponse::TombstonesDropped(vec![true])).unwrap();
    assert_eq!(answer[1], StoreResponse::VERSION);
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&answer, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::TombstonesDropped(d) if d == [true]
    ));
    // What a node one version behind sends still decodes.
    let id = ChunkId::of(b"x");
    let mut old = vec![kinds::STORE_REQUEST, 8];
    old.extend(postcard::to_stdvec(&StoreRequest::GetChunk { id }).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::GetChunk { id: got } if got == id
    ));
    let mut old = vec![kinds::STORE_RESPONSE, 7];
    old.extend(postcard::to_stdvec(&StoreResponse::Chunk(Some(b"x".to_vec()))).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::Chunk(Some(data)) if data == b"x"
    ));
}

#[test]
fn retired_tombstone_exchanges_round_trip_and_version_10_requests_and_9_answers_still_decode() {
    let path = ObjectPath::new(PublicKeyBytes([7; 32]), "bucket", "key").unwrap();
    let tombstone = ObjectMeta {
        path,
        version: Hlc::new(1000, 0),
        writer: xnode_types::SecretKey::generate().node_id(),
        info: None,
        seal: None,
    };
    let bucket = BucketRef {
        tenant: PublicKeyBytes([7; 32]),
        name: "bucket".into(),
    };
    for request in [
        StoreRequest::RetiredDigests {
            buckets: vec![(bucket.clone(), SetDigest([3; 32]))],
        },
        StoreRequest::RetiredLeafDigests {
            bucket: bucket.clone(),
        },
        StoreRequest::PutRetiredMany {
            tombstones: vec![tombstone.clone()],
        },
    ] {
        let bytes = xnode_wire::encode(&request).unwrap();
        assert_eq!(
            bytes[1],
            StoreRequest::VERSION,
            "the format version is carried"
        );
        let decoded: StoreRequest = xnode_wire::decode(&bytes, MAX_STORE_MESSAGE).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{request:?}"));
    }
    let answer = xnode_wire::encode(&StoreResponse::RetiredMerged(vec![true, false])).unwrap();
    assert_eq!(answer[1], StoreResponse::VERSION);
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&answer, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::RetiredMerged(m) if m == [true, false]
    ));
    // What a node one version behind sends still decodes.
    let mut old = vec![kinds::STORE_REQUEST, 10];
    old.extend(
        postcard::to_stdvec(&StoreRequest::DropTombstones {
            tombstones: vec![tombstone.clone()],
        })
        .unwrap(),
    );
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::DropTombstones { tombstones } if tombstones == [tombstone]
    ));
    let mut old = vec![kinds::STORE_RESPONSE, 9];
    old.extend(postcard::to_stdvec(&StoreResponse::TombstonesDropped(vec![true])).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::TombstonesDropped(d) if d == [true]
    ));
}

#[test]
fn garbage_collection_scans_round_trip_and_version_11_requests_and_10_answers_still_decode() {
    let bucket = BucketRef {
        tenant: PublicKeyBytes([7; 32]),
        name: "bucket".into(),
    };
    for request in [
        StoreRequest::MetaBucketDigests {
            after: Some(bucket.clone()),
            limit: MAX_BUCKET_DIGESTS,
        },
        StoreRequest::MetaBucketDigests {
            after: None,
            limit: 1,
        },
        StoreRequest::ScanBucketMeta {
            bucket: bucket.clone(),
            after: Some("key".into()),
            limit: 1000,
        },
    ] {
        let bytes = xnode_wire::encode(&request).unwrap();
        assert_eq!(
            bytes[1],
            StoreRequest::VERSION,
            "the format version is carried"
        );
        let decoded: StoreRequest = xnode_wire::decode(&bytes, MAX_STORE_MESSAGE).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{request:?}"));
    }
    let answer = StoreResponse::BucketDigests(vec![(bucket.clone(), SetDigest([9; 32]))]);
    let bytes = xnode_wire::encode(&answer).unwrap();
    assert_eq!(bytes[1], StoreResponse::VERSION);
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::BucketDigests(d) if d == [(bucket, SetDigest([9; 32]))]
    ));
    let mut old = vec![kinds::STORE_REQUEST, 11];
    old.extend(
        postcard::to_stdvec(&StoreRequest::ScanMeta {
            after: b"a".to_vec(),
            limit: 5,
        })
        .unwrap(),
    );
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::ScanMeta { limit: 5, .. }
    ));
    let mut old = vec![kinds::STORE_RESPONSE, 10];
    old.extend(postcard::to_stdvec(&StoreResponse::RetiredMerged(vec![true])).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::RetiredMerged(m) if m == [true]
    ));
}

#[test]
fn range_digests_round_trip_and_version_12_requests_and_11_answers_still_decode() {
    let request = StoreRequest::MetaRangeDigest {
        bucket: BucketRef {
            tenant: PublicKeyBytes([7; 32]),
            name: "bucket".into(),
        },
        prefix: "a/".into(),
        after: Some("a/1".into()),
        until: Some("a/9".into()),
        limit: 1000,
    };
    let bytes = xnode_wire::encode(&request).unwrap();
    assert_eq!(bytes[1], StoreRequest::VERSION);
    let decoded: StoreRequest = xnode_wire::decode(&bytes, MAX_STORE_MESSAGE).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{request:?}"));
    let digest = RangeDigest {
        entries: 3,
        digest: [5; 32],
        complete: true,
    };
    let bytes = xnode_wire::encode(&StoreResponse::RangeDigest(digest)).unwrap();
    assert_eq!(bytes[1], StoreResponse::VERSION);
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::RangeDigest(d) if d == digest
    ));
    let mut old = vec![kinds::STORE_REQUEST, 12];
    old.extend(
        postcard::to_stdvec(&StoreRequest::MetaBucketDigests {
            after: None,
            limit: 3,
        })
        .unwrap(),
    );
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::MetaBucketDigests { limit: 3, .. }
    ));
    let mut old = vec![kinds::STORE_RESPONSE, 11];
    old.extend(postcard::to_stdvec(&StoreResponse::BucketDigests(Vec::new())).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::BucketDigests(d) if d.is_empty()
    ));
}

#[test]
fn encoded_ranges_round_trip_and_version_13_requests_and_12_answers_still_decode() {
    let request = StoreRequest::MetaRangeEncoded {
        bucket: BucketRef {
            tenant: PublicKeyBytes([7; 32]),
            name: "bucket".into(),
        },
        prefix: "a/".into(),
        after: Some("a/1".into()),
        limit: 1000,
    };
    let bytes = xnode_wire::encode(&request).unwrap();
    assert_eq!(bytes[1], StoreRequest::VERSION);
    let decoded: StoreRequest = xnode_wire::decode(&bytes, MAX_STORE_MESSAGE).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{request:?}"));
    let answer = StoreResponse::MetaRangeEncoded {
        entries: vec![
            serde_bytes::ByteBuf::from(vec![1, 2, 3]),
            serde_bytes::ByteBuf::new(),
        ],
        truncated: true,
    };
    let bytes = xnode_wire::encode(&answer).unwrap();
    assert_eq!(bytes[1], StoreResponse::VERSION);
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::MetaRangeEncoded { entries, truncated: true }
            if entries.len() == 2 && entries[0].as_slice() == [1, 2, 3]
    ));
    let mut old = vec![kinds::STORE_REQUEST, 13];
    old.extend(
        postcard::to_stdvec(&StoreRequest::MetaBucketDigests {
            after: None,
            limit: 3,
        })
        .unwrap(),
    );
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::MetaBucketDigests { limit: 3, .. }
    ));
    let digest = RangeDigest::default();
    let mut old = vec![kinds::STORE_RESPONSE, 12];
    old.extend(postcard::to_stdvec(&StoreResponse::RangeDigest(digest)).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::RangeDigest(d) if d == digest
    ));
}

#[test]
fn bulk_offers_round_trip_and_version_14_requests_and_13_answers_still_decode() {
    let bytes = xnode_wire::encode(&StoreRequest::OpenBulk).unwrap();
    assert_eq!(&bytes[..2], &[kinds::STORE_REQUEST, 15]);
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::OpenBulk
    ));
    let offer = StoreResponse::BulkOffered {
        port: 4002,
        token: vec![1; 16],
        key: vec![2; 32],
    };
    let bytes = xnode_wire::encode(&offer).unwrap();
    assert_eq!(&bytes[..2], &[kinds::STORE_RESPONSE, 14]);
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::BulkOffered { port: 4002, token, key } if token == [1; 16] && key == [2; 32]
    ));
    // The variants before them keep their encodings: an older body decodes as it was.
    let mut old = vec![kinds::STORE_REQUEST, 14];
    old.extend(
        postcard::to_stdvec(&StoreRequest::GetChunk {
            id: ChunkId([4; 32]),
        })
        .unwrap(),
    );
    assert!(matches!(
        xnode_wire::decode::<StoreRequest>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreRequest::GetChunk { id } if id == ChunkId([4; 32])
    ));
    let mut old = vec![kinds::STORE_RESPONSE, 13];
    old.extend(postcard::to_stdvec(&StoreResponse::Stored).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&old, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::Stored
    ));
}

#[test]
fn version_2_answers_still_decode() {
    let mut bytes = vec![kinds::STORE_RESPONSE, 1];
    bytes.extend(postcard::to_stdvec(&StoreResponse::MetaStored { changed: true }).unwrap());
    assert!(matches!(
        xnode_wire::decode::<StoreResponse>(&bytes, MAX_STORE_MESSAGE).unwrap(),
        StoreResponse::MetaStored { changed: true }
    ));
}
