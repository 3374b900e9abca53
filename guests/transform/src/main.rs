//! `transform` (kind = "job", WASI preview 1 command).
//!
//! Reads `/in/input` (inputs are mounted read-only under `/in/<name>`), or
//! stdin when that file does not exist, and writes:
//!
//! * `/out/output.txt` – an upper-cased copy (skipped with `--lines-only`),
//! * `/out/stats.json` – `{"bytes":..,"lines":..,"source":..,"mode":..}`,
//!
//! then prints one summary line to stdout.  Exit code 0 on success, 1 with a
//! message on stderr for any error (bad argument, unreadable input,
//! unwritable `/out`).
//!
//! Options: `--lines-only`, `--input <path>`, `--out-dir <dir>`.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_INPUT: &str = "/in/input";
const DEFAULT_OUT_DIR: &str = "/out";

struct Opts {
    lines_only: bool,
    input: PathBuf,
    out_dir: PathBuf,
}

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        lines_only: false,
        input: PathBuf::from(DEFAULT_INPUT),
        out_dir: PathBuf::from(DEFAULT_OUT_DIR),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--lines-only" => opts.lines_only = true,
            "--input" => opts.input = args.next().ok_or("--input needs a path")?.into(),
            "--out-dir" => opts.out_dir = args.next().ok_or("--out-dir needs a directory")?.into(),
            "-h" | "--help" => {
                return Err("usage: transform [--lines-only] [--input PATH] [--out-dir DIR]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(opts)
}

fn json_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

fn run() -> Result<String, String> {
    let opts = parse_args()?;

    let (data, source) = match std::fs::read(&opts.input) {
        Ok(d) => (d, opts.input.display().to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut d = Vec::new();
            io::stdin()
                .read_to_end(&mut d)
                .map_err(|e| format!("reading stdin: {e}"))?;
            (d, "stdin".to_string())
        }
        Err(e) => return Err(format!("reading {}: {e}", opts.input.display())),
    };

    let bytes = data.len();
    let lines = data.iter().filter(|&&b| b == b'\n').count()
        + usize::from(data.last().is_some_and(|&b| b != b'\n'));

    let mode = if opts.lines_only { "lines-only" } else { "upper" };
    if !opts.lines_only {
        let upper: Vec<u8> = match std::str::from_utf8(&data) {
            Ok(s) => s.to_uppercase().into_bytes(),
            Err(_) => data.to_ascii_uppercase(),
        };
        let path = opts.out_dir.join("output.txt");
        std::fs::write(&path, &upper).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let stats = format!(
        "{{\"bytes\":{bytes},\"lines\":{lines},\"source\":\"{}\",\"mode\":\"{mode}\"}}\n",
        json_escape(&source)
    );
    let path = opts.out_dir.join("stats.json");
    std::fs::write(&path, stats).map_err(|e| format!("writing {}: {e}", path.display()))?;

    Ok(format!(
        "transform: {bytes} bytes, {lines} lines from {source} ({mode}) -> {}",
        opts.out_dir.display()
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(summary) => {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{summary}");
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("transform: error: {msg}");
            ExitCode::from(1)
        }
    }
}
