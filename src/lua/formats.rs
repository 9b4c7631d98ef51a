//! `ferry.csv`, `ferry.json` (reader/writer), `ferry.ndjson`, `ferry.xlsx`, `ferry.sql` and
//! `ferry.zip`: thin bindings over [`crate::formats`]. Readers become [`LuaSource`]s and
//! writers [`LuaSink`]s; the work happens in Rust.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use mlua::{Lua, Table, UserData, UserDataMethods, Value as LuaValue};

use super::bytes::{CommitWrite, EntryWriter, Input, SharedWriter, reader_arg, writer_arg};
use super::options::Opts;
use super::rows::{LuaSink, LuaSource, format_err, lua_err};
use crate::formats::zip::{EntryOptions, ZipLimits, ZipReader, ZipWriter};
use crate::formats::{
    CsvOptions, CsvReader, CsvWriter, JsonReader, JsonWriter, NdjsonReader, NdjsonWriter,
    ProjectedSink, RowSink, RowSource, SqlDialect, SqlOptions, SqlStatements, SqlWriter,
    WriteOptions, XlsxOptions, XlsxReader, XlsxWriter,
};
use crate::units::parse_size;

/// Registers `ferry.csv`, `ferry.json.reader/writer`, `ferry.ndjson`, `ferry.xlsx`,
/// `ferry.sql` and `ferry.zip` into `ferry`.
pub(crate) fn register(lua: &Lua, ferry: &Table) -> mlua::Result<()> {
    let csv = lua.create_table()?;
    csv.set("reader", lua.create_function(csv_reader)?)?;
    csv.set("writer", lua.create_function(csv_writer)?)?;
    ferry.set("csv", csv)?;

    let json: Table = match ferry.get::<LuaValue>("json")? {
        LuaValue::Table(t) => t,
        _ => lua.create_table()?,
    };
    json.set(
        "reader",
        lua.create_function(|lua, (i, o)| json_reader(lua, i, o, false))?,
    )?;
    json.set(
        "writer",
        lua.create_function(|lua, (w, o)| json_writer(lua, w, o, false))?,
    )?;
    ferry.set("json", json)?;

    let ndjson = lua.create_table()?;
    ndjson.set(
        "reader",
        lua.create_function(|lua, (i, o)| json_reader(lua, i, o, true))?,
    )?;
    ndjson.set(
        "writer",
        lua.create_function(|lua, (w, o)| json_writer(lua, w, o, true))?,
    )?;
    ferry.set("ndjson", ndjson)?;

    let xlsx = lua.create_table()?;
    xlsx.set("reader", lua.create_function(xlsx_reader)?)?;
    xlsx.set("writer", lua.create_function(xlsx_writer)?)?;
    ferry.set("xlsx", xlsx)?;

    let sql = lua.create_table()?;
    sql.set("reader", lua.create_function(sql_reader)?)?;
    sql.set("writer", lua.create_function(sql_writer)?)?;
    ferry.set("sql", sql)?;

    let zip = lua.create_table()?;
    zip.set("writer", lua.create_function(zip_writer)?)?;
    zip.set("reader", lua.create_function(zip_reader)?)?;
    ferry.set("zip", zip)?;
    Ok(())
}

fn source(lua: &Lua, s: impl RowSource + 'static) -> mlua::Result<mlua::AnyUserData> {
    lua.create_userdata(LuaSource::new(Box::new(s)))
}

fn sink(
    lua: &Lua,
    s: impl RowSink + 'static,
    out: SharedWriter,
    opts: WriteOptions,
) -> mlua::Result<mlua::AnyUserData> {
    let name = opts.name.clone();
    let columns = opts.columns.clone();
    let projected = ProjectedSink::new(s, opts);
    lua.create_userdata(LuaSink::new(Box::new(projected), Some(out), columns, &name))
}

fn csv_options(o: &mut Opts) -> mlua::Result<CsvOptions> {
    let d = CsvOptions::default();
    Ok(CsvOptions {
        delimiter: o.byte("delimiter")?.unwrap_or(d.delimiter),
        quote: o.byte("quote")?.unwrap_or(d.quote),
        header: true,
        names: None,
        null: o.string("null")?,
        bom: false,
        crlf: false,
    })
}

fn csv_reader(lua: &Lua, (input, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.csv.reader";
    let Input { reader, name } = reader_arg(input, F)?;
    let mut o = Opts::new(opts, F)?;
    let mut csv = csv_options(&mut o)?;
    csv.header = o.boolean("header")?.unwrap_or(true);
    csv.names = o.strings("names")?;
    let ro = o.read_options(&name)?;
    o.finish()?;
    source(lua, CsvReader::new(reader, &csv, &ro).map_err(format_err)?)
}

fn csv_writer(lua: &Lua, (out, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.csv.writer";
    let out = writer_arg(&out, F)?;
    let mut o = Opts::new(opts, F)?;
    let mut csv = csv_options(&mut o)?;
    let (header, names) = o.header()?;
    csv.header = header;
    csv.bom = o.boolean("bom")?.unwrap_or(false);
    csv.crlf = o.boolean("crlf")?.unwrap_or(false);
    let mut wo = o.write_options(out.name())?;
    wo.header = names;
    o.finish()?;
    let w = CsvWriter::new(out.clone(), &csv, &wo.name).map_err(format_err)?;
    sink(lua, w, out, wo)
}

fn json_reader(
    lua: &Lua,
    input: LuaValue,
    opts: LuaValue,
    nd: bool,
) -> mlua::Result<mlua::AnyUserData> {
    let f = if nd {
        "ferry.ndjson.reader"
    } else {
        "ferry.json.reader"
    };
    let Input { reader, name } = reader_arg(input, f)?;
    let mut o = Opts::new(opts, f)?;
    let ro = o.read_options(&name)?;
    o.finish()?;
    if nd {
        source(lua, NdjsonReader::new(reader, &ro).map_err(format_err)?)
    } else {
        source(lua, JsonReader::new(reader, &ro).map_err(format_err)?)
    }
}

fn json_writer(
    lua: &Lua,
    out: LuaValue,
    opts: LuaValue,
    nd: bool,
) -> mlua::Result<mlua::AnyUserData> {
    let f = if nd {
        "ferry.ndjson.writer"
    } else {
        "ferry.json.writer"
    };
    let out = writer_arg(&out, f)?;
    let mut o = Opts::new(opts, f)?;
    let mut wo = o.write_options(out.name())?;
    wo.header = o.strings("keys")?;
    o.finish()?;
    if nd {
        sink(lua, NdjsonWriter::new(out.clone(), &wo.name), out, wo)
    } else {
        sink(lua, JsonWriter::new(out.clone(), &wo.name), out, wo)
    }
}

fn xlsx_reader(lua: &Lua, (input, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.xlsx.reader";
    let Input { reader, name } = reader_arg(input, F)?;
    let mut o = Opts::new(opts, F)?;
    let x = XlsxOptions {
        sheet: o.string("sheet")?,
        header: o.boolean("header")?.unwrap_or(true),
    };
    let ro = o.read_options(&name)?;
    o.finish()?;
    source(lua, XlsxReader::new(reader, &x, &ro).map_err(format_err)?)
}

fn xlsx_writer(lua: &Lua, (out, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.xlsx.writer";
    let out = writer_arg(&out, F)?;
    let mut o = Opts::new(opts, F)?;
    let (header, names) = o.header()?;
    let x = XlsxOptions {
        sheet: o.string("sheet")?,
        header,
    };
    let mut wo = o.write_options(out.name())?;
    wo.header = names;
    o.finish()?;
    let w = XlsxWriter::new(out.clone(), &x, &wo.name).map_err(format_err)?;
    sink(lua, w, out, wo)
}

fn sql_writer(lua: &Lua, (out, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.sql.writer";
    let out = writer_arg(&out, F)?;
    let mut o = Opts::new(opts, F)?;
    let table = o.string("table")?.ok_or_else(|| {
        mlua::Error::runtime(format!(
            "{F}: option `table` is required: the table the INSERT statements insert into"
        ))
    })?;
    let dialect = dialect_option(&mut o, F)?.unwrap_or_default();
    let so = SqlOptions {
        table,
        rows_per_statement: o.count("rows_per_statement")?.unwrap_or(1) as usize,
        create_table: o.boolean("create_table")?.unwrap_or(false),
        dialect,
    };
    let mut wo = o.write_options(out.name())?;
    wo.header = o.strings("header")?;
    o.finish()?;
    let w = SqlWriter::new(out.clone(), so, &wo.name).map_err(format_err)?;
    sink(lua, w, out, wo)
}

/// `db:run(script)` of every database: `script` is a `ferry.sql.reader` (run once) or an input
/// (a string or a store Reader); `run` executes its statements. Returns `{ statements,
/// changes }`.
pub(crate) fn run_script(
    lua: &Lua,
    script: LuaValue,
    run: impl FnOnce(&mut SqlStatements<Box<dyn Read>>) -> mlua::Result<crate::db::ScriptReport>,
) -> mlua::Result<Table> {
    let report = match &script {
        LuaValue::UserData(ud) if ud.is::<SqlScript>() => {
            let mut s = ud.borrow_mut::<SqlScript>()?;
            let st = s
                .statements
                .as_mut()
                .ok_or_else(|| lua_err("db:run: this script was already run"))?;
            run(st)?
        }
        _ => {
            let input = reader_arg(script, "db:run")?;
            run(&mut SqlStatements::new(input.reader, &input.name))?
        }
    };
    let t = lua.create_table()?;
    t.set("statements", report.statements)?;
    t.set("changes", report.changes)?;
    Ok(t)
}

/// `ferry.sql.reader(input)`: the statements of a `.sql` script, for `db:run(script)` or to
/// iterate with `script:statements()`.
pub(crate) struct SqlScript {
    /// The splitter; `None` once consumed.
    pub(crate) statements: Option<SqlStatements<Box<dyn Read>>>,
}

impl UserData for SqlScript {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_function("statements", |lua, ud: mlua::AnyUserData| {
            lua.create_function(move |_, ()| {
                let mut this = ud.borrow_mut::<SqlScript>()?;
                let Some(st) = this.statements.as_mut() else {
                    return Ok((None, None));
                };
                match st.next_statement().map_err(lua_err)? {
                    Some(s) => Ok((Some(s.sql), Some(s.line))),
                    None => Ok((None, None)),
                }
            })
        });
    }
}

fn sql_reader(lua: &Lua, (input, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.sql.reader";
    let Input { reader, name } = reader_arg(input, F)?;
    let mut o = Opts::new(opts, F)?;
    let name = o.string("name")?.unwrap_or(name);
    let dialect = dialect_option(&mut o, F)?;
    o.finish()?;
    let mut statements = SqlStatements::new(reader, &name);
    if let Some(d) = dialect {
        statements = statements.with_dialect(d);
    }
    lua.create_userdata(SqlScript {
        statements: Some(statements),
    })
}

/// The `dialect` option of `ferry.sql.reader` and `ferry.sql.writer`.
fn dialect_option(o: &mut Opts, f: &str) -> mlua::Result<Option<SqlDialect>> {
    o.string("dialect")?
        .map(|d| {
            SqlDialect::parse(&d).ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "{f}: option `dialect`: `{d}` is not one of sqlite, mysql, postgres"
                ))
            })
        })
        .transpose()
}

type SharedZip = Rc<RefCell<Option<ZipWriter<SharedWriter>>>>;

/// `ferry.zip.writer(writer)`: `add(name, reader_or_string [, opts])`, `create(name [, opts])`
/// → Writer for one entry, `close()`.
struct LuaZipWriter {
    zip: SharedZip,
    out: SharedWriter,
    name: String,
}

fn entry_options(o: &mut Opts) -> mlua::Result<EntryOptions> {
    let d = EntryOptions::default();
    let level = match o.value("level")? {
        LuaValue::Nil => d.level,
        LuaValue::Integer(l @ 0..=9) => Some(l as u8),
        LuaValue::String(s) if s.to_str()? == "store" => None,
        other => {
            return Err(mlua::Error::runtime(format!(
                "option `level`: expected 0-9 or \"store\", got {other:?}"
            )));
        }
    };
    Ok(EntryOptions {
        level,
        zip64: o.boolean("zip64")?.unwrap_or(false),
    })
}

/// Writes into the zip's current entry; refuses once another entry has started.
struct ZipEntryWriter {
    zip: SharedZip,
    entry: u64,
    name: String,
}

impl Write for ZipEntryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut z = self.zip.borrow_mut();
        match z.as_mut() {
            Some(z) if z.entries() == self.entry => z.write(buf),
            Some(_) => Err(io::Error::other(format!(
                "zip entry {} is finished: another entry was started after it",
                self.name
            ))),
            None => Err(io::Error::other("the zip archive is closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CommitWrite for ZipEntryWriter {
    fn commit(&mut self) -> io::Result<()> {
        // The entry ends when the next one starts or the archive is closed.
        Ok(())
    }
}

impl UserData for LuaZipWriter {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "add",
            |_, this, (entry, data, opts): (String, LuaValue, LuaValue)| {
                let mut o = Opts::new(opts, "zip:add")?;
                let eo = entry_options(&mut o)?;
                o.finish()?;
                let Input { reader, .. } = reader_arg(data, "zip:add")?;
                let mut z = this.zip.borrow_mut();
                let z = z
                    .as_mut()
                    .ok_or_else(|| lua_err(format!("{}: the archive is closed", this.name)))?;
                z.add(&entry, reader, eo).map_err(format_err)
            },
        );
        methods.add_method("create", |lua, this, (entry, opts): (String, LuaValue)| {
            let mut o = Opts::new(opts, "zip:create")?;
            let eo = entry_options(&mut o)?;
            o.finish()?;
            let n = {
                let mut z = this.zip.borrow_mut();
                let z = z
                    .as_mut()
                    .ok_or_else(|| lua_err(format!("{}: the archive is closed", this.name)))?;
                z.start_entry(&entry, eo).map_err(format_err)?;
                z.entries()
            };
            let w = ZipEntryWriter {
                zip: this.zip.clone(),
                entry: n,
                name: entry.clone(),
            };
            lua.create_userdata(EntryWriter(SharedWriter::new(
                Box::new(w),
                &format!("{}/{entry}", this.name),
            )))
        });
        methods.add_method("close", |_, this, ()| {
            let taken = this.zip.borrow_mut().take();
            if let Some(mut z) = taken {
                z.finish().map_err(format_err)?;
                this.out
                    .commit()
                    .map_err(|e| lua_err(format!("{}: {e}", this.name)))?;
            }
            Ok(())
        });
    }
}

fn zip_writer(lua: &Lua, (out, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.zip.writer";
    let out = writer_arg(&out, F)?;
    let o = Opts::new(opts, F)?;
    o.finish()?;
    let name = out.name().to_owned();
    lua.create_userdata(LuaZipWriter {
        zip: Rc::new(RefCell::new(Some(ZipWriter::new(out.clone(), &name)))),
        out,
        name,
    })
}

/// `ferry.zip.reader(reader)`: `entries()`, `extract(name, writer)`, `read(name)`, `open(name)`.
struct LuaZipReader(ZipReader);

impl UserData for LuaZipReader {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("entries", |lua, this, ()| {
            let list = lua.create_table()?;
            for e in this.0.entries() {
                let t = lua.create_table()?;
                t.set("name", e.name.as_str())?;
                t.set("size", e.size)?;
                t.set("compressed_size", e.compressed_size)?;
                t.set("is_dir", e.is_dir)?;
                list.raw_push(t)?;
            }
            Ok(list)
        });
        methods.add_method_mut("extract", |_, this, (entry, out): (String, LuaValue)| {
            let mut out = writer_arg(&out, "zip:extract")?;
            match this.0.extract(&entry, &mut out) {
                Ok(n) => {
                    out.commit()
                        .map_err(|e| lua_err(format!("{}: {e}", out.name())))?;
                    Ok(n)
                }
                Err(e) => {
                    out.abort();
                    Err(format_err(e))
                }
            }
        });
        // open(name): a reader of the entry (inflated into an anonymous temp file first, so
        // memory stays bounded and the archive can be read again), for a format reader.
        methods.add_method_mut("open", |_, this, entry: String| {
            let mut tmp = tempfile::tempfile().map_err(|e| {
                super::host_error::host_err(
                    super::host_error::Kind::Io,
                    format!("zip:open({entry:?}): cannot create a temp file: {e}"),
                )
            })?;
            this.0.extract(&entry, &mut tmp).map_err(format_err)?;
            std::io::Seek::rewind(&mut tmp).map_err(|e| {
                super::host_error::host_err(
                    super::host_error::Kind::Io,
                    format!("zip:open({entry:?}): {e}"),
                )
            })?;
            Ok(super::streams::LuaReader::new(tmp, entry))
        });
        methods.add_method_mut("read", |lua, this, entry: String| {
            let mut buf = Vec::new();
            this.0.extract(&entry, &mut buf).map_err(format_err)?;
            lua.create_string(&buf)
        });
    }
}

fn zip_reader(lua: &Lua, (input, opts): (LuaValue, LuaValue)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "ferry.zip.reader";
    let Input { reader, name } = reader_arg(input, F)?;
    let mut o = Opts::new(opts, F)?;
    let d = ZipLimits::default();
    let max_entries = o
        .count("max_entries")?
        .map_or(d.max_entries, |n| n as usize);
    let max_total_size = match o.value("max_size")? {
        LuaValue::Nil => d.max_total_size,
        LuaValue::Integer(n) if n >= 0 => n as u64,
        LuaValue::String(s) => {
            parse_size(&s.to_str()?).map_err(|m| lua_err(format!("{F}: option `max_size`: {m}")))?
        }
        other => {
            return Err(lua_err(format!(
                "{F}: option `max_size`: expected a size like \"4GiB\" or a number of bytes, got {}",
                other.type_name()
            )));
        }
    };
    let max_ratio = match o.count("max_ratio")? {
        Some(0) => {
            return Err(lua_err(format!(
                "{F}: option `max_ratio`: must be a whole number from 1 up, got 0"
            )));
        }
        Some(n) => n,
        None => d.max_ratio,
    };
    let name = o.string("name")?.unwrap_or(name);
    o.finish()?;
    let r = ZipReader::new(
        reader,
        &name,
        ZipLimits {
            max_entries,
            max_total_size,
            max_ratio,
        },
    )
    .map_err(format_err)?;
    lua.create_userdata(LuaZipReader(r))
}
