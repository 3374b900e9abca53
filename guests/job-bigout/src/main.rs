//! HOSTILE `job-bigout` (kind = "job"): writes to stdout without end, in
//! 64 KiB writes of numbered lines.  Write errors (the host closed or capped
//! stdout) are ignored and the loop continues, so the host must stop the job
//! itself (output cap, fuel or timeout).  Proves: `limits.max_output_kb` is
//! enforced on captured stdout without unbounded host buffering.

use std::io::Write;

fn main() {
    let mut chunk = Vec::with_capacity(64 * 1024 + 128);
    let mut line: u64 = 0;
    let mut out = std::io::stdout();
    loop {
        chunk.clear();
        while chunk.len() < 64 * 1024 {
            line += 1;
            let _ = writeln!(chunk, "job-bigout line {line:>12} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        }
        let _ = out.write_all(&chunk);
    }
}
