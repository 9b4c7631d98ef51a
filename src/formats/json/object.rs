//! One JSON object read straight into the row buffer (keys looked up by name, no
//! intermediate `serde_json::Value`), learning the columns from the first object.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::formats::error::{FormatError, Location};
use crate::formats::options::{ReadOptions, TimestampUnit, Type};
use crate::formats::row::Value;
use crate::formats::text::{coerce, parse_typed};

/// Turns one JSON object into a row, learning the columns from the first one.
pub(super) struct ObjectParser {
    pub(super) name: String,
    pub(super) columns: Vec<String>,
    /// Learn columns from the first object (no `columns` option).
    pub(super) learn: bool,
    pub(super) learned: bool,
    pub(super) exclude: Vec<String>,
    pub(super) types: Vec<Type>,
    pub(super) read_opts: ReadOptions,
    pub(super) unit: TimestampUnit,
}

impl ObjectParser {
    pub(super) fn new(opts: &ReadOptions) -> Self {
        let columns = opts.columns.clone().unwrap_or_default();
        ObjectParser {
            name: opts.name.clone(),
            learn: opts.columns.is_none(),
            learned: false,
            types: opts.types_for(&columns),
            columns,
            exclude: opts.exclude.clone(),
            read_opts: opts.clone(),
            unit: opts.timestamp_unit,
        }
    }

    /// Parses `bytes` (one object that starts at `line`:`col` of the input) into `row`.
    pub(super) fn parse(
        &mut self,
        bytes: &[u8],
        line: u64,
        col: u64,
        row: &mut Vec<Value>,
    ) -> Result<(), FormatError> {
        let learning = self.learn && !self.learned;
        row.clear();
        row.resize(self.columns.len(), Value::Null);
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut state = ParseState {
            parser: self,
            row,
            learning,
            error: None,
        };
        let result = (&mut state).deserialize(&mut de).and_then(|_| de.end());
        if let Some(e) = state.error {
            return Err(e.at_line_of(line));
        }
        if let Err(e) = result {
            let (l, c) = (e.line() as u64, e.column() as u64);
            let (line, column) = if l <= 1 {
                (line, col + c.saturating_sub(1))
            } else {
                (line + l - 1, c)
            };
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            return Err(FormatError::data(
                Location::file(&self.name).at_line(line).at_column(column),
                format!("invalid JSON: {msg}"),
            ));
        }
        if learning {
            self.learned = true;
            for ex in &self.exclude {
                if !self.columns.contains(ex) {
                    return Err(FormatError::Option {
                        format: "json",
                        option: "exclude",
                        message: format!(
                            "{}: no column named `{ex}`; the columns are: {}",
                            self.name,
                            self.columns.join(", ")
                        ),
                    });
                }
            }
            self.read_opts.check_types("json", &self.columns)?;
            self.types = self.read_opts.types_for(&self.columns);
            // Values were stored as they came; type them now that the types are known.
            for (k, slot) in row.iter_mut().enumerate() {
                coerce(slot, self.types[k], self.unit)
                    .map_err(|m| field_error(&self.name, line, k, &self.columns[k], m))?;
            }
        }
        Ok(())
    }

    /// Columns after `exclude`, and a row cut down to them.
    pub(super) fn visible(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| !self.exclude.contains(c))
            .cloned()
            .collect()
    }
}

pub(super) fn field_error(name: &str, line: u64, k: usize, col: &str, m: String) -> FormatError {
    FormatError::data(Location::file(name).at_line(line).at_field(k, Some(col)), m)
}

/// A deferred row error raised inside the serde visitor (line filled in later).
pub(super) struct RowIssue {
    pub(super) field: Option<(usize, String)>,
    pub(super) message: String,
    pub(super) name: String,
}

impl RowIssue {
    pub(super) fn at_line_of(self, line: u64) -> FormatError {
        let mut at = Location::file(&self.name).at_line(line);
        if let Some((k, col)) = &self.field {
            at = at.at_field(*k, Some(col));
        }
        FormatError::data(at, self.message)
    }
}

struct ParseState<'a> {
    pub(super) parser: &'a mut ObjectParser,
    pub(super) row: &'a mut Vec<Value>,
    pub(super) learning: bool,
    pub(super) error: Option<RowIssue>,
}

impl<'de> DeserializeSeed<'de> for &mut ParseState<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut ParseState<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one row)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let idx = match self.parser.columns.iter().position(|c| *c == *key) {
                Some(i) => Some(i),
                None if self.learning => {
                    self.parser.columns.push(key.to_string());
                    self.row.push(Value::Null);
                    Some(self.parser.columns.len() - 1)
                }
                None if !self.parser.learn => None,
                None => {
                    self.error = Some(RowIssue {
                        field: None,
                        message: format!(
                            "unexpected key `{key}`: the columns (the keys of the first object) are {}; name the columns to read with the `columns` option",
                            self.parser.columns.join(", ")
                        ),
                        name: self.parser.name.clone(),
                    });
                    return Err(de::Error::custom("unexpected key"));
                }
            };
            match idx {
                Some(k) => {
                    let ty = if self.learning {
                        Type::Text
                    } else {
                        self.parser.types[k]
                    };
                    let seed = SlotSeed {
                        slot: &mut self.row[k],
                        ty,
                        unit: self.parser.unit,
                        learning: self.learning,
                    };
                    if let Err(m) = map.next_value_seed(seed)? {
                        self.error = Some(RowIssue {
                            field: Some((k, self.parser.columns[k].clone())),
                            message: m,
                            name: self.parser.name.clone(),
                        });
                        return Err(de::Error::custom("bad value"));
                    }
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Stores one JSON value in a row slot, typed as told. The inner `Err` is a typing problem.
struct SlotSeed<'a> {
    pub(super) slot: &'a mut Value,
    pub(super) ty: Type,
    pub(super) unit: TimestampUnit,
    pub(super) learning: bool,
}

impl<'de> DeserializeSeed<'de> for SlotSeed<'_> {
    type Value = Result<(), String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl SlotSeed<'_> {
    pub(super) fn store(self, v: Value) -> Result<(), String> {
        *self.slot = v;
        if self.learning {
            return Ok(());
        }
        coerce(self.slot, self.ty, self.unit)
    }
}

impl<'de> Visitor<'de> for SlotSeed<'_> {
    type Value = Result<(), String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        *self.slot = Value::Null;
        Ok(Ok(()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.store(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.store(Value::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(self.store(Value::Int(i))),
            Err(_) => Ok(Err(format!(
                "the integer {v} is larger than the largest 64-bit integer"
            ))),
        }
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.store(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        if self.learning || self.ty == Type::Text {
            // While learning, typed once the first object is complete (the types are checked
            // against its keys first).
            self.slot.set_text(v);
            return Ok(Ok(()));
        }
        Ok(parse_typed(v, self.ty, self.unit, self.slot))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.slot.set_text(&v.to_string());
        Ok(Ok(()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.slot.set_text(&v.to_string());
        Ok(Ok(()))
    }
}
