//! Databases: SQLite through rusqlite, PostgreSQL through `tokio-postgres` ([`postgres`]),
//! MySQL/MariaDB through the `mysql` crate ([`mysql`]), Redis through the `redis` crate. Plain
//! Rust, no Lua: queries and key scans are row sources, tables and `RESTORE` are row sinks over
//! the row model of [`crate::formats`].

pub mod mysql;
pub mod postgres;
pub mod redis;
mod sqlite;

pub use sqlite::{
    Db, DbError, FileCheck, InsertOptions, InsertReport, OnConflict, Params, QuerySource,
    ScriptReport, TableSink,
};

/// Whether a statement of a `.sql` script is transaction control that `db:run` skips, since
/// the script runs in one transaction already: `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`,
/// `ROLLBACK` (but not `ROLLBACK TO` a savepoint).
fn is_transaction_control(sql: &str) -> bool {
    let upper = sql.trim_end_matches(';').trim().to_ascii_uppercase();
    let mut words = upper.split_whitespace();
    match words.next().unwrap_or("") {
        "BEGIN" | "COMMIT" | "END" => true,
        "START" => words.next() == Some("TRANSACTION"),
        "ROLLBACK" => !upper.contains(" TO "),
        _ => false,
    }
}

/// The loop of every backend's `run_script`: runs the statements of a `.sql` script one by
/// one, skipping transaction control (the caller runs the whole script in one transaction).
/// `exec` runs one statement, given with the script's name for its error's location, and
/// returns the rows it changed.
fn run_statements<R: std::io::Read, E: From<crate::formats::FormatError>>(
    statements: &mut crate::formats::SqlStatements<R>,
    mut exec: impl FnMut(&crate::formats::SqlStatement, &str) -> Result<u64, E>,
) -> Result<ScriptReport, E> {
    let mut report = ScriptReport::default();
    while let Some(st) = statements.next_statement()? {
        if is_transaction_control(&st.sql) {
            report.skipped += 1;
            continue;
        }
        report.changes += exec(&st, statements.name())?;
        report.statements += 1;
    }
    Ok(report)
}

/// `[databases.NAME]` of `ferry.toml`, checked: a server database that `ferry.postgres.connect`
/// and `ferry.mysql.connect` (and the export/import plugins' `db`) reach by name. The URL's
/// scheme says which ([`NamedDatabase::scheme`]). The password comes from the URL, `password`
/// (`"${VAR}"` reads the environment) or `password_secret` (a secret's name, read when a run
/// connects); it never appears in logs, errors or output.
#[derive(Clone, Default)]
pub struct NamedDatabase {
    /// `postgres://user@host:port/db` or `mysql://user@host:port/db` (environment references
    /// resolved).
    pub url: String,
    /// The password, when not in the URL.
    pub password: Option<String>,
    /// The name of the secret that holds the password (`FERRY_SECRET_NAME` or `[secrets]`).
    pub password_secret: Option<String>,
    /// The TLS mode (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub sslmode: Option<String>,
    /// A PEM file of the CA(s) the server's certificate must chain to (absolute).
    pub ca_file: Option<std::path::PathBuf>,
    /// How long connecting may take.
    pub connect_timeout: Option<std::time::Duration>,
    /// The server's statement timeout for the session.
    pub statement_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for NamedDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's password and `password` stay out of every Debug output.
        let url = match url::Url::parse(&self.url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.url.clone(),
        };
        f.debug_struct("NamedDatabase")
            .field("url", &url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_secret", &self.password_secret)
            .field("sslmode", &self.sslmode)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl NamedDatabase {
    /// `"postgres"` or `"mysql"` (from the URL; `postgresql` counts as `postgres`,
    /// `mariadb` as `mysql`), or `""` for another scheme.
    pub fn scheme(&self) -> &'static str {
        url_scheme(&self.url)
    }
}

/// The kind of server database a URL names: `"postgres"`, `"mysql"` or `""`.
pub fn url_scheme(url: &str) -> &'static str {
    match url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
        Some(s) if s == "postgres" || s == "postgresql" => "postgres",
        Some(s) if s == "mysql" || s == "mariadb" => "mysql",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transaction_control_is_recognised() {
        for (sql, skip) in [
            ("BEGIN;", true),
            ("begin transaction", true),
            ("START TRANSACTION;", true),
            ("COMMIT", true),
            ("END;", true),
            ("ROLLBACK;", true),
            ("ROLLBACK TO SAVEPOINT a;", false),
            ("START SLAVE", false),
            ("INSERT INTO t VALUES (1)", false),
        ] {
            assert_eq!(super::is_transaction_control(sql), skip, "{sql}");
        }
    }
}
