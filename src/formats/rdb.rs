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

type Res<T> = Result<T, Fault>;

fn bad<T>(at: u64, message: impl Into<String>) -> Res<T> {
    Err(Fault::Bad {
        at,
        message: message.into(),
    })
}

/// A length or, with the top two bits set, a special string encoding.
enum Len {
    Plain(u64),
    Encoded(u8),
}

const READ_BUF: usize = 256 * 1024;

/// A buffered input that keeps the CRC of everything consumed and can copy out a consumed
/// range (a value) as it goes. Consumed bytes are folded into the CRC and the copy only when the
/// buffer is refilled or the result is asked for, so both work on large chunks.
struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Next byte to consume.
    pos: usize,
    /// End of the buffered bytes.
    end: usize,
    /// Offset in the input of `buf[0]`.
    base: u64,
    crc: Digest<'static, u64, Table<16>>,
    /// Consumed bytes from here on are not in `crc` yet.
    crc_from: usize,
    /// While capturing, consumed bytes from here on are not in `captured` yet.
    capture_from: Option<usize>,
    captured: Vec<u8>,
    /// Compressed bytes of an LZF string being decoded.
    scratch: Vec<u8>,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: 0,
            crc: CRC64.digest(),
            crc_from: 0,
            capture_from: None,
            captured: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Offset in the input of the next byte.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Offset of the end of what has been read from the input so far.
    fn seen(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Folds the consumed bytes into the CRC and the capture, drops them, and reads until at
    /// least `want` (at most the buffer's size) bytes are buffered or the input ends. Returns
    /// the number of bytes buffered.
    #[cold]
    fn fill(&mut self, want: usize) -> Res<usize> {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        if let Some(from) = self.capture_from {
            self.captured.extend_from_slice(&self.buf[from..self.pos]);
            self.capture_from = Some(0);
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.base += self.pos as u64;
        self.end -= self.pos;
        self.pos = 0;
        self.crc_from = 0;
        while self.end < want {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        }
        Ok(self.end)
    }

    #[inline]
    fn byte(&mut self) -> Res<u8> {
        if self.pos == self.end && self.fill(1)? == 0 {
            return Err(Fault::Eof);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        if self.end - self.pos < N && self.fill(N)? < N {
            return Err(Fault::Eof);
        }
        let mut a = [0; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    /// Consumes `n` bytes.
    fn skip(&mut self, mut n: u64) -> Res<()> {
        loop {
            let avail = (self.end - self.pos) as u64;
            if n <= avail {
                // `n` fits in the buffer, so in a usize.
                self.pos += n as usize;
                return Ok(());
            }
            n -= avail;
            self.pos = self.end;
            if self.fill(1)? == 0 {
                return Err(Fault::Eof);
            }
        }
    }

    /// Consumes `n` bytes, appending them to `out` as they arrive (never reserving `n`).
    fn copy_into(&mut self, mut n: u64, out: &mut Vec<u8>) -> Res<()> {
        loop {
            let take = n.min((self.end - self.pos) as u64) as usize;
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            if self.fill(1)? == 0 {
                return Err(Fault::Eof);
            }
        }
    }

    /// The CRC-64 of every byte consumed so far.
    fn crc_so_far(&mut self) -> u64 {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.crc_from = self.pos;
        self.crc.clone().finalize()
    }

    /// Starts appending consumed bytes to `into`.
    fn start_capture(&mut self, into: Vec<u8>) {
        self.captured = into;
        self.capture_from = Some(self.pos);
    }

    /// Stops capturing and returns the bytes captured.
    fn end_capture(&mut self) -> Vec<u8> {
        if let Some(from) = self.capture_from.take() {
            self.captured.extend_from_slice(&self.buf[from..self.pos]);
        }
        std::mem::take(&mut self.captured)
    }

    fn len_or_encoding(&mut self) -> Res<Len> {
        let at = self.offset();
        let b = self.byte()?;
        Ok(match b >> 6 {
            0 => Len::Plain(u64::from(b & 0x3F)),
            1 => Len::Plain((u64::from(b & 0x3F) << 8) | u64::from(self.byte()?)),
            3 => Len::Encoded(b & 0x3F),
            _ => match b {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.array()?)),
                _ => return bad(at, format!("unknown length encoding 0x{b:02x}")),
            },
        })
    }

    fn length(&mut self) -> Res<u64> {
        let at = self.offset();
        match self.len_or_encoding()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(e) => bad(
                at,
                format!(
                    "expected a length, found the string encoding 0x{:02x}",
                    0xC0 | e
                ),
            ),
        }
    }

    fn lengths(&mut self, count: usize) -> Res<()> {
        for _ in 0..count {
            self.length()?;
        }
        Ok(())
    }

    fn skip_string(&mut self) -> Res<()> {
        let at = self.offset();
        match self.len_or_encoding()? {
            Len::Plain(n) => self.skip(n),
            Len::Encoded(0) => self.skip(1),
            Len::Encoded(1) => self.skip(2),
            Len::Encoded(2) => self.skip(4),
            Len::Encoded(3) => {
                let compressed = self.length()?;
                self.length()?;
                self.skip(compressed)
            }
            Len::Encoded(e) => bad(at, format!("unknown string encoding 0x{:02x}", 0xC0 | e)),
        }
    }

    /// Reads a string into `out`, decoded: integers as decimal text, LZF decompressed.
    fn read_string(&mut self, out: &mut Vec<u8>) -> Res<()> {
        out.clear();
        let at = self.offset();
        let int = match self.len_or_encoding()? {
            Len::Plain(n) => return self.copy_into(n, out),
            Len::Encoded(0) => i64::from(i8::from_le_bytes(self.array()?)),
            Len::Encoded(1) => i64::from(i16::from_le_bytes(self.array()?)),
            Len::Encoded(2) => i64::from(i32::from_le_bytes(self.array()?)),
            Len::Encoded(3) => {
                let compressed = self.length()?;
                let declared = self.length()?;
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch.clear();
                let read = self.copy_into(compressed, &mut scratch);
                let decoded = read
                    .and_then(|()| lzf_decompress(&scratch, declared, out).or_else(|m| bad(at, m)));
                self.scratch = scratch;
                return decoded;
            }
            Len::Encoded(e) => {
                return bad(at, format!("unknown string encoding 0x{:02x}", 0xC0 | e));
            }
        };
        out.extend_from_slice(itoa::Buffer::new().format(int).as_bytes());
        Ok(())
    }

    /// Skips a double in the old text format (zset type 3): a length byte, where 253, 254 and
    /// 255 stand for NaN, +inf and -inf, then that many ASCII bytes.
    fn skip_text_double(&mut self) -> Res<()> {
        let n = self.byte()?;
        if n < 253 {
            self.skip(u64::from(n))?;
        }
        Ok(())
    }

    /// Skips a module's opcode stream up to and including its EOF opcode.
    fn skip_module_values(&mut self) -> Res<()> {
        loop {
            let at = self.offset();
            match self.length()? {
                module_op::EOF => return Ok(()),
                module_op::SINT | module_op::UINT => {
                    self.length()?;
                }
                module_op::FLOAT => self.skip(4)?,
                module_op::DOUBLE => self.skip(8)?,
                module_op::STRING => self.skip_string()?,
                other => return bad(at, format!("unknown module opcode {other}")),
            }
        }
    }

    /// Skips `count` strings.
    fn skip_strings(&mut self, count: u64) -> Res<()> {
        for _ in 0..count {
            self.skip_string()?;
        }
        Ok(())
    }

    /// Skips a value of type `t` (the type byte already consumed).
    fn skip_value(&mut self, t: u8) -> Res<()> {
        let at = self.offset();
        match t {
            // A string, or a ziplist, listpack, intset or zipmap held in one string.
            0 | 9..=13 | 16 | 17 | 20 => self.skip_string(),
            // Lists and sets of strings; quicklists (of ziplists).
            1 | 2 | 14 => {
                let n = self.length()?;
                self.skip_strings(n)
            }
            3 => {
                for _ in 0..self.length()? {
                    self.skip_string()?;
                    self.skip_text_double()?;
                }
                Ok(())
            }
            4 => {
                for _ in 0..self.length()? {
                    self.skip_strings(2)?;
                }
                Ok(())
            }
            5 => {
                for _ in 0..self.length()? {
                    self.skip_string()?;
                    self.skip(8)?;
                }
                Ok(())
            }
            7 => {
                self.length()?;
                self.skip_module_values()
            }
            15 | 19 | 21 => self.skip_stream(t),
            18 => {
                for _ in 0..self.length()? {
                    self.length()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            // A hash with field expiry: the smallest expiry, then (TTL, field, value) triples.
            24 => {
                self.skip(8)?;
                for _ in 0..self.length()? {
                    self.length()?;
                    self.skip_strings(2)?;
                }
                Ok(())
            }
            // A listpack hash with field expiry: the smallest expiry, then the listpack.
            25 => {
                self.skip(8)?;
                self.skip_string()
            }
            6 => bad(
                at,
                "module value in the pre-release format (type 6) is not supported",
            ),
            22 | 23 => bad(
                at,
                format!(
                    "hash with field expiry in the format of Redis 7.4 release candidates (type {t}) is not supported"
                ),
            ),
            _ => bad(
                at,
                format!("unsupported value type {t} (written by a newer Redis)"),
            ),
        }
    }

    /// Skips a stream (`RDB_TYPE_STREAM_LISTPACKS`, `_2` and `_3`).
    fn skip_stream(&mut self, t: u8) -> Res<()> {
        const STREAM_ID: u64 = 16;
        const MS_TIME: u64 = 8;
        let v2 = t >= 19;
        let v3 = t >= 21;
        // Nodes: the master ID and a listpack of entries.
        for _ in 0..self.length()? {
            self.skip_strings(2)?;
        }
        // Length and last ID; then first ID, max deleted ID and entries added.
        self.lengths(3)?;
        if v2 {
            self.lengths(5)?;
        }
        for _ in 0..self.length()? {
            // Group name, last ID, entries read.
            self.skip_string()?;
            self.lengths(if v2 { 3 } else { 2 })?;
            // The group's pending entries: ID, delivery time, delivery count.
            for _ in 0..self.length()? {
                self.skip(STREAM_ID + MS_TIME)?;
                self.length()?;
            }
            for _ in 0..self.length()? {
                // Consumer name, seen time, active time, then its pending IDs.
                self.skip_string()?;
                self.skip(if v3 { 2 * MS_TIME } else { MS_TIME })?;
                let pending = self.length()?;
                self.skip(pending.saturating_mul(STREAM_ID))?;
            }
        }
        Ok(())
    }
}

/// Decompresses LZF data (liblzf's format, as Redis writes it) appending to `out`, which must
/// come out exactly `declared` bytes long. Refuses back-references before the start of the
/// output, runs past the end of the input and output longer than declared.
fn lzf_decompress(input: &[u8], declared: u64, out: &mut Vec<u8>) -> Result<(), String> {
    // One input byte yields at most 264 / 3 output bytes, so a larger declared size is corrupt
    // anyway: reserve no more than the input can produce.
    let bound = input.len().saturating_mul(88);
    out.reserve(usize::try_from(declared).map_or(bound, |d| d.min(bound)));
    let start = out.len();
    let too_long = || format!("LZF data decompresses to more than the declared {declared} bytes");
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = input
                .get(i..i + ctrl + 1)
                .ok_or("LZF data ends inside a literal run")?;
            if (out.len() - start + run.len()) as u64 > declared {
                return Err(too_long());
            }
            out.extend_from_slice(run);
            i += run.len();
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(
                    *input
                        .get(i)
                        .ok_or("LZF data ends inside a back-reference")?,
                );
                i += 1;
            }
            len += 2;
            let low = usize::from(
                *input
                    .get(i)
                    .ok_or("LZF data ends inside a back-reference")?,
            );
            i += 1;
            let distance = ((ctrl & 0x1F) << 8) + low + 1;
            let produced = out.len() - start;
            if distance > produced {
                return Err("LZF back-reference points before the start of the data".into());
            }
            if (produced + len) as u64 > declared {
                return Err(too_long());
            }
            let from = out.len() - distance;
            if distance >= len {
                out.extend_from_within(from..from + len);
            } else {
                // Overlapping: the bytes being copied include bytes this copy writes.
                for k in from..from + len {
                    let b = out[k];
                    out.push(b);
                }
            }
        }
    }
    let produced = (out.len() - start) as u64;
    if produced != declared {
        return Err(format!(
            "LZF data decompresses to {produced} bytes, the file declares {declared}"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    Failed,
}

/// A streaming reader of an RDB file: one [`RdbEntry`] per key, values as `DUMP` payloads.
pub struct RdbReader<R: Read> {
    input: Input<R>,
    name: String,
    version: u16,
    db: u64,
    /// Keys of other databases are walked but not copied or returned.
    db_filter: Option<u64>,
    /// Whether payloads are kept (not when only checking a file).
    keep_payload: bool,
    /// What an end of file would interrupt, for messages.
    context: &'static str,
    /// Whether the entry's key has been read (and belongs in messages).
    key_known: bool,
    state: State,
    summary: RdbSummary,
    aux_key: Vec<u8>,
    aux_value: Vec<u8>,
}

impl<R: Read> RdbReader<R> {
    /// Opens an RDB file: reads and checks the header (`REDIS` and a version of 1 to
    /// [`MAX_VERSION`]). `name` names the input in messages.
    pub fn new(input: R, name: &str) -> Result<Self, RdbError> {
        let mut input = Input::new(input);
        let head: [u8; 9] = match input.array() {
            Ok(head) => head,
            Err(Fault::Io(source)) => {
                return Err(RdbError::Read {
                    name: name.to_owned(),
                    offset: 0,
                    source,
                });
            }
            Err(_) => {
                return Err(RdbError::NotRdb {
                    name: name.to_owned(),
                });
            }
        };
        if &head[..5] != b"REDIS" || !head[5..].iter().all(u8::is_ascii_digit) {
            return Err(RdbError::NotRdb {
                name: name.to_owned(),
            });
        }
        let version = head[5..]
            .iter()
            .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        if !(1..=MAX_VERSION).contains(&version) {
            return Err(RdbError::UnsupportedVersion {
                name: name.to_owned(),
                version,
            });
        }
        Ok(RdbReader {
            input,
            name: name.to_owned(),
            version,
            db: 0,
            db_filter: None,
            keep_payload: true,
            context: "",
            key_known: false,
            state: State::Reading,
            summary: RdbSummary {
                version,
                bytes: 9,
                ..RdbSummary::default()
            },
            aux_key: Vec::new(),
            aux_value: Vec::new(),
        })
    }

    /// The file's RDB version, which is also the version in every payload's footer.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Counts and metadata so far; complete once [`RdbReader::next_entry`] has returned false.
    pub fn summary(&self) -> &RdbSummary {
        &self.summary
    }

    /// Reads the next key into `entry`, reusing its buffers. Returns false at the end of the
    /// file, once the checksum has been verified and nothing follows it.
    pub fn next_entry(&mut self, entry: &mut RdbEntry) -> Result<bool, RdbError> {
        match self.state {
            State::Reading => {}
            State::Done => return Ok(false),
            State::Failed => {
                return Err(RdbError::Data {
                    name: self.name.clone(),
                    offset: self.input.offset(),
                    key: None,
                    message: "reading stopped at an earlier error".into(),
                });
            }
        }
        self.key_known = false;
        let result = self.advance(entry);
        self.summary.bytes = self.input.offset();
        match result {
            Ok(more) => {
                if !more {
                    self.state = State::Done;
                }
                Ok(more)
            }
            Err(fault) => {
                self.state = State::Failed;
                Err(self.error(fault, entry))
            }
        }
    }

    fn error(&self, fault: Fault, entry: &RdbEntry) -> RdbError {
        let name = self.name.clone();
        let key = self.key_known.then(|| entry.key.clone());
        match fault {
            Fault::Io(source) => RdbError::Read {
                name,
                offset: self.input.offset(),
                source,
            },
            Fault::Eof => {
                let offset = self.input.offset();
                let seen = self.input.seen();
                let mut message = format!("unexpected end of file {}", self.context);
                if seen != offset {
                    message.push_str(&format!(" (the file ends at byte {seen})"));
                }
                RdbError::Data {
                    name,
                    offset,
                    key,
                    message,
                }
            }
            Fault::Bad { at, message } => RdbError::Data {
                name,
                offset: at,
                key,
                message,
            },
            Fault::Checksum { stored, computed } => RdbError::Checksum {
                name,
                stored,
                computed,
            },
        }
    }

    /// Reads records up to the next key wanted (true) or the end of the file (false).
    fn advance(&mut self, entry: &mut RdbEntry) -> Res<bool> {
        let mut expire = None;
        loop {
            self.context = "before the end-of-file marker (the file is truncated)";
            let at = self.input.offset();
            match self.input.byte()? {
                op::EOF => {
                    self.finish_file()?;
                    return Ok(false);
                }
                op::SELECTDB => {
                    self.context = "inside a SELECTDB record";
                    self.db = self.input.length()?;
                }
                op::RESIZEDB => {
                    self.context = "inside a RESIZEDB record";
                    self.input.lengths(2)?;
                }
                op::EXPIRETIME_MS => {
                    // Little-endian (files of versions below 9 from big-endian machines are not).
                    self.context = "inside an expiry time";
                    expire = Some(i64::from_le_bytes(self.input.array()?));
                }
                op::EXPIRETIME => {
                    self.context = "inside an expiry time";
                    expire = Some(i64::from(i32::from_le_bytes(self.input.array()?)) * 1000);
                }
                op::AUX => {
                    self.context = "inside an AUX field";
                    self.input.read_string(&mut self.aux_key)?;
                    self.input.read_string(&mut self.aux_value)?;
                    self.summary.aux.push((
                        String::from_utf8_lossy(&self.aux_key).into_owned(),
                        String::from_utf8_lossy(&self.aux_value).into_owned(),
                    ));
                }
                op::IDLE => {
                    self.context = "inside an IDLE record";
                    self.input.length()?;
                }
                op::FREQ => {
                    self.context = "inside a FREQ record";
                    self.input.byte()?;
                }
                op::MODULE_AUX => {
                    self.context = "inside module data (MODULE_AUX)";
                    self.input.length()?;
                    let when_at = self.input.offset();
                    let when_opcode = self.input.length()?;
                    if when_opcode != module_op::UINT {
                        return bad(
                            when_at,
                            format!("bad `when` opcode {when_opcode} in module data (MODULE_AUX)"),
                        );
                    }
                    self.input.length()?;
                    self.input.skip_module_values()?;
                }
                op::FUNCTION2 => {
                    self.context = "inside a function library";
                    self.input.skip_string()?;
                    self.summary.functions += 1;
                }
                op::FUNCTION_PRE_GA => {
                    return bad(
                        at,
                        "functions in the format of Redis 7.0 release candidates (opcode 0xF6) are not supported",
                    );
                }
                op::SLOT_INFO => {
                    self.context = "inside a SLOT_INFO record";
                    self.input.lengths(3)?;
                }
                t if type_name(t).is_some() => {
                    if self.read_entry(t, expire, entry)? {
                        return Ok(true);
                    }
                    expire = None;
                }
                t => {
                    return bad(
                        at,
                        format!(
                            "unsupported value type {t} (written by a newer Redis, or the file is corrupt)"
                        ),
                    );
                }
            }
        }
    }

    /// Reads a key and its value of type `t`. Returns false for a key the database filter
    /// leaves out.
    fn read_entry(&mut self, t: u8, expire: Option<i64>, entry: &mut RdbEntry) -> Res<bool> {
        let wanted = self.db_filter.is_none_or(|db| db == self.db);
        self.context = "inside a key";
        self.input.read_string(&mut entry.key)?;
        self.key_known = true;
        self.context = value_context(t);
        let keep = wanted && self.keep_payload;
        entry.payload.clear();
        if keep {
            let mut payload = std::mem::take(&mut entry.payload);
            payload.push(t);
            self.input.start_capture(payload);
        }
        let skipped = self.input.skip_value(t);
        if keep {
            entry.payload = self.input.end_capture();
        }
        skipped?;
        self.summary.keys += 1;
        self.summary.expires += u64::from(expire.is_some());
        *self.summary.dbs.entry(self.db).or_default() += 1;
        *self.summary.types.entry(t).or_default() += 1;
        if !wanted {
            return Ok(false);
        }
        if keep {
            let footer = dump_footer(&entry.payload, self.version);
            entry.payload.extend_from_slice(&footer);
        }
        entry.db = self.db;
        entry.type_byte = t;
        entry.expire_at_ms = expire;
        Ok(true)
    }

    /// After the EOF opcode: verifies the checksum and that nothing follows it.
    fn finish_file(&mut self) -> Res<()> {
        self.summary.checksum = if self.version >= 5 {
            let computed = self.input.crc_so_far();
            self.context = "inside the checksum at the end of the file";
            let stored = u64::from_le_bytes(self.input.array()?);
            if stored == 0 {
                Checksum::Disabled
            } else if stored == computed {
                Checksum::Verified
            } else {
                return Err(Fault::Checksum { stored, computed });
            }
        } else {
            Checksum::Absent
        };
        let at = self.input.offset();
        match self.input.byte() {
            Err(Fault::Eof) => Ok(()),
            Err(other) => Err(other),
            Ok(_) => bad(
                at,
                "data after the end of the RDB file (after the end-of-file marker and checksum)",
            ),
        }
    }
}

/// Reads a whole RDB file, walking every value and verifying the checksum, without keeping
/// the entries; returns its summary.
pub fn check<R: Read>(input: R, name: &str) -> Result<RdbSummary, RdbError> {
    let mut reader = RdbReader::new(input, name)?;
    reader.keep_payload = false;
    let mut entry = RdbEntry::default();
    while reader.next_entry(&mut entry)? {}
    Ok(reader.summary)
}

const WRITE_BUF: usize = 256 * 1024;

/// A writer of RDB files from `DUMP` payloads.
///
/// The header is written with the first entry, with that payload's RDB version; payloads of
/// that version or older may follow. The records written are those of that version: AUX fields
/// (`ferry-ver`, `ctime`) from version 7, millisecond expiry times from version 3 (seconds
/// before), the checksum from version 5. The file is complete only once [`RdbWriter::finish`]
/// has written its end: a writer dropped before leaves a file without it, which readers reject
/// as truncated.
pub struct RdbWriter<W: Write> {
    out: W,
    name: String,
    buf: Vec<u8>,
    crc: Digest<'static, u64, Table<16>>,
    /// The file's version, once the header is written.
    version: Option<u16>,
    /// The database of the last SELECTDB written.
    db: Option<u64>,
    entries: u64,
}

impl<W: Write> RdbWriter<W> {
    /// A writer on `out`, named `name` in messages. Nothing is written before the first entry
    /// (or [`RdbWriter::finish`]).
    pub fn new(out: W, name: &str) -> Self {
        RdbWriter {
            out,
            name: name.to_owned(),
            buf: Vec::with_capacity(WRITE_BUF),
            crc: CRC64.digest(),
            version: None,
            db: None,
            entries: 0,
        }
    }

    /// The file's RDB version, once the first entry (or `finish`) has set it.
    pub fn version(&self) -> Option<u16> {
        self.version
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    fn write_error(&self, source: io::Error) -> RdbError {
        RdbError::Write {
            name: self.name.clone(),
            source,
        }
    }

    /// Passes the buffer through the CRC to the output.
    fn flush_buf(&mut self) -> Result<(), RdbError> {
        self.crc.update(&self.buf);
        let written = self.out.write_all(&self.buf);
        self.buf.clear();
        written.map_err(|e| self.write_error(e))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), RdbError> {
        if self.buf.len() + bytes.len() > WRITE_BUF {
            self.flush_buf()?;
        }
        if bytes.len() >= WRITE_BUF {
            self.crc.update(bytes);
            self.out.write_all(bytes).map_err(|e| self.write_error(e))
        } else {
            self.buf.extend_from_slice(bytes);
            Ok(())
        }
    }

    fn put_len(&mut self, n: u64) -> Result<(), RdbError> {
        let mut b = [0u8; 9];
        let used = encode_len(n, &mut b);
        self.put(&b[..used])
    }

    fn put_string(&mut self, s: &[u8]) -> Result<(), RdbError> {
        self.put_len(s.len() as u64)?;
        self.put(s)
    }

    fn write_header(&mut self, version: u16) -> Result<(), RdbError> {
        self.version = Some(version);
        self.put(format!("REDIS{version:04}").as_bytes())?;
        if version >= 7 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.put(&[op::AUX])?;
            self.put_string(b"ferry-ver")?;
            self.put_string(env!("CARGO_PKG_VERSION").as_bytes())?;
            self.put(&[op::AUX])?;
            self.put_string(b"ctime")?;
            self.put_string(itoa::Buffer::new().format(now).as_bytes())?;
        }
        Ok(())
    }

    /// Writes one key: its database, key, expiry (unix ms) and value as a `DUMP` payload. The
    /// payload's checksum is verified, and its RDB version must not be newer than the file's
    /// (the first entry's). Entries are best grouped by database: each change of database
    /// writes a SELECTDB record.
    pub fn write_entry(
        &mut self,
        db: u64,
        key: &[u8],
        expire_at_ms: Option<i64>,
        payload: &[u8],
    ) -> Result<(), RdbError> {
        let entry_error = |message: String| RdbError::Entry {
            name: self.name.clone(),
            key: key.to_vec(),
            message,
        };
        let version = verify_payload(payload).map_err(|e| entry_error(e.to_string()))?;
        if !(1..=MAX_VERSION).contains(&version) {
            return Err(entry_error(format!(
                "the payload is of RDB version {version}; versions 1 to {MAX_VERSION} can be written"
            )));
        }
        if !readable_type(payload[0]) {
            return Err(entry_error(format!(
                "the payload's value type {} is not supported",
                payload[0]
            )));
        }
        if let Some(file_version) = self.version
            && version > file_version
        {
            return Err(entry_error(format!(
                "the payload is of RDB version {version}, newer than the file's version {file_version} (the first entry's); write the newest payloads first"
            )));
        }
        // The expiry record of the file's version, prepared before anything is written.
        let file_version = self.version.unwrap_or(version);
        let mut expiry = [0u8; 9];
        let expiry_len = match expire_at_ms {
            None => 0,
            Some(at) if file_version >= 3 => {
                expiry[0] = op::EXPIRETIME_MS;
                expiry[1..9].copy_from_slice(&at.to_le_bytes());
                9
            }
            Some(at) => {
                // Whole seconds, rounded up so the key does not expire early.
                let secs = at.div_euclid(1000) + i64::from(at.rem_euclid(1000) != 0);
                let secs = i32::try_from(secs).map_err(|_| {
                    entry_error(format!(
                        "the expiry {at} ms does not fit the seconds field of an RDB version {file_version} file"
                    ))
                })?;
                expiry[0] = op::EXPIRETIME;
                expiry[1..5].copy_from_slice(&secs.to_le_bytes());
                5
            }
        };
        if self.version.is_none() {
            self.write_header(version)?;
        }
        if self.db != Some(db) {
            self.put(&[op::SELECTDB])?;
            self.put_len(db)?;
            self.db = Some(db);
        }
        self.put(&expiry[..expiry_len])?;
        self.put(&payload[..1])?;
        self.put_string(key)?;
        self.put(&payload[1..payload.len() - FOOTER_LEN])?;
        self.entries += 1;
        Ok(())
    }

    /// Writes the end-of-file marker and the checksum, flushes, and returns the output. A file
    /// with no entry gets a header of version 10 first.
    pub fn finish(mut self) -> Result<W, RdbError> {
        let version = match self.version {
            Some(v) => v,
            None => {
                self.write_header(EMPTY_FILE_VERSION)?;
                EMPTY_FILE_VERSION
            }
        };
        self.put(&[op::EOF])?;
        if version >= 5 {
            self.flush_buf()?;
            let crc = self.crc.clone().finalize();
            self.put(&crc.to_le_bytes())?;
        }
        self.flush_buf()?;
        self.out.flush().map_err(|e| self.write_error(e))?;
        Ok(self.out)
    }
}

/// Encodes a length as Redis does (`rdbSaveLen`); returns the bytes used.
fn encode_len(n: u64, out: &mut [u8; 9]) -> usize {
    if n < 1 << 6 {
        out[0] = n as u8;
        1
    } else if n < 1 << 14 {
        out[0] = 0x40 | (n >> 8) as u8;
        out[1] = n as u8;
        2
    } else if let Ok(n) = u32::try_from(n) {
        out[0] = 0x80;
        out[1..5].copy_from_slice(&n.to_be_bytes());
        5
    } else {
        out[0] = 0x81;
        out[1..9].copy_from_slice(&n.to_be_bytes());
        9
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An RDB file as rows: columns [`COLUMNS`] (`db`, `key`, `type`, `ttl`, `expire_at`,
/// `payload`), one row per key.
///
/// `db` is an integer; `key` text when valid UTF-8, bytes otherwise; `type` the Redis type
/// ([`type_name`]); `ttl` the milliseconds left when the row is read (0 or less for a key
/// already expired) and `expire_at` the expiry in unix milliseconds, both null for a key
/// without expiry; `payload` the `DUMP` payload as bytes.
pub struct RdbSource<R: Read> {
    reader: RdbReader<R>,
    entry: RdbEntry,
    columns: Vec<String>,
    rows: u64,
    interrupt: Option<Interrupt>,
    progress: Option<Progress>,
}

/// Asked every [`CHECK_EVERY`] rows; `true` stops a transfer (the run is being stopped).
pub type Interrupt = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// Told the number of keys handled so far, every [`CHECK_EVERY`] rows and at the end.
pub type Progress = Box<dyn FnMut(u64)>;

/// How often (in rows) a source asks its [`Interrupt`] and reports [`Progress`].
pub const CHECK_EVERY: u64 = 1024;

impl<R: Read> RdbSource<R> {
    /// Opens an RDB file as rows, keeping only the keys of database `db_filter` if given.
    pub fn new(input: R, name: &str, db_filter: Option<u64>) -> Result<Self, FormatError> {
        let mut reader = RdbReader::new(input, name)?;
        reader.db_filter = db_filter;
        Ok(RdbSource {
            reader,
            entry: RdbEntry::default(),
            columns: COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
            rows: 0,
            interrupt: None,
            progress: None,
        })
    }

    /// Stops with an error once `interrupt` returns true (asked every [`CHECK_EVERY`] rows).
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// Reports the rows read so far to `progress`, when given.
    pub fn with_progress(mut self, progress: Option<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Counts and metadata so far; complete at the end of the rows.
    pub fn summary(&self) -> &RdbSummary {
        self.reader.summary()
    }

    /// The file's RDB version.
    pub fn version(&self) -> u16 {
        self.reader.version()
    }
}

impl<R: Read> RowSource for RdbSource<R> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        if self.rows.is_multiple_of(CHECK_EVERY) {
            if self.interrupt.as_ref().is_some_and(|f| f()) {
                return Err(FormatError::data(
                    Location::file(&self.reader.name),
                    "interrupted: the run is being stopped",
                ));
            }
            if self.rows > 0
                && let Some(p) = self.progress.as_mut()
            {
                p(self.rows);
            }
        }
        if !self.reader.next_entry(&mut self.entry)? {
            if let Some(p) = self.progress.as_mut() {
                p(self.rows);
            }
            return Ok(false);
        }
        self.rows += 1;
        let e = &mut self.entry;
        row.resize(COLUMNS.len(), Value::Null);
        let db = i64::try_from(e.db).map_err(|_| {
            FormatError::data(
                Location::file(&self.reader.name),
                format!("database number {} is out of range", e.db),
            )
        })?;
        row[0] = Value::Int(db);
        match std::str::from_utf8(&e.key) {
            Ok(text) => row[1].set_text(text),
            Err(_) => row[1].set_bytes(&e.key),
        }
        row[2].set_text(type_name(e.type_byte).unwrap_or("unknown"));
        match e.expire_at_ms {
            Some(at) => {
                row[3] = Value::Int(at.saturating_sub(now_ms()));
                row[4] = Value::Int(at);
            }
            None => {
                row[3] = Value::Null;
                row[4] = Value::Null;
            }
        }
        // Hand the payload over without copying; the entry takes the row's old buffer.
        match &mut row[5] {
            Value::Bytes(b) => std::mem::swap(b, &mut e.payload),
            other => *other = Value::Bytes(std::mem::take(&mut e.payload)),
        }
        Ok(true)
    }

    fn name(&self) -> &str {
        &self.reader.name
    }
}

/// Where [`RdbSink`] finds its fields.
struct SinkColumns {
    key: usize,
    payload: usize,
    db: Option<usize>,
    expire_at: Option<usize>,
    ttl: Option<usize>,
}

/// Rows to an RDB file through an [`RdbWriter`].
///
/// Columns `key` and `payload` (text or bytes; the payload a `DUMP` payload) are required;
/// `db` (integer ≥ 0, default 0), `expire_at` (unix ms) and `ttl` (ms from now, used when
/// `expire_at` is absent or null) are optional, and other columns are ignored. `finish` writes
/// the end of the file and flushes; [`RdbSink::into_inner`] then gives the output back.
pub struct RdbSink<W: Write> {
    writer: Option<RdbWriter<W>>,
    done: Option<W>,
    name: String,
    columns: Option<SinkColumns>,
    names: Vec<String>,
    rows: u64,
}

impl<W: Write> RdbSink<W> {
    /// A sink writing an RDB file to `out`, named `name` in messages.
    pub fn new(out: W, name: &str) -> Self {
        RdbSink {
            writer: Some(RdbWriter::new(out, name)),
            done: None,
            name: name.to_owned(),
            columns: None,
            names: Vec::new(),
            rows: 0,
        }
    }

    /// The output, once `finish` has completed it.
    pub fn into_inner(self) -> Option<W> {
        self.done
    }

    fn field_error(&self, index: usize, message: String) -> FormatError {
        FormatError::data(
            Location::file(&self.name).at_field(index, self.names.get(index).map(String::as_str)),
            format!("row {}: {message}", self.rows),
        )
    }

    fn bytes_at<'r>(&self, row: &'r [Value], index: usize) -> Result<&'r [u8], FormatError> {
        match row.get(index) {
            Some(Value::Text(s)) => Ok(s.as_bytes()),
            Some(Value::Bytes(b)) => Ok(b),
            other => Err(self.field_error(
                index,
                format!(
                    "expected text or bytes, found {}",
                    other.map_or("nothing", Value::type_name)
                ),
            )),
        }
    }

    /// An optional integer field: `None` when the column is absent or the value null.
    fn int_at(&self, row: &[Value], index: Option<usize>) -> Result<Option<i64>, FormatError> {
        let Some(index) = index else {
            return Ok(None);
        };
        match row.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(other) => Err(self.field_error(
                index,
                format!("expected an integer, found {}", other.type_name()),
            )),
        }
    }
}

impl<W: Write> RowSink for RdbSink<W> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        let find = |name: &str| columns.iter().position(|c| c == name);
        let required = |name: &str| {
            find(name).ok_or_else(|| {
                FormatError::data(
                    Location::file(&self.name),
                    format!(
                        "an RDB output needs a `{name}` column (it takes `key`, `payload` with DUMP payloads, and optionally `db`, `expire_at` or `ttl`); the columns are: {}",
                        columns.join(", ")
                    ),
                )
            })
        };
        self.columns = Some(SinkColumns {
            key: required("key")?,
            payload: required("payload")?,
            db: find("db"),
            expire_at: find("expire_at"),
            ttl: find("ttl"),
        });
        self.names = columns.to_vec();
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        self.rows += 1;
        let Some(cols) = &self.columns else {
            return Err(FormatError::data(
                Location::file(&self.name),
                "a row was written before the columns (begin)",
            ));
        };
        let key = self.bytes_at(row, cols.key)?;
        let payload = self.bytes_at(row, cols.payload)?;
        let db = match self.int_at(row, cols.db)? {
            None => 0,
            Some(n) => u64::try_from(n).map_err(|_| {
                self.field_error(
                    cols.db.unwrap_or_default(),
                    format!("database number {n} is negative"),
                )
            })?,
        };
        let expire_at = match self.int_at(row, cols.expire_at)? {
            Some(at) => Some(at),
            None => self
                .int_at(row, cols.ttl)?
                .map(|ttl| now_ms().saturating_add(ttl)),
        };
        let Some(writer) = self.writer.as_mut() else {
            return Err(FormatError::data(
                Location::file(&self.name),
                "a row was written after finish",
            ));
        };
        writer.write_entry(db, key, expire_at, payload)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if let Some(writer) = self.writer.take() {
            self.done = Some(writer.finish()?);
        }
        Ok(())
    }

    fn started(&self) -> bool {
        self.columns.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::row::MemorySink;

    const ALL_TYPES_74: &[u8] = include_bytes!("../../tests/fixtures/rdb/redis_7_4_all_types.rdb");
    const INTEGER_KEYS: &[u8] = include_bytes!("../../tests/fixtures/rdb/integer_keys.rdb");
    const LZF_KEY: &[u8] =
        include_bytes!("../../tests/fixtures/rdb/easily_compressible_string_key.rdb");

    /// A length as Redis encodes it.
    fn len(n: u64) -> Vec<u8> {
        let mut b = [0u8; 9];
        let used = encode_len(n, &mut b);
        b[..used].to_vec()
    }

    /// A plain (length-prefixed) string.
    fn s(bytes: &[u8]) -> Vec<u8> {
        let mut out = len(bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn payload_of(body: &[u8], version: u16) -> Vec<u8> {
        let mut p = body.to_vec();
        p.extend_from_slice(&dump_footer(body, version));
        p
    }

    /// A file: header, `records`, EOF and (version 5 and later) the checksum.
    fn file(version: u16, records: &[u8]) -> Vec<u8> {
        let mut f = format!("REDIS{version:04}").into_bytes();
        f.extend_from_slice(records);
        f.push(op::EOF);
        if version >= 5 {
            let crc = CRC64.checksum(&f);
            f.extend_from_slice(&crc.to_le_bytes());
        }
        f
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<RdbEntry>, RdbSummary), RdbError> {
        let mut reader = RdbReader::new(bytes, "t.rdb")?;
        let mut entries = Vec::new();
        let mut e = RdbEntry::default();
        while reader.next_entry(&mut e)? {
            entries.push(e.clone());
        }
        Ok((entries, reader.summary().clone()))
    }

    fn err_text(bytes: &[u8]) -> String {
        match read_all(bytes) {
            Ok((entries, _)) => panic!("expected an error, read {} entries", entries.len()),
            Err(e) => e.to_string(),
        }
    }

    /// One value body (type byte and encoded value) of every type the reader walks.
    fn bodies() -> Vec<(&'static str, Vec<u8>)> {
        let id16 = [7u8; 16];
        let stream = |t: u8| {
            let mut b = vec![t];
            b.extend(len(1));
            b.extend(s(&id16));
            b.extend(s(b"listpack bytes"));
            b.extend(cat(&[&len(3), &len(1_700_000_000_000), &len(1)]));
            if t >= 19 {
                b.extend(cat(&[
                    &len(1_700_000_000_000),
                    &len(0),
                    &len(0),
                    &len(0),
                    &len(3),
                ]));
            }
            b.extend(len(1)); // groups
            b.extend(s(b"group"));
            b.extend(cat(&[&len(1_700_000_000_000), &len(0)]));
            if t >= 19 {
                b.extend(len(1));
            }
            b.extend(len(1)); // pending entries of the group
            b.extend_from_slice(&id16);
            b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
            b.extend(len(1));
            b.extend(len(1)); // consumers
            b.extend(s(b"alice"));
            b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
            if t >= 21 {
                b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
            }
            b.extend(len(1));
            b.extend_from_slice(&id16);
            b
        };
        let lzf_value = [0xC3, 0x05, 0x0A, 0x00, b'a', 0xE0, 0x00, 0x00];
        vec![
            ("string", cat(&[&[0], &s(b"hello")])),
            ("int string", vec![0, 0xC1, 0x39, 0x30]),
            ("lzf string", cat(&[&[0], &lzf_value])),
            ("big string", cat(&[&[0], &s(&vec![b'x'; 100_000])])),
            ("list", cat(&[&[1], &len(2), &s(b"a"), &[0xC0, 7]])),
            ("set", cat(&[&[2], &len(1), &s(b"m")])),
            (
                "zset text scores",
                cat(&[
                    &[3],
                    &len(3),
                    &s(b"a"),
                    &[3],
                    b"1.5",
                    &s(b"b"),
                    &[253],
                    &s(b"c"),
                    &[255],
                ]),
            ),
            ("hash", cat(&[&[4], &len(1), &s(b"f"), &s(b"v")])),
            (
                "zset2",
                cat(&[&[5], &len(1), &s(b"m"), &1.5f64.to_le_bytes()]),
            ),
            (
                "module2",
                cat(&[
                    &[7],
                    &len(0x1234_5678_9abc_de00),
                    &len(1),
                    &len(42),
                    &len(2),
                    &len(7),
                    &len(3),
                    &1.5f32.to_le_bytes(),
                    &len(4),
                    &2.5f64.to_le_bytes(),
                    &len(5),
                    &s(b"module string"),
                    &len(0),
                ]),
            ),
            ("zipmap", cat(&[&[9], &s(b"zipmap")])),
            ("ziplist list", cat(&[&[10], &s(b"ziplist")])),
            ("intset", cat(&[&[11], &s(&[2, 0, 0, 0, 1, 0, 0, 0, 5, 0])])),
            ("zset ziplist", cat(&[&[12], &s(b"zl")])),
            ("hash ziplist", cat(&[&[13], &s(b"zl")])),
            ("quicklist", cat(&[&[14], &len(2), &s(b"zl1"), &s(b"zl2")])),
            ("stream", stream(15)),
            ("hash listpack", cat(&[&[16], &s(b"lp")])),
            ("zset listpack", cat(&[&[17], &s(b"lp")])),
            (
                "quicklist2",
                cat(&[&[18], &len(2), &len(2), &s(b"lp"), &len(1), &s(b"plain")]),
            ),
            ("stream2", stream(19)),
            ("set listpack", cat(&[&[20], &s(b"lp")])),
            ("stream3", stream(21)),
            (
                "hash field expiry",
                cat(&[
                    &[24],
                    &1_700_000_000_000u64.to_le_bytes(),
                    &len(2),
                    &len(0),
                    &s(b"f1"),
                    &s(b"v1"),
                    &len(5000),
                    &s(b"f2"),
                    &s(b"v2"),
                ]),
            ),
            (
                "hash listpack field expiry",
                cat(&[&[25], &1_700_000_000_000u64.to_le_bytes(), &s(b"lp")]),
            ),
        ]
    }

    #[test]
    fn crc64_known_value() {
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
        let mut input = Input::new(&b"123456789"[..]);
        for _ in 0..9 {
            assert!(input.byte().is_ok());
        }
        assert_eq!(input.crc_so_far(), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn length_encodings() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (&[0x00], Some(0)),
            (&[0x3F], Some(63)),
            (&[0x40, 0x40], Some(64)),
            (&[0x7F, 0xFF], Some(16383)),
            (&[0x80, 0, 0, 0x40, 0], Some(16384)),
            (&[0x80, 0xFF, 0xFF, 0xFF, 0xFF], Some(u64::from(u32::MAX))),
            (&[0x81, 0, 0, 0, 1, 0, 0, 0, 0], Some(1 << 32)),
            (&[0x82], None),
            (&[0xBF], None),
            (&[0xC0], None),
            (&[0x40], None),
            (&[0x80, 0, 0], None),
        ];
        for (bytes, want) in cases {
            let got = Input::new(*bytes).length().ok();
            assert_eq!(got, *want, "{bytes:02x?}");
        }
        for n in [
            0,
            1,
            63,
            64,
            16383,
            16384,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
        ] {
            assert_eq!(Input::new(&len(n)[..]).length().ok(), Some(n), "{n}");
        }
    }

    #[test]
    fn string_encodings_decode() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[0x03, b'a', b'b', b'c'], b"abc"),
            (&[0x00], b""),
            (&[0xC0, 0x7F], b"127"),
            (&[0xC0, 0x80], b"-128"),
            (&[0xC1, 0x2E, 0xFB], b"-1234"),
            (&[0xC2, 0x00, 0xCA, 0x9A, 0x3B], b"1000000000"),
            (&[0xC2, 0xFF, 0xFF, 0xFF, 0xFF], b"-1"),
            (
                &[0xC3, 0x05, 0x0A, 0x00, b'a', 0xE0, 0x00, 0x00],
                b"aaaaaaaaaa",
            ),
        ];
        for (bytes, want) in cases {
            let mut out = Vec::new();
            assert!(
                Input::new(*bytes).read_string(&mut out).is_ok(),
                "{bytes:02x?}"
            );
            assert_eq!(out, *want, "{bytes:02x?}");
        }
        let mut out = Vec::new();
        assert!(Input::new(&[0xC4u8][..]).read_string(&mut out).is_err());
    }

    #[test]
    fn string_payloads_decode_plain_int_and_lzf_values() {
        let payload = |body: &[u8]| {
            let mut p = body.to_vec();
            p.extend_from_slice(&dump_footer(body, 10));
            p
        };
        let mut out = Vec::new();
        assert!(string_payload_value(&payload(b"\x00\x05hello"), &mut out).is_some());
        assert_eq!(out, b"hello");
        assert!(string_payload_value(&payload(b"\x00\xc0\xfe"), &mut out).is_some());
        assert_eq!(out, b"-2");
        assert!(string_payload_value(&payload(b"\x00\xc1\x39\x30"), &mut out).is_some());
        assert_eq!(out, b"12345");
        assert!(string_payload_value(&payload(b"\x00\xc2\x40\xe2\x01\x00"), &mut out).is_some());
        assert_eq!(out, b"123456");
        // LZF: literal "ab" then a back-reference copying 4 bytes from 2 back: "ababab".
        assert!(
            string_payload_value(&payload(b"\x00\xc3\x05\x06\x01ab\x40\x01"), &mut out).is_some()
        );
        assert_eq!(out, b"ababab");
        // Not a string, a length that does not match, too short.
        assert!(string_payload_value(&payload(b"\x01\x00"), &mut out).is_none());
        assert!(string_payload_value(&payload(b"\x00\x06hello"), &mut out).is_none());
        assert!(string_payload_value(b"\x00\x01", &mut out).is_none());
    }

    #[test]
    fn lzf_decompresses_and_refuses_corrupt_data() {
        let mut out = Vec::new();
        // A literal "ab", then a back-reference of 4 bytes at distance 2: "ababab".
        assert_eq!(
            lzf_decompress(&[0x01, b'a', b'b', 0x40, 0x01], 6, &mut out),
            Ok(())
        );
        assert_eq!(out, b"ababab");
        // A long back-reference (length 7 + 10 + 2 = 19) at distance 1.
        out.clear();
        assert_eq!(
            lzf_decompress(&[0x00, b'z', 0xE0, 10, 0x00], 20, &mut out),
            Ok(())
        );
        assert_eq!(out, vec![b'z'; 20]);
        let corrupt: &[(&[u8], u64, &str)] = &[
            (&[0x02, b'a'], 3, "literal run"),
            (&[0x00, b'a', 0x20], 4, "back-reference"),
            (&[0x00, b'a', 0x20, 0x01], 4, "before the start"),
            (&[0x20, 0x00], 3, "before the start"),
            (
                &[0x00, b'a', 0xE0, 0xFF, 0x00],
                10,
                "more than the declared",
            ),
            (&[0x01, b'a', b'b'], 1, "more than the declared"),
            (
                &[0x01, b'a', b'b'],
                3,
                "decompresses to 2 bytes, the file declares 3",
            ),
        ];
        for (data, declared, want) in corrupt {
            let mut out = Vec::new();
            let err = lzf_decompress(data, *declared, &mut out).expect_err("corrupt");
            assert!(err.contains(want), "{data:02x?}: {err}");
        }
        // The reader reports it with the offset of the string.
        let key = [0xC3, 0x02, 0x05, 0x20, 0x00];
        let f = file(10, &cat(&[&[0], &key, &s(b"v")]));
        let msg = err_text(&f);
        assert!(
            msg.starts_with("t.rdb: byte 10: LZF back-reference"),
            "{msg}"
        );
    }

    #[test]
    fn every_value_type_goes_through_the_writer_and_reader() {
        let bodies = bodies();
        let mut w = RdbWriter::new(Vec::new(), "out.rdb");
        for (i, (name, body)) in bodies.iter().enumerate() {
            let db = if i % 3 == 2 { 3 } else { 0 };
            let expire = (i % 2 == 0).then_some(1_700_000_000_000 + i as i64);
            w.write_entry(db, name.as_bytes(), expire, &payload_of(body, 12))
                .unwrap();
        }
        let out = w.finish().unwrap();
        let (entries, summary) = read_all(&out).unwrap();
        assert_eq!(entries.len(), bodies.len());
        for (i, (e, (name, body))) in entries.iter().zip(&bodies).enumerate() {
            assert_eq!(e.key, name.as_bytes());
            assert_eq!(e.db, if i % 3 == 2 { 3 } else { 0 }, "{name}");
            assert_eq!(e.type_byte, body[0], "{name}");
            assert_eq!(e.payload, payload_of(body, 12), "{name}");
            let expire = (i % 2 == 0).then_some(1_700_000_000_000 + i as i64);
            assert_eq!(e.expire_at_ms, expire, "{name}");
            assert_eq!(verify_payload(&e.payload).unwrap(), 12);
        }
        assert_eq!(summary.version, 12);
        assert_eq!(summary.keys, bodies.len() as u64);
        assert_eq!(summary.checksum, Checksum::Verified);
        assert_eq!(summary.bytes, out.len() as u64);
        assert_eq!(
            summary.aux[0],
            ("ferry-ver".into(), env!("CARGO_PKG_VERSION").into())
        );
        assert_eq!(summary.aux[1].0, "ctime");
        assert_eq!(check(&out[..], "out.rdb").unwrap(), summary);
    }

    #[test]
    fn every_opcode_is_read() {
        let module_aux = cat(&[
            &[op::MODULE_AUX],
            &len(99),
            &len(2),
            &len(2),
            &len(5),
            &s(b"x"),
            &len(0),
        ]);
        let records = cat(&[
            &[op::AUX],
            &s(b"redis-ver"),
            &s(b"7.4.0"),
            &[op::AUX],
            &s(b"redis-bits"),
            &[0xC0, 64],
            &module_aux,
            &[op::FUNCTION2],
            &s(b"#!lua name=lib\n..."),
            &[op::SELECTDB],
            &len(2),
            &[op::RESIZEDB],
            &len(2),
            &len(1),
            &[op::SLOT_INFO],
            &len(5),
            &len(2),
            &len(1),
            &[op::EXPIRETIME],
            &1_700_000_000i32.to_le_bytes(),
            &[op::IDLE],
            &len(1000),
            &[0],
            &s(b"a"),
            &s(b"1"),
            &[op::FREQ, 5],
            &[0],
            &s(b"b"),
            &s(b"2"),
        ]);
        let (entries, summary) = read_all(&file(11, &records)).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].db, &entries[0].key[..]), (2, &b"a"[..]));
        assert_eq!(entries[0].expire_at_ms, Some(1_700_000_000_000));
        assert_eq!(
            entries[1].expire_at_ms, None,
            "an expiry applies to one key only"
        );
        assert_eq!(
            summary.aux,
            vec![
                ("redis-ver".into(), "7.4.0".into()),
                ("redis-bits".into(), "64".into())
            ]
        );
        assert_eq!(summary.functions, 1);
        assert_eq!(summary.expires, 1);
        assert_eq!(summary.dbs, BTreeMap::from([(2, 2)]));
    }

    #[test]
    fn refusals_say_what_is_not_supported() {
        let cases: &[(Vec<u8>, &str)] = &[
            (
                file(10, &cat(&[&[26], &s(b"k"), &s(b"v")])),
                "t.rdb: byte 9: unsupported value type 26 (written by a newer Redis, or the file is corrupt)",
            ),
            (
                file(10, &cat(&[&[6], &s(b"k"), &s(b"v")])),
                "t.rdb: byte 12 (key \"k\"): module value in the pre-release format (type 6) is not supported",
            ),
            (
                file(12, &cat(&[&[23], &s(b"k"), &s(b"v")])),
                "t.rdb: byte 12 (key \"k\"): hash with field expiry in the format of Redis 7.4 release candidates (type 23) is not supported",
            ),
            (
                file(10, &[op::FUNCTION_PRE_GA]),
                "t.rdb: byte 9: functions in the format of Redis 7.0 release candidates (opcode 0xF6) are not supported",
            ),
            (
                file(10, &cat(&[&[7], &s(b"k"), &len(1), &len(9)])),
                "t.rdb: byte 13 (key \"k\"): unknown module opcode 9",
            ),
            (
                file(
                    10,
                    &cat(&[&[op::MODULE_AUX], &len(1), &len(1), &len(0), &len(0)]),
                ),
                "t.rdb: byte 11: bad `when` opcode 1 in module data (MODULE_AUX)",
            ),
            (
                file(10, &cat(&[&[0], &[0x83]])),
                "t.rdb: byte 10: unknown length encoding 0x83",
            ),
            (
                file(10, &cat(&[&[4], &s(b"k"), &[0xC0, 1]])),
                "t.rdb: byte 12 (key \"k\"): expected a length, found the string encoding 0xc0",
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(err_text(bytes), *want);
        }
    }

    #[test]
    fn truncated_files_give_errors_at_every_offset() {
        let mut w = RdbWriter::new(Vec::new(), "out.rdb");
        for (name, body) in bodies().into_iter().filter(|(n, _)| *n != "big string") {
            w.write_entry(0, name.as_bytes(), Some(1), &payload_of(&body, 12))
                .unwrap();
        }
        let written = w.finish().unwrap();
        for whole in [&written[..], ALL_TYPES_74, INTEGER_KEYS, LZF_KEY] {
            assert!(read_all(whole).is_ok());
            for n in 0..whole.len() {
                let cut = &whole[..n];
                assert!(
                    read_all(cut).is_err(),
                    "a file cut at {n} of {} reads",
                    whole.len()
                );
                assert!(check(cut, "t.rdb").is_err(), "{n}");
            }
        }
        let msg = err_text(&ALL_TYPES_74[..ALL_TYPES_74.len() - 1]);
        assert!(
            msg.contains("unexpected end of file inside the checksum"),
            "{msg}"
        );
        let msg = err_text(&ALL_TYPES_74[..ALL_TYPES_74.len() - 9]);
        assert!(
            msg.contains("before the end-of-file marker (the file is truncated)"),
            "{msg}"
        );
        let f = file(
            10,
            &cat(&[&[4], &s(b"user:1"), &len(2), &s(b"f"), &s(b"v"), &s(b"g")]),
        );
        let msg = err_text(&f[..f.len() - 9]);
        assert_eq!(
            msg,
            format!(
                "t.rdb: byte {} (key \"user:1\"): unexpected end of file inside a hash value",
                f.len() - 9
            )
        );
    }

    #[test]
    fn a_huge_length_in_a_corrupt_file_is_an_end_of_file_not_an_allocation() {
        let huge = cat(&[&[0x81], &(u64::MAX / 2).to_be_bytes()]);
        for records in [
            cat(&[&[0], &huge, b"abc"]),
            cat(&[&[0], &s(b"k"), &huge, b"abc"]),
            cat(&[&[0], &[0xC3], &huge, &huge, b"abc"]),
            cat(&[&[0], &[0xC3], &len(3), &huge, b"abc"]),
            cat(&[&[4], &s(b"k"), &huge, &s(b"f")]),
            // A stream whose consumer claims a huge number of pending IDs.
            cat(&[
                &[21],
                &s(b"k"),
                &[0; 9],
                &len(1),
                &s(b"group"),
                &[0; 3],
                &len(1),
                &s(b"consumer"),
                &[0; 16],
                &huge,
            ]),
        ] {
            // No end-of-file marker: the huge length runs to the end of the input.
            let msg = err_text(&cat(&[b"REDIS0010", &records]));
            assert!(
                msg.contains("unexpected end of file") || msg.contains("LZF"),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_changed_byte_is_always_an_error() {
        let mut w = RdbWriter::new(Vec::new(), "out.rdb");
        for (name, body) in bodies().into_iter().filter(|(n, _)| *n != "big string") {
            w.write_entry(1, name.as_bytes(), None, &payload_of(&body, 10))
                .unwrap();
        }
        let written = w.finish().unwrap();
        for whole in [&written[..], ALL_TYPES_74] {
            for i in 0..whole.len() {
                let mut bytes = whole.to_vec();
                bytes[i] ^= 0xFF;
                assert!(check(&bytes[..], "t.rdb").is_err(), "byte {i} changed");
            }
        }
        // A changed byte inside a string value is caught by the checksum.
        let f = file(10, &cat(&[&[0], &s(b"k"), &s(b"some value")]));
        let mut bytes = f.clone();
        bytes[15] ^= 1;
        let msg = err_text(&bytes);
        let re = regex::Regex::new(
            r"^t\.rdb: checksum mismatch: file says 0x[0-9a-f]{16}, content gives 0x[0-9a-f]{16} \(the file is corrupt or truncated\)$",
        )
        .unwrap();
        assert!(re.is_match(&msg), "{msg}");
    }

    #[test]
    fn headers_are_checked() {
        let not_rdb = "t.rdb: not an RDB file (expected \"REDIS\" and a version at the start)";
        for bytes in [
            &b""[..],
            b"REDIS",
            b"REDIS001",
            b"redis0010",
            b"REDIS00x0\xff",
            b"{\"json\": 1}",
        ] {
            assert_eq!(
                RdbReader::new(bytes, "t.rdb").err().unwrap().to_string(),
                not_rdb
            );
        }
        for (v, ok) in [
            (0, false),
            (1, true),
            (5, true),
            (12, true),
            (13, false),
            (9999, false),
        ] {
            let f = file(v, &[]);
            match read_all(&f) {
                Ok((entries, summary)) => {
                    assert!(ok, "{v}");
                    assert!(entries.is_empty());
                    assert_eq!(summary.version, v);
                    let want = if v >= 5 {
                        Checksum::Verified
                    } else {
                        Checksum::Absent
                    };
                    assert_eq!(summary.checksum, want);
                }
                Err(e) => {
                    assert!(!ok, "{v}: {e}");
                    assert_eq!(
                        e.to_string(),
                        format!(
                            "t.rdb: RDB version {v} is not supported (versions 1 to 12 are, as written by Redis up to 7.4)"
                        )
                    );
                }
            }
        }
    }

    #[test]
    fn the_end_of_the_file_is_checked() {
        let mut f = file(10, &cat(&[&[0], &s(b"k"), &s(b"v")]));
        // A stored checksum of 0: written with `rdbchecksum no`.
        let n = f.len();
        f[n - 8..].fill(0);
        assert_eq!(check(&f[..], "t.rdb").unwrap().checksum, Checksum::Disabled);
        f.push(b'\n');
        assert_eq!(
            err_text(&f),
            format!(
                "t.rdb: byte {n}: data after the end of the RDB file (after the end-of-file marker and checksum)"
            )
        );
        // Reading on after the end or after an error.
        let good = file(10, &[]);
        let mut r = RdbReader::new(&good[..], "t.rdb").unwrap();
        let mut e = RdbEntry::default();
        assert!(!r.next_entry(&mut e).unwrap());
        assert!(!r.next_entry(&mut e).unwrap());
        let mut r = RdbReader::new(&f[..], "t.rdb").unwrap();
        assert!(r.next_entry(&mut e).unwrap());
        assert!(r.next_entry(&mut e).is_err());
        assert!(r.next_entry(&mut e).is_err());
    }

    #[test]
    fn fixtures_are_read() {
        let (entries, summary) = read_all(ALL_TYPES_74).unwrap();
        assert_eq!(summary.version, 12);
        assert_eq!(summary.checksum, Checksum::Verified);
        assert_eq!(summary.functions, 1);
        assert_eq!(summary.keys, entries.len() as u64);
        assert!(summary.aux.contains(&("redis-ver".into(), "7.4.1".into())));
        let types: std::collections::BTreeSet<u8> = entries.iter().map(|e| e.type_byte).collect();
        for t in [0, 17, 18, 20, 21, 25] {
            assert!(types.contains(&t), "type {t} not in {types:?}");
        }
        for e in &entries {
            assert_eq!(verify_payload(&e.payload).unwrap(), 12);
            assert_eq!(e.payload[0], e.type_byte);
        }

        let (entries, summary) = read_all(INTEGER_KEYS).unwrap();
        assert_eq!(summary.checksum, Checksum::Absent);
        let mut keys: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8(e.key.clone()).unwrap())
            .collect();
        keys.sort();
        // As the fixture's origin lists them (redis-rdb-tools' `integer_keys.json`).
        assert_eq!(
            keys,
            ["-123", "-183358245", "-29477", "125", "183358245", "43947"]
        );

        let (entries, _) = read_all(LZF_KEY).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].key, vec![b'a'; 200]);
        assert_eq!(
            entries[0].payload,
            payload_of(
                &cat(&[&[0], &s(b"Key that redis should compress easily")]),
                3
            )
        );
    }

    #[test]
    fn payloads_are_verified() {
        let p = payload_of(&cat(&[&[0], &s(b"v")]), 10);
        assert_eq!(verify_payload(&p).unwrap(), 10);
        assert_eq!(
            verify_payload(&p[..10]).unwrap_err().to_string(),
            "invalid DUMP payload: 10 bytes; a payload has at least 11 (a type byte, a value, a 2-byte version and an 8-byte checksum)"
        );
        let mut bad = p.clone();
        bad[1] ^= 1;
        assert!(
            verify_payload(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("invalid DUMP payload: checksum mismatch")
        );
    }

    #[test]
    fn the_writer_checks_its_entries() {
        let v10 = payload_of(&cat(&[&[0], &s(b"v")]), 10);
        let v11 = payload_of(&cat(&[&[0], &s(b"v")]), 11);
        let v13 = payload_of(&cat(&[&[0], &s(b"v")]), 13);
        let odd = payload_of(&cat(&[&[8], &s(b"v")]), 10);
        let mut w = RdbWriter::new(Vec::new(), "out.rdb");
        w.write_entry(0, b"a", None, &v10).unwrap();
        assert_eq!(w.version(), Some(10));
        assert_eq!(
            w.write_entry(0, b"b", None, &v11).unwrap_err().to_string(),
            "out.rdb: key \"b\": the payload is of RDB version 11, newer than the file's version 10 (the first entry's); write the newest payloads first"
        );
        assert_eq!(
            w.write_entry(0, b"c", None, &v13).unwrap_err().to_string(),
            "out.rdb: key \"c\": the payload is of RDB version 13; versions 1 to 12 can be written"
        );
        assert_eq!(
            w.write_entry(0, b"d", None, &odd).unwrap_err().to_string(),
            "out.rdb: key \"d\": the payload's value type 8 is not supported"
        );
        let mut broken = v10.clone();
        broken[2] ^= 1;
        assert!(
            w.write_entry(0, b"\xff\x00", None, &broken)
                .unwrap_err()
                .to_string()
                .starts_with(
                    "out.rdb: key \"\\xff\\x00\": invalid DUMP payload: checksum mismatch"
                )
        );
        // Older payloads go in a newer file; a database may come back.
        let mut w = RdbWriter::new(Vec::new(), "out.rdb");
        w.write_entry(0, b"a", None, &v11).unwrap();
        w.write_entry(2, b"b", None, &v10).unwrap();
        w.write_entry(0, b"c", None, &v10).unwrap();
        assert_eq!(w.entries(), 3);
        let (entries, _) = read_all(&w.finish().unwrap()).unwrap();
        let got: Vec<(u64, &[u8])> = entries.iter().map(|e| (e.db, &e.key[..])).collect();
        assert_eq!(got, [(0, &b"a"[..]), (2, b"b"), (0, b"c")]);
        // Payloads come back with the file's version.
        assert_eq!(entries[1].payload, payload_of(&cat(&[&[0], &s(b"v")]), 11));
        // An empty file is of version 10.
        let empty = RdbWriter::new(Vec::new(), "out.rdb").finish().unwrap();
        let summary = check(&empty[..], "e.rdb").unwrap();
        assert_eq!((summary.version, summary.keys), (10, 0));
        // Old versions: seconds for expiry, no AUX, no checksum.
        let v2 = payload_of(&cat(&[&[0], &s(b"v")]), 2);
        let mut w = RdbWriter::new(Vec::new(), "old.rdb");
        w.write_entry(0, b"a", Some(1_700_000_000_001), &v2)
            .unwrap();
        let (entries, summary) = read_all(&w.finish().unwrap()).unwrap();
        assert_eq!(entries[0].expire_at_ms, Some(1_700_000_001_000));
        assert_eq!(summary.checksum, Checksum::Absent);
        assert!(summary.aux.is_empty());
    }

    #[test]
    fn errors_name_the_key_readably() {
        assert_eq!(quote_key(b"user:1"), "\"user:1\"");
        assert_eq!(
            quote_key("caf\u{e9} \"q\"".as_bytes()),
            "\"caf\u{e9} \\\"q\\\"\""
        );
        assert_eq!(quote_key(b"\x00a'\xff"), "\"\\x00a'\\xff\"");
        let long = "k".repeat(100);
        assert_eq!(
            quote_key(long.as_bytes()),
            format!("\"{}\"…", "k".repeat(64))
        );
        let e = FormatError::from(RdbError::Data {
            name: "dump.rdb".into(),
            offset: 1234,
            key: Some(b"user:1".to_vec()),
            message: "unexpected end of file inside a hash value".into(),
        });
        assert!(matches!(&e, FormatError::Data { at, .. } if at.file == "dump.rdb"));
        assert_eq!(
            e.to_string(),
            "dump.rdb: byte 1234 (key \"user:1\"): unexpected end of file inside a hash value"
        );
    }

    /// A file of three entries, and the entries.
    fn entries_file() -> (Vec<u8>, Vec<RdbEntry>) {
        let entry = |db, key: &[u8], expire_at_ms, body: Vec<u8>| RdbEntry {
            db,
            key: key.to_vec(),
            type_byte: body[0],
            expire_at_ms,
            payload: payload_of(&body, 10),
        };
        let entries = vec![
            entry(
                0,
                b"text",
                Some(now_ms() + 3_600_000),
                cat(&[&[0], &s(b"v")]),
            ),
            entry(0, b"\xffbin", None, cat(&[&[2], &len(1), &s(b"m")])),
            entry(4, b"four", Some(1_000), cat(&[&[17], &s(b"lp")])),
        ];
        let mut w = RdbWriter::new(Vec::new(), "rows.rdb");
        for e in &entries {
            w.write_entry(e.db, &e.key, e.expire_at_ms, &e.payload)
                .unwrap();
        }
        (w.finish().unwrap(), entries)
    }

    #[test]
    fn rows_come_out_typed() {
        let (bytes, rows) = entries_file();
        let mut src = RdbSource::new(&bytes[..], "rows.rdb", None).unwrap();
        assert_eq!(src.columns(), COLUMNS);
        let mut sink = MemorySink::default();
        crate::formats::pipe(&mut src, &mut sink).unwrap();
        assert_eq!(sink.rows.len(), 3);
        let r = &sink.rows;
        assert_eq!(r[0][0], Value::Int(0));
        assert_eq!(r[0][1], Value::Text("text".into()));
        assert_eq!(r[0][2], Value::Text("string".into()));
        assert!(matches!(r[0][3], Value::Int(ttl) if (3_590_000..=3_600_000).contains(&ttl)));
        assert_eq!(r[0][4], Value::Int(rows[0].expire_at_ms.unwrap()));
        assert_eq!(r[0][5], Value::Bytes(rows[0].payload.clone()));
        assert_eq!(r[1][1], Value::Bytes(b"\xffbin".to_vec()));
        assert_eq!(r[1][2], Value::Text("set".into()));
        assert_eq!((&r[1][3], &r[1][4]), (&Value::Null, &Value::Null));
        assert_eq!(r[2][0], Value::Int(4));
        assert!(
            matches!(r[2][3], Value::Int(ttl) if ttl < 0),
            "already expired"
        );
        assert_eq!(r[2][5], Value::Bytes(rows[2].payload.clone()));
        assert_eq!(src.summary().checksum, Checksum::Verified);

        let mut src = RdbSource::new(&bytes[..], "rows.rdb", Some(4)).unwrap();
        let mut row = Vec::new();
        assert!(src.next_row(&mut row).unwrap());
        assert_eq!(row[1], Value::Text("four".into()));
        assert!(!src.next_row(&mut row).unwrap());
        assert_eq!(src.summary().keys, 3);

        let e = RdbSource::new(&b"nope"[..], "x.rdb", None).err().unwrap();
        assert!(matches!(e, FormatError::Data { .. }), "{e}");
    }

    #[test]
    fn rows_go_back_into_a_file() {
        let (bytes, _) = entries_file();
        let mut src = RdbSource::new(&bytes[..], "rows.rdb", None).unwrap();
        let mut sink = RdbSink::new(Vec::new(), "copy.rdb");
        crate::formats::pipe(&mut src, &mut sink).unwrap();
        sink.finish().unwrap();
        sink.finish().unwrap();
        let copy = sink.into_inner().unwrap();
        let (a, _) = read_all(&bytes).unwrap();
        let (b, _) = read_all(&copy).unwrap();
        assert_eq!(a, b);

        // Only key and payload are needed; ttl counts from now; text is accepted.
        let p = payload_of(&cat(&[&[0], &s(b"v")]), 10);
        let mut sink = RdbSink::new(Vec::new(), "min.rdb");
        sink.begin(&["payload".into(), "key".into(), "ttl".into(), "db".into()])
            .unwrap();
        sink.write_row(&[
            Value::Bytes(p.clone()),
            Value::Text("k".into()),
            Value::Int(60_000),
            Value::Null,
        ])
        .unwrap();
        sink.write_row(&[
            Value::Bytes(p.clone()),
            Value::Bytes(b"j".to_vec()),
            Value::Null,
            Value::Int(2),
        ])
        .unwrap();
        sink.finish().unwrap();
        let (entries, _) = read_all(&sink.into_inner().unwrap()).unwrap();
        assert_eq!((entries[0].db, entries[1].db), (0, 2));
        let left = entries[0].expire_at_ms.unwrap() - now_ms();
        assert!((59_000..=60_000).contains(&left), "{left}");
        assert_eq!(entries[1].expire_at_ms, None);

        let mut sink = RdbSink::new(Vec::new(), "bad.rdb");
        assert_eq!(
            sink.begin(&["db".into(), "key".into(), "value".into()])
                .unwrap_err()
                .to_string(),
            "bad.rdb: an RDB output needs a `payload` column (it takes `key`, `payload` with DUMP payloads, and optionally `db`, `expire_at` or `ttl`); the columns are: db, key, value"
        );
        sink.begin(&["key".into(), "payload".into(), "db".into()])
            .unwrap();
        assert_eq!(
            sink.write_row(&[
                Value::Text("k".into()),
                Value::Bytes(p.clone()),
                Value::Int(-1)
            ])
            .unwrap_err()
            .to_string(),
            "bad.rdb, field 3 (db): row 1: database number -1 is negative"
        );
        assert_eq!(
            sink.write_row(&[Value::Int(1), Value::Bytes(p.clone()), Value::Null])
                .unwrap_err()
                .to_string(),
            "bad.rdb, field 1 (key): row 2: expected text or bytes, found integer"
        );
        assert_eq!(
            sink.write_row(&[
                Value::Text("k".into()),
                Value::Bytes(p[..5].to_vec()),
                Value::Null
            ])
            .unwrap_err()
            .to_string(),
            "bad.rdb: key \"k\": invalid DUMP payload: 5 bytes; a payload has at least 11 (a type byte, a value, a 2-byte version and an 8-byte checksum)"
        );
    }

    /// Tests against real `redis-server` instances (Debian's 7.0, installed by
    /// `tests/setup.sh`), each on a free port with its own folder.
    mod live {
        use super::*;
        use std::net::TcpListener;
        use std::path::Path;
        use std::process::{Child, Command, Stdio};
        use std::time::{Duration, Instant};

        /// A `redis-server` started for a test, killed when dropped.
        struct Server {
            child: Child,
            port: u16,
        }

        impl Server {
            /// Starts `redis-server` with `dir/dump.rdb` as its RDB file (loaded if present)
            /// and waits until it answers PING.
            fn start(dir: &Path, extra: &[&str]) -> Server {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                let log = dir.join("redis.log");
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"])
                    .arg("--dir")
                    .arg(dir)
                    .arg("--logfile")
                    .arg(&log)
                    .args(extra)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| {
                        panic!(
                            "cannot start redis-server ({e}); the RDB tests need Debian's redis-server: run tests/setup.sh"
                        )
                    });
                let mut server = Server { child, port };
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    if server.try_ping() {
                        return server;
                    }
                    if let Ok(Some(status)) = server.child.try_wait() {
                        let log = std::fs::read_to_string(&log).unwrap_or_default();
                        panic!("redis-server exited ({status}):\n{log}");
                    }
                    assert!(
                        Instant::now() < deadline,
                        "redis-server did not answer PING in 10 s"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }

            fn try_ping(&self) -> bool {
                let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
                else {
                    return false;
                };
                client.get_connection().is_ok_and(|mut con| {
                    redis::cmd("PING")
                        .query::<String>(&mut con)
                        .is_ok_and(|p| p == "PONG")
                })
            }

            fn connect(&self) -> redis::Connection {
                redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
                    .and_then(|c| c.get_connection())
                    .expect("connect to redis-server")
            }
        }

        impl Drop for Server {
            fn drop(&mut self) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }

        fn run<T: redis::FromRedisValue>(con: &mut redis::Connection, cmd: &mut redis::Cmd) -> T {
            cmd.query(con).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
        }

        fn select(con: &mut redis::Connection, db: u64) {
            run::<()>(con, redis::cmd("SELECT").arg(db));
        }

        /// Keys of every type in small and large encodings, in databases 0 and 3, some with
        /// an expiry, and a function library.
        fn populate(con: &mut redis::Connection) {
            let text = "the quick brown fox jumps over the lazy dog; ".repeat(4);
            let binary: Vec<u8> = (0..=255u8).rev().collect();
            select(con, 0);
            run::<()>(con, redis::cmd("SET").arg("str:short").arg("hello"));
            run::<()>(con, redis::cmd("SET").arg("str:int").arg("12345"));
            run::<()>(con, redis::cmd("SET").arg("str:text").arg(&text));
            run::<()>(con, redis::cmd("SET").arg("str:big").arg(text.repeat(500)));
            run::<()>(
                con,
                redis::cmd("SET").arg(&b"bin:\x00\xff"[..]).arg(&binary),
            );
            run::<()>(con, redis::cmd("SET").arg("987654").arg("an integer key"));
            run::<()>(
                con,
                redis::cmd("SET")
                    .arg(format!("long:{}", "abc".repeat(30)))
                    .arg("a compressed key"),
            );
            run::<()>(
                con,
                redis::cmd("RPUSH")
                    .arg("list:small")
                    .arg(&["a", "b", "c", "1", "2"]),
            );
            let many: Vec<String> = (0..1000).map(|i| format!("element {i}")).collect();
            run::<()>(con, redis::cmd("RPUSH").arg("list:big").arg(&many));
            run::<()>(
                con,
                redis::cmd("SADD")
                    .arg("set:ints")
                    .arg(&[1, 2, 3, 100_000, -5]),
            );
            run::<()>(
                con,
                redis::cmd("SADD").arg("set:small").arg(&["x", "y", "z"]),
            );
            run::<()>(con, redis::cmd("SADD").arg("set:big").arg(&many));
            run::<()>(
                con,
                redis::cmd("ZADD")
                    .arg("zset:small")
                    .arg(&["1", "a", "2.5", "b", "-inf", "c"]),
            );
            let mut zadd = redis::cmd("ZADD");
            zadd.arg("zset:big");
            for i in 0..498 {
                zadd.arg(f64::from(i) * 0.37 - 50.0)
                    .arg(format!("member {i}"));
            }
            zadd.arg("inf").arg("top").arg("-inf").arg("bottom");
            run::<()>(con, &mut zadd);
            run::<()>(
                con,
                redis::cmd("HSET")
                    .arg("hash:small")
                    .arg(&["f1", "v1", "f2", "2"]),
            );
            let mut hset = redis::cmd("HSET");
            hset.arg("hash:big");
            for i in 0..1000 {
                hset.arg(format!("field {i}")).arg(format!("value {i}"));
            }
            run::<()>(con, &mut hset);
            for i in 0..5 {
                run::<String>(
                    con,
                    redis::cmd("XADD").arg("stream").arg("*").arg("n").arg(i),
                );
            }
            run::<()>(
                con,
                redis::cmd("XGROUP").arg(&["CREATE", "stream", "group", "0"]),
            );
            run::<redis::Value>(
                con,
                redis::cmd("XREADGROUP").arg(&[
                    "GROUP", "group", "alice", "COUNT", "2", "STREAMS", "stream", ">",
                ]),
            );
            for (key, ms) in [
                ("str:short", 3_600_000),
                ("hash:big", 7_200_000),
                ("list:small", 1_800_000),
            ] {
                run::<()>(con, redis::cmd("PEXPIRE").arg(key).arg(ms));
            }
            run::<()>(
                con,
                redis::cmd("FUNCTION").arg("LOAD").arg(
                    "#!lua name=ferrylib\nredis.register_function('ferry_noop', function() return 1 end)",
                ),
            );
            select(con, 3);
            run::<()>(con, redis::cmd("SET").arg("db3:str").arg("three"));
            run::<()>(con, redis::cmd("HSET").arg("db3:hash").arg(&["a", "b"]));
            run::<()>(con, redis::cmd("PEXPIRE").arg("db3:str").arg(5_000_000));
        }

        /// Checks `entries` against a live server: the same number of keys per database, and
        /// for each key the server's DUMP equal to the payload (with `exact` false, hash-table
        /// sets and hashes may list their elements in another order) and its expiry (±1 s).
        fn assert_server_has(
            con: &mut redis::Connection,
            entries: &[RdbEntry],
            exact: bool,
            what: &str,
        ) {
            let mut per_db = BTreeMap::<u64, u64>::new();
            for e in entries {
                *per_db.entry(e.db).or_default() += 1;
            }
            for db in 0..16 {
                select(con, db);
                let size: u64 = run(con, &mut redis::cmd("DBSIZE"));
                assert_eq!(
                    size,
                    per_db.get(&db).copied().unwrap_or(0),
                    "{what}: DBSIZE of db {db}"
                );
            }
            for e in entries {
                select(con, e.db);
                let dump: Vec<u8> = run(con, redis::cmd("DUMP").arg(&e.key));
                if exact {
                    assert_eq!(dump, e.payload, "{what}: DUMP of {}", quote_key(&e.key));
                } else if dump != e.payload {
                    // A set or hash in a hash table is dumped in the table's order, which
                    // depends on the process's hash seed: another server holding the same
                    // elements may dump them in another order.
                    let same = unordered(&dump).is_some_and(|d| Some(d) == unordered(&e.payload));
                    assert!(
                        same,
                        "{what}: DUMP of {}: {dump:?} vs {:?}",
                        quote_key(&e.key),
                        e.payload
                    );
                }
                let at: i64 = run(con, redis::cmd("PEXPIRETIME").arg(&e.key));
                match e.expire_at_ms {
                    Some(want) => assert!(
                        (at - want).abs() <= 1000,
                        "{what}: expiry of {}: {at} vs {want}",
                        quote_key(&e.key)
                    ),
                    None => assert_eq!(at, -1, "{what}: {} has an expiry", quote_key(&e.key)),
                }
            }
        }

        /// A set member (one string) or a hash field and its value (two).
        type Item = Vec<Vec<u8>>;

        /// The elements (pairs for a hash) of a hash-table set or hash payload, sorted, with
        /// its type byte and version; `None` for other payloads.
        fn unordered(payload: &[u8]) -> Option<(u8, u16, Vec<Item>)> {
            let version = verify_payload(payload).ok()?;
            let per_item = match payload[0] {
                2 => 1,
                4 => 2,
                _ => return None,
            };
            let mut input = Input::new(&payload[1..payload.len() - FOOTER_LEN]);
            let n = input.length().ok()?;
            let mut items = Vec::new();
            for _ in 0..n {
                let mut item = Vec::new();
                for _ in 0..per_item {
                    let mut s = Vec::new();
                    input.read_string(&mut s).ok()?;
                    item.push(s);
                }
                items.push(item);
            }
            input.byte().is_err().then_some(())?;
            items.sort();
            Some((payload[0], version, items))
        }

        #[test]
        fn a_saved_file_reads_back_as_the_server_dumps_restores_and_loads() {
            let dir = tempfile::tempdir().unwrap();
            let source = Server::start(dir.path(), &[]);
            let mut con = source.connect();
            populate(&mut con);
            run::<()>(&mut con, &mut redis::cmd("SAVE"));
            let bytes = std::fs::read(dir.path().join("dump.rdb")).unwrap();
            let (entries, summary) = read_all(&bytes).unwrap();

            assert_eq!(summary.version, 10, "Redis 7.0 writes RDB version 10");
            assert_eq!(summary.checksum, Checksum::Verified);
            assert_eq!(summary.functions, 1);
            assert_eq!(summary.expires, 4);
            assert!(
                summary
                    .aux
                    .iter()
                    .any(|(k, v)| k == "redis-ver" && v.starts_with("7."))
            );
            let types: std::collections::BTreeSet<u8> =
                entries.iter().map(|e| e.type_byte).collect();
            for t in [0, 2, 4, 5, 11, 16, 17, 18, 19] {
                assert!(types.contains(&t), "type {t} not among {types:?}");
            }
            let keys: Vec<&[u8]> = entries.iter().map(|e| &e.key[..]).collect();
            for key in [
                &b"987654"[..],
                b"bin:\x00\xff",
                format!("long:{}", "abc".repeat(30)).as_bytes(),
            ] {
                assert!(keys.contains(&key), "{}", quote_key(key));
            }
            assert_server_has(&mut con, &entries, true, "the saved server");

            // RESTORE into a second server, with the absolute expiry.
            let dir2 = tempfile::tempdir().unwrap();
            let target = Server::start(dir2.path(), &[]);
            let mut con2 = target.connect();
            for e in &entries {
                select(&mut con2, e.db);
                let mut restore = redis::cmd("RESTORE");
                restore
                    .arg(&e.key)
                    .arg(e.expire_at_ms.unwrap_or(0))
                    .arg(&e.payload);
                if e.expire_at_ms.is_some() {
                    restore.arg("ABSTTL");
                }
                run::<()>(&mut con2, &mut restore);
            }
            assert_server_has(&mut con2, &entries, false, "the restored server");

            // Written by RdbWriter and loaded at startup, with a database that comes back.
            let mut order = entries.clone();
            let first = order.remove(0);
            order.push(first);
            let n = order.len();
            assert_eq!(
                (order[n - 2].db, order[n - 1].db),
                (3, 0),
                "db 0 comes back"
            );
            let mut w = RdbWriter::new(Vec::new(), "written.rdb");
            for e in &order {
                w.write_entry(e.db, &e.key, e.expire_at_ms, &e.payload)
                    .unwrap();
            }
            let written = w.finish().unwrap();
            let (again, _) = read_all(&written).unwrap();
            assert_eq!(again, order);
            let dir3 = tempfile::tempdir().unwrap();
            std::fs::write(dir3.path().join("dump.rdb"), &written).unwrap();
            let loaded = Server::start(dir3.path(), &[]);
            assert_server_has(
                &mut loaded.connect(),
                &entries,
                false,
                "the server that loaded the written file",
            );

            // The rows of the file through RdbSink give the same file content.
            let mut src = RdbSource::new(&bytes[..], "dump.rdb", None).unwrap();
            let mut sink = RdbSink::new(Vec::new(), "copy.rdb");
            crate::formats::pipe(&mut src, &mut sink).unwrap();
            sink.finish().unwrap();
            let (copied, _) = read_all(&sink.into_inner().unwrap()).unwrap();
            assert_eq!(copied, entries);
        }

        #[test]
        fn a_file_saved_without_checksum_is_accepted() {
            let dir = tempfile::tempdir().unwrap();
            // `rdbchecksum` cannot be changed with CONFIG SET: it is set at startup.
            let server = Server::start(dir.path(), &["--rdbchecksum", "no"]);
            let mut con = server.connect();
            run::<()>(&mut con, redis::cmd("SET").arg("k").arg("v"));
            run::<()>(&mut con, &mut redis::cmd("SAVE"));
            let bytes = std::fs::read(dir.path().join("dump.rdb")).unwrap();
            let summary = check(&bytes[..], "dump.rdb").unwrap();
            assert_eq!(summary.checksum, Checksum::Disabled);
            assert_eq!(summary.keys, 1);
        }
    }
}
