//! `ferry.sqlite.open(path)` → Db: `query`, `exec`, `transaction`, `insert`, `writer`, `run`,
//! `close`. The path is confined to the allowed roots like a local store's
//! ([`crate::storage::confine_path`]), and so is every file the database's statements reach
//! (`ATTACH`, `VACUUM INTO`: [`Db::open_sandboxed`]).

use std::path::Path;
use std::sync::Arc;

use mlua::{
    AnyUserData, Function, Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue,
};

use super::options::Opts;
use super::rows::{LuaSink, LuaSource, lua_err, lua_to_value};
use crate::db::{Db, DbError, FileCheck, InsertOptions, OnConflict, Params, TableSink};
use crate::formats::{ProjectedSink, RowSink};
use crate::storage::{StorageConfig, confine_path};

/// Registers `ferry.sqlite`.
pub(crate) fn register(lua: &Lua, ferry: &Table, storage: &StorageConfig) -> mlua::Result<()> {
    let confine = storage.clone();
    let check: FileCheck = {
        let storage = storage.clone();
        Arc::new(move |p: &Path| {
            confine_path(&storage, p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    };
    let open_check = check.clone();
    let storage = storage.clone();
    let sqlite = lua.create_table()?;
    sqlite.set(
        "open",
        lua.create_function(move |lua, path: String| {
            let real = confine_path(&storage, Path::new(&path))
                .map_err(|m| denied("ferry.sqlite.open", &path, m))?;
            if let Some(dir) = real.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    lua_err(format!(
                        "ferry.sqlite.open({path:?}): cannot create {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            let db = Db::open_sandboxed(&real, &path, open_check.clone()).map_err(lua_err)?;
            lua.create_userdata(LuaDb(Some(db)))
        })?,
    )?;
    sqlite.set(
        "snapshot",
        lua.create_function(move |_, (src, dest): (String, String)| {
            let what = format!("ferry.sqlite.snapshot({src:?}, {dest:?})");
            let real_src = confine_path(&confine, Path::new(&src))
                .map_err(|m| denied("ferry.sqlite.snapshot", &src, m))?;
            if !real_src.is_file() {
                return Err(lua_err(format!("{what}: {src} does not exist")));
            }
            let real_dest = confine_path(&confine, Path::new(&dest))
                .map_err(|m| denied("ferry.sqlite.snapshot", &dest, m))?;
            if let Some(dir) = real_dest.parent() {
                std::fs::create_dir_all(dir).map_err(|e| lua_err(format!("{what}: {e}")))?;
            }
            let db = Db::open_sandboxed(&real_src, &src, check.clone()).map_err(lua_err)?;
            db.snapshot_to(&real_dest)
                .map_err(|e| lua_err(format!("{what}: {e}")))
        })?,
    )?;
    ferry.set("sqlite", sqlite)
}

/// The error of a database path that `func` was given and the confinement refused.
fn denied(func: &str, path: &str, e: crate::storage::ErrorKind) -> mlua::Error {
    lua_err(DbError::Denied {
        db: path.to_owned(),
        context: func.to_owned(),
        reason: e.to_string(),
    })
}

/// Converts `args` (nil, a sequence, or a table of names) to statement parameters.
pub(super) fn params(args: LuaValue) -> mlua::Result<Params> {
    match args {
        LuaValue::Nil => Ok(Params::None),
        LuaValue::Table(t) => {
            let n = t.raw_len();
            let mut named = Vec::new();
            let mut count = 0;
            let mut max_index = 0usize;
            for pair in t.pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair?;
                count += 1;
                if let LuaValue::Integer(i) = k
                    && i > 0
                {
                    max_index = max_index.max(i as usize);
                }
                if let LuaValue::String(s) = &k {
                    let name = s.to_str()?.to_string();
                    let val = lua_to_value(&v, &|| format!("parameter `{name}`"))?;
                    named.push((name, val));
                }
            }
            if !named.is_empty() {
                if named.len() != count {
                    return Err(lua_err(
                        "parameters: use either a list (for ?) or names (for :name), not both",
                    ));
                }
                return Ok(Params::Named(named));
            }
            // Up to the largest index given: a nil in the list (or at its end) is null.
            let mut list = vec![crate::formats::Value::Null; n.max(max_index)];
            for (i, slot) in list.iter_mut().enumerate() {
                let v: LuaValue = t.raw_get(i + 1)?;
                *slot = lua_to_value(&v, &|| format!("parameter {}", i + 1))?;
            }
            Ok(Params::Positional(list))
        }
        other => Err(lua_err(format!(
            "parameters must be a table (a list for ?, names for :name), got {}",
            other.type_name()
        ))),
    }
}

pub(super) fn insert_options(o: &mut Opts) -> mlua::Result<InsertOptions> {
    let on_conflict = match o.choice("on_conflict", &super::schema::ON_CONFLICT)? {
        Some("skip") => OnConflict::Skip,
        Some("overwrite") => OnConflict::Replace,
        _ => OnConflict::Fail,
    };
    Ok(InsertOptions {
        on_conflict,
        create: o.boolean("create")?.unwrap_or(false),
        batch: o.count("batch")?.unwrap_or(0),
    })
}

/// The Lua handle of a database; `None` once closed.
struct LuaDb(Option<Db>);

impl LuaDb {
    fn db(&self) -> mlua::Result<&Db> {
        self.0
            .as_ref()
            .ok_or_else(|| lua_err("the database is closed"))
    }
}

/// A table sink with the writer options applied, for `db:writer` and `db:insert`.
fn table_sink(
    db: &Db,
    table: &str,
    opts: LuaValue,
    func: &str,
) -> mlua::Result<(ProjectedSink<TableSink>, String, Option<Vec<String>>)> {
    let mut o = Opts::new(opts, func)?;
    let io = insert_options(&mut o)?;
    let mut wo = o.write_options(&format!("{}: table {table}", db.name()))?;
    wo.header = o.strings("names")?;
    o.finish()?;
    let name = wo.name.clone();
    let columns = wo.columns.clone();
    Ok((
        ProjectedSink::new(db.table_sink(table, io), wo),
        name,
        columns,
    ))
}

impl UserData for LuaDb {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("query", |lua, this, (sql, args): (String, LuaValue)| {
            let q = this.db()?.query(&sql, &params(args)?).map_err(lua_err)?;
            lua.create_userdata(LuaSource::new(Box::new(q)))
        });
        methods.add_method("exec", |_, this, (sql, args): (String, LuaValue)| {
            this.db()?.exec(&sql, &params(args)?).map_err(lua_err)
        });
        methods.add_function("transaction", |_, (ud, f): (AnyUserData, Function)| {
            let db = ud.borrow::<LuaDb>()?.db()?.clone();
            db.transaction(|| f.call::<MultiValue>(ud.clone()))
        });
        methods.add_method(
            "insert",
            |lua, this, (table, src, opts): (String, AnyUserData, LuaValue)| {
                let (mut sink, _, _) = table_sink(this.db()?, &table, opts, "db:insert")?;
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
            },
        );
        methods.add_method("writer", |lua, this, (table, opts): (String, LuaValue)| {
            let (sink, name, columns) = table_sink(this.db()?, &table, opts, "db:writer")?;
            lua.create_userdata(LuaSink::new(Box::new(sink), None, columns, &name))
        });
        methods.add_method("run", |lua, this, script: LuaValue| {
            let db = this.db()?;
            super::formats::run_script(lua, script, |st| db.run_script(st).map_err(lua_err))
        });
        methods.add_method_mut("close", |_, this, ()| {
            this.0 = None;
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(match &this.0 {
                Some(db) => format!("Db({})", db.name()),
                None => "Db(closed)".into(),
            })
        });
    }
}

impl From<DbError> for mlua::Error {
    fn from(e: DbError) -> Self {
        lua_err(e)
    }
}
