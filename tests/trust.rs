//! An unattended daemon people can trust (issue #12), through the real binary: a quiet loop when
//! idle, one daemon per project, runs owned by one process each, cancels that cancel at once,
//! nothing left behind by runs that end badly, secret params sealed at rest.

mod common;

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
    // The loop wakes for its own housekeeping (about once a second) and the scripts' safety-net
    // re-read; a loop woken by its own events would wake thousands of times.
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
                        url_ok = ctx.params.url == "redis://:S3cretUrlPw@h:1/0", table = ctx.params.table }
             end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let params = json!({ "password": "Pw-SECRET-111", "dsn": "dsn-SECRET-222",
                         "url": "redis://:S3cretUrlPw@h:1/0", "table": "orders" });
    let id = start_run(&api, "login", json!({ "params": params }));
    let first = api.wait_state(id, &["failed"]);
    let retry = first["retried_by"].as_i64().expect("a retry");
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
