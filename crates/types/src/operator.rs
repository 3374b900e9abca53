//! Operator certificates: who runs a node.
//!
//! Node ids cost nothing, so a node's own word about itself (its zone, its labels) cannot
//! tell placement whether two nodes fail together or belong to the same party. An
//! *operator* is whoever holds an operator key; one operator may run many nodes with one
//! key. A node proves which operator runs it with an [`OperatorCert`]: the operator's
//! signature over a domain-separated, versioned text that binds the node id and the
//! network name, so a node cannot claim an operator whose key it does not hold, and a
//! certificate made for one network or node is worthless for another.

use serde::{Deserialize, Serialize};

use crate::{NodeId, PublicKeyBytes, SecretKey, SignatureBytes};

/// The first line of every operator certificate's signing text. A new layout gets a new
/// line, so a signature made for one layout never verifies under another.
pub const OPERATOR_CERT_DOMAIN: &str = "xnode operator certificate v1";

/// An operator's statement that it runs node `node` of network `network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCert {
    /// The operator's ed25519 public key.
    pub operator: PublicKeyBytes,
    /// The operator's signature over [`OperatorCert::signing_text`].
    pub signature: SignatureBytes,
}

impl OperatorCert {
    /// The exact bytes an operator signs to vouch for `node` in `network`.
    pub fn signing_text(network: &str, node: &NodeId, operator: &PublicKeyBytes) -> Vec<u8> {
        format!(
            "{OPERATOR_CERT_DOMAIN}\nnetwork: {network}\nnode: {node}\noperator: {}\n",
            operator.to_hex()
        )
        .into_bytes()
    }

    /// Issues a certificate for `node` in `network`, signed by `operator_key`.
    pub fn issue(operator_key: &SecretKey, network: &str, node: &NodeId) -> Self {
        let operator = operator_key.public();
        let signature = operator_key.sign(&Self::signing_text(network, node, &operator));
        Self {
            operator,
            signature,
        }
    }

    /// Whether this certificate vouches for `node` in `network`.
    pub fn verify(&self, network: &str, node: &NodeId) -> bool {
        self.operator.verify(
            &Self::signing_text(network, node, &self.operator),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_certificate_verifies() {
        let operator = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        let cert = OperatorCert::issue(&operator, "prod", &node);
        assert_eq!(cert.operator, operator.public());
        assert!(cert.verify("prod", &node));
    }

    #[test]
    fn a_certificate_for_another_node_does_not_verify() {
        let operator = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        let other = SecretKey::generate().node_id();
        let cert = OperatorCert::issue(&operator, "prod", &node);
        assert!(!cert.verify("prod", &other));
    }

    #[test]
    fn a_certificate_for_another_network_does_not_verify() {
        let operator = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        let cert = OperatorCert::issue(&operator, "devnet", &node);
        assert!(!cert.verify("prod", &node));
    }

    #[test]
    fn a_forged_certificate_does_not_verify() {
        let victim = SecretKey::generate();
        let forger = SecretKey::generate();
        let node = SecretKey::generate().node_id();
        // Claims the victim's operator key with a signature the forger made.
        let forged = OperatorCert {
            operator: victim.public(),
            signature: forger.sign(&OperatorCert::signing_text("prod", &node, &victim.public())),
        };
        assert!(!forged.verify("prod", &node));
        // A tampered signature and a malformed key fail too.
        let mut tampered = OperatorCert::issue(&victim, "prod", &node);
        tampered.signature.0[3] ^= 1;
        assert!(!tampered.verify("prod", &node));
        let garbage = OperatorCert {
            operator: PublicKeyBytes([0xff; 32]),
            signature: SignatureBytes([0; 64]),
        };
        assert!(!garbage.verify("prod", &node));
    }
}
