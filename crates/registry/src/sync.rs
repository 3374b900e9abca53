//! Anti-entropy: the digest exchange that repairs whatever gossip missed.
//!
//! One round between an initiator `A` and a responder `B`:
//!
//! 1. `A` sends the hash of its [`BUCKETS`] bucket hashes (`SyncRequest::Root`, 16 bytes);
//!    `B` answers `InSync` if its own is the same, and the round ends. Only peers of
//!    protocol 1.4 know `Root`: with an older one `A` starts at step 2.
//! 2. Otherwise `A` sends the bucket hashes themselves (`SyncRequest::Digest`), and `B`
//!    answers with `(key, version)` for every entry it holds in the buckets whose hash
//!    differs (`SyncResponse::Summaries`).
//! 3. `A` pulls the keys where `B` is newer and pushes the entries where `A` is newer.
//!
//! Identical registries, the usual case, cost a 16-byte hash and a one-byte answer: every
//! node runs a round every few seconds, so this is what the registry costs a network at
//! rest, whatever it holds (about 0.8 kbit/s per node with framing, against 4.7 for the
//! 1 KiB of bucket hashes that a round sent first before protocol 1.4; see the
//! registry simulation, `xnode-sim registry`). The messages are plain data, so any
//! transport can carry them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use serde::{Deserialize, Serialize};
use xnode_wire::{Versioned, kinds};

use crate::{Applied, Entry, Registry, Version};

/// Number of hash buckets the key space is split into for digests.
pub const BUCKETS: usize = 64;
/// Largest sync message accepted from a peer.
pub const MAX_SYNC_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most keys pulled or entries pushed in one message.
const BATCH: usize = 256;

/// A request in an anti-entropy round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SyncRequest {
    Digest {
        buckets: Vec<[u8; 16]>,
    },
    Pull {
        keys: Vec<String>,
    },
    Push {
        entries: Vec<Entry>,
    },
    /// The hash of the sender's bucket hashes (protocol 1.4).
    Root {
        root: [u8; 16],
    },
}

/// A response in an anti-entropy round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The buckets whose hash differs, and the responder's versions of every entry in them.
    Summaries {
        differing: Vec<u8>,
        items: Vec<(String, Version)>,
    },
    Entries {
        entries: Vec<Entry>,
    },
    Pushed {
        updated: u32,
        rejected: u32,
    },
    Refused {
        reason: String,
    },
    /// The answer to `Root` when the roots are equal (protocol 1.4).
    InSync,
    /// The answer to `Root` when they differ: send the bucket hashes (protocol 1.4).
    Differs,
}

impl Versioned for SyncRequest {
    const KIND_TAG: u8 = kinds::REGISTRY_SYNC_REQUEST;
    const KIND_NAME: &'static str = "registry sync request";
    // `Root` was appended in protocol 1.4 and is sent only to peers that negotiated it
    // (as SWIM's newer messages are), so the format stays 1: older nodes read every
    // message they are sent.
    const VERSION: u8 = 1;
}

impl Versioned for SyncResponse {
    const KIND_TAG: u8 = kinds::REGISTRY_SYNC_RESPONSE;
    const KIND_NAME: &'static str = "registry sync response";
    // `InSync` and `Differs` answer only `Root`, so only peers of protocol 1.4 get them.
    const VERSION: u8 = 1;
}

/// What one round changed locally and remotely.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub pulled: usize,
    pub pushed: usize,
}

/// Errors from an anti-entropy round.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync transport failed: {0}")]
    Transport(String),
    #[error("peer refused sync: {0}")]
    Refused(String),
    #[error("peer answered a sync request with an unexpected message")]
    Protocol,
}

fn bucket_of(key: &str) -> usize {
    blake3::hash(key.as_bytes()).as_bytes()[0] as usize % BUCKETS
}

fn entry_hash(entry: &Entry) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(entry.key.as_bytes());
    h.update(&entry.hlc.wall_ms.to_le_bytes());
    h.update(&entry.hlc.logical.to_le_bytes());
    h.update(&entry.owner.0);
    h.update(&entry.signature.0);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// The hash of each of the [`BUCKETS`] key buckets: the XOR of the hashes of the entries
/// in it. The registry keeps it as entries merge, so a round between registries in sync
/// costs a copy of 64 hashes, not a pass over every entry (every bucket claim, grant and
/// record of the network) on both sides every few seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyncDigest(pub(crate) Vec<[u8; 16]>);

impl SyncDigest {
    /// The digest of `entries`, computed afresh.
    pub(crate) fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> SyncDigest {
        let mut digest = SyncDigest(vec![[0u8; 16]; BUCKETS]);
        for entry in entries {
            digest.toggle(entry);
        }
        digest
    }

    /// Replaces `old` (if any) by `new` under the same key.
    pub(crate) fn replace(&mut self, old: Option<&Entry>, new: &Entry) {
        if let Some(old) = old {
            self.toggle(old);
        }
        self.toggle(new);
    }

    fn toggle(&mut self, entry: &Entry) {
        if let Some(bucket) = self.0.get_mut(bucket_of(&entry.key)) {
            for (x, y) in bucket.iter_mut().zip(entry_hash(entry)) {
                *x ^= y;
            }
        }
    }
}

/// The hash of a registry's bucket hashes, in bucket order.
fn root_of(buckets: &[[u8; 16]]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"xnode-registry-root/1");
    for bucket in buckets {
        hasher.update(bucket);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

impl Registry {
    /// Hashes of every bucket: the XOR of the hashes of the entries in it.
    pub fn digest(&self) -> Vec<[u8; 16]> {
        xnode_types::lock(&self.digest).0.clone()
    }

    /// The hash of [`Registry::digest`]: equal on two nodes when their registries hold the
    /// same entries (but for a 128-bit collision).
    pub fn digest_root(&self) -> [u8; 16] {
        root_of(&xnode_types::lock(&self.digest).0)
    }

    /// `(key, version)` of every entry in `buckets`; nothing to read when none differ.
    fn versions_in(&self, buckets: &BTreeSet<usize>) -> BTreeMap<String, Version> {
        if buckets.is_empty() {
            return BTreeMap::new();
        }
        self.read_entries()
            .values()
            .filter(|e| buckets.contains(&bucket_of(&e.key)))
            .map(|e| (e.key.clone(), e.version()))
            .collect()
    }

    /// Answers one anti-entropy request from a peer.
    pub fn handle_sync(&self, request: SyncRequest) -> SyncResponse {
        match request {
            SyncRequest::Root { root } => {
                if root == self.digest_root() {
                    SyncResponse::InSync
                } else {
                    SyncResponse::Differs
                }
            }
            SyncRequest::Digest { buckets } => {
                if buckets.len() != BUCKETS {
                    return SyncResponse::Refused {
                        reason: format!("digest has {} buckets, expected {BUCKETS}", buckets.len()),
                    };
                }
                let mine = self.digest();
                let differing: BTreeSet<usize> =
                    (0..BUCKETS).filter(|&i| mine[i] != buckets[i]).collect();
                SyncResponse::Summaries {
                    differing: differing.iter().map(|&b| b as u8).collect(),
                    items: self.versions_in(&differing).into_iter().collect(),
                }
            }
            SyncRequest::Pull { keys } => {
                let entries = keys
                    .iter()
                    .take(BATCH)
                    .filter_map(|k| self.get_any(k))
                    .collect::<Vec<_>>();
                SyncResponse::Entries { entries }
            }
            SyncRequest::Push { entries } => {
                let (mut updated, mut rejected) = (0u32, 0u32);
                let batch = entries.into_iter().take(BATCH).collect();
                for result in self.apply_remote_many(batch) {
                    match result {
                        Ok(Applied::Updated) => updated += 1,
                        Ok(Applied::Stale) => {}
                        Err(_) => rejected += 1,
                    }
                }
                self.metrics.sync_entries_received.inc_by(updated as u64);
                SyncResponse::Pushed { updated, rejected }
            }
        }
    }

    /// Runs one anti-entropy round as the initiator. `send` carries a request to the peer
    /// and returns its response. `root_first`: the peer knows `SyncRequest::Root`
    /// (protocol 1.4), so the round opens with the roots.
    pub async fn sync_with<F, Fut>(
        &self,
        root_first: bool,
        mut send: F,
    ) -> Result<SyncStats, SyncError>
    where
        F: FnMut(SyncRequest) -> Fut,
        Fut: Future<Output = Result<SyncResponse, String>>,
    {
        // The roots first: registries in sync, the usual case, end the round here.
        if root_first {
            match send(SyncRequest::Root {
                root: self.digest_root(),
            })
            .await
            .map_err(SyncError::Transport)?
            {
                SyncResponse::InSync => {
                    self.metrics.sync_rounds.inc();
                    return Ok(SyncStats::default());
                }
                SyncResponse::Differs => {}
                SyncResponse::Refused { reason } => return Err(SyncError::Refused(reason)),
                _ => return Err(SyncError::Protocol),
            }
        }
        let response = send(SyncRequest::Digest {
            buckets: self.digest(),
        })
        .await
        .map_err(SyncError::Transport)?;
        let (differing, theirs) = match response {
            SyncResponse::Summaries { differing, items } => (differing, items),
            SyncResponse::Refused { reason } => return Err(SyncError::Refused(reason)),
            _ => return Err(SyncError::Protocol),
        };
        let differing: BTreeSet<usize> = differing.into_iter().map(usize::from).collect();
        let their_versions: BTreeMap<String, Version> = theirs.into_iter().collect();
        let mut stats = SyncStats::default();

        // Pull what the peer holds newer (or what we lack).
        let to_pull: Vec<String> = their_versions
            .iter()
            .filter(|(key, version)| self.get_any(key).is_none_or(|l| l.version() < **version))
            .map(|(key, _)| key.clone())
            .collect();
        for keys in to_pull.chunks(BATCH) {
            let response = send(SyncRequest::Pull {
                keys: keys.to_vec(),
            })
            .await
            .map_err(SyncError::Transport)?;
            let SyncResponse::Entries { entries } = response else {
                return Err(SyncError::Protocol);
            };
            // Only the keys asked for, at most a batch: a peer cannot make this node store
            // what it did not ask for through a pull.
            let asked: BTreeSet<&String> = keys.iter().collect();
            let entries: Vec<Entry> = entries
                .into_iter()
                .filter(|e| asked.contains(&e.key))
                .take(BATCH)
                .collect();
            stats.pulled += self
                .apply_remote_many(entries)
                .iter()
                .filter(|r| matches!(r, Ok(Applied::Updated)))
                .count();
        }
        self.metrics
            .sync_entries_received
            .inc_by(stats.pulled as u64);

        // Push what we hold newer, in the buckets that differ.
        let to_push: Vec<Entry> = if differing.is_empty() {
            Vec::new()
        } else {
            self.read_entries()
                .values()
                .filter(|e| differing.contains(&bucket_of(&e.key)))
                .filter(|e| their_versions.get(&e.key).is_none_or(|v| e.version() > *v))
                .cloned()
                .collect()
        };
        for batch in to_push.chunks(BATCH) {
            let response = send(SyncRequest::Push {
                entries: batch.to_vec(),
            })
            .await
            .map_err(SyncError::Transport)?;
            match response {
                SyncResponse::Pushed { updated, .. } => stats.pushed += updated as usize,
                SyncResponse::Refused { reason } => return Err(SyncError::Refused(reason)),
                _ => return Err(SyncError::Protocol),
            }
        }
        self.metrics.sync_rounds.inc();
        Ok(stats)
    }
}
