//! `ferry.json.encode(value [, { pretty = true }])` and `ferry.json.decode(text)`: values to
//! and from JSON text, through the conversions of `convert.rs` (`null` is `nil`).

use mlua::{Lua, Table, Value};

use super::convert::{json_to_lua, lua_to_json};
use super::options::Opts;

/// Registers `ferry.json.encode` and `ferry.json.decode`.
pub(crate) fn register(lua: &Lua, ferry: &Table) -> mlua::Result<()> {
    let json = match ferry.get::<Value>("json")? {
        Value::Table(t) => t,
        _ => lua.create_table()?,
    };
    json.set(
        "encode",
        lua.create_function(|_, (v, opts): (Value, Value)| {
            let mut o = Opts::new(opts, "ferry.json.encode")?;
            let pretty = o.boolean("pretty")?.unwrap_or(false);
            o.finish()?;
            let j = lua_to_json(&v)
                .map_err(|m| mlua::Error::runtime(format!("ferry.json.encode: {m}")))?;
            let text = if pretty {
                serde_json::to_string_pretty(&j)
            } else {
                serde_json::to_string(&j)
            };
            text.map_err(|e| mlua::Error::runtime(format!("ferry.json.encode: {e}")))
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let j = parse(&text.as_bytes())
                .map_err(|m| mlua::Error::runtime(format!("ferry.json.decode: {m}")))?;
            json_to_lua(lua, &j)
        })?,
    )?;
    ferry.set("json", json)
}

/// Parses JSON text; the error says where it is invalid (`invalid JSON at line 1, column 5:
/// ...`).
pub(crate) fn parse(text: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(text).map_err(|e| {
        format!(
            "invalid JSON at line {}, column {}: {}",
            e.line(),
            e.column(),
            e.to_string().split(" at line ").next().unwrap_or_default()
        )
    })
}
