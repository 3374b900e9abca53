//! Registry entries: owner-signed, HLC-stamped values (or tombstones) under a string key.

use serde::{Deserialize, Serialize};
use xnode_types::{Hlc, PublicKeyBytes, SignatureBytes, Signer};
use xnode_wire::{Versioned, WireError, kinds};

use crate::RegistryError;

/// Domain separation for registry signatures, so they can never be replayed as another
/// kind of signed message.
const SIGNING_DOMAIN: &[u8] = b"xnode/registry-entry/v1";

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 512;

/// One replicated key. `value == None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub hlc: Hlc,
    pub owner: PublicKeyBytes,
    pub signature: SignatureBytes,
}

/// The total order used by last-writer-wins: clock first, then owner, then signature bytes,
/// so that even two writes with equal clocks resolve the same way everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub hlc: Hlc,
    pub owner: [u8; 32],
    pub sig_prefix: [u8; 16],
}

impl Versioned for Entry {
    const KIND_TAG: u8 = kinds::REGISTRY_ENTRY;
    const KIND_NAME: &'static str = "registry entry";
    const VERSION: u8 = 1;
}

/// The bytes an owner signs: a short text, so that any client (the CLI, a browser) can
/// produce it without this crate's binary encoding. The value is covered by its BLAKE3
/// hash.
pub fn signing_bytes(
    key: &str,
    value: Option<&[u8]>,
    hlc: Hlc,
    owner: &PublicKeyBytes,
) -> Result<Vec<u8>, WireError> {
    let value = match value {
        Some(v) => format!("value:{}", blake3::hash(v).to_hex()),
        None => "tombstone".to_owned(),
    };
    let mut out = SIGNING_DOMAIN.to_vec();
    out.extend_from_slice(
        format!(
            "\n{key}\n{}\n{}\n{}\n{value}",
            hlc.wall_ms,
            hlc.logical,
            owner.to_hex()
        )
        .as_bytes(),
    );
    Ok(out)
}

impl Entry {
    /// Creates and signs an entry.
    pub fn sign(
        signer: &dyn Signer,
        key: String,
        value: Option<Vec<u8>>,
        hlc: Hlc,
    ) -> Result<Self, RegistryError> {
        validate_key(&key)?;
        let owner = signer.public();
        let signature = signer.sign(&signing_bytes(&key, value.as_deref(), hlc, &owner)?);
        Ok(Self {
            key,
            value,
            hlc,
            owner,
            signature,
        })
    }

    /// True when the signature matches the content and the owner.
    pub fn verify(&self) -> bool {
        match signing_bytes(&self.key, self.value.as_deref(), self.hlc, &self.owner) {
            Ok(bytes) => self.owner.verify(&bytes, &self.signature),
            Err(_) => false,
        }
    }

    pub fn version(&self) -> Version {
        let mut sig_prefix = [0u8; 16];
        sig_prefix.copy_from_slice(&self.signature.0[..16]);
        Version {
            hlc: self.hlc,
            owner: self.owner.0,
            sig_prefix,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Keys are non-empty printable ASCII without spaces, at most [`MAX_KEY_LEN`] bytes.
pub fn validate_key(key: &str) -> Result<(), RegistryError> {
    let bad = |reason: &str| RegistryError::BadKey {
        key: key.chars().take(80).collect(),
        reason: reason.into(),
    };
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(bad("too long"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("only printable ASCII without spaces is allowed"));
    }
    Ok(())
}
