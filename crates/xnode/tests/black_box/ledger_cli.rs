//! Black-box test of the ledger routes and commands on a real node process with settlement
//! off (its default): the claim route answers its documented codes, `xnode rewards` says
//! settlement is off, `xnode ledger receipts` filters by tenant, and the chain commands
//! explain what they lack instead of failing obscurely. The chain side runs against anvil
//! in `crates/xnode/src/chain_cmd/chain_anvil_tests.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(xnode()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn claim_route_codes_and_commands_with_settlement_off() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Proc::new(root.path(), "n0", Vec::new());
    node.start();
    let api = node.api_url.clone();
    wait_until("the node to answer", Duration::from_secs(30), || {
        get(&api, "/v1/ledger/status").is_some()
    });

    let status = get(&api, "/v1/ledger/status").unwrap();
    assert_eq!(status["enabled"], false);
    assert_eq!(status["operators"], serde_json::json!([]));

    let answer = |path: &str| {
        let response = http().get(format!("{api}{path}")).send().unwrap();
        let code = response.status().as_u16();
        let body: serde_json::Value = response.json().unwrap();
        (
            code,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert_eq!(
        answer("/v1/ledger/epoch/1/claim/not-an-address"),
        (400, "bad_request".into())
    );
    assert_eq!(
        answer("/v1/ledger/epoch/1/claim/0x00000000000000000000000000000000000000aa"),
        (404, "not_found".into())
    );
    // The OpenAPI document lists the route.
    let openapi = get(&api, "/v1/openapi.json").unwrap();
    assert!(
        openapi["paths"]["/v1/ledger/epoch/{n}/claim/{address}"].is_object(),
        "the claim route is not in the OpenAPI document"
    );

    let (ok, out, err) = run(&["rewards", "--api", &api]);
    assert!(ok && out.contains("settlement is off"), "{out}{err}");
    let tenant = "ab".repeat(32);
    let (ok, out, err) = run(&[
        "ledger", "receipts", "--api", &api, "--tenant", &tenant, "--json",
    ]);
    assert!(ok, "{err}");
    let listing: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listing["receipts"], serde_json::json!([]));
    let (ok, _, err) = run(&["ledger", "receipts", "--api", &api, "--tenant", "ab&x"]);
    assert!(!ok && err.contains("is not an id"), "{err}");

    // Chain commands without a chain say what is missing.
    let (ok, _, err) = run(&[
        "stake",
        "status",
        "--address",
        "0x00000000000000000000000000000000000000aa",
    ]);
    assert!(!ok && err.contains("--rpc"), "{err}");
    let (ok, _, err) = run(&["stake", "bond", "10", "--rpc", "http://127.0.0.1:9"]);
    assert!(!ok && err.contains("--staking"), "{err}");
    let (ok, _, err) = run(&["escrow", "deposit", "0", "--tenant", &tenant]);
    assert!(!ok && err.contains("above zero"), "{err}");
}
