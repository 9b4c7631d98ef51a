//! The audit log: what API clients changed (jobs written or deleted, runs triggered, cancelled,
//! rerun or deleted, jobs paused or resumed, tokens created or revoked), by whom (a token's
//! name, never its value), when, from which address, on what, and the answer's status.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::sqlite::{now, time_col};
use super::{HistoryError, SqliteHistory};

/// One action to record.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    /// The token's name (`config` for `[api] token`, `local` for the CLI on the history).
    pub actor: &'a str,
    /// The client's address (`IP:port`), or `local`.
    pub source: &'a str,
    /// What was done, such as `job.write` or `run.trigger`.
    pub action: &'a str,
    /// What it was done to: a job's name, a run's id, a token's name.
    pub target: &'a str,
    /// The HTTP status answered (0 for the CLI).
    pub status: u16,
}

/// One recorded action.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Its sequence number.
    pub id: i64,
    /// When.
    #[serde(serialize_with = "super::types::ser_time")]
    pub at: DateTime<Utc>,
    /// Who: a token's name.
    pub actor: String,
    /// From where.
    pub source: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// The audit log of a history backend.
pub trait AuditLog {
    /// Appends an action to the audit log.
    fn record_audit(&self, a: &NewAudit<'_>) -> Result<(), HistoryError>;
    /// A page of the audit log, newest first, and how many entries there are in all.
    fn audit(&self, limit: u32, offset: u64) -> Result<(Vec<AuditEntry>, u64), HistoryError>;
}

impl AuditLog for SqliteHistory {
    fn record_audit(&self, a: &NewAudit<'_>) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "INSERT INTO audit (at, actor, source, action, target, status) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![now(), a.actor, a.source, a.action, a.target, a.status],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn audit(&self, limit: u32, offset: u64) -> Result<(Vec<AuditEntry>, u64), HistoryError> {
        let conn = self.conn();
        let total: i64 = conn
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let mut stmt = conn
            .prepare(
                "SELECT id, at, actor, source, action, target, status FROM audit \
                 ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![limit, i64::try_from(offset).unwrap_or(i64::MAX)],
                |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at: time_col(r, 1)?.unwrap_or_default(),
                        actor: r.get(2)?,
                        source: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        status: r.get(6)?,
                    })
                },
            )
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok((rows, total.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_pages_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let h = SqliteHistory::open(&dir.path().join("h.db")).unwrap();
        for target in ["a", "b", "c"] {
            h.record_audit(&NewAudit {
                actor: "ci",
                source: "127.0.0.1:1",
                action: "job.write",
                target,
                status: 200,
            })
            .unwrap();
        }
        let (page, total) = h.audit(2, 0).unwrap();
        assert_eq!(total, 3);
        assert_eq!(page[0].target, "c");
        assert_eq!(page[1].target, "b");
        let (page, _) = h.audit(2, 2).unwrap();
        assert_eq!(page[0].target, "a");
        assert_eq!(page[0].actor, "ci");
    }
}
