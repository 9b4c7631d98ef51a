//! `ferry.time`: the clock, and times as epoch seconds.
//!
//! Every time a script gives the host (`ferry.time.parse`, a `time` option of a schema) may be
//! RFC 3339 with any offset, a plain date or epoch seconds ([`crate::units::parse_instant`]), and
//! becomes epoch seconds: numbers compare as instants whatever offset the text had.

use chrono::{DateTime, SecondsFormat, Utc};
use mlua::{Lua, Table, Value};

use super::host_error::{Kind, host_err};

/// Epoch seconds of an instant for Lua: an integer when whole, else a float.
pub(crate) fn epoch_value(t: &DateTime<Utc>) -> Value {
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        Value::Integer(t.timestamp())
    } else {
        Value::Number(t.timestamp() as f64 + f64::from(nanos) / 1e9)
    }
}

/// Reads a time given by a script: text (RFC 3339, date, epoch seconds) or a number of epoch
/// seconds. `what` names the argument or option in the error.
pub(crate) fn instant_of(v: &Value, what: &str) -> mlua::Result<DateTime<Utc>> {
    match v {
        Value::String(s) => {
            let text = s.to_str()?;
            crate::units::parse_instant(&text)
                .map_err(|m| host_err(Kind::Invalid, format!("{what}: {m}")))
        }
        Value::Integer(i) => crate::units::epoch_instant(*i as f64)
            .ok_or_else(|| host_err(Kind::Invalid, format!("{what}: {i} is out of range"))),
        Value::Number(n) => crate::units::epoch_instant(*n)
            .ok_or_else(|| host_err(Kind::Invalid, format!("{what}: {n} is out of range"))),
        other => Err(host_err(
            Kind::Invalid,
            format!(
                "{what}: expected a time (RFC 3339 text, a date or epoch seconds), got {}",
                other.type_name()
            ),
        )),
    }
}

/// Registers `ferry.time.now()`, `ferry.time.parse(time)` and `ferry.time.format(epoch [, fmt])`.
pub fn register(lua: &Lua, ferry: &Table) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set(
        "now",
        lua.create_function(|_, ()| Ok(Utc::now().timestamp_millis() as f64 / 1000.0))?,
    )?;
    t.set(
        "parse",
        lua.create_function(|_, v: Value| Ok(epoch_value(&instant_of(&v, "ferry.time.parse")?)))?,
    )?;
    t.set(
        "format",
        lua.create_function(|_, (epoch, fmt): (Value, Option<String>)| {
            let dt = instant_of(&epoch, "ferry.time.format")?;
            match fmt {
                None => Ok(dt.to_rfc3339_opts(SecondsFormat::Secs, true)),
                Some(f) => {
                    use std::fmt::Write;
                    let mut out = String::new();
                    write!(out, "{}", dt.format(&f)).map_err(|_| {
                        host_err(
                            Kind::Invalid,
                            format!("ferry.time.format: invalid format {f:?}"),
                        )
                    })?;
                    Ok(out)
                }
            }
        })?,
    )?;
    ferry.set("time", t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn whole_seconds_are_integers() {
        let t = Utc.timestamp_opt(10, 0).single().unwrap();
        assert!(matches!(epoch_value(&t), Value::Integer(10)));
        let t = Utc.timestamp_opt(10, 500_000_000).single().unwrap();
        assert!(matches!(epoch_value(&t), Value::Number(n) if (n - 10.5).abs() < 1e-9));
    }
}
