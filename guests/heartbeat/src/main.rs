//! `heartbeat` (kind = "worker", WASI preview 1 command).
//!
//! Loops forever.  Every `INTERVAL_SECS` seconds (default 2, fractions
//! allowed) it writes `/out/heartbeat.json` = `{"count":n,"unix_ms":..}` (the
//! host publishes `/out` files as objects periodically) and prints
//! `heartbeat count=n unix_ms=..` to stdout.
//!
//! If `CRASH_AFTER=k` is set it exits with code 3 once `count` reaches `k`
//! (used to test restart-with-backoff), and `EXIT_AFTER=k` makes it exit 0
//! at count `k` (a finite job that takes `k` intervals).  `HEARTBEAT_FILE`
//! overrides the path.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse::<f64>().ok())
}

fn main() -> ExitCode {
    let interval = env_f64("INTERVAL_SECS")
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(2.0);
    let interval = Duration::from_secs_f64(interval);
    let crash_after: Option<u64> = std::env::var("CRASH_AFTER")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    let exit_after: Option<u64> = std::env::var("EXIT_AFTER")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    let file = std::env::var("HEARTBEAT_FILE").unwrap_or_else(|_| "/out/heartbeat.json".into());

    let mut count: u64 = 0;
    loop {
        count += 1;
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let json = format!("{{\"count\":{count},\"unix_ms\":{unix_ms}}}\n");
        if let Err(e) = std::fs::write(&file, &json) {
            eprintln!("heartbeat: writing {file}: {e}");
        }
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "heartbeat count={count} unix_ms={unix_ms}");
            let _ = out.flush();
        }
        if crash_after.is_some_and(|k| count >= k) {
            eprintln!("heartbeat: CRASH_AFTER={} reached, exiting with code 3", count);
            return ExitCode::from(3);
        }
        if exit_after.is_some_and(|k| count >= k) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(interval);
    }
}
