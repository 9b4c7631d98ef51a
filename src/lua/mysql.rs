//! `ferry.mysql.connect(url [, opts])` → Db with the SQLite Db's contract: `query` (a streaming
//! row source), `exec`, `transaction`, `insert` (the bulk path: `LOAD DATA LOCAL INFILE` fed
//! from the source), `writer` (a multi-row `INSERT` sink), `close`; plus `connection_id`.
//!
//! Passwords given to `connect` (in the URL or as an option) are hidden from logs, errors and
//! summaries from the moment the connection is asked for; messages name a server by its
//! redacted label `mysql://user@host:port/db`. A Unix socket or CA file a script names must lie
//! under the allowed roots, like any other path.
//!
//! Named databases: [`Named`] resolves a name (`[databases.NAME]` in `ferry.toml`) to a URL,
//! options and the name of the secret holding the password, if any.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mlua::{AnyUserData, Lua, Table, UserData, UserDataMethods, Value as LuaValue};

use super::RunHost;
use super::options::Opts;
use super::rows::{LuaSource, lua_err};
use super::sql_handle::{self, SqlHandle};
use crate::db::mysql::{
    BulkMode, CONNECT_TIMEOUT_RANGE, Db, InsertOptions, MysqlError, MysqlOptions, MysqlTarget,
    OnConflict, SslMode, TIMEOUT_RANGE, TableSink,
};
use crate::storage::{StorageConfig, confine_path};
use crate::units::DurationRange;

/// Resolves a database name to its URL, options (password included) and the name of the secret
/// that holds its password (`password_secret`), or `None`.
pub(crate) type Named = Arc<dyn Fn(&str) -> Option<(String, MysqlOptions, Option<String>)>>;

/// The [`Named`] lookup over `[databases.NAME]`: only the MySQL ones.
pub(crate) fn named_from(
    databases: &std::collections::BTreeMap<String, crate::db::NamedDatabase>,
) -> Named {
    let dbs = databases.clone();
    Arc::new(move |name: &str| {
        let d = dbs.get(name).filter(|d| d.scheme() == "mysql")?;
        let opts = MysqlOptions {
            password: d.password.clone(),
            ssl_mode: d.sslmode.as_deref().and_then(|m| SslMode::parse(m).ok()),
            ca_file: d.ca_file.clone(),
            connect_timeout: d.connect_timeout,
            timeout: d.statement_timeout,
            ..Default::default()
        };
        Some((d.url.clone(), opts, d.password_secret.clone()))
    })
}

#[derive(Clone)]
struct Ctx {
    host: Option<Arc<dyn RunHost>>,
    storage: Arc<StorageConfig>,
    named: Named,
}

/// Installs `ferry.mysql`.
pub(crate) fn install(
    lua: &Lua,
    ferry: &Table,
    storage: &StorageConfig,
    named: Named,
    host: Option<Arc<dyn RunHost>>,
) -> mlua::Result<()> {
    let ctx = Ctx {
        host,
        storage: Arc::new(storage.clone()),
        named,
    };
    let mysql = lua.create_table()?;
    mysql.set(
        "connect",
        lua.create_function(move |lua, (url, opts): (String, LuaValue)| {
            let db = connect(&ctx, &url, opts)?;
            lua.create_userdata(LuaDb {
                db: Some(db),
                host: ctx.host.clone(),
                warned: false,
            })
        })?,
    )?;
    ferry.set("mysql", mysql)
}

/// Hides `secret` (and its percent-encoded form) from everything the run records.
fn hide(ctx: &Ctx, secret: Option<&str>) {
    if let (Some(h), Some(s)) = (&ctx.host, secret)
        && !s.is_empty()
    {
        h.hide(s);
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        if encoded != s {
            h.hide(&encoded);
        }
    }
}

fn duration_opt(o: &mut Opts, key: &str, range: DurationRange) -> mlua::Result<Option<Duration>> {
    match o.string(key)? {
        None => Ok(None),
        Some(text) => range
            .parse(&text)
            .map(Some)
            .map_err(|e| lua_err(format!("ferry.mysql.connect: option `{key}`: {e}"))),
    }
}

/// A path a script names (socket, CA file) must lie under the allowed roots.
fn confine(ctx: &Ctx, what: &str, path: &Path) -> mlua::Result<std::path::PathBuf> {
    confine_path(&ctx.storage, path).map_err(|e| {
        lua_err(MysqlError::Denied(format!(
            "{what} {}: {e}; name a server outside the allowed roots in ferry.toml ([databases.NAME])",
            path.display()
        )))
    })
}

fn connect(ctx: &Ctx, url: &str, opts: LuaValue) -> mlua::Result<Db> {
    const F: &str = "ferry.mysql.connect";
    let (url, named, d) = match (ctx.named)(url) {
        Some((u, o, secret)) => {
            let mut o = o;
            if let Some(secret) = secret {
                let value = ctx.host.as_ref().and_then(|h| h.secret(&secret)).ok_or_else(|| {
                    lua_err(format!(
                        "{F}: secret '{secret}' (password_secret of database `{url}`) is not set: define FERRY_SECRET_{} or `{secret} = \"...\"` under [secrets] in ferry.toml",
                        secret.to_ascii_uppercase()
                    ))
                })?;
                hide(ctx, Some(&value));
                o.password = Some(value);
            }
            (u, true, o)
        }
        None if !url.contains("://") => {
            return Err(lua_err(format!(
                "{F}: `{url}` is neither a mysql:// URL nor a database named in ferry.toml ([databases.NAME]); expected mysql://[user[:password]@]host[:port][/database]"
            )));
        }
        None => (url.to_owned(), false, MysqlOptions::default()),
    };
    // Hide the URL's password before anything can fail and print it.
    if let Ok(u) = url::Url::parse(&url) {
        hide(ctx, u.password());
        if let Some(p) = u.password() {
            let decoded: String = url::form_urlencoded::parse(format!("p={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            hide(ctx, Some(&decoded));
        }
    }
    hide(ctx, d.password.as_deref());
    let mut o = Opts::new(opts, F)?;
    let password = o.string("password")?;
    hide(ctx, password.as_deref());
    let ca_file = match o.string("ca_file")? {
        Some(p) => Some(confine(ctx, "ca_file", Path::new(&p))?),
        None => d.ca_file.clone(),
    };
    let ssl_mode = match o.string("ssl_mode")? {
        Some(m) => Some(SslMode::parse(&m).map_err(lua_err)?),
        None => d.ssl_mode,
    };
    let mo = MysqlOptions {
        user: o.string("user")?.or(d.user.clone()),
        password: password.or(d.password.clone()),
        database: o.string("database")?.or(d.database.clone()),
        ssl_mode,
        ca_file,
        connect_timeout: duration_opt(&mut o, "connect_timeout", CONNECT_TIMEOUT_RANGE)?
            .or(d.connect_timeout),
        timeout: duration_opt(&mut o, "timeout", TIMEOUT_RANGE)?.or(d.timeout),
    };
    o.finish()?;
    let target = MysqlTarget::new(&url, &mo).map_err(lua_err)?;
    hide(ctx, target.password());
    if let Some(socket) = target.socket()
        && !named
    {
        confine(ctx, "socket", socket)?;
    }
    target.connect().map_err(lua_err)
}

fn insert_options(o: &mut Opts) -> mlua::Result<InsertOptions> {
    let on_conflict = match o.choice("on_conflict", &super::schema::ON_CONFLICT)? {
        Some("skip") => OnConflict::Skip,
        Some("overwrite") => OnConflict::Replace,
        _ => OnConflict::Fail,
    };
    let bulk = match o.string("bulk")?.as_deref() {
        None | Some("auto") => BulkMode::Auto,
        Some("load_data") => BulkMode::LoadData,
        Some("insert") => BulkMode::Insert,
        Some(other) => {
            return Err(lua_err(format!(
                "option `bulk`: `{other}` is not known; expected auto, load_data or insert"
            )));
        }
    };
    Ok(InsertOptions {
        on_conflict,
        create: o.boolean("create")?.unwrap_or(false),
        batch: o.count("batch")?.unwrap_or(0),
        bulk,
    })
}

/// The Lua handle of a connection; `db` is `None` once closed.
struct LuaDb {
    db: Option<Db>,
    host: Option<Arc<dyn RunHost>>,
    /// Whether the fallback from `LOAD DATA` was logged already.
    warned: bool,
}

sql_handle::sql_handle!(
    LuaDb,
    db,
    Db,
    InsertOptions,
    TableSink,
    insert_options,
    "mysql: the connection is closed"
);

impl UserData for LuaDb {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("exec", |_, this, (sql, args): (String, LuaValue)| {
            let r = this
                .db()?
                .exec(&sql, &super::sqlite::params(args)?)
                .map_err(lua_err)?;
            Ok((r.affected, r.last_insert_id))
        });
        methods.add_method_mut(
            "insert",
            |lua, this, (table, src, opts): (String, AnyUserData, LuaValue)| {
                let mut o = Opts::new(opts, "db:insert")?;
                let io = insert_options(&mut o)?;
                o.finish()?;
                let db = this.db()?.clone();
                let mut s = src.borrow_mut::<LuaSource>().map_err(|_| {
                    lua_err("db:insert: expected a row source (a reader or db:query) as the second argument")
                })?;
                let source = s.get()?;
                let r = db.insert(&table, source.as_mut(), io);
                s.finished(lua);
                let report = r.map_err(lua_err)?;
                if let (Some(note), Some(host)) = (&report.note, &this.host)
                    && !this.warned
                {
                    this.warned = true;
                    host.log(
                        super::Level::Warn,
                        &format!(
                            "{}: {note}; inserting with multi-row INSERTs instead",
                            db.name()
                        ),
                    );
                }
                Ok((report.inserted, report.skipped, report.method))
            },
        );
        methods.add_method("connection_id", |_, this, ()| {
            Ok(this.db()?.connection_id())
        });
        sql_handle::add_shared_methods(methods);
    }
}

impl From<MysqlError> for mlua::Error {
    fn from(e: MysqlError) -> Self {
        lua_err(e)
    }
}
