//! The pipelined `RESTORE` (and `SET` for plain strings) row sink.

use super::*;

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
    /// Whether a row's `db` column chooses its database (rows of an RDB file of several
    /// databases). When false, and `db` is `None`, every key goes into the connection's
    /// database: the target's, as its URL says.
    pub row_db: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            conflict: Conflict::Replace,
            batch: 1000,
            batch_bytes: 4 << 20,
            db: None,
            row_db: true,
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
    /// A key's write: its index in the batch's keys, and whether it went as `SET`.
    Restore(usize, bool),
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
                (Pending::Restore(..), Reply::Error(e))
                    if self.opts.conflict == Conflict::Skip && e.starts_with("BUSYKEY") =>
                {
                    self.stats.skipped += 1;
                }
                // `SET ... NX` of a key that exists.
                (Pending::Restore(..), Reply::Nil) => self.stats.skipped += 1,
                (Pending::Restore(i, as_set), Reply::Error(e)) => {
                    let verb = if *as_set { "SET" } else { "RESTORE" };
                    let key = keys.get(*i).map(|k| show_key(k)).unwrap_or_default();
                    let hint = if e.contains("payload version") {
                        " (the payload comes from a newer Redis than the target, or is corrupt)"
                    } else {
                        ""
                    };
                    return Err(RedisError::Server {
                        target: self.con.target.label.clone(),
                        command: format!("{verb} {key}"),
                        message: format!("{e}{hint}"),
                    });
                }
                (Pending::Restore(..), _) => self.stats.restored += 1,
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
        // A user without the right to INFO (it is in ACL's @dangerous) still restores; only
        // payloads from a newer Redis then go as they are.
        self.target_rdb = self.con.rdb_version().unwrap_or(None);
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
            (None, Some(v)) if self.opts.row_db && !v.is_null() => {
                int_of(v).filter(|d| *d >= 0).ok_or_else(|| {
                    self.row_err(format!(
                        "key {}: `db` must be a database number, got {}",
                        show_key(key),
                        v.type_name()
                    ))
                })?
            }
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
        self.pending.push(Pending::Restore(self.keys.len(), as_set));
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
