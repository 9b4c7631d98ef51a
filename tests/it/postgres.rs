//! PostgreSQL through the real binary against real servers started by the test harness
//! (tests/it/common/postgres.rs).

use crate::common;

use common::postgres::PgServer;

/// The harness starts a cluster, the password role can connect over TCP and a wrong password is
/// refused; the superuser reaches it over the socket.
#[test]
fn harness_starts_a_cluster_with_password_auth() {
    let pg = PgServer::start();
    let mut c = pg.client();
    let row = c
        .query_one("SELECT current_user::text, 1 + 1", &[])
        .unwrap();
    let user: String = row.get(0);
    let two: i32 = row.get(1);
    assert_eq!((user.as_str(), two), (PgServer::USER, 2));
    assert_eq!(pg.psql("SELECT current_user").trim(), PgServer::ADMIN);

    let mut cfg = postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(pg.port)
        .user(PgServer::USER)
        .password("wrong")
        .dbname(PgServer::DB);
    let err = cfg
        .connect(postgres::NoTls)
        .err()
        .expect("a wrong password is refused");
    let db = err.as_db_error().expect("the server's answer");
    assert_eq!(db.code().code(), "28P01", "{}", db.message());
}

use std::time::Duration;

use common::postgres::dead_port;
use common::{Project, SIGINT, signal, wait_for};
use serde_json::Value;

/// A project whose `data/` is the scripts' store, with `[databases.main]` naming the server
/// (password from the secret PG_PASSWORD).
fn project(pg: &PgServer) -> Project {
    let mut p = Project::with_config(&format!(
        "[databases.main]\nurl = \"{}\"\npassword_secret = \"PG_PASSWORD\"\nsslmode = \"disable\"\n",
        pg.url()
    ));
    p.set_env("FERRY_SECRET_PG_PASSWORD", PgServer::PASSWORD);
    p
}

/// Runs a root script with `ferry run --json`; (run record, all output).
fn run(p: &Project, name: &str, source: &str) -> (Value, String) {
    let file = p.root_script(name, source);
    let r = p.run_file(&file);
    (r.record.clone(), r.text())
}

/// The rows of `table` as text, in `id` order (a fingerprint for equality).
fn fingerprint(pg: &PgServer, table: &str) -> String {
    pg.psql(&format!(
        "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY id)), '') FROM {table} x"
    ))
    .trim()
    .to_string()
}

const TYPES_TABLE: &str = "CREATE TABLE src_t (
  id int4 PRIMARY KEY, s int2, b int8, n numeric(20,6), f float8, r float4, t text,
  v varchar(20), by bytea, ok bool, d date, ts timestamp, tz timestamptz, j json, jb jsonb,
  u uuid);
INSERT INTO src_t VALUES
 (1, 32767, 9223372036854775807, 12345678901234.123456, 1.5, 0.25, E'tab\\there \"q\", comma',
  'v1', '\\x00ff10', true, '2026-01-02', '2026-01-02 03:04:05.123456',
  '2026-01-02 03:04:05.5+02', '{\"a\": [1, 2]}', '{\"b\": null}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, -32768, -1, -0.000001, -1e300, 3.5, E'line1\\nline2', '', '\\x', false, '1999-12-31',
  '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', '[]', '[]',
  '00000000-0000-0000-0000-000000000000'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);";

/// Every format round-trips a table with every mapped type and NULLs: the table goes out
/// through `db:query` (CSV through COPY, the others typed) and back in through `db:insert`
/// (COPY FROM STDIN), and the copy equals the original row for row.
#[test]
fn every_format_round_trips_every_type() {
    let pg = PgServer::start();
    pg.exec(TYPES_TABLE);
    for f in ["csv", "json", "ndjson", "xlsx", "sql"] {
        pg.exec(&format!("CREATE TABLE dst_{f} (LIKE src_t)"));
    }
    let p = project(&pg);
    let (rec, out) = run(
        &p,
        "roundtrip",
        r#"return { run = function(ctx)
          local db = ferry.postgres.connect("main")
          local store = ferry.store("data")
          local counts = {}
          for _, f in ipairs({ "csv", "json", "ndjson", "xlsx" }) do
            local wopts = f == "csv" and { null = "\\N" } or nil
            local n = ferry.pipe(db:query("SELECT * FROM src_t ORDER BY id"),
              ferry[f].writer(store:create("t." .. f), wopts))
            local ropts = nil
            if f == "csv" then ropts = { null = "\\N" } end
            if f == "xlsx" then ropts = { types = { b = "integer" } } end
            local ins = db:insert("dst_" .. f, ferry[f].reader(store:open("t." .. f), ropts))
            counts[f] = { out = n, back = ins }
          end
          -- .sql in PostgreSQL's dialect (bytes as '\x..'::bytea), run back in.
          local n = ferry.pipe(db:query("SELECT * FROM src_t ORDER BY id"),
            ferry.sql.writer(store:create("t.sql"), { table = "dst_sql", dialect = "postgres" }))
          local r = db:run(ferry.sql.reader(store:open("t.sql")))
          counts.sql = { out = n, back = r.changes }
          return counts
        end }"#,
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    assert_eq!(rec["summary"]["sql"]["back"], 3, "{out}");
    // An empty xlsx cell is null: empty text and empty bytes come back as null there.
    pg.exec(
        "CREATE TABLE src_x AS SELECT * FROM src_t; \
         UPDATE src_x SET v = NULLIF(v, ''), by = NULLIF(by, '')",
    );
    for f in ["csv", "json", "ndjson", "xlsx", "sql"] {
        let want = fingerprint(&pg, if f == "xlsx" { "src_x" } else { "src_t" });
        assert_eq!(rec["summary"][f]["out"], 3, "{f}: {out}");
        assert_eq!(
            fingerprint(&pg, &format!("dst_{f}")),
            want,
            "{f} did not round-trip: {}\nvs\n{}",
            pg.psql(&format!("SELECT * FROM dst_{f} ORDER BY id")),
            pg.psql("SELECT * FROM src_t ORDER BY id")
        );
    }
    // The CSV went through COPY with the typed path's text forms.
    let csv = std::fs::read_to_string(p.at("data/t.csv")).unwrap();
    assert!(
        csv.starts_with("id,s,b,n,f,r,t,v,by,ok,d,ts,tz,j,jb,u\n1,32767,9223372036854775807,12345678901234.123456,1.5,0.25,"),
        "{csv}"
    );
    assert!(
        csv.contains(",00ff10,true,2026-01-02,2026-01-02T03:04:05.123456,2026-01-02T01:04:05.5Z,"),
        "{csv}"
    );
    let ndjson = std::fs::read_to_string(p.at("data/t.ndjson")).unwrap();
    assert!(
        ndjson.contains(r#""by":"00ff10","ok":true,"d":"2026-01-02","ts":"2026-01-02T03:04:05.123456","tz":"2026-01-02T01:04:05.5Z""#),
        "{ndjson}"
    );
}

/// The COPY export writes the bytes the typed path writes: booleans and timestamps rewritten on
/// the client from a plain COPY (session in UTC), with another delimiter and a NULL marker that
/// reads like a boolean, and through the server's expressions once the script sets another
/// time zone. (Two values differ: an empty string, which COPY writes `""` and the typed path
/// empty, and a value equal to the NULL marker, which COPY quotes and the typed path does not.)
#[test]
fn copy_export_writes_what_the_typed_path_writes() {
    let pg = PgServer::start();
    pg.exec(
        "CREATE TABLE e (id int, ok bool, ts timestamp, tz timestamptz, t text); \
         INSERT INTO e VALUES (1, true, '2026-01-02 03:04:05.5', '2026-01-02 03:04:05.123+02', 'a;\"b\"'), \
         (2, false, 'infinity', '-infinity', E'x\\ny'), (3, NULL, NULL, NULL, 'u'), \
         (4, true, '2026-03-15 12:00:00', '1999-12-31 23:59:59.999999+00', 'z')",
    );
    pg.psql(&format!(
        "ALTER ROLE {} SET log_statement = 'all'",
        PgServer::USER
    ));
    let p = project(&pg);
    let (rec, out) = run(
        &p,
        "copy_vs_typed",
        r#"return { run = function(ctx)
          local db = ferry.postgres.connect("main")
          local store = ferry.store("data")
          local q = "SELECT * FROM e ORDER BY id"
          local function both(tag, opts)
            local typed = { columns = { "id", "ok", "ts", "tz", "t" } }
            for k, v in pairs(opts) do typed[k] = v end
            ferry.pipe(db:query(q), ferry.csv.writer(store:create(tag .. ".copy.csv"), opts))
            ferry.pipe(db:query(q), ferry.csv.writer(store:create(tag .. ".typed.csv"), typed))
          end
          both("plain", {})
          both("semi", { delimiter = ";", null = "t", header = false })
          db:exec("SET TimeZone = 'America/New_York'")
          both("ny", {})
          return true
        end }"#,
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    for tag in ["plain", "semi", "ny"] {
        let copy = std::fs::read_to_string(p.at(&format!("data/{tag}.copy.csv"))).unwrap();
        let typed = std::fs::read_to_string(p.at(&format!("data/{tag}.typed.csv"))).unwrap();
        assert_eq!(copy, typed, "{tag}");
    }
    let plain = std::fs::read_to_string(p.at("data/plain.copy.csv")).unwrap();
    assert!(
        plain.contains("1,true,2026-01-02T03:04:05.5,2026-01-02T01:04:05.123Z,"),
        "{plain}"
    );
    // The server ran the plain COPY in UTC, and the rewrite only in New York.
    let log = pg.log();
    let copies: Vec<&str> = log.lines().filter(|l| l.contains("COPY (")).collect();
    assert_eq!(copies.len(), 3, "{log}");
    assert!(
        copies[0].contains("COPY (SELECT * FROM e ORDER BY id) TO STDOUT"),
        "{log}"
    );
    assert!(!copies[1].contains("AT TIME ZONE"), "{log}");
    assert!(copies[2].contains("AT TIME ZONE 'UTC'"), "{log}");
}

/// Streaming both ways on a million rows: table → CSV (COPY) → another table, equal after.
#[test]
fn a_million_rows_out_and_back_in() {
    let pg = PgServer::start();
    pg.exec(
        "CREATE TABLE big AS SELECT i AS id, 'name ' || i AS name, (i * 1.25)::numeric(14,2) AS amount, \
         timestamptz '2026-01-01' + i * interval '1 second' AS at FROM generate_series(1, 1000000) i; \
         CREATE TABLE big2 (LIKE big)",
    );
    let p = project(&pg);
    let (rec, out) = run(
        &p,
        "big",
        r#"return { run = function(ctx)
          local db = ferry.postgres.connect("main")
          local store = ferry.store("data")
          local n = ferry.pipe(db:query("SELECT * FROM big ORDER BY id"), ferry.csv.writer(store:create("big.csv")))
          local typed = 0
          for _ in db:query("SELECT * FROM big WHERE id <= $1", { 300000 }):rows() do typed = typed + 1 end
          local ins = db:insert("big2", ferry.csv.reader(store:open("big.csv")))
          return { out = n, typed = typed, back = ins }
        end }"#,
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    assert_eq!(rec["summary"]["out"], 1_000_000);
    assert_eq!(rec["summary"]["typed"], 300_000);
    assert_eq!(rec["summary"]["back"], 1_000_000);
    assert_eq!(fingerprint(&pg, "big2"), fingerprint(&pg, "big"));
}

/// A wrong password and an unreachable host are errors with a kind a script can test; neither
/// the password nor the URL's password reach the output or the history.
#[test]
fn wrong_password_and_unreachable_host_are_clear_and_keep_the_secret() {
    let pg = PgServer::start();
    let p = project(&pg);
    let wrong = format!(
        "postgres://{}:Wr0ng-pw-7781@127.0.0.1:{}/ferry?sslmode=disable",
        PgServer::USER,
        pg.port
    );
    let dead = format!(
        "postgres://{}:{}@127.0.0.1:{}/ferry?sslmode=disable&connect_timeout=2",
        PgServer::USER,
        PgServer::PASSWORD,
        dead_port()
    );
    let (rec, out) = run(
        &p,
        "bad",
        &format!(
            r#"return {{ run = function(ctx)
              local ok, e1 = pcall(ferry.postgres.connect, "{wrong}")
              assert(not ok)
              local ok2, e2 = pcall(ferry.postgres.connect, "{dead}")
              assert(not ok2)
              local ok3, e3 = pcall(ferry.postgres.connect, "main", {{ password = "Wr0ng-pw-7781" }})
              ctx.log.info("errors: %s | %s | %s", tostring(e1), tostring(e2), tostring(e3))
              return {{ k1 = e1.kind, m1 = e1.message, k2 = e2.kind, m2 = e2.message, k3 = e3.kind }}
            end }}"#
        ),
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    assert_eq!(rec["summary"]["k1"], "denied", "{out}");
    assert_eq!(rec["summary"]["k2"], "unreachable", "{out}");
    assert_eq!(rec["summary"]["k3"], "denied", "{out}");
    let m1 = rec["summary"]["m1"].as_str().unwrap();
    assert!(m1.contains("password authentication failed"), "{m1}");
    assert!(
        m1.contains(&format!("postgres://ferry@127.0.0.1:{}/ferry", pg.port)),
        "{m1}"
    );
    let id = rec["id"].as_i64().unwrap();
    let all = format!("{out}{}", p.history(id));
    for secret in ["Wr0ng-pw-7781", PgServer::PASSWORD] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

/// Malformed URLs and options are `invalid` errors naming what is wrong.
#[test]
fn malformed_urls_and_options_are_invalid() {
    let pg = PgServer::start();
    let p = project(&pg);
    let (rec, out) = run(
        &p,
        "malformed",
        r#"return { run = function(ctx)
          local kinds = {}
          for i, args in ipairs({
            { "postgres://nobody" }, { "postgres://u@h/db?sslmode=sometimes" }, { "mysql://u@h/db" },
            { "nosuchname" }, { "main", { sslmode = "maybe" } }, { "main", { connect_timeout = "soon" } },
            { "main", { colour = "red" } }, { "main", { ca_file = "/etc/passwd" } },
          }) do
            local ok, e = pcall(ferry.postgres.connect, table.unpack(args))
            assert(not ok, i)
            kinds[i] = e.kind .. ": " .. e.message
          end
          return kinds
        end }"#,
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    let k = &rec["summary"];
    let expect = [
        "invalid: postgres: the URL names no user",
        "sslmode `sometimes`",
        "unsupported URL scheme `mysql`",
        "neither a postgres:// URL nor a database named in ferry.toml",
        "option `sslmode`",
        "option `connect_timeout`",
        "colour",
        "denied: ferry.postgres.connect: ca_file /etc/passwd",
    ];
    for (i, want) in expect.iter().enumerate() {
        let got = k[i].as_str().unwrap_or("");
        assert!(
            got.contains(want),
            "case {}: want {want:?}, got {got:?}",
            i + 1
        );
    }
}

/// Cancelling a run while the server runs a long statement stops the statement on the server.
#[test]
fn cancel_stops_a_long_query_on_the_server() {
    let pg = PgServer::start();
    let p = project(&pg);
    let file = p.root_script(
        "sleepy",
        r#"return { run = function(ctx)
          local db = ferry.postgres.connect("main")
          db:exec("SELECT pg_sleep(600)")
        end }"#,
    );
    let child = p.spawn_file(&file);
    let active = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%' AND state = 'active'";
    wait_for("the statement to run", Duration::from_secs(30), || {
        (pg.psql(active).trim() == "1").then_some(())
    });
    signal(child.id(), SIGINT);
    let r = Project::parse_run(child.wait_with_output().unwrap());
    assert_eq!(r.record["state"], "cancelled", "{}", r.text());
    wait_for(
        "the server to stop the statement",
        Duration::from_secs(20),
        || (pg.psql(active).trim() == "0").then_some(()),
    );
}

/// A failed import leaves the target as it was: a bad value on row 4 names the row and the
/// column, and none of the rows before it stay; a duplicate key names the row too.
#[test]
fn a_failed_import_leaves_the_table_as_it_was() {
    let pg = PgServer::start();
    pg.exec(
        "CREATE TABLE t (id int PRIMARY KEY, qty int2, note text); \
         INSERT INTO t VALUES (1, 1, 'kept'), (2, 2, 'kept')",
    );
    let before = fingerprint(&pg, "t");
    let p = project(&pg);
    p.write(
        "data/bad.csv",
        "id,qty,note\n10,1,a\n11,2,b\n12,3,c\n13,99999,d\n",
    );
    p.write("data/dup.csv", "id,qty,note\n20,1,a\n2,2,b\n");
    p.write("data/more.csv", "id,qty,note\n2,5,new\n30,3,c\n");
    let (rec, out) = run(
        &p,
        "failing",
        r#"return { run = function(ctx)
          local db = ferry.postgres.connect("main")
          local s = ferry.store("data")
          local ok, e = pcall(db.insert, db, "t", ferry.csv.reader(s:open("bad.csv")))
          local ok2, e2 = pcall(db.insert, db, "t", ferry.csv.reader(s:open("dup.csv")))
          local ok3, e3 = pcall(function()
            db:transaction(function(tx)
              tx:exec("DELETE FROM t")
              tx:insert("t", ferry.csv.reader(s:open("bad.csv")))
            end)
          end)
          local ins, skip = db:insert("t", ferry.csv.reader(s:open("more.csv")), { on_conflict = "skip" })
          db:exec("DELETE FROM t WHERE id = 30")
          return { k = e.kind, m = e.message, k2 = e2.kind, m2 = e2.message, ok3 = ok3, ins = ins, skip = skip }
        end }"#,
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    let s = &rec["summary"];
    let m = s["m"].as_str().unwrap();
    assert_eq!(s["k"], "data", "{m}");
    assert!(
        m.contains("row 4 from ")
            && m.contains("data/bad.csv")
            && m.contains("column qty")
            && m.contains("out of range"),
        "{m}"
    );
    let m2 = s["m2"].as_str().unwrap();
    assert_eq!(s["k2"], "conflict", "{m2}");
    assert!(
        m2.contains("row 2 from ") && m2.contains("data/dup.csv") && m2.contains("(id)=(2)"),
        "{m2}"
    );
    assert_eq!(s["ok3"], false);
    assert_eq!((s["ins"].as_i64(), s["skip"].as_i64()), (Some(1), Some(1)));
    assert_eq!(fingerprint(&pg, "t"), before);
}

/// The shipped export and import plugins take a postgres:// URL or a database named in
/// ferry.toml, with where/args, columns, order_by, zip, the import ledger and all-or-nothing
/// imports.
#[test]
fn export_and_import_plugins_take_a_postgres_url_or_a_named_database() {
    let pg = PgServer::start();
    pg.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric(10,2), paid bool, \
         created_at bigint); \
         INSERT INTO orders SELECT i, 'c' || i, i * 1.5, i % 2 = 0, 1700000000 + i * 3600 \
         FROM generate_series(1, 100) i; \
         CREATE TABLE orders_copy (LIKE orders INCLUDING ALL)",
    );
    let mut p = Project::with_shipped_files();
    p.write(
        "ferry.toml",
        &format!(
            "[databases.main]\nurl = \"{}\"\npassword_secret = \"PG_PASSWORD\"\n",
            pg.url()
        ),
    );
    std::fs::create_dir_all(p.at("data")).unwrap();
    p.set_env("FERRY_SECRET_PG_PASSWORD", PgServer::PASSWORD);
    p.write(
        "data/in/dup.csv",
        "id,customer,amount,paid,created_at\n500,x,1,true,1\n12,y,2,false,2\n",
    );
    let url = format!("{}?sslmode=disable", pg.url_with_password());
    let (rec, out) = run(
        &p,
        "plugins",
        &format!(
            r#"return {{ run = function(ctx)
              local export, import = require "export", require "import"
              local a = export.run(ctx, {{ db = "main", table = "orders", where = "paid = ? AND id > ?",
                args = {{ true, 10 }}, columns = {{ "id", "customer", "amount", "paid" }},
                order_by = {{ "-id" }}, store = "data/out", path = "paid.csv" }})
              local b = export.run(ctx, {{ db = "{url}", query = "SELECT * FROM orders WHERE id <= $1 ORDER BY id",
                args = {{ 50 }}, format = "ndjson", zip = "o.zip", path = "o.ndjson", store = "data/out",
                timestamp_columns = {{ "created_at" }} }})
              local c = import.run(ctx, {{ db = "main", table = "orders_copy", file = "data/out/paid.csv" }})
              local d = import.run(ctx, {{ db = "{url}", table = "orders_copy", file = "data/out/paid.csv" }})
              local ok, e = pcall(import.run, ctx, {{ db = "main", table = "orders_copy", file = "data/in/dup.csv" }})
              local s = import.run(ctx, {{ db = "main", table = "orders_copy", file = "data/in/dup.csv", on_conflict = "skip" }})
              local z = import.run(ctx, {{ db = "main", table = "orders_new", file = "data/out/o.zip" }})
              return {{ a = a.rows, b = b.rows, c = c.inserted, d = d.already_imported ~= nil,
                        e = e.kind, em = e.message, s_ins = s.inserted, s_skip = s.skipped, z = z.inserted }}
            end }}"#
        ),
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    let s = &rec["summary"];
    assert_eq!(s["a"], 45, "{out}");
    assert_eq!(s["b"], 50);
    assert_eq!(s["c"], 45);
    assert_eq!(s["d"], true);
    assert_eq!(s["e"], "conflict", "{}", s["em"]);
    assert!(
        s["em"].as_str().unwrap().contains("row 2 from"),
        "{}",
        s["em"]
    );
    assert_eq!(
        (s["s_ins"].as_i64(), s["s_skip"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(s["z"], 50);
    let csv = std::fs::read_to_string(p.at("data/out/paid.csv")).unwrap();
    assert!(
        csv.starts_with("id,customer,amount,paid\n100,c100,150.00,true\n98,"),
        "{csv}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM orders_copy").trim(), "46");
    assert_eq!(
        pg.psql("SELECT created_at FROM orders_new WHERE id = '1'")
            .trim(),
        "2023-11-14T23:13:20Z"
    );
    let id = rec["id"].as_i64().unwrap();
    assert!(!format!("{out}{}", p.history(id)).contains(PgServer::PASSWORD));
}

/// TLS: with the server's CA as `ca_file`, `verify-full` connects; without it (the platform's
/// roots do not know the test CA) the certificate is refused, kind `denied`; `disable` talks
/// plain TCP.
#[test]
fn tls_verifies_the_server_certificate() {
    let pg = PgServer::start_tls();
    let p = project(&pg);
    let ca = pg.ca_file.clone().unwrap();
    std::fs::copy(&ca, p.at("data/ca.crt")).unwrap();
    let url = pg.url_with_password();
    let (rec, out) = run(
        &p,
        "tls",
        &format!(
            r#"return {{ run = function(ctx)
              local db = ferry.postgres.connect("{url}?sslmode=verify-full", {{ ca_file = "data/ca.crt" }})
              local ssl
              for r in db:query("SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"):rows() do ssl = r.ssl end
              local ok, e = pcall(ferry.postgres.connect, "{url}?sslmode=require")
              local plain = ferry.postgres.connect("{url}?sslmode=disable")
              local ssl2
              for r in plain:query("SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"):rows() do ssl2 = r.ssl end
              return {{ ssl = ssl, ok = ok, kind = e.kind, msg = e.message, plain = ssl2 }}
            end }}"#
        ),
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    let s = &rec["summary"];
    assert_eq!(s["ssl"], "true", "{out}");
    assert_eq!(s["ok"], false);
    assert_eq!(s["kind"], "denied", "{}", s["msg"]);
    assert!(
        s["msg"].as_str().unwrap().contains("certificate"),
        "{}",
        s["msg"]
    );
    assert_eq!(s["plain"], "false");
}

/// A query's rows go into another table on the same connection, inside and outside a script
/// transaction, and the transaction ferry opens for the cursor ends with it.
#[test]
fn a_query_feeds_an_insert_on_the_same_connection() {
    let pg = PgServer::start();
    pg.exec(
        "CREATE TABLE a AS SELECT i AS id, i * 2 AS v FROM generate_series(1, 5000) i; \
         CREATE TABLE b (LIKE a); CREATE TABLE c (LIKE a)",
    );
    let p = project(&pg);
    let (rec, out) = run(
        &p,
        "same",
        r#"return { run = function(ctx)
          local db = ferry.postgres.connect("main")
          local n1 = db:insert("b", db:query("SELECT * FROM a WHERE id <= $1", { 3000 }))
          local n2 = db:transaction(function(tx)
            return tx:insert("c", tx:query("SELECT * FROM a"))
          end)
          local ok = pcall(function()
            db:transaction(function(tx)
              tx:insert("c", tx:query("SELECT * FROM a"))
              error("changed my mind")
            end)
          end)
          local first = db:query("SELECT id FROM a ORDER BY id"):read(2)
          db:exec("INSERT INTO b VALUES (-1, -1)")
          return { n1 = n1, n2 = n2, ok = ok, first = first[2].id }
        end }"#,
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    let s = &rec["summary"];
    assert_eq!(
        (s["n1"].as_i64(), s["n2"].as_i64()),
        (Some(3000), Some(5000)),
        "{out}"
    );
    assert_eq!(s["ok"], false);
    assert_eq!(s["first"], 2);
    assert_eq!(pg.psql("SELECT count(*) FROM b").trim(), "3001");
    assert_eq!(pg.psql("SELECT count(*) FROM c").trim(), "5000");
}

/// `db:run` reads a PostgreSQL script by PostgreSQL's rules: a plpgsql function whose body is
/// dollar-quoted (with `;` inside), a trigger calling it, `E'..'` strings with escaped quotes;
/// pg_dump's `COPY ... FROM stdin` is refused, naming its line, and nothing of the script stays.
#[test]
fn a_postgres_script_with_functions_and_triggers_runs_whole() {
    let pg = PgServer::start();
    let p = project(&pg);
    p.write(
        "data/schema.sql",
        "-- a schema with a function\n\
         CREATE TABLE t (id int PRIMARY KEY, note text, seen text);\n\
         CREATE FUNCTION mark() RETURNS trigger LANGUAGE plpgsql AS $body$\n\
         BEGIN\n  NEW.seen := 'by trigger; ok';\n  RETURN NEW;\nEND;\n$body$;\n\
         CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION mark();\n\
         INSERT INTO t (id, note) VALUES (1, E'it\\'s; one'), (2, $$two; $1$$);\n",
    );
    p.write(
        "data/dump.sql",
        "CREATE TABLE u (id int);\n--\n-- Data for Name: u\n--\n\nCOPY public.u (id) FROM stdin;\n1\n2\n\\.\n",
    );
    let (rec, out) = run(
        &p,
        "pgscript",
        r#"return { run = function(ctx)
          local db = ferry.postgres.connect("main")
          local s = ferry.store("data")
          local r = db:run(ferry.sql.reader(s:open("schema.sql")))
          local ok, e = pcall(db.run, db, ferry.sql.reader(s:open("dump.sql")))
          local u = db:query("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'u'"):read(1)[1].n
          return { statements = r.statements, kind = e.kind, message = e.message, u = u }
        end }"#,
    );
    assert_eq!(rec["state"], "succeeded", "{out}");
    let s = &rec["summary"];
    assert_eq!(s["statements"], 4, "{s}");
    let m = s["message"].as_str().unwrap();
    assert!(m.contains("dump.sql: line 6: COPY ... FROM stdin"), "{m}");
    assert_eq!(s["u"], 0, "{s}");
    assert_eq!(
        pg.psql("SELECT string_agg(id || '=' || note || '/' || seen, ',' ORDER BY id) FROM t")
            .trim(),
        "1=it's; one/by trigger; ok,2=two; $1/by trigger; ok"
    );
}
