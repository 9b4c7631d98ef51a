//! Errors of the formats, with the input, line, column and field a user needs to find the
//! problem, and the report of rows skipped under `on_error = "continue"`.

use std::fmt;

/// Where in an input a problem is. Lines and fields count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The input's name (a path, `query`, `<string>`).
    pub file: String,
    /// Line of the record or statement.
    pub line: Option<u64>,
    /// Column (character on the line) when the format knows it.
    pub column: Option<u64>,
    /// Field: its 1-based position and, when known, its name.
    pub field: Option<(usize, Option<String>)>,
}

impl Location {
    /// A location naming only the input.
    pub fn file(file: impl Into<String>) -> Self {
        Location {
            file: file.into(),
            ..Location::default()
        }
    }

    /// The same location at `line`.
    pub fn at_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    /// The same location at `column`.
    pub fn at_column(mut self, column: u64) -> Self {
        self.column = Some(column);
        self
    }

    /// The same location at field `index` (0-based here, shown 1-based) named `name`.
    pub fn at_field(mut self, index: usize, name: Option<&str>) -> Self {
        self.field = Some((index + 1, name.map(str::to_owned)));
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
            if let Some(col) = self.column {
                write!(f, ", column {col}")?;
            }
        }
        match &self.field {
            Some((n, Some(name))) => write!(f, ", field {n} ({name})"),
            Some((n, None)) => write!(f, ", field {n}"),
            None => Ok(()),
        }
    }
}

/// An error of a format reader or writer.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The input is malformed or a value does not have the type the options ask for.
    #[error("{at}: {message}")]
    Data {
        /// Where.
        at: Location,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Reading or writing the underlying bytes failed.
    #[error("{file}: {source}")]
    Io {
        /// The input or output.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An option is invalid.
    #[error("{format} option `{option}`: {message}")]
    Option {
        /// `csv`, `json`, ...
        format: &'static str,
        /// The option's name.
        option: &'static str,
        /// What was expected.
        message: String,
    },
    /// A limit (size, entry count, sheet rows) was reached.
    #[error("{file}: {message}")]
    Limit {
        /// The input or output.
        file: String,
        /// Which limit and its value.
        message: String,
    },
    /// The run is being stopped (a cancel or its timeout): the transfer stopped.
    #[error(transparent)]
    Cancelled(#[from] crate::cancel::Cancelled),
    /// An error of another layer a source or sink wraps (a database, a script).
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl FormatError {
    /// A [`FormatError::Data`] at `at`.
    pub fn data(at: Location, message: impl Into<String>) -> Self {
        FormatError::Data {
            at,
            message: message.into(),
        }
    }

    /// An I/O error on `file`.
    pub fn io(file: &str, source: std::io::Error) -> Self {
        FormatError::Io {
            file: file.to_owned(),
            source,
        }
    }

    /// Wraps another layer's error.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        FormatError::Other(Box::new(e))
    }

    /// The line of a data error, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            FormatError::Data { at, .. } => at.line,
            _ => None,
        }
    }
}

/// What a reader does with a malformed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop with an error (the default).
    #[default]
    Fail,
    /// Skip the row, count it and remember the first few.
    Continue,
}

/// How many rows a reader skipped and why, for the first [`SkipReport::KEEP`] of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipReport {
    /// Number of rows skipped.
    pub count: u64,
    /// The first skipped rows: line (if known) and message.
    pub first: Vec<(Option<u64>, String)>,
}

impl SkipReport {
    /// How many skipped rows are kept with their message.
    pub const KEEP: usize = 10;

    /// Counts a skipped row and keeps its error if it is among the first.
    pub fn record(&mut self, err: &FormatError) {
        self.count += 1;
        if self.first.len() < Self::KEEP {
            self.first.push((err.line(), err.to_string()));
        }
    }
}

/// Handles a row error under a policy: `Ok(())` when the row is to be skipped (and recorded),
/// the error itself otherwise. Only data errors can be skipped: I/O errors always stop.
pub(crate) fn skip_or_fail(
    policy: OnError,
    report: &mut SkipReport,
    err: FormatError,
) -> Result<(), FormatError> {
    match (policy, &err) {
        (OnError::Continue, FormatError::Data { .. }) => {
            report.record(&err);
            Ok(())
        }
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_display() {
        let at = Location::file("orders.csv")
            .at_line(3)
            .at_field(1, Some("price"));
        assert_eq!(at.to_string(), "orders.csv: line 3, field 2 (price)");
        let at = Location::file("a.json").at_line(2).at_column(7);
        assert_eq!(at.to_string(), "a.json: line 2, column 7");
    }
}
