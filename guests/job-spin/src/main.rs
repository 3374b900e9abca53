//! HOSTILE `job-spin` (kind = "job"): an infinite loop that cannot be
//! optimised away.  Proves: fuel / wall-clock timeouts kill a job.

use std::hint::black_box;

fn main() {
    println!("job-spin: spinning forever");
    let mut n: u64 = 0;
    while black_box(n) != u64::MAX {
        n = black_box(n.wrapping_add(1));
    }
    println!("job-spin: finished?! {n}");
}
