//! Errors of host functions as Lua values with a stable `kind`.
//!
//! A host function fails with a [`HostError`] (a kind, a message and, when the host knows it
//! better than the traceback, the script location). Scripts that catch it (`pcall`, `xpcall`,
//! `coroutine.resume`, `coroutine.wrap`) receive an error value, not a string:
//! `err.kind` (`"not_found"`, `"already_exists"`, `"denied"`, ...), `err.message` (what failed,
//! without the location), `err.location` (`scripts/x.lua:12`) and `tostring(err)` (the location
//! and the message, as the run's error would show it). The sandbox prelude converts every error
//! that crosses from the host into Lua through [`to_lua_value`]; errors that Lua code raises
//! itself (`error("text")`, `error({...})`) stay as they are.
//!
//! Typed errors of the layers below ([`StorageError`], [`FormatError`], [`DbError`],
//! [`RedisError`]) are classified by [`Classify`]; plain messages raised by a binding are
//! `invalid` (a bad argument or option), unless the message came from a Lua chunk (then `error`).

use std::fmt;

use mlua::{Lua, MetaMethod, UserData, UserDataFields, UserDataMethods, Value};

use crate::db::DbError;
use crate::db::mysql::{ConnectFailure, MysqlError};
use crate::db::redis::RedisError;
use crate::formats::FormatError;
use crate::formats::rdb::RdbError;
use crate::storage::{ErrorKind as StoreKind, StorageError};

/// What kind of failure an error is. The names ([`Kind::as_str`]) are the contract with
/// scripts: they never change once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The object, file, table, key, backup or secret does not exist.
    NotFound,
    /// A create-if-absent write (or a unique name) found it already there.
    AlreadyExists,
    /// Refused: confinement, permissions, credentials, a server's ACL.
    Denied,
    /// A bad argument, option, path or value given by the script.
    Invalid,
    /// A server could not be reached.
    Unreachable,
    /// The operation is not supported here.
    Unsupported,
    /// Past a size or count limit.
    TooLarge,
    /// Input data that does not parse or does not fit (a bad row, a corrupt file, a checksum).
    Data,
    /// A row conflicts with a unique constraint.
    Conflict,
    /// Any other SQL error.
    Sql,
    /// A server answered a command with an error.
    Server,
    /// Reading or writing bytes failed.
    Io,
    /// Something took longer than its time limit.
    Timeout,
    /// The run is being stopped.
    Cancelled,
    /// Anything else (an error raised by Lua code inside a host call).
    Error,
}

impl Kind {
    /// Every kind, for messages and docs.
    pub const ALL: &'static [Kind] = &[
        Kind::NotFound,
        Kind::AlreadyExists,
        Kind::Denied,
        Kind::Invalid,
        Kind::Unreachable,
        Kind::Unsupported,
        Kind::TooLarge,
        Kind::Data,
        Kind::Conflict,
        Kind::Sql,
        Kind::Server,
        Kind::Io,
        Kind::Timeout,
        Kind::Cancelled,
        Kind::Error,
    ];

    /// The stable name scripts compare `err.kind` with.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NotFound => "not_found",
            Kind::AlreadyExists => "already_exists",
            Kind::Denied => "denied",
            Kind::Invalid => "invalid",
            Kind::Unreachable => "unreachable",
            Kind::Unsupported => "unsupported",
            Kind::TooLarge => "too_large",
            Kind::Data => "data",
            Kind::Conflict => "conflict",
            Kind::Sql => "sql",
            Kind::Server => "server",
            Kind::Io => "io",
            Kind::Timeout => "timeout",
            Kind::Cancelled => "cancelled",
            Kind::Error => "error",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    fn of_io(e: &std::io::Error) -> Kind {
        if crate::cancel::is_cancelled(e) {
            return Kind::Cancelled;
        }
        if let Some(s) = StorageError::from_io(e) {
            return s.kind();
        }
        match e.kind() {
            std::io::ErrorKind::NotFound => Kind::NotFound,
            std::io::ErrorKind::PermissionDenied => Kind::Denied,
            std::io::ErrorKind::AlreadyExists => Kind::AlreadyExists,
            std::io::ErrorKind::TimedOut => Kind::Timeout,
            std::io::ErrorKind::InvalidData => Kind::Data,
            _ => Kind::Io,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of a host function: its kind, its message and, when the host knows the script line
/// to blame better than the traceback does (a plugin's option check blames the script that
/// called the plugin), that location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// The kind.
    pub kind: Kind,
    /// What failed and what was expected, without the location.
    pub message: String,
    /// `scripts/x.lua:12`, when set by the host; empty for an error that names no location
    /// (`ferry.error(kind, message, 0)`).
    pub location: Option<String>,
    /// The HTTP status of an error of `ferry.http` that is a server's answer (`err.status`).
    pub status: Option<u16>,
}

impl HostError {
    /// An error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> HostError {
        HostError {
            kind,
            message: message.into(),
            location: None,
            status: None,
        }
    }

    /// The same error with the HTTP status that caused it.
    pub fn with_status(mut self, status: Option<u16>) -> HostError {
        self.status = status;
        self
    }

    /// The same error blamed on `location`.
    pub fn at(mut self, location: Option<String>) -> HostError {
        self.location = location;
        self
    }

    /// As an mlua error (raised in Lua; caught, it becomes an error value).
    pub fn into_lua(self) -> mlua::Error {
        mlua::Error::external(self)
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) if !loc.is_empty() => write!(f, "{loc}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for HostError {}

/// An mlua error of `kind` with `message`.
pub fn host_err(kind: Kind, message: impl Into<String>) -> mlua::Error {
    HostError::new(kind, message).into_lua()
}

/// The kind of a typed error of the layers below.
pub trait Classify: std::error::Error {
    /// Its kind.
    fn kind(&self) -> Kind;

    /// As an mlua error that keeps the kind and the message.
    fn to_lua_err(&self) -> mlua::Error {
        host_err(self.kind(), self.to_string())
    }
}

impl Classify for StorageError {
    fn kind(&self) -> Kind {
        match &self.kind {
            StoreKind::NotFound => Kind::NotFound,
            StoreKind::AlreadyExists => Kind::AlreadyExists,
            StoreKind::Denied(_) => Kind::Denied,
            StoreKind::Unreachable(_) => Kind::Unreachable,
            StoreKind::InvalidPath(_) | StoreKind::Config(_) => Kind::Invalid,
            StoreKind::Unsupported(_) => Kind::Unsupported,
            StoreKind::TooLarge(_) => Kind::TooLarge,
            StoreKind::Interrupted => Kind::Cancelled,
            StoreKind::Io(e) => Kind::of_io(e),
            StoreKind::Backend(_) => Kind::Io,
        }
    }
}

impl Classify for FormatError {
    fn kind(&self) -> Kind {
        match self {
            FormatError::Data { .. } => Kind::Data,
            FormatError::Io { source, .. } => Kind::of_io(source),
            FormatError::Option { .. } => Kind::Invalid,
            FormatError::Limit { .. } => Kind::TooLarge,
            FormatError::Cancelled(_) => Kind::Cancelled,
            FormatError::Other(inner) => kind_of_dyn(inner.as_ref()),
        }
    }
}

impl Classify for DbError {
    fn kind(&self) -> Kind {
        match self {
            DbError::Open { .. } => Kind::Io,
            // SQLite's message is all that is left of its error code here.
            DbError::Sql { message, .. } if message.contains("constraint failed") => Kind::Conflict,
            DbError::Sql { message, .. } if message.starts_with("no such table") => Kind::NotFound,
            DbError::Sql { .. } => Kind::Sql,
            DbError::Params { .. } => Kind::Invalid,
            DbError::Denied { .. } => Kind::Denied,
            DbError::Format(f) => f.kind(),
        }
    }
}

impl Classify for MysqlError {
    fn kind(&self) -> Kind {
        match self {
            MysqlError::Config(_) | MysqlError::Params { .. } | MysqlError::State { .. } => {
                Kind::Invalid
            }
            MysqlError::Denied(_) => Kind::Denied,
            MysqlError::Unsupported { .. } => Kind::Unsupported,
            MysqlError::Connect { reason, .. } => match reason {
                ConnectFailure::Auth | ConnectFailure::Tls => Kind::Denied,
                ConnectFailure::Unreachable => Kind::Unreachable,
                ConnectFailure::Timeout => Kind::Timeout,
                ConnectFailure::Server => Kind::Server,
            },
            MysqlError::Sql { code, .. } => match code {
                // Duplicate entry, foreign key.
                1062 | 1586 | 1451 | 1452 | 1557 => Kind::Conflict,
                // No such table, database or column.
                1146 | 1049 | 1054 => Kind::NotFound,
                // Access denied.
                1044 | 1045 | 1142 | 1143 | 1227 => Kind::Denied,
                // A value that does not fit its column.
                1048 | 1101 | 1264 | 1265 | 1292 | 1366 | 1406 | 1367 | 3140 | 4025 => Kind::Data,
                // `LOAD DATA LOCAL` switched off.
                1148 | 3948 | 3950 | 4166 => Kind::Unsupported,
                // Lock wait or statement time limit.
                1205 | 1969 | 3024 => Kind::Timeout,
                _ => Kind::Sql,
            },
            MysqlError::Io {
                timed_out: true, ..
            } => Kind::Timeout,
            MysqlError::Io { .. } => Kind::Io,
            MysqlError::Value { .. } => Kind::Data,
            MysqlError::Cancelled { .. } => Kind::Cancelled,
            MysqlError::Format(f) => f.kind(),
        }
    }
}

impl Classify for RedisError {
    fn kind(&self) -> Kind {
        match self {
            RedisError::Config(_) | RedisError::Row(_) => Kind::Invalid,
            RedisError::Denied(_) => Kind::Denied,
            RedisError::Connect { message, .. } => {
                let m = message.to_ascii_lowercase();
                if m.contains("auth") || m.contains("password") || m.contains("noperm") {
                    Kind::Denied
                } else if m.contains("timed out") || m.contains("timeout") {
                    Kind::Timeout
                } else {
                    Kind::Unreachable
                }
            }
            RedisError::Server { message, .. } => {
                if message.starts_with("NOPERM") || message.starts_with("NOAUTH") {
                    Kind::Denied
                } else {
                    Kind::Server
                }
            }
            RedisError::Io { message, .. } if message.contains("timed out") => Kind::Timeout,
            RedisError::Io { .. } => Kind::Io,
            RedisError::Interrupted => Kind::Cancelled,
        }
    }
}

impl Classify for crate::http::HttpError {
    fn kind(&self) -> Kind {
        use crate::http::HttpError as H;
        match self {
            H::Invalid(_) => Kind::Invalid,
            H::Denied(_) => Kind::Denied,
            H::Unreachable { .. } => Kind::Unreachable,
            H::Timeout { .. } => Kind::Timeout,
            H::Status { status, .. } => match status {
                404 | 410 => Kind::NotFound,
                401 | 403 => Kind::Denied,
                409 | 412 => Kind::Conflict,
                413 => Kind::TooLarge,
                408 | 504 => Kind::Timeout,
                _ => Kind::Server,
            },
            H::Io { .. } => Kind::Io,
            H::TooLarge(_) => Kind::TooLarge,
            H::Interrupted(_) => Kind::Cancelled,
        }
    }

    fn to_lua_err(&self) -> mlua::Error {
        HostError::new(self.kind(), self.to_string())
            .with_status(self.status())
            .into_lua()
    }
}

/// What bindings raise: a message (a bad argument, unless it says otherwise) or a typed error.
pub(crate) trait IntoLuaErr {
    /// As an mlua error.
    fn into_lua_err(self) -> mlua::Error;
}

impl IntoLuaErr for String {
    fn into_lua_err(self) -> mlua::Error {
        mlua::Error::runtime(self)
    }
}

impl IntoLuaErr for &str {
    fn into_lua_err(self) -> mlua::Error {
        mlua::Error::runtime(self)
    }
}

impl IntoLuaErr for &String {
    fn into_lua_err(self) -> mlua::Error {
        mlua::Error::runtime(self.as_str())
    }
}

impl IntoLuaErr for HostError {
    fn into_lua_err(self) -> mlua::Error {
        self.into_lua()
    }
}

macro_rules! typed_into_lua_err {
    ($($t:ty),*) => {$(
        impl IntoLuaErr for $t {
            fn into_lua_err(self) -> mlua::Error {
                self.to_lua_err()
            }
        }
    )*};
}

typed_into_lua_err!(
    StorageError,
    FormatError,
    DbError,
    MysqlError,
    RedisError,
    RdbError,
    crate::http::HttpError
);

impl Classify for RdbError {
    fn kind(&self) -> Kind {
        match self {
            RdbError::Interrupted { .. } => Kind::Cancelled,
            RdbError::UnsupportedVersion { .. } => Kind::Unsupported,
            RdbError::Read { source, .. } | RdbError::Write { source, .. } => Kind::of_io(source),
            RdbError::NotRdb { .. }
            | RdbError::Data { .. }
            | RdbError::Checksum { .. }
            | RdbError::Payload { .. } => Kind::Data,
            RdbError::Entry { .. } => Kind::Invalid,
        }
    }
}

/// The kind of an error of another layer, boxed.
fn kind_of_dyn(e: &(dyn std::error::Error + 'static)) -> Kind {
    if let Some(h) = e.downcast_ref::<HostError>() {
        h.kind
    } else if let Some(s) = e.downcast_ref::<StorageError>() {
        s.kind()
    } else if let Some(f) = e.downcast_ref::<FormatError>() {
        f.kind()
    } else if let Some(d) = e.downcast_ref::<DbError>() {
        d.kind()
    } else if let Some(m) = e.downcast_ref::<MysqlError>() {
        m.kind()
    } else if let Some(r) = e.downcast_ref::<RedisError>() {
        r.kind()
    } else if let Some(r) = e.downcast_ref::<RdbError>() {
        r.kind()
    } else if let Some(p) = e.downcast_ref::<crate::db::postgres::PgError>() {
        p.kind()
    } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
        Kind::of_io(io)
    } else {
        Kind::Error
    }
}

/// Whether `text` starts with a script location (`scripts/x.lua:12:`), as messages of Lua
/// chunks and of located host errors do.
pub(crate) fn has_location(text: &str) -> bool {
    let Some((file, rest)) = text.split_once(".lua:") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    !file.is_empty()
        && !file.contains(char::is_whitespace)
        && digits > 0
        && rest[digits..].starts_with(':')
}

/// Splits `scripts/x.lua:12: text` into the location and the text.
fn split_location(text: &str) -> Option<(&str, &str)> {
    if !has_location(text) {
        return None;
    }
    let at = text.find(".lua:")? + ".lua:".len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    let (loc, rest) = text.split_at(at + digits);
    Some((loc, rest.strip_prefix(':')?.trim_start()))
}

/// The kind of an mlua error, and the host's own error when there is one (its message without
/// location, and its location when the host set one).
pub(crate) fn classify(err: &mlua::Error) -> (Kind, Option<HostError>) {
    match err {
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            classify(cause)
        }
        mlua::Error::ExternalError(e) => match e.downcast_ref::<HostError>() {
            Some(h) => (h.kind, Some(h.clone())),
            None => (kind_of_dyn(e.as_ref()), None),
        },
        mlua::Error::RuntimeError(text) if has_location(text) => (Kind::Error, None),
        mlua::Error::RuntimeError(_)
        | mlua::Error::BadArgument { .. }
        | mlua::Error::FromLuaConversionError { .. }
        | mlua::Error::ToLuaConversionError { .. }
        | mlua::Error::UserDataTypeMismatch
        | mlua::Error::UserDataDestructed
        | mlua::Error::UserDataBorrowError
        | mlua::Error::UserDataBorrowMutError => (Kind::Invalid, None),
        mlua::Error::MemoryError(_) => (Kind::TooLarge, None),
        _ => (Kind::Error, None),
    }
}

/// The value a script receives for an error: `kind`, `message`, `location`, `tostring`.
#[derive(Debug, Clone)]
pub(crate) struct LuaHostError {
    kind: Kind,
    message: String,
    location: Option<String>,
    status: Option<u16>,
}

impl LuaHostError {
    fn text(&self) -> String {
        match &self.location {
            Some(loc) => format!("{loc}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl UserData for LuaHostError {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("kind", |_, this| Ok(this.kind.as_str()));
        fields.add_field_method_get("message", |_, this| Ok(this.message.clone()));
        fields.add_field_method_get("location", |_, this| Ok(this.location.clone()));
        fields.add_field_method_get("status", |_, this| Ok(this.status));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.text()));
        // `"failed: " .. err` works as with a string error.
        methods.add_meta_function(MetaMethod::Concat, |_, (a, b): (Value, Value)| {
            Ok(format!("{}{}", a.to_string()?, b.to_string()?))
        });
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (Value, Value)| {
            Ok(a.to_string()? == b.to_string()?)
        });
    }
}

/// The error value a script receives for `v`, an error caught in Lua: an error of a host call
/// becomes a [`LuaHostError`]; anything else (a string, a table) stays as it is.
pub(crate) fn to_lua_value(lua: &Lua, v: Value) -> mlua::Result<Value> {
    let Value::Error(err) = v else {
        return Ok(v);
    };
    let (kind, host) = classify(&err);
    let status = host.as_ref().and_then(|h| h.status);
    let (message, traceback) = super::errors::split(&err);
    let from_traceback = || {
        traceback
            .as_deref()
            .and_then(super::errors::script_location)
    };
    let (message, location) = match host {
        // The host's own message; its location when it set one (empty: none at all), else the
        // script line the traceback names.
        Some(h) => match h.location {
            Some(l) if l.is_empty() => (h.message, None),
            Some(l) => (h.message, Some(l)),
            None => (h.message, from_traceback()),
        },
        // A Lua error inside a host call (a `map` function, a plugin function wrapped by a
        // schema) carries its location in the message: keep it once, as `location`.
        None => match split_location(&message) {
            Some((loc, rest)) => (rest.to_string(), Some(loc.to_string())),
            None => (message, from_traceback()),
        },
    };
    lua.create_userdata(LuaHostError {
        kind,
        message,
        location,
        status,
    })
    .map(Value::UserData)
}

/// Whether a Lua value is an error value made by [`to_lua_value`]; its text when it is.
pub(crate) fn error_text(v: &Value) -> Option<String> {
    match v {
        Value::UserData(ud) => ud.borrow::<LuaHostError>().ok().map(|e| e.text()),
        _ => None,
    }
}

/// The first frame of the Lua stack outside the plugins folder (the user's script), or the
/// innermost Lua frame when every frame is a plugin's: the line an error of a plugin's option
/// check should name.
pub(crate) fn caller_location(lua: &Lua, plugins_label: &str) -> Option<String> {
    let plugin_prefix = format!("@{plugins_label}/");
    let mut first_lua = None;
    for level in 0..200 {
        let Some(frame) = lua.inspect_stack(level, |d| {
            let src = d.source();
            let line = d.current_line();
            (src.source.map(|s| s.into_owned()), line)
        }) else {
            break;
        };
        let (Some(source), Some(line)) = frame else {
            continue;
        };
        let Some(file) = source.strip_prefix('@') else {
            continue;
        };
        let here = format!("{file}:{line}");
        if !source.starts_with(&plugin_prefix) {
            return Some(here);
        }
        if first_lua.is_none() {
            first_lua = Some(here);
        }
    }
    first_lua
}

/// The location (`scripts/x.lua:12`) of the `level`-th Lua frame of the stack, counting only
/// frames of script and plugin files (host functions and the sandbox's wrappers are skipped):
/// level 1 is the function that is running, 2 its caller, and so on.
fn lua_frame(lua: &Lua, level: usize) -> Option<String> {
    let mut seen = 0;
    for at in 0..200 {
        let frame = lua.inspect_stack(at, |d| {
            let src = d.source().source.map(|s| s.into_owned());
            (src, d.current_line())
        })?;
        if let (Some(source), Some(line)) = frame
            && let Some(file) = source.strip_prefix('@')
        {
            seen += 1;
            if seen == level {
                return Some(format!("{file}:{line}"));
            }
        }
    }
    None
}

/// Registers `ferry.error(kind, message [, level])`: raises an error value of a kind, located
/// like `error(message, level)` except that only frames of Lua files count (level 1, the
/// default, is the line calling `ferry.error`; 2 the line that called that function, even when
/// a plugin function checked by `schema:wrap` sits in between; 0 no location).
pub(crate) fn register(lua: &Lua, ferry: &mlua::Table) -> mlua::Result<()> {
    ferry.set(
        "error",
        lua.create_function(
            |lua, (kind, message, level): (String, String, Option<usize>)| {
                let kind = Kind::parse(&kind).ok_or_else(|| {
                    host_err(
                        Kind::Invalid,
                        format!(
                            "ferry.error(kind, message): unknown kind {kind:?}; the kinds are: {}",
                            Kind::ALL
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                let location = match level.unwrap_or(1) {
                    0 => Some(String::new()),
                    n => lua_frame(lua, n),
                };
                Err::<(), _>(HostError::new(kind, message).at(location).into_lua())
            },
        )?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_recognised() {
        assert!(has_location("scripts/x.lua:12: boom"));
        assert!(has_location("plugins/backup.lua:3: x"));
        assert!(!has_location("store s3://b: read \"x.lua\": not found"));
        assert!(!has_location("x.lua:: no line"));
    }

    #[test]
    fn locations_split_off() {
        assert_eq!(
            split_location("plugins/backup.lua:12: it broke: badly"),
            Some(("plugins/backup.lua:12", "it broke: badly"))
        );
        assert_eq!(split_location("no location here"), None);
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Kind::parse("nope"), None);
    }
}
