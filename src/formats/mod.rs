//! Row formats: CSV, JSON, NDJSON, XLSX and SQL `INSERT` statements, plus zip archives and Redis
//! RDB files ([`rdb`]: one row per key, its value as a `DUMP` payload).
//!
//! Plain Rust on `std::io::Read` / `std::io::Write`: no Lua and no jobs in here. Every reader
//! is a [`RowSource`] and every writer a [`RowSink`] over the row model of [`row`]; [`pipe`]
//! moves rows from one to the other without allocating per row. Readers type values only as
//! their options say ([`ReadOptions::types`]); nothing is inferred silently.
//!
//! Bad input is an [`FormatError::Data`] naming the input, the line and the field; with
//! [`OnError::Continue`] a reader skips such rows and counts them in a [`SkipReport`].

mod csv;
mod error;
mod json;
mod options;
mod pipe;
mod projection;
pub mod rdb;
pub mod row;
mod sql;
mod text;
mod xlsx;
pub mod zip;

pub use self::csv::{CsvReader, CsvWriter};
pub use error::{FormatError, Location, OnError, SkipReport};
pub use json::{JsonReader, JsonWriter, NdjsonReader, NdjsonWriter};
pub use options::{CsvOptions, ReadOptions, TimestampUnit, Type, WriteOptions};
pub use pipe::{pipe, pipe_batches};
pub use projection::{ProjectedSink, ProjectedSource, Projection};
pub use rdb::{RdbEntry, RdbError, RdbReader, RdbSink, RdbSource, RdbSummary, RdbWriter};
pub use row::{MemorySink, MemorySource, RowSink, RowSource, Value};
pub use sql::{
    SqlDialect, SqlOptions, SqlStatement, SqlStatements, SqlWriter, quote_identifier,
    quote_literal, quote_literal_in,
};
pub use xlsx::{XlsxOptions, XlsxReader, XlsxWriter};
