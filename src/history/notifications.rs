//! Notification deliveries in the history: one row per run and channel, with the number of
//! attempts, the state (`pending`, `sent`, `failed`), the last failure's reason and when to try
//! again. Targets are stored as shown (`https://hooks.example.com/…`), never with their secrets.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::sqlite::time_col;
use super::{HistoryError, RunState, SqliteHistory, format_time};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Not delivered yet; attempts remain.
    Pending,
    /// Delivered (the receiver answered 2xx, the mail server accepted the mail).
    Sent,
    /// Every attempt failed.
    Failed,
}

impl NotificationState {
    /// The name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
        }
    }

    pub(super) fn parse(s: &str) -> NotificationState {
        match s {
            "sent" => NotificationState::Sent,
            "pending" => NotificationState::Pending,
            _ => NotificationState::Failed,
        }
    }
}

/// A notification to record (pending, first attempt due now).
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// The run it is about.
    pub run_id: i64,
    /// Its job.
    pub job: String,
    /// `failure`, `success`, `recovered` or `skipped`.
    pub event: String,
    /// `webhook`, `slack` or `email`.
    pub channel: String,
    /// Where it goes, redacted.
    pub target: String,
}

/// A recorded notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// The run it is about.
    pub run_id: i64,
    /// The run's job.
    pub job: String,
    /// `failure`, `success`, `recovered` or `skipped`.
    pub event: String,
    /// `webhook`, `slack` or `email`.
    pub channel: String,
    /// Where it goes, redacted (`https://hooks.example.com/…`, e-mail addresses).
    pub target: String,
    /// Where the delivery stands.
    pub state: NotificationState,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub reason: Option<String>,
    /// When it was recorded.
    #[serde(with = "time_text")]
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (pending only).
    #[serde(with = "opt_time_text", default)]
    pub next_at: Option<DateTime<Utc>>,
    /// When the last attempt was made.
    #[serde(with = "opt_time_text", default)]
    pub last_at: Option<DateTime<Utc>>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The state after it.
    pub state: NotificationState,
    /// Why it failed.
    pub reason: Option<String>,
    /// When to try again (pending only).
    pub next_at: Option<DateTime<Utc>>,
}

/// Notification records of a history backend.
pub trait NotificationLog {
    /// Records a pending notification; `None` when the run already has one for this channel
    /// and target (so a run is never notified twice to the same place).
    fn add_notification(&self, n: &NewNotification) -> Result<Option<i64>, HistoryError>;
    /// Pending notifications due at `now`, oldest first, at most `limit`.
    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, HistoryError>;
    /// When the next pending notification is due.
    fn next_notification_at(&self) -> Result<Option<DateTime<Utc>>, HistoryError>;
    /// Records an attempt (counts it) and its outcome.
    fn notification_attempted(&self, id: i64, a: &Attempt) -> Result<(), HistoryError>;
    /// The notifications of a run.
    fn notifications(&self, run_id: i64) -> Result<Vec<Notification>, HistoryError>;
    /// How the last run of `job` before run `before` that decided something ended (succeeded,
    /// failed, timed out or interrupted, and not retried), if there is one.
    fn previous_outcome(&self, job: &str, before: i64) -> Result<Option<RunState>, HistoryError>;
    /// The runs (id and job) that ended at or after `since`, in the order they ended, at most
    /// `limit`: what a notifier that fell behind the event bus reads again.
    fn runs_ended_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, HistoryError>;
}

const COLUMNS: &str = "id, run_id, job, event, channel, target, state, attempts, reason, created_at, next_at, last_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: r.get(0)?,
        run_id: r.get(1)?,
        job: r.get(2)?,
        event: r.get(3)?,
        channel: r.get(4)?,
        target: r.get(5)?,
        state: NotificationState::parse(&r.get::<_, String>(6)?),
        attempts: r.get::<_, i64>(7)?.max(0) as u32,
        reason: r.get(8)?,
        created_at: time_col(r, 9)?.unwrap_or_default(),
        next_at: time_col(r, 10)?,
        last_at: time_col(r, 11)?,
    })
}

impl NotificationLog for SqliteHistory {
    fn add_notification(&self, n: &NewNotification) -> Result<Option<i64>, HistoryError> {
        let conn = self.conn();
        let now = format_time(&Utc::now());
        let added = conn
            .execute(
                "INSERT OR IGNORE INTO notifications (run_id, job, event, channel, target, state, created_at, next_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
                params![n.run_id, n.job, n.event, n.channel, n.target, now],
            )
            .map_err(|e| self.err(e))?;
        Ok((added > 0).then(|| conn.last_insert_rowid()))
    }

    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE state = 'pending' AND next_at <= ?1 \
                 ORDER BY next_at, id LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![format_time(&now), limit], from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn next_notification_at(&self) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT min(next_at) FROM notifications WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(text.and_then(|t| {
            DateTime::parse_from_rfc3339(&t)
                .ok()
                .map(|d| d.with_timezone(&Utc))
        }))
    }

    fn notification_attempted(&self, id: i64, a: &Attempt) -> Result<(), HistoryError> {
        self.conn()
            .execute(
                "UPDATE notifications SET attempts = attempts + 1, state = ?2, reason = ?3, \
                 next_at = ?4, last_at = ?5 WHERE id = ?1",
                params![
                    id,
                    a.state.as_str(),
                    a.reason,
                    a.next_at.as_ref().map(format_time),
                    format_time(&Utc::now())
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn notifications(&self, run_id: i64) -> Result<Vec<Notification>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE run_id = ?1 ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map([run_id], from_row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn previous_outcome(&self, job: &str, before: i64) -> Result<Option<RunState>, HistoryError> {
        let state: Option<String> = self
            .conn()
            .query_row(
                "SELECT state FROM runs WHERE job = ?1 AND id < ?2 AND retried_by IS NULL \
                 AND state IN ('succeeded', 'failed', 'timed_out', 'interrupted') \
                 ORDER BY id DESC LIMIT 1",
                params![job, before],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(state.and_then(|s| s.parse().ok()))
    }

    fn runs_ended_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, job FROM runs WHERE finished_at >= ?1 ORDER BY finished_at, id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![format_time(&since), limit], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }
}

mod time_text {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod opt_time_text {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format_time(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, NewRun, RunEnd};

    #[test]
    fn deliveries_are_recorded_once_per_channel_and_attempts_counted() {
        let dir = tempfile::tempdir().unwrap();
        let h = SqliteHistory::open(&dir.path().join("h.db")).unwrap();
        let run = |state| {
            let id = h
                .create_run(&NewRun {
                    job: "j".into(),
                    trigger: crate::history::Trigger::Manual,
                    params: serde_json::json!({}),
                    attempt: 1,
                    not_before: None,
                    retry_of: None,
                    owner: None,
                })
                .unwrap();
            h.finish_run(
                id,
                &RunEnd {
                    state,
                    error: None,
                    summary: None,
                },
            )
            .unwrap();
            id
        };
        let a = run(RunState::Failed);
        let b = run(RunState::Succeeded);
        assert_eq!(h.previous_outcome("j", b).unwrap(), Some(RunState::Failed));
        assert_eq!(h.previous_outcome("j", a).unwrap(), None);
        let n = NewNotification {
            run_id: a,
            job: "j".into(),
            event: "failure".into(),
            channel: "webhook".into(),
            target: "http://h/…".into(),
        };
        let id = h.add_notification(&n).unwrap().unwrap();
        assert!(
            h.add_notification(&n).unwrap().is_none(),
            "once per channel"
        );
        let due = h.due_notifications(Utc::now(), 10).unwrap();
        assert_eq!(due.len(), 1);
        let later = Utc::now() + chrono::Duration::seconds(60);
        h.notification_attempted(
            id,
            &Attempt {
                state: NotificationState::Pending,
                reason: Some("connection refused".into()),
                next_at: Some(later),
            },
        )
        .unwrap();
        assert!(h.due_notifications(Utc::now(), 10).unwrap().is_empty());
        assert!(h.next_notification_at().unwrap().is_some());
        let got = &h.notifications(a).unwrap()[0];
        assert_eq!((got.attempts, got.state), (1, NotificationState::Pending));
        let v = serde_json::to_value(got).unwrap();
        let back: Notification = serde_json::from_value(v).unwrap();
        assert_eq!(back.reason.as_deref(), Some("connection refused"));
        h.delete_run(a).unwrap();
        assert!(
            h.notifications(a).unwrap().is_empty(),
            "deleted with the run"
        );
    }
}
