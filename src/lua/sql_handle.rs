//! What the Lua handles of the SQL databases share (`ferry.sqlite.open`, `ferry.postgres.connect`
//! and `ferry.mysql.connect` give one): `db:writer`, `db:run`, `db:close`, `tostring(db)`, the
//! table sink with the writer options applied that `db:writer` and `db:insert` use, and the
//! row-by-row `db:insert` of the databases without a bulk path of their own.

use std::io::Read;

use mlua::{AnyUserData, Lua, UserData, UserDataMethods, Value as LuaValue};

use super::options::Opts;
use super::rows::{LuaSink, LuaSource, lua_err};
use crate::db::{InsertReport, ScriptReport};
use crate::formats::{ProjectedSink, RowSink, SqlStatements};

/// A Lua handle of one database connection.
pub(super) trait SqlHandle: UserData + Sized + 'static {
    /// The connection.
    type Db;
    /// The insert options of the backend (`on_conflict`, `create`, `batch`, …).
    type Insert;
    /// A table of the database as a row sink.
    type Sink: RowSink + 'static;

    /// The open connection; an error once closed.
    fn db(&self) -> mlua::Result<&Self::Db>;
    /// Forgets the connection (`db:close`).
    fn close(&mut self);
    /// The connection's name as messages show it; `None` once closed.
    fn shown(&self) -> Option<String>;
    /// The name of an open connection.
    fn db_name(db: &Self::Db) -> String;
    /// Reads the backend's insert options from an option table.
    fn insert_options(o: &mut Opts) -> mlua::Result<Self::Insert>;
    /// A table as a row sink.
    fn table_sink(db: &Self::Db, table: &str, io: Self::Insert) -> Self::Sink;
    /// Runs the statements of a `.sql` script (`db:run`).
    fn run_script(
        db: &Self::Db,
        st: &mut SqlStatements<Box<dyn Read>>,
    ) -> mlua::Result<ScriptReport>;
}

/// A table sink of a backend whose `db:insert` is a pipe into it: it learns the source's name
/// for its errors and counts what it inserted and skipped.
pub(super) trait CountingSink: RowSink {
    /// Names the input (for errors naming a row).
    fn set_input(&mut self, name: &str);
    /// What was inserted and skipped.
    fn report(&self) -> InsertReport;
}

/// A table sink with the writer options applied, the writer's name and the columns it was
/// asked for.
type Writer<S> = (ProjectedSink<S>, String, Option<Vec<String>>);

/// A table sink with the writer options applied, for `db:writer` and `db:insert`.
pub(super) fn table_sink<H: SqlHandle>(
    db: &H::Db,
    table: &str,
    opts: LuaValue,
    func: &str,
) -> mlua::Result<Writer<H::Sink>> {
    let mut o = Opts::new(opts, func)?;
    let io = H::insert_options(&mut o)?;
    let mut wo = o.write_options(&format!("{}: table {table}", H::db_name(db)))?;
    wo.header = o.strings("names")?;
    o.finish()?;
    let name = wo.name.clone();
    let columns = wo.columns.clone();
    Ok((
        ProjectedSink::new(H::table_sink(db, table, io), wo),
        name,
        columns,
    ))
}

/// `db:insert(table, source, opts)` as a pipe from the source into the table's sink; returns
/// the rows inserted and skipped.
pub(super) fn insert<H: SqlHandle>(
    lua: &Lua,
    db: &H::Db,
    (table, src, opts): (String, AnyUserData, LuaValue),
) -> mlua::Result<(u64, u64)>
where
    H::Sink: CountingSink,
{
    let (mut sink, _, _) = table_sink::<H>(db, &table, opts, "db:insert")?;
    let mut s = src.borrow_mut::<LuaSource>().map_err(|_| {
        lua_err("db:insert: expected a row source (a reader or db:query) as the second argument")
    })?;
    let src = s.get()?;
    sink.inner_mut().set_input(src.name());
    let r = crate::formats::pipe(src.as_mut(), &mut sink);
    s.finished(lua);
    r.map_err(lua_err)?;
    sink.finish().map_err(lua_err)?;
    let report = sink.inner_mut().report();
    Ok((report.inserted, report.skipped))
}

/// Registers the methods every handle has alike: `writer`, `run`, `close` and `__tostring`.
pub(super) fn add_shared_methods<H: SqlHandle, M: UserDataMethods<H>>(methods: &mut M) {
    methods.add_method("writer", |lua, this, (table, opts): (String, LuaValue)| {
        let (sink, name, columns) = table_sink::<H>(this.db()?, &table, opts, "db:writer")?;
        let sink: Box<dyn RowSink> = Box::new(sink);
        lua.create_userdata(LuaSink::new(sink, None, columns, &name))
    });
    methods.add_method("run", |lua, this, script: LuaValue| {
        let db = this.db()?;
        super::formats::run_script(lua, script, |st| H::run_script(db, st))
    });
    methods.add_method_mut("close", |_, this, ()| {
        this.close();
        Ok(())
    });
    methods.add_meta_method("__tostring", |_, this, ()| {
        Ok(match this.shown() {
            Some(name) => format!("Db({name})"),
            None => "Db(closed)".into(),
        })
    });
}
