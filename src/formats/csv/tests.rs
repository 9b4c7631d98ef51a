//! The reader against the `csv` crate, the fast number parsers against `str::parse`, and null
//! versus the empty string both ways.

use std::io::{self, Read};

use super::number::{parse_float, parse_int};
use super::{CsvReader, CsvWriter};
use crate::formats::options::{CsvOptions, ReadOptions, Type};
use crate::formats::row::{MemorySource, RowSink, RowSource, Value};
use crate::formats::{FormatError, pipe};

fn read_all(
    text: &str,
    csv: CsvOptions,
    opts: ReadOptions,
) -> Result<Vec<Vec<Value>>, FormatError> {
    let mut r = CsvReader::new(text.as_bytes(), &csv, &opts)?;
    let mut out = Vec::new();
    let mut row = Vec::new();
    while r.next_row(&mut row)? {
        out.push(row.clone());
    }
    Ok(out)
}

#[test]
fn reads_typed_fields() {
    let mut opts = ReadOptions::named("t.csv");
    opts.types.insert("n".into(), Type::Integer);
    let rows = read_all("n,s\n1,\"a,b\"\n,\"x\ny\"\n", CsvOptions::default(), opts).unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Value::Int(1), Value::Text("a,b".into())],
            vec![Value::Null, Value::Text("x\ny".into())],
        ]
    );
}

/// Hands out its bytes a few at a time, so records straddle every buffer boundary.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.1.min(self.0.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// The fast path (plain lines split in place) and the quoted path (`csv_core`) together
/// give exactly the records the `csv` crate gives, whatever the read sizes.
#[test]
fn splits_like_the_csv_crate() {
    let cases: &[&str] = &[
        "a,b\n1,2\n",
        "a,b\n1,2",
        "a,b\r\n1,2\r\n3,4",
        "a,b\n\n\n1,2\n\r\n3,4\n",
        "a,b\n\"x,y\",2\n\"q\"\"q\",\"\"\n",
        "a,b\n\"multi\nline\",2\nplain,3\n",
        "a,b\n1,x\"y\n\"a\"b,c\n",
        "a,b\rc,d\r1,2\n",
        "a,b\n1,\"ends with cr\r\"\r\n3,4",
        "\u{feff}a,b\nv,w\n",
        "a,b\n,\n\"\",\"\"\n",
        "h1,h2\n\u{e9}t\u{e9},\"\u{e9},\"\n",
    ];
    for case in cases {
        let mut want = Vec::new();
        let mut raw = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(case.as_bytes());
        let mut rec = csv::ByteRecord::new();
        while raw.read_byte_record(&mut rec).unwrap() {
            want.push(
                rec.iter()
                    .map(|f| Value::Text(String::from_utf8(f.to_vec()).unwrap()))
                    .collect::<Vec<_>>(),
            );
        }
        let csv_opts = CsvOptions {
            header: false,
            // A marker no case holds: the `csv` crate has no null to compare with.
            null: Some("<null>".into()),
            ..CsvOptions::default()
        };
        assert_eq!(read_in_steps(case, &csv_opts), want, "{case:?}");
    }
}

/// The fast number parsers agree with `str::parse` wherever they answer, and leave the
/// rest (signs and spaces aside) to it.
#[test]
fn fast_numbers_parse_like_std() {
    for s in [
        "0",
        "-0",
        "+7",
        "42",
        "-9223372036854775",
        "123456789012345678",
        "1234567890123456789",
        "",
        "-",
        "1a",
        " 1",
        "1 ",
        "0x10",
        "١",
        "12345678",
        "-87654321",
        "1234567/",
        "1234567:",
        "/2345678",
        "12345678\u{80}",
        "99999999999",
    ] {
        if let Some(i) = parse_int(s.as_bytes()) {
            assert_eq!(Some(i), s.parse::<i64>().ok(), "{s:?}");
        }
    }
    assert_eq!(
        parse_int(b"123456789012345678"),
        Some(123_456_789_012_345_678)
    );
    assert_eq!(parse_int(b"1234567890123456789"), None);
    assert_eq!(parse_int(b"12345678"), Some(12_345_678));
    assert_eq!(parse_int(b"1234567:"), None);
    assert_eq!(parse_int(b"99999999999"), Some(99_999_999_999));
    for s in [
        "0",
        "-0",
        "0.1",
        "1428.57",
        "-3.25",
        ".5",
        "5.",
        "+1.5",
        "123456789012345",
        "0.000000000000001",
        "1234567890123456",
        "1e5",
        ".",
        "",
        "-",
        "1.2.3",
        "nan",
        "inf",
        "9007199254740993",
        "12345678.5",
        "1234.5678",
        "1234567a.5",
        "0.12345678",
    ] {
        if let Some(f) = parse_float(s.as_bytes()) {
            let want: f64 = s.parse().unwrap();
            assert_eq!(f.to_bits(), want.to_bits(), "{s:?}");
        }
    }
    assert_eq!(parse_float(b"1428.57"), Some(1428.57));
    assert_eq!(parse_float(b"."), None);
    assert_eq!(parse_float(b"1e5"), None);
    assert_eq!(parse_float(b"1234.5678"), Some(1234.5678));
    assert_eq!(parse_float(b"12345678.5"), Some(12_345_678.5));
}

#[test]
fn writes_with_null_token_and_quotes() {
    let mut out = Vec::new();
    let mut w = CsvWriter::new(
        &mut out,
        &CsvOptions {
            null: Some("\\N".into()),
            ..CsvOptions::default()
        },
        "o.csv",
    )
    .unwrap();
    let mut src = MemorySource::new(
        vec!["a".into(), "b".into()],
        vec![vec![Value::Null, Value::Text("q\"x".into())]],
    );
    pipe(&mut src, &mut w).unwrap();
    w.finish().unwrap();
    drop(w);
    assert_eq!(String::from_utf8(out).unwrap(), "a,b\n\\N,\"q\"\"x\"\n");
}

/// Reads `input` (text columns) a few bytes at a time and whole, and checks both give the same.
fn read_in_steps(input: &str, csv: &CsvOptions) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for step in [1, 2, 3, 7, 4096] {
        let mut r = CsvReader::new(
            Trickle(input.as_bytes(), step),
            csv,
            &ReadOptions::named("t.csv"),
        )
        .unwrap();
        let mut got = Vec::new();
        let mut row = Vec::new();
        while r.next_row(&mut row).unwrap() {
            got.push(row.clone());
        }
        all.push(got);
    }
    for got in &all[1..] {
        assert_eq!(got, &all[0], "{input:?}");
    }
    all.swap_remove(0)
}

fn write_rows(csv: &CsvOptions, rows: Vec<Vec<Value>>) -> String {
    let columns = (1..=rows[0].len()).map(|i| format!("c{i}")).collect();
    let mut out = Vec::new();
    let mut w = CsvWriter::new(&mut out, csv, "o.csv").unwrap();
    pipe(&mut MemorySource::new(columns, rows), &mut w).unwrap();
    w.finish().unwrap();
    drop(w);
    String::from_utf8(out).unwrap()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Null and the empty string stay apart through a write and a read with the default marker
/// (the empty string): null is a bare empty field, the empty string `""`.
#[test]
fn empty_string_and_null_round_trip_with_the_default_marker() {
    let csv = CsvOptions::default();
    let rows = vec![
        vec![text(""), Value::Null, text("x")],
        vec![Value::Null, text(""), Value::Bytes(Vec::new())],
    ];
    let written = write_rows(&csv, rows);
    assert_eq!(written, "c1,c2,c3\n\"\",,x\n,\"\",\"\"\n");
    assert_eq!(
        read_in_steps(&written, &csv),
        vec![
            vec![text(""), Value::Null, text("x")],
            vec![Value::Null, text(""), text("")],
        ]
    );
}

/// With marker `NULL`, the text `NULL` is written quoted and reads back as text; a number
/// whose text is the marker is quoted too.
#[test]
fn a_text_equal_to_the_marker_is_quoted_and_reads_back_as_text() {
    let csv = CsvOptions {
        null: Some("NULL".into()),
        ..CsvOptions::default()
    };
    let written = write_rows(&csv, vec![vec![text("NULL"), Value::Null, text("")]]);
    assert_eq!(written, "c1,c2,c3\n\"NULL\",NULL,\n");
    assert_eq!(
        read_in_steps(&written, &csv),
        vec![vec![text("NULL"), Value::Null, text("")]]
    );
    let zero = CsvOptions {
        null: Some("0".into()),
        ..CsvOptions::default()
    };
    let written = write_rows(&zero, vec![vec![Value::Int(0), Value::Null]]);
    assert_eq!(written, "c1,c2\n\"0\",0\n");
    let mut opts = ReadOptions::named("t.csv");
    opts.types.insert("c1".into(), Type::Integer);
    opts.types.insert("c2".into(), Type::Integer);
    assert_eq!(
        read_all(&written, zero, opts).unwrap(),
        vec![vec![Value::Int(0), Value::Null]]
    );
}

/// Only an unquoted field equal to the marker is null, wherever the quoted fields are: with
/// other quotes on the line, across lines, after a lone `\r` or blank lines, at the end.
#[test]
fn a_quoted_field_is_never_null() {
    let csv = CsvOptions {
        header: false,
        ..CsvOptions::default()
    };
    let null = Value::Null;
    let cases: &[(&str, Vec<Vec<Value>>)] = &[
        (
            "\"x\"\"y\",\"\",,\"z\"\n",
            vec![vec![text("x\"y"), text(""), null.clone(), text("z")]],
        ),
        (
            "a,\"multi\nline\",\n\"\",\"\n\",\"\"\n",
            vec![
                vec![text("a"), text("multi\nline"), null.clone()],
                vec![text(""), text("\n"), text("")],
            ],
        ),
        (
            ",\"\"\r\n\r\r\n\"\",\r\"\",\"\"",
            vec![
                vec![null.clone(), text("")],
                vec![text(""), null.clone()],
                vec![text(""), text("")],
            ],
        ),
        (
            "\"a\"b,c\"\",\nx,\"\",",
            vec![
                vec![text("ab"), text("c\"\""), null.clone()],
                vec![text("x"), text(""), null.clone()],
            ],
        ),
        ("\"\",", vec![vec![text(""), null.clone()]]),
    ];
    for (input, want) in cases {
        assert_eq!(&read_in_steps(input, &csv), want, "{input:?}");
    }
}
