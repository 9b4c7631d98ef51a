//! PostgreSQL through `tokio-postgres` (rust-postgres) on a current-thread runtime of the
//! connection's own ([`conn`]: one blocking call per statement), with rustls for TLS.
//!
//! - [`PgTarget`]: a `postgres://` URL and options, checked before connecting: TLS mode
//!   (`sslmode`: `disable`, `prefer`, `require`, `verify-ca`, `verify-full`; every mode that
//!   encrypts also verifies the server's certificate, against `ca_file` or the platform's roots),
//!   connect and statement timeouts. Its display form never holds the password.
//! - [`PgDb`]: a cheap handle over one connection (`Rc`: a run is single-threaded and its
//!   sources, sinks and script share the connection, so an insert inside `db:transaction` sees
//!   the transaction).
//! - [`PgQuery`]: a query's rows as a streaming row source: a server-side cursor (`DECLARE` /
//!   `FETCH n`), so memory stays constant on any table size. Values arrive in binary and map to
//!   the row model ([`decode`]). Piped into a plain CSV writer, the rows go through
//!   `COPY (query) TO STDOUT (FORMAT csv)` instead ([`PgQuery::copy_csv`]), read in large
//!   batches and given the typed path's text forms on the client ([`csv_pass`]).
//! - [`PgTableSink`]: rows into a table through `COPY ... FROM STDIN` (text format), streamed in
//!   chunks; with a conflict policy the chunks go to a temporary staging table first and then
//!   into the target with `INSERT ... ON CONFLICT`. The server parses every value against its
//!   column, so a value that does not fit fails with the row and the column named.
//!
//! Sessions run with `TimeZone` UTC, ISO dates and standard strings.
//!
//! A long statement stops on the server when the run is cancelled: while a call waits for the
//! server, a watcher thread asks the run's cancel scope and sends PostgreSQL's cancel request.

mod conn;
mod csv_pass;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{NoTls, Statement};

use conn::Conn;
use csv_pass::{CsvPass, Fix};

use super::{InsertOptions, InsertReport, OnConflict, Params};
use crate::formats::{CsvOptions, FormatError, RowSink, RowSource, Value, quote_identifier};

/// Rows fetched from a cursor per round trip, by default.
pub const FETCH_ROWS: usize = 2000;
/// How long connecting may take, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of COPY data sent per `COPY ... FROM STDIN` statement of an insert.
const COPY_CHUNK: usize = 4 * 1024 * 1024;

/// An error of the PostgreSQL layer. Messages name the database (its URL without password)
/// and the statement or row; they never hold the password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A malformed URL or option.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached.
    #[error("{db}: cannot connect: {message}")]
    Unreachable {
        /// The database.
        db: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused the credentials or the certificate could not be verified.
    #[error("{db}: {message}")]
    Denied {
        /// The database.
        db: String,
        /// What was refused.
        message: String,
    },
    /// A statement failed on the server.
    #[error("{db}: {context}: {message}")]
    Sql {
        /// The database.
        db: String,
        /// The statement (cut) or the row of an insert.
        context: String,
        /// The server's message, detail and hint.
        message: String,
        /// The SQLSTATE code.
        code: String,
    },
    /// Parameters do not match the statement.
    #[error("{db}: {context}: {message}")]
    Params {
        /// The database.
        db: String,
        /// The statement (cut).
        context: String,
        /// What was expected.
        message: String,
    },
    /// A value that cannot be read or written (a type ferry does not map, bytes into text).
    #[error("{db}: {context}: {message}")]
    Value {
        /// The database.
        db: String,
        /// The statement, or the row and column.
        context: String,
        /// What does not fit.
        message: String,
    },
    /// The run is being stopped; the statement was cancelled on the server.
    #[error("{db}: {context}: stopped: the run is being cancelled or timed out")]
    Cancelled {
        /// The database.
        db: String,
        /// The statement (cut).
        context: String,
    },
    /// A row source or the output failed.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl PgError {
    /// The error's kind, as scripts see it (`lua/host_error.rs` names): `invalid`,
    /// `unreachable`, `denied`, `conflict`, `not_found`, `data`, `timeout`, `cancelled`, `sql`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            PgError::Config(_) | PgError::Params { .. } => "invalid",
            PgError::Unreachable { .. } => "unreachable",
            PgError::Denied { .. } => "denied",
            PgError::Value { .. } => "data",
            PgError::Cancelled { .. } => "cancelled",
            PgError::Format(_) => "format",
            PgError::Sql { code, .. } => match code.as_str() {
                "23505" => "conflict",
                "42P01" | "3D000" | "42703" => "not_found",
                "57014" => "timeout",
                c if c.starts_with("22") || c.starts_with("23") => "data",
                c if c.starts_with("28") || c == "42501" => "denied",
                c if c.starts_with("08") => "unreachable",
                _ => "sql",
            },
        }
    }
}

/// TLS modes, as libpq names them. Unlike libpq, every mode that encrypts verifies the server's
/// certificate chain (`verify-ca` leaves out only the host name check): an unverified TLS
/// connection would send the password to whoever answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it (verified), else plain TCP. The default.
    #[default]
    Prefer,
    /// TLS, verified, host name included.
    Require,
    /// TLS, the chain verified but not the host name.
    VerifyCa,
    /// TLS, verified, host name included (as `require`).
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value (`allow` counts as `prefer`).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" | "verify_ca" => SslMode::VerifyCa,
            "verify-full" | "verify_full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// The rustls connector of `sslmode` (`None` for `disable`): the server's certificate chain is
/// verified against `ca_file` or the platform's roots, and its host name too except with
/// `verify-ca`. `shown` names the database in errors. Shared by `ferry.postgres`,
/// `[databases.NAME]` and the PostgreSQL history.
pub fn tls_connector(
    sslmode: SslMode,
    ca_file: Option<&std::path::Path>,
    shown: &str,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, PgError> {
    if sslmode == SslMode::Disable {
        return Ok(None);
    }
    let denied = |message: String| PgError::Denied {
        db: shown.to_string(),
        message,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| denied(format!("TLS: {e}")))?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match ca_file {
        Some(f) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(f)
                .map_err(|e| PgError::Config(format!("postgres: ca_file {}: {e}", f.display())))?;
            let mut n = 0;
            for cert in rustls_pemfile_certs(&pem) {
                roots.add(cert).map_err(|e| {
                    PgError::Config(format!("postgres: ca_file {}: {e}", f.display()))
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(PgError::Config(format!(
                    "postgres: ca_file {}: no PEM certificate in it",
                    f.display()
                )));
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| denied(format!("TLS: {e}")))?
        }
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| denied(format!("TLS: {e}")))?,
        ),
    };
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        if sslmode == SslMode::VerifyCa {
            Arc::new(NoHostnameCheck(verifier))
        } else {
            verifier
        };
    let cfg = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(cfg)))
}

/// Options of a connection besides its URL (from a script or `[databases.NAME]`).
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// The password, when not in the URL (it wins over the URL's).
    pub password: Option<String>,
    /// The TLS mode, when not in the URL's `sslmode` (it wins over the URL's).
    pub sslmode: Option<SslMode>,
    /// A PEM file of the CA(s) the server's certificate must chain to (instead of the
    /// platform's roots).
    pub ca_file: Option<PathBuf>,
    /// How long connecting may take (default [`CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// The server's `statement_timeout` for this session.
    pub statement_timeout: Option<Duration>,
    /// Rows per cursor fetch (default [`FETCH_ROWS`]).
    pub fetch_rows: Option<usize>,
}

/// Where a connection goes: host or socket folder, port, user, database, TLS and timeouts.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    sslmode: SslMode,
    ca_file: Option<PathBuf>,
    password: Option<String>,
    statement_timeout: Option<Duration>,
    fetch_rows: usize,
    shown: String,
    socket: Option<PathBuf>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.shown)
            .finish()
    }
}

fn decode_pct(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl PgTarget {
    /// Checks `url` (`postgres://[user[:password]@]host[:port][/database][?sslmode=...]`, or
    /// `postgresql://`; `?host=/socket/dir` for a Unix socket) with `opts`.
    pub fn new(url: &str, opts: &PgOptions) -> Result<PgTarget, PgError> {
        let bad = |m: String| PgError::Config(format!("postgres: {m}"));
        let u = url::Url::parse(url).map_err(|e| {
            bad(format!(
                "malformed URL ({e}); expected postgres://user@host:port/database"
            ))
        })?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(bad(format!(
                "unsupported URL scheme `{}`; expected postgres:// or postgresql://",
                u.scheme()
            )));
        }
        let mut config = tokio_postgres::Config::new();
        let user = decode_pct(u.username());
        let user = if user.is_empty() {
            return Err(bad(
                "the URL names no user; write postgres://USER@host/database".into(),
            ));
        } else {
            user
        };
        config.user(&user);
        let password = opts
            .password
            .clone()
            .or_else(|| u.password().map(decode_pct));
        if let Some(p) = &password {
            config.password(p);
        }
        let path = u.path().trim_start_matches('/');
        let dbname = if path.is_empty() {
            user.clone()
        } else {
            decode_pct(path)
        };
        if dbname.contains('/') {
            return Err(bad(format!(
                "`{dbname}` is not a database name (the URL's path is one name)"
            )));
        }
        config.dbname(&dbname);
        let mut sslmode = SslMode::default();
        let mut connect_timeout = opts.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let mut socket = None;
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    sslmode = SslMode::parse(&v).ok_or_else(|| {
                        bad(format!(
                            "sslmode `{v}`: expected disable, prefer, require, verify-ca or verify-full"
                        ))
                    })?;
                }
                "connect_timeout" => {
                    let secs: u64 = v.parse().map_err(|_| {
                        bad(format!(
                            "connect_timeout `{v}`: expected whole seconds (as libpq)"
                        ))
                    })?;
                    connect_timeout = Duration::from_secs(secs.clamp(1, 3600));
                }
                "host" => {
                    if !v.starts_with('/') {
                        return Err(bad(format!(
                            "host `{v}`: in the query string, host names a Unix socket folder (an absolute path)"
                        )));
                    }
                    socket = Some(PathBuf::from(v.as_ref()));
                }
                "application_name" => {
                    config.application_name(v.as_ref());
                }
                other => {
                    return Err(bad(format!(
                        "unknown URL parameter `{other}`; known: sslmode, connect_timeout, host, application_name"
                    )));
                }
            }
        }
        if let Some(m) = opts.sslmode {
            sslmode = m;
        }
        let port = u.port().unwrap_or(5432);
        config.port(port);
        let host = u
            .host_str()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        match &socket {
            Some(dir) => {
                config.host_path(dir);
                sslmode = SslMode::Disable;
            }
            None if host.is_empty() => {
                return Err(bad(
                    "the URL names no host; write postgres://user@HOST:port/database".into(),
                ));
            }
            None => {
                config.host(&host);
            }
        }
        if !u.query_pairs().any(|(k, _)| k == "application_name") {
            config.application_name("ferry");
        }
        config.connect_timeout(connect_timeout);
        config.ssl_mode(match sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if let Some(f) = &opts.ca_file
            && !f.is_file()
        {
            return Err(bad(format!("ca_file {}: no such file", f.display())));
        }
        let host_shown = match &socket {
            Some(d) => format!("?host={}", d.display()),
            None if host.contains(':') => format!("[{host}]:{port}"),
            None => format!("{host}:{port}"),
        };
        let shown = match &socket {
            Some(_) => format!("postgres://{user}@/{dbname}{host_shown}"),
            None => format!("postgres://{user}@{host_shown}/{dbname}"),
        };
        Ok(PgTarget {
            config,
            sslmode,
            ca_file: opts.ca_file.clone(),
            password,
            statement_timeout: opts.statement_timeout,
            fetch_rows: opts.fetch_rows.unwrap_or(FETCH_ROWS).clamp(1, 1_000_000),
            shown,
            socket,
        })
    }

    /// The URL without the password, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The password in use, if any (for the caller to hide from output).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The Unix socket folder, when the URL names one.
    pub fn socket(&self) -> Option<&std::path::Path> {
        self.socket.as_deref()
    }

    fn tls(&self) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, PgError> {
        tls_connector(self.sslmode, self.ca_file.as_deref(), &self.shown)
    }

    /// Connects, sets up the session (`statement_timeout`, UTC, ISO dates, standard strings) and
    /// starts the cancel watcher when the calling thread has a cancel scope.
    pub fn connect(&self) -> Result<PgDb, PgError> {
        let tls = self.tls()?;
        let mut client = Conn::connect(&self.config, tls.clone()).map_err(|e| match e {
            conn::ConnectError::Pg(e) => self.connect_error(&e),
            conn::ConnectError::Runtime(e) => PgError::Unreachable {
                db: self.shown.clone(),
                message: format!("cannot start the connection's runtime: {e}"),
            },
        })?;
        let token = client.cancel_token();
        let inner = Inner {
            client: RefCell::new(client),
            name: self.shown.clone(),
            tx_depth: Cell::new(0),
            implicit: Cell::new(false),
            cursors: Cell::new(0),
            next_id: Cell::new(0),
            watch: Watch::start(token, tls),
            fetch_rows: self.fetch_rows,
        };
        let db = PgDb(Rc::new(inner));
        let mut setup = String::from(
            "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET standard_conforming_strings = on; SET extra_float_digits = 1;",
        );
        if let Some(t) = self.statement_timeout {
            setup.push_str(&format!(" SET statement_timeout = {};", t.as_millis()));
        }
        db.batch(&setup, "session setup")?;
        Ok(db)
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> PgError {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            if code.starts_with("28") {
                return PgError::Denied {
                    db: self.shown.clone(),
                    message: format!("authentication refused: {}", db.message()),
                };
            }
            if code == "3D000" {
                return PgError::Sql {
                    db: self.shown.clone(),
                    context: "connect".into(),
                    message: db.message().to_string(),
                    code: code.to_string(),
                };
            }
            return PgError::Unreachable {
                db: self.shown.clone(),
                message: db.message().to_string(),
            };
        }
        let text = error_chain(e);
        if text.contains("certificate") || text.contains("InvalidCertificate") {
            return PgError::Denied {
                db: self.shown.clone(),
                message: format!("TLS: the server's certificate was not accepted: {text}"),
            };
        }
        if text.contains("password") {
            return PgError::Denied {
                db: self.shown.clone(),
                message: text,
            };
        }
        PgError::Unreachable {
            db: self.shown.clone(),
            message: text,
        }
    }
}

/// An error with its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Certificates in a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// `verify-ca`: the chain must verify, the name in the certificate need not match the host.
#[derive(Debug)]
struct NoHostnameCheck(Arc<dyn rustls::client::danger::ServerCertVerifier>);

impl rustls::client::danger::ServerCertVerifier for NoHostnameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Watches the run's cancel scope while a call waits for the server, and cancels the statement
/// on the server when the run is being stopped.
struct Watch {
    busy: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(
        token: tokio_postgres::CancelToken,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Watch {
        let busy = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = crate::cancel::current().and_then(|interrupt| {
            let (b, f, s) = (busy.clone(), fired.clone(), stop.clone());
            std::thread::Builder::new()
                .name("ferry-pg-cancel".into())
                .spawn(move || {
                    while !s.load(Ordering::SeqCst) {
                        if b.load(Ordering::SeqCst) && !f.load(Ordering::SeqCst) && interrupt() {
                            f.store(true, Ordering::SeqCst);
                            cancel(&token, &tls);
                        }
                        std::thread::park_timeout(Duration::from_millis(25));
                    }
                })
                .ok()
        });
        Watch {
            busy,
            fired,
            stop,
            thread,
        }
    }
}

/// Asks the server to cancel the statement running on `token`'s connection (best effort: the
/// statement may have ended meanwhile).
fn cancel(
    token: &tokio_postgres::CancelToken,
    tls: &Option<tokio_postgres_rustls::MakeRustlsConnect>,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let _ = match tls {
        None => rt.block_on(token.cancel_query(NoTls)),
        Some(t) => rt.block_on(token.cancel_query(t.clone())),
    };
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Marks the connection busy (waiting for the server) until dropped.
struct Busy<'a>(&'a Watch);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

struct Inner {
    client: RefCell<Conn>,
    name: String,
    /// Open script transactions and sinks (savepoints).
    tx_depth: Cell<u32>,
    /// A transaction ferry began for open cursors.
    implicit: Cell<bool>,
    cursors: Cell<u32>,
    next_id: Cell<u64>,
    watch: Watch,
    fetch_rows: usize,
}

/// A handle over one PostgreSQL connection.
#[derive(Clone)]
pub struct PgDb(Rc<Inner>);

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb").field("name", &self.0.name).finish()
    }
}

/// A statement cut to one line of at most 80 characters, for messages.
fn excerpt(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        let cut: String = one.chars().take(77).collect();
        format!("`{cut}...`")
    } else {
        format!("`{one}`")
    }
}

/// A parameter sent in text format: the server parses it as the type the statement expects.
#[derive(Debug)]
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mut text = String::new();
        match self.0 {
            Value::Null => return Ok(IsNull::Yes),
            Value::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => text.push_str(&i.to_string()),
            Value::Float(f) => text.push_str(&float_text(*f)),
            Value::Text(s) if *ty == Type::BYTEA && is_hex(s) => {
                text.push_str("\\x");
                text.push_str(s);
            }
            Value::Text(s) => text.push_str(s),
            Value::Bytes(b) if *ty == Type::BYTEA => {
                text.push_str("\\x");
                text.push_str(&hex(b));
            }
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => text.push_str(s),
                Err(_) => {
                    return Err(format!("bytes that are not UTF-8 cannot be a {ty} value").into());
                }
            },
        }
        out.extend_from_slice(text.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// A value in any type, raw (binary format), for [`decode`].
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Whether ferry reads values of this type (see [`decode`]).
pub fn readable(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::OID
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::NUMERIC
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::CHAR
            | Type::UNKNOWN
            | Type::JSON
            | Type::JSONB
            | Type::UUID
            | Type::DATE
            | Type::TIME
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
            | Type::BYTEA
    ) || matches!(ty.kind(), tokio_postgres::types::Kind::Enum(_))
        || ty.name() == "citext"
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be_i64(b: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// `YYYY-MM-DD` (`infinity`, `-infinity`).
fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => chrono::DateTime::from_timestamp((i64::from(d) + PG_EPOCH_DAYS) * 86_400, 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| format!("{d} days after 2000-01-01")),
    }
}

/// `HH:MM:SS` with the fraction's significant digits.
fn time_text(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    push_fraction(&mut s, frac);
    s
}

fn push_fraction(s: &mut String, micros: i64) {
    if micros != 0 {
        let f = format!(".{micros:06}");
        s.push_str(f.trim_end_matches('0'));
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`, plus `Z` when `utc` (timestamptz, given in UTC).
fn timestamp_text(micros: i64, utc: bool) -> String {
    match micros {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    let unix = micros + PG_EPOCH_DAYS * 86_400 * 1_000_000;
    let secs = unix.div_euclid(1_000_000);
    let frac = unix.rem_euclid(1_000_000);
    let Some(t) = chrono::DateTime::from_timestamp(secs, 0) else {
        return format!("{micros} microseconds after 2000-01-01");
    };
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    push_fraction(&mut s, frac);
    if utc {
        s.push('Z');
    }
    s
}

/// A `numeric` in binary form as exact decimal text, as PostgreSQL prints it.
fn numeric_text(b: &[u8]) -> Option<String> {
    let ndigits = be_i16(b, 0)? as usize;
    let weight = be_i16(b, 2)? as i64;
    let sign = u16::from_be_bytes(b.get(4..6)?.try_into().ok()?);
    let dscale = be_i16(b, 6)?.max(0) as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        digits.push(be_i16(b, 8 + 2 * i)? as i64);
    }
    let digit = |i: i64| -> i64 {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                s.push_str(&digit(0).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(i)));
            }
        }
    }
    if dscale > 0 {
        s.push('.');
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(dscale);
        s.push_str(&frac);
    }
    Some(s)
}

fn uuid_text(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let h = hex(b);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn hex(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

fn is_hex(s: &str) -> bool {
    s.len().is_multiple_of(2) && s.bytes().all(|c| c.is_ascii_hexdigit())
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        ryu::Buffer::new().format(f).to_string()
    }
}

/// Maps a value in binary format to the row model: integers, floats and booleans as such;
/// `numeric` as exact decimal text; dates `YYYY-MM-DD`; timestamps ISO 8601
/// (`2026-01-02T03:04:05.5`, timestamptz in UTC with `Z`); json/jsonb, uuid, text and enum labels
/// as text; bytea as bytes. `None` when the bytes are not a value of the type.
pub fn decode(ty: &Type, raw: &[u8]) -> Option<Value> {
    Some(match *ty {
        Type::BOOL => Value::Bool(*raw.first()? != 0),
        Type::INT2 => Value::Int(i64::from(be_i16(raw, 0)?)),
        Type::INT4 => Value::Int(i64::from(be_i32(raw)?)),
        Type::OID => Value::Int(i64::from(u32::from_be_bytes(
            raw.get(..4)?.try_into().ok()?,
        ))),
        Type::INT8 => Value::Int(be_i64(raw)?),
        Type::FLOAT4 => Value::Float(f64::from(f32::from_be_bytes(
            raw.get(..4)?.try_into().ok()?,
        ))),
        Type::FLOAT8 => Value::Float(f64::from_be_bytes(raw.get(..8)?.try_into().ok()?)),
        Type::NUMERIC => Value::Text(numeric_text(raw)?),
        Type::JSONB => Value::Text(std::str::from_utf8(raw.get(1..)?).ok()?.to_owned()),
        Type::UUID => Value::Text(uuid_text(raw)?),
        Type::DATE => Value::Text(date_text(be_i32(raw)?)),
        Type::TIME => Value::Text(time_text(be_i64(raw)?)),
        Type::TIMESTAMP => Value::Text(timestamp_text(be_i64(raw)?, false)),
        Type::TIMESTAMPTZ => Value::Text(timestamp_text(be_i64(raw)?, true)),
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        _ => match std::str::from_utf8(raw) {
            Ok(s) => Value::Text(s.to_owned()),
            Err(_) => Value::Bytes(raw.to_vec()),
        },
    })
}

/// What a statement's placeholders get: positional values only (`$1`, `$2`, ...).
fn positional<'a>(db: &str, sql: &str, params: &'a Params) -> Result<Vec<Param<'a>>, PgError> {
    match params {
        Params::None => Ok(Vec::new()),
        Params::Positional(v) => Ok(v.iter().map(Param).collect()),
        Params::Named(_) => Err(PgError::Params {
            db: db.to_owned(),
            context: excerpt(sql),
            message: "PostgreSQL statements take positional parameters ($1, $2, ...): pass a list, not names".into(),
        }),
    }
}

impl PgDb {
    /// Connects to `url` with `opts` (see [`PgTarget`]).
    pub fn connect(url: &str, opts: &PgOptions) -> Result<PgDb, PgError> {
        PgTarget::new(url, opts)?.connect()
    }

    /// The URL without password, for messages.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn busy(&self) -> Busy<'_> {
        self.0.watch.fired.store(false, Ordering::SeqCst);
        self.0.watch.busy.store(true, Ordering::SeqCst);
        Busy(&self.0.watch)
    }

    /// The error for a failed call: cancelled when the watcher cancelled it, else the server's
    /// message with its detail and hint.
    fn error(&self, context: String, e: &tokio_postgres::Error) -> PgError {
        if self.0.watch.fired.load(Ordering::SeqCst)
            || e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
                && crate::cancel::requested()
        {
            return PgError::Cancelled {
                db: self.0.name.clone(),
                context,
            };
        }
        match e.as_db_error() {
            Some(d) => {
                let mut message = d.message().to_string();
                if let Some(detail) = d.detail() {
                    message.push_str(&format!(" ({detail})"));
                }
                if let Some(hint) = d.hint() {
                    message.push_str(&format!("; hint: {hint}"));
                }
                PgError::Sql {
                    db: self.0.name.clone(),
                    context,
                    message,
                    code: d.code().code().to_string(),
                }
            }
            None if e.is_closed() => PgError::Unreachable {
                db: self.0.name.clone(),
                message: format!("{context}: the connection is closed: {}", error_chain(e)),
            },
            None => PgError::Sql {
                db: self.0.name.clone(),
                context,
                message: error_chain(e),
                code: String::new(),
            },
        }
    }

    fn batch(&self, sql: &str, context: &str) -> Result<(), PgError> {
        let _b = self.busy();
        self.0
            .client
            .borrow_mut()
            .batch_execute(sql)
            .map_err(|e| self.error(context.to_owned(), &e))
    }

    /// Commits the transaction ferry began for cursors once no cursor and no script
    /// transaction needs it any more (rolled back when it cannot commit).
    fn settle(&self) {
        let inner = &self.0;
        if inner.implicit.get() && inner.cursors.get() == 0 && inner.tx_depth.get() == 0 {
            inner.implicit.set(false);
            if let Ok(mut c) = inner.client.try_borrow_mut()
                && c.batch_execute("COMMIT").is_err()
            {
                let _ = c.batch_execute("ROLLBACK");
            }
        }
    }

    fn in_transaction(&self) -> bool {
        self.0.tx_depth.get() > 0 || self.0.implicit.get()
    }

    fn next_id(&self) -> u64 {
        let n = self.0.next_id.get() + 1;
        self.0.next_id.set(n);
        n
    }

    /// Whether the session reads a backslash in `'...'` as a plain character (the default since
    /// PostgreSQL 9.1), which decides where a script's statements end.
    fn standard_conforming_strings(&self) -> Result<bool, PgError> {
        const SQL: &str = "SHOW standard_conforming_strings";
        let _b = self.busy();
        let msgs = self
            .0
            .client
            .borrow_mut()
            .simple_query(SQL)
            .map_err(|e| self.error(SQL.to_owned(), &e))?;
        Ok(!msgs.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("off")),
        ))
    }

    /// Runs a query and returns its rows as a streaming source (a cursor).
    pub fn query(&self, sql: &str, params: &Params) -> Result<PgQuery, PgError> {
        PgQuery::new(self, sql, params)
    }

    /// Runs one statement (or, without parameters, several separated by `;`) and returns the
    /// number of rows changed.
    pub fn exec(&self, sql: &str, params: &Params) -> Result<u64, PgError> {
        let p = positional(&self.0.name, sql, params)?;
        let _b = self.busy();
        let mut c = self.0.client.borrow_mut();
        if p.is_empty() {
            let msgs = c
                .simple_query(sql)
                .map_err(|e| self.error(excerpt(sql), &e))?;
            Ok(msgs
                .iter()
                .map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => *n,
                    _ => 0,
                })
                .sum())
        } else {
            let refs: Vec<&(dyn ToSql + Sync)> =
                p.iter().map(|x| x as &(dyn ToSql + Sync)).collect();
            let stmt = c.prepare(sql).map_err(|e| self.error(excerpt(sql), &e))?;
            check_count(&self.0.name, sql, &stmt, refs.len())?;
            c.execute(&stmt, &refs)
                .map_err(|e| self.error(excerpt(sql), &e))
        }
    }

    /// Runs `f` in a transaction (`BEGIN`, or a savepoint inside one, so transactions nest):
    /// committed when `f` succeeds, rolled back when it fails.
    pub fn transaction<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E>
    where
        E: From<PgError>,
    {
        let tx = Tx::open(self)?;
        match f() {
            Ok(v) => {
                tx.commit()?;
                Ok(v)
            }
            Err(e) => {
                tx.rollback();
                Err(e)
            }
        }
    }

    /// Runs the statements of a `.sql` script in one transaction: all or nothing. `BEGIN`,
    /// `COMMIT`, `END` and `ROLLBACK` statements in the script are skipped, since the script is
    /// one transaction already. An error names the script, the statement's line and the
    /// server's message.
    pub fn run_script<R: std::io::Read>(
        &self,
        statements: &mut crate::formats::SqlStatements<R>,
    ) -> Result<super::ScriptReport, PgError> {
        statements.adopt(
            crate::formats::SqlDialect::Postgres,
            !self.standard_conforming_strings()?,
        );
        self.transaction(|| {
            super::run_statements(statements, |st, script| {
                if copies_from_stdin(&st.sql) {
                    return Err(PgError::Format(crate::formats::FormatError::data(
                        crate::formats::Location::file(script).at_line(st.line),
                        "COPY ... FROM stdin takes its rows from the lines after it, which a script run statement by statement cannot send (pg_dump writes it by default); dump with `pg_dump --inserts`, or load the rows with db:insert",
                    )));
                }
                let msgs = {
                    let _b = self.busy();
                    self.0.client.borrow_mut().simple_query(&st.sql)
                }
                .map_err(|e| {
                    let at = crate::formats::Location::file(script).at_line(st.line);
                    self.error(at.to_string(), &e)
                })?;
                Ok(msgs
                    .iter()
                    .map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => *n,
                        _ => 0,
                    })
                    .sum::<u64>())
            })
        })
    }

    /// A sink inserting into `table`.
    pub fn table_sink(&self, table: &str, opts: InsertOptions) -> PgTableSink {
        PgTableSink::new(self, table, opts)
    }
}

fn check_count(db: &str, sql: &str, stmt: &Statement, given: usize) -> Result<(), PgError> {
    let expected = stmt.params().len();
    if expected != given {
        return Err(PgError::Params {
            db: db.to_owned(),
            context: excerpt(sql),
            message: format!("expects {expected} parameters, {given} given"),
        });
    }
    Ok(())
}

/// A transaction ferry opened: `BEGIN` at the top, a savepoint inside another one.
struct Tx {
    db: PgDb,
    savepoint: Option<String>,
    open: bool,
}

impl Tx {
    fn open(db: &PgDb) -> Result<Tx, PgError> {
        let savepoint = if db.in_transaction() {
            let name = format!("ferry_{}", db.next_id());
            db.batch(&format!("SAVEPOINT {name}"), "SAVEPOINT")?;
            Some(name)
        } else {
            db.batch("BEGIN", "BEGIN")?;
            None
        };
        db.0.tx_depth.set(db.0.tx_depth.get() + 1);
        Ok(Tx {
            db: db.clone(),
            savepoint,
            open: true,
        })
    }

    fn close(&mut self) {
        if self.open {
            self.open = false;
            self.db
                .0
                .tx_depth
                .set(self.db.0.tx_depth.get().saturating_sub(1));
        }
    }

    fn commit(mut self) -> Result<(), PgError> {
        self.close();
        let r = match &self.savepoint {
            Some(sp) => self.db.batch(&format!("RELEASE SAVEPOINT {sp}"), "RELEASE"),
            None => self.db.batch("COMMIT", "COMMIT"),
        };
        self.db.settle();
        r
    }

    fn rollback(mut self) {
        self.undo();
    }

    fn undo(&mut self) {
        if !self.open {
            return;
        }
        self.close();
        let sql = match &self.savepoint {
            Some(sp) => format!("ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}"),
            None => "ROLLBACK".into(),
        };
        // With the connection lost there is nothing to roll back: the server did.
        if let Ok(mut c) = self.db.0.client.try_borrow_mut() {
            let _ = c.batch_execute(&sql);
        }
        self.db.settle();
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        self.undo();
    }
}

/// The rows of a query, as a row source: a cursor fetched [`FETCH_ROWS`] at a time.
pub struct PgQuery {
    db: PgDb,
    sql: String,
    params: Vec<Value>,
    columns: Vec<String>,
    types: Vec<Type>,
    cursor: Option<String>,
    fetch: Option<Statement>,
    buf: std::vec::IntoIter<tokio_postgres::Row>,
    done: bool,
    name: String,
}

impl PgQuery {
    fn new(db: &PgDb, sql: &str, params: &Params) -> Result<PgQuery, PgError> {
        let p = positional(&db.0.name, sql, params)?;
        let stmt = {
            let _b = db.busy();
            db.0.client
                .borrow_mut()
                .prepare(sql)
                .map_err(|e| db.error(excerpt(sql), &e))?
        };
        check_count(&db.0.name, sql, &stmt, p.len())?;
        let mut columns = Vec::new();
        let mut types = Vec::new();
        for c in stmt.columns() {
            if !readable(c.type_()) {
                return Err(PgError::Value {
                    db: db.0.name.clone(),
                    context: excerpt(sql),
                    message: format!(
                        "column `{}` has type {}, which ferry does not read; cast it in the query (`{}::text`)",
                        c.name(),
                        c.type_(),
                        c.name()
                    ),
                });
            }
            columns.push(c.name().to_string());
            types.push(c.type_().clone());
        }
        Ok(PgQuery {
            db: db.clone(),
            sql: sql.to_owned(),
            params: p.iter().map(|x| x.0.clone()).collect(),
            columns,
            types,
            cursor: None,
            fetch: None,
            buf: Vec::new().into_iter(),
            done: false,
            name: format!("{} query {}", db.0.name, excerpt(sql)),
        })
    }

    fn declare(&mut self) -> Result<(), PgError> {
        let db = self.db.clone();
        if !db.in_transaction() {
            db.batch("BEGIN", "BEGIN")?;
            db.0.implicit.set(true);
        }
        let name = format!("ferry_c{}", db.next_id());
        let declare = format!("DECLARE {name} NO SCROLL CURSOR FOR {}", self.sql);
        let params: Vec<Param<'_>> = self.params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|x| x as &(dyn ToSql + Sync)).collect();
        let _b = db.busy();
        let mut c = db.0.client.borrow_mut();
        db.0.cursors.set(db.0.cursors.get() + 1);
        self.cursor = Some(name.clone());
        c.execute(declare.as_str(), &refs)
            .map_err(|e| db.error(excerpt(&self.sql), &e))?;
        let fetch = c
            .prepare(&format!("FETCH {} FROM {name}", db.0.fetch_rows))
            .map_err(|e| db.error(excerpt(&self.sql), &e))?;
        self.fetch = Some(fetch);
        Ok(())
    }

    fn fill(&mut self) -> Result<bool, PgError> {
        if self.cursor.is_none() {
            self.declare()?;
        }
        let Some(fetch) = &self.fetch else {
            return Ok(false);
        };
        let rows = {
            let _b = self.db.busy();
            self.db
                .0
                .client
                .borrow_mut()
                .query(fetch, &[])
                .map_err(|e| self.db.error(excerpt(&self.sql), &e))?
        };
        if rows.is_empty() {
            return Ok(false);
        }
        self.buf = rows.into_iter();
        Ok(true)
    }

    /// Closes the cursor, and commits the transaction ferry began for it when it was the last.
    fn close(&mut self) {
        self.buf = Vec::new().into_iter();
        self.fetch = None;
        if let Some(name) = self.cursor.take() {
            let inner = &self.db.0;
            let n = inner.cursors.get().saturating_sub(1);
            inner.cursors.set(n);
            if let Ok(mut c) = inner.client.try_borrow_mut() {
                let _ = c.batch_execute(&format!("CLOSE {name}"));
            }
            self.db.settle();
        }
    }

    /// Writes every row as CSV with `COPY (query) TO STDOUT (FORMAT csv)` into `out` and
    /// returns the number of rows, when the query has not started and its columns allow it
    /// (distinct names). Values are written in the text forms of the typed path: booleans
    /// `true`/`false`, bytea as hex, timestamps ISO 8601 (`Z` for timestamptz). `None` when
    /// the typed path must be used.
    pub fn copy_csv(
        &mut self,
        out: &mut dyn Write,
        opts: &CsvOptions,
    ) -> Option<Result<u64, PgError>> {
        if self.cursor.is_some() || self.done || !self.copyable(opts) {
            return None;
        }
        Some(self.copy_csv_now(out, opts))
    }

    /// Whether [`PgQuery::copy_csv`] can write this query with these CSV options.
    pub fn copyable(&self, opts: &CsvOptions) -> bool {
        let mut seen = std::collections::HashSet::new();
        self.columns.iter().all(|c| seen.insert(c.as_str()))
            && !opts.crlf
            && opts.delimiter.is_ascii()
            && opts.quote.is_ascii()
            && opts.delimiter != b'\n'
            && opts.delimiter != b'\r'
            && self.cursor.is_none()
    }

    /// The `COPY (query) TO STDOUT` statement for `opts`, and what the client rewrites in each
    /// column. `utc`: the session prints timestamptz in UTC, so the client can rewrite them.
    fn copy_statement(&self, opts: &CsvOptions, utc: bool) -> (String, Vec<Fix>) {
        let mut fixes = Vec::with_capacity(self.types.len());
        let mut exprs = Vec::new();
        let mut server_side = false;
        for (col, ty) in self.columns.iter().zip(&self.types) {
            let q = quote_identifier(col);
            let (fix, expr) = match *ty {
                Type::BOOL => (Fix::Bool, None),
                Type::TIMESTAMP => (Fix::Timestamp, None),
                Type::TIMESTAMPTZ if utc => (Fix::TimestampTz, None),
                Type::TIMESTAMPTZ => (
                    Fix::Keep,
                    Some(format!(
                        "CASE WHEN isfinite({q}) THEN replace(({q} AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z' ELSE {q}::text END"
                    )),
                ),
                Type::BYTEA => (Fix::Keep, Some(format!("encode({q}, 'hex')"))),
                _ => (Fix::Keep, None),
            };
            fixes.push(fix);
            server_side |= expr.is_some();
            exprs.push(format!("{} AS {q}", expr.unwrap_or_else(|| q.clone())));
        }
        let mut select = self.sql.trim().trim_end_matches(';').to_string();
        for (i, v) in self.params.iter().enumerate().rev() {
            select = replace_placeholder(&select, i + 1, &literal(v));
        }
        // The server's work is the plain COPY unless a column needs an expression.
        if server_side {
            select = format!("SELECT {} FROM ({select}) AS ferry_q", exprs.join(", "));
        }
        let mut copy = format!(
            "COPY ({select}) TO STDOUT (FORMAT csv, HEADER {}, DELIMITER {}, QUOTE {}",
            if opts.header { "true" } else { "false" },
            literal(&Value::Text((opts.delimiter as char).to_string())),
            literal(&Value::Text((opts.quote as char).to_string())),
        );
        if let Some(null) = &opts.null {
            copy.push_str(&format!(", NULL {}", literal(&Value::Text(null.clone()))));
        }
        copy.push(')');
        (copy, fixes)
    }

    fn copy_csv_now(&mut self, out: &mut dyn Write, opts: &CsvOptions) -> Result<u64, PgError> {
        let db = self.db.clone();
        let mut c = db.0.client.borrow_mut();
        // Timestamps with a zone are printed in the session's zone, which is UTC unless the
        // script changed it; then the server writes them in UTC itself.
        let utc = matches!(
            c.parameter("TimeZone"),
            Some("UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "UCT" | "Etc/UCT" | "Zulu" | "Etc/Zulu")
        );
        let (copy, fixes) = self.copy_statement(opts, utc);
        if opts.bom {
            out.write_all(b"\xEF\xBB\xBF")
                .map_err(|e| FormatError::io(&self.name, e))?;
        }
        let _b = db.busy();
        let failed = |e: tokio_postgres::Error| db.error(excerpt(&self.sql), &e);
        let mut stream = c.copy_out(&copy).map_err(failed)?;
        let mut pass = CsvPass::new(
            fixes,
            opts.delimiter,
            opts.quote,
            opts.null.as_deref(),
            opts.header,
        );
        // PostgreSQL sends one CopyData message per row: each batch of `COPY_OUT_CHUNK` bytes
        // is read in one runtime entry, then counted (and rewritten), written to the output
        // (often an unbuffered file) and checked for cancellation, once per batch.
        let mut buf: Vec<u8> = Vec::with_capacity(COPY_OUT_CHUNK + 64 * 1024);
        let mut fixed: Vec<u8> = Vec::new();
        let mut every = crate::cancel::Every::new(crate::cancel::CHECK_BYTES);
        loop {
            let (_, engine) = c.parts();
            let end = conn::fill(engine, &mut stream, &mut buf, COPY_OUT_CHUNK).map_err(failed)?;
            let written = if pass.rewrites() {
                let used = pass.rewrite(&buf, &mut fixed, end);
                buf.drain(..used);
                out.write_all(&fixed)
                    .map_err(|e| FormatError::io(&self.name, e))?;
                let n = fixed.len();
                fixed.clear();
                n
            } else {
                pass.count(&buf);
                out.write_all(&buf)
                    .map_err(|e| FormatError::io(&self.name, e))?;
                let n = buf.len();
                buf.clear();
                n
            };
            if every.tick(written as u64).is_err() {
                return Err(PgError::Cancelled {
                    db: db.0.name.clone(),
                    context: excerpt(&self.sql),
                });
            }
            if end {
                break;
            }
        }
        self.done = true;
        Ok(pass.records().saturating_sub(u64::from(opts.header)))
    }
}

/// Bytes of COPY output gathered before they are counted and written.
const COPY_OUT_CHUNK: usize = 256 * 1024;

/// A value as an SQL literal (for COPY, which takes no parameters). Strings are quoted with
/// `standard_conforming_strings` on (set for every session), so only `'` is doubled.
fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("'{}'", float_text(*f)),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Bytes(b) => format!("'\\x{}'::bytea", hex(b)),
    }
}

/// `sql` with the placeholder `$n` (not `$n0`...) outside quotes and comments replaced by `lit`.
fn replace_placeholder(sql: &str, n: usize, lit: &str) -> String {
    let tag = format!("${n}");
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + lit.len());
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'$' if sql[i..].starts_with(&tag)
                && !b.get(i + tag.len()).is_some_and(u8::is_ascii_digit) =>
            {
                out.push_str(&sql[start..i]);
                out.push_str(lit);
                i += tag.len();
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[start.min(sql.len())..]);
    out
}

impl Drop for PgQuery {
    fn drop(&mut self) {
        self.close();
    }
}

impl RowSource for PgQuery {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        if self.done {
            return Ok(false);
        }
        let r = match self.buf.next() {
            Some(r) => r,
            None => {
                let got = self.fill().map_err(|e| {
                    self.done = true;
                    FormatError::other(e)
                });
                if !got? {
                    self.done = true;
                    self.close();
                    return Ok(false);
                }
                match self.buf.next() {
                    Some(r) => r,
                    None => return Ok(false),
                }
            }
        };
        row.resize(self.columns.len(), Value::Null);
        for (i, slot) in row.iter_mut().enumerate() {
            let raw: Raw<'_> = r
                .try_get(i)
                .map_err(|e| FormatError::other(self.db.error(excerpt(&self.sql), &e)))?;
            *slot = match raw.0 {
                None => Value::Null,
                Some(bytes) => decode(&self.types[i], bytes).ok_or_else(|| {
                    FormatError::other(PgError::Value {
                        db: self.db.0.name.clone(),
                        context: excerpt(&self.sql),
                        message: format!(
                            "column `{}`: a {} value ferry cannot read",
                            self.columns[i], self.types[i]
                        ),
                    })
                })?,
            };
        }
        Ok(true)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn copy_csv(
        &mut self,
        out: &mut dyn Write,
        opts: &CsvOptions,
    ) -> Option<Result<u64, FormatError>> {
        PgQuery::copy_csv(self, out, opts).map(|r| r.map_err(FormatError::other))
    }

    fn can_copy_csv(&self, opts: &CsvOptions) -> bool {
        !self.done && self.copyable(opts)
    }
}

/// Appends `v` in COPY text format for a column of type `ty`.
fn copy_text(out: &mut Vec<u8>, v: &Value, ty: &Type) -> Result<(), String> {
    match v {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        // A whole float (from xlsx, where numbers are floats) into an integer column.
        Value::Float(f)
            if matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8)
                && f.fract() == 0.0
                && f.abs() < 9.0e15 =>
        {
            out.extend_from_slice(itoa::Buffer::new().format(*f as i64).as_bytes());
        }
        Value::Float(f) => out.extend_from_slice(float_text(*f).as_bytes()),
        Value::Text(s) if *ty == Type::BYTEA && is_hex(s) => {
            out.extend_from_slice(b"\\\\x");
            out.extend_from_slice(s.as_bytes());
        }
        Value::Text(s) => escape_copy(out, s.as_bytes()),
        Value::Bytes(b) if *ty == Type::BYTEA => {
            out.extend_from_slice(b"\\\\x");
            out.extend_from_slice(hex(b).as_bytes());
        }
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => escape_copy(out, s.as_bytes()),
            Err(_) => return Err(format!("bytes that are not UTF-8 cannot be a {ty} value")),
        },
    }
    Ok(())
}

fn escape_copy(out: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(c),
        }
    }
}

/// Rows into a table through `COPY ... FROM STDIN`, in a transaction of its own (or a savepoint
/// inside the script's), rolled back when dropped unfinished.
pub struct PgTableSink {
    db: PgDb,
    table: String,
    opts: InsertOptions,
    input: Option<String>,
    columns: Vec<String>,
    types: Vec<Type>,
    buf: Vec<u8>,
    in_buf: u64,
    /// Rows sent before the rows in `buf` (for row numbers in errors).
    sent: u64,
    since_commit: u64,
    report: InsertReport,
    tx: Option<Tx>,
    stage: Option<String>,
    merge: Option<String>,
    started: bool,
    finished: bool,
}

impl PgTableSink {
    fn new(db: &PgDb, table: &str, opts: InsertOptions) -> PgTableSink {
        PgTableSink {
            db: db.clone(),
            table: table.to_owned(),
            opts,
            input: None,
            columns: Vec::new(),
            types: Vec::new(),
            buf: Vec::new(),
            in_buf: 0,
            sent: 0,
            since_commit: 0,
            report: InsertReport::default(),
            tx: None,
            stage: None,
            merge: None,
            started: false,
            finished: false,
        }
    }

    /// Names the input the rows come from (a file), so that an error names it with the row.
    pub fn set_input(&mut self, name: &str) {
        self.input = Some(name.to_owned());
    }

    /// Rows inserted and skipped so far.
    pub fn report(&self) -> InsertReport {
        self.report
    }

    fn ctx(&self) -> String {
        format!("insert into {}", self.table)
    }

    fn quoted_table(&self) -> String {
        // `schema.table` stays two names.
        self.table
            .split('.')
            .map(quote_identifier)
            .collect::<Vec<_>>()
            .join(".")
    }

    fn cols(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn setup(&mut self, columns: &[String]) -> Result<(), PgError> {
        self.columns = columns.to_vec();
        self.tx = Some(Tx::open(&self.db)?);
        let table = self.quoted_table();
        let cols = self.cols();
        if self.opts.create {
            let defs: Vec<String> = columns
                .iter()
                .map(|c| format!("{} text", quote_identifier(c)))
                .collect();
            self.db.batch(
                &format!("CREATE TABLE IF NOT EXISTS {table} ({})", defs.join(", ")),
                &self.ctx(),
            )?;
        }
        let probe = format!("SELECT {cols} FROM {table} LIMIT 0");
        let stmt = {
            let _b = self.db.busy();
            self.db
                .0
                .client
                .borrow_mut()
                .prepare(&probe)
                .map_err(|e| self.db.error(self.ctx(), &e))?
        };
        self.types = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        if self.opts.on_conflict != OnConflict::Fail {
            let stage = format!("ferry_stage_{}", self.db.next_id());
            self.db.batch(
                &format!("CREATE TEMP TABLE {stage} AS SELECT {cols} FROM {table} WITH NO DATA"),
                &self.ctx(),
            )?;
            let action = match self.opts.on_conflict {
                OnConflict::Replace => {
                    let keys = self.primary_key()?;
                    let updates: Vec<String> = self
                        .columns
                        .iter()
                        .filter(|c| !keys.contains(c))
                        .map(|c| {
                            let q = quote_identifier(c);
                            format!("{q} = EXCLUDED.{q}")
                        })
                        .collect();
                    let target: Vec<String> = keys.iter().map(|k| quote_identifier(k)).collect();
                    if updates.is_empty() {
                        format!("ON CONFLICT ({}) DO NOTHING", target.join(", "))
                    } else {
                        format!(
                            "ON CONFLICT ({}) DO UPDATE SET {}",
                            target.join(", "),
                            updates.join(", ")
                        )
                    }
                }
                _ => "ON CONFLICT DO NOTHING".into(),
            };
            self.merge = Some(format!(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} {action}"
            ));
            self.stage = Some(stage);
        }
        Ok(())
    }

    fn primary_key(&self) -> Result<Vec<String>, PgError> {
        let sql = "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
                   ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                   WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY a.attnum";
        let rows = {
            let _b = self.db.busy();
            self.db
                .0
                .client
                .borrow_mut()
                .query(sql, &[&Param(&Value::Text(self.quoted_table()))])
                .map_err(|e| self.db.error(self.ctx(), &e))?
        };
        let keys: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        if keys.is_empty() {
            return Err(PgError::Params {
                db: self.db.0.name.clone(),
                context: self.ctx(),
                message: format!(
                    "on_conflict = \"overwrite\" needs a primary key on {} to know which row a new one replaces",
                    self.table
                ),
            });
        }
        Ok(keys)
    }

    /// Sends the buffered rows.
    fn flush(&mut self) -> Result<(), PgError> {
        if self.in_buf == 0 {
            return Ok(());
        }
        let target = match &self.stage {
            Some(s) => s.clone(),
            None => self.quoted_table(),
        };
        let copy = format!("COPY {target} ({}) FROM STDIN", self.cols());
        let n = self.in_buf;
        let result = {
            let _b = self.db.busy();
            let mut c = self.db.0.client.borrow_mut();
            c.copy_in(&copy, bytes::Bytes::from(std::mem::take(&mut self.buf)))
        };
        self.in_buf = 0;
        if let Err(e) = result {
            return Err(self.row_error(&e));
        }
        match &self.merge {
            Some(merge) => {
                let merge = merge.clone();
                let stage = self.stage.clone().unwrap_or_default();
                let inserted = {
                    let _b = self.db.busy();
                    let mut c = self.db.0.client.borrow_mut();
                    let r = c.execute(merge.as_str(), &[]);
                    let r2 = c.batch_execute(&format!("TRUNCATE {stage}"));
                    drop(c);
                    let rows = format!("{}: rows {}-{}", self.ctx(), self.sent + 1, self.sent + n);
                    let inserted = r.map_err(|e| self.db.error(rows.clone(), &e))?;
                    r2.map_err(|e| self.db.error(rows, &e))?;
                    inserted
                };
                self.report.inserted += inserted;
                self.report.skipped += n.saturating_sub(inserted);
            }
            None => self.report.inserted += n,
        }
        self.sent += n;
        if self.opts.batch > 0 && self.since_commit >= self.opts.batch {
            self.since_commit = 0;
            if let Some(tx) = &self.tx
                && tx.savepoint.is_none()
            {
                self.db.batch("COMMIT; BEGIN", &self.ctx())?;
            }
        }
        Ok(())
    }

    /// The error of a failed COPY, naming the row (from the server's `COPY t, line N, column c`)
    /// and the input.
    fn row_error(&self, e: &tokio_postgres::Error) -> PgError {
        let mut context = self.ctx();
        if let Some(d) = e.as_db_error()
            && let Some(w) = d.where_()
            && let Some(rest) = w.split(", line ").nth(1)
        {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(line) = digits.parse::<u64>() {
                context.push_str(&format!(": row {}", self.sent + line));
                if let Some(input) = &self.input {
                    context.push_str(&format!(" from {input}"));
                }
                if let Some(col) = rest.split(", column ").nth(1) {
                    let col = col.split(':').next().unwrap_or(col);
                    context.push_str(&format!(", column {col}"));
                }
            }
        }
        self.db.error(context, e)
    }
}

impl RowSink for PgTableSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        self.setup(columns).map_err(FormatError::other)
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        if self.tx.is_none() {
            return Err(FormatError::Option {
                format: "postgres",
                option: "insert",
                message: "a row was written before the columns".into(),
            });
        }
        let n = self.sent + self.in_buf + 1;
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                self.buf.push(b'\t');
            }
            let ty = self.types.get(i).unwrap_or(&Type::TEXT);
            if let Err(m) = copy_text(&mut self.buf, v, ty) {
                let col = self.columns.get(i).map(String::as_str).unwrap_or("?");
                let mut context = format!("{}: row {n}", self.ctx());
                if let Some(input) = &self.input {
                    context.push_str(&format!(" from {input}"));
                }
                context.push_str(&format!(", column {col}"));
                return Err(FormatError::other(PgError::Value {
                    db: self.db.0.name.clone(),
                    context,
                    message: m,
                }));
            }
        }
        self.buf.push(b'\n');
        self.in_buf += 1;
        self.since_commit += 1;
        let boundary = self.opts.batch > 0 && self.since_commit >= self.opts.batch;
        if self.buf.len() >= COPY_CHUNK || boundary {
            self.flush().map_err(FormatError::other)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.flush().map_err(FormatError::other)?;
        if let Some(stage) = self.stage.take() {
            self.db
                .batch(&format!("DROP TABLE IF EXISTS {stage}"), &self.ctx())
                .map_err(FormatError::other)?;
        }
        if let Some(tx) = self.tx.take() {
            tx.commit().map_err(FormatError::other)?;
        }
        Ok(())
    }

    fn started(&self) -> bool {
        self.started
    }
}

/// Whether `sql` (after its leading comments) is `COPY ... FROM STDIN`.
fn copies_from_stdin(sql: &str) -> bool {
    let code: String = sql
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty() || l.starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    let words: Vec<&str> = code.split_whitespace().collect();
    words.first() == Some(&"COPY")
        && words
            .windows(2)
            .any(|w| w[0] == "FROM" && w[1].trim_end_matches(';') == "STDIN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_password() {
        let t = PgTarget::new(
            "postgres://app:s3cr%40t@db.example:6543/shop?sslmode=verify-full",
            &PgOptions::default(),
        )
        .unwrap();
        assert_eq!(t.shown(), "postgres://app@db.example:6543/shop");
        assert_eq!(t.password(), Some("s3cr@t"));
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        for (url, want) in [
            ("mysql://a@h/db", "unsupported URL scheme"),
            ("postgres://h/db", "names no user"),
            ("postgres://a@h/db?sslmode=maybe", "sslmode `maybe`"),
            ("postgres://a@h/db?fast=1", "unknown URL parameter `fast`"),
            ("postgres://a@h/db?host=relative", "absolute path"),
            ("not a url", "malformed URL"),
        ] {
            let e = PgTarget::new(url, &PgOptions::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn binary_values_map_to_text_exactly() {
        // 12345.6780 : ndigits 3, weight 1, sign +, dscale 4: [1, 2345, 6780]
        let mut b = Vec::new();
        for x in [3i16, 1, 0, 4, 1, 2345, 6780] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).unwrap(), "12345.6780");
        // -0.0012 : ndigits 1, weight -1, sign -, dscale 4: [12]
        let mut b = Vec::new();
        for x in [1i16, -1, 0x4000, 4, 12] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).unwrap(), "-0.0012");
        assert_eq!(timestamp_text(0, true), "2000-01-01T00:00:00Z");
        assert_eq!(timestamp_text(1_500_000, false), "2000-01-01T00:00:01.5");
        assert_eq!(date_text(-1), "1999-12-31");
        assert_eq!(time_text(3_723_000_001), "01:02:03.000001");
    }

    #[test]
    fn placeholders_become_literals_outside_quotes() {
        let sql = "SELECT '$1', x FROM t WHERE a = $1 AND b = $10 -- $1\n";
        assert_eq!(
            replace_placeholder(sql, 1, "'o''k'"),
            "SELECT '$1', x FROM t WHERE a = 'o''k' AND b = $10 -- $1\n"
        );
    }

    #[test]
    fn copy_text_escapes() {
        let mut out = Vec::new();
        copy_text(&mut out, &Value::Text("a\tb\\c\n".into()), &Type::TEXT).unwrap();
        assert_eq!(out, b"a\\tb\\\\c\\n");
    }
}
