//! The job context `ctx` passed to `run`: `run_id`, `job`, `trigger`, `params`,
//! `log.info/warn/error`, `progress`, `artifact`, `state:get/set`, `secret`, `cancelled`,
//! `temp` (the run's temporary store) and `discard_on_failure`.

use std::sync::Arc;

use mlua::{Function, Lua, MultiValue, Table, UserData, UserDataMethods, Value};

use super::convert::{json_to_lua, lua_to_json};
use super::limits::Guard;
use super::{Level, RunHost, RunInput};

/// `ctx.state`: values kept between runs of the job.
struct StateHandle {
    host: Arc<dyn RunHost>,
}

impl UserData for StateHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, key: String| {
            match this.host.state_get(&key) {
                Ok(Some(v)) => json_to_lua(lua, &v),
                Ok(None) => Ok(Value::Nil),
                Err(e) => Err(mlua::Error::runtime(format!("ctx.state:get({key:?}): {e}"))),
            }
        });
        methods.add_method("set", |_, this, (key, value): (String, Value)| {
            let json = if value.is_nil() {
                None
            } else {
                Some(lua_to_json(&value).map_err(|m| {
                    mlua::Error::runtime(format!(
                        "ctx.state:set({key:?}): the value must be JSON-serialisable: {m}"
                    ))
                })?)
            };
            this.host
                .state_set(&key, json.as_ref())
                .map_err(|e| mlua::Error::runtime(format!("ctx.state:set({key:?}): {e}")))
        });
    }
}

/// Formats log arguments like `string.format(fmt, ...)`, or `tostring(fmt)` when alone.
fn format_args(lua: &Lua, args: MultiValue) -> mlua::Result<String> {
    if args.len() <= 1 {
        return match args.into_iter().next() {
            Some(v) => v.to_string(),
            None => Ok(String::new()),
        };
    }
    let format: Function = lua.globals().get::<Table>("string")?.get("format")?;
    format.call::<String>(args)
}

/// Builds `ctx` for one run.
pub fn build(
    lua: &Lua,
    input: &RunInput,
    host: Arc<dyn RunHost>,
    guard: &Guard,
) -> mlua::Result<Table> {
    let ctx = lua.create_table()?;
    ctx.set("run_id", input.run_id)?;
    ctx.set("job", input.job.as_str())?;
    ctx.set("trigger", json_to_lua(lua, &input.trigger)?)?;
    let params = match json_to_lua(lua, &input.params)? {
        Value::Nil => Value::Table(lua.create_table()?),
        v => v,
    };
    ctx.set("params", params)?;

    let log = lua.create_table()?;
    for (name, level) in [
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ] {
        let h = host.clone();
        log.set(
            name,
            lua.create_function(move |lua, args: MultiValue| {
                h.log(level, &format_args(lua, args)?);
                Ok(())
            })?,
        )?;
    }
    ctx.set("log", log)?;

    let h = host.clone();
    ctx.set(
        "progress",
        lua.create_function(move |_, (done, total): (f64, Option<f64>)| {
            if !done.is_finite() || done < 0.0 || total.is_some_and(|t| !t.is_finite() || t < 0.0) {
                return Err(mlua::Error::runtime(
                    "ctx.progress(done, total): expected non-negative numbers",
                ));
            }
            h.progress(done as u64, total.map(|t| t as u64));
            Ok(())
        })?,
    )?;

    let h = host.clone();
    let run_id = input.run_id;
    let storage = input.vm.storage.clone();
    ctx.set(
        "artifact",
        lua.create_function(
            move |lua, (store, path, name): (Value, String, Option<String>)| {
                let name =
                    name.unwrap_or_else(|| path.rsplit('/').next().unwrap_or(&path).to_string());
                let src = super::store::store_arg(lua, &store, "ctx.artifact(store, path)")?;
                let record = super::artifacts::keep(&storage, run_id, &src, &path, &name)?;
                h.artifact(&record)
                    .map_err(|e| mlua::Error::runtime(format!("ctx.artifact: {e}")))
            },
        )?,
    )?;

    ctx.set("state", StateHandle { host: host.clone() })?;

    let h = host.clone();
    ctx.set(
        "secret",
        lua.create_function(move |_, name: String| {
            h.secret(&name).ok_or_else(|| {
                super::host_error::host_err(super::host_error::Kind::NotFound, format!(
                    "secret '{name}' is not set: define the environment variable FERRY_SECRET_{} or `{name} = \"...\"` under [secrets] in ferry.toml",
                    name.to_ascii_uppercase()
                ))
            })
        })?,
    )?;

    let temp_dir = input.temp_dir.clone();
    ctx.set(
        "temp",
        lua.create_function(move |lua, ()| {
            let Some(dir) = &temp_dir else {
                return Err(mlua::Error::runtime(
                    "ctx.temp(): this host gives runs no temporary folder",
                ));
            };
            std::fs::create_dir_all(dir).map_err(|e| {
                mlua::Error::runtime(format!("ctx.temp(): cannot create {}: {e}", dir.display()))
            })?;
            let open: Function = lua.named_registry_value(super::store::OPEN_STORE)?;
            open.call::<Value>(dir.display().to_string())
        })?,
    )?;

    let h = host.clone();
    ctx.set(
        "discard_on_failure",
        lua.create_function(move |_, (store, prefix): (mlua::AnyUserData, String)| {
            let store = super::store::store_of(&store, "ctx.discard_on_failure(store, prefix)")?;
            if prefix.trim_matches('/').is_empty() {
                return Err(mlua::Error::runtime(
                    "ctx.discard_on_failure(store, prefix): prefix must not be empty (a whole store is never discarded)",
                ));
            }
            h.discard_on_failure(&store, &prefix)
                .map_err(|e| mlua::Error::runtime(format!("ctx.discard_on_failure: {e}")))
        })?,
    )?;

    let g = guard.clone();
    ctx.set(
        "cancelled",
        lua.create_function(move |_, ()| Ok(g.cancel_requested()))?,
    )?;
    Ok(ctx)
}
