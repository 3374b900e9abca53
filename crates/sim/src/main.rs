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

/// A flag and its value, parsed with errors that name both.
struct Arg<'a> {
    flag: &'a str,
    value: &'a str,
}

impl Arg<'_> {
    fn parse<T: std::str::FromStr<Err: std::fmt::Display>>(&self) -> Result<T, String> {
        self.value
            .parse()
            .map_err(|e| format!("{} {}: {e}", self.flag, self.value))
    }

    fn seconds(&self) -> Result<Duration, String> {
        Duration::try_from_secs_f64(self.parse()?)
            .map_err(|e| format!("{} {}: {e}", self.flag, self.value))
    }
}

fn parse_registry(args: &[String]) -> Result<RegistrySimConfig, String> {
    let mut config = RegistrySimConfig::default();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let arg = Arg { flag, value };
        match flag.as_str() {
            "--nodes" => config.nodes = arg.parse()?,
            "--entries" => config.entries = arg.parse()?,
            "--value-bytes" => config.value_bytes = arg.parse()?,
            "--interval" => config.interval = arg.seconds()?,
            "--steady" => config.steady = arg.seconds()?,
            "--limit" => config.limit = arg.seconds()?,
            "--loss" => config.links.loss = arg.parse::<f64>()?.clamp(0.0, 1.0),
            "--seed" => config.seed = arg.parse()?,
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
        let arg = Arg { flag, value };
        match flag.as_str() {
            "--nodes" => config.nodes = arg.parse()?,
            "--steady" => config.steady = arg.seconds()?,
            "--warmup" => config.warmup = arg.seconds()?,
            "--deaths" => config.deaths = arg.parse()?,
            "--joins" => config.joins = arg.parse()?,
            "--settle" => config.settle = arg.seconds()?,
            "--tail" => config.tail = arg.seconds()?,
            "--loss" => config.links.loss = arg.parse::<f64>()?.clamp(0.0, 1.0),
            "--keys" => config.placement_keys = arg.parse()?,
            "--seed" => config.seed = arg.parse()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if config.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    Ok(config)
}

/// Prints a report; a reader that went away (`| head`) is not an error.
fn emit(report: &impl std::fmt::Display) -> ExitCode {
    use std::io::Write;
    match write!(std::io::stdout().lock(), "{report}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("xnode-sim: cannot print the report: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "registry") {
        return match parse_registry(&args[1..]) {
            Ok(config) => emit(&xnode_sim::registry::run(config)),
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
        Ok(config) => emit(&run(config)),
        Err(e) => {
            eprintln!("xnode-sim: {e}");
            eprintln!(
                "usage: xnode-sim [--nodes N] [--warmup S] [--steady S] [--deaths N] [--joins N] [--settle S] [--tail S] [--loss F] [--keys N] [--seed N] [--full-push-pull] [--observe | --no-observe]"
            );
            ExitCode::from(2)
        }
    }
}
