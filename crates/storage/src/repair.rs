//! Background workers that keep storage healthy: repair restores `rf` copies of every
//! chunk and metadata entry this node holds (by anti-entropy rounds, see
//! [`crate::entropy`]); scrub re-hashes local chunks at a bounded rate and replaces rotted
//! ones from peers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use xnode_store::ChunkId;
use xnode_types::NodeId;

use tokio_util::sync::CancellationToken;
use xnode_worker::{Interval, Progress, Step, Worker, WorkerError, periodic};

use crate::proto::StoreRequest;
use xnode_types::unix_ms;

use crate::{Storage, StorageError, blocking};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Storage {
    /// Copies a chunk this node holds to `node`. Returns whether it arrived.
    pub(crate) async fn copy_chunk_to(self: &Arc<Self>, id: ChunkId, node: NodeId) -> bool {
        self.repairs_in_progress.fetch_add(1, Ordering::Relaxed);
        let chunks = self.chunks.clone();
        let result = async {
            let data = tokio::task::spawn_blocking(move || chunks.get(&id))
                .await
                .map_err(|e| StorageError::Internal(e.to_string()))??
                .ok_or_else(|| StorageError::Internal(format!("chunk {id} vanished")))?;
            let bucket = self.chunk_bucket(&id);
            self.call(
                node,
                StoreRequest::PutChunk {
                    id,
                    data: data.into(),
                    bucket,
                },
                CALL_TIMEOUT,
            )
            .await
        }
        .await;
        self.repairs_in_progress.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(_) => {
                self.metrics.repairs.inc();
                tracing::debug!(chunk = %id, %node, "repaired a missing replica");
                true
            }
            Err(e) => {
                tracing::debug!(chunk = %id, %node, error = %e, "repair copy failed");
                false
            }
        }
    }

    /// Scrubs up to `max_bytes` of local chunks after `cursor` (at least one chunk),
    /// replacing rotted ones from peers. Returns the cursor to continue from and the bytes
    /// read; an error leaves the cursor where it was.
    pub(crate) async fn scrub_step(
        self: &Arc<Self>,
        cursor: Option<ChunkId>,
        max_bytes: u64,
    ) -> Result<(Option<ChunkId>, u64), StorageError> {
        let chunks = self.chunks.clone();
        let batch = blocking(move || chunks.scrub_batch(cursor.as_ref(), max_bytes)).await?;
        for id in batch.corrupt {
            tracing::warn!(chunk = %id, "scrub found a rotted chunk; fetching a good copy from a peer");
            let set = self.storage_set();
            match self.get_chunk(id, &set).await {
                Ok(data) => {
                    let chunks = self.chunks.clone();
                    let stored = tokio::task::spawn_blocking(move || chunks.put(&id, &data)).await;
                    if matches!(stored, Ok(Ok(_))) {
                        self.metrics.repairs.inc();
                        tracing::info!(chunk = %id, "rotted chunk replaced");
                    }
                }
                Err(e) => {
                    tracing::error!(chunk = %id, error = %e, "no peer could replace a rotted chunk")
                }
            }
        }
        Ok((batch.next_cursor, batch.bytes))
    }
}

/// Table `scrub`: the scrubber's progress, so a restart continues the pass.
const SCRUB_TABLE: xnode_db::Table = xnode_db::Table("scrub");
const SCRUB_STATE_KEY: &[u8] = b"state";
/// How often the scrubber writes its progress down during a pass (each write is a
/// database commit; between passes it writes nothing). It also writes it when it stops.
const SCRUB_SAVE_EVERY_MS: u64 = 10_000;

/// Where the scrubber is, kept in the database.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ScrubState {
    /// The last chunk checked in the current pass; `None` between passes.
    cursor: Option<ChunkId>,
    /// When the current (or last) pass started, unix ms; 0 before the first.
    pass_started_ms: u64,
    /// Passes completed since the node's data was created.
    passes: u64,
}

impl xnode_wire::Versioned for ScrubState {
    const KIND_TAG: u8 = xnode_wire::kinds::SCRUB_STATE;
    const KIND_NAME: &'static str = "scrub state";
    const VERSION: u8 = 1;
}

/// The scrub worker: re-hashes every local chunk once per `storage.scrub_period`, paced
/// evenly over the period (twice the average rate needed, so a growing store still
/// finishes in time) and never faster than `storage.scrub_bytes_per_sec`; idle between a
/// finished pass and the start of the next period. Its progress survives restarts.
struct Scrubber {
    storage: Arc<Storage>,
    state: ScrubState,
    ticker: tokio::time::Interval,
    steps: u64,
    /// Bytes the scrubber may read before it waits; negative after a chunk larger than
    /// what was left (chunks are read whole).
    allowance: i64,
    last_saved_ms: u64,
}

impl Scrubber {
    fn new(storage: Arc<Storage>) -> Self {
        let state = storage
            .db
            .get(SCRUB_TABLE, SCRUB_STATE_KEY)
            .ok()
            .flatten()
            .and_then(|bytes| xnode_wire::decode::<ScrubState>(&bytes, 1024).ok())
            .unwrap_or_default();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            storage,
            state,
            ticker,
            steps: 0,
            allowance: 0,
            last_saved_ms: unix_ms(),
        }
    }

    /// Bytes per second for this pass: twice what reading everything once per period
    /// takes, within `[1 byte, scrub_bytes_per_sec]`.
    fn rate(&self) -> u64 {
        let config = &self.storage.config;
        let period_secs = config.scrub_period.as_secs().max(1);
        let held = self.storage.chunks.stats().bytes;
        (held.saturating_mul(2) / period_secs).clamp(1, config.scrub_bytes_per_sec.max(1))
    }

    fn save(&mut self, now: u64) {
        self.last_saved_ms = now;
        let saved = xnode_wire::encode(&self.state)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.storage
                    .db
                    .put(SCRUB_TABLE, SCRUB_STATE_KEY, &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot record the scrubber's progress; a restart would repeat part of the pass");
        }
    }
}

impl Drop for Scrubber {
    /// A node that stops keeps its place in the pass (a killed one loses at most
    /// `SCRUB_SAVE_EVERY_MS` of it).
    fn drop(&mut self) {
        if self.state.cursor.is_some() {
            self.save(unix_ms());
        }
    }
}

#[async_trait::async_trait]
impl Worker for Scrubber {
    fn name(&self) -> String {
        "storage-scrub".into()
    }

    fn progress(&self) -> Progress {
        Progress {
            items_done: self.steps,
            queued: None,
            detail: Some(match &self.state.cursor {
                Some(id) => format!(
                    "pass {} at chunk {id}, {} bytes/s",
                    self.state.passes + 1,
                    self.rate()
                ),
                None => format!(
                    "{} full passes; waiting for the next period",
                    self.state.passes
                ),
            }),
        }
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        let now = unix_ms();
        let period_ms =
            u64::try_from(self.storage.config.scrub_period.as_millis()).unwrap_or(u64::MAX);
        if self.state.cursor.is_none() {
            let next_pass = self.state.pass_started_ms.saturating_add(period_ms);
            if self.state.pass_started_ms != 0 && now < next_pass {
                return Ok(Step::Idle);
            }
            self.state.pass_started_ms = now;
            self.allowance = 0;
        }
        let rate = i64::try_from(self.rate()).unwrap_or(i64::MAX);
        // A second's worth per tick, never more than two seconds' worth saved up.
        self.allowance = self
            .allowance
            .saturating_add(rate)
            .min(rate.saturating_mul(2));
        if self.allowance <= 0 {
            return Ok(Step::Idle);
        }
        let budget = u64::try_from(self.allowance).unwrap_or(0);
        let started = self.state.cursor;
        let (next, read) = self
            .storage
            .scrub_step(started, budget)
            .await
            .map_err(|e| WorkerError::from_error(&e))?;
        self.allowance = self
            .allowance
            .saturating_sub(i64::try_from(read).unwrap_or(i64::MAX));
        self.steps += 1;
        self.state.cursor = next;
        if next.is_none() {
            self.state.passes += 1;
            self.save(now);
        } else if now.saturating_sub(self.last_saved_ms) >= SCRUB_SAVE_EVERY_MS {
            self.save(now);
        }
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) -> Step {
        self.ticker.tick().await;
        Step::Busy
    }
}

impl Storage {
    /// The storage workers: `storage-repair` (an anti-entropy round when something
    /// changed, checked every `repair_interval`),
    /// `storage-gc` (garbage collection of chunks, then of delete tombstones, every
    /// `gc_interval`, first after one interval) and
    /// `storage-scrub`. The `rpc:store` server comes from [`Storage::serve`].
    pub fn workers(self: &Arc<Self>) -> Vec<Box<dyn Worker>> {
        let s = self.clone();
        let repair = periodic(
            "storage-repair",
            Interval::Immediately(self.config.repair_interval),
            move || {
                let s = s.clone();
                async move {
                    let n = s
                        .anti_entropy()
                        .await
                        .map_err(|e| WorkerError::from_error(&e))?;
                    if n > 0 {
                        tracing::info!(copies = n, "repair restored missing replicas");
                    }
                    Ok(n)
                }
            },
        );
        let s = self.clone();
        let gc = periodic(
            "storage-gc",
            Interval::AfterFirstPeriod(self.config.gc_interval),
            move || {
                let s = s.clone();
                async move {
                    // A skipped round is the safe outcome of an incomplete view (a storage
                    // node is down), not a failure.
                    let chunks = match s.collect_garbage().await {
                        Ok(0) => 0,
                        Ok(n) => {
                            tracing::info!(
                                removed = n,
                                "garbage collection removed unreferenced chunks"
                            );
                            n
                        }
                        Err(e) => {
                            tracing::info!(reason = %e, "garbage collection skipped");
                            0
                        }
                    };
                    // Tombstones are collected on their own proof (every holder confirms
                    // each one), so a chunk round that stopped does not hold them up.
                    let tombstones = match s.collect_tombstones().await {
                        Ok(round) => {
                            if round.collected > 0 {
                                tracing::info!(
                                    collected = round.collected,
                                    candidates = round.candidates,
                                    "garbage collection removed delete tombstones every metadata holder confirmed"
                                );
                            }
                            round.collected
                        }
                        Err(e) => {
                            tracing::info!(reason = %e, "tombstone collection skipped");
                            0
                        }
                    };
                    Ok(chunks.saturating_add(tombstones))
                }
            },
        );
        let s = self.clone();
        // Stored byte-hours are sampled once per receipt exchange, so each round proposes
        // what the previous one sampled.
        let sample = periodic(
            "storage-metering",
            Interval::AfterFirstPeriod(self.metering.config().exchange_interval),
            move || {
                let s = s.clone();
                async move {
                    s.sample_stored_bytes()
                        .await
                        .map_err(|e| WorkerError::from_error(&e))
                }
            },
        );
        let scrub = Scrubber::new(self.clone());
        let mut workers: Vec<Box<dyn Worker>> = vec![
            Box::new(repair),
            Box::new(gc),
            Box::new(scrub),
            Box::new(sample),
        ];
        workers.extend(self.audit_workers());
        workers
    }
}
