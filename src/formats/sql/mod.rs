//! SQL text: a sink writing `INSERT` statements in a database's dialect, and (in [`split`]) a
//! streaming splitter that cuts a `.sql` file into statements (with the line each starts on)
//! for an import to execute.

use std::io::{BufWriter, Write};

mod split;

pub use split::{SqlStatement, SqlStatements};

use super::error::{FormatError, Location};
use super::row::{RowSink, Value};
use super::text::{encode_hex, format_float};

/// Quotes an identifier for SQL: `"name"`, with inner `"` doubled.
pub fn quote_identifier(name: &str) -> String {
    quote_identifier_in(SqlDialect::Sqlite, name)
}

/// Quotes an identifier for `dialect`: `"name"` (SQLite, PostgreSQL) or `` `name` `` (MySQL,
/// where `"` quotes strings unless `ANSI_QUOTES` is set), the quote doubled inside.
pub fn quote_identifier_in(dialect: SqlDialect, name: &str) -> String {
    let q = if dialect == SqlDialect::Mysql {
        '`'
    } else {
        '"'
    };
    let mut s = String::with_capacity(name.len() + 2);
    s.push(q);
    for c in name.chars() {
        if c == q {
            s.push(q);
        }
        s.push(c);
    }
    s.push(q);
    s
}

/// The SQL dialect a writer's literals are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqlDialect {
    /// SQLite's: bytes as `X'..'`, infinities as `9e999`.
    #[default]
    Sqlite,
    /// MySQL's and MariaDB's: identifiers in backticks; a string holding a backslash or a NUL as
    /// a hex literal with its character set (`_utf8mb4 X'..'`), which reads the same whether
    /// or not the server's `sql_mode` has `NO_BACKSLASH_ESCAPES` (in `'..'` a backslash is an
    /// escape by default: `'C:\new'` would load a newline). MySQL has no infinity: writing one
    /// is an error.
    Mysql,
    /// PostgreSQL's: bytes as `'\x..'::bytea` (`X'..'` is a bit string there), infinities as
    /// `'Infinity'`.
    Postgres,
}

impl SqlDialect {
    /// The dialect named `name` (`sqlite`, `mysql`, `postgres`).
    pub fn parse(name: &str) -> Option<SqlDialect> {
        match name {
            "sqlite" => Some(SqlDialect::Sqlite),
            "mysql" | "mariadb" => Some(SqlDialect::Mysql),
            "postgres" | "postgresql" => Some(SqlDialect::Postgres),
            _ => None,
        }
    }
}

/// Appends `v` as an SQL literal: `NULL`, `TRUE`/`FALSE`, numbers, `'text'` with inner `'`
/// doubled, `X'hex'` for bytes. NaN is `NULL`; infinities are `9e999` / `-9e999`, which SQLite
/// reads as infinities.
pub fn quote_literal(v: &Value, out: &mut Vec<u8>) {
    quote_literal_in(SqlDialect::Sqlite, v, out)
}

/// Appends `v` as an SQL literal of `dialect` (see [`quote_literal`] and [`SqlDialect`]).
pub fn quote_literal_in(dialect: SqlDialect, v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Float(f) if f.is_infinite() && dialect == SqlDialect::Postgres => out
            .extend_from_slice(if *f > 0.0 {
                b"'Infinity'"
            } else {
                b"'-Infinity'"
            }),
        Value::Bytes(b) if dialect == SqlDialect::Postgres => {
            out.extend_from_slice(b"'\\x");
            encode_hex(b, out);
            out.extend_from_slice(b"'::bytea");
        }
        Value::Null => out.extend_from_slice(b"NULL"),
        Value::Bool(true) => out.extend_from_slice(b"TRUE"),
        Value::Bool(false) => out.extend_from_slice(b"FALSE"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) if f.is_nan() => out.extend_from_slice(b"NULL"),
        Value::Float(f) if f.is_infinite() => {
            out.extend_from_slice(if *f > 0.0 { b"9e999" } else { b"-9e999" })
        }
        Value::Float(f) => {
            out.extend_from_slice(format_float(*f, &mut ryu::Buffer::new()).as_bytes())
        }
        Value::Text(s)
            if dialect == SqlDialect::Mysql && s.bytes().any(|b| b == b'\\' || b == 0) =>
        {
            out.extend_from_slice(b"_utf8mb4 X'");
            encode_hex(s.as_bytes(), out);
            out.push(b'\'');
        }
        Value::Text(s) => {
            out.push(b'\'');
            for &b in s.as_bytes() {
                if b == b'\'' {
                    out.push(b'\'');
                }
                out.push(b);
            }
            out.push(b'\'');
        }
        Value::Bytes(b) => {
            out.extend_from_slice(b"X'");
            encode_hex(b, out);
            out.push(b'\'');
        }
    }
}

/// SQL writer options.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// The table the statements insert into (required).
    pub table: String,
    /// Rows per `INSERT` statement (default 1).
    pub rows_per_statement: usize,
    /// Start with `CREATE TABLE IF NOT EXISTS` naming the columns (without types, so SQLite
    /// keeps every value exactly as given).
    pub create_table: bool,
    /// The dialect of the literals (default SQLite's).
    pub dialect: SqlDialect,
}

/// A row sink writing `INSERT INTO "table" ("a", "b") VALUES (...);` lines.
pub struct SqlWriter<W: Write> {
    out: BufWriter<W>,
    name: String,
    opts: SqlOptions,
    prefix: Vec<u8>,
    line: Vec<u8>,
    in_statement: usize,
    /// Rows written so far, for messages.
    rows: u64,
    /// The columns given to `begin`, for messages.
    columns: Vec<String>,
    started: bool,
    finished: bool,
}

impl<W: Write> SqlWriter<W> {
    /// An SQL sink on `out`.
    pub fn new(out: W, opts: SqlOptions, name: &str) -> Result<Self, FormatError> {
        if opts.table.is_empty() {
            return Err(FormatError::Option {
                format: "sql",
                option: "table",
                message: "the table to insert into is required".into(),
            });
        }
        if opts.create_table && opts.dialect != SqlDialect::Sqlite {
            return Err(FormatError::Option {
                format: "sql",
                option: "create_table",
                message: format!(
                    "{name}: an untyped CREATE TABLE is SQLite's; {} needs column types: create the table before loading the file",
                    if opts.dialect == SqlDialect::Mysql {
                        "MySQL"
                    } else {
                        "PostgreSQL"
                    }
                ),
            });
        }
        Ok(SqlWriter {
            out: BufWriter::with_capacity(64 * 1024, out),
            name: name.to_owned(),
            opts: SqlOptions {
                rows_per_statement: opts.rows_per_statement.max(1),
                ..opts
            },
            prefix: Vec::new(),
            line: Vec::new(),
            in_statement: 0,
            rows: 0,
            columns: Vec::new(),
            started: false,
            finished: false,
        })
    }

    fn io(&self, e: std::io::Error) -> FormatError {
        FormatError::io(&self.name, e)
    }
}

impl<W: Write> RowSink for SqlWriter<W> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        let d = self.opts.dialect;
        let table = quote_identifier_in(d, &self.opts.table);
        let cols: Vec<String> = columns.iter().map(|c| quote_identifier_in(d, c)).collect();
        self.columns = columns.to_vec();
        if self.opts.create_table {
            let create = format!(
                "CREATE TABLE IF NOT EXISTS {table} ({});\n",
                cols.join(", ")
            );
            self.out
                .write_all(create.as_bytes())
                .map_err(|e| self.io(e))?;
        }
        self.prefix = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", ")).into_bytes();
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        self.line.clear();
        if self.in_statement == 0 {
            self.line.extend_from_slice(&self.prefix);
        } else {
            self.line.extend_from_slice(b",\n  ");
        }
        self.line.push(b'(');
        self.rows += 1;
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                self.line.extend_from_slice(b", ");
            }
            if let (SqlDialect::Mysql, Value::Float(f)) = (self.opts.dialect, v)
                && f.is_infinite()
            {
                return Err(FormatError::data(
                    Location::file(&self.name).at_field(i, self.columns.get(i).map(String::as_str)),
                    format!(
                        "row {}: {f} cannot be written for MySQL, which has no infinity; expected a finite number (or map it to NULL)",
                        self.rows
                    ),
                ));
            }
            quote_literal_in(self.opts.dialect, v, &mut self.line);
        }
        self.line.push(b')');
        self.in_statement += 1;
        if self.in_statement == self.opts.rows_per_statement {
            self.line.extend_from_slice(b";\n");
            self.in_statement = 0;
        }
        let r = self.out.write_all(&self.line);
        r.map_err(|e| self.io(e))
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.in_statement > 0 {
            self.in_statement = 0;
            self.out.write_all(b";\n").map_err(|e| self.io(e))?;
        }
        self.out.flush().map_err(|e| self.io(e))
    }

    fn started(&self) -> bool {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted() {
        let mut out = Vec::new();
        for v in [
            Value::Text("it's".into()),
            Value::Bytes(vec![1, 255]),
            Value::Float(1.0),
            Value::Null,
        ] {
            quote_literal(&v, &mut out);
            out.push(b' ');
        }
        assert_eq!(String::from_utf8(out).unwrap(), "'it''s' X'01ff' 1.0 NULL ");
        let mut out = Vec::new();
        for v in [Value::Bytes(vec![1, 255]), Value::Float(f64::NEG_INFINITY)] {
            quote_literal_in(SqlDialect::Postgres, &v, &mut out);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "'\\x01ff'::bytea '-Infinity' "
        );
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_identifier_in(SqlDialect::Mysql, "a`b"), "`a``b`");
        let mut out = Vec::new();
        for v in [
            Value::Text("it's".into()),
            Value::Text("C:\\new".into()),
            Value::Text("a\0b".into()),
            Value::Bytes(vec![1, 255]),
        ] {
            quote_literal_in(SqlDialect::Mysql, &v, &mut out);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "'it''s' _utf8mb4 X'433a5c6e6577' _utf8mb4 X'610062' X'01ff' "
        );
    }

    #[test]
    fn mysql_dialect_refuses_what_mysql_cannot_load() {
        let opts = |create_table| SqlOptions {
            table: "t".into(),
            rows_per_statement: 1,
            create_table,
            dialect: SqlDialect::Mysql,
        };
        let e = SqlWriter::new(Vec::new(), opts(true), "out.sql")
            .err()
            .expect("create_table refused")
            .to_string();
        assert!(e.contains("MySQL needs column types"), "{e}");
        let mut w = SqlWriter::new(Vec::new(), opts(false), "out.sql").unwrap();
        w.begin(&["id".into(), "x".into()]).unwrap();
        w.write_row(&[Value::Int(1), Value::Float(1.5)]).unwrap();
        let e = w
            .write_row(&[Value::Int(2), Value::Float(f64::INFINITY)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("out.sql, field 2 (x): row 2: inf cannot be written for MySQL"),
            "{e}"
        );
    }
}
