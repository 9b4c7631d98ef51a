//! Cuts the top-level JSON array into its elements: a small scanner that tracks strings and
//! nesting, so each element is parsed on its own and memory stays at one object.

use std::io::{BufRead, BufReader, Read};

use crate::formats::error::{FormatError, Location};

/// Reads bytes while counting lines and columns.
pub(super) struct Scanner<R> {
    pub(super) inner: BufReader<R>,
    pub(super) line: u64,
    pub(super) col: u64,
    pub(super) name: String,
}

impl<R: Read> Scanner<R> {
    pub(super) fn peek(&mut self) -> Result<Option<u8>, FormatError> {
        let buf = self
            .inner
            .fill_buf()
            .map_err(|e| FormatError::io(&self.name, e))?;
        Ok(buf.first().copied())
    }

    pub(super) fn bump(&mut self, b: u8) {
        self.inner.consume(1);
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.col += 1;
        }
    }

    pub(super) fn skip_ws(&mut self) -> Result<Option<u8>, FormatError> {
        while let Some(b) = self.peek()? {
            if !b.is_ascii_whitespace() {
                return Ok(Some(b));
            }
            self.bump(b);
        }
        Ok(None)
    }

    pub(super) fn here(&self) -> Location {
        Location::file(&self.name)
            .at_line(self.line)
            .at_column(self.col)
    }

    /// Copies one value starting at `{` into `out`, up to its matching `}`.
    pub(super) fn take_object(&mut self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        out.clear();
        let start = self.here();
        let mut depth = 0u32;
        let mut in_str = false;
        let mut escaped = false;
        loop {
            let buf = self
                .inner
                .fill_buf()
                .map_err(|e| FormatError::io(&self.name, e))?;
            if buf.is_empty() {
                return Err(FormatError::data(
                    start,
                    "unexpected end of input inside this object; expected `}`",
                ));
            }
            let mut used = 0;
            let mut done = false;
            for &b in buf {
                used += 1;
                if b == b'\n' {
                    self.line += 1;
                    self.col = 1;
                } else if b & 0xC0 != 0x80 {
                    self.col += 1;
                }
                if in_str {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                    }
                } else {
                    match b {
                        b'"' => in_str = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                done = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            out.extend_from_slice(&buf[..used]);
            self.inner.consume(used);
            if done {
                return Ok(());
            }
        }
    }
}
