//! An unattended daemon people can trust (issue #12), through the real binary: a quiet loop when
//! idle, one daemon per project, runs owned by one process each, cancels that cancel at once,
//! nothing left behind by runs that end badly, secret params sealed at rest.

use crate::common;

use std::time::{Duration, Instant};

use common::api::{Api, TOKEN};
use common::{Daemon, Project, SIGKILL, signal, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project() -> Project {
    let p = Project::new();
    p.write(
        "ferry.toml",
        &format!(
            "[limits]\nkill_grace = \"1s\"\n[daemon]\nconcurrency = 4\nshutdown_grace = \"500ms\"\nwarm_workers = 0\n[api]\ntoken = \"{TOKEN}\"\n"
        ),
    );
    p
}

fn busy(seconds: u32) -> String {
    format!("local t0 = os.time(); while os.time() - t0 < {seconds} do end")
}

/// The `ferry worker` processes whose parent is `parent`.
fn workers_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == parent && cmd.split(|b| *b == 0).any(|a| a == b"worker") {
            out.push(pid);
        }
    }
    out
}

fn start_run(api: &Api, job: &str, body: Value) -> i64 {
    let (s, v) = api.post(&format!("/api/v1/jobs/{job}/runs"), body);
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

#[test]
fn the_idle_loop_is_not_woken_by_its_own_scans_and_moves() {
    let p = project();
    // Polling is off (an hour): only file events may wake a scan.
    p.script(
        "drop",
        r#"return { watch = { path = "inbox/drop", settle = "100ms", poll = "1h" }, overlap = "queue",
                    run = function(ctx) return ctx.trigger.file end }"#,
    );
    p.script("hello", r#"return { run = function(ctx) end }"#);
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    for i in 0..5 {
        let tmp = p.write(&format!("inbox/.f{i}.tmp"), "some data\n");
        std::fs::rename(tmp, p.at(&format!("inbox/drop/f{i}.txt"))).unwrap();
    }
    wait_for("five archived files", Duration::from_secs(30), || {
        (p.files_in("inbox/drop/.ferry/archive").len() == 5).then_some(())
    });
    wait_for("five succeeded runs", Duration::from_secs(30), || {
        (p.runs_of("drop")
            .iter()
            .filter(|r| r["state"] == "succeeded")
            .count()
            == 5)
            .then_some(())
    });
    let scans = api.metric("ferry_watch_scans_total");
    let wakeups = api.metric("ferry_trigger_wakeups_total");
    let t0 = Instant::now();
    // The daemon's own moves and scans happened; from now on nothing happens in the folder.
    std::thread::sleep(Duration::from_secs(3));
    let elapsed = t0.elapsed().as_secs_f64();
    let scans_after = api.metric("ferry_watch_scans_total");
    let wakeups_after = api.metric("ferry_trigger_wakeups_total");
    assert_eq!(
        scans_after,
        scans,
        "the folder was scanned again with nothing new in it:\n{}",
        d.log()
    );
    // The loop wakes for the scripts' safety-net re-read (every two seconds; the housekeeping
    // is the dispatcher's); a loop woken by its own events would wake thousands of times.
    let per_second = (wakeups_after - wakeups) / elapsed;
    assert!(
        per_second < 5.0,
        "the loop woke {per_second:.1} times a second while idle"
    );
    assert_eq!(api.metric("ferry_file_events_dropped_total"), 0.0);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_second_daemon_refuses_and_leaves_the_first_ones_runs_alone() {
    let p = project();
    p.script(
        "long",
        &format!(
            "return {{ run = function(ctx) {} return 'done' end }}",
            busy(3)
        ),
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let id = start_run(&api, "long", json!({}));
    api.wait_state(id, &["running"]);
    let r = p.ferry(&["serve", "--listen", "127.0.0.1:0"]);
    assert_ne!(r.code, 0, "{}", r.all());
    let pid = d.child.id();
    assert!(
        r.stderr
            .contains("another ferry serve is running for this project")
            && r.stderr.contains(&format!("pid {pid}"))
            && r.stderr.contains(&d.url),
        "{}",
        r.all()
    );
    let (_, run) = api.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(run["state"], "running", "{run}");
    assert!(
        run["owner"].as_str().unwrap().contains(&format!(":{pid}:")),
        "the run names its owner: {run}"
    );
    let run = api.wait_state(id, &["succeeded", "failed", "interrupted", "cancelled"]);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(d.stop(), Some(0));
    // Once the first has stopped, a daemon starts.
    let d = Daemon::start(&p);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn runs_on_the_command_line_beside_a_daemon_run_exactly_once() {
    let p = project();
    p.script(
        "mark",
        r#"return { overlap = "allow", run = function(ctx)
             ferry.store("data/marks"):write(tostring(ctx.run_id), "x", { if_absent = true })
             return ctx.run_id end }"#,
    );
    let d = Daemon::start(&p);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let r = p.ferry(&["run", "mark"]);
                    assert_eq!(r.code, 0, "{}", r.all());
                }
            });
        }
    });
    let runs = p.runs_of("mark");
    assert_eq!(runs.len(), 100);
    for r in &runs {
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(r["trigger"]["kind"], "manual", "{r}");
        assert_eq!(r["summary"], r["id"], "{r}");
    }
    assert_eq!(p.files_in("data/marks").len(), 100);
    let log = d.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("job=mark") && !l.contains("job loaded")),
        "the daemon touched a command-line run:\n{log}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn cancelling_a_queued_run_ends_it_at_once_and_it_can_be_deleted() {
    let p = project();
    p.script("later", r#"return { run = function(ctx) return 1 end }"#);
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let id = start_run(&api, "later", json!({ "at": at }));
    let (s, v) = api.post(&format!("/api/v1/runs/{id}/cancel"), json!({}));
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "cancelled", "closed at once: {v}");
    let (_, run) = api.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(run["state"], "cancelled");
    assert_eq!(run["error"]["code"], "cancelled");
    assert!(run["finished_at"].is_string(), "{run}");
    let (s, v) = api.post(&format!("/api/v1/runs/{id}/cancel"), json!({}));
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = api.delete(&format!("/api/v1/runs/{id}"));
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(s, StatusCode::NOT_FOUND);
    // From the command line, without the daemon's help, the same.
    let r = p.ferry(&["trigger", "later", "--at", &at]);
    assert_eq!(r.code, 0, "{}", r.all());
    let id: i64 = r.stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    let r = p.ferry(&["runs", "cancel", &id.to_string()]);
    assert!(
        r.stdout.contains("cancelled (it had not started)"),
        "{}",
        r.all()
    );
    assert_eq!(p.show(id)["state"], "cancelled");
    let r = p.ferry(&["runs", "delete", &id.to_string()]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(d.stop(), Some(0));
}

/// A job that writes into its temporary folder, then ends as `how` says.
fn temp_job(how: &str, timeout: &str) -> String {
    format!(
        r#"return {{ timeout = "{timeout}", overlap = "allow", run = function(ctx)
             local t = ctx.temp()
             t:write("scratch.bin", string.rep("x", 1000))
             {how}
             return t:url()
           end }}"#
    )
}

fn temp_dir(p: &Project, id: i64) -> std::path::PathBuf {
    p.at(&format!("data/.ferry/tmp/{id}"))
}

#[test]
fn temporary_files_go_whatever_way_a_run_ends() {
    let p = project();
    p.script("ok", &temp_job("", "1m"));
    p.script("fails", &temp_job(r#"error("boom")"#, "1m"));
    p.script("times_out", &temp_job("while true do end", "2s"));
    p.script("waits", &temp_job(&busy(60), "1m"));
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    for (job, state) in [
        ("ok", "succeeded"),
        ("fails", "failed"),
        ("times_out", "timed_out"),
    ] {
        let id = start_run(&api, job, json!({}));
        let run = api.wait_state(id, &[state]);
        assert!(!temp_dir(&p, id).exists(), "{job}: {run}");
    }
    // A script cannot reach another run's temporary folder, nor ferry's own files.
    let id = start_run(&api, "waits", json!({}));
    wait_for("the temp file", Duration::from_secs(20), || {
        temp_dir(&p, id).join("scratch.bin").exists().then_some(())
    });
    let r = p.ferry(&["run", p.root_script("peek", &format!(
        r#"return {{ run = function(ctx) return ferry.store("data/.ferry/tmp/{id}"):list("") end }}"#
    )).as_str()]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("belongs to ferry itself"), "{}", r.all());
    // Cancelled.
    let (s, _) = api.post(&format!("/api/v1/runs/{id}/cancel"), json!({}));
    assert_eq!(s, StatusCode::ACCEPTED);
    api.wait_state(id, &["cancelled"]);
    assert!(!temp_dir(&p, id).exists());
    // The worker killed (a crash): its parent cleans up.
    let id = start_run(&api, "waits", json!({}));
    wait_for("the temp file", Duration::from_secs(20), || {
        temp_dir(&p, id).join("scratch.bin").exists().then_some(())
    });
    for w in workers_of(d.child.id()) {
        signal(w, SIGKILL);
    }
    let run = api.wait_state(id, &["failed"]);
    assert_eq!(run["error"]["code"], "crashed", "{run}");
    assert!(!temp_dir(&p, id).exists());
    // The daemon and its worker killed at once: the next start cleans up.
    let id = start_run(&api, "waits", json!({}));
    wait_for("the temp file", Duration::from_secs(20), || {
        temp_dir(&p, id).join("scratch.bin").exists().then_some(())
    });
    let workers = workers_of(d.child.id());
    assert!(!workers.is_empty());
    for w in workers {
        signal(w, SIGKILL);
    }
    d.kill9();
    assert!(temp_dir(&p, id).exists(), "nobody was left to clean up");
    let d = Daemon::start(&p);
    assert!(!temp_dir(&p, id).exists());
    assert_eq!(p.show(id)["state"], "interrupted");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_backup_that_does_not_complete_leaves_nothing_at_the_point() {
    let p = project();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("plugins/backup.lua"), p.at("plugins/backup.lua")).unwrap();
    for i in 0..20 {
        p.write(&format!("data/src/f{i}.txt"), &"data ".repeat(1000));
    }
    for (name, timeout) in [("bk", "3s"), ("bk_long", "1m")] {
        p.script(
            name,
            &format!(
                r#"local backup = require "backup"
                   return {{ params = {{ after = {{ type = "string", default = "" }} }}, timeout = "{timeout}",
                     overlap = "allow", run = function(ctx)
                       local r = backup.run(ctx, {{ source = "data/src", point = "data/points", set = "s" }})
                       if ctx.params.after == "fail" then error("after the copy") end
                       if ctx.params.after == "wait" then {} end
                       return r
                     end }}"#,
                busy(60)
            ),
        );
    }
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    // Fails after the copy (the worker cleans up), runs out of time (the worker too), killed
    // (its parent does).
    let id = start_run(&api, "bk", json!({ "params": { "after": "fail" } }));
    api.wait_state(id, &["failed"]);
    assert_eq!(p.files("data/points"), Vec::<String>::new());
    let id = start_run(&api, "bk", json!({ "params": { "after": "wait" } }));
    api.wait_state(id, &["timed_out"]);
    assert_eq!(p.files("data/points"), Vec::<String>::new());
    let id = start_run(&api, "bk_long", json!({ "params": { "after": "wait" } }));
    wait_for("the backup's data", Duration::from_secs(20), || {
        (p.files("data/points").len() >= 20).then_some(())
    });
    for w in workers_of(d.child.id()) {
        signal(w, SIGKILL);
    }
    api.wait_state(id, &["failed"]);
    assert_eq!(p.files("data/points"), Vec::<String>::new());
    assert_eq!(
        p.files_in("data/points/s"),
        Vec::<String>::new(),
        "the backup's folders go too"
    );
    // One that succeeds stays.
    let id = start_run(&api, "bk", json!({}));
    let run = api.wait_state(id, &["succeeded"]);
    assert_eq!(run["summary"]["copied"], 20, "{run}");
    assert_eq!(
        p.files("data/points").len(),
        21,
        "20 files and the manifest"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn secret_params_are_never_stored_in_plain_text() {
    let p = project();
    // The script compares with the value in two pieces: the history keeps every version of a
    // script's source, and the secret must not be in it.
    p.script(
        "login",
        r#"return {
             params = { password = { type = "string" }, dsn = { type = "string", secret = true },
                        url = { type = "string" }, table = { type = "string" } },
             retries = 1, retry_delay = "100ms",
             run = function(ctx)
               local n = (ctx.state:get("n") or 0) + 1
               ctx.state:set("n", n)
               if n == 1 then error("the first attempt fails") end
               return { lens = #ctx.params.password + #ctx.params.dsn,
                        url_ok = ctx.params.url == "redis://:S3cret" .. "UrlPw@h:1/0", table = ctx.params.table }
             end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let params = json!({ "password": "Pw-SECRET-111", "dsn": "dsn-SECRET-222",
                         "url": "redis://:S3cretUrlPw@h:1/0", "table": "orders" });
    let id = start_run(&api, "login", json!({ "params": params }));
    api.wait_state(id, &["failed"]);
    // The retry is queued just after the run closes.
    let retry = wait_for("the retry", Duration::from_secs(20), || {
        api.get(&format!("/api/v1/runs/{id}")).1["retried_by"].as_i64()
    });
    let run = api.wait_state(retry, &["succeeded"]);
    assert_eq!(
        run["summary"],
        json!({ "lens": 27, "url_ok": true, "table": "orders" }),
        "the retry got the real values"
    );
    assert_eq!(run["params"]["password"], "***");
    assert_eq!(run["params"]["dsn"], "***");
    assert_eq!(run["params"]["url"], "redis://:***@h:1/0");
    assert_eq!(run["params"]["table"], "orders");
    // From the command line and through `ferry trigger`, the same.
    let r = p.ferry(&[
        "run",
        "login",
        "-p",
        "password=Pw-SECRET-111",
        "-p",
        "dsn=dsn-SECRET-222",
        "-p",
        "url=redis://:S3cretUrlPw@h:1/0",
        "-p",
        "table=t",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = p.ferry(&[
        "trigger",
        "login",
        "-p",
        "password=Pw-SECRET-111",
        "-p",
        "dsn=dsn-SECRET-222",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(d.stop(), Some(0));
    // Nothing under data/ holds a secret in clear: the history, its WAL, anything else.
    for file in p.files("data") {
        let bytes = std::fs::read(p.at("data").join(&file)).unwrap();
        for secret in ["Pw-SECRET-111", "dsn-SECRET-222", "S3cretUrlPw"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in data/{file}"
            );
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.at("data/.ferry/secret.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// The seed of a crash test's random moments: `FERRY_CRASH_SEED`, or the clock (printed, so a
/// failure can be repeated).
fn crash_seed() -> u64 {
    let seed: u64 = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (FERRY_CRASH_SEED={seed} repeats it)");
    seed
}

fn copy_plugins(p: &Project, names: &[&str]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for n in names {
        std::fs::copy(
            root.join(format!("plugins/{n}.lua")),
            p.at(&format!("plugins/{n}.lua")),
        )
        .unwrap();
    }
}

/// Rows of table `t` in a SQLite file, by the `file` column.
fn rows_by_file(db: &std::path::Path) -> std::collections::BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    // No table yet: nothing imported.
    let Ok(mut stmt) = conn.prepare("SELECT file, count(*) FROM t GROUP BY file") else {
        return Default::default();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every file below a folder.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn integrity_ok(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let v: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "ok", "{}", db.display());
}

fn csv_file(name: &str, rows: usize) -> String {
    let mut s = String::from("file,n\n");
    for i in 0..rows {
        s.push_str(&format!("{name},{i}\n"));
    }
    s
}

#[test]
fn an_import_whose_daemon_died_after_the_commit_is_not_imported_twice() {
    let p = project();
    copy_plugins(&p, &["import"]);
    p.script(
        "imp",
        r#"local import = require "import"
           return { watch = { path = "inbox/imp", settle = "100ms" }, retries = 2, retry_delay = "100ms",
             run = function(ctx)
               local r = import.run(ctx, { db = "data/imp.db", table = "t" })
               -- Work after the commit, during which the daemon dies.
               if not r.already_imported then local t0 = os.time(); while os.time() - t0 < 30 do end end
               return r
             end }"#,
    );
    let d = Daemon::start(&p);
    let tmp = p.write("inbox/.a.tmp", &csv_file("a.csv", 5000));
    std::fs::rename(tmp, p.at("inbox/imp/a.csv")).unwrap();
    let db = p.at("data/imp.db");
    wait_for("the import's commit", Duration::from_secs(30), || {
        (db.exists() && rows_by_file(&db).get("a.csv") == Some(&5000)).then_some(())
    });
    d.kill9();
    let d = Daemon::start(&p);
    wait_for("the file to be archived", Duration::from_secs(30), || {
        (p.files_in("inbox/imp/.ferry/archive") == ["a.csv"]).then_some(())
    });
    assert_eq!(rows_by_file(&db).get("a.csv"), Some(&5000), "imported once");
    let runs = p.runs_of("imp");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["state"], "interrupted");
    assert_eq!(runs[1]["state"], "succeeded");
    assert_eq!(
        runs[1]["summary"]["already_imported"]["rows"], 5000,
        "{}",
        runs[1]
    );
    // The same file dropped again is skipped too; asked to, it is imported again.
    let tmp = p.write("inbox/.b.tmp", &csv_file("a.csv", 5000));
    std::fs::rename(tmp, p.at("inbox/imp/again.csv")).unwrap();
    wait_for("the second file", Duration::from_secs(30), || {
        (p.files_in("inbox/imp/.ferry/archive").len() == 2).then_some(())
    });
    assert_eq!(rows_by_file(&db).get("a.csv"), Some(&5000));
    assert_eq!(d.stop(), Some(0));
    let r = p.ferry(&[
        "run",
        p.root_script(
            "force",
            r#"local import = require "import"
               return { run = function(ctx) return import.run(ctx, { db = "data/imp.db", table = "t",
                 file = "inbox/imp/.ferry/archive/a.csv", reimport = true }) end }"#,
        )
        .as_str(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(rows_by_file(&db).get("a.csv"), Some(&10000));
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_runs_nothing_twice() {
    let server = common::s3::S3Server::start();
    let mut p = project();
    let mut config = std::fs::read_to_string(p.at("ferry.toml")).unwrap();
    for (name, prefix) in [("s3out", "out"), ("s3points", "points")] {
        config.push_str(&format!(
            "[stores.{name}]\nurl = \"{}\"\nendpoint = \"{}\"\naccess_key_id = \"${{FERRY_TEST_AK}}\"\nsecret_access_key = \"${{FERRY_TEST_SK}}\"\n",
            server.url(prefix),
            server.endpoint()
        ));
    }
    p.write("ferry.toml", &config);
    p.set_env("FERRY_TEST_AK", &server.access_key);
    p.set_env("FERRY_TEST_SK", &server.secret_key);
    copy_plugins(&p, &["export", "import", "backup"]);
    const ORDERS: usize = 20_000;
    let r = p.ferry(&[
        "run",
        p.root_script(
            "setup",
            &format!(
                r#"return {{ run = function(ctx)
                     local db = ferry.sqlite.open("data/shop.db")
                     db:exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL)")
                     db:exec([[WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ORDERS})
                               INSERT INTO orders SELECT i, 'c' || (i % 97), i / 4.0 FROM s]])
                     local src = ferry.store("data/src")
                     for i = 1, 30 do src:write("f" .. i .. ".txt", string.rep("line " .. i .. "\n", 2000)) end
                   end }}"#
            ),
        )
        .as_str(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    p.script(
        "exp",
        r#"local export = require "export"
           return { params = { to = { default = "data/out" } }, overlap = "allow", retries = 5, retry_delay = "100ms",
             run = function(ctx)
               return export.run(ctx, { db = "data/shop.db", table = "orders", store = ctx.params.to,
                 path = "orders-" .. ctx.run_id .. ".csv" })
             end }"#,
    );
    p.script(
        "bk",
        r#"local backup = require "backup"
           return { params = { point = { default = "data/points" } }, overlap = "allow", retries = 5,
             retry_delay = "100ms", run = function(ctx)
               return backup.run(ctx, { source = "data/src", point = ctx.params.point, set = "s" })
             end }"#,
    );
    p.script(
        "imp",
        r#"local import = require "import"
           return { watch = { path = "inbox/imp", settle = "100ms" }, overlap = "queue", retries = 20,
             retry_delay = "100ms", run = function(ctx) return import.run(ctx, { db = "data/imp.db", table = "t" }) end }"#,
    );
    let seed = crash_seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut dropped = Vec::new();
    for round in 0..8 {
        let d = Daemon::start(&p);
        let api = Api::new(&d);
        for to in ["data/out", "s3out"] {
            start_run(&api, "exp", json!({ "params": { "to": to } }));
        }
        for point in ["data/points", "s3points"] {
            start_run(&api, "bk", json!({ "params": { "point": point } }));
        }
        for i in 0..3 {
            let name = format!("r{round}-{i}.csv");
            let tmp = p.write(&format!("inbox/.{name}.tmp"), &csv_file(&name, 2000));
            std::fs::rename(tmp, p.at(&format!("inbox/imp/{name}"))).unwrap();
            dropped.push(name);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(50..1500)));
        if rng.bool() {
            for w in workers_of(d.child.id()) {
                signal(w, SIGKILL);
            }
        }
        d.kill9();
    }
    // Left alone, the daemon finishes or retries everything.
    let d = Daemon::start(&p);
    wait_for(
        "every run closed and every file handled",
        Duration::from_secs(300),
        || {
            let open = p
                .runs()
                .iter()
                .filter(|r| r["state"] == "queued" || r["state"] == "running")
                .count();
            let waiting = p
                .files_in("inbox/imp")
                .iter()
                .filter(|f| !f.starts_with('.'))
                .count()
                + p.files_in("inbox/imp/.ferry/processing").len();
            (open == 0 && waiting == 0).then_some(())
        },
    );
    assert_eq!(d.stop(), Some(0));

    // No run left open; every dropped file handled once: archived with its rows exactly once.
    let runs = p.runs();
    assert!(
        runs.iter()
            .all(|r| r["state"] != "running" && r["state"] != "queued")
    );
    let archived = p.files_in("inbox/imp/.ferry/archive");
    let failed: Vec<String> = p
        .files_in("inbox/imp/.ferry/failed")
        .into_iter()
        .filter(|f| !f.ends_with(".error.txt"))
        .collect();
    let mut handled = archived.clone();
    handled.extend(failed.iter().cloned());
    handled.sort();
    dropped.sort();
    assert_eq!(
        handled, dropped,
        "every dropped file is archived or failed, once"
    );
    assert!(
        failed.is_empty(),
        "with retries left, every import succeeds: {failed:?}"
    );
    let rows = rows_by_file(&p.at("data/imp.db"));
    for f in &archived {
        assert_eq!(rows.get(f), Some(&2000), "{f} imported exactly once");
    }
    // No partial file at a final name: every export is whole, locally and on S3.
    let out_dirs = [p.at("data/out"), server.object_file("out")];
    for dir in &out_dirs {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert_eq!(
                text.lines().count(),
                ORDERS + 1,
                "{} is not a whole export",
                entry.path().display()
            );
        }
    }
    // Every backup at a point is complete (a manifest, and every file it lists with its size);
    // incomplete ones were discarded.
    for root in [p.at("data/points/s"), server.object_file("points/s")] {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let dir = entry.path();
            // s3s-fs keeps a key's folders after its objects are deleted: a folder without any
            // file holds no object.
            if walk_files(&dir).is_empty() {
                continue;
            }
            let manifest = dir.join("manifest.json");
            if !manifest.exists() {
                let id: i64 = dir
                    .to_string_lossy()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                panic!(
                    "{} has no manifest: an incomplete backup was left: {:?}\nrun: {}\nlog:\n{}",
                    dir.display(),
                    walk_files(&dir),
                    p.show(id),
                    (0..10)
                        .map(|i| std::fs::read_to_string(p.at(&format!("serve-{i}.log")))
                            .unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("\n----\n")
                );
            }
            let m: Value =
                serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
            for f in m["files"].as_array().unwrap() {
                let path = dir.join("data").join(f["path"].as_str().unwrap());
                assert_eq!(
                    std::fs::metadata(&path).map(|m| m.len()).ok(),
                    f["size"].as_u64(),
                    "{}",
                    path.display()
                );
            }
        }
    }
    assert!(
        server.pending_uploads().is_empty(),
        "no multipart upload left"
    );
    integrity_ok(&p.at("data/ferry.db"));
    integrity_ok(&p.at("data/imp.db"));
}

#[test]
fn a_finalizer_that_never_ends_does_not_change_how_a_finished_run_is_recorded() {
    let p = project();
    let file = p.root_script(
        "gc",
        // Reachable until the VM closes (a global), so its finalizer runs at the close, after
        // `run` returned. (A finalizer that runs during the run cannot be stopped by the time
        // limit's hook, which Lua turns off in finalizers: the watchdog kills the worker.)
        r#"return { timeout = "2s", run = function(ctx)
             keep = setmetatable({}, { __gc = function() while true do end end })
             return "done"
           end }"#,
    );
    let r = p.run_file(&file);
    assert!(r.succeeded(), "{}", r.error());
    assert_eq!(r.record["summary"], "done");
}

/// Every file below `dir` whose name is not one of ferry's temp names, by its path relative
/// to `dir`.
fn final_files(dir: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    walk_files(dir)
        .into_iter()
        .filter(|f| {
            !f.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(".ferry-tmp-")
        })
        .map(|f| {
            (
                f.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                f,
            )
        })
        .collect()
}

#[test]
fn kill_9_in_a_batched_backup_or_restore_leaves_no_partial_file_and_the_next_run_works() {
    let p = project();
    copy_plugins(&p, &["backup"]);
    // Some files of a few MiB (a copy takes a while), many small ones, in nested folders.
    let mut source = std::collections::BTreeMap::new();
    for i in 0..240 {
        let len = if i % 12 == 0 {
            (3 << 20) + i * 37
        } else {
            500 + i * 13
        };
        let mut data = vec![0u8; len];
        common::pattern(i as u64, 0, &mut data);
        let rel = format!("d{}/e{}/f{i}.bin", i % 7, i % 3);
        std::fs::create_dir_all(p.at(&format!("data/src/d{}/e{}", i % 7, i % 3))).unwrap();
        std::fs::write(p.at(&format!("data/src/{rel}")), &data).unwrap();
        source.insert(rel, data);
    }
    let bk = p.root_script(
        "bk",
        r#"local backup = require "backup"
           return { run = function(ctx)
             return backup.run(ctx, { source = "data/src", point = "data/points", set = "s" })
           end }"#,
    );
    let rs = p.root_script(
        "rs",
        r#"local backup = require "backup"
           return { run = function(ctx)
             return backup.restore(ctx, { point = "data/points", set = "s", target = "data/restored" })
           end }"#,
    );
    let seed = crash_seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let kill_at_random = |rng: &mut fastrand::Rng, file: &str| {
        let mut child = p.spawn_file(file);
        std::thread::sleep(Duration::from_millis(rng.u64(20..1500)));
        let workers = workers_of(child.id());
        signal(child.id(), SIGKILL);
        for w in workers {
            signal(w, SIGKILL);
        }
        let _ = child.wait();
    };
    // Whatever a file under its final name holds is the whole source file.
    let check_whole = |dir: &std::path::Path, what: &str| {
        for (rel, path) in final_files(dir) {
            let want = source
                .get(&rel)
                .unwrap_or_else(|| panic!("{what}: unexpected file {rel}"));
            assert!(
                std::fs::read(&path).unwrap() == *want,
                "{what}: {} is not the whole file (seed {seed})",
                path.display()
            );
        }
    };
    for _ in 0..3 {
        kill_at_random(&mut rng, &bk);
        for entry in std::fs::read_dir(p.at("data/points/s"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = entry.path();
            if dir.join("manifest.json").exists() {
                // It finished before the kill: then it is complete.
                let m: Value = serde_json::from_str(
                    &std::fs::read_to_string(dir.join("manifest.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(m["files"].as_array().unwrap().len(), source.len());
            }
            check_whole(&dir.join("data"), "a killed backup");
        }
    }
    // The next backup works and is whole.
    let run = p.run_file(&bk);
    assert!(run.succeeded(), "{}", run.text());
    assert_eq!(run.record["summary"]["copied"], source.len() as u64);
    for _ in 0..3 {
        kill_at_random(&mut rng, &rs);
        check_whole(&p.at("data/restored"), "a killed restore");
    }
    // The next restore completes what is missing (what is there is skipped) and verifies it.
    let run = p.run_file(&rs);
    assert!(run.succeeded(), "{}", run.text());
    assert_eq!(run.record["summary"]["failed"], 0);
    let restored = final_files(&p.at("data/restored"));
    assert_eq!(restored.len(), source.len());
    check_whole(&p.at("data/restored"), "the restore after the kills");
    // Opening the stores again cleaned up the temp files the killed runs left, and their
    // journal entries.
    let again = p.run_file(&rs);
    assert!(again.succeeded(), "{}", again.text());
    for dir in ["data/restored", "data/points"] {
        let temps: Vec<_> = walk_files(&p.at(dir))
            .into_iter()
            .filter(|f| f.to_string_lossy().contains(".ferry-tmp-"))
            .collect();
        assert!(
            temps.is_empty(),
            "temp files left in {dir}: {temps:?} (seed {seed})"
        );
    }
    assert_eq!(p.files_in("data/.ferry/pending"), Vec::<String>::new());
}
