//! Tenant keys on the user's machine, and the signed HTTP client that uses them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use xnode_store::DataKey;
use xnode_types::SecretKey;
use xnode_wire::{Versioned, kinds};

#[derive(Serialize, Deserialize)]
struct TenantKeyFile {
    seed: [u8; 32],
}

impl Versioned for TenantKeyFile {
    const KIND_TAG: u8 = kinds::TENANT_KEY_FILE;
    const KIND_NAME: &'static str = "tenant key file";
    const VERSION: u8 = 1;
}

/// Where the tenant key lives unless `--tenant-key` or `XNODE_TENANT_KEY` says otherwise.
pub fn default_key_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("xnode")
        .join("tenant.key")
}

/// Creates a new tenant key file (refusing to overwrite one unless `force`).
pub fn create(path: &Path, force: bool) -> anyhow::Result<SecretKey> {
    if path.exists() && !force {
        anyhow::bail!(
            "{} already exists; pass --force to replace it (its buckets and objects become unreachable)",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = SecretKey::generate();
    let bytes = xnode_wire::encode(&TenantKeyFile { seed: key.seed() })?;
    xnode_node::identity::write_private(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

/// Loads the tenant key at `path`.
pub fn load(path: &Path) -> anyhow::Result<SecretKey> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "no tenant key at {} (create one with `xnode key new`)",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot read the tenant key {}: {e}", path.display())
        }
    })?;
    let file: TenantKeyFile = xnode_wire::decode(&bytes, 1024)
        .map_err(|e| anyhow::anyhow!("{} is not a tenant key: {e}", path.display()))?;
    Ok(SecretKey::from_seed(&file.seed)?)
}

/// The data key a tenant's edge uses to encrypt its objects.
pub fn data_key(key: &SecretKey) -> DataKey {
    DataKey::derive(&key.seed())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An HTTP client that signs every request with a tenant key.
pub struct SignedClient {
    pub http: reqwest::Client,
    pub api: String,
    pub key: SecretKey,
}

impl SignedClient {
    pub fn new(api: &str, key: SecretKey) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("HTTP client")?;
        Ok(Self {
            http,
            api: api.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// A request to `path_and_query` (which must be percent-encoded already), signed.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
    ) -> reqwest::RequestBuilder {
        let nonce: String = {
            use rand::Rng;
            let bytes: [u8; 16] = rand::thread_rng().r#gen();
            hex::encode(bytes)
        };
        let url = if query.is_empty() {
            format!("{}{path}", self.api)
        } else {
            format!("{}{path}?{query}", self.api)
        };
        let mut builder = self.http.request(method.clone(), url);
        for (name, value) in xnode_types::request_auth::sign_request(
            &self.key,
            method.as_str(),
            path,
            query,
            now_ms(),
            &nonce,
        ) {
            builder = builder.header(name, value);
        }
        builder
    }

    pub fn with_data_key(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder.header(
            xnode_types::request_auth::HEADER_DATA_KEY,
            data_key(&self.key).to_hex(),
        )
    }
}
