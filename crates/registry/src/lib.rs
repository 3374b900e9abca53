//! The replicated registry: small, global, owner-signed state that every node holds in full.
//!
//! The registry is a last-writer-wins map (a state-based CRDT). Each [`Entry`] is signed by
//! its owner and stamped with a hybrid logical clock; merging keeps the entry with the
//! greatest `(hlc, owner, signature)` version, and deletions are tombstones, so replicas
//! converge whatever order updates arrive in and however often they are repeated.
//!
//! Who may write which key is decided by a [`WritePolicy`]: for example only node `N` may
//! write `node/N`. Entries with a bad signature or a forbidden owner are dropped and counted.
//!
//! This crate knows nothing about the network: the node spreads entries by gossip and calls
//! [`Registry::apply_remote`]; anti-entropy messages ([`sync`]) are plain data that any
//! transport can carry.

pub mod admission;
pub mod claims;
mod entry;
pub mod kms;
mod metrics;
pub mod payout;
mod policy;
pub mod revocation;
pub mod sync;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::broadcast;
use xnode_db::{Db, Table, WriteOp};
use xnode_types::{HlcClock, NodeRecord, PublicKeyBytes, Signer};

use crate::claims::ClaimIndex;
pub use entry::{Entry, Version};
pub use metrics::RegistryMetrics;
pub use policy::{DefaultPolicy, WritePolicy};

const TABLE: Table = Table("registry");

/// Largest encoded entry accepted from a peer.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Errors from registry operations.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry entry {key:?} has an invalid signature")]
    BadSignature { key: String },
    #[error("owner {owner} may not write registry key {key:?}")]
    Forbidden { key: String, owner: String },
    #[error("invalid registry key {key:?}: {reason}")]
    BadKey { key: String, reason: String },
    #[error("registry value for {key:?} is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        key: String,
        len: usize,
        limit: usize,
    },
    /// The owner's entries would pass the node's quota (`storage.quota.max_registry_bytes`).
    #[error(
        "registry quota exceeded: the tenant's entries hold {have} bytes, {adding} more would pass the quota of {max}"
    )]
    OwnerQuota { have: u64, adding: u64, max: u64 },
    /// A revocation entry that does not decode or check (see [`revocation`]).
    #[error("registry entry {key:?} is not a valid revocation: {source}")]
    BadRevocation {
        key: String,
        #[source]
        source: revocation::RevocationError,
    },
    /// A KMS key entry that does not decode or check (see [`kms`]).
    #[error("registry entry {key:?} is not a valid KMS key: {source}")]
    BadKmsKey {
        key: String,
        #[source]
        source: kms::KmsKeyError,
    },
    /// A payout binding entry that does not decode or check (see [`payout`]).
    #[error("registry entry {key:?} is not a valid payout binding: {source}")]
    BadPayoutBinding {
        key: String,
        #[source]
        source: payout::PayoutBindingError,
    },
    /// The tenant already holds [`revocation::MAX_REVOCATIONS_PER_TENANT`] live revocations.
    #[error(
        "the tenant already holds {max} revocations; revoke the node's `all` scope, or delete one, to make room"
    )]
    TooManyRevocations { max: usize },
    /// The entry passed its checks but the batch it came in could not be stored (see
    /// [`Registry::apply_remote_many`]); the same error is reported for each of its entries.
    #[error("the batch of {entries} registry entries this one came in could not be stored")]
    BatchWrite {
        entries: usize,
        #[source]
        source: Arc<RegistryError>,
    },
    #[error(transparent)]
    Wire(#[from] xnode_wire::WireError),
    #[error(transparent)]
    Db(#[from] xnode_db::DbError),
}

/// What happened when an entry was merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The entry was newer and replaced (or created) the local one.
    Updated,
    /// The local entry was as new or newer; nothing changed.
    Stale,
}

/// Whoever carries entries between nodes (the node, over the mesh). The registry asks it
/// to push an entry written here to peers at once, so that a writer who then asks another
/// node sees its write; gossip and anti-entropy deliver it anyway, only later.
#[async_trait::async_trait]
pub trait Spread: Send + Sync + 'static {
    /// Pushes `entry` to the live peers, returning once they answered or a short timeout
    /// passed.
    async fn spread(&self, entry: &Entry);
}

/// Decodes the node record in a registry entry. The policy has already checked that
/// `node/<id>` was signed by node `id`; this also checks that the record inside describes
/// that same node, so no node can speak for another by naming it in its own record.
pub fn node_record(entry: &Entry) -> Option<NodeRecord> {
    let record = xnode_wire::decode::<NodeRecord>(entry.value.as_deref()?, 64 * 1024).ok()?;
    (entry.key == NodeRecord::registry_key(&record.node_id)).then_some(record)
}

/// The replicated registry of one node.
pub struct Registry {
    db: Db,
    entries: RwLock<BTreeMap<String, Entry>>,
    /// The anti-entropy digest of `entries`, moved in the same order (under its lock).
    digest: Mutex<sync::SyncDigest>,
    claims: RwLock<ClaimIndex>,
    spread: OnceLock<Arc<dyn Spread>>,
    clock: Arc<HlcClock>,
    policy: Box<dyn WritePolicy>,
    metrics: RegistryMetrics,
    changes: broadcast::Sender<Change>,
    /// Bytes of each owner's live entries (keys and values), kept as entries merge.
    owner_bytes: Mutex<HashMap<PublicKeyBytes, u64>>,
    /// Live entries and tombstones, for the gauges without a scan per merge.
    live_entries: AtomicUsize,
    /// The network's name, which payout bindings must be made for. Unset, every binding
    /// is refused: a registry that cannot check the network must not keep one.
    network: OnceLock<String>,
    tombstones: AtomicUsize,
    /// See [`Registry::set_owner_quota`]; `u64::MAX` is no limit.
    owner_quota: AtomicU64,
}

/// What an entry counts against its owner: its key and value, if it is live.
fn owned_bytes(entry: &Entry) -> u64 {
    match &entry.value {
        Some(value) => (entry.key.len() as u64).saturating_add(value.len() as u64),
        None => 0,
    }
}

/// A change to the registry, as reported to subscribers.
#[derive(Clone, Debug)]
pub struct Change {
    pub entry: Entry,
    /// True when this node wrote the entry (and so should spread it), false when it came
    /// from a peer.
    pub local: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Loads the registry persisted in `db`. Entries that no longer decode or verify are
    /// skipped (and counted) rather than failing the start: peers will send them again.
    pub fn open(
        db: Db,
        clock: Arc<HlcClock>,
        policy: Box<dyn WritePolicy>,
        metrics: RegistryMetrics,
    ) -> Result<Self, RegistryError> {
        let mut entries = BTreeMap::new();
        let mut claims = ClaimIndex::default();
        let mut owner_bytes: HashMap<PublicKeyBytes, u64> = HashMap::new();
        for (key, value) in db.scan_prefix(TABLE, b"", usize::MAX)? {
            match xnode_wire::decode::<Entry>(&value, MAX_ENTRY_BYTES) {
                Ok(entry) if entry.verify() => {
                    clock.observe(entry.hlc);
                    claims.replace(None, &entry);
                    let bytes = owner_bytes.entry(entry.owner).or_default();
                    *bytes = bytes.saturating_add(owned_bytes(&entry));
                    entries.insert(entry.key.clone(), entry);
                }
                _ => {
                    tracing::warn!(key = %String::from_utf8_lossy(&key), "skipping unreadable registry entry on disk");
                    metrics.invalid_on_disk.inc();
                }
            }
        }
        let (changes, _) = broadcast::channel(1024);
        let live = entries.values().filter(|e| e.value.is_some()).count();
        let tombstones = entries.len() - live;
        let this = Self {
            db,
            owner_bytes: Mutex::new(owner_bytes),
            live_entries: AtomicUsize::new(live),
            tombstones: AtomicUsize::new(tombstones),
            owner_quota: AtomicU64::new(u64::MAX),
            digest: Mutex::new(sync::SyncDigest::of(entries.values())),
            entries: RwLock::new(entries),
            claims: RwLock::new(claims),
            spread: OnceLock::new(),
            network: OnceLock::new(),
            clock,
            policy,
            metrics,
            changes,
        };
        this.update_gauges();
        Ok(this)
    }

    /// Subscribes to every change (local or remote) that updated the registry.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Writes `value` under `key`, signed by `signer`. Returns the new entry for gossip.
    pub fn put(
        &self,
        signer: &dyn Signer,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Entry, RegistryError> {
        self.write_local(signer, key, Some(value))
    }

    /// Deletes `key` by writing a tombstone signed by `signer`.
    pub fn delete(&self, signer: &dyn Signer, key: &str) -> Result<Entry, RegistryError> {
        self.write_local(signer, key, None)
    }

    fn write_local(
        &self,
        signer: &dyn Signer,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, RegistryError> {
        let entry = Entry::sign(signer, key.to_owned(), value, self.clock.now())?;
        self.check_policy(&entry)?;
        self.merge(entry.clone(), true)?;
        Ok(entry)
    }

    /// Bytes of `owner`'s live entries (keys and values) in this node's registry.
    pub fn owner_bytes(&self, owner: &PublicKeyBytes) -> u64 {
        xnode_types::lock(&self.owner_bytes)
            .get(owner)
            .copied()
            .unwrap_or(0)
    }

    /// Sets the most bytes of live entries one owner may add through
    /// [`Self::apply_tenant_entry`] on this node (`None`: no limit).
    pub fn set_owner_quota(&self, max_owner_bytes: Option<u64>) {
        self.owner_quota
            .store(max_owner_bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// [`Self::apply_remote`] for an entry a tenant hands this node directly (a bucket
    /// claim, a deployment, a job): refused if it would take the owner's live entries
    /// past the owner quota ([`Self::set_owner_quota`]). An entry that does not grow the
    /// owner's bytes (a smaller update, a deletion) always passes, so a tenant over its
    /// quota can make room. Entries from peers are not bounded here: the quota protects
    /// what this node accepts from its own clients, like the other per-edge quotas.
    pub fn apply_tenant_entry(&self, entry: Entry) -> Result<Applied, RegistryError> {
        let max = self.owner_quota.load(Ordering::Relaxed);
        if max != u64::MAX {
            let before = self
                .read_entries()
                .get(&entry.key)
                .filter(|e| e.owner == entry.owner)
                .map(owned_bytes)
                .unwrap_or(0);
            let adding = owned_bytes(&entry).saturating_sub(before);
            let have = self.owner_bytes(&entry.owner);
            if adding > 0 && have.saturating_add(adding) > max {
                return Err(RegistryError::OwnerQuota { have, adding, max });
            }
        }
        self.apply_remote(entry)
    }

    /// Verifies and merges an entry received from a peer (an entry no newer than the one
    /// held is dropped unverified, see [`Self::admit_remote`]).
    pub fn apply_remote(&self, entry: Entry) -> Result<Applied, RegistryError> {
        self.admit_remote(&entry)?;
        self.merge(entry, false)
    }

    /// [`Self::apply_remote`] for a batch (an anti-entropy pull or push): every entry is
    /// checked on its own, and those that pass are persisted in one database write, not
    /// one write (and one sync to disk) each. The results are in the batch's order.
    pub fn apply_remote_many(&self, entries: Vec<Entry>) -> Vec<Result<Applied, RegistryError>> {
        let mut results: Vec<Result<Applied, RegistryError>> = Vec::with_capacity(entries.len());
        let mut admitted = Vec::new();
        for entry in entries {
            match self.admit_remote(&entry) {
                Ok(()) => {
                    admitted.push((results.len(), entry));
                    results.push(Ok(Applied::Stale));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let (positions, admitted): (Vec<usize>, Vec<Entry>) = admitted.into_iter().unzip();
        match self.merge_many(admitted, false) {
            Ok(merged) => {
                for (position, applied) in positions.into_iter().zip(merged) {
                    if let Some(slot) = results.get_mut(position) {
                        *slot = Ok(applied);
                    }
                }
            }
            Err(e) => {
                // One failed write fails the whole batch; each of its entries reports it
                // (the peer sends them again at its next round).
                let source = Arc::new(e);
                let entries = positions.len();
                for position in positions {
                    if let Some(slot) = results.get_mut(position) {
                        *slot = Err(RegistryError::BatchWrite {
                            entries,
                            source: source.clone(),
                        });
                    }
                }
            }
        }
        results
    }

    /// The checks an entry from a peer passes before it is merged: a valid signature and
    /// the write policy. `Ok` lets it go on to the merge, which drops it if it is stale.
    ///
    /// An entry that is not newer than the one held is dropped before its signature is
    /// checked: it would be dropped after it anyway, and most of what gossip and
    /// anti-entropy bring is a copy of what this node already has, whose verification
    /// was most of their cost (see BENCHMARKS.md, "Validating gossip"). A forged entry can
    /// only claim to be newer by its clock and signature, so it still reaches the check.
    fn admit_remote(&self, entry: &Entry) -> Result<(), RegistryError> {
        if !self.is_stale(entry) {
            if !entry.verify() {
                self.metrics.invalid_signatures.inc();
                return Err(RegistryError::BadSignature {
                    key: entry.key.clone(),
                });
            }
            if let Err(e) = self.check_policy(entry) {
                self.metrics.rejected_by_policy.inc();
                return Err(e);
            }
            self.clock.observe(entry.hlc);
        }
        Ok(())
    }

    /// Decodes, verifies and merges an encoded entry received from a peer.
    pub fn apply_remote_bytes(&self, bytes: &[u8]) -> Result<Applied, RegistryError> {
        match xnode_wire::decode::<Entry>(bytes, MAX_ENTRY_BYTES) {
            Ok(entry) => self.apply_remote(entry),
            Err(e) => {
                self.metrics.malformed.inc();
                Err(e.into())
            }
        }
    }

    fn check_policy(&self, entry: &Entry) -> Result<(), RegistryError> {
        entry::validate_key(&entry.key)?;
        if let Some(value) = &entry.value
            && value.len() > MAX_ENTRY_BYTES / 2
        {
            return Err(RegistryError::TooLarge {
                key: entry.key.clone(),
                len: value.len(),
                limit: MAX_ENTRY_BYTES / 2,
            });
        }
        if entry.value.is_some() && revocation::is_revocation_key(&entry.key) {
            self.check_revocation(entry)?;
        }
        if entry.value.is_some() && kms::is_kms_key_key(&entry.key) {
            kms::parse_kms_key(entry).map_err(|source| RegistryError::BadKmsKey {
                key: entry.key.chars().take(160).collect(),
                source,
            })?;
        }
        if entry.value.is_some() && payout::is_binding_key(&entry.key) {
            self.check_payout_binding(entry)?;
        }
        let current = self.read_entries().get(&entry.key).cloned();
        if self
            .policy
            .may_write(&entry.key, &entry.owner, current.as_ref())
        {
            Ok(())
        } else {
            Err(RegistryError::Forbidden {
                key: entry.key.clone(),
                owner: entry.owner.to_hex(),
            })
        }
    }

    /// A live revocation must decode, match its key and not be dated ahead of this node's
    /// clock; and a new one (not an update of a live one) must stay within the tenant's
    /// bound. Tombstones pass: only the tenant can sign one (the policy checks the owner).
    fn check_revocation(&self, entry: &Entry) -> Result<(), RegistryError> {
        revocation::parse_revocation(entry, xnode_types::unix_ms()).map_err(|source| {
            RegistryError::BadRevocation {
                key: entry.key.chars().take(160).collect(),
                source,
            }
        })?;
        let entries = self.read_entries();
        if entries.get(&entry.key).is_some_and(|e| e.value.is_some()) {
            return Ok(());
        }
        let prefix = revocation::tenant_revocations_prefix(&entry.owner);
        let held = entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, e)| e.value.is_some())
            .take(revocation::MAX_REVOCATIONS_PER_TENANT)
            .count();
        if held >= revocation::MAX_REVOCATIONS_PER_TENANT {
            return Err(RegistryError::TooManyRevocations {
                max: revocation::MAX_REVOCATIONS_PER_TENANT,
            });
        }
        Ok(())
    }

    /// A live payout binding must be made for this network, filed under its operator and
    /// serial, carry its address's consent, and (if new) stay within the operator's bound.
    fn check_payout_binding(&self, entry: &Entry) -> Result<(), RegistryError> {
        let bad = |source| RegistryError::BadPayoutBinding {
            key: entry.key.chars().take(160).collect(),
            source,
        };
        let Some(network) = self.network.get() else {
            return Err(bad(payout::PayoutBindingError::NoNetwork));
        };
        let binding = payout::parse_binding(entry, network).map_err(bad)?;
        let entries = self.read_entries();
        if entries.get(&entry.key).is_some_and(|e| e.value.is_some()) {
            return Ok(());
        }
        let prefix = payout::operator_prefix(&binding.operator);
        let held = entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, e)| e.value.is_some())
            .take(payout::MAX_BINDINGS_PER_OPERATOR)
            .count();
        if held >= payout::MAX_BINDINGS_PER_OPERATOR {
            return Err(bad(payout::PayoutBindingError::TooMany));
        }
        Ok(())
    }

    /// Sets the network whose payout bindings this registry accepts; the first call wins.
    pub fn set_network(&self, network: &str) {
        let _ = self.network.set(network.to_owned());
    }

    /// The address each operator is bound to by its payout bindings written at or before
    /// `cut_ms` (see [`payout::resolve_bindings`]). Entries were checked on arrival; this
    /// checks them again (those loaded from disk were not) and skips any that fail.
    pub fn payout_table(
        &self,
        cut_ms: u64,
    ) -> BTreeMap<PublicKeyBytes, alloy::primitives::Address> {
        let Some(network) = self.network.get() else {
            return BTreeMap::new();
        };
        let bindings: Vec<(payout::PayoutBinding, u64)> = self
            .list(payout::PAYOUT_PREFIX)
            .iter()
            .filter_map(|entry| {
                let binding = payout::parse_binding(entry, network).ok()?;
                Some((binding, entry.hlc.wall_ms))
            })
            .collect();
        payout::resolve_bindings(bindings, cut_ms)
    }

    /// The time after which `tenant` revoked `node`'s authorities of `scope` (see
    /// [`revocation`]), if it did. Entries were checked on arrival; this decodes again
    /// and skips one that no longer decodes rather than trusting it.
    pub fn revoked_after(
        &self,
        tenant: &PublicKeyBytes,
        node: &xnode_types::NodeId,
        scope: &revocation::RevokedScope,
    ) -> Option<u64> {
        // Readers ask this of every entry they check, and most tenants revoke nothing: one
        // probe of the tenant's revocation prefix spares building the full key (the node's
        // base58 text and the scope) for them.
        if !self.has_revocations(tenant) {
            return None;
        }
        let key = revocation::revocation_key(tenant, node, scope);
        let entry = self.get(&key)?;
        if entry.owner != *tenant {
            return None;
        }
        revocation::parse_revocation(&entry, u64::MAX)
            .ok()
            .map(|r| r.after_ms)
    }

    /// Whether `tenant` holds any revocation entry (live or deleted): when it does not, no
    /// authority of the tenant's is revoked, and a reader checking many of its entries can
    /// skip the per-entry lookups.
    pub fn has_revocations(&self, tenant: &PublicKeyBytes) -> bool {
        let prefix = revocation::tenant_revocations_prefix(tenant);
        self.read_entries()
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|(key, _)| key.starts_with(&prefix))
    }

    pub(crate) fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        match self.entries.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether the entry held under `entry`'s key is at least as new as `entry`.
    fn is_stale(&self, entry: &Entry) -> bool {
        self.read_entries()
            .get(&entry.key)
            .is_some_and(|current| current.version() >= entry.version())
    }

    fn merge(&self, entry: Entry, local: bool) -> Result<Applied, RegistryError> {
        Ok(self
            .merge_many(vec![entry], local)?
            .pop()
            .unwrap_or(Applied::Stale))
    }

    /// Merges entries that passed their checks: those newer than what is held (and than
    /// any earlier one of the same key in the batch) are persisted in one database write,
    /// then published. Returns what became of each, in order.
    fn merge_many(&self, batch: Vec<Entry>, local: bool) -> Result<Vec<Applied>, RegistryError> {
        let mut entries = match self.entries.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut newest: BTreeMap<String, (usize, Entry)> = BTreeMap::new();
        for (position, entry) in batch.into_iter().enumerate() {
            outcomes.push(Applied::Stale);
            let held = newest
                .get(&entry.key)
                .map(|(_, e)| e.version())
                .or_else(|| entries.get(&entry.key).map(Entry::version));
            if held.is_some_and(|held| held >= entry.version()) {
                self.metrics.stale.inc();
                continue;
            }
            if newest
                .insert(entry.key.clone(), (position, entry))
                .is_some()
            {
                // An older entry of the same key earlier in the batch: it stays `Stale`.
                self.metrics.stale.inc();
            }
        }
        if newest.is_empty() {
            return Ok(outcomes);
        }
        // Persist before publishing in memory, so what peers and readers see is durable.
        let mut writes = Vec::with_capacity(newest.len());
        for (_, entry) in newest.values() {
            writes.push(WriteOp::Put {
                table: TABLE,
                key: entry.key.as_bytes().to_vec(),
                value: xnode_wire::encode(entry)?,
            });
        }
        self.db.write(writes)?;
        let mut published = Vec::with_capacity(newest.len());
        for (_, (position, entry)) in newest {
            let old = entries.insert(entry.key.clone(), entry.clone());
            xnode_types::lock(&self.digest).replace(old.as_ref(), &entry);
            match self.claims.write() {
                Ok(mut claims) => claims.replace(old.as_ref(), &entry),
                Err(poisoned) => poisoned.into_inner().replace(old.as_ref(), &entry),
            }
            self.account(old.as_ref(), &entry);
            self.metrics.applied.inc();
            if let Some(outcome) = outcomes.get_mut(position) {
                *outcome = Applied::Updated;
            }
            published.push(entry);
        }
        drop(entries);
        self.update_gauges();
        for entry in published {
            // Nobody listening is fine.
            let _ = self.changes.send(Change { entry, local });
        }
        Ok(outcomes)
    }

    /// Moves the owners' byte counts and the live and tombstone counts from `old` (if
    /// any) to `new`.
    fn account(&self, old: Option<&Entry>, new: &Entry) {
        {
            let mut owners = xnode_types::lock(&self.owner_bytes);
            if let Some(old) = old {
                let remaining = owners
                    .get(&old.owner)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(owned_bytes(old));
                if remaining == 0 {
                    owners.remove(&old.owner);
                } else {
                    owners.insert(old.owner, remaining);
                }
            }
            if new.value.is_some() {
                let bytes = owners.entry(new.owner).or_default();
                *bytes = bytes.saturating_add(owned_bytes(new));
            }
        }
        let counter = |e: &Entry| {
            if e.value.is_some() {
                &self.live_entries
            } else {
                &self.tombstones
            }
        };
        if let Some(old) = old {
            counter(old).fetch_sub(1, Ordering::Relaxed);
        }
        counter(new).fetch_add(1, Ordering::Relaxed);
    }

    fn update_gauges(&self) {
        let live = self.live_entries.load(Ordering::Relaxed);
        let tombstones = self.tombstones.load(Ordering::Relaxed);
        self.metrics
            .entries
            .set(i64::try_from(live).unwrap_or(i64::MAX));
        self.metrics
            .tombstones
            .set(i64::try_from(tombstones).unwrap_or(i64::MAX));
    }

    /// How many entries this registry holds, tombstones included.
    pub fn entry_count(&self) -> usize {
        self.live_entries
            .load(Ordering::Relaxed)
            .saturating_add(self.tombstones.load(Ordering::Relaxed))
    }

    /// The live (non-tombstone) entry under `key`.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.read_entries()
            .get(key)
            .filter(|e| e.value.is_some())
            .cloned()
    }

    /// The entry under `key`, tombstone or not.
    pub fn get_any(&self, key: &str) -> Option<Entry> {
        self.read_entries().get(key).cloned()
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<Entry> {
        self.list_where(prefix, |_| true)
    }

    /// Live entries whose key starts with `prefix` and passes `keep`, in key order. Only
    /// those are copied: a caller that wants one kind of entry from under a wide prefix
    /// (every tenant's jobs, among every tenant's buckets, keys and grants) pays a key
    /// comparison for the rest, not a copy.
    pub fn list_where(&self, prefix: &str, keep: impl Fn(&str) -> bool) -> Vec<Entry> {
        self.read_entries()
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, e)| e.value.is_some() && keep(k))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The live claims on `name` of `kind` (see [`claims`]), winner first. Callers still
    /// check that each claim's value is well formed and take the first that is.
    pub fn claims(&self, kind: &str, name: &str) -> Vec<Entry> {
        let keys = match self.claims.read() {
            Ok(claims) => claims.claims(kind, name),
            Err(poisoned) => poisoned.into_inner().claims(kind, name),
        };
        let entries = self.read_entries();
        keys.iter()
            .filter_map(|key| entries.get(key))
            .filter(|e| e.value.is_some())
            .cloned()
            .collect()
    }

    /// Every name of `kind` that at least one live claim holds, in order.
    pub fn claimed_names(&self, kind: &str) -> Vec<String> {
        match self.claims.read() {
            Ok(claims) => claims.names(kind),
            Err(poisoned) => poisoned.into_inner().names(kind),
        }
    }

    /// Every node record in the registry that is well formed (see [`node_record`]).
    /// Every node's record with the wall-clock time (Unix ms) its node last signed it.
    /// Nodes re-sign their record every `record_refresh_interval`, so an old time means
    /// the node itself has been silent that long (no peer can re-sign it for the node).
    pub fn node_records_signed_at(&self) -> Vec<(NodeRecord, u64)> {
        self.read_entries()
            .range(NodeRecord::KEY_PREFIX.to_owned()..)
            .take_while(|(k, _)| k.starts_with(NodeRecord::KEY_PREFIX))
            .filter_map(|(_, e)| node_record(e).map(|r| (r, e.hlc.wall_ms)))
            .collect()
    }

    pub fn node_records(&self) -> Vec<NodeRecord> {
        self.read_entries()
            .range(NodeRecord::KEY_PREFIX.to_owned()..)
            .take_while(|(k, _)| k.starts_with(NodeRecord::KEY_PREFIX))
            .filter_map(|(_, e)| node_record(e))
            .collect()
    }

    /// Installs the carrier that pushes local writes to peers (once, at start).
    pub fn set_spread(&self, spread: Arc<dyn Spread>) {
        if self.spread.set(spread).is_err() {
            tracing::warn!("the registry's spread hook was set twice; keeping the first");
        }
    }

    /// Pushes an entry written here to peers at once (see [`Spread`]). Without a carrier
    /// (a registry used alone, in tests) this does nothing: gossip is someone else's job.
    pub async fn spread(&self, entry: &Entry) {
        if let Some(spread) = self.spread.get() {
            spread.spread(entry).await;
        }
    }

    /// Every entry including tombstones, for anti-entropy.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<Entry> {
        self.read_entries().values().cloned().collect()
    }

    pub fn metrics(&self) -> &RegistryMetrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests;
