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
