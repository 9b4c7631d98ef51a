//! Redis through the real binary against real `redis-server` instances: the `ferry.redis`
//! primitives, RDB import from the S3 emulator, ferry's own Redis backups, conflict policies,
//! failures that must leave the target untouched and keep secrets out, and cancellation.

use crate::common;

use std::time::{Duration, Instant};

use common::redis::{RedisServer, assert_same, contents, dead_port, populate};
use common::{Project, wait_for};
use serde_json::Value;

const PASSWORD: &str = "pw-Sup3r-s3cret-4711";

/// `ferry run ARGS --json` with the Redis password secret set; (exit code, run JSON, all output).
fn run(p: &Project, args: &[&str]) -> (i32, Value, String) {
    run_env(p, args, &[("FERRY_SECRET_REDIS_PASSWORD", PASSWORD)])
}

/// `ferry run JOB -p K=V... --json`, with the password secret when `secret`.
fn job(p: &Project, name: &str, params: &[String], secret: bool) -> (i32, Value, String) {
    let mut args = vec![name];
    for kv in params {
        args.extend(["-p", kv.as_str()]);
    }
    if secret {
        run(p, &args)
    } else {
        run_plain(p, &args)
    }
}

/// `ferry run ARGS --json` without secrets.
fn run_plain(p: &Project, args: &[&str]) -> (i32, Value, String) {
    run_env(p, args, &[])
}

fn run_env(p: &Project, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--json");
    let r = p.ferry_env(&all, env);
    let json = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r.code, json, r.all())
}

fn dbsize(server: &RedisServer, db: i64) -> i64 {
    redis::cmd("DBSIZE").query(&mut server.con_db(db)).unwrap()
}

#[test]
fn lua_primitives_call_pipeline_scan_and_restore() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let p = Project::with_shipped_files();
    p.script(
        "prims",
        &r#"return { run = function(ctx)
          local r = ferry.redis.connect("SRC")
          assert(r:call("SET", "a", 1) == "OK")
          assert(r:call("GET", "a") == "1")
          assert(r:call("GET", "missing") == nil)
          assert(r:call("INCRBY", "a", 41) == 42)
          r:call("HSET", "h", "f", 1.5, "g", "x")
          local replies = r:pipeline({ { "GET", "a" }, { "HGET", "h", "f" }, { "GET", "nope" }, { "INCR", "h" } })
          assert(replies[1] == "42" and replies[2] == "1.5" and replies[3] == false, ferry.json.encode(replies))
          assert(replies[4].err:find("WRONGTYPE"), replies[4].err)
          local tx = r:pipeline({ { "SET", "t1", "x" }, { "SET", "t2", "y" } }, { atomic = true })
          assert(tx[1] == "OK" and tx[2] == "OK")
          local ok, err = pcall(r.call, r, "INCR", "h")
          assert(not ok and tostring(err):find("INCR: WRONGTYPE"), tostring(err))
          -- Out of range is an error naming the range, not a value quietly moved into it.
          ok, err = pcall(r.scan, r, { count = 0 })
          assert(not ok and tostring(err):find("option `count`: 0 is out of range; expected 1 to 100000", 1, true), tostring(err))
          r:call("RPUSH", "list:1", "a", "b")
          r:call("SET", "bin", "\0\1\2")
          r:call("SET", "ttl", "v", "PX", 100000)
          local rows, types = 0, {}
          for row in r:scan({ match = "*" }):rows() do
            rows = rows + 1
            types[row.key] = row.type
            if row.key == "ttl" then assert(row.ttl > 90000 and row.expire_at > 0) else assert(row.ttl == nil) end
          end
          assert(rows == 7, rows)
          assert(types.h == "hash" and types["list:1"] == "list" and types.a == "string")
          local n = 0
          for _ in r:scan({ match = "t*", type = "string" }):rows() do n = n + 1 end
          assert(n == 3, n)
          local dst = ferry.redis.connect("DST")
          local sink = dst:restore({ mode = "skip" })
          dst:call("SET", "a", "kept")
          local moved = ferry.pipe(r:scan(), sink)
          local s = sink:stats()
          assert(moved == 7 and s.restored == 6 and s.skipped == 1, ferry.json.encode(s))
          assert(dst:call("GET", "a") == "kept")
          assert(dst:call("GET", "bin") == "\0\1\2")
          assert(dst:call("PTTL", "ttl") > 90000)
          return { moved = moved }
        end }"#
            .replace("SRC", &src.url(0))
            .replace("DST", &dst.url(0)),
    );
    let (code, json, out) = run(&p, &["prims"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["moved"], 7, "{json}");
    assert_eq!(dbsize(&dst, 0), 7);
}

#[test]
fn bad_arguments_and_options_are_clear() {
    let src = RedisServer::start();
    let p = Project::with_shipped_files();
    for (body, want) in [
        (
            r#"ferry.redis.connect("http://h/")"#,
            "unsupported URL scheme `http`",
        ),
        (
            r#"ferry.redis.connect("redis://h", { pasword = "x" })"#,
            "unknown option `pasword`",
        ),
        (
            r#"ferry.redis.connect("URL"):call()"#,
            "expected a command name",
        ),
        (
            r#"ferry.redis.connect("URL"):call("SET", {}, 1)"#,
            "argument 2: expected a string or a number, got table",
        ),
        (
            r#"ferry.redis.connect("URL"):pipeline({ "GET" })"#,
            "command 1 must be a table",
        ),
        (
            r#"ferry.redis.connect("URL"):restore({ mode = "merge" })"#,
            "option `mode`: expected \"replace\" or \"skip\"",
        ),
        (
            r#"ferry.redis.check("not an rdb file at all")"#,
            "not an RDB file",
        ),
        (
            r#"local s = ferry.redis.connect("URL"):restore(); s:write(setmetatable({ k = 1 }, {})); s:close()"#,
            "cannot tell the columns",
        ),
        (
            r#"ferry.pipe(ferry.csv.reader("a,b\n1,2\n"), ferry.redis.connect("URL"):restore())"#,
            "RESTORE needs rows with the columns `key` and `payload`",
        ),
    ] {
        p.script(
            "bad",
            &format!(
                "return {{ run = function(ctx) {} end }}",
                body.replace("URL", &src.url(0))
            ),
        );
        let (code, json, out) = run(&p, &["bad"]);
        assert_eq!(code, 1, "{body}: {out}");
        let msg = json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(want), "{body}: want {want:?} in {msg:?}");
        assert!(
            msg.contains("bad.lua:1"),
            "{body}: the script line is named: {msg}"
        );
    }
}

fn upload_script(p: &Project, s3: &common::s3::S3Server) {
    p.write(
        "ferry.toml",
        &format!(
            "[stores.bucket]\nurl = \"{}\"\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            s3.url("redis-dumps"),
            s3.endpoint(),
            s3.access_key,
            s3.secret_key
        ),
    );
    p.script(
        "upload",
        r#"return { params = { name = {} }, run = function(ctx)
          ferry.copy(ferry.store("data/store"), ctx.params.name, ferry.store("bucket"), ctx.params.name)
        end }"#,
    );
    p.script(
        "import",
        r#"local redis = require "redis"
        return { params = { target = {}, files = {}, method = { default = "full" }, backup_id = {} },
          run = function(ctx)
            return redis.import(ctx, { target = ctx.params.target, password = redis.secret(ctx, "redis_password"),
              store = "bucket", files = ctx.params.files, method = ctx.params.method })
          end }"#,
    );
}

#[test]
fn rdb_from_the_s3_emulator_imports_every_type_with_ttls() {
    let source = RedisServer::start();
    populate(&source, 1000);
    let want = contents(&source, &[0, 3]);
    let dump = source.save();
    let size = std::fs::metadata(&dump).unwrap().len();

    let target = RedisServer::start_with(Some(PASSWORD));
    let s3 = common::s3::S3Server::start();
    let p = Project::with_shipped_files();
    upload_script(&p, &s3);
    std::fs::create_dir_all(p.path().join("data/store")).unwrap();
    std::fs::copy(&dump, p.path().join("data/store/dump-0.rdb")).unwrap();
    let (code, _, out) = run(&p, &["upload", "-p", "name=dump-0.rdb"]);
    assert_eq!(code, 0, "{out}");

    // A size that does not match the file is refused before anything is written.
    let files = format!("dump-0.rdb:{}", size + 1);
    let (code, json, out) = job(
        &p,
        "import",
        &[
            format!("target={}", target.url(0)),
            format!("files={files}"),
        ],
        true,
    );
    assert_eq!(code, 1, "{out}");
    let msg = json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("is {size} bytes, the task says {}", size + 1)),
        "{msg}"
    );
    assert_eq!(dbsize(&target, 0), 0);

    // The seed's file list (JSON, size as a string) works as well as name:size.
    let files = format!(r#"[{{"file_name": "dump-0.rdb", "size": "{size}"}}]"#);
    let (code, json, out) = job(
        &p,
        "import",
        &[
            format!("target={}", target.url(0)),
            format!("files={files}"),
        ],
        true,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["state"], "succeeded");
    let summary = &json["summary"];
    assert_eq!(summary["keys"], want.len() as u64, "{summary}");
    assert_eq!(summary["restored"], want.len() as u64, "{summary}");
    assert_eq!(json["progress"]["done"], want.len() as u64, "{json}");
    assert_same(&want, &contents(&target, &[0, 3]));
    assert!(!out.contains(PASSWORD), "the password leaked: {out}");
    // The file came down once, and its local copy is gone.
    assert!(out.contains("downloading s3://"), "{out}");
    let left = p.files("data/.ferry/redis-import");
    assert!(left.is_empty(), "copies left behind: {left:?}");
}

#[test]
fn ferry_backup_then_incremental_keeps_and_full_replaces() {
    let source = RedisServer::start();
    populate(&source, 200);
    let want = contents(&source, &[0, 3]);
    let p = Project::with_shipped_files();
    let (code, json, out) = run_plain(
        &p,
        &["redis_backup", "-p", &format!("url={}", source.url(0))],
    );
    assert_eq!(code, 0, "{out}");
    let id = json["summary"]["id"].as_str().unwrap().to_string();
    assert_eq!(json["summary"]["keys"], want.len() as u64, "{json}");
    // The backup is a real RDB file: redis-server itself loads it at start-up.
    let rdb = p
        .path()
        .join(format!("data/backups/redis/{id}/data/dump.rdb"));
    let loaded = RedisServer::start_loading(&rdb);
    assert_same(&want, &contents(&loaded, &[0, 3]));
    drop(loaded);

    let target = RedisServer::start();
    let mut con = target.con();
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("s:short")
        .arg("the target's own")
        .cmd("SET")
        .arg("only:in:target")
        .arg("stays")
        .query(&mut con)
        .unwrap();
    let target_url = format!("target={}", target.url(0));
    let backup_id = format!("backup_id={id}");
    let (code, json, out) = job(
        &p,
        "redis_import",
        &[
            target_url.clone(),
            backup_id.clone(),
            "method=incremental".to_string(),
        ],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["skipped"], 1, "{json}");
    let got: String = redis::cmd("GET").arg("s:short").query(&mut con).unwrap();
    assert_eq!(got, "the target's own");
    let mut got = contents(&target, &[0, 3]);
    assert!(got.remove(&(0, b"only:in:target".to_vec())).is_some());
    let mut want_inc = want.clone();
    let own = got.get(&(0, b"s:short".to_vec())).cloned().unwrap();
    want_inc.insert((0, b"s:short".to_vec()), own);
    assert_same(&want_inc, &got);

    let (code, json, out) = job(
        &p,
        "redis_import",
        &[
            target_url.clone(),
            backup_id.clone(),
            "method=full".to_string(),
        ],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["restored"], want.len() as u64, "{json}");
    let mut got = contents(&target, &[0, 3]);
    assert!(got.remove(&(0, b"only:in:target".to_vec())).is_some());
    assert_same(&want, &got);

    // A snapshot backup (replication SYNC) holds the same data and imports the same way.
    let (code, json, out) = job(
        &p,
        "redis_backup",
        &[
            format!("url={}", source.url(0)),
            "mode=snapshot".to_string(),
        ],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["keys"], want.len() as u64, "{json}");
    let snap_id = json["summary"]["id"].as_str().unwrap().to_string();
    let fresh = RedisServer::start();
    let (code, json, out) = job(
        &p,
        "redis_import",
        &[
            format!("target={}", fresh.url(0)),
            format!("backup_id={snap_id}"),
        ],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["restored"], want.len() as u64, "{json}");
    assert_same(&want, &contents(&fresh, &[0, 3]));
    // A snapshot cannot be filtered.
    let (code, json, _) = job(
        &p,
        "redis_backup",
        &[
            format!("url={}", source.url(0)),
            "mode=snapshot".to_string(),
            "match=s:*".to_string(),
        ],
        false,
    );
    assert_eq!(code, 1);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("do not apply to mode"),
        "{json}"
    );
}
#[test]
fn snapshots_arrive_whole_from_disk_based_and_password_protected_servers() {
    // With diskless replication off as well as on (the default, in the backup test above) the
    // snapshot arrives as `$LENGTH` and the file.
    let source = RedisServer::start_with_args(Some(PASSWORD), &["--repl-diskless-sync", "no"]);
    let mut con = redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{}/0", source.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let big: Vec<(String, String)> = (0..20_000)
        .map(|i| (format!("k{i}"), "v".repeat(i % 100)))
        .collect();
    let _: () = redis::cmd("MSET").arg(&big).query(&mut con).unwrap();
    let p = Project::with_shipped_files();
    let (code, json, out) = job(
        &p,
        "redis_backup",
        &[
            format!("url={}", source.url(0)),
            "mode=snapshot".to_string(),
        ],
        true,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["keys"], 20_000, "{json}");
    assert!(!out.contains(PASSWORD), "{out}");
    // A wrong password is refused before SYNC.
    let (code, json, out) = job(
        &p,
        "redis_backup",
        &[
            format!("url=redis://:nope-nope@127.0.0.1:{}/0", source.port),
            "mode=snapshot".to_string(),
        ],
        false,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{json}"
    );
}

#[test]
fn failures_are_clear_keep_the_target_untouched_and_hide_the_password() {
    let source = RedisServer::start();
    populate(&source, 300);
    let dump = source.save();
    let target = RedisServer::start_with(Some(PASSWORD));
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.path().join("data/store")).unwrap();
    std::fs::copy(&dump, p.path().join("data/store/good.rdb")).unwrap();
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(p.path().join("data/store/flipped.rdb"), &bytes).unwrap();
    std::fs::write(p.path().join("data/store/truncated.rdb"), &bytes[..mid]).unwrap();
    p.script(
        "imp",
        r#"local redis = require "redis"
        return { params = { target = {}, files = {}, password = {} }, run = function(ctx)
          -- `$PASSWORD` in the URL stands for the secret: a credential inside a URL is hidden too.
          local secret = redis.secret(ctx, "redis_password")
          local target = ctx.params.target:gsub("%$PASSWORD", secret)
          return redis.import(ctx, { target = target, files = ctx.params.files,
            password = ctx.params.password or (not target:find("@") and secret or nil) })
        end }"#,
    );
    let target_url = format!("target={}", target.url(0));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![target_url.clone(), "files=flipped.rdb".into()],
            "flipped.rdb",
        ),
        (
            vec![target_url.clone(), "files=truncated.rdb".into()],
            "truncated.rdb",
        ),
        (
            vec![
                target_url.clone(),
                "files=good.rdb".into(),
                "password=wrong-password-123".into(),
            ],
            "authentication failed",
        ),
        (
            vec![
                format!("target=redis://:$PASSWORD@127.0.0.1:{}/0", dead_port()),
                "files=good.rdb".into(),
            ],
            "connection refused",
        ),
        (
            vec![target_url.clone(), "files=missing.rdb".into()],
            "does not exist",
        ),
    ];
    for (params, want) in cases {
        let mut args = vec!["imp".to_string()];
        for kv in &params {
            args.push("-p".into());
            args.push(kv.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, json, out) = run(&p, &refs);
        assert_eq!(code, 1, "{params:?}: {out}");
        assert_eq!(json["state"], "failed", "{json}");
        let msg = json["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{params:?}: want {want:?} in {msg}");
        assert!(
            !out.contains(PASSWORD),
            "{params:?}: the password leaked: {out}"
        );
        let shown = p
            .ferry(&["runs", "show", &json["id"].to_string(), "--json"])
            .all();
        assert!(
            !shown.contains(PASSWORD),
            "{params:?}: the password is in the history: {shown}"
        );
        assert_eq!(dbsize(&target, 0), 0, "{params:?}: the target was touched");
    }
    // Corruption is named precisely.
    let (_, json, _) = run(&p, &["imp", "-p", &target_url, "-p", "files=flipped.rdb"]);
    let msg = json["error"]["message"].as_str().unwrap();
    assert!(msg.contains("checksum") || msg.contains("byte"), "{msg}");
}

#[test]
fn a_cancelled_import_stops_promptly() {
    let source = RedisServer::start();
    // Enough keys, written in small batches, that the import takes several seconds.
    let mut con = source.con();
    for chunk in 0..20 {
        let mut pipe = redis::pipe();
        for i in 0..10_000 {
            pipe.cmd("SET")
                .arg(format!("k:{chunk}:{i}"))
                .arg("v".repeat(50))
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
    }
    let dump = source.save();
    let target = RedisServer::start();
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.path().join("data/store")).unwrap();
    std::fs::copy(&dump, p.path().join("data/store/big.rdb")).unwrap();
    p.script(
        "slow_import",
        r#"local redis = require "redis"
        return { params = { target = {} }, run = function(ctx)
          return redis.import(ctx, { target = ctx.params.target, files = "big.rdb", batch = 5 })
        end }"#,
    );
    let mut child = p
        .cmd(&[
            "run",
            "slow_import",
            "-p",
            &format!("target={}", target.url(0)),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("keys to arrive", Duration::from_secs(60), || {
        (dbsize(&target, 0) > 1000).then_some(())
    });
    let asked = Instant::now();
    let r = p.ferry(&["runs", "cancel", "1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let status = child.wait().unwrap();
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(1));
    let run = p.show(1);
    assert_eq!(run["state"], "cancelled", "{run}");
    assert_eq!(run["error"]["code"], "cancelled", "{run}");
    let written = dbsize(&target, 0);
    assert!(
        written < 200_000,
        "the import ran to the end ({written} keys) instead of stopping"
    );
    eprintln!("cancel took {took:?}, {written} keys written");
}

#[test]
fn a_dump_from_a_newer_redis_imports_what_the_target_can_read() {
    // Redis 7.4 (RDB 12) into Redis 7.0 (RDB 10): listpack zsets, quicklists and strings are
    // re-stamped and restored; sets in listpack encoding, v3 streams and hashes with field TTLs
    // are unknown to 7.0.
    let target = RedisServer::start();
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.path().join("data/store")).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rdb/redis_7_4_all_types.rdb");
    std::fs::copy(&fixture, p.path().join("data/store/new.rdb")).unwrap();
    let (code, json, out) = job(
        &p,
        "redis_import",
        &[format!("target={}", target.url(0)), "files=new.rdb".into()],
        false,
    );
    assert_eq!(code, 1, "{out}");
    let msg = json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("new.rdb holds")
            && msg.contains("which redis://127.0.0.1:")
            && msg.contains("(RDB version 10) cannot read"),
        "{msg}"
    );
    assert_eq!(
        dbsize(&target, 0),
        0,
        "nothing is written when a type cannot be"
    );

    p.script(
        "readable",
        &r#"return { run = function(ctx)
          local r = ferry.redis.connect("URL")
          local v = r:rdb_version()
          local src = ferry.redis.rdb(ferry.store("data/store"):open("new.rdb"))
          local sink = r:restore()
          local n = ferry.pipe(src, sink, { map = function(rows)
            local out = {}
            for _, row in ipairs(rows) do
              if ferry.redis.min_version(string.byte(row.payload)) <= v then out[#out + 1] = row end
            end
            return out
          end })
          local direct = ferry.redis.connect("URL"):restore()
          local ok, err = pcall(ferry.pipe, ferry.redis.rdb(ferry.store("data/store"):open("new.rdb")), direct)
          return { v = v, n = n, stats = sink:stats(), err = tostring(err),
                   list = r:call("LRANGE", "list", 0, -1), zset = r:call("ZRANGE", "zset", 0, -1) }
        end }"#
            .replace("URL", &target.url(0)),
    );
    let (code, json, out) = job(&p, "readable", &[], false);
    assert_eq!(code, 0, "{out}");
    let s = &json["summary"];
    assert_eq!(s["v"], 10, "{s}");
    let written =
        s["stats"]["restored"].as_u64().unwrap() + s["stats"]["expired"].as_u64().unwrap();
    assert_eq!(written, s["n"].as_u64().unwrap(), "{s}");
    assert!(s["stats"]["restored"].as_u64().unwrap() >= 5, "{s}");
    assert!(!s["list"].as_array().unwrap().is_empty(), "{s}");
    assert!(!s["zset"].as_array().unwrap().is_empty(), "{s}");
    let mut con = target.con();
    for (key, kind) in [
        ("list", "list"),
        ("zset", "zset"),
        ("lp_ints", "list"),
        ("str", "string"),
    ] {
        let t: String = redis::cmd("TYPE").arg(key).query(&mut con).unwrap();
        assert_eq!(t, kind, "{key}");
    }
    let err = s["err"].as_str().unwrap();
    assert!(
        err.contains("which this Redis (RDB version 10) cannot read"),
        "{err}"
    );
}

#[test]
fn seed_004_task_through_the_http_api() {
    // POST a backup import task with the seed's fields, follow it to SUCCESS, read its progress.
    let source = RedisServer::start();
    populate(&source, 100);
    let want = contents(&source, &[0, 3]);
    let dump = source.save();
    let size = std::fs::metadata(&dump).unwrap().len();
    let target = RedisServer::start_with(Some(PASSWORD));
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.path().join("data/store")).unwrap();
    std::fs::copy(&dump, p.path().join("data/store/backup-1.rdb")).unwrap();
    let d = common::Daemon::start(&p);
    let http = reqwest::blocking::Client::new();
    let files = format!(
        r#"[{{"file_name": "backup-1.rdb", "size": "{size}", "update_at": "2026-11-23 02:00:00"}}]"#
    );
    let body = serde_json::json!({"params": {
        "target": target.url(0), "method": "full", "files": files, "password": PASSWORD,
    }});
    let r = http
        .post(format!("{}/api/v1/jobs/redis_import/runs", d.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let run = wait_for("the import to finish", Duration::from_secs(60), || {
        let v: Value = http
            .get(format!("{}/api/v1/runs/{id}", d.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        ["succeeded", "failed"]
            .contains(&v["state"].as_str()?)
            .then_some(v)
    });
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["progress"]["done"], want.len() as u64, "{run}");
    assert_eq!(run["progress"]["total"], want.len() as u64, "{run}");
    assert_eq!(run["params"]["password"], "***");
    let logs = http
        .get(format!("{}/api/v1/runs/{id}/logs", d.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!logs.contains(PASSWORD) && !run.to_string().contains(PASSWORD));
    assert_same(&want, &contents(&target, &[0, 3]));
}

#[test]
fn servers_named_in_the_config_keep_their_password_out_of_scripts() {
    let server = RedisServer::start_with(Some(PASSWORD));
    let p = Project::with_shipped_files();
    p.write(
        "ferry.toml",
        &format!(
            "[redis.cache]\nurl = \"{}\"\npassword = \"${{FERRY_TEST_CACHE_PW}}\"\n",
            server.url(2)
        ),
    );
    p.script(
        "named",
        r#"return { run = function(ctx)
          local r = ferry.redis.connect("cache")
          r:call("SET", "k", "v")
          ctx.log.info("connected to %s", r:url())
          local ok, err = pcall(ferry.redis.connect, "nocache")
          return { url = r:url(), size = r:call("DBSIZE"), err = tostring(err) }
        end }"#,
    );
    let (code, json, out) = run_env(&p, &["named"], &[("FERRY_TEST_CACHE_PW", PASSWORD)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["url"], server.url(2));
    assert_eq!(json["summary"]["size"], 1);
    let err = json["summary"]["err"].as_str().unwrap();
    assert!(
        err.contains("`nocache` is neither a redis:// URL nor a server named in ferry.toml")
            && err.contains("named: cache"),
        "{err}"
    );
    assert!(!out.contains(PASSWORD));
    let v: String = redis::cmd("GET")
        .arg("k")
        .query(&mut server.con_db(2))
        .unwrap();
    assert_eq!(v, "v");
}

#[test]
fn tls_servers_are_reached_with_their_ca_and_refused_without_it() {
    let server = RedisServer::start_tls();
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.path().join("data/certs")).unwrap();
    std::fs::write(
        p.path().join("data/certs/ca.pem"),
        server.ca.as_ref().unwrap(),
    )
    .unwrap();
    p.script(
        "tls",
        &r#"return { run = function(ctx)
          local ca = ferry.store("data/certs"):read("ca.pem")
          local r = ferry.redis.connect("URL", { ca = ca })
          r:call("SET", "over", "tls")
          local copy = ferry.redis.connect("URL", { ca = ca, db = 1 })
          local n = ferry.pipe(r:scan(), copy:restore({ db = 1 }))
          local ok, err = pcall(ferry.redis.connect, "URL")
          local sok, serr = pcall(r.snapshot, r, ferry.store("data/out"):create("x.rdb"))
          return { url = r:url(), got = r:call("GET", "over"), copied = n, err = tostring(err), snap = tostring(serr) }
        end }"#
            .replace("URL", &server.url(0)),
    );
    let (code, json, out) = run_plain(&p, &["tls"]);
    assert_eq!(code, 0, "{out}");
    let s = &json["summary"];
    assert_eq!(s["url"], server.url(0));
    assert_eq!(s["got"], "tls");
    assert_eq!(s["copied"], 1);
    let err = s["err"].as_str().unwrap();
    assert!(
        err.contains("cannot connect") && err.contains("give `ca`"),
        "{err}"
    );
    assert!(s["snap"].as_str().unwrap().contains("not TLS"), "{s}");
    let v: String = redis::cmd("GET")
        .arg("over")
        .query(&mut server.con_db(1))
        .unwrap();
    assert_eq!(v, "tls");
}

#[test]
fn a_dump_dropped_into_a_watched_folder_is_imported_once() {
    let source = RedisServer::start();
    populate(&source, 50);
    let want = contents(&source, &[0, 3]);
    let dump = source.save();
    let target = RedisServer::start();
    let p = Project::with_shipped_files();
    p.script(
        "drop_rdb",
        // `redis.migrate`, the older name of `redis.import`, still works.
        &r#"local redis = require "redis"
        return { watch = { path = "inbox/rdb", pattern = "*.rdb", settle = "200ms" },
          run = function(ctx) return redis.migrate(ctx, { target = "URL" }) end }"#
            .replace("URL", &target.url(0)),
    );
    let d = common::Daemon::start(&p);
    std::fs::create_dir_all(p.path().join("inbox/rdb")).unwrap();
    std::fs::copy(&dump, p.path().join("inbox/rdb/.part")).unwrap();
    std::fs::rename(
        p.path().join("inbox/rdb/.part"),
        p.path().join("inbox/rdb/night.rdb"),
    )
    .unwrap();
    let run = wait_for(
        "the dropped dump to be imported",
        Duration::from_secs(30),
        || {
            p.runs_of("drop_rdb")
                .into_iter()
                .find(|r| r["state"] == "succeeded" || r["state"] == "failed")
        },
    );
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["summary"]["restored"], want.len() as u64, "{run}");
    assert_same(&want, &contents(&target, &[0, 3]));
    // The daemon archives the file right after the run closes.
    wait_for("the dump to be archived", Duration::from_secs(10), || {
        (p.files_in("inbox/rdb/.ferry/archive") == vec!["night.rdb"]).then_some(())
    });
    assert_eq!(p.runs_of("drop_rdb").len(), 1);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_target_that_runs_out_of_memory_fails_the_run_and_says_what_it_holds() {
    let source = RedisServer::start();
    let mut con = source.con();
    let mut pipe = redis::pipe();
    for i in 0..50_000 {
        pipe.cmd("SET")
            .arg(format!("big:{i}"))
            .arg("x".repeat(200))
            .ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    let dump = source.save();
    let target = RedisServer::start_with_args(
        None,
        &["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"],
    );
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.path().join("data/store")).unwrap();
    std::fs::copy(&dump, p.path().join("data/store/big.rdb")).unwrap();
    let (code, json, out) = job(
        &p,
        "redis_import",
        &[format!("target={}", target.url(0)), "files=big.rdb".into()],
        false,
    );
    assert_eq!(code, 1, "{out}");
    let msg = json["error"]["message"].as_str().unwrap();
    assert!(msg.contains("OOM") && msg.contains(": SET \"big:"), "{msg}");
    let written = dbsize(&target, 0);
    assert!(written > 0 && written < 50_000, "{written}");
    let show = p.ferry(&["runs", "show", &json["id"].to_string()]).all();
    assert!(
        show.contains("stopped after") && show.contains("running it again completes it"),
        "{show}"
    );
}

#[test]
fn a_partial_restore_takes_only_the_matching_keys() {
    let source = RedisServer::start();
    populate(&source, 20);
    let want: std::collections::BTreeMap<_, _> = contents(&source, &[0, 3])
        .into_iter()
        .filter(|((_, k), _)| k.starts_with(b"h:") || k.starts_with(b"db3:"))
        .collect();
    let dump = source.save();
    let target = RedisServer::start();
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.path().join("data/store")).unwrap();
    std::fs::copy(&dump, p.path().join("data/store/d.rdb")).unwrap();
    // A glob on the key...
    let (code, json, out) = job(
        &p,
        "redis_import",
        &[
            format!("target={}", target.url(0)),
            "files=d.rdb".into(),
            "match=[hd]*:*".into(),
        ],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["matched"], want.len() as u64, "{json}");
    assert_same(&want, &contents(&target, &[0, 3]));
    // ...and types, through the Lua API.
    p.script(
        "only_hashes",
        &r#"return { run = function(ctx)
          local n = ferry.pipe(ferry.redis.rdb(ferry.store("data/store"):open("d.rdb"), { types = { "hash" } }),
            ferry.redis.connect("URL"):restore())
          local ok, err = pcall(ferry.redis.rdb, "x", { types = { "hashes" } })
          return { n = n, err = tostring(err) }
        end }"#
            .replace("URL", &target.url(0)),
    );
    let (code, json, out) = job(&p, "only_hashes", &[], false);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["n"], 3, "h:small, h:big and db3:h: {json}");
    assert!(
        json["summary"]["err"]
            .as_str()
            .unwrap()
            .contains("unknown type `hashes`"),
        "{json}"
    );
}

#[test]
fn backups_to_an_s3_point_upload_once_and_import_back_equal() {
    let source = RedisServer::start();
    populate(&source, 100);
    let want = contents(&source, &[0, 3]);
    let s3 = common::s3::S3Server::start();
    let p = Project::with_shipped_files();
    p.write(
        "ferry.toml",
        &format!(
            "[stores.point]\nurl = \"{}\"\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            s3.url("ferry-backups"),
            s3.endpoint(),
            s3.access_key,
            s3.secret_key
        ),
    );
    p.script(
        "s3_redis",
        &r#"local redis = require "redis"
        return { params = { op = {}, id = {}, target = {}, mode = { default = "scan" } }, run = function(ctx)
          if ctx.params.op == "backup" then
            return redis.backup(ctx, { url = "SRC", point = "point", set = "redis", mode = ctx.params.mode })
          end
          return redis.import(ctx, { target = ctx.params.target, backup_id = ctx.params.id, point = "point", set = "redis" })
        end }"#
            .replace("SRC", &source.url(0)),
    );
    for mode in ["scan", "snapshot"] {
        let (code, json, out) = job(
            &p,
            "s3_redis",
            &["op=backup".into(), format!("mode={mode}")],
            false,
        );
        assert_eq!(code, 0, "{mode}: {out}");
        let id = json["summary"]["id"].as_str().unwrap().to_string();
        assert_eq!(json["summary"]["keys"], want.len() as u64, "{json}");
        // Nothing staged is left behind, and the object is in the bucket.
        assert!(p.files("data/.ferry/redis-backup").is_empty());
        assert!(
            s3.object_file(&format!("ferry-backups/redis/{id}/data/dump.rdb"))
                .is_file()
        );
        let target = RedisServer::start();
        let (code, json, out) = job(
            &p,
            "s3_redis",
            &[
                "op=import".into(),
                format!("id={id}"),
                format!("target={}", target.url(0)),
            ],
            false,
        );
        assert_eq!(code, 0, "{mode}: {out}");
        assert_eq!(json["summary"]["restored"], want.len() as u64, "{json}");
        assert_same(&want, &contents(&target, &[0, 3]));
    }
}

#[test]
fn a_user_without_the_right_to_info_can_still_back_up_and_import() {
    let source = RedisServer::start();
    populate(&source, 20);
    let want: std::collections::BTreeMap<_, _> = contents(&source, &[0]).into_iter().collect();
    let acl = |server: &RedisServer| {
        let _: () = redis::cmd("ACL")
            .arg(&[
                "SETUSER",
                "limited",
                "on",
                ">limited-pw-123",
                "~*",
                "+@all",
                "-info",
            ])
            .query(&mut server.con())
            .unwrap();
        format!("redis://limited:limited-pw-123@127.0.0.1:{}/0", server.port)
    };
    let source_url = acl(&source);
    let p = Project::with_shipped_files();
    let (code, json, out) = job(&p, "redis_backup", &[format!("url={source_url}")], false);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        json["summary"]["keys"],
        want.len() as u64,
        "db 0 only: {json}"
    );
    assert!(out.contains("INFO is not allowed"), "{out}");
    let id = json["summary"]["id"].as_str().unwrap().to_string();
    let target = RedisServer::start();
    let target_url = acl(&target);
    let (code, json, out) = job(
        &p,
        "redis_import",
        &[format!("target={target_url}"), format!("backup_id={id}")],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["restored"], want.len() as u64, "{json}");
    assert_same(&want, &contents(&target, &[0]));
    assert!(!out.contains("limited-pw-123"), "{out}");
}

#[test]
fn the_copy_job_moves_matching_keys_between_live_instances() {
    let source = RedisServer::start();
    populate(&source, 30);
    let target = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg("h:small")
        .arg("kept")
        .query(&mut target.con())
        .unwrap();
    let p = Project::with_shipped_files();
    let args = |method: &str| {
        vec![
            format!("source={}", source.url(0)),
            format!("target={}", target.url(0)),
            "match=h:*".to_string(),
            format!("method={method}"),
        ]
    };
    let (code, json, out) = job(&p, "redis_copy", &args("incremental"), false);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["keys"], 2, "{json}");
    assert_eq!(json["summary"]["skipped"], 1, "{json}");
    let kept: String = redis::cmd("GET")
        .arg("h:small")
        .query(&mut target.con())
        .unwrap();
    assert_eq!(kept, "kept");
    let (code, json, out) = job(&p, "redis_copy", &args("full"), false);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["summary"]["restored"], 2, "{json}");
    let want: std::collections::BTreeMap<_, _> = contents(&source, &[0])
        .into_iter()
        .filter(|((_, k), _)| k.starts_with(b"h:"))
        .collect();
    assert_same(&want, &contents(&target, &[0]));
}
