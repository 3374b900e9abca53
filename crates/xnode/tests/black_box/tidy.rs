//! The rules a reviewer would otherwise check by hand (as rust-analyzer's `tidy.rs` does):
//! dependencies point down the documented layers only, the storage path never compiles
//! the WebAssembly engine, every module says what it is for, and source files stay small
//! enough to read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom to top (ARCHITECTURE.md's code map). A crate may depend only on
/// crates listed before it. `test-cluster` is test-only and may use everything.
const LAYERS: &[&str] = &[
    "types",
    "wire",
    "db",
    "worker",
    "serve",
    "registry",
    "mesh",
    "store",
    "observe",
    "compute",
    "ledger",
    "chain",
    "settle",
    "metering",
    "storage",
    "deploy",
    "node",
    "s3",
    "studio",
    "api",
    "xnode",
    "fuzz",
    "sim",
    "test-cluster",
];

/// Crates that must never depend on the WebAssembly engine, directly or not.
const WITHOUT_WASMTIME: &[&str] = &["store", "storage", "s3", "registry", "mesh", "db"];

/// Source files allowed above the size limit, and why (ARCHITECTURE.md says the same).
const LONG_FILES: &[(&str, &str)] = &[(
    "crates/mesh/src/driver.rs",
    "the mesh driver is the single owner of the swarm; its event loop stays in one place",
)];

const MAX_LINES: usize = 900;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

/// The `xnode-*` crates named in one section (`[dependencies]`, `[build-dependencies]`)
/// of a manifest.
fn internal_deps(manifest: &str, section: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == section;
            continue;
        }
        if inside && let Some(name) = line.strip_prefix("xnode-") {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn crates() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if manifest.exists() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read_to_string(manifest).unwrap());
        }
    }
    out
}

#[test]
fn every_crate_is_in_a_documented_layer() {
    for name in crates().keys() {
        assert!(
            LAYERS.contains(&name.as_str()),
            "crates/{name} is not in the layer list; add it to LAYERS here and to ARCHITECTURE.md"
        );
    }
}

#[test]
fn dependencies_point_down_the_layers_only() {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut violations = Vec::new();
    for (name, manifest) in crates() {
        let Some(own) = rank(&name) else { continue };
        if name == "test-cluster" {
            continue;
        }
        for section in ["[dependencies]", "[build-dependencies]"] {
            for dep in internal_deps(&manifest, section) {
                match rank(&dep) {
                    Some(r) if r < own => {}
                    _ => violations.push(format!("{name} depends on {dep} ({section})")),
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies that point up or sideways:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_storage_path_never_builds_the_webassembly_engine() {
    for name in WITHOUT_WASMTIME {
        let package = format!("xnode-{name}");
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(workspace())
            .args([
                "tree",
                "--offline",
                "-e",
                "normal,build",
                "--prefix",
                "none",
                "-p",
                &package,
            ])
            .output()
            .expect("cargo tree");
        assert!(
            out.status.success(),
            "cargo tree -p {package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        let engine: Vec<&str> = tree
            .lines()
            .filter(|l| l.starts_with("wasmtime") || l.starts_with("cranelift"))
            .collect();
        assert!(engine.is_empty(), "{package} pulls in {engine:?}");
        assert!(
            tree.contains(&package),
            "cargo tree printed nothing for {package}"
        );
    }
}

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for name in crates().keys() {
        let src = workspace().join("crates").join(name).join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    out.sort();
    out
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.strip_prefix(workspace()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` line saying what they are for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn source_files_stay_readable() {
    let root = workspace();
    let long: Vec<String> = sources()
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&root).unwrap().display().to_string();
            let lines = std::fs::read_to_string(&p).unwrap().lines().count();
            (lines > MAX_LINES && !LONG_FILES.iter().any(|(f, _)| *f == rel))
                .then(|| format!("{rel}: {lines} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines (split them, or add them to LONG_FILES with the reason):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_internal_dependency_parser_reads_sections() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nxnode-types.workspace = true\nxnode-wire = { path = \"../wire\" }\nserde = \"1\"\n[dev-dependencies]\nxnode-node.workspace = true\n";
    let deps = internal_deps(manifest, "[dependencies]");
    assert_eq!(
        deps,
        BTreeSet::from(["types".to_owned(), "wire".to_owned()])
    );
    assert_eq!(
        internal_deps(manifest, "[dev-dependencies]"),
        BTreeSet::from(["node".to_owned()])
    );
}
