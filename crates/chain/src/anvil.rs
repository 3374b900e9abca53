//! A local anvil (Foundry's development EVM node) with the settlement contracts deployed:
//! what the end-to-end tests and `xnode devnet --chain` run against (feature `anvil`).
//!
//! anvil comes from npm (`@foundry-rs/anvil-linux-amd64`, pinned by
//! `contracts/anvil/package-lock.json`; `scripts/test.sh` runs `npm ci` there). `XNODE_ANVIL`
//! may point at another anvil binary. Callers where anvil is missing print
//! [`SKIP_MESSAGE`] and pass.
//!
//! The JSON-RPC client here is deliberately plain (std TCP, HTTP/1.1, one connection per
//! call, unlocked development accounts): it is for setting up a local chain, not for
//! nodes, which use `xnode_settle::ChainClient` with keys they sign with themselves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{SolCall, SolConstructor};
use serde_json::{Value, json};

use crate::{Committee, Settlement, Staking, XnodeToken};

/// What a test prints when it cannot run because anvil is not installed.
pub const SKIP_MESSAGE: &str = "SKIPPED: anvil is not installed (scripts/test.sh installs it \
     with `npm ci` in contracts/anvil; or set XNODE_ANVIL to an anvil binary)";

/// Where the repository's npm package puts anvil, relative to the workspace root.
pub const NPM_ANVIL: &str = "contracts/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// Longest wait for anvil to start, a receipt to appear or one call to answer. Generous:
/// CI machines are loaded.
const WAIT: Duration = Duration::from_secs(60);

/// One whole token, in base units (18 decimals).
pub const TOKEN: u128 = 1_000_000_000_000_000_000;

/// Why the local chain could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum AnvilError {
    /// The anvil binary could not be run.
    #[error("cannot run anvil at {path}")]
    Spawn {
        /// The binary.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// anvil exited before printing its address.
    #[error("anvil exited before listening")]
    NotListening,
    /// A JSON-RPC exchange failed at the transport.
    #[error("JSON-RPC {method} to anvil failed")]
    Io {
        /// The method called.
        method: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// anvil's reply was not what the method returns.
    #[error("JSON-RPC {method}: unexpected reply {reply}")]
    Malformed {
        /// The method called.
        method: String,
        /// What came back.
        reply: String,
    },
    /// anvil answered with an error.
    #[error("JSON-RPC {method} failed: {error}")]
    Rpc {
        /// The method called.
        method: String,
        /// anvil's error object.
        error: String,
    },
    /// A transaction was mined but reverted.
    #[error("transaction {what} reverted")]
    Reverted {
        /// What the transaction did.
        what: String,
    },
    /// No receipt in time.
    #[error("transaction {0} was not mined in time")]
    NotMined(String),
}

/// The anvil binary to run: `XNODE_ANVIL`, else the repository's npm package, if present.
pub fn anvil_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("XNODE_ANVIL") {
        return Some(PathBuf::from(path));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(NPM_ANVIL);
    local.is_file().then_some(local)
}

/// A running anvil, killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    address: String,
}

impl Anvil {
    /// Starts `binary` on a free port of 127.0.0.1 and waits until it listens.
    pub fn start(binary: &Path) -> Result<Self, AnvilError> {
        Self::start_on(binary, 0)
    }

    /// Starts `binary` on `port` of 127.0.0.1 (0: a free one) with one-second blocks off
    /// (each transaction is mined at once) and waits until it listens.
    pub fn start_on(binary: &Path, port: u16) -> Result<Self, AnvilError> {
        let mut child = Command::new(binary)
            .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| AnvilError::Spawn {
                path: binary.display().to_string(),
                source,
            })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(AnvilError::NotListening);
        };
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("Listening on ") {
                        break address.trim().to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(AnvilError::NotListening);
                }
            }
        };
        // Keep draining its log so anvil never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, address })
    }

    /// The JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// One JSON-RPC call over a fresh HTTP/1.1 connection.
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, AnvilError> {
        let io = |source| AnvilError::Io {
            method: method.to_owned(),
            source,
        };
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut stream = TcpStream::connect(&self.address).map_err(io)?;
        stream.set_read_timeout(Some(WAIT)).map_err(io)?;
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .map_err(io)?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(io)?;
        let malformed = || AnvilError::Malformed {
            method: method.to_owned(),
            reply: response.chars().take(200).collect(),
        };
        let (_, payload) = response.split_once("\r\n\r\n").ok_or_else(malformed)?;
        let mut reply: Value = serde_json::from_str(payload.trim()).map_err(|_| malformed())?;
        if let Some(error) = reply.get("error") {
            return Err(AnvilError::Rpc {
                method: method.to_owned(),
                error: error.to_string(),
            });
        }
        Ok(reply
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, AnvilError> {
        let value = self.rpc(method, params)?;
        serde_json::from_value(value.clone()).map_err(|_| AnvilError::Malformed {
            method: method.to_owned(),
            reply: value.to_string(),
        })
    }

    /// The unlocked development accounts (each funded with 10,000 ether).
    pub fn accounts(&self) -> Result<Vec<Address>, AnvilError> {
        self.typed("eth_accounts", json!([]))
    }

    /// The chain id.
    pub fn chain_id(&self) -> Result<u64, AnvilError> {
        let id: U256 = self.typed("eth_chainId", json!([]))?;
        u64::try_from(id).map_err(|_| AnvilError::Malformed {
            method: "eth_chainId".into(),
            reply: id.to_string(),
        })
    }

    /// Sets an account's ether balance (anvil only), so a node key can pay gas.
    pub fn set_balance(&self, account: Address, wei: U256) -> Result<(), AnvilError> {
        self.rpc("anvil_setBalance", json!([account, wei]))?;
        Ok(())
    }

    /// Sends a transaction from an unlocked account and returns its receipt, whether it
    /// succeeded or reverted. The gas limit is given, so a reverting transaction is mined
    /// (status 0) rather than refused at estimation.
    pub fn send(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
    ) -> Result<Value, AnvilError> {
        let mut tx = json!({"from": from, "data": Bytes::copy_from_slice(data), "gas": "0x4c4b40"});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx]))?;
        // anvil mines each transaction at once, but the receipt can appear a moment after
        // the hash is returned on a loaded machine: poll for it.
        let give_up = Instant::now() + WAIT;
        loop {
            let receipt = self.rpc("eth_getTransactionReceipt", json!([hash]))?;
            if !receipt.is_null() {
                return Ok(receipt);
            }
            if Instant::now() >= give_up {
                return Err(AnvilError::NotMined(hash.to_string()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`Anvil::send`], failing if the transaction reverted.
    pub fn execute(
        &self,
        what: &str,
        from: Address,
        to: Option<Address>,
        data: &[u8],
    ) -> Result<Value, AnvilError> {
        let receipt = self.send(from, to, data)?;
        if !succeeded(&receipt) {
            return Err(AnvilError::Reverted {
                what: what.to_owned(),
            });
        }
        Ok(receipt)
    }

    /// A view call against the latest block.
    pub fn call<C: SolCall>(&self, to: Address, call: &C) -> Result<C::Return, AnvilError> {
        let data = Bytes::from(call.abi_encode());
        let bytes: Bytes = self.typed("eth_call", json!([{"to": to, "data": data}, "latest"]))?;
        C::abi_decode_returns(&bytes).map_err(|_| AnvilError::Malformed {
            method: "eth_call".into(),
            reply: bytes.to_string(),
        })
    }

    /// The latest block's timestamp (unix seconds).
    pub fn latest_timestamp(&self) -> Result<u64, AnvilError> {
        let block = self.rpc("eth_getBlockByNumber", json!(["latest", false]))?;
        let timestamp: U256 = serde_json::from_value(block["timestamp"].clone()).map_err(|_| {
            AnvilError::Malformed {
                method: "eth_getBlockByNumber".into(),
                reply: block.to_string(),
            }
        })?;
        u64::try_from(timestamp).map_err(|_| AnvilError::Malformed {
            method: "eth_getBlockByNumber".into(),
            reply: timestamp.to_string(),
        })
    }

    /// Deploys `bytecode` with ABI-encoded constructor `args` from `from`.
    pub fn deploy(
        &self,
        what: &str,
        from: Address,
        bytecode: &Bytes,
        args: Vec<u8>,
    ) -> Result<Address, AnvilError> {
        let mut code = bytecode.to_vec();
        code.extend(args);
        let receipt = self.execute(what, from, None, &code)?;
        serde_json::from_value(receipt["contractAddress"].clone()).map_err(|_| {
            AnvilError::Malformed {
                method: "eth_getTransactionReceipt".into(),
                reply: receipt.to_string(),
            }
        })
    }

    /// Deploys the token (1,000,000 tokens held by the first development account), the
    /// committee of `signers` with `threshold`, the settlement contract (one-hour
    /// withdrawal delay) and staking (one-hour unbonding, slashes to the treasury owner),
    /// and lets the settlement and staking contracts move the deployer's tokens.
    pub fn deploy_contracts(
        &self,
        signers: &[Address],
        threshold: usize,
    ) -> Result<Contracts, AnvilError> {
        let deployer = *self
            .accounts()?
            .first()
            .ok_or_else(|| AnvilError::Malformed {
                method: "eth_accounts".into(),
                reply: "no account".into(),
            })?;
        let mut signers = signers.to_vec();
        signers.sort();
        let token = self.deploy(
            "deploy XnodeToken",
            deployer,
            &XnodeToken::BYTECODE,
            XnodeToken::constructorCall {
                name_: "Xnode".into(),
                symbol_: "XND".into(),
                holder: deployer,
                supply: U256::from(1_000_000 * TOKEN),
            }
            .abi_encode(),
        )?;
        let committee = self.deploy(
            "deploy Committee",
            deployer,
            &Committee::BYTECODE,
            Committee::constructorCall {
                initialSigners: signers,
                initialThreshold: U256::from(threshold),
            }
            .abi_encode(),
        )?;
        let settlement = self.deploy(
            "deploy Settlement",
            deployer,
            &Settlement::BYTECODE,
            Settlement::constructorCall {
                token_: token,
                committee_: committee,
                withdrawalDelay_: U256::from(3600),
            }
            .abi_encode(),
        )?;
        let staking = self.deploy(
            "deploy Staking",
            deployer,
            &Staking::BYTECODE,
            Staking::constructorCall {
                token_: token,
                committee_: committee,
                repairPot_: deployer,
                unbondDelay_: U256::from(3600),
                exitFallbackDelay_: U256::from(2 * 3600),
            }
            .abi_encode(),
        )?;
        for spender in [settlement, staking] {
            let approve = XnodeToken::approveCall {
                spender,
                value: U256::MAX,
            };
            self.execute("approve", deployer, Some(token), &approve.abi_encode())?;
        }
        Ok(Contracts {
            deployer,
            token,
            committee,
            settlement,
            staking,
        })
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The deployed contracts, and the account that deployed them and holds the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contracts {
    /// The first development account: holds the supply, approved for both contracts.
    pub deployer: Address,
    /// `XnodeToken`.
    pub token: Address,
    /// `Committee`.
    pub committee: Address,
    /// `Settlement`.
    pub settlement: Address,
    /// `Staking`.
    pub staking: Address,
}

impl Contracts {
    /// Escrows `amount` for `tenant` (an Ed25519 public key), paid by the deployer.
    pub fn deposit(&self, anvil: &Anvil, tenant: B256, amount: u128) -> Result<(), AnvilError> {
        let call = Settlement::depositCall {
            tenant,
            amount: U256::from(amount),
        };
        anvil.execute(
            "deposit",
            self.deployer,
            Some(self.settlement),
            &call.abi_encode(),
        )?;
        Ok(())
    }

    /// Adds `amount` to the settlement treasury (the emission part of rewards).
    pub fn fund_treasury(&self, anvil: &Anvil, amount: u128) -> Result<(), AnvilError> {
        let call = Settlement::fundTreasuryCall {
            amount: U256::from(amount),
        };
        anvil.execute(
            "fundTreasury",
            self.deployer,
            Some(self.settlement),
            &call.abi_encode(),
        )?;
        Ok(())
    }

    /// Sends `amount` tokens from the deployer to `to`.
    pub fn transfer(&self, anvil: &Anvil, to: Address, amount: u128) -> Result<(), AnvilError> {
        let call = XnodeToken::transferCall {
            to,
            value: U256::from(amount),
        };
        anvil.execute(
            "transfer",
            self.deployer,
            Some(self.token),
            &call.abi_encode(),
        )?;
        Ok(())
    }

    /// Bonds `amount` tokens for `operator`, an unlocked development account: the
    /// deployer sends it the tokens, it approves the staking contract and bonds them.
    pub fn bond(&self, anvil: &Anvil, operator: Address, amount: u128) -> Result<(), AnvilError> {
        self.transfer(anvil, operator, amount)?;
        let approve = XnodeToken::approveCall {
            spender: self.staking,
            value: U256::from(amount),
        };
        anvil.execute("approve", operator, Some(self.token), &approve.abi_encode())?;
        let bond = Staking::bondCall {
            amount: U256::from(amount),
        };
        anvil.execute("bond", operator, Some(self.staking), &bond.abi_encode())?;
        Ok(())
    }

    /// A tenant's escrow.
    pub fn escrow_of(&self, anvil: &Anvil, tenant: B256) -> Result<U256, AnvilError> {
        anvil.call(self.settlement, &Settlement::escrowOfCall(tenant))
    }

    /// An epoch's posted root (zero when none).
    pub fn root_of(&self, anvil: &Anvil, epoch: u64) -> Result<B256, AnvilError> {
        anvil.call(self.settlement, &Settlement::rootOfCall(epoch))
    }

    /// An account's token balance.
    pub fn balance_of(&self, anvil: &Anvil, account: Address) -> Result<U256, AnvilError> {
        anvil.call(self.token, &XnodeToken::balanceOfCall(account))
    }
}

/// Whether a receipt says the transaction succeeded.
pub fn succeeded(receipt: &Value) -> bool {
    receipt["status"] == json!("0x1")
}

/// The gas a receipt says its transaction used (0 if unreadable).
pub fn gas_used(receipt: &Value) -> u64 {
    receipt["gasUsed"]
        .as_str()
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}
