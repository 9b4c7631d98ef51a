//! The `SCAN` + `PTTL` + `DUMP` row source.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};

use super::*;

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
