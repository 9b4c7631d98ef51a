//! Zip archives on the `zip` crate, deflating through flate2's zlib-rs backend (the fastest
//! pure-Rust deflate measured here: ~300 MB/s at level 1).
//!
//! The writer streams: entries are compressed as they are written and the archive needs no
//! seeking (sizes go into data descriptors), so it can write straight into a store upload. The
//! reader needs random access: it copies its input into an anonymous temporary file first.
//!
//! Both refuse unsafe entry names (`..`, absolute paths, drive letters, backslashes, NUL). The
//! reader refuses archives whose entry count or declared total size is above its limits or
//! with an entry that declares a compression ratio above its limit (a few MB that inflate to
//! GBs), and counts the bytes it really inflates so an entry that lies about its size is
//! stopped too.

use std::fs::File;
use std::io::{self, Read, Write};

use zip::result::ZipError;
use zip::write::{SimpleFileOptions, StreamWriter};
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
        // Level 1 because deflate is otherwise the slowest stage of an export: ~300 MB/s at
        // level 1 against ~66 MB/s at level 6, for files only somewhat larger.
        EntryOptions {
            level: Some(1),
            zip64: false,
        }
    }
}

/// A streaming zip writer.
pub struct ZipWriter<W: Write> {
    inner: Option<zip::ZipWriter<StreamWriter<W>>>,
    name: String,
    entries: u64,
    in_entry: bool,
}

impl<W: Write> ZipWriter<W> {
    /// A zip writer on `out`, named `name` in messages.
    pub fn new(out: W, name: &str) -> Self {
        ZipWriter {
            inner: Some(zip::ZipWriter::new_stream(out)),
            name: name.to_owned(),
            entries: 0,
            in_entry: false,
        }
    }

    fn writer(&mut self) -> Result<&mut zip::ZipWriter<StreamWriter<W>>, FormatError> {
        self.inner.as_mut().ok_or_else(|| FormatError::Option {
            format: "zip",
            option: "close",
            message: format!("{}: the archive is already closed", self.name),
        })
    }

    /// Starts an entry (stamped with the current UTC time); what is written with [`Write`] until the next entry or `finish` goes
    /// into it.
    pub fn start_entry(&mut self, entry: &str, opts: EntryOptions) -> Result<(), FormatError> {
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
        self.writer()?
            .start_file(entry, options)
            .map_err(|e| zip_error(&name, e))?;
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
        let name = self.name.clone();
        let w = self.writer()?;
        let n = io::copy(&mut data, w).map_err(|e| FormatError::io(&name, e))?;
        Ok(n)
    }

    /// Number of entries started so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the central directory and returns the underlying writer (flushed).
    pub fn finish(&mut self) -> Result<W, FormatError> {
        let w = self.inner.take().ok_or_else(|| FormatError::Option {
            format: "zip",
            option: "close",
            message: format!("{}: the archive is already closed", self.name),
        })?;
        let mut out = w
            .finish()
            .map_err(|e| zip_error(&self.name, e))?
            .into_inner();
        out.flush().map_err(|e| FormatError::io(&self.name, e))?;
        Ok(out)
    }
}

impl<W: Write> Write for ZipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.in_entry {
            return Err(io::Error::other("no zip entry has been started"));
        }
        match self.inner.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("the zip archive is closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.inner.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
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
