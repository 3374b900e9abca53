//! A minimal Ethereum JSON-RPC client: the only I/O in this crate, kept to what posting a
//! root and claiming need. Transactions are signed locally (legacy, EIP-155 chain id) with
//! alloy's local signer; chain id, nonce, gas price and gas limit come from the node.
//!
//! Why not alloy's provider stack: it pulls a large dependency tree into a build that is
//! already near CI's time limit, and the five methods used here fit in one screen.

use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEnvelope, TxLegacy};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

/// Largest JSON-RPC reply read, so a hostile endpoint cannot exhaust memory.
const MAX_REPLY_BYTES: usize = 4 << 20;

/// Why a chain request failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The HTTP request failed.
    #[error("chain endpoint unreachable")]
    Http(#[from] reqwest::Error),
    /// The endpoint answered something that is not a JSON-RPC reply.
    #[error("malformed reply to {method}: {reason}")]
    Malformed {
        /// The method called.
        method: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The endpoint returned a JSON-RPC error.
    #[error("{method} failed: {message}")]
    Node {
        /// The method called.
        method: &'static str,
        /// The node's message.
        message: String,
    },
    /// Signing the transaction failed.
    #[error("signing the transaction failed")]
    Signing(#[source] alloy::signers::Error),
    /// No receipt before the timeout.
    #[error("transaction {0} not mined in time")]
    NotMined(B256),
    /// The transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(B256),
}

/// A mined transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mined {
    /// Its hash.
    pub hash: B256,
    /// Gas it used.
    pub gas_used: u64,
    /// The created contract, for a deployment.
    pub contract: Option<Address>,
    /// The events it emitted, as the receipt lists them (entries that do not parse are
    /// left out: callers look for one event of one contract and check what they find).
    pub logs: Vec<MinedLog>,
}

/// One event of a mined transaction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct MinedLog {
    /// The contract that emitted it.
    pub address: Address,
    /// Its topics (the first is the event's signature hash).
    pub topics: Vec<B256>,
    /// Its non-indexed data.
    pub data: Bytes,
}

/// A JSON-RPC endpoint and the key that signs this node's transactions.
#[derive(Clone, Debug)]
pub struct ChainClient {
    http: reqwest::Client,
    url: String,
    signer: PrivateKeySigner,
}

impl ChainClient {
    /// A client of `url` sending as `signer`.
    pub fn new(url: impl Into<String>, signer: PrivateKeySigner) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            url: url.into(),
            signer,
        })
    }

    /// The sending address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    async fn request(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut response = self.http.post(&self.url).json(&body).send().await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if bytes.len().saturating_add(chunk.len()) > MAX_REPLY_BYTES {
                return Err(RpcError::Malformed {
                    method,
                    reason: "reply too large".into(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut reply: Value = serde_json::from_slice(&bytes).map_err(|e| RpcError::Malformed {
            method,
            reason: e.to_string(),
        })?;
        if let Some(error) = reply.get("error") {
            return Err(RpcError::Node {
                method,
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
                    .to_owned(),
            });
        }
        Ok(reply
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    async fn quantity(&self, method: &'static str, params: Value) -> Result<U256, RpcError> {
        let value = self.request(method, params).await?;
        serde_json::from_value(value).map_err(|e| RpcError::Malformed {
            method,
            reason: e.to_string(),
        })
    }

    fn narrow(method: &'static str, value: U256) -> Result<u64, RpcError> {
        u64::try_from(value).map_err(|_| RpcError::Malformed {
            method,
            reason: "number out of range".into(),
        })
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let id = self.quantity("eth_chainId", json!([])).await?;
        Self::narrow("eth_chainId", id)
    }

    /// `eth_call` against the latest block.
    pub async fn call(&self, to: Address, data: &[u8]) -> Result<Bytes, RpcError> {
        self.call_at(to, data, None).await
    }

    /// `eth_call` against block `block` (`None`: the latest).
    pub async fn call_at(
        &self,
        to: Address,
        data: &[u8],
        block: Option<u64>,
    ) -> Result<Bytes, RpcError> {
        let tag = block.map_or_else(|| json!("latest"), |n| json!(U256::from(n)));
        let value = self
            .request(
                "eth_call",
                json!([{"to": to, "data": Bytes::copy_from_slice(data)}, tag]),
            )
            .await?;
        serde_json::from_value(value).map_err(|e| RpcError::Malformed {
            method: "eth_call",
            reason: e.to_string(),
        })
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let number = self.quantity("eth_blockNumber", json!([])).await?;
        Self::narrow("eth_blockNumber", number)
    }

    /// The timestamp (unix seconds) of block `number`.
    pub async fn block_timestamp(&self, number: u64) -> Result<u64, RpcError> {
        let method = "eth_getBlockByNumber";
        let block = self
            .request(method, json!([U256::from(number), false]))
            .await?;
        let timestamp: U256 = block
            .get("timestamp")
            .cloned()
            .and_then(|value| serde_json::from_value(value).ok())
            .ok_or_else(|| RpcError::Malformed {
                method,
                reason: format!("no timestamp in block {number}"),
            })?;
        Self::narrow(method, timestamp)
    }

    /// The last block whose timestamp is at most `at` (unix seconds), by binary search
    /// over block timestamps (which never decrease); block 0 if even genesis is later.
    pub async fn last_block_at_or_before(&self, at: u64) -> Result<u64, RpcError> {
        let latest = self.block_number().await?;
        last_block_at_or_before(latest, at, |number| self.block_timestamp(number)).await
    }

    /// Signs and sends a transaction (`to = None` deploys `data`), waits for its receipt
    /// up to `wait`, and fails if it reverted. The gas limit is the node's estimate plus a
    /// quarter, so a call that would revert is refused at estimation instead of paid for.
    pub async fn send(
        &self,
        to: Option<Address>,
        data: Bytes,
        wait: Duration,
    ) -> Result<Mined, RpcError> {
        let from = self.address();
        let chain_id = self.chain_id().await?;
        let nonce = self
            .quantity("eth_getTransactionCount", json!([from, "pending"]))
            .await?;
        let nonce = Self::narrow("eth_getTransactionCount", nonce)?;
        let gas_price = self.quantity("eth_gasPrice", json!([])).await?;
        let gas_price = u128::try_from(gas_price).map_err(|_| RpcError::Malformed {
            method: "eth_gasPrice",
            reason: "number out of range".into(),
        })?;
        let mut estimate_request = json!({"from": from, "data": data});
        if let Some(to) = to {
            estimate_request["to"] = json!(to);
        }
        let estimate = self
            .quantity("eth_estimateGas", json!([estimate_request]))
            .await?;
        let estimate = Self::narrow("eth_estimateGas", estimate)?;
        let mut tx = TxLegacy {
            chain_id: Some(chain_id),
            nonce,
            gas_price,
            gas_limit: estimate.saturating_add(estimate / 4),
            to: to.map_or(TxKind::Create, TxKind::Call),
            value: U256::ZERO,
            input: data,
        };
        let signature = self
            .signer
            .sign_transaction_sync(&mut tx)
            .map_err(RpcError::Signing)?;
        let envelope = TxEnvelope::Legacy(tx.into_signed(signature));
        let raw = Bytes::from(envelope.encoded_2718());
        let hash: B256 =
            serde_json::from_value(self.request("eth_sendRawTransaction", json!([raw])).await?)
                .map_err(|e| RpcError::Malformed {
                    method: "eth_sendRawTransaction",
                    reason: e.to_string(),
                })?;
        self.wait_for(hash, wait).await
    }

    async fn wait_for(&self, hash: B256, wait: Duration) -> Result<Mined, RpcError> {
        let give_up = tokio::time::Instant::now() + wait;
        loop {
            let receipt = self
                .request("eth_getTransactionReceipt", json!([hash]))
                .await?;
            if !receipt.is_null() {
                let field = |name: &str| receipt.get(name).cloned().unwrap_or(Value::Null);
                let malformed = |reason: &str| RpcError::Malformed {
                    method: "eth_getTransactionReceipt",
                    reason: reason.to_owned(),
                };
                let status: U256 =
                    serde_json::from_value(field("status")).map_err(|_| malformed("status"))?;
                if status.is_zero() {
                    return Err(RpcError::Reverted(hash));
                }
                let gas_used: U256 =
                    serde_json::from_value(field("gasUsed")).map_err(|_| malformed("gasUsed"))?;
                let contract: Option<Address> =
                    serde_json::from_value(field("contractAddress")).unwrap_or(None);
                let logs = match field("logs") {
                    Value::Array(entries) => entries
                        .into_iter()
                        .filter_map(|entry| serde_json::from_value(entry).ok())
                        .collect(),
                    _ => Vec::new(),
                };
                return Ok(Mined {
                    hash,
                    gas_used: u64::try_from(gas_used).map_err(|_| malformed("gasUsed"))?,
                    contract,
                    logs,
                });
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(RpcError::NotMined(hash));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The last block in `0..=latest` whose timestamp (`timestamp_of`) is at most `at`, or 0
/// when none is. Block timestamps never decrease along a chain, so a binary search finds
/// it in about log2(latest) lookups, and every node searching the same chain for the same
/// `at` finds the same block, whatever the chain's tip when it looks (once the chain has
/// moved past `at`).
pub async fn last_block_at_or_before<F, Fut, E>(
    latest: u64,
    at: u64,
    mut timestamp_of: F,
) -> Result<u64, E>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
{
    // Invariant: block `low` is at or before `at` (or `low` is 0), and every block after
    // `high` is later than `at`.
    let (mut low, mut high) = (0u64, latest);
    while low < high {
        // Rounds up, so `mid > low` and the loop always progresses.
        let mid = low + (high - low).div_ceil(2);
        if timestamp_of(mid).await? <= at {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Ok(low)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::last_block_at_or_before;

    /// Searches `timestamps` (block n has `timestamps[n]`) up to the tip `latest`.
    async fn search(timestamps: &[u64], latest: u64, at: u64) -> u64 {
        let lookups = std::cell::Cell::new(0u32);
        let found = last_block_at_or_before(latest, at, |n| {
            lookups.set(lookups.get() + 1);
            let timestamp = timestamps[usize::try_from(n).unwrap()];
            async move { Ok::<u64, ()>(timestamp) }
        })
        .await
        .unwrap();
        assert!(lookups.get() <= 8, "{} lookups", lookups.get());
        found
    }

    #[tokio::test]
    async fn every_member_reads_at_the_same_block_whatever_the_tip() {
        // Several blocks share a second, as on anvil; genesis is at 100.
        let timestamps = [100, 105, 105, 110, 110, 110, 120, 121, 130, 140, 150];
        let tip = u64::try_from(timestamps.len() - 1).unwrap();
        assert_eq!(search(&timestamps, tip, 110).await, 5);
        assert_eq!(search(&timestamps, tip, 115).await, 5);
        assert_eq!(search(&timestamps, tip, 120).await, 6);
        assert_eq!(search(&timestamps, tip, 1_000).await, tip);
        // Before genesis: genesis (nothing on it is readable anyway).
        assert_eq!(search(&timestamps, tip, 50).await, 0);
        // A member that looks when the chain has grown finds the same block as one that
        // looked earlier, once the chain had moved past the agreed time: a deposit mined
        // after it (block 7 onwards) is seen by nobody.
        for later_tip in 6..=tip {
            assert_eq!(search(&timestamps, later_tip, 115).await, 5);
        }
    }
}
