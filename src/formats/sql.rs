//! SQL text: a sink writing `INSERT` statements, and a streaming splitter that cuts a `.sql`
//! file into statements (with the line each starts on) for an import to execute.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};

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

/// One statement of a `.sql` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStatement {
    /// The statement's text, with its `;`.
    pub sql: String,
    /// The line it starts on.
    pub line: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Single,
    Double,
    Backtick,
    Bracket,
    LineComment,
    BlockComment,
}

/// Cuts SQL text into statements at `;` outside strings, quoted identifiers and comments.
/// `CREATE TRIGGER` bodies (`BEGIN ... END;`) stay in one statement.
pub struct SqlStatements<R: Read> {
    input: BufReader<R>,
    name: String,
    line: u64,
    done: bool,
}

impl<R: Read> SqlStatements<R> {
    /// A splitter over `input`, named `name` in messages.
    pub fn new(input: R, name: &str) -> Self {
        SqlStatements {
            input: BufReader::with_capacity(64 * 1024, input),
            name: name.to_owned(),
            line: 1,
            done: false,
        }
    }

    /// The input's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next statement, or `None` at the end.
    pub fn next_statement(&mut self) -> Result<Option<SqlStatement>, FormatError> {
        if self.done {
            return Ok(None);
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut state = State::Normal;
        let mut start_line: Option<u64> = None;
        let mut state_line = self.line;
        // Words of the statement so far outside strings and comments (only the first few and
        // the last one matter: `CREATE [TEMP] TRIGGER` ... `END`).
        let mut first_words: Vec<String> = Vec::new();
        let mut word = String::new();
        let mut last_word = String::new();
        let mut prev = 0u8;
        loop {
            let chunk = self
                .input
                .fill_buf()
                .map_err(|e| FormatError::io(&self.name, e))?;
            if chunk.is_empty() {
                self.done = true;
                return self.at_end(buf, start_line, state, state_line);
            }
            let mut used = 0;
            let mut complete = false;
            for &b in chunk {
                used += 1;
                buf.push(b);
                let p = prev;
                prev = b;
                if b == b'\n' {
                    self.line += 1;
                }
                match state {
                    State::Normal => {
                        let is_word = b.is_ascii_alphanumeric() || b == b'_';
                        if is_word {
                            word.push(char::from(b));
                        } else if !word.is_empty() {
                            if first_words.len() < 3 {
                                first_words.push(word.to_ascii_uppercase());
                            }
                            last_word = std::mem::take(&mut word);
                        }
                        if !b.is_ascii_whitespace() && !matches!(b, b'-' | b'/' | b';') {
                            start_line.get_or_insert(self.line);
                        }
                        match b {
                            b'\'' => (state, state_line) = (State::Single, self.line),
                            b'"' => (state, state_line) = (State::Double, self.line),
                            b'`' => (state, state_line) = (State::Backtick, self.line),
                            b'[' => (state, state_line) = (State::Bracket, self.line),
                            b'-' if p == b'-' => {
                                state = State::LineComment;
                                prev = 0;
                            }
                            b'*' if p == b'/' => {
                                (state, state_line) = (State::BlockComment, self.line);
                                prev = 0;
                            }
                            b'-' | b'/' => {}
                            b';' => {
                                let trigger = first_words.first().map(String::as_str)
                                    == Some("CREATE")
                                    && first_words.iter().any(|w| w == "TRIGGER");
                                if !trigger || last_word.eq_ignore_ascii_case("END") {
                                    complete = true;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        if (p == b'-' || p == b'/') && !matches!(b, b'-' | b'*') {
                            // A lone `-` or `/` was an operator, part of the statement.
                            start_line.get_or_insert(self.line);
                        }
                    }
                    State::Single if b == b'\'' => state = State::Normal,
                    State::Double if b == b'"' => state = State::Normal,
                    State::Backtick if b == b'`' => state = State::Normal,
                    State::Bracket if b == b']' => state = State::Normal,
                    State::LineComment if b == b'\n' => state = State::Normal,
                    State::BlockComment if b == b'/' && p == b'*' => {
                        state = State::Normal;
                        prev = 0;
                    }
                    _ => {}
                }
            }
            self.input.consume(used);
            if complete {
                match start_line {
                    Some(line) => return self.statement(buf, line).map(Some),
                    // A lone `;`: nothing to run.
                    None => {
                        buf.clear();
                        first_words.clear();
                        last_word.clear();
                        word.clear();
                        continue;
                    }
                }
            }
        }
    }

    fn at_end(
        &self,
        buf: Vec<u8>,
        start_line: Option<u64>,
        state: State,
        state_line: u64,
    ) -> Result<Option<SqlStatement>, FormatError> {
        let what = match state {
            State::Single => Some("a string ('...')"),
            State::Double => Some("a quoted identifier (\"...\")"),
            State::Backtick => Some("a quoted identifier (`...`)"),
            State::Bracket => Some("a quoted identifier ([...])"),
            State::BlockComment => Some("a comment (/* ... */)"),
            State::Normal | State::LineComment => None,
        };
        if let Some(what) = what {
            return Err(FormatError::data(
                Location::file(&self.name).at_line(state_line),
                format!("{what} opened here is not closed before the end of the input"),
            ));
        }
        match start_line {
            Some(line) => self.statement(buf, line).map(Some),
            None => Ok(None),
        }
    }

    fn statement(&self, buf: Vec<u8>, line: u64) -> Result<SqlStatement, FormatError> {
        match String::from_utf8(buf) {
            Ok(sql) => Ok(SqlStatement {
                sql: sql.trim().to_owned(),
                line,
            }),
            Err(e) => Err(FormatError::data(
                Location::file(&self.name).at_line(line),
                format!(
                    "the statement is not valid UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )),
        }
    }
}

impl<R: Read> Iterator for SqlStatements<R> {
    type Item = Result<SqlStatement, FormatError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_statement().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_with_lines() {
        let text = "-- header\nCREATE TABLE t (a);\n\nINSERT INTO t VALUES ('x;y'), (\"q\");\n/* c; */ INSERT INTO t VALUES (1 - 2);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  SELECT 1;\nEND;\n;";
        let stmts: Vec<SqlStatement> = SqlStatements::new(text.as_bytes(), "x.sql")
            .collect::<Result<_, _>>()
            .unwrap();
        let lines: Vec<u64> = stmts.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 4, 5, 6]);
        assert!(stmts[3].sql.ends_with("END;"), "{}", stmts[3].sql);
        assert!(stmts[1].sql.contains("'x;y'"));
    }

    #[test]
    fn unterminated_string_names_its_line() {
        let e = SqlStatements::new(
            "SELECT 1;\nINSERT INTO t VALUES ('oops);\n".as_bytes(),
            "x.sql",
        )
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("x.sql: line 2"), "{e}");
    }

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
