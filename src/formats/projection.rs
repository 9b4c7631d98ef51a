//! Column choice, renaming and timestamp conversion, as a wrapper around any source or sink:
//! the `columns`, `exclude`, `header` and `timestamp_columns` options of every format.

use super::error::{FormatError, Location, SkipReport};
use super::options::{ReadOptions, TimestampUnit, WriteOptions};
use super::row::{RowSink, RowSource, Value};
use super::text::format_timestamp;

/// A mapping from input columns to output columns.
#[derive(Debug, Clone)]
pub struct Projection {
    indices: Vec<usize>,
    columns: Vec<String>,
    timestamps: Vec<bool>,
    unit: TimestampUnit,
    identity: bool,
    name: String,
}

impl Projection {
    /// Builds the mapping. `include` keeps these columns in this order, `exclude` drops some,
    /// `rename` gives the output names (one per kept column), `timestamps` names integer epoch
    /// columns (input names) to write as RFC 3339 text. Unknown names are errors that list the
    /// columns there are.
    pub fn new(
        name: &str,
        input: &[String],
        include: Option<&[String]>,
        exclude: &[String],
        rename: Option<&[String]>,
        timestamps: &[String],
        unit: TimestampUnit,
    ) -> Result<Projection, FormatError> {
        let unknown = |option: &'static str, col: &str| FormatError::Option {
            format: "columns",
            option,
            message: format!(
                "{name}: no column named `{col}`; the columns are: {}",
                input.join(", ")
            ),
        };
        let find = |option, col: &str| {
            input
                .iter()
                .position(|c| c == col)
                .ok_or_else(|| unknown(option, col))
        };
        let mut indices: Vec<usize> = match include {
            Some(list) => list
                .iter()
                .map(|c| find("columns", c))
                .collect::<Result<_, _>>()?,
            None => (0..input.len()).collect(),
        };
        for col in exclude {
            let i = find("exclude", col)?;
            indices.retain(|&j| j != i);
        }
        for col in timestamps {
            find("timestamp_columns", col)?;
        }
        let columns: Vec<String> = match rename {
            Some(names) => {
                if names.len() != indices.len() {
                    return Err(FormatError::Option {
                        format: "columns",
                        option: "header",
                        message: format!(
                            "{name}: {} names given for {} columns ({})",
                            names.len(),
                            indices.len(),
                            indices
                                .iter()
                                .map(|&i| input[i].as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                names.to_vec()
            }
            None => indices.iter().map(|&i| input[i].clone()).collect(),
        };
        let ts: Vec<bool> = indices
            .iter()
            .map(|&i| timestamps.iter().any(|t| *t == input[i]))
            .collect();
        let identity = indices.len() == input.len()
            && indices.iter().enumerate().all(|(a, &b)| a == b)
            && !ts.iter().any(|&t| t);
        Ok(Projection {
            indices,
            columns,
            timestamps: ts,
            unit,
            identity,
            name: name.to_owned(),
        })
    }

    /// The projection a reader's options ask for (no renaming, no conversion).
    pub fn for_reader(input: &[String], opts: &ReadOptions) -> Result<Projection, FormatError> {
        Projection::new(
            &opts.name,
            input,
            opts.columns.as_deref(),
            &opts.exclude,
            None,
            &[],
            opts.timestamp_unit,
        )
    }

    /// The projection a writer's options ask for.
    pub fn for_writer(input: &[String], opts: &WriteOptions) -> Result<Projection, FormatError> {
        Projection::new(
            &opts.name,
            input,
            opts.columns.as_deref(),
            &opts.exclude,
            opts.header.as_deref(),
            &opts.timestamp_columns,
            opts.timestamp_unit,
        )
    }

    /// Output column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// True when the output is the input unchanged.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// Maps `input` to `out`, reusing `out`'s allocations.
    pub fn apply(&self, input: &[Value], out: &mut Vec<Value>) -> Result<(), FormatError> {
        out.resize(self.indices.len(), Value::Null);
        for (k, (&i, slot)) in self.indices.iter().zip(out.iter_mut()).enumerate() {
            let src = &input[i];
            if self.timestamps[k] {
                *slot = self.timestamp(src, k)?;
            } else {
                assign(slot, src);
            }
        }
        Ok(())
    }

    fn timestamp(&self, v: &Value, k: usize) -> Result<Value, FormatError> {
        let epoch = match v {
            Value::Int(i) => *i,
            Value::Float(f) if f.is_finite() => match self.unit {
                TimestampUnit::Seconds => (*f * 1000.0).round() as i64,
                TimestampUnit::Milliseconds => f.round() as i64,
            },
            // Null stays null; text (already converted) passes.
            Value::Null | Value::Text(_) => return Ok(v.clone()),
            other => {
                return Err(FormatError::data(
                    Location::file(&self.name).at_field(k, Some(&self.columns[k])),
                    format!(
                        "timestamp_columns: expected an integer epoch, got {}",
                        other.type_name()
                    ),
                ));
            }
        };
        let (epoch, unit) = match (v, self.unit) {
            (Value::Float(_), _) => (epoch, TimestampUnit::Milliseconds),
            (_, u) => (epoch, u),
        };
        format_timestamp(epoch, unit)
            .map(Value::Text)
            .ok_or_else(|| {
                FormatError::data(
                    Location::file(&self.name).at_field(k, Some(&self.columns[k])),
                    format!("timestamp_columns: epoch {epoch} is out of range"),
                )
            })
    }
}

/// Copies `src` into `slot`, reusing the slot's text or bytes allocation.
pub(crate) fn assign(slot: &mut Value, src: &Value) {
    match src {
        Value::Text(s) => slot.set_text(s),
        Value::Bytes(b) => slot.set_bytes(b),
        other => *slot = other.clone(),
    }
}

/// A source seen through a [`Projection`].
pub struct ProjectedSource<S> {
    inner: S,
    projection: Projection,
    scratch: Vec<Value>,
}

impl<S: RowSource> ProjectedSource<S> {
    /// Wraps `inner`; the projection must have been built from `inner.columns()`.
    pub fn new(inner: S, projection: Projection) -> Self {
        ProjectedSource {
            inner,
            projection,
            scratch: Vec::new(),
        }
    }
}

impl<S: RowSource> RowSource for ProjectedSource<S> {
    fn columns(&self) -> &[String] {
        self.projection.columns()
    }
    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        if self.projection.is_identity() {
            return self.inner.next_row(row);
        }
        if !self.inner.next_row(&mut self.scratch)? {
            return Ok(false);
        }
        self.projection.apply(&self.scratch, row)?;
        Ok(true)
    }
    fn skipped(&self) -> Option<&SkipReport> {
        self.inner.skipped()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// A sink that applies the writer options (`columns`, `exclude`, `header`,
/// `timestamp_columns`) before its inner sink sees the rows.
pub struct ProjectedSink<K> {
    inner: K,
    opts: WriteOptions,
    projection: Option<Projection>,
    scratch: Vec<Value>,
}

impl<K: RowSink> ProjectedSink<K> {
    /// Wraps `inner` with `opts`.
    pub fn new(inner: K, opts: WriteOptions) -> Self {
        ProjectedSink {
            inner,
            opts,
            projection: None,
            scratch: Vec::new(),
        }
    }

    /// The wrapped sink.
    pub fn inner_mut(&mut self) -> &mut K {
        &mut self.inner
    }
}

impl<K: RowSink> RowSink for ProjectedSink<K> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        let p = Projection::for_writer(columns, &self.opts)?;
        self.inner.begin(p.columns())?;
        self.projection = Some(p);
        Ok(())
    }
    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        match &self.projection {
            Some(p) if p.is_identity() => self.inner.write_row(row),
            Some(p) => {
                p.apply(row, &mut self.scratch)?;
                self.inner.write_row(&self.scratch)
            }
            None => Err(FormatError::Option {
                format: "sink",
                option: "columns",
                message: format!("{}: a row was written before the columns", self.opts.name),
            }),
        }
    }
    fn finish(&mut self) -> Result<(), FormatError> {
        self.inner.finish()
    }
    fn started(&self) -> bool {
        self.projection.is_some()
    }
    fn pull(&mut self, src: &mut dyn RowSource) -> Option<Result<u64, FormatError>> {
        // Only rows that go in as they come: a projection needs them one by one.
        let p = match Projection::for_writer(src.columns(), &self.opts) {
            Ok(p) if p.is_identity() => p,
            Ok(_) => return None,
            Err(e) => return Some(Err(e)),
        };
        let taken = self.inner.pull(src)?;
        self.projection = Some(p);
        Some(taken)
    }
    fn raw_csv_options(&self) -> Option<super::CsvOptions> {
        let o = &self.opts;
        let plain = o.columns.is_none()
            && o.exclude.is_empty()
            && o.header.is_none()
            && o.timestamp_columns.is_empty();
        if plain && self.projection.is_none() {
            self.inner.raw_csv_options()
        } else {
            None
        }
    }
    fn raw_csv_begin(&mut self, columns: &[String]) -> Option<&mut dyn std::io::Write> {
        let p = Projection::for_writer(columns, &self.opts).ok()?;
        if !p.is_identity() {
            return None;
        }
        self.projection = Some(p);
        self.inner.raw_csv_begin(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn include_exclude_rename_timestamp() {
        let input = cols(&["id", "name", "secret", "created"]);
        let p = Projection::new(
            "t",
            &input,
            Some(&cols(&["created", "id", "secret"])),
            &cols(&["secret"]),
            Some(&cols(&["Created", "ID"])),
            &cols(&["created"]),
            TimestampUnit::Seconds,
        )
        .unwrap();
        assert_eq!(p.columns(), cols(&["Created", "ID"]));
        let mut out = Vec::new();
        p.apply(
            &[
                Value::Int(7),
                Value::Text("x".into()),
                Value::Null,
                Value::Int(1_574_405_175),
            ],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![Value::Text("2019-11-22T06:46:15Z".into()), Value::Int(7)]
        );
    }

    #[test]
    fn unknown_column_lists_the_columns() {
        let e = Projection::new(
            "t",
            &cols(&["a", "b"]),
            Some(&cols(&["c"])),
            &[],
            None,
            &[],
            TimestampUnit::Seconds,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`c`") && e.contains("a, b"), "{e}");
    }
}
