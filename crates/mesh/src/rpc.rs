//! Typed RPC over the mesh: a service declares its name, its request and response types
//! and its limits once; callers get typed [`Endpoint::call`], [`Endpoint::call_many`] and
//! [`Endpoint::try_call_quorum`]; servers implement [`Handler`].
//!
//! Framing, the per-service message limit, timeouts, per-peer and total concurrency limits
//! and the quorum rule live here, once, for every service (as in Garage's `net/endpoint.rs`
//! and `rpc/rpc_helper.rs`). Underneath, every service shares the mesh's one RPC protocol
//! (`/xnode/<network>/rpc/1`), which routes a request's body by service name.
//!
//! A call to this node itself never touches the network: the endpoint hands it straight
//! to the local handler, so code that asks "the replicas" need not treat itself specially.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use xnode_types::{NodeId, lock};
use xnode_wire::Versioned;
use xnode_worker::{Progress, Step, Worker, WorkerError};

use crate::proto::RpcRequest;
use crate::{InboundRequest, Mesh, MeshError, RpcErrorCode};

/// A service: its wire name, message types and limits.
pub trait Service: Send + Sync + 'static {
    /// The name requests are routed by (`store`, `compute`, `registry-sync`).
    const NAME: &'static str;
    /// The largest encoded request or response accepted, checked before decoding.
    const MAX_MESSAGE: usize;
    /// Requests of one peer served at once; more are answered `Overloaded` at once, so one
    /// peer cannot hold every handler.
    const MAX_IN_FLIGHT_PER_PEER: usize = 64;
    /// Requests served at once in total.
    const MAX_IN_FLIGHT: usize = 512;

    type Request: Versioned + Serialize + DeserializeOwned + Send + Sync + 'static;
    type Response: Versioned + Serialize + DeserializeOwned + Send + 'static;
}

/// Why a request was refused by the serving side, before or instead of an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    pub code: RpcErrorCode,
    pub message: String,
}

impl RpcError {
    pub fn new(code: RpcErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The serving side of a service.
#[async_trait::async_trait]
pub trait Handler<S: Service>: Send + Sync + 'static {
    /// Answers one request from `from` (this node itself for local calls).
    async fn handle(&self, from: NodeId, request: S::Request) -> Result<S::Response, RpcError>;
}

/// Why a quorum call failed: fewer than `needed` acceptable answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got} of {needed} required answers ({})", errors.join("; "))]
pub struct QuorumError {
    pub got: usize,
    pub needed: usize,
    /// One line per target that failed or answered unacceptably.
    pub errors: Vec<String>,
}

/// The client (and, once served, local) side of a service. Cheap to clone.
pub struct Endpoint<S: Service> {
    mesh: Mesh,
    local: Arc<OnceLock<Arc<dyn Handler<S>>>>,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> Clone for Endpoint<S> {
    fn clone(&self) -> Self {
        Self {
            mesh: self.mesh.clone(),
            local: self.local.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Service> std::fmt::Debug for Endpoint<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("service", &S::NAME)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Endpoint<S> {
    /// An endpoint for `S` on `mesh`. It can call peers at once; it answers peers (and
    /// calls to this node) once [`Endpoint::serve`] gave it a handler.
    pub fn new(mesh: &Mesh) -> Self {
        Self {
            mesh: mesh.clone(),
            local: Arc::new(OnceLock::new()),
            _service: PhantomData,
        }
    }

    /// The mesh underneath.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Calls `peer` and waits at most `timeout` for its answer.
    pub async fn call(
        &self,
        peer: NodeId,
        request: S::Request,
        timeout: Duration,
    ) -> Result<S::Response, MeshError> {
        if peer == self.mesh.local_id()
            && let Some(handler) = self.local.get()
        {
            return match tokio::time::timeout(timeout, handler.handle(peer, request)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(MeshError::Remote {
                    peer,
                    code: e.code,
                    message: e.message,
                }),
                Err(_) => Err(MeshError::Timeout { peer, timeout }),
            };
        }
        let envelope =
            RpcRequest::encode_with(S::NAME, &request).map_err(|source| MeshError::Encode {
                what: S::NAME,
                source,
            })?;
        let bytes = self
            .mesh
            .request_envelope(peer, S::NAME, envelope, timeout)
            .await?;
        xnode_wire::decode::<S::Response>(&bytes, S::MAX_MESSAGE).map_err(|e| {
            MeshError::Malformed {
                peer,
                reason: format!("{} answer: {e}", S::NAME),
            }
        })
    }

    /// Calls every peer at once and waits for every answer (or its timeout).
    pub async fn call_many(
        &self,
        peers: &[NodeId],
        request: S::Request,
        timeout: Duration,
    ) -> Vec<(NodeId, Result<S::Response, MeshError>)>
    where
        S::Request: Clone,
    {
        peers
            .iter()
            .map(|&peer| {
                let request = request.clone();
                async move { (peer, self.call(peer, request, timeout).await) }
            })
            .collect::<FuturesUnordered<_>>()
            .collect()
            .await
    }

    /// Sends `request` to every target at once and returns as soon as `quorum` of them gave
    /// an answer that `accept` takes; it never reports success with fewer. Calls still
    /// running when the quorum is reached go on in the background, so a write keeps
    /// reaching the remaining replicas after it was acknowledged.
    ///
    /// `accept` turns an answer into the caller's value, or says why the answer does not
    /// count (a wrong kind of answer, an error the service reported).
    pub async fn try_call_quorum<T, F>(
        &self,
        targets: &[NodeId],
        quorum: usize,
        request: S::Request,
        timeout: Duration,
        accept: F,
    ) -> Result<Vec<(NodeId, T)>, QuorumError>
    where
        S::Request: Clone,
        F: FnMut(NodeId, S::Response) -> Result<T, String>,
    {
        self.try_call_quorum_lingering(targets, quorum, Duration::ZERO, request, timeout, accept)
            .await
    }

    /// As [`Endpoint::try_call_quorum`], but once the quorum is reached it keeps listening
    /// to the targets that have not answered yet, for as long as the quorum took and at
    /// least `linger`, and returns every answer that arrived by then.
    ///
    /// Reads use it against a lying replica: a quorum is only guaranteed to include one
    /// replica that holds the latest write if every replica is honest. A replica that
    /// withholds an entry (or answers with an older genuine one) and a replica that
    /// missed the write can make a quorum of their own; hearing the rest of the replicas
    /// too, when they answer about as fast, lets the newest entry win anyway. A replica
    /// that is down costs nothing extra (its call fails at once), and a silent one at most
    /// the linger.
    pub async fn try_call_quorum_lingering<T, F>(
        &self,
        targets: &[NodeId],
        quorum: usize,
        linger: Duration,
        request: S::Request,
        timeout: Duration,
        mut accept: F,
    ) -> Result<Vec<(NodeId, T)>, QuorumError>
    where
        S::Request: Clone,
        F: FnMut(NodeId, S::Response) -> Result<T, String>,
    {
        let needed = quorum.max(1);
        let started = tokio::time::Instant::now();
        let (tx, mut rx) = mpsc::channel(targets.len().max(1));
        for &peer in targets {
            let endpoint = self.clone();
            let request = request.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = endpoint.call(peer, request, timeout).await;
                let _ = tx.send((peer, result)).await;
            });
        }
        drop(tx);
        let mut accepted = Vec::new();
        let mut errors = Vec::new();
        let mut deadline = None;
        loop {
            let next = match deadline {
                None => rx.recv().await,
                Some(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(next) => next,
                    // The linger is over: what has been heard is the answer.
                    Err(_) => break,
                },
            };
            let Some((peer, result)) = next else {
                break;
            };
            match result
                .map_err(|e| e.to_string())
                .and_then(|r| accept(peer, r))
            {
                Ok(value) => accepted.push((peer, value)),
                Err(reason) => errors.push(format!("{peer}: {reason}")),
            }
            if accepted.len() >= needed && deadline.is_none() {
                if linger.is_zero() {
                    break;
                }
                let now = tokio::time::Instant::now();
                deadline = Some(now + linger.max(now.saturating_duration_since(started)));
            }
        }
        if accepted.len() >= needed {
            return Ok(accepted);
        }
        Err(QuorumError {
            got: accepted.len(),
            needed,
            errors,
        })
    }

    /// Registers `handler` as this node's server of `S` (for peers and for local calls),
    /// and returns the worker that serves peers' requests. Run it with the node's runner.
    pub fn serve(&self, handler: Arc<dyn Handler<S>>) -> Server<S> {
        if self.local.set(handler.clone()).is_err() {
            tracing::warn!(
                service = S::NAME,
                "a service was served twice; the first handler stays local"
            );
        }
        Server {
            inbound: self.mesh.serve(S::NAME),
            handler,
            limits: Arc::new(Limits {
                total: Arc::new(Semaphore::new(S::MAX_IN_FLIGHT)),
                per_peer: Mutex::new(HashMap::new()),
            }),
            served: Arc::new(AtomicU64::new(0)),
            refused: Arc::new(AtomicU64::new(0)),
            pending: None,
        }
    }
}

struct Limits {
    total: Arc<Semaphore>,
    per_peer: Mutex<HashMap<NodeId, usize>>,
}

/// Holds one peer's in-flight slot; gives it back when dropped.
struct PeerSlot {
    limits: Arc<Limits>,
    peer: NodeId,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut per_peer = lock(&self.limits.per_peer);
        if let Some(n) = per_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

/// The worker serving one service's requests from peers: each request is decoded against
/// the service's limit and handled on its own task, within the concurrency limits.
pub struct Server<S: Service> {
    inbound: mpsc::Receiver<InboundRequest>,
    handler: Arc<dyn Handler<S>>,
    limits: Arc<Limits>,
    served: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    pending: Option<InboundRequest>,
}

impl<S: Service> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("service", &S::NAME)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Server<S> {
    fn dispatch(&self, request: InboundRequest) {
        let refuse = |request: InboundRequest, message: String| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let _ = request.reply.send(Err((RpcErrorCode::Overloaded, message)));
        };
        let Ok(permit) = self.limits.total.clone().try_acquire_owned() else {
            return refuse(request, format!("service {} is at its limit", S::NAME));
        };
        {
            let mut per_peer = lock(&self.limits.per_peer);
            let n = per_peer.entry(request.from).or_insert(0);
            if *n >= S::MAX_IN_FLIGHT_PER_PEER {
                drop(per_peer);
                return refuse(
                    request,
                    format!("too many requests from this peer to {}", S::NAME),
                );
            }
            *n += 1;
        }
        // Both slots are given back when the task ends, however it ends.
        let slot = PeerSlot {
            limits: self.limits.clone(),
            peer: request.from,
        };
        let handler = self.handler.clone();
        let served = self.served.clone();
        tokio::spawn(async move {
            let answer = match xnode_wire::decode::<S::Request>(&request.body, S::MAX_MESSAGE) {
                Ok(decoded) => match handler.handle(request.from, decoded).await {
                    Ok(response) => xnode_wire::encode(&response)
                        .map_err(|e| (RpcErrorCode::Internal, e.to_string())),
                    Err(e) => Err((e.code, e.message)),
                },
                Err(e) => Err((RpcErrorCode::BadRequest, e.to_string())),
            };
            let _ = request.reply.send(answer);
            served.fetch_add(1, Ordering::Relaxed);
            drop((slot, permit));
        });
    }
}

#[async_trait::async_trait]
impl<S: Service> Worker for Server<S> {
    fn name(&self) -> String {
        format!("rpc:{}", S::NAME)
    }

    fn progress(&self) -> Progress {
        let in_flight = S::MAX_IN_FLIGHT.saturating_sub(self.limits.total.available_permits());
        Progress {
            items_done: self.served.load(Ordering::Relaxed),
            queued: Some(in_flight as u64),
            detail: Some(format!(
                "{} refused as overloaded",
                self.refused.load(Ordering::Relaxed)
            )),
        }
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        if let Some(request) = self.pending.take() {
            self.dispatch(request);
        }
        // Take whatever else is already queued without going idle in between.
        while let Ok(request) = self.inbound.try_recv() {
            self.dispatch(request);
        }
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) -> Step {
        match self.inbound.recv().await {
            Some(request) => {
                self.pending = Some(request);
                Step::Busy
            }
            None => Step::Done,
        }
    }
}
