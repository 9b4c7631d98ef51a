//! The same pipes as `benches/formats.sh`, in plain Rust without Lua or a worker process: the
//! reference for "ferry.pipe costs nothing on top". Run with `cargo bench --bench rust_pipe
//! [-- ROWS]`. Prints rates; asserts nothing.

use std::time::Instant;

use ferry::db::{Db, InsertOptions, Params};
use ferry::formats::{
    CsvOptions, CsvReader, CsvWriter, ReadOptions, RowSink, RowSource, Type, pipe,
};

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = Db::open(&dir.path().join("bench.db"), "bench.db").expect("open");
    db.exec("PRAGMA journal_mode=OFF", &Params::None).ok();
    db.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, qty INTEGER, created_at INTEGER, note TEXT)",
        &Params::None,
    )
    .expect("create");
    db.exec(
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
             INSERT INTO t SELECT i, 'customer ' || (i % 9973), round((i % 100000) / 7.0, 2), i % 17, \
             1700000000 + i, CASE WHEN i % 10 = 0 THEN 'note, with \"quotes\"' ELSE 'ok' END FROM n"
        ),
        &Params::None,
    )
    .expect("fill");

    let csv_path = dir.path().join("out.csv");
    let t = Instant::now();
    {
        let out = std::io::BufWriter::new(std::fs::File::create(&csv_path).expect("create csv"));
        let mut q = db.query("SELECT * FROM t", &Params::None).expect("query");
        let mut w = CsvWriter::new(out, &CsvOptions::default(), "out.csv").expect("writer");
        pipe(&mut q, &mut w).expect("pipe");
        w.finish().expect("finish");
    }
    let s = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&csv_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "SQLite -> CSV : {s:.3}s  {:.2} M rows/s",
        rows as f64 / s / 1e6
    );

    // The csv crate alone, splitting into reused byte records: the ceiling of any CSV reader.
    let t = Instant::now();
    let mut raw =
        csv::ReaderBuilder::new().from_reader(std::fs::File::open(&csv_path).expect("open csv"));
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while raw.read_byte_record(&mut rec).expect("record") {
        n += 1;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "csv crate ByteRecord : {s:.3}s  {:.0} MB/s  {:.2} M rows/s",
        bytes as f64 / s / 1e6,
        n as f64 / s / 1e6
    );

    // ferry's reader, every column text.
    let t = Instant::now();
    let mut r = CsvReader::new(
        std::fs::File::open(&csv_path).expect("open csv"),
        &CsvOptions::default(),
        &ReadOptions::named("out.csv"),
    )
    .expect("reader");
    let mut row = Vec::new();
    let mut n = 0u64;
    while r.next_row(&mut row).expect("row") {
        n += 1;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "CSV parse (text) : {s:.3}s  {:.0} MB/s  {:.2} M rows/s",
        bytes as f64 / s / 1e6,
        n as f64 / s / 1e6
    );

    let opts = {
        let mut o = ReadOptions::named("out.csv");
        for c in ["id", "qty", "created_at"] {
            o.types.insert(c.into(), Type::Integer);
        }
        o.types.insert("amount".into(), Type::Float);
        o
    };
    let t = Instant::now();
    let mut r = CsvReader::new(
        std::fs::File::open(&csv_path).expect("open csv"),
        &CsvOptions::default(),
        &opts,
    )
    .expect("reader");
    let mut row = Vec::new();
    let mut n = 0u64;
    while r.next_row(&mut row).expect("row") {
        n += 1;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "CSV parse (typed) : {s:.3}s  {:.0} MB/s  {:.2} M rows/s",
        bytes as f64 / s / 1e6,
        n as f64 / s / 1e6
    );

    let db2 = Db::open(&dir.path().join("import.db"), "import.db").expect("open");
    db2.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, qty INTEGER, created_at INTEGER, note TEXT)",
        &Params::None,
    )
    .expect("create");
    let t = Instant::now();
    let mut r = CsvReader::new(
        std::fs::File::open(&csv_path).expect("open csv"),
        &CsvOptions::default(),
        &opts,
    )
    .expect("reader");
    let report = db2
        .insert("t", &mut r, InsertOptions::default())
        .expect("insert");
    let s = t.elapsed().as_secs_f64();
    println!(
        "CSV -> SQLite : {s:.3}s  {:.2} M rows/s ({} rows)",
        report.inserted as f64 / s / 1e6,
        report.inserted
    );
}
