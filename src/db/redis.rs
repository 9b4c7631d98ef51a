//! Redis through the `redis` crate's synchronous client: connections, commands, pipelines, and
//! the two bulk paths that never build a value per key in a script:
//!
//! - [`ScanSource`] walks the keyspace with `SCAN` and yields each key's type, TTL and `DUMP`
//!   payload, pipelined (`PTTL` + `DUMP` for a whole `SCAN` page per round trip);
//! - [`RestoreSink`] writes such rows with `RESTORE`, pipelined in batches with one batch in
//!   flight while the next is built, under a conflict policy (`REPLACE`, or keep existing keys).
//!
//! Rows use the columns of [`ROW_COLUMNS`], the same as the RDB file reader in
//! [`crate::formats::rdb`], so an RDB file, a live instance and a ferry backup are
//! interchangeable as sources. Credentials never appear in messages: a target is named by its
//! redacted [`RedisTarget::label`].

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::formats::rdb::{
    FOOTER_LEN, min_version, rdb_version_of_redis, restamp_payload, string_payload_value,
    type_name, verify_payload,
};
use crate::formats::{FormatError, Location, RowSink, RowSource, Value};

/// The columns of a Redis row, in order: database number, key, type name, milliseconds left
/// to live when the row was read (null: no expiry), absolute expiry in Unix milliseconds
/// (null: none), and the `DUMP` payload.
pub use crate::formats::rdb::COLUMNS as ROW_COLUMNS;

/// Called between batches; `true` stops the transfer with [`RedisError::Interrupted`].
pub use crate::formats::rdb::Interrupt;

/// Called after each batch with the number of keys handled so far.
pub use crate::formats::rdb::Progress;

/// An error of a Redis connection or transfer. Messages name the target by its redacted label
/// (`redis://host:port/db`), never with a password.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL or an option is not usable.
    #[error("redis: {0}")]
    Config(String),
    /// Connecting or authenticating failed.
    #[error("{target}: cannot connect: {message}")]
    Connect {
        /// The redacted target.
        target: String,
        /// What failed.
        message: String,
    },
    /// The server answered a command with an error.
    #[error("{target}: {command}: {message}")]
    Server {
        /// The redacted target.
        target: String,
        /// The command (and key, for bulk writes).
        command: String,
        /// The server's error reply.
        message: String,
    },
    /// The connection failed during a command.
    #[error("{target}: {command}: {message}")]
    Io {
        /// The redacted target.
        target: String,
        /// The command.
        command: String,
        /// What failed.
        message: String,
    },
    /// A row handed to the sink is not usable.
    #[error("{0}")]
    Row(String),
    /// The run is being stopped.
    #[error("interrupted: the run is being stopped")]
    Interrupted,
}

impl From<RedisError> for FormatError {
    fn from(e: RedisError) -> Self {
        FormatError::Data {
            at: Location::file("redis"),
            message: e.to_string(),
        }
    }
}

/// How to reach a Redis server, besides its URL. `Debug` does not show the password.
#[derive(Clone)]
pub struct RedisOptions {
    /// Password (`AUTH`); overrides one in the URL.
    pub password: Option<String>,
    /// ACL user name; overrides one in the URL.
    pub username: Option<String>,
    /// Database number; overrides the URL's `/N`.
    pub db: Option<i64>,
    /// Limit for connecting and authenticating.
    pub connect_timeout: Duration,
    /// Limit for each reply.
    pub timeout: Duration,
    /// `rediss://`: the CA certificate(s), PEM, the server's certificate must chain to, instead
    /// of the system's trust store.
    pub ca: Option<Vec<u8>>,
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("username", &self.username)
            .field("db", &self.db)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .finish()
    }
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            password: None,
            username: None,
            db: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
            ca: None,
        }
    }
}

/// A Redis server to connect to: parsed URL and options, with a label safe to show.
#[derive(Clone)]
pub struct RedisTarget {
    info: redis::ConnectionInfo,
    ca: Option<Vec<u8>>,
    label: String,
    connect_timeout: Duration,
    timeout: Duration,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl RedisTarget {
    /// Parses `url` (`redis://[user:password@]host[:port][/db]` or `redis+unix:///path`) and
    /// applies `opts` on top of it.
    pub fn new(url: &str, opts: &RedisOptions) -> Result<RedisTarget, RedisError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            RedisError::Config(format!(
                "the URL is not valid ({e}); expected redis://[user:password@]host[:port][/db]"
            ))
        })?;
        match parsed.scheme() {
            "redis" | "rediss" | "redis+unix" | "unix" => {}
            other => {
                return Err(RedisError::Config(format!(
                    "unsupported URL scheme `{other}`; expected redis://[user:password@]host[:port][/db] (rediss:// for TLS)"
                )));
            }
        }
        // The client's own message may quote the URL, password included: not shown.
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|_| {
            RedisError::Config(
                "the URL is not valid; expected redis://[user:password@]host[:port][/db]".into(),
            )
        })?;
        let mut settings = info.redis_settings().clone();
        if let Some(p) = &opts.password {
            settings = settings.set_password(p);
        }
        if let Some(u) = &opts.username {
            settings = settings.set_username(u);
        }
        if let Some(db) = opts.db {
            if db < 0 {
                return Err(RedisError::Config(format!(
                    "db must be a database number ≥ 0, got {db}"
                )));
            }
            settings = settings.set_db(db);
        }
        let info = info.set_redis_settings(settings);
        let label = label_of(&info);
        if opts.ca.is_some() && !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            return Err(RedisError::Config(format!(
                "a CA certificate is for TLS connections; use rediss:// instead of {label}"
            )));
        }
        Ok(RedisTarget {
            info,
            ca: opts.ca.clone(),
            label,
            connect_timeout: opts.connect_timeout,
            timeout: opts.timeout,
        })
    }

    /// The target without credentials: `redis://host:port/db`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The database selected after connecting.
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }

    /// The password in use, if any: for the caller to redact.
    pub fn password(&self) -> Option<&str> {
        self.info.redis_settings().password()
    }

    /// Opens a connection: connects, authenticates and selects the database.
    pub fn connect(&self) -> Result<RedisConn, RedisError> {
        let client = if matches!(self.info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            // rustls needs a process-wide crypto provider; a second install is refused, harmlessly.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            match &self.ca {
                Some(ca) => redis::Client::build_with_tls(
                    self.info.clone(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                ),
                None => redis::Client::open(self.info.clone()),
            }
        } else {
            redis::Client::open(self.info.clone())
        }
        .map_err(|e| self.connect_err(&e))?;
        let con = client
            .get_connection_with_timeout(self.connect_timeout)
            .map_err(|e| self.connect_err(&e))?;
        con.set_read_timeout(Some(self.timeout))
            .and_then(|()| con.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.connect_err(&e))?;
        Ok(RedisConn {
            con,
            target: self.clone(),
            db: self.db(),
        })
    }

    fn connect_err(&self, e: &redis::RedisError) -> RedisError {
        RedisError::Connect {
            target: self.label.clone(),
            message: describe(e, &self.label),
        }
    }
}

impl RedisTarget {
    /// Streams a point-in-time RDB snapshot of the whole server into `out` through the
    /// replication handshake (`SYNC`, as `redis-cli --rdb` does): the server forks, writes its
    /// dataset as an RDB file and sends it. Every database, all types, functions included;
    /// consistent at one instant, unlike a `SCAN`. Returns the bytes written. Servers that do
    /// not allow replication commands (many managed services) answer with an error.
    pub fn snapshot(
        &self,
        out: &mut dyn std::io::Write,
        interrupt: Option<&Interrupt>,
    ) -> Result<u64, RedisError> {
        use std::io::{BufRead, BufReader, Read, Write};
        let redis::ConnectionAddr::Tcp(host, port) = self.info.addr() else {
            return Err(RedisError::Config(
                "snapshot: only plain TCP connections (redis://host:port) are supported, not TLS or unix sockets; back up with SCAN instead".into(),
            ));
        };
        let io = |what: &str, e: std::io::Error| RedisError::Io {
            target: self.label.clone(),
            command: "SYNC".into(),
            message: format!("{what}: {e}"),
        };
        let addrs: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))
                .map_err(|e| self.connect_err_io(&e))?
                .collect();
        let mut stream = None;
        let mut last = None;
        for a in addrs {
            match std::net::TcpStream::connect_timeout(&a, self.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(self.connect_err_io(&e)),
            (None, None) => {
                return Err(RedisError::Connect {
                    target: self.label.clone(),
                    message: "the host name resolves to no address".into(),
                });
            }
        };
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| io("socket", e))?;
        let mut writer = stream.try_clone().map_err(|e| io("socket", e))?;
        let mut reader = BufReader::with_capacity(1 << 16, stream);
        let mut line = Vec::new();
        let read_line = |reader: &mut BufReader<std::net::TcpStream>,
                         line: &mut Vec<u8>|
         -> Result<(), RedisError> {
            line.clear();
            reader
                .read_until(b'\n', line)
                .map_err(|e| io("reading the reply", e))?;
            if line.is_empty() {
                return Err(RedisError::Io {
                    target: self.label.clone(),
                    command: "SYNC".into(),
                    message: "the server closed the connection".into(),
                });
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            Ok(())
        };
        let settings = self.info.redis_settings();
        if let Some(pw) = settings.password() {
            let mut buf = Vec::new();
            match settings.username() {
                Some(u) => {
                    pack_command(&mut buf, &[b"AUTH".as_slice(), u.as_bytes(), pw.as_bytes()])
                }
                None => pack_command(&mut buf, &[b"AUTH".as_slice(), pw.as_bytes()]),
            }
            writer.write_all(&buf).map_err(|e| io("sending AUTH", e))?;
            read_line(&mut reader, &mut line)?;
            if line.first() == Some(&b'-') {
                let text = String::from_utf8_lossy(&line[1..]).into_owned();
                return Err(RedisError::Connect {
                    target: self.label.clone(),
                    message: if text.contains("WRONGPASS") || text.contains("invalid password") {
                        "authentication failed: wrong user name or password".into()
                    } else {
                        text
                    },
                });
            }
        }
        // Redis 7+: send the snapshot only, no replication stream after it. Older servers
        // answer with an error, which is fine. No `capa eof`: see below.
        // Each command waits for its reply: SYNC refuses to start with replies pending.
        let mut buf = Vec::new();
        pack_command(&mut buf, &[b"REPLCONF".as_slice(), b"rdb-only", b"1"]);
        writer
            .write_all(&buf)
            .map_err(|e| io("sending REPLCONF", e))?;
        read_line(&mut reader, &mut line)?;
        buf.clear();
        pack_command(&mut buf, &[b"SYNC".as_slice()]);
        writer.write_all(&buf).map_err(|e| io("sending SYNC", e))?;
        // The SYNC reply: newlines while the server prepares the snapshot, then `$LEN`, or an
        // error.
        let header = loop {
            read_line(&mut reader, &mut line)?;
            if line.is_empty() {
                if interrupt.is_some_and(|f| f()) {
                    return Err(RedisError::Interrupted);
                }
                continue;
            }
            break std::mem::take(&mut line);
        };
        let stopped = || interrupt.is_some_and(|f| f());
        let server_err = |message: String| RedisError::Server {
            target: self.label.clone(),
            command: "SYNC".into(),
            message,
        };
        if header.first() == Some(&b'-') {
            let text = String::from_utf8_lossy(&header[1..]).into_owned();
            let hint = if text.starts_with("NOPERM") || text.contains("unknown command") {
                " (this server or user may not take snapshots; back up with SCAN instead)"
            } else {
                ""
            };
            return Err(server_err(format!("{text}{hint}")));
        }
        let Some(rest) = header.strip_prefix(b"$") else {
            return Err(server_err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(&header)
            )));
        };
        let mut chunk = vec![0u8; 1 << 16];
        let mut written = 0u64;
        // Without `REPLCONF capa eof` the server sends the file with its length first (never
        // the diskless `$EOF:<mark>` form, whose start waits `repl-diskless-sync-delay`).
        let len: u64 = std::str::from_utf8(rest)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                server_err(format!(
                    "unexpected reply {:?}",
                    String::from_utf8_lossy(&header)
                ))
            })?;
        while written < len {
            if stopped() {
                return Err(RedisError::Interrupted);
            }
            let want = usize::try_from(len - written)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            let n = reader
                .read(&mut chunk[..want])
                .map_err(|e| io("reading the snapshot", e))?;
            if n == 0 {
                return Err(server_err(format!(
                    "the connection closed after {written} of {len} bytes"
                )));
            }
            out.write_all(&chunk[..n])
                .map_err(|e| io("writing the snapshot", e))?;
            written += n as u64;
        }
        out.flush().map_err(|e| io("writing the snapshot", e))?;
        Ok(written)
    }

    fn connect_err_io(&self, e: &std::io::Error) -> RedisError {
        RedisError::Connect {
            target: self.label.clone(),
            message: if e.kind() == std::io::ErrorKind::ConnectionRefused {
                format!("connection refused: nothing listens at {}", self.label)
            } else {
                e.to_string()
            },
        }
    }
}

fn label_of(info: &redis::ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => {
            if host.contains(':') {
                format!("redis://[{host}]:{port}/{db}")
            } else {
                format!("redis://{host}:{port}/{db}")
            }
        }
        redis::ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') {
                format!("rediss://[{host}]:{port}/{db}")
            } else {
                format!("rediss://{host}:{port}/{db}")
            }
        }
        redis::ConnectionAddr::Unix(path) => format!("redis+unix://{}?db={db}", path.display()),
        _ => format!("redis://(unknown address)/{db}"),
    }
}

/// A server error reply as Redis writes it: `WRONGTYPE Operation against ...`.
fn server_message(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => e.to_string(),
    }
}

/// A readable message for a client error, with hints for the common cases.
fn describe(e: &redis::RedisError, label: &str) -> String {
    let text = server_message(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("wrongpass") || lower.contains("invalid password") {
        "authentication failed: wrong user name or password".into()
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "authentication failed: wrong user name or password (or a password was given to a server that has none)".into()
    } else if lower.contains("noauth") {
        "the server requires a password; give one (opts.password or the URL)".into()
    } else if e.is_connection_refusal() {
        format!("connection refused: nothing listens at {label}")
    } else if e.is_timeout() {
        "timed out".into()
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        format!(
            "{text} (TLS: does the server's certificate chain to a CA you trust? give `ca` with the CA's PEM)"
        )
    } else {
        text
    }
}

/// A reply, independent of the client crate.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A nil reply.
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk (binary) string.
    Bytes(Vec<u8>),
    /// A status line (`OK`, `PONG`, ...).
    Status(String),
    /// A double (RESP3).
    Double(f64),
    /// A boolean (RESP3).
    Bool(bool),
    /// An array or set.
    Array(Vec<Reply>),
    /// A map (RESP3), in the server's order.
    Map(Vec<(Reply, Reply)>),
    /// An error reply (only inside pipelines; a single command raises it).
    Error(String),
}

impl Reply {
    fn from_value(v: redis::Value) -> Reply {
        match v {
            redis::Value::Nil => Reply::Nil,
            redis::Value::Int(i) => Reply::Int(i),
            redis::Value::BulkString(b) => Reply::Bytes(b),
            redis::Value::Array(a) | redis::Value::Set(a) => {
                Reply::Array(a.into_iter().map(Reply::from_value).collect())
            }
            redis::Value::SimpleString(s) => Reply::Status(s),
            redis::Value::Okay => Reply::Status("OK".into()),
            redis::Value::Map(m) => Reply::Map(
                m.into_iter()
                    .map(|(k, v)| (Reply::from_value(k), Reply::from_value(v)))
                    .collect(),
            ),
            redis::Value::Attribute { data, .. } => Reply::from_value(*data),
            redis::Value::Double(d) => Reply::Double(d),
            redis::Value::Boolean(b) => Reply::Bool(b),
            redis::Value::VerbatimString { text, .. } => Reply::Bytes(text.into_bytes()),
            redis::Value::BigNumber(n) => Reply::Bytes(n),
            redis::Value::Push { data, .. } => {
                Reply::Array(data.into_iter().map(Reply::from_value).collect())
            }
            redis::Value::ServerError(e) => Reply::Error(match e.details() {
                Some(d) => format!("{} {d}", e.code()),
                None => e.code().to_owned(),
            }),
            other => Reply::Bytes(format!("{other:?}").into_bytes()),
        }
    }
}

/// Appends one command in RESP form to `buf`.
pub fn pack_command<A: AsRef<[u8]>>(buf: &mut Vec<u8>, args: &[A]) {
    buf.push(b'*');
    buf.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    buf.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        buf.push(b'$');
        buf.extend_from_slice(itoa::Buffer::new().format(a.len()).as_bytes());
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

/// The command name of a packed argument list, for messages (`SET`, `CONFIG GET`).
fn command_name<A: AsRef<[u8]>>(args: &[A]) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a.as_ref()).to_ascii_uppercase())
        .unwrap_or_default()
}

/// One open connection.
pub struct RedisConn {
    con: redis::Connection,
    target: RedisTarget,
    db: i64,
}

impl RedisConn {
    /// The target this connection is to.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    fn io_err(&self, command: &str, e: &redis::RedisError) -> RedisError {
        RedisError::Io {
            target: self.target.label.clone(),
            command: command.to_owned(),
            message: describe(e, &self.target.label),
        }
    }

    fn send(&mut self, buf: &[u8], command: &str) -> Result<(), RedisError> {
        self.con
            .send_packed_command(buf)
            .map_err(|e| self.io_err(command, &e))
    }

    fn recv(&mut self, command: &str) -> Result<Reply, RedisError> {
        match self.con.recv_response() {
            Ok(v) => Ok(Reply::from_value(v)),
            Err(e) => match e.kind() {
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => {
                    Ok(Reply::Error(server_message(&e)))
                }
                _ => Err(self.io_err(command, &e)),
            },
        }
    }

    /// Runs one command; an error reply is an error naming the command.
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RedisError> {
        if args.is_empty() {
            return Err(RedisError::Config(
                "a command needs at least its name".into(),
            ));
        }
        let name = command_name(args);
        let mut buf = Vec::new();
        pack_command(&mut buf, args);
        self.send(&buf, &name)?;
        match self.recv(&name)? {
            Reply::Error(message) => Err(RedisError::Server {
                target: self.target.label.clone(),
                command: name,
                message,
            }),
            reply => {
                self.note_select(args, &reply);
                Ok(reply)
            }
        }
    }

    fn note_select<A: AsRef<[u8]>>(&mut self, args: &[A], reply: &Reply) {
        if args.len() == 2
            && args[0].as_ref().eq_ignore_ascii_case(b"SELECT")
            && matches!(reply, Reply::Status(_))
            && let Some(db) = std::str::from_utf8(args[1].as_ref())
                .ok()
                .and_then(|s| s.parse().ok())
        {
            self.db = db;
        }
    }

    /// Sends all commands in one round trip and returns one reply per command; error replies
    /// are [`Reply::Error`] entries. With `atomic` the commands run inside `MULTI`/`EXEC`.
    pub fn pipeline<A: AsRef<[u8]>>(
        &mut self,
        cmds: &[Vec<A>],
        atomic: bool,
    ) -> Result<Vec<Reply>, RedisError> {
        if let Some(i) = cmds.iter().position(|c| c.is_empty()) {
            return Err(RedisError::Config(format!(
                "pipeline: command {} is empty; expected a name and arguments",
                i + 1
            )));
        }
        let mut buf = Vec::new();
        if atomic {
            pack_command(&mut buf, &[b"MULTI"]);
        }
        for c in cmds {
            pack_command(&mut buf, c);
        }
        if atomic {
            pack_command(&mut buf, &[b"EXEC"]);
        }
        self.send(&buf, "pipeline")?;
        let mut replies = Vec::with_capacity(cmds.len());
        if atomic {
            self.expect_ok("MULTI")?;
            let mut queued_errors = Vec::new();
            for c in cmds {
                if let Reply::Error(e) = self.recv("pipeline")? {
                    queued_errors.push(format!("{}: {e}", command_name(c)));
                }
            }
            match self.recv("EXEC")? {
                Reply::Array(items) => replies = items,
                Reply::Error(e) => {
                    let detail = queued_errors.join("; ");
                    return Err(RedisError::Server {
                        target: self.target.label.clone(),
                        command: "EXEC".into(),
                        message: if detail.is_empty() {
                            e
                        } else {
                            format!("{e} ({detail})")
                        },
                    });
                }
                Reply::Nil => {
                    return Err(RedisError::Server {
                        target: self.target.label.clone(),
                        command: "EXEC".into(),
                        message: "the transaction was aborted (a watched key changed)".into(),
                    });
                }
                other => {
                    return Err(RedisError::Server {
                        target: self.target.label.clone(),
                        command: "EXEC".into(),
                        message: format!("unexpected reply {other:?}"),
                    });
                }
            }
        } else {
            for c in cmds {
                let r = self.recv("pipeline")?;
                self.note_select(c, &r);
                replies.push(r);
            }
        }
        Ok(replies)
    }

    fn expect_ok(&mut self, command: &str) -> Result<(), RedisError> {
        match self.recv(command)? {
            Reply::Error(message) => Err(RedisError::Server {
                target: self.target.label.clone(),
                command: command.to_owned(),
                message,
            }),
            _ => Ok(()),
        }
    }

    /// Switches to database `db` unless it is selected already.
    pub fn select(&mut self, db: i64) -> Result<(), RedisError> {
        if db != self.db {
            self.command(&[b"SELECT".to_vec(), db.to_string().into_bytes()])?;
        }
        Ok(())
    }

    /// The RDB version the server writes and accepts in `RESTORE` payloads (from its
    /// `redis_version`); `None` when `INFO` does not tell.
    pub fn rdb_version(&mut self) -> Result<Option<u16>, RedisError> {
        let info = match self.command(&[b"INFO".as_slice(), b"server"])? {
            Reply::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            Reply::Status(s) => s,
            _ => return Ok(None),
        };
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .and_then(rdb_version_of_redis))
    }

    /// The number of keys in the selected database.
    pub fn dbsize(&mut self) -> Result<u64, RedisError> {
        match self.command(&[b"DBSIZE"])? {
            Reply::Int(n) => Ok(n.max(0) as u64),
            other => Err(RedisError::Server {
                target: self.target.label.clone(),
                command: "DBSIZE".into(),
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The Redis type name of a `DUMP` payload's first byte (its RDB value type).
pub fn payload_type(payload: &[u8]) -> &'static str {
    payload
        .first()
        .and_then(|b| crate::formats::rdb::type_name(*b))
        .unwrap_or("unknown")
}

/// What `SCAN` walks.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// `MATCH` pattern (`*` for all).
    pub pattern: String,
    /// `COUNT` hint: keys per round trip.
    pub count: u32,
    /// `TYPE` filter (`string`, `hash`, ...).
    pub kind: Option<String>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            pattern: "*".into(),
            count: 1000,
            kind: None,
        }
    }
}

/// What a [`ScanSource`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanStats {
    /// Rows yielded.
    pub keys: u64,
    /// Keys `SCAN` returned more than once (dropped).
    pub duplicates: u64,
    /// Keys that were gone (deleted or expired) by the time they were dumped.
    pub vanished: u64,
}

/// A row source over a live keyspace: `SCAN`, then `PTTL` and `DUMP` of each page's keys in one
/// pipelined round trip. Keys `SCAN` returns twice (it may, while the server rehashes) are
/// yielded once: the source remembers a 128-bit hash of every key it has yielded (16 bytes a
/// key).
pub struct ScanSource {
    con: RedisConn,
    opts: ScanOptions,
    /// The first cursor, until the first page is asked for.
    cursor: Option<Vec<u8>>,
    /// Keys whose `PTTL`/`DUMP` were sent, and whether a `SCAN` follows them.
    in_flight: Option<(Vec<Vec<u8>>, bool)>,
    page: std::vec::IntoIter<(Vec<u8>, i64, Vec<u8>)>,
    seen: HashSet<u128>,
    hashers: (std::hash::RandomState, std::hash::RandomState),
    columns: Vec<String>,
    name: String,
    stats: ScanStats,
    interrupt: Option<Interrupt>,
    progress: Option<Progress>,
}

impl ScanSource {
    /// A source over the keys of `con`'s selected database.
    pub fn new(
        con: RedisConn,
        opts: ScanOptions,
        interrupt: Option<Interrupt>,
        progress: Option<Progress>,
    ) -> ScanSource {
        let name = format!("{} (scan {})", con.target.label, opts.pattern);
        ScanSource {
            con,
            opts,
            cursor: Some(b"0".to_vec()),
            in_flight: None,
            page: Vec::new().into_iter(),
            seen: HashSet::new(),
            hashers: (Default::default(), Default::default()),
            columns: ROW_COLUMNS.iter().map(|c| c.to_string()).collect(),
            name,
            stats: ScanStats::default(),
            interrupt,
            progress,
        }
    }

    /// What the source saw so far.
    pub fn scan_stats(&self) -> ScanStats {
        self.stats
    }

    fn key_hash(&self, key: &[u8]) -> u128 {
        let mut a = self.hashers.0.build_hasher();
        a.write(key);
        let mut b = self.hashers.1.build_hasher();
        b.write(key);
        ((a.finish() as u128) << 64) | b.finish() as u128
    }

    /// Packs `SCAN cursor MATCH .. COUNT .. [TYPE ..]` into `buf`.
    fn pack_scan(&self, buf: &mut Vec<u8>, cursor: &[u8]) {
        let count = self.opts.count.to_string();
        let mut args: Vec<&[u8]> = vec![
            b"SCAN",
            cursor,
            b"MATCH",
            self.opts.pattern.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ];
        if let Some(k) = &self.opts.kind {
            args.extend([b"TYPE".as_slice(), k.as_bytes()]);
        }
        pack_command(buf, &args);
    }

    /// Reads a `SCAN` reply: the next cursor (`None` at the end) and the page's new keys.
    fn read_scan(&mut self) -> Result<ScanPage, RedisError> {
        let (next, keys) = match self.con.recv("SCAN")? {
            Reply::Array(mut parts) if parts.len() == 2 => {
                let keys = parts.pop();
                let next = parts.pop();
                match (next, keys) {
                    (Some(Reply::Bytes(n)), Some(Reply::Array(keys))) => (n, keys),
                    _ => return Err(self.unexpected("SCAN")),
                }
            }
            Reply::Error(message) => {
                return Err(RedisError::Server {
                    target: self.con.target.label.clone(),
                    command: "SCAN".into(),
                    message,
                });
            }
            _ => return Err(self.unexpected("SCAN")),
        };
        let mut fresh = Vec::with_capacity(keys.len());
        for k in keys {
            let Reply::Bytes(k) = k else {
                return Err(self.unexpected("SCAN"));
            };
            if self.seen.insert(self.key_hash(&k)) {
                fresh.push(k);
            } else {
                self.stats.duplicates += 1;
            }
        }
        Ok(((next != b"0").then_some(next), fresh))
    }

    /// Sends `PTTL` + `DUMP` of `keys` and, when the scan goes on, the next `SCAN`, in one
    /// write; their replies are read by the next [`Self::fetch`], so the server works on them
    /// while the consumer handles the current page.
    fn send_next(&mut self, keys: Vec<Vec<u8>>, cursor: Option<Vec<u8>>) -> Result<(), RedisError> {
        if keys.is_empty() && cursor.is_none() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for k in &keys {
            pack_command(&mut buf, &[b"PTTL".as_slice(), k]);
            pack_command(&mut buf, &[b"DUMP".as_slice(), k]);
        }
        if let Some(c) = &cursor {
            self.pack_scan(&mut buf, c);
        }
        self.con.send(&buf, "DUMP")?;
        self.in_flight = Some((keys, cursor.is_some()));
        Ok(())
    }

    /// Fetches the next non-empty page; `false` when the scan is complete.
    fn fetch(&mut self) -> Result<bool, RedisError> {
        if let Some(cursor) = self.cursor.take() {
            // The first page: nothing is in flight yet.
            let mut buf = Vec::new();
            self.pack_scan(&mut buf, &cursor);
            self.con.send(&buf, "SCAN")?;
            self.in_flight = Some((Vec::new(), true));
        }
        while let Some((keys, scanned)) = self.in_flight.take() {
            if self.interrupt.as_ref().is_some_and(|f| f()) {
                return Err(RedisError::Interrupted);
            }
            let mut page = Vec::with_capacity(keys.len());
            for k in keys {
                let pttl = self.con.recv("PTTL")?;
                let dump = self.con.recv("DUMP")?;
                match (pttl, dump) {
                    (Reply::Int(t), Reply::Bytes(p)) if t != -2 => page.push((k, t, p)),
                    (_, Reply::Nil) | (Reply::Int(-2), _) => self.stats.vanished += 1,
                    (_, Reply::Error(e)) | (Reply::Error(e), _) => {
                        return Err(RedisError::Server {
                            target: self.con.target.label.clone(),
                            command: format!("DUMP {}", show_key(&k)),
                            message: e,
                        });
                    }
                    _ => return Err(self.unexpected("DUMP")),
                }
            }
            let (next, fresh) = if scanned {
                self.read_scan()?
            } else {
                (None, Vec::new())
            };
            self.send_next(fresh, next)?;
            if !page.is_empty() {
                self.page = page.into_iter();
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn unexpected(&self, command: &str) -> RedisError {
        RedisError::Server {
            target: self.con.target.label.clone(),
            command: command.into(),
            message: "unexpected reply shape".into(),
        }
    }
}

/// A `SCAN` reply: the next cursor (`None` at the end) and the keys not seen before.
type ScanPage = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// A key for messages: text as is (quoted), binary escaped, long keys shortened.
pub fn show_key(key: &[u8]) -> String {
    let shown: String = key
        .iter()
        .take(200)
        .map(|b| b.escape_ascii().to_string())
        .collect();
    if key.len() > 200 {
        format!("\"{shown}…\"")
    } else {
        format!("\"{shown}\"")
    }
}

fn key_value(key: Vec<u8>) -> Value {
    match String::from_utf8(key) {
        Ok(s) => Value::Text(s),
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}

impl RowSource for ScanSource {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        let (key, pttl, payload) = match self.page.next() {
            Some(item) => item,
            None => {
                if !self.fetch()? {
                    return Ok(false);
                }
                match self.page.next() {
                    Some(item) => item,
                    None => return Ok(false),
                }
            }
        };
        row.clear();
        row.push(Value::Int(self.con.db));
        row.push(key_value(key));
        row.push(Value::Text(payload_type(&payload).to_owned()));
        if pttl >= 0 {
            row.push(Value::Int(pttl));
            row.push(Value::Int(now_ms() + pttl));
        } else {
            row.push(Value::Null);
            row.push(Value::Null);
        }
        row.push(Value::Bytes(payload));
        self.stats.keys += 1;
        if self.page.len() == 0
            && let Some(p) = self.progress.as_mut()
        {
            p(self.stats.keys);
        }
        Ok(true)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("keys", self.stats.keys),
            ("duplicates", self.stats.duplicates),
            ("vanished", self.stats.vanished),
        ]
    }
}

/// What [`RestoreSink`] does with a key that exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// `RESTORE ... REPLACE`: the row's value wins.
    Replace,
    /// Keep the target's key; the row is counted as skipped.
    Skip,
}

/// How [`RestoreSink`] writes.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// What to do with existing keys.
    pub conflict: Conflict,
    /// Commands per pipelined batch.
    pub batch: usize,
    /// Bytes per batch at most (payloads are packed into one buffer).
    pub batch_bytes: usize,
    /// Write every row into this database; `None` keeps each row's `db` (or the connection's
    /// database when rows have no `db` column).
    pub db: Option<i64>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            conflict: Conflict::Replace,
            batch: 1000,
            batch_bytes: 4 << 20,
            db: None,
        }
    }
}

/// What a [`RestoreSink`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Keys written.
    pub restored: u64,
    /// Keys left alone because they exist in the target ([`Conflict::Skip`]).
    pub skipped: u64,
    /// Rows not written because their expiry has passed.
    pub expired: u64,
}

impl RestoreStats {
    /// Rows handled.
    pub fn total(&self) -> u64 {
        self.restored + self.skipped + self.expired
    }
}

#[derive(Clone, Copy)]
enum Pending {
    Select,
    Restore(usize),
}

/// Column positions of the rows a [`RestoreSink`] gets.
#[derive(Debug, Clone, Copy)]
struct Cols {
    key: usize,
    payload: usize,
    db: Option<usize>,
    expire_at: Option<usize>,
    ttl: Option<usize>,
}

/// A row sink writing keys with `RESTORE`, pipelined: a batch is sent, then the replies of the
/// batch before it are read, so the network and the server stay busy.
pub struct RestoreSink {
    con: RedisConn,
    opts: RestoreOptions,
    cols: Option<Cols>,
    /// Commands of the batch being built.
    buf: Vec<u8>,
    pending: Vec<Pending>,
    keys: Vec<Vec<u8>>,
    /// The batch sent and not yet answered.
    in_flight: Option<(Vec<Pending>, Vec<Vec<u8>>)>,
    /// The database the built commands leave selected.
    db: i64,
    /// Scratch space for decoded string values.
    value: Vec<u8>,
    /// The target's RDB version, learnt at `begin`: newer payloads are re-stamped for it.
    target_rdb: Option<u16>,
    stats: RestoreStats,
    interrupt: Option<Interrupt>,
    progress: Option<Progress>,
    finished: bool,
}

impl RestoreSink {
    /// A sink writing through `con`.
    pub fn new(
        con: RedisConn,
        opts: RestoreOptions,
        interrupt: Option<Interrupt>,
        progress: Option<Progress>,
    ) -> RestoreSink {
        let db = con.db;
        RestoreSink {
            con,
            opts,
            cols: None,
            buf: Vec::new(),
            pending: Vec::new(),
            keys: Vec::new(),
            in_flight: None,
            db,
            value: Vec::new(),
            target_rdb: None,
            stats: RestoreStats::default(),
            interrupt,
            progress,
            finished: false,
        }
    }

    /// What the sink did so far (keys of a batch count once its replies are read).
    pub fn restore_stats(&self) -> RestoreStats {
        self.stats
    }

    fn row_err(&self, message: String) -> FormatError {
        RedisError::Row(format!("{}: {message}", self.con.target.label)).into()
    }

    fn flush(&mut self) -> Result<(), RedisError> {
        if self.interrupt.as_ref().is_some_and(|f| f()) {
            return Err(RedisError::Interrupted);
        }
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.con.send(&buf, "RESTORE")?;
            self.buf = buf;
            self.buf.clear();
        }
        let sent = (
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.keys),
        );
        if let Some((pending, keys)) = self.in_flight.take() {
            self.read_replies(&pending, &keys)?;
        }
        if !sent.0.is_empty() {
            self.in_flight = Some(sent);
        }
        Ok(())
    }

    /// A payload newer than the target re-stamped with the target's RDB version, when the
    /// target knows its value type; an error naming the key when it does not.
    fn restamped(&self, key: &[u8], payload: &[u8]) -> Result<Option<Vec<u8>>, FormatError> {
        let (Some(target), Some(&t)) = (self.target_rdb, payload.first()) else {
            return Ok(None);
        };
        let n = payload.len();
        if n <= FOOTER_LEN {
            return Ok(None);
        }
        let version = u16::from_le_bytes([payload[n - FOOTER_LEN], payload[n - FOOTER_LEN + 1]]);
        if version <= target {
            return Ok(None);
        }
        if min_version(t) > target {
            return Err(self.row_err(format!(
                "key {}: a {} in an encoding of RDB version {} (value type {t}), which this Redis (RDB version {target}) cannot read; import into a newer Redis",
                show_key(key),
                type_name(t).unwrap_or("value"),
                min_version(t),
            )));
        }
        Ok(restamp_payload(payload, target))
    }

    fn read_replies(&mut self, pending: &[Pending], keys: &[Vec<u8>]) -> Result<(), RedisError> {
        for p in pending {
            let reply = self.con.recv("RESTORE")?;
            match (p, reply) {
                (Pending::Select, Reply::Error(e)) => {
                    return Err(RedisError::Server {
                        target: self.con.target.label.clone(),
                        command: "SELECT".into(),
                        message: e,
                    });
                }
                (Pending::Select, _) => {}
                (Pending::Restore(_), Reply::Error(e))
                    if self.opts.conflict == Conflict::Skip && e.starts_with("BUSYKEY") =>
                {
                    self.stats.skipped += 1;
                }
                // `SET ... NX` of a key that exists.
                (Pending::Restore(_), Reply::Nil) => self.stats.skipped += 1,
                (Pending::Restore(i), Reply::Error(e)) => {
                    let key = keys.get(*i).map(|k| show_key(k)).unwrap_or_default();
                    let hint = if e.contains("payload version") {
                        " (the payload comes from a newer Redis than the target, or is corrupt)"
                    } else {
                        ""
                    };
                    return Err(RedisError::Server {
                        target: self.con.target.label.clone(),
                        command: format!("RESTORE {key}"),
                        message: format!("{e}{hint}"),
                    });
                }
                (Pending::Restore(_), _) => self.stats.restored += 1,
            }
        }
        if let Some(p) = self.progress.as_mut() {
            p(self.stats.total());
        }
        Ok(())
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
        Value::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Text(t) => Some(t.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

impl RowSink for RestoreSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        let find = |name: &str| columns.iter().position(|c| c == name);
        let (Some(key), Some(payload)) = (find("key"), find("payload")) else {
            return Err(self.row_err(format!(
                "RESTORE needs rows with the columns `key` and `payload` (and optionally `db`, `expire_at`, `ttl`); got {}",
                columns.join(", ")
            )));
        };
        self.cols = Some(Cols {
            key,
            payload,
            db: find("db"),
            expire_at: find("expire_at"),
            ttl: find("ttl"),
        });
        self.target_rdb = self.con.rdb_version()?;
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        let Some(c) = self.cols else {
            return Err(self.row_err("write before begin".into()));
        };
        let cell = |i: usize| row.get(i).unwrap_or(&Value::Null);
        let Some(key) = bytes_of(cell(c.key)) else {
            return Err(self.row_err(format!(
                "a row's `key` must be a string, got {}",
                cell(c.key).type_name()
            )));
        };
        let Some(payload) = bytes_of(cell(c.payload)) else {
            return Err(self.row_err(format!(
                "key {}: `payload` must be a DUMP payload string, got {}",
                show_key(key),
                cell(c.payload).type_name()
            )));
        };
        let now = now_ms();
        let expire_at = match (c.expire_at.map(cell), c.ttl.map(cell)) {
            (Some(v), _) if !v.is_null() => Some(int_of(v).ok_or_else(|| {
                self.row_err(format!(
                    "key {}: `expire_at` must be Unix milliseconds, got {}",
                    show_key(key),
                    v.type_name()
                ))
            })?),
            (_, Some(v)) if !v.is_null() => Some(
                now + int_of(v).ok_or_else(|| {
                    self.row_err(format!(
                        "key {}: `ttl` must be milliseconds, got {}",
                        show_key(key),
                        v.type_name()
                    ))
                })?,
            ),
            _ => None,
        };
        if expire_at.is_some_and(|t| t <= now) {
            self.stats.expired += 1;
            return Ok(());
        }
        let db = match (self.opts.db, c.db.map(cell)) {
            (Some(db), _) => db,
            (None, Some(v)) if !v.is_null() => int_of(v).filter(|d| *d >= 0).ok_or_else(|| {
                self.row_err(format!(
                    "key {}: `db` must be a database number, got {}",
                    show_key(key),
                    v.type_name()
                ))
            })?,
            _ => self.con.db,
        };
        if db != self.db {
            pack_command(
                &mut self.buf,
                &[b"SELECT".to_vec(), db.to_string().into_bytes()],
            );
            self.pending.push(Pending::Select);
            self.db = db;
        }
        // A plain string is written with SET: the same key, value and expiry, and cheaper for the
        // server than decoding a payload. Anything else, or a payload that does not check out
        // (RESTORE then reports it), goes through RESTORE.
        let mut value = std::mem::take(&mut self.value);
        let as_set = payload.first() == Some(&0)
            && verify_payload(payload).is_ok()
            && string_payload_value(payload, &mut value).is_some();
        let ttl;
        let restamped;
        let mut payload = payload;
        let mut args: Vec<&[u8]> = Vec::with_capacity(6);
        if as_set {
            args.extend([b"SET".as_slice(), key, &value]);
            if self.opts.conflict == Conflict::Skip {
                args.push(b"NX");
            }
            if let Some(t) = expire_at {
                ttl = (t - now).to_string();
                args.extend([b"PX".as_slice(), ttl.as_bytes()]);
            }
        } else {
            ttl = expire_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "0".into());
            if let Some(p) = self.restamped(key, payload)? {
                restamped = p;
                payload = &restamped;
            }
            args.extend([b"RESTORE".as_slice(), key, ttl.as_bytes(), payload]);
            if self.opts.conflict == Conflict::Replace {
                args.push(b"REPLACE");
            }
            if expire_at.is_some() {
                args.push(b"ABSTTL");
            }
        }
        pack_command(&mut self.buf, &args);
        drop(args);
        self.value = value;
        self.pending.push(Pending::Restore(self.keys.len()));
        self.keys.push(key.to_vec());
        if self.keys.len() >= self.opts.batch.max(1) || self.buf.len() >= self.opts.batch_bytes {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if self.finished {
            return Ok(());
        }
        self.flush()?;
        self.flush()?;
        self.finished = true;
        Ok(())
    }

    fn started(&self) -> bool {
        self.cols.is_some()
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("restored", self.stats.restored),
            ("skipped", self.stats.skipped),
            ("expired", self.stats.expired),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_resp() {
        let mut buf = Vec::new();
        pack_command(&mut buf, &[b"SET".as_slice(), b"k", b""]);
        assert_eq!(buf, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn labels_hide_credentials() {
        let t = RedisTarget::new(
            "redis://user:s3cret@127.0.0.1:6390/2",
            &RedisOptions::default(),
        )
        .unwrap();
        assert_eq!(t.label(), "redis://127.0.0.1:6390/2");
        assert_eq!(t.password(), Some("s3cret"));
        let o = RedisOptions {
            password: Some("other".into()),
            db: Some(5),
            ..RedisOptions::default()
        };
        let t = RedisTarget::new("redis://127.0.0.1:6390", &o).unwrap();
        assert_eq!(t.label(), "redis://127.0.0.1:6390/5");
        assert_eq!(t.password(), Some("other"));
    }

    #[test]
    fn bad_urls_are_clear_and_do_not_echo_secrets() {
        for url in [
            "http://x:pw@host/",
            "not a url pw",
            "redis://u:pw@host:99999/",
        ] {
            let e = RedisTarget::new(url, &RedisOptions::default())
                .unwrap_err()
                .to_string();
            assert!(!e.contains("pw"), "{e}");
            assert!(e.starts_with("redis: "), "{e}");
        }
    }

    #[test]
    fn keys_are_shown_escaped() {
        assert_eq!(show_key(b"a\x00b"), "\"a\\x00b\"");
        assert!(show_key(&[b'x'; 300]).ends_with("…\""));
    }
}
