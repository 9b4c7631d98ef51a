//! `ferry.sqlite.open(path)` → Db: `query`, `exec`, `transaction`, `insert`, `writer`, `run`,
//! `close`. The path is confined to the allowed roots like a local store's.

use std::path::{Path, PathBuf};

use mlua::{
    AnyUserData, Function, Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue,
};

use super::formats::SqlScript;
use super::rows::{LuaSink, LuaSource, Opts, lua_err, lua_to_value};
use crate::db::{Db, DbError, InsertOptions, OnConflict, Params, TableSink};
use crate::formats::{ProjectedSink, RowSink, SqlStatements};

/// Where databases may be opened: relative paths start at `root`, and the resolved path must
/// lie under one of `allowed` and outside `protected` (the run history).
#[derive(Debug, Clone, Default)]
pub struct DbAccess {
    /// The project root.
    pub root: PathBuf,
    /// Allowed roots (absolute).
    pub allowed: Vec<PathBuf>,
    /// Paths no script may open (absolute).
    pub protected: Vec<PathBuf>,
}

/// Registers `ferry.sqlite`.
pub(crate) fn register(lua: &Lua, ferry: &Table, access: DbAccess) -> mlua::Result<()> {
    let sqlite = lua.create_table()?;
    sqlite.set(
        "open",
        lua.create_function(move |lua, path: String| {
            let real = confine(&access, &path)
                .map_err(|m| lua_err(format!("ferry.sqlite.open({path:?}): {m}")))?;
            if let Some(dir) = real.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    lua_err(format!(
                        "ferry.sqlite.open({path:?}): cannot create {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            let db = Db::open(&real, &path).map_err(lua_err)?;
            lua.create_userdata(LuaDb(Some(db)))
        })?,
    )?;
    ferry.set("sqlite", sqlite)
}

/// Resolves a script's database path under the allowed roots.
fn confine(access: &DbAccess, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err("`..` is not allowed in a database path".into());
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        access.root.join(p)
    };
    let roots = || {
        access
            .allowed
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let real = resolve(&abs).map_err(|e| format!("cannot resolve {} ({e})", abs.display()))?;
    let inside = access
        .allowed
        .iter()
        .any(|r| real.starts_with(resolve(r).unwrap_or_else(|_| r.clone())));
    if !inside {
        let via = if real != abs {
            format!(" (it leads to {})", real.display())
        } else {
            String::new()
        };
        return Err(format!(
            "{}{via} is outside the allowed roots: {}; add its folder to `allow` under [storage] in ferry.toml",
            abs.display(),
            roots()
        ));
    }
    if access
        .protected
        .iter()
        .any(|p| real.starts_with(resolve(p).unwrap_or_else(|_| p.clone())))
    {
        return Err(format!(
            "{} belongs to ferry itself (the run history); scripts may not open it",
            abs.display()
        ));
    }
    Ok(real)
}

/// Resolves symlinks in the deepest existing ancestor of `path` and appends the rest.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while existing.symlink_metadata().is_err() {
        match existing.file_name() {
            Some(n) => rest.push(n.to_os_string()),
            None => break,
        }
        if !existing.pop() {
            break;
        }
    }
    let mut real = existing.canonicalize()?;
    for n in rest.into_iter().rev() {
        real.push(n);
    }
    Ok(real)
}

/// Converts `args` (nil, a sequence, or a table of names) to statement parameters.
fn params(args: LuaValue) -> mlua::Result<Params> {
    match args {
        LuaValue::Nil => Ok(Params::None),
        LuaValue::Table(t) => {
            let n = t.raw_len();
            let mut named = Vec::new();
            let mut count = 0;
            for pair in t.pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair?;
                count += 1;
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
            let mut list = Vec::with_capacity(n);
            for i in 1..=n {
                let v: LuaValue = t.raw_get(i)?;
                list.push(lua_to_value(&v, &|| format!("parameter {i}"))?);
            }
            Ok(Params::Positional(list))
        }
        other => Err(lua_err(format!(
            "parameters must be a table (a list for ?, names for :name), got {}",
            other.type_name()
        ))),
    }
}

fn insert_options(o: &mut Opts) -> mlua::Result<InsertOptions> {
    let on_conflict = match o.string("on_conflict")?.as_deref() {
        None | Some("fail") => OnConflict::Fail,
        Some("skip") => OnConflict::Skip,
        Some("replace") => OnConflict::Replace,
        Some(other) => {
            return Err(lua_err(format!(
                "option `on_conflict`: expected \"fail\", \"skip\" or \"replace\", got {other:?}"
            )));
        }
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
                let r = crate::formats::pipe(s.get()?.as_mut(), &mut sink);
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
            let report = match &script {
                LuaValue::UserData(ud) if ud.is::<SqlScript>() => {
                    let mut s = ud.borrow_mut::<SqlScript>()?;
                    let st = s
                        .statements
                        .as_mut()
                        .ok_or_else(|| lua_err("db:run: this script was already run"))?;
                    db.run_script(st)
                }
                _ => {
                    let input = super::bytes::reader_arg(script, "db:run")?;
                    db.run_script(&mut SqlStatements::new(input.reader, &input.name))
                }
            }
            .map_err(lua_err)?;
            let t = lua.create_table()?;
            t.set("statements", report.statements)?;
            t.set("changes", report.changes)?;
            Ok(t)
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
