//! The versions of job scripts in the history: every version that loaded (its SHA-256, when,
//! whether it came through the API (and which token wrote it) or an edit of the file, and its
//! source), newest last. A
//! version is recorded when it differs from the job's newest one, so re-reading an unchanged
//! file records nothing, and putting back an old source records it again as the newest.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::sqlite::{now, time_col};
use super::{HistoryError, SqliteHistory};

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionOrigin {
    /// Written through the API (`PUT /api/v1/jobs/{name}`).
    Api,
    /// The file in `scripts/` was written by something else (an editor, a deploy).
    File,
}

impl VersionOrigin {
    /// The name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionOrigin::Api => "api",
            VersionOrigin::File => "file",
        }
    }

    pub(super) fn parse(s: &str) -> VersionOrigin {
        if s == "api" {
            VersionOrigin::Api
        } else {
            VersionOrigin::File
        }
    }
}

/// One recorded version of a job script.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptVersion {
    /// SHA-256 of the source, lowercase hex.
    pub hash: String,
    /// When it was recorded.
    #[serde(serialize_with = "super::types::ser_time")]
    pub created_at: DateTime<Utc>,
    /// Where it came from.
    pub origin: VersionOrigin,
    /// The name of the token that wrote it through the API (none for a file edit, or a version
    /// recorded before tokens had names).
    pub written_by: Option<String>,
    /// The source; left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Script versions of a history backend.
pub trait VersionStore {
    /// Records `source` (whose SHA-256 is `hash`) as the newest version of `job`, unless it
    /// already is; returns whether a row was added. Atomic, so two writers of the same job
    /// cannot both add the same version.
    fn record_version(
        &self,
        job: &str,
        hash: &str,
        origin: VersionOrigin,
        written_by: Option<&str>,
        source: &str,
    ) -> Result<bool, HistoryError>;
    /// A page of `job`'s versions, newest first (without their sources), and how many there
    /// are in all.
    fn versions(
        &self,
        job: &str,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<ScriptVersion>, u64), HistoryError>;
    /// The newest record of `job`'s version `hash`, with its source.
    fn version(&self, job: &str, hash: &str) -> Result<Option<ScriptVersion>, HistoryError>;
}

impl VersionStore for SqliteHistory {
    fn record_version(
        &self,
        job: &str,
        hash: &str,
        origin: VersionOrigin,
        written_by: Option<&str>,
        source: &str,
    ) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO script_versions (job, hash, created_at, origin, source, written_by) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE COALESCE((SELECT hash FROM script_versions \
                 WHERE job = ?1 ORDER BY id DESC LIMIT 1), '') <> ?2",
                params![job, hash, now(), origin.as_str(), source, written_by],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn versions(
        &self,
        job: &str,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<ScriptVersion>, u64), HistoryError> {
        let conn = self.conn();
        let total: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM script_versions WHERE job = ?1",
                params![job],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let mut stmt = conn
            .prepare(
                "SELECT hash, created_at, origin, written_by FROM script_versions WHERE job = ?1 \
                 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![job, limit, i64::try_from(offset).unwrap_or(i64::MAX)],
                |r| {
                    Ok(ScriptVersion {
                        hash: r.get(0)?,
                        created_at: time_col(r, 1)?.unwrap_or_default(),
                        origin: VersionOrigin::parse(&r.get::<_, String>(2)?),
                        written_by: r.get(3)?,
                        source: None,
                    })
                },
            )
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok((rows, total.max(0) as u64))
    }

    fn version(&self, job: &str, hash: &str) -> Result<Option<ScriptVersion>, HistoryError> {
        self.conn()
            .query_row(
                "SELECT hash, created_at, origin, source, written_by FROM script_versions \
                 WHERE job = ?1 AND hash = ?2 ORDER BY id DESC LIMIT 1",
                params![job, hash],
                |r| {
                    Ok(ScriptVersion {
                        hash: r.get(0)?,
                        created_at: time_col(r, 1)?.unwrap_or_default(),
                        origin: VersionOrigin::parse(&r.get::<_, String>(2)?),
                        written_by: r.get(4)?,
                        source: Some(r.get(3)?),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}
