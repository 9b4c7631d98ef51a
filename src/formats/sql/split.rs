//! Cuts SQL text into statements at the delimiter (`;`) outside strings, quoted names and
//! comments, with the lexical rules of the database the script is for ([`SqlDialect`]):
//!
//! - every dialect: `'...'` strings (a doubled quote inside), `"..."` names, `-- ...` and
//!   `/* ... */` comments; a `CREATE TRIGGER` / `PROCEDURE` / `FUNCTION` / `EVENT` whose body is
//!   a `BEGIN ... END` block (SQLite's triggers, MySQL's compound statements, PostgreSQL's
//!   `BEGIN ATOMIC`) stays one statement, `CASE ... END` and MySQL's `END IF` / `END LOOP` /
//!   `END WHILE` / `END REPEAT` inside it included;
//! - SQLite: `` `...` `` and `[...]` names;
//! - MySQL: `` `...` `` names, `#` comments, a backslash escaping the next character inside
//!   strings unless the session's `sql_mode` has `NO_BACKSLASH_ESCAPES`, and the `mysql`
//!   client's `DELIMITER` command (as `mysqldump` writes around triggers and routines);
//! - PostgreSQL: dollar-quoted strings (`$$...$$`, `$tag$...$tag$`: function bodies) and
//!   `E'...'` strings, where a backslash escapes (in every string when the session's
//!   `standard_conforming_strings` is off).

use std::io::{BufRead, BufReader, Read};

use super::SqlDialect;
use crate::formats::error::{FormatError, Location};

/// One statement of a `.sql` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStatement {
    /// The statement's text, with its `;` (without a `DELIMITER`-set delimiter).
    pub sql: String,
    /// The line it starts on.
    pub line: u64,
}

/// Where the splitter is in the text.
#[derive(Clone, PartialEq, Eq)]
enum State {
    Normal,
    /// Inside `'...'`; with `escapes`, a backslash escapes the next byte.
    Single {
        escapes: bool,
    },
    /// Inside `"..."`; with `escapes`, a backslash escapes the next byte (MySQL's strings).
    Double {
        escapes: bool,
    },
    Backtick,
    Bracket,
    /// Inside a dollar-quoted string: its tag with both dollars, and where its body starts in
    /// the statement's bytes.
    Dollar {
        tag: Vec<u8>,
        body: usize,
    },
    LineComment,
    BlockComment,
    /// After MySQL's `DELIMITER`: the rest of the line is the new delimiter.
    DelimiterLine,
}

/// Whether `b` can be part of an unquoted name or keyword.
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The words of a statement so far (outside strings and comments), as far as they decide
/// where it ends: the first few (`CREATE ... TRIGGER`) and the depth of `BEGIN ... END` blocks.
#[derive(Default)]
struct Words {
    /// The first words, upper-cased.
    first: Vec<String>,
    /// Whether the statement creates something whose body may be a `BEGIN ... END` block.
    compound: bool,
    /// Open `BEGIN` / `CASE` blocks.
    depth: u32,
    /// Whether the last word was an `END` that closed a block.
    after_end: bool,
    /// The word being read.
    word: String,
}

/// How many leading words are kept to recognise `CREATE [OR REPLACE] [DEFINER ..] TRIGGER`.
const FIRST_WORDS: usize = 6;

impl Words {
    /// Ends the word being read, if any.
    fn finish(&mut self) {
        if self.word.is_empty() {
            return;
        }
        let w = std::mem::take(&mut self.word).to_ascii_uppercase();
        if self.first.len() < FIRST_WORDS {
            self.first.push(w.clone());
            self.compound = self.first[0] == "CREATE"
                && self
                    .first
                    .iter()
                    .any(|w| matches!(w.as_str(), "TRIGGER" | "PROCEDURE" | "FUNCTION" | "EVENT"));
        }
        let mut closed = false;
        match w.as_str() {
            "BEGIN" if self.compound => self.depth += 1,
            "CASE" if self.depth > 0 && !self.after_end => self.depth += 1,
            // `END IF` (MySQL) closed a block that was not counted: undo the `END`.
            "IF" | "LOOP" | "WHILE" | "REPEAT" if self.after_end => self.depth += 1,
            "END" if self.depth > 0 => {
                self.depth -= 1;
                closed = true;
            }
            _ => {}
        }
        self.after_end = closed;
    }
}

/// Cuts SQL text into statements at `;` outside strings, quoted identifiers and comments, by
/// the rules of a dialect (SQLite's unless told otherwise; see the module's documentation).
pub struct SqlStatements<R: Read> {
    input: BufReader<R>,
    name: String,
    line: u64,
    done: bool,
    dialect: SqlDialect,
    /// Whether the dialect was chosen by the script (then `adopt` leaves it).
    explicit: bool,
    /// Whether a backslash escapes inside `'...'` (and MySQL's `"..."`): MySQL's default;
    /// PostgreSQL's only with `standard_conforming_strings` off.
    backslash_escapes: bool,
    /// The statement delimiter (MySQL's `DELIMITER` changes it).
    delimiter: Vec<u8>,
}

impl<R: Read> SqlStatements<R> {
    /// A splitter over `input` with SQLite's rules, named `name` in messages.
    pub fn new(input: R, name: &str) -> Self {
        SqlStatements {
            input: BufReader::with_capacity(64 * 1024, input),
            name: name.to_owned(),
            line: 1,
            done: false,
            dialect: SqlDialect::Sqlite,
            explicit: false,
            backslash_escapes: false,
            delimiter: b";".to_vec(),
        }
    }

    /// The same splitter with the rules of `dialect`, chosen by the script: a database's
    /// `db:run` keeps it (see [`SqlStatements::adopt`]).
    pub fn with_dialect(mut self, dialect: SqlDialect) -> Self {
        self.dialect = dialect;
        self.explicit = true;
        self.backslash_escapes = dialect == SqlDialect::Mysql;
        self
    }

    /// Takes the rules of the database that runs the script: its dialect, unless the script
    /// chose one, and whether the session treats a backslash in `'...'` as an escape (MySQL
    /// without `NO_BACKSLASH_ESCAPES`; PostgreSQL with `standard_conforming_strings` off).
    pub fn adopt(&mut self, dialect: SqlDialect, backslash_escapes: bool) {
        if !self.explicit {
            self.dialect = dialect;
        }
        if dialect == self.dialect {
            self.backslash_escapes = backslash_escapes;
        }
    }

    /// The dialect whose rules the splitter follows.
    pub fn dialect(&self) -> SqlDialect {
        self.dialect
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
        let mysql = self.dialect == SqlDialect::Mysql;
        let postgres = self.dialect == SqlDialect::Postgres;
        let sqlite = self.dialect == SqlDialect::Sqlite;
        let mut buf: Vec<u8> = Vec::new();
        let mut state = State::Normal;
        let mut start_line: Option<u64> = None;
        let mut state_line = self.line;
        let mut words = Words::default();
        let mut escaped = false;
        let mut prev = 0u8;
        loop {
            let chunk = self
                .input
                .fill_buf()
                .map_err(|e| FormatError::io(&self.name, e))?;
            if chunk.is_empty() {
                self.done = true;
                if state == State::DelimiterLine {
                    self.set_delimiter(&buf, state_line)?;
                    return Ok(None);
                }
                return self.at_end(buf, start_line, &state, state_line);
            }
            let mut used = 0;
            let mut complete = false;
            let mut delimiter_set = false;
            for &b in chunk {
                used += 1;
                buf.push(b);
                let p = prev;
                prev = b;
                if b == b'\n' {
                    self.line += 1;
                }
                match &state {
                    State::Normal => {
                        if word_byte(b) {
                            words.word.push(char::from(b));
                        } else {
                            let first = words.first.is_empty();
                            words.finish();
                            if mysql
                                && first
                                && words.first.first().map(String::as_str) == Some("DELIMITER")
                                && (b == b' ' || b == b'\t')
                            {
                                (state, state_line) = (State::DelimiterLine, self.line);
                                buf.clear();
                                continue;
                            }
                        }
                        let comment_start = matches!(b, b'-' | b'/') || (mysql && b == b'#');
                        if !b.is_ascii_whitespace() && !comment_start && b != b';' {
                            start_line.get_or_insert(self.line);
                        }
                        match b {
                            b'\'' => {
                                // PostgreSQL's E'...' (not the end of a longer word).
                                let e_string = postgres
                                    && matches!(p, b'e' | b'E')
                                    && (buf.len() < 3 || !word_byte(buf[buf.len() - 3]));
                                let escapes =
                                    ((mysql || postgres) && self.backslash_escapes) || e_string;
                                (state, state_line) = (State::Single { escapes }, self.line);
                            }
                            b'"' => {
                                let escapes = mysql && self.backslash_escapes;
                                (state, state_line) = (State::Double { escapes }, self.line);
                            }
                            b'`' if !postgres => (state, state_line) = (State::Backtick, self.line),
                            b'[' if sqlite => (state, state_line) = (State::Bracket, self.line),
                            b'#' if mysql => state = State::LineComment,
                            b'$' if postgres => {
                                if let Some(tag) = dollar_tag(&buf) {
                                    let body = buf.len();
                                    (state, state_line) = (State::Dollar { tag, body }, self.line);
                                }
                            }
                            b'-' if p == b'-' => {
                                state = State::LineComment;
                                prev = 0;
                            }
                            b'*' if p == b'/' => {
                                (state, state_line) = (State::BlockComment, self.line);
                                prev = 0;
                            }
                            _ => {}
                        }
                        if (p == b'-' || p == b'/') && !matches!(b, b'-' | b'*') {
                            // A lone `-` or `/` was an operator, part of the statement.
                            start_line.get_or_insert(self.line);
                        }
                        if state == State::Normal
                            && self.delimiter.last() == Some(&b)
                            && buf.ends_with(&self.delimiter)
                        {
                            let custom = self.delimiter != b";";
                            if custom || words.depth == 0 {
                                if custom {
                                    buf.truncate(buf.len() - self.delimiter.len());
                                }
                                complete = true;
                                break;
                            }
                        }
                    }
                    State::Single { .. } | State::Double { .. } if escaped => escaped = false,
                    State::Single { escapes: true } | State::Double { escapes: true }
                        if b == b'\\' =>
                    {
                        escaped = true;
                    }
                    State::Single { .. } if b == b'\'' => state = State::Normal,
                    State::Double { .. } if b == b'"' => state = State::Normal,
                    State::Backtick if b == b'`' => state = State::Normal,
                    State::Bracket if b == b']' => state = State::Normal,
                    State::Dollar { tag, body }
                        if b == b'$' && buf.len() >= body + tag.len() && buf.ends_with(tag) =>
                    {
                        state = State::Normal;
                        prev = 0;
                    }
                    State::LineComment if b == b'\n' => state = State::Normal,
                    State::BlockComment if b == b'/' && p == b'*' => {
                        state = State::Normal;
                        prev = 0;
                    }
                    State::DelimiterLine if b == b'\n' => {
                        self.set_delimiter(&buf, state_line)?;
                        delimiter_set = true;
                        break;
                    }
                    _ => {}
                }
            }
            self.input.consume(used);
            if delimiter_set {
                // `DELIMITER x` is the client's command, not a statement: start anew.
                buf.clear();
                state = State::Normal;
                start_line = None;
                words = Words::default();
                prev = 0;
                continue;
            }
            if complete {
                match start_line {
                    Some(line) => return self.statement(buf, line).map(Some),
                    // A lone delimiter: nothing to run.
                    None => {
                        buf.clear();
                        words = Words::default();
                        continue;
                    }
                }
            }
        }
    }

    /// Sets the delimiter from the rest of a `DELIMITER` line (in `line_bytes`).
    fn set_delimiter(&mut self, line_bytes: &[u8], line: u64) -> Result<(), FormatError> {
        let d = line_bytes.trim_ascii();
        if d.is_empty() || d.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(FormatError::data(
                Location::file(&self.name).at_line(line),
                "DELIMITER needs one delimiter (such as ;; or $$) after it on its line",
            ));
        }
        self.delimiter = d.to_vec();
        Ok(())
    }

    fn at_end(
        &self,
        buf: Vec<u8>,
        start_line: Option<u64>,
        state: &State,
        state_line: u64,
    ) -> Result<Option<SqlStatement>, FormatError> {
        let what = match state {
            State::Single { .. } => Some("a string ('...')".to_owned()),
            State::Double { .. } => Some("a quoted identifier (\"...\")".to_owned()),
            State::Backtick => Some("a quoted identifier (`...`)".to_owned()),
            State::Bracket => Some("a quoted identifier ([...])".to_owned()),
            State::BlockComment => Some("a comment (/* ... */)".to_owned()),
            State::Dollar { tag, .. } => Some(format!(
                "a dollar-quoted string ({}...{})",
                String::from_utf8_lossy(tag),
                String::from_utf8_lossy(tag)
            )),
            State::Normal | State::LineComment | State::DelimiterLine => None,
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

/// The tag (`$$`, `$body$`) when the `$` at the end of `buf` closes the opening of a
/// dollar-quoted string: `$`, then nothing or a name not starting with a digit, then this `$`,
/// with no name character right before the first `$` (`a$b$` is a name, `$1` a parameter).
fn dollar_tag(buf: &[u8]) -> Option<Vec<u8>> {
    let end = buf.len() - 1;
    let mut k = end;
    while k > 0 && word_byte(buf[k - 1]) {
        k -= 1;
    }
    let open = k.checked_sub(1)?;
    if buf[open] != b'$' {
        return None;
    }
    let name = &buf[k..end];
    if name.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if open > 0 && (word_byte(buf[open - 1]) || buf[open - 1] == b'$') {
        return None;
    }
    Some(buf[open..].to_vec())
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

    fn split(text: &str, dialect: SqlDialect) -> Vec<SqlStatement> {
        SqlStatements::new(text.as_bytes(), "x.sql")
            .with_dialect(dialect)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn split_err(text: &str, dialect: SqlDialect) -> String {
        SqlStatements::new(text.as_bytes(), "x.sql")
            .with_dialect(dialect)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err()
            .to_string()
    }

    fn texts(text: &str, dialect: SqlDialect) -> Vec<String> {
        split(text, dialect).into_iter().map(|s| s.sql).collect()
    }

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
        let e = split_err(
            "SELECT 1;\nINSERT INTO t VALUES ('oops);\n",
            SqlDialect::Sqlite,
        );
        assert!(e.starts_with("x.sql: line 2"), "{e}");
    }

    #[test]
    fn trigger_bodies_with_case_stay_whole_and_triggers_without_bodies_end_at_their_semicolon() {
        let sqlite = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET a = CASE WHEN 1 THEN 2 ELSE 3 END;\n  SELECT 1;\nEND;\nSELECT 2;";
        let got = texts(sqlite, SqlDialect::Sqlite);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].ends_with("END;") && got[0].contains("SELECT 1;"),
            "{got:?}"
        );
        // PostgreSQL's trigger calls a function: no body, the `;` ends it.
        let pg = "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();\nINSERT INTO t VALUES (1);";
        assert_eq!(texts(pg, SqlDialect::Postgres).len(), 2);
        // MySQL's compound body with END IF and a nested CASE statement.
        let my = "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN\n  IF NEW.a < 0 THEN SET NEW.a = 0; END IF;\n  CASE NEW.b WHEN 1 THEN SET NEW.c = 1; ELSE SET NEW.c = 2; END CASE;\nEND;\nINSERT INTO t VALUES (1);";
        let got = texts(my, SqlDialect::Mysql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].starts_with("INSERT"), "{got:?}");
    }

    #[test]
    fn mysql_backslashes_hash_comments_and_delimiter() {
        let text = "INSERT INTO t VALUES ('it\\'s; fine', \"a\\\";b\");\n# a comment; not a statement\nDELIMITER ;;\nCREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1;;\nDELIMITER ;\nSELECT 1;";
        let got = split(text, SqlDialect::Mysql);
        let sql: Vec<&str> = got.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(sql.len(), 3, "{sql:?}");
        assert!(sql[0].ends_with("\"a\\\";b\");"), "{sql:?}");
        assert_eq!(
            sql[1],
            "CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1"
        );
        assert_eq!(sql[2], "SELECT 1;");
        assert_eq!(got[1].line, 4);
        // With NO_BACKSLASH_ESCAPES a backslash is a character: 'C:\' ends the string.
        let mut st = SqlStatements::new("SELECT 'C:\\'; SELECT 2;".as_bytes(), "x.sql");
        st.adopt(SqlDialect::Mysql, false);
        assert_eq!(st.map(|s| s.unwrap().sql).collect::<Vec<_>>().len(), 2);
        let e = SqlStatements::new("DELIMITER\nSELECT 1;".as_bytes(), "x.sql")
            .with_dialect(SqlDialect::Mysql)
            .collect::<Result<Vec<_>, _>>();
        // `DELIMITER` alone on its line is not the command (it needs a delimiter after a space).
        assert!(e.is_ok(), "{e:?}");
        let e = split_err("DELIMITER  \nSELECT 1;", SqlDialect::Mysql);
        assert!(e.contains("line 1: DELIMITER needs one delimiter"), "{e}");
    }

    #[test]
    fn postgres_dollar_quotes_and_e_strings() {
        let text = "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$\nBEGIN\n  NEW.a := 'x;y'; RETURN NEW;\nEND;\n$body$;\nSELECT $$a;b$$, $1, a$b$c, E'it\\'s;', 'C:\\';\nDO $$ BEGIN PERFORM 1; END $$;";
        let got = texts(text, SqlDialect::Postgres);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].ends_with("$body$;"), "{got:?}");
        assert!(got[1].ends_with("'C:\\';"), "{got:?}");
        let mut st = SqlStatements::new("SELECT 'a\\';b'; SELECT 2;".as_bytes(), "x.sql");
        st.adopt(SqlDialect::Postgres, true);
        assert_eq!(st.map(|s| s.unwrap().sql).collect::<Vec<_>>().len(), 2);
        let e = split_err("SELECT $q$ never closed;", SqlDialect::Postgres);
        assert!(
            e.contains("line 1: a dollar-quoted string ($q$...$q$) opened here is not closed"),
            "{e}"
        );
    }

    #[test]
    fn a_script_chosen_dialect_is_kept_by_adopt() {
        let mut st = SqlStatements::new("".as_bytes(), "x.sql").with_dialect(SqlDialect::Sqlite);
        st.adopt(SqlDialect::Postgres, true);
        assert_eq!(st.dialect(), SqlDialect::Sqlite);
        let mut st = SqlStatements::new("".as_bytes(), "x.sql");
        st.adopt(SqlDialect::Postgres, true);
        assert_eq!(st.dialect(), SqlDialect::Postgres);
    }
}
