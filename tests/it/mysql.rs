//! `ferry.mysql` through the real binary (`ferry run FILE.lua`) against a real MariaDB server:
//! every mapped type through every format and both insert paths, a million rows each way,
//! credentials kept out of errors, cancellation that stops the statement on the server, failed
//! imports that leave the table as it was, the `LOAD DATA` fallback, TLS and bad input.

use crate::common;

use std::time::Duration;

use common::mysql::{MysqlServer, PASSWORD, dead_port};
use common::{Project, SIGINT, signal, wait_for};

/// Lua helpers: `connect()` to the test database with the password from the secret.
const PRELUDE: &str = r#"
local URL = "__URL__"
local function connect(opts)
  opts = opts or {}
  opts.password = opts.password or ctx_secret("mysql_password")
  return ferry.mysql.connect(URL, opts)
end
"#;

/// A project whose runs get the password as the `mysql_password` secret.
fn project() -> Project {
    let mut p = Project::with_config("");
    p.set_env("FERRY_SECRET_MYSQL_PASSWORD", PASSWORD);
    p
}

fn job(url: &str, body: &str) -> String {
    format!(
        "local ctx_secret\n{}\nreturn {{ run = function(ctx)\nctx_secret = ctx.secret\n{body}\nend }}\n",
        PRELUDE.replace("__URL__", url)
    )
}

fn run_ok(p: &Project, url: &str, name: &str, body: &str) -> serde_json::Value {
    let file = p.root_script(name, &job(url, body));
    let run = p.run_file(&file);
    assert!(
        run.succeeded(),
        "{name} failed: {}\n{}",
        run.error(),
        run.text()
    );
    assert!(
        !run.text().contains(PASSWORD),
        "the password leaked:\n{}",
        run.text()
    );
    run.record["summary"].clone()
}

const TYPES_TABLE: &str = "CREATE TABLE src (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED, flag BOOL, dec1 DECIMAL(30,10), f FLOAT, d DOUBLE,
  c CHAR(3), vc VARCHAR(200), tx TEXT, bl BLOB, bn VARBINARY(16), dt DATE, dtm DATETIME(6),
  ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(2), yr YEAR, js JSON, en ENUM('a','b')
) ENGINE=InnoDB";

const TYPES_ROWS: &str = r#"INSERT INTO src VALUES
(1, -128, 255, -32768, -8388608, -2147483648, 4294967295, -9223372036854775808,
 18446744073709551615, TRUE, '12345678901234567890.0123456789', 0.1, 0.1, 'abc',
 'quote " comma , tab \t newline \n back \\ ünïcødé 🚀 \'single\'', 'long text', x'00ff0a5c09',
 x'deadbeef', '2024-02-29', '2024-02-29 23:59:59.123456', '2038-01-19 03:14:07.999',
 '-838:59:59.99', 2155, '{"a": [1, 2.5, "x"], "b": null}', 'b'),
(2, 127, 0, 32767, 8388607, 2147483647, 0, 9223372036854775807, 9223372036854775808, FALSE,
 '-0.0000000001', -3.4e38, -1.7976931348623157e308, 'x', 'plain', 'x', x'01', x'00', '1000-01-01',
 '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000', '00:00:00.00', 1901, '[]', 'a'),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"#;

/// The types a text format needs to read the table back.
const TYPES_LUA: &str = r#"{ id = "integer", ti = "integer", tu = "integer", si = "integer", mi = "integer",
  i = "integer", iu = "integer", bi = "integer", flag = "boolean", f = "float", d = "float",
  bl = "bytes", bn = "bytes", yr = "integer" }"#;

#[test]
fn every_type_round_trips_through_every_format_and_both_insert_paths() {
    let server = MysqlServer::shared();
    let db = server.database("types");
    server.admin(&format!("USE types; {TYPES_TABLE}; {TYPES_ROWS}"));
    let p = project();
    let s = run_ok(
        &p,
        &server.url(&db),
        "types",
        &format!(
            r#"
  local db = connect()
  local st = ferry.store("data")
  local types = {TYPES_LUA}
  local out = {{}}
  -- What a query yields, as Lua sees it.
  for row in db:query("SELECT * FROM src WHERE id = 1"):rows() do
    out.row1 = {{ bu = row.bu, bi = row.bi, flag = row.flag, dec1 = row.dec1, f = row.f, dtm = row.dtm,
      ts = row.ts, tm = row.tm, js = row.js, bl = #row.bl, yr = row.yr }}
  end
  local function check(name, writer, reader, wopts, ropts)
    local n = ferry.pipe(db:query("SELECT * FROM src ORDER BY id"), writer(st:create("rt." .. name), wopts))
    for _, path in ipairs({{ "load_data", "insert" }}) do
      local t = "dst_" .. name .. "_" .. path
      db:exec("CREATE TABLE " .. t .. " LIKE src")
      local o = {{ types = types }}
      for k, v in pairs(ropts or {{}}) do o[k] = v end
      local inserted, skipped, method = db:insert(t, reader(st:open("rt." .. name), o), {{ bulk = path }})
      out[name .. "_" .. path] = {{ rows = n, inserted = inserted, method = method }}
    end
  end
  check("csv", ferry.csv.writer, ferry.csv.reader, {{ null = "\\N" }}, {{ null = "\\N" }})
  check("json", ferry.json.writer, ferry.json.reader)
  check("ndjson", ferry.ndjson.writer, ferry.ndjson.reader)
  check("xlsx", ferry.xlsx.writer, ferry.xlsx.reader)
  -- A writer fed by ferry.pipe straight from a query of another connection (LOAD DATA, and
  -- multi-row INSERTs), and one written row by row from Lua.
  local other = connect()
  for _, t in ipairs({{ "dst_pipe", "dst_pipe_ins", "dst_write" }}) do db:exec("CREATE TABLE " .. t .. " LIKE src") end
  out.pipe = ferry.pipe(other:query("SELECT * FROM src ORDER BY id"), db:writer("dst_pipe"))
  out.pipe_ins = ferry.pipe(other:query("SELECT * FROM src ORDER BY id"), db:writer("dst_pipe_ins", {{ bulk = "insert" }}))
  local w = db:writer("dst_write")
  for row in other:query("SELECT * FROM src ORDER BY id"):rows() do w:write(row) end
  w:close()
  return out
"#
        ),
    );
    let r1 = &s["row1"];
    assert_eq!(r1["bu"], "18446744073709551615", "{s}");
    assert_eq!(r1["bi"], i64::MIN, "{s}");
    assert_eq!(r1["flag"], true, "{s}");
    assert_eq!(r1["dec1"], "12345678901234567890.0123456789", "{s}");
    assert_eq!(r1["f"], 0.1, "{s}");
    assert_eq!(r1["dtm"], "2024-02-29 23:59:59.123456", "{s}");
    assert_eq!(r1["ts"], "2038-01-19 03:14:07.999", "{s}");
    assert_eq!(r1["tm"], "-838:59:59.99", "{s}");
    assert_eq!(r1["bl"], 5, "{s}");
    assert_eq!(r1["yr"], 2155, "{s}");
    let want = server.rows(&db, "SELECT * FROM src ORDER BY id");
    assert_eq!(want.len(), 3);
    assert_eq!(s["pipe"], 3, "{s}");
    assert_eq!(s["pipe_ins"], 3, "{s}");
    let mut tables = vec![
        "dst_pipe".to_string(),
        "dst_pipe_ins".to_string(),
        "dst_write".to_string(),
    ];
    for f in ["csv", "json", "ndjson", "xlsx"] {
        for path in ["load_data", "insert"] {
            let key = format!("{f}_{path}");
            assert_eq!(s[&key]["rows"], 3, "{key}: {s}");
            assert_eq!(s[&key]["inserted"], 3, "{key}: {s}");
            assert_eq!(s[&key]["method"], path, "{key}: {s}");
            tables.push(format!("dst_{key}"));
        }
    }
    for t in tables {
        let got = server.rows(&db, &format!("SELECT * FROM {t} ORDER BY id"));
        assert_eq!(got, want, "{t} differs from src");
    }
}

#[test]
fn queries_statements_and_transactions() {
    let server = MysqlServer::shared();
    let db = server.database("stmts");
    let p = project();
    let s = run_ok(
        &p,
        &server.url(&db),
        "stmts",
        r#"
  local db = connect()
  db:exec("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20), n INT)")
  local changed, id = db:exec("INSERT INTO t (name, n) VALUES (?, ?), (?, ?)", { "a", 1, "b", nil })
  local out = { changed = changed, id = id }
  local names = {}
  for row in db:query("SELECT name FROM t WHERE id >= :min AND name <> :skip ORDER BY id", { min = 1, skip = "zz" }):rows() do
    names[#names + 1] = row.name
  end
  out.names = table.concat(names, ",")
  -- Committed when the function returns, rolled back when it fails; nested ones are savepoints.
  db:transaction(function(tx)
    tx:exec("INSERT INTO t (name) VALUES ('c')")
    pcall(tx.transaction, tx, function(inner)
      inner:exec("INSERT INTO t (name) VALUES ('nested')")
      error("undo the nested one")
    end)
  end)
  local ok, err = pcall(db.transaction, db, function(tx)
    tx:exec("INSERT INTO t (name) VALUES ('d')")
    tx:exec("INSERT INTO nope VALUES (1)")
  end)
  out.tx_err = err.kind
  for row in db:query("SELECT GROUP_CONCAT(name ORDER BY id) AS names, COUNT(*) AS n FROM t"):rows() do
    out.after = row.names
    out.count = row.n
  end
  -- Another statement on the connection discards the rest of a query's rows, and says so.
  local q = db:query("SELECT id FROM t ORDER BY id")
  local first = q:read(1)
  db:exec("DO 1")
  local ok2, err2 = pcall(q.read, q, 1)
  out.discarded = not ok2 and tostring(err2):find("discarded") ~= nil
  -- A second connection streams beside the first.
  local other = connect()
  local n = 0
  for row in db:query("SELECT id FROM t ORDER BY id"):rows() do
    other:exec("UPDATE t SET n = ? WHERE id = ?", { row.id * 10, row.id })
    n = n + 1
  end
  out.updated = n
  out.id_ok = first ~= nil
  out.conn = type(db:connection_id())
  -- A decimal rounded to its column's scale is a note, not an error, on both insert paths.
  db:exec("CREATE TABLE money (x DECIMAL(10,2))")
  local a = db:insert("money", ferry.csv.reader("x\n1.234\n"))
  local b = db:insert("money", ferry.csv.reader("x\n1.235\n"), { bulk = "insert" })
  for row in db:query("SELECT GROUP_CONCAT(x ORDER BY x) AS xs FROM money"):rows() do out.money = row.xs end
  return out
"#,
    );
    assert_eq!(s["changed"], 2, "{s}");
    assert_eq!(s["id"], 1, "{s}");
    assert_eq!(s["names"], "a,b", "{s}");
    assert_eq!(s["tx_err"], "not_found", "{s}");
    assert_eq!(s["after"], "a,b,c", "{s}");
    assert_eq!(s["count"], 3, "{s}");
    assert_eq!(s["discarded"], true, "{s}");
    assert_eq!(s["updated"], 3, "{s}");
    assert_eq!(s["conn"], "number", "{s}");
    assert_eq!(s["money"], "1.23,1.24", "{s}");
}

/// `db:run(script)` as on SQLite and PostgreSQL: the statements in one transaction, the
/// script's own `BEGIN`/`COMMIT` skipped, an error naming the statement's line and leaving
/// the table as it was.
#[test]
fn a_sql_script_runs_in_one_transaction() {
    let server = MysqlServer::shared();
    let db = server.database("script");
    let p = project();
    let s = run_ok(
        &p,
        &server.url(&db),
        "script",
        r#"
  local db = connect()
  db:exec("CREATE TABLE s (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB")
  local r = db:run("START TRANSACTION;\nINSERT INTO s VALUES (1, 'a;b'), (2, 'c');\nUPDATE s SET name = 'C' WHERE id = 2;\nCOMMIT;\n")
  local ok, err = pcall(db.run, db, "INSERT INTO s VALUES (3, 'd');\n\nINSERT INTO s VALUES (1, 'dup');\n")
  local names = {}
  for row in db:query("SELECT name FROM s ORDER BY id"):rows() do names[#names + 1] = row.name end
  local sql = db:run(ferry.sql.reader("INSERT INTO s VALUES (4, 'e');", { name = "more.sql" }))
  return { statements = r.statements, changes = r.changes, ok = ok, kind = err.kind,
    message = tostring(err), names = table.concat(names, ","), more = sql.changes }
"#,
    );
    assert_eq!(s["statements"], 2, "{s}");
    assert_eq!(s["changes"], 3, "{s}");
    assert_eq!(s["ok"], false, "{s}");
    assert_eq!(s["kind"], "conflict", "{s}");
    assert!(s["message"].as_str().unwrap().contains("line 3"), "{s}");
    assert_eq!(s["names"], "a;b,C", "{s}");
    assert_eq!(s["more"], 1, "{s}");
}

#[test]
fn a_million_rows_out_to_csv_and_back_in() {
    let server = MysqlServer::shared();
    let db = server.database("big");
    server.admin(
        "USE big; CREATE TABLE src (id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(12,2), at DATETIME);
         INSERT INTO src SELECT seq, CONCAT('name-', seq), seq / 100, '2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_1000000;
         CREATE TABLE dst LIKE src;",
    );
    let p = project();
    let s = run_ok(
        &p,
        &server.url(&db),
        "big",
        r#"
  local db = connect()
  local st = ferry.store("data")
  local n = ferry.pipe(db:query("SELECT * FROM src"), ferry.csv.writer(st:create("big.csv")))
  local inserted, skipped, method = db:insert("dst", ferry.csv.reader(st:open("big.csv")))
  return { exported = n, inserted = inserted, method = method }
"#,
    );
    assert_eq!(s["exported"], 1_000_000, "{s}");
    assert_eq!(s["inserted"], 1_000_000, "{s}");
    assert_eq!(s["method"], "load_data", "{s}");
    let sum = |t: &str| {
        server.rows(
            &db,
            &format!("SELECT COUNT(*), SUM(id), SUM(CRC32(CONCAT_WS('|', id, name, amount, at))) FROM {t}"),
        )
    };
    assert_eq!(sum("dst"), sum("src"));
}

#[test]
fn wrong_password_and_unreachable_host_are_clear_errors_without_the_secret() {
    let server = MysqlServer::shared();
    let p = project();
    let dead = dead_port();
    let s = run_ok(
        &p,
        &server.url("mysql"),
        "auth",
        &format!(
            r#"
  local out = {{}}
  local function try(name, f)
    local ok, err = pcall(f)
    out[name] = {{ ok = ok, kind = err and err.kind, message = err and err.message }}
  end
  try("wrong_password", function() return ferry.mysql.connect(URL, {{ password = "not-" .. ctx_secret("mysql_password") }}) end)
  try("password_in_url", function()
    return ferry.mysql.connect("mysql://ferry:wrong-" .. ctx_secret("mysql_password") .. "@127.0.0.1:{port}/mysql")
  end)
  try("unreachable", function() return ferry.mysql.connect("mysql://ferry:" .. ctx_secret("mysql_password") .. "@127.0.0.1:{dead}/x", {{ connect_timeout = "2s" }}) end)
  try("no_database", function() return connect({{ database = "nope" }}) end)
  try("tls_required_unverified_ok", function() return connect({{ ssl_mode = "required" }}) end)
  try("tls_unknown_ca", function() return connect({{ ssl_mode = "verify_ca" }}) end)
  try("read_timeout", function() return connect({{ timeout = "300ms" }}):exec("SELECT SLEEP(5) /* ferry-timeout-test */") end)
  return out
"#,
            port = server.port
        ),
    );
    for (case, kind, words) in [
        ("wrong_password", "denied", "Access denied"),
        ("password_in_url", "denied", "Access denied"),
        ("unreachable", "unreachable", "cannot connect"),
        ("no_database", "denied", "nope"),
        ("tls_unknown_ca", "denied", "TLS"),
    ] {
        let c = &s[case];
        assert_eq!(c["ok"], false, "{case}: {s}");
        assert_eq!(c["kind"], kind, "{case}: {s}");
        let m = c["message"].as_str().unwrap_or("");
        assert!(m.contains(words), "{case}: {m}");
        assert!(
            m.contains("mysql://ferry@127.0.0.1:"),
            "{case} names the server: {m}"
        );
        assert!(
            !m.contains(PASSWORD) && !m.contains("wrong-"),
            "{case}: {m}"
        );
    }
    assert_eq!(s["tls_required_unverified_ok"]["ok"], true, "{s}");
    assert_eq!(s["read_timeout"]["kind"], "timeout", "{s}");
    // The statement that timed out was stopped on the server too.
    let running = "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE '%ferry-timeout-test%' AND info NOT LIKE '%processlist%'";
    wait_for(
        "the timed-out query to stop",
        Duration::from_secs(10),
        || (server.admin(running).trim() == "0").then_some(()),
    );
}

#[test]
fn tls_with_the_servers_ca_verifies_its_identity() {
    let server = MysqlServer::shared();
    let p = project();
    std::fs::copy(&server.ca, p.at("data/ca.crt")).unwrap();
    let s = run_ok(
        &p,
        &server.url("mysql"),
        "tls",
        r#"
  local function cipher(db)
    for row in db:query("SHOW SESSION STATUS LIKE 'Ssl_cipher'"):rows() do return row.Value end
  end
  local verified = connect({ ssl_mode = "verify_identity", ca_file = "data/ca.crt" })
  local plain = connect({ ssl_mode = "disabled" })
  local ok, err = pcall(connect, { ssl_mode = "verify_identity", ca_file = "/etc/passwd" })
  return { verified = cipher(verified), plain = cipher(plain), outside = err.kind }
"#,
    );
    assert!(s["verified"].as_str().is_some_and(|c| !c.is_empty()), "{s}");
    assert_eq!(s["plain"], "", "{s}");
    assert_eq!(s["outside"], "denied", "{s}");
}

#[test]
fn cancel_during_a_long_query_stops_it_on_the_server() {
    let server = MysqlServer::shared();
    let p = project();
    let file = p.root_script(
        "sleepy",
        &job(
            &server.url("mysql"),
            r#"
  local db = connect()
  for row in db:query("SELECT SLEEP(30) AS s /* ferry-cancel-test */"):rows() do end
  return "slept"
"#,
        ),
    );
    let child = p.spawn_file(&file);
    let running = "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30)%ferry-cancel-test%'";
    wait_for(
        "the query to run on the server",
        Duration::from_secs(30),
        || (server.admin(running).trim() == "1").then_some(()),
    );
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().expect("ferry run");
    let run = Project::parse_run(out);
    assert_eq!(run.record["state"], "cancelled", "{}", run.text());
    // The statement is gone from the server, not left sleeping.
    wait_for(
        "the query to stop on the server",
        Duration::from_secs(10),
        || (server.admin(running).trim() == "0").then_some(()),
    );
}

#[test]
fn a_failed_import_leaves_the_table_as_it_was() {
    let server = MysqlServer::shared();
    let db = server.database("failing");
    server.admin(
        "USE failing; CREATE TABLE t (id INT PRIMARY KEY, small TINYINT NOT NULL, name VARCHAR(5)) ENGINE=InnoDB;
         INSERT INTO t VALUES (1, 1, 'one'), (2, 2, 'two');",
    );
    let before = server.rows(&db, "SELECT * FROM t ORDER BY id");
    let p = project();
    let s = run_ok(
        &p,
        &server.url(&db),
        "failing",
        r#"
  local db = connect()
  local out = {}
  local many = { "id,small,name" }
  for i = 10, 5000 do many[#many + 1] = i .. ",5,ok" end
  local body = table.concat(many, "\n")
  local cases = {
    out_of_range = body .. "\n5001,300,ok\n",
    too_long = body .. "\n5001,1,toolong\n",
    duplicate = body .. "\n1,1,dup\n",
    not_a_number = body .. "\n5001,abc,x\n",
  }
  for name, csv in pairs(cases) do
    for _, path in ipairs({ "load_data", "insert" }) do
      local ok, err = pcall(db.insert, db, "t", ferry.csv.reader(csv, { name = "in.csv" }), { bulk = path })
      out[name .. "_" .. path] = { ok = ok, kind = err and err.kind, message = err and err.message }
    end
  end
  -- Inside a script transaction: the insert's own rows go, the transaction's earlier work stays.
  db:transaction(function(tx)
    tx:exec("UPDATE t SET name = 'uno' WHERE id = 1")
    local ok = pcall(tx.insert, tx, "t", ferry.csv.reader(cases.duplicate))
    out.tx_insert_failed = not ok
  end)
  db:exec("UPDATE t SET name = 'one' WHERE id = 1")
  -- on_conflict: skip keeps the existing rows, overwrite replaces them.
  local csv = "id,small,name\n1,9,new\n3,3,three\n"
  local a, b, m = db:insert("t", ferry.csv.reader(csv), { on_conflict = "skip" })
  out.skip = { a, b, m }
  db:exec("DELETE FROM t WHERE id = 3")
  local a2, b2 = db:insert("t", ferry.csv.reader(csv), { on_conflict = "skip", bulk = "insert" })
  out.skip_insert = { a2, b2 }
  db:exec("DELETE FROM t WHERE id = 3")
  return out
"#,
    );
    for (case, kind, words) in [
        ("out_of_range", "data", "row 4992 from in.csv"),
        ("too_long", "data", "row 4992 from in.csv"),
        ("duplicate", "conflict", "Duplicate entry '1'"),
        ("not_a_number", "data", "row 4992 from in.csv"),
    ] {
        for path in ["load_data", "insert"] {
            let key = format!("{case}_{path}");
            let c = &s[&key];
            assert_eq!(c["ok"], false, "{key}: {s}");
            assert_eq!(c["kind"], kind, "{key}: {s}");
            let m = c["message"].as_str().unwrap_or("");
            assert!(m.contains(words), "{key}: {m}");
            if case != "duplicate" {
                assert!(
                    m.contains("small") || m.contains("name"),
                    "{key} names the column: {m}"
                );
            }
        }
    }
    assert_eq!(s["tx_insert_failed"], true, "{s}");
    assert_eq!(s["skip"], serde_json::json!([1, 1, "load_data"]), "{s}");
    assert_eq!(s["skip_insert"], serde_json::json!([1, 1]), "{s}");
    assert_eq!(server.rows(&db, "SELECT * FROM t ORDER BY id"), before);
}

#[test]
fn without_local_infile_the_insert_falls_back_to_multi_row_inserts() {
    let server = MysqlServer::start(&["--local-infile=0"]);
    server.admin("CREATE DATABASE nolocal; CREATE TABLE nolocal.t (id INT PRIMARY KEY, v TEXT)");
    let p = project();
    let file = p.root_script(
        "fallback",
        &job(
            &server.url("nolocal"),
            r#"
  local db = connect()
  local a, _, m = db:insert("t", ferry.csv.reader("id,v\n1,a\n2,b\n"))
  local ok, err = pcall(db.insert, db, "t", ferry.csv.reader("id,v\n3,c\n"), { bulk = "load_data" })
  return { inserted = a, method = m, strict = err.kind, message = err.message }
"#,
        ),
    );
    let run = p.run_file(&file);
    assert!(run.succeeded(), "{}\n{}", run.error(), run.text());
    let s = &run.record["summary"];
    assert_eq!(s["inserted"], 2, "{s}");
    assert_eq!(s["method"], "insert", "{s}");
    assert_eq!(s["strict"], "unsupported", "{s}");
    assert!(
        s["message"].as_str().unwrap_or("").contains("local_infile"),
        "{s}"
    );
    assert!(
        run.text()
            .contains("inserting with multi-row INSERTs instead"),
        "the fallback is logged:\n{}",
        run.text()
    );
}

#[test]
fn malformed_urls_options_and_parameters_are_clear_errors() {
    let server = MysqlServer::shared();
    let p = project();
    let s = run_ok(
        &p,
        &server.url("mysql"),
        "bad",
        r#"
  local out = {}
  local function try(name, f)
    local ok, err = pcall(f)
    out[name] = { kind = err and err.kind, message = err and tostring(err.message or err) }
  end
  try("scheme", function() return ferry.mysql.connect("postgres://h/db") end)
  try("not_a_url", function() return ferry.mysql.connect("nonsense") end)
  try("url_param", function() return ferry.mysql.connect("mysql://h/db?sslmode=bogus") end)
  try("unknown_param", function() return ferry.mysql.connect("mysql://h/db?colour=red") end)
  try("option", function() return ferry.mysql.connect(URL, { pasword = "x" }) end)
  try("timeout", function() return ferry.mysql.connect(URL, { timeout = "forever" }) end)
  try("socket", function() return ferry.mysql.connect("mysql://ferry@localhost/db?socket=/run/mysqld/mysqld.sock") end)
  local db = connect()
  try("syntax", function() return db:exec("SELEC 1") end)
  try("too_many", function() return db:exec("SELECT ?", { 1, 2 }) end)
  try("unknown_name", function() return db:query("SELECT :a", { b = 1 }) end)
  try("bulk", function() return db:insert("t", ferry.csv.reader("a\n1\n"), { bulk = "fast" }) end)
  try("closed", function() db:close(); return db:exec("SELECT 1") end)
  return out
"#,
    );
    for (case, kind, words) in [
        ("scheme", "invalid", "unsupported URL scheme `postgres`"),
        ("not_a_url", "invalid", "neither a mysql:// URL"),
        ("url_param", "invalid", "ssl-mode `bogus`"),
        ("unknown_param", "invalid", "URL parameter `colour`"),
        ("option", "invalid", "pasword"),
        ("timeout", "invalid", "timeout"),
        ("socket", "denied", "socket /run/mysqld/mysqld.sock"),
        ("syntax", "sql", "SELEC 1"),
        ("too_many", "invalid", "expects 1 parameters, 2 given"),
        ("unknown_name", "invalid", "no parameter :b"),
        ("bulk", "invalid", "option `bulk`"),
        ("closed", "invalid", "closed"),
    ] {
        let c = &s[case];
        assert_eq!(c["kind"], kind, "{case}: {s}");
        let m = c["message"].as_str().unwrap_or("");
        assert!(m.contains(words), "{case}: {m}");
    }
}

/// The shipped export and import plugins take a mysql:// URL or a database named in ferry.toml
/// (`password_secret`), with where/args (`?` placeholders), columns, order_by, headers,
/// timestamps, zip, the import ledger, conflict and error policies, and all-or-nothing imports:
/// a failed import into a table it created drops the table again, one into an existing table
/// leaves it as it was.
#[test]
fn export_and_import_plugins_take_a_mysql_url_or_a_named_database() {
    let server = MysqlServer::shared();
    let db = server.database("plugins");
    server.admin(
        "USE plugins; CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(20), amount DECIMAL(10,2),
           paid BOOL, created_at BIGINT) ENGINE=InnoDB;
         INSERT INTO orders SELECT seq, CONCAT('c', seq), seq * 1.5, seq % 2 = 0, 1700000000 + seq * 3600
           FROM seq_1_to_100;
         CREATE TABLE orders_copy LIKE orders; CREATE TABLE orders_sql LIKE orders;",
    );
    let mut p = Project::with_shipped_files();
    p.write(
        "ferry.toml",
        &format!(
            "[databases.shop]\nurl = \"{}\"\npassword_secret = \"MYSQL_PASSWORD\"\n",
            server.url(&db)
        ),
    );
    std::fs::create_dir_all(p.at("data")).unwrap();
    p.set_env("FERRY_SECRET_MYSQL_PASSWORD", PASSWORD);
    p.write(
        "data/in/dup.csv",
        "id,customer,amount,paid,created_at\n500,x,1,1,1\n12,y,2,0,2\n",
    );
    p.write("data/in/bad.csv", "id,customer\n1,a\n2,b\nthree,c\n4,d\n");
    let url = server.url_with_password(&db);
    let file = p.root_script(
        "plugins",
        &format!(
            r#"return {{ run = function(ctx)
  local export, import = require "export", require "import"
  local function try(f, ...)
    local ok, e = pcall(f, ctx, ...)
    return ok and "ok" or {{ kind = e.kind, message = tostring(e.message or e) }}
  end
  local a = export.run(ctx, {{ db = "shop", table = "orders", where = "paid = ? AND id > ?",
    args = {{ true, 10 }}, columns = {{ "id", "customer", "amount" }}, order_by = {{ "-id" }},
    headers = {{ "ID", "Customer", "Amount" }}, store = "data/out", path = "paid_h.csv" }})
  local a2 = export.run(ctx, {{ db = "shop", table = "orders", mode = "part", where = "paid = ? AND id > ?",
    args = {{ true, 10 }}, store = "data/out", path = "paid.csv" }})
  local b = export.run(ctx, {{ db = "{url}", query = "SELECT * FROM orders WHERE id <= ? ORDER BY id",
    args = {{ 50 }}, format = "ndjson", zip = "o.zip", path = "o.ndjson", store = "data/out",
    timestamp_columns = {{ "created_at" }} }})
  -- CSV is text: a BOOL (TINYINT(1)) column of the table reads "true" as a boolean.
  local c = import.run(ctx, {{ db = "shop", table = "orders_copy", file = "data/out/paid.csv" }})
  local d = import.run(ctx, {{ db = "{url}", table = "orders_copy", file = "data/out/paid.csv" }})
  local e = try(import.run, {{ db = "shop", table = "orders_copy", file = "data/in/dup.csv" }})
  local s = import.run(ctx, {{ db = "shop", table = "orders_copy", file = "data/in/dup.csv", on_conflict = "skip" }})
  local w = import.run(ctx, {{ db = "shop", table = "orders_copy", file = "data/in/dup.csv", on_conflict = "overwrite",
    reimport = true }})
  local z = import.run(ctx, {{ db = "shop", table = "orders_new", file = "data/out/o.zip" }})
  local t = export.run(ctx, {{ db = "shop", table = "orders", since = "2023-11-15T13:13:20+05:00",
    ["until"] = "2023-11-15T18:13:20Z", time_column = "created_at", format = "json", store = "data/out" }})
  -- SQL out and back in (standard SQL: "quoted" names).
  local q = export.run(ctx, {{ db = "shop", table = "orders", format = "sql", sql_table = "orders_sql",
    where = "id <= ?", args = {{ 5 }}, store = "data/out", path = "o.sql" }})
  local qi = import.run(ctx, {{ db = "shop", file = "data/out/o.sql" }})
  -- A missing table is created before the transaction, and dropped when the import fails.
  local f = try(import.run, {{ db = "shop", table = "bad_new", file = "data/in/bad.csv", types = {{ id = "integer" }} }})
  -- A zip is one file: a bad entry drops the tables made for the good ones too.
  local zw = ferry.zip.writer(ferry.store("data/in"):create("two.zip"))
  zw:add("za.csv", "id\n1\n2\n")
  zw:add("zb.csv", "id\n3\nx\n")
  zw:close()
  local fz = try(import.run, {{ db = "shop", file = "data/in/two.zip", types = {{ id = "integer" }} }})
  local g = import.run(ctx, {{ db = "shop", table = "bad_kept", file = "data/in/bad.csv", types = {{ id = "integer" }},
    on_error = "continue" }})
  return {{ a = a.rows, a2 = a2.rows, b = b.rows, c = c.inserted, d = d.already_imported ~= nil, e = e,
            s_ins = s.inserted, s_skip = s.skipped, z = z.inserted, w = w.already_imported == nil, t = t.rows, f = f, fz = fz, q = q.rows, qi = qi.changes, g_ins = g.inserted, g_bad = g.bad_rows }}
end }}"#
        ),
    );
    let run = p.run_file(&file);
    let out = run.text();
    assert!(run.succeeded(), "{}\n{out}", run.error());
    let s = &run.record["summary"];
    assert_eq!(
        (s["a"].as_i64(), s["a2"].as_i64()),
        (Some(45), Some(45)),
        "{s}"
    );
    assert_eq!(s["b"], 50, "{s}");
    assert_eq!(s["c"], 45, "{s}");
    assert_eq!(s["d"], true, "{s}");
    assert_eq!(s["e"]["kind"], "conflict", "{s}");
    assert!(
        s["e"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Duplicate entry '12'"),
        "{s}"
    );
    assert_eq!(
        (s["s_ins"].as_i64(), s["s_skip"].as_i64()),
        (Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(s["z"], 50, "{s}");
    assert_eq!(s["t"], 10, "{s}");
    assert_eq!(s["w"], true, "{s}");
    assert_eq!(
        server.rows(&db, "SELECT customer, paid FROM orders_copy WHERE id = 12"),
        ["y\t0"]
    );
    assert_eq!(
        (s["q"].as_i64(), s["qi"].as_i64()),
        (Some(5), Some(5)),
        "{s}"
    );
    assert_eq!(
        server.rows(&db, "SELECT * FROM orders_sql WHERE id = 2"),
        server.rows(&db, "SELECT * FROM orders WHERE id = 2")
    );
    assert_eq!(s["f"]["kind"], "data", "{s}");
    assert!(
        s["f"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("line 4, field 1 (id)"),
        "{s}"
    );
    assert_eq!(s["fz"]["kind"], "data", "{s}");
    assert!(
        s["fz"]["message"].as_str().unwrap_or("").contains("zb.csv"),
        "{s}"
    );
    assert!(
        out.contains("dropped table za") && out.contains("dropped table zb"),
        "{out}"
    );
    assert_eq!(
        (s["g_ins"].as_i64(), s["g_bad"].as_i64()),
        (Some(3), Some(1)),
        "{s}"
    );
    let csv = std::fs::read_to_string(p.at("data/out/paid_h.csv")).unwrap();
    assert!(
        csv.starts_with("ID,Customer,Amount\n100,c100,150.00\n98,c98,147.00\n"),
        "{csv}"
    );
    assert_eq!(server.rows(&db, "SELECT count(*) FROM orders_copy"), ["46"]);
    assert_eq!(
        server.rows(&db, "SELECT created_at FROM orders_new WHERE id = 1"),
        ["2023-11-14T23:13:20Z"]
    );
    // The failed import dropped the table it created; the ledger holds the committed files only.
    assert_eq!(
        server.rows(
            &db,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'plugins' ORDER BY BINARY table_name"
        ),
        [
            "_ferry_imports",
            "bad_kept",
            "orders",
            "orders_copy",
            "orders_new",
            "orders_sql"
        ]
    );
    assert_eq!(
        server.rows(&db, "SELECT count(*) FROM _ferry_imports"),
        ["5"]
    );
    assert!(out.contains("dropped table bad_new"), "{out}");
    let id = run.record["id"].as_i64().unwrap();
    assert!(!format!("{out}{}", p.history(id)).contains(PASSWORD));
}

/// Malformed plugin options on a MySQL database are errors naming the option, and nothing is
/// written: an unknown conflict policy, a `query` combined with `where`, a named database
/// whose password secret is not set.
#[test]
fn export_and_import_plugins_refuse_malformed_options_on_mysql() {
    let server = MysqlServer::shared();
    let db = server.database("plugins_bad");
    server.admin("USE plugins_bad; CREATE TABLE t (id INT PRIMARY KEY)");
    let p = Project::with_shipped_files();
    p.write(
        "ferry.toml",
        &format!(
            "[databases.shop]\nurl = \"{}\"\npassword_secret = \"NOT_SET\"\n",
            server.url(&db)
        ),
    );
    std::fs::create_dir_all(p.at("data")).unwrap();
    p.write("data/t.csv", "id\n1\n");
    let url = server.url_with_password(&db);
    let file = p.root_script(
        "bad",
        &format!(
            r#"return {{ run = function(ctx)
  local export, import = require "export", require "import"
  local out = {{}}
  local function try(name, f, o)
    local ok, e = pcall(f, ctx, o)
    out[name] = ok and {{ kind = "none" }} or {{ kind = e.kind, message = tostring(e.message or e) }}
  end
  try("conflict", import.run, {{ db = "{url}", table = "t", file = "data/t.csv", on_conflict = "sometimes" }})
  try("query_where", export.run, {{ db = "{url}", query = "SELECT * FROM t", where = "id = ?", args = {{ 1 }} }})
  try("format", export.run, {{ db = "{url}", table = "t", format = "pdf" }})
  try("secret", import.run, {{ db = "shop", table = "t", file = "data/t.csv" }})
  return out
end }}"#
        ),
    );
    let run = p.run_file(&file);
    let out = run.text();
    assert!(run.succeeded(), "{}\n{out}", run.error());
    let s = &run.record["summary"];
    for (case, kind, words) in [
        ("conflict", "invalid", "on_conflict"),
        (
            "query_where",
            "invalid",
            "`query` cannot be combined with `where`",
        ),
        ("format", "invalid", "pdf"),
        ("secret", "invalid", "secret 'NOT_SET'"),
    ] {
        assert_eq!(s[case]["kind"], kind, "{case}: {s}");
        let m = s[case]["message"].as_str().unwrap_or("");
        assert!(m.contains(words), "{case}: {m}");
    }
    assert_eq!(server.rows(&db, "SELECT count(*) FROM t"), ["0"]);
    assert!(!out.contains(PASSWORD), "{out}");
}

/// A `.sql` file written for MySQL loads into MySQL as the rows it was written from, through the
/// `mariadb` client and through `db:run`, whether or not the session's `sql_mode` makes a
/// backslash an escape: identifiers are in backticks and a string holding a backslash is a hex
/// literal. What MySQL cannot load (an untyped `CREATE TABLE`) is refused before anything is
/// written.
#[test]
fn a_sql_file_for_mysql_loads_into_mysql_in_any_sql_mode() {
    let server = MysqlServer::shared();
    let db = server.database("sqldump");
    server.admin(&format!(
        "USE sqldump; {TYPES_TABLE}; {TYPES_ROWS}; CREATE TABLE dst LIKE src"
    ));
    let p = project();
    let s = run_ok(
        &p,
        &server.url(&db),
        "sqldump",
        r#"
  local db = connect()
  local st = ferry.store("data")
  local n = ferry.pipe(db:query("SELECT * FROM src ORDER BY id"),
    ferry.sql.writer(st:create("dump.sql"), { table = "dst", dialect = "mysql", rows_per_statement = 2 }))
  local ok, err = pcall(ferry.sql.writer, st:create("typed.sql"), { table = "dst", dialect = "mysql", create_table = true })
  return { n = n, refused = tostring(err) }
"#,
    );
    assert_eq!(s["n"], 3, "{s}");
    assert!(
        s["refused"]
            .as_str()
            .unwrap()
            .contains("MySQL needs column types"),
        "{s}"
    );
    let dump = p.at("data/dump.sql");
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.starts_with("INSERT INTO `dst` (`id`, "), "{text}");
    let want = server.rows(&db, "SELECT * FROM src ORDER BY id");
    // The mariadb client, with the server's default sql_mode (backslash escapes on).
    let out = std::process::Command::new("mariadb")
        .args(server.client_args(&db))
        .stdin(std::fs::File::open(&dump).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.rows(&db, "SELECT * FROM dst ORDER BY id"), want);
    // db:run, with NO_BACKSLASH_ESCAPES on for the session.
    server.admin("USE sqldump; DELETE FROM dst");
    run_ok(
        &p,
        &server.url(&db),
        "sqldump_run",
        r#"
  local db = connect()
  db:exec("SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES')")
  return { r = db:run(ferry.sql.reader(ferry.store("data"):open("dump.sql"))).changes }
"#,
    );
    assert_eq!(server.rows(&db, "SELECT * FROM dst ORDER BY id"), want);
}

/// `db:run` reads a MySQL script by MySQL's rules, as `mysqldump` writes it: backslash escapes in
/// strings (following the session's `sql_mode`), `#` comments, and a trigger between
/// `DELIMITER ;;` lines with a `BEGIN ... END` body.
#[test]
fn a_mysqldump_style_script_runs_whole() {
    let server = MysqlServer::shared();
    let db = server.database("dumpstyle");
    let p = project();
    p.write(
        "data/dump.sql",
        "# dumped by hand, in mysqldump's style\n\
         CREATE TABLE `t` (`id` int PRIMARY KEY, `note` varchar(50), `seen` varchar(50)) ENGINE=InnoDB;\n\
         DELIMITER ;;\n\
         /*!50003 CREATE*/ /*!50003 TRIGGER `tr` BEFORE INSERT ON `t` FOR EACH ROW BEGIN\n\
           IF NEW.note IS NULL THEN SET NEW.note = 'none; really'; END IF;\n\
           SET NEW.seen = 'by trigger';\n\
         END */;;\n\
         DELIMITER ;\n\
         INSERT INTO `t` VALUES (1,'it\\'s; one',NULL),(2,'C:\\\\new',NULL),(3,NULL,NULL);\n",
    );
    let s = run_ok(
        &p,
        &server.url(&db),
        "dumpstyle",
        r#"
  local db = connect()
  local r = db:run(ferry.sql.reader(ferry.store("data"):open("dump.sql")))
  return { statements = r.statements }
"#,
    );
    assert_eq!(s["statements"], 3, "{s}");
    assert_eq!(
        server.rows(&db, "SELECT id, note, seen FROM t ORDER BY id"),
        [
            "1\tit's; one\tby trigger",
            "2\tC:\\\\new\tby trigger",
            "3\tnone; really\tby trigger"
        ]
    );
}
