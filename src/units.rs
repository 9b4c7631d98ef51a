//! Parsing of the human-friendly durations (`"1h30m"`) and sizes (`"256MiB"`) used in job specs
//! and `ferry.toml`.

use std::time::Duration;

/// Parses a duration such as `"10m"`, `"30s"`, `"1h30m"`, `"250ms"` or `"2d"`.
///
/// The error says what was expected, for use in messages that also name the key.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected =
        || format!("expected a duration like \"30s\", \"10m\" or \"1h30m\", got {text:?}");
    let s = text.trim();
    if s.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(expected());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| expected())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let piece = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(expected()),
        };
        total = total.saturating_add(piece);
    }
    Ok(total)
}

/// Parses a size such as `"256MiB"`, `"1GiB"`, `"512KiB"`, `"10MB"` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let expected = || format!("expected a size like \"64MiB\" or \"1GiB\", got {text:?}");
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(expected());
    }
    let n: u64 = s[..digits].parse().map_err(|_| expected())?;
    let mult: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(expected()),
    };
    n.checked_mul(mult).ok_or_else(expected)
}

/// Formats a duration for people: `1h30m`, `2.5s`, `120ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("30s", Some(30_000)),
            ("10m", Some(600_000)),
            ("1h30m", Some(5_400_000)),
            ("250ms", Some(250)),
            ("2d", Some(172_800_000)),
            ("1h 5s", Some(3_605_000)),
            ("", None),
            ("10", None),
            ("m", None),
            ("10 minutes", None),
            ("-1s", None),
        ];
        for (input, want) in cases {
            let got = parse_duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            ("256MiB", Some(256 << 20)),
            ("1GiB", Some(1 << 30)),
            ("100", Some(100)),
            ("10MB", Some(10_000_000)),
            ("lots", None),
            ("5 parsecs", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_millis(120)), "120ms");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }
}

/// Serialises a duration as text like `"1h30m"` (for `#[serde(with)]`).
pub mod serde_duration {
    use std::time::Duration;

    /// Writes the duration as text.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
}

/// Serialises an optional duration as text or null (for `#[serde(with)]`).
pub mod serde_opt_duration {
    use std::time::Duration;

    /// Writes the duration as text, or null.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

/// Parses a point in time as people write it: RFC 3339 with any offset
/// (`"2026-11-20T10:00:00+05:00"`, `"2026-11-20T05:00:00Z"`), a plain date (`"2026-11-20"`,
/// midnight UTC) or epoch seconds (`"1795150800"`, fractions allowed). Every form is an instant,
/// so times written with different offsets compare correctly.
pub fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{DateTime, NaiveDate, TimeZone, Utc};
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(dt) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(Utc.from_utc_datetime(&dt));
    }
    let numeric = !s.is_empty()
        && s.bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && b == b'-'));
    if numeric && let Ok(secs) = s.parse::<f64>() {
        return epoch_instant(secs).ok_or_else(|| format!("{text:?} is out of range"));
    }
    Err(format!(
        "expected a time: RFC 3339 with an offset like \"2026-01-31T02:30:00Z\" or \"2026-01-31T08:00:00+05:30\", a date like \"2026-01-31\" or epoch seconds, got {text:?}"
    ))
}

/// The instant `secs` seconds after the Unix epoch (fractions kept to the nanosecond), or `None`
/// when it is not finite or out of range.
pub fn epoch_instant(secs: f64) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
    if whole.abs() > 1e13 {
        return None;
    }
    chrono::Utc.timestamp_opt(whole as i64, nanos).single()
}

#[cfg(test)]
mod instant_tests {
    use super::*;

    #[test]
    fn instants_in_every_form_compare_as_instants() {
        let want = parse_instant("2026-11-20T05:00:00Z").unwrap();
        for same in [
            "2026-11-20T10:00:00+05:00",
            "2026-11-19T21:00:00-08:00",
            "2026-11-20T05:00:00.000Z",
            "1795150800",
            "1795150800.0",
        ] {
            assert_eq!(parse_instant(same).unwrap(), want, "{same}");
        }
        assert_eq!(
            parse_instant("2026-11-20").unwrap(),
            parse_instant("2026-11-20T00:00:00Z").unwrap()
        );
        assert_eq!(parse_instant("-1").unwrap().timestamp(), -1);
        let ms = parse_instant("1795150800.25").unwrap();
        assert_eq!(ms.timestamp_subsec_millis(), 250);
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-20T10:00:00",
            "1e9",
            "--1",
        ] {
            let err = parse_instant(bad).unwrap_err();
            assert!(
                err.contains("expected a time") || err.contains("range"),
                "{bad}: {err}"
            );
        }
    }
}
