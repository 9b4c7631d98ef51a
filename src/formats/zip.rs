//! Zip archives on the `zip` crate, deflating through flate2's zlib-rs backend (the fastest
//! pure-Rust deflate measured here: ~300 MB/s at level 1).
//!
//! The writer streams: entries are compressed as they are written and the archive needs no
//! seeking (sizes go into data descriptors), so it can write straight into a store upload.
//! Compression runs on a thread of its own, beside the code producing the entries' bytes. The
//! reader needs random access: it copies its input into an anonymous temporary file first.
//!
//! Both refuse unsafe entry names (`..`, absolute paths, drive letters, backslashes, NUL). The
//! reader refuses archives whose entry count or declared total size is above its limits or
//! with an entry that declares a compression ratio above its limit (a few MB that inflate to
//! GBs), and counts the bytes it really inflates so an entry that lies about its size is
//! stopped too.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive};

use super::error::{FormatError, Location};
use super::xlsx::spool;

/// Why an entry name is refused, or `None` when it is a safe relative path.
pub fn unsafe_name_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the name is empty");
    }
    if name.contains('\0') {
        return Some("the name contains a NUL character");
    }
    if name.contains('\\') {
        return Some("the name contains a backslash; zip names use `/`");
    }
    if name.starts_with('/') {
        return Some("the name is an absolute path");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some("the name starts with a drive letter");
    }
    if name.split('/').any(|part| part == "..") {
        return Some("the name contains a `..` component");
    }
    None
}

fn check_name(archive: &str, name: &str) -> Result<(), FormatError> {
    match unsafe_name_reason(name) {
        None => Ok(()),
        Some(why) => Err(FormatError::data(
            Location::file(archive),
            format!(
                "zip entry {name:?} refused: {why}; expected a relative path like `dir/file.csv`"
            ),
        )),
    }
}

fn zip_error(archive: &str, e: ZipError) -> FormatError {
    match e {
        ZipError::Io(io) => FormatError::io(archive, io),
        other => FormatError::data(
            Location::file(archive),
            format!("corrupt or unsupported zip archive: {other}"),
        ),
    }
}

/// How an entry is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryOptions {
    /// Deflate level 0-9, or `None` to store without compression.
    pub level: Option<u8>,
    /// Write zip64 headers, for entries of 4 GiB and more.
    pub zip64: bool,
}

impl Default for EntryOptions {
    fn default() -> Self {
        // Level 2: zlib-rs's level 1 is a quicker strategy (~300 MB/s) whose files are ~35 %
        // larger than `zip -1`'s; level 2 (~200 MB/s) makes files the size of `zip -1`'s and,
        // on the deflate thread, still keeps up with a CSV export. Level 6 runs at ~66 MB/s
        // for files only a few per cent smaller.
        EntryOptions {
            level: Some(2),
            zip64: false,
        }
    }
}

/// Bytes gathered before they go to the deflate thread, and the size of the compressed chunks
/// it sends back: large enough that the channel costs nothing per byte, small enough that the
/// two threads overlap from the first chunk.
const CHUNK: usize = 256 * 1024;

/// Chunks in flight towards the deflate thread: a bounded queue, so a fast producer waits for
/// the compressor instead of buffering the whole entry.
const IN_FLIGHT: usize = 4;

/// What the writer asks of its deflate thread.
enum Command {
    /// Start an entry (ends the previous one).
    Start(String, SimpleFileOptions),
    /// Bytes of the current entry.
    Data(Vec<u8>),
    /// Write the central directory and stop.
    Finish,
}

/// What the deflate thread sends back, in archive order.
enum Output {
    /// Bytes of the archive.
    Bytes(Vec<u8>),
    /// The answer to a `Start` or `Finish`.
    Done(Result<(), ZipError>),
    /// Writing entry data failed; the thread has stopped.
    Failed(io::Error),
}

/// The deflate thread's output: archive bytes gathered into chunks sent back to the writer.
struct Chunks {
    buf: Vec<u8>,
    tx: Sender<Output>,
}

impl Chunks {
    fn send(&mut self) {
        if !self.buf.is_empty() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            // A writer that went away (dropped mid-archive) no longer wants the bytes.
            let _ = self.tx.send(Output::Bytes(full));
        }
    }
}

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The deflate thread: runs the `zip` crate's streaming writer (framing, CRC-32, deflate) on
/// the chunks it is given and sends the archive's bytes back.
fn deflate_thread(commands: Receiver<Command>, results: Sender<Output>) {
    let mut zip = zip::ZipWriter::new_stream(Chunks {
        buf: Vec::with_capacity(CHUNK),
        tx: results.clone(),
    });
    for command in commands {
        match command {
            Command::Start(entry, options) => {
                let r = zip.start_file(entry, options);
                let stop = r.is_err();
                let _ = results.send(Output::Done(r));
                if stop {
                    return;
                }
            }
            Command::Data(buf) => {
                if let Err(e) = zip.write_all(&buf) {
                    let _ = results.send(Output::Failed(e));
                    return;
                }
            }
            Command::Finish => {
                let r = zip.finish().map(|w| w.into_inner().send());
                let _ = results.send(Output::Done(r));
                return;
            }
        }
    }
}

/// A streaming zip writer.
///
/// Deflate runs on a thread of its own: the caller's thread produces the entries' bytes (a CSV
/// encoder, say) and writes the archive into `out`, while the deflate thread compresses the
/// chunks it is handed through a bounded channel. On two cores an export then costs about the
/// larger of the two, not their sum. `out` itself never leaves the caller's thread.
pub struct ZipWriter<W: Write> {
    out: Option<W>,
    name: String,
    entries: u64,
    in_entry: bool,
    /// Entry bytes not yet handed to the deflate thread.
    pending: Vec<u8>,
    commands: Option<SyncSender<Command>>,
    results: Receiver<Output>,
    worker: Option<JoinHandle<()>>,
    /// Why the archive cannot go on, once something failed.
    failed: Option<String>,
}

impl<W: Write> ZipWriter<W> {
    /// A zip writer on `out`, named `name` in messages.
    pub fn new(out: W, name: &str) -> Self {
        let (commands, command_rx) = mpsc::sync_channel(IN_FLIGHT);
        let (result_tx, results) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("ferry-deflate".into())
            .spawn(move || deflate_thread(command_rx, result_tx));
        let (commands, worker, failed) = match worker {
            Ok(handle) => (Some(commands), Some(handle), None),
            Err(e) => (
                None,
                None,
                Some(format!("cannot start the deflate thread: {e}")),
            ),
        };
        ZipWriter {
            out: Some(out),
            name: name.to_owned(),
            entries: 0,
            in_entry: false,
            pending: Vec::with_capacity(CHUNK),
            commands,
            results,
            worker,
            failed,
        }
    }

    fn closed(&self) -> FormatError {
        FormatError::Option {
            format: "zip",
            option: "close",
            message: format!("{}: the archive is already closed", self.name),
        }
    }

    fn broken(&self, why: &str) -> io::Error {
        io::Error::other(format!("the zip archive cannot go on: {why}"))
    }

    /// Writes archive bytes to `out`.
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.write_all(bytes),
            None => Err(io::Error::other("the zip archive is closed")),
        }
    }

    /// Writes what the deflate thread has sent so far, without waiting.
    fn drain_ready(&mut self) -> io::Result<()> {
        while let Ok(msg) = self.results.try_recv() {
            match msg {
                Output::Bytes(b) => self.emit(&b)?,
                Output::Failed(e) => return Err(self.fail(e)),
                Output::Done(_) => {}
            }
        }
        Ok(())
    }

    /// Writes what the deflate thread sends until it answers a `Start` or `Finish`.
    fn wait_done(&mut self) -> Result<Result<(), ZipError>, io::Error> {
        loop {
            match self.results.recv() {
                Ok(Output::Bytes(b)) => self.emit(&b)?,
                Ok(Output::Done(r)) => return Ok(r),
                Ok(Output::Failed(e)) => return Err(self.fail(e)),
                Err(_) => return Err(self.fail(io::Error::other("the deflate thread stopped"))),
            }
        }
    }

    /// Records a failure that ends the archive and returns it.
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed.get_or_insert_with(|| e.to_string());
        self.commands = None;
        e
    }

    /// Sends a command, then the pending bytes' fate: a thread that went away left its reason
    /// among the results.
    fn send(&mut self, command: Command) -> io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(self.broken(why));
        }
        let sent = match &self.commands {
            Some(tx) => tx.send(command).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        self.drain_ready()?;
        Err(self.fail(io::Error::other("the deflate thread stopped")))
    }

    /// Hands the pending entry bytes to the deflate thread.
    fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        self.send(Command::Data(full))?;
        self.drain_ready()
    }

    /// Starts an entry (stamped with the current UTC time); what is written with [`Write`] until the next entry or `finish` goes
    /// into it.
    pub fn start_entry(&mut self, entry: &str, opts: EntryOptions) -> Result<(), FormatError> {
        if self.out.is_none() {
            return Err(self.closed());
        }
        check_name(&self.name, entry)?;
        let options = match opts.level {
            Some(level) => SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .compression_level(Some(i64::from(level.min(9)))),
            None => SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
        }
        .large_file(opts.zip64)
        .last_modified_time(zip_now());
        let name = self.name.clone();
        let io_err = |e: io::Error| FormatError::io(&name, e);
        self.send_pending().map_err(io_err)?;
        self.send(Command::Start(entry.to_owned(), options))
            .map_err(io_err)?;
        match self.wait_done().map_err(io_err)? {
            Ok(()) => {}
            Err(e) => {
                self.fail(io::Error::other(e.to_string()));
                return Err(zip_error(&name, e));
            }
        }
        self.entries += 1;
        self.in_entry = true;
        Ok(())
    }

    /// Adds an entry with the contents of `data`; returns the number of bytes read.
    pub fn add(
        &mut self,
        entry: &str,
        mut data: impl Read,
        opts: EntryOptions,
    ) -> Result<u64, FormatError> {
        self.start_entry(entry, opts)?;
        let n = io::copy(&mut data, self).map_err(|e| FormatError::io(&self.name, e))?;
        Ok(n)
    }

    /// Number of entries started so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the central directory and returns the underlying writer (flushed).
    pub fn finish(&mut self) -> Result<W, FormatError> {
        if self.out.is_none() {
            return Err(self.closed());
        }
        let name = self.name.clone();
        let io_err = |e: io::Error| FormatError::io(&name, e);
        self.send_pending().map_err(io_err)?;
        self.send(Command::Finish).map_err(io_err)?;
        let done = self.wait_done().map_err(io_err)?;
        self.commands = None;
        if let Some(worker) = self.worker.take() {
            // The thread has answered `Finish` and returns right after.
            let _ = worker.join();
        }
        done.map_err(|e| zip_error(&name, e))?;
        let mut out = self.out.take().ok_or_else(|| self.closed())?;
        out.flush().map_err(io_err)?;
        self.in_entry = false;
        Ok(out)
    }
}

impl<W: Write> Write for ZipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.is_none() {
            return Err(io::Error::other("the zip archive is closed"));
        }
        if !self.in_entry {
            return Err(io::Error::other("no zip entry has been started"));
        }
        if let Some(why) = &self.failed {
            return Err(self.broken(why));
        }
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= CHUNK {
            self.send_pending()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.drain_ready()?;
        match self.out.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl<W: Write> Drop for ZipWriter<W> {
    fn drop(&mut self) {
        // Closing the channel stops the thread; what it still sends is not wanted.
        self.commands = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Limits of a zip reader against zip bombs.
#[derive(Debug, Clone, Copy)]
pub struct ZipLimits {
    /// Most entries an archive may have.
    pub max_entries: usize,
    /// Most bytes all entries may inflate to, declared or actual.
    pub max_total_size: u64,
    /// Highest compression ratio (uncompressed / compressed size) an entry may have once it is
    /// larger than [`RATIO_FLOOR`]. Real data rarely compresses beyond 20:1; deflate tops out
    /// near 1030:1, which is what bombs use.
    pub max_ratio: u64,
}

/// Entries up to this size (1 MiB) may have any compression ratio: they cannot bomb.
pub const RATIO_FLOOR: u64 = 1 << 20;

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_entries: 10_000,
            max_total_size: 4 << 30,
            max_ratio: 100,
        }
    }
}

/// One entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Its name (a relative path).
    pub name: String,
    /// Declared uncompressed size.
    pub size: u64,
    /// Compressed size.
    pub compressed_size: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// A zip reader over a spooled copy of its input.
pub struct ZipReader {
    archive: ZipArchive<File>,
    name: String,
    entries: Vec<EntryInfo>,
    limits: ZipLimits,
    inflated: u64,
}

impl ZipReader {
    /// Reads the archive's directory, checking names and limits.
    pub fn new(input: impl Read, name: &str, limits: ZipLimits) -> Result<Self, FormatError> {
        let file = spool(input, name)?;
        let mut archive = ZipArchive::new(file).map_err(|e| zip_error(name, e))?;
        if archive.len() > limits.max_entries {
            return Err(FormatError::Limit {
                file: name.to_owned(),
                message: format!(
                    "the archive has {} entries, more than the limit of {} (max_entries)",
                    archive.len(),
                    limits.max_entries
                ),
            });
        }
        let mut entries = Vec::with_capacity(archive.len());
        let mut total = 0u64;
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).map_err(|e| zip_error(name, e))?;
            let entry = f.name().map_err(|e| zip_error(name, e))?.into_owned();
            check_name(name, &entry)?;
            check_ratio(
                name,
                &entry,
                f.size(),
                f.compressed_size(),
                limits.max_ratio,
            )?;
            total = total.saturating_add(f.size());
            entries.push(EntryInfo {
                name: entry,
                size: f.size(),
                compressed_size: f.compressed_size(),
                is_dir: f.is_dir(),
            });
        }
        if total > limits.max_total_size {
            return Err(FormatError::Limit {
                file: name.to_owned(),
                message: format!(
                    "the entries declare {total} bytes uncompressed, more than the limit of {} (max_size)",
                    limits.max_total_size
                ),
            });
        }
        Ok(ZipReader {
            archive,
            name: name.to_owned(),
            entries,
            limits,
            inflated: 0,
        })
    }

    /// The entries, in archive order.
    pub fn entries(&self) -> &[EntryInfo] {
        &self.entries
    }

    /// Inflates entry `entry` into `out`, checking its CRC; returns its size.
    pub fn extract(&mut self, entry: &str, out: &mut dyn Write) -> Result<u64, FormatError> {
        let Some(info) = self.entries.iter().find(|e| e.name == entry).cloned() else {
            return Err(FormatError::data(
                Location::file(&self.name),
                format!(
                    "no entry named {entry:?}; the entries are: {}",
                    self.entries
                        .iter()
                        .take(20)
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let name = self.name.clone();
        let budget = self.limits.max_total_size.saturating_sub(self.inflated);
        let allowed = info.size.min(budget);
        let f = self
            .archive
            .by_name(entry)
            .map_err(|e| zip_error(&name, e))?;
        // One byte more than allowed tells an entry that inflates past its declared size.
        let mut limited = f.take(allowed.saturating_add(1));
        let mut copied = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FormatError::data(
                        Location::file(&name),
                        format!("entry {entry:?} is corrupt: {e}"),
                    ));
                }
            };
            copied += n as u64;
            if copied > allowed {
                return Err(FormatError::Limit {
                    file: name,
                    message: if allowed < info.size {
                        format!(
                            "extracting {entry:?} goes past the total size limit of {} bytes (max_size)",
                            self.limits.max_total_size
                        )
                    } else {
                        format!(
                            "entry {entry:?} inflates to more than its declared {} bytes; refused as a zip bomb",
                            info.size
                        )
                    },
                });
            }
            out.write_all(&buf[..n])
                .map_err(|e| FormatError::io(&name, e))?;
        }
        self.inflated += copied;
        Ok(copied)
    }
}

/// Refuses an entry larger than [`RATIO_FLOOR`] whose size is more than `max_ratio` times its
/// compressed size.
fn check_ratio(
    archive: &str,
    entry: &str,
    size: u64,
    compressed: u64,
    max_ratio: u64,
) -> Result<(), FormatError> {
    if size <= RATIO_FLOOR || size <= compressed.saturating_mul(max_ratio) {
        return Ok(());
    }
    Err(FormatError::Limit {
        file: archive.to_owned(),
        message: format!(
            "entry {entry:?} inflates {compressed} bytes to {size} (a ratio of {}:1, above the limit of {max_ratio}:1, max_ratio); refused as a zip bomb",
            size / compressed.max(1)
        ),
    })
}

/// The current UTC time as a zip (DOS) timestamp; the format's epoch, 1980, if the clock is
/// outside its range.
fn zip_now() -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    let now = chrono::Utc::now();
    let part = |v: u32| u8::try_from(v).unwrap_or(0);
    u16::try_from(now.year())
        .ok()
        .and_then(|y| {
            zip::DateTime::from_date_and_time(
                y,
                part(now.month()),
                part(now.day()),
                part(now.hour()),
                part(now.minute()),
                part(now.second()),
            )
            .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "C:/x",
            "c:x",
            "a\\..\\b",
            "",
        ] {
            assert!(unsafe_name_reason(bad).is_some(), "{bad}");
        }
        for good in ["a.csv", "dir/a.csv", "a..b/c", ".hidden"] {
            assert!(unsafe_name_reason(good).is_none(), "{good}");
        }
    }

    #[test]
    fn round_trip_and_limits() {
        let mut w = ZipWriter::new(Vec::new(), "t.zip");
        w.add("a.txt", "hello".as_bytes(), EntryOptions::default())
            .unwrap();
        w.start_entry(
            "dir/b.txt",
            EntryOptions {
                level: None,
                zip64: false,
            },
        )
        .unwrap();
        w.write_all(&[b'x'; 10_000]).unwrap();
        assert!(w.start_entry("../evil", EntryOptions::default()).is_err());
        let bytes = w.finish().unwrap();

        // Entries carry the time they were written, not the format's 1980 epoch.
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.as_slice())).unwrap();
        let stamped = archive.by_index(0).unwrap().last_modified().unwrap();
        assert_eq!(
            i32::from(stamped.year()),
            chrono::Datelike::year(&chrono::Utc::now())
        );
        let mut r = ZipReader::new(bytes.as_slice(), "t.zip", ZipLimits::default()).unwrap();
        assert_eq!(r.entries().len(), 2);
        let mut out = Vec::new();
        assert_eq!(r.extract("a.txt", &mut out).unwrap(), 5);
        assert_eq!(out, b"hello");

        let tight = ZipLimits {
            max_total_size: 100,
            ..ZipLimits::default()
        };
        let e = ZipReader::new(bytes.as_slice(), "t.zip", tight)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("max_size"), "{e}");
        let one = ZipLimits {
            max_entries: 1,
            ..ZipLimits::default()
        };
        assert!(ZipReader::new(bytes.as_slice(), "t.zip", one).is_err());
        let e = ZipReader::new(&b"PK\x03\x04garbage"[..], "bad.zip", ZipLimits::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("bad.zip"), "{e}");
    }

    /// A 3 MiB entry of zeros deflates to about 3 KiB (ratio ~1000:1): refused by default,
    /// naming the entry, before anything is inflated; accepted with a higher `max_ratio`.
    /// Small entries may compress as well as they like.
    #[test]
    fn compression_ratio_is_limited() {
        let mut w = ZipWriter::new(Vec::new(), "bomb.zip");
        w.add("small.txt", &[0u8; 100_000][..], EntryOptions::default())
            .unwrap();
        w.add(
            "zeros.bin",
            io::repeat(0).take(3 << 20),
            EntryOptions::default(),
        )
        .unwrap();
        let bytes = w.finish().unwrap();
        assert!(bytes.len() < 64 * 1024, "{}", bytes.len());
        let e = ZipReader::new(bytes.as_slice(), "bomb.zip", ZipLimits::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("bomb.zip: entry \"zeros.bin\" inflates") && e.contains("max_ratio"),
            "{e}"
        );
        let lenient = ZipLimits {
            max_ratio: 10_000,
            ..ZipLimits::default()
        };
        let mut r = ZipReader::new(bytes.as_slice(), "bomb.zip", lenient).unwrap();
        assert_eq!(r.extract("zeros.bin", &mut io::sink()).unwrap(), 3 << 20);
    }
}
