//! Hedged chunk reads: ask the best replica, and if it has not answered within the hedge
//! delay, ask the next one too; the first answer whose bytes match the chunk id wins.
//!
//! Without hedging, a replica that accepts `GetChunk` and never answers stalled every
//! chunk it holds for the whole per-attempt timeout (finding 19 of the security review:
//! 30 s per chunk). The hedge delay is the 99th percentile of recent successful reads of
//! this node, kept between `MIN_HEDGE_DELAY` and `MAX_HEDGE_DELAY`: about one read in a
//! hundred asks a second replica when nothing is wrong, and a stalled replica costs one
//! hedge delay, not a timeout. An attempt that fails (an error, a missing chunk, wrong
//! bytes) starts the next one at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use xnode_store::ChunkId;
use xnode_types::{NodeId, PublicKeyBytes, lock};

use crate::proto::{StoreRequest, StoreResponse};
use crate::{Storage, StorageError};

/// How long one attempt to read a chunk may take: well below the old 30 s, since other
/// replicas are asked in parallel long before it runs out.
pub(crate) const CHUNK_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest hedge delay: below it, ordinary jitter would double the read traffic.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(50);
/// The longest hedge delay, whatever the recent reads took.
pub const MAX_HEDGE_DELAY: Duration = Duration::from_secs(2);
/// Recent read latencies the percentile is taken over.
const SAMPLES: usize = 256;

/// Latencies of this node's recent successful chunk reads from peers.
#[derive(Debug, Default)]
pub(crate) struct ReadLatency {
    samples: Mutex<VecDeque<Duration>>,
}

impl ReadLatency {
    pub(crate) fn record(&self, latency: Duration) {
        let mut samples = lock(&self.samples);
        if samples.len() >= SAMPLES {
            samples.pop_front();
        }
        samples.push_back(latency);
    }

    /// The 99th percentile of recent reads, within `[MIN_HEDGE_DELAY, MAX_HEDGE_DELAY]`.
    pub(crate) fn hedge_delay(&self) -> Duration {
        let mut sorted: Vec<Duration> = lock(&self.samples).iter().copied().collect();
        if sorted.is_empty() {
            return MIN_HEDGE_DELAY;
        }
        sorted.sort_unstable();
        let rank = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
        sorted
            .get(rank)
            .copied()
            .unwrap_or(MIN_HEDGE_DELAY)
            .clamp(MIN_HEDGE_DELAY, MAX_HEDGE_DELAY)
    }
}

impl Storage {
    /// Reads chunk `id` from `targets`, best first, hedging slow attempts (see the module
    /// docs). Bytes that do not match the id are counted and never returned. For a
    /// `tenant`'s object read, the replica is asked with `GetTenantChunk` and the bytes
    /// that match are observed as its egress to the tenant (see `metered`).
    pub(crate) async fn read_chunk_hedged(
        &self,
        id: ChunkId,
        targets: Vec<NodeId>,
        tenant: Option<PublicKeyBytes>,
    ) -> Result<Vec<u8>, StorageError> {
        let hedge = self.read_latency.hedge_delay();
        let request = match tenant {
            Some(tenant) => StoreRequest::GetTenantChunk { id, tenant },
            None => StoreRequest::GetChunk { id },
        };
        let attempt = |node: NodeId| {
            let request = request.clone();
            async move {
                let started = Instant::now();
                let result = self.call(node, request, CHUNK_READ_TIMEOUT).await;
                (node, started.elapsed(), result)
            }
        };
        let mut next = targets.into_iter().peekable();
        let mut running = FuturesUnordered::new();
        let mut errors = Vec::new();
        if let Some(node) = next.next() {
            running.push(attempt(node));
        }
        let timer = tokio::time::sleep(hedge);
        tokio::pin!(timer);
        while !running.is_empty() {
            tokio::select! {
                Some((node, took, result)) = running.next() => {
                    match result {
                        Ok(StoreResponse::Chunk(Some(data))) if ChunkId::of(&data) == id => {
                            if node != self.node_id {
                                self.read_latency.record(took);
                            }
                            self.metrics.chunk_read_bytes.inc_by(data.len() as u64);
                            if let Some(tenant) = tenant {
                                self.observe_egress(tenant, node, data.len() as u64);
                            }
                            return Ok(data);
                        }
                        Ok(StoreResponse::Chunk(Some(_))) => {
                            self.metrics.bad_replica_reads.inc();
                            tracing::warn!(%node, chunk = %id, "a replica sent bytes that do not match the chunk id; trying another");
                            errors.push(format!("{node}: wrong bytes"));
                        }
                        Ok(_) => errors.push(format!("{node}: missing")),
                        Err(e) => errors.push(e.to_string()),
                    }
                    // A failed attempt hands over to the next replica at once.
                    if let Some(node) = next.next() {
                        running.push(attempt(node));
                        timer.as_mut().reset(Instant::now() + hedge);
                    }
                }
                () = &mut timer, if next.peek().is_some() => {
                    // The attempts so far are slow: ask one more replica as well.
                    if let Some(node) = next.next() {
                        self.metrics.hedged_reads.inc();
                        running.push(attempt(node));
                    }
                    timer.as_mut().reset(Instant::now() + hedge);
                }
            }
        }
        Err(StorageError::Quorum(format!(
            "no replica could serve chunk {id} ({})",
            errors.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hedge_delay_follows_the_99th_percentile_within_bounds() {
        let latency = ReadLatency::default();
        assert_eq!(latency.hedge_delay(), MIN_HEDGE_DELAY);
        for _ in 0..99 {
            latency.record(Duration::from_millis(5));
        }
        latency.record(Duration::from_millis(900));
        // 1 slow read in 100 is the 100th percentile, not the 99th.
        assert_eq!(latency.hedge_delay(), MIN_HEDGE_DELAY);
        for _ in 0..10 {
            latency.record(Duration::from_millis(300));
        }
        assert_eq!(latency.hedge_delay(), Duration::from_millis(300));
        for _ in 0..SAMPLES {
            latency.record(Duration::from_secs(60));
        }
        assert_eq!(latency.hedge_delay(), MAX_HEDGE_DELAY);
    }
}
