//! The streaming reader: opcodes, keys and values as `DUMP` payloads, the checksum at the end.

use super::input::*;
use super::*;

/// What an end of file interrupts while the checksum is read.
const CHECKSUM_CONTEXT: &str = "inside the checksum at the end of the file";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Reading,
    Done,
    Failed,
}

/// A streaming reader of an RDB file: one [`RdbEntry`] per key, values as `DUMP` payloads.
pub struct RdbReader<R: Read> {
    input: Input<R>,
    pub(super) name: String,
    version: u16,
    db: u64,
    /// Keys of other databases are walked but not copied or returned.
    pub(super) db_filter: Option<u64>,
    /// Whether payloads are kept (not when only checking a file).
    keep_payload: bool,
    /// What an end of file would interrupt, for messages.
    context: &'static str,
    /// Whether the entry's key has been read (and belongs in messages).
    key_known: bool,
    /// Where the record being read starts, for messages.
    record_at: u64,
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
            record_at: 9,
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

    fn error(&mut self, fault: Fault, entry: &RdbEntry) -> RdbError {
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
                // Once the end-of-file marker is read, an end of file is a cut, nothing else.
                let in_checksum = self.context == CHECKSUM_CONTEXT;
                if !in_checksum && self.input.ending(self.version >= 5) == Ending::Corrupt {
                    let end = self.input.offset();
                    return RdbError::Data {
                        name,
                        offset: self.record_at,
                        key,
                        message: format!(
                            "corrupt data {}: it runs past the end of the file (byte {end}), and the file's checksum does not match its content: a changed byte, not a cut file",
                            self.context
                        ),
                    };
                }
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
            self.record_at = at;
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
            self.context = CHECKSUM_CONTEXT;
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
    check_interruptible(input, name, None)
}

/// [`check`] that asks `interrupt` every [`super::CHECK_EVERY`] keys and stops when it says so.
pub fn check_interruptible<R: Read>(
    input: R,
    name: &str,
    interrupt: Option<&super::Interrupt>,
) -> Result<RdbSummary, RdbError> {
    let mut reader = RdbReader::new(input, name)?;
    reader.keep_payload = false;
    let mut entry = RdbEntry::default();
    let mut n = 0u64;
    while reader.next_entry(&mut entry)? {
        n += 1;
        if n.is_multiple_of(super::CHECK_EVERY) && interrupt.is_some_and(|f| f()) {
            return Err(RdbError::Interrupted {
                name: name.to_owned(),
            });
        }
    }
    Ok(reader.summary)
}
