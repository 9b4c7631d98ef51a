//! Instants for people: in the local time zone and in UTC, `2026-12-03 02:00 CET (01:00 UTC)`.
//!
//! The local zone is `TZ` when set (an IANA name, `:Europe/Paris`, or a path into a zoneinfo
//! folder), else the system's (`/etc/localtime`, `/etc/timezone`). A zone that has no IANA name
//! (a POSIX `TZ` rule like `CET-1CEST`) is still honoured through `chrono::Local`, shown as a
//! numeric offset.

use chrono::{DateTime, Local, Offset, Timelike, Utc};
use chrono_tz::Tz;

/// The zone people read times in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// A named zone: its abbreviations (`CET`, `CEST`) are shown.
    Named(Tz),
    /// The C library's idea of local time, shown with a numeric offset.
    System,
}

/// The local zone of this process (see the module docs).
pub fn local_zone() -> Zone {
    let named = match std::env::var("TZ") {
        Ok(tz) if !tz.is_empty() => zone_name(tz.trim_start_matches(':')),
        // An empty TZ means UTC to the C library.
        Ok(_) => Some(Tz::UTC),
        Err(_) => std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|p| zone_name(&p.to_string_lossy()))
            .or_else(|| {
                std::fs::read_to_string("/etc/timezone")
                    .ok()
                    .and_then(|t| zone_name(t.trim()))
            }),
    };
    named.map(Zone::Named).unwrap_or(Zone::System)
}

/// The IANA zone a name or a zoneinfo path stands for.
fn zone_name(text: &str) -> Option<Tz> {
    let name = match text.find("zoneinfo/") {
        Some(at) => &text[at + "zoneinfo/".len()..],
        None => text,
    };
    name.parse().ok()
}

/// `t` in the local zone, then in UTC when the local zone is not UTC.
pub fn local_and_utc(t: DateTime<Utc>) -> String {
    show(t, local_zone())
}

/// `t` in `zone` and in UTC: the UTC part repeats the date only when it differs.
pub fn show(t: DateTime<Utc>, zone: Zone) -> String {
    let fmt = if t.second() == 0 {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let (local, offset_zero, same_day) = match zone {
        Zone::Named(tz) => {
            let l = t.with_timezone(&tz);
            (
                format!("{} {}", l.format(fmt), l.format("%Z")),
                l.offset().fix().local_minus_utc() == 0,
                l.date_naive() == t.date_naive(),
            )
        }
        Zone::System => {
            let l = t.with_timezone(&Local);
            (
                format!("{} {}", l.format(fmt), l.format("%:z")),
                l.offset().fix().local_minus_utc() == 0,
                l.date_naive() == t.date_naive(),
            )
        }
    };
    if offset_zero && matches!(zone, Zone::Named(tz) if is_utc(tz)) {
        return format!("{} UTC", t.format(fmt));
    }
    let time_fmt = if t.second() == 0 { "%H:%M" } else { "%H:%M:%S" };
    let utc = if same_day {
        t.format(time_fmt).to_string()
    } else {
        t.format(fmt).to_string()
    };
    format!("{local} ({utc} UTC)")
}

/// Whether a zone is UTC under one of its names (not merely at offset zero, like London in
/// winter, whose times are worth showing in both).
fn is_utc(tz: Tz) -> bool {
    matches!(
        tz.name(),
        "UTC" | "Etc/UTC" | "UCT" | "Etc/UCT" | "Universal" | "Etc/Universal" | "Zulu" | "Etc/Zulu"
    )
}

/// An RFC 3339 instant (as the API gives it) for people; other text is shown as it is.
pub fn show_text(text: &str) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => local_and_utc(t.with_timezone(&Utc)),
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_utc_forms() {
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        for (t, zone, expected) in [
            (
                "2026-12-03T01:00:00Z",
                paris,
                "2026-12-03 02:00 CET (01:00 UTC)",
            ),
            (
                "2026-07-03T01:00:00Z",
                paris,
                "2026-07-03 03:00 CEST (01:00 UTC)",
            ),
            (
                "2026-12-02T23:30:00Z",
                paris,
                "2026-12-03 00:30 CET (2026-12-02 23:30 UTC)",
            ),
            (
                "2026-12-03T01:00:05Z",
                paris,
                "2026-12-03 02:00:05 CET (01:00:05 UTC)",
            ),
            (
                "2026-12-03T01:00:00Z",
                Zone::Named(Tz::UTC),
                "2026-12-03 01:00 UTC",
            ),
            (
                "2026-12-03T01:00:00Z",
                Zone::Named(chrono_tz::Etc::UTC),
                "2026-12-03 01:00 UTC",
            ),
            (
                "2026-12-03T01:00:00Z",
                Zone::Named(chrono_tz::Europe::London),
                "2026-12-03 01:00 GMT (01:00 UTC)",
            ),
        ] {
            assert_eq!(show(at(t), zone), expected, "{t}");
        }
    }

    #[test]
    fn zone_names_and_paths() {
        assert_eq!(zone_name("Europe/Paris"), Some(chrono_tz::Europe::Paris));
        assert_eq!(
            zone_name("/usr/share/zoneinfo/Europe/Paris"),
            Some(chrono_tz::Europe::Paris)
        );
        assert_eq!(zone_name("CET-1CEST"), None);
    }
}
