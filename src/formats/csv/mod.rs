//! CSV: a streaming reader that splits plain lines where they lie in its buffer and hands
//! quoted ones to `csv_core` (the `csv` crate's parser), with no allocation per row once the
//! buffers have grown, and a writer that quotes by the `csv` crate's rule and formats numbers
//! without allocating.
//!
//! Null and the empty string are told apart as PostgreSQL's `COPY ... (FORMAT csv)` does: the
//! null marker (option `null`, default the empty string) stands for null only when it is
//! written bare. The writer quotes any other value whose text equals the marker (`""`, or
//! `"NULL"` with marker `NULL`), and the reader never takes a quoted field for null.
//!
//! - `reader.rs`: [`CsvReader`], the plain-line splitter and the `csv_core` path.
//! - `split.rs`: the plain-line splitter's scan, 16 bytes at a time.
//! - `number.rs`: the fast integer and float parsers of the typed reader.
//! - `writer.rs`: [`CsvWriter`].

mod number;
mod reader;
mod split;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::CsvReader;
pub use writer::CsvWriter;
