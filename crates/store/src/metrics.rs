//! Prometheus metrics owned by the storage engine and its callers (replication, repair).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;

/// Counters and gauges for storage, registered under the `store_` prefix.
///
/// The engine updates the chunk and scrub figures itself. `repairs`, `quorum_failures` and
/// `bad_replica_reads` describe replication, which happens above this crate, so the caller
/// increments them.
#[derive(Clone, Debug, Default)]
pub struct StoreMetrics {
    pub chunks_stored: Gauge,
    pub bytes_stored: Gauge,
    pub chunk_writes: Counter,
    pub chunk_write_bytes: Counter,
    pub chunk_reads: Counter,
    pub chunk_read_bytes: Counter,
    pub corrupt_chunks: Counter,
    pub scrubbed_chunks: Counter,
    pub scrubbed_bytes: Counter,
    pub repairs: Counter,
    pub quorum_failures: Counter,
    pub bad_replica_reads: Counter,
    /// `PutMeta` refused because its version was dated too far into the future.
    pub future_versions_refused: Counter,
    /// Object metadata entries refused because their seal did not verify: unsigned or
    /// forged entries a peer asked this replica to merge, and forged entries in replicas'
    /// answers to this reader.
    pub meta_seals_refused: Counter,
    /// Object metadata entries refused or ignored because the tenant revoked their
    /// writer's authority (dated after the revocation, or back-dated under it); also
    /// counted in `meta_seals_refused`.
    pub meta_revoked_refused: Counter,
    /// Object writes refused because a newer version held on the replicas beat them.
    pub write_conflicts: Counter,
    /// Conditional writes and deletes this node coordinated whose condition did not hold
    /// (answered `412 PreconditionFailed`).
    pub conditional_writes_refused: Counter,
    /// `PutChunk` refused because placement does not put the chunk on this node.
    pub chunks_refused: Counter,
    /// Data chunks this edge sent to replicas over the bulk link, and their bytes.
    pub bulk_chunks_sent: Counter,
    pub bulk_bytes_sent: Counter,
    /// Data chunks edges sent this replica over the bulk link.
    pub bulk_chunks_served: Counter,
    /// Data chunks this edge meant to send over the bulk link and sent by the mesh (no
    /// link could be opened, or it broke).
    pub bulk_fallbacks: Counter,
    /// Writes refused because the bucket is pinned to regions where no admitted storage
    /// node is left (data residency never falls back to other regions).
    pub pinned_writes_unplaceable: Counter,
    /// Listing rounds this edge, a metadata replica of the bucket, served from its own
    /// table because the other replicas' digests of the range agreed with it.
    pub listing_rounds_agreed: Counter,
    /// Listing rounds that merged the replicas' entries: the edge holds no replica of the
    /// bucket, or some replica's digest differed.
    pub listing_rounds_merged: Counter,
    /// Chunk reads that asked a second replica because the first was slow.
    pub hedged_reads: Counter,
    /// Object reads through this edge that used a forwarded read: a near metadata
    /// replica's answer (manifest and first chunks) that agreed with the edge's own
    /// quorum read and whose bytes matched their ids.
    pub forwarded_reads_used: Counter,
    /// Forwarded reads this edge asked for and did not use: stale (another version than
    /// the quorum's), missing, forged bytes, an error, or too slow.
    pub forwarded_reads_refused: Counter,
    /// Forwarded reads this node answered for edges.
    pub forwarded_reads_served: Counter,
    /// Object reads through this node, a metadata replica of the bucket, that used the
    /// manifest and first chunks it fetched from its own entry while its quorum read ran.
    pub local_prefetches_used: Counter,
    /// Object reads through this far edge whose version a near replica's relayed, signed
    /// read quorum decided, before the edge's own quorum read finished.
    pub relayed_quorums_used: Counter,
    /// Relayed read quorums the edge's own quorum read contradicted (it found a version
    /// dated well before the read that the relayed quorum did not name).
    pub relayed_quorums_contradicted: Counter,
    /// Replica writes dropped after the quorum because the background budget was spent.
    pub background_copies_skipped: Counter,
    /// Storage audits this node issued whose proof verified, and that failed (not held,
    /// a bad proof, an error or no answer in time).
    pub audits_passed: Counter,
    pub audits_failed: Counter,
    /// Audit challenges this node answered for peers.
    pub audits_answered: Counter,
    /// Delete tombstones garbage collection removed from this node's metadata table.
    pub tombstones_collected: Counter,
}

impl StoreMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("store");
        r.register(
            "chunks_stored",
            "Chunks held on this node's disk",
            m.chunks_stored.clone(),
        );
        r.register(
            "bytes_stored",
            "Bytes of chunks held on this node's disk",
            m.bytes_stored.clone(),
        );
        r.register(
            "chunk_writes",
            "Chunks written to disk (puts of chunks already held are not counted)",
            m.chunk_writes.clone(),
        );
        r.register(
            "chunk_write_bytes",
            "Bytes of chunks written to disk",
            m.chunk_write_bytes.clone(),
        );
        r.register(
            "chunk_reads",
            "Chunks read from disk and verified",
            m.chunk_reads.clone(),
        );
        r.register(
            "chunk_read_bytes",
            "Bytes of chunks read from disk and verified",
            m.chunk_read_bytes.clone(),
        );
        r.register(
            "corrupt_chunks",
            "Chunks found corrupt or missing on disk by reads or scrub, and quarantined",
            m.corrupt_chunks.clone(),
        );
        r.register(
            "scrubbed_chunks",
            "Chunks re-hashed by the scrubber",
            m.scrubbed_chunks.clone(),
        );
        r.register(
            "scrubbed_bytes",
            "Bytes re-hashed by the scrubber",
            m.scrubbed_bytes.clone(),
        );
        r.register(
            "tombstones_collected",
            "Delete tombstones garbage collection retired from this node's metadata table to its cold table once every metadata holder confirmed them",
            m.tombstones_collected.clone(),
        );
        r.register(
            "repairs",
            "Chunks or metadata entries restored on a replica that lacked them",
            m.repairs.clone(),
        );
        r.register(
            "quorum_failures",
            "Reads or writes that could not reach their quorum",
            m.quorum_failures.clone(),
        );
        r.register(
            "bad_replica_reads",
            "Reads where a peer answered wrongly: chunk bytes that do not match the chunk id, or metadata for another path",
            m.bad_replica_reads.clone(),
        );
        r.register(
            "listing_rounds_agreed",
            "Listing rounds served from this edge's own table because the other metadata replicas' digests of the range agreed",
            m.listing_rounds_agreed.clone(),
        );
        r.register(
            "listing_rounds_merged",
            "Listing rounds that merged the metadata replicas' entries (no local replica, or a replica's digest differed)",
            m.listing_rounds_merged.clone(),
        );
        r.register(
            "meta_seals_refused",
            "Object metadata entries refused because their seal (writer signature and tenant authority) did not verify",
            m.meta_seals_refused.clone(),
        );
        r.register(
            "meta_revoked_refused",
            "Object metadata entries refused or ignored because the tenant revoked their writer's authority",
            m.meta_revoked_refused.clone(),
        );
        r.register(
            "future_versions_refused",
            "Metadata writes refused because their version was too far ahead of this node's clock",
            m.future_versions_refused.clone(),
        );
        r.register(
            "write_conflicts",
            "Object writes and deletes that failed because a newer version won on the replicas",
            m.write_conflicts.clone(),
        );
        r.register(
            "conditional_writes_refused",
            "Conditional writes and deletes coordinated here whose condition did not hold",
            m.conditional_writes_refused.clone(),
        );
        r.register(
            "chunks_refused",
            "Chunks a peer sent that placement does not put on this node, refused",
            m.chunks_refused.clone(),
        );
        r.register(
            "bulk_chunks_sent",
            "Data chunks this edge sent to replicas over the bulk link",
            m.bulk_chunks_sent.clone(),
        );
        r.register(
            "bulk_bytes_sent",
            "Bytes of data chunks this edge sent to replicas over the bulk link",
            m.bulk_bytes_sent.clone(),
        );
        r.register(
            "bulk_chunks_served",
            "Data chunks edges sent this replica over the bulk link",
            m.bulk_chunks_served.clone(),
        );
        r.register(
            "bulk_fallbacks",
            "Data chunks meant for the bulk link that went by the mesh (no link, or it broke)",
            m.bulk_fallbacks.clone(),
        );
        r.register(
            "pinned_writes_unplaceable",
            "Writes refused because their bucket is pinned to regions with no admitted storage node",
            m.pinned_writes_unplaceable.clone(),
        );
        r.register(
            "hedged_reads",
            "Chunk reads that also asked another replica because the first had not answered within the hedge delay",
            m.hedged_reads.clone(),
        );
        r.register(
            "forwarded_reads_used",
            "Object reads through this edge that used a near metadata replica's forwarded answer (agreeing with the quorum, bytes verified)",
            m.forwarded_reads_used.clone(),
        );
        r.register(
            "forwarded_reads_refused",
            "Forwarded reads this edge did not use: stale, missing, bad bytes, an error or too slow (the read fell back)",
            m.forwarded_reads_refused.clone(),
        );
        r.register(
            "forwarded_reads_served",
            "Forwarded reads this node answered for edges",
            m.forwarded_reads_served.clone(),
        );
        r.register(
            "local_prefetches_used",
            "Object reads through this node, a metadata replica, that used the manifest and first chunks it fetched from its own entry during its quorum read",
            m.local_prefetches_used.clone(),
        );
        r.register(
            "relayed_quorums_used",
            "Object reads through this edge whose version a near replica's relayed, signed read quorum decided",
            m.relayed_quorums_used.clone(),
        );
        r.register(
            "relayed_quorums_contradicted",
            "Relayed read quorums this edge's own quorum read contradicted (the near replica is not asked for one for a while)",
            m.relayed_quorums_contradicted.clone(),
        );
        r.register(
            "background_copies_skipped",
            "Replica writes not continued after the write quorum because the background copy budget was spent (repair makes them)",
            m.background_copies_skipped.clone(),
        );
        r.register(
            "audits_passed",
            "Storage audits this node issued whose slice proof verified",
            m.audits_passed.clone(),
        );
        r.register(
            "audits_failed",
            "Storage audits this node issued that failed: not held, a bad proof, an error or no answer in time",
            m.audits_failed.clone(),
        );
        r.register(
            "audits_answered",
            "Storage audit challenges this node answered for peers",
            m.audits_answered.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_under_store_prefix() {
        let mut registry = MetricsRegistry::default();
        let m = StoreMetrics::register(&mut registry);
        m.chunk_writes.inc();
        m.bytes_stored.set(42);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("store_chunk_writes_total 1"), "{text}");
        assert!(text.contains("store_bytes_stored 42"), "{text}");
        assert!(text.contains("store_bad_replica_reads_total 0"), "{text}");
    }
}
