//! Options shared by the readers and writers. The Lua bindings fill these from option tables.

use std::collections::HashMap;

use super::error::{FormatError, OnError};

/// The type a reader gives a column's values. Text formats carry every value as text, so a
/// reader types a column only as told; the default is [`Type::Text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Type {
    /// Keep the text as it is.
    #[default]
    Text,
    /// A decimal `i64`; an empty field is null.
    Integer,
    /// An `f64` (`1.5`, `1e300`, `NaN`, `inf`); an empty field is null.
    Float,
    /// `true`/`false`, `1`/`0`, `yes`/`no` (any case); an empty field is null.
    Boolean,
    /// Hex digits (an optional `\x` prefix); an empty field is empty bytes.
    Bytes,
    /// RFC 3339 text (`2024-05-01T12:00:00Z`) read as an integer epoch in the timestamp unit;
    /// an empty field is null.
    Timestamp,
}

impl Type {
    /// Parses a type name as scripts write it.
    pub fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "text" | "string" => Type::Text,
            "integer" | "int" => Type::Integer,
            "float" | "number" | "real" => Type::Float,
            "boolean" | "bool" => Type::Boolean,
            "bytes" | "blob" => Type::Bytes,
            "timestamp" => Type::Timestamp,
            _ => return None,
        })
    }

    /// The names [`Type::parse`] accepts, for messages.
    pub const NAMES: &'static str = "text, integer, float, boolean, bytes, timestamp";
}

/// Unit of integer epoch timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampUnit {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[default]
    Seconds,
    /// Milliseconds since the epoch.
    Milliseconds,
}

impl TimestampUnit {
    /// Parses `s`/`seconds` or `ms`/`milliseconds`.
    pub fn parse(name: &str) -> Option<TimestampUnit> {
        match name {
            "s" | "seconds" => Some(TimestampUnit::Seconds),
            "ms" | "milliseconds" => Some(TimestampUnit::Milliseconds),
            _ => None,
        }
    }
}

/// Options every reader takes.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The input's name in messages.
    pub name: String,
    /// Types by column name; columns not named are [`ReadOptions::default_type`].
    pub types: HashMap<String, Type>,
    /// Type of columns not in `types`.
    pub default_type: Type,
    /// Keep only these columns, in this order.
    pub columns: Option<Vec<String>>,
    /// Drop these columns.
    pub exclude: Vec<String>,
    /// What to do with a malformed row.
    pub on_error: OnError,
    /// Unit of `timestamp` columns.
    pub timestamp_unit: TimestampUnit,
}

impl ReadOptions {
    /// Options with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        ReadOptions {
            name: name.into(),
            ..ReadOptions::default()
        }
    }

    /// The type of each column in `columns`.
    pub(crate) fn types_for(&self, columns: &[String]) -> Vec<Type> {
        columns
            .iter()
            .map(|c| self.types.get(c).copied().unwrap_or(self.default_type))
            .collect()
    }

    /// Fails when `types` names a column that the input does not have: a typo there would
    /// otherwise silently leave a column as text.
    pub(crate) fn check_types(
        &self,
        format: &'static str,
        columns: &[String],
    ) -> Result<(), FormatError> {
        for name in self.types.keys() {
            if !columns.iter().any(|c| c == name) {
                return Err(FormatError::Option {
                    format,
                    option: "types",
                    message: format!(
                        "{}: no column named `{name}`; the columns are: {}",
                        self.name,
                        columns.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Options every writer takes. Applied in this order: `columns`/`exclude` choose the columns,
/// `timestamp_columns` converts values, `header` renames.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The output's name in messages.
    pub name: String,
    /// Write only these columns, in this order.
    pub columns: Option<Vec<String>>,
    /// Leave these columns out.
    pub exclude: Vec<String>,
    /// Names to write instead of the column names (custom CSV headers, JSON keys).
    pub header: Option<Vec<String>>,
    /// Integer epoch columns to write as RFC 3339 text.
    pub timestamp_columns: Vec<String>,
    /// Unit of those epochs.
    pub timestamp_unit: TimestampUnit,
}

impl WriteOptions {
    /// Options with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        WriteOptions {
            name: name.into(),
            ..WriteOptions::default()
        }
    }
}

/// CSV specifics, for both directions.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Field delimiter (default `,`).
    pub delimiter: u8,
    /// Quote character (default `"`).
    pub quote: u8,
    /// Reading: the first line holds the column names. Writing: write a header line.
    pub header: bool,
    /// Reading: column names to use (the header line, if any, is skipped).
    pub names: Option<Vec<String>>,
    /// The text that stands for null (`None`: the empty string). Writing: written bare for
    /// null, while any other value whose text equals it is quoted. Reading: an unquoted field
    /// equal to it is null, a quoted one never is.
    pub null: Option<String>,
    /// Writing: start with a UTF-8 byte order mark (for Excel).
    pub bom: bool,
    /// Writing: `\r\n` line ends instead of `\n`.
    pub crlf: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            header: true,
            names: None,
            null: None,
            bom: false,
            crlf: false,
        }
    }
}
