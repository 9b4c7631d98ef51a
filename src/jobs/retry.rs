//! Retry timing: how long a failed run waits before its next attempt.
//!
//! The delay doubles with each attempt (`retry_delay`, then twice that, ...), gets up to 10%
//! of jitter so retries of many jobs do not fire in step, and never exceeds the job's
//! `retry_max_delay` (default `[daemon] retry_max_delay`, 6 hours). Every step saturates, so no
//! attempt count or delay can overflow the computation or the retry time.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The delay before retrying a run whose attempt number `attempt` (1 for the first run) failed.
/// `first` is the delay after the first attempt, `max` the cap, and `jitter` a number from 0 to
/// 1 (a random draw) that adds up to 10% of the delay; values outside 0..=1 add nothing.
pub fn delay(first: Duration, attempt: u32, max: Duration, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1);
    let base = match 2u32.checked_pow(doublings) {
        Some(factor) => first.saturating_mul(factor),
        None if first.is_zero() => Duration::ZERO,
        None => Duration::MAX,
    }
    .min(max);
    let jitter = if (0.0..=1.0).contains(&jitter) {
        Duration::try_from_secs_f64(base.as_secs_f64() * 0.1 * jitter).unwrap_or_default()
    } else {
        Duration::ZERO
    };
    base.saturating_add(jitter).min(max)
}

/// The time `delay` after `now`, or the latest representable time when that is further away.
pub fn at(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_then_caps() {
        let max = S(6 * 3600);
        let cases = [
            (S(30), 1, S(30)),
            (S(30), 2, S(60)),
            (S(30), 3, S(120)),
            (S(30), 10, S(30 * 512)),
            (S(30), 11, max),
            (S(30), 33, max),
            (S(30), u32::MAX, max),
            (Duration::ZERO, u32::MAX, Duration::ZERO),
            (Duration::MAX, 1, max),
            (Duration::MAX, u32::MAX, max),
            // Attempt 0 does not exist; it is treated as the first.
            (S(30), 0, S(30)),
        ];
        for (first, attempt, want) in cases {
            assert_eq!(
                delay(first, attempt, max, 0.0),
                want,
                "{first:?} × {attempt}"
            );
        }
    }

    #[test]
    fn jitter_adds_at_most_a_tenth_and_never_passes_the_cap() {
        let max = S(3600);
        assert_eq!(delay(S(100), 1, max, 1.0), S(110));
        assert_eq!(delay(S(100), 1, max, 0.5), S(105));
        assert_eq!(delay(S(3500), 1, max, 1.0), max);
        assert_eq!(delay(S(100), 40, max, 1.0), max);
        for odd in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
            assert_eq!(delay(S(100), 1, max, odd), S(100), "{odd}");
        }
    }

    /// The dispatcher queues the retry of a failed run at the clock's now plus the delay: 30 s
    /// (up to 10% more) after the first attempt, twice that after the second, none after the
    /// last, and none for a load error.
    #[test]
    fn a_failed_run_is_queued_again_after_the_doubling_delay() {
        use crate::history::RunState;
        use crate::jobs::dispatcher::Submit;
        use crate::jobs::executor::close;
        use crate::jobs::testkit::{Fixture, utc};
        use crate::lua::ErrorCode;

        let t0 = utc(2026, 3, 29, 0, 59, 50);
        let job = crate::jobs::spec::spec_for_tests(
            "flaky",
            serde_json::json!({ "retries": 2, "retry_delay": "30s" }),
        );
        let f = Fixture::new("", t0, vec![job]);
        let spec = f.dispatcher.spec("flaky").unwrap();
        let submit = Submit {
            job: "flaky".into(),
            params: crate::jobs::params::GivenParams::Json(Default::default()),
            trigger: crate::jobs::Trigger::Manual,
            not_before: None,
        };
        let fail = |id: i64, code: ErrorCode| {
            close(&**f.history(), id, RunState::Failed, code, "boom".into()).unwrap();
            f.history().get_run(id).unwrap()
        };
        let retry = |id: i64| {
            let record = fail(id, ErrorCode::Run);
            f.dispatcher.retry(&spec, &record).unwrap()
        };
        let first = f.dispatcher.submit(submit.clone()).unwrap().id;
        let second = retry(first).expect("a second attempt");
        let run = f.history().get_run(second).unwrap();
        assert_eq!((run.attempt, run.state), (2, RunState::Queued));
        let wait = run.not_before.unwrap() - t0;
        assert!(
            (30_000..=33_000).contains(&wait.num_milliseconds()),
            "{wait}"
        );
        let again = f.history().get_run(first).unwrap();
        assert_eq!(
            f.dispatcher.retry(&spec, &again).unwrap(),
            None,
            "retried once"
        );

        f.clock.advance(TimeDelta::minutes(10));
        let t1 = f.clock.now();
        let third = retry(second).expect("a third attempt");
        let run = f.history().get_run(third).unwrap();
        assert_eq!(run.attempt, 3);
        let wait = run.not_before.unwrap() - t1;
        assert!(
            (60_000..=66_000).contains(&wait.num_milliseconds()),
            "{wait}"
        );
        assert_eq!(retry(third), None, "no attempt left");

        let other = f.dispatcher.submit(submit).unwrap().id;
        let record = fail(other, ErrorCode::Load);
        assert_eq!(f.dispatcher.retry(&spec, &record).unwrap(), None);
    }

    #[test]
    fn the_retry_time_never_overflows() {
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 29, 1, 59, 30).unwrap();
        assert_eq!(at(now, S(60)), now + TimeDelta::seconds(60));
        assert_eq!(at(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(at(DateTime::<Utc>::MAX_UTC, S(1)), DateTime::<Utc>::MAX_UTC);
    }
}
