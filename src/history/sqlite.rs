//! The SQLite backend of the history (the default).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use super::migrations::MIGRATIONS;
use super::*;
use crate::sync::LockExt;

/// History kept in one SQLite database file (WAL mode; safe to open from several processes).
pub struct SqliteHistory {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const RUN_COLUMNS: &str = "id, job, state, trigger, params, attempt, queued_at, started_at, finished_at, \
     error_code, error_message, error_traceback, summary, progress_done, progress_total, cancel_requested, \
     not_before, retry_of, retried_by, owner, script_version";

impl SqliteHistory {
    /// Opens (creating when missing) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteHistory, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir {
                path: path.display().to_string(),
                source,
            })?;
        }
        let db_err = |source| HistoryError::Db {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_handler(Some(wait_for_lock)).map_err(db_err)?;
        // Switching a fresh database to WAL needs an exclusive lock, and SQLite reports
        // SQLITE_BUSY for it at once, without the busy handler, while another process (a
        // worker, `ferry runs list`) is opening the same new file: retry for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            ) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5 + fastrand::u64(0..20)));
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        let history = SqliteHistory {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        loop {
            match history.migrate() {
                Err(HistoryError::Db { source, .. })
                    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5 + fastrand::u64(0..20)));
                }
                other => break other?,
            }
        }
        Ok(history)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back
        // whatever statement was in flight, so a poisoned lock is safe to take over.
        self.conn.lock_unpoisoned()
    }

    pub(super) fn err(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Db {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn migrate(&self) -> Result<(), HistoryError> {
        let mut conn = self.conn();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(HistoryError::TooNew {
                path: self.path.display().to_string(),
                found: version,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            // IMMEDIATE takes the write lock first, so two processes opening a fresh database at
            // once do not both try to apply the same migration.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            let current: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if current > i as i64 {
                continue;
            }
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Runs matching a condition (`WHERE` clause and order), with its parameters.
    fn runs_where(
        &self,
        cond: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE {cond}"))
            .map_err(|e| self.err(e))?;
        stmt.query_map(args, Self::run_from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
        let state: String = row.get(2)?;
        let error_code: Option<String> = row.get(9)?;
        let progress_done: Option<i64> = row.get(13)?;
        Ok(RunRecord {
            id: row.get(0)?,
            job: row.get(1)?,
            state: state.parse().unwrap_or(RunState::Failed),
            trigger: Trigger::from_stored(json_col(row, 3)?.unwrap_or(Value::Null)),
            params: json_col(row, 4)?.unwrap_or(Value::Null),
            attempt: row.get(5)?,
            queued_at: time_col(row, 6)?.unwrap_or_default(),
            started_at: time_col(row, 7)?,
            finished_at: time_col(row, 8)?,
            error: match error_code {
                Some(code) => Some(RunErrorInfo {
                    code: ErrorCode::parse(&code),
                    message: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
                    traceback: row.get(11)?,
                }),
                None => None,
            },
            summary: json_col(row, 12)?,
            progress: progress_done.map(|done| Progress {
                done: done.max(0) as u64,
                total: None,
            }),
            cancel_requested: row.get::<_, i64>(15)? != 0,
            not_before: time_col(row, 16)?,
            retry_of: row.get(17)?,
            retried_by: row.get(18)?,
            owner: row.get(19)?,
            script_version: row.get(20)?,
        })
        .and_then(|mut r| {
            if let Some(p) = r.progress.as_mut() {
                p.total = row.get::<_, Option<i64>>(14)?.map(|t| t.max(0) as u64);
            }
            Ok(r)
        })
    }
}

/// How long a write waits for another process's write to finish before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The busy handler of history connections: several processes (the daemon, the API, workers,
/// the CLI) write small transactions all the time, each holding the write lock for tens of
/// microseconds. SQLite's own busy timeout sleeps 1, 2, 5, 10 ms... between tries, which is
/// far longer than such a lock is held; this one tries again after 50 µs, backing off to 2 ms,
/// until [`LOCK_WAIT`] has passed.
fn wait_for_lock(tries: i32) -> bool {
    let tries = tries.max(0) as u64;
    // The time slept before this try: 50 µs each for the first 40 tries, then 2 ms each.
    let step = |n: u64| if n < 40 { 50 } else { 2000 };
    let slept_us = tries.min(40) * 50 + tries.saturating_sub(40) * 2000;
    if Duration::from_micros(slept_us) >= LOCK_WAIT {
        return false;
    }
    std::thread::sleep(Duration::from_micros(step(tries)));
    true
}

pub(super) fn now() -> String {
    format_time(&Utc::now())
}

/// The end of a lease taken or renewed now.
fn lease_end() -> String {
    format_time(&crate::jobs::owner::lease_end(Utc::now()))
}

fn file_from_row(r: &Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: r.get(0)?,
        job: r.get(1)?,
        name: r.get(2)?,
        processing_path: r.get(3)?,
        run_id: r.get(4)?,
        state: FileState::parse(&r.get::<_, String>(5)?),
        final_path: r.get(6)?,
    })
}

fn json_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Value>> {
    let text: Option<String> = row.get(idx)?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t))))
}

pub(super) fn time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(idx)?;
    Ok(text.and_then(|t| {
        DateTime::parse_from_rfc3339(&t)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }))
}

/// Inserts a queued run and returns its id.
fn insert_run(conn: &Connection, run: &NewRun) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO runs (job, trigger_kind, trigger, params, state, attempt, queued_at, not_before, retry_of, owner, lease_until, chained) \
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9, ?10, 0)",
        params![
            run.job,
            run.trigger.kind(),
            run.trigger.to_json().to_string(),
            run.params.to_string(),
            run.attempt,
            now(),
            run.not_before.as_ref().map(format_time),
            run.retry_of,
            run.owner,
            run.owner.as_ref().map(|_| lease_end())
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

impl History for SqliteHistory {
    fn create_run(&self, run: &NewRun) -> Result<i64, HistoryError> {
        insert_run(&self.conn(), run).map_err(|e| self.err(e))
    }

    fn start_run(
        &self,
        id: i64,
        worker_pid: u32,
        script_version: &str,
    ) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET state = 'running', started_at = ?2, worker_pid = ?3, \
                 script_version = ?4 WHERE id = ?1 AND state = 'queued' AND cancel_requested = 0",
                params![id, now(), worker_pid, script_version],
            )
            .map_err(|e| self.err(e))?;
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
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET state = ?2, finished_at = ?3, error_code = ?4, error_message = ?5, \
                 error_traceback = ?6, summary = ?7 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![
                    id,
                    end.state.as_str(),
                    now(),
                    code,
                    message,
                    traceback,
                    end.summary.as_ref().map(Value::to_string)
                ],
            )
            .map_err(|e| self.err(e))?;
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
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET state = ?2, finished_at = ?3, error_code = ?4, error_message = ?5, \
                 error_traceback = ?6, summary = ?7 WHERE id = ?1 AND state IN ('queued', 'running') \
                 AND owner = ?8",
                params![
                    id,
                    end.state.as_str(),
                    now(),
                    code,
                    message,
                    traceback,
                    end.summary.as_ref().map(Value::to_string),
                    owner
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn set_progress(&self, id: i64, done: u64, total: Option<u64>) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "UPDATE runs SET progress_done = ?2, progress_total = ?3 WHERE id = ?1",
                params![id, done as i64, total.map(|t| t as i64)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn append_log(&self, id: i64, level: LogLevel, message: &str) -> Result<i64, HistoryError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO logs (run_id, at, level, message) VALUES (?1, ?2, ?3, ?4)",
            params![id, now(), level.as_str(), message],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    fn add_artifact(&self, id: i64, a: &NewArtifact) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO artifacts (run_id, name, store, path, size, created_at, sha256, copy) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    a.name,
                    a.store,
                    a.path,
                    a.size.map(|s| s as i64),
                    now(),
                    a.sha256,
                    a.copy
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn request_cancel(&self, id: i64) -> Result<CancelOutcome, HistoryError> {
        let conn = self.conn();
        // A queued run has no worker that could notice a request: it is closed at once. The
        // state in the WHERE clause makes this atomic with a worker starting it.
        let closed = conn
            .execute(
                "UPDATE runs SET state = 'cancelled', finished_at = ?2, cancel_requested = 1, \
                 error_code = 'cancelled', error_message = 'run was cancelled before it started' \
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now()],
            )
            .map_err(|e| self.err(e))?;
        if closed == 1 {
            return Ok(CancelOutcome::Closed);
        }
        let asked = conn
            .execute(
                "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND state = 'running'",
                [id],
            )
            .map_err(|e| self.err(e))?;
        if asked == 1 {
            return Ok(CancelOutcome::Requested);
        }
        let exists: Option<i64> = conn
            .query_row("SELECT id FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        match exists {
            Some(_) => Ok(CancelOutcome::AlreadyEnded),
            None => Err(HistoryError::NotFound(id)),
        }
    }

    fn claim_run(&self, id: i64, owner: &str) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET owner = ?2, lease_until = ?3 \
                 WHERE id = ?1 AND state = 'queued' AND owner IS NULL AND cancel_requested = 0",
                params![id, owner, lease_end()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn renew_leases(&self, owner: &str) -> Result<u64, HistoryError> {
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET lease_until = ?2 WHERE owner = ?1 AND state IN ('queued', 'running')",
                params![owner, lease_end()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    fn lease_expired(&self, id: i64) -> Result<bool, HistoryError> {
        let until: Option<Option<String>> = self
            .conn()
            .query_row("SELECT lease_until FROM runs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let until = until
            .flatten()
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(crate::jobs::owner::lease_expired(until, Utc::now()))
    }

    fn add_discard(&self, id: i64, store: &str, prefix: &str) -> Result<i64, HistoryError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO run_discards (run_id, store, prefix) VALUES (?1, ?2, ?3)",
            params![id, store, prefix],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    fn discards(&self, id: Option<i64>) -> Result<Vec<Discard>, HistoryError> {
        let conn = self.conn();
        let (sql, arg) = match id {
            Some(id) => (
                "SELECT id, run_id, store, prefix FROM run_discards WHERE run_id = ?1 ORDER BY id",
                id,
            ),
            None => (
                "SELECT id, run_id, store, prefix FROM run_discards WHERE ?1 = ?1 ORDER BY id",
                0,
            ),
        };
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
        stmt.query_map([arg], |r| {
            Ok(Discard {
                id: r.get(0)?,
                run_id: r.get(1)?,
                store: r.get(2)?,
                prefix: r.get(3)?,
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.err(e))
    }

    fn remove_discard(&self, discard_id: i64) -> Result<(), HistoryError> {
        self.conn()
            .execute("DELETE FROM run_discards WHERE id = ?1", [discard_id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn files_processing(&self) -> Result<Vec<FileRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, job, name, processing_path, run_id, state, final_path FROM files \
                 WHERE state = 'processing' ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], file_from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn cancel_requested(&self, id: i64) -> Result<bool, HistoryError> {
        let flag: Option<i64> = self
            .conn()
            .query_row(
                "SELECT cancel_requested FROM runs WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(flag.unwrap_or(0) != 0)
    }

    fn get_run(&self, id: i64) -> Result<RunRecord, HistoryError> {
        self.conn()
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                Self::run_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(HistoryError::NotFound(id))
    }

    fn list_runs(&self, f: &RunFilter) -> Result<(Vec<RunRecord>, u64), HistoryError> {
        let mut clauses = Vec::new();
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(job) = &f.job {
            args.push(SqlValue::Text(job.clone()));
            clauses.push(format!("job = ?{}", args.len()));
        }
        if !f.states.is_empty() {
            let mut marks = Vec::new();
            for s in &f.states {
                args.push(SqlValue::Text(s.as_str().to_string()));
                marks.push(format!("?{}", args.len()));
            }
            clauses.push(format!("state IN ({})", marks.join(", ")));
        }
        if let Some(since) = &f.since {
            args.push(SqlValue::Text(format_time(since)));
            clauses.push(format!("queued_at >= ?{}", args.len()));
        }
        if let Some(until) = &f.until {
            args.push(SqlValue::Text(format_time(until)));
            clauses.push(format!("queued_at < ?{}", args.len()));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let conn = self.conn();
        let total: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM runs{filter}"),
                params_from_iter(args.iter()),
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let limit = if f.limit == 0 { -1 } else { i64::from(f.limit) };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs{filter} ORDER BY id DESC LIMIT {limit} OFFSET {}",
            f.offset
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params_from_iter(args.iter()), Self::run_from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok((rows, total.max(0) as u64))
    }

    fn logs(&self, id: i64, after: i64, limit: u32) -> Result<Vec<LogLine>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, at, level, message FROM logs WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
            .map_err(|e| self.err(e))?;
        let limit = if limit == 0 { -1 } else { i64::from(limit) };
        stmt.query_map(params![id, after, limit], |row| {
            let level: String = row.get(2)?;
            Ok(LogLine {
                seq: row.get(0)?,
                at: time_col(row, 1)?.unwrap_or_default(),
                level: level.parse().unwrap_or(LogLevel::Info),
                message: row.get(3)?,
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.err(e))
    }

    fn artifacts(&self, id: i64) -> Result<Vec<Artifact>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, store, path, size, created_at, sha256, copy FROM artifacts WHERE run_id = ?1 ORDER BY created_at, name")
            .map_err(|e| self.err(e))?;
        stmt.query_map([id], |row| {
            Ok(Artifact {
                name: row.get(0)?,
                store: row.get(1)?,
                path: row.get(2)?,
                size: row.get::<_, Option<i64>>(3)?.map(|s| s.max(0) as u64),
                created_at: time_col(row, 4)?.unwrap_or_default(),
                sha256: row.get(5)?,
                copy: row.get(6)?,
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.err(e))
    }

    fn delete_run(&self, id: i64) -> Result<(), HistoryError> {
        let run = self.get_run(id)?;
        if !run.state.is_closed() {
            return Err(HistoryError::Active(id, run.state));
        }
        // The state check is repeated in the statement so a run re-queued meanwhile survives.
        let n = self
            .conn()
            .execute(
                "DELETE FROM runs WHERE id = ?1 AND state NOT IN ('queued', 'running')",
                [id],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(HistoryError::NotFound(id));
        }
        Ok(())
    }

    fn state_get(&self, job: &str, key: &str) -> Result<Option<Value>, HistoryError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM job_state WHERE job = ?1 AND key = ?2",
                params![job, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn state_set(&self, job: &str, key: &str, value: Option<&Value>) -> Result<(), HistoryError> {
        let conn = self.conn();
        match value {
            Some(v) => conn.execute(
                "INSERT INTO job_state (job, key, value, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (job, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![job, key, v.to_string(), now()],
            ),
            None => conn.execute("DELETE FROM job_state WHERE job = ?1 AND key = ?2", params![job, key]),
        }
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn runs_in_state(&self, state: RunState) -> Result<Vec<RunRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE state = ?1 ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map([state.as_str()], Self::run_from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn worker_pid(&self, id: i64) -> Result<Option<u32>, HistoryError> {
        let pid: Option<Option<i64>> = self
            .conn()
            .query_row("SELECT worker_pid FROM runs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(pid.flatten().and_then(|p| u32::try_from(p).ok()))
    }

    fn create_retry(&self, run: &NewRun) -> Result<Option<i64>, HistoryError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let id = insert_run(&tx, run).map_err(|e| self.err(e))?;
        let n = tx
            .execute(
                "UPDATE runs SET retried_by = ?2 WHERE id = ?1 AND retried_by IS NULL",
                params![run.retry_of, id],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            // Retried already: dropping the transaction forgets the run just inserted.
            return Ok(None);
        }
        tx.execute(
            "UPDATE files SET run_id = ?2 WHERE run_id = ?1",
            params![run.retry_of, id],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Some(id))
    }

    fn file_claimed(
        &self,
        job: &str,
        name: &str,
        processing_path: &str,
        size: u64,
        run_id: i64,
    ) -> Result<i64, HistoryError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO files (job, name, processing_path, size, run_id, state, claimed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'processing', ?6)",
            params![job, name, processing_path, size as i64, run_id, now()],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    fn file_for_run(&self, run_id: i64) -> Result<Option<FileRecord>, HistoryError> {
        self.file_where("run_id = ?1", rusqlite::types::Value::Integer(run_id))
    }

    fn file_by_processing_path(&self, path: &str) -> Result<Option<FileRecord>, HistoryError> {
        self.file_where(
            "processing_path = ?1 AND state = 'processing'",
            rusqlite::types::Value::Text(path.to_string()),
        )
    }

    fn file_finished(
        &self,
        file_id: i64,
        state: FileState,
        final_path: Option<&str>,
    ) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "UPDATE files SET state = ?2, finished_at = ?3, final_path = ?4 WHERE id = ?1",
                params![file_id, state.as_str(), now(), final_path],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn runnable(
        &self,
        after: i64,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "state = 'queued' AND owner IS NULL AND (not_before IS NULL OR not_before <= ?1) \
             AND id > ?2 ORDER BY id LIMIT ?3",
            params![format_time(&now), after, limit],
        )
    }

    fn next_not_before(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let t: Option<String> = self
            .conn()
            .query_row(
                "SELECT min(not_before) FROM runs WHERE state = 'queued' AND owner IS NULL \
                 AND not_before > ?1",
                [format_time(&now)],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(t.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|d| d.with_timezone(&Utc)))
    }

    fn job_queued_now(&self, job: &str) -> Result<bool, HistoryError> {
        let n: i64 = self
            .conn()
            .query_row(
                "SELECT count(*) FROM (SELECT 1 FROM runs WHERE state = 'queued' AND job = ?1 \
                 AND (not_before IS NULL OR not_before <= ?2) LIMIT 1)",
                params![job, now()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    fn owned_open_runs(&self) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "state = 'running' OR (state = 'queued' AND owner IS NOT NULL) ORDER BY id",
            params![],
        )
    }

    fn interrupted_unretried(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        let since = since.map(|t| format_time(&t)).unwrap_or_default();
        self.runs_where(
            "state = 'interrupted' AND retried_by IS NULL AND coalesce(finished_at, '') >= ?1 \
             ORDER BY id",
            params![since],
        )
    }

    fn count_in_state(&self, state: RunState) -> Result<u64, HistoryError> {
        let n: i64 = self
            .conn()
            .query_row(
                "SELECT count(*) FROM runs WHERE state = ?1",
                [state.as_str()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n.max(0) as u64)
    }

    fn unchained_runs(&self, limit: u32) -> Result<Vec<RunRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE chained = 0 \
                 AND state NOT IN ('queued', 'running') ORDER BY id LIMIT ?1"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map([limit], Self::run_from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn set_all_chained(&self) -> Result<u64, HistoryError> {
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET chained = 1 WHERE chained = 0 AND state NOT IN ('queued', 'running')",
                [],
            )
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    fn set_chained(&self, id: i64) -> Result<(), HistoryError> {
        self.conn()
            .execute("UPDATE runs SET chained = 1 WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn chained_run_of(&self, job: &str, upstream: i64) -> Result<Option<i64>, HistoryError> {
        self.conn()
            .query_row(
                "SELECT id FROM runs WHERE job = ?1 AND trigger_kind = 'job' \
                 AND json_extract(trigger, '$.of') = ?2 LIMIT 1",
                params![job, upstream],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn pause_job(&self, job: &str, by: Option<&str>) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO paused_jobs (job, since, by) VALUES (?1, ?2, ?3)",
                params![job, now(), by],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn resume_job(&self, job: &str) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute("DELETE FROM paused_jobs WHERE job = ?1", [job])
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn paused_jobs(&self) -> Result<Vec<(String, DateTime<Utc>)>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT job, since FROM paused_jobs ORDER BY job")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, time_col(r, 1)?.unwrap_or_default())))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn schedule_last_fire(&self, job: &str) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT last_fire FROM schedules WHERE job = ?1",
                [job],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text.and_then(|t| {
            DateTime::parse_from_rfc3339(&t)
                .ok()
                .map(|d| d.with_timezone(&Utc))
        }))
    }

    fn schedule_set_last_fire(&self, job: &str, at: DateTime<Utc>) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "INSERT INTO schedules (job, last_fire) VALUES (?1, ?2) \
                 ON CONFLICT (job) DO UPDATE SET last_fire = excluded.last_fire",
                params![job, format_time(&at)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn apply_retention(
        &self,
        older_than: DateTime<Utc>,
        keep_per_job: u32,
    ) -> Result<u64, HistoryError> {
        let conn = self.conn();
        let closed = "state NOT IN ('queued', 'running')";
        let by_age = conn
            .execute(
                &format!("DELETE FROM runs WHERE {closed} AND queued_at < ?1"),
                [format_time(&older_than)],
            )
            .map_err(|e| self.err(e))?;
        let by_count = conn
            .execute(
                &format!(
                    "DELETE FROM runs WHERE {closed} AND id IN (SELECT id FROM (SELECT id, \
                     row_number() OVER (PARTITION BY job ORDER BY id DESC) AS n FROM runs) WHERE n > ?1)"
                ),
                [i64::from(keep_per_job)],
            )
            .map_err(|e| self.err(e))?;
        // The bookkeeping of "once" goes with the runs of its age.
        let cutoff = format_time(&older_than);
        conn.execute("DELETE FROM cron_fires WHERE scheduled_at < ?1", [&cutoff])
            .map_err(|e| self.err(e))?;
        conn.execute("DELETE FROM file_claims WHERE claimed_at < ?1", [&cutoff])
            .map_err(|e| self.err(e))?;
        conn.execute(super::PRUNE_VERSIONS, [&cutoff])
            .map_err(|e| self.err(e))?;
        Ok((by_age + by_count) as u64)
    }

    fn stats(&self) -> Result<Vec<RunStats>, HistoryError> {
        self.stats_query()
    }

    fn count_by_state(&self) -> Result<Vec<(RunState, u64)>, HistoryError> {
        let conn = self.conn();
        // Answered from the (state, id) index alone.
        let mut stmt = conn
            .prepare_cached("SELECT state, count(*) FROM runs GROUP BY state")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| s.parse().ok().map(|s| (s, n)))
            .collect())
    }

    fn latest_runs(&self, job: &str, limit: u32) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "job = ?1 ORDER BY id DESC LIMIT ?2",
            params![job, i64::from(limit)],
        )
    }

    fn upcoming_runs(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, HistoryError> {
        self.runs_where(
            "state = 'queued' AND not_before > ?1 ORDER BY not_before, id LIMIT ?2",
            params![format_time(&now), i64::from(limit)],
        )
    }

    fn set_script_version(&self, id: i64, version: &str) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "UPDATE runs SET script_version = ?2 WHERE id = ?1",
                params![id, version],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn create_cron_run(
        &self,
        run: &NewRun,
        scheduled_at: DateTime<Utc>,
        by: &str,
    ) -> Result<Option<i64>, HistoryError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO cron_fires (job, scheduled_at, fired_by) VALUES (?1, ?2, ?3)",
                params![run.job, format_time(&scheduled_at), by],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Ok(None);
        }
        let id = insert_run(&tx, run).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Some(id))
    }

    fn claim_file_key(&self, job: &str, key: &str, by: &str) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO file_claims (job, key, claimed_by, claimed_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (job, key) DO UPDATE SET claimed_by = excluded.claimed_by, \
                 claimed_at = excluded.claimed_at WHERE file_claims.claimed_at < ?5",
                params![
                    job,
                    key,
                    by,
                    now(),
                    format_time(&(Utc::now() - stale_claim()))
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn claim_due(
        &self,
        owner: &str,
        limit: u32,
        skip_jobs: &[String],
        _exclusive: &[String],
    ) -> Result<Vec<RunRecord>, HistoryError> {
        // One host: the dispatcher's own running runs are all there is, and `skip_jobs` holds
        // them back. One writer at a time: the claim of each run is its own conditional UPDATE.
        let mut claimed = Vec::new();
        let mut after = 0;
        while claimed.len() < limit as usize {
            let page = self.runnable(after, 100, Utc::now())?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for run in page {
                if claimed.len() < limit as usize
                    && !run.cancel_requested
                    && !skip_jobs.contains(&run.job)
                    && self.claim_run(run.id, owner)?
                {
                    claimed.push(self.get_run(run.id)?);
                }
            }
        }
        Ok(claimed)
    }

    fn release_run(&self, id: i64, owner: &str) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute(
                "UPDATE runs SET owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND owner = ?2 AND state = 'queued'",
                params![id, owner],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn host_heartbeat(&self, b: &HostBeat) -> Result<(), HistoryError> {
        let at = now();
        self.conn()
            .execute(
                "INSERT INTO hosts (owner, host, listen, started_at, seen_at, running, capacity, load) \
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7) ON CONFLICT (owner) DO UPDATE SET \
                 listen = excluded.listen, seen_at = excluded.seen_at, running = excluded.running, \
                 capacity = excluded.capacity, load = excluded.load",
                params![
                    b.owner,
                    b.host,
                    b.listen,
                    at,
                    b.running as i64,
                    b.capacity as i64,
                    b.load
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn hosts(&self, within: Duration) -> Result<Vec<HostRecord>, HistoryError> {
        let since = Utc::now() - chrono::Duration::from_std(within).unwrap_or_default();
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT owner, host, listen, started_at, seen_at, running, capacity, load \
                 FROM hosts WHERE seen_at >= ?1 ORDER BY owner",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([format_time(&since)], |r| {
            Ok(HostRecord {
                owner: r.get(0)?,
                host: r.get(1)?,
                listen: r.get(2)?,
                started_at: time_col(r, 3)?.unwrap_or_default(),
                seen_at: time_col(r, 4)?.unwrap_or_default(),
                running: r.get::<_, i64>(5)?.max(0) as u64,
                capacity: r.get::<_, i64>(6)?.max(0) as u64,
                load: r.get(7)?,
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.err(e))
    }

    fn host_gone(&self, owner: &str) -> Result<(), HistoryError> {
        self.conn()
            .execute("DELETE FROM hosts WHERE owner = ?1", [owner])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn history_id(&self) -> Result<String, HistoryError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO cluster (id, made) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM cluster)",
            params![new_history_id(), now()],
        )
        .map_err(|e| self.err(e))?;
        conn.query_row("SELECT id FROM cluster ORDER BY made LIMIT 1", [], |r| {
            r.get(0)
        })
        .map_err(|e| self.err(e))
    }
}

/// How old a file claim must be before another process may take the file over: a file still in
/// the watched folder that long after its claim was never moved by its claimer (it died).
fn stale_claim() -> chrono::Duration {
    chrono::Duration::from_std(super::FILE_CLAIM_STALE).unwrap_or_default()
}

/// A fresh random history id (128 bits, hex).
pub(super) fn new_history_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl SqliteHistory {
    fn stats_query(&self) -> Result<Vec<RunStats>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT job, state, count(*), \
                 coalesce(sum((julianday(finished_at) - julianday(started_at)) * 86400.0), 0.0) \
                 FROM runs GROUP BY job, state ORDER BY job, state",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            let state: String = r.get(1)?;
            Ok(RunStats {
                job: r.get(0)?,
                state: state.parse().unwrap_or(RunState::Failed),
                count: r.get::<_, i64>(2)?.max(0) as u64,
                duration_seconds: r.get::<_, f64>(3)?.max(0.0),
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.err(e))
    }

    fn file_where(
        &self,
        cond: &str,
        arg: rusqlite::types::Value,
    ) -> Result<Option<FileRecord>, HistoryError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT id, job, name, processing_path, run_id, state, final_path FROM files WHERE {cond} ORDER BY id DESC LIMIT 1"
                ),
                [arg],
                file_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_run(job: &str) -> NewRun {
        NewRun {
            job: job.into(),
            trigger: Trigger::Manual,
            params: serde_json::json!({"a": 1}),
            attempt: 1,
            not_before: None,
            retry_of: None,
            owner: None,
        }
    }

    #[test]
    fn a_cron_run_that_cannot_be_recorded_leaves_its_occurrence_claimable() {
        let dir = tempfile::tempdir().unwrap();
        let h = SqliteHistory::open(&dir.path().join("h.db")).unwrap();
        // The process "dies" between the claim and the run: the run insert fails.
        h.conn()
            .execute_batch(
                "CREATE TEMP TRIGGER boom BEFORE INSERT ON runs \
                 BEGIN SELECT RAISE(ABORT, 'crash'); END",
            )
            .unwrap();
        let at = Utc::now();
        assert!(h.create_cron_run(&new_run("a"), at, "h1").is_err());
        h.conn().execute_batch("DROP TRIGGER boom").unwrap();
        let id = h.create_cron_run(&new_run("a"), at, "h2").unwrap();
        assert!(id.is_some(), "the occurrence is still claimable");
        assert_eq!(h.create_cron_run(&new_run("a"), at, "h1").unwrap(), None);
        assert_eq!(h.count_in_state(RunState::Queued).unwrap(), 1);
    }

    #[test]
    fn lifecycle_filter_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let h = SqliteHistory::open(&dir.path().join("sub/h.db")).unwrap();
        let a = h.create_run(&new_run("a")).unwrap();
        let b = h.create_run(&new_run("b")).unwrap();
        assert!(h.start_run(a, 1, "v").unwrap());
        assert!(
            !h.start_run(a, 1, "v").unwrap(),
            "a running run cannot start again"
        );
        assert!(matches!(
            h.delete_run(a),
            Err(HistoryError::Active(_, RunState::Running))
        ));
        h.append_log(a, LogLevel::Info, "one").unwrap();
        let s2 = h.append_log(a, LogLevel::Warn, "two").unwrap();
        h.set_progress(a, 5, Some(10)).unwrap();
        let end = RunEnd {
            state: RunState::Succeeded,
            error: None,
            summary: Some(serde_json::json!({"rows": 3})),
        };
        assert!(h.finish_run(a, &end).unwrap());
        assert!(!h.finish_run(a, &end).unwrap(), "closing twice is refused");
        let r = h.get_run(a).unwrap();
        assert_eq!(r.state, RunState::Succeeded);
        assert_eq!(
            r.progress,
            Some(Progress {
                done: 5,
                total: Some(10)
            })
        );
        assert_eq!(r.summary, Some(serde_json::json!({"rows": 3})));
        assert_eq!(h.logs(a, 0, 0).unwrap().len(), 2);
        assert_eq!(h.logs(a, s2 - 1, 0).unwrap()[0].message, "two");
        let (rows, total) = h
            .list_runs(&RunFilter {
                states: vec![RunState::Queued],
                ..Default::default()
            })
            .unwrap();
        assert_eq!((rows.len(), total, rows[0].id), (1, 1, b));
        h.delete_run(a).unwrap();
        assert!(matches!(h.get_run(a), Err(HistoryError::NotFound(_))));
        assert!(h.logs(a, 0, 0).unwrap().is_empty(), "logs go with the run");
    }

    #[test]
    fn retention_keeps_the_newest_and_open_runs() {
        let dir = tempfile::tempdir().unwrap();
        let h = SqliteHistory::open(&dir.path().join("h.db")).unwrap();
        let end = RunEnd {
            state: RunState::Failed,
            error: None,
            summary: None,
        };
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = h.create_run(&new_run("a")).unwrap();
            h.finish_run(id, &end).unwrap();
            ids.push(id);
        }
        let open = h.create_run(&new_run("a")).unwrap();
        let other = h.create_run(&new_run("b")).unwrap();
        h.finish_run(other, &end).unwrap();
        let deleted = h
            .apply_retention(Utc::now() - chrono::Duration::days(1), 2)
            .unwrap();
        assert_eq!(
            deleted, 4,
            "5 closed runs of a, keep 2 newest of the 6 (one open)"
        );
        let (rows, _) = h.list_runs(&RunFilter::default()).unwrap();
        let left: Vec<i64> = rows.iter().map(|r| r.id).collect();
        assert_eq!(left, vec![other, open, ids[4]]);
        let deleted = h
            .apply_retention(Utc::now() + chrono::Duration::days(1), 1000)
            .unwrap();
        assert_eq!(deleted, 2, "age: every closed run, never the open one");
        assert_eq!(h.list_runs(&RunFilter::default()).unwrap().1, 1);
    }

    #[test]
    fn state_roundtrip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let h = SqliteHistory::open(&path).unwrap();
            h.state_set("j", "k", Some(&serde_json::json!({"x": [1, 2]})))
                .unwrap();
        }
        let h = SqliteHistory::open(&path).unwrap();
        assert_eq!(
            h.state_get("j", "k").unwrap(),
            Some(serde_json::json!({"x": [1, 2]}))
        );
        h.state_set("j", "k", None).unwrap();
        assert_eq!(h.state_get("j", "k").unwrap(), None);
    }
}
