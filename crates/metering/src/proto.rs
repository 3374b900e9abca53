//! The receipt exchange on the wire: a provider proposes, the tenant's edge countersigns
//! or refuses.
//!
//! Append new variants at the end of each enum: postcard encodes the variant index.

use serde::{Deserialize, Serialize};
use xnode_ledger::Receipt;
use xnode_wire::Versioned;

use crate::Refusal;

/// The largest receipt message: a receipt with a grant is well under 1 KiB.
pub const MAX_RECEIPT_MESSAGE: usize = 4 * 1024;

/// What a provider sends to a tenant's edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptRequest {
    /// "Countersign this cumulative total": a receipt signed by the provider.
    Propose {
        /// The provider-signed receipt.
        receipt: Receipt,
    },
}

impl Versioned for ReceiptRequest {
    const KIND_TAG: u8 = xnode_wire::kinds::RECEIPT_REQUEST;
    const KIND_NAME: &'static str = "receipt request";
    const VERSION: u8 = 1;
}

/// The edge's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptResponse {
    /// The receipt with the edge's countersignature and the tenant's grant.
    Countersigned {
        /// The dual-signed receipt.
        receipt: Box<Receipt>,
    },
    /// No countersignature.
    Refused {
        /// Why.
        refusal: Refusal,
        /// The largest total the edge would countersign now, when the amount was the problem.
        acceptable: Option<u64>,
    },
}

impl Versioned for ReceiptResponse {
    const KIND_TAG: u8 = xnode_wire::kinds::RECEIPT_RESPONSE;
    const KIND_NAME: &'static str = "receipt response";
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CounterKey, propose};
    use xnode_ledger::{Epoch, GRANT_VERSION, GrantBody, Resource};
    use xnode_types::SecretKey;

    /// The sizes BENCHMARKS.md's receipt bandwidth is computed from: one proposal and one
    /// countersigned answer with a grant, on a network name of 16 bytes.
    #[test]
    fn an_exchange_fits_the_limit_and_its_size_is_known() {
        let provider = SecretKey::from_seed(&[1; 32]).unwrap();
        let tenant = SecretKey::from_seed(&[2; 32]).unwrap();
        let edge = SecretKey::from_seed(&[3; 32]).unwrap();
        let network = "xnode-mainnet-01";
        let grant = GrantBody {
            v: GRANT_VERSION,
            network: network.into(),
            tenant: tenant.public(),
            delegate: edge.node_id(),
            delegate_key: edge.public(),
            from_epoch: Epoch(1_000_000),
            until_epoch: Epoch(1_000_720),
        }
        .sign(&tenant);
        let key = CounterKey {
            tenant: tenant.public(),
            provider: provider.node_id(),
            resource: Resource::StorageByteHours,
            epoch: Epoch(1_000_010),
        };
        let proposal = propose(network, &provider, key, u64::MAX / 3, 120);
        let request = xnode_wire::encode(&ReceiptRequest::Propose {
            receipt: proposal.clone(),
        })
        .unwrap();
        let response = xnode_wire::encode(&ReceiptResponse::Countersigned {
            receipt: Box::new(proposal.countersign_as_delegate(&edge, grant)),
        })
        .unwrap();
        println!(
            "receipt exchange: request {} bytes, response {} bytes",
            request.len(),
            response.len()
        );
        assert!(request.len() < 1024 && response.len() < MAX_RECEIPT_MESSAGE);
        // `XNODE_WRITE_FUZZ_SEEDS=crates/fuzz/corpus` keeps these valid encodings as the
        // seeds of the receipt fuzz targets.
        if let Ok(root) = std::env::var("XNODE_WRITE_FUZZ_SEEDS") {
            for (target, bytes) in [
                ("receipt_request", &request),
                ("receipt_response", &response),
            ] {
                let dir = std::path::Path::new(&root).join(target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("seed-00"), bytes).unwrap();
            }
        }
        let back: ReceiptResponse = xnode_wire::decode(&response, MAX_RECEIPT_MESSAGE).unwrap();
        let ReceiptResponse::Countersigned { receipt } = back else {
            panic!("decoded another variant");
        };
        assert!(receipt.verify(network).is_ok());
    }

    #[test]
    fn garbage_and_oversized_messages_are_refused() {
        for bytes in [
            vec![],
            vec![xnode_wire::kinds::RECEIPT_REQUEST],
            vec![xnode_wire::kinds::RECEIPT_REQUEST, 1, 0, 255, 255],
            vec![xnode_wire::kinds::RECEIPT_REQUEST, 2, 0],
            vec![xnode_wire::kinds::RECEIPT_RESPONSE, 1, 9],
        ] {
            assert!(xnode_wire::decode::<ReceiptRequest>(&bytes, MAX_RECEIPT_MESSAGE).is_err());
        }
        let big = vec![xnode_wire::kinds::RECEIPT_REQUEST; MAX_RECEIPT_MESSAGE + 1];
        assert!(xnode_wire::decode::<ReceiptRequest>(&big, MAX_RECEIPT_MESSAGE).is_err());
    }
}
