//! Admission: which nodes may hold data and run workloads.
//!
//! Any stranger may run a node and join the mesh; membership is not admission. A node is a
//! placement candidate only if its record carries a valid operator certificate (see
//! [`xnode_types::OperatorCert`]) for this network and the network's [`AdmissionPolicy`]
//! admits it:
//!
//! - `Open` admits every node with a valid certificate (devnets, tests, trusted clusters);
//! - `Allowlist` admits the node ids and operator keys named by the newest
//!   [`SignedAdmissionList`] that the network's authority key signed for this network;
//! - `Bonded` admits the nodes named by the newest [`BondSnapshot`]: the nodes whose
//!   operator's account had at least the minimum bond in the `Staking` contract at the
//!   block every node agrees on for the epoch (the node reads the chain and installs the
//!   snapshot; this crate knows nothing of chains).
//!
//! Admission lists are spread through the registry: a node started with a list file
//! publishes it under `admission/<its node id>`, and every node takes, among the lists it
//! holds that verify, the one with the highest serial. Lists are self-authenticating, so
//! it does not matter which node carries one; an old list replayed by a peer loses to any
//! newer one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, NodeRecord, PublicKeyBytes, SecretKey, SignatureBytes};
use xnode_wire::{Versioned, WireError, kinds};

use crate::Registry;

/// Registry namespace under which nodes carry admission lists: `admission/<node id>`,
/// written only by that node.
pub const ADMISSION_PREFIX: &str = "admission/";

/// The first line of an admission list's signing text.
pub const ADMISSION_LIST_DOMAIN: &str = "xnode admission list v1";

/// Most node ids plus operator keys one list may name; it keeps a list well inside the
/// registry's entry limit.
pub const MAX_ADMISSION_LIST_ENTRIES: usize = 4096;

/// Largest encoded signed list a node reads, from a file or a peer.
pub const MAX_ADMISSION_LIST_BYTES: usize = 200 * 1024;

/// Cached verifications are dropped all at once beyond this many, so a peer that keeps
/// changing its record cannot grow the cache without bound.
const CACHE_LIMIT: usize = 4096;

/// Who may hold data and run workloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdmissionPolicy {
    /// Every node with a valid operator certificate.
    Open,
    /// The nodes and operators named by the newest list signed by `authority`.
    Allowlist { authority: PublicKeyBytes },
    /// The nodes named by the newest [`BondSnapshot`] (none before the first).
    Bonded,
}

/// Under [`AdmissionPolicy::Bonded`]: the nodes whose operator was bonded enough at the
/// agreed block of an epoch. Every node reads the same block for the same epoch, so every
/// node installs the same snapshot and placement stays identical everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondSnapshot {
    /// The epoch this snapshot admits for.
    pub epoch: u64,
    /// The block whose state it was read at.
    pub block: u64,
    /// The admitted nodes (they still need a valid operator certificate).
    pub nodes: BTreeSet<NodeId>,
}

/// The nodes and operators a network authority admits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionList {
    /// The network this list is for; a list for another network is ignored.
    pub network: String,
    /// Higher serials replace lower ones. The authority never signs two lists with one
    /// serial (if it does, the one whose encoding sorts last wins, the same everywhere).
    pub serial: u64,
    /// Admitted operator keys: every node they certify is admitted.
    pub operators: BTreeSet<PublicKeyBytes>,
    /// Admitted node ids, whoever operates them (they still need a valid certificate).
    pub nodes: BTreeSet<NodeId>,
}

impl Versioned for AdmissionList {
    const KIND_TAG: u8 = kinds::ADMISSION_LIST;
    const KIND_NAME: &'static str = "admission list";
    const VERSION: u8 = 1;
}

/// An [`AdmissionList`] with its authority's signature, as a file and in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAdmissionList {
    /// The list, encoded with its kind and version (the bytes that were signed).
    pub list: Vec<u8>,
    pub authority: PublicKeyBytes,
    pub signature: SignatureBytes,
}

impl Versioned for SignedAdmissionList {
    const KIND_TAG: u8 = kinds::SIGNED_ADMISSION_LIST;
    const KIND_NAME: &'static str = "signed admission list";
    const VERSION: u8 = 1;
}

/// Why an admission list was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the admission list names {0} entries, over the limit of {MAX_ADMISSION_LIST_ENTRIES}")]
    TooManyEntries(usize),
    #[error("the admission list is signed by {found}, not by the network's authority {expected}")]
    WrongAuthority {
        expected: PublicKeyBytes,
        found: PublicKeyBytes,
    },
    #[error("the admission list's signature does not verify")]
    BadSignature,
    #[error("the admission list is for network {found:?}, not {expected:?}")]
    WrongNetwork { expected: String, found: String },
}

fn signing_text(list_bytes: &[u8]) -> Vec<u8> {
    let mut text = format!("{ADMISSION_LIST_DOMAIN}\n").into_bytes();
    text.extend_from_slice(list_bytes);
    text
}

impl SignedAdmissionList {
    /// Signs `list` with the network authority's key.
    pub fn sign(list: &AdmissionList, authority: &SecretKey) -> Result<Self, AdmissionError> {
        let entries = list.operators.len().saturating_add(list.nodes.len());
        if entries > MAX_ADMISSION_LIST_ENTRIES {
            return Err(AdmissionError::TooManyEntries(entries));
        }
        let bytes = xnode_wire::encode(list)?;
        let signature = authority.sign(&signing_text(&bytes));
        Ok(Self {
            list: bytes,
            authority: authority.public(),
            signature,
        })
    }

    /// The list inside, if `authority` signed it for `network`.
    pub fn verify(
        &self,
        authority: &PublicKeyBytes,
        network: &str,
    ) -> Result<AdmissionList, AdmissionError> {
        if self.authority != *authority {
            return Err(AdmissionError::WrongAuthority {
                expected: *authority,
                found: self.authority,
            });
        }
        if !authority.verify(&signing_text(&self.list), &self.signature) {
            return Err(AdmissionError::BadSignature);
        }
        let list: AdmissionList = xnode_wire::decode(&self.list, MAX_ADMISSION_LIST_BYTES)?;
        if list.network != network {
            return Err(AdmissionError::WrongNetwork {
                expected: network.to_owned(),
                found: list.network,
            });
        }
        let entries = list.operators.len().saturating_add(list.nodes.len());
        if entries > MAX_ADMISSION_LIST_ENTRIES {
            return Err(AdmissionError::TooManyEntries(entries));
        }
        Ok(list)
    }

    /// Decodes and verifies an encoded signed list (a file's or a registry value's bytes).
    pub fn decode_verified(
        bytes: &[u8],
        authority: &PublicKeyBytes,
        network: &str,
    ) -> Result<AdmissionList, AdmissionError> {
        let signed: SignedAdmissionList = xnode_wire::decode(bytes, MAX_ADMISSION_LIST_BYTES)?;
        signed.verify(authority, network)
    }
}

/// A node placement may use: its record and its verified operator.
#[derive(Clone, Debug)]
pub struct AdmittedNode {
    pub record: NodeRecord,
    pub operator: PublicKeyBytes,
}

/// A verified list and the digest of its encoding (the tie-break between equal serials).
type VerifiedList = Arc<(AdmissionList, [u8; 32])>;

/// The cache key of a certificate check: the node, the operator it names, the signature.
type CertKey = (NodeId, PublicKeyBytes, [u8; 64]);

/// This node's admission decisions: the network, its policy, and caches of signature
/// checks (placement asks on every request, and a signature check costs tens of
/// microseconds).
pub struct Admission {
    network: String,
    policy: AdmissionPolicy,
    /// `(node, operator, signature)` → whether the certificate verified.
    certs: Mutex<HashMap<CertKey, bool>>,
    /// A registry entry's signature → the list its value holds (with the value's digest),
    /// if it verified.
    lists: Mutex<HashMap<[u8; 64], Option<VerifiedList>>>,
    /// Under `Bonded`: the newest snapshot installed, if any.
    bonds: Mutex<Option<Arc<BondSnapshot>>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("network", &self.network)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Admission {
    pub fn new(network: impl Into<String>, policy: AdmissionPolicy) -> Self {
        Self {
            network: network.into(),
            policy,
            certs: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
            bonds: Mutex::new(None),
        }
    }

    /// Installs `snapshot` unless a snapshot of a later epoch is installed already (a slow
    /// read of an old epoch must not undo a newer one). Returns whether it was installed.
    pub fn set_bond_snapshot(&self, snapshot: BondSnapshot) -> bool {
        let mut bonds = xnode_types::lock(&self.bonds);
        if bonds
            .as_ref()
            .is_some_and(|held| held.epoch > snapshot.epoch)
        {
            return false;
        }
        *bonds = Some(Arc::new(snapshot));
        true
    }

    /// The bond snapshot placement uses now, if any.
    pub fn bond_snapshot(&self) -> Option<Arc<BondSnapshot>> {
        xnode_types::lock(&self.bonds).clone()
    }

    /// Why the policy admits no node at all yet, if that is the case: what a refused
    /// write tells its client instead of a bare count of available nodes.
    pub fn why_no_one_yet(&self, registry: &Registry) -> Option<&'static str> {
        match &self.policy {
            AdmissionPolicy::Open => None,
            AdmissionPolicy::Allowlist { .. } => self.current_list(registry).is_none().then_some(
                "the allowlist admission policy admits no node until a list signed by the network authority arrives",
            ),
            AdmissionPolicy::Bonded => self.bond_snapshot().is_none().then_some(
                "the bonded admission policy admits no node until this node has read the operators' stakes from the chain",
            ),
        }
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn policy(&self) -> &AdmissionPolicy {
        &self.policy
    }

    /// The operator that runs `record`'s node, if its certificate is valid for this
    /// network. Records without one (written before operators existed) have none.
    pub fn operator_of(&self, record: &NodeRecord) -> Option<PublicKeyBytes> {
        let cert = record.operator?;
        let key = (record.node_id, cert.operator, cert.signature.0);
        if let Some(valid) = xnode_types::lock(&self.certs).get(&key) {
            return valid.then_some(cert.operator);
        }
        let valid = cert.verify(&self.network, &record.node_id);
        let mut certs = xnode_types::lock(&self.certs);
        if certs.len() >= CACHE_LIMIT {
            certs.clear();
        }
        certs.insert(key, valid);
        valid.then_some(cert.operator)
    }

    /// The newest admission list signed by this network's authority among those the
    /// registry carries, or `None` (under `Open`, or before any list arrived).
    pub fn current_list(&self, registry: &Registry) -> Option<AdmissionList> {
        let AdmissionPolicy::Allowlist { authority } = &self.policy else {
            return None;
        };
        // Entries are looked up by their signature (which covers the value), so a list
        // is decoded and verified once, not on every placement; values are copied out of
        // the registry only when not seen before.
        let mut known: Vec<Option<VerifiedList>> = Vec::new();
        let mut unseen: Vec<([u8; 64], Vec<u8>)> = Vec::new();
        {
            let entries = registry.read_entries();
            let lists = xnode_types::lock(&self.lists);
            for (_, entry) in entries
                .range(ADMISSION_PREFIX.to_owned()..)
                .take_while(|(k, _)| k.starts_with(ADMISSION_PREFIX))
            {
                let Some(value) = entry.value.as_deref() else {
                    continue;
                };
                match lists.get(&entry.signature.0) {
                    Some(cached) => known.push(cached.clone()),
                    None => unseen.push((entry.signature.0, value.to_vec())),
                }
            }
        }
        for (signature, value) in unseen {
            let verified = SignedAdmissionList::decode_verified(&value, authority, &self.network)
                .ok()
                .map(|list| Arc::new((list, *blake3::hash(&value).as_bytes())));
            let mut lists = xnode_types::lock(&self.lists);
            if lists.len() >= CACHE_LIMIT {
                lists.clear();
            }
            lists.insert(signature, verified.clone());
            known.push(verified);
        }
        // The highest serial wins; equal serials fall back to the list's digest so that
        // every node picks the same list whatever order it holds them in.
        known
            .into_iter()
            .flatten()
            .max_by(|a, b| (a.0.serial, a.1).cmp(&(b.0.serial, b.1)))
            .map(|best| best.0.clone())
    }

    /// Whether a node run by `operator` is admitted under `list` or `bonds` (the current
    /// list or snapshot, which the caller fetched once for a whole candidate set).
    fn admits(
        &self,
        node: &NodeId,
        operator: &PublicKeyBytes,
        list: Option<&AdmissionList>,
        bonds: Option<&BondSnapshot>,
    ) -> bool {
        match &self.policy {
            AdmissionPolicy::Open => true,
            AdmissionPolicy::Allowlist { .. } => {
                list.is_some_and(|l| l.nodes.contains(node) || l.operators.contains(operator))
            }
            // No snapshot yet admits no one: storage refuses writes rather than place
            // data on operators nobody has checked.
            AdmissionPolicy::Bonded => bonds.is_some_and(|b| b.nodes.contains(node)),
        }
    }

    /// The admitted nodes among `records`, with their operators: the placement candidates
    /// before liveness is considered. Every node computes the same answer from the same
    /// registry.
    pub fn admitted(&self, registry: &Registry, records: Vec<NodeRecord>) -> Vec<AdmittedNode> {
        let list = self.current_list(registry);
        let bonds = self.bond_snapshot();
        records
            .into_iter()
            .filter_map(|record| {
                let operator = self.operator_of(&record)?;
                self.admits(&record.node_id, &operator, list.as_ref(), bonds.as_deref())
                    .then_some(AdmittedNode { record, operator })
            })
            .collect()
    }

    /// Whether `record`'s node is admitted now.
    pub fn is_admitted(&self, registry: &Registry, record: &NodeRecord) -> bool {
        let Some(operator) = self.operator_of(record) else {
            return false;
        };
        let list = self.current_list(registry);
        let bonds = self.bond_snapshot();
        self.admits(&record.node_id, &operator, list.as_ref(), bonds.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(
        network: &str,
        serial: u64,
        nodes: &[NodeId],
        operators: &[PublicKeyBytes],
    ) -> AdmissionList {
        AdmissionList {
            network: network.into(),
            serial,
            operators: operators.iter().copied().collect(),
            nodes: nodes.iter().copied().collect(),
        }
    }

    #[test]
    fn a_list_verifies_only_for_its_authority_and_network() {
        let authority = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        let signed = SignedAdmissionList::sign(&list("prod", 1, &[node], &[]), &authority).unwrap();
        let bytes = xnode_wire::encode(&signed).unwrap();
        let got =
            SignedAdmissionList::decode_verified(&bytes, &authority.public(), "prod").unwrap();
        assert!(got.nodes.contains(&node));
        assert!(matches!(
            SignedAdmissionList::decode_verified(&bytes, &authority.public(), "devnet"),
            Err(AdmissionError::WrongNetwork { .. })
        ));
        let stranger = SecretKey::generate();
        assert!(matches!(
            SignedAdmissionList::decode_verified(&bytes, &stranger.public(), "prod"),
            Err(AdmissionError::WrongAuthority { .. })
        ));
        // A stranger who signs a list and names the authority as its signer fails.
        let mut forged = SignedAdmissionList::sign(&list("prod", 9, &[], &[]), &stranger).unwrap();
        forged.authority = authority.public();
        assert!(matches!(
            forged.verify(&authority.public(), "prod"),
            Err(AdmissionError::BadSignature)
        ));
        // Changing the signed list after signing breaks the signature.
        let mut tampered = signed.clone();
        let other = list("prod", 1, &[SecretKey::generate().node_id()], &[]);
        tampered.list = xnode_wire::encode(&other).unwrap();
        assert!(matches!(
            tampered.verify(&authority.public(), "prod"),
            Err(AdmissionError::BadSignature)
        ));
        // Garbage is an error, not a panic.
        assert!(
            SignedAdmissionList::decode_verified(&[1, 2, 3], &authority.public(), "prod").is_err()
        );
    }

    fn open_registry(dir: &tempfile::TempDir) -> Registry {
        let db = xnode_db::Db::open(&dir.path().join("registry.redb")).unwrap();
        Registry::open(
            db,
            Arc::new(xnode_types::HlcClock::new()),
            Box::new(crate::DefaultPolicy),
            crate::RegistryMetrics::default(),
        )
        .unwrap()
    }

    fn record(node: &SecretKey, operator: Option<&SecretKey>, network: &str) -> NodeRecord {
        NodeRecord {
            node_id: node.node_id(),
            addresses: vec![],
            api_url: None,
            zone: "z".into(),
            capacity: Default::default(),
            version: "test".into(),
            incarnation: 1,
            status: xnode_types::NodeStatus::Active,
            started_at_ms: 0,
            labels: Default::default(),
            operator: operator
                .map(|o| xnode_types::OperatorCert::issue(o, network, &node.node_id())),
        }
    }

    /// Puts `signed` into the registry as node `carrier` would.
    fn carry(registry: &Registry, carrier: &SecretKey, signed: &SignedAdmissionList) {
        registry
            .put(
                carrier,
                &format!("{ADMISSION_PREFIX}{}", carrier.node_id()),
                xnode_wire::encode(signed).unwrap(),
            )
            .unwrap();
    }

    #[test]
    fn open_admits_exactly_the_nodes_with_a_valid_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let registry = open_registry(&dir);
        let admission = Admission::new("prod", AdmissionPolicy::Open);
        let operator = SecretKey::generate();
        let (a, b, c, d) = (
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        );
        let valid = record(&a, Some(&operator), "prod");
        let old_format = record(&b, None, "prod");
        let other_network = record(&c, Some(&operator), "devnet");
        // A certificate copied from another node's record.
        let mut copied = record(&d, None, "prod");
        copied.operator = valid.operator;
        let admitted = admission.admitted(
            &registry,
            vec![valid.clone(), old_format, other_network, copied.clone()],
        );
        assert_eq!(admitted.len(), 1);
        assert_eq!(admitted[0].record.node_id, a.node_id());
        assert_eq!(admitted[0].operator, operator.public());
        // Cached answers are the same answers.
        assert!(admission.is_admitted(&registry, &valid));
        assert!(!admission.is_admitted(&registry, &copied));
    }

    #[test]
    fn an_allowlist_admits_what_the_newest_authority_list_names() {
        let dir = tempfile::tempdir().unwrap();
        let registry = open_registry(&dir);
        let authority = SecretKey::generate();
        let admission = Admission::new(
            "prod",
            AdmissionPolicy::Allowlist {
                authority: authority.public(),
            },
        );
        let listed_operator = SecretKey::generate();
        let other_operator = SecretKey::generate();
        let by_operator = record(&SecretKey::generate(), Some(&listed_operator), "prod");
        let listed_node_key = SecretKey::generate();
        let by_node = record(&listed_node_key, Some(&other_operator), "prod");
        let stranger = record(&SecretKey::generate(), Some(&other_operator), "prod");
        let all = vec![by_operator.clone(), by_node.clone(), stranger.clone()];

        // No list yet: no one.
        assert!(admission.admitted(&registry, all.clone()).is_empty());

        let carrier = SecretKey::generate();
        let v1 = list(
            "prod",
            1,
            &[listed_node_key.node_id()],
            &[listed_operator.public()],
        );
        carry(
            &registry,
            &carrier,
            &SignedAdmissionList::sign(&v1, &authority).unwrap(),
        );
        let admitted: Vec<_> = admission
            .admitted(&registry, all.clone())
            .into_iter()
            .map(|a| a.record.node_id)
            .collect();
        assert_eq!(admitted, vec![by_operator.node_id, by_node.node_id]);

        // A list a stranger signed, or one for another network, changes nothing, even
        // with a higher serial.
        let forger = SecretKey::generate();
        let everyone = list("prod", 99, &[stranger.node_id], &[other_operator.public()]);
        carry(
            &registry,
            &forger,
            &SignedAdmissionList::sign(&everyone, &forger).unwrap(),
        );
        let elsewhere = list("devnet", 99, &[stranger.node_id], &[]);
        carry(
            &registry,
            &SecretKey::generate(),
            &SignedAdmissionList::sign(&elsewhere, &authority).unwrap(),
        );
        assert_eq!(admission.admitted(&registry, all.clone()).len(), 2);

        // A newer list from the authority, carried by another node, replaces it; the old
        // one, still carried by the first node, loses.
        let v2 = list("prod", 2, &[stranger.node_id], &[]);
        carry(
            &registry,
            &SecretKey::generate(),
            &SignedAdmissionList::sign(&v2, &authority).unwrap(),
        );
        let admitted: Vec<_> = admission
            .admitted(&registry, all)
            .into_iter()
            .map(|a| a.record.node_id)
            .collect();
        assert_eq!(admitted, vec![stranger.node_id]);
        assert_eq!(admission.current_list(&registry).unwrap().serial, 2);
    }

    #[test]
    fn bonded_admits_the_newest_snapshot_and_no_one_before_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let registry = open_registry(&dir);
        let admission = Admission::new("prod", AdmissionPolicy::Bonded);
        let operator = SecretKey::generate();
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let (ra, rb) = (
            record(&a, Some(&operator), "prod"),
            record(&b, Some(&operator), "prod"),
        );
        // A node without a valid certificate is never admitted, whatever the snapshot.
        let uncertified_key = SecretKey::generate();
        let uncertified = record(&uncertified_key, None, "prod");
        let all = vec![ra.clone(), rb.clone(), uncertified.clone()];
        let ids = |admitted: Vec<AdmittedNode>| -> Vec<NodeId> {
            admitted.into_iter().map(|a| a.record.node_id).collect()
        };

        // No snapshot: no one, and the policy says why.
        assert!(admission.admitted(&registry, all.clone()).is_empty());
        assert!(!admission.is_admitted(&registry, &ra));
        assert!(
            admission
                .why_no_one_yet(&registry)
                .unwrap()
                .contains("stakes")
        );

        let snapshot = |epoch: u64, nodes: &[NodeId]| BondSnapshot {
            epoch,
            block: epoch * 10,
            nodes: nodes.iter().copied().collect(),
        };
        assert!(admission.set_bond_snapshot(snapshot(5, &[a.node_id(), uncertified.node_id])));
        assert!(admission.why_no_one_yet(&registry).is_none());
        assert_eq!(
            ids(admission.admitted(&registry, all.clone())),
            vec![a.node_id()]
        );
        assert!(admission.is_admitted(&registry, &ra));
        assert!(!admission.is_admitted(&registry, &rb));

        // The next epoch's snapshot replaces it: a leaves (its bond fell), b arrives.
        assert!(admission.set_bond_snapshot(snapshot(6, &[b.node_id()])));
        assert_eq!(
            ids(admission.admitted(&registry, all.clone())),
            vec![b.node_id()]
        );
        // A late read of an older epoch changes nothing.
        assert!(!admission.set_bond_snapshot(snapshot(5, &[a.node_id()])));
        assert_eq!(admission.bond_snapshot().unwrap().epoch, 6);
        assert_eq!(ids(admission.admitted(&registry, all)), vec![b.node_id()]);
    }

    #[test]
    fn oversized_lists_are_refused() {
        let authority = SecretKey::generate();
        let many: Vec<PublicKeyBytes> = (0..=MAX_ADMISSION_LIST_ENTRIES as u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.to_le_bytes());
                PublicKeyBytes(b)
            })
            .collect();
        assert!(matches!(
            SignedAdmissionList::sign(&list("prod", 1, &[], &many), &authority),
            Err(AdmissionError::TooManyEntries(_))
        ));
    }
}
