//! `ferry.store(name_or_url [, opts])`, `ferry.copy(src, src_path, dst, dst_path)` and
//! `ferry.copy_files(src, dst, files [, opts])`: the binding of [`crate::storage`].
//!
//! A Store userdata has the methods `list`, `stat`, `exists`, `read`, `write`, `open`, `create`,
//! `delete`, `copy` and `url`. Every call blocks until the I/O is done; a run's timeout or cancel
//! interrupts the wait. Credentials given inline in `opts` are handed to the host to be hidden
//! from logs; none appears in a message or in `url()`.

use std::sync::Arc;

use mlua::{AnyUserData, IntoLuaMulti, Lua, Table, UserData, UserDataMethods, Value};

use super::RunHost;
use super::host_error::{Classify, Kind, host_err};
use super::limits::Guard;
use super::streams::{LuaReader, LuaWriter, take_reader};
use crate::storage::{
    self, Meta, S3Options, Secret, StorageConfig, StorageError, Store, StoreRegistry, WriteOptions,
};

/// The registry key of the function behind `ferry.store`.
pub(crate) const OPEN_STORE: &str = "ferry.store.open";

/// A store as a script sees it.
struct LuaStore(Store);

const STORE_OPTIONS: &[&str] = &[
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "path_style",
];

fn err(e: StorageError) -> mlua::Error {
    e.to_lua_err()
}

fn meta_table(lua: &Lua, m: &Meta) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("path", m.path.as_str())?;
    t.set("size", m.size)?;
    if let Some(when) = m.modified {
        t.set(
            "modified",
            when.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )?;
    }
    if let Some(etag) = &m.etag {
        t.set("etag", etag.as_str())?;
    }
    Ok(t)
}

fn write_options(what: &str, opts: Option<Table>) -> mlua::Result<WriteOptions> {
    let mut out = WriteOptions::default();
    let Some(opts) = opts else {
        return Ok(out);
    };
    for pair in opts.pairs::<Value, Value>() {
        let (k, v) = pair?;
        match (k.to_string()?.as_str(), v) {
            ("if_absent", Value::Boolean(b)) => out.if_absent = b,
            ("if_absent", other) => {
                return Err(mlua::Error::runtime(format!(
                    "{what}: option if_absent: expected a boolean, got {}",
                    other.type_name()
                )));
            }
            (key, _) => {
                return Err(mlua::Error::runtime(format!(
                    "{what}: unknown option {key:?}; expected: if_absent"
                )));
            }
        }
    }
    Ok(out)
}

fn store_options(opts: Option<Table>) -> mlua::Result<S3Options> {
    let mut o = S3Options::default();
    let Some(opts) = opts else {
        return Ok(o);
    };
    for pair in opts.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let key = k.to_string()?;
        let bad = |want: &str, got: &Value| {
            mlua::Error::runtime(format!(
                "ferry.store: option {key}: expected {want}, got {}",
                got.type_name()
            ))
        };
        let text = |v: &Value| -> mlua::Result<String> {
            match v {
                Value::String(s) => Ok(s.to_str()?.to_string()),
                other => Err(bad("a string", other)),
            }
        };
        let flag = |v: &Value| -> mlua::Result<bool> {
            match v {
                Value::Boolean(b) => Ok(*b),
                other => Err(bad("a boolean", other)),
            }
        };
        match key.as_str() {
            "endpoint" => o.endpoint = Some(text(&v)?),
            "region" => o.region = Some(text(&v)?),
            "access_key_id" => o.access_key_id = Some(Secret::new(text(&v)?)),
            "secret_access_key" => o.secret_access_key = Some(Secret::new(text(&v)?)),
            "session_token" => o.session_token = Some(Secret::new(text(&v)?)),
            "allow_http" => o.allow_http = Some(flag(&v)?),
            "path_style" => o.path_style = Some(flag(&v)?),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "ferry.store: unknown option {other:?}; expected one of: {}",
                    STORE_OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(o)
}

/// The store a script names: a store object, or a store name or URL (opened like
/// `ferry.store(name)`).
pub(crate) fn store_arg(lua: &Lua, v: &Value, what: &str) -> mlua::Result<Store> {
    match v {
        Value::UserData(ud) => store_of(ud, what),
        Value::String(s) => {
            let name = s.to_str()?.to_string();
            let registry = lua
                .app_data_ref::<Arc<StoreRegistry>>()
                .map(|r| r.clone())
                .ok_or_else(|| mlua::Error::runtime(format!("{what}: no stores in this VM")))?;
            registry.open(&name, S3Options::default()).map_err(err)
        }
        other => Err(host_err(
            Kind::Invalid,
            format!(
                "{what}: expected a store name, URL or store object, got {}",
                other.type_name()
            ),
        )),
    }
}

/// The store inside a Store userdata, or an error naming `what` expected one.
pub(crate) fn store_of(ud: &AnyUserData, what: &str) -> mlua::Result<Store> {
    ud.borrow::<LuaStore>()
        .map(|s| s.0.clone())
        .map_err(|_| mlua::Error::runtime(format!("{what}: expected a store (from ferry.store)")))
}

fn read_limit(lua: &Lua) -> u64 {
    lua.app_data_ref::<Guard>()
        .map(|g| g.memory_limit())
        .unwrap_or(u64::MAX)
}

impl UserData for LuaStore {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // list([prefix]): { {path=, size=, modified=, etag=}, ... } sorted by path, recursive.
        methods.add_method("list", |lua, this, prefix: Option<String>| {
            let items = this.0.list(prefix.as_deref().unwrap_or("")).map_err(err)?;
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, m) in items.iter().enumerate() {
                t.raw_set(i + 1, meta_table(lua, m)?)?;
            }
            Ok(t)
        });
        // walk([prefix]): the list, and { {path=, error=}, ... } for every entry that could not
        // be listed (dangling symlinks, fifos, unreadable files); a missing local folder is a
        // `not_found` error.
        methods.add_method("walk", |lua, this, prefix: Option<String>| {
            let (items, skipped) = this.0.walk(prefix.as_deref().unwrap_or("")).map_err(err)?;
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, m) in items.iter().enumerate() {
                t.raw_set(i + 1, meta_table(lua, m)?)?;
            }
            let bad = lua.create_table_with_capacity(skipped.len(), 0)?;
            bad.set_metatable(Some(super::convert::array_meta(lua)?))?;
            for (i, u) in skipped.iter().enumerate() {
                let e = lua.create_table()?;
                e.set("path", u.path.as_str())?;
                e.set("error", u.reason.as_str())?;
                bad.raw_set(i + 1, e)?;
            }
            Ok((t, bad))
        });
        // stat(path): {path=, size=, modified=, etag=} or nil when there is no such object.
        methods.add_method("stat", |lua, this, path: String| {
            match this.0.stat(&path).map_err(err)? {
                Some(m) => Ok(Value::Table(meta_table(lua, &m)?)),
                None => Ok(Value::Nil),
            }
        });
        methods.add_method("exists", |_, this, path: String| {
            this.0.exists(&path).map_err(err)
        });
        // read(path): the whole object as a string (up to the run's memory limit).
        methods.add_method("read", |lua, this, path: String| {
            let bytes = this.0.read(&path, read_limit(lua)).map_err(err)?;
            lua.create_string(&bytes)
        });
        // write(path, data [, {if_absent = true}]): data is a string or a reader (streamed).
        methods.add_method(
            "write",
            |_, this, (path, data, opts): (String, Value, Option<Table>)| {
                let opts = write_options("store:write", opts)?;
                match data {
                    Value::String(s) => this.0.write(&path, &s.as_bytes(), opts).map_err(err),
                    Value::UserData(ud) if ud.is::<LuaReader>() => {
                        let (mut src, label) = take_reader(&ud)?;
                        let mut w = this.0.create(&path, opts).map_err(err)?;
                        std::io::copy(&mut src, &mut w).map_err(
                            |e| match StorageError::from_io(&e) {
                                Some(s) => s.to_lua_err(),
                                None => host_err(Kind::Io, format!("reading {label}: {e}")),
                            },
                        )?;
                        w.commit().map_err(err)
                    }
                    other => Err(mlua::Error::runtime(format!(
                        "store:write(path, data): data must be a string or a reader, got {}",
                        other.type_name()
                    ))),
                }
            },
        );
        // open(path): a reader.
        methods.add_method("open", |_, this, path: String| {
            let r = this.0.open(&path).map_err(err)?;
            let label = this.0.object_url(&path).map_err(err)?;
            Ok(LuaReader::from_buf_read(Box::new(r), label))
        });
        // create(path [, {if_absent = true}]): a writer, visible at close().
        methods.add_method(
            "create",
            |lua, this, (path, opts): (String, Option<Table>)| {
                let opts = write_options("store:create", opts)?;
                let w = this.0.create(&path, opts).map_err(err)?;
                let label = w.url().to_string();
                Ok(LuaWriter::new(lua, Box::new(w), label))
            },
        );
        methods.add_method("delete", |_, this, path: String| {
            this.0.delete(&path).map_err(err)
        });
        methods.add_method("copy", |_, this, (from, to): (String, String)| {
            this.0.copy(&from, &to).map_err(err)
        });
        // url(): the store's URL; url(path): an object's. Never with credentials.
        methods.add_method("url", |_, this, path: Option<String>| match path {
            Some(p) => this.0.object_url(&p).map_err(err),
            None => Ok(this.0.url()),
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("store {}", this.0.label()))
        });
    }
}

/// Installs `ferry.store` and `ferry.copy`. The stores opened live as long as the VM (memory
/// stores included); blocking calls give up when the guard reports a termination.
pub(crate) fn install(
    lua: &Lua,
    ferry: &Table,
    config: &StorageConfig,
    guard: &Guard,
    host: Option<Arc<dyn RunHost>>,
) -> mlua::Result<()> {
    let g = guard.clone();
    let registry = Arc::new(
        StoreRegistry::new(config.clone())
            .with_interrupt(Arc::new(move || g.termination().is_some())),
    );
    lua.set_app_data(registry.clone());
    let open = lua.create_function(move |_, (name, opts): (String, Option<Table>)| {
        let opts = store_options(opts)?;
        if let Some(h) = &host {
            for v in opts.secret_values() {
                h.hide(v);
            }
        }
        let store = registry.open(&name, opts).map_err(err)?;
        Ok(LuaStore(store))
    })?;
    // Kept where scripts cannot replace it, for `ctx.temp()`.
    lua.set_named_registry_value(OPEN_STORE, open.clone())?;
    ferry.set("store", open)?;
    ferry.set(
        "copy",
        lua.create_function(
            |lua,
             (src, src_path, dst, dst_path, opts): (
                AnyUserData,
                String,
                AnyUserData,
                String,
                mlua::Value,
            )| {
                let a = store_of(&src, "ferry.copy(src_store, ...)")?;
                let b = store_of(&dst, "ferry.copy(..., dst_store, ...)")?;
                let mut o = super::options::Opts::new(opts, "ferry.copy")?;
                let sha256 = o.boolean("sha256")?.unwrap_or(false);
                o.finish()?;
                if !sha256 {
                    let n = storage::copy(&a, &src_path, &b, &dst_path).map_err(err)?;
                    return (n, mlua::Value::Nil).into_lua_multi(lua);
                }
                let (n, digest) =
                    storage::copy_hashed(&a, &src_path, &b, &dst_path).map_err(err)?;
                (n, storage::hex(&digest)).into_lua_multi(lua)
            },
        )?,
    )?;
    ferry.set("copy_files", lua.create_function(copy_files)?)?;
    Ok(())
}

/// `ferry.copy_files(src, dst, files [, opts])`: copies many files in one call (see
/// [`storage::copy_files`]); one result table per file, in order.
fn copy_files(
    lua: &Lua,
    (src, dst, files, opts): (Value, Value, Value, Value),
) -> mlua::Result<Table> {
    const WHAT: &str = "ferry.copy_files";
    let a = store_arg(lua, &src, "ferry.copy_files(src_store, ...)")?;
    let b = store_arg(lua, &dst, "ferry.copy_files(..., dst_store, ...)")?;
    let mut o = super::options::Opts::new(opts, WHAT)?;
    let on_conflict = match o.choice("on_conflict", &super::schema::ON_CONFLICT)? {
        Some("skip") => storage::Conflict::Skip,
        Some("fail") => storage::Conflict::Fail,
        _ => storage::Conflict::Overwrite,
    };
    let fail_fast = o.choice("on_error", &super::schema::ON_ERROR)? == Some("fail_fast");
    o.finish()?;
    let Value::Table(files) = files else {
        return Err(host_err(
            Kind::Invalid,
            format!(
                "{WHAT}: files: expected a list of {{ from = path, to = path, sha256 = hex }}, got {}",
                files.type_name()
            ),
        ));
    };
    let mut items = Vec::with_capacity(files.raw_len());
    for (n, v) in files.sequence_values::<Value>().enumerate() {
        items.push(bulk_item(v?, n + 1)?);
    }
    let outcomes = storage::copy_files(
        &a,
        &b,
        &items,
        storage::BulkOptions {
            on_conflict,
            fail_fast,
        },
    )
    .map_err(err)?;
    let out = lua.create_table_with_capacity(outcomes.len(), 0)?;
    out.set_metatable(Some(super::convert::array_meta(lua)?))?;
    for (i, outcome) in outcomes.iter().enumerate() {
        let t = lua.create_table()?;
        match outcome {
            storage::Outcome::Copied { size, sha256 } => {
                t.set("ok", true)?;
                t.set("size", *size)?;
                t.set("sha256", storage::hex(sha256))?;
            }
            storage::Outcome::Skipped => {
                t.set("ok", true)?;
                t.set("skipped", true)?;
            }
            storage::Outcome::Failed(e) => {
                let (kind, got) = match e {
                    storage::FileError::Storage(se) => (se.kind(), None),
                    storage::FileError::Mismatch { got, .. } => (Kind::Data, Some(got)),
                    storage::FileError::Exists => (Kind::AlreadyExists, None),
                };
                t.set("ok", false)?;
                t.set("error", e.to_string())?;
                t.set("kind", kind.as_str())?;
                if let Some(got) = got {
                    t.set("sha256", storage::hex(got))?;
                }
            }
            storage::Outcome::NotAttempted => {
                t.set("ok", false)?;
                t.set("attempted", false)?;
                t.set(
                    "error",
                    "not copied: an earlier file failed (on_error = \"fail_fast\")",
                )?;
                t.set("kind", Kind::Cancelled.as_str())?;
            }
        }
        out.raw_set(i + 1, t)?;
    }
    Ok(out)
}

/// One entry of `ferry.copy_files`'s list: `{ from = path [, to = path] [, sha256 = hex] }`.
fn bulk_item(v: Value, n: usize) -> mlua::Result<storage::BulkItem> {
    let bad = |what: String| {
        host_err(
            Kind::Invalid,
            format!("ferry.copy_files: files[{n}]: {what}"),
        )
    };
    let Value::Table(t) = v else {
        return Err(bad(format!(
            "expected a table {{ from = path, to = path, sha256 = hex }}, got {}",
            v.type_name()
        )));
    };
    let text = |key: &str| -> mlua::Result<Option<String>> {
        match t.raw_get::<Value>(key)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_str()?.to_string())),
            other => Err(bad(format!(
                "`{key}`: expected a string, got {}",
                other.type_name()
            ))),
        }
    };
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let known =
            matches!(&k, Value::String(s) if matches!(&*s.to_str()?, "from" | "to" | "sha256"));
        if !known {
            return Err(bad(format!(
                "unknown field {}; expected from, to, sha256",
                k.to_string().unwrap_or_else(|_| k.type_name().to_string())
            )));
        }
    }
    let from = text("from")?.ok_or_else(|| bad("`from` (the source path) is missing".into()))?;
    let to = text("to")?.unwrap_or_else(|| from.clone());
    let expect = match text("sha256")? {
        None => None,
        Some(h) => Some(
            parse_sha256(&h)
                .ok_or_else(|| bad(format!("`sha256`: expected 64 hex digits, got {h:?}")))?,
        ),
    };
    Ok(storage::BulkItem { from, to, expect })
}

/// A SHA-256 written as 64 hex digits (either case).
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
