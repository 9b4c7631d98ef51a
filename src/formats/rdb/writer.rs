//! The writer: `DUMP` payloads to an RDB file `redis-server` loads.

use super::*;

/// Bytes gathered before a write to the output.
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
pub(super) fn encode_len(n: u64, out: &mut [u8; 9]) -> usize {
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
