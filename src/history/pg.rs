//! The PostgreSQL backend of the history, for several hosts sharing one queue (`[history] url`).
//!
//! Same semantics as [`SqliteHistory`](super::SqliteHistory), statement for statement; what
//! several hosts add is done by the database: runs are claimed in batches with `FOR UPDATE SKIP
//! LOCKED` (two hosts never take the same run and never wait for each other), a queued run is
//! announced with `NOTIFY` on [`CHANNEL`], leases are measured on the database's clock (hosts'
//! clocks may differ), and "once" is a primary key (a cron occurrence, a watched file).
//!
//! The driver is the synchronous `postgres` crate (rust-postgres): ferry's history calls are
//! synchronous and made from blocking threads and worker processes, it is the maintained
//! PostgreSQL client of the Rust ecosystem (tokio-postgres underneath), and it speaks
//! `LISTEN/NOTIFY`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::notifications::{Attempt, NewNotification, Notification, NotificationState};
use super::pg_migrations::{MIGRATION_LOCK, PG_MIGRATIONS};
use super::*;
use crate::config::PostgresTarget;
use crate::sync::LockExt;

/// The channel a queued run is announced on.
pub const CHANNEL: &str = "ferry_queue";

/// The advisory lock claims of runs of one-at-a-time jobs take turns on (any constant key of
/// ferry's own: "ferry" in ASCII).
const CLAIM_LOCK: i64 = 0x0066_6572_7279;

/// History kept in a PostgreSQL database shared by several hosts.
pub struct PostgresHistory {
    target: PostgresTarget,
    /// Taken out only by `drop` (see the `Drop` impl).
    client: std::mem::ManuallyDrop<Mutex<Client>>,
}

impl Drop for PostgresHistory {
    fn drop(&mut self) {
        // SAFETY: this is the value's drop; the field is not touched again after `take`.
        let client = unsafe { std::mem::ManuallyDrop::take(&mut self.client) };
        // Closing the connection blocks on the driver's runtime: off any runtime of this thread
        // (a handle may be dropped inside the daemon's async code).
        off_runtime(move || drop(client));
    }
}

const RUN_COLUMNS: &str = "id, job, state, trigger, params, attempt, queued_at, started_at, finished_at, \
     error_code, error_message, error_traceback, summary, progress_done, progress_total, cancel_requested, \
     not_before, retry_of, retried_by, owner, script_version";

type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Runs `f`, which blocks on the driver's own runtime, off any tokio runtime this thread is
/// part of: the synchronous driver cannot block a runtime's thread (tokio refuses to start a
/// runtime inside another), and the daemon calls the history from its runtime in a few places.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

fn connect(target: &PostgresTarget) -> Result<Client, HistoryError> {
    use crate::db::postgres::SslMode;
    let err = |source| HistoryError::Postgres {
        url: target.url.clone(),
        source,
    };
    let mut config: postgres::Config = target.url.parse().map_err(err)?;
    if let Some(p) = &target.password {
        config.password(p);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("ferry");
    // `[history] sslmode` wins over the URL's; TLS as for `[databases.NAME]`.
    let mode = target.sslmode.unwrap_or(match config.get_ssl_mode() {
        postgres::config::SslMode::Disable => SslMode::Disable,
        postgres::config::SslMode::Require => SslMode::Require,
        _ => SslMode::Prefer,
    });
    config.ssl_mode(match mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    let tls = crate::db::postgres::tls_connector(mode, target.ca_file.as_deref(), &target.url)
        .map_err(|e| HistoryError::Tls {
            url: target.url.clone(),
            message: e.to_string(),
        })?;
    match tls {
        None => config.connect(NoTls),
        Some(tls) => config.connect(tls),
    }
    .map_err(err)
}

impl PostgresHistory {
    /// Connects and applies pending migrations (hosts opening the database at once take turns).
    pub fn open(target: &PostgresTarget) -> Result<PostgresHistory, HistoryError> {
        let client = off_runtime(|| connect(target))?;
        let history = PostgresHistory {
            target: target.clone(),
            client: std::mem::ManuallyDrop::new(Mutex::new(client)),
        };
        history.migrate()?;
        Ok(history)
    }

    /// The database URL (without a password).
    pub fn url(&self) -> &str {
        &self.target.url
    }

    fn lease_secs(&self) -> f64 {
        self.target.lease.as_secs_f64()
    }

    fn err(&self, source: postgres::Error) -> HistoryError {
        HistoryError::Postgres {
            url: self.target.url.clone(),
            source,
        }
    }

    /// The connection, reconnected when the server closed it (a restart, a network cut).
    fn client(&self) -> Result<MutexGuard<'_, Client>, HistoryError> {
        // A panic while holding the lock leaves the client usable: the server rolls back a
        // transaction whose client went away mid-way, and statements are not shared.
        let mut guard = self.client.lock_unpoisoned();
        if guard.is_closed() {
            *guard = off_runtime(|| connect(&self.target))?;
        }
        Ok(guard)
    }

    /// Runs `f` on the connection, off any runtime (see [`off_runtime`]).
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, HistoryError> {
        off_runtime(|| {
            let mut client = self.client()?;
            f(&mut client).map_err(|e| self.err(e))
        })
    }

    fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, HistoryError> {
        self.with(|c| c.execute(sql, params))
    }

    fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<PgRow>, HistoryError> {
        let rows = self.with(|c| c.query(sql, params))?;
        Ok(rows.into_iter().map(|r| PgRow::new(r, sql)).collect())
    }

    fn query_opt(&self, sql: &str, params: &Params<'_>) -> Result<Option<PgRow>, HistoryError> {
        let row = self.with(|c| c.query_opt(sql, params))?;
        Ok(row.map(|r| PgRow::new(r, sql)))
    }

    fn query_one(&self, sql: &str, params: &Params<'_>) -> Result<PgRow, HistoryError> {
        let row = self.with(|c| c.query_one(sql, params))?;
        Ok(PgRow::new(row, sql))
    }

    fn migrate(&self) -> Result<(), HistoryError> {
        off_runtime(|| self.migrate_here())
    }

    fn migrate_here(&self) -> Result<(), HistoryError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(|e| self.err(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|e| self.err(e))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS ferry_schema (version BIGINT NOT NULL)")
            .map_err(|e| self.err(e))?;
        let version: Option<i64> = tx
            .query_opt("SELECT version FROM ferry_schema", &[])
            .map_err(|e| self.err(e))?
            .map(|r| PgRow::new(r, "SELECT version FROM ferry_schema").get(0))
            .transpose()?;
        let version = version.unwrap_or(0);
        let supported = PG_MIGRATIONS.len() as i64;
        if version > supported {
            return Err(HistoryError::TooNew {
                path: self.target.url.clone(),
                found: version,
                supported,
            });
        }
        for sql in PG_MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(sql).map_err(|e| self.err(e))?;
        }
        if version < supported {
            tx.execute("DELETE FROM ferry_schema", &[])
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO ferry_schema (version) VALUES ($1)",
                &[&supported],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn runs_where(&self, cond: &str, params: &Params<'_>) -> Result<Vec<RunRecord>, HistoryError> {
        let rows = self.query(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE {cond}"),
            params,
        )?;
        rows.iter().map(run_from_row).collect::<Result<_, _>>()
    }

    fn file_where(
        &self,
        cond: &str,
        arg: &(dyn ToSql + Sync),
    ) -> Result<Option<FileRecord>, HistoryError> {
        self.query_opt(
            &format!(
                "SELECT id, job, name, processing_path, run_id, state, final_path FROM files \
                     WHERE {cond} ORDER BY id DESC LIMIT 1"
            ),
            &[arg],
        )?
        .map(|r| file_from_row(&r))
        .transpose()
    }

    /// A connection of its own for copying a history into this one (see
    /// [`super::copy_into_postgres`]).
    pub(super) fn dedicated_client(&self) -> Result<Client, HistoryError> {
        off_runtime(|| connect(&self.target))
    }
}

/// A row read from the history: a value that does not convert to what ferry expects is an
/// error naming its table and column, never a panic (the database's content is outside data).
pub(super) struct PgRow {
    row: Row,
    table: String,
}

impl PgRow {
    /// Wraps a row of the statement `sql` (its first table names the row's table).
    pub(super) fn new(row: Row, sql: &str) -> PgRow {
        PgRow {
            row,
            table: table_of(sql),
        }
    }

    /// Column `idx`, converted.
    pub(super) fn get<'a, T: postgres::types::FromSql<'a>>(
        &'a self,
        idx: usize,
    ) -> Result<T, HistoryError> {
        self.row
            .try_get(idx)
            .map_err(|source| HistoryError::Column {
                table: self.table.clone(),
                column: self
                    .row
                    .columns()
                    .get(idx)
                    .map_or_else(|| format!("#{idx}"), |c| c.name().to_string()),
                source,
            })
    }
}

/// The first table a statement reads or writes (`FROM`, `INTO` or `UPDATE`).
fn table_of(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| ["FROM", "INTO", "UPDATE"].contains(&w[0]) && !w[1].starts_with('('))
        .map_or_else(
            || "?".to_string(),
            |w| {
                w[1].trim_matches(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .to_string()
            },
        )
}

fn run_from_row(row: &PgRow) -> Result<RunRecord, HistoryError> {
    let state: String = row.get(2)?;
    let error_code: Option<String> = row.get(9)?;
    let progress_done: Option<i64> = row.get(13)?;
    let progress_total: Option<i64> = row.get(14)?;
    Ok(RunRecord {
        id: row.get(0)?,
        job: row.get(1)?,
        state: state.parse().unwrap_or(RunState::Failed),
        trigger: Trigger::from_stored(row.get::<Option<Value>>(3)?.unwrap_or(Value::Null)),
        params: row.get::<Option<Value>>(4)?.unwrap_or(Value::Null),
        attempt: u32::try_from(row.get::<i64>(5)?).unwrap_or(u32::MAX),
        queued_at: row.get(6)?,
        started_at: row.get(7)?,
        finished_at: row.get(8)?,
        error: match error_code {
            Some(code) => Some(RunErrorInfo {
                code: ErrorCode::parse(&code),
                message: row.get::<Option<String>>(10)?.unwrap_or_default(),
                traceback: row.get(11)?,
            }),
            None => None,
        },
        summary: row.get(12)?,
        progress: progress_done.map(|done| Progress {
            done: done.max(0) as u64,
            total: progress_total.map(|t| t.max(0) as u64),
        }),
        cancel_requested: row.get(15)?,
        not_before: row.get(16)?,
        retry_of: row.get(17)?,
        retried_by: row.get(18)?,
        owner: row.get(19)?,
        script_version: row.get(20)?,
    })
}

fn file_from_row(r: &PgRow) -> Result<FileRecord, HistoryError> {
    Ok(FileRecord {
        id: r.get(0)?,
        job: r.get(1)?,
        name: r.get(2)?,
        processing_path: r.get(3)?,
        run_id: r.get(4)?,
        state: FileState::parse(&r.get::<String>(5)?),
        final_path: r.get(6)?,
    })
}

/// Inserts a queued run (leased for `lease` seconds when it has an owner) and returns its id.
fn insert_run(
    c: &mut impl GenericClient,
    run: &NewRun,
    lease: Option<f64>,
) -> Result<i64, postgres::Error> {
    let trigger = run.trigger.to_json();
    // Announced in the same round trip: every host's dispatcher listens. A run created with
    // an owner is started by that owner and not announced.
    let row = c.query_one(
        "WITH r AS (INSERT INTO runs (job, trigger_kind, trigger, params, state, attempt, \
         queued_at, not_before, retry_of, owner, lease_until, chained) \
         VALUES ($1, $2, $3, $4, 'queued', $5, now(), $6, $7, $8, \
         now() + make_interval(secs => $9), false) RETURNING id) \
         SELECT id, CASE WHEN $8::TEXT IS NULL THEN pg_notify($10, id::TEXT) END::TEXT FROM r",
        &[
            &run.job,
            &run.trigger.kind(),
            &trigger,
            &run.params,
            &i64::from(run.attempt),
            &run.not_before,
            &run.retry_of,
            &run.owner,
            &lease,
            &CHANNEL,
        ],
    )?;
    row.try_get(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl History for PostgresHistory {
    fn create_run(&self, run: &NewRun) -> Result<i64, HistoryError> {
        let lease = run.owner.as_ref().map(|_| self.lease_secs());
        self.with(|c| insert_run(c, run, lease))
    }

    fn start_run(
        &self,
        id: i64,
        worker_pid: u32,
        script_version: &str,
    ) -> Result<bool, HistoryError> {
        let n = self.execute(
            "UPDATE runs SET state = 'running', started_at = now(), worker_pid = $2, \
             script_version = $3 WHERE id = $1 AND state = 'queued' AND NOT cancel_requested",
            &[&id, &i64::from(worker_pid), &script_version],
        )?;
        Ok(n == 1)
    }

    fn finish_run(&self, id: i64, end: &RunEnd) -> Result<bool, HistoryError> {
        let (code, message, traceback) = match &end.error {
            Some(e) => (
                Some(e.code.as_str()),
                Some(&e.message),
                e.traceback.as_ref(),
            ),
            None => (None, None, None),
        };
        let n = self.execute(
            "UPDATE runs SET state = $2, finished_at = now(), error_code = $3, error_message = $4, \
             error_traceback = $5, summary = $6 WHERE id = $1 AND state IN ('queued', 'running')",
            &[
                &id,
                &end.state.as_str(),
                &code,
                &message,
                &traceback,
                &end.summary,
            ],
        )?;
        Ok(n == 1)
    }

    fn finish_owned_run(&self, id: i64, owner: &str, end: &RunEnd) -> Result<bool, HistoryError> {
        let (code, message, traceback) = match &end.error {
            Some(e) => (
                Some(e.code.as_str()),
                Some(&e.message),
                e.traceback.as_ref(),
            ),
            None => (None, None, None),
        };
        let n = self.execute(
            "UPDATE runs SET state = $2, finished_at = now(), error_code = $3, error_message = $4, \
             error_traceback = $5, summary = $6 WHERE id = $1 AND state IN ('queued', 'running') \
             AND owner = $7",
            &[
                &id,
                &end.state.as_str(),
                &code,
                &message,
                &traceback,
                &end.summary,
                &owner,
            ],
        )?;
        Ok(n == 1)
    }

    fn set_progress(&self, id: i64, done: u64, total: Option<u64>) -> Result<(), HistoryError> {
        self.execute(
            "UPDATE runs SET progress_done = $2, progress_total = $3 WHERE id = $1",
            &[&id, &to_i64(done), &total.map(to_i64)],
        )?;
        Ok(())
    }

    fn append_log(&self, id: i64, level: LogLevel, message: &str) -> Result<i64, HistoryError> {
        let row = self.query_one(
            "INSERT INTO logs (run_id, at, level, message) VALUES ($1, now(), $2, $3) RETURNING seq",
            &[&id, &level.as_str(), &message],
        )?;
        row.get(0)
    }

    fn add_artifact(&self, id: i64, a: &NewArtifact) -> Result<(), HistoryError> {
        self.execute(
            "INSERT INTO artifacts (run_id, name, store, path, size, created_at, sha256, copy) \
             VALUES ($1, $2, $3, $4, $5, now(), $6, $7) ON CONFLICT (run_id, name) DO UPDATE SET \
             store = excluded.store, path = excluded.path, size = excluded.size, \
             created_at = excluded.created_at, sha256 = excluded.sha256, copy = excluded.copy",
            &[
                &id,
                &a.name,
                &a.store,
                &a.path,
                &a.size.map(to_i64),
                &a.sha256,
                &a.copy,
            ],
        )?;
        Ok(())
    }

    fn request_cancel(&self, id: i64) -> Result<CancelOutcome, HistoryError> {
        let closed = self.execute(
            "UPDATE runs SET state = 'cancelled', finished_at = now(), cancel_requested = true, \
             error_code = 'cancelled', error_message = 'run was cancelled before it started' \
             WHERE id = $1 AND state = 'queued'",
            &[&id],
        )?;
        if closed == 1 {
            return Ok(CancelOutcome::Closed);
        }
        let asked = self.execute(
            "UPDATE runs SET cancel_requested = true WHERE id = $1 AND state = 'running'",
            &[&id],
        )?;
        if asked == 1 {
            return Ok(CancelOutcome::Requested);
        }
        match self.query_opt("SELECT id FROM runs WHERE id = $1", &[&id])? {
            Some(_) => Ok(CancelOutcome::AlreadyEnded),
            None => Err(HistoryError::NotFound(id)),
        }
    }

    fn claim_run(&self, id: i64, owner: &str) -> Result<bool, HistoryError> {
        let n = self.execute(
            "UPDATE runs SET owner = $2, lease_until = now() + make_interval(secs => $3) \
             WHERE id = $1 AND state = 'queued' AND owner IS NULL AND NOT cancel_requested",
            &[&id, &owner, &self.lease_secs()],
        )?;
        Ok(n == 1)
    }

    fn renew_leases(&self, owner: &str) -> Result<u64, HistoryError> {
        self.execute(
            "UPDATE runs SET lease_until = now() + make_interval(secs => $2) \
             WHERE owner = $1 AND state IN ('queued', 'running')",
            &[&owner, &self.lease_secs()],
        )
    }

    fn lease_expired(&self, id: i64) -> Result<bool, HistoryError> {
        let row = self.query_opt(
            "SELECT coalesce(lease_until < now(), true) FROM runs WHERE id = $1",
            &[&id],
        )?;
        Ok(row.map(|r| r.get(0)).transpose()?.unwrap_or(true))
    }

    fn add_discard(&self, id: i64, store: &str, prefix: &str) -> Result<i64, HistoryError> {
        let row = self.query_one(
            "INSERT INTO run_discards (run_id, store, prefix) VALUES ($1, $2, $3) RETURNING id",
            &[&id, &store, &prefix],
        )?;
        row.get(0)
    }

    fn discards(&self, id: Option<i64>) -> Result<Vec<Discard>, HistoryError> {
        let rows = self.query(
            "SELECT id, run_id, store, prefix FROM run_discards \
             WHERE $1::BIGINT IS NULL OR run_id = $1 ORDER BY id",
            &[&id],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Discard {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    store: r.get(2)?,
                    prefix: r.get(3)?,
                })
            })
            .collect::<Result<_, HistoryError>>()
    }

    fn remove_discard(&self, discard_id: i64) -> Result<(), HistoryError> {
        self.execute("DELETE FROM run_discards WHERE id = $1", &[&discard_id])?;
        Ok(())
    }

    fn files_processing(&self) -> Result<Vec<FileRecord>, HistoryError> {
        let rows = self.query(
            "SELECT id, job, name, processing_path, run_id, state, final_path FROM files \
             WHERE state = 'processing' ORDER BY id",
            &[],
        )?;
        rows.iter().map(file_from_row).collect::<Result<_, _>>()
    }

    fn cancel_requested(&self, id: i64) -> Result<bool, HistoryError> {
        Ok(self
            .query_opt("SELECT cancel_requested FROM runs WHERE id = $1", &[&id])?
            .map(|r| r.get(0))
            .transpose()?
            .unwrap_or(false))
    }

    fn get_run(&self, id: i64) -> Result<RunRecord, HistoryError> {
        self.query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
            &[&id],
        )?
        .map(|r| run_from_row(&r))
        .transpose()?
        .ok_or(HistoryError::NotFound(id))
    }

    fn list_runs(&self, f: &RunFilter) -> Result<(Vec<RunRecord>, u64), HistoryError> {
        let states: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
        let filter = "($1::TEXT IS NULL OR job = $1) \
             AND (cardinality($2::TEXT[]) = 0 OR state = ANY($2)) \
             AND ($3::TIMESTAMPTZ IS NULL OR queued_at >= $3) \
             AND ($4::TIMESTAMPTZ IS NULL OR queued_at < $4)";
        let args: [&(dyn ToSql + Sync); 4] = [&f.job, &states, &f.since, &f.until];
        let total: i64 = self
            .query_one(&format!("SELECT count(*) FROM runs WHERE {filter}"), &args)?
            .get(0)?;
        let limit = if f.limit == 0 {
            "ALL".to_string()
        } else {
            f.limit.to_string()
        };
        let rows = self.runs_where(
            &format!(
                "{filter} ORDER BY id DESC LIMIT {limit} OFFSET {}",
                f.offset
            ),
            &args,
        )?;
        Ok((rows, total.max(0) as u64))
    }

    fn logs(&self, id: i64, after: i64, limit: u32) -> Result<Vec<LogLine>, HistoryError> {
        let limit = if limit == 0 {
            None
        } else {
            Some(i64::from(limit))
        };
        let rows = self.query(
            "SELECT seq, at, level, message FROM logs WHERE run_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
            &[&id, &after, &limit],
        )?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    level: r.get::<String>(2)?.parse().unwrap_or(LogLevel::Info),
                    message: r.get(3)?,
                })
            })
            .collect::<Result<_, HistoryError>>()
    }

    fn artifacts(&self, id: i64) -> Result<Vec<Artifact>, HistoryError> {
        let rows = self.query(
            "SELECT name, store, path, size, created_at, sha256, copy FROM artifacts \
             WHERE run_id = $1 ORDER BY created_at, name",
            &[&id],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Artifact {
                    name: r.get(0)?,
                    store: r.get(1)?,
                    path: r.get(2)?,
                    size: r.get::<Option<i64>>(3)?.map(|s| s.max(0) as u64),
                    created_at: r.get(4)?,
                    sha256: r.get(5)?,
                    copy: r.get(6)?,
                })
            })
            .collect::<Result<_, HistoryError>>()
    }

    fn delete_run(&self, id: i64) -> Result<(), HistoryError> {
        let run = self.get_run(id)?;
        if !run.state.is_closed() {
            return Err(HistoryError::Active(id, run.state));
        }
        let n = self.execute(
            "DELETE FROM runs WHERE id = $1 AND state NOT IN ('queued', 'running')",
            &[&id],
        )?;
        if n == 0 {
            return Err(HistoryError::NotFound(id));
        }
        Ok(())
    }

    fn state_get(&self, job: &str, key: &str) -> Result<Option<Value>, HistoryError> {
        Ok(self
            .query_opt(
                "SELECT value FROM job_state WHERE job = $1 AND key = $2",
                &[&job, &key],
            )?
            .map(|r| r.get::<String>(0))
            .transpose()?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    fn state_set(&self, job: &str, key: &str, value: Option<&Value>) -> Result<(), HistoryError> {
        match value {
            Some(v) => self.execute(
                "INSERT INTO job_state (job, key, value, updated_at) VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (job, key) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
                &[&job, &key, &v.to_string()],
            )?,
            None => self.execute(
                "DELETE FROM job_state WHERE job = $1 AND key = $2",
                &[&job, &key],
            )?,
        };
        Ok(())
    }

    fn runs_in_state(&self, state: RunState) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where("state = $1 ORDER BY id", &[&state.as_str()])
    }

    fn worker_pid(&self, id: i64) -> Result<Option<u32>, HistoryError> {
        Ok(self
            .query_opt("SELECT worker_pid FROM runs WHERE id = $1", &[&id])?
            .map(|r| r.get::<Option<i64>>(0))
            .transpose()?
            .flatten()
            .and_then(|p| u32::try_from(p).ok()))
    }

    fn create_retry(&self, run: &NewRun) -> Result<Option<i64>, HistoryError> {
        // The UPDATE takes the retried run's row lock: a second host retrying the same run
        // waits for this transaction, then finds `retried_by` set and rolls its own back.
        self.with(|c| {
            let mut tx = c.transaction()?;
            let id = insert_run(&mut tx, run, None)?;
            let n = tx.execute(
                "UPDATE runs SET retried_by = $2 WHERE id = $1 AND retried_by IS NULL",
                &[&run.retry_of, &id],
            )?;
            if n == 0 {
                return Ok(None);
            }
            tx.execute(
                "UPDATE files SET run_id = $2 WHERE run_id = $1",
                &[&run.retry_of, &id],
            )?;
            tx.commit()?;
            Ok(Some(id))
        })
    }

    fn file_claimed(
        &self,
        job: &str,
        name: &str,
        processing_path: &str,
        size: u64,
        run_id: i64,
    ) -> Result<i64, HistoryError> {
        let row = self.query_one(
            "INSERT INTO files (job, name, processing_path, size, run_id, state, claimed_at) \
             VALUES ($1, $2, $3, $4, $5, 'processing', now()) RETURNING id",
            &[&job, &name, &processing_path, &to_i64(size), &run_id],
        )?;
        row.get(0)
    }

    fn file_for_run(&self, run_id: i64) -> Result<Option<FileRecord>, HistoryError> {
        self.file_where("run_id = $1", &run_id)
    }

    fn file_by_processing_path(&self, path: &str) -> Result<Option<FileRecord>, HistoryError> {
        self.file_where("processing_path = $1 AND state = 'processing'", &path)
    }

    fn file_finished(
        &self,
        file_id: i64,
        state: FileState,
        final_path: Option<&str>,
    ) -> Result<(), HistoryError> {
        self.execute(
            "UPDATE files SET state = $2, finished_at = now(), final_path = $3 WHERE id = $1",
            &[&file_id, &state.as_str(), &final_path],
        )?;
        Ok(())
    }

    fn runnable(
        &self,
        after: i64,
        limit: u32,
        _now: DateTime<Utc>,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "state = 'queued' AND owner IS NULL AND (not_before IS NULL OR not_before <= now()) \
             AND id > $1 ORDER BY id LIMIT $2",
            &[&after, &i64::from(limit)],
        )
    }

    fn next_not_before(&self, _now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, HistoryError> {
        self.query_one(
            "SELECT min(not_before) FROM runs WHERE state = 'queued' AND owner IS NULL \
                 AND not_before > now()",
            &[],
        )?
        .get(0)
    }

    fn job_queued_now(&self, job: &str) -> Result<bool, HistoryError> {
        self.query_one(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE job = $1 AND (state = 'running' \
                 OR (state = 'queued' AND (not_before IS NULL OR not_before <= now()))))",
            &[&job],
        )?
        .get(0)
    }

    fn owned_open_runs(&self) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "state = 'running' OR (state = 'queued' AND owner IS NOT NULL) ORDER BY id",
            &[],
        )
    }

    fn interrupted_unretried(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "state = 'interrupted' AND retried_by IS NULL \
             AND ($1::TIMESTAMPTZ IS NULL OR finished_at >= $1) ORDER BY id",
            &[&since],
        )
    }

    fn count_in_state(&self, state: RunState) -> Result<u64, HistoryError> {
        let n: i64 = self
            .query_one(
                "SELECT count(*) FROM runs WHERE state = $1",
                &[&state.as_str()],
            )?
            .get(0)?;
        Ok(n.max(0) as u64)
    }

    fn set_all_chained(&self) -> Result<u64, HistoryError> {
        self.execute(
            "UPDATE runs SET chained = true WHERE NOT chained AND state NOT IN ('queued', 'running')",
            &[],
        )
    }

    fn unchained_runs(&self, limit: u32) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "NOT chained AND state NOT IN ('queued', 'running') ORDER BY id LIMIT $1",
            &[&i64::from(limit)],
        )
    }

    fn set_chained(&self, id: i64) -> Result<(), HistoryError> {
        self.execute("UPDATE runs SET chained = true WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn chained_run_of(&self, job: &str, upstream: i64) -> Result<Option<i64>, HistoryError> {
        self.query_opt(
            "SELECT id FROM runs WHERE job = $1 AND trigger_kind = 'job' \
                 AND trigger -> 'of' = to_jsonb($2::BIGINT) LIMIT 1",
            &[&job, &upstream],
        )?
        .map(|r| r.get(0))
        .transpose()
    }

    fn pause_job(&self, job: &str, by: Option<&str>) -> Result<bool, HistoryError> {
        let n = self.execute(
            "INSERT INTO paused_jobs (job, since, by) VALUES ($1, now(), $2) \
             ON CONFLICT (job) DO NOTHING",
            &[&job, &by],
        )?;
        Ok(n == 1)
    }

    fn resume_job(&self, job: &str) -> Result<bool, HistoryError> {
        Ok(self.execute("DELETE FROM paused_jobs WHERE job = $1", &[&job])? == 1)
    }

    fn paused_jobs(&self) -> Result<Vec<(String, DateTime<Utc>)>, HistoryError> {
        let rows = self.query("SELECT job, since FROM paused_jobs ORDER BY job", &[])?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
    }

    fn schedule_last_fire(&self, job: &str) -> Result<Option<DateTime<Utc>>, HistoryError> {
        self.query_opt("SELECT last_fire FROM schedules WHERE job = $1", &[&job])?
            .map(|r| r.get(0))
            .transpose()
    }

    fn schedule_set_last_fire(&self, job: &str, at: DateTime<Utc>) -> Result<(), HistoryError> {
        // Hosts may record the same occurrence in any order: the latest one stays.
        self.execute(
            "INSERT INTO schedules (job, last_fire) VALUES ($1, $2) ON CONFLICT (job) DO UPDATE \
             SET last_fire = greatest(schedules.last_fire, excluded.last_fire)",
            &[&job, &at],
        )?;
        Ok(())
    }

    fn apply_retention(
        &self,
        older_than: DateTime<Utc>,
        keep_per_job: u32,
    ) -> Result<u64, HistoryError> {
        let by_age = self.execute(
            "DELETE FROM runs WHERE state NOT IN ('queued', 'running') AND queued_at < $1",
            &[&older_than],
        )?;
        let by_count = self.execute(
            "DELETE FROM runs WHERE state NOT IN ('queued', 'running') AND id IN (SELECT id FROM \
             (SELECT id, row_number() OVER (PARTITION BY job ORDER BY id DESC) AS n FROM runs) t \
             WHERE n > $1)",
            &[&i64::from(keep_per_job)],
        )?;
        // The bookkeeping of "once" goes with the runs of its age.
        self.execute(
            "DELETE FROM cron_fires WHERE scheduled_at < $1",
            &[&older_than],
        )?;
        self.execute(
            "DELETE FROM file_claims WHERE claimed_at < $1",
            &[&older_than],
        )?;
        self.execute(super::PRUNE_VERSIONS, &[&older_than])?;
        Ok(by_age + by_count)
    }

    fn stats(&self) -> Result<Vec<RunStats>, HistoryError> {
        let rows = self.query(
            "SELECT job, state, count(*), coalesce(sum(extract(epoch FROM \
             (finished_at - started_at))), 0)::FLOAT8 FROM runs GROUP BY job, state \
             ORDER BY job, state",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(RunStats {
                    job: r.get(0)?,
                    state: r.get::<String>(1)?.parse().unwrap_or(RunState::Failed),
                    count: r.get::<i64>(2)?.max(0) as u64,
                    duration_seconds: r.get::<f64>(3)?.max(0.0),
                })
            })
            .collect::<Result<_, HistoryError>>()
    }

    fn count_by_state(&self) -> Result<Vec<(RunState, u64)>, HistoryError> {
        let rows = self.query("SELECT state, count(*) FROM runs GROUP BY state", &[])?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))
            .collect::<Result<Vec<_>, HistoryError>>()?
            .into_iter()
            .filter_map(|(state, n)| state.parse().ok().map(|s| (s, n.max(0) as u64)))
            .collect())
    }

    fn latest_runs(&self, job: &str, limit: u32) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "job = $1 ORDER BY id DESC LIMIT $2",
            &[&job, &i64::from(limit)],
        )
    }

    fn upcoming_runs(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "state = 'queued' AND not_before > $1 ORDER BY not_before, id LIMIT $2",
            &[&now, &i64::from(limit)],
        )
    }

    fn shared(&self) -> bool {
        true
    }

    fn set_script_version(&self, id: i64, version: &str) -> Result<(), HistoryError> {
        self.execute(
            "UPDATE runs SET script_version = $2 WHERE id = $1",
            &[&id, &version],
        )?;
        Ok(())
    }

    fn create_cron_run(
        &self,
        run: &NewRun,
        scheduled_at: DateTime<Utc>,
        by: &str,
    ) -> Result<Option<i64>, HistoryError> {
        let lease = run.owner.as_ref().map(|_| self.lease_secs());
        // One transaction: the occurrence is claimed only when its run is recorded too.
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "INSERT INTO cron_fires (job, scheduled_at, fired_by) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&run.job, &scheduled_at, &by],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let id = insert_run(&mut tx, run, lease)?;
            tx.commit()?;
            Ok(Some(id))
        })
    }

    fn claim_file_key(&self, job: &str, key: &str, by: &str) -> Result<bool, HistoryError> {
        let n = self.execute(
            "INSERT INTO file_claims (job, key, claimed_by, claimed_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (job, key) DO UPDATE SET claimed_by = excluded.claimed_by, \
             claimed_at = excluded.claimed_at \
             WHERE file_claims.claimed_at < now() - make_interval(secs => $4)",
            &[&job, &key, &by, &FILE_CLAIM_STALE.as_secs_f64()],
        )?;
        Ok(n == 1)
    }

    fn claim_due(
        &self,
        owner: &str,
        limit: u32,
        skip_jobs: &[String],
        exclusive: &[String],
    ) -> Result<Vec<RunRecord>, HistoryError> {
        // SKIP LOCKED: rows another host is claiming in this instant are left to it, so hosts
        // never wait for each other and never take the same run. A job whose overlap policy
        // allows one run at a time (`exclusive`) is not claimed while any host runs or holds a
        // run of it; claims take turns (a transaction-scoped advisory lock) so that two hosts
        // cannot each see the job free and each take one of its runs.
        let sql = format!(
            "UPDATE runs SET owner = $1, lease_until = now() + make_interval(secs => $2) \
             WHERE id IN (SELECT id FROM runs WHERE state = 'queued' AND owner IS NULL \
             AND NOT cancel_requested AND (not_before IS NULL OR not_before <= now()) \
             AND NOT (job = ANY($4)) \
             AND NOT (job = ANY($5) AND EXISTS (SELECT 1 FROM runs o WHERE o.job = runs.job \
             AND (o.state = 'running' OR (o.state = 'queued' AND o.owner IS NOT NULL)))) \
             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {RUN_COLUMNS}"
        );
        let lease = self.lease_secs();
        let limit = i64::from(limit);
        let rows = self.with(|c| {
            let mut tx = c.transaction()?;
            if !exclusive.is_empty() {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])?;
            }
            let rows = tx.query(&sql, &[&owner, &lease, &limit, &skip_jobs, &exclusive])?;
            tx.commit()?;
            Ok(rows)
        })?;
        let mut runs = rows
            .into_iter()
            .map(|r| run_from_row(&PgRow::new(r, &sql)))
            .collect::<Result<Vec<_>, _>>()?;
        runs.sort_by_key(|r| r.id);
        Ok(runs)
    }

    fn release_run(&self, id: i64, owner: &str) -> Result<bool, HistoryError> {
        let n = self.execute(
            "UPDATE runs SET owner = NULL, lease_until = NULL \
             WHERE id = $1 AND owner = $2 AND state = 'queued'",
            &[&id, &owner],
        )?;
        if n == 1 {
            self.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id.to_string()])?;
        }
        Ok(n == 1)
    }

    fn host_heartbeat(&self, b: &HostBeat) -> Result<(), HistoryError> {
        self.execute(
            "INSERT INTO hosts (owner, host, listen, started_at, seen_at, running, capacity, load) \
             VALUES ($1, $2, $3, now(), now(), $4, $5, $6) ON CONFLICT (owner) DO UPDATE SET \
             listen = excluded.listen, seen_at = excluded.seen_at, running = excluded.running, \
             capacity = excluded.capacity, load = excluded.load",
            &[
                &b.owner,
                &b.host,
                &b.listen,
                &to_i64(b.running),
                &to_i64(b.capacity),
                &b.load,
            ],
        )?;
        Ok(())
    }

    fn hosts(&self, within: Duration) -> Result<Vec<HostRecord>, HistoryError> {
        let rows = self.query(
            "SELECT owner, host, listen, started_at, seen_at, running, capacity, load FROM hosts \
             WHERE seen_at >= now() - make_interval(secs => $1) ORDER BY owner",
            &[&within.as_secs_f64()],
        )?;
        rows.iter()
            .map(|r| {
                Ok(HostRecord {
                    owner: r.get(0)?,
                    host: r.get(1)?,
                    listen: r.get(2)?,
                    started_at: r.get(3)?,
                    seen_at: r.get(4)?,
                    running: r.get::<i64>(5)?.max(0) as u64,
                    capacity: r.get::<i64>(6)?.max(0) as u64,
                    load: r.get(7)?,
                })
            })
            .collect::<Result<_, HistoryError>>()
    }

    fn host_gone(&self, owner: &str) -> Result<(), HistoryError> {
        self.execute("DELETE FROM hosts WHERE owner = $1", &[&owner])?;
        Ok(())
    }

    fn history_id(&self) -> Result<String, HistoryError> {
        self.execute(
            "INSERT INTO cluster (id, made) SELECT $1, now() WHERE NOT EXISTS (SELECT 1 FROM cluster) \
             ON CONFLICT DO NOTHING",
            &[&super::sqlite::new_history_id()],
        )?;
        self.query_one("SELECT id FROM cluster ORDER BY made, id LIMIT 1", &[])?
            .get(0)
    }

    fn queue_listener(&self) -> Result<Option<Box<dyn QueueListener>>, HistoryError> {
        let mut client = self.dedicated_client()?;
        off_runtime(|| client.batch_execute(&format!("LISTEN {CHANNEL}")))
            .map_err(|e| self.err(e))?;
        Ok(Some(Box::new(PgListener {
            target: self.target.clone(),
            client,
        })))
    }
}

/// A connection that only listens on [`CHANNEL`].
struct PgListener {
    target: PostgresTarget,
    client: Client,
}

impl QueueListener for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<bool, HistoryError> {
        off_runtime(|| self.wait_here(timeout))
    }
}

impl PgListener {
    fn wait_here(&mut self, timeout: Duration) -> Result<bool, HistoryError> {
        let err = |source| HistoryError::Postgres {
            url: self.target.url.clone(),
            source,
        };
        if self.client.is_closed() {
            // The server went away: listen again on a new connection; the caller polls meanwhile.
            let mut client = connect(&self.target)?;
            client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .map_err(err)?;
            self.client = client;
        }
        let mut notifications = self.client.notifications();
        let mut woken = notifications
            .timeout_iter(timeout)
            .next()
            .map_err(err)?
            .is_some();
        // Drain what else arrived: one wake-up covers them all.
        let mut more = notifications.iter();
        while more.next().map_err(err)?.is_some() {
            woken = true;
        }
        Ok(woken)
    }
}

impl NotificationLog for PostgresHistory {
    fn add_notification(&self, n: &NewNotification) -> Result<Option<i64>, HistoryError> {
        self.query_opt(
            "INSERT INTO notifications (run_id, job, event, channel, target, state, created_at, \
                 next_at) VALUES ($1, $2, $3, $4, $5, 'pending', now(), now()) \
                 ON CONFLICT DO NOTHING RETURNING id",
            &[&n.run_id, &n.job, &n.event, &n.channel, &n.target],
        )?
        .map(|r| r.get(0))
        .transpose()
    }

    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, HistoryError> {
        let rows = self.query(
            &format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE state = 'pending' \
                 AND next_at <= $1 ORDER BY next_at, id LIMIT $2"
            ),
            &[&now, &i64::from(limit)],
        )?;
        rows.iter()
            .map(notification_from_row)
            .collect::<Result<_, _>>()
    }

    fn next_notification_at(&self) -> Result<Option<DateTime<Utc>>, HistoryError> {
        self.query_one(
            "SELECT min(next_at) FROM notifications WHERE state = 'pending'",
            &[],
        )?
        .get(0)
    }

    fn notification_attempted(&self, id: i64, a: &Attempt) -> Result<(), HistoryError> {
        self.execute(
            "UPDATE notifications SET attempts = attempts + 1, state = $2, reason = $3, \
             next_at = $4, last_at = now() WHERE id = $1",
            &[&id, &a.state.as_str(), &a.reason, &a.next_at],
        )?;
        Ok(())
    }

    fn notifications(&self, run_id: i64) -> Result<Vec<Notification>, HistoryError> {
        let rows = self.query(
            &format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE run_id = $1 ORDER BY id"
            ),
            &[&run_id],
        )?;
        rows.iter()
            .map(notification_from_row)
            .collect::<Result<_, _>>()
    }

    fn previous_outcome(&self, job: &str, before: i64) -> Result<Option<RunState>, HistoryError> {
        Ok(self
            .query_opt(
                "SELECT state FROM runs WHERE job = $1 AND id < $2 AND retried_by IS NULL \
                 AND state IN ('succeeded', 'failed', 'timed_out', 'interrupted') \
                 ORDER BY id DESC LIMIT 1",
                &[&job, &before],
            )?
            .map(|r| r.get::<String>(0))
            .transpose()?
            .and_then(|state| state.parse().ok()))
    }

    fn runs_ended_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, HistoryError> {
        self.query(
            "SELECT id, job FROM runs WHERE finished_at >= $1 ORDER BY finished_at, id LIMIT $2",
            &[&since, &i64::from(limit)],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
    }
}

const NOTIFICATION_COLUMNS: &str = "id, run_id, job, event, channel, target, state, attempts, reason, created_at, next_at, last_at";

fn notification_from_row(r: &PgRow) -> Result<Notification, HistoryError> {
    Ok(Notification {
        id: r.get(0)?,
        run_id: r.get(1)?,
        job: r.get(2)?,
        event: r.get(3)?,
        channel: r.get(4)?,
        target: r.get(5)?,
        state: NotificationState::parse(&r.get::<String>(6)?),
        attempts: u32::try_from(r.get::<i64>(7)?.max(0)).unwrap_or(u32::MAX),
        reason: r.get(8)?,
        created_at: r.get(9)?,
        next_at: r.get(10)?,
        last_at: r.get(11)?,
    })
}

impl VersionStore for PostgresHistory {
    fn record_version(
        &self,
        job: &str,
        hash: &str,
        origin: VersionOrigin,
        written_by: Option<&str>,
        source: &str,
    ) -> Result<bool, HistoryError> {
        let n = self.with(|client| {
            let mut tx = client.transaction()?;
            // Hosts reloading the same edited script at once: one of them records it.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('ferry.version.' || $1))",
                &[&job],
            )?;
            let n = tx.execute(
                "INSERT INTO script_versions (job, hash, created_at, origin, source, written_by) \
                 SELECT $1, $2, now(), $3, $4, $5 WHERE COALESCE((SELECT hash FROM script_versions \
                 WHERE job = $1 ORDER BY id DESC LIMIT 1), '') <> $2",
                &[&job, &hash, &origin.as_str(), &source, &written_by],
            )?;
            tx.commit()?;
            Ok(n)
        })?;
        Ok(n == 1)
    }

    fn versions(
        &self,
        job: &str,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<ScriptVersion>, u64), HistoryError> {
        let total: i64 = self
            .query_one(
                "SELECT count(*) FROM script_versions WHERE job = $1",
                &[&job],
            )?
            .get(0)?;
        let rows = self.query(
            "SELECT hash, created_at, origin, written_by FROM script_versions WHERE job = $1 \
             ORDER BY id DESC LIMIT $2 OFFSET $3",
            &[&job, &i64::from(limit), &to_i64(offset)],
        )?;
        let list = rows
            .iter()
            .map(|r| {
                Ok(ScriptVersion {
                    hash: r.get(0)?,
                    created_at: r.get(1)?,
                    origin: VersionOrigin::parse(&r.get::<String>(2)?),
                    written_by: r.get(3)?,
                    source: None,
                })
            })
            .collect::<Result<Vec<_>, HistoryError>>()?;
        Ok((list, total.max(0) as u64))
    }

    fn version(&self, job: &str, hash: &str) -> Result<Option<ScriptVersion>, HistoryError> {
        self.query_opt(
            "SELECT hash, created_at, origin, source, written_by FROM script_versions \
                 WHERE job = $1 AND hash = $2 ORDER BY id DESC LIMIT 1",
            &[&job, &hash],
        )?
        .map(|r| {
            Ok(ScriptVersion {
                hash: r.get(0)?,
                created_at: r.get(1)?,
                origin: VersionOrigin::parse(&r.get::<String>(2)?),
                written_by: r.get(4)?,
                source: Some(r.get(3)?),
            })
        })
        .transpose()
    }
}

impl TokenStore for PostgresHistory {
    fn create_token(&self, name: &str, hash: &str, scope: &str) -> Result<bool, HistoryError> {
        let n = self.execute(
            "INSERT INTO api_tokens (name, hash, scope, created_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (name) DO NOTHING",
            &[&name, &hash, &scope],
        )?;
        Ok(n == 1)
    }

    fn revoke_token(&self, name: &str) -> Result<bool, HistoryError> {
        Ok(self.execute("DELETE FROM api_tokens WHERE name = $1", &[&name])? == 1)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, HistoryError> {
        let rows = self.query(
            "SELECT name, scope, created_at, last_used FROM api_tokens ORDER BY name",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(TokenRecord {
                    name: r.get(0)?,
                    scope: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used: r.get(3)?,
                })
            })
            .collect::<Result<_, HistoryError>>()
    }

    fn has_tokens(&self) -> Result<bool, HistoryError> {
        self.query_one("SELECT EXISTS (SELECT 1 FROM api_tokens)", &[])?
            .get(0)
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<(String, String)>, HistoryError> {
        let rows = self.query("SELECT name, hash, scope FROM api_tokens", &[])?;
        let mut found = None;
        for r in &rows {
            let stored: String = r.get(1)?;
            if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
                found = Some((r.get::<String>(0)?, r.get::<String>(2)?));
            }
        }
        if let Some((name, _)) = &found {
            // To the minute: a busy client does not write on every request.
            self.execute(
                "UPDATE api_tokens SET last_used = now() WHERE name = $1 \
                 AND (last_used IS NULL OR date_trunc('minute', last_used) <> date_trunc('minute', now()))",
                &[name],
            )?;
        }
        Ok(found)
    }
}

impl AuditLog for PostgresHistory {
    fn record_audit(&self, a: &NewAudit<'_>) -> Result<(), HistoryError> {
        self.execute(
            "INSERT INTO audit (at, actor, source, action, target, status) \
             VALUES (now(), $1, $2, $3, $4, $5)",
            &[
                &a.actor,
                &a.source,
                &a.action,
                &a.target,
                &i64::from(a.status),
            ],
        )?;
        Ok(())
    }

    fn audit(&self, limit: u32, offset: u64) -> Result<(Vec<AuditEntry>, u64), HistoryError> {
        let total: i64 = self.query_one("SELECT count(*) FROM audit", &[])?.get(0)?;
        let rows = self.query(
            "SELECT id, at, actor, source, action, target, status FROM audit \
             ORDER BY id DESC LIMIT $1 OFFSET $2",
            &[&i64::from(limit), &to_i64(offset)],
        )?;
        let list = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    source: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    status: u16::try_from(r.get::<i64>(6)?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, HistoryError>>()?;
        Ok((list, total.max(0) as u64))
    }
}
