//! Redis RDB files (what `SAVE` and `BGSAVE` write): a streaming reader and a writer that never
//! decode values.
//!
//! In an RDB file each key's value is a type byte followed by the encoded value, and that is
//! exactly the body of a Redis `DUMP` payload. A payload is `type byte ‖ value bytes ‖ RDB
//! version (u16 LE) ‖ CRC-64 (u64 LE)`, the CRC (the "Jones" CRC-64 Redis uses) taken over
//! everything before it. So the reader walks each value only far enough to find where it ends,
//! keeps its bytes and appends the 10-byte footer: `RESTORE key ttl payload` on a Redis that
//! knows the version recreates the value exactly, whatever its type and encoding. The writer does
//! the reverse, from payloads to a file `redis-server` loads at startup.
//!
//! The layout follows `rdbLoadRioWithLoadingCtx` and `rdbLoadObject` in Redis 7.4's `rdb.c`:
//! RDB versions 1 to 12 (Redis 7.4 writes 12), every value type up to the hashes with field
//! expiry of 7.4 (types 24 and 25). The pre-release formats that only Redis release candidates
//! wrote (module type 6, hash types 22 and 23, function opcode 0xF6) are refused with a message
//! saying so, as is anything newer.
//!
//! Corrupt input gives an [`RdbError`] naming the input, the byte offset and, once read, the key;
//! it never panics, and no length read from the file is allocated before that many bytes have
//! actually been read, so a corrupt length ends in an end-of-file error rather than an
//! out-of-memory abort. The CRC is computed over the buffer in large chunks as it is consumed,
//! and the bytes of a value are copied out of the same buffer in chunks, so reading runs at
//! memory speed rather than byte by byte.
//!
//! [`RdbSource`] and [`RdbSink`] adapt the reader and the writer to the row model of
//! [`super::row`]: one row per key with its `DUMP` payload.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use crc::{CRC_64_REDIS, Crc, Digest, Table};

use super::error::{FormatError, Location};
use super::row::{RowSink, RowSource, Value};

/// The newest RDB version read and written here (Redis 7.4 writes version 12).
pub const MAX_VERSION: u16 = 12;

/// The length of the footer of a `DUMP` payload: the RDB version (2 bytes) and a CRC-64
/// (8 bytes).
pub const FOOTER_LEN: usize = 10;

/// The columns of an [`RdbSource`], in row order.
pub const COLUMNS: [&str; 6] = ["db", "key", "type", "ttl", "expire_at", "payload"];

/// The version of an RDB file written with no entry, which has no payload to take it from:
/// Redis 7.0's, the oldest of the versions current Redis releases write.
const EMPTY_FILE_VERSION: u16 = 10;

/// The CRC-64 of RDB files and `DUMP` payloads, with 16 lookup tables (slice-by-16).
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Opcodes: the bytes above the value types that introduce something other than a key.
mod op {
    pub const SLOT_INFO: u8 = 0xF4;
    pub const FUNCTION2: u8 = 0xF5;
    pub const FUNCTION_PRE_GA: u8 = 0xF6;
    pub const MODULE_AUX: u8 = 0xF7;
    pub const IDLE: u8 = 0xF8;
    pub const FREQ: u8 = 0xF9;
    pub const AUX: u8 = 0xFA;
    pub const RESIZEDB: u8 = 0xFB;
    pub const EXPIRETIME_MS: u8 = 0xFC;
    pub const EXPIRETIME: u8 = 0xFD;
    pub const SELECTDB: u8 = 0xFE;
    pub const EOF: u8 = 0xFF;
}

/// The opcodes of the self-describing stream that module values and module AUX data use.
mod module_op {
    pub const EOF: u64 = 0;
    pub const SINT: u64 = 1;
    pub const UINT: u64 = 2;
    pub const FLOAT: u64 = 3;
    pub const DOUBLE: u64 = 4;
    pub const STRING: u64 = 5;
}

/// The name of the Redis type of a value type byte (`"string"`, `"list"`, `"set"`, `"zset"`,
/// `"hash"`, `"stream"`, `"module"`), or `None` for a byte that is no value type of RDB versions
/// up to [`MAX_VERSION`].
pub fn type_name(type_byte: u8) -> Option<&'static str> {
    Some(match type_byte {
        0 => "string",
        1 | 10 | 14 | 18 => "list",
        2 | 11 | 20 => "set",
        3 | 5 | 12 | 17 => "zset",
        4 | 9 | 13 | 16 | 22..=25 => "hash",
        15 | 19 | 21 => "stream",
        6 | 7 => "module",
        _ => return None,
    })
}

/// Whether the reader can walk a value of this type (and so whether the writer accepts it).
fn readable_type(type_byte: u8) -> bool {
    type_name(type_byte).is_some() && !matches!(type_byte, 6 | 22 | 23)
}

/// What an end of file interrupted, for messages.
fn value_context(type_byte: u8) -> &'static str {
    match type_name(type_byte) {
        Some("string") => "inside a string value",
        Some("list") => "inside a list value",
        Some("set") => "inside a set value",
        Some("zset") => "inside a zset value",
        Some("hash") => "inside a hash value",
        Some("stream") => "inside a stream value",
        _ => "inside a module value",
    }
}

/// The oldest RDB version that has value type `type_byte`: a payload of a newer version can be
/// given to an older Redis with its footer re-stamped, as long as that Redis knows the type.
pub fn min_version(type_byte: u8) -> u16 {
    match type_byte {
        0..=4 => 1,
        9 => 2,
        10..=13 => 4,
        5..=7 => 8,
        14 => 7,
        15 => 9,
        16..=19 => 10,
        20 | 21 => 11,
        _ => 12,
    }
}

/// The RDB version a Redis server of `redis_version` (`7.0.15`, from `INFO server`) writes and
/// accepts; `None` when the text is not a version.
pub fn rdb_version_of_redis(redis_version: &str) -> Option<u16> {
    let mut parts = redis_version.trim().split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next().unwrap_or("0").parse().ok()?;
    Some(match (major, minor) {
        (0..=2, _) => 6,
        (3, 0..=1) => 6,
        (3, _) => 7,
        (4, _) => 8,
        (5..=6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        _ => 12,
    })
}

/// `payload` with its footer re-stamped for RDB version `version` (the body unchanged).
pub fn restamp_payload(payload: &[u8], version: u16) -> Option<Vec<u8>> {
    let body = payload.get(..payload.len().checked_sub(FOOTER_LEN)?)?;
    let mut out = Vec::with_capacity(payload.len());
    out.extend_from_slice(body);
    out.extend_from_slice(&dump_footer(body, version));
    Some(out)
}

/// The 10-byte footer that makes `body` (a type byte and an encoded value) a `DUMP` payload of
/// RDB version `version`: the version as u16 LE, then the CRC-64 of `body` and the version as
/// u64 LE.
pub fn dump_footer(body: &[u8], version: u16) -> [u8; FOOTER_LEN] {
    let ver = version.to_le_bytes();
    let mut digest = CRC64.digest();
    digest.update(body);
    digest.update(&ver);
    let crc = digest.finalize().to_le_bytes();
    let mut footer = [0; FOOTER_LEN];
    footer[..2].copy_from_slice(&ver);
    footer[2..].copy_from_slice(&crc);
    footer
}

/// Checks a `DUMP` payload (at least 11 bytes, a CRC-64 matching its content) and returns the
/// RDB version in its footer. The version itself is not checked against [`MAX_VERSION`].
pub fn verify_payload(payload: &[u8]) -> Result<u16, RdbError> {
    let n = payload.len();
    if n < FOOTER_LEN + 1 {
        return Err(RdbError::Payload {
            message: format!(
                "{n} bytes; a payload has at least 11 (a type byte, a value, a 2-byte version and an 8-byte checksum)"
            ),
        });
    }
    let mut stored = [0; 8];
    stored.copy_from_slice(&payload[n - 8..]);
    let stored = u64::from_le_bytes(stored);
    let computed = CRC64.checksum(&payload[..n - 8]);
    if stored != computed {
        return Err(RdbError::Payload {
            message: format!(
                "checksum mismatch: the payload says {stored:#018x}, its content gives {computed:#018x}"
            ),
        });
    }
    Ok(u16::from_le_bytes([payload[n - 10], payload[n - 9]]))
}

/// The value of a string `DUMP` payload (type 0), decoded into `out` (integers as decimal text,
/// LZF decompressed). `None` when the payload is not a string or not well formed; the caller
/// checks the checksum first ([`verify_payload`]).
pub fn string_payload_value(payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    let body = payload.get(..payload.len().checked_sub(FOOTER_LEN)?)?;
    let (&kind, rest) = body.split_first()?;
    if kind != 0 {
        return None;
    }
    let &b = rest.first()?;
    if b >> 6 != 3 {
        let mut r = SliceLen(rest);
        let n = r.plain_len()?;
        let data = r.rest();
        return (u64::try_from(data.len()).ok()? == n).then(|| out.extend_from_slice(data));
    }
    let rest = &rest[1..];
    let int = match (b & 0x3F, rest.len()) {
        (0, 1) => i64::from(i8::from_le_bytes(rest.try_into().ok()?)),
        (1, 2) => i64::from(i16::from_le_bytes(rest.try_into().ok()?)),
        (2, 4) => i64::from(i32::from_le_bytes(rest.try_into().ok()?)),
        (3, _) => {
            // LZF: compressed length, declared length, data.
            let mut r = SliceLen(rest);
            let compressed = r.plain_len()?;
            let declared = r.plain_len()?;
            let data = r.rest();
            if u64::try_from(data.len()).ok()? != compressed {
                return None;
            }
            lzf_decompress(data, declared, out).ok()?;
            return (u64::try_from(out.len()).ok()? == declared).then_some(());
        }
        _ => return None,
    };
    out.extend_from_slice(itoa::Buffer::new().format(int).as_bytes());
    Some(())
}

/// A cursor over a byte slice reading RDB lengths (for [`string_payload_value`]).
struct SliceLen<'a>(&'a [u8]);

impl<'a> SliceLen<'a> {
    fn plain_len(&mut self) -> Option<u64> {
        let (&b, rest) = self.0.split_first()?;
        let (n, rest) = match b >> 6 {
            0 => (u64::from(b & 0x3F), rest),
            1 => {
                let (&b2, rest) = rest.split_first()?;
                ((u64::from(b & 0x3F) << 8) | u64::from(b2), rest)
            }
            2 if b == 0x80 => {
                let (n, rest) = rest.split_at_checked(4)?;
                (u64::from(u32::from_be_bytes(n.try_into().ok()?)), rest)
            }
            2 if b == 0x81 => {
                let (n, rest) = rest.split_at_checked(8)?;
                (u64::from_be_bytes(n.try_into().ok()?), rest)
            }
            _ => return None,
        };
        self.0 = rest;
        Some(n)
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// A key for messages: quoted and escaped, cut after 64 characters.
fn quote_key(key: &[u8]) -> String {
    const MAX: usize = 64;
    match std::str::from_utf8(key) {
        Ok(s) => {
            let cut: String = s.chars().take(MAX).collect();
            let more = if cut.len() < s.len() { "…" } else { "" };
            format!("{cut:?}{more}")
        }
        Err(_) => {
            let mut out = String::from("\"");
            for &b in key.iter().take(MAX) {
                if b == b'\'' {
                    out.push('\'');
                } else {
                    out.extend(std::ascii::escape_default(b).map(char::from));
                }
            }
            out.push('"');
            if key.len() > MAX {
                out.push('…');
            }
            out
        }
    }
}

fn key_note(key: Option<&[u8]>) -> String {
    key.map(|k| format!(" (key {})", quote_key(k)))
        .unwrap_or_default()
}

/// An error reading or writing an RDB file or checking a `DUMP` payload.
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    /// The run is being stopped (see [`check_interruptible`]).
    #[error("{name}: interrupted: the run is being stopped")]
    Interrupted {
        /// The input's name.
        name: String,
    },
    /// The input does not start with `REDIS` and four digits.
    #[error("{name}: not an RDB file (expected \"REDIS\" and a version at the start)")]
    NotRdb {
        /// The input's name.
        name: String,
    },
    /// The file's RDB version is outside 1 to [`MAX_VERSION`].
    #[error(
        "{name}: RDB version {version} is not supported (versions 1 to {MAX_VERSION} are, as written by Redis up to 7.4)"
    )]
    UnsupportedVersion {
        /// The input's name.
        name: String,
        /// The version in the header.
        version: u16,
    },
    /// The content is malformed, truncated or of a kind not supported.
    #[error("{name}: byte {offset}{}: {message}", key_note(key.as_deref()))]
    Data {
        /// The input's name.
        name: String,
        /// Byte offset in the input where the problem was found.
        offset: u64,
        /// The key of the entry being read, once read.
        key: Option<Vec<u8>>,
        /// What is wrong.
        message: String,
    },
    /// The checksum at the end of the file does not match its content.
    #[error(
        "{name}: checksum mismatch: file says {stored:#018x}, content gives {computed:#018x} (the file is corrupt or truncated)"
    )]
    Checksum {
        /// The input's name.
        name: String,
        /// The checksum stored in the file.
        stored: u64,
        /// The CRC-64 of the bytes before it.
        computed: u64,
    },
    /// Reading the input failed.
    #[error("{name}: read error at byte {offset}: {source}")]
    Read {
        /// The input's name.
        name: String,
        /// Bytes read before the failure.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("{name}: write error: {source}")]
    Write {
        /// The output's name.
        name: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `DUMP` payload is malformed (from [`verify_payload`]).
    #[error("invalid DUMP payload: {message}")]
    Payload {
        /// What is wrong.
        message: String,
    },
    /// An entry given to the writer cannot be written.
    #[error("{name}: key {}: {message}", quote_key(key))]
    Entry {
        /// The output's name.
        name: String,
        /// The entry's key.
        key: Vec<u8>,
        /// What is wrong.
        message: String,
    },
}

impl RdbError {
    /// The name of the input or output the error is about, if it has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            RdbError::NotRdb { name }
            | RdbError::Interrupted { name }
            | RdbError::UnsupportedVersion { name, .. }
            | RdbError::Data { name, .. }
            | RdbError::Checksum { name, .. }
            | RdbError::Read { name, .. }
            | RdbError::Write { name, .. }
            | RdbError::Entry { name, .. } => Some(name),
            RdbError::Payload { .. } => None,
        }
    }
}

/// Reader errors become [`FormatError::Data`] at the file (the byte offset stays in the
/// message), I/O errors [`FormatError::Io`] (the offset goes into the error's text).
impl From<RdbError> for FormatError {
    fn from(e: RdbError) -> Self {
        match e {
            RdbError::Read {
                name,
                offset,
                source,
            } => FormatError::io(
                &name,
                io::Error::new(source.kind(), format!("at byte {offset}: {source}")),
            ),
            RdbError::Write { name, source } => FormatError::io(&name, source),
            RdbError::Payload { .. } => FormatError::other(e),
            other => {
                let name = other.name().unwrap_or_default().to_owned();
                let full = other.to_string();
                let message = full
                    .strip_prefix(&format!("{name}: "))
                    .map_or_else(|| full.clone(), str::to_owned);
                FormatError::data(Location::file(name), message)
            }
        }
    }
}

/// One key of an RDB file with its value as a `DUMP` payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdbEntry {
    /// The database number.
    pub db: u64,
    /// The key, decoded (integer-encoded keys as decimal text, compressed ones decompressed).
    pub key: Vec<u8>,
    /// The RDB value type (the payload's first byte); [`type_name`] names it.
    pub type_byte: u8,
    /// The expiry as unix time in milliseconds, if the key has one.
    pub expire_at_ms: Option<i64>,
    /// The `DUMP` payload: type byte, value, and the footer with the file's RDB version.
    pub payload: Vec<u8>,
}

/// What became of the checksum at the end of an RDB file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// The end of the file has not been read yet.
    #[default]
    Pending,
    /// The stored checksum matches the content.
    Verified,
    /// The stored checksum is 0: the file was written with `rdbchecksum no`.
    Disabled,
    /// The file's version (below 5) has no checksum.
    Absent,
}

/// Counts and metadata of an RDB file, as far as it has been read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdbSummary {
    /// The RDB version in the header.
    pub version: u16,
    /// Keys read, in every database (including those a database filter left out).
    pub keys: u64,
    /// Keys read that have an expiry.
    pub expires: u64,
    /// Keys read per database.
    pub dbs: BTreeMap<u64, u64>,
    /// Keys read per RDB value type byte (which tells the encodings a target must know).
    pub types: BTreeMap<u8, u64>,
    /// The AUX fields (`redis-ver`, `ctime`, ...), as lossy UTF-8.
    pub aux: Vec<(String, String)>,
    /// Function libraries (Redis 7 functions) skipped.
    pub functions: u64,
    /// Bytes read.
    pub bytes: u64,
    /// What became of the checksum.
    pub checksum: Checksum,
}

/// Why reading stopped, before it is given the input's name and key.
enum Fault {
    /// The input ended inside something.
    Eof,
    /// Reading the input failed.
    Io(io::Error),
    /// The content is malformed or not supported.
    Bad { at: u64, message: String },
    /// The checksum does not match.
    Checksum { stored: u64, computed: u64 },
}

/// Unix time in milliseconds (what `ttl` and `expire_at` are measured against).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

mod input;
mod reader;
mod rows;
#[cfg(test)]
mod tests;
mod writer;

use input::lzf_decompress;
pub use reader::{RdbReader, check, check_interruptible};
pub use rows::{CHECK_EVERY, Interrupt, KeyFilter, Progress, RdbSink, RdbSource};
pub use writer::RdbWriter;
