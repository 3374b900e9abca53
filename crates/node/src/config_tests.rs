//! Tests of the node's configuration: defaults, TOML sections and every validation error.

use super::*;

fn valid(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        ..Config::default()
    }
}

#[test]
fn defaults_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(valid(dir.path()).validate(), Ok(()));
    let c = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    assert_eq!(c.validate(), Ok(()));
    // Tree reports must climb to the root before a slot closes.
    let slow = Config {
        observe_interval: Duration::from_secs(11),
        ..valid(dir.path())
    };
    assert!(matches!(
        slow.validate(),
        Err(ConfigError::Timing {
            field: "observe_interval",
            ..
        })
    ));
}

/// A settling node's sections from TOML, checked one mistake at a time.
#[test]
fn settlement_sections_parse_and_each_mistake_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let node = xnode_types::SecretKey::generate().node_id();
    let text = format!(
        r#"
        [chain]
        rpc_url = "http://127.0.0.1:8545"
        settlement_contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
        [settlement]
        enabled = true
        threshold = 1
        committee = [{{ node = "{node}", address = "0x00000000000000000000000000000000000000aa" }}]
        operators = [{{ node = "{node}", payout = "0x00000000000000000000000000000000000000bb" }}]
        grace = "2s"
        gather = "1s"
        [settlement.prices]
        egress_bytes = {{ amount = 7, per_units_log10 = 3 }}
        "#
    );
    let mut c: Config = toml::from_str(&text).unwrap();
    c.data_dir = dir.path().to_path_buf();
    c.listen = valid(dir.path()).listen;
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.settlement.grace, Duration::from_secs(2));
    assert_eq!(c.settlement.committee[0].node, node);
    // A price given replaces its default; the others keep theirs.
    let defaults = xnode_ledger::PriceTable::default();
    assert_eq!(
        c.settlement.prices.egress_bytes,
        xnode_ledger::Price::new(7, 3)
    );
    assert_eq!(
        c.settlement.prices.storage_byte_hours,
        defaults.storage_byte_hours
    );
    let misspelt = text.replace("egress_bytes", "egres_bytes");
    assert!(
        toml::from_str::<Config>(&misspelt).is_err(),
        "unknown price refused"
    );

    let refused = |change: &dyn Fn(&mut Config), expect: &str| {
        let mut changed = c.clone();
        change(&mut changed);
        let err = changed.validate().unwrap_err();
        assert!(matches!(err, ConfigError::Settlement(_)), "{err}");
        assert!(err.to_string().contains(expect), "{err} lacks {expect:?}");
    };
    refused(&|c| c.chain.rpc_url = None, "chain.rpc_url");
    refused(&|c| c.chain.rpc_url = Some("ftp://x".into()), "http(s)");
    refused(
        &|c| c.chain.settlement_contract = None,
        "settlement_contract",
    );
    refused(&|c| c.settlement.committee.clear(), "no member");
    refused(&|c| c.settlement.threshold = 2, "threshold");
    refused(&|c| c.settlement.threshold = 0, "threshold");
    refused(
        &|c| {
            let twice = c.settlement.committee[0].clone();
            c.settlement.committee.push(twice);
        },
        "twice",
    );
    refused(
        &|c| {
            c.settlement.operators.push(xnode_settle::OperatorPayout {
                node,
                payout: alloy_address(0xcc),
            })
        },
        "twice",
    );
    refused(
        &|c| c.chain.poster_key_file = Some(dir.path().join("missing.key")),
        "poster_key_file",
    );
    refused(
        &|c| c.storage.audit_epoch = Duration::from_secs(60),
        "audit_epoch",
    );
    refused(&|c| c.settlement.lookback_epochs = 0, "lookback_epochs");
    refused(
        &|c| c.settlement.prices.job_fuel.per_units_log10 = 39,
        "settlement.prices",
    );
    // Off, the sections are not checked (a disabled node needs no chain), except the
    // prices, so a bad table shows at start rather than when settlement is enabled.
    let mut off = c.clone();
    off.settlement.enabled = false;
    off.chain = xnode_settle::ChainConfig::default();
    assert_eq!(off.validate(), Ok(()));
    off.settlement.prices.worker_fuel.per_units_log10 = 40;
    assert!(off.validate().is_err());
}

fn alloy_address(byte: u8) -> xnode_settle::config::Address {
    xnode_settle::config::Address::repeat_byte(byte)
}

#[test]
fn unwritable_or_bad_data_dir_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = valid(&file).validate().unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    let nested = file.join("sub");
    let err = valid(&nested).validate().unwrap_err();
    assert!(err.to_string().starts_with("data dir"), "{err}");
}

#[test]
fn bad_addresses_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = valid(dir.path());
    c.listen = vec!["/ip4/127.0.0.1/udp/4001".parse().unwrap()];
    let err = c.validate().unwrap_err();
    assert!(matches!(err, ConfigError::Listen { .. }), "{err}");
    let mut c = valid(dir.path());
    c.bootstrap = vec!["/dns4/example/udp/1".parse().unwrap()];
    assert!(matches!(c.validate(), Err(ConfigError::Bootstrap { .. })));
    let mut c = valid(dir.path());
    c.listen.clear();
    assert!(matches!(c.validate(), Err(ConfigError::Listen { .. })));
}

#[test]
fn bad_names_and_timings_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = valid(dir.path());
    c.zone = "eu west".into();
    assert!(matches!(c.validate(), Err(ConfigError::Zone { .. })));
    let mut c = valid(dir.path());
    c.network = String::new();
    assert!(matches!(c.validate(), Err(ConfigError::Network { .. })));
    let mut c = valid(dir.path());
    c.swim.probe_timeout = Duration::ZERO;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Timing {
            field: "swim.probe_timeout",
            ..
        })
    ));
    let mut c = valid(dir.path());
    c.swim.suspicion_max = Duration::from_millis(1);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Timing {
            field: "swim.suspicion_max",
            ..
        })
    ));
}

#[test]
fn admission_policies_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = valid(dir.path());
    c.admission.policy = AdmissionPolicyName::Bonded;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("admission.min_bond"), "{err}");
    let mut bonded = c.clone();
    bonded.admission.min_bond = Some("10000000000000000000".into());
    let refused = |bonded: &Config, expected: &str| {
        let err = bonded.validate().unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    };
    refused(&bonded, "chain.rpc_url");
    bonded.chain.rpc_url = Some("ftp://x".into());
    refused(&bonded, "http(s)");
    bonded.chain.rpc_url = Some("http://127.0.0.1:8545".into());
    refused(&bonded, "chain.staking_contract");
    bonded.chain.staking_contract = Some(alloy_address(0xaa));
    // No configured table: payout bindings in the registry bind nodes to bonds.
    bonded.validate().unwrap();
    let node = xnode_types::SecretKey::generate().node_id();
    let payout = xnode_settle::OperatorPayout {
        node,
        payout: alloy_address(0xbb),
    };
    bonded.settlement.operators = vec![payout.clone(), payout.clone()];
    refused(&bonded, "twice");
    bonded.settlement.operators = vec![payout];
    bonded.validate().unwrap();
    assert_eq!(
        bonded.admission.bond_requirement().unwrap(),
        BondRequirement {
            min_bond: 10_000_000_000_000_000_000,
            probation_epochs: DEFAULT_PROBATION_EPOCHS
        }
    );
    for (text, expected) in [("0", "above zero"), ("-1", "min_bond"), ("ten", "min_bond")] {
        let mut wrong = bonded.clone();
        wrong.admission.min_bond = Some(text.into());
        refused(&wrong, expected);
    }
    let mut long = bonded.clone();
    long.admission.probation_epochs = Some(MAX_PROBATION_EPOCHS + 1);
    refused(&long, "probation_epochs");
    // Bond settings under another policy are a mistake, not silently ignored.
    let mut stray = valid(dir.path());
    stray.admission.min_bond = Some("1".into());
    refused(&stray, "only to the bonded policy");

    c.admission.policy = AdmissionPolicyName::Allowlist;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("admission.authority"), "{err}");
    c.admission.authority = Some("not hex".into());
    assert!(c.validate().is_err());
    let authority = xnode_types::SecretKey::generate().public();
    c.admission.authority = Some(authority.to_hex());
    c.validate().unwrap();
    c.admission.list_file = Some(dir.path().join("missing.list"));
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("no such file")
    );

    // An authority under the open policy is a mistake, not silently ignored.
    let mut open = valid(dir.path());
    open.admission.authority = Some(authority.to_hex());
    assert!(open.validate().is_err());
    let mut operator = valid(dir.path());
    operator.operator_key_file = Some(dir.path().join("missing.key"));
    assert!(operator.validate().is_err());

    let parsed: Config = toml::from_str(&format!(
        "[admission]\npolicy = \"allowlist\"\nauthority = \"{}\"\n",
        authority.to_hex()
    ))
    .unwrap();
    assert_eq!(parsed.admission.policy, AdmissionPolicyName::Allowlist);
}

#[test]
fn toml_round_trip_and_unknown_keys_rejected() {
    let c = Config::default();
    let text = toml::to_string(&c).unwrap();
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, c);
    let partial: Config =
        toml::from_str("zone = \"eu-1\"\nanti_entropy_interval = \"5s\"").unwrap();
    assert_eq!(partial.zone, "eu-1");
    assert_eq!(partial.anti_entropy_interval, Duration::from_secs(5));
    assert!(toml::from_str::<Config>("zonee = \"x\"").is_err());
}
