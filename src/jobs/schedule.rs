//! Cron schedules of jobs: 5-field (minutes), 6-field (with seconds) and `@daily`-style macros,
//! evaluated in a per-job IANA time zone.
//!
//! Evaluation uses `croner`, which follows POSIX/Vixie cron: day-of-week 0 (or 7) is Sunday, and
//! 5-field expressions are accepted as they are. (The `cron` crate numbers weekdays from Sunday=1
//! and needs a seconds field, a trap for anyone pasting a crontab line.)
//! DST: a local time that does not exist (spring forward) fires at the next existing instant; a
//! local time that happens twice (fall back) fires once, at its first instance.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Serialize;

/// What to do with occurrences missed while the daemon was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Forget them (recorded as skipped).
    Skip,
    /// Run once for all of them.
    Once,
    /// Run each of them (within the look-back bound).
    All,
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The expression as written.
    pub expr: String,
    /// The time zone the expression is read in.
    pub timezone: Tz,
    /// The policy for missed occurrences.
    pub missed: Missed,
    /// Random delay of up to this long before each run, to spread load.
    pub jitter: std::time::Duration,
    cron: Cron,
}

impl Schedule {
    /// Parses an expression; the error says what was expected.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let cron = parse_cron(expr)?;
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| format!("unknown time zone {name:?}; expected an IANA name like \"Europe/Berlin\" or \"UTC\""))?,
        };
        Ok(Schedule {
            expr: expr.to_string(),
            timezone,
            missed: Missed::Skip,
            jitter: std::time::Duration::ZERO,
            cron,
        })
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Occurrences are whole seconds; croner keeps the fraction of its start time.
        let after = after.with_nanosecond(0).unwrap_or(after);
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .map(|t| t.with_nanosecond(0).unwrap_or(t))
    }
}

fn parse_cron(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    let is_macro = expr.trim_start().starts_with('@');
    if !is_macro && !(5..=6).contains(&fields) {
        return Err(format!(
            "invalid cron expression {expr:?}: expected 5 fields (minute hour day month weekday), 6 with seconds first, or a macro like @daily; got {fields} fields"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| {
            let why = super::cron_error::explain(expr, &e.to_string());
            format!("invalid cron expression {expr:?}: {why}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_forms() {
        for ok in [
            "30 2 * * *",
            "*/1 * * * * *",
            "@daily",
            "@hourly",
            "0 9 * * 1-5",
        ] {
            Schedule::parse(ok, None).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "* * *", "61 * * * *", "hello", "* * * * * * * *"] {
            assert!(Schedule::parse(bad, None).is_err(), "{bad:?} should fail");
        }
        assert!(Schedule::parse("@daily", Some("Mars/Olympus")).is_err());
    }

    /// The occurrences of 02:30 in Berlin around the days the clocks change: one a day, the
    /// missing 02:30 moved to 03:00 CEST, the repeated one taken the first time.
    #[test]
    fn a_local_time_the_clocks_skip_or_repeat_occurs_once() {
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let utc = |mo, d, h, mi| Utc.with_ymd_and_hms(2026, mo, d, h, mi, 0).unwrap();
        let cases = [
            (
                utc(3, 28, 0, 0),
                [utc(3, 28, 1, 30), utc(3, 29, 1, 0), utc(3, 30, 0, 30)],
            ),
            (
                utc(10, 24, 0, 0),
                [utc(10, 24, 0, 30), utc(10, 25, 0, 30), utc(10, 26, 1, 30)],
            ),
        ];
        for (from, want) in cases {
            let mut t = from;
            let mut got = Vec::new();
            for _ in 0..3 {
                t = s.next_after(t).unwrap();
                got.push(t);
            }
            assert_eq!(got, want, "from {from}");
        }
    }

    #[test]
    fn weekdays_are_posix_and_timezones_apply() {
        // 2026-11-23 is a Monday.
        let s = Schedule::parse("0 9 * * 1", Some("Europe/Berlin")).unwrap();
        let from = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
        assert_eq!(
            s.next_after(from),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap())
        );
    }
}
