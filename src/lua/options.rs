//! Option tables of host functions (`ferry.csv.reader(src, { ... })` and the like), read with
//! type checks: each key is read once with the type it must have, and `finish` refuses the keys
//! nobody asked for, so a typo is an error naming the option instead of an ignored setting.

use std::collections::HashSet;

use mlua::{Table, Value as LuaValue};

use crate::formats::{OnError, ReadOptions, TimestampUnit, Type, WriteOptions};

/// An option table read with type checks; `finish` refuses keys nobody asked for, so a typo
/// is an error instead of an ignored option.
pub(crate) struct Opts {
    table: Option<Table>,
    func: String,
    used: HashSet<String>,
}

impl Opts {
    /// Reads `value` (nil or a table) as the options of `func`.
    pub(crate) fn new(value: LuaValue, func: &str) -> mlua::Result<Opts> {
        let table = match value {
            LuaValue::Nil => None,
            LuaValue::Table(t) => Some(t),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "{func}: options must be a table, got {}",
                    other.type_name()
                )));
            }
        };
        Ok(Opts {
            table,
            func: func.to_owned(),
            used: HashSet::new(),
        })
    }

    fn raw(&mut self, key: &str) -> mlua::Result<LuaValue> {
        self.used.insert(key.to_owned());
        match &self.table {
            Some(t) => t.raw_get(key),
            None => Ok(LuaValue::Nil),
        }
    }

    fn bad(&self, key: &str, expected: &str, got: &LuaValue) -> mlua::Error {
        mlua::Error::runtime(format!(
            "{}: option `{key}`: expected {expected}, got {}",
            self.func,
            got.type_name()
        ))
    }

    /// A string option.
    pub(crate) fn string(&mut self, key: &str) -> mlua::Result<Option<String>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(None),
            LuaValue::String(s) => Ok(Some(s.to_str()?.to_string())),
            other => Err(self.bad(key, "a string", &other)),
        }
    }

    /// A setting of a shared vocabulary (`on_error`, `on_conflict`): its canonical value.
    pub(crate) fn choice(
        &mut self,
        key: &str,
        vocab: &super::schema::Vocab,
    ) -> mlua::Result<Option<&'static str>> {
        match self.string(key)? {
            None => Ok(None),
            Some(given) => vocab.resolve(&given).map(Some).ok_or_else(|| {
                mlua::Error::runtime(super::schema::choice_error(&self.func, key, vocab, &given))
            }),
        }
    }

    /// A boolean option.
    pub(crate) fn boolean(&mut self, key: &str) -> mlua::Result<Option<bool>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(None),
            LuaValue::Boolean(b) => Ok(Some(b)),
            other => Err(self.bad(key, "true or false", &other)),
        }
    }

    /// A non-negative integer option.
    pub(crate) fn count(&mut self, key: &str) -> mlua::Result<Option<u64>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(None),
            LuaValue::Integer(i) if i >= 0 => Ok(Some(i as u64)),
            LuaValue::Number(f) if f >= 0.0 && f.fract() == 0.0 => Ok(Some(f as u64)),
            other => Err(self.bad(key, "a non-negative integer", &other)),
        }
    }

    /// A count that must lie in `lo..=hi`: a value outside is an error naming the range, never
    /// quietly moved into it.
    pub(crate) fn count_in(&mut self, key: &str, lo: u64, hi: u64) -> mlua::Result<Option<u64>> {
        match self.count(key)? {
            Some(n) if !(lo..=hi).contains(&n) => Err(mlua::Error::runtime(format!(
                "{}: option `{key}`: {n} is out of range; expected {lo} to {hi}",
                self.func
            ))),
            n => Ok(n),
        }
    }

    /// A list of strings option.
    pub(crate) fn strings(&mut self, key: &str) -> mlua::Result<Option<Vec<String>>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(None),
            LuaValue::Table(t) => {
                let mut out = Vec::new();
                for v in t.sequence_values::<LuaValue>() {
                    match v? {
                        LuaValue::String(s) => out.push(s.to_str()?.to_string()),
                        other => return Err(self.bad(key, "a list of strings", &other)),
                    }
                }
                Ok(Some(out))
            }
            other => Err(self.bad(key, "a list of strings", &other)),
        }
    }

    /// A single character option (delimiter, quote), `\t` allowed.
    pub(crate) fn byte(&mut self, key: &str) -> mlua::Result<Option<u8>> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if s.len() == 1 && s.is_ascii() => Ok(Some(s.as_bytes()[0])),
            Some(s) => Err(mlua::Error::runtime(format!(
                "{}: option `{key}`: expected one ASCII character, got {s:?}",
                self.func
            ))),
        }
    }

    /// A function option.
    pub(crate) fn function(&mut self, key: &str) -> mlua::Result<Option<mlua::Function>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(None),
            LuaValue::Function(f) => Ok(Some(f)),
            other => Err(self.bad(key, "a function", &other)),
        }
    }

    /// Any value (for options with several shapes).
    pub(crate) fn value(&mut self, key: &str) -> mlua::Result<LuaValue> {
        self.raw(key)
    }

    /// The options every reader takes: `name`, `types`, `columns`, `exclude`, `on_error`,
    /// `timestamp_unit`.
    pub(crate) fn read_options(&mut self, default_name: &str) -> mlua::Result<ReadOptions> {
        let mut o = ReadOptions::named(self.string("name")?.unwrap_or_else(|| default_name.into()));
        match self.raw("types")? {
            LuaValue::Nil => {}
            LuaValue::Table(t) => {
                for pair in t.pairs::<String, String>() {
                    let (col, ty) = pair.map_err(|_| {
                        mlua::Error::runtime(format!(
                            "{}: option `types`: expected a table of column = type name",
                            self.func
                        ))
                    })?;
                    let parsed = Type::parse(&ty).ok_or_else(|| {
                        mlua::Error::runtime(format!(
                            "{}: option `types`: column `{col}`: unknown type {ty:?}; expected one of {}",
                            self.func,
                            Type::NAMES
                        ))
                    })?;
                    o.types.insert(col, parsed);
                }
            }
            LuaValue::String(s) => {
                o.default_type = Type::parse(&s.to_str()?).ok_or_else(|| {
                    mlua::Error::runtime(format!(
                        "{}: option `types`: unknown type; expected one of {}",
                        self.func,
                        Type::NAMES
                    ))
                })?;
            }
            other => return Err(self.bad("types", "a table of column = type", &other)),
        }
        o.columns = self.strings("columns")?;
        o.exclude = self.strings("exclude")?.unwrap_or_default();
        o.on_error = match self.choice("on_error", &super::schema::ON_ERROR)? {
            Some("continue") => OnError::Continue,
            _ => OnError::Fail,
        };
        o.timestamp_unit = self.unit()?;
        Ok(o)
    }

    fn unit(&mut self) -> mlua::Result<TimestampUnit> {
        match self.string("timestamp_unit")? {
            None => Ok(TimestampUnit::Seconds),
            Some(u) => TimestampUnit::parse(&u).ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "{}: option `timestamp_unit`: expected \"s\" or \"ms\", got {u:?}",
                    self.func
                ))
            }),
        }
    }

    /// The options every writer takes: `name`, `columns`, `exclude`, `header` (a list of
    /// names), `timestamp_columns`, `timestamp_unit`. A boolean `header` is left to the format.
    pub(crate) fn write_options(&mut self, default_name: &str) -> mlua::Result<WriteOptions> {
        let mut o =
            WriteOptions::named(self.string("name")?.unwrap_or_else(|| default_name.into()));
        o.columns = self.strings("columns")?;
        o.exclude = self.strings("exclude")?.unwrap_or_default();
        o.timestamp_columns = self.strings("timestamp_columns")?.unwrap_or_default();
        o.timestamp_unit = self.unit()?;
        Ok(o)
    }

    /// `header`: `true`/`false` or a list of names (custom headers).
    pub(crate) fn header(&mut self) -> mlua::Result<(bool, Option<Vec<String>>)> {
        match self.raw("header")? {
            LuaValue::Nil => Ok((true, None)),
            LuaValue::Boolean(b) => Ok((b, None)),
            LuaValue::Table(_) => Ok((true, self.strings("header")?)),
            other => Err(self.bad("header", "true, false or a list of names", &other)),
        }
    }

    /// Fails on keys that were not read.
    pub(crate) fn finish(self) -> mlua::Result<()> {
        let Some(t) = &self.table else {
            return Ok(());
        };
        for pair in t.pairs::<LuaValue, LuaValue>() {
            let (k, _) = pair?;
            let key = match &k {
                LuaValue::String(s) => s.to_string_lossy(),
                other => format!("<{}>", other.type_name()),
            };
            if !self.used.contains(&key) {
                let mut known: Vec<&str> = self.used.iter().map(String::as_str).collect();
                known.sort_unstable();
                return Err(mlua::Error::runtime(format!(
                    "{}: unknown option `{key}`; the options are: {}",
                    self.func,
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}
