//! `ferry.redis`: connections to Redis (`connect`, `call`, `pipeline`), the bulk paths
//! `conn:scan()` (a row source of `DUMP` payloads) and `conn:restore()` (a `RESTORE` row sink),
//! and RDB files (`ferry.redis.rdb`, `ferry.redis.check`, `ferry.redis.rdb_writer`).
//!
//! Passwords given to `connect` (in the URL or as an option) are hidden from logs, errors and
//! summaries from the moment the connection is asked for; messages name a target by its
//! redacted label `redis://host:port/db`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

use super::RunHost;
use super::bytes::{Input, reader_arg, writer_arg};
use super::limits::Guard;
use super::options::Opts;
use super::rows::{LuaSink, LuaSource, lua_err};
use crate::db::redis::{
    CONNECT_TIMEOUT_RANGE, Conflict, Interrupt, Progress, RedisConn, RedisError, RedisOptions,
    RedisTarget, Reply, RestoreOptions, RestoreSink, ScanOptions, ScanSource, TIMEOUT_RANGE,
};
use crate::formats::rdb::{
    Checksum, KeyFilter, RdbSink, RdbSource, RdbSummary, check_interruptible as rdb_check,
};
use crate::storage::{StorageConfig, confine_path};
use crate::units::DurationRange;

/// Per-VM context of the bindings: the host (for redaction and progress), the interrupt and
/// the named servers of `ferry.toml`.
#[derive(Clone)]
struct Ctx {
    host: Option<Arc<dyn RunHost>>,
    interrupt: Interrupt,
    named: Arc<BTreeMap<String, (String, RedisOptions)>>,
    /// The confinement a Unix socket path given by a script must pass.
    storage: Arc<StorageConfig>,
}

impl Ctx {
    /// A progress callback reporting to the run as the `progress` options ask, if they do.
    fn progress_of(&self, p: &ProgressOpt) -> Option<Progress> {
        let host = self.host.clone()?;
        if !p.wanted {
            return None;
        }
        let (from, total) = (p.from, p.total);
        Some(Box::new(move |done| host.progress(from + done, total)))
    }
}

/// Installs `ferry.redis`.
pub(crate) fn install(
    lua: &Lua,
    ferry: &Table,
    named: &BTreeMap<String, (String, RedisOptions)>,
    storage: &StorageConfig,
    guard: &Guard,
    host: Option<Arc<dyn RunHost>>,
) -> mlua::Result<()> {
    let g = guard.clone();
    let ctx = Ctx {
        host,
        interrupt: Arc::new(move || g.termination().is_some()),
        named: Arc::new(named.clone()),
        storage: Arc::new(storage.clone()),
    };
    let redis = lua.create_table()?;
    let c = ctx.clone();
    redis.set(
        "connect",
        lua.create_function(move |_, (url, opts): (String, LuaValue)| connect(&c, &url, opts))?,
    )?;
    let c = ctx.clone();
    redis.set(
        "rdb",
        lua.create_function(move |lua, (input, opts): (LuaValue, LuaValue)| {
            rdb_source(lua, &c, input, opts)
        })?,
    )?;
    let c = ctx.clone();
    redis.set(
        "check",
        lua.create_function(move |lua, input: LuaValue| check(lua, &c, input))?,
    )?;
    redis.set(
        "min_version",
        lua.create_function(|_, t: u8| Ok(crate::formats::rdb::min_version(t)))?,
    )?;
    redis.set(
        "type_name",
        lua.create_function(|_, t: u8| Ok(crate::formats::rdb::type_name(t)))?,
    )?;
    redis.set("rdb_writer", lua.create_function(rdb_writer)?)?;
    ferry.set("redis", redis)
}

/// Hides `secret` from everything the run records.
fn hide(ctx: &Ctx, secret: Option<&str>) {
    if let (Some(h), Some(s)) = (&ctx.host, secret)
        && !s.is_empty()
    {
        h.hide(s);
        // A password in a URL may appear percent-encoded too.
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        if encoded != s {
            h.hide(&encoded);
        }
    }
}

fn duration_opt(
    o: &mut Opts,
    key: &str,
    range: DurationRange,
    default: Duration,
) -> mlua::Result<Duration> {
    match o.string(key)? {
        None => Ok(default),
        Some(text) => range
            .parse(&text)
            .map_err(|e| lua_err(format!("ferry.redis.connect: option `{key}`: {e}"))),
    }
}

/// A Unix socket is a file: one a script names (`redis+unix:///path`) must lie under the allowed
/// roots like any other path. Servers named in `ferry.toml` are the operator's choice.
fn confine_socket(storage: &StorageConfig, url: &str) -> mlua::Result<()> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(()); // RedisTarget::new reports the malformed URL.
    };
    if !matches!(parsed.scheme(), "redis+unix" | "unix") {
        return Ok(());
    }
    let path = parsed.to_file_path().map_err(|()| {
        lua_err(RedisError::Config(
            "a Unix socket URL takes an absolute path: redis+unix:///path/to/redis.sock".into(),
        ))
    })?;
    confine_path(storage, &path).map(|_| ()).map_err(|e| {
        lua_err(RedisError::Denied(format!(
            "socket {}: {e}; name a server outside the allowed roots in ferry.toml ([redis.NAME])",
            path.display()
        )))
    })
}

fn connect(ctx: &Ctx, url: &str, opts: LuaValue) -> mlua::Result<LuaRedis> {
    const F: &str = "ferry.redis.connect";
    // A name from `[redis.NAME]` in ferry.toml, or a URL.
    let (url, d) = match ctx.named.get(url) {
        Some((u, o)) => (u.as_str(), o.clone()),
        None if !url.contains("://") => {
            let mut known: Vec<&str> = ctx.named.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(lua_err(format!(
                "{F}: `{url}` is neither a redis:// URL nor a server named in ferry.toml ([redis.NAME]; named: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        None => {
            confine_socket(&ctx.storage, url)?;
            (url, RedisOptions::default())
        }
    };
    // Hide the URL's password before anything can fail and print it.
    if let Ok(u) = url::Url::parse(url) {
        hide(ctx, u.password());
    }
    hide(ctx, d.password.as_deref());
    let mut o = Opts::new(opts, F)?;
    let password = o.string("password")?;
    hide(ctx, password.as_deref());
    let ro = RedisOptions {
        password: password.or(d.password.clone()),
        username: o.string("username")?.or(d.username.clone()),
        db: match o.count("db")? {
            Some(n) => Some(
                i64::try_from(n).map_err(|_| lua_err(format!("{F}: db {n} is out of range")))?,
            ),
            None => d.db,
        },
        connect_timeout: duration_opt(
            &mut o,
            "connect_timeout",
            CONNECT_TIMEOUT_RANGE,
            d.connect_timeout,
        )?,
        timeout: duration_opt(&mut o, "timeout", TIMEOUT_RANGE, d.timeout)?,
        ca: o.string("ca")?.map(String::into_bytes).or(d.ca.clone()),
    };
    o.finish()?;
    let target = RedisTarget::new(url, &ro).map_err(lua_err)?;
    hide(ctx, target.password());
    let con = target.connect().map_err(lua_err)?;
    Ok(LuaRedis {
        con: Some(con),
        target,
        ctx: ctx.clone(),
    })
}

/// A connection held by Lua.
struct LuaRedis {
    con: Option<RedisConn>,
    target: RedisTarget,
    ctx: Ctx,
}

impl LuaRedis {
    fn con(&mut self) -> mlua::Result<&mut RedisConn> {
        let label = self.target.label().to_owned();
        self.con
            .as_mut()
            .ok_or_else(|| lua_err(format!("{label}: the connection is closed")))
    }
}

/// A command argument: strings as they are, numbers in decimal.
fn arg_bytes(v: &LuaValue, what: &dyn Fn() -> String) -> mlua::Result<Vec<u8>> {
    match v {
        LuaValue::String(s) => Ok(s.as_bytes().to_vec()),
        LuaValue::Integer(i) => Ok(i.to_string().into_bytes()),
        LuaValue::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Ok((*f as i64).to_string().into_bytes())
        }
        LuaValue::Number(f) => Ok(f.to_string().into_bytes()),
        other => Err(lua_err(format!(
            "{}: expected a string or a number, got {}",
            what(),
            other.type_name()
        ))),
    }
}

fn command_args(args: &[LuaValue], place: &str) -> mlua::Result<Vec<Vec<u8>>> {
    if args.is_empty() {
        return Err(lua_err(format!("{place}: expected a command name")));
    }
    args.iter()
        .enumerate()
        .map(|(i, v)| arg_bytes(v, &|| format!("{place}: argument {}", i + 1)))
        .collect()
}

/// A reply as a Lua value; `nested` replies turn nil into `false` (a sequence cannot hold nil)
/// and errors into `{ err = message }`.
fn reply_to_lua(lua: &Lua, r: Reply, nested: bool) -> mlua::Result<LuaValue> {
    Ok(match r {
        Reply::Nil if nested => LuaValue::Boolean(false),
        Reply::Nil => LuaValue::Nil,
        Reply::Int(i) => LuaValue::Integer(i),
        Reply::Bytes(b) => LuaValue::String(lua.create_string(&b)?),
        Reply::Status(s) => LuaValue::String(lua.create_string(&s)?),
        Reply::Double(d) => LuaValue::Number(d),
        Reply::Bool(b) => LuaValue::Boolean(b),
        Reply::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for item in items {
                t.raw_push(reply_to_lua(lua, item, true)?)?;
            }
            LuaValue::Table(t)
        }
        Reply::Map(pairs) => {
            let t = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, v) in pairs {
                t.raw_set(reply_to_lua(lua, k, true)?, reply_to_lua(lua, v, true)?)?;
            }
            LuaValue::Table(t)
        }
        Reply::Error(e) => {
            let t = lua.create_table()?;
            t.set("err", e)?;
            LuaValue::Table(t)
        }
    })
}

/// The `progress` option (true, or the expected total) and `progress_from` (keys already
/// reported by earlier sources of the same job, added to this one's count).
struct ProgressOpt {
    wanted: bool,
    total: Option<u64>,
    from: u64,
}

fn want_progress(o: &mut Opts, f: &str) -> mlua::Result<ProgressOpt> {
    let (wanted, total) = match o.value("progress")? {
        LuaValue::Nil | LuaValue::Boolean(false) => (false, None),
        LuaValue::Boolean(true) => (true, None),
        LuaValue::Integer(n) if n >= 0 => (true, Some(n as u64)),
        LuaValue::Number(n) if n >= 0.0 && n.fract() == 0.0 => (true, Some(n as u64)),
        other => {
            return Err(lua_err(format!(
                "{f}: option `progress` must be true or the expected number of keys, got {}",
                other.type_name()
            )));
        }
    };
    let from = o.count("progress_from")?.unwrap_or(0);
    Ok(ProgressOpt {
        wanted,
        total,
        from,
    })
}

impl UserData for LuaRedis {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // call(name, args...): one command; an error reply raises.
        methods.add_method_mut("call", |lua, this, args: MultiValue| {
            let args: Vec<LuaValue> = args.into_iter().collect();
            let argv = command_args(&args, "redis call")?;
            let reply = this.con()?.command(&argv).map_err(lua_err)?;
            reply_to_lua(lua, reply, false)
        });
        // pipeline({ {cmd...}, ... } [, { atomic = bool }]): one round trip.
        methods.add_method_mut("pipeline", |lua, this, (cmds, opts): (Table, LuaValue)| {
            const F: &str = "redis pipeline";
            let mut o = Opts::new(opts, F)?;
            let atomic = o.boolean("atomic")?.unwrap_or(false);
            o.finish()?;
            let mut all = Vec::new();
            for (i, c) in cmds.sequence_values::<Table>().enumerate() {
                let c = c.map_err(|_| {
                    lua_err(format!(
                        "{F}: command {} must be a table of arguments",
                        i + 1
                    ))
                })?;
                let args: Vec<LuaValue> = c
                    .sequence_values::<LuaValue>()
                    .collect::<mlua::Result<_>>()?;
                all.push(command_args(&args, &format!("{F}: command {}", i + 1))?);
            }
            let replies = this.con()?.pipeline(&all, atomic).map_err(lua_err)?;
            let t = lua.create_table_with_capacity(replies.len(), 0)?;
            for r in replies {
                t.raw_push(reply_to_lua(lua, r, true)?)?;
            }
            Ok(t)
        });
        // scan([{ match, count, type, progress }]): row source of DUMP payloads, on its own
        // connection.
        methods.add_method("scan", |lua, this, opts: LuaValue| {
            const F: &str = "redis scan";
            let mut o = Opts::new(opts, F)?;
            let d = ScanOptions::default();
            let so = ScanOptions {
                pattern: o.string("match")?.unwrap_or(d.pattern),
                count: o
                    .count_in("count", 1, 100_000)?
                    .map(|n| n as u32)
                    .unwrap_or(d.count),
                kind: o.string("type")?,
            };
            let progress = want_progress(&mut o, F)?;
            o.finish()?;
            let con = this.target.connect().map_err(lua_err)?;
            let src = ScanSource::new(
                con,
                so,
                Some(this.ctx.interrupt.clone()),
                this.ctx.progress_of(&progress),
            );
            lua.create_userdata(LuaSource::new(Box::new(src)))
        });
        // restore([{ on_conflict = "overwrite"|"skip", batch, db = n|"own", progress }]):
        // RESTORE sink, on its own connection. Keys go into the target's database (its URL's,
        // or `db`); `db = "own"` keeps each row's `db` (an RDB file of several databases).
        methods.add_method("restore", |lua, this, opts: LuaValue| {
            const F: &str = "redis restore";
            let mut o = Opts::new(opts, F)?;
            let d = RestoreOptions::default();
            let policy = o.choice("on_conflict", &super::schema::ON_CONFLICT)?;
            // `mode` is the older name: replace | skip (full | incremental, as redis.migrate's
            // `method`).
            let mode = match o.string("mode")?.map(|m| m.to_ascii_lowercase()).as_deref() {
                None => None,
                Some("replace") | Some("full") => Some("overwrite"),
                Some("skip") | Some("incremental") => Some("skip"),
                Some(other) => {
                    return Err(lua_err(format!(
                        "{F}: option `mode`: expected \"replace\" or \"skip\" (or use on_conflict = \"overwrite\"|\"skip\"), got \"{other}\""
                    )));
                }
            };
            let conflict = match (policy, mode) {
                (Some(_), Some(_)) => {
                    return Err(lua_err(format!(
                        "{F}: options `on_conflict` and `mode` are the same setting; give one"
                    )));
                }
                (Some("skip"), _) | (None, Some("skip")) => Conflict::Skip,
                (Some("fail"), _) => {
                    return Err(lua_err(format!(
                        "{F}: option `on_conflict`: \"fail\" is not supported for Redis; expected \"overwrite\" or \"skip\""
                    )));
                }
                _ => Conflict::Replace,
            };
            let batch = o
                .count_in("batch", 1, 100_000)?
                .map(|n| n as usize)
                .unwrap_or(d.batch);
            let (db, row_db) = match o.value("db")? {
                LuaValue::Nil => (None, false),
                LuaValue::String(s) if s.to_str()?.eq_ignore_ascii_case("own") => (None, true),
                LuaValue::Integer(n) if n >= 0 => (Some(n), false),
                other => {
                    return Err(lua_err(format!(
                        "{F}: option `db`: expected a database number or \"own\" (each row's own database), got {}",
                        other.to_string().unwrap_or_else(|_| other.type_name().into())
                    )));
                }
            };
            let progress = want_progress(&mut o, F)?;
            o.finish()?;
            let con = this.target.connect().map_err(lua_err)?;
            let sink = RestoreSink::new(
                con,
                RestoreOptions {
                    conflict,
                    batch,
                    db,
                    row_db,
                    ..d
                },
                Some(this.ctx.interrupt.clone()),
                this.ctx.progress_of(&progress),
            );
            let name = format!("{} (restore)", this.target.label());
            lua.create_userdata(LuaSink::new(Box::new(sink), None, None, &name))
        });
        // snapshot(writer): the server's own RDB snapshot (replication SYNC) into a writer,
        // committed when complete. Returns the bytes written.
        methods.add_method("snapshot", |_, this, out: LuaValue| {
            let w = writer_arg(&out, "redis snapshot")?;
            let mut sink = w.clone();
            match this.target.snapshot(&mut sink, Some(&this.ctx.interrupt)) {
                Ok(n) => {
                    w.commit()
                        .map_err(|e| lua_err(format!("{}: {e}", w.name())))?;
                    Ok(n)
                }
                Err(e) => {
                    w.abort();
                    Err(lua_err(e))
                }
            }
        });
        // rdb_version(): the RDB version the server reads and writes (nil when unknown).
        methods.add_method_mut("rdb_version", |_, this, ()| {
            this.con()?.rdb_version().map_err(lua_err)
        });
        methods.add_method("url", |_, this, ()| Ok(this.target.label().to_owned()));
        methods.add_method_mut("close", |_, this, ()| {
            this.con = None;
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("Redis({})", this.target.label()))
        });
    }
}

fn rdb_source(lua: &Lua, ctx: &Ctx, input: LuaValue, opts: LuaValue) -> mlua::Result<AnyUserData> {
    const F: &str = "ferry.redis.rdb";
    let mut o = Opts::new(opts, F)?;
    let db = o.count("db")?;
    let pattern = o.string("match")?;
    let types = o.strings("types")?;
    let progress = want_progress(&mut o, F)?;
    o.finish()?;
    let filter = match (&pattern, &types) {
        (None, None) => None,
        _ => Some(
            KeyFilter::new(pattern.as_deref(), types).map_err(|e| lua_err(format!("{F}: {e}")))?,
        ),
    };
    let Input { reader, name } = reader_arg(input, F)?;
    let src = RdbSource::new(reader, &name, db)
        .map_err(lua_err)?
        .with_filter(filter)
        .with_interrupt(ctx.interrupt.clone())
        .with_progress(ctx.progress_of(&progress));
    lua.create_userdata(LuaSource::new(Box::new(src)))
}

fn summary_to_lua(lua: &Lua, s: &RdbSummary) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("version", s.version)?;
    t.set("keys", s.keys)?;
    t.set("expires", s.expires)?;
    t.set("bytes", s.bytes)?;
    t.set("functions", s.functions)?;
    let dbs = lua.create_table()?;
    for (db, n) in &s.dbs {
        dbs.set(*db, *n)?;
    }
    t.set("dbs", dbs)?;
    let types = lua.create_table()?;
    for (t_byte, n) in &s.types {
        types.set(*t_byte, *n)?;
    }
    t.set("types", types)?;
    let aux = lua.create_table()?;
    for (k, v) in &s.aux {
        aux.set(k.as_str(), v.as_str())?;
    }
    t.set("aux", aux)?;
    t.set(
        "checksum",
        match s.checksum {
            Checksum::Verified => "verified",
            Checksum::Disabled => "disabled",
            Checksum::Absent => "absent",
            Checksum::Pending => "pending",
        },
    )?;
    Ok(t)
}

fn check(lua: &Lua, ctx: &Ctx, input: LuaValue) -> mlua::Result<Table> {
    let Input { reader, name } = reader_arg(input, "ferry.redis.check")?;
    let summary = rdb_check(reader, &name, Some(&ctx.interrupt)).map_err(lua_err)?;
    summary_to_lua(lua, &summary)
}

fn rdb_writer(lua: &Lua, (out, opts): (LuaValue, LuaValue)) -> mlua::Result<AnyUserData> {
    const F: &str = "ferry.redis.rdb_writer";
    let o = Opts::new(opts, F)?;
    o.finish()?;
    let w = writer_arg(&out, F)?;
    let name = w.name().to_owned();
    let sink = RdbSink::new(w.clone(), &name);
    lua.create_userdata(LuaSink::new(Box::new(sink), Some(w), None, &name))
}
