//! What the Lua handles of the SQL databases share (`ferry.sqlite.open`, `ferry.postgres.connect`
//! and `ferry.mysql.connect` give one): `db:writer`, `db:run`, `db:close`, `tostring(db)`, the
//! table sink with the writer options applied that `db:writer` and `db:insert` use, and the
//! row-by-row `db:insert` of the databases without a bulk path of their own.

use std::io::Read;

use mlua::{AnyUserData, Function, Lua, MultiValue, UserData, UserDataMethods, Value as LuaValue};

use super::options::Opts;
use super::rows::{LuaSink, LuaSource, lua_err};
use crate::db::{InsertReport, Params, ScriptReport};
use crate::formats::{ProjectedSink, RowSink, RowSource, SqlStatements};

/// A Lua handle of one database connection.
pub(super) trait SqlHandle: UserData + Sized + 'static {
    /// The connection (cheap to clone: a handle on the same connection).
    type Db: Clone;
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
    /// A query as a row source (`db:query`).
    fn query(db: &Self::Db, sql: &str, params: &Params) -> mlua::Result<Box<dyn RowSource>>;
    /// Runs `f` in a transaction (`db:transaction`): committed when it returns, rolled back
    /// when it fails.
    fn transaction(
        db: &Self::Db,
        f: impl FnOnce() -> mlua::Result<MultiValue>,
    ) -> mlua::Result<MultiValue>;
    /// Runs the statements of a `.sql` script (`db:run`).
    fn run_script(
        db: &Self::Db,
        st: &mut SqlStatements<Box<dyn Read>>,
    ) -> mlua::Result<ScriptReport>;
}

/// Implements [`SqlHandle`] for a handle whose connection sits in `Option` field `$field` and
/// whose connection type has `name`, `table_sink` and `run_script` (each backend's own types,
/// so a macro rather than a generic impl); `$insert_options` reads the backend's insert
/// options, `$closed` is the error of a closed handle.
macro_rules! sql_handle {
    ($handle:ty, $field:tt, $db:ty, $insert:ty, $sink:ty, $insert_options:path, $closed:literal) => {
        impl $crate::lua::sql_handle::SqlHandle for $handle {
            type Db = $db;
            type Insert = $insert;
            type Sink = $sink;

            fn db(&self) -> mlua::Result<&$db> {
                self.$field
                    .as_ref()
                    .ok_or_else(|| $crate::lua::rows::lua_err($closed))
            }

            fn close(&mut self) {
                self.$field = None;
            }

            fn shown(&self) -> Option<String> {
                self.$field.as_ref().map(|db| db.name().to_string())
            }

            fn db_name(db: &$db) -> String {
                db.name().to_string()
            }

            fn insert_options(o: &mut $crate::lua::options::Opts) -> mlua::Result<$insert> {
                $insert_options(o)
            }

            fn table_sink(db: &$db, table: &str, io: $insert) -> $sink {
                db.table_sink(table, io)
            }

            fn query(
                db: &$db,
                sql: &str,
                params: &$crate::db::Params,
            ) -> mlua::Result<Box<dyn $crate::formats::RowSource>> {
                Ok(Box::new(
                    db.query(sql, params).map_err($crate::lua::rows::lua_err)?,
                ))
            }

            fn transaction(
                db: &$db,
                f: impl FnOnce() -> mlua::Result<mlua::MultiValue>,
            ) -> mlua::Result<mlua::MultiValue> {
                db.transaction(f)
            }

            fn run_script(
                db: &$db,
                st: &mut $crate::formats::SqlStatements<Box<dyn std::io::Read>>,
            ) -> mlua::Result<$crate::db::ScriptReport> {
                db.run_script(st).map_err($crate::lua::rows::lua_err)
            }
        }
    };
}
pub(super) use sql_handle;

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

/// Registers the methods every handle has alike: `query`, `transaction`, `writer`, `run`,
/// `close` and `__tostring`.
pub(super) fn add_shared_methods<H: SqlHandle, M: UserDataMethods<H>>(methods: &mut M) {
    methods.add_method("query", |lua, this, (sql, args): (String, LuaValue)| {
        let q = H::query(this.db()?, &sql, &super::sqlite::params(args)?)?;
        lua.create_userdata(LuaSource::new(q))
    });
    methods.add_function("transaction", |_, (ud, f): (AnyUserData, Function)| {
        // A clone of the connection, so that the handle is not borrowed while `f` runs (it may
        // insert, which borrows the handle mutably).
        let db = ud.borrow::<H>()?.db()?.clone();
        H::transaction(&db, || f.call::<MultiValue>(ud.clone()))
    });
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
