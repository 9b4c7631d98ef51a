//! A fresh, sandboxed VM per run.
//!
//! Only the `table`, `string`, `math`, `utf8` and `coroutine` libraries are loaded, plus an `os`
//! reduced to `time`, `clock` and `date`. Gone: `io`, `debug`, `package`, `dofile`, `loadfile`,
//! `string.dump` and binary chunks (`load` is forced to text mode). `collectgarbage` keeps only
//! the options that do not change the collector's limits. `require` finds the host module
//! `ferry` and Lua files under the plugins folder, nothing else. `print` writes to the run log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlua::{
    ChunkMode, Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState,
};

use super::limits::{Guard, LUA_MEMORY_MESSAGE};
use super::{Level, RunHost, VmOptions};
use crate::storage::Confinement;

/// How many VM instructions run between two checks of the limits. A check costs a clock read;
/// at this interval its cost disappears (a few hundred ns every ~20-50 µs of Lua), and the
/// limits still act within a fraction of a millisecond.
const HOOK_INTERVAL: u32 = 10_000;

const LOADED_KEY: &str = "ferry.loaded";

/// Wraps the protected-call functions so that a termination (time, cancel, memory) caught by the
/// script is raised again, and narrows `load` and `collectgarbage`.
const SANDBOX_PRELUDE: &str = r##"
local check, convert = ...
local raw_pcall, raw_xpcall, raw_load, raw_gc = pcall, xpcall, load, collectgarbage
local raw_create, raw_resume, raw_close = coroutine.create, coroutine.resume, coroutine.close
local select, error, tostring, type = select, error, tostring, type

-- An error that crosses from a host function into Lua becomes an error value with a `kind`.
local function pass(ok, ...)
  if not ok then
    check((...))
    return ok, convert((...))
  end
  return ok, ...
end
local function unwrap(ok, ...)
  if not ok then
    check((...))
    error(convert((...)), 0)
  end
  return ...
end

pcall = function(f, ...) return pass(raw_pcall(f, ...)) end
xpcall = function(f, handler, ...)
  if type(handler) ~= "function" then return pass(raw_xpcall(f, handler, ...)) end
  return pass(raw_xpcall(f, function(e) return handler(convert(e)) end, ...))
end
coroutine.resume = function(co, ...) return pass(raw_resume(co, ...)) end
coroutine.close = function(co) return pass(raw_close(co)) end
coroutine.wrap = function(f)
  local co = raw_create(f)
  return function(...) return unwrap(raw_resume(co, ...)) end
end

load = function(chunk, name, mode, ...)
  if select("#", ...) > 0 then return raw_load(chunk, name, "t", ...) end
  return raw_load(chunk, name, "t")
end

local allowed_gc = { collect = true, count = true, step = true, isrunning = true }
collectgarbage = function(opt, ...)
  if opt == nil or allowed_gc[opt] then return raw_gc(opt, ...) end
  error("collectgarbage(\"" .. tostring(opt) .. "\") is not allowed in ferry scripts; allowed: collect, count, step, isrunning", 2)
end
"##;

/// Creates a sandboxed VM with limits and the host module. `host` is `None` while only a spec
/// is evaluated; `print` then goes nowhere.
pub fn new_vm(
    opts: &VmOptions,
    guard: &Guard,
    host: Option<Arc<dyn RunHost>>,
) -> mlua::Result<Lua> {
    let libs = StdLib::TABLE
        | StdLib::STRING
        | StdLib::MATH
        | StdLib::UTF8
        | StdLib::COROUTINE
        | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let globals = lua.globals();

    let os: Table = globals.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["time", "clock", "date"] {
        safe_os.set(name, os.get::<Function>(name)?)?;
    }
    globals.set("os", safe_os)?;
    for name in ["dofile", "loadfile"] {
        globals.set(name, Value::Nil)?;
    }
    globals.get::<Table>("string")?.set("dump", Value::Nil)?;

    let check_guard = guard.clone();
    let check = lua.create_function(move |_, err: Value| {
        if let Value::String(s) = &err
            && s.as_bytes().starts_with(LUA_MEMORY_MESSAGE.as_bytes())
        {
            check_guard.note_memory();
        }
        check_guard.check()
    })?;
    let convert = lua.create_function(super::host_error::to_lua_value)?;
    lua.load(SANDBOX_PRELUDE)
        .set_name("=ferry:sandbox")
        .set_mode(ChunkMode::Text)
        .call::<()>((check, convert))?;

    let print_host = host.clone();
    globals.set(
        "print",
        lua.create_function(move |_, args: MultiValue| {
            let mut parts = Vec::with_capacity(args.len());
            for v in args.iter() {
                parts.push(v.to_string()?);
            }
            if let Some(h) = &print_host {
                h.log(Level::Info, &parts.join("\t"));
            }
            Ok(())
        })?,
    )?;

    // Bindings read the limits (the largest string a read may return) from here.
    lua.set_app_data(guard.clone());

    let ferry = lua.create_table()?;
    ferry.set("version", env!("CARGO_PKG_VERSION"))?;
    super::store::install(&lua, &ferry, &opts.storage, guard, host.clone())?;
    super::rows::install_state(&lua, host.clone());
    super::json::register(&lua, &ferry)?;
    super::formats::register(&lua, &ferry)?;
    super::sqlite::register(&lua, &ferry, &opts.storage)?;
    super::pipe::register(&lua, &ferry)?;
    super::redis::install(
        &lua,
        &ferry,
        &opts.redis,
        &opts.storage,
        guard,
        host.clone(),
    )?;
    super::http::install(&lua, &ferry, &opts.http, guard, host.clone())?;
    super::postgres::install(&lua, &ferry, &opts.databases, &opts.storage, host.clone())?;
    super::mysql::install(
        &lua,
        &ferry,
        &opts.storage,
        super::mysql::named_from(&opts.databases),
        host.clone(),
    )?;
    super::time::register(&lua, &ferry)?;
    super::util::register(&lua, &ferry)?;
    super::host_error::register(&lua, &ferry)?;
    super::convert::register(&lua, &ferry)?;
    super::schema::register(&lua, &ferry, &opts.plugins_label)?;
    globals.set("ferry", ferry.clone())?;
    let loaded = lua.create_table()?;
    loaded.set("ferry", ferry)?;
    lua.set_named_registry_value(LOADED_KEY, loaded)?;
    install_require(&lua, opts)?;

    lua.set_memory_limit(usize::try_from(opts.memory).unwrap_or(usize::MAX))?;
    let hook_guard = guard.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_INTERVAL),
        move |_, _| hook_guard.check().map(|_| VmState::Continue),
    )?;
    Ok(lua)
}

/// Compiles source text (never bytecode) under a chunk name that errors will show.
pub fn load_text(lua: &Lua, source: &str, chunk_name: &str) -> mlua::Result<Function> {
    lua.load(source)
        .set_name(format!("@{chunk_name}"))
        .set_mode(ChunkMode::Text)
        .into_function()
}

fn install_require(lua: &Lua, opts: &VmOptions) -> mlua::Result<()> {
    let plugins_dir = opts.plugins_dir.clone();
    let label = opts.plugins_label.clone();
    let require = lua.create_function(move |lua, name: String| {
        let loaded: Table = lua.named_registry_value(LOADED_KEY)?;
        match loaded.get::<Value>(name.as_str())? {
            Value::Nil => {}
            Value::Boolean(false) => {
                return Err(mlua::Error::runtime(format!(
                    "module '{name}' is required again while it is still loading (a require cycle)"
                )));
            }
            v => return Ok(v),
        }
        let (path, shown) =
            resolve_module(&plugins_dir, &label, &name).map_err(mlua::Error::runtime)?;
        let source = std::fs::read_to_string(&path).map_err(|e| {
            mlua::Error::runtime(format!("cannot read module '{name}' from {shown}: {e}"))
        })?;
        loaded.set(name.as_str(), false)?;
        let result = load_text(lua, &source, &shown).and_then(|f| f.call::<Value>(name.as_str()));
        match result {
            Ok(v) => {
                let v = if v.is_nil() { Value::Boolean(true) } else { v };
                loaded.set(name.as_str(), v.clone())?;
                Ok(v)
            }
            Err(e) => {
                loaded.set(name.as_str(), Value::Nil)?;
                Err(e)
            }
        }
    })?;
    lua.globals().set("require", require)
}

/// Maps a module name (`util.csv`) to a file under the plugins folder (`plugins/util/csv.lua`
/// or `plugins/util/csv/init.lua`). Names with other characters than letters, digits, `_` and
/// dots are refused, so `..`, `/` and absolute paths cannot reach outside the folder; a symlink
/// that leads outside is refused too.
fn resolve_module(dir: &Path, label: &str, name: &str) -> Result<(PathBuf, String), String> {
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !part.starts_with(|c: char| c.is_ascii_digit())
        });
    if !valid {
        return Err(format!(
            "module name '{name}' is not allowed: require takes 'ferry' or a dotted name of a module under {label}/, like 'export' or 'util.csv'"
        ));
    }
    let rel: PathBuf = name.split('.').collect();
    let candidates = [rel.with_extension("lua"), rel.join("init.lua")];
    for candidate in candidates {
        let path = dir.join(&candidate);
        if path.is_file() {
            let shown = format!("{label}/{}", candidate.display());
            // The one confinement check, with the plugins folder as the only root.
            let real = Confinement::new(&[dir.to_path_buf()], &[])
                .check(&path)
                .map_err(|e| {
                    format!("module '{name}' ({shown}) leads outside {label}/ through a link; refused: {e}")
                })?;
            return Ok((real, shown));
        }
    }
    Err(format!(
        "module '{name}' not found: looked for {label}/{} and {label}/{}",
        rel.with_extension("lua").display(),
        rel.join("init.lua").display()
    ))
}
