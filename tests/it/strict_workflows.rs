//! Issue 13: workflows that refuse to do the wrong thing. Strict options (one schema mechanism,
//! one vocabulary per setting), times compared as instants, honest backup results, all-or-nothing
//! imports (zip archives included), artifacts that stay, array/object params, error values with
//! a kind, the Redis target database, `map` that forgets to return, one summary shape.

use crate::common;

use std::time::{Duration, SystemTime};

use common::redis::{RedisServer, contents, populate};
use common::{Daemon, Project, wait_for};
use serde_json::{Value, json};

/// `ferry run ARGS --json` → (exit code, run record, all output).
fn run(p: &Project, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--json");
    let r = p.ferry(&all);
    let json = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r.code, json, r.all())
}

fn error_of(run: &Value) -> String {
    run["error"]["message"].as_str().unwrap_or("").to_string()
}

/// Sets a file's modification time.
fn set_mtime(path: &std::path::Path, epoch: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))
        .unwrap();
}

// 2026-11-20T05:00:00Z
const T0500Z: u64 = 1_795_150_800;

#[test]
fn plugin_options_are_checked_by_one_schema_naming_option_values_and_script_line() {
    let p = Project::with_shipped_files();
    p.write("data/docs/a.txt", "one");
    let (code, _, out) = run(&p, &["nightly_backup", "-p", "kind=full"]);
    assert_eq!(code, 0, "{out}");
    p.write("data/r/a.txt", "local edit");

    // A bad enum value is refused before anything is written (it used to overwrite).
    let (code, rec, out) = run(
        &p,
        &["restore", "-p", "target=data/r", "-p", "conflict=bogus"],
    );
    assert_eq!(code, 1, "{out}");
    let msg = error_of(&rec);
    assert!(
        msg.starts_with("scripts/restore.lua:12: backup.restore: option `on_conflict`"),
        "{msg}"
    );
    for want in [
        "\"skip\", \"overwrite\", \"fail\"",
        "SKIP, OVERWRITE, FAIL",
        "got \"bogus\"",
    ] {
        assert!(msg.contains(want), "{want} missing: {msg}");
    }
    assert_eq!(
        std::fs::read_to_string(p.at("data/r/a.txt")).unwrap(),
        "local edit"
    );

    // The reference services' upper-case spellings are aliases of the one vocabulary.
    let (code, rec, out) = run(
        &p,
        &[
            "restore",
            "-p",
            "target=data/r",
            "-p",
            "conflict=OVERWRITE",
            "-p",
            "on_error=FAST_FAIL",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(rec["summary"]["restored"], 1);
    assert_eq!(
        std::fs::read_to_string(p.at("data/r/a.txt")).unwrap(),
        "one"
    );

    // An unknown option is an error naming it, the known ones and the calling line.
    p.script(
        "typo",
        r#"local backup = require "backup"
return { run = function(ctx)
  return backup.run(ctx, { source = "data/docs", point = "data/backups", set = "docs",
    on_eror = "continue" })
end }"#,
    );
    let (code, rec, _) = run(&p, &["typo"]);
    assert_eq!(code, 1);
    let msg = error_of(&rec);
    assert!(
        msg.starts_with("scripts/typo.lua:3: backup.run: unknown option `on_eror`"),
        "{msg}"
    );
    assert!(
        msg.contains("on_error") && msg.contains("compression"),
        "{msg}"
    );

    // Every plugin checks its options the same way.
    p.script(
        "each",
        r#"local export, import, redis = require "export", require "import", require "redis"
return { run = function(ctx)
  local out = {}
  for name, f in pairs({
    export = function() export.run(ctx, { db = "data/x.db", table = "t", format = "pdf" }) end,
    import = function() import.run(ctx, { db = "data/x.db", table = "t", file = "x.csv", on_error = "sometimes" }) end,
    migrate = function() redis.import(ctx, { target = "redis://127.0.0.1:1/0", method = "partial" }) end,
    backup = function() redis.backup(ctx, { url = "redis://127.0.0.1:1/0", mode = "magic" }) end,
  }) do
    local ok, err = pcall(f)
    out[name] = { ok = ok, kind = err.kind, text = tostring(err) }
  end
  return out
end }"#,
    );
    let (code, rec, out) = run(&p, &["each"]);
    assert_eq!(code, 0, "{out}");
    let s = &rec["summary"];
    for (name, option, got) in [
        ("export", "format", "pdf"),
        ("import", "on_error", "sometimes"),
        ("migrate", "method", "partial"),
        ("backup", "mode", "magic"),
    ] {
        let text = s[name]["text"].as_str().unwrap();
        assert_eq!(s[name]["kind"], "invalid", "{name}: {text}");
        assert!(text.starts_with("scripts/each.lua:"), "{name}: {text}");
        assert!(
            text.contains(&format!("option `{option}`: expected one of")),
            "{name}: {text}"
        );
        assert!(text.contains(&format!("got \"{got}\"")), "{name}: {text}");
    }

    // No hand-written "must be one of" checks are left in the plugins.
    for entry in std::fs::read_dir(p.at("plugins")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains("must be \\\""),
            "a hand-written enum check is left"
        );
    }
}

#[test]
fn scripts_use_the_same_schemas_and_host_options_the_same_vocabulary() {
    let p = Project::new();
    p.script(
        "own",
        r#"local S = ferry.schema("mine", {
  policy = { enum = "on_error", default = "fail_fast" },
  color = { enum = { "red", "green" }, aliases = { rouge = "red" } },
  when = "time",
  tags = { type = "list", items = "string" },
  need = { type = "integer", required = true },
})
return { run = function(ctx)
  local a = S:check({ need = 1, policy = "CONTINUE", color = "ROUGE", when = "2026-11-20T10:00:00+05:00", tags = { "x" } })
  local b = ferry.options({ need = 2 }, S)
  local errs = {}
  for i, bad in ipairs({ { need = 1, policy = "maybe" }, { need = 1, colour = "red" }, {}, { need = "one" },
                         { need = 1, tags = { 1 } }, { need = 1, when = "yesterday" } }) do
    local ok, err = pcall(S.check, S, bad)
    errs[i] = tostring(err)
  end
  -- Host functions take the same vocabulary: fail_fast/continue (and FAST_FAIL, fail), and
  -- skip/overwrite/fail (and replace) for conflicts.
  local db = ferry.sqlite.open("data/v.db")
  db:exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
  db:exec("INSERT INTO t VALUES (1, 'old')")
  local src = ferry.csv.reader("id,v\n1,new\nx,bad\n", { types = { id = "integer" }, on_error = "CONTINUE" })
  local inserted = db:insert("t", src, { on_conflict = "OVERWRITE" })
  local v = db:query("SELECT v FROM t WHERE id = 1"):read(1)[1].v
  local ok, bad_policy = pcall(ferry.csv.reader, "a\n1\n", { on_error = "ignore" })
  return { a = a, b = b, errs = errs, v = v, inserted = inserted, bad_policy = tostring(bad_policy),
           vocab = ferry.vocab }
end }"#,
    );
    let (code, rec, out) = run(&p, &["own"]);
    assert_eq!(code, 0, "{out}");
    let s = &rec["summary"];
    assert_eq!(
        s["a"],
        json!({"need": 1, "policy": "continue", "color": "red", "when": T0500Z, "tags": ["x"]})
    );
    assert_eq!(s["b"], json!({"need": 2, "policy": "fail_fast"}));
    let errs: Vec<&str> = s["errs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let want = [
        "mine: option `policy`: expected one of \"fail_fast\", \"continue\"",
        "mine: unknown option `colour`; the options are: color, need, policy, tags, when",
        "mine: option `need` is required (an integer)",
        "mine: option `need`: expected an integer, got string",
        "mine: option `tags`: item 1: expected a string, got integer",
        "mine: option `when`: expected a time",
    ];
    for (got, want) in errs.iter().zip(want) {
        assert!(got.starts_with("scripts/own.lua:"), "{got}");
        assert!(got.contains(want), "{got} should contain {want}");
    }
    assert_eq!(s["v"], "new");
    assert_eq!(s["inserted"], 1);
    let bad = s["bad_policy"].as_str().unwrap();
    assert!(
        bad.contains("option `on_error`: expected one of \"fail_fast\", \"continue\""),
        "{bad}"
    );
    assert_eq!(
        s["vocab"]["on_conflict"],
        json!(["skip", "overwrite", "fail"])
    );
}

#[test]
fn every_time_option_compares_instants_whatever_the_offset() {
    let p = Project::with_shipped_files();
    p.write("data/docs/early.txt", "before");
    p.write("data/docs/late.txt", "after");
    set_mtime(&p.at("data/docs/early.txt"), T0500Z - 3600);
    set_mtime(&p.at("data/docs/late.txt"), T0500Z + 60);
    p.script(
        "since",
        r#"local backup = require "backup"
return { params = { since = {}, set = {} }, run = function(ctx)
  return backup.run(ctx, { source = "data/docs", point = "data/backups", set = ctx.params.set, since = ctx.params.since })
end }"#,
    );
    // The same instant in several offsets, a date and epoch seconds.
    for (i, since) in [
        "2026-11-20T10:00:00+05:00",
        "2026-11-19T21:00:00-08:00",
        "2026-11-20T05:00:00Z",
        &T0500Z.to_string(),
    ]
    .iter()
    .enumerate()
    {
        let set = format!("s{i}");
        let (code, rec, out) = run(
            &p,
            &[
                "since",
                "-p",
                &format!("since={since}"),
                "-p",
                &format!("set={set}"),
            ],
        );
        assert_eq!(code, 0, "{since}: {out}");
        assert_eq!(rec["summary"]["copied"], 1, "{since}: {rec}");
        assert_eq!(
            p.files(&format!("data/backups/{set}"))
                .iter()
                .filter(|f| f.contains("/data/"))
                .count(),
            1
        );
        assert!(p.at(&format!("data/backups/{set}")).exists());
    }
    let (code, rec, _) = run(&p, &["since", "-p", "since=2026-11-19", "-p", "set=d"]);
    assert_eq!(code, 0);
    assert_eq!(rec["summary"]["copied"], 2);
    let (code, rec, _) = run(&p, &["since", "-p", "since=last tuesday", "-p", "set=bad"]);
    assert_eq!(code, 1);
    let msg = error_of(&rec);
    assert!(
        msg.contains("option `since`: expected a time") && msg.contains("\"last tuesday\""),
        "{msg}"
    );

    // backup.list and ferry.time.parse: instants, not text.
    p.script(
        "listing",
        r#"local backup = require "backup"
return { run = function(ctx)
  local now = ferry.time.now()
  local function at(epoch, offset_hours)
    local shifted = ferry.time.format(epoch + offset_hours * 3600, "%Y-%m-%dT%H:%M:%S")
    local sign = offset_hours < 0 and "-" or "+"
    return string.format("%s%s%02d:00", shifted, sign, math.abs(offset_hours))
  end
  local count = function(o) o.point = "data/backups"; o.set = "s0"; return #backup.list(o) end
  return {
    since_plus5 = count({ since = at(now - 3600, 5) }),
    since_minus8 = count({ since = at(now - 3600, -8) }),
    since_future = count({ since = at(now + 3600, 5) }),
    until_past = count({ ["until"] = at(now - 3600, -8) }),
    until_future = count({ until_ = at(now + 3600, 5) }),
    same = ferry.time.parse("2026-11-20T10:00:00+05:00") == ferry.time.parse("2026-11-19T21:00:00-08:00"),
    z = ferry.time.parse("2026-11-20T05:00:00Z"), epoch = ferry.time.parse(1795150800), text_epoch = ferry.time.parse("1795150800"),
    ms = ferry.time.parse("2026-11-20T05:00:00.250Z"),
  }
end }"#,
    );
    let (code, rec, out) = run(&p, &["listing"]);
    assert_eq!(code, 0, "{out}");
    let s = &rec["summary"];
    assert_eq!(
        (
            s["since_plus5"].clone(),
            s["since_minus8"].clone(),
            s["since_future"].clone()
        ),
        (json!(1), json!(1), json!(0)),
        "{s}"
    );
    assert_eq!(
        (s["until_past"].clone(), s["until_future"].clone()),
        (json!(0), json!(1)),
        "{s}"
    );
    assert_eq!(s["same"], true);
    assert_eq!(
        (s["z"].clone(), s["epoch"].clone(), s["text_epoch"].clone()),
        (json!(T0500Z), json!(T0500Z), json!(T0500Z))
    );
    assert_eq!(s["ms"], json!(T0500Z as f64 + 0.25));

    // Export filters take the same times.
    p.script(
        "exp",
        r#"local export = require "export"
return { params = { since = {}, ["until"] = {} }, run = function(ctx)
  local db = ferry.sqlite.open("data/ev.db")
  db:exec("CREATE TABLE IF NOT EXISTS ev (id INTEGER, at INTEGER)")
  db:exec("DELETE FROM ev")
  db:exec("INSERT INTO ev VALUES (1, ?), (2, ?), (3, ?)", { 1795150800 - 1, 1795150800, 1795150800 + 3600 })
  return export.run(ctx, { db = "data/ev.db", table = "ev", since = ctx.params.since, ["until"] = ctx.params["until"],
    time_column = "at", order_by = { "id" } })
end }"#,
    );
    let (code, rec, out) = run(
        &p,
        &[
            "exp",
            "-p",
            "since=2026-11-19T21:00:00-08:00",
            "-p",
            "until=2026-11-20T10:30:00+05:00",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(rec["summary"]["rows"], 1);
    assert_eq!(
        std::fs::read_to_string(p.at("data/exports/ev.csv")).unwrap(),
        format!("id,at\n2,{T0500Z}\n")
    );

    // The API's run filters too.
    let d = Daemon::start(&p);
    let http = reqwest::blocking::Client::new();
    for q in [
        "since=2020-01-01T10:00:00%2B05:00",
        "since=2020-01-01",
        "since=1577836800",
        "until=2126-01-01T00:00:00-08:00",
    ] {
        let r = http
            .get(format!("{}/api/v1/runs?{q}", d.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{q}");
        assert!(
            r.json::<Value>().unwrap()["total"].as_u64().unwrap() >= 6,
            "{q}"
        );
    }
    let r = http
        .get(format!("{}/api/v1/runs?since=soon", d.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn backups_report_every_entry_they_cannot_read_and_honour_on_error() {
    let p = Project::with_shipped_files();
    p.write("data/docs/a.txt", "one");
    p.write("data/docs/sub/b.txt", "two");
    std::os::unix::fs::symlink("gone.txt", p.at("data/docs/dangling.txt")).unwrap();
    let fifo = std::ffi::CString::new(p.at("data/docs/sub/pipe").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    p.script(
        "bk",
        r#"local backup = require "backup"
return { params = { on_error = { default = "fail_fast" }, source = { default = "data/docs" } }, run = function(ctx)
  return backup.run(ctx, { source = ctx.params.source, point = "data/backups", set = "docs", on_error = ctx.params.on_error })
end }"#,
    );
    // fail_fast (the default): the run fails naming each entry and its reason; nothing is written.
    let (code, rec, out) = run(&p, &["bk"]);
    assert_eq!(code, 1, "{out}");
    let msg = error_of(&rec);
    assert!(
        msg.starts_with("scripts/bk.lua:3: backup.run: 2 entries of"),
        "{msg}"
    );
    assert!(msg.contains("dangling.txt (dangling symlink"), "{msg}");
    assert!(msg.contains("sub/pipe (a named pipe (fifo)"), "{msg}");
    assert!(
        p.files("data/backups").is_empty(),
        "{:?}",
        p.files("data/backups")
    );

    // continue: the rest is backed up; log and summary name every entry left out.
    let (code, rec, out) = run(&p, &["bk", "-p", "on_error=CONTINUE"]);
    assert_eq!(code, 0, "{out}");
    let s = &rec["summary"];
    assert_eq!(
        (s["files"].clone(), s["failed"].clone()),
        (json!(2), json!(2)),
        "{s}"
    );
    let errors = s["errors"].as_array().unwrap();
    assert_eq!(errors[0]["path"], "dangling.txt");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("dangling symlink"),
        "{s}"
    );
    assert_eq!(errors[1]["path"], "sub/pipe");
    assert!(
        out.contains("cannot back up dangling.txt: dangling symlink"),
        "{out}"
    );
    assert!(
        out.contains("cannot back up sub/pipe: a named pipe"),
        "{out}"
    );
    let id = s["id"].as_str().unwrap();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(p.at(&format!("data/backups/docs/{id}/manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["errors"].as_array().unwrap().len(), 2);
    assert_eq!(manifest["files"].as_array().unwrap().len(), 2);

    // A clean source reports an empty array, not an object.
    std::fs::remove_file(p.at("data/docs/dangling.txt")).unwrap();
    std::fs::remove_file(p.at("data/docs/sub/pipe")).unwrap();
    let (code, rec, _) = run(&p, &["bk"]);
    assert_eq!(code, 0);
    assert_eq!(rec["summary"]["errors"], json!([]));

    // A missing source folder is an error, not "0 files".
    let (code, rec, _) = run(&p, &["bk", "-p", "source=data/nothing-here"]);
    assert_eq!(code, 1);
    let msg = error_of(&rec);
    assert!(
        msg.contains("backup.run: the source file://")
            && msg.contains("data/nothing-here does not exist"),
        "{msg}"
    );
}

#[test]
fn restore_summaries_have_one_shape_without_tracebacks() {
    let p = Project::with_shipped_files();
    p.write("data/docs/a.txt", "one");
    p.write("data/docs/b.txt", "two");
    let (code, rec, _) = run(&p, &["nightly_backup", "-p", "kind=full"]);
    assert_eq!(code, 0);
    let id = rec["summary"]["id"].as_str().unwrap().to_string();
    let (code, rec, _) = run(&p, &["restore", "-p", "target=data/r1"]);
    assert_eq!(code, 0);
    assert_eq!(rec["summary"]["errors"], json!([]));
    p.write(&format!("data/backups/docs/{id}/data/b.txt"), "tampered");
    p.write("data/r2/a.txt", "here");
    let (code, rec, out) = run(
        &p,
        &[
            "restore",
            "-p",
            "target=data/r2",
            "-p",
            "on_error=continue",
            "-p",
            "conflict=fail",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let errors = rec["summary"]["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 2, "{rec}");
    assert_eq!(errors[0]["path"], "a.txt");
    assert_eq!(
        errors[0]["error"],
        "exists at the target (on_conflict = \"fail\")"
    );
    assert_eq!(errors[1]["path"], "b.txt");
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("checksum mismatch in backup"),
        "{errors:?}"
    );
    for e in &errors {
        assert_eq!(e.as_object().unwrap().len(), 2, "{e}");
        assert!(!e["error"].as_str().unwrap().contains("traceback"), "{e}");
    }
}

#[test]
fn imports_are_all_or_nothing_with_the_table_and_read_zipped_exports() {
    let p = Project::with_shipped_files();
    p.write("data/in/bad.csv", "id,name\n1,a\nx,b\n");
    p.script(
        "imp",
        r#"local import = require "import"
return { params = { file = {}, table = {}, typed = { type = "boolean", default = true } }, run = function(ctx)
  return import.run(ctx, { db = "data/imp.db", table = ctx.params.table, file = ctx.params.file,
    types = ctx.params.typed and { id = "integer" } or nil })
end }"#,
    );
    let (code, rec, _) = run(
        &p,
        &["imp", "-p", "file=data/in/bad.csv", "-p", "table=fresh"],
    );
    assert_eq!(code, 1);
    assert!(error_of(&rec).contains("line 3"), "{rec}");
    let db = rusqlite::Connection::open(p.at("data/imp.db")).unwrap();
    let tables: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'fresh'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "a failed import left its table behind");

    // db:insert with create = true outside a transaction is all-or-nothing too.
    p.script(
        "ins",
        r#"return { run = function(ctx)
  local db = ferry.sqlite.open("data/imp.db")
  local ok, err = pcall(db.insert, db, "made", ferry.csv.reader("id\n1\nx\n", { types = { id = "integer" } }), { create = true })
  local n = 0
  for _ in db:query("SELECT 1 FROM sqlite_master WHERE name = 'made'"):rows() do n = n + 1 end
  return { ok = ok, kind = err.kind, tables = n }
end }"#,
    );
    let (code, rec, out) = run(&p, &["ins"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        rec["summary"],
        json!({"ok": false, "kind": "data", "tables": 0})
    );

    // Seed 000: the import reads what the export wrote, a zipped CSV.
    let (code, rec, out) = run(&p, &["nightly_export"]);
    assert_eq!(code, 0, "{out}");
    let rows = rec["summary"]["rows"].as_i64().unwrap();
    assert!(rows > 100);
    let (code, rec, out) = run(
        &p,
        &[
            "imp",
            "-p",
            "file=data/exports/orders.zip",
            "-p",
            "table=orders_back",
            "-p",
            "typed=false",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(rec["summary"]["inserted"], rows, "{rec}");
    assert_eq!(
        rec["summary"]["entries"][0]["file"],
        "data/exports/orders.zip/orders.csv"
    );
    let n: i64 = db
        .query_row("SELECT count(*) FROM orders_back", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, rows);

    // A zip with a bad entry imports nothing, not even the good entries' tables.
    p.script(
        "mkzip",
        r#"return { run = function(ctx)
  local z = ferry.zip.writer(ferry.store("data/in"):create("two.zip"))
  z:add("good.csv", "id\n1\n2\n")
  z:add("worse.csv", "id\n3\nnope\n")
  z:close()
end }"#,
    );
    assert_eq!(run(&p, &["mkzip"]).0, 0);
    p.script(
        "impz",
        r#"local import = require "import"
return { run = function(ctx)
  return import.run(ctx, { db = "data/imp.db", file = "data/in/two.zip", types = { id = "integer" } })
end }"#,
    );
    let (code, rec, _) = run(&p, &["impz"]);
    assert_eq!(code, 1);
    assert!(error_of(&rec).contains("worse.csv"), "{rec}");
    let tables: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('good', 'worse')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}

#[test]
fn artifacts_are_immutable_and_belong_to_their_run() {
    let p = Project::new();
    p.script(
        "art",
        r#"return { params = { text = {} }, run = function(ctx)
  local s = ferry.store("data/out")
  s:write("report.txt", ctx.params.text)
  ctx.artifact(s, "report.txt")
  return { ok = true }
end }"#,
    );
    let (code, first, out) = run(&p, &["art", "-p", "text=first version"]);
    assert_eq!(code, 0, "{out}");
    let (code, second, _) = run(&p, &["art", "-p", "text=the second, longer version"]);
    assert_eq!(code, 0);
    let (id1, id2) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );
    // A script cannot reach the copies.
    p.script(
        "tamper",
        r#"return { run = function(ctx)
  local ok, err = pcall(function() ferry.store("data/.ferry/artifacts"):write("1/report.txt", "evil") end)
  return { ok = ok, kind = err.kind }
end }"#,
    );
    let (_, rec, _) = run(&p, &["tamper"]);
    assert_eq!(rec["summary"], json!({"ok": false, "kind": "denied"}));

    let sha = |text: &str| {
        use sha2::Digest;
        let d = sha2::Sha256::digest(text.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    // `ferry runs show`: size and SHA-256, as JSON and as text.
    let shown = p.show(id1);
    let a = &shown["artifacts"][0];
    assert_eq!(a["size"], 13);
    assert_eq!(a["sha256"], sha("first version"));
    let text = p.ferry(&["runs", "show", &id1.to_string()]).stdout;
    assert!(
        text.contains(&format!("13 bytes, sha256 {}", sha("first version"))),
        "{text}"
    );

    // The API serves what each run recorded, though run 2 overwrote the store path.
    let d = Daemon::start(&p);
    let http = reqwest::blocking::Client::new();
    let get = |id: i64| {
        let r = http
            .get(format!("{}/api/v1/runs/{id}/artifacts/report.txt", d.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().unwrap()
    };
    assert_eq!(get(id1), "first version");
    assert_eq!(get(id2), "the second, longer version");
    let detail: Value = http
        .get(format!("{}/api/v1/runs/{id2}", d.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(detail["artifacts"][0]["size"], 26);
    assert_eq!(
        detail["artifacts"][0]["sha256"],
        sha("the second, longer version")
    );
    std::fs::remove_file(p.at("data/out/report.txt")).unwrap();
    assert_eq!(get(id1), "first version");

    // Deleting a run deletes its copies.
    let r = http
        .delete(format!("{}/api/v1/runs/{id1}", d.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!p.at(&format!("data/.ferry/artifacts/{id1}")).exists());
    assert!(
        p.at(&format!("data/.ferry/artifacts/{id2}/report.txt"))
            .exists()
    );
    drop(d);
    assert_eq!(p.ferry(&["runs", "delete", &id2.to_string()]).code, 0);
    assert!(!p.at(&format!("data/.ferry/artifacts/{id2}")).exists());
}

#[test]
fn array_and_object_params_are_declared_converted_and_validated() {
    let p = Project::new();
    p.script(
        "lists",
        r#"return {
  params = {
    ids = { type = "array", items = "integer", default = {} },
    keys = { type = "array" },
    filter = { type = "object", description = "column = value" },
  },
  run = function(ctx)
    local sum = 0
    for _, id in ipairs(ctx.params.ids) do sum = sum + id end
    return { ids = ctx.params.ids, sum = sum, keys = ctx.params.keys, filter = ctx.params.filter,
             integer = math.type(ctx.params.ids[1] or 0) }
  end,
}"#,
    );
    let (code, rec, out) = run(
        &p,
        &[
            "lists",
            "-p",
            "ids=[1, 2, 3]",
            "-p",
            r#"keys=["a", {"b": 1}]"#,
            "-p",
            r#"filter={"paid": true}"#,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let s = &rec["summary"];
    assert_eq!(s["ids"], json!([1, 2, 3]));
    assert_eq!(
        (s["sum"].clone(), s["integer"].clone()),
        (json!(6), json!("integer"))
    );
    assert_eq!(s["keys"], json!(["a", {"b": 1}]));
    assert_eq!(s["filter"], json!({"paid": true}));
    // The default empty list stays a list.
    let (code, rec, _) = run(&p, &["lists"]);
    assert_eq!(code, 0);
    assert_eq!(rec["summary"]["ids"], json!([]));

    for (arg, want) in [
        ("ids=1,2", "param `ids`: expected array"),
        (
            "ids=[1, \"x\"]",
            "param `ids`: item 2: expected integer, got \"x\"",
        ),
        ("filter=[1]", "param `filter`: expected object"),
        ("keys={\"a\": 1}", "param `keys`: expected array"),
    ] {
        let r = p.ferry(&["run", "lists", "-p", arg]);
        assert_eq!(r.code, 2, "{arg}");
        assert!(r.stderr.contains(want), "{arg}: {}", r.all());
    }

    // The API takes JSON values (and JSON text), validated the same way; the job lists the types.
    let d = Daemon::start(&p);
    let http = reqwest::blocking::Client::new();
    let post = |body: Value| {
        http.post(format!("{}/api/v1/jobs/lists/runs", d.url))
            .json(&body)
            .send()
            .unwrap()
    };
    let r = post(json!({"params": {"ids": [4, "5"], "filter": "{\"a\": [1]}"}}));
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let run = wait_for("the run", Duration::from_secs(30), || {
        let v: Value = http
            .get(format!("{}/api/v1/runs/{id}", d.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        (v["state"] == "succeeded" || v["state"] == "failed").then_some(v)
    });
    assert_eq!(run["summary"]["sum"], 9, "{run}");
    assert_eq!(run["summary"]["filter"], json!({"a": [1]}));
    let r = post(json!({"params": {"ids": [1.5]}}));
    assert_eq!(r.status(), 422);
    assert!(
        r.text()
            .unwrap()
            .contains("param `ids`: item 1: expected integer")
    );
    let job: Value = http
        .get(format!("{}/api/v1/jobs/lists", d.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(job["params"]["ids"]["type"], "array", "{job}");
    assert_eq!(job["params"]["ids"]["items"], "integer", "{job}");
    assert_eq!(job["params"]["filter"]["type"], "object", "{job}");

    // A declaration that makes no sense is refused when the script loads.
    p.script("badp", r#"return { params = { n = { type = "integer", items = "string" } }, run = function() end }"#);
    let r = p.ferry(&["check", "scripts/badp.lua"]);
    assert_eq!(r.code, 1);
    assert!(r.all().contains("params.n.items"), "{}", r.all());
}

#[test]
fn host_errors_reach_lua_as_values_with_a_kind() {
    let p = Project::with_config("");
    p.write("data/x.txt", "x");
    p.script(
        "kinds",
        r#"return { run = function(ctx)
  local s = ferry.store("data")
  local out = {}
  local function try(name, f, ...)
    local ok, err = pcall(f, ...)
    out[name] = { kind = err.kind, message = err.message, location = err.location, text = tostring(err) }
  end
  try("missing", s.read, s, "nope.txt")
  try("exists", s.write, s, "x.txt", "y", { if_absent = true })
  try("denied", ferry.store, "/etc")
  try("invalid", ferry.csv.reader, "a\n", { delimiter = ";;" })
  try("data", function() for _ in ferry.csv.reader("a,b\n1\n", { }):rows() do end end)
  try("secret", ctx.secret, "not_set_anywhere")
  try("raised", ferry.error, "conflict", "mine")
  try("sql", function() ferry.sqlite.open("data/k.db"):exec("SELEKT 1") end)
  -- xpcall handlers and coroutines see the same values.
  local _, via_x = xpcall(s.read, function(e) return e.kind end, s, "nope.txt")
  local co = coroutine.wrap(function() return s:read("nope.txt") end)
  local _, via_co = pcall(co)
  -- Lua's own errors stay strings.
  local _, plain = pcall(error, "just text")
  return { out = out, via_x = via_x, via_co = via_co.kind, plain = plain, plain_type = type(plain) }
end }"#,
    );
    let (code, rec, out) = run(&p, &["kinds"]);
    assert_eq!(code, 0, "{out}");
    let s = &rec["summary"];
    for (name, kind) in [
        ("missing", "not_found"),
        ("exists", "already_exists"),
        ("denied", "denied"),
        ("invalid", "invalid"),
        ("data", "data"),
        ("secret", "not_found"),
        ("raised", "conflict"),
        ("sql", "sql"),
    ] {
        let e = &s["out"][name];
        assert_eq!(e["kind"], kind, "{name}: {e}");
        let text = e["text"].as_str().unwrap();
        let loc = e["location"].as_str().unwrap();
        assert!(loc.starts_with("scripts/kinds.lua:"), "{name}: {e}");
        assert_eq!(
            text,
            format!("{loc}: {}", e["message"].as_str().unwrap()),
            "{name}"
        );
        assert!(
            !text.contains("traceback") && !text.contains("runtime error"),
            "{name}: {text}"
        );
    }
    assert!(
        s["out"]["missing"]["message"]
            .as_str()
            .unwrap()
            .ends_with("read \"nope.txt\": not found")
    );
    assert_eq!(s["via_x"], "not_found");
    assert_eq!(s["via_co"], "not_found");
    assert_eq!(s["plain_type"], "string");
}

#[test]
fn a_map_that_returns_nothing_is_an_error_naming_its_line() {
    let p = Project::with_config("");
    p.script(
        "forgot",
        r#"return { run = function(ctx)
  local db = ferry.sqlite.open("data/m.db")
  db:exec("CREATE TABLE IF NOT EXISTS n (x INTEGER)")
  db:exec("INSERT INTO n VALUES (1), (2)")
  return { n = ferry.pipe(db:query("SELECT x FROM n"), db:writer("out", { create = true }), {
    map = function(rows)
      for _, r in ipairs(rows) do r.x = r.x * 10 end
    end,
  }) }
end }"#,
    );
    let (code, rec, _) = run(&p, &["forgot"]);
    assert_eq!(code, 1);
    let msg = error_of(&rec);
    assert!(msg.starts_with("scripts/forgot.lua:5: ferry.pipe: map (the function at scripts/forgot.lua:6) returned nothing for a batch of 2 rows"), "{msg}");
    let db = rusqlite::Connection::open(p.at("data/m.db")).unwrap();
    let out: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'out'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(out, 0, "nothing was written");
}

#[test]
fn redis_copy_writes_into_the_target_database() {
    let source = RedisServer::start();
    populate(&source, 20);
    let target = RedisServer::start();
    let p = Project::with_shipped_files();
    let (code, rec, out) = run(
        &p,
        &[
            "redis_copy",
            "-p",
            &format!("source={}", source.url(0)),
            "-p",
            &format!("target={}", target.url(5)),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let want = contents(&source, &[0]);
    assert!(!want.is_empty());
    assert_eq!(rec["summary"]["keys"], want.len() as u64, "{rec}");
    let got = contents(&target, &[0, 5]);
    assert!(
        got.keys().all(|(db, _)| *db == 5),
        "keys landed outside database 5"
    );
    assert_eq!(got.len(), want.len());
    let _: () = redis::cmd("FLUSHALL").query(&mut target.con()).unwrap();
    // The primitive too: a scan of database 0 restored through a connection to database 2.
    p.script(
        "prim",
        &r#"return { run = function(ctx)
  return { n = ferry.pipe(ferry.redis.connect("SRC"):scan(), ferry.redis.connect("DST"):restore()) }
end }"#
            .replace("SRC", &source.url(0))
            .replace("DST", &target.url(2)),
    );
    let (code, _, out) = run(&p, &["prim"]);
    assert_eq!(code, 0, "{out}");
    assert!(contents(&target, &[0, 2]).keys().all(|(db, _)| *db == 2));
}
