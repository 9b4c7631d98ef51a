//! `ferry.postgres.connect(url_or_name [, opts])` → Db with the SQLite Db's contract: `query`
//! (a streaming row source), `exec`, `transaction`, `insert`, `writer`, `close`.
//!
//! Sandbox: a script may connect to any host, as with `ferry.redis` (the network is the
//! operator's to fence); what is a file goes through the confinement of stores: `ca_file` and a
//! Unix socket folder (`?host=/dir`) given by a script must lie under the allowed roots. Every
//! password (the URL's, `opts.password`, a named database's) is hidden from the run's logs,
//! errors and summary before anything can fail, and messages show the URL without it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mlua::{Lua, Table, UserData, UserDataMethods, Value as LuaValue};

use super::RunHost;
use super::host_error::{Classify, Kind, host_err};
use super::options::Opts;
use super::rows::lua_err;
use super::sql_handle::{self, CountingSink, SqlHandle};
use super::sqlite::{insert_options, params};
use crate::db::postgres::{PgDb, PgError, PgOptions, PgTableSink, SslMode};
use crate::db::{InsertOptions, InsertReport, NamedDatabase};
use crate::storage::{StorageConfig, confine_path};
use crate::units::DurationRange;

/// `connect_timeout` and `statement_timeout`.
const TIMEOUT_RANGE: DurationRange =
    DurationRange::new(std::time::Duration::from_millis(1), crate::units::DAY);

impl Classify for PgError {
    fn kind(&self) -> Kind {
        match self {
            PgError::Format(f) => f.kind(),
            other => Kind::parse(other.kind_name()).unwrap_or(Kind::Sql),
        }
    }
}

impl super::host_error::IntoLuaErr for PgError {
    fn into_lua_err(self) -> mlua::Error {
        self.to_lua_err()
    }
}

#[derive(Clone)]
struct Ctx {
    host: Option<Arc<dyn RunHost>>,
    named: Arc<BTreeMap<String, NamedDatabase>>,
    storage: Arc<StorageConfig>,
}

impl Ctx {
    fn hide(&self, secret: Option<&str>) {
        if let (Some(h), Some(s)) = (&self.host, secret)
            && !s.is_empty()
        {
            h.hide(s);
            let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            if encoded != s {
                h.hide(&encoded);
            }
        }
    }
}

/// Registers `ferry.postgres`.
pub(crate) fn install(
    lua: &Lua,
    ferry: &Table,
    named: &BTreeMap<String, NamedDatabase>,
    storage: &StorageConfig,
    host: Option<Arc<dyn RunHost>>,
) -> mlua::Result<()> {
    let ctx = Ctx {
        host,
        named: Arc::new(named.clone()),
        storage: Arc::new(storage.clone()),
    };
    let pg = lua.create_table()?;
    pg.set(
        "connect",
        lua.create_function(move |lua, (url, opts): (String, LuaValue)| {
            let db = connect(&ctx, &url, opts)?;
            lua.create_userdata(LuaPg(Some(db)))
        })?,
    )?;
    ferry.set("postgres", pg)?;
    // `ferry.databases`: the names of `[databases.NAME]` and their kind ("postgres", "mysql"),
    // for code that dispatches on a name (the export and import plugins). No URL, no password.
    let names = lua.create_table()?;
    for (name, d) in named {
        names.set(name.as_str(), d.scheme())?;
    }
    ferry.set("databases", names)
}

fn connect(ctx: &Ctx, url: &str, opts: LuaValue) -> mlua::Result<PgDb> {
    const F: &str = "ferry.postgres.connect";
    let (url, named) = match ctx.named.get(url) {
        Some(d) if d.scheme() == "postgres" => (d.url.clone(), Some(d.clone())),
        Some(_) => {
            return Err(host_err(
                Kind::Invalid,
                format!("{F}: `{url}` in ferry.toml is not a postgres:// database"),
            ));
        }
        None if !url.contains("://") => {
            let mut known: Vec<&str> = ctx
                .named
                .iter()
                .filter(|(_, d)| d.scheme() == "postgres")
                .map(|(k, _)| k.as_str())
                .collect();
            known.sort_unstable();
            return Err(host_err(
                Kind::Invalid,
                format!(
                    "{F}: `{url}` is neither a postgres:// URL nor a database named in ferry.toml ([databases.NAME]; named: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        None => (url.to_string(), None),
    };
    // Hide the URL's password before anything can fail and print it.
    if let Ok(u) = url::Url::parse(&url) {
        ctx.hide(u.password());
        if let Some(p) = u.password() {
            ctx.hide(
                url::form_urlencoded::parse(format!("x={p}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .as_deref(),
            );
        }
    }
    let mut o = Opts::new(opts, F)?;
    let password = o.string("password")?;
    ctx.hide(password.as_deref());
    let mut po = PgOptions::default();
    if let Some(d) = &named {
        ctx.hide(d.password.as_deref());
        po.password = d.password.clone();
        if let Some(secret) = &d.password_secret {
            let value = ctx.host.as_ref().and_then(|h| h.secret(secret)).ok_or_else(|| {
                host_err(
                    Kind::NotFound,
                    format!(
                        "{F}: secret '{secret}' (password_secret of the database) is not set: define FERRY_SECRET_{} or `{secret} = \"...\"` under [secrets] in ferry.toml",
                        secret.to_ascii_uppercase()
                    ),
                )
            })?;
            ctx.hide(Some(&value));
            po.password = Some(value);
        }
        po.sslmode = d.sslmode.as_deref().and_then(SslMode::parse);
        po.ca_file = d.ca_file.clone();
        po.connect_timeout = d.connect_timeout;
        po.statement_timeout = d.statement_timeout;
    }
    if password.is_some() {
        po.password = password;
    }
    if let Some(m) = o.string("sslmode")? {
        po.sslmode = Some(SslMode::parse(&m).ok_or_else(|| {
            host_err(
                Kind::Invalid,
                format!("{F}: option `sslmode`: `{m}`: expected disable, prefer, require, verify-ca or verify-full"),
            )
        })?);
    }
    if let Some(f) = o.string("ca_file")? {
        let real = confine_path(&ctx.storage, Path::new(&f))
            .map_err(|e| host_err(Kind::Denied, format!("{F}: ca_file {f}: {e}")))?;
        po.ca_file = Some(real);
    }
    for key in ["connect_timeout", "statement_timeout"] {
        if let Some(t) = o.string(key)? {
            let d = TIMEOUT_RANGE
                .parse(&t)
                .map_err(|e| host_err(Kind::Invalid, format!("{F}: option `{key}`: {e}")))?;
            if key == "connect_timeout" {
                po.connect_timeout = Some(d);
            } else {
                po.statement_timeout = Some(d);
            }
        }
    }
    if let Some(n) = o.count("fetch_rows")? {
        po.fetch_rows = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    o.finish()?;
    let target = crate::db::postgres::PgTarget::new(&url, &po).map_err(lua_err)?;
    ctx.hide(target.password());
    // A Unix socket is a file: one a script names must lie under the allowed roots.
    if named.is_none()
        && let Some(dir) = target.socket()
    {
        confine_path(&ctx.storage, dir).map_err(|e| {
            host_err(
                Kind::Denied,
                format!(
                    "{F}: socket folder {}: {e}; name a database outside the allowed roots in ferry.toml ([databases.NAME])",
                    dir.display()
                ),
            )
        })?;
    }
    target.connect().map_err(lua_err)
}

/// The Lua handle of a connection; `None` once closed.
struct LuaPg(Option<PgDb>);

sql_handle::sql_handle!(
    LuaPg,
    0,
    PgDb,
    InsertOptions,
    PgTableSink,
    insert_options,
    "the database is closed"
);

impl CountingSink for PgTableSink {
    fn set_input(&mut self, name: &str) {
        PgTableSink::set_input(self, name);
    }

    fn report(&self) -> InsertReport {
        PgTableSink::report(self)
    }
}

impl UserData for LuaPg {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("exec", |_, this, (sql, args): (String, LuaValue)| {
            this.db()?.exec(&sql, &params(args)?).map_err(lua_err)
        });
        methods.add_method("insert", |lua, this, args| {
            sql_handle::insert::<LuaPg>(lua, this.db()?, args)
        });
        sql_handle::add_shared_methods(methods);
    }
}

impl From<PgError> for mlua::Error {
    fn from(e: PgError) -> Self {
        lua_err(e)
    }
}
