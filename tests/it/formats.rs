//! The formats and SQLite through their Rust APIs: SQLite → format → SQLite round trips for
//! every format, a table of malformed inputs for every reader, and zip-slip / zip-bomb cases.

use std::io::Write;

use ferry::db::{Db, InsertOptions, Params};
use ferry::formats::zip::{EntryOptions, ZipLimits, ZipReader, ZipWriter};
use ferry::formats::{
    CsvOptions, CsvReader, CsvWriter, FormatError, JsonReader, JsonWriter, NdjsonReader,
    NdjsonWriter, OnError, ReadOptions, RowSink, RowSource, SqlOptions, SqlStatements, SqlWriter,
    Type, Value, XlsxOptions, XlsxReader, XlsxWriter, pipe,
};

const TRICKY: &str = "quote \" comma , semi ; newline \n crlf \r\n tab \t ünïcødé 🚀 'single' \\x";

/// A table with the values that break formats: NULLs, empty strings, unicode, quotes,
/// delimiters and newlines inside fields, i64 min/max, floats, blobs.
fn fixture() -> Db {
    let db = Db::open_in_memory().unwrap();
    db.exec(
        "CREATE TABLE src (id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB)",
        &Params::None,
    )
    .unwrap();
    let rows: Vec<Vec<Value>> = vec![
        vec![
            Value::Int(1),
            Value::Int(i64::MIN),
            Value::Float(0.1),
            Value::Text("plain".into()),
            Value::Bytes(vec![0, 255, 10, 13]),
        ],
        vec![
            Value::Int(2),
            Value::Int(i64::MAX),
            Value::Float(-1e300),
            Value::Text(String::new()),
            Value::Null,
        ],
        vec![
            Value::Int(3),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
        vec![
            Value::Int(4),
            Value::Int(0),
            Value::Float(1.0),
            Value::Text(TRICKY.into()),
            Value::Bytes(Vec::new()),
        ],
        vec![
            Value::Int(5),
            Value::Int(-1),
            Value::Float(f64::MAX),
            Value::Text("a,b".into()),
            Value::Bytes(b"\"x\"".to_vec()),
        ],
        vec![
            Value::Int(6),
            Value::Int(1 << 53),
            Value::Float(5e-324),
            Value::Text(" leading and trailing ".into()),
            Value::Null,
        ],
    ];
    let cols: Vec<String> = ["id", "i", "f", "t", "b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    db.insert(
        "src",
        &mut ferry::formats::MemorySource::new(cols, rows),
        InsertOptions::default(),
    )
    .unwrap();
    db
}

fn all_rows(db: &Db, table: &str) -> Vec<Vec<Value>> {
    let mut q = db
        .query(
            &format!("SELECT id, i, f, t, b FROM {table} ORDER BY id"),
            &Params::None,
        )
        .unwrap();
    let mut out = Vec::new();
    let mut row = Vec::new();
    while q.next_row(&mut row).unwrap() {
        out.push(row.clone());
    }
    out
}

/// Exports the fixture with `write`, imports it with `read` into a fresh untyped table, and
/// checks every value came back exactly.
fn round_trip(
    write: impl FnOnce(&mut dyn RowSource, &mut Vec<u8>),
    read: impl FnOnce(&[u8]) -> Box<dyn RowSource>,
) {
    round_trip_as(write, read, |v| v)
}

/// Like [`round_trip`], comparing with the source values as `expect` maps them (for what a
/// format cannot carry).
fn round_trip_as(
    write: impl FnOnce(&mut dyn RowSource, &mut Vec<u8>),
    read: impl FnOnce(&[u8]) -> Box<dyn RowSource>,
    expect: impl Fn(Value) -> Value,
) {
    let db = fixture();
    let mut bytes = Vec::new();
    {
        let mut q = db
            .query("SELECT * FROM src ORDER BY id", &Params::None)
            .unwrap();
        write(&mut q, &mut bytes);
    }
    let mut src = read(&bytes);
    let back = Db::open_in_memory().unwrap();
    back.insert(
        "dst",
        src.as_mut(),
        InsertOptions {
            create: true,
            ..InsertOptions::default()
        },
    )
    .unwrap();
    let want: Vec<Vec<Value>> = all_rows(&db, "src")
        .into_iter()
        .map(|r| r.into_iter().map(&expect).collect())
        .collect();
    assert_eq!(all_rows(&back, "dst"), want);
}

fn typed(name: &str, types: &[(&str, Type)]) -> ReadOptions {
    let mut o = ReadOptions::named(name);
    for (c, t) in types {
        o.types.insert(c.to_string(), *t);
    }
    o
}

#[test]
fn csv_round_trip() {
    let csv = CsvOptions {
        null: Some("\\N".into()),
        ..CsvOptions::default()
    };
    let csv2 = csv.clone();
    round_trip(
        |q, out| {
            let mut w = CsvWriter::new(out, &csv, "out.csv").unwrap();
            pipe(q, &mut w).unwrap();
            w.finish().unwrap();
        },
        |bytes| {
            let o = typed(
                "out.csv",
                &[
                    ("id", Type::Integer),
                    ("i", Type::Integer),
                    ("f", Type::Float),
                    ("b", Type::Bytes),
                ],
            );
            Box::new(CsvReader::new(leak(bytes), &csv2, &o).unwrap())
        },
    );
}

#[test]
fn csv_round_trip_with_semicolons_and_custom_quote() {
    let csv = CsvOptions {
        delimiter: b';',
        quote: b'\'',
        null: Some("NULL".into()),
        ..CsvOptions::default()
    };
    let csv2 = csv.clone();
    round_trip(
        |q, out| {
            let mut w = CsvWriter::new(out, &csv, "out.csv").unwrap();
            pipe(q, &mut w).unwrap();
            w.finish().unwrap();
        },
        |bytes| {
            let o = typed(
                "out.csv",
                &[
                    ("id", Type::Integer),
                    ("i", Type::Integer),
                    ("f", Type::Float),
                    ("b", Type::Bytes),
                ],
            );
            Box::new(CsvReader::new(leak(bytes), &csv2, &o).unwrap())
        },
    );
}

fn leak(bytes: &[u8]) -> &'static [u8] {
    bytes.to_vec().leak()
}

#[test]
fn json_round_trip() {
    round_trip(
        |q, out| {
            let mut w = JsonWriter::new(out, "out.json");
            pipe(q, &mut w).unwrap();
            w.finish().unwrap();
        },
        |bytes| {
            let o = typed("out.json", &[("b", Type::Bytes)]);
            Box::new(JsonReader::new(leak(bytes), &o).unwrap())
        },
    );
}

#[test]
fn ndjson_round_trip() {
    round_trip(
        |q, out| {
            let mut w = NdjsonWriter::new(out, "out.ndjson");
            pipe(q, &mut w).unwrap();
            w.finish().unwrap();
        },
        |bytes| {
            let o = typed("out.ndjson", &[("b", Type::Bytes)]);
            Box::new(NdjsonReader::new(leak(bytes), &o).unwrap())
        },
    );
}

#[test]
fn xlsx_round_trip_reads_back_through_calamine() {
    // An xlsx cell cannot hold an empty string (Excel and rust_xlsxwriter write no cell for
    // it), so empty text and empty bytes come back as empty cells: null.
    round_trip_as(
        |q, out| {
            let mut w = XlsxWriter::new(out, &XlsxOptions::default(), "out.xlsx").unwrap();
            pipe(q, &mut w).unwrap();
            w.finish().unwrap();
        },
        |bytes| {
            let o = typed(
                "out.xlsx",
                &[
                    ("id", Type::Integer),
                    ("i", Type::Integer),
                    ("b", Type::Bytes),
                ],
            );
            Box::new(XlsxReader::new(leak(bytes), &XlsxOptions::default(), &o).unwrap())
        },
        |v| match v {
            Value::Text(s) if s.is_empty() => Value::Null,
            Value::Bytes(b) if b.is_empty() => Value::Null,
            v => v,
        },
    );
}

#[test]
fn sql_round_trip() {
    let db = fixture();
    let mut bytes = Vec::new();
    {
        let mut q = db
            .query("SELECT * FROM src ORDER BY id", &Params::None)
            .unwrap();
        let mut w = SqlWriter::new(
            &mut bytes,
            SqlOptions {
                table: "dst".into(),
                rows_per_statement: 4,
                create_table: true,
                dialect: Default::default(),
            },
            "out.sql",
        )
        .unwrap();
        pipe(&mut q, &mut w).unwrap();
        w.finish().unwrap();
    }
    let back = Db::open_in_memory().unwrap();
    let report = back
        .run_script(&mut SqlStatements::new(bytes.as_slice(), "out.sql"))
        .unwrap();
    assert_eq!(report.statements, 3);
    assert_eq!(all_rows(&back, "dst"), all_rows(&db, "src"));
}

/// One malformed input: the reader, the text, and what the error must contain.
struct Bad {
    format: &'static str,
    input: &'static [u8],
    expect: &'static [&'static str],
}

fn open(
    format: &str,
    input: &'static [u8],
    policy: OnError,
) -> Result<Box<dyn RowSource>, FormatError> {
    let mut o = ReadOptions::named(format!("in.{format}"));
    o.on_error = policy;
    Ok(match format {
        "csv" => {
            o.types.insert("n".into(), Type::Integer);
            Box::new(CsvReader::new(input, &CsvOptions::default(), &o)?)
        }
        "json" => Box::new(JsonReader::new(input, &o)?),
        "ndjson" => Box::new(NdjsonReader::new(input, &o)?),
        "xlsx" => Box::new(XlsxReader::new(input, &XlsxOptions::default(), &o)?),
        other => panic!("no reader {other}"),
    })
}

fn drain(src: &mut dyn RowSource) -> Result<u64, FormatError> {
    let mut n = 0;
    let mut row = Vec::new();
    while src.next_row(&mut row)? {
        n += 1;
    }
    Ok(n)
}

#[test]
fn malformed_inputs_name_file_line_and_field() {
    let cases = [
        Bad {
            format: "csv",
            input: b"n,s\n1,a\n2,\"open\n3,c\n",
            expect: &["in.csv: line 3", "unbalanced quote"],
        },
        Bad {
            format: "csv",
            input: b"n,s\n1,a\n2,b,extra\n",
            expect: &["in.csv: line 3", "expected 2 fields", "found 3"],
        },
        Bad {
            format: "csv",
            input: b"n,s\n1,a\n2,b\xff\n",
            expect: &["in.csv: line 3", "field 2 (s)", "UTF-8"],
        },
        Bad {
            format: "csv",
            input: b"n,s\n1,a\nx,b\n",
            expect: &["in.csv: line 3", "field 1 (n)", "expected an integer"],
        },
        Bad {
            format: "json",
            input: b"[\n{\"a\": 1},\n{\"a\": 2,}\n]",
            expect: &["in.json: line 3, column", "invalid JSON"],
        },
        Bad {
            format: "json",
            input: b"{\"a\": 1}",
            expect: &["in.json: line 1, column 1", "expected a JSON array"],
        },
        Bad {
            format: "json",
            input: b"[\n{\"a\": 1},\n{\"a\": 2",
            expect: &["in.json: line 3", "end of input"],
        },
        Bad {
            format: "json",
            input: b"[{\"a\": 1},\n {\"b\": 2}]",
            expect: &["in.json: line 2", "unexpected key `b`"],
        },
        Bad {
            format: "ndjson",
            input: b"{\"a\": 1}\n{\"a\": 2\n{\"a\": 3}\n",
            expect: &["in.ndjson: line 2, column", "invalid JSON"],
        },
        Bad {
            format: "ndjson",
            input: b"{\"a\": 1}\n\n[1]\n",
            expect: &["in.ndjson: line 3", "expected an object"],
        },
        Bad {
            format: "xlsx",
            input: b"this is not a workbook",
            expect: &["in.xlsx", "not a readable xlsx workbook"],
        },
        Bad {
            format: "xlsx",
            input: b"PK\x03\x04 truncated zip",
            expect: &["in.xlsx", "xlsx"],
        },
    ];
    for case in &cases {
        let err = open(case.format, case.input, OnError::Fail)
            .and_then(|mut s| drain(s.as_mut()))
            .expect_err(&format!(
                "{} input {:?} must fail",
                case.format,
                String::from_utf8_lossy(case.input)
            ))
            .to_string();
        for want in case.expect {
            assert!(
                err.contains(want),
                "{}: error {err:?} lacks {want:?}",
                case.format
            );
        }
    }
}

#[test]
fn sql_syntax_error_names_line_and_column() {
    let db = Db::open_in_memory().unwrap();
    let text =
        "CREATE TABLE t (x);\n\nINSERT INTO t VALUES (1);\nINSERT INTO t\n  VALUES (2) (3);\n";
    let e = db
        .run_script(&mut SqlStatements::new(text.as_bytes(), "in.sql"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("in.sql: line 5, column 14"), "{e}");
    assert!(e.contains("syntax error"), "{e}");
}

#[test]
fn continue_policy_skips_and_counts_bad_rows() {
    // (format, input, rows read, rows skipped, lines of the skipped rows)
    type Case = (&'static str, &'static [u8], u64, u64, &'static [u64]);
    let cases: [Case; 4] = [
        ("csv", b"n,s\n1,a\nx,b\n3,c,d\n4,d\n", 2, 2, &[3, 4]),
        (
            "json",
            b"[{\"a\": 1},\n{\"a\": tru},\n{\"a\": 3},\n7,\n{\"a\": 4}]",
            3,
            2,
            &[2, 4],
        ),
        (
            "ndjson",
            b"{\"a\": 1}\nnope\n{\"a\": 3}\n{\"a\":\n",
            2,
            2,
            &[2, 4],
        ),
        ("csv", b"n,s\n1,a\n2,\"never closed\n", 1, 1, &[3]),
    ];
    for (format, input, rows, skipped, lines) in cases {
        let mut src = open(format, input, OnError::Continue).unwrap();
        assert_eq!(
            drain(src.as_mut()).unwrap(),
            rows,
            "{format} {:?}",
            String::from_utf8_lossy(input)
        );
        let report = src.skipped().unwrap();
        assert_eq!(report.count, skipped, "{format}: {report:?}");
        let got: Vec<u64> = report.first.iter().filter_map(|(l, _)| *l).collect();
        assert_eq!(got, lines, "{format}: {report:?}");
    }
}

#[test]
fn zip_slip_names_are_refused_on_write_and_read() {
    for name in [
        "../evil.txt",
        "a/../../evil",
        "/etc/passwd",
        "C:/windows/evil",
        "a\\..\\evil",
    ] {
        let mut w = ZipWriter::new(Vec::new(), "out.zip");
        let e = w
            .add(name, &b"x"[..], EntryOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused"), "{name}: {e}");
    }
    // An archive made by another tool with a `../` entry.
    let mut raw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    raw.start_file("../../evil.sh", zip::write::SimpleFileOptions::default())
        .unwrap();
    raw.write_all(b"rm -rf /").unwrap();
    let bytes = raw.finish().unwrap().into_inner();
    let e = ZipReader::new(bytes.as_slice(), "evil.zip", ZipLimits::default())
        .err()
        .expect("a zip-slip archive must be refused")
        .to_string();
    assert!(
        e.contains("evil.zip") && e.contains("..") && e.contains("refused"),
        "{e}"
    );
}

#[test]
fn zip_bombs_are_refused() {
    // 32 MiB of zeros deflate to about 32 KiB: a small bomb.
    let mut w = ZipWriter::new(Vec::new(), "bomb.zip");
    w.start_entry(
        "zeros.bin",
        EntryOptions {
            level: Some(9),
            zip64: false,
        },
    )
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..32 {
        w.write_all(&chunk).unwrap();
    }
    let bytes = w.finish().unwrap();
    assert!(bytes.len() < 1 << 20);
    let limits = ZipLimits {
        max_entries: 10,
        max_total_size: 16 << 20,
        // The total size is what this case checks, not the compression ratio.
        max_ratio: u64::MAX,
    };
    let e = ZipReader::new(bytes.as_slice(), "bomb.zip", limits)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("limit"), "{e}");

    // Too many entries.
    let mut w = ZipWriter::new(Vec::new(), "many.zip");
    for i in 0..20 {
        w.add(&format!("f{i}"), &b""[..], EntryOptions::default())
            .unwrap();
    }
    let bytes = w.finish().unwrap();
    let limits = ZipLimits {
        max_entries: 10,
        max_total_size: 1 << 20,
        ..ZipLimits::default()
    };
    let e = ZipReader::new(bytes.as_slice(), "many.zip", limits)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("20 entries") && e.contains("max_entries"), "{e}");

    // An entry that inflates past what it declares: patch the declared size in the central
    // directory and the local header down to 1 KiB.
    let mut raw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    raw.start_file("liar.bin", zip::write::SimpleFileOptions::default())
        .unwrap();
    raw.write_all(&vec![7u8; 1 << 20]).unwrap();
    let mut bytes = raw.finish().unwrap().into_inner();
    let real = (1u32 << 20).to_le_bytes();
    let fake = 1024u32.to_le_bytes();
    let mut patched = 0;
    for i in 0..bytes.len() - 4 {
        if bytes[i..i + 4] == real {
            bytes[i..i + 4].copy_from_slice(&fake);
            patched += 1;
        }
    }
    assert!(patched >= 2, "sizes patched: {patched}");
    let mut r = ZipReader::new(bytes.as_slice(), "liar.zip", ZipLimits::default()).unwrap();
    let e = r
        .extract("liar.bin", &mut std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(e.contains("zip bomb") || e.contains("corrupt"), "{e}");
}

#[test]
fn export_options_choose_rename_and_convert() {
    use ferry::formats::{ProjectedSink, WriteOptions};
    let db = Db::open_in_memory().unwrap();
    db.exec("CREATE TABLE t (id, secret, created_at)", &Params::None)
        .unwrap();
    db.exec(
        "INSERT INTO t VALUES (1, 'x', 1574405175), (2, 'y', NULL)",
        &Params::None,
    )
    .unwrap();
    let mut q = db
        .query("SELECT * FROM t ORDER BY id DESC", &Params::None)
        .unwrap();
    let mut out = Vec::new();
    let mut wo = WriteOptions::named("out.csv");
    wo.exclude = vec!["secret".into()];
    wo.header = Some(vec!["ID".into(), "Created".into()]);
    wo.timestamp_columns = vec!["created_at".into()];
    let csv = CsvWriter::new(&mut out, &CsvOptions::default(), "out.csv").unwrap();
    let mut w = ProjectedSink::new(csv, wo);
    pipe(&mut q, &mut w).unwrap();
    w.finish().unwrap();
    drop(w);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "ID,Created\n2,\n1,2019-11-22T06:46:15Z\n"
    );
}

#[test]
fn xlsx_non_workbook_zip_is_refused() {
    let mut w = ZipWriter::new(Vec::new(), "x.zip");
    w.add("hello.txt", &b"hi"[..], EntryOptions::default())
        .unwrap();
    let bytes = w.finish().unwrap();
    let e = XlsxReader::new(
        bytes.as_slice(),
        &XlsxOptions::default(),
        &ReadOptions::named("fake.xlsx"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.starts_with("fake.xlsx"), "{e}");
}

#[test]
fn sinks_accept_rows_from_any_source() {
    // NDJSON → CSV without SQLite, through the same pipe.
    let src = b"{\"a\": 1, \"b\": \"x\"}\n{\"a\": 2, \"b\": null}\n";
    let mut r = NdjsonReader::new(&src[..], &ReadOptions::named("in.ndjson")).unwrap();
    let mut out = Vec::new();
    let mut w = CsvWriter::new(&mut out, &CsvOptions::default(), "out.csv").unwrap();
    assert_eq!(pipe(&mut r, &mut w).unwrap(), 2);
    w.finish().unwrap();
    drop(w);
    assert_eq!(String::from_utf8(out).unwrap(), "a,b\n1,x\n2,\n");
}
