//! Signed quorum answers: a read quorum that one node collects and another can check.
//!
//! A far edge's read of an unpinned bucket waited for its own metadata read quorum, whose
//! answers came from replicas in other regions: an edge in region A read in the time of
//! its round trip to the *second* nearest replica plus the read linger, while a client
//! next to the replicas paid one short round trip. With this module the near replica the
//! edge forwards its read to (see `forward`) runs the lingering quorum read for the edge:
//! it asks every metadata replica for an [`MetaAttestation`], each replica's own entry of
//! the key signed by that replica together with the edge's fresh nonce, and relays them.
//! The edge checks every signature, that each signer is one of the key's metadata
//! replicas by its own placement, that they are distinct and at least a read quorum, and
//! decides the version from them as from its own answers. A forged, replayed, foreign or
//! short set of answers is useless to the near replica: the edge then waits for its own
//! quorum read, which runs in parallel all along.
//!
//! What the edge gives up is its own linger: the near replica decides which answers
//! arrived "in time". A hostile near replica can therefore leave out an honest replica's
//! newer answer and relay its own stale one with that of a replica that missed the latest
//! write; the edge's own quorum read, finishing in the background, then finds the newer
//! version, counts the contradiction and, for [`DISTRUST_FOR`], takes no relayed quorum
//! from that near replica nor any relayed quorum that a replica whose signed answer missed
//! the version takes part in (a signature is then evidence against its signer). See SECURITY.md ("Far reads through a relayed quorum").

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use xnode_store::{ObjectMeta, ObjectPath};
use xnode_types::{NodeId, SecretKey, lock, unix_ms};

use crate::proto::{MAX_ATTESTATIONS, MetaAttestation, StoreRequest, StoreResponse};
use crate::seals::{Trust, newest_trusted};
use crate::{MAX_VERSION_AHEAD_MS, META_TIMEOUT, Storage, StorageError, blocking};

/// The first line of what a replica signs: it names the format, so an attestation can
/// never be mistaken for another signed thing.
const DOMAIN: &[u8] = b"xnode metadata attestation v1\n";
/// How long an edge takes no relayed quorum from a near replica, or signed by a replica,
/// after one contradicted the edge's own quorum read.
pub(crate) const DISTRUST_FOR: Duration = Duration::from_secs(600);
/// Most near replicas an edge remembers distrusting; past it the oldest marks go first.
const MAX_DISTRUSTED: usize = 1024;

/// What a replica signs for one answer: the format, the signer, the reader's nonce, the
/// key and the entry (its canonical encoding's hash, or a marker for no entry).
fn signing_text(
    node: &NodeId,
    nonce: &[u8; 16],
    path: &ObjectPath,
    meta: Option<&ObjectMeta>,
) -> Result<Vec<u8>, StorageError> {
    let mut text = DOMAIN.to_vec();
    let node = node.to_bytes();
    let key = path.storage_key();
    for part in [&node[..], &key[..]] {
        text.extend_from_slice(&(part.len() as u64).to_be_bytes());
        text.extend_from_slice(part);
    }
    text.extend_from_slice(nonce);
    match meta {
        None => text.push(0),
        Some(meta) => {
            let encoded = xnode_wire::encode(meta)
                .map_err(|e| StorageError::Internal(format!("encoding an entry: {e}")))?;
            text.push(1);
            text.extend_from_slice(blake3::hash(&encoded).as_bytes());
        }
    }
    Ok(text)
}

impl MetaAttestation {
    /// `node_key`'s signed answer `meta` for `path`, for the read with `nonce`.
    pub fn sign(
        node_key: &SecretKey,
        nonce: &[u8; 16],
        path: &ObjectPath,
        meta: Option<ObjectMeta>,
    ) -> Result<Self, StorageError> {
        let text = signing_text(&node_key.node_id(), nonce, path, meta.as_ref())?;
        Ok(Self {
            node_key: node_key.public(),
            meta,
            signature: node_key.sign(&text),
        })
    }
}

/// A relayed quorum the edge checked: the version it decides (`None`: no such key).
pub(crate) struct AttestedQuorum {
    pub(crate) newest: Option<ObjectMeta>,
    /// Who signed what, to find who hid a version if the edge's own read finds one.
    pub(crate) votes: Vec<(NodeId, Option<ObjectMeta>)>,
}

/// The replicas an edge takes no relayed quorum from, or signed by, for a while.
#[derive(Debug, Default)]
pub(crate) struct Distrusted(std::sync::Mutex<HashMap<NodeId, Instant>>);

impl Distrusted {
    pub(crate) fn contains(&self, node: &NodeId) -> bool {
        lock(&self.0)
            .get(node)
            .is_some_and(|&until| until > Instant::now())
    }

    pub(crate) fn insert(&self, node: NodeId) {
        let now = Instant::now();
        let mut marks = lock(&self.0);
        marks.retain(|_, until| *until > now);
        if marks.len() >= MAX_DISTRUSTED
            && let Some(oldest) = marks
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(n, _)| *n)
        {
            marks.remove(&oldest);
        }
        marks.insert(node, now + DISTRUST_FOR);
    }
}

impl Storage {
    /// Replica side of `AttestMeta`: this node's own entry of `path`, signed with `nonce`.
    pub(crate) async fn attest_meta(
        &self,
        path: ObjectPath,
        nonce: [u8; 16],
    ) -> Result<MetaAttestation, StorageError> {
        path.validate()?;
        let store = self.meta.clone();
        let lookup = path.clone();
        let meta = blocking(move || store.get(&lookup)).await?;
        MetaAttestation::sign(&self.signer, &nonce, &path, meta)
    }

    /// Near side of a `QuorumForwardedRead`: a lingering read quorum of `path`'s metadata
    /// replicas, each answer signed for `nonce`, as the edge's own quorum read would hear
    /// it. Fewer than a quorum (the edge then ignores them) when too few answered.
    pub(crate) async fn collect_attestations(
        &self,
        path: &ObjectPath,
        nonce: [u8; 16],
    ) -> Vec<MetaAttestation> {
        let set = self.storage_set();
        let targets = self.meta_placement(&path.tenant, &path.bucket, &set);
        let (_, needed) = self.quorums(targets.len());
        let answers = self
            .endpoint
            .try_call_quorum_lingering(
                &targets,
                needed,
                self.config.read_linger,
                StoreRequest::AttestMeta {
                    path: path.clone(),
                    nonce,
                },
                META_TIMEOUT,
                |_, response| match response {
                    StoreResponse::Attested(attestation) => Ok(attestation),
                    StoreResponse::Error(message) => Err(message),
                    _ => Err("unexpected answer".into()),
                },
            )
            .await
            .unwrap_or_default();
        answers
            .into_iter()
            .map(|(_, attestation)| attestation)
            .take(MAX_ATTESTATIONS)
            .collect()
    }

    /// Edge side: the version a relayed quorum decides for `path`, if its answers are a
    /// read quorum of distinct metadata replicas (by this node's placement) whose
    /// signatures over this read's `nonce` verify; `None` otherwise. Entries are judged as
    /// the edge's own quorum read judges them.
    pub(crate) fn check_attestations(
        &self,
        path: &ObjectPath,
        nonce: &[u8; 16],
        attestations: &[MetaAttestation],
    ) -> Option<AttestedQuorum> {
        let set = self.storage_set();
        let targets = self.meta_placement(&path.tenant, &path.bucket, &set);
        let (_, needed) = self.quorums(targets.len());
        let limit = unix_ms().saturating_add(MAX_VERSION_AHEAD_MS);
        let mut voters: Vec<NodeId> = Vec::new();
        let mut entries: Vec<Option<ObjectMeta>> = Vec::new();
        for attestation in attestations.iter().take(MAX_ATTESTATIONS) {
            let Ok(node) = NodeId::from_public_key(&attestation.node_key) else {
                return None;
            };
            if !targets.contains(&node)
                || voters.contains(&node)
                || self.distrusted_relays.contains(&node)
            {
                return None;
            }
            let text = signing_text(&node, nonce, path, attestation.meta.as_ref()).ok()?;
            if !attestation.node_key.verify(&text, &attestation.signature) {
                return None;
            }
            let entry = match &attestation.meta {
                Some(meta) if meta.path != *path => return None,
                Some(meta) if self.trust(meta) == Trust::Forged => {
                    self.metrics.bad_replica_reads.inc();
                    return None;
                }
                // As the edge's own read does: an entry of a revoked writer dated after the
                // revocation counts as no entry.
                Some(meta) if self.trust(meta) == Trust::Revoked => None,
                // As the edge's own read does: an entry dated further ahead than
                // replicas accept counts as no entry.
                Some(meta) if meta.version.wall_ms > limit => None,
                meta => meta.clone(),
            };
            voters.push(node);
            entries.push(entry);
        }
        if voters.len() < needed {
            return None;
        }
        Some(AttestedQuorum {
            newest: newest_trusted(&entries, |m| self.trust(m)),
            votes: voters.into_iter().zip(entries).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use xnode_types::PublicKeyBytes;

    use super::*;

    #[test]
    fn the_signed_text_binds_signer_nonce_key_and_entry() {
        let node = SecretKey::generate().node_id();
        let other = SecretKey::generate().node_id();
        let path = ObjectPath::new(PublicKeyBytes([7; 32]), "bucket", "key").unwrap();
        let path2 = ObjectPath::new(PublicKeyBytes([7; 32]), "bucket", "key2").unwrap();
        let base = signing_text(&node, &[1; 16], &path, None).unwrap();
        assert!(base.starts_with(DOMAIN));
        assert_ne!(base, signing_text(&other, &[1; 16], &path, None).unwrap());
        assert_ne!(base, signing_text(&node, &[2; 16], &path, None).unwrap());
        assert_ne!(base, signing_text(&node, &[1; 16], &path2, None).unwrap());
        let entry = ObjectMeta {
            path: path.clone(),
            version: xnode_types::Hlc::new(1000, 0),
            writer: node,
            info: None,
            seal: None,
        };
        let with_entry = signing_text(&node, &[1; 16], &path, Some(&entry)).unwrap();
        assert_ne!(base, with_entry);
        let newer = ObjectMeta {
            version: xnode_types::Hlc::new(1001, 0),
            ..entry
        };
        assert_ne!(
            with_entry,
            signing_text(&node, &[1; 16], &path, Some(&newer)).unwrap()
        );
    }

    #[test]
    fn distrust_expires_and_stays_bounded() {
        let marks = Distrusted::default();
        let node = SecretKey::generate().node_id();
        assert!(!marks.contains(&node));
        marks.insert(node);
        assert!(marks.contains(&node));
        for _ in 0..MAX_DISTRUSTED + 10 {
            marks.insert(SecretKey::generate().node_id());
        }
        assert!(lock(&marks.0).len() <= MAX_DISTRUSTED);
    }
}
