//! The authorizer of a script's database: `ATTACH` and `VACUUM INTO` only to files the caller's
//! check accepts, no extensions, no pragmas that move SQLite's files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::hooks::AuthAction;

use super::{DbError, sqlite_message};
use crate::sync::LockExt;

/// Decides whether a script's database may reach the file at an absolute path (through
/// `ATTACH` or `VACUUM INTO`); `Err` says why not.
pub type FileCheck = Arc<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

/// The reason of the authorizer's last refusal on a connection, for the error that follows.
#[derive(Clone, Default)]
pub(super) struct Refusals(Arc<Mutex<Option<String>>>);

impl Refusals {
    pub(super) fn record(&self, reason: String) {
        *self.0.lock_unpoisoned() = Some(reason);
    }

    /// The error for a failed statement: [`DbError::Denied`] when the authorizer refused it,
    /// else [`DbError::Sql`].
    pub(super) fn error(&self, db: &str, context: String, e: &rusqlite::Error) -> DbError {
        // A refused action fails the statement with SQLITE_AUTH, a refused function with
        // "not authorized to use function".
        let denied = e.sqlite_error_code()
            == Some(rusqlite::ErrorCode::AuthorizationForStatementDenied)
            || sqlite_message(e).starts_with("not authorized");
        let reason = self.0.lock_unpoisoned().take();
        match reason {
            Some(reason) if denied => DbError::Denied {
                db: db.to_owned(),
                context,
                reason,
            },
            _ => DbError::Sql {
                db: db.to_owned(),
                context,
                message: sqlite_message(e),
            },
        }
    }
}

/// The authorizer's rule for one action: `Err` with the reason when it is refused.
pub(super) fn authorize(action: &AuthAction<'_>, check: &FileCheck) -> Result<(), String> {
    match action {
        AuthAction::Attach { filename } => attach_allowed(filename, check),
        // An ATTACH whose file name is an expression rather than a literal: the file it would
        // open cannot be checked before it runs.
        AuthAction::Unknown { code, .. } if *code == rusqlite::ffi::SQLITE_ATTACH => Err(
            "ATTACH takes its file name as a string literal here (an expression or a parameter cannot be checked)".into(),
        ),
        AuthAction::Function { function_name }
            if ["load_extension", "fts3_tokenizer"]
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Err(format!("{function_name}() is not available to scripts"))
        }
        AuthAction::Pragma { pragma_name, .. }
            if ["temp_store_directory", "data_store_directory"]
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            Err(format!(
                "PRAGMA {pragma_name} is not available to scripts (it moves SQLite's files)"
            ))
        }
        _ => Ok(()),
    }
}

/// Whether `ATTACH` (also the one `VACUUM INTO` runs) may open `filename`: a private temporary
/// database, or a file the check accepts. SQLite opens a relative name from the working
/// directory, so that is what is checked.
pub(super) fn attach_allowed(filename: &str, check: &FileCheck) -> Result<(), String> {
    if filename.is_empty() || filename == ":memory:" {
        return Ok(());
    }
    if filename
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("file:"))
    {
        return Err(format!(
            "ATTACH of {filename:?}: URI file names are not allowed; give a plain path under the allowed roots"
        ));
    }
    let path = Path::new(filename);
    let abs: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("ATTACH of {filename:?}: cannot resolve a relative path: {e}"))?
            .join(path)
    };
    check(&abs).map_err(|m| format!("ATTACH of {filename:?}: {m}"))
}
