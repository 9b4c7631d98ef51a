//! Row sources and sinks as Lua userdata, rows as Lua tables, and the report of
//! rows skipped under `on_error = "continue"`.
//!
//! A row crosses into Lua only when a script asks for it (`src:rows()`, `src:read(n)`, a
//! `map` in `ferry.pipe`): it becomes a table keyed by column name whose metatable carries the
//! column order, so `sink:write(row)` knows the columns of a row that came from a source.

use std::cell::RefCell;
use std::sync::Arc;

use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

use super::bytes::SharedWriter;
use super::host_error::IntoLuaErr;
use super::{Level, RunHost};
use crate::formats::{FormatError, RowSink, RowSource, SkipReport, Value};

/// Per-VM state of the format bindings: the host for logs and the skipped-row reports that go
/// into the run's summary.
pub(crate) struct FormatsState {
    host: Option<Arc<dyn RunHost>>,
    skipped: RefCell<Vec<(String, SkipReport)>>,
}

/// Installs the per-VM state; called once by `new_vm`.
pub(crate) fn install_state(lua: &Lua, host: Option<Arc<dyn RunHost>>) {
    lua.set_app_data(FormatsState {
        host,
        skipped: RefCell::new(Vec::new()),
    });
}

/// Records (once per source) the rows a source skipped: a warning per reported row in the
/// run log, and an entry in the run summary.
pub(crate) fn report_skips(lua: &Lua, name: &str, report: &SkipReport) {
    if report.count == 0 {
        return;
    }
    let Some(state) = lua.app_data_ref::<FormatsState>() else {
        return;
    };
    if let Some(h) = &state.host {
        h.log(
            Level::Warn,
            &format!(
                "{name}: skipped {} bad row{} (on_error = \"continue\")",
                report.count,
                if report.count == 1 { "" } else { "s" }
            ),
        );
        for (_, msg) in &report.first {
            h.log(Level::Warn, &format!("skipped: {msg}"));
        }
    }
    state
        .skipped
        .borrow_mut()
        .push((name.to_owned(), report.clone()));
}

/// The skipped-row reports of the run as JSON for its summary, or `None` when no row was
/// skipped: `{ "NAME": { "count": n, "first": [{ "line": l, "error": "..." }] } }`.
pub(crate) fn skipped_summary(lua: &Lua) -> Option<serde_json::Value> {
    let state = lua.app_data_ref::<FormatsState>()?;
    let reports = state.skipped.borrow();
    if reports.is_empty() {
        return None;
    }
    let mut map = serde_json::Map::new();
    for (name, r) in reports.iter() {
        let first: Vec<serde_json::Value> = r
            .first
            .iter()
            .map(|(line, msg)| serde_json::json!({ "line": line, "error": msg }))
            .collect();
        let entry = map
            .entry(name.clone())
            .or_insert_with(|| serde_json::json!({ "count": 0, "first": [] }));
        entry["count"] = (entry["count"].as_u64().unwrap_or(0) + r.count).into();
        if let Some(list) = entry["first"].as_array_mut() {
            list.extend(first);
            list.truncate(SkipReport::KEEP);
        }
    }
    Some(serde_json::Value::Object(map))
}

/// A message, or a typed error of a layer below (format, database, store, Redis), as a Lua
/// error; typed errors keep their kind (see `host_error.rs`).
pub(crate) fn lua_err(e: impl IntoLuaErr) -> mlua::Error {
    e.into_lua_err()
}

/// Converts a value to Lua: null is nil, bytes a (binary) string.
pub(crate) fn value_to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Int(i) => LuaValue::Integer(*i),
        Value::Float(f) => LuaValue::Number(*f),
        Value::Text(s) => LuaValue::String(lua.create_string(s)?),
        Value::Bytes(b) => LuaValue::String(lua.create_string(b)?),
    })
}

/// Converts a Lua value to a row value: a string that is not UTF-8 becomes bytes. `what`
/// names the place for errors.
pub(crate) fn lua_to_value(v: &LuaValue, what: &dyn Fn() -> String) -> mlua::Result<Value> {
    Ok(match v {
        LuaValue::Nil => Value::Null,
        LuaValue::Boolean(b) => Value::Bool(*b),
        LuaValue::Integer(i) => Value::Int(*i),
        LuaValue::Number(f) => Value::Float(*f),
        LuaValue::String(s) => match s.to_str() {
            Ok(t) => Value::Text(t.to_string()),
            Err(_) => Value::Bytes(s.as_bytes().to_vec()),
        },
        LuaValue::LightUserData(p) if p.0.is_null() => Value::Null,
        other => {
            return Err(mlua::Error::runtime(format!(
                "{}: a {} cannot be stored in a row; expected nil, a boolean, a number or a string",
                what(),
                other.type_name()
            )));
        }
    })
}

/// Column names and the metatable that rows of a source carry.
pub(crate) struct RowShape {
    columns: Vec<String>,
    meta: Table,
}

impl RowShape {
    /// The shape of rows with these columns.
    pub(crate) fn new(lua: &Lua, columns: &[String]) -> mlua::Result<RowShape> {
        let meta = lua.create_table()?;
        meta.set("__name", "ferry.row")?;
        meta.set(
            "columns",
            lua.create_sequence_from(columns.iter().cloned())?,
        )?;
        Ok(RowShape {
            columns: columns.to_vec(),
            meta,
        })
    }

    /// The column names.
    pub(crate) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The metatable the rows carry (`__name = "ferry.row"`, `columns`).
    pub(crate) fn meta(&self) -> &Table {
        &self.meta
    }

    /// A row as a table keyed by column name.
    pub(crate) fn to_lua(&self, lua: &Lua, row: &[Value]) -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(0, self.columns.len())?;
        for (name, v) in self.columns.iter().zip(row) {
            if !v.is_null() {
                t.raw_set(name.as_str(), value_to_lua(lua, v)?)?;
            }
        }
        t.set_metatable(Some(self.meta.clone()))?;
        Ok(t)
    }
}

/// The columns a row table carries in its metatable (rows that came from a source).
pub(crate) fn row_columns(t: &Table) -> Option<Vec<String>> {
    let meta = t.metatable()?;
    let cols: Table = meta.raw_get("columns").ok()?;
    cols.sequence_values::<String>()
        .collect::<mlua::Result<_>>()
        .ok()
}

/// Reads a Lua row (a table keyed by column name, or a sequence in column order) into `row`.
pub(crate) fn lua_to_row(t: &Table, columns: &[String], row: &mut Vec<Value>) -> mlua::Result<()> {
    row.clear();
    let positional = t.raw_len() > 0;
    for (i, name) in columns.iter().enumerate() {
        let v: LuaValue = if positional {
            t.raw_get(i + 1)?
        } else {
            t.raw_get(name.as_str())?
        };
        row.push(lua_to_value(&v, &|| format!("column `{name}`"))?);
    }
    Ok(())
}

/// A row source held by Lua: `src:rows()`, `src:read(n)`, `src:columns()`, `src:errors()`.
pub(crate) struct LuaSource {
    /// The source; `None` once closed.
    pub(crate) inner: Option<Box<dyn RowSource>>,
    reported: bool,
}

impl LuaSource {
    /// Wraps a source.
    pub(crate) fn new(inner: Box<dyn RowSource>) -> Self {
        LuaSource {
            inner: Some(inner),
            reported: false,
        }
    }

    /// The source, or an error when it was closed.
    pub(crate) fn get(&mut self) -> mlua::Result<&mut Box<dyn RowSource>> {
        self.inner
            .as_mut()
            .ok_or_else(|| mlua::Error::runtime("the row source is closed"))
    }

    /// Records the skipped rows once the source is exhausted.
    pub(crate) fn finished(&mut self, lua: &Lua) {
        if self.reported {
            return;
        }
        self.reported = true;
        if let Some(s) = &self.inner
            && let Some(r) = s.skipped()
        {
            report_skips(lua, s.name(), r);
        }
    }
}

fn next_lua_row(
    lua: &Lua,
    ud: &AnyUserData,
    shape: &RowShape,
    buf: &mut Vec<Value>,
) -> mlua::Result<Option<Table>> {
    let mut this = ud.borrow_mut::<LuaSource>()?;
    let more = this.get()?.next_row(buf).map_err(lua_err)?;
    if !more {
        this.finished(lua);
        return Ok(None);
    }
    shape.to_lua(lua, buf).map(Some)
}

impl UserData for LuaSource {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_function("rows", |lua, ud: AnyUserData| {
            let shape = {
                let mut this = ud.borrow_mut::<LuaSource>()?;
                RowShape::new(lua, this.get()?.columns())?
            };
            let mut buf = Vec::new();
            lua.create_function_mut(move |lua, _: MultiValue| {
                next_lua_row(lua, &ud, &shape, &mut buf)
            })
        });
        methods.add_function("read", |lua, (ud, n): (AnyUserData, Option<usize>)| {
            let n = n.unwrap_or(1000).max(1);
            let shape = {
                let mut this = ud.borrow_mut::<LuaSource>()?;
                RowShape::new(lua, this.get()?.columns())?
            };
            let out = lua.create_table()?;
            let mut buf = Vec::new();
            while out.raw_len() < n {
                match next_lua_row(lua, &ud, &shape, &mut buf)? {
                    Some(t) => out.raw_push(t)?,
                    None => break,
                }
            }
            if out.raw_len() == 0 {
                return Ok(LuaValue::Nil);
            }
            Ok(LuaValue::Table(out))
        });
        methods.add_method_mut("columns", |lua, this, ()| {
            lua.create_sequence_from(this.get()?.columns().iter().cloned())
        });
        methods.add_method("errors", |lua, this, ()| {
            let t = lua.create_table()?;
            let first = lua.create_table()?;
            let mut count = 0;
            if let Some(r) = this.inner.as_ref().and_then(|s| s.skipped()) {
                count = r.count;
                for (line, msg) in &r.first {
                    let e = lua.create_table()?;
                    e.set("line", *line)?;
                    e.set("error", msg.as_str())?;
                    first.raw_push(e)?;
                }
            }
            t.set("count", count)?;
            t.set("first", first)?;
            Ok(t)
        });
        methods.add_method_mut("close", |lua, this, ()| {
            this.finished(lua);
            this.inner = None;
            Ok(())
        });
        // stats(): the source's own counters (keys/duplicates/vanished for a Redis scan).
        methods.add_method("stats", |lua, this, ()| {
            let stats = this.inner.as_ref().map(|s| s.stats()).unwrap_or_default();
            stats_table(lua, &stats)
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(match &this.inner {
                Some(s) => format!("RowSource({})", s.name()),
                None => "RowSource(closed)".into(),
            })
        });
    }
}

/// Counters as a Lua table `{ name = n, ... }`.
fn stats_table(lua: &Lua, stats: &[(&'static str, u64)]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, stats.len())?;
    for (k, v) in stats {
        t.set(*k, *v)?;
    }
    Ok(t)
}

/// A row sink held by Lua: `sink:write(row)`, `sink:close()`, `sink:stats()`.
pub(crate) struct LuaSink {
    /// The sink; `None` once closed.
    pub(crate) inner: Option<Box<dyn RowSink>>,
    /// The writer under it, committed on close.
    pub(crate) out: Option<SharedWriter>,
    /// Columns for rows written from Lua (the `columns` option, or learned from the first
    /// row's metatable).
    pub(crate) columns: Option<Vec<String>>,
    /// The sink's name for messages.
    pub(crate) name: String,
    /// Rows written.
    pub(crate) rows: u64,
    /// The sink's counters, kept when it closes.
    stats: Vec<(&'static str, u64)>,
    buf: Vec<Value>,
}

impl LuaSink {
    /// Wraps a sink writing into `out`.
    pub(crate) fn new(
        inner: Box<dyn RowSink>,
        out: Option<SharedWriter>,
        columns: Option<Vec<String>>,
        name: &str,
    ) -> Self {
        LuaSink {
            inner: Some(inner),
            out,
            columns,
            name: name.to_owned(),
            rows: 0,
            stats: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// The sink, or an error when it was closed.
    pub(crate) fn get(&mut self) -> mlua::Result<&mut Box<dyn RowSink>> {
        let name = &self.name;
        self.inner
            .as_mut()
            .ok_or_else(|| mlua::Error::runtime(format!("{name}: the writer is closed")))
    }

    /// Drops the sink after a failure, discarding its output, and keeps its counters for
    /// `sink:stats()`.
    pub(crate) fn discard(&mut self) {
        if let Some(out) = &self.out {
            out.abort();
        }
        if let Some(sink) = self.inner.take() {
            self.stats = sink.stats();
        }
    }

    /// Finishes the format and commits the writer under it.
    pub(crate) fn close(&mut self) -> mlua::Result<()> {
        let Some(mut sink) = self.inner.take() else {
            return Ok(());
        };
        let result = sink.finish().map_err(lua_err);
        self.stats = sink.stats();
        drop(sink);
        match (&result, &self.out) {
            (Ok(()), Some(out)) => out
                .commit()
                .map_err(|e| lua_err(format!("{}: {e}", self.name))),
            (Err(_), Some(out)) => {
                out.abort();
                result
            }
            (_, None) => result,
        }
    }

    fn write_lua(&mut self, row: &Table) -> mlua::Result<()> {
        if self.columns.is_none() {
            self.columns = row_columns(row);
        }
        let Some(columns) = self.columns.clone() else {
            return Err(mlua::Error::runtime(format!(
                "{}: cannot tell the columns of this row; give the writer a `columns` option, or write rows that came from a source",
                self.name
            )));
        };
        let mut buf = std::mem::take(&mut self.buf);
        lua_to_row(row, &columns, &mut buf)?;
        let sink = self.get()?;
        if !sink.started() {
            sink.begin(&columns).map_err(lua_err)?;
        }
        let r = sink.write_row(&buf).map_err(lua_err);
        self.buf = buf;
        self.rows += 1;
        r
    }
}

impl UserData for LuaSink {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("write", |_, this, row: Table| this.write_lua(&row));
        methods.add_method_mut("close", |_, this, ()| this.close());
        methods.add_method("count", |_, this, ()| Ok(this.rows));
        // stats(): the sink's own counters (restored/skipped/expired for a Redis sink).
        methods.add_method("stats", |lua, this, ()| {
            let stats = match &this.inner {
                Some(s) => s.stats(),
                None => this.stats.clone(),
            };
            stats_table(lua, &stats)
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("RowSink({})", this.name))
        });
    }
}

/// Wraps a format error in a Lua error (keeps the message as is).
pub(crate) fn format_err(e: FormatError) -> mlua::Error {
    lua_err(e)
}
