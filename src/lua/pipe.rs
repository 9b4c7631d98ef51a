//! `ferry.pipe(source, sink [, { map = fn, batch = n, columns = {...}, close = true }])`.
//!
//! Without `map` the rows move in Rust from source to sink and no Lua value is created per
//! row. With `map`, Lua receives batches: `map(rows)` gets a sequence of row tables and returns
//! the rows to write (a sequence; `nil` entries are dropped; `{}` drops the whole batch). A map
//! that returns nothing is an error naming the map function's line: it is almost always a
//! forgotten `return`, and writing no rows without a word would hide it. The batches cross
//! into Lua and back through `row_batch.rs`; what it leaves alone goes through `read_rows`.

use mlua::{AnyUserData, Function, Lua, Table, Value as LuaValue};

use super::options::Opts;
use super::row_batch::BatchCodec;
use super::rows::{LuaSink, LuaSource, RowShape, lua_err, lua_to_row};
use crate::formats::{FormatError, Value, pipe, pipe_batches};

/// Registers `ferry.pipe`.
pub(crate) fn register(lua: &Lua, ferry: &Table) -> mlua::Result<()> {
    ferry.set("pipe", lua.create_function(ferry_pipe)?)
}

fn ferry_pipe(
    lua: &Lua,
    (src, dst, opts): (AnyUserData, AnyUserData, LuaValue),
) -> mlua::Result<u64> {
    const F: &str = "ferry.pipe";
    let mut o = Opts::new(opts, F)?;
    let map = o.function("map")?;
    let batch = o.count("batch")?.unwrap_or(1000).max(1) as usize;
    let columns = o.strings("columns")?;
    let close = o.boolean("close")?.unwrap_or(true);
    o.finish()?;
    let mut source = src.borrow_mut::<LuaSource>().map_err(|_| {
        lua_err(format!(
            "{F}: the first argument must be a row source (a reader or db:query)"
        ))
    })?;
    let mut sink = dst.borrow_mut::<LuaSink>().map_err(|_| {
        lua_err(format!(
            "{F}: the second argument must be a row sink (a writer or db:writer)"
        ))
    })?;
    let result = match map {
        None => {
            let s = source.get()?;
            let k = sink.get()?;
            pipe(s.as_mut(), k.as_mut()).map_err(lua_err)
        }
        Some(f) => {
            let s = source.get()?;
            let out_columns = columns.unwrap_or_else(|| s.columns().to_vec());
            let shape = RowShape::new(lua, s.columns())?;
            let mut codec = BatchCodec::new(lua, &shape, &out_columns)?;
            let k = sink.get()?;
            map_batches(
                lua,
                s.as_mut(),
                k.as_mut(),
                batch,
                &out_columns,
                &mut codec,
                &f,
            )
        }
    };
    source.finished(lua);
    match result {
        Ok(n) => {
            sink.rows += n;
            if close {
                sink.close()?;
            }
            Ok(n)
        }
        Err(e) => {
            // The output is incomplete: discard it rather than leave a partial file.
            sink.discard();
            Err(e)
        }
    }
}

fn map_batches(
    lua: &Lua,
    src: &mut dyn crate::formats::RowSource,
    sink: &mut dyn crate::formats::RowSink,
    batch: usize,
    out_columns: &[String],
    codec: &mut BatchCodec,
    f: &Function,
) -> mlua::Result<u64> {
    let mut lua_error: Option<mlua::Error> = None;
    let mut step = |rows: &mut Vec<Vec<Value>>| -> Result<(), FormatError> {
        let r = (|| -> mlua::Result<()> {
            let input = codec.encode(lua, rows)?;
            let n_in = rows.len();
            let out = match f.call::<LuaValue>(input)? {
                LuaValue::Nil => {
                    let info = f.info();
                    let at = match (info.source.as_deref(), info.line_defined) {
                        (Some(src), Some(line)) => {
                            format!(" (the function at {}:{line})", src.trim_start_matches('@'))
                        }
                        _ => String::new(),
                    };
                    return Err(super::host_error::host_err(
                        super::host_error::Kind::Invalid,
                        format!(
                            "ferry.pipe: map{at} returned nothing for a batch of {n_in} rows; return the rows to write (a table; {{}} to drop them all)"
                        ),
                    ));
                }
                LuaValue::Table(t) => t,
                other => {
                    return Err(lua_err(format!(
                        "ferry.pipe: map must return a sequence of rows or nil, got {}",
                        other.type_name()
                    )));
                }
            };
            let orig = std::mem::take(rows);
            match codec.decode(lua, &out, n_in, orig)? {
                Some(mapped) => *rows = mapped,
                None => read_rows(&out, n_in, out_columns, rows)?,
            }
            Ok(())
        })();
        r.map_err(|e| {
            lua_error = Some(e);
            FormatError::Option {
                format: "pipe",
                option: "map",
                message: "the map function failed".into(),
            }
        })
    };
    let r = pipe_batches(src, sink, batch, out_columns, &mut step);
    match (r, lua_error) {
        (_, Some(e)) => Err(e),
        (Ok(n), None) => Ok(n),
        (Err(e), None) => Err(lua_err(e)),
    }
}

/// Reads the rows a map returned into `rows` with mlua's safe calls: the path for batches the
/// fast read-back of `row_batch.rs` leaves alone, and the one that words their errors.
fn read_rows(
    out: &Table,
    n_in: usize,
    out_columns: &[String],
    rows: &mut Vec<Vec<Value>>,
) -> mlua::Result<()> {
    let n_out = out.raw_len().max(n_in);
    let mut kept = 0;
    for i in 1..=n_out {
        match out.raw_get::<LuaValue>(i)? {
            LuaValue::Nil | LuaValue::Boolean(false) => {}
            LuaValue::Table(t) => {
                if kept == rows.len() {
                    rows.push(Vec::new());
                }
                lua_to_row(&t, out_columns, &mut rows[kept])?;
                kept += 1;
            }
            other => {
                return Err(lua_err(format!(
                    "ferry.pipe: map returned a {} at position {i}; expected a row table or nil",
                    other.type_name()
                )));
            }
        }
    }
    rows.truncate(kept);
    Ok(())
}
