//! MySQL values to and from the row model, parameters, and the `LOAD DATA` field encoding.
//!
//! Reading: integers (signed, and unsigned up to `i64::MAX`) are integers, an unsigned
//! `BIGINT` above that is its decimal text; `TINYINT(1)` (MySQL's `BOOL`) is a boolean when it
//! holds 0 or 1; `FLOAT` and `DOUBLE` are floats (a `FLOAT` by its shortest decimal form, so
//! `0.1` stays `0.1`); `DECIMAL` is its exact decimal text; `DATE` is `YYYY-MM-DD`, `DATETIME`
//! and `TIMESTAMP` are `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `TIMESTAMP` in UTC: the session's zone
//! is `+00:00`), `TIME` is `[-]HH:MM:SS[.ffffff]`, `YEAR` an integer, `BIT` an integer; text
//! columns and `JSON` are text; binary columns (`BINARY`, `VARBINARY`, `BLOB`) are bytes.
//! Writing goes the other way: text is sent as text and MySQL converts it to the column's type,
//! strictly (a value that does not fit is an error naming the row and the column).

use mysql::consts::{ColumnFlags, ColumnType};
use mysql::prelude::Queryable;
use mysql::{Column, Conn, Statement};

use super::{Db, MysqlError, excerpt};
use crate::db::Params;
use crate::formats::Value;

/// How a column's values become row values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColKind {
    /// A signed integer, or an unsigned one below 2^63 (`YEAR` too).
    Int,
    /// An unsigned `BIGINT`: an integer up to `i64::MAX`, else its text.
    UInt,
    /// `TINYINT(1)`: a boolean for 0 and 1, an integer otherwise.
    Bool,
    /// `FLOAT`: the f32 by its shortest decimal form.
    Float32,
    /// `DOUBLE`.
    Float,
    /// `BIT(n)`: the bits as an integer.
    Bit,
    /// `DATE`.
    Date,
    /// `DATETIME` or `TIMESTAMP` with this many fraction digits.
    DateTime(u8),
    /// `TIME` with this many fraction digits.
    Time(u8),
    /// Text (`CHAR`, `VARCHAR`, `TEXT`, `ENUM`, `SET`, `DECIMAL`, `JSON`).
    Text,
    /// Bytes (`BINARY`, `VARBINARY`, `BLOB`, `GEOMETRY`).
    Bytes,
}

/// MySQL's number of the `binary` character set.
const BINARY_CHARSET: u16 = 63;

impl ColKind {
    /// The kind of a result column.
    pub(crate) fn of(col: &Column) -> ColKind {
        let unsigned = col.flags().contains(ColumnFlags::UNSIGNED_FLAG);
        let fsp = if col.decimals() <= 6 {
            col.decimals()
        } else {
            0
        };
        match col.column_type() {
            ColumnType::MYSQL_TYPE_TINY if col.column_length() == 1 => ColKind::Bool,
            ColumnType::MYSQL_TYPE_TINY
            | ColumnType::MYSQL_TYPE_SHORT
            | ColumnType::MYSQL_TYPE_INT24
            | ColumnType::MYSQL_TYPE_LONG
            | ColumnType::MYSQL_TYPE_YEAR => ColKind::Int,
            ColumnType::MYSQL_TYPE_LONGLONG if unsigned => ColKind::UInt,
            ColumnType::MYSQL_TYPE_LONGLONG => ColKind::Int,
            ColumnType::MYSQL_TYPE_FLOAT => ColKind::Float32,
            ColumnType::MYSQL_TYPE_DOUBLE => ColKind::Float,
            ColumnType::MYSQL_TYPE_BIT => ColKind::Bit,
            ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => ColKind::Date,
            ColumnType::MYSQL_TYPE_DATETIME
            | ColumnType::MYSQL_TYPE_DATETIME2
            | ColumnType::MYSQL_TYPE_TIMESTAMP
            | ColumnType::MYSQL_TYPE_TIMESTAMP2 => ColKind::DateTime(fsp),
            ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => ColKind::Time(fsp),
            ColumnType::MYSQL_TYPE_DECIMAL
            | ColumnType::MYSQL_TYPE_NEWDECIMAL
            | ColumnType::MYSQL_TYPE_JSON
            | ColumnType::MYSQL_TYPE_ENUM
            | ColumnType::MYSQL_TYPE_SET => ColKind::Text,
            ColumnType::MYSQL_TYPE_GEOMETRY => ColKind::Bytes,
            _ if col.character_set() == BINARY_CHARSET => ColKind::Bytes,
            _ => ColKind::Text,
        }
    }
}

/// Stores a value read from the server in a row slot, as its column's kind says. `Err` says
/// what does not convert.
pub(crate) fn store(slot: &mut Value, v: mysql::Value, kind: ColKind) -> Result<(), String> {
    match v {
        mysql::Value::NULL => *slot = Value::Null,
        mysql::Value::Int(i) => *slot = int_value(i, kind),
        mysql::Value::UInt(u) => {
            *slot = match i64::try_from(u) {
                Ok(i) => int_value(i, kind),
                Err(_) => Value::Text(u.to_string()),
            }
        }
        mysql::Value::Float(f) => *slot = Value::Float(f32_to_f64(f)),
        mysql::Value::Double(d) => *slot = Value::Float(d),
        mysql::Value::Date(y, mo, d, h, mi, s, us) => {
            let text = match kind {
                ColKind::Date => format!("{y:04}-{mo:02}-{d:02}"),
                ColKind::DateTime(fsp) => {
                    format!(
                        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                        fraction(us, fsp)
                    )
                }
                _ => format!(
                    "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                    fraction(us, 0)
                ),
            };
            *slot = Value::Text(text);
        }
        mysql::Value::Time(neg, days, h, mi, s, us) => {
            let fsp = match kind {
                ColKind::Time(f) => f,
                _ => 0,
            };
            let hours = u64::from(days) * 24 + u64::from(h);
            *slot = Value::Text(format!(
                "{}{hours:02}:{mi:02}:{s:02}{}",
                if neg { "-" } else { "" },
                fraction(us, fsp)
            ));
        }
        mysql::Value::Bytes(b) => store_bytes(slot, b, kind)?,
    }
    Ok(())
}

fn int_value(i: i64, kind: ColKind) -> Value {
    match (kind, i) {
        (ColKind::Bool, 0) => Value::Bool(false),
        (ColKind::Bool, 1) => Value::Bool(true),
        _ => Value::Int(i),
    }
}

/// An f32 as the f64 of its shortest decimal form (`0.1f32` is `0.1`, not `0.100000001...`).
fn f32_to_f64(f: f32) -> f64 {
    let mut buf = ryu::Buffer::new();
    buf.format(f).parse().unwrap_or(f64::from(f))
}

/// `.ffffff` cut to `fsp` digits (all six when the value has a fraction its column does not
/// announce).
fn fraction(us: u32, fsp: u8) -> String {
    match fsp {
        0 if us == 0 => String::new(),
        0 => format!(".{us:06}"),
        n => {
            let full = format!("{us:06}");
            format!(".{}", &full[..usize::from(n.min(6))])
        }
    }
}

/// A value that arrived as bytes (every value of the text protocol; strings, decimals and JSON
/// of the binary one).
fn store_bytes(slot: &mut Value, b: Vec<u8>, kind: ColKind) -> Result<(), String> {
    let text = || std::str::from_utf8(&b).map_err(|_| "not valid UTF-8".to_owned());
    match kind {
        ColKind::Int | ColKind::Bool => {
            let t = text()?;
            let i: i64 = t.parse().map_err(|_| format!("`{t}` is not an integer"))?;
            *slot = int_value(i, kind);
        }
        ColKind::UInt => {
            let t = text()?;
            *slot = match t.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Text(t.to_owned()),
            };
        }
        ColKind::Float32 | ColKind::Float => {
            let t = text()?;
            *slot = Value::Float(t.parse().map_err(|_| format!("`{t}` is not a number"))?);
        }
        ColKind::Bit => {
            if b.len() > 8 {
                return Err(format!(
                    "a BIT value of {} bytes does not fit 64 bits",
                    b.len()
                ));
            }
            let n = b
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            *slot = match i64::try_from(n) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Text(n.to_string()),
            };
        }
        ColKind::Bytes => match slot {
            Value::Bytes(v) => {
                v.clear();
                v.extend_from_slice(&b);
            }
            other => *other = Value::Bytes(b),
        },
        ColKind::Date | ColKind::DateTime(_) | ColKind::Time(_) | ColKind::Text => {
            *slot = match String::from_utf8(b) {
                Ok(s) => Value::Text(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            };
        }
    }
    Ok(())
}

/// A row value as a statement parameter.
pub(crate) fn param(v: &Value) -> mysql::Value {
    match v {
        Value::Null => mysql::Value::NULL,
        Value::Bool(b) => mysql::Value::Int(i64::from(*b)),
        Value::Int(i) => mysql::Value::Int(*i),
        Value::Float(f) => mysql::Value::Double(*f),
        Value::Text(s) => mysql::Value::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => mysql::Value::Bytes(b.clone()),
    }
}

/// Prepares `sql` and binds `params` to it; `None` when there are no parameters (the statement
/// then goes as text, which every statement supports).
pub(crate) fn bind(
    db: &Db,
    conn: &mut Conn,
    sql: &str,
    params: &Params,
) -> Result<Option<(Statement, mysql::Params)>, MysqlError> {
    let perr = |message: String| MysqlError::Params {
        target: db.name().to_owned(),
        context: excerpt(sql),
        message,
    };
    match params {
        Params::None => Ok(None),
        Params::Positional(v) if v.is_empty() => Ok(None),
        Params::Named(v) if v.is_empty() => Ok(None),
        Params::Positional(values) => {
            let stmt = conn.prep(sql).map_err(|e| db.sql_error(excerpt(sql), e))?;
            if !named_params(sql).is_empty() {
                return Err(perr(
                    "the statement has :name parameters; pass a table of names".into(),
                ));
            }
            let expected = usize::from(stmt.num_params());
            if values.len() > expected {
                return Err(perr(format!(
                    "expects {expected} parameters, {} given",
                    values.len()
                )));
            }
            // Fewer values than parameters: the rest are null, as a Lua list cannot end with nil.
            let mut list: Vec<mysql::Value> = values.iter().map(param).collect();
            list.resize(expected, mysql::Value::NULL);
            Ok(Some((stmt, mysql::Params::Positional(list))))
        }
        Params::Named(pairs) => {
            let stmt = conn.prep(sql).map_err(|e| db.sql_error(excerpt(sql), e))?;
            let names = named_params(sql);
            if names.is_empty() {
                return Err(perr(format!(
                    "parameters given by name, but the statement has no :name parameters (it has {} `?`)",
                    stmt.num_params()
                )));
            }
            let mut map = std::collections::HashMap::new();
            for (name, v) in pairs {
                let bare = name.trim_start_matches([':', '@', '$']);
                if !names.iter().any(|n| n == bare) {
                    return Err(perr(format!(
                        "the statement has no parameter :{bare} (it has {})",
                        names
                            .iter()
                            .map(|n| format!(":{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                map.insert(bare.as_bytes().to_vec(), param(v));
            }
            if let Some(missing) = names.iter().find(|n| !map.contains_key(n.as_bytes())) {
                return Err(perr(format!("no value given for :{missing}")));
            }
            Ok(Some((stmt, mysql::Params::Named(map))))
        }
    }
}

/// The `:name` parameters of a statement, once each, in order: outside quotes and comments, a
/// `:` that follows no word character, then a letter or `_` and word characters (the `mysql`
/// crate's rule; its own parser is not public without its `derive` feature).
fn named_params(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b':' if (i == 0 || !is_word(b[i - 1]))
                && b.get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && is_word(b[end]) {
                    end += 1;
                }
                let name = &sql[start..end];
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
                i = end - 1;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Appends `v` as one field of `LOAD DATA ... FIELDS TERMINATED BY '\t' ESCAPED BY '\\'
/// LINES TERMINATED BY '\n'`: `\N` for null, the escape, tab, newline, carriage return and NUL
/// escaped. `Err` for a float MySQL cannot store.
pub(crate) fn encode_field(out: &mut Vec<u8>, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Bool(b) => out.push(if *b { b'1' } else { b'0' }),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes())
        }
        Value::Float(f) => {
            return Err(format!(
                "{f} cannot be stored (MySQL has no NaN or infinity)"
            ));
        }
        Value::Text(s) => escape(out, s.as_bytes()),
        Value::Bytes(b) => escape(out, b),
    }
    Ok(())
}

fn escape(out: &mut Vec<u8>, b: &[u8]) {
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc = match c {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            0 => b'0',
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.push(b'\\');
        out.push(esc);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_data_fields_escape_what_the_format_uses() {
        let mut out = Vec::new();
        for v in [
            Value::Null,
            Value::Text("a\tb\nc\\d\r\0".into()),
            Value::Bytes(vec![0xff, 0, b'\\']),
            Value::Int(-5),
            Value::Float(0.1),
            Value::Bool(true),
            Value::Text("\\N".into()),
        ] {
            encode_field(&mut out, &v).unwrap();
            out.push(b'|');
        }
        assert_eq!(
            out,
            b"\\N|a\\tb\\nc\\\\d\\r\\0|\xff\\0\\\\|-5|0.1|1|\\\\N|".to_vec()
        );
        assert!(encode_field(&mut out, &Value::Float(f64::NAN)).is_err());
    }

    #[test]
    fn named_parameters_outside_quotes_and_comments() {
        assert_eq!(
            named_params(
                "SELECT ':no', `a:b`, x FROM t -- :nope\n WHERE a = :a AND b = :b_2 OR c = :a /* :x */"
            ),
            vec!["a".to_string(), "b_2".to_string()]
        );
        assert!(named_params("SELECT '10:30', ?").is_empty());
    }

    #[test]
    fn server_values_become_row_values() {
        let mut slot = Value::Null;
        let cases: Vec<(mysql::Value, ColKind, Value)> = vec![
            (mysql::Value::Int(1), ColKind::Bool, Value::Bool(true)),
            (mysql::Value::Int(7), ColKind::Bool, Value::Int(7)),
            (
                mysql::Value::UInt(u64::MAX),
                ColKind::UInt,
                Value::Text("18446744073709551615".into()),
            ),
            (
                mysql::Value::Float(0.1),
                ColKind::Float32,
                Value::Float(0.1),
            ),
            (
                mysql::Value::Date(2024, 2, 29, 13, 4, 5, 120_000),
                ColKind::DateTime(3),
                Value::Text("2024-02-29 13:04:05.120".into()),
            ),
            (
                mysql::Value::Date(2024, 2, 29, 0, 0, 0, 0),
                ColKind::Date,
                Value::Text("2024-02-29".into()),
            ),
            (
                mysql::Value::Time(true, 1, 2, 3, 4, 0),
                ColKind::Time(0),
                Value::Text("-26:03:04".into()),
            ),
            (
                mysql::Value::Bytes(b"12.3400".to_vec()),
                ColKind::Text,
                Value::Text("12.3400".into()),
            ),
            (
                mysql::Value::Bytes(b"-9".to_vec()),
                ColKind::Int,
                Value::Int(-9),
            ),
            (
                mysql::Value::Bytes(vec![1, 0]),
                ColKind::Bit,
                Value::Int(256),
            ),
            (
                mysql::Value::Bytes(vec![0xff]),
                ColKind::Bytes,
                Value::Bytes(vec![0xff]),
            ),
        ];
        for (v, kind, want) in cases {
            store(&mut slot, v.clone(), kind).unwrap();
            assert_eq!(slot, want, "{v:?} as {kind:?}");
        }
        assert!(store(&mut slot, mysql::Value::Bytes(b"x".to_vec()), ColKind::Int).is_err());
    }
}
