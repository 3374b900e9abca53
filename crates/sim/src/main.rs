//! `xnode-sim`: runs the membership and aggregation simulation and prints its report.
//!
//! Usage: `xnode-sim [--nodes N] [--warmup SECONDS] [--steady SECONDS] [--deaths N]
//! [--joins N] [--settle SECONDS] [--tail SECONDS] [--loss FRACTION] [--keys N] [--seed N]
//! [--full-push-pull] [--observe | --no-observe]`
//! (`--full-push-pull`: periodic push-pulls send the whole view, as before protocol 1.3;
//! `--no-observe`: no summary aggregation, which is on by default; `--tail`: quiet time
//! after the deaths and joins, so the aggregation slots open during them become final)
//!
//! `xnode-sim registry [--nodes N] [--entries N] [--value-bytes N] [--interval S]
//! [--steady S] [--limit S] [--loss F] [--seed N]` runs the registry's anti-entropy
//! instead (see `xnode_sim::registry`).

use std::process::ExitCode;
use std::time::Duration;

use xnode_sim::registry::RegistrySimConfig;
use xnode_sim::{SimConfig, run};

fn parse_registry(args: &[String]) -> Result<RegistrySimConfig, String> {
    let mut config = RegistrySimConfig::default();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        let count = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        let seconds = || {
            number().and_then(|s| {
                Duration::try_from_secs_f64(s).map_err(|e| format!("{flag} {value}: {e}"))
            })
        };
        match flag.as_str() {
            "--nodes" => config.nodes = count()?,
            "--entries" => config.entries = count()?,
            "--value-bytes" => config.value_bytes = count()?,
            "--interval" => config.interval = seconds()?,
            "--steady" => config.steady = seconds()?,
            "--limit" => config.limit = seconds()?,
            "--loss" => config.links.loss = number()?.clamp(0.0, 1.0),
            "--seed" => config.seed = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if config.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if config.interval.is_zero() {
        return Err("--interval must be positive".into());
    }
    if config.value_bytes > 16 * 1024 {
        return Err("--value-bytes must be at most 16384".into());
    }
    Ok(config)
}

fn parse(args: &[String]) -> Result<SimConfig, String> {
    let mut config = SimConfig::default();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--full-push-pull" => {
                config.full_push_pull = true;
                continue;
            }
            "--observe" => {
                config.observe = true;
                continue;
            }
            "--no-observe" => {
                config.observe = false;
                continue;
            }
            _ => {}
        }
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        let count = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        let seconds = || {
            number().and_then(|s| {
                Duration::try_from_secs_f64(s).map_err(|e| format!("{flag} {value}: {e}"))
            })
        };
        match flag.as_str() {
            "--nodes" => config.nodes = count()?,
            "--steady" => config.steady = seconds()?,
            "--warmup" => config.warmup = seconds()?,
            "--deaths" => config.deaths = count()?,
            "--joins" => config.joins = count()?,
            "--settle" => config.settle = seconds()?,
            "--tail" => config.tail = seconds()?,
            "--loss" => config.links.loss = number()?.clamp(0.0, 1.0),
            "--keys" => config.placement_keys = count()?,
            "--seed" => config.seed = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if config.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "registry") {
        return match parse_registry(&args[1..]) {
            Ok(config) => {
                print!("{}", xnode_sim::registry::run(config));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xnode-sim registry: {e}");
                eprintln!(
                    "usage: xnode-sim registry [--nodes N] [--entries N] [--value-bytes N] [--interval S] [--steady S] [--limit S] [--loss F] [--seed N]"
                );
                ExitCode::from(2)
            }
        };
    }
    match parse(&args) {
        Ok(config) => {
            print!("{}", run(config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xnode-sim: {e}");
            eprintln!(
                "usage: xnode-sim [--nodes N] [--warmup S] [--steady S] [--deaths N] [--joins N] [--settle S] [--tail S] [--loss F] [--keys N] [--seed N] [--full-push-pull] [--observe | --no-observe]"
            );
            ExitCode::from(2)
        }
    }
}
