//! The daemon's core for unit tests, with real parts: a project in a temporary folder, its
//! SQLite history, a registry holding the given jobs and a dispatcher on a manual clock. The
//! dispatch loop does not run, so what the triggers submit stays queued for the test to read.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::clock::ManualClock;
use super::dispatcher::Dispatcher;
use super::registry::Registry;
use super::spec::JobSpec;
use crate::config::Config;
use crate::history::{HistoryHandle, RunRecord, Trigger};

/// A project with a history and a dispatcher, standing at a fixed instant.
pub(crate) struct Fixture {
    /// The config (read from the given `ferry.toml` text).
    pub config: Config,
    /// The clock the dispatcher and the triggers decide by.
    pub clock: ManualClock,
    /// The dispatcher (its loop not running).
    pub dispatcher: Dispatcher,
    registry: Arc<RwLock<Registry>>,
    // Dropped last: the history's files live in it.
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A project configured by `toml` (`ferry.toml`'s text; no warm workers), with `jobs`
    /// loaded, at `now`.
    pub fn new(toml: &str, now: DateTime<Utc>, jobs: Vec<JobSpec>) -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut config = Config::from_toml(toml, None, dir.path().to_path_buf()).expect("config");
        // Workers are `ferry worker` processes, and this test binary is not ferry.
        config.daemon.warm_workers = 0;
        std::fs::create_dir_all(&config.data_dir).expect("the data folder");
        let history = crate::history::open(&config).expect("the history");
        let registry = Arc::new(RwLock::new(Registry::default()));
        for job in jobs {
            registry.write().expect("not poisoned").insert(job);
        }
        let clock = ManualClock::at(now);
        let dispatcher = Dispatcher::new(config.clone(), history, registry.clone(), clock.clock())
            .expect("the dispatcher");
        Fixture {
            config,
            clock,
            dispatcher,
            registry,
            _dir: dir,
        }
    }

    /// The registry of loaded jobs, as the daemon's parts share it.
    pub fn registry(&self) -> Arc<RwLock<Registry>> {
        self.registry.clone()
    }

    /// The loaded jobs.
    pub fn specs(&self) -> Vec<Arc<JobSpec>> {
        self.registry.read().expect("not poisoned").specs()
    }

    /// Replaces (or adds) a job, as a reload would.
    pub fn load(&self, job: JobSpec) {
        self.registry.write().expect("not poisoned").insert(job);
    }

    /// The history.
    pub fn history(&self) -> &HistoryHandle {
        self.dispatcher.history()
    }

    /// The runs of a job, oldest first.
    pub fn runs(&self, job: &str) -> Vec<RunRecord> {
        let mut runs = self.history().latest_runs(job, 1000).expect("runs");
        runs.sort_by_key(|r| r.id);
        runs
    }
}

/// The `scheduled_at` of a cron run's trigger.
pub(crate) fn scheduled_at(run: &RunRecord) -> DateTime<Utc> {
    let Trigger::Cron { scheduled_at, .. } = &run.trigger else {
        panic!("run {} is not a cron run: {:?}", run.id, run.trigger)
    };
    let text = scheduled_at.as_str();
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

/// The number of missed occurrences a catch-up run's trigger counts (`None` for an on-time run).
pub(crate) fn missed(run: &RunRecord) -> Option<u64> {
    match &run.trigger {
        Trigger::Cron { missed, .. } => missed.map(u64::from),
        _ => None,
    }
}

/// A UTC instant, for short test tables.
pub(crate) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("a valid UTC time")
}
