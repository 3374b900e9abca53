//! The node's side of the receipt exchange: the `receipts` RPC service, the worker that
//! proposes, and the handle the resource-owning crates feed.
//!
//! Every `exchange_interval` the worker flushes the meters and, for the current and the
//! previous epoch, proposes every counter whose metered total is ahead of its
//! countersigned one to the edge the tenant's traffic came from. An edge that refuses an
//! over-claim names the total it accepts; the worker proposes that total at once, so the
//! provider is paid for what the edge saw. After each round the serve gate learns which
//! tenants' usage is covered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_db::{Db, Table};
use xnode_ledger::{CountersignGrant, Epoch, GRANT_VERSION, MAX_GRANT_EPOCHS, Receipt, Resource};
use xnode_mesh::{Endpoint, Handler, Mesh, RpcError, Server, Service};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey, lock, unix_ms};
use xnode_worker::{Interval, Worker, WorkerError, periodic};

use crate::runs::RunsSeen;
use crate::{
    CounterKey, Decision, EdgeCheck, MAX_RECEIPT_MESSAGE, Meter, MeteringError, ReceiptRequest,
    ReceiptResponse, ReceiptStore, RunReport, ServeGate, Tolerance, epoch_at, propose,
};

/// What this node served, per tenant.
pub const PROVIDED: Table = Table("metering_provided");
/// What this node, as a tenant's edge, observed of each provider.
pub const OBSERVED: Table = Table("metering_observed");
/// Countersigned receipts (as provider and as edge).
pub const RECEIPTS: Table = Table("metering_receipts");
/// Countersigning grants tenants gave this node.
pub const GRANTS: Table = Table("metering_grants");
/// What this node, as a tenant's edge, last observed of each job's or worker's reported
/// usage.
pub const RUNS_SEEN: Table = Table("metering_runs_seen");

/// The `[metering]` section of the node's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeteringConfig {
    /// The length of a settlement epoch.
    #[serde(with = "xnode_types::duration_text")]
    pub epoch: Duration,
    /// How often providers propose receipts to edges.
    #[serde(with = "xnode_types::duration_text")]
    pub exchange_interval: Duration,
    /// How long a provider serves a tenant whose usage is not countersigned.
    #[serde(with = "xnode_types::duration_text")]
    pub grace: Duration,
    /// Whether a provider stops serving a tenant after `grace` without countersignatures.
    /// Off by default until every client sends its edge a grant.
    pub enforce: bool,
    /// How far a provider's claim may exceed what the edge observed.
    pub tolerance: Tolerance,
    /// How long an edge remembers a job's or a worker's reported usage after it last grew
    /// (`metering_runs_seen`); a run of work the tenant signed longer ago than this,
    /// which the edge has no record of, counts only its later increases.
    #[serde(with = "xnode_types::duration_text")]
    pub runs_seen_horizon: Duration,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            epoch: Duration::from_secs(3600),
            exchange_interval: Duration::from_secs(30),
            grace: Duration::from_secs(600),
            enforce: false,
            tolerance: Tolerance::default(),
            runs_seen_horizon: DEFAULT_RUNS_SEEN_HORIZON,
        }
    }
}

/// A week: a run idle that long is forgotten, and a job first seen that long after the
/// tenant signed it is not paid for its past (see `docs/design/metering.md`).
pub const DEFAULT_RUNS_SEEN_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

impl MeteringConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.epoch < Duration::from_secs(1) || self.exchange_interval.is_zero() {
            return Err(
                "metering.epoch must be at least 1s and metering.exchange_interval above zero"
                    .into(),
            );
        }
        if self.runs_seen_horizon < self.epoch.saturating_mul(2) {
            return Err("metering.runs_seen_horizon must be at least two epochs".into());
        }
        Ok(())
    }

    fn runs_seen_horizon_ms(&self) -> u64 {
        u64::try_from(self.runs_seen_horizon.as_millis()).unwrap_or(u64::MAX)
    }

    fn epoch_ms(&self) -> u64 {
        u64::try_from(self.epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Why a grant was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// The grant names another network, node, version, or too long a range.
    #[error("grant does not fit this node: {0}")]
    Mismatch(&'static str),
    /// The tenant's signature does not verify.
    #[error("grant signature does not verify")]
    BadSignature,
}

/// The `receipts` service on the mesh.
#[derive(Debug)]
pub struct ReceiptService;

impl Service for ReceiptService {
    const NAME: &'static str = "receipts";
    const MAX_MESSAGE: usize = MAX_RECEIPT_MESSAGE;
    const MAX_IN_FLIGHT_PER_PEER: usize = 16;
    type Request = ReceiptRequest;
    type Response = ReceiptResponse;
}

/// Metering and the receipt exchange of one node. Shared by storage, compute and the API.
pub struct Metering {
    id: NodeId,
    key: SecretKey,
    network: String,
    config: MeteringConfig,
    provided: Meter,
    observed: Meter,
    store: ReceiptStore,
    runs: RunsSeen,
    check: EdgeCheck,
    gate: Mutex<ServeGate>,
    /// The edge each tenant's traffic last came through: where proposals go.
    edges: Mutex<BTreeMap<PublicKeyBytes, NodeId>>,
    /// The edge that handed this node each tenant's latest job or worker: where that
    /// tenant's `JobFuel` and `WorkerFuel` go (storage traffic between the tenant's own
    /// runners must not redirect them to a node without the tenant's grant).
    work_edges: Mutex<BTreeMap<PublicKeyBytes, NodeId>>,
    /// The epoch in which `metering_runs_seen` was last pruned: once an epoch is enough.
    runs_pruned_in: Mutex<Option<Epoch>>,
    endpoint: Endpoint<ReceiptService>,
}

impl std::fmt::Debug for Metering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metering")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Metering {
    /// Metering for this node.
    pub fn new(
        key: SecretKey,
        network: &str,
        db: Db,
        mesh: &Mesh,
        config: MeteringConfig,
    ) -> Arc<Self> {
        let grace_ms = u64::try_from(config.grace.as_millis()).unwrap_or(u64::MAX);
        Arc::new(Self {
            id: key.node_id(),
            network: network.to_owned(),
            provided: Meter::new(db.clone(), PROVIDED),
            observed: Meter::new(db.clone(), OBSERVED),
            runs: RunsSeen::new(db.clone(), RUNS_SEEN, config.runs_seen_horizon_ms()),
            store: ReceiptStore::new(db, network, RECEIPTS, GRANTS),
            check: EdgeCheck::new(network, config.tolerance),
            gate: Mutex::new(ServeGate::new(grace_ms)),
            edges: Mutex::new(BTreeMap::new()),
            work_edges: Mutex::new(BTreeMap::new()),
            runs_pruned_in: Mutex::new(None),
            endpoint: Endpoint::new(mesh),
            key,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MeteringConfig {
        &self.config
    }

    /// The epoch now.
    pub fn current_epoch(&self) -> Epoch {
        epoch_at(unix_ms(), self.config.epoch_ms())
    }

    /// Provider side: this node served `units` of `resource` to `tenant`, whose traffic
    /// came through `edge`.
    pub fn provided(&self, tenant: PublicKeyBytes, edge: NodeId, resource: Resource, units: u64) {
        lock(&self.edges).insert(tenant, edge);
        self.provided.add(
            CounterKey {
                tenant,
                provider: self.id,
                resource,
                epoch: self.current_epoch(),
            },
            units,
        );
    }

    /// Provider side: `edge` is the node through which `tenant` reached this node (for a
    /// job or a worker, the node that accepted it and pushed its keys here). Later usage
    /// metered with [`Metering::provided_via_edge`] is proposed to it.
    pub fn note_edge(&self, tenant: PublicKeyBytes, edge: NodeId) {
        lock(&self.work_edges).insert(tenant, edge);
    }

    /// Where `tenant`'s counters of `resource` are proposed.
    fn edge_for(&self, tenant: &PublicKeyBytes, resource: Resource) -> Option<NodeId> {
        let work = matches!(resource, Resource::JobFuel | Resource::WorkerFuel);
        let noted = if work {
            lock(&self.work_edges).get(tenant).copied()
        } else {
            None
        };
        noted.or_else(|| lock(&self.edges).get(tenant).copied())
    }

    /// Provider side: this node ran `units` of `resource` for `tenant` with no request in
    /// hand (a job, a worker), so the usage goes to the edge the tenant last came
    /// through. Usage of a tenant with no known edge, or whose edge is this node itself,
    /// is not metered: no other node could countersign it. Returns whether it was.
    pub fn provided_via_edge(
        &self,
        tenant: PublicKeyBytes,
        resource: Resource,
        units: u64,
    ) -> bool {
        match self.edge_for(&tenant, resource) {
            Some(edge) if edge != self.id => {
                self.provided.add(
                    CounterKey {
                        tenant,
                        provider: self.id,
                        resource,
                        epoch: self.current_epoch(),
                    },
                    units,
                );
                true
            }
            _ => false,
        }
    }

    /// Whether this node holds a countersigning grant of `tenant` covering the current
    /// epoch: whether it acts as that tenant's edge for receipts.
    pub fn holds_grant(&self, tenant: &PublicKeyBytes) -> bool {
        let now = self.current_epoch();
        matches!(self.store.grant(tenant), Ok(Some(grant)) if grant.body.covers(now))
    }

    /// Edge side: observes the increase of a provider's report of a job's or a worker's
    /// cumulative usage since this node last saw it, at most `per_second` units a second
    /// since the last increase (`None`: no rate cap). Returns the units observed.
    pub fn observe_run(
        &self,
        report: &RunReport<'_>,
        per_second: Option<u64>,
    ) -> Result<u64, MeteringError> {
        let units = self.runs.observe(report, per_second, unix_ms())?;
        self.observed(report.tenant, report.provider, report.resource, units);
        Ok(units)
    }

    /// Edge side: this node saw `provider` serve `units` of `resource` to `tenant`.
    pub fn observed(
        &self,
        tenant: PublicKeyBytes,
        provider: NodeId,
        resource: Resource,
        units: u64,
    ) {
        self.observed.add(
            CounterKey {
                tenant,
                provider,
                resource,
                epoch: self.current_epoch(),
            },
            units,
        );
    }

    /// The total of `key`'s counter this node metered as provider (stored plus pending).
    pub fn provided_total(&self, key: &CounterKey) -> Result<u64, MeteringError> {
        self.provided.cumulative(key)
    }

    /// The total of `key`'s counter this node observed as the tenant's edge.
    pub fn observed_total(&self, key: &CounterKey) -> Result<u64, MeteringError> {
        self.observed.cumulative(key)
    }

    /// Whether the provider still serves `tenant` (always, unless enforcement is on and
    /// its usage went uncovered for longer than the grace).
    pub fn may_serve(&self, tenant: &PublicKeyBytes) -> bool {
        !self.config.enforce || lock(&self.gate).may_serve(tenant, unix_ms())
    }

    /// Keeps a tenant's grant to this node, after checking it.
    pub fn accept_grant(&self, grant: &CountersignGrant) -> Result<(), GrantAcceptError> {
        let body = &grant.body;
        let mismatch = |what| Err(GrantAcceptError::Grant(GrantError::Mismatch(what)));
        if body.v != GRANT_VERSION {
            return mismatch("unsupported grant version");
        }
        if body.network != self.network {
            return mismatch("grant is for another network");
        }
        if body.delegate != self.id || body.delegate_key != self.key.public() {
            return mismatch("grant names another node");
        }
        if body.until_epoch < body.from_epoch
            || body.until_epoch.0 - body.from_epoch.0 >= MAX_GRANT_EPOCHS
        {
            return mismatch("grant's epoch range is empty or too long");
        }
        if !body.tenant.verify(&body.signing_text(), &grant.tenant_sig) {
            return Err(GrantAcceptError::Grant(GrantError::BadSignature));
        }
        self.store.put_grant(grant)?;
        Ok(())
    }

    /// The countersigned receipts this node holds for `epoch` (as provider and as edge).
    pub fn receipts(&self, epoch: Epoch, limit: usize) -> Result<Vec<Receipt>, MeteringError> {
        self.store.epoch(epoch, limit)
    }

    /// The server of the `receipts` service.
    pub fn serve(self: &Arc<Self>) -> Server<ReceiptService> {
        self.endpoint
            .serve(Arc::new(ReceiptHandler(Arc::downgrade(self))))
    }

    /// The worker that flushes meters and proposes receipts.
    pub fn worker(self: &Arc<Self>) -> impl Worker + use<> {
        let this = Arc::downgrade(self);
        let interval = self.config.exchange_interval;
        periodic(
            "metering-exchange",
            Interval::AfterFirstPeriod(interval),
            move || {
                let this = this.clone();
                async move {
                    let Some(this) = this.upgrade() else {
                        return Ok(0);
                    };
                    this.exchange_round()
                        .await
                        .map_err(|e| WorkerError::from_error(&e))
                }
            },
        )
    }

    /// Edge side: forgets the runs in `metering_runs_seen` idle for longer than
    /// `runs_seen_horizon`, once per epoch (the first call in an epoch does it). Returns
    /// how many went, or `None` if the table was pruned in this epoch already.
    pub fn prune_runs_seen(&self, now_ms: u64) -> Result<Option<usize>, MeteringError> {
        let epoch = epoch_at(now_ms, self.config.epoch_ms());
        {
            let mut pruned_in = lock(&self.runs_pruned_in);
            if *pruned_in == Some(epoch) {
                return Ok(None);
            }
            *pruned_in = Some(epoch);
        }
        let removed = self.runs.prune(now_ms)?;
        if removed > 0 {
            tracing::debug!(removed, "pruned idle runs from metering_runs_seen");
        }
        Ok(Some(removed))
    }

    /// One round: flush, prune idle runs at an epoch's first round, propose what is
    /// ahead, update the gate. Returns the receipts countersigned in this round.
    pub async fn exchange_round(&self) -> Result<u64, MeteringError> {
        self.provided.flush()?;
        self.observed.flush()?;
        self.prune_runs_seen(unix_ms())?;
        let now = self.current_epoch();
        let mut countersigned = 0;
        let mut tenants: BTreeMap<PublicKeyBytes, bool> = BTreeMap::new();
        for epoch in [Epoch(now.0.saturating_sub(1)), now] {
            for (key, metered) in self.provided.epoch(epoch)? {
                if key.provider != self.id {
                    continue;
                }
                let done = self.store.get(&key)?;
                let done_total = done.as_ref().map_or(0, |r| r.body.cumulative);
                let covered = tenants.entry(key.tenant).or_insert(true);
                if metered <= done_total {
                    continue;
                }
                let seq = done.as_ref().map_or(0, |r| r.body.seq).saturating_add(1);
                let sampled = is_sampled(key.resource);
                match self.propose_to_edge(key, metered, seq).await {
                    Proposal::Countersigned(total) => {
                        countersigned += 1;
                        if total < metered && !sampled {
                            *covered = false;
                        }
                    }
                    // The edge answers, and disagrees only on the amount: for a sampled
                    // counter that is the sampling, not an edge that stopped signing.
                    Proposal::Disputed if sampled => {}
                    Proposal::Disputed | Proposal::Failed => *covered = false,
                }
            }
        }
        let now_ms = unix_ms();
        let mut gate = lock(&self.gate);
        for (tenant, covered) in tenants {
            gate.observe(tenant, covered, now_ms);
        }
        gate.prune(now_ms);
        Ok(countersigned)
    }

    /// Proposes `metered` for `key` and, if the edge names a lower acceptable total, that
    /// total.
    async fn propose_to_edge(&self, key: CounterKey, metered: u64, seq: u64) -> Proposal {
        let Some(edge) = self.edge_for(&key.tenant, key.resource) else {
            return Proposal::Failed;
        };
        let timeout = Duration::from_secs(5);
        let mut total = metered;
        let mut seq = seq;
        // At most one counter-offer: the edge's acceptable total is final for this round.
        for _ in 0..2 {
            let receipt = propose(&self.network, &self.key, key, total, seq);
            let answer = self
                .endpoint
                .call(edge, ReceiptRequest::Propose { receipt }, timeout)
                .await;
            match answer {
                Ok(ReceiptResponse::Countersigned { receipt }) => {
                    if receipt.body.key() != key || receipt.body.cumulative != total {
                        tracing::warn!(%edge, "an edge countersigned a different receipt");
                        return Proposal::Failed;
                    }
                    return match self.store.insert(&receipt) {
                        Ok(_) => Proposal::Countersigned(total),
                        Err(e) => {
                            tracing::warn!(%edge, "an edge's countersignature failed: {e}");
                            Proposal::Failed
                        }
                    };
                }
                Ok(ReceiptResponse::Refused {
                    refusal,
                    acceptable,
                }) => {
                    tracing::debug!(%edge, ?refusal, ?acceptable, "receipt refused");
                    let done = self.store.countersigned(&key).ok().flatten().unwrap_or(0);
                    match acceptable {
                        Some(acceptable) if acceptable > done && acceptable < total => {
                            total = acceptable;
                            seq = seq.saturating_add(1);
                        }
                        // Nothing more is acceptable than what is countersigned already.
                        Some(_) if refusal == crate::Refusal::OverClaim => {
                            return Proposal::Disputed;
                        }
                        _ => return Proposal::Failed,
                    }
                }
                Err(e) => {
                    tracing::debug!(%edge, "receipt exchange failed: {e}");
                    return Proposal::Failed;
                }
            }
        }
        Proposal::Failed
    }

    /// The edge's answer to a proposal from `from`.
    fn answer(&self, from: NodeId, request: ReceiptRequest) -> ReceiptResponse {
        let ReceiptRequest::Propose { receipt } = request;
        let key = receipt.body.key();
        let refused = |refusal| ReceiptResponse::Refused {
            refusal,
            acceptable: None,
        };
        let (Ok(observed), Ok(done), Ok(grant)) = (
            self.observed.cumulative(&key),
            self.store.countersigned(&key),
            self.store.grant(&key.tenant),
        ) else {
            return refused(crate::Refusal::Unavailable);
        };
        match self
            .check
            .decide(&self.key, &from, receipt, observed, done, grant.as_ref())
        {
            Decision::Countersign(receipt) => {
                if let Err(e) = self.store.insert(&receipt) {
                    tracing::warn!("could not keep a receipt this node countersigned: {e}");
                    return refused(crate::Refusal::Unavailable);
                }
                ReceiptResponse::Countersigned { receipt }
            }
            Decision::Refuse {
                refusal,
                acceptable,
            } => ReceiptResponse::Refused {
                refusal,
                acceptable,
            },
        }
    }
}

/// What one proposal to an edge came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proposal {
    /// The edge countersigned this total (the metered one or its counter-offer).
    Countersigned(u64),
    /// The edge refused an over-claim and accepts nothing above what it signed already.
    Disputed,
    /// No answer, no grant, or a refusal for any other reason.
    Failed,
}

/// Whether `resource` is counted by sampling or by reads that may be hedged, so that the
/// provider's and the edge's totals differ in the ordinary course (storage byte-hours are
/// sampled at different instants; a hedged chunk read is served by two replicas and
/// observed from one). For those, a counter-offer below the meter does not mean the edge
/// stopped countersigning, and the serve gate does not count it as uncovered usage.
///
/// Job and worker fuel are observed from the provider's reports in the registry, which
/// reach the edge a few seconds after the provider metered them: near an epoch's end the
/// two sides count the same fuel in neighbouring epochs, so they are treated alike.
fn is_sampled(resource: Resource) -> bool {
    matches!(
        resource,
        Resource::StorageByteHours
            | Resource::EgressBytes
            | Resource::JobFuel
            | Resource::WorkerFuel
    )
}

/// Why a grant was not kept.
#[derive(Debug, thiserror::Error)]
pub enum GrantAcceptError {
    /// The grant itself is refused.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The database failed.
    #[error(transparent)]
    Metering(#[from] MeteringError),
}

struct ReceiptHandler(Weak<Metering>);

#[async_trait::async_trait]
impl Handler<ReceiptService> for ReceiptHandler {
    async fn handle(
        &self,
        from: NodeId,
        request: ReceiptRequest,
    ) -> Result<ReceiptResponse, RpcError> {
        let Some(metering) = self.0.upgrade() else {
            return Err(RpcError::new(
                xnode_mesh::RpcErrorCode::Unavailable,
                "metering is stopping",
            ));
        };
        Ok(metering.answer(from, request))
    }
}
