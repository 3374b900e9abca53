//! S3 access keys, kept in this node's local database (never in the registry).
//!
//! SigV4 needs the gateway to know the secret, and the gateway encrypts with the tenant's
//! data key, so a gateway is trusted with both. A key is therefore registered only on the
//! nodes the tenant chooses (`xnode key s3 create --api ...`), each of which stores it in
//! its own redb table `s3_keys`: access key id → [`AccessKey`], wire-encoded with a version
//! (kind [`kinds::S3_ACCESS_KEY`]).

use serde::{Deserialize, Serialize};
use xnode_db::{Db, Table};
use xnode_store::DataKey;
use xnode_types::{PublicKeyBytes, SecretKey};
use xnode_wire::{Versioned, kinds};

const TABLE: Table = Table("s3_keys");
/// The largest encoded key record accepted.
pub const MAX_RECORD_BYTES: usize = 4096;
/// Keys per tenant per node, so a tenant cannot fill a node's database.
pub const MAX_KEYS_PER_TENANT: usize = 100;

/// Why an access-key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("S3 key database: {0}")]
    Db(#[from] xnode_db::DbError),
    #[error("S3 key record: {0}")]
    Wire(#[from] xnode_wire::WireError),
    #[error("no S3 access key {0:?} on this node")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// One S3 access key: who it belongs to and what the gateway needs to act for them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// The access key id (`XN` + 18 upper-case letters and digits, as AWS ids look).
    pub id: String,
    /// The secret access key (40 characters), the SigV4 signing secret.
    pub secret: String,
    /// The tenant the key acts for.
    pub tenant: PublicKeyBytes,
    /// The tenant's data key, to encrypt and decrypt object data.
    pub data_key: [u8; 32],
    /// The tenant's key seed, present when the tenant allowed bucket creation and deletion
    /// through S3 (a bucket claim must be signed by the tenant).
    pub tenant_seed: Option<[u8; 32]>,
    pub created_ms: u64,
    /// The tenant's signed `POST /v1/s3/keys` that registered the key on this node
    /// (format 2): the authority under which this node seals the object metadata it
    /// writes for S3 requests (see `xnode_store::seal`). Keys registered before have none,
    /// and cannot write until registered again.
    pub registration: Option<xnode_store::TenantRequestProof>,
}

/// Format 1 of [`AccessKey`]: no registration.
#[derive(Deserialize)]
struct AccessKeyV1 {
    id: String,
    secret: String,
    tenant: PublicKeyBytes,
    data_key: [u8; 32],
    tenant_seed: Option<[u8; 32]>,
    created_ms: u64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("bucket_admin", &self.tenant_seed.is_some())
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl Versioned for AccessKey {
    const KIND_TAG: u8 = kinds::S3_ACCESS_KEY;
    const KIND_NAME: &'static str = "S3 access key";
    // Version 2 added the registration.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        if version != 1 {
            return Err(xnode_wire::unsupported::<Self>(version));
        }
        let v1: AccessKeyV1 = xnode_wire::decode_body::<Self, _>(body)?;
        Ok(AccessKey {
            id: v1.id,
            secret: v1.secret,
            tenant: v1.tenant,
            data_key: v1.data_key,
            tenant_seed: v1.tenant_seed,
            created_ms: v1.created_ms,
            registration: None,
        })
    }
}

impl AccessKey {
    pub fn data_key(&self) -> DataKey {
        DataKey(self.data_key)
    }

    /// The tenant's signing key, if this access key may create and delete buckets.
    pub fn tenant_key(&self) -> Option<SecretKey> {
        self.tenant_seed
            .and_then(|seed| SecretKey::from_seed(&seed).ok())
    }

    pub fn bucket_admin(&self) -> bool {
        self.tenant_seed.is_some()
    }
}

fn random_text(alphabet: &[u8], len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// A fresh access key id (`XN` + 18 characters) and secret (40 characters).
pub fn generate_id_and_secret() -> (String, String) {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (
        format!("XN{}", random_text(UPPER, 18)),
        random_text(SECRET, 40),
    )
}

/// Access key ids: 16 to 128 upper-case letters and digits.
fn validate_id(id: &str) -> Result<(), KeysError> {
    if (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(KeysError::Invalid(
            "an access key id must be 16 to 128 upper-case letters and digits".into(),
        ))
    }
}

/// Secrets: 32 to 128 printable ASCII characters without spaces.
fn validate_secret(secret: &str) -> Result<(), KeysError> {
    if (32..=128).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(KeysError::Invalid(
            "a secret access key must be 32 to 128 printable characters without spaces".into(),
        ))
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This node's S3 access keys. Cheap to clone.
#[derive(Clone)]
pub struct S3Keys {
    db: Db,
}

impl std::fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Keys")
    }
}

impl S3Keys {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Creates and stores a key for `tenant`: `id_and_secret` if given (so one key can be
    /// registered on several nodes), else fresh random ones. `tenant_seed`, if given, must
    /// be the tenant's own key seed (it is checked against `tenant` and `data_key`).
    pub fn create(
        &self,
        tenant: PublicKeyBytes,
        data_key: DataKey,
        tenant_seed: Option<[u8; 32]>,
        id_and_secret: Option<(String, String)>,
    ) -> Result<AccessKey, KeysError> {
        self.create_registered(tenant, data_key, tenant_seed, id_and_secret, None)
    }

    /// [`S3Keys::create`], keeping the tenant's signed registration request (checked by
    /// the caller), which lets this node write the tenant's objects through S3.
    pub fn create_registered(
        &self,
        tenant: PublicKeyBytes,
        data_key: DataKey,
        tenant_seed: Option<[u8; 32]>,
        id_and_secret: Option<(String, String)>,
        registration: Option<xnode_store::TenantRequestProof>,
    ) -> Result<AccessKey, KeysError> {
        if let Some(seed) = &tenant_seed {
            let key = SecretKey::from_seed(seed)
                .map_err(|e| KeysError::Invalid(format!("bad tenant key seed: {e}")))?;
            if key.public() != tenant {
                return Err(KeysError::Invalid(
                    "the tenant key seed does not belong to the signing tenant".into(),
                ));
            }
            if DataKey::derive(seed) != data_key {
                return Err(KeysError::Invalid(
                    "the data key is not the one derived from the tenant key".into(),
                ));
            }
        }
        if self.list(&tenant)?.len() >= MAX_KEYS_PER_TENANT {
            return Err(KeysError::Invalid(format!(
                "this node already holds {MAX_KEYS_PER_TENANT} S3 keys for this tenant; remove some first"
            )));
        }
        let (id, secret) = match id_and_secret {
            Some((id, secret)) => {
                validate_id(&id)?;
                validate_secret(&secret)?;
                if let Some(existing) = self.get(&id)?
                    && (existing.tenant != tenant || existing.secret != secret)
                {
                    return Err(KeysError::Invalid(format!(
                        "access key id {id:?} is already in use on this node"
                    )));
                }
                (id, secret)
            }
            None => generate_id_and_secret(),
        };
        let key = AccessKey {
            id,
            secret,
            tenant,
            data_key: data_key.0,
            tenant_seed,
            created_ms: unix_ms(),
            registration,
        };
        let bytes = xnode_wire::encode(&key)?;
        self.db.put(TABLE, key.id.as_bytes(), &bytes)?;
        Ok(key)
    }

    /// The key with this id, if this node holds it.
    pub fn get(&self, id: &str) -> Result<Option<AccessKey>, KeysError> {
        match self.db.get(TABLE, id.as_bytes())? {
            Some(bytes) => Ok(Some(xnode_wire::decode(&bytes, MAX_RECORD_BYTES)?)),
            None => Ok(None),
        }
    }

    /// Every key of `tenant` on this node, oldest first.
    pub fn list(&self, tenant: &PublicKeyBytes) -> Result<Vec<AccessKey>, KeysError> {
        let mut out: Vec<AccessKey> = self
            .db
            .scan_prefix(TABLE, b"", usize::MAX)?
            .into_iter()
            .filter_map(|(_, v)| xnode_wire::decode::<AccessKey>(&v, MAX_RECORD_BYTES).ok())
            .filter(|k| k.tenant == *tenant)
            .collect();
        out.sort_by_key(|k| (k.created_ms, k.id.clone()));
        Ok(out)
    }

    /// Every tenant with a key on this node (the tenants that chose it as an edge).
    pub fn tenants(&self) -> Result<std::collections::BTreeSet<PublicKeyBytes>, KeysError> {
        Ok(self
            .db
            .scan_prefix(TABLE, b"", usize::MAX)?
            .into_iter()
            .filter_map(|(_, v)| xnode_wire::decode::<AccessKey>(&v, MAX_RECORD_BYTES).ok())
            .map(|k| k.tenant)
            .collect())
    }

    /// Deletes `tenant`'s key `id`; another tenant's key is reported as not found.
    pub fn delete(&self, tenant: &PublicKeyBytes, id: &str) -> Result<(), KeysError> {
        match self.get(id)? {
            Some(key) if key.tenant == *tenant => {
                self.db.delete(TABLE, id.as_bytes())?;
                Ok(())
            }
            _ => Err(KeysError::NotFound(id.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, S3Keys) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.redb")).unwrap();
        (dir, S3Keys::new(db))
    }

    #[test]
    fn create_get_list_delete_and_isolation() {
        let (_dir, keys) = keys();
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let ka = keys
            .create(a.public(), DataKey::derive(&a.seed()), Some(a.seed()), None)
            .unwrap();
        let kb = keys
            .create(b.public(), DataKey::derive(&b.seed()), None, None)
            .unwrap();
        assert!(ka.id.starts_with("XN") && ka.id.len() == 20);
        assert_eq!(ka.secret.len(), 40);
        assert_eq!(keys.get(&ka.id).unwrap().unwrap(), ka);
        assert!(ka.bucket_admin() && !kb.bucket_admin());
        assert_eq!(ka.tenant_key().unwrap().public(), a.public());
        assert_eq!(keys.list(&a.public()).unwrap(), vec![ka.clone()]);
        // Debug output never shows secrets.
        let debug = format!("{ka:?}");
        assert!(!debug.contains(&ka.secret));
        // B cannot delete A's key.
        assert!(matches!(
            keys.delete(&b.public(), &ka.id),
            Err(KeysError::NotFound(_))
        ));
        keys.delete(&a.public(), &ka.id).unwrap();
        assert!(keys.get(&ka.id).unwrap().is_none());
        assert!(keys.get(&kb.id).unwrap().is_some());
    }

    #[test]
    fn a_seed_must_match_the_tenant_and_data_key() {
        let (_dir, keys) = keys();
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        assert!(
            keys.create(a.public(), DataKey::derive(&b.seed()), Some(b.seed()), None)
                .is_err()
        );
        assert!(
            keys.create(a.public(), DataKey::derive(&b.seed()), Some(a.seed()), None)
                .is_err()
        );
    }

    #[test]
    fn a_chosen_id_and_secret_are_kept_and_not_stolen() {
        let (_dir, keys) = keys();
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let (id, secret) = generate_id_and_secret();
        let pair = Some((id.clone(), secret.clone()));
        let k = keys
            .create(a.public(), DataKey::derive(&a.seed()), None, pair.clone())
            .unwrap();
        assert_eq!(
            (k.id.as_str(), k.secret.as_str()),
            (id.as_str(), secret.as_str())
        );
        // Registering the same key again is fine; another tenant cannot take the id.
        keys.create(a.public(), DataKey::derive(&a.seed()), None, pair.clone())
            .unwrap();
        assert!(
            keys.create(b.public(), DataKey::derive(&b.seed()), None, pair)
                .is_err()
        );
        assert!(
            keys.create(
                a.public(),
                DataKey::derive(&a.seed()),
                None,
                Some(("short".into(), secret))
            )
            .is_err()
        );
    }
}
