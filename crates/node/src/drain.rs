//! `xnode drain` and `xnode leave`: how a node retires for good, as opposed to a restart.
//!
//! A drain marks this node's record `draining` (signed by this node, so no one else can
//! drain it), which takes it out of every node's storage set and compute placement. Its
//! repair then pushes everything it holds to the nodes that hold it without it, and the
//! reconciler moves its replicas and workers elsewhere. When a round finds nothing short of
//! its copies without this node and no work runs here, the record becomes `left` and,
//! unless asked not to, the node stops. A leave marks the record `left` at once.
//!
//! A plain stop (SIGTERM) marks nothing: see
//! `docs/decisions/2026-11-26-a-restart-is-not-a-leave.md`. A drain or a departure is
//! kept in the node's database: a node restarted while draining resumes its drain, and a
//! node that has left refuses to start under the same identity.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_db::Db;
use xnode_types::{NodeStatus, lock, unix_ms};

use crate::{Node, NodeError};

use crate::NODE_STATE;
const RETIREMENT_KEY: &[u8] = b"retirement";

/// A retirement this node began, kept so that a restart does not undo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Retirement {
    /// A drain began at this time (Unix milliseconds).
    Draining {
        started_at_ms: u64,
        stop_when_drained: bool,
    },
    /// The node left the network for good at this time.
    Left { at_ms: u64 },
}

impl xnode_wire::Versioned for Retirement {
    const KIND_TAG: u8 = xnode_wire::kinds::NODE_RETIREMENT;
    const KIND_NAME: &'static str = "node retirement";
    const VERSION: u8 = 1;
}

impl Retirement {
    /// The retirement recorded in `db`, if any.
    pub(crate) fn load(db: &Db) -> Result<Option<Retirement>, NodeError> {
        let Some(bytes) = db.get(NODE_STATE, RETIREMENT_KEY)? else {
            return Ok(None);
        };
        xnode_wire::decode(&bytes, 1024)
            .map(Some)
            .map_err(|e| NodeError::State(format!("the node's retirement record: {e}")))
    }

    fn store(self, db: &Db) -> Result<(), NodeError> {
        let bytes = xnode_wire::encode(&self).map_err(|e| NodeError::State(e.to_string()))?;
        Ok(db.put(NODE_STATE, RETIREMENT_KEY, &bytes)?)
    }

    /// Refuses to start a node that has left: its record says `left` for good, and
    /// coming back under the same identity would confuse every peer's view of it.
    pub(crate) fn check_can_start(retirement: Option<Retirement>) -> Result<(), NodeError> {
        match retirement {
            Some(Retirement::Left { at_ms }) => Err(NodeError::Left { at_ms }),
            _ => Ok(()),
        }
    }
}

/// How long a drain waits between rounds. Each round copies what it can; the wait lets
/// the `draining` record spread and the reconciler move work.
const ROUND_PAUSE: Duration = Duration::from_millis(500);

/// Where a drain stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainState {
    /// No drain was asked for.
    #[default]
    Idle,
    /// Copying data and moving work away.
    Draining,
    /// Nothing this node holds is short of copies without it; its record says `left`.
    Drained,
}

/// A drain's progress, as `GET /v1/node/drain` and `xnode drain` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    pub state: DrainState,
    /// When the drain began, Unix milliseconds.
    pub started_at_ms: Option<u64>,
    /// Whether the node stops once drained.
    pub stop_when_drained: bool,
    /// Drain rounds run so far.
    pub rounds: u64,
    /// Copies made by the drain so far.
    pub copies: u64,
    /// From the last round: chunks held here.
    pub chunks_held: u64,
    /// From the last round: chunks held here that other nodes do not hold enough of.
    pub under_replicated_chunks: u64,
    /// From the last round: objects whose metadata other nodes do not hold enough of.
    pub under_replicated_objects: u64,
    /// Deployment replicas, workers and jobs still running here.
    pub workloads_here: usize,
    /// Storage nodes other than this one.
    pub storage_nodes: usize,
    /// Why the drain cannot finish as things stand (too few other nodes, for example).
    pub blocked: Option<String>,
    /// The last round's error, if it failed.
    pub last_error: Option<String>,
}

impl Node {
    /// Starts draining this node (or, if a drain runs already, only updates whether the
    /// node stops at the end). Returns the drain's status.
    pub async fn drain(&self, stop_when_drained: bool) -> Result<DrainStatus, NodeError> {
        let status = lock(&self.inner.record).status;
        if status == NodeStatus::Left {
            return Err(NodeError::State(
                "this node has left the network; it cannot drain".into(),
            ));
        }
        self.begin_drain(unix_ms(), stop_when_drained).await
    }

    /// Resumes the drain a previous run of this node began (called once at start).
    pub(crate) async fn resume_retirement(
        &self,
        retirement: Option<Retirement>,
    ) -> Result<(), NodeError> {
        if let Some(Retirement::Draining {
            started_at_ms,
            stop_when_drained,
        }) = retirement
        {
            tracing::info!("resuming the drain this node began before it restarted");
            self.begin_drain(started_at_ms, stop_when_drained).await?;
        }
        Ok(())
    }

    async fn begin_drain(
        &self,
        started_at_ms: u64,
        stop_when_drained: bool,
    ) -> Result<DrainStatus, NodeError> {
        let begin = {
            let mut drain = lock(&self.inner.drain);
            drain.stop_when_drained = stop_when_drained;
            let begin = drain.state == DrainState::Idle;
            if begin {
                drain.state = DrainState::Draining;
                drain.started_at_ms = Some(started_at_ms);
            }
            begin
        };
        // Recorded before anyone hears of it, so a crash from here on resumes the drain;
        // a change of `stop_when_drained` is kept too.
        Retirement::Draining {
            started_at_ms: lock(&self.inner.drain)
                .started_at_ms
                .unwrap_or(started_at_ms),
            stop_when_drained,
        }
        .store(&self.inner.db)?;
        if begin {
            tracing::info!(
                stop_when_drained,
                "draining: moving data and work to other nodes"
            );
            self.update_record(|r| r.status = NodeStatus::Draining);
            self.publish_record().await?;
            let node = self.clone();
            let shutdown = self.inner.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = node.run_drain() => {}
                }
            });
        }
        Ok(self.drain_status())
    }

    /// The current drain's progress.
    pub fn drain_status(&self) -> DrainStatus {
        lock(&self.inner.drain).clone()
    }

    /// Rounds until nothing here is short of copies and no work runs here.
    async fn run_drain(&self) {
        loop {
            tokio::time::sleep(ROUND_PAUSE).await;
            let round = self.inner.storage.drain_round().await;
            let workloads = self.inner.compute.running_here();
            let finished = {
                let mut drain = lock(&self.inner.drain);
                drain.rounds = drain.rounds.saturating_add(1);
                drain.workloads_here = workloads;
                match round {
                    Ok(round) => {
                        drain.copies = drain.copies.saturating_add(round.copies);
                        drain.chunks_held = round.chunks_held;
                        drain.under_replicated_chunks = round.under_replicated_chunks;
                        drain.under_replicated_objects = round.under_replicated_objects;
                        drain.storage_nodes = round.storage_nodes;
                        drain.blocked = round.blocked.clone();
                        drain.last_error = None;
                        // Copies made in this round are checked by the next one before the
                        // drain counts them.
                        round.complete() && round.copies == 0 && workloads == 0
                    }
                    Err(e) => {
                        drain.last_error = Some(e.to_string());
                        false
                    }
                }
            };
            if finished {
                break;
            }
        }
        tracing::info!("drained: every item held here has its copies on other nodes");
        if let Err(e) = self.mark_left().await {
            tracing::warn!(error = %e, "cannot record the departure in the registry");
        }
        let mut drain = lock(&self.inner.drain);
        // The stop is asked for before the state says `drained`, so whoever sees the
        // state also sees the request.
        if drain.stop_when_drained {
            self.inner.stop_requested.cancel();
        }
        drain.state = DrainState::Drained;
    }

    /// Leaves the network for good without copying anything first: the record says
    /// `left`, so repair on the other nodes copies what this node held at once, and the
    /// node stops. `xnode drain` is the safe way; this one is for a node that is already
    /// empty, or whose data the operator accepts to re-replicate from the other copies.
    pub async fn leave(&self) -> Result<(), NodeError> {
        tracing::info!("leaving the network for good");
        self.mark_left().await?;
        self.inner.stop_requested.cancel();
        Ok(())
    }

    /// Signs this node's record as `left` into the registry and gossips it.
    async fn mark_left(&self) -> Result<(), NodeError> {
        Retirement::Left { at_ms: unix_ms() }.store(&self.inner.db)?;
        self.update_record(|r| r.status = NodeStatus::Left);
        self.publish_record().await
    }

    /// Cancelled when the node asks its process to stop (a drain finished, or a leave):
    /// the binary waits on it beside the signals, then stops the node gracefully.
    pub fn stop_requested(&self) -> tokio_util::sync::CancellationToken {
        self.inner.stop_requested.clone()
    }
}
