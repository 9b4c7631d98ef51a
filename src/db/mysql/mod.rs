//! MySQL and MariaDB through the synchronous `mysql` crate (rustls for TLS): streaming queries
//! with bound parameters, statements, transactions (savepoints when nested), and inserts from any
//! row source, in bulk with `LOAD DATA LOCAL INFILE` fed from the stream, or with multi-row
//! `INSERT`s.
//!
//! A [`Db`] is a cheap handle over one connection, like the SQLite one: queries, sinks and the
//! script share it, so an insert inside `db:transaction` is part of the transaction. MySQL's
//! protocol carries one statement at a time: a query's rows stream from the server as they are
//! read (an unbuffered result, constant memory on any table size), and another statement on the
//! same connection first discards the rest of them (the query then says so if read again).
//!
//! Cancellation: row loops ask the run's cancel scope ([`crate::cancel`]); a statement that
//! blocks inside the server (a long `SELECT`, a lock wait) is stopped by a watcher thread that
//! sends `KILL QUERY` for it from a second connection once the run is being stopped.
//!
//! Sessions run with `time_zone = '+00:00'` (a `TIMESTAMP` is read and written in UTC), the
//! `utf8mb4` character set and `STRICT_ALL_TABLES` added to the server's `sql_mode` (a value
//! that does not fit its column is an error naming the row and the column, never a silent
//! truncation). Credentials never appear in messages: a server is named by its redacted label
//! `mysql://user@host:port/db`.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, SslOpts};

use crate::db::Params;
use crate::formats::{FormatError, RowSource};
use crate::units::DurationRange;

mod sink;
mod source;
mod values;
mod watch;

pub use sink::{BulkMode, InsertOptions, InsertReport, OnConflict, TableSink};
pub use source::QuerySource;

use watch::Watch;

/// An error of a MySQL connection, statement or transfer. Messages name the server by its
/// redacted label, never with a password.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// The URL or an option is not usable: kind `invalid`.
    #[error("mysql: {0}")]
    Config(String),
    /// A script named a Unix socket or CA file outside the allowed roots: kind `denied`.
    #[error("mysql: {0}")]
    Denied(String),
    /// Connecting, TLS or authenticating failed.
    #[error("{target}: cannot connect: {message}")]
    Connect {
        /// The redacted target.
        target: String,
        /// Why: wrong credentials, unreachable, timeout, TLS.
        reason: ConnectFailure,
        /// What failed.
        message: String,
    },
    /// The server refused a statement.
    #[error("{target}: {context}: {message} (error {code})")]
    Sql {
        /// The redacted target.
        target: String,
        /// The statement (cut), or the table and row of an insert.
        context: String,
        /// The server's error number (1062 duplicate entry, 1146 no such table, ...).
        code: u16,
        /// The server's message.
        message: String,
    },
    /// Parameters do not match the statement.
    #[error("{target}: {context}: {message}")]
    Params {
        /// The redacted target.
        target: String,
        /// The statement (cut).
        context: String,
        /// What was expected.
        message: String,
    },
    /// The connection failed during a statement.
    #[error("{target}: {context}: {message}")]
    Io {
        /// The redacted target.
        target: String,
        /// The statement (cut).
        context: String,
        /// What failed.
        message: String,
        /// Whether a read or write timeout expired.
        timed_out: bool,
    },
    /// A value read from the server or written to it does not fit: kind `data`.
    #[error("{target}: {context}: {message}")]
    Value {
        /// The redacted target.
        target: String,
        /// The query or table, with the row and column.
        context: String,
        /// What does not fit and what was expected.
        message: String,
    },
    /// The connection is busy with another statement's rows, or was closed: kind `invalid`.
    #[error("{target}: {message}")]
    State {
        /// The redacted target.
        target: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The server or MySQL's transaction rules do not allow what was asked (`LOAD DATA LOCAL`
    /// switched off, `CREATE TABLE` inside a transaction): kind `unsupported`.
    #[error("{target}: {message}")]
    Unsupported {
        /// The redacted target.
        target: String,
        /// What was refused and what to do.
        message: String,
    },
    /// The run is being stopped (the statement was killed on the server).
    #[error("{target}: {context}: stopped: the run is being cancelled or timed out")]
    Cancelled {
        /// The redacted target.
        target: String,
        /// The statement (cut).
        context: String,
    },
    /// A row source failed.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl MysqlError {
    fn unsupported(target: &str, message: impl Into<String>) -> MysqlError {
        MysqlError::Unsupported {
            target: target.to_owned(),
            message: message.into(),
        }
    }

    fn state(target: &str, message: impl Into<String>) -> MysqlError {
        MysqlError::State {
            target: target.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Wrong user name or password, or no access to the database: kind `denied`.
    Auth,
    /// No server answered at the address: kind `unreachable`.
    Unreachable,
    /// The connect timeout passed: kind `timeout`.
    Timeout,
    /// TLS could not be set up or the certificate did not verify: kind `denied`.
    Tls,
    /// The server refused for another reason: kind `server`.
    Server,
}

/// Server error numbers that say a statement was killed (`KILL QUERY`, `max_statement_time`).
pub(crate) const ER_QUERY_INTERRUPTED: &[u16] = &[1317, 1927, 3024, 1969];

/// How TLS is used, with MySQL's names (`ssl-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it, without checking its certificate (MySQL's default).
    #[default]
    Preferred,
    /// TLS or fail, without checking the certificate.
    Required,
    /// TLS, the certificate must chain to a trusted CA (`ca_file`, else the bundled roots).
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyIdentity,
}

impl SslMode {
    /// Every mode with its name, in the URL's spelling.
    pub const NAMES: &'static [(&'static str, SslMode)] = &[
        ("disabled", SslMode::Disabled),
        ("preferred", SslMode::Preferred),
        ("required", SslMode::Required),
        ("verify_ca", SslMode::VerifyCa),
        ("verify_identity", SslMode::VerifyIdentity),
    ];

    /// The mode named `name` (any case, `-` or `_`).
    pub fn parse(name: &str) -> Result<SslMode, MysqlError> {
        let n = name.trim().to_ascii_lowercase().replace('-', "_");
        SslMode::NAMES
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                MysqlError::Config(format!(
                    "ssl-mode `{name}` is not known; expected one of {}",
                    SslMode::NAMES
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

/// Accepted `connect_timeout`.
pub const CONNECT_TIMEOUT_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(1), Duration::from_secs(3600));
/// Accepted `timeout` (each read or write on the connection).
pub const TIMEOUT_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(1), crate::units::DAY);

/// How to reach a server, besides (or instead of parts of) its URL. `Debug` hides the password.
#[derive(Clone, Default)]
pub struct MysqlOptions {
    /// User name; overrides the URL's.
    pub user: Option<String>,
    /// Password; overrides the URL's.
    pub password: Option<String>,
    /// Database; overrides the URL's path.
    pub database: Option<String>,
    /// TLS use; overrides the URL's `ssl-mode`.
    pub ssl_mode: Option<SslMode>,
    /// A PEM file with the CA certificate(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Limit for connecting (TCP and handshake); default 10 s.
    pub connect_timeout: Option<Duration>,
    /// Limit for each read and write on the connection; default none (the run's own timeout
    /// stops a long statement).
    pub timeout: Option<Duration>,
}

impl fmt::Debug for MysqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlOptions")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("ssl_mode", &self.ssl_mode)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A server to connect to: the URL and options resolved, with a label safe to show.
#[derive(Clone)]
pub struct MysqlTarget {
    opts: OptsBuilder,
    ssl_mode: SslMode,
    ssl: SslOpts,
    label: String,
    password: Option<String>,
    socket: Option<PathBuf>,
}

impl fmt::Debug for MysqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlTarget")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

const URL_SHAPE: &str = "mysql://[user[:password]@]host[:port][/database][?ssl-mode=...]";

/// Percent-decodes a URL part.
fn decode(part: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", part.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl MysqlTarget {
    /// Parses `url` (`mysql://` or `mariadb://`; `?ssl-mode=`, `?socket=/path`,
    /// `?connect_timeout=`, `?timeout=`) and applies `opts` on top of it.
    pub fn new(url: &str, opts: &MysqlOptions) -> Result<MysqlTarget, MysqlError> {
        // The parser's own message may quote the URL, password included: not shown.
        let parsed = url::Url::parse(url).map_err(|e| {
            MysqlError::Config(format!("the URL is not valid ({e}); expected {URL_SHAPE}"))
        })?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(MysqlError::Config(format!(
                "unsupported URL scheme `{}`; expected {URL_SHAPE}",
                parsed.scheme()
            )));
        }
        let mut ssl_mode = None;
        let mut socket = None;
        let mut connect_timeout = None;
        let mut timeout = None;
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "ssl-mode" | "ssl_mode" | "sslmode" => ssl_mode = Some(SslMode::parse(&v)?),
                "socket" => socket = Some(PathBuf::from(v.as_ref())),
                "connect_timeout" => {
                    connect_timeout = Some(CONNECT_TIMEOUT_RANGE.parse(&v).map_err(|e| {
                        MysqlError::Config(format!("URL parameter `connect_timeout`: {e}"))
                    })?)
                }
                "timeout" => {
                    timeout =
                        Some(TIMEOUT_RANGE.parse(&v).map_err(|e| {
                            MysqlError::Config(format!("URL parameter `timeout`: {e}"))
                        })?)
                }
                other => {
                    return Err(MysqlError::Config(format!(
                        "URL parameter `{other}` is not known; expected ssl-mode, socket, connect_timeout or timeout"
                    )));
                }
            }
        }
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ if socket.is_some() => "localhost",
            _ => {
                return Err(MysqlError::Config(format!(
                    "the URL names no host; expected {URL_SHAPE}"
                )));
            }
        };
        let port = parsed.port().unwrap_or(3306);
        let user = opts
            .user
            .clone()
            .or_else(|| (!parsed.username().is_empty()).then(|| decode(parsed.username())));
        let password = opts
            .password
            .clone()
            .or_else(|| parsed.password().map(decode));
        let path_db = parsed.path().trim_start_matches('/');
        let database = opts
            .database
            .clone()
            .or_else(|| (!path_db.is_empty()).then(|| decode(path_db)));
        if database.as_deref().is_some_and(|d| d.contains('/')) {
            return Err(MysqlError::Config(format!(
                "the URL's path must be one database name; expected {URL_SHAPE}"
            )));
        }
        let ssl_mode = opts.ssl_mode.or(ssl_mode).unwrap_or_default();
        let connect_timeout = opts
            .connect_timeout
            .or(connect_timeout)
            .unwrap_or(Duration::from_secs(10));
        let timeout = opts.timeout.or(timeout);
        let label = match (&user, &socket) {
            (_, Some(s)) => format!(
                "mysql://{}localhost/{}?socket={}",
                user.as_deref().map(|u| format!("{u}@")).unwrap_or_default(),
                database.as_deref().unwrap_or(""),
                s.display()
            ),
            (Some(u), None) => format!(
                "mysql://{u}@{host}:{port}/{}",
                database.as_deref().unwrap_or("")
            ),
            (None, None) => format!(
                "mysql://{host}:{port}/{}",
                database.as_deref().unwrap_or("")
            ),
        };
        let mut ssl = SslOpts::default();
        if let Some(ca) = &opts.ca_file {
            if ssl_mode == SslMode::Disabled {
                return Err(MysqlError::Config(format!(
                    "ca_file is for TLS connections; {label} has ssl-mode=disabled"
                )));
            }
            ssl = ssl.with_root_cert_path(Some(ca.clone()));
        }
        ssl = match ssl_mode {
            SslMode::Disabled | SslMode::Preferred | SslMode::Required => ssl
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
            SslMode::VerifyCa => ssl.with_danger_skip_domain_validation(true),
            SslMode::VerifyIdentity => ssl,
        };
        let builder = OptsBuilder::new()
            .ip_or_hostname(Some(host))
            .tcp_port(port)
            .socket(socket.as_ref().map(|s| s.display().to_string()))
            .prefer_socket(false)
            .user(user)
            .pass(password.clone())
            .db_name(database)
            .tcp_connect_timeout(Some(connect_timeout))
            .read_timeout(timeout)
            .write_timeout(timeout)
            .stmt_cache_size(Some(16))
            .init(vec![
                "SET NAMES utf8mb4",
                "SET time_zone = '+00:00'",
                "SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES')",
            ]);
        Ok(MysqlTarget {
            opts: builder,
            ssl_mode,
            ssl,
            label,
            password,
            socket,
        })
    }

    /// The target without credentials: `mysql://user@host:port/db`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The password in use, if any: for the caller to redact.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The Unix socket the URL names, if any (for the caller's confinement check).
    pub fn socket(&self) -> Option<&std::path::Path> {
        self.socket.as_deref()
    }

    /// Opens a raw connection (TLS as the mode says).
    fn open_conn(&self) -> Result<Conn, MysqlError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let with_tls = || Opts::from(self.opts.clone().ssl_opts(Some(self.ssl.clone())));
        let plain = || Opts::from(self.opts.clone().ssl_opts(None::<SslOpts>));
        let result = match self.ssl_mode {
            SslMode::Disabled => Conn::new(plain()),
            SslMode::Preferred if self.socket.is_some() => Conn::new(plain()),
            SslMode::Preferred => match Conn::new(with_tls()) {
                Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)) => {
                    Conn::new(plain())
                }
                other => other,
            },
            _ => Conn::new(with_tls()),
        };
        result.map_err(|e| self.connect_error(&e))
    }

    /// Opens a connection for a run: connects, authenticates and sets up the session.
    pub fn connect(&self) -> Result<Db, MysqlError> {
        let conn = self.open_conn()?;
        let id = conn.connection_id();
        Ok(Db {
            inner: Rc::new(Inner {
                state: RefCell::new(State::new(conn)),
                watch: Watch::start(self.clone(), id),
                target: self.clone(),
            }),
        })
    }

    fn connect_error(&self, e: &mysql::Error) -> MysqlError {
        let (reason, message) = match e {
            mysql::Error::MySqlError(m) => match m.code {
                // Access denied for the user, to the database, or a password that has expired.
                1045 | 1044 | 1698 | 1862 | 1820 | 1227 => {
                    (ConnectFailure::Auth, m.message.clone())
                }
                1049 => (
                    ConnectFailure::Auth,
                    format!("{} (the database does not exist)", m.message),
                ),
                _ => (
                    ConnectFailure::Server,
                    format!("{} (error {})", m.message, m.code),
                ),
            },
            mysql::Error::DriverError(mysql::DriverError::ConnectTimeout)
            | mysql::Error::DriverError(mysql::DriverError::Timeout) => (
                ConnectFailure::Timeout,
                "the connect timeout passed (connect_timeout)".to_owned(),
            ),
            mysql::Error::DriverError(mysql::DriverError::TlsNotSupported) => (
                ConnectFailure::Tls,
                format!(
                    "the server does not offer TLS and ssl-mode is {}; use ssl-mode=preferred or disabled to connect without",
                    self.mode_name()
                ),
            ),
            mysql::Error::DriverError(mysql::DriverError::CouldNotConnect(Some((
                _,
                desc,
                kind,
            )))) => (
                if *kind == std::io::ErrorKind::TimedOut {
                    ConnectFailure::Timeout
                } else {
                    ConnectFailure::Unreachable
                },
                desc.clone(),
            ),
            mysql::Error::DriverError(d) => (ConnectFailure::Unreachable, d.to_string()),
            mysql::Error::TlsError(t) => (ConnectFailure::Tls, format!("TLS: {t}")),
            mysql::Error::CodecError(c) => {
                // rustls reports a certificate that does not verify as an I/O error of the codec.
                let text = c.to_string();
                let lower = text.to_ascii_lowercase();
                if lower.contains("certificate") || lower.contains("tls") {
                    let inner = text
                        .split_once("IO error: `")
                        .map(|(_, rest)| rest.trim_end_matches(['\'', ' ', '}']))
                        .unwrap_or(&text);
                    (
                        ConnectFailure::Tls,
                        format!(
                            "TLS: {inner} (the server's certificate does not verify: give the CA it chains to as ca_file)"
                        ),
                    )
                } else {
                    (ConnectFailure::Unreachable, text)
                }
            }
            mysql::Error::IoError(io) => {
                let text = io.to_string();
                let lower = text.to_ascii_lowercase();
                if io.kind() == std::io::ErrorKind::TimedOut
                    || io.kind() == std::io::ErrorKind::WouldBlock
                {
                    (ConnectFailure::Timeout, format!("{text} (connect_timeout)"))
                } else if lower.contains("certificate")
                    || lower.contains("tls")
                    || lower.contains("handshake")
                {
                    (ConnectFailure::Tls, format!("TLS: {text}"))
                } else {
                    (ConnectFailure::Unreachable, text)
                }
            }
            other => (ConnectFailure::Unreachable, other.to_string()),
        };
        MysqlError::Connect {
            target: self.label.clone(),
            reason,
            message: redact(&message, self.password.as_deref()),
        }
    }

    fn mode_name(&self) -> &'static str {
        SslMode::NAMES
            .iter()
            .find(|(_, m)| *m == self.ssl_mode)
            .map_or("?", |(k, _)| *k)
    }
}

/// `text` with `secret` masked (a server or library message never should quote a password,
/// but a message is not trusted to be free of it).
fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, crate::redact::MASK),
        _ => text.to_owned(),
    }
}

/// A statement cut to one line of at most 80 characters, for messages.
pub(crate) fn excerpt(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        let cut: String = one.chars().take(77).collect();
        format!("`{cut}...`")
    } else {
        format!("`{one}`")
    }
}

/// Quotes a table name for MySQL: `db.table` is the table in another database.
pub fn quote_table(name: &str) -> String {
    match name.split_once('.') {
        Some((db, t)) if !db.is_empty() && !t.is_empty() => {
            format!("{}.{}", quote_identifier(db), quote_identifier(t))
        }
        _ => quote_identifier(name),
    }
}

/// Quotes an identifier in backticks (inner backticks doubled).
pub fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The connection and what streams on it.
struct State {
    /// The connection, at a fixed heap address (freed in `Drop`); `active` borrows it.
    conn: *mut Conn,
    /// The result a query source is reading, if any; uses `conn` while it lives.
    active: Option<source::Active>,
    /// Results started so far; a source knows its result by this number.
    generation: u64,
    /// Nesting depth of script transactions (0: autocommit).
    depth: u32,
    /// Set when the connection cannot be used any more (a protocol error, killed mid-transfer).
    broken: bool,
}

impl State {
    fn new(conn: Conn) -> State {
        State {
            conn: Box::into_raw(Box::new(conn)),
            active: None,
            generation: 0,
            depth: 0,
            broken: false,
        }
    }

    /// The connection for a new statement: the rows of an unfinished query are discarded first.
    fn conn(&mut self) -> &mut Conn {
        // The result borrows the connection: it goes before anyone else uses it.
        self.active = None;
        // SAFETY: `conn` was allocated in `new` and is freed only in `Drop`; the only other user
        // of it, `active`, is gone, and `&mut self` makes this the only reference.
        unsafe { &mut *self.conn }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.active = None;
        // SAFETY: allocated by `Box::into_raw` in `new`, freed only here, after the result that
        // borrowed it.
        unsafe { drop(Box::from_raw(self.conn)) };
    }
}

struct Inner {
    state: RefCell<State>,
    watch: Watch,
    target: MysqlTarget,
}

/// A handle over one MySQL connection.
#[derive(Clone)]
pub struct Db {
    inner: Rc<Inner>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("target", &self.inner.target.label)
            .finish()
    }
}

/// What a statement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecReport {
    /// Rows changed (MySQL's affected rows).
    pub affected: u64,
    /// The `AUTO_INCREMENT` id the statement generated, if any.
    pub last_insert_id: Option<u64>,
}

impl Db {
    /// The redacted label of the server.
    pub fn name(&self) -> &str {
        &self.inner.target.label
    }

    /// The server's id of this connection (as `SHOW PROCESSLIST` shows it).
    pub fn connection_id(&self) -> u32 {
        self.inner.watch.connection_id()
    }

    fn borrow_state(&self) -> Result<std::cell::RefMut<'_, State>, MysqlError> {
        let mut state = self.inner.state.try_borrow_mut().map_err(|_| {
            MysqlError::state(
                self.name(),
                "the connection is busy: a query of this connection cannot feed a statement on the same connection (MySQL carries one statement at a time); open a second connection with ferry.mysql.connect",
            )
        })?;
        if state.broken {
            return Err(MysqlError::state(
                self.name(),
                "the connection was lost or stopped during an earlier statement; connect again",
            ));
        }
        if state.active.is_some() {
            // An unfinished query's rows: stopped on the server so that discarding them does
            // not mean reading them all.
            self.inner.watch.stop_statement();
            state.active = None;
        }
        Ok(state)
    }

    /// The error of a failed statement.
    pub(crate) fn sql_error(&self, context: String, e: mysql::Error) -> MysqlError {
        let target = self.name().to_owned();
        let password = self.inner.target.password.as_deref();
        match e {
            mysql::Error::MySqlError(m) if ER_QUERY_INTERRUPTED.contains(&m.code) => {
                if self.inner.watch.killed() {
                    MysqlError::Cancelled { target, context }
                } else {
                    MysqlError::Sql {
                        target,
                        context,
                        code: m.code,
                        message: redact(&m.message, password),
                    }
                }
            }
            mysql::Error::MySqlError(m) => MysqlError::Sql {
                target,
                context,
                code: m.code,
                message: redact(&m.message, password),
            },
            mysql::Error::DriverError(mysql::DriverError::MismatchedStmtParams(want, got)) => {
                MysqlError::Params {
                    target,
                    context,
                    message: format!("expects {want} parameters, {got} given"),
                }
            }
            mysql::Error::DriverError(
                d @ (mysql::DriverError::MixedParams | mysql::DriverError::Params(_)),
            ) => MysqlError::Params {
                target,
                context,
                message: d.to_string(),
            },
            mysql::Error::IoError(io) => self.io_error(target, context, &io.to_string(), io.kind()),
            // The codec wraps the socket's errors (a read timeout among them).
            mysql::Error::CodecError(c) => {
                let text = c.to_string();
                let inner = text
                    .split_once("IO error: `")
                    .map(|(_, rest)| rest.trim_end_matches(['\'', ' ', '}']).to_owned())
                    .unwrap_or(text);
                let kind = if inner.contains("os error 11") || inner.contains("timed out") {
                    std::io::ErrorKind::TimedOut
                } else {
                    std::io::ErrorKind::Other
                };
                self.io_error(target, context, &inner, kind)
            }
            other => {
                if matches!(other, mysql::Error::DriverError(_)) {
                    self.mark_broken();
                }
                MysqlError::Io {
                    target,
                    context,
                    message: redact(&other.to_string(), password),
                    timed_out: false,
                }
            }
        }
    }

    /// The error of a connection that failed under a statement: it cannot be used any more.
    fn io_error(
        &self,
        target: String,
        context: String,
        text: &str,
        kind: std::io::ErrorKind,
    ) -> MysqlError {
        self.mark_broken();
        if self.inner.watch.killed() {
            return MysqlError::Cancelled { target, context };
        }
        let timed_out = matches!(
            kind,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        );
        if timed_out {
            // The server would run the statement on: stop it there too.
            self.inner.watch.stop_statement();
        }
        MysqlError::Io {
            target,
            context,
            message: if timed_out {
                format!("{text} (the connection's timeout passed)")
            } else {
                text.to_owned()
            },
            timed_out,
        }
    }

    fn mark_broken(&self) {
        if let Ok(mut s) = self.inner.state.try_borrow_mut() {
            s.broken = true;
        }
    }

    /// Runs `f` with the watcher armed: a cancel while it blocks kills the statement.
    pub(crate) fn watched<T>(&self, f: impl FnOnce() -> T) -> T {
        let _armed = self.inner.watch.arm();
        f()
    }

    /// Runs a query and returns its rows as a streaming source.
    pub fn query(&self, sql: &str, params: &Params) -> Result<QuerySource, MysqlError> {
        QuerySource::new(self, sql, params)
    }

    /// Runs one statement (its rows, if any, are read and dropped) and returns what it changed.
    pub fn exec(&self, sql: &str, params: &Params) -> Result<ExecReport, MysqlError> {
        self.exec_in(sql, params, excerpt(sql))
    }

    /// [`Db::exec`], with `context` naming the statement in an error.
    fn exec_in(
        &self,
        sql: &str,
        params: &Params,
        context: String,
    ) -> Result<ExecReport, MysqlError> {
        crate::cancel::check().map_err(|_| self.cancelled(sql))?;
        let mut state = self.borrow_state()?;
        let conn = state.conn();
        let bound = values::bind(self, conn, sql, params)?;
        let result = self.watched(|| -> Result<ExecReport, mysql::Error> {
            match bound {
                None => exec_report(&mut conn.query_iter(sql)?),
                Some((stmt, p)) => exec_report(&mut conn.exec_iter(&stmt, p)?),
            }
        });
        drop(state);
        result.map_err(|e| self.sql_error(context, e))
    }

    fn cancelled(&self, sql: &str) -> MysqlError {
        MysqlError::Cancelled {
            target: self.name().to_owned(),
            context: excerpt(sql),
        }
    }

    /// Whether the session reads a backslash inside a string as an escape (its `sql_mode` has
    /// no `NO_BACKSLASH_ESCAPES`), which decides where a script's statements end.
    fn backslash_escapes(&self) -> Result<bool, MysqlError> {
        const SQL: &str = "SELECT @@SESSION.sql_mode";
        let mut state = self.borrow_state()?;
        let r = self.watched(|| state.conn().query_first::<String, _>(SQL));
        drop(state);
        let mode = r.map_err(|e| self.sql_error(excerpt(SQL), e))?;
        Ok(!mode
            .unwrap_or_default()
            .split(',')
            .any(|m| m.eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES")))
    }

    /// Runs one statement with no parameters, for the host's own bookkeeping (`COMMIT`, ...).
    fn run(&self, sql: &str) -> Result<(), MysqlError> {
        let mut state = self.borrow_state()?;
        let r = self.watched(|| state.conn().query_drop(sql));
        drop(state);
        r.map_err(|e| self.sql_error(excerpt(sql), e))
    }

    /// Whether a script transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.inner
            .state
            .try_borrow()
            .map(|s| s.depth > 0)
            .unwrap_or(true)
    }

    /// Runs `f` in a transaction: `START TRANSACTION` at the outermost level, a savepoint when
    /// nested; committed (released) when `f` succeeds, rolled back when it fails. Statements
    /// that MySQL commits implicitly (`CREATE TABLE`, `ALTER`, `DROP`...) end the transaction
    /// early: keep them out of it.
    pub fn transaction<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E>
    where
        E: From<MysqlError>,
    {
        let depth = self.borrow_state()?.depth;
        let (begin, commit, rollback) = if depth == 0 {
            (
                "START TRANSACTION".to_owned(),
                "COMMIT".to_owned(),
                "ROLLBACK".to_owned(),
            )
        } else {
            let sp = format!("ferry_{depth}");
            (
                format!("SAVEPOINT {sp}"),
                format!("RELEASE SAVEPOINT {sp}"),
                format!("ROLLBACK TO SAVEPOINT {sp}"),
            )
        };
        self.run(&begin)?;
        self.borrow_state()?.depth = depth + 1;
        let result = f();
        if let Ok(mut s) = self.inner.state.try_borrow_mut() {
            s.depth = depth;
        }
        match result {
            Ok(v) => match self.run(&commit) {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = self.run(&rollback);
                    Err(e.into())
                }
            },
            Err(e) => {
                // A failed rollback leaves the server to roll back when the connection goes.
                let _ = self.run(&rollback);
                Err(e)
            }
        }
    }

    /// Runs the statements of a `.sql` script in one transaction. `BEGIN`, `START
    /// TRANSACTION`, `COMMIT`, `END` and `ROLLBACK` statements in the script are skipped, since
    /// the script is one transaction already (MySQL still commits at each `CREATE`, `ALTER`
    /// or `DROP`). An error names the script, the statement's line and the server's message.
    pub fn run_script<R: std::io::Read>(
        &self,
        statements: &mut crate::formats::SqlStatements<R>,
    ) -> Result<super::ScriptReport, MysqlError> {
        statements.adopt(crate::formats::SqlDialect::Mysql, self.backslash_escapes()?);
        self.transaction(|| {
            super::run_statements(statements, |st, script| {
                let at = crate::formats::Location::file(script).at_line(st.line);
                Ok(self
                    .exec_in(&st.sql, &Params::None, at.to_string())?
                    .affected)
            })
        })
    }

    /// A sink inserting into `table` with multi-row `INSERT`s.
    pub fn table_sink(&self, table: &str, opts: InsertOptions) -> TableSink {
        TableSink::new(self, table, opts)
    }

    /// Inserts every row of `source` into `table` (the bulk path: `LOAD DATA LOCAL INFILE` fed
    /// from the source when the server allows it, see [`BulkMode`]); the report counts inserted
    /// and skipped rows and says which way they went.
    pub fn insert(
        &self,
        table: &str,
        source: &mut dyn RowSource,
        opts: InsertOptions,
    ) -> Result<InsertReport, MysqlError> {
        sink::insert(self, table, source, opts)
    }

    /// Opens a second connection to the same server and sends `KILL QUERY` for this one's
    /// running statement.
    pub(crate) fn kill_running(&self) {
        self.inner.watch.kill_now();
    }
}

/// Reads a result to its end and reports what its statement changed.
fn exec_report<P: mysql::prelude::Protocol>(
    r: &mut mysql::QueryResult<'_, '_, '_, P>,
) -> Result<ExecReport, mysql::Error> {
    let mut report = ExecReport::default();
    while let Some(set) = r.iter() {
        report.affected += set.affected_rows();
        if let Some(id) = set.last_insert_id().filter(|id| *id > 0) {
            report.last_insert_id = Some(id);
        }
        for row in set {
            row?;
        }
    }
    Ok(report)
}
