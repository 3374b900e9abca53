//! Full-object checksums of multipart uploads (`x-amz-checksum-type: FULL_OBJECT`): the
//! CRC of the whole object, made from the CRCs of its parts and their sizes, without
//! reading the object again.
//!
//! CRC32, CRC32C and CRC64NVME are reflected CRCs whose initial value and final XOR are
//! all ones, so the CRC of `A || B` is `CRC(A) * x^(8 |B|) + CRC(B)` modulo the
//! polynomial (zlib's `crc32_combine`). Each part's CRC was verified when it was
//! uploaded, so the combined value is the CRC of the object's bytes, and a value the
//! client sends on completion is checked against it. SHA-1 and SHA-256 cannot be
//! combined: S3 allows them only as `COMPOSITE` checksums (a checksum of checksums).

/// A reflected CRC: its polynomial (bit-reversed, as the table-driven code uses it) and
/// its width in bits.
#[derive(Clone, Copy, Debug)]
struct Crc {
    reflected_polynomial: u64,
    width: u32,
}

const CRC32: Crc = Crc {
    reflected_polynomial: 0xEDB8_8320,
    width: 32,
};
const CRC32C: Crc = Crc {
    reflected_polynomial: 0x82F6_3B78,
    width: 32,
};
const CRC64NVME: Crc = Crc {
    reflected_polynomial: 0x9A6C_9329_AC4B_C9B5,
    width: 64,
};

/// The CRC of an S3 checksum algorithm (lower-case name), if it is one.
fn crc_of(algorithm: &str) -> Option<Crc> {
    match algorithm {
        "crc32" => Some(CRC32),
        "crc32c" => Some(CRC32C),
        "crc64nvme" => Some(CRC64NVME),
        _ => None,
    }
}

/// Whether S3 can make a full-object checksum with `algorithm` (the CRCs only).
pub(super) fn supports_full_object(algorithm: &str) -> bool {
    crc_of(algorithm).is_some()
}

impl Crc {
    /// `x^0` in the reflected representation: the top bit.
    fn one(self) -> u64 {
        1u64 << (self.width - 1)
    }

    /// `a * b` modulo the polynomial (both reflected).
    fn multiply(self, a: u64, mut b: u64) -> u64 {
        let mut bit = self.one();
        let mut product = 0u64;
        for _ in 0..self.width {
            if a & bit != 0 {
                product ^= b;
            }
            bit >>= 1;
            b = if b & 1 != 0 {
                (b >> 1) ^ self.reflected_polynomial
            } else {
                b >> 1
            };
        }
        product
    }

    /// `x^(8 bytes)` modulo the polynomial, by repeated squaring.
    fn shift_by_bytes(self, bytes: u64) -> u64 {
        let mut result = self.one();
        // x^8: eight places below x^0 in the reflected representation.
        let mut square = self.one() >> 8;
        let mut n = bytes;
        while n != 0 {
            if n & 1 != 0 {
                result = self.multiply(square, result);
            }
            square = self.multiply(square, square);
            n >>= 1;
        }
        result
    }

    /// The CRC of `A || B` from `CRC(A)`, `CRC(B)` and `|B|` in bytes.
    fn combine(self, first: u64, second: u64, second_len: u64) -> u64 {
        self.multiply(self.shift_by_bytes(second_len), first) ^ second
    }

    /// A CRC value as S3 shows it: big-endian bytes of the CRC's width.
    fn decode(self, bytes: &[u8]) -> Option<u64> {
        let len = usize::try_from(self.width / 8).ok()?;
        if bytes.len() != len {
            return None;
        }
        Some(bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
    }

    fn encode(self, value: u64) -> Vec<u8> {
        let len = usize::try_from(self.width / 8).unwrap_or(8);
        value.to_be_bytes()[8 - len.min(8)..].to_vec()
    }
}

/// The full-object checksum of an object made of parts with these checksums (raw bytes,
/// as S3 shows them once base64 is removed) and sizes, in order. `None` when `algorithm`
/// is not a CRC or a part's checksum is not a value of its width.
pub(super) fn combine_parts(algorithm: &str, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
    let crc = crc_of(algorithm)?;
    // The CRC of no bytes is 0 for these CRCs (all-ones start and final XOR).
    let mut whole = 0u64;
    for (sum, size) in parts {
        whole = crc.combine(whole, crc.decode(sum)?, *size);
    }
    Some(crc.encode(whole))
}

#[cfg(test)]
mod tests {
    use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme};

    use super::*;

    fn digest(algorithm: &str, data: &[u8]) -> Vec<u8> {
        match algorithm {
            "crc32" => Crc32::checksum(data).as_ref().to_vec(),
            "crc32c" => Crc32c::checksum(data).as_ref().to_vec(),
            _ => Crc64Nvme::checksum(data).as_ref().to_vec(),
        }
    }

    #[test]
    fn combined_part_crcs_are_the_crc_of_the_whole() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for algorithm in ["crc32", "crc32c", "crc64nvme"] {
            for cuts in [
                vec![0, 70_000],
                vec![0, 1, 70_000],
                vec![0, 5, 5, 65_536, 70_000],
                vec![0, 33_333, 66_666, 70_000],
            ] {
                let parts: Vec<(Vec<u8>, u64)> = cuts
                    .windows(2)
                    .map(|w| (digest(algorithm, &data[w[0]..w[1]]), (w[1] - w[0]) as u64))
                    .collect();
                assert_eq!(
                    combine_parts(algorithm, &parts),
                    Some(digest(algorithm, &data)),
                    "{algorithm} {cuts:?}"
                );
            }
        }
    }

    #[test]
    fn the_suites_three_part_values() {
        // ceph/s3-tests' test_multipart_use_cksum_helper_crc32: three 5 MiB parts of
        // 'A', 'B' and 'C', whose full-object CRC32 is WgDhBQ==.
        let mib5 = 5 * 1024 * 1024;
        let parts: Vec<(Vec<u8>, u64)> = [b'A', b'B', b'C']
            .iter()
            .map(|c| (digest("crc32", &vec![*c; mib5]), mib5 as u64))
            .collect();
        let whole = combine_parts("crc32", &parts).unwrap();
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(whole),
            "WgDhBQ=="
        );
    }

    #[test]
    fn only_crcs_of_their_own_width_combine() {
        assert!(supports_full_object("crc64nvme"));
        assert!(!supports_full_object("sha256"));
        assert_eq!(combine_parts("sha1", &[(vec![0; 20], 1)]), None);
        assert_eq!(combine_parts("crc32", &[(vec![0; 8], 1)]), None);
        assert_eq!(combine_parts("crc32", &[]), Some(vec![0; 4]));
    }
}
