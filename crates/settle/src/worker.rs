//! The node's side of closing epochs: the `settle` RPC service and the `epoch-close`
//! worker, over the state machine of [`crate::close`].
//!
//! Each round, for every epoch that ended at least `grace` ago (and at most
//! `lookback_epochs` ago) and is not settled yet, the worker:
//!
//! 1. builds and signs this node's bundle once (kept in the database, so a restart serves
//!    the same bundle) and serves it;
//! 2. on a committee member, asks every known node for its set summary and fetches, by
//!    publisher, the bundles that would change its own set, verifying each as hostile
//!    input;
//! 3. once `gather` has passed, reads the tenants' escrows and the operators' bonds from
//!    the chain, computes the ledger's output and root, and signs its vote;
//! 4. asks the other members for their votes; when the threshold agrees, the designated
//!    poster posts (the others after `backup_post_after`), unless the root is already on
//!    chain;
//! 5. stores the epoch's record (table, root, votes, transaction, status);
//! 6. once the epoch is posted, takes its slashes on chain (`slash_store.rs`).
//!
//! Evidence comes from the layers above through [`EvidenceSource`]: this crate knows
//! neither metering nor storage.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolCall};
use serde::{Deserialize, Serialize};
use xnode_chain::{DomainName, Settlement as SettlementContract, domain};
use xnode_db::{Db, Table};
use xnode_ledger::{AuditResult, Epoch, LedgerParams, Receipt, Stake, TenantEscrow};
use xnode_mesh::{
    Endpoint, Handler, Mesh, RpcError as MeshRpcError, RpcErrorCode, Server, Service,
};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey, lock, unix_ms};
use xnode_worker::{Interval, Worker, WorkerError, periodic};

use crate::close::{EpochClose, EpochRecord, EpochStatus, SUPERSEDED};
use crate::config::{ChainConfig, OperatorPayout, SettlementConfig, read_poster_key};
use crate::error::{CloseError, ConfigError};
use crate::proto::{MAX_SETTLE_MESSAGE, SettleRequest, SettleResponse};
use crate::{BundleLimits, ChainClient, CommitteeConfig, EvidenceBundle, committee_signer};

mod carry_store;
mod exit_store;
mod payouts;
mod slash_store;

pub use carry_store::SETTLE_REPUTATION;
pub use exit_store::ExitClearance;
pub use slash_store::{SETTLE_SLASHES, SlashMetrics};

/// Closed epochs' records, by big-endian epoch.
pub const SETTLE_EPOCHS: Table = Table("settle_epochs");
/// This node's own signed bundle of each epoch, by big-endian epoch.
pub const SETTLE_BUNDLES: Table = Table("settle_bundles");

/// Time given one peer to answer a summary, bundle or vote request.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time given a posted root to be mined.
const MINE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest stored record read back.
const MAX_RECORD_BYTES: usize = 4 << 20;

/// The evidence this node holds, read from the layers above `settle`.
pub trait EvidenceSource: Send + Sync + 'static {
    /// Countersigned receipts of `epoch` in which this node is the provider.
    fn receipts(&self, epoch: Epoch) -> Result<Vec<Receipt>, String>;
    /// Audit verdicts this node issued in `epoch`.
    fn audits(&self, epoch: Epoch) -> Result<Vec<AuditResult>, String>;
    /// The nodes to gather bundles from (every node this node knows, itself excluded).
    fn nodes(&self) -> Vec<NodeId>;
    /// When `node`'s signed registry record, if it says `draining` or `left`, was signed
    /// (Unix ms); `None` while it says the node is active, or without a record.
    fn departed_at_ms(&self, node: &NodeId) -> Option<u64>;
    /// Each node's payout address from its operator's payout binding in the registry,
    /// counting only bindings written at or before `cut_ms` (Unix ms), so every member
    /// reads the same table for an epoch once the registry has converged. None by
    /// default: then only `settlement.operators` pays.
    fn payout_bindings(&self, cut_ms: u64) -> Vec<OperatorPayout> {
        let _ = cut_ms;
        Vec::new()
    }
}

/// The `settle` service on the mesh.
#[derive(Debug)]
pub struct SettleService;

impl Service for SettleService {
    const NAME: &'static str = "settle";
    const MAX_MESSAGE: usize = MAX_SETTLE_MESSAGE;
    const MAX_IN_FLIGHT_PER_PEER: usize = 8;
    type Request = SettleRequest;
    type Response = SettleResponse;
}

/// What `GET /v1/ledger/status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementStatus {
    /// Whether this node closes epochs.
    pub enabled: bool,
    /// Whether it is on the committee.
    pub member: bool,
    /// Its committee address (derived from its node key).
    pub committee_address: Address,
    /// The address that sends its transactions.
    pub poster_address: Option<Address>,
    /// The committee's threshold and size.
    pub threshold: usize,
    /// Committee members.
    pub members: usize,
    /// The epoch now.
    pub current_epoch: u64,
    /// The epoch length in milliseconds.
    pub epoch_ms: u64,
    /// The records of the most recent epochs this node closed or is closing, newest first.
    pub recent: Vec<EpochRecord>,
}

struct State {
    closes: BTreeMap<u64, EpochClose>,
    /// When this node's root first reached the threshold, by epoch.
    quorum_since_ms: BTreeMap<u64, u64>,
    /// The block every member reads escrows and bonds at, by epoch.
    read_blocks: BTreeMap<u64, u64>,
    chain_id: Option<u64>,
}

/// Closing epochs on one node.
pub struct Settlement {
    id: NodeId,
    key: SecretKey,
    network: String,
    /// The ledger parameters every epoch is computed with: the configured prices and the
    /// default reputation, penalty and emission parameters, for this network.
    params: LedgerParams,
    config: SettlementConfig,
    chain: ChainConfig,
    epoch_ms: u64,
    db: Db,
    endpoint: Endpoint<SettleService>,
    source: Arc<dyn EvidenceSource>,
    signer: PrivateKeySigner,
    committee: CommitteeConfig,
    client: Option<ChainClient>,
    limits: BundleLimits,
    state: Mutex<State>,
    slashing: slash_store::Slashing,
    exits: exit_store::ExitCollections,
}

impl std::fmt::Debug for Settlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settlement")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn epoch_key(epoch: u64) -> [u8; 8] {
    epoch.to_be_bytes()
}

impl Settlement {
    /// Settlement for this node. `epoch` is the metering epoch. Fails on a configuration
    /// the section's validation would refuse, or an unreadable poster key. The node
    /// passes its key, database, mesh, both sections, the epoch and its evidence: eight
    /// parts it owns, which a builder would only rename.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: SecretKey,
        network: &str,
        db: Db,
        mesh: &Mesh,
        config: SettlementConfig,
        chain: ChainConfig,
        epoch: Duration,
        source: Arc<dyn EvidenceSource>,
    ) -> Result<Arc<Self>, ConfigError> {
        config.validate(&chain)?;
        let signer = committee_signer(&key);
        let committee = if config.enabled {
            CommitteeConfig::new(&config.member_addresses(), config.threshold)
                .map_err(|e| ConfigError(format!("settlement.committee: {e}")))?
        } else {
            // Never used: a disabled node runs no worker. One member, threshold one.
            CommitteeConfig::new(&[signer.address()], 1).map_err(|e| ConfigError(e.to_string()))?
        };
        let client = match (&chain.rpc_url, config.enabled) {
            (Some(url), true) => {
                let sender = match &chain.poster_key_file {
                    Some(path) => read_poster_key(path)?,
                    None => signer.clone(),
                };
                Some(
                    ChainClient::new(url.clone(), sender)
                        .map_err(|e| ConfigError(format!("chain.rpc_url: {e}")))?,
                )
            }
            _ => None,
        };
        let mut params = LedgerParams::with_defaults(network);
        params.prices = config.prices;
        Ok(Arc::new(Self {
            id: key.node_id(),
            network: network.to_owned(),
            params,
            epoch_ms: u64::try_from(epoch.as_millis()).unwrap_or(u64::MAX).max(1),
            db,
            endpoint: Endpoint::new(mesh),
            source,
            signer,
            committee,
            client,
            limits: BundleLimits::default(),
            state: Mutex::new(State {
                closes: BTreeMap::new(),
                quorum_since_ms: BTreeMap::new(),
                read_blocks: BTreeMap::new(),
                chain_id: None,
            }),
            slashing: Default::default(),
            exits: Default::default(),
            key,
            config,
            chain,
        }))
    }

    /// Whether this node closes epochs.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Whether this node is on the committee.
    pub fn is_member(&self) -> bool {
        self.config.enabled && self.committee.is_member(&self.signer.address())
    }

    /// The epoch now.
    pub fn current_epoch(&self) -> Epoch {
        Epoch(unix_ms() / self.epoch_ms)
    }

    /// The server of the `settle` service.
    pub fn serve(self: &Arc<Self>) -> Server<SettleService> {
        self.endpoint
            .serve(Arc::new(SettleHandler(Arc::downgrade(self))))
    }

    /// The `epoch-close` worker.
    pub fn worker(self: &Arc<Self>) -> impl Worker + use<> {
        let this = Arc::downgrade(self);
        periodic(
            "epoch-close",
            Interval::Immediately(self.config.round_interval),
            move || {
                let this = this.clone();
                async move {
                    let Some(this) = this.upgrade() else {
                        return Ok(0);
                    };
                    this.round().await.map_err(|e| WorkerError::from_error(&e))
                }
            },
        )
    }

    /// The stored record of an epoch, or the live one while it is being closed.
    pub fn epoch_record(&self, epoch: u64) -> Result<Option<EpochRecord>, CloseError> {
        if let Some(close) = lock(&self.state).closes.get(&epoch) {
            return Ok(Some(close.record()));
        }
        self.stored_record(epoch)
    }

    fn stored_record(&self, epoch: u64) -> Result<Option<EpochRecord>, CloseError> {
        match self.db.get(SETTLE_EPOCHS, &epoch_key(epoch))? {
            Some(bytes) => Ok(Some(xnode_wire::decode(&bytes, MAX_RECORD_BYTES)?)),
            None => Ok(None),
        }
    }

    /// What `GET /v1/ledger/status` shows: the last `recent` records, newest first.
    pub fn status(&self, recent: usize) -> Result<SettlementStatus, CloseError> {
        let current = self.current_epoch().0;
        let mut records = Vec::new();
        let mut epoch = current;
        let oldest = current.saturating_sub(self.config.lookback_epochs.saturating_add(16));
        while records.len() < recent && epoch > oldest {
            epoch -= 1;
            if let Some(record) = self.epoch_record(epoch)? {
                records.push(record);
            }
        }
        Ok(SettlementStatus {
            enabled: self.config.enabled,
            member: self.is_member(),
            committee_address: self.signer.address(),
            poster_address: self.client.as_ref().map(ChainClient::address),
            threshold: self.config.threshold,
            members: self.config.committee.len(),
            current_epoch: current,
            epoch_ms: self.epoch_ms,
            recent: records,
        })
    }

    /// Epochs due for closing now: ended at least `grace` ago, within the lookback.
    fn due_epochs(&self, now_ms: u64) -> Vec<Epoch> {
        let grace = u64::try_from(self.config.grace.as_millis()).unwrap_or(u64::MAX);
        let closed_before = now_ms.saturating_sub(grace) / self.epoch_ms;
        let from = closed_before.saturating_sub(self.config.lookback_epochs);
        (from..closed_before).map(Epoch).collect()
    }

    fn end_ms(&self, epoch: Epoch) -> u64 {
        epoch.0.saturating_add(1).saturating_mul(self.epoch_ms)
    }

    /// One round over every due epoch. Returns the epochs that changed.
    pub async fn round(&self) -> Result<u64, CloseError> {
        if !self.config.enabled {
            return Ok(0);
        }
        let now = unix_ms();
        let due = self.due_epochs(now);
        {
            let mut state = lock(&self.state);
            let oldest = due.first().map_or(0, |e| e.0);
            state.closes.retain(|epoch, _| *epoch >= oldest);
            state.quorum_since_ms.retain(|epoch, _| *epoch >= oldest);
            state.read_blocks.retain(|epoch, _| *epoch >= oldest);
        }
        let mut changed = 0;
        let mut last_error = None;
        // The contract takes epochs in increasing order only: posting an epoch while an
        // earlier one is still open would make the earlier one unpostable. So an epoch is
        // posted only once every earlier due epoch is posted or superseded (one that never
        // is holds the later ones back at most until it leaves the lookback).
        let mut earlier_open = false;
        for epoch in due.iter().copied() {
            match self.close(epoch, now, !earlier_open).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(epoch = epoch.0, error = %e, "closing the epoch failed this round");
                    if let Some(close) = lock(&self.state).closes.get_mut(&epoch.0) {
                        close.set_error(Some(error_chain(&e)));
                    }
                    last_error = Some(e);
                }
            }
            self.persist(epoch)?;
            earlier_open |= lock(&self.state)
                .closes
                .get(&epoch.0)
                .is_some_and(|close| !close.is_final());
        }
        self.slash_round(&due, now).await;
        match last_error {
            Some(e) => Err(e),
            None => Ok(changed),
        }
    }

    fn persist(&self, epoch: Epoch) -> Result<(), CloseError> {
        let record = match lock(&self.state).closes.get(&epoch.0) {
            Some(close) => close.record(),
            None => return Ok(()),
        };
        if self.stored_record(epoch.0)?.as_ref() == Some(&record) {
            return Ok(());
        }
        let bytes = xnode_wire::encode(&record)?;
        self.db.put(SETTLE_EPOCHS, &epoch_key(epoch.0), &bytes)?;
        Ok(())
    }

    /// One step of one epoch's close; posts only if `may_post`. Returns whether anything
    /// changed.
    async fn close(&self, epoch: Epoch, now: u64, may_post: bool) -> Result<bool, CloseError> {
        if !lock(&self.state).closes.contains_key(&epoch.0) {
            // A restart resumes here: a settled epoch stays settled.
            if self.stored_record(epoch.0)?.is_some_and(|r| {
                r.status == EpochStatus::Posted
                    || r.status == EpochStatus::Superseded
                    || r.error.as_deref() == Some(SUPERSEDED)
            }) {
                return Ok(false);
            }
            let own = self.own_bundle(epoch)?;
            let own = own.verify(&self.network, epoch, &self.limits)?;
            let mut close = EpochClose::new(epoch, self.committee.clone());
            close.add_bundle(own);
            lock(&self.state).closes.insert(epoch.0, close);
        }
        if !self.is_member()
            || lock(&self.state)
                .closes
                .get(&epoch.0)
                .is_some_and(EpochClose::is_final)
        {
            return Ok(false);
        }
        let mut changed = self.gather(epoch).await;
        let gathered_by = self
            .end_ms(epoch)
            .saturating_add(u64::try_from(self.config.grace.as_millis()).unwrap_or(u64::MAX))
            .saturating_add(u64::try_from(self.config.gather.as_millis()).unwrap_or(u64::MAX));
        let payouts: Vec<(NodeId, [u8; 20])> = {
            let mut table: Vec<(NodeId, [u8; 20])> = self
                .operators(self.binding_cut_ms(epoch))
                .iter()
                .map(|o| (o.node, o.payout.into_array()))
                .collect();
            table.sort();
            table
        };
        let needs_root = lock(&self.state)
            .closes
            .get(&epoch.0)
            .is_some_and(|close| close.needs_root() || close.payouts_moved(&payouts));
        // A root computed from an older reputation than the previous epoch's is redone
        // once that one is here (posted by this node meanwhile, or fetched from a member).
        let stale_start = now >= gathered_by && !needs_root && self.start_is_stale(epoch).await?;
        if now >= gathered_by && (needs_root || stale_start) {
            self.compute(epoch).await?;
            changed = true;
        }
        changed |= self.collect_votes(epoch).await;
        changed |= self.post_if_due(epoch, now, may_post).await?;
        Ok(changed)
    }

    /// This node's bundle of `epoch`: the stored one, or a new one signed and stored.
    fn own_bundle(&self, epoch: Epoch) -> Result<EvidenceBundle, CloseError> {
        if let Some(bytes) = self.db.get(SETTLE_BUNDLES, &epoch_key(epoch.0))? {
            return Ok(EvidenceBundle::decode(&bytes, &self.limits)?);
        }
        let receipts: Vec<Receipt> = self
            .source
            .receipts(epoch)
            .map_err(CloseError::Evidence)?
            .into_iter()
            .filter(|r| r.body.provider == self.id && r.body.epoch == epoch)
            .collect();
        let audits: Vec<AuditResult> = self
            .source
            .audits(epoch)
            .map_err(CloseError::Evidence)?
            .into_iter()
            .filter(|a| a.body.auditor == self.id && a.body.epoch == epoch)
            .collect();
        let bundle = EvidenceBundle::sign(&self.key, &self.network, epoch, receipts, audits)?;
        self.db
            .put(SETTLE_BUNDLES, &epoch_key(epoch.0), &bundle.encode()?)?;
        tracing::info!(
            epoch = epoch.0,
            receipts = bundle.body.receipts.len(),
            audits = bundle.body.audits.len(),
            "published this node's evidence bundle"
        );
        Ok(bundle)
    }

    /// Asks every known node for its summary and fetches the bundles that would change
    /// this node's set. A bundle that fails verification is dropped (and logged): its
    /// publisher's evidence is then missing for this node, as for one that never answered.
    async fn gather(&self, epoch: Epoch) -> bool {
        let nodes = self.source.nodes();
        let answers = self
            .endpoint
            .call_many(&nodes, SettleRequest::Summary { epoch }, PEER_TIMEOUT)
            .await;
        let mut changed = false;
        for (peer, answer) in answers {
            let Ok(SettleResponse::Summary(summary)) = answer else {
                continue;
            };
            let wanted = match lock(&self.state).closes.get(&epoch.0) {
                Some(close) => close.set().wanted_from(&summary),
                None => return changed,
            };
            for (publisher, digest) in wanted {
                let request = SettleRequest::Bundle { epoch, publisher };
                let Ok(SettleResponse::Bundle(Some(bytes))) =
                    self.endpoint.call(peer, request, PEER_TIMEOUT).await
                else {
                    continue;
                };
                let verified = EvidenceBundle::decode(&bytes, &self.limits)
                    .and_then(|b| b.verify(&self.network, epoch, &self.limits));
                match verified {
                    Ok(bundle) if bundle.digest() == digest => {
                        if let Some(close) = lock(&self.state).closes.get_mut(&epoch.0) {
                            changed |= close.add_bundle(bundle);
                        }
                    }
                    Ok(_) => {
                        tracing::debug!(%peer, %publisher, "a peer served another bundle than it listed");
                    }
                    Err(e) => {
                        tracing::warn!(%peer, %publisher, error = %e, "refused an evidence bundle");
                    }
                }
            }
        }
        changed
    }

    async fn chain_id(&self, client: &ChainClient) -> Result<u64, CloseError> {
        if let Some(id) = lock(&self.state).chain_id {
            return Ok(id);
        }
        let id = client.chain_id().await?;
        lock(&self.state).chain_id = Some(id);
        Ok(id)
    }

    fn settlement_domain(&self, chain_id: u64) -> Result<Eip712Domain, CloseError> {
        let contract = self
            .chain
            .settlement_contract
            .ok_or(CloseError::ChainValue("no settlement contract"))?;
        Ok(domain(DomainName::Settlement, chain_id, contract))
    }

    /// Reads escrows and bonds from the chain, computes the root and signs the vote.
    async fn compute(&self, epoch: Epoch) -> Result<(), CloseError> {
        let client = self
            .client
            .as_ref()
            .ok_or(CloseError::ChainValue("no chain client"))?;
        let chain_id = self.chain_id(client).await?;
        let settlement_domain = self.settlement_domain(chain_id)?;
        let tenants: Vec<PublicKeyBytes> = {
            let state = lock(&self.state);
            let Some(close) = state.closes.get(&epoch.0) else {
                return Ok(());
            };
            let mut tenants: Vec<PublicKeyBytes> = close
                .set()
                .epoch_input(
                    self.params.clone(),
                    Vec::new(),
                    Vec::new(),
                    Default::default(),
                )
                .receipts
                .iter()
                .map(|r| r.receipt().body.tenant)
                .collect();
            tenants.sort();
            tenants.dedup();
            tenants
        };
        let block = self.read_block(client, epoch).await?;
        let mut escrows = Vec::new();
        for tenant in tenants {
            let balance = self.escrow_of(client, &tenant, block).await?;
            escrows.push(TenantEscrow { tenant, balance });
        }
        let mut stakes = Vec::new();
        for operator in &self.operators(self.binding_cut_ms(epoch)) {
            let bonded = self.bond_of(client, operator.payout, block).await?;
            stakes.push(Stake {
                operator: operator.node,
                payout_address: operator.payout.into_array(),
                bonded,
                unbonding_at: None,
            });
        }
        let deadline_ms = self.end_ms(epoch).saturating_add(
            u64::try_from(self.config.post_deadline.as_millis()).unwrap_or(u64::MAX),
        );
        let deadline = U256::from(deadline_ms / 1000);
        let (previous_epoch, reputation) = self.starting_reputation(epoch).await?;
        let mut state = lock(&self.state);
        let Some(close) = state.closes.get_mut(&epoch.0) else {
            return Ok(());
        };
        let input = close
            .set()
            .epoch_input(self.params.clone(), stakes, escrows, reputation);
        let digest = close.compute_root(
            &input,
            previous_epoch,
            &settlement_domain,
            deadline,
            Some(&self.signer),
        )?;
        tracing::info!(epoch = epoch.0, bundles = close.set().len(), block, ?previous_epoch, %digest, "computed and signed the epoch's root");
        Ok(())
    }

    /// The block whose state every member reads for `epoch`: the last one whose timestamp
    /// is at most the epoch's end plus `grace`. Reading at `latest` instead would let a
    /// deposit mined between two members' reads split their roots for good (the root is
    /// recomputed only when the evidence changes). Members compute after `gather` more,
    /// so the chain has moved past that time and each finds the same block.
    async fn read_block(&self, client: &ChainClient, epoch: Epoch) -> Result<u64, CloseError> {
        if let Some(block) = lock(&self.state).read_blocks.get(&epoch.0) {
            return Ok(*block);
        }
        let grace = u64::try_from(self.config.grace.as_millis()).unwrap_or(u64::MAX);
        let at_seconds = self.end_ms(epoch).saturating_add(grace) / 1000;
        let block = client.last_block_at_or_before(at_seconds).await?;
        lock(&self.state).read_blocks.insert(epoch.0, block);
        Ok(block)
    }

    async fn escrow_of(
        &self,
        client: &ChainClient,
        tenant: &PublicKeyBytes,
        block: u64,
    ) -> Result<u128, CloseError> {
        let contract = self
            .chain
            .settlement_contract
            .ok_or(CloseError::ChainValue("no settlement contract"))?;
        let call = SettlementContract::escrowOfCall(B256::from(tenant.0));
        let bytes = client
            .call_at(contract, &call.abi_encode(), Some(block))
            .await?;
        // No code at that block (the agreed block predates the deployment): nothing
        // escrowed yet.
        if bytes.is_empty() {
            return Ok(0);
        }
        let value = SettlementContract::escrowOfCall::abi_decode_returns(&bytes)
            .map_err(|_| CloseError::ChainValue("escrowOf"))?;
        u128::try_from(value).map_err(|_| CloseError::ChainValue("escrowOf"))
    }

    /// The committee's members other than this node: the peers asked for votes,
    /// signatures and carried reputation.
    fn other_members(&self) -> Vec<NodeId> {
        let members = self.config.committee.iter().map(|m| m.node);
        members.filter(|node| *node != self.id).collect()
    }

    /// Asks the other members for their votes.
    async fn collect_votes(&self, epoch: Epoch) -> bool {
        let members = self.other_members();
        let answers = self
            .endpoint
            .call_many(&members, SettleRequest::Vote { epoch }, PEER_TIMEOUT)
            .await;
        let mut changed = false;
        let mut state = lock(&self.state);
        let Some(close) = state.closes.get_mut(&epoch.0) else {
            return false;
        };
        for (peer, answer) in answers {
            let Ok(SettleResponse::Vote(Some(vote))) = answer else {
                continue;
            };
            // The vote must be signed by the committee address configured for this peer,
            // so one member cannot relay another's old vote as its own.
            let expected = self.config.committee.iter().find(|m| m.node == peer);
            if expected.is_none_or(|m| m.address != vote.signer) {
                tracing::warn!(%peer, "a member answered a vote signed by another address");
                continue;
            }
            let before = close.record().votes;
            match close.add_vote(vote) {
                Ok(_) => changed |= close.record().votes != before,
                Err(e) => tracing::warn!(%peer, error = %e, "refused a root vote"),
            }
        }
        changed
    }

    /// Posts the root when this node is the poster (or the backup wait passed), unless it
    /// is on chain already.
    async fn post_if_due(
        &self,
        epoch: Epoch,
        now: u64,
        may_post: bool,
    ) -> Result<bool, CloseError> {
        let (poster, calldata) = {
            let mut state = lock(&self.state);
            let has_quorum = state
                .closes
                .get(&epoch.0)
                .is_some_and(EpochClose::has_quorum);
            if !has_quorum {
                state.quorum_since_ms.remove(&epoch.0);
                return Ok(false);
            }
            let since = *state.quorum_since_ms.entry(epoch.0).or_insert(now);
            let Some(close) = state.closes.get(&epoch.0) else {
                return Ok(false);
            };
            let poster = close.poster();
            let backup_ms =
                u64::try_from(self.config.backup_post_after.as_millis()).unwrap_or(u64::MAX);
            let my_turn = may_post
                && (poster == Some(self.signer.address())
                    || now.saturating_sub(since) >= backup_ms);
            (poster, my_turn.then(|| close.post_calldata()).transpose()?)
        };
        let client = self
            .client
            .as_ref()
            .ok_or(CloseError::ChainValue("no chain client"))?;
        let contract = self
            .chain
            .settlement_contract
            .ok_or(CloseError::ChainValue("no settlement contract"))?;
        // Every member at quorum looks, not only the poster, so each record says posted as
        // soon as the root is on chain.
        match self.on_chain(client, contract, epoch).await? {
            OnChain::Open => {}
            OnChain::Posted => {
                self.mark_posted(epoch, None)?;
                return Ok(true);
            }
            OnChain::Superseded => {
                tracing::warn!(epoch = epoch.0, "{SUPERSEDED}");
                if let Some(close) = lock(&self.state).closes.get_mut(&epoch.0) {
                    close.mark_superseded();
                }
                return Ok(true);
            }
        }
        let Some(calldata) = calldata else {
            return Ok(false);
        };
        let mined = client.send(Some(contract), calldata, MINE_TIMEOUT).await?;
        tracing::info!(epoch = epoch.0, tx = %mined.hash, gas = mined.gas_used, ?poster, "posted the epoch's root");
        self.mark_posted(epoch, Some(mined.hash))?;
        Ok(true)
    }

    /// Marks the epoch posted and keeps its output reputation for the next epoch.
    fn mark_posted(&self, epoch: Epoch, tx: Option<B256>) -> Result<(), CloseError> {
        let carried = match lock(&self.state).closes.get_mut(&epoch.0) {
            Some(close) => {
                close.mark_posted(tx);
                close.carried()
            }
            None => None,
        };
        match carried {
            Some(carried) => self.store_carried(&carried),
            None => Ok(()),
        }
    }

    /// Where `epoch` stands on chain. `rootOf` alone cannot tell: an epoch with an empty
    /// reward table posts the zero root. The contract takes epochs in increasing order, so
    /// an epoch with no root is posted if it is the last one posted, and can never be
    /// posted if a later one is.
    async fn on_chain(
        &self,
        client: &ChainClient,
        contract: Address,
        epoch: Epoch,
    ) -> Result<OnChain, CloseError> {
        let root = self
            .view(
                client,
                contract,
                SettlementContract::rootOfCall(epoch.0),
                "rootOf",
            )
            .await?;
        if root != B256::ZERO {
            return Ok(OnChain::Posted);
        }
        let any_posted = self
            .view(
                client,
                contract,
                SettlementContract::anyPostedCall {},
                "anyPosted",
            )
            .await?;
        if !any_posted {
            return Ok(OnChain::Open);
        }
        let last = self
            .view(
                client,
                contract,
                SettlementContract::lastEpochCall {},
                "lastEpoch",
            )
            .await?;
        Ok(match last.cmp(&epoch.0) {
            std::cmp::Ordering::Less => OnChain::Open,
            std::cmp::Ordering::Equal => OnChain::Posted,
            std::cmp::Ordering::Greater => OnChain::Superseded,
        })
    }

    async fn view<C: SolCall>(
        &self,
        client: &ChainClient,
        contract: Address,
        call: C,
        name: &'static str,
    ) -> Result<C::Return, CloseError> {
        let bytes = client.call(contract, &call.abi_encode()).await?;
        C::abi_decode_returns(&bytes).map_err(|_| CloseError::ChainValue(name))
    }

    fn answer(&self, request: SettleRequest) -> SettleResponse {
        if let SettleRequest::SlashSignature { terms } = &request {
            return SettleResponse::SlashSignature(self.answer_slash(terms));
        }
        if let SettleRequest::ExitClearance { terms } = &request {
            return SettleResponse::ExitClearance(self.answer_exit_clearance(terms));
        }
        if let SettleRequest::Reputation { epoch } = request {
            return SettleResponse::Reputation(self.stored_carried(epoch).unwrap_or_else(|e| {
                tracing::warn!(epoch = epoch.0, error = %e, "reading a carried reputation failed");
                None
            }));
        }
        let state = lock(&self.state);
        match request {
            SettleRequest::Summary { epoch } => {
                SettleResponse::Summary(state.closes.get(&epoch.0).map_or_else(
                    || crate::EvidenceSet::new(epoch).summary(),
                    |c| c.set().summary(),
                ))
            }
            SettleRequest::Bundle { epoch, publisher } => SettleResponse::Bundle(
                state
                    .closes
                    .get(&epoch.0)
                    .and_then(|c| c.set().get(&publisher))
                    .and_then(|b| b.bundle().encode().ok()),
            ),
            SettleRequest::Vote { epoch } => SettleResponse::Vote(
                state
                    .closes
                    .get(&epoch.0)
                    .and_then(|c| c.own_vote().cloned()),
            ),
            // Answered above, without the lock.
            SettleRequest::Reputation { .. } => SettleResponse::Reputation(None),
            SettleRequest::SlashSignature { .. } => SettleResponse::SlashSignature(None),
            SettleRequest::ExitClearance { .. } => SettleResponse::ExitClearance(None),
        }
    }
}

/// Where an epoch stands on chain.
enum OnChain {
    /// Not posted; it still can be.
    Open,
    /// Its root is on chain.
    Posted,
    /// A later epoch was posted first.
    Superseded,
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct SettleHandler(Weak<Settlement>);

#[async_trait::async_trait]
impl Handler<SettleService> for SettleHandler {
    async fn handle(
        &self,
        _from: NodeId,
        request: SettleRequest,
    ) -> Result<SettleResponse, MeshRpcError> {
        let Some(settlement) = self.0.upgrade() else {
            return Err(MeshRpcError::new(
                RpcErrorCode::Unavailable,
                "settlement is stopping",
            ));
        };
        Ok(settlement.answer(request))
    }
}
