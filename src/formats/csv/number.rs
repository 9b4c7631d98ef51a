//! Fast parsers for the common forms of integers and floats in CSV fields; anything else goes
//! to the general parser ([`parse_typed`]).

use crate::formats::options::Type;
use crate::formats::row::Value;
#[cfg(doc)]
use crate::formats::text::parse_typed;

/// Parses the common forms of integers and floats from their bytes straight into `slot`;
/// `false` leaves the field to [`parse_typed`] (every other type, spaces, exponents, long
/// numbers, errors).
#[inline(always)]
pub(super) fn parse_number(b: &[u8], ty: Type, slot: &mut Value) -> bool {
    let v = match ty {
        Type::Integer => parse_int(b).map(Value::Int),
        Type::Float => parse_float(b).map(Value::Float),
        _ => None,
    };
    match v {
        Some(v) => {
            *slot = v;
            true
        }
        None => false,
    }
}

/// The sign at the start of `b` (`-` or `+`, or none) and the rest.
fn split_sign(b: &[u8]) -> (bool, &[u8]) {
    match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    }
}

/// The value of a run of at most 19 ASCII digits (0 for none), or `None` if a byte is not a
/// digit. Eight digits at a time are checked and combined in one 64-bit word.
fn digit_run(b: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    let mut rest = b;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        n = n * 100_000_000 + eight_digits(u64::from_le_bytes(*chunk))?;
        rest = tail;
    }
    for &c in rest {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// The value of the eight ASCII digits of `w` (the first digit in the lowest byte), or `None`
/// if a byte is not a digit (the checks and the combining steps of the `fast-float` crate).
fn eight_digits(w: u64) -> Option<u64> {
    // A byte below `0` borrows into its high bit when `0x30` is taken; a byte above `9`
    // carries into it when `0x46` is added. A borrow or carry that crosses into the next
    // byte only happens from a byte that already failed.
    let low = w.wrapping_sub(0x3030_3030_3030_3030);
    let high = w.wrapping_add(0x4646_4646_4646_4646);
    if (low | high) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // Pairs, then quads, then the eight digits.
    let v = low * 10 + (low >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    let v1 = (v & MASK).wrapping_mul(100 + (1_000_000 << 32));
    let v2 = ((v >> 16) & MASK).wrapping_mul(1 + (10_000 << 32));
    Some(u64::from((v1.wrapping_add(v2) >> 32) as u32))
}

/// An optional sign and 1–18 digits (never overflows an `i64`).
pub(super) fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = split_sign(b);
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    // At most 18 digits: below 10^18, within an `i64`.
    let n = digit_run(digits)? as i64;
    Some(if neg { -n } else { n })
}

/// Exact powers of ten as `f64` (all up to 10^22 are).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `[sign]digits[.digits]` with at most 15 digits in all: the digits as an integer are exact
/// in an `f64`, and so is the power of ten, so one division rounds correctly (Clinger's fast
/// path, the first step of every exact float parser).
pub(super) fn parse_float(b: &[u8]) -> Option<f64> {
    let (neg, rest) = split_sign(b);
    // The integer digits, then after a `.` the fraction digits.
    let mut m: u64 = 0;
    let int_digits = take_digits(rest, 0, &mut m);
    let mut end = int_digits;
    let mut frac = 0;
    if rest.get(end) == Some(&b'.') {
        end = take_digits(rest, end + 1, &mut m);
        frac = end - int_digits - 1;
    }
    // A wrapped `m` is never used: more than 15 digits is refused here.
    if end != rest.len() || int_digits + frac == 0 || int_digits + frac > 15 {
        return None;
    }
    let v = m as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// Adds the ASCII digits of `b` from `i` on to `m` (wrapping) and returns where they end.
fn take_digits(b: &[u8], mut i: usize, m: &mut u64) -> usize {
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
        *m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    i
}
