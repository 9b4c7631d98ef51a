//! `ferry.sqlite.open(path)` → Db: `query`, `exec`, `transaction`, `insert`, `writer`, `run`,
//! `close`. The path is confined to the allowed roots like a local store's
//! ([`crate::storage::confine_path`]), and so is every file the database's statements reach
//! (`ATTACH`, `VACUUM INTO`: [`Db::open_sandboxed`]).

use std::path::Path;
use std::sync::Arc;

use mlua::{Lua, Table, UserData, UserDataMethods, Value as LuaValue};

use super::options::Opts;
use super::rows::{lua_err, lua_to_value};
use super::sql_handle::{self, CountingSink, SqlHandle};
use crate::db::{
    Db, DbError, FileCheck, InsertOptions, InsertReport, OnConflict, Params, TableSink,
};
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

sql_handle::sql_handle!(
    LuaDb,
    0,
    Db,
    InsertOptions,
    TableSink,
    insert_options,
    "the database is closed"
);

impl CountingSink for TableSink {
    fn set_input(&mut self, name: &str) {
        TableSink::set_input(self, name);
    }

    fn report(&self) -> InsertReport {
        TableSink::report(self)
    }
}

impl UserData for LuaDb {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("exec", |_, this, (sql, args): (String, LuaValue)| {
            this.db()?.exec(&sql, &params(args)?).map_err(lua_err)
        });
        methods.add_method("insert", |lua, this, args| {
            sql_handle::insert::<LuaDb>(lua, this.db()?, args)
        });
        sql_handle::add_shared_methods(methods);
    }
}

impl From<DbError> for mlua::Error {
    fn from(e: DbError) -> Self {
        lua_err(e)
    }
}
