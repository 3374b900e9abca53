//! End-to-end test of Xnode Studio in real headless Chromium: three real `xnode` processes
//! in three zones, and `crates/studio/e2e/studio.mjs` (playwright-core driving Debian's
//! Chromium) opening the Studio, importing the CLI's tenant key, creating a bucket,
//! uploading and downloading a file, reading the charts and watching a killed node's state
//! change within 5 s. Screenshots of every page go to `tests-artifacts/studio/`.
//!
//! Needs `/usr/bin/chromium` and the e2e packages (`npm ci` in `crates/studio/e2e`), which
//! `scripts/test.sh` installs. Without them the test says so and passes, unless `CI` is set,
//! where it fails: CI must never skip it silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the browser and the e2e packages are here; if not, fails in CI, else explains.
fn prerequisites() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let e2e = repo_root().join("crates/studio/e2e");
    let mut missing = Vec::new();
    if !PathBuf::from(&chromium).exists() {
        missing.push(format!("Chromium at {chromium} (apt-get install chromium)"));
    }
    if !e2e.join("node_modules/playwright-core").exists() {
        missing.push(format!("playwright-core (npm ci in {})", e2e.display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("Node.js".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "the Studio end-to-end test needs {}; ./scripts/test.sh installs them",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

#[test]
fn studio_end_to_end_in_chromium() {
    if !prerequisites() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| Proc::new(root.path(), &format!("n{i}"), Vec::new()))
        .collect();
    let addrs: Vec<String> = procs.iter().map(|p| p.p2p_addr()).collect();
    for (i, p) in procs.iter_mut().enumerate() {
        p.bootstrap = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        p.extra_args = vec!["--zone".into(), format!("zone-{}", ["a", "b", "c"][i])];
        p.start();
    }
    for p in &procs {
        let api = p.api_url.clone();
        wait_until("every node sees 3 alive", Duration::from_secs(30), || {
            states(&api).is_some_and(|s| s.iter().filter(|(_, st)| st == "alive").count() == 3)
        });
    }

    // A tenant key made by the CLI, imported by the Studio: both share the tenant.
    let key = root.path().join("tenant.key");
    let made = Command::new(xnode())
        .args(["key", "new", "--file", key.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tenant = Command::new(xnode())
        .args(["key", "tenant", "--file", key.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let tenant: serde_json::Value = serde_json::from_slice(&tenant.stdout).unwrap();
    let tenant = tenant["tenant"].as_str().unwrap().to_owned();

    let nodes: Vec<serde_json::Value> = procs
        .iter()
        .map(|p| {
            serde_json::json!({
                "pid": p.child.as_ref().unwrap().id(),
                "api_url": p.api_url,
            })
        })
        .collect();
    let artifacts = repo_root().join("tests-artifacts/studio");
    let output = Command::new("node")
        .arg("studio.mjs")
        .current_dir(repo_root().join("crates/studio/e2e"))
        .env("STUDIO_URL", &procs[0].api_url)
        .env("STUDIO_NODES", serde_json::to_string(&nodes).unwrap())
        .env("STUDIO_TENANT_KEY", &key)
        .env("STUDIO_ARTIFACTS", &artifacts)
        .env("STUDIO_REQUIRE_COMPUTE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the Studio e2e script failed (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );

    // The Studio signed as the CLI's tenant, and what it uploaded is readable by the CLI.
    assert!(
        stdout.contains(&format!("STUDIO_TENANT={tenant}")),
        "the Studio did not show the imported tenant {tenant}"
    );
    let bucket = stdout
        .lines()
        .find_map(|l| l.strip_prefix("STUDIO_BUCKET="))
        .expect("the script names its bucket")
        .to_owned();
    let ls = Command::new(xnode())
        .args([
            "ls",
            &bucket,
            "--api",
            &procs[0].api_url,
            "--tenant-key",
            key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.status.success() && listing.contains("hello.bin"),
        "the CLI does not see the Studio's upload: {listing} {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let got = root.path().join("hello.bin");
    let get = Command::new(xnode())
        .args([
            "get",
            &format!("{bucket}/hello.bin"),
            got.to_str().unwrap(),
            "--api",
            &procs[0].api_url,
            "--tenant-key",
            key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(
        std::fs::metadata(&got).unwrap().len(),
        2 * 1024 * 1024 + 12345
    );
}
