//! The cron trigger at fixed instants, on a real SQLite history: ticks, changed schedules,
//! catch-up after downtime (skip, once, all, bounded by `catchup_max` and `catchup_window`)
//! and days on which the clocks change.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::CronTrigger;
use crate::history::RunState;
use crate::jobs::spec::spec_for_tests;
use crate::jobs::testkit::{Fixture, missed, scheduled_at, utc};

fn cron_job(name: &str, schedule: serde_json::Value) -> crate::jobs::JobSpec {
    spec_for_tests(name, json!({ "schedule": schedule }))
}

/// Ticks as the trigger loop does when nothing else wakes it: at each planned occurrence, and
/// at least every half hour in between (other wake-ups), until `end`.
fn drive(f: &Fixture, cron: &mut CronTrigger, job: &str, end: DateTime<Utc>) {
    loop {
        let now = f.clock.now();
        let step = now + Duration::minutes(30);
        let next = cron.next_of(job).map_or(step, |t| t.min(step));
        if next > end {
            return;
        }
        f.clock.set(next);
        cron.tick(&f.dispatcher, &f.specs(), next);
    }
}

fn fired(f: &Fixture, job: &str) -> Vec<DateTime<Utc>> {
    f.runs(job).iter().map(scheduled_at).collect()
}

#[test]
fn an_occurrence_fires_once_when_due_and_a_changed_schedule_is_planned_anew() {
    let t0 = utc(2026, 6, 1, 12, 0, 30);
    let f = Fixture::new("", t0, vec![cron_job("m", json!("* * * * *"))]);
    let mut cron = CronTrigger::default();
    cron.tick(&f.dispatcher, &f.specs(), t0);
    assert!(f.runs("m").is_empty(), "a new schedule only plans");
    assert_eq!(cron.next_of("m"), Some(utc(2026, 6, 1, 12, 1, 0)));
    assert_eq!(cron.earliest(), cron.next_of("m"));

    cron.tick(&f.dispatcher, &f.specs(), utc(2026, 6, 1, 12, 0, 59));
    assert!(f.runs("m").is_empty(), "not due yet");

    for now in [
        utc(2026, 6, 1, 12, 1, 0),
        utc(2026, 6, 1, 12, 1, 0),
        utc(2026, 6, 1, 12, 1, 30),
    ] {
        cron.tick(&f.dispatcher, &f.specs(), now);
    }
    let runs = f.runs("m");
    assert_eq!(
        runs.len(),
        1,
        "one run per occurrence, however often it ticks"
    );
    assert_eq!(scheduled_at(&runs[0]), utc(2026, 6, 1, 12, 1, 0));
    assert_eq!(runs[0].state, RunState::Queued);
    assert_eq!(missed(&runs[0]), None);
    assert_eq!(cron.next_of("m"), Some(utc(2026, 6, 1, 12, 2, 0)));

    // A loop that wakes late fires the occurrence it missed once, and plans from now.
    cron.tick(&f.dispatcher, &f.specs(), utc(2026, 6, 1, 12, 4, 10));
    assert_eq!(fired(&f, "m").last(), Some(&utc(2026, 6, 1, 12, 2, 0)));
    assert_eq!(cron.next_of("m"), Some(utc(2026, 6, 1, 12, 5, 0)));

    // The schedule changes: planned from the change on, nothing fires for the old one.
    f.load(cron_job("m", json!("*/10 * * * *")));
    let before = f.runs("m").len();
    cron.tick(&f.dispatcher, &f.specs(), utc(2026, 6, 1, 12, 5, 0));
    assert_eq!(f.runs("m").len(), before);
    assert_eq!(cron.next_of("m"), Some(utc(2026, 6, 1, 12, 10, 0)));
    cron.tick(&f.dispatcher, &f.specs(), utc(2026, 6, 1, 12, 10, 0));
    assert_eq!(fired(&f, "m").last(), Some(&utc(2026, 6, 1, 12, 10, 0)));

    // A job that lost its schedule is no longer planned.
    f.load(spec_for_tests("m", json!({})));
    cron.tick(&f.dispatcher, &f.specs(), utc(2026, 6, 1, 12, 20, 0));
    assert_eq!(cron.next_of("m"), None);
    assert_eq!(cron.earliest(), None);
}

#[test]
fn catch_up_after_downtime_follows_the_missed_policy_within_its_bounds() {
    // Last fired at 12:00; the daemon starts again at 12:10:30, ten occurrences later.
    let last = utc(2026, 6, 1, 12, 0, 0);
    let start = utc(2026, 6, 1, 12, 10, 30);
    let at = |m: u32| utc(2026, 6, 1, 12, m, 0);
    struct Case {
        missed: &'static str,
        toml: &'static str,
        state: RunState,
        runs: Vec<DateTime<Utc>>,
        count: u64,
    }
    let cases = [
        Case {
            missed: "skip",
            toml: "",
            state: RunState::Skipped,
            runs: vec![at(10)],
            count: 10,
        },
        Case {
            missed: "once",
            toml: "",
            state: RunState::Queued,
            runs: vec![at(10)],
            count: 10,
        },
        Case {
            // At most three runs: the first ones and, last, the newest.
            missed: "all",
            toml: "catchup_max = 3\n",
            state: RunState::Queued,
            runs: vec![at(1), at(2), at(10)],
            count: 10,
        },
        Case {
            // Only what the window looks back on counts.
            missed: "all",
            toml: "catchup_window = \"5m\"\n",
            state: RunState::Queued,
            runs: (6..=10).map(at).collect(),
            count: 5,
        },
        Case {
            missed: "once",
            toml: "catchup_window = \"5m\"\n",
            state: RunState::Queued,
            runs: vec![at(10)],
            count: 5,
        },
    ];
    for c in cases {
        let what = format!("missed = {:?}, {:?}", c.missed, c.toml);
        // The default overlap (`skip`): the catch-up runs of `all` queue one behind the other
        // all the same, since each was asked for.
        let job = spec_for_tests(
            "m",
            json!({ "schedule": { "cron": "* * * * *", "missed": c.missed } }),
        );
        let f = Fixture::new(&format!("[daemon]\n{}", c.toml), start, vec![job]);
        f.history().schedule_set_last_fire("m", last).unwrap();
        let mut cron = CronTrigger::default();
        cron.catch_up(&f.config, &f.dispatcher, &f.specs(), start);
        let runs = f.runs("m");
        assert_eq!(fired(&f, "m"), c.runs, "{what}");
        for r in &runs {
            assert_eq!(r.state, c.state, "{what}");
            assert_eq!(missed(r), Some(c.count), "{what}");
        }
        if c.state == RunState::Skipped {
            let summary = runs[0].summary.clone().unwrap_or_default();
            assert_eq!(summary["missed"], c.count, "{what}");
            assert_eq!(
                summary["last"], "2026-06-01T12:10:00.000Z",
                "{what}: {summary}"
            );
        }
        assert_eq!(
            f.history().schedule_last_fire("m").unwrap(),
            Some(at(10)),
            "{what}"
        );
        assert_eq!(cron.next_of("m"), Some(at(11)), "{what}");
        // Started again right away: nothing more is missed.
        let mut again = CronTrigger::default();
        again.catch_up(&f.config, &f.dispatcher, &f.specs(), start);
        assert_eq!(f.runs("m").len(), runs.len(), "{what}: caught up once");
    }
}

#[test]
fn catch_up_without_a_previous_fire_or_a_miss_starts_nothing() {
    let start = utc(2026, 6, 1, 12, 10, 30);
    let job = cron_job("m", json!({ "cron": "* * * * *", "missed": "all" }));
    let f = Fixture::new("", start, vec![job]);
    let mut cron = CronTrigger::default();
    cron.catch_up(&f.config, &f.dispatcher, &f.specs(), start);
    assert!(
        f.runs("m").is_empty(),
        "a job never fired has missed nothing"
    );
    assert_eq!(f.history().schedule_last_fire("m").unwrap(), Some(start));
    // Down for less than a period.
    let later = utc(2026, 6, 1, 12, 10, 50);
    cron.catch_up(&f.config, &f.dispatcher, &f.specs(), later);
    assert!(f.runs("m").is_empty());
}

/// A daily job at 02:30 in Berlin fires once on the days the clocks change: on the spring day
/// 02:30 does not exist and it fires at the next instant that does (03:00 CEST); on the autumn
/// day 02:30 happens twice and it fires at the first (CEST).
#[test]
fn a_job_at_a_local_time_the_clocks_skip_or_repeat_fires_once() {
    let cases = [
        (
            utc(2026, 3, 28, 12, 0, 0),
            vec![
                utc(2026, 3, 29, 1, 0, 0),  // 03:00 CEST, 02:30 CET does not exist
                utc(2026, 3, 30, 0, 30, 0), // 02:30 CEST
            ],
        ),
        (
            utc(2026, 10, 24, 12, 0, 0),
            vec![
                utc(2026, 10, 25, 0, 30, 0), // 02:30 CEST, the first of two
                utc(2026, 10, 26, 1, 30, 0), // 02:30 CET
            ],
        ),
    ];
    for (start, want) in cases {
        let job = cron_job(
            "berlin",
            json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin" }),
        );
        let f = Fixture::new("", start, vec![job]);
        let mut cron = CronTrigger::default();
        drive(&f, &mut cron, "berlin", start + Duration::days(2));
        assert_eq!(fired(&f, "berlin"), want, "from {start}");
    }
}
