//! `ferry.time`: the clock and RFC 3339 times as epoch seconds.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use mlua::{Lua, Table};

/// Registers `ferry.time.now()`, `ferry.time.parse(text)` and `ferry.time.format(epoch [, fmt])`.
pub fn register(lua: &Lua, ferry: &Table) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set(
        "now",
        lua.create_function(|_, ()| Ok(Utc::now().timestamp_millis() as f64 / 1000.0))?,
    )?;
    t.set(
        "parse",
        lua.create_function(|_, text: String| {
            if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
                return Ok(t.timestamp());
            }
            if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                && let Some(dt) = d.and_hms_opt(0, 0, 0)
            {
                return Ok(Utc.from_utc_datetime(&dt).timestamp());
            }
            Err(mlua::Error::runtime(format!(
                "ferry.time.parse: expected an RFC 3339 time like \"2026-01-31T02:30:00Z\" or a date like \"2026-01-31\", got {text:?}"
            )))
        })?,
    )?;
    t.set(
        "format",
        lua.create_function(|_, (epoch, fmt): (f64, Option<String>)| {
            let secs = epoch.floor() as i64;
            let nanos = ((epoch - epoch.floor()) * 1e9) as u32;
            let dt = Utc.timestamp_opt(secs, nanos).single().ok_or_else(|| {
                mlua::Error::runtime(format!("ferry.time.format: {epoch} is out of range"))
            })?;
            match fmt {
                None => Ok(dt.to_rfc3339_opts(SecondsFormat::Secs, true)),
                Some(f) => {
                    use std::fmt::Write;
                    let mut out = String::new();
                    write!(out, "{}", dt.format(&f)).map_err(|_| {
                        mlua::Error::runtime(format!("ferry.time.format: invalid format {f:?}"))
                    })?;
                    Ok(out)
                }
            }
        })?,
    )?;
    ferry.set("time", t)
}
