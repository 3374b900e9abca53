//! The storage bulk link: uploads' data chunks go to replicas over a TCP connection beside
//! the mesh, and what a stranger, or a peer playing a modified binary, gets from it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xnode_storage::bulk::frame::{self, ChunkHeader, Direction, FrameKey};
use xnode_storage::proto::{StoreRequest, StoreResponse};
use xnode_store::{ChunkId, StoreMetrics};
use xnode_test_cluster::{Cluster, Tenant};

const CHUNK: u32 = 64 * 1024;

fn storage_config(c: &mut xnode_node::Config) {
    c.storage.chunk_size = CHUNK;
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

fn total(c: &Cluster, metric: fn(&StoreMetrics) -> u64) -> u64 {
    c.running()
        .into_iter()
        .map(|i| metric(c.node(i).storage().metrics()))
        .sum()
}

fn held(c: &Cluster, node: usize, id: &ChunkId) -> bool {
    let hex = id.to_hex();
    c.data_dir(node)
        .join("chunks")
        .join(&hex[..2])
        .join(hex)
        .exists()
}

/// Whether the other end closes the connection (a read ends or fails) within 10 s.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Sends one chunk frame: the sealed header, then the bytes in the clear.
async fn send_chunk(
    stream: &mut TcpStream,
    key: &mut FrameKey,
    header: &ChunkHeader,
    bytes: &[u8],
) {
    let sealed = key.seal(header.encode().unwrap()).unwrap();
    stream.write_all(&sealed).await.unwrap();
    stream.write_all(bytes).await.unwrap();
}

async fn read_answer(stream: &mut TcpStream, key: &mut FrameKey) -> (u64, StoreResponse) {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut sealed = vec![0u8; frame::sealed_len(prefix).unwrap()];
    stream.read_exact(&mut sealed).await.unwrap();
    let plain = key.open(sealed).unwrap();
    let (request, body) = frame::decode_answer(&plain).unwrap();
    let response =
        xnode_wire::decode::<StoreResponse>(body, xnode_storage::proto::MAX_STORE_MESSAGE).unwrap();
    (request, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_take_the_bulk_link_and_it_takes_only_what_the_mesh_would() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "bulk").await;

    // An upload's data chunks reach the two other replicas over the link: 16 chunks, two
    // copies each (the second in the background once the quorum is in).
    let body = data(1_000_000, 3);
    c.put(0, &tenant, "bulk", "big.bin", &body).await.unwrap();
    c.wait_until(
        "32 chunk copies served over the link",
        Duration::from_secs(20),
        |c| total(c, |m| m.bulk_chunks_served.get()) == 32,
    )
    .await;
    let edge = c.node(0).storage().metrics();
    assert_eq!(edge.bulk_chunks_sent.get(), 32);
    assert_eq!(total(&c, |m| m.bulk_fallbacks.get()), 0);
    for i in 0..3 {
        assert_eq!(
            c.get(i, &tenant, "bulk", "big.bin", None).await.unwrap(),
            body,
            "via node {i}"
        );
    }

    let port = c
        .node(1)
        .storage()
        .bulk_port()
        .expect("node 1 listens for bulk links");
    let addr = ("127.0.0.1", port);
    // A stranger: something that is not a hello, then a hello with a token never offered.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut s).await,
        "a stranger's garbage is refused"
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame::hello(&[7; frame::TOKEN_LEN]))
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut s).await,
        "a token never offered is refused"
    );

    // Node 2 plays a modified binary: it asks node 1 for a link over the mesh, as an edge
    // does, and then speaks the frames itself.
    let StoreResponse::BulkOffered {
        port: offered,
        token,
        key,
    } = c
        .raw_store_request(2, c.id(1), &StoreRequest::OpenBulk)
        .await
        .unwrap()
    else {
        panic!("node 1 offers a bulk link");
    };
    assert_eq!(offered, port);
    let token: [u8; frame::TOKEN_LEN] = token.try_into().unwrap();
    let key: [u8; frame::KEY_LEN] = key.try_into().unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame::hello(&token)).await.unwrap();
    let mut to_replica = FrameKey::new(&key, Direction::ToReplica).unwrap();
    let mut to_edge = FrameKey::new(&key, Direction::ToEdge).unwrap();

    // An honest chunk is stored, as a `PutChunk` by the mesh would be.
    let honest = data(5000, 9);
    let honest_id = ChunkId::of(&honest);
    let header = ChunkHeader {
        request: 1,
        id: honest_id,
        len: 5000,
        bucket: None,
    };
    send_chunk(&mut s, &mut to_replica, &header, &honest).await;
    let (request, answer) = read_answer(&mut s, &mut to_edge).await;
    assert_eq!(request, 1);
    assert!(matches!(answer, StoreResponse::Stored), "{answer:?}");
    assert!(held(&c, 1, &honest_id));

    // Bytes that do not hash to the id the sealed header names (changed on the way, or
    // forged): refused, and neither id is stored.
    let forged = data(5000, 10);
    let claimed = ChunkId::of(b"what the header claims");
    let header = ChunkHeader {
        request: 2,
        id: claimed,
        len: 5000,
        bucket: None,
    };
    send_chunk(&mut s, &mut to_replica, &header, &forged).await;
    let (request, answer) = read_answer(&mut s, &mut to_edge).await;
    assert_eq!(request, 2);
    assert!(matches!(answer, StoreResponse::Error(_)), "{answer:?}");
    assert!(!held(&c, 1, &claimed) && !held(&c, 1, &ChunkId::of(&forged)));

    // A frame replayed (sealed for a counter already used) closes the connection.
    let mut replayer = FrameKey::new(&key, Direction::ToReplica).unwrap();
    let header = ChunkHeader {
        request: 3,
        id: honest_id,
        len: 5000,
        bucket: None,
    };
    send_chunk(&mut s, &mut replayer, &header, &honest).await;
    assert!(closed_by_peer(&mut s).await, "a replayed frame is refused");

    // A token binds one connection only.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame::hello(&token)).await.unwrap();
    assert!(closed_by_peer(&mut s).await, "a token is used once");

    // A frame announcing more than a frame may hold is refused before it is read.
    let StoreResponse::BulkOffered { token, .. } = c
        .raw_store_request(2, c.id(1), &StoreRequest::OpenBulk)
        .await
        .unwrap()
    else {
        panic!("node 1 offers another link");
    };
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame::hello(&token.try_into().unwrap()))
        .await
        .unwrap();
    s.write_all(&(frame::MAX_SEALED + 1).to_be_bytes())
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut s).await,
        "an oversized frame is refused"
    );

    // A peer cannot pile up offers.
    let mut refused = 0;
    for _ in 0..8 {
        if let Ok(StoreResponse::Error(_)) = c
            .raw_store_request(2, c.id(1), &StoreRequest::OpenBulk)
            .await
        {
            refused += 1;
        }
    }
    assert!(
        refused >= 4,
        "at most a few offers per peer wait at once ({refused} refused)"
    );

    // With fault injection in force, the link is neither offered nor used: every byte then
    // meets the faults on the mesh.
    c.set_delay(1, Duration::from_millis(1)).await;
    let answer = c
        .raw_store_request(0, c.id(1), &StoreRequest::OpenBulk)
        .await
        .unwrap();
    assert!(matches!(answer, StoreResponse::Error(_)), "{answer:?}");
    c.set_delay(0, Duration::from_millis(1)).await;
    let before = edge.bulk_chunks_sent.get();
    let body = data(300_000, 4);
    c.put(0, &tenant, "bulk", "faulty.bin", &body)
        .await
        .unwrap();
    assert_eq!(edge.bulk_chunks_sent.get(), before);
    assert_eq!(
        c.get(2, &tenant, "bulk", "faulty.bin", None).await.unwrap(),
        body
    );
    c.shutdown().await;
}
