//! End to end on anvil, a real EVM node over JSON-RPC: deploy the committed contracts,
//! fund escrows and the treasury, post an epoch root with f+1 committee signatures (and
//! fail with f), claim every payout with the ledger's proofs, and refuse a double claim.
//!
//! anvil comes from npm (`@foundry-rs/anvil-linux-amd64`, pinned by
//! `contracts/anvil/package-lock.json`), installed by `scripts/test.sh`. Where it is not
//! installed the test says so and passes without running: `XNODE_ANVIL` may point at
//! another anvil binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{SolCall, SolConstructor};
use serde_json::{Value, json};
use xnode_chain::{
    Committee, CommitteeSigners, DomainName, Settlement, SettlementPlan, XnodeToken, domain,
};
use xnode_ledger::{Payout, TenantCharge};
use xnode_types::PublicKeyBytes;

const TOKEN: u128 = 1_000_000_000_000_000_000;

fn anvil_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("XNODE_ANVIL") {
        return Some(PathBuf::from(path));
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../contracts/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    local.is_file().then_some(local)
}

/// A running anvil, killed when dropped.
struct Anvil {
    child: Child,
    address: String,
}

impl Anvil {
    fn start(binary: &PathBuf) -> Self {
        let mut child = Command::new(binary)
            .args(["--port", "0", "--host", "127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("anvil printed its address before exiting")
                .unwrap();
            if let Some(address) = line.strip_prefix("Listening on ") {
                break address.trim().to_string();
            }
        };
        // Keep draining its log so anvil never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, address }
    }

    /// One JSON-RPC call over a fresh HTTP/1.1 connection (std only, no client library).
    fn rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (_, payload) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let reply: Value = serde_json::from_str(payload.trim()).expect("a JSON-RPC reply");
        match reply.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(reply["result"].clone()),
        }
    }

    /// Sends a transaction from an unlocked dev account and returns its receipt. The gas
    /// limit is given, so a reverting transaction is mined (status 0) rather than refused
    /// at estimation.
    fn send(&self, from: Address, to: Option<Address>, data: &[u8]) -> Value {
        let mut tx = json!({"from": from, "data": Bytes::copy_from_slice(data), "gas": "0x4c4b40"});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self
            .rpc("eth_sendTransaction", json!([tx]))
            .expect("accepted");
        // anvil mines each transaction at once, but the receipt can appear a moment after
        // the hash is returned (seen when other tests load the machine): poll for it, with
        // a generous limit.
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            let receipt = self
                .rpc("eth_getTransactionReceipt", json!([hash]))
                .expect("a receipt query");
            if !receipt.is_null() {
                return receipt;
            }
            assert!(Instant::now() < give_up, "no receipt for {hash} after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn call<C: SolCall>(&self, to: Address, call: &C) -> C::Return {
        let data = Bytes::from(call.abi_encode());
        let result = self
            .rpc("eth_call", json!([{"to": to, "data": data}, "latest"]))
            .expect("eth_call");
        let bytes: Bytes = serde_json::from_value(result).unwrap();
        C::abi_decode_returns(&bytes).unwrap()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn succeeded(receipt: &Value) -> bool {
    receipt["status"] == json!("0x1")
}

fn gas_used(receipt: &Value) -> u64 {
    u64::from_str_radix(
        receipt["gasUsed"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap()
}

fn deploy(anvil: &Anvil, from: Address, bytecode: &Bytes, args: Vec<u8>) -> Address {
    let mut code = bytecode.to_vec();
    code.extend(args);
    let receipt = anvil.send(from, None, &code);
    assert!(succeeded(&receipt), "deployment failed: {receipt}");
    serde_json::from_value(receipt["contractAddress"].clone()).unwrap()
}

#[test]
fn an_epoch_settles_on_anvil() {
    let Some(binary) = anvil_binary() else {
        eprintln!(
            "SKIPPED: anvil is not installed (scripts/test.sh installs it into contracts/anvil; \
             or set XNODE_ANVIL to an anvil binary)"
        );
        return;
    };
    let anvil = Anvil::start(&binary);
    let accounts: Vec<Address> =
        serde_json::from_value(anvil.rpc("eth_accounts", json!([])).unwrap()).unwrap();
    let (deployer, poster) = (accounts[0], accounts[1]);
    let chain_id: U256 =
        serde_json::from_value(anvil.rpc("eth_chainId", json!([])).unwrap()).unwrap();
    let chain_id = u64::try_from(chain_id).unwrap();

    let keys: Vec<B256> = (0..4u8).map(|i| B256::repeat_byte(0x40 + i)).collect();
    let committee_keys = CommitteeSigners::from_private_keys(&keys).unwrap();
    let token = deploy(
        &anvil,
        deployer,
        &XnodeToken::BYTECODE,
        XnodeToken::constructorCall {
            name_: "Xnode".into(),
            symbol_: "XND".into(),
            holder: deployer,
            supply: U256::from(1_000_000 * TOKEN),
        }
        .abi_encode(),
    );
    let committee = deploy(
        &anvil,
        deployer,
        &Committee::BYTECODE,
        Committee::constructorCall {
            initialSigners: committee_keys.addresses(),
            initialThreshold: U256::from(2),
        }
        .abi_encode(),
    );
    let settlement = deploy(
        &anvil,
        deployer,
        &Settlement::BYTECODE,
        Settlement::constructorCall {
            token_: token,
            committee_: committee,
            withdrawalDelay_: U256::from(3 * 3600),
        }
        .abi_encode(),
    );

    // The deployer pays for two tenants' escrows and 500 tokens of emission.
    let approve = XnodeToken::approveCall {
        spender: settlement,
        value: U256::MAX,
    };
    assert!(succeeded(&anvil.send(
        deployer,
        Some(token),
        &approve.abi_encode()
    )));
    for (tenant, amount) in [([0xa1u8; 32], 3_000 * TOKEN), ([0xb2u8; 32], 1_000 * TOKEN)] {
        let deposit = Settlement::depositCall {
            tenant: B256::from(tenant),
            amount: U256::from(amount),
        };
        assert!(succeeded(&anvil.send(
            deployer,
            Some(settlement),
            &deposit.abi_encode()
        )));
    }
    let fund = Settlement::fundTreasuryCall {
        amount: U256::from(500 * TOKEN),
    };
    assert!(succeeded(&anvil.send(
        deployer,
        Some(settlement),
        &fund.abi_encode()
    )));

    let payouts = vec![
        Payout {
            address: [0x31; 20],
            amount: 1_200 * TOKEN,
        },
        Payout {
            address: [0x32; 20],
            amount: 2_000 * TOKEN + 7,
        },
        Payout {
            address: [0x33; 20],
            amount: 1_299 * TOKEN,
        },
    ];
    let charges = vec![
        TenantCharge {
            tenant: PublicKeyBytes([0xa1; 32]),
            usage_value: 3_000 * TOKEN,
            charged: 3_000 * TOKEN,
        },
        TenantCharge {
            tenant: PublicKeyBytes([0xb2; 32]),
            usage_value: 1_000 * TOKEN,
            charged: 1_000 * TOKEN,
        },
    ];
    let plan = SettlementPlan::from_payouts(12, &payouts, &charges).unwrap();
    let latest = anvil
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .unwrap();
    let now: U256 = serde_json::from_value(latest["timestamp"].clone()).unwrap();
    let deadline = now + U256::from(3600);
    let digest = plan.digest(
        &domain(DomainName::Settlement, chain_id, settlement),
        deadline,
    );

    // f = 1 signature: refused; f+1 = 2: accepted.
    let too_few = plan.post_root_calldata(deadline, committee_keys.sign(digest, 1).unwrap());
    assert!(!succeeded(&anvil.send(poster, Some(settlement), &too_few)));
    let quorum = plan.post_root_calldata(deadline, committee_keys.sign(digest, 2).unwrap());
    let receipt = anvil.send(poster, Some(settlement), &quorum);
    assert!(succeeded(&receipt), "post: {receipt}");
    eprintln!("anvil: postRoot used {} gas", gas_used(&receipt));

    for claim in &plan.claims {
        let receipt = anvil.send(poster, Some(settlement), &plan.claim_calldata(claim));
        assert!(succeeded(&receipt), "claim: {receipt}");
        eprintln!("anvil: claim used {} gas", gas_used(&receipt));
        let balance = anvil.call(token, &XnodeToken::balanceOfCall(claim.account));
        assert_eq!(balance, claim.amount);
    }
    let again = anvil.send(
        poster,
        Some(settlement),
        &plan.claim_calldata(&plan.claims[0]),
    );
    assert!(!succeeded(&again), "a double claim was paid");
    assert_eq!(
        anvil.call(settlement, &Settlement::potOfCall(12)),
        U256::ZERO
    );
    assert_eq!(
        anvil.call(settlement, &Settlement::treasuryCall {}),
        U256::from(4_500 * TOKEN) - plan.total
    );
    for tenant in [[0xa1u8; 32], [0xb2; 32]] {
        assert_eq!(
            anvil.call(settlement, &Settlement::escrowOfCall(B256::from(tenant))),
            U256::ZERO
        );
    }
}
