//! Fast parsers for the common forms of integers and floats in CSV fields; anything else goes
//! to the general parser ([`parse_typed`]).

use crate::formats::options::Type;
use crate::formats::row::Value;
#[cfg(doc)]
use crate::formats::text::parse_typed;

/// Parses the common forms of text, integers and floats straight into `slot`; `false` leaves
/// the field to [`parse_typed`] (every other type, spaces, exponents, long numbers, errors).
pub(super) fn parse_fast(s: &str, ty: Type, slot: &mut Value) -> bool {
    match ty {
        Type::Text => {
            slot.set_text(s);
            true
        }
        Type::Integer => match parse_int(s.as_bytes()) {
            Some(i) => {
                *slot = Value::Int(i);
                true
            }
            None => false,
        },
        Type::Float => match parse_float(s.as_bytes()) {
            Some(f) => {
                *slot = Value::Float(f);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// An optional sign and 1–18 digits (never overflows an `i64`).
pub(super) fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + i64::from(d);
    }
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
    let (neg, rest) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    let mut m: u64 = 0;
    let mut digits = 0usize;
    let mut frac: Option<usize> = None;
    for &c in rest {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u64::from(c - b'0');
                digits += 1;
                if digits > 15 {
                    return None;
                }
                if let Some(f) = frac.as_mut() {
                    *f += 1;
                }
            }
            b'.' if frac.is_none() => frac = Some(0),
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    let v = m as f64 / POW10[frac.unwrap_or(0)];
    Some(if neg { -v } else { v })
}
