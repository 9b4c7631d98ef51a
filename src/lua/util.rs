//! Small host helpers: `ferry.hash.sha256`, `ferry.glob.match`, `ferry.regex.match`.

use std::io::Read;

use mlua::{Lua, Table, Value};
use sha2::Digest;

/// Registers `ferry.hash`, `ferry.glob` and `ferry.regex`.
pub fn register(lua: &Lua, ferry: &Table) -> mlua::Result<()> {
    let hash = lua.create_table()?;
    hash.set(
        "sha256",
        lua.create_function(|_, input: Value| {
            let mut h = sha2::Sha256::new();
            let mut size: u64 = 0;
            match &input {
                Value::String(s) => {
                    let b = s.as_bytes();
                    size = b.len() as u64;
                    h.update(&*b);
                }
                Value::UserData(ud) => {
                    // Streams the reader: bounded memory at any size.
                    let (mut r, label) = super::streams::take_reader(ud)?;
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = r.read(&mut buf).map_err(|e| {
                            mlua::Error::runtime(format!("ferry.hash.sha256: reading {label}: {e}"))
                        })?;
                        if n == 0 {
                            break;
                        }
                        size += n as u64;
                        h.update(&buf[..n]);
                    }
                }
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "ferry.hash.sha256: expected a string or a reader, got {}",
                        other.type_name()
                    )));
                }
            }
            let digest = h.finalize();
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            Ok((hex, size))
        })?,
    )?;
    ferry.set("hash", hash)?;

    let glob = lua.create_table()?;
    glob.set(
        "match",
        lua.create_function(|_, (pattern, path): (String, String)| {
            let g = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    mlua::Error::runtime(format!(
                        "ferry.glob.match: invalid pattern {pattern:?}: {e}"
                    ))
                })?;
            Ok(g.compile_matcher().is_match(&path))
        })?,
    )?;
    ferry.set("glob", glob)?;

    let re = lua.create_table()?;
    re.set(
        "match",
        lua.create_function(|lua, (pattern, text): (String, String)| {
            // The regex crate runs in linear time: no backtracking blow-up from a pattern.
            let r = regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    mlua::Error::runtime(format!(
                        "ferry.regex.match: invalid pattern {pattern:?}: {e}"
                    ))
                })?;
            match r.captures(&text) {
                None => Ok(Value::Nil),
                Some(c) => {
                    let t = lua.create_table()?;
                    for (i, m) in c.iter().enumerate() {
                        if let Some(m) = m {
                            t.raw_set(i, m.as_str())?;
                        }
                    }
                    for name in r.capture_names().flatten() {
                        if let Some(m) = c.name(name) {
                            t.raw_set(name, m.as_str())?;
                        }
                    }
                    Ok(Value::Table(t))
                }
            }
        })?,
    )?;
    ferry.set("regex", re)
}
