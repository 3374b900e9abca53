//! The bulk link: an upload's sealed chunks go to a replica over a TCP connection of their
//! own, beside the mesh, instead of through the mesh's encrypted and multiplexed
//! transport.
//!
//! A chunk of an object is ciphertext already (sealed with the object's key, which no
//! replica holds) and its id is the BLAKE3 hash of those bytes, checked by the replica
//! before it stores them. Encrypting it again for the mesh (Noise's ChaCha20-Poly1305 on
//! both ends) and framing it through yamux took about a fifth of the three nodes' CPU in
//! a large PUT. What still needs the session's secrecy and integrity, the request (chunk
//! id, tenant and bucket) and the answer, is sealed frame by frame under a key the
//! replica hands the edge over the mesh, with a one-time token that binds the TCP
//! connection to the peer that asked for it; see `frame` for the format.
//!
//! The link is an optimisation, never a requirement: an edge that cannot open or keep one
//! (a replica behind a firewall, an older node, a connection that broke) sends the chunk
//! over the mesh as before (`PutChunk` is idempotent), and waits a while before trying
//! the link to that peer again. While fault injection is in force on either end, the link
//! is not used, so partitions and lossy links apply to every byte as they did. Only data
//! chunks take it; manifests, whose contents are not all sealed, stay on the mesh.

pub mod frame;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use xnode_types::NodeId;
use xnode_worker::{Progress, Step, Worker, WorkerError};

pub use frame::FrameError;
use frame::{ChunkHeader, Direction, FrameKey, HELLO_LEN, KEY_LEN, TOKEN_LEN};

use crate::proto::{StoreRequest, StoreResponse};
use crate::{Storage, StorageError};

/// How long an offered token waits for its connection.
const OFFER_TTL: Duration = Duration::from_secs(10);
/// Offers not yet taken, per peer and in all: a peer cannot fill the table.
const MAX_OFFERS_PER_PEER: usize = 4;
const MAX_OFFERS: usize = 1024;
/// Bulk connections served at once, per peer and in all.
const MAX_CONNECTIONS_PER_PEER: usize = 4;
const MAX_CONNECTIONS: usize = 256;
/// Chunks of one connection being stored at once (the replica's fsyncs overlap, as they
/// do for requests over the mesh); further frames wait to be read.
const CHUNKS_IN_FLIGHT_PER_CONNECTION: usize = 16;
/// A connection that sends no hello in this time, or stalls inside a frame this long, is
/// closed; one with no frame at all for `IDLE` is closed too.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(120);
/// How long an edge opens a link for before it sends by the mesh instead.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// After a link to a peer could not be opened or broke, its chunks go by the mesh this
/// long before the link is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The bytes of chunks a replica holds in memory at once for all its bulk connections,
/// between reading them and storing them; a frame waits to be read while it is spent.
const RECEIVE_BUDGET_KIB: usize = 256 * 1024;
/// The largest chunk a bulk frame may announce: the largest configurable chunk, sealed.
const MAX_CHUNK_LEN: u32 = xnode_store::MAX_CHUNK_SIZE + xnode_store::TAG_LEN as u32;

/// The bulk link's state on one node: the listener's port, the offers made to peers and
/// the connections served (replica side), and the links to peers (edge side).
#[derive(Debug)]
pub(crate) struct Bulk {
    port: OnceLock<u16>,
    offers: Mutex<HashMap<[u8; TOKEN_LEN], Offer>>,
    served: Mutex<HashMap<NodeId, usize>>,
    /// KiB of received chunks not yet stored, over every connection.
    receiving: Arc<Semaphore>,
    links: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl Default for Bulk {
    fn default() -> Self {
        Self {
            port: OnceLock::new(),
            offers: Mutex::default(),
            served: Mutex::default(),
            receiving: Arc::new(Semaphore::new(RECEIVE_BUDGET_KIB)),
            links: Mutex::default(),
        }
    }
}

#[derive(Debug)]
struct Offer {
    peer: NodeId,
    key: [u8; KEY_LEN],
    expires: Instant,
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Closed,
    Open(Arc<Link>),
    /// Opening failed or the link broke: by the mesh until then.
    Resting(Instant),
}

/// Whether a chunk was answered over the link, or should go by the mesh.
// Lives for one call, returned at once; boxing the answer would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Sent {
    Answered(Result<StoreResponse, StorageError>),
    ByMesh,
}

impl Storage {
    /// Binds the bulk link's listener (port 0 picks a free one) and returns the worker
    /// that accepts its connections. Without it this node offers no link, and edges send
    /// it chunks over the mesh.
    pub fn bulk_listener(
        self: &Arc<Self>,
        bind: SocketAddr,
    ) -> Result<Box<dyn Worker>, StorageError> {
        let listener = std::net::TcpListener::bind(bind)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(|e| StorageError::Internal(format!("bulk link listener on {bind}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| StorageError::Internal(format!("bulk link listener: {e}")))?
            .port();
        let _ = self.bulk.port.set(port);
        Ok(Box::new(BulkListener {
            storage: Arc::downgrade(self),
            listener,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            accepted: 0,
        }))
    }

    /// The port of this node's bulk link, once its listener is bound.
    pub fn bulk_port(&self) -> Option<u16> {
        self.bulk.port.get().copied()
    }

    /// Fault injection applies to the mesh; while any is in force here, the link is not
    /// used in either direction, so every byte meets the faults.
    fn faults_in_force(&self) -> bool {
        self.mesh.faults() != xnode_mesh::FaultRules::default()
    }

    /// Answers a peer's `OpenBulk`: a one-time token and a session key, over the mesh.
    pub(crate) fn answer_open_bulk(&self, from: NodeId) -> Result<StoreResponse, StorageError> {
        let port = self
            .bulk_port()
            .filter(|_| self.config.bulk_link && !self.faults_in_force())
            .ok_or_else(|| StorageError::BadRequest("this node offers no bulk link".into()))?;
        let now = Instant::now();
        let mut offers = lock(&self.bulk.offers);
        offers.retain(|_, offer| offer.expires > now);
        let from_peer = offers.values().filter(|o| o.peer == from).count();
        if from_peer >= MAX_OFFERS_PER_PEER || offers.len() >= MAX_OFFERS {
            return Err(StorageError::BadRequest(
                "too many bulk links are being opened; send by the mesh".into(),
            ));
        }
        let token: [u8; TOKEN_LEN] = rand::random();
        let key: [u8; KEY_LEN] = rand::random();
        offers.insert(
            token,
            Offer {
                peer: from,
                key,
                expires: now + OFFER_TTL,
            },
        );
        Ok(StoreResponse::BulkOffered {
            port,
            token: token.to_vec(),
            key: key.to_vec(),
        })
    }

    /// Sends a data chunk's `PutChunk` to `peer` over the bulk link when one can be used;
    /// `ByMesh` when not (the caller sends it by the mesh, nothing having been stored or
    /// only what the mesh's copy will find already held).
    pub(crate) async fn put_chunk_bulk(
        self: &Arc<Self>,
        peer: NodeId,
        request: &StoreRequest,
        timeout: Duration,
    ) -> Sent {
        let StoreRequest::PutChunk { id, data, bucket } = request else {
            return Sent::ByMesh;
        };
        if !self.config.bulk_link
            || self.faults_in_force()
            || peer == self.node_id
            || bucket
                .as_ref()
                .is_some_and(|b| !frame::fits_header(&b.name))
        {
            return Sent::ByMesh;
        }
        let Some(link) = self.bulk_link_to(peer).await else {
            self.metrics.bulk_fallbacks.inc();
            return Sent::ByMesh;
        };
        let header = |request| ChunkHeader {
            request,
            id: *id,
            len: u32::try_from(data.len()).unwrap_or(u32::MAX),
            bucket: bucket.clone(),
        };
        match tokio::time::timeout(timeout, link.put(header, data)).await {
            Ok(Ok(response)) => {
                self.metrics.bulk_chunks_sent.inc();
                self.metrics.bulk_bytes_sent.inc_by(data.len() as u64);
                Sent::Answered(match response {
                    StoreResponse::Error(message) => {
                        Err(StorageError::Internal(format!("node {peer}: {message}")))
                    }
                    response => Ok(response),
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, "bulk link failed, sending by the mesh: {e}");
                self.rest_bulk_link(peer, &link).await;
                self.metrics.bulk_fallbacks.inc();
                Sent::ByMesh
            }
            // The mesh would be no faster for a slow replica, and the caller's timeout is
            // what one costs either way, so the chunk is not sent again. But a frame may
            // have been cut off mid-write, so later chunks take the mesh for a while.
            Err(_) => {
                self.rest_bulk_link(peer, &link).await;
                Sent::Answered(Err(StorageError::Quorum(format!(
                    "node {peer}: no answer over the bulk link within {timeout:?}"
                ))))
            }
        }
    }

    /// The open link to `peer`, opening one if none is open and none failed lately.
    async fn bulk_link_to(self: &Arc<Self>, peer: NodeId) -> Option<Arc<Link>> {
        let slot = lock(&self.bulk.links).entry(peer).or_default().clone();
        // Chunks of one upload wait here for the one opening, not each open their own.
        let mut slot = slot.lock().await;
        match &*slot {
            Slot::Open(link) if link.alive.load(Ordering::Acquire) => return Some(link.clone()),
            Slot::Resting(until) if Instant::now() < *until => return None,
            _ => {}
        }
        match self.open_bulk_link(peer).await {
            Ok(link) => {
                *slot = Slot::Open(link.clone());
                Some(link)
            }
            Err(e) => {
                tracing::debug!(%peer, "no bulk link, sending chunks by the mesh: {e}");
                *slot = Slot::Resting(Instant::now() + RETRY_AFTER);
                None
            }
        }
    }

    async fn rest_bulk_link(&self, peer: NodeId, broken: &Arc<Link>) {
        let slot = lock(&self.bulk.links).get(&peer).cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if matches!(&*slot, Slot::Open(link) if Arc::ptr_eq(link, broken)) {
                *slot = Slot::Resting(Instant::now() + RETRY_AFTER);
            }
        }
    }

    async fn open_bulk_link(self: &Arc<Self>, peer: NodeId) -> Result<Arc<Link>, StorageError> {
        let host = self
            .mesh
            .members()
            .into_iter()
            .find(|m| m.id == peer)
            .and_then(|m| m.addresses.iter().find_map(|a| tcp_host(a)))
            .ok_or_else(|| StorageError::Quorum(format!("node {peer}: no TCP address known")))?;
        let StoreResponse::BulkOffered { port, token, key } = self
            .call(peer, StoreRequest::OpenBulk, OPEN_TIMEOUT)
            .await?
        else {
            return Err(StorageError::Internal(format!(
                "node {peer}: answered OpenBulk with something else"
            )));
        };
        let token: [u8; TOKEN_LEN] = token
            .try_into()
            .map_err(|_| StorageError::Internal(format!("node {peer}: a malformed bulk token")))?;
        let key: [u8; KEY_LEN] = key
            .try_into()
            .map_err(|_| StorageError::Internal(format!("node {peer}: a malformed bulk key")))?;
        let addr = SocketAddr::new(host, port);
        let connect = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            stream.write_all(&frame::hello(&token)).await?;
            Ok::<_, std::io::Error>(stream)
        };
        let stream = tokio::time::timeout(OPEN_TIMEOUT, connect)
            .await
            .map_err(|_| {
                StorageError::Quorum(format!("node {peer}: bulk link to {addr} timed out"))
            })?
            .map_err(|e| StorageError::Quorum(format!("node {peer}: bulk link to {addr}: {e}")))?;
        Link::start(stream, &key).map_err(|e| StorageError::Internal(e.to_string()))
    }
}

/// The host of a `/ip4/…/tcp/…` or `/ip6/…/tcp/…` address.
fn tcp_host(address: &str) -> Option<std::net::IpAddr> {
    let parts: Vec<&str> = address.split('/').collect();
    let ip = parts
        .windows(2)
        .find(|w| w[0] == "ip4" || w[0] == "ip6")
        .and_then(|w| w[1].parse().ok())?;
    parts.contains(&"tcp").then_some(ip)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An edge's open link to one replica: frames are written whole, one at a time, and a
/// task reads the answers and hands each to the request it names.
#[derive(Debug)]
struct Link {
    writer: tokio::sync::Mutex<(OwnedWriteHalf, FrameKey)>,
    shared: Arc<LinkShared>,
    alive: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct LinkShared {
    next_request: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<StoreResponse>>>,
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameKey")
    }
}

/// Forgets a request's waiter however its call ends (answered, timed out, dropped).
struct Waiting<'a>(&'a LinkShared, u64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.0.waiting).remove(&self.1);
    }
}

impl Link {
    fn start(stream: TcpStream, key: &[u8; KEY_LEN]) -> Result<Arc<Self>, FrameError> {
        let (reader, writer) = stream.into_split();
        let shared = Arc::new(LinkShared::default());
        let alive = Arc::new(AtomicBool::new(true));
        let answers = FrameKey::new(key, Direction::ToEdge)?;
        tokio::spawn(read_answers(reader, answers, shared.clone(), alive.clone()));
        Ok(Arc::new(Self {
            writer: tokio::sync::Mutex::new((writer, FrameKey::new(key, Direction::ToReplica)?)),
            shared,
            alive,
        }))
    }

    async fn put(
        &self,
        header: impl FnOnce(u64) -> ChunkHeader,
        data: &Bytes,
    ) -> Result<StoreResponse, FrameError> {
        let request = self.shared.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiting).insert(request, tx);
        let _waiting = Waiting(&self.shared, request);
        let header = header(request).encode()?;
        {
            let mut writer = self.writer.lock().await;
            let (stream, key) = &mut *writer;
            let frame = key.seal(header)?;
            let written = async {
                stream.write_all(&frame).await?;
                stream.write_all(data).await
            }
            .await;
            if let Err(e) = written {
                // A frame cut short leaves the stream unusable for every later frame.
                self.alive.store(false, Ordering::Release);
                return Err(e.into());
            }
        }
        rx.await.map_err(|_| {
            FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the bulk link closed before the replica answered",
            ))
        })
    }
}

async fn read_answers(
    mut reader: OwnedReadHalf,
    mut key: FrameKey,
    shared: Arc<LinkShared>,
    alive: Arc<AtomicBool>,
) {
    let result: Result<(), FrameError> = async {
        loop {
            let sealed = read_sealed(&mut reader, None).await?;
            let plain = key.open(sealed)?;
            let (request, body) = frame::decode_answer(&plain)?;
            let response = xnode_wire::decode::<StoreResponse>(body, frame::MAX_SEALED as usize)
                .map_err(|_| FrameError::Malformed("an answer that is not a store response"))?;
            if let Some(waiter) = lock(&shared.waiting).remove(&request) {
                let _ = waiter.send(response);
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("bulk link closed: {e}");
    }
    alive.store(false, Ordering::Release);
    // Every call still waiting learns at once that its answer will not come.
    lock(&shared.waiting).clear();
}

/// Reads one frame's sealed bytes; `within` bounds the wait for its first byte.
async fn read_sealed(
    reader: &mut OwnedReadHalf,
    within: Option<Duration>,
) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    match within {
        Some(limit) => tokio::time::timeout(limit, reader.read_exact(&mut prefix))
            .await
            .map_err(|_| timed_out("no frame"))??,
        None => reader.read_exact(&mut prefix).await?,
    };
    let len = frame::sealed_len(prefix)?;
    let mut sealed = vec![0u8; len];
    tokio::time::timeout(FRAME_TIMEOUT, reader.read_exact(&mut sealed))
        .await
        .map_err(|_| timed_out("a frame stalled"))??;
    Ok(sealed)
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned())
}

/// The worker that accepts bulk connections and serves each on a task of its own.
struct BulkListener {
    storage: Weak<Storage>,
    listener: TcpListener,
    connections: Arc<Semaphore>,
    accepted: u64,
}

#[async_trait::async_trait]
impl Worker for BulkListener {
    fn name(&self) -> String {
        "storage-bulk-link".into()
    }

    fn progress(&self) -> Progress {
        Progress {
            items_done: self.accepted,
            queued: Some((MAX_CONNECTIONS - self.connections.available_permits()) as u64),
            detail: self
                .listener
                .local_addr()
                .ok()
                .map(|a| format!("listening on {a}")),
        }
    }

    async fn work(&mut self, shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        let (stream, _) = tokio::select! {
            accepted = self.listener.accept() => accepted
                .map_err(|e| WorkerError::new(format!("bulk link accept: {e}")))?,
            () = shutdown.cancelled() => return Ok(Step::Done),
        };
        // Over the limit, a connection is closed at once: its edge sends by the mesh.
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            return Ok(Step::Busy);
        };
        self.accepted += 1;
        let storage = self.storage.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = serve_connection(storage, stream, permit) => {
                    if let Err(e) = served {
                        tracing::debug!("bulk connection closed: {e}");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
        Ok(Step::Busy)
    }

    async fn wait_for_work(&mut self) -> Step {
        Step::Busy
    }
}

/// Counts a peer's served connections while one lives.
struct Served {
    storage: Arc<Storage>,
    peer: NodeId,
}

impl Drop for Served {
    fn drop(&mut self) {
        let mut served = lock(&self.storage.bulk.served);
        if let Some(n) = served.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                served.remove(&self.peer);
            }
        }
    }
}

async fn serve_connection(
    storage: Weak<Storage>,
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
) -> Result<(), FrameError> {
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let mut hello = [0u8; HELLO_LEN];
    tokio::time::timeout(HELLO_TIMEOUT, reader.read_exact(&mut hello))
        .await
        .map_err(|_| timed_out("no hello"))??;
    let token = frame::parse_hello(&hello)?;
    let Some(storage) = storage.upgrade() else {
        return Ok(());
    };
    let offer = lock(&storage.bulk.offers)
        .remove(&token)
        .filter(|offer| offer.expires > Instant::now())
        .ok_or(FrameError::Malformed(
            "a token not offered, used, or expired",
        ))?;
    let peer = offer.peer;
    {
        let mut served = lock(&storage.bulk.served);
        let n = served.entry(peer).or_default();
        if *n >= MAX_CONNECTIONS_PER_PEER {
            return Err(FrameError::Malformed(
                "too many bulk connections from one peer",
            ));
        }
        *n += 1;
    }
    let _served = Served {
        storage: storage.clone(),
        peer,
    };
    let mut requests = FrameKey::new(&offer.key, Direction::ToReplica)?;
    let mut answers = FrameKey::new(&offer.key, Direction::ToEdge)?;
    let in_flight = Arc::new(Semaphore::new(CHUNKS_IN_FLIGHT_PER_CONNECTION));
    let (answer_tx, mut answer_rx) =
        mpsc::channel::<(u64, StoreResponse)>(CHUNKS_IN_FLIGHT_PER_CONNECTION);
    let write_answers = async move {
        while let Some((request, response)) = answer_rx.recv().await {
            let body = xnode_wire::encode(&response)
                .map_err(|_| FrameError::Malformed("an answer that does not encode"))?;
            let frame = answers.seal(frame::encode_answer(request, &body))?;
            writer.write_all(&frame).await?;
        }
        Ok::<(), FrameError>(())
    };
    let read_requests = async {
        loop {
            let sealed = match read_sealed(&mut reader, Some(IDLE)).await {
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(());
                }
                other => other?,
            };
            let header = ChunkHeader::decode(&requests.open(sealed)?)?;
            if header.len > MAX_CHUNK_LEN {
                return Err(FrameError::TooLarge(u64::from(header.len)));
            }
            let closed = |_| FrameError::Malformed("closed");
            let permit = in_flight.clone().acquire_owned().await.map_err(closed)?;
            let kib = (header.len as usize).div_ceil(1024).max(1);
            let budget = storage
                .bulk
                .receiving
                .clone()
                .acquire_many_owned(u32::try_from(kib).unwrap_or(u32::MAX))
                .await
                .map_err(closed)?;
            let data = read_chunk(&mut reader, header.len as usize).await?;
            if storage.faults_in_force() {
                return Err(FrameError::Malformed("fault injection came into force"));
            }
            let (storage, answer_tx) = (storage.clone(), answer_tx.clone());
            storage.metrics.bulk_chunks_served.inc();
            tokio::spawn(async move {
                let request = StoreRequest::PutChunk {
                    id: header.id,
                    data,
                    bucket: header.bucket,
                };
                let response = storage.answer_peer(peer, request).await;
                drop(budget);
                let _ = answer_tx.send((header.request, response)).await;
                drop(permit);
            });
        }
    };
    // The connection ends when the edge closes it or either direction fails.
    tokio::select! {
        read = read_requests => read,
        written = write_answers => written,
    }
}

/// Reads a chunk's bytes into memory that is filled, never zeroed first.
async fn read_chunk(reader: &mut OwnedReadHalf, len: usize) -> Result<Bytes, FrameError> {
    let mut data = BytesMut::with_capacity(len);
    let mut limited = reader.take(len as u64);
    tokio::time::timeout(FRAME_TIMEOUT, async {
        while data.len() < len {
            if limited.read_buf(&mut data).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| timed_out("a chunk stalled"))??;
    Ok(data.freeze())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hosts_come_from_tcp_addresses_only() {
        assert_eq!(
            tcp_host("/ip4/10.1.2.3/tcp/4001/p2p/12D3KooW"),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(tcp_host("/ip6/::1/tcp/4001"), Some("::1".parse().unwrap()));
        assert_eq!(tcp_host("/ip4/10.1.2.3/udp/4001/quic-v1"), None);
        assert_eq!(tcp_host("/dns4/example.org/tcp/4001"), None);
        assert_eq!(tcp_host("garbage"), None);
    }
}
