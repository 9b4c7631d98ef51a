//! Parsing of the human-friendly durations (`"1h30m"`) and sizes (`"256MiB"`) used in job specs
//! and `ferry.toml`.

use std::time::Duration;

/// Parses a duration such as `"10m"`, `"30s"`, `"1h30m"`, `"250ms"` or `"2d"`.
///
/// The error says what was expected, for use in messages that also name the key. A value too
/// large to represent saturates (to about 585 billion years): check it against a
/// [`DurationRange`].
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
        // Only ASCII digits: the parse fails on overflow alone.
        let n: u64 = rest[..digits].parse().unwrap_or(u64::MAX);
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
    let n = parse_size_wide(text)?;
    u64::try_from(n).map_err(|_| {
        format!("expected a size like \"64MiB\" or \"1GiB\", got {text:?} (too large)")
    })
}

/// [`parse_size`] in 128 bits, saturating, so a range check can say that a huge value is out
/// of range rather than malformed.
fn parse_size_wide(text: &str) -> Result<u128, String> {
    let expected = || format!("expected a size like \"64MiB\" or \"1GiB\", got {text:?}");
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(expected());
    }
    // Only ASCII digits: the parse fails on overflow alone.
    let n: u128 = s[..digits].parse().unwrap_or(u128::MAX);
    let mult: u128 = match s[digits..].trim() {
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
    Ok(n.saturating_mul(mult))
}

/// A value an option can be limited to: shown in messages the way people write it.
pub trait Bound: Copy + PartialOrd {
    /// The value as people write it (`30d`, `1MiB`, `42`).
    fn show(self) -> String;
}

impl Bound for Duration {
    fn show(self) -> String {
        short_duration(self)
    }
}

/// Sizes in bytes.
impl Bound for u64 {
    fn show(self) -> String {
        format_size(self)
    }
}

/// Counts.
impl Bound for i64 {
    fn show(self) -> String {
        self.to_string()
    }
}

/// The values an option accepts: from `min` to `max`, both included. Errors name the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<T> {
    /// The smallest accepted value.
    pub min: T,
    /// The largest accepted value.
    pub max: T,
}

/// The durations an option accepts.
pub type DurationRange = Range<Duration>;
/// The sizes in bytes an option accepts.
pub type SizeRange = Range<u64>;
/// The whole numbers an option accepts.
pub type CountRange = Range<i64>;

/// A day, for writing ranges.
pub const DAY: Duration = Duration::from_secs(86_400);

impl<T: Bound> Range<T> {
    /// The range from `min` to `max`.
    pub const fn new(min: T, max: T) -> Range<T> {
        Range { min, max }
    }

    /// The range as people read it: `from 1ms to 30d`.
    pub fn describe(&self) -> String {
        format!("from {} to {}", self.min.show(), self.max.show())
    }

    /// `Ok(v)` when `v` lies in the range, else an error naming the range and `given` (how the
    /// value was written).
    pub fn check(&self, v: T, given: &str) -> Result<T, String> {
        if v < self.min || v > self.max {
            return Err(self.refuse(given));
        }
        Ok(v)
    }

    fn refuse(&self, given: &str) -> String {
        format!("must be {}, got {given}", self.describe())
    }
}

impl Range<Duration> {
    /// Parses text like `"30s"` and checks the range.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let d = parse_duration(text)?;
        self.check(d, &format!("{text:?}"))
    }

    /// Checks a number of seconds (how a script may give a duration): refuses NaN, infinities
    /// and negative numbers as well as values outside the range, without ever panicking.
    pub fn seconds(&self, secs: f64) -> Result<Duration, String> {
        let shown = format!("{} seconds", show_number(secs));
        if !secs.is_finite() || secs < 0.0 {
            return Err(self.refuse(&shown));
        }
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => self.check(d, &shown),
            Err(_) => Err(self.refuse(&shown)),
        }
    }
}

impl Range<u64> {
    /// Parses text like `"64MiB"` and checks the range.
    pub fn parse(&self, text: &str) -> Result<u64, String> {
        let n = parse_size_wide(text)?;
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.check(n, &format!("{text:?}"))
    }

    /// Checks a whole number of bytes given as a signed integer (a Lua or TOML integer).
    pub fn integer(&self, n: i64) -> Result<u64, String> {
        let given = format!("{n} bytes");
        match u64::try_from(n) {
            Ok(v) => self.check(v, &given),
            Err(_) => Err(self.refuse(&given)),
        }
    }
}

impl Range<i64> {
    /// Checks a whole number of any integer type.
    pub fn count<N: TryInto<i64> + Copy + std::fmt::Display>(&self, n: N) -> Result<N, String> {
        match n.try_into() {
            Ok(v) => self.check(v, &n.to_string()).map(|_| n),
            Err(_) => Err(self.refuse(&n.to_string())),
        }
    }
}

/// A number as people write it: `5e99` rather than a hundred digits.
pub fn show_number(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-3..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A duration in the largest unit that divides it: `30d`, `6h`, `90s`, `250ms`.
fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A size in the largest binary unit that divides it: `1TiB`, `64MiB`, `100B`.
pub fn format_size(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        let size = 1u64 << shift;
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
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
    fn ranges_refuse_what_is_outside_and_never_panic() {
        let r = DurationRange::new(Duration::from_millis(1), DAY.saturating_mul(30));
        assert_eq!(r.describe(), "from 1ms to 30d");
        assert_eq!(r.parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(r.seconds(1.5), Ok(Duration::from_millis(1500)));
        for bad in [
            "0s",
            "31d",
            "99999999999999999999d",
            "18446744073709551615d",
        ] {
            let e = r.parse(bad).unwrap_err();
            assert!(e.starts_with("must be from 1ms to 30d, got"), "{bad}: {e}");
        }
        for bad in [
            5e99,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            1e-300,
        ] {
            let e = r.seconds(bad).unwrap_err();
            assert!(e.starts_with("must be from 1ms to 30d, got"), "{bad}: {e}");
        }
        assert!(r.seconds(5e99).unwrap_err().ends_with("got 5e99 seconds"));
        let s = SizeRange::new(1 << 20, 1 << 40);
        assert_eq!(s.describe(), "from 1MiB to 1TiB");
        assert_eq!(s.parse("64MiB"), Ok(64 << 20));
        for bad in [
            "1KiB",
            "2TiB",
            "99999999999999999999999999999999999999999GiB",
        ] {
            let e = s.parse(bad).unwrap_err();
            assert!(
                e.starts_with("must be from 1MiB to 1TiB, got"),
                "{bad}: {e}"
            );
        }
        for bad in [i64::MIN, -1, 0, i64::MAX] {
            assert!(s.integer(bad).is_err(), "{bad}");
        }
        let c = CountRange::new(1, 1024);
        assert_eq!(c.count(4u64), Ok(4));
        for bad in [0u64, 1025, u64::MAX] {
            assert!(
                c.count(bad).unwrap_err().contains("from 1 to 1024"),
                "{bad}"
            );
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
