//! Storage usage for the receipts of `xnode-metering`: the bytes a replica serves for a
//! tenant's object reads (`EgressBytes`) and the byte-hours of the tenant's chunks it holds
//! (`StorageByteHours`), metered by the replica as provider and observed by the edge.
//!
//! - **Egress.** An edge reading a tenant's object asks replicas with `GetTenantChunk`,
//!   which names the tenant. The replica meters the bytes it sends; the edge observes only
//!   the bytes that hashed to the chunk id, so a replica that serves garbage is not paid.
//!   The replica cannot check that the tenant named is the chunk's owner (chunks are
//!   sealed and content-addressed), but the edge countersigns only what it observed under
//!   the tenant it named, so a lie moves usage only between tenants whose grants that edge
//!   itself holds.
//! - **Byte-hours.** A replica that takes a chunk from a peer for a tenant's bucket keeps
//!   a record (tenant, sealed bytes, the peer that placed it) in [`HELD_CHUNKS`]; the edge
//!   that placed it keeps one (tenant, bytes, the replicas placement put it on) in
//!   [`PLACED_CHUNKS`]. Every sampling round each side adds, per tenant and counterpart,
//!   the bytes of its records times the time since its previous round, as byte-hours.
//!   A replica drops a record once its chunk is gone (garbage collection, a lost disk);
//!   an edge drops one once garbage collection finds the chunk unreferenced, which is when
//!   the replicas' own collection removes it. The two sides sample at different instants,
//!   so their totals differ by about one sampling round of bytes; the edge's tolerance
//!   covers it (see `docs/design/metering.md`).
//!
//! Chunks a node stores on itself or reads from itself are not metered: no receipt is
//! exchanged between a node and itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xnode_db::{Db, Table};
use xnode_ledger::Resource;
use xnode_store::ChunkId;
use xnode_types::{NodeId, PublicKeyBytes, lock, unix_ms};
use xnode_wire::{Versioned, kinds};

use crate::{Storage, StorageError};

/// Replica side: the tenant's chunks this node holds, by chunk id.
pub const HELD_CHUNKS: Table = Table("metering_held_chunks");
/// Edge side: the tenant's chunks this node placed on peers, by chunk id.
pub const PLACED_CHUNKS: Table = Table("metering_placed_chunks");

/// Records read per database page while sampling.
const PAGE: usize = 1024;
/// Most bytes a stored record may take (a record names at most [`MAX_PEERS`] nodes).
const MAX_RECORD: usize = 4096;
/// Most peers a record names (the largest replication factor).
const MAX_PEERS: usize = crate::MAX_REPLICATION_FACTOR;

/// A tenant's chunk as one side of the metering knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkUsage {
    /// The tenant whose bucket the chunk belongs to.
    pub tenant: PublicKeyBytes,
    /// The chunk's sealed size.
    pub bytes: u64,
    /// When the record was made (unix ms).
    pub written_ms: u64,
    /// On a replica: the node that placed the chunk here. On an edge: the replicas the
    /// chunk was placed on (this node excluded).
    pub peers: Vec<NodeId>,
}

impl Versioned for ChunkUsage {
    const KIND_TAG: u8 = kinds::CHUNK_USAGE;
    const KIND_NAME: &'static str = "chunk usage record";
    const VERSION: u8 = 1;
}

/// Bytes per (tenant, counterpart) over `records`: what one sampling round meters.
pub(crate) fn bytes_by_peer<'a>(
    records: impl IntoIterator<Item = &'a ChunkUsage>,
) -> BTreeMap<(PublicKeyBytes, NodeId), u64> {
    let mut out: BTreeMap<(PublicKeyBytes, NodeId), u64> = BTreeMap::new();
    for record in records {
        for peer in &record.peers {
            let slot = out.entry((record.tenant, *peer)).or_insert(0);
            *slot = slot.saturating_add(record.bytes);
        }
    }
    out
}

/// Replica side: per tenant, the bytes held and the edge that placed most of them, where
/// the tenant's byte-hours are proposed. One edge per tenant, because the meter keeps one
/// per tenant; the majority rule keeps a peer that labels chunks of its own with the
/// tenant's name from taking over the tenant's proposals unless it stores more of them
/// than the tenant itself (see `docs/design/metering.md`).
pub(crate) fn bytes_by_tenant(records: &[ChunkUsage]) -> BTreeMap<PublicKeyBytes, (u64, NodeId)> {
    let mut out = BTreeMap::new();
    let mut per_edge: BTreeMap<PublicKeyBytes, Vec<(NodeId, u64)>> = BTreeMap::new();
    for ((tenant, edge), bytes) in bytes_by_peer(records) {
        per_edge.entry(tenant).or_default().push((edge, bytes));
    }
    for (tenant, edges) in per_edge {
        let total = edges
            .iter()
            .fold(0u64, |sum, (_, b)| sum.saturating_add(*b));
        // Ties go to the lowest node id, so the choice is stable between rounds.
        if let Some((edge, _)) = edges
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        {
            out.insert(tenant, (total, *edge));
        }
    }
    out
}

/// Every record of `table` (decoded; undecodable ones are dropped from the table, as a
/// newer build's records would be useless to this one), page by page.
fn read_records(db: &Db, table: Table) -> Result<Vec<(ChunkId, ChunkUsage)>, StorageError> {
    let internal = |e: xnode_db::DbError| StorageError::Internal(e.to_string());
    let mut out = Vec::new();
    let mut start: Vec<u8> = Vec::new();
    loop {
        let page = db.scan_from(table, &[], &start, PAGE).map_err(internal)?;
        let Some((last, _)) = page.last() else { break };
        let mut next = last.clone();
        next.push(0);
        let full = page.len() >= PAGE;
        for (key, value) in page {
            let id = <[u8; 32]>::try_from(key.as_slice()).ok().map(ChunkId);
            match (id, xnode_wire::decode::<ChunkUsage>(&value, MAX_RECORD)) {
                (Some(id), Ok(record)) => out.push((id, record)),
                _ => db.delete(table, &key).map_err(internal)?,
            }
        }
        if !full {
            break;
        }
        start = next;
    }
    Ok(out)
}

/// When each side last sampled, so a round meters the time since the previous one.
#[derive(Debug, Default)]
pub(crate) struct SampleClock {
    last_ms: std::sync::Mutex<Option<u64>>,
}

impl SampleClock {
    /// The milliseconds since the previous call (zero on the first), and now becomes the
    /// previous call. A clock that went backwards counts zero.
    fn elapsed(&self, now_ms: u64) -> u64 {
        let mut last = lock(&self.last_ms);
        let elapsed = last.map_or(0, |last| now_ms.saturating_sub(last));
        *last = Some(now_ms.max(last.unwrap_or(0)));
        elapsed
    }
}

/// What the last sampling round summed, with the state it summed: reused while neither the
/// chunk store nor the usage records changed, so an idle node's rounds do not reread every
/// record (at 100,000 objects, a few hundred thousand every `exchange_interval`).
#[derive(Debug, Default)]
pub(crate) struct SampleCache {
    /// Changes whenever a usage record is written or deleted (outside a round's own drops
    /// of records whose chunk is gone, which the round's sums already leave out).
    records_generation: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<Option<Summed>>,
}

#[derive(Debug, Clone)]
struct Summed {
    chunks_generation: u64,
    records_generation: u64,
    held: BTreeMap<PublicKeyBytes, (u64, NodeId)>,
    placed: BTreeMap<(PublicKeyBytes, NodeId), u64>,
    records: u64,
}

impl SampleCache {
    fn records_changed(&self) {
        self.records_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn records_generation(&self) -> u64 {
        self.records_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Storage {
    /// Replica side: a peer placed chunk `id` of `tenant`'s bucket here. Nothing is kept for
    /// a chunk this node stores for itself, and a chunk recorded already keeps its record:
    /// any peer can read a chunk and send it again, and must not relabel whose it is or
    /// who placed it.
    pub(crate) fn record_held_chunk(
        &self,
        id: &ChunkId,
        tenant: PublicKeyBytes,
        bytes: u64,
        from: NodeId,
    ) -> Result<(), StorageError> {
        if from == self.node_id {
            return Ok(());
        }
        let held = self
            .db
            .get(HELD_CHUNKS, &id.0)
            .map_err(|e| StorageError::Internal(e.to_string()))?;
        if held.is_some() {
            return Ok(());
        }
        self.put_usage(
            HELD_CHUNKS,
            id,
            &ChunkUsage {
                tenant,
                bytes,
                written_ms: unix_ms(),
                peers: vec![from],
            },
        )
    }

    /// Edge side: chunk `id` of `tenant`'s bucket was placed on `targets`.
    pub(crate) fn record_placed_chunk(
        &self,
        id: &ChunkId,
        tenant: PublicKeyBytes,
        bytes: u64,
        targets: &[NodeId],
    ) -> Result<(), StorageError> {
        let peers: Vec<NodeId> = targets
            .iter()
            .filter(|n| **n != self.node_id)
            .take(MAX_PEERS)
            .copied()
            .collect();
        if peers.is_empty() {
            return Ok(());
        }
        self.put_usage(
            PLACED_CHUNKS,
            id,
            &ChunkUsage {
                tenant,
                bytes,
                written_ms: unix_ms(),
                peers,
            },
        )
    }

    fn put_usage(
        &self,
        table: Table,
        id: &ChunkId,
        record: &ChunkUsage,
    ) -> Result<(), StorageError> {
        let value =
            xnode_wire::encode(record).map_err(|e| StorageError::Internal(e.to_string()))?;
        let stored = self
            .db
            .put(table, &id.0, &value)
            .map_err(|e| StorageError::Internal(e.to_string()));
        self.sample_cache.records_changed();
        stored
    }

    /// Replica side: `GetTenantChunk` answered `bytes` of a chunk to `edge` for `tenant`.
    pub(crate) fn meter_egress_served(&self, tenant: PublicKeyBytes, edge: NodeId, bytes: u64) {
        if edge != self.node_id {
            self.metering
                .provided(tenant, edge, Resource::EgressBytes, bytes);
        }
    }

    /// Edge side: `replica` served `bytes` of `tenant`'s chunk that hashed to its id.
    pub(crate) fn observe_egress(&self, tenant: PublicKeyBytes, replica: NodeId, bytes: u64) {
        if replica != self.node_id {
            self.metering
                .observed(tenant, replica, Resource::EgressBytes, bytes);
        }
    }

    /// One sampling round of stored byte-hours, on both sides: the replica meters the
    /// tenants' chunks it still holds, the edge observes the chunks it placed. Returns the
    /// records counted.
    pub async fn sample_stored_bytes(&self) -> Result<u64, StorageError> {
        // Read before the records: a change made while they are read makes the next round
        // sum again.
        let chunks_generation = self.chunks.generation();
        let records_generation = self.sample_cache.records_generation();
        let cached = lock(&self.sample_cache.last).clone().filter(|summed| {
            summed.chunks_generation == chunks_generation
                && summed.records_generation == records_generation
        });
        let summed = match cached {
            Some(summed) => summed,
            None => {
                let summed = self
                    .sum_stored_bytes(chunks_generation, records_generation)
                    .await?;
                *lock(&self.sample_cache.last) = Some(summed.clone());
                summed
            }
        };
        let elapsed_ms = self.sample_clock.elapsed(unix_ms());
        for (tenant, (bytes, edge)) in &summed.held {
            let units = xnode_metering::byte_hours(*bytes, elapsed_ms);
            self.metering
                .provided(*tenant, *edge, Resource::StorageByteHours, units);
        }
        for ((tenant, replica), bytes) in &summed.placed {
            let units = xnode_metering::byte_hours(*bytes, elapsed_ms);
            self.metering
                .observed(*tenant, *replica, Resource::StorageByteHours, units);
        }
        Ok(summed.records)
    }

    /// Reads every usage record: per tenant the bytes held here, per tenant and replica
    /// the bytes this edge placed.
    async fn sum_stored_bytes(
        &self,
        chunks_generation: u64,
        records_generation: u64,
    ) -> Result<Summed, StorageError> {
        let (db, chunks) = (self.db.clone(), self.chunks.clone());
        let (held, placed) = tokio::task::spawn_blocking(move || {
            let held = read_records(&db, HELD_CHUNKS)?;
            // A record whose chunk is gone (collected, lost) is dropped: the replica is
            // paid for what it holds now.
            let mut kept = Vec::with_capacity(held.len());
            for (id, record) in held {
                if chunks.contains(&id)? {
                    kept.push(record);
                } else {
                    db.delete(HELD_CHUNKS, &id.0)
                        .map_err(|e| StorageError::Internal(e.to_string()))?;
                }
            }
            let placed: Vec<ChunkUsage> = read_records(&db, PLACED_CHUNKS)?
                .into_iter()
                .map(|(_, record)| record)
                .collect();
            Ok::<_, StorageError>((kept, placed))
        })
        .await
        .map_err(|e| StorageError::Internal(format!("storage task failed: {e}")))??;
        Ok(Summed {
            chunks_generation,
            records_generation,
            held: bytes_by_tenant(&held),
            placed: bytes_by_peer(&placed),
            records: u64::try_from(held.len().saturating_add(placed.len())).unwrap_or(u64::MAX),
        })
    }

    /// Edge side, after a garbage-collection round: forgets placed chunks nothing
    /// references any more and older than the collection's grace (the replicas' own
    /// collection removes them at the same point).
    pub(crate) fn forget_unreferenced_placements(
        &self,
        referenced: &std::collections::HashSet<ChunkId>,
    ) -> Result<u64, StorageError> {
        let grace_ms = u64::try_from(self.config.gc_grace.as_millis()).unwrap_or(u64::MAX);
        let now = unix_ms();
        let mut forgotten = 0;
        for (id, record) in read_records(&self.db, PLACED_CHUNKS)? {
            if !referenced.contains(&id) && now.saturating_sub(record.written_ms) >= grace_ms {
                self.sample_cache.records_changed();
                self.db
                    .delete(PLACED_CHUNKS, &id.0)
                    .map_err(|e| StorageError::Internal(e.to_string()))?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use xnode_types::SecretKey;

    fn node(seed: u8) -> NodeId {
        SecretKey::from_seed(&[seed; 32]).unwrap().node_id()
    }

    #[test]
    fn records_round_trip_and_a_garbage_record_is_dropped_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.redb")).unwrap();
        let record = ChunkUsage {
            tenant: PublicKeyBytes([7; 32]),
            bytes: 1000,
            written_ms: 5,
            peers: vec![node(1), node(2)],
        };
        let encoded = xnode_wire::encode(&record).unwrap();
        assert_eq!(encoded[1], 1, "the record carries its format version");
        // More records than one page, so paging is exercised (one batch: one commit).
        let ops = (0..(PAGE as u32 + 3))
            .map(|i| xnode_db::WriteOp::Put {
                table: PLACED_CHUNKS,
                key: ChunkId::of(&i.to_be_bytes()).0.to_vec(),
                value: encoded.clone(),
            })
            .collect();
        db.write(ops).unwrap();
        db.put(PLACED_CHUNKS, &[1, 2, 3], &encoded).unwrap();
        db.put(PLACED_CHUNKS, &[9; 32], b"garbage").unwrap();
        let read = read_records(&db, PLACED_CHUNKS).unwrap();
        assert_eq!(read.len(), PAGE + 3);
        assert!(read.iter().all(|(_, r)| *r == record));
        // The bad key and the undecodable value were removed.
        assert_eq!(db.len(PLACED_CHUNKS).unwrap(), PAGE as u64 + 3);
    }

    #[test]
    fn bytes_are_summed_per_tenant_and_counterpart() {
        let (a, b) = (PublicKeyBytes([1; 32]), PublicKeyBytes([2; 32]));
        let records = [
            ChunkUsage {
                tenant: a,
                bytes: 100,
                written_ms: 0,
                peers: vec![node(1), node(2)],
            },
            ChunkUsage {
                tenant: a,
                bytes: 50,
                written_ms: 0,
                peers: vec![node(1)],
            },
            ChunkUsage {
                tenant: b,
                bytes: u64::MAX,
                written_ms: 0,
                peers: vec![node(1)],
            },
            ChunkUsage {
                tenant: b,
                bytes: 1,
                written_ms: 0,
                peers: vec![node(1)],
            },
        ];
        let sums = bytes_by_peer(&records);
        assert_eq!(sums[&(a, node(1))], 150);
        assert_eq!(sums[&(a, node(2))], 100);
        assert_eq!(sums[&(b, node(1))], u64::MAX, "sums saturate");
        assert_eq!(sums.len(), 3);
    }

    #[test]
    fn a_replica_proposes_a_tenants_byte_hours_to_the_edge_that_placed_most() {
        let tenant = PublicKeyBytes([1; 32]);
        let record = |bytes, edge| ChunkUsage {
            tenant,
            bytes,
            written_ms: 0,
            peers: vec![edge],
        };
        // A peer that labelled a small chunk of its own with the tenant's name.
        let records = [
            record(300, node(1)),
            record(400, node(1)),
            record(100, node(9)),
        ];
        assert_eq!(bytes_by_tenant(&records)[&tenant], (800, node(1)));
        let tied = [record(5, node(1)), record(5, node(2))];
        let expected = node(1).min(node(2));
        assert_eq!(bytes_by_tenant(&tied)[&tenant], (10, expected));
    }

    #[test]
    fn the_sample_clock_meters_the_time_between_rounds_only() {
        let clock = SampleClock::default();
        assert_eq!(clock.elapsed(1_000), 0);
        assert_eq!(clock.elapsed(4_000), 3_000);
        // A clock stepped back counts nothing and does not move the last round back.
        assert_eq!(clock.elapsed(2_000), 0);
        assert_eq!(clock.elapsed(5_000), 1_000);
    }
}
