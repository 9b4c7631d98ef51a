//! The run history: runs, their log lines, artifacts and per-job state, script versions, API
//! tokens (hashed) and the audit log, kept in SQLite.
//!
//! Only this module holds SQL for the history. Callers use the [`History`] trait so that a second
//! backend (PostgreSQL, for several hosts) can be added without touching them; [`SqliteHistory`]
//! is the default backend. Several processes (the daemon, its workers, the CLI) open the same
//! database file at once; WAL mode and a busy timeout make that safe.

mod audit;
#[doc(hidden)]
pub mod conformance;
mod copy;
mod migrations;
mod notifications;
mod pg;
mod pg_migrations;
mod sqlite;
mod tokens;
mod trigger;
mod types;
mod versions;

pub use notifications::{
    Attempt, NewNotification, Notification, NotificationLog, NotificationState,
};

pub use audit::{AuditEntry, AuditLog, NewAudit};
pub use copy::{CopyReport, TABLES as COPIED_TABLES, copy_into_postgres};
pub use pg::PostgresHistory;
pub use sqlite::SqliteHistory;
pub use tokens::{TokenRecord, TokenStore};
pub use trigger::Trigger;
pub use types::*;
pub use versions::{ScriptVersion, VersionOrigin, VersionStore};

/// Everything ferry keeps in a history backend: runs and the queue ([`History`]), notification
/// deliveries, script versions, API tokens and the audit log. Callers hold a [`HistoryHandle`]
/// and never name a backend.
pub trait HistoryStore:
    History + NotificationLog + VersionStore + TokenStore + AuditLog + Send + Sync
{
}

impl<T> HistoryStore for T where
    T: History + NotificationLog + VersionStore + TokenStore + AuditLog + Send + Sync
{
}

/// Script versions older than `$1` that are neither among their job's two newest nor the
/// version of a remaining run: retention's statement for both backends (SQLite reads `$1` as
/// its first parameter too).
pub(crate) const PRUNE_VERSIONS: &str = "DELETE FROM script_versions WHERE created_at < $1 \
     AND id NOT IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY job ORDER BY id \
     DESC) AS n FROM script_versions) newest WHERE n <= 2) \
     AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job = script_versions.job \
     AND r.script_version = script_versions.hash)";

/// A watched file's claim older than this may be taken over by another process (see
/// [`History::claim_file_key`]).
pub const FILE_CLAIM_STALE: std::time::Duration = std::time::Duration::from_secs(60);

/// A shared handle on the history backend the configuration names.
pub type HistoryHandle = std::sync::Arc<dyn HistoryStore>;

/// Opens the history the configuration names (the SQLite file by default), applying pending
/// migrations.
pub fn open(config: &crate::config::Config) -> Result<HistoryHandle, HistoryError> {
    Ok(match &config.history_db {
        Some(target) => std::sync::Arc::new(PostgresHistory::open(target)?),
        None => std::sync::Arc::new(SqliteHistory::open(&config.history_path)?),
    })
}

use serde_json::Value;

/// Errors of the history store.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database could not be opened, migrated or queried.
    #[error("history database {path}: {source}")]
    Db {
        /// The database file.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The PostgreSQL history could not be reached, migrated or queried.
    #[error("history database {url}: {source}")]
    Postgres {
        /// The database URL (never with a password).
        url: String,
        /// The driver's error.
        source: ::postgres::Error,
    },
    /// The TLS setup of the PostgreSQL history failed (`[history] sslmode`, `ca_file`).
    #[error("history database {url}: {message}")]
    Tls {
        /// The database URL (never with a password).
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A value read from the PostgreSQL history is not of the type ferry expects.
    #[error("history database: column {column} of table {table}: {source}")]
    Column {
        /// The table read.
        table: String,
        /// The column whose value does not convert.
        column: String,
        /// The driver's conversion error.
        source: ::postgres::Error,
    },
    /// A history could not be copied into another.
    #[error("copying the history into {to}: {message}")]
    Copy {
        /// The target database URL.
        to: String,
        /// What went wrong.
        message: String,
    },
    /// The folder of the database could not be created.
    #[error("cannot create the folder of history database {path}: {source}")]
    CreateDir {
        /// The database file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No run has this id.
    #[error("run {0} does not exist")]
    NotFound(i64),
    /// The run is still queued or running, so it cannot be deleted.
    #[error("run {0} is {1}; cancel it first")]
    Active(i64, RunState),
    /// The database is newer than this binary.
    #[error(
        "history database {path} has schema version {found}, newer than this ferry ({supported}); upgrade ferry"
    )]
    TooNew {
        /// The database file.
        path: String,
        /// Version found in the file.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
}

/// The operations the rest of ferry needs from a history backend.
pub trait History {
    /// Records a new run in state `queued` and returns its id.
    fn create_run(&self, run: &NewRun) -> Result<i64, HistoryError>;
    /// Moves a queued run to `running`, recording the script version (SHA-256 hex) it runs;
    /// returns false when the run is no longer queued (for example cancelled before it started).
    fn start_run(
        &self,
        id: i64,
        worker_pid: u32,
        script_version: &str,
    ) -> Result<bool, HistoryError>;
    /// Closes a run that is not closed yet; returns false when it was already closed.
    fn finish_run(&self, id: i64, end: &RunEnd) -> Result<bool, HistoryError>;
    /// Closes a run that is not closed yet and still belongs to `owner` (the reaper closing
    /// the runs of an owner that went away); false otherwise.
    fn finish_owned_run(&self, id: i64, owner: &str, end: &RunEnd) -> Result<bool, HistoryError>;
    /// Records the progress of a running run.
    fn set_progress(&self, id: i64, done: u64, total: Option<u64>) -> Result<(), HistoryError>;
    /// Appends a log line and returns its sequence number (increasing, unique in the database).
    fn append_log(&self, id: i64, level: LogLevel, message: &str) -> Result<i64, HistoryError>;
    /// Records an artifact of a run.
    fn add_artifact(&self, id: i64, artifact: &NewArtifact) -> Result<(), HistoryError>;
    /// Asks a run to stop: a queued run is closed as `cancelled` at once, a running one gets
    /// the request recorded for its worker.
    fn request_cancel(&self, id: i64) -> Result<CancelOutcome, HistoryError>;
    /// Takes a queued run nobody owns for `owner` (`host:pid:start`); false when another
    /// process owns it, or it is no longer queued, or a cancel was asked for.
    fn claim_run(&self, id: i64, owner: &str) -> Result<bool, HistoryError>;
    /// Renews the lease of every open run of `owner`; returns how many.
    fn renew_leases(&self, owner: &str) -> Result<u64, HistoryError>;
    /// Whether a run's lease has run out (or it never had one).
    fn lease_expired(&self, id: i64) -> Result<bool, HistoryError>;
    /// Records a store prefix to delete should the run not succeed (see [`Discard`]).
    fn add_discard(&self, id: i64, store: &str, prefix: &str) -> Result<i64, HistoryError>;
    /// Discards recorded for a run, or for every run.
    fn discards(&self, id: Option<i64>) -> Result<Vec<Discard>, HistoryError>;
    /// Forgets a discard (done, or not needed because the run succeeded).
    fn remove_discard(&self, discard_id: i64) -> Result<(), HistoryError>;
    /// Files whose run has not been finished with (still in `processing/`).
    fn files_processing(&self) -> Result<Vec<FileRecord>, HistoryError>;
    /// Whether a cancel was requested for the run.
    fn cancel_requested(&self, id: i64) -> Result<bool, HistoryError>;
    /// One run.
    fn get_run(&self, id: i64) -> Result<RunRecord, HistoryError>;
    /// Runs matching a filter, newest first, and the total count of matches.
    fn list_runs(&self, filter: &RunFilter) -> Result<(Vec<RunRecord>, u64), HistoryError>;
    /// Log lines of a run with a sequence number above `after`, oldest first.
    fn logs(&self, id: i64, after: i64, limit: u32) -> Result<Vec<LogLine>, HistoryError>;
    /// Artifacts of a run.
    fn artifacts(&self, id: i64) -> Result<Vec<Artifact>, HistoryError>;
    /// Deletes a closed run with its logs and artifact records.
    fn delete_run(&self, id: i64) -> Result<(), HistoryError>;
    /// A job's saved state value.
    fn state_get(&self, job: &str, key: &str) -> Result<Option<Value>, HistoryError>;
    /// Saves (or with `None` removes) a job's state value.
    fn state_set(&self, job: &str, key: &str, value: Option<&Value>) -> Result<(), HistoryError>;
    /// Runs in a state, oldest first.
    fn runs_in_state(&self, state: RunState) -> Result<Vec<RunRecord>, HistoryError>;
    /// The worker process id recorded for a running run.
    fn worker_pid(&self, id: i64) -> Result<Option<u32>, HistoryError>;
    /// Records a retry (`run.retry_of` names the run it retries), links the retried run to it
    /// and moves the retried run's watched file (if any) to it, in one transaction; `None`, and nothing recorded, when that run has been retried
    /// already (by another host of a shared history, say): a run is retried at most once.
    fn create_retry(&self, run: &NewRun) -> Result<Option<i64>, HistoryError>;
    /// Records a file claimed from a watched folder for a run.
    fn file_claimed(
        &self,
        job: &str,
        name: &str,
        processing_path: &str,
        size: u64,
        run_id: i64,
    ) -> Result<i64, HistoryError>;
    /// The file a run processes, if any.
    fn file_for_run(&self, run_id: i64) -> Result<Option<FileRecord>, HistoryError>;
    /// The file record of a path in a `processing/` folder, if any.
    fn file_by_processing_path(&self, path: &str) -> Result<Option<FileRecord>, HistoryError>;
    /// Marks a file as handled, with where it went (`archive/` or `failed/`) when it was kept.
    fn file_finished(
        &self,
        file_id: i64,
        state: FileState,
        final_path: Option<&str>,
    ) -> Result<(), HistoryError>;
    /// Queued runs nobody owns whose time has come at `now`, with ids above `after`, oldest
    /// first, at most `limit`. (A history shared by several hosts judges by the database's
    /// clock, the one they all agree on, and ignores `now`.)
    fn runnable(
        &self,
        after: i64,
        limit: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<RunRecord>, HistoryError>;
    /// The earliest `not_before` of a queued run nobody owns that is still in the future at
    /// `now` (in a shared history: on the database's clock).
    fn next_not_before(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, HistoryError>;
    /// Whether a run of `job` is queued and due now, or (in a history shared by several hosts)
    /// running or claimed on any host.
    fn job_queued_now(&self, job: &str) -> Result<bool, HistoryError>;
    /// Open runs that have an owner: running, or queued and claimed.
    fn owned_open_runs(&self) -> Result<Vec<RunRecord>, HistoryError>;
    /// Interrupted runs that have no retry, closed at or after `since` (all with `None`).
    fn interrupted_unretried(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<RunRecord>, HistoryError>;
    /// How many runs are in a state.
    fn count_in_state(&self, state: RunState) -> Result<u64, HistoryError>;
    /// Marks every closed run's downstream jobs as considered (when no job has `after`).
    fn set_all_chained(&self) -> Result<u64, HistoryError>;
    /// Closed runs whose downstream jobs (`after`) have not been considered yet, oldest first.
    fn unchained_runs(&self, limit: u32) -> Result<Vec<RunRecord>, HistoryError>;
    /// Marks a run's downstream jobs as considered.
    fn set_chained(&self, id: i64) -> Result<(), HistoryError>;
    /// The run of `job` started by the end of run `upstream` (`after`), if any.
    fn chained_run_of(&self, job: &str, upstream: i64) -> Result<Option<i64>, HistoryError>;
    /// Pauses a job (kept across restarts); false when it was paused already.
    fn pause_job(&self, job: &str, by: Option<&str>) -> Result<bool, HistoryError>;
    /// Resumes a paused job; false when it was not paused.
    fn resume_job(&self, job: &str) -> Result<bool, HistoryError>;
    /// The paused jobs and since when.
    fn paused_jobs(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, HistoryError>;
    /// When a job's schedule last fired.
    fn schedule_last_fire(
        &self,
        job: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, HistoryError>;
    /// Records when a job's schedule last fired.
    fn schedule_set_last_fire(
        &self,
        job: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), HistoryError>;
    /// Deletes closed runs queued before `older_than`, and closed runs beyond the newest
    /// `keep_per_job` of each job; returns how many were deleted. Script versions recorded
    /// before `older_than` go too, unless they are one of a job's two newest (the active one
    /// and the one a rollback returns to) or a remaining run ran (or is queued with) them.
    fn apply_retention(
        &self,
        older_than: chrono::DateTime<chrono::Utc>,
        keep_per_job: u32,
    ) -> Result<u64, HistoryError>;
    /// Run counts and total durations by job and state, for metrics.
    fn stats(&self) -> Result<Vec<RunStats>, HistoryError>;
    /// How many runs are in each state (states without runs are left out).
    fn count_by_state(&self) -> Result<Vec<(RunState, u64)>, HistoryError>;
    /// The newest `limit` runs of a job, newest first, without counting them all.
    fn latest_runs(&self, job: &str, limit: u32) -> Result<Vec<RunRecord>, HistoryError>;
    /// Queued runs that wait for a time after `now` (`at`, retry delays), soonest first.
    fn upcoming_runs(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, HistoryError>;
    /// Records the script version (SHA-256 hex) a queued run is to execute (starting it records
    /// the version it did execute).
    fn set_script_version(&self, id: i64, version: &str) -> Result<(), HistoryError>;
    /// Whether several hosts share this history (PostgreSQL): the dispatcher then claims runs
    /// in batches and the daemon checks that its data folder is the shared one.
    fn shared(&self) -> bool {
        false
    }
    /// Records `run`, the run of its job's cron occurrence due at `scheduled_at`, and claims
    /// that occurrence for `by`, in one transaction; `None` when the occurrence was claimed
    /// already (another process queued it). A process dying midway leaves the occurrence either
    /// queued once or still claimable, never claimed without a run.
    fn create_cron_run(
        &self,
        run: &NewRun,
        scheduled_at: chrono::DateTime<chrono::Utc>,
        by: &str,
    ) -> Result<Option<i64>, HistoryError>;
    /// Claims the watched file `key` (its name, size and modification time) of `job` for `by`;
    /// false when another process claimed it, so each dropped file runs once. A claim older
    /// than [`FILE_CLAIM_STALE`] is taken over (its claimer died before moving the file).
    fn claim_file_key(&self, job: &str, key: &str, by: &str) -> Result<bool, HistoryError>;
    /// Takes up to `limit` due queued runs nobody owns for `owner`, oldest first, leaving those
    /// of the jobs in `skip_jobs` (held back by their overlap policy here) and those of the
    /// jobs in `exclusive` (overlap `skip`/`queue`) while any process runs or has claimed a run
    /// of the same job; runs another process is taking at the same moment are skipped, not
    /// waited for.
    fn claim_due(
        &self,
        owner: &str,
        limit: u32,
        skip_jobs: &[String],
        exclusive: &[String],
    ) -> Result<Vec<RunRecord>, HistoryError>;
    /// Gives back a queued run `owner` claimed but did not start; false when it is not
    /// `owner`'s queued run any more.
    fn release_run(&self, id: i64, owner: &str) -> Result<bool, HistoryError>;
    /// Records a live daemon's heartbeat.
    fn host_heartbeat(&self, beat: &HostBeat) -> Result<(), HistoryError>;
    /// The daemons heard of within `within`, by owner.
    fn hosts(&self, within: std::time::Duration) -> Result<Vec<HostRecord>, HistoryError>;
    /// Forgets a daemon that stopped.
    fn host_gone(&self, owner: &str) -> Result<(), HistoryError>;
    /// The id of this history, made at first use; a data folder shared by several hosts holds
    /// it too (see `daemon::shared`).
    fn history_id(&self) -> Result<String, HistoryError>;
    /// A listener woken when a run is queued on any host (PostgreSQL `LISTEN`); `None` when
    /// the backend has none and the dispatcher polls.
    fn queue_listener(&self) -> Result<Option<Box<dyn QueueListener>>, HistoryError> {
        Ok(None)
    }
}

/// Wake-ups from other hosts: a run was queued somewhere.
pub trait QueueListener: Send {
    /// Waits up to `timeout` for a run to be queued; true when one was.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, HistoryError>;
}
