//! Edge revocations: a tenant withdraws the authority it gave a node to write its objects.
//!
//! A node writes a tenant's object metadata under an authority the tenant gave it (a signed
//! request, an S3 key registration; see `xnode_store::seal`). A tenant who learns that such
//! an edge is compromised signs a revocation and hands it to any other node, which merges
//! it into the registry like any tenant entry; every replica and reader then refuses the
//! node's entries of that tenant dated after the revocation time.
//!
//! A revocation is the registry entry `tenant/<T>/revoke/<node>/<scope>`, signed by tenant
//! `T` (the default policy lets only `T` write under `tenant/<T>/`, so no peer can forge
//! one, and only `T` can remove one, with its own signed tombstone). Its scope is `all`
//! (every authority of the node) or `s3-<id>` (one S3 key registration, by
//! [registration id](S3_REGISTRATION_ID_HEX_LEN)). The value is a small versioned JSON
//! record that repeats what the key says, so the signed bytes (the registry's signing text
//! binds key and value) name the tenant, the node, the scope and the time on their own:
//!
//! ```json
//! {"v":1,"kind":"edge-revocation","node":"<node id>","scope":"all","after_ms":1764200000000}
//! ```
//!
//! One entry per (tenant, node, scope): a later signed record for the same key supersedes
//! the earlier one (last writer wins, like every registry entry); records of different
//! scopes for one node accumulate, and the earliest time that covers an authority applies.
//! A tenant holds at most [`MAX_REVOCATIONS_PER_TENANT`] live revocations; past that a node
//! refuses new keys (updates of existing ones pass), so revoking a node's `all` scope is the
//! way to fold several per-key revocations.

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, PublicKeyBytes};

use crate::Entry;

/// The kind segment of revocation keys, after `tenant/<T>/`.
pub const REVOCATION_KIND: &str = "revoke";
/// The version of the revocation record this code writes and reads.
pub const REVOCATION_RECORD_VERSION: u32 = 1;
/// The `kind` field of every revocation record: says what the signed value is.
pub const REVOCATION_RECORD_KIND: &str = "edge-revocation";
/// Most live revocations one tenant may hold. Bounded so that the per-entry lookups of
/// the seal check stay cheap and a tenant's namespace cannot grow without end; 256 is far
/// above the number of edges a tenant uses.
pub const MAX_REVOCATIONS_PER_TENANT: usize = 256;
/// Largest revocation record accepted (the JSON value).
pub const MAX_REVOCATION_RECORD_BYTES: usize = 512;
/// How far a revocation's time and its entry's clock may be ahead of the receiving
/// node's clock: the same skew the rest of the system allows.
pub const MAX_REVOCATION_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Length of an S3 registration id in hex (see `TenantRequestProof::registration_id`).
pub const S3_REGISTRATION_ID_HEX_LEN: usize = 32;

/// Which authorities of a node a revocation withdraws.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RevokedScope {
    /// Every authority the tenant gave the node: requests, S3 registrations, compute.
    All,
    /// One S3 key registration, by its registration id (32 lowercase hex digits).
    S3Registration(String),
}

impl RevokedScope {
    /// The key segment naming the scope.
    pub fn segment(&self) -> String {
        match self {
            RevokedScope::All => "all".into(),
            RevokedScope::S3Registration(id) => format!("s3-{id}"),
        }
    }

    fn parse(segment: &str) -> Option<Self> {
        if segment == "all" {
            return Some(RevokedScope::All);
        }
        let id = segment.strip_prefix("s3-")?;
        is_registration_id(id).then(|| RevokedScope::S3Registration(id.to_owned()))
    }
}

/// Whether `id` has the form of an S3 registration id.
pub fn is_registration_id(id: &str) -> bool {
    id.len() == S3_REGISTRATION_ID_HEX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The registry key of `tenant`'s revocation of `node`'s `scope`.
pub fn revocation_key(tenant: &PublicKeyBytes, node: &NodeId, scope: &RevokedScope) -> String {
    format!(
        "tenant/{}/{REVOCATION_KIND}/{node}/{}",
        tenant.to_hex(),
        scope.segment()
    )
}

/// The value a tenant signs for a revocation of `node`'s `scope` for entries dated after
/// `after_ms` (the exact bytes: clients sign and send these).
pub fn revocation_record(node: &NodeId, scope: &RevokedScope, after_ms: u64) -> String {
    serde_json::json!({
        "v": REVOCATION_RECORD_VERSION,
        "kind": REVOCATION_RECORD_KIND,
        "node": node.to_string(),
        "scope": scope.segment(),
        "after_ms": after_ms,
    })
    .to_string()
}

/// A checked revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub tenant: PublicKeyBytes,
    pub node: NodeId,
    pub scope: RevokedScope,
    /// Entries dated (HLC wall time) after this are refused; those at or before stay.
    pub after_ms: u64,
}

#[derive(Deserialize, Serialize)]
struct Record {
    v: u32,
    kind: String,
    node: String,
    scope: String,
    after_ms: u64,
}

/// Why a revocation entry is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error("not a revocation key")]
    NotARevocationKey,
    #[error("the revocation key does not name a node and a scope (all, or s3-<registration id>)")]
    BadKey,
    #[error(
        "the revocation record is {len} bytes, over the {MAX_REVOCATION_RECORD_BYTES}-byte limit"
    )]
    TooLarge { len: usize },
    #[error("the revocation record does not decode: {0}")]
    Malformed(String),
    #[error(
        "the revocation record is version {0}; this node reads version {REVOCATION_RECORD_VERSION}"
    )]
    UnknownVersion(u32),
    #[error("the revocation record names another node or scope than its key")]
    DoesNotMatchKey,
    #[error(
        "the revocation is dated {ahead_ms} ms ahead of this node's clock (at most {MAX_REVOCATION_CLOCK_SKEW_MS} ms allowed)"
    )]
    InTheFuture { ahead_ms: u64 },
}

/// The node and scope a revocation record names, if it decodes (a route that receives a
/// record the tenant signed uses this to find the entry's key; the entry is then checked
/// as a whole by [`parse_revocation`] when it merges).
pub fn record_target(record: &[u8]) -> Option<(NodeId, RevokedScope, u64)> {
    if record.len() > MAX_REVOCATION_RECORD_BYTES {
        return None;
    }
    let record: Record = serde_json::from_slice(record).ok()?;
    Some((
        record.node.parse().ok()?,
        RevokedScope::parse(&record.scope)?,
        record.after_ms,
    ))
}

/// Splits a revocation key into its tenant (hex), node and scope, if it is one.
fn split_key(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix("tenant/")?;
    let (tenant, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix(REVOCATION_KIND)?.strip_prefix('/')?;
    let (node, scope) = rest.split_once('/')?;
    Some((tenant, node, scope))
}

/// Whether `key` lies in a tenant's revocation namespace.
pub fn is_revocation_key(key: &str) -> bool {
    split_key(key).is_some()
}

/// The prefix of every revocation of `tenant`.
pub fn tenant_revocations_prefix(tenant: &PublicKeyBytes) -> String {
    format!("tenant/{}/{REVOCATION_KIND}/", tenant.to_hex())
}

/// Decodes and checks a live revocation entry; `now_ms` is the receiving node's clock.
/// The entry's signature and owner are the registry's to check (see `DefaultPolicy`).
pub fn parse_revocation(entry: &Entry, now_ms: u64) -> Result<Revocation, RevocationError> {
    let (_, node_text, scope_text) =
        split_key(&entry.key).ok_or(RevocationError::NotARevocationKey)?;
    let node: NodeId = node_text.parse().map_err(|_| RevocationError::BadKey)?;
    let scope = RevokedScope::parse(scope_text).ok_or(RevocationError::BadKey)?;
    let value = entry
        .value
        .as_deref()
        .ok_or_else(|| RevocationError::Malformed("a tombstone".into()))?;
    if value.len() > MAX_REVOCATION_RECORD_BYTES {
        return Err(RevocationError::TooLarge { len: value.len() });
    }
    let record: Record =
        serde_json::from_slice(value).map_err(|e| RevocationError::Malformed(e.to_string()))?;
    if record.v != REVOCATION_RECORD_VERSION {
        return Err(RevocationError::UnknownVersion(record.v));
    }
    if record.kind != REVOCATION_RECORD_KIND
        || record.node != node.to_string()
        || record.scope != scope_text
    {
        return Err(RevocationError::DoesNotMatchKey);
    }
    let latest = now_ms.saturating_add(MAX_REVOCATION_CLOCK_SKEW_MS);
    let dated = entry.hlc.wall_ms.max(record.after_ms);
    if dated > latest {
        return Err(RevocationError::InTheFuture {
            ahead_ms: dated.saturating_sub(now_ms),
        });
    }
    Ok(Revocation {
        tenant: entry.owner,
        node,
        scope,
        after_ms: record.after_ms,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use xnode_types::{Hlc, SecretKey};

    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn signed(tenant: &SecretKey, node: &NodeId, scope: &RevokedScope, after_ms: u64) -> Entry {
        Entry::sign(
            tenant,
            revocation_key(&tenant.public(), node, scope),
            Some(revocation_record(node, scope, after_ms).into_bytes()),
            Hlc::new(after_ms, 0),
        )
        .unwrap()
    }

    #[test]
    fn a_revocation_round_trips_and_names_what_it_binds() {
        let tenant = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        for scope in [
            RevokedScope::All,
            RevokedScope::S3Registration("0123456789abcdef0123456789abcdef".into()),
        ] {
            let entry = signed(&tenant, &node, &scope, NOW);
            assert!(entry.verify());
            let r = parse_revocation(&entry, NOW).unwrap();
            assert_eq!(r.tenant, tenant.public());
            assert_eq!((r.node, r.scope, r.after_ms), (node, scope, NOW));
        }
    }

    #[test]
    fn a_record_that_disagrees_with_its_key_or_is_malformed_is_refused() {
        let tenant = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        let other = SecretKey::generate().node_id();
        let key = revocation_key(&tenant.public(), &node, &RevokedScope::All);
        let with_value = |value: &str| {
            Entry::sign(
                &tenant,
                key.clone(),
                Some(value.as_bytes().to_vec()),
                Hlc::new(NOW, 0),
            )
            .unwrap()
        };
        // A record naming another node than its key: a tenant's signature over one
        // revocation can never be read as another's.
        let wrong_node = with_value(&revocation_record(&other, &RevokedScope::All, NOW));
        assert_eq!(
            parse_revocation(&wrong_node, NOW),
            Err(RevocationError::DoesNotMatchKey)
        );
        let wrong_scope = with_value(&revocation_record(
            &node,
            &RevokedScope::S3Registration("0123456789abcdef0123456789abcdef".into()),
            NOW,
        ));
        assert_eq!(
            parse_revocation(&wrong_scope, NOW),
            Err(RevocationError::DoesNotMatchKey)
        );
        let future_version = with_value(
            &revocation_record(&node, &RevokedScope::All, NOW).replace("\"v\":1", "\"v\":2"),
        );
        assert_eq!(
            parse_revocation(&future_version, NOW),
            Err(RevocationError::UnknownVersion(2))
        );
        assert!(matches!(
            parse_revocation(&with_value("not json"), NOW),
            Err(RevocationError::Malformed(_))
        ));
        let huge = with_value(&"x".repeat(MAX_REVOCATION_RECORD_BYTES + 1));
        assert!(matches!(
            parse_revocation(&huge, NOW),
            Err(RevocationError::TooLarge { .. })
        ));
        // Keys that do not name a node and a known scope.
        for bad in [
            format!("tenant/{}/revoke/not-a-node/all", tenant.public().to_hex()),
            format!("tenant/{}/revoke/{node}/s3-XYZ", tenant.public().to_hex()),
            format!(
                "tenant/{}/revoke/{node}/everything",
                tenant.public().to_hex()
            ),
        ] {
            let entry = Entry::sign(
                &tenant,
                bad,
                Some(revocation_record(&node, &RevokedScope::All, NOW).into_bytes()),
                Hlc::new(NOW, 0),
            )
            .unwrap();
            assert_eq!(parse_revocation(&entry, NOW), Err(RevocationError::BadKey));
        }
    }

    #[test]
    fn a_revocation_dated_ahead_of_the_clock_is_refused() {
        let tenant = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        let ahead = signed(
            &tenant,
            &node,
            &RevokedScope::All,
            NOW + MAX_REVOCATION_CLOCK_SKEW_MS + 1,
        );
        assert!(matches!(
            parse_revocation(&ahead, NOW),
            Err(RevocationError::InTheFuture { .. })
        ));
        // An old revocation stays valid: a node that joins later must learn it too.
        let old = signed(&tenant, &node, &RevokedScope::All, NOW - 365 * 86_400_000);
        assert!(parse_revocation(&old, NOW).is_ok());
    }

    fn registry(dir: &tempfile::TempDir) -> crate::Registry {
        crate::Registry::open(
            xnode_db::Db::open(&dir.path().join("db")).unwrap(),
            std::sync::Arc::new(xnode_types::HlcClock::new()),
            Box::new(crate::DefaultPolicy),
            crate::RegistryMetrics::default(),
        )
        .unwrap()
    }

    fn now() -> u64 {
        xnode_types::unix_ms()
    }

    #[test]
    fn only_the_tenant_can_make_or_remove_its_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(&dir);
        let tenant = SecretKey::generate();
        let peer = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        let at = now();

        // A peer signing a revocation into the tenant's namespace: refused by the policy.
        let key = revocation_key(&tenant.public(), &node, &RevokedScope::All);
        let by_peer = Entry::sign(
            &peer,
            key.clone(),
            Some(revocation_record(&node, &RevokedScope::All, at).into_bytes()),
            Hlc::new(at, 0),
        )
        .unwrap();
        assert!(matches!(
            reg.apply_remote(by_peer),
            Err(crate::RegistryError::Forbidden { .. })
        ));
        // A forged one (the tenant's signature over another time): refused.
        let mut forged = signed(&tenant, &node, &RevokedScope::All, at);
        forged.value = Some(revocation_record(&node, &RevokedScope::All, at + 1).into_bytes());
        assert!(matches!(
            reg.apply_remote(forged),
            Err(crate::RegistryError::BadSignature { .. })
        ));
        assert_eq!(
            reg.revoked_after(&tenant.public(), &node, &RevokedScope::All),
            None
        );

        let genuine = signed(&tenant, &node, &RevokedScope::All, at);
        reg.apply_remote(genuine.clone()).unwrap();
        assert_eq!(
            reg.revoked_after(&tenant.public(), &node, &RevokedScope::All),
            Some(at)
        );
        // Another tenant's view of the same node is untouched.
        assert_eq!(
            reg.revoked_after(&peer.public(), &node, &RevokedScope::All),
            None
        );

        // A peer cannot remove it: a tombstone needs the tenant's signature.
        let removal = Entry::sign(&peer, key.clone(), None, Hlc::new(at + 10, 0)).unwrap();
        assert!(reg.apply_remote(removal).is_err());
        // Replaying an older record of the tenant (say, revoking later) changes nothing.
        let older = signed(&tenant, &node, &RevokedScope::All, at - 5_000);
        assert_eq!(reg.apply_remote(older).unwrap(), crate::Applied::Stale);
        assert_eq!(reg.apply_remote(genuine).unwrap(), crate::Applied::Stale);
        assert_eq!(
            reg.revoked_after(&tenant.public(), &node, &RevokedScope::All),
            Some(at)
        );
        // The tenant's own later record supersedes it (documented: last writer wins).
        let newer = Entry::sign(
            &tenant,
            key,
            Some(revocation_record(&node, &RevokedScope::All, at - 60_000).into_bytes()),
            Hlc::new(at + 1, 0),
        )
        .unwrap();
        reg.apply_remote(newer).unwrap();
        assert_eq!(
            reg.revoked_after(&tenant.public(), &node, &RevokedScope::All),
            Some(at - 60_000)
        );
    }

    #[test]
    fn a_tenant_holds_a_bounded_number_of_revocations() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(&dir);
        let tenant = SecretKey::generate();
        let at = now();
        let mut nodes = Vec::new();
        for _ in 0..MAX_REVOCATIONS_PER_TENANT {
            let node = SecretKey::generate().node_id();
            reg.apply_remote(signed(&tenant, &node, &RevokedScope::All, at))
                .unwrap();
            nodes.push(node);
        }
        let one_more = SecretKey::generate().node_id();
        assert!(matches!(
            reg.apply_remote(signed(&tenant, &one_more, &RevokedScope::All, at)),
            Err(crate::RegistryError::TooManyRevocations { .. })
        ));
        // Updating a held revocation still passes, and so does another tenant's.
        let update = Entry::sign(
            &tenant,
            revocation_key(&tenant.public(), &nodes[0], &RevokedScope::All),
            Some(revocation_record(&nodes[0], &RevokedScope::All, at - 1).into_bytes()),
            Hlc::new(at + 1, 0),
        )
        .unwrap();
        reg.apply_remote(update).unwrap();
        let other = SecretKey::generate();
        reg.apply_remote(signed(&other, &one_more, &RevokedScope::All, at))
            .unwrap();
        // Removing one makes room.
        let removal = Entry::sign(
            &tenant,
            revocation_key(&tenant.public(), &nodes[1], &RevokedScope::All),
            None,
            Hlc::new(at + 1, 0),
        )
        .unwrap();
        reg.apply_remote(removal).unwrap();
        reg.apply_remote(signed(&tenant, &one_more, &RevokedScope::All, at))
            .unwrap();
    }
}
