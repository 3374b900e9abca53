//! The quick, deterministic runner CI uses: every seed of a target, then a fixed number of
//! mutations of the seeds (bit flips, truncations, byte insertions and deletions, splices
//! of two seeds, and length fields forced to their extremes), each run under
//! `catch_unwind` so that a panic is reported with the target's name and the input.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::Target;

/// A panic of a target on one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: &'static str,
    /// The input that panicked, in hex.
    pub input_hex: String,
    /// The panic's message, when it was a string.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {} panicked ({}) on input {}",
            self.target, self.message, self.input_hex
        )
    }
}

/// What one run of a target covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub seeds: usize,
    pub mutations: usize,
}

/// Varint and fixed-width encodings of extreme lengths, written over a seed's bytes to
/// forge length fields and counts (postcard writes lengths as LEB128 varints).
const EXTREMES: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    ],
    &[0xff, 0xff, 0x03],
    &[0x00],
    &[0x7f],
    &[0xff; 8],
];

/// A small deterministic generator (xorshift64*), so CI runs the same inputs every time.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The `index`-th mutation of `seed`, splicing with `other` where the kind asks for it.
pub fn mutate(seed: &[u8], other: &[u8], index: usize, rng_seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(rng_seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = seed.to_vec();
    let len = out.len();
    match index % 7 {
        // One to four bit flips.
        0 if len > 0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
        }
        // A truncation.
        1 => out.truncate(rng.below(len + 1)),
        // Bytes inserted, chosen among values that mean something to a decoder.
        2 => {
            let at = rng.below(len + 1);
            let byte = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)];
            for _ in 0..1 + rng.below(3) {
                out.insert(at, byte);
            }
        }
        // A run of bytes deleted.
        3 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(8)).min(len);
            out.drain(at..end);
        }
        // The head of one seed with the tail of another.
        4 => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        // A length field forced to an extreme, written over the bytes at some offset.
        5 => {
            let extreme = EXTREMES[rng.below(EXTREMES.len())];
            let at = rng.below(len + 1);
            let end = (at + extreme.len()).min(len);
            out.splice(at..end, extreme.iter().copied());
        }
        // Random bytes over a window (also the fallback for empty seeds).
        _ => {
            if len == 0 {
                out = (0..rng.below(32)).map(|_| rng.next() as u8).collect();
            } else {
                let at = rng.below(len);
                for byte in out.iter_mut().skip(at).take(1 + rng.below(8)) {
                    *byte = rng.next() as u8;
                }
            }
        }
    }
    out
}

/// Runs `input` through `target`, turning a panic into a [`Failure`].
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), Failure> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        Failure {
            target: target.name,
            input_hex: hex(input),
            message,
        }
    })
}

/// Runs every seed, then `mutations` mutations spread over the seeds in turn, and stops at
/// the first panic.
pub fn check(target: &Target, seeds: &[Vec<u8>], mutations: usize) -> Result<Coverage, Failure> {
    for seed in seeds {
        run_one(target, seed)?;
    }
    let empty = Vec::new();
    let name_seed = target.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    for i in 0..mutations {
        let seed = seeds.get(i % seeds.len().max(1)).unwrap_or(&empty);
        let other = seeds
            .get((i / 7 + 1) % seeds.len().max(1))
            .unwrap_or(&empty);
        run_one(target, &mutate(seed, other, i, name_seed))?;
    }
    Ok(Coverage {
        seeds: seeds.len(),
        mutations,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn panics_on_a_forged_length(data: &[u8]) {
        // The bug the harness must catch: trusting a length byte from the input.
        if let Some(&len) = data.first() {
            let _ = data[1..1 + usize::from(len)].len();
        }
    }

    fn never_panics(_: &[u8]) {}

    #[test]
    fn a_panicking_decoder_is_caught_with_its_name_and_input() {
        let target = Target {
            name: "test_forged_length",
            run: panics_on_a_forged_length,
        };
        // The seed itself is valid (its length byte matches); only mutations break it.
        let seeds = vec![vec![3, 1, 2, 3]];
        let failure = check(&target, &seeds, 200).unwrap_err();
        assert_eq!(failure.target, "test_forged_length");
        assert!(failure.message.contains("out of range"), "{failure}");
        let input: Vec<u8> = (0..failure.input_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&failure.input_hex[i..i + 2], 16).unwrap())
            .collect();
        assert!(std::panic::catch_unwind(|| panics_on_a_forged_length(&input)).is_err());
    }

    #[test]
    fn a_sound_decoder_passes_and_mutations_are_deterministic() {
        let target = Target {
            name: "test_sound",
            run: never_panics,
        };
        let seeds = vec![b"hello".to_vec(), vec![]];
        assert_eq!(
            check(&target, &seeds, 50),
            Ok(Coverage {
                seeds: 2,
                mutations: 50
            })
        );
        for i in 0..50 {
            assert_eq!(
                mutate(b"abcdef", b"xyz", i, 9),
                mutate(b"abcdef", b"xyz", i, 9)
            );
        }
        let distinct: std::collections::BTreeSet<Vec<u8>> =
            (0..50).map(|i| mutate(b"abcdef", b"xyz", i, 9)).collect();
        assert!(
            distinct.len() > 30,
            "mutations barely differ: {}",
            distinct.len()
        );
    }
}
