//! `bonded` admission: which nodes' operators have staked enough, read from the `Staking`
//! contract at one block every node agrees on, once per epoch.
//!
//! Placement must be identical on every node, or a write's quorum and a read's quorum
//! need not intersect. So no node reads stakes at `latest`: for epoch `e` every node reads
//! at the last block whose timestamp is before `e` starts ([`BondRule::agreed_second`]).
//! A node reads once its own clock is in `e`, when every block with such a timestamp is
//! already mined, so each finds the same block whatever the chain's tip, and all nodes
//! switch to the new set at the epoch boundary (give or take their clock skew and one
//! read). This is the rule settlement uses for an epoch's escrows and bonds
//! (`docs/decisions/2026-11-27-members-read-the-chain-at-one-agreed-block.md`), at the
//! epoch's start instead of its end.
//!
//! A node is admitted for `e` if its payout address held at least `admission.min_bond` both at `e`'s agreed block and at the agreed block
//! of `e - probation_epochs`: a newly bonded operator waits out its probation before it
//! holds data. A node that cannot read the chain keeps its last snapshot (its status and
//! metrics say it is stale); with no snapshot at all, no node is admitted.
//!
//! A node's payout address is its operator's payout binding in the registry (see
//! `xnode_registry::payout`: the address signed its consent, so no node borrows a
//! stranger's bond by naming its address), counting bindings written before `e` starts,
//! or the address `settlement.operators` lists for it, which overrides the binding.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy::sol_types::SolCall;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio_util::sync::CancellationToken;
use xnode_chain::{Address, Staking, U256};
use xnode_registry::admission::{Admission, BondSnapshot};
use xnode_settle::{ChainClient, OperatorPayout, RpcError};
use xnode_worker::{Progress, Step, Worker, WorkerError};

use crate::config::BondRequirement;

/// The epoch length and what a bond must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BondRule {
    /// The epoch length, in milliseconds (at least 1).
    pub epoch_ms: u64,
    /// The least bond and the probation.
    pub requirement: BondRequirement,
}

impl BondRule {
    /// The epoch that `now_ms` (unix milliseconds) falls in.
    pub fn epoch_at(&self, now_ms: u64) -> u64 {
        now_ms / self.epoch_ms.max(1)
    }

    /// The unix second whose last block every node reads for `epoch`: the second before
    /// the epoch starts. A block mined once the epoch has begun carries a timestamp of at
    /// least the epoch's start second, so it can never be the agreed block, and a node
    /// that reads after the start finds the same block as every other.
    pub fn agreed_second(&self, epoch: u64) -> u64 {
        (epoch.saturating_mul(self.epoch_ms) / 1000).saturating_sub(1)
    }
}

/// Why the stakes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BondReadError {
    /// The chain did not answer, or answered an error.
    #[error("reading the chain: {0}")]
    Rpc(#[from] RpcError),
    /// `Staking.bonded` answered something that is not an amount.
    #[error("Staking.bonded answered {0} bytes that are not a uint256 below 2^128")]
    Malformed(usize),
}

/// The two questions `bonded` admission asks a chain.
pub trait BondChain: Send + Sync + 'static {
    /// The last block whose timestamp is at most `at` (unix seconds).
    fn last_block_at_or_before(
        &self,
        at: u64,
    ) -> impl Future<Output = Result<u64, BondReadError>> + Send;

    /// What the `Staking` contract held for `account` at `block`.
    fn bonded(
        &self,
        account: Address,
        block: u64,
    ) -> impl Future<Output = Result<u128, BondReadError>> + Send;
}

/// The `Staking` contract on a JSON-RPC chain.
#[derive(Clone, Debug)]
pub struct StakingChain {
    client: ChainClient,
    staking: Address,
}

impl StakingChain {
    /// Reads `staking` through `client` (which never sends a transaction here).
    pub fn new(client: ChainClient, staking: Address) -> Self {
        Self { client, staking }
    }
}

impl BondChain for StakingChain {
    async fn last_block_at_or_before(&self, at: u64) -> Result<u64, BondReadError> {
        Ok(self.client.last_block_at_or_before(at).await?)
    }

    async fn bonded(&self, account: Address, block: u64) -> Result<u128, BondReadError> {
        let call = Staking::bondedCall(account);
        let bytes = self
            .client
            .call_at(self.staking, &call.abi_encode(), Some(block))
            .await?;
        // No code at that block (the agreed block predates the deployment): no bond yet.
        if bytes.is_empty() {
            return Ok(0);
        }
        let value: U256 = Staking::bondedCall::abi_decode_returns(&bytes)
            .map_err(|_| BondReadError::Malformed(bytes.len()))?;
        u128::try_from(value).map_err(|_| BondReadError::Malformed(bytes.len()))
    }
}

/// The nodes admitted for `epoch`: those whose payout address in `operators` held at
/// least the minimum bond at `epoch`'s agreed block and, under probation, at the agreed
/// block `probation_epochs` earlier. Every node that asks the same chain the same question
/// gets the same answer.
pub async fn read_snapshot<C: BondChain>(
    chain: &C,
    rule: &BondRule,
    operators: &[OperatorPayout],
    epoch: u64,
) -> Result<BondSnapshot, BondReadError> {
    let BondRequirement {
        min_bond,
        probation_epochs,
    } = rule.requirement;
    let block = chain
        .last_block_at_or_before(rule.agreed_second(epoch))
        .await?;
    let probation_block = if probation_epochs == 0 {
        None
    } else {
        // Before the chain's first epochs this is genesis, where nothing is bonded: the
        // first operators serve their probation too.
        let earlier = epoch.saturating_sub(probation_epochs);
        Some(
            chain
                .last_block_at_or_before(rule.agreed_second(earlier))
                .await?,
        )
    };
    let mut qualified: BTreeMap<Address, bool> = BTreeMap::new();
    let mut nodes = BTreeSet::new();
    for operator in operators {
        let ok = match qualified.get(&operator.payout) {
            Some(ok) => *ok,
            None => {
                let mut ok = chain.bonded(operator.payout, block).await? >= min_bond;
                if let (true, Some(earlier)) = (ok, probation_block) {
                    ok = chain.bonded(operator.payout, earlier).await? >= min_bond;
                }
                qualified.insert(operator.payout, ok);
                ok
            }
        };
        if ok {
            nodes.insert(operator.node);
        }
    }
    Ok(BondSnapshot {
        epoch,
        block,
        nodes,
    })
}

/// Metrics of `bonded` admission, under the `admission_` prefix.
#[derive(Clone, Debug, Default)]
pub struct BondMetrics {
    /// The epoch of the snapshot in use (0: none).
    pub snapshot_epoch: Gauge,
    /// The block it was read at.
    pub snapshot_block: Gauge,
    /// The nodes it admits.
    pub bonded_nodes: Gauge,
    /// 1 while the snapshot in use is older than the current epoch because the chain
    /// could not be read (or there is none yet).
    pub snapshot_stale: Gauge,
    /// Failed reads of the chain.
    pub read_errors: Counter,
}

impl BondMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("admission");
        r.register(
            "bond_snapshot_epoch",
            "Epoch of the bond snapshot placement uses (0: none yet)",
            m.snapshot_epoch.clone(),
        );
        r.register(
            "bond_snapshot_block",
            "Chain block the bond snapshot in use was read at",
            m.snapshot_block.clone(),
        );
        r.register(
            "bonded_nodes",
            "Nodes the bond snapshot in use admits",
            m.bonded_nodes.clone(),
        );
        r.register(
            "bond_snapshot_stale",
            "1 when the bond snapshot in use is not the current epoch's (the chain could not be read)",
            m.snapshot_stale.clone(),
        );
        r.register(
            "bond_read_errors",
            "Failed reads of stakes from the chain",
            m.read_errors.clone(),
        );
        m
    }
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The `admission-bonds` worker: brings the bond snapshot up to the current epoch.
/// Each node's payout address from the registry's payout bindings written at or before
/// the given time (Unix ms).
pub type BindingSource = Arc<dyn Fn(u64) -> Vec<OperatorPayout> + Send + Sync>;

pub struct BondSnapshots<C> {
    admission: Arc<Admission>,
    chain: C,
    rule: BondRule,
    /// The configured table (`settlement.operators`): overrides a binding per node.
    operators: Vec<OperatorPayout>,
    bindings: Option<BindingSource>,
    /// The payout table the snapshot in use was read for. A binding can arrive after the
    /// snapshot was taken and still count for its epoch (it is dated by its writer's
    /// clock, and gossip takes time), so each look compares the table again and retakes
    /// the snapshot, at the same agreed block, when it moved: every node that has the
    /// same bindings then holds the same snapshot, whenever each received them.
    snapshot_table: Vec<OperatorPayout>,
    metrics: BondMetrics,
    period: Duration,
    /// Made on the first wait, inside the runtime.
    ticker: Option<tokio::time::Interval>,
    detail: String,
    installed: u64,
}

impl<C: BondChain> BondSnapshots<C> {
    /// A worker that installs snapshots read from `chain` into `admission`.
    pub fn new(
        admission: Arc<Admission>,
        chain: C,
        rule: BondRule,
        operators: Vec<OperatorPayout>,
        metrics: BondMetrics,
    ) -> Self {
        // A few looks per epoch, so a node switches soon after the boundary; at most every
        // five seconds, since a look within an epoch already read costs nothing.
        let period = Duration::from_millis((rule.epoch_ms / 8).clamp(100, 5_000));
        metrics.snapshot_stale.set(1);
        Self {
            admission,
            chain,
            rule,
            operators,
            bindings: None,
            snapshot_table: Vec::new(),
            metrics,
            period,
            ticker: None,
            detail: "no bond snapshot yet: no node is admitted".into(),
            installed: 0,
        }
    }

    /// Reads nodes' payout addresses from the registry's bindings too.
    pub fn with_bindings(mut self, bindings: BindingSource) -> Self {
        self.bindings = Some(bindings);
        self
    }

    /// The payout table for `epoch`: the bindings written before it starts, with the
    /// configured table overriding each node it lists. Sorted by node.
    fn operators_for(&self, epoch: u64) -> Vec<OperatorPayout> {
        let cut_ms = epoch.saturating_mul(self.rule.epoch_ms).saturating_sub(1);
        let mut table: BTreeMap<xnode_types::NodeId, OperatorPayout> = self
            .bindings
            .as_ref()
            .map(|source| source(cut_ms))
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o.node, o))
            .collect();
        for configured in &self.operators {
            table.insert(configured.node, configured.clone());
        }
        table.into_values().collect()
    }

    /// Brings the snapshot up to the epoch of `now_ms`: `Ok(true)` if it installed a new
    /// one, `Ok(false)` if the current one is already this epoch's and was read for the
    /// payout table the epoch has now. On a failed read the last snapshot stays in use,
    /// and the error says so.
    pub async fn refresh(&mut self, now_ms: u64) -> Result<bool, WorkerError> {
        let epoch = self.rule.epoch_at(now_ms);
        let held = self.admission.bond_snapshot();
        let operators = self.operators_for(epoch);
        let retake = match held.as_ref() {
            // A clock that stepped back keeps the later epoch's snapshot.
            Some(s) if s.epoch > epoch => return Ok(false),
            Some(s) if s.epoch == epoch => {
                if operators == self.snapshot_table {
                    return Ok(false);
                }
                true
            }
            _ => false,
        };
        match read_snapshot(&self.chain, &self.rule, &operators, epoch).await {
            Ok(snapshot) => {
                if retake {
                    tracing::info!(
                        epoch,
                        block = snapshot.block,
                        "bonded admission: payout bindings for this epoch arrived after its snapshot; read again at the same block"
                    );
                }
                if held.as_ref().is_none_or(|h| h.nodes != snapshot.nodes) {
                    tracing::info!(
                        epoch,
                        block = snapshot.block,
                        admitted = snapshot.nodes.len(),
                        "bonded admission: the set of admitted nodes changed"
                    );
                }
                self.snapshot_table = operators;
                self.metrics.snapshot_epoch.set(gauge_value(epoch));
                self.metrics.snapshot_block.set(gauge_value(snapshot.block));
                self.metrics
                    .bonded_nodes
                    .set(gauge_value(snapshot.nodes.len() as u64));
                self.metrics.snapshot_stale.set(0);
                self.detail = format!(
                    "epoch {epoch}: {} nodes admitted by their bonds at block {}",
                    snapshot.nodes.len(),
                    snapshot.block
                );
                self.admission.set_bond_snapshot(snapshot);
                self.installed = self.installed.saturating_add(1);
                Ok(true)
            }
            Err(error) => {
                self.metrics.read_errors.inc();
                self.metrics.snapshot_stale.set(1);
                self.detail = match &held {
                    Some(s) => format!(
                        "stale: cannot read epoch {epoch}'s stakes; keeping epoch {}'s snapshot (block {}, {} nodes admitted)",
                        s.epoch,
                        s.block,
                        s.nodes.len()
                    ),
                    None => "no bond snapshot yet (the chain cannot be read): no node is admitted"
                        .into(),
                };
                Err(WorkerError::new(format!("{}: {error}", self.detail)))
            }
        }
    }
}

#[async_trait::async_trait]
impl<C: BondChain> Worker for BondSnapshots<C> {
    fn name(&self) -> String {
        "admission-bonds".into()
    }

    fn progress(&self) -> Progress {
        Progress {
            items_done: self.installed,
            queued: None,
            detail: Some(self.detail.clone()),
        }
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        self.refresh(xnode_types::unix_ms()).await?;
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) -> Step {
        let period = self.period;
        let ticker = self.ticker.get_or_insert_with(|| {
            // The first tick is at once, so a starting node reads its snapshot without
            // waiting a period.
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        ticker.tick().await;
        Step::Busy
    }
}

#[cfg(test)]
#[path = "bonded_tests.rs"]
mod tests;
