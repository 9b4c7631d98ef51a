//! Named API tokens in the history: the SHA-256 of each token (never the token), its scope,
//! when it was made and last used. A token is looked up on every request, so a revoked one is
//! refused at once.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::sqlite::{now, time_col};
use super::{HistoryError, SqliteHistory};

/// A stored token, without its value.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRecord {
    /// Its name.
    pub name: String,
    /// `read`, `run` or `admin`.
    pub scope: String,
    /// When it was created.
    #[serde(serialize_with = "super::types::ser_time")]
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute), if ever.
    #[serde(serialize_with = "super::types::ser_opt_time")]
    pub last_used: Option<DateTime<Utc>>,
}

/// API tokens of a history backend (only their SHA-256 is kept).
pub trait TokenStore {
    /// Stores a token by the SHA-256 (hex) of its value; false when the name is taken.
    fn create_token(&self, name: &str, hash: &str, scope: &str) -> Result<bool, HistoryError>;
    /// Removes a token; false when there was none of that name.
    fn revoke_token(&self, name: &str) -> Result<bool, HistoryError>;
    /// Every token, by name.
    fn tokens(&self) -> Result<Vec<TokenRecord>, HistoryError>;
    /// Whether any token is stored.
    fn has_tokens(&self) -> Result<bool, HistoryError>;
    /// The name and scope of the token whose SHA-256 (hex) is `hash`, compared in constant
    /// time with every stored one; records the use (at most once a minute per token).
    fn token_by_hash(&self, hash: &str) -> Result<Option<(String, String)>, HistoryError>;
}

impl TokenStore for SqliteHistory {
    fn create_token(&self, name: &str, hash: &str, scope: &str) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO api_tokens (name, hash, scope, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO NOTHING",
                params![name, hash, scope, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn revoke_token(&self, name: &str) -> Result<bool, HistoryError> {
        let n = self
            .conn()
            .execute("DELETE FROM api_tokens WHERE name = ?1", params![name])
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, scope, created_at, last_used FROM api_tokens ORDER BY name")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(TokenRecord {
                name: r.get(0)?,
                scope: r.get(1)?,
                created_at: time_col(r, 2)?.unwrap_or_default(),
                last_used: time_col(r, 3)?,
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.err(e))
    }

    fn has_tokens(&self) -> Result<bool, HistoryError> {
        self.conn()
            .query_row("SELECT EXISTS (SELECT 1 FROM api_tokens)", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<(String, String)>, HistoryError> {
        let found = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT name, hash, scope FROM api_tokens")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(|e| self.err(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?;
            let mut found = None;
            for (name, stored, scope) in rows {
                if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
                    found = Some((name, scope));
                }
            }
            found
        };
        if let Some((name, _)) = &found {
            let at = now();
            // To the minute: a busy client does not write on every request.
            self.conn()
                .execute(
                    "UPDATE api_tokens SET last_used = ?2 WHERE name = ?1 \
                     AND (last_used IS NULL OR substr(last_used, 1, 16) <> substr(?2, 1, 16))",
                    params![name, at],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(found)
    }
}
