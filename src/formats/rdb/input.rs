//! The byte level of an RDB file: a buffered input that keeps the CRC-64 of what it consumed
//! and can capture a value's bytes, lengths and strings, skipping values, and LZF.

use super::*;

pub(super) type Res<T> = Result<T, Fault>;

pub(super) fn bad<T>(at: u64, message: impl Into<String>) -> Res<T> {
    Err(Fault::Bad {
        at,
        message: message.into(),
    })
}

/// A length or, with the top two bits set, a special string encoding.
pub(super) enum Len {
    Plain(u64),
    Encoded(u8),
}

pub(super) const READ_BUF: usize = 256 * 1024;

/// A buffered input that keeps the CRC of everything consumed and can copy out a consumed
/// range (a value) as it goes. Consumed bytes are folded into the CRC and the copy only when the
/// buffer is refilled or the result is asked for, so both work on large chunks.
pub(super) struct Input<R> {
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
    /// The last 9 bytes consumed before the current buffer (what an intact file ends with:
    /// the end-of-file marker and the checksum), and how many of them there are.
    tail: [u8; 9],
    tail_len: usize,
}

/// What the end of an input says about an end of file met in the middle of something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The input does not end like an RDB file: it was cut.
    Truncated,
    /// It ends with an end-of-file marker and a checksum that does not match its content: a
    /// byte was changed (a length that now runs past the end).
    Corrupt,
    /// Cannot tell: no checksum (old version, or disabled), or the checksum matches.
    Unknown,
}

impl<R: Read> Input<R> {
    pub(super) fn new(inner: R) -> Self {
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
            tail: [0; 9],
            tail_len: 0,
        }
    }

    /// Offset in the input of the next byte.
    pub(super) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Offset of the end of what has been read from the input so far.
    pub(super) fn seen(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Folds the consumed bytes into the CRC and the capture, drops them, and reads until at
    /// least `want` (at most the buffer's size) bytes are buffered or the input ends. Returns
    /// the number of bytes buffered.
    #[cold]
    pub(super) fn fill(&mut self, want: usize) -> Res<usize> {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        keep_tail(&mut self.tail, &mut self.tail_len, &self.buf[..self.pos]);
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
    pub(super) fn byte(&mut self) -> Res<u8> {
        if self.pos == self.end && self.fill(1)? == 0 {
            return Err(Fault::Eof);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(super) fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        if self.end - self.pos < N && self.fill(N)? < N {
            return Err(Fault::Eof);
        }
        let mut a = [0; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    /// Consumes `n` bytes.
    pub(super) fn skip(&mut self, mut n: u64) -> Res<()> {
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
    pub(super) fn copy_into(&mut self, mut n: u64, out: &mut Vec<u8>) -> Res<()> {
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
    pub(super) fn crc_so_far(&mut self) -> u64 {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.crc_from = self.pos;
        self.crc.clone().finalize()
    }

    /// After an end of file inside something: consumes what is left and tells a cut file from
    /// a corrupt one by its last bytes. An intact file ends with the end-of-file marker and the
    /// CRC-64 of everything before it (little-endian); the CRC of such a file as a whole is 0
    /// (the Redis CRC-64 has a residue of 0).
    pub(super) fn ending(&mut self, has_checksum: bool) -> Ending {
        self.pos = self.end;
        while matches!(self.fill(1), Ok(n) if n > 0) {
            self.pos = self.end;
        }
        if !has_checksum || self.tail_len < 9 || self.tail[1..].iter().all(|b| *b == 0) {
            return Ending::Unknown;
        }
        if self.tail[0] != op::EOF {
            return Ending::Truncated;
        }
        if self.crc.clone().finalize() == 0 {
            Ending::Unknown
        } else {
            Ending::Corrupt
        }
    }

    /// Starts appending consumed bytes to `into`.
    pub(super) fn start_capture(&mut self, into: Vec<u8>) {
        self.captured = into;
        self.capture_from = Some(self.pos);
    }

    /// Stops capturing and returns the bytes captured.
    pub(super) fn end_capture(&mut self) -> Vec<u8> {
        if let Some(from) = self.capture_from.take() {
            self.captured.extend_from_slice(&self.buf[from..self.pos]);
        }
        std::mem::take(&mut self.captured)
    }

    pub(super) fn len_or_encoding(&mut self) -> Res<Len> {
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

    pub(super) fn length(&mut self) -> Res<u64> {
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

    pub(super) fn lengths(&mut self, count: usize) -> Res<()> {
        for _ in 0..count {
            self.length()?;
        }
        Ok(())
    }

    pub(super) fn skip_string(&mut self) -> Res<()> {
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
    pub(super) fn read_string(&mut self, out: &mut Vec<u8>) -> Res<()> {
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
    pub(super) fn skip_text_double(&mut self) -> Res<()> {
        let n = self.byte()?;
        if n < 253 {
            self.skip(u64::from(n))?;
        }
        Ok(())
    }

    /// Skips a module's opcode stream up to and including its EOF opcode.
    pub(super) fn skip_module_values(&mut self) -> Res<()> {
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
    pub(super) fn skip_strings(&mut self, count: u64) -> Res<()> {
        for _ in 0..count {
            self.skip_string()?;
        }
        Ok(())
    }

    /// Skips a value of type `t` (the type byte already consumed).
    pub(super) fn skip_value(&mut self, t: u8) -> Res<()> {
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
    pub(super) fn skip_stream(&mut self, t: u8) -> Res<()> {
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
pub(super) fn lzf_decompress(input: &[u8], declared: u64, out: &mut Vec<u8>) -> Result<(), String> {
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

/// Keeps the last 9 bytes of everything passed through `tail` (`len` counts up to 9).
fn keep_tail(tail: &mut [u8; 9], len: &mut usize, consumed: &[u8]) {
    let n = consumed.len();
    if n >= 9 {
        tail.copy_from_slice(&consumed[n - 9..]);
    } else {
        tail.rotate_left(n);
        tail[9 - n..].copy_from_slice(consumed);
    }
    *len = (*len + n).min(9);
}
