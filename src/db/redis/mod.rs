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

use std::fmt;
use std::time::Duration;

use crate::formats::rdb::{
    FOOTER_LEN, min_version, rdb_version_of_redis, restamp_payload, string_payload_value,
    type_name, verify_payload,
};
use crate::formats::{FormatError, Location, RowSink, RowSource, Value};
use crate::units::{CountRange, DAY, DurationRange};

/// The columns of a Redis row, in order: database number, key, type name, milliseconds left
/// to live when the row was read (null: no expiry), absolute expiry in Unix milliseconds
/// (null: none), and the `DUMP` payload.
pub use crate::formats::rdb::COLUMNS as ROW_COLUMNS;

/// Called between batches; `true` stops the transfer with [`RedisError::Interrupted`].
pub use crate::formats::rdb::Interrupt;

/// Called after each batch with the number of keys handled so far.
pub use crate::formats::rdb::Progress;

mod conn;
mod restore;
mod scan;
mod snapshot;
mod target;

pub use conn::RedisConn;
pub use restore::{Conflict, RestoreOptions, RestoreSink, RestoreStats};
pub use scan::{ScanOptions, ScanSource, ScanStats};
pub use target::RedisTarget;

/// An error of a Redis connection or transfer. Messages name the target by its redacted label
/// (`redis://host:port/db`), never with a password.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL or an option is not usable.
    #[error("redis: {0}")]
    Config(String),
    /// A script named a Unix socket outside the allowed roots: kind `denied`.
    #[error("redis: {0}")]
    Denied(String),
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

/// Accepted `connect_timeout` of a Redis server (`[redis.NAME]`, `ferry.redis.connect`).
pub const CONNECT_TIMEOUT_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(1), Duration::from_secs(3600));
/// Accepted `timeout` of each Redis reply (`[redis.NAME]`, `ferry.redis.connect`).
pub const TIMEOUT_RANGE: DurationRange = DurationRange::new(Duration::from_millis(1), DAY);
/// Accepted database numbers.
pub const DB_RANGE: CountRange = CountRange::new(0, i32::MAX as i64);

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

pub use crate::formats::rdb::now_ms;

/// The Redis type name of a `DUMP` payload's first byte (its RDB value type).
pub fn payload_type(payload: &[u8]) -> &'static str {
    payload
        .first()
        .and_then(|b| crate::formats::rdb::type_name(*b))
        .unwrap_or("unknown")
}

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
