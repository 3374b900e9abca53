//! Integer and fixed-point arithmetic that never overflows, panics or rounds differently
//! on two machines.
//!
//! Settlement must be recomputable bit for bit, so there is no floating point anywhere:
//! fractions are parts per million ([`PPM`]) or explicit rationals, products are taken in
//! 256 bits where they could exceed `u128`, and every rounding is a floor (documented at
//! each use). Functions return `Option` or saturate rather than wrap.

/// One, in parts per million: scores, decay factors and ratios use this scale.
pub const PPM: u64 = 1_000_000;

/// `floor(a * b / d)` and the remainder `(a * b) mod d`, with a 256-bit intermediate
/// product. `None` if `d == 0` or the quotient does not fit in a `u128`.
pub fn mul_div_rem(a: u128, b: u128, d: u128) -> Option<(u128, u128)> {
    if d == 0 {
        return None;
    }
    if let Some(product) = a.checked_mul(b) {
        return Some((product / d, product % d));
    }
    let (high, low) = widening_mul(a, b);
    divide_wide(high, low, d)
}

/// `floor(a * b / d)`; `None` if `d == 0` or the quotient does not fit in a `u128`.
pub fn mul_div(a: u128, b: u128, d: u128) -> Option<u128> {
    mul_div_rem(a, b, d).map(|(quotient, _)| quotient)
}

/// `floor(amount * ppm / 1_000_000)` for `ppm <= 1_000_000`, which can never overflow
/// (the result is at most `amount`); larger `ppm` values are clamped to one.
pub fn scale_ppm(amount: u128, ppm: u64) -> u128 {
    let ppm = ppm.min(PPM);
    mul_div(amount, u128::from(ppm), u128::from(PPM)).unwrap_or(amount)
}

/// `factor^exponent` for a fixed-point `factor` in ppm (at most one), by squaring, with a
/// floor after every multiplication. The result is in ppm and never exceeds one.
pub fn pow_ppm(factor: u64, mut exponent: u64) -> u64 {
    let one = u128::from(PPM);
    let mut base = u128::from(factor.min(PPM));
    let mut result = one;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = result * base / one;
        }
        base = base * base / one;
        exponent >>= 1;
        if result == 0 {
            break;
        }
    }
    // `result <= one` throughout, so it fits in u64.
    u64::try_from(result).unwrap_or(PPM)
}

/// The full 256-bit product of two `u128`s as `(high, low)` halves.
fn widening_mul(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a_high, a_low) = (a >> 64, a & MASK);
    let (b_high, b_low) = (b >> 64, b & MASK);
    let low_low = a_low * b_low;
    let low_high = a_low * b_high;
    let high_low = a_high * b_low;
    let high_high = a_high * b_high;
    // Sum of the middle terms and the carry out of the low word; each part is < 2^64,
    // so this sum is < 3 * 2^64 and cannot overflow.
    let middle = (low_low >> 64) + (low_high & MASK) + (high_low & MASK);
    let low = (low_low & MASK) | (middle << 64);
    let high = high_high + (low_high >> 64) + (high_low >> 64) + (middle >> 64);
    (high, low)
}

/// Divides the 256-bit number `high:low` by `d`, returning `(quotient, remainder)`, or
/// `None` if the quotient needs more than 128 bits (`high >= d`).
///
/// Schoolbook division in 64-bit digits (Knuth's algorithm D): with a divisor below 2^64
/// each digit is one `u128 / u64` division; otherwise the divisor is normalised so its top
/// bit is set, each quotient digit is estimated from the divisor's top digit (at most two
/// too high) and corrected against the exact 192-bit product.
fn divide_wide(high: u128, low: u128, d: u128) -> Option<(u128, u128)> {
    const MASK: u128 = u64::MAX as u128;
    if high >= d {
        return None;
    }
    if high == 0 {
        return Some((low / d, low % d));
    }
    if d <= MASK {
        let (mut quotient, mut remainder) = (0u128, 0u128);
        for digit in [high >> 64, high & MASK, low >> 64, low & MASK] {
            // remainder < d <= 2^64 - 1, so the shifted value fits in u128.
            let value = (remainder << 64) | digit;
            quotient = (quotient << 64) | (value / d);
            remainder = value % d;
        }
        return Some((quotient, remainder));
    }
    let shift = d.leading_zeros();
    let divisor = d << shift;
    let (mut remainder, numerator_low) = if shift == 0 {
        (high, low)
    } else {
        ((high << shift) | (low >> (128 - shift)), low << shift)
    };
    let (divisor_high, divisor_low) = (divisor >> 64, divisor & MASK);
    let mut quotient = 0u128;
    for digit in [numerator_low >> 64, numerator_low & MASK] {
        // The running value is remainder * 2^64 + digit, with remainder < divisor.
        let mut estimate = (remainder / divisor_high).min(MASK);
        let (product_high, product_low) = loop {
            let upper = estimate * divisor_high;
            let lower = estimate * divisor_low;
            let middle = (lower >> 64) + (upper & MASK);
            let product_high = ((upper >> 64) + (middle >> 64)) << 64 | (middle & MASK);
            let product_low = lower & MASK;
            if (product_high, product_low) <= (remainder, digit) {
                break (product_high, product_low);
            }
            estimate -= 1;
        };
        let borrow = u128::from(digit < product_low);
        let low_difference = digit.wrapping_sub(product_low) & MASK;
        remainder = ((remainder - product_high - borrow) << 64) | low_difference;
        quotient = (quotient << 64) | estimate;
    }
    Some((quotient, remainder >> shift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_products_divide_exactly() {
        assert_eq!(mul_div_rem(7, 6, 4), Some((10, 2)));
        assert_eq!(mul_div(1, 1, 0), None);
    }

    #[test]
    fn wide_products_divide_exactly() {
        // (2^127) * 6 / 4 = 3 * 2^126.
        assert_eq!(mul_div(1u128 << 127, 6, 4), Some(3u128 << 126));
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div(u128::MAX, 2, 1), None);
        // (2^128 - 1)^2 / (2^128 - 2) = 2^128 exactly fits? It does not: 2^128 > u128::MAX.
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX - 1), None);
    }

    #[test]
    fn pow_ppm_matches_repeated_multiplication() {
        assert_eq!(pow_ppm(999_000, 0), PPM);
        assert_eq!(pow_ppm(999_000, 1), 999_000);
        assert_eq!(pow_ppm(999_000, 2), 998_001);
        assert_eq!(pow_ppm(PPM, u64::MAX), PPM);
        assert_eq!(pow_ppm(500_000, 64), 0);
        // 0.999^41 = 0.95982...; floors after each step can only lower it a little.
        let forty_one = pow_ppm(999_000, 41);
        assert!((959_700..=959_830).contains(&forty_one), "{forty_one}");
    }

    proptest! {
        #[test]
        fn wide_division_agrees_with_the_definition(a: u128, b: u128, d in 1u128..) {
            let (high, low) = widening_mul(a, b);
            match mul_div_rem(a, b, d) {
                Some((q, r)) => {
                    prop_assert!(r < d);
                    // q * d + r must equal the product.
                    let (qd_high, qd_low) = widening_mul(q, d);
                    let (sum_low, carry) = qd_low.overflowing_add(r);
                    prop_assert_eq!(sum_low, low);
                    prop_assert_eq!(qd_high + u128::from(carry), high);
                }
                None => prop_assert!(high >= d),
            }
        }

        #[test]
        fn wide_division_by_small_divisors(a: u128, b: u128, d in 1u128..(1 << 64)) {
            let (high, low) = widening_mul(a, b);
            match mul_div_rem(a, b, d) {
                Some((q, r)) => {
                    let (qd_high, qd_low) = widening_mul(q, d);
                    let (sum_low, carry) = qd_low.overflowing_add(r);
                    prop_assert!(r < d);
                    prop_assert_eq!((qd_high + u128::from(carry), sum_low), (high, low));
                }
                None => prop_assert!(high >= d),
            }
        }

        #[test]
        fn wide_division_with_fitting_quotients(q: u128, d in 1u128.., r: u128) {
            // Build a product with a known quotient and remainder, then divide it back.
            let r = r % d;
            let (high, low) = widening_mul(q, d);
            let (low, carry) = low.overflowing_add(r);
            let high = high + u128::from(carry);
            prop_assert_eq!(divide_wide(high, low, d), Some((q, r)));
        }

        #[test]
        fn narrow_products_agree_with_u128(a in 0u128..(1 << 64), b in 0u128..(1 << 64), d in 1u128..) {
            prop_assert_eq!(mul_div_rem(a, b, d), Some((a * b / d, a * b % d)));
        }

        #[test]
        fn scale_ppm_never_exceeds_amount(amount: u128, ppm: u64) {
            prop_assert!(scale_ppm(amount, ppm) <= amount);
        }
    }
}
