//! Conversions between Lua values and JSON (`serde_json::Value`): job specs, params, state,
//! summaries.
//!
//! A Lua table whose keys are exactly `1..n` (n > 0) becomes a JSON array; any other table an
//! object (number keys are written as their decimal text). An empty table becomes `{}`, unless
//! it is marked as an array ([`array_meta`]: `ferry.array()`, or any array that came from JSON),
//! which becomes `[]`. An error value of a host call becomes its message.

use mlua::{Lua, Table, Value};
use serde_json::{Map, Number, Value as Json};

const MAX_DEPTH: usize = 100;

/// The `__name` of the metatable that marks a table as a JSON array.
const ARRAY_NAME: &str = "ferry.array";

/// The shared metatable marking tables as arrays (created once per VM).
pub(crate) fn array_meta(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(Value::Table(t)) = lua.named_registry_value::<Value>(ARRAY_NAME) {
        return Ok(t);
    }
    let meta = lua.create_table()?;
    meta.raw_set("__name", ARRAY_NAME)?;
    lua.set_named_registry_value(ARRAY_NAME, &meta)?;
    Ok(meta)
}

/// Whether `t` is marked as an array.
fn marked_array(t: &Table) -> bool {
    t.metatable()
        .and_then(|m| m.raw_get::<String>("__name").ok())
        .is_some_and(|n| n == ARRAY_NAME)
}

/// Registers `ferry.array([t])`: marks `t` (or a new table) as an array, so that it becomes a
/// JSON array even when empty, and returns it.
pub(crate) fn register(lua: &Lua, ferry: &Table) -> mlua::Result<()> {
    ferry.set(
        "array",
        lua.create_function(|lua, t: Option<Table>| {
            let t = match t {
                Some(t) => t,
                None => lua.create_table()?,
            };
            t.set_metatable(Some(array_meta(lua)?))?;
            Ok(t)
        })?,
    )
}

/// Converts a Lua value to JSON; the error names the key path and what could not be converted.
pub fn lua_to_json(v: &Value) -> Result<Json, String> {
    convert(v, 0, &mut Vec::new(), true)
}

/// Like [`lua_to_json`] but replaces what cannot be converted with `null` instead of failing.
pub fn lua_to_json_lossy(v: &Value) -> Json {
    convert(v, 0, &mut Vec::new(), false).unwrap_or(Json::Null)
}

fn at(path: &[String]) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at `{}`", path.join("."))
    }
}

fn convert(v: &Value, depth: usize, path: &mut Vec<String>, strict: bool) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "value nested more than {MAX_DEPTH} levels deep (a cycle?){}",
            at(path)
        ));
    }
    let fail = |what: String, path: &[String]| -> Result<Json, String> {
        if strict {
            Err(format!("{what}{}", at(path)))
        } else {
            Ok(Json::Null)
        }
    };
    match v {
        Value::Nil => Ok(Json::Null),
        Value::Boolean(b) => Ok(Json::Bool(*b)),
        Value::Integer(i) => Ok(Json::Number((*i).into())),
        Value::Number(n) => match Number::from_f64(*n) {
            Some(n) => Ok(Json::Number(n)),
            None => fail(
                format!("the number {n} cannot be represented in JSON"),
                path,
            ),
        },
        Value::String(s) => match s.to_str() {
            Ok(s) => Ok(Json::String(s.to_string())),
            Err(_) => fail(
                "a string that is not valid UTF-8 cannot be represented in JSON".into(),
                path,
            ),
        },
        Value::Table(t) => table_to_json(t, depth, path, strict),
        Value::LightUserData(p) if p.0.is_null() => Ok(Json::Null),
        v @ Value::UserData(_) if super::host_error::error_text(v).is_some() => Ok(Json::String(
            super::host_error::error_text(v).unwrap_or_default(),
        )),
        other => fail(
            format!("a {} cannot be represented in JSON", other.type_name()),
            path,
        ),
    }
}

fn table_to_json(
    t: &Table,
    depth: usize,
    path: &mut Vec<String>,
    strict: bool,
) -> Result<Json, String> {
    let len = t.raw_len();
    let mut count = 0usize;
    let mut is_array = len > 0;
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        count += 1;
        if !matches!(k, Value::Integer(i) if i >= 1 && (i as usize) <= len) {
            is_array = false;
        }
    }
    if count == 0 && marked_array(t) {
        return Ok(Json::Array(Vec::new()));
    }
    if is_array && count == len {
        let mut out = Vec::with_capacity(len);
        for i in 1..=len {
            path.push(i.to_string());
            let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
            out.push(convert(&v, depth + 1, path, strict)?);
            path.pop();
        }
        return Ok(Json::Array(out));
    }
    let mut map = Map::new();
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Boolean(b) => b.to_string(),
            other => {
                if strict {
                    return Err(format!(
                        "a table key of type {} cannot be represented in JSON{}",
                        other.type_name(),
                        at(path)
                    ));
                }
                continue;
            }
        };
        path.push(key.clone());
        let json = convert(&v, depth + 1, path, strict)?;
        path.pop();
        map.insert(key, json);
    }
    Ok(Json::Object(map))
}

/// Converts JSON to a Lua value: `null` becomes `nil`, arrays sequences, objects tables.
pub fn json_to_lua(lua: &Lua, v: &Json) -> mlua::Result<Value> {
    Ok(match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            // An empty array stays an array when it is written back as JSON.
            t.set_metatable(Some(array_meta(lua)?))?;
            Value::Table(t)
        }
        Json::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_shapes() {
        let lua = Lua::new();
        let v: Value = lua
            .load(
                r#"return { rows = 3, list = {1, 2.5, "x"}, empty = {}, nested = { ok = true } }"#,
            )
            .eval()
            .unwrap();
        let json = lua_to_json(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"rows": 3, "list": [1, 2.5, "x"], "empty": {}, "nested": {"ok": true}})
        );
        let back = json_to_lua(&lua, &json).unwrap();
        assert_eq!(lua_to_json(&back).unwrap(), json);
    }

    #[test]
    fn functions_are_refused_with_a_path() {
        let lua = Lua::new();
        let v: Value = lua.load("return { a = { b = print } }").eval().unwrap();
        let err = lua_to_json(&v).unwrap_err();
        assert!(err.contains("function") && err.contains("`a.b`"), "{err}");
        assert_eq!(lua_to_json_lossy(&v), serde_json::json!({"a": {"b": null}}));
    }

    #[test]
    fn marked_and_decoded_empty_arrays_stay_arrays() {
        let lua = Lua::new();
        let t = lua.create_table().unwrap();
        t.set_metatable(Some(array_meta(&lua).unwrap())).unwrap();
        assert_eq!(
            lua_to_json(&Value::Table(t)).unwrap(),
            serde_json::json!([])
        );
        let json = serde_json::json!({"errors": [], "files": [1]});
        let back = json_to_lua(&lua, &json).unwrap();
        assert_eq!(lua_to_json(&back).unwrap(), json);
    }
}
