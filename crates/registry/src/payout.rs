//! Payout bindings: the EVM address an operator is paid to, published by the operator and
//! consented to by the address.
//!
//! A binding is a registry entry `payout/<operator-key-hex>/<serial>`, written by the
//! operator key itself (the default policy lets only that key write under its prefix, so
//! the entry's own signature is the operator's), whose value is a versioned
//! [`PayoutBinding`]. The binding carries the address's consent: an EIP-191
//! (`personal_sign`) secp256k1 signature by the address over a text naming the network,
//! the operator key, the address and the serial ([`PayoutBinding::consent_text`]). So:
//!
//! - nobody binds an address that did not sign for that operator, serial and network:
//!   under `bonded` admission a Sybil cannot borrow a bonded stranger's stake by naming
//!   its address;
//! - nobody binds another operator's key: only that key writes under its prefix, and the
//!   record must name the key its entry is filed under;
//! - a binding made for another network does not verify here, and is refused on arrival
//!   (it would otherwise be a valid entry signed by the operator);
//! - a newer serial replaces an older one. Each serial is its own key, so the set of
//!   bindings merges like any other set of entries and every node picks the same one
//!   (the highest serial), whatever order they arrived in; a replayed old binding is
//!   merely an older serial, never chosen.
//!
//! An address bound by two operators' current bindings binds neither
//! ([`resolve_bindings`]): one bond must not count for two operators under `bonded`
//! admission, nor one party appear as two operators to placement. Since the address had
//! to sign for both, only its owner can bring that about.
//!
//! A node checks a binding on arrival from a peer exactly as on a local write
//! ([`parse_binding`], with the node's network), so no peer can plant a bad one.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{Address, Signature};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use xnode_types::{PublicKeyBytes, SecretKey};
use xnode_wire::{Versioned, kinds};

use crate::Entry;

/// The prefix of every payout binding entry.
pub const PAYOUT_PREFIX: &str = "payout/";
/// The first line of the text the payout address signs. A new layout gets a new line, so
/// a consent given for one layout never verifies under another.
pub const PAYOUT_CONSENT_DOMAIN: &str = "xnode payout binding v1";
/// Most live bindings one operator may hold: old serials are kept (they are what makes
/// the merge order-independent), but an operator deletes them to make room.
pub const MAX_BINDINGS_PER_OPERATOR: usize = 8;
/// Largest binding value accepted.
pub const MAX_PAYOUT_BINDING_BYTES: usize = 1024;
/// Longest network name a binding may carry (the node's own name is shorter).
const MAX_NETWORK_LEN: usize = 128;

/// The value of a payout binding entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutBinding {
    /// The network the binding is for.
    pub network: String,
    /// The operator's ed25519 key (the key its nodes' certificates name).
    pub operator: PublicKeyBytes,
    /// The EVM address the operator is paid to and whose bond admits it.
    pub address: [u8; 20],
    /// Raised by every new binding of this operator; the highest one counts.
    pub serial: u64,
    /// The address's EIP-191 signature over [`PayoutBinding::consent_text`]: `r`, `s`
    /// and `v` (65 bytes).
    pub consent: Vec<u8>,
}

impl Versioned for PayoutBinding {
    const KIND_TAG: u8 = kinds::PAYOUT_BINDING;
    const KIND_NAME: &'static str = "payout binding";
    const VERSION: u8 = 1;
}

/// Why a payout binding is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayoutBindingError {
    #[error("the binding is over {MAX_PAYOUT_BINDING_BYTES} bytes")]
    TooLarge,
    #[error("the binding does not decode: {0}")]
    Malformed(String),
    #[error("the entry's key is not payout/<its signer>/<the binding's serial>")]
    KeyMismatch,
    #[error("the binding is for network {found:?}, not {expected:?}")]
    WrongNetwork { expected: String, found: String },
    #[error("this node does not know its network, so it keeps no payout binding")]
    NoNetwork,
    #[error("the address's consent is not a 65-byte secp256k1 signature")]
    BadConsentSignature,
    #[error("the consent was signed by {signer}, not by the bound address {address}")]
    ConsentMismatch { address: Address, signer: Address },
    #[error("the operator already holds {MAX_BINDINGS_PER_OPERATOR} bindings; delete old ones")]
    TooMany,
}

impl PayoutBinding {
    /// The text the payout address signs (EIP-191 `personal_sign`): it names everything
    /// the consent is for, so it cannot be moved to another network, operator or serial.
    pub fn consent_text(
        network: &str,
        operator: &PublicKeyBytes,
        address: &Address,
        serial: u64,
    ) -> String {
        format!(
            "{PAYOUT_CONSENT_DOMAIN}\nnetwork: {network}\noperator: {}\naddress: {}\nserial: {serial}\n",
            operator.to_hex(),
            address.to_checksum(None)
        )
    }

    /// Makes a binding of `operator`'s key to `address_key`'s address, with the address's
    /// consent. The registry entry that carries it is signed by the operator key.
    pub fn issue(
        operator: &SecretKey,
        address_key: &PrivateKeySigner,
        network: &str,
        serial: u64,
    ) -> Result<Self, PayoutBindingError> {
        let operator = operator.public();
        let address = address_key.address();
        let text = Self::consent_text(network, &operator, &address, serial);
        let consent = address_key
            .sign_message_sync(text.as_bytes())
            .map_err(|_| PayoutBindingError::BadConsentSignature)?;
        Ok(Self {
            network: network.to_owned(),
            operator,
            address: address.into_array(),
            serial,
            consent: consent.as_bytes().to_vec(),
        })
    }

    /// The bound address.
    pub fn address(&self) -> Address {
        Address::from(self.address)
    }

    /// Checks the address's consent for `network`.
    pub fn verify(&self, network: &str) -> Result<(), PayoutBindingError> {
        if self.network != network {
            return Err(PayoutBindingError::WrongNetwork {
                expected: network.to_owned(),
                found: self.network.chars().take(MAX_NETWORK_LEN).collect(),
            });
        }
        let signature = Signature::try_from(self.consent.as_slice())
            .map_err(|_| PayoutBindingError::BadConsentSignature)?;
        let text = Self::consent_text(network, &self.operator, &self.address(), self.serial);
        let signer = signature
            .recover_address_from_msg(text.as_bytes())
            .map_err(|_| PayoutBindingError::BadConsentSignature)?;
        if signer != self.address() {
            return Err(PayoutBindingError::ConsentMismatch {
                address: self.address(),
                signer,
            });
        }
        Ok(())
    }

    /// The registry key this binding is filed under.
    pub fn registry_key(&self) -> String {
        binding_key(&self.operator, self.serial)
    }

    /// Decodes an entry value (no check of the consent: see [`parse_binding`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, PayoutBindingError> {
        xnode_wire::decode::<Self>(bytes, MAX_PAYOUT_BINDING_BYTES)
            .map_err(|e| PayoutBindingError::Malformed(e.to_string()))
    }

    /// Encodes the binding as an entry value.
    pub fn encode(&self) -> Result<Vec<u8>, PayoutBindingError> {
        xnode_wire::encode(self).map_err(|e| PayoutBindingError::Malformed(e.to_string()))
    }
}

/// The registry key of `operator`'s binding number `serial`.
pub fn binding_key(operator: &PublicKeyBytes, serial: u64) -> String {
    format!("{}{serial}", operator_prefix(operator))
}

/// The prefix of every binding of `operator`.
pub fn operator_prefix(operator: &PublicKeyBytes) -> String {
    format!("{PAYOUT_PREFIX}{}/", operator.to_hex())
}

/// Whether `key` is in the payout binding namespace.
pub fn is_binding_key(key: &str) -> bool {
    key.starts_with(PAYOUT_PREFIX)
}

/// Decodes and checks the binding in a live `entry` for `network`: it decodes, is filed
/// under its own operator and serial by that operator, and the address signed it. The
/// entry's own signature is the registry's to check.
pub fn parse_binding(entry: &Entry, network: &str) -> Result<PayoutBinding, PayoutBindingError> {
    let value = entry
        .value
        .as_deref()
        .ok_or_else(|| PayoutBindingError::Malformed("a tombstone holds no binding".into()))?;
    if value.len() > MAX_PAYOUT_BINDING_BYTES {
        return Err(PayoutBindingError::TooLarge);
    }
    let binding = PayoutBinding::decode(value)?;
    if entry.key != binding.registry_key() || entry.owner != binding.operator {
        return Err(PayoutBindingError::KeyMismatch);
    }
    binding.verify(network)?;
    Ok(binding)
}

/// The address each operator is bound to, from checked bindings: the highest serial of
/// each operator, written (by its entry's clock) at or before `cut_ms`, minus every
/// address that two operators' chosen bindings name (see the module's text). Pure and
/// order-independent, so every node with the same bindings gets the same table.
pub fn resolve_bindings(
    bindings: impl IntoIterator<Item = (PayoutBinding, u64)>,
    cut_ms: u64,
) -> BTreeMap<PublicKeyBytes, Address> {
    let mut newest: BTreeMap<PublicKeyBytes, PayoutBinding> = BTreeMap::new();
    for (binding, written_ms) in bindings {
        if written_ms > cut_ms {
            continue;
        }
        match newest.get(&binding.operator) {
            Some(held) if held.serial >= binding.serial => {}
            _ => {
                newest.insert(binding.operator, binding);
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut contested = BTreeSet::new();
    for binding in newest.values() {
        if !seen.insert(binding.address) {
            contested.insert(binding.address);
        }
    }
    newest
        .into_iter()
        .filter(|(_, b)| !contested.contains(&b.address))
        .map(|(operator, b)| (operator, b.address()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Entry;
    use xnode_types::Hlc;

    fn entry(operator: &SecretKey, binding: &PayoutBinding) -> Entry {
        Entry::sign(
            operator,
            binding.registry_key(),
            Some(binding.encode().unwrap()),
            Hlc {
                wall_ms: 1_000,
                logical: 0,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_binding_the_address_signed_is_accepted() {
        let operator = SecretKey::generate();
        let address = PrivateKeySigner::random();
        let binding = PayoutBinding::issue(&operator, &address, "prod", 1).unwrap();
        let parsed = parse_binding(&entry(&operator, &binding), "prod").unwrap();
        assert_eq!(parsed.address(), address.address());
        assert_eq!(parsed.operator, operator.public());
    }

    #[test]
    fn a_binding_naming_an_address_that_did_not_sign_is_refused() {
        // A Sybil names a bonded stranger's address, signing the consent itself.
        let sybil = SecretKey::generate();
        let stranger = PrivateKeySigner::random().address();
        let own = PrivateKeySigner::random();
        let mut binding = PayoutBinding::issue(&sybil, &own, "prod", 1).unwrap();
        binding.address = stranger.into_array();
        let error = parse_binding(&entry(&sybil, &binding), "prod").unwrap_err();
        assert!(
            matches!(error, PayoutBindingError::ConsentMismatch { address, .. } if address == stranger),
            "{error}"
        );
        // No consent at all, or a garbled one, is refused too.
        binding.consent = Vec::new();
        assert_eq!(
            parse_binding(&entry(&sybil, &binding), "prod").unwrap_err(),
            PayoutBindingError::BadConsentSignature
        );
        binding.consent = vec![0xff; 65];
        assert!(parse_binding(&entry(&sybil, &binding), "prod").is_err());
    }

    #[test]
    fn a_consent_given_to_one_operator_cannot_bind_another() {
        let honest = SecretKey::generate();
        let thief = SecretKey::generate();
        let address = PrivateKeySigner::random();
        let given = PayoutBinding::issue(&honest, &address, "prod", 1).unwrap();
        // The thief copies the consent into a binding of its own key.
        let stolen = PayoutBinding {
            operator: thief.public(),
            ..given.clone()
        };
        assert!(matches!(
            parse_binding(&entry(&thief, &stolen), "prod").unwrap_err(),
            PayoutBindingError::ConsentMismatch { .. }
        ));
        // Or files the honest operator's binding under an entry of its own.
        let mut filed = entry(&thief, &given);
        filed.owner = thief.public();
        assert_eq!(
            parse_binding(&filed, "prod").unwrap_err(),
            PayoutBindingError::KeyMismatch
        );
    }

    #[test]
    fn a_binding_for_another_network_is_refused() {
        let operator = SecretKey::generate();
        let address = PrivateKeySigner::random();
        let binding = PayoutBinding::issue(&operator, &address, "devnet", 1).unwrap();
        assert!(matches!(
            parse_binding(&entry(&operator, &binding), "prod").unwrap_err(),
            PayoutBindingError::WrongNetwork { .. }
        ));
        // Relabelled for this network, the address's consent no longer matches.
        let relabelled = PayoutBinding {
            network: "prod".into(),
            ..binding
        };
        assert!(matches!(
            parse_binding(&entry(&operator, &relabelled), "prod").unwrap_err(),
            PayoutBindingError::ConsentMismatch { .. }
        ));
    }

    #[test]
    fn a_consent_cannot_be_moved_to_another_serial() {
        let operator = SecretKey::generate();
        let address = PrivateKeySigner::random();
        let old = PayoutBinding::issue(&operator, &address, "prod", 1).unwrap();
        let bumped = PayoutBinding { serial: 9, ..old };
        assert!(matches!(
            parse_binding(&entry(&operator, &bumped), "prod").unwrap_err(),
            PayoutBindingError::ConsentMismatch { .. }
        ));
    }

    #[test]
    fn the_highest_serial_wins_in_any_order_and_an_old_one_replayed_changes_nothing() {
        let operator = SecretKey::generate();
        let first = PrivateKeySigner::random();
        let second = PrivateKeySigner::random();
        let one = PayoutBinding::issue(&operator, &first, "prod", 1).unwrap();
        let two = PayoutBinding::issue(&operator, &second, "prod", 2).unwrap();
        let forwards = resolve_bindings([(one.clone(), 10), (two.clone(), 20)], u64::MAX);
        // The old binding replayed later (a newer clock) still loses to the higher serial.
        let replayed = resolve_bindings([(two, 20), (one, 30)], u64::MAX);
        assert_eq!(forwards, replayed);
        assert_eq!(forwards[&operator.public()], second.address());
    }

    #[test]
    fn a_binding_written_after_the_cut_does_not_count_yet() {
        let operator = SecretKey::generate();
        let first = PrivateKeySigner::random();
        let second = PrivateKeySigner::random();
        let one = PayoutBinding::issue(&operator, &first, "prod", 1).unwrap();
        let two = PayoutBinding::issue(&operator, &second, "prod", 2).unwrap();
        let table = resolve_bindings([(one, 10), (two, 20)], 15);
        assert_eq!(table[&operator.public()], first.address());
    }

    #[test]
    fn an_address_two_operators_name_binds_neither() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let c = SecretKey::generate();
        let shared = PrivateKeySigner::random();
        let own = PrivateKeySigner::random();
        let table = resolve_bindings(
            [
                (PayoutBinding::issue(&a, &shared, "prod", 1).unwrap(), 1),
                (PayoutBinding::issue(&b, &shared, "prod", 1).unwrap(), 1),
                (PayoutBinding::issue(&c, &own, "prod", 1).unwrap(), 1),
            ],
            u64::MAX,
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table[&c.public()], own.address());
        // Once b moves to its own address, a keeps the shared one.
        let b_own = PrivateKeySigner::random();
        let table = resolve_bindings(
            [
                (PayoutBinding::issue(&a, &shared, "prod", 1).unwrap(), 1),
                (PayoutBinding::issue(&b, &shared, "prod", 1).unwrap(), 1),
                (PayoutBinding::issue(&b, &b_own, "prod", 2).unwrap(), 2),
            ],
            u64::MAX,
        );
        assert_eq!(table[&a.public()], shared.address());
        assert_eq!(table[&b.public()], b_own.address());
    }

    fn registry(dir: &std::path::Path) -> crate::Registry {
        crate::Registry::open(
            xnode_db::Db::open(&dir.join("db")).unwrap(),
            std::sync::Arc::new(xnode_types::HlcClock::new()),
            Box::new(crate::DefaultPolicy),
            crate::RegistryMetrics::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_peer_cannot_plant_a_bad_binding_and_the_table_reads_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path());
        reg.set_network("prod");
        let operator = SecretKey::generate();
        let address = PrivateKeySigner::random();
        // An address that did not sign, arriving from a peer: refused like a local write.
        let mut forged = PayoutBinding::issue(&operator, &address, "prod", 1).unwrap();
        forged.address = PrivateKeySigner::random().address().into_array();
        assert!(matches!(
            reg.apply_remote(entry(&operator, &forged)),
            Err(crate::RegistryError::BadPayoutBinding { .. })
        ));
        // Another network's binding, though the operator signed its entry: refused.
        let elsewhere = PayoutBinding::issue(&operator, &address, "devnet", 1).unwrap();
        assert!(matches!(
            reg.apply_remote(entry(&operator, &elsewhere)),
            Err(crate::RegistryError::BadPayoutBinding { .. })
        ));
        // Someone else writing under the operator's prefix: refused by the policy.
        let intruder = SecretKey::generate();
        let good = PayoutBinding::issue(&operator, &address, "prod", 1).unwrap();
        assert!(reg.apply_remote(entry(&intruder, &good)).is_err());
        assert!(reg.payout_table(u64::MAX).is_empty());
        reg.apply_remote(entry(&operator, &good)).unwrap();
        assert_eq!(
            reg.payout_table(u64::MAX)[&operator.public()],
            address.address()
        );
        // A registry that does not know its network keeps no binding.
        let dir = tempfile::tempdir().unwrap();
        let unset = registry(dir.path());
        assert!(unset.apply_remote(entry(&operator, &good)).is_err());
    }
}
