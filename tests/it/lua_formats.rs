//! Formats, zip, SQLite and pipes as scripts see them: Lua jobs run through the real binary
//! (`ferry run FILE.lua`) in a temp project.

use crate::common;

use std::io::Write;

use common::Project;

/// Lua helpers shared by the scripts: a fixture table with the values that break formats, and
/// a fingerprint of a table that keeps each value's SQLite type.
const PRELUDE: &str = r#"
local TRICKY = "quote \" comma , semi ; newline \n crlf \r\n tab \t ünïcødé 🚀 'single'"
local function fixture(db)
  db:exec("CREATE TABLE src (id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB, created_at INTEGER)")
  local rows = {
    { 1, math.mininteger, 0.1, "plain", "\0\255\n", 1574405175 },
    { 2, math.maxinteger, -1e300, "", nil, 0 },
    { 3, nil, nil, nil, nil, nil },
    { 4, 0, 1.0, TRICKY, "", -86400 },
    { 5, -1, 1.7976931348623157e308, "a,b", "\"x\"", 4102444800 },
  }
  for _, r in ipairs(rows) do
    db:exec("INSERT INTO src VALUES (?, ?, ?, ?, CAST(? AS BLOB), ?)", { r[1], r[2], r[3], r[4], r[5], r[6] })
  end
end
local function fingerprint(db, tname)
  local parts = {}
  for row in db:query("SELECT id, quote(i), typeof(i), printf('%.17g', f), typeof(f), quote(t), typeof(t), quote(b), typeof(b) FROM " .. tname .. " ORDER BY id"):rows() do
    local cols = {}
    for _, c in ipairs(getmetatable(row).columns) do cols[#cols + 1] = tostring(row[c]) end
    parts[#parts + 1] = table.concat(cols, "|")
  end
  return table.concat(parts, "\n")
end
"#;

fn job(body: &str) -> String {
    format!("{PRELUDE}\nreturn {{ run = function(ctx)\n{body}\nend }}\n")
}

fn run_ok(p: &Project, name: &str, body: &str) -> serde_json::Value {
    let file = p.root_script(name, &job(body));
    let run = p.run_file(&file);
    assert!(
        run.succeeded(),
        "{name} failed: {}\n{}",
        run.error(),
        run.text()
    );
    run.record["summary"].clone()
}

fn run_err(p: &Project, name: &str, body: &str) -> String {
    let file = p.root_script(name, &job(body));
    let run = p.run_file(&file);
    assert!(!run.succeeded(), "{name} should fail:\n{}", run.text());
    run.error()
}

#[test]
fn every_format_round_trips_sqlite_to_sqlite() {
    let p = Project::with_config("");
    let s = run_ok(
        &p,
        "roundtrip",
        r#"
  local db = ferry.sqlite.open("data/rt.db")
  fixture(db)
  local want = fingerprint(db, "src")
  local st = ferry.store("data")
  local out = {}
  local typed = { i = "integer", f = "float", b = "bytes" }
  local function check(name, writer, reader, opts, expect)
    local q = db:query("SELECT id, i, f, t, b FROM src ORDER BY id")
    local n = ferry.pipe(q, writer(st:create("rt." .. name), opts))
    local src = reader(st:open("rt." .. name), { types = typed, null = opts and opts.null })
    db:insert("dst_" .. name, src, { create = true })
    local got = fingerprint(db, "dst_" .. name)
    out[name] = { rows = n, same = (got == (expect or want)), got = got }
  end
  local function read_plain(types_key)
    return function(r, o) return types_key(r, { types = o.types }) end
  end
  check("csv", ferry.csv.writer, ferry.csv.reader, { null = "\\N" })
  check("tsv", function(w) return ferry.csv.writer(w, { delimiter = "\t", null = "NULL" }) end,
    function(r, o) return ferry.csv.reader(r, { delimiter = "\t", null = "NULL", types = o.types }) end)
  check("json", ferry.json.writer, read_plain(ferry.json.reader))
  check("ndjson", ferry.ndjson.writer, read_plain(ferry.ndjson.reader))
  -- xlsx cells cannot hold empty strings: those come back as empty cells (null).
  db:exec("CREATE TABLE src_x AS SELECT id, i, f, nullif(t, '') AS t, nullif(b, x'') AS b FROM src")
  check("xlsx", ferry.xlsx.writer, function(r, o)
    return ferry.xlsx.reader(r, { types = { id = "integer", i = "integer", f = "float", b = "bytes" } })
  end, nil, fingerprint(db, "src_x"))
  -- SQL: INSERT statements run as a script.
  local sq = ferry.pipe(db:query("SELECT id, i, f, t, b FROM src ORDER BY id"),
    ferry.sql.writer(st:create("rt.sql"), { table = "dst_sql", create_table = true, rows_per_statement = 2 }))
  local rep = db:run(st:open("rt.sql"))
  out.sql = { rows = sq, same = fingerprint(db, "dst_sql") == want, statements = rep.statements }
  return out
"#,
    );
    for f in ["csv", "tsv", "json", "ndjson", "xlsx", "sql"] {
        assert_eq!(s[f]["rows"], 5, "{f}: {s}");
        assert_eq!(
            s[f]["same"], true,
            "{f} did not round-trip:\n{}",
            s[f]["got"]
        );
    }
    assert_eq!(s["sql"]["statements"], 4);
}

#[test]
fn seed_export_with_options_into_a_zip_and_back() {
    let p = Project::with_config("");
    let s = run_ok(
        &p,
        "export",
        r#"
  local db = ferry.sqlite.open("data/shop.db")
  fixture(db)
  local st = ferry.store("data")
  local zip = ferry.zip.writer(st:create("exports/orders.zip"))
  local n = ferry.pipe(
    db:query("SELECT id, t, b, created_at FROM src WHERE id <> :skip ORDER BY id DESC", { skip = 3 }),
    ferry.csv.writer(zip:create("orders.csv"), {
      exclude = { "b" },
      header = { "ID", "Text", "Created" },
      timestamp_columns = { "created_at" },
    }))
  ferry.pipe(db:query("SELECT id, created_at FROM src ORDER BY id"),
    ferry.json.writer(zip:create("orders.json"), { timestamp_columns = { "created_at" } }))
  zip:add("README.txt", "exported by ferry")
  zip:close()
  local zr = ferry.zip.reader(st:open("exports/orders.zip"))
  local names = {}
  for _, e in ipairs(zr:entries()) do names[#names + 1] = e.name end
  local csv = zr:read("orders.csv")
  zr:extract("orders.json", st:create("orders.json"))
  -- Import the JSON back, converting the RFC 3339 text to epochs again.
  local back = db:insert("imported", ferry.json.reader(st:open("orders.json"), { types = { created_at = "timestamp" } }), { create = true })
  local same = db:query("SELECT count(*) AS n FROM src JOIN imported USING (id) WHERE src.created_at IS imported.created_at"):read(1)[1].n
  return { rows = n, names = table.concat(names, ","), csv = csv, back = back, same = same }
"#,
    );
    assert_eq!(s["rows"], 4);
    assert_eq!(s["names"], "orders.csv,orders.json,README.txt");
    let csv = s["csv"].as_str().unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("ID,Text,Created"));
    assert_eq!(lines.next(), Some("5,\"a,b\",2100-01-01T00:00:00Z"));
    assert!(csv.contains("1,plain,2019-11-22T06:46:15Z"), "{csv}");
    assert!(csv.contains("4,\"quote \"\" comma"), "{csv}");
    assert_eq!(s["back"], 5);
    assert_eq!(s["same"], 5);
    assert!(p.at("data/exports/orders.zip").is_file());
}

#[test]
fn pipe_map_sees_batches_and_drops_rows() {
    let p = Project::with_config("");
    let s = run_ok(
        &p,
        "map",
        r#"
  local db = ferry.sqlite.open("data/m.db")
  db:exec("CREATE TABLE n (x INTEGER)")
  db:exec("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2500) INSERT INTO n SELECT i FROM c")
  local batches, biggest = 0, 0
  local written = ferry.pipe(db:query("SELECT x FROM n ORDER BY x"), db:writer("out", { create = true }), {
    batch = 1000,
    columns = { "x", "double" },
    map = function(rows)
      batches = batches + 1
      if #rows > biggest then biggest = #rows end
      for i, r in ipairs(rows) do
        if r.x % 2 == 1 then rows[i] = nil else r.double = r.x * 2 end
      end
      return rows
    end,
  })
  local check = db:query("SELECT count(*) AS n, sum(double) AS s, min(x) AS lo FROM out"):read(1)[1]
  local plain = ferry.pipe(db:query("SELECT x FROM n"), db:writer("copy", { create = true }))
  return { written = written, batches = batches, biggest = biggest, n = check.n, s = check.s, lo = check.lo, plain = plain }
"#,
    );
    assert_eq!(s["written"], 1250);
    assert_eq!(s["batches"], 3);
    assert_eq!(s["biggest"], 1000);
    assert_eq!(s["n"], 1250);
    assert_eq!(s["lo"], 2);
    assert_eq!(s["s"], 2 * (2..=2500).step_by(2).sum::<i64>());
    assert_eq!(s["plain"], 2500);
}

/// Issue #21: with the default options an empty string and nil written to CSV read back
/// apart: nil is written as an empty field, the empty string as `""`.
#[test]
fn csv_keeps_the_empty_string_and_nil_apart() {
    let p = Project::with_config("");
    let s = run_ok(
        &p,
        "empty",
        r#"
  local st = ferry.store("data")
  local w = ferry.csv.writer(st:create("e.csv"), { columns = { "a", "b", "c" } })
  w:write({ a = "", b = nil, c = "x" })
  w:write({ a = nil, b = "", c = "" })
  w:close()
  local got = {}
  for row in ferry.csv.reader(st:open("e.csv")):rows() do
    for _, c in ipairs({ "a", "b", "c" }) do
      local v = row[c]
      got[#got + 1] = v == nil and "nil" or ("[" .. v .. "]")
    end
  end
  return { file = st:read("e.csv"), got = table.concat(got, " ") }
"#,
    );
    assert_eq!(s["file"], "a,b,c\n\"\",,x\n,\"\",\"\"\n");
    assert_eq!(s["got"], "[] nil [x] nil [] []");
}

#[test]
fn rows_iterate_and_sinks_write_rows_from_lua() {
    let p = Project::with_config("");
    let s = run_ok(
        &p,
        "rows",
        r#"
  local src = ferry.csv.reader("id,name\n1,ann\n2,bob\n3,cy\n", { types = { id = "integer" } })
  local st = ferry.store("data")
  local sink = ferry.ndjson.writer(st:create("big.ndjson"))
  local names = {}
  for row in src:rows() do
    names[#names + 1] = row.name
    if row.id > 1 then sink:write(row) end
  end
  sink:close()
  local w = ferry.csv.writer(st:create("made.csv"), { columns = { "a", "b" } })
  w:write({ a = 1, b = "x" })
  w:write({ 2, nil })
  w:close()
  local decoded = ferry.json.decode('{"a": [1, 2.5, "x", null], "b": {"c": true}}')
  return {
    names = table.concat(names, ","),
    ndjson = st:read("big.ndjson"),
    made = st:read("made.csv"),
    enc = ferry.json.encode({ list = { 1, 2 }, ok = true }),
    dec = decoded.a[2] + #decoded.a,
    dec_c = decoded.b.c,
    cols = table.concat(ferry.csv.reader("x;y\n", { delimiter = ";" }):columns(), "+"),
  }
"#,
    );
    assert_eq!(s["names"], "ann,bob,cy");
    assert_eq!(
        s["ndjson"],
        "{\"id\":2,\"name\":\"bob\"}\n{\"id\":3,\"name\":\"cy\"}\n"
    );
    assert_eq!(s["made"], "a,b\n1,x\n2,\n");
    assert_eq!(s["enc"], r#"{"list":[1,2],"ok":true}"#);
    assert_eq!(s["dec"], 5.5);
    assert_eq!(s["dec_c"], true);
    assert_eq!(s["cols"], "x+y");
}

#[test]
fn bad_input_errors_name_the_file_line_and_field() {
    let p = Project::with_config("");
    std::fs::write(p.at("inbox/orders.csv"), "id,price\n1,2.5\n2,abc\n").unwrap();
    std::fs::write(p.at("inbox/bad.json"), "[\n{\"a\": 1},\n{\"a\": }\n]").unwrap();
    std::fs::write(
        p.at("inbox/bad.sql"),
        "CREATE TABLE t (x);\nINSERT INTO t VALUES (1);\nINSERT INTO t VALUS (2);\n",
    )
    .unwrap();
    std::fs::write(p.at("inbox/not.xlsx"), "just text").unwrap();
    std::fs::write(p.at("inbox/not.zip"), "PK\x03\x04 not really").unwrap();
    let cases = [
        (
            r#"ferry.pipe(ferry.csv.reader(ferry.store("inbox"):open("orders.csv"), { types = { price = "float" } }), ferry.json.writer(ferry.store("data"):create("o.json")))"#,
            &[
                "orders.csv: line 3, field 2 (price)",
                "expected a number",
                "\"abc\"",
            ][..],
        ),
        (
            r#"for _ in ferry.json.reader(ferry.store("inbox"):open("bad.json")):rows() do end"#,
            &["bad.json: line 3, column", "invalid JSON"][..],
        ),
        (
            r#"ferry.sqlite.open("data/x.db"):run(ferry.store("inbox"):open("bad.sql"))"#,
            &["bad.sql: line 3, column", "syntax error"][..],
        ),
        (
            r#"ferry.xlsx.reader(ferry.store("inbox"):open("not.xlsx"))"#,
            &["not.xlsx", "not a readable xlsx workbook"][..],
        ),
        (
            r#"ferry.zip.reader(ferry.store("inbox"):open("not.zip"))"#,
            &["not.zip", "corrupt or unsupported zip"][..],
        ),
        (
            r#"ferry.csv.reader("a\n1\n", { delimeter = ";" })"#,
            &["ferry.csv.reader: unknown option `delimeter`"][..],
        ),
    ];
    for (i, (body, wants)) in cases.iter().enumerate() {
        let err = run_err(&p, &format!("bad{i}"), body);
        for want in *wants {
            assert!(err.contains(want), "case {i}: {err:?} lacks {want:?}");
        }
        assert!(
            err.contains(&format!("bad{i}.lua")),
            "case {i}: no script line in {err:?}"
        );
    }
    // A failed pipe leaves no half-written output.
    assert!(!p.at("data/o.json").exists());
}

#[test]
fn continue_policy_counts_and_reports_bad_rows() {
    let p = Project::with_config("");
    std::fs::write(
        p.at("inbox/orders.csv"),
        "id,qty\n1,5\n2,five\n3,7,extra\n4,8\n",
    )
    .unwrap();
    let file = p.root_script(
        "cont",
        &job(r#"
  local db = ferry.sqlite.open("data/c.db")
  local src = ferry.csv.reader(ferry.store("inbox"):open("orders.csv"), { types = { id = "integer", qty = "integer" }, on_error = "continue" })
  local inserted = db:insert("orders", src, { create = true })
  local e = src:errors()
  return { inserted = inserted, count = e.count, first_line = e.first[1].line }
"#),
    );
    let run = p.run_file(&file);
    assert!(run.succeeded(), "{}", run.text());
    let s = &run.record["summary"];
    assert_eq!(s["inserted"], 2);
    assert_eq!(s["count"], 2);
    assert_eq!(s["first_line"], 3);
    // Keyed by the reader's name: the store URL of the file.
    let (key, skipped) = s["skipped_rows"]
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("skipped_rows in the summary");
    assert!(key.ends_with("inbox/orders.csv"), "{key}");
    assert_eq!(skipped["count"], 2, "{s}");
    assert_eq!(skipped["first"][0]["line"], 3);
    assert_eq!(skipped["first"][1]["line"], 4);
    assert!(
        skipped["first"][0]["error"]
            .as_str()
            .unwrap()
            .contains("expected an integer")
    );
    let log = run.text();
    assert!(log.contains("skipped 2 bad rows"), "{log}");
    assert!(log.contains("line 4"), "{log}");
}

#[test]
fn sqlite_paths_are_confined() {
    let p = Project::with_config("");
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.at("data/link")).unwrap();
    let cases = [
        ("../escape.db", "`..`"),
        ("/tmp/ferry-elsewhere.db", "outside the allowed roots"),
        ("data/link/x.db", "outside the allowed roots"),
        ("data/ferry.db", "belongs to ferry"),
        ("scripts/x.db", "outside the allowed roots"),
    ];
    for (i, (path, want)) in cases.iter().enumerate() {
        let err = run_err(
            &p,
            &format!("conf{i}"),
            &format!("ferry.sqlite.open({path:?})"),
        );
        assert!(err.contains(want), "{path}: {err}");
        assert!(
            err.contains(path.trim_start_matches("../")),
            "{path}: {err}"
        );
    }
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    let s = run_ok(
        &p,
        "inside",
        r#"local db = ferry.sqlite.open("inbox/sub/ok.db"); db:exec("CREATE TABLE t (x)"); return { ok = true }"#,
    );
    assert_eq!(s["ok"], true);
    assert!(p.at("inbox/sub/ok.db").is_file());
}

#[test]
fn transactions_roll_back_and_conflicts_follow_the_policy() {
    let p = Project::with_config("");
    let s = run_ok(
        &p,
        "tx",
        r#"
  local db = ferry.sqlite.open("data/tx.db")
  db:exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
  db:exec("INSERT INTO t VALUES (?, ?)", { 1, "one" })
  local ok, err = pcall(db.transaction, db, function(d)
    d:exec("INSERT INTO t VALUES (2, 'two')")
    error("boom")
  end)
  local after = db:query("SELECT count(*) AS n FROM t"):read(1)[1].n
  local r = db:transaction(function(d) d:exec("INSERT INTO t VALUES (3, 'three')"); return "done" end)
  local src = function() return ferry.csv.reader("id,v\n1,uno\n4,four\n", { types = { id = "integer" } }) end
  local ins, skip = db:insert("t", src(), { on_conflict = "skip" })
  local ok2, err2 = pcall(db.insert, db, "t", src())
  local ins3 = db:insert("t", src(), { on_conflict = "replace" })
  local v1 = db:query("SELECT v FROM t WHERE id = :id", { id = 1 }):read(1)[1].v
  return { rolled_back = (not ok) and after == 1 and tostring(err):find("boom") ~= nil, r = r,
    ins = ins, skip = skip, fail = (not ok2) and tostring(err2), ins3 = ins3, v1 = v1 }
"#,
    );
    assert_eq!(s["rolled_back"], true, "{s}");
    assert_eq!(s["r"], "done");
    assert_eq!((s["ins"].as_i64(), s["skip"].as_i64()), (Some(1), Some(1)));
    let fail = s["fail"].as_str().unwrap();
    assert!(fail.contains("row 1") && fail.contains("UNIQUE"), "{fail}");
    assert_eq!(s["ins3"], 2);
    assert_eq!(s["v1"], "uno");
}

#[test]
fn zip_slip_and_bombs_are_refused_from_scripts() {
    let p = Project::with_config("");
    let mut raw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    raw.start_file("../../escape.sh", zip::write::SimpleFileOptions::default())
        .unwrap();
    raw.write_all(b"echo pwned").unwrap();
    std::fs::write(p.at("inbox/slip.zip"), raw.finish().unwrap().into_inner()).unwrap();
    let mut raw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    raw.start_file(
        "zeros",
        zip::write::SimpleFileOptions::default().compression_level(Some(9)),
    )
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..8 {
        raw.write_all(&chunk).unwrap();
    }
    std::fs::write(p.at("inbox/bomb.zip"), raw.finish().unwrap().into_inner()).unwrap();

    // (script, body, parts of the error)
    #[rustfmt::skip]
    let refused: &[(&str, &str, &[&str])] = &[
        ("slip", r#"ferry.zip.reader(ferry.store("inbox"):open("slip.zip"))"#, &["../../escape.sh", "refused"]),
        ("slipw", r#"ferry.zip.writer(ferry.store("data"):create("z.zip")):add("/etc/x", "y")"#, &["absolute path"]),
        // 8 MiB of zeros deflate about 1000:1: refused by the ratio limit by default.
        ("bomb_ratio", r#"ferry.zip.reader(ferry.store("inbox"):open("bomb.zip"))"#, &["entry \"zeros\" inflates", "max_ratio"]),
        ("bomb", r#"ferry.zip.reader(ferry.store("inbox"):open("bomb.zip"), { max_size = "4MiB", max_ratio = 2000 })"#, &["max_size"]),
    ];
    for (name, body, wants) in refused {
        let err = run_err(&p, name, body);
        assert!(wants.iter().all(|w| err.contains(w)), "{name}: {err}");
    }
    let s = run_ok(
        &p,
        "bomb_ok",
        r#"local z = ferry.zip.reader(ferry.store("inbox"):open("bomb.zip"), { max_ratio = 2000 }); return { n = z:extract("zeros", ferry.store("data"):create("zeros")) }"#,
    );
    assert_eq!(s["n"], 8 << 20);
    assert!(!p.at("escape.sh").exists());
}

/// The map's rows cross into Lua and back through the C API (`src/lua/row_batch.rs`), keeping
/// unchanged values as they were: every kind of map must write exactly what the same map gives
/// through `src:read` and `sink:write` (the safe conversions), and rows kept past the call stay
/// whole tables.
#[test]
fn pipe_map_writes_what_the_safe_conversions_write() {
    let p = Project::with_config("");
    let s = run_ok(
        &p,
        "map_exact",
        r#"
  local db = ferry.sqlite.open("data/mx.db")
  fixture(db)
  local COLS = { "id", "i", "f", "t", "b", "created_at" }
  local kept = {}
  local maps = {
    same = function(rows) return rows end,
    edit = function(rows)
      for _, r in ipairs(rows) do
        kept[#kept + 1] = r
        if r.i then r.i = r.i // 2 end
        r.f = nil
        r.t = (r.t or "") .. "!"
        r.created_at = r.created_at and r.created_at + 0.5
        r.b = r.b
      end
      return rows
    end,
    mixed = function(rows)
      local out = {}
      for i = #rows, 1, -1 do out[#out + 1] = rows[i] end
      out[#out + 1] = rows[1]
      out[#out + 1] = { 99, 7, 2.5, "pos", "\255", true }
      out[#out + 1] = { id = 100, t = "new", i = 1.0 }
      rows[2].t = 42
      if rows[3] then rows[3][1] = 77 end
      return out
    end,
    drop = function(rows)
      for i, r in ipairs(rows) do if r.id % 2 == 0 then rows[i] = false end end
      return rows
    end,
  }
  local out = {}
  for name, map in pairs(maps) do
    local n = ferry.pipe(db:query("SELECT * FROM src"), db:writer("p_" .. name, { create = true }),
      { batch = 3, map = map })
    local src = db:query("SELECT * FROM src")
    local sink = db:writer("r_" .. name, { create = true, columns = COLS })
    local m = 0
    while true do
      local rows = src:read(3)
      if not rows then break end
      local mapped = map(rows)
      for i = 1, math.max(#mapped, #rows) do
        if mapped[i] then sink:write(mapped[i]); m = m + 1 end
      end
    end
    sink:close()
    out[name] = { n = n, m = m, same = fingerprint(db, "p_" .. name) == fingerprint(db, "r_" .. name),
                  print = fingerprint(db, "p_" .. name) }
  end
  out.kept = #kept .. " " .. kept[1].t .. " " .. getmetatable(kept[1]).columns[4]
  return out
"#,
    );
    for name in ["same", "edit", "mixed", "drop"] {
        assert_eq!(s[name]["same"], true, "{name}: {}", s[name]);
        assert_eq!(s[name]["n"], s[name]["m"], "{name}: {}", s[name]);
    }
    assert_eq!(s["same"]["n"], 5);
    assert_eq!(s["mixed"]["n"], (3 + 1 + 2) + (2 + 1 + 2));
    assert_eq!(s["drop"]["n"], 3);
    assert_eq!(s["kept"], "10 plain! t", "{s}");
}

#[test]
fn pipe_map_refuses_values_a_row_cannot_hold() {
    let p = Project::with_config("");
    let body = |returned: &str| {
        format!(
            r#"
  local db = ferry.sqlite.open("data/bad_" .. ctx.run_id .. ".db")
  fixture(db)
  ferry.pipe(db:query("SELECT * FROM src"), db:writer("out", {{ create = true }}), {{ map = function(rows)
    {returned}
  end }})
"#
        )
    };
    let e = run_err(&p, "bad_field", &body("rows[2].t = {} return rows"));
    assert!(e.contains("column `t`: a table cannot be stored in a row; expected nil, a boolean, a number or a string"), "{e}");
    let e = run_err(&p, "bad_entry", &body("rows[3] = true return rows"));
    assert!(
        e.contains("ferry.pipe: map returned a boolean at position 3; expected a row table or nil"),
        "{e}"
    );
    let e = run_err(&p, "bad_new_row", &body("return { { id = print } }"));
    assert!(
        e.contains("column `id`: a function cannot be stored in a row"),
        "{e}"
    );
}
