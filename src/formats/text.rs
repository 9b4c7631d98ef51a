//! Values as text: how text formats write each type and how readers type text as told.

use chrono::{DateTime, SecondsFormat};

use super::options::{TimestampUnit, Type};
use super::row::Value;

/// Parses `s` as `ty` into `slot`. An empty string of a non-text type is null. The error says
/// what was expected.
pub(crate) fn parse_typed(
    s: &str,
    ty: Type,
    unit: TimestampUnit,
    slot: &mut Value,
) -> Result<(), String> {
    if !matches!(ty, Type::Text | Type::Bytes) && s.is_empty() {
        *slot = Value::Null;
        return Ok(());
    }
    match ty {
        Type::Text => slot.set_text(s),
        Type::Integer => match s.trim().parse::<i64>() {
            Ok(i) => *slot = Value::Int(i),
            Err(_) => return Err(format!("expected an integer, got {}", shown(s))),
        },
        Type::Float => match s.trim().parse::<f64>() {
            Ok(f) => *slot = Value::Float(f),
            Err(_) => return Err(format!("expected a number, got {}", shown(s))),
        },
        Type::Boolean => match parse_bool(s.trim()) {
            Some(b) => *slot = Value::Bool(b),
            None => {
                return Err(format!(
                    "expected a boolean (true/false, 1/0, yes/no), got {}",
                    shown(s)
                ));
            }
        },
        Type::Bytes => {
            let hex = s.strip_prefix("\\x").unwrap_or(s);
            let mut buf = match std::mem::take(slot) {
                Value::Bytes(b) => b,
                _ => Vec::new(),
            };
            buf.clear();
            if !decode_hex(hex.as_bytes(), &mut buf) {
                return Err(format!("expected hex digits (bytes), got {}", shown(s)));
            }
            *slot = Value::Bytes(buf);
        }
        Type::Timestamp => match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => {
                *slot = Value::Int(match unit {
                    TimestampUnit::Seconds => t.timestamp(),
                    TimestampUnit::Milliseconds => t.timestamp_millis(),
                })
            }
            Err(_) => {
                return Err(format!(
                    "expected an RFC 3339 timestamp like 2024-05-01T12:00:00Z, got {}",
                    shown(s)
                ));
            }
        },
    }
    Ok(())
}

/// A value quoted for a message, cut at 40 characters.
pub(crate) fn shown(s: &str) -> String {
    let mut cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") || s == "1" || s.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" || s.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// Decodes hex digits into `out`; false when `hex` is not an even number of hex digits.
pub(crate) fn decode_hex(hex: &[u8], out: &mut Vec<u8>) -> bool {
    if !hex.len().is_multiple_of(2) {
        return false;
    }
    out.reserve(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return false,
        }
    }
    true
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Appends the lowercase hex digits of `bytes` to `out`.
pub(crate) fn encode_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// Formats a float so that parsing the text gives the same float back (shortest form).
pub(crate) fn format_float(f: f64, buf: &mut ryu::Buffer) -> &str {
    if f.is_finite() {
        buf.format_finite(f)
    } else if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// Scratch buffers to format values as text without allocating per value.
#[derive(Default)]
pub(crate) struct TextFormatter {
    int: itoa::Buffer,
    float: ryu::Buffer,
    bytes: Vec<u8>,
}

impl TextFormatter {
    /// The text form of `v`, or `None` for null: integers in decimal, floats in their shortest
    /// exact form, booleans as `true`/`false`, bytes as lowercase hex.
    pub(crate) fn format<'a>(&'a mut self, v: &'a Value) -> Option<&'a [u8]> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(true) => b"true",
            Value::Bool(false) => b"false",
            Value::Int(i) => self.int.format(*i).as_bytes(),
            Value::Float(f) => format_float(*f, &mut self.float).as_bytes(),
            Value::Text(s) => s.as_bytes(),
            Value::Bytes(b) => {
                self.bytes.clear();
                encode_hex(b, &mut self.bytes);
                &self.bytes
            }
        })
    }
}

/// Formats an epoch in `unit` as RFC 3339 UTC text (`2019-11-22T06:46:15Z`, with milliseconds
/// when the unit is milliseconds). `None` when out of chrono's range.
pub(crate) fn format_timestamp(epoch: i64, unit: TimestampUnit) -> Option<String> {
    match unit {
        TimestampUnit::Seconds => {
            DateTime::from_timestamp(epoch, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        }
        TimestampUnit::Milliseconds => DateTime::from_timestamp_millis(epoch)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
    }
}

/// Gives a value from a typed format (JSON, xlsx) the column's type: strings are parsed as the type says, integers widen
/// to floats, integral floats narrow to integers; anything else that does not fit is an error.
pub(crate) fn coerce(slot: &mut Value, ty: Type, unit: TimestampUnit) -> Result<(), String> {
    match (ty, &*slot) {
        (_, Value::Null) | (Type::Text, _) => Ok(()),
        (_, Value::Text(_)) => {
            let s = match std::mem::take(slot) {
                Value::Text(s) => s,
                _ => String::new(),
            };
            parse_typed(&s, ty, unit, slot)
        }
        (Type::Float, Value::Int(i)) => {
            *slot = Value::Float(*i as f64);
            Ok(())
        }
        (Type::Integer | Type::Timestamp, Value::Float(f))
            if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 =>
        {
            *slot = Value::Int(*f as i64);
            Ok(())
        }
        (Type::Integer | Type::Timestamp, Value::Int(_))
        | (Type::Float, Value::Float(_))
        | (Type::Boolean, Value::Bool(_)) => Ok(()),
        (ty, v) => Err(format!(
            "expected {}, got a {}",
            type_label(ty),
            v.type_name()
        )),
    }
}

fn type_label(ty: Type) -> &'static str {
    match ty {
        Type::Text => "text",
        Type::Integer => "an integer",
        Type::Float => "a number",
        Type::Boolean => "a boolean",
        Type::Bytes => "bytes (a hex string)",
        Type::Timestamp => "a timestamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, ty: Type) -> Result<Value, String> {
        let mut v = Value::Null;
        parse_typed(s, ty, TimestampUnit::Seconds, &mut v).map(|_| v)
    }

    #[test]
    fn typed_parsing() {
        assert_eq!(parse("42", Type::Integer), Ok(Value::Int(42)));
        assert_eq!(parse("", Type::Integer), Ok(Value::Null));
        assert_eq!(parse("", Type::Text), Ok(Value::Text(String::new())));
        assert_eq!(parse("yes", Type::Boolean), Ok(Value::Bool(true)));
        assert_eq!(parse("00ff", Type::Bytes), Ok(Value::Bytes(vec![0, 255])));
        assert_eq!(
            parse("2019-11-22T06:46:15Z", Type::Timestamp),
            Ok(Value::Int(1_574_405_175))
        );
        let e = parse("4x", Type::Integer).unwrap_err();
        assert!(e.contains("expected an integer") && e.contains("4x"), "{e}");
        assert!(parse("abc", Type::Bytes).is_err());
    }

    #[test]
    fn floats_format_exactly() {
        let mut f = TextFormatter::default();
        for x in [0.1, 1.0, -2.5e-300, 1e300, f64::MAX, f64::MIN_POSITIVE] {
            let v = Value::Float(x);
            let text = std::str::from_utf8(f.format(&v).unwrap())
                .unwrap()
                .to_owned();
            assert_eq!(text.parse::<f64>().unwrap(), x, "{text}");
        }
        assert_eq!(
            format_timestamp(1_574_405_175, TimestampUnit::Seconds).unwrap(),
            "2019-11-22T06:46:15Z"
        );
    }
}
