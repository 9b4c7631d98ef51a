//! The time the daemon decides by: which cron occurrences are due, what catch-up finds missed,
//! when a retry may start, what retention deletes, how long a job not loaded here is left for
//! other hosts.
//!
//! Every such decision takes `now` as an argument, and the daemon reads it from one [`Clock`]:
//! the system's in production, a [`ManualClock`] that tests set and advance, so cron ticks,
//! catch-up, retries and leases are tested at fixed instants instead of by sleeping. How long
//! a loop waits is still measured with the monotonic clock ([`std::time::Instant`]); only what
//! is due is decided by this one. (A history shared in PostgreSQL keeps judging leases and
//! `not_before` on the database's clock, the one every host agrees on; a SQLite history judges
//! leases on the system's.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::LockExt;
use chrono::{DateTime, Utc};

/// Where the current time comes from: the system, or a manual clock (tests). A cheap `Clone`.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A clock that stands still until it is set or advanced.
    Manual(ManualClock),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// How long from now until `at` (zero when `at` has passed).
    pub fn until(&self, at: DateTime<Utc>) -> Duration {
        (at - self.now()).to_std().unwrap_or(Duration::ZERO)
    }
}

/// A clock that shows the time it was set to, for tests; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn at(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    /// The time it shows.
    pub fn now(&self) -> DateTime<Utc> {
        // Setting a time cannot panic half-way, so a poisoned lock still holds a whole value.
        *self.0.lock_unpoisoned()
    }

    /// Sets the time (it may go backwards, as a system clock can).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock_unpoisoned() = at;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock_unpoisoned();
        *t = t.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// This clock as the daemon's [`Clock`].
    pub fn clock(&self) -> Clock {
        Clock::Manual(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap();
        let m = ManualClock::at(t0);
        let clock = m.clock();
        assert_eq!(clock.now(), t0);
        m.advance(chrono::Duration::seconds(90));
        assert_eq!(clock.now(), t0 + chrono::Duration::seconds(90));
        assert_eq!(
            clock.until(t0 + chrono::Duration::seconds(100)),
            Duration::from_secs(10)
        );
        assert_eq!(clock.until(t0), Duration::ZERO, "a time passed is due now");
        m.set(t0);
        assert_eq!(clock.now(), t0);
        m.advance(chrono::Duration::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC, "saturates");
    }
}
