//! The shipped plugins and example jobs through the real binary and API.

use crate::common;

use std::time::Duration;

use common::{Daemon, Project, wait_for};
use serde_json::{Value, json};

#[test]
fn shipped_scripts_all_load() {
    let p = Project::with_shipped_files();
    let r = p.ferry(&["check"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn nightly_export_downloads_through_the_api_and_matches_the_query() {
    let p = Project::with_shipped_files();
    let d = Daemon::start(&p);
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{}/api/v1/jobs/nightly_export/runs", d.url))
        .json(&json!({"params": {"since": "2026-02-01"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let run = wait_for("the export", Duration::from_secs(30), || {
        let v: Value = http
            .get(format!("{}/api/v1/runs/{id}", d.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["state"]
            .as_str()
            .is_some_and(|s| s != "queued" && s != "running")
            .then_some(v)
    });
    assert_eq!(run["state"], "succeeded", "{run}");
    let zip = http
        .get(format!("{}/api/v1/runs/{id}/artifacts/orders.zip", d.url))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(d.stop(), Some(0));
    std::fs::write(p.path().join("data/orders.zip"), &zip).unwrap();
    // Read the archive back with ferry itself and compare with the same query.
    p.write(
        "check.lua",
        r#"return { run = function(ctx)
          local z = ferry.zip.reader(ferry.store("data"):open("orders.zip"))
          local csv = z:read("orders.csv")
          local db = ferry.sqlite.open("data/sample/shop.db")
          local want = { "Order,Customer,Amount,Created" }
          local since = ferry.time.parse("2026-02-01")
          for r in db:query("SELECT id, customer, amount, created_at FROM orders WHERE paid = 1 AND created_at >= ? ORDER BY created_at DESC", { since }):rows() do
            want[#want + 1] = string.format("%d,%s,%s,%s", r.id, r.customer, tostring(r.amount), ferry.time.format(r.created_at))
          end
          local got = {}
          for line in csv:gmatch("[^\n]+") do got[#got + 1] = line end
          return { equal = table.concat(got, "\n") == table.concat(want, "\n"), rows = #got - 1, first = got[2], want = want[2] }
        end }"#,
    );
    let r = p.ferry(&["run", "check.lua", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = &r.json()["summary"];
    assert_eq!(s["equal"], true, "{s}");
    assert_eq!(s["rows"], run["summary"]["rows"]);
    assert!(s["rows"].as_i64().unwrap() > 100);
}

#[test]
fn export_plugin_formats_and_errors() {
    let p = Project::with_shipped_files();
    p.script(
        "exp",
        r#"local export = require "export"
        return { params = { fmt = { default = "csv" }, mode = { default = "all" } }, run = function(ctx)
          local db = ferry.sqlite.open("data/t.db")
          db:exec("CREATE TABLE IF NOT EXISTS t (id INTEGER, name TEXT, at INTEGER)")
          db:exec("DELETE FROM t")
          db:exec("INSERT INTO t VALUES (1, 'a', 0), (2, 'b, \"q\"', 60), (3, NULL, 120)")
          return export.run(ctx, { db = "data/t.db", table = "t", mode = ctx.params.mode, format = ctx.params.fmt,
            exclude = { "at" }, order_by = { "-id" } })
        end }"#,
    );
    for fmt in ["csv", "json", "ndjson", "xlsx", "sql"] {
        let r = p.ferry(&["run", "exp", "-p", &format!("fmt={fmt}"), "--json"]);
        assert_eq!(r.code, 0, "{fmt}: {}", r.all());
        assert_eq!(r.json()["summary"]["rows"], 3, "{fmt}");
        assert!(p.path().join(format!("data/exports/t.{fmt}")).exists());
    }
    let csv = std::fs::read_to_string(p.path().join("data/exports/t.csv")).unwrap();
    assert_eq!(csv, "id,name\n3,\n2,\"b, \"\"q\"\"\"\n1,a\n");
    let r = p.ferry(&["run", "exp", "-p", "fmt=pdf"]);
    assert!(
        r.stderr.contains(
            "scripts/exp.lua:7: export.run: option `format`: expected one of \"csv\", \"json\", \"ndjson\", \"xlsx\", \"sql\""
        ),
        "{}",
        r.all()
    );
    let r = p.ferry(&["run", "exp", "-p", "mode=part"]);
    assert!(
        r.stderr.contains("mode \"part\" needs `where`"),
        "{}",
        r.all()
    );
}

#[test]
fn import_from_a_watched_folder_an_upload_and_under_both_error_policies() {
    let p = Project::with_shipped_files();
    p.script(
        "strict",
        r#"local import = require "import"
        return { params = { file = {} }, run = function(ctx)
          return import.run(ctx, { db = "data/strict.db", table = "t", file = ctx.params.file,
            types = { id = "integer" }, on_error = "fast_fail" })
        end }"#,
    );
    p.write("data/in/bad.csv", "id,name\n1,a\nx,b\n3,c\n");
    p.write("data/in/unbalanced.csv", "id,name\n1,\"a\n");
    let r = p.ferry(&["run", "strict", "-p", "file=data/in/bad.csv"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("data/in/bad.csv: line 3, field 1 (id)"),
        "{}",
        r.all()
    );
    let r = p.ferry(&["run", "strict", "-p", "file=data/in/unbalanced.csv"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("data/in/unbalanced.csv"), "{}", r.all());
    // All or nothing: the good first row of the failed files is not in the table.
    p.script(
        "count",
        r#"return { run = function() local db = ferry.sqlite.open("data/strict.db")
          local ok, n = pcall(function() for r in db:query("SELECT count(*) AS n FROM t"):rows() do return r.n end end)
          return ok and n or 0 end }"#,
    );
    assert_eq!(p.ferry(&["run", "count", "--json"]).json()["summary"], 0);

    let d = Daemon::start(&p);
    p.write(
        "inbox/orders/a.csv",
        "id,customer,amount\n1,ann,1.5\nbad,bob,2\n3,cy,3\n",
    );
    let run = wait_for("the dropped file's import", Duration::from_secs(30), || {
        p.runs_of("import_orders")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    assert_eq!(run["summary"]["inserted"], 2);
    assert_eq!(run["summary"]["bad_rows"], 1);
    assert_eq!(
        run["summary"]["skipped_rows"]["inbox/orders/.ferry/processing/a.csv"]["first"][0]["line"],
        3
    );
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(
            br#"[{"id": 7, "customer": "up", "amount": 9.5}]"#.to_vec(),
        )
        .file_name("up.json"),
    );
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/jobs/import_orders/upload", d.url))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let up = wait_for(
        "the uploaded file's import",
        Duration::from_secs(30),
        || {
            let v = p.show(id);
            (v["state"] == "succeeded").then_some(v)
        },
    );
    assert_eq!(up["summary"]["inserted"], 1);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn hash_glob_regex_and_time_helpers() {
    let p = Project::new();
    p.script(
        "u",
        r#"return { run = function(ctx)
          local st = ferry.store("data")
          st:write("x.txt", "abc")
          local h1 = ferry.hash.sha256("abc")
          local h2, n = ferry.hash.sha256(st:open("x.txt"))
          local m = ferry.regex.match("^(?P<proj>[a-z]+)/(\\d+)$", "web/42")
          local bad = pcall(ferry.regex.match, "(", "x")
          return { h1 = h1, same = h1 == h2, n = n,
            g = { ferry.glob.match("*.csv", "a.csv"), ferry.glob.match("*.csv", "d/a.csv"), ferry.glob.match("**/*.csv", "d/a.csv") },
            proj = m.proj, num = m[2], none = ferry.regex.match("x", "y") == nil, bad_pattern_refused = not bad,
            t = ferry.time.format(ferry.time.parse("2026-01-31T03:30:00+01:00")), d = ferry.time.parse("1970-01-02"),
            f = ferry.time.format(86400, "%Y-%m-%d"), now = ferry.time.now() > 1.7e9 }
        end }"#,
    );
    let r = p.ferry(&["run", "u", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.json()["summary"],
        json!({"h1": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "same": true, "n": 3,
               "g": [true, false, true], "proj": "web", "num": "42", "none": true, "bad_pattern_refused": true,
               "t": "2026-01-31T02:30:00Z", "d": 86400, "f": "1970-01-02", "now": true})
    );
    p.script(
        "badtime",
        "return { run = function() ferry.time.parse('yesterday') end }",
    );
    let r = p.ferry(&["run", "badtime"]);
    assert!(
        r.stderr
            .contains("scripts/badtime.lua:1: ferry.time.parse: expected a time: RFC 3339"),
        "{}",
        r.all()
    );
}

#[test]
fn backup_incremental_restore_conflicts_and_corruption() {
    let p = Project::with_shipped_files();
    let write = |rel: &str, text: &str| p.write(&format!("data/docs/{rel}"), text);
    write("a.txt", "one");
    write("dir/b.txt", "two");
    write("keep.txt", "same");
    write("x.tmp", "scratch");
    let r = p.ferry(&["run", "nightly_backup", "-p", "kind=full", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let full = r.json()["summary"].clone();
    assert_eq!(
        (full["kind"].clone(), full["copied"].clone()),
        (json!("full"), json!(3))
    );
    write("a.txt", "one, changed");
    std::fs::remove_file(p.path().join("data/docs/dir/b.txt")).unwrap();
    write("c.txt", "new");
    let r = p.ferry(&["run", "nightly_backup", "--json"]);
    let inc = r.json()["summary"].clone();
    assert_eq!(inc["kind"], "incremental");
    assert_eq!(inc["parent"], full["id"]);
    assert_eq!(
        (
            inc["copied"].clone(),
            inc["reused"].clone(),
            inc["files"].clone()
        ),
        (json!(2), json!(1), json!(3))
    );

    // Restore the incremental into a new prefix: equals the source at that time, byte for byte.
    let r = p.ferry(&["run", "restore", "-p", "target=data/r1", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let mut got = p.files_in("data/r1");
    got.sort();
    assert_eq!(got, vec!["a.txt", "c.txt", "keep.txt"]);
    for f in ["a.txt", "c.txt", "keep.txt"] {
        assert_eq!(
            std::fs::read(p.path().join("data/r1").join(f)).unwrap(),
            std::fs::read(p.path().join("data/docs").join(f)).unwrap()
        );
    }
    // The full backup restores the older state.
    let id = full["id"].as_str().unwrap();
    let r = p.ferry(&[
        "run",
        "restore",
        "-p",
        &format!("id={id}"),
        "-p",
        "target=data/r0",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(p.path().join("data/r0/a.txt")).unwrap(),
        "one"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("data/r0/dir/b.txt")).unwrap(),
        "two"
    );

    // SKIP keeps what is there; OVERWRITE replaces it.
    p.write("data/r1/a.txt", "local edit");
    let r = p.ferry(&["run", "restore", "-p", "target=data/r1", "--json"]);
    assert_eq!(r.json()["summary"]["skipped"], 3);
    assert_eq!(
        std::fs::read_to_string(p.path().join("data/r1/a.txt")).unwrap(),
        "local edit"
    );
    let r = p.ferry(&[
        "run",
        "restore",
        "-p",
        "target=data/r1",
        "-p",
        "conflict=OVERWRITE",
        "--json",
    ]);
    assert_eq!(r.json()["summary"]["restored"], 3);
    assert_eq!(
        std::fs::read_to_string(p.path().join("data/r1/a.txt")).unwrap(),
        "one, changed"
    );

    // A corrupted backup file is detected; FAST_FAIL stops, CONTINUE reports it and goes on.
    let inc_id = inc["id"].as_str().unwrap();
    p.write(
        &format!("data/backups/docs/{inc_id}/data/c.txt"),
        "tampered",
    );
    let r = p.ferry(&["run", "restore", "-p", "target=data/r2"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("c.txt: checksum mismatch"), "{}", r.all());
    let r = p.ferry(&[
        "run",
        "restore",
        "-p",
        "target=data/r3",
        "-p",
        "on_error=CONTINUE",
        "--json",
    ]);
    let s = r.json()["summary"].clone();
    assert_eq!(
        (s["restored"].clone(), s["failed"].clone()),
        (json!(2), json!(1))
    );
    assert!(!p.path().join("data/r3/c.txt").exists());
}

fn s3_project(server: &common::s3::S3Server) -> Project {
    let p = Project::with_shipped_files();
    p.write(
        "ferry.toml",
        &format!(
            "[stores.point]\nurl = \"{}\"\nendpoint = \"{}\"\naccess_key_id = \"${{FERRY_TEST_AK}}\"\nsecret_access_key = \"${{FERRY_TEST_SK}}\"\n",
            server.url("ferry-backups"),
            server.endpoint()
        ),
    );
    p.script(
        "bk",
        r#"local backup = require "backup"
        return { params = { op = {}, id = {}, ids = {}, keep = { type = "integer", default = 1 }, target = { default = "data/out" } },
          run = function(ctx)
            local o = { point = "point", set = "docs" }
            local op = ctx.params.op
            if op == "backup" then o.source = "data/docs"; o.kind = "incremental"; return backup.run(ctx, o) end
            if op == "discover" then o.register = true; return backup.discover(ctx, o) end
            if op == "known" then return backup.known(o) end
            if op == "restore" then o.id = ctx.params.id; o.target = ctx.params.target; return backup.restore(ctx, o) end
            if op == "delete" then o.id = ctx.params.id; return backup.delete(ctx, o) end
            if op == "cascade" then o.id = ctx.params.id; o.cascade = true; return backup.delete(ctx, o) end
            if op == "delete_many" then o.ids = {}; for id in ctx.params.ids:gmatch("[^,]+") do o.ids[#o.ids + 1] = id end; return backup.delete_many(ctx, o) end
            if op == "retention" then o.keep_last = ctx.params.keep; return backup.retention(ctx, o) end
            if op == "list" then local ids = {}; for _, m in ipairs(backup.list(o)) do ids[#ids + 1] = m.id end; return ids end
          end }"#,
    );
    p
}

#[test]
fn backups_at_an_s3_point_are_discovered_by_a_second_ferry_and_managed() {
    let server = common::s3::S3Server::start();
    let env = [
        ("FERRY_TEST_AK", server.access_key.as_str()),
        ("FERRY_TEST_SK", server.secret_key.as_str()),
    ];
    let a = s3_project(&server);
    let run = |p: &Project, args: &[&str]| {
        let mut all = vec!["run", "bk"];
        all.extend_from_slice(args);
        all.push("--json");
        let r = p.ferry_env(&all, &env);
        (r.code, r.json(), r.all())
    };
    a.write("data/docs/a.txt", "alpha");
    a.write("data/docs/sub/b.bin", &"b".repeat(10_000));
    let (code, v, out) = run(&a, &["-p", "op=backup"]);
    assert_eq!(code, 0, "{out}");
    let first = v["summary"]["id"].as_str().unwrap().to_string();
    a.write("data/docs/a.txt", "alpha v2");
    let (_, v, _) = run(&a, &["-p", "op=backup"]);
    let second = v["summary"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["summary"]["parent"], first.as_str());

    // A second ferry with an empty history and catalog finds both and restores the newest.
    let b = s3_project(&server);
    let (_, v, _) = run(&b, &["-p", "op=known"]);
    assert_eq!(v["summary"], json!([]), "nothing known yet");
    let (code, v, out) = run(&b, &["-p", "op=discover"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["summary"]["registered"], json!([first, second]), "{v}");
    let (_, v, _) = run(&b, &["-p", "op=discover"]);
    assert_eq!(v["summary"]["found"], json!([]), "registered once");
    let (code, _, out) = run(&b, &["-p", "op=restore", "-p", &format!("id={second}")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(b.path().join("data/out/a.txt")).unwrap(),
        "alpha v2"
    );
    assert_eq!(
        std::fs::read(b.path().join("data/out/sub/b.bin"))
            .unwrap()
            .len(),
        10_000
    );
    assert!(
        !out.contains(&server.secret_key),
        "credentials stay out of the output"
    );

    // Delete is refused while a later incremental needs the backup; cascade deletes both.
    let (code, _, out) = run(&a, &["-p", "op=delete", "-p", &format!("id={first}")]);
    assert_eq!(code, 1);
    assert!(out.contains(&format!("is needed by {second}")), "{out}");
    let (_, v, _) = run(&a, &["-p", "op=backup"]);
    let third = v["summary"]["id"].as_str().unwrap().to_string();
    let (_, v, _) = run(
        &a,
        &["-p", "op=delete_many", "-p", &format!("ids=nope,{third}")],
    );
    assert_eq!(
        (
            v["summary"]["deleted"].clone(),
            v["summary"]["failed"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(v["summary"]["results"][0]["ok"], false);
    assert!(
        v["summary"]["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(v["summary"]["results"][1], json!({"id": third, "ok": true}));
    // Retention keeps the newest and what it needs.
    let (_, v, _) = run(&a, &["-p", "op=retention", "-p", "keep=1"]);
    assert_eq!(
        v["summary"]["kept"],
        json!([first, second]),
        "the newest needs the full one"
    );
    let (code, v, out) = run(&a, &["-p", "op=cascade", "-p", &format!("id={first}")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["summary"]["deleted"], json!([second, first]));
    let (_, v, _) = run(&a, &["-p", "op=list"]);
    assert_eq!(v["summary"], json!({}));
}

#[test]
fn a_million_row_export_to_zipped_csv_on_s3_downloads_through_the_api() {
    let server = common::s3::S3Server::start();
    let p = s3_project(&server);
    p.script(
        "big",
        r#"local export = require "export"
        return { run = function(ctx)
          local db = ferry.sqlite.open("data/big.db")
          db:exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT, amount REAL, at INTEGER, secret TEXT)")
          db:exec([[WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000000)
                    INSERT INTO t SELECT i, 'n' || (i % 1000), i / 4.0, 1700000000 + i, 'x' FROM s]])
          return export.run(ctx, { db = "data/big.db", table = "t", where = "id % 2 = ?", args = { 0 },
            order_by = { "-id" }, columns = { "id", "name", "amount", "at" }, headers = { "ID", "Name", "Amount", "At" },
            timestamp_columns = { "at" }, zip = "big.zip", path = "big.csv", store = "point" })
        end }"#,
    );
    let env = [
        ("FERRY_TEST_AK", server.access_key.as_str()),
        ("FERRY_TEST_SK", server.secret_key.as_str()),
    ];
    let mut cmd = p.cmd(&["serve", "--listen", "127.0.0.1:0"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log = p.path().join("serve.log");
    let mut child = cmd
        .env("FERRY_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = wait_for("the API", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let at = text.find("API listening on ")?;
        Some(text[at + 17..].lines().next()?.trim().to_string())
    });
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let id = http
        .post(format!("{url}/api/v1/jobs/big/runs"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let run = wait_for("the export", Duration::from_secs(300), || {
        let v: Value = http
            .get(format!("{url}/api/v1/runs/{id}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["state"]
            .as_str()
            .is_some_and(|s| s != "queued" && s != "running")
            .then_some(v)
    });
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["summary"]["rows"], 500_000);
    assert!(
        run["artifacts"][0]["store"]
            .as_str()
            .unwrap()
            .starts_with("s3://")
    );
    let zip = http
        .get(format!("{url}/api/v1/runs/{id}/artifacts/big.zip"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    common::signal(child.id(), common::SIGTERM);
    let _ = child.wait();
    std::fs::write(p.path().join("data/big.zip"), &zip).unwrap();
    p.write(
        "count.lua",
        r#"return { run = function()
          local z = ferry.zip.reader(ferry.store("data"):open("big.zip"))
          local out = ferry.store("data"):create("big.csv")
          z:extract("big.csv", out)
          local src = ferry.csv.reader(ferry.store("data"):open("big.csv"), { types = { ID = "integer" } })
          local n, first, last = 0, nil, nil
          for row in src:rows() do n = n + 1; first = first or row; last = row end
          return { n = n, first = first, last = last }
        end }"#,
    );
    let r = p.ferry_env(&["run", "count.lua", "--json"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = &r.json()["summary"];
    assert_eq!(s["n"], 500_000);
    assert_eq!(
        s["first"],
        json!({"ID": 1000000, "Name": "n0", "Amount": "250000.0", "At": "2023-11-26T12:00:00Z"})
    );
    assert_eq!(s["last"]["ID"], 2);
}

#[test]
fn a_live_sqlite_database_is_backed_up_consistently_and_restored() {
    let p = Project::with_shipped_files();
    p.script(
        "dbb",
        r#"local backup = require "backup"
        return { params = { op = {} }, run = function(ctx)
          if ctx.params.op == "backup" then
            local db = ferry.sqlite.open("data/shop.db")
            db:exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
            db:exec("INSERT INTO t (v) VALUES ('a'), ('b'), ('c')")
            -- An open transaction in this connection does not stop a consistent snapshot.
            return backup.run(ctx, { source_db = "data/shop.db", point = "data/backups", set = "shop" })
          end
          local r = backup.restore(ctx, { point = "data/backups", set = "shop", target = "data/restored" })
          local n = 0
          for row in ferry.sqlite.open("data/restored/shop.db"):query("SELECT count(*) AS n FROM t"):rows() do n = row.n end
          return { restored = r.restored, rows = n }
        end }"#,
    );
    let r = p.ferry(&["run", "dbb", "-p", "op=backup", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["summary"]["files"], 1);
    let r = p.ferry(&["run", "dbb", "-p", "op=restore", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["summary"], json!({"restored": 1, "rows": 3}));
    p.script(
        "snapbad",
        "return { run = function() ferry.sqlite.snapshot('data/none.db', 'data/x.db') end }",
    );
    let r = p.ferry(&["run", "snapbad"]);
    assert!(
        r.stderr.contains("data/none.db does not exist"),
        "{}",
        r.all()
    );
    p.script(
        "snapout",
        "return { run = function() ferry.sqlite.snapshot('../x.db', 'data/x.db') end }",
    );
    let r = p.ferry(&["run", "snapout"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("ferry.sqlite.snapshot"), "{}", r.all());
}

#[test]
fn zip_compressed_backups_restore_and_detect_corruption() {
    let p = Project::with_shipped_files();
    p.script(
        "zb",
        r#"local backup = require "backup"
        return { params = { op = {}, target = { default = "data/zr" } }, run = function(ctx)
          local o = { source = "data/docs", point = "data/backups", set = "z", compression = "zip", kind = "incremental" }
          if ctx.params.op == "backup" then return backup.run(ctx, o) end
          return backup.restore(ctx, { point = "data/backups", set = "z", target = ctx.params.target })
        end }"#,
    );
    p.write("data/docs/a.txt", &"a".repeat(50_000));
    p.write("data/docs/d/b.txt", "bee");
    assert_eq!(p.ferry(&["run", "zb", "-p", "op=backup"]).code, 0);
    p.write("data/docs/c.txt", "sea");
    let r = p.ferry(&["run", "zb", "-p", "op=backup", "--json"]);
    let inc = r.json()["summary"].clone();
    assert_eq!(
        (inc["copied"].clone(), inc["reused"].clone()),
        (json!(1), json!(2))
    );
    let r = p.ferry(&["run", "zb", "-p", "op=restore", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["summary"]["restored"], 3);
    for f in ["a.txt", "d/b.txt", "c.txt"] {
        assert_eq!(
            std::fs::read(p.path().join("data/zr").join(f)).unwrap(),
            std::fs::read(p.path().join("data/docs").join(f)).unwrap()
        );
    }
    assert!(!p.path().join("data/zr/.ferry-restore/a.txt").exists());
    // Corrupt the deflated data of a.txt in the full backup's archive (local header: 30 bytes
    // plus the name, then the data).
    let full_id = inc["parent"].as_str().unwrap();
    let zip = p.path().join(format!("data/backups/z/{full_id}/data.zip"));
    let mut bytes = std::fs::read(&zip).unwrap();
    bytes[30 + "a.txt".len() + 4] ^= 0x5a;
    std::fs::write(&zip, &bytes).unwrap();
    let r = p.ferry(&["run", "zb", "-p", "op=restore", "-p", "target=data/zr2"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        !p.path().join("data/zr2/a.txt").exists(),
        "nothing unverified is restored"
    );
}

#[test]
fn every_format_exports_and_imports_back_equal() {
    let p = Project::with_shipped_files();
    p.script(
        "rt",
        r#"local export, import = require "export", require "import"
        return { params = { fmt = {} }, run = function(ctx)
          local src = ferry.sqlite.open("data/src.db")
          src:exec("CREATE TABLE IF NOT EXISTS t (id INTEGER, name TEXT, amount REAL)")
          src:exec("DELETE FROM t")
          src:exec("INSERT INTO t VALUES (1, 'plain', 1.5), (2, 'comma, \"quote\"', -2.25), (3, 'üñí', 0.0), (4, 'multi\nline', 1e10)")
          local fmt = ctx.params.fmt
          export.run(ctx, { db = "data/src.db", table = "t", format = fmt, order_by = { "id" }, store = "data/rt",
                            create_table = fmt == "sql" or nil })
          local o = { db = "data/dst-" .. fmt .. ".db", table = "t", file = "data/rt/t." .. fmt,
                      types = fmt ~= "sql" and { id = "integer", amount = "float" } or nil }
          if fmt == "json" or fmt == "ndjson" then o.types = nil end
          import.run(ctx, o)
          local function dump(path)
            local out = {}
            for r in ferry.sqlite.open(path):query("SELECT id, name, amount FROM t ORDER BY id"):rows() do
              out[#out + 1] = string.format("%s|%s|%s", tostring(r.id), tostring(r.name), tostring(r.amount))
            end
            return table.concat(out, "\n")
          end
          local a, b = dump("data/src.db"), dump(o.db)
          return { equal = a == b, a = a, b = b }
        end }"#,
    );
    for fmt in ["csv", "json", "ndjson", "xlsx", "sql"] {
        let r = p.ferry(&["run", "rt", "-p", &format!("fmt={fmt}"), "--json"]);
        assert_eq!(r.code, 0, "{fmt}: {}", r.all());
        let s = &r.json()["summary"];
        assert_eq!(s["equal"], true, "{fmt}: {s}");
    }
}

#[test]
fn import_creates_typed_tables_and_logs_the_ddl() {
    let p = Project::with_shipped_files();
    p.write("data/in/x.csv", "id,name,amount\n1,a,1.5\n");
    p.script(
        "ty",
        r#"local import = require "import"
        return { run = function(ctx)
          import.run(ctx, { db = "data/ty.db", table = "t", file = "data/in/x.csv", types = { id = "integer", amount = "float" } })
          local cols = {}
          for r in ferry.sqlite.open("data/ty.db"):query("SELECT name, type FROM pragma_table_info('t') ORDER BY cid"):rows() do
            cols[#cols + 1] = r.name .. " " .. r.type
          end
          return cols
        end }"#,
    );
    let r = p.ferry(&["run", "ty", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(
        v["summary"],
        json!(["id INTEGER", "name TEXT", "amount REAL"])
    );
    let show = p.show(1);
    assert!(
        show["logs"][0]["message"].as_str().unwrap().contains(
            r#"created table: CREATE TABLE "t" ("id" INTEGER, "name" TEXT, "amount" REAL)"#
        ),
        "{show}"
    );
}

#[test]
fn import_infers_column_types_from_a_sample_without_losing_rows_that_do_not_fit() {
    let p = Project::with_shipped_files();
    // 1500 rows: the sample (first 1000) sees integers in `n`, numbers in `price`, mixed text in
    // `code`; row 1400 has a word in `n`, which must be kept as text, not fail the import.
    let mut csv = String::from("n,price,code,empty\n");
    for i in 1..=1500 {
        let n = if i == 1400 {
            "many".to_string()
        } else {
            i.to_string()
        };
        let price = if i % 2 == 0 {
            format!("{i}.25")
        } else {
            i.to_string()
        };
        let code = if i % 3 == 0 {
            "x7".to_string()
        } else {
            i.to_string()
        };
        csv.push_str(&format!("{n},{price},{code},\n"));
    }
    p.write("data/in/infer.csv", &csv);
    p.script(
        "inf",
        r#"local import = require "import"
        return { run = function(ctx)
          local r = import.run(ctx, { db = "data/inf.db", table = "t", file = "data/in/infer.csv" })
          local db = ferry.sqlite.open("data/inf.db")
          local cols = {}
          for c in db:query("SELECT name, type FROM pragma_table_info('t') ORDER BY cid"):rows() do
            cols[#cols + 1] = c.name .. " " .. c.type
          end
          local kinds = {}
          for k in db:query("SELECT typeof(n) AS a, typeof(price) AS b, count(*) AS c FROM t GROUP BY 1, 2 ORDER BY 1, 2"):rows() do
            kinds[#kinds + 1] = k.a .. "/" .. k.b .. "=" .. k.c
          end
          return { cols = cols, kinds = kinds, inserted = r.inserted }
        end }"#,
    );
    let r = p.ferry(&["run", "inf", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(
        v["summary"]["cols"],
        json!(["n INTEGER", "price REAL", "code TEXT", "empty TEXT"])
    );
    assert_eq!(v["summary"]["inserted"], 1500);
    assert_eq!(
        v["summary"]["kinds"],
        json!(["integer/real=1499", "text/real=1"]),
        "{v}"
    );
}

#[test]
fn new_writes_a_loadable_job_from_every_template_and_never_overwrites() {
    let p = Project::new();
    for (name, template, plugins) in [
        ("plain", "blank", &[][..]),
        ("orders_out", "export", &["export"][..]),
        ("orders_in", "import", &["import"][..]),
        ("docs", "backup", &["backup"][..]),
        ("cache", "redis", &["redis", "backup"][..]),
    ] {
        let r = p.ferry(&["new", name, "--template", template]);
        assert_eq!(r.code, 0, "{template}: {}", r.all());
        assert!(
            r.stdout.contains(&format!("created scripts/{name}.lua")),
            "{}",
            r.all()
        );
        for plugin in plugins {
            assert!(
                p.path().join(format!("plugins/{plugin}.lua")).is_file(),
                "{template}: plugin {plugin}"
            );
        }
    }
    let r = p.ferry(&["check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stdout.matches("ok ").count(), 5, "{}", r.all());
    // README's own example: `ferry new greet`, then `ferry run greet -p name=Ada`.
    let r = p.ferry(&["run", "plain", "--json", "-p", "name=Ada"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["summary"]["greeted"], "Ada");

    // An existing script (and an edited plugin) are left alone.
    p.write(
        "scripts/plain.lua",
        "return { run = function() return 1 end }",
    );
    p.write("plugins/export.lua", "return {} -- mine");
    let r = p.ferry(&["new", "plain"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("scripts/plain.lua exists already"),
        "{}",
        r.all()
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("scripts/plain.lua")).unwrap(),
        "return { run = function() return 1 end }"
    );
    let r = p.ferry(&["new", "other_out", "--template", "export"]);
    assert_eq!(
        std::fs::read_to_string(p.path().join("plugins/export.lua")).unwrap(),
        "return {} -- mine"
    );
    assert_eq!(
        r.code,
        0,
        "a script that only requires the plugin still loads: {}",
        r.all()
    );
    for bad in ["../evil", "a b", "x.lua"] {
        let r = p.ferry(&["new", bad]);
        assert_eq!(r.code, 2, "{bad}: {}", r.all());
        assert!(r.stderr.contains("is not a job name"), "{}", r.all());
    }
    let r = p.ferry(&["new", "x", "--template", "nope"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("possible values"), "{}", r.all());
}

#[test]
fn export_from_a_missing_database_is_an_error_and_creates_nothing() {
    let p = Project::with_shipped_files();
    p.script(
        "exp_missing",
        r#"local export = require "export"
        return { run = function(ctx) return export.run(ctx, { db = "data/nope.db", table = "t" }) end }"#,
    );
    let r = p.ferry(&["run", "exp_missing", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("data/nope.db does not exist"), "{msg}");
    assert!(
        !p.path().join("data/nope.db").exists(),
        "no empty database is left behind"
    );
}

/// The `---@class NAME[: PARENT]` annotations of a Lua file with their `---@field` names, the
/// parent's fields included.
fn annotated_classes(source: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    use std::collections::BTreeMap;
    let mut own: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("---@class ") {
            let (name, parent) = match rest.split_once(':') {
                Some((n, p)) => (n.trim(), Some(p.trim().to_string())),
                None => (rest.trim(), None),
            };
            own.insert(name.to_string(), (parent, Vec::new()));
            current = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("---@field ") {
            let field = rest.split_whitespace().next().unwrap_or("");
            let field = field.trim_end_matches('?').to_string();
            if let Some(c) = &current {
                own.get_mut(c).expect("class").1.push(field);
            }
        } else {
            current = None;
        }
    }
    own.keys()
        .map(|name| {
            let mut fields = Vec::new();
            let mut at = Some(name.clone());
            while let Some(c) = at {
                let (parent, f) = own
                    .get(&c)
                    .unwrap_or_else(|| panic!("class {c} (a parent of {name}) is not annotated"));
                fields.extend(f.iter().cloned());
                at = parent.clone();
            }
            fields.sort();
            (name.clone(), fields)
        })
        .collect()
}

#[test]
fn the_shipped_plugins_annotate_exactly_the_options_their_schemas_take() {
    let p = Project::with_shipped_files();
    let mut probes = Vec::new();
    let mut expected = std::collections::BTreeMap::new();
    for plugin in ["backup", "export", "import", "redis"] {
        let source = std::fs::read_to_string(p.at(&format!("plugins/{plugin}.lua"))).unwrap();
        for (class, fields) in annotated_classes(&source) {
            // `MODULE.FUNCTION.Options` annotates the options of `require(MODULE).FUNCTION`.
            let Some(function) = class
                .strip_prefix(&format!("{plugin}."))
                .and_then(|c| c.strip_suffix(".Options"))
            else {
                continue;
            };
            assert!(
                source.contains(&format!("---@type fun(ctx: ferry.Context, opts: {class})"))
                    || source.contains(&format!("---@type fun(opts: {class})")),
                "plugins/{plugin}.lua: no function is annotated with {class}"
            );
            probes.push(format!("{{ {plugin:?}, {function:?} }}"));
            expected.insert(format!("{plugin}.{function}"), fields);
        }
    }
    assert!(expected.len() >= 12, "{expected:?}");
    // Each function is called with an unknown option in both places an options table can be;
    // its schema refuses it before doing anything and lists the options it takes.
    let file = p.root_script(
        "probe",
        &format!(
            r#"return {{ run = function(ctx)
                local out = {{}}
                for _, f in ipairs({{ {} }}) do
                  local bogus = {{ __probe = true }}
                  local ok, err = pcall(require(f[1])[f[2]], bogus, bogus)
                  assert(not ok, f[1] .. "." .. f[2] .. " took an unknown option")
                  out[f[1] .. "." .. f[2]] = tostring(err.message):match("the options are: (.*)$") or tostring(err)
                end
                return out
              end }}"#,
            probes.join(", ")
        ),
    );
    let r = p.run_file(&file);
    assert!(r.succeeded(), "{}", r.text());
    for (function, fields) in &expected {
        let taken = r.record["summary"][function].as_str().unwrap_or_default();
        let mut taken: Vec<&str> = taken.split(", ").collect();
        taken.sort();
        assert_eq!(
            taken, *fields,
            "{function}: the options its schema takes (left) differ from its annotated class (right)"
        );
    }
}
