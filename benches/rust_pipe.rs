//! The same pipes as `benches/formats.sh`, in plain Rust without Lua or a worker process: the
//! reference for "ferry.pipe costs nothing on top". Run with `cargo bench --bench rust_pipe
//! [-- ROWS] [typed]`. Prints rates; asserts nothing.
//!
//! With `typed`, only the CSV file is made and read once with types, for a profiler
//! (`valgrind --tool=callgrind target/release/deps/rust_pipe-* 100000 typed`): each parse is a
//! function of its own, so its cost shows apart.

use std::path::Path;
use std::time::Instant;

use ferry::db::{Db, InsertOptions, Params};
use ferry::formats::{
    CsvOptions, CsvReader, CsvWriter, ReadOptions, RowSink, RowSource, Type, pipe,
};

/// The csv crate alone, splitting into reused byte records: the ceiling of any CSV reader
/// built on it. Returns the records read.
#[inline(never)]
fn split_csv(path: &Path) -> u64 {
    let mut raw =
        csv::ReaderBuilder::new().from_reader(std::fs::File::open(path).expect("open csv"));
    let mut rec = csv::ByteRecord::new();
    let mut n = 0;
    while raw.read_byte_record(&mut rec).expect("record") {
        n += 1;
    }
    n
}

/// ferry's reader with these options. Returns the rows read.
#[inline(never)]
fn parse_csv(path: &Path, opts: &ReadOptions) -> u64 {
    let mut r = CsvReader::new(
        std::fs::File::open(path).expect("open csv"),
        &CsvOptions::default(),
        opts,
    )
    .expect("reader");
    let mut row = Vec::new();
    let mut n = 0;
    while r.next_row(&mut row).expect("row") {
        n += 1;
    }
    n
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let typed_only = std::env::args().any(|a| a == "typed");
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

    let opts = {
        let mut o = ReadOptions::named("out.csv");
        for c in ["id", "qty", "created_at"] {
            o.types.insert(c.into(), Type::Integer);
        }
        o.types.insert("amount".into(), Type::Float);
        o
    };
    if typed_only {
        let t = Instant::now();
        let n = parse_csv(&csv_path, &opts);
        let s = t.elapsed().as_secs_f64();
        println!(
            "CSV parse (typed), once : {s:.3}s  {:.0} MB/s  {n} rows",
            bytes as f64 / s / 1e6
        );
        return;
    }
    // The three parses alternate, five times each, and each reports its median: one run of a
    // 0.1 s parse on a shared machine says little.
    let (mut split, mut text, mut typed) = (Vec::new(), Vec::new(), Vec::new());
    let mut n = 0u64;
    for _ in 0..5 {
        let t = Instant::now();
        n = split_csv(&csv_path);
        split.push(t.elapsed().as_secs_f64());
        // ferry's reader, every column text, then typed.
        for (o, times) in [
            (&ReadOptions::named("out.csv"), &mut text),
            (&opts, &mut typed),
        ] {
            let t = Instant::now();
            parse_csv(&csv_path, o);
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let rate = |label: &str, times: &mut Vec<f64>| -> f64 {
        times.sort_by(f64::total_cmp);
        let s = times[times.len() / 2];
        let mb = bytes as f64 / s / 1e6;
        println!(
            "{label} : {s:.3}s  {mb:.0} MB/s  {:.2} M rows/s (median of {})",
            n as f64 / s / 1e6,
            times.len()
        );
        mb
    };
    let split = rate("csv crate ByteRecord", &mut split);
    rate("CSV parse (text)", &mut text);
    let typed = rate("CSV parse (typed)", &mut typed);
    println!(
        "summary: typed CSV parsing {typed:.0} MB/s (goal >= 650), x{:.2} of the csv crate splitting alone ({split:.0} MB/s)",
        typed / split
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
