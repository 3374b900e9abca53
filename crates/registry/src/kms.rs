//! Tenant-scoped KMS keys: the named keys SSE-KMS objects are encrypted under.
//!
//! A KMS key is a registry entry `tenant/<T>/kms-key/<id>`, signed by tenant `T` (the
//! default policy lets only `T` write under `tenant/<T>/`), whose value is a small
//! versioned JSON record that repeats the id, so the signed bytes name the tenant, the key
//! and its state on their own:
//!
//! ```json
//! {"v":1,"kind":"kms-key","id":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","alias":"photos","state":"enabled","created_ms":1764200000000}
//! ```
//!
//! The record holds no key material: the key an object is encrypted under is derived at
//! the tenant's edge from the tenant's data key and the key id (see the S3 gateway's
//! `sse` module), so a KMS key exists only as this signed statement that the tenant made
//! it, and disabling it is a policy check every edge makes, not a destruction of keys.
//! A node checks a record on arrival from a peer exactly as on the HTTP route
//! ([`parse_kms_key`]), so no peer can plant a malformed one.

use serde::{Deserialize, Serialize};
use xnode_types::PublicKeyBytes;

use crate::Entry;

/// The kind segment of KMS key entries, after `tenant/<T>/`.
pub const KMS_KEY_KIND: &str = "kms-key";
/// The version of the KMS key record this code writes and reads.
pub const KMS_KEY_RECORD_VERSION: u32 = 1;
/// The `kind` field of every KMS key record: says what the signed value is.
pub const KMS_KEY_RECORD_KIND: &str = "kms-key";
/// Largest KMS key record accepted (the JSON value).
pub const MAX_KMS_KEY_RECORD_BYTES: usize = 512;
/// Longest alias.
pub const MAX_KMS_ALIAS_LEN: usize = 64;
/// Length of a key id: a UUID in its 8-4-4-4-12 text form.
pub const KMS_KEY_ID_LEN: usize = 36;

/// Whether a KMS key may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KmsKeyState {
    /// New objects may be written under it and its objects read.
    Enabled,
    /// Refused for writes and reads of its objects (`KMS.DisabledException`) until the
    /// tenant enables it again.
    Disabled,
}

impl KmsKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }
}

/// The value of a KMS key entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsKeyRecord {
    /// Format version of this record.
    pub v: u32,
    /// Always [`KMS_KEY_RECORD_KIND`].
    pub kind: String,
    /// The key id, as in the entry's key.
    pub id: String,
    /// A name the tenant may use instead of the id (`alias/<name>` in S3 requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub state: KmsKeyState,
    /// When the tenant created the key (Unix ms); kept by updates.
    pub created_ms: u64,
}

/// Why a KMS key entry is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KmsKeyError {
    #[error("the record is over {MAX_KMS_KEY_RECORD_BYTES} bytes")]
    TooLarge,
    #[error("the record does not decode: {0}")]
    Malformed(String),
    #[error("record version {0} is not {KMS_KEY_RECORD_VERSION}")]
    Version(u32),
    #[error("the record's kind is not {KMS_KEY_RECORD_KIND:?}")]
    Kind,
    #[error("{0:?} is not a key id (a UUID: 8-4-4-4-12 lowercase hex digits)")]
    BadId(String),
    #[error(
        "the alias must be 1 to {MAX_KMS_ALIAS_LEN} letters, digits, '-', '_' or '/', and not start with \"aws/\""
    )]
    BadAlias,
    #[error("the entry's key is not tenant/<signer>/kms-key/<the record's id>")]
    KeyMismatch,
    #[error("the record is dated after its entry's clock")]
    FromTheFuture,
}

/// Whether `id` has the form of a key id: a UUID, lowercase.
pub fn is_valid_key_id(id: &str) -> bool {
    id.len() == KMS_KEY_ID_LEN
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Whether `alias` may name a key. `aws/` is AWS's namespace for its own keys.
pub fn is_valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= MAX_KMS_ALIAS_LEN
        && !alias.starts_with("aws/")
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/'))
}

/// A fresh random key id (UUID version 4 form).
pub fn new_key_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The registry key of tenant `tenant`'s KMS key `id`.
pub fn kms_key_key(tenant: &PublicKeyBytes, id: &str) -> String {
    format!("{}{id}", tenant_kms_keys_prefix(tenant))
}

/// The prefix of every KMS key entry of `tenant`.
pub fn tenant_kms_keys_prefix(tenant: &PublicKeyBytes) -> String {
    format!("tenant/{}/{KMS_KEY_KIND}/", tenant.to_hex())
}

/// Whether `key` is a KMS key entry's key (of any tenant).
pub fn is_kms_key_key(key: &str) -> bool {
    key.strip_prefix("tenant/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, rest)| {
            rest.strip_prefix(KMS_KEY_KIND)
                .is_some_and(|r| r.starts_with('/'))
        })
}

/// The JSON text of a record (what the tenant signs as the entry's value).
pub fn kms_key_record(
    id: &str,
    alias: Option<&str>,
    state: KmsKeyState,
    created_ms: u64,
) -> Result<String, KmsKeyError> {
    let record = KmsKeyRecord {
        v: KMS_KEY_RECORD_VERSION,
        kind: KMS_KEY_RECORD_KIND.to_owned(),
        id: id.to_owned(),
        alias: alias.map(str::to_owned),
        state,
        created_ms,
    };
    check_record(&record)?;
    serde_json::to_string(&record).map_err(|e| KmsKeyError::Malformed(e.to_string()))
}

fn check_record(record: &KmsKeyRecord) -> Result<(), KmsKeyError> {
    if record.v != KMS_KEY_RECORD_VERSION {
        return Err(KmsKeyError::Version(record.v));
    }
    if record.kind != KMS_KEY_RECORD_KIND {
        return Err(KmsKeyError::Kind);
    }
    if !is_valid_key_id(&record.id) {
        return Err(KmsKeyError::BadId(record.id.chars().take(80).collect()));
    }
    if record.alias.as_deref().is_some_and(|a| !is_valid_alias(a)) {
        return Err(KmsKeyError::BadAlias);
    }
    Ok(())
}

/// The record of a live KMS key entry, checked against the entry that carries it: it
/// decodes, is of this version and kind, sits under its signer's key for its id, and is
/// not dated after the entry. The same checks apply to an entry from a peer and from the
/// HTTP route.
pub fn parse_kms_key(entry: &Entry) -> Result<KmsKeyRecord, KmsKeyError> {
    let value = entry
        .value
        .as_deref()
        .ok_or_else(|| KmsKeyError::Malformed("a tombstone holds no key".into()))?;
    if value.len() > MAX_KMS_KEY_RECORD_BYTES {
        return Err(KmsKeyError::TooLarge);
    }
    let record: KmsKeyRecord =
        serde_json::from_slice(value).map_err(|e| KmsKeyError::Malformed(e.to_string()))?;
    check_record(&record)?;
    if entry.key != kms_key_key(&entry.owner, &record.id) {
        return Err(KmsKeyError::KeyMismatch);
    }
    if record.created_ms > entry.hlc.wall_ms {
        return Err(KmsKeyError::FromTheFuture);
    }
    Ok(record)
}

impl crate::Registry {
    /// Tenant `tenant`'s KMS keys (live entries that check), by id.
    pub fn kms_keys(&self, tenant: &PublicKeyBytes) -> Vec<KmsKeyRecord> {
        self.list(&tenant_kms_keys_prefix(tenant))
            .iter()
            .filter(|e| e.owner == *tenant)
            .filter_map(|e| parse_kms_key(e).ok())
            .collect()
    }

    /// Tenant `tenant`'s KMS key named by `name`: a key id, or `alias/<alias>` (when two
    /// keys carry one alias, the oldest, so every node resolves it alike). `None` for a key
    /// the tenant never made (or deleted): another tenant's key id is `None` too.
    pub fn kms_key(&self, tenant: &PublicKeyBytes, name: &str) -> Option<KmsKeyRecord> {
        if let Some(alias) = name.strip_prefix("alias/") {
            return self
                .kms_keys(tenant)
                .into_iter()
                .filter(|k| k.alias.as_deref() == Some(alias))
                .min_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        }
        if !is_valid_key_id(name) {
            return None;
        }
        let entry = self.get(&kms_key_key(tenant, name))?;
        (entry.owner == *tenant)
            .then(|| parse_kms_key(&entry).ok())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use xnode_types::{Hlc, SecretKey};

    use super::*;

    fn signed(signer: &SecretKey, key: String, value: &str, wall_ms: u64) -> Entry {
        Entry::sign(
            signer,
            key,
            Some(value.as_bytes().to_vec()),
            Hlc::new(wall_ms, 0),
        )
        .unwrap()
    }

    #[test]
    fn ids_and_aliases_are_checked() {
        for _ in 0..20 {
            assert!(is_valid_key_id(&new_key_id()));
        }
        assert_ne!(new_key_id(), new_key_id());
        for bad in [
            "",
            "testkey-1",
            "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c4b5a-6978-8796-a5b4c3d2e1f0-",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
        ] {
            assert!(!is_valid_key_id(bad), "{bad:?}");
        }
        assert!(is_valid_alias("photos/2026_a-b"));
        for bad in ["", "aws/s3", "with space", &"a".repeat(65), "é"] {
            assert!(!is_valid_alias(bad), "{bad:?}");
        }
        assert!(is_kms_key_key("tenant/ab/kms-key/x"));
        assert!(!is_kms_key_key("tenant/ab/kms-keys/x"));
        assert!(!is_kms_key_key("tenant/ab/bucket/kms-key"));
    }

    #[test]
    fn a_record_binds_its_signer_and_id() {
        let tenant = SecretKey::generate();
        let other = SecretKey::generate();
        let id = new_key_id();
        let text = kms_key_record(&id, Some("photos"), KmsKeyState::Enabled, 1_000).unwrap();
        let entry = signed(&tenant, kms_key_key(&tenant.public(), &id), &text, 1_000);
        let record = parse_kms_key(&entry).unwrap();
        assert_eq!(record.id, id);
        assert_eq!(record.alias.as_deref(), Some("photos"));
        assert_eq!(record.state, KmsKeyState::Enabled);

        // Under another tenant's key, or another id's: refused.
        let moved = signed(&tenant, kms_key_key(&other.public(), &id), &text, 1_000);
        assert_eq!(parse_kms_key(&moved), Err(KmsKeyError::KeyMismatch));
        let renamed = signed(
            &tenant,
            kms_key_key(&tenant.public(), &new_key_id()),
            &text,
            1_000,
        );
        assert_eq!(parse_kms_key(&renamed), Err(KmsKeyError::KeyMismatch));
        // Dated after its clock, another version, unknown fields, junk: refused.
        let early = signed(&tenant, kms_key_key(&tenant.public(), &id), &text, 999);
        assert_eq!(parse_kms_key(&early), Err(KmsKeyError::FromTheFuture));
        let v2 = text.replace("\"v\":1", "\"v\":2");
        let v2 = signed(&tenant, kms_key_key(&tenant.public(), &id), &v2, 1_000);
        assert_eq!(parse_kms_key(&v2), Err(KmsKeyError::Version(2)));
        let extra = text.replace("\"v\":1", "\"v\":1,\"material\":\"00\"");
        let extra = signed(&tenant, kms_key_key(&tenant.public(), &id), &extra, 1_000);
        assert!(matches!(
            parse_kms_key(&extra),
            Err(KmsKeyError::Malformed(_))
        ));
        let junk = signed(&tenant, kms_key_key(&tenant.public(), &id), "{", 1_000);
        assert!(matches!(
            parse_kms_key(&junk),
            Err(KmsKeyError::Malformed(_))
        ));
        assert_eq!(
            kms_key_record("testkey-1", None, KmsKeyState::Enabled, 1),
            Err(KmsKeyError::BadId("testkey-1".into()))
        );
        assert_eq!(
            kms_key_record(&id, Some("aws/s3"), KmsKeyState::Enabled, 1),
            Err(KmsKeyError::BadAlias)
        );
    }

    #[test]
    fn a_peer_cannot_plant_a_bad_key_and_lookups_stay_in_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let reg = crate::Registry::open(
            xnode_db::Db::open(&dir.path().join("db")).unwrap(),
            std::sync::Arc::new(xnode_types::HlcClock::new()),
            Box::new(crate::DefaultPolicy),
            crate::RegistryMetrics::default(),
        )
        .unwrap();
        let tenant = SecretKey::generate();
        let other = SecretKey::generate();
        let id = new_key_id();
        let key = kms_key_key(&tenant.public(), &id);
        // A malformed record arriving from a peer is refused like one from a client.
        let bad = signed(&tenant, key.clone(), "{\"v\":1}", 1_000);
        assert!(matches!(
            reg.apply_remote(bad),
            Err(crate::RegistryError::BadKmsKey { .. })
        ));
        let text = kms_key_record(&id, Some("photos"), KmsKeyState::Enabled, 1_000).unwrap();
        reg.apply_remote(signed(&tenant, key, &text, 1_000))
            .unwrap();
        assert_eq!(reg.kms_key(&tenant.public(), &id).unwrap().id, id);
        assert_eq!(
            reg.kms_key(&tenant.public(), "alias/photos").unwrap().id,
            id
        );
        assert!(reg.kms_key(&tenant.public(), "alias/other").is_none());
        assert!(reg.kms_key(&tenant.public(), "testkey-1").is_none());
        // Another tenant names the same id: not its key.
        assert!(reg.kms_key(&other.public(), &id).is_none());
        assert!(reg.kms_key(&other.public(), "alias/photos").is_none());
        assert_eq!(reg.kms_keys(&tenant.public()).len(), 1);
        assert!(reg.kms_keys(&other.public()).is_empty());
    }
}
