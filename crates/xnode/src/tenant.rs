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

/// The body of a signed request: its BLAKE3 hash is part of what the request signs.
pub enum Payload {
    Empty,
    /// Bytes sent as they are (a WebAssembly module, for example).
    Bytes(Vec<u8>),
    /// A JSON document (sent with `content-type: application/json`).
    Json(Vec<u8>),
    /// A streamed body whose hash the caller computed beforehand (a file upload).
    Stream {
        blake3: String,
        body: reqwest::Body,
    },
}

impl Payload {
    /// A JSON payload of `value`.
    pub fn json<T: Serialize>(value: &T) -> anyhow::Result<Self> {
        Ok(Payload::Json(serde_json::to_vec(value)?))
    }
}

/// The BLAKE3 hash (hex) of a file's contents, for a signed streamed upload. The file is
/// read twice (once here, once while it is sent), which keeps memory flat for large files.
pub async fn file_blake3(path: &Path) -> anyhow::Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(file)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await
    .context("the hashing task failed")?
}

/// An HTTP client that signs every request with a tenant key (request signing v2).
pub struct SignedClient {
    pub http: reqwest::Client,
    pub api: String,
    pub key: SecretKey,
    /// The id of the node at `api`, which every request signs; asked once from the
    /// public `GET /v1/node`.
    node_id: std::sync::OnceLock<String>,
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
            node_id: std::sync::OnceLock::new(),
        })
    }

    /// The id of the node this client talks to, asked once and remembered.
    pub async fn node_id(&self) -> anyhow::Result<String> {
        if let Some(id) = self.node_id.get() {
            return Ok(id.clone());
        }
        #[derive(Deserialize)]
        struct NodeView {
            id: String,
        }
        let url = format!("{}/v1/node", self.api);
        let response = self.http.get(&url).send().await.with_context(|| {
            format!(
                "cannot reach the node at {} (is it running? pass --api URL)",
                self.api
            )
        })?;
        if !response.status().is_success() {
            anyhow::bail!("{url} answered {}", response.status());
        }
        let view: NodeView = response
            .json()
            .await
            .with_context(|| format!("{url} did not describe a node"))?;
        // Another task may have asked at the same time; both got the same answer.
        let _ = self.node_id.set(view.id.clone());
        Ok(view.id)
    }

    /// A request to `path` with `query` (both percent-encoded already), signed for the
    /// node at `api` together with its `payload` and, if `with_data_key`, the tenant's
    /// data key header.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        payload: Payload,
        with_data_key: bool,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let node = self.node_id().await?;
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
        let content_blake3 = match &payload {
            Payload::Empty => xnode_types::request_auth::EMPTY_BODY_BLAKE3.to_owned(),
            Payload::Bytes(bytes) | Payload::Json(bytes) => {
                xnode_types::request_auth::content_hash(bytes)
            }
            Payload::Stream { blake3, .. } => blake3.clone(),
        };
        let data_key = with_data_key.then(|| data_key(&self.key).to_hex());
        let signed = xnode_types::request_auth::RequestToSign {
            method: method.as_str(),
            path,
            query,
            node: &node,
            content_blake3: &content_blake3,
            data_key: data_key.as_deref(),
        };
        let mut builder = self.http.request(method.clone(), url);
        for (name, value) in signed.sign(&self.key, now_ms(), &nonce) {
            builder = builder.header(name, value);
        }
        Ok(match payload {
            Payload::Empty => builder,
            Payload::Bytes(bytes) => builder.body(bytes),
            Payload::Json(bytes) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
            Payload::Stream { body, .. } => builder.body(body),
        })
    }
}
